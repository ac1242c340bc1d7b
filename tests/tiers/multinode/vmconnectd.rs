//! vm-connectd across live migration: a host-mode daemon in every node, the guest's own daemon
//! inside a Pacemaker-managed TCG guest; while the guest pings its host in a loop, Pacemaker
//! live-migrates it. The destination node's daemon picks the guest up; every ping is accounted
//! for exactly once — answered by the old host, answered by the new one, or reported to its
//! caller as retry/timeout — never lost silently, never answered twice.

use std::time::{Duration, Instant};

use vm_pcmk::Role;
use vm_tests::guest::{Vport, helper_cmd, wait_ready};
use vm_tests::multinode::MultiNode;
use vm_tests::{evidence, packaged_bin, run_ok, wait_for};

const PINGS: usize = 60;

#[test]
#[ignore = "tier multinode: needs root, namespaces, libvirtd, QEMU and the guest image"]
fn multinode_vmconnectd_follows_a_live_migration() {
    let t0 = Instant::now();
    let mn = MultiNode::acquire();
    let nodes: Vec<String> = mn.nodes().iter().map(|s| (*s).to_owned()).collect();
    let bin = packaged_bin("vm-connectd").display().to_string();
    let relays = mn.start_relays(&[]);
    let (name, rsc) = ("gm1", "vm-gm1");
    mn.add_migratable_guest(&nodes[0], name, rsc, Vport::Daemon);
    let a = mn.wait_role(rsc, Role::Started, Duration::from_secs(90));
    wait_ready(
        &mn.dir()
            .join(&a)
            .join("log-libvirt")
            .join(format!("{name}.console.log")),
        Duration::from_secs(90),
    );
    let console = format!("/run/pmkt/{name}.console.sock");
    let in_guest = |node: &str, cmd: &str| {
        let helper = helper_cmd().display();
        run_ok(
            &mn.cmd(node, &helper)
                .args(["console", &console, cmd, "120"]),
        )
        .stdout_text()
    };
    let first = in_guest(
        &a,
        "for i in $(seq 30); do vm-connect --timeout 5 ping && exit 0; sleep 0.5; done; exit 1",
    );
    assert!(first.contains(&format!("pong from host {a}")), "{first}");
    evidence("multinode", t0, format!("{name} on {a}: {}", first.trim()));

    // pings in the background inside the guest, one line per ping with its outcome
    in_guest(
        &a,
        &format!(
            "rm -f /tmp/pings.log; ( i=0; while [ $i -lt {PINGS} ]; do i=$((i+1)); \
         out=$(vm-connect --timeout 5 ping 2>&1); echo \"$i rc=$? $out\" >> /tmp/pings.log; sleep 0.2; done; \
         echo DONE >> /tmp/pings.log ) >/dev/null 2>&1 &"
        ),
    );
    std::thread::sleep(Duration::from_secs(2));
    let b = nodes.iter().find(|n| **n != a).unwrap().clone();
    let t_move = Instant::now();
    mn.exec(
        &nodes[0],
        &["crm_resource", "--resource", rsc, "--move", "--node", &b],
    );
    mn.wait_role_on(rsc, Role::Started, &b, Duration::from_secs(120));
    let moved = t_move.elapsed();
    let log = wait_for("the ping loop to finish", Duration::from_secs(120), || {
        let text = in_guest(&b, "cat /tmp/pings.log");
        text.contains("DONE").then_some(text)
    });
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(" rc=")).collect();
    let mut seen = vec![0usize; PINGS + 1];
    let (mut on_a, mut on_b, mut retried, mut timed_out) = (0, 0, 0, 0);
    for l in &lines {
        let n: usize = l.split_whitespace().next().unwrap().parse().unwrap();
        seen[n] += 1;
        if l.contains("rc=0 ") {
            if l.contains(&format!("pong from host {a}")) {
                on_a += 1;
            } else if l.contains(&format!("pong from host {b}")) {
                on_b += 1;
            } else {
                panic!("answered by an unknown host: {l}");
            }
        } else if l.contains("rc=2 ") {
            retried += 1;
        } else if l.contains("rc=3 ") {
            timed_out += 1;
        } else {
            panic!("unexpected outcome: {l}\n{log}");
        }
    }
    assert!(
        seen[1..].iter().all(|&c| c == 1),
        "every ping exactly once:\n{log}"
    );
    assert!(on_a > 0 && on_b > 0, "pings answered on both hosts:\n{log}");
    // the last pings were answered by the new host, and the guest daemon never restarted
    assert!(
        lines
            .last()
            .unwrap()
            .contains(&format!("pong from host {b}")),
        "{log}"
    );
    let restarts = in_guest(&b, "grep -c 'guest mode started' /var/log/vm-connectd.log");
    assert_eq!(restarts.trim(), "1", "the guest daemon restarted");
    evidence(
        "multinode",
        t0,
        format!(
            "{rsc} live-migrated {a} -> {b} ({:.1} s) during {PINGS} pings: {on_a} answered by {a}, {on_b} by {b}, {retried} retry, {timed_out} timeout; each exactly once",
            moved.as_secs_f64()
        ),
    );
    let status =
        run_ok(
            &mn.cmd(&b, &bin)
                .args(["status", "--json", "--socket", "/run/vmconnectd.sock"]),
        );
    assert!(
        status
            .stdout_text()
            .contains(&format!("\"domain\":\"{name}\"")),
        "{}",
        status.stdout_text()
    );
    mn.exec(&nodes[0], &["crm_resource", "--resource", rsc, "--clear"]);
    mn.exec(
        &nodes[0],
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
    wait_for("the guest to stop", Duration::from_secs(90), || {
        let s = mn.any_status(&[])?;
        (s.resource(rsc)?.role == Role::Stopped).then_some(())
    });
    drop(relays);
}
