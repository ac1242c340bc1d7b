//! Running Pacemaker's tools against one CIB, live or offline.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use vm_common::process::{Cmd, Output, ProcessError};

use crate::cib::{Cib, CibError, CibVersion};
use crate::status::{ClusterStatus, StatusError};
use crate::xml::{Element, Node};

/// `cibadmin`'s exit status when the CIB manager refuses an update because the CIB changed
/// since the update's base was read (`pcmk_err_old_data`, "Update was older than existing
/// configuration").
const EXIT_OLD_DATA: i32 = 103;

/// How often a read-decide-write cycle is retried when concurrent writers keep changing the
/// CIB under it.
pub const DEFAULT_ATTEMPTS: u32 = 20;

/// Environment variable through which every Pacemaker tool is pointed at an offline CIB file.
pub const CIB_FILE_ENV: &str = "CIB_file";

/// Deadline for one tool call. Pacemaker's tools answer in tens of milliseconds; a minute
/// means the CIB manager is wedged, and the caller should hear about it.
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(60);

/// Pacemaker's own CIB directory (`CRM_CONFIG_DIR`): `cibadmin` writes a `CIB_file` there
/// with its digest and backups, so a file in it is always written through `cibadmin`.
const PACEMAKER_CIB_DIR: &str = "/var/lib/pacemaker/cib";

/// Which CIB the tools act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CibTarget {
    /// The running cluster's CIB manager.
    Live,
    /// An offline CIB file (what `CIB_file=PATH` selects).
    File(PathBuf),
}

/// A failed step while talking to Pacemaker.
#[derive(Debug, thiserror::Error)]
pub enum PcmkError {
    /// The tool could not be run, or ran past its deadline.
    #[error("Cannot {step}")]
    Run {
        /// What we were doing, e.g. "query the CIB".
        step: &'static str,
        /// Why the tool could not run.
        #[source]
        source: ProcessError,
    },
    /// The tool ran and reported failure.
    #[error("Cannot {step}: `{argv}` exited with {code}: {stderr}")]
    Failed {
        /// What we were doing.
        step: &'static str,
        /// The command line (for the operator to re-run).
        argv: String,
        /// Exit code (-1 when killed by a signal).
        code: i32,
        /// What the tool printed on stderr.
        stderr: String,
    },
    /// The CIB changed between our read and our write, every time we tried.
    #[error(
        "Cannot {step}: the CIB kept changing under us ({attempts} attempts); \
         another writer is busy, try again"
    )]
    Conflict {
        /// What we were doing.
        step: &'static str,
        /// How many read-decide-write cycles were tried.
        attempts: u32,
    },
    /// The CIB's content is not a CIB.
    #[error("Cannot {step}: the CIB could not be read")]
    Cib {
        /// What we were doing.
        step: &'static str,
        /// Why.
        #[source]
        source: CibError,
    },
    /// A temporary file for a tool could not be written.
    #[error("Cannot {step}: cannot write a temporary file")]
    TempFile {
        /// What we were doing.
        step: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A CIB file could not be replaced with its new version.
    #[error("Cannot {step}: cannot replace {path}")]
    WriteFile {
        /// What we were doing.
        step: &'static str,
        /// The CIB file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The tool's XML output could not be read.
    #[error("Cannot {step}: unexpected output")]
    Output {
        /// What we were doing.
        step: &'static str,
        /// The parse failure.
        #[source]
        source: StatusError,
    },
}

/// Result of `crm_verify`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// `crm_verify` found no errors.
    pub valid: bool,
    /// Everything it printed (errors and warnings), for the user.
    pub messages: String,
}

/// What a read-decide-write step decided.
#[derive(Debug)]
pub enum Update<T> {
    /// Nothing to write (already as wanted, or a dry run); carries the result.
    Unchanged(T),
    /// Write the edited snapshot; carries the result to return once it is written.
    Write(T),
}

impl<T> Update<T> {
    /// The same decision, its result mapped.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Update<U> {
        match self {
            Update::Unchanged(t) => Update::Unchanged(f(t)),
            Update::Write(t) => Update::Write(f(t)),
        }
    }
}

/// How many times a handle and its clones read the CIB (`cibadmin --query`, or a CIB file) and the cluster
/// status (`crm_mon`): each read is a tool call of 15-25 ms on a live cluster, and the fence path
/// is measured by them (docs/benchmarks.md).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reads {
    /// `cibadmin --query` calls and reads of a CIB file.
    pub cib: u64,
    /// `crm_mon` calls.
    pub status: u64,
}

