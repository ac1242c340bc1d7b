//! `vm-ctl status`: one screen for the whole host cluster, from one CIB snapshot.
//!
//! Everything comes from the CIB, without ssh to any node: one `cibadmin --query`, and
//! `crm_mon --output-as=xml` run on a private copy of that very snapshot
//! ([`vm_pcmk::Pacemaker::status_of`]), so that the resources' roles, the nodes' states and the
//! failed actions Pacemaker derives agree with what this module reads from the snapshot itself:
//!
//! - the configuration: each guest's target-role, preferred-node location, temporary move
//!   constraints, fence journal ([`vm_fence::journal`]) and `force_stop-<rsc>` node attributes;
//!   the host daemons' clones ([`crate::clones`]);
//! - the status section: each node's operation history (a live migration in progress) and
//!   transient attributes: fail counts, the keys each vm-stonithd publishes
//!   ([`vm_fence::published`]), each guest's channel link and liveness as the host vm-connectd
//!   of its node publishes them ([`vm_proto::liveness`]), each guest's last fence as vm-stonithd
//!   records it ([`vm_fence::record`]), and the ping/disk attributes vm-ctl.conf's rules use.
//!
//! [`collect`] is pure (a snapshot and its `crm_mon` report in, a [`StatusReport`] out); the
//! JSON of a [`StatusReport`] is the documented schema (docs/operations.md, "Reading vm-ctl
//! status"), [`StatusReport::text`] the screen.

use std::fmt::Write as _;

use serde::Serialize;
use vm_fence::journal::{JOURNAL_ATTR, Journal};
use vm_fence::published;
use vm_fence::record::{self, FenceRecord, FenceResult};
use vm_pcmk::history::{self, FailCount};
use vm_pcmk::virtualdomain::force_stop_attr;
use vm_pcmk::{Cib, ClusterStatus, Role};
use vm_proto::liveness;

use crate::clones;
use crate::config::{CloneRef, Config, RuleSpec};
use crate::guest;
use crate::ids;

/// Version of the JSON schema: bumped when a field changes meaning or goes away (new fields
/// may be added without a bump).
pub const SCHEMA: u32 = 1;

/// The whole report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusReport {
    /// [`SCHEMA`].
    pub schema: u32,
    /// The CIB version the report was read at (`admin_epoch.epoch.num_updates`).
    pub cib_version: String,
    /// When it was read (Unix seconds).
    pub read_at: u64,
    /// The cluster as a whole.
    pub cluster: ClusterSummary,
    /// Every host node, in crm_mon's order.
    pub nodes: Vec<NodeReport>,
    /// Every guest vm-ctl manages, in CIB order.
    pub guests: Vec<GuestStatus>,
}

/// The cluster as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterSummary {
    /// The designated controller, if there is one.
    pub dc: Option<String>,
    /// Whether the partition has quorum (`None`: not known, e.g. no DC).
    pub quorum: Option<bool>,
    /// The cluster's `stonith-enabled`.
    pub stonith_enabled: bool,
    /// How many nodes are online.
    pub nodes_online: usize,
    /// How many nodes there are.
    pub nodes_total: usize,
}

/// A host node's state, worst first when several apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeState {
    /// Lost and not yet fenced: what ran there may still run.
    Unclean,
    /// Not a member of the cluster.
    Offline,
    /// Joining: seen, not yet a full member.
    Pending,
    /// In maintenance: Pacemaker neither starts nor stops anything there.
    Maintenance,
    /// In standby: runs no resources.
    Standby,
    /// A full member.
    Online,
}

impl NodeState {
    fn word(self) -> &'static str {
        match self {
            NodeState::Unclean => "UNCLEAN",
            NodeState::Offline => "OFFLINE",
            NodeState::Pending => "pending",
            NodeState::Maintenance => "maintenance",
            NodeState::Standby => "standby",
            NodeState::Online => "online",
        }
    }
}

/// One host node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeReport {
    /// Its name.
    pub name: String,
    /// Its state.
    pub state: NodeState,
    /// Whether it is the DC.
    pub dc: bool,
    /// The host daemons' clone instances there, in the order of [`clones::DAEMONS`].
    pub daemons: Vec<DaemonReport>,
    /// Whether guest clusters can fence through this node.
    pub fence: FenceReadiness,
    /// The node attributes vm-ctl.conf's rules keep guests off unhealthy nodes with.
    pub attributes: Vec<AttributeHealth>,
}

/// One host daemon's clone instance on a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DaemonReport {
    /// `vm-connectd`, `vm-stonithd` or `vm-managerd`.
    pub daemon: String,
    /// Its clone's id (`None`: the cluster has none).
    pub clone: Option<String>,
    /// Its instance on this node.
    pub state: DaemonState,
}

/// A clone instance on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DaemonState {
    /// Started there.
    Running,
    /// Active there with a failure recorded (crm_mon's `failed`).
    Failed,
    /// Not active there.
    Stopped,
    /// The cluster has no such clone.
    NoClone,
}

impl DaemonState {
    fn word(self) -> &'static str {
        match self {
            DaemonState::Running => "running",
            DaemonState::Failed => "FAILED",
            DaemonState::Stopped => "stopped",
            DaemonState::NoClone => "-",
        }
    }
}

/// Whether guest clusters can fence through a node: its vm-stonithd runs and publishes keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FenceReadiness {
    /// Online, vm-stonithd's clone instance running there, and at least one key published.
    pub ready: bool,
    /// How many keys its `pmkt-fence-keys` names (`None`: nothing published, or malformed).
    pub keys: Option<usize>,
    /// Why it is not ready (empty when it is).
    pub problems: Vec<String>,
}

