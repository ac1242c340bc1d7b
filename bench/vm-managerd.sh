#!/bin/bash
# Benchmark vm-managerd's propagation latency (issue #15's target: a host attribute change
# reaches the guest side within 2 s p50): on the single-node live cluster, a bridged guest
# daemon holds a `wait` on vm-managerd through the real host vm-connectd; the value is changed
# with `attrd_updater -U`; the time from attrd_updater returning to vm-connect printing the
# answer is one sample (attrd's own write to the CIB is inside it, so the figure is from
# "asked Pacemaker to record it", a little more than from "Pacemaker recorded it"). Samples are
# about 1.5 s apart, as separate host events would be. It runs the live tier's test
# managerd::live_managerd_answers_held_waits_when_attrd_changes_a_value with
# PMKT_MANAGERD_SAMPLES=SAMPLES and prints p50, p90, p99 and max.
# Usage (root): bench/vm-managerd.sh [SAMPLES=30]
# It takes the test's own locks; the live cluster it brings up is stopped at the end unless it
# was running before. State: $PMKT_STATE (default /tmp/pmkt).
set -euo pipefail
SAMPLES=${1:-30}
REPO=$(cd "$(dirname "$0")/.." && pwd)
TB=$REPO/tests/testbed
# shellcheck source=../tests/testbed/lib.sh
. "$TB/lib.sh"
need_root
case "$SAMPLES" in '' | *[!0-9]*) die "usage: $0 [SAMPLES]" ;; esac
[ "$SAMPLES" -ge 1 ] || die "SAMPLES must be at least 1"
cd "$REPO"
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
sorted=$(printf '%s\n' ${line#MANAGERD_LATENCY_MS } | sort -n)
n=$(printf '%s\n' "$sorted" | wc -l)
pick() { printf '%s\n' "$sorted" | sed -n "$(( ($1 * (n - 1) + 50) / 100 + 1 ))p"; }
printf 'vm-managerd: attrd_updater -U -> held wait answered, %d samples on %s (%s, %s cores)\n' \
    "$n" "$(uname -n)" "$(git -C "$REPO" rev-parse --short HEAD)" "$(nproc)"
printf '  p50 %s ms, p90 %s ms, p99 %s ms, max %s ms\n' "$(pick 50)" "$(pick 90)" "$(pick 99)" \
    "$(printf '%s\n' "$sorted" | tail -1)"
