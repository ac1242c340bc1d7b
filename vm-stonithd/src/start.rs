//! From the command line to a serving daemon: what `main` runs ([`main_exec`]), so that the
//! binary only parses, calls and maps the result to its exit code ([`MainError::exit_code`],
//! the one mapping).
//!
//! Start-up order: the configuration and keys (else exit [`exit::CONFIG`]); with `--check`, the
//! report of what would be served; else the signals blocked before any thread starts, the
//! node name, the cluster-event watcher, leftovers of a crashed predecessor cleaned, the keys
//! published, a signal thread, and serving until SIGTERM/SIGINT.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use vm_seal::Name;

use crate::cli::{Cli, exit};
use crate::config::{Config, ConfigError};
use crate::daemon::{Daemon, KeyDirError, load_keys};
use crate::fence::Executor;
use crate::keys::KeyRing;
use crate::remote::Remote;
use crate::watch::Watcher;

/// How long a stopping daemon waits for fences in progress to roll back.
const DRAIN: Duration = Duration::from_secs(60);

/// Why vm-stonithd ended with a failure.
#[derive(Debug, thiserror::Error)]
pub enum MainError {
    /// The configuration file cannot be used.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The key directory cannot be read.
    #[error(transparent)]
    Keys(#[from] KeyDirError),
    /// `--check`: guest clusters without a key (the report lists them).
    #[error("guest cluster(s) without a key: {}", .0.join(", "))]
    NoKey(Vec<String>),
    /// The signals could not be blocked for the signal thread.
    #[error("cannot block signals")]
    Signals(#[source] nix::Error),
    /// The state directory could not be created.
    #[error("cannot create {}", .0.display())]
    StateDir(PathBuf, #[source] std::io::Error),
    /// The signal thread could not be started.
    #[error("cannot start the signal thread")]
    SignalThread(#[source] std::io::Error),
    /// The `remote` module's thread could not be started.
    #[error("cannot start the remote module's thread")]
    RemoteThread(#[source] std::io::Error),
}

impl MainError {
    /// The process exit code for this error (the table is [`crate::cli::EXIT_STATUS`]).
    pub fn exit_code(&self) -> u8 {
        match self {
            MainError::Config(_) | MainError::Keys(_) => exit::CONFIG,
            MainError::NoKey(_) => exit::NO_KEY,
            MainError::Signals(_)
            | MainError::StateDir(..)
            | MainError::SignalThread(_)
            | MainError::RemoteThread(_) => exit::FAILURE,
        }
    }
}

/// Runs vm-stonithd as `cli` says: `--check`, or the daemon until a signal stops it.
pub fn main_exec(cli: &Cli) -> Result<(), MainError> {
    let config = Config::load(&cli.config)?;
    let keys = load_keys(&config)?;
    if cli.check {
        print!("{}", check_report(&cli.config, &config, &keys));
        let missing: Vec<String> = config
            .clusters
            .keys()
            .filter(|n| keys.of_cluster(n.as_str()).next().is_none())
            .map(Name::to_string)
            .collect();
        return if missing.is_empty() {
            Ok(())
        } else {
            Err(MainError::NoKey(missing))
        };
    }
    if config.legacy.is_some() {
        tracing::warn!(
            "legacy mode is on: pm_kvm_tools tokens are accepted from clusters with legacy = true; they are static, so anyone who saw one can replay it (docs/security.md)"
        );
    }

    // Signals are taken synchronously by one thread (sigwait): block them before any thread
    // starts, so every thread inherits the mask.
    let signals = vm_common::signals::block().map_err(MainError::Signals)?;

    let node = vm_common::process::cluster_node_name();
    std::fs::create_dir_all(&cli.state_dir)
        .map_err(|e| MainError::StateDir(cli.state_dir.clone(), e))?;
    let watcher = match std::env::current_exe()
        .and_then(|exe| Watcher::start(exe, cli.state_dir.join("events")))
    {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(
                "cannot watch cluster events ({e}): fence confirmations fall back to re-reading the status every 2 s"
            );
            Watcher::manual()
        }
    };
    let socket = cli.socket.clone().unwrap_or_else(|| config.socket.clone());
    let executor = Executor::new(vm_pcmk::Pacemaker::live(), watcher.clone(), node.clone());
    let daemon = Arc::new(Daemon::new(
        cli.config.clone(),
        config,
        keys,
        executor,
        node.clone(),
    ));
    tracing::info!(%node, config = %cli.config.display(), "vm-stonithd starting");
    // leftovers of a crashed predecessor first: nothing may stay half-set
    daemon.janitor();
    daemon.publish_keys();

    // The `remote` module (the Pacemaker key for guest nodes) on a connection and thread of
    // its own: a slow CIB read there never holds up a fence. Its CIB source follows
    // `CIB_file`, as Pacemaker's tools do.
    let remote = Arc::new(Remote::new(daemon.clone(), vm_pcmk::Pacemaker::from_env()));
    let shutdown = Arc::new(AtomicBool::new(false));
    {
        // SIGHUP reloads; SIGTERM/SIGINT roll back fences in progress and stop
        let (reload, stop, shutdown) = (daemon.clone(), daemon.clone(), shutdown.clone());
        let republish = remote.clone();
        vm_common::signals::spawn_thread(
            signals,
            move || {
                reload.reload();
                republish.publish_host_key();
            },
            move |s| {
                tracing::info!("{s}: rolling back fences in progress and stopping");
                shutdown.store(true, Ordering::SeqCst);
                stop.cancel_all();
            },
        )
        .map_err(MainError::SignalThread)?;
    }
    let remote_thread = {
        let (remote, socket, shutdown) = (remote.clone(), socket.clone(), shutdown.clone());
        std::thread::Builder::new()
            .name("remote".into())
            .spawn(move || {
                // here, not on the start path: the fence module registers without waiting
                remote.publish_host_key();
                remote.serve(&socket, &shutdown);
            })
            .map_err(MainError::RemoteThread)?
    };
    daemon.serve(&socket, &shutdown);
    let _ = remote_thread.join();
    if !daemon.drain(DRAIN) {
        tracing::warn!("some fences were still rolling back at exit; the next start cleans them");
    }
    watcher.stop();
    tracing::info!("vm-stonithd stopped");
    Ok(())
}

/// `--check`'s report: the file, its guest clusters, whom each may fence and with which keys.
pub fn check_report(path: &std::path::Path, config: &Config, keys: &KeyRing) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}: {} guest cluster(s), {} key(s) in {}",
        path.display(),
        config.clusters.len(),
        keys.len(),
        config.key_dir.display()
    );
    if config.clusters.is_empty() {
        // the shipped file: say what that means rather than leave "0" to interpretation
        let _ = writeln!(
            out,
            "no guest cluster is configured ([[cluster]]): every fence request will be refused"
        );
    }
    for c in config.clusters.values() {
        let ids: Vec<String> = keys
            .of_cluster(c.name.as_str())
            .map(|k| k.id().to_string())
            .collect();
        let names = |s: &BTreeSet<Name>| s.iter().map(Name::as_str).collect::<Vec<_>>().join(",");
        let _ = writeln!(
            out,
            "cluster {}: members {}; may fence {}; keys {}{}",
            c.name,
            names(&c.members),
            names(&c.targets),
            if ids.is_empty() {
                "NONE".to_owned()
            } else {
                ids.join(",")
            },
            if c.legacy {
                "; legacy tokens accepted"
            } else {
                ""
            }
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_its_documented_code() {
        let io = || std::io::Error::other("x");
        let config = Config::parse("colour = 1", std::path::Path::new("t.toml")).unwrap_err();
        for (e, code) in [
            (MainError::Config(config), 3),
            (
                MainError::Keys(KeyDirError {
                    dir: "/k".into(),
                    source: io(),
                }),
                3,
            ),
            (MainError::NoKey(vec!["web".into()]), 4),
            (MainError::Signals(nix::Error::EINVAL), 1),
            (MainError::StateDir("/run/x".into(), io()), 1),
            (MainError::SignalThread(io()), 1),
            (MainError::RemoteThread(io()), 1),
        ] {
            assert_eq!(e.exit_code(), code, "{e}");
            assert!(
                crate::cli::EXIT_STATUS.iter().any(|(c, _)| *c == code),
                "{code} is not in EXIT_STATUS"
            );
        }
    }

    #[test]
    fn the_check_report_lists_clusters_and_missing_keys() {
        let config = Config::parse(
            "[[cluster]]\nname = \"web\"\nmembers = [\"web1\", \"web2\"]\nlegacy = true\n",
            std::path::Path::new("t.toml"),
        )
        .unwrap();
        let r = check_report(std::path::Path::new("t.toml"), &config, &KeyRing::default());
        assert!(
            r.starts_with("t.toml: 1 guest cluster(s), 0 key(s) in "),
            "{r}"
        );
        assert!(
            r.contains("cluster web: members web1,web2; may fence web1,web2; keys NONE; legacy tokens accepted"),
            "{r}"
        );
    }
}
