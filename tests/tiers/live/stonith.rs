//! Guest fencing on the live single-node cluster: fence_vmstonith and the cluster-glue plugin,
//! run inside a TCG guest over its real virtio-serial channel, by Pacemaker's fencer
//! (stonith_admin) and by cluster-glue's `stonith` over bridged channels, through the host
//! vm-connectd and vm-stonithd, to ocf:pm-kvm-tools:VirtualDomain destroying the target guest.
//! Refusals, faults and load.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use vm_common::process::{Cmd, Output};
use vm_libvirt::{DomainState, Hypervisor};
use vm_pcmk::Role;
use vm_proto::client::{Client, ClientError};
use vm_proto::{ErrorCode, Role as ClientRole};
use vm_seal::envelope::{self, SealedKind};
use vm_seal::{Action, FenceReply, FenceRequest, Name, Nonce, Outcome, PowerState};
use vm_tests::guest::{Console, Vport, domain_xml, wait_ready};
use vm_tests::libvirt::HostLibvirt;
use vm_tests::live::LiveCluster;
use vm_tests::stonith::{BridgedGuest, StonithBed, install_fence_agents};
use vm_tests::vmctl::{LiveVmCtl, domain_xml as offline_domain_xml};
use vm_tests::{evidence, run_ok, state_dir, wait_for};

use crate::vmctl::{CONFIG, prepare};

const TIER: &str = "live";

/// The test guests' run directory; the host relay serves the channel sockets in `vmconnectd/`.
fn rundir() -> PathBuf {
    let d = state_dir().join("run").join("live-fence");
    std::fs::create_dir_all(d.join("vmconnectd")).unwrap();
    d
}

/// Adds guest `name` with vm-ctl and starts it; returns its console socket once it booted.
fn guest_up(bed: &LiveVmCtl, cluster: &LiveCluster, name: &str, vport: Vport) -> PathBuf {
    let rd = rundir();
    let log = rd.join(format!("{name}.console.log"));
    let _ = std::fs::remove_file(&log);
    bed.domain(name, &domain_xml(name, &rd, &rd, vport));
    bed.ok(&["resource", "add", name, "-a", cluster.node()]);
    bed.ok(&["resource", "start", name, "--wait=120"]);
    wait_ready(&log, Duration::from_secs(120));
    rd.join(format!("{name}.console.sock"))
}

fn running(lv: &HostLibvirt, name: &str) -> bool {
    lv.conn()
        .domain(name)
        .unwrap()
        .is_some_and(|d| d.state == DomainState::Running)
}

/// Nothing of a fence is left in the CIB for `rsc`: no journal, no force-stop attribute.
fn assert_clean(cluster: &LiveCluster, rsc: &str) {
    let cib = cluster.pcmk().snapshot().unwrap();
    assert_eq!(
        cib.meta_attribute(rsc, "pmkt-fence"),
        None,
        "journal left on {rsc}"
    );
    for node in cib.node_names() {
        assert_eq!(
            cib.node_attribute(node, &format!("force_stop-{rsc}")),
            None,
            "force_stop attribute left on {node}"
        );
    }
}

/// How many hard power-offs (destroy without a graceful shutdown) the agent logged for `rsc`.
fn hard_stops(rsc: &str) -> usize {
    let log =
        std::fs::read_to_string(state_dir().join("live").join("pacemaker.log")).unwrap_or_default();
    log.lines()
        .filter(|l| {
            l.contains(&format!("VirtualDomain({rsc})"))
                && l.contains("Issuing forced shutdown (destroy)")
        })
        .count()
}

fn key_into_guest(console: &mut Console, bed: &StonithBed) {
    let text = std::fs::read_to_string(bed.guest_key()).unwrap();
    let out = console
        .run(
            &format!(
                "mkdir -p /etc/pm-kvm-tools && umask 077 && cat > /etc/pm-kvm-tools/fence.key <<'KEY'\n{text}KEY\nls -l /etc/pm-kvm-tools/fence.key"
            ),
            Duration::from_secs(30),
        )
        .unwrap();
    assert!(out.output.contains("-rw-------"), "{out:?}");
}

fn clusters(members: &[&str]) -> String {
    let list: Vec<String> = members.iter().map(|m| format!("\"{m}\"")).collect();
    format!(
        "[[cluster]]\nname = \"gc\"\nmembers = [{}]\n",
        list.join(", ")
    )
}

fn text(o: &Output) -> String {
    format!("{}{}", o.stdout_text(), o.stderr_text())
}

/// The live cluster and libvirtd, reset for a test, with host fencing on ([`host_fencing_on`]),
/// and vm-ctl on them: the bed of the tests that fence real guests.
fn fencing_host() -> (LiveCluster, HostLibvirt, LiveVmCtl) {
    let cluster = LiveCluster::acquire();
    let lv = HostLibvirt::acquire();
    prepare(&cluster);
    host_fencing_on(&cluster);
    (cluster, lv, LiveVmCtl::new(CONFIG))
}

/// Turns fencing on in the host cluster (the test bed runs without it, and vm-stonithd confirms
/// no off then). Pacemaker starts no resource that needs fencing until a fence device is
/// configured, so one is: a cluster-glue `external/ssh` device for a host that does not exist
/// (a static host list, so the fencer never picks it for a guest: it fences nothing here, and
/// these tests never fence a host node). The reset between tests removes both.
fn host_fencing_on(cluster: &LiveCluster) {
    let pcmk = cluster.pcmk();
    run_ok(&pcmk.tool("cibadmin").args([
        "--create",
        "-o",
        "resources",
        "-X",
        r#"<primitive id="pmkt-live-fence" class="stonith" type="fence_legacy"><instance_attributes id="pmkt-live-fence-ia"><nvpair id="pmkt-live-fence-plugin" name="plugin" value="external/ssh"/><nvpair id="pmkt-live-fence-hosts" name="hostlist" value="pmkt-no-such-host"/><nvpair id="pmkt-live-fence-check" name="pcmk_host_check" value="static-list"/><nvpair id="pmkt-live-fence-list" name="pcmk_host_list" value="pmkt-no-such-host"/></instance_attributes></primitive>"#,
    ]));
    run_ok(&pcmk.tool("crm_attribute").args([
        "--type",
        "crm_config",
        "--name",
        "stonith-enabled",
        "--update",
        "true",
    ]));
}

