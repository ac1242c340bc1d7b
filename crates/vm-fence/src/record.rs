//! The last fence of each guest, recorded for `vm-ctl status`: which action, asked by whom,
//! how it ended, and when.
//!
//! vm-stonithd writes the record as a **transient** node attribute of the host node it runs on,
//! [`attr_name`] (`pmkt-fence-last-<rsc>`), in the CIB changes a fence already makes, never in
//! a change of its own: the change that begins the fence (result `in-progress`), the one that
//! ends it (`done`, `failed`, `timed-out`), and the janitor's that finishes or rolls back a
//! fence a crashed vm-stonithd left (`done`, `rolled-back`). A fence that writes nothing (the
//! guest already where it was sent, a refusal, a failure before its first change) leaves the
//! record as it was. Transient because the status section is where a node's passing facts
//! live: Pacemaker erases a node's transient attributes when it leaves the cluster, and so a
//! record lasts as long as its node stays up; vm-stonithd's log keeps the full history.
//!
//! The value: `v1 ACTION RESULT STARTED ENDED CLUSTER REQUESTER ORIGIN`, e.g.
//! `v1 off done 1700000000 1700000004 web web2 web2`: the action asked for (`off`, `on`,
//! `reboot`), the result, the Unix seconds it began and ended (`-` while in progress), the guest
//! cluster (the key's), the requester's node name in it, and the guest whose channel the
//! request came over; `-` for what is not known (a legacy request has no cluster key nor
//! requester name). Every name follows the fence-request name rule, so no field holds a space.

use std::fmt;

use vm_seal::Name;

/// Prefix of the record attribute; the guest's resource id follows.
pub const ATTR_PREFIX: &str = "pmkt-fence-last-";

/// Format tag of record values.
const VERSION: &str = "v1";

/// The record attribute of resource `rsc`.
pub fn attr_name(rsc: &str) -> String {
    format!("{ATTR_PREFIX}{rsc}")
}

/// The resource a record attribute is about, if `attr` is one.
pub fn resource_of(attr: &str) -> Option<&str> {
    attr.strip_prefix(ATTR_PREFIX).filter(|r| !r.is_empty())
}

/// The action a guest cluster asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FenceAction {
    /// Power off.
    Off,
    /// Power on.
    On,
    /// Off, then on.
    Reboot,
}

impl FenceAction {
    /// The word in the value: `off`, `on`, `reboot`.
    pub fn as_str(self) -> &'static str {
        match self {
            FenceAction::Off => "off",
            FenceAction::On => "on",
            FenceAction::Reboot => "reboot",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "off" => FenceAction::Off,
            "on" => FenceAction::On,
            "reboot" => FenceAction::Reboot,
            _ => return None,
        })
    }
}

/// How a fence ended (or that it has not yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FenceResult {
    /// Its first change is written; vm-stonithd waits for the host cluster.
    InProgress,
    /// Confirmed by the host cluster (for a reboot: at least its off; the guest cluster was told
    /// `Done`).
    Done,
    /// Failed and rolled back (the requester was told `Failed`).
    Failed,
    /// Timed out or given up by its requester, and rolled back (told `TimedOut`).
    TimedOut,
    /// Left unfinished by a vm-stonithd that stopped (crash, kill) and rolled back by the
    /// janitor of a later one; its requester got no answer from the host.
    RolledBack,
}

impl FenceResult {
    /// The word in the value.
    pub fn as_str(self) -> &'static str {
        match self {
            FenceResult::InProgress => "in-progress",
            FenceResult::Done => "done",
            FenceResult::Failed => "failed",
            FenceResult::TimedOut => "timed-out",
            FenceResult::RolledBack => "rolled-back",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "in-progress" => FenceResult::InProgress,
            "done" => FenceResult::Done,
            "failed" => FenceResult::Failed,
            "timed-out" => FenceResult::TimedOut,
            "rolled-back" => FenceResult::RolledBack,
            _ => return None,
        })
    }
}

impl fmt::Display for FenceAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for FenceResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One guest's last fence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FenceRecord {
    /// What was asked.
    pub action: FenceAction,
    /// How it ended.
    pub result: FenceResult,
    /// When its first change was written (Unix seconds).
    pub started: u64,
    /// When it ended (`None` while in progress).
    pub ended: Option<u64>,
    /// The guest cluster whose key sealed the request.
    pub cluster: Option<Name>,
    /// The requester's node name in that cluster.
    pub requester: Option<Name>,
    /// The guest whose channel the request came over.
    pub origin: Option<Name>,
}

impl FenceRecord {
    /// The record of `self`, ended at `at` with `result` (the requester kept).
    #[must_use]
    pub fn ended(&self, result: FenceResult, at: u64) -> FenceRecord {
        FenceRecord {
            result,
            ended: Some(at),
            ..self.clone()
        }
    }

    /// The attribute value.
    pub fn to_value(&self) -> String {
        let name = |n: &Option<Name>| n.as_ref().map_or("-", |n| n.as_str()).to_owned();
        format!(
            "{VERSION} {} {} {} {} {} {} {}",
            self.action,
            self.result,
            self.started,
            self.ended.map_or_else(|| "-".to_owned(), |e| e.to_string()),
            name(&self.cluster),
            name(&self.requester),
            name(&self.origin),
        )
    }

