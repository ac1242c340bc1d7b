//! libvirt domain lifecycle events (a guest started, stopped, migrated in or out).
//!
//! The `virt` crate has no wrapper for `virConnectDomainEventRegisterAny`, so this module calls
//! the C API through `virt-sys`. The workspace denies `unsafe` code; this module is one of the
//! three places allowed it (with vm-seal's OpenSSL initialisation and vm-stonithd's `pre_exec`
//! for its `crm_mon` watcher), and every block says why it is sound. Events arrive on a dedicated thread that runs libvirt's default event loop;
//! the caller gets them through a callback (usually forwarding into a channel). When the
//! connection to libvirtd drops (libvirtd restarted: keepalive or EOF), the watcher reports
//! [`DomainEvent::Disconnected`] once and its thread ends; the caller starts a new watcher.

#![allow(unsafe_code)]

use std::ffi::{CStr, CString, c_int, c_void};
use std::sync::Arc;
use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use virt_sys as sys;

use crate::hypervisor::LibvirtError;

/// What happened to a domain, as far as the relay cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainEvent {
    /// QEMU started the domain (fresh boot, restore, or incoming migration).
    Started {
        /// Domain name.
        name: String,
        /// It arrived by migration.
        migrated: bool,
    },
    /// The domain resumed (the end of an incoming live migration).
    Resumed {
        /// Domain name.
        name: String,
        /// It resumed because a migration completed.
        migrated: bool,
    },
    /// The domain stopped (shut off, destroyed, crashed, or migrated away).
    Stopped {
        /// Domain name.
        name: String,
        /// It left by migration.
        migrated: bool,
    },
    /// Any other lifecycle event (defined, suspended, ...), by libvirt's number.
    Other {
        /// Domain name.
        name: String,
        /// libvirt's `virDomainEventType`.
        event: i32,
    },
    /// The connection to libvirtd is gone; no more events from this watcher.
    Disconnected,
}

impl DomainEvent {
    fn from_raw(name: String, event: c_int, detail: c_int) -> Self {
        let (event_u, detail_u) = (event.unsigned_abs(), detail.unsigned_abs());
        let is = |v: u32| event_u == v && event >= 0;
        if is(sys::VIR_DOMAIN_EVENT_STARTED) {
            DomainEvent::Started {
                name,
                migrated: detail_u == sys::VIR_DOMAIN_EVENT_STARTED_MIGRATED,
            }
        } else if is(sys::VIR_DOMAIN_EVENT_RESUMED) {
            DomainEvent::Resumed {
                name,
                migrated: detail_u == sys::VIR_DOMAIN_EVENT_RESUMED_MIGRATED,
            }
        } else if is(sys::VIR_DOMAIN_EVENT_STOPPED) || is(sys::VIR_DOMAIN_EVENT_CRASHED) {
            DomainEvent::Stopped {
                name,
                migrated: is(sys::VIR_DOMAIN_EVENT_STOPPED)
                    && detail_u == sys::VIR_DOMAIN_EVENT_STOPPED_MIGRATED,
            }
        } else {
            DomainEvent::Other { name, event }
        }
    }
}

type Sink = Box<dyn Fn(DomainEvent) + Send + 'static>;

/// A running watcher. Dropping it does not stop the thread (libvirt's event loop cannot be
/// interrupted safely from outside); the thread ends when the connection closes, and a
/// daemon keeps one watcher for its whole life.
#[derive(Debug)]
pub struct EventWatcher {
    thread: Option<thread::JoinHandle<()>>,
}

impl EventWatcher {
    /// Whether the watcher's thread has ended (after [`DomainEvent::Disconnected`]).
    pub fn is_finished(&self) -> bool {
        self.thread
            .as_ref()
            .is_none_or(thread::JoinHandle::is_finished)
    }
}

static EVENT_LOOP: Once = Once::new();

