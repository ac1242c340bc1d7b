//! The `remote` service: the host cluster's Pacemaker authkey, pulled by a guest that the host
//! cluster runs as a guest node (docs/protocol.md §17). The one home of its contract: the
//! request and reply grammar, the fingerprint, and the node attributes the fingerprints are
//! published in.
//!
//! ```text
//! request:  "authkey" SP ( "-" | FINGERPRINT )       what the guest holds now
//! reply:    "same"                                    the guest's key is the host's
//!         | "key" LF KEY                              the host's key (1..=MAX_KEY bytes)
//! ```
//!
//! `FINGERPRINT` is the SHA-256 of the key file, 64 lowercase hex digits (what `sha256sum`
//! prints). Fingerprints are published as transient node attributes on the host nodes:
//! [`HOST_ATTR`] on each host node (its own `/etc/pacemaker/authkey`), and
//! [`guest_attr`] (`pmkt-authkey-<domain>`) on the host node a guest runs on (what that guest
//! reported it holds); `vm-ctl check` compares them.
//!
//! Everything here is pure: the guest side (vm-connectd `--pacemaker-authkey`) and the host
//! side (vm-stonithd's `remote` module) do the I/O.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

/// The service name a guest asks and the host module registers.
pub const SERVICE: &str = "remote";

/// Where Pacemaker keeps the key, on host nodes and guest nodes alike.
pub const DEFAULT_AUTHKEY: &str = "/etc/pacemaker/authkey";

/// Largest key delivered (Pacemaker's own advice is 4096 random bytes).
pub const MAX_KEY: usize = 16384;

/// Longest request body: `authkey ` and a fingerprint.
pub const MAX_REQUEST: usize = 8 + 64;

/// The transient node attribute in which each host node publishes its own key's fingerprint.
pub const HOST_ATTR: &str = "pmkt-authkey";

/// Prefix of the per-guest attribute; the domain name follows ([`guest_attr`]).
pub const GUEST_ATTR_PREFIX: &str = "pmkt-authkey-";

/// The transient node attribute, on the host node the guest runs on, holding the fingerprint
/// guest `domain` reported (`-` for none).
pub fn guest_attr(domain: &str) -> String {
    format!("{GUEST_ATTR_PREFIX}{domain}")
}

/// The domain a per-guest attribute names, if `attr` is one.
pub fn guest_of_attr(attr: &str) -> Option<&str> {
    attr.strip_prefix(GUEST_ATTR_PREFIX)
        .filter(|d| crate::liveness::valid_domain(d))
}

/// SHA-256 of a key file's bytes: tells keys apart, reveals nothing usable about a random key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// The fingerprint of `key`.
    pub fn of(key: &[u8]) -> Fingerprint {
        Fingerprint(Sha256::digest(key).into())
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

impl FromStr for Fingerprint {
    type Err = AuthkeyError;

    /// Exactly 64 lowercase hex digits.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let b = s.as_bytes();
        if b.len() != 64 {
            return Err(AuthkeyError::Fingerprint);
        }
        let mut out = [0u8; 32];
        for (i, pair) in b.chunks_exact(2).enumerate() {
            let hi = hex_digit(pair[0]).ok_or(AuthkeyError::Fingerprint)?;
            let lo = hex_digit(pair[1]).ok_or(AuthkeyError::Fingerprint)?;
            out[i] = hi << 4 | lo;
        }
        Ok(Fingerprint(out))
    }
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// Why a `remote` body is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthkeyError {
    /// Longer than [`MAX_REQUEST`].
    #[error("the request is longer than {MAX_REQUEST} bytes")]
    RequestTooLong,
    /// Not `authkey SP (- | FINGERPRINT)`.
    #[error("the request is not \"authkey -\" or \"authkey <64 lowercase hex digits>\"")]
    Request,
    /// A fingerprint that is not 64 lowercase hex digits.
    #[error("a fingerprint must be 64 lowercase hex digits")]
    Fingerprint,
    /// Not `same` or `key LF KEY`.
    #[error("the reply is not \"same\" or \"key\" followed by a line feed and the key")]
    Reply,
    /// A key of 0 or more than [`MAX_KEY`] bytes.
    #[error("the key must be 1..={MAX_KEY} bytes, not {0}")]
    KeySize(usize),
}

/// A guest's request: the fingerprint of the key it holds, if any.
pub fn parse_request(body: &[u8]) -> Result<Option<Fingerprint>, AuthkeyError> {
    if body.len() > MAX_REQUEST {
        return Err(AuthkeyError::RequestTooLong);
    }
    let rest = body
        .strip_prefix(b"authkey ")
        .ok_or(AuthkeyError::Request)?;
    if rest == b"-" {
        return Ok(None);
    }
    let text = std::str::from_utf8(rest).map_err(|_| AuthkeyError::Fingerprint)?;
    text.parse().map(Some)
}

/// The request of a guest holding a key with fingerprint `have` (or none).
pub fn encode_request(have: Option<&Fingerprint>) -> Vec<u8> {
    match have {
        Some(fp) => format!("authkey {fp}").into_bytes(),
        None => b"authkey -".to_vec(),
    }
}

/// The key's bytes: never printed, zeroed (best effort) when dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyBytes(Vec<u8>);

