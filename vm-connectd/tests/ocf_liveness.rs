//! The liveness monitor of `ocf:pm-kvm-tools:VirtualDomain` (agents/ocf/VirtualDomain), run as
//! Pacemaker runs it, against the real host vm-connectd and a fake guest daemon on its link;
//! the stock agent underneath is a stub that says "running" (`PMKT_STOCK_VIRTUALDOMAIN`), so
//! only the wrapper's decisions are tested here. The multi-node tier runs the real stock agent
//! with a real guest.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{BIN, Daemon, Peer, executable};
use vm_proto::{Alive, Hello, Kind, Message, Role};

fn agent() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../agents/ocf/VirtualDomain")
}

struct Bed {
    dir: tempfile::TempDir,
    d: Daemon,
}

impl Bed {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        // the stock agent: "running" unless told otherwise by a file
        executable(
            &dir.path().join("stock"),
            &format!(
                "#!/bin/sh\ncase $1 in\n  meta-data) printf '<resource-agent><parameters>\\n<parameter name=\"config\"/>\\n</parameters></resource-agent>\\n' ;;\n  monitor) [ -e '{}' ] && exit 7; exit 0 ;;\n  stop) echo \"${{OCF_RESKEY_force_stop:-unset}}\" > '{}' ;;\n  *) exit 0 ;;\nesac\n",
                dir.path().join("stopped").display(),
                dir.path().join("stop-force").display()
            ),
        );
        std::fs::write(
            dir.path().join("g1.xml"),
            "<domain type='qemu'>\n  <name>g1</name>\n  <devices/>\n</domain>\n",
        )
        .unwrap();
        let d = Daemon::host_with(
            &["--heartbeat-interval", "0.2", "--liveness-timeout", "1"],
            &[],
        );
        Self { dir, d }
    }

    /// `agent ACTION` with liveness_timeout `timeout`: (exit code, stderr).
    fn run(&self, action: &str, timeout: &str, socket: &Path) -> (i32, String) {
        let out = Command::new("sh")
            .arg(agent())
            .arg(action)
            .env("OCF_ROOT", "/usr/lib/ocf")
            .env("OCF_RESOURCE_INSTANCE", "prmVMCTL_g1")
            .env("PMKT_STOCK_VIRTUALDOMAIN", self.dir.path().join("stock"))
            .env("PMKT_VMCONNECTD", BIN)
            .env("OCF_RESKEY_config", self.dir.path().join("g1.xml"))
            .env("OCF_RESKEY_liveness_timeout", timeout)
            .env("OCF_RESKEY_vmconnectd_socket", socket)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn monitor(&self, timeout: &str) -> (i32, String) {
        self.run("monitor", timeout, &self.d.socket)
    }
}

fn answer(g: &mut Peer, failing: &[&str], window: Duration) {
    let msg =
        Message::Alive(Alive::new(failing.iter().map(|s| (*s).to_owned()).collect()).unwrap());
    let end = std::time::Instant::now() + window;
    while let Some(left) = end.checked_duration_since(std::time::Instant::now()) {
        match g.try_recv(left.max(Duration::from_millis(1))) {
            Some(f) if f.kind() == Kind::Heartbeat => g.send(&msg, f.id()),
            Some(_) => {}
            None => break,
        }
    }
}

