//! vm-stonithd as the `remote` module (issue 17) for the tests of the Pacemaker key's delivery:
//! started by the test on a CIB file beside a host relay, stopped by PID. The cib tier's
//! `remote.rs` (bridged guests) and the guest tier's `authkey.rs` (TCG guests) share it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::connectd::HostRelay;
use crate::{project_bin, wait_for};

/// A vm-stonithd serving `remote` (and `stonith`, with no keys) on `cib`, through `relay`.
#[derive(Debug)]
pub struct RemoteModule {
    child: Child,
    /// Its log (stdout and stderr).
    pub log: PathBuf,
}

impl RemoteModule {
    /// Starts vm-stonithd in `work` with `guest_node_authkey = host_key` on the CIB file `cib`,
    /// registered on `relay` (whose socket is `host_socket`); waits until `remote` is
    /// registered there.
    pub fn start(
        work: &Path,
        relay: &HostRelay,
        host_socket: &Path,
        host_key: &Path,
        cib: &Path,
    ) -> Self {
        let keys = work.join("keys");
        std::fs::create_dir(&keys).unwrap();
        std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o700)).unwrap();
        let config = work.join("vm-stonithd.toml");
        std::fs::write(
            &config,
            format!(
                "socket = \"{}\"\nkey_dir = \"{}\"\nguest_node_authkey = \"{}\"\n",
                host_socket.display(),
                keys.display(),
                host_key.display()
            ),
        )
        .unwrap();
        let log = work.join("vm-stonithd.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(project_bin("vm-stonithd"))
            .arg("--config")
            .arg(&config)
            .arg("--state-dir")
            .arg(work.join("run"))
            .arg("-v")
            .env("CIB_file", cib)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        let module = RemoteModule { child, log };
        wait_for(
            "the remote module to register",
            Duration::from_secs(30),
            || {
                relay.status()["modules"]
                    .as_array()?
                    .iter()
                    .any(|m| m["service"] == "remote")
                    .then_some(())
            },
        );
        module
    }
}

impl Drop for RemoteModule {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap_or(0));
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
    }
}

/// Node `node`'s transient attribute `name` in the CIB file `cib`, if set.
pub fn attr(cib: &Path, node: &str, name: &str) -> Option<String> {
    let text = std::fs::read_to_string(cib).ok()?;
    vm_pcmk::Cib::parse(&text)
        .ok()?
        .transient_attribute(node, name)
        .map(str::to_owned)
}
