//! What the CIB's status section records about a resource beyond what `crm_mon` reports: the
//! operation history of each node (`lrm_rsc_op`), its fail counts (the transient attributes
//! `fail-count-<rsc>#<op>_<interval>` the controller writes), and from them a live migration in
//! progress.
//!
//! Everything here reads one [`Cib`] snapshot; nothing is written.

use serde::Serialize;

use crate::Cib;
use crate::xml::Element;

/// `op-status` of an operation still running (Pacemaker's `PCMK_EXEC_PENDING`), recorded when
/// `record-pending` is on (its default since Pacemaker 2.1).
const EXEC_PENDING: &str = "-1";

/// The value Pacemaker writes for an infinite fail count (`INFINITY`, its score infinity).
pub const FAIL_COUNT_INFINITY: u64 = 1_000_000;

/// One recorded operation of a resource on a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LrmOp {
    /// The node whose history holds it.
    pub node: String,
    /// The entry's id (`<rsc>_last_0`, `<rsc>_last_failure_0`, `<rsc>_monitor_10000`).
    pub id: String,
    /// `start`, `stop`, `monitor`, `migrate_to`, ...
    pub operation: String,
    /// The executor's call id (`-1` while pending).
    pub call_id: i64,
    /// The agent's exit code.
    pub rc_code: Option<i32>,
    /// Its execution status (`op-status`: 0 done, -1 pending, others failed to run).
    pub op_status: Option<i32>,
    /// Still running (recorded as pending).
    pub pending: bool,
    /// The interval of a recurring operation, in ms (0: not recurring).
    pub interval_ms: u64,
    /// When its result last changed (Unix seconds).
    pub last_rc_change: Option<u64>,
    /// The agent's reason for a failure.
    pub exit_reason: String,
    /// A migration's source node.
    pub migrate_source: Option<String>,
    /// A migration's target node.
    pub migrate_target: Option<String>,
}

fn parse_op(node: &str, op: &Element) -> Option<LrmOp> {
    let attr = |a: &str| op.get(a).filter(|v| !v.is_empty()).map(str::to_owned);
    Some(LrmOp {
        node: node.to_owned(),
        id: op.id()?.to_owned(),
        operation: op.get("operation")?.to_owned(),
        call_id: op.get("call-id").and_then(|c| c.parse().ok()).unwrap_or(-1),
        rc_code: op.get("rc-code").and_then(|c| c.parse().ok()),
        op_status: op.get("op-status").and_then(|s| s.parse().ok()),
        pending: op.get("op-status") == Some(EXEC_PENDING),
        interval_ms: op.get("interval").and_then(|i| i.parse().ok()).unwrap_or(0),
        last_rc_change: op.get("last-rc-change").and_then(|t| t.parse().ok()),
        exit_reason: op.get("exit-reason").unwrap_or("").to_owned(),
        migrate_source: attr("migrate_source"),
        migrate_target: attr("migrate_target"),
    })
}

/// Every recorded operation of resource `rsc` (a primitive's id; clone instances are recorded
/// as `rsc:N` or `rsc`), on every node, in document order.
pub fn lrm_ops(cib: &Cib, rsc: &str) -> Vec<LrmOp> {
    let mut out = Vec::new();
    for state in cib.node_states() {
        let Some(node) = state.get("uname") else {
            continue;
        };
        let Some(resources) = state.path(&["lrm", "lrm_resources"]) else {
            continue;
        };
        for r in resources.elements().filter(|r| {
            r.name == "lrm_resource"
                && r.id().is_some_and(|id| {
                    id == rsc
                        || id
                            .strip_prefix(rsc)
                            .is_some_and(|rest| rest.starts_with(':'))
                })
        }) {
            out.extend(
                r.elements()
                    .filter(|o| o.name == "lrm_rsc_op")
                    .filter_map(|o| parse_op(node, o)),
            );
        }
    }
    out
}

/// `op-status` of a finished operation (Pacemaker's `PCMK_EXEC_DONE`).
const EXEC_DONE: i32 = 0;

