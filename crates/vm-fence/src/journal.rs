//! The fence journal: the meta attribute [`JOURNAL_ATTR`] (`pmkt-fence`) that vm-stonithd
//! writes on a guest's primitive in the very CIB change that begins a fence, and removes in the
//! change that ends it.
//!
//! vm-stonithd owns it (its `plan` module makes the changes); `vm-ctl status` reads it to show
//! a fence in progress even where the last-fence record ([`crate::record`]), which lives in the
//! status section, is gone. The value: `v1 ACTION NODE/PID/NONCE DEADLINE PRIOR_ROLE FORCE`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::Power;

/// The journal meta attribute.
pub const JOURNAL_ATTR: &str = "pmkt-fence";
/// Format tag of journal values.
const JOURNAL_VERSION: &str = "v1";
/// How long after its deadline another daemon may take over or clean a journal entry.
pub const TAKEOVER_GRACE: Duration = Duration::from_secs(30);

/// What makes the guest's stop a hard power-off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForceMode {
    /// Nothing (an `on`).
    None,
    /// The node attribute `force_stop-<rsc>=true` on every node.
    NodeAttr,
}

/// Who carries out a fence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// Host node name.
    pub node: String,
    /// vm-stonithd's pid.
    pub pid: u32,
    /// The request's nonce (hex), to tell fences of one daemon apart.
    pub request: String,
}

impl Owner {
    /// `NODE/PID/NONCE`, as the journal writes it.
    pub fn to_token(&self) -> String {
        format!("{}/{}/{}", self.node, self.pid, self.request)
    }

    fn from_token(s: &str) -> Option<Owner> {
        let mut it = s.split('/');
        let (node, pid, request) = (it.next()?, it.next()?, it.next()?);
        if it.next().is_some() || node.is_empty() {
            return None;
        }
        Some(Owner {
            node: node.to_owned(),
            pid: pid.parse().ok()?,
            request: request.to_owned(),
        })
    }
}

/// A journal entry: the fence in progress on one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Journal {
    /// `off` or `on`.
    pub action: Power,
    /// Who carries it out.
    pub owner: Owner,
    /// When it must be over (Unix seconds).
    pub deadline: u64,
    /// target-role before the fence (`None`: unset).
    pub prior_role: Option<String>,
    /// How the stop is forced.
    pub force: ForceMode,
}

impl Journal {
    /// The attribute value.
    pub fn to_value(&self) -> String {
        let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_owned());
        let force = match &self.force {
            ForceMode::None => "none",
            ForceMode::NodeAttr => "attr",
        };
        format!(
            "{JOURNAL_VERSION} {} {} {} {} {force}",
            self.action,
            self.owner.to_token(),
            self.deadline,
            opt(&self.prior_role)
        )
    }

    /// Parses an attribute value; `None` if it is not one of ours.
    pub fn parse(value: &str) -> Option<Journal> {
        let f: Vec<&str> = value.split(' ').collect();
        let [JOURNAL_VERSION, action, owner, deadline, role, force] = f.as_slice() else {
            return None;
        };
        let opt = |s: &str| (s != "-").then(|| s.to_owned());
        let force = match *force {
            "none" => ForceMode::None,
            "attr" => ForceMode::NodeAttr,
            _ => return None,
        };
        Some(Journal {
            action: action.parse().ok()?,
            owner: Owner::from_token(owner)?,
            deadline: deadline.parse().ok()?,
            prior_role: opt(role),
            force,
        })
    }

    /// Whether the owner's time is up (plus a grace period) at `now`.
    pub fn expired(&self, now: SystemTime) -> bool {
        unix(now) > self.deadline.saturating_add(TAKEOVER_GRACE.as_secs())
    }
}

/// Unix seconds of `t`.
pub fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_values_round_trip_and_junk_is_not_ours() {
        let j = Journal {
            action: Power::Off,
            owner: Owner {
                node: "node-a.example".into(),
                pid: 42,
                request: "00ff".into(),
            },
            deadline: 1_700_000_000,
            prior_role: None,
            force: ForceMode::NodeAttr,
        };
        assert!(j.to_value().starts_with("v1 off "), "{}", j.to_value());
        assert_eq!(Journal::parse(&j.to_value()), Some(j));
        for junk in [
            "",
            "v2 off a/1/x 1 - attr",
            "v1 off a 1 - attr",
            "v1 off a/x/y 1 - attr",
            "v1 off a/1/x 1 - param",
            // a direction is off or on (a reboot is journalled as its two steps)
            "v1 reboot a/1/x 1 - attr",
            "v1 OFF a/1/x 1 - attr",
        ] {
            assert_eq!(Journal::parse(junk), None, "{junk:?}");
        }
    }
}
