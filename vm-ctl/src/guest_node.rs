//! Guests as Pacemaker *guest nodes*: the guest's VirtualDomain primitive carries the meta
//! attribute `remote-node=<NAME>`, and the host cluster runs resources inside the guest
//! through its pacemaker-remoted.
//!
//! The CIB shape (the one home of it; docs/operations.md "Guest nodes"):
//!
//! ```text
//! meta remote-node=<NAME> remote-addr=<ADDR> remote-port=<PORT> remote-connect-timeout=<T>
//! ```
//!
//! - transport `channel` (default): `remote-addr=127.0.0.1` and a host-local `remote-port` of
//!   its own, the lowest port from `vm_guest_node_port_base` up that no other guest node with a
//!   host-local address uses; the host's vm-connectd carries the stream over the guest's
//!   channel (no network path to the guest);
//! - transport `tcp`: `remote-addr=<the guest's address>`, `remote-port` 3121 unless given.
//!
//! A guest node read back from the CIB is `channel` when its address is a loopback address,
//! `tcp` otherwise (no `remote-addr`: Pacemaker connects to NAME itself, over TCP).
//!
//! This module holds the pure parts: reading guest nodes out of a snapshot, choosing a port,
//! the name and port clashes `resource add` refuses and `vm-ctl check` reports, what is placed
//! on a guest node (for `resource delete`), and the node entries Pacemaker keeps for one.

use serde::Serialize;
use vm_pcmk::xml::Element;
use vm_pcmk::{Cib, ClusterStatus};

use crate::config::{GuestNodeDefaults, GuestNodeTransport};
use crate::ids;
use crate::output::{Finding, FindingCode, Level};

/// The meta attribute that makes a resource's guest a guest node.
pub const REMOTE_NODE: &str = "remote-node";
/// Where the cluster connects to the guest's pacemaker-remoted.
pub const REMOTE_ADDR: &str = "remote-addr";
/// The port of `remote-addr`.
pub const REMOTE_PORT: &str = "remote-port";
/// How long the cluster waits for pacemaker-remoted after the guest started.
pub const REMOTE_CONNECT_TIMEOUT: &str = "remote-connect-timeout";
/// The address of a channel guest node: the host's own end of the relay.
pub const CHANNEL_ADDR: &str = "127.0.0.1";
/// pacemaker-remoted's port, Pacemaker's default `remote-port`.
pub const DEFAULT_REMOTE_PORT: u16 = 3121;

/// A guest node as `resource add` is asked for it (the command line over vm-ctl.conf).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The node name; `None`: the domain name.
    pub name: Option<String>,
    /// `--guest-node-addr`: the guest's own address (tcp transport).
    pub addr: Option<String>,
    /// `--guest-node-port`: the port (host-local for channel, the guest's for tcp).
    pub port: Option<u16>,
}

/// A guest node as it is to be written, before its port is chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    /// The node name.
    pub name: String,
    /// How the cluster reaches it.
    pub transport: GuestNodeTransport,
    /// `remote-addr`.
    pub addr: String,
    /// A port given on the command line; `None`: chosen ([`choose_port`]) or the default.
    pub port: Option<u16>,
    /// `remote-connect-timeout`.
    pub connect_timeout: String,
}

impl Wanted {
    /// The guest node for `dom` from `request` and vm-ctl.conf's `defaults`: an address makes
    /// it `tcp`; without one, vm-ctl.conf's transport (`tcp` then needs an address).
    pub fn new(dom: &str, request: &Request, defaults: &GuestNodeDefaults) -> Result<Self, String> {
        let name = request.name.clone().unwrap_or_else(|| dom.to_owned());
        let (transport, addr) = match (&request.addr, defaults.transport) {
            (Some(addr), _) => {
                check_addr(addr)?;
                (GuestNodeTransport::Tcp, addr.clone())
            }
            (None, GuestNodeTransport::Channel) => {
                (GuestNodeTransport::Channel, CHANNEL_ADDR.to_owned())
            }
            (None, GuestNodeTransport::Tcp) => {
                return Err(
                    "vm_guest_node_transport=tcp needs the guest's address: give it with \
                     --guest-node-addr ADDR (or use the channel transport, which needs none)"
                        .to_owned(),
                );
            }
        };
        if let Some(p) = request.port
            && p == 0
        {
            return Err("--guest-node-port must be from 1 to 65535".to_owned());
        }
        Ok(Self {
            name,
            transport,
            addr,
            port: request.port,
            connect_timeout: defaults.connect_timeout.clone(),
        })
    }
}