#[test]
#[ignore = "tier live: needs root, corosync, pacemakerd, libvirtd and the guest image"]
fn live_fence_full_chain_over_a_real_channel() {
    let t0 = Instant::now();
    let (cluster, lv, vmctl) = fencing_host();
    let (req, tgt) = ("pmkt-fa", "pmkt-fb");
    let rsc = format!("prmVMCTL_{tgt}");
    let rd = rundir();
    // pmkt-fx stands in for a guest whose node name is this host's (the cluster-glue plugin run
    // here names itself by hostname): the node_names mapping of vm-stonithd.toml
    let config = format!(
        "{}node_names = {{ \"pmkt-fx\" = \"{}\" }}\n",
        clusters(&[req, tgt, "pmkt-fx"]),
        cluster.node()
    );
    // the relay links pmkt-fx's bridged channel (not a libvirt domain's) only if told to
    let stonith = StonithBed::start_bridged(
        &rd.join("vmconnectd"),
        cluster.node(),
        &config,
        &["pmkt-fx"],
    );
    let console_path = guest_up(&vmctl, &cluster, req, Vport::Daemon);
    guest_up(&vmctl, &cluster, tgt, Vport::Echo);
    let mut console = Console::connect(&console_path).unwrap();
    key_into_guest(&mut console, &stonith);
    evidence(
        TIER,
        t0,
        format!(
            "guests {req} (guest vm-connectd) and {tgt} running as VirtualDomain resources; vm-stonithd registered"
        ),
    );

    // inside the requester guest: the agent over the real virtio-serial channel
    let run =
        |console: &mut Console, cmd: &str| console.run(cmd, Duration::from_secs(150)).unwrap();
    let out = run(
        &mut console,
        "fence_vmstonith -o monitor && fence_vmstonith -o list",
    );
    assert_eq!(out.status, 0, "{out:?}");
    assert!(out.output.contains(&format!("{tgt},")), "{out:?}");
    let out = run(&mut console, &format!("fence_vmstonith -o status -n {tgt}"));
    assert_eq!(
        (out.status, out.output.trim()),
        (0, "Status: ON"),
        "{out:?}"
    );
    let hard0 = hard_stops(&rsc);
    let out = run(&mut console, &format!("fence_vmstonith -o off -n {tgt}"));
    // the agent has answered: the guest must already be gone
    let gone = !running(&lv, tgt);
    assert_eq!(out.status, 0, "{out:?}\n{}", stonith.log());
    assert!(out.output.contains("Success: Powered OFF"), "{out:?}");
    assert!(
        gone,
        "the agent reported OFF while libvirt still runs {tgt}"
    );
    assert!(cluster.status().nodes_with(&rsc, Role::Started).is_empty());
    assert_eq!(
        hard_stops(&rsc),
        hard0 + 1,
        "the stop was not a hard power-off"
    );
    assert_eq!(
        cluster
            .pcmk()
            .snapshot()
            .unwrap()
            .meta_attribute(&rsc, "target-role"),
        Some("Stopped")
    );
    assert_clean(&cluster, &rsc);
    let out = run(&mut console, &format!("fence_vmstonith -o status -n {tgt}"));
    assert_eq!(
        (out.status, out.output.trim()),
        (2, "Status: OFF"),
        "{out:?}"
    );
    // vm-ctl status: the fence vm-stonithd recorded in its own changes to the live CIB (the
    // record in this node's status section), the guest stopped, the requester running
    let status = || -> serde_json::Value {
        serde_json::from_str(&vmctl.ok(&["status", "--output", "json"]).stdout_text()).unwrap()
    };
    let guest_of = |v: &serde_json::Value, dom: &str| -> serde_json::Value {
        v["status"]["guests"]
            .as_array()
            .and_then(|g| g.iter().find(|g| g["domain"] == dom).cloned())
            .unwrap_or_else(|| panic!("no {dom} in {v:#}"))
    };
    let v = status();
    let g = guest_of(&v, tgt);
    assert_eq!(
        (&g["state"], &g["target_role"]),
        (&"stopped".into(), &"Stopped".into()),
        "{g:#}"
    );
    let last = &g["fence"]["last"];
    assert_eq!(
        (
            &last["action"],
            &last["result"],
            &last["origin"],
            &last["cluster"]
        ),
        (&"off".into(), &"done".into(), &req.into(), &"gc".into()),
        "{g:#}"
    );
    assert_eq!(last["node"], cluster.node());
    assert!(g["fence"]["in_progress"].is_null(), "{g:#}");
    assert_eq!(guest_of(&v, req)["state"], "started");
    evidence(
        TIER,
        t0,
        format!(
            "in-guest fence_vmstonith -o off {tgt}: OK only after libvirt lost it; destroyed, not shut down; stays Stopped, nothing left in the CIB; vm-ctl status: {tgt} stopped, last fence off done by gc over {req}"
        ),
    );

    let out = run(&mut console, &format!("fence_vmstonith -o on -n {tgt}"));
    assert_eq!(out.status, 0, "{out:?}");
    assert!(
        running(&lv, tgt),
        "agent said ON, libvirt does not run {tgt}"
    );
    // the cluster-glue plugin, in the guest, as cluster-glue would run it
    let out = run(
        &mut console,
        &format!("hostlist={tgt} /usr/lib/stonith/plugins/external/vm-stonith reset {tgt}"),
    );
    assert_eq!(out.status, 0, "{out:?}");
    assert!(running(&lv, tgt));
    assert_eq!(hard_stops(&rsc), hard0 + 2);
    assert_eq!(
        cluster.status().nodes_with(&rsc, Role::Started),
        [cluster.node()]
    );
    assert_clean(&cluster, &rsc);
    let g = guest_of(&status(), tgt);
    assert_eq!(
        (
            &g["state"],
            &g["fence"]["last"]["action"],
            &g["fence"]["last"]["result"]
        ),
        (&"started".into(), &"reboot".into(), &"done".into()),
        "{g:#}"
    );
    evidence(
        TIER,
        t0,
        format!(
            "in-guest on, then plugin `external/vm-stonith reset {tgt}`: destroyed and started again; vm-ctl status: last fence reboot done"
        ),
    );

    // Pacemaker's fencer and cluster-glue's stonith(8) drive the agents (here on the host, over
    // a bridged channel of guest pmkt-fx)
    install_fence_agents();
    let fx = BridgedGuest::start(&rd.join("vmconnectd"), stonith.dir(), "pmkt-fx");
    let sock = fx.socket().display().to_string();
    let key = stonith.guest_key().display().to_string();
    let admin = |args: &[&str]| {
        Cmd::new("stonith_admin")
            .args(args)
            .timeout(Duration::from_secs(150))
    };
    let _ = admin(&["--deregister", "pmkt-fence"]).run();
    run_ok(&admin(&[
        "--register",
        "pmkt-fence",
        "--agent",
        "fence_vmstonith",
        "--option",
        &format!("socket={sock}"),
        "--option",
        &format!("key_file={key}"),
        "--option",
        "requester=pmkt-fx",
        "--option",
        &format!("pcmk_host_list={tgt}"),
    ]));
    let out = admin(&["--fence", tgt, "--timeout", "120"]).run().unwrap();
    let gone = !running(&lv, tgt);
    assert!(
        out.success(),
        "stonith_admin --fence: {}\n{}",
        text(&out),
        stonith.log()
    );
    assert!(gone);
    assert_eq!(hard_stops(&rsc), hard0 + 3);
    assert_clean(&cluster, &rsc);
    let _ = admin(&["--deregister", "pmkt-fence"]).run();
    evidence(
        TIER,
        t0,
        format!("stonith_admin --fence {tgt} (fencer -> fence_vmstonith): {tgt} destroyed"),
    );

    let out = Cmd::new("stonith")
        .args(["-t", "external/vm-stonith"])
        .arg(format!("hostlist={tgt}"))
        .arg(format!("socket={sock}"))
        .arg(format!("key_file={key}"))
        .args(["-T", "on", tgt])
        .timeout(Duration::from_secs(150))
        .run()
        .unwrap();
    assert!(out.success(), "stonith -T on: {}", text(&out));
    assert!(running(&lv, tgt));
    assert_clean(&cluster, &rsc);
    evidence(
        TIER,
        t0,
        format!("cluster-glue `stonith -t external/vm-stonith -T on {tgt}`: started"),
    );
    drop(fx);
}

/// Sends `body` to the stonith service through the guest daemon at `socket`.
fn raw(socket: &std::path::Path, body: &[u8]) -> Result<Vec<u8>, ClientError> {
    let mut c = Client::connect(socket, ClientRole::Client)?;
    c.request("stonith", body, Duration::from_secs(60))
}

