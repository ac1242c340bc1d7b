//! `vm-connect`: one request through the local vm-connectd, for shell agents and operators.
//!
//! ```text
//! vm-connect [--socket PATH] [--timeout SECS] ping
//! vm-connect [--socket PATH] [--timeout SECS] -t KIND -r DATA [-i ID]   (wait for the answer)
//! vm-connect [--socket PATH] -t KIND -R DATA                             (send, do not wait)
//! vm-connect [--socket PATH] status
//! ```
//! The answer's body goes to stdout (one line). Exit status: 0 answered; 2 retry (the host side
//! changed, no module serves KIND, the host is busy, or no host is connected: try again);
//! 3 timed out (here, or at a relay on the way: a request carries the time left of
//! `--timeout`, every relay gives up at it, and vm-connect waits a second longer for the
//! relay's answer, which names the hop); 4 the other end answered with an error (message on
//! stderr); 5 cannot reach vm-connectd; 1 any other failure; 64 usage error.
//!
//! The arguments are parsed by hand, not with clap like the other binaries: fence agents in
//! guests run this tool for every monitor and status call, and in an emulated guest (TCG)
//! building clap's command costs about 10 ms per start, a third of the whole round trip
//! (docs/benchmarks.md).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use vm_connectd::connect_cli::{USAGE, exit};
use vm_proto::client::{Client, ClientError};

#[derive(Debug, Default, PartialEq, Eq)]
struct Args {
    socket: Option<PathBuf>,
    timeout: Option<u64>,
    kind: Option<String>,
    request: Option<String>,
    request_only: Option<String>,
    command: Option<String>,
    help: bool,
    version: bool,
}

fn parse(argv: &[String]) -> Result<Args, String> {
    let mut a = Args::default();
    let mut it = argv.iter();
    while let Some(arg) = it.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v.to_owned())),
            _ => (arg.as_str(), None),
        };
        let mut value = |what: &str| -> Result<String, String> {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or_else(|| format!("{what} needs a value"))
        };
        match name {
            "--socket" => a.socket = Some(PathBuf::from(value("--socket")?)),
            "--timeout" => {
                let v = value("--timeout")?;
                a.timeout = Some(
                    v.parse()
                        .map_err(|_| format!("--timeout {v:?} is not a number of seconds"))?,
                );
            }
            "-t" | "--type" => a.kind = Some(value("-t")?),
            "-r" | "--request" => a.request = Some(value("-r")?),
            "-R" | "--request-only" => a.request_only = Some(value("-R")?),
            "-i" | "--reqid" => {
                value("-i")?;
            }
            "-h" | "--help" => a.help = true,
            "-V" | "--version" => a.version = true,
            "ping" | "status" if a.command.is_none() => a.command = Some(name.to_owned()),
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    let request_given = a.request.is_some() || a.request_only.is_some();
    if a.request.is_some() && a.request_only.is_some() {
        return Err("-r and -R exclude each other".to_owned());
    }
    if !(a.help || a.version) {
        match (&a.command, &a.kind, request_given) {
            (Some(_), None, false) | (None, Some(_), true) => {}
            (Some(_), _, _) => return Err("ping and status take no -t/-r/-R".to_owned()),
            _ => return Err("give ping, status, or -t KIND with -r DATA or -R DATA".to_owned()),
        }
    }
    Ok(a)
}

/// Why vm-connect did not print an answer.
#[derive(Debug, thiserror::Error)]
enum MainError {
    /// The command line cannot be used.
    #[error("{0}\n\n{USAGE}")]
    Usage(String),
    /// The local vm-connectd cannot be reached.
    #[error(
        "cannot reach vm-connectd: {}; start it (vm-connectd -t guest in a guest, -t host on a \
         host) or name its socket with --socket",
        vm_common::error_chain(.0)
    )]
    Unreachable(ClientError),
    /// The host side said "try again".
    #[error("retry ({reason}): {detail}")]
    Retry {
        /// Why.
        reason: vm_proto::RetryReason,
        /// Its detail.
        detail: String,
    },
    /// No answer in time.
    #[error("no answer within {0} s")]
    Timeout(u64),
    /// A relay on the way gave up at the time the request carried (Error Timeout).
    #[error("no answer within {secs} s: {message}")]
    RelayTimeout {
        /// `--timeout`.
        secs: u64,
        /// The relay's message: which hop gave up.
        message: String,
    },
    /// The other end answered with an error.
    #[error("error ({code}): {message}")]
    Remote {
        /// The error code.
        code: vm_proto::ErrorCode,
        /// Its message.
        message: String,
    },
    /// Anything else.
    #[error("{}", vm_common::error_chain(.0))]
    Other(ClientError),
}

