//! `/etc/pm-kvm-tools/vm-stonithd.toml`: which guest clusters may fence which guests.
//!
//! ```toml
//! # every setting but [[cluster]] is optional; defaults shown
//! socket = "/var/run/vmconnectd.sock"   # host vm-connectd's local socket
//! key_dir = "/etc/pm-kvm-tools/keys"    # guest-cluster keys (vm-ctl stonith keygen)
//! clock_window = 30                     # seconds a request's timestamp may be off (86400
//!                                       # at most)
//! max_timeout = 55                      # cap on a request's own timeout, seconds (keep it
//!                                       # below vm-connectd's --request-timeout, 60 s; 3600
//!                                       # at most)
//! max_requests = 64                     # requests carried out at once
//! max_requests_per_cluster = 16         # of them, one guest cluster's (at most max_requests;
//!                                       # default 16, or max_requests if smaller)
//! trusted_identities = ["libvirt", "configured"]
//!                                       # how vm-connectd must know a request's guest for it
//!                                       # to be served: "libvirt", "configured" (its --guest
//!                                       # NAME=SOCKET), "socket-name" (--no-libvirt)
//! guest_node_authkey = "/etc/pacemaker/authkey"
//!                                       # the host cluster's Pacemaker key, served (`remote`
//!                                       # service) to guests the CIB runs as guest nodes
//!
//! [[cluster]]
//! name = "web"                          # the guest cluster; its key says the same name
//! members = ["web1", "web2"]            # its guests (libvirt domain names)
//! # targets = ["web1", "web2"]          # whom it may fence (default: its members)
//! # node_names = { web1 = "www-a" }     # guest node names that differ from domain names
//! # resources = { web1 = "vm_web1" }    # host resources that differ from prmVMCTL_<domain>
//! # legacy = false                      # accept legacy tokens from its members
//!
//! [legacy]                              # pm_kvm_tools tokens: off unless enabled
//! enabled = false
//! # password_file = "/etc/pm-kvm-tools/legacy-password"   # decrypt in-process, or:
//! # decrypt_command = ["openssl", "des-ede3", "-d", "-base64", "-md", "md5", "-pass", "file:/etc/pm-kvm-tools/legacy-password"]
//! # decrypt_stdin = true
//! # decrypt_ok_code = 0
//! # digests = ["md5", "sha256"]
//! ```
//!
//! Unknown settings are errors (a typo must not silently weaken a security setting).
//!
//! The one schema of the file: vm-stonithd serves by it and vm-ctl reads its key directory and
//! guest clusters through it, so the two cannot disagree on what the file says; defaults are
//! in [`crate::defaults`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use vm_proto::OriginSource;
use vm_seal::Name;

use crate::defaults;

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error(
        "cannot read {path}: {source}; write it (docs/operations.md, \"Guest fencing from \
         zero\", step 4) or name another with --config"
    )]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("{path}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message (with line and column).
        message: String,
    },
    /// A value is not acceptable.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong and how to fix it.
        message: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    socket: Option<PathBuf>,
    key_dir: Option<PathBuf>,
    clock_window: Option<u64>,
    max_timeout: Option<u64>,
    max_requests: Option<usize>,
    max_requests_per_cluster: Option<usize>,
    trusted_identities: Option<Vec<String>>,
    guest_node_authkey: Option<PathBuf>,
    #[serde(default)]
    cluster: Vec<RawCluster>,
    #[serde(default)]
    legacy: RawLegacy,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    name: String,
    members: Vec<String>,
    targets: Option<Vec<String>>,
    #[serde(default)]
    node_names: BTreeMap<String, String>,
    #[serde(default)]
    resources: BTreeMap<String, String>,
    #[serde(default)]
    legacy: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLegacy {
    #[serde(default)]
    enabled: bool,
    password_file: Option<PathBuf>,
    decrypt_command: Option<Vec<String>>,
    decrypt_stdin: Option<bool>,
    decrypt_ok_code: Option<i32>,
    digests: Option<Vec<String>>,
}

