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

/// The codes of an `EXIT_STATUS` table that the `Exit status:` paragraph of a program's long
/// help does not name (each as `CODE ` followed by its meaning), first to last; empty when it
/// names them all. `--help` says the codes in one line and the man page lists the table, so
/// every program's tests check the two agree with this.
pub fn missing_from_help(help: &str, table: &[(u8, &str)]) -> Vec<u8> {
    let line = help.split("Exit status:").nth(1).unwrap_or_default();
    table
        .iter()
        .map(|(code, _)| *code)
        .filter(|code| !line.contains(&format!("{code} ")))
        .collect()
}

/// The checks every program's command line gets in its tests: clap's own consistency checks
/// (they panic), and a usage error exiting with [`USAGE`]. For tests: it panics on a failure.
#[cfg(feature = "cli")]
pub fn check_cli(cmd: &clap::Command) {
    cmd.clone().debug_assert();
    match cmd
        .clone()
        .try_get_matches_from([cmd.get_name(), "--no-such-option"])
    {
        Ok(_) => panic!("an unknown option is a usage error"),
        Err(e) => assert_eq!(e.exit_code(), i32::from(USAGE), "{e}"),
    }
}

/// [`missing_from_help`] of `cmd`'s long help.
#[cfg(feature = "cli")]
pub fn missing_from_long_help(cmd: &clap::Command, table: &[(u8, &str)]) -> Vec<u8> {
    let help = cmd
        .get_long_about()
        .map(ToString::to_string)
        .unwrap_or_default();
    missing_from_help(&help, table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_not_named_after_exit_status_are_missing() {
        let table = [(SUCCESS, "ok"), (USAGE, "usage"), (CONFIG, "config")];
        let help = "Serves. 3 retries.\n\nExit status: 0 stopped; 2 usage error.";
        // 3 appears only before the paragraph
        assert_eq!(missing_from_help(help, &table), [CONFIG]);
        assert_eq!(
            missing_from_help("Exit status: 0 ok; 2 usage; 3 config", &table),
            [] as [u8; 0]
        );
        assert_eq!(missing_from_help("no paragraph", &table), [0, 2, 3]);
    }

    #[cfg(feature = "cli")]
    #[test]
    fn a_command_line_passes_the_shared_checks() {
        let cmd = clap::Command::new("prog")
            .long_about("Does things.\n\nExit status: 0 done; 2 usage error")
            .arg(
                clap::Arg::new("verbose")
                    .short('v')
                    .action(clap::ArgAction::Count),
            );
        check_cli(&cmd);
        assert_eq!(
            missing_from_long_help(&cmd, &[(SUCCESS, "done"), (USAGE, "usage")]),
            [] as [u8; 0]
        );
        assert_eq!(
            missing_from_long_help(&cmd, &[(CONFIG, "config")]),
            [CONFIG]
        );
    }

    #[cfg(feature = "cli")]
    #[test]
    #[should_panic(expected = "an unknown option is a usage error")]
    fn a_command_line_taking_any_option_fails_the_check() {
        let cmd = clap::Command::new("prog").arg(
            clap::Arg::new("x")
                .long("no-such-option")
                .action(clap::ArgAction::SetTrue),
        );
        check_cli(&cmd);
    }
}