    /// Parses an attribute value, strictly: what [`FenceRecord::to_value`] writes and nothing
    /// else (an end time exactly when the result is not `in-progress`).
    pub fn parse(value: &str) -> Result<FenceRecord, MalformedRecord> {
        let bad = || MalformedRecord {
            value: value.chars().take(200).collect(),
        };
        let f: Vec<&str> = value.split(' ').collect();
        let [
            VERSION,
            action,
            result,
            started,
            ended,
            cluster,
            requester,
            origin,
        ] = f.as_slice()
        else {
            return Err(bad());
        };
        let action = FenceAction::parse(action).ok_or_else(bad)?;
        let result = FenceResult::parse(result).ok_or_else(bad)?;
        let started = seconds(started).ok_or_else(bad)?;
        let ended = match (*ended, result) {
            ("-", FenceResult::InProgress) => None,
            (_, FenceResult::InProgress) | ("-", _) => return Err(bad()),
            (e, _) => Some(seconds(e).ok_or_else(bad)?),
        };
        let name = |s: &str| -> Result<Option<Name>, MalformedRecord> {
            if s == "-" {
                Ok(None)
            } else {
                Name::new(s).map(Some).map_err(|_| bad())
            }
        };
        Ok(FenceRecord {
            action,
            result,
            started,
            ended,
            cluster: name(cluster)?,
            requester: name(requester)?,
            origin: name(origin)?,
        })
    }
}

/// Canonical decimal seconds (no sign, no leading zero).
fn seconds(s: &str) -> Option<u64> {
    let canonical = !s.is_empty()
        && s.len() <= 20
        && s.bytes().all(|b| b.is_ascii_digit())
        && (s == "0" || !s.starts_with('0'));
    canonical.then(|| s.parse().ok()).flatten()
}

/// A record value that is not what [`FenceRecord::to_value`] writes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{value:?} is not a fence record (v1 ACTION RESULT STARTED ENDED CLUSTER REQUESTER ORIGIN)"
)]
pub struct MalformedRecord {
    /// The value (its first 200 characters).
    pub value: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Option<Name> {
        Some(Name::new(s).unwrap())
    }

    fn record() -> FenceRecord {
        FenceRecord {
            action: FenceAction::Reboot,
            result: FenceResult::InProgress,
            started: 1_700_000_000,
            ended: None,
            cluster: n("web"),
            requester: n("www-b"),
            origin: n("web2"),
        }
    }

    #[test]
    fn records_round_trip() {
        let r = record();
        assert_eq!(
            r.to_value(),
            "v1 reboot in-progress 1700000000 - web www-b web2"
        );
        assert_eq!(FenceRecord::parse(&r.to_value()), Ok(r.clone()));
        for result in [
            FenceResult::Done,
            FenceResult::Failed,
            FenceResult::TimedOut,
            FenceResult::RolledBack,
        ] {
            let e = r.ended(result, 1_700_000_004);
            assert_eq!((e.requester.clone(), e.started), (n("www-b"), r.started));
            assert_eq!(FenceRecord::parse(&e.to_value()), Ok(e));
        }
        // a legacy request: no cluster key, no requester name
        let legacy = FenceRecord {
            action: FenceAction::Off,
            cluster: None,
            requester: None,
            ..r.ended(FenceResult::Done, 1_700_000_001)
        };
        assert_eq!(
            legacy.to_value(),
            "v1 off done 1700000000 1700000001 - - web2"
        );
        assert_eq!(FenceRecord::parse(&legacy.to_value()), Ok(legacy));
        assert_eq!(attr_name("prmVMCTL_g1"), "pmkt-fence-last-prmVMCTL_g1");
        assert_eq!(
            resource_of("pmkt-fence-last-prmVMCTL_g1"),
            Some("prmVMCTL_g1")
        );
        assert_eq!(resource_of("pmkt-fence-last-"), None);
        assert_eq!(resource_of("pmkt-fence-keys"), None);
    }

    #[test]
    fn parsing_is_strict() {
        for bad in [
            "",
            "v1",
            "v2 off done 1 2 a b c",
            "v1 OFF done 1 2 a b c",
            "v1 off finished 1 2 a b c",
            "v1 off done 01 2 a b c",
            "v1 off done -1 2 a b c",
            "v1 off done 1 - a b c",
            "v1 off in-progress 1 2 a b c",
            "v1 off done 1 2 a b",
            "v1 off done 1 2 a b c d",
            "v1  off done 1 2 a b c",
            "v1 off done 1 2 a b c ",
            "v1 off done 1 2 a/x b c",
            "v1 off done 1 2 a b $(id)",
            "v1 off done 18446744073709551616 2 a b c",
        ] {
            assert!(FenceRecord::parse(bad).is_err(), "{bad:?} accepted");
        }
        let e = FenceRecord::parse(&"x".repeat(1000)).unwrap_err();
        assert_eq!(e.value.len(), 200);
    }
}
