//! `check`: pre-flight checks of guests, of the host clones they depend on, and of this host
//! node's guest-cluster fence keys, each finding with its fix. Read-only.

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use vm_libvirt::virsh::{Definition, Definitions};
use vm_pcmk::Cib;
use vm_pcmk::xml::Element;
use vm_proto::authkey;
use vm_seal::{Key, KeyError};

use crate::App;
use crate::cli::{CheckArgs, FencePaths};
use crate::commands::add::check_domain_xml;
use crate::config::{Config, Score};
use crate::error::Result;
use crate::guest;
use crate::ids;
use crate::output::{Finding, FindingCode, Level, Outcome};
use crate::stonith as fencing;
use crate::stonith::published::{self, KeyStamp, LocalKey};

struct Findings(Vec<Finding>);

impl Findings {
    fn push(
        &mut self,
        subject: &str,
        code: FindingCode,
        level: Level,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.0.push(Finding {
            subject: subject.to_owned(),
            code,
            level,
            message: message.into(),
            fix: fix.into(),
        });
    }
    fn ok(&mut self, subject: &str, code: FindingCode, message: impl Into<String>) {
        self.push(subject, code, Level::Ok, message, "");
    }
}

/// Check `args.domains` (default: every guest vm-ctl manages), the cluster around them, and
/// this node's guest-cluster fence keys.
pub fn run(app: &App, args: &CheckArgs) -> Result<Outcome> {
    let domains = &args.domains;
    super::check_domains(domains)?;
    let config = app.config()?;
    let cib = app.pcmk.snapshot()?;
    let mut f = Findings(Vec::new());
    check_cluster(config, &cib, &mut f);
    check_stickiness(config, &cib, &guest::all(&cib), &mut f);
    check_guest_fencing(&args.fence, &cib, &mut f);
    f.0.extend(crate::guest_node::findings(&cib));
    check_guest_node_keys(&cib, &mut f);
    let doms: Vec<String> = if domains.is_empty() {
        guest::all(&cib).into_iter().map(|(d, _)| d).collect()
    } else {
        domains.to_vec()
    };
    // virsh, not a libvirt connection: vm-ctl links no libvirt, whose libraries would cost
    // every vm-ctl command's start ~10 ms (vm_libvirt::virsh)
    let libvirt = Definitions::read(&config.hypervisor);
    if let Err(e) = &libvirt {
        f.push(
            "libvirt",
            FindingCode::LibvirtUnreachable,
            Level::Warning,
            format!(
                "cannot read libvirt at {} ({}): libvirt autostart not checked",
                config.hypervisor,
                vm_common::error_chain(e)
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

/// The Pacemaker key of guest nodes: the fingerprints the host nodes' vm-stonithd publish,
/// their own ([`authkey::HOST_ATTR`]) and each guest node's (`pmkt-authkey-<domain>`, what the
/// guest reported holding), the latter read on the host node where the guest node's
/// VirtualDomain runs now (from the CIB's operation history); a guest node running on no node,
/// or on two, is not judged. Nothing to say without guest nodes.
fn check_guest_node_keys(cib: &Cib, f: &mut Findings) {
    // (domain, its resource, its node name)
    let guest_nodes: Vec<(String, &str, &str)> = guest::all(cib)
        .into_iter()
        .filter_map(|(dom, prim)| {
            let rsc = prim.id()?;
            let name = cib.meta_attribute(rsc, "remote-node")?;
            (!name.is_empty()).then_some((dom, rsc, name))
        })
        .collect();
    if guest_nodes.is_empty() {
        return;
    }
    let hosts: Vec<&str> = cib
        .node_names()
        .into_iter()
        .filter(|n| !guest_nodes.iter().any(|(_, _, name)| name == n))
        .collect();
    let published: Vec<(&str, &str)> = hosts
        .iter()
        .filter_map(|n| Some((*n, cib.transient_attribute(n, authkey::HOST_ATTR)?)))
        .collect();
    // the fingerprint most host nodes publish is the cluster's
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for (_, fp) in &published {
        match counts.iter_mut().find(|(v, _)| v == fp) {
            Some((_, n)) => *n += 1,
            None => counts.push((fp, 1)),
        }
    }
    counts.sort_by_key(|c| std::cmp::Reverse(c.1));
    let Some(&(reference, _)) = counts.first() else {
        f.push(
            "cluster",
            FindingCode::AuthkeyHostUnknown,
            Level::Warning,
            "no host node publishes its Pacemaker key fingerprint (pmkt-authkey): guest nodes' keys not compared",
            "make sure /etc/pacemaker/authkey exists on every host node and vm-stonithd runs there (it publishes at start and on reload)",
        );
        return;
    };
    if counts.len() > 1 {
        let odd: Vec<String> = published
            .iter()
            .filter(|(_, fp)| *fp != reference)
            .map(|(n, fp)| format!("{n} ({})", short(fp)))
            .collect();
        let good = published
            .iter()
            .find(|(_, fp)| *fp == reference)
            .map_or("", |(n, _)| *n);
        f.push(
            "cluster",
            FindingCode::AuthkeyHostDiffers,
            Level::Error,
            format!(
                "host nodes hold different Pacemaker keys: {} differ from {good}'s ({})",
                odd.join(", "),
                short(reference)
            ),
            format!(
                "copy the key from {good} to each of them (scp -p {good}:/etc/pacemaker/authkey /etc/pacemaker/authkey, run there), restart Pacemaker there, then reload vm-stonithd (systemctl reload vm-stonithd)"
            ),
        );
    } else {
        f.ok(
            "cluster",
            FindingCode::AuthkeyHostSame,
            format!(
                "{} host node(s) publish the same Pacemaker key ({})",
                published.len(),
                short(reference)
            ),
        );
    }
    for (dom, rsc, _) in &guest_nodes {
        // what the node it runs on says: vm-stonithd publishes what the guest reported on the
        // node it asked through, which is the node it runs on; another node's value is from
        // before a migration (that vm-stonithd removes it within a minute)
        let on = vm_pcmk::history::active_nodes(cib, rsc);
        let node = match on.as_slice() {
            [node] => node.as_str(),
            [] => {
                f.push(
                    dom,
                    FindingCode::AuthkeyGuestNotRunning,
                    Level::Warning,
                    format!("the guest node does not run ({rsc} is active on no host node): its Pacemaker key is not judged"),
                    format!("start it (vm-ctl resource start {dom} --wait), then run vm-ctl check again"),
                );
                continue;
            }
            several => {
                f.push(
                    dom,
                    FindingCode::AuthkeyGuestNotRunning,
                    Level::Warning,
                    format!(
                        "{rsc} is active on {} (a live migration in progress, or multiply active): the guest node's Pacemaker key is not judged",
                        several.join(", ")
                    ),
                    "run vm-ctl check again once it runs on one node (vm-ctl status shows where)",
                );
                continue;
            }
        };
        match cib.transient_attribute(node, &authkey::guest_attr(dom)) {
            Some(fp) if fp == reference => f.ok(
                dom,
                FindingCode::AuthkeyGuestSame,
                format!("the guest node holds the host cluster's Pacemaker key (reported on {node}, where it runs)"),
            ),
            Some(fp) => {
                let held = if fp == "-" {
                    "no Pacemaker key".to_owned()
                } else {
                    format!("another Pacemaker key ({})", short(fp))
                };
                f.push(
                    dom,
                    FindingCode::AuthkeyGuestDiffers,
                    Level::Error,
                    format!(
                        "the guest node reported (on {node}, where it runs) holding {held}, not the host cluster's ({})",
                        short(reference)
                    ),
                    "look for why in the guest's vm-connectd log (it retries every 60 s and on every new link); restarting the host's vm-connectd makes it ask at once",
                );
            }
            None => f.push(
                dom,
                FindingCode::AuthkeyGuestUnknown,
                Level::Warning,
                format!("the guest node has not reported its Pacemaker key on {node}, where it runs (no pmkt-authkey-{dom} attribute there)"),
                format!("run vm-connectd in the guest with --pacemaker-authkey /etc/pacemaker/authkey, and vm-stonithd on {node}; a guest asks within 60 s of a migration"),
            ),
        }
    }
}

/// The first 16 hex digits of a fingerprint, enough to tell keys apart in a message.
fn short(fp: &str) -> &str {
    fp.get(..16).unwrap_or(fp)
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
                    FindingCode::CloneConfigured,
                    format!("clone {rsc} ({key}{}) is configured", i + 1),
                );
            } else {
                f.push(
                    "cluster",
                    FindingCode::CloneMissing,
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
    let connectd = crate::clones::find(cib, "vm-connectd");
    check_managerd_clones(config, cib, connectd.as_deref(), f);
    match connectd {
        Some(id) => {
            f.ok(
                "cluster",
                FindingCode::ConnectdClone,
                format!("vm-connectd runs as clone {id}"),
            );
            check_connectd_sock_dir(config, cib, &id, f);
        }
        None => f.push(
            "cluster",
            FindingCode::ConnectdCloneMissing,
            Level::Warning,
            "no vm-connectd clone: guests cannot reach their host over the vmconnectd channel",
            "run vm-connectd -t host as a clone on every host node (docs/operations.md)",
        ),
    }
    if config.stonithd.is_empty() {
        f.push(
            "cluster", FindingCode::StonithdNotConfigured,
            Level::Warning,
            "no vm_stonithdN in vm-ctl.conf: guests are not colocated with vm-stonithd, guest clusters cannot fence through the host",
            format!("add vm_stonithd1=(CLONE_ID) to {file} once vm-stonithd runs as a clone"),
        );
    }
    match config.stonith() {
        Ok(true) if !cib.stonith_enabled() => f.push(
            "cluster",
            FindingCode::FencingDisabled,
            Level::Error,
            "vm_stonith=on (on-fail=fence) but the cluster has stonith-enabled=false",
            format!("enable fencing in the cluster, or set vm_stonith=off in {file}"),
        ),
        Ok(_) => f.ok(
            "cluster",
            FindingCode::FencingConsistent,
            "fencing settings are consistent",
        ),
        Err(e) => f.push(
            "cluster",
            FindingCode::VmStonithInvalid,
            Level::Error,
            e.to_string(),
            format!("set vm_stonith=on or off in {file}"),
        ),
    }
}

/// Each `vm_managerdN` clone that exists: it should run ocf:pm-kvm-tools:vm-managerd (the
/// original's vm-managerd under vm-anything speaks the old protocol, which the relay does not
/// carry) and start after the vm-connectd clone it registers with.
fn check_managerd_clones(config: &Config, cib: &Cib, connectd: Option<&str>, f: &mut Findings) {
    for clone in config.managerd.iter().filter(|c| cib.is_clone(&c.rsc)) {
        let c = clone.rsc.as_str();
        let agent = cib
            .resource(c)
            .and_then(|r| r.elements().find(|e| e.name == "primitive"))
            .map(|p| {
                format!(
                    "{}:{}:{}",
                    p.get("class").unwrap_or("?"),
                    p.get("provider").unwrap_or("?"),
                    p.get("type").unwrap_or("?")
                )
            })
            .unwrap_or_default();
        if agent == "ocf:pm-kvm-tools:vm-managerd" {
            f.ok(
                "cluster",
                FindingCode::ManagerdAgent,
                format!("clone {c} runs vm-managerd ({agent})"),
            );
        } else if !agent.starts_with("systemd:vm-managerd") {
            f.push(
                "cluster",
                FindingCode::ManagerdAgentOther,
                Level::Warning,
                format!(
                    "clone {c} (vm_managerd) runs {agent}, not ocf:pm-kvm-tools:vm-managerd: the original's vm-managerd cannot answer guests through this vm-connectd"
                ),
                "replace its primitive with ocf:pm-kvm-tools:vm-managerd (docs/operations.md, \"vm-managerd: host attributes for guests\")",
            );
        }
        let Some(connectd) = connectd else { continue };
        let ordered = cib.constraints_of(c).iter().any(|e| {
            e.name == "rsc_order" && e.get("first") == Some(connectd) && e.get("then") == Some(c)
        });
        if ordered {
            f.ok(
                "cluster",
                FindingCode::ManagerdOrdered,
                format!("clone {c} starts after {connectd}"),
            );
        } else {
            f.push(
                "cluster",
                FindingCode::ManagerdUnordered,
                Level::Warning,
                format!("clone {c} is not ordered after {connectd}: vm-managerd registers with vm-connectd, and retries until it runs"),
                format!("crm configure order odr-{c} Mandatory: {connectd} {c}; crm configure colocation col-{c} inf: {c} {connectd}"),
            );
        }
    }
}

/// A managed guest's constraints on each `vm_managerdN` clone, as `resource add` makes them
/// (its location rule on the clone's attribute, colocation and order): a guest added before
/// the clone was listed in vm-ctl.conf has none.
fn check_managerd_constraints(config: &Config, cib: &Cib, dom: &str, rsc: &str, f: &mut Findings) {
    let have: Vec<&str> = cib
        .constraints_of(rsc)
        .iter()
        .filter_map(|e| e.id())
        .collect();
    for clone in &config.managerd {
        let mut want = vec![
            ids::colocation(dom, &clone.rsc),
            ids::order(dom, &clone.rsc),
        ];
        if let Some(attr) = &clone.attr {
            want.push(ids::attr_location(dom, attr));
        }
        let missing: Vec<&String> = want
            .iter()
            .filter(|w| !have.contains(&w.as_str()))
            .collect();
        if missing.is_empty() {
            f.ok(
                dom,
                FindingCode::ManagerdConstraints,
                format!("constraints on {} (vm_managerd) in place", clone.rsc),
            );
        } else {
            f.push(
                dom,
                FindingCode::ManagerdConstraintsMissing,
                Level::Warning,
                format!(
                    "constraints on {} (vm_managerd) missing: {}",
                    clone.rsc,
                    missing
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                format!("re-create the guest with vm-ctl.conf as it is now: vm-ctl resource stop {dom} --wait; vm-ctl resource delete {dom}; vm-ctl resource add {dom} -a NODE"),
            );
        }
    }
}

/// The directory the vm-connectd clone watches must be the one vm-ctl expects the guests'
/// channels in (`vm_connectd_sock_dir`), or every guest check below compares against the wrong
/// place. Only known when the clone runs the shipped OCF agent (its `sock_dir` parameter).
fn check_connectd_sock_dir(config: &Config, cib: &Cib, clone: &str, f: &mut Findings) {
    let Some(prim) = cib
        .resource(clone)
        .and_then(|c| c.elements().find(|e| e.name == "primitive"))
        .filter(|p| {
            p.get("provider") == Some("pm-kvm-tools") && p.get("type") == Some("vm-connectd")
        })
        .and_then(|p| p.id())
    else {
        return;
    };
    // the agent's default when the parameter is not set
    let watched = cib
        .instance_attribute(prim, "sock_dir")
        .unwrap_or("/var/lib/libvirt/qemu");
    let expected = config.connectd_sock_dir.display();
    if Path::new(watched) == config.connectd_sock_dir {
        f.ok(
            "cluster", FindingCode::ConnectdSockDir,
            format!("vm-connectd ({prim}) watches {watched}, where vm_connectd_sock_dir puts the guests' channels"),
        );
    } else {
        f.push(
            "cluster", FindingCode::ConnectdSockDirDiffers,
            Level::Error,
            format!(
                "vm-connectd ({prim}) watches {watched}, but vm_connectd_sock_dir is {expected}: \
                 guests whose channel is there are not relayed (no guest fencing)"
            ),
            format!(
                "set vm_connectd_sock_dir={watched} in {}, or the clone's directory: \
                 crm_resource --resource {prim} --set-parameter sock_dir --parameter-value {expected}",
                config.source.display()
            ),
        );
    }
}

/// With a resource-stickiness of 0 (Pacemaker's default), the scheduler spreads resources by
/// count: adding, starting or moving one guest, or a node joining, can live-migrate other guests
/// that were running fine. Stickiness below the preferred-node score still lets a guest return
/// to its preferred node; at or above it, guests stay where they run.
fn check_stickiness(config: &Config, cib: &Cib, guests: &[(String, &Element)], f: &mut Findings) {
    let act = config.node_loc_act.as_str();
    let fix = format!(
        "crm configure rsc_defaults resource-stickiness=100, or pcs resource defaults update \
         resource-stickiness=100 (below vm_node_loc_act {act}: a guest still returns to its \
         preferred node; INFINITY: guests stay where they run)"
    );
    let mut judge = |subject: &str, value: Option<&str>, whose: &str| {
        let (code, level, message) = judge_stickiness(value, whose, act);
        let fix = if level == Level::Ok { "" } else { fix.as_str() };
        f.push(subject, code, level, message, fix);
    };
    if !guests.is_empty() {
        judge(
            "cluster",
            cib.rsc_default("resource-stickiness"),
            "rsc_defaults",
        );
    }
    // a guest's own meta attribute overrides the default
    for (dom, prim) in guests {
        let rsc = prim.id().unwrap_or_default();
        if let Some(own) = cib.meta_attribute(rsc, "resource-stickiness") {
            judge(dom, Some(own), &format!("meta attribute of {rsc}"));
        }
    }
}

/// A stickiness `value` (`None`: unset) against the preferred-node score `act`.
fn judge_stickiness(value: Option<&str>, whose: &str, act: &str) -> (FindingCode, Level, String) {
    let level = |v: &str| match Score::parse(v) {
        Some(s) if s == Score::infinity() => Some(i64::MAX),
        Some(s) if s == Score::minus_infinity() => Some(i64::MIN),
        Some(s) => s.as_str().parse::<i64>().ok(),
        None => None,
    };
    match value.map(|v| (v, level(v))) {
        None | Some((_, Some(0))) => (
            FindingCode::StickinessZero,
            Level::Warning,
            format!(
                "resource-stickiness is {} ({whose}): Pacemaker may live-migrate running guests \
                 to even out the nodes whenever a guest is added, started or moved, or a node \
                 joins",
                value.unwrap_or("0, Pacemaker's default")
            ),
        ),
        Some((v, None)) => (
            FindingCode::StickinessNotAScore,
            Level::Error,
            format!("resource-stickiness {v:?} ({whose}) is not a score"),
        ),
        Some((v, Some(n))) if n < 0 => (
            FindingCode::StickinessNegative,
            Level::Warning,
            format!(
                "resource-stickiness is {v} ({whose}): guests are pushed away from where they run"
            ),
        ),
        Some((v, Some(n))) => (
            FindingCode::Stickiness,
            Level::Ok,
            format!(
                "resource-stickiness {v} ({whose}): guests stay where they run{}",
                if n < level(act).unwrap_or(0) {
                    format!(", or return to their preferred node (score {act})")
                } else {
                    format!(", even when their preferred node (score {act}) is back")
                }
            ),
        ),
    }
}

/// A meta attribute of `rsc`, or the cluster's resource default for it.
fn meta_or_default<'a>(cib: &'a Cib, rsc: &str, name: &str) -> Option<&'a str> {
    cib.meta_attribute(rsc, name)
        .or_else(|| cib.rsc_default(name))
}

/// How a failing guest is recovered: escalation from restarts to a move
/// (`migration-threshold`, `failure-timeout`), and whether a silent guest counts as failing
/// (`liveness_timeout` of `ocf:pm-kvm-tools:VirtualDomain`).
fn check_recovery(
    config: &Config,
    cib: &Cib,
    dom: &str,
    rsc: &str,
    prim: &Element,
    f: &mut Findings,
) {
    let file = config.source.display();
    let threshold = meta_or_default(cib, rsc, "migration-threshold");
    let expiry = meta_or_default(cib, rsc, "failure-timeout");
    match (threshold, expiry) {
        (Some(t), Some(e)) => f.ok(
            dom,
            FindingCode::GuestEscalation,
            format!(
                "migration-threshold={t}, failure-timeout={e}: after {t} failure(s) on a node the \
                 guest moves to another; failures expire after {e}"
            ),
        ),
        _ => {
            let mut missing = Vec::new();
            if threshold.is_none() {
                missing.push(
                    "migration-threshold (a failing guest restarts on the same node forever)",
                );
            }
            if expiry.is_none() {
                missing.push("failure-timeout (its failures on a node never expire)");
            }
            f.push(
                dom,
                FindingCode::GuestEscalationMissing,
                Level::Warning,
                format!("no {}", missing.join(", no ")),
                format!(
                    "set vm_migration_threshold and vm_failure_timeout in {file} and re-create \
                     the resource, or set them on it: crm_resource --resource {rsc} --meta \
                     --set-parameter migration-threshold --parameter-value 3 (and \
                     failure-timeout, e.g. 10min)"
                ),
            );
        }
    }
    if !vm_pcmk::virtualdomain::stops_hard_on_fence(prim) {
        // the stock agent has no liveness monitor: guest-soft-fence already says to switch
        return;
    }
    let param = vm_pcmk::virtualdomain::LIVENESS_TIMEOUT_PARAM;
    match cib
        .instance_attribute(rsc, param)
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|secs| *secs > 0)
    {
        Some(secs) => f.ok(
            dom,
            FindingCode::GuestLiveness,
            format!(
                "{param}={secs}: its monitor fails once the guest's vm-connectd has been silent \
                 for {secs} s (a guest without the guest daemon is never failed)"
            ),
        ),
        None => f.push(
            dom,
            FindingCode::GuestLivenessOff,
            Level::Warning,
            "no liveness_timeout: a guest whose kernel hangs or panics still reads running",
            format!(
                "set vm_liveness_timeout in {file} and re-create the resource, or set it on it: \
                 crm_resource --resource {rsc} --set-parameter {param} --parameter-value 120"
            ),
        ),
    }
}

fn check_guest(
    config: &Config,
    cib: &Cib,
    libvirt: Option<&Definitions>,
    dom: &str,
    f: &mut Findings,
) {
    let rsc = ids::rsc(dom);
    match guest::primitive(cib, dom) {
        Ok(prim) => {
            f.ok(
                dom,
                FindingCode::GuestManaged,
                format!("managed by Pacemaker as {rsc}"),
            );
            check_managerd_constraints(config, cib, dom, &rsc, f);
            check_recovery(config, cib, dom, &rsc, prim, f);
            if !vm_pcmk::virtualdomain::stops_hard_on_fence(prim) {
                let agent = format!(
                    "{}:{}:{}",
                    prim.get("class").unwrap_or("?"),
                    prim.get("provider").unwrap_or("?"),
                    prim.get("type").unwrap_or("?")
                );
                f.push(
                    dom, FindingCode::GuestSoftFence,
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
            FindingCode::GuestUnmanaged,
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
                FindingCode::DomainXmlInvalid,
                Level::Error,
                e.to_string(),
                "fix the domain XML file named above",
            );
            return;
        }
    };
    f.ok(
        dom,
        FindingCode::DomainXmlValid,
        format!("domain XML {} is valid", path.display()),
    );
    match xml.vmconnectd_channel() {
        None => f.push(
            dom, FindingCode::ChannelMissing,
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
                    dom, FindingCode::ChannelMisplaced,
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
                f.ok(dom, FindingCode::Channel, format!("vmconnectd channel at {path}"));
            }
        }
    }
    if xml.uuid.is_some() {
        f.ok(dom, FindingCode::UuidFixed, "fixed <uuid>");
    } else {
        f.push(
            dom,
            FindingCode::UuidMissing,
            Level::Warning,
            "no <uuid>: the guest gets a new UUID at every start",
            "add a <uuid> (uuidgen) to the domain XML so the guest keeps its identity",
        );
    }
    if let Some(lv) = libvirt {
        match lv.of(dom) {
            Definition::Persistent { autostart: Some(true) } => f.push(
                dom, FindingCode::AutostartOn,
                Level::Error,
                "libvirt autostart is on: libvirtd would start the guest behind Pacemaker's back (e.g. after it was fenced)",
                format!("virsh autostart --disable {dom}"),
            ),
            Definition::Persistent { autostart: Some(false) } => f.ok(dom, FindingCode::AutostartOff, "libvirt autostart is off"),
            Definition::Persistent { autostart: None } => f.push(
                dom, FindingCode::AutostartUnknown, Level::Warning,
                format!("cannot read autostart: {}", lv.autostart_error().unwrap_or("unknown error")),
                "",
            ),
            Definition::Transient => f.ok(dom, FindingCode::Transient, "not defined persistently in libvirt (VirtualDomain runs it transient): no autostart"),
        }
    }
}

/// This node's keys and vm-stonithd.toml, and whether every host node's vm-stonithd holds the
/// same keys (from the `pmkt-fence-keys` attributes in the CIB status).
fn check_guest_fencing(paths: &FencePaths, cib: &Cib, f: &mut Findings) {
    const S: &str = published::SUBJECT;
    let toml_path = paths.stonithd_config.display();
    let (toml, problem) = super::stonith::read_stonithd_toml(&paths.stonithd_config);
    if let Some(p) = problem {
        f.push(
            S,
            FindingCode::StonithdConfigInvalid,
            Level::Error,
            p,
            format!(
                "fix {toml_path} (vm-stonithd cannot start with it), or run vm-ctl check as root"
            ),
        );
    }
    let dir = fencing::key_dir(paths.key_dir.as_deref(), toml.as_ref());
    let dir_shown = dir.display();
    let clusters: Vec<&str> = toml
        .as_ref()
        .map(fencing::cluster_names)
        .unwrap_or_default();
    let keygen_fix = |c: &str| {
        format!(
            "vm-ctl stonith keygen {c}, then copy the key to every host node and into the guests as it says"
        )
    };
    let (local, unusable) = match fs::metadata(&dir) {
        Err(e) if e.kind() == ErrorKind::NotFound => {
            if clusters.is_empty() {
                f.ok(
                    S,
                    FindingCode::FencingNotSetUp,
                    format!(
                        "guest fencing is not set up on this node (no {dir_shown}, no guest \
                         cluster in {toml_path})"
                    ),
                );
            } else {
                f.push(
                    S,
                    FindingCode::KeyDirMissing,
                    Level::Error,
                    format!(
                        "the key directory {dir_shown} does not exist: vm-stonithd has no keys"
                    ),
                    keygen_fix(clusters.first().copied().unwrap_or("CLUSTER")),
                );
            }
            (Vec::new(), Vec::new())
        }
        Err(e) => {
            f.push(
                S,
                FindingCode::KeyDirUnreadable,
                Level::Warning,
                format!("cannot read the key directory {dir_shown}: {e}"),
                "run vm-ctl check as root",
            );
            (Vec::new(), Vec::new())
        }
        Ok(m) if !m.is_dir() => {
            f.push(
                S,
                FindingCode::KeyDirNotADirectory,
                Level::Error,
                format!("{dir_shown} is not a directory"),
                format!(
                    "move {dir_shown} away, then create the keys again with vm-ctl stonith keygen"
                ),
            );
            (Vec::new(), Vec::new())
        }
        Ok(m) => {
            let mode = m.mode() & 0o7777;
            if mode & 0o022 != 0 {
                f.push(
                    S,
                    FindingCode::KeyDirWritable,
                    Level::Error,
                    format!(
                        "the key directory {dir_shown} has mode {mode:04o}: group or others can \
                         remove or replace keys"
                    ),
                    format!("chmod 700 {dir_shown}"),
                );
            } else if mode & 0o077 != 0 {
                f.push(
                    S, FindingCode::KeyDirMode,
                    Level::Warning,
                    format!(
                        "the key directory {dir_shown} has mode {mode:04o}: it should be 0700 or stricter"
                    ),
                    format!("chmod 700 {dir_shown}"),
                );
            } else {
                f.ok(
                    S,
                    FindingCode::KeyDir,
                    format!("key directory {dir_shown} (mode {mode:04o})"),
                );
            }
            load_keys(&dir, f)
        }
    };
    for c in &clusters {
        let n = local.iter().filter(|l| l.stamp.cluster == *c).count();
        if n == 0 {
            // the file names say whose the unusable files probably are
            let prefix = format!("{c}-");
            let theirs: Vec<String> = unusable
                .iter()
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
                })
                .map(|p| p.display().to_string())
                .collect();
            let fix = if theirs.is_empty() {
                keygen_fix(c)
            } else {
                format!(
                    "make {} usable (see above), or {}",
                    theirs.join(" "),
                    keygen_fix(c)
                )
            };
            f.push(
                S,
                FindingCode::ClusterWithoutKey,
                Level::Error,
                format!(
                    "guest cluster {c} (in {toml_path}) has no usable key in {dir_shown}: its \
                     guests cannot fence"
                ),
                fix,
            );
        } else {
            f.ok(
                S,
                FindingCode::ClusterKeys,
                format!("guest cluster {c} has {n} key(s)"),
            );
        }
    }
    let mut unconfigured: Vec<&str> = local
        .iter()
        .map(|l| l.stamp.cluster.as_str())
        .filter(|c| !clusters.contains(c))
        .collect();
    unconfigured.sort_unstable();
    unconfigured.dedup();
    for c in unconfigured {
        let files: Vec<String> = local
            .iter()
            .filter(|l| l.stamp.cluster == c)
            .map(|l| l.file.display().to_string())
            .collect();
        let (message, fix) = if toml.is_some() {
            (
                format!(
                    "key(s) of guest cluster {c}, which {toml_path} does not configure: vm-stonithd \
                     refuses its requests"
                ),
                format!(
                    "add a [[cluster]] table with name = \"{c}\" and its members to {toml_path}, or \
                     remove {}",
                    files.join(" ")
                ),
            )
        } else {
            (
                format!(
                    "key(s) of guest cluster {c}, but no {toml_path}: vm-stonithd serves no guest cluster"
                ),
                format!(
                    "create {toml_path} with a [[cluster]] table for {c} (vm-ctl stonith keygen \
                     prints one)"
                ),
            )
        };
        f.push(
            S,
            FindingCode::KeyOfUnconfiguredCluster,
            Level::Warning,
            message,
            fix,
        );
    }
    let nodes = published::node_keys(cib);
    let me = super::stonith::host_names();
    let this_node = nodes
        .iter()
        .map(|n| n.node.as_str())
        .find(|n| me.iter().any(|m| m == n));
    f.0.extend(published::compare(&local, &dir, this_node, &nodes));
}

