//! `resource delete`: remove guests' resources and every constraint on them.
//!
//! Deleting the resource of a guest that still runs would leave a VM Pacemaker no longer
//! knows about (a leaked guest), so a running guest is refused, a stop in progress is waited
//! for, and a guest is removed only once the cluster has confirmed it stopped everywhere: its
//! status says Stopped and every online node has probed it (right after a cleanup the status is
//! empty until the probes return, and "not in the status" does not mean "not running").
//!
//! A guest that is a guest node is refused first while resources are placed on it (location
//! constraints) or run on it (status), unless `--force`: deleting it would strand them. When
//! it goes, what Pacemaker keeps of the node goes in the same change
//! ([`guest_node::remove_traces`]: its node entry and status, and with `--force` the
//! constraints naming it); on the live cluster `crm_node --force --remove` then purges the
//! node from the cluster daemons' caches, as Pacemaker documents for removing a node.

use std::time::{Duration, Instant};

use vm_pcmk::{Cib, ClusterStatus, Role, Update};

use crate::App;
use crate::change::{Checked, finish};
use crate::error::{Error, Result};
use crate::guest;
use crate::guest_node;
use crate::ids;
use crate::output::{Change, GuestReport, Outcome};

use super::{ATTEMPTS, DEFAULT_WAIT_SECS, check_domains};

/// Why a guest cannot be deleted yet (but will be, soon).
enum Pending {
    Stopping(String),
    NotProbed(String),
}

