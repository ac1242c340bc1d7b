//! Fence requests: what a guest's fence agent asks the host cluster to do.
//!
//! Plaintext layout inside the envelope (big-endian, exact length, nothing after):
//!
//! ```text
//! u8   action (1 off, 2 on, 3 reboot, 4 status, 5 list, 6 monitor)
//! u64  timestamp: the guest's clock, milliseconds since the Unix epoch
//! u32  timeout: how long the agent waits for the reply, milliseconds
//! u8   requester length, then the requesting guest's name
//! u8   target length (0 for list/monitor), then the target guest's name
//! ```

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::envelope::{self, Header, Nonce, SealError, SealedKind};
use crate::key::Key;
use crate::name::Name;

/// Longest timeout a request may carry (a day: far beyond any fence timeout, but bounded).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// A fence action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Action {
    /// Hard power-off of the target, confirmed; it stays off.
    Off = 1,
    /// Start the target, confirmed.
    On = 2,
    /// Off, confirmed, then on.
    Reboot = 3,
    /// The target's power state.
    Status = 4,
    /// The targets the requesting guest cluster may fence.
    List = 5,
    /// Proves the whole path to the host cluster works.
    Monitor = 6,
}

impl Action {
    /// All actions.
    pub const ALL: [Action; 6] = [
        Action::Off,
        Action::On,
        Action::Reboot,
        Action::Status,
        Action::List,
        Action::Monitor,
    ];

    /// The action's name as fence agents spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Off => "off",
            Action::On => "on",
            Action::Reboot => "reboot",
            Action::Status => "status",
            Action::List => "list",
            Action::Monitor => "monitor",
        }
    }

    /// Whether the action names a target.
    pub fn has_target(self) -> bool {
        matches!(
            self,
            Action::Off | Action::On | Action::Reboot | Action::Status
        )
    }

    /// Whether the action changes a guest's power state.
    pub fn changes_power(self) -> bool {
        matches!(self, Action::Off | Action::On | Action::Reboot)
    }

    fn from_u8(b: u8) -> Option<Action> {
        Action::ALL.into_iter().find(|a| *a as u8 == b)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Action {
    type Err = String;
    fn from_str(s: &str) -> Result<Action, String> {
        Action::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| {
                format!("unknown fence action {s:?} (off, on, reboot, status, list, monitor)")
            })
    }
}

/// A fence request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FenceRequest {
    /// What to do.
    pub action: Action,
    /// The guest to do it to (present exactly when [`Action::has_target`]).
    pub target: Option<Name>,
    /// The requesting guest, as it names itself.
    pub requester: Name,
    /// How long the agent waits for the reply.
    pub timeout: Duration,
    /// When the agent made the request (the guest's clock).
    pub timestamp: SystemTime,
}

/// A request opened on the host: its clear header (key id, nonce) and content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedRequest {
    /// The header (the nonce is the request's identity, for replay checks and the reply).
    pub header: Header,
    /// The request.
    pub request: FenceRequest,
}

impl FenceRequest {
    /// A request made now.
    pub fn new(
        action: Action,
        target: Option<Name>,
        requester: Name,
        timeout: Duration,
    ) -> Result<FenceRequest, SealError> {
        let r = FenceRequest {
            action,
            target,
            requester,
            timeout,
            timestamp: SystemTime::now(),
        };
        r.check()?;
        Ok(r)
    }

    fn check(&self) -> Result<(), SealError> {
        if self.action.has_target() != self.target.is_some() {
            return Err(SealError::Content(format!(
                "action {} {} a target",
                self.action,
                if self.action.has_target() {
                    "needs"
                } else {
                    "takes no"
                }
            )));
        }
        if self.timeout.is_zero() || self.timeout > MAX_TIMEOUT {
            return Err(SealError::Content(format!(
                "timeout {:?} is outside 1 ms..{} s",
                self.timeout,
                MAX_TIMEOUT.as_secs()
            )));
        }
        Ok(())
    }

    /// The plaintext encoding.
    pub fn encode(&self) -> Vec<u8> {
        let ms = self
            .timestamp
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        let timeout = u32::try_from(self.timeout.as_millis()).unwrap_or(u32::MAX);
        let mut out = Vec::with_capacity(16 + 2 * crate::name::MAX_NAME_LEN);
        out.push(self.action as u8);
        out.extend_from_slice(&ms.to_be_bytes());
        out.extend_from_slice(&timeout.to_be_bytes());
        for name in [Some(&self.requester), self.target.as_ref()] {
            let s = name.map(Name::as_str).unwrap_or_default();
            // names are at most 64 bytes: the length always fits
            out.push(u8::try_from(s.len()).unwrap_or(u8::MAX));
            out.extend_from_slice(s.as_bytes());
        }
        out
    }

