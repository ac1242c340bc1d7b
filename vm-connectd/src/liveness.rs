//! Host mode: what the heartbeat says about each guest (docs/protocol.md §15), and its
//! publication as the transient node attribute of [`vm_proto::liveness`].
//!
//! - [`Tracker`]: the per-link state machine. `unknown` on a new link and on every new guest
//!   daemon session (its Hello); `answering` once an [`Alive`](vm_proto::Alive) answers a
//!   Heartbeat sent since, `unhealthy` when that answer lists failing checks; `silent` when a
//!   guest that answered has not answered for the liveness timeout. A guest that never
//!   answered stays `unknown`: a guest without the guest daemon, or still booting, never fails.
//! - [`Publisher`]: writes the attribute through `attrd_updater` (bounded, argv only) from one
//!   thread of its own, coalescing per guest (only the latest value of each guest waits, so
//!   memory is bounded by the number of guests whatever the rate of changes), retrying with
//!   back-off while attrd does not answer, and deleting what it wrote when asked at shutdown.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

use vm_proto::liveness::{GuestLiveness, Link, Liveness};

/// Default interval between two heartbeats on a link.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);
/// Default time without an answer after which an answering guest is `silent`.
pub const LIVENESS_TIMEOUT: Duration = Duration::from_secs(20);

/// The heartbeat's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    /// How often a Heartbeat goes to each linked guest daemon.
    pub interval: Duration,
    /// How long an answering guest may stay without answering before it is `silent`.
    pub timeout: Duration,
}

impl Default for Heartbeat {
    fn default() -> Self {
        Self {
            interval: HEARTBEAT_INTERVAL,
            timeout: LIVENESS_TIMEOUT,
        }
    }
}

/// One link's liveness.
#[derive(Debug, Clone)]
pub struct Tracker {
    state: Liveness,
    /// When `state` last changed.
    changed: SystemTime,
    /// When the last answer counted arrived.
    last_alive: Option<Instant>,
    /// Wall-clock time of the last answer (for the status).
    last_alive_at: Option<SystemTime>,
    /// The id of the last Heartbeat sent, and the first id an answer may carry to count: ids
    /// sent before the last reset went to an earlier guest daemon life, and each heartbeat
    /// counts once (a guest answering one heartbeat many times, alternating its health, would
    /// otherwise change its state, and the published attribute, at its frame rate).
    sent: u64,
    first_valid: u64,
    /// The failing checks of the last answer.
    failing: Vec<String>,
}

impl Tracker {
    /// A new link's tracker: `unknown`.
    pub fn new(now: SystemTime) -> Self {
        Self {
            state: Liveness::Unknown,
            changed: now,
            last_alive: None,
            last_alive_at: None,
            sent: 0,
            first_valid: 1,
            failing: Vec::new(),
        }
    }

    /// The current state.
    pub fn state(&self) -> Liveness {
        self.state
    }

    /// When the state last changed.
    pub fn changed(&self) -> SystemTime {
        self.changed
    }

    /// When the last counted answer arrived.
    pub fn last_alive(&self) -> Option<SystemTime> {
        self.last_alive_at
    }

    /// The checks the last answer said are failing.
    pub fn failing(&self) -> &[String] {
        &self.failing
    }

    fn set(&mut self, state: Liveness, now: SystemTime) -> bool {
        if self.state == state {
            return false;
        }
        self.state = state;
        self.changed = now;
        true
    }

    /// A new guest daemon session (or its first Hello): nothing heard from this life yet.
    /// Returns whether the state changed.
    pub fn reset(&mut self, now: SystemTime) -> bool {
        self.last_alive = None;
        self.last_alive_at = None;
        self.failing.clear();
        self.first_valid = self.sent.wrapping_add(1).max(1);
        self.set(Liveness::Unknown, now)
    }

