//! `vm-stonithd`: carries out fence requests from guest clusters through the host cluster.
//! Thin binary: options, logging, signals, then the library's [`Daemon`].

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::Parser;
use nix::sys::signal::{SigSet, Signal};
use vm_stonithd::cli::{Cli, exit};
use vm_stonithd::config::Config;
use vm_stonithd::daemon::{Daemon, load_keys};
use vm_stonithd::fence::Executor;
use vm_stonithd::watch::{self, Watcher};

fn main() -> ExitCode {
    // crm_mon runs this program as its external agent for cluster events (see watch.rs)
    if watch::notify_from_env() {
        return ExitCode::SUCCESS;
    }
    let cli = Cli::parse();
    // a daemon's log has one line per request by default (info), -v for more
    vm_common::logging::init(vm_common::logging::Verbosity {
        verbose: cli.verbose.saturating_add(1),
        quiet: false,
    });
    let config = match Config::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::from(exit::CONFIG);
        }
    };
    let keys = match load_keys(&config) {
        Ok(k) => k,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::from(exit::CONFIG);
        }
    };
    if cli.check {
        println!(
            "{}: {} guest cluster(s), {} key(s) in {}",
            cli.config.display(),
            config.clusters.len(),
            keys.len(),
            config.key_dir.display()
        );
        if config.clusters.is_empty() {
            // the shipped file: say what that means rather than leave "0" to interpretation
            println!(
                "no guest cluster is configured ([[cluster]]): every fence request will be refused"
            );
        }
        for c in config.clusters.values() {
            let ids: Vec<String> = keys
                .of_cluster(c.name.as_str())
                .map(|k| k.id().to_string())
                .collect();
            let names = |s: &std::collections::BTreeSet<vm_seal::Name>| {
                s.iter().map(|n| n.as_str()).collect::<Vec<_>>().join(",")
            };
            println!(
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
        let missing = config
            .clusters
            .keys()
            .any(|n| keys.of_cluster(n.as_str()).next().is_none());
        return if missing {
            ExitCode::from(exit::NO_KEY)
        } else {
            ExitCode::SUCCESS
        };
    }
    if config.legacy.is_some() {
        tracing::warn!(
            "legacy mode is on: pm_kvm_tools tokens are accepted from clusters with legacy = true; they are static, so anyone who saw one can replay it (docs/security.md)"
        );
    }

    // Signals are taken synchronously by one thread (sigwait): block them before any thread
    // starts, so every thread inherits the mask.
    let mut signals = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        signals.add(s);
    }
    if let Err(e) = signals.thread_block() {
        tracing::error!("cannot block signals: {e}");
        return ExitCode::from(exit::START);
    }

    let node = node_name();
    if let Err(e) = std::fs::create_dir_all(&cli.state_dir) {
        tracing::error!("cannot create {}: {e}", cli.state_dir.display());
        return ExitCode::from(exit::START);
    }
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

    let shutdown = Arc::new(AtomicBool::new(false));
    {
        let shutdown = shutdown.clone();
        let daemon = daemon.clone();
        let spawned = std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                loop {
                    match signals.wait() {
                        Ok(Signal::SIGHUP) => daemon.reload(),
                        Ok(s) => {
                            tracing::info!("{s}: rolling back fences in progress and stopping");
                            shutdown.store(true, Ordering::SeqCst);
                            daemon.cancel_all();
                            return;
                        }
                        Err(e) => tracing::warn!("waiting for signals: {e}"),
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::error!("cannot start the signal thread: {e}");
            return ExitCode::from(exit::START);
        }
    }
    daemon.serve(&socket, &shutdown);
    if !daemon.drain(Duration::from_secs(60)) {
        tracing::warn!("some fences were still rolling back at exit; the next start cleans them");
    }
    watcher.stop();
    tracing::info!("vm-stonithd stopped");
    ExitCode::SUCCESS
}

/// This host node's name in the cluster (`crm_node -n`), else the kernel's node name.
fn node_name() -> String {
    let out = vm_common::process::Cmd::new("crm_node")
        .arg("-n")
        .timeout(Duration::from_secs(10))
        .run();
    match out {
        Ok(o) if o.success() && !o.stdout_text().trim().is_empty() => {
            o.stdout_text().trim().to_owned()
        }
        _ => nix::sys::utsname::uname()
            .map(|u| u.nodename().to_string_lossy().into_owned())
            .unwrap_or_else(|_| "localhost".to_owned()),
    }
}
