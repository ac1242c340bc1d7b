//! The agent's options: one table ([`PARAMS`]) drives the command line, the `name=value`
//! lines on stdin, `--help` and the metadata, so the four never disagree.
//!
//! As in fence-agents, stdin is read only when the command line is empty (that is how
//! Pacemaker's fencer runs agents); names on stdin that the agent does not know are skipped
//! with a warning, so a newer fencer passing a new standard name cannot break fencing.

use std::io::Read;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// Default timeout for a whole request, retries included, in seconds (vm-fence's, which
/// vm-ctl and the cluster-glue plugin use too).
pub use vm_fence::defaults::AGENT_TIMEOUT_SECS as DEFAULT_TIMEOUT_SECS;
/// Default key file (vm-fence's, which vm-ctl's guest configuration assumes).
pub use vm_fence::defaults::GUEST_KEY_FILE as DEFAULT_KEY_FILE;
/// Longest line accepted on stdin, in bytes (without the newline).
pub const MAX_LINE: usize = 4096;
/// Most lines accepted on stdin.
pub const MAX_LINES: usize = 1000;
/// Longest timeout or delay accepted (a day, as vm-seal's request timeout).
pub use vm_fence::defaults::AGENT_MAX_TIMEOUT_SECS as MAX_SECONDS;

/// What the agent is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentAction {
    /// Start the target guest.
    On,
    /// Power the target guest off (fence it); it stays off.
    Off,
    /// Off, then on (`reset` is accepted as an alias).
    Reboot,
    /// The target guest's power state.
    Status,
    /// The guests this guest cluster may fence.
    List,
    /// [`AgentAction::List`] with each guest's power state.
    ListStatus,
    /// Whether the whole path to the host cluster works.
    Monitor,
    /// Print the agent's metadata.
    Metadata,
    /// Check the options and the key file.
    ValidateAll,
}

impl AgentAction {
    /// Every action, in the order the metadata lists them.
    pub const ALL: [AgentAction; 9] = [
        AgentAction::On,
        AgentAction::Off,
        AgentAction::Reboot,
        AgentAction::Status,
        AgentAction::List,
        AgentAction::ListStatus,
        AgentAction::Monitor,
        AgentAction::Metadata,
        AgentAction::ValidateAll,
    ];

    /// The action's name as fence-agents spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            AgentAction::On => "on",
            AgentAction::Off => "off",
            AgentAction::Reboot => "reboot",
            AgentAction::Status => "status",
            AgentAction::List => "list",
            AgentAction::ListStatus => "list-status",
            AgentAction::Monitor => "monitor",
            AgentAction::Metadata => "metadata",
            AgentAction::ValidateAll => "validate-all",
        }
    }

    /// Whether the action needs a target (`-n/--plug`).
    pub fn needs_target(self) -> bool {
        matches!(
            self,
            AgentAction::On | AgentAction::Off | AgentAction::Reboot | AgentAction::Status
        )
    }
}

impl FromStr for AgentAction {
    type Err = String;
    fn from_str(s: &str) -> Result<AgentAction, String> {
        if s == "reset" {
            return Ok(AgentAction::Reboot);
        }
        AgentAction::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown action {s:?} (on, off, reboot, status, list, list-status, monitor, \
                     metadata, validate-all)"
                )
            })
    }
}

/// The options after parsing (names are validated later, by the action that uses them).
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// `-o, --action`.
    pub action: AgentAction,
    /// `-n, --plug` (stdin: `plug` or `port`): the target guest's libvirt domain name.
    pub plug: Option<String>,
    /// `--key-file`.
    pub key_file: PathBuf,
    /// `--socket`: the guest's vm-connectd socket.
    pub socket: PathBuf,
    /// `--requester`: this guest's name as the host knows it (default: from the hostname).
    pub requester: Option<String>,
    /// `--timeout`: for the whole request, retries included.
    pub timeout: Duration,
    /// `--delay`: wait this long before fencing (off, reboot).
    pub delay: Duration,
    /// `-v, --verbose`.
    pub verbose: bool,
    /// `-h, --help`.
    pub help: bool,
    /// `-V, --version`.
    pub version: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            action: AgentAction::Reboot,
            plug: None,
            key_file: PathBuf::from(DEFAULT_KEY_FILE),
            socket: PathBuf::from(vm_proto::DEFAULT_SOCKET),
            requester: None,
            timeout: Duration::from_secs(DEFAULT_TIMEOUT_SECS),
            delay: Duration::ZERO,
            verbose: false,
            help: false,
            version: false,
        }
    }
}

