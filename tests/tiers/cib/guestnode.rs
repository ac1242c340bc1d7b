//! Guests as Pacemaker guest nodes on CIB files (issue 17, the vm-ctl side): `resource add
//! --guest-node` writes the `remote-*` meta attributes with the primitive in one change that
//! crm_verify accepts; `crm_simulate` runs the guest node and places a Dummy constrained to it
//! there; ports are unique, also next to a guest node vm-ctl did not make; clashes are refused
//! with exit 22 and change nothing; `list`/`show`/`status` say it is a guest node; `delete`
//! refuses while something is placed or runs there (exit 23) and with `--force` leaves no
//! trace of the node in the CIB; `check` reports a duplicate port.

use std::time::Instant;

use vm_pcmk::Role;
use vm_pcmk::xml::Element;
use vm_tests::evidence;
use vm_tests::vmctl::{CONFIG, VmCtlBed};

const IGNORE: &str = "cib";

/// The value of `rsc`'s meta attribute `name` in the bed's CIB.
fn meta(bed: &VmCtlBed, rsc: &str, name: &str) -> Option<String> {
    bed.cib
        .pcmk()
        .snapshot()
        .unwrap()
        .meta_attribute(rsc, name)
        .map(str::to_owned)
}

fn json(out: &vm_common::process::Output) -> serde_json::Value {
    serde_json::from_str(&out.stdout_text())
        .unwrap_or_else(|e| panic!("{e}: {}", out.stdout_text()))
}

