//! Guest mode, `--pacemaker-authkey PATH`: keeps the guest's Pacemaker key equal to the host
//! cluster's, for a guest that the host cluster runs as a guest node (docs/protocol.md §17).
//!
//! A thread of the daemon asks the host's `remote` module through the daemon's own local
//! socket, as any client would: on every new host link (the host introduced itself with a new
//! session: the daemon started, the host daemon restarted, the guest was live-migrated), then
//! every [`REFRESH`] (so that a key changed on the host arrives within that period), and after
//! a failure every [`RETRY`]. The request names the fingerprint of the key the guest holds;
//! the host answers `same`, or with its key, which is written to PATH atomically (a temporary
//! file created 0400 in the same directory, written, synced, renamed over PATH) and then
//! reported by asking again, so that the host publishes what the guest now holds. The key
//! itself is never logged; its fingerprint is.

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use vm_common::error_chain;
use vm_proto::Role;
use vm_proto::authkey::{AuthkeyReply, Fingerprint, KeyBytes, MAX_KEY, SERVICE, encode_request};
use vm_proto::client::{Client, ClientError};
use vm_proto::message::ErrorCode;

/// How often the key is checked while the link stays the same.
pub const REFRESH: Duration = Duration::from_secs(60);

/// How soon a failed attempt (no host, host busy, timeout) is repeated.
pub const RETRY: Duration = Duration::from_secs(5);

/// How long one request waits for the host.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the key could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The directory could not be created.
    #[error("cannot create the directory {}", .0.display())]
    Dir(PathBuf, #[source] std::io::Error),
    /// The temporary file could not be written.
    #[error("cannot write {}", .0.display())]
    Write(PathBuf, #[source] std::io::Error),
    /// It could not be renamed over the key file.
    #[error("cannot rename {} to {}", .0.display(), .1.display())]
    Rename(PathBuf, PathBuf, #[source] std::io::Error),
}

/// The fingerprint of the key at `path`, if it holds a usable one (1..=[`MAX_KEY`] bytes).
pub fn held(path: &Path) -> Option<Fingerprint> {
    let file = std::fs::File::open(path).ok()?;
    let mut buf = Vec::new();
    file.take(MAX_KEY as u64 + 1).read_to_end(&mut buf).ok()?;
    KeyBytes::new(buf).ok().map(|k| k.fingerprint())
}

/// Writes `key` to `path` atomically, mode 0400, owned by the daemon's user (root).
pub fn install(path: &Path, key: &KeyBytes) -> Result<(), InstallError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !dir.is_dir() {
        std::fs::create_dir_all(dir).map_err(|e| InstallError::Dir(dir.into(), e))?;
    }
    let name = path
        .file_name()
        .map_or_else(|| "authkey".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o400)
            .open(&tmp)?;
        f.write_all(key.expose())?;
        f.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(InstallError::Write(tmp, e));
    }
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(InstallError::Rename(tmp, path.into(), e));
    }
    // the rename itself must survive a crash
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// What one round ended with.
#[derive(Debug, PartialEq, Eq)]
enum Round {
    /// The guest holds the host's key (`installed`: it was just written).
    Same { installed: bool },
    /// The host refuses (this guest is not a guest node, or the host has no key).
    Refused(String),
    /// Not now (no host, busy, timeout, ...).
    Failed(String),
}

/// One exchange with the host, and the install it leads to.
fn round(socket: &Path, path: &Path) -> Round {
    let mut installed = false;
    // at most: ask, install, ask again to report what is now held
    for _ in 0..2 {
        let have = held(path);
        let answer = Client::connect(socket, Role::Client)
            .and_then(|mut c| c.request(SERVICE, &encode_request(have.as_ref()), REQUEST_TIMEOUT));
        let body = match answer {
            Ok(b) => b,
            Err(ClientError::Remote {
                code: ErrorCode::Forbidden | ErrorCode::BadRequest,
                message,
            }) => {
                return Round::Refused(message);
            }
            Err(e) => return Round::Failed(error_chain(&e)),
        };
        match AuthkeyReply::parse(&body) {
            Ok(AuthkeyReply::Same) => return Round::Same { installed },
            Ok(AuthkeyReply::Key(key)) => {
                if let Err(e) = install(path, &key) {
                    return Round::Failed(error_chain(&e));
                }
                installed = true;
                tracing::info!(fingerprint = %key.fingerprint(), path = %path.display(), "installed the host cluster's Pacemaker key");
            }
            Err(e) => return Round::Failed(format!("the host's answer is malformed: {e}")),
        }
    }
    Round::Failed("the host sent a key again right after it was installed".into())
}

/// Runs the key keeper for `path`, asking through the daemon's local `socket`; `link` is the
/// daemon's count of host links (changed by every new host session). Never returns.
pub fn keep(socket: PathBuf, path: PathBuf, link: Arc<AtomicU64>) {
    // the link the last round was for, and when the next is due on that link
    let mut asked_for: Option<u64> = None;
    let mut next = Instant::now();
    let mut last_refusal = String::new();
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let current = link.load(Ordering::SeqCst);
        if current == 0 || (asked_for == Some(current) && Instant::now() < next) {
            continue; // no host yet, or nothing due on this link
        }
        let outcome = round(&socket, &path);
        asked_for = Some(current);
        next = Instant::now()
            + match outcome {
                Round::Same { installed } => {
                    if !installed {
                        tracing::debug!("the Pacemaker key is the host cluster's");
                    }
                    last_refusal.clear();
                    REFRESH
                }
                Round::Refused(why) => {
                    // said once per reason, not every period
                    if why != last_refusal {
                        tracing::warn!("the host gives this guest no Pacemaker key: {why}");
                        last_refusal = why;
                    }
                    REFRESH
                }
                Round::Failed(why) => {
                    tracing::debug!("cannot check the Pacemaker key now (retrying): {why}");
                    RETRY
                }
            };
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn install_is_atomic_and_read_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pacemaker").join("authkey");
        assert_eq!(held(&path), None);
        let key = KeyBytes::new(vec![7u8; 4096]).unwrap();
        install(&path, &key).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o400);
        assert_eq!(held(&path), Some(key.fingerprint()));
        // a second key replaces the first, though the file is read-only
        let key2 = KeyBytes::new(vec![8u8; 256]).unwrap();
        install(&path, &key2).unwrap();
        assert_eq!(held(&path), Some(key2.fingerprint()));
        let left: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["authkey"], "no temporary file left");
    }
}
