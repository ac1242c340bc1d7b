//! `fence_vmstonith`: the guest cluster's fence agent. It asks the host cluster, through this
//! guest's vm-connectd and the host's vm-stonithd, to power a peer guest off (or on, or
//! reboot it), and succeeds only on an authentic, confirmed answer.
//!
//! - [`options`]: the command line and the stdin `name=value` lines, from one table;
//! - [`metadata`]: `-o metadata` and `--help`;
//! - [`request`]: sealing, sending, retrying, opening the reply.
//!
//! [`run`] ties them together: [`main_exec`] does the work and ends in [`Done`] or an
//! [`AgentError`], which it logs once; [`exit_code`] is the one mapping to the exit code; `main`
//! only hands `run` the process's arguments and streams. Exit codes follow fence-agents, as
//! Pacemaker's fencer reads them: 0 success, 1 failure or bad usage, and for `status` 0 on, 2
//! off, 1 unknown.

pub mod metadata;
pub mod options;
pub mod request;

use std::fmt;
use std::io::{Read, Write};
use std::thread;

use vm_common::error_chain;
use vm_seal::{Action, Key, Name, PowerState};

use crate::metadata::AGENT;
use crate::options::{AgentAction, Options};
use crate::request::{Context, Deadline, RequestError};

/// Exit codes (fence-agents'; not the shared codes of the other programs, see
/// `vm_common::exit`).
pub mod exit {
    /// Success; for `status`: the guest is on.
    pub const SUCCESS: u8 = 0;
    /// Failure, bad usage, or an unknown status.
    pub const FAILURE: u8 = 1;
    /// `status`: the guest is off.
    pub const OFF: u8 = 2;
}

/// Log lines on stderr, one per event: `fence_vmstonith: <level>: <what>`.
pub struct Log<'a> {
    out: &'a mut dyn Write,
    verbose: bool,
}

impl fmt::Debug for Log<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Log")
            .field("verbose", &self.verbose)
            .finish_non_exhaustive()
    }
}

impl<'a> Log<'a> {
    /// A log writing to `out`; `verbose` lets [`Log::debug`] lines through.
    pub fn new(out: &'a mut dyn Write, verbose: bool) -> Log<'a> {
        Log { out, verbose }
    }

    fn line(&mut self, level: &str, msg: fmt::Arguments<'_>) {
        // a log that cannot be written must not change what the agent does
        let _ = writeln!(self.out, "{AGENT}: {level}: {msg}");
    }

    /// The action failed.
    pub fn error(&mut self, msg: fmt::Arguments<'_>) {
        self.line("error", msg);
    }

    /// Something went wrong that the agent handles (retries, skipped input).
    pub fn warn(&mut self, msg: fmt::Arguments<'_>) {
        self.line("warning", msg);
    }

    /// Progress, with `-v` only.
    pub fn debug(&mut self, msg: fmt::Arguments<'_>) {
        if self.verbose {
            self.line("debug", msg);
        }
    }
}

/// `s` made safe for a one-line log: control characters become spaces.
pub fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// How an action ended well.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Done {
    /// It succeeded; for `status`: the guest is on.
    Success,
    /// `status`: the guest is off.
    Off,
}

/// Why an action failed.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The command line or stdin cannot be used.
    #[error("{0}")]
    Usage(String),
    /// An option's value cannot be used for the action.
    #[error("{action}: {problem}")]
    Options {
        /// The action.
        action: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// The key file cannot be used.
    #[error(
        "{action}: cannot use the key: {}; copy the guest cluster's key there, mode 0600 \
         (`vm-ctl stonith keygen` on the host makes it and says how), or name it with key_file=",
        error_chain(.source)
    )]
    Key {
        /// The action.
        action: &'static str,
        /// Why.
        source: vm_seal::KeyError,
    },
    /// The request failed.
    #[error("{what} failed: {}", error_chain(.source))]
    Request {
        /// What was asked (`off of web2`).
        what: String,
        /// Why.
        source: RequestError,
    },
    /// The host cluster answered, but does not know the guest's power state.
    #[error("{what}: the host cluster does not know the power state: {message}")]
    UnknownState {
        /// What was asked.
        what: String,
        /// The host's explanation (one line).
        message: String,
    },
    /// `list-status`: some targets' states are unknown (each is logged).
    #[error("list-status: the state of {0} target(s) is unknown")]
    Incomplete(usize),
    /// The output could not be written.
    #[error("cannot write the output: {0}")]
    Output(#[source] std::io::Error),
}

