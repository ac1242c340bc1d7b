//! The daemon: registered with the host vm-connectd as the `stonith` module, it opens each
//! delivered request and decides on the connection's thread (computation only), carries it out
//! on a worker thread and answers; a power request identical to one in progress takes no worker
//! but waits for that one's outcome ([`crate::merge`]).
//!
//! One log line per request says who asked (the guest whose channel it came over), what, how
//! it ended and what set its deadline ([`DeadlineFrom`]); refusals say why. A malformed, unauthenticated or unauthorised request changes
//! nothing. The connection to vm-connectd is re-made when it drops (vm-connectd restarts), and
//! answers for requests in flight then are lost: their requesters time out or are told to
//! retry by vm-connectd, and the fences roll back (their Cancel never came, but the connection
//! loss cancels them).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use vm_proto::Origin;
use vm_proto::client::{ClientError, Delivery, Module, ModuleEvent, ModuleSender};
use vm_proto::message::{ErrorCode, RetryReason};
use vm_seal::envelope::{self, MAGIC};
use vm_seal::{
    Action, FenceReply, FenceRequest, KeyId, Name, Nonce, Outcome, PowerState, ReplayGuard,
};

use crate::authz;
use crate::config::{Config, LegacyDecrypt};
use crate::fence::{Executor, GiveUp, Job, Requester};
use crate::keys::KeyRing;
use crate::merge::{MergeKey, Merges, Participant};
use crate::plan;
use vm_common::error_chain;
use vm_fence::SERVICE;
use vm_fence::published::{self, KeyStamp, PUBLISHED_KEYS_ATTR};

/// Time kept back from a request's timeout for the reply to travel back.
const REPLY_MARGIN: Duration = Duration::from_millis(300);

/// What set a request's deadline: the shortest of the bounds [`request_time`] weighs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadlineFrom {
    /// The time the host vm-connectd still waited for the answer, carried in the Deliver
    /// (protocol version 2): the requester's remaining time, less what the way here took.
    /// Not authenticated, so it only ever shortens the deadline.
    Relay,
    /// The sealed request's own `timeout` (authenticated): what the agent said it would wait
    /// when it sealed the request.
    Sealed,
    /// vm-stonithd.toml's `max_timeout`.
    MaxTimeout,
}

impl std::fmt::Display for DeadlineFrom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DeadlineFrom::Relay => "relay",
            DeadlineFrom::Sealed => "sealed",
            DeadlineFrom::MaxTimeout => "max_timeout",
        })
    }
}

/// How long a request may take from its arrival, and what set that: the shortest of the
/// time the relay still waits (`carried`, from a version-2 Deliver), the sealed request's own
/// timeout (`sealed`; none for legacy requests) and `max_timeout`, less `REPLY_MARGIN` (0.3 s) for
/// the reply to travel back. The sealed timeout is authenticated and the relay's is not:
/// taking the shortest, a relay's value can make a fence give up (and roll back) sooner,
/// never last longer than the requester sealed; and it is what keeps the answer ahead of the
/// relays' own Error Timeout, which would otherwise race it at the deadline.
pub fn request_time(
    carried: Option<Duration>,
    sealed: Option<Duration>,
    max_timeout: Duration,
) -> (Duration, DeadlineFrom) {
    let mut limit = (max_timeout, DeadlineFrom::MaxTimeout);
    for (bound, from) in [
        (sealed, DeadlineFrom::Sealed),
        (carried, DeadlineFrom::Relay),
    ] {
        if let Some(bound) = bound.filter(|b| *b <= limit.0) {
            limit = (bound, from);
        }
    }
    (limit.0.saturating_sub(REPLY_MARGIN), limit.1)
}
/// How many requests the replay guard remembers at most, per key.
const REPLAY_CAPACITY: usize = 100_000;
/// How often journal entries are checked for leftovers while idle.
const JANITOR_PERIOD: Duration = Duration::from_secs(60);
/// Refusal log lines per origin per [`REFUSAL_LOG_PERIOD`]; past them, refusals from that
/// origin are counted, and the next line logged says how many were not.
const REFUSAL_LOG_BURST: u32 = 20;
/// The period of [`REFUSAL_LOG_BURST`].
const REFUSAL_LOG_PERIOD: Duration = Duration::from_secs(10);
/// Longest legacy request accepted (an op, a space, a token).
const MAX_LEGACY_LEN: usize = 600;

/// How a request is answered.
#[derive(Debug)]
pub enum Answer {
    /// A sealed reply.
    Sealed(Vec<u8>),
    /// A legacy plain reply (`OK` / `NG`).
    Plain(&'static str),
    /// An error frame: the request could not be opened, so no sealed reply is possible.
    Error(ErrorCode, String),
    /// Not carried out by this attempt (busy): the requester sends it again later.
    Retry(RetryReason, String),
    /// Nothing more to send: the request was answered by the execution it started
    /// ([`crate::merge`]).
    Sent,
}

/// A sealed request, opened and authorised.
#[derive(Debug)]
struct Opened {
    /// The keys in force when it was opened, and which of them sealed it (its reply is sealed
    /// with the same).
    keys: Arc<KeyRing>,
    key_id: KeyId,
    nonce: Nonce,
    request: FenceRequest,
    /// The guest cluster of the key.
    cluster: Name,
    /// The configured resource id of its target, if any.
    resource: Option<String>,
    origin: Origin,
    config: Arc<Config>,
    /// The time the host relay still waited for the answer when it delivered the request
    /// (a version-2 Deliver's `timeout_ms`), if it said.
    carried: Option<Duration>,
}

impl Opened {
    /// `reply`, sealed for this request.
    fn seal(&self, reply: FenceReply) -> Answer {
        let Some(key) = self.keys.get(self.key_id) else {
            return Answer::Error(ErrorCode::Internal, "the request's key is gone".into());
        };
        match reply.seal(key, &self.nonce) {
            Ok(b) => Answer::Sealed(b),
            Err(e) => Answer::Error(ErrorCode::Internal, format!("cannot seal the reply: {e}")),
        }
    }

