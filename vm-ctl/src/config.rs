//! `/etc/vm-ctl.conf`: vm-ctl's configuration, in the original Linux-HA Japan format.
//!
//! The original vm-ctl *sourced* this file as a bash script. This vm-ctl **parses** it and never
//! executes it: the file keeps the look of bash assignments, and only this subset is accepted,
//! at most one assignment per line:
//!
//! ```text
//! # a comment: `#` at the start of a word runs to the end of the line
//! key=value                  # an unquoted word, without whitespace
//! key="value"                # double quotes: \" \\ \$ and \` are escapes
//! key='value'                # single quotes: every character is literal
//! key=                       # the empty string
//! key=(word "two words" '')  # an array, opened and closed on one line; () is empty
//! export key=value           # an `export` prefix is allowed and means nothing here
//! ```
//!
//! Key names are `[A-Za-z_][A-Za-z0-9_]*`. Anything else is an error naming the line: commands
//! (`echo`, `source`, `if`, ...), a second assignment or word on a line, an array spanning lines,
//! and any value the shell would expand (`$VAR`, `${...}`, `$(...)`, backticks, an unquoted `~`,
//! and in arrays unquoted glob or brace characters): such values must be written literally.
//! As in bash, a key assigned twice takes its later value; vm-ctl warns about it. Unknown keys
//! are ignored with a [`Warning`].
//!
//! Values are validated as they are read ([`Config::parse`]), and an invalid one is an error
//! naming the file, the line and the key. Keys the original tool had no built-in default for
//! (`vm_cfg_dir`, `vm_allow_migrate`, `vm_stonith`, `vm_ocf`, `crmadmin_timeout`) stay `None`
//! when missing; the accessors ([`Config::cfg_dir`], [`Config::stonith`], ...) report them as
//! [`ConfigError::Missing`] when a command needs them. The example `vm-ctl.conf` shipped with
//! vm-ctl documents every key.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

/// Where vm-ctl reads its configuration unless told otherwise.
pub const DEFAULT_PATH: &str = "/etc/vm-ctl.conf";

/// Pacemaker's `on-fail` values accepted in the operation arrays.
const ON_FAIL: &[&str] = &[
    "ignore", "block", "stop", "restart", "standby", "fence", "demote",
];

/// Pacemaker duration units accepted after the number of an interval or timeout.
const DURATION_UNITS: &[&str] = &["", "ms", "msec", "s", "sec", "m", "min", "h", "hr"];

/// Rule operations accepted in `vm_*_loc`.
const RULE_OPS: &[&str] = &["lt", "gt", "lte", "gte", "eq", "ne"];

/// The prefixes of the numbered keys (`vm_pingd1`, `vm_pingd2`, ...).
const NUMBERED_PREFIXES: &[&str] = &["vm_pingd", "vm_diskd", "vm_managerd", "vm_stonithd"];

/// The configuration read from a vm-ctl.conf file.
///
/// Every field holds a validated value: the file's, or the original tool's built-in default
/// when the key is missing ([`Config::defaults`]). Fields without a built-in default are
/// `Option`s; use the accessors ([`Config::cfg_dir`], ...) to get them with an error that tells
/// the user what to set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `vm_cfg_dir`: the directory holding the domain XML files (absolute, without `..`).
    /// No default.
    pub cfg_dir: Option<PathBuf>,
    /// `vm_cfg_ext`: the suffix of the domain XML files, e.g. `.xml`. Default: empty.
    pub cfg_ext: String,
    /// `vm_allow_migrate`: whether Pacemaker may live-migrate guests. No default.
    pub allow_migrate: Option<bool>,
    /// `vm_stonith`: whether a failed stop or migrate_to fences the node (`true`) or blocks the
    /// resource (`false`). No default.
    pub stonith: Option<bool>,
    /// `vm_ocf`: the guests' resource agent, e.g. `ocf:heartbeat:VirtualDomain`. No default.
    pub ocf: Option<Agent>,
    /// `crmadmin_timeout`: the deadline of each Pacemaker tool call, in milliseconds (at least
    /// 1). No default; [`Config::crmadmin_timeout`] gives it as a [`Duration`].
    pub crmadmin_timeout: Option<u64>,
    /// `vm_hypervisor`: the libvirt connection URI. Default: `qemu:///system`.
    pub hypervisor: String,
    /// `vm_migration_transport`: the live-migration transport. Default: `ssh`.
    pub migration_transport: String,
    /// `vm_start_op`: `(interval timeout on-fail)`. Default: `(0 90s restart)`.
    pub start_op: OpSpec,
    /// `vm_stop_op`: `(interval timeout)`, `on_fail` is `None` (it comes from `vm_stonith`, see
    /// [`Config::stop_on_fail`]). Default: `(0 90s)`.
    pub stop_op: OpSpec,
    /// `vm_monitor_op`: `(interval timeout on-fail)`, non-zero interval. Default:
    /// `(10s 30s restart)`.
    pub monitor_op: OpSpec,
    /// `vm_migrate_to_op`: `(interval timeout)`, `on_fail` is `None` (it comes from
    /// `vm_stonith`). Default: `(0 300s)`.
    pub migrate_to_op: OpSpec,
    /// `vm_migrate_from_op`: `(interval timeout on-fail)`. Default: `(0 240s restart)`.
    pub migrate_from_op: OpSpec,
    /// `vm_node_loc_act`: the score of the location constraint preferring a guest's node.
    /// Default: `200`.
    pub node_loc_act: Score,
    /// `vm_pingd1`, `vm_pingd2`, ...: the ping clones the guests depend on, in order.
    pub pingd: Vec<CloneRef>,
    /// `vm_diskd1`, `vm_diskd2`, ...: the disk-check clones the guests depend on, in order.
    pub diskd: Vec<CloneRef>,
    /// `vm_managerd1`, `vm_managerd2`, ...: the VM-manager clones the guests depend on.
    pub managerd: Vec<CloneRef>,
    /// `vm_stonithd1`, `vm_stonithd2`, ...: the ids of the vm-stonithd clones the guests depend
    /// on (no node attribute: there is no location rule for them).
    pub stonithd: Vec<String>,
    /// `vm_pingd_loc`, `vm_pingd_col`, `vm_pingd_odr`. Defaults: `(lt 100)`, `INFINITY`,
    /// `(0 false)`.
    pub pingd_rules: AttrRules,
    /// `vm_diskd_loc`, `vm_diskd_col`, `vm_diskd_odr`. Defaults: `(eq ERROR)`, `INFINITY`,
    /// `(0 false)`.
    pub diskd_rules: AttrRules,
    /// `vm_managerd_loc`, `vm_managerd_col`, `vm_managerd_odr`. Defaults: `(eq ERROR)`,
    /// `INFINITY`, `(0 false)`.
    pub managerd_rules: AttrRules,
    /// `vm_stonithd_col`: the colocation score with each vm-stonithd clone. Default: `INFINITY`.
    pub stonithd_col: Score,
    /// `vm_stonithd_odr`: the order of each vm-stonithd clone before the guests. Default:
    /// `(0 false)`.
    pub stonithd_odr: OrderSpec,
    /// `vm_connectd_sock_dir` (not in the original): the directory host vm-connectd watches for
    /// the guests' channel sockets. Default: `/var/lib/libvirt/qemu`.
    pub connectd_sock_dir: PathBuf,
    /// `vm_liveness_timeout` (not in the original): whole seconds a guest's own vm-connectd may
    /// stay silent on the guest's channel before its resource's monitor fails (the
    /// `liveness_timeout` parameter of `ocf:pm-kvm-tools:VirtualDomain`). `None` when not set
    /// or 0: the guest's liveness is not monitored.
    pub liveness_timeout: Option<u64>,
    /// `vm_migration_threshold` (not in the original): failures of a guest on one node before
    /// Pacemaker moves it elsewhere (the `migration-threshold` meta attribute). `None` when not
    /// set: Pacemaker's default (INFINITY: a failing guest restarts on the same node forever).
    pub migration_threshold: Option<Score>,
    /// `vm_failure_timeout` (not in the original): after how long without another failure a
    /// guest's failures on a node expire (the `failure-timeout` meta attribute), a Pacemaker
    /// duration. `None` when not set: they never expire.
    pub failure_timeout: Option<String>,
    /// `vm_guest_node`, `vm_guest_node_transport`, `vm_guest_node_port_base`,
    /// `vm_guest_node_connect_timeout` (not in the original): the defaults for making guests
    /// Pacemaker guest nodes ([`crate::guest_node`]).
    pub guest_node: GuestNodeDefaults,
    /// The file this configuration was read from (or is named after, for
    /// [`Config::defaults`]); used in error messages.
    pub source: PathBuf,
}

/// How guest nodes are reached by default (`vm_guest_node_transport`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestNodeTransport {
    /// Over the guest's vm-connectd channel: the cluster connects to a host-local port
    /// (`remote-addr=127.0.0.1`, a `remote-port` of its own per guest node). No network path
    /// to the guest is needed.
    Channel,
    /// Over the network, to the guest's own address (`remote-addr` given with
    /// `--guest-node-addr`).
    Tcp,
}

impl GuestNodeTransport {
    /// The name used in vm-ctl.conf and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Channel => "channel",
            Self::Tcp => "tcp",
        }
    }
}

/// The guest-node keys of vm-ctl.conf, with their defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestNodeDefaults {
    /// `vm_guest_node` (default no): `resource add` makes guests guest nodes without
    /// `--guest-node`.
    pub enabled: bool,
    /// `vm_guest_node_transport` (default channel).
    pub transport: GuestNodeTransport,
    /// `vm_guest_node_port_base` (default 3122): channel guest nodes get the lowest free
    /// host-local port from here up.
    pub port_base: u16,
    /// `vm_guest_node_connect_timeout` (default 60s: TCG guests boot slowly): the
    /// `remote-connect-timeout` meta attribute.
    pub connect_timeout: String,
}

impl Default for GuestNodeDefaults {
    fn default() -> Self {
        Self {
            enabled: false,
            transport: GuestNodeTransport::Channel,
            port_base: 3122,
            connect_timeout: "60s".to_owned(),
        }
    }
}

/// One resource operation: `vm_start_op=(0 90s restart)` and the like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpSpec {
    /// The interval, a Pacemaker duration such as `0` or `10s`.
    pub interval: String,
    /// The timeout, a Pacemaker duration such as `90s`.
    pub timeout: String,
    /// The `on-fail` value; `None` for stop and migrate_to, whose `on-fail` comes from
    /// `vm_stonith` ([`Config::stop_on_fail`]).
    pub on_fail: Option<String>,
}

/// A resource agent: `class:provider:type` (ocf) or `class:type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    /// The standard, e.g. `ocf`.
    pub class: String,
    /// The provider, e.g. `heartbeat`; present exactly for the `ocf` class.
    pub provider: Option<String>,
    /// The agent's type, e.g. `VirtualDomain`.
    pub kind: String,
}

/// A clone the guests depend on and the node attribute it maintains:
/// `vm_pingd1=(clnPingd default_ping_set)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloneRef {
    /// The clone resource's id.
    pub rsc: String,
    /// The node attribute the clone sets, if given.
    pub attr: Option<String>,
}

