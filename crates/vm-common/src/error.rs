//! Error reports for people: one line per failure, naming the failed step first.

use std::error::Error;

/// An error and its sources on one line, `outer: inner: innermost`.
///
/// Every binary reports failures this way (stderr, logs, fence replies): the outer error names
/// the step that failed, its sources say why (down to the `os error N`). Some errors already
/// quote their source in their own message; such a source is not repeated.
pub fn error_chain(e: &dyn Error) -> String {
    let mut line = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        let text = inner.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = inner.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read the key file /k")]
    struct Outer(#[source] io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("cannot start: {0}")]
    struct Quoting(#[source] io::Error);

    #[test]
    fn sources_follow_the_step() {
        let e = Outer(io::Error::from_raw_os_error(2));
        assert_eq!(
            error_chain(&e),
            "cannot read the key file /k: No such file or directory (os error 2)"
        );
    }

    #[test]
    fn a_source_already_quoted_is_not_repeated() {
        let e = Quoting(io::Error::from_raw_os_error(13));
        assert_eq!(
            error_chain(&e),
            "cannot start: Permission denied (os error 13)"
        );
    }
}
