//! Primitive payload encodings shared by every message: big-endian integers, strings
//! (u16 length + UTF-8) and byte strings (u32 length + bytes).
//!
//! The reader checks every announced length against the field's maximum *before* looking at
//! the bytes, and against what is left of the payload, so a length field can never make it
//! read out of bounds or allocate: it only ever borrows from the payload.

use crate::{frame::Kind, message::MessageError};

/// Builds a payload. Lengths are written as the field's length type; every caller has
/// validated its strings and bodies against limits far below `u16::MAX` / `u32::MAX`.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub(crate) fn new() -> Writer {
        Writer::default()
    }

    pub(crate) fn u8(&mut self, value: u8) -> &mut Writer {
        self.buf.push(value);
        self
    }

    pub(crate) fn u16(&mut self, value: u16) -> &mut Writer {
        self.buf.extend_from_slice(&value.to_be_bytes());
        self
    }

    pub(crate) fn u32(&mut self, value: u32) -> &mut Writer {
        self.buf.extend_from_slice(&value.to_be_bytes());
        self
    }

    pub(crate) fn u64(&mut self, value: u64) -> &mut Writer {
        self.buf.extend_from_slice(&value.to_be_bytes());
        self
    }

    pub(crate) fn str(&mut self, value: &str) -> &mut Writer {
        // Strings are validated to at most 1024 bytes before they reach a writer.
        self.u16(u16::try_from(value.len()).unwrap_or(u16::MAX));
        self.buf.extend_from_slice(value.as_bytes());
        self
    }

    pub(crate) fn bytes(&mut self, value: &[u8]) -> &mut Writer {
        // Bodies are validated to at most MAX_BODY before they reach a writer.
        let len = u32::try_from(value.len()).unwrap_or(u32::MAX);
        self.buf.extend_from_slice(&len.to_be_bytes());
        self.buf.extend_from_slice(value);
        self
    }

    pub(crate) fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }
}

/// Reads a payload front to back; `field` names are what errors report.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(payload: &'a [u8]) -> Reader<'a> {
        Reader { rest: payload }
    }

    fn take(&mut self, field: &'static str, needed: usize) -> Result<&'a [u8], MessageError> {
        if self.rest.len() < needed {
            return Err(MessageError::Truncated {
                field,
                needed,
                left: self.rest.len(),
            });
        }
        let (head, tail) = self.rest.split_at(needed);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], MessageError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(field, N)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, MessageError> {
        Ok(self.array::<1>(field)?[0])
    }

    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, MessageError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, MessageError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn u64(&mut self, field: &'static str) -> Result<u64, MessageError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    /// A string of `min..=max` bytes of UTF-8.
    pub(crate) fn str(
        &mut self,
        field: &'static str,
        min: usize,
        max: usize,
    ) -> Result<&'a str, MessageError> {
        let len = usize::from(self.u16(field)?);
        check_len(field, len, min, max)?;
        let bytes = self.take(field, len)?;
        std::str::from_utf8(bytes).map_err(|_| MessageError::InvalidUtf8 { field })
    }

    /// A byte string of at most `max` bytes.
    pub(crate) fn bytes(
        &mut self,
        field: &'static str,
        max: usize,
    ) -> Result<&'a [u8], MessageError> {
        let len = u32::from_be_bytes(self.array(field)?);
        // A u32 always fits in usize on the 32- and 64-bit targets this runs on; should it
        // not, saturating makes it "too long", which is the truth.
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        check_len(field, len, 0, max)?;
        self.take(field, len)
    }

    /// Succeeds only if the whole payload was consumed.
    pub(crate) fn end(self, kind: Kind) -> Result<(), MessageError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(MessageError::TrailingBytes {
                kind,
                count: self.rest.len(),
            })
        }
    }
}

/// Checks a string or body length against its field's bounds.
pub(crate) fn check_len(
    field: &'static str,
    len: usize,
    min: usize,
    max: usize,
) -> Result<(), MessageError> {
    if len > max {
        return Err(MessageError::TooLong { field, len, max });
    }
    if len < min {
        return Err(MessageError::TooShort { field, len, min });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_rejects_lengths_beyond_max_before_reading() {
        // Announces 60000 bytes but carries none: the limit is what is reported.
        let mut r = Reader::new(&[0xEA, 0x60]);
        assert_eq!(
            r.str("f", 0, 255),
            Err(MessageError::TooLong {
                field: "f",
                len: 60000,
                max: 255
            })
        );
        let mut r = Reader::new(&[0xFF, 0xFF, 0xFF, 0xFF]);
        assert!(matches!(
            r.bytes("b", 10),
            Err(MessageError::TooLong {
                len: 4_294_967_295,
                ..
            })
        ));
    }

    #[test]
    fn reader_reports_truncation() {
        let mut r = Reader::new(&[0, 5, b'a', b'b']);
        assert_eq!(
            r.str("f", 0, 255),
            Err(MessageError::Truncated {
                field: "f",
                needed: 5,
                left: 2
            })
        );
        let mut r = Reader::new(&[1]);
        assert_eq!(
            r.u16("n"),
            Err(MessageError::Truncated {
                field: "n",
                needed: 2,
                left: 1
            })
        );
    }

    #[test]
    fn writer_reader_round_trip() {
        let bytes = Writer::new()
            .u8(1)
            .u16(2)
            .u64(3)
            .str("é")
            .bytes(b"xyz")
            .finish();
        let mut r = Reader::new(&bytes);
        assert_eq!(r.u8("a"), Ok(1));
        assert_eq!(r.u16("b"), Ok(2));
        assert_eq!(r.u64("c"), Ok(3));
        assert_eq!(r.str("d", 0, 10), Ok("é"));
        assert_eq!(r.bytes("e", 10), Ok(&b"xyz"[..]));
        assert_eq!(r.end(Kind::Ping), Ok(()));
    }
}