/// The exit code of an action's result: the one mapping.
pub fn exit_code(result: &Result<Done, AgentError>) -> u8 {
    match result {
        Ok(Done::Success) => exit::SUCCESS,
        Ok(Done::Off) => exit::OFF,
        Err(
            AgentError::Usage(_)
            | AgentError::Options { .. }
            | AgentError::Key { .. }
            | AgentError::Request { .. }
            | AgentError::UnknownState { .. }
            | AgentError::Incomplete(_)
            | AgentError::Output(_),
        ) => exit::FAILURE,
    }
}

/// Runs the agent: parses `argv` (without the program name), or `stdin` when `argv` is
/// empty; writes results to `out` and log lines to `err`; returns the exit code.
pub fn run(argv: &[String], stdin: &mut dyn Read, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    exit_code(&main_exec(argv, stdin, out, err))
}

/// What [`run`] does before the exit code: the action, and its failure logged (once, here).
pub fn main_exec(
    argv: &[String],
    stdin: &mut dyn Read,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Done, AgentError> {
    let parsed = if argv.is_empty() {
        options::parse_stdin(stdin).map(|s| (s.options, s.warnings))
    } else {
        options::parse_args(argv).map(|o| (o, Vec::new()))
    };
    let (opts, warnings) = match parsed {
        Ok(p) => p,
        Err(e) => {
            let _ = writeln!(
                err,
                "{AGENT}: error: {}\nTry '{AGENT} --help' for the options.",
                one_line(&e)
            );
            return Err(AgentError::Usage(e));
        }
    };
    let mut log = Log::new(err, opts.verbose);
    for w in &warnings {
        log.warn(format_args!("{w}"));
    }
    let result = execute(&opts, out, &mut log);
    if let Err(e) = &result {
        log.error(format_args!("{e}"));
    }
    result
}

fn execute(opts: &Options, out: &mut dyn Write, log: &mut Log<'_>) -> Result<Done, AgentError> {
    if opts.help {
        return emit(out, &metadata::usage());
    }
    if opts.version {
        return emit(out, &format!("{AGENT} {}\n", env!("CARGO_PKG_VERSION")));
    }
    if opts.action == AgentAction::Metadata {
        return emit(out, &metadata::metadata());
    }
    let action = opts.action.as_str();
    let checked = check(opts).map_err(|problem| AgentError::Options { action, problem })?;
    let key = Key::load(&opts.key_file).map_err(|source| AgentError::Key { action, source })?;
    if opts.action == AgentAction::ValidateAll {
        log.debug(format_args!(
            "validate-all: options are valid; key {} of guest cluster {} (fingerprint {})",
            key.id(),
            key.cluster(),
            key.fingerprint()
        ));
        return Ok(Done::Success);
    }
    let ctx = Context {
        key: &key,
        socket: &opts.socket,
        requester: &checked.requester,
    };
    if matches!(opts.action, AgentAction::Off | AgentAction::Reboot) && !opts.delay.is_zero() {
        log.debug(format_args!(
            "{}: waiting {:.1?} before fencing (delay)",
            opts.action.as_str(),
            opts.delay
        ));
        thread::sleep(opts.delay);
    }
    let deadline = Deadline::after(opts.timeout);
    act(opts, &ctx, checked.target.as_ref(), deadline, out, log)
}

/// The names the action needs, validated.
struct Checked {
    target: Option<Name>,
    requester: Name,
}

fn check(opts: &Options) -> Result<Checked, String> {
    let target = match (&opts.plug, opts.action.needs_target()) {
        (Some(p), true) => Some(Name::new(p.as_str()).map_err(|e| {
            format!(
                "invalid target {:?} (-n/--plug, stdin plug or port): {e}",
                one_line(p)
            )
        })?),
        (None, true) => {
            return Err(
                "no target: give the guest's domain name with -n/--plug (stdin: plug= or port=)"
                    .to_owned(),
            );
        }
        (_, false) => None,
    };
    let requester = match &opts.requester {
        Some(r) => Name::new(r.as_str())
            .map_err(|e| format!("invalid --requester {:?}: {e}", one_line(r)))?,
        None => default_requester()?,
    };
    Ok(Checked { target, requester })
}

/// This machine's hostname up to the first dot.
fn default_requester() -> Result<Name, String> {
    let host = nix::unistd::gethostname()
        .map_err(|e| format!("cannot read the hostname ({e}); give --requester"))?;
    let host = host.to_string_lossy();
    let short = host.split('.').next().unwrap_or_default();
    Name::new(short).map_err(|e| {
        format!(
            "the hostname {:?} is not usable as the requester name ({e}); give --requester",
            one_line(&host)
        )
    })
}

fn emit(out: &mut dyn Write, text: &str) -> Result<Done, AgentError> {
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map(|()| Done::Success)
        .map_err(AgentError::Output)
}

fn act(
    opts: &Options,
    ctx: &Context<'_>,
    target: Option<&Name>,
    deadline: Deadline,
    out: &mut dyn Write,
    log: &mut Log<'_>,
) -> Result<Done, AgentError> {
    let power = |action: Action| match target {
        Some(t) => format!("{action} of {t}"),
        None => action.to_string(),
    };
    let request = |action: Action, log: &mut Log<'_>| {
        request::request(ctx, action, target, deadline, log).map_err(|source| AgentError::Request {
            what: power(action),
            source,
        })
    };
    let simple = |action: Action, success: &str, out: &mut dyn Write, log: &mut Log<'_>| {
        request(action, log)?;
        emit(out, success)
    };
    match opts.action {
        AgentAction::On => simple(Action::On, "Success: Powered ON\n", out, log),
        AgentAction::Off => simple(Action::Off, "Success: Powered OFF\n", out, log),
        AgentAction::Reboot => simple(Action::Reboot, "Success: Rebooted\n", out, log),
        AgentAction::Monitor => simple(Action::Monitor, "", out, log),
        AgentAction::Status => {
            let reply = request(Action::Status, log)?;
            match reply.state {
                PowerState::On => emit(out, "Status: ON\n"),
                PowerState::Off => emit(out, "Status: OFF\n").map(|_| Done::Off),
                PowerState::Unknown => Err(AgentError::UnknownState {
                    what: power(Action::Status),
                    message: one_line(&reply.message),
                }),
            }
        }
        AgentAction::List | AgentAction::ListStatus => {
            let targets = request::request(ctx, Action::List, None, deadline, log)
                .map_err(|source| AgentError::Request {
                    what: "list".to_owned(),
                    source,
                })?
                .targets;
            if opts.action == AgentAction::List {
                let text: String = targets.iter().map(|t| format!("{t},\n")).collect();
                return emit(out, &text);
            }
            list_status(ctx, &targets, deadline, out, log)
        }
        // handled before a key is loaded
        AgentAction::Metadata | AgentAction::ValidateAll => Ok(Done::Success),
    }
}