    fn target(&self) -> &str {
        self.request.target.as_ref().map_or("-", Name::as_str)
    }
}

/// The daemon's state.
#[derive(Debug)]
pub struct Daemon {
    config_path: PathBuf,
    config: RwLock<Arc<Config>>,
    keys: RwLock<Arc<KeyRing>>,
    replay: Mutex<ReplayGuard>,
    executor: Executor,
    node: String,
    cancels: Mutex<HashMap<u64, Arc<AtomicBool>>>,
    /// Power requests in progress that identical ones join.
    merges: Merges,
    workers: AtomicUsize,
    /// Requests in progress per quota (see [`Daemon::quota_of`]).
    quotas: Mutex<HashMap<String, usize>>,
    refusals: RefusalLog,
}

impl Daemon {
    /// A daemon with `config` (read from `config_path`) and its keys, acting as host node
    /// `node`.
    pub fn new(
        config_path: PathBuf,
        config: Config,
        keys: KeyRing,
        executor: Executor,
        node: String,
    ) -> Daemon {
        let replay = ReplayGuard::new(config.clock_window, SystemTime::now(), REPLAY_CAPACITY);
        Daemon {
            config_path,
            config: RwLock::new(Arc::new(config)),
            keys: RwLock::new(Arc::new(keys)),
            replay: Mutex::new(replay),
            executor,
            node,
            cancels: Mutex::new(HashMap::new()),
            merges: Merges::default(),
            workers: AtomicUsize::new(0),
            quotas: Mutex::new(HashMap::new()),
            refusals: RefusalLog::default(),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn keys(&self) -> Arc<KeyRing> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Re-reads the configuration and keys (SIGHUP); keeps the old ones if the new
    /// configuration is invalid.
    pub fn reload(&self) {
        match Config::load(&self.config_path) {
            Ok(config) => match load_keys(&config) {
                Ok(keys) => {
                    self.replay
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .set_window(config.clock_window);
                    if config.socket != self.config().socket {
                        tracing::warn!("reload: a new `socket` takes effect at the next start");
                    }
                    *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
                    *self.config.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
                    tracing::info!("configuration and keys reloaded");
                    self.publish_keys();
                }
                Err(e) => tracing::error!("reload: {e}; keeping the previous configuration"),
            },
            Err(e) => tracing::error!("reload: {e}; keeping the previous configuration"),
        }
    }

    /// Publishes the keys held here as the transient node attribute [`PUBLISHED_KEYS_ATTR`] (best
    /// effort: it only serves `vm-ctl check`).
    pub fn publish_keys(&self) {
        let value = published_keys(&self.keys());
        let out = vm_common::process::Cmd::new("attrd_updater")
            .args(["--name", PUBLISHED_KEYS_ATTR, "--update"])
            .arg(&value)
            .timeout(Duration::from_secs(10))
            .run();
        match out {
            Ok(o) if o.success() => tracing::debug!(%value, "keys published"),
            Ok(o) => tracing::warn!(
                "cannot publish the keys held here for vm-ctl check: attrd_updater: {}",
                o.stderr_text().trim()
            ),
            Err(e) => tracing::warn!(
                "cannot publish the keys held here for vm-ctl check: {}",
                error_chain(&e)
            ),
        }
    }

    /// Cleans fence journal entries left by a crashed vm-stonithd or a dead node.
    pub fn janitor(&self) {
        let idle = self.workers.load(Ordering::SeqCst) == 0;
        match self.executor.janitor(&|_| !idle) {
            Ok(0) => {}
            Ok(n) => tracing::info!(cleaned = n, "fence journal checked"),
            Err(e) => tracing::warn!("cannot check the fence journal: {}", error_chain(&e)),
        }
    }

    /// Opens a sealed request from `origin` and checks who may ask what ([`authz`]); not yet
    /// whether it is fresh ([`Daemon::fresh`]), so that a request answered Retry Busy is not
    /// remembered and may be sent again. Pure computation: runs on the connection's thread.
    fn open_sealed(
        &self,
        origin: &Origin,
        body: &[u8],
        carried: Option<Duration>,
    ) -> Result<Opened, Answer> {
        let domain = origin.domain();
        let header = match envelope::peek(body) {
            Ok(h) => h,
            Err(e) => {
                self.refusals.log(domain, |more| {
                    tracing::warn!("refused: not a sealed request: {e}{more}");
                });
                return Err(Answer::Error(
                    ErrorCode::BadRequest,
                    format!("not a sealed request: {e}"),
                ));
            }
        };
        let keys = self.keys();
        let Some(key) = keys.get(header.key_id) else {
            self.refusals.log(domain, |more| {
                tracing::warn!(key_id = %header.key_id, "refused: sealed with an unknown key (not in the key directory: wrong or rotated-out key, or a forgery){more}");
            });
            return Err(Answer::Error(
                ErrorCode::Forbidden,
                format!("unknown key {}", header.key_id),
            ));
        };
        let opened = match FenceRequest::open(key, body) {
            Ok(o) => o,
            Err(e) => {
                self.refusals.log(domain, |more| {
                    tracing::warn!(key_id = %header.key_id, cluster = %key.cluster(), "refused: {e}{more}");
                });
                return Err(Answer::Error(
                    ErrorCode::Forbidden,
                    "the request failed authentication".into(),
                ));
            }
        };
        let config = self.config();
        let cluster = key.cluster().clone();
        let resource = opened.request.target.as_ref().and_then(|t| {
            config
                .clusters
                .get(&cluster)
                .and_then(|p| p.resources.get(t).cloned())
        });
        let o = Opened {
            key_id: header.key_id,
            keys: Arc::clone(&keys),
            nonce: opened.header.nonce,
            request: opened.request,
            cluster,
            resource,
            origin: origin.clone(),
            config: Arc::clone(&config),
            carried,
        };
        let Some(policy) = config.clusters.get(&o.cluster) else {
            return Err(self.refuse(
                &o,
                format!(
                    "the key belongs to guest cluster {}, which vm-stonithd.toml does not define",
                    o.cluster
                ),
            ));
        };
        if let Err(e) = authz::check(policy, &config.trusted_identities, origin, &o.request) {
            return Err(self.refuse(&o, e.to_string()));
        }
        Ok(o)
    }

    /// Refuses `o` for `why`: logged (rate-limited per origin) and answered sealed.
    fn refuse(&self, o: &Opened, why: String) -> Answer {
        let req = &o.request;
        self.refusals.log(o.origin.domain(), |more| {
            tracing::warn!(cluster = %o.cluster, action = %req.action, target = o.target(), requester = %req.requester, "refused: {why}{more}");
        });
        o.seal(FenceReply::new(Outcome::Refused, PowerState::Unknown, why))
    }

    /// Checks that `o` is fresh and not a replay, remembering it. Only after authorisation: an
    /// unauthorised flood (a stolen key used over another channel, a member naming another)
    /// must not take room in the table, which is per key so that one cluster's flood fills only
    /// its own.
    fn fresh(&self, o: &Opened) -> Result<(), Answer> {
        let fresh = self.replay.lock().unwrap_or_else(|e| e.into_inner()).check(
            o.key_id,
            o.nonce,
            o.request.timestamp,
            SystemTime::now(),
        );
        fresh.map_err(|e| self.refuse(o, e.to_string()))
    }

    /// How long `o` may take from its arrival ([`request_time`]).
    fn time_for(o: &Opened) -> (Duration, DeadlineFrom) {
        request_time(o.carried, Some(o.request.timeout), o.config.max_timeout)
    }

    fn job(o: &Opened, deadline: Instant, cancel: Arc<dyn GiveUp>) -> Job {
        Job {
            action: o.request.action,
            target: o.request.target.clone(),
            resource: o.resource.clone(),
            deadline,
            cancel,
            request: o.nonce.to_string(),
            requester: Requester {
                cluster: Some(o.cluster.clone()),
                name: Some(o.request.requester.clone()),
                origin: Name::new(o.origin.domain()).ok(),
            },
        }
    }

    /// Logs how `o` ended (one line per request), with the time it had and what set it.
    fn log_answered(o: &Opened, id: u64, received: Instant, reply: &FenceReply) {
        let req = &o.request;
        let (time, from) = Self::time_for(o);
        tracing::info!(
            id, cluster = %o.cluster, action = %req.action, target = o.target(), requester = %req.requester,
            outcome = ?reply.outcome, state = ?reply.state, elapsed_ms = received.elapsed().as_millis() as u64,
            deadline_ms = time.as_millis() as u64, deadline_from = %from,
            "{}", reply.message
        );
    }

    /// Carries out a fresh, authorised request that is not merged with others (list, status,
    /// monitor) on a worker thread, and answers it.
    fn carry_out(&self, o: &Opened, id: u64, received: Instant, cancel: Arc<AtomicBool>) -> Answer {
        if o.request.action == Action::List {
            let mut reply = FenceReply::new(
                Outcome::Done,
                PowerState::Unknown,
                "targets of this guest cluster",
            );
            if let Some(policy) = o.config.clusters.get(&o.cluster) {
                reply.targets = policy.targets.iter().cloned().collect();
            }
            tracing::info!(cluster = %o.cluster, action = "list", "answered");
            return o.seal(reply);
        }
        let job = Self::job(o, received + Self::time_for(o).0, cancel);
        let reply = self.executor.run(&job);
        Self::log_answered(o, id, received, &reply);
        o.seal(reply)
    }

    /// Answers a sealed request from `origin` in full, without merging (tests).
    #[cfg(test)]
    fn sealed(
        &self,
        origin: &Origin,
        body: &[u8],
        received: Instant,
        cancel: Arc<AtomicBool>,
    ) -> Answer {
        let o = match self.open_sealed(origin, body, None).and_then(|o| {
            self.fresh(&o)?;
            Ok(o)
        }) {
            Ok(o) => o,
            Err(answer) => return answer,
        };
        self.carry_out(&o, 0, received, cancel)
    }

    /// A requester of the power request `o` (request `id`, arrived at `received`) waiting for
    /// an execution: its reply is sealed for its own nonce, logged and sent to it. `slot_cancel`
    /// is its worker slot's cancel flag if it has one (it starts the execution); otherwise (it
    /// joins one) a flag is registered for its Cancel here and removed when it is answered.
    fn participant(
        self: &Arc<Self>,
        id: u64,
        o: Opened,
        received: Instant,
        slot_cancel: Option<Arc<AtomicBool>>,
        sender: &ModuleSender,
    ) -> Participant {
        let joined = slot_cancel.is_none();
        let cancel = slot_cancel.unwrap_or_else(|| {
            let flag = Arc::new(AtomicBool::new(false));
            self.cancels
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id, Arc::clone(&flag));
            flag
        });
        let me = Arc::clone(self);
        let sender = sender.clone();
        Participant {
            id,
            joined: received,
            deadline: received + Self::time_for(&o).0,
            cancel,
            answer: Box::new(move |reply| {
                if joined {
                    me.cancels
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&id);
                }
                Self::log_answered(&o, id, received, &reply);
                send_answer(&sender, id, o.seal(reply));
            }),
        }
    }

