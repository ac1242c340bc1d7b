//! Fuzz target, structure-aware: a stream built from sound frames, torn frames (a writer that
//! died mid-frame), frames with one corrupted byte, bare magics and raw bytes, fed to the
//! decoder in chunks of a fuzzed size. Reaches the paths behind the checksums, which
//! `frame_decode` (raw bytes) only finds slowly.
//!
//! Checks: the decoder's buffer stays bounded; its checksum work stays within its bound per byte
//! received (`Lying` headers claiming long payloads are the costly input); every frame it
//! yields is byte-for-byte on the wire; a stream of sound frames alone decodes to exactly those
//! frames; every frame's message decodes without panicking.

#![no_main]

use libfuzzer_sys::{
    arbitrary::{self, Arbitrary},
    fuzz_target,
};
use vm_proto::{Decoder, Frame, Kind, MAGIC, MAX_FRAME, MAX_PAYLOAD, crc32c::crc32c};

#[derive(Arbitrary, Debug)]
enum Piece {
    Raw(Vec<u8>),
    /// A sound frame, in version 2 (a deadline's version) when `v2`.
    Frame {
        kind: u8,
        id: u64,
        payload: Vec<u8>,
        v2: bool,
    },
    Torn {
        kind: u8,
        id: u64,
        payload: Vec<u8>,
        keep: u16,
    },
    Corrupt {
        kind: u8,
        id: u64,
        payload: Vec<u8>,
        at: u16,
        xor: u8,
    },
    Magic,
    /// A header with a sound header CRC claiming `len` payload bytes that will not match.
    Lying {
        id: u64,
        len: u16,
        repeat: u8,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    pieces: Vec<Piece>,
    chunk: u16,
}

fn frame(kind: u8, id: u64, mut payload: Vec<u8>) -> Frame {
    payload.truncate(MAX_PAYLOAD);
    Frame::new(Kind::from_u8(kind), id, payload).expect("payload truncated to fit")
}

fuzz_target!(|input: Input| {
    let mut wire = Vec::new();
    let mut sound = Vec::new();
    let mut only_sound = true;
    for piece in input.pieces {
        match piece {
            Piece::Raw(bytes) => {
                only_sound &= bytes.is_empty();
                wire.extend_from_slice(&bytes);
            }
            Piece::Frame {
                kind,
                id,
                payload,
                v2,
            } => {
                let f = frame(kind, id, payload);
                let f = if v2 {
                    f.with_version(2).expect("version 2 is spoken")
                } else {
                    f
                };
                wire.extend_from_slice(&f.to_bytes());
                sound.push(f);
            }
            Piece::Torn {
                kind,
                id,
                payload,
                keep,
            } => {
                only_sound = false;
                let bytes = frame(kind, id, payload).to_bytes();
                let keep = usize::from(keep) % bytes.len();
                wire.extend_from_slice(&bytes[..keep]);
            }
            Piece::Corrupt {
                kind,
                id,
                payload,
                at,
                xor,
            } => {
                only_sound = false;
                let mut bytes = frame(kind, id, payload).to_bytes();
                let at = usize::from(at) % bytes.len();
                bytes[at] ^= xor.max(1);
                wire.extend_from_slice(&bytes);
            }
            Piece::Magic => {
                only_sound = false;
                wire.extend_from_slice(&MAGIC);
            }
            Piece::Lying { id, len, repeat } => {
                only_sound = false;
                let mut h = MAGIC.to_vec();
                h.extend_from_slice(&[1, 0x04, 0, 0]);
                h.extend_from_slice(&id.to_be_bytes());
                h.extend_from_slice(&u32::from(len).to_be_bytes());
                h.extend_from_slice(&0x1234_5678u32.to_be_bytes());
                let crc = crc32c(&h);
                h.extend_from_slice(&crc.to_be_bytes());
                for _ in 0..=repeat {
                    wire.extend_from_slice(&h);
                }
            }
        }
    }

    let chunk = usize::from(input.chunk).max(1);
    let mut decoder = Decoder::new();
    let mut found = Vec::new();
    for part in wire.chunks(chunk) {
        decoder.feed(part);
        assert!(decoder.buffered_len() <= MAX_FRAME + part.len());
        while let Some(item) = decoder.next_frame() {
            found.extend(item.ok());
        }
        assert!(decoder.buffered_len() < MAX_FRAME);
    }
    while let Some(item) = decoder.next_frame_eof() {
        found.extend(item.ok());
    }
    assert_eq!(decoder.buffered_len(), 0);
    // docs/protocol.md §4: at most ~15 bytes checksummed per byte received.
    assert!(decoder.checksummed_bytes() <= 15 * wire.len() as u64 + 64);

    for f in &found {
        let bytes = f.to_bytes();
        assert!(
            wire.windows(bytes.len()).any(|w| w == bytes.as_slice()),
            "invented frame"
        );
        let _ = f.message();
    }
    if only_sound {
        assert_eq!(found, sound);
    }
});