    /// Decodes and checks a plaintext encoding.
    pub fn decode(bytes: &[u8]) -> Result<FenceRequest, SealError> {
        let bad = |s: String| SealError::Content(s);
        let mut r = Reader(bytes);
        let action = r.u8("action")?;
        let action =
            Action::from_u8(action).ok_or_else(|| bad(format!("unknown action code {action}")))?;
        let ms = u64::from_be_bytes(r.array("timestamp")?);
        let timeout = Duration::from_millis(u64::from(u32::from_be_bytes(r.array("timeout")?)));
        let requester = r
            .name("requester")?
            .ok_or_else(|| bad("empty requester".into()))?;
        let target = r.name("target")?;
        if !r.0.is_empty() {
            return Err(bad(format!("{} bytes after the request", r.0.len())));
        }
        let req = FenceRequest {
            action,
            target,
            requester,
            timeout,
            timestamp: UNIX_EPOCH + Duration::from_millis(ms),
        };
        req.check()?;
        Ok(req)
    }

    /// Seals the request under `key`; returns its nonce (to open the reply with) and bytes.
    pub fn seal(&self, key: &Key) -> Result<(Nonce, Vec<u8>), SealError> {
        self.check()?;
        envelope::seal(key, SealedKind::Request, b"", &self.encode())
    }

    /// Opens a sealed request under `key`.
    pub fn open(key: &Key, sealed: &[u8]) -> Result<OpenedRequest, SealError> {
        let (header, plaintext) = envelope::open(key, SealedKind::Request, b"", sealed)?;
        Ok(OpenedRequest {
            header,
            request: FenceRequest::decode(&plaintext)?,
        })
    }
}

/// A bounds-checked reader over a plaintext.
pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl Reader<'_> {
    pub(crate) fn take(&mut self, n: usize, field: &str) -> Result<&[u8], SealError> {
        if self.0.len() < n {
            return Err(SealError::Content(format!(
                "{field} is cut short ({n} bytes needed, {} left)",
                self.0.len()
            )));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    pub(crate) fn u8(&mut self, field: &str) -> Result<u8, SealError> {
        Ok(self.take(1, field)?.first().copied().unwrap_or_default())
    }

    pub(crate) fn array<const N: usize>(&mut self, field: &str) -> Result<[u8; N], SealError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, field)?);
        Ok(a)
    }

    /// A u8-length-prefixed name; `None` when the length is 0.
    pub(crate) fn name(&mut self, field: &str) -> Result<Option<Name>, SealError> {
        let len = usize::from(self.u8(field)?);
        if len == 0 {
            return Ok(None);
        }
        let raw = self.take(len, field)?;
        let s = std::str::from_utf8(raw)
            .map_err(|_| SealError::Content(format!("{field} is not UTF-8")))?;
        Name::new(s)
            .map(Some)
            .map_err(|e| SealError::Content(format!("{field}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Name {
        Name::new(s).unwrap()
    }

    #[test]
    fn round_trip_through_the_seal() {
        let key = Key::generate("web").unwrap();
        let req = FenceRequest::new(
            Action::Off,
            Some(name("web2")),
            name("web1"),
            Duration::from_secs(60),
        )
        .unwrap();
        let (nonce, sealed) = req.seal(&key).unwrap();
        let opened = FenceRequest::open(&key, &sealed).unwrap();
        assert_eq!(opened.header.nonce, nonce);
        assert_eq!(opened.header.key_id, key.id());
        // the timestamp travels in milliseconds
        let ms = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_millis();
        assert_eq!(ms(opened.request.timestamp), ms(req.timestamp));
        assert_eq!(opened.request.action, Action::Off);
        assert_eq!(opened.request.target, req.target);
        assert_eq!(opened.request.requester, req.requester);
        assert_eq!(opened.request.timeout, req.timeout);
    }

    #[test]
    fn targets_match_actions() {
        let r = |a, t: Option<&str>| {
            FenceRequest::new(a, t.map(name), name("g"), Duration::from_secs(1))
        };
        r(Action::Off, None).unwrap_err();
        r(Action::List, Some("x")).unwrap_err();
        r(Action::Monitor, None).unwrap();
        r(Action::Status, Some("x")).unwrap();
        FenceRequest::new(Action::List, None, name("g"), Duration::ZERO).unwrap_err();
    }

    #[test]
    fn decode_is_strict() {
        let req = FenceRequest::new(
            Action::Status,
            Some(name("t")),
            name("g"),
            Duration::from_secs(5),
        )
        .unwrap();
        let good = req.encode();
        FenceRequest::decode(&good).unwrap();
        let mut trailing = good.clone();
        trailing.push(0);
        FenceRequest::decode(&trailing).unwrap_err();
        for cut in 0..good.len() {
            assert!(FenceRequest::decode(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad_action = good.clone();
        bad_action[0] = 9;
        FenceRequest::decode(&bad_action).unwrap_err();
        let mut bad_name = good.clone();
        let last = bad_name.len() - 1;
        bad_name[last] = b';';
        FenceRequest::decode(&bad_name).unwrap_err();
    }

    #[test]
    fn actions_parse_by_name() {
        for a in Action::ALL {
            assert_eq!(a.as_str().parse::<Action>(), Ok(a));
        }
        "reset".parse::<Action>().unwrap_err();
    }
}
