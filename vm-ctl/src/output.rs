//! What a command reports, in text or JSON (`--output`).
//!
//! Commands return an [`Outcome`]; `main` prints it once, in the format asked for. Mutating
//! commands report per guest whether something changed ([`Change`]), so that running a command
//! twice reads as "already so" rather than as an error.

use std::fmt::Write as _;

use serde::Serialize;

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Human-readable text.
    Text,
    /// One JSON document on stdout.
    Json,
}

/// What a command did to one guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Change {
    /// Resource and constraints created.
    Created,
    /// Already configured exactly so: nothing done.
    AlreadyPresent,
    /// Resource and its constraints removed.
    Deleted,
    /// Nothing to delete.
    Absent,
    /// target-role set to Started.
    Started,
    /// target-role set to Stopped.
    Stopped,
    /// target-role was already what was asked.
    Unchanged,
    /// Moved to another node.
    Moved,
    /// Temporary move constraints removed.
    Unmoved,
    /// Preferred-node location moved to where the guest runs.
    PreferenceMoved,
    /// Nothing to do for this guest (e.g. not running for `location move`).
    Skipped,
    /// Would be done (dry run).
    WouldChange,
}

/// One guest's line in a mutating command's report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GuestReport {
    /// Domain name.
    pub domain: String,
    /// Resource id.
    pub resource: String,
    /// What happened.
    pub change: Change,
    /// A sentence for the user ("" when the change says it all).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// One row of `resource list`: the original's six columns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListRow {
    /// Domain name.
    pub domain: String,
    /// Resource id.
    pub resource: String,
    /// `on`, `off` or `NONE` (allow-migrate).
    pub migration: String,
    /// Preferred node or `NONE`.
    pub preferred_node: String,
    /// Node running it, or `Stopped`.
    pub running_node: String,
    /// `yes` when a temporary move constraint exists.
    pub move_constraint: String,
    /// Its guest node, when it is one (JSON only; the text adds a GUEST NODE column when
    /// any listed guest is one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guest_node: Option<crate::guest_node::GuestNode>,
}

/// What `--dry-run` shows instead of writing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DryRun {
    /// The change as crm shell text (objects added or replaced).
    pub crm: String,
    /// The change as CIB XML (objects added or replaced).
    pub xml: String,
    /// Ids of objects the change removes.
    pub removed: Vec<String>,
    /// Whether crm_verify accepts the result.
    pub valid: bool,
    /// crm_verify's messages.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub verify_messages: String,
}

