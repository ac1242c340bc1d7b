//! The `manager` service's payloads (docs/protocol.md §14): the request a guest sends, decoded
//! strictly (it comes from a guest), and the reply vm-managerd sends back.

use std::collections::BTreeSet;
use std::fmt::Write as _;

/// Longest request body.
pub const MAX_REQUEST: usize = 1024;
/// Most names in one request.
pub const MAX_NAMES: usize = 32;
/// Longest attribute name.
pub const MAX_NAME_LEN: usize = 64;
/// Longest value in a reply.
pub const MAX_VALUE_LEN: usize = 128;
/// Longest a `wait` may be held, in seconds: below the host relay's 60 s request bound.
pub const MAX_WAIT_SECS: u16 = 45;

/// A decoded request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The attributes asked for, in request order, distinct.
    pub names: Vec<String>,
    /// `None` for `get`; for `wait`, what the guest saw last and how long to hold the answer.
    pub wait: Option<Wait>,
}

/// The long-poll part of a `wait` request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wait {
    /// The tag of the answer the guest has (`None`: it has none).
    pub tag: Option<Tag>,
    /// Longest the answer is held back, 1..=[`MAX_WAIT_SECS`].
    pub seconds: u16,
}

/// Identifies an answer: equal tags, same host node and same values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tag(pub u64);

impl std::fmt::Display for Tag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Why a request is malformed (answered Error BadRequest with this text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The body is empty.
    #[error("empty request: expected get NAME... or wait TAG SECONDS NAME...")]
    Empty,
    /// The body is longer than [`MAX_REQUEST`].
    #[error("request of {0} bytes, more than {MAX_REQUEST}")]
    TooLong(usize),
    /// Not ASCII text without control characters.
    #[error("the request must be one line of printable ASCII")]
    NotText,
    /// An empty field: two spaces, or a space at either end.
    #[error("fields must be separated by exactly one space")]
    Spacing,
    /// Neither `get` nor `wait`.
    #[error("unknown verb (expected get or wait)")]
    Verb,
    /// A bad `TAG`.
    #[error("bad tag: expected - or 16 lowercase hex digits")]
    Tag,
    /// A bad `SECONDS`.
    #[error("bad seconds: expected 1 to {MAX_WAIT_SECS}, without leading zeros")]
    Seconds,
    /// No names.
    #[error("no attribute names")]
    NoNames,
    /// Too many names.
    #[error("more than {MAX_NAMES} attribute names")]
    TooManyNames,
    /// A name out of syntax (not echoed: it is the guest's bytes).
    #[error(
        "attribute name {0} out of syntax (1-64 of A-Z a-z 0-9 _ . : -, first a letter, digit or _)"
    )]
    Name(usize),
    /// A name given twice.
    #[error("attribute name {0} given twice")]
    Duplicate(String),
}

/// Whether `name` is an attribute name a guest may ask for.
pub fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    (1..=MAX_NAME_LEN).contains(&b.len())
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b':' | b'-'))
}

/// Whether `value` can be answered: 1..=[`MAX_VALUE_LEN`] printable ASCII, no space, `=`, `,`.
pub fn valid_value(value: &str) -> bool {
    (1..=MAX_VALUE_LEN).contains(&value.len())
        && value
            .bytes()
            .all(|c| c.is_ascii_graphic() && c != b'=' && c != b',')
}

