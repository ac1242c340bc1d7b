//! `resource add`: the guests' primitives and constraints, in one CIB change (or, with
//! `--batch`, in changes of whole guests).
//!
//! Idempotent: a guest already configured exactly as this command would configure it is
//! reported "already present" (runtime meta attributes such as target-role, and the
//! utilization VirtualDomain writes, aside); one
//! configured differently is an error that shows the difference. The domain list is checked
//! all or nothing: if any guest cannot be added, none is. A list written in several changes
//! can still stop part-way (the cluster fails, a concurrent writer makes a guest conflict):
//! the guests of the changes already written stay, whole, and the error names them; running
//! the same command again adds the rest.

use std::path::PathBuf;

use vm_libvirt::DomainXml;
use vm_pcmk::xml::Element;
use vm_pcmk::{Cib, Update};

use crate::App;
use crate::change::{Checked, Notes, finish, finish_checked};
use crate::cli::{GuestNodeArgs, OnOff};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::generate::{self, GuestObjects};
use crate::guest_node;
use crate::ids;
use crate::output::{Change, GuestReport, Outcome};

use super::{ATTEMPTS, check_domains};

/// Meta attributes that record what the cluster is told to do with a guest right now, not how
/// it is configured: ignored when comparing with an existing guest.
const RUNTIME_META: [&str; 3] = ["target-role", "is-managed", "maintenance"];

/// Check `<vm_cfg_dir>/<dom><vm_cfg_ext>`: it exists, is a libvirt domain XML, and names `dom`.
pub fn check_domain_xml(config: &Config, dom: &str) -> Result<(PathBuf, DomainXml)> {
    let path = config.domain_xml_path(dom)?;
    let bad = |problem: String| Error::DomainXml {
        dom: dom.to_owned(),
        path: path.clone(),
        problem,
    };
    let text = std::fs::read_to_string(&path).map_err(|e| {
        bad(format!(
            "cannot read its XML file ({e}); put the domain's XML there (virsh dumpxml {dom}), \
             or fix vm_cfg_dir/vm_cfg_ext in {}",
            config.source.display()
        ))
    })?;
    let xml = DomainXml::parse(&text).map_err(|e| {
        bad(format!(
            "its XML file is not a libvirt domain definition: {e}"
        ))
    })?;
    if xml.name != dom {
        return Err(bad(format!(
            "its XML file describes domain {:?}, not {dom:?}",
            xml.name
        )));
    }
    Ok((path, xml))
}

/// `resource add`'s options beyond the domains and the node.
#[derive(Debug, Clone, Copy)]
pub struct AddOpts<'a> {
    /// `-m on|off`; `None`: vm_allow_migrate.
    pub migrate: Option<OnOff>,
    /// `--batch`.
    pub batch: Option<usize>,
    /// `--guest-node` and its companions.
    pub guest_node: &'a GuestNodeArgs,
}

/// One guest to add: its domain, its objects, and its guest node (port not yet chosen).
type Wanted = (String, GuestObjects, Option<guest_node::Wanted>);

/// The guest node `domains` ask for, from the options over vm-ctl.conf; `None`: not guest
/// nodes.
fn guest_node_request(
    config: &Config,
    domains: &[String],
    args: &GuestNodeArgs,
) -> Result<Option<guest_node::Request>> {
    let asked = args.name.is_some() || args.addr.is_some() || args.port.is_some();
    if args.off || !(asked || config.guest_node.enabled) {
        return Ok(None);
    }
    let name = args.name.clone().filter(|n| !n.is_empty());
    if let Some(n) = &name {
        ids::check_name("guest node", n)?;
        if domains.len() > 1 {
            return Err(Error::GuestNode {
                dom: domains.join(","),
                problem: format!(
                    "--guest-node {n} names one guest node, but {} domains are given; add them \
                     one by one, or leave NAME out (each guest node is named after its domain)",
                    domains.len()
                ),
            });
        }
    }
    if (args.addr.is_some() || args.port.is_some()) && domains.len() > 1 {
        return Err(Error::GuestNode {
            dom: domains.join(","),
            problem: "--guest-node-addr and --guest-node-port are for one guest; add the \
                      guests one by one"
                .to_owned(),
        });
    }
    Ok(Some(guest_node::Request {
        name,
        addr: args.addr.clone(),
        port: args.port,
    }))
}

