//! vm-managerd on a CIB file (cibadmin, the real tool) behind the real relay, asked by guests
//! through bridged guest-mode vm-connectds with `vm-connect`: what a guest may read, what it
//! gets for bad input, and a held `wait` answered when the host's value changes.

use std::time::{Duration, Instant};

use vm_tests::evidence;
use vm_tests::managerd::{ManagerBed, ask_at, host_cib, replace_cib, tag_of};

fn cib_text(ping: &str) -> String {
    host_cib(
        "n1",
        &[
            ("default_ping_set", ping),
            ("diskcheck_status", "normal"),
            ("secret", "s3cr3t"),
        ],
    )
}

/// The shipped rules (the original's), and g2 limited to the ping attribute.
fn rules() -> String {
    format!(
        "{}\n[@guests]\ng1 = default_ping_set diskcheck_status\ng2 = default_ping_set\n",
        include_str!("../../../vm-managerd/vm-manager.conf")
    )
}

fn bed() -> (tempfile::TempDir, std::path::PathBuf, ManagerBed) {
    let dir = tempfile::tempdir().unwrap();
    let cib = dir.path().join("cib.xml");
    std::fs::write(&cib, cib_text("100")).unwrap();
    let cib_s = cib.display().to_string();
    // a CIB file sends no notifications: read it every second
    let bed = ManagerBed::start(
        "n1",
        &rules(),
        &[("CIB_file", &cib_s)],
        &["--refresh", "1"],
        &["g1", "g2"],
    );
    (dir, cib, bed)
}

#[test]
#[ignore = "tier cib: needs Pacemaker's tools"]
fn managerd_answers_only_exposed_attributes_and_defines_bad_input() {
    let t0 = Instant::now();
    let (_dir, _cib, mut bed) = bed();

    let out = bed.ask("g1", "get default_ping_set diskcheck_status");
    assert!(out.success(), "{}\n{}", out.stderr_text(), bed.log());
    let text = out.stdout_text();
    assert!(text.starts_with("ok n1 "), "{text}");
    assert!(
        text.trim_end()
            .ends_with("\ndefault_ping_set=green\ndiskcheck_status=green"),
        "{text}"
    );
    evidence(
        "cib",
        t0,
        "g1 reads its host's converted values through the relay",
    );

    // g2 may read ping only; nobody may read an attribute without a group, though the host
    // node has it
    for (guest, body) in [
        ("g2", "get diskcheck_status"),
        ("g1", "get secret"),
        ("g1", "get default_ping_set secret"),
        ("g2", "wait - 5 secret"),
    ] {
        let out = bed.ask(guest, body);
        assert_eq!(out.code(), Some(4), "{guest} {body}: {}", out.stdout_text());
        assert!(
            out.stderr_text().contains("is not exposed to this guest"),
            "{}",
            out.stderr_text()
        );
        assert!(!out.stdout_text().contains("s3cr3t"));
    }
    evidence("cib", t0, "unexposed attributes refused (Error Forbidden)");

    let oversize = format!("get {}", "a ".repeat(700).trim_end());
    for body in [
        "get",
        "get  default_ping_set",
        "wait - 99 default_ping_set",
        "GET default_ping_set",
        oversize.as_str(),
    ] {
        let out = bed.ask("g1", body);
        assert_eq!(out.code(), Some(4), "{body}: {}", out.stdout_text());
    }
    assert!(bed.alive(), "vm-managerd died on bad input:\n{}", bed.log());
    assert!(bed.ask("g1", "get default_ping_set").success());
    evidence(
        "cib",
        t0,
        "malformed requests answered Error BadRequest, daemon unharmed",
    );
}

#[test]
#[ignore = "tier cib: needs Pacemaker's tools"]
fn a_held_wait_is_answered_when_the_host_value_changes_and_floods_get_retry() {
    let t0 = Instant::now();
    let (_dir, cib, bed) = bed();
    let first = bed.ask("g1", "get default_ping_set");
    let tag = tag_of(&first.stdout_text());

    // hold a wait, then change the value in the CIB
    let socket = bed.guests[0].socket().to_owned();
    let body = format!("wait {tag} 45 default_ping_set");
    let waiter = {
        let body = body.clone();
        std::thread::spawn(move || (ask_at(&socket, &body), Instant::now()))
    };
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!waiter.is_finished(), "an unchanged answer was not held");
    let changed = Instant::now();
    replace_cib(&cib, &cib_text("0"));
    let (out, answered) = waiter.join().unwrap();
    assert!(out.success(), "{}\n{}", out.stderr_text(), bed.log());
    assert!(
        out.stdout_text()
            .trim_end()
            .ends_with("\ndefault_ping_set=red")
    );
    let latency = answered.duration_since(changed);
    assert!(
        latency < Duration::from_secs(5),
        "held for {latency:?} after the change (refresh period 1 s)"
    );
    evidence(
        "cib",
        t0,
        format!("held wait answered {latency:?} after the CIB change (file: 1 s refresh)"),
    );

    // four held waits per guest; the fifth is told to retry, another guest is not affected
    let tag = tag_of(&bed.ask("g1", "get default_ping_set").stdout_text());
    let body = format!("wait {tag} 3 default_ping_set");
    let socket = bed.guests[0].socket().to_owned();
    let held: Vec<_> = (0..4)
        .map(|_| {
            let (s, b) = (socket.clone(), body.clone());
            std::thread::spawn(move || ask_at(&s, &b))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(800));
    let fifth = bed.ask("g1", &body);
    assert_eq!(fifth.code(), Some(2), "{}", fifth.stderr_text());
    let other = bed.ask("g2", "get default_ping_set");
    assert!(other.success());
    for h in held {
        // after its 3 s, answered unchanged
        let out = h.join().unwrap();
        assert!(out.success(), "{}", out.stderr_text());
        assert_eq!(tag_of(&out.stdout_text()), tag);
    }
    evidence(
        "cib",
        t0,
        "a fifth held wait of one guest: Retry Busy; the held ones answered unchanged after their time",
    );
}

