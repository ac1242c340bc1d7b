//! libvirt tier: this machine's test-bed libvirtd (`qemu:///system`) through the project's own
//! libvirt crate (`vm-libvirt`, over the `virt` bindings).

// Test code: a failed step panics with its cause.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use vm_libvirt::{DomainState, DomainXml, Hypervisor};
use vm_tests::libvirt::HostLibvirt;
use vm_tests::{evidence, state_dir, wait_for};

/// A guest with no OS at all (it sits in the firmware): enough for QEMU to create the
/// `vmconnectd` channel socket, which is what the libvirt side of the project looks at.
fn firmware_only_domain(name: &str, channel: &std::path::Path) -> String {
    format!(
        "<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type></os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <controller type='virtio-serial' index='0'/>
    <channel type='unix'>
      <source mode='bind' path='{}'/>
      <target type='virtio' name='vmconnectd'/>
    </channel>
    <memballoon model='none'/>
  </devices>
</domain>",
        channel.display()
    )
}

#[test]
#[ignore = "tier libvirt: needs root, libvirtd and QEMU"]
fn libvirt_runs_a_transient_domain_with_a_vmconnectd_channel() {
    let t0 = Instant::now();
    let lv = HostLibvirt::acquire();
    evidence("libvirt", t0, "libvirtd up (qemu:///system)");
    let dir = state_dir().join("run").join("libvirt-tier");
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("pmkt-lv0.sock");
    let _ = std::fs::remove_file(&sock);

    let info = lv
        .conn()
        .create_transient(&firmware_only_domain("pmkt-lv0", &sock))
        .expect("create transient domain");
    assert_eq!(info.name, "pmkt-lv0");
    assert_eq!(info.state, DomainState::Running);
    assert!(!info.persistent, "created transient, as VirtualDomain does");
    evidence(
        "libvirt",
        t0,
        format!("domain pmkt-lv0 {} ({})", info.state, info.uuid),
    );

    // The live XML names the channel; QEMU listens on it (mode='bind').
    let live = DomainXml::parse(&lv.conn().domain_xml("pmkt-lv0").unwrap()).unwrap();
    let channel = live
        .vmconnectd_channel()
        .expect("vmconnectd channel in live XML");
    assert_eq!(channel.source_mode.as_deref(), Some("bind"));
    assert_eq!(channel.source_path.as_deref(), Some(sock.to_str().unwrap()));
    UnixStream::connect(&sock).expect("QEMU accepts a connection on the channel socket");
    let listed = lv.conn().domains().unwrap();
    assert!(listed.iter().any(|d| d.name == "pmkt-lv0"), "{listed:?}");

    lv.conn().destroy("pmkt-lv0").unwrap();
    wait_for("the domain to disappear", Duration::from_secs(20), || {
        lv.conn()
            .domain("pmkt-lv0")
            .unwrap()
            .is_none()
            .then_some(())
    });
    assert!(
        UnixStream::connect(&sock).is_err(),
        "nobody listens on the channel after destroy"
    );
    evidence(
        "libvirt",
        t0,
        "destroyed; transient domain gone, channel closed",
    );
}

#[test]
#[ignore = "tier libvirt: needs root, libvirtd and QEMU"]
fn libvirt_vmctl_check_catches_autostart() {
    let t0 = Instant::now();
    let _lv = HostLibvirt::acquire();
    let bed = vm_tests::vmctl::VmCtlBed::new();
    let xml = bed.xml_dir().join("pmkt-auto.xml");
    std::fs::write(
        &xml,
        "<domain type='qemu'><name>pmkt-auto</name><memory unit='MiB'>64</memory>\
         <os><type arch='x86_64' machine='q35'>hvm</type></os><devices/></domain>",
    )
    .unwrap();
    let virsh = |args: &[&str]| {
        vm_tests::run_ok(
            &vm_common::process::Cmd::new("virsh")
                .args(["-c", "qemu:///system"])
                .args(args),
        )
    };
    virsh(&["define", xml.to_str().unwrap()]);
    virsh(&["autostart", "pmkt-auto"]);
    let out = bed
        .cmd(&["--output", "json", "check", "pmkt-auto"])
        .run()
        .unwrap();
    virsh(&["undefine", "pmkt-auto"]);
    let text = out.stdout_text();
    assert_eq!(out.code(), Some(18), "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    // the finding's stable code (docs/operations.md), and its fix
    let autostart = v["findings"].as_array().unwrap().iter().find(|f| {
        f["subject"] == "pmkt-auto" && f["code"] == "autostart-on" && f["level"] == "error"
    });
    assert!(
        autostart.is_some_and(|f| f["fix"] == "virsh autostart --disable pmkt-auto"),
        "{text}"
    );
    evidence(
        "libvirt",
        t0,
        "vm-ctl check: a persistently defined guest with libvirt autostart on is an error, with its fix",
    );
}

#[test]
#[ignore = "tier libvirt: needs root, libvirtd and QEMU"]
fn libvirt_lifecycle_events_arrive() {
    use vm_libvirt::DomainEvent;
    let t0 = Instant::now();
    let lv = HostLibvirt::acquire();
    let (tx, rx) = std::sync::mpsc::channel();
    let _watcher = vm_libvirt::events::watch(vm_tests::libvirt::URI, move |e| {
        let _ = tx.send(e);
    })
    .unwrap();
    let dir = state_dir().join("run").join("libvirt-tier");
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("pmkt-ev0.sock");
    lv.conn()
        .create_transient(&firmware_only_domain("pmkt-ev0", &sock))
        .unwrap();
    let next = |what: &str| {
        rx.recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("no {what} event"))
    };
    let mut seen = Vec::new();
    loop {
        let e = next("Started");
        seen.push(format!("{e:?}"));
        if e == (DomainEvent::Started {
            name: "pmkt-ev0".into(),
            migrated: false,
        }) {
            break;
        }
    }
    lv.conn().destroy("pmkt-ev0").unwrap();
    loop {
        let e = next("Stopped");
        seen.push(format!("{e:?}"));
        if matches!(&e, DomainEvent::Stopped { name, migrated: false } if name == "pmkt-ev0") {
            break;
        }
    }
    evidence(
        "libvirt",
        t0,
        format!("lifecycle events from libvirtd: {}", seen.join(", ")),
    );
}

