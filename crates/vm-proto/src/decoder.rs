//! The resynchronising frame decoder.
//!
//! A reader of a virtio-serial port (or of QEMU's socket for it) can see the tail of a frame
//! from a peer that restarted, or a guest that migrated, in the middle of a write. The decoder
//! therefore never trusts a position in the stream: it looks for [`MAGIC`], accepts a header
//! only if its CRC matches and its fields are valid, and a frame only if its payload CRC
//! matches. After any violation it drops one byte and searches for the next magic, so a frame
//! that follows a torn one is still found.
//!
//! Contract, for [`Decoder`]:
//! - [`Decoder::next_frame`] returns `Some(Ok(frame))` for each sound frame, in stream order,
//!   and `None` when it needs more bytes.
//! - It returns `Some(Err(e))` once per violation, after having already resynchronised: the
//!   caller logs the error and keeps calling. The bytes discarded while searching for the next
//!   frame after a violation are part of that violation, not a second error. Bytes discarded
//!   otherwise form one [`DecodeError::Garbage`] per contiguous run, reported when the run ends,
//!   or every [`MAX_FRAME`] bytes if a peer streams nothing but garbage.
//! - After `next_frame` has returned `None`, at most [`MAX_FRAME`] − 1 bytes stay buffered
//!   (a partial frame, a partial header, or up to 3 bytes that may start a magic); while
//!   searching for a magic only those 3 bytes are kept. Between two `next_frame() == None` the
//!   buffer therefore holds at most `MAX_FRAME` plus the size of the one chunk fed.
//! - A partial frame whose remainder never comes (the writer died mid-frame) would hold back
//!   the frames behind it. At end of stream use [`Decoder::next_frame_eof`]; on a live stream
//!   that has been silent with bytes buffered for longer than a writer needs to finish a frame,
//!   call [`Decoder::abandon_partial`].
//!
//! Cost bound: every received byte is run through CRC-32C at most once for payload checks (a
//! running register with checkpoints, see `RunningCrc`), plus 24 bytes per candidate header
//! and fewer than 32 per candidate payload; magics cannot overlap, so candidates are at least
//! 4 bytes apart. Whatever a peer sends, the decoder checksums at most ~15 bytes per byte
//! received (about 3 for a stream of valid-looking headers that all claim 64 KiB, which used to
//! cost ~2,300); [`Decoder::checksummed_bytes`] counts it.

use std::collections::VecDeque;

use crate::{
    crc32c::{self, crc32c},
    frame::{
        Frame, HEADER_LEN, Header, Kind, MAGIC, MAX_FRAME, MAX_PAYLOAD, MAX_VERSION, MIN_VERSION,
    },
};

/// A protocol violation found in the byte stream. Each is reported once, after the decoder has
/// already skipped to the next possible frame start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Bytes that do not start a frame were skipped.
    #[error("skipped {skipped} bytes that do not start a frame")]
    Garbage {
        /// How many bytes were discarded in this run.
        skipped: usize,
    },
    /// The header checksum does not match bytes 0..24 of the header.
    #[error(
        "frame header checksum mismatch: header says {received:#010x}, bytes give {computed:#010x}"
    )]
    HeaderChecksum {
        /// The checksum carried in the header.
        received: u32,
        /// The checksum of the header bytes as received.
        computed: u32,
    },
    /// The header's version field is not one this crate speaks ([`MIN_VERSION`] to
    /// [`MAX_VERSION`]).
    #[error(
        "frame version {0} is not supported (this side speaks versions {MIN_VERSION} to \
         {MAX_VERSION})"
    )]
    UnsupportedVersion(u8),
    /// The header's flags field is not 0.
    #[error("frame flags {0:#06x} are not allowed (version 1 requires 0)")]
    Flags(u16),
    /// The header announces a payload longer than [`MAX_PAYLOAD`].
    #[error("frame payload length {len} exceeds the maximum of {max}")]
    TooLong {
        /// The announced length.
        len: u32,
        /// [`MAX_PAYLOAD`].
        max: u32,
    },
    /// The payload checksum does not match (the header was sound).
    #[error(
        "payload checksum mismatch in a {kind} frame (id {id}, {len} bytes): header says \
         {received:#010x}, bytes give {computed:#010x}"
    )]
    PayloadChecksum {
        /// Kind named by the header.
        kind: Kind,
        /// Id named by the header.
        id: u64,
        /// Payload length named by the header.
        len: usize,
        /// The checksum carried in the header.
        received: u32,
        /// The checksum of the payload bytes as received.
        computed: u32,
    },
    /// The stream ended, or stalled, inside a frame.
    #[error("the stream ended or stalled inside a frame ({buffered} bytes of it received)")]
    Truncated {
        /// How many bytes of the incomplete frame had arrived.
        buffered: usize,
    },
}