/// Add `domains`, preferring `node`.
pub fn run(app: &App, domains: &[String], node: &str, opts: AddOpts<'_>) -> Result<Outcome> {
    let AddOpts {
        migrate,
        batch,
        guest_node: guest_node_args,
    } = opts;
    check_domains(domains)?;
    ids::check_name("node", node)?;
    let config = app.config()?;
    let migrate = match migrate {
        Some(OnOff::On) => true,
        Some(OnOff::Off) => false,
        None => config.allow_migrate()?,
    };
    let request = guest_node_request(config, domains, guest_node_args)?;
    let mut wanted: Vec<Wanted> = Vec::new();
    for dom in domains {
        check_domain_xml(config, dom)?;
        let gn = match &request {
            Some(r) => Some(guest_node::Wanted::new(dom, r, &config.guest_node).map_err(
                |problem| Error::GuestNode {
                    dom: dom.clone(),
                    problem,
                },
            )?),
            None => None,
        };
        if let Some(g) = &gn {
            ids::check_name("guest node", &g.name)?;
        }
        wanted.push((
            dom.clone(),
            generate::guest(config, dom, node, migrate)?,
            gn,
        ));
    }
    let _lock = app.lock()?;
    // One change unless asked otherwise. Batches were measured as the default on the live
    // cluster (200 guests per change): every change costs the CIB manager work in proportion to
    // the whole CIB, so five changes for 1,000 guests took 19.7 s against 3.1 s for one, and
    // readers waited longer, not shorter (5.4 s against 3.1 s; docs/benchmarks.md).
    let batch = match batch {
        Some(0) | None => wanted.len(),
        Some(n) => n,
    };
    let Checked {
        value: guests,
        notes,
    } = if app.dry_run || wanted.len() <= batch {
        app.pcmk.transact(
            ATTEMPTS,
            |cib| -> Result<Update<Checked<Vec<GuestReport>>>> {
                let before = cib.clone();
                let added = add_guests(app, config, cib, node, &wanted)?;
                Ok(finish(app, &before, cib, added.value)?.map(|c| c.after(added.notes)))
            },
        )?
    } else {
        add_in_batches(app, config, node, &wanted, batch)?
    };
    Ok(notes.into_outcome(Outcome {
        guests,
        ..Outcome::default()
    }))
}

/// Add `wanted` in changes of at most `batch` whole guests each: every guest's primitive and
/// constraints land in one change, never split. Everything is decided and verified on one
/// snapshot first, so a guest that cannot be added, or a result crm_verify rejects, fails the
/// command before anything is written; then each batch is a read-decide-write of its own
/// (compare-and-swap, retried like any other). A batch whose snapshot's configuration is what
/// the earlier batches left is part of the verified whole and is not verified again; one that
/// finds the configuration changed by someone else is.
fn add_in_batches(
    app: &App,
    config: &Config,
    node: &str,
    wanted: &[Wanted],
    batch: usize,
) -> Result<Checked<Vec<GuestReport>>> {
    let configuration = |cib: &Cib| cib.root().find("configuration").cloned();
    let snapshot = app.pcmk.snapshot()?;
    let mut whole = snapshot.clone();
    let mut notes = add_guests(app, config, &mut whole, node, wanted)?.notes;
    // crm_verify once, on the whole result; Unchanged when every guest is already present
    match finish(app, &snapshot, &whole, ())? {
        Update::Unchanged(checked) => {
            let mut cib = snapshot;
            return Ok(add_guests(app, config, &mut cib, node, wanted)?.after(checked.notes));
        }
        Update::Write(checked) => notes.add(checked.notes),
    }
    let mut expected = configuration(&snapshot);
    let mut reports = Vec::new();
    let mut added: Vec<&str> = Vec::new();
    for (i, part) in wanted.chunks(batch).enumerate() {
        let mut written = None;
        let step = app.pcmk.transact(
            ATTEMPTS,
            |cib| -> Result<Update<Checked<Vec<GuestReport>>>> {
                let before = cib.clone();
                let verified = configuration(&before) == expected;
                let part_added = add_guests(app, config, cib, node, part)?;
                written = configuration(cib);
                Ok(
                    finish_checked(app, &before, cib, part_added.value, verified)?
                        .map(|c| c.after(part_added.notes)),
                )
            },
        );
        match step {
            Ok(Checked {
                value: part_reports,
                notes: part_notes,
            }) => {
                notes.add(part_notes);
                tracing::debug!(batch = i + 1, guests = part.len(), "batch written");
                expected = written;
                reports.extend(part_reports);
                added.extend(part.iter().map(|(dom, _, _)| dom.as_str()));
            }
            Err(e) if added.is_empty() => return Err(e),
            Err(e) => {
                return Err(Error::PartlyAdded {
                    added: added.join(","),
                    source: Box::new(e),
                });
            }
        }
    }
    Ok(Checked {
        value: reports,
        notes,
    })
}