/// `name,,on|off` per target; a target whose state cannot be learnt within the deadline is
/// printed as `unknown` (and logged) and makes the action fail.
fn list_status(
    ctx: &Context<'_>,
    targets: &[Name],
    deadline: Deadline,
    out: &mut dyn Write,
    log: &mut Log<'_>,
) -> Result<Done, AgentError> {
    let mut unknown = 0;
    for t in targets {
        let state = match request::request(ctx, Action::Status, Some(t), deadline, log) {
            Ok(reply) => match reply.state {
                PowerState::On => "on",
                PowerState::Off => "off",
                PowerState::Unknown => {
                    log.error(format_args!(
                        "{}",
                        AgentError::UnknownState {
                            what: format!("status of {t}"),
                            message: one_line(&reply.message),
                        }
                    ));
                    unknown += 1;
                    "unknown"
                }
            },
            Err(source) => {
                log.error(format_args!(
                    "{}",
                    AgentError::Request {
                        what: format!("status of {t}"),
                        source,
                    }
                ));
                unknown += 1;
                "unknown"
            }
        };
        emit(out, &format!("{t},,{state}\n"))?;
    }
    if unknown == 0 {
        Ok(Done::Success)
    } else {
        Err(AgentError::Incomplete(unknown))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_with(argv: &[&str], stdin: &str) -> (u8, String, String) {
        let argv: Vec<String> = argv.iter().map(|s| (*s).to_owned()).collect();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = run(&argv, &mut stdin.as_bytes(), &mut out, &mut err);
        (
            code,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    #[test]
    fn metadata_help_and_version_need_no_key() {
        let (code, out, _) = run_with(&["-o", "metadata", "--key-file", "/nonexistent"], "");
        assert_eq!(code, 0);
        assert!(out.contains("<resource-agent name=\"fence_vmstonith\""));
        let (code, out, _) = run_with(&[], "action=metadata\n");
        assert_eq!(code, 0);
        assert!(out.starts_with("<?xml"));
        let (code, out, _) = run_with(&["--help"], "");
        assert_eq!(code, 0);
        assert!(out.contains("--key-file"));
        let (code, out, _) = run_with(&["-V"], "");
        assert_eq!((code, out.trim()), (0, "fence_vmstonith 0.1.0"));
    }

    #[test]
    fn bad_usage_exits_1_with_a_reason() {
        let (code, out, err) = run_with(&["--bogus"], "");
        assert_eq!(code, 1);
        assert!(out.is_empty());
        assert!(
            err.contains("unknown option --bogus") && err.contains("--help"),
            "{err}"
        );
        let (code, _, err) = run_with(&["-o", "off", "--key-file", "/nonexistent"], "");
        assert_eq!(code, 1);
        assert!(err.contains("no target"), "{err}");
        let (code, _, err) = run_with(&["-o", "off", "-n", "a;b"], "");
        assert_eq!(code, 1);
        assert!(err.contains("invalid target"), "{err}");
        let (code, _, err) = run_with(&["-o", "list", "--requester", "$(x)"], "");
        assert_eq!(code, 1);
        assert!(err.contains("invalid --requester"), "{err}");
    }

    #[test]
    fn validate_all_loads_the_key() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let key = Key::generate("web").unwrap();
        key.write_new(&path).unwrap();
        let p = path.to_str().unwrap();
        let (code, _, err) = run_with(
            &["-o", "validate-all", "--key-file", p, "--requester", "web1"],
            "",
        );
        assert_eq!(code, 0, "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let (code, _, err) = run_with(
            &["-o", "validate-all", "--key-file", p, "--requester", "web1"],
            "",
        );
        assert_eq!(code, 1);
        assert!(err.contains("chmod 600"), "{err}");
        // the key never shows in the log, even with -v
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let secret = text.lines().find_map(|l| l.strip_prefix("key = ")).unwrap();
        let (code, _, err) = run_with(
            &[
                "-v",
                "-o",
                "validate-all",
                "--key-file",
                p,
                "--requester",
                "web1",
            ],
            "",
        );
        assert_eq!(code, 0);
        assert!(
            err.contains("fingerprint") && !err.contains(secret),
            "{err}"
        );
    }

    #[test]
    fn exit_codes_follow_fence_agents() {
        assert_eq!(exit_code(&Ok(Done::Success)), 0);
        assert_eq!(exit_code(&Ok(Done::Off)), 2);
        for e in [
            AgentError::Usage("x".into()),
            AgentError::Incomplete(1),
            AgentError::Output(std::io::Error::other("x")),
        ] {
            assert_eq!(exit_code(&Err(e)), 1);
        }
    }

    #[test]
    fn helpers() {
        assert_eq!(one_line("a\nb\tc"), "a b c");
        let e = RequestError::Seal(vm_seal::SealError::Tag);
        assert!(error_chain(&e).starts_with("cannot seal the request: authentication failed"));
        let e = Key::load(std::path::Path::new("/nonexistent/k")).unwrap_err();
        assert_eq!(
            error_chain(&e).matches("os error 2").count(),
            1,
            "{}",
            error_chain(&e)
        );
    }
}
