//! `vm-connectd`'s command line, in the library so that `cargo xtask assets` renders the man
//! page from the same definition `--help` uses.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

/// Which end of the channel this daemon serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// On a host: connect to every local guest's channel socket, serve host modules.
    Host,
    /// In a guest: open the virtio-serial port, serve local clients.
    Guest,
}

/// Relay between guests and their host over the `vmconnectd` virtio-serial channel.
#[derive(Debug, Parser)]
#[command(name = "vm-connectd", version, about, long_about = None, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// Host or guest mode.
    #[arg(short = 't', long = "type", value_enum)]
    pub mode: Option<Mode>,
    /// Host mode: directory holding the guests' channel sockets (QEMU's <source path>).
    #[arg(short = 'd', long = "sock-dir", value_name = "DIR", default_value = vm_proto::DEFAULT_HOST_SOCKET_DIR)]
    pub sock_dir: PathBuf,
    /// Local socket for clients and host modules (mode 0600).
    #[arg(long, value_name = "PATH", default_value = vm_proto::DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Guest mode: the port (a character device, or a unix socket for tests). Default:
    /// /dev/virtio-ports/vmconnectd, else the port named vmconnectd in /sys/class/virtio-ports.
    #[arg(long, value_name = "PATH")]
    pub port: Option<PathBuf>,
    /// Host mode: libvirt URI for guest identities and lifecycle events.
    #[arg(long, value_name = "URI", default_value = "qemu:///system")]
    pub libvirt: String,
    /// Host mode: do not use libvirt; a guest's identity is then its socket's file name, so
    /// only for hosts where nobody but QEMU for the named guest can create files in --sock-dir.
    #[arg(long)]
    pub no_libvirt: bool,
    /// Host mode, with libvirt: where libvirt keeps each running domain's QEMU pid
    /// (`<domain>.pid`); the process listening on a guest's socket must be that QEMU.
    #[arg(long, value_name = "DIR", default_value = "/run/libvirt/qemu")]
    pub qemu_pid_dir: PathBuf,
    /// Host mode: the socket SOCKET (in --sock-dir) is guest NAME's channel, whatever libvirt
    /// says (repeatable): for channels libvirt does not manage. Whoever listens on it is that
    /// guest, so only for sockets nobody else can create.
    #[arg(long = "guest", value_name = "NAME=SOCKET", value_parser = parse_guest)]
    pub guests: Vec<(String, PathBuf)>,
    /// Host mode: this host's name in answers to guests (default: the host name).
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    /// The longest a request waits for its answer, seconds (host: from a module, 60; guest:
    /// from the host, 65). A request that carries a shorter deadline (protocol version 2) is
    /// given up at that deadline instead.
    #[arg(long, value_name = "SECS")]
    pub request_timeout: Option<u64>,
    /// Host mode: seconds between two heartbeats to each guest's vm-connectd (fractions
    /// allowed; 0 turns the heartbeat off, and every guest's liveness stays unknown).
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse_secs)]
    pub heartbeat_interval: Duration,
    /// Host mode: seconds without an answer after which a guest whose vm-connectd answered is
    /// silent (fractions allowed).
    #[arg(long, value_name = "SECS", default_value = "20", value_parser = parse_secs)]
    pub liveness_timeout: Duration,
    /// Guest mode: a systemd unit whose failure the host should know of (repeatable): it
    /// must be active (`systemctl is-active`); failing --health-failures checks in a row makes
    /// the host see this guest unhealthy.
    #[arg(long = "health-unit", value_name = "UNIT")]
    pub health_units: Vec<String>,
    /// Guest mode: a command (absolute path, no arguments, run without a shell) that must exit
    /// 0 within --health-interval (repeatable); the check is named by its file name.
    #[arg(long = "health-command", value_name = "PATH")]
    pub health_commands: Vec<PathBuf>,
    /// Guest mode: seconds between two rounds of health checks (also each check's time limit).
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_secs)]
    pub health_interval: Duration,
    /// Guest mode: consecutive failures after which a health check is reported failing.
    #[arg(long, value_name = "N", default_value_t = crate::health::DEFAULT_FAILURES, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub health_failures: u32,
    /// Host mode: offer guest DOMAIN's stream (its pacemaker-remoted, through the channel) on
    /// 127.0.0.1:PORT from the start (repeatable). `vm-connectd expose` does the same while
    /// the daemon runs; the VirtualDomain agent does it for guest nodes.
    #[arg(long = "expose", value_name = "DOMAIN=PORT", value_parser = parse_expose)]
    pub expose: Vec<(String, u16)>,
    /// Guest mode: where a stream the host opens is connected to (pacemaker-remoted).
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:3121")]
    pub stream_target: std::net::SocketAddr,
    /// Guest mode: do not offer streams to the host (the host then opens none).
    #[arg(long)]
    pub no_streams: bool,
    /// Guest mode: keep the host cluster's Pacemaker key at PATH (usually
    /// /etc/pacemaker/authkey), for a guest the host cluster runs as a guest node: asked from
    /// the host on every new host link and every 60 s, written atomically, mode 0400.
    #[arg(long, value_name = "PATH")]
    pub pacemaker_authkey: Option<PathBuf>,
    /// Host mode: do not publish guests' liveness as transient node attributes
    /// (pmkt-guest-DOMAIN) through attrd: for hosts without Pacemaker.
    #[arg(long)]
    pub no_attributes: bool,
    /// More log output: info by default, -v debug, -vv trace (RUST_LOG overrides).
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Administration commands.
    #[command(subcommand)]
    pub command: Option<Command>,
}

