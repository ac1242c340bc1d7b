//! Being told when the host cluster changes, instead of polling it.
//!
//! Pacemaker's CLI has one event stream that is not rate-limited: `crm_mon --external-agent`
//! runs a program for every resource operation result recorded in the CIB (a stop completing
//! on some node, a start failing, ...) as soon as the CIB notifies it. vm-stonithd runs one
//! such `crm_mon`, naming **itself** as the agent and a FIFO it owns as the recipient: each
//! invocation (see [`notify_from_env`]) writes one line to the FIFO and exits. A reader thread
//! turns lines into a generation count that fence waits block on ([`Watcher::wait_change`]).
//! Waits still re-read the status every [`FALLBACK`], so a lost event (crm_mon restarting, an
//! event that is not an operation, such as a node leaving) only delays a confirmation.

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// Longest a wait goes without re-reading the status, events or not.
pub const FALLBACK: Duration = Duration::from_secs(2);

/// Environment variable crm_mon sets for its external agent: the recipient (our FIFO).
const RECIPIENT_ENV: &str = "CRM_notify_recipient";
/// Set by crm_mon for its external agent: the operation.
const TASK_ENV: &str = "CRM_notify_task";

/// If this process was started by crm_mon as its external agent, passes the event on to the
/// FIFO and returns `true` (the caller exits). A recipient that is not a FIFO is ignored: the
/// agent writes nowhere else.
pub fn notify_from_env() -> bool {
    let (Some(recipient), Some(task)) =
        (std::env::var_os(RECIPIENT_ENV), std::env::var_os(TASK_ENV))
    else {
        return false;
    };
    let path = Path::new(&recipient);
    let is_fifo = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_fifo());
    if is_fifo {
        let var = |k: &str| std::env::var(k).unwrap_or_default();
        let line = format!(
            "{} {} {} {}\n",
            var("CRM_notify_rsc"),
            task.to_string_lossy(),
            var("CRM_notify_rc"),
            var("CRM_notify_node")
        );
        // Non-blocking: with no reader (vm-stonithd gone) the open fails at once, and a full
        // FIFO drops the event rather than stalling crm_mon.
        if let Ok(mut fifo) = OpenOptions::new()
            .write(true)
            .custom_flags(libc_o_nonblock())
            .open(path)
        {
            let _ = fifo.write_all(line.as_bytes());
        }
    }
    true
}

fn libc_o_nonblock() -> i32 {
    nix::fcntl::OFlag::O_NONBLOCK.bits()
}

#[derive(Debug, Default)]
struct State {
    generation: u64,
}

/// Change notifications from the host cluster.
#[derive(Debug, Clone)]
pub struct Watcher {
    shared: Arc<(Mutex<State>, Condvar)>,
    stop: Arc<AtomicBool>,
    /// The running crm_mon's pid (its own process group), so that [`Watcher::stop`] can kill
    /// it before the process exits.
    child: Arc<Mutex<Option<i32>>>,
}

impl Watcher {
    /// A watcher that is only poked by hand (tests, or when crm_mon cannot run).
    pub fn manual() -> Watcher {
        Watcher {
            shared: Arc::new((Mutex::new(State::default()), Condvar::new())),
            stop: Arc::new(AtomicBool::new(false)),
            child: Arc::new(Mutex::new(None)),
        }
    }

    /// Starts crm_mon with `agent` (this program) as its external agent, writing to a FIFO at
    /// `fifo` (created mode 0600, replacing a stale one), and a supervisor that restarts it.
    pub fn start(agent: PathBuf, fifo: PathBuf) -> std::io::Result<Watcher> {
        if std::fs::symlink_metadata(&fifo).is_ok() {
            std::fs::remove_file(&fifo)?;
        }
        nix::unistd::mkfifo(
            &fifo,
            nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR,
        )
        .map_err(std::io::Error::from)?;
        // Read-write: the FIFO then never reports end-of-file when an agent closes it.
        let reader = OpenOptions::new().read(true).write(true).open(&fifo)?;
        let w = Watcher::manual();
        let events = w.clone();
        thread::Builder::new()
            .name("crm-events".into())
            .spawn(move || {
                for line in BufReader::new(reader).lines() {
                    let Ok(line) = line else { break };
                    tracing::trace!(event = %line, "cluster event");
                    events.poke();
                }
            })?;
        let sup = w.clone();
        thread::Builder::new()
            .name("crm-mon".into())
            .spawn(move || sup.supervise(&agent, &fifo))?;
        Ok(w)
    }

