//! Compatibility with the "encrypted resource id" tokens of the original pm_kvm_tools.
//!
//! The guest-side `external/vm-stonith` plugin names each peer guest's host resource in its
//! `hostlist="guest1:TOKEN guest2:TOKEN"` parameter. A token was made on the host with
//! `echo RSC | openssl des-ede3 -e -base64 -k PASSWORD`, so it is exactly what `openssl enc`
//! writes:
//!
//! ```text
//! base64( "Salted__" ‖ salt (8 bytes) ‖ 3DES-ECB(key, RSC "\n" + PKCS#5 padding) )
//! key = EVP_BytesToKey(digest, password, salt, 1 iteration)[..24]
//! ```
//!
//! The digest is MD5 for tokens made with OpenSSL 1.0 (the RHEL 6 era the original targeted)
//! and SHA-256 for tokens made with OpenSSL 1.1 or later, so decryption tries a list of
//! [`Digest`]s in order.
//!
//! None of this is real protection: the password was a documented constant and the cipher is
//! unauthenticated. A token only stops one tenant from *guessing* another tenant's resource id.
//! This module exists so that existing guest configurations keep working; it is strict about
//! everything it parses because the token arrives from a guest, which may be hostile:
//!
//! - [`decrypt_token`] decrypts in-process (no shell, no temporary file) and accepts a result
//!   only if it is a well-formed resource id ([`check_resource_id`]).
//! - [`encrypt_token`] makes new tokens (`vm-ctl stonith token`) that the original's
//!   `openssl des-ede3 -d -base64` still decrypts.
//! - [`DecryptCommand`] keeps the original's operator-supplied decrypt command (`-c CMD [-i]
//!   [-e CODE]`), but runs it from an argv list with the token as stdin or as one argument,
//!   in an empty environment, with bounded output and time.
//!
//! Nothing here puts a password or a decrypted resource id into an error message; a token is
//! shown at most as its first 16 characters.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use openssl::error::ErrorStack;
use openssl::hash::{Hasher, MessageDigest};
use openssl::symm::{Cipher, Crypter, Mode};

use vm_common::process::{Cmd, ProcessError};

use crate::base64::{self, Base64Error};

/// The password every original installation used (`-k vmstonith` in its documentation). It is
/// public knowledge; it is provided because existing hostlists were made with it.
pub const ORIGINAL_PASSWORD: &str = "vmstonith";

/// The longest token accepted, in base64 characters. A token for a [`MAX_RESOURCE_ID_LEN`]-byte
/// id is 200 characters; the slack only tolerates other tools, and the bound keeps a guest from
/// making us decode or decrypt anything large.
pub const MAX_TOKEN_LEN: usize = 512;

/// The longest resource id accepted, in bytes: `prmVMCTL_` and a 64-byte domain name fit.
pub const MAX_RESOURCE_ID_LEN: usize = 128;

/// The most stdout a [`DecryptCommand`] may produce, in bytes (the original read at most 2047).
pub const MAX_COMMAND_OUTPUT: usize = 2048;

/// The only environment variable a [`DecryptCommand`] gets.
pub const COMMAND_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// The digests tried by default, oldest first: every token of the original era uses MD5.
pub const LEGACY_DIGESTS: &[Digest] = &[Digest::Md5, Digest::Sha256];

/// What `openssl enc` writes before the salt when it derives the key from a password.
const SALT_MAGIC: &[u8; 8] = b"Salted__";
const SALT_LEN: usize = 8;
/// Three independent 8-byte DES keys.
const KEY_LEN: usize = 24;
const DES_BLOCK: usize = 8;
/// Longest password read from a file; anything longer is not a password file.
const MAX_PASSWORD_FILE: usize = 4096;
/// How many characters of a token an error message may show.
const TOKEN_EXCERPT: usize = 16;

/// The digest `EVP_BytesToKey` used to turn the password and salt into the 3DES key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Digest {
    /// MD5: the `openssl enc` default up to OpenSSL 1.0.x, so every token of the original era.
    Md5,
    /// SHA-256: the `openssl enc` default since OpenSSL 1.1.0.
    Sha256,
}

impl Digest {
    fn message_digest(self) -> MessageDigest {
        match self {
            Digest::Md5 => MessageDigest::md5(),
            Digest::Sha256 => MessageDigest::sha256(),
        }
    }

    /// The name `openssl enc -md` takes for this digest.
    pub fn openssl_name(self) -> &'static str {
        match self {
            Digest::Md5 => "md5",
            Digest::Sha256 => "sha256",
        }
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.openssl_name())
    }
}

/// Bytes that are overwritten with zeros when dropped.
///
/// Best effort only: without `unsafe` (denied in this workspace) there is no volatile write, so
/// `black_box` is what keeps the compiler from discarding the overwrite of memory about to be
/// freed; copies made earlier (reallocations, the caller's own string) are out of reach.
struct SecretBytes(Vec<u8>);

impl Drop for SecretBytes {
    fn drop(&mut self) {
        self.0.fill(0);
        std::hint::black_box(&mut self.0);
    }
}

/// The legacy password (`openssl enc -k`). Its `Debug` output is redacted and its bytes are
/// zeroed when it is dropped. That is best effort: copies made before it was handed over (the
/// caller's `&str`, an earlier reallocation of a `String`) are out of reach.
pub struct Password(SecretBytes);

