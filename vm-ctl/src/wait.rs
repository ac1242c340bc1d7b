//! Waiting for the cluster to get guests where a command asked for them.
//!
//! The role comes from `crm_mon --output-as=xml` (through [`vm_pcmk::Pacemaker::status`]),
//! never from `crm_resource --locate`, which reports a pending start as running. Waits are
//! bounded; on a terminal a progress line shows what is still pending.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use vm_pcmk::{ClusterStatus, Pacemaker, PcmkError, Role};

/// How often the status is read while waiting.
const POLL: Duration = Duration::from_millis(250);

/// Where a resource should get to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Goal {
    /// Started on any node.
    Started,
    /// Started on this node.
    StartedOn(String),
    /// Started on any node other than this one.
    StartedNotOn(String),
    /// Stopped everywhere.
    Stopped,
}

impl Goal {
    /// Whether `rsc` has reached the goal in `status`.
    pub fn reached(&self, status: &ClusterStatus, rsc: &str) -> bool {
        let started = status.nodes_with(rsc, Role::Started);
        let active = status
            .instances(rsc)
            .any(|r| r.role != Role::Stopped || !r.nodes.is_empty());
        match self {
            Goal::Started => started.len() == 1 && !self.moving(status, rsc),
            Goal::StartedOn(n) => started == [n.as_str()],
            Goal::StartedNotOn(n) => started.len() == 1 && started[0] != *n,
            Goal::Stopped => !active,
        }
    }

    fn moving(&self, status: &ClusterStatus, rsc: &str) -> bool {
        status.instances(rsc).any(|r| r.role == Role::Migrating)
    }

    /// How the goal reads in messages.
    pub fn describe(&self) -> String {
        match self {
            Goal::Started => "started".to_owned(),
            Goal::StartedOn(n) => format!("started on {n}"),
            Goal::StartedNotOn(n) => format!("started on a node other than {n}"),
            Goal::Stopped => "stopped".to_owned(),
        }
    }
}

/// Where a resource is now, for messages: "Started on n1", "Stopped", "Starting on n2".
pub fn describe_state(status: &ClusterStatus, rsc: &str) -> String {
    match status.resource(rsc) {
        None => "not in the cluster status".to_owned(),
        Some(r) if r.nodes.is_empty() => r.role.to_string(),
        Some(r) => format!("{} on {}", r.role, r.nodes.join(",")),
    }
}

/// Resources that did not get where they should, with where they were at the deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missed(pub Vec<(String, Goal, String)>);

/// Wait until every `(rsc, goal)` is reached or `timeout` passes.
pub fn wait_for(
    pcmk: &Pacemaker,
    targets: &[(String, Goal)],
    timeout: Duration,
) -> Result<Result<(), Missed>, PcmkError> {
    let started = Instant::now();
    let tty = std::io::stderr().is_terminal();
    loop {
        let status = pcmk.status()?;
        let pending: Vec<&(String, Goal)> = targets
            .iter()
            .filter(|(r, g)| !g.reached(&status, r))
            .collect();
        if pending.is_empty() {
            if tty {
                eprint!("\r\x1b[K");
            }
            return Ok(Ok(()));
        }
        if started.elapsed() >= timeout {
            if tty {
                eprint!("\r\x1b[K");
            }
            return Ok(Err(Missed(
                pending
                    .into_iter()
                    .map(|(r, g)| (r.clone(), g.clone(), describe_state(&status, r)))
                    .collect(),
            )));
        }
        if tty {
            let line: Vec<String> = pending
                .iter()
                .map(|(r, g)| {
                    format!(
                        "{r}: {} (wants {})",
                        describe_state(&status, r),
                        g.describe()
                    )
                })
                .collect();
            eprint!(
                "\r\x1b[Kwaiting {:>4.0}s/{}s  {}",
                started.elapsed().as_secs_f64(),
                timeout.as_secs(),
                line.join("; ")
            );
            let _ = std::io::stderr().flush();
        }
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(role: &str, node: Option<&str>) -> ClusterStatus {
        let node = node.map_or(String::new(), |n| format!("<node name=\"{n}\"/>"));
        ClusterStatus::from_crm_mon_xml(&format!(
            "<pacemaker-result><nodes/><resources><resource id=\"r\" resource_agent=\"x\" \
             role=\"{role}\" managed=\"true\" failed=\"false\">{node}</resource></resources>\
             </pacemaker-result>"
        ))
        .unwrap()
    }

    #[test]
    fn pending_start_is_not_started() {
        assert!(!Goal::Started.reached(&status("Starting", Some("n1")), "r"));
        assert!(Goal::Started.reached(&status("Started", Some("n1")), "r"));
        assert!(Goal::StartedOn("n1".into()).reached(&status("Started", Some("n1")), "r"));
        assert!(!Goal::StartedOn("n2".into()).reached(&status("Started", Some("n1")), "r"));
        assert!(Goal::StartedNotOn("n2".into()).reached(&status("Started", Some("n1")), "r"));
        assert!(!Goal::StartedNotOn("n1".into()).reached(&status("Started", Some("n1")), "r"));
    }

    #[test]
    fn stopping_is_not_stopped() {
        assert!(!Goal::Stopped.reached(&status("Stopping", Some("n1")), "r"));
        assert!(Goal::Stopped.reached(&status("Stopped", None), "r"));
        assert_eq!(
            describe_state(&status("Starting", Some("n1")), "r"),
            "Starting on n1"
        );
        assert_eq!(describe_state(&status("Stopped", None), "r"), "Stopped");
        assert_eq!(
            describe_state(&status("Stopped", None), "x"),
            "not in the cluster status"
        );
    }
}