/// A location rule on a node attribute: `vm_pingd_loc=(lt 100)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSpec {
    /// The comparison: `lt`, `gt`, `lte`, `gte`, `eq` or `ne`.
    pub op: String,
    /// The value compared with, e.g. `100` or `ERROR`.
    pub value: String,
}

/// An order constraint's parameters: `vm_pingd_odr=(0 false)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderSpec {
    /// The order's score (`0` makes it advisory).
    pub score: Score,
    /// Whether the order also applies, reversed, when stopping.
    pub symmetrical: bool,
}

/// The constraints tying guests to one family of attribute clones (pingd, diskd, managerd).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrRules {
    /// `vm_*_loc`: where the node attribute makes a node unfit for guests.
    pub loc: RuleSpec,
    /// `vm_*_col`: the colocation score of the guests with the clone.
    pub col: Score,
    /// `vm_*_odr`: the order of the clone before the guests.
    pub odr: OrderSpec,
}

/// A Pacemaker score, normalised: `INFINITY`, `-INFINITY` or an integer in decimal.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Score(String);

impl Score {
    /// Parses a score: an integer with an optional sign, or `INFINITY`, `+INFINITY`,
    /// `-INFINITY`, `inf`, `+inf`, `-inf` in any case. `None` for anything else.
    pub fn parse(text: &str) -> Option<Score> {
        match text.to_ascii_lowercase().as_str() {
            "infinity" | "+infinity" | "inf" | "+inf" => Some(Score::infinity()),
            "-infinity" | "-inf" => Some(Score::minus_infinity()),
            _ => text.parse::<i64>().ok().map(Score::from),
        }
    }

    /// `INFINITY`.
    pub fn infinity() -> Score {
        Score("INFINITY".to_owned())
    }

    /// `-INFINITY`.
    pub fn minus_infinity() -> Score {
        Score("-INFINITY".to_owned())
    }

    /// The normalised score, as Pacemaker takes it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<i64> for Score {
    fn from(value: i64) -> Score {
        Score(value.to_string())
    }
}

impl fmt::Display for Score {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for Agent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.provider {
            Some(provider) => write!(f, "{}:{provider}:{}", self.class, self.kind),
            None => write!(f, "{}:{}", self.class, self.kind),
        }
    }
}

/// Something in the file that is not an error but deserves the user's attention: an unknown
/// key, a key set twice, a numbered key after a gap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The file.
    pub file: PathBuf,
    /// The line (1-based).
    pub line: usize,
    /// What is wrong, without the location.
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
    }
}

/// Why a configuration could not be read, or lacks a value a command needs.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("Cannot read {}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: io::Error,
    },
    /// A line is not one of the accepted assignment forms.
    #[error("{}:{}: {}", .file.display(), .line, .message)]
    Syntax {
        /// The file.
        file: PathBuf,
        /// The line (1-based).
        line: usize,
        /// What is wrong and how to write it instead.
        message: String,
    },
    /// A known key has a value it cannot take.
    #[error("{}:{}: {} {}", .file.display(), .line, .key, .message)]
    Invalid {
        /// The file.
        file: PathBuf,
        /// The line (1-based) of the assignment in effect.
        line: usize,
        /// The key.
        key: String,
        /// What the value must be and what it is, phrased to follow the key
        /// (`must be on or off, got "yes"`).
        message: String,
    },
    /// A key without a built-in default is needed but not set.
    #[error("{} is not set in {}: {}", .key, .file.display(), missing_hint(.key))]
    Missing {
        /// The key.
        key: &'static str,
        /// The file it should be set in.
        file: PathBuf,
    },
    /// A domain name cannot name a file in `vm_cfg_dir` ([`Config::domain_xml_path`]).
    #[error(
        "{name:?} cannot be a domain name: it must be non-empty, not `.` or `..`, and contain \
         no `/` or NUL"
    )]
    DomainName {
        /// The rejected name.
        name: String,
    },
}

/// What to do about a missing key, for [`ConfigError::Missing`].
fn missing_hint(key: &str) -> &'static str {
    match key {
        "vm_cfg_dir" => {
            "set it to the directory holding the domain XML files, e.g. vm_cfg_dir=/etc/libvirt/qemu"
        }
        "vm_allow_migrate" => {
            "set it to on to live-migrate guests, or off to stop and restart them elsewhere, e.g. \
             vm_allow_migrate=off"
        }
        "vm_stonith" => {
            "set it to on (a failed stop or migration fences the node) or off (the resource is \
             blocked), e.g. vm_stonith=on"
        }
        "vm_ocf" => "set it to the guests' resource agent, e.g. vm_ocf=ocf:heartbeat:VirtualDomain",
        "crmadmin_timeout" => {
            "set it to the deadline of each Pacemaker tool call in milliseconds, e.g. \
             crmadmin_timeout=10000"
        }
        _ => "see the example vm-ctl.conf shipped with vm-ctl",
    }
}

impl Config {
    /// Reads and parses the file at `path` ([`Config::parse`]).
    pub fn load(path: &Path) -> Result<(Config, Vec<Warning>), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Parses the text of a vm-ctl.conf file (see the [module documentation](self)); `source`
    /// names it in messages. Missing keys take their built-in defaults. Returns the warnings
    /// (unknown keys, repeated keys, ignored numbered keys) in line order.
    pub fn parse(text: &str, source: &Path) -> Result<(Config, Vec<Warning>), ConfigError> {
        let mut entries: BTreeMap<String, Entry> = BTreeMap::new();
        let mut warnings = Vec::new();
        for (index, line) in text.split('\n').enumerate() {
            let line_no = index + 1;
            let assignment = lex_line(line).map_err(|message| ConfigError::Syntax {
                file: source.to_path_buf(),
                line: line_no,
                message,
            })?;
            let Some((key, value)) = assignment else {
                continue;
            };
            let entry = Entry {
                value,
                line: line_no,
            };
            if let Some(previous) = entries.insert(key.clone(), entry) {
                warnings.push(Warning {
                    file: source.to_path_buf(),
                    line: line_no,
                    message: format!(
                        "{key} is set again (previously on line {}); the later value wins",
                        previous.line
                    ),
                });
            }
        }

        let mut reader = Reader {
            file: source,
            entries,
            warnings,
        };
        let config = reader.config()?;
        let mut warnings = reader.warnings;
        warnings.sort_by_key(|warning| warning.line);
        Ok((config, warnings))
    }

    /// The configuration with every key at the original tool's built-in default (the keys
    /// without one are `None`). `source` names the file in messages.
    pub fn defaults(source: &Path) -> Config {
        let attr_rules = |op: &str, value: &str| AttrRules {
            loc: RuleSpec {
                op: op.to_owned(),
                value: value.to_owned(),
            },
            col: Score::infinity(),
            odr: OrderSpec {
                score: Score::from(0),
                symmetrical: false,
            },
        };
        Config {
            cfg_dir: None,
            cfg_ext: String::new(),
            allow_migrate: None,
            stonith: None,
            ocf: None,
            crmadmin_timeout: None,
            hypervisor: "qemu:///system".to_owned(),
            migration_transport: "ssh".to_owned(),
            start_op: OpSpec::new("0", "90s", Some("restart")),
            stop_op: OpSpec::new("0", "90s", None),
            monitor_op: OpSpec::new("10s", "30s", Some("restart")),
            migrate_to_op: OpSpec::new("0", "300s", None),
            migrate_from_op: OpSpec::new("0", "240s", Some("restart")),
            node_loc_act: Score::from(200),
            pingd: Vec::new(),
            diskd: Vec::new(),
            managerd: Vec::new(),
            stonithd: Vec::new(),
            pingd_rules: attr_rules("lt", "100"),
            diskd_rules: attr_rules("eq", "ERROR"),
            managerd_rules: attr_rules("eq", "ERROR"),
            stonithd_col: Score::infinity(),
            stonithd_odr: OrderSpec {
                score: Score::from(0),
                symmetrical: false,
            },
            connectd_sock_dir: PathBuf::from("/var/lib/libvirt/qemu"),
            liveness_timeout: None,
            migration_threshold: None,
            failure_timeout: None,
            guest_node: GuestNodeDefaults::default(),
            source: source.to_path_buf(),
        }
    }

    /// `vm_cfg_dir`, or [`ConfigError::Missing`].
    pub fn cfg_dir(&self) -> Result<&Path, ConfigError> {
        self.cfg_dir
            .as_deref()
            .ok_or_else(|| self.missing("vm_cfg_dir"))
    }

    /// `vm_allow_migrate`, or [`ConfigError::Missing`].
    pub fn allow_migrate(&self) -> Result<bool, ConfigError> {
        self.allow_migrate
            .ok_or_else(|| self.missing("vm_allow_migrate"))
    }

    /// `vm_stonith`, or [`ConfigError::Missing`].
    pub fn stonith(&self) -> Result<bool, ConfigError> {
        self.stonith.ok_or_else(|| self.missing("vm_stonith"))
    }

    /// `vm_ocf`, or [`ConfigError::Missing`].
    pub fn ocf_agent(&self) -> Result<&Agent, ConfigError> {
        self.ocf.as_ref().ok_or_else(|| self.missing("vm_ocf"))
    }

    /// `crmadmin_timeout` as a [`Duration`], or [`ConfigError::Missing`].
    pub fn crmadmin_timeout(&self) -> Result<Duration, ConfigError> {
        self.crmadmin_timeout
            .map(Duration::from_millis)
            .ok_or_else(|| self.missing("crmadmin_timeout"))
    }

    /// The domain XML file of domain `dom`: `<vm_cfg_dir>/<dom><vm_cfg_ext>`.
    ///
    /// Fails with [`ConfigError::Missing`] without `vm_cfg_dir`, and with
    /// [`ConfigError::DomainName`] for a name that would not stay inside it.
    pub fn domain_xml_path(&self, dom: &str) -> Result<PathBuf, ConfigError> {
        let dir = self.cfg_dir()?;
        if dom.is_empty() || dom == "." || dom == ".." || dom.contains(['/', '\0']) {
            return Err(ConfigError::DomainName {
                name: dom.to_owned(),
            });
        }
        Ok(dir.join(format!("{dom}{}", self.cfg_ext)))
    }

    /// The `on-fail` of the stop and migrate_to operations: `"fence"` with `vm_stonith=on`,
    /// `"block"` with `vm_stonith=off`; [`ConfigError::Missing`] without `vm_stonith`.
    pub fn stop_on_fail(&self) -> Result<&'static str, ConfigError> {
        Ok(if self.stonith()? { "fence" } else { "block" })
    }

    fn missing(&self, key: &'static str) -> ConfigError {
        ConfigError::Missing {
            key,
            file: self.source.clone(),
        }
    }
}

impl OpSpec {
    fn new(interval: &str, timeout: &str, on_fail: Option<&str>) -> OpSpec {
        OpSpec {
            interval: interval.to_owned(),
            timeout: timeout.to_owned(),
            on_fail: on_fail.map(str::to_owned),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Values: from assignments to a Config.
// ---------------------------------------------------------------------------------------------

/// The value of one assignment, after quote removal.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    /// `key=word`.
    Scalar(String),
    /// `key=(word ...)`.
    Array(Vec<String>),
}

/// The assignment in effect for a key.
#[derive(Debug)]
struct Entry {
    value: Value,
    line: usize,
}

/// Turns the assignments in effect into a [`Config`], collecting warnings.
#[derive(Debug)]
struct Reader<'a> {
    file: &'a Path,
    /// The assignments not consumed yet.
    entries: BTreeMap<String, Entry>,
    warnings: Vec<Warning>,
}

/// What the check of one value returns: the value, or a message following the key.
type Checked<T> = Result<T, String>;

/// The kind of an operation array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpKind {
    /// `(interval timeout on-fail)`.
    WithOnFail,
    /// `(interval timeout on-fail)` with a non-zero interval.
    Recurring,
    /// `(interval timeout)`: on-fail comes from `vm_stonith`.
    OnFailFromStonith,
}

