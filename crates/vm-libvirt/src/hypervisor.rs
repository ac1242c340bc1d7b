//! The [`Hypervisor`] seam and its libvirt implementation.

use std::fmt;

use serde::Serialize;
use virt::connect::Connect;
use virt::domain::Domain;
use virt::enumutil::Enum;

/// Default libvirt URI on a KVM host.
pub const DEFAULT_URI: &str = "qemu:///system";

/// Coarse domain state, as far as pm-kvm-tools cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum DomainState {
    /// Running (or blocked on I/O, which is running for us).
    Running,
    /// Paused (e.g. the source side at the end of a live migration).
    Paused,
    /// Shutting down.
    ShuttingDown,
    /// Shut off (defined but not running).
    ShutOff,
    /// Crashed.
    Crashed,
    /// Suspended by guest power management.
    Suspended,
    /// libvirt reported a state this build does not know.
    Other,
}

impl fmt::Display for DomainState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// One domain as libvirt lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DomainInfo {
    /// Domain name.
    pub name: String,
    /// Domain UUID.
    pub uuid: String,
    /// State.
    pub state: DomainState,
    /// Persistently defined (VirtualDomain runs guests transient: not defined).
    pub persistent: bool,
}

/// A failed libvirt step.
#[derive(Debug, thiserror::Error)]
pub enum LibvirtError {
    /// Could not connect.
    #[error("Cannot connect to libvirt at {uri}")]
    Connect {
        /// The URI.
        uri: String,
        /// libvirt's reason.
        #[source]
        source: virt::error::Error,
    },
    /// A call about one domain failed.
    #[error("Cannot {step} domain '{domain}'")]
    Domain {
        /// What we were doing, e.g. "destroy".
        step: &'static str,
        /// Domain name (or a description when the name is unknown).
        domain: String,
        /// libvirt's reason.
        #[source]
        source: virt::error::Error,
    },
    /// A connection-wide call failed.
    #[error("Cannot {step}")]
    Call {
        /// What we were doing.
        step: &'static str,
        /// libvirt's reason.
        #[source]
        source: virt::error::Error,
    },
}

/// What pm-kvm-tools asks of a hypervisor. Calls block.
pub trait Hypervisor {
    /// Every domain libvirt knows (running and defined).
    fn domains(&self) -> Result<Vec<DomainInfo>, LibvirtError>;
    /// One domain by name; `None` when libvirt does not know it.
    fn domain(&self, name: &str) -> Result<Option<DomainInfo>, LibvirtError>;
    /// The live XML of a domain.
    fn domain_xml(&self, name: &str) -> Result<String, LibvirtError>;
    /// Start a transient domain from XML (what VirtualDomain does).
    fn create_transient(&self, xml: &str) -> Result<DomainInfo, LibvirtError>;
    /// Hard power-off.
    fn destroy(&self, name: &str) -> Result<(), LibvirtError>;
    /// Whether libvirtd starts the (persistently defined) domain by itself at boot.
    fn autostart(&self, name: &str) -> Result<bool, LibvirtError>;
}

/// A connection to libvirt.
pub struct Libvirt {
    conn: Connect,
    uri: String,
}

impl fmt::Debug for Libvirt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Libvirt").field("uri", &self.uri).finish()
    }
}

impl Libvirt {
    /// Connect read-write to `uri` (e.g. [`DEFAULT_URI`]).
    pub fn open(uri: &str) -> Result<Self, LibvirtError> {
        // libvirt prints every error to stderr by default; ours are returned as values and
        // reported once, by the caller, in context.
        virt::error::clear_error_callback();
        let conn = Connect::open(Some(uri)).map_err(|source| LibvirtError::Connect {
            uri: uri.to_owned(),
            source,
        })?;
        Ok(Self {
            conn,
            uri: uri.to_owned(),
        })
    }

    /// The URI this connection was opened with.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    fn lookup(&self, step: &'static str, name: &str) -> Result<Domain, LibvirtError> {
        self.conn
            .lookup_domain_by_name(name)
            .map_err(|source| LibvirtError::Domain {
                step,
                domain: name.to_owned(),
                source,
            })
    }
}

fn is_no_domain(err: &virt::error::Error) -> bool {
    matches!(err.code(), Enum::Known(virt::error::ErrorNumber::NoDomain))
}

fn info_of(dom: &Domain, fallback_name: &str) -> Result<DomainInfo, LibvirtError> {
    let wrap = |step| {
        move |source| LibvirtError::Domain {
            step,
            domain: fallback_name.to_owned(),
            source,
        }
    };
    let name = dom.name().map_err(wrap("read the name of"))?;
    let uuid = dom.uuid_string().map_err(wrap("read the UUID of"))?;
    let (state, _reason) = dom.state().map_err(wrap("read the state of"))?;
    let persistent = dom
        .is_persistent()
        .map_err(wrap("read the persistence of"))?;
    use virt::domain::DomainState as S;
    let state = match state {
        Enum::Known(S::Running | S::Blocked) => DomainState::Running,
        Enum::Known(S::Paused) => DomainState::Paused,
        Enum::Known(S::Shutdown) => DomainState::ShuttingDown,
        Enum::Known(S::Shutoff) => DomainState::ShutOff,
        Enum::Known(S::Crashed) => DomainState::Crashed,
        Enum::Known(S::PMSuspended) => DomainState::Suspended,
        Enum::Known(S::NoState) | Enum::Unknown(_) => DomainState::Other,
    };
    Ok(DomainInfo {
        name,
        uuid,
        state,
        persistent,
    })
}

impl Hypervisor for Libvirt {
    fn domains(&self) -> Result<Vec<DomainInfo>, LibvirtError> {
        let doms = self
            .conn
            .list_all_domains(0)
            .map_err(|source| LibvirtError::Call {
                step: "list domains",
                source,
            })?;
        doms.iter().map(|d| info_of(d, "(listed)")).collect()
    }

    fn domain(&self, name: &str) -> Result<Option<DomainInfo>, LibvirtError> {
        match self.conn.lookup_domain_by_name(name) {
            Ok(dom) => info_of(&dom, name).map(Some),
            Err(e) if is_no_domain(&e) => Ok(None),
            Err(source) => Err(LibvirtError::Domain {
                step: "look up",
                domain: name.to_owned(),
                source,
            }),
        }
    }

    fn domain_xml(&self, name: &str) -> Result<String, LibvirtError> {
        let dom = self.lookup("look up", name)?;
        dom.xml_desc(0).map_err(|source| LibvirtError::Domain {
            step: "read the XML of",
            domain: name.to_owned(),
            source,
        })
    }

    fn create_transient(&self, xml: &str) -> Result<DomainInfo, LibvirtError> {
        let dom = self
            .conn
            .create_domain_xml(xml, 0)
            .map_err(|source| LibvirtError::Domain {
                step: "start",
                domain: "(from XML)".to_owned(),
                source,
            })?;
        info_of(&dom, "(new)")
    }

    fn autostart(&self, name: &str) -> Result<bool, LibvirtError> {
        let dom = self.lookup("look up", name)?;
        dom.autostart().map_err(|source| LibvirtError::Domain {
            step: "read the autostart flag of",
            domain: name.to_owned(),
            source,
        })
    }

    fn destroy(&self, name: &str) -> Result<(), LibvirtError> {
        let dom = self.lookup("look up", name)?;
        dom.destroy().map_err(|source| LibvirtError::Domain {
            step: "destroy",
            domain: name.to_owned(),
            source,
        })
    }
}
