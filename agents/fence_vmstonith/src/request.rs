//! The request loop: seal a fence request, send it to the host's `stonith` service through the
//! guest's vm-connectd, open the sealed reply.
//!
//! Only a reply that opens under the key, bound to this very request's nonce, and says
//! [`Outcome::Done`] is a success. A Retry answer (the guest migrated, no host link, no
//! vm-stonithd registered) and a failure to connect (the guest daemon restarting) are retried
//! after a pause with a fresh request (new nonce and timestamp, so the host's replay guard
//! never sees one twice); everything else fails at once. Every wait, the pauses included, is
//! bounded by one deadline for the whole request. Each attempt carries what is left of it to
//! the daemons on the way (protocol version 2), which give up at that time; the agent waits up
//! to [`vm_proto::client::REPLY_GRACE`] longer for their answer, so that a timeout names the
//! hop that ran out of time.

use std::fmt;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use vm_proto::client::{CONNECT_TIMEOUT, Client, ClientError};
use vm_proto::{ErrorCode, Role};
use vm_seal::{Action, FenceReply, FenceRequest, Key, Name, Outcome, SealError};

use crate::Log;

/// The host service that serves fence requests (vm-stonithd).
pub use vm_fence::SERVICE;

/// Pause between attempts.
pub const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// An attempt with less time left than this is not started.
const MIN_ATTEMPT: Duration = Duration::from_millis(10);

/// Why a request did not end in a confirmed success.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The request could not be made or sealed (a bug, or OpenSSL failing).
    #[error("cannot seal the request")]
    Seal(#[source] SealError),
    /// The host side did not answer within the time that was left.
    #[error("no answer within {0:.1?}")]
    Timeout(Duration),
    /// A daemon on the way gave up at the deadline the request carried (Error Timeout): the
    /// same event as [`RequestError::Timeout`], seen from closer, with the hop named.
    #[error("no answer within {timeout:.1?}: {message}")]
    RelayTimeout {
        /// The time the attempt had.
        timeout: Duration,
        /// The daemon's message (one line): which hop gave up.
        message: String,
    },
    /// Every attempt was retryable, and the timeout ran out.
    #[error(
        "gave up after {attempts} attempt(s): the timeout of {timeout:.1?} is spent (last: {last})"
    )]
    Exhausted {
        /// Attempts made.
        attempts: u32,
        /// The whole request's timeout.
        timeout: Duration,
        /// Why the last attempt did not succeed.
        last: String,
    },
    /// A daemon on the way, or the host module, answered with an error.
    #[error("the host side answered with an error ({code}): {message}")]
    Remote {
        /// The error code.
        code: ErrorCode,
        /// Its message (made printable on one line).
        message: String,
    },
    /// The reply does not open: sealed under another key, altered, or not the answer to
    /// this request.
    #[error("the reply cannot be trusted")]
    Reply(#[source] SealError),
    /// The host cluster answered, authentically, that it did not do it.
    #[error("the host cluster answered {}: {message}", outcome_text(*.outcome))]
    NotDone {
        /// The outcome.
        outcome: Outcome,
        /// The host's message (made printable on one line).
        message: String,
    },
    /// Talking to vm-connectd failed otherwise (connection closed, protocol violation).
    #[error("the exchange with vm-connectd failed")]
    Client(#[source] ClientError),
}

/// An outcome in words.
pub fn outcome_text(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Done => "done",
        Outcome::Failed => "failed",
        Outcome::Refused => "refused",
        Outcome::TimedOut => "timed out",
    }
}

/// The whole request's time budget.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    end: Instant,
    total: Duration,
}

impl Deadline {
    /// `timeout` from now.
    pub fn after(timeout: Duration) -> Deadline {
        let now = Instant::now();
        Deadline {
            end: now.checked_add(timeout).unwrap_or(now),
            total: timeout,
        }
    }

    /// Time left, zero once passed.
    pub fn left(&self) -> Duration {
        self.end.saturating_duration_since(Instant::now())
    }

    /// The whole budget.
    pub fn total(&self) -> Duration {
        self.total
    }
}

/// Who asks, with which key, through which socket.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The guest cluster's key.
    pub key: &'a Key,
    /// The guest's vm-connectd socket.
    pub socket: &'a Path,
    /// This guest's name, as the host cluster knows it.
    pub requester: &'a Name,
}

/// What is asked, for log lines: `off of web2`, `list`.
struct What<'a>(Action, Option<&'a Name>);

impl fmt::Display for What<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.1 {
            Some(t) => write!(f, "{} of {t}", self.0),
            None => write!(f, "{}", self.0),
        }
    }
}

/// Why an attempt should be repeated.
enum Again {
    /// Could not connect to vm-connectd.
    Connect(ClientError),
    /// A Retry answer.
    Retry(ClientError),
}

/// Sends `action` (on `target`) to the host cluster and returns its reply, which is
/// [`Outcome::Done`]; anything else is an error. Retries as the module documentation says,
/// never past `deadline`.
pub fn request(
    ctx: &Context<'_>,
    action: Action,
    target: Option<&Name>,
    deadline: Deadline,
    log: &mut Log<'_>,
) -> Result<FenceReply, RequestError> {
    let what = What(action, target);
    let mut attempts = 0u32;
    let mut last = String::from("no time was left for an attempt");
    loop {
        let left = deadline.left();
        if left < MIN_ATTEMPT {
            return Err(RequestError::Exhausted {
                attempts,
                timeout: deadline.total(),
                last,
            });
        }
        attempts += 1;
        last = match attempt(ctx, action, target, deadline, log, &what, attempts)? {
            Ok(reply) => return Ok(reply),
            Err(Again::Connect(e)) => {
                format!(
                    "cannot connect to vm-connectd: {}",
                    vm_common::error_chain(&e)
                )
            }
            Err(Again::Retry(e)) => vm_common::error_chain(&e),
        };
        // Wait before the next attempt; when the pause would leave no time for it, give up
        // now (the final error names this last reason).
        let pause = RETRY_PAUSE.min(deadline.left());
        if deadline.left().saturating_sub(pause) < MIN_ATTEMPT {
            return Err(RequestError::Exhausted {
                attempts,
                timeout: deadline.total(),
                last,
            });
        }
        log.warn(format_args!(
            "{what}: attempt {attempts}: {last}; trying again in {pause:.1?}"
        ));
        thread::sleep(pause);
    }
}

