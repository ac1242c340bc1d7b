//! The live-cluster tier's fixture: this machine's single-node corosync + pacemakerd.

use std::sync::Mutex;
use std::time::Duration;

use vm_pcmk::{ClusterStatus, Pacemaker, Role};

use crate::{Exclusive, run_ok, script, wait_for};

static LIVE: Mutex<()> = Mutex::new(());

/// Exclusive use of the live single-node cluster. `acquire` brings it up if needed (~5 s the
/// first time) and erases what earlier tests configured, powering off the guests they left
/// running (so a test need not stop its guests); the cluster keeps running after the test
/// (tests/run-all stops it at the end of the tier).
#[derive(Debug)]
pub struct LiveCluster {
    node: String,
    _lock: Exclusive,
}

impl LiveCluster {
    /// Wait for exclusive use, start the cluster if needed and reset its configuration.
    pub fn acquire() -> Self {
        let lock = Exclusive::acquire(&LIVE, "live");
        run_ok(&script("live-cluster.sh").arg("up"));
        run_ok(&script("live-cluster.sh").arg("reset"));
        let node = nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default();
        let cluster = Self { node, _lock: lock };
        // Resources removed by the reset must be gone before the test starts adding its own.
        cluster.wait_idle();
        cluster
    }

    /// The one node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// A Pacemaker handle on the live CIB.
    pub fn pcmk(&self) -> Pacemaker {
        Pacemaker::live()
    }

    /// Current status.
    pub fn status(&self) -> ClusterStatus {
        self.pcmk()
            .status()
            .unwrap_or_else(|e| panic!("crm_mon: {e}"))
    }

    /// Wait until resource `rsc` is in `role` (on this node, unless Stopped).
    pub fn wait_role(&self, rsc: &str, role: Role, timeout: Duration) {
        let what = format!("{rsc} to be {role}");
        wait_for(&what, timeout, || {
            let status = self.pcmk().status().ok()?;
            let r = status.resource(rsc)?;
            (r.role == role && (role == Role::Stopped || r.nodes.contains(&self.node)))
                .then_some(())
        });
    }

    /// Wait until the cluster has no transition in progress.
    pub fn wait_idle(&self) {
        run_ok(
            &self
                .pcmk()
                .tool("crm_resource")
                .args(["--wait", "--timeout=60s"]),
        );
    }
}
