//! Log capture for this crate's unit tests: [`logged`].
//!
//! One subscriber for the whole test process, installed once as the global default, writes
//! each event into a buffer of the thread that emitted it, if that thread is capturing.
//!
//! Not `tracing::subscriber::with_default` per test: tracing caches per call site whether any
//! subscriber wants its events, and while at most one dispatcher is registered it asks only the
//! default of the thread that reaches the call site first (tracing-core 0.1.36,
//! `Dispatchers::rebuilder`). A test that reached a `warn!` first on its own thread, with no
//! subscriber, cached it as never wanted, and a test capturing its log concurrently then lost
//! that line: `daemon::tests::a_guest_known_by_its_socket_name_is_refused_unless_the_operator_trusts_that`
//! failed now and then in a full run. With one global subscriber every thread's default is the
//! same, wherever a call site is registered first.

use std::cell::RefCell;
use std::io;
use std::sync::Once;

thread_local! {
    /// The capture of this thread (`None`: not capturing).
    static CAPTURE: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
}

/// Writes into the emitting thread's capture, or nowhere.
struct ThreadCapture;

impl io::Write for ThreadCapture {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        CAPTURE.with(|c| {
            if let Some(buf) = c.borrow_mut().as_mut() {
                buf.extend_from_slice(b);
            }
        });
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Ends this thread's capture, also when the test panics (a thread may run several tests).
struct Capturing(Option<Vec<u8>>);

impl Drop for Capturing {
    fn drop(&mut self) {
        let previous = self.0.take();
        CAPTURE.with(|c| *c.borrow_mut() = previous);
    }
}

/// The log lines (info and above, as the daemon's default) this thread writes while `f` runs.
/// Lines of other threads, tests running concurrently among them, are not in it.
pub(crate) fn logged(f: impl FnOnce()) -> String {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_writer(|| ThreadCapture)
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other global subscriber in vm-stonithd's unit tests");
    });
    let previous = CAPTURE.with(|c| c.borrow_mut().replace(Vec::new()));
    let guard = Capturing(previous);
    f();
    let bytes = CAPTURE.with(|c| c.borrow_mut().take()).unwrap_or_default();
    drop(guard);
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The flake's cause, made deterministic: the call site is first reached on a thread that
    /// is not capturing, while this one is.
    #[test]
    fn a_call_site_first_reached_on_another_thread_is_still_captured() {
        fn emit(what: &str) {
            tracing::warn!("capture-probe {what}");
        }
        let log = logged(|| {
            std::thread::spawn(|| emit("there")).join().unwrap();
            emit("here");
        });
        assert!(log.contains("capture-probe here"), "{log:?}");
        assert!(!log.contains("capture-probe there"), "{log:?}");
        assert!(logged(|| {}).is_empty(), "a capture starts empty");
    }
}
