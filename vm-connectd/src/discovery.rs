//! Finding guests' channel sockets on a host.
//!
//! Three sources, all event-driven (nothing is polled):
//! - a scan of the socket directory at start;
//! - inotify on that directory: QEMU creates a guest's socket when the guest starts, on the
//!   destination of a live migration and after every restart, so a new file is the most
//!   direct "connect now" signal (and works without libvirt);
//! - with libvirt, domain lifecycle events (started, resumed after migration) and, at start
//!   and after every reconnection to libvirtd, the running domains' `vmconnectd` channels.
//!
//! With libvirt, identity comes from libvirt alone: a socket is a guest's channel only if a
//! running domain's XML names it (its `vmconnectd` channel, unix, bind mode, in our directory),
//! and the host checks when it connects that the process listening on it is that domain's
//! QEMU ([`check_listener`]). A socket no domain claims is ignored, whoever made it: anyone who
//! can create a file in the directory (the QEMU user, an escaped guest) could otherwise name
//! itself after a cluster member. Identities are forgotten when libvirt reports the domain
//! stopped or migrated away. The operator may name sockets explicitly (`--guest NAME=SOCKET`,
//! for channels that are not libvirt's); only without libvirt (`--no-libvirt`, the operator's
//! choice) is any other socket's identity its file name.

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use tokio::sync::mpsc;
use vm_libvirt::{DomainEvent, DomainXml, Hypervisor, Libvirt};
use vm_proto::{Origin, OriginSource};

/// A guest socket to connect to, and who it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovered {
    /// The socket (QEMU listens on it).
    pub path: PathBuf,
    /// The guest, and how it is known (libvirt; the operator's `--guest NAME=SOCKET`,
    /// [`OriginSource::Configured`]; or, without libvirt, the file name).
    pub origin: Origin,
}

/// Discovery could not start.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// The directory could not be watched.
    #[error("Cannot watch the guest socket directory {dir}")]
    Watch {
        /// The directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: nix::Error,
    },
}