/// A guest node's address as `--guest-node-addr` takes it: an IP address or a host name (what
/// Pacemaker resolves), never a loopback address (that is the channel transport's).
fn check_addr(addr: &str) -> Result<(), String> {
    if let Ok(ip) = addr.parse::<std::net::IpAddr>() {
        if ip.is_loopback() || ip.is_unspecified() {
            return Err(format!(
                "--guest-node-addr {addr} is not the guest's address; leave the option out to \
                 reach the guest over its channel"
            ));
        }
        return Ok(());
    }
    let host_name = !addr.is_empty()
        && addr.len() <= 253
        && addr.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if host_name && addr != "localhost" {
        Ok(())
    } else {
        Err(format!(
            "--guest-node-addr {addr:?} is neither an IP address nor a host name"
        ))
    }
}

/// A guest node found in the CIB.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GuestNode {
    /// The node name (`remote-node`).
    pub name: String,
    /// The resource whose guest it is.
    pub resource: String,
    /// `channel` or `tcp` (see the module doc).
    pub transport: &'static str,
    /// `remote-addr` (NAME when unset, as Pacemaker does).
    pub addr: String,
    /// `remote-port` as written; `None` when unset (Pacemaker then uses 3121).
    pub port: Option<String>,
    /// `remote-connect-timeout`, when set.
    pub connect_timeout: Option<String>,
}

impl GuestNode {
    /// The port Pacemaker connects to, when it is a number.
    pub fn port_number(&self) -> Option<u16> {
        match &self.port {
            None => Some(DEFAULT_REMOTE_PORT),
            Some(p) => p.parse().ok(),
        }
    }

    /// Whether the cluster connects to this host itself (the channel's relay).
    pub fn host_local(&self) -> bool {
        is_loopback(&self.addr)
    }
}

fn is_loopback(addr: &str) -> bool {
    addr == "localhost"
        || addr
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The meta attribute `name` of `prim`'s unconditional sets.
fn meta<'a>(prim: &'a Element, name: &str) -> Option<&'a str> {
    prim.elements()
        .filter(|s| s.name == "meta_attributes" && s.find("rule").is_none())
        .flat_map(Element::elements)
        .find(|nv| nv.name == "nvpair" && nv.get("name") == Some(name))
        .and_then(|nv| nv.get("value"))
}

/// The guest node of primitive `prim`, if it is one.
pub fn of_primitive(prim: &Element) -> Option<GuestNode> {
    let name = meta(prim, REMOTE_NODE)?;
    let addr = meta(prim, REMOTE_ADDR).unwrap_or(name).to_owned();
    Some(GuestNode {
        name: name.to_owned(),
        resource: prim.id().unwrap_or("").to_owned(),
        transport: if is_loopback(&addr) {
            GuestNodeTransport::Channel.as_str()
        } else {
            GuestNodeTransport::Tcp.as_str()
        },
        addr,
        port: meta(prim, REMOTE_PORT).map(str::to_owned),
        connect_timeout: meta(prim, REMOTE_CONNECT_TIMEOUT).map(str::to_owned),
    })
}

/// Every guest node of the CIB (any primitive with `remote-node`, vm-ctl's or not), in CIB
/// order.
pub fn all(cib: &Cib) -> Vec<GuestNode> {
    cib.section("resources")
        .map(|r| {
            r.descendants()
                .into_iter()
                .filter(|e| e.name == "primitive")
                .filter_map(of_primitive)
                .collect()
        })
        .unwrap_or_default()
}

/// The guest node of vm-ctl's guest `dom`, if it is one.
pub fn of_guest(cib: &Cib, dom: &str) -> Option<GuestNode> {
    cib.resource(&ids::rsc(dom))
        .filter(|p| p.name == "primitive")
        .and_then(of_primitive)
}

/// Whether `<node>` entry `n` is a remote or guest node's: `type="remote"` (what the cluster
/// writes), or an id that is its name (what tools write on a CIB file, where no daemon knows
/// the node is remote; a cluster node's id is its corosync node id, a number).
fn is_remote_entry(n: &Element) -> bool {
    n.get("type") == Some("remote") || (n.id().is_some() && n.id() == n.get("uname"))
}

