//! The sealed envelope shared by requests and replies.
//!
//! ```text
//! offset  size  field
//!      0     4  magic "PKS1"
//!      4     1  kind: 1 request, 2 reply
//!      5     8  key id (which guest-cluster key sealed it)
//!     13    12  nonce (random, fresh for every message)
//!     25     n  ciphertext (AES-256-GCM)
//!   25+n    16  tag
//! ```
//!
//! The 25-byte header is authenticated as associated data, so the kind and key id cannot be
//! changed; a reply's associated data also holds the nonce of the request it answers, which
//! binds the reply to exactly that request. GCM's tag check runs inside OpenSSL, in constant
//! time. Nonces are random 96-bit values: at the rate fence requests are made, a collision
//! under one key is not a practical concern (and the key is rotated, `docs/security.md`).

use openssl::symm::{Cipher, decrypt_aead, encrypt_aead};

use crate::key::{KEY_ID_LEN, Key, KeyId};

/// The envelope's magic number (format version 1).
pub const MAGIC: [u8; 4] = *b"PKS1";
/// Nonce length.
pub const NONCE_LEN: usize = 12;
/// Header length.
pub const HEADER_LEN: usize = 4 + 1 + KEY_ID_LEN + NONCE_LEN;
/// GCM tag length.
pub const TAG_LEN: usize = 16;
/// Largest sealed message accepted or produced.
pub const MAX_SEALED: usize = 4096;

/// Why a sealed message could not be made or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// Shorter than a header and a tag.
    #[error("sealed message is {0} bytes, shorter than the {min} of an empty one", min = HEADER_LEN + TAG_LEN)]
    TooShort(usize),
    /// Longer than [`MAX_SEALED`].
    #[error("sealed message is {0} bytes, more than the maximum of {MAX_SEALED}")]
    TooLong(usize),
    /// Not a sealed message of this version.
    #[error("not a sealed message (bad magic number)")]
    Magic,
    /// A kind other than request/reply, or not the one expected.
    #[error("sealed message of kind {found}, expected {expected}")]
    Kind {
        /// Kind byte found.
        found: u8,
        /// Kind expected.
        expected: u8,
    },
    /// Sealed under another key than the one given.
    #[error("sealed under key {found}, not {expected}")]
    KeyId {
        /// Key id in the message.
        found: KeyId,
        /// Key id of the key given.
        expected: KeyId,
    },
    /// The tag does not verify: wrong key, altered message, or a reply to another request.
    #[error(
        "authentication failed (wrong key, altered message, or not the answer to this request)"
    )]
    Tag,
    /// OpenSSL could not be initialised.
    #[error("OpenSSL could not be initialised")]
    Init,
    /// OpenSSL could not encrypt.
    #[error("encryption failed: {0}")]
    Encrypt(String),
    /// The plaintext inside is malformed (after a successful tag check: a bug or a key holder
    /// sending garbage).
    #[error("sealed content is malformed: {0}")]
    Content(String),
}

/// What a sealed message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum SealedKind {
    /// A fence request, guest to host.
    Request = 1,
    /// A reply, host to guest.
    Reply = 2,
}

/// A message nonce; requests' nonces double as their replay-protection identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Nonce(pub [u8; NONCE_LEN]);

impl Nonce {
    /// A fresh random nonce.
    pub fn random() -> Result<Nonce, SealError> {
        let mut n = [0u8; NONCE_LEN];
        openssl::rand::rand_bytes(&mut n).map_err(|e| SealError::Encrypt(e.to_string()))?;
        Ok(Nonce(n))
    }
}

impl std::fmt::Display for Nonce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::key::hex(&self.0))
    }
}

/// The clear header of a sealed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Request or reply (unchecked value).
    pub kind: u8,
    /// The key it claims to be sealed under.
    pub key_id: KeyId,
    /// Its nonce.
    pub nonce: Nonce,
}

impl Header {
    fn to_bytes(self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[..4].copy_from_slice(&MAGIC);
        b[4] = self.kind;
        b[5..5 + KEY_ID_LEN].copy_from_slice(&self.key_id.0);
        b[5 + KEY_ID_LEN..].copy_from_slice(&self.nonce.0);
        b
    }
}

/// Reads the clear header, checking only size and magic: what a host needs to pick the key.
/// Nothing in it is trustworthy until [`open`] has verified the tag.
pub fn peek(sealed: &[u8]) -> Result<Header, SealError> {
    if sealed.len() > MAX_SEALED {
        return Err(SealError::TooLong(sealed.len()));
    }
    if sealed.len() < HEADER_LEN + TAG_LEN {
        return Err(SealError::TooShort(sealed.len()));
    }
    let (magic, rest) = sealed.split_at(4);
    if magic != MAGIC {
        return Err(SealError::Magic);
    }
    let (kind, rest) = rest.split_at(1);
    let (id, rest) = rest.split_at(KEY_ID_LEN);
    let nonce = rest
        .get(..NONCE_LEN)
        .ok_or(SealError::TooShort(sealed.len()))?;
    let mut h = Header {
        kind: kind.first().copied().unwrap_or_default(),
        key_id: KeyId([0; KEY_ID_LEN]),
        nonce: Nonce([0; NONCE_LEN]),
    };
    h.key_id.0.copy_from_slice(id);
    h.nonce.0.copy_from_slice(nonce);
    Ok(h)
}