    fn supervise(&self, agent: &Path, fifo: &Path) {
        let mut backoff = Duration::from_millis(500);
        while !self.stop.load(Ordering::Relaxed) {
            let started = Instant::now();
            match spawn_crm_mon(agent, fifo) {
                Ok(mut child) => {
                    tracing::debug!(pid = child.id(), "crm_mon event watcher started");
                    *self.child.lock().unwrap_or_else(|e| e.into_inner()) =
                        i32::try_from(child.id()).ok();
                    loop {
                        if self.stop.load(Ordering::Relaxed) {
                            kill_group(&child);
                            let _ = child.wait();
                            return;
                        }
                        match child.try_wait() {
                            Ok(Some(status)) => {
                                tracing::warn!(%status, "crm_mon event watcher exited; restarting it (fence waits fall back to re-reading the status every 2 s meanwhile)");
                                break;
                            }
                            Ok(None) => thread::sleep(Duration::from_millis(200)),
                            Err(_) => break,
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot start crm_mon for cluster events"),
            }
            if started.elapsed() > Duration::from_secs(30) {
                backoff = Duration::from_millis(500);
            }
            thread::sleep(backoff);
            backoff = (backoff * 2).min(Duration::from_secs(10));
            // a restarted crm_mon may have missed events: let waiters re-check
            self.poke();
        }
    }

    /// Stops crm_mon now (waiters keep working on the fallback period).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(pid) = self.child.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }

    /// The current generation.
    pub fn generation(&self) -> u64 {
        let (lock, _) = &*self.shared;
        lock.lock().unwrap_or_else(|e| e.into_inner()).generation
    }

    /// Something changed (or a waiter should re-check anyway, e.g. on a cancel).
    pub fn poke(&self) {
        let (lock, cvar) = &*self.shared;
        let mut s = lock.lock().unwrap_or_else(|e| e.into_inner());
        s.generation = s.generation.wrapping_add(1);
        cvar.notify_all();
    }

    /// Waits until the generation differs from `seen`, or `timeout` passes.
    pub fn wait_change(&self, seen: u64, timeout: Duration) {
        let (lock, cvar) = &*self.shared;
        let guard = lock.lock().unwrap_or_else(|e| e.into_inner());
        let _ = cvar
            .wait_timeout_while(guard, timeout, |s| s.generation == seen)
            .map_err(|e| e.into_inner());
    }
}

#[allow(unsafe_code)]
fn spawn_crm_mon(agent: &Path, fifo: &Path) -> std::io::Result<Child> {
    let mut agent_arg = std::ffi::OsString::from("--external-agent=");
    agent_arg.push(agent);
    let mut recipient = std::ffi::OsString::from("--external-recipient=");
    recipient.push(fifo);
    // text output to /dev/null keeps crm_mon in its update loop (XML would mean one-shot);
    // the long interval: updates come from CIB notifications, not from the timer
    let mut cmd = Command::new("crm_mon");
    cmd.arg(agent_arg)
        .arg(recipient)
        .args([
            "--output-as=text",
            "--output-to=/dev/null",
            "--interval=3600",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    // crm_mon must not outlive vm-stonithd, even one killed with SIGKILL: the kernel kills it
    // when the thread that started it (the supervisor, which lives as long as the process)
    // dies. (crm_mon ignores SIGTERM while its main loop runs, hence SIGKILL.)
    let parent = nix::unistd::getpid();
    // SAFETY: the closure runs in the forked child before exec and only makes the prctl(2)
    // and getppid(2) system calls, which are async-signal-safe; it allocates nothing and
    // takes no lock.
    unsafe {
        cmd.pre_exec(move || {
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

use std::os::unix::process::CommandExt as _;

fn kill_group(child: &Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiters_wake_on_poke_or_time_out() {
        let w = Watcher::manual();
        let g = w.generation();
        let t = Instant::now();
        w.wait_change(g, Duration::from_millis(50));
        assert!(t.elapsed() >= Duration::from_millis(50));
        let poker = w.clone();
        let h = thread::spawn(move || {
            thread::sleep(Duration::from_millis(20));
            poker.poke();
        });
        let t = Instant::now();
        w.wait_change(g, Duration::from_secs(10));
        assert!(t.elapsed() < Duration::from_secs(5));
        assert_ne!(w.generation(), g);
        h.join().unwrap();
    }
}