impl Password {
    /// Read the password from the first line of `path` (its trailing newline removed).
    ///
    /// Refused: an empty password, a file that is not a regular file, and a file that group or
    /// others may access at all (`mode & 0o077 != 0`), because whoever reads the password can
    /// read or forge every token.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, LegacyError> {
        let path = path.as_ref();
        let read_error = |source| LegacyError::PasswordFileRead {
            path: path.to_owned(),
            source,
        };
        let file = File::open(path).map_err(read_error)?;
        // Checked on the open file, not the path, so the file checked is the file read.
        let metadata = file.metadata().map_err(read_error)?;
        if !metadata.is_file() {
            return Err(LegacyError::PasswordFileNotRegular {
                path: path.to_owned(),
            });
        }
        let mode = metadata.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(LegacyError::PasswordFileMode {
                path: path.to_owned(),
                mode,
            });
        }
        let mut contents = SecretBytes(Vec::new());
        let limit = u64::try_from(MAX_PASSWORD_FILE + 1).unwrap_or(u64::MAX);
        file.take(limit)
            .read_to_end(&mut contents.0)
            .map_err(read_error)?;
        let line = contents.0.split(|&b| b == b'\n').next().unwrap_or(&[]);
        if line.len() > MAX_PASSWORD_FILE {
            return Err(LegacyError::PasswordFileTooLong {
                path: path.to_owned(),
                max: MAX_PASSWORD_FILE,
            });
        }
        if line.is_empty() {
            return Err(LegacyError::PasswordFileEmpty {
                path: path.to_owned(),
            });
        }
        Ok(Password(SecretBytes(line.to_vec())))
    }

    fn as_bytes(&self) -> &[u8] {
        &self.0.0
    }
}

impl From<String> for Password {
    /// Take the password's bytes without copying them (the `String`'s buffer is zeroed on drop).
    fn from(password: String) -> Self {
        Password(SecretBytes(password.into_bytes()))
    }
}