/// Connect to `uri` and report every domain lifecycle event to `sink`, from a dedicated
/// thread, until the connection to libvirtd is lost.
pub fn watch(
    uri: &str,
    sink: impl Fn(DomainEvent) + Send + 'static,
) -> Result<EventWatcher, LibvirtError> {
    // libvirt's event loop must be registered before the connection is opened.
    EVENT_LOOP.call_once(|| {
        // SAFETY: registers libvirt's built-in poll-based event loop implementation; it takes no
        // pointers and is called once per process (Once), before any connection below.
        unsafe {
            sys::virEventRegisterDefaultImpl();
        }
    });
    let c_uri = CString::new(uri).map_err(|_| LibvirtError::Connect {
        uri: uri.to_owned(),
        source: virt::error::Error::last_error(),
    })?;
    // SAFETY: c_uri is a valid NUL-terminated string that outlives the call.
    let conn = unsafe { sys::virConnectOpen(c_uri.as_ptr()) };
    if conn.is_null() {
        return Err(LibvirtError::Connect {
            uri: uri.to_owned(),
            source: virt::error::Error::last_error(),
        });
    }
    let closed = Arc::new(AtomicBool::new(false));
    let close_flag = Arc::into_raw(Arc::clone(&closed)) as *mut c_void;
    // SAFETY: conn is a valid open connection. close_flag is an Arc<AtomicBool> turned into a
    // raw pointer; libvirt hands it back to on_close and, when the callback is unregistered or
    // the connection freed, to free_close_flag, which turns it back into the Arc and drops it.
    unsafe {
        sys::virConnectSetKeepAlive(conn, 5, 3);
        sys::virConnectRegisterCloseCallback(
            conn,
            Some(on_close),
            close_flag,
            Some(free_close_flag),
        );
    }
    let sink: Box<Sink> = Box::new(Box::new(sink));
    let sink_ptr = Box::into_raw(sink) as *mut c_void;
    // SAFETY: the lifecycle callback has libvirt's virConnectDomainEventCallback signature;
    // libvirt's API takes every event callback as the generic type and calls it with the
    // signature of the event id given (VIR_DOMAIN_EVENT_CALLBACK() in C does the same cast).
    // sink_ptr is a leaked Box<Sink>, freed by free_sink when the registration ends.
    let id = unsafe {
        let generic: unsafe extern "C" fn(sys::virConnectPtr, sys::virDomainPtr, *mut c_void) =
            std::mem::transmute::<
                unsafe extern "C" fn(
                    sys::virConnectPtr,
                    sys::virDomainPtr,
                    c_int,
                    c_int,
                    *mut c_void,
                ) -> c_int,
                unsafe extern "C" fn(sys::virConnectPtr, sys::virDomainPtr, *mut c_void),
            >(on_lifecycle);
        sys::virConnectDomainEventRegisterAny(
            conn,
            std::ptr::null_mut(),
            sys::VIR_DOMAIN_EVENT_ID_LIFECYCLE as c_int,
            Some(generic),
            sink_ptr,
            Some(free_sink),
        )
    };
    if id < 0 {
        let source = virt::error::Error::last_error();
        // SAFETY: conn is valid and not used after this; closing frees the close callback.
        unsafe {
            sys::virConnectClose(conn);
        }
        return Err(LibvirtError::Call {
            step: "register for domain lifecycle events",
            source,
        });
    }
    // The raw pointer is moved into the event thread, which alone uses it from now on.
    let conn_addr = conn as usize;
    let thread = thread::Builder::new()
        .name("libvirt-events".into())
        .spawn(move || {
            let conn = conn_addr as sys::virConnectPtr;
            while !closed.load(Ordering::Acquire) {
                // SAFETY: runs one iteration of the default event loop registered above.
                if unsafe { sys::virEventRunDefaultImpl() } < 0 {
                    break;
                }
            }
            // SAFETY: conn is still a valid pointer (only this thread uses it); deregistering
            // frees the sink through free_sink; closing releases the connection.
            unsafe {
                sys::virConnectDomainEventDeregisterAny(conn, id);
                sys::virConnectClose(conn);
            }
        })
        .map_err(|_| LibvirtError::Call {
            step: "start the libvirt event thread",
            source: virt::error::Error::last_error(),
        })?;
    Ok(EventWatcher {
        thread: Some(thread),
    })
}