    fn legacy(
        &self,
        origin: &Origin,
        body: &[u8],
        carried: Option<Duration>,
        cancel: Arc<AtomicBool>,
    ) -> Answer {
        let config = self.config();
        let source = origin;
        let origin = origin.domain();
        let Some(decrypt) = &config.legacy else {
            self.refusals.log(origin, |more| {
                tracing::warn!(
                    "refused: not a sealed request, and legacy mode is off (a legacy token needs [legacy] enabled = true){more}"
                );
            });
            return Answer::Error(
                ErrorCode::BadRequest,
                "not a sealed request (legacy mode is off)".into(),
            );
        };
        let ng = |why: String| {
            self.refusals.log(origin, |more| {
                tracing::warn!("legacy request refused: {why}{more}");
            });
            Answer::Plain("NG")
        };
        if let Err(e) = authz::trusted(&config.trusted_identities, source) {
            return ng(e.to_string());
        }
        let Some((op, token)) = parse_legacy(body) else {
            return ng("not `on|off|reset|status TOKEN`".into());
        };
        // (parse_legacy accepts only the ops legacy_action knows)
        let Some(action) = legacy_action(op) else {
            return ng(format!("unknown op {op:?}"));
        };
        let clusters: Vec<_> = config
            .clusters_of_str(origin)
            .filter(|c| c.legacy)
            .collect();
        if clusters.is_empty() {
            return ng(format!(
                "{origin} is not a member of a guest cluster with legacy = true in vm-stonithd.toml"
            ));
        }
        let rsc = match decrypt_legacy(decrypt, token) {
            Ok(r) => r,
            Err(e) => return ng(format!("the token does not decrypt: {e}")),
        };
        // (a legacy request has no timeout of its own: the relay's, when it says, and
        // max_timeout; the margin only when the relay's is the shorter, as before)
        let (time, from) = match request_time(carried, None, config.max_timeout) {
            (_, DeadlineFrom::MaxTimeout) => (config.max_timeout, DeadlineFrom::MaxTimeout),
            t => t,
        };
        let deadline = Instant::now() + time;
        // which target of the requester's clusters has that resource? (the executor's handle:
        // the request's deadline bounds this read too)
        let cib = match self.executor.pcmk_until(deadline).snapshot() {
            Ok(c) => c,
            Err(e) => return ng(format!("cannot read the CIB: {}", error_chain(&e))),
        };
        let found = clusters.iter().find_map(|c| {
            c.targets
                .iter()
                .find(|t| {
                    plan::target_resource(&cib, t, c.resources.get(*t)).is_ok_and(|r| r == rsc)
                })
                .map(|t| (c.name.clone(), t.clone()))
        });
        let Some((cluster, target)) = found else {
            return ng(format!(
                "{rsc} is not the resource of a guest that {origin}'s cluster may fence"
            ));
        };
        let job = Job {
            action,
            target: Some(target.clone()),
            resource: Some(rsc.clone()),
            deadline,
            cancel,
            // the journal's request id; legacy requests have no nonce of their own
            request: format!(
                "legacy-{}",
                vm_seal::Nonce::random()
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            ),
            // a token names no requester; the cluster is the one whose target it names
            requester: Requester {
                cluster: Some(cluster),
                name: None,
                origin: Name::new(origin).ok(),
            },
        };
        let reply = self.executor.run(&job);
        let ok = reply.outcome == Outcome::Done;
        tracing::info!(action = op, %target, %rsc, outcome = ?reply.outcome, legacy = true,
            deadline_ms = time.as_millis() as u64, deadline_from = %from, "{}", reply.message);
        Answer::Plain(if ok { "OK" } else { "NG" })
    }

