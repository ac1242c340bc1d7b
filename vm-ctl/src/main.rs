//! `vm-ctl`: manage libvirt guests as Pacemaker VirtualDomain resources.
//!
//! Thin binary: parse the command line, set up logging, hand over to the library. The commands
//! themselves (resource add/delete/start/stop/move, location move, check) arrive with issue #3;
//! this build defines the program's identity and global options.

use std::process::ExitCode;

use clap::Parser;

/// Manage libvirt guests as Pacemaker VirtualDomain resources, one atomic CIB change per command.
#[derive(Debug, Parser)]
#[command(name = "vm-ctl", version, about, long_about = None)]
struct Cli {
    /// vm-ctl configuration file (the original vm-ctl.conf format).
    #[arg(long, value_name = "FILE", default_value = "/etc/vm-ctl.conf")]
    config: std::path::PathBuf,
    /// More log output (repeat for more).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Only errors.
    #[arg(short, long, global = true)]
    quiet: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    vm_common::logging::init(vm_common::logging::Verbosity {
        verbose: cli.verbose,
        quiet: cli.quiet,
    });
    eprintln!("vm-ctl: no command given; the resource commands are not implemented yet (issue #3)");
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
