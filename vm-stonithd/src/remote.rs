//! The `remote` module: gives the host cluster's Pacemaker authkey to a guest that the CIB runs
//! as a guest node, over that guest's own channel, and publishes the key fingerprints that
//! `vm-ctl check` compares (docs/protocol.md §17, docs/security.md "Guest nodes: the
//! Pacemaker key").
//!
//! vm-stonithd serves it, not vm-connectd or vm-managerd: vm-connectd, the daemon reading what
//! guests send, holds no secret, and vm-managerd only reads the CIB; vm-stonithd already holds
//! the host's secrets (the guest clusters' keys), can change the CIB, and has the policy on how
//! a guest's identity must have been learnt (`trusted_identities`). So the key adds no new
//! process holding a host secret.
//!
//! A request is served only if (checked in this order, each refusal changing nothing):
//! 1. its body is `authkey -` or `authkey <fingerprint>` ([`vm_proto::authkey`]);
//! 2. vm-connectd learnt its guest (the Deliver's Origin, from the link) in a way
//!    `trusted_identities` lists;
//! 3. that guest has asked at most [`BURST`] times in the last [`REFILL`] × BURST (a token
//!    bucket per guest; beyond: Retry Busy), so that a guest cannot make the host read the CIB
//!    in a loop;
//! 4. the CIB holds the guest's VirtualDomain primitive (`prmVMCTL_<domain>`) with the meta
//!    attribute `remote-node` ([`decide`]).
//!
//! Then the key file is read (bounded), its fingerprint published as [`HOST_ATTR`] on this node,
//! what the guest holds as `pmkt-authkey-<domain>` (both only when changed), and the guest gets
//! `same` or the key. Requests are handled one at a time on the module connection's thread.
//!
//! On the same thread, when it registers and then every [`SWEEP`], the module removes the
//! `pmkt-authkey-<domain>` attributes of this node whose guest does not run here as a guest
//! node any more ([`stale_guest_attrs`]): after a live migration the old node would otherwise
//! keep what the guest reported there until it leaves the cluster.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use vm_common::error_chain;
use vm_pcmk::{Cib, Pacemaker, Update};
use vm_proto::Origin;
use vm_proto::authkey::{
    self, AuthkeyReply, Fingerprint, HOST_ATTR, KeyBytes, MAX_KEY, SERVICE, guest_attr,
    guest_of_attr,
};
use vm_proto::client::{ClientError, Delivery, Module, ModuleEvent, ModuleSender};
use vm_proto::message::{ErrorCode, RetryReason};

use crate::daemon::{Daemon, RefusalLog};

/// The meta attribute that makes a VirtualDomain primitive a guest node.
pub const REMOTE_NODE_META: &str = "remote-node";

/// Requests one guest may make at once before the bucket limits it.
pub const BURST: u32 = 4;

/// One more request allowed per this long.
pub const REFILL: Duration = Duration::from_secs(5);

/// How often the module removes the guest attributes this node should no longer carry
/// ([`stale_guest_attrs`]), and once when it registers with vm-connectd.
pub const SWEEP: Duration = Duration::from_secs(60);

/// Guests remembered by the rate limit at most (they are this host's guests; idle ones are
/// forgotten first).
const MAX_TRACKED: usize = 4096;

/// Why a guest gets no key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// vm-connectd knows the guest in a way the configuration does not trust.
    #[error(
        "this host does not trust how vm-connectd knows this guest ({0}; trusted_identities in vm-stonithd.toml)"
    )]
    Untrusted(&'static str),
    /// No `prmVMCTL_<domain>` VirtualDomain primitive with `remote-node` in the CIB.
    #[error("guest {0} is not configured as a guest node (vm-ctl resource add ... --guest-node)")]
    NotAGuestNode(String),
}

