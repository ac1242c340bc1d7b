//! Interoperability of `vm_seal::legacy` with the real `openssl` command, which made (and, in
//! the original vm-stonithd, decrypted) every legacy token, and the external decrypt command
//! runner. Tests that need `openssl` print a note and pass when it is not installed.

// Test helpers outside #[test] functions may fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vm_seal::legacy::{
    DecryptCommand, Digest, LEGACY_DIGESTS, LegacyError, Password, decrypt_token, encrypt_token,
};

const PASSWORD: &str = "pw-for-interop";

fn openssl_available() -> bool {
    let found = Command::new("openssl")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !found {
        eprintln!("note: `openssl` is not on PATH; skipping the openssl interoperability test");
    }
    found
}

/// Run `openssl des-ede3 MODE -base64 -k PASSWORD -md DIGEST` on `input`, as the original did.
fn openssl_enc(mode: &str, digest: Digest, input: &[u8]) -> (bool, Vec<u8>) {
    let mut child = Command::new("openssl")
        .args(["des-ede3", mode, "-base64", "-k", PASSWORD, "-md"])
        .arg(digest.openssl_name())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let output = child.wait_with_output().unwrap();
    (output.status.success(), output.stdout)
}

const IDS: &[&str] = &[
    "prmVMCTL_guest2",
    "a",
    "_under",
    "x.y:z-w",
    // 30 characters: the longest id whose openssl token is one line.
    "prmVMCTL_abcdefghijklmnopqrstu",
];

#[test]
fn openssl_decrypts_our_tokens() {
    if !openssl_available() {
        return;
    }
    let password = Password::from(PASSWORD);
    for digest in [Digest::Md5, Digest::Sha256] {
        for id in IDS {
            let token = encrypt_token(id, &password, digest).unwrap();
            // As the original fed it: `echo "TOKEN" | openssl des-ede3 -d -base64 ...`.
            let (ok, plaintext) = openssl_enc("-d", digest, format!("{token}\n").as_bytes());
            assert!(ok, "openssl refused {token} ({digest})");
            assert_eq!(plaintext, format!("{id}\n").as_bytes(), "{digest}");
        }
    }
}

#[test]
fn we_decrypt_openssl_tokens() {
    if !openssl_available() {
        return;
    }
    let password = Password::from(PASSWORD);
    for digest in [Digest::Md5, Digest::Sha256] {
        for id in IDS {
            let (ok, token) = openssl_enc("-e", digest, format!("{id}\n").as_bytes());
            assert!(ok);
            let token = String::from_utf8(token).unwrap();
            // openssl ends its one line with a newline; a hostlist word does not have it.
            let token = token.strip_suffix('\n').unwrap();
            assert_eq!(
                decrypt_token(token, &password, &[digest]).unwrap(),
                *id,
                "{digest}"
            );
            assert_eq!(
                decrypt_token(token, &password, LEGACY_DIGESTS).unwrap(),
                *id
            );
            // Identical to what we would print, apart from the salt.
            let ours = encrypt_token(id, &password, digest).unwrap();
            assert_eq!(ours.len(), token.len());
            assert_eq!(&ours[..10], "U2FsdGVkX1");
        }
    }
}

#[test]
fn openssl_line_wrapped_tokens_are_refused() {
    if !openssl_available() {
        return;
    }
    // 31 characters: openssl wraps the base64 at 64 columns, which no hostlist word can hold.
    let id = "prmVMCTL_abcdefghijklmnopqrstuv";
    let (ok, token) = openssl_enc("-e", Digest::Md5, format!("{id}\n").as_bytes());
    assert!(ok);
    let token = String::from_utf8(token).unwrap();
    let token = token.strip_suffix('\n').unwrap();
    assert!(token.contains('\n'));
    let err = decrypt_token(token, &Password::from(PASSWORD), LEGACY_DIGESTS).unwrap_err();
    assert!(matches!(err, LegacyError::Base64 { .. }), "{err:?}");
    // Joined into one line, it is fine.
    assert_eq!(
        decrypt_token(
            &token.replace('\n', ""),
            &Password::from(PASSWORD),
            LEGACY_DIGESTS
        )
        .unwrap(),
        id
    );
}

fn command(argv: &[&str], stdin: bool, ok_code: i32, timeout: Duration) -> DecryptCommand {
    DecryptCommand::new(
        argv.iter().map(|s| (*s).to_owned()).collect(),
        stdin,
        ok_code,
        timeout,
    )
    .unwrap()
}

#[test]
fn decrypt_command_runs_openssl_like_the_original() {
    if !openssl_available() {
        return;
    }
    let password = Password::from("pw");
    let decrypt = command(
        &[
            "openssl", "des-ede3", "-d", "-base64", "-k", "pw", "-md", "md5",
        ],
        true,
        0,
        Duration::from_secs(20),
    );
    let token = encrypt_token("prmVMCTL_guest2", &password, Digest::Md5).unwrap();
    assert_eq!(decrypt.run(&token).unwrap(), "prmVMCTL_guest2");

    // The wrong password: openssl fails ("bad decrypt") and the exit code says so.
    let other = encrypt_token("prmVMCTL_guest2", &Password::from("other"), Digest::Md5).unwrap();
    let err = decrypt.run(&other).unwrap_err();
    assert!(
        matches!(
            err,
            LegacyError::CommandExit { .. } | LegacyError::CommandOutput { .. }
        ),
        "{err:?}"
    );
    assert!(!err.to_string().contains("-k"), "{err}");
}

