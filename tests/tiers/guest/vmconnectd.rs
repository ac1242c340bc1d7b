//! vm-connectd over the real virtio-serial channel of a TCG guest: the guest's own daemon
//! (started by its init) and a host-mode daemon on this machine; `vm-connect ping` inside the
//! guest proves the whole path; the path recovers when the host daemon restarts and when the
//! guest restarts.

use std::time::{Duration, Instant};

use vm_libvirt::Hypervisor;
use vm_tests::connectd::HostRelay;
use vm_tests::guest::{Console, Vport, domain_xml, wait_ready};
use vm_tests::libvirt::HostLibvirt;
use vm_tests::{evidence, state_dir, wait_for};

/// `vm-connect ping` in the guest until it answers (a host change answers "retry" first).
fn ping_until_answered(console: &mut Console, tries: u32) -> String {
    let out = console
        .run(
            &format!(
                "for i in $(seq {tries}); do if vm-connect --timeout 5 ping; then exit 0; fi; sleep 0.5; done; exit 1"
            ),
            Duration::from_secs(u64::from(tries) * 6 + 10),
        )
        .unwrap();
    assert_eq!(
        out.status, 0,
        "vm-connect ping never answered:\n{}",
        out.output
    );
    out.output
}

#[test]
#[ignore = "tier guest: needs root, libvirtd, QEMU and the guest image"]
fn guest_vmconnectd_relays_over_real_virtio_serial() {
    let t0 = Instant::now();
    let lv = HostLibvirt::acquire();
    let name = "pmkt-vc1";
    let rundir = state_dir().join("run").join("guest-vmc");
    let sock_dir = rundir.join("vmconnectd");
    std::fs::create_dir_all(&sock_dir).unwrap();
    let log = rundir.join(format!("{name}.console.log"));
    let _ = std::fs::remove_file(&log);
    let xml = domain_xml(name, &rundir, &rundir, Vport::Daemon);
    lv.conn().create_transient(&xml).unwrap();
    wait_ready(&log, Duration::from_secs(90));
    let relay_log = rundir.join("host-vmconnectd.log");
    let _ = std::fs::remove_file(&relay_log);
    let mut relay = HostRelay::start(
        &sock_dir,
        &rundir.join("vmc.sock"),
        "testhost",
        &["--libvirt", "qemu:///system"],
        &relay_log,
    );
    let mut console = Console::connect(&rundir.join(format!("{name}.console.sock"))).unwrap();
    let out = ping_until_answered(&mut console, 20);
    assert!(out.contains("pong from host testhost"), "{out}");
    evidence("guest", t0, format!("in the guest: {}", out.trim()));

    let status = relay.status();
    let g = &status["guests"][0];
    assert_eq!(g["domain"], name, "{status}");
    assert_eq!(g["identity"], "libvirt", "identity from libvirt: {status}");
    assert_eq!(g["state"], "up");
    assert!(
        g["guest_software"]
            .as_str()
            .unwrap()
            .starts_with("pm-kvm-tools"),
        "{status}"
    );
    evidence(
        "guest",
        t0,
        format!("host vm-connectd status: guest {name}, identity from libvirt, link up"),
    );

    // the host daemon restarts: the guest daemon keeps running and finds the new one
    relay.restart();
    let out = ping_until_answered(&mut console, 30);
    assert!(out.contains("pong from host testhost"), "{out}");
    let guest_log = console
        .run("cat /var/log/vm-connectd.log", Duration::from_secs(10))
        .unwrap()
        .output;
    assert!(
        guest_log.contains("host side gone") || guest_log.contains("host introduced itself"),
        "{guest_log}"
    );
    let restarts = console
        .run(
            "grep -c 'guest mode started' /var/log/vm-connectd.log",
            Duration::from_secs(10),
        )
        .unwrap();
    assert_eq!(
        restarts.output.trim(),
        "1",
        "the guest daemon itself must not have restarted"
    );
    evidence(
        "guest",
        t0,
        "host vm-connectd restarted: the guest daemon (same process) reconnected, ping answered again",
    );

    // the guest restarts: QEMU recreates the socket, the host daemon connects again
    drop(console);
    lv.conn().destroy(name).unwrap();
    wait_for("the old link to close", Duration::from_secs(20), || {
        relay.status()["guests"]
            .as_array()
            .unwrap()
            .is_empty()
            .then_some(())
    });
    let _ = std::fs::remove_file(&log);
    lv.conn().create_transient(&xml).unwrap();
    wait_ready(&log, Duration::from_secs(90));
    let mut console = Console::connect(&rundir.join(format!("{name}.console.sock"))).unwrap();
    let out = ping_until_answered(&mut console, 30);
    assert!(out.contains("pong from host testhost"), "{out}");
    assert!(relay.alive(), "host daemon died");
    evidence(
        "guest",
        t0,
        "guest restarted: host vm-connectd reconnected to the new socket, ping answered",
    );
    lv.conn().destroy(name).unwrap();
}
