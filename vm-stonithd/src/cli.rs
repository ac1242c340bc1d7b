//! `vm-stonithd`'s command line and exit statuses, in the library so that `cargo xtask assets`
//! renders the man page from the same definition `--help` uses.

use std::path::PathBuf;

use clap::Parser;

use vm_fence::defaults::STONITHD_CONFIG as DEFAULT_CONFIG;

/// Exit statuses: the shared ones ([`vm_common::exit`]: 1 could not start, 2 usage, 3
/// configuration) and vm-stonithd's own; [`crate::start::MainError::exit_code`] maps errors to
/// them.
pub mod exit {
    pub use vm_common::exit::{CONFIG, FAILURE, SUCCESS, USAGE};
    /// `--check`: the configuration is valid, but a guest cluster has no key.
    pub const NO_KEY: u8 = 4;
}

/// Carry out fence requests from guest clusters through the host Pacemaker cluster.
///
/// Registers with the host vm-connectd as the `stonith` module. Requests are sealed by the
/// guests' fence agents with their guest cluster's key (vm-ctl stonith keygen); who may fence
/// whom is in the configuration file. SIGHUP re-reads the configuration and keys; SIGTERM
/// rolls back fences in progress and exits.
///
/// Exit status: 0 stopped by a signal (or --check passed); 1 cannot start; 2 usage error; 3
/// configuration or key directory unusable; 4 (--check) a guest cluster has no key.
#[derive(Debug, Parser)]
#[command(name = "vm-stonithd", version, about, long_about)]
pub struct Cli {
    /// Configuration file.
    #[arg(short, long, value_name = "PATH", default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// vm-connectd's local socket (overrides the configuration's `socket`).
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Directory for the daemon's runtime files (the cluster event FIFO).
    #[arg(long, value_name = "DIR", default_value = "/run/vm-stonithd")]
    pub state_dir: PathBuf,
    /// Check the configuration and keys, print what would be served, and exit.
    #[arg(long)]
    pub check: bool,
    /// More log output (repeat for more).
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// Every exit status and its meaning, for the man page.
pub const EXIT_STATUS: &[(u8, &str)] = &[
    (
        exit::SUCCESS,
        "stopped by SIGTERM or SIGINT after rolling back fences in progress; --check: the configuration and every guest cluster's key are usable",
    ),
    (
        exit::FAILURE,
        "the daemon could not start (state directory, signal handling)",
    ),
    (exit::USAGE, "usage error"),
    (
        exit::CONFIG,
        "the configuration or the key directory is unusable",
    ),
    (
        exit::NO_KEY,
        "--check: the configuration is valid, but a guest cluster has no key",
    ),
];

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent_and_a_usage_error_exits_with_the_tables_usage_code() {
        assert_eq!(super::exit::USAGE, vm_common::exit::USAGE);
        vm_common::exit::check_cli(&super::Cli::command());
    }

    #[test]
    fn help_names_every_exit_status_of_the_table() {
        // --help says them in one line, the man page from EXIT_STATUS: the two must agree
        let missing =
            vm_common::exit::missing_from_long_help(&super::Cli::command(), super::EXIT_STATUS);
        assert_eq!(missing, [] as [u8; 0]);
    }
}
