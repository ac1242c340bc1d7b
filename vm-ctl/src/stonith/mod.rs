//! Guest-cluster fencing, as far as vm-ctl helps set it up: the guest clusters' keys held by
//! the host nodes, the part of vm-stonithd's configuration vm-ctl reads, and the fence
//! configuration to load into a guest cluster.
//!
//! Everything here is pure (text in, text out); the commands in [`crate::commands::stonith`]
//! and [`crate::commands::check`] do the file and CIB I/O.
//!
//! - [`guest_config`]: the guest cluster's fence devices and topology, in crm and pcs syntax.
//! - [`published`]: comparing the keys each host node's vm-stonithd publishes with this node's.
//! - [`keygen_text`]: what to do with a new key.

pub mod client_config;
pub mod guest_config;
pub mod published;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use vm_seal::{KeyId, Name};

use crate::error::{Error, Result};

// The fence service's defaults, from its contract crate (one home for vm-stonithd, the guest's
// fence agent and vm-ctl).
pub use vm_fence::defaults::{
    AGENT_MAX_TIMEOUT_SECS, AGENT_TIMEOUT_SECS, GUEST_KEY_FILE, KEY_DIR as DEFAULT_KEY_DIR,
    STONITHD_CONFIG as DEFAULT_STONITHD_CONFIG,
};
pub use vm_fence::published::PUBLISHED_KEYS_ATTR;

/// The sections the guest-config and client-config outputs share: a title and how to load the
/// section, the same for both (pcs's instructions differ, so they are each output's own).
pub mod section {
    /// The crmsh section.
    pub const CRMSH: (&str, &str) = (
        "crm shell (crmsh)",
        "Load it in one guest: save this section to a file, then: crm configure load update FILE",
    );
    /// The cibadmin section.
    pub const CIBADMIN: (&str, &str) = (
        "cibadmin (Pacemaker's own tools)",
        "Run it in one guest, as root: save this section to a file, then: sh FILE",
    );
}

/// The file name `stonith keygen` gives a key: `<cluster>-<key id>.key`.
pub fn key_file_name(cluster: &Name, id: KeyId) -> String {
    format!("{cluster}-{id}.key")
}

/// A name that travels in fence requests ([`vm_seal::Name`]); `what` labels the error.
pub fn fence_name(what: &'static str, name: &str) -> Result<Name> {
    Name::new(name).map_err(|source| Error::FenceName {
        what,
        name: name.to_owned(),
        source,
    })
}

/// One guest of a guest cluster: its libvirt domain and its node name inside the guest cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The libvirt domain name (what the host cluster knows).
    pub domain: Name,
    /// The guest's node name in its own cluster (default: the domain name).
    pub node: Name,
}

/// Parse `--members DOM[=NODE],...` (several arguments and comma lists, blanks ignored).
/// A domain or node named twice is an error, and so is an empty list.
pub fn parse_members(specs: &[String]) -> Result<Vec<Member>> {
    let bad = |problem: String| Error::StonithOption {
        option: "--members",
        problem,
    };
    let mut members: Vec<Member> = Vec::new();
    for spec in specs
        .iter()
        .flat_map(|s| s.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let (dom, node) = match spec.split_once('=') {
            Some((d, n)) => (d.trim(), n.trim()),
            None => (spec, spec),
        };
        let domain = fence_name("domain name", dom)?;
        let node = fence_name("guest node name", node)?;
        if members.iter().any(|m| m.domain == domain) {
            return Err(bad(format!("domain {domain} is listed twice")));
        }
        if let Some(other) = members.iter().find(|m| m.node == node) {
            return Err(bad(format!(
                "guest node name {node} is given to both {} and {domain}",
                other.domain
            )));
        }
        members.push(Member { domain, node });
    }
    if members.is_empty() {
        return Err(bad(
            "no guest given; list the guest cluster's domains: --members DOM[=NODE],...".into(),
        ));
    }
    Ok(members)
}

/// Refuse names that the `node:domain` lists (`pcmk_host_map`, the legacy `hostlist`) cannot
/// carry: `:` separates the two there.
pub fn check_mappable(members: &[Member]) -> Result<()> {
    for m in members {
        for (what, name) in [("domain", &m.domain), ("guest node name", &m.node)] {
            if name.as_str().contains(':') {
                return Err(Error::StonithOption {
                    option: "--members",
                    problem: format!(
                        "{what} {name} contains ':', which separates node and domain in \
                         pcmk_host_map and hostlist; rename it"
                    ),
                });
            }
        }
    }
    Ok(())
}

