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
