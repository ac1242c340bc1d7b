//! CIB-file tier: Pacemaker's own tools on offline CIB files (no daemons).
//!
//! These tests prove the fixture itself: a CIB built with `cibadmin`/`crm_attribute` passes
//! `crm_verify`, a broken one does not, and `crm_simulate` placement reacts to the ping and disk
//! attributes the way vm-ctl's generated rules rely on.

// Test code: a failed step panics with its cause.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use vm_pcmk::Role;
use vm_tests::cib::{CibFile, CibSpec};
use vm_tests::evidence;

mod managerd;
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
