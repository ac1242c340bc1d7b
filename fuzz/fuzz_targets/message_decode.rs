//! Fuzz target: an arbitrary version byte, kind byte and payload decoded as a message. Never
//! panics, and whatever decodes re-encodes to exactly the same bytes (decoding accepts nothing
//! loosely), in the version it was decoded in when that version changes its payload (a
//! version-2 Request or Deliver carries its `timeout_ms`, bounded to 1..=86,400,000).

#![no_main]

use libfuzzer_sys::fuzz_target;
use vm_proto::{Kind, MAX_TIMEOUT_MS, Message};

fuzz_target!(|data: &[u8]| {
    let Some((&[version, kind], payload)) = data.split_first_chunk::<2>() else {
        return;
    };
    let kind = Kind::from_u8(kind);
    if let Ok(message) = Message::decode_in(version, kind, payload) {
        assert_eq!(message.encode(), (kind, payload.to_vec()));
        let deadline = match &message {
            Message::Request(r) => r.timeout(),
            Message::Deliver(d) => d.timeout(),
            _ => None,
        };
        // a deadline only where the version has the field, and always within its bounds
        assert_eq!(deadline.is_some(), message.version() == 2);
        if let Some(t) = deadline {
            assert_eq!(version, 2);
            assert!((1..=MAX_TIMEOUT_MS).contains(&t.as_millis()));
        }
    }
});
