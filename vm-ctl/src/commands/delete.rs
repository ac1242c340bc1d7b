//! `resource delete`: remove guests' resources and every constraint on them.
//!
//! Deleting the resource of a guest that still runs would leave a VM Pacemaker no longer
//! knows about (a leaked guest), so a running guest is refused, a stop in progress is waited
//! for, and a guest is removed only once the cluster has confirmed it stopped everywhere: its
//! status says Stopped and every online node has probed it (right after a cleanup the status is
//! empty until the probes return, and "not in the status" does not mean "not running").

use std::time::{Duration, Instant};

use vm_pcmk::{Cib, ClusterStatus, Role, Update};

use crate::App;
use crate::change::{Checked, finish};
use crate::error::{Error, Result};
use crate::guest;
use crate::ids;
use crate::output::{Change, GuestReport, Outcome};

use super::{ATTEMPTS, DEFAULT_WAIT_SECS, check_domains};

/// Why a guest cannot be deleted yet (but will be, soon).
enum Pending {
    Stopping(String),
    NotProbed(String),
}

/// Delete the guests (all or nothing).
pub fn run(app: &App, domains: &[String], wait: Option<u64>) -> Result<Outcome> {
    check_domains(domains)?;
    let _lock = app.lock()?;
    let secs = wait.unwrap_or(DEFAULT_WAIT_SECS);
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let status = app.pcmk.status()?;
        let result = app.pcmk.transact(ATTEMPTS, |cib| {
            let before = cib.clone();
            let mut reports = Vec::new();
            let mut pending = Vec::new();
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
                if let Some(p) = confirm_stopped(cib, &status, dom, &rsc)? {
                    pending.push(p);
                    continue;
                }
                let mut removed = guest::remove_with_constraints(cib, &rsc);
                removed.extend(remove_force_stop_attrs(cib, &rsc));
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
                return Ok(result.notes.into_outcome(Outcome {
                    guests,
                    ..Outcome::default()
                }));
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
    for node in status.nodes.iter().filter(|n| n.online) {
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