/// One attribute a vm-ctl.conf rule uses, on one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttributeHealth {
    /// The node attribute (`default_ping_set`, `diskcheck_status`, ...).
    pub name: String,
    /// The clone that maintains it (vm_pingdN, vm_diskdN, vm_managerdN).
    pub clone: String,
    /// Its value on the node (transient, else permanent); `None`: not set.
    pub value: Option<String>,
    /// `red` when the rule vm-ctl writes keeps guests off the node (unset, or the
    /// `vm_*_loc` comparison matches), else `green`.
    pub health: Health,
    /// The rule's comparison, e.g. `lt 100`.
    pub rule: String,
}

/// Red or green.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Guests may run there.
    Green,
    /// vm-ctl's rule keeps guests off the node.
    Red,
}

/// A guest resource's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum GuestState {
    /// Running.
    Started,
    /// Not running.
    Stopped,
    /// A start is in progress.
    Starting,
    /// A stop is in progress.
    Stopping,
    /// A live migration is in progress.
    Migrating,
    /// A failure is recorded and not recovered (crm_mon's `failed`).
    Failed,
    /// crm_mon does not report it.
    Unknown,
}

impl GuestState {
    fn word(self) -> &'static str {
        match self {
            GuestState::Started => "started",
            GuestState::Stopped => "stopped",
            GuestState::Starting => "starting",
            GuestState::Stopping => "stopping",
            GuestState::Migrating => "migrating",
            GuestState::Failed => "FAILED",
            GuestState::Unknown => "unknown",
        }
    }
}

/// One guest vm-ctl manages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GuestStatus {
    /// The libvirt domain.
    pub domain: String,
    /// Its resource (`prmVMCTL_<domain>`).
    pub resource: String,
    /// Its state.
    pub state: GuestState,
    /// Its `target-role` (`None`: unset, i.e. Started).
    pub target_role: Option<String>,
    /// Whether Pacemaker manages it.
    pub managed: bool,
    /// Whether Pacemaker refuses to act on it until an admin does (a failed stop, on-fail=block).
    pub blocked: bool,
    /// The nodes it is active on (more than one: multiply active).
    pub nodes: Vec<String>,
    /// The live migration in progress.
    pub migration: Option<Migration>,
    /// Its preferred node (vm-ctl's `locVMCTL_<dom>_<node>_ACT`).
    pub preferred_node: Option<String>,
    /// Its temporary move constraints (`cli-prefer-<rsc>`, `cli-ban-<rsc>-on-<node>`).
    pub move_constraints: Vec<MoveConstraint>,
    /// Its channel link and liveness, as published by the node running it.
    pub channel: Channel,
    /// Fences of it: in progress, and the last one recorded.
    pub fence: GuestFence,
    /// Its fail counts, per node and operation.
    pub fail_counts: Vec<FailCount>,
    /// Its failed operations, as crm_mon lists them.
    pub failed_actions: Vec<FailedActionReport>,
    /// Its guest node, when it is one (`null` otherwise).
    pub guest_node: Option<GuestNodeStatus>,
}

/// A guest's Pacemaker guest node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GuestNodeStatus {
    /// How the guest node is configured (name, transport, address, port).
    #[serde(flatten)]
    pub config: crate::guest_node::GuestNode,
    /// Whether the cluster has the node online (its pacemaker-remoted connected).
    pub online: bool,
}

/// A live migration in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Migration {
    /// The source node.
    pub from: String,
    /// The target node.
    pub to: String,
}

/// A temporary move constraint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MoveConstraint {
    /// Its id.
    pub id: String,
    /// `prefer` (`cli-prefer-*`: move there) or `ban` (`cli-ban-*`: not there).
    pub kind: MoveKind,
    /// The node it names.
    pub node: Option<String>,
}

/// What a move constraint does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MoveKind {
    /// Run on the node.
    Prefer,
    /// Do not run on the node.
    Ban,
}

/// A guest's channel as the host vm-connectd of the node running it publishes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Channel {
    /// The node whose publication this is (where the guest runs; a migration's source).
    pub node: Option<String>,
    /// `up`, `down`, or `unknown` (not running, or nothing published there).
    pub link: String,
    /// `answering`, `silent`, `unhealthy`, or `unknown` (also when nothing is published).
    pub liveness: String,
    /// When the published value last changed (Unix seconds).
    pub since: Option<u64>,
}

/// Fences of a guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GuestFence {
    /// A fence in progress, from its journal on the guest's primitive.
    pub in_progress: Option<FenceInProgress>,
    /// Nodes whose `force_stop-<rsc>` is true (the guest's stop there is a hard power-off).
    pub force_stop_nodes: Vec<String>,
    /// The last fence vm-stonithd recorded.
    pub last: Option<LastFence>,
}

/// A fence in progress, as its journal says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FenceInProgress {
    /// `off` or `on` (a reboot is journalled as its two steps).
    pub action: String,
    /// The node whose vm-stonithd carries it out.
    pub node: String,
    /// When it must be over (Unix seconds).
    pub deadline: u64,
}

/// The last fence of a guest, as vm-stonithd recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LastFence {
    /// The node whose vm-stonithd recorded it.
    pub node: String,
    /// `off`, `on` or `reboot`.
    pub action: String,
    /// `in-progress`, `done`, `failed`, `timed-out` or `rolled-back`.
    pub result: String,
    /// When it began (Unix seconds).
    pub started: u64,
    /// When it ended.
    pub ended: Option<u64>,
    /// The guest cluster that asked.
    pub cluster: Option<String>,
    /// The requester's node name in it.
    pub requester: Option<String>,
    /// The guest whose channel the request came over.
    pub origin: Option<String>,
}

