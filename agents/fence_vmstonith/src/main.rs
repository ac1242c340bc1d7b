//! `fence_vmstonith`: see the library documentation. Options come from the command line or,
//! when there are no arguments, from `name=value` lines on stdin (as Pacemaker's fencer passes
//! them).

use std::process::ExitCode;

fn main() -> ExitCode {
    // First, before anything touches OpenSSL: this process only seals and opens, and starts
    // for every fencer action (vm_seal::init_for_sealing). Should it fail, OpenSSL initialises
    // itself in full on first use, as it would anyway.
    let _ = vm_seal::init_for_sealing();
    // (args_os: `args` would panic on an argument that is not UTF-8; such an argument is
    // refused by the parser instead, with its invalid bytes replaced)
    let argv: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let code = fence_vmstonith::run(
        &argv,
        &mut std::io::stdin().lock(),
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    );
    ExitCode::from(code)
}
