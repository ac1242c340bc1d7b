//! The wire protocol spoken over the virtio-serial channel between a guest's vm-connectd and
//! its host's vm-connectd, and on both daemons' local sockets.
//!
//! This crate is a trust boundary: everything it decodes on the host comes from a guest, which
//! may be hostile. Decoding never panics, never allocates more than [`MAX_FRAME`] plus the
//! caller's read chunk because of a length field, and rejects anything that is not exactly as
//! specified. The normative specification is `docs/protocol.md`; this crate implements it.
//!
//! Modules:
//! - [`crc32c`]: CRC-32C (Castagnoli), table-driven, used for both frame checksums.
//! - [`frame`]: the 28-byte frame header, [`Kind`], [`Frame`] and its encoding.
//! - [`decoder`]: [`Decoder`], the resynchronising byte-stream decoder, and [`DecodeError`].
//! - [`message`]: [`Message`] and the payload types, their encodings and [`MessageError`].
//! - [`client`]: the blocking client and module API on a daemon's local unix socket (the only
//!   I/O in this crate).
//! - [`authkey`]: the `remote` service: the Pacemaker authkey for guest nodes, its request
//!   and reply grammar, fingerprints and the node attributes they are published in.
//! - [`liveness`]: guest liveness as the host publishes it (the `pmkt-guest-<domain>` node
//!   attribute: its name, value format and states), the outcome of the heartbeat.

pub mod authkey;
pub mod client;
pub mod crc32c;
pub mod decoder;
pub mod frame;
pub mod liveness;
pub mod message;
mod wire;

pub use decoder::{DecodeError, Decoder};
pub use frame::{
    DEADLINE_VERSION, Frame, HEADER_LEN, Kind, MAGIC, MAX_FRAME, MAX_PAYLOAD, MAX_VERSION,
    MIN_VERSION, PayloadTooLong, STREAM_VERSION, encode,
};
pub use message::{
    Alive, Deliver, ErrorCode, ErrorMsg, Hello, MAX_BODY, MAX_SERVICE_LEN, MAX_STREAM_CHUNK,
    MAX_STREAM_WINDOW, MAX_TIMEOUT_MS, Message, MessageError, Origin, OriginSource, Pong, Register,
    Reply, Request, Retry, RetryReason, Role, ServiceName, StatusPage, StatusQuery, StatusReply,
    StreamClose, StreamCloseReason, StreamCredit, StreamData, StreamExpose, StreamOpen, TimeoutMs,
    negotiate,
};

/// Name of the virtio-serial port (`<target type='virtio' name='vmconnectd'/>` in the domain
/// XML; `/dev/virtio-ports/vmconnectd` in the guest). Kept from the original tools.
pub const CHANNEL_NAME: &str = "vmconnectd";

/// Default path of vm-connectd's local socket, on hosts and guests alike.
pub const DEFAULT_SOCKET: &str = "/var/run/vmconnectd.sock";

/// Default host directory that holds the guests' channel sockets.
pub const DEFAULT_HOST_SOCKET_DIR: &str = "/var/lib/libvirt/qemu";

/// Where a guest finds its port when udev created the link.
pub const GUEST_PORT_PATH: &str = "/dev/virtio-ports/vmconnectd";
