//! The blocking client side of a daemon's local unix socket, for vm-connect, the fence agents
//! and host modules. The only I/O in this crate; std only.
//!
//! - [`Client`]: connect, then [`Client::ping`], [`Client::request`],
//!   [`Client::send_request_only`], [`Client::status`].
//! - [`Module`]: [`Module::register`] a service with the host daemon, then
//!   [`Module::next_event`] / [`Module::next_delivery`] and [`Module::reply`] /
//!   [`Module::error`], or, to answer from several threads, [`Module::sender`].
//!
//! Every call has a deadline: connecting (a helper thread, since std has no unix connect
//! timeout and a daemon whose backlog is full would block `connect` indefinitely), every write
//! (`set_write_timeout`) and every wait (`set_read_timeout` recomputed from the deadline).
//! Nothing here can block forever. Request ids are chosen here: a random-ish start, then
//! increments, never 0.
//!
//! [`Client::request`] carries its timeout to the daemons (protocol version 2, docs/protocol.md
//! §10) when the daemon speaks it: the daemon answers a Hello offering version 2 with its own,
//! and one that does not (version 1 only) is found out by a Status sent after the Hello, which
//! every daemon answers at once and never forwards: a StatusReply before any Hello means
//! version 1. Each relay on the way gives up at the carried time and answers Error Timeout
//! naming itself; the client waits [`REPLY_GRACE`] longer than its timeout for that answer.

use std::{
    collections::hash_map::RandomState,
    hash::{BuildHasher, Hasher},
    io::{self, Read, Write},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant, SystemTime},
};

use crate::{
    decoder::{DecodeError, Decoder},
    frame::{DEADLINE_VERSION, Frame, Kind, MAX_VERSION, MIN_VERSION},
    message::{
        Deliver, ErrorCode, ErrorMsg, Hello, Message, MessageError, Pong, Register, Reply, Request,
        Retry, RetryReason, Role, ServiceName, StatusPage, StatusQuery, TimeoutMs, negotiate,
    },
};

/// How long [`Client::connect`] and [`Module::register`]'s connect may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Deadline for writes that have no caller-given timeout (Hello, fire-and-forget requests,
/// module replies). A local daemon that cannot take a few hundred bytes in this time is stuck.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Deadline for the best-effort Cancel sent after a timeout: the caller is already late.
const CANCEL_TIMEOUT: Duration = Duration::from_millis(200);

/// How much longer than its timeout [`Client::request`] waits when it carried the timeout to
/// the daemons: they give up at that time and answer Error Timeout, naming the hop that gave
/// up; the grace lets that answer travel back, so that the caller reports which hop timed out
/// rather than racing it with a timeout of its own.
pub const REPLY_GRACE: Duration = Duration::from_secs(1);

/// Size of the read buffer: a quarter of the largest frame, a few reads per big reply.
const READ_CHUNK: usize = 16 * 1024;

/// A frame from the daemon broke the protocol.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The byte stream did not decode.
    #[error("received a malformed frame")]
    Frame(#[source] DecodeError),
    /// A frame for this exchange did not decode as its message.
    #[error("received a malformed {kind} message (id {id})")]
    Message {
        /// Kind of the frame.
        kind: Kind,
        /// Its id.
        id: u64,
        /// What was wrong with it.
        #[source]
        source: MessageError,
    },
    /// A well-formed message that does not answer what was asked.
    #[error("received an unexpected {kind} frame (id {id})")]
    Unexpected {
        /// Kind of the frame.
        kind: Kind,
        /// Its id.
        id: u64,
    },
    /// The peer's Hello offers no version this side speaks.
    #[error(
        "the daemon speaks protocol versions {min} to {max}; this side speaks {MIN_VERSION} to \
         {MAX_VERSION}"
    )]
    Version {
        /// The peer's lowest version.
        min: u8,
        /// The peer's highest version.
        max: u8,
    },
}