impl Reader<'_> {
    fn config(&mut self) -> Result<Config, ConfigError> {
        let mut c = Config::defaults(self.file);
        c.cfg_dir = self.take("vm_cfg_dir", |v| absolute_path(scalar(v)?))?;
        self.set(&mut c.cfg_ext, "vm_cfg_ext", |v| cfg_ext(scalar(v)?))?;
        c.allow_migrate = self.take("vm_allow_migrate", |v| on_off(scalar(v)?))?;
        c.stonith = self.take("vm_stonith", |v| on_off(scalar(v)?))?;
        c.ocf = self.take("vm_ocf", |v| agent(scalar(v)?))?;
        c.crmadmin_timeout = self.take("crmadmin_timeout", |v| milliseconds(scalar(v)?))?;
        self.set(&mut c.hypervisor, "vm_hypervisor", |v| {
            single_word(scalar(v)?, "qemu:///system")
        })?;
        self.set(&mut c.migration_transport, "vm_migration_transport", |v| {
            single_word(scalar(v)?, "ssh")
        })?;
        self.set(&mut c.start_op, "vm_start_op", |v| {
            op(v, OpKind::WithOnFail)
        })?;
        self.set(&mut c.stop_op, "vm_stop_op", |v| {
            op(v, OpKind::OnFailFromStonith)
        })?;
        self.set(&mut c.monitor_op, "vm_monitor_op", |v| {
            op(v, OpKind::Recurring)
        })?;
        self.set(&mut c.migrate_to_op, "vm_migrate_to_op", |v| {
            op(v, OpKind::OnFailFromStonith)
        })?;
        self.set(&mut c.migrate_from_op, "vm_migrate_from_op", |v| {
            op(v, OpKind::WithOnFail)
        })?;
        self.set(&mut c.node_loc_act, "vm_node_loc_act", |v| {
            score(scalar(v)?)
        })?;
        self.attr_rules(&mut c.pingd_rules, "vm_pingd")?;
        self.attr_rules(&mut c.diskd_rules, "vm_diskd")?;
        self.attr_rules(&mut c.managerd_rules, "vm_managerd")?;
        self.set(&mut c.stonithd_col, "vm_stonithd_col", |v| {
            score(scalar(v)?)
        })?;
        self.set(&mut c.stonithd_odr, "vm_stonithd_odr", order)?;
        self.set(&mut c.connectd_sock_dir, "vm_connectd_sock_dir", |v| {
            absolute_path(scalar(v)?)
        })?;
        c.liveness_timeout = self
            .take("vm_liveness_timeout", |v| liveness_timeout(scalar(v)?))?
            .flatten();
        c.migration_threshold = self.take("vm_migration_threshold", |v| {
            migration_threshold(scalar(v)?)
        })?;
        c.failure_timeout = self.take("vm_failure_timeout", |v| failure_timeout(scalar(v)?))?;
        self.set(&mut c.guest_node.enabled, "vm_guest_node", |v| {
            yes_no(scalar(v)?)
        })?;
        self.set(
            &mut c.guest_node.transport,
            "vm_guest_node_transport",
            |v| guest_node_transport(scalar(v)?),
        )?;
        self.set(
            &mut c.guest_node.port_base,
            "vm_guest_node_port_base",
            |v| guest_node_port(scalar(v)?),
        )?;
        self.set(
            &mut c.guest_node.connect_timeout,
            "vm_guest_node_connect_timeout",
            |v| connect_timeout(scalar(v)?),
        )?;
        c.pingd = self.numbered("vm_pingd", clone_ref)?;
        c.diskd = self.numbered("vm_diskd", clone_ref)?;
        c.managerd = self.numbered("vm_managerd", clone_ref)?;
        c.stonithd = self.numbered("vm_stonithd", stonithd_ref)?;

        for (key, entry) in std::mem::take(&mut self.entries) {
            let numbered_prefix = NUMBERED_PREFIXES.iter().find(|prefix| {
                key.strip_prefix(**prefix)
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            });
            let message = match numbered_prefix {
                Some(prefix) => format!(
                    "{key} is ignored: numbered keys are {prefix}1, {prefix}2, ... without \
                     leading zeros"
                ),
                None => format!("unknown key {key} is ignored"),
            };
            self.warn(entry.line, message);
        }
        Ok(c)
    }

    /// Consumes `key`, checking its value; `None` when it is not set.
    fn take<T>(
        &mut self,
        key: &str,
        check: impl FnOnce(&Value) -> Checked<T>,
    ) -> Result<Option<T>, ConfigError> {
        match self.entries.remove(key) {
            None => Ok(None),
            Some(entry) => self.check(key, &entry, check).map(Some),
        }
    }

    /// Consumes `key` into `slot` when it is set, checking its value.
    fn set<T>(
        &mut self,
        slot: &mut T,
        key: &str,
        check: impl FnOnce(&Value) -> Checked<T>,
    ) -> Result<(), ConfigError> {
        if let Some(value) = self.take(key, check)? {
            *slot = value;
        }
        Ok(())
    }

    fn check<T>(
        &self,
        key: &str,
        entry: &Entry,
        check: impl FnOnce(&Value) -> Checked<T>,
    ) -> Result<T, ConfigError> {
        check(&entry.value).map_err(|message| ConfigError::Invalid {
            file: self.file.to_path_buf(),
            line: entry.line,
            key: key.to_owned(),
            message,
        })
    }

    fn attr_rules(&mut self, rules: &mut AttrRules, prefix: &str) -> Result<(), ConfigError> {
        self.set(&mut rules.loc, &format!("{prefix}_loc"), rule)?;
        self.set(&mut rules.col, &format!("{prefix}_col"), |v| {
            score(scalar(v)?)
        })?;
        self.set(&mut rules.odr, &format!("{prefix}_odr"), order)
    }

    /// Consumes `<prefix>1`, `<prefix>2`, ... up to the first missing number, and warns about
    /// the higher numbers, which are ignored.
    fn numbered<T>(
        &mut self,
        prefix: &str,
        check: impl Fn(&Value) -> Checked<T>,
    ) -> Result<Vec<T>, ConfigError> {
        let mut by_number: BTreeMap<usize, (String, Entry)> = BTreeMap::new();
        let keys: Vec<String> = self
            .entries
            .keys()
            .filter(|key| entry_number(key, prefix).is_some())
            .cloned()
            .collect();
        for key in keys {
            if let (Some(n), Some(entry)) = (entry_number(&key, prefix), self.entries.remove(&key))
            {
                by_number.insert(n, (key, entry));
            }
        }
        let mut values = Vec::new();
        let mut next = 1;
        while let Some((key, entry)) = by_number.remove(&next) {
            values.push(self.check(&key, &entry, &check)?);
            next += 1;
        }
        for (key, entry) in by_number.into_values() {
            self.warn(
                entry.line,
                format!(
                    "{key} is ignored: {prefix}{next} is not set, and the {prefix}N entries end \
                     at the first missing number"
                ),
            );
        }
        Ok(values)
    }

    fn warn(&mut self, line: usize, message: String) {
        self.warnings.push(Warning {
            file: self.file.to_path_buf(),
            line,
            message,
        });
    }
}

/// `Some(n)` when `key` is `prefix` followed by a number 1, 2, ... without leading zeros
/// (`usize::MAX` for a number too large to count to).
fn entry_number(key: &str, prefix: &str) -> Option<usize> {
    let digits = key.strip_prefix(prefix)?;
    if digits.is_empty() || digits.starts_with('0') || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(digits.parse().unwrap_or(usize::MAX))
}

/// A value for messages: `"text"` for a scalar, `(word word)` for an array.
fn render(value: &Value) -> String {
    match value {
        Value::Scalar(text) => format!("{text:?}"),
        Value::Array(words) => {
            let words: Vec<String> = words
                .iter()
                .map(|word| {
                    let plain = !word.is_empty()
                        && word
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || "_.:/+-=@%,".contains(c));
                    if plain {
                        word.clone()
                    } else {
                        format!("{word:?}")
                    }
                })
                .collect();
            format!("({})", words.join(" "))
        }
    }
}

fn scalar(value: &Value) -> Checked<&str> {
    match value {
        Value::Scalar(text) => Ok(text),
        Value::Array(_) => Err(format!(
            "must be a single value, not an array, got {}",
            render(value)
        )),
    }
}

/// The words of an array of `min..=max` elements; `shape` describes them, e.g.
/// `(interval timeout)`.
fn array<'v>(value: &'v Value, min: usize, max: usize, shape: &str) -> Checked<&'v [String]> {
    let words = match value {
        Value::Array(words) => words,
        Value::Scalar(_) => {
            return Err(format!(
                "must be an array {shape} in parentheses, got {}",
                render(value)
            ));
        }
    };
    if (min..=max).contains(&words.len()) {
        return Ok(words);
    }
    let count = if min == max {
        format!("{min} element{}", if min == 1 { "" } else { "s" })
    } else {
        format!("{min} or {max} elements")
    };
    Err(format!(
        "must have {count} {shape}, got {}: {}",
        words.len(),
        render(value)
    ))
}

fn absolute_path(text: &str) -> Checked<PathBuf> {
    let path = Path::new(text);
    if text.is_empty() {
        return Err("must be an absolute path, got an empty value".to_owned());
    }
    if !path.is_absolute() {
        return Err(format!("must be an absolute path, got {text:?}"));
    }
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(format!(
            "must be an absolute path without `..` components, got {text:?}"
        ));
    }
    Ok(path.to_path_buf())
}

fn cfg_ext(text: &str) -> Checked<String> {
    if text.contains('/') {
        return Err(format!(
            "must be a file name suffix such as .xml, without `/`, got {text:?}"
        ));
    }
    Ok(text.to_owned())
}

fn on_off(text: &str) -> Checked<bool> {
    match text {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("must be on or off, got {text:?}")),
    }
}

/// `vm_guest_node`: yes/no (on/off too, as the original's switches are written).
fn yes_no(text: &str) -> Checked<bool> {
    match text {
        "yes" | "on" => Ok(true),
        "no" | "off" => Ok(false),
        _ => Err(format!("must be yes or no, got {text:?}")),
    }
}

/// `vm_guest_node_transport`: channel or tcp.
fn guest_node_transport(text: &str) -> Checked<GuestNodeTransport> {
    match text {
        "channel" => Ok(GuestNodeTransport::Channel),
        "tcp" => Ok(GuestNodeTransport::Tcp),
        _ => Err(format!(
            "must be channel (over the guest's vm-connectd channel, no network needed) or tcp \
             (to the guest's own address), got {text:?}"
        )),
    }
}