#[test]
#[ignore = "tier cib: needs Pacemaker's tools"]
fn guest_nodes_are_added_placed_listed_and_deleted_without_a_trace() {
    let _ = IGNORE;
    let t0 = Instant::now();
    let bed = VmCtlBed::new();
    for d in ["g1", "g2", "g3", "g4", "g5"] {
        bed.domain(d);
    }
    // a guest node someone else made (crmsh/pcs), on the first port after the base
    bed.cib.create_in(
        "resources",
        r#"<primitive id="vm-ext" class="ocf" provider="heartbeat" type="VirtualDomain">
             <instance_attributes id="vm-ext-ia"><nvpair id="vm-ext-ia-c" name="config" value="/etc/libvirt/qemu/ext.xml"/></instance_attributes>
             <meta_attributes id="vm-ext-ma"><nvpair id="vm-ext-ma-n" name="remote-node" value="ext"/>
               <nvpair id="vm-ext-ma-a" name="remote-addr" value="127.0.0.1"/>
               <nvpair id="vm-ext-ma-p" name="remote-port" value="3123"/>
               <nvpair id="vm-ext-ma-t" name="target-role" value="Stopped"/></meta_attributes></primitive>"#,
    );

    let out = bed.ok(&["resource", "add", "g1", "-a", "node1", "--guest-node"]);
    assert!(
        out.stdout_text()
            .contains("as guest node g1 (channel transport, port 3122)"),
        "{}",
        out.stdout_text()
    );
    for (name, value) in [
        ("remote-node", "g1"),
        ("remote-addr", "127.0.0.1"),
        ("remote-port", "3122"),
        ("remote-connect-timeout", "60s"),
    ] {
        assert_eq!(
            meta(&bed, "prmVMCTL_g1", name).as_deref(),
            Some(value),
            "{name}"
        );
    }
    // the next free port skips the one the other tool's guest node has
    bed.ok(&[
        "resource",
        "add",
        "g2",
        "-a",
        "node2",
        "--guest-node",
        "app2",
    ]);
    assert_eq!(
        meta(&bed, "prmVMCTL_g2", "remote-node").as_deref(),
        Some("app2")
    );
    assert_eq!(
        meta(&bed, "prmVMCTL_g2", "remote-port").as_deref(),
        Some("3124")
    );
    evidence(
        IGNORE,
        t0,
        "add --guest-node: remote-node/addr/port/connect-timeout in one change; ports 3122, \
         then 3124 beside another tool's guest node on 3123",
    );

    // adding the same again changes nothing (the guest keeps its port)
    let before = bed.cib.xml();
    let again = bed.ok(&["resource", "add", "g1", "-a", "node1", "--guest-node"]);
    assert!(
        again.stdout_text().contains("g1: already present"),
        "{}",
        again.stdout_text()
    );
    assert_eq!(bed.cib.xml(), before);

    // clashes: refused with exit 22, nothing written
    for (args, needle) in [
        (vec!["--guest-node", "node2"], "name of a host node"),
        (vec!["--guest-node", "app2"], "prmVMCTL_g2"),
        (vec!["--guest-node", "ext"], "vm-ext"),
        (vec!["--guest-node", "clnPingd"], "id of a resource"),
        (vec!["--guest-node-port", "3123"], "guest node ext"),
        (vec!["--guest-node-addr", "127.0.0.1"], "channel"),
    ] {
        let mut cmd = vec!["resource", "add", "g3", "-a", "node1"];
        cmd.extend(&args);
        let e = bed.fails(&cmd, 22).stderr_text();
        assert!(e.contains(needle), "{args:?}: {e}");
    }
    let e = bed
        .fails(
            &[
                "resource",
                "add",
                "g3,g4",
                "-a",
                "node1",
                "--guest-node",
                "x",
            ],
            22,
        )
        .stderr_text();
    assert!(e.contains("one by one"), "{e}");
    // a guest cannot prefer a guest node (its entry is there once it has a node attribute)
    bed.cib.set_node_attr("app2", "site", "a");
    let e = bed
        .fails(&["resource", "add", "g3", "-a", "app2"], 6)
        .stderr_text();
    assert!(e.contains("nodes: node1, node2)"), "{e}");
    // vm_guest_node=yes in vm-ctl.conf: a guest node without the option; the lowest free port
    bed.write_config(&format!("{CONFIG}vm_guest_node=yes\n"));
    bed.ok(&["resource", "add", "g3", "-a", "node1"]);
    assert_eq!(
        meta(&bed, "prmVMCTL_g3", "remote-port").as_deref(),
        Some("3125")
    );
    // ... and --no-guest-node overrides it
    bed.ok(&["resource", "add", "g5", "-a", "node1", "--no-guest-node"]);
    assert_eq!(meta(&bed, "prmVMCTL_g5", "remote-node"), None);
    bed.write_config(CONFIG);
    // tcp: the guest's address, Pacemaker's port
    bed.ok(&[
        "resource",
        "add",
        "g4",
        "-a",
        "node2",
        "--guest-node-addr",
        "192.0.2.14",
    ]);
    assert_eq!(
        (
            meta(&bed, "prmVMCTL_g4", "remote-addr").as_deref(),
            meta(&bed, "prmVMCTL_g4", "remote-port").as_deref()
        ),
        (Some("192.0.2.14"), Some("3121"))
    );
    evidence(
        IGNORE,
        t0,
        "clashes (host node, guest node, resource id, port, loopback address) exit 22 unchanged; \
         vm_guest_node=yes; tcp transport",
    );

    // the cluster runs g1's guest node and a Dummy constrained to it runs inside
    bed.cib.create_in(
        "resources",
        r#"<primitive id="app" class="ocf" provider="pacemaker" type="Dummy"/>"#,
    );
    bed.cib.create_in(
        "constraints",
        r#"<rsc_location id="loc-app-g1" rsc="app" node="g1" score="INFINITY"/>"#,
    );
    bed.ok(&["resource", "start", "g1"]);
    // the transition starts the guest, its connection, and the Dummy on the guest node
    let sim = vm_tests::run_ok(
        &vm_common::process::Cmd::new("crm_simulate")
            .arg("--xml-file")
            .arg(bed.cib.path())
            .args(["-u", "node1", "-u", "node2", "-q", "1", "-S"]),
    )
    .stdout_text();
    for action in [
        "prmVMCTL_g1 start on node1",
        "g1 start on node1",
        "app start on g1",
    ] {
        let words: Vec<&str> = action.split(' ').collect();
        assert!(
            sim.lines().any(|l| l
                .split_whitespace()
                .collect::<Vec<_>>()
                .ends_with(&["action:", words[0], words[1], words[2], words[3]])),
            "crm_simulate does not {action}:\n{sim}"
        );
    }
    bed.settle();
    // the guest node comes up once its pacemaker-remoted answers
    bed.settle_with(&["g1"]);
    let placed = bed.cib.placement_with(&["node1", "node2", "g1"]);
    let g1 = placed
        .node("g1")
        .unwrap_or_else(|| panic!("crm_simulate shows no node g1: {placed:?}"));
    assert!(g1.online, "{g1:?}");
    assert_eq!(placed.nodes_with("app", Role::Started), ["g1"]);
    assert_eq!(placed.nodes_with("prmVMCTL_g1", Role::Started), ["node1"]);
    evidence(
        IGNORE,
        t0,
        "crm_simulate: guest node g1 online once prmVMCTL_g1 runs on node1; Dummy `app` \
         constrained to g1 runs on g1",
    );

    // list, show and status say so
    let v = json(&bed.ok(&["--output", "json", "resource", "list"]));
    let rows = v["list"].as_array().unwrap();
    let row = |d: &str| rows.iter().find(|r| r["domain"] == d).unwrap().clone();
    assert_eq!(row("g1")["guest_node"]["name"], "g1");
    assert_eq!(row("g1")["guest_node"]["transport"], "channel");
    assert_eq!(row("g4")["guest_node"]["transport"], "tcp");
    assert!(row("g5").get("guest_node").is_none());
    let text = bed.ok(&["resource", "list"]).stdout_text();
    assert!(
        text.contains("GUEST NODE") && text.contains("g1 (channel 3122)"),
        "{text}"
    );
    let show = bed.ok(&["resource", "show", "g2"]).stdout_text();
    assert!(
        show.contains("remote-node=app2")
            && show.contains("# guest node app2 over channel (127.0.0.1:3124)"),
        "{show}"
    );
    let status = json(&bed.ok(&["--output", "json", "status"]));
    let guests = status["status"]["guests"].as_array().unwrap();
    let s1 = guests.iter().find(|g| g["domain"] == "g1").unwrap();
    assert_eq!(s1["guest_node"]["remote-port"], serde_json::Value::Null);
    assert_eq!(s1["guest_node"]["port"], "3122");
    assert_eq!(s1["guest_node"]["online"], true);
    let text = bed.ok(&["status"]).stdout_text();
    assert!(
        text.contains("g1: guest node g1 over channel (127.0.0.1:3122), online"),
        "{text}"
    );

    // a node attribute for the guest node gives it a <node> entry (type remote)
    bed.cib.set_node_attr("g1", "site", "a");
    assert!(bed.cib.xml().contains(r#"type="remote""#));

    // delete: refused while app is placed and runs there
    let e = bed.fails(&["resource", "delete", "g1"], 23).stderr_text();
    assert!(
        e.contains("app is Started on g1") && e.contains("loc-app-g1") && e.contains("--force"),
        "{e}"
    );
    bed.ok(&["resource", "stop", "g1"]);
    bed.settle();
    assert!(
        bed.cib.placement().nodes_with("app", Role::Started) != ["g1"],
        "app still on the stopped guest node"
    );
    // stopped, but still placed there by its constraint
    let e = bed.fails(&["resource", "delete", "g1"], 23).stderr_text();
    assert!(e.contains("loc-app-g1") && !e.contains("Started"), "{e}");
    let out = bed.ok(&["resource", "delete", "g1", "--force"]);
    assert!(
        out.stdout_text().contains("g1: deleted"),
        "{}",
        out.stdout_text()
    );
    // of the node: no node entry, no node status, no connection history, no constraint; of
    // the resource: nothing in the configuration (its own operation history on the host
    // nodes stays until the cluster clears it, as for every deleted guest)
    let root = Element::parse(&bed.cib.xml()).unwrap();
    let configuration = root.find("configuration").unwrap();
    let mut traces: Vec<String> = root
        .descendants()
        .into_iter()
        .filter(|e| {
            e.get("uname") == Some("g1")
                || e.get("node") == Some("g1")
                || e.get("value") == Some("g1")
                || e.id() == Some("g1")
        })
        .map(|e| e.to_xml_compact())
        .collect();
    traces.extend(
        configuration
            .descendants()
            .into_iter()
            .filter(|e| e.id().is_some_and(|id| id.contains("prmVMCTL_g1")))
            .map(|e| e.to_xml_compact()),
    );
    assert!(
        traces.is_empty(),
        "guest node g1 left traces in the CIB: {traces:?}"
    );
    bed.settle();
    assert!(bed.cib.placement().node("g1").is_none());
    evidence(
        IGNORE,
        t0,
        "delete of guest node g1: exit 23 while app runs there, 23 while its constraint places \
         it, --force removes node entry, node status and the constraint: no trace",
    );

    // check: a duplicate port (made by hand) is an error, exit 18
    bed.cib.pcmk().snapshot().unwrap();
    vm_tests::run_ok(&bed.cib.tool("cibadmin").args([
        "--modify",
        "--xml-text",
        r#"<nvpair id="prmVMCTL_g3-meta_attributes-remote-port" value="3124"/>"#,
    ]));
    let out = bed.cmd(&["--output", "json", "check"]).run().unwrap();
    assert_eq!(out.code(), Some(18), "{}", out.stderr_text());
    let v = json(&out);
    let findings = v["findings"].as_array().unwrap();
    assert!(
        findings
            .iter()
            .any(|f| f["code"] == "guest-node-port-duplicate"
                && f["subject"] == "g3"
                && f["level"] == "error"),
        "{findings:?}"
    );
    assert!(
        findings
            .iter()
            .any(|f| f["code"] == "guest-node" && f["subject"] == "g4")
    );
    evidence(
        IGNORE,
        t0,
        "check: guest-node-port-duplicate (error, exit 18) for two guest nodes on 3124",
    );
}
