//! Sessions and abandoned requests, wire level (issue 12, items 2 and 3): no answer crosses
//! from one guest daemon life (Hello session) to the next, and a request whose requester goes
//! away is cancelled downstream, all the way to the module. The real daemon; fake guests,
//! hosts and modules.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::net::UnixListener;
use std::time::{Duration, Instant};

use common::{Daemon, Peer};
use vm_proto::client::{Client, Module, ModuleEvent};
use vm_proto::{Hello, Kind, Message, Request, Role, ServiceName};

fn request(service: &str, body: &[u8]) -> Message {
    Message::Request(Request::new(ServiceName::new(service).unwrap(), body.to_vec()).unwrap())
}

fn guest_hello(session: u64) -> Message {
    Message::Hello(Hello::current(Role::GuestDaemon, session))
}

fn host_hello(session: u64) -> Message {
    Message::Hello(Hello::current(Role::HostDaemon, session))
}

/// The module's events for `window`: deliveries (id, body) and cancelled ids.
fn module_events(module: &mut Module, window: Duration) -> (Vec<(u64, Vec<u8>)>, Vec<u64>) {
    let (mut delivered, mut cancelled) = (Vec::new(), Vec::new());
    let end = Instant::now() + window;
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        match module
            .next_event(left.max(Duration::from_millis(1)))
            .unwrap()
        {
            Some(ModuleEvent::Deliver(d)) => delivered.push((d.id, d.deliver.body().to_vec())),
            Some(ModuleEvent::Cancel { id }) => cancelled.push(id),
            None => break,
        }
    }
    (delivered, cancelled)
}

/// Item 2, host side. A guest daemon restarts behind the same channel (QEMU's socket stays
/// connected), says Hello with a new session and numbers its requests from 1 again. The
/// request its previous life had in flight under id 1 must be cancelled at the module, and the
/// module's late answer to it (a legacy `OK` for another target) must not reach the new life's
/// request 1.
#[test]
fn a_restarted_guest_daemon_never_gets_an_answer_meant_for_its_previous_life() {
    let d = Daemon::host(&[]);
    let mut module = Module::register(&d.socket, "stonith", Duration::from_secs(5)).unwrap();
    let mut g = d.guest_peer("g1");
    g.send(&guest_hello(0xA1), 0);
    assert_eq!(g.recv().kind(), Kind::Hello, "the host answers a Hello");
    g.send(&request("stonith", b"off g2"), 1);
    let old = module
        .next_delivery(Duration::from_secs(5))
        .unwrap()
        .unwrap();
    // the guest daemon's next life
    g.send(&guest_hello(0xB2), 0);
    assert_eq!(
        g.recv().kind(),
        Kind::Hello,
        "the host answers the new Hello"
    );
    g.send(&request("stonith", b"status g3"), 1);
    let (delivered, cancelled) = module_events(&mut module, Duration::from_secs(2));
    assert_eq!(
        delivered.len(),
        1,
        "the new request is delivered: {delivered:?}"
    );
    let new_id = delivered[0].0;
    assert_eq!(delivered[0].1, b"status g3");
    // the module answers the old request late, then the new one
    module.reply(old.id, b"OK").unwrap();
    module.reply(new_id, b"NG").unwrap();
    let f = g.recv_kind(Kind::Reply);
    assert_eq!(f.id(), 1);
    let Message::Reply(r) = f.message().unwrap() else {
        panic!()
    };
    assert_eq!(
        r.body(),
        b"NG",
        "the new life's request 1 got the answer meant for the previous life's request 1"
    );
    assert!(
        g.try_recv(Duration::from_millis(300)).is_none(),
        "exactly one answer"
    );
    assert_eq!(
        cancelled,
        vec![old.id],
        "the previous life's request is cancelled at the module"
    );
    assert_eq!(d.status()["pending"], 0);
}

/// Accept the guest daemon's connection to its "port" and read its Hello.
fn accept_host_side(listener: &UnixListener) -> Peer {
    let (stream, _) = listener.accept().unwrap();
    let mut p = Peer::new(stream);
    assert_eq!(p.recv().kind(), Kind::Hello);
    p
}

/// A guest daemon with a host side that has introduced itself.
fn guest_with_host() -> (Daemon, Peer) {
    let (d, listener) = Daemon::guest(&["--request-timeout", "2"]);
    let mut host = accept_host_side(&listener);
    host.send(&host_hello(7), 0);
    d.wait_for(
        || {
            Client::connect(&d.socket, Role::Client)
                .and_then(|mut c| c.status(Duration::from_secs(2)))
                .is_ok_and(|s| s.contains(&format!("{:016x}", 7)))
        },
        "the host Hello to be taken in",
    );
    (d, host)
}

