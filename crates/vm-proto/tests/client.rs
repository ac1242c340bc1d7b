//! The blocking client and module API against a fake daemon: a `UnixListener` in a temporary
//! directory, served by a thread that speaks raw frames.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    io::{Read, Write},
    os::unix::net::{UnixListener, UnixStream},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicUsize, Ordering},
        mpsc,
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use vm_proto::{
    Decoder, Deliver, ErrorCode, ErrorMsg, Frame, Hello, Kind, MAX_VERSION, MIN_VERSION, Message,
    Origin, OriginSource, Pong, Register, Reply, Request, Retry, RetryReason, Role, ServiceName,
    StatusReply, TimeoutMs,
    client::{Client, ClientError, Delivery, Module, ModuleEvent, ProtocolError, REPLY_GRACE},
};

const WAIT: Duration = Duration::from_secs(5);

/// A private directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let n = COUNT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("vm-proto-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The fake daemon's end of one connection.
struct Peer {
    stream: UnixStream,
    decoder: Decoder,
    /// Whether a frame other than a version probe arrived yet.
    past_probe: bool,
}

impl Peer {
    /// The next frame; panics after `WAIT` or on any decode error. The client's version probe
    /// (a Status sent before its first request, when it has not yet read the daemon's Hello)
    /// is skipped: these fake daemons always say Hello first, as a version-2 daemon does, so
    /// the client goes by that.
    fn recv(&mut self) -> Frame {
        loop {
            let frame = self.recv_any();
            if !self.past_probe && frame.kind() == Kind::Status {
                continue;
            }
            self.past_probe = true;
            return frame;
        }
    }

    /// The next frame, version probes included.
    fn recv_any(&mut self) -> Frame {
        self.stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut buf = [0u8; 4096];
        loop {
            if let Some(item) = self.decoder.next_frame() {
                return item.unwrap();
            }
            let n = self.stream.read(&mut buf).expect("fake daemon: read");
            assert!(n > 0, "fake daemon: client closed");
            self.decoder.feed(&buf[..n]);
        }
    }

    fn send(&mut self, message: Message, id: u64) {
        self.stream
            .write_all(&message.to_frame(id).to_bytes())
            .unwrap();
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }
}

/// A fake daemon at `<tmp>/d.sock` that accepts one connection, expects the client's Hello
/// (with `role`), sends its own, then runs `script`.
struct FakeDaemon {
    _dir: TempDir,
    path: PathBuf,
    thread: Option<JoinHandle<()>>,
}

impl FakeDaemon {
    fn start(role: Role, script: impl FnOnce(&mut Peer) + Send + 'static) -> FakeDaemon {
        Self::start_with_hello(role, Hello::current(Role::HostDaemon, 42), script)
    }

    fn start_with_hello(
        role: Role,
        hello: Hello,
        script: impl FnOnce(&mut Peer) + Send + 'static,
    ) -> FakeDaemon {
        Self::start_raw(move |peer| {
            let first = peer.recv_any();
            match first.message().unwrap() {
                Message::Hello(h) => {
                    assert_eq!(first.id(), 0);
                    assert_eq!(h.role(), role);
                    assert_eq!(h.versions(), (MIN_VERSION, MAX_VERSION));
                }
                other => panic!("fake daemon: expected Hello, got {other:?}"),
            }
            peer.send(Message::Hello(hello), 0);
            script(peer);
        })
    }

    /// A fake daemon at `<tmp>/d.sock` that accepts one connection and runs `script` on it
    /// from its first byte (the client's Hello included).
    fn start_raw(script: impl FnOnce(&mut Peer) + Send + 'static) -> FakeDaemon {
        let dir = TempDir::new();
        let path = dir.0.join("d.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let thread = thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut peer = Peer {
                stream,
                decoder: Decoder::new(),
                past_probe: false,
            };
            script(&mut peer);
        });
        FakeDaemon {
            _dir: dir,
            path,
            thread: Some(thread),
        }
    }

    fn path(&self) -> &Path {
        &self.path
    }

    /// Waits for the script to finish, propagating its assertion failures.
    fn join(mut self) {
        if let Some(thread) = self.thread.take() {
            thread.join().expect("fake daemon script failed");
        }
    }
}

fn service(name: &str) -> ServiceName {
    ServiceName::new(name).unwrap()
}

