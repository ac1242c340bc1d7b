//! Property tests of the codec: messages round-trip; a stream decodes the same however it is
//! split; garbage, torn frames and corrupted frames between good frames never panic the
//! decoder, never produce a frame that was not on the wire, and never hide the good frames;
//! arbitrary input keeps the decoder's memory bounded and its checksum work per byte bounded;
//! and the decoder yields exactly what a naive one that checksums every candidate afresh
//! yields.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::{collection::vec, prelude::*};
use vm_proto::{
    Alive, DecodeError, Decoder, Deliver, ErrorCode, ErrorMsg, Frame, HEADER_LEN, Hello, Kind,
    MAGIC, MAX_FRAME, MAX_PAYLOAD, MAX_STREAM_WINDOW, MAX_TIMEOUT_MS, MAX_VERSION, MIN_VERSION,
    Message, Origin, OriginSource, Pong, Register, Reply, Request, Retry, RetryReason, Role,
    ServiceName, StatusPage, StatusQuery, StatusReply, StreamClose, StreamCloseReason,
    StreamCredit, StreamData, StreamExpose, StreamOpen, TimeoutMs, crc32c::crc32c,
};

/// The longest prefix of `s` within `max` bytes, cut at a character boundary.
fn cut(mut s: String, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s
}

fn text(max: usize) -> impl Strategy<Value = String> {
    any::<String>().prop_map(move |s| cut(s, max))
}

fn service() -> impl Strategy<Value = ServiceName> {
    "[a-z0-9_.-]{1,32}".prop_map(|s| ServiceName::new(s).unwrap())
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..300)
}

fn uuid() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
    ]
}

fn pick<T: Clone + std::fmt::Debug + 'static>(all: &'static [T]) -> impl Strategy<Value = T> {
    prop::sample::select(all)
}

/// No deadline (version 1) or one within its bounds (version 2).
fn deadline() -> impl Strategy<Value = Option<TimeoutMs>> {
    prop::option::of((1..=MAX_TIMEOUT_MS).prop_map(|ms| TimeoutMs::new(ms).unwrap()))
}

/// Arbitrary valid messages, built through the validating constructors.
fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (
            1u8..=255,
            any::<u8>(),
            pick(Role::ALL),
            any::<u64>(),
            text(64)
        )
            .prop_map(|(min, extra, role, session, software)| {
                let max = min.saturating_add(extra);
                Message::Hello(Hello::new(min, max, role, session, software).unwrap())
            }),
        Just(Message::Ping),
        (text(255), vec(service(), 0..=32))
            .prop_map(|(host, services)| Message::Pong(Pong::new(host, services).unwrap())),
        (service(), body(), deadline()).prop_map(|(service, body, t)| Message::Request(
            Request::new(service, body).unwrap().with_timeout(t)
        )),
        (
            "[^\u{0}]{1,40}",
            uuid(),
            pick(OriginSource::ALL),
            service(),
            body(),
            deadline()
        )
            .prop_map(|(domain, uuid, source, service, body, t)| {
                let origin = Origin::new(cut(domain, 255), uuid, source).unwrap();
                Message::Deliver(Deliver::new(origin, service, body).unwrap().with_timeout(t))
            }),
        body().prop_map(|body| Message::Reply(Reply::new(body).unwrap())),
        (pick(RetryReason::ALL), text(255))
            .prop_map(|(reason, detail)| Message::Retry(Retry::new(reason, detail).unwrap())),
        (pick(ErrorCode::ALL), text(1024))
            .prop_map(|(code, message)| Message::Error(ErrorMsg::new(code, message).unwrap())),
        service().prop_map(|service| Message::Register(Register::new(service))),
        Just(Message::Status),
        "[a-z0-9_.-]{1,40}".prop_map(|g| Message::StatusOf(StatusQuery::new(g).unwrap())),
        "[a-z0-9_.-]{0,40}".prop_map(|g| Message::StatusPage(StatusPage::new(g).unwrap())),
        text(300).prop_map(|json| Message::StatusReply(StatusReply::new(json).unwrap())),
        Just(Message::Cancel),
        Just(Message::Heartbeat),
        prop::sample::subsequence(CHECKS, 0..=CHECKS.len()).prop_map(|names| {
            Message::Alive(Alive::new(names.into_iter().map(str::to_owned).collect()).unwrap())
        }),
        (1..=MAX_STREAM_WINDOW).prop_map(|w| Message::StreamOpen(StreamOpen::new(w).unwrap())),
        vec(any::<u8>(), 1..300)
            .prop_map(|data| Message::StreamData(StreamData::new(data).unwrap())),
        (1..=MAX_STREAM_WINDOW).prop_map(|w| Message::StreamCredit(StreamCredit::new(w).unwrap())),
        (pick(StreamCloseReason::ALL), text(255)).prop_map(|(reason, detail)| {
            Message::StreamClose(StreamClose::truncated(reason, &detail))
        }),
        ("[^\u{0}]{1,40}", any::<u16>()).prop_map(|(domain, port)| {
            Message::StreamExpose(StreamExpose::new(cut(domain, 255), port).unwrap())
        }),
    ]
}

