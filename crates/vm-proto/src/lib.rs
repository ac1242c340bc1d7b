//! The wire protocol spoken over the virtio-serial channel between a guest's vm-connectd and
//! its host's vm-connectd, and on both daemons' local sockets.
//!
//! This crate is a trust boundary: everything it decodes on the host comes from a guest, which
//! may be hostile. It does no I/O beyond the codec. The frame format, message catalogue and
//! limits are specified in `docs/protocol.md` (issue #4 delivers them); until then the crate
//! holds the names both sides already agree on.

/// Name of the virtio-serial port (`<target type='virtio' name='vmconnectd'/>` in the domain
/// XML; `/dev/virtio-ports/vmconnectd` in the guest). Kept from the original tools.
pub const CHANNEL_NAME: &str = "vmconnectd";

/// Default path of vm-connectd's local socket, on hosts and guests alike.
pub const DEFAULT_SOCKET: &str = "/var/run/vmconnectd.sock";

/// Default host directory that holds the guests' channel sockets.
pub const DEFAULT_HOST_SOCKET_DIR: &str = "/var/lib/libvirt/qemu";

/// Where a guest finds its port when udev created the link.
pub const GUEST_PORT_PATH: &str = "/dev/virtio-ports/vmconnectd";
