//! Streams over the guest link (docs/protocol.md §16), with the real daemons: a host
//! vm-connectd and a guest vm-connectd joined by a simulated channel (two unix sockets spliced
//! as QEMU's chardev would), a TCP client on the host's loopback endpoint standing in for
//! Pacemaker, and an echo server in the guest's place of pacemaker-remoted; and fake guests
//! speaking raw frames for the rules a hostile guest could break.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::net::UnixListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::Daemon;
use vm_proto::client::{Client, Module};
use vm_proto::{
    Hello, Kind, Message, Role, StreamCloseReason, StreamCredit, StreamData, StreamOpen,
};

/// A free loopback port (bound, then released for the daemon to take).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An echo server on loopback: every connection gets its bytes back until it closes.
fn echo_server() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut conn) = conn else { return };
            std::thread::spawn(move || {
                let mut back = conn.try_clone().unwrap();
                let _ = std::io::copy(&mut conn, &mut back);
                let _ = back.shutdown(Shutdown::Write);
            });
        }
    });
    port
}

/// The channel: accepts the host daemon's connection where QEMU would listen (`<host
/// dir>/guests/NAME`) and the guest daemon's on its `--port` socket, and copies bytes both
/// ways. Dropping the returned guard's `cut` ends both connections (the link is lost).
struct Channel {
    cut: Vec<std::os::unix::net::UnixStream>,
}