/// Health check names for [`Message::Alive`] (distinct, at most `MAX_FAILING_CHECKS` of them).
const CHECKS: &[&str] = &[
    "a",
    "db.service",
    "getty@tty1.service",
    "sys-dev\\x2dvda.device",
    "x:y",
    "check-db",
];

/// Arbitrary sound frames (either version, any kind byte, any id, small payloads).
fn frame() -> impl Strategy<Value = Frame> {
    (
        MIN_VERSION..=MAX_VERSION,
        any::<u8>(),
        any::<u64>(),
        vec(any::<u8>(), 0..200),
    )
        .prop_map(|(version, kind, id, payload)| {
            Frame::new(Kind::from_u8(kind), id, payload)
                .unwrap()
                .with_version(version)
                .unwrap()
        })
}

/// A header whose header CRC is right but whose payload will not match: the decoder waits
/// for `len` bytes and then rejects them.
fn lying_header(kind: u8, id: u64, len: u32, payload_crc: u32) -> Vec<u8> {
    let mut h = MAGIC.to_vec();
    h.extend_from_slice(&[1, kind, 0, 0]);
    h.extend_from_slice(&id.to_be_bytes());
    h.extend_from_slice(&len.to_be_bytes());
    h.extend_from_slice(&payload_crc.to_be_bytes());
    let crc = crc32c(&h);
    h.extend_from_slice(&crc.to_be_bytes());
    h
}

/// Things a reader of a character device sees between frames: random bytes, magic and
/// partial magic, the head of a frame whose writer died, a frame with one byte corrupted,
/// and a sound header announcing a payload that never matches.
fn garbage_piece() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        vec(any::<u8>(), 0..64),
        Just(MAGIC.to_vec()),
        (1usize..4).prop_map(|n| MAGIC[..n].to_vec()),
        (frame(), any::<prop::sample::Index>()).prop_map(|(f, at)| {
            let bytes = f.to_bytes();
            let keep = 1 + at.index(bytes.len() - 1);
            bytes[..keep].to_vec()
        }),
        (frame(), any::<prop::sample::Index>(), 1u8..=255).prop_map(|(f, at, flip)| {
            let mut bytes = f.to_bytes();
            let i = at.index(bytes.len());
            bytes[i] ^= flip;
            bytes
        }),
        (
            any::<u8>(),
            any::<u64>(),
            0..=MAX_PAYLOAD as u32,
            any::<u32>()
        )
            .prop_map(|(kind, id, len, crc)| lying_header(kind, id, len, crc)),
    ]
}

fn garbage() -> impl Strategy<Value = Vec<u8>> {
    vec(garbage_piece(), 0..4).prop_map(|pieces| pieces.concat())
}

/// Cuts `input` into chunks at the given (arbitrary) points.
fn chunks<'a>(input: &'a [u8], cuts: &[prop::sample::Index]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c.index(input.len() + 1)).collect();
    points.push(0);
    points.push(input.len());
    points.sort_unstable();
    points.windows(2).map(|w| &input[w[0]..w[1]]).collect()
}

