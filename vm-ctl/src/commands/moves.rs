//! `resource move` and `resource unmove`.
//!
//! A move is Pacemaker's own mechanism: a temporary location constraint, the same one
//! `crm_resource --move` (`cli-prefer-<rsc>`, to a node) or `--ban` (`cli-ban-<rsc>-on-<node>`,
//! away from the current node) writes, so `crm_resource --clear` and `pcs resource clear`
//! remove ours too. Before writing it, `crm_simulate` on the edited snapshot tells whether
//! Pacemaker would really put the guest there; a move it would not carry out is refused.

use vm_pcmk::xml::Element;
use vm_pcmk::{Cib, Role, Update};

use crate::App;
use crate::change::{Checked, finish};
use crate::error::{Error, Result};
use crate::guest;
use crate::ids;
use crate::output::{Change, GuestReport, Outcome};
use crate::wait::Goal;

use super::{ATTEMPTS, wait_goals};

/// How `move` behaves after writing the constraint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MoveOpts {
    /// Wait this many seconds for the move (`None`: do not wait, keep the constraint).
    pub wait: Option<u64>,
    /// Keep the constraint after the move.
    pub keep: bool,
}

fn remove_move_constraints(cib: &mut Cib, rsc: &str) -> Vec<String> {
    let mut removed = Vec::new();
    cib.section_mut("constraints").remove_children(|c| {
        let hit =
            c.name == "rsc_location" && c.id().is_some_and(|id| ids::is_move_constraint(rsc, id));
        if hit {
            removed.push(c.id().unwrap_or("").to_owned());
        }
        hit
    });
    removed
}

