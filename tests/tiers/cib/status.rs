//! `vm-ctl status` on CIB files: guests added and started by vm-ctl and the simulated cluster
//! (`crm_simulate --in-place` writes the status section Pacemaker would), then status sections
//! made by hand the way the cluster and the daemons write them: a node lost (unclean) and one
//! down, a live migration at each step (migrate_to running on the source; done, with
//! migrate_from running on the target), a fence in progress (written by vm-stonithd's own plan:
//! target-role Stopped, force_stop, journal, record), a failed monitor with its fail count, the
//! liveness attribute in each of its states, fence keys published or not, a red ping attribute.
//! Every edit goes through the same compare-and-swap patch vm-ctl and vm-stonithd write with.
//! A live migration as the real cluster recorded it, step by step (fixtures/migration/: the
//! multinode bed's CIBs and pacemaker-based's log of the changes in between). And `--watch`: a
//! change to the file is a new JSON line, SIGINT and SIGTERM end it with exit 0.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;
use vm_common::process::Cmd;
use vm_fence::Power;
use vm_fence::journal::Owner;
use vm_fence::record::{FenceAction, FenceRecord, FenceResult};
use vm_pcmk::xml::Element;
use vm_pcmk::{Cib, Update};
use vm_seal::Name;
use vm_stonithd::plan;
use vm_tests::vmctl::VmCtlBed;
use vm_tests::{evidence, project_bin, run_ok};

/// Now, in Unix seconds.
fn now() -> u64 {
    plan::unix(SystemTime::now())
}

/// Edits the bed's CIB file through the compare-and-swap patch path.
fn edit(bed: &VmCtlBed, f: impl Fn(&mut Cib)) {
    bed.cib
        .pcmk()
        .transact(1, |cib| -> Result<Update<()>, vm_pcmk::PcmkError> {
            f(cib);
            Ok(Update::Write(()))
        })
        .unwrap();
}

/// The `node_state` of `node`, for edits.
fn node_state<'a>(cib: &'a mut Cib, node: &str) -> &'a mut Element {
    cib.root_mut()
        .find_mut("status")
        .unwrap()
        .elements_mut()
        .find(|e| e.name == "node_state" && e.get("uname") == Some(node))
        .unwrap_or_else(|| panic!("no node_state for {node}"))
}

/// The history entry `id` of `rsc` on `node`, for edits (created when missing).
fn lrm_op<'a>(cib: &'a mut Cib, node: &str, rsc: &str, id: &str) -> &'a mut Element {
    let resources = node_state(cib, node)
        .find_or_create("lrm")
        .find_or_create("lrm_resources");
    if !resources.elements().any(|r| r.id() == Some(rsc)) {
        resources.push(
            Element::new("lrm_resource")
                .attr("id", rsc)
                .attr("type", "VirtualDomain")
                .attr("class", "ocf")
                .attr("provider", "pm-kvm-tools"),
        );
    }
    let r = resources
        .elements_mut()
        .find(|r| r.id() == Some(rsc))
        .unwrap();
    if !r.elements().any(|o| o.id() == Some(id)) {
        r.push(Element::new("lrm_rsc_op").attr("id", id));
    }
    r.elements_mut().find(|o| o.id() == Some(id)).unwrap()
}

/// Sets `attrs` on history entry `id` (a whole operation result, as the controller records it).
fn record_op(cib: &mut Cib, node: &str, rsc: &str, id: &str, attrs: &[(&str, &str)]) {
    let op = lrm_op(cib, node, rsc, id);
    for (k, v) in attrs {
        op.set_attr(k, *v);
    }
}