impl Channel {
    fn join(host: &Daemon, name: &str, guest_port: &UnixListener) -> Channel {
        let qemu = UnixListener::bind(host.guests_dir().join(name)).unwrap();
        let (h, _) = qemu.accept().unwrap();
        let (g, _) = guest_port.accept().unwrap();
        let cut = vec![h.try_clone().unwrap(), g.try_clone().unwrap()];
        for (mut from, mut to) in [(h.try_clone().unwrap(), g.try_clone().unwrap()), (g, h)] {
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut from, &mut to);
                let _ = to.shutdown(Shutdown::Both);
            });
        }
        // (the listener may go: QEMU's socket file stays, the daemon does not reconnect)
        std::mem::forget(qemu);
        Channel { cut }
    }

    fn cut(self) {
        for s in &self.cut {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

/// A host daemon offering g1's stream on a loopback port, a guest daemon with `guest_args`,
/// the channel between them, once the guest daemon's Hello reached the host.
fn pair(guest_args: &[&str]) -> (Daemon, Daemon, Channel, u16) {
    let port = free_port();
    let expose = format!("g1={port}");
    let host = Daemon::host(&["--expose", &expose]);
    let (guest, guest_port) = Daemon::guest(guest_args);
    let channel = Channel::join(&host, "g1", &guest_port);
    host.wait_for(
        || host.status()["guests"][0]["guest_software"] != "",
        "the guest daemon's Hello at the host",
    );
    guest.wait_for(
        || {
            Client::connect(&guest.socket, Role::Client)
                .and_then(|mut c| c.status(Duration::from_secs(2)))
                .is_ok_and(|s| s.contains("\"host_session\":\""))
        },
        "the host's Hello at the guest",
    );
    (host, guest, channel, port)
}

fn read_until_closed(s: &mut TcpStream, within: Duration) -> Vec<u8> {
    s.set_read_timeout(Some(within)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return got,
            Err(e) => panic!("the connection did not close within {within:?}: {e}"),
        }
    }
}

/// Deterministic bytes that are not a repeating pattern of a frame's size.
fn payload(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

#[test]
fn a_tcp_byte_stream_crosses_the_channel_intact_both_ways_and_ends_with_the_link() {
    let echo = echo_server();
    let target = format!("127.0.0.1:{echo}");
    let (host, guest, channel, port) = pair(&["--stream-target", &target]);
    assert_eq!(host.status()["exposed"][0]["port"], u64::from(port));

    // 4 MiB each way, far beyond both windows (64 KiB): flow control keeps it going, intact
    let data = payload(4 << 20);
    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut w = conn.try_clone().unwrap();
    let sent = data.clone();
    let writer = std::thread::spawn(move || {
        w.write_all(&sent).unwrap();
        w.shutdown(Shutdown::Write).unwrap();
    });
    let t0 = Instant::now();
    let back = read_until_closed(&mut conn, Duration::from_secs(60));
    let took = t0.elapsed();
    writer.join().unwrap();
    assert_eq!(back.len(), data.len(), "every byte came back");
    assert!(back == data, "the bytes came back unchanged and in order");
    eprintln!(
        "4 MiB each way through the channel in {took:?} ({:.1} MiB/s each way)",
        4.0 / took.as_secs_f64()
    );
    // the stream is gone on both sides once the connection closed
    host.wait_for(
        || host.status()["guests"][0]["streams"] == 0,
        "the host to forget the stream",
    );
    let gs = serde_json::from_str::<serde_json::Value>(
        &Client::connect(&guest.socket, Role::Client)
            .unwrap()
            .status(Duration::from_secs(5))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(gs["streams_opened"], 1, "{gs}");
    assert_eq!(host.status()["guests"][0]["streams_opened"], 1);

    // a stream open when the link is lost: its connection closes at once (Pacemaker then
    // reconnects, to the new host's endpoint after a migration)
    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.write_all(b"hello").unwrap();
    let mut buf = [0u8; 5];
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    conn.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hello");
    channel.cut();
    let rest = read_until_closed(&mut conn, Duration::from_secs(10));
    assert!(rest.is_empty(), "nothing after the link went");
    // and with no link, a new connection is closed at once
    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    assert!(read_until_closed(&mut conn, Duration::from_secs(10)).is_empty());
    assert!(
        host.log_text().contains("its streams' connections closed"),
        "{}",
        host.log_text()
    );
}

#[test]
fn a_guest_daemon_that_does_not_offer_streams_gets_none_and_a_dead_target_refuses() {
    // --no-streams: the guest's Hello offers 1..=2, the host opens nothing
    let (host, _guest, _channel, port) = pair(&["--no-streams"]);
    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    assert!(read_until_closed(&mut conn, Duration::from_secs(10)).is_empty());
    assert!(
        host.log_text().contains("does not offer streams"),
        "{}",
        host.log_text()
    );
    assert_eq!(host.status()["guests"][0]["streams_opened"], 0);

    // a target that does not listen: the guest refuses the stream, the connection closes
    let dead = free_port();
    let target = format!("127.0.0.1:{dead}");
    let (host, guest, _channel, port) = pair(&["--stream-target", &target]);
    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    assert!(read_until_closed(&mut conn, Duration::from_secs(10)).is_empty());
    host.wait_for(
        || host.log_text().contains("the guest closed the stream"),
        "the guest's refusal",
    );
    assert!(host.log_text().contains("refused"), "{}", host.log_text());
    assert!(
        guest
            .log_text()
            .contains("cannot connect the stream's target"),
        "{}",
        guest.log_text()
    );
}

/// Fence-like requests keep being answered while a stream saturates the same channel in both
/// directions: each completes (no request is lost, refused or timed out); their latencies are
/// measured and printed, with and without the stream, not asserted against a threshold.
#[test]
fn requests_are_answered_while_a_stream_saturates_the_channel() {
    let echo = echo_server();
    let target = format!("127.0.0.1:{echo}");
    let (host, guest, _channel, port) = pair(&["--stream-target", &target]);
    let mut module = Module::register(&host.socket, "stonith", Duration::from_secs(5)).unwrap();
    let sender = module.sender().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stop_m = Arc::clone(&stop);
    std::thread::spawn(move || {
        while !stop_m.load(Ordering::Relaxed) {
            if let Ok(Some(d)) = module.next_delivery(Duration::from_millis(200)) {
                let _ = sender.reply(d.id, b"done");
            }
        }
    });
    let requests = |n: usize| -> Vec<Duration> {
        let mut c = Client::connect(&guest.socket, Role::Client).unwrap();
        (0..n)
            .map(|i| {
                let t0 = Instant::now();
                let body = c
                    .request(
                        "stonith",
                        format!("reset n{i}").as_bytes(),
                        Duration::from_secs(20),
                    )
                    .unwrap_or_else(|e| panic!("request {i} failed: {e}"));
                assert_eq!(body, b"done");
                t0.elapsed()
            })
            .collect()
    };
    let idle = requests(50);

    // saturate: the client writes as fast as the stream takes it, the echo sends it all back,
    // and a reader drains it
    let conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let moved = Arc::new(AtomicU64::new(0));
    let (mut w, mut r) = (conn.try_clone().unwrap(), conn);
    let stop_w = Arc::clone(&stop);
    std::thread::spawn(move || {
        let chunk = payload(64 * 1024);
        while !stop_w.load(Ordering::Relaxed) {
            if w.write_all(&chunk).is_err() {
                return;
            }
        }
    });
    let moved_r = Arc::clone(&moved);
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = r.read(&mut buf) {
            if n == 0 {
                return;
            }
            moved_r.fetch_add(n as u64, Ordering::Relaxed);
        }
    });
    // wait until the stream is really flowing
    host.wait_for(
        || moved.load(Ordering::Relaxed) > 1 << 20,
        "the stream to flow",
    );
    let before = moved.load(Ordering::Relaxed);
    let t0 = Instant::now();
    let busy = requests(50);
    let during = moved.load(Ordering::Relaxed) - before;
    let secs = t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    assert!(
        during > 0,
        "the stream kept moving while the requests were answered"
    );
    let pct = |v: &[Duration], p: f64| {
        let mut v = v.to_vec();
        v.sort();
        v[((v.len() - 1) as f64 * p) as usize]
    };
    eprintln!(
        "request latency idle: p50 {:?} p99 {:?} max {:?}; under a saturating stream \
         ({:.1} MiB/s echoed): p50 {:?} p99 {:?} max {:?}",
        pct(&idle, 0.5),
        pct(&idle, 0.99),
        pct(&idle, 1.0),
        during as f64 / secs / f64::from(1 << 20),
        pct(&busy, 0.5),
        pct(&busy, 0.99),
        pct(&busy, 1.0)
    );
    assert_eq!(host.status()["guests"][0]["streams"], 1);
}

/// A fake guest against the real host daemon: the host sends no more than the credit the
/// guest granted; a credit beyond any window closes the stream (and counts as an offence);
/// a StreamOpen from a guest is refused (streams are host-initiated only).
#[test]
fn the_host_keeps_to_the_credit_and_refuses_excess_credit_and_guest_opened_streams() {
    let port = free_port();
    let expose = format!("g1={port}");
    let host = Daemon::host(&["--expose", &expose]);
    let mut g = host.guest_peer("g1");
    g.send(
        &Message::Hello(Hello::current_streams(Role::GuestDaemon, 5)),
        0,
    );
    host.wait_for(
        || host.status()["guests"][0]["guest_software"] != "",
        "the fake guest's Hello",
    );
    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let open = g.recv_kind(Kind::StreamOpen);
    let sid = open.id();
    let Message::StreamOpen(o) = open.message().unwrap() else {
        panic!()
    };
    assert_eq!(o.window(), 64 * 1024);
    // grant 1000 bytes, then the client writes 5000: exactly 1000 cross
    g.send(
        &Message::StreamCredit(StreamCredit::new(1000).unwrap()),
        sid,
    );
    conn.write_all(&payload(5000)).unwrap();
    let mut got = 0;
    while got < 1000 {
        let f = g.recv_kind(Kind::StreamData);
        assert_eq!(f.id(), sid);
        let Message::StreamData(d) = f.message().unwrap() else {
            panic!()
        };
        got += d.data().len();
    }
    assert_eq!(got, 1000, "no more than the credit");
    assert!(
        g.try_recv(Duration::from_millis(500)).is_none(),
        "nothing more without credit"
    );

    // the guest sends data to the client: within the window it arrives
    g.send(
        &Message::StreamData(StreamData::new(b"to pacemaker".to_vec()).unwrap()),
        sid,
    );
    let mut buf = [0u8; 12];
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    conn.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"to pacemaker");
    let credit = g.recv_kind(Kind::StreamCredit);
    assert_eq!(credit.id(), sid, "written bytes are granted back");

    // a credit beyond the largest window: the stream is closed (Violation), the connection too
    // (data beyond the credit is refused the same way: the unit tests of `stream` show it)
    for _ in 0..2 {
        g.send(
            &Message::StreamCredit(StreamCredit::new(vm_proto::MAX_STREAM_WINDOW).unwrap()),
            sid,
        );
    }
    let close = g.recv_kind(Kind::StreamClose);
    let Message::StreamClose(c) = close.message().unwrap() else {
        panic!()
    };
    assert_eq!(
        (close.id(), c.reason()),
        (sid, StreamCloseReason::Violation)
    );
    let _ = read_until_closed(&mut conn, Duration::from_secs(10));
    assert_eq!(host.status()["guests"][0]["streams"], 0);

    // a guest may not open a stream
    g.send(&Message::StreamOpen(StreamOpen::new(1000).unwrap()), 77);
    host.wait_for(
        || host.status()["guests"][0]["offences"] == 2,
        "the overrun and the guest's StreamOpen counted as offences",
    );
    assert!(
        host.log_text()
            .contains("sent a StreamOpen message, which guests may not send"),
        "{}",
        host.log_text()
    );
}

