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

#[test]
#[ignore = "tier cib: needs Pacemaker's tools"]
fn cib_file_write_of_a_verified_cib_keeps_compare_and_swap_mode_and_checks() {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    let t0 = Instant::now();
    let cib = CibFile::two_nodes();
    cib.create_in(
        "resources",
        r#"<primitive id="anchor" class="ocf" provider="pacemaker" type="Dummy"/>"#,
    );
    std::fs::set_permissions(cib.path(), std::fs::Permissions::from_mode(0o640)).unwrap();
    let inode = || std::fs::metadata(cib.path()).unwrap().ino();
    let pcmk = cib.pcmk();
    let before = pcmk.snapshot().unwrap();
    let after = with_objects(&before, 3);
    let report = pcmk.verify_cib(&after).unwrap();
    assert!(report.valid, "{}", report.messages);

    // another writer changes the file after our read: refused, nothing of ours lands
    cib.create_in("resources", DUMMY);
    let theirs = cib.xml();
    assert!(
        !pcmk.patch_if_unchanged(&before, &after).unwrap(),
        "a write based on a stale snapshot was applied"
    );
    assert_eq!(cib.xml(), theirs, "a refused write changed the CIB file");

    // verified and fresh: written by vm-pcmk itself (cibadmin writes in place; this write is
    // a rename over the file), with the file's mode, at the version cibadmin would give it
    let fresh = pcmk.snapshot().unwrap();
    let after = with_objects(&fresh, 3);
    assert!(pcmk.verify_cib(&after).unwrap().valid);
    let old_inode = inode();
    assert!(pcmk.patch_if_unchanged(&fresh, &after).unwrap());
    assert_ne!(inode(), old_inode, "the verified CIB went through cibadmin");
    let meta = std::fs::metadata(cib.path()).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o640, "the file's mode changed");
    let written = pcmk.snapshot().unwrap();
    assert_eq!(written.version().epoch, fresh.version().epoch + 1);
    assert_eq!(written.version().num_updates, 0);
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
    cib.assert_valid();
    // Pacemaker's tools read it and write after it
    cib.create_in(
        "resources",
        r#"<primitive id="d2" class="ocf" provider="pacemaker" type="Dummy"/>"#,
    );
    let next = pcmk.snapshot().unwrap();
    assert!(next.resource("w2").is_some() && next.resource("d2").is_some());

    // a CIB that was not verified, or differs from the one that was, goes through cibadmin
    // (in place), and what cibadmin refuses is refused
    let mut unverified = next.clone();
    unverified.section_mut("resources").push(
        vm_pcmk::xml::Element::new("primitive")
            .attr("id", "u1")
            .attr("class", "ocf")
            .attr("provider", "pacemaker")
            .attr("type", "Dummy"),
    );
    let old_inode = inode();
    assert!(pcmk.patch_if_unchanged(&next, &unverified).unwrap());
    assert_eq!(
        inode(),
        old_inode,
        "an unverified CIB was written without cibadmin"
    );
    let current = pcmk.snapshot().unwrap();
    let mut verified = current.clone();
    verified.set_meta_attribute("d2", "target-role", "Stopped");
    assert!(pcmk.verify_cib(&verified).unwrap().valid);
    let mut invalid = current.clone();
    invalid.section_mut("resources").push(
        vm_pcmk::xml::Element::new("primitive")
            .attr("id", "bad")
            .attr("type", "Dummy"),
    );
    let before_bad = cib.xml();
    let refused = pcmk.patch_if_unchanged(&current, &invalid);
    assert!(
        matches!(refused, Err(vm_pcmk::PcmkError::Failed { .. })),
        "a CIB that fails the schema was written: {refused:?}"
    );
    assert_eq!(
        cib.xml(),
        before_bad,
        "a refused write changed the CIB file"
    );
    // and a crm_verify failure is remembered as nothing verified
    assert!(!pcmk.verify_cib(&invalid).unwrap().valid);
    let refused = pcmk.patch_if_unchanged(&current, &invalid);
    assert!(
        matches!(refused, Err(vm_pcmk::PcmkError::Failed { .. })),
        "{refused:?}"
    );
    assert_eq!(
        cib.xml(),
        before_bad,
        "a CIB crm_verify rejected was written"
    );
    // writers with handles of their own (no shared vm-ctl lock) racing on the file: the flock
    // and the version check lose nothing, every write is a direct one
    let writers: Vec<_> = (0..6)
        .map(|i| {
            let pcmk = cib.pcmk();
            std::thread::spawn(move || {
                pcmk.transact(
                    50,
                    |c: &mut vm_pcmk::Cib| -> Result<_, vm_pcmk::PcmkError> {
                        c.section_mut("resources").push(
                            vm_pcmk::xml::Element::new("primitive")
                                .attr("id", format!("r{i}"))
                                .attr("class", "ocf")
                                .attr("provider", "pacemaker")
                                .attr("type", "Dummy"),
                        );
                        let report = pcmk.verify_cib(c)?;
                        assert!(report.valid, "{}", report.messages);
                        Ok(vm_pcmk::Update::Write(()))
                    },
                )
            })
        })
        .collect();
    // (no inode check here: after six renames the file system may hand the first file's freed
    // inode number to a later one; the epoch and the six resources below are the proof)
    for w in writers {
        w.join().unwrap().unwrap();
    }
    let racing = pcmk.snapshot().unwrap();
    for i in 0..6 {
        assert!(racing.resource(&format!("r{i}")).is_some(), "r{i} lost");
    }
    assert_eq!(racing.version().epoch, current.version().epoch + 6);
    cib.assert_valid();
    evidence(
        "cib",
        t0,
        "a crm_verify'd CIB written to a file without cibadmin: refused on a stale snapshot (file untouched), written whole on a fresh one (mode kept, epoch+1, readable by cibadmin); unverified or different CIBs through cibadmin; schema-invalid refused; 6 racing writers with their own handles: none lost",
    );
}
