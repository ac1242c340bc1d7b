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