/// What kind of finding a [`Finding`] is: stable across versions and wordings, shown in
/// `--output json` (`code`) and documented in docs/operations.md, so that scripts and tests
/// match findings by kind instead of by their English text. The level is separate: some kinds
/// are a warning or an error depending on the case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FindingCode {
    /// A host clone vm-ctl.conf names (vm_pingdN, vm_diskdN, vm_managerdN, vm_stonithdN) is configured.
    CloneConfigured,
    /// A host clone vm-ctl.conf names is not in the cluster.
    CloneMissing,
    /// vm-connectd runs as a clone.
    ConnectdClone,
    /// No vm-connectd clone.
    ConnectdCloneMissing,
    /// The vm-connectd clone watches the directory vm_connectd_sock_dir names.
    ConnectdSockDir,
    /// The vm-connectd clone watches another directory than vm_connectd_sock_dir.
    ConnectdSockDirDiffers,
    /// No vm_stonithdN in vm-ctl.conf.
    StonithdNotConfigured,
    /// A vm_managerdN clone runs ocf:pm-kvm-tools:vm-managerd.
    ManagerdAgent,
    /// A vm_managerdN clone runs another agent (e.g. the original's vm-managerd under vm-anything).
    ManagerdAgentOther,
    /// A vm_managerdN clone starts after the vm-connectd clone.
    ManagerdOrdered,
    /// A vm_managerdN clone is not ordered after the vm-connectd clone.
    ManagerdUnordered,
    /// The guest has its constraints on each vm_managerdN clone.
    ManagerdConstraints,
    /// The guest lacks constraints on a vm_managerdN clone.
    ManagerdConstraintsMissing,
    /// vm_stonith=on but the cluster has stonith-enabled=false.
    FencingDisabled,
    /// vm_stonith and the cluster's fencing agree.
    FencingConsistent,
    /// vm_stonith in vm-ctl.conf is neither on nor off.
    VmStonithInvalid,
    /// resource-stickiness is 0 or unset.
    StickinessZero,
    /// resource-stickiness is not a score.
    StickinessNotAScore,
    /// resource-stickiness is negative.
    StickinessNegative,
    /// resource-stickiness keeps guests where they run.
    Stickiness,
    /// libvirt cannot be reached: autostart not checked.
    LibvirtUnreachable,
    /// The guest is a Pacemaker resource.
    GuestManaged,
    /// The guest's agent makes a fence a graceful shutdown first.
    GuestSoftFence,
    /// The guest is not managed by Pacemaker.
    GuestUnmanaged,
    /// The guest has migration-threshold and failure-timeout: a failing guest moves.
    GuestEscalation,
    /// The guest lacks migration-threshold or failure-timeout.
    GuestEscalationMissing,
    /// The guest's monitor fails when its vm-connectd goes silent (liveness_timeout).
    GuestLiveness,
    /// The guest's monitor does not watch its vm-connectd (no liveness_timeout).
    GuestLivenessOff,
    /// The domain XML file is missing, unreadable or wrong.
    DomainXmlInvalid,
    /// The domain XML file is valid.
    DomainXmlValid,
    /// The domain has no vmconnectd channel.
    ChannelMissing,
    /// The vmconnectd channel is not where host vm-connectd finds it.
    ChannelMisplaced,
    /// The vmconnectd channel is where host vm-connectd finds it.
    Channel,
    /// The domain XML has a fixed `<uuid>`.
    UuidFixed,
    /// The domain XML has no `<uuid>`.
    UuidMissing,
    /// libvirt autostart is on.
    AutostartOn,
    /// libvirt autostart is off.
    AutostartOff,
    /// libvirt autostart cannot be read (the domain is defined persistently).
    AutostartUnknown,
    /// The domain is not defined persistently in libvirt (no autostart).
    Transient,
    /// vm-stonithd.toml cannot be read or used.
    StonithdConfigInvalid,
    /// Guest fencing is not set up on this node.
    FencingNotSetUp,
    /// The key directory does not exist although guest clusters are configured.
    KeyDirMissing,
    /// The key directory cannot be read or listed.
    KeyDirUnreadable,
    /// The key directory is not a directory.
    KeyDirNotADirectory,
    /// Group or others can write the key directory.
    KeyDirWritable,
    /// The key directory's mode is looser than 0700.
    KeyDirMode,
    /// The key directory's mode is 0700 or stricter.
    KeyDir,
    /// A guest cluster of vm-stonithd.toml has no usable key.
    ClusterWithoutKey,
    /// A guest cluster of vm-stonithd.toml has keys.
    ClusterKeys,
    /// A key of a guest cluster vm-stonithd.toml does not configure.
    KeyOfUnconfiguredCluster,
    /// Two key files have the same key id.
    KeyIdDuplicate,
    /// A key file loads.
    Key,
    /// A key file does not load.
    KeyUnusable,
    /// No host node holds guest-cluster keys: nothing to compare.
    NoKeysAnywhere,
    /// A host node is offline: its keys are not compared.
    NodeOffline,
    /// A host node publishes no pmkt-fence-keys (vm-stonithd not running there?).
    NodePublishesNothing,
    /// A host node publishes a malformed pmkt-fence-keys.
    NodePublishesMalformed,
    /// A host node holds another key under a key id of this node's.
    NodeKeyDiffers,
    /// A host node lacks one of this node's keys.
    NodeKeyMissing,
    /// A host node holds a key this node lacks.
    NodeKeyExtra,
    /// A host node holds the same keys as this node.
    NodeKeysSame,
    /// A guest node: its name, transport and port.
    GuestNode,
    /// A guest node's name is a host node's, another guest node's or a resource id.
    GuestNodeNameClash,
    /// Two guest nodes have the same endpoint (host-local port, or address and port).
    GuestNodePortDuplicate,
    /// A guest node's remote-port is not a port number.
    GuestNodeBadPort,
    /// A guest node's resource is not a VirtualDomain (vm-ctl neither made nor manages it).
    GuestNodeNotVirtualDomain,
    /// A remote node entry or status in the CIB with no resource behind it.
    GuestNodeStale,
    /// Every host node that publishes its Pacemaker key fingerprint (pmkt-authkey) publishes the same one.
    AuthkeyHostSame,
    /// Host nodes publish different Pacemaker key fingerprints.
    AuthkeyHostDiffers,
    /// Guest nodes are configured but no host node publishes its Pacemaker key fingerprint (vm-stonithd not running, or no key).
    AuthkeyHostUnknown,
    /// The guest node reported holding the host cluster's Pacemaker key.
    AuthkeyGuestSame,
    /// The guest node reported holding another Pacemaker key, or none.
    AuthkeyGuestDiffers,
    /// The guest node has not reported its Pacemaker key to the host node it runs on (no pmkt-authkey-DOMAIN attribute there).
    AuthkeyGuestUnknown,
    /// The guest node's VirtualDomain does not run on one host node (stopped, or a live migration in progress): its key is not judged.
    AuthkeyGuestNotRunning,
}

