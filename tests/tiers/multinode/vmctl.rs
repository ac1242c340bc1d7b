//! vm-ctl on the 3-node cluster with real TCG guests under VirtualDomain: live migration
//! (`-m on`, the guest keeps running) and cold moves (`-m off`, it restarts on the target),
//! moves without `-n`, `location move`, and a guest on a fenced node coming back elsewhere.

use std::time::{Duration, Instant};

use vm_common::process::Output;
use vm_pcmk::Role;
use vm_tests::guest::{Vport, domain_xml, helper_cmd, wait_ready};
use vm_tests::multinode::{MultiNode, VMCTL_KEYS};
use vm_tests::vmctl::LiveVmCtl;
use vm_tests::{evidence, run_ok, wait_for};

/// The nodes' pingd, over the tier's vm-ctl.conf keys.
const PINGD_KEY: &str = "vm_pingd1=(clnPingd default_ping_set)\n";

struct Bed {
    mn: MultiNode,
    vmctl: LiveVmCtl,
    admin: String,
}

impl Bed {
    fn new(guests: &[&str]) -> Self {
        let mn = MultiNode::acquire();
        let admin = mn.nodes()[0].to_owned();
        mn.exec(
            &admin,
            &[
                "cibadmin",
                "--create",
                "-o",
                "resources",
                "-X",
                r#"<clone id="clnPingd"><primitive id="clnPingd-p" class="ocf" provider="pacemaker" type="Dummy"/></clone>"#,
            ],
        );
        for n in mn.nodes() {
            mn.exec(
                &admin,
                &[
                    "crm_attribute",
                    "--node",
                    n,
                    "--name",
                    "default_ping_set",
                    "--update",
                    "100",
                ],
            );
        }
        let vmctl = mn.vmctl(&format!("{VMCTL_KEYS}{PINGD_KEY}"));
        for g in guests {
            vmctl.domain(
                g,
                &domain_xml(
                    g,
                    "/run/pmkt".as_ref(),
                    "/var/log/libvirt".as_ref(),
                    Vport::Echo,
                ),
            );
        }
        Self { mn, vmctl, admin }
    }

    fn running_on(&self, rsc: &str) -> String {
        self.mn
            .wait_role(rsc, Role::Started, Duration::from_secs(60))
    }

    fn console_log(&self, node: &str, guest: &str) -> std::path::PathBuf {
        self.mn
            .dir()
            .join(node)
            .join("log-libvirt")
            .join(format!("{guest}.console.log"))
    }

    fn uptime(&self, node: &str, guest: &str) -> f64 {
        let helper = helper_cmd().display();
        let out = run_ok(&self.mn.cmd(node, &helper).args([
            "console",
            &format!("/run/pmkt/{guest}.console.sock"),
            "cut -d' ' -f1 /proc/uptime",
        ]));
        out.stdout_text().trim().parse().unwrap()
    }

    fn list(&self, guest: &str) -> serde_json::Value {
        let out = self
            .vmctl
            .ok(&["--output", "json", "resource", "list", guest]);
        serde_json::from_str::<serde_json::Value>(&out.stdout_text()).unwrap()["list"][0].clone()
    }