/// Whether the guest `domain` is a guest node in `cib`: its resource `prmVMCTL_<domain>` is a
/// VirtualDomain primitive with a non-empty `remote-node` meta attribute.
pub fn decide(cib: &Cib, domain: &str) -> Result<(), Refusal> {
    let rsc = vm_pcmk::virtualdomain::guest_resource(domain);
    let is_guest_node = cib
        .resource(&rsc)
        .is_some_and(vm_pcmk::virtualdomain::is_virtual_domain)
        && cib
            .meta_attribute(&rsc, REMOTE_NODE_META)
            .is_some_and(|n| !n.is_empty());
    if is_guest_node {
        Ok(())
    } else {
        Err(Refusal::NotAGuestNode(domain.to_owned()))
    }
}

/// The `pmkt-authkey-<domain>` attributes of `node` that should go: the guest does not run
/// there (any more: it migrated away or stopped, or its resource is gone), according to the
/// nodes' operation history ([`vm_pcmk::history::active_nodes`]), or it is not a guest node
/// ([`decide`]). What a guest reported is only true on the node it runs on, and `vm-ctl check`
/// reads it only there; this keeps the old node of a migration from showing a stale value to
/// whoever reads the attributes, and a deleted guest node from leaving one behind.
pub fn stale_guest_attrs(cib: &Cib, node: &str) -> Vec<String> {
    cib.transient_attributes(node)
        .into_iter()
        .filter_map(|(name, _)| {
            let domain = guest_of_attr(name)?;
            let runs_here = decide(cib, domain).is_ok()
                && vm_pcmk::history::active_nodes(
                    cib,
                    &vm_pcmk::virtualdomain::guest_resource(domain),
                )
                .iter()
                .any(|n| n == node);
            (!runs_here).then(|| name.to_owned())
        })
        .collect()
}

/// Reads the key file: at most [`MAX_KEY`] bytes, not empty.
pub fn read_key(path: &Path) -> Result<KeyBytes, KeyFileError> {
    let file = std::fs::File::open(path).map_err(|e| KeyFileError::Read(path.into(), e))?;
    let mut buf = Vec::new();
    file.take(MAX_KEY as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|e| KeyFileError::Read(path.into(), e))?;
    KeyBytes::new(buf).map_err(|e| KeyFileError::Size(path.into(), e))
}

