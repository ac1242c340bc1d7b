//! Being told when the host cluster changes, instead of polling it.
//!
//! Pacemaker's CLI has one event stream that is not rate-limited: `crm_mon --external-agent`
//! runs a program for every resource operation result recorded in the CIB (a stop completing
//! on some node, a start failing, ...) as soon as the CIB notifies it. vm-stonithd runs one
//! such `crm_mon`, naming **itself** as the agent and a FIFO it owns as the recipient: each
//! invocation (see [`notify_from_env`]) writes one line to the FIFO and exits. A reader thread
//! turns lines into a generation count that fence waits block on ([`Watcher::wait_change`]).
//! Waits still re-read the status every [`FALLBACK`], so a lost event (crm_mon restarting, an
//! event that is not an operation, such as a node leaving) only delays a confirmation. The
//! child's care (own process group, restarts, kill on stop), the FIFO and the counter are
//! vm-common's [`supervise`](vm_common::supervise), shared with vm-managerd.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use vm_common::supervise::{Program, Supervisor, Trigger, own_fifo};

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

/// Change notifications from the host cluster.
#[derive(Debug, Clone)]
pub struct Watcher {
    generation: Trigger,
    /// The supervised crm_mon, so that [`Watcher::stop`] can kill it before the process
    /// exits (none for a manual watcher).
    crm_mon: Option<Supervisor>,
}

impl Watcher {
    /// A watcher that is only poked by hand (tests, or when crm_mon cannot run).
    pub fn manual() -> Watcher {
        Watcher {
            generation: Trigger::default(),
            crm_mon: None,
        }
    }

    /// Starts crm_mon with `agent` (this program) as its external agent, writing to a FIFO at
    /// `fifo` (created mode 0600, replacing a stale one), and a supervisor that restarts it.
    pub fn start(agent: PathBuf, fifo: PathBuf) -> std::io::Result<Watcher> {
        let reader = own_fifo(&fifo)?;
        let mut w = Watcher::manual();
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
        let restarted = w.clone();
        // a restarted crm_mon may have missed events: let waiters re-check
        w.crm_mon = Some(Supervisor::start(
            "crm-mon",
            crm_mon(&agent, &fifo),
            move || restarted.poke(),
        )?);
        Ok(w)
    }

    /// Stops crm_mon now (waiters keep working on the fallback period).
    pub fn stop(&self) {
        if let Some(crm_mon) = &self.crm_mon {
            crm_mon.stop();
        }
    }

    /// The current generation.
    pub fn generation(&self) -> u64 {
        self.generation.count()
    }

    /// Something changed (or a waiter should re-check anyway, e.g. on a cancel).
    pub fn poke(&self) {
        self.generation.bump();
    }

    /// Waits until the generation differs from `seen`, or `timeout` passes.
    pub fn wait_change(&self, seen: u64, timeout: Duration) {
        self.generation.wait(seen, timeout);
    }
}

/// crm_mon running `agent` for each operation result, with `fifo` as the recipient.
fn crm_mon(agent: &Path, fifo: &Path) -> Program {
    let mut agent_arg = OsString::from("--external-agent=");
    agent_arg.push(agent);
    let mut recipient = OsString::from("--external-recipient=");
    recipient.push(fifo);
    // text output to /dev/null keeps crm_mon in its update loop (XML would mean one-shot);
    // the long interval: updates come from CIB notifications, not from the timer
    Program {
        program: "crm_mon".into(),
        args: vec![
            agent_arg,
            recipient,
            "--output-as=text".into(),
            "--output-to=/dev/null".into(),
            "--interval=3600".into(),
        ],
        what: "crm_mon event watcher",
        meanwhile: "fence waits fall back to re-reading the status every 2 s meanwhile",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn crm_mon_names_this_program_as_its_external_agent() {
        let p = crm_mon(
            Path::new("/usr/sbin/vm-stonithd"),
            Path::new("/run/x/events"),
        );
        assert_eq!(p.program, "crm_mon");
        assert_eq!(
            p.args,
            [
                "--external-agent=/usr/sbin/vm-stonithd",
                "--external-recipient=/run/x/events",
                "--output-as=text",
                "--output-to=/dev/null",
                "--interval=3600",
            ]
        );
    }

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
