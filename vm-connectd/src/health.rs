//! Guest mode: the optional health checks whose failures the guest daemon reports in its
//! answers to the host's heartbeats (docs/protocol.md §15).
//!
//! A check is a systemd unit (`--health-unit NAME`: healthy while `systemctl is-active --quiet
//! NAME` exits 0) or a command (`--health-command PATH`: healthy while it exits 0; run without a
//! shell, without arguments, stdin empty, within the check interval, at most 4 KiB of output,
//! killed with its process group past either). Every check runs every interval, one after the
//! other, on a thread of its own; a check that failed `failures` times in a row is reported
//! failing until it succeeds once. A check failing while systemd shuts the guest down
//! (`systemctl is-system-running`: `stopping`) is not counted: a reboot is silence, not a
//! failure. Which checks exist is the guest's business: it controls only
//! its own liveness (docs/security.md).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vm_proto::Alive;
use vm_proto::message::{MAX_FAILING_CHECKS, is_check_name};

/// Default interval between two rounds of checks.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// Default consecutive failures after which a check is reported failing.
pub const DEFAULT_FAILURES: u32 = 3;
/// Output a health command may write before it is killed (and counted as failed).
const MAX_OUTPUT: usize = 4096;

/// What a check runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// A systemd unit that must be active.
    Unit(String),
    /// A command that must exit 0.
    Command(PathBuf),
}

/// One check: its name (the unit's, or the command's file name) and what it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// The name the host sees when it fails.
    pub name: String,
    /// What it runs.
    pub probe: Probe,
}

/// A check the command line names that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    /// A unit name outside the check-name alphabet.
    #[error(
        "health unit {0:?}: not a unit name (1 to 64 bytes of letters, digits, '@', ':', '_', \
         '.', '-', '\\')"
    )]
    UnitName(String),
    /// A command that is not an absolute path, or whose file name cannot be a check name.
    #[error(
        "health command {0:?}: give an absolute path whose file name is 1 to 64 bytes of \
         letters, digits, '@', ':', '_', '.', '-'"
    )]
    Command(PathBuf),
    /// Two checks with the same name.
    #[error("two health checks are named {0:?}")]
    Duplicate(String),
    /// More checks than an answer can list.
    #[error("at most {MAX_FAILING_CHECKS} health checks (units and commands together)")]
    TooMany,
}

/// The checks of `units` and `commands`, validated (in that order).
pub fn checks(units: &[String], commands: &[PathBuf]) -> Result<Vec<Check>, CheckError> {
    let mut out: Vec<Check> = Vec::new();
    for u in units {
        if !is_check_name(u) {
            return Err(CheckError::UnitName(u.clone()));
        }
        out.push(Check {
            name: u.clone(),
            probe: Probe::Unit(u.clone()),
        });
    }
    for c in commands {
        let name = c
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| c.is_absolute() && is_check_name(n) && !n.contains('\\'))
            .ok_or_else(|| CheckError::Command(c.clone()))?;
        out.push(Check {
            name: name.to_owned(),
            probe: Probe::Command(c.clone()),
        });
    }
    if out.len() > MAX_FAILING_CHECKS {
        return Err(CheckError::TooMany);
    }
    for (i, c) in out.iter().enumerate() {
        if out[..i].iter().any(|o| o.name == c.name) {
            return Err(CheckError::Duplicate(c.name.clone()));
        }
    }
    Ok(out)
}

/// The checks' state: consecutive failures per check.
#[derive(Debug, Clone, Default)]
struct State {
    failures: Vec<u32>,
}

/// The guest daemon's health, shared between the checking thread and the heartbeat answers.
#[derive(Debug, Clone, Default)]
pub struct Health {
    checks: Arc<Vec<Check>>,
    threshold: u32,
    state: Arc<Mutex<State>>,
}

