//! Bounds that keep one guest (or one client) from hurting the others.

use std::time::{Duration, Instant};

/// Requests one guest may have in flight on a host at once; more get `Retry Busy`.
pub const MAX_INFLIGHT_PER_GUEST: usize = 16;
/// How long the host daemon waits for a module's reply before answering `Error Timeout`.
pub const HOST_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the guest daemon waits for the host's answer (longer than the host's own timeout,
/// so that the host's `Error Timeout` normally arrives first).
pub const GUEST_REQUEST_TIMEOUT: Duration = Duration::from_secs(65);
/// Frames per second a guest may send, sustained (with a burst of `RATE_BURST`); beyond that
/// its frames are dropped, so a flooding guest cannot starve the daemon.
pub const RATE_PER_SEC: f64 = 200.0;
/// Burst allowance of the rate limit.
pub const RATE_BURST: f64 = 400.0;
/// At most one log line per peer per this interval for repeated offences (the rest counted).
pub const OFFENCE_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// A token bucket.
#[derive(Debug, Clone)]
pub struct RateLimit {
    tokens: f64,
    last: Instant,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            tokens: RATE_BURST,
            last: Instant::now(),
        }
    }
}

impl RateLimit {
    /// Take one token; false when the peer is over its rate.
    pub fn allow(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * RATE_PER_SEC;
        self.last = now;
        self.tokens = (self.tokens + refill).min(RATE_BURST);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Rate-limited logging of a peer's offences: the first of a burst is logged at once, the
/// rest are counted and summarised in the next line.
#[derive(Debug, Clone, Default)]
pub struct OffenceLog {
    last: Option<Instant>,
    suppressed: u64,
    /// Every offence ever, for the status report.
    pub total: u64,
}

impl OffenceLog {
    /// Record an offence; returns how many were suppressed since the last logged one when this
    /// one should be logged, `None` when it should not.
    pub fn record(&mut self) -> Option<u64> {
        self.total += 1;
        let now = Instant::now();
        match self.last {
            Some(t) if now.duration_since(t) < OFFENCE_LOG_INTERVAL => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_the_burst_then_refuses() {
        let mut r = RateLimit::default();
        let allowed = (0..1000).filter(|_| r.allow()).count();
        assert!(
            allowed >= RATE_BURST as usize && allowed < RATE_BURST as usize + 50,
            "{allowed}"
        );
    }

    #[test]
    fn offences_are_logged_once_per_interval() {
        let mut o = OffenceLog::default();
        assert_eq!(o.record(), Some(0));
        assert_eq!(o.record(), None);
        assert_eq!(o.record(), None);
        assert_eq!(o.total, 3);
    }
}
