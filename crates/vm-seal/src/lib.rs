//! Sealing of fence requests and their replies.
//!
//! A guest cluster and the host cluster share a key (one per guest cluster); a fence request is
//! sealed in the guest with authenticated encryption, carries a fresh nonce and a timestamp, and
//! is bound to the requesting guest; vm-stonithd opens it, and seals its reply the same way, so
//! nothing between the host's decision and the guest's fence agent can forge "OK".
//!
//! This is the only crate that will link OpenSSL. The design and the legacy token support are
//! delivered with issue #5 (`docs/security.md`); until then the crate is empty on purpose, so
//! that no code can depend on an unreviewed primitive.