impl Cli {
    /// The log level: a daemon logs at info (its start, links, modules, offences) by default,
    /// and each `-v` raises it one step (`-v` debug, `-vv` trace).
    pub fn verbosity(&self) -> vm_common::logging::Verbosity {
        vm_common::logging::Verbosity {
            verbose: self.verbose.saturating_add(1),
            quiet: false,
        }
    }
}

/// Seconds, fractions allowed, at most a day.
fn parse_secs(arg: &str) -> Result<Duration, String> {
    match arg.parse::<f64>() {
        Ok(s) if (0.0..=86_400.0).contains(&s) => Ok(Duration::from_secs_f64(s)),
        _ => Err(format!("expected seconds from 0 to 86400, got '{arg}'")),
    }
}

/// `--guest NAME=SOCKET`.
fn parse_guest(arg: &str) -> Result<(String, PathBuf), String> {
    match arg.split_once('=') {
        Some((name, path)) if !name.is_empty() && !path.is_empty() => {
            Ok((name.to_owned(), PathBuf::from(path)))
        }
        _ => Err(format!("expected NAME=SOCKET, got '{arg}'")),
    }
}

/// `--expose DOMAIN=PORT`.
fn parse_expose(arg: &str) -> Result<(String, u16), String> {
    match arg.split_once('=') {
        Some((name, port)) if !name.is_empty() => match port.parse::<u16>() {
            Ok(p) if p > 0 => Ok((name.to_owned(), p)),
            _ => Err(format!(
                "expected a port from 1 to 65535 after '=', got '{arg}'"
            )),
        },
        _ => Err(format!("expected DOMAIN=PORT, got '{arg}'")),
    }
}

/// `vm-connectd`'s administration commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the running daemon's guests/host link, link state, last traffic and modules (a
    /// host daemon's read page by page: complete for any number of guests).
    Status {
        /// The daemon's local socket.
        #[arg(long, value_name = "PATH", default_value = vm_proto::DEFAULT_SOCKET)]
        socket: PathBuf,
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
        /// Print only guest DOMAIN's liveness, as the node attribute pmkt-guest-DOMAIN has it
        /// (`<link>:<liveness>:<since>`), and on a second line `failing: CHECK,...` when its
        /// health checks fail; exit 4 when this host has no link to it.
        #[arg(long, value_name = "DOMAIN", conflicts_with = "json")]
        guest: Option<String>,
    },
    /// Host mode: offer guest DOMAIN's stream (its pacemaker-remoted, through the channel) on
    /// 127.0.0.1:PORT, or stop offering it (PORT 0). Idempotent; root only.
    Expose {
        /// The daemon's local socket.
        #[arg(long, value_name = "PATH", default_value = vm_proto::DEFAULT_SOCKET)]
        socket: PathBuf,
        /// The guest (libvirt domain name).
        domain: String,
        /// The loopback port; 0 withdraws.
        port: u16,
    },
}

/// Exit statuses, the shared ones ([`vm_common::exit`]) and `status --guest`'s own;
/// [`crate::start::MainError::exit_code`]
/// maps errors to them.
pub mod exit {
    pub use vm_common::exit::{FAILURE, SUCCESS, UNREACHABLE, USAGE};
    /// `status --guest`: this host has no link to that guest.
    pub const NOT_LINKED: u8 = 4;
}

/// Every exit status and its meaning, for the man page.
pub const EXIT_STATUS: &[(u8, &str)] = &[
    (
        exit::SUCCESS,
        "the daemon stopped on SIGTERM or SIGINT; status: printed",
    ),
    (
        exit::FAILURE,
        "the daemon could not start or failed (the reason is on stderr and in the log); status: the daemon gave no answer; expose: the daemon refused (the reason is on stderr)",
    ),
    (
        exit::USAGE,
        "usage error, including neither -t host nor -t guest",
    ),
    (
        exit::NOT_LINKED,
        "status --guest: the daemon has no link to that guest (not running on this host, or its channel not found)",
    ),
    (
        exit::UNREACHABLE,
        "status, expose: the daemon's socket cannot be reached (is it running?)",
    ),
];

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent_and_a_usage_error_exits_with_the_tables_usage_code() {
        assert_eq!(super::exit::USAGE, vm_common::exit::USAGE);
        vm_common::exit::check_cli(&super::Cli::command());
    }

    #[test]
    fn each_v_raises_the_log_level_from_info() {
        use clap::Parser;
        let level = |args: &[&str]| {
            super::Cli::try_parse_from(args)
                .unwrap()
                .verbosity()
                .directive()
        };
        assert_eq!(level(&["vm-connectd", "-t", "host"]), "info");
        assert_eq!(level(&["vm-connectd", "-t", "host", "-v"]), "debug");
        assert_eq!(level(&["vm-connectd", "-t", "guest", "-vv"]), "trace");
    }
}
