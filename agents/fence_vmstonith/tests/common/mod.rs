//! A stand-in for the guest's vm-connectd and everything behind it: a unix socket that speaks
//! the vm-proto wire, opens the agent's sealed request with the guest cluster's key, and
//! answers as the test script says (a sealed reply, a Retry, an Error, or nothing at all).
//! Also runs processes with a hard time limit.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use vm_proto::{
    Decoder, ErrorCode, ErrorMsg, Frame, Hello, Message, Reply, Retry, RetryReason, Role,
};
use vm_seal::{FenceReply, FenceRequest, Key, Nonce, OpenedRequest, Outcome, PowerState};

pub const AGENT: &str = env!("CARGO_BIN_EXE_fence_vmstonith");

/// What reached the fake host.
#[derive(Debug, Clone)]
pub enum Incoming {
    /// A request sealed under the key, opened.
    Sealed(OpenedRequest),
    /// Any other body (a legacy plain-text request).
    Raw(String),
}

impl Incoming {
    pub fn sealed(&self) -> &OpenedRequest {
        match self {
            Incoming::Sealed(r) => r,
            Incoming::Raw(r) => panic!("expected a sealed request, got {r:?}"),
        }
    }
}

/// How the fake host answers.
#[derive(Debug, Clone)]
pub enum Answer {
    /// A reply sealed under the key, bound to the request.
    Reply(FenceReply),
    /// A reply sealed under another key.
    ReplyWrongKey(FenceReply),
    /// A reply bound to another request's nonce.
    ReplyOtherNonce(FenceReply),
    /// A plain body (legacy `OK`/`NG`).
    Raw(&'static str),
    /// A Retry answer.
    Retry(RetryReason),
    /// An Error answer.
    Error(ErrorCode, &'static str),
    /// No answer ever (the connection stays open until the client goes).
    Silent,
}

pub fn done(state: PowerState, message: &str) -> Answer {
    Answer::Reply(FenceReply::new(Outcome::Done, state, message))
}

type Handler = dyn Fn(usize, &Incoming) -> Answer + Send + Sync;

/// The fake host: its socket and key file in a temp dir, and what it received.
pub struct FakeHost {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub key_file: PathBuf,
    seen: Arc<Mutex<Vec<Incoming>>>,
}

impl FakeHost {
    /// Listens at once; `handler(n, request)` answers the n-th request (from 0).
    pub fn start(handler: impl Fn(usize, &Incoming) -> Answer + Send + Sync + 'static) -> Self {
        Self::start_after(Duration::ZERO, handler)
    }

    /// Starts listening only after `delay` (a guest daemon that is restarting).
    pub fn start_after(
        delay: Duration,
        handler: impl Fn(usize, &Incoming) -> Answer + Send + Sync + 'static,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("vmc.sock");
        let key_file = dir.path().join("fence.key");
        let key = Arc::new(Key::generate("web").unwrap());
        key.write_new(&key_file).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let seen2 = Arc::clone(&seen);
        let accept = move |listener: UnixListener| {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let (key, seen, handler) =
                    (Arc::clone(&key), Arc::clone(&seen2), Arc::clone(&handler));
                thread::spawn(move || serve(stream, &key, &seen, &*handler));
            }
        };
        if delay.is_zero() {
            let listener = UnixListener::bind(&socket).unwrap();
            thread::spawn(move || accept(listener));
        } else {
            let path = socket.clone();
            thread::spawn(move || {
                thread::sleep(delay);
                accept(UnixListener::bind(&path).unwrap());
            });
        }
        FakeHost {
            dir,
            socket,
            key_file,
            seen,
        }
    }

    pub fn seen(&self) -> Vec<Incoming> {
        self.seen.lock().unwrap().clone()
    }

    pub fn socket_str(&self) -> &str {
        self.socket.to_str().unwrap()
    }

    pub fn key_str(&self) -> &str {
        self.key_file.to_str().unwrap()
    }

    /// The options every agent run needs to reach this host.
    pub fn agent_args(&self) -> Vec<String> {
        [
            "--socket",
            self.socket_str(),
            "--key-file",
            self.key_str(),
            "--requester",
            "web1",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
    }
}

struct Peer {
    stream: UnixStream,
    decoder: Decoder,
}

impl Peer {
    /// The next frame, `None` when the client closed.
    fn recv(&mut self) -> Option<Frame> {
        self.stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let mut buf = [0u8; 4096];
        loop {
            if let Some(item) = self.decoder.next_frame() {
                return Some(item.unwrap());
            }
            match self.stream.read(&mut buf) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.decoder.feed(&buf[..n]),
            }
        }
    }

    fn send(&mut self, message: Message, id: u64) {
        let _ = self.stream.write_all(&message.to_frame(id).to_bytes());
    }
}

fn serve(stream: UnixStream, key: &Key, seen: &Mutex<Vec<Incoming>>, handler: &Handler) {
    let mut peer = Peer {
        stream,
        decoder: Decoder::new(),
    };
    let Some(hello) = peer.recv() else { return };
    match hello.message().unwrap() {
        Message::Hello(h) => assert_eq!(h.role(), Role::Client),
        other => panic!("fake host: expected Hello, got {other:?}"),
    }
    peer.send(Message::Hello(Hello::current(Role::GuestDaemon, 7)), 0);
    // (a client that has not read our Hello yet probes the version with a Status first: this
    // host said Hello at once, as a version-2 guest daemon does, so the probe needs no answer)
    let frame = loop {
        let Some(frame) = peer.recv() else { return };
        if frame.kind() != vm_proto::Kind::Status {
            break frame;
        }
    };
    let id = frame.id();
    let Message::Request(request) = frame.message().unwrap() else {
        panic!("fake host: expected a Request");
    };
    assert_eq!(request.service().as_str(), "stonith");
    let body = request.body();
    let incoming = match FenceRequest::open(key, body) {
        Ok(opened) => Incoming::Sealed(opened),
        Err(_) => Incoming::Raw(String::from_utf8_lossy(body).into_owned()),
    };
    let n = {
        let mut seen = seen.lock().unwrap();
        seen.push(incoming.clone());
        seen.len() - 1
    };
    let nonce = match &incoming {
        Incoming::Sealed(r) => r.header.nonce,
        Incoming::Raw(_) => Nonce::random().unwrap(),
    };
    let reply_body = |bytes: Vec<u8>| Message::Reply(Reply::new(bytes).unwrap());
    match handler(n, &incoming) {
        Answer::Reply(r) => peer.send(reply_body(r.seal(key, &nonce).unwrap()), id),
        Answer::ReplyWrongKey(r) => {
            let other = Key::generate("web").unwrap();
            peer.send(reply_body(r.seal(&other, &nonce).unwrap()), id);
        }
        Answer::ReplyOtherNonce(r) => {
            let other = Nonce::random().unwrap();
            peer.send(reply_body(r.seal(key, &other).unwrap()), id);
        }
        Answer::Raw(text) => peer.send(reply_body(text.as_bytes().to_vec()), id),
        Answer::Retry(reason) => {
            peer.send(Message::Retry(Retry::new(reason, "fake host").unwrap()), id);
        }
        Answer::Error(code, message) => {
            peer.send(Message::Error(ErrorMsg::new(code, message).unwrap()), id);
        }
        Answer::Silent => {}
    }
    // hold the connection until the client goes (a Silent host never answers)
    while peer.recv().is_some() {}
}

/// A finished process.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub took: Duration,
}

/// Runs `cmd` with `stdin`, killing it (and failing the test) after `limit`.
pub fn run(mut cmd: Command, stdin: Option<&str>, limit: Duration) -> Run {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = cmd.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        // an agent that does not read stdin (it has arguments) may exit before the write
        match input.write_all(text.as_bytes()) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            other => other.unwrap(),
        }
    }
    drop(input);
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let Ok(output) = rx.recv_timeout(limit) else {
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        panic!("{cmd:?} still running after {limit:?}");
    };
    let output = output.unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        took: started.elapsed(),
    }
}

/// Runs the agent with `args`.
pub fn agent(args: &[String], limit: Duration) -> Run {
    let mut cmd = Command::new(AGENT);
    cmd.args(args);
    run(cmd, None, limit)
}

pub fn strings(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| (*s).to_owned()).collect()
}

/// `xmllint --noout` on `xml`; `None` when xmllint is not installed.
pub fn xmllint(xml: &str) -> Option<Result<(), String>> {
    let mut child = Command::new("xmllint")
        .args(["--noout", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(xml.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    Some(if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    })
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}
