//! `resource list` and `resource show`.

use vm_pcmk::Role;

use crate::App;
use crate::error::{Error, Result};
use crate::guest;
use crate::ids;
use crate::output::{ListRow, Outcome};

/// The original's six columns for the selected guests: all, one, or those running on a node.
pub fn run_list(app: &App, domain: Option<&str>, node: Option<&str>) -> Result<Outcome> {
    if let Some(d) = domain {
        ids::check_name("domain", d)?;
    }
    if let Some(n) = node {
        ids::check_name("node", n)?;
    }
    let cib = app.pcmk.snapshot()?;
    if let Some(n) = node {
        if !cib.node_names().contains(&n) {
            return Err(Error::UnknownNode {
                node: n.to_owned(),
                known: cib.node_names().join(", "),
            });
        }
    }
    let status = app.pcmk.status()?;
    let doms: Vec<String> = match domain {
        Some(d) => {
            guest::primitive(&cib, d)?;
            vec![d.to_owned()]
        }
        None => guest::all(&cib).into_iter().map(|(d, _)| d).collect(),
    };
    let mut rows = Vec::new();
    for dom in doms {
        let rsc = ids::rsc(&dom);
        let running = status.nodes_with(&rsc, Role::Started);
        if let Some(n) = node {
            if !running.iter().any(|r| r == n) {
                continue;
            }
        }
        rows.push(ListRow {
            guest_node: crate::guest_node::of_guest(&cib, &dom),
            migration: guest::migration(&cib, &dom).to_owned(),
            preferred_node: guest::preferred(&cib, &dom)
                .map_or_else(|| "NONE".to_owned(), |(_, n)| n.to_owned()),
            running_node: if running.is_empty() {
                "Stopped".to_owned()
            } else {
                running.join(",")
            },
            move_constraint: if guest::has_move_constraint(&cib, &dom) {
                "yes"
            } else {
                "no"
            }
            .to_owned(),
            resource: rsc,
            domain: dom,
        });
    }
    Ok(Outcome {
        list: Some(rows),
        ..Outcome::default()
    })
}

/// The crm shell text of everything vm-ctl manages for a guest: its primitive, every
/// constraint naming it, and node attributes that concern it (force_stop-*).
pub fn run_show(app: &App, domain: &str) -> Result<Outcome> {
    ids::check_name("domain", domain)?;
    let cib = app.pcmk.snapshot()?;
    let prim = guest::primitive(&cib, domain)?;
    let mut objects = vec![prim];
    objects.extend(cib.constraints_of(&ids::rsc(domain)));
    let mut text = vm_pcmk::crm::render_all(objects);
    if let Some(g) = crate::guest_node::of_guest(&cib, domain) {
        text.push_str(&format!(
            "# guest node {} over {} ({}:{}): resources constrained to it run inside the guest\n",
            g.name,
            g.transport,
            g.addr,
            g.port_number()
                .map_or_else(|| "?".to_owned(), |p| p.to_string())
        ));
    }
    let attr = ids::force_stop_attr(&ids::rsc(domain));
    for node in cib.section("nodes").iter().flat_map(|n| n.elements()) {
        let set = node
            .descendants()
            .into_iter()
            .find(|e| e.name == "nvpair" && e.get("name") == Some(attr.as_str()));
        if let (Some(nv), Some(uname)) = (set, node.get("uname")) {
            text.push_str(&format!(
                "# node {uname} has {attr}={} (a stop there is a hard power-off)\n",
                nv.get("value").unwrap_or("")
            ));
        }
    }
    Ok(Outcome {
        show: Some(text),
        ..Outcome::default()
    })
}
