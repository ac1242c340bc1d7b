//! vm-ctl's errors and their exit codes.
//!
//! Every error says what failed, for which object, and what to do. Each class of error has its
//! own exit code, so scripts can tell "bad input" from "the cluster refused" from "timed out";
//! [`Error::exit_code`] is the only place that maps one to the other (documented in
//! `vm-ctl --help` and docs/operations.md).

use std::path::PathBuf;

use vm_pcmk::PcmkError;
use vm_seal::legacy::{LegacyError, ResourceIdError};
use vm_seal::{KeyError, NameError};

use crate::config::ConfigError;
use crate::ids::BadName;
use crate::lock::LockError;

/// Exit codes (0 = success; 1, 2 and 3 are the shared codes of [`vm_common::exit`]).
pub mod exit {
    pub use vm_common::exit::SUCCESS;
    /// Something unexpected (a bug, or an I/O error on this host).
    pub const UNEXPECTED: u8 = vm_common::exit::FAILURE;
    /// Command-line usage (clap's own code).
    pub const USAGE: u8 = vm_common::exit::USAGE;
    /// vm-ctl.conf is missing, malformed, or lacks a key the command needs.
    pub const CONFIG: u8 = vm_common::exit::CONFIG;
    /// A domain, node or guest cluster name (or a resource id) that cannot be used.
    pub const BAD_NAME: u8 = 4;
    /// The domain's XML file is missing, unreadable or does not describe that domain.
    pub const DOMAIN_XML: u8 = 5;
    /// A node that is not in the cluster (or not online where it must be).
    pub const NODE: u8 = 6;
    /// A host clone named in vm-ctl.conf is not configured in the cluster.
    pub const CLONE: u8 = 7;
    /// vm_stonith=on but the cluster has stonith-enabled=false.
    pub const STONITH: u8 = 8;
    /// The guest is not managed by vm-ctl (no `prmVMCTL_<dom>` resource).
    pub const NOT_CONFIGURED: u8 = 9;
    /// The guest is configured differently from what the command would create, or the domain
    /// is already managed by another resource.
    pub const CONFLICTING_CONFIG: u8 = 10;
    /// The guest's state forbids the command (running on delete, stopped or unmanaged on move).
    pub const STATE: u8 = 11;
    /// Pacemaker would not run the guest where asked (crm_simulate).
    pub const PLACEMENT: u8 = 12;
    /// The resulting configuration would not pass crm_verify.
    pub const INVALID: u8 = 13;
    /// --wait ran out before the guests got where they should.
    pub const TIMEOUT: u8 = 14;
    /// Another vm-ctl on this host held the lock for the whole wait.
    pub const LOCKED: u8 = 15;
    /// A Pacemaker tool failed or the CIB could not be read or written.
    pub const CLUSTER: u8 = 16;
    /// Concurrent writers kept changing the CIB; nothing was written.
    pub const CONFLICT: u8 = 17;
    /// `vm-ctl check` found problems.
    pub const CHECK: u8 = 18;
    /// `stonith keygen`: the key directory could not be created or the key file not written.
    pub const KEY: u8 = 19;
    /// `stonith token` / `guest-config --legacy`: no legacy token could be made (password file
    /// unreadable, empty or readable by others; OpenSSL failure).
    pub const LEGACY_TOKEN: u8 = 20;
    /// A `stonith` option cannot be used as given: a domain or node named twice in --members,
    /// a name that a host map or hostlist cannot carry (`:`), a --key-file path with characters
    /// that would need quoting.
    pub const STONITH_OPTION: u8 = 21;
    /// A guest node that cannot be configured as asked: its name is a host node's, another
    /// guest node's or a resource id; its port or address is taken or unusable; no free port.
    pub const GUEST_NODE: u8 = 22;
    /// `resource delete` of a guest node that resources are placed on or run on (without
    /// `--force`).
    pub const GUEST_NODE_IN_USE: u8 = 23;
}