/// An operation's attributes, defaults first (later pairs win).
fn op_attrs<'a>(
    operation: &'a str,
    key: &'a str,
    rest: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut v = vec![
        ("operation", operation),
        ("operation_key", key),
        ("crm-debug-origin", "do_update_resource"),
        ("crm_feature_set", "3.16.2"),
        (
            "transition-key",
            "1:1:0:5e0d8b0e-0000-4000-8000-000000000000",
        ),
        (
            "transition-magic",
            "0:0;1:1:0:5e0d8b0e-0000-4000-8000-000000000000",
        ),
        ("exit-reason", ""),
        ("call-id", "20"),
        ("rc-code", "0"),
        ("op-status", "0"),
        ("interval", "0"),
        ("last-rc-change", "1700000000"),
        ("exec-time", "10"),
        ("queue-time", "0"),
        ("op-digest", "00000000000000000000000000000000"),
    ];
    for (k, val) in rest {
        v.retain(|(name, _)| name != k);
        v.push((k, val));
    }
    v
}

/// A migration step of g2 from node1 to node2, running (recorded pending).
fn pending_migration<'a>(operation: &'a str, key: &'a str) -> Vec<(&'a str, &'a str)> {
    op_attrs(
        operation,
        key,
        &[
            ("call-id", "-1"),
            ("rc-code", "193"),
            ("op-status", "-1"),
            ("migrate_source", "node1"),
            ("migrate_target", "node2"),
            (
                "transition-magic",
                "-1:193;1:1:0:5e0d8b0e-0000-4000-8000-000000000000",
            ),
        ],
    )
}

fn status(bed: &VmCtlBed) -> Value {
    let out = run_ok(&bed.cmd(&["status", "--output", "json"]));
    serde_json::from_str(&out.stdout_text())
        .unwrap_or_else(|e| panic!("{e}: {}", out.stdout_text()))
}

fn guest<'a>(v: &'a Value, dom: &str) -> &'a Value {
    v["status"]["guests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["domain"] == dom)
        .unwrap_or_else(|| panic!("no {dom} in {v:#}"))
}

