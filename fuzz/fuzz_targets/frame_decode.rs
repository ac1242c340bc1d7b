//! Fuzz target: arbitrary bytes, fed to the resynchronising frame decoder in arbitrary chunk
//! sizes, then flushed as at end of stream; every frame found is decoded as its message.
//!
//! Checks, beyond "never panics": the decoder's buffer stays within `MAX_FRAME` plus one chunk
//! (so no length field can make it allocate), every frame it yields is byte-for-byte on the
//! wire (it never invents a frame or accepts one whose checksums failed), and every message
//! that decodes re-encodes to exactly its payload (nothing is accepted loosely).

#![no_main]

use libfuzzer_sys::fuzz_target;
use vm_proto::{Decoder, Frame, MAX_FRAME, Message};

fn check(input: &[u8], frame: &Frame) {
    let bytes = frame.to_bytes();
    assert!(
        input.windows(bytes.len()).any(|w| w == bytes.as_slice()),
        "decoder produced a frame that is not in the input"
    );
    // decoded in the frame's own version (1, or 2 with a Request's or Deliver's deadline)
    if let Ok(message) = Message::decode_in(frame.version(), frame.kind(), frame.payload()) {
        assert_eq!(message.encode(), (frame.kind(), frame.payload().to_vec()));
    }
    let _ = frame.message();
}

fuzz_target!(|data: &[u8]| {
    // The first two bytes choose the chunk sizes (1..=65536), the rest is the stream.
    let Some((sizes, input)) = data.split_first_chunk::<2>() else {
        return;
    };
    let seed = u16::from_be_bytes(*sizes);
    let mut decoder = Decoder::new();
    let mut rest = input;
    let mut step = 0u32;
    while !rest.is_empty() {
        // Vary the chunk size deterministically from the seed: small and large chunks both.
        let size = 1 + (usize::from(seed).wrapping_mul(step as usize + 1) % 4099);
        let (chunk, tail) = rest.split_at(size.min(rest.len()));
        rest = tail;
        step = step.wrapping_add(1);
        decoder.feed(chunk);
        assert!(decoder.buffered_len() <= MAX_FRAME + chunk.len());
        while let Some(item) = decoder.next_frame() {
            if let Ok(frame) = item {
                check(input, &frame);
            }
        }
        assert!(decoder.buffered_len() < MAX_FRAME);
    }
    while let Some(item) = decoder.next_frame_eof() {
        if let Ok(frame) = item {
            check(input, &frame);
        }
    }
    assert_eq!(decoder.buffered_len(), 0);
});
