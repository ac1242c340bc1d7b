//! Guest tier: a TCG guest carrying the project's static guest binaries, booted through the
//! test-bed libvirtd, driven over its serial console and its real `vmconnectd` virtio-serial
//! channel.

// Test code: a failed step panics with its cause.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use vm_libvirt::{DomainState, Hypervisor};
use vm_tests::guest::{Console, EchoPeer, Vport, domain_xml, wait_ready};
use vm_tests::libvirt::HostLibvirt;
use vm_tests::{evidence, state_dir};

mod authkey;
mod guestcluster;
mod vmconnectd;

#[test]
#[ignore = "tier guest: needs root, libvirtd, QEMU and the guest image"]
fn guest_boots_runs_project_binaries_and_echoes_over_the_channel() {
    let t0 = Instant::now();
    let lv = HostLibvirt::acquire();
    let name = "pmkt-g0";
    let rundir = state_dir().join("run").join("guest-tier");
    std::fs::create_dir_all(rundir.join("vmconnectd")).unwrap();
    let log = rundir.join(format!("{name}.console.log"));
    let _ = std::fs::remove_file(&log);
    let xml = domain_xml(name, &rundir, &rundir, Vport::Echo);
    let info = lv.conn().create_transient(&xml).expect("start the guest");
    assert_eq!(info.state, DomainState::Running);
    wait_ready(&log, Duration::from_secs(90));
    evidence("guest", t0, format!("{name} booted (TCG) to its shell"));

    let mut console = Console::connect(&rundir.join(format!("{name}.console.sock"))).unwrap();
    let out = console
        .run(
            "vm-connectd --version; vm-connect --version; ls /dev/virtio-ports",
            Duration::from_secs(30),
        )
        .unwrap();
    assert_eq!(out.status, 0, "{}", out.output);
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        out.output.contains(&format!("vm-connectd {version}"))
            && out.output.contains(&format!("vm-connect {version}")),
        "{}",
        out.output
    );
    assert!(out.output.contains("vmconnectd"), "{}", out.output);
    let failing = console.run("exit 7", Duration::from_secs(30)).unwrap();
    assert_eq!(failing.status, 7, "console reports the command's status");
    evidence(
        "guest",
        t0,
        format!(
            "console: static guest binaries run in the guest: {}",
            out.output.lines().next().unwrap_or("")
        ),
    );

    let channel = rundir.join("vmconnectd").join(format!("{name}.sock"));
    for round in 1..=2 {
        // Each connection is a new host side (as after a host daemon restart): the guest greets
        // it, then echoes. The pause lets the guest see the previous host side go away: a
        // close and a reconnect that follow each other within microseconds can reach the guest
        // as one event, and this simple echo service would then wait for a line, not greet.
        if round > 1 {
            std::thread::sleep(Duration::from_secs(2));
        }
        let mut peer = EchoPeer::connect(&channel, Duration::from_secs(30)).unwrap();
        assert_eq!(peer.greeting, format!("hello-from-{name}"));
        for line in ["ping", &"x".repeat(4000), "last"] {
            let (answer, rtt) = peer.echo(line).unwrap();
            assert_eq!(answer, format!("echo:{line}"));
            if line == "ping" {
                evidence(
                    "guest",
                    t0,
                    format!(
                        "channel round {round}: guest -> host '{}', host -> guest -> host in {:.1} ms",
                        peer.greeting,
                        rtt.as_secs_f64() * 1000.0
                    ),
                );
            }
        }
    }

    lv.conn().destroy(name).unwrap();
    evidence("guest", t0, format!("{name} destroyed"));
}
