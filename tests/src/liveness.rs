//! Guest liveness on the multi-node cluster (issue 16): a TCG guest running the guest daemon,
//! added by the packaged vm-ctl with the liveness and escalation keys, on a cluster whose nodes
//! each run the packaged host vm-connectd; and what the tests and the bench do to it: panic its
//! kernel (QEMU keeps running it), and watch the published liveness, the failed monitor and the
//! recovery. Shared by the multi-node tier's end-to-end test and `bench/liveness.sh`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use vm_pcmk::Role;

use crate::guest::{Vport, cmdline_hang_on_panic, domain_xml_with, helper_cmd, wait_ready};
use crate::multinode::{MultiNode, Relays};
use crate::vmctl::LiveVmCtl;
use crate::wait_for;

/// One guest watched through its channel on the multi-node cluster.
#[derive(Debug)]
pub struct PanicBed {
    /// The cluster.
    pub mn: MultiNode,
    /// vm-ctl on it (through the first node).
    pub vmctl: LiveVmCtl,
    /// The node commands are run from.
    pub admin: String,
    /// The guest's domain name.
    pub name: String,
    /// Its resource id.
    pub rsc: String,
    /// Its liveness attribute.
    pub attr: String,
    _relays: Relays,
}

impl PanicBed {
    /// Brings the cluster up, starts host vm-connectd with `relay` options in every node, adds
    /// guest `name` (the guest daemon on its channel, a kernel that hangs on panic) with vm-ctl
    /// and `keys` (vm-ctl.conf lines over the test bed's base; [`crate::multinode::VMCTL_KEYS`]
    /// for the tier's), preferring node number `home`, and starts
    /// it: it has booted there when this returns.
    pub fn start(name: &str, keys: &str, relay: &[&str], home: usize) -> Self {
        let mn = MultiNode::acquire();
        let nodes: Vec<String> = mn.nodes().iter().map(|s| (*s).to_owned()).collect();
        let admin = nodes[0].clone();
        let relays = mn.start_relays(relay);
        let vmctl = mn.vmctl(keys);
        let cmdline = cmdline_hang_on_panic(name, Vport::Daemon);
        vmctl.domain(
            name,
            &domain_xml_with(
                name,
                "/run/pmkt".as_ref(),
                "/var/log/libvirt".as_ref(),
                Vport::Daemon,
                &[("CMDLINE", &cmdline)],
            ),
        );
        let bed = Self {
            vmctl,
            admin,
            name: name.to_owned(),
            rsc: vm_pcmk::virtualdomain::guest_resource(name),
            attr: vm_proto::liveness::attr_name(name),
            _relays: relays,
            mn,
        };
        let home = nodes[home % nodes.len()].clone();
        bed.vmctl.ok(&["resource", "add", name, "-a", &home]);
        // (no failure of an earlier resource of that name may be taken for this one's)
        bed.cleanup();
        bed.vmctl.ok(&["resource", "start", name, "--wait=120"]);
        wait_ready(&bed.console_log(&home), Duration::from_secs(90));
        bed
    }

    /// The node running the guest (it must run on exactly one).
    pub fn running_on(&self) -> String {
        self.mn
            .wait_role(&self.rsc, Role::Started, Duration::from_secs(120))
    }

    /// The guest's console transcript as written on `node`.
    pub fn console_log(&self, node: &str) -> PathBuf {
        self.mn
            .dir()
            .join(node)
            .join("log-libvirt")
            .join(format!("{}.console.log", self.name))
    }

    /// The guest's published liveness on `node`.
    pub fn liveness(&self, node: &str) -> Option<String> {
        self.mn.transient_attr(node, &self.attr)
    }

    /// Waits until the liveness on `node` starts with `prefix` (e.g. `up:silent:`); returns it.
    pub fn wait_liveness(&self, node: &str, prefix: &str, within: Duration) -> String {
        wait_for(
            &format!("{} on {node} to be {prefix}...", self.attr),
            within,
            || self.liveness(node).filter(|v| v.starts_with(prefix)),
        )
    }

    /// Makes the guest on `node` panic its kernel (`echo c > /proc/sysrq-trigger`; the kernel
    /// then hangs and QEMU keeps running) and returns when its console shows the panic.
    pub fn panic(&self, node: &str) -> Instant {
        let helper = helper_cmd().display().to_string();
        // the console exchange completes before the panic, a second later
        let out = self
            .mn
            .cmd(node, &helper)
            .args([
                "console",
                &format!("/run/pmkt/{}.console.sock", self.name),
                "(sleep 1; echo c > /proc/sysrq-trigger) >/dev/null 2>&1 &",
                "30",
            ])
            .run()
            .unwrap();
        assert!(out.success(), "{}", out.stderr_text());
        wait_for(
            &format!("the kernel panic on {node}"),
            Duration::from_secs(30),
            || {
                std::fs::read_to_string(self.console_log(node))
                    .ok()
                    .filter(|t| t.contains("Kernel panic"))
                    .map(|_| Instant::now())
            },
        )
    }

    /// Waits for a failed monitor of the guest on `node` in `crm_mon` other than `before` (a
    /// failure recorded earlier, which `crm_mon` keeps listing until it expires or is cleaned
    /// up); returns its (operation key, node, exit reason, call id).
    pub fn wait_failed_monitor(
        &self,
        node: &str,
        before: Option<&(String, String, String, String)>,
        within: Duration,
    ) -> (String, String, String, String) {
        let op = format!("{}_monitor", self.rsc);
        wait_for(
            &format!("{}'s monitor to fail on {node}", self.rsc),
            within,
            || {
                self.mn.failures().into_iter().find(|f| {
                    f.0.starts_with(&op) && f.1 == node && before.is_none_or(|b| b.3 != f.3)
                })
            },
        )
    }

    /// Waits until the guest runs on `node` again, booted afresh (its console has the ready
    /// marker and no panic).
    pub fn wait_rebooted_on(&self, node: &str, within: Duration) {
        wait_for(
            &format!("{} to boot again on {node}", self.name),
            within,
            || {
                let s = self.mn.any_status(&[&self.admin])?;
                let text = std::fs::read_to_string(self.console_log(node)).ok()?;
                (s.nodes_with(&self.rsc, Role::Started) == [node.to_owned()]
                    && text.contains(crate::guest::READY_MARKER)
                    && !text.contains("Kernel panic"))
                .then_some(())
            },
        );
    }

    /// `crm_resource --cleanup` of the guest: its failures are forgotten.
    pub fn cleanup(&self) {
        self.mn.exec(
            &self.admin,
            &["crm_resource", "--cleanup", "--resource", &self.rsc],
        );
    }

    /// Stops and deletes the guest.
    pub fn remove(&self) {
        self.vmctl
            .ok(&["resource", "stop", &self.name, "--wait=120"]);
        self.vmctl.ok(&["resource", "delete", &self.name]);
    }
}
