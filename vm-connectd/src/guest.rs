//! Guest mode: the port to the host on one side, local clients (vm-connect, fence agents) on
//! the other, many concurrent requests multiplexed over the one port.
//!
//! Each client request gets a fresh link id; the reply from the host is matched back to the
//! client and id that asked. When the host side changes — the port reports the host gone, or
//! a host Hello with a new session arrives (host daemon restarted, guest live-migrated to
//! another host) — every request in flight gets `Retry LinkChanged`: it may have been lost,
//! and the caller retries at the (new) host. With no host, requests get `Retry NoHost` at once.
//! Nothing waits forever: every request has a deadline, the one it carried (protocol version 2)
//! up to `--request-timeout`, else `--request-timeout`; a host speaking version 2 is passed on
//! what is left of it (docs/protocol.md §10).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;
use vm_proto::{
    DEADLINE_VERSION, Decoder, ErrorCode, ErrorMsg, Frame, Hello, MIN_VERSION, Message, Retry,
    RetryReason, Role, StatusReply,
};

fn retry(reason: RetryReason, detail: &str) -> Message {
    Message::Retry(Retry::truncated(reason, detail))
}

fn error(code: ErrorCode, message: &str) -> Message {
    Message::Error(ErrorMsg::truncated(code, message))
}

mod streams;

use crate::frames::{FrameReader, Incoming, Outbox, offer, spawn_writer};
use crate::limits;
use crate::local;
use crate::port::{self, PortEvent, PortSpec, PortWriter};
use crate::status::{GuestStatus, Status};

/// Guest-mode settings.
#[derive(Debug, Clone)]
pub struct GuestConfig {
    /// The port.
    pub port: PortSpec,
    /// The local socket for clients.
    pub socket: PathBuf,
    /// Deadline for the host's answer to a request that carries none; the cap on one that
    /// does.
    pub request_timeout: Duration,
    /// The health checks reported to the host in answers to its heartbeats.
    pub health: Vec<crate::health::Check>,
    /// How often the checks run.
    pub health_interval: Duration,
    /// Consecutive failures after which a check is reported failing.
    pub health_failures: u32,
    /// Where the streams the host opens are connected to (`None`: no streams offered).
    pub stream_target: Option<std::net::SocketAddr>,
    /// Where to keep the host cluster's Pacemaker key (`--pacemaker-authkey`), if at all.
    pub pacemaker_authkey: Option<PathBuf>,
}

