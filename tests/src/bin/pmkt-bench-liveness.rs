//! `pmkt-bench-liveness`: how long the host cluster takes to notice a hung guest through its
//! channel and start recovering it (issue 16).
//!
//! ```text
//! pmkt-bench-liveness [RUNS=5] [LIVENESS_TIMEOUT=30s] [RELAY_OPTION...]
//! ```
//! On the multi-node test bed (`vm_tests::liveness::PanicBed`): one TCG guest with the guest
//! daemon, added by the packaged vm-ctl with `vm_liveness_timeout=LIVENESS_TIMEOUT` and the
//! shipped monitor (`vm_monitor_op=(10s 30s restart)`), every node's host vm-connectd with its
//! defaults (heartbeat 5 s, liveness timeout 20 s) unless RELAY_OPTIONs say otherwise. RUNS
//! times: panic the guest's kernel (QEMU keeps running it), then time, from the panic on its
//! console, the published liveness turning `silent`, the monitor's failure in `crm_mon` (the
//! host cluster's recovery starts: the stop is next), and the guest running and answering again;
//! its failures are cleaned up between runs. Prints each run and the medians.

// A benchmark harness: a failed step ends the run with its cause.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::Duration;

use vm_tests::liveness::PanicBed;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runs: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(5);
    let timeout = args.get(1).cloned().unwrap_or_else(|| "30s".to_owned());
    let relay: Vec<&str> = args.iter().skip(2).map(String::as_str).collect();
    // the tier's keys, with the shipped monitor interval
    let keys = format!(
        "{}vm_monitor_op=(10s 30s restart)\nvm_liveness_timeout={timeout}\n\
         vm_migration_threshold=1000\nvm_failure_timeout=10min\n",
        vm_tests::multinode::VMCTL_KEYS.replace("vm_monitor_op=(5s 30s restart)\n", "")
    );
    let bed = PanicBed::start("gbench", &keys, &relay, 1);
    let node = bed.running_on();
    println!(
        "hung guest -> host cluster's recovery, {runs} run(s) ({} cores, load {}): relay {}, \
         vm_liveness_timeout={timeout}, monitor every 10 s, guest on {node}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        if relay.is_empty() {
            "defaults (heartbeat 5 s, liveness timeout 20 s)".to_owned()
        } else {
            relay.join(" ")
        }
    );
    let mut rows: Vec<[f64; 3]> = Vec::new();
    for run in 1..=runs {
        bed.wait_liveness(&node, "up:answering:", Duration::from_secs(120));
        let t_hang = bed.panic(&node);
        bed.wait_liveness(&node, "up:silent:", Duration::from_secs(300));
        let silent = t_hang.elapsed();
        // (failures are cleaned up after every run: any failure is this run's)
        bed.wait_failed_monitor(&node, None, Duration::from_secs(600));
        let failed = t_hang.elapsed();
        bed.wait_rebooted_on(&node, Duration::from_secs(180));
        bed.wait_liveness(&node, "up:answering:", Duration::from_secs(120));
        let back = t_hang.elapsed();
        let row = [silent, failed, back].map(|d| d.as_secs_f64());
        println!(
            "  run {run}: silent after {:.1} s, monitor failed (recovery starts) after {:.1} s, \
             running and answering again after {:.1} s",
            row[0], row[1], row[2]
        );
        rows.push(row);
        bed.cleanup();
        bed.mn.wait_idle(&bed.admin);
    }
    let median = |i: usize| {
        let mut v: Vec<f64> = rows.iter().map(|r| r[i]).collect();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        }
    };
    println!(
        "  median of {runs}: silent {:.1} s, monitor failed (recovery starts) {:.1} s, running and \
         answering again {:.1} s (after the panic)",
        median(0),
        median(1),
        median(2)
    );
    bed.remove();
}