#[test]
fn ping_pong_skipping_other_ids() {
    let daemon = FakeDaemon::start(Role::Client, |peer| {
        let ping = peer.recv();
        assert_eq!(ping.kind(), Kind::Ping);
        assert_ne!(ping.id(), 0);
        let id = ping.id();
        // Late answers to other requests, and a repeated Hello, come first.
        peer.send(
            Message::Reply(Reply::new(b"late".to_vec()).unwrap()),
            id.wrapping_add(1),
        );
        peer.send(
            Message::Pong(Pong::new("other", vec![]).unwrap()),
            id ^ 0xFF00,
        );
        peer.send(Message::Hello(Hello::current(Role::HostDaemon, 42)), 0);
        let pong = Pong::new("node1", vec![service("stonith"), service("monitor")]).unwrap();
        peer.send(Message::Pong(pong), id);
    });
    let mut client = Client::connect(daemon.path(), Role::Client).unwrap();
    let pong = client.ping(WAIT).unwrap();
    assert_eq!(pong.host(), "node1");
    assert_eq!(pong.services(), [service("stonith"), service("monitor")]);
    assert_eq!(client.peer_hello().map(Hello::session), Some(42));
    daemon.join();
}

#[test]
fn request_reply() {
    let daemon = FakeDaemon::start(Role::Client, |peer| {
        for expected in [&b"reset g2"[..], b"status g2"] {
            let frame = peer.recv();
            let Message::Request(request) = frame.message().unwrap() else {
                panic!()
            };
            assert_eq!(request.service().as_str(), "stonith");
            assert_eq!(request.body(), expected);
            peer.send(
                Message::Reply(Reply::new(b"OK".to_vec()).unwrap()),
                frame.id(),
            );
        }
    });
    let mut client = Client::connect(daemon.path(), Role::Client).unwrap();
    assert_eq!(client.request("stonith", b"reset g2", WAIT).unwrap(), b"OK");
    assert_eq!(
        client.request("stonith", b"status g2", WAIT).unwrap(),
        b"OK"
    );
    daemon.join();
}

#[test]
fn retry_answer() {
    let daemon = FakeDaemon::start(Role::Client, |peer| {
        let frame = peer.recv();
        let retry = Retry::new(RetryReason::NoModule, "nothing serves stonith").unwrap();
        peer.send(Message::Retry(retry), frame.id());
    });
    let mut client = Client::connect(daemon.path(), Role::Client).unwrap();
    let err = client.request("stonith", b"x", WAIT).unwrap_err();
    assert!(err.is_retry());
    match err {
        ClientError::Retry { reason, detail } => {
            assert_eq!(reason, RetryReason::NoModule);
            assert_eq!(detail, "nothing serves stonith");
        }
        other => panic!("{other:?}"),
    }
    daemon.join();
}

#[test]
fn remote_error_for_the_request_and_for_the_connection() {
    let daemon = FakeDaemon::start(Role::Client, |peer| {
        let frame = peer.recv();
        let error = ErrorMsg::new(ErrorCode::Forbidden, "guest1 may not fence guest3").unwrap();
        peer.send(Message::Error(error), frame.id());
        let _ = peer.recv();
        let error = ErrorMsg::new(ErrorCode::Unsupported, "protocol version").unwrap();
        peer.send(Message::Error(error), 0);
    });
    let mut client = Client::connect(daemon.path(), Role::Client).unwrap();
    let err = client.request("stonith", b"x", WAIT).unwrap_err();
    assert!(
        matches!(&err, ClientError::Remote { code: ErrorCode::Forbidden, message } if message == "guest1 may not fence guest3"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "the daemon answered forbidden: guest1 may not fence guest3"
    );
    let err = client.request("stonith", b"y", WAIT).unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Remote {
                code: ErrorCode::Unsupported,
                ..
            }
        ),
        "{err:?}"
    );
    daemon.join();
}

#[test]
fn timeout_sends_cancel() {
    let (tx, rx) = mpsc::channel();
    let daemon = FakeDaemon::start(Role::Client, move |peer| {
        let request = peer.recv();
        assert_eq!(request.kind(), Kind::Request);
        // Never answer; the client must give up and cancel.
        let cancel = peer.recv();
        tx.send((
            request.id(),
            cancel.kind(),
            cancel.id(),
            cancel.payload().len(),
        ))
        .unwrap();
    });
    let mut client = Client::connect(daemon.path(), Role::Client).unwrap();
    let timeout = Duration::from_millis(300);
    let start = Instant::now();
    let err = client.request("stonith", b"x", timeout).unwrap_err();
    let elapsed = start.elapsed();
    assert!(
        matches!(err, ClientError::Timeout { timeout: t } if t == timeout),
        "{err:?}"
    );
    assert!(
        elapsed >= timeout && elapsed < timeout + Duration::from_secs(2),
        "{elapsed:?}"
    );
    let (request_id, kind, cancel_id, len) = rx.recv_timeout(WAIT).unwrap();
    assert_eq!((kind, cancel_id, len), (Kind::Cancel, request_id, 0));
    daemon.join();
}

