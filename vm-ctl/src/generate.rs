//! The objects `resource add` creates for a guest: exactly the original vm-ctl's block
//! (original-behavior §10.5), as the XML `crm configure load update` makes of it — same ids,
//! same attributes — so a CIB built by either tool is the same CIB.
//!
//! ```text
//! primitive prmVMCTL_<dom> <vm_ocf> \
//!     params config="<vm_cfg_dir>/<dom><vm_cfg_ext>" hypervisor=... migration_transport=... \
//!     meta allow-migrate=<true|false> target-role=Stopped \
//!     op start ... op monitor ... op stop ... on-fail=<fence|block> op migrate_to ... op migrate_from ...
//! location locVMCTL_<dom>_<node>_ACT prmVMCTL_<dom> <vm_node_loc_act>: <node>
//! location locVMCTL_<dom>_<ATTR> prmVMCTL_<dom> rule -inf: not_defined <ATTR> or <ATTR> <op> <value>
//! colocation colVMCTL_<dom>_<RSC> <score>: prmVMCTL_<dom> <RSC>
//! order odrVMCTL_<dom>_<RSC> <score>: <RSC> prmVMCTL_<dom> symmetrical=<bool>
//! ```
//! (the location/colocation/order triple for every `vm_pingdN`, `vm_diskdN`, `vm_managerdN`,
//! the colocation/order pair for every `vm_stonithdN`).
//!
//! Beyond the original, when vm-ctl.conf sets them: `params liveness_timeout=<seconds>`
//! (`vm_liveness_timeout`, only with `ocf:pm-kvm-tools:VirtualDomain`, whose monitor fails a
//! guest whose vm-connectd went silent, docs/operations.md) and `meta
//! migration-threshold=<n> failure-timeout=<duration>` (`vm_migration_threshold`,
//! `vm_failure_timeout`: how a failing guest's recovery escalates from a restart to a move).
//!
//! Guest fencing needs nothing in the block itself: it depends on the agent (`vm_ocf`), which
//! for a hard power-off on fence is `ocf:pm-kvm-tools:VirtualDomain` (see
//! [`vm_pcmk::virtualdomain`]); `vm-ctl check` warns about guests with another agent.

use vm_pcmk::xml::Element;

use crate::config::{AttrRules, CloneRef, Config, OpSpec, OrderSpec, Score};
use crate::error::Result;
use crate::ids;

/// A guest's objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestObjects {
    /// The VirtualDomain primitive.
    pub primitive: Element,
    /// Its constraints, in the original's order.
    pub constraints: Vec<Element>,
}

impl GuestObjects {
    /// Every object, primitive first.
    pub fn all(&self) -> impl Iterator<Item = &Element> {
        std::iter::once(&self.primitive).chain(&self.constraints)
    }
}

/// The objects for guest `dom`, preferring `node`, with live migration `migrate`.
pub fn guest(config: &Config, dom: &str, node: &str, migrate: bool) -> Result<GuestObjects> {
    let rsc = ids::rsc(dom);
    let agent = config.ocf_agent()?;
    let stop_on_fail = config.stop_on_fail()?;
    let xml_path = config.domain_xml_path(dom)?;

    let mut primitive = Element::new("primitive")
        .attr("id", &rsc)
        .attr("class", &agent.class);
    if let Some(p) = &agent.provider {
        primitive = primitive.attr("provider", p);
    }
    primitive = primitive.attr("type", &agent.kind);

    let ia = format!("{rsc}-instance_attributes");
    let mut params = Element::new("instance_attributes")
        .attr("id", &ia)
        .child(nvpair(&ia, "config", &xml_path.to_string_lossy()))
        .child(nvpair(&ia, "hypervisor", &config.hypervisor))
        .child(nvpair(
            &ia,
            "migration_transport",
            &config.migration_transport,
        ));
    let watches_liveness = agent.class == "ocf"
        && agent.provider.as_deref() == Some(vm_pcmk::virtualdomain::HARD_STOP_PROVIDER)
        && agent.kind == "VirtualDomain";
    if let (true, Some(secs)) = (watches_liveness, config.liveness_timeout) {
        params = params.child(nvpair(
            &ia,
            vm_pcmk::virtualdomain::LIVENESS_TIMEOUT_PARAM,
            &secs.to_string(),
        ));
    }
    let ma = format!("{rsc}-meta_attributes");
    let mut meta = Element::new("meta_attributes")
        .attr("id", &ma)
        .child(nvpair(
            &ma,
            "allow-migrate",
            if migrate { "true" } else { "false" },
        ))
        .child(nvpair(&ma, "target-role", "Stopped"));
    if let Some(n) = &config.migration_threshold {
        meta = meta.child(nvpair(&ma, "migration-threshold", n.as_str()));
    }
    if let Some(t) = &config.failure_timeout {
        meta = meta.child(nvpair(&ma, "failure-timeout", t));
    }
    let ops = Element::new("operations")
        .child(op(&rsc, "start", &config.start_op, None))
        .child(op(&rsc, "monitor", &config.monitor_op, None))
        .child(op(&rsc, "stop", &config.stop_op, Some(stop_on_fail)))
        .child(op(
            &rsc,
            "migrate_to",
            &config.migrate_to_op,
            Some(stop_on_fail),
        ))
        .child(op(&rsc, "migrate_from", &config.migrate_from_op, None));
    primitive = primitive.child(params).child(meta).child(ops);

    let mut constraints = vec![
        Element::new("rsc_location")
            .attr("id", ids::act_location(dom, node))
            .attr("rsc", &rsc)
            .attr("score", config.node_loc_act.as_str())
            .attr("node", node),
    ];
    for (clones, rules) in [
        (&config.pingd, &config.pingd_rules),
        (&config.diskd, &config.diskd_rules),
        (&config.managerd, &config.managerd_rules),
    ] {
        for clone in clones {
            constraints.extend(attr_constraints(dom, &rsc, clone, rules));
        }
    }
    for clone in &config.stonithd {
        constraints.push(colocation(dom, &rsc, clone, &config.stonithd_col));
        constraints.push(order(dom, &rsc, clone, &config.stonithd_odr));
    }
    Ok(GuestObjects {
        primitive,
        constraints,
    })
}