#[derive(Debug, Default)]
struct ReadCounters {
    cib: AtomicU64,
    status: AtomicU64,
}

/// A handle on one CIB. Cheap to clone; holds no connection (each call runs a tool). Clones
/// share one [`Reads`] count.
#[derive(Debug, Clone)]
pub struct Pacemaker {
    target: CibTarget,
    timeout: Duration,
    reads: Arc<ReadCounters>,
    /// The last CIB [`Pacemaker::verify_cib`] found valid, as the XML `crm_verify` read: a
    /// write of exactly that CIB to a plain file needs no `cibadmin` (see
    /// `write_verified_file`).
    verified: Arc<Mutex<Option<String>>>,
}

impl Pacemaker {
    /// The CIB that Pacemaker's own tools would use in this environment: the file named by
    /// `CIB_file` when it is set and non-empty, otherwise the live cluster.
    pub fn from_env() -> Self {
        match std::env::var_os(CIB_FILE_ENV) {
            Some(path) if !path.is_empty() => Self::file(PathBuf::from(path)),
            _ => Self::live(),
        }
    }

    /// The live cluster.
    pub fn live() -> Self {
        Self {
            target: CibTarget::Live,
            timeout: TOOL_TIMEOUT,
            reads: Arc::default(),
            verified: Arc::default(),
        }
    }

