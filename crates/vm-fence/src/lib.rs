//! The guest fence service's contract: the facts that the programs on both sides of it must
//! agree on, each defined once here.
//!
//! - the guest's fence agent `fence_vmstonith` (a static guest binary) and the cluster-glue
//!   plugin `external/vm-stonith` that calls it (a shell script, which cannot import this
//!   crate: a test reads its defaults and compares them with [`defaults`]);
//! - `vm-stonithd`, the host daemon that serves the requests;
//! - `vm-ctl`, which sets guest fencing up, checks it and shows it (`vm-ctl stonith`, `vm-ctl
//!   check`, `vm-ctl status`).
//!
//! What they share: the relay service name ([`SERVICE`]), the default paths and limits
//! ([`defaults`]), the fence direction ([`Power`]), the node attribute in which vm-stonithd
//! publishes the keys it holds and its value format ([`published`]), the fence journal on a
//! guest's primitive ([`journal`]) and the last-fence record ([`record`]) that `vm-ctl status`
//! reads, and, with the `config` feature, the one vm-stonithd.toml schema ([`config`]).

#[cfg(feature = "config")]
pub mod config;
pub mod defaults;
pub mod journal;
pub mod published;
pub mod record;

use std::fmt;
use std::str::FromStr;

/// The vm-connectd service (module name) vm-stonithd registers and fence agents address.
pub const SERVICE: &str = "stonith";

/// Which way a fence drives a guest's power: the direction of a fence step, as vm-stonithd's
/// plan and its CIB journal record it (a `reboot` is an [`Power::Off`] then an [`Power::On`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Power {
    /// The guest is stopped (hard, when its agent allows).
    Off,
    /// The guest is started.
    On,
}

impl Power {
    /// The word used in logs, journals and fence-agents' actions: `off` or `on`.
    pub fn as_str(self) -> &'static str {
        match self {
            Power::Off => "off",
            Power::On => "on",
        }
    }
}

impl fmt::Display for Power {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A word that is not `off` or `on`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a power direction (off, on)")]
pub struct UnknownPower(pub String);

impl FromStr for Power {
    type Err = UnknownPower;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "off" => Ok(Power::Off),
            "on" => Ok(Power::On),
            other => Err(UnknownPower(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_round_trips_and_refuses_other_words() {
        for p in [Power::Off, Power::On] {
            assert_eq!(p.as_str().parse::<Power>(), Ok(p));
            assert_eq!(p.to_string(), p.as_str());
        }
        for bad in ["", "OFF", "reboot", "status", "off "] {
            assert_eq!(bad.parse::<Power>(), Err(UnknownPower(bad.to_owned())));
        }
    }
}
