//! Fuzz target: an arbitrary kind byte and payload decoded as a message. Never panics, and
//! whatever decodes re-encodes to exactly the same bytes (decoding accepts nothing loosely).

#![no_main]

use libfuzzer_sys::fuzz_target;
use vm_proto::{Kind, Message};

fuzz_target!(|data: &[u8]| {
    let Some((&kind, payload)) = data.split_first() else {
        return;
    };
    let kind = Kind::from_u8(kind);
    if let Ok(message) = Message::decode(kind, payload) {
        assert_eq!(message.encode(), (kind, payload.to_vec()));
    }
});