/// Add `wanted` to `cib` (those not yet there), after checking the cluster has what they
/// need; one report per guest. Fails on a guest configured differently.
fn add_guests(
    app: &App,
    config: &Config,
    cib: &mut Cib,
    node: &str,
    wanted: &[Wanted],
) -> Result<Checked<Vec<GuestReport>>> {
    let notes = Notes {
        dry_run: None,
        warnings: check_cluster(app, config, cib, node)?.into_iter().collect(),
    };
    let others = OtherGuests::of(cib, wanted);
    // ids in the CIB before we add anything: most adds are of new guests, and those
    // need no comparison
    let present: std::collections::HashSet<String> = cib
        .root()
        .path(&["configuration"])
        .map(|c| {
            c.descendants()
                .into_iter()
                .filter_map(Element::id)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let mut reports = Vec::new();
    for (dom, objs, gn) in wanted {
        let rsc = ids::rsc(dom);
        others.check(dom, objs)?;
        let with_node;
        let objs = match gn {
            Some(g) => {
                with_node = as_guest_node(config, cib, dom, objs, g)?;
                &with_node
            }
            None => objs,
        };
        let any_present = objs
            .all()
            .filter_map(Element::id)
            .any(|id| present.contains(id));
        let presence = if any_present {
            compare(cib, objs)
        } else {
            Presence::Absent
        };
        let change = match presence {
            Presence::Absent => {
                cib.section_mut("resources").push(objs.primitive.clone());
                let constraints = cib.section_mut("constraints");
                for c in &objs.constraints {
                    constraints.push(c.clone());
                }
                if app.dry_run {
                    Change::WouldChange
                } else {
                    Change::Created
                }
            }
            Presence::Same => Change::AlreadyPresent,
            Presence::Differs(diff) => {
                return Err(Error::Differs {
                    dom: dom.clone(),
                    diff,
                });
            }
        };
        let as_node = gn.as_ref().map_or(String::new(), |g| {
            let node = guest_node::of_primitive(&objs.primitive);
            format!(
                " as guest node {} ({} transport, port {})",
                g.name,
                g.transport.as_str(),
                node.and_then(|n| n.port).unwrap_or_default()
            )
        });
        let detail = match change {
            Change::Created => {
                format!("created stopped{as_node}; start it with vm-ctl resource start {dom}")
            }
            Change::AlreadyPresent => "already configured exactly so; nothing changed".to_owned(),
            _ => String::new(),
        };
        reports.push(GuestReport {
            domain: dom.clone(),
            resource: rsc,
            change,
            detail,
        });
    }
    Ok(Checked {
        value: reports,
        notes,
    })
}

/// `objs` with guest node `gn`'s meta attributes, its port chosen on `cib` (a guest already
/// there keeps its own); an error when its name or endpoint clashes.
fn as_guest_node(
    config: &Config,
    cib: &Cib,
    dom: &str,
    objs: &GuestObjects,
    gn: &guest_node::Wanted,
) -> Result<GuestObjects> {
    let rsc = ids::rsc(dom);
    let bad = |problem: String| Error::GuestNode {
        dom: dom.to_owned(),
        problem,
    };
    let port = match (gn.port, gn.transport) {
        (Some(p), _) => p,
        (None, crate::config::GuestNodeTransport::Tcp) => guest_node::DEFAULT_REMOTE_PORT,
        (None, crate::config::GuestNodeTransport::Channel) => {
            let base = config.guest_node.port_base;
            guest_node::choose_port(cib, &rsc, base).ok_or_else(|| {
                bad(format!(
                    "no free host-local port from vm_guest_node_port_base={base} up; lower it \
                     in {}",
                    config.source.display()
                ))
            })?
        }
    };
    if let Some(problem) = guest_node::clash(cib, &rsc, gn, port) {
        return Err(bad(problem));
    }
    let mut objs = objs.clone();
    if let Some(meta) = objs
        .primitive
        .elements_mut()
        .find(|s| s.name == "meta_attributes")
    {
        for nv in guest_node::meta_nvpairs(&rsc, gn, port) {
            meta.push(nv);
        }
    }
    Ok(objs)
}

/// The node, the clones vm-ctl.conf names, and fencing, as the guests need them; a warning
/// (in a dry run) for what fails the real command.
fn check_cluster(app: &App, config: &Config, cib: &Cib, node: &str) -> Result<Option<String>> {
    // a host node: a guest cannot run inside a guest node
    let hosts = guest_node::host_nodes(cib);
    if !hosts.contains(&node) {
        return Err(Error::UnknownNode {
            node: node.to_owned(),
            known: hosts.join(", "),
        });
    }
    let file = config.source.display().to_string();
    let refs = [
        (
            "vm_pingd",
            config
                .pingd
                .iter()
                .map(|c| c.rsc.as_str())
                .collect::<Vec<_>>(),
        ),
        (
            "vm_diskd",
            config.diskd.iter().map(|c| c.rsc.as_str()).collect(),
        ),
        (
            "vm_managerd",
            config.managerd.iter().map(|c| c.rsc.as_str()).collect(),
        ),
        (
            "vm_stonithd",
            config.stonithd.iter().map(String::as_str).collect(),
        ),
    ];
    for (key, clones) in refs {
        for (i, rsc) in clones.into_iter().enumerate() {
            if !cib.is_clone(rsc) {
                return Err(Error::MissingClone {
                    key: format!("{key}{}", i + 1),
                    rsc: rsc.to_owned(),
                    file: file.clone(),
                });
            }
        }
    }
    if config.stonith()? && !cib.stonith_enabled() {
        if app.dry_run {
            return Ok(Some(Error::StonithDisabled { file }.to_string()));
        }
        return Err(Error::StonithDisabled { file });
    }
    Ok(None)
}

/// The VirtualDomain resources of the CIB that are not vm-ctl's resource for one of `doms`.
struct OtherGuests(Vec<OtherGuest>);

/// One of [`OtherGuests`].
struct OtherGuest {
    /// Its resource id.
    id: String,
    /// Its agent, `class:provider:type`.
    agent: String,
    /// Its `config` parameter (the domain XML file), empty when unset.
    config: String,
}

impl OtherGuests {
    fn of(cib: &Cib, doms: &[Wanted]) -> Self {
        let ours: Vec<String> = doms.iter().map(|(d, _, _)| ids::rsc(d)).collect();
        let mut found = Vec::new();
        if let Some(resources) = cib.section("resources") {
            for prim in resources.descendants() {
                if prim.name != "primitive" || prim.get("type") != Some("VirtualDomain") {
                    continue;
                }
                let id = prim.id().unwrap_or("");
                if ours.iter().any(|o| o == id) {
                    continue;
                }
                let config = prim
                    .elements()
                    .filter(|s| s.name == "instance_attributes" && s.find("rule").is_none())
                    .flat_map(Element::elements)
                    .find(|nv| nv.get("name") == Some("config"))
                    .and_then(|nv| nv.get("value"))
                    .unwrap_or("");
                let agent = format!(
                    "{}:{}:{}",
                    prim.get("class").unwrap_or(""),
                    prim.get("provider").unwrap_or(""),
                    prim.get("type").unwrap_or("")
                );
                found.push(OtherGuest {
                    id: id.to_owned(),
                    agent,
                    config: config.to_owned(),
                });
            }
        }
        Self(found)
    }

    /// Refuse a domain another resource already runs (two resources would start it twice):
    /// same config file, or a config file named after the domain.
    fn check(&self, dom: &str, objs: &GuestObjects) -> Result<()> {
        let our_config = objs
            .primitive
            .descendants()
            .into_iter()
            .find(|e| e.name == "nvpair" && e.get("name") == Some("config"))
            .and_then(|e| e.get("value"))
            .unwrap_or("");
        for OtherGuest { id, agent, config } in &self.0 {
            if config.is_empty() {
                continue;
            }
            let same_name = std::path::Path::new(config)
                .file_stem()
                .is_some_and(|s| s == dom);
            if config == our_config || same_name {
                return Err(Error::ManagedElsewhere {
                    dom: dom.to_owned(),
                    rsc: id.clone(),
                    agent: agent.clone(),
                    config: config.clone(),
                });
            }
        }
        Ok(())
    }
}

enum Presence {
    Absent,
    Same,
    Differs(String),
}

/// How the guest's objects compare with what the CIB has under the same ids.
fn compare(cib: &Cib, objs: &GuestObjects) -> Presence {
    let find = |el: &Element| -> Option<Element> {
        let id = el.id()?;
        let found = if el.name == "primitive" {
            cib.resource(id)
        } else {
            cib.section("constraints").and_then(|c| c.find_id(id))
        };
        found.cloned()
    };
    let existing: Vec<(Option<Element>, &Element)> = objs.all().map(|w| (find(w), w)).collect();
    if existing.iter().all(|(e, _)| e.is_none()) {
        return Presence::Absent;
    }
    let mut diff = Vec::new();
    // vm-ctl's own constraints of this guest that the command would not create (e.g. the
    // preferred-node location of another node).
    let dom = objs
        .primitive
        .id()
        .and_then(ids::dom_of)
        .unwrap_or_default();
    let ours = ids::constraint_prefixes(dom);
    let wanted_ids: Vec<&str> = objs.all().filter_map(Element::id).collect();
    if let Some(rsc) = objs.primitive.id() {
        for c in cib.constraints_of(rsc) {
            let id = c.id().unwrap_or("");
            if ours.iter().any(|p| id.starts_with(p.as_str())) && !wanted_ids.contains(&id) {
                diff.push(format!("  - {} {id} (vm-ctl would not create it)", c.name));
            }
        }
    }
    for (have, want) in &existing {
        let want_c = normalised(want).canonical();
        match have {
            None => diff.push(format!(
                "  + {} {} (missing)",
                want.name,
                want.id().unwrap_or("")
            )),
            Some(h) => {
                let have_c = normalised(h).canonical();
                for l in have_c.iter().filter(|l| !want_c.contains(l)) {
                    diff.push(format!("  - {l}"));
                }
                for l in want_c.iter().filter(|l| !have_c.contains(l)) {
                    diff.push(format!("  + {l}"));
                }
            }
        }
    }
    if diff.is_empty() {
        Presence::Same
    } else {
        diff.insert(
            0,
            "  (- in the cluster, + what vm-ctl would create)".to_owned(),
        );
        Presence::Differs(diff.join("\n"))
    }
}

fn normalised(el: &Element) -> Element {
    let mut el = el.clone();
    if el.name == "primitive" {
        for set in el.elements_mut().filter(|s| s.name == "meta_attributes") {
            set.remove_children(|nv| nv.get("name").is_some_and(|n| RUNTIME_META.contains(&n)));
        }
        el.remove_children(|s| s.name == "meta_attributes" && s.elements().next().is_none());
        // VirtualDomain writes the guest's utilization itself on every monitor
        // (autoset_utilization_cpu / _hv_memory / _host_memory, on by default), and vm-ctl
        // does not configure utilization: a running guest is no different for having it.
        el.remove_children(|s| s.name == "utilization");
    }
    el
}
