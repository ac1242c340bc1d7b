//! `vm-ctl`: manage libvirt guests as Pacemaker VirtualDomain resources.
//!
//! Thin binary: parse the command line, set up logging, run the command (library), print its
//! report once, map an error to its exit code (see `vm_ctl::error::exit`).

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use vm_ctl::cli::Cli;
use vm_ctl::output::Format;

fn main() -> ExitCode {
    let cli = Cli::parse();
    vm_common::logging::init(vm_common::logging::Verbosity {
        verbose: cli.verbose,
        quiet: cli.quiet,
    });
    let (result, warnings) = vm_ctl::run(&cli);
    match result {
        Ok(outcome) => {
            let (out, err) = outcome.render(cli.output);
            if !cli.quiet {
                eprint!("{err}");
            }
            print!("{out}");
            let _ = std::io::stdout().flush();
            let failed = outcome
                .findings
                .as_ref()
                .is_some_and(|f| f.iter().any(|f| f.level == vm_ctl::output::Level::Error));
            if failed {
                ExitCode::from(vm_ctl::error::exit::CHECK)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            for w in warnings {
                eprintln!("warning: {w}");
            }
            // the outer message names the step, its sources say why
            let msg = vm_common::error_chain(&e);
            eprintln!("vm-ctl: {msg}");
            if cli.output == Format::Json {
                let json = serde_json::json!({ "error": msg, "exit_code": e.exit_code() });
                println!("{json}");
            }
            ExitCode::from(e.exit_code())
        }
    }
}
