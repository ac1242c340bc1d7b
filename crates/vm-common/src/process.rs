//! Bounded execution of external programs.
//!
//! Everything we call (`cibadmin`, `crm_mon`, `crm_simulate`, `virsh`, an operator's decrypt
//! command) is run from an argv vector, never through a shell, so no argument can be
//! interpreted as shell syntax. Each run has a deadline: when it passes, the whole process group
//! is killed and the caller gets [`ProcessError::Timeout`] naming the program.
//!
//! The deadline is implemented without polling: a helper thread blocks in
//! `waitid(WEXITED | WNOWAIT)`, which reports the exit without reaping the child. The child
//! stays a zombie until this module reaps it, so its pid cannot be reused by an unrelated
//! process while we might still send it a signal.

use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{Id, WaitPidFlag, waitid};
use nix::unistd::Pid;

/// Default deadline for a tool call when the caller does not choose one.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Why running a program failed (as opposed to the program failing, which is an [`Output`]
/// with a non-zero status).
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The program could not be started (not installed, not executable, ...).
    #[error("Cannot start `{program}`")]
    Spawn {
        /// The program that could not be started.
        program: String,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// The program ran past its deadline and was killed.
    #[error("`{program}` did not finish within {after:?} and was killed")]
    Timeout {
        /// The program that was killed.
        program: String,
        /// The deadline it exceeded.
        after: Duration,
    },
    /// Waiting for the program or collecting its output failed.
    #[error("Lost track of `{program}` while waiting for it")]
    Wait {
        /// The program being waited for.
        program: String,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
}

/// What a finished program left behind.
#[derive(Debug, Clone)]
pub struct Output {
    /// Exit status.
    pub status: ExitStatus,
    /// Everything written to stdout.
    pub stdout: Vec<u8>,
    /// Everything written to stderr.
    pub stderr: Vec<u8>,
    /// Wall-clock time from spawn to exit.
    pub elapsed: Duration,
}

impl Output {
    /// True when the program exited with status 0.
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Exit code, or `None` when the program was killed by a signal.
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// stdout as text (invalid UTF-8 replaced).
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// stderr as text (invalid UTF-8 replaced), trimmed.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).trim().to_owned()
    }
}

/// A program invocation: argv, environment changes, optional stdin, deadline.
#[derive(Debug, Clone)]
pub struct Cmd {
    program: OsString,
    args: Vec<OsString>,
    env: Vec<(OsString, Option<OsString>)>,
    stdin: Option<Vec<u8>>,
    timeout: Duration,
}

impl Cmd {
    /// Start describing a call to `program` (looked up in `PATH` like `execvp`).
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        Self {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            env: Vec::new(),
            stdin: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Append one argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Append several arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Set an environment variable for the child.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env
            .push((key.as_ref().to_owned(), Some(value.as_ref().to_owned())));
        self
    }

    /// Remove an environment variable from the child's environment.
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Self {
        self.env.push((key.as_ref().to_owned(), None));
        self
    }

    /// Bytes to feed on stdin (stdin is `/dev/null` otherwise).
    pub fn stdin(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(data.into());
        self
    }

    /// Deadline for the whole run.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The program name, for messages.
    pub fn program(&self) -> String {
        self.program.to_string_lossy().into_owned()
    }

    /// The argv as one line, for logs and error messages (not for execution).
    pub fn display(&self) -> String {
        std::iter::once(&self.program)
            .chain(&self.args)
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Run to completion or until the deadline.
    pub fn run(&self) -> Result<Output, ProcessError> {
        let program = self.program();
        let started = Instant::now();
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Own process group: on timeout we kill the program and anything it started.
            .process_group(0);
        for (key, value) in &self.env {
            match value {
                Some(v) => command.env(key, v),
                None => command.env_remove(key),
            };
        }
        let mut child = command.spawn().map_err(|source| ProcessError::Spawn {
            program: program.clone(),
            source,
        })?;
        tracing::trace!(argv = %self.display(), pid = child.id(), "started");

        let feeder = match (child.stdin.take(), self.stdin.clone()) {
            (Some(mut pipe), Some(data)) => Some(thread::spawn(move || {
                // A program that exits without reading its stdin gives EPIPE: not our error.
                let _ = pipe.write_all(&data);
            })),
            _ => None,
        };
        let out_reader = child.stdout.take().map(spawn_reader);
        let err_reader = child.stderr.take().map(spawn_reader);

        let raw_pid = i32::try_from(child.id()).map_err(|_| ProcessError::Wait {
            program: program.clone(),
            source: std::io::Error::other("pid out of range"),
        })?;
        let pid = Pid::from_raw(raw_pid);
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT;
            let _ = tx.send(waitid(Id::Pid(pid), flags));
        });