/// A failed operation of a guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailedActionReport {
    /// Where it ran.
    pub node: String,
    /// `start`, `monitor`, `stop`, `migrate_to`, ...
    pub operation: String,
    /// Its interval in ms (0: not recurring).
    pub interval_ms: u64,
    /// The agent's exit code.
    pub exit_code: i32,
    /// Its meaning.
    pub exit_status: String,
    /// The agent's reason.
    pub exit_reason: String,
    /// How the execution ended (`complete`, `Timed Out`, ...).
    pub status: String,
    /// When (Unix seconds), from the node's operation history.
    pub when: Option<u64>,
}

/// The report of snapshot `cib`, whose `crm_mon` report is `mon`, read at `now` (Unix seconds);
/// `config` (vm-ctl.conf, when there is one) names the attribute rules and daemon clones.
/// Returns it with warnings about what the CIB holds that cannot be read (a malformed
/// published value).
pub fn collect(
    cib: &Cib,
    mon: &ClusterStatus,
    config: Option<&Config>,
    now: u64,
) -> (StatusReport, Vec<String>) {
    let mut warnings = Vec::new();
    let daemon_clones: Vec<(&str, Option<String>)> = clones::DAEMONS
        .iter()
        .map(|d| (*d, clones::of(cib, config, d)))
        .collect();
    let nodes: Vec<NodeReport> = mon
        .nodes
        .iter()
        .map(|n| node_report(cib, mon, config, &daemon_clones, n, &mut warnings))
        .collect();
    let guests = guest::all(cib)
        .into_iter()
        .map(|(dom, _)| guest_status(cib, mon, &dom, &mut warnings))
        .collect();
    let report = StatusReport {
        schema: SCHEMA,
        cib_version: cib.version().to_string(),
        read_at: now,
        cluster: ClusterSummary {
            dc: mon.nodes.iter().find(|n| n.is_dc).map(|n| n.name.clone()),
            quorum: mon.quorum,
            stonith_enabled: mon.stonith_enabled.unwrap_or_else(|| cib.stonith_enabled()),
            nodes_online: mon.nodes.iter().filter(|n| n.online).count(),
            nodes_total: mon.nodes.len(),
        },
        nodes,
        guests,
    };
    (report, warnings)
}

fn node_report(
    cib: &Cib,
    mon: &ClusterStatus,
    config: Option<&Config>,
    daemon_clones: &[(&str, Option<String>)],
    n: &vm_pcmk::NodeStatus,
    warnings: &mut Vec<String>,
) -> NodeReport {
    let state = if n.unclean {
        NodeState::Unclean
    } else if !n.online {
        NodeState::Offline
    } else if n.pending {
        NodeState::Pending
    } else if n.maintenance {
        NodeState::Maintenance
    } else if n.standby {
        NodeState::Standby
    } else {
        NodeState::Online
    };
    let daemons: Vec<DaemonReport> = daemon_clones
        .iter()
        .map(|(daemon, clone)| DaemonReport {
            daemon: (*daemon).to_owned(),
            clone: clone.clone(),
            state: match clone {
                None => DaemonState::NoClone,
                Some(id) => clone_state(mon, id, &n.name),
            },
        })
        .collect();
    let stonithd = daemons
        .iter()
        .find(|d| d.daemon == "vm-stonithd")
        .map_or(DaemonState::NoClone, |d| d.state);
    let fence = fence_readiness(cib, &n.name, n.online, stonithd, warnings);
    let attributes = config
        .map(|c| attribute_health(cib, c, &n.name))
        .unwrap_or_default();
    NodeReport {
        name: n.name.clone(),
        state,
        dc: n.is_dc,
        daemons,
        fence,
        attributes,
    }
}

/// The state of clone `id`'s instance on `node`.
fn clone_state(mon: &ClusterStatus, id: &str, node: &str) -> DaemonState {
    let here: Vec<_> = mon
        .resources
        .iter()
        .filter(|r| r.parent.as_deref() == Some(id) && r.nodes.iter().any(|x| x == node))
        .collect();
    if here.iter().any(|r| r.failed) {
        DaemonState::Failed
    } else if here.iter().any(|r| r.role == Role::Started) {
        DaemonState::Running
    } else {
        DaemonState::Stopped
    }
}

fn fence_readiness(
    cib: &Cib,
    node: &str,
    online: bool,
    stonithd: DaemonState,
    warnings: &mut Vec<String>,
) -> FenceReadiness {
    let mut problems = Vec::new();
    if !online {
        problems.push("node not online".to_owned());
    }
    match stonithd {
        DaemonState::Running => {}
        DaemonState::NoClone => problems.push("no vm-stonithd clone in the cluster".to_owned()),
        DaemonState::Failed => problems.push("vm-stonithd failed here".to_owned()),
        DaemonState::Stopped => problems.push("vm-stonithd not running here".to_owned()),
    }
    let keys = match cib.transient_attribute(node, published::PUBLISHED_KEYS_ATTR) {
        None => {
            problems.push(format!("no {} published", published::PUBLISHED_KEYS_ATTR));
            None
        }
        Some(value) => match published::parse(value) {
            Ok(keys) => {
                if keys.is_empty() {
                    problems.push("vm-stonithd holds no guest-cluster key".to_owned());
                }
                Some(keys.len())
            }
            Err(e) => {
                warnings.push(format!(
                    "node {node}: {} is malformed: {e}",
                    published::PUBLISHED_KEYS_ATTR
                ));
                problems.push(format!(
                    "malformed {} published",
                    published::PUBLISHED_KEYS_ATTR
                ));
                None
            }
        },
    };
    FenceReadiness {
        ready: problems.is_empty(),
        keys,
        problems,
    }
}

