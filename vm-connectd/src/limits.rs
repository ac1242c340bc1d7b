//! Bounds that keep one guest (or one client) from hurting the others.

use std::time::{Duration, Instant};

/// Requests one guest may have in flight on a host at once; more get `Retry Busy`.
pub const MAX_INFLIGHT_PER_GUEST: usize = 16;
/// The longest the host daemon waits for a module's reply before answering `Error Timeout`
/// (`--request-timeout`): the bound of a request that carries no deadline (protocol version
/// 1), and the cap on one that does (docs/protocol.md §10).
pub const HOST_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest the guest daemon waits for the host's answer (`--request-timeout`; longer
/// than the host's own, so that for a request without a deadline the host's `Error Timeout`
/// normally arrives first); the cap on a carried deadline.
pub const GUEST_REQUEST_TIMEOUT: Duration = Duration::from_secs(65);
/// What a relay keeps back from a request's remaining time when it passes the deadline on
/// to the next hop: the next hop then gives up (and its `Error Timeout`, or the module's
/// answer, travels back) before this relay's own bound passes, so the answer names the hop
/// that ran out of time rather than racing this relay's own `Error Timeout`.
pub const RELAY_MARGIN: Duration = Duration::from_millis(200);
/// Frames per second a guest may send, sustained (with a burst of `RATE_BURST`). Every frame and
/// every protocol violation (each resynchronisation) takes one token; without a token the host
/// daemon stops reading that link until the bucket refills, so the guest's writes wait in its
/// channel and decoding for a flooding guest costs at most this many items per second.
pub const RATE_PER_SEC: f64 = 200.0;
/// Burst allowance of the rate limit.
pub const RATE_BURST: f64 = 400.0;
/// StreamData frames per second a guest may send, sustained, with a burst of
/// `STREAM_RATE_BURST` (docs/protocol.md §16.4). They take their token from this bucket instead
/// of the frame rate's: a stream's bytes are already bounded by the credit the host grants, and
/// this bounds the decoding work of a guest that splits them into tiny frames, while reading a
/// link no longer pauses at `RATE_PER_SEC` for stream data, which would hold back the control
/// frames queued behind it in the channel.
pub const STREAM_RATE_PER_SEC: f64 = 2000.0;
/// Burst allowance of the stream data rate.
pub const STREAM_RATE_BURST: f64 = 400.0;
/// At most one log line per peer and offence kind per this interval (the rest counted and
/// summarised in the next line of that kind).
pub const OFFENCE_LOG_INTERVAL: Duration = Duration::from_secs(10);
/// Protocol violations a guest link may commit within `VIOLATION_WINDOW`; the next one backs
/// the link off (docs/protocol.md §4).
pub const VIOLATION_BUDGET: u32 = 100;
/// The window of the violation budget.
pub const VIOLATION_WINDOW: Duration = Duration::from_secs(10);
/// The first back-off of a link: the host daemon does not read it for this long.
pub const BACKOFF_FIRST: Duration = Duration::from_secs(10);
/// Back-offs double up to this; a link that has stayed within its budget for this long since
/// its last back-off ended starts again at `BACKOFF_FIRST`.
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// A partial frame after which no byte arrived for this long is given up (`Truncated`, one
/// violation) and decoding resumes after its first byte: a writer writes a frame in one go,
/// so a silence this long means it died mid-frame, and the frames behind it must not wait.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(2);
/// Items (frames or violations) one link's task handles before it yields to the other tasks,
/// whatever is left in its buffer: with the single-threaded runtime, one busy link must not
/// hold the thread (tokio's own budget counts socket reads, not items decoded from a buffer).
pub const ITEMS_PER_WAKEUP: usize = 16;

/// A request's bound at a relay: the deadline it carried (protocol version 2), capped by the
/// relay's own maximum `max`; `max` when it carried none. Returns the bound and whether it
/// came from the request.
pub fn request_bound(carried: Option<vm_proto::TimeoutMs>, max: Duration) -> (Duration, bool) {
    match carried {
        Some(t) if t.as_duration() < max => (t.as_duration(), true),
        _ => (max, false),
    }
}

