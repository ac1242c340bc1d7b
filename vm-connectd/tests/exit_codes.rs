//! vm-connectd's exit codes from the binary itself, as docs/operations.md and its man page list
//! them.

use std::process::Command;

fn vm_connectd(args: &[&str]) -> std::io::Result<std::process::Output> {
    Command::new(env!("CARGO_BIN_EXE_vm-connectd"))
        .args(args)
        .output()
}

#[test]
fn no_mode_is_a_usage_error() {
    let out = vm_connectd(&[]).unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("give -t host or -t guest"), "{err}");
}

#[test]
fn status_of_a_daemon_not_running_is_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("none.sock");
    let out = vm_connectd(&["status", "--socket", sock.to_str().unwrap()]).unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(err.contains("cannot reach the daemon"), "{err}");
}