/// Feeds the chunks, draining after each, then flushes as at end of stream. Checks the memory
/// bound at every step. Returns the frames and the number of errors.
fn decode_chunks(parts: &[&[u8]]) -> (Vec<Frame>, usize) {
    let mut decoder = Decoder::new();
    let mut frames = Vec::new();
    let mut errors = 0;
    let mut take = |item: Result<Frame, vm_proto::DecodeError>| match item {
        Ok(frame) => frames.push(frame),
        Err(_) => errors += 1,
    };
    for part in parts {
        decoder.feed(part);
        assert!(decoder.buffered_len() <= MAX_FRAME + part.len());
        while let Some(item) = decoder.next_frame() {
            take(item);
        }
        assert!(decoder.buffered_len() < MAX_FRAME);
    }
    while let Some(item) = decoder.next_frame_eof() {
        take(item);
    }
    assert_eq!(decoder.buffered_len(), 0);
    (frames, errors)
}

/// The decoder as it was before its payload checks used a running register: it checksums
/// every candidate's payload afresh. Same rules, naive cost; the reference the decoder must
/// agree with item for item.
#[derive(Default)]
struct NaiveDecoder {
    buf: Vec<u8>,
    garbage: usize,
    quiet: bool,
}

impl NaiveDecoder {
    fn magic_candidate(buf: &[u8]) -> usize {
        (0..buf.len())
            .find(|&at| {
                let n = (buf.len() - at).min(MAGIC.len());
                buf[at..at + n] == MAGIC[..n]
            })
            .unwrap_or(buf.len())
    }

    fn end_run(&mut self) -> Option<DecodeError> {
        let skipped = std::mem::take(&mut self.garbage);
        let quiet = std::mem::take(&mut self.quiet);
        (skipped > 0 && !quiet).then_some(DecodeError::Garbage { skipped })
    }

    fn step(&mut self) -> (usize, Option<Result<Frame, DecodeError>>) {
        let buf = self.buf.clone(); // (a test: simplicity over copies)
        let start = Self::magic_candidate(&buf);
        self.garbage += start;
        let rest = &buf[start..];
        if self.garbage >= MAX_FRAME {
            let skipped = std::mem::take(&mut self.garbage);
            self.quiet = false;
            return (start, Some(Err(DecodeError::Garbage { skipped })));
        }
        if rest.len() < MAGIC.len() {
            return (start, None);
        }
        if let Some(e) = self.end_run() {
            return (start, Some(Err(e)));
        }
        if rest.len() < HEADER_LEN {
            return (start, None);
        }
        let be32 = |at: usize| u32::from_be_bytes(rest[at..at + 4].try_into().unwrap());
        let (received, computed) = (be32(24), crc32c(&rest[..24]));
        let error = if received != computed {
            Some(DecodeError::HeaderChecksum { received, computed })
        } else if !(MIN_VERSION..=MAX_VERSION).contains(&rest[4]) {
            Some(DecodeError::UnsupportedVersion(rest[4]))
        } else if rest[6..8] != [0, 0] {
            Some(DecodeError::Flags(u16::from_be_bytes([rest[6], rest[7]])))
        } else if be32(16) > MAX_PAYLOAD as u32 {
            Some(DecodeError::TooLong {
                len: be32(16),
                max: MAX_PAYLOAD as u32,
            })
        } else {
            None
        };
        if let Some(e) = error {
            self.quiet = true;
            return (start + 1, Some(Err(e)));
        }
        let (kind, len) = (Kind::from_u8(rest[5]), be32(16) as usize);
        let id = u64::from_be_bytes(rest[8..16].try_into().unwrap());
        if rest.len() < HEADER_LEN + len {
            return (start, None);
        }
        let payload = &rest[HEADER_LEN..HEADER_LEN + len];
        let computed = crc32c(payload);
        if computed != be32(20) {
            self.quiet = true;
            let e = DecodeError::PayloadChecksum {
                kind,
                id,
                len,
                received: be32(20),
                computed,
            };
            return (start + 1, Some(Err(e)));
        }
        let frame = Frame::new(kind, id, payload.to_vec())
            .unwrap()
            .with_version(rest[4])
            .unwrap();
        (start + HEADER_LEN + len, Some(Ok(frame)))
    }

