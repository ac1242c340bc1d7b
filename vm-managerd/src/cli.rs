//! `vm-managerd`'s command line and exit statuses, in the library so that `cargo xtask assets`
//! renders the man page from the same definition `--help` uses.

use std::path::PathBuf;

use clap::Parser;

use crate::rules::DEFAULT_RULES;

/// Exit statuses: the shared ones of [`vm_common::exit`], then vm-managerd's own.
pub mod exit {
    /// Usage error (clap's own status).
    pub const USAGE: u8 = vm_common::exit::USAGE;
    /// The rule file is unusable.
    pub const CONFIG: u8 = vm_common::exit::CONFIG;
    /// The daemon could not start (state directory, signals, the start-up attribute).
    pub const START: u8 = 4;
}

/// Answer guests with the node attributes of the host node they run on.
///
/// Registers with the host vm-connectd as the `manager` module. A guest (its vm-client
/// agent) asks for attributes by name and gets their values on the host node it runs on,
/// converted by the rule file's rules; only attributes with a group in the rule file are
/// answered (and, with an `[@guests]` group, only those listed for that guest). A guest may hold
/// its request until a value changes: changes are seen through Pacemaker's CIB notifications
/// (one crm_mon) and at least every --refresh seconds. SIGHUP re-reads the rule file (an
/// unusable one is logged and the old rules stay in force); SIGTERM and SIGINT stop it.
///
/// Exit status: 0 stopped by a signal (or --check passed); 2 usage error; 3 rule file
/// unusable; 4 cannot start (state directory, signals, or setting the -n/-v attribute).
#[derive(Debug, Parser)]
// -V is --verbose, as in the original: the version is --version only
#[command(
    name = "vm-managerd",
    version,
    about,
    long_about,
    disable_version_flag = true
)]
pub struct Cli {
    /// Rule file (the original's format and path).
    #[arg(short, long, value_name = "PATH", default_value = DEFAULT_RULES)]
    pub config: PathBuf,
    /// At start-up, set this node attribute on this host node through attrd (with -v); it is
    /// deleted at exit, as the original did: guests' rules can then require vm-managerd.
    #[arg(short = 'n', long, value_name = "NAME", requires = "attr_value")]
    pub attr_name: Option<String>,
    /// The value of the -n attribute.
    #[arg(short = 'v', long, value_name = "VALUE", requires = "attr_name")]
    pub attr_value: Option<String>,
    /// vm-connectd's local socket.
    #[arg(long, value_name = "PATH", default_value = "/var/run/vmconnectd.sock")]
    pub socket: PathBuf,
    /// Directory for runtime files (the CIB event FIFO).
    #[arg(long, value_name = "DIR", default_value = "/run/vm-managerd")]
    pub state_dir: PathBuf,
    /// The host node's name in the cluster [default: crm_node -n].
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    /// Re-read the node's attributes at least this often, in seconds, CIB notifications or
    /// not.
    #[arg(long, value_name = "SECS", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..=60))]
    pub refresh: u64,
    /// Check the rule file, print what it exposes, and exit.
    #[arg(long)]
    pub check: bool,
    /// More log output (repeat for more).
    #[arg(short = 'V', long, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Print the version.
    #[arg(long, action = clap::ArgAction::Version)]
    pub version: Option<bool>,
}

/// Every exit status and its meaning, for the man page.
pub const EXIT_STATUS: &[(u8, &str)] = &[
    (
        0,
        "stopped by SIGTERM or SIGINT; --check: the rule file is usable",
    ),
    (exit::USAGE, "a usage error"),
    (exit::CONFIG, "the rule file is unusable"),
    (
        exit::START,
        "the daemon could not start (state directory, signal handling, setting the -n/-v attribute)",
    ),
];

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    #[test]
    fn cli_definition_is_consistent() {
        vm_common::exit::check_cli(&super::Cli::command());
    }

    #[test]
    fn attr_name_and_value_go_together_as_in_the_original() {
        super::Cli::try_parse_from(["vm-managerd", "-n", "a"]).unwrap_err();
        super::Cli::try_parse_from(["vm-managerd", "-v", "a"]).unwrap_err();
        let c = super::Cli::try_parse_from([
            "vm-managerd",
            "-n",
            "operator_check_status",
            "-v",
            "normal",
        ])
        .unwrap();
        assert_eq!(c.attr_name.as_deref(), Some("operator_check_status"));
    }

    #[test]
    fn help_names_every_exit_status_of_the_table() {
        let missing =
            vm_common::exit::missing_from_long_help(&super::Cli::command(), super::EXIT_STATUS);
        assert_eq!(missing, [] as [u8; 0]);
    }
}
