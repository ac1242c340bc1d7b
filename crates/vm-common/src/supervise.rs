//! Keeping one long-running child program alive for as long as a daemon runs, and the
//! change counter its output feeds.
//!
//! Both daemons that listen to the cluster (vm-stonithd, vm-managerd) run a `crm_mon` child
//! whose output goes into a FIFO they own; what they ask crm_mon for differs (their `watch`
//! modules say why), the care of the child does not: it runs in a process group of its own,
//! dies with the daemon even if the daemon is SIGKILLed, is restarted with back-off when it
//! exits, and its whole group is killed on [`Supervisor::stop`]. [`Trigger`] is the counter
//! waiters block on; [`own_fifo`] makes the FIFO.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// First wait before a restart; it doubles up to [`MAX_BACKOFF`] while the child keeps
/// exiting, and starts again from here after a child that ran [`STABLE_RUN`].
const MIN_BACKOFF: Duration = Duration::from_millis(500);
/// Longest wait before a restart.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// A child that ran this long was not failing at start: the back-off is reset.
const STABLE_RUN: Duration = Duration::from_secs(30);
/// How often the supervisor looks whether the child exited or a stop was asked for.
const POLL: Duration = Duration::from_millis(200);

/// A change counter others wait on.
#[derive(Debug, Clone, Default)]
pub struct Trigger {
    inner: Arc<(Mutex<u64>, Condvar)>,
}

impl Trigger {
    /// Something changed (or waiters should read again).
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

/// Makes the FIFO `path` (mode 0600, replacing whatever stale file is there) and opens it for
/// reading. It is opened read-write: it then never reports end-of-file when a writer closes
/// it, and a writer's open never blocks.
pub fn own_fifo(path: &Path) -> std::io::Result<File> {
    if std::fs::symlink_metadata(path).is_ok() {
        std::fs::remove_file(path)?;
    }
    nix::unistd::mkfifo(
        path,
        nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR,
    )
    .map_err(std::io::Error::from)?;
    OpenOptions::new().read(true).write(true).open(path)
}

/// What to run and how to name it in the log.
#[derive(Debug, Clone)]
pub struct Program {
    /// The program (looked up in `PATH`).
    pub program: OsString,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// What it is, for the log: "crm_mon event watcher".
    pub what: &'static str,
    /// What still works while it is restarted, for the log line when it exits.
    pub meanwhile: &'static str,
}

/// A supervised child: restarted until [`Supervisor::stop`].
#[derive(Debug, Clone)]
pub struct Supervisor {
    stop: Arc<AtomicBool>,
    /// The running child's pid, which is also its process group (0: none).
    pid: Arc<AtomicI32>,
}

impl Supervisor {
    /// Starts a thread `thread_name` that keeps `program` running. `on_restart` runs after
    /// each wait before a restart: a new child may have missed what the old one would have
    /// reported, so waiters should read again.
    pub fn start(
        thread_name: &str,
        program: Program,
        on_restart: impl Fn() + Send + 'static,
    ) -> std::io::Result<Supervisor> {
        let sup = Supervisor {
            stop: Arc::new(AtomicBool::new(false)),
            pid: Arc::new(AtomicI32::new(0)),
        };
        let s = sup.clone();
        thread::Builder::new()
            .name(thread_name.into())
            .spawn(move || s.supervise(&program, &on_restart))?;
        Ok(sup)
    }

    /// Stops the child now (kills its whole process group) and does not restart it.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let pid = self.pid.swap(0, Ordering::SeqCst);
        if pid > 0 {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }

    /// The running child's pid, if one runs.
    pub fn pid(&self) -> Option<u32> {
        u32::try_from(self.pid.load(Ordering::SeqCst))
            .ok()
            .filter(|p| *p > 0)
    }