/// A client or module call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket could not be connected.
    #[error("cannot connect to {}", path.display())]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Connecting took longer than allowed.
    #[error("connecting to {} took longer than {timeout:?}", path.display())]
    ConnectTimeout {
        /// The socket path.
        path: PathBuf,
        /// The limit.
        timeout: Duration,
    },
    /// The caller's request cannot be sent as given (bad service name, body too long, ...).
    #[error("the request is invalid")]
    Invalid(#[source] MessageError),
    /// Reading or writing the socket failed.
    #[error("cannot {op}")]
    Io {
        /// What was being done ("send the request", "read from the daemon").
        op: &'static str,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The daemon closed the connection.
    #[error("the daemon closed the connection")]
    Closed,
    /// No answer within the caller's timeout (a Cancel was sent, best effort), or the daemon
    /// did not take a frame within it.
    #[error("no answer within {timeout:?}")]
    Timeout {
        /// The timeout that passed.
        timeout: Duration,
    },
    /// A daemon answered Retry: not done, sending again may succeed.
    #[error("the daemon asks to retry: {reason} ({detail})")]
    Retry {
        /// Why.
        reason: RetryReason,
        /// Free text from the daemon.
        detail: String,
    },
    /// A daemon or the module answered Error.
    #[error("the daemon answered {code}: {message}")]
    Remote {
        /// What kind of failure.
        code: ErrorCode,
        /// The daemon's explanation.
        message: String,
    },
    /// The daemon broke the protocol.
    #[error("protocol violation by the daemon")]
    Protocol(#[source] ProtocolError),
}

impl ClientError {
    /// Whether the caller may send the same request again (the original vm-connect's exit
    /// code 2): a Retry answer.
    pub fn is_retry(&self) -> bool {
        matches!(self, ClientError::Retry { .. })
    }

    /// Whether the request ran out of time: no answer within this client's timeout, or a
    /// daemon on the way gave up at the time the request carried (Error Timeout, whose
    /// message names that daemon). Callers report both the same way.
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            ClientError::Timeout { .. }
                | ClientError::Remote {
                    code: ErrorCode::Timeout,
                    ..
                }
        )
    }
}

/// A random-ish u64: std's per-process random hash keys over the time and pid. Good enough
/// for request-id starts and session ids, which must differ between processes and runs, not
/// resist prediction (routing never trusts them).
fn random_u64() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(nanos);
    hasher.write_u32(std::process::id());
    hasher.finish()
}

/// Connects with a deadline. std has no connect timeout for unix sockets, and a blocking
/// `connect` waits while the listener's backlog is full; a non-blocking `connect` instead
/// fails with EAGAIN then, and is retried until the deadline. (No helper thread: starting one
/// costs tens of milliseconds on the emulated CPUs guests may run on.)
fn connect_with_timeout(path: &Path, timeout: Duration) -> Result<UnixStream, ClientError> {
    use nix::errno::Errno;
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, UnixAddr, connect, socket};
    use std::os::fd::AsRawFd;
    let io_err = |e: Errno| ClientError::Connect {
        path: path.to_path_buf(),
        source: std::io::Error::from(e),
    };
    let deadline = deadline_after(timeout);
    let addr = UnixAddr::new(path).map_err(io_err)?;
    loop {
        let fd = socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(io_err)?;
        match connect(fd.as_raw_fd(), &addr) {
            Ok(()) => {
                let stream = UnixStream::from(fd);
                stream
                    .set_nonblocking(false)
                    .map_err(|source| ClientError::Connect {
                        path: path.to_path_buf(),
                        source,
                    })?;
                return Ok(stream);
            }
            // backlog full: the daemon is busy accepting; try again shortly
            Err(Errno::EAGAIN) if Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(5));
            }
            Err(Errno::EAGAIN) => {
                return Err(ClientError::ConnectTimeout {
                    path: path.to_path_buf(),
                    timeout,
                });
            }
            Err(e) => return Err(io_err(e)),
        }
    }
}

