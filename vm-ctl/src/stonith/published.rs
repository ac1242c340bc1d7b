//! Are the guest-cluster keys the same on every host node?
//!
//! Each running vm-stonithd publishes the keys it holds in the transient node attribute
//! [`PUBLISHED_KEYS_ATTR`] (`pmkt-fence-keys`), in the format vm-fence defines for both
//! ([`vm_fence::published`]). Ids and fingerprints are public (the fingerprint reveals nothing
//! about the key), so the CIB can carry them. `vm-ctl check` reads every node's
//! value from the CIB status section ([`node_keys`]) and compares it with the key files of the
//! node it runs on ([`compare`]): a guest can run on any host node, so a node with a missing or
//! different key is a node where that guest cluster cannot fence.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use vm_fence::published::parse as parse_published;
pub use vm_fence::published::{KeyStamp, PUBLISHED_KEYS_ATTR};
use vm_pcmk::Cib;

use super::key_file_name;
use crate::output::{Finding, FindingCode, Level};

/// Subject of the guest-fencing findings of `vm-ctl check`.
pub const SUBJECT: &str = "guest-fencing";

/// A key file of the node `vm-ctl check` runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalKey {
    /// The key's public description.
    pub stamp: KeyStamp,
    /// Its file.
    pub file: PathBuf,
}

/// What the CIB says about one host node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeKeys {
    /// The node name (`uname`).
    pub node: String,
    /// Whether it is a member of the cluster right now.
    pub online: bool,
    /// Its [`PUBLISHED_KEYS_ATTR`] value, if it has one.
    pub published: Option<String>,
}

/// Every host node of `cib` (configured nodes, then any other node the status section knows),
/// whether it is online, and what its vm-stonithd publishes.
pub fn node_keys(cib: &Cib) -> Vec<NodeKeys> {
    let mut names: Vec<String> = cib.node_names().into_iter().map(str::to_owned).collect();
    for u in cib.node_states().filter_map(|s| s.get("uname")) {
        if !names.iter().any(|n| n == u) {
            names.push(u.to_owned());
        }
    }
    names
        .into_iter()
        .map(|node| {
            let online = cib.node_online(&node);
            let published = cib
                .transient_attribute(&node, PUBLISHED_KEYS_ATTR)
                .map(str::to_owned);
            NodeKeys {
                node,
                online,
                published,
            }
        })
        .collect()
}

fn finding(code: FindingCode, level: Level, message: String, fix: String) -> Finding {
    Finding {
        subject: SUBJECT.to_owned(),
        code,
        level,
        message,
        fix,
    }
}

