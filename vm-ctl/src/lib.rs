//! vm-ctl: manage libvirt guests as Pacemaker VirtualDomain resources.
//!
//! - [`config`]: the original `/etc/vm-ctl.conf` format, parsed (never executed).

pub mod config;