    /// The id for the next Heartbeat (never 0).
    pub fn next_heartbeat(&mut self) -> u64 {
        self.sent = self.sent.wrapping_add(1).max(1);
        self.sent
    }

    /// An Alive with `id` listing `failing` checks. Counts only if it answers a Heartbeat sent
    /// since the last reset and later than the last answer that counted (others are late
    /// answers to an earlier life, or repeats, dropped). Returns `None` when it did not count,
    /// else whether the state changed.
    pub fn on_alive(
        &mut self,
        id: u64,
        failing: &[String],
        now: Instant,
        wall: SystemTime,
    ) -> Option<bool> {
        if id < self.first_valid || id > self.sent {
            return None;
        }
        self.first_valid = id.saturating_add(1);
        self.last_alive = Some(now);
        self.last_alive_at = Some(wall);
        if self.failing != failing {
            self.failing = failing.to_vec();
        }
        let state = if failing.is_empty() {
            Liveness::Answering
        } else {
            Liveness::Unhealthy
        };
        Some(self.set(state, wall))
    }

    /// Time passes: a guest that answered and has not answered for `timeout` turns `silent`.
    /// Returns whether the state changed.
    pub fn tick(&mut self, timeout: Duration, now: Instant, wall: SystemTime) -> bool {
        let overdue = self
            .last_alive
            .is_some_and(|t| now.saturating_duration_since(t) > timeout);
        if overdue && matches!(self.state, Liveness::Answering | Liveness::Unhealthy) {
            return self.set(Liveness::Silent, wall);
        }
        false
    }
}

/// Unix seconds of `t`.
pub fn epoch(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The value a link publishes now, given what it published last (`prev`): `None` when its
/// link state and liveness are those of `prev` (nothing to write: values are written on change
/// only, never per heartbeat), else the new value, `since` now.
pub fn next_value(
    prev: Option<GuestLiveness>,
    link: Link,
    liveness: Liveness,
    now: SystemTime,
) -> Option<GuestLiveness> {
    match prev {
        Some(p) if p.link == link && p.liveness == liveness => None,
        _ => Some(GuestLiveness {
            link,
            liveness,
            since: epoch(now),
        }),
    }
}

/// Where attribute values go: attrd, or a recording fake in tests.
pub trait AttrWriter: Send + 'static {
    /// Set transient node attribute `name` to `value` on this node.
    fn update(&mut self, name: &str, value: &str) -> Result<(), String>;
    /// Delete it.
    fn delete(&mut self, name: &str) -> Result<(), String>;
}

/// `attrd_updater` on this node, 10 s per call.
#[derive(Debug, Default)]
pub struct Attrd;

/// Bound on one `attrd_updater` call.
const ATTRD_TIMEOUT: Duration = Duration::from_secs(10);

impl Attrd {
    fn run(args: &[&str]) -> Result<(), String> {
        vm_common::process::Cmd::new("attrd_updater")
            .args(args)
            .timeout(ATTRD_TIMEOUT)
            .max_stdout(4096)
            .run_success()
            .map(|_| ())
            .map_err(|e| vm_common::error_chain(&e))
    }
}

impl AttrWriter for Attrd {
    fn update(&mut self, name: &str, value: &str) -> Result<(), String> {
        Self::run(&["--name", name, "--update", value])
    }

    fn delete(&mut self, name: &str) -> Result<(), String> {
        Self::run(&["--name", name, "--delete"])
    }
}

/// Retry delays while attrd fails: from the first to the last, doubling.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);
/// At most one warning per this interval (the failures in between are counted).
const WARN_INTERVAL: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
struct Queue {
    /// The latest wanted value per attribute name (`None`: delete), not yet written.
    wanted: HashMap<String, Option<String>>,
    /// Names in the order they were first queued (each at most once).
    order: std::collections::VecDeque<String>,
    /// Names this publisher has written a value to (and not deleted since).
    written: HashSet<String>,
    /// An update being written now (by name), so that `idle` waits for it.
    busy: bool,
    stop: bool,
}