/// The host's key file cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// It cannot be read.
    #[error("cannot read the Pacemaker key {}", .0.display())]
    Read(std::path::PathBuf, #[source] std::io::Error),
    /// It is empty or too large.
    #[error("the Pacemaker key {} is unusable", .0.display())]
    Size(std::path::PathBuf, #[source] authkey::AuthkeyError),
}

/// A token bucket per guest.
#[derive(Debug, Default)]
struct RateLimit {
    buckets: HashMap<String, (f64, Instant)>,
}

impl RateLimit {
    fn admit(&mut self, origin: &str, now: Instant) -> bool {
        if self.buckets.len() >= MAX_TRACKED && !self.buckets.contains_key(origin) {
            self.buckets
                .retain(|_, (_, t)| now.saturating_duration_since(*t) < REFILL * BURST);
            if self.buckets.len() >= MAX_TRACKED {
                return false;
            }
        }
        let (tokens, last) = self
            .buckets
            .entry(origin.to_owned())
            .or_insert((f64::from(BURST), now));
        let refilled = now.saturating_duration_since(*last).as_secs_f64() / REFILL.as_secs_f64();
        *tokens = (*tokens + refilled).min(f64::from(BURST));
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What a request gets.
#[derive(Debug)]
enum Answer {
    Reply(AuthkeyReply),
    Error(ErrorCode, String),
    Retry(String),
}

/// The `remote` module's state.
#[derive(Debug)]
pub struct Remote {
    daemon: Arc<Daemon>,
    pcmk: Pacemaker,
    rate: Mutex<RateLimit>,
    /// Attribute values published so far (name to value), to write only changes.
    published: Mutex<HashMap<String, String>>,
    refusals: RefusalLog,
}

impl Remote {
    /// The module of `daemon` (its configuration and node), reading the CIB through `pcmk`.
    pub fn new(daemon: Arc<Daemon>, pcmk: Pacemaker) -> Remote {
        Remote {
            daemon,
            pcmk,
            rate: Mutex::new(RateLimit::default()),
            published: Mutex::new(HashMap::new()),
            refusals: RefusalLog::default(),
        }
    }

    /// Publishes this node's key fingerprint (best effort: it only serves `vm-ctl check`).
    pub fn publish_host_key(&self) {
        let path = self.daemon.config().guest_node_authkey.clone();
        match read_key(&path) {
            Ok(key) => self.publish(HOST_ATTR, &key.fingerprint().to_string()),
            Err(e) => tracing::debug!("no host fingerprint published: {}", error_chain(&e)),
        }
    }

    /// Serves vm-connectd as the `remote` module until `shutdown` is set, reconnecting when
    /// the connection drops.
    pub fn serve(&self, socket: &Path, shutdown: &AtomicBool) {
        let mut backoff = Duration::from_millis(200);
        while !shutdown.load(Ordering::SeqCst) {
            match Module::register(socket, SERVICE, Duration::from_secs(5)) {
                Ok(module) => {
                    tracing::info!(socket = %socket.display(), "registered with vm-connectd as the {SERVICE} module");
                    backoff = Duration::from_millis(200);
                    self.serve_connection(module, shutdown);
                }
                Err(e) => {
                    tracing::debug!(
                        "cannot register the {SERVICE} module (retrying): {}",
                        error_chain(&e)
                    );
                }
            }
            if !shutdown.load(Ordering::SeqCst) {
                thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }

    fn serve_connection(&self, mut module: Module, shutdown: &AtomicBool) {
        let sender = match module.sender() {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("{}", error_chain(&e));
                return;
            }
        };
        // at once: a previous run may have left attributes of guests that have gone since
        let mut next_sweep = Instant::now();
        while !shutdown.load(Ordering::SeqCst) {
            if Instant::now() >= next_sweep {
                self.sweep();
                next_sweep = Instant::now() + SWEEP;
            }
            match module.next_event(Duration::from_millis(500)) {
                Ok(Some(ModuleEvent::Deliver(d))) => self.answer(&d, &sender),
                // requests are answered before the next is read: nothing to cancel
                Ok(Some(ModuleEvent::Cancel { .. }) | None) => {}
                Err(e) => {
                    if !matches!(e, ClientError::Closed) {
                        tracing::warn!("{SERVICE} module: {}", error_chain(&e));
                    }
                    return;
                }
            }
        }
    }

    fn answer(&self, d: &Delivery, sender: &ModuleSender) {
        let origin = d.deliver.origin();
        let span = tracing::info_span!("remote", id = d.id, origin = origin.domain());
        let _e = span.enter();
        let sent = match self.handle(origin, d.deliver.body(), Instant::now()) {
            Answer::Reply(reply) => {
                let mut body = reply.encode();
                let r = sender.reply(d.id, &body);
                body.fill(0);
                std::hint::black_box(&body);
                r
            }
            Answer::Error(code, msg) => sender.error(d.id, code, &msg),
            Answer::Retry(detail) => sender.retry(d.id, RetryReason::Busy, &detail),
        };
        if let Err(e) = sent {
            tracing::warn!("cannot send the answer: {}", error_chain(&e));
        }
    }

    fn refuse(&self, origin: &str, code: ErrorCode, why: String) -> Answer {
        self.refusals.log(origin, |more| {
            tracing::warn!("{SERVICE}: refused: {why}{more}");
        });
        Answer::Error(code, why)
    }

    fn handle(&self, origin: &Origin, body: &[u8], now: Instant) -> Answer {
        let domain = origin.domain();
        let have = match authkey::parse_request(body) {
            Ok(h) => h,
            Err(e) => return self.refuse(domain, ErrorCode::BadRequest, e.to_string()),
        };
        let config = self.daemon.config();
        if !config.trusts(origin.source()) {
            let why = Refusal::Untrusted(crate::config::identity_name(origin.source()));
            return self.refuse(domain, ErrorCode::Forbidden, why.to_string());
        }
        if !self
            .rate
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .admit(domain, now)
        {
            self.refusals.log(domain, |more| {
                tracing::warn!("{SERVICE}: too many requests from {domain}: retry busy{more}");
            });
            return Answer::Retry(format!(
                "at most {BURST} key requests per guest, then one per {} s",
                REFILL.as_secs()
            ));
        }
        let cib = match self.pcmk.snapshot() {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("{SERVICE}: cannot read the CIB: {}", error_chain(&e));
                return Answer::Error(
                    ErrorCode::Internal,
                    "the host cannot read its cluster configuration".into(),
                );
            }
        };
        if let Err(r) = decide(&cib, domain) {
            return self.refuse(domain, ErrorCode::Forbidden, r.to_string());
        }
        let key = match read_key(&config.guest_node_authkey) {
            Ok(k) => k,
            Err(e) => {
                self.refusals.log(domain, |more| {
                    tracing::error!("{SERVICE}: {}{more}", error_chain(&e));
                });
                return Answer::Error(
                    ErrorCode::Internal,
                    "the host has no usable Pacemaker key".into(),
                );
            }
        };
        let fp = key.fingerprint();
        self.publish(HOST_ATTR, &fp.to_string());
        if vm_proto::liveness::valid_domain(domain) {
            let held = have
                .as_ref()
                .map_or_else(|| "-".to_owned(), Fingerprint::to_string);
            self.publish(&guest_attr(domain), &held);
        }
        if have == Some(fp) {
            tracing::debug!("{SERVICE}: guest node {domain} holds this host's key");
            Answer::Reply(AuthkeyReply::Same)
        } else {
            tracing::info!(fingerprint = %fp, "{SERVICE}: Pacemaker key sent to guest node {domain}");
            Answer::Reply(AuthkeyReply::Key(key))
        }
    }

    /// Removes the attributes [`stale_guest_attrs`] finds on this node (best effort, logged):
    /// one CIB read.
    pub fn sweep(&self) {
        let cib = match self.pcmk.snapshot() {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(
                    "{SERVICE}: no sweep (cannot read the CIB): {}",
                    error_chain(&e)
                );
                return;
            }
        };
        for name in stale_guest_attrs(&cib, self.daemon.node()) {
            let mut published = self.published.lock().unwrap_or_else(|e| e.into_inner());
            match self.write_attr(&name, None) {
                Ok(()) => {
                    tracing::info!(%name, "{SERVICE}: removed: its guest node does not run on this node");
                    published.remove(&name);
                }
                Err(e) => tracing::warn!("cannot remove {name}: {e}"),
            }
        }
    }

    /// Publishes `value` as the transient attribute `name` of this node, if it changed since
    /// the last time (best effort, logged).
    fn publish(&self, name: &str, value: &str) {
        let mut published = self.published.lock().unwrap_or_else(|e| e.into_inner());
        if published.get(name).is_some_and(|v| v == value) {
            return;
        }
        match self.write_attr(name, Some(value)) {
            Ok(()) => {
                tracing::debug!(%name, %value, "published");
                published.insert(name.to_owned(), value.to_owned());
            }
            Err(e) => tracing::warn!("cannot publish {name} for vm-ctl check: {e}"),
        }
    }

    /// Sets (`Some`) or removes (`None`) the transient attribute `name` of this node. On a CIB
    /// file (`CIB_file`, the test tiers) in the file's status section, as attrd would.
    fn write_attr(&self, name: &str, value: Option<&str>) -> Result<(), String> {
        let node = self.daemon.node().to_owned();
        if self.pcmk.cib_file().is_some() {
            return self
                .pcmk
                .transact(5, |cib| {
                    let changed = match value {
                        Some(v) => cib.set_transient_attribute(&node, name, v),
                        None => cib.remove_transient_attribute(&node, name),
                    };
                    Ok::<_, vm_pcmk::PcmkError>(if changed {
                        Update::Write(())
                    } else {
                        Update::Unchanged(())
                    })
                })
                .map_err(|e| error_chain(&e));
        }
        let mut cmd = vm_common::process::Cmd::new("attrd_updater").args(["--name", name]);
        cmd = match value {
            Some(v) => cmd.args(["--update", v]),
            None => cmd.args(["--delete"]),
        };
        match cmd.timeout(Duration::from_secs(10)).run() {
            Ok(o) if o.success() => Ok(()),
            Ok(o) => Err(format!("attrd_updater: {}", o.stderr_text().trim())),
            Err(e) => Err(error_chain(&e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use vm_proto::OriginSource;

    use super::*;

    fn origin(domain: &str, source: OriginSource) -> Origin {
        Origin::new(domain, "", source).unwrap()
    }

    fn cib(resources: &str) -> Cib {
        Cib::parse(&format!(
            "<cib epoch=\"1\" num_updates=\"0\" admin_epoch=\"0\"><configuration><crm_config/><nodes/>\
             <resources>{resources}</resources><constraints/></configuration><status/></cib>"
        ))
        .unwrap()
    }

    fn vd(dom: &str, meta: &str) -> String {
        format!(
            "<primitive id=\"prmVMCTL_{dom}\" class=\"ocf\" provider=\"pm-kvm-tools\" type=\"VirtualDomain\">\
             <meta_attributes id=\"m-{dom}\">{meta}</meta_attributes></primitive>"
        )
    }

    #[test]
    fn only_a_virtual_domain_with_remote_node_is_a_guest_node() {
        let c = cib(&format!(
            "{}{}{}<primitive id=\"prmVMCTL_d\" class=\"ocf\" provider=\"pacemaker\" type=\"Dummy\">\
             <meta_attributes id=\"m-d\"><nvpair id=\"m-d-r\" name=\"remote-node\" value=\"d\"/></meta_attributes></primitive>",
            vd("g1", "<nvpair id=\"a\" name=\"remote-node\" value=\"g1\"/>"),
            vd(
                "g2",
                "<nvpair id=\"b\" name=\"target-role\" value=\"Started\"/>"
            ),
            vd("g3", "<nvpair id=\"c\" name=\"remote-node\" value=\"\"/>"),
        ));
        assert_eq!(decide(&c, "g1"), Ok(()));
        for dom in ["g2", "g3", "d", "g4", ""] {
            assert_eq!(
                decide(&c, dom),
                Err(Refusal::NotAGuestNode(dom.into())),
                "{dom}"
            );
        }
    }

    #[test]
    fn the_attributes_of_guests_that_do_not_run_here_as_guest_nodes_are_stale() {
        let remote = "<nvpair id=\"r\" name=\"remote-node\" value=\"x\"/>";
        let resources = [
            vd("g1", remote),
            vd("g2", remote),
            vd("g3", ""),
            vd("g5", remote),
        ]
        .concat();
        // (node, domain, operation): g1 runs on n1, g2 migrated from n1 to n2, g3 runs on n1
        // but is not a guest node, g4 has no resource, g5 was stopped on n1
        let history = |node: &str| -> String {
            [
                ("n1", "g1", "start", 3),
                ("n1", "g2", "stop", 9),
                ("n2", "g2", "migrate_from", 4),
                ("n1", "g3", "start", 5),
                ("n1", "g5", "stop", 6),
            ]
            .iter()
            .filter(|(n, ..)| *n == node)
            .map(|(_, dom, op, call)| {
                format!(
                    "<lrm_resource id=\"prmVMCTL_{dom}\"><lrm_rsc_op id=\"prmVMCTL_{dom}_last_0\" \
                     operation=\"{op}\" call-id=\"{call}\" rc-code=\"0\" op-status=\"0\" interval=\"0\"/></lrm_resource>"
                )
            })
            .collect()
        };
        let attrs: String = [
            "pmkt-authkey",
            "pmkt-authkey-g1",
            "pmkt-authkey-g2",
            "pmkt-authkey-g3",
            "pmkt-authkey-g4",
            "pmkt-authkey-g5",
            "pmkt-other",
        ]
        .iter()
        .map(|a| format!("<nvpair id=\"s-{a}\" name=\"{a}\" value=\"-\"/>"))
        .collect();
        let c = Cib::parse(&format!(
            "<cib epoch=\"1\" num_updates=\"0\" admin_epoch=\"0\"><configuration><crm_config/><nodes/>\
             <resources>{resources}</resources><constraints/></configuration><status>\
             <node_state id=\"1\" uname=\"n1\" in_ccm=\"true\" crmd=\"online\"><transient_attributes id=\"1\">\
             <instance_attributes id=\"s-1\">{attrs}</instance_attributes></transient_attributes>\
             <lrm id=\"1\"><lrm_resources>{}</lrm_resources></lrm></node_state>\
             <node_state id=\"2\" uname=\"n2\" in_ccm=\"true\" crmd=\"online\">\
             <lrm id=\"2\"><lrm_resources>{}</lrm_resources></lrm></node_state></status></cib>",
            history("n1"),
            history("n2")
        ))
        .unwrap();
        assert_eq!(
            stale_guest_attrs(&c, "n1"),
            [
                "pmkt-authkey-g2",
                "pmkt-authkey-g3",
                "pmkt-authkey-g4",
                "pmkt-authkey-g5"
            ]
        );
        assert!(
            stale_guest_attrs(&c, "n2").is_empty(),
            "n2 has no attributes"
        );
    }

    #[test]
    fn the_rate_limit_is_per_guest_and_refills() {
        let mut r = RateLimit::default();
        let t = Instant::now();
        for _ in 0..BURST {
            assert!(r.admit("g1", t));
        }
        assert!(!r.admit("g1", t), "past the burst");
        assert!(r.admit("g2", t), "another guest is not affected");
        assert!(!r.admit("g1", t + REFILL / 2));
        assert!(r.admit("g1", t + REFILL + REFILL / 2));
        assert!(!r.admit("g1", t + REFILL + REFILL / 2));
    }

    #[test]
    fn the_key_file_is_read_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("authkey");
        std::fs::write(&p, vec![1u8; MAX_KEY]).unwrap();
        assert_eq!(read_key(&p).unwrap().expose().len(), MAX_KEY);
        std::fs::write(&p, vec![1u8; MAX_KEY + 1]).unwrap();
        assert!(matches!(read_key(&p), Err(KeyFileError::Size(..))));
        std::fs::write(&p, b"").unwrap();
        assert!(matches!(read_key(&p), Err(KeyFileError::Size(..))));
        assert!(matches!(
            read_key(&dir.path().join("none")),
            Err(KeyFileError::Read(..))
        ));
    }

    #[test]
    fn untrusted_and_malformed_requests_are_refused_before_the_cib_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::config::Config::parse("", std::path::Path::new("t.toml")).unwrap();
        // a CIB file that does not exist: any read of it would answer Internal
        let pcmk = Pacemaker::file(dir.path().join("no-cib.xml"));
        let daemon = Arc::new(Daemon::new(
            dir.path().join("t.toml"),
            config,
            crate::keys::KeyRing::default(),
            crate::fence::Executor::new(pcmk.clone(), crate::watch::Watcher::manual(), "n1".into()),
            "n1".into(),
        ));
        let remote = Remote::new(daemon, pcmk.clone());
        let now = Instant::now();
        let a = remote.handle(&origin("g1", OriginSource::Libvirt), b"authkey", now);
        assert!(
            matches!(&a, Answer::Error(ErrorCode::BadRequest, m) if m.contains("authkey -")),
            "{a:?}"
        );
        let a = remote.handle(&origin("g1", OriginSource::SocketName), b"authkey -", now);
        assert!(
            matches!(&a, Answer::Error(ErrorCode::Forbidden, m) if m.contains("socket-name")),
            "{a:?}"
        );
        assert_eq!(pcmk.reads().cib, 0, "the CIB was not read");
        // a trusted guest reaches the CIB; past its burst it does not
        for _ in 0..BURST {
            let a = remote.handle(&origin("g1", OriginSource::Libvirt), b"authkey -", now);
            assert!(matches!(a, Answer::Error(ErrorCode::Internal, _)), "{a:?}");
        }
        let a = remote.handle(&origin("g1", OriginSource::Libvirt), b"authkey -", now);
        assert!(matches!(a, Answer::Retry(_)), "{a:?}");
        assert_eq!(pcmk.reads().cib, u64::from(BURST));
    }
}
