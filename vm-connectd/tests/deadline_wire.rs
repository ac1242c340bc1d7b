//! A deadline carried in the request (protocol version 2, docs/protocol.md §5, §10), wire
//! level: the real daemons, fake guests, hosts and modules. Each relay bounds a request by the
//! requester's remaining time, up to its own `--request-timeout`, and passes on what is left to
//! a peer that speaks version 2; a version-1 peer still gets version-1 frames and the fixed
//! timers; a deadline out of bounds is refused.
//!
//! The time bounds asserted are loose on purpose (a timeout at a few seconds, not at the
//! relay's fixed 60 or 65 s): they tell which timer fired, not how fast the machine is.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

use common::{Daemon, Peer};
use vm_proto::client::{Client, ClientError, Module, ModuleEvent};
use vm_proto::{
    ErrorCode, Frame, Hello, Kind, Message, Register, Reply, Request, Role, ServiceName, TimeoutMs,
};

fn service(name: &str) -> ServiceName {
    ServiceName::new(name).unwrap()
}

/// A request for `svc`, carrying `ms` of remaining time (version 2) or none (version 1).
fn request(svc: &str, body: &[u8], ms: Option<u32>) -> Message {
    let r = Request::new(service(svc), body.to_vec()).unwrap();
    Message::Request(r.with_timeout(ms.map(|ms| TimeoutMs::new(ms).unwrap())))
}

fn v1_hello(role: Role) -> Message {
    Message::Hello(Hello::new(1, 1, role, 0xA1, "version 1").unwrap())
}

/// The Error a frame carries, or a panic naming what came instead.
fn error_of(f: &Frame) -> (ErrorCode, String) {
    match f.message().unwrap() {
        Message::Error(e) => (e.code(), e.message().to_owned()),
        other => panic!("expected an Error, got {other:?}"),
    }
}

/// Host daemon with its default 60 s bound: a request that carries 1.5 s is answered Error
/// Timeout by the host daemon at that deadline (not at 60 s); the module, which speaks
/// version 2, gets the remaining time in the Deliver and then a Cancel.
#[test]
fn a_short_deadline_times_out_at_the_host_daemon_and_the_module_gets_the_time_left() {
    let d = Daemon::host(&[]);
    let mut module = Module::register(&d.socket, "slow", Duration::from_secs(5)).unwrap();
    assert_eq!(
        module.peer_hello().map(Hello::negotiated),
        Some(Some(2)),
        "the host daemon tells a version-2 module that it speaks version 2"
    );
    let mut g = d.guest_peer("g1");
    g.send(&Message::Hello(Hello::current(Role::GuestDaemon, 5)), 0);
    let sent = Instant::now();
    g.send(&request("slow", b"x", Some(1500)), 9);
    let delivery = module
        .next_delivery(Duration::from_secs(5))
        .unwrap()
        .unwrap();
    let left = delivery
        .deliver
        .timeout()
        .expect("the Deliver carries the time left");
    assert!(
        left.as_millis() <= 1300 && left.as_millis() >= 500,
        "the module gets the time left less the relay's margin: {left}"
    );
    let f = g.recv_kind(Kind::Error);
    let took = sent.elapsed();
    assert_eq!(f.id(), 9);
    let (code, message) = error_of(&f);
    assert_eq!(code, ErrorCode::Timeout);
    assert!(
        message.contains("within the request's deadline (1500 ms)") && message.contains("h1"),
        "{message}"
    );
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_secs(30),
        "Error Timeout after {took:?}: at the carried deadline, not the fixed 60 s"
    );
    let mut cancelled = false;
    while let Some(ev) = module.next_event(Duration::from_secs(3)).unwrap() {
        if ev == (ModuleEvent::Cancel { id: delivery.id }) {
            cancelled = true;
            break;
        }
    }
    assert!(cancelled, "the module is told the request was given up");
}

