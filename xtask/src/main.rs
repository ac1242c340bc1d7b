//! `cargo xtask`: project tasks that are not part of any product binary.
//!
//! ```text
//! cargo xtask assets [DIR]    man page (vm-ctl.1) and bash/zsh/fish completions of vm-ctl,
//!                             generated from its clap definitions (default DIR: target/assets)
//! cargo xtask guest-bins      the guest-side binaries, static, in target/guest-bins (see
//!                             [`guest_bins`])
//! ```

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("assets") => {
            let dir = args
                .get(1)
                .map_or_else(|| PathBuf::from("target/assets"), PathBuf::from);
            match assets(&dir) {
                Ok(files) => {
                    for f in files {
                        println!("{}", f.display());
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("xtask assets: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Some("guest-bins") if args.len() == 1 => match guest_bins() {
            Ok(files) => {
                for f in files {
                    println!("{}", f.display());
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("xtask guest-bins: {e}");
                ExitCode::FAILURE
            }
        },
        _ => {
            eprintln!("usage: cargo xtask assets [DIR] | cargo xtask guest-bins");
            ExitCode::from(2)
        }
    }
}

/// Write the man page and the shell completions of vm-ctl into `dir`; returns the files.
fn assets(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut files = Vec::new();
    let cmd = vm_ctl::cli::Cli::command();
    let man = dir.join("vm-ctl.1");
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut buf)?;
    std::fs::write(&man, buf)?;
    files.push(man);
    // one page per subcommand too (vm-ctl-resource.1, ...), as man users expect
    for sub in cmd.get_subcommands() {
        let name = format!("vm-ctl-{}", sub.get_name());
        let path = dir.join(format!("{name}.1"));
        let mut buf = Vec::new();
        clap_mangen::Man::new(sub.clone().name(name)).render(&mut buf)?;
        std::fs::write(&path, buf)?;
        files.push(path);
    }
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let mut cmd = vm_ctl::cli::Cli::command();
        files.push(clap_complete::generate_to(shell, &mut cmd, "vm-ctl", dir)?);
    }
    Ok(files)
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
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or("the xtask crate is not inside a workspace")?
        .to_path_buf();
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

    #[test]
    fn assets_are_generated_from_the_cli() {
        let dir = tempfile::tempdir().unwrap();
        let files = assets(dir.path()).unwrap();
        let man = std::fs::read_to_string(dir.path().join("vm-ctl.1")).unwrap();
        assert!(man.contains(".TH vm-ctl"), "{man}");
        assert!(man.contains("resource"));
        let bash = std::fs::read_to_string(dir.path().join("vm-ctl.bash")).unwrap();
        assert!(bash.contains("--dry-run") && bash.contains("location"));
        assert!(files.len() >= 5);
    }
}
