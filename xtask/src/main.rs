//! `cargo xtask`: project tasks that are not part of any product binary.
//!
//! ```text
//! cargo xtask assets [DIR]    man pages of every binary and agent, and bash/zsh/fish
//!                             completions of vm-ctl, vm-connectd, vm-stonithd and
//!                             vm-managerd, generated
//!                             from the programs' own definitions (default DIR: target/assets;
//!                             see [`man`])
//! cargo xtask guest-bins      the guest-side binaries, static, in target/guest-bins (see
//!                             [`guest_bins`])
//! cargo xtask deb             the Debian packages pm-kvm-tools and pm-kvm-tools-guest, in
//!                             target/debian, checked by lintian (see [`deb`])
//! ```

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;

mod deb;
mod man;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match (args.first().map(String::as_str), args.len()) {
        (Some("assets"), 1 | 2) => {
            let dir = args
                .get(1)
                .map_or_else(|| PathBuf::from("target/assets"), PathBuf::from);
            assets(&repo_root(), &dir)
        }
        (Some("guest-bins"), 1) => guest_bins(),
        (Some("deb"), 1) => deb::deb(&repo_root()),
        _ => {
            eprintln!("usage: cargo xtask assets [DIR] | cargo xtask guest-bins | cargo xtask deb");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(files) => {
            for f in files {
                println!("{}", f.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("xtask {}: {e}", args.first().map_or("", String::as_str));
            ExitCode::FAILURE
        }
    }
}

/// The workspace root (this crate's parent directory).
fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The programs whose shell completions are generated: the clap ones.
fn completion_commands() -> [clap::Command; 4] {
    [
        vm_ctl::cli::Cli::command(),
        vm_connectd::cli::Cli::command(),
        vm_stonithd::cli::Cli::command(),
        vm_managerd::cli::Cli::command(),
    ]
}

/// Writes every man page and the shell completions into `dir` (completions under
/// clap_complete's names: `vm-ctl.bash`, `_vm-ctl`, `vm-ctl.fish`); returns the files.
fn assets(repo: &Path, dir: &Path) -> Result<Vec<PathBuf>, String> {
    let io = |e: std::io::Error| format!("{}: {e}", dir.display());
    std::fs::create_dir_all(dir).map_err(io)?;
    let pages = man::pages(repo)?;
    let mut files = man::write(&pages, dir).map_err(io)?;
    for mut cmd in completion_commands() {
        let name = cmd.get_name().to_owned();
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let file = clap_complete::generate_to(shell, &mut cmd, &name, dir).map_err(io)?;
            if shell == Shell::Bash {
                let script = std::fs::read_to_string(&file).map_err(io)?;
                std::fs::write(&file, fix_bash_completion(&script, &name)).map_err(io)?;
            }
            files.push(file);
        }
    }
    Ok(files)
}

/// Repairs clap_complete's bash script for a program whose name has a hyphen.
///
/// The script walks the words typed so far into a state named from the program and each
/// subcommand (`vm__ctl__subcmd__resource`), then completes by matching that state against one
/// `case` arm per command. clap_complete (4.6.12 still) names the arms with the hyphen of the
/// program's name escaped like a subcommand separator (`vm__subcmd__ctl__subcmd__resource`), so
/// no arm below the top level ever matches and `vm-ctl resource <TAB>` completes nothing
/// (clap-rs/clap#6421). The arms are renamed to the states the walk produces; a script without
/// the mismatch is returned unchanged.
fn fix_bash_completion(script: &str, bin: &str) -> String {
    let state = bin.replace('-', "__");
    let broken = bin.replace('-', "__subcmd__");
    if state == broken {
        return script.to_owned();
    }
    script.replace(
        &format!("{broken}__subcmd__"),
        &format!("{state}__subcmd__"),
    )
}

/// Where [`guest_bins`] puts its results, under the workspace's `target/`.
const GUEST_BINS_DIR: &str = "guest-bins";

/// One guest-side binary: which package and target, and the flags of its final link.
struct GuestBin {
    package: &'static str,
    bin: &'static str,
    target: &'static str,
    /// Extra `rustc` flags for the binary's own crate only (`cargo rustc -- FLAGS`), so the
    /// dependencies, shared with the other binaries, are built once.
    link_flags: &'static [&'static str],
    /// Link OpenSSL's static libcrypto (Debian's libssl-dev ships it).
    static_openssl: bool,
}

