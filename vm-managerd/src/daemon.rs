//! Serving the `manager` service: answers, held `wait`s, refreshes, reloads
//! (docs/protocol.md §14.3).
//!
//! Threads: the serving thread reads deliveries and cancels from the host vm-connectd and
//! answers what it can at once ([`Daemon::handle`]); the refresher ([`Daemon::refresh_loop`])
//! re-reads this node's attributes on every CIB change (and every refresh period) and answers
//! the held `wait`s whose answer changed; the serving thread answers those whose time is up.
//! Answers go out through the connection's [`ModuleSender`], which serialises frames.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use vm_proto::client::{Module, ModuleEvent, ModuleSender};
use vm_proto::message::{ErrorCode, RetryReason};

use crate::attrs::Source;
use crate::request::{self, Answer, Request, Tag, valid_value};
use crate::rules::RuleFile;
use crate::watch::Trigger;

/// The service vm-managerd registers.
pub const SERVICE: &str = "manager";
/// `wait`s held for one guest at most.
pub const MAX_HELD_PER_GUEST: usize = 4;
/// `wait`s held in all at most.
pub const MAX_HELD: usize = 1024;
/// How often refusals of one guest are logged at most.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// What to send for one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Reply with this body.
    Reply(Vec<u8>),
    /// Error.
    Error(ErrorCode, String),
    /// Retry.
    Retry(RetryReason, String),
    /// Held until the answer changes or its time is up.
    Held,
}

#[derive(Debug)]
struct Held {
    origin: String,
    names: Vec<String>,
    tag: Option<Tag>,
    deadline: Instant,
}

#[derive(Debug, Default)]
struct State {
    /// This node's attributes as last read; `None`: the last read failed, or none yet.
    attrs: Option<BTreeMap<String, String>>,
    held: HashMap<u64, Held>,
    /// Per guest: when a refusal was last logged, and how many were not logged since.
    refusals: HashMap<String, (Instant, u64)>,
}

