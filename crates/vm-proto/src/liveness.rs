//! Guest liveness as the host publishes it: the one home of the published-liveness contract.
//!
//! The host's vm-connectd keeps a heartbeat with the guest's own vm-connectd on every link
//! (protocol.md §15) and publishes what it learns, on its own node, as one **transient** node
//! attribute per linked guest: [`attr_name`] (`pmkt-guest-<domain>`), whose value is a
//! [`GuestLiveness`] written by its [`Display`](fmt::Display) and read back by [`parse`]:
//!
//! ```text
//! <link>:<liveness>:<since>     e.g.  up:answering:1700000000
//! ```
//!
//! - `link`: [`Link`], `up` (the host relay holds the guest's channel) or `down`;
//! - `liveness`: [`Liveness`], `answering` | `silent` | `unknown` | `unhealthy`;
//! - `since`: Unix seconds of the last change of this value (of link or liveness).
//!
//! The value is written only when it changes (never per heartbeat) and the attribute is
//! deleted when the guest's link is gone from the node (domain stopped, or migrated away).
//! Readers: the guests' resource agent `ocf:pm-kvm-tools:VirtualDomain` (a shell script, which
//! reads the host vm-connectd's status instead; a test compares its parsing with this one) and
//! `vm-ctl status`.
//!
//! It lives in `vm-proto` because the states are the outcome of the protocol's heartbeat and
//! the daemon that publishes them, vm-connectd, depends on this crate alone among the project's
//! contracts; the crate stays free of I/O for it.

use std::fmt;
use std::str::FromStr;

/// Prefix of every liveness attribute; the domain name follows.
pub const ATTR_PREFIX: &str = "pmkt-guest-";

/// Longest domain name that can be published (the same bound as `vm-ctl`'s names).
pub const MAX_ATTR_DOMAIN_LEN: usize = 64;

/// Whether the host relay holds the guest's channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Link {
    /// The host's vm-connectd is connected to the guest's channel socket.
    Up,
    /// It is not (QEMU runs but its socket is not connected, e.g. between a reconnect's tries).
    Down,
}

/// What the host knows of the guest's own vm-connectd on this link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Liveness {
    /// The guest's vm-connectd answered a heartbeat within the liveness timeout.
    Answering,
    /// It has answered since the guest started (or was linked here), then stopped answering for
    /// longer than the liveness timeout: the guest is hung, panicked or its daemon died.
    Silent,
    /// Never heard from on this link: a guest without the guest daemon, or one still booting.
    /// Never a failure.
    Unknown,
    /// The guest's vm-connectd answers, but reports a service it was told is critical down for
    /// its configured number of consecutive checks (the unit is in `vm-connectd status`).
    Unhealthy,
}

impl Link {
    /// The word in the attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            Link::Up => "up",
            Link::Down => "down",
        }
    }
}

impl Liveness {
    /// The word in the attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            Liveness::Answering => "answering",
            Liveness::Silent => "silent",
            Liveness::Unknown => "unknown",
            Liveness::Unhealthy => "unhealthy",
        }
    }

    /// Whether this state is a failure of the guest for its resource monitor (`silent`,
    /// `unhealthy`); `unknown` never is.
    pub fn is_failure(self) -> bool {
        matches!(self, Liveness::Silent | Liveness::Unhealthy)
    }
}

impl fmt::Display for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Liveness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Link {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "up" => Ok(Link::Up),
            "down" => Ok(Link::Down),
            _ => Err(ParseError::Link(s.to_owned())),
        }
    }
}

impl FromStr for Liveness {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "answering" => Ok(Liveness::Answering),
            "silent" => Ok(Liveness::Silent),
            "unknown" => Ok(Liveness::Unknown),
            "unhealthy" => Ok(Liveness::Unhealthy),
            _ => Err(ParseError::Liveness(s.to_owned())),
        }
    }
}

/// One guest's published state on one host node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GuestLiveness {
    /// Whether the relay holds the guest's channel.
    pub link: Link,
    /// What the heartbeat says.
    pub liveness: Liveness,
    /// Unix seconds of the last change of `link` or `liveness`.
    pub since: u64,
}

impl fmt::Display for GuestLiveness {
    /// The attribute value: `<link>:<liveness>:<since>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.link, self.liveness, self.since)
    }
}

/// A published value that is not what [`GuestLiveness`]'s `Display` writes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not three `:`-separated fields.
    #[error("{0:?} is not <link>:<liveness>:<since>")]
    Shape(String),
    /// The link word is not `up` or `down`.
    #[error("{0:?} is not a link state (up, down)")]
    Link(String),
    /// The liveness word is not one of the four.
    #[error("{0:?} is not a liveness (answering, silent, unknown, unhealthy)")]
    Liveness(String),
    /// `since` is not a decimal number of seconds (no sign, no leading zero, fits in u64).
    #[error("{0:?} is not a time in Unix seconds")]
    Since(String),
}