impl FindingCode {
    /// Every code, in the order docs/operations.md lists them.
    pub const ALL: [FindingCode; 74] = [
        FindingCode::CloneConfigured,
        FindingCode::CloneMissing,
        FindingCode::ConnectdClone,
        FindingCode::ConnectdCloneMissing,
        FindingCode::ConnectdSockDir,
        FindingCode::ConnectdSockDirDiffers,
        FindingCode::StonithdNotConfigured,
        FindingCode::ManagerdAgent,
        FindingCode::ManagerdAgentOther,
        FindingCode::ManagerdOrdered,
        FindingCode::ManagerdUnordered,
        FindingCode::ManagerdConstraints,
        FindingCode::ManagerdConstraintsMissing,
        FindingCode::FencingDisabled,
        FindingCode::FencingConsistent,
        FindingCode::VmStonithInvalid,
        FindingCode::StickinessZero,
        FindingCode::StickinessNotAScore,
        FindingCode::StickinessNegative,
        FindingCode::Stickiness,
        FindingCode::LibvirtUnreachable,
        FindingCode::GuestManaged,
        FindingCode::GuestSoftFence,
        FindingCode::GuestUnmanaged,
        FindingCode::GuestEscalation,
        FindingCode::GuestEscalationMissing,
        FindingCode::GuestLiveness,
        FindingCode::GuestLivenessOff,
        FindingCode::DomainXmlInvalid,
        FindingCode::DomainXmlValid,
        FindingCode::ChannelMissing,
        FindingCode::ChannelMisplaced,
        FindingCode::Channel,
        FindingCode::UuidFixed,
        FindingCode::UuidMissing,
        FindingCode::AutostartOn,
        FindingCode::AutostartOff,
        FindingCode::AutostartUnknown,
        FindingCode::Transient,
        FindingCode::StonithdConfigInvalid,
        FindingCode::FencingNotSetUp,
        FindingCode::KeyDirMissing,
        FindingCode::KeyDirUnreadable,
        FindingCode::KeyDirNotADirectory,
        FindingCode::KeyDirWritable,
        FindingCode::KeyDirMode,
        FindingCode::KeyDir,
        FindingCode::ClusterWithoutKey,
        FindingCode::ClusterKeys,
        FindingCode::KeyOfUnconfiguredCluster,
        FindingCode::KeyIdDuplicate,
        FindingCode::Key,
        FindingCode::KeyUnusable,
        FindingCode::NoKeysAnywhere,
        FindingCode::NodeOffline,
        FindingCode::NodePublishesNothing,
        FindingCode::NodePublishesMalformed,
        FindingCode::NodeKeyDiffers,
        FindingCode::NodeKeyMissing,
        FindingCode::NodeKeyExtra,
        FindingCode::NodeKeysSame,
        FindingCode::GuestNode,
        FindingCode::GuestNodeNameClash,
        FindingCode::GuestNodePortDuplicate,
        FindingCode::GuestNodeBadPort,
        FindingCode::GuestNodeNotVirtualDomain,
        FindingCode::GuestNodeStale,
        FindingCode::AuthkeyHostSame,
        FindingCode::AuthkeyHostDiffers,
        FindingCode::AuthkeyHostUnknown,
        FindingCode::AuthkeyGuestSame,
        FindingCode::AuthkeyGuestDiffers,
        FindingCode::AuthkeyGuestUnknown,
        FindingCode::AuthkeyGuestNotRunning,
    ];

