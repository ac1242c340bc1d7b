//! The guest-fencing test bed: a host vm-connectd and a vm-stonithd run by the test (stopped
//! by PID), a guest cluster's key, and "bridged" guests: a guest-mode vm-connectd whose port is
//! a unix socket spliced to a channel socket in the host relay's directory, standing in for a
//! guest's virtio-serial channel where a test needs many guests.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use vm_common::process::Cmd;
use vm_seal::Key;

use crate::connectd::HostRelay;
use crate::{project_bin, wait_for};

/// The guest cluster of the tests.
pub const CLUSTER: &str = "gc";

/// A running vm-stonithd with its host relay and key.
#[derive(Debug)]
pub struct StonithBed {
    dir: tempfile::TempDir,
    /// The guest cluster's key (also in the host key directory).
    pub key: Key,
    /// The host relay.
    pub relay: HostRelay,
    stonithd: Option<Child>,
    clusters: String,
    legacy: String,
    extra: String,
}

impl StonithBed {
    /// A bed whose host relay serves channel sockets in `chan_dir`, with vm-stonithd
    /// configured with `clusters` (`[[cluster]]` tables; the key is for cluster [`CLUSTER`]).
    pub fn start(chan_dir: &Path, node: &str, clusters: &str) -> StonithBed {
        Self::start_bridged(chan_dir, node, clusters, &[])
    }

    /// [`StonithBed::start`] for a test that also runs [`BridgedGuest`]s named `bridged`: the
    /// relay is told their channels' names (`--guest`), which libvirt does not know.
    pub fn start_bridged(
        chan_dir: &Path,
        node: &str,
        clusters: &str,
        bridged: &[&str],
    ) -> StonithBed {
        let relay_args: Vec<String> = bridged
            .iter()
            .map(|name| BridgedGuest::relay_arg(chan_dir, name))
            .collect();
        let relay_args: Vec<&str> = relay_args.iter().map(String::as_str).collect();
        Self::start_with_relay_args(chan_dir, node, clusters, &relay_args)
    }

    /// [`StonithBed::start`] with `relay_args` given to the host relay (e.g. `--no-libvirt`,
    /// where a [`BridgedGuest`] is named after its channel socket's file).
    pub fn start_with_relay_args(
        chan_dir: &Path,
        node: &str,
        clusters: &str,
        relay_args: &[&str],
    ) -> StonithBed {
        let dir = tempfile::Builder::new()
            .prefix("pmkt-stonith-")
            .tempdir()
            .unwrap();
        std::fs::create_dir(dir.path().join("keys")).unwrap();
        let key = Key::generate(CLUSTER).unwrap();
        key.write_new(&dir.path().join("keys").join(format!("{CLUSTER}.key")))
            .unwrap();
        key.write_new(&dir.path().join("fence.key")).unwrap();
        let relay = HostRelay::start(
            chan_dir,
            &dir.path().join("host.sock"),
            node,
            relay_args,
            &dir.path().join("vm-connectd.log"),
        );
        let mut bed = StonithBed {
            dir,
            key,
            relay,
            stonithd: None,
            clusters: clusters.to_owned(),
            legacy: String::new(),
            extra: String::new(),
        };
        bed.start_stonithd(&[]);
        bed
    }

    /// The bed's private directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The guest copy of the key (what a guest installs as /etc/pm-kvm-tools/fence.key).
    pub fn guest_key(&self) -> PathBuf {
        self.dir.path().join("fence.key")
    }

    /// The host relay's local socket (where vm-stonithd registers).
    pub fn host_socket(&self) -> PathBuf {
        self.dir.path().join("host.sock")
    }

    /// Replaces the `[legacy]` table (takes effect at the next start).
    pub fn set_legacy(&mut self, legacy: &str) {
        self.legacy = legacy.to_owned();
    }

    /// Top-level settings written before the `[[cluster]]` tables (at the next start).
    pub fn set_extra(&mut self, settings: &str) {
        self.extra = settings.to_owned();
    }

