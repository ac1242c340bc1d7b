//! Exit codes that mean the same in every pm-kvm-tools program whose conventions are its own
//! (vm-ctl, vm-connectd, vm-stonithd; vm-connect for [`UNREACHABLE`]). Each program's own table
//! (its `exit` module and `EXIT_STATUS` list, shown in its man page and docs/operations.md)
//! starts from these and adds its own codes above them.
//!
//! Two programs keep the conventions of the software that runs them instead: `fence_vmstonith`
//! follows fence-agents (Pacemaker's fencer reads 0 success, 1 failure, and for `status` 2
//! off, so a usage error must be 1, not 2), and `vm-connect` follows the original vm-connect
//! (2 means "retry", which the cluster-glue plugin relies on, so its usage error is 64,
//! `EX_USAGE`). The cluster-glue plugin `external/vm-stonith` keeps cluster-glue's (0, 1, 6).

/// Success.
pub const SUCCESS: u8 = 0;
/// A failure no more specific code describes (a daemon that could not start or failed, an
/// unexpected error).
pub const FAILURE: u8 = 1;
/// The command line cannot be used: clap's own code for usage errors.
pub const USAGE: u8 = 2;
/// The program's configuration (file, keys) cannot be used.
pub const CONFIG: u8 = 3;
/// The local daemon the program talks to cannot be reached (not running, wrong socket).
pub const UNREACHABLE: u8 = 5;
