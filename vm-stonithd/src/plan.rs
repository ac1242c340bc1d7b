//! The CIB changes a fence makes, as pure edits of a CIB snapshot (applied with
//! [`vm_pcmk::Pacemaker::transact`], so each is one atomic compare-and-swap write).
//!
//! `off` sets, in one change: the guest's `target-role=Stopped`; the node attribute
//! `force_stop-<rsc>=true` on every node, which makes the stop a hard power-off wherever the
//! guest runs (`ocf:pm-kvm-tools:VirtualDomain` reads it when the stop runs, see
//! [`vm_pcmk::virtualdomain`]); and a **journal** meta attribute `pmkt-fence` on the primitive recording who started the fence
//! and what to restore. `on` sets `target-role=Started` and the journal. Once the host cluster
//! confirms, [`finish`] removes the journal and the power-off switch, keeping the new role;
//! on timeout or failure, [`rollback`] restores the role as it was.
//!
//! Keeping the journal in the CIB, in the very change it describes, means there is never a
//! change without its record: a vm-stonithd that crashes mid-fence finds its own records at
//! start and rolls them back ([`journals`]); a record whose owner's deadline passed long ago
//! (its node died) is taken over by the next fence of that guest or cleaned by any daemon.
//!
//! The same changes carry the guest's last-fence record for `vm-ctl status`
//! ([`vm_fence::record`], a transient attribute of the executing node): [`write_record`] in the
//! change that begins a fence, [`end_record`] in the one that ends it.

use std::time::SystemTime;

use vm_fence::Power;
pub use vm_fence::journal::{ForceMode, JOURNAL_ATTR, Journal, Owner, TAKEOVER_GRACE, unix};
use vm_fence::record::{self, FenceRecord, FenceResult};
use vm_pcmk::Cib;
use vm_pcmk::virtualdomain::{force_stop_attr, guest_resource, is_virtual_domain};
use vm_seal::Name;

/// Why a target cannot be fenced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// No resource for the target.
    #[error(
        "no VirtualDomain resource for guest {target} in the host CIB (looked for {looked}); \
         add it with `vm-ctl resource add {target}`, or map it in vm-stonithd.toml `resources`"
    )]
    NoResource {
        /// The target.
        target: Name,
        /// What was looked for.
        looked: String,
    },
    /// More than one candidate.
    #[error(
        "guest {target} matches several VirtualDomain resources ({found}); map it in vm-stonithd.toml `resources`"
    )]
    Ambiguous {
        /// The target.
        target: Name,
        /// The candidates.
        found: String,
    },
    /// The resource is not a VirtualDomain primitive.
    #[error("resource {rsc} for guest {target} is not an ocf VirtualDomain primitive")]
    NotVirtualDomain {
        /// The target.
        target: Name,
        /// The resource.
        rsc: String,
    },
    /// Another fence of the same guest, with another action, is in progress.
    #[error(
        "a fence '{action}' of {rsc} by {owner} is in progress (until {deadline}); retry after it"
    )]
    Busy {
        /// The resource.
        rsc: String,
        /// Its action.
        action: Power,
        /// Who runs it.
        owner: String,
        /// Its deadline (Unix seconds).
        deadline: u64,
    },
}