/// The instant `timeout` from now. A timeout too large to represent (`Duration::MAX` as "no
/// limit") is capped at a year rather than overflowing, which would panic.
fn deadline_after(timeout: Duration) -> Instant {
    const CAP: Duration = Duration::from_secs(365 * 24 * 3600);
    let now = Instant::now();
    now.checked_add(timeout.min(CAP)).unwrap_or(now)
}

/// A read timeout for what is left until `deadline`; `None` once it has passed.
/// (`set_read_timeout(Some(0))` is an error, so a tiny remainder is rounded up.)
fn remaining(deadline: Instant) -> Option<Duration> {
    let left = deadline.checked_duration_since(Instant::now())?;
    (!left.is_zero()).then(|| left.max(Duration::from_millis(1)))
}

/// The connection shared by [`Client`] and [`Module`]: framing, ids, deadlines.
#[derive(Debug)]
struct Connection {
    stream: UnixStream,
    decoder: Decoder,
    next_id: u64,
    peer: Option<Hello>,
    /// The daemon answered the version probe without a Hello first: it speaks version 1 only.
    version_1_only: bool,
}

impl Connection {
    fn open(path: &Path, role: Role, timeout: Duration) -> Result<Connection, ClientError> {
        let stream = connect_with_timeout(path, timeout)?;
        let mut conn = Connection {
            stream,
            decoder: Decoder::new(),
            next_id: random_u64(),
            peer: None,
            version_1_only: false,
        };
        let hello = Message::Hello(Hello::current(role, random_u64()));
        conn.send(&hello.to_frame(0), WRITE_TIMEOUT, "send Hello")?;
        Ok(conn)
    }

    fn alloc_id(&mut self) -> u64 {
        if self.next_id == 0 {
            self.next_id = 1;
        }
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        id
    }

