//! vm-ctl: manage libvirt guests as Pacemaker VirtualDomain resources.
//!
//! Every mutating command is one read-decide-write cycle on the whole CIB
//! ([`vm_pcmk::Pacemaker::transact`]): the decision is made on a snapshot, the result is
//! checked with `crm_verify`, and the snapshot is written back only if the CIB did not change
//! meanwhile (otherwise the command is decided again on a fresh snapshot). A failure at any
//! point leaves the CIB exactly as it was; concurrent writers never undo each other.
//!
//! - [`cli`]: the command line (clap).
//! - [`config`]: the original `/etc/vm-ctl.conf` format, parsed (never executed).
//! - [`ids`]: the original naming scheme (`prmVMCTL_<dom>`, `locVMCTL_...`), name checks.
//! - [`generate`]: the objects `resource add` creates for a guest.
//! - [`guest`]: finding and editing one guest's objects in a snapshot.
//! - [`guest_node`]: guests as Pacemaker guest nodes: the CIB shape, ports, clashes, traces.
//! - [`change`]: snapshot before/after → nothing, dry run, or write (with `crm_verify`).
//! - [`commands`]: one module per command.
//! - [`wait`]: bounded waiting on the cluster status.
//! - [`lock`]: one mutating vm-ctl per host.
//! - [`output`]: the report, as text or JSON.
//! - [`status`]: `vm-ctl status`, the whole host cluster from one CIB snapshot.
//! - [`clones`]: the host daemons' clones.
//! - [`stonith`]: guest-cluster fencing: keys, what vm-stonithd publishes, guest fence config.
//! - [`error`]: errors and exit codes.

pub mod change;
pub mod cli;
pub mod clones;
pub mod commands;
pub mod config;
pub mod error;
pub mod generate;
pub mod guest;
pub mod guest_node;
pub mod ids;
pub mod lock;
pub mod output;
pub mod status;
pub mod stonith;
pub mod wait;

use std::path::PathBuf;
use std::time::Duration;

use vm_pcmk::Pacemaker;

use crate::config::{Config, ConfigError};
use crate::error::Result;
use crate::lock::RunLock;
use crate::output::Outcome;

/// Everything a command needs: the CIB to act on, the configuration, the options.
#[derive(Debug)]
pub struct App {
    /// The CIB (live, or `CIB_file`).
    pub pcmk: Pacemaker,
    /// vm-ctl.conf's path.
    pub config_path: PathBuf,
    config: Option<Config>,
    /// `--dry-run`.
    pub dry_run: bool,
    /// How long to wait for another vm-ctl's lock.
    pub lock_wait: Duration,
    /// vm-ctl.conf's warnings, for the report.
    config_warnings: Vec<String>,
}

impl App {
    /// Set up for one run: the CIB Pacemaker's own tools would use here (`CIB_file` or live),
    /// and vm-ctl.conf when it exists (a command that needs a missing file says so).
    pub fn new(config_path: PathBuf, dry_run: bool, lock_wait: Duration) -> Result<Self> {
        let mut app = Self {
            pcmk: Pacemaker::from_env(),
            config_path,
            config: None,
            dry_run,
            lock_wait,
            config_warnings: Vec::new(),
        };
        if app.config_path.exists() {
            let (config, warnings) = Config::load(&app.config_path)?;
            app.config_warnings = warnings.iter().map(ToString::to_string).collect();
            if let Some(ms) = config.crmadmin_timeout {
                app.pcmk = app.pcmk.with_timeout(Duration::from_millis(ms));
            }
            app.config = Some(config);
        }
        Ok(app)
    }

