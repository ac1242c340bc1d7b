//! vm-connectd: the relay between guests and their host over the `vmconnectd` virtio-serial
//! channel, and vm-connect, its client.
//!
//! - [`cli`], [`connect_cli`]: the command lines of vm-connectd and vm-connect (here so that
//!   `cargo xtask assets` renders their man pages from them).
//! - [`host`]: host mode: a link per local guest, the local socket where modules register,
//!   routing with all state kept here (never taken from the wire). (feature `libvirt`)
//! - [`liveness`]: host mode: each guest's liveness from the heartbeat, and its publication as
//!   a node attribute through attrd. (feature `libvirt`)
//! - [`discovery`]: finding guests' channel sockets: directory scan, inotify, libvirt
//!   lifecycle events; identities from libvirt. (feature `libvirt`)
//! - [`guest`]: guest mode: the port to the host, local clients, retry on host changes.
//! - [`health`]: guest mode: the optional health checks reported in heartbeat answers.
//! - [`authkey`]: guest mode: keeping the host cluster's Pacemaker key (`--pacemaker-authkey`)
//!   for a guest node.
//! - [`port`]: the virtio-serial port (or a test socket) as events and a writer.
//! - [`frames`]: protocol frames over async streams, bounded per-peer queues.
//! - [`stream`]: byte streams over a guest link (TCP on either side), credit-based flow
//!   control, spliced by both modes.
//! - [`local`]: the local socket (0600, SO_PEERCRED).
//! - [`limits`]: per-guest bounds (in-flight, rate, timeouts) and offence logging.
//! - readiness for service managers (`READY=1`) is [`vm_common::notify`], shared with vm-stonithd.
//!
//! The static guest build (`--no-default-features`) leaves host mode and libvirt out.

pub mod authkey;
pub mod cli;
pub mod connect_cli;
pub mod frames;
pub mod guest;
pub mod health;
pub mod limits;
pub mod local;
pub mod port;
pub mod start;
pub mod status;
pub mod stream;

#[cfg(feature = "libvirt")]
pub mod discovery;
#[cfg(feature = "libvirt")]
pub mod host;
#[cfg(feature = "libvirt")]
pub mod liveness;

/// This software, as reported in Hello.
pub const SOFTWARE: &str = concat!("vm-connectd ", env!("CARGO_PKG_VERSION"));

/// A random-enough 64-bit value for session ids (no crypto needed: it only tells one link or
/// daemon life from the next).
pub fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    h.finish() | 1
}

/// A future that completes on SIGTERM or SIGINT (the daemons' shutdown signal).
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the default action (exit) still stops us.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}

/// A human-readable rendering of a daemon's status JSON ([`status::text`]).
pub fn status_text(json: &str) -> String {
    status::text(json)
}
