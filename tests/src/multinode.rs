//! The multi-node tier's fixture: the 2-3 node cluster in namespaces (`multinode.sh`).

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use vm_common::process::{Cmd, Output};
use vm_pcmk::{ClusterStatus, Role};

use crate::{Exclusive, run_ok, script, state_dir, wait_for};

static MULTINODE: Mutex<()> = Mutex::new(());

/// Id of the fence device `multinode.sh up` configures (kept by [`MultiNode::acquire`]'s reset).
pub const FENCE_DEVICE: &str = "st-nskill";

/// The vm-ctl.conf keys the multi-node tests share (over the test bed's base): fencing on, and
/// operation timeouts short enough for the tier.
pub const VMCTL_KEYS: &str = "\
vm_stonith=on
vm_start_op=(0 60s restart)
vm_stop_op=(0 60s)
vm_monitor_op=(5s 30s restart)
vm_migrate_to_op=(0 120s)
vm_migrate_from_op=(0 60s restart)
";

/// Exclusive use of the multi-node cluster. `acquire` brings it up if needed, powers on nodes
/// an earlier test left fenced, and erases every resource and constraint but the fence device.
#[derive(Debug)]
pub struct MultiNode {
    nodes: Vec<String>,
    _lock: Exclusive,
}

impl MultiNode {
    /// Defines test-bed guest `name` (domain XML on the nodes' shared storage, the channel
    /// used as `vport`) as a live-migratable `ocf:heartbeat:VirtualDomain` resource `rsc`,
    /// created through `admin`.
    pub fn add_migratable_guest(
        &self,
        admin: &str,
        name: &str,
        rsc: &str,
        vport: crate::guest::Vport,
    ) {
        let config = self.dir().join("vm").join(format!("{name}.xml"));
        let xml = crate::guest::domain_xml(
            name,
            "/run/pmkt".as_ref(),
            "/var/log/libvirt".as_ref(),
            vport,
        );
        std::fs::write(&config, xml).unwrap_or_else(|e| panic!("{}: {e}", config.display()));
        let primitive = format!(
            r#"<primitive id="{rsc}" class="ocf" provider="heartbeat" type="VirtualDomain">
  <instance_attributes id="{rsc}-ia">
    <nvpair id="{rsc}-config" name="config" value="{}"/>
    <nvpair id="{rsc}-hv" name="hypervisor" value="qemu:///system"/>
    <nvpair id="{rsc}-mt" name="migration_transport" value="tcp"/>
  </instance_attributes>
  <meta_attributes id="{rsc}-meta"><nvpair id="{rsc}-am" name="allow-migrate" value="true"/></meta_attributes>
  <operations>
    <op id="{rsc}-start" name="start" interval="0" timeout="60s"/>
    <op id="{rsc}-stop" name="stop" interval="0" timeout="60s"/>
    <op id="{rsc}-mon" name="monitor" interval="5s" timeout="30s"/>
    <op id="{rsc}-mto" name="migrate_to" interval="0" timeout="120s"/>
    <op id="{rsc}-mfrom" name="migrate_from" interval="0" timeout="60s"/>
  </operations>
</primitive>"#,
            config.display()
        );
        self.exec(
            admin,
            &["cibadmin", "--create", "-o", "resources", "-X", &primitive],
        );
    }

    /// Starts the packaged host vm-connectd in every node (guest sockets in
    /// `/run/pmkt/vmconnectd`, local socket `/run/vmconnectd.sock`, libvirt identities,
    /// publishing guests' liveness in the node's attrd) with `extra` options; they stop when the
    /// returned value is dropped.
    pub fn start_relays(&self, extra: &[&str]) -> Relays {
        let bin = crate::packaged_bin("vm-connectd").display().to_string();
        for n in &self.nodes {
            run_ok(
                &script("multinode.sh")
                    .args(["bg", n, "vmconnectd", &bin, "-t", "host"])
                    .args([
                        "-d",
                        "/run/pmkt/vmconnectd",
                        "--socket",
                        "/run/vmconnectd.sock",
                    ])
                    .args(["--libvirt", "qemu:///system", "--node", n, "-vv"])
                    .args(extra),
            );
        }
        Relays {
            nodes: self.nodes.clone(),
        }
    }

