//! `vm-connectd`: the relay between guests and their host over the `vmconnectd` virtio-serial
//! channel. Thin binary: options, logging, runtime, then the library's host or guest mode.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

/// Which end of the channel this daemon serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// On a host: connect to every local guest's channel socket, serve host modules.
    Host,
    /// In a guest: open the virtio-serial port, serve local clients.
    Guest,
}

/// Relay between guests and their host over the `vmconnectd` virtio-serial channel.
#[derive(Debug, Parser)]
#[command(name = "vm-connectd", version, about, long_about = None, args_conflicts_with_subcommands = true)]
struct Cli {
    /// Host or guest mode.
    #[arg(short = 't', long = "type", value_enum)]
    mode: Option<Mode>,
    /// Host mode: directory holding the guests' channel sockets (QEMU's <source path>).
    #[arg(short = 'd', long = "sock-dir", value_name = "DIR", default_value = vm_proto::DEFAULT_HOST_SOCKET_DIR)]
    sock_dir: PathBuf,
    /// Local socket for clients and host modules (mode 0600).
    #[arg(long, value_name = "PATH", default_value = vm_proto::DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Guest mode: the port (a character device, or a unix socket for tests). Default:
    /// /dev/virtio-ports/vmconnectd, else the port named vmconnectd in /sys/class/virtio-ports.
    #[arg(long, value_name = "PATH")]
    port: Option<PathBuf>,
    /// Host mode: libvirt URI for guest identities and lifecycle events.
    #[arg(long, value_name = "URI", default_value = "qemu:///system")]
    libvirt: String,
    /// Host mode: do not use libvirt; a guest's identity is then its socket's file name, so
    /// only for hosts where nobody but QEMU for the named guest can create files in --sock-dir.
    #[arg(long)]
    no_libvirt: bool,
    /// Host mode, with libvirt: where libvirt keeps each running domain's QEMU pid
    /// (`<domain>.pid`); the process listening on a guest's socket must be that QEMU.
    #[arg(long, value_name = "DIR", default_value = "/run/libvirt/qemu")]
    qemu_pid_dir: PathBuf,
    /// Host mode: the socket SOCKET (in --sock-dir) is guest NAME's channel, whatever libvirt
    /// says (repeatable): for channels libvirt does not manage. Whoever listens on it is that
    /// guest, so only for sockets nobody else can create.
    #[arg(long = "guest", value_name = "NAME=SOCKET", value_parser = parse_guest)]
    guests: Vec<(String, PathBuf)>,
    /// Host mode: this host's name in answers to guests (default: the host name).
    #[arg(long, value_name = "NAME")]
    node: Option<String>,
    /// Seconds to wait for an answer (host: from a module; guest: from the host).
    #[arg(long, value_name = "SECS")]
    request_timeout: Option<u64>,
    /// More log output (repeat for more).
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Administration commands.
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    vm_common::logging::init(vm_common::logging::Verbosity {
        verbose: cli.verbose.max(1),
        quiet: false,
    });
    if let Some(Command::Status { socket, json }) = &cli.command {
        return status(socket, *json);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("vm-connectd: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.mode {
            Some(Mode::Guest) => {
                let cfg = vm_connectd::guest::GuestConfig {
                    port: cli.port.clone().map_or(
                        vm_connectd::port::PortSpec::Auto,
                        vm_connectd::port::PortSpec::Path,
                    ),
                    socket: cli.socket.clone(),
                    request_timeout: cli.request_timeout.map_or(
                        vm_connectd::limits::GUEST_REQUEST_TIMEOUT,
                        Duration::from_secs,
                    ),
                };
                vm_connectd::guest::run(cfg, vm_connectd::shutdown_signal())
                    .await
                    .map_err(|e| vm_common::error_chain(&e))
            }
            Some(Mode::Host) => host(&cli).await,
            None => Err("give -t host or -t guest".to_owned()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("vm-connectd: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(feature = "libvirt")]
async fn host(cli: &Cli) -> Result<(), String> {
    let node = cli.node.clone().unwrap_or_else(|| {
        nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    let cfg = vm_connectd::host::HostConfig {
        sock_dir: cli.sock_dir.clone(),
        socket: cli.socket.clone(),
        libvirt_uri: (!cli.no_libvirt).then(|| cli.libvirt.clone()),
        node,
        request_timeout: cli.request_timeout.map_or(
            vm_connectd::limits::HOST_REQUEST_TIMEOUT,
            Duration::from_secs,
        ),
        qemu_pid_dir: cli.qemu_pid_dir.clone(),
        guests: cli.guests.clone(),
    };
    vm_connectd::host::run(cfg, vm_connectd::shutdown_signal())
        .await
        .map_err(|e| vm_common::error_chain(&e))
}

#[cfg(not(feature = "libvirt"))]
async fn host(_cli: &Cli) -> Result<(), String> {
    Err("this build has no host mode (built without the libvirt feature, for guests)".to_owned())
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

fn status(socket: &std::path::Path, json: bool) -> ExitCode {
    let mut client = match vm_proto::client::Client::connect(socket, vm_proto::Role::Client) {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "vm-connectd status: cannot reach the daemon: {}; is it running? (--socket names \
                 another socket)",
                vm_common::error_chain(&e)
            );
            return ExitCode::from(5);
        }
    };
    match client.status(Duration::from_secs(5)) {
        Ok(text) if json => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Ok(text) => {
            print!("{}", vm_connectd::status_text(&text));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("vm-connectd status: {}", vm_common::error_chain(&e));
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
