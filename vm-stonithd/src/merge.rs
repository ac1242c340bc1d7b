//! Identical power requests in flight share one execution.
//!
//! Two requests are **identical** when the same guest cluster (the key's) asks for the same
//! power action (off, on or reboot) of the same target; which of its members asks does not
//! matter (they act for the cluster). The first request starts an execution on a worker; an
//! identical one that arrives while it runs joins it instead of taking a worker of its own and
//! queueing on the guest's lock, and gets the execution's outcome, sealed for its own nonce.
//! Never merged: different actions (an off never answers an on or a reboot), different targets,
//! different guest clusters (each answers for its own authority), `status`, `monitor`, `list`
//! and legacy requests.
//!
//! What keeps a merged answer as true as one of its own:
//! - **No confirmation from before the request.** A requester gets the execution's Done only
//!   if it joined before the status read that confirmed it began ([`Ran::observed`]); one that
//!   joined later is served by another round of the execution, which reads the status afresh
//!   (usually finding the guest already there and writing nothing).
//! - **Cancel.** The execution gives up (and its fence rolls back) only when every requester
//!   still waiting for it has given up ([`Execution`] is the job's [`GiveUp`]): one requester's
//!   Cancel never rolls back a fence that others wait for. A requester that gave up is answered
//!   "cancelled" (never Done) when the round ends.
//! - **Time.** A round runs until the latest deadline of the requesters waiting when it starts
//!   (the fence journal records that deadline when the fence begins); a requester that joined
//!   later with more time left, and whose round timed out, gets another round.
//! - Failures (refused, failed) are shared: they are never a false OK.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use vm_seal::{Action, FenceReply, Name, Outcome, PowerState};

use crate::fence::{GiveUp, Ran};

/// What makes requests identical.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MergeKey {
    /// The guest cluster whose key sealed them.
    pub cluster: Name,
    /// Off, on or reboot.
    pub action: Action,
    /// The guest.
    pub target: Name,
}

impl MergeKey {
    /// The key of a request of `cluster` for `action` on `target`, if such requests are merged.
    pub fn of(cluster: &Name, action: Action, target: Option<&Name>) -> Option<MergeKey> {
        let mergeable = matches!(action, Action::Off | Action::On | Action::Reboot);
        Some(MergeKey {
            cluster: cluster.clone(),
            action,
            target: target.filter(|_| mergeable)?.clone(),
        })
    }
}

/// A requester waiting for an execution's outcome.
pub struct Participant {
    /// Its request id (for logs).
    pub id: u64,
    /// When its request arrived: a confirmation from a status read begun earlier is not
    /// given to it.
    pub joined: Instant,
    /// When it stops waiting.
    pub deadline: Instant,
    /// Set by its Cancel (or the daemon stopping).
    pub cancel: Arc<AtomicBool>,
    /// Seals the reply for it and sends it.
    pub answer: Box<dyn FnOnce(FenceReply) + Send>,
}

impl std::fmt::Debug for Participant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Participant")
            .field("id", &self.id)
            .field("joined", &self.joined)
            .field("deadline", &self.deadline)
            .field("cancel", &self.cancel)
            .finish_non_exhaustive()
    }
}

/// One execution and the requesters waiting for it.
#[derive(Debug)]
pub struct Execution {
    waiting: Mutex<Vec<Participant>>,
}

impl Execution {
    fn waiting(&self) -> std::sync::MutexGuard<'_, Vec<Participant>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Given up when every requester still waiting has given up.
impl GiveUp for Execution {
    fn given_up(&self) -> bool {
        self.waiting()
            .iter()
            .all(|p| p.cancel.load(Ordering::SeqCst))
    }
}

/// The executions open to identical requests.
#[derive(Debug, Default)]
pub struct Merges {
    open: Mutex<HashMap<MergeKey, Arc<Execution>>>,
}

impl Merges {
    fn open(&self) -> std::sync::MutexGuard<'_, HashMap<MergeKey, Arc<Execution>>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// If an execution of `key` is open, calls `admit` (the request's last checks, which may
    /// refuse it) and joins the participant it returns to that execution, atomically with the
    /// execution's end: a request admitted here is answered by it. Returns how many requesters
    /// it serves then; `None` (without calling `admit`) when none is open.
    pub fn join<E>(
        &self,
        key: &MergeKey,
        admit: impl FnOnce() -> Result<Participant, E>,
    ) -> Option<Result<usize, E>> {
        let open = self.open();
        let exec = open.get(key)?;
        Some(admit().map(|p| {
            let mut waiting = exec.waiting();
            waiting.push(p);
            waiting.len()
        }))
    }