/// Finds the host resource of guest `target`: the configured override, else `prmVMCTL_<target>`
/// (what vm-ctl creates), else the one VirtualDomain primitive whose `config` file is named
/// `<target>.xml`.
pub fn target_resource(
    cib: &Cib,
    target: &Name,
    overrides: Option<&String>,
) -> Result<String, PlanError> {
    let check = |rsc: &str| -> Result<String, PlanError> {
        match cib.resource(rsc) {
            Some(p) if is_virtual_domain(p) => Ok(rsc.to_owned()),
            Some(_) => Err(PlanError::NotVirtualDomain {
                target: target.clone(),
                rsc: rsc.to_owned(),
            }),
            None => Err(PlanError::NoResource {
                target: target.clone(),
                looked: rsc.to_owned(),
            }),
        }
    };
    if let Some(rsc) = overrides {
        return check(rsc);
    }
    let vmctl = guest_resource(target.as_str());
    if cib.resource(&vmctl).is_some() {
        return check(&vmctl);
    }
    let file = format!("{target}.xml");
    let found: Vec<&str> = cib
        .section("resources")
        .map(|r| r.descendants())
        .unwrap_or_default()
        .into_iter()
        .filter(|p| is_virtual_domain(p))
        .filter(|p| {
            p.elements()
                .filter(|s| s.name == "instance_attributes")
                .flat_map(|s| s.elements())
                .any(|nv| {
                    nv.get("name") == Some("config")
                        && nv.get("value").is_some_and(|v| {
                            std::path::Path::new(v).file_name() == Some(file.as_ref())
                        })
                })
        })
        .filter_map(|p| p.id())
        .collect();
    match found.as_slice() {
        [one] => Ok((*one).to_owned()),
        [] => Err(PlanError::NoResource {
            target: target.clone(),
            looked: format!("{vmctl}, or a VirtualDomain with config .../{file}"),
        }),
        many => Err(PlanError::Ambiguous {
            target: target.clone(),
            found: many.join(", "),
        }),
    }
}

/// The journal entry on `rsc`, if any.
pub fn journal(cib: &Cib, rsc: &str) -> Option<Journal> {
    cib.meta_attribute(rsc, JOURNAL_ATTR)
        .and_then(Journal::parse)
}

/// Every resource with a journal entry.
pub fn journals(cib: &Cib) -> Vec<(String, Journal)> {
    cib.section("resources")
        .map(|r| r.descendants())
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.name == "primitive")
        .filter_map(|p| {
            let id = p.id()?;
            Some((id.to_owned(), journal(cib, id)?))
        })
        .collect()
}

/// What [`begin`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    /// The CIB was edited: write it; this journal entry is ours.
    Started(Journal),
    /// Another owner runs the same action and is within its time: wait with it, write nothing.
    Joined(Journal),
}

/// Whether `rsc` is already pinned where `action` sends it, with no fence in
/// progress: its target-role says so and it has no journal. (Whether it is *there* is for the
/// cluster's status to say.)
pub fn pinned(cib: &Cib, rsc: &str, action: Power) -> bool {
    let want = if action == Power::Off {
        "Stopped"
    } else {
        "Started"
    };
    cib.resource(rsc).is_some()
        && cib
            .meta_attribute(rsc, "target-role")
            .is_some_and(|r| r.eq_ignore_ascii_case(want))
        && journal(cib, rsc).is_none()
}

/// Starts `action` on `rsc` for `owner`, until `deadline`.
pub fn begin(
    cib: &mut Cib,
    rsc: &str,
    action: Power,
    owner: &Owner,
    deadline: SystemTime,
    now: SystemTime,
) -> Result<Begin, PlanError> {
    let mut prior_role = cib.meta_attribute(rsc, "target-role").map(str::to_owned);
    if let Some(j) = journal(cib, rsc) {
        if j.owner == *owner {
            return Ok(Begin::Joined(j));
        }
        if !j.expired(now) {
            if j.action == action {
                return Ok(Begin::Joined(j));
            }
            return Err(PlanError::Busy {
                rsc: rsc.to_owned(),
                action: j.action,
                owner: j.owner.to_token(),
                deadline: j.deadline,
            });
        }
        // Take over a dead owner's entry: what it recorded is the state before any fence.
        undo_force(cib, rsc, &j.force);
        prior_role = j.prior_role;
    }
    let force = if action == Power::Off {
        let attr = force_stop_attr(rsc);
        let nodes: Vec<String> = cib.node_names().into_iter().map(str::to_owned).collect();
        for node in nodes {
            cib.set_node_attribute(&node, &attr, "true");
        }
        ForceMode::NodeAttr
    } else {
        ForceMode::None
    };
    cib.set_meta_attribute(
        rsc,
        "target-role",
        if action == Power::Off {
            "Stopped"
        } else {
            "Started"
        },
    );
    let entry = Journal {
        action,
        owner: owner.clone(),
        deadline: unix(deadline),
        prior_role,
        force,
    };
    cib.set_meta_attribute(rsc, JOURNAL_ATTR, &entry.to_value());
    Ok(Begin::Started(entry))
}

