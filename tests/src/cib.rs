//! The CIB-file tier's fixture: an offline CIB in a temp dir.
//!
//! Built only with Pacemaker's own tools (`cibadmin --empty`, `cibadmin --create`,
//! `crm_attribute`) on `CIB_file`, exactly as an operator would, so what tests read back is what
//! Pacemaker itself would hold.

use std::path::{Path, PathBuf};

use tempfile::TempDir;
use vm_common::process::Cmd;
use vm_pcmk::{ClusterStatus, Pacemaker, VerifyReport};

use crate::run_ok;

/// An offline CIB file, deleted with the fixture.
#[derive(Debug)]
pub struct CibFile {
    dir: TempDir,
    path: PathBuf,
    nodes: Vec<String>,
}

/// What to put in a new [`CibFile`].
#[derive(Debug, Clone, Default)]
pub struct CibSpec {
    nodes: Vec<String>,
    stonith_enabled: bool,
    node_attrs: Vec<(String, String, String)>,
}

impl CibSpec {
    /// Cluster nodes, in order (node ids 1, 2, ...).
    pub fn nodes(mut self, names: &[&str]) -> Self {
        self.nodes = names.iter().map(|s| (*s).to_owned()).collect();
        self
    }

    /// The `stonith-enabled` cluster property (default false).
    pub fn stonith(mut self, enabled: bool) -> Self {
        self.stonith_enabled = enabled;
        self
    }

    /// A permanent node attribute, e.g. `default_ping_set=100` or `diskcheck_status=normal`
    /// (on a live cluster pingd/diskd keep them in the status section; for placement the
    /// scheduler treats both alike).
    pub fn node_attr(mut self, node: &str, name: &str, value: &str) -> Self {
        self.node_attrs
            .push((node.to_owned(), name.to_owned(), value.to_owned()));
        self
    }

    /// Create the file.
    pub fn create(self) -> CibFile {
        CibFile::create(self)
    }
}

impl CibFile {
    /// Two nodes (`node1`, `node2`), stonith disabled, healthy ping and disk attributes on both:
    /// the usual starting point.
    pub fn two_nodes() -> Self {
        CibSpec::default()
            .nodes(&["node1", "node2"])
            .node_attr("node1", "default_ping_set", "100")
            .node_attr("node2", "default_ping_set", "100")
            .node_attr("node1", "diskcheck_status", "normal")
            .node_attr("node2", "diskcheck_status", "normal")
            .create()
    }