    /// Opens an execution of `key` for `first`; the caller then runs it with [`Merges::run`].
    pub fn start(&self, key: MergeKey, first: Participant) -> Arc<Execution> {
        let exec = Arc::new(Execution {
            waiting: Mutex::new(vec![first]),
        });
        self.open().insert(key, Arc::clone(&exec));
        exec
    }

    /// Runs `exec` (opened for `key` by [`Merges::start`]) in rounds, `round(deadline,
    /// give_up)` each, until every requester has been answered; then closes it. If a round
    /// panics, the requesters still waiting, but for `leader` (whose worker answers it), are
    /// answered Failed and the execution is closed, so that nobody joins a dead one.
    pub fn run(
        &self,
        key: &MergeKey,
        exec: &Arc<Execution>,
        leader: u64,
        mut round: impl FnMut(Instant, Arc<dyn GiveUp>) -> Ran,
    ) {
        let mut guard = CloseOnPanic {
            merges: self,
            key,
            exec,
            leader,
            armed: true,
        };
        loop {
            let deadline = exec
                .waiting()
                .iter()
                .filter(|p| !p.cancel.load(Ordering::SeqCst))
                .map(|p| p.deadline)
                .max();
            let ran = match deadline {
                Some(deadline) => round(deadline, Arc::clone(exec) as Arc<dyn GiveUp>),
                // every requester gave up before the round began: nothing to run
                None => Ran {
                    reply: cancelled(),
                    observed: Instant::now(),
                },
            };
            let (answers, closed) = self.settle(key, exec, &ran, Instant::now());
            for (p, reply) in answers {
                (p.answer)(reply);
            }
            if closed {
                guard.armed = false;
                return;
            }
        }
    }

    /// Closes `exec` (opened for `key`) without running it, its worker not started: every
    /// requester is answered Failed, saying `why`.
    pub fn abandon(&self, key: &MergeKey, exec: &Arc<Execution>, why: &str) {
        for p in self.close(key, exec) {
            (p.answer)(FenceReply::new(Outcome::Failed, PowerState::Unknown, why));
        }
    }

    /// Closes `exec`: takes it out of the table (so nobody joins it) and its requesters out of
    /// it.
    fn close(&self, key: &MergeKey, exec: &Arc<Execution>) -> Vec<Participant> {
        let mut open = self.open();
        if open.get(key).is_some_and(|e| Arc::ptr_eq(e, exec)) {
            open.remove(key);
        }
        exec.waiting().drain(..).collect()
    }

    /// Takes the requesters `ran` answers out of `exec`, with their replies; closes `exec` if
    /// none is left (under the lock [`Merges::join`] takes, so nobody joins it after that).
    fn settle(
        &self,
        key: &MergeKey,
        exec: &Arc<Execution>,
        ran: &Ran,
        now: Instant,
    ) -> (Vec<(Participant, FenceReply)>, bool) {
        let mut open = self.open();
        let mut waiting = exec.waiting();
        let mut answers = Vec::new();
        let mut rest = Vec::new();
        for p in waiting.drain(..) {
            match answer_for(ran, &p, now) {
                Some(reply) => answers.push((p, reply)),
                None => rest.push(p),
            }
        }
        *waiting = rest;
        let closed = waiting.is_empty();
        if closed && open.get(key).is_some_and(|e| Arc::ptr_eq(e, exec)) {
            open.remove(key);
        }
        (answers, closed)
    }
}

/// The reply a round's outcome `ran` gives requester `p` at `now`; `None`: `p` needs another
/// round (it joined after the confirming read began, or its round timed out while it still has
/// time).
fn answer_for(ran: &Ran, p: &Participant, now: Instant) -> Option<FenceReply> {
    if p.cancel.load(Ordering::SeqCst) {
        return Some(cancelled());
    }
    let time_left = p.deadline > now;
    match ran.reply.outcome {
        Outcome::Done if ran.observed >= p.joined => Some(ran.reply.clone()),
        Outcome::Done | Outcome::TimedOut if time_left => None,
        Outcome::Done => Some(FenceReply::new(
            Outcome::TimedOut,
            PowerState::Unknown,
            "timed out: the fence this request joined was confirmed from a status read before \
             it arrived, and no time was left to confirm it again",
        )),
        _ => Some(ran.reply.clone()),
    }
}

fn cancelled() -> FenceReply {
    FenceReply::new(
        Outcome::TimedOut,
        PowerState::Unknown,
        "the request was cancelled (its requester gave up)",
    )
}

/// Closes an execution whose round panicked (see [`Merges::run`]).
struct CloseOnPanic<'a> {
    merges: &'a Merges,
    key: &'a MergeKey,
    exec: &'a Arc<Execution>,
    leader: u64,
    armed: bool,
}