/// Delete the guests (all or nothing).
pub fn run(app: &App, domains: &[String], wait: Option<u64>, force: bool) -> Result<Outcome> {
    check_domains(domains)?;
    let _lock = app.lock()?;
    let secs = wait.unwrap_or(DEFAULT_WAIT_SECS);
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let status = app.pcmk.status()?;
        let mut gone_nodes = Vec::new();
        let result = app.pcmk.transact(ATTEMPTS, |cib| {
            let before = cib.clone();
            let mut reports = Vec::new();
            let mut pending = Vec::new();
            gone_nodes.clear();
            for dom in domains {
                let rsc = ids::rsc(dom);
                if guest::primitive(cib, dom).is_err() {
                    reports.push(GuestReport {
                        domain: dom.clone(),
                        resource: rsc,
                        change: Change::Absent,
                        detail: String::new(),
                    });
                    continue;
                }
                let node = guest_node::of_guest(cib, dom);
                if let Some(n) = &node {
                    let uses = guest_node::in_use(cib, &status, &n.name, &rsc);
                    if !uses.is_empty() && !force {
                        return Err(Error::GuestNodeInUse {
                            dom: dom.clone(),
                            node: n.name.clone(),
                            uses: uses.join("; "),
                        });
                    }
                }
                if let Some(p) = confirm_stopped(cib, &status, dom, &rsc)? {
                    pending.push(p);
                    continue;
                }
                let mut removed = guest::remove_with_constraints(cib, &rsc);
                removed.extend(remove_force_stop_attrs(cib, &rsc));
                if let Some(n) = node {
                    removed.extend(guest_node::remove_traces(cib, &n.name));
                    gone_nodes.push(n.name);
                }
                reports.push(GuestReport {
                    domain: dom.clone(),
                    resource: rsc,
                    change: if app.dry_run {
                        Change::WouldChange
                    } else {
                        Change::Deleted
                    },
                    detail: format!("removed {}", removed.join(", ")),
                });
            }
            if !pending.is_empty() {
                return Ok(Update::Unchanged(Checked::plain(Err(pending))));
            }
            finish(app, &before, cib, Ok(reports))
        })?;
        match result.value {
            Ok(guests) => {
                let mut outcome = result.notes.into_outcome(Outcome {
                    guests,
                    ..Outcome::default()
                });
                if !app.dry_run {
                    for node in &gone_nodes {
                        if let Err(e) = app.pcmk.purge_remote_node(node) {
                            outcome.warnings.push(format!(
                                "guest node {node} is gone from the CIB, but the cluster's \
                                 caches could not be told ({}); run crm_node --force --remove \
                                 {node}",
                                vm_common::error_chain(&e)
                            ));
                        }
                    }
                }
                return Ok(outcome);
            }
            Err(pending) if Instant::now() >= deadline => {
                let (dom, problem) = match pending.into_iter().next() {
                    Some(Pending::Stopping(d)) => (d, "its stop is still in progress"),
                    Some(Pending::NotProbed(d)) => (
                        d,
                        "not every online node has reported whether it runs there (probe pending)",
                    ),
                    None => (String::new(), ""),
                };
                return Err(Error::State {
                    problem: format!(
                        "{problem} after {secs} s, so deleting it could leak a running guest; \
                         nothing was deleted; retry later or with --wait=SECS"
                    ),
                    dom,
                });
            }
            Err(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

/// `Ok(None)` when the guest is confirmed stopped; `Ok(Some(_))` when that is pending; an
/// error when it runs (or is meant to).
fn confirm_stopped(
    cib: &Cib,
    status: &ClusterStatus,
    dom: &str,
    rsc: &str,
) -> Result<Option<Pending>> {
    let instances: Vec<_> = status.instances(rsc).collect();
    let active: Vec<String> = instances
        .iter()
        .flat_map(|r| r.nodes.iter().cloned())
        .collect();
    let stopping = instances.iter().any(|r| r.role == Role::Stopping);
    let target_stopped = cib
        .meta_attribute(rsc, "target-role")
        .is_some_and(|v| v.eq_ignore_ascii_case("stopped"));
    if !active.is_empty() || instances.iter().any(|r| r.role != Role::Stopped) {
        if stopping && target_stopped {
            return Ok(Some(Pending::Stopping(dom.to_owned())));
        }
        return Err(Error::State {
            dom: dom.to_owned(),
            problem: format!(
                "{rsc} is {} and a deleted resource's guest would keep running unmanaged; stop \
                 it first: vm-ctl resource stop {dom} --wait",
                crate::wait::describe_state(status, rsc)
            ),
        });
    }
    // Pacemaker probes a guest node's resource (its container) on no remote or guest node
    let guest_nodes: Vec<String> = if guest_node::of_guest(cib, dom).is_some() {
        guest_node::all(cib).into_iter().map(|g| g.name).collect()
    } else {
        Vec::new()
    };
    for node in status
        .nodes
        .iter()
        .filter(|n| n.online && !guest_nodes.contains(&n.name))
    {
        if !probed(cib, &node.name, rsc) {
            return Ok(Some(Pending::NotProbed(dom.to_owned())));
        }
    }
    Ok(None)
}

/// Whether `node`'s status section in the CIB has an operation history for `rsc`.
fn probed(cib: &Cib, node: &str, rsc: &str) -> bool {
    cib.root()
        .find("status")
        .into_iter()
        .flat_map(|s| s.elements())
        .filter(|ns| ns.name == "node_state" && ns.get("uname") == Some(node))
        .any(|ns| {
            ns.path(&["lrm", "lrm_resources"])
                .is_some_and(|l| l.elements().any(|r| r.id() == Some(rsc)))
        })
}

/// Remove `force_stop-<rsc>` node attributes left for the guest.
fn remove_force_stop_attrs(cib: &mut Cib, rsc: &str) -> Vec<String> {
    let attr = ids::force_stop_attr(rsc);
    let mut removed = Vec::new();
    for node in cib.section_mut("nodes").elements_mut() {
        for set in node
            .elements_mut()
            .filter(|s| s.name == "instance_attributes")
        {
            set.remove_children(|nv| {
                let hit = nv.get("name") == Some(attr.as_str());
                if hit {
                    removed.push(nv.id().unwrap_or("").to_owned());
                }
                hit
            });
        }
    }
    removed
}