/// Which option a parameter sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    /// [`Options::action`].
    Action,
    /// [`Options::plug`].
    Plug,
    /// [`Options::key_file`].
    KeyFile,
    /// [`Options::socket`].
    Socket,
    /// [`Options::requester`].
    Requester,
    /// [`Options::timeout`].
    Timeout,
    /// [`Options::delay`].
    Delay,
    /// [`Options::verbose`].
    Verbose,
    /// [`Options::version`].
    Version,
    /// [`Options::help`].
    Help,
    /// A standard fence-agents or Pacemaker name the agent accepts and ignores.
    Ignored,
}

/// One parameter: how it is spelled on the command line and on stdin, and what the metadata
/// says about it.
#[derive(Debug, Clone, Copy)]
pub struct Param {
    /// Name on stdin and in the metadata.
    pub name: &'static str,
    /// What it sets.
    pub setting: Setting,
    /// Short option letter.
    pub short: Option<char>,
    /// Long option, without the dashes (`None`: stdin only).
    pub long: Option<&'static str>,
    /// The value's placeholder; `None` for a flag.
    pub value: Option<&'static str>,
    /// Metadata content type.
    pub content: &'static str,
    /// Default shown in the metadata.
    pub default: Option<&'static str>,
    /// One-line description (metadata shortdesc and `--help`).
    pub desc: &'static str,
    /// Listed in the metadata as deprecated (`port`).
    pub deprecated: bool,
    /// The deprecated name this parameter replaces (`plug` replaces `port`).
    pub obsoletes: Option<&'static str>,
    /// Listed in the metadata and `--help` (false for the ignored standard names).
    pub documented: bool,
}

const fn param(name: &'static str, setting: Setting, desc: &'static str) -> Param {
    Param {
        name,
        setting,
        short: None,
        long: None,
        value: None,
        content: "string",
        default: None,
        desc,
        deprecated: false,
        obsoletes: None,
        documented: true,
    }
}

/// A standard name accepted and ignored; `value`: whether it takes one on the command line.
const fn ignored(name: &'static str, long: Option<&'static str>, value: bool) -> Param {
    Param {
        long,
        value: if value { Some("value") } else { None },
        documented: false,
        ..param(name, Setting::Ignored, "")
    }
}

/// Every parameter the agent knows.
pub const PARAMS: &[Param] = &[
    Param {
        short: Some('o'),
        long: Some("action"),
        value: Some("action"),
        default: Some("reboot"),
        ..param("action", Setting::Action, "Fencing action")
    },
    Param {
        short: Some('n'),
        long: Some("plug"),
        value: Some("id"),
        obsoletes: Some("port"),
        ..param(
            "plug",
            Setting::Plug,
            "Libvirt domain name of the guest to act on (Pacemaker passes it)",
        )
    },
    Param {
        short: Some('n'),
        value: Some("id"),
        deprecated: true,
        ..param(
            "port",
            Setting::Plug,
            "Libvirt domain name of the guest to act on (Pacemaker passes it)",
        )
    },
    Param {
        long: Some("key-file"),
        value: Some("path"),
        default: Some(DEFAULT_KEY_FILE),
        ..param(
            "key_file",
            Setting::KeyFile,
            "Key file of this guest cluster (mode 0600), shared with the host cluster",
        )
    },
    Param {
        long: Some("socket"),
        value: Some("path"),
        default: Some(vm_proto::DEFAULT_SOCKET),
        ..param(
            "socket",
            Setting::Socket,
            "Local socket of this guest's vm-connectd",
        )
    },
    Param {
        long: Some("requester"),
        value: Some("name"),
        ..param(
            "requester",
            Setting::Requester,
            "Name of this guest as the host cluster knows it (default: the hostname up to the \
             first dot)",
        )
    },
    Param {
        long: Some("timeout"),
        value: Some("seconds"),
        content: "second",
        default: Some("40"),
        ..param(
            "timeout",
            Setting::Timeout,
            "Seconds to wait for the host cluster, retries included; each attempt carries \
             what is left to the relays and vm-stonithd, which give up at it (the agent waits \
             up to 1 s more for their answer)",
        )
    },
    Param {
        long: Some("delay"),
        value: Some("seconds"),
        content: "second",
        default: Some("0"),
        ..param(
            "delay",
            Setting::Delay,
            "Wait X seconds before fencing is started",
        )
    },
    Param {
        short: Some('v'),
        long: Some("verbose"),
        content: "boolean",
        ..param("verbose", Setting::Verbose, "Verbose mode")
    },
    Param {
        short: Some('V'),
        long: Some("version"),
        content: "boolean",
        ..param(
            "version",
            Setting::Version,
            "Display version information and exit",
        )
    },
    Param {
        short: Some('h'),
        long: Some("help"),
        content: "boolean",
        ..param("help", Setting::Help, "Display help and exit")
    },
    ignored("nodename", Some("nodename"), true),
    ignored("nodeid", None, true),
    ignored("port_as_ip", Some("port-as-ip"), false),
    ignored("power_timeout", Some("power-timeout"), true),
    ignored("power_wait", Some("power-wait"), true),
    ignored("shell_timeout", Some("shell-timeout"), true),
    ignored("login_timeout", Some("login-timeout"), true),
    ignored("retry_on", Some("retry-on"), true),
    ignored("debug_file", Some("debug-file"), true),
    ignored("debug", None, true),
];