    /// Transient node attribute `name` of `node`, as the cluster has it (asked from any node
    /// that answers, `node` first), `None` when it is not set.
    pub fn transient_attr(&self, node: &str, name: &str) -> Option<String> {
        [node]
            .into_iter()
            .chain(self.nodes().into_iter().filter(|n| *n != node))
            .find_map(|from| {
                let out = self
                    .cmd(from, "crm_attribute")
                    .args(["--lifetime", "reboot", "--node", node, "--name", name])
                    .args(["--query", "--quiet"])
                    .timeout(Duration::from_secs(20))
                    .run()
                    .ok()?;
                // exit 105 (no such attribute) is an answer; other failures ask the next node
                match out.code() {
                    Some(0) => Some(Some(out.stdout_text().trim().to_owned())),
                    Some(105) => Some(None),
                    _ => None,
                }
            })
            .flatten()
    }

    /// The failed operations `crm_mon` lists (seen from any node): (operation key, node, exit
    /// reason, call id: a new failure of the same operation has another).
    pub fn failures(&self) -> Vec<(String, String, String, String)> {
        let Some(xml) = self.nodes().into_iter().find_map(|n| self.crm_mon_xml(n)) else {
            return Vec::new();
        };
        let Ok(root) = vm_pcmk::xml::Element::parse(&xml) else {
            return Vec::new();
        };
        root.descendants()
            .into_iter()
            .filter(|e| e.name == "failure")
            .map(|e| {
                let a = |k: &str| e.get(k).unwrap_or("").to_owned();
                (a("op_key"), a("node"), a("exitreason"), a("call"))
            })
            .collect()
    }

    /// The packaged vm-ctl run in the first node, with the test bed's base vm-ctl.conf plus
    /// `keys` (`key=value` lines) and its domain XMLs in a new directory on the shared storage.
    pub fn vmctl(&self, keys: &str) -> crate::vmctl::LiveVmCtl {
        let dir = tempfile::Builder::new()
            .prefix("vmctl-")
            .tempdir_in(self.dir())
            .unwrap();
        let prefix = self.prefix(&self.nodes[0]);
        crate::vmctl::LiveVmCtl::in_dir(dir, &crate::vmctl::config(keys))
            .via(&prefix.iter().map(String::as_str).collect::<Vec<_>>())
            .packaged()
    }

    /// Wait for exclusive use, start the cluster if needed and reset it.
    pub fn acquire() -> Self {
        let lock = Exclusive::acquire(&MULTINODE, "multinode");
        run_ok(&script("multinode.sh").arg("up"));
        let nodes = run_ok(&script("multinode.sh").arg("nodes"))
            .stdout_text()
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        let mn = Self { nodes, _lock: lock };
        mn.reset();
        mn
    }

    fn reset(&self) {
        for node in &self.nodes {
            if !self.node_has_processes(node) {
                self.poweron(node);
            }
        }
        self.wait_all_online(Duration::from_secs(120));
        let admin = self.nodes[0].as_str();
        let fence = self
            .exec(
                admin,
                &[
                    "cibadmin",
                    "--query",
                    "--xpath",
                    &format!("//primitive[@id='{FENCE_DEVICE}']"),
                ],
            )
            .stdout_text();
        // constraints first: they refer to resources, and the CIB refuses dangling references
        self.exec(
            admin,
            &[
                "cibadmin",
                "--replace",
                "-o",
                "constraints",
                "-X",
                "<constraints/>",
            ],
        );
        self.exec(
            admin,
            &[
                "cibadmin",
                "--replace",
                "-o",
                "resources",
                "-X",
                &format!("<resources>{fence}</resources>"),
            ],
        );
        self.exec(
            admin,
            &[
                "crm_attribute",
                "--type",
                "crm_config",
                "--name",
                "stonith-enabled",
                "--update",
                "true",
            ],
        );
        self.wait_idle(admin);
    }

    /// Node names (`n1`, `n2`, ...).
    pub fn nodes(&self) -> Vec<&str> {
        self.nodes.iter().map(String::as_str).collect()
    }

    /// The test bed's directory for this cluster (`$PMKT_STATE/mn`): shared storage for VM
    /// configs (`vm/`), per-node logs (`<node>/`), the fence log (`fence.log`).
    pub fn dir(&self) -> PathBuf {
        state_dir().join("mn")
    }

    fn holder(&self, node: &str) -> String {
        let path = self.dir().join(node).join("holder.pid");
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .trim()
            .to_owned()
    }

