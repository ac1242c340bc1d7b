//! Man pages, each generated from the one place its facts live:
//!
//! - the clap definitions of vm-ctl (every subcommand at every depth), vm-connectd,
//!   vm-stonithd and vm-managerd;
//! - vm-connect's usage text (it parses its arguments by hand, see its source);
//! - fence_vmstonith's metadata, which its options table drives;
//! - each OCF agent's `meta-data` and the cluster-glue plugin's `getinfo-*` output, by running
//!   the agents from `agents/` (the OCF ones source resource-agents' ocf-shellfuncs, and the
//!   VirtualDomain wrapper prints the stock agent's metadata: resource-agents must be installed).
//!
//! Pages carry no date, so that two builds of the same source give the same files.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command as Process;

use clap::CommandFactory;

/// The workspace version, in every page's footer.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// One generated page: its file name (`vm-ctl-resource-add.1`) and its roff source.
#[derive(Debug)]
pub struct Page {
    /// `NAME.SECTION`.
    pub file: String,
    /// The roff source.
    pub roff: String,
}

/// Escapes text for a roff text line: backslashes, and a leading `.` or `'` (which would
/// start a request).
fn esc(s: &str) -> String {
    let s = s.replace('\\', "\\e");
    if s.starts_with('.') || s.starts_with('\'') {
        format!("\\&{s}")
    } else {
        s
    }
}