    /// Serves vm-connectd until `shutdown` is set, reconnecting when the connection drops.
    pub fn serve(self: &Arc<Self>, socket: &std::path::Path, shutdown: &AtomicBool) {
        let mut backoff = Duration::from_millis(200);
        let mut logged_down = false;
        while !shutdown.load(Ordering::SeqCst) {
            match Module::register(socket, SERVICE, Duration::from_secs(5)) {
                Ok(module) => {
                    tracing::info!(socket = %socket.display(), "registered with vm-connectd as the {SERVICE} module");
                    vm_common::notify::ready();
                    logged_down = false;
                    backoff = Duration::from_millis(200);
                    self.serve_connection(module, shutdown);
                }
                Err(e) => {
                    if logged_down {
                        tracing::debug!("vm-connectd still unreachable: {}", error_chain(&e));
                    } else {
                        tracing::warn!(socket = %socket.display(), "cannot register with vm-connectd (retrying): {}", error_chain(&e));
                        logged_down = true;
                    }
                }
            }
            if !shutdown.load(Ordering::SeqCst) {
                thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }

    fn serve_connection(self: &Arc<Self>, mut module: Module, shutdown: &AtomicBool) {
        let sender = match module.sender() {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("{}", error_chain(&e));
                return;
            }
        };
        let mut last_janitor = Instant::now();
        loop {
            if shutdown.load(Ordering::SeqCst) {
                return;
            }
            match module.next_event(Duration::from_millis(500)) {
                Ok(Some(ModuleEvent::Deliver(d))) => self.dispatch(d, &sender),
                Ok(Some(ModuleEvent::Cancel { id })) => {
                    if let Some(flag) = self
                        .cancels
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get(&id)
                    {
                        tracing::info!(
                            id,
                            "the requester gave up: its fence rolls back unless identical requests still wait for it"
                        );
                        flag.store(true, Ordering::SeqCst);
                        self.executor.watcher().poke();
                    }
                }
                Ok(None) => {
                    if last_janitor.elapsed() >= JANITOR_PERIOD {
                        last_janitor = Instant::now();
                        self.janitor();
                    }
                }
                Err(e) => {
                    let closed = matches!(e, ClientError::Closed);
                    tracing::warn!(
                        "connection to vm-connectd {}: reconnecting; requests in flight are cancelled",
                        if closed {
                            "closed".to_owned()
                        } else {
                            error_chain(&e)
                        }
                    );
                    self.cancel_all();
                    return;
                }
            }
        }
    }

    /// Takes delivery `d` in: a sealed request is opened and checked here (computation only);
    /// refused ones are answered at once, a power request identical to one in progress joins
    /// it ([`crate::merge`]), anything else gets a worker slot (or Retry Busy) and is carried
    /// out on a worker thread. Legacy requests go to a worker whole (their decryption may run a
    /// command).
    fn dispatch(self: &Arc<Self>, d: Delivery, sender: &ModuleSender) {
        let id = d.id;
        let received = Instant::now();
        let origin = d.deliver.origin().clone();
        let carried = d.deliver.timeout().map(vm_proto::TimeoutMs::as_duration);
        let span = tracing::info_span!("request", id, origin = origin.domain());
        let answer_to = |sender: &ModuleSender| {
            let sender = sender.clone();
            move |answer| send_answer(&sender, id, answer)
        };
        if !d.deliver.body().starts_with(&MAGIC) {
            let slot = match self.take_slot(id, origin.domain(), d.deliver.body()) {
                Ok(slot) => slot,
                Err(answer) => return send_answer(sender, id, answer),
            };
            let me = Arc::clone(self);
            let _ = self.spawn_worker(
                slot,
                move |cancel| {
                    let _e = span.enter();
                    me.legacy(&origin, d.deliver.body(), carried, cancel)
                },
                answer_to(sender),
            );
            return;
        }
        let _e = span.enter();
        let opened = match self.open_sealed(&origin, d.deliver.body(), carried) {
            Ok(o) => o,
            Err(answer) => return send_answer(sender, id, answer),
        };
        let merge = MergeKey::of(
            &opened.cluster,
            opened.request.action,
            opened.request.target.as_ref(),
        );
        let Some(key) = merge else {
            let slot = match self.take_slot(id, origin.domain(), d.deliver.body()) {
                Ok(slot) => slot,
                Err(answer) => return send_answer(sender, id, answer),
            };
            if let Err(answer) = self.fresh(&opened) {
                return send_answer(sender, id, answer);
            }
            let me = Arc::clone(self);
            let span = span.clone();
            let _ = self.spawn_worker(
                slot,
                move |cancel| {
                    let _e = span.enter();
                    me.carry_out(&opened, id, received, cancel)
                },
                answer_to(sender),
            );
            return;
        };
        // If an identical request is in progress, this one waits for its outcome, holding no
        // worker. It is taken in (or refused as a replay) under the merge table's lock, so the
        // execution cannot end in between and leave it unanswered.
        let mut opened = Some(opened);
        let joined = self.merges.join(&key, || {
            let o = opened
                .take()
                .ok_or_else(|| Answer::Error(ErrorCode::Internal, "request taken twice".into()))?;
            self.fresh(&o)?;
            Ok(self.participant(id, o, received, None, sender))
        });
        match joined {
            Some(Ok(waiting)) => {
                tracing::info!(
                    waiting,
                    "joined an identical {} of {} in progress: its outcome answers this request",
                    key.action,
                    key.target
                );
                return;
            }
            Some(Err(answer)) => return send_answer(sender, id, answer),
            None => {}
        }
        let Some(opened) = opened else {
            return;
        };
        let slot = match self.take_slot(id, origin.domain(), d.deliver.body()) {
            Ok(slot) => slot,
            Err(answer) => return send_answer(sender, id, answer),
        };
        if let Err(answer) = self.fresh(&opened) {
            return send_answer(sender, id, answer);
        }
        // each round's job: this request's, with the round's deadline and give-up condition
        let template = Self::job(&opened, received, Arc::new(AtomicBool::new(false)));
        let first = self.participant(id, opened, received, Some(slot.cancel.clone()), sender);
        let exec = self.merges.start(key.clone(), first);
        let me = Arc::clone(self);
        let run_span = span.clone();
        let run_key = key.clone();
        let run_exec = Arc::clone(&exec);
        let started = self.spawn_worker(
            slot,
            move |_| {
                let _e = run_span.enter();
                me.merges.run(&run_key, &run_exec, id, |deadline, give_up| {
                    me.executor.execute(&Job {
                        deadline,
                        cancel: give_up,
                        ..template.clone()
                    })
                });
                Answer::Sent
            },
            answer_to(sender),
        );
        if started.is_none() {
            self.merges
                .abandon(&key, &exec, "vm-stonithd cannot start a worker thread");
        }
    }

    /// Which quota a request counts against: the guest cluster whose key it is sealed with, if
    /// it came over the channel of one of that cluster's members; otherwise its channel's own.
    /// The key id is in clear, so a guest could name another cluster's key; the channel is set
    /// by the host, so what it spends is its own quota.
    fn quota_of(&self, origin: &str, body: &[u8]) -> String {
        let cluster = envelope::peek(body).ok().and_then(|h| {
            let keys = self.keys();
            let cluster = keys.get(h.key_id)?.cluster().clone();
            let config = self.config();
            let policy = config.clusters.get(&cluster)?;
            policy
                .members
                .iter()
                .any(|m| m.as_str() == origin)
                .then_some(cluster)
        });
        match cluster {
            Some(c) => format!("guest cluster {c}"),
            None => format!("the channel of {origin}"),
        }
    }

    /// Takes a worker slot for request `id` from `origin`, within `max_requests` and its
    /// quota's `max_requests_per_cluster`; when either is spent, the answer to send instead:
    /// Retry Busy (requests that wait on one guest's fence must not make other clusters'
    /// requests fail for good).
    fn take_slot(self: &Arc<Self>, id: u64, origin: &str, body: &[u8]) -> Result<Slot, Answer> {
        let config = self.config();
        let quota = self.quota_of(origin, body);
        let mut quotas = self.quotas.lock().unwrap_or_else(|e| e.into_inner());
        let taken = quotas.get(&quota).copied().unwrap_or(0);
        let busy = if self.workers.load(Ordering::SeqCst) >= config.max_requests {
            Some(format!(
                "vm-stonithd is busy ({} requests in progress); retry",
                config.max_requests
            ))
        } else if taken >= config.max_requests_per_cluster {
            Some(format!(
                "vm-stonithd is busy ({quota} has {taken} requests in progress); retry"
            ))
        } else {
            None
        };
        if let Some(why) = busy {
            drop(quotas);
            self.refusals.log(origin, |more| {
                tracing::warn!(id, origin, "refused: {why}{more}");
            });
            return Err(Answer::Retry(RetryReason::Busy, why));
        }
        *quotas.entry(quota.clone()).or_insert(0) += 1;
        self.workers.fetch_add(1, Ordering::SeqCst);
        drop(quotas);
        let cancel = Arc::new(AtomicBool::new(false));
        self.cancels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, cancel.clone());
        Ok(Slot {
            daemon: Arc::clone(self),
            id,
            quota,
            cancel,
        })
    }