    fn supervise(&self, program: &Program, on_restart: &dyn Fn()) {
        let mut backoff = MIN_BACKOFF;
        while !self.stop.load(Ordering::SeqCst) {
            let started = Instant::now();
            match spawn(program) {
                Ok(mut child) => {
                    self.pid
                        .store(i32::try_from(child.id()).unwrap_or(0), Ordering::SeqCst);
                    tracing::debug!(pid = child.id(), "{} started", program.what);
                    loop {
                        if self.stop.load(Ordering::SeqCst) {
                            if let Ok(p) = i32::try_from(child.id()) {
                                let _ = killpg(Pid::from_raw(p), Signal::SIGKILL);
                            }
                            let _ = child.wait();
                            return;
                        }
                        match child.try_wait() {
                            Ok(Some(status)) => {
                                self.pid.store(0, Ordering::SeqCst);
                                tracing::warn!(
                                    %status,
                                    "{} exited; restarting it ({})",
                                    program.what,
                                    program.meanwhile
                                );
                                break;
                            }
                            Ok(None) => thread::sleep(POLL),
                            Err(_) => break,
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot start {}", program.what),
            }
            if started.elapsed() > STABLE_RUN {
                backoff = MIN_BACKOFF;
            }
            thread::sleep(backoff);
            backoff = (backoff * 2).min(MAX_BACKOFF);
            on_restart();
        }
    }
}

#[allow(unsafe_code)]
fn spawn(program: &Program) -> std::io::Result<Child> {
    let mut cmd = Command::new(&program.program);
    cmd.args(&program.args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // its own group, so that a stop kills whatever it started too
        .process_group(0);
    let parent = nix::unistd::getpid();
    // SAFETY: the closure runs in the forked child before exec and only makes the prctl(2)
    // and getppid(2) system calls, which are async-signal-safe; it allocates nothing and
    // takes no lock.
    unsafe {
        cmd.pre_exec(move || {
            // The child must not outlive the daemon, even one killed with SIGKILL: the kernel
            // kills it when the thread that started it (the supervisor, which lives as long
            // as the process) dies. SIGKILL because crm_mon ignores SIGTERM in its main loop.
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)?;
            // the parent may have died before the prctl took effect
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
    use std::io::Read as _;
    use std::sync::atomic::AtomicU32;

    fn sh(script: &str) -> Program {
        Program {
            program: "sh".into(),
            args: vec!["-c".into(), script.into()],
            what: "test child",
            meanwhile: "nothing",
        }
    }

    fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn alive(pid: i32) -> bool {
        nix::sys::signal::kill(Pid::from_raw(pid), None).is_ok()
    }

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

    #[test]
    fn a_child_that_exits_is_restarted_and_waiters_are_told() {
        let restarts = Arc::new(AtomicU32::new(0));
        let r = restarts.clone();
        let sup = Supervisor::start("test-sup", sh("exit 0"), move || {
            r.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
        // back-off 0.5 s then 1 s: two restarts within a few seconds
        wait_for("two restarts", || restarts.load(Ordering::SeqCst) >= 2);
        sup.stop();
    }

    #[test]
    fn stop_kills_the_childs_whole_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("grandchild");
        // the child starts a grandchild in its group and waits for it
        let script = format!("sleep 300 & echo $! > {}; wait", pidfile.display());
        let sup = Supervisor::start("test-sup", sh(&script), || {}).unwrap();
        wait_for("the child", || sup.pid().is_some());
        let child = i32::try_from(sup.pid().unwrap()).unwrap();
        wait_for("the grandchild's pid", || {
            std::fs::read_to_string(&pidfile).is_ok_and(|s| s.trim().parse::<i32>().is_ok())
        });
        let grandchild: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(
            nix::unistd::getpgid(Some(Pid::from_raw(child)))
                .unwrap()
                .as_raw(),
            child
        );
        sup.stop();
        wait_for("the grandchild to die", || !alive(grandchild));
        assert_eq!(sup.pid(), None);
    }

    #[test]
    fn the_fifo_replaces_a_stale_file_and_sees_no_end_of_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events");
        std::fs::write(&path, "stale").unwrap();
        let mut reader = own_fifo(&path).unwrap();
        {
            use std::os::unix::fs::FileTypeExt as _;
            let meta = std::fs::symlink_metadata(&path).unwrap();
            assert!(meta.file_type().is_fifo());
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        }
        // a writer opens, writes and closes: the reader gets the bytes, and then no EOF
        std::fs::write(&path, "x").unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(reader.read(&mut buf).unwrap(), 1);
        let flags = nix::fcntl::fcntl(&reader, nix::fcntl::FcntlArg::F_GETFL).unwrap();
        let mut flags = nix::fcntl::OFlag::from_bits_retain(flags);
        flags.insert(nix::fcntl::OFlag::O_NONBLOCK);
        nix::fcntl::fcntl(&reader, nix::fcntl::FcntlArg::F_SETFL(flags)).unwrap();
        let e = reader.read(&mut buf).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock);
    }
}
