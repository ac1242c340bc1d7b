//! Multi-node tier: a 3-node Pacemaker cluster in namespaces with real fencing, one libvirtd per
//! node, and a Pacemaker-managed TCG guest that live-migrates between nodes.

// Test code: a failed step panics with its cause.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use vm_pcmk::Role;
use vm_tests::guest::{Vport, helper_cmd, wait_ready};
use vm_tests::multinode::MultiNode;
use vm_tests::{evidence, run_ok, wait_for};

mod liveness;
mod vmconnectd;
mod vmctl;

#[test]
#[ignore = "tier multinode: needs root, namespaces, corosync and pacemakerd"]
fn multinode_fences_a_failed_node_and_recovers_its_resource() {
    let t0 = Instant::now();
    let mn = MultiNode::acquire();
    evidence("multinode", t0, format!("cluster up: {:?}", mn.nodes()));
    let admin = mn.nodes()[0].to_owned();
    mn.exec(
        &admin,
        &[
            "cibadmin",
            "--create",
            "-o",
            "resources",
            "-X",
            r#"<primitive id="d1" class="ocf" provider="pacemaker" type="Dummy">
                 <operations><op id="d1-mon" name="monitor" interval="5s"/></operations>
               </primitive>"#,
        ],
    );
    let victim = mn.wait_role("d1", Role::Started, Duration::from_secs(60));
    evidence("multinode", t0, format!("Dummy d1 Started on {victim}"));

    // The node loses its cluster membership; the others must fence it before recovering d1.
    mn.kill_daemon(&victim, "corosync");
    let t_fail = Instant::now();
    let survivor = wait_for(
        "d1 to be recovered on another node",
        Duration::from_secs(90),
        || {
            let status = mn.any_status(&[])?;
            let nodes = status.nodes_with("d1", Role::Started);
            (nodes.len() == 1 && nodes[0] != victim).then(|| nodes[0].clone())
        },
    );
    let history = mn.fence_history(&survivor, &victim);
    assert!(
        history.contains(&format!("of {victim} successful")),
        "no successful fence of {victim} in the history:\n{history}"
    );
    assert!(
        !mn.node_has_processes(&victim),
        "{victim} still has processes after being fenced"
    );
    evidence(
        "multinode",
        t0,
        format!(
            "{victim} fenced ({}), d1 Started on {survivor} {:.1} s after the failure",
            history.lines().next().unwrap_or("").trim(),
            t_fail.elapsed().as_secs_f64()
        ),
    );

    mn.poweron(&victim);
    mn.wait_all_online(Duration::from_secs(120));
    evidence(
        "multinode",
        t0,
        format!("{victim} powered on and back online"),
    );
}

#[test]
#[ignore = "tier multinode: needs root, namespaces, libvirtd, QEMU and the guest image"]
fn multinode_live_migrates_a_virtualdomain_guest_and_the_channel_follows() {
    let t0 = Instant::now();
    let mn = MultiNode::acquire();
    let admin = mn.nodes()[0].to_owned();
    let name = "g1";
    let rsc = "vm-g1";
    // The domain XML sits on the shared storage; the paths inside it resolve in whichever node
    // runs the guest (each node has its own /run and /var/log/libvirt).
    mn.add_migratable_guest(&admin, name, rsc, Vport::Echo);
    let a = mn.wait_role(rsc, Role::Started, Duration::from_secs(90));
    wait_ready(
        &mn.dir()
            .join(&a)
            .join("log-libvirt")
            .join(format!("{name}.console.log")),
        Duration::from_secs(90),
    );
    evidence(
        "multinode",
        t0,
        format!("{rsc} (VirtualDomain, TCG) Started on {a}, guest booted"),
    );

    let channel = format!("/run/pmkt/vmconnectd/{name}.sock");
    let console = format!("/run/pmkt/{name}.console.sock");
    let echo_on = |node: &str| {
        let out = run_ok(&mn_helper(&mn, node).args(["echo", &channel, "ping", "pong"]));
        let text = out.stdout_text();
        assert!(text.contains(&format!("hello-from-{name}")), "{text}");
        text
    };
    let uptime_on = |node: &str| -> f64 {
        let out =
            run_ok(&mn_helper(&mn, node).args(["console", &console, "cut -d' ' -f1 /proc/uptime"]));
        out.stdout_text()
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("guest uptime on {node}: {:?}", out.stdout_text()))
    };
    let text = echo_on(&a);
    evidence(
        "multinode",
        t0,
        format!(
            "channel on {a}: {}",
            text.lines().collect::<Vec<_>>().join("; ")
        ),
    );
    let up_before = uptime_on(&a);

    let b = mn.nodes().into_iter().find(|n| *n != a).unwrap().to_owned();
    let t_move = Instant::now();
    mn.exec(
        &admin,
        &["crm_resource", "--resource", rsc, "--move", "--node", &b],
    );
    mn.wait_role_on(rsc, Role::Started, &b, Duration::from_secs(120));
    let moved_in = t_move.elapsed();
    let up_after = uptime_on(&b);
    assert!(
        up_after > up_before,
        "guest uptime went from {up_before} s to {up_after} s: it was restarted, not migrated"
    );
    let pcmk_log = std::fs::read_to_string(mn.dir().join(&a).join("log-pacemaker/pacemaker.log"))
        .unwrap_or_default()
        + &std::fs::read_to_string(mn.dir().join(&b).join("log-pacemaker/pacemaker.log"))
            .unwrap_or_default();
    assert!(
        pcmk_log.contains(&format!("{rsc}_migrate_to_0")),
        "no migrate_to in the pacemaker logs"
    );
    evidence(
        "multinode",
        t0,
        format!(
            "{rsc} live-migrated {a} -> {b} in {:.1} s (guest uptime {up_before:.1} s -> {up_after:.1} s)",
            moved_in.as_secs_f64()
        ),
    );
    let text = echo_on(&b);
    evidence(
        "multinode",
        t0,
        format!(
            "channel on {b}: {}",
            text.lines().collect::<Vec<_>>().join("; ")
        ),
    );
    let on_a = mn
        .cmd(&a, "test")
        .args(["-S", &channel])
        .run()
        .unwrap()
        .success();
    assert!(
        !on_a,
        "the channel socket stayed on {a} after the migration"
    );

    mn.exec(&admin, &["crm_resource", "--resource", rsc, "--clear"]);
    mn.exec(
        &admin,
        &[
            "crm_resource",
            "--resource",
            rsc,
            "--meta",
            "--set-parameter",
            "target-role",
            "--parameter-value",
            "Stopped",
        ],
    );
    wait_for(&format!("{rsc} to stop"), Duration::from_secs(90), || {
        let s = mn.any_status(&[])?;
        let r = s.resource(rsc)?;
        (r.role == Role::Stopped).then_some(())
    });
    evidence("multinode", t0, format!("{rsc} stopped"));
}

/// The `pmkt-tb` helper run inside `node` (it sees that node's /run).
fn mn_helper(mn: &MultiNode, node: &str) -> vm_common::process::Cmd {
    let helper = helper_cmd().display();
    mn.cmd(node, &helper).timeout(Duration::from_secs(90))
}
