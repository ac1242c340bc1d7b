//! Turning an edited CIB snapshot into a write, a dry run, or "nothing to do".
//!
//! Commands edit a snapshot; [`finish`] compares it with the snapshot as read, validates the
//! result with `crm_verify` (on a private temporary file), and either asks for the write or,
//! with `--dry-run`, records what would change as crm shell text and XML.

use vm_pcmk::xml::Element;
use vm_pcmk::{Cib, Update};

use crate::App;
use crate::error::{Error, Result};
use crate::output::DryRun;

/// Configuration sections whose direct children are the objects we report.
const SECTIONS: [&str; 6] = [
    "crm_config",
    "nodes",
    "resources",
    "constraints",
    "rsc_defaults",
    "op_defaults",
];

/// What an edit changes, object by object.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    /// Objects added or changed (top-level children of the configuration sections).
    pub upserted: Vec<Element>,
    /// Ids of objects removed.
    pub removed: Vec<String>,
}

impl Changes {
    /// Nothing changes.
    pub fn is_empty(&self) -> bool {
        self.upserted.is_empty() && self.removed.is_empty()
    }
}

/// Compare two snapshots object by object (top-level elements of the configuration sections,
/// matched by id).
pub fn diff(before: &Cib, after: &Cib) -> Changes {
    use std::collections::HashMap;
    let mut changes = Changes::default();
    for name in SECTIONS {
        let children = |cib: &'_ Cib| -> Vec<Element> {
            cib.section(name)
                .map(|s| s.elements().cloned().collect())
                .unwrap_or_default()
        };
        let old = children(before);
        let new = children(after);
        // objects by (tag, id): one lookup each, whatever the CIB's size
        let old_by_id: HashMap<(&str, &str), &Element> = old
            .iter()
            .filter_map(|o| Some(((o.name.as_str(), o.id()?), o)))
            .collect();
        let new_ids: std::collections::HashSet<(&str, &str)> = new
            .iter()
            .filter_map(|n| Some((n.name.as_str(), n.id()?)))
            .collect();
        for n in &new {
            let same = n
                .id()
                .and_then(|id| old_by_id.get(&(n.name.as_str(), id)))
                // identical (the usual case) without building canonical forms
                .is_some_and(|o| *o == n || o.canonical() == n.canonical());
            if !same {
                changes.upserted.push(n.clone());
            }
        }
        for o in &old {
            if !o
                .id()
                .is_some_and(|id| new_ids.contains(&(o.name.as_str(), id)))
            {
                changes.removed.push(o.id().unwrap_or("").to_owned());
            }
        }
    }
    changes
}

/// Decide what to do with an edited snapshot: nothing (no change), a dry run, or a write.
/// A result `crm_verify` rejects is refused unless every problem was already there before.
pub fn finish<T>(app: &App, before: &Cib, after: &Cib, result: T) -> Result<Update<T>> {
    finish_checked(app, before, after, result, false)
}

/// [`finish`], without running `crm_verify` again when `verified`: the caller has already
/// verified a configuration of which `after`'s is a part (a many-guest add written in
/// batches checks the whole result once, then writes whole guests of it batch by batch).
pub fn finish_checked<T>(
    app: &App,
    before: &Cib,
    after: &Cib,
    result: T,
    verified: bool,
) -> Result<Update<T>> {
    let changes = diff(before, after);
    if changes.is_empty() {
        return Ok(Update::Unchanged(result));
    }
    if verified && !app.dry_run {
        return Ok(Update::Write(result));
    }
    let report = app.pcmk.verify_cib(after)?;
    let mut valid = report.valid;
    if !report.valid {
        let old = app.pcmk.verify_cib(before)?;
        let new_problems: Vec<&str> = problem_lines(&report.messages)
            .filter(|l| !problem_lines(&old.messages).any(|o| o == *l))
            .collect();
        if new_problems.is_empty() {
            app.warn(format!(
                "the CIB already fails crm_verify, for reasons unrelated to this change:\n{}",
                old.messages
            ));
            valid = true;
        } else if !app.dry_run {
            return Err(Error::Invalid {
                messages: new_problems.join("\n"),
            });
        }
    }
    if app.dry_run {
        app.set_dry_run(DryRun {
            // ids as crmsh would give them when loading into *this* CIB
            crm: vm_pcmk::crm::render_all_in(changes.upserted.iter(), before.root()),
            xml: changes.upserted.iter().map(Element::to_xml).collect(),
            removed: changes.removed,
            valid,
            verify_messages: if report.valid {
                String::new()
            } else {
                report.messages
            },
        });
        return Ok(Update::Unchanged(result));
    }
    Ok(Update::Write(result))
}

/// crm_verify's lines that state problems (errors and warnings), without the summary.
fn problem_lines(messages: &str) -> impl Iterator<Item = &str> {
    messages
        .lines()
        .map(str::trim)
        .filter(|l| l.contains("error") || l.contains("warning"))
        .filter(|l| !l.starts_with("crm_verify:") && !l.starts_with("-V"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_reports_added_changed_and_removed_objects() {
        let before = Cib::parse(
            r#"<cib><configuration><resources><primitive id="a" type="X"/><primitive id="b" type="Y"/></resources><constraints/></configuration></cib>"#,
        )
        .unwrap();
        let after = Cib::parse(
            r#"<cib><configuration><resources><primitive id="a" type="X"/><primitive id="b" type="Z"/><primitive id="c"/></resources><constraints><rsc_location id="l"/></constraints></configuration></cib>"#,
        )
        .unwrap();
        let ch = diff(&before, &after);
        let ids: Vec<_> = ch.upserted.iter().filter_map(Element::id).collect();
        assert_eq!(ids, ["b", "c", "l"]);
        assert!(ch.removed.is_empty());
        let back = diff(&after, &before);
        assert_eq!(back.removed, ["c", "l"]);
        assert!(diff(&before, &before).is_empty());
    }
}
