//! vm-managerd: answers guests with the node attributes of the host node they run on
//! (ping and disk status, operator flags), converted by the original pm_kvm_tools rule file
//! `/etc/vm-manager.conf`, and tells them when those change (docs/protocol.md §14).
//!
//! - [`cli`]: the command line and exit statuses (here so that `cargo xtask assets` renders
//!   the man page from it).
//! - [`rules`]: the rule file, read strictly; which guest may read which attribute.
//! - [`request`]: the `manager` service's request decoder (guest input) and reply encoder.
//! - [`attrs`]: this node's transient attributes, read from the CIB with `cibadmin`.
//! - [`watch`]: CIB change notifications through `crm_mon`.
//! - [`daemon`]: the module: answers, held `wait`s, refreshes, reloads.
//! - [`start`]: start-up and run (`main_exec`), behind the thin `main`.

pub mod attrs;
pub mod cli;
pub mod daemon;
pub mod request;
pub mod rules;
pub mod start;
pub mod watch;
