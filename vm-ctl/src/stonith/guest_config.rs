//! The fence configuration of a guest cluster (Pacemaker inside the guests), printed by
//! `vm-ctl stonith guest-config` in crm shell and in pcs syntax.
//!
//! The levels follow the original's appendix B, as a fencing topology per guest node:
//!
//! 1. (optional, printed commented out) `stonith:external/stonith-helper` from pm_extras: it
//!    reports the fence as done when the target is already dead, and fails otherwise so that
//!    the next level fences;
//! 2. `stonith:fence_vmstonith`, which asks the host cluster's vm-stonithd (or, with
//!    `--legacy`, `stonith:external/vm-stonith` with the original's encrypted resource ids);
//! 3. `stonith:meatware` (cluster-glue): an operator confirms with `meatclient -c NODE`.
//!
//! Comments never end in a backslash: crmsh would join the next line to them (and it keeps
//! comments in the CIB, next to the objects they precede).
//!
//! Every name in the text has passed [`vm_seal::Name`] (and has no `:`), the key file path is
//! checked by [`check_key_file`], and tokens are base64: nothing needs quoting beyond the double
//! quotes around lists, in crmsh and in a POSIX shell alike.

use std::fmt::Write as _;

use vm_seal::Name;

use super::Member;
use crate::error::{Error, Result};

/// The fence_vmstonith device.
pub const DEVICE: &str = "fence-vmstonith";
/// The external/vm-stonith device (`--legacy`).
pub const LEGACY_DEVICE: &str = "fence-vm-stonith";
/// The optional stonith-helper device (level 1).
pub const HELPER_DEVICE: &str = "fence-helper";
/// The meatware device (level 3).
pub const MEATWARE_DEVICE: &str = "fence-meatware";
/// How long an operator has to confirm a meatware fence, in seconds.
pub const MEATWARE_TIMEOUT_SECS: u64 = 600;
/// Pacemaker's margin over the agent's own timeout, in seconds.
pub const TIMEOUT_MARGIN_SECS: u64 = 20;

/// Refuse a key file path that would need quoting in crmsh or a shell: absolute, and only
/// `[A-Za-z0-9._+@:/-]`.
pub fn check_key_file(path: &str) -> Result<()> {
    let ok = path.starts_with('/')
        && path.len() <= 4096
        && path.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '@' | ':' | '/' | '-')
        });
    if ok {
        Ok(())
    } else {
        Err(Error::StonithOption {
            option: "--key-file",
            problem: format!(
                "{path:?} must be an absolute path of letters, digits and ._+@:/- only"
            ),
        })
    }
}

/// The second level's device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Device {
    /// fence_vmstonith with the guest cluster's key.
    Sealed {
        /// The key file in the guests.
        key_file: String,
    },
    /// external/vm-stonith with one legacy token per member (same order as the members).
    Legacy {
        /// The tokens.
        tokens: Vec<String>,
    },
}

/// Everything `guest-config` prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestConfig {
    /// The guest cluster.
    pub cluster: Name,
    /// Its guests (names already checked with [`super::check_mappable`]).
    pub members: Vec<Member>,
    /// fence_vmstonith's `timeout`, in seconds.
    pub timeout: u64,
    /// The level-2 device.
    pub device: Device,
}

/// `pcmk_host_map`: `node1:dom1;node2:dom2` (the fencer passes the domain as the plug).
pub fn host_map(members: &[Member]) -> String {
    members
        .iter()
        .map(|m| format!("{}:{}", m.node, m.domain))
        .collect::<Vec<_>>()
        .join(";")
}

/// external/vm-stonith's `hostlist`: `node1:TOKEN1 node2:TOKEN2`.
pub fn legacy_hostlist(members: &[Member], tokens: &[String]) -> String {
    members
        .iter()
        .zip(tokens)
        .map(|(m, t)| format!("{}:{t}", m.node))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A `stonith token` line: `DOMAIN:TOKEN`.
pub fn token_entry(domain: &str, token: &str) -> String {
    format!("{domain}:{token}")
}

/// A device parameter. `quoted` values are written in double quotes in crmsh and pcs (lists,
/// maps, paths), the others bare.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Param {
    name: &'static str,
    value: String,
    quoted: bool,
}

