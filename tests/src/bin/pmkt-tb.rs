//! `pmkt-tb`: the test bed's guest helpers for shell scripts and for use inside namespace nodes.
//!
//! ```text
//! pmkt-tb console SOCKET COMMAND [TIMEOUT_S]   run COMMAND on a guest's serial console
//! pmkt-tb echo SOCKET LINE...                  talk to a guest's vmconnectd echo service
//! ```
//! Exit status: the command's status for `console`; 0 when every line came back for `echo`;
//! 2 for usage errors, 1 for anything else.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use vm_tests::guest::{Console, EchoPeer};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("console") if args.len() >= 3 => console(&args[1], &args[2], args.get(3)),
        Some("echo") if args.len() >= 3 => echo(&args[1], &args[2..]),
        _ => {
            eprintln!("usage: pmkt-tb console SOCKET COMMAND [TIMEOUT_S] | echo SOCKET LINE...");
            ExitCode::from(2)
        }
    }
}

fn console(socket: &str, command: &str, timeout: Option<&String>) -> ExitCode {
    let timeout = Duration::from_secs(timeout.and_then(|t| t.parse().ok()).unwrap_or(60));
    let result = Console::connect(Path::new(socket)).and_then(|mut c| c.run(command, timeout));
    match result {
        Ok(out) => {
            print!("{}", out.output);
            ExitCode::from(u8::try_from(out.status).unwrap_or(1))
        }
        Err(e) => {
            eprintln!("pmkt-tb console {socket}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn echo(socket: &str, lines: &[String]) -> ExitCode {
    let mut peer = match EchoPeer::connect(Path::new(socket), Duration::from_secs(30)) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("pmkt-tb echo {socket}: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("guest -> host: {}", peer.greeting);
    for line in lines {
        match peer.echo(line) {
            Ok((answer, rtt)) if answer == format!("echo:{line}") => {
                println!(
                    "host -> guest -> host: {} bytes in {:.1} ms",
                    line.len(),
                    rtt.as_secs_f64() * 1000.0
                );
            }
            Ok((answer, _)) => {
                eprintln!("pmkt-tb echo {socket}: sent {line:?}, got {answer:?}");
                return ExitCode::FAILURE;
            }
            Err(e) => {
                eprintln!("pmkt-tb echo {socket}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
