//! The keys each host node's vm-stonithd holds, published for `vm-ctl check`.
//!
//! vm-stonithd writes the transient node attribute [`PUBLISHED_KEYS_ATTR`] with
//! [`attr_value`] at start-up and on every reload; `vm-ctl check` reads every node's value from
//! the CIB status section and parses it with [`parse`]. The value is comma-separated
//! `cluster:keyid:fingerprint` items, sorted; [`NO_KEYS`] when the daemon holds none (attrd
//! cannot store an empty value). Ids and fingerprints are public (the fingerprint reveals
//! nothing about the key), so the CIB can carry them.

use vm_seal::Key;

/// Transient node attribute in which each host node's vm-stonithd publishes the keys it holds.
pub const PUBLISHED_KEYS_ATTR: &str = "pmkt-fence-keys";

/// The value meaning "vm-stonithd runs and holds no key".
pub const NO_KEYS: &str = "-";

/// The public description of a key: its cluster, id and fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct KeyStamp {
    /// The guest cluster.
    pub cluster: String,
    /// The key id (16 hex digits).
    pub id: String,
    /// The key's fingerprint (16 hex digits).
    pub fingerprint: String,
}

impl KeyStamp {
    /// The stamp of `cluster`'s key `id` with `fingerprint`.
    pub fn new(cluster: &str, id: &str, fingerprint: &str) -> Self {
        Self {
            cluster: cluster.to_owned(),
            id: id.to_owned(),
            fingerprint: fingerprint.to_owned(),
        }
    }

    /// The stamp of `key`.
    pub fn of(key: &Key) -> Self {
        Self {
            cluster: key.cluster().to_string(),
            id: key.id().to_string(),
            fingerprint: key.fingerprint(),
        }
    }

    /// `cluster:id`, how reports name a key.
    pub fn label(&self) -> String {
        format!("{}:{}", self.cluster, self.id)
    }
}

/// `keys` as `cluster:id:fingerprint` items, sorted, comma-separated (empty for no key).
pub fn format(keys: &[KeyStamp]) -> String {
    let mut items: Vec<String> = keys
        .iter()
        .map(|k| format!("{}:{}:{}", k.cluster, k.id, k.fingerprint))
        .collect();
    items.sort();
    items.join(",")
}

/// The attribute value vm-stonithd publishes for `keys`: [`format()`], or [`NO_KEYS`].
pub fn attr_value(keys: &[KeyStamp]) -> String {
    if keys.is_empty() {
        NO_KEYS.to_owned()
    } else {
        format(keys)
    }
}

/// A published value that is not what [`attr_value`] writes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("item {item:?} is not cluster:keyid:fingerprint (16 hex digits each)")]
pub struct MalformedItem {
    /// The item, as published.
    pub item: String,
}

/// Parses an attribute value. Cluster names may contain `:`, ids and fingerprints cannot, so
/// each item is split from the right. Blank items and [`NO_KEYS`] are ignored; a malformed
/// item is an error.
pub fn parse(value: &str) -> Result<Vec<KeyStamp>, MalformedItem> {
    let hex16 = |s: &str| s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit());
    value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty() && *item != NO_KEYS)
        .map(|item| {
            let mut parts = item.rsplitn(3, ':');
            match (parts.next(), parts.next(), parts.next()) {
                (Some(fp), Some(id), Some(cluster))
                    if !cluster.is_empty() && hex16(id) && hex16(fp) =>
                {
                    Ok(KeyStamp::new(
                        cluster,
                        &id.to_ascii_lowercase(),
                        &fp.to_ascii_lowercase(),
                    ))
                }
                _ => Err(MalformedItem {
                    item: item.to_owned(),
                }),
            }
        })
        .collect()
}

/// Key ids and fingerprints for tests, here and in the crates that read published keys.
#[cfg(any(test, feature = "test-fixtures"))]
pub mod fixtures {
    /// A key id.
    pub const ID1: &str = "0011223344556677";
    /// Another key id.
    pub const ID2: &str = "8899aabbccddeeff";
    /// A fingerprint.
    pub const FP1: &str = "1111111111111111";
    /// Another fingerprint.
    pub const FP2: &str = "2222222222222222";
}

#[cfg(test)]
mod tests {
    use super::fixtures::{FP1, FP2, ID1, ID2};
    use super::*;

    #[test]
    fn published_format_round_trips() {
        let keys = vec![
            KeyStamp::new("web", ID1, FP1),
            KeyStamp::new("db:x", ID2, FP2),
        ];
        let v = format(&keys);
        assert_eq!(v, ::std::format!("db:x:{ID2}:{FP2},web:{ID1}:{FP1}"));
        let mut back = parse(&v).unwrap();
        back.sort();
        let mut keys = keys;
        keys.sort();
        assert_eq!(back, keys);
        assert_eq!(parse(" ").unwrap(), []);
        parse("web:123:456").unwrap_err();
        parse(&::std::format!(":{ID1}:{FP1}")).unwrap_err();
    }

    #[test]
    fn what_the_daemon_writes_the_checker_reads() {
        assert_eq!(attr_value(&[]), NO_KEYS);
        assert_eq!(parse(&attr_value(&[])).unwrap(), []);
        let a = Key::generate("web").unwrap();
        let b = Key::generate("db").unwrap();
        let stamps = [KeyStamp::of(&a), KeyStamp::of(&b)];
        let v = attr_value(&stamps);
        let items: Vec<&str> = v.split(',').collect();
        assert!(
            items[0].starts_with("db:") && items[1].starts_with("web:"),
            "{v}"
        );
        let mut back = parse(&v).unwrap();
        back.sort();
        let mut want = stamps.to_vec();
        want.sort();
        assert_eq!(back, want);
    }
}