/// The guest-side binaries and how each is linked.
///
/// All are static: a guest needs nothing installed but them. The two short-lived tools that
/// run for every request (vm-connect, and the fence agent that Pacemaker's fencer starts for
/// every status, monitor and fence) are also linked at a fixed address (non-PIE): under QEMU's
/// emulation (TCG), translated code is reused across processes only when it sits at the same
/// address, and a randomised (PIE, ASLR) load makes every start translate the program, and
/// OpenSSL's initialisation, again: 3-5 times slower (docs/benchmarks.md). The long-running
/// guest daemon, which reads the channel, keeps PIE and ASLR (docs/security.md weighs this).
const GUEST_BINS: &[GuestBin] = &[
    GuestBin {
        package: "vm-connectd",
        bin: "vm-connectd",
        target: "x86_64-unknown-linux-musl",
        link_flags: &[],
        static_openssl: false,
    },
    GuestBin {
        package: "vm-connectd",
        bin: "vm-connect",
        target: "x86_64-unknown-linux-musl",
        link_flags: &["-C", "relocation-model=static"],
        static_openssl: false,
    },
    // glibc rather than musl: it links the distribution's libcrypto.a instead of building
    // OpenSSL from source
    GuestBin {
        package: "fence-vmstonith",
        bin: "fence_vmstonith",
        target: "x86_64-unknown-linux-gnu",
        link_flags: &[
            "-C",
            "target-feature=+crt-static",
            "-C",
            "relocation-model=static",
        ],
        static_openssl: true,
    },
];

