//! vm-managerd and the vm-client agent with real Pacemaker attributes.
//!
//! - vm-managerd on the live node, its attributes changed through attrd (`attrd_updater`),
//!   asked by a bridged guest daemon with held `wait`s: each change answers the held request;
//!   the latency from `attrd_updater` returning to the answer is measured (and printed, not
//!   asserted: bench/vm-managerd.sh runs this test for the figures in docs/benchmarks.md).
//! - ocf:pm-kvm-tools:vm-client, run as Pacemaker's executor would, mirroring a host's values
//!   (vm-managerd on a CIB file standing in for another cluster's host node) into the live
//!   cluster's node attributes through attrd: set, changed, kept while the host does not
//!   answer, deleted after the grace period, back when the host answers, deleted at stop.

use std::path::Path;
use std::time::{Duration, Instant};

use vm_common::process::Cmd;
use vm_tests::live::LiveCluster;
use vm_tests::managerd::{ManagerBed, ask_at, host_cib, replace_cib, tag_of};
use vm_tests::{evidence, project_bin, repo_dir, run_ok, wait_for};

const ATTR: &str = "pmkt_mgr_ping";

fn attrd(args: &[&str]) {
    run_ok(&Cmd::new("attrd_updater").args(args));
}

/// The live node's value of `name` as attrd has it, `None` when unset.
fn attrd_value(name: &str) -> Option<String> {
    let out = Cmd::new("attrd_updater")
        .args(["-Q", "-n", name])
        .run()
        .unwrap();
    if !out.success() {
        return None;
    }
    // name="x" host="node" value="v"
    let text = out.stdout_text();
    let v = text.split("value=\"").nth(1)?.split('"').next()?.to_owned();
    (!v.is_empty()).then_some(v)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[test]
#[ignore = "tier live: needs root, corosync and pacemakerd"]
fn live_managerd_answers_held_waits_when_attrd_changes_a_value() {
    let t0 = Instant::now();
    let cluster = LiveCluster::acquire();
    let samples: usize = std::env::var("PMKT_MANAGERD_SAMPLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let rules = format!("[{ATTR}]\nred = eq 0\nyellow = lt 100\ngreen = eq 100\n");
    attrd(&["-n", ATTR, "-U", "100"]);
    wait_for("attrd to record the value", Duration::from_secs(20), || {
        (attrd_value(ATTR).as_deref() == Some("100")).then_some(())
    });
    let bed = ManagerBed::start(cluster.node(), &rules, &[], &[], &["g1"]);
    let socket = bed.guests[0].socket().to_owned();
    let body = format!("get {ATTR}");
    wait_for("vm-managerd to read green", Duration::from_secs(20), || {
        bed.ask("g1", &body)
            .stdout_text()
            .contains(&format!("{ATTR}=green"))
            .then_some(())
    });
    evidence(
        "live",
        t0,
        format!(
            "vm-managerd answers {ATTR}=green for node {}",
            cluster.node()
        ),
    );

    let mut latencies = Vec::new();
    for i in 0..samples {
        let (value, want) = if i % 2 == 0 {
            ("0", "red")
        } else {
            ("100", "green")
        };
        let tag = tag_of(&bed.ask("g1", &body).stdout_text());
        let wait = format!("wait {tag} 45 {ATTR}");
        let s = socket.clone();
        let waiter = std::thread::spawn(move || (ask_at(&s, &wait), Instant::now()));
        // let the wait reach vm-managerd and be held
        std::thread::sleep(Duration::from_millis(500));
        assert!(!waiter.is_finished(), "the wait was not held");
        let changed = Instant::now();
        attrd(&["-n", ATTR, "-U", value]);
        let (out, answered) = waiter.join().unwrap();
        assert!(out.success(), "{}\n{}", out.stderr_text(), bed.log());
        assert!(
            out.stdout_text().contains(&format!("{ATTR}={want}")),
            "sample {i}: {}",
            out.stdout_text()
        );
        latencies.push(answered.duration_since(changed));
        // a quiet gap, as between real host events
        std::thread::sleep(Duration::from_millis(1000));
    }
    latencies.sort();
    evidence(
        "live",
        t0,
        format!(
            "attrd_updater -U -> held wait answered, {} samples: p50 {:?}, p99 {:?}, max {:?}",
            latencies.len(),
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99),
            latencies[latencies.len() - 1]
        ),
    );
    println!(
        "MANAGERD_LATENCY_MS {}",
        latencies
            .iter()
            .map(|d| d.as_millis().to_string())
            .collect::<Vec<_>>()
            .join(" ")
    );
    drop(bed);
    attrd(&["-n", ATTR, "-D"]);
}

fn agent(action: &str, socket: &Path, state: &Path) -> vm_common::process::Output {
    agent_with(action, socket, state, "pmkt_vmc_ping  pmkt_vmc_none")
}

fn agent_with(
    action: &str,
    socket: &Path,
    state: &Path,
    attribute_list: &str,
) -> vm_common::process::Output {
    Cmd::new(repo_dir().join("agents/ocf/vm-client"))
        .arg(action)
        .env("OCF_ROOT", "/usr/lib/ocf")
        .env("OCF_RESOURCE_INSTANCE", "vmc:0")
        .env("OCF_RESKEY_attribute_list", attribute_list)
        .env("OCF_RESKEY_socket", socket)
        .env("OCF_RESKEY_state", state)
        .env("OCF_RESKEY_grace", "3")
        .env("OCF_RESKEY_vm_connect", project_bin("vm-connect"))
        .timeout(Duration::from_secs(120))
        .run()
        .unwrap()
}

#[test]
#[ignore = "tier live: needs root, corosync and pacemakerd"]
fn live_vm_client_mirrors_the_host_and_tells_no_answer_from_a_change() {
    let t0 = Instant::now();
    let _cluster = LiveCluster::acquire();
    let dir = tempfile::tempdir().unwrap();
    let cib = dir.path().join("host-cib.xml");
    std::fs::write(&cib, host_cib("h1", &[("pmkt_vmc_ping", "100")])).unwrap();
    let cib_s = cib.display().to_string();
    let rules = "[pmkt_vmc_ping]\nred = eq 0\ngreen = eq 100\n[pmkt_vmc_none]\n";
    let mut bed = ManagerBed::start(
        "h1",
        rules,
        &[("CIB_file", &cib_s)],
        &["--refresh", "1"],
        &["g1"],
    );
    let socket = bed.guests[0].socket().to_owned();
    let state = dir.path().join("vmc.state");
    attrd(&["-n", "pmkt_vmc_none", "-U", "stale"]);

    let out = agent("validate-all", &socket, &state);
    assert!(out.success(), "{}", out.stderr_text());
    assert_eq!(agent("monitor", &socket, &state).code(), Some(7));
    let out = agent("start", &socket, &state);
    assert!(
        out.success(),
        "start: {}{}",
        out.stdout_text(),
        out.stderr_text()
    );
    wait_for("the mirrored value", Duration::from_secs(20), || {
        (attrd_value("pmkt_vmc_ping").as_deref() == Some("green")).then_some(())
    });
    // an attribute the host does not have is deleted in the guest
    wait_for(
        "the unset attribute deleted",
        Duration::from_secs(20),
        || attrd_value("pmkt_vmc_none").is_none().then_some(()),
    );
    assert_eq!(agent("monitor", &socket, &state).code(), Some(0));
    evidence(
        "live",
        t0,
        "vm-client started: pmkt_vmc_ping=green mirrored, unset one deleted",
    );

    replace_cib(&cib, &host_cib("h1", &[("pmkt_vmc_ping", "0")]));
    let changed = Instant::now();
    wait_for("the changed value", Duration::from_secs(20), || {
        (attrd_value("pmkt_vmc_ping").as_deref() == Some("red")).then_some(())
    });
    evidence(
        "live",
        t0,
        format!(
            "host value changed: guest attribute red after {:?} (host CIB file, 1 s refresh)",
            changed.elapsed()
        ),
    );

    // the host stops answering: nothing changes at first, then the values are deleted
    bed.stop_managerd();
    let gone = Instant::now();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        attrd_value("pmkt_vmc_ping").as_deref(),
        Some("red"),
        "changed before the grace period"
    );
    let status = std::fs::read_to_string(dir.path().join("vmc.state.host")).unwrap();
    assert!(status.starts_with("no-answer "), "{status}");
    assert_eq!(agent("monitor", &socket, &state).code(), Some(0));
    wait_for(
        "deletion after the grace period",
        Duration::from_secs(20),
        || attrd_value("pmkt_vmc_ping").is_none().then_some(()),
    );
    evidence(
        "live",
        t0,
        format!(
            "host silent: attribute kept, then deleted {:?} after (grace 3 s)",
            gone.elapsed()
        ),
    );
    bed.start_managerd(&["--refresh", "1"]);
    wait_for("the value back", Duration::from_secs(20), || {
        (attrd_value("pmkt_vmc_ping").as_deref() == Some("red")).then_some(())
    });
    evidence("live", t0, "host answers again: attribute back");

    // a changed attribute_list (Pacemaker reloads for it): the watcher starts again with the
    // new list, and the attribute no longer listed is deleted
    replace_cib(
        &cib,
        &host_cib("h1", &[("pmkt_vmc_ping", "0"), ("pmkt_vmc_none", "set")]),
    );
    let pid = |state: &Path| std::fs::read_to_string(state).unwrap_or_default();
    let before = pid(&state);
    let out = agent_with("reload", &socket, &state, "pmkt_vmc_none");
    assert!(out.success(), "reload: {}", out.stderr_text());
    assert_ne!(pid(&state), before, "reload kept the old watcher");
    wait_for(
        "the newly listed attribute",
        Duration::from_secs(20),
        || (attrd_value("pmkt_vmc_none").as_deref() == Some("set")).then_some(()),
    );
    assert!(
        attrd_value("pmkt_vmc_ping").is_none(),
        "the attribute no longer listed is still set"
    );
    evidence(
        "live",
        t0,
        "reload with a new attribute_list: a new watcher mirrors it, the unlisted attribute deleted",
    );

    // stopped with other parameters (a restart for a parameter change): what the watcher
    // mirrored is deleted too
    let out = agent_with("stop", &socket, &state, "pmkt_vmc_ping");
    assert!(out.success(), "{}", out.stderr_text());
    assert!(attrd_value("pmkt_vmc_none").is_none());
    assert!(attrd_value("pmkt_vmc_ping").is_none());
    assert_eq!(agent("monitor", &socket, &state).code(), Some(7));
    assert!(!state.exists());
    evidence(
        "live",
        t0,
        "vm-client stopped: attributes deleted, watcher gone",
    );
}