impl MainError {
    /// The exit code (the table is connect_cli's `exit` and the `--help` text).
    fn exit_code(&self) -> u8 {
        match self {
            MainError::Usage(_) => exit::USAGE,
            MainError::Unreachable(_) => exit::UNREACHABLE,
            MainError::Retry { .. } => exit::RETRY,
            // a relay's Error Timeout is the same event as our own timeout, seen from closer
            // (whichever comes first at the deadline): the same exit code
            MainError::Timeout(_) | MainError::RelayTimeout { .. } => exit::TIMEOUT,
            MainError::Remote { .. } => exit::REMOTE,
            MainError::Other(_) => exit::FAILURE,
        }
    }
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    match main_exec(&argv) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vm-connect: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn main_exec(argv: &[String]) -> Result<(), MainError> {
    let args = parse(argv).map_err(MainError::Usage)?;
    if args.help {
        print!("{USAGE}");
        return Ok(());
    }
    if args.version {
        println!("vm-connect {}", env!("CARGO_PKG_VERSION"));
        return Ok(());
    }
    let socket = args
        .socket
        .clone()
        .unwrap_or_else(|| PathBuf::from(vm_proto::DEFAULT_SOCKET));
    let timeout = Duration::from_secs(args.timeout.unwrap_or(30).max(1));
    let mut client =
        Client::connect(&socket, vm_proto::Role::Client).map_err(MainError::Unreachable)?;
    let started = Instant::now();
    let result = match (
        args.command.as_deref(),
        &args.kind,
        &args.request,
        &args.request_only,
    ) {
        (Some("ping"), ..) => client.ping(timeout).map(|pong| {
            let services: Vec<&str> = pong.services().iter().map(|s| s.as_str()).collect();
            format!(
                "pong from host {} in {:.1} ms; services: {}",
                pong.host(),
                started.elapsed().as_secs_f64() * 1000.0,
                if services.is_empty() {
                    "(none)".to_owned()
                } else {
                    services.join(" ")
                }
            )
        }),
        (Some(_), ..) => client.status(timeout),
        (None, Some(kind), Some(data), None) => client
            .request(kind, data.as_bytes(), timeout)
            .map(|body| String::from_utf8_lossy(&body).into_owned()),
        (None, Some(kind), None, Some(data)) => client
            .send_request_only(kind, data.as_bytes())
            .map(|_| String::new()),
        // (parse refuses every other combination)
        _ => {
            return Err(MainError::Usage(
                "give ping, status, or -t KIND with -r DATA or -R DATA".to_owned(),
            ));
        }
    };
    match result {
        Ok(text) => {
            if !text.is_empty() || args.request.is_some() {
                let _ = writeln!(std::io::stdout(), "{text}");
            }
            Ok(())
        }
        Err(ClientError::Retry { reason, detail }) => Err(MainError::Retry { reason, detail }),
        Err(ClientError::Timeout { .. }) => Err(MainError::Timeout(timeout.as_secs())),
        Err(ClientError::Remote {
            code: vm_proto::ErrorCode::Timeout,
            message,
        }) => Err(MainError::RelayTimeout {
            secs: timeout.as_secs(),
            message,
        }),
        Err(ClientError::Remote { code, message }) => Err(MainError::Remote { code, message }),
        Err(e) => Err(MainError::Other(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Args, String> {
        parse(&args.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
    }

    #[test]
    fn the_original_forms_parse() {
        let a = p(&["-t", "stonith", "-r", "off g2", "-i", "abc"]).unwrap();
        assert_eq!(
            (a.kind.as_deref(), a.request.as_deref()),
            (Some("stonith"), Some("off g2"))
        );
        let a = p(&["--socket=/x.sock", "--timeout", "5", "ping"]).unwrap();
        assert_eq!(
            (a.socket, a.timeout, a.command.as_deref()),
            (Some("/x.sock".into()), Some(5), Some("ping"))
        );
        assert!(
            p(&["-t", "stonith", "-R", "x"])
                .unwrap()
                .request_only
                .is_some()
        );
        assert!(p(&["--help"]).unwrap().help);
        assert!(p(&["-V"]).unwrap().version);
    }

    #[test]
    fn every_spelling_parse_accepts_is_in_the_usage_text() {
        // (spelling, a valid command line using it)
        for (opt, args) in [
            ("-t", &["-t", "k", "-r", "x"][..]),
            ("--type", &["--type", "k", "-r", "x"]),
            ("-r", &["-t", "k", "-r", "x"]),
            ("--request", &["-t", "k", "--request", "x"]),
            ("-R", &["-t", "k", "-R", "x"]),
            ("--request-only", &["-t", "k", "--request-only", "x"]),
            ("--socket", &["--socket", "/s", "ping"]),
            ("--timeout", &["--timeout", "3", "ping"]),
            ("-i", &["-i", "1", "ping"]),
            ("--reqid", &["--reqid", "1", "ping"]),
            ("-h", &["-h"]),
            ("--help", &["--help"]),
            ("-V", &["-V"]),
            ("--version", &["--version"]),
            ("ping", &["ping"]),
            ("status", &["status"]),
        ] {
            assert!(p(args).is_ok(), "{args:?}");
            let documented = USAGE
                .split(|c: char| c.is_whitespace() || c == ',')
                .any(|w| w == opt);
            assert!(
                documented,
                "{opt} is accepted but not in the usage text:\n{USAGE}"
            );
        }
    }

    #[test]
    fn bad_usage_is_refused() {
        for bad in [
            &["-t", "stonith"][..],
            &["ping", "-t", "x", "-r", "y"],
            &["-t", "x", "-r", "a", "-R", "b"],
            &["--timeout", "soon", "ping"],
            &["--bogus"],
            &[],
            &["-r"],
        ] {
            assert!(p(bad).is_err(), "{bad:?}");
        }
    }
}
