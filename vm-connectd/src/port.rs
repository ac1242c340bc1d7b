//! The guest's end of the channel: the virtio-serial port (or, for tests, a unix socket
//! standing in for it), turned into a stream of [`PortEvent`]s and a writer.
//!
//! A virtio-serial port is a character device with connection semantics of its own: reads
//! return end-of-file while no host side is connected (and keep doing so at once, so a read
//! loop would spin), and a blocking write waits until a host side connects. The port is
//! therefore driven by two threads: the writer reports the first successful write after a
//! disconnection as "host connected" (that is exactly when the kernel let it through) and only
//! then lets the reader read again; the reader reports end-of-file as "host gone".

use std::fs::OpenOptions;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::mpsc;

/// Where the guest daemon's port is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortSpec {
    /// `/dev/virtio-ports/vmconnectd`, or the `vportNpM` device whose sysfs name is
    /// `vmconnectd` when udev did not create the link.
    Auto,
    /// A given path: a character device, or a unix socket (tests).
    Path(PathBuf),
}

/// What happens on the port.
#[derive(Debug)]
pub enum PortEvent {
    /// A host side is connected (again).
    Up,
    /// Bytes from the host.
    Data(Vec<u8>),
    /// The host side went away (host daemon stopped, guest migrated, ...).
    Down,
}

/// Writes to the port: control frames, and a bulk queue (stream data) written only when no
/// control frame waits (docs/protocol.md §16.4).
#[derive(Debug, Clone)]
pub struct PortWriter {
    control: mpsc::Sender<Vec<u8>>,
    bulk: mpsc::Sender<Vec<u8>>,
    socket: bool,
}

/// Control frames queued for the port before more are refused.
const CONTROL_FRAMES: usize = 64;

impl PortWriter {
    /// Queue bytes for the host; false when the queue is full (the host side is gone or not
    /// reading: the caller treats the frame as lost).
    pub fn offer(&self, bytes: Vec<u8>) -> bool {
        self.control.try_send(bytes).is_ok()
    }

    /// The bulk queue (its senders wait for room).
    pub fn bulk(&self) -> mpsc::Sender<Vec<u8>> {
        self.bulk.clone()
    }

    /// Whether the port is a unix socket standing in for the device (tests).
    pub fn is_socket(&self) -> bool {
        self.socket
    }
}

/// The receiving ends of a [`PortWriter`]'s two queues.
struct PortQueues {
    control: mpsc::Receiver<Vec<u8>>,
    bulk: mpsc::Receiver<Vec<u8>>,
}

impl PortQueues {
    /// The next bytes to write: a control frame if one waits, else bulk; `None` when the
    /// writer is gone.
    async fn next(&mut self) -> Option<Vec<u8>> {
        tokio::select! {
            biased;
            c = self.control.recv() => c,
            Some(b) = self.bulk.recv() => Some(b),
        }
    }
}

fn queues(socket: bool) -> (PortWriter, PortQueues) {
    let (ctx, crx) = mpsc::channel(CONTROL_FRAMES);
    let (btx, brx) = mpsc::channel(crate::frames::BULK_FRAMES);
    (
        PortWriter {
            control: ctx,
            bulk: btx,
            socket,
        },
        PortQueues {
            control: crx,
            bulk: brx,
        },
    )
}

