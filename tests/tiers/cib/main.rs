//! CIB-file tier: Pacemaker's own tools on offline CIB files (no daemons).
//!
//! These tests prove the fixture itself: a CIB built with `cibadmin`/`crm_attribute` passes
//! `crm_verify`, a broken one does not, and `crm_simulate` placement reacts to the ping and disk
//! attributes the way vm-ctl's generated rules rely on. `vmctl` runs every vm-ctl command on CIB
//! files; `status` reads hand-made status sections with `vm-ctl status`; `docs` checks the
//! command lines of README.md and docs/operations.md against the programs.

// Test code: a failed step panics with its cause.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use vm_pcmk::Role;
use vm_tests::cib::{CibFile, CibSpec};
use vm_tests::evidence;

mod docs;
mod fence;
mod guestnode;
mod managerd;
mod remote;
mod status;
mod vmctl;

const DUMMY: &str = r#"<primitive id="d1" class="ocf" provider="pacemaker" type="Dummy"/>"#;

/// The rules vm-ctl's original generated: no guest where ping is missing or below 100, none
/// where the disk check failed, and a preferred node.
const RULES: [&str; 3] = [
    r#"<rsc_location id="l-ping" rsc="d1"><rule id="l-ping-r" score="-INFINITY" boolean-op="or">
         <expression id="l-ping-e1" attribute="default_ping_set" operation="not_defined"/>
         <expression id="l-ping-e2" attribute="default_ping_set" operation="lt" value="100"/>
       </rule></rsc_location>"#,
    r#"<rsc_location id="l-disk" rsc="d1"><rule id="l-disk-r" score="-INFINITY" boolean-op="or">
         <expression id="l-disk-e1" attribute="diskcheck_status" operation="not_defined"/>
         <expression id="l-disk-e2" attribute="diskcheck_status" operation="eq" value="ERROR"/>
       </rule></rsc_location>"#,
    r#"<rsc_location id="l-pref" rsc="d1" node="node1" score="200"/>"#,
];

