//! A host-mode vm-connectd run by a test: started as a child process, stopped by PID.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{project_bin, wait_for};

/// `BIN -t host --no-libvirt --no-attributes --node bench -d GUEST_DIR --socket SOCKET`, its
/// output discarded: the relay the benchmark harnesses load (their simulated guests listen in
/// GUEST_DIR, as QEMU would, and a release binary is measured rather than this tree's debug
/// build). Default heartbeat; no liveness attributes: they are written on changes only (none
/// while the guests answer), and a bench must not write into a cluster running on the machine.
pub fn spawn_bench_relay(bin: &str, guest_dir: &Path, socket: &Path) -> Child {
    Command::new(bin)
        .args([
            "-t",
            "host",
            "--no-libvirt",
            "--no-attributes",
            "--node",
            "bench",
            "-d",
        ])
        .arg(guest_dir)
        .arg("--socket")
        .arg(socket)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {bin}: {e}"))
}

/// A running `vm-connectd -t host`.
#[derive(Debug)]
pub struct HostRelay {
    child: Option<Child>,
    socket: PathBuf,
    log: PathBuf,
    args: Vec<String>,
}

impl HostRelay {
    /// Start `vm-connectd -t host --socket SOCKET -d DIR --node NODE EXTRA...`, logging to
    /// `log`; waits until its local socket answers.
    pub fn start(dir: &Path, socket: &Path, node: &str, extra: &[&str], log: &Path) -> Self {
        let mut args: Vec<String> = vec![
            "-t".into(),
            "host".into(),
            "-d".into(),
            dir.display().to_string(),
            "--socket".into(),
            socket.display().to_string(),
            "--node".into(),
            node.into(),
            "-vv".into(),
        ];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let mut relay = Self {
            child: None,
            socket: socket.to_owned(),
            log: log.to_owned(),
            args,
        };
        relay.spawn();
        relay
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(project_bin("vm-connectd"))
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let socket = self.socket.clone();
        wait_for(
            "vm-connectd's local socket",
            Duration::from_secs(20),
            || {
                std::os::unix::net::UnixStream::connect(&socket)
                    .ok()
                    .map(|_| ())
            },
        );
    }

    /// Stop it (SIGTERM, by PID) and start it again with the same options.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Stop it: SIGTERM by PID, then wait (SIGKILL after 10 s).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            for _ in 0..100 {
                if child.try_wait().ok().flatten().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The daemon's PID.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `vm-connectd status --json`, parsed.
    pub fn status(&self) -> serde_json::Value {
        let out = crate::run_ok(
            &vm_common::process::Cmd::new(project_bin("vm-connectd"))
                .args(["status", "--json", "--socket"])
                .arg(&self.socket),
        );
        serde_json::from_str(&out.stdout_text()).unwrap()
    }

    /// Whether the daemon still runs.
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }
}

impl Drop for HostRelay {
    fn drop(&mut self) {
        self.stop();
    }
}
