//! `vm-stonithd`: carries out fence requests from guest clusters through the host cluster.
//! Thin binary: options and logging, then the library's [`vm_stonithd::start::main_exec`];
//! its error's [`exit_code`](vm_stonithd::start::MainError::exit_code) is the exit status.

use std::process::ExitCode;

use clap::Parser;
use vm_stonithd::cli::Cli;
use vm_stonithd::watch;

fn main() -> ExitCode {
    // crm_mon runs this program as its external agent for cluster events (see watch.rs)
    if watch::notify_from_env() {
        return ExitCode::SUCCESS;
    }
    let cli = Cli::parse();
    // a daemon's log has one line per request by default (info), -v for more
    vm_common::logging::init(vm_common::logging::Verbosity {
        verbose: cli.verbose.saturating_add(1),
        quiet: false,
    });
    match vm_stonithd::start::main_exec(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{}", vm_common::error_chain(&e));
            ExitCode::from(e.exit_code())
        }
    }
}
