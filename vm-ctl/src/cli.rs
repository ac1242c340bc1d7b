//! vm-ctl's command line (clap definitions only: `xtask` generates the man page and shell
//! completions from them).
//!
//! The syntax is the original vm-ctl's (`resource add <dom>[,<dom>...] -a <node> [-m on|off]`,
//! ...), extended with `--wait`, `show`, `check` and the global options.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::output::Format;

const EXAMPLES: &str = "\
Examples:
  vm-ctl resource add web1,web2 -a node1 -m on     # two guests, preferring node1, live migration on
  vm-ctl --dry-run resource add db1 -a node2       # show the crm text and XML, validate, write nothing
  vm-ctl resource start web1,web2 --wait           # start and wait until both run (120 s at most)
  vm-ctl resource add app1 -a node1 --guest-node  # also a Pacemaker guest node, over its channel
  vm-ctl resource move web1 -n node2               # live-migrate (or stop/start) web1 to node2
  vm-ctl resource list                             # domain, resource, migration, preferred/running node
  vm-ctl location move -b node1                    # make every guest's current node its preferred node
  vm-ctl check                                     # pre-flight checks with the fix for each finding
  vm-ctl status --watch                            # guests, nodes, daemons, fences; redrawn on changes
  vm-ctl stonith keygen web --members w1,w2        # new key of guest cluster web, and what next
  vm-ctl stonith guest-config web --members w1,w2  # fence devices for inside the guests (crm, pcs)
  vm-ctl stonith client-config --resource svc      # vm-client clone and a rule for inside the guests
  CIB_file=/tmp/cib.xml vm-ctl resource list       # work on an offline CIB file

Exit status: 0 success (including \"already present\"), 1 unexpected error, 2 usage,
3 vm-ctl.conf, 4 bad domain/node/guest cluster name, 5 domain XML, 6 node, 7 missing host clone,
8 fencing disabled with vm_stonith=on, 9 guest not managed by vm-ctl, 10 configured
differently / managed by another resource, 11 guest state forbids it, 12 Pacemaker would not
place it there, 13 result would fail crm_verify, 14 --wait timed out, 15 another vm-ctl holds
the lock, 16 Pacemaker tool or CIB failure, 17 concurrent writers kept changing the CIB,
18 check found problems, 19 a key could not be created or written, 20 a legacy token could
not be made (password file), 21 unusable stonith option (--members, --key-file), 22 guest node cannot be configured as
asked (name or port taken, bad address), 23 delete of a guest node that resources are placed
on or run on (without --force).";

/// Manage libvirt guests as Pacemaker VirtualDomain resources, one atomic CIB change per
/// command. Compatible with the original vm-ctl's syntax, configuration file and resource ids.
#[derive(Debug, Parser)]
#[command(name = "vm-ctl", version, about, long_about = None, after_help = EXAMPLES)]
pub struct Cli {
    /// vm-ctl configuration file (the original vm-ctl.conf format; parsed, never executed).
    #[arg(long, global = true, value_name = "FILE", default_value = crate::config::DEFAULT_PATH)]
    pub config: PathBuf,
    /// Print the change as crm shell text and CIB XML, validate it, write nothing.
    #[arg(long, global = true)]
    pub dry_run: bool,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Format::Text)]
    pub output: Format,
    /// More log output on stderr (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// How long to wait for another vm-ctl on this host to finish.
    #[arg(long, global = true, value_name = "SECS", default_value_t = 60)]
    pub lock_wait: u64,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Guests as Pacemaker resources: add, delete, start, stop, move, unmove, list, show.
    #[command(subcommand)]
    Resource(ResourceCmd),
    /// Preferred-node locations.
    #[command(subcommand)]
    Location(LocationCmd),
    /// Pre-flight checks of guests, host clones and guest-cluster fence keys, with the fix for
    /// each finding.
    Check(CheckArgs),
    /// Guest clusters fencing their guests through vm-stonithd: keys, the guests' fence
    /// configuration, legacy tokens.
    #[command(subcommand)]
    Stonith(StonithCmd),
    /// One screen for the whole host cluster, from the CIB alone: each guest's state, node,
    /// preferred node, move constraint, channel link and liveness, fences and failures; each
    /// host node's state, daemon clones, fence readiness and attribute health.
    Status(StatusArgs),
}