    /// Runs `work` on a worker thread holding `slot`, with the request's cancel flag, and
    /// passes its answer to `send`.
    fn spawn_worker(
        self: &Arc<Self>,
        slot: Slot,
        work: impl FnOnce(Arc<AtomicBool>) -> Answer + Send + 'static,
        send: impl FnOnce(Answer) + Send + 'static,
    ) -> Option<thread::JoinHandle<()>> {
        let id = slot.id;
        let cancel = slot.cancel.clone();
        // `slot` is moved into the worker: dropped there when it ends (also by a panic), or
        // here with the closure if the thread cannot be started
        let spawned = thread::Builder::new()
            .name(format!("req-{id}"))
            .spawn(move || {
                let _slot = slot;
                // a panic (a bug) still gets the requester an answer now, not a timeout later
                let answer = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    work(cancel)
                }))
                .unwrap_or_else(|_| {
                    tracing::error!(
                        id,
                        "handling the request failed (a bug: the panic is on stderr); answered Internal"
                    );
                    Answer::Error(
                        ErrorCode::Internal,
                        "vm-stonithd failed while handling the request".into(),
                    )
                });
                send(answer);
            });
        match spawned {
            Ok(h) => Some(h),
            Err(e) => {
                tracing::error!("cannot start a worker thread: {e}");
                None
            }
        }
    }

    /// Cancels every request in flight (their fences roll back).
    pub fn cancel_all(&self) {
        for flag in self
            .cancels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
        {
            flag.store(true, Ordering::SeqCst);
        }
        self.executor.watcher().poke();
    }

    /// Waits up to `limit` for workers to finish (after [`Daemon::cancel_all`]).
    pub fn drain(&self, limit: Duration) -> bool {
        let until = Instant::now() + limit;
        while self.workers.load(Ordering::SeqCst) > 0 {
            if Instant::now() >= until {
                return false;
            }
            thread::sleep(Duration::from_millis(50));
        }
        true
    }

    /// The host node this daemon acts as.
    pub fn node(&self) -> &str {
        &self.node
    }
}

/// Refusal log lines, rate-limited per origin (the guest whose channel the request came over):
/// a guest flooding bad requests must not flood the journal, which past its own rate limit
/// drops lines of every source, the other guests' audit lines with them. Each origin may log
/// [`REFUSAL_LOG_BURST`] lines per [`REFUSAL_LOG_PERIOD`]; the refusals past them are counted,
/// and the origin's next line logged says how many were not.
#[derive(Debug, Default)]
pub(crate) struct RefusalLog {
    by_origin: Mutex<HashMap<String, RefusalBucket>>,
}

#[derive(Debug)]
struct RefusalBucket {
    since: Instant,
    logged: u32,
    unlogged: u64,
}

/// Origins remembered at most; beyond, idle ones are forgotten (origins are this host's
/// guests, so this is never reached in practice).
const REFUSAL_LOG_ORIGINS: usize = 4096;

impl RefusalLog {
    /// Calls `log` with a suffix for the line (empty, or how many refusals from `origin` were
    /// not logged since its last line) if a line from `origin` may be logged now.
    pub(crate) fn log(&self, origin: &str, log: impl FnOnce(String)) {
        if let Some(unlogged) = self.admit(origin, Instant::now()) {
            log(if unlogged == 0 {
                String::new()
            } else {
                format!(" (and {unlogged} more refusals from {origin} not logged: too many)")
            });
        }
    }

    /// Whether a line from `origin` may be logged at `now`; if so, how many were not since.
    fn admit(&self, origin: &str, now: Instant) -> Option<u64> {
        let mut map = self.by_origin.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= REFUSAL_LOG_ORIGINS && !map.contains_key(origin) {
            map.retain(|_, b| {
                b.unlogged > 0 || now.saturating_duration_since(b.since) < REFUSAL_LOG_PERIOD
            });
        }
        let b = map.entry(origin.to_owned()).or_insert(RefusalBucket {
            since: now,
            logged: 0,
            unlogged: 0,
        });
        if now.saturating_duration_since(b.since) >= REFUSAL_LOG_PERIOD {
            b.since = now;
            b.logged = 0;
        }
        if b.logged < REFUSAL_LOG_BURST {
            b.logged += 1;
            Some(std::mem::take(&mut b.unlogged))
        } else {
            b.unlogged += 1;
            None
        }
    }
}

