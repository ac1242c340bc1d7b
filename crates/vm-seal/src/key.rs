//! Guest-cluster keys: one 256-bit AES-GCM key per guest cluster, shared by every node of the
//! host cluster and every guest of that guest cluster.
//!
//! A key file is text, so that it can be inspected, copied and compared with ordinary tools:
//!
//! ```text
//! # pm-kvm-tools fence key of guest cluster "web": secret, keep it mode 0600
//! cluster = web
//! id = 3f09c2a1d4e5b677
//! key = <64 hex digits>
//! ```
//!
//! The `id` is random and public: it travels in clear in every sealed message (authenticated as
//! associated data) so that the host can pick the key without trial decryption, and so that two
//! keys of one guest cluster can be accepted side by side while the key is rotated.
//! [`Key::load`] refuses a file that group or others can read, or that belongs to another user.

use std::fmt;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use crate::name::{Name, NameError};

/// Key length in bytes (AES-256).
pub const KEY_LEN: usize = 32;
/// Key id length in bytes.
pub const KEY_ID_LEN: usize = 8;
/// A key file larger than this is not a key file.
const MAX_FILE_LEN: u64 = 4096;

/// Why a key could not be made, read or written.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading or writing the file failed.
    #[error("cannot {op} key file {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file is readable or writable by group or others.
    #[error(
        "key file {path} has mode {mode:04o}: a key must be readable by its owner only; run \
         `chmod 600 {path}`"
    )]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file belongs to a user other than root and the current one.
    #[error(
        "key file {path} belongs to uid {uid}: it must belong to root (or to the user reading it)"
    )]
    Owner {
        /// The file.
        path: PathBuf,
        /// Its owner.
        uid: u32,
    },
    /// The file is not a regular file, or is too large.
    #[error("{path} is not a key file ({why})")]
    NotAKeyFile {
        /// The file.
        path: PathBuf,
        /// Why not.
        why: &'static str,
    },
    /// The text does not follow the key file format.
    #[error("key file{} line {line}: {reason}", path.as_ref().map(|p| format!(" {}", p.display())).unwrap_or_default())]
    Parse {
        /// The file, when known.
        path: Option<PathBuf>,
        /// 1-based line number (0: the file as a whole).
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// The guest cluster name is invalid.
    #[error("invalid guest cluster name: {0}")]
    Cluster(#[from] NameError),
    /// The random generator failed.
    #[error("cannot generate a key: {0}")]
    Random(#[source] openssl::error::ErrorStack),
}

/// The public identifier of a key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; KEY_ID_LEN]);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

impl std::str::FromStr for KeyId {
    type Err = String;
    fn from_str(s: &str) -> Result<KeyId, String> {
        let mut id = [0u8; KEY_ID_LEN];
        unhex(s, &mut id).map_err(|e| format!("key id: {e}"))?;
        Ok(KeyId(id))
    }
}

/// Key material: never printed, zeroed when dropped.
struct Secret([u8; KEY_LEN]);

impl Drop for Secret {
    fn drop(&mut self) {
        // Best effort without unsafe code: black_box keeps the store from being elided.
        self.0.fill(0);
        std::hint::black_box(&mut self.0);
    }
}

/// A guest cluster's key.
pub struct Key {
    cluster: Name,
    id: KeyId,
    secret: Secret,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("cluster", &self.cluster.as_str())
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl Key {
    /// A new random key for guest cluster `cluster`.
    pub fn generate(cluster: &str) -> Result<Key, KeyError> {
        let cluster = Name::new(cluster)?;
        let mut secret = Secret([0; KEY_LEN]);
        let mut id = [0u8; KEY_ID_LEN];
        openssl::rand::rand_bytes(&mut secret.0).map_err(KeyError::Random)?;
        openssl::rand::rand_bytes(&mut id).map_err(KeyError::Random)?;
        Ok(Key {
            cluster,
            id: KeyId(id),
            secret,
        })
    }

    /// A key from its parts (tests, and tools that derive keys elsewhere).
    pub fn from_parts(cluster: Name, id: KeyId, secret: [u8; KEY_LEN]) -> Key {
        Key {
            cluster,
            id,
            secret: Secret(secret),
        }
    }

    /// The guest cluster the key belongs to.
    pub fn cluster(&self) -> &Name {
        &self.cluster
    }

    /// The key's public id.
    pub fn id(&self) -> KeyId {
        self.id
    }

    pub(crate) fn secret(&self) -> &[u8; KEY_LEN] {
        &self.secret.0
    }

    /// A short public fingerprint (16 hex digits) that tells whether two nodes hold the same
    /// key without revealing it: the start of SHA-256 over a fixed label, the id and the key.
    pub fn fingerprint(&self) -> String {
        let mut input = Vec::with_capacity(32 + KEY_ID_LEN + KEY_LEN);
        input.extend_from_slice(b"pm-kvm-tools key fingerprint v1\0");
        input.extend_from_slice(&self.id.0);
        input.extend_from_slice(&self.secret.0);
        let digest = openssl::sha::sha256(&input);
        input.fill(0);
        std::hint::black_box(&mut input);
        hex(digest.get(..8).unwrap_or_default())
    }

    /// The key file text (see the module documentation).
    pub fn to_file_text(&self) -> String {
        format!(
            "# pm-kvm-tools fence key of guest cluster \"{}\": secret, keep it mode 0600\n\
             cluster = {}\nid = {}\nkey = {}\n",
            self.cluster,
            self.cluster,
            self.id,
            hex(&self.secret.0)
        )
    }

    /// Parses key file text. `path` only labels errors.
    pub fn parse(text: &str, path: Option<&Path>) -> Result<Key, KeyError> {
        let err = |line: usize, reason: String| KeyError::Parse {
            path: path.map(Path::to_path_buf),
            line,
            reason,
        };
        let (mut cluster, mut id, mut secret) = (None, None, None);
        for (n, raw) in text.lines().enumerate() {
            let n = n + 1;
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                return Err(err(n, "expected `name = value`".into()));
            };
            let (k, v) = (k.trim(), v.trim());
            let slot_taken = match k {
                "cluster" => cluster
                    .replace(Name::new(v).map_err(|e| err(n, format!("cluster: {e}")))?)
                    .is_some(),
                "id" => {
                    let mut b = [0u8; KEY_ID_LEN];
                    unhex(v, &mut b).map_err(|e| err(n, format!("id: {e}")))?;
                    id.replace(KeyId(b)).is_some()
                }
                "key" => {
                    let mut s = Secret([0; KEY_LEN]);
                    // the message never quotes the value: it is the secret
                    unhex(v, &mut s.0).map_err(|e| err(n, format!("key: {e}")))?;
                    secret.replace(s).is_some()
                }
                other => return Err(err(n, format!("unknown setting {other:?}"))),
            };
            if slot_taken {
                return Err(err(n, format!("{k} is set twice")));
            }
        }
        let missing = |what: &str| err(0, format!("no `{what} = ...` line"));
        Ok(Key {
            cluster: cluster.ok_or_else(|| missing("cluster"))?,
            id: id.ok_or_else(|| missing("id"))?,
            secret: secret.ok_or_else(|| missing("key"))?,
        })
    }

    /// Reads a key file, refusing one that others could read or that another user owns, and
    /// anything but a regular file (a symlink is not followed; a FIFO does not block).
    pub fn load(path: &Path) -> Result<Key, KeyError> {
        let io = |op, source| KeyError::Io {
            op,
            path: path.to_path_buf(),
            source,
        };
        // O_NOFOLLOW: a symlink is refused, not followed to whatever it names. O_NONBLOCK: a
        // FIFO (or a device) opens at once instead of blocking start-up, or the reload that
        // runs on the signal thread, until a writer comes; the check below then refuses it.
        let flags = nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_NONBLOCK;
        let file = match fs::OpenOptions::new()
            .read(true)
            .custom_flags(flags.bits())
            .open(path)
        {
            Ok(f) => f,
            Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) => {
                return Err(KeyError::NotAKeyFile {
                    path: path.to_path_buf(),
                    why: "a symbolic link: put the key file itself in the directory",
                });
            }
            Err(e) => return Err(io("open", e)),
        };
        let meta = file.metadata().map_err(|e| io("stat", e))?;
        if !meta.is_file() {
            return Err(KeyError::NotAKeyFile {
                path: path.to_path_buf(),
                why: "not a regular file",
            });
        }
        if meta.len() > MAX_FILE_LEN {
            return Err(KeyError::NotAKeyFile {
                path: path.to_path_buf(),
                why: "larger than 4 KiB",
            });
        }
        let mode = meta.mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(KeyError::Permissions {
                path: path.to_path_buf(),
                mode,
            });
        }
        let me = nix::unistd::geteuid().as_raw();
        if meta.uid() != 0 && meta.uid() != me {
            return Err(KeyError::Owner {
                path: path.to_path_buf(),
                uid: meta.uid(),
            });
        }
        let mut text = String::new();
        std::io::Read::read_to_string(&mut &file, &mut text).map_err(|e| io("read", e))?;
        let key = Key::parse(&text, Some(path));
        // the text held the secret in hex: clear it before it is freed
        let mut bytes = text.into_bytes();
        bytes.fill(0);
        std::hint::black_box(&mut bytes);
        key
    }

    /// Writes the key to a new file, mode 0600 from the start (never briefly readable);
    /// refuses to overwrite an existing file.
    pub fn write_new(&self, path: &Path) -> Result<(), KeyError> {
        let io = |op, source| KeyError::Io {
            op,
            path: path.to_path_buf(),
            source,
        };
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| io("create", e))?;
        let mut text = self.to_file_text().into_bytes();
        let result = file
            .write_all(&text)
            .and_then(|()| file.sync_all())
            .map_err(|e| io("write", e));
        text.fill(0);
        std::hint::black_box(&mut text);
        result
    }
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