fn node<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["status"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {v:#}"))
}

/// Three nodes, the daemons' clones, guests g1 (node1), g2 (node1, live migration on), g3 and
/// g4 (node2), all started by vm-ctl and by the simulated cluster.
fn bed() -> VmCtlBed {
    let bed = VmCtlBed::new();
    bed.cib
        .create_in("nodes", r#"<node id="3" uname="node3"/>"#);
    bed.cib.set_node_attr("node3", "default_ping_set", "100");
    bed.cib.set_node_attr("node3", "diskcheck_status", "normal");
    for clone in ["clnVmConnectd", "clnVmStonithd"] {
        bed.cib.create_in(
            "resources",
            &format!(
                r#"<clone id="{clone}"><primitive id="{clone}-p" class="ocf" provider="pacemaker" type="Dummy"/></clone>"#
            ),
        );
    }
    for (dom, node, migrate) in [
        ("g1", "node1", "off"),
        ("g2", "node1", "on"),
        ("g3", "node2", "off"),
        ("g4", "node2", "off"),
    ] {
        bed.domain(dom);
        bed.ok(&["resource", "add", dom, "-a", node, "-m", migrate]);
    }
    bed.ok(&["resource", "start", "g1,g2,g3,g4"]);
    run_ok(
        &Cmd::new("crm_simulate")
            .arg("--xml-file")
            .arg(bed.cib.path())
            .args(["-u", "node1", "-u", "node2", "-u", "node3"])
            .args(["--quorum", "1", "--simulate", "--in-place"]),
    );
    bed
}

#[test]
#[ignore = "tier cib: needs Pacemaker's tools"]
fn status_shows_a_settled_cluster() {
    let t0 = Instant::now();
    let bed = bed();
    let v = status(&bed);
    let s = &v["status"];
    assert_eq!(s["schema"], 1);
    assert_eq!(s["cluster"]["nodes_online"], 3, "{v:#}");
    for (dom, on) in [
        ("g1", "node1"),
        ("g2", "node1"),
        ("g3", "node2"),
        ("g4", "node2"),
    ] {
        let g = guest(&v, dom);
        assert_eq!(g["state"], "started", "{dom}: {g:#}");
        assert_eq!(g["nodes"][0], on, "{dom}");
        assert_eq!(g["preferred_node"], on, "{dom}");
        assert_eq!(g["target_role"], "Started");
        // nothing published: unknown, never failed
        assert_eq!(
            (&g["channel"]["link"], &g["channel"]["liveness"]),
            (&Value::from("unknown"), &Value::from("unknown"))
        );
        assert_eq!(g["channel"]["node"], on);
        assert!(g["fence"]["last"].is_null() && g["fence"]["in_progress"].is_null());
        assert_eq!(g["fail_counts"], Value::Array(vec![]));
    }
    for n in ["node1", "node2", "node3"] {
        let n = node(&v, n);
        assert_eq!(n["state"], "online");
        assert_eq!(n["daemons"][0]["state"], "running", "{n:#}");
        assert_eq!(n["daemons"][2]["state"], "no-clone");
        // vm-stonithd's clone runs, but publishes no key
        assert_eq!(n["fence"]["ready"], false);
        assert_eq!(n["attributes"][0]["health"], "green", "{n:#}");
    }
    let text = run_ok(&bed.cmd(&["status"])).stdout_text();
    for want in ["Host cluster: 3 of 3 nodes online", "GUEST", "g4 ", "node3"] {
        assert!(text.contains(want), "{want:?} missing:\n{text}");
    }
    evidence(
        "cib",
        t0,
        "vm-ctl status: 3 nodes, 4 guests started where vm-ctl put them, clones running",
    );
}

#[test]
#[ignore = "tier cib: needs Pacemaker's tools"]
fn status_shows_lost_nodes_migrations_fences_failures_and_liveness() {
    let t0 = Instant::now();
    let bed = bed();
    let t = now();
    let since = (t - 30).to_string();
    edit(&bed, |cib| {
        // liveness as each node's host vm-connectd publishes it, one per state (g3: nothing)
        cib.set_transient_attribute("node1", "pmkt-guest-g1", &format!("up:answering:{since}"));
        cib.set_transient_attribute("node1", "pmkt-guest-g2", &format!("up:silent:{since}"));
        cib.set_transient_attribute("node2", "pmkt-guest-g4", &format!("up:unhealthy:{since}"));
        // a stale value on a node the guest does not run on is not its liveness
        cib.set_transient_attribute("node3", "pmkt-guest-g1", &format!("down:unknown:{since}"));
        // node1's vm-stonithd holds a key; node2's published nothing
        cib.set_transient_attribute(
            "node1",
            "pmkt-fence-keys",
            "web:0011223344556677:1111111111111111",
        );
        // ping lost on node2
        cib.set_transient_attribute("node2", "default_ping_set", "0");
        // g4's monitor failed on node2 once
        record_op(
            cib,
            "node2",
            "prmVMCTL_g4",
            "prmVMCTL_g4_last_failure_0",
            &op_attrs(
                "monitor",
                "prmVMCTL_g4_monitor_10000",
                &[
                    ("call-id", "31"),
                    ("rc-code", "7"),
                    ("interval", "10000"),
                    ("exit-reason", "guest not running"),
                    (
                        "transition-magic",
                        "0:7;1:1:0:5e0d8b0e-0000-4000-8000-000000000000",
                    ),
                ],
            ),
        );
        cib.set_transient_attribute("node2", "fail-count-prmVMCTL_g4#monitor_10000", "1");
        cib.set_transient_attribute("node2", "last-failure-prmVMCTL_g4#monitor_10000", &since);
        // g2: migrate_to running on node1 (recorded apart from g2's last result, the start)
        record_op(
            cib,
            "node1",
            "prmVMCTL_g2",
            "prmVMCTL_g2_migrate_to_0",
            &pending_migration("migrate_to", "prmVMCTL_g2_migrate_to_0"),
        );
    });
    // g3: fenced off by node1's vm-stonithd, in progress (its own plan writes it)
    edit(&bed, |cib| {
        let owner = Owner {
            node: "node1".into(),
            pid: 4242,
            request: "00ff".into(),
        };
        let deadline = SystemTime::now() + Duration::from_secs(40);
        plan::begin(
            cib,
            "prmVMCTL_g3",
            Power::Off,
            &owner,
            deadline,
            SystemTime::now(),
        )
        .unwrap();
        assert!(plan::write_record(
            cib,
            "node1",
            "prmVMCTL_g3",
            &FenceRecord {
                action: FenceAction::Off,
                result: FenceResult::InProgress,
                started: t,
                ended: None,
                cluster: Name::new("web").ok(),
                requester: Name::new("www-b").ok(),
                origin: Name::new("g1").ok(),
            }
        ));
    });
    let v = status(&bed);
    let g1 = guest(&v, "g1");
    assert_eq!(
        (
            &g1["channel"]["link"],
            &g1["channel"]["liveness"],
            &g1["channel"]["node"]
        ),
        (
            &Value::from("up"),
            &Value::from("answering"),
            &Value::from("node1")
        ),
        "{g1:#}"
    );
    assert_eq!(g1["channel"]["since"], t - 30);
    let g2 = guest(&v, "g2");
    assert_eq!(g2["state"], "migrating", "{g2:#}");
    assert_eq!(
        (&g2["migration"]["from"], &g2["migration"]["to"]),
        (&Value::from("node1"), &Value::from("node2"))
    );
    assert_eq!(g2["nodes"], serde_json::json!(["node1", "node2"]), "{g2:#}");
    assert_eq!(g2["channel"]["liveness"], "silent");
    let g3 = guest(&v, "g3");
    assert_eq!(g3["target_role"], "Stopped");
    assert_eq!(g3["fence"]["in_progress"]["action"], "off");
    assert_eq!(g3["fence"]["in_progress"]["node"], "node1");
    assert_eq!(
        g3["fence"]["force_stop_nodes"],
        serde_json::json!(["node1", "node2", "node3"])
    );
    assert_eq!(g3["fence"]["last"]["result"], "in-progress");
    assert_eq!(g3["fence"]["last"]["requester"], "www-b");
    assert_eq!(g3["channel"]["liveness"], "unknown");
    let g4 = guest(&v, "g4");
    assert_eq!(g4["channel"]["liveness"], "unhealthy");
    assert_eq!(g4["fail_counts"][0]["count"], 1, "{g4:#}");
    assert_eq!(g4["fail_counts"][0]["operation"], "monitor");
    assert_eq!(g4["failed_actions"][0]["exit_code"], 7, "{g4:#}");
    assert_eq!(g4["failed_actions"][0]["exit_reason"], "guest not running");
    assert_eq!(g4["failed_actions"][0]["node"], "node2");
    let n1 = node(&v, "node1");
    assert_eq!(n1["fence"]["ready"], true, "{n1:#}");
    assert_eq!(n1["fence"]["keys"], 1);
    let n2 = node(&v, "node2");
    assert_eq!(n2["attributes"][0]["value"], "0");
    assert_eq!(n2["attributes"][0]["health"], "red");
    evidence(
        "cib",
        t0,
        "vm-ctl status: liveness answering/silent/unhealthy/unknown, g2 migrating node1->node2, g3 fence in progress (force_stop on 3 nodes), g4 failed monitor and fail count, node2 ping red",
    );

    // the migration's second step: migrate_to done on node1, migrate_from running on node2
    edit(&bed, |cib| {
        record_op(
            cib,
            "node1",
            "prmVMCTL_g2",
            "prmVMCTL_g2_migrate_to_0",
            &[
                ("call-id", "40"),
                ("rc-code", "0"),
                ("op-status", "0"),
                (
                    "transition-magic",
                    "0:0;1:1:0:5e0d8b0e-0000-4000-8000-000000000000",
                ),
            ],
        );
        record_op(
            cib,
            "node2",
            "prmVMCTL_g2",
            "prmVMCTL_g2_migrate_from_0",
            &pending_migration("migrate_from", "prmVMCTL_g2_migrate_from_0"),
        );
    });
    let v = status(&bed);
    let g2 = guest(&v, "g2");
    assert_eq!(g2["state"], "migrating", "{g2:#}");
    assert_eq!(g2["migration"]["to"], "node2");
    assert_eq!(g2["nodes"], serde_json::json!(["node1", "node2"]), "{g2:#}");

    // node3 lost while a member (unclean: with fencing on, it must be fenced), then down
    // cleanly; node2 in standby
    bed.cib.set_property("stonith-enabled", "true");
    run_ok(
        &bed.cib
            .tool("crm_attribute")
            .args(["--node", "node2", "--name", "standby", "--update", "on"]),
    );
    let lose = |expected: &'static str| {
        edit(&bed, move |cib| {
            let s = node_state(cib, "node3");
            for (k, val) in [
                ("in_ccm", "false"),
                ("crmd", "offline"),
                ("join", "down"),
                ("expected", expected),
            ] {
                s.set_attr(k, val);
            }
        });
    };
    lose("member");
    let v = status(&bed);
    assert_eq!(node(&v, "node3")["state"], "unclean", "{v:#}");
    assert_eq!(node(&v, "node2")["state"], "standby");
    assert_eq!(v["status"]["cluster"]["nodes_online"], 2);
    assert_eq!(v["status"]["cluster"]["stonith_enabled"], true);
    // a clean leave: expected down, and the DC erases the node's history and transient
    // attributes (nothing of it may still run)
    lose("down");
    edit(&bed, |cib| {
        node_state(cib, "node3")
            .remove_children(|c| c.name == "lrm" || c.name == "transient_attributes");
    });
    let v = status(&bed);
    let n3 = node(&v, "node3");
    assert_eq!(n3["state"], "offline");
    assert_eq!(n3["fence"]["ready"], false);
    assert!(
        n3["fence"]["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == "node not online"),
        "{n3:#}"
    );
    let text = run_ok(&bed.cmd(&["status"])).stdout_text();
    for want in [
        "fencing on",
        "OFFLINE",
        "standby",
        "node1->node2",
        "off IN PROGRESS by node1",
        "unhealthy",
        "silent",
        "Failed actions:",
        "g4 (prmVMCTL_g4): monitor every 10s on node2: not running (7)",
        "Fail counts:",
        "default_ping_set=0 RED",
        "ready (1 keys)",
    ] {
        assert!(text.contains(want), "{want:?} missing:\n{text}");
    }
    println!("{text}");
    evidence(
        "cib",
        t0,
        "vm-ctl status: migrate_from running on the target, node3 unclean then offline, node2 standby",
    );
}

/// The multinode bed's CIBs around a live migration of g1 from n1 to n3 (Pacemaker 2.1.5; see
/// fixtures/migration/README.md): what the scheduler saved as its inputs, and what
/// pacemaker-based logged it changed in between.
const MIGRATION_CIB_0: &str = include_str!("fixtures/migration/cib-0.69.0.xml");
const MIGRATION_CIB_8: &str = include_str!("fixtures/migration/cib-0.69.8.xml");
const MIGRATION_LOG: &str = include_str!("fixtures/migration/pacemaker-based.log");

/// The element at `path` (`/cib/status/node_state[@id='1']/lrm[@id='1']/...`, as
/// pacemaker-based logs it).
fn at_path<'a>(cib: &'a mut Cib, path: &str) -> &'a mut Element {
    let mut el = cib.root_mut();
    for step in path.split('/').skip(2) {
        let (name, id) = match step.split_once("[@id='") {
            Some((name, rest)) => (name, rest.strip_suffix("']")),
            None => (step, None),
        };
        el = el
            .elements_mut()
            .find(|e| e.name == name && (id.is_none() || e.id() == id))
            .unwrap_or_else(|| panic!("{path}: no {step}"));
    }
    el
}