/// `vm-ctl status`
#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// Keep running and redraw whenever Pacemaker reports a change (at most 4 times a second,
    /// and at least every 10 s); with --output json, print one JSON document per line each
    /// time the status changes. Stops on SIGINT or SIGTERM (exit 0).
    #[arg(long)]
    pub watch: bool,
}

/// A comma-separated domain list, as the original accepts (`d1,d2`; several arguments too).
#[derive(Debug, Clone, Args)]
pub struct DomainList {
    /// Domain name(s): `dom[,dom...]`.
    #[arg(value_name = "DOMAIN", required = true, num_args = 1..)]
    pub domains: Vec<String>,
}

impl DomainList {
    /// The domains, split on commas, blanks dropped, duplicates removed (first kept).
    pub fn names(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for d in self
            .domains
            .iter()
            .flat_map(|d| d.split(','))
            .map(str::trim)
            .filter(|d| !d.is_empty())
        {
            if !out.iter().any(|o| o == d) {
                out.push(d.to_owned());
            }
        }
        out
    }
}

/// `--wait[=SECS]`: wait for the cluster (default 120 s when given without a value).
#[derive(Debug, Clone, Copy, Args)]
pub struct WaitArg {
    /// Wait until the cluster got there, at most SECS seconds (default 120).
    #[arg(long, value_name = "SECS", num_args = 0..=1, require_equals = true, default_missing_value = "120")]
    pub wait: Option<u64>,
}

/// `resource add`'s guest-node options.
#[derive(Debug, Clone, Default, Args)]
pub struct GuestNodeArgs {
    /// Also make each guest a Pacemaker guest node (meta remote-node), named NAME (default:
    /// the domain name; a NAME only with one domain), reached over its vm-connectd channel
    /// through a host-local port (or over TCP with --guest-node-addr). Default:
    /// vm_guest_node in vm-ctl.conf.
    #[arg(long = "guest-node", value_name = "NAME", num_args = 0..=1, default_missing_value = "")]
    pub name: Option<String>,
    /// The guest's own address: the cluster reaches its pacemaker-remoted over the network
    /// (tcp transport, remote-addr); implies --guest-node.
    #[arg(long = "guest-node-addr", value_name = "ADDR")]
    pub addr: Option<String>,
    /// The port: the guest's (tcp, default 3121) or the host-local one (channel, default the
    /// lowest free from vm_guest_node_port_base); implies --guest-node.
    #[arg(long = "guest-node-port", value_name = "PORT")]
    pub port: Option<u16>,
    /// Not a guest node, whatever vm_guest_node says.
    #[arg(long = "no-guest-node", conflicts_with_all = ["name", "addr", "port"])]
    pub off: bool,
}

/// `on` / `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnOff {
    /// Yes.
    On,
    /// No.
    Off,
}