impl LrmOp {
    /// Finished with the agent's success (rc 0, op-status done).
    fn succeeded(&self) -> bool {
        self.rc_code == Some(0) && self.op_status == Some(EXEC_DONE)
    }
}

/// The newest non-recurring operation of `ops` on `node`, in Pacemaker's order of one node's
/// history (`pe__is_newer_op`): by call id, a pending one (call id -1) newest, equal call ids
/// (`<rsc>_last_0` and `<rsc>_last_failure_0` of one result) by their last change.
fn newest_on<'a>(ops: &'a [LrmOp], node: &str) -> Option<&'a LrmOp> {
    ops.iter()
        .filter(|o| o.node == node && o.interval_ms == 0)
        .max_by_key(|o| (o.pending, o.call_id, o.last_rc_change))
}

/// A live migration of `rsc` in progress, as `(source, target)`.
///
/// Pacemaker (since 2.1.5, the version this project runs on) records a migration's steps apart from the resource's
/// last result: `<rsc>_migrate_to_0` on the source and `<rsc>_migrate_from_0` on the target,
/// each with `migrate_source` and `migrate_target`, first pending (call id -1, op-status -1)
/// and then rewritten with the result; `<rsc>_last_0` keeps the previous start, probe or stop
/// (older versions wrote the steps over `<rsc>_last_0`: both read the same here). Both entries
/// stay after the migration, so an entry alone says nothing: the migration runs while the
/// source's newest non-recurring operation is
/// - the `migrate_to`, pending: the source's agent is migrating the guest;
/// - the `migrate_to`, succeeded, unless the target recorded a failed `migrate_from` since:
///   the guest runs on the target (or is about to), and the source is not stopped yet
///   (Pacemaker's "partial" migration before `migrate_from` and "dangling" one after);
///
/// or a node's newest one is a pending `migrate_from` (the target is taking the guest over).
/// The source's stop, recorded pending as soon as it starts, ends it. `crm_mon` names only the
/// role `Migrating` (and, before `migrate_from`, only the source node); this names both nodes.
pub fn migration(cib: &Cib, rsc: &str) -> Option<(String, String)> {
    let ops = lrm_ops(cib, rsc);
    let mut nodes: Vec<&str> = ops.iter().map(|o| o.node.as_str()).collect();
    nodes.dedup();
    for node in nodes {
        let Some(last) = newest_on(&ops, node) else {
            continue;
        };
        let (Some(source), Some(target)) = (&last.migrate_source, &last.migrate_target) else {
            continue;
        };
        let running = match last.operation.as_str() {
            "migrate_to" if last.pending => true,
            "migrate_to" if last.succeeded() && source == node => {
                // this migration's migrate_from, if the target recorded it (an older one,
                // started before this migrate_to, is another migration's)
                let migrate_from = ops.iter().find(|o| {
                    o.node == *target
                        && o.operation == "migrate_from"
                        && o.migrate_source.as_ref() == Some(source)
                        && o.last_rc_change >= last.last_rc_change
                });
                migrate_from.is_none_or(|f| f.pending || f.succeeded())
            }
            "migrate_from" => last.pending,
            _ => false,
        };
        if running {
            return Some((source.clone(), target.clone()));
        }
    }
    None
}

/// The nodes where `rsc` is active now according to each member node's operation history, as
/// the scheduler reads it (simplified): the node's operations in the order they ran (call id;
/// pending ones last), each deciding whether it runs there. A start, `migrate_from`,
/// `migrate_to` (the source runs it until its stop) or other operation that succeeded or is
/// pending makes it active; a successful stop makes it inactive, a failed or pending one
/// leaves it active; a monitor (recurring or probe) answering "not running" (7) makes it
/// inactive and any other answer active; a failed start leaves it inactive. Nodes that are not
/// members ([`Cib::node_online`]) are left out: their history is stale until they rejoin. During
/// a live migration both nodes are listed until the source's stop is recorded.
pub fn active_nodes(cib: &Cib, rsc: &str) -> Vec<String> {
    let mut ops = lrm_ops(cib, rsc);
    ops.retain(|o| !o.id.contains("_last_failure_"));
    ops.sort_by_key(|o| (o.pending, o.call_id));
    let mut out: Vec<String> = Vec::new();
    let mut nodes: Vec<&str> = ops.iter().map(|o| o.node.as_str()).collect();
    nodes.sort_unstable();
    nodes.dedup();
    for node in nodes {
        if !cib.node_online(node) {
            continue;
        }
        let mut active = false;
        for o in ops.iter().filter(|o| o.node == node) {
            let ok = o.pending || o.rc_code == Some(0);
            active = match o.operation.as_str() {
                "stop" => !ok || o.pending,
                "monitor" if o.pending => active,
                "monitor" => o.rc_code != Some(7),
                "start" | "migrate_from" => ok,
                _ => ok || active,
            };
        }
        if active {
            out.push(node.to_owned());
        }
    }
    out
}

