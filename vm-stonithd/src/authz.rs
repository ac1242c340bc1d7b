//! Who may ask for what: the checks made on an opened request before anything is done.
//!
//! The host knows which guest a request came from by the channel it arrived on (the origin
//! vm-connectd attaches), never by anything the guest says. The key proves which guest cluster
//! sealed it. A request is carried out only if vm-connectd learnt the origin in a way the
//! operator trusts (`trusted_identities`: libvirt and the operator's `--guest` mapping by
//! default, never a socket's file name unless listed), the origin is a member of that cluster,
//! the requester named inside the seal is that member, and the target is one the cluster may
//! fence.

use vm_proto::{Origin, OriginSource};
use vm_seal::{FenceRequest, Name};

use crate::config::{ClusterPolicy, identity_name};

/// Why a request is refused (each maps to one log line and a Refused reply).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// vm-connectd knows the guest the request came from only in a way not trusted here.
    #[error(
        "request arrived over the channel of {origin}, which host vm-connectd knows by its \
         {source_text}, an identity vm-stonithd.toml does not trust (trusted_identities lacks \
         \"{identity}\")",
        source_text = match known_by {
            OriginSource::SocketName => "socket's file name (--no-libvirt)",
            OriginSource::Configured => "operator's mapping (--guest)",
            OriginSource::Libvirt => "libvirt domain",
        },
        identity = identity_name(*known_by)
    )]
    UntrustedIdentity {
        /// The guest whose channel it came over.
        origin: String,
        /// How vm-connectd knows it.
        known_by: OriginSource,
    },
    /// The channel the request came over does not belong to a member of the key's cluster.
    #[error(
        "request sealed with guest cluster {cluster}'s key arrived over the channel of {origin}, \
         which is not a member of {cluster}"
    )]
    ForeignChannel {
        /// The key's cluster.
        cluster: Name,
        /// The guest whose channel it came over.
        origin: String,
    },
    /// The requester named in the seal is not the guest whose channel it came over.
    #[error(
        "request names requester {requester} but arrived over the channel of {origin} \
         (whose node name is {expected})"
    )]
    RequesterMismatch {
        /// Who the request says it is from.
        requester: Name,
        /// The channel's guest.
        origin: Name,
        /// The node name expected for it.
        expected: Name,
    },
    /// The cluster may not fence the target.
    #[error("guest cluster {cluster} may not fence {target} (not among its targets)")]
    ForeignTarget {
        /// The cluster.
        cluster: Name,
        /// The target asked for.
        target: Name,
    },
}

/// Checks that vm-connectd learnt `origin` in one of the `trusted` ways.
pub fn trusted(trusted: &[OriginSource], origin: &Origin) -> Result<(), Refusal> {
    if trusted.contains(&origin.source()) {
        Ok(())
    } else {
        Err(Refusal::UntrustedIdentity {
            origin: origin.domain().to_owned(),
            known_by: origin.source(),
        })
    }
}

/// Checks `request`, sealed with `cluster`'s key, arriving over `origin`'s channel, which
/// vm-connectd must have learnt in one of the `trusted` ways.
pub fn check(
    cluster: &ClusterPolicy,
    trusted_sources: &[OriginSource],
    origin: &Origin,
    request: &FenceRequest,
) -> Result<(), Refusal> {
    trusted(trusted_sources, origin)?;
    let origin = origin.domain();
    let Some(member) = cluster.members.iter().find(|m| m.as_str() == origin) else {
        return Err(Refusal::ForeignChannel {
            cluster: cluster.name.clone(),
            origin: origin.to_owned(),
        });
    };
    let expected = cluster.node_name(member);
    if request.requester != *expected && request.requester != *member {
        return Err(Refusal::RequesterMismatch {
            requester: request.requester.clone(),
            origin: member.clone(),
            expected: expected.clone(),
        });
    }
    if let Some(target) = &request.target
        && !cluster.targets.contains(target)
    {
        return Err(Refusal::ForeignTarget {
            cluster: cluster.name.clone(),
            target: target.clone(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};
    use std::time::Duration;
    use vm_seal::Action;

    fn n(s: &str) -> Name {
        Name::new(s).unwrap()
    }

    fn policy() -> ClusterPolicy {
        ClusterPolicy {
            name: n("web"),
            members: BTreeSet::from([n("web1"), n("web2")]),
            targets: BTreeSet::from([n("web1"), n("web2")]),
            node_names: BTreeMap::from([(n("web1"), n("www-a"))]),
            resources: BTreeMap::new(),
            legacy: false,
        }
    }

    /// `domain` as libvirt names it.
    fn lv(domain: &str) -> Origin {
        Origin::new(domain, "", OriginSource::Libvirt).unwrap()
    }

    const DEFAULT: &[OriginSource] = crate::config::DEFAULT_TRUSTED_IDENTITIES;

    fn req(requester: &str, target: &str) -> FenceRequest {
        FenceRequest::new(
            Action::Off,
            Some(n(target)),
            n(requester),
            Duration::from_secs(1),
        )
        .unwrap()
    }

    #[test]
    fn member_fencing_a_target_is_allowed() {
        check(&policy(), DEFAULT, &lv("web2"), &req("web2", "web1")).unwrap();
        // by node name or by domain name
        check(&policy(), DEFAULT, &lv("web1"), &req("www-a", "web2")).unwrap();
        check(&policy(), DEFAULT, &lv("web1"), &req("web1", "web2")).unwrap();
        // the operator's mapping is trusted by default
        let mapped = Origin::new("web2", "", OriginSource::Configured).unwrap();
        check(&policy(), DEFAULT, &mapped, &req("web2", "web1")).unwrap();
    }

    #[test]
    fn a_channel_known_by_its_file_name_only_is_refused_unless_trusted() {
        let named = Origin::new("web2", "", OriginSource::SocketName).unwrap();
        let e = check(&policy(), DEFAULT, &named, &req("web2", "web1")).unwrap_err();
        assert_eq!(
            e,
            Refusal::UntrustedIdentity {
                origin: "web2".into(),
                known_by: OriginSource::SocketName
            }
        );
        let why = e.to_string();
        assert!(
            why.contains("file name") && why.contains("\"socket-name\""),
            "{why}"
        );
        // an operator who runs vm-connectd without libvirt says so
        let all = [OriginSource::Libvirt, OriginSource::SocketName];
        check(&policy(), &all, &named, &req("web2", "web1")).unwrap();
        // and one who trusts libvirt only refuses the --guest mapping too
        let mapped = Origin::new("web2", "", OriginSource::Configured).unwrap();
        assert!(matches!(
            check(
                &policy(),
                &[OriginSource::Libvirt],
                &mapped,
                &req("web2", "web1")
            ),
            Err(Refusal::UntrustedIdentity { .. })
        ));
    }

    #[test]
    fn every_mismatch_is_refused() {
        assert!(matches!(
            check(&policy(), DEFAULT, &lv("db1"), &req("web2", "web1")),
            Err(Refusal::ForeignChannel { .. })
        ));
        assert!(matches!(
            check(&policy(), DEFAULT, &lv("web2"), &req("web1", "web1")),
            Err(Refusal::RequesterMismatch { .. })
        ));
        assert!(matches!(
            check(&policy(), DEFAULT, &lv("web2"), &req("web2", "db1")),
            Err(Refusal::ForeignTarget { .. })
        ));
    }
}