/// Parses an attribute value, strictly: exactly `<link>:<liveness>:<since>` with the words
/// above and `since` in canonical decimal (what `Display` writes, nothing else).
pub fn parse(value: &str) -> Result<GuestLiveness, ParseError> {
    let mut fields = value.split(':');
    let (Some(link), Some(liveness), Some(since), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(ParseError::Shape(value.to_owned()));
    };
    let link = link.parse()?;
    let liveness = liveness.parse()?;
    let canonical = !since.is_empty()
        && since.len() <= 20
        && since.bytes().all(|b| b.is_ascii_digit())
        && (since == "0" || !since.starts_with('0'));
    let since = canonical
        .then(|| since.parse::<u64>().ok())
        .flatten()
        .ok_or_else(|| ParseError::Since(since.to_owned()))?;
    Ok(GuestLiveness {
        link,
        liveness,
        since,
    })
}

impl FromStr for GuestLiveness {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s)
    }
}

/// Whether `domain` can be published: 1..=[`MAX_ATTR_DOMAIN_LEN`] bytes of letters, digits,
/// `_`, `-` and `.`, not starting with `-` or `.` (the names `vm-ctl` accepts). Attribute names
/// end up in XML ids and in the resource agent's command lines; a guest named otherwise is not
/// published (the daemon logs it, throttled).
pub fn valid_domain(domain: &str) -> bool {
    !domain.is_empty()
        && domain.len() <= MAX_ATTR_DOMAIN_LEN
        && domain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        && !domain.starts_with(['-', '.'])
}

/// The attribute of guest `domain`: `pmkt-guest-<domain>`. Check [`valid_domain`] first (or use
/// [`checked_attr_name`]).
pub fn attr_name(domain: &str) -> String {
    format!("{ATTR_PREFIX}{domain}")
}

/// [`attr_name`] for a domain that [`valid_domain`] accepts, else `None`.
pub fn checked_attr_name(domain: &str) -> Option<String> {
    valid_domain(domain).then(|| attr_name(domain))
}

/// The domain a liveness attribute names, if `attr` is one (and its domain is valid).
pub fn domain_of(attr: &str) -> Option<&str> {
    attr.strip_prefix(ATTR_PREFIX).filter(|d| valid_domain(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip() {
        for link in [Link::Up, Link::Down] {
            for liveness in [
                Liveness::Answering,
                Liveness::Silent,
                Liveness::Unknown,
                Liveness::Unhealthy,
            ] {
                for since in [0, 1, 1_700_000_000, u64::MAX] {
                    let v = GuestLiveness {
                        link,
                        liveness,
                        since,
                    };
                    let text = v.to_string();
                    assert_eq!(parse(&text), Ok(v), "{text}");
                    assert_eq!(text.parse::<GuestLiveness>(), Ok(v));
                }
            }
        }
        assert_eq!(
            GuestLiveness {
                link: Link::Up,
                liveness: Liveness::Answering,
                since: 1_700_000_000
            }
            .to_string(),
            "up:answering:1700000000"
        );
    }

    #[test]
    fn parsing_is_strict() {
        for bad in [
            "",
            "up",
            "up:answering",
            "up:answering:1:2",
            "UP:answering:1",
            "up:Answering:1",
            "up:answering:",
            "up:answering:01",
            "up:answering:+1",
            "up:answering:-1",
            "up:answering: 1",
            "up:answering:1 ",
            "up:answering:18446744073709551616",
            "up:answering:1e3",
            "left:answering:1",
            "up:dead:1",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            parse("up:answering:x"),
            Err(ParseError::Since("x".to_owned()))
        );
        assert_eq!(parse("a:b"), Err(ParseError::Shape("a:b".to_owned())));
        assert_eq!(parse("up:b:1"), Err(ParseError::Liveness("b".to_owned())));
        assert_eq!(parse("x:silent:1"), Err(ParseError::Link("x".to_owned())));
    }

    #[test]
    fn attribute_names() {
        assert_eq!(attr_name("g1"), "pmkt-guest-g1");
        assert_eq!(
            checked_attr_name("web.1_a-b"),
            Some("pmkt-guest-web.1_a-b".into())
        );
        assert_eq!(domain_of("pmkt-guest-g1"), Some("g1"));
        assert_eq!(domain_of("pmkt-guest-"), None);
        assert_eq!(domain_of("pmkt-fence-keys"), None);
        for bad in [
            "",
            "-g",
            ".g",
            "g 1",
            "g/1",
            "g:1",
            "g'1",
            "ä",
            &"x".repeat(65),
        ] {
            assert!(!valid_domain(bad), "{bad:?} accepted");
            assert_eq!(checked_attr_name(bad), None);
        }
        assert!(valid_domain(&"x".repeat(64)));
    }

    #[test]
    fn only_silent_and_unhealthy_fail() {
        assert!(Liveness::Silent.is_failure());
        assert!(Liveness::Unhealthy.is_failure());
        assert!(!Liveness::Unknown.is_failure());
        assert!(!Liveness::Answering.is_failure());
    }
}