    /// The code as `--output json` writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            FindingCode::CloneConfigured => "clone-configured",
            FindingCode::CloneMissing => "clone-missing",
            FindingCode::ConnectdClone => "connectd-clone",
            FindingCode::ConnectdCloneMissing => "connectd-clone-missing",
            FindingCode::ConnectdSockDir => "connectd-sock-dir",
            FindingCode::ConnectdSockDirDiffers => "connectd-sock-dir-differs",
            FindingCode::StonithdNotConfigured => "stonithd-not-configured",
            FindingCode::ManagerdAgent => "managerd-agent",
            FindingCode::ManagerdAgentOther => "managerd-agent-other",
            FindingCode::ManagerdOrdered => "managerd-ordered",
            FindingCode::ManagerdUnordered => "managerd-unordered",
            FindingCode::ManagerdConstraints => "managerd-constraints",
            FindingCode::ManagerdConstraintsMissing => "managerd-constraints-missing",
            FindingCode::FencingDisabled => "fencing-disabled",
            FindingCode::FencingConsistent => "fencing-consistent",
            FindingCode::VmStonithInvalid => "vm-stonith-invalid",
            FindingCode::StickinessZero => "stickiness-zero",
            FindingCode::StickinessNotAScore => "stickiness-not-a-score",
            FindingCode::StickinessNegative => "stickiness-negative",
            FindingCode::Stickiness => "stickiness",
            FindingCode::LibvirtUnreachable => "libvirt-unreachable",
            FindingCode::GuestManaged => "guest-managed",
            FindingCode::GuestSoftFence => "guest-soft-fence",
            FindingCode::GuestUnmanaged => "guest-unmanaged",
            FindingCode::GuestEscalation => "guest-escalation",
            FindingCode::GuestEscalationMissing => "guest-escalation-missing",
            FindingCode::GuestLiveness => "guest-liveness",
            FindingCode::GuestLivenessOff => "guest-liveness-off",
            FindingCode::DomainXmlInvalid => "domain-xml-invalid",
            FindingCode::DomainXmlValid => "domain-xml-valid",
            FindingCode::ChannelMissing => "channel-missing",
            FindingCode::ChannelMisplaced => "channel-misplaced",
            FindingCode::Channel => "channel",
            FindingCode::UuidFixed => "uuid-fixed",
            FindingCode::UuidMissing => "uuid-missing",
            FindingCode::AutostartOn => "autostart-on",
            FindingCode::AutostartOff => "autostart-off",
            FindingCode::AutostartUnknown => "autostart-unknown",
            FindingCode::Transient => "transient",
            FindingCode::StonithdConfigInvalid => "stonithd-config-invalid",
            FindingCode::FencingNotSetUp => "fencing-not-set-up",
            FindingCode::KeyDirMissing => "key-dir-missing",
            FindingCode::KeyDirUnreadable => "key-dir-unreadable",
            FindingCode::KeyDirNotADirectory => "key-dir-not-a-directory",
            FindingCode::KeyDirWritable => "key-dir-writable",
            FindingCode::KeyDirMode => "key-dir-mode",
            FindingCode::KeyDir => "key-dir",
            FindingCode::ClusterWithoutKey => "cluster-without-key",
            FindingCode::ClusterKeys => "cluster-keys",
            FindingCode::KeyOfUnconfiguredCluster => "key-of-unconfigured-cluster",
            FindingCode::KeyIdDuplicate => "key-id-duplicate",
            FindingCode::Key => "key",
            FindingCode::KeyUnusable => "key-unusable",
            FindingCode::NoKeysAnywhere => "no-keys-anywhere",
            FindingCode::NodeOffline => "node-offline",
            FindingCode::NodePublishesNothing => "node-publishes-nothing",
            FindingCode::NodePublishesMalformed => "node-publishes-malformed",
            FindingCode::NodeKeyDiffers => "node-key-differs",
            FindingCode::NodeKeyMissing => "node-key-missing",
            FindingCode::NodeKeyExtra => "node-key-extra",
            FindingCode::NodeKeysSame => "node-keys-same",
            FindingCode::GuestNode => "guest-node",
            FindingCode::GuestNodeNameClash => "guest-node-name-clash",
            FindingCode::GuestNodePortDuplicate => "guest-node-port-duplicate",
            FindingCode::GuestNodeBadPort => "guest-node-bad-port",
            FindingCode::GuestNodeNotVirtualDomain => "guest-node-not-virtualdomain",
            FindingCode::GuestNodeStale => "guest-node-stale",
            FindingCode::AuthkeyHostSame => "authkey-host-same",
            FindingCode::AuthkeyHostDiffers => "authkey-host-differs",
            FindingCode::AuthkeyHostUnknown => "authkey-host-unknown",
            FindingCode::AuthkeyGuestSame => "authkey-guest-same",
            FindingCode::AuthkeyGuestDiffers => "authkey-guest-differs",
            FindingCode::AuthkeyGuestUnknown => "authkey-guest-unknown",
            FindingCode::AuthkeyGuestNotRunning => "authkey-guest-not-running",
        }
    }
}

