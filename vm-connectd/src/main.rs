//! `vm-connectd`: the relay between guests and hosts over the virtio-serial channel.
//!
//! Thin binary. The relay itself arrives with issue #4; this build defines the program's
//! identity and options.

use std::process::ExitCode;

use clap::{Parser, ValueEnum};

/// Which end of the channel this daemon serves.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Mode {
    /// On a host: connect to every local guest's channel socket, serve host modules.
    Host,
    /// In a guest: open the virtio-serial port, serve local clients.
    Guest,
}

/// Relay between guests and their host over the `vmconnectd` virtio-serial channel.
#[derive(Debug, Parser)]
#[command(name = "vm-connectd", version, about, long_about = None)]
struct Cli {
    /// Host or guest mode.
    #[arg(short = 't', long = "type", value_enum)]
    mode: Mode,
    /// Host mode: directory holding the guests' channel sockets.
    #[arg(short = 'd', long = "sock-dir", value_name = "DIR", default_value = vm_proto::DEFAULT_HOST_SOCKET_DIR)]
    sock_dir: std::path::PathBuf,
    /// Local socket for clients and host modules.
    #[arg(long, value_name = "PATH", default_value = vm_proto::DEFAULT_SOCKET)]
    socket: std::path::PathBuf,
    /// More log output (repeat for more).
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    vm_common::logging::init(vm_common::logging::Verbosity {
        verbose: cli.verbose,
        quiet: false,
    });
    eprintln!("vm-connectd: the relay is not implemented yet (issue #4)");
    ExitCode::from(2)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
