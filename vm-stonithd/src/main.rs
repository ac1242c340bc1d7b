//! `vm-stonithd`: carries out fence requests from guest clusters through the host cluster.
//!
//! Thin binary. The daemon arrives with issue #5; this build defines the program's identity and
//! options.

use std::process::ExitCode;

use clap::Parser;

/// Carry out fence requests from guest clusters through the host Pacemaker cluster.
#[derive(Debug, Parser)]
#[command(name = "vm-stonithd", version, about, long_about = None)]
struct Cli {
    /// vm-connectd's local socket, where vm-stonithd registers as the fencing module.
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
    eprintln!("vm-stonithd: fencing is not implemented yet (issue #5)");
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
