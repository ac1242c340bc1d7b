//! Default paths and limits of guest fencing, shared by the agent, the plugin, the daemon and
//! vm-ctl (which prints configuration that uses them).
//!
//! `agents/stonith/external/vm-stonith` is a shell script and keeps its own copies of
//! [`AGENT_TIMEOUT_SECS`] and [`AGENT_MAX_TIMEOUT_SECS`]; `tests/shell_plugin.rs` fails when
//! they differ from these.

/// vm-stonithd's configuration file.
pub const STONITHD_CONFIG: &str = "/etc/pm-kvm-tools/vm-stonithd.toml";
/// Where the host nodes keep the guest clusters' keys (vm-stonithd.toml's `key_dir`).
pub const KEY_DIR: &str = "/etc/pm-kvm-tools/keys";
/// Where a guest's fence agent reads its cluster's key (fence_vmstonith's `key_file`).
pub const GUEST_KEY_FILE: &str = "/etc/pm-kvm-tools/fence.key";

/// The fence agent's (and plugin's) default `timeout`: one whole request, retries included,
/// in seconds. Below vm-stonithd's [`MAX_TIMEOUT_SECS`] plus the relays' margins, so that the
/// agent gives up last but one.
pub const AGENT_TIMEOUT_SECS: u64 = 40;
/// The longest `timeout` (and delay) the agent and the plugin accept, in seconds: a day, as
/// vm-seal's request timeout.
pub const AGENT_MAX_TIMEOUT_SECS: u64 = 24 * 3600;

/// vm-stonithd.toml's default `clock_window`, seconds.
pub const CLOCK_WINDOW_SECS: u64 = 30;
/// Largest `clock_window` accepted, seconds (a day: beyond it the window protects nothing).
pub const MAX_CLOCK_WINDOW_SECS: u64 = 86_400;
/// vm-stonithd.toml's default `max_timeout` (cap on a request's own timeout), seconds; below
/// the host vm-connectd's request timeout (60 s).
pub const MAX_TIMEOUT_SECS: u64 = 55;
/// Largest `max_timeout` accepted, seconds.
pub const MAX_MAX_TIMEOUT_SECS: u64 = 3600;
/// vm-stonithd.toml's default `max_requests`.
pub const MAX_REQUESTS: usize = 64;
/// vm-stonithd.toml's default `max_requests_per_cluster` (or `max_requests` if smaller).
pub const MAX_REQUESTS_PER_CLUSTER: usize = 16;
