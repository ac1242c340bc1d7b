//! Issue 17, key delivery: the host cluster's Pacemaker authkey reaches a TCG guest that the
//! CIB runs as a guest node, over its own virtio-serial channel, and no other guest. Real
//! parts: two TCG guests each running the static guest vm-connectd with
//! `--pacemaker-authkey`, the host vm-connectd knowing them from libvirt, vm-stonithd serving
//! the `remote` module on a CIB file (`CIB_file`: one guest's VirtualDomain primitive has
//! `remote-node`, the other's not) into which it also publishes the fingerprints, and
//! `vm-ctl check` reading them.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use vm_libvirt::Hypervisor;
use vm_proto::authkey::{Fingerprint, HOST_ATTR, guest_attr};
use vm_tests::connectd::HostRelay;
use vm_tests::guest::{Console, Vport, domain_xml, wait_ready};
use vm_tests::libvirt::HostLibvirt;
use vm_tests::remote::{RemoteModule, attr};
use vm_tests::{evidence, project_bin, state_dir, wait_for};

fn primitive(dom: &str, meta: &str) -> String {
    format!(
        r#"<primitive id="prmVMCTL_{dom}" class="ocf" provider="pm-kvm-tools" type="VirtualDomain">
  <instance_attributes id="prmVMCTL_{dom}-instance_attributes">
    <nvpair id="prmVMCTL_{dom}-instance_attributes-config" name="config" value="/etc/libvirt/qemu/{dom}.xml"/>
  </instance_attributes>
  <meta_attributes id="prmVMCTL_{dom}-meta_attributes">
    <nvpair id="prmVMCTL_{dom}-meta_attributes-target-role" name="target-role" value="Stopped"/>{meta}
  </meta_attributes>
</primitive>"#
    )
}

/// A CIB with host node `node` and the two guests' resources, only `node_dom` a guest node.
fn cib(node: &str, node_dom: &str, plain_dom: &str) -> String {
    let remote = format!(
        r#"
    <nvpair id="prmVMCTL_{node_dom}-meta_attributes-remote-node" name="remote-node" value="{node_dom}"/>"#
    );
    format!(
        r#"<cib validate-with="pacemaker-3.9" epoch="1" num_updates="0" admin_epoch="0">
  <configuration><crm_config/><nodes><node id="1" uname="{node}"/></nodes>
    <resources>{}{}</resources><constraints/></configuration>
  <status>
    <node_state id="1" uname="{node}" in_ccm="true" crmd="online" join="member" expected="member"><lrm id="1"><lrm_resources>{}</lrm_resources></lrm></node_state>
  </status>
</cib>
"#,
        primitive(node_dom, &remote),
        primitive(plain_dom, ""),
        // the guest node runs here (started by the test through libvirt, recorded as if by
        // Pacemaker): vm-stonithd keeps its attribute, vm-ctl check judges it here
        vm_tests::cib::started_entry(&format!("prmVMCTL_{node_dom}"), node)
    )
}

fn write_key(path: &Path, fill: u8) -> Fingerprint {
    let key: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 ^ fill)
        .collect();
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, &key).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o400)).unwrap();
    std::fs::rename(&tmp, path).unwrap();
    Fingerprint::of(&key)
}

/// `stat` and `sha256sum` of the guest's key, or why not.
fn guest_key(console: &mut Console) -> String {
    console
        .run(
            "stat -c '%a %u' /etc/pacemaker/authkey && sha256sum /etc/pacemaker/authkey",
            Duration::from_secs(20),
        )
        .unwrap()
        .output
}