#[test]
#[ignore = "tier cib: needs Pacemaker's tools"]
fn cib_fixture_is_valid_and_crm_verify_catches_errors() {
    let t0 = Instant::now();
    let cib = CibFile::two_nodes();
    cib.assert_valid();
    let xml = cib.xml();
    assert!(xml.contains(r#"uname="node1""#) && xml.contains(r#"uname="node2""#));
    assert!(xml.contains(r#"name="default_ping_set" value="100""#));
    assert!(xml.contains(r#"name="diskcheck_status" value="normal""#));

    // Fencing on with no fence device is a configuration error crm_verify must report.
    let fencing = CibSpec::default().nodes(&["node1"]).stonith(true).create();
    fencing.create_in("resources", DUMMY);
    let report = fencing.verify();
    assert!(
        !report.valid,
        "crm_verify accepted stonith without a device"
    );
    assert!(
        report.messages.to_lowercase().contains("stonith"),
        "{}",
        report.messages
    );
    evidence(
        "cib",
        t0,
        "crm_verify: fixture CIB valid; stonith without a device rejected",
    );
}

#[test]
#[ignore = "tier cib: needs Pacemaker's tools"]
fn cib_simulate_follows_ping_and_disk_attributes() {
    let t0 = Instant::now();
    let cib = CibFile::two_nodes();
    cib.create_in("resources", DUMMY);
    for rule in RULES {
        cib.create_in("constraints", rule);
    }
    cib.assert_valid();
    let started_on = |cib: &CibFile| cib.placement().nodes_with("d1", Role::Started);

    assert_eq!(started_on(&cib), ["node1"], "preferred node wins");
    cib.set_node_attr("node1", "default_ping_set", "0");
    assert_eq!(started_on(&cib), ["node2"], "no guest where ping < 100");
    cib.set_node_attr("node2", "diskcheck_status", "ERROR");
    assert!(
        started_on(&cib).is_empty(),
        "no guest where the disk failed"
    );
    cib.set_node_attr("node1", "default_ping_set", "100");
    assert_eq!(started_on(&cib), ["node1"]);
    // With node1 down, the only other node has a failed disk: nowhere to run.
    assert!(
        cib.placement_with(&["node2"])
            .nodes_with("d1", Role::Started)
            .is_empty()
    );
    evidence(
        "cib",
        t0,
        "crm_simulate: preferred node1; ping<100 -> node2; disk ERROR -> stopped",
    );
}

/// `cib` with `n` stopped Dummy resources `w0`...`w{n-1}` added, each with a location
/// constraint and an order after `anchor`: a many-object edit as a many-guest vm-ctl add makes.
fn with_objects(cib: &vm_pcmk::Cib, n: usize) -> vm_pcmk::Cib {
    use vm_pcmk::xml::Element;
    let mut out = cib.clone();
    for i in 0..n {
        out.section_mut("resources").push(
            Element::new("primitive")
                .attr("id", format!("w{i}"))
                .attr("class", "ocf")
                .attr("provider", "pacemaker")
                .attr("type", "Dummy"),
        );
        out.set_meta_attribute(&format!("w{i}"), "target-role", "Stopped");
        let c = out.section_mut("constraints");
        c.push(
            Element::new("rsc_location")
                .attr("id", format!("w{i}-loc"))
                .attr("rsc", format!("w{i}"))
                .attr("node", "node1")
                .attr("score", "100"),
        );
        c.push(
            Element::new("rsc_order")
                .attr("id", format!("w{i}-order"))
                .attr("first", "anchor")
                .attr("then", format!("w{i}"))
                .attr("kind", "Optional"),
        );
    }
    out
}

#[test]
#[ignore = "tier cib: needs Pacemaker's tools"]
fn cib_many_object_patch_is_one_versioned_change() {
    let t0 = Instant::now();
    let cib = CibFile::two_nodes();
    cib.create_in(
        "resources",
        r#"<primitive id="anchor" class="ocf" provider="pacemaker" type="Dummy"/>"#,
    );
    let pcmk = cib.pcmk();
    let before = pcmk.snapshot().unwrap();
    // 400 resources and 800 constraints: enough that the patch carries both sections whole
    let after = with_objects(&before, 400);

    // another writer changes the CIB after our read: the write is refused, nothing of it lands
    cib.create_in("resources", DUMMY);
    let theirs = cib.xml();
    assert!(
        !pcmk.patch_if_unchanged(&before, &after).unwrap(),
        "a patch based on a stale snapshot was applied"
    );
    assert_eq!(cib.xml(), theirs, "a refused write changed the CIB");

    // on a fresh snapshot it lands whole, next to the
    // other writer's resource, and the sections are exactly what we wrote
    let fresh = pcmk.snapshot().unwrap();
    let after = with_objects(&fresh, 400);
    assert!(pcmk.patch_if_unchanged(&fresh, &after).unwrap());
    let written = pcmk.snapshot().unwrap();
    assert!(written.version().epoch > fresh.version().epoch);
    for section in ["resources", "constraints"] {
        assert_eq!(
            written
                .section(section)
                .map(vm_pcmk::xml::Element::canonical),
            after.section(section).map(vm_pcmk::xml::Element::canonical),
            "{section}"
        );
    }
    assert!(
        written.resource("d1").is_some(),
        "the other writer's resource was lost"
    );
    // and the sections keep their places in <configuration>
    let sections = |cib: &vm_pcmk::Cib| -> Vec<String> {
        cib.root()
            .find("configuration")
            .unwrap()
            .elements()
            .map(|e| e.name.clone())
            .collect()
    };
    assert_eq!(sections(&written), sections(&fresh));
    cib.assert_valid();
    evidence(
        "cib",
        t0,
        "400 resources + 800 constraints in one patch (sections whole): refused on a stale snapshot (CIB untouched), applied whole on a fresh one (other writer's object kept, sections in place)",
    );
}