    /// An offline CIB file.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Self {
            target: CibTarget::File(path.into()),
            timeout: TOOL_TIMEOUT,
            reads: Arc::default(),
            verified: Arc::default(),
        }
    }

    /// How many reads this handle and its clones have made so far (attempted calls, failed
    /// ones included).
    pub fn reads(&self) -> Reads {
        Reads {
            cib: self.reads.cib.load(Ordering::Relaxed),
            status: self.reads.status.load(Ordering::Relaxed),
        }
    }

    /// Which CIB this handle acts on.
    pub fn target(&self) -> &CibTarget {
        &self.target
    }

    /// The CIB file, when offline.
    pub fn cib_file(&self) -> Option<&Path> {
        match &self.target {
            CibTarget::File(p) => Some(p),
            CibTarget::Live => None,
        }
    }

    /// A command for `program` pointed at this handle's CIB: `CIB_file` is set for a file
    /// target and removed for the live cluster (so an inherited `CIB_file` cannot redirect a
    /// live-cluster handle).
    pub fn tool(&self, program: &str) -> Cmd {
        let cmd = Cmd::new(program).timeout(self.timeout);
        match &self.target {
            CibTarget::File(path) => cmd.env(CIB_FILE_ENV, path),
            CibTarget::Live => cmd.env_remove(CIB_FILE_ENV),
        }
    }

    /// Run `cmd` for `step`; a non-zero exit is an error carrying the tool's stderr.
    pub fn run_ok(&self, step: &'static str, cmd: &Cmd) -> Result<Output, PcmkError> {
        let out = cmd
            .run()
            .map_err(|source| PcmkError::Run { step, source })?;
        if out.success() {
            Ok(out)
        } else {
            Err(PcmkError::Failed {
                step,
                argv: cmd.display(),
                code: out.code().unwrap_or(-1),
                stderr: out.stderr_text(),
            })
        }
    }

    /// Set the deadline of each tool call.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The whole CIB, parsed. On a file, the file as `cibadmin --query` would show it (with an
    /// empty `<status/>` added when it has none), read directly (no `cibadmin --query`: see `read_file`).
    pub fn snapshot(&self) -> Result<Cib, PcmkError> {
        const STEP: &str = "read the CIB";
        if let Some(mut cib) = self.read_file() {
            if cib.root().find("status").is_none() {
                cib.root_mut().push(Element::new("status"));
            }
            return Ok(cib);
        }
        let xml = self.query()?;
        Cib::parse(&xml).map_err(|source| PcmkError::Cib { step: STEP, source })
    }

    /// A file target's CIB read from the file itself rather than through `cibadmin --query`,
    /// which on a file only parses it and checks it against the schema (~20 ms of process start
    /// and schema loading, a fifth of a one-guest `vm-ctl resource add`, docs/benchmarks.md).
    /// Nothing is lost: what is written goes through `crm_verify` and `cibadmin`, which check
    /// the schema. `None` (use `cibadmin --query`, and its error messages) for the live cluster,
    /// a compressed or unreadable file, or one that is not a `<cib>`.
    fn read_file(&self) -> Option<Cib> {
        let path = self.cib_file()?;
        if path.as_os_str() == "-" || path.extension().is_some_and(|e| e == "bz2") {
            return None;
        }
        let text = std::fs::read_to_string(path).ok()?;
        self.reads.cib.fetch_add(1, Ordering::Relaxed);
        Cib::parse(&text).ok()
    }

    /// Write `after`, an edit of snapshot `before`, as a versioned patch: `crm_diff --cib`
    /// computes the changes, tagged with `before`'s version as their source, and
    /// `cibadmin --patch` applies them only if the CIB is still at that version (the CIB
    /// manager refuses a patch whose source is not its current version). Returns `Ok(false)`
    /// on such a conflict, and `Ok(true)` without writing when there is no change.
    ///
    /// A patch rather than a whole-CIB `cibadmin --replace`: a replace that touches the nodes
    /// section makes the controller re-run its election (`do_cib_replaced`), which delays the
    /// cluster's reaction by 1-2 s (measured, docs/benchmarks.md); a patch does not, and it
    /// never carries a stale copy of the status section.
    ///
    /// The patch's shape: one change per object, except for a `resources` or `constraints`
    /// section that gains so many objects that Pacemaker would spend longer placing them one
    /// by one than taking the whole section (see `sections_to_recreate`); such a section is
    /// deleted and created again, whole, in the same patch, so the write stays one versioned
    /// change.
    ///
    /// On a plain CIB file (see `plain_file`), an `after` that [`Pacemaker::verify_cib`] has
    /// just found valid is written without `crm_diff` and `cibadmin` (`write_verified_file`:
    /// the same version check, under an `flock` of the file): `crm_verify` has made the
    /// checks `cibadmin` would, and their two process starts and schema loads were most of a
    /// small change's time (docs/benchmarks.md, issue #13).
    pub fn patch_if_unchanged(&self, before: &Cib, after: &Cib) -> Result<bool, PcmkError> {
        const STEP: &str = "write the CIB";
        // the patch's target version: what the CIB manager itself makes of a configuration
        // change (epoch + 1, num_updates 0)
        let mut next = after.clone();
        let at = before.version();
        next.root_mut()
            .set_attr("epoch", at.epoch.saturating_add(1).to_string());
        next.root_mut().set_attr("num_updates", "0");
        let verified = self
            .verified
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        // on a plain file, a CIB crm_verify has just found valid is written without cibadmin
        let direct = self
            .plain_file()
            .filter(|_| verified.is_some_and(|xml| xml == after.to_xml()));
        if let Some(path) = direct {
            if after.root() == before.root() {
                return Ok(true);
            }
            if let Some(written) = write_verified_file(&path, before, &next)? {
                return Ok(written);
            }
        }
        let recreate = sections_to_recreate(before, &next);
        // crm_diff compares the CIBs without the sections that are re-created whole
        let mut old_doc = std::borrow::Cow::Borrowed(before);
        let mut whole = Vec::new();
        // positions in the whole document: the patch puts each section back before the next
        // one is taken out
        let positions: Vec<usize> = recreate
            .iter()
            .map(|name| section_position(&next, name))
            .collect();
        for (name, position) in recreate.iter().zip(positions) {
            if let Some(section) = take_section(next.root_mut(), name) {
                whole.push((*name, position, section));
            }
            take_section(old_doc.to_mut().root_mut(), name);
        }
        let old = write_temp(STEP, &old_doc)?;
        let new = write_temp(STEP, &next)?;
        let diff = Cmd::new("crm_diff")
            .arg("--cib")
            .arg("--original")
            .arg(old.path())
            .arg("--new")
            .arg(new.path())
            .timeout(self.timeout);
        let out = diff
            .run()
            .map_err(|source| PcmkError::Run { step: STEP, source })?;
        // crm_diff: 0 identical, 1 different (the patch is on stdout); with the target's epoch
        // one higher than the source's, it always finds the root changed
        match out.code() {
            Some(0) if whole.is_empty() => return Ok(true),
            Some(1) => {}
            code => {
                return Err(PcmkError::Failed {
                    step: STEP,
                    argv: diff.display(),
                    code: code.unwrap_or(-1),
                    stderr: out.stderr_text(),
                });
            }
        }
        let patch = if whole.is_empty() {
            out.stdout_text()
        } else {
            let mut patch =
                Element::parse(&out.stdout_text()).map_err(|source| PcmkError::Cib {
                    step: STEP,
                    source: source.into(),
                })?;
            // the digest is that of the document crm_diff saw, without the re-created sections;
            // the version check is what guards the write
            patch.remove_attr("digest");
            for (name, position, section) in whole {
                tracing::debug!(
                    section = name,
                    position,
                    "patch re-creates the section whole"
                );
                patch.push(
                    Element::new("change")
                        .attr("operation", "delete")
                        .attr("path", format!("/cib/configuration/{name}")),
                );
                patch.push(
                    Element::new("change")
                        .attr("operation", "create")
                        .attr("path", "/cib/configuration")
                        .attr("position", position.to_string())
                        .child(section),
                );
            }
            patch.to_xml()
        };
        let cmd = self
            .tool("cibadmin")
            .args(["--patch", "--xml-pipe"])
            .stdin(patch);
        let out = cmd
            .run()
            .map_err(|source| PcmkError::Run { step: STEP, source })?;
        match out.code() {
            Some(0) => Ok(true),
            Some(EXIT_OLD_DATA) => Ok(false),
            code => Err(PcmkError::Failed {
                step: STEP,
                argv: cmd.display(),
                code: code.unwrap_or(-1),
                stderr: out.stderr_text(),
            }),
        }
    }

    /// Read the CIB, let `decide` edit the snapshot, and write it back only if the CIB did not
    /// change in between; when it did, start over with a fresh snapshot (at most `attempts`
    /// times). `decide` must therefore make all its checks on the snapshot it is given.
    pub fn transact<T, E>(
        &self,
        attempts: u32,
        decide: impl FnMut(&mut Cib) -> Result<Update<T>, E>,
    ) -> Result<T, E>
    where
        E: From<PcmkError>,
    {
        self.transact_from(None, attempts, decide)
    }

    /// [`Pacemaker::transact`], whose first attempt decides on `first` (a snapshot the caller
    /// has just read for its own checks) instead of reading the CIB again. The write is as
    /// guarded as ever: if the CIB changed since `first` was read, the patch is refused and the
    /// next attempt reads afresh. Only what `decide` returns without writing
    /// ([`Update::Unchanged`]) rests on `first` as it was, so `first` should be fresh.
    pub fn transact_from<T, E>(
        &self,
        mut first: Option<Cib>,
        attempts: u32,
        mut decide: impl FnMut(&mut Cib) -> Result<Update<T>, E>,
    ) -> Result<T, E>
    where
        E: From<PcmkError>,
    {
        let attempts = attempts.max(1);
        for attempt in 1..=attempts {
            let before = match first.take() {
                Some(cib) => cib,
                None => self.snapshot()?,
            };
            let mut cib = before.clone();
            let read_at = cib.version();
            match decide(&mut cib)? {
                Update::Unchanged(result) => return Ok(result),
                Update::Write(result) => {
                    if self.patch_if_unchanged(&before, &cib)? {
                        tracing::debug!(%read_at, attempt, "CIB written");
                        return Ok(result);
                    }
                    tracing::info!(%read_at, attempt, "the CIB changed while we decided; retrying");
                    // Back off a little, differently per process, so that two writers racing
                    // in lockstep fall out of step.
                    let jitter = u64::from(std::process::id() % 7) * 5;
                    std::thread::sleep(Duration::from_millis(
                        20 * u64::from(attempt.min(10)) + jitter,
                    ));
                }
            }
        }
        Err(PcmkError::Conflict {
            step: "write the CIB",
            attempts,
        }
        .into())
    }

    /// Purge remote or guest node `name`, whose resource is gone from the configuration, from
    /// the cluster daemons' caches and the CIB (`crm_node --force --remove`). Nothing to do
    /// on a CIB file, which has no daemons (the CIB's own entries are the caller's to remove).
    pub fn purge_remote_node(&self, name: &str) -> Result<(), PcmkError> {
        if self.cib_file().is_some() {
            return Ok(());
        }
        let cmd = self
            .tool("crm_node")
            .args(["--force", "--remove"])
            .arg(name);
        self.run_ok("purge the removed node from the cluster", &cmd)?;
        Ok(())
    }

    /// Run `crm_verify` on `cib` (written to a private temporary file), without touching the
    /// real CIB: "would this CIB be valid?". A valid `cib` is remembered: on a plain CIB file,
    /// [`Pacemaker::patch_if_unchanged`] writes exactly that CIB itself rather than through
    /// `crm_diff` and `cibadmin`, whose checks `crm_verify` has just made.
    pub fn verify_cib(&self, cib: &Cib) -> Result<VerifyReport, PcmkError> {
        const STEP: &str = "verify the new configuration";
        let xml = cib.to_xml();
        let file = write_temp_text(STEP, &xml)?;
        let report = Pacemaker::file(file.path())
            .with_timeout(self.timeout)
            .verify()?;
        *self.verified.lock().unwrap_or_else(PoisonError::into_inner) = report.valid.then_some(xml);
        Ok(report)
    }

    /// The target's file when vm-pcmk may write it itself: an uncompressed file outside
    /// Pacemaker's own CIB directory (symbolic links resolved). `None` for the live cluster,
    /// standard input (`-`), a `.bz2` file, or a file that cannot be resolved.
    fn plain_file(&self) -> Option<PathBuf> {
        let path = self.cib_file()?;
        if path.as_os_str() == "-" || path.extension().is_some_and(|e| e == "bz2") {
            return None;
        }
        let real = std::fs::canonicalize(path).ok()?;
        (!real.starts_with(PACEMAKER_CIB_DIR)).then_some(real)
    }

    /// Where resources would run in `cib` after the cluster reacted (status as in `cib`, no
    /// nodes brought up, quorum as recorded): `crm_simulate -S` on a private temporary copy.
    pub fn simulate_cib(&self, cib: &Cib) -> Result<ClusterStatus, PcmkError> {
        const STEP: &str = "simulate the change";
        let file = write_temp(STEP, cib)?;
        Pacemaker::file(file.path())
            .with_timeout(self.timeout)
            .simulate_with(&[], false)
    }

    /// The whole CIB as XML (`cibadmin --query`).
    pub fn query(&self) -> Result<String, PcmkError> {
        let cmd = self.tool("cibadmin").arg("--query");
        self.reads.cib.fetch_add(1, Ordering::Relaxed);
        Ok(self.run_ok("query the CIB", &cmd)?.stdout_text())
    }

    /// Validate the configuration with `crm_verify`. A configuration error is a report with
    /// `valid == false`, not an `Err`; `Err` means the check itself could not run.
    pub fn verify(&self) -> Result<VerifyReport, PcmkError> {
        let cmd = match &self.target {
            CibTarget::File(path) => self.tool("crm_verify").arg("--xml-file").arg(path),
            CibTarget::Live => self.tool("crm_verify").arg("--live-check"),
        }
        // Without --verbose crm_verify only says "config not valid"; with it, it names the
        // problem, which is what the user needs to see.
        .arg("--verbose");
        let out = cmd.run().map_err(|source| PcmkError::Run {
            step: "verify the configuration",
            source,
        })?;
        let mut messages = out.stderr_text();
        let stdout = out.stdout_text();
        if !stdout.trim().is_empty() {
            messages = format!("{}\n{messages}", stdout.trim());
        }
        Ok(VerifyReport {
            valid: out.success(),
            messages: messages.trim().to_owned(),
        })
    }

    /// Current status as `crm_mon` reports it.
    pub fn status(&self) -> Result<ClusterStatus, PcmkError> {
        const STEP: &str = "read the cluster status";
        let cmd = self.tool("crm_mon").args(["--one-shot", "--output-as=xml"]);
        self.reads.status.fetch_add(1, Ordering::Relaxed);
        let out = self.run_ok(STEP, &cmd)?;
        ClusterStatus::from_crm_mon_xml(&out.stdout_text())
            .map_err(|source| PcmkError::Output { step: STEP, source })
    }

    /// The status `crm_mon` reports for snapshot `cib` (run on a private temporary copy of it):
    /// the same report as [`Pacemaker::status`] gives for the CIB at that moment, consistent with
    /// what the caller reads from the snapshot itself (a second live read could be of a later
    /// CIB). Everything `crm_mon` shows comes from the CIB, the fencer's history aside.
    pub fn status_of(&self, cib: &Cib) -> Result<ClusterStatus, PcmkError> {
        let file = write_temp("read the cluster status", cib)?;
        Pacemaker::file(file.path())
            .with_timeout(self.timeout)
            .status()
    }

    /// Where resources would run after the cluster reacted to the current configuration:
    /// `crm_simulate -S` on this CIB, with `online` nodes brought up first (`-u`) and quorum
    /// granted (`-q 1`) for a file target. Nothing is written.
    pub fn simulate(&self, online: &[&str]) -> Result<ClusterStatus, PcmkError> {
        let grant_quorum = matches!(self.target, CibTarget::File(_));
        self.simulate_with(online, grant_quorum)
    }

    /// `crm_simulate -S` with `nodes_up` brought online first and, if `grant_quorum`, quorum.
    pub fn simulate_with(
        &self,
        nodes_up: &[&str],
        grant_quorum: bool,
    ) -> Result<ClusterStatus, PcmkError> {
        const STEP: &str = "simulate the cluster's reaction";
        let mut cmd = self.tool("crm_simulate");
        cmd = match &self.target {
            CibTarget::File(path) => cmd.arg("--xml-file").arg(path),
            CibTarget::Live => cmd.arg("--live-check"),
        };
        for node in nodes_up {
            cmd = cmd.arg("--node-up").arg(node);
        }
        if grant_quorum {
            cmd = cmd.args(["--quorum", "1"]);
        }
        let cmd = cmd.args(["--simulate", "--output-as=xml"]);
        let out = self.run_ok(STEP, &cmd)?;
        ClusterStatus::from_crm_simulate_xml(&out.stdout_text())
            .map_err(|source| PcmkError::Output { step: STEP, source })
    }
}