    fn create(spec: CibSpec) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("pmkt-cib-")
            .tempdir()
            .unwrap_or_else(|e| panic!("temp dir: {e}"));
        let path = dir.path().join("cib.xml");
        let empty = run_ok(&Cmd::new("cibadmin").arg("--empty"));
        std::fs::write(&path, empty.stdout).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let cib = Self {
            dir,
            path,
            nodes: spec.nodes.clone(),
        };
        cib.set_property(
            "stonith-enabled",
            if spec.stonith_enabled {
                "true"
            } else {
                "false"
            },
        );
        for (i, node) in spec.nodes.iter().enumerate() {
            let xml = format!("<node id=\"{}\" uname=\"{node}\"/>", i + 1);
            run_ok(
                &cib.tool("cibadmin")
                    .args(["--create", "-o", "nodes", "-X", &xml]),
            );
        }
        for (node, name, value) in &spec.node_attrs {
            cib.set_node_attr(node, name, value);
        }
        cib
    }

    /// Another CIB file in this fixture's style (for comparing two files); the caller keeps
    /// the file alive.
    pub fn at(path: &Path) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("pmkt-cib-")
            .tempdir()
            .unwrap_or_else(|e| panic!("temp dir: {e}"));
        Self {
            dir,
            path: path.to_path_buf(),
            nodes: Vec::new(),
        }
    }

    /// The CIB file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The temp dir holding it (for companion files such as domain XMLs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Node names, in id order.
    pub fn nodes(&self) -> Vec<&str> {
        self.nodes.iter().map(String::as_str).collect()
    }

    /// A Pacemaker handle on this file.
    pub fn pcmk(&self) -> Pacemaker {
        Pacemaker::file(&self.path)
    }

    /// A Pacemaker tool pointed at this file.
    pub fn tool(&self, program: &str) -> Cmd {
        self.pcmk().tool(program)
    }

    /// The file's content.
    pub fn xml(&self) -> String {
        std::fs::read_to_string(&self.path)
            .unwrap_or_else(|e| panic!("{}: {e}", self.path.display()))
    }

    /// Set a cluster property.
    pub fn set_property(&self, name: &str, value: &str) {
        run_ok(&self.tool("crm_attribute").args([
            "--type",
            "crm_config",
            "--name",
            name,
            "--update",
            value,
        ]));
    }

    /// Set a permanent node attribute.
    pub fn set_node_attr(&self, node: &str, name: &str, value: &str) {
        run_ok(
            &self
                .tool("crm_attribute")
                .args(["--node", node, "--name", name, "--update", value]),
        );
    }

    /// `cibadmin --create -o SECTION -X XML`.
    pub fn create_in(&self, section: &str, xml: &str) {
        run_ok(
            &self
                .tool("cibadmin")
                .args(["--create", "-o", section, "-X", xml]),
        );
    }

    /// `crm_verify -x` on the file.
    pub fn verify(&self) -> VerifyReport {
        self.pcmk()
            .verify()
            .unwrap_or_else(|e| panic!("crm_verify could not run: {e}"))
    }

    /// Assert that `crm_verify` accepts the file.
    pub fn assert_valid(&self) {
        let report = self.verify();
        assert!(
            report.valid,
            "crm_verify rejects {}:\n{}",
            self.path.display(),
            report.messages
        );
    }

    /// Assert that `crm_verify` accepts the file once `nodes` are online with quorum (the
    /// state `crm_simulate -u NODE... -q 1 -S` leaves): an offline file with fencing enabled has
    /// nodes of unknown state, which crm_verify rightly warns about.
    pub fn assert_valid_online(&self, nodes: &[&str]) {
        let online = self.dir().join("online.xml");
        let mut sim = Cmd::new("crm_simulate").arg("-x").arg(&self.path);
        for n in nodes {
            sim = sim.args(["-u", n]);
        }
        run_ok(&sim.args(["-q", "1", "-S", "-O"]).arg(&online));
        let out = run_ok(&Cmd::new("crm_verify").args(["-V", "-x"]).arg(&online));
        let text = format!("{}{}", out.stdout_text(), out.stderr_text());
        assert!(
            !text.contains("warning") && !text.contains("error"),
            "crm_verify on {} with {nodes:?} online:\n{text}",
            self.path.display()
        );
    }

    /// Where resources would run with every node online and quorum:
    /// `crm_simulate -x FILE -u NODE... -q 1 -S --output-as=xml`.
    pub fn placement(&self) -> ClusterStatus {
        let nodes = self.nodes();
        self.pcmk()
            .simulate(&nodes)
            .unwrap_or_else(|e| panic!("crm_simulate: {e}"))
    }

    /// Where resources would run with only `online` nodes up.
    pub fn placement_with(&self, online: &[&str]) -> ClusterStatus {
        self.pcmk()
            .simulate(online)
            .unwrap_or_else(|e| panic!("crm_simulate: {e}"))
    }
}

/// The `lrm_resource` history entry (for a `node_state`'s `lrm_resources`) of VirtualDomain
/// `rsc` started on `node`, as the controller records a successful start: for tests whose
/// guest runs outside Pacemaker but must read as run by it (`vm_pcmk::history::active_nodes`).
pub fn started_entry(rsc: &str, node: &str) -> String {
    format!(
        r#"<lrm_resource id="{rsc}" class="ocf" provider="pm-kvm-tools" type="VirtualDomain"><lrm_rsc_op id="{rsc}_last_0" operation_key="{rsc}_start_0" operation="start" crm-debug-origin="do_update_resource" crm_feature_set="3.16.2" transition-key="1:1:0:00000000-0000-0000-0000-000000000000" transition-magic="0:0;1:1:0:00000000-0000-0000-0000-000000000000" exit-reason="" on_node="{node}" call-id="3" rc-code="0" op-status="0" interval="0" last-rc-change="1700000000" exec-time="1" queue-time="0" op-digest="00000000000000000000000000000000"/></lrm_resource>"#
    )
}