impl Serialize for FindingCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// One finding of `vm-ctl check`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Domain (or "cluster" for cluster-wide findings).
    pub subject: String,
    /// What kind of finding it is.
    pub code: FindingCode,
    /// `ok`, `warning` or `error`.
    pub level: Level,
    /// What was checked and found.
    pub message: String,
    /// How to fix it ("" when ok).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub fix: String,
}

/// Severity of a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Passed.
    Ok,
    /// Works, but should be changed.
    Warning,
    /// Will not work.
    Error,
}

/// What `stonith keygen` reports: the new key's public facts (never the key itself) and what
/// to do with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeygenReport {
    /// The guest cluster.
    pub cluster: String,
    /// The key file.
    pub file: std::path::PathBuf,
    /// The key id.
    pub id: String,
    /// The key's fingerprint.
    pub fingerprint: String,
    /// Whether the file was written (false: dry run).
    pub written: bool,
    /// Host nodes to copy the file to (empty when the CIB could not be read).
    pub copy_to: Vec<String>,
    /// The instructions, as printed in text mode.
    pub instructions: String,
}

/// What `stonith token` reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenReport {
    /// The guest's domain.
    pub domain: String,
    /// The host resource the token names.
    pub resource: String,
    /// The key-derivation digest (`md5`, `sha256`).
    pub digest: String,
    /// The token.
    pub token: String,
    /// `DOMAIN:TOKEN`, for a hostlist.
    pub entry: String,
}