/// The daemon's shared state.
pub struct Daemon {
    rules_path: PathBuf,
    rules: RwLock<Arc<RuleFile>>,
    node: String,
    source: Box<dyn Source>,
    state: Mutex<State>,
    sender: Mutex<Option<ModuleSender>>,
    trigger: Trigger,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon")
            .field("rules_path", &self.rules_path)
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl Daemon {
    /// A daemon answering for `node` with `rules` (read from `rules_path`, re-read on
    /// [`Daemon::reload`]), values from `source`, refreshed when `trigger` is bumped.
    pub fn new(
        rules_path: PathBuf,
        rules: RuleFile,
        node: String,
        source: Box<dyn Source>,
        trigger: Trigger,
    ) -> Daemon {
        Daemon {
            rules_path,
            rules: RwLock::new(Arc::new(rules)),
            node,
            source,
            state: Mutex::new(State::default()),
            sender: Mutex::new(None),
            trigger,
        }
    }

    fn rules(&self) -> Arc<RuleFile> {
        self.rules.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// SIGHUP: re-reads the rule file; on error keeps the rules in force and says so.
    pub fn reload(&self) {
        match RuleFile::load(&self.rules_path) {
            Ok(rules) => {
                *self.rules.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(rules);
                tracing::info!(rules = %self.rules_path.display(), "rule file re-read");
                // converted values, and so held answers, may have changed
                self.trigger.bump();
            }
            Err(e) => tracing::error!("{}; keeping the rules in force", vm_common::error_chain(&e)),
        }
    }

    /// Re-reads this node's attributes.
    pub fn refresh(&self) {
        let read = self.source.read();
        let mut st = self.state();
        match read {
            Ok(attrs) => {
                if st.attrs.is_none() {
                    tracing::info!(node = %self.node, "host node attributes read");
                }
                st.attrs = Some(attrs);
            }
            Err(e) => {
                if st.attrs.is_some() {
                    tracing::warn!(
                        "{}: guests are answered Error Internal until a read succeeds",
                        vm_common::error_chain(&e)
                    );
                } else {
                    tracing::debug!("{}", vm_common::error_chain(&e));
                }
                st.attrs = None;
            }
        }
    }

    /// The answer for `names` now, `None` when the attributes cannot be read.
    fn answer(&self, st: &State, rules: &RuleFile, names: &[String]) -> Option<Answer> {
        let attrs = st.attrs.as_ref()?;
        let values = names
            .iter()
            .map(|name| {
                let value = attrs.get(name).map(|raw| rules.convert(name, raw));
                let value = match value {
                    Some(v) if valid_value(v) => Some(v.to_owned()),
                    Some(v) => {
                        tracing::debug!(%name, len = v.len(), "value not representable to guests: answered as not set");
                        None
                    }
                    None => None,
                };
                (name.clone(), value)
            })
            .collect();
        Some(Answer {
            node: self.node.clone(),
            values,
        })
    }

    /// What to answer delivery `id` from guest `origin` (a libvirt domain name) with `body`.
    pub fn handle(&self, id: u64, origin: &str, body: &[u8], now: Instant) -> Outcome {
        let req: Request = match request::decode(body) {
            Ok(r) => r,
            Err(e) => {
                self.refused(origin, &e.to_string());
                return Outcome::Error(ErrorCode::BadRequest, e.to_string());
            }
        };
        let rules = self.rules();
        if let Some(name) = req.names.iter().find(|n| !rules.exposed_to(origin, n)) {
            let msg = format!("attribute {name} is not exposed to this guest");
            self.refused(origin, &msg);
            return Outcome::Error(ErrorCode::Forbidden, msg);
        }
        let mut st = self.state();
        let Some(answer) = self.answer(&st, &rules, &req.names) else {
            return Outcome::Error(
                ErrorCode::Internal,
                "the host node's attributes cannot be read now".into(),
            );
        };
        // (a guest after a live migration is answered at once: the benchmark times it here)
        let Some(wait) = req.wait else {
            tracing::debug!(guest = %origin, id, verb = "get", "answered at once");
            return Outcome::Reply(answer.encode());
        };
        if wait.tag != Some(answer.tag()) {
            tracing::debug!(guest = %origin, id, verb = "wait", "answered at once");
            return Outcome::Reply(answer.encode());
        }
        let of_guest = st.held.values().filter(|h| h.origin == origin).count();
        if of_guest >= MAX_HELD_PER_GUEST || st.held.len() >= MAX_HELD {
            drop(st);
            let msg = format!(
                "too many waits held ({MAX_HELD_PER_GUEST} per guest, {MAX_HELD} in all); retry"
            );
            self.refused(origin, &msg);
            return Outcome::Retry(RetryReason::Busy, msg);
        }
        st.held.insert(
            id,
            Held {
                origin: origin.to_owned(),
                names: req.names,
                tag: wait.tag,
                deadline: now + Duration::from_secs(u64::from(wait.seconds)),
            },
        );
        Outcome::Held
    }

    /// Forgets held delivery `id` (cancelled).
    pub fn cancel(&self, id: u64) {
        self.state().held.remove(&id);
    }

    /// How many `wait`s are held.
    pub fn held(&self) -> usize {
        self.state().held.len()
    }

    /// Takes out the held `wait`s whose answer changed, or whose time is up at `now`, with
    /// what to send each.
    pub fn due(&self, now: Instant) -> Vec<(u64, Outcome)> {
        let rules = self.rules();
        let mut st = self.state();
        let mut out = Vec::new();
        let ids: Vec<u64> = st.held.keys().copied().collect();
        for id in ids {
            let Some(h) = st.held.get(&id) else { continue };
            let outcome = match self.answer(&st, &rules, &h.names) {
                None => Some(Outcome::Error(
                    ErrorCode::Internal,
                    "the host node's attributes cannot be read now".into(),
                )),
                Some(a) if Some(a.tag()) != h.tag || now >= h.deadline => {
                    // when each held answer leaves (the benchmark splits the latency here)
                    tracing::debug!(
                        guest = %h.origin,
                        id,
                        tag = %a.tag(),
                        why = if Some(a.tag()) != h.tag { "changed" } else { "time is up" },
                        "held wait answered"
                    );
                    Some(Outcome::Reply(a.encode()))
                }
                Some(_) => None,
            };
            // an attribute the reloaded rules no longer expose to it ends the wait
            let outcome = match outcome {
                Some(o) => Some(o),
                None => h
                    .names
                    .iter()
                    .find(|n| !rules.exposed_to(&h.origin, n))
                    .map(|n| {
                        Outcome::Error(
                            ErrorCode::Forbidden,
                            format!("attribute {n} is not exposed to this guest"),
                        )
                    }),
            };
            if let Some(o) = outcome {
                st.held.remove(&id);
                out.push((id, o));
            }
        }
        out
    }

    fn refused(&self, origin: &str, why: &str) {
        let now = Instant::now();
        let mut st = self.state();
        let entry = st
            .refusals
            .entry(origin.to_owned())
            .or_insert((now - REFUSAL_LOG_INTERVAL * 2, 0));
        if now.duration_since(entry.0) >= REFUSAL_LOG_INTERVAL {
            let suppressed = entry.1;
            *entry = (now, 0);
            tracing::info!(guest = %origin, suppressed, "refused: {why}");
        } else {
            entry.1 += 1;
        }
        // bounded: guests come and go
        if st.refusals.len() > 4096 {
            st.refusals
                .retain(|_, (t, _)| now.duration_since(*t) < REFUSAL_LOG_INTERVAL);
        }
    }

    fn send_all(&self, outcomes: Vec<(u64, Outcome)>) {
        if outcomes.is_empty() {
            return;
        }
        let sender = self
            .sender
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let Some(sender) = sender else { return };
        for (id, o) in outcomes {
            send(&sender, id, o);
        }
    }

    /// The refresher: re-reads on every trigger (coalesced) or every `period`, then answers
    /// the held `wait`s whose answer changed. Returns when `shutdown` is set.
    pub fn refresh_loop(&self, period: Duration, shutdown: &AtomicBool) {
        let mut seen = self.trigger.count();
        while !shutdown.load(Ordering::SeqCst) {
            self.refresh();
            self.send_all(self.due(Instant::now()));
            seen = self.trigger.wait(seen, period);
            tracing::trace!(trigger = seen, "re-reading the node's attributes");
        }
    }

    /// Registers with the host vm-connectd at `socket` and serves until `shutdown` is set,
    /// registering again whenever the connection is lost.
    pub fn serve(&self, socket: &Path, shutdown: &AtomicBool) {
        let mut backoff = Duration::from_millis(200);
        let mut logged_down = false;
        while !shutdown.load(Ordering::SeqCst) {
            let module = match Module::register(socket, SERVICE, Duration::from_secs(5)) {
                Ok(m) => m,
                Err(e) => {
                    if !logged_down {
                        tracing::warn!(socket = %socket.display(), "cannot register with vm-connectd: {}; retrying", vm_common::error_chain(&e));
                        logged_down = true;
                    }
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            backoff = Duration::from_millis(200);
            logged_down = false;
            tracing::info!(socket = %socket.display(), "registered with vm-connectd as the {SERVICE} module");
            vm_common::notify::ready();
            self.serve_connection(module, shutdown);
            // the relay cancelled everything in flight on the old connection
            self.state().held.clear();
            *self.sender.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
    }

    fn serve_connection(&self, mut module: Module, shutdown: &AtomicBool) {
        let sender = match module.sender() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("{}", vm_common::error_chain(&e));
                return;
            }
        };
        *self.sender.lock().unwrap_or_else(|e| e.into_inner()) = Some(sender.clone());
        while !shutdown.load(Ordering::SeqCst) {
            match module.next_event(Duration::from_millis(200)) {
                Ok(Some(ModuleEvent::Deliver(d))) => {
                    let origin = d.deliver.origin().domain().to_owned();
                    match self.handle(d.id, &origin, d.deliver.body(), Instant::now()) {
                        Outcome::Held => {}
                        o => send(&sender, d.id, o),
                    }
                }
                Ok(Some(ModuleEvent::Cancel { id })) => self.cancel(id),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(
                        "connection to vm-connectd lost: {}; registering again",
                        vm_common::error_chain(&e)
                    );
                    return;
                }
            }
            self.send_all(self.due(Instant::now()));
        }
    }
}

fn send(sender: &ModuleSender, id: u64, outcome: Outcome) {
    let sent = match outcome {
        Outcome::Reply(body) => sender.reply(id, &body),
        Outcome::Error(code, msg) => sender.error(id, code, &msg),
        Outcome::Retry(reason, msg) => sender.retry(id, reason, &msg),
        Outcome::Held => Ok(()),
    };
    if let Err(e) = sent {
        // the connection is gone: the serving thread notices and registers again
        tracing::debug!("answer {id} not sent: {}", vm_common::error_chain(&e));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attrs::ReadError;

    #[derive(Default)]
    struct Fake(Mutex<Option<BTreeMap<String, String>>>);

    impl Source for Arc<Fake> {
        fn read(&self) -> Result<BTreeMap<String, String>, ReadError> {
            self.0
                .lock()
                .unwrap()
                .clone()
                .ok_or_else(|| ReadError::Parse("down".into()))
        }
    }

    fn set(f: &Fake, kv: &[(&str, &str)]) {
        *f.0.lock().unwrap() = Some(
            kv.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        );
    }

    fn daemon(rules: &str) -> (Daemon, Arc<Fake>) {
        let fake = Arc::new(Fake::default());
        set(
            &fake,
            &[("ping", "100"), ("disk", "normal"), ("secret", "x")],
        );
        let d = Daemon::new(
            PathBuf::from("/nonexistent"),
            RuleFile::parse(rules).unwrap(),
            "n1".into(),
            Box::new(fake.clone()),
            Trigger::default(),
        );
        d.refresh();
        (d, fake)
    }

    const RULES: &str = "[ping]\nred = eq 0\nyellow = lt 100\ngreen = eq 100\n[disk]\nred = eq ERROR\n[absent]\n[@guests]\ng1 = ping disk absent\ng2 = ping\n";

    /// The tag of a reply's first line (`ok NODE TAG`).
    fn tag_of(reply: &str) -> String {
        reply
            .lines()
            .next()
            .unwrap()
            .split(' ')
            .nth(2)
            .unwrap()
            .to_owned()
    }

    fn reply(o: &Outcome) -> String {
        match o {
            Outcome::Reply(b) => String::from_utf8(b.clone()).unwrap(),
            other => panic!("not a reply: {other:?}"),
        }
    }

    #[test]
    fn get_answers_converted_values_of_this_node() {
        let (d, _) = daemon(RULES);
        let o = d.handle(1, "g1", b"get ping disk absent", Instant::now());
        let text = reply(&o);
        let mut lines = text.lines();
        assert!(lines.next().unwrap().starts_with("ok n1 "));
        assert_eq!(
            lines.collect::<Vec<_>>(),
            ["ping=green", "disk=normal", "absent"]
        );
    }

    #[test]
    fn bad_and_unexposed_requests_get_defined_answers_and_change_nothing() {
        let (d, _) = daemon(RULES);
        let now = Instant::now();
        for body in [
            &b""[..],
            b"get",
            b"get  ping",
            b"wait - 99 ping",
            &[b'a'; 2000],
        ] {
            assert!(
                matches!(
                    d.handle(1, "g1", body, now),
                    Outcome::Error(ErrorCode::BadRequest, _)
                ),
                "{body:?}"
            );
        }
        // unexposed to this guest, unknown to the file, and a host attribute without a group:
        // all the same answer
        for (guest, body) in [
            ("g2", "get disk"),
            ("g1", "get nosuch"),
            ("g1", "get secret"),
            ("g3", "get ping"),
        ] {
            match d.handle(1, guest, body.as_bytes(), now) {
                Outcome::Error(ErrorCode::Forbidden, m) => {
                    assert!(m.ends_with("is not exposed to this guest"), "{m}");
                }
                other => panic!("{guest} {body}: {other:?}"),
            }
        }
        assert_eq!(d.held(), 0);
    }

    #[test]
    fn wait_is_held_until_the_answer_changes() {
        let (d, fake) = daemon(RULES);
        let now = Instant::now();
        let first = reply(&d.handle(1, "g1", b"wait - 45 ping", now));
        let tag = tag_of(&first);
        assert_eq!(
            d.handle(2, "g1", format!("wait {tag} 45 ping").as_bytes(), now),
            Outcome::Held
        );
        assert!(d.due(now).is_empty(), "nothing changed");
        // a host attribute the guest did not ask for changes: still held
        set(&fake, &[("ping", "100"), ("disk", "ERROR")]);
        d.refresh();
        assert!(d.due(now).is_empty());
        set(&fake, &[("ping", "0"), ("disk", "ERROR")]);
        d.refresh();
        let due = d.due(now);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].0, 2);
        assert!(reply(&due[0].1).ends_with("\nping=red\n"));
        assert_eq!(d.held(), 0);
    }

    #[test]
    fn a_held_wait_is_answered_unchanged_when_its_time_is_up_or_dropped_on_cancel() {
        let (d, _) = daemon(RULES);
        let now = Instant::now();
        let first = reply(&d.handle(1, "g1", b"get ping", now));
        let tag = tag_of(&first);
        let body = format!("wait {tag} 2 ping");
        assert_eq!(d.handle(2, "g1", body.as_bytes(), now), Outcome::Held);
        assert!(d.due(now + Duration::from_secs(1)).is_empty());
        let due = d.due(now + Duration::from_secs(2));
        assert_eq!(reply(&due[0].1), first);
        assert_eq!(d.handle(3, "g1", body.as_bytes(), now), Outcome::Held);
        d.cancel(3);
        assert_eq!(d.held(), 0);
    }

    #[test]
    fn a_flood_of_waits_gets_retry_busy_and_leaves_other_guests_alone() {
        let (d, _) = daemon(RULES);
        let now = Instant::now();
        let first = reply(&d.handle(1, "g1", b"get ping", now));
        let tag = tag_of(&first);
        let body = format!("wait {tag} 45 ping");
        for id in 0..MAX_HELD_PER_GUEST as u64 {
            assert_eq!(d.handle(10 + id, "g1", body.as_bytes(), now), Outcome::Held);
        }
        assert!(matches!(
            d.handle(99, "g1", body.as_bytes(), now),
            Outcome::Retry(RetryReason::Busy, _)
        ));
        assert_eq!(d.held(), MAX_HELD_PER_GUEST);
        assert_eq!(d.handle(100, "g2", body.as_bytes(), now), Outcome::Held);
    }

    #[test]
    fn unreadable_attributes_are_an_internal_error_also_for_held_waits() {
        let (d, fake) = daemon(RULES);
        let now = Instant::now();
        let first = reply(&d.handle(1, "g1", b"get ping", now));
        let tag = tag_of(&first);
        assert_eq!(
            d.handle(2, "g1", format!("wait {tag} 45 ping").as_bytes(), now),
            Outcome::Held
        );
        *fake.0.lock().unwrap() = None;
        d.refresh();
        assert!(matches!(
            d.due(now)[..],
            [(2, Outcome::Error(ErrorCode::Internal, _))]
        ));
        assert!(matches!(
            d.handle(3, "g1", b"get ping", now),
            Outcome::Error(ErrorCode::Internal, _)
        ));
    }

    #[test]
    fn reload_keeps_the_rules_in_force_on_error_and_applies_good_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vm-manager.conf");
        std::fs::write(&path, "[ping]\nred = eq 0\n").unwrap();
        let fake = Arc::new(Fake::default());
        set(&fake, &[("ping", "0")]);
        let d = Daemon::new(
            path.clone(),
            RuleFile::load(&path).unwrap(),
            "n1".into(),
            Box::new(fake),
            Trigger::default(),
        );
        d.refresh();
        let now = Instant::now();
        assert!(reply(&d.handle(1, "g", b"get ping", now)).ends_with("ping=red\n"));
        std::fs::write(&path, "[ping]\nred = lt zero\n").unwrap();
        d.reload();
        assert!(reply(&d.handle(1, "g", b"get ping", now)).ends_with("ping=red\n"));
        std::fs::write(&path, "[ping]\nbad = eq 0\n").unwrap();
        d.reload();
        assert!(reply(&d.handle(1, "g", b"get ping", now)).ends_with("ping=bad\n"));
    }
}
