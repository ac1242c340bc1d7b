//! A snapshot of the whole CIB, and what we look up in it.
//!
//! Every command reads the CIB once ([`crate::Pacemaker::snapshot`]), decides on that snapshot,
//! and writes its changes back with [`crate::Pacemaker::patch_if_unchanged`]: the CIB manager
//! accepts the patch only if the CIB's version is still the one we read, so a
//! concurrent writer (another vm-ctl, pcs, crmsh, a status update) is never overwritten; the
//! command is re-evaluated on a fresh snapshot instead ([`crate::Pacemaker::transact`]).

use std::fmt;

use crate::xml::{Element, XmlError};

/// The CIB's version triple. Any change bumps it: configuration changes bump `epoch`,
/// status changes `num_updates`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct CibVersion {
    /// Bumped only by administrators, to force a configuration on a cluster.
    pub admin_epoch: u64,
    /// Bumped by every configuration change.
    pub epoch: u64,
    /// Bumped by every status change, reset by configuration changes.
    pub num_updates: u64,
}

impl fmt::Display for CibVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{}.{}",
            self.admin_epoch, self.epoch, self.num_updates
        )
    }
}

/// The CIB could not be read as one.
#[derive(Debug, thiserror::Error)]
pub enum CibError {
    /// Not XML.
    #[error("The CIB is not well-formed XML")]
    Xml(#[from] XmlError),
    /// XML, but not a CIB.
    #[error("The CIB's root element is <{0}>, expected <cib>")]
    NotACib(String),
}

/// The whole CIB document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cib {
    root: Element,
}

impl Cib {
    /// Parse `cibadmin --query` output (or a CIB file).
    pub fn parse(xml: &str) -> Result<Self, CibError> {
        let root = Element::parse(xml)?;
        if root.name != "cib" {
            return Err(CibError::NotACib(root.name));
        }
        Ok(Self { root })
    }

    /// The document's root element.
    pub fn root(&self) -> &Element {
        &self.root
    }

    /// The document's root element, for edits.
    pub fn root_mut(&mut self) -> &mut Element {
        &mut self.root
    }

    /// The document as XML.
    pub fn to_xml(&self) -> String {
        self.root.to_xml()
    }

    /// The version this snapshot was taken at.
    pub fn version(&self) -> CibVersion {
        let num = |a: &str| {
            self.root
                .get(a)
                .and_then(|v| v.parse().ok())
                .unwrap_or_default()
        };
        CibVersion {
            admin_epoch: num("admin_epoch"),
            epoch: num("epoch"),
            num_updates: num("num_updates"),
        }
    }

    /// A section of `<configuration>` (`resources`, `constraints`, `nodes`, `crm_config`, ...).
    pub fn section(&self, name: &str) -> Option<&Element> {
        self.root.path(&["configuration", name])
    }

    /// A section of `<configuration>`, created if missing, for edits.
    pub fn section_mut(&mut self, name: &str) -> &mut Element {
        self.root
            .find_or_create("configuration")
            .find_or_create(name)
    }