/// Sections of `<configuration>` that a patch may delete and create again whole. Not `nodes`
/// (the controller reacts to node changes), not `crm_config` (the controller re-reads its
/// options); these two are where a many-guest command adds its objects.
const RECREATABLE_SECTIONS: [&str; 2] = ["resources", "constraints"];

/// How many of Pacemaker's per-sibling steps (see [`sections_to_recreate`]) cost as much as
/// taking one element of a section whole (copying it, validating it, writing it out).
/// Calibrated on Pacemaker 2.1.5 (docs/benchmarks.md): ~6 ns per step, ~3 us per element.
const STEPS_PER_ELEMENT: u64 = 500;

/// Which sections `after` should carry whole in the patch from `before`.
///
/// Pacemaker (2.1.5, `apply_v2_patchset`) places each created object by walking the parent's
/// children from the first and computing each one's position by walking back over its earlier
/// siblings: an object created at position p costs about p²/2 steps, so N objects appended to
/// a section of N objects cost ~N³/6 (1,400 constraints for 200 guests: 3 s; 7,000 for 1,000
/// guests: minutes). Deleting the section and creating it again costs a step per element of
/// the section. We take the cheaper, per section.
fn sections_to_recreate(before: &Cib, after: &Cib) -> Vec<&'static str> {
    use std::collections::HashSet;
    RECREATABLE_SECTIONS
        .into_iter()
        .filter(|name| {
            let (Some(old), Some(new)) = (before.section(name), after.section(name)) else {
                return false;
            };
            let existing: HashSet<(&str, &str)> = old
                .elements()
                .filter_map(|e| Some((e.name.as_str(), e.id()?)))
                .collect();
            let per_object: u64 = new
                .elements()
                .enumerate()
                .filter(|(_, e)| {
                    e.id()
                        .is_none_or(|id| !existing.contains(&(e.name.as_str(), id)))
                })
                .map(|(position, _)| {
                    let p = position as u64;
                    p.saturating_mul(p) / 2
                })
                .fold(0, u64::saturating_add);
            let whole = (new.descendants().len() as u64).saturating_mul(STEPS_PER_ELEMENT);
            per_object > whole
        })
        .collect()
}

