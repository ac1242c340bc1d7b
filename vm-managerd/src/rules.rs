//! The rule file, `/etc/vm-manager.conf`, in the original pm_kvm_tools format, read strictly.
//!
//! A GLib key-file: `[group]` lines name a node attribute; `OUTPUT = OP OPERAND` lines under it
//! are rules, tried in file order; the first that matches gives OUTPUT, a value no rule matches
//! is answered as it is. `eq`/`ne` compare text, `lt`/`gt`/`lte`/`gte` integers (a value that
//! is not an integer matches none of them, as in the original). Beyond the original:
//!
//! - only attributes with a group are answered to guests ([`RuleFile::exposed_to`]);
//! - an optional `[@guests]` group (`DOMAIN = NAME...`, `* = NAME...`) limits each guest to
//!   the attributes of its own line, else of the `*` line, else none;
//! - whatever the original skipped with a warning (a rule it could not parse, an integer
//!   operand that is not one) is an error here, naming the file, the line and what to do:
//!   a rule file that half loads would answer guests something the operator did not write.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::request::{MAX_NAMES, valid_name};

/// Where the original read its rules, and so does vm-managerd by default.
pub const DEFAULT_RULES: &str = "/etc/vm-manager.conf";

/// Longest rule file read (the original's shipped file has 14 lines).
pub const MAX_FILE_LEN: u64 = 256 * 1024;

/// The group naming which guest may read which attribute.
pub const GUESTS_GROUP: &str = "@guests";

/// A rule file that cannot be used, with where and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// The file cannot be read.
    #[error("cannot read the rule file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than any rule file needs to be.
    #[error("the rule file {path} is {len} bytes, more than {MAX_FILE_LEN}: is it the right file?")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        len: u64,
    },
    /// A line is wrong.
    #[error("{path}:{line}: {what}")]
    Line {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong and what to write instead.
        what: String,
    },
}

/// How a rule compares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// The value is this text.
    Eq(String),
    /// The value is not this text.
    Ne(String),
    /// The value is an integer below this one.
    Lt(i64),
    /// The value is an integer above this one.
    Gt(i64),
    /// The value is an integer at most this one.
    Lte(i64),
    /// The value is an integer at least this one.
    Gte(i64),
}

impl Op {
    fn matches(&self, value: &str) -> bool {
        let int = || value.parse::<i64>().ok();
        match self {
            Op::Eq(s) => value == s,
            Op::Ne(s) => value != s,
            Op::Lt(n) => int().is_some_and(|v| v < *n),
            Op::Gt(n) => int().is_some_and(|v| v > *n),
            Op::Lte(n) => int().is_some_and(|v| v <= *n),
            Op::Gte(n) => int().is_some_and(|v| v >= *n),
        }
    }
}

/// One `OUTPUT = OP OPERAND` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// What a matching value is answered as.
    pub output: String,
    /// The comparison.
    pub op: Op,
}

/// Which guests may read which attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exposure {
    /// No `[@guests]` group: every attribute with a group, to every guest.
    All,
    /// Per guest (libvirt domain name), and a default for the others (`*`).
    PerGuest {
        /// Domain name to the attributes it may read.
        guests: BTreeMap<String, BTreeSet<String>>,
        /// What the guests without a line may read (none without a `*` line).
        others: BTreeSet<String>,
    },
}

/// A loaded rule file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleFile {
    /// Attribute name to its rules, in file order.
    pub attributes: BTreeMap<String, Vec<Rule>>,
    /// Who may read what.
    pub exposure: Exposure,
}

