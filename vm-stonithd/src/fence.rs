//! Carrying out a fence through the host cluster, and confirming it from the cluster's status.
//!
//! Every step is bounded by the request's deadline. `off`: one compare-and-swap CIB write
//! ([`plan::begin`]: target-role=Stopped, the force-stop node attribute, the journal), then a
//! wait, woken by cluster events ([`Watcher`]), until `crm_mon` shows the guest's resource
//! stopped on every node; then [`plan::finish`]. On timeout, cancel or failure:
//! [`plan::rollback`]. `on` is the same with target-role=Started and "running on one node".
//! `reboot` is an off, then an on whose begin also finishes the off. The CIB is read once per
//! write (the read that finds the target's resource is the begin's base): twice for an off or
//! an on, three times for a reboot; `crm_mon` at least once per power change.
//! Requests for the same resource are serialised in this daemon; across the host cluster's
//! nodes the journal does it (a second daemon joins a fence in progress or is told to retry).
//!
//! `status` answers from a [`StatusView`]: the last `crm_mon` reading, reused while no cluster
//! event has arrived since and it is younger than [`STATUS_MAX_AGE`]. Every Pacemaker tool call
//! costs 15-25 ms, most of a status round trip. Confirmations of off and on, and `monitor`
//! (which must prove the path to the CIB works), always read afresh.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use vm_common::error_chain;
use vm_fence::Power;
use vm_fence::record::{FenceAction, FenceRecord, FenceResult};
use vm_pcmk::virtualdomain::guest_resource;
use vm_pcmk::{ClusterStatus, Pacemaker, PcmkError, Role, Update};
use vm_seal::{Action, FenceReply, Name, Outcome, PowerState};

use crate::plan::{self, Begin, Owner, PlanError};
use crate::watch::{FALLBACK, Watcher};

/// Attempts of one compare-and-swap CIB change before giving up (other writers keep winning).
const CAS_ATTEMPTS: u32 = 10;
/// Least time a tool call gets, even when the deadline is nearer (a killed `cibadmin --replace`
/// could have written; better to let it finish).
const MIN_TOOL_TIME: Duration = Duration::from_secs(2);

/// The oldest cluster status a `status` answer may come from. Pacemaker's own view of a guest
/// lags the guest by up to its monitor interval; this adds at most a second to that, and only
/// when no resource operation result arrived in between (any result makes the next answer read
/// afresh).
pub const STATUS_MAX_AGE: Duration = Duration::from_secs(1);

/// A reading of the cluster's status, with when and at which watcher generation it was taken.
#[derive(Debug, Default)]
pub struct StatusView {
    last: Mutex<Option<Reading>>,
}

#[derive(Debug)]
struct Reading {
    generation: u64,
    taken: Instant,
    status: Arc<ClusterStatus>,
}

impl StatusView {
    /// The last reading if it was taken at `generation` and less than [`STATUS_MAX_AGE`]
    /// before `now`; otherwise `read()` (taken as of `now`, which the caller gets before
    /// reading, so the age is never understated), kept for next time.
    pub fn get<E>(
        &self,
        generation: u64,
        now: Instant,
        read: impl FnOnce() -> Result<ClusterStatus, E>,
    ) -> Result<Arc<ClusterStatus>, E> {
        {
            let last = self.last.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(r) = last.as_ref()
                && r.generation == generation
                && now.saturating_duration_since(r.taken) < STATUS_MAX_AGE
            {
                return Ok(Arc::clone(&r.status));
            }
        }
        // (no lock held while crm_mon runs: concurrent status requests each read; the later
        // reading is kept)
        let status = Arc::new(read()?);
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(Reading {
            generation,
            taken: now,
            status: Arc::clone(&status),
        });
        Ok(status)
    }