/// Collapses whitespace runs (metadata descriptions are wrapped XML text).
fn flat(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn th(name: &str, section: &str, manual: &str) -> String {
    format!(".TH \"{name}\" \"{section}\" \"\" \"pm-kvm-tools {VERSION}\" \"{manual}\"\n")
}

fn see_also(out: &mut String, refs: &[&str]) {
    if refs.is_empty() {
        return;
    }
    out.push_str(".SH \"SEE ALSO\"\n");
    let items: Vec<String> = refs
        .iter()
        .map(|r| match r.split_once('(') {
            Some((n, s)) => format!("\\fB{}\\fR({s}", esc(n)),
            None => esc(r),
        })
        .collect();
    let _ = writeln!(out, "{}", items.join(",\n"));
}

fn exit_section(out: &mut String, codes: &[(u8, &str)]) {
    out.push_str(".SH \"EXIT STATUS\"\n");
    for (code, what) in codes {
        let _ = writeln!(out, ".TP\n\\fB{code}\\fR\n{}", esc(what));
    }
}

fn files_section(out: &mut String, files: &[(&str, &str)]) {
    out.push_str(".SH FILES\n");
    for (path, what) in files {
        let _ = writeln!(out, ".TP\n\\fI{}\\fR\n{}", esc(path), esc(what));
    }
}

/// Every page: vm-ctl's, the daemons', vm-connect's, the agents'.
pub fn pages(repo: &Path) -> Result<Vec<Page>, String> {
    let mut pages = Vec::new();
    clap_pages(
        &mut pages,
        vm_ctl::cli::Cli::command(),
        "1",
        vm_ctl::error::EXIT_STATUS,
        &["vm-stonithd(8)", "vm-connectd(8)"],
    )?;
    clap_pages(
        &mut pages,
        vm_connectd::cli::Cli::command(),
        "8",
        vm_connectd::cli::EXIT_STATUS,
        &[
            "vm-connect(1)",
            "vm-stonithd(8)",
            "ocf_pm-kvm-tools_vm-connectd(7)",
        ],
    )?;
    clap_pages(
        &mut pages,
        vm_stonithd::cli::Cli::command(),
        "8",
        vm_stonithd::cli::EXIT_STATUS,
        &[
            "vm-connectd(8)",
            "vm-ctl-stonith(1)",
            "ocf_pm-kvm-tools_vm-stonithd(7)",
            "fence_vmstonith(8)",
        ],
    )?;
    clap_pages(
        &mut pages,
        vm_managerd::cli::Cli::command(),
        "8",
        vm_managerd::cli::EXIT_STATUS,
        &["vm-connectd(8)", "ocf_pm-kvm-tools_vm-managerd(7)"],
    )?;
    pages.push(vm_connect_page()?);
    pages.push(fence_vmstonith_page()?);
    for agent in [
        "VirtualDomain",
        "vm-connectd",
        "vm-stonithd",
        "vm-managerd",
        "vm-client",
    ] {
        pages.push(ocf_page(repo, agent)?);
    }
    pages.push(stonith_plugin_page(repo)?);
    Ok(pages)
}

/// The man pages' extra sections per program (after clap's).
fn clap_extra(name: &str) -> Vec<(&'static str, &'static str)> {
    match name {
        "vm-ctl" => vec![(
            "/etc/vm-ctl.conf",
            "the configuration (--config names another)",
        )],
        "vm-connectd" => vec![
            (
                vm_proto::DEFAULT_SOCKET,
                "the local socket of clients and host modules (--socket)",
            ),
            (
                vm_proto::DEFAULT_HOST_SOCKET_DIR,
                "host mode: the guests' channel sockets (--sock-dir)",
            ),
            (
                "/dev/virtio-ports/vmconnectd",
                "guest mode: the port to the host (--port)",
            ),
        ],
        "vm-stonithd" => vec![
            (
                vm_fence::defaults::STONITHD_CONFIG,
                "which guest clusters may fence which guests (--config)",
            ),
            (
                vm_fence::defaults::KEY_DIR,
                "the guest clusters' keys (vm-ctl stonith keygen)",
            ),
            ("/run/vm-stonithd", "runtime files (--state-dir)"),
        ],
        "vm-managerd" => vec![
            (
                vm_managerd::rules::DEFAULT_RULES,
                "the rule file: which attributes guests may read, and their conversion (--config)",
            ),
            ("/run/vm-managerd", "runtime files (--state-dir)"),
        ],
        _ => Vec::new(),
    }
}

/// Pages of a clap command and of every subcommand at every depth (`vm-ctl-resource-add.1`),
/// each named as clap_mangen's SUBCOMMANDS section refers to it. `help` subcommands get no
/// page (`--help` says the same) and are not listed.
fn clap_pages(
    pages: &mut Vec<Page>,
    cmd: clap::Command,
    section: &str,
    exit: &[(u8, &str)],
    see: &[&str],
) -> Result<(), String> {
    let root = cmd.get_name().to_owned();
    let mut cmd = without_help(cmd);
    // propagates the global options (vm-ctl's --config, --dry-run, ...) into every subcommand,
    // so that each page lists every option its command accepts
    cmd.build();
    let mut todo: Vec<(Vec<String>, clap::Command)> = vec![(vec![root.clone()], cmd)];
    while let Some((path, cmd)) = todo.pop() {
        let name = path.join("-");
        for sub in cmd.get_subcommands() {
            let mut p = path.clone();
            p.push(sub.get_name().to_owned());
            todo.push((p, sub.clone()));
        }
        let page = cmd.clone().name(&name).bin_name(path.join(" "));
        let mut buf = Vec::new();
        clap_mangen::Man::new(page)
            .section(section)
            .source(format!("pm-kvm-tools {VERSION}"))
            .render(&mut buf)
            .map_err(|e| format!("rendering {name}: {e}"))?;
        let mut roff = String::from_utf8(buf).map_err(|e| format!("{name}: {e}"))?;
        let mut refs: Vec<String> = Vec::new();
        if path.len() == 1 {
            if !exit.is_empty() {
                exit_section(&mut roff, exit);
            }
            let files = clap_extra(&name);
            if !files.is_empty() {
                files_section(&mut roff, &files);
            }
            refs.extend(see.iter().map(|s| (*s).to_owned()));
        } else {
            // the parent pages up to the program's
            for depth in (1..path.len()).rev() {
                refs.push(format!("{}({section})", path[..depth].join("-")));
            }
        }
        let refs: Vec<&str> = refs.iter().map(String::as_str).collect();
        see_also(&mut roff, &refs);
        pages.push(Page {
            file: format!("{name}.{section}"),
            roff,
        });
    }
    Ok(())
}

/// The command with its `help` subcommands turned off at every depth.
fn without_help(cmd: clap::Command) -> clap::Command {
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_owned())
        .collect();
    let mut cmd = cmd.disable_help_subcommand(true);
    for n in names {
        cmd = cmd.mut_subcommand(n, without_help);
    }
    cmd
}

/// A usage text's paragraphs: the first one is the summary, `Usage:`/`Options:` blocks list
/// lines, and `Exit status:` is one paragraph.
#[derive(Debug, Default)]
struct Usage {
    summary: String,
    synopsis: Vec<String>,
    options: Vec<(String, String)>,
    exit: String,
}