/// One attempt: `Ok(Ok(reply))` done, `Ok(Err(_))` worth another attempt, `Err(_)` final.
fn attempt(
    ctx: &Context<'_>,
    action: Action,
    target: Option<&Name>,
    deadline: Deadline,
    log: &mut Log<'_>,
    what: &What<'_>,
    n: u32,
) -> Result<Result<FenceReply, Again>, RequestError> {
    // A fresh request every time: the host refuses a nonce it has seen, and a stale
    // timestamp. Its timeout tells the host how long this agent will still wait.
    let started = Instant::now();
    let left = deadline.left();
    let request = FenceRequest::new(action, target.cloned(), ctx.requester.clone(), left)
        .map_err(RequestError::Seal)?;
    let (nonce, sealed) = request.seal(ctx.key).map_err(RequestError::Seal)?;
    log.debug(format_args!(
        "{what}: attempt {n}: sending request {nonce} as {} through {} ({left:.1?} left)",
        ctx.requester,
        ctx.socket.display()
    ));
    let mut client =
        match Client::connect_timeout(ctx.socket, Role::Client, left.min(CONNECT_TIMEOUT)) {
            Ok(c) => c,
            Err(e) => return Ok(Err(Again::Connect(e))),
        };
    let left = deadline.left().max(Duration::from_millis(1));
    let body = match client.request(SERVICE, &sealed, left) {
        Ok(body) => body,
        Err(e @ ClientError::Retry { .. }) => return Ok(Err(Again::Retry(e))),
        Err(ClientError::Timeout { timeout }) => return Err(RequestError::Timeout(timeout)),
        Err(ClientError::Remote {
            code: ErrorCode::Timeout,
            message,
        }) => {
            return Err(RequestError::RelayTimeout {
                timeout: left,
                message: crate::one_line(&message),
            });
        }
        Err(ClientError::Remote { code, message }) => {
            return Err(RequestError::Remote {
                code,
                message: crate::one_line(&message),
            });
        }
        Err(e) => return Err(RequestError::Client(e)),
    };
    let reply = FenceReply::open(ctx.key, &nonce, &body).map_err(RequestError::Reply)?;
    if reply.outcome != Outcome::Done {
        return Err(RequestError::NotDone {
            outcome: reply.outcome,
            message: crate::one_line(&reply.message),
        });
    }
    // the round trip as this agent sees it: sealing, the whole path to the host cluster and
    // back, opening the reply (process start-up excluded)
    log.debug(format_args!(
        "{what}: done in {:.1} ms (round trip): {}",
        started.elapsed().as_secs_f64() * 1000.0,
        crate::one_line(&reply.message)
    ));
    Ok(Ok(reply))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_socket_is_retried_until_the_deadline_only() {
        let key = Key::generate("web").unwrap();
        let me = Name::new("web1").unwrap();
        let target = Name::new("web2").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("none.sock");
        let ctx = Context {
            key: &key,
            socket: &socket,
            requester: &me,
        };
        let mut err = Vec::new();
        let mut log = Log::new(&mut err, false);
        let started = Instant::now();
        let e = request(
            &ctx,
            Action::Off,
            Some(&target),
            Deadline::after(Duration::from_millis(1500)),
            &mut log,
        )
        .unwrap_err();
        let took = started.elapsed();
        // attempts at 0 s and 1 s; then too little time is left for a pause and an attempt
        assert!(
            took >= Duration::from_millis(950) && took < Duration::from_millis(1400),
            "{took:?}"
        );
        match &e {
            RequestError::Exhausted { attempts, last, .. } => {
                assert_eq!(*attempts, 2, "{e}");
                assert!(last.contains("cannot connect"), "{last}");
            }
            other => panic!("{other:?}"),
        }
        let text = String::from_utf8(err).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(
            text.contains("off of web2: attempt 1: cannot connect"),
            "{text}"
        );
    }

    #[test]
    fn nothing_is_sent_when_no_time_is_left() {
        let key = Key::generate("web").unwrap();
        let me = Name::new("web1").unwrap();
        let socket = Path::new("/nonexistent/x.sock");
        let ctx = Context {
            key: &key,
            socket,
            requester: &me,
        };
        let mut err = Vec::new();
        let mut log = Log::new(&mut err, true);
        let e = request(
            &ctx,
            Action::Monitor,
            None,
            Deadline::after(Duration::ZERO),
            &mut log,
        )
        .unwrap_err();
        assert!(
            matches!(e, RequestError::Exhausted { attempts: 0, .. }),
            "{e:?}"
        );
        assert!(err.is_empty());
    }

    #[test]
    fn messages() {
        let e = RequestError::NotDone {
            outcome: Outcome::Refused,
            message: "web1 may not fence db1".into(),
        };
        assert_eq!(
            e.to_string(),
            "the host cluster answered refused: web1 may not fence db1"
        );
        assert_eq!(What(Action::List, None).to_string(), "list");
    }
}