/// Item 2, guest side. The host sees each guest daemon life's link ids; a restarted guest
/// daemon that numbered from 1 again would reuse the ids of requests its previous life may
/// still have in flight there (answers already on the wire when the host learnt of the
/// restart). Two lives of the daemon must not start from the same id.
#[test]
fn guest_daemon_lives_do_not_reuse_link_ids() {
    let mut first_ids = Vec::new();
    for _life in 0..2 {
        let (d, mut host) = guest_with_host();
        let _ = Client::connect(&d.socket, Role::Client)
            .unwrap()
            .send_request_only("stonith", b"off g2")
            .unwrap();
        first_ids.push(host.recv_kind(Kind::Request).id());
    }
    assert_ne!(
        first_ids[0], first_ids[1],
        "two lives of the guest daemon started their link ids at the same value"
    );
}

/// Item 3, guest side: a client that closes its connection with a request in flight abandons
/// it; the guest daemon must send Cancel for it to the host (docs/protocol.md §10), which
/// passes it on to the module.
#[test]
fn a_client_that_goes_away_cancels_its_request_at_the_host() {
    let (d, mut host) = guest_with_host();
    let mut c = Client::connect(&d.socket, Role::Client).unwrap();
    let _ = c.send_request_only("stonith", b"off g2").unwrap();
    let link_id = host.recv_kind(Kind::Request).id();
    drop(c);
    let f = host
        .try_recv(Duration::from_secs(3))
        .expect("a Cancel after the client went away");
    assert_eq!(
        (f.kind(), f.id()),
        (Kind::Cancel, link_id),
        "Cancel for the abandoned request"
    );
}

/// Item 3, guest side: when the guest daemon's own bound passes it answers Error Timeout
/// upstream and must send Cancel downstream (§10), or the module may still act long after the
/// caller recorded a failure.
#[test]
fn a_request_the_guest_daemon_times_out_is_cancelled_at_the_host() {
    let (d, mut host) = guest_with_host(); // --request-timeout 2
    let mut c = Client::connect(&d.socket, Role::Client).unwrap();
    let _ = c.send_request_only("stonith", b"off g2").unwrap();
    let link_id = host.recv_kind(Kind::Request).id();
    let f = host
        .try_recv(Duration::from_secs(5))
        .expect("a Cancel when the guest daemon's bound passed");
    assert_eq!((f.kind(), f.id()), (Kind::Cancel, link_id));
    drop(c);
}

/// Item 3, host side: a guest link that closes (guest daemon or QEMU gone) with requests in
/// flight must cancel them at the module: nobody is left to receive the answer, and an off or
/// on carried out anyway could complete long after the guest cluster recorded a failure.
#[test]
fn a_guest_link_that_closes_cancels_its_requests_at_the_module() {
    let d = Daemon::host(&[]);
    let mut module = Module::register(&d.socket, "stonith", Duration::from_secs(5)).unwrap();
    let mut g = d.guest_peer("g1");
    g.send(&guest_hello(0xC3), 0);
    g.send(&request("stonith", b"off g2"), 1);
    let delivery = module
        .next_delivery(Duration::from_secs(5))
        .unwrap()
        .unwrap();
    drop(g);
    let (delivered, cancelled) = module_events(&mut module, Duration::from_secs(3));
    assert!(delivered.is_empty(), "{delivered:?}");
    assert_eq!(
        cancelled,
        vec![delivery.id],
        "the closed link's request is cancelled at the module"
    );
}

/// Item 2, when the new session is not seen: a guest daemon of an older version (link ids from
/// 1 in every life) restarts and its Hello is lost (e.g. inside a frame its previous life never
/// finished). Its request 1 then reuses an id still in flight on the link; the older request
/// must be cancelled, and its late answer must not reach the new one.
#[test]
fn a_request_reusing_an_id_in_flight_replaces_the_old_one() {
    let d = Daemon::host(&[]);
    let mut module = Module::register(&d.socket, "stonith", Duration::from_secs(5)).unwrap();
    let mut g = d.guest_peer("g1");
    g.send(&request("stonith", b"off g2"), 1);
    let old = module
        .next_delivery(Duration::from_secs(5))
        .unwrap()
        .unwrap();
    g.send(&request("stonith", b"status g3"), 1);
    let (delivered, cancelled) = module_events(&mut module, Duration::from_secs(2));
    assert_eq!(delivered.len(), 1, "{delivered:?}");
    module.reply(old.id, b"OK").unwrap();
    module.reply(delivered[0].0, b"NG").unwrap();
    let f = g.recv_kind(Kind::Reply);
    let Message::Reply(r) = f.message().unwrap() else {
        panic!()
    };
    assert_eq!(
        (f.id(), r.body()),
        (1, &b"NG"[..]),
        "request 1 got the answer meant for the earlier request 1"
    );
    assert!(g.try_recv(Duration::from_millis(300)).is_none());
    assert_eq!(cancelled, vec![old.id]);
}