    /// Forgets the reading: the next `get` reads afresh.
    pub fn invalidate(&self) {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// What a fence is asked to do.
#[derive(Debug, Clone)]
pub struct Job {
    /// The action (not `list`: the daemon answers that from its configuration).
    pub action: Action,
    /// The target guest (for off/on/reboot/status).
    pub target: Option<Name>,
    /// The configured resource id for the target, if any.
    pub resource: Option<String>,
    /// When the requester stops waiting.
    pub deadline: Instant,
    /// Says when the requester gave up (or the daemon stops): roll back. A job that serves
    /// several identical requests ([`crate::merge`]) gives up only when all of them did.
    pub cancel: Arc<dyn GiveUp>,
    /// Identifies the request in the journal (its nonce, hex).
    pub request: String,
    /// Who asked, for the guest's last-fence record (of a job that serves several identical
    /// requests: the first's).
    pub requester: Requester,
}

/// Who asked for a fence, as its last-fence record ([`vm_fence::record`]) names them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requester {
    /// The guest cluster whose key sealed the request (`None`: a legacy request matched to no
    /// single cluster).
    pub cluster: Option<Name>,
    /// The requester's node name in it (`None` for legacy requests, which carry none).
    pub name: Option<Name>,
    /// The guest whose channel the request came over (`None` if its domain name does not
    /// follow the name rule).
    pub origin: Option<Name>,
}

impl Requester {
    /// A record of `action` by this requester, begun at `started` (Unix seconds).
    fn record(&self, action: Action, started: u64) -> Option<FenceRecord> {
        let action = match action {
            Action::Off => FenceAction::Off,
            Action::On => FenceAction::On,
            Action::Reboot => FenceAction::Reboot,
            Action::Status | Action::Monitor | Action::List => return None,
        };
        Some(FenceRecord {
            action,
            result: FenceResult::InProgress,
            started,
            ended: None,
            cluster: self.cluster.clone(),
            requester: self.name.clone(),
            origin: self.origin.clone(),
        })
    }
}

/// Whether the requesters a job runs for have given up on it.
pub trait GiveUp: Send + Sync + std::fmt::Debug {
    /// `true` once nobody waits for the job's outcome any more.
    fn given_up(&self) -> bool;
}

/// One requester's cancel flag (set by its Cancel, or by the daemon stopping).
impl GiveUp for AtomicBool {
    fn given_up(&self) -> bool {
        self.load(Ordering::SeqCst)
    }
}

/// A job's reply, and when the cluster status it rests on began to be read: a requester that
/// arrived after that instant may not be given this reply's confirmation ([`crate::merge`]).
#[derive(Debug, Clone)]
pub struct Ran {
    /// The reply.
    pub reply: FenceReply,
    /// For a confirmed power change, when the read that confirmed it began (for a reboot: the
    /// off's); otherwise when the job ended.
    pub observed: Instant,
}

/// How a power change was confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Confirmed {
    /// This request made the change and saw it done.
    Fenced,
    /// It joined another owner's fence of the same guest and saw that done.
    Joined,
    /// The guest was already pinned there and shown there: nothing was written.
    AlreadyThere,
}

/// Which part of a request a power change is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// An off or an on of its own: ended (journal cleared) once confirmed.
    Alone,
    /// A reboot's off: once confirmed, its journal stays until the on's begin clears it.
    RebootOff,
    /// A reboot's on: its begin also ends the off.
    RebootOn,
}