/// The remaining time a relay passes on to the next hop when `left` is its own: `left` less
/// [`RELAY_MARGIN`], or half of `left` when that is shorter (a short deadline is still split
/// between the hops rather than spent at once); `None` when less than a millisecond would
/// be left.
pub fn forwarded(left: Duration) -> Option<vm_proto::TimeoutMs> {
    let next = if left > RELAY_MARGIN * 2 {
        left - RELAY_MARGIN
    } else {
        left / 2
    };
    vm_proto::TimeoutMs::from_duration(next)
}

/// A token bucket.
#[derive(Debug, Clone)]
pub struct RateLimit {
    tokens: f64,
    last: Instant,
    per_sec: f64,
    burst: f64,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self::new(RATE_PER_SEC, RATE_BURST)
    }
}

impl RateLimit {
    /// A bucket of `burst` tokens refilled at `per_sec`, full at first.
    pub fn new(per_sec: f64, burst: f64) -> Self {
        Self {
            tokens: burst,
            last: Instant::now(),
            per_sec,
            burst,
        }
    }

    /// Give back a token taken for an item that is charged elsewhere.
    pub fn refund(&mut self) {
        self.tokens = (self.tokens + 1.0).min(self.burst);
    }

    /// Take one token; false when the peer is over its rate.
    pub fn allow(&mut self) -> bool {
        self.take().is_ok()
    }

    /// Take one token, or say how long until one is there (nothing taken then).
    pub fn take(&mut self) -> Result<(), Duration> {
        let now = Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * self.per_sec;
        self.last = now;
        self.tokens = (self.tokens + refill).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.per_sec))
        }
    }
}

/// A guest link's violation budget (docs/protocol.md §4): `VIOLATION_BUDGET` violations per
/// `VIOLATION_WINDOW`; past it, a back-off period during which the link is not read, starting
/// at `BACKOFF_FIRST` and doubling for every further back-off up to `BACKOFF_MAX`.
#[derive(Debug, Clone)]
pub struct ErrorBudget {
    window_start: Instant,
    in_window: u32,
    next_backoff: Duration,
    /// When the last back-off ended (or will end).
    last_end: Option<Instant>,
}

impl Default for ErrorBudget {
    fn default() -> Self {
        Self {
            window_start: Instant::now(),
            in_window: 0,
            next_backoff: BACKOFF_FIRST,
            last_end: None,
        }
    }
}

impl ErrorBudget {
    /// Counts one violation at `now`; returns the back-off period when it exceeds the budget
    /// (the caller stops reading the link for that long).
    pub fn violation(&mut self, now: Instant) -> Option<Duration> {
        if now.saturating_duration_since(self.window_start) >= VIOLATION_WINDOW {
            self.window_start = now;
            self.in_window = 0;
        }
        self.in_window += 1;
        if self.in_window <= VIOLATION_BUDGET {
            return None;
        }
        if self
            .last_end
            .is_some_and(|end| now.saturating_duration_since(end) >= BACKOFF_MAX)
        {
            self.next_backoff = BACKOFF_FIRST;
        }
        let period = self.next_backoff;
        self.next_backoff = (period * 2).min(BACKOFF_MAX);
        let end = now.checked_add(period).unwrap_or(now);
        self.last_end = Some(end);
        // A new window starts when reading resumes.
        self.window_start = end;
        self.in_window = 0;
        Some(period)
    }
}

/// Rate-limited logging of a peer's offences, per kind of offence: the first of a kind is
/// logged at once, repeats within `OFFENCE_LOG_INTERVAL` are counted and summarised in the
/// next line of that kind.
#[derive(Debug, Clone, Default)]
pub struct OffenceLog {
    kinds: Vec<KindLog>,
    /// Every offence ever, for the status report.
    pub total: u64,
}

#[derive(Debug, Clone)]
struct KindLog {
    kind: &'static str,
    last: Instant,
    suppressed: u64,
}