/// Parses a usage text of the shape of vm-connect's and fence_vmstonith's `--help`.
fn parse_usage(text: &str) -> Usage {
    let mut u = Usage::default();
    for para in text.split("\n\n") {
        let mut lines = para.lines();
        let Some(first) = lines.next() else { continue };
        let block = match first.trim_end() {
            "Usage:" => "usage",
            "Options:" => "options",
            _ if first.starts_with("Exit status:") => {
                u.exit = flat(first.trim_start_matches("Exit status:"));
                for l in lines {
                    u.exit.push(' ');
                    u.exit.push_str(l.trim());
                }
                continue;
            }
            _ if u.summary.is_empty() => {
                u.summary = flat(para);
                continue;
            }
            _ => continue,
        };
        for l in lines {
            let indent = l.len() - l.trim_start().len();
            match block {
                "usage" => u.synopsis.push(l.trim().to_owned()),
                _ if indent <= 2 && l.trim_start().starts_with('-') => {
                    // "  --socket PATH     what": the option, then two or more spaces
                    let t = l.trim();
                    let (opt, what) = t.split_once("  ").unwrap_or((t, ""));
                    u.options
                        .push((opt.trim().to_owned(), what.trim().to_owned()));
                }
                _ => {
                    if let Some(last) = u.options.last_mut() {
                        if !last.1.is_empty() {
                            last.1.push(' ');
                        }
                        last.1.push_str(l.trim());
                    }
                }
            }
        }
    }
    u
}

/// vm-connect(1), from the usage text `vm-connect --help` prints.
fn vm_connect_page() -> Result<Page, String> {
    use vm_connectd::connect_cli::USAGE;
    let u = parse_usage(USAGE);
    if u.synopsis.is_empty() || u.options.is_empty() || u.exit.is_empty() {
        return Err(
            "vm-connect's usage text no longer has Usage:, Options: and Exit status:".into(),
        );
    }
    let mut r = th("vm-connect", "1", "pm-kvm-tools");
    let _ = writeln!(
        r,
        ".SH NAME\nvm-connect \\- {}",
        esc(&lower_first(&u.summary))
    );
    r.push_str(".SH SYNOPSIS\n");
    for s in &u.synopsis {
        // "vm-connect [OPTIONS] ping              what it does"
        let (cmd, what) = s.split_once("  ").unwrap_or((s, ""));
        let _ = writeln!(r, ".TP\n\\fB{}\\fR\n{}", esc(cmd.trim()), esc(what.trim()));
    }
    let _ = writeln!(
        r,
        ".SH DESCRIPTION\n{}\nThe answer's body goes to standard output, one line.\n\
         Shell fence agents in guests (external/vm-stonith) and operators use it.",
        esc(&u.summary)
    );
    r.push_str(".SH OPTIONS\n");
    for (opt, what) in &u.options {
        let _ = writeln!(r, ".TP\n\\fB{}\\fR\n{}", esc(opt), esc(what));
    }
    let _ = writeln!(r, ".SH \"EXIT STATUS\"\n{}", esc(&u.exit));
    see_also(
        &mut r,
        &[
            "vm-connectd(8)",
            "fence_vmstonith(8)",
            "stonith_external_vm-stonith(7)",
        ],
    );
    Ok(Page {
        file: "vm-connect.1".into(),
        roff: r,
    })
}