unsafe extern "C" fn on_lifecycle(
    _conn: sys::virConnectPtr,
    dom: sys::virDomainPtr,
    event: c_int,
    detail: c_int,
    opaque: *mut c_void,
) -> c_int {
    // SAFETY: opaque is the Box<Sink> registered in `watch`, alive until free_sink; dom is a
    // valid domain for the duration of the callback, and virDomainGetName returns a string
    // owned by it (or NULL).
    let (sink, name) = unsafe {
        let sink = &*(opaque as *const Sink);
        let ptr = sys::virDomainGetName(dom);
        let name = if ptr.is_null() {
            String::new()
        } else {
            CStr::from_ptr(ptr).to_string_lossy().into_owned()
        };
        (sink, name)
    };
    let ev = DomainEvent::from_raw(name, event, detail);
    // A panic must not unwind into libvirt's C frames.
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sink(ev)));
    0
}

unsafe extern "C" fn free_sink(opaque: *mut c_void) {
    if opaque.is_null() {
        return;
    }
    // SAFETY: opaque came from Box::into_raw(Box<Sink>) in `watch`; libvirt calls this once.
    let sink = unsafe { Box::from_raw(opaque as *mut Sink) };
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        sink(DomainEvent::Disconnected);
    }));
}

unsafe extern "C" fn on_close(_conn: sys::virConnectPtr, _reason: c_int, opaque: *mut c_void) {
    // SAFETY: opaque is the Arc<AtomicBool> pointer registered in `watch`, alive until
    // free_close_flag.
    let flag = unsafe { &*(opaque as *const AtomicBool) };
    flag.store(true, Ordering::Release);
}

unsafe extern "C" fn free_close_flag(opaque: *mut c_void) {
    if !opaque.is_null() {
        // SAFETY: opaque came from Arc::into_raw in `watch`; libvirt calls this once.
        drop(unsafe { Arc::from_raw(opaque as *const AtomicBool) });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_events_are_classified() {
        let ev = |e, d| DomainEvent::from_raw("g".into(), e as c_int, d as c_int);
        assert_eq!(
            ev(
                sys::VIR_DOMAIN_EVENT_STARTED,
                sys::VIR_DOMAIN_EVENT_STARTED_MIGRATED
            ),
            DomainEvent::Started {
                name: "g".into(),
                migrated: true
            }
        );
        assert_eq!(
            ev(sys::VIR_DOMAIN_EVENT_STARTED, 0),
            DomainEvent::Started {
                name: "g".into(),
                migrated: false
            }
        );
        assert_eq!(
            ev(
                sys::VIR_DOMAIN_EVENT_RESUMED,
                sys::VIR_DOMAIN_EVENT_RESUMED_MIGRATED
            ),
            DomainEvent::Resumed {
                name: "g".into(),
                migrated: true
            }
        );
        assert_eq!(
            ev(
                sys::VIR_DOMAIN_EVENT_STOPPED,
                sys::VIR_DOMAIN_EVENT_STOPPED_MIGRATED
            ),
            DomainEvent::Stopped {
                name: "g".into(),
                migrated: true
            }
        );
        assert_eq!(
            ev(sys::VIR_DOMAIN_EVENT_CRASHED, 0),
            DomainEvent::Stopped {
                name: "g".into(),
                migrated: false
            }
        );
        assert_eq!(
            ev(sys::VIR_DOMAIN_EVENT_DEFINED, 0),
            DomainEvent::Other {
                name: "g".into(),
                event: 0
            }
        );
    }

    #[test]
    fn the_test_driver_reports_a_started_domain() {
        let (tx, rx) = std::sync::mpsc::channel();
        // test:///default has no daemon; its "running" domain is created here, in-process.
        let _w = match watch("test:///default", move |e| {
            let _ = tx.send(e);
        }) {
            Ok(w) => w,
            Err(e) => panic!("{e}"),
        };
        let conn = virt::connect::Connect::open(Some("test:///default")).unwrap();
        let xml = "<domain type='test'><name>evtest</name><memory>1024</memory><os><type>hvm</type></os></domain>";
        let _dom = conn.create_domain_xml(xml, 0).unwrap();
        // Separate connections to test:///default are separate fake hypervisors, so nothing is
        // guaranteed to arrive; this test only proves registration and the loop work.
        let _ = rx.recv_timeout(std::time::Duration::from_millis(200));
    }
}