    /// Names (`uname`) of the nodes in the configuration.
    pub fn node_names(&self) -> Vec<&str> {
        self.section("nodes")
            .map(|nodes| {
                nodes
                    .elements()
                    .filter(|n| n.name == "node")
                    .filter_map(|n| n.get("uname"))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The resource (primitive, clone, group, bundle) with id `id`, at any depth.
    pub fn resource(&self, id: &str) -> Option<&Element> {
        self.section("resources")?.find_id(id)
    }

    /// Whether `id` is a clone (or promotable clone / legacy master) resource.
    pub fn is_clone(&self, id: &str) -> bool {
        self.resource(id)
            .is_some_and(|r| r.name == "clone" || r.name == "master")
    }

    /// A cluster property from `crm_config` (the first set that has it), as Pacemaker's tools
    /// would report it; `None` when unset (Pacemaker then applies its default).
    pub fn cluster_property(&self, name: &str) -> Option<&str> {
        self.section("crm_config")?
            .elements()
            .filter(|s| s.name == "cluster_property_set")
            .flat_map(Element::elements)
            .find(|nv| nv.name == "nvpair" && nv.get("name") == Some(name))
            .and_then(|nv| nv.get("value"))
    }

    /// Whether fencing is enabled (`stonith-enabled`, default true).
    pub fn stonith_enabled(&self) -> bool {
        self.cluster_property("stonith-enabled").is_none_or(is_true)
    }

    /// Constraints that name resource `rsc` anywhere (as `rsc`, `with-rsc`, `first`, `then`,
    /// or in a resource set).
    pub fn constraints_of(&self, rsc: &str) -> Vec<&Element> {
        let Some(constraints) = self.section("constraints") else {
            return Vec::new();
        };
        constraints
            .elements()
            .filter(|c| refers_to(c, rsc))
            .collect()
    }

    /// A meta attribute of a resource (first `meta_attributes` set that has it).
    pub fn meta_attribute(&self, rsc: &str, name: &str) -> Option<&str> {
        nvpair_value(self.resource(rsc)?, "meta_attributes", name)
    }

    /// An instance attribute (parameter) of a resource, from its unconditional sets.
    pub fn instance_attribute(&self, rsc: &str, name: &str) -> Option<&str> {
        nvpair_value(self.resource(rsc)?, "instance_attributes", name)
    }

    /// A resource default from `rsc_defaults` (its unconditional `meta_attributes` sets);
    /// `None` when unset (Pacemaker then applies its built-in default).
    pub fn rsc_default(&self, name: &str) -> Option<&str> {
        nvpair_value(self.section("rsc_defaults")?, "meta_attributes", name)
    }

    /// The resource with id `id`, at any depth, for edits.
    pub fn resource_mut(&mut self, id: &str) -> Option<&mut Element> {
        find_id_mut(self.section_mut("resources"), id)
    }

    /// Sets meta attribute `name` of resource `rsc` to `value` in its unconditional
    /// `meta_attributes` (every such nvpair, so no other set overrides it), creating the set
    /// and nvpair with the ids crmsh would give when missing. Returns whether anything
    /// changed (`false` also when the resource does not exist).
    pub fn set_meta_attribute(&mut self, rsc: &str, name: &str, value: &str) -> bool {
        self.resource_mut(rsc)
            .is_some_and(|r| set_nvpair(r, "meta_attributes", name, value))
    }

    /// Removes meta attribute `name` from resource `rsc`'s unconditional sets; returns whether
    /// there was one.
    pub fn remove_meta_attribute(&mut self, rsc: &str, name: &str) -> bool {
        self.resource_mut(rsc)
            .is_some_and(|r| remove_nvpair(r, "meta_attributes", name))
    }

    /// Sets instance attribute (parameter) `name` of resource `rsc`, as
    /// [`Cib::set_meta_attribute`] does for meta attributes.
    pub fn set_instance_attribute(&mut self, rsc: &str, name: &str, value: &str) -> bool {
        self.resource_mut(rsc)
            .is_some_and(|r| set_nvpair(r, "instance_attributes", name, value))
    }

    /// Removes instance attribute `name` from resource `rsc`'s unconditional sets.
    pub fn remove_instance_attribute(&mut self, rsc: &str, name: &str) -> bool {
        self.resource_mut(rsc)
            .is_some_and(|r| remove_nvpair(r, "instance_attributes", name))
    }

    /// A permanent node attribute (the node's unconditional `instance_attributes` in the
    /// `nodes` section; not the transient ones attrd keeps in `status`).
    pub fn node_attribute(&self, node: &str, name: &str) -> Option<&str> {
        nvpair_value(self.node(node)?, "instance_attributes", name)
    }

    /// Sets permanent node attribute `name` of node `node` (by uname); returns whether
    /// anything changed (`false` also when there is no such node).
    pub fn set_node_attribute(&mut self, node: &str, name: &str, value: &str) -> bool {
        self.node_mut(node)
            .is_some_and(|n| set_nvpair(n, "instance_attributes", name, value))
    }

    /// Removes permanent node attribute `name` from node `node`; returns whether it was set.
    pub fn remove_node_attribute(&mut self, node: &str, name: &str) -> bool {
        self.node_mut(node)
            .is_some_and(|n| remove_nvpair(n, "instance_attributes", name))
    }

    /// The `node_state` of node `uname` in the status section (absent for a node that never
    /// joined, and in a CIB file without status).
    pub fn node_state(&self, uname: &str) -> Option<&Element> {
        self.node_states().find(|s| s.get("uname") == Some(uname))
    }

    /// Whether node `uname` is a member of the cluster now: its `node_state` says so for the
    /// membership layer (`in_ccm`) and the controller (`crmd`).
    pub fn node_online(&self, uname: &str) -> bool {
        self.node_state(uname)
            .is_some_and(|s| state_flag_up(s.get("in_ccm")) && state_flag_up(s.get("crmd")))
    }

    /// Every `node_state` of the status section, in document order.
    pub fn node_states(&self) -> impl Iterator<Item = &Element> {
        self.root
            .find("status")
            .into_iter()
            .flat_map(Element::elements)
            .filter(|e| e.name == "node_state")
    }

    /// The transient node attributes of node `uname` (what attrd keeps in its `node_state`'s
    /// `transient_attributes`), as `(name, value)` in document order.
    pub fn transient_attributes(&self, uname: &str) -> Vec<(&str, &str)> {
        self.node_state(uname)
            .and_then(|s| s.find("transient_attributes"))
            .map(|t| {
                t.elements()
                    .filter(|set| set.name == "instance_attributes" && set.find("rule").is_none())
                    .flat_map(Element::elements)
                    .filter(|nv| nv.name == "nvpair")
                    .filter_map(|nv| Some((nv.get("name")?, nv.get("value").unwrap_or(""))))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// One transient node attribute of node `uname`.
    pub fn transient_attribute(&self, uname: &str, name: &str) -> Option<&str> {
        self.transient_attributes(uname)
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
    }

    /// Sets transient node attribute `name` of node `uname` directly in the status section, in
    /// the set and with the ids attrd uses (`status-<node id>`, `status-<node id>-<name>`), so
    /// that it travels in the same CIB change as the configuration edits beside it. attrd does
    /// not know such an attribute (it neither refreshes nor deletes it), and the controller
    /// erases it with the node's other transient attributes when the node leaves the cluster.
    /// Returns whether anything changed; `false` also when the node has no `node_state` (one
    /// is never created here: the controller owns them).
    pub fn set_transient_attribute(&mut self, uname: &str, name: &str, value: &str) -> bool {
        let Some(state) = self.node_state_mut(uname) else {
            return false;
        };
        let Some(node_id) = state.id().map(str::to_owned) else {
            return false;
        };
        if let Some(t) = state.find_mut("transient_attributes") {
            let sets = t.elements_mut().filter(|s| s.name == "instance_attributes");
            if let (true, changed) = update_nvpairs(sets, name, value) {
                return changed;
            }
        }
        let set_id = format!("status-{node_id}");
        let t = state.find_or_create("transient_attributes");
        if t.get("id").is_none() {
            t.set_attr("id", &node_id);
        }
        if !t
            .elements()
            .any(|s| s.name == "instance_attributes" && s.get("id") == Some(set_id.as_str()))
        {
            t.push(Element::new("instance_attributes").attr("id", &set_id));
        }
        if let Some(set) = t
            .elements_mut()
            .find(|s| s.name == "instance_attributes" && s.get("id") == Some(set_id.as_str()))
        {
            set.push(
                Element::new("nvpair")
                    .attr("id", format!("{set_id}-{name}"))
                    .attr("name", name)
                    .attr("value", value),
            );
        }
        true
    }

    /// Removes transient node attribute `name` of node `uname` from the status section;
    /// returns whether it was there.
    pub fn remove_transient_attribute(&mut self, uname: &str, name: &str) -> bool {
        let Some(t) = self
            .node_state_mut(uname)
            .and_then(|s| s.find_mut("transient_attributes"))
        else {
            return false;
        };
        let mut removed = 0;
        for set in t.elements_mut().filter(|s| s.name == "instance_attributes") {
            removed +=
                set.remove_children(|nv| nv.name == "nvpair" && nv.get("name") == Some(name));
        }
        removed > 0
    }

    fn node_state_mut(&mut self, uname: &str) -> Option<&mut Element> {
        self.root
            .find_mut("status")?
            .elements_mut()
            .find(|e| e.name == "node_state" && e.get("uname") == Some(uname))
    }

    fn node(&self, uname: &str) -> Option<&Element> {
        self.section("nodes")?
            .elements()
            .find(|n| n.name == "node" && n.get("uname") == Some(uname))
    }

    fn node_mut(&mut self, uname: &str) -> Option<&mut Element> {
        self.section_mut("nodes")
            .elements_mut()
            .find(|n| n.name == "node" && n.get("uname") == Some(uname))
    }
}

/// A `node_state` flag (`in_ccm`, `crmd`): `true`/`online`/`member` in Pacemaker up to 2.1.6,
/// the time since when it is so (a positive number) in later versions.
fn state_flag_up(value: Option<&str>) -> bool {
    match value {
        Some("true" | "online" | "member" | "yes") => true,
        Some(v) => v.parse::<u64>().is_ok_and(|n| n > 0),
        None => false,
    }
}

/// Pacemaker's idea of a true value.
pub fn is_true(v: &str) -> bool {
    matches!(
        v.to_ascii_lowercase().as_str(),
        "true" | "on" | "yes" | "y" | "1"
    )
}

fn refers_to(constraint: &Element, rsc: &str) -> bool {
    ["rsc", "with-rsc", "first", "then"]
        .iter()
        .any(|a| constraint.get(a) == Some(rsc))
        || constraint
            .descendants()
            .iter()
            .any(|e| e.name == "resource_ref" && e.id() == Some(rsc))
}

fn find_id_mut<'a>(el: &'a mut Element, id: &str) -> Option<&'a mut Element> {
    if el.id() == Some(id) {
        return Some(el);
    }
    el.elements_mut().find_map(|c| find_id_mut(c, id))
}

/// Sets `name` in `owner`'s unconditional `set_name` sets (see [`Cib::set_meta_attribute`]).
fn set_nvpair(owner: &mut Element, set_name: &str, name: &str, value: &str) -> bool {
    let sets = owner
        .elements_mut()
        .filter(|s| s.name == set_name && s.find("rule").is_none());
    if let (true, changed) = update_nvpairs(sets, name, value) {
        return changed;
    }
    // ids as crmsh and crm_attribute make them: `<owner>-<set kind>` for a resource's set,
    // `nodes-<node id>` for a node's, then `<set id>-<name>` for the pair
    let owner_id = owner.id().unwrap_or("pmkt").to_owned();
    let default_set_id = if owner.name == "node" {
        format!("nodes-{owner_id}")
    } else {
        format!("{owner_id}-{set_name}")
    };
    if !owner
        .elements()
        .any(|s| s.name == set_name && s.find("rule").is_none())
    {
        owner.push(Element::new(set_name).attr("id", &default_set_id));
    }
    if let Some(set) = owner
        .elements_mut()
        .find(|s| s.name == set_name && s.find("rule").is_none())
    {
        let id = format!("{}-{name}", set.id().unwrap_or(&default_set_id));
        set.push(
            Element::new("nvpair")
                .attr("id", id)
                .attr("name", name)
                .attr("value", value),
        );
    }
    true
}

/// Sets every nvpair `name` of `sets` to `value`: whether there was one, and whether anything
/// changed.
fn update_nvpairs<'a>(
    sets: impl Iterator<Item = &'a mut Element>,
    name: &str,
    value: &str,
) -> (bool, bool) {
    let (mut found, mut changed) = (false, false);
    for set in sets {
        for nv in set
            .elements_mut()
            .filter(|nv| nv.name == "nvpair" && nv.get("name") == Some(name))
        {
            found = true;
            if nv.get("value") != Some(value) {
                nv.set_attr("value", value);
                changed = true;
            }
        }
    }
    (found, changed)
}

/// Removes `name` from `owner`'s unconditional `set_name` sets, and sets left empty.
fn remove_nvpair(owner: &mut Element, set_name: &str, name: &str) -> bool {
    let mut removed = 0;
    for set in owner
        .elements_mut()
        .filter(|s| s.name == set_name && s.find("rule").is_none())
    {
        removed += set.remove_children(|nv| nv.name == "nvpair" && nv.get("name") == Some(name));
    }
    if removed > 0 {
        owner.remove_children(|s| s.name == set_name && s.elements().next().is_none());
    }
    removed > 0
}

fn nvpair_value<'a>(rsc: &'a Element, set: &str, name: &str) -> Option<&'a str> {
    rsc.elements()
        .filter(|s| s.name == set && s.find("rule").is_none())
        .flat_map(Element::elements)
        .find(|nv| nv.name == "nvpair" && nv.get("name") == Some(name))
        .and_then(|nv| nv.get("value"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CIB: &str = r#"<cib admin_epoch="0" epoch="12" num_updates="3">
  <configuration>
    <crm_config>
      <cluster_property_set id="cib-bootstrap-options">
        <nvpair id="o1" name="stonith-enabled" value="false"/>
      </cluster_property_set>
    </crm_config>
    <nodes><node id="1" uname="n1"/><node id="2" uname="n2"/></nodes>
    <resources>
      <primitive id="vm1" class="ocf" provider="heartbeat" type="VirtualDomain">
        <instance_attributes id="vm1-ia"><nvpair id="vm1-ia-c" name="config" value="/x.xml"/></instance_attributes>
        <meta_attributes id="vm1-ma"><nvpair id="vm1-ma-t" name="target-role" value="Stopped"/></meta_attributes>
      </primitive>
      <clone id="clnPing"><primitive id="ping" class="ocf" provider="pacemaker" type="ping"/></clone>
    </resources>
    <constraints>
      <rsc_location id="l1" rsc="vm1" node="n1" score="200"/>
      <rsc_colocation id="c1" rsc="vm1" with-rsc="clnPing" score="INFINITY"/>
      <rsc_order id="o1" first="clnPing" then="vm1" kind="Optional"/>
      <rsc_order id="o2" first="clnPing" then="vm10" kind="Optional"/>
      <rsc_colocation id="s1" score="INFINITY"><resource_set id="s1-set"><resource_ref id="vm1"/></resource_set></rsc_colocation>
    </constraints>
    <rsc_defaults>
      <meta_attributes id="night"><rule id="night-r" score="INFINITY"><date_expression id="night-d" operation="gt" start="2000-01-01"/></rule><nvpair id="night-s" name="resource-stickiness" value="0"/></meta_attributes>
      <meta_attributes id="rsc-options"><nvpair id="rsc-options-s" name="resource-stickiness" value="100"/></meta_attributes>
    </rsc_defaults>
  </configuration>
  <status/>
</cib>"#;

    #[test]
    fn reads_version_nodes_resources_and_properties() {
        let cib = Cib::parse(CIB).unwrap();
        assert_eq!(
            cib.version(),
            CibVersion {
                admin_epoch: 0,
                epoch: 12,
                num_updates: 3
            }
        );
        assert_eq!(cib.version().to_string(), "0.12.3");
        assert_eq!(cib.node_names(), ["n1", "n2"]);
        assert!(cib.resource("ping").is_some());
        assert!(cib.is_clone("clnPing"));
        assert!(!cib.is_clone("vm1"));
        assert!(!cib.stonith_enabled());
        assert_eq!(cib.meta_attribute("vm1", "target-role"), Some("Stopped"));
        assert_eq!(cib.instance_attribute("vm1", "config"), Some("/x.xml"));
        // a set with a rule applies only sometimes: the unconditional one is the default
        assert_eq!(cib.rsc_default("resource-stickiness"), Some("100"));
        assert_eq!(cib.rsc_default("migration-threshold"), None);
    }

    #[test]
    fn attribute_edits_create_update_and_remove() {
        let mut cib = Cib::parse(CIB).unwrap();
        // meta: update in place, then add a new pair to the existing set
        assert!(cib.set_meta_attribute("vm1", "target-role", "Started"));
        assert!(!cib.set_meta_attribute("vm1", "target-role", "Started"));
        assert!(cib.set_meta_attribute("vm1", "pmkt-x", "1"));
        assert!(cib.root().find_id("vm1-ma-pmkt-x").is_some());
        assert!(cib.remove_meta_attribute("vm1", "pmkt-x"));
        assert!(!cib.remove_meta_attribute("vm1", "pmkt-x"));
        // instance attributes of a nested primitive: set created with crmsh's id
        assert!(cib.set_instance_attribute("ping", "force_stop", "true"));
        assert_eq!(cib.instance_attribute("ping", "force_stop"), Some("true"));
        assert!(
            cib.root()
                .find_id("ping-instance_attributes-force_stop")
                .is_some()
        );
        assert!(cib.remove_instance_attribute("ping", "force_stop"));
        assert!(cib.root().find_id("ping-instance_attributes").is_none());
        // permanent node attributes, ids as crm_attribute makes them
        assert!(cib.set_node_attribute("n2", "force_stop-vm1", "true"));
        assert_eq!(cib.node_attribute("n2", "force_stop-vm1"), Some("true"));
        assert!(cib.root().find_id("nodes-2-force_stop-vm1").is_some());
        assert_eq!(cib.node_attribute("n1", "force_stop-vm1"), None);
        assert!(cib.remove_node_attribute("n2", "force_stop-vm1"));
        assert!(!cib.set_node_attribute("nope", "a", "b"));
        assert!(!cib.set_meta_attribute("nope", "a", "b"));
        // the original document is back, apart from the target-role value
        let mut want = Cib::parse(CIB).unwrap();
        want.set_meta_attribute("vm1", "target-role", "Started");
        assert_eq!(cib, want);
    }

    #[test]
    fn transient_attributes_are_read_and_edited_where_attrd_keeps_them() {
        let mut cib = Cib::parse(
            r#"<cib><configuration><nodes><node id="1" uname="n1"/><node id="2" uname="n2"/><node id="3" uname="n3"/></nodes></configuration>
            <status>
              <node_state id="1" uname="n1"><transient_attributes id="1"><instance_attributes id="status-1">
                <nvpair id="status-1-a" name="a" value="1"/></instance_attributes></transient_attributes></node_state>
              <node_state id="2" uname="n2"/>
            </status></cib>"#,
        )
        .unwrap();
        assert_eq!(cib.transient_attributes("n1"), [("a", "1")]);
        assert_eq!(cib.transient_attribute("n1", "a"), Some("1"));
        assert_eq!(cib.transient_attribute("n2", "a"), None);
        assert_eq!(
            cib.node_states()
                .filter_map(|s| s.get("uname"))
                .collect::<Vec<_>>(),
            ["n1", "n2"]
        );
        // updated in place; added beside attrd's; created with attrd's ids on a bare node_state
        assert!(cib.set_transient_attribute("n1", "a", "2"));
        assert!(!cib.set_transient_attribute("n1", "a", "2"));
        assert!(cib.set_transient_attribute("n1", "b", "x"));
        assert_eq!(cib.transient_attributes("n1"), [("a", "2"), ("b", "x")]);
        assert!(cib.set_transient_attribute("n2", "b", "y"));
        assert_eq!(cib.transient_attribute("n2", "b"), Some("y"));
        assert!(cib.root().find_id("status-2-b").is_some());
        assert_eq!(
            cib.node_state("n2")
                .and_then(|s| s.find("transient_attributes"))
                .and_then(|t| t.get("id")),
            Some("2")
        );
        // never a node_state of our own
        assert!(!cib.set_transient_attribute("n3", "b", "z"));
        assert!(cib.node_state("n3").is_none());
        assert!(cib.remove_transient_attribute("n1", "b"));
        assert!(!cib.remove_transient_attribute("n1", "b"));
        assert!(!cib.remove_transient_attribute("n3", "b"));
        assert_eq!(cib.transient_attributes("n1"), [("a", "2")]);
    }

    #[test]
    fn constraints_of_matches_exact_ids_and_sets() {
        let cib = Cib::parse(CIB).unwrap();
        let ids: Vec<_> = cib
            .constraints_of("vm1")
            .iter()
            .filter_map(|c| c.id())
            .collect();
        assert_eq!(ids, ["l1", "c1", "o1", "s1"]);
    }

    #[test]
    fn stonith_defaults_to_enabled() {
        let cib = Cib::parse("<cib><configuration/></cib>").unwrap();
        assert!(cib.stonith_enabled());
        assert!(matches!(
            Cib::parse("<nodes/>"),
            Err(CibError::NotACib(n)) if n == "nodes"
        ));
    }
}
