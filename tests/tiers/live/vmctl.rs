//! vm-ctl on the live single-node cluster: concurrent writers (several vm-ctl as if on
//! different hosts, plus cibadmin) lose nothing; a real TCG guest started, stopped and deleted
//! through VirtualDomain with `--wait`.

use std::time::{Duration, Instant};

use vm_common::process::Cmd;
use vm_libvirt::{DomainState, Hypervisor};
use vm_pcmk::Role;
use vm_tests::guest::{Vport, domain_xml, wait_ready};
use vm_tests::libvirt::HostLibvirt;
use vm_tests::live::LiveCluster;
use vm_tests::vmctl::{LiveVmCtl, domain_xml as offline_domain_xml};
use vm_tests::{evidence, run_ok, state_dir, wait_for};

/// The test bed's base vm-ctl.conf with short operation timeouts and the node's pingd.
pub(crate) const CONFIG: &str = concat!(
    include_str!("../../testbed/vm-ctl-base.conf"),
    "vm_start_op=(0 60s restart)\n",
    "vm_stop_op=(0 60s)\n",
    "vm_monitor_op=(5s 30s restart)\n",
    "vm_pingd1=(clnPingd default_ping_set)\n",
);

/// The clone vm-ctl.conf names and healthy ping on the node.
pub(crate) fn prepare(cluster: &LiveCluster) {
    let pcmk = cluster.pcmk();
    run_ok(&pcmk.tool("cibadmin").args([
        "--create",
        "-o",
        "resources",
        "-X",
        r#"<clone id="clnPingd"><primitive id="clnPingd-p" class="ocf" provider="pacemaker" type="Dummy"/></clone>"#,
    ]));
    run_ok(&pcmk.tool("crm_attribute").args([
        "--node",
        cluster.node(),
        "--name",
        "default_ping_set",
        "--update",
        "100",
    ]));
}

#[test]
#[ignore = "tier live: needs root, corosync and pacemakerd"]
fn live_vmctl_concurrent_writers_lose_nothing() {
    let t0 = Instant::now();
    let cluster = LiveCluster::acquire();
    prepare(&cluster);
    let bed = LiveVmCtl::new(CONFIG);
    let writers = 4;
    let per_writer = 3;
    for w in 0..writers {
        for g in 0..per_writer {
            let name = format!("cw{w}g{g}");
            bed.domain(&name, &offline_domain_xml(&name));
        }
    }
    // Four vm-ctl processes with separate locks (as on four hosts), each adding its guests one
    // command at a time, while cibadmin adds Dummy resources: every writer's read-decide-write
    // races the others' on the real CIB manager.
    let mut handles = Vec::new();
    for w in 0..writers {
        let cmds: Vec<Cmd> = (0..per_writer)
            .map(|g| {
                bed.cmd_with_lock(
                    &format!("lock{w}"),
                    &[
                        "-v",
                        "resource",
                        "add",
                        &format!("cw{w}g{g}"),
                        "-a",
                        cluster.node(),
                    ],
                )
            })
            .collect();
        handles.push(std::thread::spawn(move || {
            cmds.iter()
                .map(|c| {
                    let out = c.run().unwrap();
                    assert!(out.success(), "{}: {}", c.display(), out.stderr_text());
                    out.stderr_text().matches("retrying").count()
                })
                .sum::<usize>()
        }));
    }
    let pcmk = cluster.pcmk();
    let dummies = 20;
    let cib_writer = std::thread::spawn(move || {
        for i in 0..dummies {
            run_ok(&pcmk.tool("cibadmin").args([
                "--create",
                "-o",
                "resources",
                "-X",
                &format!(
                    r#"<primitive id="cw-dummy{i}" class="ocf" provider="pacemaker" type="Dummy"><meta_attributes id="cw-dummy{i}-m"><nvpair id="cw-dummy{i}-m-t" name="target-role" value="Stopped"/></meta_attributes></primitive>"#
                ),
            ]));
        }
    });
    let retries: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    cib_writer.join().unwrap();
    let cib = cluster.pcmk().snapshot().unwrap();
    for w in 0..writers {
        for g in 0..per_writer {
            let rsc = format!("prmVMCTL_cw{w}g{g}");
            assert!(cib.resource(&rsc).is_some(), "{rsc} lost");
            assert_eq!(
                cib.constraints_of(&rsc).len(),
                4,
                "{rsc}: ACT, ping rule, colocation, order"
            );
        }
    }
    for i in 0..dummies {
        assert!(
            cib.resource(&format!("cw-dummy{i}")).is_some(),
            "cw-dummy{i} lost"
        );
    }
    let verify = cluster.pcmk().verify().unwrap();
    assert!(verify.valid, "{}", verify.messages);
    evidence(
        "live",
        t0,
        format!(
            "{writers} concurrent vm-ctl (separate locks) + cibadmin: all {} guests and {dummies} dummies present, {retries} stale writes refused by the CIB and redone",
            writers * per_writer
        ),
    );
}