/// Every exit status and its meaning, for the man page (and `--help`, which says them in one
/// line).
pub const EXIT_STATUS: &[(u8, &str)] = &[
    (exit::SUCCESS, "success (including \"already present\")"),
    (
        exit::UNEXPECTED,
        "unexpected error (a bug, or an I/O error on this host)",
    ),
    (exit::USAGE, "usage error"),
    (
        exit::CONFIG,
        "vm-ctl.conf is missing, malformed, or lacks a key the command needs",
    ),
    (
        exit::BAD_NAME,
        "a domain, node or guest cluster name (or a resource id) that cannot be used",
    ),
    (
        exit::DOMAIN_XML,
        "the domain XML file is missing, unreadable or does not describe that domain",
    ),
    (
        exit::NODE,
        "a node that is not in the cluster (or not online where it must be)",
    ),
    (
        exit::CLONE,
        "a host clone named in vm-ctl.conf is not configured in the cluster",
    ),
    (
        exit::STONITH,
        "vm_stonith=on but the cluster has stonith-enabled=false",
    ),
    (exit::NOT_CONFIGURED, "the guest is not managed by vm-ctl"),
    (
        exit::CONFLICTING_CONFIG,
        "the guest is configured differently from what the command would create, or managed by another resource",
    ),
    (exit::STATE, "the guest's state forbids the command"),
    (
        exit::PLACEMENT,
        "Pacemaker would not run the guest where asked",
    ),
    (exit::INVALID, "the result would not pass crm_verify"),
    (exit::TIMEOUT, "--wait ran out"),
    (
        exit::LOCKED,
        "another vm-ctl on this host held the lock for the whole wait",
    ),
    (
        exit::CLUSTER,
        "a Pacemaker tool failed or the CIB could not be read or written",
    ),
    (
        exit::CONFLICT,
        "concurrent writers kept changing the CIB; nothing was written",
    ),
    (
        exit::CHECK,
        "check found problems (findings of level error)",
    ),
    (
        exit::KEY,
        "stonith keygen: the key directory could not be created or the key not written",
    ),
    (
        exit::LEGACY_TOKEN,
        "stonith token / guest-config --legacy: no legacy token could be made",
    ),
    (
        exit::STONITH_OPTION,
        "a stonith option that cannot be used as given (--members, --key-file)",
    ),
    (
        exit::GUEST_NODE,
        "a guest node that cannot be configured as asked (name or port taken, bad address)",
    ),
    (
        exit::GUEST_NODE_IN_USE,
        "delete of a guest node that resources are placed on or run on (without --force)",
    ),
];

/// Everything that can make a vm-ctl command fail.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// vm-ctl.conf problems.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A name that cannot be used.
    #[error(transparent)]
    BadName(#[from] BadName),
    /// The domain XML file is missing or wrong.
    #[error("Domain {dom}: {problem} ({path})")]
    DomainXml {
        /// The domain.
        dom: String,
        /// Its XML file.
        path: PathBuf,
        /// What is wrong and what to do.
        problem: String,
    },
    /// A node that is not a cluster node.
    #[error(
        "Node {node} is not a node of this cluster (nodes: {known}); check the name with crm_node -l"
    )]
    UnknownNode {
        /// The node given.
        node: String,
        /// The cluster's nodes.
        known: String,
    },
    /// A node that is not online.
    #[error("Node {node} is not online; bring it online or choose another node")]
    NodeOffline {
        /// The node given.
        node: String,
    },
    /// A clone referenced by vm-ctl.conf is missing.
    #[error(
        "{key} names the clone {rsc}, but the cluster has no clone {rsc}; configure it, or \
         remove {key} from {file}"
    )]
    MissingClone {
        /// The config key (e.g. vm_pingd1).
        key: String,
        /// The clone id.
        rsc: String,
        /// vm-ctl.conf's path.
        file: String,
    },
    /// vm_stonith=on without cluster fencing.
    #[error(
        "vm_stonith=on makes a failed stop fence the host (on-fail=fence), but the cluster \
         has stonith-enabled=false; enable fencing, or set vm_stonith=off in {file}"
    )]
    StonithDisabled {
        /// vm-ctl.conf's path.
        file: String,
    },
    /// No vm-ctl resource for the domain.
    #[error(
        "Domain {dom} is not managed by vm-ctl (no resource {rsc}); add it with vm-ctl resource add {dom} -a NODE"
    )]
    NotConfigured {
        /// The domain.
        dom: String,
        /// The resource id looked for.
        rsc: String,
    },
    /// Configured, but not the way this command would configure it.
    #[error(
        "Domain {dom} is already configured differently:\n{diff}\nDelete it first (vm-ctl resource delete {dom}), or change vm-ctl.conf/the options to match"
    )]
    Differs {
        /// The domain.
        dom: String,
        /// What differs (`- in the cluster`, `+ wanted`).
        diff: String,
    },
    /// Another resource already runs this domain.
    #[error(
        "Domain {dom} is already managed by resource {rsc} ({agent} with config={config}); two resources for one guest would start it twice"
    )]
    ManagedElsewhere {
        /// The domain.
        dom: String,
        /// The other resource.
        rsc: String,
        /// Its agent.
        agent: String,
        /// Its config parameter.
        config: String,
    },
    /// The guest's state forbids the command.
    #[error("Domain {dom}: {problem}")]
    State {
        /// The domain.
        dom: String,
        /// What is wrong and what to do.
        problem: String,
    },
    /// Pacemaker would not put the guest where asked.
    #[error("Domain {dom}: {problem}")]
    Placement {
        /// The domain.
        dom: String,
        /// Where it would go instead, and why.
        problem: String,
    },
    /// crm_verify rejects the result.
    #[error(
        "The change would leave an invalid configuration; nothing was written. crm_verify says:\n{messages}"
    )]
    Invalid {
        /// crm_verify's messages.
        messages: String,
    },
    /// --wait ran out.
    #[error("Timed out after {secs} s: {missed}")]
    Timeout {
        /// The wait in seconds.
        secs: u64,
        /// Which resources did not get where, and where they were.
        missed: String,
    },
    /// The run lock.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// Pacemaker tool failures, CIB read/write failures.
    #[error(transparent)]
    Pacemaker(#[from] PcmkError),
    /// `check` found problems.
    #[error("{count} problem(s) found")]
    CheckFailed {
        /// How many findings are errors.
        count: usize,
    },
    /// A guest cluster, domain or guest node name that cannot travel in a fence request.
    #[error("{what} {name:?} cannot be used")]
    FenceName {
        /// "guest cluster name", "domain name", "guest node name".
        what: &'static str,
        /// The name as given.
        name: String,
        /// Why not.
        #[source]
        source: NameError,
    },
    /// A host resource id that a legacy token cannot carry.
    #[error("resource id {rsc:?} cannot be used in a legacy token")]
    ResourceId {
        /// The id as given.
        rsc: String,
        /// Why not.
        #[source]
        source: ResourceIdError,
    },
    /// The key directory could not be created or read.
    #[error("cannot {op} the key directory {}", path.display())]
    KeyDir {
        /// What was being done.
        op: &'static str,
        /// The directory.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// A new key could not be made or written.
    #[error("cannot create a new key for guest cluster {cluster}")]
    Key {
        /// The guest cluster.
        cluster: String,
        /// Why not (the file is named there).
        #[source]
        source: KeyError,
    },
    /// A legacy token could not be made.
    #[error("cannot make a legacy token for {rsc}")]
    LegacyToken {
        /// The resource id the token was for.
        rsc: String,
        /// Why not.
        #[source]
        source: LegacyError,
    },
    /// A `stonith` option that cannot be used as given.
    #[error("{option}: {problem}")]
    StonithOption {
        /// The option (`--members`, `--key-file`).
        option: &'static str,
        /// What is wrong and what to do.
        problem: String,
    },
    /// `status --watch` could not set up its watch (signals, its private directory, the
    /// crm_mon watcher) or write its output.
    #[error("cannot {step}")]
    Watch {
        /// What was being done.
        step: &'static str,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// A guest node that cannot be configured as asked.
    #[error("Domain {dom}: {problem}")]
    GuestNode {
        /// The domain.
        dom: String,
        /// What is wrong and what to do.
        problem: String,
    },
    /// A guest node still in use, on delete.
    #[error(
        "Domain {dom} is guest node {node}, and deleting it would leave these without their \
         node: {uses}; move or stop them and remove their constraints on {node} first, or \
         delete with --force (the constraints naming {node} are then removed too); nothing \
         was deleted"
    )]
    GuestNodeInUse {
        /// The domain.
        dom: String,
        /// Its guest node name.
        node: String,
        /// What is placed or runs there.
        uses: String,
    },
    /// A many-guest add written in batches failed after some batches were written.
    #[error(
        "Added {added} (whole guests, in earlier CIB changes), then the next batch failed; none \
         of the other guests was added: run the same command again to add them (the guests \
         already added are reported as already present)"
    )]
    PartlyAdded {
        /// The domains added before the failure.
        added: String,
        /// Why the next batch was not written.
        #[source]
        source: Box<Error>,
    },
}