    fn send(
        &mut self,
        frame: &Frame,
        timeout: Duration,
        op: &'static str,
    ) -> Result<(), ClientError> {
        // (`set_write_timeout(Some(0))` is an error, hence the floor.)
        self.stream
            .set_write_timeout(Some(timeout.max(Duration::from_millis(1))))
            .map_err(|source| ClientError::Io { op, source })?;
        match self.stream.write_all(&frame.to_bytes()) {
            // The daemon did not take the frame in time: it is stuck, which the caller sees as
            // the timeout it is. (A frame cut short here is resynchronised over by the
            // daemon's decoder.)
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Err(ClientError::Timeout { timeout })
            }
            result => result.map_err(|source| ClientError::Io { op, source }),
        }
    }

    /// Sends Cancel for `id`, best effort: the caller has already failed with a timeout.
    fn cancel(&mut self, id: u64) {
        let _ = self.send(&Message::Cancel.to_frame(id), CANCEL_TIMEOUT, "send Cancel");
    }

    /// The next frame from the daemon, `None` if `deadline` passes first. A peer Hello is
    /// checked and recorded here, never returned.
    fn recv(&mut self, deadline: Instant) -> Result<Option<Frame>, ClientError> {
        self.recv_frame(deadline, false)
    }

    /// [`Connection::recv`]; with `hellos`, a peer Hello (checked and recorded) is returned
    /// too.
    fn recv_frame(
        &mut self,
        deadline: Instant,
        hellos: bool,
    ) -> Result<Option<Frame>, ClientError> {
        let mut buf = [0u8; READ_CHUNK];
        loop {
            while let Some(item) = self.decoder.next_frame() {
                let frame = item.map_err(|e| ClientError::Protocol(ProtocolError::Frame(e)))?;
                if frame.kind() == Kind::Hello {
                    self.peer_hello(&frame)?;
                    if !hellos {
                        continue;
                    }
                }
                return Ok(Some(frame));
            }
            let Some(left) = remaining(deadline) else {
                return Ok(None);
            };
            self.stream
                .set_read_timeout(Some(left))
                .map_err(|source| ClientError::Io {
                    op: "set a read timeout",
                    source,
                })?;
            match self.stream.read(&mut buf) {
                Ok(0) => {
                    // A daemon that dies mid-frame leaves a partial frame: report that.
                    return match self.decoder.next_frame_eof() {
                        Some(Err(e)) => Err(ClientError::Protocol(ProtocolError::Frame(e))),
                        _ => Err(ClientError::Closed),
                    };
                }
                Ok(n) => self.decoder.feed(buf.get(..n).unwrap_or_default()),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(source) => {
                    return Err(ClientError::Io {
                        op: "read from the daemon",
                        source,
                    });
                }
            }
        }
    }

    fn peer_hello(&mut self, frame: &Frame) -> Result<(), ClientError> {
        let hello = match frame.message() {
            Ok(Message::Hello(hello)) => hello,
            Ok(_) => return Err(unexpected(frame)),
            Err(source) => return Err(malformed(frame, source)),
        };
        let (min, max) = hello.versions();
        if negotiate((MIN_VERSION, MAX_VERSION), (min, max)).is_none() {
            return Err(ClientError::Protocol(ProtocolError::Version { min, max }));
        }
        self.peer = Some(hello);
        Ok(())
    }

    /// The protocol version to speak with the daemon, found out by `deadline` (`timeout` is
    /// what the caller gave, for the error): from its Hello, which a daemon speaking version
    /// 2 sends in answer to ours; when none has come yet, a Status is sent (every daemon
    /// answers it at once, after its Hello if it sends one) and the first of the Hello and the
    /// Status's answer decides. Frames for other ids are late answers: skipped.
    fn version(&mut self, deadline: Instant, timeout: Duration) -> Result<u8, ClientError> {
        if let Some(v) = self.peer.as_ref().and_then(Hello::negotiated) {
            return Ok(v);
        }
        if self.version_1_only {
            return Ok(MIN_VERSION);
        }
        let probe = self.alloc_id();
        let left = remaining(deadline).ok_or(ClientError::Timeout { timeout })?;
        self.send(
            &Message::Status.to_frame(probe),
            left,
            "send the version probe",
        )?;
        loop {
            let Some(frame) = self.recv_frame(deadline, true)? else {
                return Err(ClientError::Timeout { timeout });
            };
            if let Some(v) = self.peer.as_ref().and_then(Hello::negotiated) {
                return Ok(v);
            }
            if frame.id() == probe {
                self.version_1_only = true;
                return Ok(MIN_VERSION);
            }
            if frame.id() == 0 && frame.kind() == Kind::Error {
                return match frame.message() {
                    Ok(Message::Error(error)) => Err(remote(&error)),
                    Ok(_) => Err(unexpected(&frame)),
                    Err(source) => Err(malformed(&frame, source)),
                };
            }
        }
    }

    /// [`Connection::exchange_until`] with a deadline `timeout` from now.
    fn exchange(
        &mut self,
        message: &Message,
        timeout: Duration,
        op: &'static str,
    ) -> Result<(u64, Message), ClientError> {
        self.exchange_until(message, deadline_after(timeout), timeout, op)
    }

    /// Sends `message` under a fresh id and waits until `deadline` for the message that
    /// answers it. Frames for other ids (late answers to requests given up on) are skipped;
    /// Retry and Error answers become errors, as does an Error with id 0 (about the connection
    /// as a whole). On timeout a Cancel is sent for the id, and the error names `timeout`,
    /// the caller's.
    fn exchange_until(
        &mut self,
        message: &Message,
        deadline: Instant,
        timeout: Duration,
        op: &'static str,
    ) -> Result<(u64, Message), ClientError> {
        let id = self.alloc_id();
        let left = remaining(deadline).ok_or(ClientError::Timeout { timeout })?;
        self.send(&message.to_frame(id), left, op)
            .map_err(|e| match e {
                ClientError::Timeout { .. } => ClientError::Timeout { timeout },
                e => e,
            })?;
        loop {
            let Some(frame) = self.recv(deadline)? else {
                self.cancel(id);
                return Err(ClientError::Timeout { timeout });
            };
            if frame.id() != id && !(frame.id() == 0 && frame.kind() == Kind::Error) {
                continue;
            }
            return match frame.message() {
                Ok(Message::Retry(retry)) => Err(ClientError::Retry {
                    reason: retry.reason(),
                    detail: retry.detail().to_owned(),
                }),
                Ok(Message::Error(error)) => Err(remote(&error)),
                Ok(answer) => Ok((id, answer)),
                Err(source) => Err(malformed(&frame, source)),
            };
        }
    }
}

