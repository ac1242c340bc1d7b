//! Harness for wire-level tests: the real vm-connectd binary, started per test in a temp dir,
//! and fake peers speaking raw protocol bytes.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vm_proto::{Decoder, Frame, Kind, Message};

pub const BIN: &str = env!("CARGO_BIN_EXE_vm-connectd");

/// A vm-connectd process with its temp dir; stopped by PID on drop.
pub struct Daemon {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub log: PathBuf,
}

impl Daemon {
    /// Host mode without libvirt, guest sockets in `<dir>/guests`, without the heartbeat
    /// (its frames would interleave with what a test expects) and without publishing
    /// attributes (a test must not write into a cluster that runs on this machine).
    pub fn host(extra: &[&str]) -> Self {
        let mut args = vec!["--heartbeat-interval", "0"];
        args.extend_from_slice(extra);
        Self::host_with(&args, &[])
    }

    /// Host mode without libvirt, `--no-attributes` unless `path` (prepended to `PATH`, where
    /// a test puts its own `attrd_updater`) is given, heartbeat as `extra` says.
    pub fn host_with(extra: &[&str], path: &[&Path]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("guests")).unwrap();
        let guests = dir.path().join("guests").display().to_string();
        let mut args = vec![
            "-t",
            "host",
            "--no-libvirt",
            "--node",
            "h1",
            "-d",
            guests.as_str(),
            "-vv",
        ];
        if path.is_empty() {
            args.push("--no-attributes");
        }
        args.extend_from_slice(extra);
        Self::start_env(dir, &args, &[("PATH", search_path(path))])
    }

    /// Guest mode with `--port` a unix socket at `<dir>/port` (the test plays the host side).
    pub fn guest(extra: &[&str]) -> (Self, UnixListener) {
        Self::guest_with_path(extra, &[])
    }

    /// [`Daemon::guest`] with `PATH` starting with `path` (where a test puts its own
    /// `systemctl`).
    pub fn guest_with_path(extra: &[&str], path: &[&Path]) -> (Self, UnixListener) {
        let dir = tempfile::tempdir().unwrap();
        let port = dir.path().join("port");
        let listener = UnixListener::bind(&port).unwrap();
        let port = port.display().to_string();
        let mut args = vec!["-t", "guest", "--port", port.as_str(), "-vv"];
        args.extend_from_slice(extra);
        let d = Self::start_env(dir, &args, &[("PATH", search_path(path))]);
        (d, listener)
    }

    /// Any mode, with `args` as given (plus `--socket`), in `dir`.
    pub fn host_in(dir: tempfile::TempDir, args: &[&str]) -> Self {
        Self::start(dir, args)
    }

    fn start(dir: tempfile::TempDir, args: &[&str]) -> Self {
        Self::start_env(dir, args, &[])
    }

    fn start_env(
        dir: tempfile::TempDir,
        args: &[&str],
        env: &[(&str, std::ffi::OsString)],
    ) -> Self {
        let socket = dir.path().join("vmc.sock");
        let log = dir.path().join("daemon.log");
        let logf = std::fs::File::create(&log).unwrap();
        let child = Command::new(BIN)
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .arg("--socket")
            .arg(&socket)
            .stdin(Stdio::null())
            .stdout(logf.try_clone().unwrap())
            .stderr(logf)
            .spawn()
            .unwrap();
        let d = Self {
            child,
            dir,
            socket,
            log,
        };
        d.wait_for(
            || UnixStream::connect(&d.socket).is_ok(),
            "the local socket",
        );
        d
    }

    pub fn guests_dir(&self) -> PathBuf {
        self.dir.path().join("guests")
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn wait_for(&self, mut ok: impl FnMut() -> bool, what: &str) {
        let t0 = Instant::now();
        while !ok() {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "timed out waiting for {what}\nlog:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A fake guest: listen where QEMU would, wait for the daemon to connect, read its Hello.
    pub fn guest_peer(&self, name: &str) -> Peer {
        let path = self.guests_dir().join(name);
        let listener = UnixListener::bind(&path).unwrap();
        listener.set_nonblocking(true).unwrap();
        let t0 = Instant::now();
        let stream = loop {
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(_) if t0.elapsed() < Duration::from_secs(20) => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("daemon never connected to {name}: {e}\n{}", self.log_text()),
            }
        };
        stream.set_nonblocking(false).unwrap();
        let mut peer = Peer::new(stream);
        peer.listener = Some(listener);
        let hello = peer.recv();
        assert_eq!(
            hello.kind(),
            Kind::Hello,
            "the host greets a new link first"
        );
        peer
    }

    pub fn status(&self) -> serde_json::Value {
        let mut c =
            vm_proto::client::Client::connect(&self.socket, vm_proto::Role::Client).unwrap();
        serde_json::from_str(&c.status(Duration::from_secs(5)).unwrap()).unwrap()
    }

    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let t0 = Instant::now();
        while self.child.try_wait().ok().flatten().is_none()
            && t0.elapsed() < Duration::from_secs(5)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A raw protocol peer on a stream.
pub struct Peer {
    pub stream: UnixStream,
    decoder: Decoder,
    pub listener: Option<UnixListener>,
}

impl Peer {
    pub fn new(stream: UnixStream) -> Self {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Self {
            stream,
            decoder: Decoder::new(),
            listener: None,
        }
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    pub fn send(&mut self, msg: &Message, id: u64) {
        self.send_raw(&msg.to_frame(id).to_bytes());
    }

    /// The next frame (panics after the read timeout).
    pub fn recv(&mut self) -> Frame {
        self.try_recv(Duration::from_secs(10))
            .expect("no frame within 10 s")
    }

    pub fn try_recv(&mut self, timeout: Duration) -> Option<Frame> {
        self.stream.set_read_timeout(Some(timeout)).unwrap();
        let mut buf = [0u8; 65536];
        loop {
            if let Some(r) = self.decoder.next_frame() {
                return Some(r.expect("valid frame from the daemon"));
            }
            match self.stream.read(&mut buf) {
                Ok(0) => return None,
                Ok(n) => self.decoder.feed(&buf[..n]),
                Err(_) => return None,
            }
        }
    }

    /// Skip frames until one with this kind arrives.
    pub fn recv_kind(&mut self, kind: Kind) -> Frame {
        loop {
            let f = self.recv();
            if f.kind() == kind {
                return f;
            }
        }
    }
}

pub fn wait_file(path: &Path) {
    let t0 = Instant::now();
    while !path.exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Writes `text` to `path`, mode 0755 (a script a test runs, or puts on a `PATH`).
pub fn executable(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    let mut perm = std::fs::metadata(path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(path, perm).unwrap();
}

/// `PATH` with `first` before this process's own search path (where a test puts stand-ins for
/// the tools a daemon runs).
fn search_path(first: &[&Path]) -> std::ffi::OsString {
    let mut search: Vec<PathBuf> = first.iter().map(|p| p.to_path_buf()).collect();
    search.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(search).unwrap()
}