#[test]
#[ignore = "tier cib: needs Pacemaker's tools"]
fn sighup_rereads_the_rules_and_keeps_them_when_the_file_is_bad() {
    let t0 = Instant::now();
    let (_dir, _cib, mut bed) = bed();
    std::fs::write(bed.rules_path(), "[default_ping_set]\nred = lt ten\n").unwrap();
    bed.signal(nix::sys::signal::Signal::SIGHUP);
    std::thread::sleep(Duration::from_millis(500));
    assert!(bed.alive());
    let out = bed.ask("g1", "get default_ping_set diskcheck_status");
    assert!(
        out.stdout_text().contains("default_ping_set=green"),
        "{}",
        out.stdout_text()
    );
    assert!(
        bed.log().contains("keeping the rules in force"),
        "{}",
        bed.log()
    );
    std::fs::write(bed.rules_path(), "[default_ping_set]\nfull = eq 100\n").unwrap();
    bed.signal(nix::sys::signal::Signal::SIGHUP);
    vm_tests::wait_for("the new rules", Duration::from_secs(10), || {
        bed.ask("g1", "get default_ping_set")
            .stdout_text()
            .contains("default_ping_set=full")
            .then_some(())
    });
    // diskcheck_status has no group any more
    assert_eq!(bed.ask("g1", "get diskcheck_status").code(), Some(4));
    evidence(
        "cib",
        t0,
        "SIGHUP: a bad rule file kept the old rules; a good one took effect",
    );
}

#[test]
#[ignore = "tier cib: needs Pacemaker's tools"]
fn vmctl_client_config_cibadmin_script_keeps_the_service_off_a_red_host() {
    let t0 = Instant::now();
    // the guest cluster's CIB; g2's host reports red (as vm-client mirrors it)
    let guest_cib = vm_tests::cib::CibSpec::default()
        .nodes(&["g1", "g2"])
        .stonith(false)
        .node_attr("g1", "default_ping_set", "green")
        .node_attr("g2", "default_ping_set", "red")
        .create();
    guest_cib.create_in(
        "resources",
        r#"<primitive id="svc" class="ocf" provider="pacemaker" type="Dummy"/>"#,
    );
    let out = vm_common::process::Cmd::new(vm_tests::project_bin("vm-ctl"))
        .args([
            "stonith",
            "client-config",
            "--resource",
            "svc",
            "--syntax",
            "cibadmin",
        ])
        .run()
        .unwrap();
    assert!(out.success(), "{}", out.stderr_text());
    let file = guest_cib.dir().join("client.sh");
    std::fs::write(&file, out.stdout_text()).unwrap();
    vm_tests::run_ok(
        &vm_common::process::Cmd::new("sh")
            .arg(&file)
            .env("CIB_file", guest_cib.path()),
    );
    let xml = guest_cib.xml();
    assert!(xml.contains(r#"<clone id="clnVmClient">"#), "{xml}");
    guest_cib.assert_valid_online(&["g1", "g2"]);
    let placed = guest_cib.placement_with(&["g1", "g2"]);
    let svc = placed.resource("svc").expect("svc placed");
    assert_eq!(svc.nodes, ["g1"], "svc must avoid g2 (red)");
    // and a node where the attribute is not defined (its host does not answer) is avoided too
    vm_tests::run_ok(&guest_cib.tool("crm_attribute").args([
        "--node",
        "g1",
        "--name",
        "default_ping_set",
        "--delete",
    ]));
    let placed = guest_cib.placement_with(&["g1", "g2"]);
    let svc = placed.resource("svc").expect("svc in the status");
    assert!(svc.nodes.is_empty(), "svc placed on {:?}", svc.nodes);
    evidence(
        "cib",
        t0,
        "vm-ctl stonith client-config --syntax cibadmin: vm-client clone and rule valid; svc kept off the red guest",
    );
}
