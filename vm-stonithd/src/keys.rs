//! The guest-cluster keys this host holds: every `*.key` file in the key directory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use vm_seal::{Key, KeyId};

/// Keys by id.
#[derive(Debug, Default)]
pub struct KeyRing {
    by_id: HashMap<KeyId, Key>,
}

/// A key file that could not be used (the others still are).
#[derive(Debug)]
pub struct KeyProblem {
    /// The file.
    pub path: PathBuf,
    /// What is wrong with it.
    pub problem: String,
}

impl KeyRing {
    /// Loads every `*.key` file in `dir`. Unusable files are returned as problems rather than
    /// failing the whole ring, so one bad file does not stop fencing for every cluster.
    pub fn load(dir: &Path) -> Result<(KeyRing, Vec<KeyProblem>), std::io::Error> {
        let mut ring = KeyRing::default();
        let mut problems = Vec::new();
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "key"))
            .collect();
        paths.sort();
        for path in paths {
            match Key::load(&path) {
                Ok(key) => {
                    if let Some(other) = ring.by_id.get(&key.id()) {
                        problems.push(KeyProblem {
                            path: path.clone(),
                            problem: format!(
                                "key id {} is already used by another key of cluster {}: \
                                 ignored (remove the duplicate file)",
                                key.id(),
                                other.cluster()
                            ),
                        });
                        continue;
                    }
                    ring.by_id.insert(key.id(), key);
                }
                Err(e) => problems.push(KeyProblem {
                    path,
                    problem: e.to_string(),
                }),
            }
        }
        Ok((ring, problems))
    }

    /// A ring of the given keys (tests).
    pub fn from_keys(keys: impl IntoIterator<Item = Key>) -> KeyRing {
        KeyRing {
            by_id: keys.into_iter().map(|k| (k.id(), k)).collect(),
        }
    }

    /// The key with id `id`.
    pub fn get(&self, id: KeyId) -> Option<&Key> {
        self.by_id.get(&id)
    }

    /// Every key, in id order.
    pub fn keys(&self) -> Vec<&Key> {
        let mut keys: Vec<&Key> = self.by_id.values().collect();
        keys.sort_by_key(|k| k.id());
        keys
    }

    /// The keys of guest cluster `cluster`.
    pub fn of_cluster<'a>(&'a self, cluster: &'a str) -> impl Iterator<Item = &'a Key> + 'a {
        self.by_id
            .values()
            .filter(move |k| k.cluster().as_str() == cluster)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn a_fifo_or_a_symlink_named_key_is_a_problem_not_a_hang() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        Key::generate("web")
            .unwrap()
            .write_new(&dir.path().join("web.key"))
            .unwrap();
        // a FIFO: opening it for reading blocks until a writer comes (none will)
        nix::unistd::mkfifo(
            &dir.path().join("fifo.key"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        // a symlink to a valid key file somewhere else
        let other = elsewhere.path().join("db.key");
        Key::generate("db").unwrap().write_new(&other).unwrap();
        std::os::unix::fs::symlink(&other, dir.path().join("link.key")).unwrap();
        let (tx, rx) = mpsc::channel();
        let d = dir.path().to_path_buf();
        std::thread::spawn(move || {
            let (ring, problems) = KeyRing::load(&d).unwrap();
            let problems: Vec<(String, String)> = problems
                .into_iter()
                .map(|p| {
                    let name = p.path.file_name().unwrap().to_string_lossy().into_owned();
                    (name, p.problem)
                })
                .collect();
            let _ = tx.send((ring.len(), problems));
        });
        let (loaded, problems) = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("loading the key directory hung on a FIFO");
        assert_eq!(loaded, 1, "{problems:?}");
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert_eq!(problems[0].0, "fifo.key");
        assert!(problems[0].1.contains("not a regular file"), "{problems:?}");
        assert_eq!(problems[1].0, "link.key");
        assert!(problems[1].1.contains("symbolic link"), "{problems:?}");
    }
}
