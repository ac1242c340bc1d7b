//! The original vm-ctl's naming scheme, kept exactly so that a CIB built by the original tool
//! is managed by ours without migration.
//!
//! | object | id |
//! |---|---|
//! | the guest's VirtualDomain primitive | `prmVMCTL_<dom>` |
//! | preferred-node location | `locVMCTL_<dom>_<node>_ACT` |
//! | node-attribute rule location (pingd, diskd, ...) | `locVMCTL_<dom>_<attr>` |
//! | colocation with a host clone | `colVMCTL_<dom>_<rsc>` |
//! | order after a host clone | `odrVMCTL_<dom>_<rsc>` |
//! | node attribute that makes a stop a hard power-off | `force_stop-prmVMCTL_<dom>` |

// The guest's resource id is shared with vm-stonithd (which finds the resource of the guest it
// fences by it), so its home is vm-pcmk's virtualdomain module: the prefix, the id of a domain
// (`rsc`) and the domain of an id (`dom_of`).
pub use vm_pcmk::virtualdomain::{
    GUEST_RSC_PREFIX as RSC_PREFIX, guest_of as dom_of, guest_resource as rsc,
};

/// Prefixes of the ids of every constraint vm-ctl makes for guest `dom` (preferred-node and
/// rule locations, colocations, orders).
pub fn constraint_prefixes(dom: &str) -> [String; 3] {
    [
        format!("locVMCTL_{dom}_"),
        format!("colVMCTL_{dom}_"),
        format!("odrVMCTL_{dom}_"),
    ]
}

/// The preferred-node location.
pub fn act_location(dom: &str, node: &str) -> String {
    format!("locVMCTL_{dom}_{node}_ACT")
}

/// The node name in a preferred-node location id of `dom`, if `id` is one.
pub fn act_location_node<'a>(dom: &str, id: &'a str) -> Option<&'a str> {
    id.strip_prefix("locVMCTL_")?
        .strip_prefix(dom)?
        .strip_prefix('_')?
        .strip_suffix("_ACT")
        .filter(|n| !n.is_empty())
}

/// A node-attribute rule location.
pub fn attr_location(dom: &str, attr: &str) -> String {
    format!("locVMCTL_{dom}_{attr}")
}

/// A colocation with a host clone.
pub fn colocation(dom: &str, rsc: &str) -> String {
    format!("colVMCTL_{dom}_{rsc}")
}

/// An order after a host clone.
pub fn order(dom: &str, rsc: &str) -> String {
    format!("odrVMCTL_{dom}_{rsc}")
}

pub use vm_pcmk::virtualdomain::force_stop_attr;

/// Pacemaker's temporary "move here" constraint (what `crm_resource --move --node` writes).
pub fn cli_prefer(rsc: &str) -> String {
    format!("cli-prefer-{rsc}")
}

/// Pacemaker's temporary "not here" constraint (what `crm_resource --ban --node` writes).
pub fn cli_ban(rsc: &str, node: &str) -> String {
    format!("cli-ban-{rsc}-on-{node}")
}

/// Whether `id` is a temporary move constraint of `rsc` (cli-prefer or any cli-ban).
pub fn is_move_constraint(rsc: &str, id: &str) -> bool {
    id == cli_prefer(rsc)
        || id
            .strip_prefix(&format!("cli-ban-{rsc}-on-"))
            .is_some_and(|n| !n.is_empty())
}

/// Why a name cannot be used in CIB ids.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{what} name {name:?} cannot be used: {reason}; use letters, digits, '_', '-' and '.' \
     (at most {MAX_NAME_LEN} characters)"
)]
pub struct BadName {
    /// "domain" or "node".
    pub what: &'static str,
    /// The rejected name (as given).
    pub name: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Longest domain or node name accepted (libvirt and corosync allow more, but a name this long
/// is certainly a mistake, and ids built from it must stay readable).
pub const MAX_NAME_LEN: usize = 64;

/// Check a domain or node name: it becomes part of XML ids (`xsd:ID`), so only letters,
/// digits, `_`, `-` and `.`; it is never given to a shell, but rejecting everything else also
/// keeps such names out of every other tool's command line.
pub fn check_name(what: &'static str, name: &str) -> Result<(), BadName> {
    let bad = |reason| {
        Err(BadName {
            what,
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > MAX_NAME_LEN {
        return bad("it is too long");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return bad("it contains characters that are not allowed");
    }
    if name.starts_with(['-', '.']) {
        return bad("it starts with '-' or '.'");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_original_scheme() {
        assert_eq!(rsc("g1"), "prmVMCTL_g1");
        assert_eq!(act_location("g1", "host1"), "locVMCTL_g1_host1_ACT");
        assert_eq!(
            attr_location("g1", "default_ping_set"),
            "locVMCTL_g1_default_ping_set"
        );
        assert_eq!(colocation("g1", "clnPingd"), "colVMCTL_g1_clnPingd");
        assert_eq!(order("g1", "clnPingd"), "odrVMCTL_g1_clnPingd");
        assert_eq!(force_stop_attr("prmVMCTL_g1"), "force_stop-prmVMCTL_g1");
        assert_eq!(dom_of("prmVMCTL_g1"), Some("g1"));
        assert_eq!(dom_of("prmVMCTL_"), None);
        assert_eq!(dom_of("vm-g1"), None);
    }

    #[test]
    fn every_constraint_id_has_one_of_the_guests_prefixes() {
        let ours = constraint_prefixes("g1");
        for id in [
            act_location("g1", "n1"),
            attr_location("g1", "pingd"),
            colocation("g1", "clnPingd"),
            order("g1", "clnPingd"),
        ] {
            assert!(ours.iter().any(|p| id.starts_with(p.as_str())), "{id}");
        }
        assert!(
            !ours
                .iter()
                .any(|p| act_location("g10", "n1").starts_with(p.as_str()))
        );
    }

    #[test]
    fn act_location_node_is_exact() {
        assert_eq!(act_location_node("g1", "locVMCTL_g1_n2_ACT"), Some("n2"));
        assert_eq!(act_location_node("g1", "locVMCTL_g10_n2_ACT"), None);
        assert_eq!(act_location_node("g1", "locVMCTL_g1__ACT"), None);
        assert_eq!(
            act_location_node("g1", "locVMCTL_g1_default_ping_set"),
            None
        );
    }

    #[test]
    fn move_constraints() {
        assert!(is_move_constraint("r", "cli-prefer-r"));
        assert!(is_move_constraint("r", "cli-ban-r-on-n1"));
        assert!(!is_move_constraint("r", "cli-ban-r-on-"));
        assert!(!is_move_constraint("r", "cli-prefer-r2"));
        assert_eq!(cli_ban("r", "n1"), "cli-ban-r-on-n1");
    }

    #[test]
    fn names_that_are_refused() {
        for bad in [
            "",
            "a b",
            "g1;rm -rf /",
            "$(id)",
            "`id`",
            "a/b",
            "a:b",
            "-x",
            ".x",
            "ä",
        ] {
            check_name("domain", bad).unwrap_err();
        }
        check_name("domain", &"x".repeat(65)).unwrap_err();
        for good in ["g1", "web-01.example", "DB_2", "1vm"] {
            check_name("domain", good).unwrap();
        }
        let err = check_name("node", "a b").unwrap_err().to_string();
        assert!(err.starts_with("node name \"a b\" cannot be used"), "{err}");
    }
}