fn nvpair(set: &str, name: &str, value: &str) -> Element {
    Element::new("nvpair")
        .attr("name", name)
        .attr("value", value)
        .attr("id", format!("{set}-{name}"))
}

fn op(rsc: &str, name: &str, spec: &OpSpec, on_fail: Option<&str>) -> Element {
    let mut op = Element::new("op")
        .attr("name", name)
        .attr("interval", &spec.interval)
        .attr("timeout", &spec.timeout);
    if let Some(f) = on_fail.or(spec.on_fail.as_deref()) {
        op = op.attr("on-fail", f);
    }
    op.attr("id", format!("{rsc}-{name}-{}", spec.interval))
}

fn attr_constraints(dom: &str, rsc: &str, clone: &CloneRef, rules: &AttrRules) -> Vec<Element> {
    let mut out = Vec::new();
    if let Some(attr) = &clone.attr {
        let lid = ids::attr_location(dom, attr);
        let rule = format!("{lid}-rule");
        out.push(
            Element::new("rsc_location")
                .attr("id", &lid)
                .attr("rsc", rsc)
                .child(
                    Element::new("rule")
                        .attr("score", "-INFINITY")
                        .attr("boolean-op", "or")
                        .attr("id", &rule)
                        .child(
                            Element::new("expression")
                                .attr("operation", "not_defined")
                                .attr("attribute", attr)
                                .attr("id", format!("{rule}-expression")),
                        )
                        .child(
                            Element::new("expression")
                                .attr("operation", &rules.loc.op)
                                .attr("attribute", attr)
                                .attr("value", &rules.loc.value)
                                .attr("id", format!("{rule}-expression-0")),
                        ),
                ),
        );
    }
    out.push(colocation(dom, rsc, &clone.rsc, &rules.col));
    out.push(order(dom, rsc, &clone.rsc, &rules.odr));
    out
}

fn colocation(dom: &str, rsc: &str, with: &str, score: &Score) -> Element {
    Element::new("rsc_colocation")
        .attr("id", ids::colocation(dom, with))
        .attr("score", score.as_str())
        .attr("rsc", rsc)
        .attr("with-rsc", with)
}

