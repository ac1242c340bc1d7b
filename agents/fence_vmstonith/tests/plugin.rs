//! The cluster-glue plugin `agents/stonith/external/vm-stonith` run with `sh`, with
//! `FENCE_VMSTONITH` pointing at the built agent and a fake host behind it (see `common`).
//! The legacy path needs `vm-connect`: it is looked for next to this test's target directory
//! (`cargo build -p vm-connectd --bin vm-connect`); without it those checks are skipped with a
//! note.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::{Answer, FakeHost, Incoming, Run, done, run};
use vm_proto::RetryReason;
use vm_seal::{Action, PowerState};

const LIMIT: Duration = Duration::from_secs(30);
const PLUGIN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../stonith/external/vm-stonith"
);
const TOKEN: &str = "U2FsdGVkX1+abc/def0123456789ABCDEF=";

/// The plugin with `op` and `target`, the parameters in `env` and the binaries set.
fn plugin(host: Option<&FakeHost>, op: &str, target: Option<&str>, env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new("sh");
    cmd.arg(PLUGIN).arg(op);
    if let Some(t) = target {
        cmd.arg(t);
    }
    for var in [
        "hostlist",
        "delimeter",
        "key_file",
        "socket",
        "timeout",
        "HA_BIN",
        "HA_debug",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("FENCE_VMSTONITH", common::AGENT);
    if let Some(vm_connect) = vm_connect() {
        cmd.env("VM_CONNECT", vm_connect);
    }
    if let Some(h) = host {
        cmd.env("key_file", h.key_str())
            .env("socket", h.socket_str());
    }
    cmd.envs(env.iter().copied());
    run(cmd, None, LIMIT)
}

/// `vm-connect` from this build's target directory, if built.
fn vm_connect() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    // <target>/<profile>/deps/plugin-<hash>
    let path = exe.parent()?.parent()?.join("vm-connect");
    path.is_file().then_some(path)
}

fn need_vm_connect(what: &str) -> bool {
    if vm_connect().is_none() {
        eprintln!(
            "note: vm-connect is not built (cargo build -p vm-connectd --bin vm-connect); \
             skipping {what}"
        );
        return false;
    }
    true
}

#[test]
fn gethosts_prints_the_node_names() {
    let r = plugin(
        None,
        "gethosts",
        None,
        &[("hostlist", "node1:web1 Node2\tnode3:U2FsdGVkX1abc")],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout, "node1\nNode2\nnode3\n");
    let r = plugin(
        None,
        "gethosts",
        None,
        &[("hostlist", "node1,web1 node2"), ("delimeter", ",")],
    );
    assert_eq!((r.code, r.stdout.as_str()), (0, "node1\nnode2\n"), "{r:?}");
}

#[test]
fn off_runs_fence_vmstonith_for_the_mapped_domain() {
    let host = FakeHost::start(|_, req| {
        let r = &req.sealed().request;
        assert_eq!(r.action, Action::Off);
        assert_eq!(r.target.as_ref().unwrap().as_str(), "web2");
        done(PowerState::Off, "web2 is off")
    });
    let env = [("hostlist", "node1:web1 node2:web2"), ("timeout", "20")];
    // the target is compared case-insensitively, as in the original
    let r = plugin(Some(&host), "off", Some("NODE2"), &env);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(host.seen().len(), 1);
    let timeout = host.seen()[0].sealed().request.timeout;
    assert!(timeout <= Duration::from_secs(20), "{timeout:?}");
    // a node not in the list
    let r = plugin(Some(&host), "off", Some("node9"), &env);
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(host.seen().len(), 1);
}