/// Version-1 peers keep working with the fixed timers: a module that offered only version 1
/// gets no Hello and version-1 Delivers (no deadline); a version-1 guest's request is bounded
/// by `--request-timeout`; and a carried deadline longer than `--request-timeout` is capped.
#[test]
fn version_1_peers_get_version_1_frames_and_the_fixed_timer() {
    let d = Daemon::host(&["--request-timeout", "2"]);
    // a version-1 module, raw
    let mut m = Peer::new(UnixStream::connect(&d.socket).unwrap());
    m.send(&v1_hello(Role::Module), 0);
    m.send(&Message::Register(Register::new(service("old"))), 1);
    let f = m.recv();
    assert_eq!(
        (f.kind(), f.id()),
        (Kind::Reply, 1),
        "registered, and no Hello was sent to a version-1 module first"
    );
    let mut g = d.guest_peer("g1");
    g.send(&v1_hello(Role::GuestDaemon), 0);
    assert_eq!(g.recv().kind(), Kind::Hello);
    // answered: the relay works as before
    g.send(&request("old", b"one", None), 1);
    let f = m.recv_kind(Kind::Deliver);
    assert_eq!(f.version(), 1);
    let Message::Deliver(deliver) = f.message().unwrap() else {
        panic!()
    };
    assert_eq!((deliver.body(), deliver.timeout()), (&b"one"[..], None));
    m.send(&Message::Reply(Reply::new(b"OK".to_vec()).unwrap()), f.id());
    let f = g.recv_kind(Kind::Reply);
    assert_eq!(f.id(), 1);
    // unanswered: Error Timeout at the fixed bound, as before
    let sent = Instant::now();
    g.send(&request("old", b"two", None), 2);
    assert_eq!(m.recv_kind(Kind::Deliver).version(), 1);
    let f = g.recv_kind(Kind::Error);
    let (code, message) = error_of(&f);
    assert_eq!((f.id(), code), (2, ErrorCode::Timeout));
    assert_eq!(message, "the old module did not answer in time");
    assert!(sent.elapsed() >= Duration::from_millis(1900));
    // a version-2 guest asking for an hour gets the relay's 2 s; the version-1 module still
    // gets a version-1 Deliver
    g.send(&request("old", b"three", Some(3_600_000)), 3);
    assert_eq!(m.recv_kind(Kind::Deliver).version(), 1);
    let f = g.recv_kind(Kind::Error);
    assert_eq!((f.id(), error_of(&f).0), (3, ErrorCode::Timeout));
    assert!(d.log_text().contains("version=1"), "{}", d.log_text());
}

/// A version-2 Request whose deadline is 0, over a day, or missing is malformed: the host
/// daemon delivers nothing, counts an offence, and keeps serving the link; the guest daemon
/// answers such a request from a local client Error BadRequest.
#[test]
fn deadlines_out_of_bounds_are_refused() {
    let d = Daemon::host(&[]);
    let mut module = Module::register(&d.socket, "svc", Duration::from_secs(5)).unwrap();
    let mut g = d.guest_peer("g1");
    g.send(&Message::Hello(Hello::current(Role::GuestDaemon, 6)), 0);
    let (_, v1) = request("svc", b"x", None).encode();
    let v2 = |tail: &[u8]| {
        let mut p = v1.clone();
        p.extend_from_slice(tail);
        Frame::new(Kind::Request, 40, p)
            .unwrap()
            .with_version(2)
            .unwrap()
            .to_bytes()
    };
    for bad in [
        v2(&0u32.to_be_bytes()),
        v2(&86_400_001u32.to_be_bytes()),
        v2(&u32::MAX.to_be_bytes()),
        v2(&[]),
        v2(&[0, 0, 0x13, 0x88, 0]),
    ] {
        g.send_raw(&bad);
    }
    // the link still serves a sound request, which is the first the module sees
    g.send(&request("svc", b"ok", Some(5000)), 41);
    let delivery = module
        .next_delivery(Duration::from_secs(5))
        .unwrap()
        .unwrap();
    assert_eq!(delivery.deliver.body(), b"ok");
    let status = d.status();
    assert_eq!(status["guests"][0]["offences"], 5, "{status}");
    let log = d.log_text();
    assert!(
        log.contains("Request.timeout_ms is 0 ms, which is not within 1 to 86400000 ms"),
        "{log}"
    );

    // guest side: a local client's request with a deadline of 0 is answered BadRequest
    let (gd, listener) = Daemon::guest(&[]);
    let (stream, _) = listener.accept().unwrap();
    let mut host = Peer::new(stream);
    assert_eq!(host.recv().kind(), Kind::Hello);
    host.send(&Message::Hello(Hello::current(Role::HostDaemon, 8)), 0);
    let mut c = Peer::new(UnixStream::connect(&gd.socket).unwrap());
    c.send(&Message::Hello(Hello::current(Role::Client, 1)), 0);
    assert_eq!(
        c.recv().kind(),
        Kind::Hello,
        "a version-2 client is greeted"
    );
    let mut p = v1.clone();
    p.extend_from_slice(&0u32.to_be_bytes());
    let frame = Frame::new(Kind::Request, 7, p).unwrap().with_version(2);
    c.send_raw(&frame.unwrap().to_bytes());
    let f = c.recv_kind(Kind::Error);
    assert_eq!((f.id(), error_of(&f).0), (7, ErrorCode::BadRequest));
}