/// Compare every online node's published keys with this node's key files (`local`, from
/// `key_dir`). `this_node` is the name of the node check runs on, when known: there, a
/// difference means vm-stonithd has not loaded the current files.
pub fn compare(
    local: &[LocalKey],
    key_dir: &Path,
    this_node: Option<&str>,
    nodes: &[NodeKeys],
) -> Vec<Finding> {
    let mut out = Vec::new();
    let nobody_publishes = nodes
        .iter()
        .all(|n| n.published.as_deref().is_none_or(|v| v.trim().is_empty()));
    if local.is_empty() && nobody_publishes {
        out.push(finding(
            FindingCode::NoKeysAnywhere,
            Level::Ok,
            "no host node holds guest-cluster keys: nothing to compare".into(),
            String::new(),
        ));
        return out;
    }
    for n in nodes {
        let node = n.node.as_str();
        let here = this_node == Some(node);
        if !n.online {
            out.push(finding(
                FindingCode::NodeOffline,
                Level::Ok,
                format!("node {node} is offline: its fence keys are not compared"),
                String::new(),
            ));
            continue;
        }
        let Some(value) = &n.published else {
            out.push(finding(
                FindingCode::NodePublishesNothing,
                Level::Warning,
                format!(
                    "node {node} publishes no {PUBLISHED_KEYS_ATTR} attribute: vm-stonithd not \
                     running there? Guests there cannot be fenced by their peers"
                ),
                format!("start vm-stonithd on {node} (see its clone's status and its log there)"),
            ));
            continue;
        };
        let held = match parse_published(value) {
            Ok(held) => held,
            Err(e) => {
                out.push(finding(
                    FindingCode::NodePublishesMalformed,
                    Level::Warning,
                    format!("node {node} publishes a malformed {PUBLISHED_KEYS_ATTR}: {e}"),
                    format!("run the same vm-stonithd version on {node} as on this node"),
                ));
                continue;
            }
        };
        let by_id: BTreeMap<&str, &KeyStamp> = held.iter().map(|k| (k.id.as_str(), k)).collect();
        let mut problems = 0;
        for l in local {
            let file = l.file.display();
            let label = l.stamp.label();
            let copy = format!(
                "scp -p {file} {node}:{file}, then reload vm-stonithd on {node} (SIGHUP) so it loads the key"
            );
            let reload = format!(
                "reload vm-stonithd on this node ({node}) (SIGHUP) so it loads the key files in {}",
                key_dir.display()
            );
            match by_id.get(l.stamp.id.as_str()) {
                Some(k) if **k == l.stamp => {}
                Some(k) => {
                    problems += 1;
                    let (message, fix) = if here {
                        (
                            format!(
                                "vm-stonithd on this node ({node}) holds another key under the id \
                                 of {label} ({file}): {}:{} with fingerprint {} there, {} in the file",
                                k.cluster, k.id, k.fingerprint, l.stamp.fingerprint
                            ),
                            reload,
                        )
                    } else {
                        (
                            format!(
                                "node {node} holds a different key {label}: fingerprint {} \
                                 there, {} here ({file})",
                                k.fingerprint, l.stamp.fingerprint
                            ),
                            format!(
                                "{copy} (if {node}'s key is the right one, copy it here instead)"
                            ),
                        )
                    };
                    out.push(finding(
                        FindingCode::NodeKeyDiffers,
                        Level::Error,
                        message,
                        fix,
                    ));
                }
                None => {
                    problems += 1;
                    let (message, fix) = if here {
                        (
                            format!(
                                "vm-stonithd on this node ({node}) has not loaded key {label} ({file})"
                            ),
                            reload,
                        )
                    } else {
                        (
                            format!(
                                "node {node} lacks key {label} ({file}): guests of cluster {} \
                                 running there cannot fence",
                                l.stamp.cluster
                            ),
                            copy,
                        )
                    };
                    out.push(finding(
                        FindingCode::NodeKeyMissing,
                        Level::Error,
                        message,
                        fix,
                    ));
                }
            }
        }
        for k in &held {
            if local.iter().any(|l| l.stamp.id == k.id) {
                continue;
            }
            problems += 1;
            let (message, fix) = if here {
                (
                    format!(
                        "vm-stonithd on this node ({node}) still holds key {} (fingerprint {}), \
                         which is no longer in {}",
                        k.label(),
                        k.fingerprint,
                        key_dir.display()
                    ),
                    format!(
                        "reload vm-stonithd on this node ({node}) (SIGHUP) so it drops the key"
                    ),
                )
            } else {
                let name = vm_seal::Name::new(k.cluster.as_str())
                    .ok()
                    .zip(k.id.parse().ok())
                    .map_or_else(
                        || "CLUSTER-KEYID.key".to_owned(),
                        |(c, id)| key_file_name(&c, id),
                    );
                let dir = key_dir.display();
                (
                    format!(
                        "node {node} holds key {} (fingerprint {}), which this node lacks",
                        k.label(),
                        k.fingerprint
                    ),
                    format!(
                        "if the key is current, copy it here (scp -p {node}:{dir}/{name} {dir}/) and \
                         reload vm-stonithd here (SIGHUP); if it is retired, remove it on {node} \
                         and reload vm-stonithd there (SIGHUP)"
                    ),
                )
            };
            out.push(finding(
                FindingCode::NodeKeyExtra,
                Level::Warning,
                message,
                fix,
            ));
        }
        if problems == 0 {
            out.push(finding(FindingCode::NodeKeysSame,
                Level::Ok,
                format!(
                    "node {node}'s vm-stonithd holds the same {} key(s) as this node's key directory",
                    local.len()
                ),
                String::new(),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_fence::published::fixtures::{FP1, FP2, ID1, ID2};

    fn local() -> Vec<LocalKey> {
        vec![
            LocalKey {
                stamp: KeyStamp::new("web", ID1, FP1),
                file: PathBuf::from(format!("/k/web-{ID1}.key")),
            },
            LocalKey {
                stamp: KeyStamp::new("db:x", ID2, FP2),
                file: PathBuf::from(format!("/k/db:x-{ID2}.key")),
            },
        ]
    }

    fn node(name: &str, online: bool, published: Option<&str>) -> NodeKeys {
        NodeKeys {
            node: name.into(),
            online,
            published: published.map(String::from),
        }
    }

    #[test]
    fn same_keys_everywhere_is_ok() {
        let v =
            vm_fence::published::format(&local().into_iter().map(|l| l.stamp).collect::<Vec<_>>());
        let f = compare(
            &local(),
            Path::new("/k"),
            Some("n1"),
            &[node("n1", true, Some(&v)), node("n2", true, Some(&v))],
        );
        assert!(f.iter().all(|f| f.level == Level::Ok), "{f:?}");
        assert_eq!(f.len(), 2);
        assert_eq!(
            f.iter().map(|f| f.code).collect::<Vec<_>>(),
            [FindingCode::NodeKeysSame, FindingCode::NodeKeysSame]
        );
        assert!(f[1].message.contains("n2"), "{f:?}");
    }

    #[test]
    fn missing_different_extra_and_silent_nodes() {
        let other = format!("web:{ID1}:{FP2},other:{}:{FP1}", "aaaaaaaaaaaaaaaa");
        let f = compare(
            &local(),
            Path::new("/k"),
            Some("n1"),
            &[
                node("n2", true, Some(&other)),
                node("n3", true, None),
                node("n4", false, None),
                node("n5", true, Some("garbage")),
            ],
        );
        // the one finding of `code`, at `level`, about `node`
        let find = |code: FindingCode, level: Level, node: &str| {
            let hits: Vec<&Finding> = f.iter().filter(|f| f.code == code).collect();
            match hits.as_slice() {
                [one] if one.level == level && one.message.contains(node) => *one,
                _ => panic!("not one {level:?} {code:?} about {node} in {f:#?}"),
            }
        };
        let diff = find(FindingCode::NodeKeyDiffers, Level::Error, "n2");
        assert!(diff.message.contains(&format!("web:{ID1}")));
        assert!(diff.message.contains(FP2) && diff.message.contains(FP1));
        assert!(
            diff.fix
                .starts_with(&format!("scp -p /k/web-{ID1}.key n2:/k/web-{ID1}.key")),
            "{}",
            diff.fix
        );
        assert!(diff.fix.contains("reload vm-stonithd on n2"));
        let lack = find(FindingCode::NodeKeyMissing, Level::Error, "n2");
        assert!(lack.message.contains(&format!("db:x:{ID2}")));
        assert!(lack.fix.contains(&format!("scp -p /k/db:x-{ID2}.key n2:")));
        let extra = find(FindingCode::NodeKeyExtra, Level::Warning, "n2");
        assert!(extra.message.contains("other:aaaaaaaaaaaaaaaa"));
        assert!(
            extra
                .fix
                .contains("scp -p n2:/k/other-aaaaaaaaaaaaaaaa.key /k/"),
            "{}",
            extra.fix
        );
        assert!(
            extra.fix.contains("reload vm-stonithd here (SIGHUP)"),
            "{}",
            extra.fix
        );
        // SIGHUP loads and drops keys: no fix says to restart (which rolls back fences)
        assert!(f.iter().all(|f| !f.fix.contains("restart")), "{f:#?}");
        let silent = find(FindingCode::NodePublishesNothing, Level::Warning, "n3");
        assert!(silent.message.contains(PUBLISHED_KEYS_ATTR));
        find(FindingCode::NodeOffline, Level::Ok, "n4");
        find(FindingCode::NodePublishesMalformed, Level::Warning, "n5");
        assert!(
            f.iter()
                .filter(|f| f.level != Level::Ok)
                .all(|f| !f.fix.is_empty()),
            "{f:#?}"
        );
    }

    #[test]
    fn this_node_out_of_date_means_reload_here() {
        let f = compare(
            &local(),
            Path::new("/k"),
            Some("n1"),
            &[node("n1", true, Some(&format!("web:{ID1}:{FP1}")))],
        );
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(
            (f[0].code, f[0].level),
            (FindingCode::NodeKeyMissing, Level::Error)
        );
        assert!(f[0].message.contains("db:x"), "{f:?}");
        assert!(f[0].fix.contains("reload vm-stonithd on this node (n1)"));
    }

    #[test]
    fn nothing_anywhere_is_one_ok() {
        let f = compare(
            &[],
            Path::new("/k"),
            None,
            &[node("n1", true, None), node("n2", true, Some(""))],
        );
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].level, Level::Ok);
        assert_eq!(f[0].code, FindingCode::NoKeysAnywhere);
    }

    #[test]
    fn node_keys_from_the_status_section() {
        let cib = Cib::parse(&format!(
            r#"<cib><configuration><nodes><node id="1" uname="n1"/><node id="2" uname="n2"/><node id="3" uname="n3"/></nodes></configuration>
            <status>
              <node_state id="1" uname="n1" in_ccm="true" crmd="online">
                <transient_attributes id="1"><instance_attributes id="status-1">
                  <nvpair id="status-1-k" name="{PUBLISHED_KEYS_ATTR}" value="web:{ID1}:{FP1}"/>
                </instance_attributes></transient_attributes>
              </node_state>
              <node_state id="2" uname="n2" in_ccm="1700000000" crmd="1700000001"/>
              <node_state id="3" uname="n3" in_ccm="false" crmd="offline"/>
            </status></cib>"#
        ))
        .unwrap();
        let n = node_keys(&cib);
        assert_eq!(
            n,
            [
                node("n1", true, Some(&format!("web:{ID1}:{FP1}"))),
                node("n2", true, None),
                node("n3", false, None),
            ]
        );
    }
}
