//! Fuzz target: the `remote` service's request decoder (vm-stonithd's `remote` module reads
//! what a guest sends) and the reply decoder the guest's vm-connectd uses
//! (`vm_proto::authkey`, docs/protocol.md §17).
//!
//! Checks: nothing panics; an accepted request re-encodes to exactly its input (decoding is
//! exact) and is at most `MAX_REQUEST` bytes; an accepted reply re-encodes to exactly its
//! input and a key in it is 1..=`MAX_KEY` bytes.

#![no_main]

use libfuzzer_sys::{Corpus, fuzz_target};
use vm_proto::authkey::{AuthkeyReply, MAX_KEY, MAX_REQUEST, encode_request, parse_request};

fuzz_target!(|data: &[u8]| -> Corpus {
    if let Ok(reply) = AuthkeyReply::parse(data) {
        if let AuthkeyReply::Key(k) = &reply {
            assert!((1..=MAX_KEY).contains(&k.expose().len()));
        }
        assert_eq!(reply.encode(), data);
    }
    // refusals are kept: the decoder's error paths are what a guest reaches most
    if let Ok(have) = parse_request(data) {
        assert!(data.len() <= MAX_REQUEST);
        assert_eq!(encode_request(have.as_ref()), data);
    }
    Corpus::Keep
});