/// The cluster's own (host) nodes: `<node>` entries that are not remote nodes' entries.
pub fn host_nodes(cib: &Cib) -> Vec<&str> {
    cib.section("nodes")
        .map(|nodes| {
            nodes
                .elements()
                .filter(|n| n.name == "node" && !is_remote_entry(n))
                .filter_map(|n| n.get("uname"))
                .collect()
        })
        .unwrap_or_default()
}

/// The lowest host-local port from `base` up that no host-local guest node other than
/// `rsc`'s uses; `rsc`'s own port when it already has a free one (so adding it again changes
/// nothing). `None` when every port up to 65535 is taken.
pub fn choose_port(cib: &Cib, rsc: &str, base: u16) -> Option<u16> {
    let nodes = all(cib);
    let used: std::collections::BTreeSet<u16> = nodes
        .iter()
        .filter(|g| g.resource != rsc && g.host_local())
        .filter_map(GuestNode::port_number)
        .collect();
    if let Some(own) = nodes
        .iter()
        .find(|g| g.resource == rsc && g.host_local())
        .and_then(GuestNode::port_number)
        && own >= base
        && !used.contains(&own)
    {
        return Some(own);
    }
    (base..=u16::MAX).find(|p| !used.contains(p))
}

/// Why guest node `wanted` (with `port`) of resource `rsc` cannot be added to `cib`: its name
/// is a host node's, another guest node's or a resource id; its endpoint is another guest
/// node's.
pub fn clash(cib: &Cib, rsc: &str, wanted: &Wanted, port: u16) -> Option<String> {
    let name = wanted.name.as_str();
    if host_nodes(cib).contains(&name) {
        return Some(format!(
            "guest node name {name} is the name of a host node; give the guest node another \
             name with --guest-node NAME"
        ));
    }
    let others: Vec<GuestNode> = all(cib).into_iter().filter(|g| g.resource != rsc).collect();
    if let Some(g) = others.iter().find(|g| g.name == name) {
        return Some(format!(
            "guest node name {name} is already the guest node of resource {}; give this one \
             another name with --guest-node NAME",
            g.resource
        ));
    }
    if name != rsc && cib.resource(name).is_some() {
        return Some(format!(
            "guest node name {name} is the id of a resource, which Pacemaker does not allow; \
             give the guest node another name with --guest-node NAME"
        ));
    }
    let local = wanted.transport == GuestNodeTransport::Channel;
    if let Some(g) = others.iter().find(|g| {
        g.port_number() == Some(port)
            && if local {
                g.host_local()
            } else {
                g.addr == wanted.addr
            }
    }) {
        return Some(format!(
            "port {port} at {} is already guest node {}'s (resource {}); {}",
            wanted.addr,
            g.name,
            g.resource,
            if local {
                "leave --guest-node-port out to get a free port"
            } else {
                "two guest nodes cannot be one endpoint"
            }
        ));
    }
    None
}

/// The meta attributes for `wanted` with `port` (the `remote-*` nvpairs, in this order), with
/// the ids crmsh gives them.
pub fn meta_nvpairs(rsc: &str, wanted: &Wanted, port: u16) -> Vec<Element> {
    let set = format!("{rsc}-meta_attributes");
    [
        (REMOTE_NODE, wanted.name.clone()),
        (REMOTE_ADDR, wanted.addr.clone()),
        (REMOTE_PORT, port.to_string()),
        (REMOTE_CONNECT_TIMEOUT, wanted.connect_timeout.clone()),
    ]
    .into_iter()
    .map(|(name, value)| {
        Element::new("nvpair")
            .attr("name", name)
            .attr("value", value)
            .attr("id", format!("{set}-{name}"))
    })
    .collect()
}

/// What keeps guest node `name` in use: resources active there (status; clone instances
/// aside) and location
/// constraints that place resources there (a `node` of `name` or a rule on `#uname eq name`,
/// with a non-negative score), other than `own` (the guest's own resource). One line each.
pub fn in_use(cib: &Cib, status: &ClusterStatus, name: &str, own: &str) -> Vec<String> {
    let mut found: Vec<String> = status
        .resources
        .iter()
        // a clone's instance there is one instance fewer, not a stranded resource
        .filter(|r| r.parent.as_deref().is_none_or(|p| !cib.is_clone(p)))
        .filter(|r| r.id != own && r.nodes.iter().any(|n| n == name))
        .map(|r| format!("{} is {} on {name}", r.id, r.role))
        .collect();
    for c in placing_constraints(cib, name) {
        let rsc = c.get("rsc").unwrap_or("a resource set");
        if rsc != own {
            found.push(format!(
                "location constraint {} places {rsc} on {name}",
                c.id().unwrap_or("?")
            ));
        }
    }
    found
}