fn remote(error: &ErrorMsg) -> ClientError {
    ClientError::Remote {
        code: error.code(),
        message: error.message().to_owned(),
    }
}

fn unexpected(frame: &Frame) -> ClientError {
    ClientError::Protocol(ProtocolError::Unexpected {
        kind: frame.kind(),
        id: frame.id(),
    })
}

fn malformed(frame: &Frame, source: MessageError) -> ClientError {
    ClientError::Protocol(ProtocolError::Message {
        kind: frame.kind(),
        id: frame.id(),
        source,
    })
}

fn unexpected_answer(id: u64, answer: &Message) -> ClientError {
    ClientError::Protocol(ProtocolError::Unexpected {
        kind: answer.kind(),
        id,
    })
}

/// A client of a daemon's local socket (vm-connect, fence agents, admin tools).
#[derive(Debug)]
pub struct Client {
    conn: Connection,
}

impl Client {
    /// Connects to the daemon socket at `path` and sends Hello (without waiting for
    /// anything), within [`CONNECT_TIMEOUT`].
    pub fn connect(path: &Path, role: Role) -> Result<Client, ClientError> {
        Client::connect_timeout(path, role, CONNECT_TIMEOUT)
    }

    /// [`Client::connect`] with a caller-chosen connect timeout.
    pub fn connect_timeout(
        path: &Path,
        role: Role,
        timeout: Duration,
    ) -> Result<Client, ClientError> {
        Ok(Client {
            conn: Connection::open(path, role, timeout)?,
        })
    }

    /// The daemon's Hello, once one has been received (they arrive while waiting for answers).
    pub fn peer_hello(&self) -> Option<&Hello> {
        self.conn.peer.as_ref()
    }

    /// Pings through the daemon(s) to the host daemon; its Pong names the host and its
    /// services.
    pub fn ping(&mut self, timeout: Duration) -> Result<Pong, ClientError> {
        match self
            .conn
            .exchange(&Message::Ping, timeout, "send the ping")?
        {
            (_, Message::Pong(pong)) => Ok(pong),
            (id, other) => Err(unexpected_answer(id, &other)),
        }
    }

    /// Sends `body` to the host module serving `service` and returns its reply body.
    ///
    /// When the daemon speaks protocol version 2 the request carries the time left of
    /// `timeout`, and every daemon on the way gives up at that time with Error Timeout; this
    /// call then waits up to [`REPLY_GRACE`] longer for that answer (see
    /// [`ClientError::is_timeout`]). With a version-1 daemon it waits `timeout`, and the
    /// daemons' own fixed bounds apply.
    pub fn request(
        &mut self,
        service: &str,
        body: &[u8],
        timeout: Duration,
    ) -> Result<Vec<u8>, ClientError> {
        let request = new_request(service, body)?;
        let deadline = deadline_after(timeout);
        let version = self.conn.version(deadline, timeout)?;
        let (request, wait_until) = if version >= DEADLINE_VERSION {
            let left = remaining(deadline)
                .and_then(TimeoutMs::from_duration)
                .ok_or(ClientError::Timeout { timeout })?;
            let until = deadline.checked_add(REPLY_GRACE).unwrap_or(deadline);
            (request.with_timeout(Some(left)), until)
        } else {
            (request, deadline)
        };
        let message = Message::Request(request);
        match self
            .conn
            .exchange_until(&message, wait_until, timeout, "send the request")?
        {
            (_, Message::Reply(reply)) => Ok(reply.into_body()),
            (id, other) => Err(unexpected_answer(id, &other)),
        }
    }

