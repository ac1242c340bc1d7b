//! Plumbing shared by the pm-kvm-tools binaries. No domain logic lives here.
//!
//! - [`process`]: run an external program (argv, never a shell) with a hard deadline and
//!   captured output. Every call to a Pacemaker tool or `virsh` goes through it, so no external
//!   call can hang a daemon or the CLI.
//! - [`notify`]: readiness for service managers (`READY=1` on `$NOTIFY_SOCKET`).
//! - [`logging`]: the `tracing` subscriber every binary installs once, at start.
//! - [`error_chain`]: an error and its sources on one line, how every binary reports a failure.
//! - [`exit`]: the exit codes that mean the same in every program.
//! - [`supervise`]: a long-running child (crm_mon) kept alive in its own process group, the
//!   FIFO its output goes to, and the change counter waiters block on.
//! - [`signals`]: the thread that takes a daemon's signals (reload, stop).
//! - [`xml`]: XML escaping for everything written as XML by hand.

mod error;
pub mod exit;
pub mod logging;
pub mod notify;
pub mod process;
pub mod signals;
pub mod supervise;
pub mod xml;

pub use error::error_chain;
