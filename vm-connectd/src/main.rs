//! `vm-connectd`: the relay between guests and their host over the `vmconnectd` virtio-serial
//! channel. Thin binary: options and logging, then the library's
//! [`vm_connectd::start::main_exec`]; its error's
//! [`exit_code`](vm_connectd::start::MainError::exit_code) is the exit status.

use std::process::ExitCode;

use clap::Parser;
use vm_connectd::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    vm_common::logging::init(cli.verbosity());
    match vm_connectd::start::main_exec(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let msg = vm_common::error_chain(&e);
            if e.is_daemon_failure() {
                tracing::error!("{msg}");
            }
            eprintln!("vm-connectd: {msg}");
            ExitCode::from(e.exit_code())
        }
    }
}
