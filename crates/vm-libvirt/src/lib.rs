//! libvirt access for pm-kvm-tools.
//!
//! This is the only crate that links libvirt (through the `virt` crate); everything else sees
//! the small [`Hypervisor`] trait, so code that only needs "which guests run here and where is
//! their channel socket" can be tested without a libvirt daemon.
//!
//! - [`domain_xml`]: pure parsing of libvirt domain XML (name, UUID, the `vmconnectd`
//!   virtio-serial channel, autostart-relevant facts). Domain XML is operator-supplied input for
//!   vm-ctl, so the parser rejects what it does not understand instead of guessing.
//! - [`events`]: domain lifecycle events (started, resumed after migration, stopped) from a
//!   libvirt event loop thread, through `virt-sys`: this crate's only `unsafe` code.
//! - [`hypervisor`]: the [`Hypervisor`] trait and [`Libvirt`], its implementation over a libvirt
//!   connection. Calls block; async callers use `spawn_blocking`.

pub mod domain_xml;
pub mod events;
pub mod hypervisor;

pub use domain_xml::{Channel, DomainXml, DomainXmlError, VMCONNECTD_CHANNEL};
pub use events::{DomainEvent, EventWatcher};
pub use hypervisor::{DomainInfo, DomainState, Hypervisor, Libvirt, LibvirtError};
