//! `vm-ctl stonith ...` and the guest-fencing findings of `vm-ctl check`, through the built
//! binary, on temporary directories and offline CIB files (no live cluster).
//!
//! Parts that need outside tools are skipped when the tool is missing: `openssl` (to decrypt
//! legacy tokens the way the original's hosts do), `cibadmin` (Pacemaker: reading a CIB file),
//! `crm` (crmsh) and `pcs` (to load the printed guest configuration into an empty CIB).

// The helpers below are test code too (clippy only exempts #[test] functions).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_vm-ctl");

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

fn skip(what: &str, tool: &str) -> bool {
    if have(tool) {
        false
    } else {
        eprintln!("skipped: {what} needs {tool}");
        true
    }
}

/// A scratch directory with an (absent) vm-ctl.conf, no CIB and no vm-stonithd.toml unless a
/// test writes them.
struct Bed {
    dir: tempfile::TempDir,
}

impl Bed {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--config")
            .arg(self.path("vm-ctl.conf"))
            .args(args)
            .env("CIB_file", self.path("cib.xml"))
            .env("VM_STONITHD_CONFIG", self.path("vm-stonithd.toml"))
            .env_remove("VM_CTL_KEY_DIR")
            .env_remove("RUST_LOG");
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "vm-ctl {args:?}: {:?}\n{}{}",
            out.status,
            text(&out.stdout),
            text(&out.stderr)
        );
        out
    }

    fn fails(&self, args: &[&str], code: i32) -> String {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "vm-ctl {args:?}:\n{}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stderr)
    }

    /// A CIB file with these nodes and `status` (node_state elements).
    fn cib(&self, nodes: &[&str], status: &str) {
        let nodes: String = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| format!(r#"<node id="{}" uname="{n}"/>"#, i + 1))
            .collect();
        fs::write(
            self.path("cib.xml"),
            format!(
                r#"<cib validate-with="pacemaker-3.0" epoch="1" num_updates="0" admin_epoch="0"><configuration><crm_config/><nodes>{nodes}</nodes><resources/><constraints/></configuration><status>{status}</status></cib>"#
            ),
        )
        .unwrap();
    }

    fn keygen_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--output", "json", "stonith", "keygen"];
        all.extend_from_slice(args);
        let out = self.ok(&all);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["keygen"].clone()
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

/// The `key = ` value of a key file.
fn secret_of(file: &Path) -> String {
    fs::read_to_string(file)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("key = ").map(str::to_owned))
        .unwrap()
}

fn node_state(id: u32, node: &str, online: bool, published: Option<&str>) -> String {
    let (ccm, crmd) = if online {
        ("true", "online")
    } else {
        ("false", "offline")
    };
    let attrs = published.map_or_else(String::new, |v| {
        format!(
            r#"<transient_attributes id="{id}"><instance_attributes id="status-{id}"><nvpair id="status-{id}-pmkt-fence-keys" name="pmkt-fence-keys" value="{v}"/></instance_attributes></transient_attributes>"#
        )
    });
    format!(
        r#"<node_state id="{id}" uname="{node}" in_ccm="{ccm}" crmd="{crmd}" join="member" expected="member">{attrs}</node_state>"#
    )
}