/// One guest cluster's authorisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterPolicy {
    /// Its name (as in its key).
    pub name: Name,
    /// Its guests (domain names): requests must arrive over one of their channels.
    pub members: BTreeSet<Name>,
    /// The guests it may fence.
    pub targets: BTreeSet<Name>,
    /// Guest node names that differ from domain names (domain -> node name).
    pub node_names: BTreeMap<Name, Name>,
    /// Host resource ids that differ from `prmVMCTL_<domain>` (domain -> resource id).
    pub resources: BTreeMap<Name, String>,
    /// Whether its members may use legacy tokens (when legacy mode is on).
    pub legacy: bool,
}

impl ClusterPolicy {
    /// The node name guest `domain` uses for itself in requests.
    pub fn node_name<'a>(&'a self, domain: &'a Name) -> &'a Name {
        self.node_names.get(domain).unwrap_or(domain)
    }
}

/// How legacy tokens are decrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LegacyDecrypt {
    /// In-process, with the password in this file.
    Password {
        /// The password file (mode 0600).
        file: PathBuf,
        /// Key-derivation digests to try, in order.
        digests: Vec<vm_seal::legacy::Digest>,
    },
    /// By an external command (argv, never a shell).
    Command {
        /// The command and its arguments.
        argv: Vec<String>,
        /// Token on stdin (else as the last argument).
        stdin: bool,
        /// Exit status meaning success.
        ok_code: i32,
    },
}

/// The daemon's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Host vm-connectd's local socket.
    pub socket: PathBuf,
    /// Directory of guest-cluster keys.
    pub key_dir: PathBuf,
    /// How far a request's timestamp may be from the host's clock.
    pub clock_window: Duration,
    /// Cap on a request's own timeout.
    pub max_timeout: Duration,
    /// Requests carried out at once; more are answered "busy".
    pub max_requests: usize,
    /// Requests of one guest cluster carried out at once (so that one cluster's queue cannot
    /// take every worker from the others).
    pub max_requests_per_cluster: usize,
    /// How vm-connectd may have learnt which guest a request came from for it to be served
    /// (the `Origin.source` of its delivery). A file name proves nothing about who made the
    /// socket, so [`OriginSource::SocketName`] is not trusted unless listed.
    pub trusted_identities: Vec<OriginSource>,
    /// The host cluster's Pacemaker authkey, which the `remote` service gives to guests that
    /// the CIB runs as guest nodes (docs/protocol.md §17); read at every request.
    pub guest_node_authkey: PathBuf,
    /// Guest clusters, by name.
    pub clusters: BTreeMap<Name, ClusterPolicy>,
    /// Legacy token decryption, when legacy mode is on.
    pub legacy: Option<LegacyDecrypt>,
}

