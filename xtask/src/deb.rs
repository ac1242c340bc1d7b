//! `cargo xtask deb`: the Debian packages `pm-kvm-tools` (host) and `pm-kvm-tools-guest`, built
//! from `debian/` with debhelper, into `target/debian/`, then checked by lintian.
//!
//! It runs `debian/rules build` and `debian/rules binary` itself rather than
//! dpkg-buildpackage, which would write a .changes and a .buildinfo (and, by default, the .debs)
//! into the repository's parent directory; only the .debs are wanted here, and
//! `dh_builddeb --destdir` puts them in `target/debian/`.
//!
//! The version is Cargo's (the workspace version); debian/changelog's top entry must say the
//! same, or the build stops. The changelog is checked, not generated: its entries are written
//! by people, and a generated "new version" entry would say nothing.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The packages, in `debian/control`'s order.
const PACKAGES: [&str; 2] = ["pm-kvm-tools", "pm-kvm-tools-guest"];

/// Where the .debs go, under the workspace.
const OUT_DIR: &str = "target/debian";

/// Builds the packages and runs lintian on them; returns the .deb files.
pub fn deb(repo: &Path) -> Result<Vec<PathBuf>, String> {
    let version = debian_version(env!("CARGO_PKG_VERSION"));
    check_changelog(repo, &version)?;
    check_toolchain()?;
    run(
        repo,
        "dpkg-checkbuilddeps",
        &[],
        "install the build dependencies it names",
    )?;
    let out = repo.join(OUT_DIR);
    // only this build's packages in the directory lintian is given
    for p in PACKAGES {
        let old = out.join(deb_name(p, &version));
        if old.exists() {
            std::fs::remove_file(&old).map_err(|e| format!("{}: {e}", old.display()))?;
        }
    }
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    // clean first: no file of an earlier build (one since dropped from debian/*.install) may
    // slip into the packages; target/ stays (debian/rules' clean keeps it), so the build is
    // incremental
    run(repo, "debian/rules", &["clean"], "see the output above")?;
    run(
        repo,
        "debian/rules",
        &["build"],
        "see the build output above",
    )?;
    // Rules-Requires-Root: no (debian/control): no fakeroot needed, as root or not
    run(repo, "debian/rules", &["binary"], "see the output above")?;
    let debs: Vec<PathBuf> = PACKAGES
        .iter()
        .map(|p| out.join(deb_name(p, &version)))
        .collect();
    for d in &debs {
        if !d.is_file() {
            return Err(format!("debhelper did not make {}", d.display()));
        }
    }
    lintian(repo, &debs)?;
    Ok(debs)
}

/// Cargo's version as Debian spells it: a pre-release (`1.0.0-rc.1`) sorts before its
/// release in Cargo, which in Debian takes a tilde (`1.0.0~rc.1`).
fn debian_version(cargo: &str) -> String {
    cargo.replacen('-', "~", 1)
}

fn deb_name(package: &str, version: &str) -> String {
    format!("{package}_{version}_amd64.deb")
}

/// debian/changelog's top version must be Cargo's.
fn check_changelog(repo: &Path, version: &str) -> Result<(), String> {
    let out = Command::new("dpkg-parsechangelog")
        .args(["-l", "debian/changelog", "-S", "Version"])
        .current_dir(repo)
        .output()
        .map_err(|e| format!("cannot run dpkg-parsechangelog (install dpkg-dev): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "dpkg-parsechangelog failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let top = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if top != version {
        return Err(format!(
            "debian/changelog's top entry is version {top}, but Cargo.toml's workspace version \
             is {version}: add a changelog entry for {version} (dch -v {version}) or fix the \
             version"
        ));
    }
    Ok(())
}

/// The Rust pieces debian/control cannot list: cargo (from rustup) and the musl target of the
/// static guest binaries.
fn check_toolchain() -> Result<(), String> {
    let out = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    match out {
        Ok(o) if o.status.success() => {
            if !String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.trim() == "x86_64-unknown-linux-musl")
            {
                return Err(
                    "the guest binaries need the musl target: rustup target add \
                            x86_64-unknown-linux-musl"
                        .into(),
                );
            }
            Ok(())
        }
        // a toolchain without rustup: the guest build says what is missing, if anything
        _ => Ok(()),
    }
}

/// Runs a command in the repository with its output shown; `hint` says what to do when it
/// fails.
fn run(repo: &Path, program: &str, args: &[&str], hint: &str) -> Result<(), String> {
    let mut cmd = Command::new(program);
    cmd.args(args).current_dir(repo);
    // debian/rules runs cargo: the one running this task, with its toolchain
    if let Some(cargo) = std::env::var_os("CARGO") {
        cmd.env("CARGO", cargo);
    }
    // `cargo run` sets it for this task's own libraries; dpkg-shlibdeps would take it for the
    // packages' private library path
    cmd.env_remove("LD_LIBRARY_PATH");
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if !status.success() {
        return Err(format!(
            "{program} {} failed ({status}): {hint}",
            args.join(" ")
        ));
    }
    Ok(())
}

/// lintian on the packages: its warnings are printed, an error fails the build (its default
/// --fail-on). Overrides, each with its reason, are in debian/*.lintian-overrides.
fn lintian(repo: &Path, debs: &[PathBuf]) -> Result<(), String> {
    let status = Command::new("lintian")
        .args(["--fail-on", "error"])
        .args(debs)
        .current_dir(repo)
        .status()
        .map_err(|e| format!("cannot run lintian (apt-get install lintian): {e}"))?;
    if !status.success() {
        return Err(format!("lintian found errors ({status}); see above"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_as_debian_spells_them() {
        assert_eq!(debian_version("0.1.0"), "0.1.0");
        assert_eq!(debian_version("1.0.0-rc.1"), "1.0.0~rc.1");
    }

    #[test]
    fn the_changelog_says_cargos_version() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        if Command::new("dpkg-parsechangelog")
            .arg("--version")
            .output()
            .is_err()
        {
            return;
        }
        check_changelog(root, &debian_version(env!("CARGO_PKG_VERSION"))).unwrap();
        let e = check_changelog(root, "9.9.9").unwrap_err();
        assert!(e.contains("9.9.9") && e.contains("dch -v"), "{e}");
    }
}
