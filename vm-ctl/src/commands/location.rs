//! `location move`: make the node a guest runs on its preferred node.
//!
//! The old preferred-node location is replaced by the new one in the same CIB change, so there
//! is no moment without a preferred node (the original deleted first, then added).

use vm_pcmk::xml::Element;
use vm_pcmk::{Role, Update};

use crate::App;
use crate::change::{Checked, finish};
use crate::error::{Error, Result};
use crate::guest;
use crate::ids;
use crate::output::{Change, GuestReport, Outcome};

use super::ATTEMPTS;

/// The preferred-node location of `dom` on `node` with `score`, as crmsh writes it.
pub fn act_location(dom: &str, node: &str, score: &str) -> Element {
    Element::new("rsc_location")
        .attr("id", ids::act_location(dom, node))
        .attr("rsc", ids::rsc(dom))
        .attr("score", score)
        .attr("node", node)
}

/// For `domain`, or every guest whose preferred node is `before`: point the preferred-node
/// location at the node the guest runs on.
pub fn run(app: &App, domain: Option<&str>, before: Option<&str>) -> Result<Outcome> {
    if let Some(d) = domain {
        ids::check_name("domain", d)?;
    }
    if let Some(n) = before {
        ids::check_name("node", n)?;
    }
    let _lock = app.lock()?;
    let config_score = app
        .config()
        .ok()
        .map(|c| c.node_loc_act.as_str().to_owned());
    let status = app.pcmk.status()?;
    let Checked {
        value: guests,
        notes,
    } = app.pcmk.transact(ATTEMPTS, |cib| {
        let snapshot = cib.clone();
        let targets: Vec<String> = match (domain, before) {
            (Some(d), _) => {
                guest::primitive(cib, d)?;
                vec![d.to_owned()]
            }
            (None, Some(n)) => {
                if !cib.node_names().contains(&n) {
                    return Err(Error::UnknownNode {
                        node: n.to_owned(),
                        known: cib.node_names().join(", "),
                    });
                }
                guest::all(cib)
                    .into_iter()
                    .map(|(d, _)| d)
                    .filter(|d| guest::preferred(cib, d).is_some_and(|(_, p)| p == n))
                    .collect()
            }
            (None, None) => Vec::new(),
        };
        let mut reports = Vec::new();
        for dom in targets {
            let rsc = ids::rsc(&dom);
            let running = status.nodes_with(&rsc, Role::Started);
            let old = guest::preferred(&snapshot, &dom).map(|(c, n)| {
                (
                    c.id().unwrap_or("").to_owned(),
                    n.to_owned(),
                    c.get("score").map(str::to_owned),
                )
            });
            let report = |change, detail: String| GuestReport {
                domain: dom.clone(),
                resource: rsc.clone(),
                change,
                detail,
            };
            let [now] = running.as_slice() else {
                reports.push(report(
                    Change::Skipped,
                    "not running; preferred node unchanged".to_owned(),
                ));
                continue;
            };
            if old.as_ref().is_some_and(|(_, n, _)| n == now) {
                reports.push(report(
                    Change::Unchanged,
                    format!("runs on its preferred node {now}"),
                ));
                continue;
            }
            let score = config_score
                .clone()
                .or_else(|| old.as_ref().and_then(|(_, _, s)| s.clone()))
                .unwrap_or_else(|| "200".to_owned());
            let constraints = cib.section_mut("constraints");
            if let Some((old_id, _, _)) = &old {
                constraints.remove_children(|c| c.id() == Some(old_id.as_str()));
            }
            constraints.upsert(act_location(&dom, now, &score));
            let was = old.map_or_else(|| "none".to_owned(), |(_, n, _)| n);
            reports.push(report(
                Change::PreferenceMoved,
                format!("preferred node {was} -> {now}"),
            ));
        }
        match finish(app, &snapshot, cib, reports)? {
            Update::Unchanged(mut r) if app.dry_run => {
                for g in &mut r.value {
                    if g.change == Change::PreferenceMoved {
                        g.change = Change::WouldChange;
                    }
                }
                Ok(Update::Unchanged(r))
            }
            other => Ok(other),
        }
    })?;
    Ok(notes.into_outcome(Outcome {
        guests,
        ..Outcome::default()
    }))
}
