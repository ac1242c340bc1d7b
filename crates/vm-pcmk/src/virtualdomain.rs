//! What this project knows about VirtualDomain resources beyond the generic CIB: the id of a
//! guest's resource, and how a guest's stop is made a hard power-off.
//!
//! The guest's resource id ([`guest_resource`]: `prmVMCTL_<domain>`, the original vm-ctl's
//! naming) is shared by vm-ctl, which creates the resource (its `ids` module names every other
//! object after it), and vm-stonithd, which finds the resource of the guest it fences by it.
//!
//! The stock `ocf:heartbeat:VirtualDomain` stops a guest gracefully (and destroys it only when
//! the stop timeout is nearly spent) unless its `force_stop` parameter is on. Guest fencing
//! needs a hard power-off for the stop a fence causes and for no other, and Pacemaker runs a
//! stop with the parameters the resource was *started* with, so the parameter cannot be
//! switched on for one stop. The project therefore ships `ocf:pm-kvm-tools:VirtualDomain`
//! (`agents/ocf/VirtualDomain`), the stock agent whose stop is a destroy on a node where the
//! node attribute `force_stop-<rsc>` is `true` (the attribute the original pm_kvm_tools'
//! patched agent read). vm-stonithd sets it in the same CIB change that stops the guest.

use crate::xml::Element;

/// Prefix of the resource id of every guest vm-ctl manages.
pub const GUEST_RSC_PREFIX: &str = "prmVMCTL_";

/// The resource id of guest (libvirt domain) `dom`.
pub fn guest_resource(dom: &str) -> String {
    format!("{GUEST_RSC_PREFIX}{dom}")
}

/// The domain name of a guest resource id, if it is one.
pub fn guest_of(rsc: &str) -> Option<&str> {
    rsc.strip_prefix(GUEST_RSC_PREFIX).filter(|d| !d.is_empty())
}

/// The provider of the project's VirtualDomain agent.
pub const HARD_STOP_PROVIDER: &str = "pm-kvm-tools";

/// The agent vm-ctl configures for guests, as `class:provider:type`.
pub const HARD_STOP_AGENT: &str = "ocf:pm-kvm-tools:VirtualDomain";

/// The parameter of `ocf:pm-kvm-tools:VirtualDomain` that makes its monitor fail a guest whose
/// own vm-connectd has been silent for this many seconds (0 or absent: off).
pub const LIVENESS_TIMEOUT_PARAM: &str = "liveness_timeout";

/// The node attribute that, set to `true` on a node, makes resource `rsc`'s stop there a hard
/// power-off. Same name as the original tool's.
pub fn force_stop_attr(rsc: &str) -> String {
    format!("force_stop-{rsc}")
}

/// Whether `prim` is a VirtualDomain primitive (any provider: resource-agents ships it as
/// `ocf:heartbeat:VirtualDomain`, the original tool used a patched `ocf:extra:VirtualDomain`,
/// this project ships `ocf:pm-kvm-tools:VirtualDomain`).
pub fn is_virtual_domain(prim: &Element) -> bool {
    prim.name == "primitive"
        && prim.get("class") == Some("ocf")
        && prim.get("type") == Some("VirtualDomain")
}

/// Whether a fence of `prim` is a hard power-off: it uses the project's agent, which honours
/// [`force_stop_attr`] at stop time.
pub fn stops_hard_on_fence(prim: &Element) -> bool {
    is_virtual_domain(prim) && prim.get("provider") == Some(HARD_STOP_PROVIDER)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_the_agents() {
        let p = |provider: &str, kind: &str| {
            Element::new("primitive")
                .attr("class", "ocf")
                .attr("provider", provider)
                .attr("type", kind)
        };
        assert!(stops_hard_on_fence(&p("pm-kvm-tools", "VirtualDomain")));
        assert!(!stops_hard_on_fence(&p("heartbeat", "VirtualDomain")));
        assert!(is_virtual_domain(&p("heartbeat", "VirtualDomain")));
        assert!(is_virtual_domain(&p("extra", "VirtualDomain")));
        assert!(!is_virtual_domain(&p("pacemaker", "Dummy")));
        assert_eq!(force_stop_attr("prmVMCTL_g1"), "force_stop-prmVMCTL_g1");
        assert_eq!(guest_resource("g1"), "prmVMCTL_g1");
        assert_eq!(guest_of("prmVMCTL_g1"), Some("g1"));
        assert_eq!(guest_of("prmVMCTL_"), None);
        assert_eq!(guest_of("vm_g1"), None);
        assert_eq!(
            HARD_STOP_AGENT,
            format!("ocf:{HARD_STOP_PROVIDER}:VirtualDomain")
        );
    }
}
