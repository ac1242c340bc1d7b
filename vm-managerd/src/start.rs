//! vm-managerd's start-up and run, behind its thin `main`: the rule file (or `--check`'s
//! report), the signals blocked before any thread starts, the CIB watcher, the start-up
//! attribute, the signal and refresh threads, then serving until SIGTERM/SIGINT.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::attrs::CibSource;
use crate::cli::{Cli, exit};
use crate::daemon::Daemon;
use crate::rules::{Exposure, RuleFile, RulesError};
use crate::watch::{CibWatch, Trigger};

/// Why vm-managerd stopped other than by a signal.
#[derive(Debug, thiserror::Error)]
pub enum MainError {
    /// The rule file cannot be used.
    #[error("the rule file is unusable")]
    Rules(#[source] RulesError),
    /// Signals cannot be blocked for the signal thread.
    #[error("cannot block signals for the signal thread")]
    Signals(#[source] nix::Error),
    /// A thread cannot be started.
    #[error("cannot start the {0} thread")]
    Thread(&'static str, #[source] std::io::Error),
    /// The state directory cannot be made.
    #[error("cannot create the state directory {0}")]
    StateDir(PathBuf, #[source] std::io::Error),
    /// attrd refused the start-up attribute.
    #[error("failed in update of the attribute value: attrd_updater -n {0} -U ... {1}")]
    StartAttribute(String, String),
}

impl MainError {
    /// The exit status for this error (cli's [`EXIT_STATUS`](crate::cli::EXIT_STATUS)).
    pub fn exit_code(&self) -> u8 {
        match self {
            MainError::Rules(_) => exit::CONFIG,
            MainError::Signals(_)
            | MainError::Thread(..)
            | MainError::StateDir(..)
            | MainError::StartAttribute(..) => exit::START,
        }
    }
}

/// Runs vm-managerd as `cli` says: `--check`, or the daemon until a signal stops it.
pub fn main_exec(cli: &Cli) -> Result<(), MainError> {
    let rules = RuleFile::load(&cli.config).map_err(MainError::Rules)?;
    if cli.check {
        print_check(cli, &rules);
        return Ok(());
    }
    // signals are taken by one thread (sigwait): block them before any thread starts
    let signals = vm_common::signals::block().map_err(MainError::Signals)?;

    let node = cli
        .node
        .clone()
        .unwrap_or_else(vm_common::process::cluster_node_name);
    std::fs::create_dir_all(&cli.state_dir)
        .map_err(|e| MainError::StateDir(cli.state_dir.clone(), e))?;
    let pcmk = vm_pcmk::Pacemaker::from_env();
    let trigger = Trigger::default();
    // with a CIB file there are no notifications: the refresh period reads it
    let watch = if pcmk.cib_file().is_none() {
        match CibWatch::start(
            cli.state_dir.join("cib-events"),
            trigger.clone(),
            crate::watch::MEANWHILE,
        ) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(
                    "cannot watch the CIB ({e}): changes are read every {} s only",
                    cli.refresh
                );
                None
            }
        }
    } else {
        None
    };
    let daemon = Arc::new(Daemon::new(
        cli.config.clone(),
        rules,
        node.clone(),
        Box::new(CibSource::new(pcmk, node.clone())),
        trigger.clone(),
    ));
    let start_attribute = match (&cli.attr_name, &cli.attr_value) {
        (Some(name), Some(value)) => {
            attrd_updater(&["-n", name, "-U", value])
                .map_err(|e| MainError::StartAttribute(name.clone(), e))?;
            Some(name.clone())
        }
        _ => None,
    };
    tracing::info!(%node, rules = %cli.config.display(), "vm-managerd starting");

    let shutdown = Arc::new(AtomicBool::new(false));
    {
        // SIGHUP reloads the rule file; SIGTERM/SIGINT stop serving (the trigger wakes the
        // held waits and the refresher)
        let (shutdown, reload, trigger) = (shutdown.clone(), daemon.clone(), trigger.clone());
        vm_common::signals::spawn_thread(
            signals,
            move || reload.reload(),
            move |s| {
                tracing::info!("{s}: stopping");
                shutdown.store(true, Ordering::SeqCst);
                trigger.bump();
            },
        )
        .map_err(|e| MainError::Thread("signal", e))?;
    }
    let refresher = {
        let (shutdown, daemon) = (shutdown.clone(), daemon.clone());
        let period = Duration::from_secs(cli.refresh);
        std::thread::Builder::new()
            .name("refresh".into())
            .spawn(move || daemon.refresh_loop(period, &shutdown))
            .map_err(|e| MainError::Thread("refresh", e))?
    };
    daemon.serve(&cli.socket, &shutdown);
    let _ = refresher.join();
    if let Some(w) = watch {
        w.stop();
    }
    if let Some(name) = start_attribute
        && let Err(e) = attrd_updater(&["-n", &name, "-D"])
    {
        tracing::warn!("deleting the start-up attribute {name}: {e}");
    }
    tracing::info!("vm-managerd stopped");
    Ok(())
}

/// Runs `attrd_updater` (bounded), the error its stderr.
fn attrd_updater(args: &[&str]) -> Result<(), String> {
    vm_common::process::Cmd::new("attrd_updater")
        .args(args)
        .timeout(Duration::from_secs(30))
        .run_success()
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn print_check(cli: &Cli, rules: &RuleFile) {
    println!(
        "{}: {} attribute(s): {}",
        cli.config.display(),
        rules.attributes.len(),
        rules
            .attributes
            .iter()
            .map(|(name, r)| format!("{name} ({} rule(s))", r.len()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    match &rules.exposure {
        Exposure::All => println!("every guest may read every attribute above"),
        Exposure::PerGuest { guests, others } => {
            let list = |s: &std::collections::BTreeSet<String>| {
                if s.is_empty() {
                    "nothing".to_owned()
                } else {
                    s.iter().cloned().collect::<Vec<_>>().join(" ")
                }
            };
            for (g, s) in guests {
                println!("guest {g} may read: {}", list(s));
            }
            println!("any other guest may read: {}", list(others));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_its_documented_code() {
        let io = || std::io::Error::other("x");
        let rules = RuleFile::load(std::path::Path::new("/nonexistent/vm-manager.conf"))
            .expect_err("no such file");
        for (e, code) in [
            (MainError::Rules(rules), 3),
            (MainError::Signals(nix::Error::EINVAL), 4),
            (MainError::Thread("signal", io()), 4),
            (MainError::StateDir("/run/x".into(), io()), 4),
            (MainError::StartAttribute("a".into(), "exit 1".into()), 4),
        ] {
            assert_eq!(e.exit_code(), code, "{e}");
            assert!(
                crate::cli::EXIT_STATUS.iter().any(|(c, _)| *c == code),
                "{code} is not in EXIT_STATUS"
            );
        }
    }
}
