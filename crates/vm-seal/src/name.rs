//! Names that travel inside sealed requests: guest (domain) names, guest node names, guest
//! cluster names.
//!
//! The rule is deliberately narrower than libvirt's (which allows nearly any character but
//! `/`): these names end up in CIB queries, log lines and, on the guest side, in shell-based
//! fence agents, so only characters that are inert everywhere are accepted. A request naming
//! anything else is refused before it is looked at any further.

use std::fmt;

/// Longest name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// Why a string is not a valid [`Name`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Empty string.
    #[error("the name is empty")]
    Empty,
    /// Longer than [`MAX_NAME_LEN`].
    #[error("the name is {0} bytes long, more than the maximum of {MAX_NAME_LEN}")]
    TooLong(usize),
    /// A character outside `[A-Za-z0-9._+:@-]`, or a first character that is not a letter,
    /// digit or `_`.
    #[error(
        "the name contains {0:?} at byte {1}: names use letters, digits and ._+:@- only, and \
         start with a letter, digit or _"
    )]
    BadChar(char, usize),
}

/// A validated name (see the module documentation for the rule).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(String);

impl Name {
    /// Validates `s` as a name.
    pub fn new(s: impl Into<String>) -> Result<Name, NameError> {
        let s = s.into();
        check(&s)?;
        Ok(Name(s))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Checks `s` against the name rule without allocating.
pub fn check(s: &str) -> Result<(), NameError> {
    if s.is_empty() {
        return Err(NameError::Empty);
    }
    if s.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong(s.len()));
    }
    for (i, c) in s.char_indices() {
        let ok = if i == 0 {
            c.is_ascii_alphanumeric() || c == '_'
        } else {
            c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | ':' | '@' | '-')
        };
        if !ok {
            return Err(NameError::BadChar(c, i));
        }
    }
    Ok(())
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for Name {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Name, NameError> {
        Name::new(s)
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_usual_guest_names() {
        for ok in ["web1", "guest-2.example", "_x", "vm:a@b+c", "9lives"] {
            assert_eq!(Name::new(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn refuses_shell_and_xml_metacharacters() {
        for bad in [
            "a b", "a;b", "$(id)", "`id`", "a|b", "a&b", "a>b", "a'b", "a\"b", "a\nb", "-a", ".a",
            "a/b", "a\\b", "a*", "é",
        ] {
            assert!(
                matches!(Name::new(bad), Err(NameError::BadChar(..))),
                "{bad:?} accepted"
            );
        }
        assert_eq!(Name::new(""), Err(NameError::Empty));
        assert_eq!(Name::new("a".repeat(65)), Err(NameError::TooLong(65)));
        Name::new("a".repeat(64)).unwrap();
    }
}