fn n(s: &str) -> Name {
    Name::new(s).unwrap()
}

fn sealed(
    key: &vm_seal::Key,
    action: Action,
    target: Option<&str>,
    requester: &str,
) -> (Nonce, Vec<u8>) {
    FenceRequest::new(action, target.map(n), n(requester), Duration::from_secs(30))
        .unwrap()
        .seal(key)
        .unwrap()
}

/// Sends `action` on `target`, sealed under `key` as `requester`, through the guest daemon at
/// `socket`; the reply, opened.
fn ask(
    key: &vm_seal::Key,
    socket: &std::path::Path,
    action: Action,
    target: Option<&str>,
    requester: &str,
) -> FenceReply {
    let (nonce, req) = sealed(key, action, target, requester);
    FenceReply::open(key, &nonce, &raw(socket, &req).unwrap()).unwrap()
}

/// A request sealed under `key` whose plaintext is hand-made: `target` is taken as raw bytes
/// (what a hostile guest holding the key could send).
fn hostile(key: &vm_seal::Key, requester: &str, target: &[u8]) -> Vec<u8> {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let mut p = vec![Action::Off as u8];
    p.extend_from_slice(&ms.to_be_bytes());
    p.extend_from_slice(&30_000u32.to_be_bytes());
    p.push(requester.len() as u8);
    p.extend_from_slice(requester.as_bytes());
    p.push(target.len() as u8);
    p.extend_from_slice(target);
    envelope::seal(key, SealedKind::Request, b"", &p).unwrap().1
}

fn epoch(cluster: &LiveCluster) -> (u64, u64) {
    let v = cluster.pcmk().snapshot().unwrap().version();
    (v.admin_epoch, v.epoch)
}

#[test]
#[ignore = "tier live: needs root, corosync and pacemakerd"]
fn live_fence_refusals_change_nothing() {
    let t0 = Instant::now();
    let cluster = LiveCluster::acquire();
    prepare(&cluster);
    // (with host fencing: the baseline status of a stopped guest is "off" only then)
    host_fencing_on(&cluster);
    let vmctl = LiveVmCtl::new(CONFIG);
    // targets that exist as resources (never started: a refusal must not need them running)
    for d in ["pmkt-fr", "pmkt-zz"] {
        vmctl.domain(d, &offline_domain_xml(d));
        vmctl.ok(&["resource", "add", d, "-a", cluster.node()]);
    }
    let rd = rundir();
    let stonith = StonithBed::start_bridged(
        &rd.join("vmconnectd"),
        cluster.node(),
        &clusters(&["pmkt-fq", "pmkt-fr"]),
        &["pmkt-fq", "pmkt-fo"],
    );
    let member = BridgedGuest::start(&rd.join("vmconnectd"), stonith.dir(), "pmkt-fq");
    let outsider = BridgedGuest::start(&rd.join("vmconnectd"), stonith.dir(), "pmkt-fo");
    let key = &stonith.key;
    let open = |nonce: &Nonce, bytes: &[u8]| FenceReply::open(key, nonce, bytes).unwrap();
    let before = epoch(&cluster);
    let refused_lines = |log: &str| log.lines().filter(|l| l.contains("refused")).count();

    // baseline: an honest status request is answered
    let (nonce, req) = sealed(key, Action::Status, Some("pmkt-fr"), "pmkt-fq");
    let reply = open(&nonce, &raw(member.socket(), &req).unwrap());
    assert_eq!(
        (reply.outcome, reply.state),
        (Outcome::Done, PowerState::Off),
        "{reply:?}"
    );
    let mut cases: Vec<(&str, String)> = Vec::new();

    // replay of exactly those bytes
    let reply = open(&nonce, &raw(member.socket(), &req).unwrap());
    assert_eq!(reply.outcome, Outcome::Refused);
    assert!(reply.message.contains("replay"), "{reply:?}");
    cases.push(("replay", reply.message));
    // tampered: one ciphertext bit
    let (_, mut t) = sealed(key, Action::Off, Some("pmkt-fr"), "pmkt-fq");
    let last = t.len() - 20;
    t[last] ^= 1;
    match raw(member.socket(), &t) {
        Err(ClientError::Remote {
            code: ErrorCode::Forbidden,
            message,
        }) => cases.push(("tampered", message)),
        other => panic!("tampered request: {other:?}"),
    }
    // a key the host does not hold
    let stranger = vm_seal::Key::generate("gc").unwrap();
    match raw(
        member.socket(),
        &sealed(&stranger, Action::Off, Some("pmkt-fr"), "pmkt-fq").1,
    ) {
        Err(ClientError::Remote {
            code: ErrorCode::Forbidden,
            message,
        }) => cases.push(("wrong key", message)),
        other => panic!("wrong key: {other:?}"),
    }
    // a target the cluster may not fence
    let (nonce, r) = sealed(key, Action::Off, Some("pmkt-zz"), "pmkt-fq");
    let reply = open(&nonce, &raw(member.socket(), &r).unwrap());
    assert_eq!(reply.outcome, Outcome::Refused);
    assert!(reply.message.contains("may not fence"), "{reply:?}");
    cases.push(("foreign target", reply.message));
    // the right key over the channel of a guest outside the cluster
    let (nonce, r) = sealed(key, Action::Off, Some("pmkt-fr"), "pmkt-fo");
    let reply = open(&nonce, &raw(outsider.socket(), &r).unwrap());
    assert_eq!(reply.outcome, Outcome::Refused);
    assert!(reply.message.contains("not a member"), "{reply:?}");
    cases.push(("foreign channel", reply.message));
    // a member claiming to be another member
    let (nonce, r) = sealed(key, Action::Off, Some("pmkt-fr"), "pmkt-fr");
    let reply = open(&nonce, &raw(member.socket(), &r).unwrap());
    assert_eq!(reply.outcome, Outcome::Refused);
    assert!(
        reply
            .message
            .contains("arrived over the channel of pmkt-fq"),
        "{reply:?}"
    );
    cases.push(("requester mismatch", reply.message));
    // a stale request
    let mut old = FenceRequest::new(
        Action::Off,
        Some(n("pmkt-fr")),
        n("pmkt-fq"),
        Duration::from_secs(30),
    )
    .unwrap();
    old.timestamp -= Duration::from_secs(600);
    let (nonce, r) = old.seal(key).unwrap();
    let reply = open(&nonce, &raw(member.socket(), &r).unwrap());
    assert_eq!(reply.outcome, Outcome::Refused);
    cases.push(("stale", reply.message));
    // a legacy token while legacy mode is off
    let token = vm_seal::legacy::encrypt_token(
        "prmVMCTL_pmkt-fr",
        &vm_seal::legacy::Password::from(vm_seal::legacy::ORIGINAL_PASSWORD),
        vm_seal::legacy::Digest::Md5,
    )
    .unwrap();
    match raw(member.socket(), format!("off {token}").as_bytes()) {
        Err(ClientError::Remote {
            code: ErrorCode::BadRequest,
            message,
        }) => cases.push(("legacy while off", message)),
        other => panic!("legacy token: {other:?}"),
    }
    // shell metacharacters in every field: refused by the agent before sending, and by the
    // daemon when a key holder sends them anyway
    let marker = std::path::Path::new("/tmp/pmkt-fence-pwned");
    let _ = std::fs::remove_file(marker);
    let evil = "$(touch /tmp/pmkt-fence-pwned)";
    for (field, args) in [
        ("plug", vec!["-o", "off", "-n", evil]),
        ("action", vec!["-o", evil, "-n", "pmkt-fr"]),
    ] {
        let out = stonith
            .agent(member.socket(), "pmkt-fq", &args)
            .run()
            .unwrap();
        assert_eq!(out.code(), Some(1), "{field}: {}", text(&out));
    }
    let out = stonith
        .agent(member.socket(), evil, &["-o", "off", "-n", "pmkt-fr"])
        .run()
        .unwrap();
    assert_eq!(out.code(), Some(1), "requester: {}", text(&out));
    for (requester, target) in [
        ("pmkt-fq", evil.as_bytes()),
        (evil, b"pmkt-fr".as_slice()),
        ("pmkt-fq", b"a;b\n`id`"),
    ] {
        match raw(member.socket(), &hostile(key, requester, target)) {
            Err(ClientError::Remote {
                code: ErrorCode::Forbidden,
                message,
            }) => cases.push(("metacharacters", message)),
            other => panic!("hostile plaintext: {other:?}"),
        }
    }
    // garbage and an oversized body
    for body in [b"\x00\x01garbage".to_vec(), vec![b'P'; 60_000]] {
        raw(member.socket(), &body).unwrap_err();
    }
    // nothing happened, nothing changed, and the daemon still serves
    assert!(!marker.exists(), "a shell ran something");
    assert_eq!(epoch(&cluster), before, "the CIB configuration changed");
    let log = stonith.log();
    assert!(
        refused_lines(&log) >= cases.len(),
        "one log line per refusal:\n{log}"
    );
    let (nonce, req) = sealed(key, Action::Monitor, None, "pmkt-fq");
    assert_eq!(
        open(&nonce, &raw(member.socket(), &req).unwrap()).outcome,
        Outcome::Done
    );
    let names: Vec<&str> = cases.iter().map(|c| c.0).collect();
    evidence(
        TIER,
        t0,
        format!(
            "refused, CIB epoch unchanged, daemon still serving: {}",
            names.join(", ")
        ),
    );
}