fn lower_first(s: &str) -> String {
    let s = s.trim_end_matches('.');
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

/// fence_vmstonith(8), from its metadata (made from its options table) and its `--help`.
fn fence_vmstonith_page() -> Result<Page, String> {
    let xml = fence_vmstonith::metadata::metadata();
    let meta = Metadata::parse(&xml)?;
    let usage = parse_usage(&fence_vmstonith::metadata::usage());
    let mut r = th("fence_vmstonith", "8", "pm-kvm-tools");
    let _ = writeln!(
        r,
        ".SH NAME\nfence_vmstonith \\- {}",
        esc(&lower_first(&meta.shortdesc))
    );
    r.push_str(".SH SYNOPSIS\n");
    for s in &usage.synopsis {
        let _ = writeln!(r, "\\fB{}\\fR\n.br", esc(s));
    }
    let _ = writeln!(r, ".SH DESCRIPTION\n{}", esc(&meta.longdesc));
    r.push_str(".SH OPTIONS\n");
    r.push_str(
        "Each option is given on the command line or, when there are no arguments, as a \
         name=value line on standard input (the name in parentheses).\n",
    );
    for p in &meta.params {
        let spelled = match &p.getopt {
            Some(g) => format!("\\fB{}\\fR ({})", esc(g), esc(&p.name)),
            None => format!("\\fB{}\\fR", esc(&p.name)),
        };
        let _ = writeln!(r, ".TP\n{spelled}\n{}", esc(&p.describe()));
    }
    let _ = writeln!(
        r,
        ".PP\n{}",
        esc(&fence_vmstonith::metadata::ignored_text())
    );
    r.push_str(".SH ACTIONS\n");
    let actions: Vec<String> = meta.actions.iter().map(|a| a.name.clone()).collect();
    let _ = writeln!(
        r,
        "{} (\\fBreset\\fR is an alias of \\fBreboot\\fR).",
        esc(&actions.join(", "))
    );
    let _ = writeln!(r, ".SH \"EXIT STATUS\"\n{}", esc(&usage.exit));
    files_section(
        &mut r,
        &[(
            fence_vmstonith::options::DEFAULT_KEY_FILE,
            "the guest cluster's key (mode 0600), made on the host by vm-ctl stonith keygen",
        )],
    );
    see_also(
        &mut r,
        &[
            "vm-connectd(8)",
            "vm-connect(1)",
            "stonith_external_vm-stonith(7)",
        ],
    );
    Ok(Page {
        file: "fence_vmstonith.8".into(),
        roff: r,
    })
}

/// One parameter of an agent's metadata.
#[derive(Debug)]
struct Param {
    name: String,
    shortdesc: String,
    longdesc: String,
    kind: String,
    default: Option<String>,
    required: bool,
    deprecated: bool,
    getopt: Option<String>,
}

impl Param {
    /// "Short. Long (type, default x; required)".
    fn describe(&self) -> String {
        let mut d = self.shortdesc.trim_end_matches('.').to_owned();
        if !self.longdesc.is_empty() && self.longdesc.trim_end_matches('.') != d {
            if !d.is_empty() {
                d.push_str(". ");
            }
            d.push_str(&self.longdesc);
        }
        if !d.ends_with('.') {
            d.push('.');
        }
        let mut facts = vec![self.kind.clone()];
        if let Some(def) = self.default.as_deref().filter(|v| !v.is_empty()) {
            facts.push(format!("default {def}"));
        }
        if self.required {
            facts.push("required".into());
        }
        if self.deprecated {
            facts.push("deprecated".into());
        }
        let _ = write!(d, " [{}]", facts.join(", "));
        d
    }
}

/// One action of an agent's metadata.
#[derive(Debug)]
struct Action {
    name: String,
    attrs: Vec<(String, String)>,
}

/// The parts of OCF / fence-agents metadata a man page shows.
#[derive(Debug, Default)]
struct Metadata {
    shortdesc: String,
    longdesc: String,
    params: Vec<Param>,
    actions: Vec<Action>,
}

impl Metadata {
    fn parse(xml: &str) -> Result<Metadata, String> {
        // the OCF agents declare a DTD, which roxmltree refuses unless allowed
        let opts = roxmltree::ParsingOptions {
            allow_dtd: true,
            ..roxmltree::ParsingOptions::default()
        };
        let doc = roxmltree::Document::parse_with_options(xml, opts)
            .map_err(|e| format!("metadata is not XML: {e}"))?;
        let root = doc.root_element();
        let text = |n: roxmltree::Node<'_, '_>, tag: &str| -> String {
            n.children()
                .find(|c| c.has_tag_name(tag))
                .and_then(|c| c.text())
                .map(flat)
                .unwrap_or_default()
        };
        let params_node = if root.has_tag_name("parameters") {
            Some(root)
        } else {
            root.children().find(|c| c.has_tag_name("parameters"))
        };
        let mut m = Metadata {
            shortdesc: root
                .attribute("shortdesc")
                .map(flat)
                .unwrap_or_else(|| text(root, "shortdesc")),
            longdesc: text(root, "longdesc"),
            ..Metadata::default()
        };
        for p in params_node
            .into_iter()
            .flat_map(|n| n.children())
            .filter(|c| c.has_tag_name("parameter"))
        {
            let content = p.children().find(|c| c.has_tag_name("content"));
            m.params.push(Param {
                name: p.attribute("name").unwrap_or_default().to_owned(),
                shortdesc: text(p, "shortdesc"),
                longdesc: text(p, "longdesc"),
                kind: content
                    .and_then(|c| c.attribute("type"))
                    .unwrap_or("string")
                    .to_owned(),
                default: content
                    .and_then(|c| c.attribute("default"))
                    .map(str::to_owned),
                required: p.attribute("required") == Some("1"),
                deprecated: p.attribute("deprecated") == Some("1"),
                getopt: p
                    .children()
                    .find(|c| c.has_tag_name("getopt"))
                    .and_then(|g| g.attribute("mixed"))
                    .map(str::to_owned),
            });
        }
        if let Some(actions) = root.children().find(|c| c.has_tag_name("actions")) {
            for a in actions.children().filter(|c| c.has_tag_name("action")) {
                m.actions.push(Action {
                    name: a.attribute("name").unwrap_or_default().to_owned(),
                    attrs: a
                        .attributes()
                        .filter(|at| at.name() != "name")
                        .map(|at| (at.name().to_owned(), at.value().to_owned()))
                        .collect(),
                });
            }
        }
        if m.params.is_empty() {
            return Err("metadata without parameters".into());
        }
        Ok(m)
    }

    fn render_params(&self, r: &mut String) {
        for p in &self.params {
            let _ = writeln!(r, ".TP\n\\fB{}\\fR\n{}", esc(&p.name), esc(&p.describe()));
        }
    }
}

/// Runs an agent script with arguments; returns its standard output.
fn run_agent(script: &Path, args: &[&str]) -> Result<String, String> {
    let out = Process::new(script)
        .args(args)
        .env("OCF_ROOT", "/usr/lib/ocf")
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} {} failed ({}): {} (is resource-agents installed?)",
            script.display(),
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    String::from_utf8(out.stdout).map_err(|e| format!("{}: {e}", script.display()))
}

