//! Replies: vm-stonithd's answer, sealed under the requesting cluster's key and bound to the
//! request's nonce (as associated data), so a reply can neither be forged nor moved to another
//! request.
//!
//! Plaintext layout (big-endian, exact length):
//!
//! ```text
//! u8   outcome (0 done, 1 failed, 2 refused, 3 timed out)
//! u8   power state of the target (0 unknown / not applicable, 1 on, 2 off)
//! u16  message length (<= 512), then a UTF-8 message for the agent's log
//! u8   number of targets (list), then for each: u8 length, name
//! ```

use crate::envelope::{self, Nonce, SealError, SealedKind};
use crate::key::Key;
use crate::name::Name;
use crate::request::Reader;

/// Longest reply message, in bytes.
pub const MAX_MESSAGE_LEN: usize = 512;
/// Most targets a list reply carries.
pub const MAX_TARGETS: usize = 40;

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Outcome {
    /// Done and confirmed by the host cluster.
    Done = 0,
    /// Tried and failed (rolled back).
    Failed = 1,
    /// Refused before anything was done (not authorised, replay, clock, ...).
    Refused = 2,
    /// Not confirmed within the request's timeout (rolled back).
    TimedOut = 3,
}

/// A target's power state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum PowerState {
    /// Unknown, or the action has no target.
    Unknown = 0,
    /// Running somewhere in the host cluster.
    On = 1,
    /// Stopped on every node.
    Off = 2,
}

/// A reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FenceReply {
    /// How it ended.
    pub outcome: Outcome,
    /// The target's state, where known.
    pub state: PowerState,
    /// A human-readable line for the agent's log.
    pub message: String,
    /// For `list`: the targets the guest cluster may fence.
    pub targets: Vec<Name>,
}

impl FenceReply {
    /// A reply without targets; `message` is cut to [`MAX_MESSAGE_LEN`] bytes.
    pub fn new(outcome: Outcome, state: PowerState, message: impl Into<String>) -> FenceReply {
        let mut message = message.into();
        if message.len() > MAX_MESSAGE_LEN {
            let mut cut = MAX_MESSAGE_LEN;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        FenceReply {
            outcome,
            state,
            message,
            targets: Vec::new(),
        }
    }

    /// The plaintext encoding (targets beyond [`MAX_TARGETS`] are dropped).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + self.message.len() + self.targets.len() * 16);
        out.push(self.outcome as u8);
        out.push(self.state as u8);
        let msg = self.message.as_bytes();
        let msg = msg.get(..MAX_MESSAGE_LEN).unwrap_or(msg);
        out.extend_from_slice(&u16::try_from(msg.len()).unwrap_or(0).to_be_bytes());
        out.extend_from_slice(msg);
        let targets = self.targets.get(..MAX_TARGETS).unwrap_or(&self.targets);
        out.push(u8::try_from(targets.len()).unwrap_or(0));
        for t in targets {
            out.push(u8::try_from(t.as_str().len()).unwrap_or(0));
            out.extend_from_slice(t.as_str().as_bytes());
        }
        out
    }

    /// Decodes a plaintext encoding, strictly.
    pub fn decode(bytes: &[u8]) -> Result<FenceReply, SealError> {
        let bad = |s: String| SealError::Content(s);
        let mut r = Reader(bytes);
        let outcome = match r.u8("outcome")? {
            0 => Outcome::Done,
            1 => Outcome::Failed,
            2 => Outcome::Refused,
            3 => Outcome::TimedOut,
            b => return Err(bad(format!("unknown outcome code {b}"))),
        };
        let state = match r.u8("state")? {
            0 => PowerState::Unknown,
            1 => PowerState::On,
            2 => PowerState::Off,
            b => return Err(bad(format!("unknown power state code {b}"))),
        };
        let len = usize::from(u16::from_be_bytes(r.array("message length")?));
        if len > MAX_MESSAGE_LEN {
            return Err(bad(format!("message of {len} bytes")));
        }
        let message = std::str::from_utf8(r.take(len, "message")?)
            .map_err(|_| bad("message is not UTF-8".into()))?
            .to_owned();
        let count = usize::from(r.u8("target count")?);
        if count > MAX_TARGETS {
            return Err(bad(format!("{count} targets")));
        }
        let mut targets = Vec::with_capacity(count);
        for _ in 0..count {
            targets.push(
                r.name("target")?
                    .ok_or_else(|| bad("empty target".into()))?,
            );
        }
        if !r.0.is_empty() {
            return Err(bad(format!("{} bytes after the reply", r.0.len())));
        }
        Ok(FenceReply {
            outcome,
            state,
            message,
            targets,
        })
    }

    /// Seals the reply to the request whose nonce is `request`.
    pub fn seal(&self, key: &Key, request: &Nonce) -> Result<Vec<u8>, SealError> {
        envelope::seal(key, SealedKind::Reply, &request.0, &self.encode()).map(|(_, b)| b)
    }

    /// Opens a reply to the request whose nonce is `request`: fails unless it was sealed under
    /// `key` for exactly that request.
    pub fn open(key: &Key, request: &Nonce, sealed: &[u8]) -> Result<FenceReply, SealError> {
        let (_, plaintext) = envelope::open(key, SealedKind::Reply, &request.0, sealed)?;
        FenceReply::decode(&plaintext)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_is_bound_to_its_request() {
        let key = Key::generate("c").unwrap();
        let n1 = Nonce::random().unwrap();
        let n2 = Nonce::random().unwrap();
        let mut reply = FenceReply::new(Outcome::Done, PowerState::Off, "web2 is off");
        reply.targets = vec![Name::new("web1").unwrap(), Name::new("web2").unwrap()];
        let sealed = reply.seal(&key, &n1).unwrap();
        assert_eq!(FenceReply::open(&key, &n1, &sealed).unwrap(), reply);
        assert_eq!(FenceReply::open(&key, &n2, &sealed), Err(SealError::Tag));
        // a request can never pass for a reply
        let (_, req) = envelope::seal(&key, SealedKind::Request, &n1.0, &reply.encode()).unwrap();
        FenceReply::open(&key, &n1, &req).unwrap_err();
    }

    #[test]
    fn long_messages_are_cut_on_a_char_boundary_and_decode_is_strict() {
        let r = FenceReply::new(Outcome::Failed, PowerState::Unknown, "é".repeat(400));
        assert!(r.message.len() <= MAX_MESSAGE_LEN);
        let enc = r.encode();
        assert_eq!(FenceReply::decode(&enc).unwrap(), r);
        for cut in 0..enc.len() {
            FenceReply::decode(&enc[..cut]).unwrap_err();
        }
        let mut extra = enc.clone();
        extra.push(1);
        FenceReply::decode(&extra).unwrap_err();
        let mut bad = enc;
        bad[0] = 7;
        FenceReply::decode(&bad).unwrap_err();
    }
}
