//! `fence_vmstonith`: see the library documentation. Options come from the command line or,
//! when there are no arguments, from `name=value` lines on stdin (as Pacemaker's fencer passes
//! them).

use std::process::ExitCode;

fn main() -> ExitCode {
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
