//! Standard base64 (RFC 4648, `+/`, `=` padding), strict when decoding: the encoding of the
//! original pm_kvm_tools tokens ([`crate::legacy`]), and the one implementation the test bed and
//! the fuzz harnesses use too.
//!
//! Written here rather than taken from OpenSSL: `openssl::base64::decode_block` skips
//! whitespace and accepts non-canonical input, so one token could have many spellings.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Why a token is not strict base64.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Base64Error {
    /// A character outside `[A-Za-z0-9+/=]` (whitespace included: a token is one word).
    #[error("Character at position {position} is outside the base64 alphabet")]
    Character {
        /// Byte offset of the offending character.
        position: usize,
    },
    /// The length is not a multiple of 4.
    #[error("Length {len} is not a multiple of 4")]
    Length {
        /// The token's length.
        len: usize,
    },
    /// `=` somewhere other than the last one or two characters.
    #[error("Padding `=` is only allowed as the last one or two characters")]
    Padding,
    /// The unused bits before the padding are not zero, so the encoding is not the one any
    /// encoder produces (accepting it would let one token have many spellings).
    #[error("The bits before the padding are not zero")]
    NonCanonical,
}

/// The value of a base64 character, `None` outside the alphabet (`=` included).
pub fn value(c: u8) -> Option<u32> {
    let value = match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    };
    Some(u32::from(value))
}

/// Standard base64 with `=` padding, exactly as `openssl enc -base64` writes a short line.
pub fn encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let mut group = [0u8; 3];
        for (slot, &byte) in group.iter_mut().zip(chunk) {
            *slot = byte;
        }
        let [a, b, c] = group;
        let bits = u32::from_be_bytes([0, a, b, c]);
        // A chunk of n bytes fills n + 1 sextets; the rest of the quad is padding.
        for sextet in 0..4 {
            if sextet <= chunk.len() {
                let index = (bits >> (18 - 6 * sextet)) & 0x3f;
                out.push(char::from(ALPHABET[index as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Strict base64: alphabet `[A-Za-z0-9+/]`, length a multiple of 4, one or two `=` only at the
/// very end, and zero bits before the padding. Unlike `openssl::base64::decode_block`, nothing
/// (whitespace, line breaks) is skipped.
pub fn decode(text: &str) -> Result<Vec<u8>, Base64Error> {
    let bytes = text.as_bytes();
    if let Some(position) = bytes.iter().position(|&b| value(b).is_none() && b != b'=') {
        return Err(Base64Error::Character { position });
    }
    if bytes.len() % 4 != 0 {
        return Err(Base64Error::Length { len: bytes.len() });
    }
    let quads = bytes.len() / 4;
    let mut out = Vec::with_capacity(quads * 3);
    for (n, quad) in bytes.chunks_exact(4).enumerate() {
        let mut bits = 0u32;
        let mut padding = 0usize;
        for &c in quad {
            bits <<= 6;
            match value(c) {
                Some(value) if padding == 0 => bits |= value,
                // A data character after `=`.
                Some(_) => return Err(Base64Error::Padding),
                None => padding += 1,
            }
        }
        if padding > 2 || (padding > 0 && n + 1 != quads) {
            return Err(Base64Error::Padding);
        }
        let [_, a, b, c] = bits.to_be_bytes();
        let group = [a, b, c];
        let kept = 3 - padding;
        if group.iter().skip(kept).any(|&byte| byte != 0) {
            return Err(Base64Error::NonCanonical);
        }
        out.extend(group.iter().take(kept));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trip_and_known_answers() {
        assert_eq!(encode(b""), "");
        assert_eq!(encode(b"f"), "Zg==");
        assert_eq!(encode(b"fo"), "Zm8=");
        assert_eq!(encode(b"foo"), "Zm9v");
        assert_eq!(encode(b"foob"), "Zm9vYg==");
        assert_eq!(encode(b"fooba"), "Zm9vYmE=");
        assert_eq!(encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(encode(&[0xfb, 0xff]), "+/8=");
        for len in 0..40u8 {
            let data: Vec<u8> = (0..len).map(|i| i.wrapping_mul(97) ^ 0xa5).collect();
            assert_eq!(decode(&encode(&data)).unwrap(), data);
        }
    }
}