/// Seals `plaintext` as a message of `kind` under `key` with a fresh nonce; `extra_aad` is
/// authenticated too (a reply passes its request's nonce). Returns the nonce and the bytes.
pub fn seal(
    key: &Key,
    kind: SealedKind,
    extra_aad: &[u8],
    plaintext: &[u8],
) -> Result<(Nonce, Vec<u8>), SealError> {
    let total = HEADER_LEN + plaintext.len() + TAG_LEN;
    if total > MAX_SEALED {
        return Err(SealError::TooLong(total));
    }
    let header = Header {
        kind: kind as u8,
        key_id: key.id(),
        nonce: Nonce::random()?,
    };
    let head = header.to_bytes();
    let mut aad = Vec::with_capacity(HEADER_LEN + extra_aad.len());
    aad.extend_from_slice(&head);
    aad.extend_from_slice(extra_aad);
    let mut tag = [0u8; TAG_LEN];
    let ciphertext = encrypt_aead(
        Cipher::aes_256_gcm(),
        key.secret(),
        Some(&header.nonce.0),
        &aad,
        plaintext,
        &mut tag,
    )
    .map_err(|e| SealError::Encrypt(e.to_string()))?;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&head);
    out.extend_from_slice(&ciphertext);
    out.extend_from_slice(&tag);
    Ok((header.nonce, out))
}

/// Opens a message of `kind` sealed under `key` (with `extra_aad`, as given to [`seal`]):
/// its header and plaintext, or why not.
pub fn open(
    key: &Key,
    kind: SealedKind,
    extra_aad: &[u8],
    sealed: &[u8],
) -> Result<(Header, Vec<u8>), SealError> {
    let header = peek(sealed)?;
    if header.kind != kind as u8 {
        return Err(SealError::Kind {
            found: header.kind,
            expected: kind as u8,
        });
    }
    if header.key_id != key.id() {
        return Err(SealError::KeyId {
            found: header.key_id,
            expected: key.id(),
        });
    }
    let body = sealed.get(HEADER_LEN..).unwrap_or_default();
    let (ciphertext, tag) = body.split_at(body.len().saturating_sub(TAG_LEN));
    let mut aad = Vec::with_capacity(HEADER_LEN + extra_aad.len());
    aad.extend_from_slice(sealed.get(..HEADER_LEN).unwrap_or_default());
    aad.extend_from_slice(extra_aad);
    let plaintext = decrypt_aead(
        Cipher::aes_256_gcm(),
        key.secret(),
        Some(&header.nonce.0),
        &aad,
        ciphertext,
        tag,
    )
    .map_err(|_| SealError::Tag)?;
    Ok((header, plaintext))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_every_bit_matters() {
        let key = Key::generate("c").unwrap();
        let (nonce, sealed) = seal(&key, SealedKind::Request, b"", b"hello").unwrap();
        assert_eq!(sealed.len(), HEADER_LEN + 5 + TAG_LEN);
        let (h, pt) = open(&key, SealedKind::Request, b"", &sealed).unwrap();
        assert_eq!((h.nonce, pt.as_slice()), (nonce, &b"hello"[..]));
        // flipping any bit after the magic breaks it (kind/key id are checked first, the rest
        // by the tag)
        for i in 4..sealed.len() {
            let mut t = sealed.clone();
            t[i] ^= 0x01;
            assert!(
                open(&key, SealedKind::Request, b"", &t).is_err(),
                "byte {i}"
            );
        }
        assert_eq!(
            open(&key, SealedKind::Request, b"x", &sealed),
            Err(SealError::Tag)
        );
        assert!(matches!(
            open(&key, SealedKind::Reply, b"", &sealed),
            Err(SealError::Kind { .. })
        ));
        let other = Key::generate("c").unwrap();
        assert!(matches!(
            open(&other, SealedKind::Request, b"", &sealed),
            Err(SealError::KeyId { .. })
        ));
        let same_id = Key::from_parts(key.cluster().clone(), key.id(), [7; 32]);
        assert_eq!(
            open(&same_id, SealedKind::Request, b"", &sealed),
            Err(SealError::Tag)
        );
    }

    #[test]
    fn sizes_are_bounded() {
        let key = Key::generate("c").unwrap();
        assert_eq!(peek(&[0; 10]), Err(SealError::TooShort(10)));
        assert_eq!(
            peek(&vec![0; MAX_SEALED + 1]),
            Err(SealError::TooLong(MAX_SEALED + 1))
        );
        assert_eq!(peek(&[0; 64]), Err(SealError::Magic));
        seal(&key, SealedKind::Request, b"", &vec![0; MAX_SEALED]).unwrap_err();
        let (n1, _) = seal(&key, SealedKind::Request, b"", b"").unwrap();
        let (n2, _) = seal(&key, SealedKind::Request, b"", b"").unwrap();
        assert_ne!(n1, n2);
    }
}