fn order(dom: &str, rsc: &str, first: &str, spec: &OrderSpec) -> Element {
    let mut el = Element::new("rsc_order").attr("id", ids::order(dom, first));
    // crmsh writes `order ID 0: ...` as kind=Optional and `inf:` as kind=Mandatory.
    el = match spec.score.as_str() {
        "0" => el.attr("kind", "Optional"),
        "INFINITY" => el.attr("kind", "Mandatory"),
        other => el.attr("score", other),
    };
    el.attr(
        "symmetrical",
        if spec.symmetrical { "true" } else { "false" },
    )
    .attr("first", first)
    .attr("then", rsc)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn config() -> Config {
        let text = "vm_cfg_dir=/etc/libvirt/qemu\nvm_cfg_ext=.xml\nvm_allow_migrate=off\n\
                    vm_stonith=on\nvm_ocf=ocf:heartbeat:VirtualDomain\n\
                    vm_pingd1=(clnPingd default_ping_set)\nvm_diskd1=(clnDiskd1 diskcheck_status)\n\
                    vm_stonithd1=(clnVmStonithd)\n";
        Config::parse(text, Path::new("/etc/vm-ctl.conf"))
            .unwrap()
            .0
    }

    #[test]
    fn the_original_block() {
        let g = guest(&config(), "g1", "host1", true).unwrap();
        let p = &g.primitive;
        assert_eq!(p.id(), Some("prmVMCTL_g1"));
        assert_eq!(
            (p.get("class"), p.get("provider"), p.get("type")),
            (Some("ocf"), Some("heartbeat"), Some("VirtualDomain"))
        );
        let nv = |id: &str| p.find_id(id).and_then(|e| e.get("value")).unwrap_or("?");
        assert_eq!(
            nv("prmVMCTL_g1-instance_attributes-config"),
            "/etc/libvirt/qemu/g1.xml"
        );
        assert_eq!(
            nv("prmVMCTL_g1-instance_attributes-hypervisor"),
            "qemu:///system"
        );
        assert_eq!(
            nv("prmVMCTL_g1-instance_attributes-migration_transport"),
            "ssh"
        );
        assert_eq!(nv("prmVMCTL_g1-meta_attributes-allow-migrate"), "true");
        assert_eq!(nv("prmVMCTL_g1-meta_attributes-target-role"), "Stopped");
        let op = |id: &str| p.find_id(id).map(|e| (e.get("timeout"), e.get("on-fail")));
        assert_eq!(
            op("prmVMCTL_g1-start-0"),
            Some((Some("90s"), Some("restart")))
        );
        assert_eq!(
            op("prmVMCTL_g1-monitor-10s"),
            Some((Some("30s"), Some("restart")))
        );
        assert_eq!(op("prmVMCTL_g1-stop-0"), Some((Some("90s"), Some("fence"))));
        assert_eq!(
            op("prmVMCTL_g1-migrate_to-0"),
            Some((Some("300s"), Some("fence")))
        );
        assert_eq!(
            op("prmVMCTL_g1-migrate_from-0"),
            Some((Some("240s"), Some("restart")))
        );

        let ids: Vec<_> = g.constraints.iter().filter_map(Element::id).collect();
        assert_eq!(
            ids,
            [
                "locVMCTL_g1_host1_ACT",
                "locVMCTL_g1_default_ping_set",
                "colVMCTL_g1_clnPingd",
                "odrVMCTL_g1_clnPingd",
                "locVMCTL_g1_diskcheck_status",
                "colVMCTL_g1_clnDiskd1",
                "odrVMCTL_g1_clnDiskd1",
                "colVMCTL_g1_clnVmStonithd",
                "odrVMCTL_g1_clnVmStonithd",
            ]
        );
        let ping = &g.constraints[1];
        let exprs: Vec<_> = ping
            .descendants()
            .into_iter()
            .filter(|e| e.name == "expression")
            .map(|e| (e.get("operation").unwrap(), e.get("value")))
            .collect();
        assert_eq!(exprs, [("not_defined", None), ("lt", Some("100"))]);
        let odr = &g.constraints[3];
        assert_eq!(odr.get("kind"), Some("Optional"));
        assert_eq!(odr.get("symmetrical"), Some("false"));
        assert_eq!(
            (odr.get("first"), odr.get("then")),
            (Some("clnPingd"), Some("prmVMCTL_g1"))
        );
    }

    #[test]
    fn stonith_off_blocks_instead_of_fencing() {
        let mut c = config();
        c.stonith = Some(false);
        let g = guest(&c, "g1", "n1", false).unwrap();
        assert_eq!(
            g.primitive
                .find_id("prmVMCTL_g1-stop-0")
                .unwrap()
                .get("on-fail"),
            Some("block")
        );
        assert_eq!(
            g.primitive
                .find_id("prmVMCTL_g1-meta_attributes-allow-migrate")
                .unwrap()
                .get("value"),
            Some("false")
        );
    }

    #[test]
    fn liveness_and_escalation_when_configured() {
        let mut c = config();
        let g = guest(&c, "g1", "n1", false).unwrap();
        for id in [
            "prmVMCTL_g1-instance_attributes-liveness_timeout",
            "prmVMCTL_g1-meta_attributes-migration-threshold",
            "prmVMCTL_g1-meta_attributes-failure-timeout",
        ] {
            assert!(g.primitive.find_id(id).is_none(), "{id} without its key");
        }
        c.liveness_timeout = Some(120);
        c.migration_threshold = Some(Score::from(2));
        c.failure_timeout = Some("10min".into());
        // the stock agent has no liveness_timeout parameter
        let g = guest(&c, "g1", "n1", false).unwrap();
        let nv = |g: &GuestObjects, id: &str| {
            g.primitive
                .find_id(id)
                .and_then(|e| e.get("value"))
                .map(str::to_owned)
        };
        assert_eq!(
            nv(&g, "prmVMCTL_g1-instance_attributes-liveness_timeout"),
            None
        );
        assert_eq!(
            nv(&g, "prmVMCTL_g1-meta_attributes-migration-threshold").as_deref(),
            Some("2")
        );
        assert_eq!(
            nv(&g, "prmVMCTL_g1-meta_attributes-failure-timeout").as_deref(),
            Some("10min")
        );
        c.ocf = Some(crate::config::Agent {
            class: "ocf".into(),
            provider: Some("pm-kvm-tools".into()),
            kind: "VirtualDomain".into(),
        });
        let g = guest(&c, "g1", "n1", false).unwrap();
        assert_eq!(
            nv(&g, "prmVMCTL_g1-instance_attributes-liveness_timeout").as_deref(),
            Some("120")
        );
    }

    #[test]
    fn missing_keys_are_reported() {
        let c = Config::parse("vm_cfg_dir=/x\n", Path::new("/c")).unwrap().0;
        let err = guest(&c, "g1", "n1", false).unwrap_err().to_string();
        assert!(err.contains("vm_ocf"), "{err}");
    }
}