fn by_long(long: &str) -> Option<&'static Param> {
    PARAMS.iter().find(|p| p.long == Some(long))
}

fn by_short(c: char) -> Option<&'static Param> {
    // `port` shares `-n` with `plug`; the first (plug) is the command-line one
    PARAMS.iter().find(|p| p.short == Some(c))
}

fn by_name(name: &str) -> Option<&'static Param> {
    PARAMS.iter().find(|p| p.name == name)
}

/// Seconds as given by an operator or Pacemaker (`40`, `2.5`), within `0..=MAX_SECONDS`;
/// `positive`: zero is refused.
fn seconds(what: &str, v: &str, positive: bool) -> Result<Duration, String> {
    let bad = || {
        format!(
            "{what} {v:?} is not a number of seconds between {} and {MAX_SECONDS}",
            if positive { "0.001" } else { "0" }
        )
    };
    let secs: f64 = v.trim().parse().map_err(|_| bad())?;
    if !secs.is_finite() || secs < 0.0 || secs > MAX_SECONDS as f64 {
        return Err(bad());
    }
    let d = Duration::try_from_secs_f64(secs).map_err(|_| bad())?;
    if positive && d < Duration::from_millis(1) {
        return Err(bad());
    }
    Ok(d)
}

/// A flag's value on stdin (fence-agents accept a bare name, 1/yes/on/true and
/// 0/no/off/false).
fn flag(what: &str, v: &str) -> Result<bool, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "" | "1" | "yes" | "on" | "true" => Ok(true),
        "0" | "no" | "off" | "false" => Ok(false),
        _ => Err(format!(
            "{what} {v:?} is not a boolean (1/0, yes/no, on/off, true/false)"
        )),
    }
}

fn non_empty(what: &str, v: &str) -> Result<String, String> {
    if v.is_empty() {
        Err(format!("{what} needs a value"))
    } else {
        Ok(v.to_owned())
    }
}

impl Options {
    /// Applies `p` with `value` (`None` for a flag given without one). `what` names the
    /// option the way the user spelled it, for messages.
    fn apply(&mut self, p: &Param, what: &str, value: Option<&str>) -> Result<(), String> {
        let v = value.unwrap_or_default();
        match p.setting {
            Setting::Action => self.action = v.parse()?,
            Setting::Plug => self.plug = Some(non_empty(what, v)?),
            Setting::KeyFile => self.key_file = PathBuf::from(non_empty(what, v)?),
            Setting::Socket => self.socket = PathBuf::from(non_empty(what, v)?),
            Setting::Requester => self.requester = Some(non_empty(what, v)?),
            Setting::Timeout => self.timeout = seconds(what, v, true)?,
            Setting::Delay => self.delay = seconds(what, v, false)?,
            Setting::Verbose => self.verbose = flag(what, v)?,
            Setting::Version => self.version = flag(what, v)?,
            Setting::Help => self.help = flag(what, v)?,
            Setting::Ignored => {}
        }
        Ok(())
    }
}