/// Move a running guest to `node`, or away from where it runs.
pub fn run_move(app: &App, dom: &str, node: Option<&str>, opts: MoveOpts) -> Result<Outcome> {
    ids::check_name("domain", dom)?;
    if let Some(n) = node {
        ids::check_name("node", n)?;
    }
    let _lock = app.lock()?;
    let rsc = ids::rsc(dom);
    let state_err = |problem: String| Error::State {
        dom: dom.to_owned(),
        problem,
    };

    let cib = app.pcmk.snapshot()?;
    guest::primitive(&cib, dom)?;
    let status = app.pcmk.status()?;
    let current = status.resource(&rsc);
    let running = status.nodes_with(&rsc, Role::Started);
    let from = match (current, running.as_slice()) {
        (Some(r), _) if !r.managed => {
            return Err(state_err(format!(
                "{rsc} is unmanaged, so Pacemaker would not move it; manage it again first \
                 (crm_resource --resource {rsc} --meta --delete-parameter is-managed)"
            )));
        }
        (_, [one]) => one.clone(),
        _ => {
            return Err(state_err(format!(
                "{rsc} is not running ({}), so there is nothing to move; start it with \
                 vm-ctl resource start {dom}",
                crate::wait::describe_state(&status, &rsc)
            )));
        }
    };
    if let Some(to) = node {
        if !cib.node_names().contains(&to) {
            return Err(Error::UnknownNode {
                node: to.to_owned(),
                known: cib.node_names().join(", "),
            });
        }
        if !status.node(to).is_some_and(|n| n.online) {
            return Err(Error::NodeOffline {
                node: to.to_owned(),
            });
        }
        if to == from {
            return Ok(Outcome {
                guests: vec![GuestReport {
                    domain: dom.to_owned(),
                    resource: rsc,
                    change: Change::Unchanged,
                    detail: format!("already runs on {to}; nothing to move"),
                }],
                ..Outcome::default()
            });
        }
    }

    let constraint = match node {
        Some(to) => Element::new("rsc_location")
            .attr("id", ids::cli_prefer(&rsc))
            .attr("rsc", &rsc)
            .attr("role", "Started")
            .attr("node", to)
            .attr("score", "INFINITY"),
        None => Element::new("rsc_location")
            .attr("id", ids::cli_ban(&rsc, &from))
            .attr("rsc", &rsc)
            .attr("role", "Started")
            .attr("node", &from)
            .attr("score", "-INFINITY"),
    };
    let constraint_id = constraint.id().unwrap_or("").to_owned();
    let Checked {
        value: (dest, others),
        mut notes,
    } = app.pcmk.transact(ATTEMPTS, |cib| {
        let before = cib.clone();
        guest::primitive(cib, dom)?;
        if node.is_some() {
            // like crm_resource --move: a new target replaces the previous one
            cib.section_mut("constraints")
                .remove_children(|c| c.id() == Some(ids::cli_prefer(&rsc).as_str()));
        }
        cib.section_mut("constraints").upsert(constraint.clone());
        let sim = app.pcmk.simulate_cib(cib)?;
        let after = sim.nodes_with(&rsc, Role::Started);
        let dest = match (node, after.as_slice()) {
            (Some(to), [one]) if one == to => one.clone(),
            (None, [one]) if *one != from => one.clone(),
            _ => {
                let would = if after.is_empty() {
                    "stop it".to_owned()
                } else {
                    format!("run it on {}", after.join(","))
                };
                let problem = match node {
                    Some(to) => format!(
                        "Pacemaker would not run {rsc} on {to} (it would {would}): a location \
                         rule, a colocation or {to}'s node attributes (ping, disk) exclude it; \
                         see crm_simulate -sL"
                    ),
                    None => format!(
                        "no other node can take {rsc} (Pacemaker would {would}); see \
                         crm_simulate -sL"
                    ),
                };
                return Err(Error::Placement {
                    dom: dom.to_owned(),
                    problem,
                });
            }
        };
        // what else the scheduler would do with this change: with a low resource-stickiness
        // it may also live-migrate other guests to even out the nodes, which the operator
        // should hear about (or, in a dry run, before it happens)
        let others = guest::all(cib)
            .into_iter()
            .filter(|(d, _)| d != dom)
            .filter_map(|(d, _)| {
                let other = ids::rsc(&d);
                let was = status.nodes_with(&other, Role::Started);
                let will = sim.nodes_with(&other, Role::Started);
                (was != will).then(|| format!("{d} ({} -> {})", show(&was), show(&will)))
            })
            .collect::<Vec<_>>();
        finish(app, &before, cib, (dest, others))
    })?;
    let also = if others.is_empty() {
        String::new()
    } else {
        format!(
            "; Pacemaker {} also move {} (a constraint, or a low resource-stickiness: see \
             crm_simulate -sL and vm-ctl check)",
            if app.dry_run { "would" } else { "will" },
            others.join(", ")
        )
    };

    let mut report = GuestReport {
        domain: dom.to_owned(),
        resource: rsc.clone(),
        change: Change::Moved,
        detail: String::new(),
    };
    if app.dry_run {
        report.change = Change::WouldChange;
        report.detail = format!("would move from {from} to {dest}{also}");
        return Ok(notes.into_outcome(single(report)));
    }
    let Some(secs) = opts.wait else {
        report.detail = format!(
            "moving from {from} to {dest}; constraint {constraint_id} stays until \
             `vm-ctl resource unmove {dom}`{also}"
        );
        return Ok(notes.into_outcome(single(report)));
    };
    let goal = match node {
        Some(to) => Goal::StartedOn(to.to_owned()),
        None => Goal::StartedNotOn(from.clone()),
    };
    wait_goals(app, &[(rsc.clone(), goal)], secs).map_err(|e| match e {
        Error::Timeout { secs, missed } => Error::Timeout {
            secs,
            missed: format!(
                "{missed}; the move constraint {constraint_id} is still in place (remove it \
                 with vm-ctl resource unmove {dom})"
            ),
        },
        other => other,
    })?;
    let status = app.pcmk.status()?;
    let now = status.nodes_with(&rsc, Role::Started).join(",");
    if opts.keep {
        report.detail = format!("moved from {from} to {now}; kept {constraint_id}{also}");
        return Ok(notes.into_outcome(single(report)));
    }
    // Clear the temporary constraint, unless Pacemaker would then send the guest straight
    // back (e.g. to its preferred node): a move that undoes itself is not what was asked.
    let cleared = app.pcmk.transact(ATTEMPTS, |cib| {
        let before = cib.clone();
        let removed = remove_move_constraints(cib, &rsc);
        if removed.is_empty() {
            return Ok(Update::Unchanged(Checked::plain(Ok(()))));
        }
        let sim = app.pcmk.simulate_cib(cib)?;
        let would = sim.nodes_with(&rsc, Role::Started);
        if would != [now.as_str()] {
            return Ok(Update::Unchanged(Checked::plain(Err(would.join(",")))));
        }
        finish(app, &before, cib, Ok(()))
    })?;
    notes.add(cleared.notes);
    report.detail = match cleared.value {
        Ok(()) => format!("moved from {from} to {now}; temporary constraint removed{also}"),
        Err(back) => format!(
            "moved from {from} to {now}; kept {constraint_id}, because without it Pacemaker \
             would move {rsc} to {back} again (its preferred node outweighs stickiness): run \
             `vm-ctl location move {dom}` to make {now} preferred, or `vm-ctl resource unmove \
             {dom}` to let it go back{also}",
            back = if back.is_empty() {
                "nowhere".to_owned()
            } else {
                back
            }
        ),
    };
    Ok(notes.into_outcome(single(report)))
}

/// Nodes for a message: `n1`, `n1,n2`, or `stopped`.
fn show(nodes: &[String]) -> String {
    if nodes.is_empty() {
        "stopped".to_owned()
    } else {
        nodes.join(",")
    }
}

/// Remove the guest's temporary move constraints.
pub fn run_unmove(app: &App, dom: &str) -> Result<Outcome> {
    ids::check_name("domain", dom)?;
    let _lock = app.lock()?;
    let rsc = ids::rsc(dom);
    let Checked {
        value: removed,
        notes,
    } = app.pcmk.transact(ATTEMPTS, |cib| {
        let before = cib.clone();
        guest::primitive(cib, dom)?;
        let removed = remove_move_constraints(cib, &rsc);
        finish(app, &before, cib, removed)
    })?;
    Ok(notes.into_outcome(single(GuestReport {
        domain: dom.to_owned(),
        resource: rsc,
        change: if removed.is_empty() {
            Change::Unchanged
        } else if app.dry_run {
            Change::WouldChange
        } else {
            Change::Unmoved
        },
        detail: if removed.is_empty() {
            "no move constraint".to_owned()
        } else {
            format!("removed {}", removed.join(", "))
        },
    })))
}

fn single(report: GuestReport) -> Outcome {
    Outcome {
        guests: vec![report],
        ..Outcome::default()
    }
}