/// Where section `name` sits among `<configuration>`'s children, as Pacemaker counts
/// positions (elements and comments; whitespace is not kept in its documents).
fn section_position(cib: &Cib, name: &str) -> usize {
    cib.root()
        .find("configuration")
        .map(|conf| {
            conf.children
                .iter()
                .filter(|c| !matches!(c, Node::Text(_)))
                .take_while(|c| !matches!(c, Node::Element(e) if e.name == name))
                .count()
        })
        .unwrap_or(0)
}

/// Removes section `name` from `<configuration>` and returns it.
fn take_section(root: &mut Element, name: &str) -> Option<Element> {
    let conf = root.find_mut("configuration")?;
    let index = conf
        .children
        .iter()
        .position(|c| matches!(c, Node::Element(e) if e.name == name))?;
    match conf.children.remove(index) {
        Node::Element(e) => Some(e),
        _ => None,
    }
}

/// Write `next` to CIB file `path` in place of `before`, if the file is still at `before`'s
/// version: the offline equivalent of `cibadmin --patch`'s compare-and-swap, without its
/// process (nor `crm_diff`'s), for a `next` that `crm_verify` has found valid. The file is
/// locked (`flock`, so that two writers through this function cannot both pass the version
/// check), its version compared, and `next` written to a temporary file beside it, with the
/// file's mode and owner, and renamed over it: a reader sees the old file or the new one,
/// whole. `Some(false)`: the file changed since `before` was read (nothing written).
/// `None`: this cannot be done faithfully here (the file cannot be locked or read, its
/// directory is not writable, its owner cannot be kept); the caller writes through `cibadmin`.
fn write_verified_file(path: &Path, before: &Cib, next: &Cib) -> Result<Option<bool>, PcmkError> {
    use nix::fcntl::{Flock, FlockArg};
    use std::io::Write as _;
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    const STEP: &str = "write the CIB file";
    let Some(dir) = path.parent() else {
        return Ok(None);
    };
    // lock the file the path names while we hold the lock (a writer before us may have
    // renamed a new file over the one we opened)
    let (_lock, meta) = loop {
        let Ok(file) = std::fs::File::open(path) else {
            return Ok(None);
        };
        let Ok(lock) = Flock::lock(file, FlockArg::LockExclusive) else {
            return Ok(None);
        };
        let (Ok(held), Ok(named)) = (lock.metadata(), std::fs::metadata(path)) else {
            return Ok(None);
        };
        if held.dev() == named.dev() && held.ino() == named.ino() {
            break (lock, held);
        }
    };
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(None);
    };
    let Some(current) = file_version(&text) else {
        return Ok(None);
    };
    if current != before.version() {
        tracing::debug!(%current, read_at = %before.version(), "the CIB file changed since it was read");
        return Ok(Some(false));
    }
    let Ok(mut tmp) = tempfile::Builder::new()
        .prefix(".vm-pcmk-cib-")
        .suffix(".xml")
        .tempfile_in(dir)
    else {
        return Ok(None);
    };
    let ours = tmp
        .as_file()
        .metadata()
        .map_err(|source| PcmkError::TempFile { step: STEP, source })?;
    if (ours.uid(), ours.gid()) != (meta.uid(), meta.gid())
        && std::os::unix::fs::fchown(tmp.as_file(), Some(meta.uid()), Some(meta.gid())).is_err()
    {
        return Ok(None);
    }
    let write_err = |source| PcmkError::WriteFile {
        step: STEP,
        path: path.to_owned(),
        source,
    };
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(meta.mode() & 0o7777))
        .map_err(write_err)?;
    tmp.write_all(next.to_xml().as_bytes()).map_err(write_err)?;
    tmp.as_file().sync_all().map_err(write_err)?;
    tmp.persist(path).map_err(|e| write_err(e.error))?;
    tracing::debug!(path = %path.display(), version = %next.version(), "CIB file written (crm_verify'd; no cibadmin)");
    Ok(Some(true))
}

