//! `vm-managerd`: answers guests with the node attributes of the host node they run on.
//! Thin binary: options, logging, signals, the start-up attribute, then the library's
//! [`Daemon`]. `main` only maps [`main_exec`]'s error to an exit status.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::Parser;
use nix::sys::signal::{SigSet, Signal};
use vm_managerd::attrs::CibSource;
use vm_managerd::cli::{Cli, exit};
use vm_managerd::daemon::Daemon;
use vm_managerd::rules::{Exposure, RuleFile, RulesError};
use vm_managerd::watch::{CibWatch, Trigger};

/// Why vm-managerd stopped other than by a signal.
#[derive(Debug, thiserror::Error)]
enum MainError {
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
    fn exit_code(&self) -> u8 {
        match self {
            MainError::Rules(_) => exit::CONFIG,
            MainError::Signals(_)
            | MainError::Thread(..)
            | MainError::StateDir(..)
            | MainError::StartAttribute(..) => exit::START,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // a daemon's log says what it does by default (info), -V for more
    vm_common::logging::init(vm_common::logging::Verbosity {
        verbose: cli.verbose.saturating_add(1),
        quiet: false,
    });
    match main_exec(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{}", vm_common::error_chain(&e));
            ExitCode::from(e.exit_code())
        }
    }
}

fn main_exec(cli: &Cli) -> Result<(), MainError> {
    let rules = RuleFile::load(&cli.config).map_err(MainError::Rules)?;
    if cli.check {
        print_check(cli, &rules);
        return Ok(());
    }
    // signals are taken by one thread (sigwait): block them before any thread starts
    let mut signals = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        signals.add(s);
    }
    signals.thread_block().map_err(MainError::Signals)?;

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
        match CibWatch::start(cli.state_dir.join("cib-events"), trigger.clone()) {
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
        let (shutdown, daemon, trigger) = (shutdown.clone(), daemon.clone(), trigger.clone());
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                loop {
                    match signals.wait() {
                        Ok(Signal::SIGHUP) => daemon.reload(),
                        Ok(s) => {
                            tracing::info!("{s}: stopping");
                            shutdown.store(true, Ordering::SeqCst);
                            trigger.bump();
                            return;
                        }
                        Err(e) => tracing::warn!("waiting for signals: {e}"),
                    }
                }
            })
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
    let out = vm_common::process::Cmd::new("attrd_updater")
        .args(args)
        .timeout(Duration::from_secs(30))
        .run()
        .map_err(|e| e.to_string())?;
    if out.success() {
        Ok(())
    } else {
        Err(format!(
            "exit {}: {}",
            out.code().unwrap_or(-1),
            out.stderr_text().trim()
        ))
    }
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
