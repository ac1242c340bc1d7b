//! What libvirt has defined, read with `virsh` instead of a libvirt connection.
//!
//! For programs that must not link libvirt: loading libvirt and the ~50 libraries it pulls in
//! (gnutls, curl, krb5, ICU, ...) costs every start of a program about 10 ms, most of a
//! one-guest `vm-ctl resource add` on a file (docs/benchmarks.md), while `vm-ctl check` is the
//! only vm-ctl command that asks libvirt anything. `virsh` runs through
//! [`vm_common::process::Cmd`]: an argv, a deadline, bounded output.

use std::collections::HashSet;
use std::time::Duration;

use vm_common::process::{Cmd, RunError};

/// Deadline of one `virsh` call: a listing answers in tens of milliseconds; a minute means
/// libvirtd is wedged.
const VIRSH_TIMEOUT: Duration = Duration::from_secs(60);

/// At most this much of a listing is read (a name per line; 100,000 domains of 60-byte names
/// is 6 MB): past it, virsh is killed and the listing is an error.
const MAX_LISTING_BYTES: usize = 16 << 20;

/// A `virsh` call that failed: it could not be run (or ran past its deadline or output
/// limit), or it ran and failed (libvirtd unreachable, permission denied, ...).
#[derive(Debug, thiserror::Error)]
#[error("Cannot {step} with virsh")]
pub struct VirshError {
    /// What we asked, e.g. "list the persistent domains".
    pub step: &'static str,
    /// Why: the process error, or virsh's exit status and stderr.
    #[source]
    pub source: RunError,
}

/// How a domain is defined in libvirt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Definition {
    /// Not defined persistently (unknown to libvirt, or running transient, as VirtualDomain
    /// runs guests): libvirtd never starts it by itself.
    Transient,
    /// Defined persistently; `autostart` when libvirtd starts it by itself at boot, `None`
    /// when that could not be read.
    Persistent {
        /// The autostart flag, if it could be read.
        autostart: Option<bool>,
    },
}

/// The persistently defined domains of one libvirt URI and which of them autostart: two
/// `virsh list` calls, whatever the number of domains.
#[derive(Debug, Clone, Default)]
pub struct Definitions {
    persistent: HashSet<String>,
    /// `None` when the autostart listing failed (its error is in `autostart_error`).
    autostart: Option<HashSet<String>>,
    autostart_error: Option<String>,
}

impl Definitions {
    /// Reads the listings of `uri`. An error means libvirt could not be asked at all; a failed
    /// autostart listing after a successful one leaves every persistent domain's autostart
    /// unknown ([`Definitions::autostart_error`] says why).
    pub fn read(uri: &str) -> Result<Self, VirshError> {
        let persistent = list(uri, "--persistent", "list the persistent domains")?;
        let (autostart, autostart_error) =
            match list(uri, "--autostart", "list the domains that autostart") {
                Ok(names) => (Some(names), None),
                Err(e) => (None, Some(vm_common::error_chain(&e))),
            };
        Ok(Self {
            persistent,
            autostart,
            autostart_error,
        })
    }

    /// How `name` is defined.
    pub fn of(&self, name: &str) -> Definition {
        if !self.persistent.contains(name) {
            return Definition::Transient;
        }
        Definition::Persistent {
            autostart: self.autostart.as_ref().map(|a| a.contains(name)),
        }
    }

    /// Why autostart flags are unknown, when they are.
    pub fn autostart_error(&self) -> Option<&str> {
        self.autostart_error.as_deref()
    }
}

/// The names `virsh --connect=URI --quiet list --all --name FILTER` prints, one per line.
fn list(uri: &str, filter: &str, step: &'static str) -> Result<HashSet<String>, VirshError> {
    // `--connect=URI` in one word: a URI beginning with "-" stays the option's value
    let cmd = Cmd::new("virsh")
        .arg(format!("--connect={uri}"))
        .args(["--quiet", "list", "--all", "--name", filter])
        // virsh reads no configuration that could change its output format: LANG only
        // affects its messages
        .env("LC_ALL", "C")
        .timeout(VIRSH_TIMEOUT)
        .max_stdout(MAX_LISTING_BYTES);
    let out = cmd
        .run_success()
        .map_err(|source| VirshError { step, source })?;
    Ok(names(&out.stdout_text()))
}

/// The domain names of a `virsh list --name` listing: one per line, blank lines ignored.
fn names(listing: &str) -> HashSet<String> {
    listing
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listings_become_definitions() {
        let d = Definitions {
            persistent: names("g1\ng2\n\n"),
            autostart: Some(names("g2\n\n")),
            autostart_error: None,
        };
        assert_eq!(
            d.of("g1"),
            Definition::Persistent {
                autostart: Some(false)
            }
        );
        assert_eq!(
            d.of("g2"),
            Definition::Persistent {
                autostart: Some(true)
            }
        );
        assert_eq!(d.of("g3"), Definition::Transient);
        let unknown = Definitions {
            autostart: None,
            autostart_error: Some("boom".into()),
            ..d
        };
        assert_eq!(unknown.of("g2"), Definition::Persistent { autostart: None });
        assert_eq!(unknown.autostart_error(), Some("boom"));
    }

    #[test]
    fn an_unreachable_libvirt_is_an_error_naming_the_step() {
        // a URI no libvirt driver knows: virsh fails (or is not installed); either is an error
        let err = Definitions::read("pmkt-no-such-driver:///x").unwrap_err();
        assert!(
            err.to_string().contains("list the persistent domains"),
            "{err}"
        );
    }
}
