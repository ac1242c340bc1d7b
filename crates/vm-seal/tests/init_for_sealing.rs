//! [`vm_seal::init_for_sealing`] in a process of its own (an integration test binary): it
//! must come before any other use of OpenSSL, which the unit tests' shared process cannot
//! promise. Everything sealing needs works after it; so does the legacy token code, which
//! looks its algorithms up by the names the provider registers.

use std::time::Duration;

use vm_seal::legacy::{self, Digest, Password};
use vm_seal::{Action, FenceReply, FenceRequest, Key, Name, Nonce, Outcome, PowerState, SealError};

#[test]
fn sealing_works_after_the_lean_initialisation() {
    vm_seal::init_for_sealing().unwrap();
    // a second call changes nothing and still succeeds
    vm_seal::init_for_sealing().unwrap();

    let key = Key::generate("web").unwrap();
    let name = |s| Name::new(s).unwrap();
    let request = FenceRequest::new(
        Action::Off,
        Some(name("web2")),
        name("web1"),
        Duration::from_secs(30),
    )
    .unwrap();
    let (nonce, sealed) = request.seal(&key).unwrap();
    let opened = FenceRequest::open(&key, &sealed).unwrap();
    assert_eq!(opened.request.target, Some(name("web2")));

    let mut tampered = sealed.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    assert_eq!(
        FenceRequest::open(&key, &tampered).unwrap_err(),
        SealError::Tag
    );

    let reply = FenceReply::new(Outcome::Done, PowerState::Off, "web2 is off");
    let sealed_reply = reply.seal(&key, &nonce).unwrap();
    assert_eq!(
        FenceReply::open(&key, &nonce, &sealed_reply).unwrap(),
        reply
    );
    let other = Nonce::random().unwrap();
    assert_eq!(
        FenceReply::open(&key, &other, &sealed_reply).unwrap_err(),
        SealError::Tag
    );

    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "secret\n").unwrap();
    std::fs::set_permissions(&pw, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let password = Password::from_file(&pw).unwrap();
    for digest in [Digest::Md5, Digest::Sha256] {
        let token = legacy::encrypt_token("prmVM_web2", &password, digest).unwrap();
        assert_eq!(
            legacy::decrypt_token(&token, &password, &[digest]).unwrap(),
            "prmVM_web2"
        );
    }
}