/// `vm-ctl resource ...`
#[derive(Debug, Subcommand)]
pub enum ResourceCmd {
    /// Add guests as VirtualDomain resources (created stopped) with their preferred node,
    /// ping/disk rules and colocation/order constraints, in one CIB change (or one per
    /// --batch guests, each guest whole in one). Adding a guest that is already configured
    /// identically reports "already present". With --guest-node, each guest is also a
    /// Pacemaker guest node, in the same change.
    Add {
        /// Guests to add.
        #[command(flatten)]
        domains: DomainList,
        /// Preferred node.
        #[arg(short = 'a', long = "active-node", value_name = "NODE")]
        node: String,
        /// Live migration (default: vm_allow_migrate from vm-ctl.conf).
        #[arg(short = 'm', long = "migrate", value_enum)]
        migrate: Option<OnOff>,
        /// Write at most this many guests per CIB change, each guest's objects always in one
        /// change; everything is checked before the first change is written. Default (and 0):
        /// all in one change, which is faster and keeps readers waiting less than several
        /// (docs/benchmarks.md); a failure part-way leaves the guests of the changes written.
        #[arg(long = "batch", value_name = "GUESTS")]
        batch: Option<usize>,
        /// Guest-node options.
        #[command(flatten)]
        guest_node: GuestNodeArgs,
    },
    /// Delete guests' resources and every constraint on them. Refuses a running guest; waits
    /// for a confirmed stop before removing anything. A guest node is refused while resources
    /// are placed on it or run on it (unless --force); what Pacemaker keeps of the node goes
    /// in the same change.
    Delete {
        /// Guests to delete.
        #[command(flatten)]
        domains: DomainList,
        /// Wait this long for a stop in progress to be confirmed.
        #[command(flatten)]
        wait: WaitArg,
        /// Delete a guest node even though resources are placed on it or run on it (they
        /// lose their node; the location constraints naming it are removed).
        #[arg(long)]
        force: bool,
    },
    /// Start guests (target-role=Started).
    Start {
        /// Guests to start.
        #[command(flatten)]
        domains: DomainList,
        /// Wait until they run.
        #[command(flatten)]
        wait: WaitArg,
    },
    /// Stop guests (target-role=Stopped).
    Stop {
        /// Guests to stop.
        #[command(flatten)]
        domains: DomainList,
        /// Wait until they are stopped.
        #[command(flatten)]
        wait: WaitArg,
    },
    /// Move a running guest to NODE (or, without -n, wherever Pacemaker prefers, away from
    /// its current node). Checked with crm_simulate first. Waits for the move (120 s unless
    /// --wait=SECS), then removes the temporary constraint, unless --keep is given or removing
    /// it would send the guest straight back (then it is kept, and vm-ctl says so).
    Move {
        /// The guest.
        #[arg(value_name = "DOMAIN")]
        domain: String,
        /// Target node.
        #[arg(short = 'n', long = "node", value_name = "NODE")]
        node: Option<String>,
        /// Wait at most SECS for the move.
        #[command(flatten)]
        wait: WaitArg,
        /// Keep the temporary move constraint after the move.
        #[arg(long)]
        keep: bool,
        /// Do not wait: leave the temporary constraint (clear it with `resource unmove`).
        #[arg(long, conflicts_with_all = ["wait", "keep"])]
        no_wait: bool,
    },
    /// Remove a guest's temporary move constraints (cli-prefer-*, cli-ban-*).
    Unmove {
        /// The guest.
        #[arg(value_name = "DOMAIN")]
        domain: String,
    },
    /// List guests: domain, resource, migration, preferred node, running node, move constraint.
    List {
        /// Only this guest.
        #[arg(value_name = "DOMAIN", conflicts_with = "node")]
        domain: Option<String>,
        /// Only guests running on this node.
        #[arg(short = 'n', long = "node", value_name = "NODE")]
        node: Option<String>,
    },
    /// Print, as crm shell text, everything vm-ctl manages for a guest.
    Show {
        /// The guest.
        #[arg(value_name = "DOMAIN")]
        domain: String,
    },
}

/// `vm-ctl location ...`
#[derive(Debug, Subcommand)]
pub enum LocationCmd {
    /// Make the node a guest runs on its preferred node (atomically: no moment without one).
    Move {
        /// The guest.
        #[arg(
            value_name = "DOMAIN",
            required_unless_present = "before",
            conflicts_with = "before"
        )]
        domain: Option<String>,
        /// Every guest whose preferred node is NODE (and that runs elsewhere).
        #[arg(short = 'b', long = "before", value_name = "NODE")]
        before: Option<String>,
    },
}

