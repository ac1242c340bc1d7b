//! `check`: pre-flight checks of guests and of the host clones they depend on, each finding
//! with its fix. Read-only.

use std::path::Path;

use vm_libvirt::{Hypervisor, Libvirt};
use vm_pcmk::Cib;

use crate::App;
use crate::commands::add::check_domain_xml;
use crate::config::Config;
use crate::error::Result;
use crate::guest;
use crate::ids;
use crate::output::{Finding, Level, Outcome};

struct Findings(Vec<Finding>);

impl Findings {
    fn push(
        &mut self,
        subject: &str,
        level: Level,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.0.push(Finding {
            subject: subject.to_owned(),
            level,
            message: message.into(),
            fix: fix.into(),
        });
    }
    fn ok(&mut self, subject: &str, message: impl Into<String>) {
        self.push(subject, Level::Ok, message, "");
    }
}

/// Check `domains` (default: every guest vm-ctl manages) and the cluster around them.
pub fn run(app: &App, domains: &[String]) -> Result<Outcome> {
    super::check_domains(domains)?;
    let config = app.config()?;
    let cib = app.pcmk.snapshot()?;
    let mut f = Findings(Vec::new());
    check_cluster(config, &cib, &mut f);
    let doms: Vec<String> = if domains.is_empty() {
        guest::all(&cib).into_iter().map(|(d, _)| d).collect()
    } else {
        domains.to_vec()
    };
    let libvirt = Libvirt::open(&config.hypervisor);
    if let Err(e) = &libvirt {
        f.push(
            "libvirt",
            Level::Warning,
            format!(
                "cannot connect to {} ({e}): libvirt autostart not checked",
                config.hypervisor
            ),
            "run vm-ctl check on a host where libvirtd runs",
        );
    }
    for dom in &doms {
        check_guest(config, &cib, libvirt.as_ref().ok(), dom, &mut f);
    }
    Ok(Outcome {
        findings: Some(f.0),
        ..Outcome::default()
    })
}

fn check_cluster(config: &Config, cib: &Cib, f: &mut Findings) {
    let file = config.source.display();
    for (key, clones) in [
        (
            "vm_pingd",
            config
                .pingd
                .iter()
                .map(|c| c.rsc.clone())
                .collect::<Vec<_>>(),
        ),
        (
            "vm_diskd",
            config.diskd.iter().map(|c| c.rsc.clone()).collect(),
        ),
        (
            "vm_managerd",
            config.managerd.iter().map(|c| c.rsc.clone()).collect(),
        ),
        ("vm_stonithd", config.stonithd.clone()),
    ] {
        for (i, rsc) in clones.iter().enumerate() {
            if cib.is_clone(rsc) {
                f.ok(
                    "cluster",
                    format!("clone {rsc} ({key}{}) is configured", i + 1),
                );
            } else {
                f.push(
                    "cluster",
                    Level::Error,
                    format!(
                        "{key}{} names clone {rsc}, which the cluster does not have",
                        i + 1
                    ),
                    format!(
                        "configure the clone {rsc}, or remove {key}{} from {file}",
                        i + 1
                    ),
                );
            }
        }
    }
    let find_clone = |needle: &str| {
        cib.section("resources").and_then(|r| {
            r.elements()
                .filter(|c| c.name == "clone")
                .find(|c| {
                    c.descendants().iter().any(|e| {
                        ["id", "type"].iter().any(|a| {
                            e.get(a).is_some_and(|v| {
                                v.to_ascii_lowercase()
                                    .replace(['-', '_'], "")
                                    .contains(needle)
                            })
                        })
                    })
                })
                .and_then(|c| c.id().map(str::to_owned))
        })
    };
    match find_clone("vmconnectd") {
        Some(id) => f.ok("cluster", format!("vm-connectd runs as clone {id}")),
        None => f.push(
            "cluster",
            Level::Warning,
            "no vm-connectd clone: guests cannot reach their host over the vmconnectd channel",
            "run vm-connectd -t host as a clone on every host node (docs/operations.md)",
        ),
    }
    if config.stonithd.is_empty() {
        f.push(
            "cluster",
            Level::Warning,
            "no vm_stonithdN in vm-ctl.conf: guests are not colocated with vm-stonithd, guest clusters cannot fence through the host",
            format!("add vm_stonithd1=(CLONE_ID) to {file} once vm-stonithd runs as a clone"),
        );
    }
    match config.stonith() {
        Ok(true) if !cib.stonith_enabled() => f.push(
            "cluster",
            Level::Error,
            "vm_stonith=on (on-fail=fence) but the cluster has stonith-enabled=false",
            format!("enable fencing in the cluster, or set vm_stonith=off in {file}"),
        ),
        Ok(_) => f.ok("cluster", "fencing settings are consistent"),
        Err(e) => f.push(
            "cluster",
            Level::Error,
            e.to_string(),
            format!("set vm_stonith=on or off in {file}"),
        ),
    }
}