/// The version of the CIB in `text`, from its root element's start tag alone (a whole parse
/// of a 1,000-guest CIB is ~tens of ms); the whole document when something precedes the root
/// that could hide it (a comment, a doctype).
fn file_version(text: &str) -> Option<CibVersion> {
    let start = text.find("<cib")?;
    let prologue = &text[..start];
    if prologue.contains("<!") {
        return Cib::parse(text).ok().map(|c| c.version());
    }
    let end = start + text[start..].find('>')?;
    let tag = text[start..end].trim_end_matches('/');
    Cib::parse(&format!("{tag}/>")).ok().map(|c| c.version())
}

fn write_temp(step: &'static str, cib: &Cib) -> Result<tempfile::NamedTempFile, PcmkError> {
    write_temp_text(step, &cib.to_xml())
}

fn write_temp_text(step: &'static str, xml: &str) -> Result<tempfile::NamedTempFile, PcmkError> {
    use std::io::Write as _;
    let mut file = tempfile::Builder::new()
        .prefix("vm-pcmk-cib-")
        .suffix(".xml")
        .tempfile()
        .map_err(|source| PcmkError::TempFile { step, source })?;
    file.write_all(xml.as_bytes())
        .map_err(|source| PcmkError::TempFile { step, source })?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cib_temp_files_are_private_and_removed_after_use() {
        use std::os::unix::fs::PermissionsExt as _;
        let cib = Cib::parse(
            r#"<cib admin_epoch="0" epoch="1" num_updates="0"><configuration><crm_config/><nodes/><resources/><constraints/></configuration><status/></cib>"#,
        )
        .unwrap();
        let file = write_temp("test", &cib).unwrap();
        let path = file.path().to_path_buf();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert!(std::fs::read_to_string(&path).unwrap().contains("<cib"));
        drop(file);
        assert!(!path.exists(), "{} left behind", path.display());
    }

    /// A CIB with `n` Dummy resources, each with one location constraint.
    fn cib_with(n: usize) -> Cib {
        let mut xml = String::from(
            r#"<cib admin_epoch="0" epoch="1" num_updates="0"><configuration><crm_config/><nodes/><!-- kept --><resources>"#,
        );
        for i in 0..n {
            xml +=
                &format!(r#"<primitive id="d{i}" class="ocf" provider="pacemaker" type="Dummy"/>"#);
        }
        xml += "</resources><constraints>";
        for i in 0..n {
            xml += &format!(r#"<rsc_location id="l{i}" rsc="d{i}" node="n1" score="1"/>"#);
        }
        xml += "</constraints></configuration><status/></cib>";
        Cib::parse(&xml).unwrap()
    }

    #[test]
    fn many_new_objects_recreate_their_section_few_do_not() {
        // a few objects appended to small sections: one change each
        assert!(sections_to_recreate(&cib_with(10), &cib_with(12)).is_empty());
        // hundreds appended: placing each costs Pacemaker a walk over its earlier siblings,
        // more than taking the section whole
        assert_eq!(
            sections_to_recreate(&cib_with(10), &cib_with(600)),
            ["resources", "constraints"]
        );
        // one object appended to a section of thousands costs p²/2 steps: whole is cheaper
        assert_eq!(
            sections_to_recreate(&cib_with(3000), &cib_with(3001)),
            ["resources", "constraints"]
        );
        // changes that create nothing at the top of a section never recreate it
        let before = cib_with(3000);
        let mut after = before.clone();
        assert!(after.set_meta_attribute("d5", "target-role", "Started"));
        assert!(sections_to_recreate(&before, &after).is_empty());
        let mut after = before.clone();
        after
            .section_mut("constraints")
            .remove_children(|c| c.id() == Some("l7"));
        assert!(sections_to_recreate(&before, &after).is_empty());
    }

    #[test]
    fn section_positions_count_elements_and_comments_not_whitespace() {
        let cib = Cib::parse(
            "<cib><configuration>\n  <crm_config/>\n  <nodes/>\n  <!-- c -->\n  <resources/>\n  <constraints/>\n</configuration></cib>",
        )
        .unwrap();
        assert_eq!(section_position(&cib, "crm_config"), 0);
        assert_eq!(section_position(&cib, "resources"), 3);
        assert_eq!(section_position(&cib, "constraints"), 4);
        let mut root = cib.root().clone();
        let taken = take_section(&mut root, "resources").unwrap();
        assert_eq!(taken.name, "resources");
        assert!(root.path(&["configuration", "resources"]).is_none());
        assert!(take_section(&mut root, "resources").is_none());
    }

    #[test]
    fn file_target_sets_cib_file_and_live_removes_it() {
        let file = Pacemaker::file("/tmp/x.xml").tool("cibadmin");
        let dbg = format!("{file:?}");
        assert!(
            dbg.contains("CIB_file") && dbg.contains("/tmp/x.xml"),
            "{dbg}"
        );
        let live = format!("{:?}", Pacemaker::live().tool("cibadmin"));
        assert!(live.contains("(\"CIB_file\", None)"), "{live}");
    }

    #[test]
    fn failure_names_the_step_and_argv() {
        let pcmk = Pacemaker::live();
        let err = pcmk
            .run_ok(
                "do a thing",
                &Cmd::new("sh").args(["-c", "echo boom >&2; exit 4"]),
            )
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("Cannot do a thing: `sh -c"), "{msg}");
        assert!(msg.ends_with("exited with 4: boom"), "{msg}");
    }
}
