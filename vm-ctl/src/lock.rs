//! One mutating vm-ctl at a time on a host: an exclusive `flock` on a lock file.
//!
//! The original used `pgrep vm-ctl`, which is racy and matches unrelated processes. A lock
//! held through `flock` is released by the kernel when the process exits, however it exits.
//! Read-only commands (`list`, `show`, `check`, `--dry-run`) do not take it. Concurrent writers
//! on *other* hosts (or pcs/crmsh) are handled by the CIB's version check, not by this lock.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};

/// Default lock file.
pub const DEFAULT_LOCK_FILE: &str = "/run/lock/vm-ctl.lock";
/// Environment variable that overrides the lock file (tests run several vm-ctl at once).
pub const LOCK_ENV: &str = "VM_CTL_LOCK";

/// Holding this keeps other vm-ctl processes on this host out.
#[derive(Debug)]
pub struct RunLock {
    _flock: Flock<File>,
}

/// The lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another vm-ctl kept it for the whole wait.
    #[error(
        "Another vm-ctl (pid {holder}) is still changing the cluster after {waited:?}; \
         wait for it to finish, then retry (lock file {path})"
    )]
    Busy {
        /// The lock file.
        path: PathBuf,
        /// PID written by the holder ("unknown" if unreadable).
        holder: String,
        /// How long we waited.
        waited: Duration,
    },
    /// The lock file could not be opened.
    #[error("Cannot open the lock file {path}")]
    Open {
        /// The lock file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The lock file to use: `$VM_CTL_LOCK`, else [`DEFAULT_LOCK_FILE`].
pub fn lock_path() -> PathBuf {
    std::env::var_os(LOCK_ENV)
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from(DEFAULT_LOCK_FILE), PathBuf::from)
}

impl RunLock {
    /// Take the lock at `path`, waiting up to `wait` for another holder; `on_wait` is told
    /// once, with the holder's pid, when we have to wait.
    pub fn acquire(
        path: &Path,
        wait: Duration,
        mut on_wait: impl FnMut(&str),
    ) -> Result<Self, LockError> {
        let open = || {
            if let Some(dir) = path.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)
                .map_err(|source| LockError::Open {
                    path: path.to_owned(),
                    source,
                })
        };
        let started = Instant::now();
        let mut told = false;
        let mut file = open()?;
        loop {
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(mut lock) => {
                    // Record who holds it, for the message another vm-ctl prints.
                    let _ = lock.set_len(0);
                    let _ = lock.seek(SeekFrom::Start(0));
                    let _ = writeln!(lock, "{}", std::process::id());
                    return Ok(Self { _flock: lock });
                }
                Err((returned, _)) => {
                    let holder = read_holder(path);
                    if started.elapsed() >= wait {
                        return Err(LockError::Busy {
                            path: path.to_owned(),
                            holder,
                            waited: wait,
                        });
                    }
                    if !told {
                        on_wait(&holder);
                        told = true;
                    }
                    file = returned;
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }
}

fn read_holder(path: &Path) -> String {
    let mut s = String::new();
    let _ = File::open(path).and_then(|mut f| f.read_to_string(&mut s));
    let s = s.trim();
    if s.is_empty() {
        "unknown".to_owned()
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_waits_then_gives_up_naming_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l");
        let first = RunLock::acquire(&path, Duration::ZERO, |_| {}).unwrap();
        let mut told = None;
        let err = RunLock::acquire(&path, Duration::from_millis(300), |h| {
            told = Some(h.to_owned());
        })
        .unwrap_err();
        let me = std::process::id().to_string();
        assert_eq!(told.as_deref(), Some(me.as_str()));
        assert!(err.to_string().contains(&format!("pid {me}")), "{err}");
        drop(first);
        RunLock::acquire(&path, Duration::ZERO, |_| {}).unwrap();
    }
}
