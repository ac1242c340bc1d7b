#!/bin/bash
# Benchmark vm-managerd's propagation latency (issue #15's target: a host attribute change
# reaches the guest side within 2 s p50).
#
# Usage (root): bench/vm-managerd.sh [SAMPLES=30]
#               bench/vm-managerd.sh gc [SAMPLES=20 [MIGRATIONS=6]]
#
# Without `gc`: on the single-node live cluster, a bridged guest daemon holds a `wait` on
# vm-managerd through the real host vm-connectd; the value is changed with `attrd_updater -U`;
# the time from attrd_updater returning to vm-connect printing the answer is one sample (attrd's
# own write to the CIB is inside it, so the figure is from "asked Pacemaker to record it", a
# little more than from "Pacemaker recorded it"). Samples are about 1.5 s apart, as separate
# host events would be. It runs the live tier's test
# managerd::live_managerd_answers_held_waits_when_attrd_changes_a_value with
# PMKT_MANAGERD_SAMPLES=SAMPLES. It takes the test's own locks; the live cluster it brings up is
# stopped at the end unless it was running before.
#
# With `gc`: on the guest-cluster bed (tests/testbed/guestcluster.sh: 3 host nodes with
# vm-managerd clones, Debian TCG guests g1 and g2 running a Pacemaker cluster with the vm-client
# clone), to the guest cluster's node attribute: from `attrd_updater -U` returning on g2's host
# to attrd in g2 holding the value (vm-client's attrd_updater returned; a wrapper in g2 then
# sends `get pmkt_probe` to the host's vm-managerd, whose debug log gives the time on the host's
# clock: a sample includes that request's way, ~0.1 s under TCG). SAMPLES such changes ~1 s
# apart; then MIGRATIONS live migrations of g2 (vm-ctl resource move), each from libvirt's
# "Resumed Migrated" on the new host to g2 holding the new host's value (set different on every
# node); then SAMPLES changes again while another writer changes the CIB in a loop
# (crm_attribute on another node). The changes are split into the host's part (to
# vm-managerd's answer leaving, its log) and the guest's. It brings the bed up from nothing
# (~5 min) and stops it at the end.
#
# Prints p50, p90, p99 and max of each. State: $PMKT_STATE (default /tmp/pmkt).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
TB=$REPO/tests/testbed
# shellcheck source=../tests/testbed/lib.sh
. "$TB/lib.sh"
need_root
MODE=live
if [ "${1:-}" = gc ]; then
    MODE=gc
    shift
fi
SAMPLES=${1:-$([ "$MODE" = gc ] && echo 20 || echo 30)}
MIGRATIONS=${2:-6}
for v in "$SAMPLES" "$MIGRATIONS"; do
    case "$v" in '' | *[!0-9]*) die "usage: $0 [SAMPLES] | $0 gc [SAMPLES [MIGRATIONS]]" ;; esac
done
[ "$SAMPLES" -ge 1 ] || die "SAMPLES must be at least 1"
cd "$REPO"

# report WHAT FIGURES...: percentiles of the figures (milliseconds)
report() {
    local what=$1 sorted n
    shift
    sorted=$(printf '%s\n' "$@" | sort -n)
    n=$(printf '%s\n' "$sorted" | wc -l)
    pick() { printf '%s\n' "$sorted" | sed -n "$(( ($1 * (n - 1) + 50) / 100 + 1 ))p"; }
    printf '%s, %d samples on %s (%s, %s cores)\n' "$what" "$n" "$(uname -n)" \
        "$(git -C "$REPO" rev-parse --short HEAD)" "$(nproc)"
    printf '  p50 %s ms, p90 %s ms, p99 %s ms, max %s ms\n' "$(pick 50)" "$(pick 90)" "$(pick 99)" \
        "$(printf '%s\n' "$sorted" | tail -1)"
}

# split FILE: the p50 of each part of the samples in FILE ("HOST GUEST" ms per line, "-" where
# vm-managerd's answer was not found in its log)
split() {
    awk '$1 != "-" { h[++n] = $1; g[n] = $2 }
        END {
            if (n == 0) { print "  (no answer of vm-managerd found in its log: no split)"; exit }
            for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) {
                if (h[j] < h[i]) { t = h[i]; h[i] = h[j]; h[j] = t }
                if (g[j] < g[i]) { t = g[i]; g[i] = g[j]; g[j] = t }
            }
            m = int((n - 1) * 50 / 100 + 1.5)
            printf "  of which host (attrd_updater -U -> vm-managerd answers) p50 %d ms, max %d ms;", h[m], h[n]
            printf " guest (-> g2'"'"'s attrd holds it, and its get is at the host) p50 %d ms, max %d ms (%d of the samples)\n", g[m], g[n], n
        }' "$1"
}

if [ "$MODE" = gc ]; then
    GC=$PMKT_STATE/gc
    "$TB/multinode.sh" down >/dev/null 2>&1 || true
    rm -rf "$GC"
    mkdir -p "$PMKT_STATE"
    log "the guest-cluster bed with vm-managerd's probe (log: $PMKT_STATE/bench-vm-managerd.log)"
    PROBE=1 "$TB/guestcluster.sh" managerd-bench "$SAMPLES" "$MIGRATIONS" >"$PMKT_STATE/bench-vm-managerd.log" 2>&1 ||
        { tail -40 "$PMKT_STATE/bench-vm-managerd.log"; die "guestcluster.sh managerd-bench failed"; }
    # shellcheck disable=SC2046 # one figure per line
    report "vm-managerd, guest-cluster bed: attrd_updater -U on g2's host -> g2's attrd holds it" $(cat "$GC/bench-change.ms")
    split "$GC/bench-change.ms.split"
    if [ "$MIGRATIONS" -ge 1 ]; then
        # shellcheck disable=SC2046
        report "after a live migration: 'Resumed Migrated' on the new host -> g2 holds its value" $(cat "$GC/bench-migration.ms")
    fi
    # shellcheck disable=SC2046
    report "under CIB churn ($(cat "$GC/bench-churn.rate")): attrd_updater -U -> g2 holds it" $(cat "$GC/bench-churn.ms")
    split "$GC/bench-churn.ms.split"
    "$TB/leftovers.sh" >/dev/null || log "leftovers: see tests/testbed/leftovers.sh"
    exit 0
fi

was_up=no
if "$TB/live-cluster.sh" status >/dev/null 2>&1; then was_up=yes; fi
cleanup() { [ "$was_up" = yes ] || "$TB/live-cluster.sh" down >/dev/null 2>&1 || true; }
trap cleanup EXIT
cargo build -q -p vm-managerd -p vm-connectd -p vm-tests --bins --tests
out=$(PMKT_MANAGERD_SAMPLES=$SAMPLES cargo test -q -p vm-tests --test live -- --ignored \
    --nocapture --exact managerd::live_managerd_answers_held_waits_when_attrd_changes_a_value 2>&1) ||
    { printf '%s\n' "$out" | tail -40; die "the test failed"; }
line=$(printf '%s\n' "$out" | grep '^MANAGERD_LATENCY_MS ' | tail -1)
[ -n "$line" ] || die "no latency line in the test's output"
# shellcheck disable=SC2086 # the figures are separate words
report "vm-managerd: attrd_updater -U -> held wait answered" ${line#MANAGERD_LATENCY_MS }