fn attribute_health(cib: &Cib, config: &Config, node: &str) -> Vec<AttributeHealth> {
    let families: [(&[CloneRef], &RuleSpec); 3] = [
        (&config.pingd, &config.pingd_rules.loc),
        (&config.diskd, &config.diskd_rules.loc),
        (&config.managerd, &config.managerd_rules.loc),
    ];
    let mut out = Vec::new();
    for (clones, rule) in families {
        for clone in clones {
            let Some(attr) = &clone.attr else {
                continue;
            };
            // Pacemaker's rules see the transient value over a permanent one of the same name
            let value = cib
                .transient_attribute(node, attr)
                .or_else(|| cib.node_attribute(node, attr))
                .map(str::to_owned);
            let red = value
                .as_deref()
                .is_none_or(|v| rule_matches(&rule.op, v, &rule.value));
            out.push(AttributeHealth {
                name: attr.clone(),
                clone: clone.rsc.clone(),
                value,
                health: if red { Health::Red } else { Health::Green },
                rule: format!("{} {}", rule.op, rule.value),
            });
        }
    }
    out
}

/// Whether `value` matches the rule comparison `op operand`, as Pacemaker compares without a
/// `type`: `eq`/`ne` as text (ignoring case), `lt`/`gt`/`lte`/`gte` as numbers. A value that is
/// not a number matches a numeric comparison: its health cannot be told, and red says so.
fn rule_matches(op: &str, value: &str, operand: &str) -> bool {
    let numbers = || {
        Some((
            value.trim().parse::<f64>().ok()?,
            operand.parse::<f64>().ok()?,
        ))
    };
    match op {
        "eq" => value.eq_ignore_ascii_case(operand),
        "ne" => !value.eq_ignore_ascii_case(operand),
        "lt" => numbers().is_none_or(|(v, o)| v < o),
        "gt" => numbers().is_none_or(|(v, o)| v > o),
        "lte" => numbers().is_none_or(|(v, o)| v <= o),
        "gte" => numbers().is_none_or(|(v, o)| v >= o),
        _ => true,
    }
}

fn guest_status(
    cib: &Cib,
    mon: &ClusterStatus,
    dom: &str,
    warnings: &mut Vec<String>,
) -> GuestStatus {
    let rsc = ids::rsc(dom);
    let instances: Vec<_> = mon.instances(&rsc).collect();
    let migration = history::migration(cib, &rsc).map(|(from, to)| Migration { from, to });
    // crm_mon names the source alone until the target's migrate_from: a migration in
    // progress runs on both
    let mut nodes: Vec<String> = instances
        .iter()
        .flat_map(|r| r.nodes.clone())
        .chain(
            migration
                .iter()
                .flat_map(|m| [m.from.clone(), m.to.clone()]),
        )
        .collect();
    nodes.sort();
    nodes.dedup();
    let role = |r: Role| instances.iter().any(|i| i.role == r);
    let state = if instances.is_empty() {
        GuestState::Unknown
    } else if migration.is_some() || role(Role::Migrating) {
        GuestState::Migrating
    } else if instances.iter().any(|i| i.failed) {
        GuestState::Failed
    } else if role(Role::Stopping) {
        GuestState::Stopping
    } else if role(Role::Starting) {
        GuestState::Starting
    } else if role(Role::Started) || role(Role::Promoted) || role(Role::Unpromoted) {
        GuestState::Started
    } else if role(Role::Stopped) {
        GuestState::Stopped
    } else {
        GuestState::Unknown
    };
    let running_on = migration
        .as_ref()
        .map(|m| m.from.clone())
        .or_else(|| nodes.first().cloned());
    GuestStatus {
        domain: dom.to_owned(),
        resource: rsc.clone(),
        state,
        target_role: cib.meta_attribute(&rsc, "target-role").map(str::to_owned),
        managed: instances.iter().all(|i| i.managed),
        blocked: instances.iter().any(|i| i.blocked),
        channel: channel(cib, dom, running_on.as_deref(), warnings),
        nodes,
        migration,
        preferred_node: guest::preferred(cib, dom).map(|(_, n)| n.to_owned()),
        move_constraints: move_constraints(cib, &rsc),
        fence: guest_fence(cib, &rsc, warnings),
        fail_counts: history::fail_counts(cib, &rsc),
        failed_actions: failed_actions(cib, mon, &rsc),
        guest_node: crate::guest_node::of_guest(cib, dom).map(|config| GuestNodeStatus {
            online: mon.node(&config.name).is_some_and(|n| n.online),
            config,
        }),
    }
}

fn channel(cib: &Cib, dom: &str, node: Option<&str>, warnings: &mut Vec<String>) -> Channel {
    let unknown = |node: Option<&str>| Channel {
        node: node.map(str::to_owned),
        link: "unknown".to_owned(),
        liveness: "unknown".to_owned(),
        since: None,
    };
    let (Some(node), Some(attr)) = (node, liveness::checked_attr_name(dom)) else {
        return unknown(node);
    };
    match cib.transient_attribute(node, &attr).map(liveness::parse) {
        None => unknown(Some(node)),
        Some(Ok(l)) => Channel {
            node: Some(node.to_owned()),
            link: l.link.as_str().to_owned(),
            liveness: l.liveness.as_str().to_owned(),
            since: Some(l.since),
        },
        Some(Err(e)) => {
            warnings.push(format!("node {node}: {attr} is malformed: {e}"));
            unknown(Some(node))
        }
    }
}