impl RuleFile {
    /// Reads and checks the file at `path`.
    pub fn load(path: &Path) -> Result<RuleFile, RulesError> {
        let read = |source| RulesError::Read {
            path: path.to_owned(),
            source,
        };
        let len = std::fs::metadata(path).map_err(read)?.len();
        if len > MAX_FILE_LEN {
            return Err(RulesError::TooLarge {
                path: path.to_owned(),
                len,
            });
        }
        let bytes = std::fs::read(path).map_err(read)?;
        let text = String::from_utf8(bytes).map_err(|e| RulesError::Line {
            path: path.to_owned(),
            line: e.as_bytes()[..e.utf8_error().valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                + 1,
            what: "not UTF-8 text: write the file as plain ASCII or UTF-8".into(),
        })?;
        RuleFile::parse(&text).map_err(|(line, what)| RulesError::Line {
            path: path.to_owned(),
            line,
            what,
        })
    }

    /// Parses rule file text; an error is (1-based line, what is wrong).
    pub fn parse(text: &str) -> Result<RuleFile, (usize, String)> {
        let mut attributes: BTreeMap<String, Vec<Rule>> = BTreeMap::new();
        let mut guests_lines: Vec<(usize, String, String)> = Vec::new();
        let mut seen_guests = false;
        // the group being read: None before the first header
        let mut group: Option<String> = None;
        let mut outputs_in_group: BTreeSet<String> = BTreeSet::new();
        for (i, raw) in text.lines().enumerate() {
            let n = i + 1;
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(rest) = line.strip_prefix('[') {
                let Some(name) = rest.strip_suffix(']') else {
                    return Err((n, format!("a group header must end with ']': {line}")));
                };
                if name == GUESTS_GROUP {
                    if seen_guests {
                        return Err((n, format!("[{GUESTS_GROUP}] appears twice: merge them")));
                    }
                    seen_guests = true;
                } else {
                    if !valid_name(name) {
                        return Err((
                            n,
                            format!(
                                "[{name}] is not an attribute name vm-managerd can answer (1-64 of A-Z a-z 0-9 _ . : -, starting with a letter, digit or _)"
                            ),
                        ));
                    }
                    if attributes.contains_key(name) {
                        return Err((
                            n,
                            format!(
                                "[{name}] appears twice: put all its rules in one group (their order is the order they are tried in)"
                            ),
                        ));
                    }
                    attributes.insert(name.to_owned(), Vec::new());
                }
                group = Some(name.to_owned());
                outputs_in_group.clear();
                continue;
            }
            let Some(current) = group.as_deref() else {
                return Err((
                    n,
                    "a rule before any [attribute] group: start with a group header such as [default_ping_set]".into(),
                ));
            };
            let Some((key, value)) = line.split_once('=') else {
                return Err((
                    n,
                    format!(
                        "not a rule: expected OUTPUT = OP OPERAND (e.g. red = eq 0), got {line}"
                    ),
                ));
            };
            let (key, value) = (key.trim(), value.trim());
            if current == GUESTS_GROUP {
                guests_lines.push((n, key.to_owned(), value.to_owned()));
                continue;
            }
            let rule = parse_rule(key, value).map_err(|what| (n, what))?;
            if !outputs_in_group.insert(rule.output.clone()) {
                return Err((
                    n,
                    format!(
                        "output {} appears twice in [{current}]: the original kept only one of them; write one rule per output (use ne or the integer operators to cover more values)",
                        rule.output
                    ),
                ));
            }
            if let Some(rules) = attributes.get_mut(current) {
                rules.push(rule);
            }
        }
        let exposure = if seen_guests {
            parse_guests(&guests_lines, &attributes)?
        } else {
            Exposure::All
        };
        Ok(RuleFile {
            attributes,
            exposure,
        })
    }

    /// Whether the guest `domain` may read `name`.
    pub fn exposed_to(&self, domain: &str, name: &str) -> bool {
        if !self.attributes.contains_key(name) {
            return false;
        }
        match &self.exposure {
            Exposure::All => true,
            Exposure::PerGuest { guests, others } => guests
                .get(domain)
                .map_or_else(|| others.contains(name), |set| set.contains(name)),
        }
    }

    /// `value` of attribute `name` converted by its rules (the first that matches), or as it
    /// is.
    pub fn convert<'a>(&'a self, name: &str, value: &'a str) -> &'a str {
        self.attributes
            .get(name)
            .and_then(|rules| rules.iter().find(|r| r.op.matches(value)))
            .map_or(value, |r| r.output.as_str())
    }
}

fn parse_rule(key: &str, value: &str) -> Result<Rule, String> {
    if key.is_empty() {
        return Err(format!(
            "a rule without an output before '=': expected OUTPUT = OP OPERAND, got = {value}"
        ));
    }
    if !crate::request::valid_value(key) {
        return Err(format!(
            "output {key} cannot be answered to a guest: 1-128 printable ASCII characters, no space, '=' or ','"
        ));
    }
    let Some((op, operand)) = value.split_once(' ') else {
        return Err(format!(
            "rule {key} = {value}: expected OP OPERAND, e.g. eq 0 (ops: eq ne lt gt lte gte)"
        ));
    };
    let operand = operand.trim();
    if operand.is_empty() {
        return Err(format!("rule {key} = {value}: the operand is missing"));
    }
    let int = || {
        operand.parse::<i64>().map_err(|_| {
            format!(
                "rule {key} = {value}: {op} compares integers, and {operand} is not one (use eq or ne for text)"
            )
        })
    };
    let op = match op {
        "eq" => Op::Eq(operand.to_owned()),
        "ne" => Op::Ne(operand.to_owned()),
        "lt" => Op::Lt(int()?),
        "gt" => Op::Gt(int()?),
        "lte" => Op::Lte(int()?),
        "gte" => Op::Gte(int()?),
        other => {
            return Err(format!(
                "rule {key} = {value}: unknown operator {other} (ops: eq ne lt gt lte gte)"
            ));
        }
    };
    Ok(Rule {
        output: key.to_owned(),
        op,
    })
}

fn parse_guests(
    lines: &[(usize, String, String)],
    attributes: &BTreeMap<String, Vec<Rule>>,
) -> Result<Exposure, (usize, String)> {
    let mut guests = BTreeMap::new();
    let mut others = None;
    for (n, key, value) in lines {
        let mut set = BTreeSet::new();
        for name in value.split_whitespace() {
            if !attributes.contains_key(name) {
                return Err((
                    *n,
                    format!(
                        "[{GUESTS_GROUP}] {key} names {name}, which has no [{name}] group: add the group (it may be empty) or remove the name"
                    ),
                ));
            }
            set.insert(name.to_owned());
        }
        if set.len() > MAX_NAMES {
            return Err((
                *n,
                format!("[{GUESTS_GROUP}] {key}: more than {MAX_NAMES} attributes"),
            ));
        }
        if key == "*" {
            if others.replace(set).is_some() {
                return Err((*n, format!("[{GUESTS_GROUP}] has two * lines")));
            }
        } else {
            if !valid_domain(key) {
                return Err((
                    *n,
                    format!(
                        "[{GUESTS_GROUP}] {key} is not a libvirt domain name (1-255 printable characters, no '/', no spaces) nor *"
                    ),
                ));
            }
            if guests.insert(key.clone(), set).is_some() {
                return Err((*n, format!("[{GUESTS_GROUP}] names {key} twice")));
            }
        }
    }
    Ok(Exposure::PerGuest {
        guests,
        others: others.unwrap_or_default(),
    })
}

fn valid_domain(name: &str) -> bool {
    (1..=255).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b'=' && b != b'[')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The original's shipped /etc/vm-manager.conf (original-behavior.md §5.3), each rule on
    /// its own line.
    const ORIGINAL: &str = "[default_ping_set]
red = eq 0
yellow = lt 100
green = eq 100

[diskcheck_status]
red = eq ERROR
green = eq normal

[diskcheck_status_internal]
red = eq ERROR
green = eq normal

[operator_check_status]
green = eq normal
red = eq ERROR
";