/// The comment block at the top of a script (after `#!`), as paragraphs of text.
fn header_comment(script: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(script)
        .map_err(|e| format!("cannot read {}: {e}", script.display()))?;
    let mut paras = vec![String::new()];
    for line in text.lines().skip_while(|l| l.starts_with("#!")) {
        let Some(c) = line.strip_prefix('#') else {
            break;
        };
        let c = c.trim();
        if c.is_empty() {
            paras.push(String::new());
        } else if let Some(last) = paras.last_mut() {
            if !last.is_empty() {
                last.push(' ');
            }
            last.push_str(c);
        }
    }
    Ok(paras.into_iter().filter(|p| !p.is_empty()).collect())
}

/// ocf_pm-kvm-tools_AGENT(7), from the agent's `meta-data`.
fn ocf_page(repo: &Path, agent: &str) -> Result<Page, String> {
    let script = repo.join("agents/ocf").join(agent);
    let meta = Metadata::parse(&run_agent(&script, &["meta-data"])?)?;
    let name = format!("ocf_pm-kvm-tools_{agent}");
    let mut r = th(&name, "7", "OCF resource agents");
    let _ = writeln!(
        r,
        ".SH NAME\n{} \\- {}",
        esc(&name),
        esc(&lower_first(&meta.shortdesc))
    );
    let _ = writeln!(
        r,
        ".SH SYNOPSIS\n\\fBocf:pm-kvm-tools:{agent}\\fR\n.br\n\
         /usr/lib/ocf/resource.d/pm-kvm-tools/{agent} \\fIaction\\fR"
    );
    r.push_str(".SH DESCRIPTION\n");
    let mut see = vec!["vm-ctl(1)"];
    if agent == "VirtualDomain" {
        // what the wrapper adds is in its own header; the rest is the stock agent's metadata
        for p in header_comment(&script)? {
            let _ = writeln!(r, "{}\n.PP", esc(&p));
        }
        let _ = writeln!(
            r,
            "The stock agent's description:\n.PP\n{}",
            esc(&meta.longdesc)
        );
        see.push("ocf_heartbeat_VirtualDomain(7)");
    } else {
        let _ = writeln!(r, "{}", esc(&meta.longdesc));
        see.push(match agent {
            "vm-connectd" => "vm-connectd(8)",
            "vm-managerd" => "vm-managerd(8)",
            "vm-client" => "vm-connect(1)",
            _ => "vm-stonithd(8)",
        });
    }
    r.push_str(".SH PARAMETERS\n");
    meta.render_params(&mut r);
    r.push_str(".SH ACTIONS\n");
    for a in &meta.actions {
        let attrs: Vec<String> = a.attrs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = writeln!(
            r,
            ".TP\n\\fB{}\\fR\n{}",
            esc(&a.name),
            esc(&attrs.join(" "))
        );
    }
    see_also(&mut r, &see);
    Ok(Page {
        file: format!("{name}.7"),
        roff: r,
    })
}

