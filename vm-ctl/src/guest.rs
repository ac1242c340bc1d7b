//! Looking up and editing one guest's objects in a CIB snapshot.
//!
//! A guest `<dom>` is managed by vm-ctl when the CIB has the primitive `prmVMCTL_<dom>`; its
//! objects are that primitive and every constraint naming it (see [`crate::ids`]).

use vm_pcmk::Cib;
use vm_pcmk::xml::Element;

use crate::error::{Error, Result};
use crate::ids;

/// The guest's primitive, or [`Error::NotConfigured`].
pub fn primitive<'a>(cib: &'a Cib, dom: &str) -> Result<&'a Element> {
    let rsc = ids::rsc(dom);
    cib.resource(&rsc)
        .filter(|e| e.name == "primitive")
        .ok_or(Error::NotConfigured {
            dom: dom.to_owned(),
            rsc,
        })
}

/// Every guest vm-ctl manages: `(domain, primitive)`, in CIB order.
pub fn all(cib: &Cib) -> Vec<(String, &Element)> {
    cib.section("resources")
        .map(|r| {
            r.descendants()
                .into_iter()
                .filter(|e| e.name == "primitive")
                .filter_map(|e| Some((ids::dom_of(e.id()?)?.to_owned(), e)))
                .collect()
        })
        .unwrap_or_default()
}

/// The preferred-node location of the guest: `(constraint, node)`. Taken from the constraint's
/// `node` attribute (ids like `locVMCTL_<dom>_<node>_ACT` are ambiguous when names contain
/// `_`).
pub fn preferred<'a>(cib: &'a Cib, dom: &str) -> Option<(&'a Element, &'a str)> {
    let rsc = ids::rsc(dom);
    cib.constraints_of(&rsc).into_iter().find_map(|c| {
        let id = c.id()?;
        (c.name == "rsc_location"
            && c.get("rsc") == Some(rsc.as_str())
            && ids::act_location_node(dom, id).is_some())
        .then_some(())?;
        Some((c, c.get("node")?))
    })
}

/// Whether the guest has temporary move constraints (cli-prefer / cli-ban).
pub fn has_move_constraint(cib: &Cib, dom: &str) -> bool {
    let rsc = ids::rsc(dom);
    cib.constraints_of(&rsc)
        .iter()
        .any(|c| c.id().is_some_and(|id| ids::is_move_constraint(&rsc, id)))
}

/// `on`, `off` or `NONE`: the guest's allow-migrate meta attribute, as the original's list
/// showed it.
pub fn migration(cib: &Cib, dom: &str) -> &'static str {
    match cib.meta_attribute(&ids::rsc(dom), "allow-migrate") {
        Some(v) if vm_pcmk::cib::is_true(v) => "on",
        Some(_) => "off",
        None => "NONE",
    }
}

/// Set `rsc`'s target-role to `role` in its unconditional meta attributes; returns whether
/// anything changed.
pub fn set_target_role(cib: &mut Cib, rsc: &str, role: &str) -> bool {
    cib.set_meta_attribute(rsc, "target-role", role)
}

/// Remove resource `rsc` (wherever it sits under `resources`) and every constraint naming it:
/// simple constraints go entirely; in resource-set constraints only its `resource_ref` goes
/// (and sets or constraints left empty). Returns the ids removed.
pub fn remove_with_constraints(cib: &mut Cib, rsc: &str) -> Vec<String> {
    let mut removed = Vec::new();
    remove_descendant(cib.section_mut("resources"), rsc, &mut removed);
    let constraints = cib.section_mut("constraints");
    constraints.remove_children(|c| {
        let simple = ["rsc", "with-rsc", "first", "then"]
            .iter()
            .any(|a| c.get(a) == Some(rsc));
        if simple {
            removed.push(c.id().unwrap_or("").to_owned());
        }
        simple
    });
    let mut emptied = Vec::new();
    for c in constraints.elements_mut() {
        let mut touched = false;
        for set in c.elements_mut().filter(|s| s.name == "resource_set") {
            let n = set.remove_children(|r| r.name == "resource_ref" && r.id() == Some(rsc));
            touched |= n > 0;
        }
        if touched {
            c.remove_children(|s| s.name == "resource_set" && s.elements().next().is_none());
            if !c.elements().any(|s| s.name == "resource_set") {
                emptied.push(c.id().unwrap_or("").to_owned());
            }
        }
    }
    if !emptied.is_empty() {
        constraints.remove_children(|c| c.id().is_some_and(|id| emptied.iter().any(|e| e == id)));
        removed.extend(emptied);
    }
    removed
}