/// Publishes attribute values from a thread of its own (see the module doc).
#[derive(Debug, Clone)]
pub struct Publisher {
    shared: Arc<(Mutex<Queue>, Condvar)>,
}

impl Publisher {
    /// Starts the publishing thread over `writer`.
    pub fn start(writer: impl AttrWriter) -> std::io::Result<Self> {
        let publisher = Self {
            shared: Arc::new((Mutex::new(Queue::default()), Condvar::new())),
        };
        let worker = publisher.clone();
        std::thread::Builder::new()
            .name("attrd".into())
            .spawn(move || worker.run(writer))?;
        Ok(publisher)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.shared
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queue `value` (`None`: delete) for attribute `name`; replaces a value still waiting.
    pub fn set(&self, name: &str, value: Option<String>) {
        let mut q = self.lock();
        if q.wanted.insert(name.to_owned(), value).is_none() {
            q.order.push_back(name.to_owned());
        }
        self.shared.1.notify_all();
    }

    /// Queue the deletion of everything written, then wait until the queue is empty or
    /// `deadline` passes, and stop the thread. Returns how many were left undone.
    pub fn shutdown(&self, deadline: Duration) -> usize {
        let names: Vec<String> = self.lock().written.iter().cloned().collect();
        for n in names {
            self.set(&n, None);
        }
        let left = self.wait_idle(deadline);
        let mut q = self.lock();
        q.stop = true;
        self.shared.1.notify_all();
        left
    }

    /// Waits until nothing is queued or being written, at most `deadline`; returns how many
    /// values are still queued.
    pub fn wait_idle(&self, deadline: Duration) -> usize {
        let end = Instant::now() + deadline;
        let mut q = self.lock();
        while !q.wanted.is_empty() || q.busy {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            q = self
                .shared
                .1
                .wait_timeout(q, left)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
        q.wanted.len()
    }

    fn run(&self, mut writer: impl AttrWriter) {
        let mut delay = RETRY_FIRST;
        let mut last_warn: Option<Instant> = None;
        let mut failures = 0u64;
        loop {
            let (name, value) = {
                let mut q = self.lock();
                loop {
                    if q.stop {
                        return;
                    }
                    if let Some(name) = q.order.pop_front() {
                        if let Some(value) = q.wanted.remove(&name) {
                            q.busy = true;
                            break (name, value);
                        }
                        continue;
                    }
                    q = self
                        .shared
                        .1
                        .wait(q)
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                }
            };
            let result = match &value {
                Some(v) => writer.update(&name, v),
                None => writer.delete(&name),
            };
            let mut q = self.lock();
            q.busy = false;
            match result {
                Ok(()) => {
                    delay = RETRY_FIRST;
                    if value.is_some() {
                        q.written.insert(name.clone());
                    } else {
                        q.written.remove(&name);
                    }
                    tracing::debug!(attribute = %name, value = ?value, "published");
                    self.shared.1.notify_all();
                }
                Err(e) => {
                    failures += 1;
                    if last_warn.is_none_or(|t| t.elapsed() >= WARN_INTERVAL) {
                        tracing::warn!(
                            attribute = %name,
                            "cannot publish guest liveness: {e} ({failures} failure(s) so \
                             far); retrying every {}..{} s",
                            RETRY_FIRST.as_secs(),
                            RETRY_MAX.as_secs()
                        );
                        last_warn = Some(Instant::now());
                    }
                    // put it back unless a newer value is waiting
                    if !q.wanted.contains_key(&name) {
                        q.wanted.insert(name.clone(), value);
                        q.order.push_back(name);
                    }
                    self.shared.1.notify_all();
                    let stop = q.stop;
                    drop(q);
                    if stop {
                        return;
                    }
                    // (a shutdown waits for at most its own deadline, not for this)
                    let q = self.lock();
                    let _ = self.shared.1.wait_timeout_while(q, delay, |q| !q.stop);
                    delay = (delay * 2).min(RETRY_MAX);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(s)
    }

    #[test]
    fn answering_then_silent_then_reset() {
        let t0 = Instant::now();
        let mut t = Tracker::new(at(100));
        assert_eq!(t.state(), Liveness::Unknown);
        // never answered: no timeout makes it silent
        assert!(!t.tick(
            Duration::from_secs(1),
            t0 + Duration::from_secs(99),
            at(199)
        ));
        assert_eq!(t.state(), Liveness::Unknown);
        // an answer to nothing sent does not count
        assert_eq!(t.on_alive(1, &[], t0, at(100)), None);
        let id = t.next_heartbeat();
        assert_eq!(id, 1);
        assert_eq!(t.on_alive(id, &[], t0, at(101)), Some(true));
        assert_eq!(t.state(), Liveness::Answering);
        assert_eq!(epoch(t.changed()), 101);
        // within the timeout: still answering; past it: silent
        assert!(!t.tick(
            Duration::from_secs(20),
            t0 + Duration::from_secs(20),
            at(121)
        ));
        assert!(t.tick(
            Duration::from_secs(20),
            t0 + Duration::from_secs(21),
            at(122)
        ));
        assert_eq!((t.state(), epoch(t.changed())), (Liveness::Silent, 122));
        assert!(!t.tick(
            Duration::from_secs(20),
            t0 + Duration::from_secs(40),
            at(141)
        ));
        // it answers again
        let id = t.next_heartbeat();
        assert_eq!(
            t.on_alive(id, &[], t0 + Duration::from_secs(41), at(142)),
            Some(true)
        );
        assert_eq!(t.state(), Liveness::Answering);
        // a new guest session: unknown, and answers to earlier heartbeats no longer count
        assert!(t.reset(at(150)));
        assert_eq!(t.state(), Liveness::Unknown);
        assert_eq!(
            t.on_alive(id, &[], t0 + Duration::from_secs(50), at(150)),
            None
        );
        assert!(!t.tick(
            Duration::from_secs(1),
            t0 + Duration::from_secs(99),
            at(199)
        ));
        let id = t.next_heartbeat();
        assert_eq!(
            t.on_alive(id, &[], t0 + Duration::from_secs(51), at(151)),
            Some(true)
        );
    }

    #[test]
    fn failing_checks_make_it_unhealthy_and_unhealthy_can_go_silent() {
        let t0 = Instant::now();
        let mut t = Tracker::new(at(0));
        let id = t.next_heartbeat();
        let failing = vec!["db.service".to_owned()];
        assert_eq!(t.on_alive(id, &failing, t0, at(1)), Some(true));
        assert_eq!(t.state(), Liveness::Unhealthy);
        assert_eq!(t.failing(), failing);
        // an answer to the same heartbeat again does not count, whatever it says
        assert_eq!(t.on_alive(id, &[], t0, at(2)), None);
        assert_eq!(t.state(), Liveness::Unhealthy);
        let id = t.next_heartbeat();
        // the same answer to the next one changes nothing
        assert_eq!(t.on_alive(id, &failing, t0, at(2)), Some(false));
        assert_eq!(epoch(t.changed()), 1);
        // nor does an answer to an earlier heartbeat after a later one counted
        let older = t.next_heartbeat();
        let newer = t.next_heartbeat();
        assert_eq!(t.on_alive(newer, &failing, t0, at(3)), Some(false));
        assert_eq!(t.on_alive(older, &[], t0, at(3)), None);
        assert!(t.tick(Duration::from_secs(5), t0 + Duration::from_secs(6), at(7)));
        assert_eq!(t.state(), Liveness::Silent);
        let id = t.next_heartbeat();
        assert_eq!(
            t.on_alive(id, &[], t0 + Duration::from_secs(8), at(8)),
            Some(true)
        );
        assert_eq!((t.state(), t.failing().len()), (Liveness::Answering, 0));
    }

    #[test]
    fn values_are_published_on_change_only() {
        let v = next_value(None, Link::Down, Liveness::Unknown, at(10)).unwrap();
        assert_eq!(v.to_string(), "down:unknown:10");
        assert_eq!(
            next_value(Some(v), Link::Down, Liveness::Unknown, at(11)),
            None
        );
        let v = next_value(Some(v), Link::Up, Liveness::Unknown, at(12)).unwrap();
        assert_eq!(v.to_string(), "up:unknown:12");
        let v = next_value(Some(v), Link::Up, Liveness::Silent, at(13)).unwrap();
        assert_eq!(v.to_string(), "up:silent:13");
    }

    /// Records calls; fails the first `fail` calls.
    struct Fake {
        calls: Calls,
        fail: usize,
        gate: Gate,
    }

    impl Fake {
        fn call(&mut self, what: String) -> Result<(), String> {
            // block while the gate is closed, so a test can queue several changes at once
            let (m, c) = &*self.gate;
            let mut open = m.lock().unwrap();
            while !*open {
                open = c.wait(open).unwrap();
            }
            self.calls.lock().unwrap().push(what);
            if self.fail > 0 {
                self.fail -= 1;
                return Err("attrd is not running".into());
            }
            Ok(())
        }
    }

    impl AttrWriter for Fake {
        fn update(&mut self, name: &str, value: &str) -> Result<(), String> {
            self.call(format!("{name}={value}"))
        }
        fn delete(&mut self, name: &str) -> Result<(), String> {
            self.call(format!("{name} deleted"))
        }
    }

    type Calls = Arc<Mutex<Vec<String>>>;
    type Gate = Arc<(Mutex<bool>, Condvar)>;

    fn fake(fail: usize, open: bool) -> (Fake, Calls, Gate) {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let gate = Arc::new((Mutex::new(open), Condvar::new()));
        (
            Fake {
                calls: Arc::clone(&calls),
                fail,
                gate: Arc::clone(&gate),
            },
            calls,
            gate,
        )
    }

    #[test]
    fn only_the_latest_value_of_each_attribute_is_written() {
        let (w, calls, gate) = fake(0, false);
        let p = Publisher::start(w).unwrap();
        p.set("pmkt-guest-a", Some("up:unknown:1".into()));
        // the thread now waits at the gate with a's first value; queue more behind it
        std::thread::sleep(Duration::from_millis(50));
        for i in 2..100 {
            p.set("pmkt-guest-a", Some(format!("up:answering:{i}")));
        }
        p.set("pmkt-guest-b", Some("up:unknown:5".into()));
        p.set("pmkt-guest-b", None);
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        assert_eq!(p.wait_idle(Duration::from_secs(5)), 0);
        assert_eq!(
            *calls.lock().unwrap(),
            [
                "pmkt-guest-a=up:unknown:1",
                "pmkt-guest-a=up:answering:99",
                "pmkt-guest-b deleted"
            ]
        );
        // shutting down deletes what was written
        assert_eq!(p.shutdown(Duration::from_secs(5)), 0);
        assert_eq!(
            calls.lock().unwrap().last().unwrap(),
            "pmkt-guest-a deleted"
        );
    }

    #[test]
    fn a_failed_write_is_retried_unless_a_newer_value_came() {
        let (w, calls, _gate) = fake(1, true);
        let p = Publisher::start(w).unwrap();
        p.set("pmkt-guest-a", Some("up:unknown:1".into()));
        assert_eq!(p.wait_idle(Duration::from_secs(10)), 0);
        assert_eq!(
            *calls.lock().unwrap(),
            ["pmkt-guest-a=up:unknown:1", "pmkt-guest-a=up:unknown:1"]
        );
        assert_eq!(p.shutdown(Duration::from_secs(5)), 0);
    }
}