/// Parses and validates a complete header. The checksum is checked first: until it matches,
/// none of the other fields mean anything.
fn parse_header(bytes: &[u8; HEADER_LEN]) -> Result<Header, DecodeError> {
    let be32 =
        |at: usize| u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let received = be32(24);
    let computed = crc32c(&bytes[..24]);
    if received != computed {
        return Err(DecodeError::HeaderChecksum { received, computed });
    }
    // Any version this side speaks: a frame says which encoding its payload is in, so frames
    // of either version decode unambiguously (senders use version 2 only towards peers whose
    // Hello offered it).
    let version = bytes[4];
    if !(MIN_VERSION..=MAX_VERSION).contains(&version) {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    let flags = u16::from_be_bytes([bytes[6], bytes[7]]);
    if flags != 0 {
        return Err(DecodeError::Flags(flags));
    }
    let len = be32(16);
    // MAX_PAYLOAD fits in u32 (65536).
    let max = u32::try_from(MAX_PAYLOAD).unwrap_or(u32::MAX);
    if len > max {
        return Err(DecodeError::TooLong { len, max });
    }
    let mut id = [0u8; 8];
    id.copy_from_slice(&bytes[8..16]);
    Ok(Header {
        version,
        kind: Kind::from_u8(bytes[5]),
        id: u64::from_be_bytes(id),
        // len <= MAX_PAYLOAD, so it fits any usize this code runs on.
        len: usize::try_from(len).unwrap_or(usize::MAX),
        payload_crc: be32(20),
    })
}

/// Index of the first position where a frame could start: where [`MAGIC`] begins, or where
/// the buffer ends with a proper prefix of it. `buf.len()` if there is none.
fn magic_candidate(buf: &[u8]) -> usize {
    let mut from = 0;
    while let Some(offset) = buf
        .get(from..)
        .and_then(|s| s.iter().position(|&b| b == MAGIC[0]))
    {
        let at = from + offset;
        let tail = buf.get(at..).unwrap_or_default();
        let n = tail.len().min(MAGIC.len());
        if tail.get(..n) == MAGIC.get(..n) {
            return at;
        }
        from = at + 1;
    }
    buf.len()
}

/// Garbage runs are reported at least this often, so that a peer streaming junk shows up in
/// the log (once per this many bytes) rather than never.
const GARBAGE_REPORT_EVERY: usize = MAX_FRAME;

/// Distance in bytes between two checkpoints of the running payload register (see
/// [`RunningCrc`]). It must not exceed [`HEADER_LEN`]: a payload starts `HEADER_LEN` bytes
/// after a magic at or after the first unconsumed byte, so a checkpoint at or after that byte
/// (the only ones whose bytes are still buffered) is always found at or before it.
const CHECKPOINT_EVERY: usize = 16;
const _: () = assert!(CHECKPOINT_EVERY <= HEADER_LEN);

/// Checkpoints of one running CRC register over the received bytes, from which the CRC of any
/// span of them follows in two multiplications ([`crc32c::span`]).
///
/// Why: a candidate frame is only checked once its whole claimed payload has arrived, and a
/// rejected candidate is followed by a search for the next magic one byte later — which may
/// lie inside the payload just checked. A peer that packs valid-looking headers claiming 64 KiB
/// every 28 bytes therefore used to make the receiver checksum the same 64 KiB again for every
/// header, ~2,300 bytes hashed per byte received (docs/protocol.md §4). With the running
/// register every received byte is folded in once; each candidate then costs its two ends
/// (less than `CHECKPOINT_EVERY` bytes each) and two multiplications, whatever its length.
#[derive(Debug, Default, Clone)]
struct RunningCrc {
    /// Stream offset of the byte at which `states[0]` stands.
    start: u64,
    /// `states[k]`: the register (as [`crc32c::update`] keeps it, started from 0) after the
    /// bytes from `start` up to `start + k × CHECKPOINT_EVERY`.
    states: VecDeque<u32>,
}

/// `n` as a buffer index (stream distances within one buffer always fit).
fn index(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

impl RunningCrc {
    /// CRC-32C of `buf[a..b]`, where `buf[0]` is at stream offset `offset`. Adds the bytes it
    /// runs through the CRC to `*hashed`.
    fn crc(&mut self, buf: &[u8], offset: u64, a: usize, b: usize, hashed: &mut u64) -> u32 {
        let step = CHECKPOINT_EVERY as u64;
        // Checkpoints before the first buffered byte cannot be extended: their bytes are gone.
        while self.start < offset && !self.states.is_empty() {
            self.states.pop_front();
            self.start += step;
        }
        let (abs_a, abs_b) = (offset + a as u64, offset + b as u64);
        if self.states.is_empty() || self.start > abs_a {
            // Nothing usable before `a` (everything folded in so far has been consumed; see
            // CHECKPOINT_EVERY for why this never happens while a resync is under way).
            self.states.clear();
            self.start = abs_a;
            self.states.push_back(0);
        }
        // Fold in the bytes not folded in yet, up to `b`, one checkpoint at a time.
        while let Some(&last) = self.states.back() {
            let from = self.start + (self.states.len() as u64 - 1) * step;
            let to = from + step;
            if to > abs_b {
                break;
            }
            let Some(bytes) = buf.get(index(from - offset)..index(to - offset)) else {
                break;
            };
            *hashed += step;
            self.states.push_back(crc32c::update(last, bytes));
        }
        let mut register_at = |pos: u64| -> u32 {
            let k = (pos - self.start) / step;
            let at = self.start + k * step;
            let state = self.states.get(index(k)).copied().unwrap_or_default();
            let rest = buf
                .get(index(at - offset)..index(pos - offset))
                .unwrap_or_default();
            *hashed += rest.len() as u64;
            crc32c::update(state, rest)
        };
        let before = register_at(abs_a);
        let after = register_at(abs_b);
        crc32c::span(before, after, b - a)
    }
}

/// The decoding state machine, apart from the buffer the [`Decoder`] owns. Each call looks at
/// the unconsumed bytes and says how many of them it consumed; the caller must consume exactly
/// that many.
#[derive(Debug, Default, Clone)]
pub(crate) struct Scanner {
    /// Bytes skipped in the current run that have not been reported yet.
    garbage: usize,
    /// The current skip run follows a reported violation: its bytes belong to that error.
    quiet: bool,
    /// Stream offset of the first unconsumed byte.
    offset: u64,
    /// Payload checksums without re-reading bytes (see [`RunningCrc`]).
    running: RunningCrc,
    /// The header at this stream offset, already checked: a header waiting for its payload is
    /// parsed once, not again on every call while the payload trickles in.
    parsed: Option<(u64, Header)>,
    /// Bytes run through CRC-32C so far (headers and payloads).
    checksummed: u64,
}

impl Scanner {
    /// Ends the current skip run: returns the error to report for it, if any.
    fn end_run(&mut self) -> Option<DecodeError> {
        let skipped = std::mem::take(&mut self.garbage);
        let quiet = std::mem::take(&mut self.quiet);
        (skipped > 0 && !quiet).then_some(DecodeError::Garbage { skipped })
    }

    /// Bytes run through CRC-32C so far: the decoding work, bounded by a small multiple of
    /// the bytes received whatever they are.
    pub(crate) fn checksummed(&self) -> u64 {
        self.checksummed
    }

    /// One decoding step on the unconsumed bytes `buf`: returns how many bytes to consume and
    /// the item found, `None` meaning "need more bytes".
    pub(crate) fn step(&mut self, buf: &[u8]) -> (usize, Option<Result<Frame, DecodeError>>) {
        let (consumed, item) = self.step_inner(buf);
        self.offset += consumed as u64;
        (consumed, item)
    }

    fn step_inner(&mut self, buf: &[u8]) -> (usize, Option<Result<Frame, DecodeError>>) {
        let start = magic_candidate(buf);
        self.garbage = self.garbage.saturating_add(start);
        let rest = buf.get(start..).unwrap_or_default();
        if self.garbage >= GARBAGE_REPORT_EVERY {
            let skipped = std::mem::take(&mut self.garbage);
            self.quiet = false;
            return (start, Some(Err(DecodeError::Garbage { skipped })));
        }
        if rest.len() < MAGIC.len() {
            // Nothing, or a proper prefix of the magic: wait for the bytes that decide.
            return (start, None);
        }
        // A complete magic: the skip run, if any, ends here.
        if let Some(error) = self.end_run() {
            return (start, Some(Err(error)));
        }
        let Some(header_bytes) = rest.first_chunk::<HEADER_LEN>() else {
            return (start, None);
        };
        let at = self.offset + start as u64;
        let header = match self.parsed {
            Some((offset, header)) if offset == at => header,
            _ => {
                self.checksummed += 24;
                match parse_header(header_bytes) {
                    Ok(header) => {
                        self.parsed = Some((at, header));
                        header
                    }
                    Err(error) => return (start + 1, Some(Err(self.violation(error)))),
                }
            }
        };
        let total = HEADER_LEN + header.len;
        if rest.len() < total {
            return (start, None);
        }
        let computed = self.running.crc(
            buf,
            self.offset,
            start + HEADER_LEN,
            start + total,
            &mut self.checksummed,
        );
        if computed != header.payload_crc {
            let error = DecodeError::PayloadChecksum {
                kind: header.kind,
                id: header.id,
                len: header.len,
                received: header.payload_crc,
                computed,
            };
            // Only the first byte is dropped, not the claimed frame: the header may belong to
            // a frame its writer never finished, and the next real frame can start inside
            // its "payload". Looking there again is cheap (see RunningCrc).
            return (start + 1, Some(Err(self.violation(error))));
        }
        let payload = rest.get(HEADER_LEN..total).unwrap_or_default();
        let frame = Frame::from_checked(header.version, header.kind, header.id, payload.to_vec());
        (start + total, Some(Ok(frame)))
    }

    /// Records that a violation was reported at the current position: the caller drops its
    /// first byte, and the search that follows is part of it.
    fn violation(&mut self, error: DecodeError) -> DecodeError {
        self.quiet = true;
        error
    }

    /// Gives up on whatever [`Scanner::step`] was waiting for in `buf`: an incomplete frame
    /// becomes [`DecodeError::Truncated`] (its first byte is consumed, and decoding resumes
    /// after it); a trailing partial magic and any unreported skipped bytes become
    /// [`DecodeError::Garbage`]. Returns how many bytes to consume and the error, `None`
    /// when there was nothing to give up.
    pub(crate) fn abandon(&mut self, buf: &[u8]) -> (usize, Option<DecodeError>) {
        let (consumed, error) = self.abandon_inner(buf);
        self.offset += consumed as u64;
        (consumed, error)
    }

    fn abandon_inner(&mut self, buf: &[u8]) -> (usize, Option<DecodeError>) {
        let start = magic_candidate(buf);
        self.garbage = self.garbage.saturating_add(start);
        let rest = buf.len() - start;
        if rest >= MAGIC.len() {
            if let Some(error) = self.end_run() {
                return (start, Some(error));
            }
            return (
                start + 1,
                Some(self.violation(DecodeError::Truncated { buffered: rest })),
            );
        }
        self.garbage = self.garbage.saturating_add(rest);
        (buf.len(), self.end_run())
    }
}

/// The resynchronising decoder over an owned buffer. See the module documentation for the
/// contract; typical use on a blocking stream:
///
/// ```
/// # use vm_proto::{Decoder, Kind, Frame};
/// # let wire = Frame::new(Kind::Ping, 7, Vec::new()).unwrap().to_bytes();
/// let mut decoder = Decoder::new();
/// for chunk in wire.chunks(5) {
///     decoder.feed(chunk);
///     while let Some(item) = decoder.next_frame() {
///         match item {
///             Ok(frame) => assert_eq!(frame.id(), 7),
///             Err(violation) => eprintln!("peer: {violation}"), // log and keep going
///         }
///     }
/// }
/// // End of stream: flush what is left (frames held back by a torn one, then errors).
/// while let Some(item) = decoder.next_frame_eof() {
///     let _ = item;
/// }
/// assert_eq!(decoder.buffered_len(), 0);
/// ```
#[derive(Debug, Default, Clone)]
pub struct Decoder {
    /// Received bytes; those before `pos` are consumed. Compacted on every `feed`, so that
    /// consuming many small frames from one large chunk is not quadratic.
    buf: Vec<u8>,
    pos: usize,
    scanner: Scanner,
}

impl Decoder {
    /// An empty decoder.
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// Appends received bytes. Call [`Decoder::next_frame`] until it returns `None` before the
    /// next `feed`, so that the buffer stays within `MAX_FRAME` plus one chunk.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        // Give back the memory of an unusually large chunk once it has been consumed.
        if self.buf.capacity() > 2 * MAX_FRAME && self.buf.len() + bytes.len() <= MAX_FRAME {
            self.buf.shrink_to(MAX_FRAME);
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next frame or violation, `None` when more bytes are needed.
    pub fn next_frame(&mut self) -> Option<Result<Frame, DecodeError>> {
        let (consumed, item) = self
            .scanner
            .step(self.buf.get(self.pos..).unwrap_or_default());
        self.consume(consumed);
        item
    }

    /// [`Decoder::next_frame`] in the shape of `tokio_util`'s `Decoder::decode`: `Ok(None)`
    /// means "need more bytes". Unlike there, an `Err` does not end the stream: the decoder has
    /// already resynchronised, so log it and call again.
    pub fn decode(&mut self) -> Result<Option<Frame>, DecodeError> {
        self.next_frame().transpose()
    }

    /// Like [`Decoder::next_frame`], for when the stream has ended: instead of waiting for
    /// bytes that will not come, it reports an incomplete frame as
    /// [`DecodeError::Truncated`] and goes on decoding after its first byte (so frames held
    /// back behind it are still returned). Returns `None` only once the buffer is empty.
    pub fn next_frame_eof(&mut self) -> Option<Result<Frame, DecodeError>> {
        self.next_frame()
            .or_else(|| self.abandon_partial().map(Err))
    }

    /// Only meaningful once [`Decoder::next_frame`] has returned `None` (otherwise the frame at
    /// the front may be complete). For a live stream that has stalled with bytes buffered (no byte arrived for longer than
    /// a writer needs to finish a frame): gives up on the incomplete frame (or partial magic)
    /// at the front, reporting it, so that [`Decoder::next_frame`] can look for frames behind
    /// it. Returns `None` if nothing was pending. Call `next_frame` until `None` afterwards.
    pub fn abandon_partial(&mut self) -> Option<DecodeError> {
        let (consumed, error) = self
            .scanner
            .abandon(self.buf.get(self.pos..).unwrap_or_default());
        self.consume(consumed);
        error
    }

    /// Bytes run through CRC-32C by this decoder so far: its decoding work (see the module
    /// documentation for the bound per byte received).
    pub fn checksummed_bytes(&self) -> u64 {
        self.scanner.checksummed()
    }

    /// Bytes received and not yet consumed (for tests and for the caller's stall detection).
    pub fn buffered_len(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.buf.len());
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: Kind, id: u64, payload: &[u8]) -> Vec<u8> {
        Frame::new(kind, id, payload.to_vec()).unwrap().to_bytes()
    }

    /// Everything `next_frame` yields for `input` fed at once, then flushed as at EOF.
    fn decode_all(input: &[u8]) -> Vec<Result<Frame, DecodeError>> {
        let mut decoder = Decoder::new();
        decoder.feed(input);
        let mut out = Vec::new();
        while let Some(item) = decoder.next_frame_eof() {
            out.push(item);
        }
        out
    }

    /// A header with a correct header CRC but chosen field values.
    fn raw_header(
        version: u8,
        kind: u8,
        flags: u16,
        id: u64,
        len: u32,
        payload_crc: u32,
    ) -> Vec<u8> {
        let mut h = MAGIC.to_vec();
        h.push(version);
        h.push(kind);
        h.extend_from_slice(&flags.to_be_bytes());
        h.extend_from_slice(&id.to_be_bytes());
        h.extend_from_slice(&len.to_be_bytes());
        h.extend_from_slice(&payload_crc.to_be_bytes());
        let crc = crc32c(&h);
        h.extend_from_slice(&crc.to_be_bytes());
        h
    }

    #[test]
    fn frames_in_order() {
        let mut input = frame(Kind::Ping, 1, b"");
        input.extend(frame(Kind::Reply, 2, b"hello"));
        let out = decode_all(&input);
        assert_eq!(
            out,
            vec![
                Ok(Frame::new(Kind::Ping, 1, vec![]).unwrap()),
                Ok(Frame::new(Kind::Reply, 2, b"hello".to_vec()).unwrap()),
            ]
        );
    }

    #[test]
    fn decode_is_next_frame_transposed() {
        let mut decoder = Decoder::new();
        decoder.feed(b"xVMC\x01");
        // A complete magic ends the garbage run, before the rest of the header is there.
        assert_eq!(decoder.decode(), Err(DecodeError::Garbage { skipped: 1 }));
        assert_eq!(decoder.decode(), Ok(None));
        decoder.feed(&frame(Kind::Ping, 1, b"")[4..]);
        assert_eq!(
            decoder.decode(),
            Ok(Some(Frame::new(Kind::Ping, 1, vec![]).unwrap()))
        );
        assert_eq!(decoder.decode(), Ok(None));
    }

    #[test]
    fn byte_at_a_time() {
        let input = frame(Kind::Reply, 2, b"hello");
        let mut decoder = Decoder::new();
        for (i, b) in input.iter().enumerate() {
            decoder.feed(&[*b]);
            let item = decoder.next_frame();
            if i + 1 < input.len() {
                assert_eq!(item, None, "at byte {i}");
            } else {
                assert_eq!(
                    item,
                    Some(Ok(Frame::new(Kind::Reply, 2, b"hello".to_vec()).unwrap()))
                );
            }
        }
        assert_eq!(decoder.buffered_len(), 0);
    }

    #[test]
    fn bad_magic_is_one_garbage_error_per_run() {
        let mut input = b"junk!".to_vec();
        input.extend(frame(Kind::Ping, 1, b""));
        input.extend(b"VMC\x02VM"); // almost-magic, then a prefix
        input.extend(frame(Kind::Ping, 2, b""));
        let out = decode_all(&input);
        assert_eq!(
            out,
            vec![
                Err(DecodeError::Garbage { skipped: 5 }),
                Ok(Frame::new(Kind::Ping, 1, vec![]).unwrap()),
                Err(DecodeError::Garbage { skipped: 6 }),
                Ok(Frame::new(Kind::Ping, 2, vec![]).unwrap()),
            ]
        );
    }

    #[test]
    fn garbage_fed_byte_by_byte_is_still_one_error() {
        let mut decoder = Decoder::new();
        for b in b"xxVxxVMxx" {
            decoder.feed(&[*b]);
            assert_eq!(decoder.next_frame(), None);
        }
        decoder.feed(&frame(Kind::Ping, 3, b""));
        assert_eq!(
            decoder.next_frame(),
            Some(Err(DecodeError::Garbage { skipped: 9 }))
        );
        assert_eq!(
            decoder.next_frame(),
            Some(Ok(Frame::new(Kind::Ping, 3, vec![]).unwrap()))
        );
        assert_eq!(decoder.next_frame(), None);
    }

    #[test]
    fn trailing_garbage_and_partial_magic_reported_at_eof() {
        assert_eq!(
            decode_all(b"abcVM"),
            vec![Err(DecodeError::Garbage { skipped: 5 })]
        );
        assert_eq!(decode_all(b""), vec![]);
    }

    #[test]
    fn header_checksum_mismatch() {
        let mut bad = frame(Kind::Ping, 1, b"");
        bad[9] ^= 0x40; // id byte
        let mut input = bad.clone();
        input.extend(frame(Kind::Ping, 2, b""));
        let out = decode_all(&input);
        assert!(
            matches!(out[0], Err(DecodeError::HeaderChecksum { .. })),
            "{out:?}"
        );
        // The rest of the bad frame is part of that one error, not a second one.
        assert_eq!(out[1..], [Ok(Frame::new(Kind::Ping, 2, vec![]).unwrap())]);
        assert_eq!(out.len(), 2);
        let Err(DecodeError::HeaderChecksum { received, computed }) = out[0] else {
            unreachable!()
        };
        assert_eq!(
            received,
            u32::from_be_bytes(bad[24..28].try_into().unwrap())
        );
        assert_eq!(computed, crc32c(&bad[..24]));
    }

    #[test]
    fn unsupported_version() {
        // (version 2 is spoken since the deadline was added: 3 is the first unknown one)
        let mut input = raw_header(3, 0x02, 0, 1, 0, 0);
        input.extend(frame(Kind::Ping, 2, b""));
        assert_eq!(
            decode_all(&input),
            vec![
                Err(DecodeError::UnsupportedVersion(3)),
                Ok(Frame::new(Kind::Ping, 2, vec![]).unwrap()),
            ]
        );
        let mut input = raw_header(0, 0x02, 0, 1, 0, 0);
        input.extend(frame(Kind::Ping, 2, b""));
        assert_eq!(
            decode_all(&input)[0],
            Err(DecodeError::UnsupportedVersion(0))
        );
    }

    #[test]
    fn both_versions_decode_and_keep_their_version() {
        let mut input = raw_header(2, 0x02, 0, 1, 0, 0);
        input.extend(frame(Kind::Ping, 2, b""));
        let out = decode_all(&input);
        let versions: Vec<u8> = out.iter().map(|f| f.as_ref().unwrap().version()).collect();
        assert_eq!(versions, [2, 1]);
        // a frame re-encodes with its own version
        let first = out[0].as_ref().unwrap();
        assert_eq!(first.to_bytes(), input[..HEADER_LEN]);
    }

    #[test]
    fn nonzero_flags() {
        let mut input = raw_header(1, 0x02, 0x8000, 1, 0, 0);
        input.extend(frame(Kind::Ping, 2, b""));
        assert_eq!(
            decode_all(&input),
            vec![
                Err(DecodeError::Flags(0x8000)),
                Ok(Frame::new(Kind::Ping, 2, vec![]).unwrap())
            ]
        );
    }

    #[test]
    fn too_long_is_rejected_before_buffering() {
        let mut decoder = Decoder::new();
        decoder.feed(&raw_header(1, 0x04, 0, 1, 65537, 0));
        assert_eq!(
            decoder.next_frame(),
            Some(Err(DecodeError::TooLong {
                len: 65537,
                max: 65536
            }))
        );
        assert_eq!(decoder.next_frame(), None);
        assert_eq!(decoder.buffered_len(), 0);
        // u32::MAX does not overflow anything either.
        decoder.feed(&raw_header(1, 0x04, 0, 1, u32::MAX, 0));
        assert_eq!(
            decoder.next_frame(),
            Some(Err(DecodeError::TooLong {
                len: u32::MAX,
                max: 65536
            }))
        );
    }

    #[test]
    fn max_payload_is_accepted() {
        let payload = vec![0xAB; MAX_PAYLOAD];
        let out = decode_all(&frame(Kind::Reply, 5, &payload));
        assert_eq!(out, vec![Ok(Frame::new(Kind::Reply, 5, payload).unwrap())]);
    }

    #[test]
    fn payload_checksum_mismatch() {
        let mut bad = frame(Kind::Reply, 9, b"payload");
        let last = bad.len() - 1;
        bad[last] ^= 1;
        let mut input = bad;
        input.extend(frame(Kind::Ping, 2, b""));
        let out = decode_all(&input);
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(
            matches!(
                out[0],
                Err(DecodeError::PayloadChecksum {
                    kind: Kind::Reply,
                    id: 9,
                    len: 7,
                    ..
                })
            ),
            "{out:?}"
        );
        assert_eq!(out[1], Ok(Frame::new(Kind::Ping, 2, vec![]).unwrap()));
    }

    #[test]
    fn torn_frame_followed_by_a_frame() {
        // A peer wrote 40 of a frame's bytes, restarted, and wrote a whole frame.
        let torn = frame(Kind::Reply, 1, &[7u8; 100]);
        let mut input = torn[..40].to_vec();
        input.extend(frame(Kind::Hello, 0, b"x"));
        // Live: the good frame is held back while the torn one waits for its payload.
        let mut decoder = Decoder::new();
        decoder.feed(&input);
        assert_eq!(decoder.next_frame(), None);
        assert_eq!(
            decoder.abandon_partial(),
            Some(DecodeError::Truncated {
                buffered: input.len()
            })
        );
        assert_eq!(
            decoder.next_frame(),
            Some(Ok(Frame::new(Kind::Hello, 0, b"x".to_vec()).unwrap()))
        );
        assert_eq!(decoder.next_frame(), None);
        assert_eq!(decoder.abandon_partial(), None);
        // When enough bytes follow, the payload checksum exposes it without help.
        let mut input = torn[..40].to_vec();
        for id in 1..=4 {
            input.extend(frame(Kind::Reply, id, &[1u8; 30]));
        }
        let out = decode_all(&input);
        assert!(
            matches!(out[0], Err(DecodeError::PayloadChecksum { .. })),
            "{out:?}"
        );
        let ids: Vec<u64> = out[1..].iter().map(|f| f.as_ref().unwrap().id()).collect();
        assert_eq!(ids, [1, 2, 3, 4]);
    }

    #[test]
    fn unknown_kind_is_a_frame() {
        let out = decode_all(&frame(Kind::Unknown(0x7F), 3, b"?"));
        assert_eq!(
            out,
            vec![Ok(
                Frame::new(Kind::Unknown(0x7F), 3, b"?".to_vec()).unwrap()
            )]
        );
    }

    #[test]
    fn garbage_stream_is_reported_periodically_and_memory_stays_bounded() {
        let mut decoder = Decoder::new();
        let chunk = [0x55u8; 4096];
        let mut reports = Vec::new();
        for _ in 0..100 {
            decoder.feed(&chunk);
            while let Some(item) = decoder.next_frame() {
                match item {
                    Err(DecodeError::Garbage { skipped }) => reports.push(skipped),
                    other => panic!("{other:?}"),
                }
            }
            assert!(decoder.buffered_len() <= 3);
        }
        // Reported in the first chunk at or past the threshold: 17 chunks of 4096 bytes.
        const _: () =
            assert!(17 * 4096 >= GARBAGE_REPORT_EVERY && 16 * 4096 < GARBAGE_REPORT_EVERY);
        assert_eq!(reports, vec![17 * 4096; 5]);
        assert_eq!(
            decoder.next_frame_eof(),
            Some(Err(DecodeError::Garbage { skipped: 15 * 4096 }))
        );
        assert_eq!(decoder.next_frame_eof(), None);
    }

    #[test]
    fn partial_frame_waits_within_bounds() {
        let mut decoder = Decoder::new();
        decoder.feed(&raw_header(1, 0x06, 0, 1, 65536, 0));
        for _ in 0..15 {
            decoder.feed(&[0u8; 4096]);
            assert_eq!(decoder.next_frame(), None);
        }
        assert!(decoder.buffered_len() < MAX_FRAME);
        decoder.feed(&[0u8; 4096]);
        assert!(matches!(
            decoder.next_frame(),
            Some(Err(DecodeError::PayloadChecksum { .. }))
        ));
        // The zeros that followed are garbage of that same violation; nothing else remains.
        assert_eq!(decoder.next_frame(), None);
        assert_eq!(decoder.next_frame_eof(), None);
    }

    /// The measured attack (issue 12): back-to-back headers with a sound header CRC, each
    /// claiming a 64 KiB payload. Every header is rejected once its "payload" (the headers
    /// after it) has arrived; the decoder must not checksum those 64 KiB again for each one.
    #[test]
    fn lying_headers_cost_a_few_checksummed_bytes_per_byte_received() {
        let header = raw_header(1, 0x04, 0, 1, 65536, 0x1234_5678);
        let mut decoder = Decoder::new();
        let mut fed = 0u64;
        let mut payload_errors = 0;
        let chunk: Vec<u8> = header.iter().copied().cycle().take(28 * 146).collect();
        for _ in 0..100 {
            decoder.feed(&chunk);
            fed += chunk.len() as u64;
            while let Some(item) = decoder.next_frame() {
                match item {
                    Err(DecodeError::PayloadChecksum { len: 65536, .. }) => payload_errors += 1,
                    other => panic!("{other:?}"),
                }
            }
        }
        // Every header whose 64 KiB have arrived was rejected...
        assert_eq!(payload_errors, (fed as usize - MAX_FRAME) / 28 + 1);
        // ...for about 3 bytes checksummed per byte received (it was ~2,300).
        let per_byte = decoder.checksummed_bytes() as f64 / fed as f64;
        assert!(
            per_byte < 4.0,
            "{per_byte} bytes checksummed per byte received"
        );
    }

    /// A payload folded into the running register before (as part of a rejected candidate's
    /// span) is still checked exactly when it turns out to be a frame of its own.
    #[test]
    fn frames_inside_a_rejected_payload_are_found_with_the_running_register() {
        let mut input = raw_header(1, 0x06, 0, 9, 2000, 0);
        let mut expected = Vec::new();
        for id in 1..=30u64 {
            let payload: Vec<u8> = (0..id * 7).map(|i| (i * 31 + id) as u8).collect();
            input.extend(frame(Kind::Reply, id, &payload));
            expected.push(Ok(Frame::new(Kind::Reply, id, payload).unwrap()));
        }
        input.extend(vec![0u8; 2000]);
        for chunk in [1, 5, 16, 17, 28, 29, 4096, input.len()] {
            let mut decoder = Decoder::new();
            let mut out = Vec::new();
            for part in input.chunks(chunk) {
                decoder.feed(part);
                while let Some(item) = decoder.next_frame() {
                    out.push(item);
                }
            }
            while let Some(item) = decoder.next_frame_eof() {
                out.push(item);
            }
            assert!(
                matches!(out[0], Err(DecodeError::PayloadChecksum { id: 9, .. })),
                "chunk {chunk}: {:?}",
                out[0]
            );
            let frames: Vec<_> = out[1..].iter().filter(|i| i.is_ok()).cloned().collect();
            assert_eq!(frames, expected, "chunk {chunk}");
        }
    }

    #[test]
    fn error_messages_say_what_was_received() {
        assert_eq!(
            DecodeError::TooLong {
                len: 70000,
                max: 65536
            }
            .to_string(),
            "frame payload length 70000 exceeds the maximum of 65536"
        );
        assert_eq!(
            DecodeError::UnsupportedVersion(3).to_string(),
            "frame version 3 is not supported (this side speaks versions 1 to 2)"
        );
        assert_eq!(
            DecodeError::Flags(1).to_string(),
            "frame flags 0x0001 are not allowed (version 1 requires 0)"
        );
        assert_eq!(
            DecodeError::Garbage { skipped: 3 }.to_string(),
            "skipped 3 bytes that do not start a frame"
        );
    }
}