#[test]
fn decrypt_command_passes_the_token_as_one_last_argument() {
    // `echo` prints its arguments: the token comes back unchanged, as one word.
    let echo = command(&["echo"], false, 0, Duration::from_secs(10));
    assert_eq!(echo.run("U2FsdGVkX1").unwrap(), "U2FsdGVkX1");
    // Through a shell's positional parameter, never spliced into the script.
    let via_sh = command(
        &["sh", "-c", "printf '%s\\n' \"$1\"", "sh"],
        false,
        0,
        Duration::from_secs(10),
    );
    // A base64 token that is not itself a resource id comes back, and is then refused.
    let err = via_sh.run("abc+/=").unwrap_err();
    assert!(matches!(err, LegacyError::CommandOutput { .. }), "{err:?}");
    assert_eq!(via_sh.run("abc").unwrap(), "abc");
}

#[test]
fn decrypt_command_environment_is_empty_but_path() {
    let env = command(
        &[
            "sh",
            "-c",
            "echo \"e${HOME}${USER}${LD_PRELOAD}_$PATH\" | tr / _",
        ],
        true,
        0,
        Duration::from_secs(10),
    );
    // PATH with '/' and ':' mapped: ':' is allowed in ids, '/' is not.
    assert_eq!(env.run("abc").unwrap(), "e__usr_sbin:_usr_bin:_sbin:_bin");
}

#[test]
fn decrypt_command_is_killed_at_the_timeout() {
    let started = Instant::now();
    // A background sleep keeps stdout open too: returning at all proves the group was killed.
    let sleeper = command(
        &["sh", "-c", "sleep 30 & sleep 30"],
        true,
        0,
        Duration::from_millis(300),
    );
    let err = sleeper.run("abc").unwrap_err();
    assert!(matches!(err, LegacyError::CommandTimeout { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn decrypt_command_exit_code_must_match() {
    let exits_3 = command(
        &["sh", "-c", "echo abc; exit 3"],
        true,
        0,
        Duration::from_secs(10),
    );
    let err = exits_3.run("abc").unwrap_err();
    assert!(
        matches!(
            err,
            LegacyError::CommandExit {
                code: Some(3),
                expected: 0,
                ..
            }
        ),
        "{err:?}"
    );
    // `-e 3` in the original: 3 means success.
    let expects_3 = command(
        &["sh", "-c", "echo abc; exit 3"],
        true,
        3,
        Duration::from_secs(10),
    );
    assert_eq!(expects_3.run("abc").unwrap(), "abc");
    let killed = command(
        &["sh", "-c", "kill -9 $$"],
        true,
        0,
        Duration::from_secs(10),
    );
    let err = killed.run("abc").unwrap_err();
    assert!(
        matches!(err, LegacyError::CommandExit { code: None, .. }),
        "{err:?}"
    );
}

#[test]
fn decrypt_command_output_is_bounded_and_checked() {
    let flood = command(
        &["sh", "-c", "yes aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"],
        true,
        0,
        Duration::from_secs(10),
    );
    let err = flood.run("abc").unwrap_err();
    assert!(
        matches!(err, LegacyError::CommandOutputTooLong { .. }),
        "{err:?}"
    );

    for script in [
        "true",
        "echo 'not an id'",
        "printf 'abc\\n\\n'",
        "echo 9abc",
    ] {
        let bad = command(&["sh", "-c", script], true, 0, Duration::from_secs(10));
        let err = bad.run("abc").unwrap_err();
        assert!(
            matches!(err, LegacyError::CommandOutput { .. }),
            "{script}: {err:?}"
        );
        assert!(!err.to_string().contains("not an id"), "{err}");
    }
    let missing = command(
        &["pmkt-no-such-decrypt-tool"],
        true,
        0,
        Duration::from_secs(10),
    );
    let err = missing.run("abc").unwrap_err();
    assert!(matches!(err, LegacyError::CommandSpawn { .. }), "{err:?}");
}

#[test]
fn shell_metacharacters_are_refused_before_running() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let marker_str = marker.to_str().unwrap();
    let touched = dir.path().join("x");
    let touched_str = touched.to_str().unwrap();
    // Creates the marker if it runs at all, and would evaluate the token if it were spliced
    // into a script the way the original's system() did.
    let script = format!("touch {marker_str}; eval \"echo $1\"");
    for stdin in [true, false] {
        let guarded = command(
            &["sh", "-c", &script, "sh"],
            stdin,
            0,
            Duration::from_secs(10),
        );
        for token in [
            format!("$(touch {touched_str})"),
            format!("`touch {touched_str}`"),
            format!("abc;touch {touched_str}"),
            format!("abc\";touch${{IFS}}{touched_str};\""),
            "abc|id".to_owned(),
            "abc&id".to_owned(),
            "abc def".to_owned(),
            "abc\n".to_owned(),
            "-abc".to_owned(),
        ] {
            let err = guarded.run(&token).unwrap_err();
            assert!(
                matches!(err, LegacyError::TokenCharset { .. }),
                "{token:?}: {err:?}"
            );
            assert!(!Path::new(&marker).exists(), "ran for {token:?}");
            assert!(!Path::new(&touched).exists(), "injected by {token:?}");
        }
    }
    // Empty and oversized tokens are refused too.
    let guarded = command(
        &["sh", "-c", &script, "sh"],
        true,
        0,
        Duration::from_secs(10),
    );
    assert!(matches!(guarded.run(""), Err(LegacyError::TokenEmpty)));
    assert!(matches!(
        guarded.run(&"A".repeat(600)),
        Err(LegacyError::TokenTooLong { .. })
    ));
    assert!(!marker.exists());
}
