//! The `remote` service through the real relays, without libvirt (issue 17): two guests stood
//! in for by bridged guest-mode vm-connectds with `--pacemaker-authkey`, the real host
//! vm-connectd naming them by `--guest NAME=SOCKET` (a trusted identity), vm-stonithd on a CIB
//! file in which only one is a guest node. The guest tier's `authkey.rs` does the same with
//! TCG guests over real virtio-serial channels.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use vm_proto::authkey::{Fingerprint, HOST_ATTR, guest_attr};
use vm_tests::connectd::HostRelay;
use vm_tests::remote::{RemoteModule, attr};
use vm_tests::stonith::BridgedGuest;
use vm_tests::{evidence, wait_for};

#[test]
#[ignore = "tier cib: needs Pacemaker's tools"]
fn remote_gives_the_key_to_guest_nodes_only_through_the_relays() {
    let t0 = Instant::now();
    let work = tempfile::Builder::new()
        .prefix("pmkt-remote-")
        .tempdir()
        .unwrap();
    let chan = work.path().join("chan");
    std::fs::create_dir(&chan).unwrap();
    // gn1 is a guest node running on this node (its start in the CIB's history), gn2 not a
    // guest node, gn3 a guest node that does not run here: what it reported here earlier (an
    // attribute a previous vm-stonithd left) is stale
    let (gn, plain, gone) = ("gn1", "gn2", "gn3");
    let relay_args = [
        BridgedGuest::relay_arg(&chan, gn),
        BridgedGuest::relay_arg(&chan, plain),
        "--no-libvirt".to_owned(),
        "--no-attributes".to_owned(),
    ];
    let relay_args: Vec<&str> = relay_args.iter().map(String::as_str).collect();
    let host_socket = work.path().join("host.sock");
    let relay = HostRelay::start(
        &chan,
        &host_socket,
        "testhost",
        &relay_args,
        &work.path().join("vm-connectd.log"),
    );

    let node = vm_common::process::cluster_node_name();
    let key: Vec<u8> = (0..2048u32).map(|i| (i * 7 + 3) as u8).collect();
    let host_key = work.path().join("authkey");
    std::fs::write(&host_key, &key).unwrap();
    std::fs::set_permissions(&host_key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let fp = Fingerprint::of(&key);
    let prim = |dom: &str, meta: &str| {
        format!(
            r#"<primitive id="prmVMCTL_{dom}" class="ocf" provider="pm-kvm-tools" type="VirtualDomain"><instance_attributes id="i-{dom}"><nvpair id="i-{dom}-c" name="config" value="/etc/libvirt/qemu/{dom}.xml"/></instance_attributes><meta_attributes id="m-{dom}"><nvpair id="m-{dom}-t" name="target-role" value="Stopped"/>{meta}</meta_attributes></primitive>"#
        )
    };
    let cib_path = work.path().join("cib.xml");
    std::fs::write(
        &cib_path,
        format!(
            r#"<cib validate-with="pacemaker-3.9" epoch="1" num_updates="0" admin_epoch="0"><configuration><crm_config/><nodes><node id="1" uname="{node}"/></nodes><resources>{}{}{}</resources><constraints/></configuration><status><node_state id="1" uname="{node}" in_ccm="true" crmd="online" join="member" expected="member"><transient_attributes id="1"><instance_attributes id="status-1"><nvpair id="status-1-{gone_attr}" name="{gone_attr}" value="-"/><nvpair id="status-1-{gn_attr}" name="{gn_attr}" value="-"/></instance_attributes></transient_attributes><lrm id="1"><lrm_resources>{started}</lrm_resources></lrm></node_state></status></cib>"#,
            prim(
                gn,
                &format!(r#"<nvpair id="m-{gn}-r" name="remote-node" value="{gn}"/>"#)
            ),
            prim(plain, ""),
            prim(
                gone,
                &format!(r#"<nvpair id="m-{gone}-r" name="remote-node" value="{gone}"/>"#)
            ),
            started = vm_tests::cib::started_entry(&format!("prmVMCTL_{gn}"), &node),
            gone_attr = guest_attr(gone),
            gn_attr = guest_attr(gn),
        ),
    )
    .unwrap();
    let stonithd = RemoteModule::start(work.path(), &relay, &host_socket, &host_key, &cib_path);
    let stonithd_log = stonithd.log.clone();
    assert_eq!(
        attr(&cib_path, &node, HOST_ATTR).as_deref(),
        Some(fp.to_string().as_str()),
        "the host's fingerprint is published at start"
    );
    wait_for(
        "the stale attribute of a guest node not running here to go",
        Duration::from_secs(30),
        || {
            attr(&cib_path, &node, &guest_attr(gone))
                .is_none()
                .then_some(())
        },
    );
    assert!(
        attr(&cib_path, &node, &guest_attr(gn)).is_some(),
        "the attribute of a guest node running here stays"
    );
    evidence(
        "cib",
        t0,
        format!(
            "remote: {} (a guest node not running on this node) removed at registration, {} kept",
            guest_attr(gone),
            guest_attr(gn)
        ),
    );

    let gn_key = work.path().join(gn).join("authkey");
    let plain_key = work.path().join(plain).join("authkey");
    let _g1 = BridgedGuest::start_with(
        &chan,
        work.path(),
        gn,
        &["--pacemaker-authkey", gn_key.to_str().unwrap()],
    );
    let _g2 = BridgedGuest::start_with(
        &chan,
        work.path(),
        plain,
        &["--pacemaker-authkey", plain_key.to_str().unwrap()],
    );
    wait_for("the guest node's key", Duration::from_secs(30), || {
        (std::fs::read(&gn_key).ok()? == key).then_some(())
    });
    let mode = std::fs::metadata(&gn_key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o400);
    wait_for(
        "the guest node's fingerprint on the host",
        Duration::from_secs(30),
        || (attr(&cib_path, &node, &guest_attr(gn))? == fp.to_string()).then_some(()),
    );
    evidence(
        "cib",
        t0,
        format!(
            "remote: guest node {gn} got the host's key (0400) through the relays; {}={fp} published",
            guest_attr(gn)
        ),
    );
    wait_for("the other guest's refusal", Duration::from_secs(30), || {
        std::fs::read_to_string(&stonithd_log)
            .ok()?
            .contains(&format!(
                "refused: guest {plain} is not configured as a guest node"
            ))
            .then_some(())
    });
    assert!(!plain_key.exists(), "{plain} must get no key");
    assert_eq!(attr(&cib_path, &node, &guest_attr(plain)), None);
    wait_for(
        "the guest to log its refusal",
        Duration::from_secs(10),
        || {
            std::fs::read_to_string(work.path().join(format!("{plain}.guest.log")))
                .ok()?
                .contains("gives this guest no Pacemaker key")
                .then_some(())
        },
    );
    evidence(
        "cib",
        t0,
        format!("remote: {plain} (not a guest node) refused, holds no key"),
    );
}
