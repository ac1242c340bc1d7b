//! The pm-kvm-tools test bed, Rust side.
//!
//! Tests run the project against real components. The shell scripts in `tests/testbed/` bring
//! those components up and down (each idempotent, every process stopped by its recorded PID);
//! the fixtures here wrap them for tests:
//!
//! - [`cib`]: [`cib::CibFile`], an offline CIB in a temp dir (nodes, node attributes, stonith
//!   property) checked with `crm_verify` and placed with `crm_simulate`.
//! - [`live`]: [`live::LiveCluster`], the single-node corosync + pacemakerd of this machine,
//!   one test at a time.
//! - [`multinode`]: [`multinode::MultiNode`], the 2-3 node cluster in namespaces with real
//!   fencing and one libvirtd per node.
//! - [`libvirt`]: [`libvirt::HostLibvirt`], this machine's test-bed libvirtd (`qemu:///system`).
//! - [`vmctl`]: [`vmctl::VmCtlBed`], the real `vm-ctl` on a CIB file with its config and
//!   domain XMLs; every write checked with `crm_verify`, every failure checked to change nothing.
//! - [`connectd`]: [`connectd::HostRelay`], a host-mode vm-connectd started and stopped by
//!   PID.
//! - [`managerd`]: [`managerd::ManagerBed`], vm-managerd behind a real host relay, asked by
//!   bridged guest daemons.
//! - [`liveness`]: [`liveness::PanicBed`], a guest watched through its channel on the
//!   multi-node cluster, whose kernel the test panics.
//! - [`guest`]: the TCG guest image, its domain XML, its serial console and its `vmconnectd`
//!   channel.
//!
//! Fixtures that share a daemon serialise their users with an in-process mutex plus a `flock`
//! on a file in the state dir, so two test binaries cannot use one cluster at once either.

// This crate exists to run tests: a fixture that cannot set up must fail the test loudly, so
// unwrap/expect (panics with the cause) are the right tool here, unlike in the product crates.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod cib;
pub mod connectd;
pub mod guest;
pub mod libvirt;
pub mod live;
pub mod liveness;
pub mod managerd;
pub mod multinode;
pub mod remote;
pub mod stonith;
pub mod vmctl;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use vm_common::process::{Cmd, Output};

/// The repository's root directory.
pub fn repo_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// `tests/testbed/`, where the scripts live.
pub fn testbed_dir() -> PathBuf {
    repo_dir().join("tests").join("testbed")
}

/// The test bed's state directory (`PMKT_STATE`, default `/tmp/pmkt`).
pub fn state_dir() -> PathBuf {
    std::env::var_os("PMKT_STATE")
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from("/tmp/pmkt"), PathBuf::from)
}

/// Path of one of the project's binaries, built for this machine, next to the running test
/// executable (`target/<profile>/deps/<test>` → `target/<profile>/<name>`) or benchmark harness
/// (`target/<profile>/<harness>`).
pub fn project_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe.parent().unwrap_or(Path::new(""));
    let profile_dir = if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent().unwrap_or(dir)
    } else {
        dir
    }
    .to_path_buf();
    let bin = profile_dir.join(name);
    assert!(
        bin.exists(),
        "{} is missing: build the workspace first (cargo build --workspace)",
        bin.display()
    );
    bin
}

/// Path of one of the project's programs as the host Debian package installed it
/// (`tests/testbed/install.sh project`, which tests/run-all runs before the live tiers): the
/// multi-node tier runs what users install. Panics unless the file belongs to the package.
pub fn packaged_bin(name: &str) -> PathBuf {
    let path = ["/usr/sbin", "/usr/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!("{name} is not installed: install the host package (tests/testbed/install.sh project)")
        });
    let owner = run_ok(&Cmd::new("dpkg-query").arg("--search").arg(&path)).stdout_text();
    assert!(
        owner.starts_with("pm-kvm-tools:"),
        "{} is not the packaged one (dpkg-query --search: {owner})",
        path.display()
    );
    path
}

/// A test-bed script as a command.
pub fn script(name: &str) -> Cmd {
    Cmd::new(testbed_dir().join(name)).timeout(Duration::from_secs(600))
}

/// Run a command that must succeed; panic with its output otherwise.
pub fn run_ok(cmd: &Cmd) -> Output {
    let out = cmd
        .run()
        .unwrap_or_else(|e| panic!("`{}`: {e}", cmd.display()));
    assert!(
        out.success(),
        "`{}` exited with {:?}\nstdout:\n{}\nstderr:\n{}",
        cmd.display(),
        out.code(),
        out.stdout_text(),
        out.stderr_text()
    );
    out
}

/// Poll `check` every 100 ms until it returns `Some`, or panic after `timeout` with `what`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Print one line of test evidence (shown by tests/run-all, which runs tiers with
/// `--nocapture`), prefixed with the time since `since`.
pub fn evidence(tier: &str, since: Instant, line: impl std::fmt::Display) {
    eprintln!("  [{tier} +{:6.2}s] {line}", since.elapsed().as_secs_f64());
}

/// Exclusive use of one shared test-bed component: an in-process mutex (tests of one binary
/// run on several threads) plus a `flock` (several test binaries may run at once).
#[derive(Debug)]
pub struct Exclusive {
    _flock: Flock<File>,
    _guard: MutexGuard<'static, ()>,
}

impl Exclusive {
    /// Take the lock named `name`, waiting for other users.
    pub fn acquire(mutex: &'static Mutex<()>, name: &str) -> Self {
        // A test that panicked while holding the lock poisons the mutex; the component is
        // reset by the next user anyway, so the poison carries no information.
        let guard = mutex
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let dir = state_dir();
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let path = dir.join(format!("{name}.lock"));
        let file = File::create(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let flock = Flock::lock(file, FlockArg::LockExclusive)
            .unwrap_or_else(|(_, e)| panic!("flock {}: {e}", path.display()));
        Self {
            _flock: flock,
            _guard: guard,
        }
    }
}