/// Whether a score places (rather than bans): anything but a negative number or -INFINITY.
fn places(score: Option<&str>) -> bool {
    match score {
        None => true,
        Some(s) => !s.trim_start().starts_with('-'),
    }
}

/// Location constraints that place something on node `name`.
pub fn placing_constraints<'a>(cib: &'a Cib, name: &str) -> Vec<&'a Element> {
    let Some(constraints) = cib.section("constraints") else {
        return Vec::new();
    };
    constraints
        .elements()
        .filter(|c| c.name == "rsc_location")
        .filter(|c| {
            let by_node = c.get("node") == Some(name) && places(c.get("score"));
            let by_rule = c.elements().any(|rule| {
                rule.name == "rule"
                    && places(rule.get("score"))
                    && rule.elements().any(|e| {
                        e.name == "expression"
                            && e.get("attribute") == Some("#uname")
                            && e.get("operation") == Some("eq")
                            && e.get("value") == Some(name)
                    })
            });
            by_node || by_rule
        })
        .collect()
}

/// Remove what Pacemaker keeps of guest node `name` once its resource is gone: its `<node>`
/// entry (type remote, made when a node attribute is set for it), its `<node_state>` in the
/// status, the operation history of its connection (the implicit `ocf:pacemaker:remote`
/// resource named `name`) on the host nodes, and location constraints naming it as their
/// `node` (they would name a node that no longer exists). Returns what was removed.
pub fn remove_traces(cib: &mut Cib, name: &str) -> Vec<String> {
    let mut removed = Vec::new();
    cib.section_mut("constraints").remove_children(|c| {
        let hit = c.name == "rsc_location" && c.get("node") == Some(name);
        if hit {
            removed.push(c.id().unwrap_or("?").to_owned());
        }
        hit
    });
    let nodes_removed = cib.section_mut("nodes").remove_children(|n| {
        n.name == "node" && is_remote_entry(n) && n.get("uname") == Some(name)
    });
    if nodes_removed > 0 {
        removed.push(format!("node entry {name}"));
    }
    // a host node of that name (a clash `check` reports) keeps its status
    let host = host_nodes(cib).contains(&name);
    if let Some(status) = cib.root_mut().find_mut("status") {
        let states = status.remove_children(|s| {
            s.name == "node_state"
                && !host
                && (s.get("uname") == Some(name) || s.id() == Some(name))
        });
        if states > 0 {
            removed.push(format!("node status {name}"));
        }
        let mut history = 0;
        for state in status.elements_mut().filter(|s| s.name == "node_state") {
            if let Some(lrm) = state.path_mut(&["lrm", "lrm_resources"]) {
                history += lrm.remove_children(|r| {
                    r.name == "lrm_resource"
                        && r.id() == Some(name)
                        && r.get("provider") == Some("pacemaker")
                        && r.get("type") == Some("remote")
                });
            }
        }
        if history > 0 {
            removed.push(format!("connection history {name}"));
        }
    }
    removed
}

