//! Pacemaker access through Pacemaker's own command-line tools.
//!
//! We never write the CIB files or speak the CIB's IPC ourselves: `cibadmin`, `crm_mon`,
//! `crm_verify` and `crm_simulate` do, and they honour the `CIB_file` environment variable, so
//! the very same code works on a live cluster and on an offline CIB file.
//!
//! - [`tools`]: [`Pacemaker`], a handle on one CIB (live or file) that runs the tools with
//!   deadlines and turns their failures into [`PcmkError`]s naming the step.
//! - [`cib`]: [`Cib`], a snapshot of the whole CIB (version, nodes, resources, constraints,
//!   properties) that commands decide on and edit; written back only if unchanged meanwhile.
//! - [`xml`]: [`xml::Element`], an owned XML tree to read, edit and write CIB documents.
//! - [`crm`]: CIB objects as crm shell text that `crm configure load update` turns back into the
//!   very same XML (ids included), for dry runs and `resource show`.
//! - [`status`]: the typed view of `crm_mon --output-as=xml` and of `crm_simulate`'s revised
//!   status (which node runs what, in which role).
//! - [`history`]: what the status section records beyond `crm_mon`'s report: each node's
//!   operation history, fail counts, a live migration in progress.
//! - [`watch`]: CIB change notifications through a supervised `crm_mon`.
//! - [`virtualdomain`]: VirtualDomain specifics: the rule that makes a guest's stop a hard
//!   power-off when a node attribute says so.

pub mod cib;
pub mod crm;
pub mod history;
pub mod status;
pub mod tools;
pub mod virtualdomain;
pub mod watch;
pub mod xml;

pub use cib::{Cib, CibVersion};
pub use status::{ClusterStatus, FailedAction, NodeStatus, ResourceStatus, Role};
pub use tools::{CibTarget, Pacemaker, PcmkError, Reads, Update, VerifyReport};