    /// Sends a request without waiting for any answer (the original vm-connect's `-R`).
    /// It carries no deadline (version 1): the daemons bound it by their own limits.
    /// Returns the id it was sent under.
    pub fn send_request_only(&mut self, service: &str, body: &[u8]) -> Result<u64, ClientError> {
        let message = request_message(service, body)?;
        let id = self.conn.alloc_id();
        self.conn
            .send(&message.to_frame(id), WRITE_TIMEOUT, "send the request")?;
        Ok(id)
    }

    /// Asks the daemon for its status; returns its JSON text.
    pub fn status(&mut self, timeout: Duration) -> Result<String, ClientError> {
        match self
            .conn
            .exchange(&Message::Status, timeout, "send the status request")?
        {
            (_, Message::StatusReply(status)) => Ok(status.into_json()),
            (id, other) => Err(unexpected_answer(id, &other)),
        }
    }

    /// Asks a host daemon for the status of guest `guest` only (its JSON text, whose `guests`
    /// list has that guest, or none when the daemon has no link to it).
    pub fn status_of(&mut self, guest: &str, timeout: Duration) -> Result<String, ClientError> {
        let query = StatusQuery::new(guest).map_err(ClientError::Invalid)?;
        match self.conn.exchange(
            &Message::StatusOf(query),
            timeout,
            "send the status request",
        )? {
            (_, Message::StatusReply(status)) => Ok(status.into_json()),
            (id, other) => Err(unexpected_answer(id, &other)),
        }
    }

    /// Asks a daemon for one page of its status: a host daemon's guest links whose domain
    /// sorts after `after` (empty: from the first), as many as fit one reply, with `next` in
    /// the JSON when more follow. A daemon that does not know the request answers Error
    /// Unsupported ([`ClientError::Remote`]): ask it for [`Client::status`] instead.
    pub fn status_page(&mut self, after: &str, timeout: Duration) -> Result<String, ClientError> {
        let page = StatusPage::new(after).map_err(ClientError::Invalid)?;
        match self.conn.exchange(
            &Message::StatusPage(page),
            timeout,
            "send the status page request",
        )? {
            (_, Message::StatusReply(status)) => Ok(status.into_json()),
            (id, other) => Err(unexpected_answer(id, &other)),
        }
    }
}

impl Client {
    /// Asks a host daemon to offer guest `domain`'s stream on loopback `port` (0: to stop
    /// offering it; docs/protocol.md §16.1). Idempotent. Only root (or the daemon's own user)
    /// may; a refusal is [`ClientError::Remote`].
    pub fn expose(
        &mut self,
        domain: &str,
        port: u16,
        timeout: Duration,
    ) -> Result<(), ClientError> {
        let expose = crate::StreamExpose::new(domain, port).map_err(ClientError::Invalid)?;
        match self.conn.exchange(
            &Message::StreamExpose(expose),
            timeout,
            "send the stream endpoint change",
        )? {
            (_, Message::Reply(_)) => Ok(()),
            (id, other) => Err(unexpected_answer(id, &other)),
        }
    }
}

fn new_request(service: &str, body: &[u8]) -> Result<Request, ClientError> {
    let service = ServiceName::new(service).map_err(ClientError::Invalid)?;
    Request::new(service, body).map_err(ClientError::Invalid)
}

fn request_message(service: &str, body: &[u8]) -> Result<Message, ClientError> {
    new_request(service, body).map(Message::Request)
}

/// A request delivered to a module, with the id to answer it under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The host daemon's id for this request: pass it to [`Module::reply`] or
    /// [`Module::error`].
    pub id: u64,
    /// The request and where it came from.
    pub deliver: Deliver,
}