/// Keeps discovery running.
#[derive(Debug)]
pub struct DiscoveryHandle {
    _tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Start discovery in `dir`; found sockets are sent to `tx` (possibly more than once).
pub fn start(
    dir: &Path,
    libvirt_uri: Option<String>,
    configured: Vec<(String, PathBuf)>,
    tx: mpsc::Sender<Discovered>,
) -> Result<DiscoveryHandle, DiscoveryError> {
    std::fs::create_dir_all(dir).ok();
    // Blocking inotify read in a thread of its own: no unsafe fd registration with the
    // reactor, and a thread blocked in read(2) costs nothing.
    let inotify = Inotify::init(InitFlags::IN_CLOEXEC).map_err(|source| DiscoveryError::Watch {
        dir: dir.to_owned(),
        source,
    })?;
    inotify
        .add_watch(dir, AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO)
        .map_err(|source| DiscoveryError::Watch {
            dir: dir.to_owned(),
            source,
        })?;
    let ids = Arc::new(Identities::new(dir, libvirt_uri.clone(), configured));
    let mut tasks = Vec::new();

    // the directory: initial scan, then inotify
    let (d, t, i) = (dir.to_owned(), tx.clone(), Arc::clone(&ids));
    tasks.push(tokio::spawn(async move {
        for path in sockets_in(&d) {
            found(&i, &t, path).await;
        }
        let (name_tx, mut name_rx) = mpsc::channel::<std::ffi::OsString>(1024);
        let spawned = std::thread::Builder::new()
            .name("inotify".into())
            .spawn(move || {
                loop {
                    match inotify.read_events() {
                        Ok(events) => {
                            for name in events.into_iter().filter_map(|e| e.name) {
                                if name_tx.blocking_send(name).is_err() {
                                    return;
                                }
                            }
                        }
                        Err(nix::errno::Errno::EINTR) => {}
                        Err(e) => {
                            tracing::error!(error = %e, "inotify read failed; relying on libvirt events only");
                            return;
                        }
                    }
                }
            });
        if spawned.is_err() {
            tracing::error!("cannot start the inotify thread; relying on libvirt events only");
            return;
        }
        while let Some(name) = name_rx.recv().await {
            found(&i, &t, d.join(name)).await;
        }
    }));

    // libvirt: lifecycle events, and every running domain's channel after each (re)connection
    if let Some(uri) = libvirt_uri {
        let (t, i) = (tx, Arc::clone(&ids));
        tasks.push(tokio::spawn(async move {
            let mut delay = Duration::from_millis(500);
            loop {
                let (ev_tx, mut ev_rx) = mpsc::unbounded_channel::<DomainEvent>();
                let watcher = tokio::task::spawn_blocking({
                    let uri = uri.clone();
                    move || {
                        vm_libvirt::events::watch(&uri, move |e| {
                            // unbounded: libvirt's thread must never block; events are few
                            let _ = ev_tx.send(e);
                        })
                    }
                })
                .await;
                match watcher {
                    Ok(Ok(_w)) => {
                        delay = Duration::from_millis(500);
                        tracing::info!(%uri, "watching libvirt domain events");
                        for d in i.refresh().await {
                            let _ = t.send(d).await;
                        }
                        while let Some(ev) = ev_rx.recv().await {
                            match ev {
                                DomainEvent::Started { name, .. }
                                | DomainEvent::Resumed { name, .. } => {
                                    for d in i.refresh().await {
                                        if d.origin.domain() == name {
                                            let _ = t.send(d).await;
                                        }
                                    }
                                }
                                // Stopped, crashed or migrated away: its socket path no longer
                                // names it; whoever binds the path next is not that guest.
                                DomainEvent::Stopped { name, migrated } => {
                                    i.evict(&name);
                                    tracing::debug!(domain = %name, migrated, "domain stopped; its channel identity is forgotten");
                                }
                                DomainEvent::Disconnected => break,
                                DomainEvent::Other { .. } => {}
                            }
                        }
                        tracing::warn!(%uri, "lost the connection to libvirtd; reconnecting");
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(%uri, error = %e, "cannot watch libvirt events (retrying)");
                    }
                    Err(_) => {}
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }));
    }
    Ok(DiscoveryHandle { _tasks: tasks })
}

async fn found(ids: &Arc<Identities>, tx: &mpsc::Sender<Discovered>, path: PathBuf) {
    let is_socket = std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_socket());
    if !is_socket {
        return;
    }
    match ids.identify(&path).await {
        Some(origin) => {
            let _ = tx.send(Discovered { path, origin }).await;
        }
        None if ids.uri.is_some() => {
            tracing::warn!(socket = %path.display(), "no running libvirt domain has this socket as its vmconnectd channel; ignored");
        }
        None => {
            tracing::warn!(socket = %path.display(), "socket name is not a usable guest name; ignored");
        }
    }
}

/// Sockets directly in `dir`.
fn sockets_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_socket()))
        .map(|e| e.path())
        .collect()
}

/// Who owns which socket: libvirt's domains' channels, cached, refreshed when asked about a
/// socket it does not know.
#[derive(Debug)]
struct Identities {
    dir: PathBuf,
    uri: Option<String>,
    /// The operator's explicit (guest name, socket) mapping: trusted as libvirt is.
    configured: Vec<(String, PathBuf)>,
    cache: Mutex<Vec<Discovered>>,
}

impl Identities {
    fn new(dir: &Path, uri: Option<String>, configured: Vec<(String, PathBuf)>) -> Self {
        Self {
            dir: dir.to_owned(),
            uri,
            configured,
            cache: Mutex::new(Vec::new()),
        }
    }

    /// Re-read every running domain's vmconnectd channel in our directory from libvirt.
    async fn refresh(&self) -> Vec<Discovered> {
        let Some(uri) = self.uri.clone() else {
            return Vec::new();
        };
        let dir = self.dir.clone();
        let fresh = tokio::task::spawn_blocking(move || channels(&uri, &dir))
            .await
            .unwrap_or_default();
        if let Ok(mut c) = self.cache.lock() {
            c.clone_from(&fresh);
        }
        fresh
    }

    /// Forget the channels of domain `name` (it stopped or left by migration).
    fn evict(&self, name: &str) {
        if let Ok(mut c) = self.cache.lock() {
            c.retain(|d| d.origin.domain() != name);
        }
    }

