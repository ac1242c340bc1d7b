//! The daemons' local socket: created mode 0600 (root only), refused if another daemon is
//! already listening on it, stale files replaced; peers identified by SO_PEERCRED.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tokio::net::{UnixListener, UnixStream};

/// The local socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// Another daemon answers on it.
    #[error("Another vm-connectd already listens on {0}; stop it first, or use --socket")]
    InUse(PathBuf),
    /// Creating, binding or securing it failed.
    #[error("Cannot {step} {path}")]
    Io {
        /// What we were doing.
        step: &'static str,
        /// The socket path.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// Who is on the other end of a local connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCred {
    /// Process id (0 if the kernel did not say).
    pub pid: i32,
    /// User id (`u32::MAX` if unknown: never root).
    pub uid: u32,
}

/// The kernel's record of the peer process.
pub fn peer_cred(stream: &UnixStream) -> PeerCred {
    match stream.peer_cred() {
        Ok(c) => PeerCred {
            pid: c.pid().unwrap_or(0),
            uid: c.uid(),
        },
        Err(_) => PeerCred {
            pid: 0,
            uid: u32::MAX,
        },
    }
}

/// The socket file a daemon created; removed when dropped, so a daemon that stops (or fails
/// to start after binding) leaves no file behind.
#[derive(Debug)]
pub struct SocketFile(PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Bind the local socket at `path`, mode 0600. Keep the [`SocketFile`] for as long as the
/// listener serves.
pub fn bind(path: &Path) -> Result<(UnixListener, SocketFile), LocalError> {
    let err = |step| {
        move |source| LocalError::Io {
            step,
            path: path.to_owned(),
            source,
        }
    };
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(LocalError::InUse(path.to_owned()));
        }
        // Left over from a daemon that did not exit cleanly.
        std::fs::remove_file(path).map_err(err("remove the stale socket"))?;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err("create the directory of"))?;
    }
    // The umask makes the socket 0600 from the moment it exists (chmod after bind would leave
    // a window where anyone could connect).
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let bound = UnixListener::bind(path);
    nix::sys::stat::umask(old);
    let listener = bound.map_err(err("listen on"))?;
    let file = SocketFile(path.to_owned());
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(err("set the permissions of"))?;
    Ok((listener, file))
}