/// What `stonith guest-config` reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GuestConfigReport {
    /// The crm shell section.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crm: Option<String>,
    /// The pcs section.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pcs: Option<String>,
    /// The cibadmin section.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cibadmin: Option<String>,
}

/// Everything a command reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Outcome {
    /// Per-guest results of a mutating command.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub guests: Vec<GuestReport>,
    /// `resource list` rows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub list: Option<Vec<ListRow>>,
    /// `resource show` text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub show: Option<String>,
    /// `check` findings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub findings: Option<Vec<Finding>>,
    /// `--dry-run` result.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<DryRun>,
    /// `stonith keygen` result.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keygen: Option<KeygenReport>,
    /// `stonith token` result.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<TokenReport>,
    /// `stonith guest-config` result.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guest_config: Option<GuestConfigReport>,
    /// `status` report.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<crate::status::StatusReport>,
    /// Warnings (also printed on stderr in text mode).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl Outcome {
    /// `check`'s verdict: [`Error::CheckFailed`](crate::error::Error::CheckFailed) when a
    /// finding is an error (the report itself has them all).
    pub fn check_result(&self) -> crate::error::Result<()> {
        let count = self
            .findings
            .as_ref()
            .map_or(0, |f| f.iter().filter(|f| f.level == Level::Error).count());
        if count == 0 {
            Ok(())
        } else {
            Err(crate::error::Error::CheckFailed { count })
        }
    }

    /// Render for `format`: (stdout text, stderr text).
    pub fn render(&self, format: Format) -> (String, String) {
        let mut err = String::new();
        for w in &self.warnings {
            let _ = writeln!(err, "warning: {w}");
        }
        match format {
            Format::Json => {
                let json = serde_json::to_string_pretty(self).unwrap_or_else(|e| {
                    format!("{{\"error\": \"cannot render the report as JSON: {e}\"}}")
                });
                (format!("{json}\n"), err)
            }
            Format::Text => (self.text(), err),
        }
    }

    fn text(&self) -> String {
        let mut out = String::new();
        if let Some(dry) = &self.dry_run {
            let _ = writeln!(out, "# dry run: nothing was written\n# crm shell:");
            out.push_str(&dry.crm);
            if !dry.removed.is_empty() {
                let _ = writeln!(out, "# removed: {}", dry.removed.join(" "));
            }
            let _ = writeln!(out, "# CIB XML:");
            out.push_str(&dry.xml);
            let _ = writeln!(
                out,
                "# crm_verify: {}",
                if dry.valid { "valid" } else { "INVALID" }
            );
            for line in dry.verify_messages.lines() {
                let _ = writeln!(out, "#   {line}");
            }
        }
        for g in &self.guests {
            let what = match g.change {
                Change::Created => "created",
                Change::AlreadyPresent => "already present",
                Change::Deleted => "deleted",
                Change::Absent => "not configured (nothing to delete)",
                Change::Started => "start requested",
                Change::Stopped => "stop requested",
                Change::Unchanged => "unchanged",
                Change::Moved => "moved",
                Change::Unmoved => "move constraints cleared",
                Change::PreferenceMoved => "preferred node moved",
                Change::Skipped => "skipped",
                Change::WouldChange => "would change",
            };
            let _ = write!(out, "{}: {what} ({})", g.domain, g.resource);
            if !g.detail.is_empty() {
                let _ = write!(out, ": {}", g.detail);
            }
            out.push('\n');
        }
        if let Some(rows) = &self.list {
            // the original's six columns; a seventh only when there are guest nodes, so that
            // scripts reading the original's list see no change without them
            let nodes = rows.iter().any(|r| r.guest_node.is_some());
            let _ = write!(
                out,
                "{:<20} {:<20} {:<20} {:<20} {:<20} ",
                "DOMAIN", "RESOURCE", "MIGRATION", "PREFERRED NODE", "RUNNING NODE"
            );
            let _ = writeln!(
                out,
                "{}",
                if nodes {
                    format!("{:<20} GUEST NODE", "MOVE CONSTRAINT")
                } else {
                    "MOVE CONSTRAINT".to_owned()
                }
            );
            let dash = "-".repeat(20);
            let _ = write!(out, "{dash} {dash} {dash} {dash} {dash} {dash}");
            let _ = writeln!(
                out,
                "{}",
                if nodes {
                    format!(" {dash}")
                } else {
                    String::new()
                }
            );
            for r in rows {
                let _ = write!(
                    out,
                    "{:<20} {:<20} {:<20} {:<20} {:<20} ",
                    r.domain, r.resource, r.migration, r.preferred_node, r.running_node,
                );
                if nodes {
                    let node = r.guest_node.as_ref().map_or_else(
                        || "-".to_owned(),
                        |g| {
                            format!(
                                "{} ({} {})",
                                g.name,
                                g.transport,
                                g.port_number()
                                    .map_or_else(|| "?".to_owned(), |p| p.to_string())
                            )
                        },
                    );
                    let _ = writeln!(out, "{:<20} {node}", r.move_constraint);
                } else {
                    let _ = writeln!(out, "{}", r.move_constraint);
                }
            }
        }
        if let Some(show) = &self.show {
            out.push_str(show);
        }
        if let Some(k) = &self.keygen {
            out.push_str(&k.instructions);
        }
        if let Some(t) = &self.token {
            let _ = writeln!(out, "{}", t.entry);
        }
        if let Some(g) = &self.guest_config {
            let sections = [&g.crm, &g.pcs, &g.cibadmin];
            for (i, section) in sections.into_iter().flatten().enumerate() {
                if i > 0 {
                    out.push('\n');
                }
                out.push_str(section);
            }
        }
        if let Some(status) = &self.status {
            out.push_str(&status.text());
        }
        if let Some(findings) = &self.findings {
            for f in findings {
                let tag = match f.level {
                    Level::Ok => "ok     ",
                    Level::Warning => "WARNING",
                    Level::Error => "ERROR  ",
                };
                let _ = writeln!(out, "[{tag}] {}: {}", f.subject, f.message);
                if !f.fix.is_empty() {
                    let _ = writeln!(out, "          fix: {}", f.fix);
                }
            }
        }
        out
    }
}