/// What a module receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModuleEvent {
    /// A request to serve.
    Deliver(Delivery),
    /// The requester gave up on the delivery with this id (timeout, client gone, link
    /// changed): stop or roll back if that is still possible; any reply will be dropped.
    Cancel {
        /// Id of the delivery given up on.
        id: u64,
    },
}

/// A host module (vm-stonithd, ...) registered with the host daemon for one service.
#[derive(Debug)]
pub struct Module {
    conn: Connection,
    service: ServiceName,
}

impl Module {
    /// Connects to the host daemon socket at `path` as a module and registers `service`,
    /// waiting at most `timeout` in all for the daemon's acceptance.
    pub fn register(path: &Path, service: &str, timeout: Duration) -> Result<Module, ClientError> {
        let service = ServiceName::new(service).map_err(ClientError::Invalid)?;
        let deadline = deadline_after(timeout);
        let mut conn = Connection::open(path, Role::Module, timeout)?;
        let left = remaining(deadline).unwrap_or(Duration::from_millis(1));
        let message = Message::Register(Register::new(service.clone()));
        match conn.exchange(&message, left, "send the registration")? {
            (_, Message::Reply(reply)) if reply.body().is_empty() => Ok(Module { conn, service }),
            (id, other) => Err(unexpected_answer(id, &other)),
        }
    }

    /// The service this module serves.
    pub fn service(&self) -> &ServiceName {
        &self.service
    }

    /// The host daemon's Hello, once received.
    pub fn peer_hello(&self) -> Option<&Hello> {
        self.conn.peer.as_ref()
    }

    /// The next delivery or cancel, `None` if nothing arrives within `timeout`.
    pub fn next_event(&mut self, timeout: Duration) -> Result<Option<ModuleEvent>, ClientError> {
        let deadline = deadline_after(timeout);
        let Some(frame) = self.conn.recv(deadline)? else {
            return Ok(None);
        };
        match frame.message() {
            Ok(Message::Deliver(deliver)) => Ok(Some(ModuleEvent::Deliver(Delivery {
                id: frame.id(),
                deliver,
            }))),
            Ok(Message::Cancel) => Ok(Some(ModuleEvent::Cancel { id: frame.id() })),
            Ok(Message::Error(error)) if frame.id() == 0 => Err(remote(&error)),
            Ok(_) => Err(unexpected(&frame)),
            Err(source) => Err(malformed(&frame, source)),
        }
    }

    /// The next delivery, `None` if none arrives within `timeout`. Cancels that arrive
    /// meanwhile are dropped: use [`Module::next_event`] to act on them.
    pub fn next_delivery(&mut self, timeout: Duration) -> Result<Option<Delivery>, ClientError> {
        let deadline = deadline_after(timeout);
        loop {
            let left = remaining(deadline).unwrap_or_default();
            match self.next_event(left)? {
                Some(ModuleEvent::Deliver(delivery)) => return Ok(Some(delivery)),
                Some(ModuleEvent::Cancel { .. }) => {}
                None => return Ok(None),
            }
        }
    }

    /// Answers delivery `id` with `body` (at most [`MAX_BODY`](crate::MAX_BODY) bytes).
    pub fn reply(&mut self, id: u64, body: &[u8]) -> Result<(), ClientError> {
        let reply = Reply::new(body).map_err(ClientError::Invalid)?;
        self.conn.send(
            &Message::Reply(reply).to_frame(id),
            WRITE_TIMEOUT,
            "send the reply",
        )
    }

    /// Answers delivery `id` with an error; `message` is cut to
    /// [`MAX_ERROR_MESSAGE_LEN`](crate::message::MAX_ERROR_MESSAGE_LEN) bytes if longer.
    pub fn error(&mut self, id: u64, code: ErrorCode, message: &str) -> Result<(), ClientError> {
        let error = ErrorMsg::truncated(code, message);
        self.conn.send(
            &Message::Error(error).to_frame(id),
            WRITE_TIMEOUT,
            "send the error",
        )
    }
}