#[test]
#[ignore = "tier live: needs root, corosync and pacemakerd"]
fn live_vmctl_two_many_guest_adds_at_once_lose_nothing() {
    let t0 = Instant::now();
    let cluster = LiveCluster::acquire();
    prepare(&cluster);
    // what crm_verify already finds (the reset leaves the operation history of an earlier
    // test's deleted resources in the status section, failures included): only new problems
    // count against the adds
    let problems = |messages: &str| -> Vec<String> {
        messages
            .lines()
            .filter(|l| l.contains("error"))
            .map(str::to_owned)
            .collect()
    };
    let known = problems(&cluster.pcmk().verify().unwrap().messages);
    let bed = LiveVmCtl::new(CONFIG);
    let per_writer = 20;
    for w in 0..2 {
        for g in 0..per_writer {
            let name = format!("mw{w}g{g:02}");
            bed.domain(&name, &offline_domain_xml(&name));
        }
    }
    // two vm-ctl with separate locks (as on two hosts), 20 guests each in one command: one
    // in the default shape (one change), one in batches of 7 (three changes), racing
    let cmds: Vec<Cmd> = (0..2)
        .map(|w| {
            let list: Vec<String> = (0..per_writer).map(|g| format!("mw{w}g{g:02}")).collect();
            let list = list.join(",");
            let mut args = vec!["-v", "resource", "add", &list, "-a", cluster.node()];
            if w == 1 {
                args.extend(["--batch", "7"]);
            }
            bed.cmd_with_lock(&format!("lock{w}"), &args)
        })
        .collect();
    let handles: Vec<_> = cmds
        .into_iter()
        .map(|c| {
            std::thread::spawn(move || {
                let out = c.run().unwrap();
                assert!(out.success(), "{}: {}", c.display(), out.stderr_text());
                out.stderr_text().matches("retrying").count()
            })
        })
        .collect();
    let retries: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    let cib = cluster.pcmk().snapshot().unwrap();
    let mut present = 0;
    for w in 0..2 {
        for g in 0..per_writer {
            let rsc = format!("prmVMCTL_mw{w}g{g:02}");
            assert!(cib.resource(&rsc).is_some(), "{rsc} lost");
            assert_eq!(
                cib.constraints_of(&rsc).len(),
                4,
                "{rsc}: ACT, ping rule, colocation, order"
            );
            present += 1;
        }
    }
    let verify = cluster.pcmk().verify().unwrap();
    let new: Vec<String> = problems(&verify.messages)
        .into_iter()
        .filter(|l| !known.contains(l))
        .collect();
    assert!(new.is_empty(), "{}", verify.messages);
    evidence(
        "live",
        t0,
        format!(
            "two vm-ctl (separate locks) adding 20 guests each at once, one in one change, one in batches of 7: {present} of 40 present whole, {retries} stale writes refused and redone"
        ),
    );
}