/// Applies one change pacemaker-based logged (`++ PATH:  <xml/>`: PATH gets that child;
/// `+  PATH:  @name=value, @name=value`: PATH gets those attributes).
fn apply_logged_change(cib: &mut Cib, change: &str) {
    if let Some(rest) = change.strip_prefix("++ ") {
        let (path, xml) = rest.split_once(":  ").unwrap();
        at_path(cib, path).push(Element::parse(xml).unwrap());
    } else if let Some(rest) = change.strip_prefix("+  ") {
        let (path, attrs) = rest.split_once(":  ").unwrap();
        let el = at_path(cib, path);
        for attr in attrs.strip_prefix('@').unwrap().split(", @") {
            let (name, value) = attr.split_once('=').unwrap();
            el.set_attr(name, value);
        }
    } else {
        panic!("not a logged change: {change}");
    }
}

/// CIB `base` (version `0.69.<from>`) with the logged changes of the versions after it, up to
/// `0.69.<to>`, applied.
fn replay(base: &str, from: u32, to: u32) -> Cib {
    let mut cib = Cib::parse(base).unwrap();
    let mut version = 0;
    for line in MIGRATION_LOG.lines() {
        let Some((_, change)) = line.split_once("(cib_perform_op) \tinfo: ") else {
            continue;
        };
        if let Some(v) = change.strip_prefix("Diff: +++ 0.69.") {
            version = v.split(' ').next().unwrap().parse().unwrap();
        } else if !change.starts_with("Diff: ") && version > from && version <= to {
            apply_logged_change(&mut cib, change);
        }
    }
    assert_eq!(cib.version().to_string(), format!("0.69.{to}"));
    cib
}