#[test]
fn reset_is_reboot_and_a_bare_name_is_its_own_domain() {
    let host = FakeHost::start(|_, req| {
        let r = &req.sealed().request;
        assert_eq!(r.action, Action::Reboot);
        assert_eq!(r.target.as_ref().unwrap().as_str(), "node3");
        done(PowerState::On, "rebooted")
    });
    let r = plugin(
        Some(&host),
        "reset",
        Some("node3"),
        &[("hostlist", "node1:web1 node3")],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(host.seen().len(), 1);
}

#[test]
fn a_failed_fence_fails_the_plugin() {
    let host = FakeHost::start(|_, _| {
        Answer::Reply(vm_seal::FenceReply::new(
            vm_seal::Outcome::Refused,
            PowerState::Unknown,
            "not yours",
        ))
    });
    let r = plugin(
        Some(&host),
        "off",
        Some("node2"),
        &[("hostlist", "node2:web2")],
    );
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("not yours"), "{r:?}");
}

#[test]
fn status_checks_the_path_or_the_guest() {
    let host = FakeHost::start(|_, req| {
        let r = &req.sealed().request;
        match r.action {
            Action::Monitor => done(PowerState::Unknown, "ok"),
            Action::Status => done(PowerState::Off, "off"),
            other => panic!("unexpected {other}"),
        }
    });
    let env = [("hostlist", "node1:web1 node2:web2")];
    let r = plugin(Some(&host), "status", None, &env);
    assert_eq!(r.code, 0, "{r:?}");
    // with a target: a guest that is off still means the device answered
    let r = plugin(Some(&host), "status", Some("node2"), &env);
    assert_eq!(r.code, 0, "{r:?}");
    let actions: Vec<Action> = host
        .seen()
        .iter()
        .map(|i| i.sealed().request.action)
        .collect();
    assert_eq!(actions, [Action::Monitor, Action::Status]);
}

#[test]
fn bad_configurations_exit_6() {
    for (hostlist, delim) in [
        ("node1:web1 node2:$(touch${IFS}/tmp/pwned)", None),
        ("node1:web1 `id`", None),
        ("node1;reboot", None),
        ("node1:web1 node2:*", None),
        ("node1:web1 :web2", None),
        ("", None),
        ("   ", None),
        ("node1:web1", Some(" ")),
        ("node1:web1", Some("::")),
    ] {
        for op in ["gethosts", "off", "status"] {
            let mut env = vec![("hostlist", hostlist)];
            if let Some(d) = delim {
                env.push(("delimeter", d));
            }
            let r = plugin(None, op, Some("node1"), &env);
            assert_eq!(r.code, 6, "{op} {hostlist:?} {delim:?}: {r:?}");
            assert!(r.stdout.is_empty(), "{r:?}");
        }
    }
    let r = plugin(
        None,
        "off",
        Some("node1"),
        &[("hostlist", "node1:web1"), ("delimeter", " ")],
    );
    assert!(r.stderr.contains("Invalid delimeter [ ]."), "{r:?}");
    for (name, value) in [
        ("timeout", "0"),
        ("timeout", "ten"),
        ("timeout", "999999"),
        ("socket", "/tmp/$(id)"),
        ("key_file", "a b"),
    ] {
        let r = plugin(
            None,
            "off",
            Some("node1"),
            &[("hostlist", "node1:web1"), (name, value)],
        );
        assert_eq!(r.code, 6, "{name}={value:?}: {r:?}");
    }
}

#[test]
fn information_operations() {
    let r = plugin(None, "getconfignames", None, &[]);
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "hostlist\ndelimeter\nkey_file\nsocket\ntimeout\n")
    );
    for op in [
        "getinfo-devid",
        "getinfo-devname",
        "getinfo-devdescr",
        "getinfo-devurl",
    ] {
        let r = plugin(None, op, None, &[]);
        assert_eq!(r.code, 0, "{op}");
        assert!(!r.stdout.is_empty(), "{op}");
    }
    let r = plugin(None, "getinfo-xml", None, &[]);
    assert_eq!(r.code, 0);
    for name in ["hostlist", "delimeter", "key_file", "socket", "timeout"] {
        assert!(
            r.stdout.contains(&format!("<parameter name=\"{name}\"")),
            "{name}"
        );
    }
    match common::xmllint(&r.stdout) {
        Some(result) => result.unwrap(),
        None => eprintln!("note: xmllint is not installed; getinfo-xml not checked with it"),
    }
    let r = plugin(None, "explode", None, &[]);
    assert_eq!(r.code, 1);
}