impl Module {
    /// A sending half for answering deliveries from other threads while this `Module` keeps
    /// reading events. After taking one, answer only through senders: their writes are
    /// serialised with each other, not with [`Module::reply`].
    pub fn sender(&self) -> Result<ModuleSender, ClientError> {
        let stream = self
            .conn
            .stream
            .try_clone()
            .map_err(|source| ClientError::Io {
                op: "clone the module connection",
                source,
            })?;
        Ok(ModuleSender {
            stream: Arc::new(Mutex::new(stream)),
        })
    }
}

/// The sending half of a [`Module`]: cheap to clone, usable from any thread; each frame is
/// written whole under a lock, so answers from concurrent workers never interleave.
#[derive(Debug, Clone)]
pub struct ModuleSender {
    stream: Arc<Mutex<UnixStream>>,
}

impl ModuleSender {
    /// Answers delivery `id` with `body` (at most [`MAX_BODY`](crate::MAX_BODY) bytes).
    pub fn reply(&self, id: u64, body: &[u8]) -> Result<(), ClientError> {
        let reply = Reply::new(body).map_err(ClientError::Invalid)?;
        self.send(&Message::Reply(reply).to_frame(id), "send the reply")
    }

    /// Answers delivery `id` with an error (`message` cut to fit).
    pub fn error(&self, id: u64, code: ErrorCode, message: &str) -> Result<(), ClientError> {
        let error = ErrorMsg::truncated(code, message);
        self.send(&Message::Error(error).to_frame(id), "send the error")
    }

    /// Answers delivery `id` with Retry (`detail` cut to fit): not done, sending it again may
    /// succeed.
    pub fn retry(&self, id: u64, reason: RetryReason, detail: &str) -> Result<(), ClientError> {
        let retry = Retry::truncated(reason, detail);
        self.send(&Message::Retry(retry).to_frame(id), "send the retry")
    }

    fn send(&self, frame: &Frame, op: &'static str) -> Result<(), ClientError> {
        // A worker that panicked while holding the lock cannot have left half a frame: the
        // write below is the only thing done under it, and write_all either completes or
        // fails the connection.
        let mut stream = self.stream.lock().unwrap_or_else(|e| e.into_inner());
        stream
            .set_write_timeout(Some(WRITE_TIMEOUT))
            .map_err(|source| ClientError::Io { op, source })?;
        stream
            .write_all(&frame.to_bytes())
            .map_err(|source| match source.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ClientError::Timeout {
                    timeout: WRITE_TIMEOUT,
                },
                _ => ClientError::Io { op, source },
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_never_zero_and_increase() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        drop(b);
        let mut conn = Connection {
            stream: a,
            decoder: Decoder::new(),
            next_id: u64::MAX,
            peer: None,
            version_1_only: false,
        };
        assert_eq!(conn.alloc_id(), u64::MAX);
        assert_eq!(conn.alloc_id(), 1);
        assert_eq!(conn.alloc_id(), 2);
    }

    #[test]
    fn huge_timeouts_do_not_overflow() {
        assert!(deadline_after(Duration::MAX) > Instant::now());
        assert!(remaining(deadline_after(Duration::MAX)).is_some());
        assert_eq!(remaining(deadline_after(Duration::ZERO)), None);
    }

    #[test]
    fn random_values_differ() {
        assert_ne!(random_u64(), random_u64());
    }

    #[test]
    fn connect_to_missing_socket_fails_fast() {
        let err =
            Client::connect(Path::new("/nonexistent/vm-proto.sock"), Role::Client).unwrap_err();
        assert!(matches!(err, ClientError::Connect { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "cannot connect to /nonexistent/vm-proto.sock"
        );
    }

    #[test]
    fn invalid_requests_are_refused_before_sending() {
        assert!(matches!(
            request_message("Bad Name", b""),
            Err(ClientError::Invalid(_))
        ));
        assert!(matches!(
            request_message("ok", &vec![0; crate::MAX_BODY + 1]),
            Err(ClientError::Invalid(_))
        ));
    }
}