impl Config {
    /// Reads and checks the configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Parses and checks configuration text; `path` labels errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: path.to_path_buf(),
            message: e.to_string().trim().to_owned(),
        })?;
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let name =
            |what: &str, s: &str| Name::new(s).map_err(|e| invalid(format!("{what} {s:?}: {e}")));
        let mut clusters = BTreeMap::new();
        for c in raw.cluster {
            let cname = name("cluster name", &c.name)?;
            if c.members.is_empty() {
                return Err(invalid(format!(
                    "cluster {cname}: `members` is empty; list its guests' domain names"
                )));
            }
            let members = c
                .members
                .iter()
                .map(|m| name(&format!("cluster {cname}: member"), m))
                .collect::<Result<BTreeSet<_>, _>>()?;
            let targets = match &c.targets {
                Some(t) => t
                    .iter()
                    .map(|m| name(&format!("cluster {cname}: target"), m))
                    .collect::<Result<BTreeSet<_>, _>>()?,
                None => members.clone(),
            };
            let mut node_names = BTreeMap::new();
            for (d, n) in &c.node_names {
                let d = name(&format!("cluster {cname}: node_names key"), d)?;
                if !members.contains(&d) {
                    return Err(invalid(format!(
                        "cluster {cname}: node_names names {d}, which is not a member"
                    )));
                }
                node_names.insert(d, name(&format!("cluster {cname}: node name"), n)?);
            }
            let mut resources = BTreeMap::new();
            for (d, r) in &c.resources {
                let d = name(&format!("cluster {cname}: resources key"), d)?;
                if !targets.contains(&d) {
                    return Err(invalid(format!(
                        "cluster {cname}: resources names {d}, which is not a target"
                    )));
                }
                // a resource id is an XML id: the name rule is stricter than that, and safe
                let r = name(&format!("cluster {cname}: resource id"), r)?;
                resources.insert(d, r.as_str().to_owned());
            }
            let policy = ClusterPolicy {
                name: cname.clone(),
                members,
                targets,
                node_names,
                resources,
                legacy: c.legacy,
            };
            if clusters.insert(cname.clone(), policy).is_some() {
                return Err(invalid(format!("cluster {cname} is defined twice")));
            }
        }
        let legacy = if raw.legacy.enabled {
            Some(legacy_decrypt(raw.legacy).map_err(invalid)?)
        } else {
            None
        };
        // Bounded above as well: deadlines are computed as `Instant + max_timeout`, which panics
        // when the sum is beyond what the clock can represent; no fence waits an hour.
        let secs =
            |v: Option<u64>, default: u64, max: u64, what: &str| -> Result<Duration, ConfigError> {
                match v.unwrap_or(default) {
                    0 => Err(invalid(format!("{what} must be at least 1 second"))),
                    s if s > max => Err(invalid(format!(
                        "{what} must be at most {max} seconds (it is {s})"
                    ))),
                    s => Ok(Duration::from_secs(s)),
                }
            };
        let max_requests = match raw.max_requests.unwrap_or(defaults::MAX_REQUESTS) {
            0 => return Err(invalid("max_requests must be at least 1".into())),
            n => n,
        };
        let max_requests_per_cluster = match raw.max_requests_per_cluster {
            None => max_requests.min(defaults::MAX_REQUESTS_PER_CLUSTER),
            Some(0) => {
                return Err(invalid(
                    "max_requests_per_cluster must be at least 1".into(),
                ));
            }
            Some(n) if n > max_requests => {
                return Err(invalid(format!(
                    "max_requests_per_cluster ({n}) must not exceed max_requests ({max_requests})"
                )));
            }
            Some(n) => n,
        };
        let trusted_identities = match raw.trusted_identities {
            None => DEFAULT_TRUSTED_IDENTITIES.to_vec(),
            Some(names) => {
                let mut sources = Vec::new();
                for n in &names {
                    let source = identity(n).ok_or_else(|| {
                        invalid(format!(
                            "trusted_identities: unknown identity {n:?} (libvirt, configured, \
                             socket-name)"
                        ))
                    })?;
                    if !sources.contains(&source) {
                        sources.push(source);
                    }
                }
                sources
            }
        };
        Ok(Config {
            socket: raw
                .socket
                .unwrap_or_else(|| PathBuf::from(vm_proto::DEFAULT_SOCKET)),
            key_dir: raw
                .key_dir
                .unwrap_or_else(|| PathBuf::from(defaults::KEY_DIR)),
            clock_window: secs(
                raw.clock_window,
                defaults::CLOCK_WINDOW_SECS,
                defaults::MAX_CLOCK_WINDOW_SECS,
                "clock_window",
            )?,
            max_timeout: secs(
                raw.max_timeout,
                defaults::MAX_TIMEOUT_SECS,
                defaults::MAX_MAX_TIMEOUT_SECS,
                "max_timeout",
            )?,
            max_requests,
            max_requests_per_cluster,
            trusted_identities,
            guest_node_authkey: match raw.guest_node_authkey {
                None => PathBuf::from(vm_proto::authkey::DEFAULT_AUTHKEY),
                Some(p) if p.is_absolute() => p,
                Some(p) => {
                    return Err(invalid(format!(
                        "guest_node_authkey must be an absolute path, not {:?}",
                        p.display().to_string()
                    )));
                }
            },
            clusters,
            legacy,
        })
    }

    /// Whether a request whose guest vm-connectd knows by `source` may be served.
    pub fn trusts(&self, source: OriginSource) -> bool {
        self.trusted_identities.contains(&source)
    }

    /// Clusters that list the guest named `domain` (unchecked text) as a member.
    pub fn clusters_of_str<'a>(
        &'a self,
        domain: &'a str,
    ) -> impl Iterator<Item = &'a ClusterPolicy> {
        self.clusters
            .values()
            .filter(move |c| c.members.iter().any(|m| m.as_str() == domain))
    }

    /// Clusters that list `domain` as a member.
    pub fn clusters_of<'a>(&'a self, domain: &'a Name) -> impl Iterator<Item = &'a ClusterPolicy> {
        self.clusters
            .values()
            .filter(move |c| c.members.contains(domain))
    }
}