/// `vm-ctl check`'s findings about guest nodes: each one's shape, name clashes (a host node's
/// name, another guest node's, a resource id), endpoints shared by two guest nodes, ports that
/// are not numbers, guest nodes whose resource is not a VirtualDomain, and remote node entries
/// or status left with no resource behind them.
pub fn findings(cib: &Cib) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut push = |subject: &str, code, level, message: String, fix: String| {
        out.push(Finding {
            subject: subject.to_owned(),
            code,
            level,
            message,
            fix,
        });
    };
    let nodes = all(cib);
    let hosts = host_nodes(cib);
    for (i, g) in nodes.iter().enumerate() {
        let subject = ids::dom_of(&g.resource).unwrap_or(&g.resource);
        let mut clean = true;
        let agent = cib.resource(&g.resource).and_then(|p| p.get("type"));
        if agent != Some("VirtualDomain") {
            clean = false;
            push(
                subject,
                FindingCode::GuestNodeNotVirtualDomain,
                Level::Warning,
                format!(
                    "guest node {} belongs to resource {} ({}), not to a VirtualDomain guest",
                    g.name,
                    g.resource,
                    agent.unwrap_or("?")
                ),
                "make guests guest nodes with vm-ctl resource add DOM -a NODE --guest-node"
                    .to_owned(),
            );
        }
        let clash = if hosts.contains(&g.name.as_str()) {
            Some("the name of a host node".to_owned())
        } else if let Some(o) = nodes[..i].iter().find(|o| o.name == g.name) {
            Some(format!("also the guest node of resource {}", o.resource))
        } else if g.name != g.resource && cib.resource(&g.name).is_some() {
            Some("the id of a resource".to_owned())
        } else {
            None
        };
        if let Some(what) = clash {
            clean = false;
            push(
                subject,
                FindingCode::GuestNodeNameClash,
                Level::Error,
                format!("guest node name {} is {what}", g.name),
                format!(
                    "delete the guest (vm-ctl resource delete {subject}) and add it again with \
                     another name: --guest-node NAME"
                ),
            );
        }
        let Some(port) = g.port_number() else {
            push(
                subject,
                FindingCode::GuestNodeBadPort,
                Level::Error,
                format!(
                    "guest node {}: remote-port {:?} is not a port number",
                    g.name,
                    g.port.as_deref().unwrap_or("")
                ),
                format!("delete the guest and add it again: vm-ctl resource delete {subject}"),
            );
            continue;
        };
        let same_endpoint = |o: &GuestNode| {
            o.port_number() == Some(port)
                && if g.host_local() {
                    o.host_local()
                } else {
                    o.addr == g.addr
                }
        };
        if let Some(o) = nodes[..i].iter().find(|o| same_endpoint(o)) {
            clean = false;
            push(
                subject,
                FindingCode::GuestNodePortDuplicate,
                Level::Error,
                format!(
                    "guest node {} has the endpoint {}:{port} of guest node {} (resource {}): \
                     the cluster would reach one guest for both",
                    g.name, g.addr, o.name, o.resource
                ),
                format!(
                    "delete one of them and add it again without --guest-node-port \
                     (vm-ctl resource delete {subject})"
                ),
            );
        }
        if clean {
            push(
                subject,
                FindingCode::GuestNode,
                Level::Ok,
                format!(
                    "guest node {} over {} ({}:{port})",
                    g.name, g.transport, g.addr
                ),
                String::new(),
            );
        }
    }
    // remote node entries and status that nothing configures any more
    let configured = |name: &str| {
        nodes.iter().any(|g| g.name == name)
            || cib
                .resource(name)
                .is_some_and(|r| r.get("type") == Some("remote"))
    };
    let mut stale: Vec<&str> = cib
        .section("nodes")
        .into_iter()
        .flat_map(Element::elements)
        .filter(|n| n.name == "node" && n.get("type") == Some("remote"))
        .filter_map(|n| n.get("uname"))
        .collect();
    stale.extend(
        cib.root()
            .find("status")
            .into_iter()
            .flat_map(Element::elements)
            .filter(|s| {
                s.name == "node_state" && s.get("remote_node").is_some_and(vm_pcmk::cib::is_true)
            })
            .filter_map(|s| s.get("uname").or_else(|| s.id())),
    );
    stale.sort_unstable();
    stale.dedup();
    for name in stale.into_iter().filter(|n| !configured(n)) {
        push(
            "cluster",
            FindingCode::GuestNodeStale,
            Level::Warning,
            format!("the CIB keeps remote node {name}, but no resource makes it a node"),
            format!("crm_node --force --remove {name}"),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const CIB: &str = r##"<cib epoch="1" num_updates="0" admin_epoch="0"><configuration>
<crm_config/><nodes><node id="1" uname="n1"/><node id="g9" uname="g9" type="remote"/></nodes>
<resources>
 <primitive id="prmVMCTL_a" class="ocf" provider="heartbeat" type="VirtualDomain">
  <meta_attributes id="ma"><nvpair id="a1" name="remote-node" value="a"/>
   <nvpair id="a2" name="remote-addr" value="127.0.0.1"/>
   <nvpair id="a3" name="remote-port" value="3122"/></meta_attributes></primitive>
 <primitive id="prmVMCTL_b" class="ocf" provider="heartbeat" type="VirtualDomain">
  <meta_attributes id="mb"><nvpair id="b1" name="remote-node" value="b"/>
   <nvpair id="b2" name="remote-addr" value="127.0.0.1"/>
   <nvpair id="b3" name="remote-port" value="3124"/></meta_attributes></primitive>
 <primitive id="prmVMCTL_t" class="ocf" provider="heartbeat" type="VirtualDomain">
  <meta_attributes id="mt"><nvpair id="t1" name="remote-node" value="t"/>
   <nvpair id="t2" name="remote-addr" value="192.0.2.7"/></meta_attributes></primitive>
 <primitive id="dummy" class="ocf" provider="pacemaker" type="Dummy"/>
</resources>
<constraints>
 <rsc_location id="l1" rsc="dummy" node="a" score="INFINITY"/>
 <rsc_location id="l2" rsc="dummy" node="b" score="-INFINITY"/>
 <rsc_location id="l3" rsc="dummy"><rule id="r" score="100"><expression id="e"
   attribute="#uname" operation="eq" value="t"/></rule></rsc_location>
</constraints></configuration>
<status><node_state id="a" uname="a" remote_node="true"/><node_state id="1" uname="n1"><lrm id="1">
<lrm_resources><lrm_resource id="a" class="ocf" provider="pacemaker" type="remote"/>
<lrm_resource id="prmVMCTL_a" class="ocf" provider="heartbeat" type="VirtualDomain"/>
</lrm_resources></lrm></node_state></status>
</cib>"##;

    fn cib() -> Cib {
        Cib::parse(CIB).unwrap()
    }

    fn wanted(name: &str, transport: GuestNodeTransport, addr: &str) -> Wanted {
        Wanted {
            name: name.into(),
            transport,
            addr: addr.into(),
            port: None,
            connect_timeout: "60s".into(),
        }
    }

    #[test]
    fn reads_guest_nodes_and_transports() {
        let all = all(&cib());
        let names: Vec<_> = all
            .iter()
            .map(|g| (g.name.as_str(), g.transport, g.port_number()))
            .collect();
        assert_eq!(
            names,
            [
                ("a", "channel", Some(3122)),
                ("b", "channel", Some(3124)),
                ("t", "tcp", Some(3121)),
            ]
        );
        assert_eq!(host_nodes(&cib()), ["n1"]);
    }

    #[test]
    fn lowest_free_port_and_own_port_kept() {
        let c = cib();
        assert_eq!(choose_port(&c, "prmVMCTL_new", 3122), Some(3123));
        assert_eq!(choose_port(&c, "prmVMCTL_new", 3124), Some(3125));
        assert_eq!(choose_port(&c, "prmVMCTL_new", 4000), Some(4000));
        // adopting an existing CIB: a guest keeps the port it has
        assert_eq!(choose_port(&c, "prmVMCTL_b", 3122), Some(3124));
        assert_eq!(choose_port(&c, "prmVMCTL_new", u16::MAX), Some(u16::MAX));
    }

    #[test]
    fn clashes_are_named() {
        let c = cib();
        let ch = GuestNodeTransport::Channel;
        let ok = wanted("c", ch, CHANNEL_ADDR);
        assert_eq!(clash(&c, "prmVMCTL_c", &ok, 3123), None);
        let host = clash(&c, "prmVMCTL_c", &wanted("n1", ch, CHANNEL_ADDR), 3123).unwrap();
        assert!(host.contains("host node"), "{host}");
        let other = clash(&c, "prmVMCTL_c", &wanted("a", ch, CHANNEL_ADDR), 3123).unwrap();
        assert!(other.contains("prmVMCTL_a"), "{other}");
        let rsc = clash(&c, "prmVMCTL_c", &wanted("dummy", ch, CHANNEL_ADDR), 3123).unwrap();
        assert!(rsc.contains("id of a resource"), "{rsc}");
        let port = clash(&c, "prmVMCTL_c", &ok, 3124).unwrap();
        assert!(port.contains("guest node b"), "{port}");
        // its own entry is no clash
        assert_eq!(
            clash(&c, "prmVMCTL_a", &wanted("a", ch, CHANNEL_ADDR), 3122),
            None
        );
        // tcp: the same port elsewhere is fine, the same endpoint is not
        let tcp = GuestNodeTransport::Tcp;
        assert_eq!(
            clash(&c, "prmVMCTL_c", &wanted("c", tcp, "192.0.2.8"), 3121),
            None
        );
        assert!(clash(&c, "prmVMCTL_c", &wanted("c", tcp, "192.0.2.7"), 3121).is_some());
    }

    #[test]
    fn wanted_from_request_and_defaults() {
        let d = GuestNodeDefaults::default();
        let req = |name: Option<&str>, addr: Option<&str>| Request {
            name: name.map(Into::into),
            addr: addr.map(Into::into),
            port: None,
        };
        let w = Wanted::new("g1", &req(None, None), &d).unwrap();
        assert_eq!(
            (w.name.as_str(), w.transport, w.addr.as_str()),
            ("g1", GuestNodeTransport::Channel, "127.0.0.1")
        );
        let w = Wanted::new("g1", &req(Some("web"), Some("192.0.2.1")), &d).unwrap();
        assert_eq!(
            (w.name.as_str(), w.transport),
            ("web", GuestNodeTransport::Tcp)
        );
        Wanted::new("g1", &req(None, Some("g1.example.org")), &d).unwrap();
        for bad in ["127.0.0.1", "::1", "0.0.0.0", "localhost", "a b", "-x", ""] {
            assert!(
                Wanted::new("g1", &req(None, Some(bad)), &d).is_err(),
                "{bad}"
            );
        }
        let tcp = GuestNodeDefaults {
            transport: GuestNodeTransport::Tcp,
            ..d
        };
        let e = Wanted::new("g1", &req(None, None), &tcp).unwrap_err();
        assert!(e.contains("--guest-node-addr"), "{e}");
    }

    #[test]
    fn in_use_reads_constraints_and_status() {
        let c = cib();
        let status = ClusterStatus::default();
        let a = in_use(&c, &status, "a", "prmVMCTL_a");
        assert_eq!(a, ["location constraint l1 places dummy on a"]);
        // a ban does not place
        assert!(in_use(&c, &status, "b", "prmVMCTL_b").is_empty());
        assert_eq!(in_use(&c, &status, "t", "prmVMCTL_t").len(), 1);
    }

    #[test]
    fn findings_name_each_problem() {
        let mut c = cib();
        let codes = |c: &Cib| {
            findings(c)
                .into_iter()
                .map(|f| (f.subject, f.code.as_str(), f.level))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            codes(&c),
            [
                ("a".to_owned(), "guest-node", Level::Ok),
                ("b".to_owned(), "guest-node", Level::Ok),
                ("t".to_owned(), "guest-node", Level::Ok),
                ("cluster".to_owned(), "guest-node-stale", Level::Warning),
            ]
        );
        // b takes a's port and t takes a host node's name; dummy becomes a guest node
        c.set_meta_attribute("prmVMCTL_b", REMOTE_PORT, "3122");
        c.set_meta_attribute("prmVMCTL_t", REMOTE_NODE, "n1");
        c.set_meta_attribute("dummy", REMOTE_NODE, "g9");
        c.set_meta_attribute("dummy", REMOTE_ADDR, "192.0.2.9");
        c.set_meta_attribute("prmVMCTL_a", REMOTE_PORT, "x");
        let got = codes(&c);
        assert!(
            got.contains(&("a".into(), "guest-node-bad-port", Level::Error)),
            "{got:?}"
        );
        assert!(
            got.contains(&("t".into(), "guest-node-name-clash", Level::Error)),
            "{got:?}"
        );
        assert!(
            got.contains(&(
                "dummy".into(),
                "guest-node-not-virtualdomain",
                Level::Warning
            )),
            "{got:?}"
        );
        // g9 now has a resource behind it: not stale
        assert!(!got.iter().any(|f| f.1 == "guest-node-stale"), "{got:?}");
        c.set_meta_attribute("prmVMCTL_a", REMOTE_PORT, "3122");
        let got = codes(&c);
        assert!(
            got.contains(&("b".into(), "guest-node-port-duplicate", Level::Error)),
            "{got:?}"
        );
    }

    #[test]
    fn traces_removed() {
        let mut c = cib();
        let removed = remove_traces(&mut c, "a");
        assert_eq!(removed, ["l1", "node status a", "connection history a"]);
        let xml = c.root().to_xml();
        assert!(!xml.contains(r#"node_state id="a""#), "{xml}");
        assert!(xml.contains(r#"node_state id="1""#));
        assert!(xml.contains(r#"id="l2""#));
        let removed = remove_traces(&mut c, "g9");
        assert_eq!(removed, ["node entry g9"]);
    }
}
