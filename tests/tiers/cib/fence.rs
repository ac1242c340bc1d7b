//! vm-stonithd's fence executor on a CIB file: how many times one fence reads the CIB and the
//! cluster status. Every read is a Pacemaker tool call (15-25 ms on a live cluster, more while
//! the CIB manager is busy), on the path a guest cluster waits on.
//!
//! On a file nothing acts on the configuration, so the status section stays as written: the
//! guest is shown stopped (an off is confirmed at the first status read) and never started (an
//! on waits until its deadline and rolls back). That is enough to count the reads of each step,
//! and to see the last-fence record (vm-fence's `record`) written in the changes a fence makes,
//! as `vm-ctl status` reads it.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use vm_common::process::Cmd;
use vm_fence::record::{FenceAction, FenceRecord, FenceResult};
use vm_pcmk::Reads;
use vm_pcmk::virtualdomain::force_stop_attr;
use vm_seal::{Action, Name, Outcome, PowerState};
use vm_stonithd::fence::{Executor, Job, Requester};
use vm_stonithd::plan::JOURNAL_ATTR;
use vm_stonithd::watch::Watcher;
use vm_tests::cib::{CibFile, CibSpec};
use vm_tests::{evidence, project_bin, run_ok};

const RSC: &str = "prmVMCTL_g1";

/// One node, host fencing on, guest `g1` as vm-ctl names its resource (not running: there is
/// no status for it).
fn bed() -> CibFile {
    let cib = CibSpec::default().nodes(&["node1"]).stonith(true).create();
    cib.create_in(
        "resources",
        &format!(
            r#"<primitive id="{RSC}" class="ocf" provider="pm-kvm-tools" type="VirtualDomain">
                 <instance_attributes id="{RSC}-ia"><nvpair id="{RSC}-cfg" name="config" value="/etc/pmkt/g1.xml"/></instance_attributes>
               </primitive>"#
        ),
    );
    cib
}

fn job(action: Action, within: Duration) -> Job {
    Job {
        action,
        target: Some(Name::new("g1").unwrap()),
        resource: None,
        deadline: Instant::now() + within,
        cancel: Arc::new(AtomicBool::new(false)),
        request: "00ff".into(),
        requester: Requester {
            cluster: Name::new("web").ok(),
            name: Name::new("www-b").ok(),
            origin: Name::new("web2").ok(),
        },
    }
}

/// The fence's traces in the CIB: target-role, journal, the power-off switch.
fn traces(cib: &CibFile) -> (Option<String>, bool, bool) {
    let c = cib.pcmk().snapshot().unwrap();
    (
        c.meta_attribute(RSC, "target-role").map(str::to_owned),
        c.meta_attribute(RSC, JOURNAL_ATTR).is_some(),
        c.node_attribute("node1", &force_stop_attr(RSC)).is_some(),
    )
}

#[test]
#[ignore = "tier cib: needs Pacemaker's tools"]
fn an_off_reads_the_cib_twice_and_the_status_once() {
    let cib = bed();
    let pcmk = cib.pcmk();
    let ex = Executor::new(pcmk.clone(), Watcher::manual(), "node1".into());
    let reply = ex.run(&job(Action::Off, Duration::from_secs(20)));
    assert_eq!(
        (reply.outcome, reply.state),
        (Outcome::Done, PowerState::Off),
        "{reply:?}"
    );
    // one read to find the resource and begin (compare-and-swap), one to finish (the status
    // changed meanwhile on a live cluster, so the begin's read is stale for that write); one
    // crm_mon to confirm
    assert_eq!(pcmk.reads(), Reads { cib: 2, status: 1 });
    assert_eq!(traces(&cib), (Some("Stopped".into()), false, false));
}

#[test]
#[ignore = "tier cib: needs Pacemaker's tools"]
fn a_reboot_reads_the_cib_three_times() {
    let cib = bed();
    let pcmk = cib.pcmk();
    let ex = Executor::new(pcmk.clone(), Watcher::manual(), "node1".into());
    let t0 = Instant::now();
    let reply = ex.run(&job(Action::Reboot, Duration::from_secs(3)));
    // the off is confirmed; the on cannot be on a file: it times out and is rolled back
    assert_eq!(
        (reply.outcome, reply.state),
        (Outcome::Done, PowerState::Off),
        "{reply:?}"
    );
    assert!(
        reply
            .message
            .contains("off confirmed; starting it again failed"),
        "{reply:?}"
    );
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    // find the resource + begin the off (one read); end the off + begin the on (one read, one
    // write); roll back the on (a successful on: end it)
    let reads = pcmk.reads();
    assert_eq!(reads.cib, 3, "{reads:?}");
    // the off's confirmation, then the on's waits (each woken at least every FALLBACK)
    assert!(reads.status >= 2, "{reads:?}");
    // rolled back to where the off left it, nothing of either fence left behind
    assert_eq!(traces(&cib), (Some("Stopped".into()), false, false));
}