    fn abandon(&mut self) -> Option<DecodeError> {
        let start = Self::magic_candidate(&self.buf);
        self.garbage += start;
        let rest = self.buf.len() - start;
        if rest >= MAGIC.len() {
            if let Some(e) = self.end_run() {
                self.buf.drain(..start);
                return Some(e);
            }
            self.buf.drain(..start + 1);
            self.quiet = true;
            return Some(DecodeError::Truncated { buffered: rest });
        }
        self.garbage += rest;
        self.buf.clear();
        self.end_run()
    }

    fn next_frame(&mut self) -> Option<Result<Frame, DecodeError>> {
        let (consumed, item) = self.step();
        self.buf.drain(..consumed);
        item
    }
}

type Items = Vec<Result<Frame, DecodeError>>;

/// Everything both decoders yield for the chunks, fed alike, with a stall (`abandon_partial`)
/// after the chunks marked in `stalls`, then end of stream.
fn decode_both(parts: &[&[u8]], stalls: &[bool]) -> (Items, Items) {
    let (mut real, mut naive) = (Decoder::new(), NaiveDecoder::default());
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for (i, part) in parts.iter().enumerate() {
        real.feed(part);
        naive.buf.extend_from_slice(part);
        a.extend(std::iter::from_fn(|| real.next_frame()));
        b.extend(std::iter::from_fn(|| naive.next_frame()));
        if stalls.get(i).copied().unwrap_or(false) {
            a.extend(real.abandon_partial().map(Err));
            b.extend(naive.abandon().map(Err));
            a.extend(std::iter::from_fn(|| real.next_frame()));
            b.extend(std::iter::from_fn(|| naive.next_frame()));
        }
    }
    a.extend(std::iter::from_fn(|| real.next_frame_eof()));
    loop {
        if let Some(item) = naive.next_frame() {
            b.push(item);
        } else if let Some(e) = naive.abandon() {
            b.push(Err(e));
        } else {
            break;
        }
    }
    (a, b)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

proptest! {
    #[test]
    fn message_round_trips(message in message(), id in 1u64..) {
        let (kind, payload) = message.encode();
        prop_assert_eq!(kind, message.kind());
        prop_assert_eq!(
            Message::decode_in(message.version(), kind, &payload),
            Ok(message.clone())
        );
        let id = if kind == Kind::Hello { 0 } else { id };
        let (frames, errors) = decode_chunks(&[&message.to_frame(id).to_bytes()]);
        prop_assert_eq!(errors, 0);
        prop_assert_eq!(frames.len(), 1);
        prop_assert_eq!(frames[0].id(), id);
        prop_assert_eq!(frames[0].message(), Ok(message));
    }

    #[test]
    fn split_stream_decodes_the_same(
        frames in vec(frame(), 1..8),
        cuts in vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let input: Vec<u8> = frames.iter().flat_map(Frame::to_bytes).collect();
        let (decoded, errors) = decode_chunks(&chunks(&input, &cuts));
        prop_assert_eq!(errors, 0);
        prop_assert_eq!(decoded, frames);
    }

    #[test]
    fn garbage_between_frames_is_survived(
        items in vec((garbage(), frame()), 1..6),
        tail in garbage(),
        cuts in vec(any::<prop::sample::Index>(), 0..12),
    ) {
        // Garbage that holds a sound frame by itself (essentially impossible) is not garbage.
        for (junk, _) in &items {
            prop_assume!(decode_chunks(&[junk]).0.is_empty());
        }
        let mut input = Vec::new();
        for (junk, frame) in &items {
            input.extend_from_slice(junk);
            input.extend_from_slice(&frame.to_bytes());
        }
        input.extend_from_slice(&tail);
        let (decoded, _) = decode_chunks(&chunks(&input, &cuts));
        // Only frames that were on the wire, byte for byte with their checksums...
        for frame in &decoded {
            prop_assert!(contains(&input, &frame.to_bytes()), "invented {:?}", frame);
        }
        // ...and every good frame, in order.
        let expected: Vec<Frame> = items.into_iter().map(|(_, frame)| frame).collect();
        let mut found = decoded.iter();
        for frame in &expected {
            prop_assert!(found.any(|f| f == frame), "lost {:?} in {:?}", frame, decoded);
        }
    }

    #[test]
    fn arbitrary_input_never_panics_and_stays_bounded(
        pieces in vec(prop_oneof![garbage_piece(), frame().prop_map(|f| f.to_bytes())], 0..12),
        chunk in 1usize..5000,
    ) {
        let input = pieces.concat();
        let parts: Vec<&[u8]> = input.chunks(chunk).collect();
        let (frames, _) = decode_chunks(&parts);
        for frame in &frames {
            prop_assert!(contains(&input, &frame.to_bytes()));
            let _ = frame.message();
        }
    }

    /// The decoding work per byte received is bounded by a small constant whatever arrives
    /// (docs/protocol.md §4): lying headers, torn frames, magic runs, frames, garbage.
    #[test]
    fn checksum_work_is_bounded_per_byte_received(
        pieces in vec(prop_oneof![garbage_piece(), frame().prop_map(|f| f.to_bytes())], 0..40),
        chunk in 1usize..5000,
    ) {
        let input = pieces.concat();
        let mut decoder = Decoder::new();
        for part in input.chunks(chunk) {
            decoder.feed(part);
            while decoder.next_frame().is_some() {}
        }
        while decoder.next_frame_eof().is_some() {}
        let bound = 15 * input.len() as u64 + 64;
        prop_assert!(
            decoder.checksummed_bytes() <= bound,
            "{} bytes checksummed for {} received", decoder.checksummed_bytes(), input.len()
        );
    }

    /// The running-register decoder yields exactly what checksumming every candidate afresh
    /// yields: the same frames and the same errors, in the same order, however the stream is
    /// cut and wherever it stalls.
    #[test]
    fn decodes_exactly_like_the_naive_decoder(
        pieces in vec(prop_oneof![garbage_piece(), frame().prop_map(|f| f.to_bytes())], 0..16),
        cuts in vec(any::<prop::sample::Index>(), 0..16),
        stalls in vec(any::<bool>(), 0..17),
    ) {
        let input = pieces.concat();
        let (real, naive) = decode_both(&chunks(&input, &cuts), &stalls);
        prop_assert_eq!(real, naive);
    }

    #[test]
    fn random_bytes_never_panic(input in vec(any::<u8>(), 0..2048), chunk in 1usize..300) {
        let parts: Vec<&[u8]> = input.chunks(chunk).collect();
        let (frames, _) = decode_chunks(&parts);
        for frame in &frames {
            let _ = frame.message();
        }
    }

    #[test]
    fn message_decode_never_panics(
        version in 0u8..=3,
        kind in any::<u8>(),
        payload in vec(any::<u8>(), 0..600),
    ) {
        let _ = Message::decode_in(version, Kind::from_u8(kind), &payload);
    }

    #[test]
    fn mutated_payloads_are_rejected_or_valid(
        message in message(),
        at in any::<prop::sample::Index>(),
        flip in any::<u8>(),
        extra in vec(any::<u8>(), 0..3),
        truncate in any::<bool>(),
    ) {
        let (kind, mut payload) = message.encode();
        if !payload.is_empty() {
            let i = at.index(payload.len());
            payload[i] ^= flip;
            if truncate {
                payload.truncate(i);
            }
        }
        payload.extend_from_slice(&extra);
        // Whatever decodes must re-encode to exactly these bytes: nothing is accepted loosely.
        for version in MIN_VERSION..=MAX_VERSION {
            if let Ok(decoded) = Message::decode_in(version, kind, &payload) {
                prop_assert_eq!(decoded.encode(), (kind, payload.clone()));
            }
        }
    }
}

#[test]
fn a_header_claiming_the_maximum_holds_at_most_one_frame() {
    // The worst case for memory: a sound header announcing MAX_PAYLOAD, then a slow trickle.
    let mut decoder = Decoder::new();
    decoder.feed(&lying_header(6, 1, MAX_PAYLOAD as u32, 0));
    let mut fed = HEADER_LEN;
    while fed < MAX_FRAME - 1 {
        decoder.feed(&[0u8; 1000][..(MAX_FRAME - 1 - fed).min(1000)]);
        fed = (fed + 1000).min(MAX_FRAME - 1);
        assert!(decoder.next_frame().is_none());
        assert!(decoder.buffered_len() < MAX_FRAME);
    }
    decoder.feed(&[0]);
    assert!(matches!(
        decoder.next_frame(),
        Some(Err(vm_proto::DecodeError::PayloadChecksum { .. }))
    ));
}