#[test]
#[ignore = "tier guest: needs root, libvirtd, QEMU and the guest image"]
fn only_a_guest_node_gets_the_pacemaker_key_over_its_channel() {
    let t0 = Instant::now();
    let lv = HostLibvirt::acquire();
    let (gn, plain) = ("pmkt-gn1", "pmkt-gn2");
    let rundir = state_dir().join("run").join("guest-authkey");
    let sock_dir = rundir.join("vmconnectd");
    std::fs::create_dir_all(&sock_dir).unwrap();
    let work = tempfile::Builder::new()
        .prefix("pmkt-authkey-")
        .tempdir()
        .unwrap();
    for name in [gn, plain] {
        let log = rundir.join(format!("{name}.console.log"));
        let _ = std::fs::remove_file(&log);
        lv.conn()
            .create_transient(&domain_xml(name, &rundir, &rundir, Vport::None))
            .unwrap();
    }
    for name in [gn, plain] {
        wait_ready(
            &rundir.join(format!("{name}.console.log")),
            Duration::from_secs(120),
        );
    }
    evidence("guest", t0, format!("{gn} and {plain} booted (TCG)"));

    let relay_log = rundir.join("host-vmconnectd.log");
    let _ = std::fs::remove_file(&relay_log);
    let host_socket = rundir.join("vmc.sock");
    let mut relay = HostRelay::start(
        &sock_dir,
        &host_socket,
        "testhost",
        &["--libvirt", "qemu:///system", "--no-attributes"],
        &relay_log,
    );

    // the host side: its key, a CIB file in which only gn is a guest node, vm-stonithd
    let node = vm_common::process::cluster_node_name();
    let host_key = work.path().join("authkey");
    let fp = write_key(&host_key, 0);
    let cib_path = work.path().join("cib.xml");
    std::fs::write(&cib_path, cib(&node, gn, plain)).unwrap();
    let stonithd = RemoteModule::start(work.path(), &relay, &host_socket, &host_key, &cib_path);
    let stonithd_log = stonithd.log.clone();
    wait_for(
        "this host's fingerprint to be published",
        Duration::from_secs(30),
        || (attr(&cib_path, &node, HOST_ATTR)? == fp.to_string()).then_some(()),
    );

    // both guests run the guest daemon keeping /etc/pacemaker/authkey
    let mut consoles = Vec::new();
    for name in [gn, plain] {
        let mut c = Console::connect(&rundir.join(format!("{name}.console.sock"))).unwrap();
        let out = c
            .run(
                "vm-connectd -t guest --pacemaker-authkey /etc/pacemaker/authkey -v >/var/log/vm-connectd.log 2>&1 &",
                Duration::from_secs(20),
            )
            .unwrap();
        assert_eq!(out.status, 0, "{}", out.output);
        consoles.push(c);
    }
    let [gn_console, plain_console] = &mut consoles[..] else {
        unreachable!()
    };

    let got = wait_for(
        "the guest node to hold the key",
        Duration::from_secs(90),
        || {
            let out = guest_key(gn_console);
            out.contains(&fp.to_string()).then_some(out)
        },
    );
    assert!(
        got.lines().any(|l| l.trim() == "400 0"),
        "mode 0400, owned by root: {got}"
    );
    evidence(
        "guest",
        t0,
        format!("{gn} (a guest node) holds the host's key: 0400 root, sha256 {fp}"),
    );
    wait_for(
        "the guest node's fingerprint to be published",
        Duration::from_secs(60),
        || (attr(&cib_path, &node, &guest_attr(gn))? == fp.to_string()).then_some(()),
    );
    evidence(
        "guest",
        t0,
        format!("host: {}={fp} on {node}", guest_attr(gn)),
    );

    // the other guest asked too, over its own channel, and got nothing
    wait_for(
        "the refusal of the other guest",
        Duration::from_secs(60),
        || {
            let log = std::fs::read_to_string(&stonithd_log).ok()?;
            log.contains(&format!(
                "refused: guest {plain} is not configured as a guest node"
            ))
            .then_some(())
        },
    );
    let out = plain_console
        .run(
            "test ! -e /etc/pacemaker/authkey && grep -c 'gives this guest no Pacemaker key' /var/log/vm-connectd.log",
            Duration::from_secs(20),
        )
        .unwrap();
    assert_eq!(out.status, 0, "{plain} must hold no key: {}", out.output);
    assert_eq!(attr(&cib_path, &node, &guest_attr(plain)), None);
    let log = std::fs::read_to_string(&stonithd_log).unwrap();
    let secret_hex: String = std::fs::read(&host_key).unwrap()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(!log.contains(&secret_hex), "the key must never be logged");
    evidence(
        "guest",
        t0,
        format!(
            "{plain} (not a guest node) refused: no key file, no attribute; the key is in no log"
        ),
    );

    // the host's key changes; a new link (the host relay restarts) brings it at once
    let fp2 = write_key(&host_key, 0x5a);
    relay.restart();
    let started = Instant::now();
    wait_for(
        "the new key to reach the guest node",
        Duration::from_secs(60),
        || {
            guest_key(gn_console)
                .contains(&fp2.to_string())
                .then_some(())
        },
    );
    wait_for(
        "the new fingerprint to be published",
        Duration::from_secs(30),
        || (attr(&cib_path, &node, &guest_attr(gn))? == fp2.to_string()).then_some(()),
    );
    evidence(
        "guest",
        t0,
        format!(
            "host key changed, host relay restarted: {gn} holds the new key {:.1} s later, published",
            started.elapsed().as_secs_f64()
        ),
    );

    // vm-ctl check compares the fingerprints it finds in the CIB
    let check = vm_common::process::Cmd::new(project_bin("vm-ctl"))
        .arg("--config")
        .arg(vm_tests::testbed_dir().join("vm-ctl-base.conf"))
        .args(["--output", "json", "check", gn])
        .env("CIB_file", &cib_path)
        .run()
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&check.stdout_text())
        .unwrap_or_else(|e| panic!("{e}: {}{}", check.stdout_text(), check.stderr_text()));
    let codes: Vec<(String, String)> = v["findings"]
        .as_array()
        .unwrap_or_else(|| panic!("no findings: {v}"))
        .iter()
        .filter(|f| {
            f["code"]
                .as_str()
                .is_some_and(|c| c.starts_with("authkey-"))
        })
        .map(|f| {
            (
                f["subject"].as_str().unwrap().to_owned(),
                f["code"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        codes,
        [
            ("cluster".to_owned(), "authkey-host-same".to_owned()),
            (gn.to_owned(), "authkey-guest-same".to_owned())
        ],
        "{v}"
    );
    evidence(
        "guest",
        t0,
        format!("vm-ctl check: {gn}'s key is the host's"),
    );
    drop(consoles);
    for name in [gn, plain] {
        let _ = lv.conn().destroy(name);
    }
}