/// A worker's hold on one of the `max_requests` slots and on its cancel flag's entry, given back
/// when dropped: a worker that panics releases them too (a lost slot was never given back, and
/// enough of them made the daemon refuse everything as busy).
struct Slot {
    daemon: Arc<Daemon>,
    id: u64,
    quota: String,
    cancel: Arc<AtomicBool>,
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field("id", &self.id)
            .field("quota", &self.quota)
            .finish_non_exhaustive()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.daemon
            .cancels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
        let mut quotas = self.daemon.quotas.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = quotas.get_mut(&self.quota) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                quotas.remove(&self.quota);
            }
        }
        self.daemon.workers.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Sends `answer` to request `id` (logged if vm-connectd is gone).
fn send_answer(sender: &ModuleSender, id: u64, answer: Answer) {
    let sent = match answer {
        Answer::Sealed(b) => sender.reply(id, &b),
        Answer::Plain(s) => sender.reply(id, s.as_bytes()),
        Answer::Error(code, msg) => sender.error(id, code, &msg),
        Answer::Retry(reason, detail) => sender.retry(id, reason, &detail),
        Answer::Sent => return,
    };
    if let Err(e) = sent {
        tracing::warn!(
            id,
            "cannot send the answer (vm-connectd gone?): {}",
            error_chain(&e)
        );
    }
}

/// The key directory cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the key directory {}: {source}", dir.display())]
pub struct KeyDirError {
    /// The directory.
    pub dir: PathBuf,
    /// Why.
    pub source: std::io::Error,
}

/// Loads the keys of the configured key directory, logging unusable files.
pub fn load_keys(config: &Config) -> Result<KeyRing, KeyDirError> {
    let (ring, problems) = KeyRing::load(&config.key_dir).map_err(|source| KeyDirError {
        dir: config.key_dir.clone(),
        source,
    })?;
    for p in problems {
        tracing::error!(file = %p.path.display(), "key not used: {}", p.problem);
    }
    for name in config.clusters.keys() {
        if ring.of_cluster(name.as_str()).next().is_none() {
            tracing::error!(cluster = %name, "guest cluster {name} has no key in {}: its requests will be refused (vm-ctl stonith keygen {name})", config.key_dir.display());
        }
    }
    Ok(ring)
}

/// The [`PUBLISHED_KEYS_ATTR`] value for `keys` (vm-fence's format, which vm-ctl parses).
pub fn published_keys(keys: &KeyRing) -> String {
    let stamps: Vec<KeyStamp> = keys.keys().iter().map(|k| KeyStamp::of(k)).collect();
    published::attr_value(&stamps)
}

fn parse_legacy(body: &[u8]) -> Option<(&str, &str)> {
    if body.len() > MAX_LEGACY_LEN {
        return None;
    }
    let text = std::str::from_utf8(body).ok()?;
    let (op, token) = text.split_once(' ')?;
    legacy_action(op)?;
    (!token.is_empty() && !token.contains(char::is_whitespace)).then_some((op, token))
}

/// The action of a legacy op (pm_kvm_tools' `on`, `off`, `reset`, `status`); `None` for any
/// other word, which is refused.
fn legacy_action(op: &str) -> Option<Action> {
    match op {
        "on" => Some(Action::On),
        "off" => Some(Action::Off),
        "reset" => Some(Action::Reboot),
        "status" => Some(Action::Status),
        _ => None,
    }
}

