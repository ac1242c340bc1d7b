//! Cluster status as Pacemaker reports it in XML.
//!
//! `crm_mon --output-as=xml` and `crm_simulate --output-as=xml` share one schema for nodes and
//! resources. We read the role from there and never from `crm_resource --locate`, which calls a
//! resource "running" while its start is still pending.

use std::fmt;

use serde::Serialize;

/// A resource's role as Pacemaker reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Role {
    /// Not running anywhere.
    Stopped,
    /// A start is in progress.
    Starting,
    /// Running.
    Started,
    /// A stop is in progress.
    Stopping,
    /// Live migration in progress.
    Migrating,
    /// Promotable clone roles.
    Promoted,
    /// Promotable clone roles.
    Unpromoted,
    /// Anything this version does not know (newer Pacemaker).
    Unknown,
}

impl Role {
    fn parse(s: &str) -> Self {
        match s {
            "Stopped" => Self::Stopped,
            "Starting" => Self::Starting,
            "Started" => Self::Started,
            "Stopping" => Self::Stopping,
            "Migrating" => Self::Migrating,
            "Promoted" | "Master" => Self::Promoted,
            "Unpromoted" | "Slave" => Self::Unpromoted,
            _ => Self::Unknown,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// One cluster node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeStatus {
    /// Node name (uname).
    pub name: String,
    /// Online and member of the cluster.
    pub online: bool,
    /// In standby.
    pub standby: bool,
    /// Needs fencing.
    pub unclean: bool,
    /// The designated controller.
    pub is_dc: bool,
    /// In maintenance mode (Pacemaker neither starts nor stops anything there).
    pub maintenance: bool,
    /// Joining the cluster: seen by corosync, not yet a full member.
    pub pending: bool,
}

/// One resource instance (a primitive, or one instance of a cloned primitive).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResourceStatus {
    /// Resource id (for clone instances Pacemaker reports the primitive's id, e.g. `p:0`).
    pub id: String,
    /// Id of the enclosing clone or group, if any.
    pub parent: Option<String>,
    /// Agent, e.g. `ocf:heartbeat:VirtualDomain`.
    pub agent: String,
    /// Current role.
    pub role: Role,
    /// Pacemaker manages it (not `is-managed=false` / maintenance).
    pub managed: bool,
    /// A failure has been recorded.
    pub failed: bool,
    /// Pacemaker will not act on it until an admin does (a failed stop with on-fail=block).
    pub blocked: bool,
    /// Nodes it is active on (more than one only for a multiply-active resource).
    pub nodes: Vec<String>,
    /// Its `target-role`, when set.
    pub target_role: Option<String>,
}

/// A failed operation `crm_mon` reports (its `<failures>`): the last result of an operation
/// that failed, kept until the resource's failures are cleaned up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailedAction {
    /// `<rsc>_<task>_<interval ms>`.
    pub op_key: String,
    /// The node it ran on.
    pub node: String,
    /// `start`, `monitor`, ...
    pub task: String,
    /// Its interval in ms (0: not recurring).
    pub interval_ms: u64,
    /// The agent's exit code.
    pub exit_code: i32,
    /// The exit code's meaning (`not running`, `error`, ...).
    pub exit_status: String,
    /// The agent's reason, if it gave one.
    pub exit_reason: String,
    /// How the execution ended (`complete`, `Timed Out`, `Error`, ...).
    pub status: String,
    /// The executor's call id.
    pub call: i64,
    /// When, as crm_mon prints it.
    pub last_rc_change: String,
}

impl FailedAction {
    /// Whether this is an operation of primitive `rsc` (or of one of its clone instances).
    pub fn is_of(&self, rsc: &str) -> bool {
        let suffix = format!("_{}_{}", self.task, self.interval_ms);
        self.op_key.strip_suffix(&suffix).is_some_and(|r| {
            r == rsc
                || r.strip_prefix(rsc)
                    .is_some_and(|rest| rest.starts_with(':'))
        })
    }
}

/// Nodes and resources of one status report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ClusterStatus {
    /// All nodes.
    pub nodes: Vec<NodeStatus>,
    /// All resource instances, flattened out of clones and groups.
    pub resources: Vec<ResourceStatus>,
    /// The cluster's `stonith-enabled` as the report states it (`crm_mon`'s
    /// `<summary><cluster_options stonith-enabled=...>`); `None` when the report does not say.
    /// Without fencing, Pacemaker shows a lost node's resources as stopped although they may
    /// still run there, so "stopped" proves nothing in that state.
    pub stonith_enabled: Option<bool>,
    /// Whether the cluster has quorum (`<summary><current_dc with_quorum=...>`); `None` without
    /// a DC or when the report does not say.
    pub quorum: Option<bool>,
    /// Failed operations, as `crm_mon` lists them.
    pub failures: Vec<FailedAction>,
}