/// The CIB at version `0.69.<n>`: from the saved one before it, with the logged changes.
fn migration_cib(n: u32) -> Cib {
    if n >= 8 {
        replay(MIGRATION_CIB_8, 8, n)
    } else {
        replay(MIGRATION_CIB_0, 0, n)
    }
}

/// g1's history on `node`, canonical.
fn g1_history(cib: &Cib, node: &str) -> Vec<String> {
    cib.root()
        .find("status")
        .unwrap()
        .elements()
        .find(|e| e.get("uname") == Some(node))
        .and_then(|s| s.path(&["lrm", "lrm_resources"]))
        .and_then(|r| r.find_id("prmVMCTL_g1"))
        .unwrap()
        .canonical()
}

#[test]
#[ignore = "tier cib: needs Pacemaker's tools"]
fn status_follows_a_live_migration_as_the_cluster_recorded_it() {
    let t0 = Instant::now();
    // the replayed log gives the saved CIB's history of g1 (the liveness attributes it also
    // changed in between are left out of the log excerpt)
    let saved = Cib::parse(MIGRATION_CIB_8).unwrap();
    let replayed = replay(MIGRATION_CIB_0, 0, 8);
    for node in ["n1", "n3"] {
        assert_eq!(
            g1_history(&replayed, node),
            g1_history(&saved, node),
            "{node}"
        );
    }
    let bed = VmCtlBed::new();
    // (version, what runs, migrating, g1's nodes)
    let steps: [(u32, &str, bool, &[&str]); 7] = [
        (0, "before: started on n1", false, &["n1"]),
        (1, "migrate_to running on n1", true, &["n1", "n3"]),
        (
            8,
            "migrate_to done, migrate_from not started",
            true,
            &["n1", "n3"],
        ),
        (9, "migrate_from running on n3", true, &["n1", "n3"]),
        (
            10,
            "migrate_from done, n1 not stopped yet",
            true,
            &["n1", "n3"],
        ),
        (11, "stop running on n1", false, &["n1", "n3"]),
        (12, "stop done on n1: on n3", false, &["n3"]),
    ];
    let mut seen = Vec::new();
    for (n, step, migrating, nodes) in steps {
        std::fs::write(bed.cib.path(), migration_cib(n).to_xml()).unwrap();
        let v = status(&bed);
        let g1 = guest(&v, "g1");
        assert_eq!(
            g1["nodes"],
            serde_json::json!(nodes),
            "0.69.{n} {step}: {g1:#}"
        );
        let text = run_ok(&bed.cmd(&["status"])).stdout_text();
        if migrating {
            assert_eq!(g1["state"], "migrating", "0.69.{n} {step}: {g1:#}");
            assert_eq!(
                (&g1["migration"]["from"], &g1["migration"]["to"]),
                (&Value::from("n1"), &Value::from("n3")),
                "0.69.{n} {step}: {g1:#}"
            );
            // the source's vm-connectd publishes the link until the migration is over
            assert_eq!(g1["channel"]["node"], "n1", "0.69.{n} {step}");
            let row = text
                .lines()
                .find(|l| l.starts_with("g1 "))
                .unwrap_or_else(|| panic!("no g1 row:\n{text}"));
            assert!(
                row.contains("migrating") && row.contains("n1->n3"),
                "0.69.{n} {step}: {row}"
            );
        } else {
            assert!(g1["migration"].is_null(), "0.69.{n} {step}: {g1:#}");
            assert_ne!(g1["state"], "migrating", "0.69.{n} {step}: {g1:#}");
        }
        seen.push(format!("0.69.{n} {}", g1["state"].as_str().unwrap_or("?")));
    }
    evidence(
        "cib",
        t0,
        format!(
            "vm-ctl status on the CIBs of a real live migration n1->n3 (scheduler inputs + pacemaker-based's logged changes): {}",
            seen.join(", ")
        ),
    );
}

