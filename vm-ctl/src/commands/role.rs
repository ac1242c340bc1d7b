//! `resource start` / `resource stop`: set target-role, optionally wait for the cluster.

use vm_pcmk::Update;

use crate::App;
use crate::change::{Checked, finish};
use crate::error::Result;
use crate::guest;
use crate::ids;
use crate::output::{Change, GuestReport, Outcome};
use crate::wait::Goal;

use super::{ATTEMPTS, check_domains, wait_goals};

/// The role asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `start`.
    Started,
    /// `stop`.
    Stopped,
}

/// Set every guest's target-role in one CIB change; with `wait`, wait until they all got there.
pub fn run(app: &App, domains: &[String], role: Role, wait: Option<u64>) -> Result<Outcome> {
    check_domains(domains)?;
    let _lock = app.lock()?;
    let (value, changed) = match role {
        Role::Started => ("Started", Change::Started),
        Role::Stopped => ("Stopped", Change::Stopped),
    };
    let Checked {
        value: guests,
        notes,
    } = app.pcmk.transact(
        ATTEMPTS,
        |cib| -> Result<Update<Checked<Vec<GuestReport>>>> {
            let before = cib.clone();
            let mut reports = Vec::new();
            for dom in domains {
                guest::primitive(cib, dom)?;
                let rsc = ids::rsc(dom);
                let change = if guest::set_target_role(cib, &rsc, value) {
                    changed
                } else {
                    Change::Unchanged
                };
                let detail = if change == Change::Unchanged {
                    format!("target-role is already {value}")
                } else {
                    String::new()
                };
                reports.push(GuestReport {
                    domain: dom.clone(),
                    resource: rsc,
                    change,
                    detail,
                });
            }
            match finish(app, &before, cib, reports)? {
                Update::Write(r) => Ok(Update::Write(r)),
                Update::Unchanged(mut r) if app.dry_run => {
                    for g in &mut r.value {
                        if g.change != Change::Unchanged {
                            g.change = Change::WouldChange;
                        }
                    }
                    Ok(Update::Unchanged(r))
                }
                other => Ok(other),
            }
        },
    )?;
    let mut guests = guests;
    if let (Some(secs), false) = (wait, app.dry_run) {
        let goal = match role {
            Role::Started => Goal::Started,
            Role::Stopped => Goal::Stopped,
        };
        let targets: Vec<_> = domains
            .iter()
            .map(|d| (ids::rsc(d), goal.clone()))
            .collect();
        wait_goals(app, &targets, secs)?;
        let status = app.pcmk.status()?;
        for g in &mut guests {
            g.detail = format!("now {}", crate::wait::describe_state(&status, &g.resource));
        }
    }
    Ok(notes.into_outcome(Outcome {
        guests,
        ..Outcome::default()
    }))
}