/// Why a status document could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// Not well-formed XML.
    #[error("Status XML is not well-formed")]
    Xml(#[from] roxmltree::Error),
    /// Well-formed but not the expected shape.
    #[error("Status XML has no <{0}> section")]
    Missing(&'static str),
}

impl ClusterStatus {
    /// Parse `crm_mon --output-as=xml` output.
    pub fn from_crm_mon_xml(xml: &str) -> Result<Self, StatusError> {
        let doc = roxmltree::Document::parse(xml)?;
        let root = doc.root_element();
        Ok(Self::from_section(root))
    }

    /// Parse `crm_simulate -S --output-as=xml` output: the status *after* the simulated
    /// transition (`<revised_cluster_status>`), i.e. where resources would run.
    pub fn from_crm_simulate_xml(xml: &str) -> Result<Self, StatusError> {
        let doc = roxmltree::Document::parse(xml)?;
        let revised = doc
            .root_element()
            .children()
            .find(|n| n.has_tag_name("revised_cluster_status"))
            .ok_or(StatusError::Missing("revised_cluster_status"))?;
        Ok(Self::from_section(revised))
    }

    fn from_section(section: roxmltree::Node<'_, '_>) -> Self {
        let mut status = Self::default();
        for child in section.children().filter(roxmltree::Node::is_element) {
            match child.tag_name().name() {
                "nodes" => status.nodes = child.children().filter_map(parse_node).collect(),
                "resources" => collect_resources(child, None, &mut status.resources),
                "summary" => {
                    status.stonith_enabled = child
                        .children()
                        .find(|n| n.has_tag_name("cluster_options"))
                        .and_then(|o| o.attribute("stonith-enabled"))
                        .map(|v| v == "true");
                    status.quorum = child
                        .children()
                        .find(|n| n.has_tag_name("current_dc"))
                        .filter(|d| flag(*d, "present"))
                        .and_then(|d| d.attribute("with_quorum"))
                        .map(|v| v == "true");
                }
                "failures" => {
                    status.failures = child.children().filter_map(parse_failure).collect();
                }
                _ => {}
            }
        }
        status
    }

    /// The node called `name`.
    pub fn node(&self, name: &str) -> Option<&NodeStatus> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// Every instance of resource `id` (a primitive has one; clone instances are matched by
    /// the primitive id with or without the `:N` suffix).
    pub fn instances<'a>(&'a self, id: &'a str) -> impl Iterator<Item = &'a ResourceStatus> + 'a {
        self.resources.iter().filter(move |r| {
            r.id == id
                || r.id
                    .strip_prefix(id)
                    .is_some_and(|rest| rest.starts_with(':'))
        })
    }

    /// The one instance of primitive `id`, if present.
    pub fn resource<'a>(&'a self, id: &'a str) -> Option<&'a ResourceStatus> {
        self.instances(id).next()
    }

    /// Nodes where resource `id` is active in role `role` (all instances).
    pub fn nodes_with(&self, id: &str, role: Role) -> Vec<String> {
        let mut nodes: Vec<String> = self
            .instances(id)
            .filter(|r| r.role == role)
            .flat_map(|r| r.nodes.iter().cloned())
            .collect();
        nodes.sort();
        nodes.dedup();
        nodes
    }

    /// Names of the nodes that are online.
    pub fn online_nodes(&self) -> Vec<&str> {
        self.nodes
            .iter()
            .filter(|n| n.online)
            .map(|n| n.name.as_str())
            .collect()
    }
}

fn flag(node: roxmltree::Node<'_, '_>, attr: &str) -> bool {
    node.attribute(attr) == Some("true")
}

fn parse_node(node: roxmltree::Node<'_, '_>) -> Option<NodeStatus> {
    if !node.has_tag_name("node") {
        return None;
    }
    Some(NodeStatus {
        name: node.attribute("name")?.to_owned(),
        online: flag(node, "online"),
        standby: flag(node, "standby"),
        unclean: flag(node, "unclean"),
        is_dc: flag(node, "is_dc"),
        maintenance: flag(node, "maintenance"),
        pending: flag(node, "pending"),
    })
}

