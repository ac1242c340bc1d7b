//! libvirt access for pm-kvm-tools.
//!
//! This is the only crate that links libvirt (through the `virt` crate, feature `connect`);
//! everything else sees the small `Hypervisor` trait, so code that only needs "which guests run
//! here and where is their channel socket" can be tested without a libvirt daemon. Without
//! `connect` it links no libvirt: domain XML parsing and [`virsh`] only (vm-ctl, whose every
//! start would otherwise load libvirt's ~50 libraries).
//!
//! - [`domain_xml`]: pure parsing of libvirt domain XML (name, UUID, the `vmconnectd`
//!   virtio-serial channel, autostart-relevant facts). Domain XML is operator-supplied input for
//!   vm-ctl, so the parser rejects what it does not understand instead of guessing.
//! - `events` (feature `connect`): domain lifecycle events (started, resumed after migration,
//!   stopped) from a libvirt event loop thread, through `virt-sys`: this crate's only `unsafe`
//!   code.
//! - `hypervisor` (feature `connect`): the `Hypervisor` trait and `Libvirt`, its implementation
//!   over a libvirt connection. Calls block; async callers use `spawn_blocking`.
//! - [`virsh`]: which domains are defined persistently and autostart, from two `virsh list`
//!   calls (no libvirt linked).

pub mod domain_xml;
#[cfg(feature = "connect")]
pub mod events;
#[cfg(feature = "connect")]
pub mod hypervisor;
pub mod virsh;

pub use domain_xml::{Channel, DomainXml, DomainXmlError, VMCONNECTD_CHANNEL};
#[cfg(feature = "connect")]
pub use events::{DomainEvent, EventWatcher};
#[cfg(feature = "connect")]
pub use hypervisor::{DomainInfo, DomainState, Hypervisor, Libvirt, LibvirtError};