/// Ends the fence on `rsc` owned by `owner` as done: removes the journal and the power-off
/// switch, keeps the new target-role. Returns whether the CIB changed (`false` when the entry
/// is gone or belongs to someone else).
pub fn finish(cib: &mut Cib, rsc: &str, owner: &Owner) -> bool {
    end(cib, rsc, Some(owner), false)
}

/// Ends the fence on `rsc` owned by `owner` (any owner if `None`) as failed: restores the
/// target-role it found, removes the journal and the power-off switch. Returns whether the CIB
/// changed.
pub fn rollback(cib: &mut Cib, rsc: &str, owner: Option<&Owner>) -> bool {
    end(cib, rsc, owner, true)
}

fn end(cib: &mut Cib, rsc: &str, owner: Option<&Owner>, restore: bool) -> bool {
    let Some(j) = journal(cib, rsc) else {
        return false;
    };
    if owner.is_some_and(|o| *o != j.owner) {
        return false;
    }
    undo_force(cib, rsc, &j.force);
    if restore {
        match &j.prior_role {
            Some(role) => cib.set_meta_attribute(rsc, "target-role", role),
            None => cib.remove_meta_attribute(rsc, "target-role"),
        };
    }
    cib.remove_meta_attribute(rsc, JOURNAL_ATTR);
    true
}

/// Writes `rec` as host node `node`'s last-fence record of `rsc` (in the status section, in the
/// change being made) and removes the records of `rsc` other nodes hold, so that a guest has
/// one. Returns whether it was written: `false` when `node` has no `node_state` to hold it
/// (never on a live cluster, whose member nodes all have one).
pub fn write_record(cib: &mut Cib, node: &str, rsc: &str, rec: &FenceRecord) -> bool {
    let attr = record::attr_name(rsc);
    let others: Vec<String> = cib
        .node_states()
        .filter_map(|s| s.get("uname"))
        .filter(|u| *u != node)
        .map(str::to_owned)
        .collect();
    for other in others {
        cib.remove_transient_attribute(&other, &attr);
    }
    let value = rec.to_value();
    cib.set_transient_attribute(node, &attr, &value)
        || cib.transient_attribute(node, &attr) == Some(value.as_str())
}

/// The record of a fence of `rsc` in progress, and the node that holds it.
pub fn record_in_progress(cib: &Cib, rsc: &str) -> Option<(String, FenceRecord)> {
    let attr = record::attr_name(rsc);
    cib.node_states()
        .filter_map(|s| s.get("uname"))
        .find_map(|node| {
            let rec = FenceRecord::parse(cib.transient_attribute(node, &attr)?).ok()?;
            (rec.result == FenceResult::InProgress).then(|| (node.to_owned(), rec))
        })
}

/// Ends the record of the fence of `rsc` in progress with `result` at `at` (Unix seconds),
/// where it is; returns whether there was one to end (a node that left the cluster since took
/// its records with it).
pub fn end_record(cib: &mut Cib, rsc: &str, result: FenceResult, at: u64) -> bool {
    match record_in_progress(cib, rsc) {
        Some((node, rec)) => cib.set_transient_attribute(
            &node,
            &record::attr_name(rsc),
            &rec.ended(result, at).to_value(),
        ),
        None => false,
    }
}

