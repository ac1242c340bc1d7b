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
    let out = bed.cmd(&["check", "pmkt-auto"]).run().unwrap();
    virsh(&["undefine", "pmkt-auto"]);
    let text = out.stdout_text();
    assert_eq!(out.code(), Some(18), "{text}");
    assert!(
        text.contains("libvirt autostart is on")
            && text.contains("virsh autostart --disable pmkt-auto"),
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