/// `vm-ctl status --watch --output json` on the bed, its stdout read line by line.
struct Watching {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Watching {
    fn start(bed: &VmCtlBed) -> Self {
        let mut child = Command::new(project_bin("vm-ctl"))
            .arg("--config")
            .arg(bed.config_path())
            .args(["status", "--watch", "--output", "json"])
            .env("CIB_file", bed.cib.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    fn next(&self) -> Value {
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(20))
            .expect("no status line within 20 s");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
    }

    /// Sends `signal` and waits for the exit; returns its code and how long it took.
    fn stop(mut self, signal: nix::sys::signal::Signal) -> (Option<i32>, Duration) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        let t = Instant::now();
        nix::sys::signal::kill(pid, signal).unwrap();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return (st.code(), t.elapsed());
            }
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "still running after {signal}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
#[ignore = "tier cib: needs Pacemaker's tools"]
fn status_watch_prints_each_change_and_stops_on_sigint_and_sigterm() {
    let t0 = Instant::now();
    let bed = bed();
    let w = Watching::start(&bed);
    let first = w.next();
    assert_eq!(guest(&first, "g1")["state"], "started");
    // a change through vm-ctl: the next line shows it
    bed.ok(&["resource", "stop", "g1"]);
    let second = w.next();
    assert_eq!(guest(&second, "g1")["target_role"], "Stopped", "{second:#}");
    // a transient attribute change (what the daemons publish) too
    edit(&bed, |cib| {
        cib.set_transient_attribute("node2", "pmkt-guest-g3", "up:answering:1700000000");
    });
    let third = w.next();
    assert_eq!(guest(&third, "g3")["channel"]["liveness"], "answering");
    let (code, took) = w.stop(nix::sys::signal::Signal::SIGINT);
    assert_eq!(code, Some(0), "SIGINT");
    evidence(
        "cib",
        t0,
        format!(
            "vm-ctl status --watch: one line per change (vm-ctl, attributes); SIGINT: exit 0 in {took:.2?}"
        ),
    );
    let w = Watching::start(&bed);
    w.next();
    let (code, _) = w.stop(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(code, Some(0), "SIGTERM");
}