#[test]
#[ignore = "tier live: needs root, corosync and pacemakerd"]
fn live_fence_no_off_confirmed_without_host_fencing() {
    let t0 = Instant::now();
    let cluster = LiveCluster::acquire();
    prepare(&cluster);
    let vmctl = LiveVmCtl::new(CONFIG);
    // a guest the host cluster shows as stopped: never started here, as a guest on a host node
    // lost without fencing is shown (Pacemaker takes that node's resources for stopped)
    let tgt = "pmkt-fn";
    let rsc = format!("prmVMCTL_{tgt}");
    vmctl.domain(tgt, &offline_domain_xml(tgt));
    vmctl.ok(&["resource", "add", tgt, "-a", cluster.node()]);
    let rd = rundir();
    let stonith = StonithBed::start_bridged(
        &rd.join("vmconnectd"),
        cluster.node(),
        &clusters(&["pmkt-fm", tgt]),
        &["pmkt-fm"],
    );
    let member = BridgedGuest::start(&rd.join("vmconnectd"), stonith.dir(), "pmkt-fm");
    let key = &stonith.key;
    assert!(
        !cluster.pcmk().snapshot().unwrap().stonith_enabled(),
        "the live test bed's host cluster runs with stonith-enabled=false"
    );
    assert!(cluster.status().nodes_with(&rsc, Role::Started).is_empty());
    let before = epoch(&cluster);
    // (nor is a status "off": the guest is shown stopped, as a lost host node's guest would be)
    for action in [Action::Off, Action::Reboot, Action::Status] {
        let reply = ask(key, member.socket(), action, Some(tgt), "pmkt-fm");
        assert_eq!(
            (reply.outcome, reply.state),
            (Outcome::Failed, PowerState::Unknown),
            "{action}: {reply:?}"
        );
        assert!(
            reply.message.contains("stonith-enabled=false"),
            "{action}: the reply must say why: {reply:?}"
        );
    }
    // refused before anything was written
    assert_eq!(epoch(&cluster), before, "the CIB configuration changed");
    assert_clean(&cluster, &rsc);
    let out = stonith
        .agent(member.socket(), "pmkt-fm", &["-o", "off", "-n", tgt])
        .run()
        .unwrap();
    assert_eq!(out.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("stonith-enabled=false"),
        "{}",
        text(&out)
    );
    let out = stonith
        .agent(member.socket(), "pmkt-fm", &["-o", "status", "-n", tgt])
        .run()
        .unwrap();
    assert_eq!(out.code(), Some(1), "not OFF (2): {}", text(&out));
    evidence(
        TIER,
        t0,
        format!(
            "host stonith-enabled=false: off and reboot of {tgt} (shown stopped) failed with the reason, status answered failed (not off) with it; CIB unchanged"
        ),
    );

    // with fencing on, the status is off, and the same off is confirmed
    host_fencing_on(&cluster);
    // A status answer may come from a reading up to STATUS_MAX_AGE old when no resource
    // operation result arrived since (operations.md), and a property change is none: the
    // agent's status just above may still be served, from before fencing was on.
    std::thread::sleep(vm_stonithd::fence::STATUS_MAX_AGE);
    let reply = ask(key, member.socket(), Action::Status, Some(tgt), "pmkt-fm");
    assert_eq!(
        (reply.outcome, reply.state),
        (Outcome::Done, PowerState::Off),
        "status: {reply:?}"
    );
    let (nonce, req) = sealed(key, Action::Off, Some(tgt), "pmkt-fm");
    let reply = FenceReply::open(key, &nonce, &raw(member.socket(), &req).unwrap()).unwrap();
    assert_eq!(
        (reply.outcome, reply.state),
        (Outcome::Done, PowerState::Off),
        "{reply:?}\n{}",
        stonith.log()
    );
    assert_clean(&cluster, &rsc);
    evidence(
        TIER,
        t0,
        "host stonith-enabled=true: the same off is confirmed",
    );

    // a repeat (the guest already stopped and pinned Stopped, no fence in progress) is
    // confirmed without writing the CIB; so are identical requests sent at once (each waits for
    // the one before it, then finds the guest already there)
    let before = epoch(&cluster);
    let (nonce, req) = sealed(key, Action::Off, Some(tgt), "pmkt-fm");
    let reply = FenceReply::open(key, &nonce, &raw(member.socket(), &req).unwrap()).unwrap();
    assert_eq!(
        (reply.outcome, reply.state),
        (Outcome::Done, PowerState::Off),
        "{reply:?}"
    );
    let socket = member.socket().to_path_buf();
    let same: Vec<_> = (0..3)
        .map(|_| {
            let (nonce, req) = sealed(key, Action::Off, Some(tgt), "pmkt-fm");
            let socket = socket.clone();
            std::thread::spawn(move || (nonce, raw(&socket, &req).unwrap()))
        })
        .collect();
    for h in same {
        let (nonce, bytes) = h.join().unwrap();
        let reply = FenceReply::open(key, &nonce, &bytes).unwrap();
        assert_eq!(reply.outcome, Outcome::Done, "{reply:?}");
    }
    assert_eq!(
        epoch(&cluster),
        before,
        "an off of a guest already off wrote the CIB\n{}",
        stonith.log()
    );
    assert_clean(&cluster, &rsc);
    evidence(
        TIER,
        t0,
        "repeated and concurrent identical offs of a guest already off: Done, CIB not written",
    );
}

