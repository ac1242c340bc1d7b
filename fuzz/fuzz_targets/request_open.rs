//! Fuzz target: what vm-stonithd does with a request body from a guest, and what a fence
//! agent does with a reply. The first byte picks the mode:
//!
//! - 0: the bytes as a whole sealed message: `peek`, then `FenceRequest::open` and
//!   `FenceReply::open` under a fixed key (random input never authenticates, so this covers
//!   the size, magic, kind and key-id checks);
//! - 1: the bytes as a request plaintext, sealed here under the key, then opened: reaches the
//!   strict plaintext decoder through the real path;
//! - 2: the bytes as a reply plaintext, sealed and opened the same way.
//!
//! Checks, beyond "never panics": every request or reply that opens re-encodes to exactly the
//! plaintext it came from (nothing is accepted loosely), and names in it obey the name rule.

#![no_main]

use libfuzzer_sys::fuzz_target;
use vm_seal::envelope::{self, Nonce, SealedKind};
use vm_seal::key::KeyId;
use vm_seal::name::check;
use vm_seal::{FenceReply, FenceRequest, Key, Name};

fn key() -> Key {
    Key::from_parts(
        Name::new("fuzz").unwrap_or_else(|_| unreachable!()),
        KeyId([7; 8]),
        [42; 32],
    )
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let key = key();
    let request_nonce = Nonce([1; 12]);
    match mode % 3 {
        0 => {
            let _ = envelope::peek(rest);
            assert!(FenceRequest::open(&key, rest).is_err());
            assert!(FenceReply::open(&key, &request_nonce, rest).is_err());
        }
        1 => {
            let Ok((_, sealed)) = envelope::seal(&key, SealedKind::Request, b"", rest) else {
                return;
            };
            if let Ok(opened) = FenceRequest::open(&key, &sealed) {
                assert_eq!(opened.request.encode(), rest);
                assert!(check(opened.request.requester.as_str()).is_ok());
                if let Some(t) = &opened.request.target {
                    assert!(check(t.as_str()).is_ok());
                }
            }
        }
        _ => {
            let Ok((_, sealed)) =
                envelope::seal(&key, SealedKind::Reply, &request_nonce.0, rest)
            else {
                return;
            };
            if let Ok(reply) = FenceReply::open(&key, &request_nonce, &sealed) {
                assert_eq!(reply.encode(), rest);
                assert!(reply.targets.iter().all(|t| check(t.as_str()).is_ok()));
                // bound to its request: another nonce never opens it
                assert!(FenceReply::open(&key, &Nonce([2; 12]), &sealed).is_err());
            }
        }
    }
});