#[test]
fn late_answer_to_a_cancelled_request_is_skipped() {
    let daemon = FakeDaemon::start(Role::Client, |peer| {
        let first = peer.recv();
        assert_eq!(peer.recv().kind(), Kind::Cancel);
        let second = peer.recv();
        assert_ne!(first.id(), second.id());
        peer.send(
            Message::Reply(Reply::new(b"first".to_vec()).unwrap()),
            first.id(),
        );
        peer.send(
            Message::Reply(Reply::new(b"second".to_vec()).unwrap()),
            second.id(),
        );
    });
    let mut client = Client::connect(daemon.path(), Role::Client).unwrap();
    let err = client
        .request("svc", b"1", Duration::from_millis(100))
        .unwrap_err();
    assert!(matches!(err, ClientError::Timeout { .. }));
    assert_eq!(client.request("svc", b"2", WAIT).unwrap(), b"second");
    daemon.join();
}

#[test]
fn status_and_request_only() {
    let daemon = FakeDaemon::start(Role::Client, |peer| {
        let frame = peer.recv();
        let Message::Request(request) = frame.message().unwrap() else {
            panic!()
        };
        assert_eq!(
            (request.service().as_str(), request.body()),
            ("monitor", &b"a b"[..])
        );
        let frame = peer.recv();
        assert_eq!(frame.message().unwrap(), Message::Status);
        let status = StatusReply::new("{\"links\":2}").unwrap();
        peer.send(Message::StatusReply(status), frame.id());
    });
    let mut client = Client::connect(daemon.path(), Role::Client).unwrap();
    let id = client.send_request_only("monitor", b"a b").unwrap();
    assert_ne!(id, 0);
    assert_eq!(client.status(WAIT).unwrap(), "{\"links\":2}");
    daemon.join();
}

#[test]
fn wrong_answer_kind_is_a_protocol_error() {
    let daemon = FakeDaemon::start(Role::Client, |peer| {
        let frame = peer.recv();
        peer.send(Message::Pong(Pong::new("h", vec![]).unwrap()), frame.id());
    });
    let mut client = Client::connect(daemon.path(), Role::Client).unwrap();
    let err = client.request("svc", b"", WAIT).unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Protocol(ProtocolError::Unexpected {
                kind: Kind::Pong,
                ..
            })
        ),
        "{err:?}"
    );
    daemon.join();
}

#[test]
fn garbage_from_the_daemon_is_a_protocol_error() {
    let daemon = FakeDaemon::start(Role::Client, |peer| {
        let _ = peer.recv();
        peer.send_raw(b"not a frame at all");
        peer.send(Message::Hello(Hello::current(Role::HostDaemon, 42)), 0);
    });
    let mut client = Client::connect(daemon.path(), Role::Client).unwrap();
    let err = client.ping(WAIT).unwrap_err();
    assert!(
        matches!(err, ClientError::Protocol(ProtocolError::Frame(_))),
        "{err:?}"
    );
    daemon.join();
}

#[test]
fn incompatible_daemon_version() {
    // (the first versions this crate does not speak: it speaks 1 and 2)
    let hello = Hello::new(3, 4, Role::HostDaemon, 1, "future").unwrap();
    let daemon = FakeDaemon::start_with_hello(Role::Client, hello, |peer| {
        let _ = peer.recv();
    });
    let mut client = Client::connect(daemon.path(), Role::Client).unwrap();
    let err = client.ping(WAIT).unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Protocol(ProtocolError::Version { min: 3, max: 4 })
        ),
        "{err:?}"
    );
    daemon.join();
}

#[test]
fn daemon_closing_is_reported() {
    let daemon = FakeDaemon::start(Role::Client, |peer| {
        let _ = peer.recv();
        peer.stream.shutdown(std::net::Shutdown::Both).unwrap();
    });
    let mut client = Client::connect(daemon.path(), Role::Client).unwrap();
    let err = client.ping(WAIT).unwrap_err();
    assert!(matches!(err, ClientError::Closed), "{err:?}");
    daemon.join();
}