fn move_constraints(cib: &Cib, rsc: &str) -> Vec<MoveConstraint> {
    cib.constraints_of(rsc)
        .into_iter()
        .filter_map(|c| {
            let id = c.id()?;
            if !ids::is_move_constraint(rsc, id) {
                return None;
            }
            let kind = if id == ids::cli_prefer(rsc) {
                MoveKind::Prefer
            } else {
                MoveKind::Ban
            };
            // `node`, or (crm_resource --lifetime) a rule on #uname
            let node = c
                .get("node")
                .or_else(|| {
                    c.descendants()
                        .into_iter()
                        .find(|e| e.name == "expression" && e.get("attribute") == Some("#uname"))
                        .and_then(|e| e.get("value"))
                })
                .map(str::to_owned);
            Some(MoveConstraint {
                id: id.to_owned(),
                kind,
                node,
            })
        })
        .collect()
}

fn guest_fence(cib: &Cib, rsc: &str, warnings: &mut Vec<String>) -> GuestFence {
    let in_progress = cib
        .meta_attribute(rsc, JOURNAL_ATTR)
        .and_then(Journal::parse)
        .map(|j| FenceInProgress {
            action: j.action.as_str().to_owned(),
            node: j.owner.node,
            deadline: j.deadline,
        });
    let attr = force_stop_attr(rsc);
    let force_stop_nodes = cib
        .node_names()
        .into_iter()
        .filter(|n| {
            cib.node_attribute(n, &attr)
                .is_some_and(vm_pcmk::cib::is_true)
        })
        .map(str::to_owned)
        .collect();
    let record_attr = record::attr_name(rsc);
    let mut last: Option<LastFence> = None;
    for node in cib.node_states().filter_map(|s| s.get("uname")) {
        let Some(value) = cib.transient_attribute(node, &record_attr) else {
            continue;
        };
        match FenceRecord::parse(value) {
            Ok(r) => {
                let at = |f: &LastFence| f.ended.unwrap_or(f.started);
                let this = last_fence(node, &r);
                if last.as_ref().is_none_or(|l| at(&this) > at(l)) {
                    last = Some(this);
                }
            }
            Err(e) => warnings.push(format!("node {node}: {record_attr} is malformed: {e}")),
        }
    }
    GuestFence {
        in_progress,
        force_stop_nodes,
        last,
    }
}

fn last_fence(node: &str, r: &FenceRecord) -> LastFence {
    let name = |n: &Option<vm_seal::Name>| n.as_ref().map(|n| n.as_str().to_owned());
    LastFence {
        node: node.to_owned(),
        action: r.action.as_str().to_owned(),
        result: r.result.as_str().to_owned(),
        started: r.started,
        ended: r.ended,
        cluster: name(&r.cluster),
        requester: name(&r.requester),
        origin: name(&r.origin),
    }
}

fn failed_actions(cib: &Cib, mon: &ClusterStatus, rsc: &str) -> Vec<FailedActionReport> {
    let ops = history::lrm_ops(cib, rsc);
    mon.failures
        .iter()
        .filter(|f| f.is_of(rsc))
        .map(|f| FailedActionReport {
            node: f.node.clone(),
            operation: f.task.clone(),
            interval_ms: f.interval_ms,
            exit_code: f.exit_code,
            exit_status: f.exit_status.clone(),
            exit_reason: f.exit_reason.clone(),
            status: f.status.clone(),
            when: ops
                .iter()
                .find(|o| o.node == f.node && o.call_id == f.call && o.operation == f.task)
                .and_then(|o| o.last_rc_change),
        })
        .collect()
}

/// `secs` as a short age: `42s`, `5m`, `3h`, `2d`.
fn age(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{}m", s / 60),
        s if s < 2 * 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// Columns padded to their widest cell, two spaces apart (the last one not padded).
fn table(out: &mut String, rows: &[Vec<String>]) {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}  ", w = widths[i]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
}

