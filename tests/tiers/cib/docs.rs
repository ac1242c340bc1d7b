//! The command lines README.md and docs/operations.md show, run against the programs they
//! name, so that the docs cannot drift from the programs again.
//!
//! Every command line of the project's programs (in code blocks and inline code) is checked
//! twice:
//!
//! - its subcommands and options: `PROGRAM SUBCOMMAND... --help` must succeed (an unknown
//!   subcommand fails it) and list every option the line uses;
//! - a line that names no placeholder (`<dom>`, `DOM`, `[...]`, `a|b`) and is a vm-ctl command is
//!   run for real, with `--dry-run`, on a CIB file holding the guests the docs use; its parser
//!   must know every option, subcommand and value it gives (`status --watch`, which runs until
//!   interrupted, must print its first screen and exit 0 on SIGINT).
//!
//! And the OCF agent's `daemon` parameter, which the docs name, is the agent's.

use std::time::Instant;

use vm_common::process::{Cmd, Output};
use vm_tests::vmctl::VmCtlBed;
use vm_tests::{evidence, project_bin, repo_dir};

/// The documents whose command lines are checked.
const DOCS: &[&str] = &["README.md", "docs/operations.md"];

/// The project's programs: lines that start with one of these are checked.
const PROGRAMS: &[&str] = &[
    "vm-ctl",
    "vm-connectd",
    "vm-connect",
    "vm-stonithd",
    "fence_vmstonith",
];

/// One command line a document shows.
#[derive(Debug)]
struct Shown {
    doc: &'static str,
    text: String,
}

/// The command lines of `text`: each line of a fenced code block (continuations joined,
/// comments cut, `;` and `&&` separating commands), and each inline code span (which may run
/// over a line break).
fn command_lines(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut prose = String::new();
    let mut in_block = false;
    let mut pending = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_block = !in_block;
            prose.push('\n');
            continue;
        }
        if !in_block {
            prose.push_str(line);
            prose.push('\n');
            continue;
        }
        // a shell line: a trailing backslash continues it
        let line = line.trim_end();
        match line.strip_suffix('\\') {
            Some(head) => {
                pending.push_str(head);
                pending.push(' ');
            }
            None => {
                pending.push_str(line);
                let whole = std::mem::take(&mut pending);
                let code = whole.split(" #").next().unwrap_or_default();
                for part in code.split(';').flat_map(|p| p.split("&&")) {
                    out.push(part.trim().to_owned());
                }
            }
        }
    }
    let prose = prose.replace('\n', " ");
    let mut spans = prose.split('`');
    spans.next();
    while let Some(code) = spans.next() {
        for part in code.split(';') {
            out.push(part.trim().to_owned());
        }
        spans.next();
    }
    out
}

/// The words of a command line after any leading `NAME=value` environment settings; `None`
/// unless it runs one of [`PROGRAMS`].
fn program_words(line: &str) -> Option<Vec<String>> {
    let words: Vec<String> = line
        .split_whitespace()
        .skip_while(|w| {
            w.split_once('=').is_some_and(|(n, _)| {
                !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            })
        })
        .map(str::to_owned)
        .collect();
    PROGRAMS.contains(&words.first()?.as_str()).then_some(words)
}

/// The subcommand words at the start of a command line's arguments (plain lower-case words:
/// a placeholder or an option ends them).
fn subcommand_path(args: &[String]) -> Vec<String> {
    args.iter()
        .take_while(|w| {
            w.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                && w.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        })
        .cloned()
        .collect()
}

/// The options a command line uses, as `--name` or `-n`: brackets, values (`=x`), repetition
/// (`-v...`, `-vv`) stripped.
fn options_used(args: &[String]) -> Vec<String> {
    let mut opts = Vec::new();
    for w in args {
        let w = w.trim_start_matches('[').trim_end_matches([']', ',', '.']);
        if !w.starts_with('-') || w == "-" || w == "--" {
            continue;
        }
        let name = w.split(['=', '[']).next().unwrap_or(w);
        let name = if let Some(short) = name.strip_prefix('-').filter(|s| !s.starts_with('-')) {
            // -vv is -v twice
            match short.chars().next() {
                Some(c) if short.chars().all(|d| d == c) => format!("-{c}"),
                _ => name.to_owned(),
            }
        } else {
            name.to_owned()
        };
        if name.len() > 1 && !opts.contains(&name) {
            opts.push(name);
        }
    }
    opts
}