fn liveness(d: &Daemon) -> String {
    d.status()["guests"][0]["liveness"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

#[test]
fn the_monitor_fails_a_running_guest_only_when_it_is_silent_long_enough_or_unhealthy() {
    let bed = Bed::new();
    // the agent declares its parameters, and checks them
    let meta = Command::new("sh")
        .arg(agent())
        .arg("meta-data")
        .env("PMKT_STOCK_VIRTUALDOMAIN", bed.dir.path().join("stock"))
        .output()
        .unwrap();
    let meta = String::from_utf8_lossy(&meta.stdout).into_owned();
    assert!(
        meta.contains(r#"<parameter name="liveness_timeout""#)
            && meta.contains(r#"<parameter name="vmconnectd_socket""#)
            && meta.trim_end().ends_with("</parameters></resource-agent>"),
        "{meta}"
    );
    for bad in ["abc", "-1", "1.5", "86401", "999999999999"] {
        let (code, err) = bed.run("validate-all", bad, &bed.d.socket);
        assert_eq!(code, 6, "{bad}: {err}");
        assert!(
            err.contains("ocf-exit-reason:liveness_timeout must be"),
            "{err}"
        );
        assert_eq!(bed.monitor(bad).0, 6, "{bad}");
    }
    assert_eq!(bed.run("validate-all", "120", &bed.d.socket).0, 0);

    // not linked on this node, then linked but never heard from: not a failure
    assert_eq!(bed.monitor("1"), (0, String::new()));
    let mut g = bed.d.guest_peer("g1");
    assert_eq!(bed.monitor("1").0, 0);
    g.send(&Message::Hello(Hello::current(Role::GuestDaemon, 3)), 0);
    answer(&mut g, &[], Duration::from_millis(600));
    bed.d
        .wait_for(|| liveness(&bed.d) == "answering", "answering");
    assert_eq!(bed.monitor("1").0, 0);

    // silent: fails only once silent for liveness_timeout, and says so
    bed.d.wait_for(|| liveness(&bed.d) == "silent", "silent");
    assert_eq!(bed.monitor("3600").0, 0, "silent for less than an hour");
    assert_eq!(bed.monitor("0").0, 0, "0 turns the check off");
    std::thread::sleep(Duration::from_millis(1100));
    let (code, err) = bed.monitor("1");
    assert_eq!(code, 1, "{err}");
    let reason = err
        .lines()
        .find_map(|l| l.strip_prefix("ocf-exit-reason:"))
        .unwrap_or_default()
        .to_owned();
    assert!(
        reason.starts_with("guest g1 silent for ") && reason.contains("liveness_timeout=1s"),
        "{err}"
    );
    assert!(
        reason.len() <= 128,
        "Pacemaker keeps 128 bytes of a reason: {reason}"
    );
    // its stop is a hard power-off (a hung guest cannot shut down)
    let stop_force = || {
        std::fs::read_to_string(bed.dir.path().join("stop-force"))
            .unwrap()
            .trim()
            .to_owned()
    };
    assert_eq!(bed.run("stop", "1", &bed.d.socket).0, 0);
    assert_eq!(stop_force(), "true");
    assert_eq!(bed.run("stop", "3600", &bed.d.socket).0, 0);
    assert_eq!(
        stop_force(),
        "unset",
        "not silent for an hour: a graceful stop"
    );
    // a guest the stock monitor finds stopped is the stock agent's answer
    std::fs::write(bed.dir.path().join("stopped"), "").unwrap();
    assert_eq!(bed.monitor("1").0, 7);
    std::fs::remove_file(bed.dir.path().join("stopped")).unwrap();
    // vm-connectd not reachable: not checked
    assert_eq!(bed.run("monitor", "1", Path::new("/nonexistent.sock")).0, 0);

    // unhealthy: fails at once, naming the check
    answer(&mut g, &["db.service"], Duration::from_millis(600));
    bed.d
        .wait_for(|| liveness(&bed.d) == "unhealthy", "unhealthy");
    let (code, err) = bed.monitor("3600");
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("ocf-exit-reason:guest g1 unhealthy for ")
            && err.contains("failing db.service"),
        "{err}"
    );
    answer(&mut g, &[], Duration::from_millis(600));
    assert_eq!(bed.monitor("1").0, 0);
}

/// A guest node over the channel (meta remote-node, remote-addr 127.0.0.1, remote-port P, as
/// Pacemaker passes them: OCF_RESKEY_CRM_meta_<name>, '-' as '_'): start offers its stream on
/// 127.0.0.1:P at this node's vm-connectd, monitor again (idempotent), stop withdraws it; a
/// start whose offer fails fails with the reason; a resource that is no guest node (or a guest
/// node over TCP) leaves vm-connectd alone.
#[test]
fn the_agent_offers_a_guest_nodes_stream_from_start_to_stop() {
    let bed = Bed::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let run = |action: &str, meta: &[(&str, &str)]| {
        let out = Command::new("sh")
            .arg(agent())
            .arg(action)
            .env("OCF_ROOT", "/usr/lib/ocf")
            .env("OCF_RESOURCE_INSTANCE", "prmVMCTL_g1")
            .env("PMKT_STOCK_VIRTUALDOMAIN", bed.dir.path().join("stock"))
            .env("PMKT_VMCONNECTD", BIN)
            .env("OCF_RESKEY_config", bed.dir.path().join("g1.xml"))
            .env("OCF_RESKEY_vmconnectd_socket", &bed.d.socket)
            .envs(
                meta.iter()
                    .map(|(k, v)| (format!("OCF_RESKEY_CRM_meta_{k}"), v)),
            )
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let p = port.to_string();
    let guest_node = [
        ("remote_node", "g1"),
        ("remote_addr", "127.0.0.1"),
        ("remote_port", p.as_str()),
    ];
    let exposed = || bed.d.status()["exposed"].clone();
    assert_eq!(run("start", &guest_node).0, 0);
    assert_eq!(
        exposed(),
        serde_json::json!([{"domain": "g1", "port": port}])
    );
    std::net::TcpStream::connect(("127.0.0.1", port)).expect("the endpoint listens");
    assert_eq!(run("monitor", &guest_node).0, 0);
    assert_eq!(exposed()[0]["port"], u64::from(port));
    assert_eq!(run("stop", &guest_node).0, 0);
    assert_eq!(exposed(), serde_json::json!([]));

    // over TCP, or not a guest node: vm-connectd is not asked
    let tcp = [
        ("remote_node", "g1"),
        ("remote_addr", "192.0.2.7"),
        ("remote_port", p.as_str()),
    ];
    assert_eq!(run("start", &tcp).0, 0);
    assert_eq!(run("start", &[]).0, 0);
    assert_eq!(exposed(), serde_json::json!([]));

    // the port is taken by another guest's stream: start fails, saying why
    let other = Command::new(BIN)
        .args(["expose", "--socket"])
        .arg(&bed.d.socket)
        .args(["g2", p.as_str()])
        .status()
        .unwrap();
    assert!(other.success());
    let (rc, err) = run("start", &guest_node);
    assert_eq!(rc, 1, "{err}");
    assert!(
        err.contains("ocf-exit-reason:vm-connectd expose g1")
            && err.contains("already carries guest g2's stream"),
        "{err}"
    );
}