/// The identities trusted unless `trusted_identities` says otherwise: libvirt's, and the
/// operator's explicit mapping of one socket (`vm-connectd --guest NAME=SOCKET`).
pub const DEFAULT_TRUSTED_IDENTITIES: &[OriginSource] =
    &[OriginSource::Libvirt, OriginSource::Configured];

/// The `trusted_identities` value naming `source`: as `vm-connectd status` shows a guest's
/// identity.
pub fn identity_name(source: OriginSource) -> &'static str {
    match source {
        OriginSource::Libvirt => "libvirt",
        OriginSource::Configured => "configured",
        OriginSource::SocketName => "socket-name",
    }
}

fn identity(name: &str) -> Option<OriginSource> {
    OriginSource::ALL
        .iter()
        .copied()
        .find(|s| identity_name(*s) == name)
}

fn legacy_decrypt(raw: RawLegacy) -> Result<LegacyDecrypt, String> {
    match (raw.password_file, raw.decrypt_command) {
        (Some(file), None) => {
            let mut digests = Vec::new();
            for d in raw
                .digests
                .unwrap_or_else(|| vec!["md5".into(), "sha256".into()])
            {
                digests.push(match d.as_str() {
                    "md5" => vm_seal::legacy::Digest::Md5,
                    "sha256" => vm_seal::legacy::Digest::Sha256,
                    other => {
                        return Err(format!(
                            "legacy.digests: unknown digest {other:?} (md5, sha256)"
                        ));
                    }
                });
            }
            if digests.is_empty() {
                return Err("legacy.digests is empty".into());
            }
            Ok(LegacyDecrypt::Password { file, digests })
        }
        (None, Some(argv)) => {
            if argv.first().is_none_or(|p| p.is_empty()) {
                return Err("legacy.decrypt_command is empty".into());
            }
            Ok(LegacyDecrypt::Command {
                argv,
                stdin: raw.decrypt_stdin.unwrap_or(true),
                ok_code: raw.decrypt_ok_code.unwrap_or(0),
            })
        }
        (Some(_), Some(_)) => Err("legacy: set password_file or decrypt_command, not both".into()),
        (None, None) => Err(
            "legacy.enabled is true but neither password_file nor decrypt_command is set".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("t.toml"))
    }

    /// The example the Debian package installs as /etc/pm-kvm-tools/vm-stonithd.toml.
    const SHIPPED: &str = include_str!("../../../vm-stonithd/vm-stonithd.toml");

    #[test]
    fn the_shipped_file_is_valid_and_its_commented_settings_too() {
        let c = parse(SHIPPED).unwrap();
        assert!(c.clusters.is_empty());
        assert_eq!(c.key_dir, Path::new(defaults::KEY_DIR));
        // every commented setting, uncommented, is a valid setting with a sensible value
        let uncommented: String = SHIPPED
            .lines()
            .map(|l| match l.strip_prefix('#') {
                Some(rest) if rest.starts_with(|c: char| c.is_ascii_lowercase() || c == '[') => {
                    rest
                }
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n");
        let c = parse(&uncommented).unwrap();
        assert_eq!(c.clusters.len(), 1);
        assert_eq!(c.key_dir, Path::new(defaults::KEY_DIR));
    }

    #[test]
    fn defaults_and_a_cluster() {
        let c = parse(
            r#"
            [[cluster]]
            name = "web"
            members = ["web1", "web2"]
            node_names = { web1 = "www-a" }
            "#,
        )
        .unwrap();
        assert_eq!(c.socket, Path::new(vm_proto::DEFAULT_SOCKET));
        assert_eq!(c.clock_window, Duration::from_secs(30));
        assert_eq!(c.legacy, None);
        assert!(c.trusts(OriginSource::Libvirt) && c.trusts(OriginSource::Configured));
        assert!(
            !c.trusts(OriginSource::SocketName),
            "a socket's file name is trusted only when the operator says so"
        );
        let web = &c.clusters[&Name::new("web").unwrap()];
        assert_eq!(web.targets, web.members);
        let web1 = Name::new("web1").unwrap();
        let web2 = Name::new("web2").unwrap();
        assert_eq!(web.node_name(&web1).as_str(), "www-a");
        assert_eq!(web.node_name(&web2).as_str(), "web2");
        assert_eq!(c.clusters_of(&web2).count(), 1);
    }

    #[test]
    fn mistakes_are_errors_with_the_fix() {
        for (text, want) in [
            ("colour = 1", "unknown field"),
            (
                "[[cluster]]\nname = \"a\"\nmembers = []",
                "members` is empty",
            ),
            (
                "[[cluster]]\nname = \"a;b\"\nmembers = [\"x\"]",
                "cluster name",
            ),
            (
                "[[cluster]]\nname = \"a\"\nmembers = [\"x\"]\n[[cluster]]\nname = \"a\"\nmembers = [\"y\"]",
                "defined twice",
            ),
            (
                "[[cluster]]\nname = \"a\"\nmembers = [\"x\"]\nnode_names = { y = \"z\" }",
                "not a member",
            ),
            ("[legacy]\nenabled = true", "neither password_file"),
            ("clock_window = 0", "at least 1 second"),
            // a deadline that far off cannot even be computed (`Instant +` panicked on it)
            (
                "max_timeout = 18446744073709551615",
                "max_timeout must be at most",
            ),
            ("max_timeout = 3601", "max_timeout must be at most"),
            (
                "guest_node_authkey = \"authkey\"",
                "guest_node_authkey must be an absolute path",
            ),
            (
                "max_requests = 8\nmax_requests_per_cluster = 9",
                "must not exceed max_requests",
            ),
            ("clock_window = 86401", "clock_window must be at most"),
            (
                "trusted_identities = [\"libvirt\", \"file\"]",
                "unknown identity \"file\"",
            ),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn trusted_identities_are_the_operators_choice() {
        let c = parse("trusted_identities = [\"libvirt\", \"socket-name\", \"libvirt\"]").unwrap();
        assert_eq!(
            c.trusted_identities,
            [OriginSource::Libvirt, OriginSource::SocketName]
        );
        assert!(!c.trusts(OriginSource::Configured));
        // every identity vm-connectd reports can be named
        for source in OriginSource::ALL {
            assert_eq!(identity(identity_name(*source)), Some(*source));
        }
    }

    #[test]
    fn legacy_needs_one_way_to_decrypt() {
        let c = parse(
            "[legacy]\nenabled = true\ndecrypt_command = [\"openssl\", \"des-ede3\", \"-d\"]",
        )
        .unwrap();
        assert!(matches!(
            c.legacy,
            Some(LegacyDecrypt::Command {
                stdin: true,
                ok_code: 0,
                ..
            })
        ));
        let c = parse("[legacy]\nenabled = false\npassword_file = \"/x\"").unwrap();
        assert_eq!(c.legacy, None);
    }
}