/// `vm-ctl check`
#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// Guests to check (default: every guest vm-ctl manages).
    #[arg(value_name = "DOMAIN")]
    pub domains: Vec<String>,
    /// Where vm-stonithd's files are.
    #[command(flatten)]
    pub fence: FencePaths,
}

/// Where the host's guest-cluster keys and vm-stonithd's configuration are.
#[derive(Debug, Clone, Args)]
pub struct FencePaths {
    /// Directory of the guest clusters' keys [default: key_dir from vm-stonithd.toml, else
    /// /etc/pm-kvm-tools/keys].
    #[arg(long, value_name = "DIR", env = "VM_CTL_KEY_DIR")]
    pub key_dir: Option<PathBuf>,
    /// vm-stonithd's configuration file (read for its guest clusters and key_dir).
    #[arg(
        long,
        value_name = "FILE",
        env = "VM_STONITHD_CONFIG",
        default_value = crate::stonith::DEFAULT_STONITHD_CONFIG
    )]
    pub stonithd_config: PathBuf,
}

/// Key-derivation digest of legacy tokens (`openssl enc -md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Md {
    /// MD5: what the original's hosts (OpenSSL 1.0) decrypt, and what vm-stonithd tries first.
    Md5,
    /// SHA-256: the `openssl enc` default since OpenSSL 1.1.
    Sha256,
}

impl From<Md> for vm_seal::legacy::Digest {
    fn from(md: Md) -> Self {
        match md {
            Md::Md5 => vm_seal::legacy::Digest::Md5,
            Md::Sha256 => vm_seal::legacy::Digest::Sha256,
        }
    }
}

/// `vm-ctl stonith ...`
#[derive(Debug, Subcommand)]
pub enum StonithCmd {
    /// Create a new key for guest cluster CLUSTER, as `<DIR>/<CLUSTER>-<keyid>.key` (mode 0600,
    /// never overwriting), and print how to install it on the other host nodes and in the
    /// guests. Running it again for the same cluster makes a second key (rotation). The key
    /// itself is never printed.
    Keygen {
        /// The guest cluster's name.
        #[arg(value_name = "CLUSTER")]
        cluster: String,
        /// Its guests, for the printed vm-stonithd.toml table: `dom[=node][,dom...]`.
        #[arg(long, value_name = "DOM[=NODE],...")]
        members: Vec<String>,
        /// Where the key directory and vm-stonithd.toml are.
        #[command(flatten)]
        fence: FencePaths,
    },
    /// Print the legacy (pm_kvm_tools) encrypted resource id of a guest as `DOMAIN:TOKEN`, for
    /// the hostlist of the guest cluster's external/vm-stonith device.
    Token {
        /// The guest's libvirt domain name.
        #[arg(value_name = "DOMAIN")]
        domain: String,
        /// The host resource the token names (default: `prmVMCTL_<DOMAIN>`).
        #[arg(long, value_name = "RSC")]
        resource: Option<String>,
        /// File whose first line is the password (mode 0600) [default: the original's public
        /// password].
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
        /// Key-derivation digest.
        #[arg(long, value_enum, default_value_t = Md::Md5)]
        md: Md,
    },
    /// Print the fence configuration of guest cluster CLUSTER for Pacemaker inside its guests,
    /// in crm shell and pcs syntax and as cibadmin commands: a fence_vmstonith device mapping
    /// guest node names to domains, then meatware, as a fencing topology (stonith-helper
    /// optional, commented out).
    GuestConfig {
        /// The guest cluster's name.
        #[arg(value_name = "CLUSTER")]
        cluster: String,
        /// Its guests: `dom[=node][,dom...]` (node: the guest's node name in its cluster,
        /// default the domain name).
        #[arg(long, value_name = "DOM[=NODE],...", required = true)]
        members: Vec<String>,
        /// The key file in the guests.
        #[arg(long, value_name = "PATH", default_value = crate::stonith::GUEST_KEY_FILE, conflicts_with = "legacy")]
        key_file: String,
        /// fence_vmstonith's timeout in seconds; Pacemaker's device timeouts get 20 s more.
        #[arg(long, value_name = "SECS", default_value_t = crate::stonith::AGENT_TIMEOUT_SECS,
              value_parser = clap::value_parser!(u64).range(1..=crate::stonith::AGENT_MAX_TIMEOUT_SECS))]
        timeout: u64,
        /// Print the cluster-glue external/vm-stonith device with legacy tokens instead (for
        /// migrating from pm_kvm_tools; no real protection).
        #[arg(long)]
        legacy: bool,
        /// With --legacy: file whose first line is the token password (mode 0600) [default: the
        /// original's public password].
        #[arg(long, value_name = "FILE", requires = "legacy")]
        password_file: Option<PathBuf>,
        /// With --legacy: key-derivation digest of the tokens.
        #[arg(long, value_enum, default_value_t = Md::Md5, requires = "legacy")]
        md: Md,
        /// Which syntax to print: `cibadmin` is a shell script of Pacemaker's own tools, for
        /// guests without crmsh or pcs.
        #[arg(long, value_enum, default_value_t = Syntax::All)]
        syntax: Syntax,
    },
    /// Print, for the guest cluster, the ocf:pm-kvm-tools:vm-client clone that mirrors host
    /// node attributes (answered by the hosts' vm-managerd) into the guest nodes' attributes,
    /// and an example location rule on them, in crm shell and pcs syntax and as cibadmin
    /// commands.
    ClientConfig {
        /// The host attributes to mirror, separated by spaces (the hosts' /etc/vm-manager.conf
        /// must expose them to the guests).
        #[arg(long, value_name = "NAMES", default_value = "default_ping_set")]
        attributes: String,
        /// The guest cluster resource the example rule keeps off an unhealthy host.
        #[arg(long, value_name = "RSC", default_value = "my-service")]
        resource: String,
        /// The converted value of the first attribute the rule avoids.
        #[arg(long, value_name = "VALUE", default_value = "red")]
        bad_value: String,
        /// Which syntax to print.
        #[arg(long, value_enum, default_value_t = Syntax::All)]
        syntax: Syntax,
    },
}