/// stonith_external_vm-stonith(7), from the plugin's `getinfo-*` output and its header's exit
/// statuses.
fn stonith_plugin_page(repo: &Path) -> Result<Page, String> {
    let script = repo.join("agents/stonith/external/vm-stonith");
    let mut meta = Metadata::parse(&run_agent(&script, &["getinfo-xml"])?)?;
    meta.shortdesc = flat(&run_agent(&script, &["getinfo-devname"])?);
    meta.longdesc = flat(&run_agent(&script, &["getinfo-devdescr"])?);
    let header = header_comment(&script)?;
    let exit = header
        .iter()
        .find_map(|p| p.strip_prefix("Exit status:").map(str::to_owned))
        .ok_or("external/vm-stonith's header has no Exit status: line")?;
    let environment = header
        .iter()
        .find_map(|p| p.strip_prefix("Environment for tests and unusual installs:"))
        .ok_or("external/vm-stonith's header has no Environment for tests ...: paragraph")?;
    let name = "stonith_external_vm-stonith";
    let mut r = th(name, "7", "cluster-glue STONITH plugins");
    let _ = writeln!(
        r,
        ".SH NAME\n{name} \\- {}",
        esc(&lower_first(&meta.shortdesc))
    );
    let _ = writeln!(
        r,
        ".SH SYNOPSIS\n\\fBstonith:external/vm-stonith\\fR\n.br\n\
         /usr/lib/stonith/plugins/external/vm-stonith \\fIoperation\\fR [\\fInode\\fR]"
    );
    let _ = writeln!(
        r,
        ".SH DESCRIPTION\n{}\n.PP\nEntries of the form name or name:DOMAIN are fenced with \
         \\fBfence_vmstonith\\fR(8); legacy name:TOKEN entries send the original request with \
         \\fBvm-connect\\fR(1).",
        esc(&meta.longdesc)
    );
    r.push_str(".SH PARAMETERS\n");
    meta.render_params(&mut r);
    let _ = writeln!(
        r,
        ".SH ENVIRONMENT\nBesides the parameters, for tests and unusual installs: {}",
        esc(environment.trim())
    );
    let _ = writeln!(r, ".SH \"EXIT STATUS\"\n{}", esc(exit.trim()));
    see_also(&mut r, &["fence_vmstonith(8)", "vm-connect(1)"]);
    Ok(Page {
        file: format!("{name}.7"),
        roff: r,
    })
}

#[cfg(test)]
/// The pages another page refers to: `\fBname\fR(section)` and SEE ALSO entries.
pub fn references(roff: &str) -> Vec<String> {
    let mut refs = Vec::new();
    let mut rest = roff;
    while let Some(i) = rest.find("\\fR(") {
        let before = &rest[..i];
        let name_start = before.rfind("\\fB").map(|j| j + 3);
        let after = &rest[i + 4..];
        if let (Some(s), Some(end)) = (name_start, after.find(')')) {
            let sec = &after[..end];
            if sec.len() == 1 && sec.chars().all(|c| c.is_ascii_digit()) {
                refs.push(format!("{}.{sec}", before[s..].replace("\\-", "-")));
            }
        }
        rest = after;
    }
    // clap_mangen's SUBCOMMANDS entries: "vm-ctl\-resource(1)" on a line of its own
    for line in roff.lines() {
        let l = line
            .replace("\\-", "-")
            .replace("\\fB", "")
            .replace("\\fR", "")
            .trim_end_matches(',')
            .to_owned();
        if let Some((n, s)) = l.strip_suffix(')').and_then(|l| l.split_once('(')) {
            if !n.contains(' ') && s.len() == 1 && s.chars().all(|c| c.is_ascii_digit()) {
                refs.push(format!("{n}.{s}"));
            }
        }
    }
    refs
}

/// Writes the pages into `dir`; returns their paths.
pub fn write(pages: &[Page], dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for p in pages {
        let path = dir.join(&p.file);
        std::fs::write(&path, &p.roff)?;
        files.push(path);
    }
    Ok(files)
}