    fn write_config(&self) -> PathBuf {
        let path = self.dir.path().join("vm-stonithd.toml");
        let text = format!(
            "socket = \"{}\"\nkey_dir = \"{}\"\nmax_timeout = 55\n{}{}\n{}\n",
            self.host_socket().display(),
            self.dir.path().join("keys").display(),
            self.extra,
            self.clusters,
            self.legacy
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Restarts vm-stonithd (SIGTERM, then start) with a stand-in for the Pacemaker tool `tool`
    /// first in its PATH: a shell script whose body is `body` (fault injection: a tool that
    /// fails or answers slowly).
    pub fn restart_with_fake_tool(&mut self, tool: &str, body: &str) {
        let fake = self.dir().join("fakebin");
        std::fs::create_dir_all(&fake).unwrap();
        let script = fake.join(tool);
        std::fs::write(&script, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        self.stop_stonithd(nix::sys::signal::Signal::SIGTERM);
        let path = format!(
            "{}:{}",
            fake.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        self.start_stonithd(&[("PATH", &path)]);
    }

    /// Starts vm-stonithd (with extra environment, e.g. a PATH with a failing tool) and waits
    /// until it has registered with the relay.
    pub fn start_stonithd(&mut self, env: &[(&str, &str)]) {
        assert!(self.stonithd.is_none(), "vm-stonithd already running");
        let config = self.write_config();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let mut cmd = Command::new(project_bin("vm-stonithd"));
        cmd.arg("--config")
            .arg(&config)
            .arg("--state-dir")
            .arg(self.dir.path().join("run"))
            .arg("-v")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        self.stonithd = Some(cmd.spawn().unwrap());
        let relay_socket = self.host_socket();
        wait_for("vm-stonithd to register", Duration::from_secs(30), || {
            let st = Cmd::new(project_bin("vm-connectd"))
                .args(["status", "--json", "--socket"])
                .arg(&relay_socket)
                .run()
                .ok()?;
            let v: serde_json::Value = serde_json::from_str(&st.stdout_text()).ok()?;
            v["modules"]
                .as_array()?
                .iter()
                .any(|m| m["service"] == "stonith")
                .then_some(())
        });
    }

    /// Stops vm-stonithd with `signal` (by PID) and waits for it.
    pub fn stop_stonithd(&mut self, signal: nix::sys::signal::Signal) {
        if let Some(mut child) = self.stonithd.take() {
            let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
            let _ = nix::sys::signal::kill(pid, signal);
            wait_for("vm-stonithd to exit", Duration::from_secs(90), || {
                child.try_wait().ok().flatten().map(|_| ())
            });
        }
    }

    /// vm-stonithd's pid.
    pub fn stonithd_pid(&self) -> Option<u32> {
        self.stonithd.as_ref().map(Child::id)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("vm-stonithd.log")
    }

    /// vm-stonithd's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// `fence_vmstonith` (built for this machine) talking to the guest daemon at `socket` as
    /// guest `requester`, with the guest key.
    pub fn agent(&self, socket: &Path, requester: &str, args: &[&str]) -> Cmd {
        Cmd::new(project_bin("fence_vmstonith"))
            .arg("--socket")
            .arg(socket)
            .arg("--key-file")
            .arg(self.guest_key())
            .args(["--requester", requester])
            .args(args)
            .timeout(Duration::from_secs(180))
    }
}

impl Drop for StonithBed {
    fn drop(&mut self) {
        self.stop_stonithd(nix::sys::signal::Signal::SIGTERM);
    }
}

/// A guest stood in for by a guest-mode vm-connectd on this machine: its port is spliced to a
/// channel socket `<chan_dir>/<name>.sock`, which the host relay picks up like a QEMU channel.
/// libvirt knows no domain with that socket, so the relay must be told its name
/// ([`BridgedGuest::relay_arg`]: `--guest <name>=<socket>`); it links no unclaimed socket.
#[derive(Debug)]
pub struct BridgedGuest {
    name: String,
    socket: PathBuf,
    chan: PathBuf,
    port: PathBuf,
    daemon: Child,
    stop: Arc<AtomicBool>,
}

impl BridgedGuest {
    /// The host relay option that names the bridged channel `<chan_dir>/<name>.sock` as guest
    /// `name` (give it to the relay before [`BridgedGuest::start`]).
    pub fn relay_arg(chan_dir: &Path, name: &str) -> String {
        format!(
            "--guest={name}={}",
            chan_dir.join(format!("{name}.sock")).display()
        )
    }

    /// Starts the bridge and the guest daemon; waits until a ping through them is answered.
    pub fn start(chan_dir: &Path, work: &Path, name: &str) -> BridgedGuest {
        BridgedGuest::start_with(chan_dir, work, name, &[])
    }

    /// [`BridgedGuest::start`] with more options for the guest daemon (e.g.
    /// `--pacemaker-authkey PATH`).
    pub fn start_with(chan_dir: &Path, work: &Path, name: &str, extra: &[&str]) -> BridgedGuest {
        let chan = chan_dir.join(format!("{name}.sock"));
        let port = work.join(format!("{name}.port"));
        let socket = work.join(format!("{name}.guest.sock"));
        for p in [&chan, &port, &socket] {
            let _ = std::fs::remove_file(p);
        }
        let host_side = UnixListener::bind(&chan).unwrap();
        let guest_side = UnixListener::bind(&port).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        thread::spawn(move || {
            // one host connection and one guest connection at a time, spliced; either side
            // closing ends the pair (as a channel does when QEMU or the guest goes away)
            while !flag.load(Ordering::SeqCst) {
                let Ok((h, _)) = host_side.accept() else {
                    return;
                };
                let Ok((g, _)) = guest_side.accept() else {
                    return;
                };
                if flag.load(Ordering::SeqCst) {
                    return;
                }
                splice(h, g);
            }
        });
        let log = std::fs::File::create(work.join(format!("{name}.guest.log"))).unwrap();
        let daemon = Command::new(project_bin("vm-connectd"))
            .args(["-t", "guest", "--port"])
            .arg(&port)
            .arg("--socket")
            .arg(&socket)
            .arg("-v")
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let g = BridgedGuest {
            name: name.to_owned(),
            socket,
            chan,
            port,
            daemon,
            stop,
        };
        let s = g.socket.clone();
        wait_for(
            &format!("bridged guest {name} to reach the host"),
            Duration::from_secs(30),
            || {
                Cmd::new(project_bin("vm-connect"))
                    .arg("--socket")
                    .arg(&s)
                    .args(["--timeout", "2", "ping"])
                    .run()
                    .ok()
                    .filter(vm_common::process::Output::success)
                    .map(|_| ())
            },
        );
        g
    }

    /// The guest daemon's local socket (what the guest's agents use).
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Its name (the origin the host relay gives it).
    pub fn name(&self) -> &str {
        &self.name
    }
}

fn splice(a: UnixStream, b: UnixStream) {
    let (Ok(a2), Ok(b2)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    let pump = |mut from: UnixStream, mut to: UnixStream| {
        thread::spawn(move || {
            let mut buf = [0u8; 16384];
            loop {
                match from.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = from.shutdown(std::net::Shutdown::Both);
            let _ = to.shutdown(std::net::Shutdown::Both);
        })
    };
    let t1 = pump(a, b2);
    let t2 = pump(b, a2);
    let _ = t1.join();
    let _ = t2.join();
}

impl Drop for BridgedGuest {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.daemon.id()).unwrap_or(0));
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.daemon.wait();
        self.stop.store(true, Ordering::SeqCst);
        // unblock the accepts
        let _ = UnixStream::connect(&self.chan);
        let _ = UnixStream::connect(&self.port);
        let _ = std::fs::remove_file(&self.chan);
        let _ = std::fs::remove_file(&self.port);
    }
}

/// Installs the project's fence agents where Pacemaker's fencer and cluster-glue look for them
/// (this machine is a test bed): `/usr/sbin/fence_vmstonith` and the `external/vm-stonith`
/// plugin.
pub fn install_fence_agents() {
    crate::run_ok(
        &Cmd::new("install")
            .args(["-m", "0755"])
            .arg(project_bin("fence_vmstonith"))
            .arg("/usr/sbin/fence_vmstonith"),
    );
    crate::run_ok(
        &Cmd::new("install")
            .args(["-D", "-m", "0755"])
            .arg(crate::repo_dir().join("agents/stonith/external/vm-stonith"))
            .arg("/usr/lib/stonith/plugins/external/vm-stonith"),
    );
}