/// Builds the guest-side binaries (`cargo build --profile guest`, the package features a guest
/// needs: none of the host's libvirt) and copies them into `target/guest-bins`; returns their
/// paths.
fn guest_bins() -> Result<Vec<PathBuf>, String> {
    let root = repo_root();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = root.join("target").join(GUEST_BINS_DIR);
    std::fs::create_dir_all(&out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let mut files = Vec::new();
    for b in GUEST_BINS {
        let mut cmd = std::process::Command::new(&cargo);
        cmd.current_dir(&root).args([
            "rustc",
            "--quiet",
            "--profile",
            "guest",
            "--target",
            b.target,
            "-p",
            b.package,
            "--no-default-features",
            "--bin",
            b.bin,
            "--",
        ]);
        cmd.args(b.link_flags);
        if b.static_openssl {
            cmd.env("OPENSSL_STATIC", "1")
                .env("OPENSSL_LIB_DIR", pkg_config("libcrypto", "libdir")?)
                .env("OPENSSL_INCLUDE_DIR", pkg_config("openssl", "includedir")?);
        }
        let status = cmd
            .status()
            .map_err(|e| format!("cannot run cargo for {}: {e}", b.bin))?;
        if !status.success() {
            return Err(format!(
                "building {} for {} failed ({status})",
                b.bin, b.target
            ));
        }
        let built = root.join("target").join(b.target).join("guest").join(b.bin);
        let dest = out.join(b.bin);
        // copy to a new file, then rename: a guest image being packed never sees half a binary
        let tmp = out.join(format!(".{}.new", b.bin));
        std::fs::copy(&built, &tmp)
            .and_then(|_| std::fs::rename(&tmp, &dest))
            .map_err(|e| format!("cannot copy {} to {}: {e}", built.display(), dest.display()))?;
        files.push(dest);
    }
    Ok(files)
}

/// `pkg-config --variable=VAR PKG`: where the distribution keeps OpenSSL's files.
fn pkg_config(pkg: &str, var: &str) -> Result<String, String> {
    let out = std::process::Command::new("pkg-config")
        .arg(format!("--variable={var}"))
        .arg(pkg)
        .output()
        .map_err(|e| format!("cannot run pkg-config (install pkg-config): {e}"))?;
    let value = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() || value.is_empty() {
        return Err(format!(
            "pkg-config knows no {var} of {pkg} (install libssl-dev, which has the static libcrypto)"
        ));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pages of other packages the pages may refer to (the packages they come from are
    /// dependencies or suggestions of ours).
    const EXTERNAL_PAGES: &[&str] = &["ocf_heartbeat_VirtualDomain.7"];

    #[test]
    fn assets_are_generated_from_the_definitions() {
        let dir = tempfile::tempdir().unwrap();
        let files = assets(&repo_root(), dir.path()).unwrap();
        let read = |f: &str| std::fs::read_to_string(dir.path().join(f)).unwrap();
        let man = read("vm-ctl.1");
        assert!(man.contains(".TH vm-ctl"), "{man}");
        assert!(man.contains("resource"));
        let bash = read("vm-ctl.bash");
        assert!(bash.contains("--dry-run") && bash.contains("location"));
        // a page for every binary and agent, and for vm-ctl's subcommands at every depth
        for page in [
            "vm-ctl.1",
            "vm-ctl-resource.1",
            "vm-ctl-resource-add.1",
            "vm-ctl-stonith-keygen.1",
            "vm-connectd.8",
            "vm-connectd-status.8",
            "vm-stonithd.8",
            "vm-managerd.8",
            "vm-connect.1",
            "fence_vmstonith.8",
            "ocf_pm-kvm-tools_VirtualDomain.7",
            "ocf_pm-kvm-tools_vm-connectd.7",
            "ocf_pm-kvm-tools_vm-stonithd.7",
            "ocf_pm-kvm-tools_vm-managerd.7",
            "ocf_pm-kvm-tools_vm-client.7",
            "stonith_external_vm-stonith.7",
        ] {
            assert!(dir.path().join(page).is_file(), "no {page}");
        }
        assert!(!dir.path().join("vm-ctl-help.1").exists());
        // every page another page names exists
        let mut checked = 0;
        for f in &files {
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            if !name.ends_with(".1") && !name.ends_with(".7") && !name.ends_with(".8") {
                continue;
            }
            for r in man::references(&std::fs::read_to_string(f).unwrap()) {
                assert!(
                    dir.path().join(&r).is_file() || EXTERNAL_PAGES.contains(&r.as_str()),
                    "{name} refers to {r}, which does not exist"
                );
                checked += 1;
            }
        }
        assert!(checked > 20, "only {checked} references found");
        // the daemons' pages say how they exit and what they read
        let stonithd = read("vm-stonithd.8");
        assert!(stonithd.contains("EXIT STATUS") && stonithd.contains("vm-stonithd.toml"));
        let managerd = read("vm-managerd.8");
        assert!(managerd.contains("EXIT STATUS") && managerd.contains("/etc/vm-manager.conf"));
        assert!(read("vm-connect.1").contains("64"));
        // every program's page lists its exit statuses (vm-ctl's from vm_ctl::error::EXIT_STATUS)
        for page in [
            "vm-ctl.1",
            "vm-connectd.8",
            "vm-stonithd.8",
            "vm-connect.1",
            "fence_vmstonith.8",
        ] {
            assert!(read(page).contains("EXIT STATUS"), "{page}");
        }
        assert!(read("vm-ctl.1").contains("check found problems"));
        assert!(read("fence_vmstonith.8").contains("key-file"));
        assert!(read("fence_vmstonith.8").contains("power_timeout"));
        assert!(read("ocf_pm-kvm-tools_VirtualDomain.7").contains("force_stop"));
        let plugin = read("stonith_external_vm-stonith.7");
        for var in ["FENCE_VMSTONITH", "VM_CONNECT", "HA_BIN"] {
            assert!(plugin.contains(var), "{var} missing from\n{plugin}");
        }
        // completions of every clap program
        for f in [
            "_vm-ctl",
            "vm-ctl.fish",
            "vm-connectd.bash",
            "vm-stonithd.bash",
        ] {
            assert!(dir.path().join(f).is_file(), "no {f}");
        }
    }

    #[test]
    fn every_command_has_a_page_listing_every_option() {
        let dir = tempfile::tempdir().unwrap();
        assets(&repo_root(), dir.path()).unwrap();
        let mut checked = 0;
        for (mut cmd, section) in [
            (vm_ctl::cli::Cli::command(), "1"),
            (vm_connectd::cli::Cli::command(), "8"),
            (vm_stonithd::cli::Cli::command(), "8"),
        ] {
            // as parsing sees it: the global options propagated into every subcommand
            cmd.build();
            let mut todo = vec![(cmd.get_name().to_owned(), cmd)];
            while let Some((name, cmd)) = todo.pop() {
                let page = dir.path().join(format!("{name}.{section}"));
                let roff = std::fs::read_to_string(&page)
                    .unwrap_or_else(|e| panic!("no page for '{name}' ({}): {e}", page.display()));
                for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
                    let spelled: Vec<String> = arg
                        .get_long()
                        .map(|l| format!("\\-\\-{}", l.replace('-', "\\-")))
                        .into_iter()
                        .chain(arg.get_short().map(|c| format!("\\-{c}")))
                        .chain(
                            arg.get_value_names()
                                .into_iter()
                                .flatten()
                                .map(|v| v.to_string()),
                        )
                        .collect();
                    assert!(
                        spelled.iter().any(|s| roff.contains(s.as_str())),
                        "{name}.{section} does not document {:?} ({spelled:?})",
                        arg.get_id()
                    );
                    checked += 1;
                }
                for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
                    todo.push((format!("{name}-{}", sub.get_name()), sub.clone()));
                }
            }
        }
        assert!(checked > 100, "only {checked} options checked");
    }

    /// What bash's programmable completion offers for `line` (the words typed, the last one
    /// being completed), with the generated script loaded the way bash-completion loads it:
    /// the function `complete -p` names for the program is called as bash would call it.
    fn bash_completes(script: &Path, line: &[&str]) -> Vec<String> {
        let words: Vec<String> = line.iter().map(|w| format!("'{w}'")).collect();
        let cword = line.len() - 1;
        let driver = format!(
            r#"source "$1" || exit 9
spec=$(complete -p {prog}) || exit 8
set -- $spec
while [ "$1" != -F ]; do shift; done
fn=$2
COMP_WORDS=({words})
COMP_CWORD={cword}
COMP_LINE="${{COMP_WORDS[*]}}"
COMP_POINT=${{#COMP_LINE}}
"$fn" "${{COMP_WORDS[0]}}" "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
printf '%s\n' "${{COMPREPLY[@]}}"
"#,
            prog = line[0],
            words = words.join(" "),
        );
        let out = std::process::Command::new("bash")
            .args(["--norc", "--noprofile", "-c", &driver, "bash"])
            .arg(script)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{line:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn bash_completes_below_the_top_level() {
        let dir = tempfile::tempdir().unwrap();
        assets(&repo_root(), dir.path()).unwrap();
        let vm_ctl = dir.path().join("vm-ctl.bash");
        let top = bash_completes(&vm_ctl, &["vm-ctl", ""]);
        for c in ["resource", "location", "stonith", "check"] {
            assert!(top.contains(&c.to_owned()), "vm-ctl <TAB>: {top:?}");
        }
        let resource = bash_completes(&vm_ctl, &["vm-ctl", "resource", ""]);
        for c in [
            "add", "start", "stop", "move", "unmove", "delete", "list", "show",
        ] {
            assert!(
                resource.contains(&c.to_owned()),
                "vm-ctl resource <TAB>: {resource:?}"
            );
        }
        let add = bash_completes(&vm_ctl, &["vm-ctl", "resource", "add", "g1", "--"]);
        for o in ["--active-node", "--migrate", "--dry-run", "--config"] {
            assert!(
                add.contains(&o.to_owned()),
                "vm-ctl resource add g1 --<TAB>: {add:?}"
            );
        }
        let guest_config =
            bash_completes(&vm_ctl, &["vm-ctl", "stonith", "guest-config", "web", "--"]);
        assert!(
            guest_config.contains(&"--members".to_owned()),
            "{guest_config:?}"
        );
        let migrate = bash_completes(&vm_ctl, &["vm-ctl", "resource", "add", "g1", "-m", ""]);
        assert_eq!(migrate, ["on", "off"], "vm-ctl resource add g1 -m <TAB>");
        let status = bash_completes(
            &dir.path().join("vm-connectd.bash"),
            &["vm-connectd", "status", "--"],
        );
        assert!(status.contains(&"--socket".to_owned()), "{status:?}");
    }

    #[test]
    fn a_script_without_the_mismatch_is_left_as_it_is() {
        let s = "case x in\n    vm__ctl__subcmd__check)\n";
        assert_eq!(fix_bash_completion(s, "vm-ctl"), s);
        let t = "cmd=\"x__subcmd__y\"\n";
        assert_eq!(fix_bash_completion(t, "x"), t);
    }

    #[test]
    fn pages_render_without_warnings() {
        // man-db's own check (lintian runs the same); skipped where man is not installed
        if std::process::Command::new("man")
            .arg("--version")
            .output()
            .is_err()
        {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        for f in assets(&repo_root(), dir.path()).unwrap() {
            let name = f.to_string_lossy().into_owned();
            if !(name.ends_with(".1") || name.ends_with(".7") || name.ends_with(".8")) {
                continue;
            }
            let out = std::process::Command::new("man")
                .args(["--warnings", "-E", "UTF-8", "-l", "-Tutf8", "-Z"])
                .arg(&f)
                .env("LC_ALL", "C.UTF-8")
                .env("MANROFFSEQ", "")
                .env("MANWIDTH", "80")
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success() && err.is_empty(), "{name}: {err}");
        }
    }
}