/// Load every `*.key` file of `dir`: (the keys, the files that do not load). A file that does
/// not load is a finding with its fix.
fn load_keys(dir: &Path, f: &mut Findings) -> (Vec<LocalKey>, Vec<PathBuf>) {
    const S: &str = published::SUBJECT;
    let files = match super::stonith::key_files(dir) {
        Ok(files) => files,
        Err(e) => {
            let level = if e.kind() == ErrorKind::PermissionDenied {
                Level::Warning
            } else {
                Level::Error
            };
            f.push(
                S,
                FindingCode::KeyDirUnreadable,
                level,
                format!("cannot list the key directory {}: {e}", dir.display()),
                "run vm-ctl check as root",
            );
            return (Vec::new(), Vec::new());
        }
    };
    let mut local: Vec<LocalKey> = Vec::new();
    let mut unusable = Vec::new();
    for path in files {
        let shown = path.display();
        match Key::load(&path) {
            Ok(key) => {
                let stamp = KeyStamp::of(&key);
                if let Some(other) = local.iter().find(|l| l.stamp.id == stamp.id) {
                    f.push(
                        S,
                        FindingCode::KeyIdDuplicate,
                        Level::Error,
                        format!(
                            "{shown} has the same key id {} as {}: vm-stonithd ignores one of them",
                            stamp.id,
                            other.file.display()
                        ),
                        format!(
                            "remove the file that is not in use ({shown} or {})",
                            other.file.display()
                        ),
                    );
                    continue;
                }
                f.ok(
                    S,
                    FindingCode::Key,
                    format!(
                        "key {}:{} ({shown}) loads, fingerprint {}",
                        stamp.cluster, stamp.id, stamp.fingerprint
                    ),
                );
                local.push(LocalKey { stamp, file: path });
            }
            Err(e) => {
                let (level, fix) = match &e {
                    KeyError::Permissions { .. } => (Level::Error, format!("chmod 600 {shown}")),
                    KeyError::Owner { .. } => (Level::Error, format!("chown root:root {shown}")),
                    KeyError::Io { source, .. } if source.kind() == ErrorKind::PermissionDenied => {
                        (Level::Warning, "run vm-ctl check as root".to_owned())
                    }
                    _ => (
                        Level::Error,
                        format!(
                            "replace it: vm-ctl stonith keygen CLUSTER, install the new key on every \
                             host node and guest, then remove {shown}"
                        ),
                    ),
                };
                f.push(
                    S,
                    FindingCode::KeyUnusable,
                    level,
                    format!("unusable key file: {e}"),
                    fix,
                );
                unusable.push(path);
            }
        }
    }
    (local, unusable)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CIB with host nodes n1, n2, guests g1 (a guest node), g2 (one too) and g3 (not), the
    /// transient attributes `attrs` (node, name, value) and the operation history `ops`
    /// (node, domain, `lrm_rsc_op` elements).
    fn guest_node_cib(attrs: &[(&str, &str, &str)], ops: &[(&str, &str, &str)]) -> Cib {
        let prim = |dom: &str, remote: bool| {
            format!(
                r#"<primitive id="prmVMCTL_{dom}" class="ocf" provider="pm-kvm-tools" type="VirtualDomain"><meta_attributes id="m-{dom}">{}</meta_attributes></primitive>"#,
                if remote {
                    format!(r#"<nvpair id="m-{dom}-r" name="remote-node" value="{dom}"/>"#)
                } else {
                    String::new()
                }
            )
        };
        let state = |id: u32, node: &str| {
            let nv: String = attrs
                .iter()
                .filter(|(n, _, _)| *n == node)
                .map(|(_, k, v)| {
                    format!(r#"<nvpair id="status-{id}-{k}" name="{k}" value="{v}"/>"#)
                })
                .collect();
            let lrm: String = ops
                .iter()
                .filter(|(n, _, _)| *n == node)
                .map(|(_, dom, o)| {
                    format!(r#"<lrm_resource id="prmVMCTL_{dom}" class="ocf" provider="pm-kvm-tools" type="VirtualDomain">{o}</lrm_resource>"#)
                })
                .collect();
            format!(
                r#"<node_state id="{id}" uname="{node}" in_ccm="true" crmd="online" join="member" expected="member"><transient_attributes id="{id}"><instance_attributes id="status-{id}">{nv}</instance_attributes></transient_attributes><lrm id="{id}"><lrm_resources>{lrm}</lrm_resources></lrm></node_state>"#
            )
        };
        Cib::parse(&format!(
            r#"<cib epoch="1" num_updates="0" admin_epoch="0"><configuration><crm_config/><nodes><node id="1" uname="n1"/><node id="2" uname="n2"/></nodes><resources>{}{}{}</resources><constraints/></configuration><status>{}{}</status></cib>"#,
            prim("g1", true),
            prim("g2", true),
            prim("g3", false),
            state(1, "n1"),
            state(2, "n2")
        ))
        .unwrap()
    }

    /// An `lrm_rsc_op` of `dom`'s resource.
    fn op(dom: &str, id: &str, operation: &str, call: i32, rc: i32) -> String {
        format!(
            r#"<lrm_rsc_op id="prmVMCTL_{dom}_{id}" operation_key="prmVMCTL_{dom}_{operation}_0" operation="{operation}" call-id="{call}" rc-code="{rc}" op-status="0" interval="0"/>"#
        )
    }

    fn started(dom: &str) -> String {
        op(dom, "last_0", "start", 3, 0)
    }

    fn key_findings(cib: &Cib) -> Vec<(String, FindingCode, Level)> {
        let mut f = Findings(Vec::new());
        check_guest_node_keys(cib, &mut f);
        f.0.into_iter()
            .map(|x| (x.subject, x.code, x.level))
            .collect()
    }

    #[test]
    fn guest_node_keys_are_compared_with_the_host_nodes() {
        let (a, b) = ("a".repeat(64), "b".repeat(64));
        let found = key_findings(&guest_node_cib(
            &[
                ("n1", "pmkt-authkey", &a),
                ("n2", "pmkt-authkey", &a),
                ("n1", "pmkt-authkey-g1", &a),
                ("n2", "pmkt-authkey-g2", &b),
            ],
            &[("n1", "g1", &started("g1")), ("n2", "g2", &started("g2"))],
        ));
        assert_eq!(
            found,
            [
                ("cluster".into(), FindingCode::AuthkeyHostSame, Level::Ok),
                ("g1".into(), FindingCode::AuthkeyGuestSame, Level::Ok),
                ("g2".into(), FindingCode::AuthkeyGuestDiffers, Level::Error),
            ]
        );
        let found = key_findings(&guest_node_cib(
            &[
                ("n1", "pmkt-authkey", &a),
                ("n2", "pmkt-authkey", &b),
                ("n2", "pmkt-authkey-g2", "-"),
            ],
            &[("n1", "g1", &started("g1")), ("n2", "g2", &started("g2"))],
        ));
        assert_eq!(found[0].1, FindingCode::AuthkeyHostDiffers);
        assert_eq!(found[1].1, FindingCode::AuthkeyGuestUnknown);
        assert_eq!(found[2].1, FindingCode::AuthkeyGuestDiffers);
        let found = key_findings(&guest_node_cib(&[], &[]));
        assert_eq!(
            found,
            [(
                "cluster".into(),
                FindingCode::AuthkeyHostUnknown,
                Level::Warning
            )]
        );
    }

    /// After a live migration the old node keeps what the guest reported there until its
    /// vm-stonithd removes it: only the node the guest runs on counts.
    #[test]
    fn a_guest_node_is_judged_on_the_node_it_runs_on() {
        let (a, b) = ("a".repeat(64), "b".repeat(64));
        let hosts = [
            ("n1", "pmkt-authkey", a.as_str()),
            ("n2", "pmkt-authkey", &a),
        ];
        // migrated: the source's last operation is its stop, the target's migrate_from
        let (gone, arrived) = (
            op("g1", "last_0", "stop", 7, 0),
            op("g1", "last_0", "migrate_from", 3, 0),
        );
        let moved = [("n1", "g1", gone.as_str()), ("n2", "g1", &arrived)];
        let judged = |attrs: &[(&str, &str, &str)], ops: &[(&str, &str, &str)]| {
            let all: Vec<(&str, &str, &str)> = hosts.iter().chain(attrs).copied().collect();
            let found = key_findings(&guest_node_cib(&all, ops));
            assert_eq!(found[0].1, FindingCode::AuthkeyHostSame);
            let g1: Vec<_> = found.into_iter().filter(|f| f.0 == "g1").collect();
            assert_eq!(g1.len(), 1, "{g1:?}");
            (g1[0].1, g1[0].2)
        };
        // the old node's value is the cluster's, the new node has none yet: not "same"
        assert_eq!(
            judged(&[("n1", "pmkt-authkey-g1", &a)], &moved),
            (FindingCode::AuthkeyGuestUnknown, Level::Warning)
        );
        // the old node's value is stale, the new node's is what the guest holds now
        assert_eq!(
            judged(
                &[("n1", "pmkt-authkey-g1", &b), ("n2", "pmkt-authkey-g1", &a)],
                &moved
            ),
            (FindingCode::AuthkeyGuestSame, Level::Ok)
        );
        assert_eq!(
            judged(
                &[("n1", "pmkt-authkey-g1", &a), ("n2", "pmkt-authkey-g1", &b)],
                &moved
            ),
            (FindingCode::AuthkeyGuestDiffers, Level::Error)
        );
        // not running anywhere (stopped after running on n1), or on two nodes mid-migration
        assert_eq!(
            judged(&[("n1", "pmkt-authkey-g1", &a)], &[("n1", "g1", &gone)]),
            (FindingCode::AuthkeyGuestNotRunning, Level::Warning)
        );
        assert_eq!(
            judged(&[("n1", "pmkt-authkey-g1", &a)], &[]),
            (FindingCode::AuthkeyGuestNotRunning, Level::Warning)
        );
        let to = op("g1", "last_0", "migrate_to", 6, 0);
        assert_eq!(
            judged(
                &[("n1", "pmkt-authkey-g1", &a), ("n2", "pmkt-authkey-g1", &a)],
                &[("n1", "g1", &to), ("n2", "g1", &arrived)]
            ),
            (FindingCode::AuthkeyGuestNotRunning, Level::Warning)
        );
    }

    #[test]
    fn stickiness_is_judged_against_the_preferred_node_score() {
        let judge = |v| judge_stickiness(v, "rsc_defaults", "200");
        let (code, level, text) = judge(None);
        assert_eq!((code, level), (FindingCode::StickinessZero, Level::Warning));
        assert!(
            text.contains("is 0, Pacemaker's default (rsc_defaults)"),
            "{text}"
        );
        assert_eq!(judge(Some("0")).1, Level::Warning);
        assert_eq!(judge(Some("+0")).1, Level::Warning);
        assert_eq!(judge(Some("-INFINITY")).1, Level::Warning);
        assert_eq!(judge(Some("-5")).1, Level::Warning);
        assert_eq!(judge(Some("sticky")).1, Level::Error);
        let (_, level, text) = judge(Some("100"));
        assert_eq!(level, Level::Ok);
        assert!(
            text.contains("or return to their preferred node (score 200)"),
            "{text}"
        );
        for v in ["200", "INFINITY", "inf"] {
            let (code, level, text) = judge(Some(v));
            assert_eq!(code, FindingCode::Stickiness);
            assert_eq!(level, Level::Ok);
            assert!(
                text.contains("even when their preferred node"),
                "{v}: {text}"
            );
        }
    }

    #[test]
    fn managerd_clones_and_guest_constraints_are_checked() {
        let (config, _) = Config::parse(
            "vm_managerd1=(clnVmManagerd operator_check_status)\n",
            Path::new("vm-ctl.conf"),
        )
        .unwrap();
        let cib = |managerd_agent: &str, constraints: &str| {
            Cib::parse(&format!(
                r#"<cib><configuration><crm_config/><nodes/><resources>
  <clone id="clnVmConnectd"><primitive id="vm-connectd" class="ocf" provider="pm-kvm-tools" type="vm-connectd"/></clone>
  <clone id="clnVmManagerd"><primitive id="vm-managerd" {managerd_agent}/></clone>
  <primitive id="prmVMCTL_g1" class="ocf" provider="pm-kvm-tools" type="VirtualDomain"/>
</resources><constraints>{constraints}</constraints></configuration><status/></cib>"#
            ))
            .unwrap()
        };
        let levels = |cib: &Cib| {
            let mut f = Findings(Vec::new());
            check_managerd_clones(&config, cib, Some("clnVmConnectd"), &mut f);
            check_managerd_constraints(&config, cib, "g1", "prmVMCTL_g1", &mut f);
            f.0
        };
        let all = format!(
            r#"<rsc_order id="odr" kind="Mandatory" first="clnVmConnectd" then="clnVmManagerd"/>
<rsc_location id="{}" rsc="prmVMCTL_g1"/>
<rsc_colocation id="{}" rsc="prmVMCTL_g1" with-rsc="clnVmManagerd" score="INFINITY"/>
<rsc_order id="{}" first="clnVmManagerd" then="prmVMCTL_g1"/>"#,
            ids::attr_location("g1", "operator_check_status"),
            ids::colocation("g1", "clnVmManagerd"),
            ids::order("g1", "clnVmManagerd"),
        );
        let good = levels(&cib(
            r#"class="ocf" provider="pm-kvm-tools" type="vm-managerd""#,
            &all,
        ));
        assert!(good.iter().all(|f| f.level == Level::Ok), "{good:?}");
        assert_eq!(good.len(), 3);
        // the original's vm-managerd under vm-anything, not ordered, no guest constraints
        let bad = levels(&cib(
            r#"class="ocf" provider="extra" type="vm-anything""#,
            "",
        ));
        let warnings: Vec<&str> = bad
            .iter()
            .filter(|f| f.level == Level::Warning)
            .map(|f| f.message.as_str())
            .collect();
        assert_eq!(warnings.len(), 3, "{bad:?}");
        assert!(
            warnings[0].contains("runs ocf:extra:vm-anything"),
            "{}",
            warnings[0]
        );
        assert!(
            warnings[1].contains("not ordered after clnVmConnectd"),
            "{}",
            warnings[1]
        );
        assert!(
            warnings[2].contains("missing") && warnings[2].contains("operator_check_status"),
            "{}",
            warnings[2]
        );
    }
}