/// Accept the guest daemon's connection to its "port", read its Hello, say ours.
fn host_side(listener: &UnixListener, hello: Hello) -> Peer {
    let (stream, _) = listener.accept().unwrap();
    let mut p = Peer::new(stream);
    assert_eq!(p.recv().kind(), Kind::Hello);
    p.send(&Message::Hello(hello), 0);
    p
}

/// Wait until the guest daemon has a host link.
fn wait_host(d: &Daemon) {
    d.wait_for(
        || {
            Client::connect(&d.socket, Role::Client)
                .and_then(|mut c| c.status(Duration::from_secs(2)))
                .is_ok_and(|s| s.contains("\"host_session\":\""))
        },
        "the host Hello to be taken in",
    );
}

/// Guest daemon with its default 65 s bound and a version-2 host: a client's request carries
/// its timeout; the guest daemon passes on the time left (less its margin) and, the host never
/// answering, gives up at the client's deadline: the client gets that Error Timeout, naming the
/// guest's relay, within its grace (not its own timeout), and vm-connect exits 3 with it.
#[test]
fn the_guest_daemon_bounds_a_request_by_its_deadline_and_passes_on_the_rest() {
    let (d, listener) = Daemon::guest(&[]);
    let mut host = host_side(&listener, Hello::current(Role::HostDaemon, 11));
    wait_host(&d);
    let socket = d.socket.clone();
    let asked = std::thread::spawn(move || {
        let mut c = Client::connect(&socket, Role::Client).unwrap();
        let t = Instant::now();
        (
            c.request("stonith", b"off g2", Duration::from_secs(2)),
            t.elapsed(),
        )
    });
    let f = host.recv_kind(Kind::Request);
    assert_eq!(f.version(), 2);
    let Message::Request(r) = f.message().unwrap() else {
        panic!()
    };
    let left = r
        .timeout()
        .expect("the host gets the time left")
        .as_millis();
    assert!((1000..=1800).contains(&left), "{left}");
    let (result, took) = asked.join().unwrap();
    match result {
        Err(ClientError::Remote {
            code: ErrorCode::Timeout,
            message,
        }) => assert!(message.contains("at the guest's vm-connectd"), "{message}"),
        other => panic!("expected the guest relay's Error Timeout, got {other:?}"),
    }
    assert!(took < Duration::from_secs(30), "{took:?}");
    let cancel = host.recv_kind(Kind::Cancel);
    assert_eq!(cancel.id(), f.id());

    // vm-connect: the relay's timeout is its timeout, exit 3, the hop named
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vm-connect"))
        .arg("--socket")
        .arg(&d.socket)
        .args(["--timeout", "1", "-t", "stonith", "-r", "off g2"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains(
            "no answer within 1 s: the host did not answer within the request's deadline"
        ),
        "{stderr}"
    );
}

/// A guest daemon whose host offered version 1 only forwards version-1 requests (no
/// deadline), which the version-1 host could not decode otherwise.
#[test]
fn a_version_1_host_gets_version_1_requests() {
    let (d, listener) = Daemon::guest(&["--request-timeout", "2"]);
    let mut host = host_side(
        &listener,
        Hello::new(1, 1, Role::HostDaemon, 12, "old host").unwrap(),
    );
    wait_host(&d);
    let socket = d.socket.clone();
    let asked = std::thread::spawn(move || {
        let mut c = Client::connect(&socket, Role::Client).unwrap();
        c.request("stonith", b"status g2", Duration::from_secs(20))
    });
    let f = host.recv_kind(Kind::Request);
    assert_eq!(f.version(), 1);
    let Message::Request(r) = f.message().unwrap() else {
        panic!()
    };
    assert_eq!(r.timeout(), None);
    host.send(&Message::Reply(Reply::new(b"on".to_vec()).unwrap()), f.id());
    assert_eq!(asked.join().unwrap().unwrap(), b"on");
}