    /// The argv prefix that runs a program inside `node`'s namespaces.
    pub fn prefix(&self, node: &str) -> Vec<String> {
        let holder = self.holder(node);
        ["nsenter", "-t", &holder, "-m", "-n", "-u", "--wd=/", "--"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect()
    }

    /// `program` to run inside `node`'s namespaces (it talks to that node's daemons).
    pub fn cmd(&self, node: &str, program: &str) -> Cmd {
        let prefix = self.prefix(node);
        Cmd::new(&prefix[0])
            .args(&prefix[1..])
            .arg(program)
            .timeout(Duration::from_secs(120))
    }

    /// Run `argv` inside `node`; it must succeed.
    pub fn exec(&self, node: &str, argv: &[&str]) -> Output {
        let (program, args) = argv.split_first().unwrap_or((&"true", &[]));
        run_ok(&self.cmd(node, program).args(args))
    }

    /// `crm_mon --output-as=xml` as seen from `node`, `None` when that node's cluster does
    /// not answer.
    fn crm_mon_xml(&self, node: &str) -> Option<String> {
        let out = self
            .cmd(node, "crm_mon")
            .args(["--one-shot", "--output-as=xml"])
            .timeout(Duration::from_secs(20))
            .run()
            .ok()?;
        out.success().then(|| out.stdout_text())
    }

    /// `crm_mon` status as seen from `node`, `None` when that node's cluster does not answer.
    pub fn status(&self, node: &str) -> Option<ClusterStatus> {
        ClusterStatus::from_crm_mon_xml(&self.crm_mon_xml(node)?).ok()
    }

    /// Status from the first node (in `prefer` order, then the rest) that answers.
    pub fn any_status(&self, prefer: &[&str]) -> Option<ClusterStatus> {
        prefer
            .iter()
            .copied()
            .chain(self.nodes())
            .find_map(|n| self.status(n))
    }

    /// Wait until `rsc` is in `role` on one node (asked from any live node); returns the node.
    pub fn wait_role(&self, rsc: &str, role: Role, timeout: Duration) -> String {
        wait_for(&format!("{rsc} to be {role}"), timeout, || {
            let status = self.any_status(&[])?;
            let nodes = status.nodes_with(rsc, role);
            (nodes.len() == 1).then(|| nodes[0].clone())
        })
    }

    /// Wait until `rsc` is in `role` on `node`.
    pub fn wait_role_on(&self, rsc: &str, role: Role, node: &str, timeout: Duration) {
        let what = format!("{rsc} to be {role} on {node}");
        wait_for(&what, timeout, || {
            let nodes = self.any_status(&[])?.nodes_with(rsc, role);
            (nodes == [node]).then_some(())
        });
    }

    /// Wait until every node is online with a DC, seen from every node.
    pub fn wait_all_online(&self, timeout: Duration) {
        wait_for("all nodes online", timeout, || {
            self.nodes()
                .iter()
                .all(|n| {
                    self.status(n).is_some_and(|s| {
                        s.nodes.iter().any(|x| x.is_dc)
                            && self
                                .nodes()
                                .iter()
                                .all(|m| s.node(m).is_some_and(|x| x.online))
                    })
                })
                .then_some(())
        });
    }

    /// Wait until no transition is in progress.
    pub fn wait_idle(&self, node: &str) {
        self.exec(node, &["crm_resource", "--wait", "--timeout=90s"]);
    }

    /// Whether any process lives in `node` (its "power" is on).
    pub fn node_has_processes(&self, node: &str) -> bool {
        !run_ok(&script("multinode.sh").args(["pids", node]))
            .stdout_text()
            .trim()
            .is_empty()
    }

    /// Boot a node that is down.
    pub fn poweron(&self, node: &str) {
        run_ok(&script("multinode.sh").args(["poweron", node]));
    }

    /// Cut a node's power without the cluster's involvement.
    pub fn crash(&self, node: &str) {
        run_ok(&script("multinode.sh").args(["crash", node]));
    }

    /// Kill one daemon of `node` (e.g. `corosync`: the node drops out and gets fenced).
    pub fn kill_daemon(&self, node: &str, daemon: &str) {
        let path = self.dir().join(node).join(format!("{daemon}.pid"));
        let pid =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        run_ok(&Cmd::new("kill").args(["-KILL", pid.trim()]));
    }

    /// `stonith_admin --history NODE` as seen from `from`.
    pub fn fence_history(&self, from: &str, node: &str) -> String {
        self.cmd(from, "stonith_admin")
            .args(["--history", node])
            .run()
            .map(|o| o.stdout_text())
            .unwrap_or_default()
    }
}

/// Host vm-connectd running in every node ([`MultiNode::start_relays`]); stopped on drop.
#[derive(Debug)]
pub struct Relays {
    nodes: Vec<String>,
}

impl Drop for Relays {
    fn drop(&mut self) {
        for n in &self.nodes {
            let _ = script("multinode.sh")
                .args(["stopbg", n, "vmconnectd"])
                .run();
        }
    }
}