    #[test]
    fn the_originals_shipped_file_loads_and_converts_as_it_did() {
        let r = RuleFile::parse(ORIGINAL).unwrap();
        assert_eq!(r.attributes.len(), 4);
        assert_eq!(r.convert("default_ping_set", "0"), "red");
        assert_eq!(r.convert("default_ping_set", "50"), "yellow");
        assert_eq!(r.convert("default_ping_set", "100"), "green");
        // no rule matches: raw, as the original
        assert_eq!(r.convert("default_ping_set", "200"), "200");
        assert_eq!(r.convert("default_ping_set", "abc"), "abc");
        assert_eq!(r.convert("diskcheck_status", "ERROR"), "red");
        assert_eq!(r.convert("operator_check_status", "normal"), "green");
        assert_eq!(r.exposure, Exposure::All);
        assert!(r.exposed_to("g1", "diskcheck_status"));
        assert!(!r.exposed_to("g1", "#uname"));
    }

    #[test]
    fn the_shipped_file_of_this_package_loads() {
        let text = include_str!("../vm-manager.conf");
        let r = RuleFile::parse(text).unwrap();
        assert_eq!(
            r,
            RuleFile::parse(ORIGINAL).unwrap(),
            "the shipped file must mean what the original's did"
        );
    }

    #[test]
    fn first_match_wins_and_integer_ops_need_integers() {
        let r = RuleFile::parse("[a]\nlow = lte 10\nmid = lt 100\nhigh = gte 100\nnot5 = ne 5\n")
            .unwrap();
        assert_eq!(r.convert("a", "10"), "low");
        assert_eq!(r.convert("a", "-3"), "low");
        assert_eq!(r.convert("a", "11"), "mid");
        assert_eq!(r.convert("a", "100"), "high");
        // "x" is no integer: only ne can match it
        assert_eq!(r.convert("a", "x"), "not5");
        let r = RuleFile::parse("[a]\nbig = gt 5\n").unwrap();
        assert_eq!(r.convert("a", "6"), "big");
        assert_eq!(r.convert("a", " 6"), " 6");
        // an attribute without rules is answered raw
        let r = RuleFile::parse("[a]\n").unwrap();
        assert_eq!(r.convert("a", "v"), "v");
    }

