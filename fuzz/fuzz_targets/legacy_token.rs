//! Fuzz target: legacy pm_kvm_tools resource id tokens, which a guest controls (the
//! `hostlist` of its fence agent). The first byte picks what the rest is:
//!
//! - 0: a token as text, straight into `decrypt_token` (exercises the strict base64 and
//!   header parsing);
//! - 1: the bytes after `Salted__` (salt and ciphertext), base64-encoded here, so that
//!   inputs reach key derivation, 3DES padding and the resource id check, which random text
//!   almost never does;
//! - 2: a resource id, which, when valid, must survive `encrypt_token` → `decrypt_token`.
//!
//! Checks: nothing panics, and every id `decrypt_token` returns obeys the resource id rule.

#![no_main]

use libfuzzer_sys::{Corpus, fuzz_target};
use vm_seal::legacy::{
    Digest, LEGACY_DIGESTS, Password, check_resource_id, decrypt_token, encrypt_token,
};

const PASSWORD: &str = "vmstonith";

fn decrypt_checked(token: &str, password: &Password) {
    for digests in [LEGACY_DIGESTS, &[Digest::Md5], &[Digest::Sha256]] {
        if let Ok(id) = decrypt_token(token, password, digests) {
            assert_eq!(check_resource_id(&id), Ok(()), "{id:?} from {token:?}");
        }
    }
}

fuzz_target!(|data: &[u8]| -> Corpus {
    let Some((&mode, rest)) = data.split_first() else {
        return Corpus::Reject;
    };
    let password = Password::from(PASSWORD);
    match mode % 3 {
        0 => {
            let Ok(token) = std::str::from_utf8(rest) else {
                return Corpus::Reject;
            };
            decrypt_checked(token, &password);
        }
        1 => {
            let mut blob = b"Salted__".to_vec();
            blob.extend_from_slice(rest);
            decrypt_checked(&vm_seal::base64::encode(&blob), &password);
        }
        _ => {
            let Ok(id) = std::str::from_utf8(rest) else {
                return Corpus::Reject;
            };
            for digest in [Digest::Md5, Digest::Sha256] {
                match encrypt_token(id, &password, digest) {
                    Ok(token) => {
                        assert_eq!(check_resource_id(id), Ok(()));
                        let back = decrypt_token(&token, &password, &[digest]);
                        assert_eq!(back.ok().as_deref(), Some(id), "{token}");
                    }
                    Err(_) => assert!(check_resource_id(id).is_err()),
                }
            }
        }
    }
    Corpus::Keep
});