    /// Who `path` belongs to: with libvirt, the running domain whose channel it is (or nobody);
    /// without, the name of the file.
    async fn identify(&self, path: &Path) -> Option<Origin> {
        let cached = |ids: &Self| {
            ids.cache
                .lock()
                .ok()
                .and_then(|c| c.iter().find(|d| d.path == path).map(|d| d.origin.clone()))
        };
        if let Some((name, _)) = self.configured.iter().find(|(_, p)| p == path) {
            return Origin::new(name.clone(), "", OriginSource::Configured).ok();
        }
        if let Some(o) = cached(self) {
            return Some(o);
        }
        if self.uri.is_some() {
            self.refresh().await;
            return cached(self);
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().trim_end_matches(".sock").to_owned())
            .unwrap_or_default();
        Origin::new(name, "", OriginSource::SocketName).ok()
    }
}

/// The running domains' `vmconnectd` channels (unix, bind mode) directly in `dir`.
fn channels(uri: &str, dir: &Path) -> Vec<Discovered> {
    let lv = match Libvirt::open(uri) {
        Ok(lv) => lv,
        Err(e) => {
            tracing::debug!(error = %e, "libvirt not reachable for identities");
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for dom in lv.domains().unwrap_or_default() {
        let Ok(xml) = lv.domain_xml(&dom.name) else {
            continue;
        };
        let Ok(parsed) = DomainXml::parse(&xml) else {
            continue;
        };
        let Some(ch) = parsed.vmconnectd_channel() else {
            continue;
        };
        let (Some(path), Some("bind")) = (ch.source_path.as_deref(), ch.source_mode.as_deref())
        else {
            continue;
        };
        let path = PathBuf::from(path);
        if ch.kind != "unix" || path.parent() != Some(dir) {
            tracing::debug!(domain = %dom.name, socket = %path.display(), "vmconnectd channel not in our directory; ignored");
            continue;
        }
        match Origin::new(dom.name.clone(), dom.uuid.clone(), OriginSource::Libvirt) {
            Ok(origin) => out.push(Discovered { path, origin }),
            Err(e) => {
                tracing::warn!(domain = %dom.name, error = %e, "domain cannot be named in the protocol; ignored");
            }
        }
    }
    out
}

/// The listening process of a guest socket is not the QEMU of the domain libvirt says owns it.
#[derive(Debug, thiserror::Error)]
pub enum ListenerError {
    /// The domain's QEMU pid file could not be read (the domain is not running here).
    #[error("cannot read the QEMU pid of domain {domain} from {path}")]
    PidFile {
        /// The domain.
        domain: String,
        /// The pid file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The pid file does not hold a pid.
    #[error("{path} does not hold a pid")]
    BadPidFile {
        /// The pid file.
        path: PathBuf,
    },
    /// Someone else listens on the socket.
    #[error("the socket is served by pid {peer}, not by domain {domain}'s QEMU (pid {qemu})")]
    NotQemu {
        /// The domain.
        domain: String,
        /// The listening process (SO_PEERCRED).
        peer: i32,
        /// The domain's QEMU.
        qemu: i32,
    },
}

/// How long a missing QEMU pid file is waited for: libvirt writes it while starting QEMU, and
/// inotify may tell us of the socket just before.
const PID_FILE_WAIT: Duration = Duration::from_secs(2);

/// Checks that `peer` (SO_PEERCRED of our connection: the process that listens on the socket)
/// is the QEMU of the domain `origin` names, as recorded by libvirt in `<pid_dir>/<domain>.pid`
/// (`/run/libvirt/qemu` for `qemu:///system`). Whoever can create files in the socket directory
/// could otherwise replace a running domain's socket with their own.
pub async fn check_listener(
    origin: &Origin,
    peer: i32,
    pid_dir: &Path,
) -> Result<(), ListenerError> {
    let domain = origin.domain();
    let path = pid_dir.join(format!("{domain}.pid"));
    let started = std::time::Instant::now();
    let text = loop {
        match tokio::fs::read_to_string(&path).await {
            Ok(t) => break t,
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    && started.elapsed() < PID_FILE_WAIT =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(source) => {
                return Err(ListenerError::PidFile {
                    domain: domain.to_owned(),
                    path,
                    source,
                });
            }
        }
    };
    let qemu: i32 = text
        .trim()
        .parse()
        .map_err(|_| ListenerError::BadPidFile { path: path.clone() })?;
    if qemu <= 0 || peer != qemu {
        return Err(ListenerError::NotQemu {
            domain: domain.to_owned(),
            peer,
            qemu,
        });
    }
    Ok(())
}
