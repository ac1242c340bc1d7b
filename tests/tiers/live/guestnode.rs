//! Guest nodes on the live single-node cluster (issue 17, the vm-ctl side): `resource delete`
//! of a guest node refuses while a resource is placed on it, then removes the node from the
//! live CIB (its `<node>` entry, which the cluster made for a node attribute) in its change and
//! purges it with `crm_node --force --remove`, without a warning. The guest never runs (the
//! test image has no pacemaker-remoted): Pacemaker only probes its resource.

use std::time::Instant;

use vm_pcmk::xml::Element;
use vm_tests::vmctl::{LiveVmCtl, domain_xml};
use vm_tests::{evidence, run_ok};

use crate::vmctl::{CONFIG, prepare};
use vm_tests::live::LiveCluster;

#[test]
#[ignore = "tier live: needs root, corosync and pacemakerd"]
fn live_vmctl_guest_node_delete_leaves_no_node_behind() {
    let t0 = Instant::now();
    let cluster = LiveCluster::acquire();
    prepare(&cluster);
    // a Dummy as the guest's agent: its resource is only probed, never started
    let bed = LiveVmCtl::new(&CONFIG.replace(
        "vm_ocf=ocf:pm-kvm-tools:VirtualDomain",
        "vm_ocf=ocf:pacemaker:Dummy",
    ));
    bed.domain("gnl1", &domain_xml("gnl1"));
    let node = cluster.node().to_owned();
    bed.ok(&[
        "resource",
        "add",
        "gnl1",
        "-a",
        &node,
        "--guest-node-addr",
        "192.0.2.50",
    ]);
    let pcmk = cluster.pcmk();
    assert_eq!(
        pcmk.snapshot()
            .unwrap()
            .meta_attribute("prmVMCTL_gnl1", "remote-node"),
        Some("gnl1")
    );
    // a permanent node attribute of the guest node: the cluster makes its <node> entry
    run_ok(
        &pcmk
            .tool("crm_attribute")
            .args(["--node", "gnl1", "--name", "site", "--update", "a"]),
    );
    let entry = |cib: &vm_pcmk::Cib| {
        cib.section("nodes")
            .into_iter()
            .flat_map(Element::elements)
            .find(|n| n.get("uname") == Some("gnl1"))
            .map(Element::to_xml_compact)
    };
    let made = entry(&pcmk.snapshot().unwrap());
    evidence(
        "live",
        t0,
        format!("guest node gnl1 added; its node entry: {made:?}"),
    );
    assert!(made.is_some(), "crm_attribute made no node entry for gnl1");

    // placed there: refused, nothing changed
    run_ok(&pcmk.tool("cibadmin").args([
        "--create",
        "-o",
        "resources",
        "-X",
        r#"<primitive id="gn-app" class="ocf" provider="pacemaker" type="Dummy"/>"#,
    ]));
    run_ok(&pcmk.tool("cibadmin").args([
        "--create",
        "-o",
        "constraints",
        "-X",
        r#"<rsc_location id="gn-app-on-gnl1" rsc="gn-app" node="gnl1" score="INFINITY"/>"#,
    ]));
    let e = bed.fails(&["resource", "delete", "gnl1"], 23).stderr_text();
    assert!(e.contains("gn-app-on-gnl1"), "{e}");
    evidence(
        "live",
        t0,
        "delete refused (exit 23): gn-app is placed on gnl1",
    );
    run_ok(&pcmk.tool("cibadmin").args([
        "--delete",
        "-o",
        "constraints",
        "-X",
        r#"<rsc_location id="gn-app-on-gnl1"/>"#,
    ]));

    let out = bed.ok(&["resource", "delete", "gnl1", "--wait=60"]);
    assert!(
        out.stdout_text().contains("gnl1: deleted"),
        "{}",
        out.stdout_text()
    );
    assert!(
        !out.stderr_text().contains("warning"),
        "crm_node --remove failed: {}",
        out.stderr_text()
    );
    let cib = pcmk.snapshot().unwrap();
    assert_eq!(entry(&cib), None, "gnl1's node entry is still there");
    let left: Vec<String> = cib
        .root()
        .descendants()
        .into_iter()
        .filter(|e| {
            e.get("uname") == Some("gnl1")
                || e.id() == Some("gnl1")
                || e.get("value") == Some("gnl1")
        })
        .map(Element::to_xml_compact)
        .collect();
    assert!(left.is_empty(), "gnl1 left in the live CIB: {left:?}");
    evidence(
        "live",
        t0,
        "delete: no node entry, no node status, no connection history of gnl1; crm_node \
         --force --remove without a warning",
    );
}
