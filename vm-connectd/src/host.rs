//! Host mode: one link per local guest (QEMU's `vmconnectd` channel socket, QEMU listening),
//! the local socket where host modules (vm-stonithd) register, and the routing between them.
//!
//! Routing state lives here and only here: a guest's request is recorded as (link, the guest's
//! request id) under a fresh id of ours before it reaches a module, and a module's reply is
//! matched back through that record — so a reply can only reach the guest that asked, and
//! nothing a guest writes can address another guest or register as a module. Every guest has
//! its own bounded outgoing queue, in-flight limit and rate limit. Every request is bounded by
//! the deadline it carried (protocol version 2) up to `--request-timeout`, else by
//! `--request-timeout`; a module speaking version 2 is passed on what is left of it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::net::unix::OwnedReadHalf;
use tokio::net::{UnixListener, UnixStream};
use tracing::Instrument as _;
use vm_proto::liveness::{self as published, GuestLiveness, Link as LinkUp};
use vm_proto::{
    DEADLINE_VERSION, DecodeError, Deliver, ErrorCode, ErrorMsg, Frame, Hello, MIN_VERSION,
    Message, Origin, OriginSource, Pong, Reply, Retry, RetryReason, Role, ServiceName, StatusReply,
};

mod streams;

use crate::discovery::{self, Discovered};
use crate::frames::{FrameReader, Incoming, Outbox, offer, spawn_link_writer, spawn_writer};
use crate::limits::{self, ErrorBudget, OffenceLog, RateLimit};
use crate::liveness::{Heartbeat, Publisher, Tracker};
use crate::local::{self, PeerCred};
use crate::status::{HostStatus, LinkState, LinkStatus, ModuleStatus, Status};

/// Host-mode settings.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Directory holding the guests' channel sockets.
    pub sock_dir: PathBuf,
    /// The local socket for modules and admin tools.
    pub socket: PathBuf,
    /// libvirt URI for guest identities and lifecycle events (`None`: socket names only).
    pub libvirt_uri: Option<String>,
    /// This host's name, reported in Pong.
    pub node: String,
    /// Module reply deadline for a request that carries none; the cap on one that does.
    pub request_timeout: Duration,
    /// Where libvirt records each running domain's QEMU pid (`<domain>.pid`); a socket libvirt
    /// names must be served by that process.
    pub qemu_pid_dir: PathBuf,
    /// Sockets the operator names explicitly (guest name, socket path in `sock_dir`).
    pub guests: Vec<(String, PathBuf)>,
    /// The heartbeat with each guest daemon (`None`: off, every guest's liveness `unknown`).
    pub heartbeat: Option<Heartbeat>,
    /// Whether guests' liveness is published as node attributes (through attrd).
    pub publish: bool,
    /// Guests whose stream is offered on a loopback port from the start (`--expose`).
    pub expose: Vec<(String, u16)>,
}

type LinkId = u64;
type ConnId = u64;

#[derive(Debug)]
struct Link {
    path: PathBuf,
    origin: Origin,
    state: LinkState,
    outbox: Option<Outbox>,
    /// The link's queue for stream data, served after `outbox` (docs/protocol.md §16.4).
    bulk: Option<tokio::sync::mpsc::Sender<Vec<u8>>>,
    session: u64,
    /// The session of the guest daemon's last Hello on this link (docs/protocol.md §8).
    guest_session: Option<u64>,
    guest_software: String,
    /// The version negotiated from the guest daemon's last Hello (streams from
    /// [`vm_proto::STREAM_VERSION`]).
    guest_version: u8,
    /// The streams open on the link, by stream id, and how many were opened in all.
    streams: streams::Streams,
    streams_opened: u64,
    since: SystemTime,
    last_rx: Option<SystemTime>,
    last_tx: Option<SystemTime>,
    inflight: usize,
    requests: u64,
    dropped: u64,
    offences: OffenceLog,
    /// Back-offs so far, and when the current one ends.
    backoffs: u64,
    backoff_until: Option<SystemTime>,
    /// Times reading paused because the link was over its frame rate, and their log.
    rate_waits: u64,
    rate_log: OffenceLog,
    /// Bytes received on the link, and bytes its decoder ran through CRC-32C.
    received: u64,
    checksummed: u64,
    /// What the heartbeat says of the guest daemon on this link.
    liveness: Tracker,
    /// The value last published for the link (or that would be, when not publishing).
    published: Option<GuestLiveness>,
    /// Whether the guest's name was found unfit for an attribute name (logged once per link).
    unpublishable: bool,
}

impl Link {
    /// The link state the liveness attribute shows: up once connected (backed off too: the
    /// daemon still holds the channel), down while connecting.
    fn link_up(&self) -> LinkUp {
        match self.state {
            LinkState::Connecting => LinkUp::Down,
            LinkState::Up | LinkState::Backoff => LinkUp::Up,
        }
    }
}

#[derive(Debug)]
struct Module {
    conn: ConnId,
    outbox: Outbox,
    pid: i32,
    since: SystemTime,
    /// The protocol version negotiated from its Hello: from version 2 on its deliveries carry
    /// the time left.
    version: u8,
}

#[derive(Debug)]
struct Pending {
    link: LinkId,
    link_req: u64,
    module_conn: ConnId,
    service: String,
    started: Instant,
    /// The request's bound here, and whether it is the deadline the request carried.
    bound: Duration,
    carried: bool,
}