/// `vm_guest_node_port_base`: a TCP port, 1024..=65535 (a privileged port would need root
/// for whoever listens on it).
fn guest_node_port(text: &str) -> Checked<u16> {
    match text.parse::<u16>() {
        Ok(p) if p >= 1024 => Ok(p),
        _ => Err(format!(
            "must be a TCP port from 1024 to 65535 (the first host-local port for guest nodes' \
             connections), got {text:?}"
        )),
    }
}

/// `vm_guest_node_connect_timeout`: a non-zero Pacemaker duration.
fn connect_timeout(text: &str) -> Checked<String> {
    match duration_number(text) {
        Some(n) if n > 0 => Ok(text.to_owned()),
        _ => Err(format!(
            "must be a non-zero Pacemaker duration (a number with an optional unit ms, msec, s, \
             sec, m, min, h or hr), e.g. 60s, got {text:?}"
        )),
    }
}

fn agent(text: &str) -> Checked<Agent> {
    let expected = "must be class:provider:type for an ocf agent (e.g. \
                    ocf:heartbeat:VirtualDomain) or class:type for another class, each part \
                    made of letters, digits, `_`, `.` and `-`";
    let parts: Vec<&str> = text.split(':').collect();
    let well_formed = parts.iter().all(|part| {
        !part.is_empty()
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
    });
    if !well_formed {
        return Err(format!("{expected}, got {text:?}"));
    }
    match parts.as_slice() {
        ["ocf", provider, kind] => Ok(Agent {
            class: "ocf".to_owned(),
            provider: Some((*provider).to_owned()),
            kind: (*kind).to_owned(),
        }),
        ["ocf", _] => Err(format!(
            "must name the provider of an ocf agent, ocf:PROVIDER:TYPE (e.g. \
             ocf:heartbeat:VirtualDomain), got {text:?}"
        )),
        [_, _, _] => Err(format!(
            "must be class:type: only the ocf class takes a provider, got {text:?}"
        )),
        [class, kind] => Ok(Agent {
            class: (*class).to_owned(),
            provider: None,
            kind: (*kind).to_owned(),
        }),
        _ => Err(format!("{expected}, got {text:?}")),
    }
}

fn milliseconds(text: &str) -> Checked<u64> {
    let expected = "must be a positive number of milliseconds, e.g. 10000";
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{expected}, got {text:?}"));
    }
    match text.parse::<u64>() {
        Ok(0) => Err(format!("{expected}, got 0")),
        Ok(ms) => Ok(ms),
        Err(_) => Err(format!("{expected}, got {text:?}, which is too large")),
    }
}

/// A non-empty value without whitespace (URI, transport name).
fn single_word(text: &str, example: &str) -> Checked<String> {
    if text.is_empty() || text.chars().any(char::is_whitespace) {
        return Err(format!(
            "must be a non-empty value without whitespace, e.g. {example}, got {text:?}"
        ));
    }
    Ok(text.to_owned())
}

/// The number of a Pacemaker duration (`90s` -> 90), or `None` when `text` is not one.
fn duration_number(text: &str) -> Option<u64> {
    let unit_start = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(unit_start);
    if number.is_empty() || !DURATION_UNITS.contains(&unit) {
        return None;
    }
    // An all-digit number too large for u64 is still a non-zero duration.
    Some(number.parse().unwrap_or(u64::MAX))
}

fn op(value: &Value, kind: OpKind) -> Checked<OpSpec> {
    let shape = match kind {
        OpKind::WithOnFail | OpKind::Recurring => "(interval timeout on-fail)",
        OpKind::OnFailFromStonith => "(interval timeout; on-fail comes from vm_stonith)",
    };
    let n = if kind == OpKind::OnFailFromStonith {
        2
    } else {
        3
    };
    let words = array(value, n, n, shape)?;
    for (name, word) in [("interval", &words[0]), ("timeout", &words[1])] {
        if duration_number(word).is_none() {
            return Err(format!(
                "{name} must be a Pacemaker duration (a number with an optional unit ms, msec, \
                 s, sec, m, min, h or hr, e.g. 90s), got {word:?}: {}",
                render(value)
            ));
        }
    }
    if kind == OpKind::Recurring && duration_number(&words[0]) == Some(0) {
        return Err(format!(
            "interval must not be 0: the monitor recurs at that interval, e.g. 10s, got {}",
            render(value)
        ));
    }
    let on_fail = match words.get(2) {
        None => None,
        Some(on_fail) if ON_FAIL.contains(&on_fail.as_str()) => Some(on_fail.clone()),
        Some(on_fail) => {
            return Err(format!(
                "on-fail must be one of {}, got {on_fail:?}: {}",
                ON_FAIL.join(" "),
                render(value)
            ));
        }
    };
    Ok(OpSpec {
        interval: words[0].clone(),
        timeout: words[1].clone(),
        on_fail,
    })
}

/// Longest `vm_liveness_timeout`: a day.
const MAX_LIVENESS_TIMEOUT_SECS: u64 = 86_400;

/// `vm_liveness_timeout`: a Pacemaker duration, in whole seconds (rounded up); 0 is `None`.
fn liveness_timeout(text: &str) -> Checked<Option<u64>> {
    let bad = || {
        format!(
            "must be a Pacemaker duration of at most a day (a number with an optional unit ms, \
             msec, s, sec, m, min, h or hr; 0 turns the liveness monitor off), e.g. 120s, got \
             {text:?}"
        )
    };
    let number = duration_number(text).ok_or_else(bad)?;
    let unit = text.trim_start_matches(|c: char| c.is_ascii_digit());
    let secs = match unit {
        "ms" | "msec" => number.div_ceil(1000),
        "" | "s" | "sec" => number,
        "m" | "min" => number.saturating_mul(60),
        _ => number.saturating_mul(3600),
    };
    if secs > MAX_LIVENESS_TIMEOUT_SECS {
        return Err(bad());
    }
    Ok((secs > 0).then_some(secs))
}

/// `vm_migration_threshold`: a positive integer or INFINITY.
fn migration_threshold(text: &str) -> Checked<Score> {
    match Score::parse(text) {
        Some(s) if s == Score::infinity() || s.as_str().parse::<i64>().is_ok_and(|n| n > 0) => {
            Ok(s)
        }
        _ => Err(format!(
            "must be a positive integer or INFINITY (failures on a node before the guest moves), \
             e.g. 3, got {text:?}"
        )),
    }
}

/// `vm_failure_timeout`: a Pacemaker duration.
fn failure_timeout(text: &str) -> Checked<String> {
    match duration_number(text) {
        Some(_) => Ok(text.to_owned()),
        None => Err(format!(
            "must be a Pacemaker duration (a number with an optional unit ms, msec, s, sec, m, \
             min, h or hr), e.g. 10min, got {text:?}"
        )),
    }
}

fn score(text: &str) -> Checked<Score> {
    Score::parse(text)
        .ok_or_else(|| format!("must be a score: an integer, INFINITY or -INFINITY, got {text:?}"))
}

/// A clone resource id or node attribute name.
fn is_id(text: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.:-".contains(c))
}

fn check_id(what: &str, word: &str, value: &Value) -> Checked<String> {
    if is_id(word) {
        return Ok(word.to_owned());
    }
    Err(format!(
        "{what} must be made of letters, digits, `_`, `.`, `:` and `-`, got {word:?}: {}",
        render(value)
    ))
}

fn clone_ref(value: &Value) -> Checked<CloneRef> {
    let words = array(value, 1, 2, "(CLONE_RSC_ID [NODE_ATTRIBUTE])")?;
    Ok(CloneRef {
        rsc: check_id("clone resource id", &words[0], value)?,
        attr: match words.get(1) {
            Some(attr) => Some(check_id("node attribute", attr, value)?),
            None => None,
        },
    })
}

fn stonithd_ref(value: &Value) -> Checked<String> {
    let words = array(value, 1, 1, "(CLONE_RSC_ID)")?;
    check_id("clone resource id", &words[0], value)
}

fn rule(value: &Value) -> Checked<RuleSpec> {
    let words = array(value, 2, 2, "(operation value)")?;
    let (op, rule_value) = (&words[0], &words[1]);
    if !RULE_OPS.contains(&op.as_str()) {
        return Err(format!(
            "operation must be one of {}, got {op:?}: {}",
            RULE_OPS.join(" "),
            render(value)
        ));
    }
    if rule_value.is_empty() {
        return Err(format!("value must not be empty: {}", render(value)));
    }
    Ok(RuleSpec {
        op: op.clone(),
        value: rule_value.clone(),
    })
}

fn order(value: &Value) -> Checked<OrderSpec> {
    let words = array(value, 2, 2, "(score symmetrical)")?;
    let score = Score::parse(&words[0]).ok_or_else(|| {
        format!(
            "score must be an integer, INFINITY or -INFINITY, got {:?}: {}",
            words[0],
            render(value)
        )
    })?;
    let symmetrical = match words[1].as_str() {
        "true" => true,
        "false" => false,
        other => {
            return Err(format!(
                "symmetrical must be true or false, got {other:?}: {}",
                render(value)
            ));
        }
    };
    Ok(OrderSpec { score, symmetrical })
}

// ---------------------------------------------------------------------------------------------
// Syntax: one line to one assignment.
// ---------------------------------------------------------------------------------------------

/// The end of the messages rejecting a shell feature.
const PARSED_NOT_EXECUTED: &str = "vm-ctl.conf is parsed, never executed";

/// A position in one line.
#[derive(Debug)]
struct Cursor {
    chars: Vec<char>,
    pos: usize,
}

impl Cursor {
    fn new(line: &str) -> Cursor {
        Cursor {
            chars: line.chars().collect(),
            pos: 0,
        }
    }

    fn peek(&self) -> Option<char> {
        self.peek_at(0)
    }

    fn peek_at(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.pos + ahead).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    fn skip_blanks(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t')) {
            self.pos += 1;
        }
    }

    fn at_end_or_comment(&self) -> bool {
        matches!(self.peek(), None | Some('#'))
    }

    fn rest(&self) -> &[char] {
        self.chars.get(self.pos..).unwrap_or_default()
    }

    fn rest_string(&self) -> String {
        self.rest().iter().collect()
    }

    fn take_while(&mut self, accept: impl Fn(char) -> bool) -> String {
        let mut taken = String::new();
        while let Some(c) = self.peek().filter(|&c| accept(c)) {
            taken.push(c);
            self.pos += 1;
        }
        taken
    }

    /// Consumes `word` when it comes next, followed by a blank.
    fn eat_word(&mut self, word: &str) -> bool {
        let len = word.chars().count();
        let matches = self.rest().iter().take(len).copied().eq(word.chars())
            && matches!(self.peek_at(len), Some(' ' | '\t'));
        if matches {
            self.pos += len;
        }
        matches
    }
}