fn parse_failure(f: roxmltree::Node<'_, '_>) -> Option<FailedAction> {
    if !f.has_tag_name("failure") {
        return None;
    }
    let text = |a: &str| f.attribute(a).unwrap_or("").to_owned();
    Some(FailedAction {
        op_key: f.attribute("op_key")?.to_owned(),
        node: f.attribute("node")?.to_owned(),
        task: text("task"),
        interval_ms: f
            .attribute("interval")
            .and_then(|i| i.parse().ok())
            .unwrap_or(0),
        exit_code: f
            .attribute("exitcode")
            .and_then(|c| c.parse().ok())
            .unwrap_or(-1),
        exit_status: text("exitstatus"),
        exit_reason: text("exitreason"),
        status: text("status"),
        call: f
            .attribute("call")
            .and_then(|c| c.parse().ok())
            .unwrap_or(-1),
        last_rc_change: text("last-rc-change"),
    })
}

fn collect_resources(
    parent: roxmltree::Node<'_, '_>,
    parent_id: Option<&str>,
    out: &mut Vec<ResourceStatus>,
) {
    for child in parent.children().filter(roxmltree::Node::is_element) {
        match child.tag_name().name() {
            "resource" => {
                let Some(id) = child.attribute("id") else {
                    continue;
                };
                out.push(ResourceStatus {
                    id: id.to_owned(),
                    parent: parent_id.map(str::to_owned),
                    agent: child.attribute("resource_agent").unwrap_or("").to_owned(),
                    role: Role::parse(child.attribute("role").unwrap_or("")),
                    managed: flag(child, "managed"),
                    failed: flag(child, "failed"),
                    blocked: flag(child, "blocked"),
                    nodes: child
                        .children()
                        .filter(|n| n.has_tag_name("node"))
                        .filter_map(|n| n.attribute("name"))
                        .map(str::to_owned)
                        .collect(),
                    target_role: child.attribute("target_role").map(str::to_owned),
                });
            }
            "clone" | "group" | "bundle" => {
                collect_resources(child, child.attribute("id").or(parent_id), out);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CRM_MON: &str = r#"<pacemaker-result api-version="2.25" request="crm_mon -1 --output-as=xml">
  <nodes>
    <node name="n1" id="1" online="true" standby="false" unclean="false" is_dc="true" type="member"/>
    <node name="n2" id="2" online="false" standby="true" unclean="true" is_dc="false" type="member"/>
  </nodes>
  <resources>
    <resource id="vm1" resource_agent="ocf:heartbeat:VirtualDomain" role="Starting" active="true" managed="true" failed="false" nodes_running_on="1">
      <node name="n1" id="1" cached="true"/>
    </resource>
    <clone id="clnPing" multi_state="false" unique="false" managed="true">
      <resource id="p_ping" resource_agent="ocf:pacemaker:ping" role="Started" managed="true" failed="false" nodes_running_on="1"><node name="n1" id="1" cached="true"/></resource>
      <resource id="p_ping" resource_agent="ocf:pacemaker:ping" role="Stopped" managed="true" failed="false" nodes_running_on="0"/>
    </clone>
    <group id="grp" number_resources="1">
      <resource id="d1" resource_agent="ocf:pacemaker:Dummy" role="Stopped" managed="false" failed="true" nodes_running_on="0"/>
    </group>
  </resources>
</pacemaker-result>"#;

    #[test]
    fn reads_whether_the_cluster_fences() {
        // absent from the report: unknown, not "enabled"
        assert_eq!(
            ClusterStatus::from_crm_mon_xml(CRM_MON)
                .unwrap()
                .stonith_enabled,
            None
        );
        for (value, want) in [("false", Some(false)), ("true", Some(true))] {
            let xml = CRM_MON.replace(
                "<nodes>",
                &format!(
                    r#"<summary><stack type="corosync"/><cluster_options stonith-enabled="{value}" symmetric-cluster="true"/></summary><nodes>"#
                ),
            );
            let s = ClusterStatus::from_crm_mon_xml(&xml).unwrap();
            assert_eq!(s.stonith_enabled, want, "{value}");
        }
    }

    #[test]
    fn reads_nodes() {
        let s = ClusterStatus::from_crm_mon_xml(CRM_MON).unwrap();
        assert_eq!(s.online_nodes(), ["n1"]);
        let n2 = s.node("n2").unwrap();
        assert!(n2.standby && n2.unclean && !n2.is_dc);
        assert!(s.node("n1").unwrap().is_dc);
    }

    #[test]
    fn pending_start_is_starting_not_started() {
        let s = ClusterStatus::from_crm_mon_xml(CRM_MON).unwrap();
        let vm = s.resource("vm1").unwrap();
        assert_eq!(vm.role, Role::Starting);
        assert_eq!(vm.nodes, ["n1"]);
        assert!(s.nodes_with("vm1", Role::Started).is_empty());
    }

    #[test]
    fn clone_and_group_members_are_flattened_with_their_parent() {
        let s = ClusterStatus::from_crm_mon_xml(CRM_MON).unwrap();
        assert_eq!(s.instances("p_ping").count(), 2);
        assert_eq!(s.nodes_with("p_ping", Role::Started), ["n1"]);
        let d1 = s.resource("d1").unwrap();
        assert_eq!(d1.parent.as_deref(), Some("grp"));
        assert!(!d1.managed && d1.failed);
    }

    #[test]
    fn instance_matching_does_not_confuse_prefixes() {
        let s = ClusterStatus::from_crm_mon_xml(CRM_MON).unwrap();
        assert!(s.resource("vm").is_none());
        assert!(s.resource("p_pin").is_none());
    }

    #[test]
    fn simulate_reads_the_revised_status() {
        let xml = r#"<pacemaker-result>
  <cluster_status><nodes/><resources>
    <resource id="d1" resource_agent="ocf:pacemaker:Dummy" role="Stopped" managed="true" failed="false"/>
  </resources></cluster_status>
  <revised_cluster_status>
    <nodes><node name="node1" online="true"/></nodes>
    <resources>
      <resource id="d1" resource_agent="ocf:pacemaker:Dummy" role="Started" managed="true" failed="false"><node name="node1"/></resource>
    </resources>
  </revised_cluster_status>
</pacemaker-result>"#;
        let s = ClusterStatus::from_crm_simulate_xml(xml).unwrap();
        assert_eq!(s.nodes_with("d1", Role::Started), ["node1"]);
    }

    #[test]
    fn simulate_without_revised_status_is_an_error() {
        let err = ClusterStatus::from_crm_simulate_xml("<pacemaker-result/>").unwrap_err();
        assert!(matches!(
            err,
            StatusError::Missing("revised_cluster_status")
        ));
    }

    #[test]
    fn reads_quorum_failures_and_target_roles() {
        let xml = CRM_MON
            .replace(
                "<nodes>",
                r#"<summary><current_dc present="true" name="n1" with_quorum="false"/></summary><nodes>"#,
            )
            .replace(r#"role="Starting""#, r#"role="Starting" target_role="Started""#)
            .replace(
                "</resources>",
                r#"</resources><failures>
    <failure op_key="vm1_monitor_10000" node="n2" exitstatus="not running" exitreason="gone" exitcode="7" call="6" status="complete" last-rc-change="2023-11-14 22:14:10Z" queued="0" exec="10" interval="10000" task="monitor"/>
    <failure op_key="vm10_start_0" node="n1" exitstatus="error" exitreason="" exitcode="1" call="3" status="complete" last-rc-change="2023-11-14 22:14:10Z" interval="0" task="start"/>
  </failures>"#,
            );
        let s = ClusterStatus::from_crm_mon_xml(&xml).unwrap();
        assert_eq!(s.quorum, Some(false));
        assert_eq!(
            s.resource("vm1").unwrap().target_role.as_deref(),
            Some("Started")
        );
        assert_eq!(s.failures.len(), 2);
        let f = &s.failures[0];
        assert_eq!(
            (
                f.node.as_str(),
                f.task.as_str(),
                f.interval_ms,
                f.exit_code,
                f.call
            ),
            ("n2", "monitor", 10_000, 7, 6)
        );
        assert_eq!(f.exit_reason, "gone");
        assert!(f.is_of("vm1") && !f.is_of("vm10") && !f.is_of("vm"));
        assert!(s.failures[1].is_of("vm10") && !s.failures[1].is_of("vm1"));
        // no DC: quorum unknown
        let none = CRM_MON.replace(
            "<nodes>",
            r#"<summary><current_dc present="false"/></summary><nodes>"#,
        );
        assert_eq!(ClusterStatus::from_crm_mon_xml(&none).unwrap().quorum, None);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        ClusterStatus::from_crm_mon_xml("<nodes><node").unwrap_err();
        ClusterStatus::from_crm_mon_xml("").unwrap_err();
    }
}