/// The syntaxes `stonith guest-config` and `stonith client-config` print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Syntax {
    /// Every section below.
    All,
    /// crm shell (`crm configure load update FILE`).
    Crm,
    /// pcs commands.
    Pcs,
    /// cibadmin and crm_attribute commands (a POSIX shell script).
    Cibadmin,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn help_names_every_exit_status_of_the_table() {
        // --help says them in one line, the man page from EXIT_STATUS: the two must agree
        let line = EXAMPLES.split("Exit status:").nth(1).unwrap_or_default();
        for (code, _) in crate::error::EXIT_STATUS {
            assert!(
                line.contains(&format!(" {code} ")) || line.contains(&format!("\n{code} ")),
                "{code} missing from: {line}"
            );
        }
        let e = Cli::try_parse_from(["vm-ctl", "--no-such-option"]).unwrap_err();
        assert_eq!(e.exit_code(), i32::from(crate::error::exit::USAGE));
    }

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn original_syntax_parses() {
        let cli =
            Cli::try_parse_from(["vm-ctl", "resource", "add", "d1,d2", "-a", "n1", "-m", "on"])
                .unwrap();
        let Command::Resource(ResourceCmd::Add {
            domains,
            node,
            migrate,
            ..
        }) = cli.command
        else {
            panic!("not add");
        };
        assert_eq!(domains.names(), ["d1", "d2"]);
        assert_eq!(node, "n1");
        assert_eq!(migrate, Some(OnOff::On));
        // options before the domain, as the original allowed
        Cli::try_parse_from(["vm-ctl", "resource", "add", "-a", "n1", "d1"]).unwrap();
        Cli::try_parse_from(["vm-ctl", "resource", "move", "d1", "-n", "n2"]).unwrap();
        Cli::try_parse_from(["vm-ctl", "location", "move", "-b", "n1"]).unwrap();
        Cli::try_parse_from(["vm-ctl", "location", "move", "d1"]).unwrap();
        Cli::try_parse_from(["vm-ctl", "location", "move"]).unwrap_err();
        Cli::try_parse_from(["vm-ctl", "resource", "list", "d1", "-n", "n1"]).unwrap_err();
        Cli::try_parse_from(["vm-ctl", "resource", "add", "d1", "-a", "n1", "-m", "maybe"])
            .unwrap_err();
    }

    #[test]
    fn wait_takes_an_optional_value() {
        let parse = |args: &[&str]| {
            let cli = Cli::try_parse_from(args).unwrap();
            match cli.command {
                Command::Resource(ResourceCmd::Start { wait, .. }) => wait.wait,
                _ => panic!("not start"),
            }
        };
        assert_eq!(parse(&["vm-ctl", "resource", "start", "d1"]), None);
        assert_eq!(
            parse(&["vm-ctl", "resource", "start", "d1", "--wait"]),
            Some(120)
        );
        assert_eq!(
            parse(&["vm-ctl", "resource", "start", "--wait=5", "d1"]),
            Some(5)
        );
        // `--wait d1` must not swallow the domain
        assert_eq!(
            parse(&["vm-ctl", "resource", "start", "--wait", "d1"]),
            Some(120)
        );
    }

    #[test]
    fn stonith_commands_parse() {
        let cli = Cli::try_parse_from([
            "vm-ctl",
            "stonith",
            "keygen",
            "web",
            "--members",
            "a,b",
            "--members",
            "c=n3",
        ])
        .unwrap();
        let Command::Stonith(StonithCmd::Keygen {
            cluster,
            members,
            fence,
        }) = cli.command
        else {
            panic!("not keygen");
        };
        assert_eq!(cluster, "web");
        assert_eq!(members, ["a,b", "c=n3"]);
        assert_eq!(
            fence.stonithd_config,
            std::path::Path::new(crate::stonith::DEFAULT_STONITHD_CONFIG)
        );
        let cli = Cli::try_parse_from(["vm-ctl", "stonith", "token", "g1"]).unwrap();
        let Command::Stonith(StonithCmd::Token { md, resource, .. }) = cli.command else {
            panic!("not token");
        };
        assert_eq!((md, resource), (Md::Md5, None));
        let cli = Cli::try_parse_from([
            "vm-ctl",
            "stonith",
            "guest-config",
            "web",
            "--members",
            "a",
            "--legacy",
            "--md",
            "sha256",
        ])
        .unwrap();
        let Command::Stonith(StonithCmd::GuestConfig {
            timeout,
            legacy,
            md,
            ..
        }) = cli.command
        else {
            panic!("not guest-config");
        };
        assert_eq!((timeout, legacy, md), (40, true, Md::Sha256));
        for bad in [
            &["vm-ctl", "stonith", "guest-config", "web"][..],
            &[
                "vm-ctl",
                "stonith",
                "guest-config",
                "web",
                "--members",
                "a",
                "--md",
                "md5",
            ],
            &[
                "vm-ctl",
                "stonith",
                "guest-config",
                "web",
                "--members",
                "a",
                "--timeout",
                "0",
            ],
            &["vm-ctl", "stonith", "token", "g1", "--md", "sha1"],
        ] {
            Cli::try_parse_from(bad).unwrap_err();
        }
        Cli::try_parse_from(["vm-ctl", "check", "--key-dir", "/k", "g1"]).unwrap();
    }

    #[test]
    fn domain_lists_are_split_and_deduplicated() {
        let l = DomainList {
            domains: vec!["b, a".into(), "b,,c".into()],
        };
        assert_eq!(l.names(), ["b", "a", "c"]);
    }
}