#[test]
fn module_register_deliver_cancel_reply() {
    let daemon = FakeDaemon::start(Role::Module, |peer| {
        let frame = peer.recv();
        assert_eq!(
            frame.message().unwrap(),
            Message::Register(Register::new(service("stonith")))
        );
        peer.send(Message::Reply(Reply::new(Vec::new()).unwrap()), frame.id());

        let origin = Origin::new("guest1", "", OriginSource::SocketName).unwrap();
        let deliver = Deliver::new(origin, service("stonith"), b"reset guest2".to_vec()).unwrap();
        peer.send(Message::Deliver(deliver.clone()), 1001);
        peer.send(Message::Cancel, 1000);
        peer.send(Message::Deliver(deliver), 1002);
        peer.send(Message::Cancel, 1002);

        let reply = peer.recv();
        assert_eq!((reply.kind(), reply.id()), (Kind::Reply, 1001));
        assert_eq!(
            reply.message().unwrap(),
            Message::Reply(Reply::new(b"OK".to_vec()).unwrap())
        );
        let error = peer.recv();
        assert_eq!((error.kind(), error.id()), (Kind::Error, 1002));
        let Message::Error(error) = error.message().unwrap() else {
            panic!()
        };
        assert_eq!(error.code(), ErrorCode::Internal);
        assert_eq!(
            error.message().len(),
            vm_proto::message::MAX_ERROR_MESSAGE_LEN
        );
    });
    let mut module = Module::register(daemon.path(), "stonith", WAIT).unwrap();
    assert_eq!(module.service().as_str(), "stonith");

    let Some(Delivery { id, deliver }) = module.next_delivery(WAIT).unwrap() else {
        panic!()
    };
    assert_eq!(id, 1001);
    assert_eq!(deliver.origin().domain(), "guest1");
    assert_eq!(deliver.body(), b"reset guest2");
    // next_delivery skips the Cancel for 1000; next_event reports cancels.
    let delivery = module.next_delivery(WAIT).unwrap().unwrap();
    assert_eq!(delivery.id, 1002);
    assert_eq!(
        module.next_event(WAIT).unwrap(),
        Some(ModuleEvent::Cancel { id: 1002 })
    );

    module.reply(1001, b"OK").unwrap();
    module
        .error(1002, ErrorCode::Internal, &"x".repeat(5000))
        .unwrap();
    daemon.join();
}

#[test]
fn module_idle_returns_none_in_time() {
    let (tx, rx) = mpsc::channel::<()>();
    let daemon = FakeDaemon::start(Role::Module, move |peer| {
        let frame = peer.recv();
        peer.send(Message::Reply(Reply::new(Vec::new()).unwrap()), frame.id());
        // Hold the connection open until the test is done.
        let _ = rx.recv_timeout(WAIT);
    });
    let mut module = Module::register(daemon.path(), "monitor", WAIT).unwrap();
    let start = Instant::now();
    assert_eq!(
        module.next_delivery(Duration::from_millis(200)).unwrap(),
        None
    );
    assert!(start.elapsed() < Duration::from_secs(2));
    tx.send(()).unwrap();
    daemon.join();
}

#[test]
fn module_registration_refused() {
    let daemon = FakeDaemon::start(Role::Module, |peer| {
        let frame = peer.recv();
        let error = ErrorMsg::new(ErrorCode::Forbidden, "uid 1000 may not register").unwrap();
        peer.send(Message::Error(error), frame.id());
    });
    let err = Module::register(daemon.path(), "stonith", WAIT).unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Remote {
                code: ErrorCode::Forbidden,
                ..
            }
        ),
        "{err:?}"
    );
    daemon.join();
}

#[test]
fn invalid_service_name_is_refused_locally() {
    let daemon = FakeDaemon::start(Role::Client, |_| {});
    let mut client = Client::connect(daemon.path(), Role::Client).unwrap();
    let err = client.request("Bad/Name", b"", WAIT).unwrap_err();
    assert!(matches!(err, ClientError::Invalid(_)), "{err:?}");
    let request = Request::new(service("ok"), Vec::new()).unwrap();
    assert_eq!(request.service().as_str(), "ok");
    daemon.join();
}

