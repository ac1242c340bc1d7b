//! The daemons' signal handling: SIGHUP reloads, SIGTERM and SIGINT stop.
//!
//! Signals are taken by one thread with `sigwait` rather than by handlers, so what they do
//! (reload a file, roll back fences, wake waiters) runs as ordinary code. For that they must
//! be blocked in every thread: [`block`] runs first in `main`, before any thread starts (a
//! thread inherits its creator's mask), and [`spawn_thread`] afterwards.

use nix::sys::signal::{SigSet, Signal};

/// The signals a daemon takes: SIGHUP (reload), SIGTERM and SIGINT (stop).
pub const TAKEN: [Signal; 3] = [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP];

/// Blocks [`TAKEN`] in the calling thread (and so in every thread it starts afterwards).
pub fn block() -> nix::Result<SigSet> {
    let mut signals = SigSet::empty();
    for s in TAKEN {
        signals.add(s);
    }
    signals.thread_block()?;
    Ok(signals)
}

/// Starts the thread "signals": it calls `reload` on each SIGHUP and `stop` on the first
/// SIGTERM or SIGINT, then ends. `signals` is what [`block`] returned.
pub fn spawn_thread(
    signals: SigSet,
    reload: impl Fn() + Send + 'static,
    stop: impl FnOnce(Signal) + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            loop {
                match signals.wait() {
                    Ok(Signal::SIGHUP) => reload(),
                    Ok(s) => {
                        stop(s);
                        return;
                    }
                    Err(e) => tracing::warn!("waiting for signals: {e}"),
                }
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::thread::JoinHandleExt as _;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::{Arc, mpsc};
    use std::time::{Duration, Instant};

    #[test]
    fn sighup_reloads_and_sigterm_stops() {
        // blocked in this thread, so in the signal thread it starts; the signals are sent to
        // that thread alone (pthread_kill), never to the test process, whose other threads
        // would die of them
        let signals = block().unwrap();
        let reloads = Arc::new(AtomicU32::new(0));
        let r = reloads.clone();
        let (tx, rx) = mpsc::channel();
        let thread = spawn_thread(
            signals,
            move || {
                r.fetch_add(1, Ordering::SeqCst);
            },
            move |s| {
                let _ = tx.send(s);
            },
        )
        .unwrap();
        let send = |s| nix::sys::pthread::pthread_kill(thread.as_pthread_t(), s).unwrap();
        send(Signal::SIGHUP);
        let deadline = Instant::now() + Duration::from_secs(10);
        while reloads.load(Ordering::SeqCst) == 0 {
            assert!(Instant::now() < deadline, "SIGHUP did not reload");
            std::thread::sleep(Duration::from_millis(10));
        }
        send(Signal::SIGTERM);
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(10)).unwrap(),
            Signal::SIGTERM
        );
        thread.join().unwrap();
        assert_eq!(reloads.load(Ordering::SeqCst), 1);
    }
}