#[test]
#[ignore = "tier live: needs root, corosync and pacemakerd"]
fn live_fence_busy_is_retry_not_a_final_error() {
    let t0 = Instant::now();
    let cluster = LiveCluster::acquire();
    let rd = rundir();
    // one request at a time, so that a slow one makes the daemon busy
    let mut stonith = StonithBed::start_bridged(
        &rd.join("vmconnectd"),
        cluster.node(),
        &format!("max_requests = 1\n{}", clusters(&["pmkt-fb1"])),
        &["pmkt-fb1"],
    );
    let member = BridgedGuest::start(&rd.join("vmconnectd"), stonith.dir(), "pmkt-fb1");
    // crm_mon answering after 3 s: a monitor request holds the one worker that long
    stonith.restart_with_fake_tool("crm_mon", "sleep 3\nexec /usr/sbin/crm_mon \"$@\"");
    let key = &stonith.key;
    let (nonce, slow) = sealed(key, Action::Monitor, None, "pmkt-fb1");
    let socket = member.socket().to_path_buf();
    let first = std::thread::spawn(move || raw(&socket, &slow));
    std::thread::sleep(Duration::from_millis(1000));
    let (_, req) = sealed(key, Action::List, None, "pmkt-fb1");
    match raw(member.socket(), &req) {
        Err(ClientError::Retry { .. }) => {}
        other => panic!(
            "a busy vm-stonithd must answer Retry: {other:?}\n{}",
            stonith.log()
        ),
    }
    let reply = FenceReply::open(key, &nonce, &first.join().unwrap().unwrap()).unwrap();
    assert_eq!(reply.outcome, Outcome::Done, "{reply:?}");
    // the same request sent again once the worker is free is served (nothing was remembered)
    let reply = FenceReply::open(
        key,
        &vm_seal::envelope::peek(&req).unwrap().nonce,
        &raw(member.socket(), &req).unwrap(),
    )
    .unwrap();
    assert_eq!(reply.outcome, Outcome::Done, "{reply:?}");
    evidence(
        TIER,
        t0,
        "max_requests reached: Retry Busy, and the same request sent again later is served",
    );
}