#[test]
fn legacy_entries_use_the_original_request() {
    if !need_vm_connect("the legacy request path") {
        return;
    }
    let host = FakeHost::start(|n, req| {
        let Incoming::Raw(body) = req else {
            panic!("expected the legacy request, got {req:?}")
        };
        assert_eq!(body, &format!("off {TOKEN}"));
        match n {
            0 => Answer::Retry(RetryReason::LinkChanged),
            _ => Answer::Raw("OK"),
        }
    });
    let hostlist = format!("node1:web1 node4:{TOKEN}");
    let r = plugin(
        Some(&host),
        "off",
        Some("Node4"),
        &[("hostlist", hostlist.as_str())],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(host.seen().len(), 2, "one Retry, then OK");
    assert!(r.took >= Duration::from_secs(1), "{r:?}");
}

#[test]
fn legacy_ng_fails_and_retries_are_bounded() {
    if !need_vm_connect("the legacy request path") {
        return;
    }
    let host = FakeHost::start(|_, _| Answer::Raw("NG"));
    let hostlist = format!("node4:{TOKEN}");
    let env = [("hostlist", hostlist.as_str())];
    let r = plugin(Some(&host), "reset", Some("node4"), &env);
    assert_eq!(r.code, 1, "{r:?}");
    match &host.seen()[0] {
        Incoming::Raw(body) => assert_eq!(body, &format!("reset {TOKEN}")),
        other => panic!("{other:?}"),
    }

    let host = FakeHost::start(|_, _| Answer::Retry(RetryReason::NoHost));
    let env = [("hostlist", hostlist.as_str()), ("timeout", "3")];
    let r = plugin(Some(&host), "off", Some("node4"), &env);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.took < Duration::from_secs(6), "{r:?}");
    let n = host.seen().len();
    assert!((2..=4).contains(&n), "{n} attempts: {r:?}");
    assert!(r.stderr.contains("gave up"), "{r:?}");
}

#[test]
fn cluster_glue_lists_the_config_names_when_it_can_find_the_plugin() {
    let installed = PathBuf::from("/usr/lib/stonith/plugins/external/vm-stonith");
    let stonith = ["/usr/sbin/stonith", "/usr/bin/stonith", "/sbin/stonith"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file());
    let Some(stonith) = stonith else {
        eprintln!("note: cluster-glue's stonith is not installed; skipping");
        return;
    };
    if !installed.is_file() {
        eprintln!(
            "note: {} is not installed (this test installs nothing into system directories); \
             skipping `stonith -t external/vm-stonith -n`",
            installed.display()
        );
        return;
    }
    let mut cmd = Command::new(stonith);
    cmd.args(["-t", "external/vm-stonith", "-n"]);
    let r = run(cmd, None, LIMIT);
    assert_eq!(r.code, 0, "{r:?}");
    let names: Vec<&str> = r.stdout.split_whitespace().collect();
    assert_eq!(
        names,
        ["hostlist", "delimeter", "key_file", "socket", "timeout"]
    );
}

#[test]
fn a_terminated_plugin_stops_its_request_at_once() {
    use std::process::Stdio;
    use std::time::Instant;
    let host = FakeHost::start(|_, _| Answer::Silent);
    let mut cmd = Command::new("sh");
    cmd.arg(PLUGIN)
        .args(["off", "node2"])
        .env("FENCE_VMSTONITH", common::AGENT)
        .env("hostlist", "node2:web2")
        .env("timeout", "60")
        .env("key_file", host.key_str())
        .env("socket", host.socket_str())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let started = Instant::now();
    while host.seen().is_empty() {
        assert!(started.elapsed() < LIMIT, "the request never arrived");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let stopped = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert_eq!(status.code(), Some(1));
            break;
        }
        if stopped.elapsed() > Duration::from_secs(5) {
            let _ = child.kill();
            panic!("the plugin ignored SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("terminated"), "{stderr}");
}