impl KeyBytes {
    /// `bytes` as a key, if its size is 1..=[`MAX_KEY`].
    pub fn new(bytes: Vec<u8>) -> Result<KeyBytes, AuthkeyError> {
        if bytes.is_empty() || bytes.len() > MAX_KEY {
            let n = bytes.len();
            let mut k = KeyBytes(bytes);
            k.wipe();
            return Err(AuthkeyError::KeySize(n));
        }
        Ok(KeyBytes(bytes))
    }

    /// The bytes.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Its fingerprint.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(&self.0)
    }

    fn wipe(&mut self) {
        self.0.fill(0);
        std::hint::black_box(&self.0);
    }
}

impl Drop for KeyBytes {
    fn drop(&mut self) {
        self.wipe();
    }
}

impl fmt::Debug for KeyBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyBytes(<redacted>, {} bytes)", self.0.len())
    }
}

/// The host's answer to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthkeyReply {
    /// The guest holds the host's key.
    Same,
    /// The host's key, which the guest should install.
    Key(KeyBytes),
}

impl AuthkeyReply {
    /// The reply body. The `Key` body holds the key: wipe it after sending.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            AuthkeyReply::Same => b"same".to_vec(),
            AuthkeyReply::Key(k) => {
                let mut out = Vec::with_capacity(4 + k.0.len());
                out.extend_from_slice(b"key\n");
                out.extend_from_slice(&k.0);
                out
            }
        }
    }

    /// Reads a reply body strictly.
    pub fn parse(body: &[u8]) -> Result<AuthkeyReply, AuthkeyError> {
        if body == b"same" {
            return Ok(AuthkeyReply::Same);
        }
        let key = body.strip_prefix(b"key\n").ok_or(AuthkeyError::Reply)?;
        KeyBytes::new(key.to_vec()).map(AuthkeyReply::Key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_sha256_in_lowercase_hex() {
        // FIPS 180-4 test vectors
        assert_eq!(
            Fingerprint::of(b"abc").to_string(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            Fingerprint::of(b"").to_string(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let fp = Fingerprint::of(b"k");
        assert_eq!(fp.to_string().parse::<Fingerprint>(), Ok(fp));
        for bad in [
            "",
            "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD",
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015a",
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015adx",
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015 d",
            "+a7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        ] {
            assert_eq!(
                bad.parse::<Fingerprint>(),
                Err(AuthkeyError::Fingerprint),
                "{bad}"
            );
        }
    }

    #[test]
    fn requests_are_strict() {
        let fp = Fingerprint::of(b"k");
        assert_eq!(parse_request(b"authkey -"), Ok(None));
        assert_eq!(parse_request(&encode_request(None)), Ok(None));
        assert_eq!(parse_request(&encode_request(Some(&fp))), Ok(Some(fp)));
        let long = format!("authkey {fp}0");
        for (bad, why) in [
            (&b""[..], AuthkeyError::Request),
            (b"authkey", AuthkeyError::Request),
            (b"authkey ", AuthkeyError::Fingerprint),
            (b"authkey  -", AuthkeyError::Fingerprint),
            (b"authkey -\n", AuthkeyError::Fingerprint),
            (b"Authkey -", AuthkeyError::Request),
            (b"get -", AuthkeyError::Request),
            (b"authkey \xff", AuthkeyError::Fingerprint),
            (long.as_bytes(), AuthkeyError::RequestTooLong),
            (&[b'a'; 4096][..], AuthkeyError::RequestTooLong),
        ] {
            assert_eq!(
                parse_request(bad),
                Err(why),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn replies_are_strict_and_keys_bounded() {
        assert_eq!(AuthkeyReply::parse(b"same"), Ok(AuthkeyReply::Same));
        let key = KeyBytes::new(vec![0, 1, b'\n', 255]).unwrap();
        let body = AuthkeyReply::Key(key.clone()).encode();
        assert_eq!(&body[..4], b"key\n");
        assert_eq!(AuthkeyReply::parse(&body), Ok(AuthkeyReply::Key(key)));
        let mut big = b"key\n".to_vec();
        big.resize(4 + MAX_KEY, 7);
        AuthkeyReply::parse(&big).unwrap();
        big.push(7);
        assert_eq!(
            AuthkeyReply::parse(&big),
            Err(AuthkeyError::KeySize(MAX_KEY + 1))
        );
        for bad in [&b""[..], b"same\n", b"SAME", b"key", b"key ", b"keyx\nabc"] {
            assert!(AuthkeyReply::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(AuthkeyReply::parse(b"key\n"), Err(AuthkeyError::KeySize(0)));
    }

    #[test]
    fn keys_never_show_in_debug_output() {
        let key = KeyBytes::new(b"secret-bytes".to_vec()).unwrap();
        let shown = format!("{:?}", AuthkeyReply::Key(key));
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("12 bytes"), "{shown}");
    }

    #[test]
    fn attribute_names() {
        assert_eq!(guest_attr("g1"), "pmkt-authkey-g1");
        assert_eq!(guest_of_attr("pmkt-authkey-g1"), Some("g1"));
        assert_eq!(guest_of_attr(HOST_ATTR), None);
        assert_eq!(guest_of_attr("pmkt-authkey-"), None);
    }
}