#[test]
#[ignore = "tier live: needs root, corosync, pacemakerd, libvirtd and the guest image"]
fn live_vmctl_starts_stops_and_deletes_a_real_guest() {
    let t0 = Instant::now();
    let cluster = LiveCluster::acquire();
    let lv = HostLibvirt::acquire();
    prepare(&cluster);
    let bed = LiveVmCtl::new(CONFIG);
    let name = "pmkt-lg1";
    let rundir = state_dir().join("run").join("live-tier");
    std::fs::create_dir_all(rundir.join("vmconnectd")).unwrap();
    let log = rundir.join(format!("{name}.console.log"));
    let _ = std::fs::remove_file(&log);
    bed.domain(name, &domain_xml(name, &rundir, &rundir, Vport::Echo));

    bed.ok(&["resource", "add", name, "-a", cluster.node()]);
    let out = bed.ok(&["resource", "start", name, "--wait=120"]);
    assert!(
        out.stdout_text().contains("start requested"),
        "{}",
        out.stdout_text()
    );
    let rsc = format!("prmVMCTL_{name}");
    // --wait returned: crm_mon must say Started (not Starting), and libvirt must run it
    let status = cluster.status();
    assert_eq!(status.nodes_with(&rsc, Role::Started), [cluster.node()]);
    assert_eq!(
        lv.conn().domain(name).unwrap().map(|d| d.state),
        Some(DomainState::Running)
    );
    wait_ready(&log, Duration::from_secs(90));
    evidence(
        "live",
        t0,
        format!("vm-ctl start --wait: {rsc} Started, TCG guest booted"),
    );
    // the running agent writes the guest's utilization into its configuration; the guest is
    // still the one vm-ctl added
    wait_for(
        "VirtualDomain to write the guest's utilization",
        Duration::from_secs(60),
        || {
            let cib = cluster.pcmk().snapshot().ok()?;
            cib.resource(&rsc)?
                .elements()
                .any(|e| e.name == "utilization")
                .then_some(())
        },
    );
    let out = bed.ok(&["resource", "add", name, "-a", cluster.node()]);
    assert!(
        out.stdout_text().contains("already present"),
        "{}",
        out.stdout_text()
    );
    // vm-ctl status on the live cluster: the guest where it runs, the node and its ping
    let v: serde_json::Value =
        serde_json::from_str(&bed.ok(&["status", "--output", "json"]).stdout_text()).unwrap();
    let s = &v["status"];
    let g = &s["guests"][0];
    assert_eq!(
        (
            &g["domain"],
            &g["state"],
            &g["nodes"][0],
            &g["preferred_node"]
        ),
        (
            &name.into(),
            &"started".into(),
            &cluster.node().into(),
            &cluster.node().into()
        ),
        "{v:#}"
    );
    // this test runs no host vm-connectd: nothing published, so unknown
    assert_eq!(g["channel"]["liveness"], "unknown");
    let n = &s["nodes"][0];
    assert_eq!(
        (&n["name"], &n["state"], &n["dc"]),
        (&cluster.node().into(), &"online".into(), &true.into())
    );
    assert_eq!(n["attributes"][0]["health"], "green", "{n:#}");
    let text = bed.ok(&["status"]).stdout_text();
    assert!(text.contains("Host cluster: 1 of 1 nodes online"), "{text}");
    evidence(
        "live",
        t0,
        format!(
            "vm-ctl status: {name} started on {}, ping green",
            cluster.node()
        ),
    );
    // --watch on the live cluster: crm_mon's redraws bring the stop as a new line; SIGTERM
    // ends it (exit 0) and takes its crm_mon with it
    let mut watch = std::process::Command::new(vm_tests::project_bin("vm-ctl"))
        .arg("--config")
        .arg(bed.config_path())
        .args(["status", "--watch", "--output", "json"])
        .env_remove("CIB_file")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    let stdout = watch.stdout.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next = || -> serde_json::Value {
        serde_json::from_str(&lines.recv_timeout(Duration::from_secs(60)).unwrap()).unwrap()
    };
    assert_eq!(next()["status"]["guests"][0]["state"], "started");
    let watch_pid = nix::unistd::Pid::from_raw(i32::try_from(watch.id()).unwrap());
    // its crm_mon watcher: the child redrawing into the watch's FIFO
    let crm_mon_of_watch = || -> Vec<i32> {
        run_ok(
            &Cmd::new("ps")
                .args(["-o", "pid=,args=", "--ppid"])
                .arg(watch.id().to_string()),
        )
        .stdout_text()
        .lines()
        .filter(|l| l.contains("crm_mon") && l.contains("--output-to="))
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect()
    };
    let crm_mon_pids = wait_for("the watch's crm_mon", Duration::from_secs(20), || {
        Some(crm_mon_of_watch()).filter(|p| !p.is_empty())
    });

    let e = bed.fails(&["resource", "delete", name], 11).stderr_text();
    assert!(e.contains("stop it first"), "{e}");
    assert!(cluster.pcmk().snapshot().unwrap().resource(&rsc).is_some());

    let t_stop = Instant::now();
    bed.ok(&["resource", "stop", name, "--wait=120"]);
    assert!(cluster.status().nodes_with(&rsc, Role::Started).is_empty());
    // the watch printed the stop: a line with the guest stopped
    let seen = wait_for(
        "the watch to show the stop",
        Duration::from_secs(60),
        || {
            let v = next();
            (v["status"]["guests"][0]["state"] == "stopped").then_some(t_stop.elapsed())
        },
    );
    nix::sys::signal::kill(watch_pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let code = wait_for("the watch to end", Duration::from_secs(20), || {
        watch.try_wait().unwrap().map(|s| s.code())
    });
    assert_eq!(code, Some(0));
    for pid in crm_mon_pids {
        let pid = nix::unistd::Pid::from_raw(pid);
        wait_for(
            "the watch's crm_mon to end",
            Duration::from_secs(10),
            || nix::sys::signal::kill(pid, None).is_err().then_some(()),
        );
    }
    evidence(
        "live",
        t0,
        format!(
            "vm-ctl status --watch: the stop shown {seen:.1?} after the stop command began; SIGTERM: exit 0, its crm_mon gone"
        ),
    );
    assert!(
        lv.conn().domain(name).unwrap().is_none(),
        "VirtualDomain's stop left the transient domain"
    );
    evidence(
        "live",
        t0,
        format!("vm-ctl stop --wait: {rsc} Stopped, domain gone from libvirt"),
    );

    let out = bed.ok(&["resource", "delete", name]);
    assert!(
        out.stdout_text().contains("deleted"),
        "{}",
        out.stdout_text()
    );
    let cib = cluster.pcmk().snapshot().unwrap();
    assert!(cib.resource(&rsc).is_none());
    assert!(cib.constraints_of(&rsc).is_empty());
    // --wait that cannot be met: exit 14 naming the resource
    bed.ok(&["resource", "add", name, "-a", cluster.node()]);
    run_ok(&cluster.pcmk().tool("crm_attribute").args([
        "--node",
        cluster.node(),
        "--name",
        "default_ping_set",
        "--update",
        "0",
    ]));
    let e = bed
        .fails(&["resource", "start", name, "--wait=3"], 14)
        .stderr_text();
    assert!(e.contains(&rsc) && e.contains("Timed out"), "{e}");
    bed.ok(&["resource", "stop", name]);
    bed.ok(&["resource", "delete", name, "--wait=60"]);
    evidence(
        "live",
        t0,
        format!("vm-ctl delete: {rsc} and its constraints gone; an unreachable --wait exits 14"),
    );
}

/// Issue 13: a many-guest add whose patch re-creates the `resources` section whole, while a
/// fence device is configured in that section. Pacemaker's fencer keeps a copy of the CIB,
/// patched from the CIB manager's change notifications, and re-reads its devices from it when
/// a change touches resources: the device must still be registered afterwards, by the same
/// fencer (not one pacemakerd restarted, which would have read the whole CIB afresh), and a
/// fence through it must work.
#[test]
#[ignore = "tier live: needs root, corosync and pacemakerd"]
fn live_vmctl_many_guest_add_keeps_the_fencers_devices() {
    let t0 = Instant::now();
    let cluster = LiveCluster::acquire();
    prepare(&cluster);
    let pcmk = cluster.pcmk();
    // cluster-glue's `null` plugin (through fence_legacy) "fences" the host list it is given
    // and succeeds: a device the fencer registers from the CIB and can run, fencing no real
    // node (a static list naming a node that does not exist)
    let (device, target) = ("pmkt-live-null-fence", "pmkt-null-target");
    run_ok(&pcmk.tool("cibadmin").args([
        "--create",
        "-o",
        "resources",
        "-X",
        &format!(
            r#"<primitive id="{device}" class="stonith" type="fence_legacy"><instance_attributes id="{device}-ia"><nvpair id="{device}-plugin" name="plugin" value="null"/><nvpair id="{device}-hosts" name="hostlist" value="{target}"/><nvpair id="{device}-check" name="pcmk_host_check" value="static-list"/><nvpair id="{device}-list" name="pcmk_host_list" value="{target}"/></instance_attributes></primitive>"#
        ),
    ]));
    let registered = || {
        let out = Cmd::new("stonith_admin")
            .arg("--list-registered")
            .timeout(Duration::from_secs(60))
            .run()
            .ok()?;
        (out.success() && out.stdout_text().lines().any(|l| l.trim() == device)).then_some(())
    };
    wait_for(
        "the fencer to register the device",
        Duration::from_secs(60),
        registered,
    );
    let fencer = || {
        run_ok(&Cmd::new("pgrep").args(["-f", "/usr/lib/pacemaker/pacemaker-fenced"]))
            .stdout_text()
            .trim()
            .to_owned()
    };
    let fencer_before = fencer();
    let bed = LiveVmCtl::new(CONFIG);
    // enough guests that placing their primitives one by one would cost Pacemaker more than
    // taking the section whole (vm_pcmk::tools::sections_to_recreate): the patch re-creates it
    let n = 300;
    let names: Vec<String> = (0..n).map(|i| format!("fd{i:03}")).collect();
    for name in &names {
        bed.domain(name, &offline_domain_xml(name));
    }
    let out = run_ok(
        &bed.cmd(&["resource", "add", &names.join(","), "-a", cluster.node()])
            .env("RUST_LOG", "vm_pcmk=debug"),
    );
    assert!(
        out.stderr_text()
            .contains(r#"patch re-creates the section whole section="resources""#),
        "the add did not re-create the resources section:\n{}",
        out.stderr_text()
    );
    let cib = pcmk.snapshot().unwrap();
    assert!(cib.resource(device).is_some());
    assert!(
        names
            .iter()
            .all(|d| cib.resource(&format!("prmVMCTL_{d}")).is_some())
    );
    let epoch = cib.version().epoch;
    evidence(
        "live",
        t0,
        format!(
            "{n} guests added in one change that re-created the resources section (epoch {epoch}), the fence device {device} in it"
        ),
    );
    // the fencer has applied that change to its copy once it re-read its devices at that
    // version (or a later one)
    let log = state_dir().join("live").join("pacemaker.log");
    wait_for(
        "the fencer to re-read its devices after the change",
        Duration::from_secs(180),
        || {
            let text = std::fs::read_to_string(&log).ok()?;
            text.lines()
                .filter(|l| {
                    l.contains("pacemaker-fenced") && l.contains("Updating devices to version")
                })
                .filter_map(|l| l.rsplit(' ').next())
                .filter_map(|v| v.split('.').nth(1)?.parse::<u64>().ok())
                .any(|e| e >= epoch)
                .then_some(())
        },
    );
    wait_for(
        "the fencer to list the device",
        Duration::from_secs(60),
        registered,
    );
    assert_eq!(
        fencer(),
        fencer_before,
        "the fencer was restarted: it did not keep up with the change"
    );
    let out = run_ok(
        &Cmd::new("stonith_admin")
            .args(["--fence", target, "--timeout", "60"])
            .timeout(Duration::from_secs(90)),
    );
    evidence(
        "live",
        t0,
        format!(
            "the same fencer applied the change, still lists {device}, and fenced {target} through it: {}",
            out.stdout_text().trim()
        ),
    );
    // out before the reset, which would power off every VirtualDomain resource one call at a
    // time
    run_ok(
        &pcmk
            .tool("cibadmin")
            .args(["--replace", "-o", "constraints", "-X", "<constraints/>"]),
    );
    run_ok(
        &pcmk
            .tool("cibadmin")
            .args(["--replace", "-o", "resources", "-X", "<resources/>"]),
    );
}