/// Errors that stop the guest daemon from starting.
#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    /// The port.
    #[error(transparent)]
    Port(#[from] port::PortError),
    /// The local socket.
    #[error(transparent)]
    Local(#[from] local::LocalError),
    /// The health check thread.
    #[error("cannot start the health check thread")]
    Health(#[source] std::io::Error),
    /// The Pacemaker key thread.
    #[error("cannot start the Pacemaker key thread")]
    Authkey(#[source] std::io::Error),
}

type ClientId = u64;

#[derive(Debug)]
struct Waiting {
    client: ClientId,
    client_req: u64,
    what: &'static str,
    started: Instant,
}

#[derive(Debug, Default)]
struct State {
    up: bool,
    host_session: Option<u64>,
    /// The protocol version spoken with the host, negotiated from its Hello (version 1 until
    /// one came, and with a host whose Hello offered nothing this side speaks).
    host_version: u8,
    host_software: String,
    since: Option<SystemTime>,
    writer: Option<PortWriter>,
    clients: HashMap<ClientId, Outbox>,
    pending: HashMap<u64, Waiting>,
    next_id: u64,
    changes: u64,
    served: u64,
    offences: u64,
    /// The health checks, for the answers to heartbeats.
    health: crate::health::Health,
    /// Heartbeats answered.
    heartbeats: u64,
    /// The streams the host opened (docs/protocol.md §16).
    streams: streams::Streams,
}

impl State {
    fn next(&mut self) -> u64 {
        // 0 is not a request id (docs/protocol.md §6)
        self.next_id = self.next_id.wrapping_add(1).max(1);
        self.next_id
    }

    fn send_client(&self, client: ClientId, msg: &Message, id: u64) {
        if let Some(o) = self.clients.get(&client) {
            let _ = offer(o, msg.to_frame(id));
        }
    }

    /// Everything in flight may be lost: tell its clients to retry.
    fn fail_all(&mut self, reason: RetryReason, detail: &str) {
        let pending = std::mem::take(&mut self.pending);
        for (_, w) in pending {
            self.send_client(w.client, &retry(reason, detail), w.client_req);
        }
    }

    fn send_host(&self, frame: &Frame) -> bool {
        self.writer
            .as_ref()
            .is_some_and(|w| w.offer(frame.to_bytes()))
    }
}

struct Guest {
    cfg: GuestConfig,
    port: PathBuf,
    session: u64,
    state: Mutex<State>,
    /// Host links so far: counts every host that introduced itself with a new session (what
    /// the Pacemaker key thread, [`crate::authkey`], watches).
    links: Arc<AtomicU64>,
}

impl Guest {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn hello(&self) -> Frame {
        // streams are offered only when there is a target to connect them to
        let hello = if self.cfg.stream_target.is_some() {
            Hello::current_streams(Role::GuestDaemon, self.session)
        } else {
            Hello::current(Role::GuestDaemon, self.session)
        };
        Message::Hello(hello).to_frame(0)
    }
}

/// Run guest mode until `shutdown` completes.
pub async fn run(
    cfg: GuestConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), GuestError> {
    let port = port::resolve(&cfg.port)?;
    let (listener, _socket_file) = local::bind(&cfg.socket)?;
    let (ev_tx, ev_rx) = mpsc::channel::<PortEvent>(256);
    let writer = port::open(&port, ev_tx).await?;
    let guest = Arc::new(Guest {
        cfg: cfg.clone(),
        port: port.clone(),
        session: crate::rand_u64(),
        // Link ids start at a random value in every daemon life, as the client's do (§7): a
        // restarted daemon that counted from 1 again would reuse ids its previous life may
        // still have answers for on the way (sent before the host saw our new session).
        state: Mutex::new(State {
            next_id: crate::rand_u64() >> 1,
            health: crate::health::Health::new(cfg.health.clone(), cfg.health_failures),
            host_version: MIN_VERSION,
            ..State::default()
        }),
        links: Arc::new(AtomicU64::new(0)),
    });
    {
        let health = guest.lock().health.clone();
        health
            .start(cfg.health_interval)
            .map_err(GuestError::Health)?;
        for c in &cfg.health {
            tracing::info!(check = %c.name, "health check: {}", crate::health::describe(c));
        }
    }
    if let Some(path) = &cfg.pacemaker_authkey {
        let (socket, path, links) = (cfg.socket.clone(), path.clone(), guest.links.clone());
        tracing::info!(path = %path.display(), "keeping the host cluster's Pacemaker key");
        std::thread::Builder::new()
            .name("authkey".into())
            .spawn(move || crate::authkey::keep(socket, path, links))
            .map_err(GuestError::Authkey)?;
    }
    guest.lock().writer = Some(writer.clone());
    // The first write waits for a host side; its completion is our "host connected".
    let _ = writer.offer(guest.hello().to_bytes());
    tracing::info!(port = %port.display(), socket = %cfg.socket.display(), "vm-connectd guest mode started");
    vm_common::notify::ready();
    tokio::select! {
        () = shutdown => tracing::info!("shutting down"),
        () = port_loop(Arc::clone(&guest), ev_rx) => tracing::error!("port closed"),
        () = accept_loop(Arc::clone(&guest), listener) => tracing::error!("local socket closed"),
    }
    Ok(())
}

async fn port_loop(guest: Arc<Guest>, mut events: mpsc::Receiver<PortEvent>) {
    let mut decoder = Decoder::new();
    // Until the host introduces itself after we came up, say hello again now and then: a
    // host daemon may have been mid-frame from our previous life and swallowed the first one.
    let mut hello_retry = Duration::from_secs(2);
    // When the last bytes from the host arrived: a partial frame followed by this much silence
    // is given up (docs/protocol.md §4, "Stalls"), so the frames behind it are not held back.
    let mut last_data = Instant::now();
    loop {
        let waiting_for_host = {
            let st = guest.lock();
            st.up && st.host_session.is_none()
        };
        let stall_left = (decoder.buffered_len() > 0)
            .then(|| limits::STALL_TIMEOUT.saturating_sub(last_data.elapsed()));
        let hello_wait = waiting_for_host.then_some(hello_retry);
        let wait = match (stall_left, hello_wait) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let ev = match wait {
            None => events.recv().await,
            Some(wait) => match tokio::time::timeout(wait, events.recv()).await {
                Ok(ev) => ev,
                Err(_) => {
                    if stall_left.is_some() && last_data.elapsed() >= limits::STALL_TIMEOUT {
                        if let Some(e) = decoder.abandon_partial() {
                            host_offence(&guest, &e);
                        }
                        drain(&guest, &mut decoder);
                    }
                    if hello_wait.is_some_and(|h| h <= wait) {
                        let st = guest.lock();
                        let _ = st.send_host(&guest.hello());
                        hello_retry = (hello_retry * 2).min(Duration::from_secs(30));
                    }
                    continue;
                }
            },
        };
        let Some(ev) = ev else { return };
        match ev {
            PortEvent::Up => {
                let mut st = guest.lock();
                st.up = true;
                st.since = Some(SystemTime::now());
                hello_retry = Duration::from_secs(2);
                // (our Hello is what got through; for a socket port, say it now)
                if st.writer.as_ref().is_some_and(PortWriter::is_socket) {
                    let _ = st.send_host(&guest.hello());
                }
                tracing::info!(port = %guest.port.display(), "host side connected");
            }
            PortEvent::Down => {
                decoder = Decoder::new();
                let mut st = guest.lock();
                st.up = false;
                st.host_session = None;
                st.host_version = MIN_VERSION;
                st.changes += 1;
                streams::abort_all(&mut st);
                st.fail_all(
                    RetryReason::LinkChanged,
                    "the host side went away (host daemon restart or migration)",
                );
                // The next write waits for a host side again.
                let _ = st.send_host(&guest.hello());
                tracing::info!("host side gone; waiting for it to come back");
            }
            PortEvent::Data(bytes) => {
                last_data = Instant::now();
                decoder.feed(&bytes);
                drain(&guest, &mut decoder);
            }
        }
    }
}

/// Handles every frame and violation the decoder has ready.
fn drain(guest: &Arc<Guest>, decoder: &mut Decoder) {
    while let Some(next) = decoder.next_frame() {
        match next {
            Ok(frame) => on_host_frame(guest, frame),
            Err(e) => host_offence(guest, &e),
        }
    }
}

fn host_offence(guest: &Guest, e: &vm_proto::DecodeError) {
    guest.lock().offences += 1;
    tracing::warn!("bad bytes from the host side: {e}; skipped");
}

fn on_host_frame(guest: &Arc<Guest>, frame: Frame) {
    let id = frame.id();
    let msg = match frame.message() {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!("undecodable message from the host: {e}");
            return;
        }
    };
    let mut st = guest.lock();
    match msg {
        Message::Hello(h) => {
            if st.host_session != Some(h.session()) {
                if st.host_session.is_some() || !st.pending.is_empty() {
                    // A different host side than the one our requests went to.
                    st.changes += 1;
                    st.fail_all(
                        RetryReason::LinkChanged,
                        "a new host side took over (migration or restart)",
                    );
                    streams::abort_all(&mut st);
                }
                st.host_version = h.negotiated().unwrap_or(MIN_VERSION);
                tracing::info!(host = %h.software(), version = st.host_version, "host introduced itself");
                st.host_session = Some(h.session());
                st.host_software = h.software().to_owned();
                guest.links.fetch_add(1, Ordering::SeqCst);
                // make sure the host knows us (it may have (re)connected without our Hello)
                let _ = st.send_host(&guest.hello());
            }
        }
        Message::Heartbeat => {
            // The host asks whether we still run (docs/protocol.md §15): answer at once, with
            // the health checks that fail. Nothing else to do: the host keeps the state.
            let alive = Message::Alive(st.health.alive());
            st.heartbeats += 1;
            if !st.send_host(&alive.to_frame(id)) {
                tracing::debug!("the port is not accepting frames; a heartbeat went unanswered");
            }
        }
        Message::Pong(_) | Message::Reply(_) | Message::Retry(_) | Message::Error(_) => {
            match st.pending.remove(&id) {
                Some(w) => {
                    st.served += 1;
                    tracing::debug!(what = w.what, elapsed = ?w.started.elapsed(), "answered");
                    st.send_client(w.client, &msg, w.client_req);
                }
                None => tracing::debug!(id, "answer for a request no longer waiting; dropped"),
            }
        }
        msg @ (Message::StreamOpen(_)
        | Message::StreamData(_)
        | Message::StreamCredit(_)
        | Message::StreamClose(_)) => streams::on_frame(guest, &mut st, id, msg),
        other => {
            st.offences += 1;
            tracing::warn!(
                "the host sent a {} message, which hosts do not send to guests; ignored",
                other.kind()
            );
        }
    }
}

async fn accept_loop(guest: Arc<Guest>, listener: UnixListener) {
    let mut next: ClientId = 0;
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                next += 1;
                tokio::spawn(serve_client(Arc::clone(&guest), next, stream));
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn serve_client(guest: Arc<Guest>, client: ClientId, stream: UnixStream) {
    let (rd, wr) = stream.into_split();
    let outbox = spawn_writer(wr, format!("client {client}"));
    guest.lock().clients.insert(client, outbox.clone());
    let mut reader = FrameReader::new(rd);
    while let Ok(Some(incoming)) = reader.next().await {
        let Incoming::Frame(frame) = incoming else {
            continue;
        };
        // (a request's deadline counts from here)
        let arrived = Instant::now();
        let id = frame.id();
        match frame.message() {
            Ok(Message::Hello(h)) => {
                // A client that speaks version 2 waits for our Hello to know it may send its
                // deadline; to a version-1 client nothing is sent, as version 1 daemons did.
                if h.negotiated().is_some_and(|v| v >= DEADLINE_VERSION) {
                    let hello = Hello::current(Role::GuestDaemon, crate::rand_u64());
                    let _ = offer(&outbox, Message::Hello(hello).to_frame(0));
                }
            }
            // (a guest daemon has no guest links: a query for one, or for a page of them, gets
            // its whole status, which has no `next`)
            Ok(Message::Status | Message::StatusOf(_) | Message::StatusPage(_)) => {
                let reply = match StatusReply::new(status_json(&guest)) {
                    Ok(r) => Message::StatusReply(r),
                    Err(e) => error(ErrorCode::Internal, &e.to_string()),
                };
                let _ = offer(&outbox, reply.to_frame(id));
            }
            Ok(msg @ (Message::Ping | Message::Request(_))) => {
                forward(&guest, client, id, msg, arrived);
            }
            Ok(Message::Cancel) => {
                let mut st = guest.lock();
                let key = st
                    .pending
                    .iter()
                    .find(|(_, w)| w.client == client && w.client_req == id)
                    .map(|(k, _)| *k);
                if let Some(k) = key {
                    st.pending.remove(&k);
                    let _ = st.send_host(&Message::Cancel.to_frame(k));
                }
            }
            Ok(other) => {
                let err = error(
                    ErrorCode::Unsupported,
                    &format!("{} is not accepted here", other.kind()),
                );
                let _ = offer(&outbox, err.to_frame(id));
            }
            Err(e) => {
                let _ = offer(
                    &outbox,
                    error(ErrorCode::BadRequest, &e.to_string()).to_frame(id),
                );
            }
        }
    }
    // The client is gone: its requests are abandoned. Cancel them at the host (and through it
    // at the module), which stops or rolls back what it can (docs/protocol.md §10).
    let mut st = guest.lock();
    st.clients.remove(&client);
    let abandoned: Vec<u64> = st
        .pending
        .iter()
        .filter(|(_, w)| w.client == client)
        .map(|(k, _)| *k)
        .collect();
    for key in abandoned {
        st.pending.remove(&key);
        let _ = st.send_host(&Message::Cancel.to_frame(key));
        tracing::debug!(id = key, "client went away; request cancelled at the host");
    }
}

/// Send a client's Ping or Request (which arrived at `arrived`) to the host under a fresh id,
/// with a deadline: the one a Request carried, up to `--request-timeout`, else
/// `--request-timeout`. A host that speaks version 2 gets what is left of it, less
/// [`limits::RELAY_MARGIN`]; to a version-1 host the request goes without (it applies its
/// own fixed bound).
fn forward(guest: &Arc<Guest>, client: ClientId, client_req: u64, msg: Message, arrived: Instant) {
    let mut st = guest.lock();
    if !st.up || st.host_session.is_none() {
        st.send_client(
            client,
            &retry(RetryReason::NoHost, "no host side is connected right now"),
            client_req,
        );
        return;
    }
    let (bound, carried) = match &msg {
        Message::Request(r) => limits::request_bound(r.timeout(), guest.cfg.request_timeout),
        _ => (guest.cfg.request_timeout, false),
    };
    let left = bound.saturating_sub(arrived.elapsed());
    let next = limits::forwarded(left);
    let msg = match msg {
        Message::Request(r) if st.host_version >= DEADLINE_VERSION => {
            if next.is_none() {
                st.send_client(
                    client,
                    &error(
                        ErrorCode::Timeout,
                        "the request's deadline passed before it could be sent to the host",
                    ),
                    client_req,
                );
                return;
            }
            Message::Request(r.with_timeout(next))
        }
        Message::Request(r) => Message::Request(r.with_timeout(None)),
        other => other,
    };
    let key = st.next();
    let what = if matches!(msg, Message::Ping) {
        "ping"
    } else {
        "request"
    };
    tracing::debug!(what, bound_ms = bound.as_millis() as u64, carried, forwarded = ?next.filter(|_| carried), "forwarding to the host");
    if !st.send_host(&msg.to_frame(key)) {
        st.send_client(
            client,
            &retry(RetryReason::Busy, "the port is not accepting frames"),
            client_req,
        );
        return;
    }
    st.pending.insert(
        key,
        Waiting {
            client,
            client_req,
            what,
            started: Instant::now(),
        },
    );
    drop(st);
    let g = Arc::clone(guest);
    tokio::spawn(async move {
        tokio::time::sleep(left).await;
        let mut st = g.lock();
        if let Some(w) = st.pending.remove(&key) {
            let why = if carried {
                format!(
                    "the host did not answer within the request's deadline ({} ms, at the guest's vm-connectd)",
                    bound.as_millis()
                )
            } else {
                "the host did not answer in time".to_owned()
            };
            st.send_client(w.client, &error(ErrorCode::Timeout, &why), w.client_req);
            // Timeout upstream, Cancel downstream (§10): the caller now counts the request
            // as failed, so the module must not carry it out later.
            let _ = st.send_host(&Message::Cancel.to_frame(key));
            tracing::warn!(what = w.what, "{why}; cancelled");
        }
    });
}

fn status_json(guest: &Guest) -> String {
    let st = guest.lock();
    Status::Guest(GuestStatus {
        port: guest.port.display().to_string(),
        host_connected: st.up,
        host_session: st.host_session.map(|s| format!("{s:016x}")),
        host_software: st.host_software.clone(),
        since: st
            .since
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map(|d| d.as_secs()),
        clients: st.clients.len(),
        pending: st.pending.len(),
        host_changes: st.changes,
        answered: st.served,
        offences: st.offences,
        request_timeout_secs: limits::GUEST_REQUEST_TIMEOUT.as_secs(),
        heartbeats: st.heartbeats,
        failing: st.health.failing(),
        streams: st.streams.len(),
        streams_opened: st.streams.opened,
    })
    .to_json()
}
