//! A vm-ctl test bed on an offline CIB file: a two-node CIB with the host clones vm-ctl.conf
//! names, domain XML files, a vm-ctl.conf, and a private lock file; helpers that run the real
//! `vm-ctl` binary against it and check every write with `crm_verify`.

use std::path::{Path, PathBuf};

use vm_common::process::{Cmd, Output};

use crate::cib::CibFile;
use crate::{packaged_bin, project_bin, run_ok};

/// The test bed's vm-ctl.conf keys that every test configuration shares
/// (`tests/testbed/vm-ctl-base.conf`, which the test-bed scripts use too, through `vmctl_conf`
/// in lib.sh).
pub const BASE: &str = include_str!("../testbed/vm-ctl-base.conf");

/// The vm-ctl.conf the bed writes: [`BASE`] plus one pingd and one diskd clone.
pub const CONFIG: &str = concat!(
    include_str!("../testbed/vm-ctl-base.conf"),
    "vm_pingd1=(clnPingd default_ping_set)\n",
    "vm_diskd1=(clnDiskd1 diskcheck_status)\n",
);

/// [`BASE`] with `keys` (`key=value` lines): a key the base has takes the new value in its
/// place, the others are added at the end (so no key is set twice, which vm-ctl warns about).
pub fn config(keys: &str) -> String {
    let set: Vec<(&str, &str)> = keys.lines().filter_map(|l| l.split_once('=')).collect();
    let mut out = String::new();
    for line in BASE.lines() {
        let replaced = line
            .split_once('=')
            .and_then(|(k, _)| set.iter().find(|(key, _)| *key == k));
        match replaced {
            Some((k, v)) => out.push_str(&format!("{k}={v}")),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    for (k, v) in &set {
        if !BASE
            .lines()
            .any(|l| l.split_once('=').is_some_and(|(b, _)| b == *k))
        {
            out.push_str(&format!("{k}={v}\n"));
        }
    }
    out
}

/// A vm-ctl bed on a CIB file.
#[derive(Debug)]
pub struct VmCtlBed {
    /// The CIB file.
    pub cib: CibFile,
    config: PathBuf,
    xml_dir: PathBuf,
    lock: PathBuf,
}

impl VmCtlBed {
    /// Two nodes with healthy ping/disk attributes, clones `clnPingd` and `clnDiskd1`,
    /// stonith disabled, the default config.
    pub fn new() -> Self {
        Self::with_config(CONFIG)
    }

    /// Same, with another vm-ctl.conf body (`vm_cfg_dir` is added).
    pub fn with_config(config: &str) -> Self {
        let cib = CibFile::two_nodes();
        for clone in ["clnPingd", "clnDiskd1"] {
            cib.create_in(
                "resources",
                &format!(
                    r#"<clone id="{clone}"><primitive id="{clone}-p" class="ocf" provider="pacemaker" type="Dummy"/></clone>"#
                ),
            );
        }
        let dir = cib.dir().to_path_buf();
        let xml_dir = dir.join("domains");
        std::fs::create_dir_all(&xml_dir).unwrap();
        let bed = Self {
            config: dir.join("vm-ctl.conf"),
            lock: dir.join("vm-ctl.lock"),
            xml_dir,
            cib,
        };
        bed.write_config(config);
        bed
    }

    /// Replace vm-ctl.conf's body.
    pub fn write_config(&self, body: &str) {
        let text = format!("vm_cfg_dir={}\n{body}", self.xml_dir.display());
        std::fs::write(&self.config, text).unwrap();
    }

    /// vm-ctl.conf's path.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// The directory of domain XML files.
    pub fn xml_dir(&self) -> &Path {
        &self.xml_dir
    }

    /// Write a domain XML for `name` (with a vmconnectd channel under /var/lib/libvirt/qemu).
    pub fn domain(&self, name: &str) -> PathBuf {
        let path = self.xml_dir.join(format!("{name}.xml"));
        std::fs::write(&path, domain_xml(name)).unwrap();
        path
    }

    /// `vm-ctl --config <bed's> ARGS` on the bed's CIB file.
    pub fn cmd(&self, args: &[&str]) -> Cmd {
        Cmd::new(project_bin("vm-ctl"))
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env("CIB_file", self.cib.path())
            .env("VM_CTL_LOCK", &self.lock)
    }

    /// Run vm-ctl; it must succeed and leave a CIB crm_verify accepts.
    pub fn ok(&self, args: &[&str]) -> Output {
        let out = run_ok(&self.cmd(args));
        self.cib.assert_valid();
        out
    }

    /// Run vm-ctl; it must fail with `code` and leave the CIB file byte for byte as it was.
    pub fn fails(&self, args: &[&str], code: i32) -> Output {
        let before = std::fs::read(self.cib.path()).unwrap();
        let cmd = self.cmd(args);
        let out = cmd.run().unwrap();
        assert_eq!(
            out.code(),
            Some(code),
            "`{}`: expected exit {code}\nstdout:\n{}\nstderr:\n{}",
            cmd.display(),
            out.stdout_text(),
            out.stderr_text()
        );
        assert_eq!(
            std::fs::read(self.cib.path()).unwrap(),
            before,
            "`{}` failed but changed the CIB",
            cmd.display()
        );
        out
    }

    /// Let the (simulated) cluster carry out what the configuration asks: `crm_simulate -S -X`
    /// (`--in-place`) with both nodes up writes the resulting status into the file.
    pub fn settle(&self) {
        self.settle_with(&[]);
    }

    /// [`VmCtlBed::settle`] with `guest_nodes` up too (as their pacemaker-remoted connecting
    /// makes them on a live cluster; crm_simulate writes no guest node's state by itself).
    pub fn settle_with(&self, guest_nodes: &[&str]) {
        let mut nodes = self.cib.nodes();
        nodes.extend(guest_nodes);
        let mut cmd = Cmd::new("crm_simulate")
            .arg("--xml-file")
            .arg(self.cib.path());
        for n in &nodes {
            cmd = cmd.args(["--node-up", n]);
        }
        run_ok(&cmd.args(["--quorum", "1", "--simulate", "--in-place"]));
    }
}

impl Default for VmCtlBed {
    fn default() -> Self {
        Self::new()
    }
}

/// A minimal libvirt domain XML for offline tests.
pub fn domain_xml(name: &str) -> String {
    format!(
        "<domain type='qemu'>\n  <name>{name}</name>\n  <uuid>00000000-0000-4000-8000-{:012x}</uuid>\n  \
         <memory unit='MiB'>64</memory>\n  <devices>\n    <channel type='unix'>\n      \
         <source mode='bind' path='/var/lib/libvirt/qemu/{name}'/>\n      \
         <target type='virtio' name='vmconnectd'/>\n    </channel>\n  </devices>\n</domain>\n",
        name.len()
    )
}

/// vm-ctl against a live cluster (no `CIB_file`): a private directory with vm-ctl.conf, the
/// domain XMLs and a lock file. `lock` lets a test run several vm-ctl at once as if on
/// different hosts.
#[derive(Debug)]
pub struct LiveVmCtl {
    dir: tempfile::TempDir,
    /// Prefix for commands (e.g. `nsenter` into a test-bed node), empty for this machine.
    prefix: Vec<String>,
    /// The vm-ctl that runs: this tree's build, or the packaged one ([`LiveVmCtl::packaged`]).
    bin: PathBuf,
}

impl LiveVmCtl {
    /// A config (`body` plus `vm_cfg_dir`) in a new private directory.
    pub fn new(body: &str) -> Self {
        Self::in_dir(
            tempfile::Builder::new()
                .prefix("pmkt-vmctl-")
                .tempdir()
                .unwrap(),
            body,
        )
    }

    /// Same, in a given directory (e.g. on the multi-node bed's shared storage).
    pub fn in_dir(dir: tempfile::TempDir, body: &str) -> Self {
        std::fs::create_dir_all(dir.path().join("domains")).unwrap();
        let bed = Self {
            dir,
            prefix: Vec::new(),
            bin: project_bin("vm-ctl"),
        };
        std::fs::write(
            bed.config_path(),
            format!("vm_cfg_dir={}\n{body}", bed.xml_dir().display()),
        )
        .unwrap();
        bed
    }

    /// Run the vm-ctl the host package installed (`/usr/sbin/vm-ctl`) instead of this tree's
    /// debug build: the multi-node tier exercises what users install.
    #[must_use]
    pub fn packaged(mut self) -> Self {
        self.bin = packaged_bin("vm-ctl");
        self
    }

    /// Run commands through `prefix` (e.g. `nsenter -t PID -m -n -u --`).
    #[must_use]
    pub fn via(mut self, prefix: &[&str]) -> Self {
        self.prefix = prefix.iter().map(|s| (*s).to_owned()).collect();
        self
    }

    /// vm-ctl.conf's path.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("vm-ctl.conf")
    }

    /// The domain XML directory (vm_cfg_dir).
    pub fn xml_dir(&self) -> PathBuf {
        self.dir.path().join("domains")
    }

    /// Write `<name>.xml` with `xml`.
    pub fn domain(&self, name: &str, xml: &str) {
        std::fs::write(self.xml_dir().join(format!("{name}.xml")), xml).unwrap();
    }

    /// `vm-ctl --config ... ARGS` on the live cluster, with lock file `lock` (in the dir).
    pub fn cmd_with_lock(&self, lock: &str, args: &[&str]) -> Cmd {
        let mut argv: Vec<String> = self.prefix.clone();
        argv.push(self.bin.display().to_string());
        let (program, rest) = argv.split_first().unwrap();
        Cmd::new(program)
            .args(rest)
            .arg("--config")
            .arg(self.config_path())
            .args(args)
            .env_remove("CIB_file")
            .env("VM_CTL_LOCK", self.dir.path().join(lock))
            .timeout(std::time::Duration::from_secs(300))
    }

    /// `vm-ctl ARGS` with the default (shared) lock of this bed.
    pub fn cmd(&self, args: &[&str]) -> Cmd {
        self.cmd_with_lock("vm-ctl.lock", args)
    }

    /// Run vm-ctl; it must succeed.
    pub fn ok(&self, args: &[&str]) -> Output {
        run_ok(&self.cmd(args))
    }

    /// Run vm-ctl; it must fail with `code`.
    pub fn fails(&self, args: &[&str], code: i32) -> Output {
        let cmd = self.cmd(args);
        let out = cmd.run().unwrap();
        assert_eq!(
            out.code(),
            Some(code),
            "`{}`: expected exit {code}\nstdout:\n{}\nstderr:\n{}",
            cmd.display(),
            out.stdout_text(),
            out.stderr_text()
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_replaces_the_base_keys_and_adds_the_others() {
        let c = config("vm_stonith=on\nvm_pingd1=(clnPingd default_ping_set)\n");
        assert!(
            c.contains("\nvm_stonith=on\n") && !c.contains("vm_stonith=off"),
            "{c}"
        );
        assert!(
            c.ends_with("vm_pingd1=(clnPingd default_ping_set)\n"),
            "{c}"
        );
        assert_eq!(c.matches("vm_stonith=").count(), 1, "{c}");
        assert_eq!(config(""), BASE);
        assert!(CONFIG.starts_with(BASE));
    }
}