/// The last-fence record node1's vm-stonithd holds for the guest.
fn record(cib: &CibFile) -> Option<FenceRecord> {
    let c = cib.pcmk().snapshot().unwrap();
    c.transient_attribute("node1", &vm_fence::record::attr_name(RSC))
        .map(|v| FenceRecord::parse(v).unwrap())
}

#[test]
#[ignore = "tier cib: needs Pacemaker's tools"]
fn a_fence_records_itself_in_the_changes_it_already_makes() {
    let t0 = Instant::now();
    let cib = bed();
    // node1 is a member: it has its node_state, where its transient attributes live
    cib.create_in(
        "status",
        r#"<node_state id="1" uname="node1" in_ccm="true" crmd="online" join="member" expected="member"/>"#,
    );
    let pcmk = cib.pcmk();
    let ex = Executor::new(pcmk.clone(), Watcher::manual(), "node1".into());
    let before = vm_fence::journal::unix(std::time::SystemTime::now());
    let reply = ex.run(&job(Action::Off, Duration::from_secs(20)));
    assert_eq!(reply.outcome, Outcome::Done, "{reply:?}");
    // no write of its own: the same reads as without the record
    assert_eq!(pcmk.reads(), Reads { cib: 2, status: 1 });
    let r = record(&cib).expect("no record");
    assert_eq!((r.action, r.result), (FenceAction::Off, FenceResult::Done));
    assert!(
        r.started >= before && r.ended.is_some_and(|e| e >= r.started),
        "{r:?}"
    );
    assert_eq!(
        (
            r.cluster.as_ref().map(Name::as_str),
            r.requester.as_ref().map(Name::as_str),
            r.origin.as_ref().map(Name::as_str)
        ),
        (Some("web"), Some("www-b"), Some("web2"))
    );
    // vm-ctl status reads it from the same file
    let status = |cib: &CibFile| {
        let out = run_ok(
            &Cmd::new(project_bin("vm-ctl"))
                .args([
                    "--config",
                    "/nonexistent/vm-ctl.conf",
                    "status",
                    "--output",
                    "json",
                ])
                .env("CIB_file", cib.path()),
        );
        serde_json::from_str::<serde_json::Value>(&out.stdout_text()).unwrap()
    };
    let v = status(&cib);
    let last = &v["status"]["guests"][0]["fence"]["last"];
    assert_eq!(last["result"], "done", "{v:#}");
    assert_eq!(last["requester"], "www-b");
    assert_eq!(last["node"], "node1");
    evidence(
        "cib",
        t0,
        "vm-stonithd: an off's record (off done by web/www-b over web2) written in its own changes; vm-ctl status shows it",
    );

    // an on that cannot be confirmed (nothing starts anything on a file) is rolled back, and
    // recorded so; the record replaces the last one
    let reply = ex.run(&job(Action::On, Duration::from_secs(2)));
    assert_eq!(reply.outcome, Outcome::TimedOut, "{reply:?}");
    let r = record(&cib).expect("no record");
    assert_eq!(
        (r.action, r.result),
        (FenceAction::On, FenceResult::TimedOut)
    );
    assert_eq!(traces(&cib), (Some("Stopped".into()), false, false));
    assert_eq!(
        status(&cib)["status"]["guests"][0]["fence"]["last"]["result"],
        "timed-out"
    );
    // a fence that writes nothing (already off) leaves the record as it was
    let reply = ex.run(&job(Action::Off, Duration::from_secs(20)));
    assert!(reply.message.contains("nothing written"), "{reply:?}");
    assert_eq!(record(&cib).map(|r| r.result), Some(FenceResult::TimedOut));
    evidence(
        "cib",
        t0,
        "vm-stonithd: a timed-out on recorded as timed-out; a fence that writes nothing keeps the record",
    );
}
