//! The guest cluster's side of vm-managerd, printed by `vm-ctl stonith client-config`: the
//! ocf:pm-kvm-tools:vm-client clone that mirrors the host node's attributes into the guest
//! nodes' attributes, and an example location rule that keeps a resource off a guest whose
//! host is unhealthy (or does not answer), in crm shell, pcs and cibadmin syntax.
//!
//! Every name in the text has passed [`check_attribute`] / [`crate::ids::check_name`]: nothing
//! needs quoting beyond the double quotes around the attribute list.

use std::fmt::Write as _;

use crate::error::{Error, Result};

/// The vm-client primitive.
pub const PRIMITIVE: &str = "vm-client";
/// Its clone.
pub const CLONE: &str = "clnVmClient";

/// An attribute name as vm-managerd answers it (docs/protocol.md §14.1).
pub fn check_attribute(name: &str) -> Result<()> {
    let b = name.as_bytes();
    let ok = (1..=64).contains(&b.len())
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b':' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::StonithOption {
            option: "--attributes",
            problem: format!(
                "{name:?} is not an attribute name (1-64 of A-Z a-z 0-9 _ . : -, first a letter, digit or _)"
            ),
        })
    }
}

/// What `stonith client-config` prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// The host attributes to mirror (checked, 1..=32).
    pub attributes: Vec<String>,
    /// The guest cluster resource the example rule is for.
    pub resource: String,
    /// The value the example rule keeps the resource away from (e.g. `red`).
    pub bad_value: String,
}

impl ClientConfig {
    fn list(&self) -> String {
        self.attributes.join(" ")
    }

    fn first(&self) -> &str {
        self.attributes.first().map_or("", String::as_str)
    }

    fn rule_id(&self) -> String {
        format!("loc-{}-{}", self.resource, self.first().replace(':', "_"))
    }

    fn header(&self, out: &mut String, (title, load): (&str, &str)) {
        let _ = writeln!(
            out,
            "# ===== {title}: host attributes for the guest cluster ====="
        );
        let _ = writeln!(
            out,
            "# Every guest needs the pm-kvm-tools-guest package (vm-client, vm-connect, vm-connectd);\n\
             # the hosts need vm-managerd exposing {} to these guests (/etc/vm-manager.conf).\n# {load}\n",
            self.list()
        );
    }

    fn rule_comment(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# Example: keep {} off a guest whose host reports {}={} or does not answer\n\
             # (vm-client deletes the attribute when the host has not answered for its grace period).",
            self.resource,
            self.first(),
            self.bad_value
        );
    }

    /// The crm shell section.
    pub fn crm(&self) -> String {
        let mut out = String::new();
        self.header(&mut out, super::section::CRMSH);
        let _ = writeln!(
            out,
            "primitive {PRIMITIVE} ocf:pm-kvm-tools:vm-client \\\n    params attribute_list=\"{}\" \\\n    op monitor interval=10s timeout=20s",
            self.list()
        );
        let _ = writeln!(out, "clone {CLONE} {PRIMITIVE}\n");
        self.rule_comment(&mut out);
        let _ = writeln!(
            out,
            "location {} {} \\\n    rule -inf: not_defined {} or {} eq {}",
            self.rule_id(),
            self.resource,
            self.first(),
            self.first(),
            self.bad_value
        );
        out
    }

    /// The pcs section.
    pub fn pcs(&self) -> String {
        let mut out = String::new();
        self.header(
            &mut out,
            ("pcs", "Run these commands in one guest, as root."),
        );
        let _ = writeln!(
            out,
            "pcs resource create {PRIMITIVE} ocf:pm-kvm-tools:vm-client attribute_list=\"{}\" op monitor interval=10s timeout=20s clone {CLONE}\n",
            self.list()
        );
        self.rule_comment(&mut out);
        let _ = writeln!(
            out,
            "pcs constraint location {} rule id={} score=-INFINITY not_defined {} or {} eq {}",
            self.resource,
            self.rule_id(),
            self.first(),
            self.first(),
            self.bad_value
        );
        out
    }

    /// The cibadmin section: a POSIX shell script of Pacemaker's own tools.
    pub fn cibadmin(&self) -> String {
        let mut out = String::new();
        self.header(&mut out, super::section::CIBADMIN);
        out.push_str("set -e\n");
        let _ = writeln!(
            out,
            "cibadmin --create --scope resources --xml-text '<clone id=\"{CLONE}\"><primitive id=\"{PRIMITIVE}\" class=\"ocf\" provider=\"pm-kvm-tools\" type=\"vm-client\"><instance_attributes id=\"{PRIMITIVE}-instance_attributes\"><nvpair id=\"{PRIMITIVE}-instance_attributes-attribute_list\" name=\"attribute_list\" value=\"{}\"/></instance_attributes><operations><op id=\"{PRIMITIVE}-monitor-10s\" name=\"monitor\" interval=\"10s\" timeout=\"20s\"/></operations></primitive></clone>'\n",
            self.list()
        );
        self.rule_comment(&mut out);
        let id = self.rule_id();
        let a = self.first();
        let _ = writeln!(
            out,
            "cibadmin --create --scope constraints --xml-text '<rsc_location id=\"{id}\" rsc=\"{}\"><rule id=\"{id}-rule\" score=\"-INFINITY\" boolean-op=\"or\"><expression id=\"{id}-rule-expr\" attribute=\"{a}\" operation=\"not_defined\"/><expression id=\"{id}-rule-expr-1\" attribute=\"{a}\" operation=\"eq\" value=\"{}\"/></rule></rsc_location>'",
            self.resource, self.bad_value
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ClientConfig {
        ClientConfig {
            attributes: vec!["default_ping_set".into(), "diskcheck_status".into()],
            resource: "dummy".into(),
            bad_value: "red".into(),
        }
    }

    #[test]
    fn every_syntax_has_the_clone_and_the_rule() {
        let c = config();
        for text in [c.crm(), c.pcs(), c.cibadmin()] {
            assert!(text.contains("clnVmClient"), "{text}");
            assert!(text.contains("default_ping_set diskcheck_status"), "{text}");
            assert!(text.contains("loc-dummy-default_ping_set"), "{text}");
            assert!(text.contains("red"), "{text}");
        }
        assert!(
            c.crm()
                .contains("rule -inf: not_defined default_ping_set or default_ping_set eq red")
        );
    }

    #[test]
    fn attribute_names_are_checked() {
        check_attribute("default_ping_set").unwrap();
        check_attribute("a:b.c-d").unwrap();
        for bad in ["", "-a", "a b", "a'b", "a\"b", &"a".repeat(65)] {
            check_attribute(bad).unwrap_err();
        }
    }
}
