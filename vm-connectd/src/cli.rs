//! `vm-connectd`'s command line, in the library so that `cargo xtask assets` renders the man
//! page from the same definition `--help` uses.

use std::path::PathBuf;

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

/// `--guest NAME=SOCKET`.
fn parse_guest(arg: &str) -> Result<(String, PathBuf), String> {
    match arg.split_once('=') {
        Some((name, path)) if !name.is_empty() && !path.is_empty() => {
            Ok((name.to_owned(), PathBuf::from(path)))
        }
        _ => Err(format!("expected NAME=SOCKET, got '{arg}'")),
    }
}

/// `vm-connectd`'s administration commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the running daemon's guests/host link, link state, last traffic and modules.
    Status {
        /// The daemon's local socket.
        #[arg(long, value_name = "PATH", default_value = vm_proto::DEFAULT_SOCKET)]
        socket: PathBuf,
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Exit statuses, all of them shared ([`vm_common::exit`]); [`crate::start::MainError::exit_code`]
/// maps errors to them.
pub mod exit {
    pub use vm_common::exit::{FAILURE, SUCCESS, UNREACHABLE, USAGE};
}

/// Every exit status and its meaning, for the man page.
pub const EXIT_STATUS: &[(u8, &str)] = &[
    (
        exit::SUCCESS,
        "the daemon stopped on SIGTERM or SIGINT; status: printed",
    ),
    (
        exit::FAILURE,
        "the daemon could not start or failed (the reason is on stderr and in the log); status: the daemon gave no answer",
    ),
    (
        exit::USAGE,
        "usage error, including neither -t host nor -t guest",
    ),
    (
        exit::UNREACHABLE,
        "status: the daemon's socket cannot be reached (is it running?)",
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
