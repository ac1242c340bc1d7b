//! Guest mode, wire level: the real daemon with `--port` on a unix socket where the test plays
//! the host side; clients through the protocol crate's client API.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::net::UnixListener;
use std::time::Duration;

use common::{Daemon, Peer};
use vm_proto::client::{Client, ClientError};
use vm_proto::{Hello, Kind, Message, Pong, Reply, RetryReason, Role};

/// Accept the guest daemon's connection to its "port" and read its Hello.
fn accept_host_side(listener: &UnixListener) -> Peer {
    let (stream, _) = listener.accept().unwrap();
    let mut p = Peer::new(stream);
    let hello = p.recv();
    assert_eq!(hello.kind(), Kind::Hello);
    let Message::Hello(h) = hello.message().unwrap() else {
        panic!()
    };
    assert_eq!(h.role(), Role::GuestDaemon);
    p
}

fn host_hello(session: u64) -> Message {
    Message::Hello(Hello::current(Role::HostDaemon, session))
}

/// Wait until the guest daemon has taken in the host side's Hello `session` (until then it
/// answers requests "retry, no host", correctly, but not what a test wants to exercise).
fn wait_host_known(d: &Daemon, session: u64) {
    let want = format!("{session:016x}");
    d.wait_for(
        || {
            Client::connect(&d.socket, Role::Client)
                .and_then(|mut c| c.status(Duration::from_secs(2)))
                .is_ok_and(|s| s.contains(&want))
        },
        "the host Hello to be taken in",
    );
}

#[test]
fn ping_and_requests_are_relayed_to_the_host_and_answered() {
    let (d, listener) = Daemon::guest(&[]);
    let mut host = accept_host_side(&listener);
    host.send(&host_hello(1), 0);
    wait_host_known(&d, 1);
    let socket = d.socket.clone();
    let ping = std::thread::spawn(move || {
        let mut c = Client::connect(&socket, Role::Client).unwrap();
        c.ping(Duration::from_secs(10)).map(|p| p.host().to_owned())
    });
    let f = host.recv_kind(Kind::Ping);
    host.send(&Message::Pong(Pong::new("hx", Vec::new()).unwrap()), f.id());
    assert_eq!(ping.join().unwrap().unwrap(), "hx");

    // 20 concurrent clients: each gets its own answer
    let clients: Vec<_> = (0..20)
        .map(|i| {
            let socket = d.socket.clone();
            std::thread::spawn(move || {
                let mut c = Client::connect(&socket, Role::Client).unwrap();
                let body = format!("req-{i}");
                let answer = c
                    .request("stonith", body.as_bytes(), Duration::from_secs(10))
                    .unwrap();
                assert_eq!(answer, format!("answer-to-{body}").into_bytes());
            })
        })
        .collect();
    for _ in 0..20 {
        let f = host.recv_kind(Kind::Request);
        let Message::Request(r) = f.message().unwrap() else {
            panic!()
        };
        let answer = format!("answer-to-{}", String::from_utf8_lossy(r.body()));
        host.send(
            &Message::Reply(Reply::new(answer.into_bytes()).unwrap()),
            f.id(),
        );
    }
    for c in clients {
        c.join().unwrap();
    }
}

#[test]
fn a_new_host_side_makes_waiting_clients_retry() {
    let (d, listener) = Daemon::guest(&[]);
    let mut host = accept_host_side(&listener);
    host.send(&host_hello(1), 0);
    wait_host_known(&d, 1);
    let socket = d.socket.clone();
    let waiting = std::thread::spawn(move || {
        let mut c = Client::connect(&socket, Role::Client).unwrap();
        c.request("stonith", b"off g2", Duration::from_secs(10))
    });
    let _ = host.recv_kind(Kind::Request);
    // the host side changes (e.g. the guest was live-migrated): a Hello with a new session
    host.send(&host_hello(2), 0);
    match waiting.join().unwrap() {
        Err(ClientError::Retry { reason, .. }) => assert_eq!(reason, RetryReason::LinkChanged),
        other => panic!("expected Retry LinkChanged, got {other:?}"),
    }
}