fn check_guest(config: &Config, cib: &Cib, libvirt: Option<&Libvirt>, dom: &str, f: &mut Findings) {
    let rsc = ids::rsc(dom);
    match guest::primitive(cib, dom) {
        Ok(prim) => {
            f.ok(dom, format!("managed by Pacemaker as {rsc}"));
            if !vm_pcmk::virtualdomain::stops_hard_on_fence(prim) {
                let agent = format!(
                    "{}:{}:{}",
                    prim.get("class").unwrap_or("?"),
                    prim.get("provider").unwrap_or("?"),
                    prim.get("type").unwrap_or("?")
                );
                f.push(
                    dom,
                    Level::Warning,
                    format!(
                        "its agent is {agent}: a fence of this guest is a graceful shutdown, \
                         destroyed only when the stop timeout is nearly spent"
                    ),
                    format!(
                        "install agents/ocf/VirtualDomain as {}, set vm_ocf={} and re-create the \
                         resource: vm-ctl resource stop {dom} --wait; vm-ctl resource delete {dom}; \
                         vm-ctl resource add {dom} -a NODE",
                        vm_pcmk::virtualdomain::HARD_STOP_AGENT,
                        vm_pcmk::virtualdomain::HARD_STOP_AGENT
                    ),
                );
            }
        }
        Err(_) => f.push(
            dom,
            Level::Warning,
            "not managed by Pacemaker",
            format!("vm-ctl resource add {dom} -a NODE"),
        ),
    }
    let (path, xml) = match check_domain_xml(config, dom) {
        Ok(x) => x,
        Err(e) => {
            f.push(
                dom,
                Level::Error,
                e.to_string(),
                "fix the domain XML file named above",
            );
            return;
        }
    };
    f.ok(dom, format!("domain XML {} is valid", path.display()));
    match xml.vmconnectd_channel() {
        None => f.push(
            dom,
            Level::Error,
            "no vmconnectd channel: the guest cannot reach its host (guest fencing impossible)",
            format!(
                "add to <devices>: <channel type='unix'><source mode='bind' path='{}/{dom}'/><target type='virtio' name='vmconnectd'/></channel>",
                config.connectd_sock_dir.display()
            ),
        ),
        Some(ch) => {
            let path = ch.source_path.as_deref().unwrap_or("");
            let in_dir = Path::new(path).parent() == Some(config.connectd_sock_dir.as_path());
            if ch.kind != "unix" || ch.source_mode.as_deref() != Some("bind") || !in_dir {
                f.push(
                    dom,
                    Level::Error,
                    format!(
                        "vmconnectd channel is type={} mode={} path={path}: host vm-connectd only finds unix channels in bind mode directly under {}",
                        ch.kind,
                        ch.source_mode.as_deref().unwrap_or("?"),
                        config.connectd_sock_dir.display()
                    ),
                    format!(
                        "use <channel type='unix'><source mode='bind' path='{}/{dom}'/>...",
                        config.connectd_sock_dir.display()
                    ),
                );
            } else {
                f.ok(dom, format!("vmconnectd channel at {path}"));
            }
        }
    }
    if xml.uuid.is_some() {
        f.ok(dom, "fixed <uuid>");
    } else {
        f.push(
            dom,
            Level::Warning,
            "no <uuid>: the guest gets a new UUID at every start",
            "add a <uuid> (uuidgen) to the domain XML so the guest keeps its identity",
        );
    }
    if let Some(lv) = libvirt {
        match lv.domain(dom) {
            Ok(Some(info)) if info.persistent => match lv.autostart(dom) {
                Ok(true) => f.push(
                    dom,
                    Level::Error,
                    "libvirt autostart is on: libvirtd would start the guest behind Pacemaker's back (e.g. after it was fenced)",
                    format!("virsh autostart --disable {dom}"),
                ),
                Ok(false) => f.ok(dom, "libvirt autostart is off"),
                Err(e) => f.push(dom, Level::Warning, format!("cannot read autostart: {e}"), ""),
            },
            Ok(_) => f.ok(dom, "not defined persistently in libvirt (VirtualDomain runs it transient): no autostart"),
            Err(e) => f.push(dom, Level::Warning, format!("cannot look it up in libvirt: {e}"), ""),
        }
    }
}
