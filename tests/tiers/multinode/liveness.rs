//! Issue 16 end to end: a guest whose kernel panics (QEMU keeps running it) is noticed by the
//! host cluster through its channel and recovered, and recovery escalates. A TCG guest runs
//! the project's guest daemon; every node runs the packaged host vm-connectd, which heartbeats
//! it and publishes its liveness (`pmkt-guest-<domain>`); vm-ctl adds it with
//! `vm_liveness_timeout`, `vm_migration_threshold=2` and `vm_failure_timeout`. A first panic
//! fails its monitor (`ocf:pm-kvm-tools:VirtualDomain`) and Pacemaker restarts it on the same
//! node; a second one moves it to another node. A timeline prints each step with its time, and
//! at each stage `vm-ctl status` (whose guest liveness must be the stage's) and `crm_mon -1 -f`.

use std::time::{Duration, Instant};

use vm_pcmk::Role;
use vm_tests::evidence;
use vm_tests::guest::wait_ready;
use vm_tests::liveness::PanicBed;
use vm_tests::multinode::VMCTL_KEYS;
use vm_tests::wait_for;

/// The relays' heartbeat, shorter than the defaults (5 s, 20 s) to keep the tier short;
/// `bench/liveness.sh` measures the defaults.
const RELAY: &[&str] = &["--heartbeat-interval", "2", "--liveness-timeout", "6"];

/// The guest's health and recovery keys, over the tier's vm-ctl.conf keys.
const KEYS: &str = "vm_liveness_timeout=6s\nvm_migration_threshold=2\nvm_failure_timeout=10min\n";

struct Timeline {
    t0: Instant,
    steps: Vec<(f64, String)>,
}

impl Timeline {
    fn step(&mut self, what: String) {
        let t = self.t0.elapsed().as_secs_f64();
        println!("[timeline +{t:6.1}s] {what}");
        self.steps.push((t, what));
    }
}

#[test]
#[ignore = "tier multinode: needs root, namespaces, libvirtd, QEMU and the guest image"]
fn multinode_a_panicked_guest_is_restarted_then_moved_away() {
    let t0 = Instant::now();
    let bed = PanicBed::start("gp1", &format!("{VMCTL_KEYS}{KEYS}"), RELAY, 1);
    let (name, rsc) = (bed.name.clone(), bed.rsc.clone());
    let shown = bed.vmctl.ok(&["resource", "show", &name]).stdout_text();
    assert!(
        shown.contains("liveness_timeout=6") && shown.contains("migration-threshold=2"),
        "{shown}"
    );
    let mut tl = Timeline {
        t0: Instant::now(),
        steps: Vec::new(),
    };
    let home = bed.running_on();
    tl.step(format!("{name} started on {home}, guest booted"));
    let v = bed.wait_liveness(&home, "up:answering:", Duration::from_secs(90));
    tl.step(format!("liveness on {home}: {v}"));
    stage(&bed, Some(("answering", &home)));

    // each panic's failed monitor: the second must be a new failure, not the first one, which
    // crm_mon keeps listing (with the fail count) until it expires
    let panic_until_failed = |n: u32,
                              before: Option<&(String, String, String, String)>,
                              tl: &mut Timeline| {
        bed.panic(&home);
        tl.step(format!(
            "panic #{n}: `echo c > /proc/sysrq-trigger` in {name} on {home} (console: Kernel panic; QEMU keeps running)"
        ));
        let v = bed.wait_liveness(&home, "up:silent:", Duration::from_secs(60));
        tl.step(format!("liveness on {home}: {v}"));
        // (the monitor fails liveness_timeout later: vm-ctl status shows the silence meanwhile)
        stage(&bed, Some(("silent", &home)));
        let failure = bed.wait_failed_monitor(&home, before, Duration::from_secs(90));
        assert!(
            failure.2.contains(&format!("guest {name} silent for")),
            "exit reason: {failure:?}"
        );
        tl.step(format!(
            "monitor failed on {home}: {} ({})",
            failure.0, failure.2
        ));
        stage(&bed, None);
        failure
    };

    // first panic: restarted where it was (migration-threshold 2 not reached)
    let first = panic_until_failed(1, None, &mut tl);
    bed.wait_rebooted_on(&home, Duration::from_secs(120));
    tl.step(format!("{name} restarted on {home} (booted afresh)"));
    let v = bed.wait_liveness(&home, "up:answering:", Duration::from_secs(90));
    tl.step(format!("liveness on {home}: {v}"));
    stage(&bed, Some(("answering", &home)));

    // second panic: fail count 2 = migration-threshold: it moves to another node
    panic_until_failed(2, Some(&first), &mut tl);
    let moved_to = wait_for(
        &format!("{name} to start on another node"),
        Duration::from_secs(120),
        || {
            let on = bed
                .mn
                .any_status(&[&bed.admin])?
                .nodes_with(&rsc, Role::Started);
            (on.len() == 1 && on[0] != home).then(|| on[0].clone())
        },
    );
    tl.step(format!(
        "{name} moved {home} -> {moved_to} (migration-threshold 2 reached)"
    ));
    wait_ready(&bed.console_log(&moved_to), Duration::from_secs(90));
    let v = bed.wait_liveness(&moved_to, "up:answering:", Duration::from_secs(90));
    tl.step(format!("liveness on {moved_to}: {v}"));
    wait_for(
        &format!("{} to be gone from {home}", bed.attr),
        Duration::from_secs(30),
        || bed.liveness(&home).is_none().then_some(()),
    );
    tl.step(format!(
        "{} deleted on {home} (no link there any more)",
        bed.attr
    ));
    stage(&bed, Some(("answering", &moved_to)));

    let summary: Vec<String> = tl
        .steps
        .iter()
        .map(|(t, s)| format!("+{t:.1}s {s}"))
        .collect();
    evidence(
        "multinode",
        t0,
        format!("panic -> restart -> panic -> move: {}", summary.join("; ")),
    );
    bed.remove();
}

/// What an operator sees at this stage: `vm-ctl status` (the packaged one: issue 16's one
/// screen), `crm_mon -1 -f` and every node's published liveness of the guest. With `expect`
/// (liveness, node), `vm-ctl status --output json` must show the guest's channel so.
fn stage(bed: &PanicBed, expect: Option<(&str, &str)>) {
    let status = bed.vmctl.ok(&["status"]).stdout_text();
    println!("----- vm-ctl status\n{}", status.trim_end());
    if let Some((liveness, node)) = expect {
        let json = bed.vmctl.ok(&["--output", "json", "status"]).stdout_text();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let guest = v["status"]["guests"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|g| g["domain"] == bed.name.as_str())
            .cloned()
            .unwrap_or_default();
        assert_eq!(
            (
                guest["channel"]["liveness"].as_str(),
                guest["channel"]["node"].as_str()
            ),
            (Some(liveness), Some(node)),
            "vm-ctl status --output json: {guest}"
        );
    }
    let out = bed
        .mn
        .cmd(&bed.admin, "crm_mon")
        .args(["-1", "-f"])
        .timeout(Duration::from_secs(20))
        .run()
        .map(|o| o.stdout_text())
        .unwrap_or_default();
    println!("----- crm_mon -1 -f ({})\n{}", bed.admin, out.trim_end());
    for n in bed.mn.nodes() {
        println!(
            "----- {} on {n}: {}",
            bed.attr,
            bed.liveness(n).unwrap_or_else(|| "(not set)".into())
        );
    }
}