#[test]
fn when_the_host_side_goes_away_clients_are_told_and_the_daemon_reconnects() {
    let (mut d, listener) = Daemon::guest(&[]);
    let mut host = accept_host_side(&listener);
    host.send(&host_hello(1), 0);
    wait_host_known(&d, 1);
    let socket = d.socket.clone();
    let waiting = std::thread::spawn(move || {
        let mut c = Client::connect(&socket, Role::Client).unwrap();
        c.request("stonith", b"x", Duration::from_secs(10))
    });
    let _ = host.recv_kind(Kind::Request);
    drop(host); // host daemon gone
    match waiting.join().unwrap() {
        Err(ClientError::Retry { reason, .. }) => assert_eq!(reason, RetryReason::LinkChanged),
        other => panic!("expected Retry LinkChanged, got {other:?}"),
    }
    // no host: an immediate "retry", never a hang (unless it already reconnected)
    let mut c = Client::connect(&d.socket, Role::Client).unwrap();
    match c.ping(Duration::from_secs(5)) {
        Err(ClientError::Retry { reason, .. }) => assert_eq!(reason, RetryReason::NoHost),
        Err(ClientError::Timeout { .. }) => {}
        other => panic!("expected Retry NoHost, got {other:?}"),
    }
    // the daemon comes back by itself when a host side is there again
    let mut host = accept_host_side(&listener);
    host.send(&host_hello(3), 0);
    wait_host_known(&d, 3);
    let socket = d.socket.clone();
    let ping = std::thread::spawn(move || {
        let mut c = Client::connect(&socket, Role::Client).unwrap();
        c.ping(Duration::from_secs(10)).map(|p| p.host().to_owned())
    });
    let f = host.recv_kind(Kind::Ping);
    host.send(&Message::Pong(Pong::new("h2", Vec::new()).unwrap()), f.id());
    assert_eq!(ping.join().unwrap().unwrap(), "h2");
    assert!(d.alive());
    assert!(d.log_text().contains("host side gone"));
}

#[test]
fn vm_connect_exit_codes() {
    let (d, listener) = Daemon::guest(&[]);
    let bin = env!("CARGO_BIN_EXE_vm-connect");
    let run = |args: &[&str]| {
        std::process::Command::new(bin)
            .arg("--socket")
            .arg(&d.socket)
            .args(args)
            .output()
            .unwrap()
    };
    let mut host = accept_host_side(&listener);
    host.send(&host_hello(1), 0);
    wait_host_known(&d, 1);
    // answered: 0, body on stdout
    let h = std::thread::spawn(move || {
        let f = host.recv_kind(Kind::Request);
        host.send(&Message::Reply(Reply::new(b"OK".to_vec()).unwrap()), f.id());
        let f = host.recv_kind(Kind::Request);
        host.send(
            &Message::Error(vm_proto::ErrorMsg::truncated(
                vm_proto::ErrorCode::Forbidden,
                "no",
            )),
            f.id(),
        );
        host
    });
    let out = run(&["-t", "stonith", "-r", "status g1"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "OK\n");
    let out = run(&["-t", "stonith", "-r", "off g1"]);
    assert_eq!(out.status.code(), Some(4));
    let host = h.join().unwrap();
    // host never answers: timeout 3
    let out = run(&["--timeout", "1", "-t", "stonith", "-r", "x"]);
    assert_eq!(out.status.code(), Some(3));
    // host gone: retry 2
    drop(host);
    std::thread::sleep(Duration::from_millis(300));
    let out = run(&["-t", "stonith", "-r", "x"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // no daemon: 5; usage: 64
    let out = std::process::Command::new(bin)
        .args(["--socket", "/nonexistent/x.sock", "ping"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5));
    // what failed, why (the OS's reason), and what to do
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot connect to /nonexistent/x.sock: No such file or directory")
            && stderr.contains("--socket"),
        "{stderr}"
    );
    let out = run(&["-t", "stonith"]);
    assert_eq!(out.status.code(), Some(64));
    let out = run(&["--bogus"]);
    assert_eq!(out.status.code(), Some(64));
}

#[test]
fn a_port_that_cannot_be_opened_fails_the_start_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vm-connectd"))
        .args(["-t", "guest", "--port"])
        .arg(dir.path().join("missing-port"))
        .arg("--socket")
        .arg(dir.path().join("s.sock"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    // which port, what --port is for, and the OS's reason
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Cannot open the port")
            && stderr.contains("missing-port")
            && stderr.contains("--port names the virtio-serial port")
            && stderr.contains("No such file or directory"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("s.sock").exists(),
        "no client socket is left behind"
    );
}

/// A host side that died mid-frame (40 bytes of a 128-byte frame) and a new one that says
/// Hello: after the stall timeout the guest daemon gives the partial frame up and finds the
/// Hello that its "payload" had swallowed (nothing else is sent to release it).
#[test]
fn a_stalled_partial_frame_from_the_host_is_given_up() {
    let (d, listener) = Daemon::guest(&[]);
    let mut host = accept_host_side(&listener);
    let torn = vm_proto::Frame::new(Kind::Reply, 5, vec![7; 100])
        .unwrap()
        .to_bytes();
    let mut bytes = torn[..40].to_vec();
    bytes.extend(host_hello(7).to_frame(0).to_bytes());
    host.send_raw(&bytes);
    wait_host_known(&d, 7);
    d.wait_for(
        || {
            d.log_text()
                .contains("the stream ended or stalled inside a frame")
        },
        "the truncated frame in the log",
    );
}
