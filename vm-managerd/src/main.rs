//! `vm-managerd`: answers guests with the node attributes of the host node they run on.
//! Thin binary: options and logging, then the library's [`vm_managerd::start::main_exec`];
//! its error's [`exit_code`](vm_managerd::start::MainError::exit_code) is the exit status.

use std::process::ExitCode;

use clap::Parser;
use vm_managerd::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // a daemon's log says what it does by default (info), -V for more
    vm_common::logging::init(vm_common::logging::Verbosity {
        verbose: cli.verbose.saturating_add(1),
        quiet: false,
    });
    match vm_managerd::start::main_exec(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{}", vm_common::error_chain(&e));
            ExitCode::from(e.exit_code())
        }
    }
}
