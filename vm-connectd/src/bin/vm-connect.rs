//! `vm-connect`: send one request through vm-connectd's local socket and print the answer.
//!
//! Thin binary. The client arrives with issue #4; this build defines the program's identity and
//! options.

use std::process::ExitCode;

use clap::Parser;

/// Send one request through the local vm-connectd and print the answer.
#[derive(Debug, Parser)]
#[command(name = "vm-connect", version, about, long_about = None)]
struct Cli {
    /// vm-connectd's local socket.
    #[arg(long, value_name = "PATH", default_value = vm_proto::DEFAULT_SOCKET)]
    socket: std::path::PathBuf,
}

fn main() -> ExitCode {
    let _cli = Cli::parse();
    eprintln!("vm-connect: the client is not implemented yet (issue #4)");
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
