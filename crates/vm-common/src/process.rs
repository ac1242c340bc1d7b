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
use std::path::{Path, PathBuf};
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
    /// The program wrote more than its [`Cmd::max_stdout`] on stdout and was killed.
    #[error("`{program}` wrote more than {max} bytes and was killed")]
    OutputTooLong {
        /// The program that was killed.
        program: String,
        /// The limit it exceeded.
        max: usize,
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

/// Why [`Cmd::run_success`] failed: the program could not be run, or it exited with a failure.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// It could not be run to completion.
    #[error(transparent)]
    Process(#[from] ProcessError),
    /// It exited with a non-zero status (or was killed by a signal: `code` -1).
    #[error("`{program}` exited with {code}: {stderr}")]
    Failed {
        /// The program.
        program: String,
        /// Its exit status.
        code: i32,
        /// What it wrote on stderr, trimmed.
        stderr: String,
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
///
/// `Debug` is derived, arguments included: a caller whose arguments may hold a secret wraps
/// the `Cmd` in its own type (as vm-seal's `DecryptCommand` does) and calls
/// [`Cmd::redact_args`].
#[derive(Debug, Clone)]
pub struct Cmd {
    program: OsString,
    args: Vec<OsString>,
    env: Vec<(OsString, Option<OsString>)>,
    clear_env: bool,
    dir: Option<PathBuf>,
    stdin: Option<Vec<u8>>,
    timeout: Duration,
    max_stdout: Option<usize>,
    discard_stderr: bool,
    kill_group_at_exit: bool,
    redact_args: bool,
}

/// What the helper threads of [`Cmd::run`] report.
enum Event {
    /// The program exited (not reaped yet).
    Exited,
    /// stdout passed [`Cmd::max_stdout`].
    Overflow,
}

impl Cmd {
    /// Start describing a call to `program` (looked up in `PATH` like `execvp`).
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        Self {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            env: Vec::new(),
            clear_env: false,
            dir: None,
            stdin: None,
            timeout: DEFAULT_TIMEOUT,
            max_stdout: None,
            discard_stderr: false,
            kill_group_at_exit: false,
            redact_args: false,
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

    /// Start the child with an empty environment (then [`Cmd::env`] adds to it).
    pub fn env_clear(mut self) -> Self {
        self.clear_env = true;
        self
    }

    /// Run the child in `dir`.
    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.dir = Some(dir.as_ref().to_owned());
        self
    }

    /// Kill the program (its process group) as soon as it writes more than `bytes` on stdout:
    /// [`ProcessError::OutputTooLong`].
    pub fn max_stdout(mut self, bytes: usize) -> Self {
        self.max_stdout = Some(bytes);
        self
    }

    /// Send the child's stderr to `/dev/null` instead of capturing it (it could echo secrets).
    pub fn discard_stderr(mut self) -> Self {
        self.discard_stderr = true;
        self
    }

    /// When the program exits, kill what is left of its process group: nothing it started in
    /// the background outlives the run (nor keeps its output pipes open).
    pub fn kill_group_at_exit(mut self) -> Self {
        self.kill_group_at_exit = true;
        self
    }

    /// Leave the arguments out of [`Cmd::display`] and the logs (they may hold a password).
    pub fn redact_args(mut self) -> Self {
        self.redact_args = true;
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
        if self.redact_args {
            return format!(
                "{} <{} arguments redacted>",
                self.program(),
                self.args.len()
            );
        }
        std::iter::once(&self.program)
            .chain(&self.args)
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// [`Cmd::run`], and a non-zero exit is an error too ([`RunError::Failed`], with the
    /// program's stderr): for the calls whose only answer is "done" or "why not".
    pub fn run_success(&self) -> Result<Output, RunError> {
        let out = self.run()?;
        if out.success() {
            return Ok(out);
        }
        Err(RunError::Failed {
            program: self.program(),
            code: out.code().unwrap_or(-1),
            stderr: out.stderr_text(),
        })
    }

    /// Run to completion or until the deadline.
    pub fn run(&self) -> Result<Output, ProcessError> {
        let program = self.program();
        let started = Instant::now();
        let mut command = Command::new(&self.program);
        if self.clear_env {
            command.env_clear();
        }
        if let Some(dir) = &self.dir {
            command.current_dir(dir);
        }
        command
            .args(&self.args)
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(if self.discard_stderr {
                Stdio::null()
            } else {
                Stdio::piped()
            })
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
        let (tx, rx) = mpsc::channel();
        let out_reader = child
            .stdout
            .take()
            .map(|pipe| spawn_reader(pipe, self.max_stdout, tx.clone()));
        let err_reader = child
            .stderr
            .take()
            .map(|pipe| spawn_reader(pipe, None, tx.clone()));

        let Ok(raw_pid) = i32::try_from(child.id()) else {
            // Cannot happen on Linux (pids fit in i32); without a pid there is no group to
            // signal, so end the child itself.
            let _ = child.kill();
            let _ = child.wait();
            return Err(ProcessError::Wait {
                program,
                source: std::io::Error::other("pid out of range"),
            });
        };
        let pid = Pid::from_raw(raw_pid);
        thread::spawn(move || {
            let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT;
            while waitid(Id::Pid(pid), flags) == Err(nix::errno::Errno::EINTR) {}
            let _ = tx.send(Event::Exited);
        });

        // Until the program exits; the child is not reaped yet (WNOWAIT), so `pid` (its group's
        // id) is still ours for every signal below.
        let deadline = started + self.timeout;
        let mut timed_out = false;
        let mut too_long = false;
        loop {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(Event::Exited) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Ok(Event::Overflow) => {
                    // then wait for the exit the kill brings
                    let _ = killpg(pid, Signal::SIGKILL);
                    too_long = true;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let _ = killpg(pid, Signal::SIGKILL);
                    timed_out = true;
                    break;
                }
            }
        }
        if self.kill_group_at_exit {
            let _ = killpg(pid, Signal::SIGKILL);
        }
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
        if let Some(max) = self
            .max_stdout
            .filter(|max| too_long || stdout.len() > *max)
        {
            return Err(ProcessError::OutputTooLong { program, max });
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

/// Reads `pipe` to its end, or to `max` bytes and one more, when it reports
/// [`Event::Overflow`] and stops reading.
fn spawn_reader<R: Read + Send + 'static>(
    pipe: R,
    max: Option<usize>,
    events: mpsc::Sender<Event>,
) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let limit = max.map_or(u64::MAX, |m| u64::try_from(m).map_or(u64::MAX, |m| m + 1));
        let _ = pipe.take(limit).read_to_end(&mut buf);
        if max.is_some_and(|m| buf.len() > m) {
            let _ = events.send(Event::Overflow);
        }
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
    fn output_past_the_limit_kills_the_program() {
        let started = Instant::now();
        let err = Cmd::new("yes")
            .max_stdout(1000)
            .timeout(Duration::from_secs(20))
            .run()
            .unwrap_err();
        assert!(
            matches!(err, ProcessError::OutputTooLong { max: 1000, .. }),
            "{err:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(10));
        let out = Cmd::new("echo").arg("short").max_stdout(6).run().unwrap();
        assert_eq!(out.stdout, b"short\n");
    }

    #[test]
    fn a_cleared_environment_directory_and_discarded_stderr() {
        let out = Cmd::new("/bin/sh")
            .args(["-c", "echo \"${HOME:-nohome} $(pwd)\"; echo err >&2"])
            .env_clear()
            .env("PATH", "/bin")
            .current_dir("/")
            .discard_stderr()
            .run()
            .unwrap();
        assert_eq!(out.stdout_text(), "nohome /\n");
        assert!(out.stderr.is_empty());
    }

    #[test]
    fn what_the_program_left_in_the_background_is_killed_at_its_exit() {
        let started = Instant::now();
        // the background sleep holds stdout open: returning at all proves it was killed
        let out = Cmd::new("sh")
            .args(["-c", "sleep 30 & echo done"])
            .kill_group_at_exit()
            .timeout(Duration::from_secs(20))
            .run()
            .unwrap();
        assert_eq!(out.stdout_text(), "done\n");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn redacted_arguments_stay_out_of_the_display() {
        let cmd = Cmd::new("openssl").args(["-k", "secret"]).redact_args();
        assert_eq!(cmd.display(), "openssl <2 arguments redacted>");
    }

    #[test]
    fn missing_program_is_a_spawn_error() {
        let err = Cmd::new("/nonexistent/pmkt-no-such-tool")
            .run()
            .unwrap_err();
        assert!(matches!(err, ProcessError::Spawn { .. }), "{err:?}");
    }
}
