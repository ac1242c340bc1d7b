//! `vm-connect`'s usage text and exit codes: the one home of its interface, printed by
//! `vm-connect --help` and rendered into vm-connect(1) by `cargo xtask assets`. (vm-connect parses
//! its arguments by hand, not with clap: see its source.)

/// Exit codes (also in the usage text, which the man page is made from).
///
/// They follow the original vm-connect (0 answered, 1 error, 2 retry), which scripts and the
/// cluster-glue plugin rely on; so a usage error cannot be the usual 2 and is 64 (`EX_USAGE`).
/// 1 and 5 are the shared codes ([`vm_common::exit`]).
pub mod exit {
    pub use vm_common::exit::{FAILURE, SUCCESS, UNREACHABLE};
    /// Try again: the host side changed, no module serves the kind, busy, or no host.
    pub const RETRY: u8 = 2;
    /// No answer in time: our own timeout, or a relay's Error Timeout at the deadline the
    /// request carried.
    pub const TIMEOUT: u8 = 3;
    /// The other end answered with an error.
    pub const REMOTE: u8 = 4;
    /// Usage error.
    pub const USAGE: u8 = 64;
}

/// `--help`: the description, usage, options and exit statuses.
pub const USAGE: &str = "\
Send one request through the local vm-connectd and print the answer.

Usage:
  vm-connect [OPTIONS] ping              prove the path to the host relay works
  vm-connect [OPTIONS] status            the local daemon's status (JSON)
  vm-connect [OPTIONS] -t KIND -r DATA   send DATA to the host's KIND service, print the answer
  vm-connect [OPTIONS] -t KIND -R DATA   send DATA, do not wait

Options:
  -t, --type KIND   the host service to ask (stonith for vm-stonithd)
  -r, --request DATA
                    the request's body; wait for the answer and print it
  -R, --request-only DATA
                    the request's body; send it and do not wait for an answer
  --socket PATH     vm-connectd's local socket [default: /var/run/vmconnectd.sock]
  --timeout SECS    give up after SECS seconds [default: 30]; a request (-r) carries this
                    deadline to every relay on the way (protocol version 2), which gives up
                    at it with a timeout naming itself, and vm-connect waits up to one
                    second longer for that answer
  -i, --reqid ID    accepted for compatibility with the original vm-connect (ignored: the
                    protocol matches answers to requests itself)
  -h, --help        this text
  -V, --version     the version

Exit status: 0 answered; 2 retry (host side changed, no module for KIND, busy, or no host
connected: try again); 3 timed out (here or at a relay on the way, which the message names);
4 error answer; 5 vm-connectd unreachable; 1 other failure; 64 usage.
";