#[test]
fn keygen_writes_a_private_file_and_never_prints_the_key() {
    let bed = Bed::new();
    bed.cib(&["node1", "node2"], "");
    let keys = bed.path("etc/keys");
    let keys_arg = keys.to_str().unwrap();
    let out = bed.ok(&[
        "stonith",
        "keygen",
        "web",
        "--key-dir",
        keys_arg,
        "--members",
        "web1,web2=www-b",
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(mode(&keys), 0o700, "new key directory");
    let files: Vec<PathBuf> = fs::read_dir(&keys)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1);
    let file = &files[0];
    assert_eq!(mode(file), 0o600);
    let name = file.file_name().unwrap().to_str().unwrap();
    let id = name
        .strip_prefix("web-")
        .and_then(|n| n.strip_suffix(".key"))
        .unwrap();
    assert_eq!(id.len(), 16, "{name}");
    let secret = secret_of(file);
    assert_eq!(secret.len(), 64);
    assert!(!stdout.contains(&secret) && !text(&out.stderr).contains(&secret));
    assert!(!stdout.to_ascii_lowercase().contains(&secret[..16]));
    let shown = file.display().to_string();
    assert!(stdout.contains(&format!("key id:      {id}")), "{stdout}");
    assert!(stdout.contains("fingerprint: "), "{stdout}");
    assert!(stdout.contains("/etc/pm-kvm-tools/fence.key"), "{stdout}");
    assert!(stdout.contains("install -D -m 0600"), "{stdout}");
    assert!(stdout.contains("vm-ctl check"), "{stdout}");
    assert!(
        stdout.contains("members = [\"web1\", \"web2\"]")
            && stdout.contains("node_names = { \"web2\" = \"www-b\" }"),
        "{stdout}"
    );
    if have("cibadmin") {
        for node in ["node1", "node2"] {
            assert!(
                stdout.contains(&format!("scp -p {shown} {node}:{shown}")),
                "{stdout}"
            );
        }
    }

    // rotation: a second key, a second file; JSON carries no key material either
    let v = bed.keygen_json(&["web", "--key-dir", keys_arg]);
    let second = PathBuf::from(v["file"].as_str().unwrap());
    assert_ne!(v["id"].as_str().unwrap(), id);
    assert_ne!(&second, file);
    assert_eq!(mode(&second), 0o600);
    assert_eq!(fs::read_dir(&keys).unwrap().count(), 2);
    let json = v.to_string();
    assert!(!json.contains(&secret) && !json.contains(&secret_of(&second)));
    assert!(
        v["instructions"]
            .as_str()
            .unwrap()
            .contains(&format!("rm {shown}")),
        "{json}"
    );
    assert_eq!(
        fs::read_to_string(file).unwrap().lines().count(),
        4,
        "the first file is untouched"
    );

    // a dry run writes nothing
    let out = bed.ok(&[
        "--dry-run",
        "stonith",
        "keygen",
        "web",
        "--key-dir",
        keys_arg,
    ]);
    assert!(text(&out.stdout).contains("Dry run: nothing written"));
    assert_eq!(fs::read_dir(&keys).unwrap().count(), 2);
}

#[test]
fn keygen_uses_key_dir_from_vm_stonithd_toml_and_reports_failures() {
    let bed = Bed::new();
    let keys = bed.path("from-toml");
    fs::write(
        bed.path("vm-stonithd.toml"),
        format!(
            "key_dir = \"{}\"\n[[cluster]]\nname = \"web\"\nmembers = [\"web1\"]\n",
            keys.display()
        ),
    )
    .unwrap();
    let out = bed.ok(&["stonith", "keygen", "web"]);
    assert_eq!(fs::read_dir(&keys).unwrap().count(), 1);
    assert!(text(&out.stdout).contains("already authorises guest cluster web"));

    let err = bed.fails(&["stonith", "keygen", "a;b"], 4);
    assert!(
        err.contains("guest cluster name \"a;b\" cannot be used"),
        "{err}"
    );
    let err = bed.fails(&["stonith", "keygen", "web", "--members", "a,a"], 21);
    assert!(err.contains("listed twice"), "{err}");
    // the key directory is a file: nothing can be written
    let file = bed.path("not-a-dir");
    fs::write(&file, "").unwrap();
    let err = bed.fails(
        &[
            "stonith",
            "keygen",
            "web",
            "--key-dir",
            file.to_str().unwrap(),
        ],
        19,
    );
    assert!(err.contains("key directory"), "{err}");
}

fn openssl_decrypt(token: &str, args: &[&str]) -> String {
    let mut child = Command::new("openssl")
        .args(["des-ede3", "-d", "-base64"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{token}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "openssl: {}", text(&out.stderr));
    text(&out.stdout)
}

#[test]
fn token_is_what_the_originals_openssl_decrypts() {
    let bed = Bed::new();
    let out = bed.ok(&["stonith", "token", "guest2"]);
    let stdout = text(&out.stdout);
    let line = stdout.strip_suffix('\n').unwrap();
    assert!(!line.contains('\n'), "{stdout}");
    let token = line.strip_prefix("guest2:").unwrap();
    assert!(token.starts_with("U2FsdGVkX1"), "{token}");
    assert!(token.len() <= 64 && !token.contains(' '));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("public") && stderr.contains("no real protection"),
        "{stderr}"
    );
    assert!(!stderr.contains(token), "the token appears only on stdout");

    // a password file and SHA-256: no warning
    let pw = bed.path("pw");
    fs::write(&pw, "s3cret\n").unwrap();
    fs::set_permissions(&pw, fs::Permissions::from_mode(0o600)).unwrap();
    let out = bed.ok(&[
        "stonith",
        "token",
        "guest2",
        "--resource",
        "vm_guest2",
        "--password-file",
        pw.to_str().unwrap(),
        "--md",
        "sha256",
    ]);
    assert_eq!(text(&out.stderr), "");
    let other = text(&out.stdout);
    let other = other.trim_end().strip_prefix("guest2:").unwrap();

    if !skip("decrypting tokens", "openssl") {
        assert_eq!(
            openssl_decrypt(token, &["-md", "md5", "-k", "vmstonith"]),
            "prmVMCTL_guest2\n"
        );
        let pass = format!("file:{}", pw.display());
        assert_eq!(
            openssl_decrypt(other, &["-md", "sha256", "-pass", &pass]),
            "vm_guest2\n"
        );
    }

    fs::set_permissions(&pw, fs::Permissions::from_mode(0o644)).unwrap();
    let err = bed.fails(
        &[
            "stonith",
            "token",
            "g1",
            "--password-file",
            pw.to_str().unwrap(),
        ],
        20,
    );
    assert!(err.contains("chmod 600"), "{err}");
    bed.fails(&["stonith", "token", "g1", "--resource", "a b"], 4);
    bed.fails(&["stonith", "token", "$(id)"], 4);
    bed.fails(&["stonith", "token", "g1", "--md", "sha1"], 2);
}

/// A guest cluster's CIB file as `cibadmin --empty` makes it, with these nodes.
fn empty_cib(bed: &Bed, nodes: &[&str]) -> PathBuf {
    let empty = Command::new("cibadmin").arg("--empty").output().unwrap();
    assert!(empty.status.success());
    let cib = bed.path("guest-cib.xml");
    fs::write(&cib, &empty.stdout).unwrap();
    for (id, node) in nodes.iter().enumerate() {
        let st = Command::new("cibadmin")
            .env("CIB_file", &cib)
            .args(["-C", "-o", "nodes", "-X"])
            .arg(format!(r#"<node id="{}" uname="{node}"/>"#, id + 1))
            .status()
            .unwrap();
        assert!(st.success());
    }
    cib
}

/// The crm section of guest-config's output.
fn crm_section(out: &str) -> &str {
    let end = out.find("# ===== pcs").unwrap();
    &out[..end]
}

#[test]
fn guest_config_prints_host_map_levels_and_properties() {
    let bed = Bed::new();
    let out = bed.ok(&[
        "stonith",
        "guest-config",
        "web",
        "--members",
        "web1=node1,web2=node2",
        "--timeout",
        "50",
    ]);
    let stdout = text(&out.stdout);
    for want in [
        "pcmk_host_map=\"node1:web1;node2:web2\"",
        "key_file=\"/etc/pm-kvm-tools/fence.key\" timeout=50 pcmk_reboot_timeout=70s pcmk_off_timeout=70s",
        "fencing_topology \\\n    node1: fence-vmstonith fence-meatware \\\n    node2: fence-vmstonith fence-meatware\n",
        "# primitive fence-helper stonith:external/stonith-helper",
        "property stonith-enabled=true stonith-timeout=70s",
        "pcs stonith level add 2 node1 fence-vmstonith",
        "pcs stonith level add 3 node2 fence-meatware",
        "# pcs stonith level add 1 node1 fence-helper",
        "pcs property set stonith-enabled=true stonith-timeout=70s",
        "meatclient -c NODE",
    ] {
        assert!(stdout.contains(want), "{want:?} missing:\n{stdout}");
    }
    assert_eq!(text(&out.stderr), "");

    bed.fails(
        &["stonith", "guest-config", "web", "--members", "a,b=a"],
        21,
    );
    bed.fails(&["stonith", "guest-config", "web", "--members", "a:b"], 21);
    bed.fails(
        &[
            "stonith",
            "guest-config",
            "web",
            "--members",
            "a",
            "--key-file",
            "rel/key",
        ],
        21,
    );
    bed.fails(&["stonith", "guest-config", "web", "--members", "a b"], 4);
    bed.fails(&["stonith", "guest-config", "web"], 2);
    bed.fails(
        &[
            "stonith",
            "guest-config",
            "web",
            "--members",
            "a",
            "--timeout",
            "0",
        ],
        2,
    );

    // --legacy: the cluster-glue plugin with tokens the original's hosts decrypt
    let out = bed.ok(&[
        "stonith",
        "guest-config",
        "web",
        "--members",
        "web1=node1,web2=node2",
        "--legacy",
    ]);
    let stdout = text(&out.stdout);
    assert!(text(&out.stderr).contains("public"));
    let crm = crm_section(&stdout);
    assert!(crm.contains("primitive fence-vm-stonith stonith:external/vm-stonith"));
    assert!(!crm.contains("key_file"));
    let hostlist = crm
        .lines()
        .find_map(|l| l.strip_prefix("    params hostlist=\""))
        .and_then(|s| s.split('"').next())
        .unwrap();
    let entries: Vec<(&str, &str)> = hostlist
        .split(' ')
        .map(|e| e.split_once(':').unwrap())
        .collect();
    assert_eq!(entries.len(), 2, "{hostlist}");
    assert_eq!(entries[0].0, "node1");
    assert_eq!(entries[1].0, "node2");
    if have("openssl") {
        for ((_, token), dom) in entries.iter().zip(["web1", "web2"]) {
            assert_eq!(
                openssl_decrypt(token, &["-md", "md5", "-k", "vmstonith"]),
                format!("prmVMCTL_{dom}\n")
            );
        }
    }
}

/// crmsh accepts the crm section on an empty CIB. fence_vmstonith is a guest-side agent, not
/// installed on this host, so crmsh cannot read its metadata: the load is forced (`-F`), which
/// skips only that check; the resulting CIB is then compared object by object.
#[test]
fn guest_config_loads_into_crmsh() {
    if skip("loading into crmsh", "crm") || skip("loading into crmsh", "cibadmin") {
        return;
    }
    let bed = Bed::new();
    let out = bed.ok(&[
        "stonith",
        "guest-config",
        "web",
        "--members",
        "web1=node1,web2=node2",
    ]);
    let stdout = text(&out.stdout);
    let cib = empty_cib(&bed, &["node1", "node2"]);
    let crm_file = bed.path("guest.crm");
    fs::write(&crm_file, crm_section(&stdout)).unwrap();
    let load = Command::new("crm")
        .env("CIB_file", &cib)
        .args(["-F", "configure", "load", "update"])
        .arg(&crm_file)
        .output()
        .unwrap();
    assert!(
        load.status.success(),
        "crm: {}{}",
        text(&load.stdout),
        text(&load.stderr)
    );
    let xml = fs::read_to_string(&cib).unwrap();
    for want in [
        r#"<primitive id="fence-vmstonith" class="stonith" type="fence_vmstonith">"#,
        r#"name="pcmk_host_map" value="node1:web1;node2:web2""#,
        r#"name="key_file" value="/etc/pm-kvm-tools/fence.key""#,
        r#"name="pcmk_reboot_timeout" value="60s""#,
        r#"<primitive id="fence-meatware" class="stonith" type="meatware">"#,
        r#"name="stonith-enabled" value="true""#,
        r#"name="stonith-timeout" value="60s""#,
    ] {
        assert!(xml.contains(want), "{want} missing:\n{xml}");
    }
    for node in ["node1", "node2"] {
        assert!(has_level(&xml, node, 1, "fence-vmstonith"), "{xml}");
        assert!(has_level(&xml, node, 2, "fence-meatware"), "{xml}");
    }
    assert!(
        !xml.contains(r#"<primitive id="fence-helper""#),
        "the helper stays commented out"
    );
}

/// Whether `xml` has a fencing level `index` for `target` with exactly `devices`.
fn has_level(xml: &str, target: &str, index: u32, devices: &str) -> bool {
    xml.lines().any(|l| {
        l.contains("<fencing-level ")
            && l.contains(&format!(r#"target="{target}""#))
            && l.contains(&format!(r#"index="{index}""#))
            && l.contains(&format!(r#"devices="{devices}""#))
    })
}

/// Split a printed pcs command line into words (double quotes only, as guest-config prints).
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ' ' if !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// pcs accepts the pcs section on an empty CIB file (`pcs -f`). fence_vmstonith's metadata is
/// not available on this host, so its `stonith create` gets `--force`.
#[test]
fn guest_config_runs_under_pcs() {
    if skip("running the pcs commands", "pcs") || skip("running the pcs commands", "cibadmin") {
        return;
    }
    let bed = Bed::new();
    let out = bed.ok(&["stonith", "guest-config", "web", "--members", "web1,web2"]);
    let stdout = text(&out.stdout);
    let cib = empty_cib(&bed, &["web1", "web2"]);
    let pcs = &stdout[stdout.find("# ===== pcs").unwrap()..];
    let mut ran = 0;
    for line in pcs.lines().filter(|l| l.starts_with("pcs ")) {
        let mut args = words(line);
        args.remove(0);
        if args.iter().any(|a| a == "fence_vmstonith") {
            args.push("--force".into());
        }
        let out = Command::new("pcs")
            .arg("-f")
            .arg(&cib)
            .args(&args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{line}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        ran += 1;
    }
    assert_eq!(ran, 2 + 4 + 1);
    let xml = fs::read_to_string(&cib).unwrap();
    for want in [
        r#"name="pcmk_host_map" value="web1:web1;web2:web2""#,
        r#"name="stonith-enabled" value="true""#,
    ] {
        assert!(xml.contains(want), "{want} missing:\n{xml}");
    }
    for node in ["web1", "web2"] {
        assert!(has_level(&xml, node, 2, "fence-vmstonith"), "{xml}");
        assert!(has_level(&xml, node, 3, "fence-meatware"), "{xml}");
    }
}

/// The test bed's base vm-ctl.conf (tests/testbed/vm-ctl-base.conf) on libvirt's test driver,
/// with no domain XML files.
fn config() -> String {
    format!(
        "vm_cfg_dir=/nonexistent\n{}",
        include_str!("../../tests/testbed/vm-ctl-base.conf").replace(
            "vm_hypervisor=qemu:///system",
            "vm_hypervisor=test:///default"
        )
    )
}

fn findings(out: &Output) -> Vec<serde_json::Value> {
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", text(&out.stdout), text(&out.stderr)));
    v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["subject"] == "guest-fencing")
        .cloned()
        .collect()
}

/// The finding of kind `code` (its stable code, docs/operations.md) at `level` about `about`
/// (a file, node, guest cluster or key named in its message; "" for any).
fn has<'a>(
    f: &'a [serde_json::Value],
    code: &str,
    level: &str,
    about: &str,
) -> Option<&'a serde_json::Value> {
    f.iter().find(|f| {
        f["code"] == code
            && f["level"] == level
            && (about.is_empty()
                || names(f["message"].as_str().unwrap_or_default()).any(|w| w == about))
    })
}

/// The names in a message: its words without the punctuation around them.
fn names(message: &str) -> impl Iterator<Item = &str> {
    message
        .split(|c: char| c.is_whitespace() || matches!(c, ',' | '(' | ')'))
        .map(|w| w.trim_end_matches("'s").trim_end_matches([':', ';', '.']))
}

#[test]
fn check_reports_open_key_files_and_clusters_without_keys() {
    if skip("vm-ctl check on a CIB file", "cibadmin") {
        return;
    }
    let bed = Bed::new();
    fs::write(bed.path("vm-ctl.conf"), config()).unwrap();
    bed.cib(&["node1", "node2"], "");
    let keys = bed.path("keys");
    let key = bed.keygen_json(&["web", "--key-dir", keys.to_str().unwrap()]);
    let file = key["file"].as_str().unwrap().to_owned();
    fs::write(
        bed.path("vm-stonithd.toml"),
        "[[cluster]]\nname = \"web\"\nmembers = [\"web1\"]\n[[cluster]]\nname = \"db\"\nmembers = [\"db1\"]\n",
    )
    .unwrap();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();

    let out = bed
        .cmd(&["--output", "json", "check"])
        .env("VM_CTL_KEY_DIR", &keys)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(18), "{}", text(&out.stderr));
    let f = findings(&out);
    let open = has(&f, "key-unusable", "error", &file).unwrap_or_else(|| panic!("{f:#?}"));
    assert_eq!(open["fix"], format!("chmod 600 {file}"));
    let db = has(&f, "cluster-without-key", "error", "db").unwrap_or_else(|| panic!("{f:#?}"));
    assert!(
        db["fix"]
            .as_str()
            .unwrap()
            .starts_with("vm-ctl stonith keygen db"),
        "{db}"
    );
    let web = has(&f, "cluster-without-key", "error", "web").unwrap_or_else(|| panic!("{f:#?}"));
    assert!(
        web["fix"].as_str().unwrap().starts_with(&format!(
            "make {file} usable (see above), or vm-ctl stonith keygen web"
        )),
        "{web}"
    );
    assert!(
        f.iter()
            .filter(|f| f["level"] != "ok")
            .all(|f| !f["fix"].as_str().unwrap_or_default().is_empty()),
        "every problem comes with its fix: {f:#?}"
    );

    // fixed: the web key loads; db still has none; the key dir comes from --key-dir now
    fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
    let out = bed.run(&[
        "--output",
        "json",
        "check",
        "--key-dir",
        keys.to_str().unwrap(),
    ]);
    let f = findings(&out);
    has(&f, "key", "ok", &file).unwrap_or_else(|| panic!("{f:#?}"));
    has(&f, "cluster-keys", "ok", "web").unwrap_or_else(|| panic!("{f:#?}"));
    has(&f, "cluster-without-key", "error", "db").unwrap_or_else(|| panic!("{f:#?}"));
    assert!(has(&f, "key-unusable", "error", "").is_none(), "{f:#?}");

    // a group-writable key directory is an error, a group-readable one a warning
    fs::set_permissions(&keys, fs::Permissions::from_mode(0o770)).unwrap();
    let f = findings(&bed.run(&[
        "--output",
        "json",
        "check",
        "--key-dir",
        keys.to_str().unwrap(),
    ]));
    let d = has(&f, "key-dir-writable", "error", keys.to_str().unwrap())
        .unwrap_or_else(|| panic!("{f:#?}"));
    assert!(d["message"].as_str().unwrap().contains("0770"), "{d}");
    assert_eq!(d["fix"], format!("chmod 700 {}", keys.display()));
    fs::set_permissions(&keys, fs::Permissions::from_mode(0o750)).unwrap();
    let f = findings(&bed.run(&[
        "--output",
        "json",
        "check",
        "--key-dir",
        keys.to_str().unwrap(),
    ]));
    let d = has(&f, "key-dir-mode", "warning", keys.to_str().unwrap())
        .unwrap_or_else(|| panic!("{f:#?}"));
    assert!(d["message"].as_str().unwrap().contains("0750"), "{d}");
}

#[test]
fn check_compares_the_keys_every_node_publishes() {
    if skip("vm-ctl check on a CIB file", "cibadmin") {
        return;
    }
    let bed = Bed::new();
    fs::write(bed.path("vm-ctl.conf"), config()).unwrap();
    bed.cib(&["node1"], "");
    let keys = bed.path("keys");
    let key = bed.keygen_json(&["web", "--key-dir", keys.to_str().unwrap()]);
    let (id, fp, file) = (
        key["id"].as_str().unwrap(),
        key["fingerprint"].as_str().unwrap(),
        key["file"].as_str().unwrap(),
    );
    fs::write(
        bed.path("vm-stonithd.toml"),
        "[[cluster]]\nname = \"web\"\nmembers = [\"web1\"]\n",
    )
    .unwrap();
    let same = format!("web:{id}:{fp}");
    let other_fp = if fp.starts_with('0') { "1" } else { "0" }.repeat(16);
    let status = [
        node_state(1, "node1", true, Some(&same)),
        node_state(2, "node2", true, Some(&format!("web:{id}:{other_fp}"))),
        node_state(3, "node3", true, Some("")),
        node_state(4, "node4", true, None),
        node_state(5, "node5", false, None),
    ]
    .concat();
    bed.cib(&["node1", "node2", "node3", "node4", "node5"], &status);
    let out = bed.run(&[
        "--output",
        "json",
        "check",
        "--key-dir",
        keys.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(18), "{}", text(&out.stderr));
    let f = findings(&out);
    has(&f, "node-keys-same", "ok", "node1").unwrap_or_else(|| panic!("{f:#?}"));
    let diff = has(&f, "node-key-differs", "error", "node2").unwrap_or_else(|| panic!("{f:#?}"));
    assert!(
        names(diff["message"].as_str().unwrap()).any(|w| w == format!("web:{id}")),
        "{diff}"
    );
    assert!(
        diff["fix"].as_str().unwrap().starts_with(&format!(
            "scp -p {file} node2:{file}, then reload vm-stonithd on node2"
        )),
        "{diff}"
    );
    let lack = has(&f, "node-key-missing", "error", "node3").unwrap_or_else(|| panic!("{f:#?}"));
    assert!(
        names(lack["message"].as_str().unwrap()).any(|w| w == format!("web:{id}")),
        "{lack}"
    );
    assert!(lack["fix"].as_str().unwrap().contains("node3:"), "{lack}");
    has(&f, "node-publishes-nothing", "warning", "node4").unwrap_or_else(|| panic!("{f:#?}"));
    has(&f, "node-offline", "ok", "node5").unwrap_or_else(|| panic!("{f:#?}"));
}

#[test]
fn check_without_guest_fencing_is_quiet() {
    if skip("vm-ctl check on a CIB file", "cibadmin") {
        return;
    }
    let bed = Bed::new();
    fs::write(bed.path("vm-ctl.conf"), config()).unwrap();
    bed.cib(&["node1"], &node_state(1, "node1", true, None));
    let out = bed.run(&[
        "--output",
        "json",
        "check",
        "--key-dir",
        bed.path("no-keys").to_str().unwrap(),
    ]);
    let f = findings(&out);
    assert!(f.iter().all(|f| f["level"] == "ok"), "{f:#?}");
    has(&f, "fencing-not-set-up", "ok", "").unwrap_or_else(|| panic!("{f:#?}"));
}
