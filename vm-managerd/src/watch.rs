//! Being told when the CIB changes (docs/protocol.md §14.4).
//!
//! `crm_mon` in its update loop redraws its text output on every CIB change it is notified
//! of. vm-managerd runs one with that output going into a FIFO it owns; a reader thread turns
//! each burst of bytes into a bump of a [`Trigger`], on which the refresher waits. Nothing
//! crm_mon prints is parsed: the bytes only say "something changed, read again".
//! (`crm_mon --external-agent`, which vm-stonithd uses, runs for resource operations only; a
//! node attribute change is not one.)

use std::fs::OpenOptions;
use std::io::Read;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// A change counter others wait on.
#[derive(Debug, Clone, Default)]
pub struct Trigger {
    inner: Arc<(Mutex<u64>, Condvar)>,
}

impl Trigger {
    /// Something changed (or should be read again).
    pub fn bump(&self) {
        let (lock, cvar) = &*self.inner;
        let mut g = lock.lock().unwrap_or_else(|e| e.into_inner());
        *g = g.wrapping_add(1);
        cvar.notify_all();
    }

    /// The current count.
    pub fn count(&self) -> u64 {
        *self.inner.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until the count differs from `seen` or `timeout` passes; returns the count.
    pub fn wait(&self, seen: u64, timeout: Duration) -> u64 {
        let (lock, cvar) = &*self.inner;
        let g = lock.lock().unwrap_or_else(|e| e.into_inner());
        match cvar.wait_timeout_while(g, timeout, |c| *c == seen) {
            Ok((g, _)) => *g,
            Err(e) => *e.into_inner().0,
        }
    }
}

/// The running crm_mon watcher.
#[derive(Debug)]
pub struct CibWatch {
    stop: Arc<AtomicBool>,
    pid: Arc<AtomicI32>,
}

impl CibWatch {
    /// Makes the FIFO `fifo` (mode 0600, replacing a stale one), starts the reader and a
    /// supervisor that keeps one crm_mon writing into it; each burst of output bumps `trigger`.
    pub fn start(fifo: PathBuf, trigger: Trigger) -> std::io::Result<CibWatch> {
        if std::fs::symlink_metadata(&fifo).is_ok() {
            std::fs::remove_file(&fifo)?;
        }
        nix::unistd::mkfifo(
            &fifo,
            nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR,
        )
        .map_err(std::io::Error::from)?;
        // read-write: no end-of-file when a crm_mon exits, and crm_mon's open never blocks
        let mut reader = OpenOptions::new().read(true).write(true).open(&fifo)?;
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
        let watch = CibWatch {
            stop: Arc::new(AtomicBool::new(false)),
            pid: Arc::new(AtomicI32::new(0)),
        };
        let (stop, pid) = (watch.stop.clone(), watch.pid.clone());
        thread::Builder::new()
            .name("crm-mon".into())
            .spawn(move || supervise(&fifo, &stop, &pid, &trigger))?;
        Ok(watch)
    }

    /// Stops crm_mon.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let pid = self.pid.swap(0, Ordering::SeqCst);
        if pid > 0 {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

fn supervise(fifo: &Path, stop: &AtomicBool, pid: &AtomicI32, trigger: &Trigger) {
    let mut backoff = Duration::from_millis(500);
    while !stop.load(Ordering::SeqCst) {
        let started = Instant::now();
        match spawn_crm_mon(fifo) {
            Ok(mut child) => {
                pid.store(i32::try_from(child.id()).unwrap_or(0), Ordering::SeqCst);
                tracing::debug!(pid = child.id(), "crm_mon CIB watcher started");
                loop {
                    if stop.load(Ordering::SeqCst) {
                        if let Ok(p) = i32::try_from(child.id()) {
                            let _ = killpg(Pid::from_raw(p), Signal::SIGKILL);
                        }
                        let _ = child.wait();
                        return;
                    }
                    match child.try_wait() {
                        Ok(Some(status)) => {
                            tracing::warn!(%status, "crm_mon CIB watcher exited; restarting it (changes are still read every refresh period)");
                            break;
                        }
                        Ok(None) => thread::sleep(Duration::from_millis(200)),
                        Err(_) => break,
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot start crm_mon to watch the CIB"),
        }
        if started.elapsed() > Duration::from_secs(30) {
            backoff = Duration::from_millis(500);
        }
        thread::sleep(backoff);
        backoff = (backoff * 2).min(Duration::from_secs(10));
        // a new crm_mon may have missed changes
        trigger.bump();
    }
}

#[allow(unsafe_code)]
fn spawn_crm_mon(fifo: &Path) -> std::io::Result<std::process::Child> {
    let mut output = std::ffi::OsString::from("--output-to=");
    output.push(fifo);
    let mut cmd = Command::new("crm_mon");
    // Text output keeps crm_mon in its update loop, redrawing on CIB notifications. crm_mon
    // redraws at once only when its last redraw is more than `--interval` old, counted in
    // whole seconds, and otherwise 2 s later: with a long interval every change after the
    // first waited those 2 s (measured: p50 2.03 s). Below one second, the test is "the last
    // redraw was in an earlier second of the clock", so a change is seen at once unless another
    // redraw happened within the same second.
    cmd.arg("--output-as=text")
        .arg(output)
        .arg("--interval=500ms")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    let parent = nix::unistd::getpid();
    // SAFETY: runs in the forked child before exec; only the async-signal-safe prctl(2) and
    // getppid(2) system calls, no allocation, no lock.
    unsafe {
        cmd.pre_exec(move || {
            // crm_mon must not outlive vm-managerd, even one killed with SIGKILL
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)?;
            if nix::unistd::getppid() != parent {
                return Err(std::io::Error::other("parent exited"));
            }
            Ok(())
        });
    }
    cmd.spawn()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiters_wake_on_a_bump_or_time_out() {
        let t = Trigger::default();
        let seen = t.count();
        let start = Instant::now();
        assert_eq!(t.wait(seen, Duration::from_millis(30)), seen);
        assert!(start.elapsed() >= Duration::from_millis(30));
        let b = t.clone();
        let h = thread::spawn(move || {
            thread::sleep(Duration::from_millis(20));
            b.bump();
        });
        assert_ne!(t.wait(seen, Duration::from_secs(10)), seen);
        h.join().unwrap();
    }
}