    #[test]
    fn bad_lines_are_errors_naming_the_line_and_what_to_do() {
        let cases: &[(&str, usize, &str)] = &[
            ("red = eq 0\n", 1, "before any [attribute] group"),
            ("[a]\nred eq 0\n", 2, "expected OUTPUT = OP OPERAND"),
            ("[a]\nred = eq\n", 2, "expected OP OPERAND"),
            ("[a]\nred = eq \n", 2, "expected OP OPERAND"),
            ("[a]\nred = is 0\n", 2, "unknown operator is"),
            ("[a]\nred = lt ten\n", 2, "compares integers"),
            (
                "[a]\nred = lt 99999999999999999999\n",
                2,
                "compares integers",
            ),
            ("[a]\nred = eq 0\nred = eq 1\n", 3, "appears twice in [a]"),
            ("[a]\n= eq 0\n", 2, "without an output"),
            ("[a]\nr,d = eq 0\n", 2, "cannot be answered"),
            ("[a\n", 1, "must end with ']'"),
            ("[a b]\n", 1, "not an attribute name"),
            ("[a]\n[a]\n", 2, "appears twice"),
            ("[a]\n[@guests]\ng1 = b\n", 3, "has no [b] group"),
            ("[a]\n[@guests]\ng1 = a\ng1 = a\n", 4, "names g1 twice"),
            ("[a]\n[@guests]\n* = a\n* = a\n", 4, "two * lines"),
            ("[a]\n[@guests]\ng/1 = a\n", 3, "not a libvirt domain name"),
            ("[a]\n[@guests]\n[@guests]\n", 3, "appears twice"),
        ];
        for (text, line, what) in cases {
            let (n, msg) = RuleFile::parse(text).unwrap_err();
            assert_eq!(n, *line, "{text:?}: {msg}");
            assert!(msg.contains(what), "{text:?}: {msg}");
        }
    }

    #[test]
    fn per_guest_exposure() {
        let r = RuleFile::parse("[a]\n[b]\n[c]\n# comment\n[@guests]\ng1 = a b\n  g2 =  \n* = c\n")
            .unwrap();
        assert!(r.exposed_to("g1", "a") && r.exposed_to("g1", "b"));
        assert!(!r.exposed_to("g1", "c"));
        assert!(!r.exposed_to("g2", "a") && !r.exposed_to("g2", "c"));
        assert!(r.exposed_to("g3", "c") && !r.exposed_to("g3", "a"));
        let r = RuleFile::parse("[a]\n[@guests]\ng1 = a\n").unwrap();
        assert!(!r.exposed_to("g2", "a"), "no * line: others read nothing");
    }

    #[test]
    fn load_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("vm-manager.conf");
        std::fs::write(&p, "[a]\nx = lt y\n").unwrap();
        let e = RuleFile::load(&p).unwrap_err().to_string();
        assert!(e.starts_with(&format!("{}:2: ", p.display())), "{e}");
        let e = RuleFile::load(&dir.path().join("none"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot read the rule file"), "{e}");
        std::fs::write(&p, b"[a]\n\xff\n").unwrap();
        let e = RuleFile::load(&p).unwrap_err().to_string();
        assert!(e.contains(":2: not UTF-8"), "{e}");
    }
}