/// One fail count of a resource on a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailCount {
    /// The node.
    pub node: String,
    /// The operation that failed (`None` for the older per-resource attribute).
    pub operation: Option<String>,
    /// Its interval in ms (`None` with `operation`).
    pub interval_ms: Option<u64>,
    /// How many failures count (`INFINITY` is [`FAIL_COUNT_INFINITY`]).
    pub count: u64,
    /// When the last one was (Unix seconds), from the matching `last-failure-*` attribute.
    pub last_failure: Option<u64>,
}

/// Every fail count of resource `rsc` in the status section, node by node. Pacemaker 2.1
/// writes `fail-count-<rsc>#<op>_<interval ms>` (and `last-failure-...` beside it); older
/// versions one `fail-count-<rsc>`. Zero counts are left out.
pub fn fail_counts(cib: &Cib, rsc: &str) -> Vec<FailCount> {
    let mut out = Vec::new();
    for state in cib.node_states() {
        let Some(node) = state.get("uname") else {
            continue;
        };
        let attrs = cib.transient_attributes(node);
        for (name, value) in &attrs {
            let Some(rest) = name
                .strip_prefix("fail-count-")
                .and_then(|r| r.strip_prefix(rsc))
            else {
                continue;
            };
            let (operation, interval_ms) = match rest {
                "" => (None, None),
                r => {
                    let Some(op_key) = r.strip_prefix('#') else {
                        continue;
                    };
                    match op_key.rsplit_once('_') {
                        Some((op, interval)) => (Some(op.to_owned()), interval.parse::<u64>().ok()),
                        None => (Some(op_key.to_owned()), None),
                    }
                }
            };
            let count = if value.eq_ignore_ascii_case("INFINITY") {
                FAIL_COUNT_INFINITY
            } else {
                value.parse::<u64>().unwrap_or(0).min(FAIL_COUNT_INFINITY)
            };
            if count == 0 {
                continue;
            }
            let last = format!("last-failure-{}", &name["fail-count-".len()..]);
            let last_failure = attrs
                .iter()
                .find(|(n, _)| *n == last)
                .and_then(|(_, v)| v.parse().ok());
            out.push(FailCount {
                node: node.to_owned(),
                operation,
                interval_ms,
                count,
                last_failure,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An `lrm_rsc_op`; `extra` attributes replace the defaults of the same name.
    fn op(id: &str, operation: &str, extra: &str) -> String {
        let defaults = [
            r#"call-id="5""#,
            r#"rc-code="0""#,
            r#"op-status="0""#,
            r#"interval="0""#,
            r#"last-rc-change="1700000000""#,
        ];
        let kept: Vec<&str> = defaults
            .into_iter()
            .filter(|d| !extra.contains(&d[..d.find('=').unwrap_or(0) + 1]))
            .collect();
        format!(
            r#"<lrm_rsc_op id="{id}" operation_key="x" operation="{operation}" {} {extra}/>"#,
            kept.join(" ")
        )
    }

    fn cib(n1_ops: &str, n2_ops: &str, n1_attrs: &str) -> Cib {
        Cib::parse(&format!(
            r#"<cib><configuration/><status>
              <node_state id="1" uname="n1"><transient_attributes id="1"><instance_attributes id="status-1">{n1_attrs}</instance_attributes></transient_attributes>
                <lrm id="1"><lrm_resources><lrm_resource id="g" type="VirtualDomain" class="ocf">{n1_ops}</lrm_resource>
                <lrm_resource id="g10" type="VirtualDomain" class="ocf">{}</lrm_resource></lrm_resources></lrm></node_state>
              <node_state id="2" uname="n2"><lrm id="2"><lrm_resources><lrm_resource id="g" type="VirtualDomain" class="ocf">{n2_ops}</lrm_resource></lrm_resources></lrm></node_state>
            </status></cib>"#,
            op(
                "g10_migrate_to_0",
                "migrate_to",
                r#"migrate_source="n1" migrate_target="n2""#
            )
        ))
        .unwrap()
    }

    #[test]
    fn operations_are_read_per_node_and_resource() {
        let c = cib(
            &op("g_last_0", "start", ""),
            &op(
                "g_last_failure_0",
                "monitor",
                r#"rc-code="7" interval="10000" exit-reason="gone""#,
            ),
            "",
        );
        let ops = lrm_ops(&c, "g");
        assert_eq!(ops.len(), 2);
        assert_eq!(
            (ops[0].node.as_str(), ops[0].operation.as_str()),
            ("n1", "start")
        );
        let f = &ops[1];
        assert_eq!(
            (
                f.node.as_str(),
                f.rc_code,
                f.interval_ms,
                f.exit_reason.as_str(),
                f.pending
            ),
            ("n2", Some(7), 10_000, "gone", false)
        );
        assert_eq!(f.last_rc_change, Some(1_700_000_000));
        // g10's history is not g's
        assert_eq!(migration(&c, "g"), None);
        assert_eq!(migration(&c, "g10"), Some(("n1".into(), "n2".into())));
    }

    /// g's history on n1 and n3 at each step of its live migration n1 -> n3, as the cluster
    /// recorded it (the entries' attributes as pacemaker-based logged them on the multinode
    /// bed, Pacemaker 2.1.5; tests/tiers/cib/fixtures/migration/ has the whole CIBs).
    #[test]
    fn a_resource_is_active_where_its_member_nodes_history_says_it_runs() {
        let cib = |n1: &str, n2: &str, n2_up: &str| {
            Cib::parse(&format!(
                r#"<cib><configuration/><status>
                  <node_state id="1" uname="n1" in_ccm="true" crmd="online"><lrm id="1"><lrm_resources><lrm_resource id="g">{n1}</lrm_resource></lrm_resources></lrm></node_state>
                  <node_state id="2" uname="n2" in_ccm="{n2_up}" crmd="{n2_up}"><lrm id="2"><lrm_resources><lrm_resource id="g">{n2}</lrm_resource></lrm_resources></lrm></node_state>
                </status></cib>"#
            ))
            .unwrap()
        };
        let on = |n1: &str, n2: &str, n2_up: &str| active_nodes(&cib(n1, n2, n2_up), "g");
        let call = |n: u32, extra: &str| format!(r#"call-id="{n}" {extra}"#);
        let started = op("g_last_0", "start", &call(3, ""))
            + &op(
                "g_monitor_10000",
                "monitor",
                &call(4, r#"interval="10000""#),
            );
        let probed_absent = op("g_last_0", "monitor", &call(2, r#"rc-code="7""#));
        assert_eq!(on(&started, &probed_absent, "true"), ["n1"]);
        assert!(on("", &probed_absent, "true").is_empty(), "never started");
        // its recurring monitor found it gone (and the failure recorded beside)
        let gone = op("g_last_0", "start", &call(3, ""))
            + &op(
                "g_monitor_10000",
                "monitor",
                &call(4, r#"interval="10000" rc-code="7""#),
            )
            + &op(
                "g_last_failure_0",
                "monitor",
                &call(4, r#"interval="10000" rc-code="7""#),
            );
        assert!(on(&gone, &probed_absent, "true").is_empty());
        // stopped; a failed or pending stop leaves it running
        assert!(on(&op("g_last_0", "stop", &call(5, "")), "", "true").is_empty());
        assert_eq!(
            on(
                &op("g_last_0", "stop", &call(5, r#"rc-code="1""#)),
                "",
                "true"
            ),
            ["n1"]
        );
        let pending = r#"call-id="-1" rc-code="193" op-status="-1""#;
        assert_eq!(on(&op("g_last_0", "stop", pending), "", "true"), ["n1"]);
        // a pending start counts, a failed one does not
        assert_eq!(on(&op("g_last_0", "start", pending), "", "true"), ["n1"]);
        assert!(on(&op("g_last_0", "start", r#"rc-code="1""#), "", "true").is_empty());
        // a live migration: both until the source's stop is recorded, then the target
        let mig = r#"migrate_source="n1" migrate_target="n2""#;
        let to = op("g_last_0", "migrate_to", &call(6, mig));
        let from = op("g_last_0", "migrate_from", &call(3, mig));
        assert_eq!(on(&to, &from, "true"), ["n1", "n2"]);
        assert_eq!(
            on(&op("g_last_0", "stop", &call(7, "")), &from, "true"),
            ["n2"]
        );
        // the history of a node that is not a member does not count (later Pacemaker
        // versions write the time since when it is one)
        assert_eq!(on(&to, &from, "false"), ["n1"]);
        assert_eq!(on(&to, &from, "1700000000"), ["n1", "n2"]);
    }

    #[test]
    fn migrations_in_progress_are_found_at_each_step() {
        let mig = r#"migrate_source="n1" migrate_target="n3""#;
        let pending = |t: u64| {
            format!(
                r#"call-id="-1" rc-code="193" op-status="-1" last-rc-change="{t}" exec-time="0" {mig}"#
            )
        };
        let done = |call: u32, t: u64| {
            format!(r#"call-id="{call}" rc-code="0" op-status="0" last-rc-change="{t}" {mig}"#)
        };
        // before: started on n1 (its probe found it running), recurring monitor; n3 probed
        let n1_before = [
            op(
                "g_last_0",
                "monitor",
                r#"call-id="93" last-rc-change="1796614801""#,
            ),
            op(
                "g_last_failure_0",
                "monitor",
                r#"call-id="93" last-rc-change="1796614801""#,
            ),
            op(
                "g_monitor_10000",
                "monitor",
                r#"call-id="94" interval="10000" last-rc-change="1796614802""#,
            ),
        ]
        .concat();
        let n3_before = op("g_last_0", "monitor", r#"call-id="40" rc-code="7""#);
        let c = |n1: &str, n3: &str| {
            Cib::parse(&format!(
                r#"<cib><configuration/><status>
                  <node_state id="1" uname="n1"><lrm id="1"><lrm_resources><lrm_resource id="g">{n1_before}{n1}</lrm_resource></lrm_resources></lrm></node_state>
                  <node_state id="3" uname="n3"><lrm id="3"><lrm_resources><lrm_resource id="g">{n3_before}{n3}</lrm_resource></lrm_resources></lrm></node_state>
                </status></cib>"#
            ))
            .unwrap()
        };
        let n1_n3 = Some(("n1".to_owned(), "n3".to_owned()));
        assert_eq!(migration(&c("", ""), "g"), None);
        // 0.69.1: migrate_to running on n1
        let to_pending = op("g_migrate_to_0", "migrate_to", &pending(1_796_614_883));
        assert_eq!(migration(&c(&to_pending, ""), "g"), n1_n3);
        // 0.69.8: migrate_to done, migrate_from not started yet
        let to_done = op("g_migrate_to_0", "migrate_to", &done(96, 1_796_614_883));
        assert_eq!(migration(&c(&to_done, ""), "g"), n1_n3);
        // 0.69.9: migrate_from running on n3
        let from_pending = op("g_migrate_from_0", "migrate_from", &pending(1_796_614_890));
        assert_eq!(migration(&c(&to_done, &from_pending), "g"), n1_n3);
        // 0.69.10: migrate_from done; n1 not stopped yet
        let from_done = op("g_migrate_from_0", "migrate_from", &done(42, 1_796_614_890));
        assert_eq!(migration(&c(&to_done, &from_done), "g"), n1_n3);
        // 0.69.11: n1's stop running (recorded over g_last_0): the migration is over, and
        // stays over with the stop done, both migrate entries kept
        let n1_stop = |attrs: &str| {
            let before = n1_before.replacen(
                &op(
                    "g_last_0",
                    "monitor",
                    r#"call-id="93" last-rc-change="1796614801""#,
                ),
                &op("g_last_0", "stop", attrs),
                1,
            );
            assert_ne!(before, n1_before);
            Cib::parse(&format!(
                r#"<cib><configuration/><status>
                  <node_state id="1" uname="n1"><lrm id="1"><lrm_resources><lrm_resource id="g">{before}{to_done}</lrm_resource></lrm_resources></lrm></node_state>
                  <node_state id="3" uname="n3"><lrm id="3"><lrm_resources><lrm_resource id="g">{n3_before}{from_done}</lrm_resource></lrm_resources></lrm></node_state>
                </status></cib>"#
            ))
            .unwrap()
        };
        let stop_pending =
            r#"call-id="-1" rc-code="193" op-status="-1" last-rc-change="1796614890""#;
        assert_eq!(migration(&n1_stop(stop_pending), "g"), None);
        let stop_done = r#"call-id="97" last-rc-change="1796614890""#;
        assert_eq!(migration(&n1_stop(stop_done), "g"), None);
        // a failed migrate_to is no migration in progress
        let to_failed = op(
            "g_migrate_to_0",
            "migrate_to",
            &format!(r#"call-id="96" rc-code="1" {mig}"#),
        );
        assert_eq!(migration(&c(&to_failed, ""), "g"), None);
        // nor is one whose migrate_from failed (Pacemaker recovers the guest)
        let from_failed = op(
            "g_migrate_from_0",
            "migrate_from",
            &format!(r#"call-id="42" rc-code="1" last-rc-change="1796614890" {mig}"#),
        );
        assert_eq!(migration(&c(&to_done, &from_failed), "g"), None);
        // but a failed migrate_from of an earlier migration does not end this one
        let old_from_failed = op(
            "g_migrate_from_0",
            "migrate_from",
            &format!(r#"call-id="12" rc-code="1" last-rc-change="1796610000" {mig}"#),
        );
        assert_eq!(migration(&c(&to_done, &old_from_failed), "g"), n1_n3);
        // Pacemaker before 2.1.5 wrote the steps over g_last_0: read the same
        let old_style = op("g_last_0", "migrate_to", &pending(1_796_614_883));
        let c_old = Cib::parse(&format!(
            r#"<cib><configuration/><status>
              <node_state id="1" uname="n1"><lrm id="1"><lrm_resources><lrm_resource id="g">{old_style}</lrm_resource></lrm_resources></lrm></node_state>
            </status></cib>"#
        ))
        .unwrap();
        assert_eq!(migration(&c_old, "g"), n1_n3);
    }

    #[test]
    fn fail_counts_per_operation_with_their_last_failure() {
        let nv =
            |n: &str, v: &str| format!(r#"<nvpair id="status-1-{n}" name="{n}" value="{v}"/>"#);
        let attrs = [
            nv("fail-count-g#monitor_10000", "2"),
            nv("last-failure-g#monitor_10000", "1700000050"),
            nv("fail-count-g#start_0", "INFINITY"),
            nv("fail-count-g10#start_0", "3"),
            nv("fail-count-g#stop_0", "0"),
            nv("fail-count-g", "1"),
        ]
        .concat();
        let c = cib("", "", &attrs);
        let fc = fail_counts(&c, "g");
        assert_eq!(
            fc,
            [
                FailCount {
                    node: "n1".into(),
                    operation: Some("monitor".into()),
                    interval_ms: Some(10_000),
                    count: 2,
                    last_failure: Some(1_700_000_050),
                },
                FailCount {
                    node: "n1".into(),
                    operation: Some("start".into()),
                    interval_ms: Some(0),
                    count: FAIL_COUNT_INFINITY,
                    last_failure: None,
                },
                FailCount {
                    node: "n1".into(),
                    operation: None,
                    interval_ms: None,
                    count: 1,
                    last_failure: None,
                },
            ]
        );
        assert_eq!(fail_counts(&c, "g1"), []);
    }
}