    /// The configuration; an error when vm-ctl.conf does not exist.
    pub fn config(&self) -> Result<&Config> {
        self.config.as_ref().ok_or_else(|| {
            ConfigError::Read {
                path: self.config_path.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "this command needs vm-ctl.conf (see --config)",
                ),
            }
            .into()
        })
    }

    /// Take the run lock for a mutating command (not for a dry run).
    pub fn lock(&self) -> Result<Option<RunLock>> {
        if self.dry_run {
            return Ok(None);
        }
        let path = lock::lock_path();
        Ok(Some(RunLock::acquire(&path, self.lock_wait, |holder| {
            eprintln!("vm-ctl: waiting for another vm-ctl (pid {holder}) to finish");
        })?))
    }

    /// The command's outcome with vm-ctl.conf's warnings first.
    pub fn into_outcome(self, mut outcome: Outcome) -> Outcome {
        let mut warnings = self.config_warnings;
        warnings.append(&mut outcome.warnings);
        outcome.warnings = warnings;
        outcome
    }
}

/// Runs the command `cli` names and prints its report (stdout; warnings and errors on stderr,
/// and in JSON mode the error as JSON too): what `main` runs. The error's
/// [`exit_code`](error::Error::exit_code) is the exit status, also for `check` (whose findings
/// of level error are [`Error::CheckFailed`](error::Error::CheckFailed), after the report).
pub fn main_exec(cli: &cli::Cli) -> Result<()> {
    use std::io::Write as _;
    if let cli::Command::Status(cli::StatusArgs { watch: true }) = &cli.command {
        return watch_status(cli).inspect_err(|e| {
            eprintln!("vm-ctl: {}", vm_common::error_chain(e));
        });
    }
    let (result, warnings) = run(cli);
    match result {
        Ok(outcome) => {
            let (out, err) = outcome.render(cli.output);
            if !cli.quiet {
                eprint!("{err}");
            }
            print!("{out}");
            let _ = std::io::stdout().flush();
            outcome.check_result()
        }
        Err(e) => {
            for w in warnings {
                eprintln!("warning: {w}");
            }
            // the outer message names the step, its sources say why
            let msg = vm_common::error_chain(&e);
            eprintln!("vm-ctl: {msg}");
            if cli.output == output::Format::Json {
                let json = serde_json::json!({ "error": msg, "exit_code": e.exit_code() });
                println!("{json}");
            }
            Err(e)
        }
    }
}

/// Run the command the command line asks for.
pub fn run(cli: &cli::Cli) -> (Result<Outcome>, Vec<String>) {
    let app = match App::new(
        cli.config.clone(),
        cli.dry_run,
        Duration::from_secs(cli.lock_wait),
    ) {
        Ok(app) => app,
        Err(e) => return (Err(e), Vec::new()),
    };
    let result = commands::dispatch(&app, &cli.command);
    match result {
        Ok(outcome) => (Ok(app.into_outcome(outcome)), Vec::new()),
        Err(e) => (Err(e), app.config_warnings),
    }
}

/// `status --watch`: the signals first (blocked before any thread starts, then taken by one
/// thread: SIGINT, SIGTERM and SIGHUP end the watch, exit 0), then the change watcher, then
/// the loop ([`commands::status::watch`]) showing each report on stdout.
fn watch_status(cli: &cli::Cli) -> Result<()> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use vm_pcmk::watch::Trigger;

    let signals = vm_common::signals::block().map_err(|e| error::Error::Watch {
        step: "block the signals the watch stops on",
        source: e.into(),
    })?;
    let app = App::new(
        cli.config.clone(),
        cli.dry_run,
        Duration::from_secs(cli.lock_wait),
    )?;
    if !cli.quiet {
        for w in &app.config_warnings {
            eprintln!("warning: {w}");
        }
    }
    let changes = Trigger::default();
    let stop = Arc::new(AtomicBool::new(false));
    let ended = {
        let (stop, changes) = (Arc::clone(&stop), changes.clone());
        move || {
            stop.store(true, Ordering::SeqCst);
            changes.bump();
        }
    };
    let on_hup = ended.clone();
    vm_common::signals::spawn_thread(signals, on_hup, move |_| ended()).map_err(|source| {
        error::Error::Watch {
            step: "start the signal thread",
            source,
        }
    })?;
    let watcher = commands::status::ChangeWatch::start(&app, &changes)?;
    let mut screen = output::WatchScreen::new(cli.output, cli.quiet);
    let result = commands::status::watch(&app, &changes, &stop, &mut screen);
    watcher.stop();
    result
}
