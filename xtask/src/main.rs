//! `cargo xtask`: project tasks that are not part of any product binary.
//!
//! ```text
//! cargo xtask assets [DIR]    man page (vm-ctl.1) and bash/zsh/fish completions of vm-ctl,
//!                             generated from its clap definitions (default DIR: target/assets)
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
        _ => {
            eprintln!("usage: cargo xtask assets [DIR]");
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