/// vm-stonithd.toml as vm-stonithd reads it (the one schema, in vm-fence): vm-ctl uses its
/// key directory and its guest clusters, and reports the file's problems as vm-stonithd would.
pub use vm_fence::config::{Config as StonithdToml, ConfigError as StonithdTomlError};

/// The key directory: given explicitly (`--key-dir`, `VM_CTL_KEY_DIR`), else vm-stonithd.toml's
/// `key_dir` (which defaults to [`DEFAULT_KEY_DIR`]), else [`DEFAULT_KEY_DIR`].
pub fn key_dir(explicit: Option<&Path>, toml: Option<&StonithdToml>) -> PathBuf {
    explicit
        .map(Path::to_path_buf)
        .or_else(|| toml.map(|t| t.key_dir.clone()))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_KEY_DIR))
}

/// The `[[cluster]]` names of vm-stonithd.toml, in name order.
pub fn cluster_names(toml: &StonithdToml) -> Vec<&str> {
    toml.clusters.keys().map(Name::as_str).collect()
}

/// A TOML basic string.
fn toml_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The `[[cluster]]` table for vm-stonithd.toml; without members, a placeholder to fill in.
pub fn toml_snippet(cluster: &Name, members: &[Member]) -> String {
    let mut s = format!("[[cluster]]\nname = {}\n", toml_str(cluster.as_str()));
    if members.is_empty() {
        s.push_str(
            "members = []   # FILL IN the guests' libvirt domain names, e.g. [\"web1\", \"web2\"]\n",
        );
    } else {
        let list: Vec<String> = members
            .iter()
            .map(|m| toml_str(m.domain.as_str()))
            .collect();
        let _ = writeln!(s, "members = [{}]", list.join(", "));
        let renamed: Vec<String> = members
            .iter()
            .filter(|m| m.node != m.domain)
            .map(|m| {
                format!(
                    "{} = {}",
                    toml_str(m.domain.as_str()),
                    toml_str(m.node.as_str())
                )
            })
            .collect();
        if !renamed.is_empty() {
            let _ = writeln!(s, "node_names = {{ {} }}", renamed.join(", "));
        }
    }
    s
}

/// What `stonith keygen` knows after writing a key, for [`keygen_text`].
#[derive(Debug, Clone)]
pub struct KeygenFacts<'a> {
    /// The guest cluster.
    pub cluster: &'a Name,
    /// The new key file.
    pub file: &'a Path,
    /// Its id.
    pub id: KeyId,
    /// Its fingerprint.
    pub fingerprint: &'a str,
    /// Whether the file was written (false: dry run).
    pub written: bool,
    /// The host cluster's other nodes (`None`: the CIB could not be read).
    pub other_nodes: Option<&'a [String]>,
    /// Older key files of the same cluster in the key directory.
    pub older: &'a [PathBuf],
    /// `--members`.
    pub members: &'a [Member],
    /// vm-stonithd.toml's path.
    pub toml_path: &'a Path,
    /// Whether vm-stonithd.toml already has this cluster (`None`: no such file, or unreadable).
    pub in_toml: Option<bool>,
}