/// Parses one line: `Ok(None)` for a blank or comment line, the key and value of an
/// assignment, or a message saying what is wrong.
fn lex_line(line: &str) -> Result<Option<(String, Value)>, String> {
    if let Some(c) = line.chars().find(|&c| c.is_control() && c != '\t') {
        return Err(if c == '\r' {
            "carriage return in the line: the file has DOS line endings; convert it to Unix \
             line endings (dos2unix)"
                .to_owned()
        } else {
            format!("control character {c:?} in the line: write plain text")
        });
    }
    let mut cur = Cursor::new(line);
    cur.skip_blanks();
    if cur.at_end_or_comment() {
        return Ok(None);
    }
    if cur.eat_word("export") {
        cur.skip_blanks();
    }
    let key = cur.take_while(|c| c.is_ascii_alphanumeric() || c == '_');
    if !key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        return Err(not_an_assignment(line));
    }
    match cur.peek() {
        Some('=') => {
            cur.bump();
        }
        Some('+') if cur.peek_at(1) == Some('=') => {
            return Err(format!(
                "{key}+= (appending) is not supported: {PARSED_NOT_EXECUTED}; write \
                 {key}=value"
            ));
        }
        Some('[') => {
            return Err(format!(
                "{key}[...]= (setting one element) is not supported: {PARSED_NOT_EXECUTED}; \
                 write the whole array, {key}=(word ...)"
            ));
        }
        Some(' ' | '\t') => {
            cur.skip_blanks();
            if cur.peek() == Some('=') {
                return Err(format!(
                    "no blanks are allowed before `=`: write {key}=value"
                ));
            }
            return Err(not_an_assignment(line));
        }
        _ => return Err(not_an_assignment(line)),
    }
    let (value, what) = if cur.peek() == Some('(') {
        cur.bump();
        (Value::Array(array_words(&mut cur, &key)?), "array")
    } else {
        (Value::Scalar(word(&mut cur, &key, false)?), "value")
    };
    cur.skip_blanks();
    if !cur.at_end_or_comment() {
        return Err(format!(
            "unexpected {:?} after the {what} of {key}: a line holds one assignment, and a \
             value containing blanks must be quoted, e.g. {key}=\"a b\"",
            cur.rest_string()
        ));
    }
    Ok(Some((key, value)))
}

fn not_an_assignment(line: &str) -> String {
    format!(
        "not an assignment: {:?}; {PARSED_NOT_EXECUTED}, and may hold only key=value lines \
         and comments",
        line.trim()
    )
}

/// The words of an array, after its `(`, up to and including the `)`.
fn array_words(cur: &mut Cursor, key: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    loop {
        cur.skip_blanks();
        match cur.peek() {
            None => {
                return Err(format!(
                    "the array {key}=( is not closed on its line: {PARSED_NOT_EXECUTED}, and an \
                     array must open and close on one line, e.g. {key}=(word word)"
                ));
            }
            Some('#') => {
                return Err(format!(
                    "the array {key}=( is not closed before the comment: an array must open \
                     and close on one line, e.g. {key}=(word word)"
                ));
            }
            Some(')') => {
                cur.bump();
                return Ok(words);
            }
            Some(_) => words.push(word(cur, key, true)?),
        }
    }
}

/// One word, with quote removal: up to an unquoted blank, the end of the line, or in an array
/// an unquoted `)`.
fn word(cur: &mut Cursor, key: &str, in_array: bool) -> Result<String, String> {
    let mut out = String::new();
    while let Some(c) = cur.peek() {
        match c {
            ' ' | '\t' => break,
            ')' if in_array => break,
            '\'' => {
                cur.bump();
                loop {
                    match cur.bump() {
                        Some('\'') => break,
                        Some(quoted) => out.push(quoted),
                        None => return Err(unterminated(key, "'...'")),
                    }
                }
            }
            '"' => {
                cur.bump();
                double_quoted(cur, key, &mut out)?;
            }
            '\\' => {
                cur.bump();
                match cur.bump() {
                    Some(escaped) => out.push(escaped),
                    None => {
                        return Err(format!(
                            "a backslash at the end of the line (line continuation) is not \
                             supported: write the value of {key} on one line"
                        ));
                    }
                }
            }
            '$' | '`' => return Err(expansion(cur.rest(), key)),
            ';' | '&' | '|' | '<' | '>' | '(' | ')' => {
                return Err(format!(
                    "the value of {key} contains an unquoted `{c}`, a shell operator; \
                     {PARSED_NOT_EXECUTED}: a line holds one assignment, and a value containing \
                     `{c}` must be quoted, e.g. {key}='a{c}b'"
                ));
            }
            '~' => {
                return Err(format!(
                    "the value of {key} contains an unquoted `~`, which the shell would expand \
                     to a home directory; {PARSED_NOT_EXECUTED}: write the path in full, or \
                     quote the `~`"
                ));
            }
            '*' | '?' | '[' | '{' if in_array => {
                return Err(format!(
                    "the array {key} contains an unquoted `{c}`, which the shell would expand; \
                     {PARSED_NOT_EXECUTED}: quote the word, e.g. '{c}'"
                ));
            }
            _ => {
                out.push(c);
                cur.bump();
            }
        }
    }
    Ok(out)
}

/// The rest of a double-quoted string, after its opening `"`, up to and including the closing
/// one.
fn double_quoted(cur: &mut Cursor, key: &str, out: &mut String) -> Result<(), String> {
    loop {
        match cur.peek() {
            None => return Err(unterminated(key, "\"...\"")),
            Some('"') => {
                cur.bump();
                return Ok(());
            }
            Some('$' | '`') => return Err(expansion(cur.rest(), key)),
            Some('\\') => {
                cur.bump();
                match cur.peek() {
                    Some(escaped @ ('"' | '\\' | '$' | '`')) => {
                        out.push(escaped);
                        cur.bump();
                    }
                    // Before any other character, bash keeps the backslash.
                    _ => out.push('\\'),
                }
            }
            Some(c) => {
                out.push(c);
                cur.bump();
            }
        }
    }
}

fn unterminated(key: &str, quotes: &str) -> String {
    format!(
        "unterminated {quotes} in the value of {key}: a quoted value must open and close on one \
         line"
    )
}

