//! What this project knows about `ocf:heartbeat:VirtualDomain` resources beyond the generic
//! CIB: how a guest's stop is made a hard power-off with the stock agent.
//!
//! The stock agent's `force_stop` parameter makes every stop a `virsh destroy`. Guest fencing
//! needs that only for the stop a fence causes, so the parameter comes from a rule-based set
//! that applies on nodes whose node attribute `force_stop-<rsc>` is `true` (the attribute the
//! original pm_kvm_tools' patched agent read). vm-ctl adds the set to every guest it creates;
//! vm-stonithd sets the attribute in the same CIB change that stops the guest.

use crate::xml::Element;

/// The stock agent's parameter that makes a stop a hard power-off.
pub const FORCE_STOP_PARAM: &str = "force_stop";

/// The node attribute that, set to `true` on a node, makes resource `rsc`'s stop there a hard
/// power-off. Same name as the original tool's.
pub fn force_stop_attr(rsc: &str) -> String {
    format!("force_stop-{rsc}")
}

/// Whether `prim` is a VirtualDomain primitive (any provider: resource-agents ships it as
/// `ocf:heartbeat:VirtualDomain`, the original tool used a patched `ocf:extra:VirtualDomain`).
pub fn is_virtual_domain(prim: &Element) -> bool {
    prim.name == "primitive"
        && prim.get("class") == Some("ocf")
        && prim.get("type") == Some("VirtualDomain")
}

/// Id crmsh gives the parameter set below: the second `params` block of the primitive (the
/// first is `<rsc>-instance_attributes`), so crm text and XML round-trip exactly.
pub fn force_stop_set_id(rsc: &str) -> String {
    format!("{rsc}-instance_attributes-0")
}

/// The parameter set that makes a stop on a node a hard power-off when that node has
/// `force_stop-<rsc>=true` (see the module doc). In crm shell syntax:
/// `params 100: rule force_stop-<rsc> eq true force_stop=true`.
pub fn force_stop_params(rsc: &str) -> Element {
    let set = force_stop_set_id(rsc);
    let rule = format!("{set}-rule");
    Element::new("instance_attributes")
        .attr("score", "100")
        .attr("id", &set)
        .child(
            Element::new("rule")
                .attr("score", "INFINITY")
                .attr("id", &rule)
                .child(
                    Element::new("expression")
                        .attr("operation", "eq")
                        .attr("attribute", force_stop_attr(rsc))
                        .attr("value", "true")
                        .attr("id", format!("{rule}-expression")),
                ),
        )
        .child(nvpair(&set, FORCE_STOP_PARAM, "true"))
}

/// Whether `set` (a child of primitive `rsc`) is the force_stop parameter set, whatever its
/// ids: a rule on `force_stop-<rsc> eq true` that sets `force_stop=true`.
pub fn is_force_stop_set(rsc: &str, set: &Element) -> bool {
    let attr = force_stop_attr(rsc);
    set.name == "instance_attributes"
        && set.find("rule").is_some_and(|r| {
            r.elements().any(|e| {
                e.name == "expression"
                    && e.get("attribute") == Some(attr.as_str())
                    && e.get("operation") == Some("eq")
                    && e.get("value") == Some("true")
            })
        })
        && set.elements().any(|nv| {
            nv.name == "nvpair"
                && nv.get("name") == Some(FORCE_STOP_PARAM)
                && nv.get("value").is_some_and(crate::cib::is_true)
        })
}

/// Whether primitive `prim` has the force_stop parameter set.
pub fn has_force_stop(prim: &Element) -> bool {
    prim.id()
        .is_some_and(|rsc| prim.elements().any(|s| is_force_stop_set(rsc, s)))
}

fn nvpair(set: &str, name: &str, value: &str) -> Element {
    Element::new("nvpair")
        .attr("name", name)
        .attr("value", value)
        .attr("id", format!("{set}-{name}"))
}