fn undo_force(cib: &mut Cib, rsc: &str, force: &ForceMode) {
    match force {
        ForceMode::None => {}
        ForceMode::NodeAttr => {
            let attr = force_stop_attr(rsc);
            let nodes: Vec<String> = cib.node_names().into_iter().map(str::to_owned).collect();
            for node in nodes {
                cib.remove_node_attribute(&node, &attr);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn cib() -> Cib {
        Cib::parse(
            r#"<cib admin_epoch="0" epoch="1" num_updates="0"><configuration><crm_config/>
            <nodes><node id="1" uname="n1"/><node id="2" uname="n2"/></nodes>
            <resources>
              <primitive id="prmVMCTL_g1" class="ocf" provider="heartbeat" type="VirtualDomain">
                <instance_attributes id="a"><nvpair id="a-c" name="config" value="/etc/libvirt/qemu/g1.xml"/></instance_attributes>
                <meta_attributes id="m"><nvpair id="m-t" name="target-role" value="Started"/></meta_attributes>
              </primitive>
              <primitive id="vm_other" class="ocf" provider="heartbeat" type="VirtualDomain">
                <instance_attributes id="b"><nvpair id="b-c" name="config" value="/srv/vm/g2.xml"/></instance_attributes>
              </primitive>
              <primitive id="d" class="ocf" provider="pacemaker" type="Dummy"/>
            </resources><constraints/></configuration><status/></cib>"#,
        )
        .unwrap()
    }

    fn owner(node: &str) -> Owner {
        Owner {
            node: node.into(),
            pid: 42,
            request: "00ff".into(),
        }
    }

    fn n(s: &str) -> Name {
        Name::new(s).unwrap()
    }

    #[test]
    fn resolves_targets() {
        let c = cib();
        assert_eq!(target_resource(&c, &n("g1"), None).unwrap(), "prmVMCTL_g1");
        assert_eq!(target_resource(&c, &n("g2"), None).unwrap(), "vm_other");
        assert!(matches!(
            target_resource(&c, &n("g3"), None),
            Err(PlanError::NoResource { .. })
        ));
        assert!(matches!(
            target_resource(&c, &n("g3"), Some(&"d".to_owned())),
            Err(PlanError::NotVirtualDomain { .. })
        ));
    }

    #[test]
    fn pinned_means_target_role_there_and_no_fence_in_progress() {
        let now = SystemTime::now();
        let mut c = cib();
        // target-role=Started in the fixture
        assert!(pinned(&c, "prmVMCTL_g1", Power::On));
        assert!(!pinned(&c, "prmVMCTL_g1", Power::Off));
        assert!(!pinned(&c, "prmVMCTL_none", Power::On));
        begin(&mut c, "prmVMCTL_g1", Power::Off, &owner("n1"), now, now).unwrap();
        // Stopped, but a fence is in progress (its journal): not settled
        assert!(!pinned(&c, "prmVMCTL_g1", Power::Off));
        assert!(finish(&mut c, "prmVMCTL_g1", &owner("n1")));
        assert!(pinned(&c, "prmVMCTL_g1", Power::Off));
    }

    #[test]
    fn off_sets_node_attributes_and_rollback_restores_everything() {
        let now = SystemTime::now();
        let before = cib();
        let mut c = before.clone();
        let Begin::Started(j) =
            begin(&mut c, "prmVMCTL_g1", Power::Off, &owner("n1"), now, now).unwrap()
        else {
            panic!("not started")
        };
        assert_eq!(j.force, ForceMode::NodeAttr);
        assert_eq!(j.prior_role.as_deref(), Some("Started"));
        assert_eq!(
            c.meta_attribute("prmVMCTL_g1", "target-role"),
            Some("Stopped")
        );
        for node in ["n1", "n2"] {
            assert_eq!(
                c.node_attribute(node, "force_stop-prmVMCTL_g1"),
                Some("true")
            );
        }
        assert_eq!(journal(&c, "prmVMCTL_g1"), Some(j.clone()));
        assert_eq!(journals(&c).len(), 1);
        // someone else's rollback does nothing; ours restores the CIB exactly
        assert!(!rollback(&mut c.clone(), "prmVMCTL_g1", Some(&owner("n2"))));
        assert!(rollback(&mut c, "prmVMCTL_g1", Some(&owner("n1"))));
        assert_eq!(c, before);
    }

    #[test]
    fn finish_keeps_it_stopped_and_clears_the_rest() {
        let now = SystemTime::now();
        let mut c = cib();
        begin(&mut c, "prmVMCTL_g1", Power::Off, &owner("n1"), now, now).unwrap();
        assert!(finish(&mut c, "prmVMCTL_g1", &owner("n1")));
        assert_eq!(c.node_attribute("n1", "force_stop-prmVMCTL_g1"), None);
        assert_eq!(
            c.meta_attribute("prmVMCTL_g1", "target-role"),
            Some("Stopped")
        );
        assert_eq!(journal(&c, "prmVMCTL_g1"), None);
        assert!(!finish(&mut c, "prmVMCTL_g1", &owner("n1")));
        // `on` touches no attribute and restores the role it found on rollback
        let Begin::Started(j) =
            begin(&mut c, "prmVMCTL_g1", Power::On, &owner("n1"), now, now).unwrap()
        else {
            panic!("not started")
        };
        assert_eq!(
            (j.force, j.prior_role.as_deref()),
            (ForceMode::None, Some("Stopped"))
        );
        assert!(rollback(&mut c, "prmVMCTL_g1", None));
        assert_eq!(
            c.meta_attribute("prmVMCTL_g1", "target-role"),
            Some("Stopped")
        );
    }

    #[test]
    fn the_record_is_written_by_the_executing_node_and_ended_where_it_is() {
        use vm_fence::record::FenceAction;
        let mut c = Cib::parse(
            r#"<cib admin_epoch="0" epoch="1" num_updates="0"><configuration><nodes><node id="1" uname="n1"/><node id="2" uname="n2"/><node id="3" uname="n3"/></nodes></configuration>
            <status><node_state id="1" uname="n1"/><node_state id="2" uname="n2"/></status></cib>"#,
        )
        .unwrap();
        let rec = FenceRecord {
            action: FenceAction::Reboot,
            result: FenceResult::InProgress,
            started: 100,
            ended: None,
            cluster: Name::new("web").ok(),
            requester: Name::new("w1").ok(),
            origin: Name::new("w1").ok(),
        };
        let attr = "pmkt-fence-last-prmVMCTL_g1";
        // an older record on n2 goes: one record per guest
        let old = rec.ended(FenceResult::Failed, 50);
        assert!(write_record(&mut c, "n2", "prmVMCTL_g1", &old));
        assert!(write_record(&mut c, "n1", "prmVMCTL_g1", &rec));
        assert_eq!(c.transient_attribute("n2", attr), None);
        assert_eq!(
            record_in_progress(&c, "prmVMCTL_g1"),
            Some(("n1".to_owned(), rec.clone()))
        );
        // the same record again changes nothing, and still counts as written
        let before = c.clone();
        assert!(write_record(&mut c, "n1", "prmVMCTL_g1", &rec));
        assert_eq!(c, before);
        assert!(end_record(&mut c, "prmVMCTL_g1", FenceResult::Done, 104));
        assert_eq!(
            c.transient_attribute("n1", attr).map(FenceRecord::parse),
            Some(Ok(rec.ended(FenceResult::Done, 104)))
        );
        // nothing in progress any more: nothing to end
        assert!(!end_record(&mut c, "prmVMCTL_g1", FenceResult::Failed, 105));
        assert_eq!(record_in_progress(&c, "prmVMCTL_g1"), None);
        // a node without node_state holds no record
        assert!(!write_record(&mut c, "n3", "prmVMCTL_g1", &rec));
    }

    #[test]
    fn concurrent_fences_join_refuse_or_take_over() {
        let now = SystemTime::now();
        let mut c = cib();
        let deadline = now + Duration::from_secs(60);
        begin(
            &mut c,
            "prmVMCTL_g1",
            Power::Off,
            &owner("n1"),
            deadline,
            now,
        )
        .unwrap();
        let mut c2 = c.clone();
        assert!(matches!(
            begin(
                &mut c2,
                "prmVMCTL_g1",
                Power::Off,
                &owner("n2"),
                deadline,
                now
            ),
            Ok(Begin::Joined(_))
        ));
        assert_eq!(c2, c, "joining writes nothing");
        assert!(matches!(
            begin(
                &mut c2,
                "prmVMCTL_g1",
                Power::On,
                &owner("n2"),
                deadline,
                now
            ),
            Err(PlanError::Busy { .. })
        ));
        // long after n1's deadline, n2 takes over and keeps the original prior role
        let later = deadline + TAKEOVER_GRACE + Duration::from_secs(1);
        let Begin::Started(j) = begin(
            &mut c2,
            "prmVMCTL_g1",
            Power::On,
            &owner("n2"),
            later,
            later,
        )
        .unwrap() else {
            panic!("no takeover")
        };
        assert_eq!(j.prior_role.as_deref(), Some("Started"));
        assert_eq!(c2.node_attribute("n1", "force_stop-prmVMCTL_g1"), None);
        assert_eq!(
            c2.meta_attribute("prmVMCTL_g1", "target-role"),
            Some("Started")
        );
    }
}