/// Parses command-line arguments (without the program name): `--long value`,
/// `--long=value`, `-o value`, `-ovalue`, and bundled flags (`-vV`).
pub fn parse_args(argv: &[String]) -> Result<Options, String> {
    let mut opts = Options::default();
    let mut it = argv.iter();
    while let Some(arg) = it.next() {
        if let Some(long) = arg.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (long, None),
            };
            let p = by_long(name).ok_or_else(|| format!("unknown option --{name}"))?;
            let what = format!("--{name}");
            match (p.value, inline) {
                (Some(_), Some(v)) => opts.apply(p, &what, Some(v))?,
                (Some(_), None) => {
                    let v = it.next().ok_or_else(|| format!("{what} needs a value"))?;
                    opts.apply(p, &what, Some(v))?;
                }
                (None, Some(_)) => return Err(format!("{what} takes no value")),
                (None, None) => opts.apply(p, &what, None)?,
            }
        } else if let Some(cluster) = arg.strip_prefix('-').filter(|c| !c.is_empty()) {
            for (i, c) in cluster.char_indices() {
                let p = by_short(c).ok_or_else(|| format!("unknown option -{c}"))?;
                let what = format!("-{c}");
                if p.value.is_none() {
                    opts.apply(p, &what, None)?;
                    continue;
                }
                let rest = cluster.get(i + c.len_utf8()..).unwrap_or_default();
                if rest.is_empty() {
                    let v = it.next().ok_or_else(|| format!("{what} needs a value"))?;
                    opts.apply(p, &what, Some(v))?;
                } else {
                    opts.apply(p, &what, Some(rest))?;
                }
                break;
            }
        } else {
            return Err(format!("unexpected argument {arg:?}"));
        }
    }
    Ok(opts)
}

/// Options read from `name=value` lines, and the warnings to log about them.
#[derive(Debug)]
pub struct StdinOptions {
    /// The options.
    pub options: Options,
    /// One line per name skipped.
    pub warnings: Vec<String>,
}

