//! Running Pacemaker's tools against one CIB, live or offline.

use std::path::{Path, PathBuf};
use std::time::Duration;

use vm_common::process::{Cmd, Output, ProcessError};

use crate::status::{ClusterStatus, StatusError};

/// Environment variable through which every Pacemaker tool is pointed at an offline CIB file.
pub const CIB_FILE_ENV: &str = "CIB_file";

/// Deadline for one tool call. Pacemaker's tools answer in tens of milliseconds; a minute
/// means the CIB manager is wedged, and the caller should hear about it.
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(60);

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

/// A handle on one CIB. Cheap to clone; holds no connection (each call runs a tool).
#[derive(Debug, Clone)]
pub struct Pacemaker {
    target: CibTarget,
    timeout: Duration,
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
        }
    }

    /// An offline CIB file.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Self {
            target: CibTarget::File(path.into()),
            timeout: TOOL_TIMEOUT,
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

    /// The whole CIB as XML (`cibadmin --query`).
    pub fn query(&self) -> Result<String, PcmkError> {
        let cmd = self.tool("cibadmin").arg("--query");
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
        let out = self.run_ok(STEP, &cmd)?;
        ClusterStatus::from_crm_mon_xml(&out.stdout_text())
            .map_err(|source| PcmkError::Output { step: STEP, source })
    }

    /// Where resources would run after the cluster reacted to the current configuration:
    /// `crm_simulate -S` on this CIB, with `online` nodes brought up first (`-u`) and quorum
    /// granted (`-q 1`) for a file target. Nothing is written.
    pub fn simulate(&self, online: &[&str]) -> Result<ClusterStatus, PcmkError> {
        const STEP: &str = "simulate the cluster's reaction";
        let mut cmd = self.tool("crm_simulate");
        cmd = match &self.target {
            CibTarget::File(path) => cmd.arg("--xml-file").arg(path),
            CibTarget::Live => cmd.arg("--live-check"),
        };
        for node in online {
            cmd = cmd.arg("--node-up").arg(node);
        }
        if matches!(self.target, CibTarget::File(_)) {
            cmd = cmd.args(["--quorum", "1"]);
        }
        let cmd = cmd.args(["--simulate", "--output-as=xml"]);
        let out = self.run_ok(STEP, &cmd)?;
        ClusterStatus::from_crm_simulate_xml(&out.stdout_text())
            .map_err(|source| PcmkError::Output { step: STEP, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