/// Whether `help` names `opt` as a whole option (not as the prefix of a longer one).
fn help_names(help: &str, opt: &str) -> bool {
    help.match_indices(opt).any(|(i, _)| {
        let before = help[..i].chars().next_back();
        let after = help[i + opt.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-')
            && !after.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    })
}

/// Whether a command line names a placeholder rather than a value.
fn has_placeholder(args: &[String]) -> bool {
    args.iter().any(|w| {
        w.contains(['<', '[', '|', '.'])
            || (w.len() > 1
                && w.chars()
                    .all(|c| c.is_ascii_uppercase() || c == '_' || c == ',' || c == '='))
    })
}

/// `text` without its log-message sections (their lines quote what a program prints, which may
/// start with its name).
fn without_log_sections(text: &str) -> String {
    let mut out = String::new();
    let mut skipping = false;
    for line in text.lines() {
        if line.starts_with('#') {
            skipping = line.contains("Log lines");
        }
        if !skipping {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn shown() -> Vec<Shown> {
    let mut all = Vec::new();
    for doc in DOCS {
        let text = std::fs::read_to_string(repo_dir().join(doc)).unwrap();
        for line in command_lines(&without_log_sections(&text)) {
            if program_words(&line).is_some() {
                all.push(Shown { doc, text: line });
            }
        }
    }
    all
}

fn run(cmd: &Cmd) -> Output {
    cmd.run()
        .unwrap_or_else(|e| panic!("`{}`: {e}", cmd.display()))
}

/// A command line the parser does not know: an unknown option or subcommand, or a value it
/// refuses, in clap's words. (A prose mention of a command without its required arguments,
/// `vm-ctl stonith guest-config`, is a reference, not a wrong command line.)
fn is_unknown_usage(out: &Output) -> bool {
    let err = out.stderr_text();
    err.contains("unexpected argument")
        || err.contains("unrecognized subcommand")
        || err.contains("invalid value")
}

#[test]
fn the_parsers_of_this_test_read_what_the_docs_write() {
    let lines = command_lines(
        "text `vm-ctl check\n[<dom>...]` more\n```\nvm-ctl stonith keygen web \\\n    --members a,b  # why\nA=1 vm-stonithd --check; ls\n```\n",
    );
    assert_eq!(
        lines,
        [
            "vm-ctl stonith keygen web      --members a,b",
            "A=1 vm-stonithd --check",
            "ls",
            "vm-ctl check [<dom>...]",
        ]
    );
    let w = program_words("CIB_file=/x vm-ctl resource add <dom> -a n1 [-m on|off] -vv").unwrap();
    assert_eq!(subcommand_path(&w[1..]), ["resource", "add"]);
    assert_eq!(options_used(&w[1..]), ["-a", "-m", "-v"]);
    assert!(program_words("ls -l").is_none());
    assert!(help_names("  -a, --active-node <NODE>", "--active-node"));
    assert!(!help_names("  --active-node-x", "--active-node"));
    assert!(!help_names("  --no-wait", "--wait"));
    assert!(has_placeholder(&w[1..]));
}

#[test]
#[ignore = "tier cib: needs Pacemaker's tools"]
fn every_command_line_in_the_docs_is_accepted_by_its_program() {
    let t0 = Instant::now();
    let all = shown();
    assert!(all.len() > 40, "only {} command lines found", all.len());
    let mut problems = Vec::new();
    for s in &all {
        let words = program_words(&s.text).unwrap();
        let args = &words[1..];
        let path = subcommand_path(args);
        let cmd = Cmd::new(project_bin(&words[0])).args(&path).arg("--help");
        let out = run(&cmd);
        if !out.success() {
            problems.push(format!(
                "{}: `{}`: `{}` fails: {}",
                s.doc,
                s.text,
                cmd.display(),
                out.stderr_text().trim()
            ));
            continue;
        }
        let help = out.stdout_text();
        for opt in options_used(args) {
            if !help_names(&help, &opt) {
                problems.push(format!(
                    "{}: `{}`: {opt} is not an option of `{} {}`",
                    s.doc,
                    s.text,
                    words[0],
                    path.join(" ")
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    evidence(
        "cib",
        t0,
        format!(
            "docs: {} command lines of README.md and operations.md accepted by their programs",
            all.len()
        ),
    );
}

#[test]
#[ignore = "tier cib: needs Pacemaker's tools"]
fn the_docs_concrete_vm_ctl_lines_run_on_a_cib_file() {
    let t0 = Instant::now();
    // the guests operations.md's examples use, added and started
    let bed = VmCtlBed::new();
    for dom in ["web1", "web2"] {
        bed.domain(dom);
    }
    bed.ok(&["resource", "add", "web1,web2", "-a", "node1"]);
    bed.ok(&["resource", "start", "web1"]);
    let keys = tempfile::tempdir().unwrap();
    let mut ran = Vec::new();
    for s in shown() {
        let words = program_words(&s.text).unwrap();
        // (the program's bare name is not a command line)
        if words[0] != "vm-ctl" || words.len() == 1 || has_placeholder(&words[1..]) {
            continue;
        }
        // a command group named in prose (`vm-ctl stonith`) is no command line to run
        let path = subcommand_path(&words[1..]);
        let help = run(&Cmd::new(project_bin("vm-ctl")).args(&path).arg("--help"));
        if help.stdout_text().contains("\nCommands:\n") {
            continue;
        }
        if path == ["status"] && words.iter().any(|w| w == "--watch") {
            // runs until interrupted: its first screen, then SIGINT must end it with exit 0
            watch_until_interrupted(&bed, &words[1..]);
            ran.push(s.text);
            continue;
        }
        let cmd = bed
            .cmd(&["--dry-run"])
            .args(&words[1..])
            .env("VM_CTL_KEY_DIR", keys.path())
            .env("VM_STONITHD_CONFIG", keys.path().join("vm-stonithd.toml"));
        let out = run(&cmd);
        assert!(
            !is_unknown_usage(&out),
            "{}: `{}` is refused as unknown usage (`{}`, exit {:?}):\n{}",
            s.doc,
            s.text,
            cmd.display(),
            out.code(),
            out.stderr_text()
        );
        ran.push(s.text);
    }
    println!("ran with --dry-run: {ran:#?}");
    assert!(ran.len() >= 4, "only {ran:?} ran");
    evidence(
        "cib",
        t0,
        format!(
            "docs: {} concrete vm-ctl lines run with --dry-run on a CIB file",
            ran.len()
        ),
    );
}

/// Runs `vm-ctl ARGS` (a `status --watch` line) on the bed until it has printed its first
/// screen, then interrupts it as Ctrl-C does: it must have printed something and exit 0.
fn watch_until_interrupted(bed: &VmCtlBed, args: &[String]) {
    use std::io::Read as _;
    let mut child = std::process::Command::new(project_bin("vm-ctl"))
        .arg("--config")
        .arg(bed.config_path())
        .args(args)
        .env("CIB_file", bed.cib.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut first = [0u8; 64];
    let n = out.read(&mut first).unwrap();
    assert!(n > 0, "`vm-ctl {}` printed nothing", args.join(" "));
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let t = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(
            t.elapsed() < std::time::Duration::from_secs(20),
            "`vm-ctl {}` still runs after SIGINT",
            args.join(" ")
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0), "`vm-ctl {}`", args.join(" "));
}

/// The OCF agent, run as Pacemaker runs it.
fn ocf_agent(name: &str, action: &str, params: &[(&str, &str)]) -> Output {
    let mut cmd = Cmd::new(repo_dir().join("agents/ocf").join(name))
        .arg(action)
        .env("OCF_ROOT", "/usr/lib/ocf");
    for (k, v) in params {
        cmd = cmd.env(format!("OCF_RESKEY_{k}"), v);
    }
    run(&cmd)
}

#[test]
#[ignore = "tier cib: needs Pacemaker's tools"]
fn the_ocf_daemon_parameter_is_documented_and_checked() {
    let t0 = Instant::now();
    // by its own name: the parameter is in the metadata, and only the two daemons are taken
    let meta = ocf_agent("vm-daemon", "meta-data", &[]);
    assert!(meta.success());
    assert!(
        meta.stdout_text().contains(r#"<parameter name="daemon""#),
        "{}",
        meta.stdout_text()
    );
    let stonithd = ocf_agent("vm-daemon", "meta-data", &[("daemon", "vm-stonithd")]);
    assert!(
        stonithd
            .stdout_text()
            .contains(r#"<parameter name="config""#)
    );
    let bad = ocf_agent("vm-daemon", "validate-all", &[("daemon", "rm")]);
    assert_eq!(
        bad.code(),
        Some(6),
        "OCF_ERR_CONFIGURED: {}",
        bad.stderr_text()
    );
    // by a daemon's name: the name says which, and the parameter is not offered
    let connectd = ocf_agent("vm-connectd", "meta-data", &[]);
    assert!(!connectd.stdout_text().contains(r#"name="daemon""#));
    evidence(
        "cib",
        t0,
        "OCF vm-daemon: daemon parameter in its metadata; daemon=rm refused (6)",
    );
}