    /// `vm-ctl resource move GUEST -n NODE --wait`, with `vm-ctl status` read meanwhile; returns
    /// the move's output and GUEST as status first showed it `migrating`.
    fn move_watched(&self, guest: &str, node: &str) -> (Output, serde_json::Value) {
        std::thread::scope(|s| {
            let mover = s.spawn(|| {
                self.vmctl
                    .ok(&["resource", "move", guest, "-n", node, "--wait=120"])
            });
            let mut during = None;
            while !mover.is_finished() {
                if during.is_none() {
                    let out = self
                        .vmctl
                        .cmd(&["--output", "json", "status"])
                        .run()
                        .unwrap();
                    let v: serde_json::Value =
                        serde_json::from_str(&out.stdout_text()).unwrap_or_default();
                    during = v["status"]["guests"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|g| g["domain"] == guest && g["state"] == "migrating")
                        .cloned();
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let out = mover.join().unwrap();
            let during = during.unwrap_or_else(|| {
                panic!("vm-ctl status never showed {guest} migrating during its live migration")
            });
            (out, during)
        })
    }

    fn stop_all(&self, guests: &str) {
        self.vmctl.ok(&["resource", "stop", guests, "--wait=120"]);
    }
}

#[test]
#[ignore = "tier multinode: needs root, namespaces, libvirtd, QEMU and the guest image"]
fn multinode_vmctl_moves_guests_live_and_cold() {
    let t0 = Instant::now();
    let bed = Bed::new(&["g1", "g2"]);
    let nodes: Vec<String> = bed.mn.nodes().iter().map(|s| (*s).to_owned()).collect();
    let (n1, n2, n3) = (&nodes[0], &nodes[1], &nodes[2]);
    bed.vmctl
        .ok(&["resource", "add", "g1", "-a", n1, "-m", "on"]);
    bed.vmctl
        .ok(&["resource", "add", "g2", "-a", n2, "-m", "off"]);
    bed.vmctl.ok(&["resource", "start", "g1,g2", "--wait=120"]);
    assert_eq!(bed.running_on("prmVMCTL_g1"), *n1);
    assert_eq!(bed.running_on("prmVMCTL_g2"), *n2);
    wait_ready(&bed.console_log(n1, "g1"), Duration::from_secs(90));
    wait_ready(&bed.console_log(n2, "g2"), Duration::from_secs(90));
    evidence(
        "multinode",
        t0,
        format!("vm-ctl add + start --wait: g1 on {n1} (-m on), g2 on {n2} (-m off), both booted"),
    );

    // -m on: live migration; the guest keeps running (its uptime continues), and vm-ctl status
    // read meanwhile shows it migrating, from where to where, on both nodes (issue 16)
    let up = bed.uptime(n1, "g1");
    let (out, during) = bed.move_watched("g1", n2);
    assert_eq!(bed.running_on("prmVMCTL_g1"), *n2);
    assert_eq!(
        (&during["migration"]["from"], &during["migration"]["to"]),
        (&serde_json::json!(n1), &serde_json::json!(n2)),
        "vm-ctl status during the live migration: {during:#}"
    );
    assert_eq!(
        during["nodes"],
        serde_json::json!([n1, n2]),
        "vm-ctl status during the live migration: {during:#}"
    );
    evidence(
        "multinode",
        t0,
        format!(
            "vm-ctl status during vm-ctl move g1 -n {n2}: {} {} -> {}, on {}",
            during["state"],
            during["migration"]["from"],
            during["migration"]["to"],
            during["nodes"]
        ),
    );
    let up2 = bed.uptime(n2, "g1");
    assert!(
        up2 > up,
        "g1's uptime went {up} -> {up2}: restarted, not live-migrated"
    );
    // g1 prefers n1 (score 200): clearing the move constraint would send it straight back
    let text = out.stdout_text();
    assert!(text.contains("kept cli-prefer-prmVMCTL_g1"), "{text}");
    assert_eq!(bed.list("g1")["move_constraint"], "yes");
    evidence(
        "multinode",
        t0,
        format!(
            "vm-ctl move g1 -n {n2}: live migration (uptime {up:.1} s -> {up2:.1} s); constraint kept, g1 would go back to {n1}"
        ),
    );
    bed.vmctl.ok(&["location", "move", "g1"]);
    bed.vmctl.ok(&["resource", "unmove", "g1"]);
    let row = bed.list("g1");
    assert_eq!(
        (
            row["preferred_node"].as_str(),
            row["running_node"].as_str(),
            row["move_constraint"].as_str()
        ),
        (Some(n2.as_str()), Some(n2.as_str()), Some("no"))
    );
    evidence(
        "multinode",
        t0,
        format!("vm-ctl location move g1 + unmove: preferred node {n2}, g1 stays there"),
    );

    // -m off: stop on n2, start on n3 (a fresh boot)
    let out = bed
        .vmctl
        .ok(&["resource", "move", "g2", "-n", n3, "--wait=120"]);
    assert_eq!(bed.running_on("prmVMCTL_g2"), *n3);
    wait_ready(&bed.console_log(n3, "g2"), Duration::from_secs(90));
    let up = bed.uptime(n3, "g2");
    assert!(
        up < 60.0,
        "g2 should have booted afresh on {n3}, uptime {up}"
    );
    evidence(
        "multinode",
        t0,
        format!(
            "vm-ctl move g2 -n {n3} (-m off): stopped on {n2}, booted on {n3} (uptime {up:.1} s): {}",
            out.stdout_text().trim()
        ),
    );

    // without -n: Pacemaker chooses a node other than the current one (the ban on n2 is kept)
    bed.vmctl
        .ok(&["resource", "move", "g1", "--wait=120", "--keep"]);
    let now = bed.running_on("prmVMCTL_g1");
    assert_ne!(now, *n2);
    evidence(
        "multinode",
        t0,
        format!("vm-ctl move g1 (no -n): Pacemaker chose {now}"),
    );

    // location move -b: every guest preferring n2 (g1, g2) gets the node it runs on; after that
    // the move constraints can go and nothing moves back
    bed.vmctl.ok(&["location", "move", "-b", n2]);
    bed.vmctl.ok(&["resource", "unmove", "g1"]);
    bed.vmctl.ok(&["resource", "unmove", "g2"]);
    bed.mn.wait_idle(&bed.admin);
    let (g1, g2) = (bed.list("g1"), bed.list("g2"));
    assert_eq!(
        (g1["preferred_node"].as_str(), g1["running_node"].as_str()),
        (Some(now.as_str()), Some(now.as_str()))
    );
    assert_eq!(
        (g2["preferred_node"].as_str(), g2["running_node"].as_str()),
        (Some(n3.as_str()), Some(n3.as_str()))
    );
    evidence(
        "multinode",
        t0,
        format!(
            "vm-ctl location move -b {n2}: g1 prefers {now}, g2 prefers {n3}; move constraints cleared, both stay"
        ),
    );
    bed.stop_all("g1,g2");
    bed.vmctl.ok(&["resource", "delete", "g1,g2"]);
    let _ = &bed.admin;
}

#[test]
#[ignore = "tier multinode: needs root, namespaces, libvirtd, QEMU and the guest image"]
fn multinode_vmctl_guest_on_a_fenced_node_comes_back_elsewhere() {
    let t0 = Instant::now();
    let bed = Bed::new(&["g3"]);
    let n3 = bed.mn.nodes()[2].to_owned();
    bed.vmctl
        .ok(&["resource", "add", "g3", "-a", &n3, "-m", "on"]);
    bed.vmctl.ok(&["resource", "start", "g3", "--wait=120"]);
    assert_eq!(bed.list("g3")["running_node"], n3.as_str());
    wait_ready(&bed.console_log(&n3, "g3"), Duration::from_secs(90));
    let t_fail = Instant::now();
    bed.mn.kill_daemon(&n3, "corosync");
    let survivor = wait_for(
        "g3 to come back on another node",
        Duration::from_secs(120),
        || {
            let s = bed.mn.any_status(&[&bed.admin])?;
            let on = s.nodes_with("prmVMCTL_g3", Role::Started);
            (on.len() == 1 && on[0] != n3).then(|| on[0].clone())
        },
    );
    let history = bed.mn.fence_history(&bed.admin, &n3);
    assert!(
        history.contains(&format!("of {n3} successful")),
        "{history}"
    );
    assert_eq!(bed.list("g3")["running_node"], survivor.as_str());
    wait_ready(&bed.console_log(&survivor, "g3"), Duration::from_secs(90));
    evidence(
        "multinode",
        t0,
        format!(
            "{n3} fenced with g3 on it; g3 back on {survivor} after {:.1} s and vm-ctl list shows it there",
            t_fail.elapsed().as_secs_f64()
        ),
    );
    bed.stop_all("g3");
    bed.vmctl.ok(&["resource", "delete", "g3"]);
    bed.mn.poweron(&n3);
}
