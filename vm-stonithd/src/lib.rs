//! vm-stonithd: carries out fence requests from guest clusters through the host Pacemaker
//! cluster.
//!
//! [`cli`] is the command line (here so that `cargo xtask assets` renders the man page from it).
//!
//! A guest's fence agent seals a request ([`vm_seal`]) and sends it over its virtio-serial
//! channel; the host vm-connectd delivers it to this daemon (registered as the `stonith`
//! module) together with the guest the channel belongs to. The daemon opens the request with
//! the guest cluster's key, checks authorisation ([`authz`]) and then freshness
//! ([`vm_seal::ReplayGuard`], so that only authorised requests are remembered), carries it out through the CIB ([`plan`], [`fence`]) and confirms it from the
//! cluster's status before it seals an "OK". Identical power requests in flight share one
//! execution ([`merge`]).
//!
//! It also serves the `remote` module ([`remote`]): the host cluster's Pacemaker authkey for
//! guests the CIB runs as guest nodes.

pub mod authz;
pub mod cli;
pub mod daemon;
pub mod fence;
pub mod keys;
pub mod merge;
pub mod plan;
pub mod remote;
pub mod start;
#[cfg(test)]
mod test_log;
pub mod watch;

/// vm-stonithd.toml: the one schema, shared with vm-ctl.
pub use vm_fence::config;