fn remove_descendant(el: &mut Element, id: &str, removed: &mut Vec<String>) {
    let before = el.remove_children(|c| c.id() == Some(id));
    if before > 0 {
        removed.push(id.to_owned());
        return;
    }
    for child in el.elements_mut() {
        remove_descendant(child, id, removed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CIB: &str = r#"<cib admin_epoch="0" epoch="1" num_updates="0"><configuration>
  <resources>
    <primitive id="prmVMCTL_g1" class="ocf" provider="heartbeat" type="VirtualDomain">
      <meta_attributes id="prmVMCTL_g1-meta_attributes">
        <nvpair id="prmVMCTL_g1-meta_attributes-allow-migrate" name="allow-migrate" value="true"/>
        <nvpair id="prmVMCTL_g1-meta_attributes-target-role" name="target-role" value="Stopped"/>
      </meta_attributes>
    </primitive>
    <primitive id="prmVMCTL_g2" class="ocf" provider="heartbeat" type="VirtualDomain"/>
    <primitive id="other" class="ocf" provider="pacemaker" type="Dummy"/>
  </resources>
  <constraints>
    <rsc_location id="locVMCTL_g1_n_1_ACT" rsc="prmVMCTL_g1" node="n_1" score="200"/>
    <rsc_location id="cli-prefer-prmVMCTL_g1" rsc="prmVMCTL_g1" role="Started" node="n2" score="INFINITY"/>
    <rsc_colocation id="set1" score="INFINITY">
      <resource_set id="set1-a"><resource_ref id="prmVMCTL_g1"/><resource_ref id="other"/></resource_set>
    </rsc_colocation>
    <rsc_order id="set2" kind="Optional">
      <resource_set id="set2-a"><resource_ref id="prmVMCTL_g1"/></resource_set>
    </rsc_order>
    <rsc_location id="locVMCTL_g2_n1_ACT" rsc="prmVMCTL_g2" node="n1" score="200"/>
  </constraints>
</configuration></cib>"#;

    #[test]
    fn lookups() {
        let cib = Cib::parse(CIB).unwrap();
        primitive(&cib, "g1").unwrap();
        assert!(matches!(
            primitive(&cib, "g3"),
            Err(Error::NotConfigured { .. })
        ));
        let doms: Vec<_> = all(&cib).into_iter().map(|(d, _)| d).collect();
        assert_eq!(doms, ["g1", "g2"]);
        assert_eq!(preferred(&cib, "g1").map(|(_, n)| n), Some("n_1"));
        assert!(has_move_constraint(&cib, "g1"));
        assert!(!has_move_constraint(&cib, "g2"));
        assert_eq!(migration(&cib, "g1"), "on");
        assert_eq!(migration(&cib, "g2"), "NONE");
    }

    #[test]
    fn target_role_is_updated_or_created() {
        let mut cib = Cib::parse(CIB).unwrap();
        assert!(set_target_role(&mut cib, "prmVMCTL_g1", "Started"));
        assert!(!set_target_role(&mut cib, "prmVMCTL_g1", "Started"));
        assert_eq!(
            cib.meta_attribute("prmVMCTL_g1", "target-role"),
            Some("Started")
        );
        assert!(set_target_role(&mut cib, "prmVMCTL_g2", "Started"));
        assert_eq!(
            cib.meta_attribute("prmVMCTL_g2", "target-role"),
            Some("Started")
        );
        assert!(
            cib.resource("prmVMCTL_g2")
                .unwrap()
                .find_id("prmVMCTL_g2-meta_attributes-target-role")
                .is_some()
        );
    }

    #[test]
    fn removal_takes_constraints_and_set_members() {
        let mut cib = Cib::parse(CIB).unwrap();
        let mut removed = remove_with_constraints(&mut cib, "prmVMCTL_g1");
        removed.sort();
        assert_eq!(
            removed,
            [
                "cli-prefer-prmVMCTL_g1",
                "locVMCTL_g1_n_1_ACT",
                "prmVMCTL_g1",
                "set2"
            ]
        );
        assert!(cib.resource("prmVMCTL_g1").is_none());
        assert!(cib.resource("prmVMCTL_g2").is_some());
        let set1 = cib.section("constraints").unwrap().find_id("set1").unwrap();
        assert_eq!(
            set1.descendants()
                .iter()
                .filter(|e| e.name == "resource_ref")
                .count(),
            1
        );
        assert!(
            cib.section("constraints")
                .unwrap()
                .find_id("locVMCTL_g2_n1_ACT")
                .is_some()
        );
    }
}
