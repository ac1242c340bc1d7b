//! Guest liveness, wire level (issue 16, docs/protocol.md §15): the real daemon in host mode
//! heartbeating fake guest daemons, with an `attrd_updater` of the test's own on its `PATH`
//! that records what would be published (the multi-node tier publishes into a real cluster);
//! and the real daemon in guest mode answering heartbeats with its health checks.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{BIN, Daemon, Peer, executable};
use vm_proto::{Alive, Hello, Kind, Message, Role};

fn guest_hello(session: u64) -> Message {
    Message::Hello(Hello::current(Role::GuestDaemon, session))
}

fn alive(failing: &[&str]) -> Message {
    Message::Alive(Alive::new(failing.iter().map(|s| (*s).to_owned()).collect()).unwrap())
}

/// A directory with an `attrd_updater` that appends its arguments to `calls.log` there.
fn fake_attrd() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("calls.log");
    executable(
        &dir.path().join("attrd_updater"),
        &format!("#!/bin/sh\necho \"$*\" >> '{}'\n", log.display()),
    );
    dir
}

fn calls(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("calls.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// `vm-connectd status --guest DOMAIN`: (exit code, stdout).
fn status_guest(d: &Daemon, domain: &str) -> (i32, String) {
    let out = Command::new(BIN)
        .args(["status", "--socket"])
        .arg(&d.socket)
        .args(["--guest", domain])
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn liveness_of(d: &Daemon, domain: &str) -> String {
    d.status()["guests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["domain"] == domain)
        .map(|g| g["liveness"].as_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// Answers every heartbeat `g` gets for `window` with `answer`; returns how many.
fn answer_heartbeats(g: &mut Peer, window: Duration, answer: &Message) -> usize {
    let end = Instant::now() + window;
    let mut n = 0;
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        match g.try_recv(left.max(Duration::from_millis(1))) {
            Some(f) if f.kind() == Kind::Heartbeat => {
                g.send(answer, f.id());
                n += 1;
            }
            Some(_) => {}
            None => break,
        }
    }
    n
}

fn wait_liveness(d: &Daemon, domain: &str, want: &str) {
    d.wait_for(
        || liveness_of(d, domain) == want,
        &format!("{domain} to be {want}"),
    );
}

/// The whole life of one guest's liveness on a host, with what is published at each step:
/// unknown until its guest daemon answers (no heartbeat before its Hello, an answer to no
/// heartbeat does not count), answering, written once however many heartbeats it answers;
/// silent once it stops answering for the timeout; unhealthy when its answer lists failing
/// checks; unknown again for a new guest daemon session; deleted when the link closes.
#[test]
fn a_guests_liveness_follows_its_answers_and_is_published_on_change() {
    let attrd = fake_attrd();
    let d = Daemon::host_with(
        &["--heartbeat-interval", "0.2", "--liveness-timeout", "1"],
        &[attrd.path()],
    );
    let mut g = d.guest_peer("g1");
    // no guest daemon has spoken: no heartbeat, liveness unknown
    assert!(
        g.try_recv(Duration::from_millis(700)).is_none(),
        "a heartbeat before the guest daemon's Hello"
    );
    let (code, out) = status_guest(&d, "g1");
    assert_eq!(code, 0);
    assert!(out.starts_with("up:unknown:"), "{out}");
    assert_eq!(liveness_of(&d, "g1"), "unknown");

    g.send(&guest_hello(7), 0);
    assert_eq!(g.recv().kind(), Kind::Hello);
    let hb = g.recv_kind(Kind::Heartbeat);
    assert_ne!(hb.id(), 0);
    // an answer to a heartbeat never sent does not count
    g.send(&alive(&[]), hb.id() + 1000);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(liveness_of(&d, "g1"), "unknown");
    g.send(&alive(&[]), hb.id());
    wait_liveness(&d, "g1", "answering");
    // answering the same heartbeat again, differently, counts for nothing: a guest cannot
    // flap its state (and the published attribute) at its frame rate
    for _ in 0..20 {
        g.send(&alive(&[]), hb.id());
        g.send(&alive(&["db.service"]), hb.id());
    }
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(liveness_of(&d, "g1"), "answering");
    let n = answer_heartbeats(&mut g, Duration::from_millis(1500), &alive(&[]));
    assert!(n >= 4, "only {n} heartbeats in 1.5 s at 0.2 s");
    assert_eq!(liveness_of(&d, "g1"), "answering");
    let (_, out) = status_guest(&d, "g1");
    assert!(out.starts_with("up:answering:"), "{out}");

    // silent: no answer for more than the timeout (its start is at least the timeout after
    // the last answer, in the status's whole seconds)
    wait_liveness(&d, "g1", "silent");
    let g1 = d.status()["guests"][0].clone();
    let (last, silent) = (
        g1["last_alive"].as_u64().unwrap(),
        g1["liveness_since"].as_u64().unwrap(),
    );
    assert!(silent > last, "silent at {silent}, last answer at {last}");
    let (code, out) = status_guest(&d, "g1");
    assert_eq!(code, 0);
    let since: u64 = out
        .trim()
        .strip_prefix("up:silent:")
        .unwrap()
        .parse()
        .unwrap();
    vm_proto::liveness::parse(out.trim()).unwrap();

    // it answers again, listing a failing check: unhealthy, and the check is shown
    let _ = answer_heartbeats(&mut g, Duration::from_millis(500), &alive(&["db.service"]));
    wait_liveness(&d, "g1", "unhealthy");
    let (_, out) = status_guest(&d, "g1");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("up:unhealthy:"), "{out}");
    assert_eq!(lines[1], "failing: db.service");

    // a new guest daemon session: nothing known of it yet
    g.send(&guest_hello(8), 0);
    wait_liveness(&d, "g1", "unknown");

    // an unknown guest has no link; the link closing deletes the attribute
    assert_eq!(status_guest(&d, "nope").0, 4);
    drop(g);
    d.wait_for(
        || calls(attrd.path()).last().map(String::as_str) == Some("--name pmkt-guest-g1 --delete"),
        "the attribute to be deleted",
    );
    let published: Vec<String> = calls(attrd.path())
        .into_iter()
        .map(|c| {
            // "--name N --update link:liveness:since" -> "link:liveness"
            c.rsplit_once(':')
                .map_or(c.clone(), |(head, _)| head.to_owned())
        })
        .collect();
    let updates: Vec<&str> = published
        .iter()
        .filter_map(|c| c.strip_prefix("--name pmkt-guest-g1 --update "))
        .collect();
    // (down:unknown while connecting may have been replaced by up:unknown before it was written)
    let updates: Vec<&str> = updates
        .into_iter()
        .filter(|u| *u != "down:unknown")
        .collect();
    assert_eq!(
        updates,
        [
            "up:unknown",
            "up:answering",
            "up:silent",
            "up:unhealthy",
            "up:unknown"
        ],
        "{:?}",
        calls(attrd.path())
    );
    assert!(
        calls(attrd.path())
            .iter()
            .any(|c| c == &format!("--name pmkt-guest-g1 --update up:silent:{since}"))
    );
}

/// A guest whose name cannot be part of an attribute name is linked and heartbeated, not
/// published (one log line); a stopping daemon deletes the attributes it wrote.
#[test]
fn unfit_names_are_not_published_and_a_stopping_daemon_deletes_its_attributes() {
    let attrd = fake_attrd();
    let mut d = Daemon::host_with(
        &["--heartbeat-interval", "0.2", "--liveness-timeout", "1"],
        &[attrd.path()],
    );
    let mut bad = d.guest_peer("g:1");
    let mut good = d.guest_peer("g2");
    for g in [&mut bad, &mut good] {
        g.send(&guest_hello(1), 0);
        let _ = answer_heartbeats(g, Duration::from_millis(500), &alive(&[]));
    }
    wait_liveness(&d, "g:1", "answering");
    wait_liveness(&d, "g2", "answering");
    d.wait_for(
        || {
            calls(attrd.path())
                .iter()
                .any(|c| c.starts_with("--name pmkt-guest-g2 --update up:answering:"))
        },
        "g2 to be published",
    );
    assert!(
        !calls(attrd.path())
            .iter()
            .any(|c| c.contains("pmkt-guest-g:1")),
        "{:?}",
        calls(attrd.path())
    );
    assert_eq!(
        d.log_text()
            .matches("cannot be part of a node attribute name")
            .count(),
        1
    );
    let pid = nix::unistd::Pid::from_raw(d.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let t0 = Instant::now();
    while d.alive() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "daemon did not stop"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        calls(attrd.path()).last().map(String::as_str),
        Some("--name pmkt-guest-g2 --delete")
    );
}

/// The guest daemon answers each heartbeat at once, with its health: a command check that
/// fails `--health-failures` times in a row is listed until it passes again; bad checks on the
/// command line are usage errors.
#[test]
fn the_guest_daemon_answers_heartbeats_with_its_failing_checks() {
    let work = tempfile::tempdir().unwrap();
    let flag = work.path().join("fail");
    let check = work.path().join("check-db");
    executable(
        &check,
        &format!("#!/bin/sh\n[ ! -e '{}' ]\n", flag.display()),
    );
    let check_arg = check.display().to_string();
    let (d, listener) = Daemon::guest(&[
        "--health-command",
        &check_arg,
        "--health-interval",
        "0.2",
        "--health-failures",
        "2",
    ]);
    let (stream, _) = listener.accept().unwrap();
    let mut host = Peer::new(stream);
    host.send(&Message::Hello(Hello::current(Role::HostDaemon, 1)), 0);
    let mut next = 10u64;
    let mut beat = |host: &mut Peer| -> Vec<String> {
        next += 1;
        host.send(&Message::Heartbeat, next);
        let f = host.recv_kind(Kind::Alive);
        assert_eq!(f.id(), next, "the answer carries the heartbeat's id");
        let Message::Alive(a) = f.message().unwrap() else {
            unreachable!()
        };
        a.failing().to_vec()
    };
    assert!(beat(&mut host).is_empty());
    std::fs::write(&flag, "").unwrap();
    let t0 = Instant::now();
    while beat(&mut host).is_empty() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "never reported failing"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(beat(&mut host), ["check-db"]);
    assert_eq!(d.status()["failing"][0], "check-db");
    std::fs::remove_file(&flag).unwrap();
    let t0 = Instant::now();
    while !beat(&mut host).is_empty() {
        assert!(t0.elapsed() < Duration::from_secs(10), "never recovered");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(d.status()["heartbeats"].as_u64().unwrap() >= 3);

    for bad in [
        &["--health-unit", "a b"][..],
        &["--health-command", "relative/check"],
        &["--health-unit", "x", "--health-command", "/bin/x"],
    ] {
        let out = Command::new(BIN)
            .args(["-t", "guest", "--port", "/nonexistent"])
            .args(bad)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {out:?}");
    }
}

/// A unit check under a `systemctl` of the test's own: failing while the unit is inactive, but
/// not while the system shuts down (`is-system-running` prints `stopping`: the guest reboots,
/// its units stop before its vm-connectd; reported failing, the host's monitor would restart a
/// guest that is only rebooting).
#[test]
fn a_unit_stopped_by_a_shutdown_is_not_a_failure() {
    let work = tempfile::tempdir().unwrap();
    let (unit, system) = (work.path().join("unit"), work.path().join("system"));
    std::fs::write(&unit, "active\n").unwrap();
    std::fs::write(&system, "running\n").unwrap();
    executable(
        &work.path().join("systemctl"),
        &format!(
            "#!/bin/sh\ncase $1 in\nis-active) [ \"$(cat '{}')\" = active ] ;;\nis-system-running) cat '{}' ;;\n*) exit 1 ;;\nesac\n",
            unit.display(),
            system.display()
        ),
    );
    let (_d, listener) = Daemon::guest_with_path(
        &[
            "--health-unit",
            "app.service",
            "--health-interval",
            "0.2",
            "--health-failures",
            "1",
        ],
        &[work.path()],
    );
    let (stream, _) = listener.accept().unwrap();
    let mut host = Peer::new(stream);
    host.send(&Message::Hello(Hello::current(Role::HostDaemon, 1)), 0);
    let mut next = 10u64;
    let mut beat = |host: &mut Peer| -> Vec<String> {
        next += 1;
        host.send(&Message::Heartbeat, next);
        let Message::Alive(a) = host.recv_kind(Kind::Alive).message().unwrap() else {
            unreachable!()
        };
        a.failing().to_vec()
    };
    let wait = |host: &mut Peer, beat: &mut dyn FnMut(&mut Peer) -> Vec<String>, want: &[&str]| {
        let t0 = Instant::now();
        while beat(host) != want {
            assert!(t0.elapsed() < Duration::from_secs(10), "never {want:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait(&mut host, &mut beat, &[]);
    // stopped by an admin (the system runs): failing
    std::fs::write(&unit, "inactive\n").unwrap();
    wait(&mut host, &mut beat, &["app.service"]);
    // stopped by a shutdown: not counted (the failing state clears, as at a pass)
    std::fs::write(&system, "stopping\n").unwrap();
    wait(&mut host, &mut beat, &[]);
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(250));
        assert!(beat(&mut host).is_empty(), "failing during the shutdown");
    }
}