impl Error {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_) => exit::CONFIG,
            Error::BadName(_) => exit::BAD_NAME,
            Error::DomainXml { .. } => exit::DOMAIN_XML,
            Error::UnknownNode { .. } | Error::NodeOffline { .. } => exit::NODE,
            Error::MissingClone { .. } => exit::CLONE,
            Error::StonithDisabled { .. } => exit::STONITH,
            Error::NotConfigured { .. } => exit::NOT_CONFIGURED,
            Error::Differs { .. } | Error::ManagedElsewhere { .. } => exit::CONFLICTING_CONFIG,
            Error::State { .. } => exit::STATE,
            Error::Placement { .. } => exit::PLACEMENT,
            Error::Invalid { .. } => exit::INVALID,
            Error::Timeout { .. } => exit::TIMEOUT,
            Error::Lock(_) => exit::LOCKED,
            Error::Pacemaker(PcmkError::Conflict { .. }) => exit::CONFLICT,
            Error::Pacemaker(_) => exit::CLUSTER,
            // (constructed by Outcome::check_result, after the findings are printed)
            Error::CheckFailed { .. } => exit::CHECK,
            Error::FenceName { .. } | Error::ResourceId { .. } => exit::BAD_NAME,
            Error::KeyDir { .. } | Error::Key { .. } => exit::KEY,
            Error::LegacyToken { .. } => exit::LEGACY_TOKEN,
            Error::StonithOption { .. } => exit::STONITH_OPTION,
            Error::GuestNode { .. } => exit::GUEST_NODE,
            Error::GuestNodeInUse { .. } => exit::GUEST_NODE_IN_USE,
            Error::PartlyAdded { source, .. } => source.exit_code(),
            Error::Watch { .. } => exit::UNEXPECTED,
        }
    }
}

/// Result of a vm-ctl step.
pub type Result<T, E = Error> = std::result::Result<T, E>;