/// Issue 12 item 1: in libvirt mode a guest's identity on the host relay comes from libvirt and
/// from nothing else, and the socket must be served by that domain's QEMU. Three impostors in
/// the relay's socket directory, each a process of this test listening where QEMU would:
/// - `g9`, a socket no domain claims (before: linked as guest `g9`, identity socket-name, up);
/// - `pmkt-id1`'s socket, unlinked and bound again by the impostor before the relay starts
///   while the domain runs (libvirt claims the path, but its QEMU does not listen on it);
/// - `pmkt-id2`'s socket, bound by the impostor after the domain was destroyed while the relay
///   ran (the identity cached from libvirt outlived the domain).
///
/// None may be linked; the real QEMU of `pmkt-id2` must be, with identity libvirt.
#[test]
#[ignore = "tier libvirt: needs root, libvirtd and QEMU"]
fn libvirt_relay_takes_identities_from_libvirt_and_the_listening_qemu_only() {
    use std::os::unix::net::UnixListener;
    use vm_tests::connectd::HostRelay;
    let t0 = Instant::now();
    let lv = HostLibvirt::acquire();
    let dir = state_dir().join("run").join("libvirt-relay");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let sock = |name: &str| dir.join(name);
    for name in ["pmkt-id1", "pmkt-id2"] {
        lv.conn()
            .create_transient(&firmware_only_domain(name, &sock(name)))
            .unwrap();
    }
    // Impostors keep their listeners open (and never accept: the relay's connect succeeds on
    // the backlog, which is all a link needs to be made).
    let _g9 = UnixListener::bind(sock("g9")).unwrap();
    std::fs::remove_file(sock("pmkt-id1")).unwrap();
    let _id1 = UnixListener::bind(sock("pmkt-id1")).unwrap();
    // the relay's own socket and log outside the directory it watches
    let own = state_dir().join("run").join("libvirt-relay-own");
    std::fs::create_dir_all(&own).unwrap();
    let (local, log) = (own.join("relay.sock"), own.join("relay.log"));
    let _ = std::fs::remove_file(&log);
    let relay = HostRelay::start(&dir, &local, "lvhost", &[], &log);
    let guest = |status: &serde_json::Value, name: &str| {
        status["guests"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|g| g["domain"] == name)
            .cloned()
    };
    wait_for("pmkt-id2's link", Duration::from_secs(30), || {
        guest(&relay.status(), "pmkt-id2").filter(|g| g["state"] == "up")
    });
    // give the impostors the time the real guest needed, and more
    std::thread::sleep(Duration::from_secs(3));
    let mut wrong = Vec::new();
    let status = relay.status();
    let id2 = guest(&status, "pmkt-id2").unwrap();
    if id2["identity"] != "libvirt" {
        wrong.push(format!(
            "pmkt-id2 (real QEMU) has identity {}",
            id2["identity"]
        ));
    }
    if let Some(g) = guest(&status, "g9") {
        wrong.push(format!("a socket no domain claims was linked: {g}"));
    }
    if let Some(g) = guest(&status, "pmkt-id1") {
        wrong.push(format!(
            "an impostor on a running domain's socket path was linked: {g}"
        ));
    }
    evidence(
        "libvirt",
        t0,
        format!("relay up; guests: {}", status["guests"]),
    );
    lv.conn().destroy("pmkt-id2").unwrap();
    wait_for("pmkt-id2's link to close", Duration::from_secs(30), || {
        guest(&relay.status(), "pmkt-id2").is_none().then_some(())
    });
    let _ = std::fs::remove_file(sock("pmkt-id2"));
    let _id2 = UnixListener::bind(sock("pmkt-id2")).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    if let Some(g) = guest(&relay.status(), "pmkt-id2") {
        wrong.push(format!(
            "an impostor on a destroyed domain's socket path was linked: {g}"
        ));
    }
    let _ = lv.conn().destroy("pmkt-id1");
    assert!(
        wrong.is_empty(),
        "{}\nrelay log:\n{}",
        wrong.join("\n"),
        relay.log()
    );
    evidence(
        "libvirt",
        t0,
        "relay linked only the socket libvirt names and its QEMU serves; impostors (unclaimed \
         socket, swapped socket of a running domain, socket of a destroyed domain) refused",
    );
}