/// The report of `stonith keygen`: the file, id and fingerprint, then what to do with it on the
/// host nodes and in the guests, the vm-stonithd.toml table, and how to rotate. Never the key.
pub fn keygen_text(k: &KeygenFacts<'_>) -> String {
    let file = k.file.display();
    let dir = k
        .file
        .parent()
        .map_or_else(|| ".".to_owned(), |d| d.display().to_string());
    let mut s = String::new();
    if k.written {
        let _ = writeln!(s, "New key of guest cluster {}: {file}", k.cluster);
    } else {
        let _ = writeln!(
            s,
            "Dry run: nothing written. A real run writes the new key of guest cluster {} to {file}",
            k.cluster
        );
    }
    let _ = writeln!(s, "  key id:      {}", k.id);
    let _ = writeln!(s, "  fingerprint: {}", k.fingerprint);
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "1. Every node of the host cluster needs this file (the guests may run on any of them):"
    );
    match k.other_nodes {
        Some([]) => {
            let _ = writeln!(s, "     (the CIB lists no other node)");
        }
        Some(nodes) => {
            for node in nodes {
                let _ = writeln!(s, "     scp -p {file} {node}:{file}");
            }
        }
        None => {
            let _ = writeln!(
                s,
                "     (the CIB could not be read) for every other host node NODE:\n     scp -p {file} NODE:{file}"
            );
        }
    }
    let _ = writeln!(
        s,
        "   The directory there must exist with mode 0700 (install -d -m 0700 {dir}). Then reload\n   \
         vm-stonithd on each node so it loads the key (SIGHUP: systemctl reload vm-stonithd under\n   \
         systemd); `vm-ctl check` on any host node verifies that every node's vm-stonithd holds the\n   \
         same keys."
    );
    let guests = if k.members.is_empty() {
        String::new()
    } else {
        format!(
            " ({})",
            k.members
                .iter()
                .map(|m| m.domain.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let name = k.file.file_name().map_or_else(
        || "KEYFILE".to_owned(),
        |n| n.to_string_lossy().into_owned(),
    );
    let _ = writeln!(
        s,
        "2. Every guest of cluster {}{guests} needs the same file as {GUEST_KEY_FILE}, mode 0600, owner\n   \
         root. Copy it into the guest (e.g. scp -p {file} root@GUEST:/root/) and run there:\n     \
         install -D -m 0600 -o root -g root /root/{name} {GUEST_KEY_FILE} && rm /root/{name}",
        k.cluster
    );
    match k.in_toml {
        Some(true) => {
            let _ = writeln!(
                s,
                "3. {} already authorises guest cluster {} (nothing to add).",
                k.toml_path.display(),
                k.cluster
            );
        }
        _ => {
            let _ = writeln!(
                s,
                "3. Authorise the guest cluster in {} on every host node:",
                k.toml_path.display()
            );
            for line in toml_snippet(k.cluster, k.members).lines() {
                let _ = writeln!(s, "     {line}");
            }
        }
    }
    if k.older.is_empty() {
        let _ = writeln!(
            s,
            "4. To rotate the key later, run `vm-ctl stonith keygen {}` again: vm-stonithd accepts\n   \
             both keys until the old file is removed from every host node.",
            k.cluster
        );
    } else {
        let _ = writeln!(
            s,
            "4. Rotation: guest cluster {} now has older keys here too, which vm-stonithd still\n   \
             accepts. Once every host node holds the new key and every guest uses it as\n   \
             {GUEST_KEY_FILE}, remove the old file(s) from every host node:",
            k.cluster
        );
        for old in k.older {
            let _ = writeln!(s, "     rm {}", old.display());
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Name {
        Name::new(s).unwrap()
    }

    #[test]
    fn members_with_and_without_node_names() {
        let m = parse_members(&["web1=www-a, web2".into(), "web3".into()]).unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(
            (m[0].domain.as_str(), m[0].node.as_str()),
            ("web1", "www-a")
        );
        assert_eq!((m[1].domain.as_str(), m[1].node.as_str()), ("web2", "web2"));
        for (specs, code) in [
            (vec!["a,a"], crate::error::exit::STONITH_OPTION),
            (vec!["a=x,b=x"], crate::error::exit::STONITH_OPTION),
            (vec![" , "], crate::error::exit::STONITH_OPTION),
            (vec!["a b"], crate::error::exit::BAD_NAME),
            (vec!["a=$(id)"], crate::error::exit::BAD_NAME),
        ] {
            let specs: Vec<String> = specs.into_iter().map(String::from).collect();
            let e = parse_members(&specs).unwrap_err();
            assert_eq!(e.exit_code(), code, "{specs:?}: {e}");
        }
        let m = parse_members(&["a:b".into()]).unwrap();
        let e = check_mappable(&m).unwrap_err().to_string();
        assert!(e.contains("contains ':'"), "{e}");
    }

    fn parse(text: &str) -> std::result::Result<StonithdToml, StonithdTomlError> {
        StonithdToml::parse(text, Path::new("vm-stonithd.toml"))
    }

    /// vm-ctl reads the file with vm-stonithd's own schema (vm-fence): what one accepts the
    /// other does. (vm-ctl's reading was lenient before; the cluster names now come in name
    /// order, as vm-stonithd keeps them.)
    #[test]
    fn toml_reading_is_vm_stonithds() {
        let t = parse(
            "socket = \"/x\"\nkey_dir = \"/k\"\n[[cluster]]\nname = \"web\"\nmembers = [\"a\"]\n\
             [[cluster]]\nname = \"db\"\nmembers = [\"b\"]\nlegacy = true\n[legacy]\nenabled = false\n",
        )
        .unwrap();
        assert_eq!(cluster_names(&t), ["db", "web"]);
        assert_eq!(key_dir(None, Some(&t)), Path::new("/k"));
        assert_eq!(key_dir(Some(Path::new("/e")), Some(&t)), Path::new("/e"));
        assert_eq!(key_dir(None, None), Path::new(DEFAULT_KEY_DIR));
        assert_eq!(
            key_dir(None, Some(&parse("").unwrap())),
            Path::new(DEFAULT_KEY_DIR)
        );
        parse("[[cluster]]\nmembers = []").unwrap_err();
        assert_eq!(cluster_names(&parse("").unwrap()).len(), 0);
        // what vm-stonithd refuses, vm-ctl reports too
        let e = parse("colour = 1").unwrap_err().to_string();
        assert!(e.contains("unknown field"), "{e}");
    }

    #[test]
    fn toml_snippet_parses_back() {
        let members = parse_members(&["web1=www-a,web2".into()]).unwrap();
        let s = toml_snippet(&name("web"), &members);
        assert_eq!(
            s,
            "[[cluster]]\nname = \"web\"\nmembers = [\"web1\", \"web2\"]\nnode_names = { \"web1\" = \"www-a\" }\n"
        );
        assert_eq!(cluster_names(&parse(&s).unwrap()), ["web"]);
        let s = toml_snippet(&name("web"), &[]);
        assert!(s.contains("FILL IN"), "{s}");
    }

    #[test]
    fn keygen_text_names_every_step_and_no_secret() {
        let cluster = name("web");
        let id: KeyId = "0011223344556677".parse().unwrap();
        let file = PathBuf::from(format!("/k/{}", key_file_name(&cluster, id)));
        let nodes = vec!["node2".to_owned(), "node3".to_owned()];
        let members = parse_members(&["web1,web2".into()]).unwrap();
        let older = vec![PathBuf::from("/k/web-8899aabbccddeeff.key")];
        let facts = KeygenFacts {
            cluster: &cluster,
            file: &file,
            id,
            fingerprint: "0123456789abcdef",
            written: true,
            other_nodes: Some(&nodes),
            older: &[],
            members: &members,
            toml_path: Path::new(DEFAULT_STONITHD_CONFIG),
            in_toml: None,
        };
        let s = keygen_text(&facts);
        assert!(s.contains("/k/web-0011223344556677.key"), "{s}");
        assert!(s.contains("fingerprint: 0123456789abcdef"), "{s}");
        assert!(
            s.contains("scp -p /k/web-0011223344556677.key node2:/k/web-0011223344556677.key"),
            "{s}"
        );
        assert!(s.contains("node3:"), "{s}");
        assert!(s.contains("vm-ctl check"), "{s}");
        // a reload loads new keys: no restart (which would drop the fences in progress)
        assert!(s.contains("reload\n   vm-stonithd on each node"), "{s}");
        assert!(!s.contains("restart"), "{s}");
        assert!(s.contains("install -D -m 0600 -o root -g root"), "{s}");
        assert!(s.contains(GUEST_KEY_FILE), "{s}");
        assert!(s.contains("members = [\"web1\", \"web2\"]"), "{s}");
        assert!(s.contains("keygen web` again"), "{s}");
        let s = keygen_text(&KeygenFacts {
            other_nodes: None,
            older: &older,
            in_toml: Some(true),
            ..facts
        });
        assert!(s.contains("NODE:/k/web-0011223344556677.key"), "{s}");
        assert!(s.contains("rm /k/web-8899aabbccddeeff.key"), "{s}");
        assert!(s.contains("already authorises"), "{s}");
    }
}
