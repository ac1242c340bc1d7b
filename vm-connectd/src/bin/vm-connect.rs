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
//! 3 timed out; 4 the other end answered with an error (message on stderr); 5 cannot reach
//! vm-connectd; 1 any other failure; 64 usage error.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use vm_proto::client::{Client, ClientError};

/// Exit codes (also in --help).
mod exit {
    pub const RETRY: u8 = 2;
    pub const TIMEOUT: u8 = 3;
    pub const REMOTE: u8 = 4;
    pub const UNREACHABLE: u8 = 5;
    pub const USAGE: u8 = 64;
}

const AFTER: &str = "Exit status: 0 answered; 2 retry (host side changed, no module for KIND, busy, or no \
host connected: try again); 3 timed out; 4 error answer; 5 vm-connectd unreachable; 1 other \
failure; 64 usage.";

/// Send one request through the local vm-connectd and print the answer.
#[derive(Debug, Parser)]
#[command(name = "vm-connect", version, about, long_about = None, after_help = AFTER)]
struct Cli {
    /// vm-connectd's local socket.
    #[arg(long, global = true, value_name = "PATH", default_value = vm_proto::DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Give up after this many seconds.
    #[arg(long, global = true, value_name = "SECS", default_value_t = 30)]
    timeout: u64,
    /// The service to ask on the host (e.g. stonith).
    #[arg(short = 't', long = "type", value_name = "KIND")]
    kind: Option<String>,
    /// Send DATA and wait for the answer.
    #[arg(
        short = 'r',
        long = "request",
        value_name = "DATA",
        conflicts_with = "request_only"
    )]
    request: Option<String>,
    /// Send DATA and do not wait.
    #[arg(short = 'R', long = "request-only", value_name = "DATA")]
    request_only: Option<String>,
    /// Accepted for compatibility with the original vm-connect; the protocol matches answers
    /// to requests itself.
    #[arg(short = 'i', long = "reqid", value_name = "ID")]
    reqid: Option<String>,
    /// What to do instead of a request.
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Prove the whole path to the host relay works: prints who answered and the services it
    /// offers.
    Ping,
    /// The local daemon's status (JSON).
    Status,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(exit::USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let timeout = Duration::from_secs(cli.timeout.max(1));
    let mut client = match Client::connect(&cli.socket, vm_proto::Role::Client) {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "vm-connect: cannot reach vm-connectd at {}: {e}",
                cli.socket.display()
            );
            return ExitCode::from(exit::UNREACHABLE);
        }
    };
    let started = Instant::now();
    let result = match (&cli.command, &cli.kind, &cli.request, &cli.request_only) {
        (Some(Command::Ping), ..) => client.ping(timeout).map(|pong| {
            format!(
                "pong from host {} in {:.1} ms; services: {}",
                pong.host(),
                started.elapsed().as_secs_f64() * 1000.0,
                if pong.services().is_empty() {
                    "(none)".to_owned()
                } else {
                    pong.services()
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(" ")
                }
            )
        }),
        (Some(Command::Status), ..) => client.status(timeout),
        (None, Some(kind), Some(data), None) => client
            .request(kind, data.as_bytes(), timeout)
            .map(|body| String::from_utf8_lossy(&body).into_owned()),
        (None, Some(kind), None, Some(data)) => client
            .send_request_only(kind, data.as_bytes())
            .map(|_id| String::new()),
        _ => {
            eprintln!(
                "vm-connect: give `ping`, `status`, or -t KIND with -r DATA or -R DATA (see --help)"
            );
            return ExitCode::from(exit::USAGE);
        }
    };
    let _ = &cli.reqid;
    match result {
        Ok(text) => {
            if !text.is_empty() || cli.request.is_some() {
                let mut out = std::io::stdout();
                let _ = writeln!(out, "{text}");
            }
            ExitCode::SUCCESS
        }
        Err(ClientError::Retry { reason, detail }) => {
            eprintln!("vm-connect: retry ({reason}): {detail}");
            ExitCode::from(exit::RETRY)
        }
        Err(ClientError::Timeout { .. }) => {
            eprintln!("vm-connect: no answer within {} s", timeout.as_secs());
            ExitCode::from(exit::TIMEOUT)
        }
        Err(ClientError::Remote { code, message }) => {
            eprintln!("vm-connect: error ({code}): {message}");
            ExitCode::from(exit::REMOTE)
        }
        Err(e) => {
            eprintln!("vm-connect: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
