//! `vm-ctl`: manage libvirt guests as Pacemaker VirtualDomain resources.
//!
//! Thin binary: parse the command line, set up logging, run the command and print its report
//! (the library's [`vm_ctl::main_exec`]), map an error to its exit code
//! ([`vm_ctl::error::Error::exit_code`], the one mapping).

use std::process::ExitCode;

use clap::Parser;
use vm_ctl::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    vm_common::logging::init(vm_common::logging::Verbosity {
        verbose: cli.verbose,
        quiet: cli.quiet,
    });
    match vm_ctl::main_exec(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => ExitCode::from(e.exit_code()),
    }
}
