//! vm-managerd run by a test: a real host vm-connectd, vm-managerd registered with it, and
//! guests stood in for by bridged guest-mode vm-connectds ([`BridgedGuest`]), so requests go
//! the whole way a guest's do: `vm-connect` → guest daemon → host relay → vm-managerd.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use vm_common::process::{Cmd, Output};

use crate::connectd::HostRelay;
use crate::stonith::BridgedGuest;
use crate::{project_bin, wait_for};

/// The relay, vm-managerd and the bridged guests.
#[derive(Debug)]
pub struct ManagerBed {
    dir: tempfile::TempDir,
    relay: HostRelay,
    managerd: Option<Child>,
    env: Vec<(String, String)>,
    node: String,
    /// The bridged guests, by name.
    pub guests: Vec<BridgedGuest>,
}

impl ManagerBed {
    /// Starts the relay for guests `guests` (channels in a temp dir), vm-managerd with the
    /// rule file `rules` answering for `node` (environment `env`, e.g. `CIB_file`, and options
    /// `extra`), and the guests; waits until vm-managerd has registered.
    pub fn start(
        node: &str,
        rules: &str,
        env: &[(&str, &str)],
        extra: &[&str],
        guests: &[&str],
    ) -> ManagerBed {
        let dir = tempfile::Builder::new()
            .prefix("pmkt-managerd-")
            .tempdir()
            .unwrap();
        let chan = dir.path().join("chan");
        std::fs::create_dir(&chan).unwrap();
        let relay_args: Vec<String> = guests
            .iter()
            .map(|g| BridgedGuest::relay_arg(&chan, g))
            .chain(["--no-libvirt".to_owned()])
            .collect();
        let relay_args: Vec<&str> = relay_args.iter().map(String::as_str).collect();
        let relay = HostRelay::start(
            &chan,
            &dir.path().join("host.sock"),
            node,
            &relay_args,
            &dir.path().join("vm-connectd.log"),
        );
        std::fs::write(dir.path().join("vm-manager.conf"), rules).unwrap();
        let mut bed = ManagerBed {
            relay,
            managerd: None,
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            node: node.to_owned(),
            guests: Vec::new(),
            dir,
        };
        bed.start_managerd(extra);
        for g in guests {
            let guest = BridgedGuest::start(&chan, bed.dir.path(), g);
            bed.guests.push(guest);
        }
        bed
    }

    /// The rule file vm-managerd reads.
    pub fn rules_path(&self) -> PathBuf {
        self.dir.path().join("vm-manager.conf")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("vm-managerd.log")
    }

    /// vm-managerd's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The host relay.
    pub fn relay(&self) -> &HostRelay {
        &self.relay
    }

    /// Starts vm-managerd with `extra` options and waits until it has registered.
    pub fn start_managerd(&mut self, extra: &[&str]) {
        assert!(self.managerd.is_none(), "vm-managerd already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let mut cmd = Command::new(project_bin("vm-managerd"));
        cmd.arg("--config")
            .arg(self.rules_path())
            .arg("--socket")
            .arg(self.dir.path().join("host.sock"))
            .arg("--state-dir")
            .arg(self.dir.path().join("run"))
            .args(["--node", &self.node, "-V"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        self.managerd = Some(cmd.spawn().unwrap());
        wait_for("vm-managerd to register", Duration::from_secs(30), || {
            let v = self.relay.status();
            v["modules"]
                .as_array()?
                .iter()
                .any(|m| m["service"] == "manager")
                .then_some(())
        });
    }

    /// Sends `signal` to vm-managerd (by PID).
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        if let Some(child) = &self.managerd {
            let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
            nix::sys::signal::kill(pid, signal).unwrap();
        }
    }

    /// Whether vm-managerd still runs.
    pub fn alive(&mut self) -> bool {
        self.managerd
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// Stops vm-managerd (SIGTERM by PID) and waits for it.
    pub fn stop_managerd(&mut self) {
        if let Some(mut child) = self.managerd.take() {
            let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            wait_for("vm-managerd to exit", Duration::from_secs(30), || {
                child.try_wait().ok().flatten().map(|_| ())
            });
        }
    }

    /// `vm-connect -t manager -r BODY` in guest `guest` (its exit status and output).
    pub fn ask(&self, guest: &str, body: &str) -> Output {
        let g = self
            .guests
            .iter()
            .find(|g| g.name() == guest)
            .unwrap_or_else(|| panic!("no bridged guest {guest}"));
        ask_at(g.socket(), body)
    }
}

/// `vm-connect --socket SOCKET --timeout 55 -t manager -r BODY`.
pub fn ask_at(socket: &Path, body: &str) -> Output {
    Cmd::new(project_bin("vm-connect"))
        .arg("--socket")
        .arg(socket)
        .args(["--timeout", "55", "-t", "manager", "-r", body])
        .timeout(Duration::from_secs(70))
        .run()
        .unwrap()
}

/// A CIB file's text with one node, `node`, whose transient attributes (as attrd keeps them in
/// the status section) are `attrs`: what vm-managerd reads with `cibadmin` when it runs on a
/// CIB file (tests where no cluster is needed, or where the host must not be this machine's
/// cluster). Names and values are written as given (plain test values).
pub fn host_cib(node: &str, attrs: &[(&str, &str)]) -> String {
    let nvpairs: String = attrs
        .iter()
        .map(|(n, v)| format!(r#"<nvpair id="status-1-{n}" name="{n}" value="{v}"/>"#))
        .collect();
    format!(
        r#"<cib crm_feature_set="3.16.2" validate-with="pacemaker-3.9" epoch="1" num_updates="0" admin_epoch="0">
  <configuration><crm_config/><nodes><node id="1" uname="{node}"/></nodes><resources/><constraints/></configuration>
  <status>
    <node_state id="1" uname="{node}" in_ccm="true" crmd="online" join="member" expected="member">
      <transient_attributes id="1"><instance_attributes id="status-1">{nvpairs}</instance_attributes></transient_attributes>
    </node_state>
  </status>
</cib>
"#
    )
}

/// Writes `xml` to the CIB file `cib` whole and renames it into place, so that cibadmin never
/// reads half a file. (cibadmin cannot modify the status section of a file; on a live cluster
/// attrd does it.)
pub fn replace_cib(cib: &Path, xml: &str) {
    let tmp = cib.with_extension("new");
    std::fs::write(&tmp, xml).unwrap();
    std::fs::rename(&tmp, cib).unwrap();
}

/// The tag of a `manager` reply (`ok NODE TAG` first line).
pub fn tag_of(reply: &str) -> String {
    reply
        .lines()
        .next()
        .and_then(|l| l.split(' ').nth(2))
        .unwrap_or_else(|| panic!("not a manager reply: {reply:?}"))
        .to_owned()
}

impl Drop for ManagerBed {
    fn drop(&mut self) {
        self.guests.clear();
        self.stop_managerd();
    }
}