        let timed_out = match rx.recv_timeout(self.timeout) {
            Ok(_) => false,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                // The child is not reaped yet (WNOWAIT), so `pid` is still ours.
                let _ = killpg(pid, Signal::SIGKILL);
                true
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => false,
        };
        let status = child.wait().map_err(|source| ProcessError::Wait {
            program: program.clone(),
            source,
        })?;
        if let Some(feeder) = feeder {
            let _ = feeder.join();
        }
        let stdout = join_reader(out_reader);
        let stderr = join_reader(err_reader);
        if timed_out {
            return Err(ProcessError::Timeout {
                program,
                after: self.timeout,
            });
        }
        let elapsed = started.elapsed();
        tracing::debug!(argv = %self.display(), ?status, ?elapsed, "finished");
        Ok(Output {
            status,
            stdout,
            stderr,
            elapsed,
        })
    }
}

fn spawn_reader<R: Read + Send + 'static>(mut pipe: R) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        buf
    })
}

fn join_reader(reader: Option<thread::JoinHandle<Vec<u8>>>) -> Vec<u8> {
    reader.and_then(|r| r.join().ok()).unwrap_or_default()
}

/// This host's node name in the cluster (`crm_node -n`, bounded to 10 s), else the kernel's
/// node name: what the host daemons answer and act for.
pub fn cluster_node_name() -> String {
    let out = Cmd::new("crm_node")
        .arg("-n")
        .timeout(Duration::from_secs(10))
        .run();
    match out {
        Ok(o) if o.success() && !o.stdout_text().trim().is_empty() => {
            o.stdout_text().trim().to_owned()
        }
        _ => nix::sys::utsname::uname()
            .map(|u| u.nodename().to_string_lossy().into_owned())
            .unwrap_or_else(|_| "localhost".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_stdout_stderr_and_status() {
        let out = Cmd::new("sh")
            .args(["-c", "echo out; echo err >&2; exit 3"])
            .run()
            .unwrap();
        assert_eq!(out.stdout_text(), "out\n");
        assert_eq!(out.stderr_text(), "err");
        assert_eq!(out.code(), Some(3));
        assert!(!out.success());
    }

    #[test]
    fn arguments_are_not_interpreted_by_a_shell() {
        let out = Cmd::new("echo").arg("$(id); `id` | ;").run().unwrap();
        assert_eq!(out.stdout_text(), "$(id); `id` | ;\n");
    }

    #[test]
    fn stdin_is_fed() {
        let out = Cmd::new("cat").stdin("hello").run().unwrap();
        assert_eq!(out.stdout, b"hello");
    }

    #[test]
    fn env_is_set_and_removed() {
        let out = Cmd::new("sh")
            .args(["-c", "echo ${A:-unset} ${HOME:-nohome}"])
            .env("A", "set")
            .env_remove("HOME")
            .run()
            .unwrap();
        assert_eq!(out.stdout_text(), "set nohome\n");
    }

    #[test]
    fn deadline_kills_the_process_group() {
        let started = Instant::now();
        let err = Cmd::new("sh")
            .args(["-c", "sleep 30 & sleep 30"])
            .timeout(Duration::from_millis(200))
            .run()
            .unwrap_err();
        assert!(matches!(err, ProcessError::Timeout { .. }), "{err:?}");
        assert!(err.to_string().contains("`sh`"));
        // The readers return only once every holder of the pipes (the background sleep too)
        // is dead, so returning at all proves the group was killed.
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn missing_program_is_a_spawn_error() {
        let err = Cmd::new("/nonexistent/pmkt-no-such-tool")
            .run()
            .unwrap_err();
        assert!(matches!(err, ProcessError::Spawn { .. }), "{err:?}");
    }
}
