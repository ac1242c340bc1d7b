//! Live-cluster tier: this machine's real single-node corosync + pacemakerd.

// Test code: a failed step panics with its cause.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use vm_pcmk::Role;
use vm_tests::live::LiveCluster;
use vm_tests::{evidence, run_ok};

mod guestnode;
mod managerd;
mod stonith;
mod vmctl;

#[test]
#[ignore = "tier live: needs root, corosync and pacemakerd"]
fn live_dummy_starts_and_stops() {
    let t0 = Instant::now();
    let cluster = LiveCluster::acquire();
    evidence("live", t0, format!("cluster up, node {}", cluster.node()));
    let pcmk = cluster.pcmk();
    run_ok(&pcmk.tool("cibadmin").args([
        "--create",
        "-o",
        "resources",
        "-X",
        r#"<primitive id="smoke" class="ocf" provider="pacemaker" type="Dummy">
             <operations><op id="smoke-mon" name="monitor" interval="5s"/></operations>
           </primitive>"#,
    ]));
    cluster.wait_role("smoke", Role::Started, Duration::from_secs(30));
    let status = cluster.status();
    let r = status.resource("smoke").expect("smoke in status");
    assert_eq!(r.agent, "ocf:pacemaker:Dummy");
    assert_eq!(r.nodes, [cluster.node()]);
    evidence(
        "live",
        t0,
        format!("Dummy 'smoke' Started on {}", cluster.node()),
    );

    run_ok(&pcmk.tool("crm_resource").args([
        "--resource",
        "smoke",
        "--meta",
        "--set-parameter",
        "target-role",
        "--parameter-value",
        "Stopped",
    ]));
    cluster.wait_role("smoke", Role::Stopped, Duration::from_secs(30));
    assert!(
        cluster
            .status()
            .nodes_with("smoke", Role::Started)
            .is_empty()
    );
    evidence("live", t0, "Dummy 'smoke' Stopped");
}