fn decrypt_legacy(
    how: &LegacyDecrypt,
    token: &str,
) -> Result<String, vm_seal::legacy::LegacyError> {
    use vm_seal::legacy;
    match how {
        LegacyDecrypt::Password { file, digests } => {
            let password = legacy::Password::from_file(file)?;
            legacy::decrypt_token(token, &password, digests)
        }
        LegacyDecrypt::Command {
            argv,
            stdin,
            ok_code,
        } => {
            let cmd = legacy::DecryptCommand::new(
                argv.clone(),
                *stdin,
                *ok_code,
                Duration::from_secs(10),
            )?;
            cmd.run(token)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_log::logged;

    #[test]
    fn every_legacy_op_parsed_has_its_action() {
        for (op, action) in [
            ("on", Action::On),
            ("off", Action::Off),
            ("reset", Action::Reboot),
            ("status", Action::Status),
        ] {
            let body = format!("{op} U2FsdGVkX1abc");
            assert_eq!(parse_legacy(body.as_bytes()), Some((op, "U2FsdGVkX1abc")));
            assert_eq!(legacy_action(op), Some(action), "{op}");
        }
        for op in ["reboot", "list", "ON", ""] {
            assert_eq!(legacy_action(op), None, "{op:?}");
            assert_eq!(parse_legacy(format!("{op} U2FsdGVkX1abc").as_bytes()), None);
        }
    }

    #[test]
    fn the_shortest_bound_sets_the_deadline_and_a_relay_can_only_shorten_it() {
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        // the relay's carried time (the requester's, less the way here) is the usual winner
        assert_eq!(
            request_time(Some(ms(4800)), Some(s(5)), s(55)),
            (ms(4500), DeadlineFrom::Relay)
        );
        // a relay claiming more than the sealed timeout gains nothing: the authenticated one
        assert_eq!(
            request_time(Some(s(3600)), Some(s(5)), s(55)),
            (ms(4700), DeadlineFrom::Sealed)
        );
        // nor more than max_timeout
        assert_eq!(
            request_time(Some(s(3600)), Some(s(3600)), s(55)),
            (ms(54_700), DeadlineFrom::MaxTimeout)
        );
        // a version-1 relay says nothing: the sealed timeout, as before
        assert_eq!(
            request_time(None, Some(s(40)), s(55)),
            (ms(39_700), DeadlineFrom::Sealed)
        );
        assert_eq!(
            request_time(None, None, s(55)),
            (ms(54_700), DeadlineFrom::MaxTimeout)
        );
        // a relay lying short makes the fence give up early (it is then rolled back)
        assert_eq!(
            request_time(Some(ms(1)), Some(s(40)), s(55)),
            (Duration::ZERO, DeadlineFrom::Relay)
        );
        assert_eq!(DeadlineFrom::Relay.to_string(), "relay");
    }

    #[test]
    fn legacy_bodies_are_parsed_strictly() {
        assert_eq!(
            parse_legacy(b"off U2FsdGVkX1abc"),
            Some(("off", "U2FsdGVkX1abc"))
        );
        assert_eq!(parse_legacy(b"reset x"), Some(("reset", "x")));
        for bad in [
            &b"kill x"[..],
            b"off",
            b"off ",
            b"off a b",
            b"off a\n",
            b"\xff x",
        ] {
            assert_eq!(parse_legacy(bad), None, "{bad:?}");
        }
        assert_eq!(parse_legacy(&[b'a'; 700]), None);
    }

    fn n(s: &str) -> Name {
        Name::new(s).unwrap()
    }

    fn copy(k: &vm_seal::Key) -> vm_seal::Key {
        vm_seal::Key::parse(&k.to_file_text(), None).unwrap()
    }

    /// A daemon (not connected to anything) for guest clusters `web` (web1, web2) and `db`
    /// (db1), holding `keys`, remembering at most `replay` requests per key.
    fn daemon(keys: Vec<vm_seal::Key>, replay: usize) -> Daemon {
        daemon_on(vm_pcmk::Pacemaker::live(), keys, replay)
    }

    /// [`daemon`] whose executor acts on `pcmk`.
    fn daemon_on(pcmk: vm_pcmk::Pacemaker, keys: Vec<vm_seal::Key>, replay: usize) -> Daemon {
        let config = Config::parse(
            "[[cluster]]\nname = \"web\"\nmembers = [\"web1\", \"web2\"]\n\
             [[cluster]]\nname = \"db\"\nmembers = [\"db1\"]\n",
            std::path::Path::new("t.toml"),
        )
        .unwrap();
        let executor = Executor::new(pcmk, crate::watch::Watcher::manual(), "n1".into());
        let d = Daemon::new(
            PathBuf::from("t.toml"),
            config,
            KeyRing::from_keys(keys),
            executor,
            "n1".into(),
        );
        *d.replay.lock().unwrap() = ReplayGuard::new(
            Duration::from_secs(30),
            SystemTime::now() - Duration::from_secs(60),
            replay,
        );
        d
    }

    /// Sends a `list` sealed under `key` as `requester` over `origin`'s channel (libvirt's
    /// domain); the reply.
    fn list(d: &Daemon, key: &vm_seal::Key, origin: &str, requester: &str) -> FenceReply {
        let origin = Origin::new(origin, "", vm_proto::OriginSource::Libvirt).unwrap();
        list_from(d, key, &origin, requester)
    }

    fn list_from(d: &Daemon, key: &vm_seal::Key, origin: &Origin, requester: &str) -> FenceReply {
        let (nonce, body) =
            FenceRequest::new(Action::List, None, n(requester), Duration::from_secs(5))
                .unwrap()
                .seal(key)
                .unwrap();
        match d.sealed(origin, &body, Instant::now(), Arc::default()) {
            Answer::Sealed(b) => FenceReply::open(key, &nonce, &b).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_legacy_request_from_a_guest_known_by_its_socket_name_is_refused() {
        use vm_proto::OriginSource;
        let d = daemon(vec![], 4);
        let mut config = Config::parse(
            "[[cluster]]\nname = \"web\"\nmembers = [\"web1\"]\nlegacy = true\n\
             [legacy]\nenabled = true\npassword_file = \"/nonexistent\"\n",
            std::path::Path::new("t.toml"),
        )
        .unwrap();
        config.max_requests = 4;
        *d.config.write().unwrap() = Arc::new(config);
        let named = Origin::new("web1", "", OriginSource::SocketName).unwrap();
        let log = logged(|| {
            let a = d.legacy(&named, b"off U2FsdGVkX1abc", None, Arc::default());
            assert!(matches!(a, Answer::Plain("NG")), "{a:?}");
        });
        assert!(log.contains("does not trust"), "{log}");
        // from libvirt's guest the same request gets as far as decrypting the token
        let lv = Origin::new("web1", "", OriginSource::Libvirt).unwrap();
        let log = logged(|| {
            let a = d.legacy(&lv, b"off U2FsdGVkX1abc", None, Arc::default());
            assert!(matches!(a, Answer::Plain("NG")), "{a:?}");
        });
        assert!(log.contains("does not decrypt"), "{log}");
    }

    #[test]
    fn a_legacy_request_reads_the_cib_through_the_executors_handle() {
        use std::os::unix::fs::PermissionsExt;
        use vm_proto::OriginSource;
        use vm_seal::legacy;
        let dir = tempfile::tempdir().unwrap();
        let password_file = dir.path().join("password");
        std::fs::write(&password_file, "secret\n").unwrap();
        std::fs::set_permissions(&password_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let password = legacy::Password::from_file(&password_file).unwrap();
        let token = legacy::encrypt_token("prmVMCTL_web1", &password, legacy::Digest::Md5).unwrap();
        // a CIB file that does not exist: the read fails, and says which CIB it tried
        let cib = dir.path().join("absent.xml");
        let pcmk = vm_pcmk::Pacemaker::file(&cib);
        let d = daemon_on(pcmk.clone(), vec![], 4);
        let mut config = Config::parse(
            &format!(
                "[[cluster]]\nname = \"web\"\nmembers = [\"web1\"]\nlegacy = true\n\
                 [legacy]\nenabled = true\npassword_file = \"{}\"\n",
                password_file.display()
            ),
            std::path::Path::new("t.toml"),
        )
        .unwrap();
        config.max_requests = 4;
        *d.config.write().unwrap() = Arc::new(config);
        let web1 = Origin::new("web1", "", OriginSource::Libvirt).unwrap();
        let log = logged(|| {
            let a = d.legacy(
                &web1,
                format!("status {token}").as_bytes(),
                None,
                Arc::default(),
            );
            assert!(matches!(a, Answer::Plain("NG")), "{a:?}");
        });
        assert!(log.contains("cannot read the CIB"), "{log}");
        assert_eq!(pcmk.reads().cib, 1, "{log}");
    }

    #[test]
    fn a_guest_known_by_its_socket_name_is_refused_unless_the_operator_trusts_that() {
        use vm_proto::OriginSource;
        let web = vm_seal::Key::generate("web").unwrap();
        let d = daemon(vec![copy(&web)], 4);
        // vm-connectd --no-libvirt: anyone who can create <dir>/web1 is "web1"
        let named = Origin::new("web1", "", OriginSource::SocketName).unwrap();
        let log = logged(|| {
            for _ in 0..3 {
                let r = list_from(&d, &web, &named, "web1");
                assert_eq!(r.outcome, Outcome::Refused, "{r:?}");
                assert!(r.message.contains("does not trust"), "{r:?}");
            }
        });
        assert!(
            log.contains("refused") && log.contains("socket-name"),
            "{log}"
        );
        assert_eq!(
            d.replay.lock().unwrap().len(),
            0,
            "refused before freshness"
        );
        // the same guest known by libvirt, or by the operator's --guest mapping, is served
        assert_eq!(list(&d, &web, "web1", "web1").outcome, Outcome::Done);
        let mapped = Origin::new("web1", "", OriginSource::Configured).unwrap();
        assert_eq!(list_from(&d, &web, &mapped, "web1").outcome, Outcome::Done);
        // an operator without libvirt opts in
        let mut config = (*d.config()).clone();
        config.trusted_identities.push(OriginSource::SocketName);
        *d.config.write().unwrap() = Arc::new(config);
        assert_eq!(list_from(&d, &web, &named, "web1").outcome, Outcome::Done);
    }

    #[test]
    fn unauthorised_requests_do_not_fill_the_replay_table() {
        let web = vm_seal::Key::generate("web").unwrap();
        let db = vm_seal::Key::generate("db").unwrap();
        let d = daemon(vec![copy(&web), copy(&db)], 4);
        // a flood with web's key over a channel that is not web's (a stolen key, or a guest of
        // another cluster): every one refused...
        for _ in 0..10 {
            let r = list(&d, &web, "db1", "db1");
            assert_eq!(r.outcome, Outcome::Refused, "{r:?}");
            assert!(r.message.contains("not a member"), "{r:?}");
        }
        // ...and nothing of it remembered: both clusters are still served
        assert_eq!(d.replay.lock().unwrap().len(), 0);
        assert_eq!(list(&d, &web, "web1", "web1").outcome, Outcome::Done);
        assert_eq!(list(&d, &db, "db1", "db1").outcome, Outcome::Done);
    }

    #[test]
    fn a_cluster_flooding_its_own_key_locks_out_only_itself() {
        let web = vm_seal::Key::generate("web").unwrap();
        let db = vm_seal::Key::generate("db").unwrap();
        let d = daemon(vec![copy(&web), copy(&db)], 4);
        for _ in 0..4 {
            assert_eq!(list(&d, &web, "web2", "web2").outcome, Outcome::Done);
        }
        let r = list(&d, &web, "web2", "web2");
        assert_eq!(r.outcome, Outcome::Refused, "{r:?}");
        assert!(r.message.contains("too many requests"), "{r:?}");
        assert_eq!(list(&d, &db, "db1", "db1").outcome, Outcome::Done);
    }

    /// A daemon like [`daemon`] with `max_requests` and `max_requests_per_cluster`.
    fn daemon_limited(keys: Vec<vm_seal::Key>, max: usize, per_cluster: usize) -> Daemon {
        let d = daemon(keys, 100);
        let mut config = (*d.config()).clone();
        config.max_requests = max;
        config.max_requests_per_cluster = per_cluster;
        *d.config.write().unwrap() = Arc::new(config);
        d
    }

    fn sealed_list(key: &vm_seal::Key, requester: &str) -> Vec<u8> {
        FenceRequest::new(Action::List, None, n(requester), Duration::from_secs(5))
            .unwrap()
            .seal(key)
            .unwrap()
            .1
    }

    #[test]
    fn one_busy_cluster_gets_retry_busy_and_leaves_room_for_the_others() {
        let web = vm_seal::Key::generate("web").unwrap();
        let db = vm_seal::Key::generate("db").unwrap();
        let d = Arc::new(daemon_limited(vec![copy(&web), copy(&db)], 4, 2));
        let w = sealed_list(&web, "web1");
        let held: Vec<Slot> = (0..2)
            .map(|i| d.take_slot(i, "web1", &w).unwrap())
            .collect();
        // web's quota is spent: the answer is Retry Busy (not a final error), naming why
        match d.take_slot(9, "web2", &w) {
            Err(Answer::Retry(RetryReason::Busy, why)) => {
                assert!(why.contains("guest cluster web"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        // another cluster is served meanwhile
        let b = sealed_list(&db, "db1");
        let db_slot = d.take_slot(10, "db1", &b).unwrap();
        // a guest of db naming web's key (its id is in clear) spends db1's own quota, not web's
        let _forged = d.take_slot(11, "db1", &w).unwrap();
        // the daemon as a whole is full now
        match d.take_slot(12, "db1", &b) {
            Err(Answer::Retry(RetryReason::Busy, why)) => {
                assert!(why.contains("4 requests"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        drop(db_slot);
        drop(held);
        let again = d.take_slot(13, "web1", &w).unwrap();
        assert_eq!(d.workers.load(Ordering::SeqCst), 2);
        drop(again);
        assert_eq!(d.workers.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_panicking_worker_releases_its_slot_and_is_answered() {
        let d = Arc::new(daemon(vec![], 4));
        let (tx, rx) = std::sync::mpsc::channel();
        let slot = d.take_slot(7, "web1", b"x").unwrap();
        let h = d
            .spawn_worker(
                slot,
                |_| panic!("a bug in the request's handling"),
                move |a| tx.send(a).unwrap(),
            )
            .unwrap();
        let _ = h.join();
        assert_eq!(
            d.workers.load(Ordering::SeqCst),
            0,
            "the slot was not released"
        );
        assert!(d.cancels.lock().unwrap().is_empty());
        match rx.try_recv() {
            Ok(Answer::Error(ErrorCode::Internal, m)) => assert!(m.contains("failed"), "{m}"),
            other => panic!("the requester must get an answer: {other:?}"),
        }
    }

    #[test]
    fn refusals_are_logged_throttled_per_origin() {
        let web = vm_seal::Key::generate("web").unwrap();
        let d = daemon(vec![copy(&web)], 4);
        let log = logged(|| {
            // a flood of refused requests from one guest...
            for _ in 0..500 {
                assert_eq!(list(&d, &web, "db1", "db1").outcome, Outcome::Refused);
            }
            // ...does not silence another guest's refusal
            assert_eq!(list(&d, &web, "web1", "web2").outcome, Outcome::Refused);
        });
        let from_db1 = log.lines().filter(|l| l.contains("not a member")).count();
        assert!(
            (1..=REFUSAL_LOG_BURST as usize).contains(&from_db1),
            "{from_db1} lines for one guest's flood:\n{log}"
        );
        assert!(
            log.contains("arrived over the channel of web1"),
            "the other guest's refusal was not logged:\n{log}"
        );
    }

    #[test]
    fn the_refusal_log_counts_what_it_does_not_log_and_says_so_next_time() {
        let r = RefusalLog::default();
        let t0 = Instant::now();
        for _ in 0..REFUSAL_LOG_BURST {
            assert_eq!(r.admit("g1", t0), Some(0));
        }
        for _ in 0..5 {
            assert_eq!(r.admit("g1", t0), None);
        }
        assert_eq!(
            r.admit("g2", t0),
            Some(0),
            "another origin has its own budget"
        );
        assert_eq!(r.admit("g1", t0 + REFUSAL_LOG_PERIOD), Some(5));
        assert_eq!(r.admit("g1", t0 + REFUSAL_LOG_PERIOD), Some(0));
    }

    #[test]
    fn published_keys_are_sorted_and_secret_free() {
        let a = vm_seal::Key::generate("web").unwrap();
        let b = vm_seal::Key::generate("db").unwrap();
        let v = published_keys(&KeyRing::from_keys([a, b]));
        let items: Vec<&str> = v.split(',').collect();
        assert_eq!(items.len(), 2);
        assert!(
            items[0].starts_with("db:") && items[1].starts_with("web:"),
            "{v}"
        );
        assert!(items.iter().all(|i| i.split(':').count() == 3));
    }
}