/// Decodes a request body.
pub fn decode(body: &[u8]) -> Result<Request, RequestError> {
    if body.is_empty() {
        return Err(RequestError::Empty);
    }
    if body.len() > MAX_REQUEST {
        return Err(RequestError::TooLong(body.len()));
    }
    // printable ASCII and space only: no line feeds, tabs, NULs or UTF-8
    if !body.iter().all(|&c| c == b' ' || c.is_ascii_graphic()) {
        return Err(RequestError::NotText);
    }
    let text = std::str::from_utf8(body).map_err(|_| RequestError::NotText)?;
    let fields: Vec<&str> = text.split(' ').collect();
    if fields.iter().any(|f| f.is_empty()) {
        return Err(RequestError::Spacing);
    }
    let (wait, names) = match fields.first().copied() {
        Some("get") => (None, &fields[1..]),
        Some("wait") => {
            let tag = match fields.get(1).copied() {
                Some("-") => None,
                Some(t)
                    if t.len() == 16
                        && t.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) =>
                {
                    Some(Tag(
                        u64::from_str_radix(t, 16).map_err(|_| RequestError::Tag)?
                    ))
                }
                _ => return Err(RequestError::Tag),
            };
            let seconds = match fields.get(2) {
                Some(s)
                    if !s.starts_with('0')
                        && s.len() <= 2
                        && s.bytes().all(|c| c.is_ascii_digit()) =>
                {
                    s.parse::<u16>().map_err(|_| RequestError::Seconds)?
                }
                _ => return Err(RequestError::Seconds),
            };
            if !(1..=MAX_WAIT_SECS).contains(&seconds) {
                return Err(RequestError::Seconds);
            }
            (
                Some(Wait { tag, seconds }),
                fields.get(3..).unwrap_or_default(),
            )
        }
        _ => return Err(RequestError::Verb),
    };
    if names.is_empty() {
        return Err(RequestError::NoNames);
    }
    if names.len() > MAX_NAMES {
        return Err(RequestError::TooManyNames);
    }
    let mut seen = BTreeSet::new();
    for (i, name) in names.iter().enumerate() {
        if !valid_name(name) {
            return Err(RequestError::Name(i + 1));
        }
        if !seen.insert(*name) {
            return Err(RequestError::Duplicate((*name).to_owned()));
        }
    }
    Ok(Request {
        names: names.iter().map(|n| (*n).to_owned()).collect(),
        wait,
    })
}

/// An answer: the host node and each asked-for attribute's converted value (`None`: not set
/// there, or not representable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The answering host node.
    pub node: String,
    /// Name and value, in request order.
    pub values: Vec<(String, Option<String>)>,
}

impl Answer {
    fn lines(&self) -> String {
        let mut out = String::new();
        for (name, value) in &self.values {
            match value {
                Some(v) => {
                    let _ = writeln!(out, "{name}={v}");
                }
                None => {
                    let _ = writeln!(out, "{name}");
                }
            }
        }
        out
    }

    /// The answer's tag: FNV-1a over the node name, a NUL and the value lines.
    pub fn tag(&self) -> Tag {
        Tag(fnv1a(
            self.node
                .bytes()
                .chain(std::iter::once(0))
                .chain(self.lines().into_bytes()),
        ))
    }

    /// The Reply body.
    pub fn encode(&self) -> Vec<u8> {
        format!("ok {} {}\n{}", self.node, self.tag(), self.lines()).into_bytes()
    }
}

fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Decodes a Reply body (the guest side's parser; strict: it is the only input the guest
/// agent trusts to set attributes). `names` are those asked for.
pub fn decode_reply(body: &[u8], names: &[String]) -> Result<(Answer, Tag), String> {
    let text = std::str::from_utf8(body).map_err(|_| "reply is not UTF-8".to_owned())?;
    let mut lines = text.split_inclusive('\n');
    let first = lines.next().ok_or("empty reply")?;
    let first = first
        .strip_suffix('\n')
        .ok_or("reply without a line feed")?;
    let mut f = first.split(' ');
    let (Some("ok"), Some(node), Some(tag), None) = (f.next(), f.next(), f.next(), f.next()) else {
        return Err(format!("bad first line {first:?}"));
    };
    if node.is_empty() || node.len() > 255 || !node.bytes().all(|c| c.is_ascii_graphic()) {
        return Err("bad node name in reply".into());
    }
    if tag.len() != 16 {
        return Err("bad tag in reply".into());
    }
    let tag = u64::from_str_radix(tag, 16).map_err(|_| "bad tag in reply".to_owned())?;
    let mut values = Vec::with_capacity(names.len());
    for name in names {
        let line = lines
            .next()
            .and_then(|l| l.strip_suffix('\n'))
            .ok_or_else(|| format!("reply misses {name}"))?;
        match line.split_once('=') {
            Some((n, v)) if n == name && valid_value(v) => {
                values.push((n.to_owned(), Some(v.to_owned())));
            }
            None if line == name => values.push((name.clone(), None)),
            _ => return Err(format!("bad line for {name} in reply")),
        }
    }
    if lines.next().is_some() {
        return Err("reply has more lines than names asked for".into());
    }
    let answer = Answer {
        node: node.to_owned(),
        values,
    };
    if answer.tag() != Tag(tag) {
        return Err("reply tag does not match its content".into());
    }
    Ok((answer, Tag(tag)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn well_formed_requests_decode() {
        assert_eq!(
            decode(b"get default_ping_set diskcheck_status").unwrap(),
            Request {
                names: names(&["default_ping_set", "diskcheck_status"]),
                wait: None
            }
        );
        assert_eq!(
            decode(b"wait - 45 a").unwrap(),
            Request {
                names: names(&["a"]),
                wait: Some(Wait {
                    tag: None,
                    seconds: 45
                })
            }
        );
        let r = decode(b"wait 00000000000000ff 1 a:b _x.y-z").unwrap();
        assert_eq!(r.wait.unwrap().tag, Some(Tag(255)));
        assert_eq!(r.names, names(&["a:b", "_x.y-z"]));
        let many: Vec<String> = (0..MAX_NAMES).map(|i| format!("a{i}")).collect();
        assert_eq!(
            decode(format!("get {}", many.join(" ")).as_bytes())
                .unwrap()
                .names,
            many
        );
    }

    #[test]
    fn malformed_requests_are_refused_with_a_reason() {
        let long = format!("get {}", "a ".repeat(600));
        let too_many: Vec<String> = (0..=MAX_NAMES).map(|i| format!("a{i}")).collect();
        let too_many = format!("get {}", too_many.join(" "));
        let long_name = format!("get {}", "a".repeat(65));
        let cases: &[(&[u8], RequestError)] = &[
            (b"", RequestError::Empty),
            (long.as_bytes(), RequestError::TooLong(long.len())),
            (b"get a\n", RequestError::NotText),
            (b"get\ta", RequestError::NotText),
            (b"get \xc3\xa9", RequestError::NotText),
            (b"get a\0", RequestError::NotText),
            (b"get", RequestError::NoNames),
            (b"get ", RequestError::Spacing),
            (b"get  a", RequestError::Spacing),
            (b" get a", RequestError::Spacing),
            (b"GET a", RequestError::Verb),
            (b"a b", RequestError::Verb),
            (b"wait", RequestError::Tag),
            (b"wait x 1 a", RequestError::Tag),
            (b"wait 00000000000000FF 1 a", RequestError::Tag),
            (b"wait 0000000000000ff 1 a", RequestError::Tag),
            (b"wait - 0 a", RequestError::Seconds),
            (b"wait - 46 a", RequestError::Seconds),
            (b"wait - 05 a", RequestError::Seconds),
            (b"wait - 100 a", RequestError::Seconds),
            (b"wait - +1 a", RequestError::Seconds),
            (b"wait - 1", RequestError::NoNames),
            (too_many.as_bytes(), RequestError::TooManyNames),
            (b"get a -b", RequestError::Name(2)),
            (b"get a/b", RequestError::Name(1)),
            (b"get a=b", RequestError::Name(1)),
            (long_name.as_bytes(), RequestError::Name(1)),
            (b"get a b a", RequestError::Duplicate("a".into())),
        ];
        for (body, want) in cases {
            assert_eq!(
                decode(body).as_ref(),
                Err(want),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn replies_round_trip_and_tags_name_node_and_values() {
        let a = Answer {
            node: "n1".into(),
            values: vec![("p".into(), Some("green".into())), ("d".into(), None)],
        };
        let body = a.encode();
        let text = String::from_utf8(body.clone()).unwrap();
        assert_eq!(text, format!("ok n1 {}\np=green\nd\n", a.tag()));
        let (back, tag) = decode_reply(&body, &names(&["p", "d"])).unwrap();
        assert_eq!(back, a);
        assert_eq!(tag, a.tag());
        // another node with the same values has another tag (live migration, §14.5)
        let b = Answer {
            node: "n2".into(),
            ..a.clone()
        };
        assert_ne!(a.tag(), b.tag());
        let c = Answer {
            node: "n1".into(),
            values: vec![("p".into(), Some("red".into())), ("d".into(), None)],
        };
        assert_ne!(a.tag(), c.tag());
        // a reply for other names, or tampered with, is refused
        decode_reply(&body, &names(&["p"])).unwrap_err();
        decode_reply(&body, &names(&["p", "x"])).unwrap_err();
        let tampered = text.replace("green", "gree");
        decode_reply(tampered.as_bytes(), &names(&["p", "d"])).unwrap_err();
        decode_reply(b"", &names(&["p"])).unwrap_err();
    }

    #[test]
    fn values_are_bounded_printable_and_separator_free() {
        assert!(valid_value("green") && valid_value("100") && valid_value("a:b/c"));
        for bad in ["", "a b", "a=b", "a,b", "a\nb", "é", &"x".repeat(129)] {
            assert!(!valid_value(bad), "{bad:?}");
        }
    }
}
