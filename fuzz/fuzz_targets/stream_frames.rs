//! Fuzz target: the stream frames (docs/protocol.md §16), kinds 0x0F to 0x13, from arbitrary
//! payloads. Never panics; whatever decodes is within the limits a receiver relies on (a
//! chunk of 1..=16 KiB, a window or credit of 1..=1 MiB, a defined close reason, a domain of
//! 1..=255 bytes) and re-encodes to exactly the same bytes, in a version-1 frame.

#![no_main]

use libfuzzer_sys::fuzz_target;
use vm_proto::{Kind, MAX_STREAM_CHUNK, MAX_STREAM_WINDOW, Message};

fuzz_target!(|data: &[u8]| {
    let Some((&[kind], payload)) = data.split_first_chunk::<1>() else {
        return;
    };
    let kind = Kind::from_u8(0x0F + kind % 5);
    let Ok(message) = Message::decode(kind, payload) else {
        return;
    };
    assert_eq!(message.encode(), (kind, payload.to_vec()));
    assert_eq!(message.version(), 1);
    match &message {
        Message::StreamOpen(o) => assert!((1..=MAX_STREAM_WINDOW).contains(&o.window())),
        Message::StreamCredit(c) => assert!((1..=MAX_STREAM_WINDOW).contains(&c.increment())),
        Message::StreamData(d) => assert!((1..=MAX_STREAM_CHUNK).contains(&d.data().len())),
        Message::StreamClose(c) => assert!(c.detail().len() <= 255),
        Message::StreamExpose(e) => assert!((1..=255).contains(&e.domain().len())),
        other => panic!("kind {kind} decoded as {other:?}"),
    }
});