impl OffenceLog {
    /// Record an offence of `kind`; returns how many of that kind were suppressed since its
    /// last logged one when this one should be logged, `None` when it should not.
    pub fn record(&mut self, kind: &'static str) -> Option<u64> {
        self.total += 1;
        let now = Instant::now();
        // A handful of kinds: a list is smaller and faster than a map.
        match self.kinds.iter_mut().find(|k| k.kind == kind) {
            Some(k) if now.saturating_duration_since(k.last) < OFFENCE_LOG_INTERVAL => {
                k.suppressed += 1;
                None
            }
            Some(k) => {
                k.last = now;
                Some(std::mem::take(&mut k.suppressed))
            }
            None => {
                self.kinds.push(KindLog {
                    kind,
                    last: now,
                    suppressed: 0,
                });
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_carried_deadline_bounds_a_request_up_to_the_relay_maximum() {
        let t = |ms| vm_proto::TimeoutMs::new(ms).ok();
        let max = Duration::from_secs(60);
        assert_eq!(request_bound(None, max), (max, false));
        assert_eq!(
            request_bound(t(5000), max),
            (Duration::from_millis(5000), true)
        );
        // longer than the relay allows: its own maximum
        assert_eq!(request_bound(t(86_400_000), max), (max, false));
    }

    #[test]
    fn the_next_hop_gets_the_time_left_less_a_margin() {
        let ms = |n| Duration::from_millis(n);
        let got = |left| forwarded(left).map(|t| t.as_millis());
        assert_eq!(got(ms(5000)), Some(4800));
        assert_eq!(got(ms(401)), Some(201));
        assert_eq!(got(ms(400)), Some(200));
        assert_eq!(got(ms(3)), Some(1));
        assert_eq!(got(ms(1)), None);
        assert_eq!(got(Duration::ZERO), None);
    }

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
    fn an_empty_bucket_says_how_long_to_wait() {
        let mut r = RateLimit::default();
        while r.allow() {}
        let wait = r.take().unwrap_err();
        assert!(
            wait <= Duration::from_secs_f64(1.0 / RATE_PER_SEC),
            "{wait:?}"
        );
    }

    #[test]
    fn offences_are_logged_once_per_interval_and_kind() {
        let mut o = OffenceLog::default();
        assert_eq!(o.record("garbage"), Some(0));
        assert_eq!(o.record("garbage"), None);
        assert_eq!(
            o.record("truncated"),
            Some(0),
            "another kind has its own line"
        );
        assert_eq!(o.record("garbage"), None);
        assert_eq!(o.total, 4);
    }

    #[test]
    fn the_budget_backs_off_past_it_doubling_up_to_the_maximum() {
        let mut b = ErrorBudget::default();
        let t0 = Instant::now();
        for _ in 0..VIOLATION_BUDGET {
            assert_eq!(b.violation(t0), None);
        }
        assert_eq!(b.violation(t0), Some(BACKOFF_FIRST));
        // after the back-off, a fresh window; the next excess doubles the period
        let mut t = t0 + BACKOFF_FIRST;
        let mut expected = BACKOFF_FIRST;
        for _ in 0..8 {
            for _ in 0..VIOLATION_BUDGET {
                assert_eq!(b.violation(t), None);
            }
            expected = (expected * 2).min(BACKOFF_MAX);
            assert_eq!(b.violation(t), Some(expected));
            t += expected;
        }
        assert_eq!(expected, BACKOFF_MAX);
        // a link that behaved for BACKOFF_MAX after its last back-off starts over
        t += BACKOFF_MAX;
        for _ in 0..VIOLATION_BUDGET {
            assert_eq!(b.violation(t), None);
        }
        assert_eq!(b.violation(t), Some(BACKOFF_FIRST));
    }

    #[test]
    fn violations_spread_over_windows_stay_within_budget() {
        let mut b = ErrorBudget::default();
        let t0 = Instant::now();
        for w in 0..5u32 {
            for _ in 0..VIOLATION_BUDGET {
                assert_eq!(b.violation(t0 + VIOLATION_WINDOW * w), None);
            }
        }
    }
}
