//! Being told when the CIB changes (docs/protocol.md §14.4): vm-pcmk's [`CibWatch`], one
//! `crm_mon` redrawing into a FIFO of vm-managerd's, whose output bumps a [`Trigger`] the
//! refresher waits on.

pub use vm_pcmk::watch::{CibWatch, Trigger};

/// What still works while the watcher is restarted (for its log line).
pub const MEANWHILE: &str = "changes are still read every refresh period";