/// The port could not be found or opened.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// No port named vmconnectd.
    #[error(
        "No virtio-serial port named {} (no {} and none in /sys/class/virtio-ports); add the \
         vmconnectd channel to the guest's domain XML",
        vm_proto::CHANNEL_NAME,
        vm_proto::GUEST_PORT_PATH
    )]
    NotFound,
    /// Opening failed.
    #[error(
        "Cannot open the port {path} (--port names the virtio-serial port, or a unix socket in \
         tests; only one process can hold a port open)"
    )]
    Open {
        /// The port.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// Find the port.
pub fn resolve(spec: &PortSpec) -> Result<PathBuf, PortError> {
    if let PortSpec::Path(p) = spec {
        return Ok(p.clone());
    }
    let link = Path::new(vm_proto::GUEST_PORT_PATH);
    if link.exists() {
        return Ok(link.to_owned());
    }
    // udev did not run: find the port whose name is vmconnectd, as udev's rule would
    let entries = std::fs::read_dir("/sys/class/virtio-ports").map_err(|_| PortError::NotFound)?;
    for e in entries.filter_map(Result::ok) {
        let name = std::fs::read_to_string(e.path().join("name")).unwrap_or_default();
        if name.trim() == vm_proto::CHANNEL_NAME {
            return Ok(Path::new("/dev").join(e.file_name()));
        }
    }
    Err(PortError::NotFound)
}

/// Open the port and start its I/O; events go to `events`.
pub async fn open(path: &Path, events: mpsc::Sender<PortEvent>) -> Result<PortWriter, PortError> {
    let is_socket = std::fs::metadata(path).is_ok_and(|m| m.file_type().is_socket());
    if is_socket {
        Ok(open_unix(path.to_owned(), events))
    } else {
        open_device(path, events)
    }
}

fn open_device(path: &Path, events: mpsc::Sender<PortEvent>) -> Result<PortWriter, PortError> {
    let open_err = |source| PortError::Open {
        path: path.to_owned(),
        source,
    };
    // one open file description for both directions: a port can be opened only once
    let mut wfile = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(open_err)?;
    let mut rfile = wfile.try_clone().map_err(open_err)?;
    let connected = Arc::new(AtomicBool::new(false));
    let (resume_tx, resume_rx) = std::sync::mpsc::channel::<()>();
    let (writer, mut queues) = queues(false);
    // the queues are served in priority order here; the thread below only writes, one frame
    // at a time, so a control frame waits behind at most the frame being written
    let (wtx, mut wrx) = mpsc::channel::<Vec<u8>>(1);
    tokio::spawn(async move {
        while let Some(bytes) = queues.next().await {
            if wtx.send(bytes).await.is_err() {
                return;
            }
        }
    });
    let (c, ev) = (Arc::clone(&connected), events.clone());
    std::thread::Builder::new()
        .name("port-writer".into())
        .spawn(move || {
            while let Some(bytes) = wrx.blocking_recv() {
                // blocks while no host side is connected
                match wfile.write_all(&bytes) {
                    Ok(()) => {
                        if !c.swap(true, Ordering::AcqRel) {
                            let _ = resume_tx.send(());
                            if ev.blocking_send(PortEvent::Up).is_err() {
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "port write failed");
                        std::thread::sleep(Duration::from_millis(200));
                    }
                }
            }
        })
        .map_err(open_err)?;
    std::thread::Builder::new()
        .name("port-reader".into())
        .spawn(move || {
            let mut buf = vec![0u8; 16 * 1024];
            // wait for the writer to see a host side before every read phase
            while resume_rx.recv().is_ok() {
                loop {
                    match rfile.read(&mut buf) {
                        Ok(0) | Err(_) => {
                            connected.store(false, Ordering::Release);
                            if events.blocking_send(PortEvent::Down).is_err() {
                                return;
                            }
                            break;
                        }
                        Ok(n) => {
                            if events
                                .blocking_send(PortEvent::Data(buf[..n].to_vec()))
                                .is_err()
                            {
                                return;
                            }
                        }
                    }
                }
            }
        })
        .map_err(open_err)?;
    Ok(writer)
}

/// A unix socket standing in for the port (tests): connect (retrying while it is not there),
/// report Up, relay bytes, report Down at end of stream and connect again.
fn open_unix(path: PathBuf, events: mpsc::Sender<PortEvent>) -> PortWriter {
    let (writer, mut queues) = queues(true);
    tokio::spawn(async move {
        let mut delay = Duration::from_millis(20);
        loop {
            let stream = match UnixStream::connect(&path).await {
                Ok(s) => s,
                Err(_) => {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(1));
                    continue;
                }
            };
            delay = Duration::from_millis(20);
            let (mut rd, mut wr) = stream.into_split();
            if events.send(PortEvent::Up).await.is_err() {
                return;
            }
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                tokio::select! {
                    r = rd.read(&mut buf) => match r {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if events.send(PortEvent::Data(buf[..n].to_vec())).await.is_err() {
                                return;
                            }
                        }
                    },
                    w = queues.next() => match w {
                        Some(bytes) => {
                            if wr.write_all(&bytes).await.is_err() {
                                break;
                            }
                        }
                        None => return,
                    },
                }
            }
            if events.send(PortEvent::Down).await.is_err() {
                return;
            }
        }
    });
    writer
}