/// Parses `name=value` lines (fence-agents' stdin format): blank lines and `#` comments are
/// skipped, names and values are trimmed, later lines override earlier ones. At most
/// [`MAX_LINES`] lines of at most [`MAX_LINE`] bytes are read.
pub fn parse_stdin(input: &mut dyn Read) -> Result<StdinOptions, String> {
    // one byte more than the largest acceptable input tells "too much" from "just fits"
    let limit = MAX_LINES * (MAX_LINE + 1) + 1;
    let mut bytes = Vec::new();
    input
        .take(u64::try_from(limit).unwrap_or(u64::MAX))
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read the options on stdin: {e}"))?;
    let mut opts = Options::default();
    let mut warnings = Vec::new();
    let text = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
    if text.is_empty() {
        return Ok(StdinOptions {
            options: opts,
            warnings,
        });
    }
    for (n, raw) in text.split(|b| *b == b'\n').enumerate() {
        let n = n + 1;
        if n > MAX_LINES {
            return Err(format!("more than {MAX_LINES} lines of options on stdin"));
        }
        if raw.len() > MAX_LINE {
            return Err(format!("stdin line {n} is longer than {MAX_LINE} bytes"));
        }
        let line = std::str::from_utf8(raw)
            .map_err(|_| format!("stdin line {n} is not UTF-8"))?
            .trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, value) = match line.split_once('=') {
            Some((k, v)) => (k.trim(), v.trim()),
            None => (line, ""),
        };
        let Some(p) = by_name(name) else {
            if !name.starts_with("pcmk_") {
                warnings.push(format!(
                    "ignoring unknown option {:?} on stdin line {n}",
                    crate::one_line(name)
                ));
            }
            continue;
        };
        opts.apply(p, name, Some(value))
            .map_err(|e| format!("stdin line {n}: {e}"))?;
    }
    Ok(StdinOptions {
        options: opts,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Result<Options, String> {
        parse_args(&a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
    }

    fn stdin(text: &str) -> Result<StdinOptions, String> {
        parse_stdin(&mut text.as_bytes())
    }

    #[test]
    fn defaults() {
        let o = args(&[]).unwrap();
        assert_eq!(o.action, AgentAction::Reboot);
        assert_eq!(o.key_file, PathBuf::from(DEFAULT_KEY_FILE));
        assert_eq!(o.socket, PathBuf::from("/var/run/vmconnectd.sock"));
        assert_eq!(o.timeout, Duration::from_secs(40));
        assert_eq!(o.delay, Duration::ZERO);
        assert!(o.plug.is_none() && o.requester.is_none() && !o.verbose);
    }

    #[test]
    fn command_line_forms() {
        let o = args(&[
            "-o",
            "off",
            "-nweb2",
            "--key-file=/k",
            "--socket",
            "/s.sock",
            "--requester",
            "web1",
            "--timeout=2.5",
            "--delay",
            "3",
            "-v",
        ])
        .unwrap();
        assert_eq!(o.action, AgentAction::Off);
        assert_eq!(o.plug.as_deref(), Some("web2"));
        assert_eq!(o.key_file, PathBuf::from("/k"));
        assert_eq!(o.socket, PathBuf::from("/s.sock"));
        assert_eq!(o.requester.as_deref(), Some("web1"));
        assert_eq!(o.timeout, Duration::from_millis(2500));
        assert_eq!(o.delay, Duration::from_secs(3));
        assert!(o.verbose);
        assert_eq!(
            args(&["--action", "reset"]).unwrap().action,
            AgentAction::Reboot
        );
        assert_eq!(args(&["-ooff"]).unwrap().action, AgentAction::Off);
        let o = args(&["-vV"]).unwrap();
        assert!(o.verbose && o.version);
        assert!(args(&["-h"]).unwrap().help);
        // the standard names are accepted and ignored on the command line too
        args(&["--nodename", "n1", "--port-as-ip", "--power-timeout=20"]).unwrap();
    }

    #[test]
    fn bad_command_lines() {
        for bad in [
            &["-o"][..],
            &["-o", "explode"],
            &["--bogus"],
            &["-x"],
            &["web2"],
            &["--verbose=1"],
            &["--timeout", "0"],
            &["--timeout", "soon"],
            &["--timeout", "-1"],
            &["--timeout", "inf"],
            &["--timeout", "100000"],
            &["--delay", "-2"],
            &["--plug="],
            &["--port", "web2"],
        ] {
            assert!(args(bad).is_err(), "{bad:?} accepted");
        }
        let e = args(&["-o", "explode"]).unwrap_err();
        assert!(e.contains("unknown action"), "{e}");
    }

    #[test]
    fn every_action_parses_by_name() {
        for a in AgentAction::ALL {
            assert_eq!(a.as_str().parse::<AgentAction>(), Ok(a));
        }
        assert!(AgentAction::Status.needs_target());
        assert!(!AgentAction::Monitor.needs_target());
    }

    #[test]
    fn stdin_lines() {
        let s = stdin(
            "# from the fencer\n\naction=off\nport=web3\n plug = web2 \nnodename=n2\n\
             pcmk_host_map=a:b\nbogus=1\nverbose=1\ntimeout=7\nkey_file=/k\nsocket=/s\n\
             requester=web1\ndelay=0\ndebug=/tmp/x\nport_as_ip\n",
        )
        .unwrap();
        let o = s.options;
        assert_eq!(o.action, AgentAction::Off);
        assert_eq!(o.plug.as_deref(), Some("web2"));
        assert!(o.verbose);
        assert_eq!(o.timeout, Duration::from_secs(7));
        assert_eq!(o.requester.as_deref(), Some("web1"));
        assert_eq!(s.warnings.len(), 1, "{:?}", s.warnings);
        assert!(s.warnings[0].contains("\"bogus\""), "{:?}", s.warnings);
        assert!(stdin("verbose\n").unwrap().options.verbose);
        assert!(!stdin("verbose=0").unwrap().options.verbose);
        assert_eq!(stdin("").unwrap().options, Options::default());
    }

    #[test]
    fn stdin_limits_and_errors() {
        stdin(&format!("plug={}\n", "a".repeat(MAX_LINE - 5))).unwrap();
        let e = stdin(&format!("plug={}\n", "a".repeat(MAX_LINE))).unwrap_err();
        assert!(e.contains("longer than"), "{e}");
        stdin(&"# c\n".repeat(MAX_LINES)).unwrap();
        let e = stdin(&"# c\n".repeat(MAX_LINES + 1)).unwrap_err();
        assert!(e.contains("more than"), "{e}");
        let e = stdin(&"#".repeat(MAX_LINES * (MAX_LINE + 1) + 10)).unwrap_err();
        assert!(e.contains("longer than"), "{e}");
        let e = stdin("action=explode\n").unwrap_err();
        assert!(e.contains("line 1") && e.contains("unknown action"), "{e}");
        stdin("timeout=never\n").unwrap_err();
        stdin("verbose=maybe\n").unwrap_err();
        stdin("plug=\n").unwrap_err();
        let e = parse_stdin(&mut &b"plug=\xff\n"[..]).unwrap_err();
        assert!(e.contains("UTF-8"), "{e}");
    }
}
