//! The libvirt tier's fixture: this machine's test-bed libvirtd (`libvirtd.sh`).

use std::sync::Mutex;

use vm_libvirt::{Hypervisor, Libvirt};

use crate::{Exclusive, run_ok, script};

static LIBVIRT: Mutex<()> = Mutex::new(());

/// URI of the test-bed libvirtd.
pub const URI: &str = "qemu:///system";

/// Exclusive use of the host libvirtd. `acquire` starts it if needed and destroys domains an
/// earlier test left running.
#[derive(Debug)]
pub struct HostLibvirt {
    conn: Libvirt,
    _lock: Exclusive,
}

impl HostLibvirt {
    /// Wait for exclusive use and connect.
    pub fn acquire() -> Self {
        let lock = Exclusive::acquire(&LIBVIRT, "libvirt");
        run_ok(&script("libvirtd.sh").arg("up"));
        let conn = Libvirt::open(URI).unwrap_or_else(|e| panic!("{e}"));
        for dom in conn.domains().unwrap_or_default() {
            let _ = conn.destroy(&dom.name);
        }
        Self { conn, _lock: lock }
    }

    /// The connection.
    pub fn conn(&self) -> &Libvirt {
        &self.conn
    }
}