/// The message rejecting the expansion starting at `at` (a `$` or a backtick).
fn expansion(at: &[char], key: &str) -> String {
    let what = match at {
        ['`', ..] => "a command substitution in backticks".to_owned(),
        ['$', '(', '(', ..] => "an arithmetic expansion $((...))".to_owned(),
        ['$', '(', ..] => "a command substitution $(...)".to_owned(),
        ['$', '{', ..] => "a parameter expansion ${...}".to_owned(),
        ['$', '\'' | '"', ..] => "a $'...' or $\"...\" string".to_owned(),
        ['$', first, ..] if first.is_ascii_alphabetic() || *first == '_' => {
            let name: String = at[1..]
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
                .collect();
            format!("a variable expansion ${name}")
        }
        ['$', special, ..] if special.is_ascii_digit() || "@*#?$!-".contains(*special) => {
            format!("the special parameter ${special}")
        }
        _ => "an unescaped $".to_owned(),
    };
    format!(
        "the value of {key} contains {what}; {PARSED_NOT_EXECUTED}, so the value must be written \
         literally (a literal $ or ` goes inside '...')"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../vm-ctl.conf");

    fn path() -> &'static Path {
        Path::new(DEFAULT_PATH)
    }

    fn parse(text: &str) -> Result<(Config, Vec<Warning>), ConfigError> {
        Config::parse(text, path())
    }

    /// Parses `text`, which must give no warnings.
    fn parse_clean(text: &str) -> Config {
        let (config, warnings) = parse(text).unwrap();
        assert!(warnings.is_empty(), "unexpected warnings: {warnings:?}");
        config
    }

    /// The (line, message) of a syntax error.
    fn syntax_error(text: &str) -> (usize, String) {
        match parse(text) {
            Err(ConfigError::Syntax {
                file,
                line,
                message,
            }) => {
                assert_eq!(file, path());
                (line, message)
            }
            other => panic!("expected a syntax error for {text:?}, got {other:?}"),
        }
    }

    /// The (line, key, message) of an invalid-value error.
    fn invalid(text: &str) -> (usize, String, String) {
        match parse(text) {
            Err(ConfigError::Invalid {
                file,
                line,
                key,
                message,
            }) => {
                assert_eq!(file, path());
                (line, key, message)
            }
            other => panic!("expected an invalid-value error for {text:?}, got {other:?}"),
        }
    }

    fn words(words: &[&str]) -> Value {
        Value::Array(words.iter().map(|w| (*w).to_owned()).collect())
    }

    #[test]
    fn shipped_example_parses_cleanly_with_the_shipped_values() {
        let config = parse_clean(EXAMPLE);
        assert_eq!(
            config.cfg_dir.as_deref(),
            Some(Path::new("/etc/libvirt/qemu"))
        );
        assert_eq!(config.cfg_ext, ".xml");
        assert_eq!(config.allow_migrate, Some(false));
        assert_eq!(config.stonith, Some(true));
        assert_eq!(
            config.ocf_agent().unwrap().to_string(),
            "ocf:pm-kvm-tools:VirtualDomain"
        );
        assert_eq!(config.crmadmin_timeout, Some(10000));
        assert_eq!(config.hypervisor, "qemu:///system");
        assert_eq!(config.migration_transport, "ssh");
        assert_eq!(config.start_op, OpSpec::new("0", "90s", Some("restart")));
        assert_eq!(config.stop_op, OpSpec::new("0", "90s", None));
        assert_eq!(
            config.monitor_op,
            OpSpec::new("10s", "30s", Some("restart"))
        );
        assert_eq!(config.migrate_to_op, OpSpec::new("0", "300s", None));
        assert_eq!(
            config.migrate_from_op,
            OpSpec::new("0", "240s", Some("restart"))
        );
        assert_eq!(config.node_loc_act.as_str(), "200");
        assert!(config.pingd.is_empty());
        assert!(config.diskd.is_empty());
        assert!(config.managerd.is_empty());
        assert!(config.stonithd.is_empty());
        assert_eq!(config.guest_node, GuestNodeDefaults::default());
        assert_eq!(
            config.pingd_rules.loc,
            RuleSpec {
                op: "lt".into(),
                value: "100".into()
            }
        );
        assert_eq!(
            config.diskd_rules.loc,
            RuleSpec {
                op: "eq".into(),
                value: "ERROR".into()
            }
        );
        assert_eq!(config.managerd_rules.loc, config.diskd_rules.loc);
        for rules in [
            &config.pingd_rules,
            &config.diskd_rules,
            &config.managerd_rules,
        ] {
            assert_eq!(rules.col, Score::infinity());
            assert_eq!(
                rules.odr,
                OrderSpec {
                    score: Score::from(0),
                    symmetrical: false
                }
            );
        }
        assert_eq!(config.stonithd_col, Score::infinity());
        assert_eq!(config.stonithd_odr.score.as_str(), "0");
        assert_eq!(config.connectd_sock_dir, Path::new("/var/lib/libvirt/qemu"));
        assert_eq!(config.liveness_timeout, Some(120));
        assert_eq!(config.migration_threshold, Some(Score::from(3)));
        assert_eq!(config.failure_timeout.as_deref(), Some("10min"));
        assert_eq!(config.source, path());
        assert_eq!(config.stop_on_fail().unwrap(), "fence");
    }

    #[test]
    fn health_and_recovery_keys() {
        let c = parse_clean("");
        assert_eq!(
            (c.liveness_timeout, c.migration_threshold, c.failure_timeout),
            (None, None, None),
            "not set: nothing generated"
        );
        for (text, secs) in [
            ("0", None),
            ("0s", None),
            ("90", Some(90)),
            ("2min", Some(120)),
            ("1500ms", Some(2)),
            ("1h", Some(3600)),
        ] {
            let c = parse_clean(&format!("vm_liveness_timeout={text}\n"));
            assert_eq!(c.liveness_timeout, secs, "{text}");
        }
        for bad in ["-1", "10x", "", "2d", "25h", "99999999999999999999999h"] {
            let (line, key, msg) = invalid(&format!("vm_liveness_timeout={bad}\n"));
            assert_eq!((line, key.as_str()), (1, "vm_liveness_timeout"), "{bad}");
            assert!(msg.contains("duration"), "{msg}");
        }
        let c = parse_clean("vm_migration_threshold=inf\nvm_failure_timeout=0\n");
        assert_eq!(c.migration_threshold, Some(Score::infinity()));
        assert_eq!(c.failure_timeout.as_deref(), Some("0"));
        for bad in ["0", "-2", "-INFINITY", "three", ""] {
            let (_, key, msg) = invalid(&format!("vm_migration_threshold={bad}\n"));
            assert_eq!(key, "vm_migration_threshold");
            assert!(msg.contains("positive integer"), "{msg}");
        }
        for bad in ["soon", "10 min", "-1s"] {
            let (_, key, _) = invalid(&format!("vm_failure_timeout=\"{bad}\"\n"));
            assert_eq!(key, "vm_failure_timeout");
        }
    }

    #[test]
    fn shipped_example_sets_every_key() {
        for key in [
            "vm_cfg_dir",
            "vm_cfg_ext",
            "vm_allow_migrate",
            "vm_stonith",
            "vm_ocf",
            "crmadmin_timeout",
            "vm_hypervisor",
            "vm_migration_transport",
            "vm_start_op",
            "vm_stop_op",
            "vm_monitor_op",
            "vm_migrate_to_op",
            "vm_migrate_from_op",
            "vm_node_loc_act",
            "vm_pingd_loc",
            "vm_pingd_col",
            "vm_pingd_odr",
            "vm_diskd_loc",
            "vm_diskd_col",
            "vm_diskd_odr",
            "vm_managerd_loc",
            "vm_managerd_col",
            "vm_managerd_odr",
            "vm_stonithd_col",
            "vm_stonithd_odr",
            "vm_connectd_sock_dir",
            "vm_liveness_timeout",
            "vm_migration_threshold",
            "vm_failure_timeout",
            "vm_guest_node",
            "vm_guest_node_transport",
            "vm_guest_node_port_base",
            "vm_guest_node_connect_timeout",
        ] {
            assert!(
                EXAMPLE.lines().any(|l| l.starts_with(&format!("{key}="))),
                "the example does not set {key}"
            );
        }
    }

    #[test]
    fn shipped_example_commented_out_entries_are_valid() {
        // Uncomment the numbered examples: they must parse as documented.
        let uncommented: String = EXAMPLE
            .lines()
            .map(|line| {
                let bare = line.trim_start_matches(['#', ' ']);
                let numbered = NUMBERED_PREFIXES.iter().any(|prefix| {
                    bare.strip_prefix(prefix)
                        .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
                });
                if line.starts_with('#') && numbered {
                    bare
                } else {
                    line
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let config = parse_clean(&uncommented);
        let clone = |rsc: &str, attr: &str| CloneRef {
            rsc: rsc.into(),
            attr: Some(attr.into()),
        };
        assert_eq!(config.pingd, [clone("clnPingd", "default_ping_set")]);
        assert_eq!(
            config.diskd,
            [
                clone("clnDiskd1", "diskcheck_status"),
                clone("clnDiskd2", "diskcheck_status_internal")
            ]
        );
        assert_eq!(
            config.managerd,
            [clone("clnVmManagerd", "operator_check_status")]
        );
        assert_eq!(config.stonithd, ["clnVmStonithd"]);
    }

    #[test]
    fn missing_keys_take_the_built_in_defaults() {
        let (config, warnings) = parse("").unwrap();
        assert!(warnings.is_empty());
        assert_eq!(config, Config::defaults(path()));
        assert_eq!(config.cfg_dir, None);
        assert_eq!(config.cfg_ext, "");
        assert_eq!(config.allow_migrate, None);
        assert_eq!(config.stonith, None);
        assert_eq!(config.ocf, None);
        assert_eq!(config.crmadmin_timeout, None);
        assert_eq!(config.hypervisor, "qemu:///system");
        assert_eq!(config.migration_transport, "ssh");
        assert_eq!(config.start_op, OpSpec::new("0", "90s", Some("restart")));
        assert_eq!(config.stop_op, OpSpec::new("0", "90s", None));
        assert_eq!(
            config.monitor_op,
            OpSpec::new("10s", "30s", Some("restart"))
        );
        assert_eq!(config.migrate_to_op, OpSpec::new("0", "300s", None));
        assert_eq!(
            config.migrate_from_op,
            OpSpec::new("0", "240s", Some("restart"))
        );
        assert_eq!(config.node_loc_act.as_str(), "200");
        assert_eq!(config.pingd_rules.loc.op, "lt");
        assert_eq!(config.pingd_rules.loc.value, "100");
        assert_eq!(config.diskd_rules.loc.op, "eq");
        assert_eq!(config.managerd_rules.loc.value, "ERROR");
        assert_eq!(config.stonithd_col.as_str(), "INFINITY");
        assert!(!config.stonithd_odr.symmetrical);
        assert_eq!(config.connectd_sock_dir, Path::new("/var/lib/libvirt/qemu"));

        // Setting some keys leaves the others at their defaults.
        let config = parse_clean("vm_cfg_ext=.cfg\nvm_stop_op=(0 120s)\n");
        assert_eq!(config.cfg_ext, ".cfg");
        assert_eq!(config.stop_op, OpSpec::new("0", "120s", None));
        assert_eq!(config.start_op, Config::defaults(path()).start_op);
    }

    #[test]
    fn accessors_report_missing_keys() {
        let config = Config::defaults(path());
        let missing = |error: ConfigError| match error {
            ConfigError::Missing { key, file } => {
                assert_eq!(file, path());
                key
            }
            other => panic!("expected Missing, got {other:?}"),
        };
        assert_eq!(missing(config.cfg_dir().unwrap_err()), "vm_cfg_dir");
        assert_eq!(
            missing(config.allow_migrate().unwrap_err()),
            "vm_allow_migrate"
        );
        assert_eq!(missing(config.stonith().unwrap_err()), "vm_stonith");
        assert_eq!(missing(config.stop_on_fail().unwrap_err()), "vm_stonith");
        assert_eq!(missing(config.ocf_agent().unwrap_err()), "vm_ocf");
        assert_eq!(
            missing(config.crmadmin_timeout().unwrap_err()),
            "crmadmin_timeout"
        );
        assert_eq!(
            missing(config.domain_xml_path("web1").unwrap_err()),
            "vm_cfg_dir"
        );
        let message = config.cfg_dir().unwrap_err().to_string();
        assert!(
            message.starts_with(
                "vm_cfg_dir is not set in /etc/vm-ctl.conf: set it to the directory holding the \
                 domain XML files"
            ),
            "{message}"
        );
    }

    #[test]
    fn accessors_return_set_values() {
        let config = parse_clean(
            "vm_cfg_dir=/etc/libvirt/qemu\nvm_cfg_ext=.xml\nvm_allow_migrate=on\n\
             vm_stonith=off\nvm_ocf=ocf:heartbeat:VirtualDomain\ncrmadmin_timeout=2500\n",
        );
        assert_eq!(config.cfg_dir().unwrap(), Path::new("/etc/libvirt/qemu"));
        assert!(config.allow_migrate().unwrap());
        assert!(!config.stonith().unwrap());
        assert_eq!(config.stop_on_fail().unwrap(), "block");
        assert_eq!(
            config.ocf_agent().unwrap(),
            &Agent {
                class: "ocf".into(),
                provider: Some("heartbeat".into()),
                kind: "VirtualDomain".into()
            }
        );
        assert_eq!(
            config.crmadmin_timeout().unwrap(),
            Duration::from_millis(2500)
        );
        assert_eq!(
            config.domain_xml_path("web1").unwrap(),
            Path::new("/etc/libvirt/qemu/web1.xml")
        );
        for bad in ["", ".", "..", "a/b", "../web1", "a\0b"] {
            assert!(
                matches!(
                    config.domain_xml_path(bad),
                    Err(ConfigError::DomainName { .. })
                ),
                "{bad:?} accepted"
            );
        }
        let mut no_ext = config.clone();
        no_ext.cfg_ext.clear();
        assert_eq!(
            no_ext.domain_xml_path("web1").unwrap(),
            Path::new("/etc/libvirt/qemu/web1")
        );
    }

    #[test]
    fn every_syntax_form() {
        let text = r#"
# a comment line
   # an indented comment
vm_cfg_dir=/srv/vm   # a comment after a value
  export vm_cfg_ext=".x\"m\\l\$\`"
vm_hypervisor='qemu+ssh://h/system#$HOME'
	vm_migration_transport=tcp#not-a-comment
vm_start_op=( 0  "120s" 'stop' )  # words with quotes
vm_stop_op=(0 6"0"s)# comment right after the array
vm_pingd_loc=(lt "1 0")
vm_stonithd1=(clnVmStonithd)
unknown_empty=
unknown_empty_array=()
unknown_quoted_empty=""
unknown_concat=a"b c"'d e'\ f
unknown_backslash="a\nb"
"#;
        let (config, warnings) = parse(text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.cfg_dir.as_deref(), Some(Path::new("/srv/vm")));
        assert_eq!(config.cfg_ext, ".x\"m\\l$`");
        assert_eq!(config.hypervisor, "qemu+ssh://h/system#$HOME");
        assert_eq!(config.migration_transport, "tcp#not-a-comment");
        assert_eq!(config.start_op, OpSpec::new("0", "120s", Some("stop")));
        assert_eq!(config.stop_op, OpSpec::new("0", "60s", None));
        assert_eq!(config.pingd_rules.loc.value, "1 0");
        assert_eq!(config.stonithd, ["clnVmStonithd"]);

        // Check the lexer directly for what validation would reject.
        let lexed = |line: &str| lex_line(line).unwrap().unwrap().1;
        assert_eq!(
            lexed(r#"k=( 0  "90 s"x 'a b' )"#),
            words(&["0", "90 sx", "a b"])
        );
        assert_eq!(lexed("k=(0 90s)# c"), words(&["0", "90s"]));
        assert_eq!(lexed(r#"k=(lt "")"#), words(&["lt", ""]));
        assert_eq!(lexed("k=()"), words(&[]));
        assert_eq!(lexed("k=(  )  # empty"), words(&[]));
        assert_eq!(lexed(r#"k=("a)" 'b)')"#), words(&["a)", "b)"]));
        assert_eq!(lexed("k="), Value::Scalar(String::new()));
        assert_eq!(lexed("k=  # empty"), Value::Scalar(String::new()));
        assert_eq!(lexed(r#"k="""#), Value::Scalar(String::new()));
        assert_eq!(lexed("k=''"), Value::Scalar(String::new()));
        assert_eq!(lexed("export\tk=v"), Value::Scalar("v".into()));
        assert_eq!(
            lexed(r#"k=a"b c"'d e'\ f"#),
            Value::Scalar("ab cd e f".into())
        );
        assert_eq!(lexed(r#"k="a\nb""#), Value::Scalar("a\\nb".into()));
        assert_eq!(lexed(r#"k='a\nb'"#), Value::Scalar("a\\nb".into()));
        assert_eq!(lexed(r"k=\$HOME"), Value::Scalar("$HOME".into()));
        assert_eq!(lexed("k='$(x) `y`'"), Value::Scalar("$(x) `y`".into()));
        assert_eq!(lexed("k=a=b"), Value::Scalar("a=b".into()));
        assert_eq!(lexed("_K9=v"), Value::Scalar("v".into()));
        assert_eq!(lex_line("   ").unwrap(), None);
        assert_eq!(lex_line("#k=v").unwrap(), None);

        // The unknown keys each warn, and nothing else does.
        let lines: Vec<usize> = warnings.iter().map(|w| w.line).collect();
        assert_eq!(lines, [12, 13, 14, 15, 16], "{warnings:?}");
    }

    #[test]
    fn shell_features_are_rejected() {
        for (line, needle) in [
            (
                "vm_cfg_dir=$(cat /etc/dir)",
                "a command substitution $(...)",
            ),
            (
                "vm_cfg_dir=\"/x/$(hostname)\"",
                "a command substitution $(...)",
            ),
            ("vm_cfg_dir=`hostname`", "backticks"),
            ("vm_cfg_dir=\"`hostname`\"", "backticks"),
            ("vm_cfg_dir=$HOME/vms", "a variable expansion $HOME"),
            ("vm_cfg_dir=\"$HOME\"", "a variable expansion $HOME"),
            ("vm_cfg_dir=${HOME}", "a parameter expansion ${...}"),
            ("vm_cfg_dir=$((1+1))", "an arithmetic expansion"),
            ("vm_cfg_dir=$1", "the special parameter $1"),
            ("vm_cfg_dir=$'x'", "$'...'"),
            ("vm_cfg_dir=a$", "an unescaped $"),
            ("vm_start_op=(0 $T restart)", "a variable expansion $T"),
            ("vm_start_op=(0 \"`t`\" restart)", "backticks"),
        ] {
            let (number, message) = syntax_error(&format!("# c\n{line}\n"));
            assert_eq!(number, 2, "{line}");
            assert!(message.contains(needle), "{line}: {message}");
            assert!(
                message.contains("parsed, never executed") && message.contains("literally"),
                "{line}: {message}"
            );
        }
    }

    #[test]
    fn non_assignments_are_rejected() {
        for (line, needle) in [
            ("echo hi", "not an assignment: \"echo hi\""),
            ("source /etc/other.conf", "not an assignment"),
            (". /etc/other.conf", "not an assignment"),
            ("if [ -x /bin/true ]; then", "not an assignment"),
            ("fi", "not an assignment"),
            ("export", "not an assignment"),
            ("export vm_cfg_dir", "not an assignment"),
            ("9key=v", "not an assignment"),
            ("vm-cfg-dir=/x", "not an assignment"),
            ("vm_cfg_dir =/x", "no blanks are allowed before `=`"),
            ("vm_cfg_dir+=/x", "(appending) is not supported"),
            ("vm_start_op[0]=1", "setting one element"),
            ("vm_cfg_dir=/x; rm -rf /", "shell operator"),
            ("vm_cfg_dir=/x && reboot", "unexpected \"&& reboot\""),
            ("vm_cfg_dir=/x|cat", "shell operator"),
            ("vm_cfg_dir=/x>/y", "shell operator"),
            ("vm_cfg_dir=/x)", "shell operator"),
            ("vm_cfg_dir=/x /y", "unexpected \"/y\" after the value"),
            ("vm_cfg_dir= /x", "unexpected \"/x\" after the value"),
            ("a=1 b=2", "one assignment"),
            ("vm_stop_op=(0 90s)x", "after the array"),
            ("vm_stop_op=(0 (90s))", "shell operator"),
            ("vm_stop_op=(0 *)", "unquoted `*`"),
            ("vm_stop_op=(0 {1,2}s)", "unquoted `{`"),
            ("vm_cfg_dir=~/vms", "unquoted `~`"),
            ("vm_cfg_dir=\"/x", "unterminated \"...\""),
            ("vm_cfg_dir='/x", "unterminated '...'"),
            ("vm_cfg_dir=\"/x\\\"", "unterminated \"...\""),
            ("vm_cfg_dir=/x\\", "line continuation"),
            ("vm_cfg_dir=/x\r", "DOS line endings"),
        ] {
            let (number, message) = syntax_error(&format!("\n\n{line}\n"));
            assert_eq!(number, 3, "{line}");
            assert!(message.contains(needle), "{line:?}: {message}");
        }
    }

    #[test]
    fn unterminated_arrays_are_rejected() {
        for line in [
            "vm_start_op=(0 90s restart",
            "vm_start_op=(0 90s restart # )",
            "vm_start_op=(",
        ] {
            let (number, message) = syntax_error(&format!("vm_cfg_ext=.xml\n{line}\n)\n"));
            assert_eq!(number, 2, "{line}");
            assert!(message.contains("vm_start_op=( is not closed"), "{message}");
            assert!(message.contains("open and close on one line"), "{message}");
        }
    }

    #[test]
    fn syntax_error_display_names_file_and_line() {
        let error = parse("vm_cfg_ext=.xml\necho hi\n").unwrap_err();
        let text = error.to_string();
        assert!(
            text.starts_with("/etc/vm-ctl.conf:2: not an assignment: \"echo hi\""),
            "{text}"
        );
    }

    #[test]
    fn guest_node_keys() {
        let c = parse_clean(
            "vm_guest_node=yes\nvm_guest_node_transport=tcp\nvm_guest_node_port_base=4000\n\
             vm_guest_node_connect_timeout=5min\n",
        );
        assert_eq!(
            c.guest_node,
            GuestNodeDefaults {
                enabled: true,
                transport: GuestNodeTransport::Tcp,
                port_base: 4000,
                connect_timeout: "5min".into(),
            }
        );
        assert!(!parse_clean("vm_guest_node=off\n").guest_node.enabled);
        for (line, key, needle) in [
            ("vm_guest_node=maybe", "vm_guest_node", "yes or no"),
            (
                "vm_guest_node_transport=udp",
                "vm_guest_node_transport",
                "channel",
            ),
            (
                "vm_guest_node_port_base=80",
                "vm_guest_node_port_base",
                "1024 to 65535",
            ),
            (
                "vm_guest_node_port_base=70000",
                "vm_guest_node_port_base",
                "1024",
            ),
            (
                "vm_guest_node_connect_timeout=0",
                "vm_guest_node_connect_timeout",
                "non-zero",
            ),
        ] {
            let (n, k, msg) = invalid(&format!("{line}\n"));
            assert_eq!((n, k.as_str()), (1, key), "{line}");
            assert!(msg.contains(needle), "{line}: {msg}");
        }
    }

    #[test]
    fn invalid_values_name_key_and_line() {
        for (line, key, needle) in [
            (
                "vm_cfg_dir=",
                "vm_cfg_dir",
                "must be an absolute path, got an empty value",
            ),
            (
                "vm_cfg_dir=etc/libvirt",
                "vm_cfg_dir",
                "must be an absolute path",
            ),
            ("vm_cfg_dir=/etc/../root", "vm_cfg_dir", "without `..`"),
            ("vm_cfg_dir=(/a /b)", "vm_cfg_dir", "not an array"),
            ("vm_cfg_ext=x/.xml", "vm_cfg_ext", "without `/`"),
            (
                "vm_allow_migrate=yes",
                "vm_allow_migrate",
                "must be on or off, got \"yes\"",
            ),
            ("vm_stonith=ON", "vm_stonith", "must be on or off"),
            ("vm_ocf=VirtualDomain", "vm_ocf", "class:provider:type"),
            (
                "vm_ocf=ocf:VirtualDomain",
                "vm_ocf",
                "must name the provider",
            ),
            (
                "vm_ocf=lsb:x:y",
                "vm_ocf",
                "only the ocf class takes a provider",
            ),
            ("vm_ocf=ocf::VirtualDomain", "vm_ocf", "class:provider:type"),
            ("vm_ocf='ocf:heart beat:V'", "vm_ocf", "class:provider:type"),
            ("vm_ocf=a:b:c:d", "vm_ocf", "class:provider:type"),
            (
                "crmadmin_timeout=0",
                "crmadmin_timeout",
                "positive number of milliseconds",
            ),
            (
                "crmadmin_timeout=10s",
                "crmadmin_timeout",
                "positive number of milliseconds",
            ),
            (
                "crmadmin_timeout=-5",
                "crmadmin_timeout",
                "positive number of milliseconds",
            ),
            (
                "crmadmin_timeout=99999999999999999999999",
                "crmadmin_timeout",
                "too large",
            ),
            (
                "vm_hypervisor=",
                "vm_hypervisor",
                "non-empty value without whitespace",
            ),
            (
                "vm_hypervisor='qemu:///system x'",
                "vm_hypervisor",
                "without whitespace",
            ),
            (
                "vm_migration_transport=\"\"",
                "vm_migration_transport",
                "non-empty",
            ),
            ("vm_start_op=(0 90s)", "vm_start_op", "must have 3 elements"),
            (
                "vm_start_op='0 90s restart'",
                "vm_start_op",
                "must be an array",
            ),
            (
                "vm_start_op=(0 90x restart)",
                "vm_start_op",
                "timeout must be a Pacemaker duration",
            ),
            (
                "vm_start_op=(-1 90s restart)",
                "vm_start_op",
                "interval must be a Pacemaker duration",
            ),
            (
                "vm_start_op=(0 s restart)",
                "vm_start_op",
                "timeout must be a Pacemaker duration",
            ),
            (
                "vm_start_op=(0 90s reboot)",
                "vm_start_op",
                "on-fail must be one of",
            ),
            (
                "vm_stop_op=(0 90s fence)",
                "vm_stop_op",
                "on-fail comes from vm_stonith",
            ),
            ("vm_stop_op=(0)", "vm_stop_op", "must have 2 elements"),
            (
                "vm_monitor_op=(0 30s restart)",
                "vm_monitor_op",
                "interval must not be 0",
            ),
            (
                "vm_monitor_op=(0s 30s restart)",
                "vm_monitor_op",
                "interval must not be 0",
            ),
            (
                "vm_migrate_to_op=(0 300s block)",
                "vm_migrate_to_op",
                "must have 2 elements",
            ),
            (
                "vm_migrate_from_op=(0 240s)",
                "vm_migrate_from_op",
                "must have 3 elements",
            ),
            ("vm_node_loc_act=high", "vm_node_loc_act", "must be a score"),
            ("vm_node_loc_act=1.5", "vm_node_loc_act", "must be a score"),
            ("vm_node_loc_act=(200)", "vm_node_loc_act", "not an array"),
            ("vm_pingd1=()", "vm_pingd1", "must have 1 or 2 elements"),
            (
                "vm_pingd1=(a b c)",
                "vm_pingd1",
                "must have 1 or 2 elements",
            ),
            ("vm_pingd1=clnPingd", "vm_pingd1", "must be an array"),
            (
                "vm_diskd1=('cln Diskd')",
                "vm_diskd1",
                "clone resource id must be made of",
            ),
            (
                "vm_managerd1=(cln 'a/b')",
                "vm_managerd1",
                "node attribute must be made of",
            ),
            (
                "vm_stonithd1=(cln attr)",
                "vm_stonithd1",
                "must have 1 element (CLONE_RSC_ID)",
            ),
            ("vm_stonithd1=()", "vm_stonithd1", "must have 1 element"),
            (
                "vm_pingd_loc=(lt)",
                "vm_pingd_loc",
                "must have 2 elements (operation value)",
            ),
            (
                "vm_pingd_loc=(less 100)",
                "vm_pingd_loc",
                "operation must be one of",
            ),
            (
                "vm_diskd_loc=(eq '')",
                "vm_diskd_loc",
                "value must not be empty",
            ),
            ("vm_pingd_col=always", "vm_pingd_col", "must be a score"),
            ("vm_diskd_col=", "vm_diskd_col", "must be a score"),
            (
                "vm_managerd_odr=(0)",
                "vm_managerd_odr",
                "must have 2 elements",
            ),
            ("vm_pingd_odr=(x false)", "vm_pingd_odr", "score must be"),
            (
                "vm_pingd_odr=(0 no)",
                "vm_pingd_odr",
                "symmetrical must be true or false",
            ),
            (
                "vm_stonithd_col=INF1NITY",
                "vm_stonithd_col",
                "must be a score",
            ),
            (
                "vm_stonithd_odr=(0 False)",
                "vm_stonithd_odr",
                "symmetrical must be",
            ),
            (
                "vm_connectd_sock_dir=run/vm",
                "vm_connectd_sock_dir",
                "absolute path",
            ),
            (
                "vm_connectd_sock_dir=/run/../vm",
                "vm_connectd_sock_dir",
                "without `..`",
            ),
        ] {
            let (number, got_key, message) = invalid(&format!("# header\n\n{line}  # note\n"));
            assert_eq!((number, got_key.as_str()), (3, key), "{line}");
            assert!(message.contains(needle), "{line}: {message}");
        }
    }

    #[test]
    fn invalid_value_display_matches_the_documented_form() {
        let text = format!("{}vm_start_op=(0 90s)\n", "\n".repeat(11));
        let error = parse(&text).unwrap_err();
        assert_eq!(
            error.to_string(),
            "/etc/vm-ctl.conf:12: vm_start_op must have 3 elements (interval timeout on-fail), \
             got 2: (0 90s)"
        );
    }

    #[test]
    fn only_the_assignment_in_effect_is_validated() {
        // As in bash, the later value wins: an overridden invalid value is not an error...
        let (config, warnings) = parse("vm_stonith=maybe\nvm_stonith=off\n").unwrap();
        assert_eq!(config.stonith, Some(false));
        assert_eq!(warnings.len(), 1);
        // ... but a later invalid value is, on its own line.
        let (line, key, _) = invalid("vm_stonith=on\nvm_stonith=maybe\n");
        assert_eq!((line, key.as_str()), (2, "vm_stonith"));
    }

    #[test]
    fn paths_must_be_absolute_without_parent_components() {
        assert_eq!(
            absolute_path("/var/lib/./libvirt/").unwrap(),
            Path::new("/var/lib/./libvirt/")
        );
        assert_eq!(absolute_path("/").unwrap(), Path::new("/"));
        // `..` inside a name is not a parent component.
        assert_eq!(absolute_path("/a..b/c..").unwrap(), Path::new("/a..b/c.."));
        for parent in ["/a/..", "/../a", "/a/../b/"] {
            let message = absolute_path(parent).unwrap_err();
            assert!(message.contains("without `..` components"), "{message}");
        }
        for relative in ["./a", "a", "a/../b", "~/a"] {
            let message = absolute_path(relative).unwrap_err();
            assert!(
                message.contains("must be an absolute path, got"),
                "{message}"
            );
        }
        let message = absolute_path("").unwrap_err();
        assert!(message.contains("got an empty value"), "{message}");
    }

    #[test]
    fn unknown_and_repeated_keys_warn() {
        let text = "vm_cfg_dir=/a\nvm_cfg_dri=/b\nvm_cfg_dir=/c\nvm_cfg_dir=/d\nvm_pingd01=(x)\n";
        let (config, warnings) = parse(text).unwrap();
        assert_eq!(config.cfg_dir.as_deref(), Some(Path::new("/d")));
        let got: Vec<(usize, &str)> = warnings
            .iter()
            .map(|w| (w.line, w.message.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (2, "unknown key vm_cfg_dri is ignored"),
                (
                    3,
                    "vm_cfg_dir is set again (previously on line 1); the later value wins"
                ),
                (
                    4,
                    "vm_cfg_dir is set again (previously on line 3); the later value wins"
                ),
                (
                    5,
                    "vm_pingd01 is ignored: numbered keys are vm_pingd1, vm_pingd2, ... without \
                     leading zeros"
                ),
            ]
        );
        assert_eq!(
            warnings[0].to_string(),
            "/etc/vm-ctl.conf:2: unknown key vm_cfg_dri is ignored"
        );
        assert!(warnings.iter().all(|w| w.file == path()));
    }

    #[test]
    fn numbered_entries_stop_at_the_first_gap() {
        let text = "\
vm_pingd2=(clnPingd2 attr2)
vm_pingd1=(clnPingd1)
vm_pingd4=(clnPingd4 attr4)
vm_pingd12=(clnPingd12)
vm_diskd2=(clnDiskd2)
vm_managerd1=(m1 a)
vm_managerd2=(m2 b)
vm_managerd3=(m3 c)
vm_stonithd1=(s1)
vm_stonithd0=(s0)
vm_pingd99999999999999999999999=(big)
";
        let (config, warnings) = parse(text).unwrap();
        assert_eq!(
            config.pingd,
            [
                CloneRef {
                    rsc: "clnPingd1".into(),
                    attr: None
                },
                CloneRef {
                    rsc: "clnPingd2".into(),
                    attr: Some("attr2".into())
                },
            ]
        );
        assert!(config.diskd.is_empty(), "vm_diskd1 is missing");
        let managerd: Vec<&str> = config.managerd.iter().map(|c| c.rsc.as_str()).collect();
        assert_eq!(managerd, ["m1", "m2", "m3"]);
        assert_eq!(config.stonithd, ["s1"]);
        let got: Vec<(usize, &str)> = warnings
            .iter()
            .map(|w| (w.line, w.message.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    3,
                    "vm_pingd4 is ignored: vm_pingd3 is not set, and the vm_pingdN entries end at \
                     the first missing number"
                ),
                (
                    4,
                    "vm_pingd12 is ignored: vm_pingd3 is not set, and the vm_pingdN entries end \
                     at the first missing number"
                ),
                (
                    5,
                    "vm_diskd2 is ignored: vm_diskd1 is not set, and the vm_diskdN entries end \
                     at the first missing number"
                ),
                (
                    10,
                    "vm_stonithd0 is ignored: numbered keys are vm_stonithd1, vm_stonithd2, ... \
                     without leading zeros"
                ),
                (
                    11,
                    "vm_pingd99999999999999999999999 is ignored: vm_pingd3 is not set, and the \
                     vm_pingdN entries end at the first missing number"
                ),
            ]
        );
    }

    #[test]
    fn numbered_entries_have_no_cap_at_ten() {
        let text: String = (1..=12)
            .map(|n| format!("vm_diskd{n}=(clnDiskd{n} attr{n})\n"))
            .collect();
        let config = parse_clean(&text);
        assert_eq!(config.diskd.len(), 12);
        assert_eq!(config.diskd[11].rsc, "clnDiskd12");
        assert_eq!(config.diskd[9].attr.as_deref(), Some("attr10"));
    }

    #[test]
    fn ignored_numbered_entries_are_not_validated() {
        let (config, warnings) = parse("vm_pingd1=(ok)\nvm_pingd3=('not valid')\n").unwrap();
        assert_eq!(config.pingd.len(), 1);
        assert_eq!(warnings.len(), 1);
        // A used one is.
        let (line, key, _) = invalid("vm_pingd1=(ok)\nvm_pingd2=('not valid')\n");
        assert_eq!((line, key.as_str()), (2, "vm_pingd2"));
    }

    #[test]
    fn scores_are_normalised() {
        for (text, normalised) in [
            ("INFINITY", "INFINITY"),
            ("+INFINITY", "INFINITY"),
            ("infinity", "INFINITY"),
            ("inf", "INFINITY"),
            ("+Inf", "INFINITY"),
            ("-INFINITY", "-INFINITY"),
            ("-infinity", "-INFINITY"),
            ("-inf", "-INFINITY"),
            ("0", "0"),
            ("-0", "0"),
            ("+5", "5"),
            ("007", "7"),
            ("-200", "-200"),
            ("1000000", "1000000"),
        ] {
            assert_eq!(
                Score::parse(text).map(|s| s.as_str().to_owned()).as_deref(),
                Some(normalised),
                "{text}"
            );
        }
        for bad in [
            "", "+", "-", "1.5", "1e3", " 5", "5 ", "infinite", "--1", "+-1", "0x10",
        ] {
            assert_eq!(Score::parse(bad), None, "{bad:?}");
        }
        let config = parse_clean(
            "vm_node_loc_act=+5\nvm_pingd_col=-inf\nvm_diskd_odr=(Inf true)\n\
             vm_stonithd_col=+0\n",
        );
        assert_eq!(config.node_loc_act.as_str(), "5");
        assert_eq!(config.pingd_rules.col.as_str(), "-INFINITY");
        assert_eq!(config.diskd_rules.odr.score.to_string(), "INFINITY");
        assert!(config.diskd_rules.odr.symmetrical);
        assert_eq!(config.stonithd_col.as_str(), "0");
    }

    #[test]
    fn durations_and_agents() {
        for good in [
            "0", "10", "500ms", "1msec", "90s", "3sec", "5m", "5min", "1h", "2hr",
        ] {
            assert!(duration_number(good).is_some(), "{good}");
        }
        for bad in [
            "", "s", "10S", "1.5s", "10 s", "-1", "10d", "1hour", "PT10S",
        ] {
            assert_eq!(duration_number(bad), None, "{bad:?}");
        }
        assert_eq!(duration_number("0ms"), Some(0));
        let config = parse_clean("vm_ocf=systemd:libvirt-guest_1.0\n");
        let agent = config.ocf_agent().unwrap();
        assert_eq!(agent.provider, None);
        assert_eq!(agent.to_string(), "systemd:libvirt-guest_1.0");
    }

    #[test]
    fn load_reads_a_file_and_reports_read_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("vm-ctl.conf");
        std::fs::write(&file, "vm_cfg_dir=/srv/vm\nvm_x=1\n").unwrap();
        let (config, warnings) = Config::load(&file).unwrap();
        assert_eq!(config.cfg_dir.as_deref(), Some(Path::new("/srv/vm")));
        assert_eq!(config.source, file);
        assert_eq!(warnings[0].file, file);

        let absent = dir.path().join("absent.conf");
        match Config::load(&absent) {
            Err(ConfigError::Read { path, source }) => {
                assert_eq!(path, absent);
                assert_eq!(source.kind(), io::ErrorKind::NotFound);
            }
            other => panic!("expected a read error, got {other:?}"),
        }
        let error = Config::load(&absent).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("Cannot read {}", absent.display())
        );
    }
}
