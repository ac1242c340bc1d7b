//! Turning an edited CIB snapshot into a write, a dry run, or "nothing to do".
//!
//! Commands edit a snapshot; [`finish`] compares it with the snapshot as read, validates the
//! result with `crm_verify` (on a private temporary file), and either asks for the write or,
//! with `--dry-run`, says what would change as crm shell text and XML. The dry run and any
//! warning come back with the decision ([`Checked`]), for the command to put in its
//! [`Outcome`].

use vm_pcmk::xml::Element;
use vm_pcmk::{Cib, Update};

use crate::App;
use crate::error::{Error, Result};
use crate::output::{DryRun, Outcome};

/// A command's result with what [`finish`] has to report besides.
#[derive(Debug)]
pub struct Checked<T> {
    /// The command's own result.
    pub value: T,
    /// The dry run and warnings.
    pub notes: Notes,
}

impl<T> Checked<T> {
    /// `value`, with nothing to report.
    pub fn plain(value: T) -> Self {
        Checked {
            value,
            notes: Notes::default(),
        }
    }

    /// This, after `earlier` notes (their warnings first).
    pub fn after(mut self, mut earlier: Notes) -> Self {
        earlier.add(self.notes);
        self.notes = earlier;
        self
    }
}

/// What a command reports besides its result: a dry run, warnings.
#[derive(Debug, Default)]
pub struct Notes {
    /// `--dry-run`: what would have been written.
    pub dry_run: Option<DryRun>,
    /// For the report (and stderr).
    pub warnings: Vec<String>,
}

impl Notes {
    /// Adds `other`'s (its dry run, if any, replaces this one's).
    pub fn add(&mut self, other: Notes) {
        if other.dry_run.is_some() {
            self.dry_run = other.dry_run;
        }
        self.warnings.extend(other.warnings);
    }

    /// `outcome` with these in it (a dry run `outcome` already has stays).
    pub fn into_outcome(self, mut outcome: Outcome) -> Outcome {
        outcome.warnings.extend(self.warnings);
        if outcome.dry_run.is_none() {
            outcome.dry_run = self.dry_run;
        }
        outcome
    }
}

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
pub fn finish<T>(app: &App, before: &Cib, after: &Cib, result: T) -> Result<Update<Checked<T>>> {
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
) -> Result<Update<Checked<T>>> {
    let changes = diff(before, after);
    if changes.is_empty() {
        return Ok(Update::Unchanged(Checked::plain(result)));
    }
    if verified && !app.dry_run {
        return Ok(Update::Write(Checked::plain(result)));
    }
    let mut notes = Notes::default();
    let report = app.pcmk.verify_cib(after)?;
    let mut valid = report.valid;
    if !report.valid {
        let old = app.pcmk.verify_cib(before)?;
        let new_problems: Vec<&str> = problem_lines(&report.messages)
            .filter(|l| !problem_lines(&old.messages).any(|o| o == *l))
            .collect();
        if new_problems.is_empty() {
            notes.warnings.push(format!(
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
        notes.dry_run = Some(DryRun {
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
        return Ok(Update::Unchanged(Checked {
            value: result,
            notes,
        }));
    }
    Ok(Update::Write(Checked {
        value: result,
        notes,
    }))
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
    fn notes_keep_their_order_and_the_outcomes_own_dry_run() {
        let dry = |crm: &str| DryRun {
            crm: crm.into(),
            xml: String::new(),
            removed: Vec::new(),
            valid: true,
            verify_messages: String::new(),
        };
        let earlier = Notes {
            dry_run: None,
            warnings: vec!["first".into()],
        };
        let checked = Checked {
            value: 7,
            notes: Notes {
                dry_run: Some(dry("a")),
                warnings: vec!["second".into()],
            },
        }
        .after(earlier);
        assert_eq!(checked.value, 7);
        assert_eq!(checked.notes.warnings, ["first", "second"]);
        let outcome = checked.notes.into_outcome(Outcome {
            warnings: vec!["the command's".into()],
            ..Outcome::default()
        });
        assert_eq!(outcome.warnings, ["the command's", "first", "second"]);
        assert_eq!(outcome.dry_run, Some(dry("a")));
        // a dry run the outcome already has stays
        let mut notes = Notes::default();
        notes.add(Notes {
            dry_run: Some(dry("b")),
            warnings: Vec::new(),
        });
        let outcome = notes.into_outcome(Outcome {
            dry_run: Some(dry("own")),
            ..Outcome::default()
        });
        assert_eq!(outcome.dry_run, Some(dry("own")));
    }

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