/// `vm-connectd expose` changes the endpoints of a running host daemon: idempotent, one port
/// per guest, withdrawn with port 0; a port another guest has is refused with the reason.
#[test]
fn expose_offers_moves_and_withdraws_endpoints() {
    let host = Daemon::host(&[]);
    let socket = host.socket.display().to_string();
    let run = |args: &[&str]| {
        std::process::Command::new(common::BIN)
            .arg("expose")
            .arg("--socket")
            .arg(&socket)
            .args(args)
            .output()
            .unwrap()
    };
    let (p1, p2) = (free_port(), free_port());
    for _ in 0..2 {
        let out = run(&["g1", &p1.to_string()]);
        assert!(out.status.success(), "{out:?}");
    }
    TcpStream::connect(("127.0.0.1", p1)).expect("offered");
    let out = run(&["g2", &p1.to_string()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already carries guest g1's stream"), "{err}");
    assert!(run(&["g1", &p2.to_string()]).status.success());
    assert_eq!(host.status()["exposed"][0]["port"], u64::from(p2));
    host.wait_for(
        || TcpStream::connect(("127.0.0.1", p1)).is_err(),
        "the old port to be released",
    );
    assert!(run(&["g1", "0"]).status.success());
    assert_eq!(host.status()["exposed"], serde_json::json!([]));
    host.wait_for(
        || TcpStream::connect(("127.0.0.1", p2)).is_err(),
        "the port to be released",
    );
}