impl Param {
    fn quoted(name: &'static str, value: impl Into<String>) -> Self {
        Param {
            name,
            value: value.into(),
            quoted: true,
        }
    }

    fn bare(name: &'static str, value: impl Into<String>) -> Self {
        Param {
            name,
            value: value.into(),
            quoted: false,
        }
    }
}

/// `name=value ...` as crmsh and pcs take them.
fn words(params: &[Param]) -> String {
    params
        .iter()
        .map(|p| {
            if p.quoted {
                format!("{}=\"{}\"", p.name, p.value)
            } else {
                format!("{}={}", p.name, p.value)
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

impl GuestConfig {
    fn node_list(&self) -> String {
        self.members
            .iter()
            .map(|m| m.node.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn device_id(&self) -> &'static str {
        match self.device {
            Device::Sealed { .. } => DEVICE,
            Device::Legacy { .. } => LEGACY_DEVICE,
        }
    }

    /// Pacemaker's timeouts for the level-2 device: the agent's own plus a margin.
    fn pcmk_timeout(&self) -> u64 {
        self.timeout + TIMEOUT_MARGIN_SECS
    }

    /// (agent, parameters) of the level-2 device.
    fn device_params(&self) -> (&'static str, Vec<Param>) {
        let t = self.pcmk_timeout();
        let mut params = Vec::new();
        let agent = match &self.device {
            Device::Sealed { key_file } => {
                params.push(Param::quoted("pcmk_host_map", host_map(&self.members)));
                params.push(Param::bare("pcmk_host_check", "static-list"));
                params.push(Param::quoted("key_file", key_file.as_str()));
                "fence_vmstonith"
            }
            Device::Legacy { tokens } => {
                params.push(Param::quoted(
                    "hostlist",
                    legacy_hostlist(&self.members, tokens),
                ));
                "external/vm-stonith"
            }
        };
        params.push(Param::bare("timeout", self.timeout.to_string()));
        params.push(Param::bare("pcmk_reboot_timeout", format!("{t}s")));
        params.push(Param::bare("pcmk_off_timeout", format!("{t}s")));
        (agent, params)
    }

    fn meatware_params(&self) -> Vec<Param> {
        vec![
            Param::quoted("hostlist", self.node_list()),
            Param::bare("pcmk_reboot_timeout", format!("{MEATWARE_TIMEOUT_SECS}s")),
            Param::bare("pcmk_off_timeout", format!("{MEATWARE_TIMEOUT_SECS}s")),
        ]
    }

    fn helper_params(&self) -> Vec<Param> {
        vec![
            Param::quoted("hostlist", self.node_list()),
            Param::quoted("dead_check_target", "ADDRESSES-OF-THE-GUESTS"),
        ]
    }

    fn header(&self, out: &mut String, (title, load): (&str, &str)) {
        let _ = writeln!(
            out,
            "# ===== {title}: fencing of guest cluster {} =====",
            self.cluster
        );
        let _ = writeln!(out, "# Guests (node name = libvirt domain):");
        for m in &self.members {
            let _ = writeln!(out, "#   {} = {}", m.node, m.domain);
        }
        let _ = writeln!(out, "# {load}");
        match &self.device {
            Device::Sealed { key_file } => {
                let _ = writeln!(
                    out,
                    "# Every guest needs fence_vmstonith, the cluster's key as {key_file}\n# \
                     (vm-ctl stonith keygen {} on a host node) and cluster-glue (meatware).",
                    self.cluster
                );
            }
            Device::Legacy { .. } => {
                let _ = writeln!(
                    out,
                    "# Legacy mode, for migrating from pm_kvm_tools: the hostlist carries the \
                     original's encrypted\n# resource ids, which give no real protection. The \
                     host's vm-stonithd must accept them\n# ([legacy] enabled = true, and \
                     legacy = true in this cluster's [[cluster]] table). Move to\n# \
                     fence_vmstonith (vm-ctl stonith guest-config without --legacy) when you can."
                );
            }
        }
        out.push('\n');
    }

    fn level_comments(out: &mut String, helper: &str) {
        let _ = writeln!(
            out,
            "# Level 1 (optional): external/stonith-helper from pm_extras (Linux-HA Japan) checks \
             whether\n# the target is already dead (no answer from dead_check_target) and then \
             reports the fence as\n# done without shooting; otherwise it fails and the next level \
             fences. To use it, install\n# pm_extras in every guest and uncomment:"
        );
        out.push_str(helper);
        out.push('\n');
    }

    fn device_comment(&self, out: &mut String) {
        let t = self.pcmk_timeout();
        let what = match self.device {
            Device::Sealed { .. } => {
                "fence_vmstonith asks the host cluster (vm-stonithd) to power the guest off (and on)"
            }
            Device::Legacy { .. } => {
                "external/vm-stonith sends the original's request with the encrypted resource id"
            }
        };
        let _ = writeln!(
            out,
            "# Level 2: {what};\n# Pacemaker waits {t} s (the agent's timeout of {} s plus {TIMEOUT_MARGIN_SECS} s).",
            self.timeout
        );
        if self.members.len() == 2 {
            let _ = writeln!(
                out,
                "# Two guests: add pcmk_delay_max=15s to this device so that, when they lose each \
                 other,\n# they do not ask to fence each other at the same moment."
            );
        }
    }

    fn meatware_comment(out: &mut String) {
        let _ = writeln!(
            out,
            "# Level 3: meatware (cluster-glue) waits, at most {MEATWARE_TIMEOUT_SECS} s, for an \
             operator who has made sure the\n# guest is off and confirms it on a surviving node \
             with: meatclient -c NODE"
        );
    }

    fn property_comment(out: &mut String) {
        let _ = writeln!(
            out,
            "# Fencing must be on; stonith-timeout is the default for devices without their own \
             timeouts\n# (the fencer adds up the levels' timeouts for a topology)."
        );
    }

    /// The crm shell section (for `crm configure load update FILE`).
    pub fn crm(&self) -> String {
        let mut out = String::new();
        self.header(&mut out, super::section::CRMSH);
        let monitor = |interval: &str, timeout: u64| {
            format!("    op monitor interval={interval} timeout={timeout}s")
        };
        let helper = format!(
            "# primitive {HELPER_DEVICE} stonith:external/stonith-helper params {} op monitor interval=3600s timeout=60s\n",
            words(&self.helper_params()),
        );
        Self::level_comments(&mut out, &helper);
        self.device_comment(&mut out);
        let (agent, params) = self.device_params();
        let id = self.device_id();
        let _ = writeln!(out, "primitive {id} stonith:{agent} \\");
        let _ = writeln!(out, "    params {} \\", words(&params));
        let _ = writeln!(out, "{}\n", monitor("60s", self.pcmk_timeout()));
        Self::meatware_comment(&mut out);
        let _ = writeln!(out, "primitive {MEATWARE_DEVICE} stonith:meatware \\");
        let _ = writeln!(out, "    params {} \\", words(&self.meatware_params()));
        let _ = writeln!(out, "{}\n", monitor("3600s", 60));
        let _ = writeln!(
            out,
            "# The levels of each guest node, in order (crmsh numbers them from 1). With the \
             helper:\n#   NODE: {HELPER_DEVICE} {id} {MEATWARE_DEVICE}"
        );
        let _ = writeln!(out, "fencing_topology \\");
        let n = self.members.len();
        for (i, m) in self.members.iter().enumerate() {
            let cont = if i + 1 < n { " \\" } else { "" };
            let _ = writeln!(out, "    {}: {id} {MEATWARE_DEVICE}{cont}", m.node);
        }
        out.push('\n');
        Self::property_comment(&mut out);
        let _ = writeln!(
            out,
            "property stonith-enabled=true stonith-timeout={}s",
            self.pcmk_timeout()
        );
        out
    }

    /// The pcs section (commands to run in one guest).
    pub fn pcs(&self) -> String {
        let mut out = String::new();
        self.header(
            &mut out,
            (
                "pcs",
                "Run these commands in one guest, as root (pcs refuses agents it cannot find: install them first).",
            ),
        );
        let helper = format!(
            "# pcs stonith create {HELPER_DEVICE} external/stonith-helper {} op monitor interval=3600s timeout=60s\n{}",
            words(&self.helper_params()),
            self.members
                .iter()
                .map(|m| format!("# pcs stonith level add 1 {} {HELPER_DEVICE}\n", m.node))
                .collect::<String>()
        );
        Self::level_comments(&mut out, &helper);
        self.device_comment(&mut out);
        let (agent, params) = self.device_params();
        let id = self.device_id();
        let t = self.pcmk_timeout();
        let _ = writeln!(
            out,
            "pcs stonith create {id} {agent} {} op monitor interval=60s timeout={t}s\n",
            words(&params)
        );
        Self::meatware_comment(&mut out);
        let _ = writeln!(
            out,
            "pcs stonith create {MEATWARE_DEVICE} meatware {} op monitor interval=3600s timeout=60s\n",
            words(&self.meatware_params())
        );
        let _ = writeln!(out, "# The levels of each guest node.");
        for m in &self.members {
            let _ = writeln!(out, "pcs stonith level add 2 {} {id}", m.node);
            let _ = writeln!(out, "pcs stonith level add 3 {} {MEATWARE_DEVICE}", m.node);
        }
        out.push('\n');
        Self::property_comment(&mut out);
        let _ = writeln!(
            out,
            "pcs property set stonith-enabled=true stonith-timeout={t}s"
        );
        out
    }
    /// The cibadmin section: a POSIX shell script of Pacemaker's own tools, for guests
    /// without crmsh or pcs. Single quotes around the XML are safe: no value contains one.
    pub fn cibadmin(&self) -> String {
        let mut out = String::new();
        self.header(&mut out, super::section::CIBADMIN);
        let helper = format!(
            "# cibadmin --create --scope resources --xml-text '{}'\n",
            primitive_xml(
                HELPER_DEVICE,
                "external/stonith-helper",
                &self.helper_params(),
                ("3600s", 60)
            )
        );
        Self::level_comments(&mut out, &helper);
        out.push_str("set -e\n");
        self.device_comment(&mut out);
        let (agent, params) = self.device_params();
        let id = self.device_id();
        let _ = writeln!(
            out,
            "cibadmin --create --scope resources --xml-text '{}'\n",
            primitive_xml(id, agent, &params, ("60s", self.pcmk_timeout()))
        );
        Self::meatware_comment(&mut out);
        let _ = writeln!(
            out,
            "cibadmin --create --scope resources --xml-text '{}'\n",
            primitive_xml(
                MEATWARE_DEVICE,
                "meatware",
                &self.meatware_params(),
                ("3600s", 60)
            )
        );
        let _ = writeln!(
            out,
            "# The levels of each guest node (with the helper: it at index 1, the others after it)."
        );
        let mut topology = String::from("<fencing-topology>");
        let mut seen = std::collections::HashSet::new();
        for (pos, m) in self.members.iter().enumerate() {
            // an XML ID allows neither '+' nor '@', which node names may have
            let mut tag: String = m
                .node
                .as_str()
                .chars()
                .map(|c| if c == '+' || c == '@' { '_' } else { c })
                .collect();
            if !seen.insert(tag.clone()) {
                tag = format!("{tag}-{pos}");
            }
            for (index, device) in [(1, id), (2, MEATWARE_DEVICE)] {
                let _ = write!(
                    topology,
                    "<fencing-level id=\"fl-{tag}-{index}\" target=\"{}\" index=\"{index}\" devices=\"{device}\"/>",
                    xml_attr(m.node.as_str())
                );
            }
        }
        topology.push_str("</fencing-topology>");
        let _ = writeln!(
            out,
            "cibadmin --create --scope configuration --xml-text '{topology}'\n"
        );
        Self::property_comment(&mut out);
        let _ = writeln!(
            out,
            "crm_attribute --type crm_config --name stonith-timeout --update {}s",
            self.pcmk_timeout()
        );
        let _ = writeln!(
            out,
            "crm_attribute --type crm_config --name stonith-enabled --update true"
        );
        out
    }
}

/// `value` as XML attribute text. The names and paths in it are already restricted to
/// characters that need no escaping; this keeps the XML well-formed regardless.
fn xml_attr(value: &str) -> String {
    vm_common::xml::escape(value, true)
}

/// A stonith primitive as CIB XML.
fn primitive_xml(id: &str, agent: &str, params: &[Param], monitor: (&str, u64)) -> String {
    let mut xml = format!(
        "<primitive id=\"{id}\" class=\"stonith\" type=\"{}\"><instance_attributes id=\"{id}-instance_attributes\">",
        xml_attr(agent)
    );
    for p in params {
        let _ = write!(
            xml,
            "<nvpair id=\"{id}-instance_attributes-{name}\" name=\"{name}\" value=\"{}\"/>",
            xml_attr(&p.value),
            name = p.name
        );
    }
    let (interval, timeout) = monitor;
    let _ = write!(
        xml,
        "</instance_attributes><operations><op id=\"{id}-monitor-{interval}\" name=\"monitor\" interval=\"{interval}\" timeout=\"{timeout}s\"/></operations></primitive>"
    );
    xml
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stonith::parse_members;

    fn config(device: Device) -> GuestConfig {
        GuestConfig {
            cluster: Name::new("web").unwrap(),
            members: parse_members(&["web1=www-a,web2,web3".into()]).unwrap(),
            timeout: 40,
            device,
        }
    }

    fn sealed() -> GuestConfig {
        config(Device::Sealed {
            key_file: crate::stonith::GUEST_KEY_FILE.into(),
        })
    }

    #[test]
    fn host_map_is_node_to_domain() {
        let c = sealed();
        assert_eq!(host_map(&c.members), "www-a:web1;web2:web2;web3:web3");
        assert_eq!(
            legacy_hostlist(&c.members, &["T1".into(), "T2".into(), "T3".into()]),
            "www-a:T1 web2:T2 web3:T3"
        );
        assert_eq!(token_entry("g1", "U2Fs"), "g1:U2Fs");
    }

    #[test]
    fn cibadmin_script_is_one_quoted_xml_per_object() {
        let text = sealed().cibadmin();
        let commands: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .collect();
        assert_eq!(commands.len(), 6, "{text}");
        assert_eq!(commands[0], "set -e");
        for c in &commands[1..4] {
            // exactly two single quotes: around the XML, never inside it
            assert_eq!(c.matches('\'').count(), 2, "{c}");
            assert!(c.starts_with("cibadmin --create --scope "), "{c}");
        }
        assert!(text.contains(
            r#"<fencing-level id="fl-www-a-1" target="www-a" index="1" devices="fence-vmstonith"/>"#
        ));
        assert!(text.contains(r#"name="pcmk_host_map" value="www-a:web1;web2:web2;web3:web3""#));
        assert_eq!(xml_attr("a&<>\"'b"), "a&amp;&lt;&gt;&quot;'b");
        let legacy = config(Device::Legacy {
            tokens: vec!["T1".into(), "T2".into(), "T3".into()],
        })
        .cibadmin();
        assert!(legacy.contains(r#"type="external/vm-stonith""#), "{legacy}");
        assert!(legacy.contains(r#"name="hostlist" value="www-a:T1 web2:T2 web3:T3""#));
    }

    #[test]
    fn crm_text_has_the_device_levels_and_properties() {
        let crm = sealed().crm();
        for want in [
            "primitive fence-vmstonith stonith:fence_vmstonith \\\n    params pcmk_host_map=\"www-a:web1;web2:web2;web3:web3\" pcmk_host_check=static-list key_file=\"/etc/pm-kvm-tools/fence.key\" timeout=40 pcmk_reboot_timeout=60s pcmk_off_timeout=60s \\\n    op monitor interval=60s timeout=60s\n",
            "primitive fence-meatware stonith:meatware \\\n    params hostlist=\"www-a web2 web3\" pcmk_reboot_timeout=600s pcmk_off_timeout=600s \\\n",
            "fencing_topology \\\n    www-a: fence-vmstonith fence-meatware \\\n    web2: fence-vmstonith fence-meatware \\\n    web3: fence-vmstonith fence-meatware\n",
            "property stonith-enabled=true stonith-timeout=60s\n",
            "# primitive fence-helper stonith:external/stonith-helper params hostlist=\"www-a web2 web3\"",
            "meatclient -c NODE",
            "pm_extras",
            "crm configure load update FILE",
        ] {
            assert!(crm.contains(want), "{want:?} missing from:\n{crm}");
        }
        // every line that is not a comment belongs to one of the four objects
        let live: Vec<&str> = crm
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .collect();
        assert_eq!(live.len(), 3 + 3 + 4 + 1, "{live:#?}");
        assert!(
            !crm.contains("pcmk_delay_max"),
            "three guests need no delay"
        );
    }

    #[test]
    fn pcs_text_has_the_same_objects() {
        let pcs = sealed().pcs();
        for want in [
            "pcs stonith create fence-vmstonith fence_vmstonith pcmk_host_map=\"www-a:web1;web2:web2;web3:web3\" pcmk_host_check=static-list key_file=\"/etc/pm-kvm-tools/fence.key\" timeout=40 pcmk_reboot_timeout=60s pcmk_off_timeout=60s op monitor interval=60s timeout=60s\n",
            "pcs stonith create fence-meatware meatware hostlist=\"www-a web2 web3\" pcmk_reboot_timeout=600s pcmk_off_timeout=600s op monitor interval=3600s timeout=60s\n",
            "pcs stonith level add 2 www-a fence-vmstonith\npcs stonith level add 3 www-a fence-meatware\n",
            "pcs stonith level add 3 web3 fence-meatware\n",
            "# pcs stonith level add 1 web2 fence-helper\n",
            "pcs property set stonith-enabled=true stonith-timeout=60s\n",
        ] {
            assert!(pcs.contains(want), "{want:?} missing from:\n{pcs}");
        }
        let live = pcs.lines().filter(|l| l.starts_with("pcs ")).count();
        assert_eq!(live, 2 + 2 * 3 + 1);
        assert!(pcs.starts_with("# ===== pcs: fencing of guest cluster web ====="));
        assert!(
            sealed()
                .crm()
                .starts_with("# ===== crm shell (crmsh): fencing of guest cluster web")
        );
    }

    #[test]
    fn timeout_and_two_guests() {
        let mut c = sealed();
        c.timeout = 100;
        c.members.truncate(2);
        let crm = c.crm();
        assert!(crm.contains("timeout=100 pcmk_reboot_timeout=120s pcmk_off_timeout=120s"));
        assert!(crm.contains("stonith-timeout=120s"));
        assert!(crm.contains("pcmk_delay_max=15s"), "{crm}");
    }

    #[test]
    fn legacy_uses_the_cluster_glue_plugin() {
        let c = config(Device::Legacy {
            tokens: vec!["U2FsA=".into(), "U2FsB=".into(), "U2FsC=".into()],
        });
        let crm = c.crm();
        assert!(
            crm.contains(
                "primitive fence-vm-stonith stonith:external/vm-stonith \\\n    params hostlist=\"www-a:U2FsA= web2:U2FsB= web3:U2FsC=\" timeout=40 pcmk_reboot_timeout=60s"
            ),
            "{crm}"
        );
        assert!(crm.contains("www-a: fence-vm-stonith fence-meatware"));
        assert!(!crm.contains("fence_vmstonith \\") && !crm.contains("key_file"));
        assert!(crm.contains("[legacy] enabled = true"));
        let pcs = c.pcs();
        assert!(pcs.contains("pcs stonith create fence-vm-stonith external/vm-stonith hostlist="));
    }

    #[test]
    fn key_file_paths_that_need_quoting_are_refused() {
        check_key_file("/etc/pm-kvm-tools/fence.key").unwrap();
        for bad in ["fence.key", "/a b", "/a\"b", "/a$(id)", "/a;b", ""] {
            let e = check_key_file(bad).unwrap_err();
            assert_eq!(e.exit_code(), crate::error::exit::STONITH_OPTION, "{bad:?}");
        }
    }
}