/// Sends a request with `timeout` to a fake daemon saying `hello`; the frame version it
/// arrived in and the deadline it carried.
fn request_through(hello: Hello, timeout: Duration) -> (u8, Option<TimeoutMs>) {
    let (tx, rx) = mpsc::channel();
    let daemon = FakeDaemon::start_with_hello(Role::Client, hello, move |peer| {
        let frame = peer.recv();
        let Message::Request(request) = frame.message().unwrap() else {
            panic!()
        };
        tx.send((frame.version(), request.timeout())).unwrap();
        peer.send(
            Message::Reply(Reply::new(b"OK".to_vec()).unwrap()),
            frame.id(),
        );
    });
    let mut client = Client::connect(daemon.path(), Role::Client).unwrap();
    assert_eq!(client.request("stonith", b"x", timeout).unwrap(), b"OK");
    daemon.join();
    rx.recv_timeout(WAIT).unwrap()
}

/// A version-2 daemon gets the request's deadline: what was left of the caller's timeout; a
/// daemon whose Hello offers version 1 only gets version-1 requests: no deadline.
#[test]
fn request_carries_the_time_left_to_a_version_2_daemon_only() {
    let timeout = Duration::from_secs(7);
    let (version, carried) = request_through(Hello::current(Role::GuestDaemon, 8), timeout);
    assert_eq!(version, 2);
    let carried = carried.expect("a deadline");
    assert!(
        carried.as_duration() <= timeout && carried.as_duration() > timeout - WAIT,
        "{carried}"
    );
    let old = Hello::new(1, 1, Role::GuestDaemon, 9, "old").unwrap();
    assert_eq!(request_through(old, timeout), (1, None));
}

/// A version-1 daemon never says Hello on its local socket: the client's version probe (a
/// Status) is answered without one, and the request then goes in version 1.
#[test]
fn a_daemon_that_never_says_hello_gets_version_1_requests() {
    let daemon = FakeDaemon::start_raw(|peer| {
        peer.past_probe = true;
        assert_eq!(peer.recv().kind(), Kind::Hello);
        let probe = peer.recv();
        assert_eq!(probe.message().unwrap(), Message::Status);
        let status = StatusReply::new("{}").unwrap();
        peer.send(Message::StatusReply(status), probe.id());
        let frame = peer.recv();
        assert_eq!(frame.version(), 1);
        let Message::Request(request) = frame.message().unwrap() else {
            panic!()
        };
        assert_eq!(request.timeout(), None);
        peer.send(
            Message::Reply(Reply::new(b"v1".to_vec()).unwrap()),
            frame.id(),
        );
        // the next request on the connection is not probed again
        let frame = peer.recv();
        assert_eq!(frame.kind(), Kind::Request);
        peer.send(
            Message::Reply(Reply::new(b"again".to_vec()).unwrap()),
            frame.id(),
        );
    });
    let mut client = Client::connect(daemon.path(), Role::Client).unwrap();
    assert_eq!(client.request("stonith", b"x", WAIT).unwrap(), b"v1");
    assert_eq!(client.request("stonith", b"y", WAIT).unwrap(), b"again");
    daemon.join();
}

/// The relays give up at the carried deadline and answer Error Timeout; the client waits a
/// grace past its own timeout for that answer, so the caller learns which hop gave up.
#[test]
fn a_relay_timeout_just_after_the_deadline_is_the_answer() {
    let daemon = FakeDaemon::start(Role::Client, |peer| {
        let frame = peer.recv();
        let Message::Request(request) = frame.message().unwrap() else {
            panic!()
        };
        let carried = request.timeout().unwrap().as_duration();
        // a relay a little late with its answer (within the grace)
        thread::sleep(carried + REPLY_GRACE / 4);
        let error = ErrorMsg::new(ErrorCode::Timeout, "the host did not answer in time").unwrap();
        peer.send(Message::Error(error), frame.id());
    });
    let mut client = Client::connect(daemon.path(), Role::Client).unwrap();
    let timeout = Duration::from_millis(400);
    let start = Instant::now();
    let err = client.request("stonith", b"x", timeout).unwrap_err();
    assert!(start.elapsed() >= timeout);
    assert!(
        matches!(&err, ClientError::Remote { code: ErrorCode::Timeout, message } if message == "the host did not answer in time"),
        "{err:?}"
    );
    assert!(err.is_timeout());
    assert!(ClientError::Timeout { timeout }.is_timeout());
    assert!(!ClientError::Closed.is_timeout());
    daemon.join();
}
