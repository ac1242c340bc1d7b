//! One place that sets up `tracing` for every binary.
//!
//! Logs go to stderr (daemons run under systemd or Pacemaker, which collect stderr); the level
//! comes from `RUST_LOG` when set, otherwise from the `-v`/`-q` count the binary passes in.

use tracing_subscriber::EnvFilter;

/// Verbosity chosen on the command line: `-q` lowers it, each `-v` raises it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verbosity {
    /// Number of `-v` flags.
    pub verbose: u8,
    /// Whether `-q` was given.
    pub quiet: bool,
}

impl Verbosity {
    /// The default filter directive for this verbosity.
    pub fn directive(self) -> &'static str {
        if self.quiet {
            return "error";
        }
        match self.verbose {
            0 => "warn",
            1 => "info",
            2 => "debug",
            _ => "trace",
        }
    }
}

/// Install the global subscriber. Safe to call more than once: later calls are ignored, which
/// keeps tests that build several binaries' entry points in one process working.
pub fn init(verbosity: Verbosity) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(verbosity.directive()));
    // colours only for a person at a terminal: logs collected by journald, Pacemaker or a
    // test harness must stay plain text
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_wins_over_verbose() {
        let v = Verbosity {
            verbose: 3,
            quiet: true,
        };
        assert_eq!(v.directive(), "error");
    }

    #[test]
    fn each_v_raises_the_level() {
        let levels: Vec<_> = (0..5)
            .map(|n| {
                Verbosity {
                    verbose: n,
                    quiet: false,
                }
                .directive()
            })
            .collect();
        assert_eq!(levels, ["warn", "info", "debug", "trace", "trace"]);
    }
}