impl StatusReport {
    /// The screen: a line for the cluster, a table of the host nodes, a table of the guests, then
    /// the failed actions and fail counts in full.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let c = &self.cluster;
        let _ = writeln!(
            out,
            "Host cluster: {} of {} nodes online, DC {}, quorum {}, fencing {} (CIB {})",
            c.nodes_online,
            c.nodes_total,
            c.dc.as_deref().unwrap_or("none"),
            match c.quorum {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "unknown",
            },
            if c.stonith_enabled { "on" } else { "OFF" },
            self.cib_version
        );
        out.push('\n');
        let mut rows = vec![
            ["NODE", "STATE"]
                .into_iter()
                .chain(clones::DAEMONS.iter().map(|d| &d[..]))
                .chain(["FENCE", "ATTRIBUTES"])
                .map(|h| h.to_ascii_uppercase())
                .collect::<Vec<_>>(),
        ];
        for n in &self.nodes {
            let mut row = vec![
                if n.dc {
                    format!("{} (DC)", n.name)
                } else {
                    n.name.clone()
                },
                n.state.word().to_owned(),
            ];
            row.extend(n.daemons.iter().map(|d| d.state.word().to_owned()));
            // the first reason only: the JSON has them all
            row.push(match (n.fence.ready, n.fence.problems.as_slice()) {
                (true, _) | (false, []) => {
                    format!("ready ({} keys)", n.fence.keys.unwrap_or(0))
                }
                (false, [one]) => format!("NO: {one}"),
                (false, [first, more @ ..]) => format!("NO: {first} (+{})", more.len()),
            });
            row.push(if n.attributes.is_empty() {
                "-".to_owned()
            } else {
                n.attributes
                    .iter()
                    .map(|a| {
                        format!(
                            "{}={} {}",
                            a.name,
                            a.value.as_deref().unwrap_or("(unset)"),
                            match a.health {
                                Health::Green => "green",
                                Health::Red => "RED",
                            }
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            });
            rows.push(row);
        }
        table(&mut out, &rows);
        out.push('\n');
        if self.guests.is_empty() {
            out.push_str("No guests managed by vm-ctl.\n");
            return out;
        }
        let mut rows = vec![
            [
                "GUEST",
                "STATE",
                "TARGET",
                "NODE",
                "PREFERRED",
                "MOVE",
                "LINK",
                "LIVENESS",
                "FENCE",
                "FAILS",
            ]
            .map(str::to_owned)
            .to_vec(),
        ];
        for g in &self.guests {
            let mut state = g.state.word().to_owned();
            if !g.managed {
                state.push_str(" unmanaged");
            }
            if g.blocked {
                state.push_str(" BLOCKED");
            }
            let node = match &g.migration {
                Some(m) => format!("{}->{}", m.from, m.to),
                None if g.nodes.is_empty() => "-".to_owned(),
                None => g.nodes.join(","),
            };
            let moves = if g.move_constraints.is_empty() {
                "-".to_owned()
            } else {
                g.move_constraints
                    .iter()
                    .map(|m| {
                        format!(
                            "{} {}",
                            match m.kind {
                                MoveKind::Prefer => "prefer",
                                MoveKind::Ban => "ban",
                            },
                            m.node.as_deref().unwrap_or("?")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(",")
            };
            let liveness = match g.channel.since {
                Some(since) => format!(
                    "{} {}",
                    g.channel.liveness,
                    age(self.read_at.saturating_sub(since))
                ),
                None => g.channel.liveness.clone(),
            };
            let fails: u64 = g.fail_counts.iter().map(|f| f.count).sum();
            rows.push(vec![
                g.domain.clone(),
                state,
                g.target_role.clone().unwrap_or_else(|| "-".to_owned()),
                node,
                g.preferred_node.clone().unwrap_or_else(|| "-".to_owned()),
                moves,
                g.channel.link.clone(),
                liveness,
                self.fence_cell(&g.fence),
                if fails == 0 {
                    "-".to_owned()
                } else {
                    fails.to_string()
                },
            ]);
        }
        table(&mut out, &rows);
        let nodes: Vec<_> = self
            .guests
            .iter()
            .filter_map(|g| Some((g, g.guest_node.as_ref()?)))
            .collect();
        if !nodes.is_empty() {
            out.push_str("\nGuest nodes:\n");
            for (g, n) in nodes {
                let _ = writeln!(
                    out,
                    "  {}: guest node {} over {} ({}:{}), {}",
                    g.domain,
                    n.config.name,
                    n.config.transport,
                    n.config.addr,
                    n.config
                        .port_number()
                        .map_or_else(|| "?".to_owned(), |p| p.to_string()),
                    if n.online { "online" } else { "offline" }
                );
            }
        }
        let failed: Vec<_> = self
            .guests
            .iter()
            .flat_map(|g| g.failed_actions.iter().map(move |f| (g, f)))
            .collect();
        if !failed.is_empty() {
            out.push_str("\nFailed actions:\n");
            for (g, f) in failed {
                let _ = write!(
                    out,
                    "  {} ({}): {}{} on {}: {} ({}), {}",
                    g.domain,
                    g.resource,
                    f.operation,
                    if f.interval_ms > 0 {
                        format!(" every {}s", f.interval_ms / 1000)
                    } else {
                        String::new()
                    },
                    f.node,
                    f.exit_status,
                    f.exit_code,
                    f.status
                );
                if !f.exit_reason.is_empty() {
                    let _ = write!(out, ", \"{}\"", f.exit_reason);
                }
                if let Some(when) = f.when {
                    let _ = write!(out, ", {} ago", age(self.read_at.saturating_sub(when)));
                }
                out.push('\n');
            }
        }
        let counts: Vec<_> = self
            .guests
            .iter()
            .flat_map(|g| g.fail_counts.iter().map(move |f| (g, f)))
            .collect();
        if !counts.is_empty() {
            out.push_str("\nFail counts:\n");
            for (g, f) in counts {
                let _ = write!(
                    out,
                    "  {} on {}: {}",
                    g.domain,
                    f.node,
                    if f.count >= history::FAIL_COUNT_INFINITY {
                        "INFINITY".to_owned()
                    } else {
                        f.count.to_string()
                    }
                );
                if let Some(op) = &f.operation {
                    let _ = write!(out, " ({op}");
                    if let Some(ms) = f.interval_ms.filter(|ms| *ms > 0) {
                        let _ = write!(out, " every {}s", ms / 1000);
                    }
                    out.push(')');
                }
                if let Some(t) = f.last_failure {
                    let _ = write!(out, ", last {} ago", age(self.read_at.saturating_sub(t)));
                }
                out.push('\n');
            }
        }
        out
    }

    /// The FENCE cell: a fence in progress, else the last one recorded.
    fn fence_cell(&self, f: &GuestFence) -> String {
        if let Some(p) = &f.in_progress {
            return format!("{} IN PROGRESS by {}", p.action, p.node);
        }
        let Some(l) = &f.last else {
            return if f.force_stop_nodes.is_empty() {
                "-".to_owned()
            } else {
                format!("force_stop on {}", f.force_stop_nodes.join(","))
            };
        };
        let when = l.ended.unwrap_or(l.started);
        let by = match (&l.cluster, &l.requester) {
            (Some(c), Some(r)) => format!(" by {c}/{r}"),
            (Some(c), None) => format!(" by {c}"),
            (None, Some(r)) => format!(" by {r}"),
            (None, None) => String::new(),
        };
        let result = if l.result == FenceResult::InProgress.as_str() {
            "IN PROGRESS".to_owned()
        } else {
            l.result.clone()
        };
        format!(
            "{} {result} {} ago{by}",
            l.action,
            age(self.read_at.saturating_sub(when))
        )
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const NOW: u64 = 1_700_001_000;

    /// Three nodes (n3 offline), the three daemon clones, guests g1 (running on n1, published
    /// answering there), g2 (migrating n1 -> n2, move constraint, fail count, failed monitor)
    /// and g3 (stopped by a fence in progress).
    fn cib() -> Cib {
        Cib::parse(include_str!("../tests/status-cib.xml")).unwrap()
    }

    fn mon() -> ClusterStatus {
        ClusterStatus::from_crm_mon_xml(include_str!("../tests/status-crm_mon.xml")).unwrap()
    }

    fn config() -> Config {
        Config::parse(
            "vm_pingd1=(clnPingd default_ping_set)\nvm_diskd1=(clnDiskd diskcheck_status)\nvm_stonithd1=(clnVmStonithd)\n",
            Path::new("/etc/vm-ctl.conf"),
        )
        .unwrap()
        .0
    }

    fn report() -> (StatusReport, Vec<String>) {
        collect(&cib(), &mon(), Some(&config()), NOW)
    }

    fn guest<'a>(r: &'a StatusReport, dom: &str) -> &'a GuestStatus {
        r.guests.iter().find(|g| g.domain == dom).unwrap()
    }

    #[test]
    fn nodes_daemons_fence_readiness_and_attributes() {
        let (r, warnings) = report();
        assert_eq!(warnings, Vec::<String>::new());
        assert_eq!(r.cluster.dc.as_deref(), Some("n1"));
        assert_eq!((r.cluster.nodes_online, r.cluster.nodes_total), (2, 3));
        let n1 = &r.nodes[0];
        assert_eq!(
            (n1.name.as_str(), n1.state, n1.dc),
            ("n1", NodeState::Online, true)
        );
        let states: Vec<_> = n1.daemons.iter().map(|d| d.state).collect();
        assert_eq!(
            states,
            [
                DaemonState::Running,
                DaemonState::Running,
                DaemonState::NoClone
            ]
        );
        assert!(n1.fence.ready, "{:?}", n1.fence);
        assert_eq!(n1.fence.keys, Some(1));
        let health: Vec<_> = n1
            .attributes
            .iter()
            .map(|a| (a.name.as_str(), a.health))
            .collect();
        assert_eq!(
            health,
            [
                ("default_ping_set", Health::Green),
                ("diskcheck_status", Health::Green)
            ]
        );
        // n2: vm-stonithd stopped there, ping below 100 (transient over permanent), no disk value
        let n2 = &r.nodes[1];
        assert!(!n2.fence.ready);
        assert!(
            n2.fence.problems.iter().any(|p| p.contains("not running")),
            "{:?}",
            n2.fence
        );
        assert_eq!(n2.attributes[0].value.as_deref(), Some("50"));
        assert_eq!(n2.attributes[0].health, Health::Red);
        assert_eq!(
            (n2.attributes[1].value.as_deref(), n2.attributes[1].health),
            (None, Health::Red)
        );
        let n3 = &r.nodes[2];
        assert_eq!(n3.state, NodeState::Offline);
        assert!(n3.fence.problems.iter().any(|p| p == "node not online"));
    }

    #[test]
    fn guests_running_migrating_and_fenced() {
        let (r, _) = report();
        let g1 = guest(&r, "g1");
        assert_eq!(
            (g1.state, g1.nodes.as_slice()),
            (GuestState::Started, &["n1".to_owned()][..])
        );
        assert_eq!(g1.preferred_node.as_deref(), Some("n1"));
        assert_eq!(
            (
                g1.channel.link.as_str(),
                g1.channel.liveness.as_str(),
                g1.channel.since
            ),
            ("up", "answering", Some(1_700_000_900))
        );
        assert!(g1.fail_counts.is_empty() && g1.failed_actions.is_empty());
        let last = g1.fence.last.as_ref().unwrap();
        assert_eq!(
            (
                last.node.as_str(),
                last.action.as_str(),
                last.result.as_str()
            ),
            ("n2", "reboot", "done")
        );
        assert_eq!(last.requester.as_deref(), Some("www-b"));

        let g2 = guest(&r, "g2");
        assert_eq!(g2.state, GuestState::Migrating);
        assert_eq!(
            g2.migration,
            Some(Migration {
                from: "n1".into(),
                to: "n2".into()
            })
        );
        // crm_mon names n1 alone; the migration runs on both
        assert_eq!(g2.nodes, ["n1", "n2"]);
        // published by the source, where it still runs
        assert_eq!(g2.channel.node.as_deref(), Some("n1"));
        assert_eq!(g2.channel.liveness, "silent");
        assert_eq!(
            g2.move_constraints,
            [MoveConstraint {
                id: "cli-prefer-prmVMCTL_g2".into(),
                kind: MoveKind::Prefer,
                node: Some("n2".into())
            }]
        );
        assert_eq!(g2.fail_counts.len(), 1);
        assert_eq!(g2.fail_counts[0].count, 2);
        assert_eq!(g2.failed_actions.len(), 1);
        let f = &g2.failed_actions[0];
        assert_eq!(
            (
                f.operation.as_str(),
                f.exit_code,
                f.exit_reason.as_str(),
                f.when
            ),
            ("monitor", 7, "guest not running", Some(1_700_000_050))
        );

        let g3 = guest(&r, "g3");
        assert_eq!(g3.state, GuestState::Stopped);
        assert_eq!(g3.target_role.as_deref(), Some("Stopped"));
        let p = g3.fence.in_progress.as_ref().unwrap();
        assert_eq!((p.action.as_str(), p.node.as_str()), ("off", "n1"));
        assert_eq!(g3.fence.force_stop_nodes, ["n1", "n2", "n3"]);
        assert_eq!(g3.fence.last.as_ref().unwrap().result, "in-progress");
        // stopped: nothing published counts
        assert_eq!(
            (g3.channel.node.as_deref(), g3.channel.link.as_str()),
            (None, "unknown")
        );
    }

    #[test]
    fn the_screen_shows_every_part() {
        let (r, _) = report();
        let text = r.text();
        for want in [
            "Host cluster: 2 of 3 nodes online, DC n1, quorum yes, fencing on",
            "n1 (DC)",
            "OFFLINE",
            "ready (1 keys)",
            "NO: vm-stonithd not running here",
            "NO: node not online (+2)",
            "default_ping_set=50 RED",
            "diskcheck_status=(unset) RED",
            "migrating",
            "n1->n2",
            "prefer n2",
            "answering 100s",
            "reboot done 6m ago by web/www-b",
            "off IN PROGRESS by n1",
            "Failed actions:",
            "g2 (prmVMCTL_g2): monitor every 10s on n1: not running (7), complete, \"guest not running\", 15m ago",
            "Fail counts:",
            "g2 on n1: 2 (monitor every 10s), last 15m ago",
        ] {
            assert!(text.contains(want), "{want:?} missing from:\n{text}");
        }
        // one header and one row per node and guest in the tables
        let g1 = text.lines().find(|l| l.starts_with("g1 ")).unwrap();
        let cells: Vec<_> = g1.split_whitespace().collect();
        assert_eq!(
            &cells[..5],
            ["g1", "started", "Started", "n1", "n1"],
            "{g1}"
        );
    }

    #[test]
    fn malformed_publications_are_warnings_not_failures() {
        let xml = include_str!("../tests/status-cib.xml")
            .replace("up:answering:1700000900", "up:answering:soon")
            .replace("web:0011223344556677:1111111111111111", "junk");
        let cib = Cib::parse(&xml).unwrap();
        let (r, warnings) = collect(&cib, &mon(), Some(&config()), NOW);
        // both nodes publish the same keys
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        assert!(
            warnings.iter().any(|w| w.contains("pmkt-guest-g1")),
            "{warnings:?}"
        );
        assert_eq!(guest(&r, "g1").channel.liveness, "unknown");
        assert!(!r.nodes[0].fence.ready);
    }

    #[test]
    fn without_vm_ctl_conf_the_clones_are_found_and_no_attribute_is_judged() {
        let (r, _) = collect(&cib(), &mon(), None, NOW);
        assert!(r.nodes.iter().all(|n| n.attributes.is_empty()));
        assert_eq!(
            r.nodes[0].daemons[1].clone.as_deref(),
            Some("clnVmStonithd")
        );
    }

    #[test]
    fn rules_compare_like_pacemaker() {
        assert!(rule_matches("lt", "50", "100"));
        assert!(!rule_matches("lt", "100", "100"));
        assert!(
            rule_matches("lt", "lots", "100"),
            "not a number: cannot be judged green"
        );
        assert!(rule_matches("eq", "error", "ERROR"));
        assert!(!rule_matches("eq", "normal", "ERROR"));
        assert!(rule_matches("ne", "normal", "ok"));
        assert!(rule_matches("gte", "3", "3"));
    }

    #[test]
    fn the_json_is_the_documented_schema() {
        let (r, _) = report();
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["schema"], 1);
        assert_eq!(v["nodes"][0]["state"], "online");
        assert_eq!(v["nodes"][2]["state"], "offline");
        assert_eq!(v["nodes"][0]["daemons"][2]["state"], "no-clone");
        assert_eq!(v["nodes"][1]["attributes"][0]["health"], "red");
        assert_eq!(v["guests"][1]["state"], "migrating");
        assert_eq!(v["guests"][1]["migration"]["to"], "n2");
        assert_eq!(v["guests"][1]["move_constraints"][0]["kind"], "prefer");
        assert_eq!(v["guests"][1]["fail_counts"][0]["interval_ms"], 10_000);
        assert_eq!(v["guests"][2]["fence"]["in_progress"]["action"], "off");
        assert_eq!(v["guests"][0]["fence"]["last"]["result"], "done");
        assert_eq!(v["guests"][0]["channel"]["link"], "up");
        // every field the docs list is there
        let doc = include_str!("../../docs/operations.md");
        for key in [
            "schema",
            "cib_version",
            "read_at",
            "cluster",
            "nodes",
            "guests",
            "daemons",
            "fence",
            "attributes",
            "target_role",
            "migration",
            "preferred_node",
            "move_constraints",
            "channel",
            "in_progress",
            "force_stop_nodes",
            "last",
            "fail_counts",
            "failed_actions",
            "guest_node",
            "transport",
            "remote-port",
        ] {
            assert!(doc.contains(&format!("`{key}`")), "{key} is not documented");
        }
    }

    #[test]
    fn ages_are_short() {
        assert_eq!(age(5), "5s");
        assert_eq!(age(600), "10m");
        assert_eq!(age(3 * 3600), "3h");
        assert_eq!(age(3 * 86400), "3d");
    }
}