#[derive(Debug, Default)]
struct State {
    links: HashMap<LinkId, Link>,
    by_path: HashMap<PathBuf, LinkId>,
    modules: HashMap<String, Module>,
    pending: HashMap<u64, Pending>,
    /// `pending`'s keys by (link, the guest's id): the per-request lookups (a guest's Cancel,
    /// a reused id) cost O(1), not a scan of every guest's requests.
    by_link_req: HashMap<(LinkId, u64), u64>,
    next_id: u64,
    /// Guests whose stream is offered on a loopback port, by domain.
    exposed: HashMap<String, streams::Exposure>,
}

impl State {
    fn next(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn services(&self) -> Vec<ServiceName> {
        let mut s: Vec<ServiceName> = self
            .modules
            .keys()
            .filter_map(|k| ServiceName::new(k.as_str()).ok())
            .collect();
        s.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        s
    }

    fn pong(&self, node: &str) -> Message {
        match Pong::new(node, self.services()) {
            Ok(p) => Message::Pong(p),
            Err(e) => Message::Error(ErrorMsg::truncated(ErrorCode::Internal, &e.to_string())),
        }
    }

    /// Forgets the requests of `link` that are in flight at modules (all of them, or the one
    /// with the guest's id `only`) and sends each module a Cancel, so it stops or rolls back
    /// (docs/protocol.md §10). Their late answers then find no mapping and are dropped. Returns
    /// how many were cancelled.
    fn cancel_link_requests(&mut self, link: LinkId, only: Option<u64>) -> usize {
        let keys: Vec<u64> = match only {
            Some(r) => self
                .by_link_req
                .get(&(link, r))
                .copied()
                .into_iter()
                .collect(),
            None => self
                .pending
                .iter()
                .filter(|(_, p)| p.link == link)
                .map(|(k, _)| *k)
                .collect(),
        };
        for key in &keys {
            let Some(p) = self.take_pending(*key) else {
                continue;
            };
            if let Some(l) = self.links.get_mut(&link) {
                l.inflight = l.inflight.saturating_sub(1);
            }
            if let Some(m) = self.modules.values().find(|m| m.conn == p.module_conn) {
                let _ = offer(&m.outbox, Message::Cancel.to_frame(*key));
            }
            tracing::debug!(request = key, service = %p.service, "cancelled at the module");
        }
        keys.len()
    }

    /// Records a request in flight at a module under our id `key`.
    fn add_pending(&mut self, key: u64, p: Pending) {
        self.by_link_req.insert((p.link, p.link_req), key);
        self.pending.insert(key, p);
    }

    /// Forgets request `key` (answered, timed out, cancelled, or its module gone).
    fn take_pending(&mut self, key: u64) -> Option<Pending> {
        let p = self.pending.remove(&key)?;
        if self.by_link_req.get(&(p.link, p.link_req)) == Some(&key) {
            self.by_link_req.remove(&(p.link, p.link_req));
        }
        Some(p)
    }

    /// Answer a guest on its link (dropped if its queue is full: it is not reading).
    fn send_link(&mut self, link: LinkId, msg: &Message, id: u64) {
        if let Some(l) = self.links.get_mut(&link) {
            if let Some(outbox) = &l.outbox {
                if offer(outbox, msg.to_frame(id)) {
                    l.last_tx = Some(SystemTime::now());
                } else {
                    l.dropped += 1;
                    tracing::warn!(guest = %l.origin.domain(), "guest is not reading its channel; dropped a frame for it");
                }
            }
        }
    }
}

/// The daemon's shared state.
#[derive(Debug)]
pub struct Host {
    cfg: HostConfig,
    state: Mutex<State>,
    /// The liveness attributes' writer (`None`: not publishing).
    publisher: Option<Publisher>,
}

/// How long a stopping daemon waits for its liveness attributes to be deleted.
const UNPUBLISH_DEADLINE: Duration = Duration::from_secs(20);

impl Host {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that
        // matters more than stopping the daemon would; keep serving.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Errors that stop the host daemon from starting.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The local socket could not be set up.
    #[error(transparent)]
    Local(#[from] local::LocalError),
    /// The guest socket directory could not be watched.
    #[error(transparent)]
    Discovery(#[from] discovery::DiscoveryError),
    /// The thread that publishes liveness attributes could not be started.
    #[error("cannot start the thread that publishes guests' liveness")]
    Publisher(#[source] std::io::Error),
    /// An `--expose` endpoint could not be offered.
    #[error("--expose {domain}={port}: {message}")]
    Expose {
        /// The guest.
        domain: String,
        /// The port.
        port: u16,
        /// Why.
        message: String,
    },
}

/// Run host mode until `shutdown` completes.
pub async fn run(
    cfg: HostConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), HostError> {
    let publisher = if cfg.publish {
        Some(Publisher::start(crate::liveness::Attrd).map_err(HostError::Publisher)?)
    } else {
        None
    };
    let host = Arc::new(Host {
        cfg: cfg.clone(),
        state: Mutex::new(State::default()),
        publisher,
    });
    let (listener, _socket_file) = local::bind(&cfg.socket)?;
    for (domain, port) in &cfg.expose {
        streams::expose(&host, domain, *port).map_err(|e| HostError::Expose {
            domain: domain.clone(),
            port: *port,
            message: e.message().to_owned(),
        })?;
    }
    let (found_tx, mut found_rx) = tokio::sync::mpsc::channel::<Discovered>(1024);
    let _discovery = discovery::start(
        &cfg.sock_dir,
        cfg.libvirt_uri.clone(),
        cfg.guests.clone(),
        found_tx,
    )?;
    tracing::info!(
        socket = %cfg.socket.display(),
        dir = %cfg.sock_dir.display(),
        libvirt = cfg.libvirt_uri.as_deref().unwrap_or("(off)"),
        "vm-connectd host mode started"
    );
    vm_common::notify::ready();
    let accept = accept_loop(Arc::clone(&host), listener);
    let links = async {
        while let Some(found) = found_rx.recv().await {
            ensure_link(&host, found);
        }
    };
    let heartbeat = heartbeat_loop(Arc::clone(&host));
    tokio::select! {
        () = shutdown => tracing::info!("shutting down"),
        () = accept => tracing::error!("local socket closed"),
        () = links => tracing::error!("guest discovery stopped"),
        () = heartbeat => tracing::error!("heartbeat stopped"),
    }
    if let Some(p) = &host.publisher {
        // the guests' liveness as this daemon saw it is void once it stops (transient
        // attributes would otherwise outlive it until the node leaves the cluster)
        let left = p.shutdown(UNPUBLISH_DEADLINE);
        if left > 0 {
            tracing::warn!(
                left,
                "stopping with liveness attributes not deleted (attrd did not answer)"
            );
        }
    }
    Ok(())
}

/// Sends a Heartbeat on every link whose guest daemon has said Hello, and turns guests that
/// stopped answering `silent`, every heartbeat interval (one timer for all links: 500 guests
/// cost 100 small frames a second at the default interval). Never ends when the heartbeat is
/// off.
async fn heartbeat_loop(host: Arc<Host>) {
    let Some(hb) = host.cfg.heartbeat else {
        return std::future::pending().await;
    };
    let mut tick = tokio::time::interval(hb.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (now, wall) = (Instant::now(), SystemTime::now());
        let mut st = host.lock();
        let ids: Vec<LinkId> = st.links.keys().copied().collect();
        for id in ids {
            let Some(l) = st.links.get_mut(&id) else {
                continue;
            };
            if l.liveness.tick(hb.timeout, now, wall) {
                tracing::warn!(
                    guest = %l.origin.domain(),
                    "the guest's vm-connectd has not answered for {:?}: silent",
                    hb.timeout
                );
            }
            if l.state != LinkState::Connecting && l.guest_session.is_some() {
                let hb_id = l.liveness.next_heartbeat();
                if let Some(outbox) = &l.outbox {
                    // A full queue means the guest does not read: the missing answer says
                    // so, without a log line per heartbeat.
                    if !offer(outbox, Message::Heartbeat.to_frame(hb_id)) {
                        l.dropped += 1;
                    }
                }
            }
            publish(&host, &mut st, id);
        }
    }
}

/// Queues link `id`'s liveness value for publication if it changed since the last one.
fn publish(host: &Host, st: &mut State, id: LinkId) {
    let Some(l) = st.links.get_mut(&id) else {
        return;
    };
    let Some(value) = crate::liveness::next_value(
        l.published,
        l.link_up(),
        l.liveness.state(),
        SystemTime::now(),
    ) else {
        return;
    };
    l.published = Some(value);
    tracing::info!(guest = %l.origin.domain(), liveness = %value, "guest liveness");
    let Some(p) = &host.publisher else {
        return;
    };
    match published::checked_attr_name(l.origin.domain()) {
        Some(name) => p.set(&name, Some(value.to_string())),
        None if !l.unpublishable => {
            l.unpublishable = true;
            tracing::warn!(
                guest = %l.origin.domain(),
                "the guest's name cannot be part of a node attribute name (letters, digits, \
                 '_', '-', '.', at most {} characters): its liveness is not published",
                published::MAX_ATTR_DOMAIN_LEN
            );
        }
        None => {}
    }
}

/// Start a link to a discovered guest socket unless one is already up or connecting.
fn ensure_link(host: &Arc<Host>, found: Discovered) {
    let id = {
        let mut st = host.lock();
        // A link's identity is fixed when it is made: libvirt mode names links only from
        // libvirt, socket-name mode only from file names.
        if st.by_path.contains_key(&found.path) {
            return;
        }
        let id = st.next();
        st.by_path.insert(found.path.clone(), id);
        st.links.insert(
            id,
            Link {
                path: found.path.clone(),
                origin: found.origin.clone(),
                state: LinkState::Connecting,
                outbox: None,
                bulk: None,
                session: crate::rand_u64(),
                guest_session: None,
                guest_software: String::new(),
                guest_version: MIN_VERSION,
                streams: streams::Streams::new(),
                streams_opened: 0,
                since: SystemTime::now(),
                last_rx: None,
                last_tx: None,
                inflight: 0,
                requests: 0,
                dropped: 0,
                offences: OffenceLog::default(),
                backoffs: 0,
                backoff_until: None,
                rate_waits: 0,
                rate_log: OffenceLog::default(),
                received: 0,
                checksummed: 0,
                liveness: Tracker::new(SystemTime::now()),
                published: None,
                unpublishable: false,
            },
        );
        publish(host, &mut st, id);
        id
    };
    tokio::spawn(link_task(Arc::clone(host), id, found));
}

/// Connect to a guest's socket (QEMU listens; right after QEMU creates the file it may not be
/// listening yet, so retry with a growing delay for a bounded time), then serve the link.
async fn link_task(host: Arc<Host>, id: LinkId, found: Discovered) {
    let name = found.origin.domain().to_owned();
    let stream = connect_with_backoff(&found.path).await;
    let Some(stream) = stream else {
        tracing::info!(guest = %name, socket = %found.path.display(), "guest socket is not accepting connections; waiting for the next event");
        forget_link(&host, id);
        return;
    };
    if found.origin.source() == OriginSource::Libvirt {
        let peer = local::peer_cred(&stream).pid;
        if let Err(e) = discovery::check_listener(&found.origin, peer, &host.cfg.qemu_pid_dir).await
        {
            tracing::warn!(guest = %name, socket = %found.path.display(), "refused the guest socket: {}", vm_common::error_chain(&e));
            forget_link(&host, id);
            return;
        }
    }
    let (rd, wr) = stream.into_split();
    let (outbox, bulk) = spawn_link_writer(wr, format!("guest {name}"));
    let session = {
        let mut st = host.lock();
        let Some(l) = st.links.get_mut(&id) else {
            return;
        };
        l.state = LinkState::Up;
        l.outbox = Some(outbox.clone());
        l.bulk = Some(bulk);
        l.since = SystemTime::now();
        let session = l.session;
        publish(&host, &mut st, id);
        session
    };
    tracing::info!(guest = %name, socket = %found.path.display(), source = ?found.origin.source(), "connected to guest");
    // The guest learns that a (new) host serves it: requests it had in flight elsewhere are
    // void, and it tells its clients to retry.
    let hello = Message::Hello(Hello::current_streams(Role::HostDaemon, session));
    let _ = offer(&outbox, hello.to_frame(0));
    let span = tracing::info_span!("guest link", guest = %name);
    read_link(&host, id, FrameReader::new(rd))
        .instrument(span)
        .await;
    tracing::info!(guest = %name, "guest link closed");
    forget_link(&host, id);
}

/// Reads and handles what a guest sends until its link closes, within the link's bounds
/// (docs/protocol.md §4, §11): one rate token per item (frame or violation), reading paused
/// while none is left; a violation budget, past which the link is not read for a back-off
/// period; partial frames given up after a stall; and a yield to the other links every
/// `ITEMS_PER_WAKEUP` items. Pausing rather than dropping is what bounds the work a flooding
/// guest causes: its bytes wait in its own channel, not in this daemon.
async fn read_link(host: &Arc<Host>, id: LinkId, mut reader: FrameReader<OwnedReadHalf>) {
    let mut rate = RateLimit::default();
    let mut stream_rate = RateLimit::new(limits::STREAM_RATE_PER_SEC, limits::STREAM_RATE_BURST);
    let mut budget = ErrorBudget::default();
    let mut handled = 0usize;
    loop {
        while let Err(wait) = rate.take() {
            if let Some(l) = host.lock().links.get_mut(&id) {
                l.rate_waits += 1;
                if let Some(more) = l.rate_log.record("rate") {
                    tracing::warn!(
                        "guest sends more than {} frames/s; reading its channel only as fast \
                         ({more} more pauses since the last report)",
                        limits::RATE_PER_SEC
                    );
                }
            }
            tokio::time::sleep(wait).await;
        }
        let violated = match reader.next_within(limits::STALL_TIMEOUT).await {
            Ok(Some(Incoming::Frame(frame))) if frame.kind() == vm_proto::Kind::StreamData => {
                // stream data is charged to its own, faster bucket (limits::STREAM_RATE_PER_SEC)
                rate.refund();
                while let Err(wait) = stream_rate.take() {
                    tokio::time::sleep(wait).await;
                }
                on_guest_frame(host, id, frame)
            }
            Ok(Some(Incoming::Frame(frame))) => on_guest_frame(host, id, frame),
            Ok(Some(Incoming::Offence(e))) => {
                offence(host, id, decode_error_kind(&e), &e.to_string());
                true
            }
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error = %e, "read failed");
                break;
            }
        };
        {
            let mut st = host.lock();
            let Some(l) = st.links.get_mut(&id) else {
                break;
            };
            l.received = reader.received();
            l.checksummed = reader.checksummed();
        }
        if violated {
            if let Some(period) = budget.violation(Instant::now()) {
                if !back_off(host, id, period, reader.get_ref()).await {
                    break;
                }
            }
        }
        handled += 1;
        if handled >= limits::ITEMS_PER_WAKEUP {
            handled = 0;
            tokio::task::yield_now().await;
        }
    }
}

/// How often a backed-off link is checked for a hang-up.
const BACKOFF_HANGUP_CHECK: Duration = Duration::from_secs(1);

/// The link went past its violation budget: do not read it for `period` (what it sends waits
/// in its channel; answers to it still go out). Logged once per back-off. Returns false if the
/// guest side hung up meanwhile: without reading, only the socket's read-closed readiness
/// tells, and a link left in place would make discovery ignore the socket of a restarted
/// guest for up to `BACKOFF_MAX`.
async fn back_off(host: &Host, id: LinkId, period: Duration, rd: &OwnedReadHalf) -> bool {
    {
        let mut st = host.lock();
        let Some(l) = st.links.get_mut(&id) else {
            return false;
        };
        l.backoffs += 1;
        l.state = LinkState::Backoff;
        l.backoff_until = SystemTime::now().checked_add(period);
        tracing::warn!(
            backoffs = l.backoffs,
            "guest exceeded {} protocol violations within {:?}; not reading its channel for {period:?}",
            limits::VIOLATION_BUDGET,
            limits::VIOLATION_WINDOW
        );
    }
    let end = tokio::time::Instant::now() + period;
    while tokio::time::Instant::now() < end {
        let left = end.saturating_duration_since(tokio::time::Instant::now());
        tokio::time::sleep(left.min(BACKOFF_HANGUP_CHECK)).await;
        // A zero timeout polls readiness once: ready now (data or hang-up), or not.
        if let Ok(Ok(ready)) =
            tokio::time::timeout(Duration::ZERO, rd.ready(tokio::io::Interest::READABLE)).await
        {
            if ready.is_read_closed() {
                tracing::info!("the guest side hung up during its back-off");
                return false;
            }
        }
    }
    let mut st = host.lock();
    if let Some(l) = st.links.get_mut(&id) {
        l.state = LinkState::Up;
        l.backoff_until = None;
        tracing::info!("back-off over; reading the guest's channel again");
    }
    true
}

/// The log and budget name of a decode violation: one log line per kind and period.
fn decode_error_kind(e: &DecodeError) -> &'static str {
    match e {
        DecodeError::Garbage { .. } => "garbage",
        DecodeError::HeaderChecksum { .. } => "header-checksum",
        DecodeError::UnsupportedVersion(_) => "version",
        DecodeError::Flags(_) => "flags",
        DecodeError::TooLong { .. } => "too-long",
        DecodeError::PayloadChecksum { .. } => "payload-checksum",
        DecodeError::Truncated { .. } => "truncated",
    }
}

async fn connect_with_backoff(path: &Path) -> Option<UnixStream> {
    let started = Instant::now();
    let mut delay = Duration::from_millis(20);
    loop {
        match UnixStream::connect(path).await {
            Ok(s) => return Some(s),
            Err(e) => {
                if started.elapsed() > Duration::from_secs(30) {
                    tracing::debug!(socket = %path.display(), error = %e, "giving up connecting");
                    return None;
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// Remove a link. Its requests still in flight at modules are cancelled there: nobody is left
/// to receive their answers, and an off or on carried out anyway could complete long after the
/// guest cluster recorded a failure (docs/protocol.md §10). Late replies are dropped.
fn forget_link(host: &Host, id: LinkId) {
    let mut st = host.lock();
    let n = st.cancel_link_requests(id, None);
    if n > 0 {
        tracing::info!(
            cancelled = n,
            "guest link gone; its requests cancelled at the modules"
        );
    }
    let n = streams::abort_all(&mut st, id);
    if n > 0 {
        tracing::info!(
            closed = n,
            "guest link gone; its streams' connections closed"
        );
    }
    if let Some(l) = st.links.remove(&id) {
        st.by_path.remove(&l.path);
        // Its liveness attribute goes with it (the guest stopped or left this node), unless
        // another link serves the same domain.
        let domain = l.origin.domain();
        if let Some(p) = &host.publisher {
            if !st.links.values().any(|o| o.origin.domain() == domain) {
                if let Some(name) = published::checked_attr_name(domain) {
                    p.set(&name, None);
                }
            }
        }
    }
}

/// Counts and logs a protocol violation on link `id` (one line per `kind` and
/// `OFFENCE_LOG_INTERVAL`, repeats summarised); the caller charges the link's budget.
fn offence(host: &Host, id: LinkId, kind: &'static str, what: &str) {
    let mut st = host.lock();
    if let Some(l) = st.links.get_mut(&id) {
        if let Some(suppressed) = l.offences.record(kind) {
            let more = if suppressed > 0 {
                format!(" ({suppressed} more of this kind since the last report)")
            } else {
                String::new()
            };
            tracing::warn!(guest = %l.origin.domain(), kind, "guest protocol violation: {what}; ignored{more}");
        }
    }
}

/// Handles a sound frame from a guest; returns whether it was a protocol violation (it counts
/// against the link's budget).
fn on_guest_frame(host: &Arc<Host>, id: LinkId, frame: Frame) -> bool {
    // (a request's deadline counts from here)
    let arrived = Instant::now();
    {
        let mut st = host.lock();
        let Some(l) = st.links.get_mut(&id) else {
            return false;
        };
        l.last_rx = Some(SystemTime::now());
    }
    let req_id = frame.id();
    let msg = match frame.message() {
        Ok(m) => m,
        Err(e) => {
            offence(
                host,
                id,
                "undecodable",
                &format!("undecodable {} message: {e}", frame.kind()),
            );
            return true;
        }
    };
    match msg {
        Message::Hello(h) => {
            let mut st = host.lock();
            let (session, previous) = match st.links.get_mut(&id) {
                Some(l) => {
                    l.guest_software = h.software().to_owned();
                    l.guest_version = h.negotiated().unwrap_or(MIN_VERSION);
                    (l.session, l.guest_session.replace(h.session()))
                }
                None => return false,
            };
            if previous != Some(h.session()) {
                // A different guest daemon life behind the same channel (it restarted; the
                // socket QEMU holds stays connected). Its link ids start again, so an answer
                // to the previous life's request could match a new request's id: everything
                // in flight for the previous life is cancelled and forgotten (§8). Nothing is
                // known yet of its liveness (§15).
                if let Some(l) = st.links.get_mut(&id) {
                    l.liveness.reset(SystemTime::now());
                }
                publish(host, &mut st, id);
                // the previous life's connections to its target are gone with it
                let closed = streams::abort_all(&mut st, id);
                if closed > 0 {
                    tracing::info!(closed, "a new guest daemon session; its streams closed");
                }
                let n = st.cancel_link_requests(id, None);
                if previous.is_some() || n > 0 {
                    tracing::info!(
                        cancelled = n,
                        "a new guest daemon session on the link; requests of the previous one cancelled"
                    );
                }
            }
            // Answer every Hello, a known session's too: a guest daemon that says Hello again
            // has not heard ours (it ignores a session it knows).
            let reply = Message::Hello(Hello::current(Role::HostDaemon, session));
            st.send_link(id, &reply, 0);
        }
        Message::Ping => {
            let mut st = host.lock();
            let pong = st.pong(&host.cfg.node);
            st.send_link(id, &pong, req_id);
        }
        Message::Request(r) => route_request(host, id, req_id, r, arrived),
        Message::Alive(a) => {
            let mut st = host.lock();
            let Some(l) = st.links.get_mut(&id) else {
                return false;
            };
            match l
                .liveness
                .on_alive(req_id, a.failing(), Instant::now(), SystemTime::now())
            {
                Some(true) => publish(host, &mut st, id),
                Some(false) => {}
                None => tracing::debug!(
                    id = req_id,
                    "an Alive for no heartbeat of this guest daemon life; dropped"
                ),
            }
        }
        Message::Cancel => {
            host.lock().cancel_link_requests(id, Some(req_id));
        }
        msg @ (Message::StreamData(_) | Message::StreamCredit(_) | Message::StreamClose(_)) => {
            return streams::on_frame(host, id, req_id, msg);
        }
        other => {
            offence(
                host,
                id,
                "forbidden-kind",
                &format!("sent a {} message, which guests may not send", other.kind()),
            );
            return true;
        }
    }
    false
}

/// Delivers a guest's request (which arrived at `arrived`) to the module serving it, under a
/// fresh id, bounded by the deadline the request carried up to `--request-timeout` (else by
/// `--request-timeout`); a module speaking version 2 gets what is left of it, less
/// [`limits::RELAY_MARGIN`].
fn route_request(
    host: &Arc<Host>,
    link: LinkId,
    link_req: u64,
    req: vm_proto::Request,
    arrived: Instant,
) {
    let mut st = host.lock();
    // A guest daemon never reuses an id while it is in flight (§7), so a request with such an
    // id comes from a new life of it whose Hello we missed (an older guest daemon counts from
    // 1 in every life): the earlier request is cancelled, or its late answer would be taken
    // for this one's.
    if st.cancel_link_requests(link, Some(link_req)) > 0 {
        tracing::info!(
            id = link_req,
            "the guest reused an id in flight; the earlier request is cancelled"
        );
    }
    let Some(l) = st.links.get_mut(&link) else {
        return;
    };
    l.requests += 1;
    if l.inflight >= limits::MAX_INFLIGHT_PER_GUEST {
        let retry = Message::Retry(Retry::truncated(
            RetryReason::Busy,
            "too many requests in flight",
        ));
        st.send_link(link, &retry, link_req);
        return;
    }
    let origin = l.origin.clone();
    let service = req.service().clone();
    let Some(module) = st.modules.get(service.as_str()) else {
        let retry = Message::Retry(Retry::truncated(
            RetryReason::NoModule,
            &format!("no {} module on host {}", service.as_str(), host.cfg.node),
        ));
        st.send_link(link, &retry, link_req);
        return;
    };
    let (outbox, conn, module_version) = (module.outbox.clone(), module.conn, module.version);
    let (bound, carried) = limits::request_bound(req.timeout(), host.cfg.request_timeout);
    let left = bound.saturating_sub(arrived.elapsed());
    let next = limits::forwarded(left).filter(|_| module_version >= DEADLINE_VERSION);
    if module_version >= DEADLINE_VERSION && next.is_none() {
        let err = Message::Error(ErrorMsg::truncated(
            ErrorCode::Timeout,
            "the request's deadline passed before it could be delivered",
        ));
        st.send_link(link, &err, link_req);
        return;
    }
    let key = st.next();
    let deliver = match Deliver::new(origin, service.clone(), req.into_body()) {
        Ok(d) => Message::Deliver(d.with_timeout(next)),
        Err(e) => {
            let err = Message::Error(ErrorMsg::truncated(ErrorCode::BadRequest, &e.to_string()));
            st.send_link(link, &err, link_req);
            return;
        }
    };
    if !offer(&outbox, deliver.to_frame(key)) {
        let retry = Message::Retry(Retry::truncated(RetryReason::Busy, "the module is busy"));
        st.send_link(link, &retry, link_req);
        return;
    }
    if let Some(l) = st.links.get_mut(&link) {
        l.inflight += 1;
    }
    st.add_pending(
        key,
        Pending {
            link,
            link_req,
            module_conn: conn,
            service: service.as_str().to_owned(),
            started: Instant::now(),
            bound,
            carried,
        },
    );
    drop(st);
    tracing::debug!(request = key, service = %service, bound_ms = bound.as_millis() as u64, carried, delivered_ms = next.map(vm_proto::TimeoutMs::as_millis), "delivered");
    let h = Arc::clone(host);
    tokio::spawn(async move {
        tokio::time::sleep(left).await;
        expire(&h, key);
    });
}

/// A module did not answer in time: the guest gets `Error Timeout`, the module a Cancel.
fn expire(host: &Host, key: u64) {
    let mut st = host.lock();
    let Some(p) = st.take_pending(key) else {
        return;
    };
    let why = if p.carried {
        format!(
            "the {} module on host {} did not answer within the request's deadline ({} ms)",
            p.service,
            host.cfg.node,
            p.bound.as_millis()
        )
    } else {
        format!("the {} module did not answer in time", p.service)
    };
    if let Some(l) = st.links.get_mut(&p.link) {
        l.inflight = l.inflight.saturating_sub(1);
        tracing::warn!(guest = %l.origin.domain(), service = %p.service, carried = p.carried, "module did not answer within {:?}", p.bound);
    }
    let err = Message::Error(ErrorMsg::truncated(ErrorCode::Timeout, &why));
    st.send_link(p.link, &err, p.link_req);
    if let Some(m) = st.modules.values().find(|m| m.conn == p.module_conn) {
        let _ = offer(&m.outbox, Message::Cancel.to_frame(key));
    }
}

/// A module answered request `key` (from connection `conn`): pass it to the guest that asked.
fn module_answer(host: &Host, conn: ConnId, key: u64, msg: Message) {
    let mut st = host.lock();
    match st.pending.get(&key) {
        Some(p) if p.module_conn == conn => {}
        Some(_) => {
            tracing::warn!(
                request = key,
                "a module answered a request it was not given; ignored"
            );
            return;
        }
        None => {
            tracing::debug!(
                request = key,
                "answer for a request no longer pending (timed out, cancelled or its guest left)"
            );
            return;
        }
    }
    let Some(p) = st.take_pending(key) else {
        return;
    };
    if let Some(l) = st.links.get_mut(&p.link) {
        l.inflight = l.inflight.saturating_sub(1);
    }
    tracing::debug!(request = key, service = %p.service, elapsed = ?p.started.elapsed(), "answered");
    st.send_link(p.link, &msg, p.link_req);
}

async fn accept_loop(host: Arc<Host>, listener: UnixListener) {
    let mut next_conn: ConnId = 0;
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "accept on the local socket failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        next_conn += 1;
        let cred = local::peer_cred(&stream);
        tokio::spawn(serve_local(Arc::clone(&host), next_conn, stream, cred));
    }
}

/// A connection on the local socket: a module (Register, then Deliver/Reply), an admin
/// (Status) or a local client (Ping).
async fn serve_local(host: Arc<Host>, conn: ConnId, stream: UnixStream, cred: PeerCred) {
    let (rd, wr) = stream.into_split();
    let outbox = spawn_writer(wr, format!("local pid {}", cred.pid));
    let mut reader = FrameReader::new(rd);
    let mut services: Vec<String> = Vec::new();
    // the protocol version negotiated from the peer's Hello (1 until one comes)
    let mut version = MIN_VERSION;
    loop {
        let frame = match reader.next().await {
            Ok(Some(Incoming::Frame(f))) => f,
            Ok(Some(Incoming::Offence(e))) => {
                tracing::warn!(pid = cred.pid, "local peer sent bad bytes: {e}");
                continue;
            }
            Ok(None) | Err(_) => break,
        };
        let id = frame.id();
        let msg = match frame.message() {
            Ok(m) => m,
            Err(e) => {
                let err =
                    Message::Error(ErrorMsg::truncated(ErrorCode::BadRequest, &e.to_string()));
                let _ = offer(&outbox, err.to_frame(id));
                continue;
            }
        };
        match msg {
            Message::Hello(h) => {
                version = h.negotiated().unwrap_or(MIN_VERSION);
                // A peer that speaks version 2 learns from our Hello that we do; to a
                // version-1 peer nothing is sent, as version 1 daemons did.
                if version >= DEADLINE_VERSION {
                    let hello = Hello::current(Role::HostDaemon, crate::rand_u64());
                    let _ = offer(&outbox, Message::Hello(hello).to_frame(0));
                }
            }
            Message::Cancel => {}
            Message::Register(r) => {
                let service = r.service().as_str().to_owned();
                let answer = register(&host, conn, &cred, &outbox, &service, version);
                if answer.is_ok() {
                    services.push(service);
                }
                let _ = offer(&outbox, accepted(answer).to_frame(id));
            }
            Message::Reply(_) | Message::Error(_) | Message::Retry(_) => {
                module_answer(&host, conn, id, msg);
            }
            Message::Ping => {
                let pong = host.lock().pong(&host.cfg.node);
                let _ = offer(&outbox, pong.to_frame(id));
            }
            Message::StatusPage(q) => {
                let reply = match status_page_json(&host, q.after()).and_then(|json| {
                    StatusReply::new(json)
                        .map_err(|e| ErrorMsg::truncated(ErrorCode::Internal, &e.to_string()))
                }) {
                    Ok(r) => Message::StatusReply(r),
                    Err(e) => Message::Error(e),
                };
                let _ = offer(&outbox, reply.to_frame(id));
            }
            Message::StreamExpose(e) => {
                let answer = if admin_allowed(&cred) {
                    streams::expose(&host, e.domain(), e.port())
                } else {
                    tracing::warn!(
                        pid = cred.pid,
                        uid = cred.uid,
                        "refused a stream endpoint change from a non-root process"
                    );
                    Err(ErrorMsg::truncated(
                        ErrorCode::Forbidden,
                        "only root may offer guests' streams",
                    ))
                };
                let _ = offer(&outbox, accepted(answer).to_frame(id));
            }
            Message::Status | Message::StatusOf(_) => {
                let only = match &msg {
                    Message::StatusOf(q) => Some(q.guest()),
                    _ => None,
                };
                let reply = match StatusReply::new(status_json(&host, only)) {
                    Ok(r) => Message::StatusReply(r),
                    Err(e) => {
                        Message::Error(ErrorMsg::truncated(ErrorCode::Internal, &e.to_string()))
                    }
                };
                let _ = offer(&outbox, reply.to_frame(id));
            }
            other => {
                let err = Message::Error(ErrorMsg::truncated(
                    ErrorCode::Unsupported,
                    &format!(
                        "{} is not accepted on the host's local socket",
                        other.kind()
                    ),
                ));
                let _ = offer(&outbox, err.to_frame(id));
            }
        }
    }
    if !services.is_empty() {
        unregister(&host, conn, &services);
    }
}

/// Register `service` for module connection `conn`: only root may serve guests, and one
/// module per service (a second one is refused, not silently swapped in).
fn register(
    host: &Host,
    conn: ConnId,
    cred: &PeerCred,
    outbox: &Outbox,
    service: &str,
    version: u8,
) -> Result<(), ErrorMsg> {
    if !admin_allowed(cred) {
        tracing::warn!(
            pid = cred.pid,
            uid = cred.uid,
            service,
            "refused a module registration from a non-root process"
        );
        return Err(ErrorMsg::truncated(
            ErrorCode::Forbidden,
            "only root may register a module",
        ));
    }
    let mut st = host.lock();
    if let Some(m) = st.modules.get(service) {
        return Err(ErrorMsg::truncated(
            ErrorCode::Forbidden,
            &format!("service {service} is already served by pid {}", m.pid),
        ));
    }
    st.modules.insert(
        service.to_owned(),
        Module {
            conn,
            outbox: outbox.clone(),
            pid: cred.pid,
            since: SystemTime::now(),
            version,
        },
    );
    tracing::info!(service, pid = cred.pid, version, "module registered");
    Ok(())
}

/// Whether a local peer may register modules and offer streams: root, or the daemon's own
/// user (which could do anything the daemon does anyway; it is what lets the daemon run
/// unprivileged in tests).
fn admin_allowed(cred: &PeerCred) -> bool {
    cred.uid == 0 || cred.uid == nix::unistd::geteuid().as_raw()
}

/// A module went away: its services are gone, and guests waiting on it are told to retry.
fn unregister(host: &Host, conn: ConnId, services: &[String]) {
    let mut st = host.lock();
    st.modules
        .retain(|s, m| !(m.conn == conn && services.contains(s)));
    let orphans: Vec<u64> = st
        .pending
        .iter()
        .filter(|(_, p)| p.module_conn == conn)
        .map(|(k, _)| *k)
        .collect();
    for key in orphans {
        if let Some(p) = st.take_pending(key) {
            if let Some(l) = st.links.get_mut(&p.link) {
                l.inflight = l.inflight.saturating_sub(1);
            }
            let retry = Message::Retry(Retry::truncated(
                RetryReason::NoModule,
                &format!("the {} module went away", p.service),
            ));
            st.send_link(p.link, &retry, p.link_req);
        }
    }
    tracing::info!(services = ?services, "module unregistered");
}

fn epoch(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The status report of `vm-connectd status`, as JSON: every guest link, or `only` that
/// guest's (`status --guest`).
fn status_json(host: &Host, only: Option<&str>) -> String {
    let st = host.lock();
    let mut guests: Vec<LinkStatus> = st
        .links
        .values()
        .filter(|l| only.is_none_or(|d| l.origin.domain() == d))
        .map(link_status)
        .collect();
    guests.sort_by(|a, b| a.domain.cmp(&b.domain));
    Status::Host(status_head(host, &st, guests)).to_json()
}

/// The answer to an admin or module command that carries no data: an empty Reply when it was
/// carried out, else the Error saying why.
fn accepted(answer: Result<(), ErrorMsg>) -> Message {
    match answer.and_then(|()| {
        Reply::new(Vec::new()).map_err(|e| ErrorMsg::truncated(ErrorCode::Internal, &e.to_string()))
    }) {
        Ok(r) => Message::Reply(r),
        Err(e) => Message::Error(e),
    }
}

/// One page of the status report (`StatusPage`, docs/protocol.md §15.5): the links whose domain
/// sorts after `after`, as many as fit one reply. Only the page's links are built; the rest
/// cost a sort key each.
fn status_page_json(host: &Host, after: &str) -> Result<String, ErrorMsg> {
    let st = host.lock();
    let mut keys: Vec<(&str, &std::path::Path, &Link)> = st
        .links
        .values()
        .filter(|l| l.origin.domain() > after)
        .map(|l| (l.origin.domain(), l.path.as_path(), l))
        .collect();
    keys.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    let head = status_head(host, &st, Vec::new());
    crate::status::page(
        head,
        keys.into_iter().map(|(_, _, l)| link_status(l)),
        vm_proto::MAX_BODY,
    )
    .map_err(|e| ErrorMsg::truncated(ErrorCode::Internal, &e.to_string()))
}

/// The status of one guest link.
fn link_status(l: &Link) -> LinkStatus {
    LinkStatus {
        domain: l.origin.domain().to_owned(),
        uuid: l.origin.uuid().to_owned(),
        identity: match l.origin.source() {
            OriginSource::Libvirt => "libvirt",
            OriginSource::SocketName => "socket-name",
            OriginSource::Configured => "configured",
        }
        .to_owned(),
        socket: l.path.display().to_string(),
        state: l.state,
        since: epoch(l.since),
        last_rx: l.last_rx.map(epoch),
        last_tx: l.last_tx.map(epoch),
        guest_software: l.guest_software.clone(),
        inflight: l.inflight,
        requests: l.requests,
        dropped: l.dropped,
        offences: l.offences.total,
        backoffs: l.backoffs,
        backoff_until: l.backoff_until.map(epoch),
        rate_waits: l.rate_waits,
        received: l.received,
        checksummed: l.checksummed,
        liveness: l.liveness.state().as_str().to_owned(),
        liveness_since: l.published.map(|p| p.since),
        last_alive: l.liveness.last_alive().map(epoch),
        failing: l.liveness.failing().to_vec(),
        streams: l.streams.len(),
        streams_opened: l.streams_opened,
    }
}

/// The host daemon's status with `guests`: node, socket directory, modules, pending requests.
fn status_head(host: &Host, st: &State, guests: Vec<LinkStatus>) -> HostStatus {
    let mut modules: Vec<ModuleStatus> = st
        .modules
        .iter()
        .map(|(s, m)| ModuleStatus {
            service: s.clone(),
            pid: m.pid,
            since: epoch(m.since),
        })
        .collect();
    modules.sort_by(|a, b| a.service.cmp(&b.service));
    let mut exposed: Vec<crate::status::Exposed> = st
        .exposed
        .iter()
        .map(|(d, e)| crate::status::Exposed {
            domain: d.clone(),
            port: e.port,
        })
        .collect();
    exposed.sort_by(|a, b| a.domain.cmp(&b.domain));
    HostStatus {
        node: host.cfg.node.clone(),
        socket_dir: host.cfg.sock_dir.display().to_string(),
        guests,
        modules,
        pending: st.pending.len(),
        exposed,
        next: None,
    }
}