impl Drop for CloseOnPanic<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let left = self.merges.close(self.key, self.exec);
        for p in left.into_iter().filter(|p| p.id != self.leader) {
            (p.answer)(FenceReply::new(
                Outcome::Failed,
                PowerState::Unknown,
                "vm-stonithd failed while handling the request",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    fn n(s: &str) -> Name {
        Name::new(s).unwrap()
    }

    fn key(action: Action) -> MergeKey {
        MergeKey::of(&n("web"), action, Some(&n("web1"))).unwrap()
    }

    /// A requester joining now, waiting `secs`, whose replies arrive on the returned channel.
    fn participant(
        id: u64,
        secs: u64,
    ) -> (Participant, Arc<AtomicBool>, mpsc::Receiver<FenceReply>) {
        let (tx, rx) = mpsc::channel();
        let cancel = Arc::new(AtomicBool::new(false));
        let p = Participant {
            id,
            joined: Instant::now(),
            deadline: Instant::now() + Duration::from_secs(secs),
            cancel: Arc::clone(&cancel),
            answer: Box::new(move |r| tx.send(r).unwrap()),
        };
        (p, cancel, rx)
    }

    fn done(observed: Instant) -> Ran {
        Ran {
            reply: FenceReply::new(Outcome::Done, PowerState::Off, "stopped"),
            observed,
        }
    }

    #[test]
    fn only_identical_power_requests_are_merged() {
        let (web, web1) = (n("web"), n("web1"));
        assert_eq!(MergeKey::of(&web, Action::Status, Some(&web1)), None);
        assert_eq!(MergeKey::of(&web, Action::Monitor, None), None);
        assert_eq!(MergeKey::of(&web, Action::List, None), None);
        assert_eq!(MergeKey::of(&web, Action::Off, None), None);
        let off = MergeKey::of(&web, Action::Off, Some(&web1));
        assert!(off.is_some());
        for other in [
            MergeKey::of(&web, Action::On, Some(&web1)),
            MergeKey::of(&web, Action::Reboot, Some(&web1)),
            MergeKey::of(&web, Action::Off, Some(&n("web2"))),
            MergeKey::of(&n("db"), Action::Off, Some(&web1)),
        ] {
            assert_ne!(off, other);
        }
        // an open off takes no on
        let m = Merges::default();
        let (p, _, _rx) = participant(1, 30);
        let _exec = m.start(key(Action::Off), p);
        let mut admitted = false;
        assert!(
            m.join(&key(Action::On), || -> Result<Participant, ()> {
                admitted = true;
                Ok(participant(2, 30).0)
            })
            .is_none()
        );
        assert!(!admitted, "nothing admitted when there is nothing to join");
    }

    #[test]
    fn requests_joined_before_the_confirming_read_share_one_round() {
        let m = Merges::default();
        let (first, _, rx1) = participant(1, 30);
        let exec = m.start(key(Action::Off), first);
        let mut rxs = vec![rx1];
        let mut rounds = 0;
        m.run(&key(Action::Off), &exec, 1, |_, _| {
            rounds += 1;
            // four identical requests arrive while the fence runs, before its confirming read
            for id in 2..=5 {
                let (p, _, rx) = participant(id, 30);
                let joined = m.join(&key(Action::Off), || Ok::<_, ()>(p));
                assert_eq!(joined, Some(Ok(id as usize)));
                rxs.push(rx);
            }
            done(Instant::now())
        });
        assert_eq!(rounds, 1, "one execution for five requests");
        for rx in rxs {
            assert_eq!(rx.try_recv().unwrap().outcome, Outcome::Done);
        }
        // closed: the next identical request is not joined to it
        assert!(
            m.join(&key(Action::Off), || Ok::<_, ()>(participant(6, 30).0))
                .is_none()
        );
    }

    #[test]
    fn a_request_joined_after_the_confirming_read_gets_a_round_of_its_own() {
        let m = Merges::default();
        let (first, _, rx1) = participant(1, 30);
        let exec = m.start(key(Action::Off), first);
        let mut late = None;
        let mut rounds = Vec::new();
        m.run(&key(Action::Off), &exec, 1, |deadline, _| {
            rounds.push(deadline);
            let observed = Instant::now();
            if rounds.len() == 1 {
                std::thread::sleep(Duration::from_millis(5));
                let (p, _, rx) = participant(2, 40);
                assert!(m.join(&key(Action::Off), || Ok::<_, ()>(p)).is_some());
                late = Some(rx);
            }
            done(observed)
        });
        assert_eq!(rounds.len(), 2);
        assert_eq!(rx1.try_recv().unwrap().outcome, Outcome::Done);
        let late = late.unwrap();
        assert_eq!(late.try_recv().unwrap().outcome, Outcome::Done);
        assert!(late.try_recv().is_err(), "one answer each");
        assert!(
            rounds[1] > rounds[0],
            "the second round runs to the late requester's deadline"
        );
    }

    #[test]
    fn one_requesters_cancel_does_not_give_up_a_fence_another_waits_for() {
        let m = Merges::default();
        let (first, cancel1, rx1) = participant(1, 30);
        let exec = m.start(key(Action::Off), first);
        let (second, cancel2, rx2) = participant(2, 30);
        assert_eq!(
            m.join(&key(Action::Off), || Ok::<_, ()>(second)),
            Some(Ok(2))
        );
        m.run(&key(Action::Off), &exec, 1, |_, give_up| {
            cancel1.store(true, Ordering::SeqCst);
            assert!(!give_up.given_up(), "request 2 still waits");
            cancel2.store(true, Ordering::SeqCst);
            assert!(give_up.given_up(), "nobody waits any more");
            Ran {
                reply: FenceReply::new(Outcome::TimedOut, PowerState::Unknown, "cancelled"),
                observed: Instant::now(),
            }
        });
        for rx in [rx1, rx2] {
            let r = rx.try_recv().unwrap();
            assert_eq!(r.outcome, Outcome::TimedOut, "{r:?}");
            assert!(r.message.contains("cancelled"), "{r:?}");
        }
        // a requester that gave up is not told Done even when the fence was confirmed
        let (first, cancel1, rx1) = participant(1, 30);
        let exec = m.start(key(Action::Off), first);
        let (second, _, rx2) = participant(2, 30);
        m.join(&key(Action::Off), || Ok::<_, ()>(second));
        m.run(&key(Action::Off), &exec, 1, |_, give_up| {
            cancel1.store(true, Ordering::SeqCst);
            assert!(!give_up.given_up());
            done(Instant::now())
        });
        assert_eq!(rx1.try_recv().unwrap().outcome, Outcome::TimedOut);
        assert_eq!(rx2.try_recv().unwrap().outcome, Outcome::Done);
    }

    #[test]
    fn a_timed_out_round_is_run_again_for_a_requester_with_time_left() {
        let m = Merges::default();
        let (first, _, rx1) = participant(1, 0);
        let exec = m.start(key(Action::Off), first);
        let mut rounds = 0;
        let mut rx2 = None;
        m.run(&key(Action::Off), &exec, 1, |_, _| {
            rounds += 1;
            if rounds == 1 {
                let (p, _, rx) = participant(2, 30);
                m.join(&key(Action::Off), || Ok::<_, ()>(p));
                rx2 = Some(rx);
                Ran {
                    reply: FenceReply::new(Outcome::TimedOut, PowerState::Unknown, "timed out"),
                    observed: Instant::now(),
                }
            } else {
                done(Instant::now())
            }
        });
        assert_eq!(rounds, 2);
        assert_eq!(rx1.try_recv().unwrap().outcome, Outcome::TimedOut);
        assert_eq!(rx2.unwrap().try_recv().unwrap().outcome, Outcome::Done);
    }

    #[test]
    fn failures_are_shared_and_refusals_leave_nothing_joined() {
        let m = Merges::default();
        let (first, _, rx1) = participant(1, 30);
        let exec = m.start(key(Action::Off), first);
        let (second, _, rx2) = participant(2, 30);
        m.join(&key(Action::Off), || Ok::<_, ()>(second));
        // a request refused by its last checks (a replay) is not joined
        assert_eq!(
            m.join(&key(Action::Off), || Err::<Participant, _>("replay")),
            Some(Err("replay"))
        );
        m.run(&key(Action::Off), &exec, 1, |_, _| Ran {
            reply: FenceReply::new(Outcome::Failed, PowerState::Unknown, "blocked"),
            observed: Instant::now(),
        });
        for rx in [rx1, rx2] {
            assert_eq!(rx.try_recv().unwrap().outcome, Outcome::Failed);
        }
    }

    #[test]
    fn a_panicking_round_answers_the_others_and_closes() {
        let m = Merges::default();
        let (first, _, rx1) = participant(1, 30);
        let exec = m.start(key(Action::Off), first);
        let (second, _, rx2) = participant(2, 30);
        m.join(&key(Action::Off), || Ok::<_, ()>(second));
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            m.run(&key(Action::Off), &exec, 1, |_, _| panic!("a bug"));
        }));
        assert!(r.is_err());
        assert_eq!(rx2.try_recv().unwrap().outcome, Outcome::Failed);
        assert!(
            rx1.try_recv().is_err(),
            "the leader is answered by its worker"
        );
        assert!(
            m.join(&key(Action::Off), || Ok::<_, ()>(participant(3, 30).0))
                .is_none()
        );
    }
}
