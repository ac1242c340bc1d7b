//! Freshness and replay checks for opened requests.
//!
//! A request is accepted once: its (key id, nonce) pair is remembered until its timestamp
//! leaves the accepted window, after which the timestamp check alone refuses it. The window is
//! symmetric (guest clocks may be ahead or behind). Since the memory is lost when the daemon
//! restarts, requests stamped before the daemon started are refused too: a request captured
//! before a restart cannot be replayed after it. (A guest whose clock is behind therefore gets
//! refusals for that many seconds after a restart; the agent reports the refusal, and the
//! guest cluster's fencer retries the fence with a fresh request.)
//!
//! Each key has its own table of at most `capacity` requests, so requests under one key (one
//! guest cluster's) cannot crowd out another's, and the caller checks only requests it has
//! authorised: a flood that is refused anyway costs no table room.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use crate::envelope::Nonce;
use crate::key::KeyId;

/// Why a request is not fresh.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// Stamped too long ago.
    #[error("timestamp is {}.{:03} s old, beyond the {} s window (guest clock behind, or a replay)", .0.as_secs(), .0.subsec_millis(), .1.as_secs())]
    Stale(Duration, Duration),
    /// Stamped in the future.
    #[error("timestamp is {}.{:03} s in the future, beyond the {} s window (guest clock ahead)", .0.as_secs(), .0.subsec_millis(), .1.as_secs())]
    Future(Duration, Duration),
    /// Stamped before the daemon started.
    #[error("timestamp is from before this daemon started ({}.{:03} s earlier)", .0.as_secs(), .0.subsec_millis())]
    BeforeStart(Duration),
    /// Seen before.
    #[error("replay: this request (nonce {0}) was already received")]
    Replay(Nonce),
    /// Too many requests under this key inside one window to remember them all.
    #[error(
        "too many requests under this key within the window ({0} remembered): refusing until \
         some expire"
    )]
    Full(usize),
}

/// Remembers the requests accepted within the window, per key.
#[derive(Debug)]
pub struct ReplayGuard {
    window: Duration,
    not_before: SystemTime,
    capacity: usize,
    seen: HashMap<KeyId, HashMap<Nonce, SystemTime>>,
}

impl ReplayGuard {
    /// A guard accepting timestamps within `window` of the clock and not before `not_before`
    /// (the daemon's start), remembering at most `capacity` requests per key.
    pub fn new(window: Duration, not_before: SystemTime, capacity: usize) -> ReplayGuard {
        ReplayGuard {
            window,
            not_before,
            capacity,
            seen: HashMap::new(),
        }
    }

    /// Checks a request stamped `timestamp` with `nonce` under key `key` at time `now`, and
    /// remembers it when fresh.
    pub fn check(
        &mut self,
        key: KeyId,
        nonce: Nonce,
        timestamp: SystemTime,
        now: SystemTime,
    ) -> Result<(), ReplayError> {
        match now.duration_since(timestamp) {
            Ok(age) if age > self.window => return Err(ReplayError::Stale(age, self.window)),
            Err(ahead) if ahead.duration() > self.window => {
                return Err(ReplayError::Future(ahead.duration(), self.window));
            }
            _ => {}
        }
        if let Ok(before) = self.not_before.duration_since(timestamp)
            && !before.is_zero()
        {
            return Err(ReplayError::BeforeStart(before));
        }
        let seen = self.seen.entry(key).or_default();
        if seen.contains_key(&nonce) {
            return Err(ReplayError::Replay(nonce));
        }
        if seen.len() >= self.capacity {
            // forget what the timestamp check refuses anyway, then try again
            let window = self.window;
            seen.retain(|_, stamp| now.duration_since(*stamp).map_or(true, |age| age <= window));
            if seen.len() >= self.capacity {
                return Err(ReplayError::Full(seen.len()));
            }
        }
        seen.insert(nonce, timestamp);
        Ok(())
    }

    /// Changes the accepted clock window (configuration reload).
    pub fn set_window(&mut self, window: Duration) {
        self.window = window;
    }

    /// How many requests are remembered, under every key.
    pub fn len(&self) -> usize {
        self.seen.values().map(HashMap::len).sum()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Duration = Duration::from_secs(30);

    fn n(b: u8) -> Nonce {
        Nonce([b; 12])
    }

    #[test]
    fn accepts_once_within_the_window() {
        let start = SystemTime::now();
        let now = start + Duration::from_secs(100);
        let mut g = ReplayGuard::new(W, start, 10);
        let k = KeyId([1; 8]);
        assert_eq!(g.check(k, n(1), now, now), Ok(()));
        assert_eq!(g.check(k, n(1), now, now), Err(ReplayError::Replay(n(1))));
        // same nonce under another key is another request
        assert_eq!(g.check(KeyId([2; 8]), n(1), now, now), Ok(()));
        let old = now - Duration::from_secs(31);
        assert!(matches!(
            g.check(k, n(2), old, now),
            Err(ReplayError::Stale(..))
        ));
        let ahead = now + Duration::from_secs(31);
        assert!(matches!(
            g.check(k, n(3), ahead, now),
            Err(ReplayError::Future(..))
        ));
        assert_eq!(g.check(k, n(4), now - W, now), Ok(()));
        assert_eq!(g.check(k, n(5), now + W, now), Ok(()));
    }

    #[test]
    fn refuses_requests_from_before_the_start() {
        let start = SystemTime::now();
        let mut g = ReplayGuard::new(W, start, 10);
        let k = KeyId([1; 8]);
        let before = start - Duration::from_secs(1);
        assert!(matches!(
            g.check(k, n(1), before, start + Duration::from_secs(1)),
            Err(ReplayError::BeforeStart(_))
        ));
        assert_eq!(g.check(k, n(1), start, start), Ok(()));
    }

    #[test]
    fn one_key_filling_its_table_does_not_refuse_another_key() {
        let start = SystemTime::now();
        let mut g = ReplayGuard::new(W, start, 2);
        let (flood, other) = (KeyId([1; 8]), KeyId([2; 8]));
        assert_eq!(g.check(flood, n(1), start, start), Ok(()));
        assert_eq!(g.check(flood, n(2), start, start), Ok(()));
        assert_eq!(
            g.check(flood, n(3), start, start),
            Err(ReplayError::Full(2))
        );
        // the other guest cluster's requests are still accepted, up to its own capacity
        assert_eq!(g.check(other, n(1), start, start), Ok(()));
        assert_eq!(g.check(other, n(2), start, start), Ok(()));
        assert_eq!(g.len(), 4);
    }

    #[test]
    fn forgets_expired_entries_and_fails_closed_when_full() {
        let start = SystemTime::now();
        let mut g = ReplayGuard::new(W, start, 2);
        let k = KeyId([1; 8]);
        assert_eq!(g.check(k, n(1), start, start), Ok(()));
        assert_eq!(g.check(k, n(2), start, start), Ok(()));
        assert_eq!(g.check(k, n(3), start, start), Err(ReplayError::Full(2)));
        let later = start + Duration::from_secs(40);
        assert_eq!(g.check(k, n(3), later, later), Ok(()));
        assert_eq!(g.len(), 1);
    }
}