/// Why a fence step failed.
#[derive(Debug, thiserror::Error)]
enum StepError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Pcmk(#[from] PcmkError),
    #[error("the request timed out while {0}")]
    Timeout(&'static str),
    #[error("the request was cancelled while {0}")]
    Cancelled(&'static str),
    #[error("{0}")]
    Blocked(String),
    /// An off cannot be confirmed: see [`NO_HOST_FENCING`].
    #[error("{NO_HOST_FENCING}")]
    NoHostFencing,
}

/// Why an off is never confirmed while the host cluster runs with `stonith-enabled=false`.
/// Without fencing, Pacemaker takes the resources of a host node it lost for stopped, and
/// `crm_mon` shows them so, while the guest may still run on that node: "stopped everywhere"
/// proves nothing then, and a false OK lets the guest cluster recover the guest's services
/// elsewhere while it still writes its shared data.
pub const NO_HOST_FENCING: &str = "the host cluster has stonith-enabled=false: it shows a lost \
     host node's guests as stopped while they may still run there, so vm-stonithd cannot \
     confirm an off (enable fencing on the host cluster: a fence device and \
     stonith-enabled=true)";

impl StepError {
    fn outcome(&self) -> Outcome {
        match self {
            StepError::Timeout(_) | StepError::Cancelled(_) => Outcome::TimedOut,
            _ => Outcome::Failed,
        }
    }

    /// What the last-fence record says of a fence that ended so.
    fn recorded(&self) -> FenceResult {
        match self.outcome() {
            Outcome::TimedOut => FenceResult::TimedOut,
            _ => FenceResult::Failed,
        }
    }
}

/// Carries out fences on this host node.
#[derive(Debug)]
pub struct Executor {
    pcmk: Pacemaker,
    watcher: Watcher,
    node: String,
    locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    view: StatusView,
}

impl Executor {
    /// An executor acting as host node `node` on the CIB `pcmk` designates.
    pub fn new(pcmk: Pacemaker, watcher: Watcher, node: String) -> Executor {
        Executor {
            pcmk,
            watcher,
            node,
            locks: Mutex::new(HashMap::new()),
            view: StatusView::default(),
        }
    }

    /// The watcher waits use.
    pub fn watcher(&self) -> &Watcher {
        &self.watcher
    }

    /// Runs `job` and says how it ended. Never reports `Done` for a power change that the
    /// cluster's status does not show.
    pub fn run(&self, job: &Job) -> FenceReply {
        self.execute(job).reply
    }

    /// [`Executor::run`], also saying when the status the reply rests on was read.
    pub fn execute(&self, job: &Job) -> Ran {
        let ended = |reply| Ran {
            reply,
            observed: Instant::now(),
        };
        match job.action {
            Action::Monitor => ended(self.monitor(job)),
            Action::Status => ended(self.status(job)),
            Action::Off => self.power(job, Power::Off, None).0,
            Action::On => self.power(job, Power::On, None).0,
            Action::Reboot => {
                let (off, on) = self.power(job, Power::Off, Some(Power::On));
                // no on: the off was not confirmed, and the on not tried
                let Some(on) = on else {
                    return off;
                };
                let on = on.reply;
                let reply = if on.outcome == Outcome::Done {
                    FenceReply::new(
                        Outcome::Done,
                        PowerState::On,
                        "rebooted: off confirmed, then started",
                    )
                } else {
                    // The fence itself (off) is done and confirmed; say so, with the failure.
                    FenceReply::new(
                        Outcome::Done,
                        PowerState::Off,
                        format!("off confirmed; starting it again failed: {}", on.message),
                    )
                };
                // what a reboot confirms as a fence is the off
                Ran {
                    reply,
                    observed: off.observed,
                }
            }
            Action::List => ended(FenceReply::new(
                Outcome::Failed,
                PowerState::Unknown,
                "list is answered by the daemon",
            )),
        }
    }

    /// The executor's Pacemaker handle, each tool call bounded by `deadline` (but given at
    /// least `MIN_TOOL_TIME`). Everything of this daemon that reads the CIB for a request
    /// goes through it, so one handle (live, or a file in tests) and one read count serve all.
    pub fn pcmk_until(&self, deadline: Instant) -> Pacemaker {
        let left = deadline.saturating_duration_since(Instant::now());
        self.pcmk
            .clone()
            .with_timeout(left.clamp(MIN_TOOL_TIME, vm_pcmk::tools::TOOL_TIMEOUT))
    }

    fn monitor(&self, job: &Job) -> FenceReply {
        match self.pcmk_until(job.deadline).status() {
            Ok(st) if st.nodes.iter().any(|n| n.is_dc) => FenceReply::new(
                Outcome::Done,
                PowerState::Unknown,
                format!(
                    "host node {} reached the host cluster (it has a DC)",
                    self.node
                ),
            ),
            Ok(_) => FenceReply::new(
                Outcome::Failed,
                PowerState::Unknown,
                "the host cluster has no DC",
            ),
            Err(e) => FenceReply::new(Outcome::Failed, PowerState::Unknown, error_chain(&e)),
        }
    }

    fn resource(&self, job: &Job) -> Result<(String, Name), StepError> {
        self.find(job).map(|(rsc, target, _)| (rsc, target))
    }

    /// The target's resource, and the CIB snapshot it was found in.
    fn find(&self, job: &Job) -> Result<(String, Name, vm_pcmk::Cib), StepError> {
        let target = job
            .target
            .clone()
            .ok_or(StepError::Blocked("the request names no target".into()))?;
        let cib = self.pcmk_until(job.deadline).snapshot()?;
        let rsc = plan::target_resource(&cib, &target, job.resource.as_ref())?;
        Ok((rsc, target, cib))
    }

    fn status(&self, job: &Job) -> FenceReply {
        // From the status view when the status already names the resource (the usual case: a
        // guest added by vm-ctl, or a configured resource id); the CIB only to find other ones.
        let pcmk = self.pcmk_until(job.deadline);
        let read = || {
            self.view
                .get(self.watcher.generation(), Instant::now(), || pcmk.status())
        };
        let quick = job.target.as_ref().and_then(|target| {
            let rsc = job
                .resource
                .clone()
                .unwrap_or_else(|| guest_resource(target.as_str()));
            let st = read().ok()?;
            let found = st
                .instances(&rsc)
                .any(|r| r.agent.ends_with(":VirtualDomain"));
            found.then(|| (rsc, target.clone(), st))
        });
        let result = match quick {
            Some(found) => Ok(found),
            None => self.resource(job).and_then(|(rsc, target)| {
                let st = read()?;
                Ok((rsc, target, st))
            }),
        };
        match result {
            Ok((rsc, target, st)) => status_reply(&target, &rsc, &st, || {
                self.pcmk_until(job.deadline)
                    .snapshot()
                    .map(|cib| cib.stonith_enabled())
            }),
            Err(e) => FenceReply::new(e.outcome(), PowerState::Unknown, error_chain(&e)),
        }
    }

    fn lock_for(&self, rsc: &str) -> Arc<Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.entry(rsc.to_owned()).or_default().clone()
    }

    /// `first` (`off` or `on`), confirmed; then, if it was and `then` is given (the on of a
    /// reboot), `then`, confirmed. The CIB snapshot that found the resource is the first
    /// begin's compare-and-swap base (one read less), and a reboot holds this daemon's lock on
    /// the guest across both and ends its off in the on's begin (one read and one write less):
    /// an off reads the CIB twice, a reboot three times.
    fn power(&self, job: &Job, first: Power, then: Option<Power>) -> (Ran, Option<Ran>) {
        let ended = |reply| Ran {
            reply,
            observed: Instant::now(),
        };
        let (rsc, target, cib) = match self.find(job) {
            Ok(x) => x,
            Err(e) => {
                let reply = FenceReply::new(e.outcome(), PowerState::Unknown, error_chain(&e));
                return (ended(reply), None);
            }
        };
        let mut base = Some(cib);
        let lock = self.lock_for(&rsc);
        // serialise fences of one guest in this daemon (bounded: the job's own deadline)
        let _guard = loop {
            match lock.try_lock() {
                Ok(g) => break g,
                Err(std::sync::TryLockError::Poisoned(p)) => break p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => {
                    // the fence we waited for changed the CIB: its snapshot would only cost a
                    // refused write, or decide without writing on a state that has passed
                    base = None;
                    if Instant::now() >= job.deadline || job.cancel.given_up() {
                        let reply = FenceReply::new(
                            Outcome::TimedOut,
                            PowerState::Unknown,
                            format!(
                                "another fence of {target} was still running when this request timed out"
                            ),
                        );
                        return (ended(reply), None);
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        };
        let owner = Owner {
            node: self.node.clone(),
            pid: std::process::id(),
            request: job.request.clone(),
        };
        let part = if then.is_some() {
            Part::RebootOff
        } else {
            Part::Alone
        };
        let ran = self.power_part(job, &target, &rsc, first, &owner, part, base);
        let then = match then {
            Some(verb) if ran.reply.outcome == Outcome::Done => {
                Some(self.power_part(job, &target, &rsc, verb, &owner, Part::RebootOn, None))
            }
            _ => None,
        };
        (ran, then)
    }

    /// One confirmed power change of `rsc` (the caller holds its lock); `base`: a fresh CIB
    /// snapshot to begin from.
    #[allow(clippy::too_many_arguments)]
    fn power_part(
        &self,
        job: &Job,
        target: &Name,
        rsc: &str,
        verb: Power,
        owner: &Owner,
        part: Part,
        base: Option<vm_pcmk::Cib>,
    ) -> Ran {
        let ended = |reply| Ran {
            reply,
            observed: Instant::now(),
        };
        let state = match verb {
            Power::Off => PowerState::Off,
            Power::On => PowerState::On,
        };
        let span = tracing::info_span!("fence", %target, %rsc, action = %verb);
        let _e = span.enter();
        let t0 = Instant::now();
        let result = self.power_steps(job, rsc, verb, owner, part, base);
        // the guest's state has just been changed (or tried to be): no status answer from
        // before
        self.view.invalidate();
        match result {
            Ok((how, observed)) => {
                tracing::info!(
                    elapsed_ms = t0.elapsed().as_millis() as u64,
                    how = ?how,
                    "{verb} confirmed by the host cluster"
                );
                let reply = FenceReply::new(
                    Outcome::Done,
                    state,
                    format!(
                        "{target} ({rsc}) is {} (confirmed by the host cluster{})",
                        if verb == Power::Off {
                            "stopped on every node"
                        } else {
                            "running"
                        },
                        match how {
                            Confirmed::Fenced => "",
                            Confirmed::Joined => ", joining a fence already in progress",
                            Confirmed::AlreadyThere => ", already so: nothing written",
                        }
                    ),
                );
                Ran { reply, observed }
            }
            Err(e) => {
                let msg = error_chain(&e);
                tracing::warn!(
                    elapsed_ms = t0.elapsed().as_millis() as u64,
                    "{verb} failed: {msg}"
                );
                ended(FenceReply::new(
                    e.outcome(),
                    PowerState::Unknown,
                    format!("{verb} of {target} ({rsc}) failed: {msg}"),
                ))
            }
        }
    }

    /// Returns how the fence was confirmed, and when the status read that confirmed it began.
    fn power_steps(
        &self,
        job: &Job,
        rsc: &str,
        verb: Power,
        owner: &Owner,
        part: Part,
        base: Option<vm_pcmk::Cib>,
    ) -> Result<(Confirmed, Instant), StepError> {
        let deadline_wall =
            SystemTime::now() + job.deadline.saturating_duration_since(Instant::now());
        // when the status read that found the guest already there began
        let already_read = Cell::new(None);
        // whether this attempt's snapshot held the reboot's off, now ended in it
        let off_ended = Cell::new(false);
        let begun = self
            .pcmk_until(job.deadline)
            .transact_from(base, CAS_ATTEMPTS, |cib| -> Result<Update<Option<Begin>>, StepError> {
                // The reboot's off, confirmed, is ended in the same write as the on begins
                // (its journal cleared, its power-off switch removed, target-role kept).
                off_ended.set(part == Part::RebootOn && plan::finish(cib, rsc, owner));
                // A decision not to write still writes the off's end.
                let decided = |d: Update<Option<Begin>>| match d {
                    Update::Unchanged(b) if off_ended.get() => Update::Write(b),
                    d => d,
                };
                // refused before anything is written: there is nothing to roll back
                if verb == Power::Off && !cib.stonith_enabled() {
                    return Err(StepError::NoHostFencing);
                }
                // Already pinned where it is sent and shown there (a repeat, or a request that
                // waited on the lock for an identical one): confirmed without writing. The
                // status is read only in that case, so a usual fence pays nothing for it.
                if plan::pinned(cib, rsc, verb) {
                    let read_at = Instant::now();
                    if self
                        .pcmk_until(job.deadline)
                        .status()
                        .is_ok_and(|st| confirmed(&st, rsc, verb).unwrap_or(false))
                    {
                        already_read.set(Some(read_at));
                        if off_ended.get() {
                            // the reboot is over: its off confirmed, the guest already running
                            plan::end_record(cib, rsc, FenceResult::Done, plan::unix(SystemTime::now()));
                        }
                        return Ok(decided(Update::Unchanged(None)));
                    }
                }
                let prim = cib.resource(rsc);
                if prim.is_some_and(|p| !vm_pcmk::virtualdomain::stops_hard_on_fence(p)) && verb == Power::Off {
                    tracing::warn!("{rsc} does not use ocf:pm-kvm-tools:VirtualDomain: its stop is a graceful shutdown first (vm-ctl check)");
                }
                let now = SystemTime::now();
                match plan::begin(cib, rsc, verb, owner, deadline_wall, now)? {
                    b @ Begin::Started(_) => {
                        // the last-fence record, in the change that begins the fence (a
                        // reboot's on continues the record its off began)
                        if part != Part::RebootOn
                            && let Some(rec) = job.requester.record(job.action, plan::unix(now))
                            && !plan::write_record(cib, &self.node, rsc, &rec)
                        {
                            tracing::debug!(node = %self.node, "no node_state for this node in the CIB: no last-fence record");
                        }
                        Ok(Update::Write(Some(b)))
                    }
                    b @ Begin::Joined(_) => Ok(decided(Update::Unchanged(Some(b)))),
                }
            });
        if part == Part::RebootOn && begun.is_err() {
            // nothing was written, the off's end included: end it on its own (the reboot's
            // fence, its off, is done)
            if let Err(e) = self.end(rsc, owner, false, FenceResult::Done) {
                tracing::warn!(
                    "off confirmed, but clearing its journal failed (the janitor will): {}",
                    error_chain(&e)
                );
            }
        }
        let joined = match begun {
            Ok(None) => {
                let at = already_read.get().unwrap_or_else(Instant::now);
                return Ok((Confirmed::AlreadyThere, at));
            }
            Ok(Some(Begin::Started(_))) => false,
            Ok(Some(Begin::Joined(j))) => {
                tracing::info!(owner = ?j.owner, "a fence of the same guest is in progress: waiting for it");
                true
            }
            // nothing was written: nothing to roll back
            Err(e) => return Err(e),
        };
        self.view.invalidate();
        let result = self.wait_for(job, rsc, verb);
        if joined {
            return result.map(|at| (Confirmed::Joined, at));
        }
        match result {
            // a reboot's off is ended by its on's begin
            Ok(at) if part == Part::RebootOff => Ok((Confirmed::Fenced, at)),
            Ok(at) => {
                // Confirmed. Clearing the journal and force-stop attribute is housekeeping: if it
                // fails, the janitor finishes it; the fence itself is done.
                if let Err(e) = self.end(rsc, owner, false, FenceResult::Done) {
                    tracing::warn!(
                        "{verb} confirmed, but clearing its journal failed (the janitor will): {}",
                        error_chain(&e)
                    );
                }
                Ok((Confirmed::Fenced, at))
            }
            Err(e) => {
                // a reboot whose on failed is still a fence done: its off was confirmed, and
                // the requester is told Done
                let result = if part == Part::RebootOn {
                    FenceResult::Done
                } else {
                    e.recorded()
                };
                if let Err(re) = self.end(rsc, owner, true, result) {
                    tracing::error!(
                        "rolling back the {verb} failed (the janitor will retry): {}",
                        error_chain(&re)
                    );
                }
                Err(e)
            }
        }
    }

    /// Ends the fence of `rsc` that `owner` runs (rolled back, or finished), and its last-fence
    /// record with `result`, in one change.
    fn end(
        &self,
        rsc: &str,
        owner: &Owner,
        rollback: bool,
        result: FenceResult,
    ) -> Result<(), StepError> {
        // Housekeeping gets its own time, independent of the request's deadline.
        self.pcmk
            .clone()
            .with_timeout(Duration::from_secs(30))
            .transact(CAS_ATTEMPTS, |cib| -> Result<Update<()>, StepError> {
                let changed = if rollback {
                    plan::rollback(cib, rsc, Some(owner))
                } else {
                    plan::finish(cib, rsc, owner)
                };
                if changed {
                    plan::end_record(cib, rsc, result, plan::unix(SystemTime::now()));
                }
                Ok(if changed {
                    Update::Write(())
                } else {
                    Update::Unchanged(())
                })
            })
    }

    /// Waits until `rsc` is stopped everywhere (`off`) or running on one node (`on`); returns
    /// when the status read that showed it began.
    fn wait_for(&self, job: &Job, rsc: &str, verb: Power) -> Result<Instant, StepError> {
        let what = if verb == Power::Off {
            "waiting for the guest to stop"
        } else {
            "waiting for the guest to start"
        };
        loop {
            let seen = self.watcher.generation();
            let read_at = Instant::now();
            match self.pcmk_until(job.deadline).status() {
                Ok(st) => {
                    if confirmed(&st, rsc, verb)? {
                        return Ok(read_at);
                    }
                }
                // a transient failure to read the status is retried until the deadline
                Err(e) => tracing::debug!("cannot read the status (retrying): {}", error_chain(&e)),
            }
            if job.cancel.given_up() {
                return Err(StepError::Cancelled(what));
            }
            let left = job.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(StepError::Timeout(what));
            }
            self.watcher.wait_change(seen, left.min(FALLBACK));
        }
    }

    /// Finishes or rolls back journal entries nobody in this process is working on: entries of
    /// this node's earlier vm-stonithd (crashed mid-fence) and long-expired ones of any node.
    /// A finished fence (the guest already where it was sent) is finished, anything else is
    /// rolled back. Returns how many entries were cleaned.
    pub fn janitor(&self, active: &dyn Fn(&str) -> bool) -> Result<usize, PcmkError> {
        let pcmk = self.pcmk.clone().with_timeout(Duration::from_secs(30));
        let cib = pcmk.snapshot()?;
        let now = SystemTime::now();
        let stale: Vec<(String, plan::Journal)> = plan::journals(&cib)
            .into_iter()
            .filter(|(rsc, j)| {
                let ours = j.owner.node == self.node;
                let orphan = ours && (j.owner.pid != std::process::id() || !active(rsc));
                orphan || (!ours && j.expired(now))
            })
            .collect();
        if stale.is_empty() {
            return Ok(0);
        }
        let status = pcmk.status()?;
        let mut cleaned = 0;
        for (rsc, j) in stale {
            let done = reached(&status, &rsc, j.action);
            let result = pcmk.transact(CAS_ATTEMPTS, |cib| -> Result<Update<bool>, PcmkError> {
                // re-read: act only if the entry is still the one we saw
                if plan::journal(cib, &rsc).as_ref() != Some(&j) {
                    return Ok(Update::Unchanged(false));
                }
                let changed = if done {
                    plan::finish(cib, &rsc, &j.owner)
                } else {
                    plan::rollback(cib, &rsc, Some(&j.owner))
                };
                if changed {
                    let result = if done {
                        FenceResult::Done
                    } else {
                        FenceResult::RolledBack
                    };
                    plan::end_record(cib, &rsc, result, plan::unix(SystemTime::now()));
                }
                Ok(if changed {
                    Update::Write(true)
                } else {
                    Update::Unchanged(false)
                })
            });
            match result {
                Ok(true) => {
                    cleaned += 1;
                    tracing::warn!(%rsc, owner = ?j.owner, action = %j.action,
                        "{} a fence left unfinished by {} (journal cleaned)",
                        if done { "finished" } else { "rolled back" },
                        if j.owner.node == self.node { "an earlier vm-stonithd on this node" } else { "another node" });
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(%rsc, "cannot clean a fence journal entry: {}", error_chain(&e));
                }
            }
        }
        Ok(cleaned)
    }
}

/// The answer to `status` of `target` (resource `rsc`) from the cluster status `st`. Running
/// is on; stopped is off only if the host cluster fences (`stonith-enabled`, from `st` when it
/// says, else `cib_fences()`): without fencing, a lost host node's guests are shown stopped
/// while they may still run (see [`NO_HOST_FENCING`]), and "off" would let the guest cluster
/// take over a guest that still writes.
fn status_reply(
    target: &Name,
    rsc: &str,
    st: &ClusterStatus,
    cib_fences: impl FnOnce() -> Result<bool, PcmkError>,
) -> FenceReply {
    if active(st, rsc) {
        return FenceReply::new(
            Outcome::Done,
            PowerState::On,
            format!("{target} ({rsc}) is running"),
        );
    }
    let fences = match st.stonith_enabled {
        Some(enabled) => Ok(enabled),
        None => cib_fences(),
    };
    match fences {
        Ok(true) => FenceReply::new(
            Outcome::Done,
            PowerState::Off,
            format!("{target} ({rsc}) is stopped"),
        ),
        Ok(false) => FenceReply::new(
            Outcome::Failed,
            PowerState::Unknown,
            format!("{target} ({rsc}) is shown stopped, but {NO_HOST_FENCING}"),
        ),
        Err(e) => FenceReply::new(
            Outcome::Failed,
            PowerState::Unknown,
            format!(
                "{target} ({rsc}) is shown stopped, but whether the host cluster fences cannot \
                 be read: {}",
                error_chain(&e)
            ),
        ),
    }
}

/// Whether any instance of `rsc` is active (running, starting, stopping, migrating) anywhere.
fn active(st: &ClusterStatus, rsc: &str) -> bool {
    st.instances(rsc)
        .any(|r| r.role != Role::Stopped || !r.nodes.is_empty())
}

fn reached(st: &ClusterStatus, rsc: &str, verb: Power) -> bool {
    if verb == Power::Off {
        // present in the status (a resource missing from it is not "confirmed stopped") and
        // inactive on every node
        st.instances(rsc).next().is_some() && !active(st, rsc)
    } else {
        let started: Vec<_> = st
            .instances(rsc)
            .filter(|r| r.role == Role::Started)
            .collect();
        started.len() == 1 && started.iter().all(|r| r.nodes.len() == 1)
    }
}

/// Whether `st` confirms `verb` of `rsc`; an error when waiting on is pointless: the resource is
/// blocked, or (for an off) the status says the host cluster does not fence, which may have
/// changed since the fence began.
fn confirmed(st: &ClusterStatus, rsc: &str, verb: Power) -> Result<bool, StepError> {
    if verb == Power::Off && st.stonith_enabled == Some(false) {
        return Err(StepError::NoHostFencing);
    }
    if reached(st, rsc, verb) {
        return Ok(true);
    }
    match blocked(st, rsc) {
        Some(why) => Err(StepError::Blocked(why)),
        None => Ok(false),
    }
}

/// Why waiting for `rsc` is pointless (Pacemaker will not act on it), if it is.
fn blocked(st: &ClusterStatus, rsc: &str) -> Option<String> {
    st.instances(rsc).find(|r| !r.managed || r.blocked).map(|r| {
        format!(
            "{rsc} is unmanaged or blocked ({} on {}{}): the host cluster will not act on it; see crm_mon",
            r.role,
            if r.nodes.is_empty() { "no node".to_owned() } else { r.nodes.join(",") },
            if r.failed { ", failed" } else { "" }
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_view_is_reused_only_within_its_age_and_generation() {
        let view = StatusView::default();
        let reads = std::cell::Cell::new(0);
        let read = || -> Result<ClusterStatus, ()> {
            reads.set(reads.get() + 1);
            Ok(ClusterStatus::default())
        };
        let t0 = Instant::now();
        view.get(7, t0, read).unwrap();
        view.get(7, t0 + STATUS_MAX_AGE / 2, read).unwrap();
        assert_eq!(reads.get(), 1, "same generation, young enough: reused");
        view.get(8, t0 + STATUS_MAX_AGE / 2, read).unwrap();
        assert_eq!(reads.get(), 2, "a cluster event in between: read afresh");
        let t1 = t0 + STATUS_MAX_AGE / 2;
        view.get(8, t1 + STATUS_MAX_AGE, read).unwrap();
        assert_eq!(reads.get(), 3, "too old: read afresh");
        view.invalidate();
        view.get(8, t1 + STATUS_MAX_AGE, read).unwrap();
        assert_eq!(reads.get(), 4, "invalidated: read afresh");
        // a failed read is not kept, and the last good one is not served past its age either
        let failed = view.get(8, t1 + STATUS_MAX_AGE * 3, || {
            Err::<ClusterStatus, _>("crm_mon")
        });
        assert_eq!(failed.unwrap_err(), "crm_mon");
        view.get(8, t1 + STATUS_MAX_AGE * 3, read).unwrap();
        assert_eq!(reads.get(), 5);
    }

    fn st(resource_attrs: &str, nodes: &str) -> ClusterStatus {
        ClusterStatus::from_crm_mon_xml(&format!(
            r#"<pacemaker-result><nodes><node name="n1" online="true"/><node name="n2" online="true"/></nodes>
            <resources><resource id="g" resource_agent="ocf:pm-kvm-tools:VirtualDomain" {resource_attrs}>{nodes}</resource></resources></pacemaker-result>"#
        ))
        .unwrap()
    }

    const RUNNING: &str = r#"role="Started" managed="true" failed="false" blocked="false""#;

    #[test]
    fn off_needs_the_resource_stopped_everywhere() {
        let stopped = st(
            r#"role="Stopped" managed="true" failed="false" blocked="false""#,
            "",
        );
        assert!(reached(&stopped, "g", Power::Off));
        assert!(!active(&stopped, "g"));
        // absent from the status is not "confirmed stopped"
        assert!(!reached(&stopped, "other", Power::Off));
        let stopping = st(r#"role="Stopping" managed="true""#, r#"<node name="n1"/>"#);
        assert!(!reached(&stopping, "g", Power::Off));
        // an unclean node still listed as running it: not stopped
        let unclean = st(RUNNING, r#"<node name="n2"/>"#);
        assert!(!reached(&unclean, "g", Power::Off) && active(&unclean, "g"));
    }

    #[test]
    fn on_needs_it_started_on_exactly_one_node() {
        assert!(reached(
            &st(RUNNING, r#"<node name="n1"/>"#),
            "g",
            Power::On
        ));
        assert!(!reached(
            &st(RUNNING, r#"<node name="n1"/><node name="n2"/>"#),
            "g",
            Power::On
        ));
        assert!(!reached(
            &st(r#"role="Starting" managed="true""#, r#"<node name="n1"/>"#),
            "g",
            Power::On
        ));
    }

    #[test]
    fn no_off_is_confirmed_when_the_host_cluster_does_not_fence() {
        let mut stopped = st(
            r#"role="Stopped" managed="true" failed="false" blocked="false""#,
            "",
        );
        stopped.stonith_enabled = Some(false);
        let e = confirmed(&stopped, "g", Power::Off).unwrap_err();
        assert!(matches!(e, StepError::NoHostFencing), "{e}");
        assert!(e.to_string().contains("stonith-enabled=false"), "{e}");
        assert_eq!(e.outcome(), Outcome::Failed);
        // an on is not a fence: it is confirmed as usual
        let mut running = st(RUNNING, r#"<node name="n1"/>"#);
        running.stonith_enabled = Some(false);
        assert!(confirmed(&running, "g", Power::On).unwrap());
        // with fencing (or a report that does not say: the CIB was checked when it began)
        for fencing in [Some(true), None] {
            stopped.stonith_enabled = fencing;
            assert!(confirmed(&stopped, "g", Power::Off).unwrap(), "{fencing:?}");
        }
    }

    #[test]
    fn status_says_off_only_where_the_host_cluster_fences() {
        let g = Name::new("g").unwrap();
        let unread = || -> Result<bool, PcmkError> { panic!("the CIB need not be read") };
        let mut stopped = st(
            r#"role="Stopped" managed="true" failed="false" blocked="false""#,
            "",
        );
        stopped.stonith_enabled = Some(true);
        let r = status_reply(&g, "g", &stopped, unread);
        assert_eq!(
            (r.outcome, r.state),
            (Outcome::Done, PowerState::Off),
            "{r:?}"
        );
        // without host fencing a stopped guest may be running on a lost node
        stopped.stonith_enabled = Some(false);
        let r = status_reply(&g, "g", &stopped, unread);
        assert_eq!(
            (r.outcome, r.state),
            (Outcome::Failed, PowerState::Unknown),
            "{r:?}"
        );
        assert!(r.message.contains("stonith-enabled=false"), "{r:?}");
        // a status that does not say: the CIB decides
        stopped.stonith_enabled = None;
        let r = status_reply(&g, "g", &stopped, || Ok(false));
        assert_eq!(r.state, PowerState::Unknown, "{r:?}");
        let r = status_reply(&g, "g", &stopped, || Ok(true));
        assert_eq!(r.state, PowerState::Off, "{r:?}");
        // running is on, fencing or not
        let mut running = st(RUNNING, r#"<node name="n1"/>"#);
        running.stonith_enabled = Some(false);
        let r = status_reply(&g, "g", &running, unread);
        assert_eq!(
            (r.outcome, r.state),
            (Outcome::Done, PowerState::On),
            "{r:?}"
        );
    }

    #[test]
    fn blocked_or_unmanaged_resources_fail_fast() {
        assert_eq!(blocked(&st(RUNNING, r#"<node name="n1"/>"#), "g"), None);
        let b = blocked(
            &st(
                r#"role="Started" managed="true" failed="true" blocked="true""#,
                r#"<node name="n1"/>"#,
            ),
            "g",
        );
        assert!(b.is_some_and(|m| m.contains("blocked") && m.contains("n1")));
        assert!(
            blocked(
                &st(r#"role="Started" managed="false""#, r#"<node name="n1"/>"#),
                "g"
            )
            .is_some()
        );
    }
}