impl Health {
    /// Health over `checks`, a check failing after `threshold` consecutive failures (at least 1).
    pub fn new(checks: Vec<Check>, threshold: u32) -> Self {
        let n = checks.len();
        Self {
            checks: Arc::new(checks),
            threshold: threshold.max(1),
            state: Arc::new(Mutex::new(State {
                failures: vec![0; n],
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records one result of check `i`; returns whether its reported state changed.
    fn record(&self, i: usize, ok: bool) -> bool {
        let mut st = self.lock();
        let Some(f) = st.failures.get_mut(i) else {
            return false;
        };
        let before = *f >= self.threshold;
        *f = if ok { 0 } else { f.saturating_add(1) };
        before != (*f >= self.threshold)
    }

    /// The names of the checks failing now, in the order given.
    pub fn failing(&self) -> Vec<String> {
        let st = self.lock();
        self.checks
            .iter()
            .zip(&st.failures)
            .filter(|(_, f)| **f >= self.threshold)
            .map(|(c, _)| c.name.clone())
            .collect()
    }

    /// The answer to a heartbeat.
    pub fn alive(&self) -> Alive {
        // (the names were validated against Alive's rules when the checks were made)
        Alive::new(self.failing()).unwrap_or_default()
    }

    /// Starts the thread that runs every check every `interval` (none without checks).
    pub fn start(&self, interval: Duration) -> std::io::Result<()> {
        if self.checks.is_empty() {
            return Ok(());
        }
        let health = self.clone();
        std::thread::Builder::new()
            .name("health".into())
            .spawn(move || {
                loop {
                    let started = std::time::Instant::now();
                    for (i, check) in health.checks.iter().enumerate() {
                        // A check that fails while systemd shuts the guest down (its units
                        // stop before this daemon does) is not counted: a guest that reboots
                        // would read `unhealthy` and its monitor fail; it goes silent instead,
                        // which the liveness timeout is there to outlast.
                        let ok = run_probe(&check.probe, interval) || system_stopping(interval);
                        if health.record(i, ok) {
                            if ok {
                                tracing::info!(check = %check.name, "health check passes again");
                            } else {
                                tracing::warn!(
                                    check = %check.name,
                                    "health check failed {} times in a row: reported failing",
                                    health.threshold
                                );
                            }
                        }
                    }
                    std::thread::sleep(interval.saturating_sub(started.elapsed()));
                }
            })
            .map(|_| ())
    }
}

/// Runs one probe, bounded by `timeout`; whether it passed.
fn run_probe(probe: &Probe, timeout: Duration) -> bool {
    let cmd = match probe {
        Probe::Unit(u) => {
            vm_common::process::Cmd::new("systemctl").args(["is-active", "--quiet", u])
        }
        Probe::Command(p) => vm_common::process::Cmd::new(p),
    };
    match cmd
        .timeout(timeout)
        .max_stdout(MAX_OUTPUT)
        .discard_stderr()
        .run()
    {
        Ok(out) => out.success(),
        Err(e) => {
            tracing::debug!("health check: {}", vm_common::error_chain(&e));
            false
        }
    }
}

/// Whether systemd is shutting the system down (`systemctl is-system-running` prints
/// `stopping`), bounded by `timeout`; false without systemd.
fn system_stopping(timeout: Duration) -> bool {
    let stopping = vm_common::process::Cmd::new("systemctl")
        .args(["is-system-running"])
        .timeout(timeout)
        .max_stdout(64)
        .discard_stderr()
        .run()
        .is_ok_and(|out| out.stdout_text().trim() == "stopping");
    if stopping {
        tracing::debug!("the system is shutting down: a failed health check is not counted");
    }
    stopping
}

/// What `check` runs, for messages.
pub fn describe(check: &Check) -> String {
    match &check.probe {
        Probe::Unit(u) => format!("unit {u}"),
        Probe::Command(p) => format!("command {}", Path::new(p).display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_are_validated() {
        let u = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let c = |v: &[&str]| v.iter().map(PathBuf::from).collect::<Vec<_>>();
        let ok = checks(
            &u(&["db.service", "getty@tty1.service"]),
            &c(&["/usr/bin/check-web"]),
        )
        .unwrap();
        assert_eq!(
            ok.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            ["db.service", "getty@tty1.service", "check-web"]
        );
        assert_eq!(
            checks(&u(&["a b"]), &[]),
            Err(CheckError::UnitName("a b".into()))
        );
        assert_eq!(
            checks(&[], &c(&["check"])),
            Err(CheckError::Command("check".into()))
        );
        assert_eq!(
            checks(&[], &c(&["/bin/a b"])),
            Err(CheckError::Command("/bin/a b".into()))
        );
        assert_eq!(
            checks(&u(&["x"]), &c(&["/bin/x"])),
            Err(CheckError::Duplicate("x".into()))
        );
        let many: Vec<String> = (0..9).map(|i| format!("u{i}")).collect();
        assert_eq!(checks(&many, &[]), Err(CheckError::TooMany));
    }

    #[test]
    fn a_check_fails_after_its_threshold_and_recovers_at_once() {
        let checks = checks(&["a".into(), "b".into()], &[]).unwrap();
        let h = Health::new(checks, 3);
        assert!(h.alive().failing().is_empty());
        assert!(!h.record(0, false));
        assert!(!h.record(0, false));
        assert!(!h.record(1, false));
        assert!(h.record(0, false));
        assert_eq!(h.failing(), ["a"]);
        assert!(!h.record(0, false));
        assert_eq!(h.alive().failing(), ["a"]);
        assert!(h.record(0, true));
        assert!(h.failing().is_empty());
    }

    #[test]
    fn commands_run_without_a_shell_within_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let script = |name: &str, body: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
            let mut perm = std::fs::metadata(&p).unwrap().permissions();
            std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
            std::fs::set_permissions(&p, perm).unwrap();
            p
        };
        let t = Duration::from_secs(5);
        assert!(run_probe(&Probe::Command(script("ok", "exit 0")), t));
        assert!(!run_probe(&Probe::Command(script("bad", "exit 1")), t));
        assert!(!run_probe(
            &Probe::Command(script("slow", "sleep 10")),
            Duration::from_millis(300)
        ));
        assert!(!run_probe(&Probe::Command(script("chatty", "yes")), t));
        assert!(!run_probe(&Probe::Command(dir.path().join("missing")), t));
    }
}