/// A fence started in the background: the agent as a child process.
fn background_off(
    stonith: &StonithBed,
    socket: &std::path::Path,
    requester: &str,
    target: &str,
) -> std::process::Child {
    std::process::Command::new(vm_tests::project_bin("fence_vmstonith"))
        .arg("--socket")
        .arg(socket)
        .arg("--key-file")
        .arg(stonith.guest_key())
        .args([
            "--requester",
            requester,
            "--timeout",
            "90",
            "-o",
            "off",
            "-n",
            target,
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

fn journal_present(cluster: &LiveCluster, rsc: &str) -> bool {
    cluster
        .pcmk()
        .snapshot()
        .is_ok_and(|c| c.meta_attribute(rsc, "pmkt-fence").is_some())
}

#[test]
#[ignore = "tier live: needs root, corosync, pacemakerd, libvirtd and the guest image"]
fn live_fence_faults_never_give_a_false_ok() {
    let t0 = Instant::now();
    let (cluster, lv, vmctl) = fencing_host();
    let tgt = "pmkt-fc";
    let rsc = format!("prmVMCTL_{tgt}");
    let rd = rundir();
    let mut stonith = StonithBed::start_bridged(
        &rd.join("vmconnectd"),
        cluster.node(),
        &clusters(&["pmkt-fy", tgt]),
        &["pmkt-fy"],
    );
    let fy = BridgedGuest::start(&rd.join("vmconnectd"), stonith.dir(), "pmkt-fy");
    guest_up(&vmctl, &cluster, tgt, Vport::None);
    let agent = |stonith: &StonithBed, args: &[&str]| {
        stonith.agent(fy.socket(), "pmkt-fy", args).run().unwrap()
    };

    // cibadmin fails to write: no OK, nothing changed, the guest runs on
    stonith.restart_with_fake_tool(
        "cibadmin",
        "for a in \"$@\"; do case \"$a\" in --patch|--replace) echo 'simulated failure' >&2; exit 1;; esac; done\nexec /usr/sbin/cibadmin \"$@\"",
    );
    let before = epoch(&cluster);
    let out = agent(&stonith, &["-o", "off", "-n", tgt, "--timeout", "30"]);
    assert_eq!(out.code(), Some(1), "{}", text(&out));
    assert!(running(&lv, tgt));
    assert_eq!(epoch(&cluster), before);
    assert_clean(&cluster, &rsc);
    stonith.stop_stonithd(nix::sys::signal::Signal::SIGTERM);
    stonith.start_stonithd(&[]);
    evidence(
        TIER,
        t0,
        format!("cibadmin failing: off refused with exit 1, CIB unchanged, {tgt} still running"),
    );

    // vm-stonithd killed (SIGKILL) mid-fence, then restarted
    for round in [
        "vm-stonithd SIGKILLed and restarted",
        "host vm-connectd restarted",
    ] {
        if !running(&lv, tgt) {
            assert_eq!(agent(&stonith, &["-o", "on", "-n", tgt]).code(), Some(0));
        }
        let child = background_off(&stonith, fy.socket(), "pmkt-fy", tgt);
        wait_for(
            "the fence's journal in the CIB",
            Duration::from_secs(60),
            || journal_present(&cluster, &rsc).then_some(()),
        );
        if round.starts_with("vm-stonithd") {
            stonith.stop_stonithd(nix::sys::signal::Signal::SIGKILL);
            stonith.start_stonithd(&[]);
        } else {
            stonith.relay.restart();
        }
        let out = child.wait_with_output().unwrap();
        wait_for("the journal to be cleaned", Duration::from_secs(60), || {
            (!journal_present(&cluster, &rsc)).then_some(())
        });
        assert_clean(&cluster, &rsc);
        let ok = out.status.success();
        if ok {
            assert!(
                !running(&lv, tgt),
                "{round}: the agent said OK but {tgt} runs"
            );
            assert!(cluster.status().nodes_with(&rsc, Role::Started).is_empty());
        }
        evidence(
            TIER,
            t0,
            format!(
                "{round} mid-fence: agent {}, {tgt} {}, nothing left half-set",
                if ok { "OK" } else { "failed" },
                if running(&lv, tgt) { "running" } else { "off" }
            ),
        );
    }

    // the target fails to stop: libvirtd hangs (SIGSTOP), the fence times out and rolls back
    if !running(&lv, tgt) {
        assert_eq!(agent(&stonith, &["-o", "on", "-n", tgt]).code(), Some(0));
    }
    let hung = LibvirtdStopped::new();
    let t = Instant::now();
    let out = agent(&stonith, &["-o", "off", "-n", tgt, "--timeout", "20"]);
    let took = t.elapsed();
    let journal_after = journal_present(&cluster, &rsc);
    let role_after = cluster
        .pcmk()
        .snapshot()
        .unwrap()
        .meta_attribute(&rsc, "target-role")
        .map(str::to_owned);
    // (still hung) the same with a short agent timeout: its deadline travels with the request
    // (protocol version 2), and vm-stonithd takes its own from it
    let timed_out_before = deadlines_from_relay(&stonith.log());
    let t = Instant::now();
    let short = agent(&stonith, &["-o", "off", "-n", tgt, "--timeout", "5"]);
    let took_short = t.elapsed();
    let short_journal = journal_present(&cluster, &rsc);
    let short_role = target_role(&cluster, &rsc);
    let timed_out = deadlines_from_relay(&stonith.log());
    drop(hung);
    assert_eq!(out.code(), Some(1), "{}", text(&out));
    assert!(took < Duration::from_secs(40), "the agent waited {took:?}");
    assert!(!journal_after, "journal left after the timeout");
    assert_eq!(
        role_after.as_deref(),
        Some("Started"),
        "target-role not rolled back"
    );
    assert_eq!(short.code(), Some(1), "{}", text(&short));
    assert!(
        text(&short).contains("timed out") || text(&short).contains("no answer within"),
        "{}",
        text(&short)
    );
    assert!(!short_journal, "journal left after the 5 s fence timed out");
    assert_eq!(
        short_role.as_deref(),
        Some("Started"),
        "target-role not rolled back"
    );
    assert!(
        took_short < Duration::from_secs(20),
        "the agent's 5 s timeout waited {took_short:?}"
    );
    let derived = timed_out.get(timed_out_before.len()..).unwrap_or_default();
    assert!(
        derived.iter().any(|ms| *ms < 5000),
        "vm-stonithd did not log a deadline under 5 s from the relay's carried time: {timed_out:?}\n{}",
        stonith.log()
    );
    // once libvirtd runs again the cluster settles with the guest running (the stop that was
    // issued completes, then the restored target-role starts it again)
    cluster.wait_role(&rsc, Role::Started, Duration::from_secs(180));
    assert_clean(&cluster, &rsc);
    evidence(
        TIER,
        t0,
        format!(
            "{tgt} cannot be stopped (libvirtd hung): agent failed after {:.1} s, fence rolled back, guest running again; with --timeout 5 the agent failed after {:.1} s (exit 1), rolled back, vm-stonithd's deadline {:?} ms from the relay's carried time",
            took.as_secs_f64(),
            took_short.as_secs_f64(),
            derived.last()
        ),
    );
}

/// The `deadline_ms` of vm-stonithd's timed-out requests whose deadline came from the relay's
/// carried time (`deadline_from=relay` in its per-request log line), in log order.
fn deadlines_from_relay(log: &str) -> Vec<u64> {
    log.lines()
        .filter(|l| l.contains("outcome=TimedOut") && l.contains("deadline_from=relay"))
        .filter_map(|l| {
            let v = l.split("deadline_ms=").nth(1)?;
            v.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
        })
        .collect()
}

#[test]
#[ignore = "tier live: needs root, corosync, pacemakerd, libvirtd and the guest image"]
fn live_fence_under_load() {
    let t0 = Instant::now();
    let (cluster, lv, vmctl) = fencing_host();
    let rd = rundir();
    let requesters = ["pmkt-lq1", "pmkt-lq2", "pmkt-lq3"];
    let targets = ["pmkt-ft1", "pmkt-ft2"];
    let mut members: Vec<&str> = requesters.to_vec();
    members.extend(targets);
    let stonith = StonithBed::start_bridged(
        &rd.join("vmconnectd"),
        cluster.node(),
        &clusters(&members),
        &requesters,
    );
    let guests: Vec<BridgedGuest> = requesters
        .iter()
        .map(|r| BridgedGuest::start(&rd.join("vmconnectd"), stonith.dir(), r))
        .collect();
    for t in targets {
        guest_up(&vmctl, &cluster, t, Vport::None);
    }
    // 50 concurrent status requests from three guests
    let results: Vec<(usize, Option<i32>, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..50)
            .map(|i| {
                let g = &guests[i % guests.len()];
                let cmd = stonith.agent(
                    g.socket(),
                    g.name(),
                    &["-o", "status", "-n", targets[i % 2]],
                );
                s.spawn(move || {
                    let out = cmd.run().unwrap();
                    (i, out.code(), out.stdout_text())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, code, out) in &results {
        assert_eq!(
            (*code, out.trim()),
            (Some(0), "Status: ON"),
            "status request {i}"
        );
    }
    evidence(
        TIER,
        t0,
        "50 concurrent status requests from 3 guests: all answered ON",
    );
    // concurrent off on different targets, from different guests
    let t = Instant::now();
    let offs: Vec<Output> = std::thread::scope(|s| {
        let hs: Vec<_> = targets
            .iter()
            .zip(&guests)
            .map(|(t, g)| {
                let cmd = stonith.agent(g.socket(), g.name(), &["-o", "off", "-n", t]);
                s.spawn(move || cmd.run().unwrap())
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (o, tg) in offs.iter().zip(targets) {
        assert!(o.success(), "off {tg}: {}", text(o));
        assert!(!running(&lv, tg), "{tg} still runs after OK");
        assert_clean(&cluster, &format!("prmVMCTL_{tg}"));
    }
    evidence(
        TIER,
        t0,
        format!(
            "concurrent off of {} from two guests: both OK and destroyed in {:.1} s",
            targets.join(" and "),
            t.elapsed().as_secs_f64()
        ),
    );

    // two guests fence the same target at once: one execution (the second joins the first),
    // both told OK, one power-off
    let tg = targets[0];
    let rsc = format!("prmVMCTL_{tg}");
    let on = stonith
        .agent(
            guests[2].socket(),
            guests[2].name(),
            &["-o", "on", "-n", tg],
        )
        .run()
        .unwrap();
    assert!(on.success(), "{}", text(&on));
    let hard = hard_stops(&rsc);
    let offs: Vec<Output> = std::thread::scope(|s| {
        let hs: Vec<_> = guests[..2]
            .iter()
            .map(|g| {
                let cmd = stonith.agent(g.socket(), g.name(), &["-o", "off", "-n", tg]);
                s.spawn(move || cmd.run().unwrap())
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for o in &offs {
        assert!(o.success(), "off {tg}: {}", text(o));
    }
    assert!(!running(&lv, tg));
    assert_eq!(hard_stops(&rsc), hard + 1, "one power-off for two requests");
    assert_clean(&cluster, &rsc);
    evidence(
        TIER,
        t0,
        format!("two guests fence {tg} at once: both OK, one hard power-off, nothing left"),
    );
}

#[test]
#[ignore = "tier live: needs root, corosync, pacemakerd, libvirtd and the guest image"]
fn live_fence_legacy_tokens_only_when_enabled() {
    let t0 = Instant::now();
    let (cluster, lv, vmctl) = fencing_host();
    let (req, tgt) = ("pmkt-fz", "pmkt-fl");
    let rsc = format!("prmVMCTL_{tgt}");
    vmctl.domain("pmkt-zz", &offline_domain_xml("pmkt-zz"));
    vmctl.ok(&["resource", "add", "pmkt-zz", "-a", cluster.node()]);
    let rd = rundir();
    let mut stonith = StonithBed::start_bridged(
        &rd.join("vmconnectd"),
        cluster.node(),
        &format!("{}legacy = true\n", clusters(&[req, tgt])),
        &[req],
    );
    let fz = BridgedGuest::start(&rd.join("vmconnectd"), stonith.dir(), req);
    guest_up(&vmctl, &cluster, tgt, Vport::None);
    let pw = stonith.dir().join("legacy.pw");
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&pw)
            .unwrap();
        std::io::Write::write_all(&mut f, b"not-the-public-one\n").unwrap();
    }
    let token = |dom: &str| {
        let out = vmctl.ok(&[
            "stonith",
            "token",
            dom,
            "--password-file",
            &pw.display().to_string(),
        ]);
        out.stdout_text().trim().to_owned()
    };
    let entry = token(tgt);
    assert!(entry.starts_with(&format!("{tgt}:U2FsdGVkX1")), "{entry}");
    let plugin = |hostlist: &str, op: &str| {
        Cmd::new(vm_tests::repo_dir().join("agents/stonith/external/vm-stonith"))
            .args([op, tgt])
            .env("hostlist", hostlist)
            .env("socket", fz.socket())
            .env("timeout", "60")
            .env("VM_CONNECT", vm_tests::project_bin("vm-connect"))
            .timeout(Duration::from_secs(120))
            .run()
            .unwrap()
    };
    // legacy mode off (the default): the token is refused, the guest runs on
    let out = plugin(&entry, "off");
    assert_ne!(out.code(), Some(0), "{}", text(&out));
    assert!(running(&lv, tgt));
    assert!(
        stonith.log().contains("legacy mode is off"),
        "{}",
        stonith.log()
    );

    // legacy mode on, in-process decryption
    stonith.set_legacy(&format!(
        "[legacy]\nenabled = true\npassword_file = \"{}\"\n",
        pw.display()
    ));
    stonith.stop_stonithd(nix::sys::signal::Signal::SIGTERM);
    stonith.start_stonithd(&[]);
    assert!(
        stonith.log().contains("legacy mode is on"),
        "no start-up warning"
    );
    let out = plugin(&entry, "off");
    assert!(out.success(), "{}\n{}", text(&out), stonith.log());
    assert!(!running(&lv, tgt), "legacy off said OK but {tgt} runs");
    assert_clean(&cluster, &rsc);
    // a valid token of a resource the cluster may not fence: NG
    let foreign = token("pmkt-zz").replace("pmkt-zz:", &format!("{tgt}:"));
    let out = plugin(&foreign, "on");
    assert_ne!(out.code(), Some(0), "{}", text(&out));
    assert!(!running(&lv, tgt));
    assert!(
        stonith.log().contains("is not the resource of a guest"),
        "{}",
        stonith.log()
    );
    evidence(
        TIER,
        t0,
        format!(
            "legacy token refused while legacy mode is off; with it on, plugin off {tgt} destroyed it; a foreign resource's token NG"
        ),
    );

    // legacy mode on, external decrypt command (argv, token on stdin, no shell)
    stonith.set_legacy(&format!(
        "[legacy]\nenabled = true\ndecrypt_command = [\"openssl\", \"des-ede3\", \"-d\", \"-base64\", \"-md\", \"md5\", \"-pass\", \"file:{}\"]\n",
        pw.display()
    ));
    stonith.stop_stonithd(nix::sys::signal::Signal::SIGTERM);
    stonith.start_stonithd(&[]);
    let out = plugin(&entry, "on");
    assert!(out.success(), "{}\n{}", text(&out), stonith.log());
    assert!(running(&lv, tgt));
    assert_clean(&cluster, &rsc);
    evidence(
        TIER,
        t0,
        format!(
            "legacy token decrypted by `openssl des-ede3 -d` run without a shell: plugin on {tgt} started it"
        ),
    );
}

/// The target-role of `rsc` in the CIB.
fn target_role(cluster: &LiveCluster, rsc: &str) -> Option<String> {
    cluster
        .pcmk()
        .snapshot()
        .unwrap()
        .meta_attribute(rsc, "target-role")
        .map(str::to_owned)
}

/// `n` sealed offs of `tgt` sent at once as `requester` through the guest daemon at `socket`;
/// each reply, opened (a Retry or error answer fails the test).
fn offs_at_once(
    key: &vm_seal::Key,
    socket: &std::path::Path,
    requester: &str,
    tgt: &str,
    n: usize,
) -> Vec<Result<FenceReply, String>> {
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..n)
            .map(|_| {
                let (nonce, req) = sealed(key, Action::Off, Some(tgt), requester);
                s.spawn(move || {
                    raw(socket, &req)
                        .map_err(|e| format!("{e}"))
                        .and_then(|b| FenceReply::open(key, &nonce, &b).map_err(|e| e.to_string()))
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
#[ignore = "tier live: needs root, corosync, pacemakerd, libvirtd and the guest image"]
fn live_fence_identical_offs_share_one_execution() {
    let t0 = Instant::now();
    let (cluster, lv, vmctl) = fencing_host();
    let (req, tgt) = ("pmkt-fi", "pmkt-fj");
    let rsc = format!("prmVMCTL_{tgt}");
    let rd = rundir();
    // two workers for the guest cluster: identical offs that each took one (the first running
    // the fence, the next queued on the guest's lock) left the rest answered Retry Busy
    let stonith = StonithBed::start_bridged(
        &rd.join("vmconnectd"),
        cluster.node(),
        &format!("max_requests_per_cluster = 2\n{}", clusters(&[req, tgt])),
        &[req],
    );
    let member = BridgedGuest::start(&rd.join("vmconnectd"), stonith.dir(), req);
    let key = &stonith.key;
    guest_up(&vmctl, &cluster, tgt, Vport::None);

    // one off alone: what it writes
    let before = epoch(&cluster);
    let r = offs_at_once(key, member.socket(), req, tgt, 1);
    assert!(
        matches!(&r[0], Ok(reply) if reply.outcome == Outcome::Done),
        "{r:?}\n{}",
        stonith.log()
    );
    let one = epoch(&cluster).1 - before.1;
    assert!(!running(&lv, tgt));
    let reply = ask(key, member.socket(), Action::On, Some(tgt), req);
    assert_eq!(reply.outcome, Outcome::Done, "{reply:?}");
    assert!(running(&lv, tgt));

    // six at once: one execution, each answered Done under its own nonce
    let hard = hard_stops(&rsc);
    let joined_before = stonith.log().matches("joined an identical off").count();
    let before = epoch(&cluster);
    let t = Instant::now();
    let replies = offs_at_once(key, member.socket(), req, tgt, 6);
    let took = t.elapsed();
    for r in &replies {
        assert!(
            matches!(r, Ok(reply) if reply.outcome == Outcome::Done && reply.state == PowerState::Off),
            "every identical off is answered Done: {replies:?}\n{}",
            stonith.log()
        );
    }
    assert!(!running(&lv, tgt));
    assert_eq!(
        epoch(&cluster).1 - before.1,
        one,
        "six identical offs wrote the CIB more than one does"
    );
    assert_eq!(hard_stops(&rsc), hard + 1, "one power-off");
    assert_clean(&cluster, &rsc);
    let joined = stonith.log().matches("joined an identical off").count() - joined_before;
    assert!(joined >= 1, "no request joined another:\n{}", stonith.log());
    evidence(
        TIER,
        t0,
        format!(
            "6 identical offs of {tgt} at once (2 workers for the cluster): all Done in {:.1} s, {joined} joined the first, CIB epoch +{one} as for one off, one power-off",
            took.as_secs_f64()
        ),
    );
}

/// SIGSTOPs this machine's libvirtd until dropped (a guest then cannot stop: its fence waits).
struct LibvirtdStopped(nix::unistd::Pid);

impl LibvirtdStopped {
    fn new() -> Self {
        let pidfile = state_dir().join("libvirt").join("libvirtd.pid");
        let pid = nix::unistd::Pid::from_raw(
            std::fs::read_to_string(&pidfile)
                .unwrap()
                .trim()
                .parse()
                .unwrap(),
        );
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
        LibvirtdStopped(pid)
    }
}

impl Drop for LibvirtdStopped {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(self.0, nix::sys::signal::Signal::SIGCONT);
    }
}

#[test]
#[ignore = "tier live: needs root, corosync, pacemakerd, libvirtd and the guest image"]
fn live_fence_cancel_rolls_back_unless_another_requester_waits() {
    let t0 = Instant::now();
    let (cluster, lv, vmctl) = fencing_host();
    let (req1, req2, tgt) = ("pmkt-fg1", "pmkt-fg2", "pmkt-fk");
    let rsc = format!("prmVMCTL_{tgt}");
    let rd = rundir();
    let stonith = StonithBed::start_bridged(
        &rd.join("vmconnectd"),
        cluster.node(),
        &clusters(&[req1, req2, tgt]),
        &[req1, req2],
    );
    let g1 = BridgedGuest::start(&rd.join("vmconnectd"), stonith.dir(), req1);
    let g2 = BridgedGuest::start(&rd.join("vmconnectd"), stonith.dir(), req2);
    guest_up(&vmctl, &cluster, tgt, Vport::None);
    let role0 = target_role(&cluster, &rsc);
    assert_eq!(role0.as_deref(), Some("Started"));

    // 1. The requester goes away mid-fence (its agent killed: the guest daemon sends Cancel)
    let hung = LibvirtdStopped::new();
    let mut agent = background_off(&stonith, g1.socket(), req1, tgt);
    wait_for(
        "the fence's journal in the CIB",
        Duration::from_secs(60),
        || journal_present(&cluster, &rsc).then_some(()),
    );
    assert_eq!(target_role(&cluster, &rsc).as_deref(), Some("Stopped"));
    let t = Instant::now();
    agent.kill().unwrap();
    let _ = agent.wait();
    wait_for(
        "the fence to be rolled back",
        Duration::from_secs(30),
        || (!journal_present(&cluster, &rsc)).then_some(()),
    );
    let rolled_back = t.elapsed();
    assert_eq!(
        target_role(&cluster, &rsc),
        role0,
        "target-role not restored"
    );
    assert_clean(&cluster, &rsc);
    let log = stonith.log();
    assert!(log.contains("the requester gave up"), "{log}");
    assert!(
        log.contains("the request was cancelled while waiting for the guest to stop"),
        "{log}"
    );
    assert!(
        !log.contains("off confirmed by the host cluster"),
        "an off was confirmed:\n{log}"
    );
    drop(hung);
    cluster.wait_role(&rsc, Role::Started, Duration::from_secs(180));
    assert!(running(&lv, tgt), "{tgt} not running again");
    assert_clean(&cluster, &rsc);
    evidence(
        TIER,
        t0,
        format!(
            "off of {tgt} (libvirtd hung) whose agent was killed: rolled back {:.1} s later (target-role {}, no journal, no force-stop), no Done; {tgt} running again",
            rolled_back.as_secs_f64(),
            role0.as_deref().unwrap_or("unset")
        ),
    );

    // 2. Two guests fence it at once; one guest's link closes (the host relay sends Cancel):
    //    the other still waits, so nothing is rolled back, and it is told Done
    let hard = hard_stops(&rsc);
    let hung = LibvirtdStopped::new();
    let mut first = background_off(&stonith, g1.socket(), req1, tgt);
    wait_for(
        "the fence's journal in the CIB",
        Duration::from_secs(60),
        || journal_present(&cluster, &rsc).then_some(()),
    );
    let second = background_off(&stonith, g2.socket(), req2, tgt);
    wait_for(
        "the second off to join the first",
        Duration::from_secs(30),
        || {
            stonith
                .log()
                .contains("joined an identical off of pmkt-fk")
                .then_some(())
        },
    );
    let gave_up = stonith.log().matches("the requester gave up").count();
    drop(g1);
    wait_for(
        "the Cancel of the closed link",
        Duration::from_secs(30),
        || (stonith.log().matches("the requester gave up").count() > gave_up).then_some(()),
    );
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        journal_present(&cluster, &rsc),
        "one requester's Cancel rolled back a fence another waits for\n{}",
        stonith.log()
    );
    assert_eq!(target_role(&cluster, &rsc).as_deref(), Some("Stopped"));
    drop(hung);
    let out = second.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the requester still waiting: {}{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        stonith.log()
    );
    // (the agent whose guest daemon went away may be retrying to connect: it was answered
    // nothing it could take for Done)
    let _ = first.kill();
    let out = first.wait_with_output().unwrap();
    assert!(!out.status.success(), "the requester whose link closed");
    assert!(!running(&lv, tgt), "{tgt} runs after Done");
    assert_eq!(hard_stops(&rsc), hard + 1, "one power-off in all");
    assert_clean(&cluster, &rsc);
    evidence(
        TIER,
        t0,
        format!(
            "two guests fence {tgt} at once, one's link closes: no rollback, the other told Done, one power-off"
        ),
    );
}

#[test]
#[ignore = "tier live: needs root, corosync and pacemakerd"]
fn live_fence_refuses_a_guest_known_by_its_socket_name_only() {
    let t0 = Instant::now();
    let cluster = LiveCluster::acquire();
    prepare(&cluster);
    let vmctl = LiveVmCtl::new(CONFIG);
    let (req, tgt) = ("pmkt-fu", "pmkt-fv");
    vmctl.domain(tgt, &offline_domain_xml(tgt));
    vmctl.ok(&["resource", "add", tgt, "-a", cluster.node()]);
    // a relay without libvirt: every socket in its directory is named after its file, so
    // whoever can create <dir>/pmkt-fu.sock is "pmkt-fu"
    let chan_dir = rundir().join("vmconnectd-nolibvirt");
    std::fs::create_dir_all(&chan_dir).unwrap();
    let mut stonith = StonithBed::start_with_relay_args(
        &chan_dir,
        cluster.node(),
        &clusters(&[req, tgt]),
        &["--no-libvirt"],
    );
    let member = BridgedGuest::start(&chan_dir, stonith.dir(), req);
    let key = &vm_seal::Key::parse(&stonith.key.to_file_text(), None).unwrap();
    let before = epoch(&cluster);
    let mut refused = Vec::new();
    for (action, target) in [
        (Action::Off, Some(tgt)),
        (Action::List, None),
        (Action::Monitor, None),
    ] {
        let reply = ask(key, member.socket(), action, target, req);
        assert_eq!(reply.outcome, Outcome::Refused, "{action}: {reply:?}");
        assert!(
            reply.message.contains("file name") && reply.message.contains("socket-name"),
            "{action}: the reply must say why: {reply:?}"
        );
        refused.push(action.to_string());
    }
    let out = stonith
        .agent(member.socket(), req, &["-o", "off", "-n", tgt])
        .run()
        .unwrap();
    assert_eq!(out.code(), Some(1), "{}", text(&out));
    assert_eq!(epoch(&cluster), before, "the CIB configuration changed");
    assert!(
        stonith.log().contains("does not trust"),
        "the refusal is logged:\n{}",
        stonith.log()
    );
    evidence(
        TIER,
        t0,
        format!(
            "relay --no-libvirt, default trusted_identities: {} from {req} (named by its socket file) refused, saying why; CIB unchanged",
            refused.join(", ")
        ),
    );

    // the operator of a host without libvirt opts in
    stonith.stop_stonithd(nix::sys::signal::Signal::SIGTERM);
    stonith.set_extra("trusted_identities = [\"libvirt\", \"configured\", \"socket-name\"]\n");
    stonith.start_stonithd(&[]);
    let reply = ask(key, member.socket(), Action::List, None, req);
    assert_eq!(reply.outcome, Outcome::Done, "{reply:?}");
    evidence(
        TIER,
        t0,
        "with trusted_identities listing \"socket-name\": the same guest's list is answered",
    );
}