/// How `status --watch` shows each report on stdout: text redrawn in place on a terminal
/// (cleared first) or one screen after the other (a blank line between) elsewhere; JSON as one
/// document per line. Warnings and errors go to stderr.
#[derive(Debug)]
pub struct WatchScreen {
    format: Format,
    quiet: bool,
    terminal: bool,
}

impl WatchScreen {
    /// A screen for `format` on this process's stdout.
    pub fn new(format: Format, quiet: bool) -> Self {
        use std::io::IsTerminal as _;
        Self {
            format,
            quiet,
            terminal: std::io::stdout().is_terminal(),
        }
    }
}

impl crate::commands::status::Screen for WatchScreen {
    fn show(&mut self, outcome: &crate::error::Result<Outcome>) -> std::io::Result<()> {
        use std::io::Write as _;
        let mut stdout = std::io::stdout().lock();
        match outcome {
            Ok(o) => {
                if !self.quiet {
                    for w in &o.warnings {
                        eprintln!("warning: {w}");
                    }
                }
                match self.format {
                    Format::Json => {
                        let line = serde_json::to_string(o).map_err(std::io::Error::other)?;
                        writeln!(stdout, "{line}")?;
                    }
                    Format::Text if self.terminal => {
                        write!(stdout, "\x1b[H\x1b[2J{}", o.text())?;
                    }
                    Format::Text => writeln!(stdout, "{}", o.text())?,
                }
            }
            Err(e) => {
                let msg = vm_common::error_chain(e);
                eprintln!("vm-ctl: {msg} (trying again at the next change)");
                if self.format == Format::Json {
                    let json = serde_json::json!({ "error": msg, "exit_code": e.exit_code() });
                    writeln!(stdout, "{json}")?;
                }
            }
        }
        stdout.flush()
    }

