//! Sealing of fence requests and their replies.
//!
//! A guest cluster and the host cluster share a key (one per guest cluster, see [`key`]). A fence
//! request is sealed in the guest with AES-256-GCM, carries a fresh random nonce and the guest's
//! timestamp, and names the requesting guest; vm-stonithd opens it, checks it against the
//! [`replay::ReplayGuard`], and seals its reply under the same key, bound to the request's nonce,
//! so nothing between the host's decision and the guest's fence agent can forge "OK"
//! (`docs/security.md`, `docs/protocol.md`).
//!
//! This is the only crate that links OpenSSL. [`legacy`] reads the original pm_kvm_tools
//! tokens, for operators who turn legacy mode on while migrating.

pub mod base64;
pub mod envelope;
pub mod key;
pub mod legacy;
pub mod name;
pub mod replay;
pub mod reply;
pub mod request;

pub use envelope::{Nonce, SealError, SealedKind};
pub use key::{Key, KeyError, KeyId};
pub use name::{Name, NameError};
pub use replay::{ReplayError, ReplayGuard};
pub use reply::{FenceReply, Outcome, PowerState};
pub use request::{Action, FenceRequest, OpenedRequest};

/// OpenSSL's initialisation options (`openssl/crypto.h`, `openssl/ssl.h`; values fixed by its
/// ABI) that [`init_for_sealing`] uses.
mod init_opts {
    pub const NO_LOAD_CRYPTO_STRINGS: u64 = 0x0000_0001;
    pub const NO_ADD_ALL_CIPHERS: u64 = 0x0000_0010;
    pub const NO_ADD_ALL_DIGESTS: u64 = 0x0000_0020;
    pub const NO_ATEXIT: u64 = 0x0008_0000;
    pub const NO_LOAD_SSL_STRINGS: u64 = 0x0010_0000;
}

/// Initialises OpenSSL for sealing alone, for short-lived processes (the guest fence agent runs
/// once for every action Pacemaker's fencer takes). Must come before any other use of OpenSSL
/// in the process; afterwards it changes nothing.
///
/// It leaves out what sealing never uses and OpenSSL 3 otherwise builds on first use: the
/// legacy tables of every cipher and digest name (the provider's own names find AES-256-GCM
/// and the random generator) and the error-message tables (an OpenSSL error then shows as its
/// code). That is half of OpenSSL's start-up work; in a guest on an emulated CPU, about half of
/// the agent's time (docs/benchmarks.md). The configuration (`openssl.cnf`: providers, FIPS
/// mode) still loads as usual.
pub fn init_for_sealing() -> Result<(), SealError> {
    use init_opts::*;
    let opts = NO_LOAD_CRYPTO_STRINGS
        | NO_ADD_ALL_CIPHERS
        | NO_ADD_ALL_DIGESTS
        | NO_LOAD_SSL_STRINGS
        | NO_ATEXIT;
    // SAFETY: OPENSSL_init_ssl takes option bits and an optional settings pointer (null: the
    // defaults); it is thread-safe and may be called any number of times.
    #[allow(unsafe_code)]
    let ok = unsafe { openssl_sys::OPENSSL_init_ssl(opts, std::ptr::null()) };
    if ok == 1 {
        Ok(())
    } else {
        Err(SealError::Init)
    }
}