impl From<&str> for Password {
    /// Copy the password; the caller's string is not zeroed.
    fn from(password: &str) -> Self {
        Password(SecretBytes(password.as_bytes().to_vec()))
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// Why a string is not a resource id. It never contains the string itself, which may be a
/// decrypted secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResourceIdError {
    /// Nothing at all.
    #[error("The resource id is empty")]
    Empty,
    /// Longer than [`MAX_RESOURCE_ID_LEN`].
    #[error("The resource id is {len} bytes long, more than {max}")]
    TooLong {
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The first character is not an ASCII letter or `_`.
    #[error("The resource id does not start with a letter or `_`")]
    BadFirst,
    /// A character outside `[A-Za-z0-9_.:-]`.
    #[error("The resource id has a character outside [A-Za-z0-9_.:-] at byte {position}")]
    BadCharacter {
        /// Byte offset of the first offending character.
        position: usize,
    },
    /// The bytes are not UTF-8 (only possible for a decrypted or command-produced id).
    #[error("The resource id is not UTF-8")]
    NotUtf8,
}

/// Check the resource id rule: 1 to [`MAX_RESOURCE_ID_LEN`] bytes of `[A-Za-z0-9_.:-]`,
/// starting with an ASCII letter or `_`.
///
/// The rule is what both decryption paths rely on to tell a right key from a wrong one whose
/// padding happened to look valid, and it keeps anything a guest can influence free of
/// whitespace, quotes and shell or XML syntax before it reaches Pacemaker tools.
pub fn check_resource_id(id: &str) -> Result<(), ResourceIdError> {
    let bytes = id.as_bytes();
    let Some(&first) = bytes.first() else {
        return Err(ResourceIdError::Empty);
    };
    if bytes.len() > MAX_RESOURCE_ID_LEN {
        return Err(ResourceIdError::TooLong {
            len: bytes.len(),
            max: MAX_RESOURCE_ID_LEN,
        });
    }
    if let Some(position) = bytes
        .iter()
        .position(|&b| !(b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-')))
    {
        return Err(ResourceIdError::BadCharacter { position });
    }
    if !(first.is_ascii_alphabetic() || first == b'_') {
        return Err(ResourceIdError::BadFirst);
    }
    Ok(())
}

/// Everything that can go wrong with legacy tokens, one variant per failed step. Messages never
/// contain a password or decrypted text; a token appears only as its first 16 characters.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LegacyError {
    /// The token is empty.
    #[error("The token is empty")]
    TokenEmpty,
    /// The token is longer than [`MAX_TOKEN_LEN`].
    #[error("Token {token:?} is {len} characters long, more than {max}")]
    TokenTooLong {
        /// The start of the token.
        token: String,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The token has a character that no base64 token contains; checked before running a
    /// [`DecryptCommand`], which is therefore not run.
    #[error("Token {token:?} has a character outside the base64 alphabet at byte {position}")]
    TokenCharset {
        /// The start of the token.
        token: String,
        /// Byte offset of the offending character.
        position: usize,
    },
    /// The token is not strict base64.
    #[error("Token {token:?} is not valid base64")]
    Base64 {
        /// The start of the token.
        token: String,
        /// What is wrong with it.
        #[source]
        problem: Base64Error,
    },
    /// The decoded token does not start with `Salted__` and an 8-byte salt, so it was not made
    /// by `openssl enc` with a password.
    #[error("Token {token:?} does not start with the \"Salted__\" header and salt of openssl enc")]
    NotSalted {
        /// The start of the token.
        token: String,
    },
    /// The ciphertext is empty or not whole 8-byte 3DES blocks.
    #[error("Token {token:?} has {len} bytes of ciphertext, not a positive multiple of 8")]
    CiphertextLength {
        /// The start of the token.
        token: String,
        /// Ciphertext length in bytes.
        len: usize,
    },
    /// No digest gave a key under which the ciphertext's padding is valid: the token was made
    /// with another password (or is garbage).
    #[error(
        "Token {token:?} does not decrypt with the configured password (tried {})",
        digest_list(tried)
    )]
    WrongPassword {
        /// The start of the token.
        token: String,
        /// The digests tried, in order.
        tried: Vec<Digest>,
    },
    /// A key decrypted the token with valid padding, but the result is not a resource id: a
    /// token for something else, or (rarely) a wrong password whose padding looked valid.
    #[error("Token {token:?} decrypts (digest {digest}) to something that is not a resource id")]
    BadResourceId {
        /// The start of the token.
        token: String,
        /// The first digest whose padding was valid.
        digest: Digest,
        /// What is wrong with the decrypted text.
        #[source]
        problem: ResourceIdError,
    },
    /// [`decrypt_token`] was given no digest to try.
    #[error("No key derivation digest configured for legacy tokens")]
    NoDigests,
    /// The resource id to encrypt breaks the resource id rule.
    #[error("Cannot make a token for an invalid resource id")]
    InvalidResourceId {
        /// What is wrong with it.
        #[source]
        problem: ResourceIdError,
    },
    /// OpenSSL failed (an algorithm missing from the loaded providers, or the RNG).
    #[error("OpenSSL failed to {step}")]
    Crypto {
        /// What was being done.
        step: &'static str,
        /// OpenSSL's error queue.
        #[source]
        source: ErrorStack,
    },
    /// The password file could not be read.
    #[error("Cannot read the legacy password file {}", path.display())]
    PasswordFileRead {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// The password file is not a regular file.
    #[error("The legacy password file {} is not a regular file", path.display())]
    PasswordFileNotRegular {
        /// The file.
        path: PathBuf,
    },
    /// Group or others have some access to the password file.
    #[error(
        "The legacy password file {} is accessible by group or others (mode {mode:04o}); \
         run `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    PasswordFileMode {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The password file's first line is empty.
    #[error("The legacy password file {} has an empty first line", path.display())]
    PasswordFileEmpty {
        /// The file.
        path: PathBuf,
    },
    /// The password file's first line is implausibly long.
    #[error("The first line of the legacy password file {} is longer than {max} bytes", path.display())]
    PasswordFileTooLong {
        /// The file.
        path: PathBuf,
        /// The limit.
        max: usize,
    },
    /// A decrypt command needs at least a program name.
    #[error("The decrypt command is empty")]
    CommandEmpty,
    /// The decrypt command could not be started.
    #[error("Cannot start the decrypt command `{program}`")]
    CommandSpawn {
        /// The program (never its arguments, which may hold a password).
        program: String,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// Waiting for the decrypt command or reading its output failed.
    #[error("Lost track of the decrypt command `{program}`")]
    CommandWait {
        /// The program.
        program: String,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// The decrypt command ran past its deadline; its process group was killed.
    #[error("The decrypt command `{program}` did not finish within {after:?} and was killed")]
    CommandTimeout {
        /// The program.
        program: String,
        /// The deadline it exceeded.
        after: Duration,
    },
    /// The decrypt command exited with another status than the configured one.
    #[error(
        "The decrypt command `{program}` {}, expected exit code {expected}",
        exit_description(*code)
    )]
    CommandExit {
        /// The program.
        program: String,
        /// Its exit code, `None` if a signal ended it.
        code: Option<i32>,
        /// The exit code that means success.
        expected: i32,
    },
    /// The decrypt command wrote more than [`MAX_COMMAND_OUTPUT`] bytes; it was killed.
    #[error("The decrypt command `{program}` wrote more than {max} bytes")]
    CommandOutputTooLong {
        /// The program.
        program: String,
        /// The limit.
        max: usize,
    },
    /// The decrypt command's output is not a resource id.
    #[error("The decrypt command `{program}` did not print a resource id")]
    CommandOutput {
        /// The program.
        program: String,
        /// What is wrong with the output.
        #[source]
        problem: ResourceIdError,
    },
}

fn digest_list(digests: &[Digest]) -> String {
    digests
        .iter()
        .map(|d| d.openssl_name())
        .collect::<Vec<_>>()
        .join(", ")
}

fn exit_description(code: Option<i32>) -> String {
    match code {
        Some(code) => format!("exited with code {code}"),
        None => "was killed by a signal".to_owned(),
    }
}

/// The start of a token, for error messages: the token comes from a guest, so it is bounded
/// (and the messages print it with `{:?}`, which escapes control characters).
fn excerpt(token: &str) -> String {
    let mut chars = token.chars();
    let mut shown: String = chars.by_ref().take(TOKEN_EXCERPT).collect();
    if chars.next().is_some() {
        shown.push('…');
    }
    shown
}

/// Check what every token must satisfy before anything else looks at it: not empty, at most
/// [`MAX_TOKEN_LEN`] bytes, only `[A-Za-z0-9+/=]`. The alphabet has no whitespace, quote, shell
/// syntax or leading `-`, so a token that passes cannot be read as an option or shell code.
fn check_token_charset(token: &str) -> Result<(), LegacyError> {
    if token.is_empty() {
        return Err(LegacyError::TokenEmpty);
    }
    if token.len() > MAX_TOKEN_LEN {
        return Err(LegacyError::TokenTooLong {
            token: excerpt(token),
            len: token.len(),
            max: MAX_TOKEN_LEN,
        });
    }
    if let Some(position) = token
        .bytes()
        .position(|b| base64::value(b).is_none() && b != b'=')
    {
        return Err(LegacyError::TokenCharset {
            token: excerpt(token),
            position,
        });
    }
    Ok(())
}

/// `EVP_BytesToKey` with one iteration, as `openssl enc -k` uses it: D1 = H(password ‖ salt),
/// Di = H(Di-1 ‖ password ‖ salt), concatenated until there are [`KEY_LEN`] bytes. ECB needs
/// no IV, so the bytes an IV would take are not derived.
fn derive_key(
    password: &Password,
    salt: &[u8; SALT_LEN],
    digest: Digest,
) -> Result<SecretBytes, LegacyError> {
    let crypto = |source| LegacyError::Crypto {
        step: "derive the key from the password",
        source,
    };
    let mut key = SecretBytes(Vec::with_capacity(KEY_LEN + 64));
    let mut previous: Option<openssl::hash::DigestBytes> = None;
    while key.0.len() < KEY_LEN {
        let mut hasher = Hasher::new(digest.message_digest()).map_err(crypto)?;
        if let Some(previous) = &previous {
            hasher.update(previous).map_err(crypto)?;
        }
        hasher.update(password.as_bytes()).map_err(crypto)?;
        hasher.update(salt).map_err(crypto)?;
        let block = hasher.finish().map_err(crypto)?;
        key.0.extend_from_slice(&block);
        if let Some(mut old) = previous.replace(block) {
            old.fill(0);
            std::hint::black_box(&mut *old);
        }
    }
    if let Some(mut last) = previous {
        last.fill(0);
        std::hint::black_box(&mut *last);
    }
    key.0.truncate(KEY_LEN);
    Ok(key)
}

/// How a 3DES decryption failed.
enum DecryptFailure {
    /// The last block's PKCS#5 padding is invalid: almost always a wrong key.
    Padding,
    /// OpenSSL could not set the cipher up.
    Crypto(LegacyError),
}

/// 3-key Triple-DES in ECB mode (`openssl enc -des-ede3`) with PKCS#5 padding.
fn des_ede3_ecb(
    mode: Mode,
    key: &SecretBytes,
    input: &[u8],
) -> Result<SecretBytes, DecryptFailure> {
    let crypto = |step| move |source| DecryptFailure::Crypto(LegacyError::Crypto { step, source });
    let cipher = Cipher::des_ede3();
    let mut crypter =
        Crypter::new(cipher, mode, &key.0, None).map_err(crypto("set up 3DES-ECB"))?;
    crypter.pad(true);
    // Crypter needs room for one block more than the input.
    let mut output = SecretBytes(vec![0; input.len() + cipher.block_size()]);
    let written = crypter
        .update(input, &mut output.0)
        .map_err(crypto("run 3DES-ECB"))?;
    let tail = output.0.get_mut(written..).unwrap_or_default();
    let finished = match crypter.finalize(tail) {
        Ok(finished) => finished,
        // Decryption's finalize fails only on bad padding.
        Err(_) if matches!(mode, Mode::Decrypt) => return Err(DecryptFailure::Padding),
        Err(source) => return Err(crypto("finish 3DES-ECB")(source)),
    };
    output.0.truncate(written + finished);
    Ok(output)
}

/// Interpret decrypted (or command-printed) bytes: remove one trailing `\n` (the one `echo`
/// added), then apply the resource id rule.
fn plaintext_to_resource_id(plaintext: &[u8]) -> Result<String, ResourceIdError> {
    let text = plaintext.strip_suffix(b"\n").unwrap_or(plaintext);
    let text = std::str::from_utf8(text).map_err(|_| ResourceIdError::NotUtf8)?;
    check_resource_id(text)?;
    Ok(text.to_owned())
}

/// Decrypt a legacy token made by `echo RSC | openssl des-ede3 -e -base64 -k PASSWORD` and
/// return the resource id.
///
/// The token must be one line of strict base64 (at most [`MAX_TOKEN_LEN`] characters, no
/// whitespace anywhere), decoding to `Salted__`, an 8-byte salt and a non-empty whole number of
/// 3DES blocks. Each digest in `digests` is tried in order; the first whose key gives valid
/// padding *and* a valid resource id (after removing one trailing newline) wins.
pub fn decrypt_token(
    token: &str,
    password: &Password,
    digests: &[Digest],
) -> Result<String, LegacyError> {
    if digests.is_empty() {
        return Err(LegacyError::NoDigests);
    }
    if token.is_empty() {
        return Err(LegacyError::TokenEmpty);
    }
    if token.len() > MAX_TOKEN_LEN {
        return Err(LegacyError::TokenTooLong {
            token: excerpt(token),
            len: token.len(),
            max: MAX_TOKEN_LEN,
        });
    }
    let blob = base64::decode(token).map_err(|problem| LegacyError::Base64 {
        token: excerpt(token),
        problem,
    })?;
    let salted = blob
        .strip_prefix(SALT_MAGIC.as_slice())
        .and_then(|rest| rest.split_first_chunk::<SALT_LEN>());
    let Some((salt, ciphertext)) = salted else {
        return Err(LegacyError::NotSalted {
            token: excerpt(token),
        });
    };
    if ciphertext.is_empty() || ciphertext.len() % DES_BLOCK != 0 {
        return Err(LegacyError::CiphertextLength {
            token: excerpt(token),
            len: ciphertext.len(),
        });
    }

    let mut first_bad_id: Option<(Digest, ResourceIdError)> = None;
    for &digest in digests {
        let key = derive_key(password, salt, digest)?;
        let plaintext = match des_ede3_ecb(Mode::Decrypt, &key, ciphertext) {
            Ok(plaintext) => plaintext,
            Err(DecryptFailure::Padding) => continue,
            Err(DecryptFailure::Crypto(error)) => return Err(error),
        };
        match plaintext_to_resource_id(&plaintext.0) {
            Ok(id) => return Ok(id),
            Err(problem) => {
                first_bad_id.get_or_insert((digest, problem));
            }
        }
    }
    Err(match first_bad_id {
        Some((digest, problem)) => LegacyError::BadResourceId {
            token: excerpt(token),
            digest,
            problem,
        },
        None => LegacyError::WrongPassword {
            token: excerpt(token),
            tried: digests.to_vec(),
        },
    })
}

/// Make a token for `resource`, as `echo RSC | openssl des-ede3 -e -base64 -k PASSWORD -md
/// DIGEST` would, with a fresh random salt.
///
/// For ids of up to 30 characters the result is byte for byte what `openssl enc -base64`
/// prints, minus the final newline. Longer ids give one unbroken line where openssl would wrap
/// at 64 columns: a wrapped token could not sit in a whitespace-separated hostlist anyway.
pub fn encrypt_token(
    resource: &str,
    password: &Password,
    digest: Digest,
) -> Result<String, LegacyError> {
    check_resource_id(resource).map_err(|problem| LegacyError::InvalidResourceId { problem })?;
    let mut salt = [0u8; SALT_LEN];
    openssl::rand::rand_bytes(&mut salt).map_err(|source| LegacyError::Crypto {
        step: "generate a salt",
        source,
    })?;
    let key = derive_key(password, &salt, digest)?;
    let mut plaintext = SecretBytes(Vec::with_capacity(resource.len() + 1));
    plaintext.0.extend_from_slice(resource.as_bytes());
    plaintext.0.push(b'\n');
    let ciphertext = match des_ede3_ecb(Mode::Encrypt, &key, &plaintext.0) {
        Ok(ciphertext) => ciphertext,
        Err(DecryptFailure::Crypto(error)) => return Err(error),
        // Encryption has no padding to check; des_ede3_ecb reports its failures as Crypto.
        Err(DecryptFailure::Padding) => {
            return Err(LegacyError::Crypto {
                step: "finish 3DES-ECB",
                source: ErrorStack::get(),
            });
        }
    };
    let mut blob = Vec::with_capacity(SALT_MAGIC.len() + SALT_LEN + ciphertext.0.len());
    blob.extend_from_slice(SALT_MAGIC);
    blob.extend_from_slice(&salt);
    blob.extend_from_slice(&ciphertext.0);
    Ok(base64::encode(&blob))
}

/// The original's external decrypt command (`vm-stonithd -c CMD [-i] [-e CODE]`), without its
/// shell: the operator gives an argv list, the token goes to the program on stdin or as one
/// last argument, and nothing is ever interpreted by a shell.
///
/// The program runs with an empty environment except `PATH` ([`COMMAND_PATH`]), in `/`, with
/// stderr discarded (it could echo what it decrypted into our logs), in its own process group
/// that is killed when the deadline passes or when the output exceeds [`MAX_COMMAND_OUTPUT`].
/// It succeeds only if it exits with the configured code and prints one resource id (one
/// trailing newline allowed).
///
/// `Debug` shows only the program name: the arguments may hold the password (`-k PASSWORD`).
pub struct DecryptCommand {
    argv: Vec<String>,
    stdin: bool,
    ok_code: i32,
    timeout: Duration,
}

impl fmt::Debug for DecryptCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecryptCommand")
            .field("program", &self.argv.first())
            .field(
                "args",
                &format_args!("<{} redacted>", self.argv.len().saturating_sub(1)),
            )
            .field("stdin", &self.stdin)
            .field("ok_code", &self.ok_code)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl DecryptCommand {
    /// Describe a decrypt command: `argv[0]` is the program (looked up in [`COMMAND_PATH`]),
    /// the rest its arguments. With `stdin`, the token and a newline are written to its stdin
    /// (as the original's `echo "TOKEN" | CMD`); otherwise the token is its last argument.
    /// `ok_code` is the exit code that means success; `timeout` bounds the whole run.
    pub fn new(
        argv: Vec<String>,
        stdin: bool,
        ok_code: i32,
        timeout: Duration,
    ) -> Result<Self, LegacyError> {
        match argv.first() {
            Some(program) if !program.is_empty() => Ok(Self {
                argv,
                stdin,
                ok_code,
                timeout,
            }),
            _ => Err(LegacyError::CommandEmpty),
        }
    }

    /// The program name, for messages.
    pub fn program(&self) -> &str {
        self.argv.first().map_or("", String::as_str)
    }

    /// Run the command on `token` and return the resource id it prints.
    ///
    /// The token's charset is checked first (see [`LegacyError::TokenCharset`]); a token that
    /// fails is refused without starting anything.
    pub fn run(&self, token: &str) -> Result<String, LegacyError> {
        check_token_charset(token)?;
        let Some((program, args)) = self.argv.split_first() else {
            return Err(LegacyError::CommandEmpty);
        };
        let mut command = Cmd::new(program)
            .args(args)
            .env_clear()
            .env("PATH", COMMAND_PATH)
            .current_dir("/")
            .discard_stderr()
            .max_stdout(MAX_COMMAND_OUTPUT)
            // on success too: nothing it left running in the background outlives the run
            .kill_group_at_exit()
            .redact_args()
            .timeout(self.timeout);
        command = if self.stdin {
            // as the original's `echo "TOKEN" | CMD`
            command.stdin(format!("{token}\n"))
        } else {
            command.arg(token)
        };
        let out = command.run().map_err(|e| match e {
            ProcessError::Spawn { source, .. } => LegacyError::CommandSpawn {
                program: program.clone(),
                source,
            },
            ProcessError::Timeout { .. } => LegacyError::CommandTimeout {
                program: program.clone(),
                after: self.timeout,
            },
            ProcessError::OutputTooLong { .. } => LegacyError::CommandOutputTooLong {
                program: program.clone(),
                max: MAX_COMMAND_OUTPUT,
            },
            ProcessError::Wait { source, .. } => LegacyError::CommandWait {
                program: program.clone(),
                source,
            },
        })?;
        let status = out.status;
        let output = SecretBytes(out.stdout);
        if status.code() != Some(self.ok_code) {
            return Err(LegacyError::CommandExit {
                program: program.clone(),
                code: status.code(),
                expected: self.ok_code,
            });
        }
        plaintext_to_resource_id(&output.0).map_err(|problem| LegacyError::CommandOutput {
            program: program.clone(),
            problem,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tokens made on this project's build host with OpenSSL 3.0.22:
    /// `printf '%s\n' RSC | openssl des-ede3 -e -base64 -k vmstonith -md DIGEST`.
    const VECTORS: &[(Digest, &str, &str)] = &[
        (
            Digest::Md5,
            "prmVMCTL_guest2",
            "U2FsdGVkX1/5x0wmTRCGhMpsl+zReDS7tVBnKGW4pqcB+Ls7TTP9KA==",
        ),
        (Digest::Md5, "a", "U2FsdGVkX19yjKSxZfBt3mBwn+E1Up1V"),
        (
            Digest::Md5,
            "prmVMCTL_abcdefghijklmnopqrstu",
            "U2FsdGVkX183mvNDN5PLB1rPb+APPbVcK6jfITjLebb5FZWSal3XZajkUtmuA7m6",
        ),
        (Digest::Md5, "Z.9:-_", "U2FsdGVkX19m2oy4u856yDTUZ4T6qgLW"),
        (
            Digest::Sha256,
            "prmVMCTL_guest2",
            "U2FsdGVkX1/5yxQasUaaNyQaf7dl/8S4v3jjc+QkcdYVmckrcoVYhw==",
        ),
        (Digest::Sha256, "a", "U2FsdGVkX1/fQDANd7A9kpeNs1MV70W7"),
        (
            Digest::Sha256,
            "prmVMCTL_abcdefghijklmnopqrstu",
            "U2FsdGVkX19DjdXxHPdX8lysNkGvAZyknZA08xpbMtU1eLzPDYSAa743kUUe9BI1",
        ),
        (Digest::Sha256, "Z.9:-_", "U2FsdGVkX1+v2vW4bmZeah8Qd+djGuRN"),
    ];

    fn password() -> Password {
        Password::from(ORIGINAL_PASSWORD)
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02X}")).collect()
    }

    #[test]
    fn key_derivation_matches_openssl() {
        // `openssl des-ede3 -k vmstonith -md DIGEST -S SALT -P`
        let cases = [
            (
                Digest::Md5,
                [0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08],
                "3B98708AA5845093EBC1BF8FAB3347C55669690B9C66C265",
            ),
            (
                Digest::Md5,
                [0xF9, 0xC7, 0x4C, 0x26, 0x4D, 0x10, 0x86, 0x84],
                "7D1B559D46EF55C3A186B0DBBE71D0B41FBA5EAF5453B1B0",
            ),
            (
                Digest::Sha256,
                [0xF9, 0xCB, 0x14, 0x1A, 0xB1, 0x46, 0x9A, 0x37],
                "06A2B5AD4830D166F09BD7E2E22FC8158A6A671C59F68858",
            ),
        ];
        for (digest, salt, expected) in cases {
            let key = derive_key(&password(), &salt, digest).unwrap();
            assert_eq!(hex(&key.0), expected, "{digest}");
        }
    }

    #[test]
    fn decrypts_openssl_tokens() {
        for &(digest, id, token) in VECTORS {
            assert_eq!(decrypt_token(token, &password(), &[digest]).unwrap(), id);
            assert_eq!(
                decrypt_token(token, &password(), LEGACY_DIGESTS).unwrap(),
                id
            );
        }
    }

    #[test]
    fn sha256_tokens_need_the_sha256_digest() {
        let token = "U2FsdGVkX1/5yxQasUaaNyQaf7dl/8S4v3jjc+QkcdYVmckrcoVYhw==";
        let err = decrypt_token(token, &password(), &[Digest::Md5]).unwrap_err();
        assert!(matches!(err, LegacyError::WrongPassword { .. }), "{err:?}");
    }

    #[test]
    fn a_plaintext_without_newline_is_accepted() {
        // printf 'abc' | openssl des-ede3 -e -base64 -k vmstonith -md md5
        let token = "U2FsdGVkX1/ZT7LVS9bEVS5SCTmzU9ql";
        assert_eq!(
            decrypt_token(token, &password(), LEGACY_DIGESTS).unwrap(),
            "abc"
        );
    }

    #[test]
    fn round_trip() {
        for digest in [Digest::Md5, Digest::Sha256] {
            for id in [
                "prmVMCTL_guest2",
                "a",
                "_x",
                &"r".repeat(MAX_RESOURCE_ID_LEN),
            ] {
                let token = encrypt_token(id, &password(), digest).unwrap();
                assert!(token.starts_with("U2FsdGVkX1"), "{token}");
                assert_eq!(decrypt_token(&token, &password(), &[digest]).unwrap(), id);
                assert_eq!(
                    decrypt_token(&token, &password(), LEGACY_DIGESTS).unwrap(),
                    id
                );
            }
        }
    }

    #[test]
    fn short_ids_give_one_openssl_line() {
        let id = "x".repeat(30);
        let token = encrypt_token(&id, &password(), Digest::Md5).unwrap();
        assert_eq!(token.len(), 64);
        assert!(!token.contains(['\n', ' ']));
    }

    #[test]
    fn fresh_salt_each_time() {
        let a = encrypt_token("rsc", &password(), Digest::Md5).unwrap();
        let b = encrypt_token("rsc", &password(), Digest::Md5).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn wrong_password_is_rejected() {
        let other = Password::from("not-vmstonith");
        for &(_, _, token) in VECTORS {
            let err = decrypt_token(token, &other, LEGACY_DIGESTS).unwrap_err();
            assert!(
                matches!(
                    err,
                    LegacyError::WrongPassword { .. } | LegacyError::BadResourceId { .. }
                ),
                "{err:?}"
            );
        }
        let token = encrypt_token("prmVMCTL_guest2", &password(), Digest::Sha256).unwrap();
        let err = decrypt_token(&token, &other, LEGACY_DIGESTS).unwrap_err();
        assert!(!err.to_string().contains("not-vmstonith"));
    }

    #[test]
    fn decrypted_text_must_be_a_resource_id() {
        // printf '%s' PLAINTEXT | openssl des-ede3 -e -base64 -A -k vmstonith -md md5
        let cases = [
            // "bad id!\n"
            (
                "U2FsdGVkX18gDkNPcWL6ZiZKwDHisdsrwIS+f5hzsIU=",
                ResourceIdError::BadCharacter { position: 3 },
            ),
            // "9abc\n"
            (
                "U2FsdGVkX19/Kd6i2THhBR+n93wurjk6",
                ResourceIdError::BadFirst,
            ),
            // "\n"
            ("U2FsdGVkX19iXIlOiQ/ZDyZ7FC8abQUH", ResourceIdError::Empty),
            // "abc\n\n": only one newline is removed
            (
                "U2FsdGVkX19Uofmai+Jfp01p6UC/HV53",
                ResourceIdError::BadCharacter { position: 3 },
            ),
        ];
        for (token, expected) in cases {
            let err = decrypt_token(token, &password(), LEGACY_DIGESTS).unwrap_err();
            match err {
                LegacyError::BadResourceId {
                    digest: Digest::Md5,
                    ref problem,
                    ..
                } => assert_eq!(problem, &expected),
                other => panic!("{token}: {other:?}"),
            }
            // The message never shows the decrypted text.
            let message = err.to_string();
            assert!(
                !message.contains("bad id") && !message.contains("9abc"),
                "{message}"
            );
        }
    }

    #[test]
    fn malformed_tokens_are_rejected_by_step() {
        let pw = password();
        let check = |token: &str, expected: &dyn Fn(&LegacyError) -> bool| {
            let err = decrypt_token(token, &pw, LEGACY_DIGESTS).unwrap_err();
            assert!(expected(&err), "{token:?}: {err:?}");
        };
        check("", &|e| matches!(e, LegacyError::TokenEmpty));
        check(&"A".repeat(MAX_TOKEN_LEN + 4), &|e| {
            matches!(e, LegacyError::TokenTooLong { .. })
        });
        let bad_base64 = |problem: Base64Error| move |e: &LegacyError| matches!(e, LegacyError::Base64 { problem: p, .. } if *p == problem);
        // Whitespace and line breaks inside, as a wrapped openssl token would have.
        assert_eq!(
            base64::decode("U2Fs dGVk"),
            Err(Base64Error::Character { position: 4 })
        );
        check(
            "U2FsdGVkX19yjKSx\nZfBt3mBwn+E1Up1V",
            &bad_base64(Base64Error::Character { position: 16 }),
        );
        check(
            " U2FsdGVkX19yjKSxZfBt3mBwn+E1Up1V",
            &bad_base64(Base64Error::Character { position: 0 }),
        );
        check(
            "U2FsdGVkX19yjKSxZfBt3mBwn+E1Up1V\n",
            &bad_base64(Base64Error::Character { position: 32 }),
        );
        // URL-safe alphabet.
        check(
            "U2FsdGVkX1_yjKSx",
            &bad_base64(Base64Error::Character { position: 10 }),
        );
        check(
            "$(touch /tmp/x)",
            &bad_base64(Base64Error::Character { position: 0 }),
        );
        check("U2FsdGVkX1", &bad_base64(Base64Error::Length { len: 10 }));
        check("U2Fs=GVk", &bad_base64(Base64Error::Padding));
        check("U2F=dGVk", &bad_base64(Base64Error::Padding));
        check("U===", &bad_base64(Base64Error::Padding));
        check("QQ==QUFB", &bad_base64(Base64Error::Padding));
        // "QR==" decodes to "A" only if the stray low bits are ignored.
        check("QR==", &bad_base64(Base64Error::NonCanonical));
        // Not "Salted__", or no complete salt.
        check(&base64::encode(b"Sorted__12345678abcdefgh"), &|e| {
            matches!(e, LegacyError::NotSalted { .. })
        });
        check(&base64::encode(b"Salted__1234567"), &|e| {
            matches!(e, LegacyError::NotSalted { .. })
        });
        check(&base64::encode(b"Salted__12345678"), &|e| {
            matches!(e, LegacyError::CiphertextLength { len: 0, .. })
        });
        check(&base64::encode(b"Salted__12345678abcdefg"), &|e| {
            matches!(e, LegacyError::CiphertextLength { len: 7, .. })
        });
        check(&base64::encode(b"Salted__12345678abcdefgh"), &|e| {
            matches!(
                e,
                LegacyError::WrongPassword { .. } | LegacyError::BadResourceId { .. }
            )
        });
        let err = decrypt_token(VECTORS[0].2, &pw, &[]).unwrap_err();
        assert!(matches!(err, LegacyError::NoDigests), "{err:?}");
    }

    #[test]
    fn error_messages_truncate_the_token() {
        let token = format!("{}!", "A".repeat(100));
        let err = decrypt_token(&token, &password(), LEGACY_DIGESTS).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("\"AAAAAAAAAAAAAAAA…\""), "{message}");
        assert!(!message.contains(&"A".repeat(17)), "{message}");
        // Control characters from a guest are escaped.
        let err = decrypt_token("\u{1b}[2J", &password(), LEGACY_DIGESTS).unwrap_err();
        assert!(!err.to_string().contains('\u{1b}'), "{err}");
    }

    #[test]
    fn resource_id_rule() {
        for ok in ["a", "_", "prmVMCTL_guest2", "A.b:c-d_9", &"z".repeat(128)] {
            assert_eq!(check_resource_id(ok), Ok(()), "{ok}");
        }
        assert_eq!(check_resource_id(""), Err(ResourceIdError::Empty));
        assert_eq!(
            check_resource_id(&"z".repeat(129)),
            Err(ResourceIdError::TooLong { len: 129, max: 128 })
        );
        for bad_first in ["1abc", "-a", ".a", ":a"] {
            assert_eq!(check_resource_id(bad_first), Err(ResourceIdError::BadFirst));
        }
        for (bad, position) in [("a b", 1), ("a/b", 1), ("ab\n", 2), ("aé", 1), ("a$(x)", 1)] {
            assert_eq!(
                check_resource_id(bad),
                Err(ResourceIdError::BadCharacter { position }),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn encrypt_validates_the_resource_id() {
        for bad in ["", "9x", "a b", "x\n", &"a".repeat(129)] {
            let err = encrypt_token(bad, &password(), Digest::Md5).unwrap_err();
            assert!(
                matches!(err, LegacyError::InvalidResourceId { .. }),
                "{err:?}"
            );
        }
    }

    #[test]
    fn password_debug_is_redacted() {
        let pw = Password::from(String::from("sekrit"));
        assert_eq!(format!("{pw:?}"), "Password(<redacted>)");
        assert_eq!(format!("{pw:#?}"), "Password(<redacted>)");
    }

    #[test]
    fn decrypt_command_debug_hides_arguments() {
        let command = DecryptCommand::new(
            vec!["openssl".into(), "-k".into(), "sekrit".into()],
            true,
            0,
            Duration::from_secs(1),
        )
        .unwrap();
        let shown = format!("{command:?}");
        assert!(
            shown.contains("openssl") && !shown.contains("sekrit"),
            "{shown}"
        );
        assert!(matches!(
            DecryptCommand::new(Vec::new(), true, 0, Duration::from_secs(1)),
            Err(LegacyError::CommandEmpty)
        ));
        assert!(matches!(
            DecryptCommand::new(vec![String::new()], true, 0, Duration::from_secs(1)),
            Err(LegacyError::CommandEmpty)
        ));
    }

    mod password_file {
        use super::*;
        use std::fs;

        fn write(dir: &tempfile::TempDir, contents: &[u8], mode: u32) -> PathBuf {
            let path = dir.path().join("legacy.pw");
            fs::write(&path, contents).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            path
        }

        #[test]
        fn first_line_without_newline() {
            let dir = tempfile::tempdir().unwrap();
            let path = write(&dir, b"vmstonith\nsecond line\n", 0o600);
            let pw = Password::from_file(&path).unwrap();
            assert_eq!(pw.as_bytes(), b"vmstonith");
            let path = write(&dir, b"vmstonith", 0o400);
            assert_eq!(Password::from_file(&path).unwrap().as_bytes(), b"vmstonith");
        }

        #[test]
        fn group_or_other_access_is_refused() {
            let dir = tempfile::tempdir().unwrap();
            for mode in [0o644, 0o640, 0o604, 0o620, 0o601] {
                let path = write(&dir, b"vmstonith\n", mode);
                let err = Password::from_file(&path).unwrap_err();
                assert!(
                    matches!(err, LegacyError::PasswordFileMode { .. }),
                    "{err:?}"
                );
                let message = err.to_string();
                assert!(message.contains(&path.display().to_string()), "{message}");
                assert!(message.contains("chmod 600"), "{message}");
                assert!(!message.contains("vmstonith\n"), "{message}");
            }
        }

        #[test]
        fn empty_missing_and_odd_files_are_refused() {
            let dir = tempfile::tempdir().unwrap();
            for contents in [&b""[..], b"\n", b"\nvmstonith\n"] {
                let path = write(&dir, contents, 0o600);
                let err = Password::from_file(&path).unwrap_err();
                assert!(
                    matches!(err, LegacyError::PasswordFileEmpty { .. }),
                    "{err:?}"
                );
            }
            let path = write(&dir, &vec![b'x'; MAX_PASSWORD_FILE + 1], 0o600);
            let err = Password::from_file(&path).unwrap_err();
            assert!(
                matches!(err, LegacyError::PasswordFileTooLong { .. }),
                "{err:?}"
            );
            let err = Password::from_file(dir.path().join("absent")).unwrap_err();
            assert!(
                matches!(err, LegacyError::PasswordFileRead { .. }),
                "{err:?}"
            );
            fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).unwrap();
            let err = Password::from_file(dir.path()).unwrap_err();
            assert!(
                matches!(err, LegacyError::PasswordFileNotRegular { .. }),
                "{err:?}"
            );
        }
    }
}
