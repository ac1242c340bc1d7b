//! `status`: the report of one CIB snapshot ([`crate::status`]), once, or `--watch`ed.
//!
//! `--watch` waits for Pacemaker to say something changed and reads again: on a live cluster a
//! supervised `crm_mon` redrawing into a private FIFO ([`vm_pcmk::watch::CibWatch`], the
//! watcher vm-managerd uses); on a `CIB_file`, for which crm_mon draws once and exits, a look
//! at the file every half second. Reads are at least [`MIN_INTERVAL`] apart (a burst of
//! changes is one read) and at most [`MAX_INTERVAL`] (the screen's ages stay current, and a
//! watcher that failed only slows it down). A screen is shown when what it shows changed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use vm_pcmk::watch::Trigger;

use crate::App;
use crate::error::Result;
use crate::output::Outcome;
use crate::status::{self, StatusReport};

/// Least time between two reads while watching.
pub const MIN_INTERVAL: Duration = Duration::from_millis(250);
/// Most time between two reads while watching (and between two text screens).
pub const MAX_INTERVAL: Duration = Duration::from_secs(10);

/// One report: the CIB read once, crm_mon run on that snapshot.
pub fn read(app: &App) -> Result<Outcome> {
    let cib = app.pcmk.snapshot()?;
    let mon = app.pcmk.status_of(&cib)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (report, warnings) = status::collect(&cib, &mon, app.config().ok(), now);
    Ok(Outcome {
        status: Some(report),
        warnings,
        ..Outcome::default()
    })
}

/// `vm-ctl status`.
pub fn run(app: &App) -> Result<Outcome> {
    read(app)
}

/// What a screen shows, for telling whether it changed: the report without when it was read
/// and the CIB version (which every status update bumps).
fn shown(outcome: &Outcome) -> Option<StatusReport> {
    outcome.status.clone().map(|mut r| {
        r.read_at = 0;
        r.cib_version.clear();
        r
    })
}

/// How `--watch` shows each report.
pub trait Screen {
    /// Shows `outcome` (a report, or the error that kept it from being read).
    fn show(&mut self, outcome: &Result<Outcome>) -> std::io::Result<()>;
    /// Whether an unchanged report is shown again after [`MAX_INTERVAL`] (its ages moved on).
    fn refresh_unchanged(&self) -> bool;
}

/// `vm-ctl status --watch`: reads and shows a report, then again each time `changes` moves (at
/// most every [`MIN_INTERVAL`], at least every [`MAX_INTERVAL`]), until `stop` is set (whoever
/// sets it bumps `changes` to end the wait). A report that cannot be read is shown as its error
/// and tried again; only a screen that cannot be written ends the watch with an error.
pub fn watch(
    app: &App,
    changes: &Trigger,
    stop: &AtomicBool,
    screen: &mut dyn Screen,
) -> Result<()> {
    let mut last: Option<(Option<StatusReport>, Instant)> = None;
    while !stop.load(Ordering::SeqCst) {
        let seen = changes.count();
        let outcome = read(app);
        let now = Instant::now();
        let current = outcome.as_ref().ok().and_then(shown);
        let show = match &last {
            None => true,
            Some((before, at)) => {
                current.is_none()
                    || *before != current
                    || (screen.refresh_unchanged() && now.duration_since(*at) >= MAX_INTERVAL)
            }
        };
        if show {
            screen
                .show(&outcome)
                .map_err(|source| crate::error::Error::Watch {
                    step: "write the status",
                    source,
                })?;
            last = Some((current, now));
        }
        changes.wait(seen, MAX_INTERVAL);
        if !stop.load(Ordering::SeqCst) {
            std::thread::sleep(MIN_INTERVAL);
        }
    }
    Ok(())
}

/// What tells `--watch` that the CIB changed.
#[derive(Debug)]
pub enum ChangeWatch {
    /// A live cluster: crm_mon redrawing into a FIFO in a private directory.
    Cluster(vm_pcmk::watch::CibWatch, tempfile::TempDir),
    /// A CIB file.
    File(vm_pcmk::watch::FileWatch),
}

/// How often a CIB file is looked at.
const FILE_PERIOD: Duration = Duration::from_millis(500);

impl ChangeWatch {
    /// Starts the watcher for the CIB `app` acts on; each change bumps `changes`.
    pub fn start(app: &App, changes: &Trigger) -> Result<ChangeWatch> {
        let io = |step| move |source| crate::error::Error::Watch { step, source };
        match app.pcmk.cib_file() {
            Some(path) => Ok(ChangeWatch::File(
                vm_pcmk::watch::FileWatch::start(path.to_path_buf(), changes.clone(), FILE_PERIOD)
                    .map_err(io("watch the CIB file"))?,
            )),
            None => {
                let dir = tempfile::Builder::new()
                    .prefix("vm-ctl-status-")
                    .tempdir()
                    .map_err(io("make a private directory for the crm_mon watcher"))?;
                let watch = vm_pcmk::watch::CibWatch::start(
                    dir.path().join("cib-events"),
                    changes.clone(),
                    "the status is still read every 10 s",
                )
                .map_err(io("start the crm_mon watcher"))?;
                Ok(ChangeWatch::Cluster(watch, dir))
            }
        }
    }

    /// Stops it (crm_mon's whole process group is killed).
    pub fn stop(&self) {
        match self {
            ChangeWatch::Cluster(w, _) => w.stop(),
            ChangeWatch::File(w) => w.stop(),
        }
    }
}