    fn refresh_unchanged(&self) -> bool {
        self.format == Format::Text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finding_codes_are_distinct_kebab_words_and_in_the_json() {
        let mut seen = std::collections::BTreeSet::new();
        for c in FindingCode::ALL {
            let s = c.as_str();
            assert!(seen.insert(s), "{s} twice");
            assert!(
                !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'),
                "{s}"
            );
        }
        let f = Finding {
            subject: "g1".into(),
            code: FindingCode::UuidMissing,
            level: Level::Warning,
            message: "no <uuid>".into(),
            fix: "add one".into(),
        };
        let v = serde_json::to_value(&f).unwrap();
        assert_eq!(v["code"], "uuid-missing");
        assert_eq!(v["level"], "warning");
    }

    /// docs/operations.md's table of finding codes lists every code.
    #[test]
    fn every_finding_code_is_documented() {
        let doc = include_str!("../../docs/operations.md");
        for c in FindingCode::ALL {
            assert!(
                doc.contains(&format!("| `{}` |", c.as_str())),
                "{}",
                c.as_str()
            );
        }
    }

    #[test]
    fn list_has_the_original_six_columns() {
        let o = Outcome {
            list: Some(vec![ListRow {
                domain: "g1".into(),
                resource: "prmVMCTL_g1".into(),
                migration: "on".into(),
                preferred_node: "n1".into(),
                running_node: "Stopped".into(),
                move_constraint: "no".into(),
                guest_node: None,
            }]),
            ..Outcome::default()
        };
        let (text, _) = o.render(Format::Text);
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(
            lines[2].split_whitespace().collect::<Vec<_>>(),
            ["g1", "prmVMCTL_g1", "on", "n1", "Stopped", "no"]
        );
        let (json, _) = o.render(Format::Json);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["list"][0]["running_node"], "Stopped");
        assert!(v.get("guests").is_none());
        assert!(v["list"][0].get("guest_node").is_none());
    }

    #[test]
    fn list_shows_guest_nodes_in_a_seventh_column() {
        let row = |dom: &str, node: Option<crate::guest_node::GuestNode>| ListRow {
            domain: dom.into(),
            resource: format!("prmVMCTL_{dom}"),
            migration: "on".into(),
            preferred_node: "n1".into(),
            running_node: "Stopped".into(),
            move_constraint: "no".into(),
            guest_node: node,
        };
        let node = crate::guest_node::GuestNode {
            name: "app".into(),
            resource: "prmVMCTL_g2".into(),
            transport: "channel",
            addr: "127.0.0.1".into(),
            port: Some("3122".into()),
            connect_timeout: Some("60s".into()),
        };
        let o = Outcome {
            list: Some(vec![row("g1", None), row("g2", Some(node))]),
            ..Outcome::default()
        };
        let (text, _) = o.render(Format::Text);
        let lines: Vec<_> = text.lines().collect();
        assert!(
            lines[0].ends_with("MOVE CONSTRAINT      GUEST NODE"),
            "{text}"
        );
        assert_eq!(
            lines[2].split_whitespace().collect::<Vec<_>>(),
            ["g1", "prmVMCTL_g1", "on", "n1", "Stopped", "no", "-"]
        );
        assert!(
            lines[3].ends_with("no                   app (channel 3122)"),
            "{text}"
        );
        let (json, _) = o.render(Format::Json);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["list"][1]["guest_node"]["transport"], "channel");
        assert_eq!(v["list"][1]["guest_node"]["port"], "3122");
    }

    #[test]
    fn warnings_go_to_stderr() {
        let o = Outcome {
            warnings: vec!["careful".into()],
            ..Outcome::default()
        };
        let (out, err) = o.render(Format::Text);
        assert_eq!(out, "");
        assert_eq!(err, "warning: careful\n");
    }
}
