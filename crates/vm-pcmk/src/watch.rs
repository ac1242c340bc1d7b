//! Being told when the CIB changes, through `crm_mon`.
//!
//! `crm_mon` in its update loop redraws its text output on every CIB change it is notified
//! of. [`CibWatch`] runs one with that output going into a FIFO its owner makes; a reader thread
//! turns each burst of bytes into a bump of a [`Trigger`] (the child's care, the FIFO and the
//! counter are vm-common's [`supervise`](vm_common::supervise)). Nothing crm_mon prints is
//! parsed: the bytes only say "something changed, read again". (`crm_mon --external-agent`,
//! which vm-stonithd uses, runs for resource operations only; a node attribute change is not
//! one.) Users: vm-managerd (docs/protocol.md §14.4) and `vm-ctl status --watch`.
//!
//! On a CIB file, which sends no notifications, crm_mon draws once and exits: [`FileWatch`]
//! looks at the file instead.

use std::ffi::OsString;
use std::io::Read;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

pub use vm_common::supervise::Trigger;
use vm_common::supervise::{Program, Supervisor, own_fifo};

/// The running crm_mon watcher.
#[derive(Debug)]
pub struct CibWatch {
    crm_mon: Supervisor,
}

impl CibWatch {
    /// Makes the FIFO `fifo` (mode 0600, replacing a stale one), starts the reader and a
    /// supervisor that keeps one crm_mon writing into it; each burst of output bumps `trigger`.
    /// `meanwhile` says, for the log line when crm_mon exits, what still works until it is
    /// restarted.
    pub fn start(
        fifo: PathBuf,
        trigger: Trigger,
        meanwhile: &'static str,
    ) -> std::io::Result<CibWatch> {
        let mut reader = own_fifo(&fifo)?;
        let t = trigger.clone();
        thread::Builder::new()
            .name("cib-events".into())
            .spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = reader.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    t.bump();
                }
            })?;
        // a new crm_mon may have missed changes
        let crm_mon =
            Supervisor::start("crm-mon", crm_mon(&fifo, meanwhile), move || trigger.bump())?;
        Ok(CibWatch { crm_mon })
    }

    /// Stops crm_mon.
    pub fn stop(&self) {
        self.crm_mon.stop();
    }
}

/// A CIB file watched for changes: a thread compares its inode, size and modification time
/// every `period` (Pacemaker's tools replace or rewrite the file on each change) and bumps the
/// trigger when they differ.
#[derive(Debug)]
pub struct FileWatch {
    stop: Arc<AtomicBool>,
}

impl FileWatch {
    /// Starts watching `path`.
    pub fn start(path: PathBuf, trigger: Trigger, period: Duration) -> std::io::Result<FileWatch> {
        let stop = Arc::new(AtomicBool::new(false));
        let s = Arc::clone(&stop);
        let stamp = move || {
            std::fs::metadata(&path)
                .ok()
                .map(|m| (m.ino(), m.len(), m.mtime(), m.mtime_nsec()))
        };
        let mut last = stamp();
        thread::Builder::new()
            .name("cib-file".into())
            .spawn(move || {
                while !s.load(Ordering::SeqCst) {
                    thread::sleep(period);
                    let now = stamp();
                    if now != last {
                        last = now;
                        trigger.bump();
                    }
                }
            })?;
        Ok(FileWatch { stop })
    }

    /// Stops the thread (at its next look).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// crm_mon redrawing its text output into `fifo`.
fn crm_mon(fifo: &Path, meanwhile: &'static str) -> Program {
    let mut output = OsString::from("--output-to=");
    output.push(fifo);
    // Text output keeps crm_mon in its update loop, redrawing on CIB notifications. crm_mon
    // redraws at once only when its last redraw is more than `--interval` old, counted in
    // whole seconds, and otherwise 2 s later: with a long interval every change after the
    // first waited those 2 s (measured: p50 2.03 s). Below one second, the test is "the last
    // redraw was in an earlier second of the clock", so a change is seen at once unless another
    // redraw happened within the same second.
    Program {
        program: "crm_mon".into(),
        args: vec!["--output-as=text".into(), output, "--interval=500ms".into()],
        what: "crm_mon CIB watcher",
        meanwhile,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[test]
    fn a_file_change_bumps_the_trigger() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cib.xml");
        std::fs::write(&path, "a").unwrap();
        let trigger = Trigger::default();
        let seen = trigger.count();
        let w = FileWatch::start(path.clone(), trigger.clone(), Duration::from_millis(20)).unwrap();
        // nothing changed: no bump
        assert_eq!(trigger.wait(seen, Duration::from_millis(100)), seen);
        // replaced, as cibadmin does
        let new = dir.path().join("new.xml");
        std::fs::write(&new, "bb").unwrap();
        std::fs::rename(&new, &path).unwrap();
        let t0 = Instant::now();
        assert_ne!(trigger.wait(seen, Duration::from_secs(10)), seen);
        assert!(t0.elapsed() < Duration::from_secs(5));
        w.stop();
    }

    #[test]
    fn crm_mon_redraws_text_into_the_fifo_twice_a_second() {
        let p = crm_mon(Path::new("/run/x/cib-events"), "x");
        assert_eq!(p.program, "crm_mon");
        assert_eq!(
            p.args,
            [
                "--output-as=text",
                "--output-to=/run/x/cib-events",
                "--interval=500ms"
            ]
        );
    }
}