/// Fills `out` from exactly `2 * out.len()` hex digits.
fn unhex(s: &str, out: &mut [u8]) -> Result<(), String> {
    if s.len() != out.len() * 2 {
        return Err(format!(
            "expected {} hex digits, found {} characters",
            out.len() * 2,
            s.len()
        ));
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err("not a hex digit".to_owned()),
    };
    for (o, pair) in out.iter_mut().zip(s.as_bytes().chunks_exact(2)) {
        let [hi, lo] = pair else {
            return Err("odd number of hex digits".to_owned());
        };
        *o = digit(*hi)? << 4 | digit(*lo)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn file_text_round_trips_and_debug_hides_the_secret() {
        let key = Key::generate("web").unwrap();
        let again = Key::parse(&key.to_file_text(), None).unwrap();
        assert_eq!(again.cluster().as_str(), "web");
        assert_eq!(again.id(), key.id());
        assert_eq!(again.secret(), key.secret());
        assert_eq!(again.fingerprint(), key.fingerprint());
        assert_eq!(key.fingerprint().len(), 16);
        let debug = format!("{key:?}");
        assert!(debug.contains("<redacted>"));
        assert!(!debug.contains(&hex(key.secret())));
        assert_ne!(Key::generate("web").unwrap().id(), key.id());
    }

    #[test]
    fn parse_is_strict_and_never_quotes_the_secret() {
        let ok = "cluster = c\nid = 0011223344556677\nkey = ".to_owned() + &"ab".repeat(32);
        Key::parse(&ok, None).unwrap();
        for (text, want) in [
            ("cluster = c\nid = 0011223344556677\n", "no `key"),
            (&(ok.clone() + "\ncluster = d"), "set twice"),
            (&(ok.clone() + "\ncolor = red"), "unknown setting"),
            (
                &ok.replace("id = 0011223344556677", "id = 00112233"),
                "16 hex digits",
            ),
            (&ok.replace("cluster = c", "cluster = a;b"), "cluster"),
            (&(ok.clone() + "\njunk"), "expected `name = value`"),
        ] {
            let e = Key::parse(text, None).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
        let bad_secret = ok.replace(&"ab".repeat(32), &("zz".to_owned() + &"ab".repeat(31)));
        let e = Key::parse(&bad_secret, None).unwrap_err().to_string();
        assert!(e.contains("not a hex digit") && !e.contains("abab"), "{e}");
    }

    #[test]
    fn load_checks_mode_and_write_new_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web.key");
        let key = Key::generate("web").unwrap();
        key.write_new(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(Key::load(&path).unwrap().id(), key.id());
        assert!(matches!(
            key.write_new(&path),
            Err(KeyError::Io { op: "create", .. })
        ));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        let e = Key::load(&path).unwrap_err();
        assert!(matches!(e, KeyError::Permissions { mode: 0o640, .. }));
        assert!(e.to_string().contains("chmod 600"));
        assert!(matches!(
            Key::load(dir.path()),
            Err(KeyError::NotAKeyFile { .. } | KeyError::Io { .. })
        ));
    }
}
