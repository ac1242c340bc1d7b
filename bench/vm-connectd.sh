#!/bin/bash
# Benchmark vm-connectd (issue #4's targets):
#   1. host mode with 500 simulated guests (unix sockets standing in for QEMU's), each playing a
#      guest daemon that answers the daemon's heartbeats: the daemon's RSS and CPU while only
#      the heartbeat runs (IDLE_SECS), and ping round trips at 1,000 requests/s (p50/p99/max)
#      (target: < 30 MiB RSS, p99 < 5 ms);
#   2. over the real virtio-serial channel of a TCG guest: `vm-connect ping` inside the guest,
#      timed from before the process starts to after it exits (target: p50 < 20 ms), next to
#      the round trip vm-connect reports itself (connect to answer).
# Usage (root): bench/vm-connectd.sh [GUESTS=500] [RATE=1000] [SECS=10] [PINGS=50] [IDLE_SECS=30]
# Uses the test bed (tests/testbed) for libvirtd and the guest image; stops what it started.
set -euo pipefail
GUESTS=${1:-500} RATE=${2:-1000} SECS=${3:-10} PINGS=${4:-50} IDLE=${5:-30}
REPO=$(cd "$(dirname "$0")/.." && pwd)
TB=$REPO/tests/testbed
# BENCH_PROFILE=debug: unoptimised builds (CI's quick runs check that the benchmark runs; their
# figures mean nothing)
OUT=$REPO/target/${BENCH_PROFILE:-release}
build_flags=(--release)
[ "${BENCH_PROFILE:-release}" = release ] || build_flags=()
# shellcheck source=../tests/testbed/lib.sh
. "$TB/lib.sh"
need_root
"$TB/install.sh" build libvirt guest >/dev/null
(cd "$REPO" && cargo build "${build_flags[@]}" --quiet -p vm-connectd -p vm-tests --bin vm-connectd --bin pmkt-bench-connectd &&
    cargo build --quiet -p vm-tests --bin pmkt-tb)
echo "== 1. simulated guests ($(nproc) cores, $(date -u +%F))"
"$OUT/pmkt-bench-connectd" "$OUT/vm-connectd" "$GUESTS" "$RATE" "$SECS" "$IDLE"

echo "== 2. real virtio-serial channel (TCG guest)"
"$TB/guest-image.sh" >/dev/null
"$TB/libvirtd.sh" up >/dev/null
RUN=$PMKT_STATE/run/bench-vmc
NAME=pmkt-bench
mkdir -p "$RUN/vmconnectd"
rm -f "$RUN/$NAME.console.log"
VPORT=daemon "$TB/domain-xml.sh" "$NAME" "$RUN" >"$RUN/$NAME.xml"
relay=""
cleanup() {
    virsh -c qemu:///system destroy "$NAME" >/dev/null 2>&1 || true
    [ -n "$relay" ] && kill -TERM "$relay" 2>/dev/null && wait "$relay" 2>/dev/null
    "$TB/libvirtd.sh" down >/dev/null 2>&1 || true
}
trap cleanup EXIT
virsh -c qemu:///system create "$RUN/$NAME.xml" >/dev/null
wait_until 90 grep -qa PMKT-GUEST-READY "$RUN/$NAME.console.log" || die "guest did not boot"
"$OUT/vm-connectd" -t host -d "$RUN/vmconnectd" --socket "$RUN/vmc.sock" --node bench-host \
    >"$RUN/relay.log" 2>&1 &
relay=$!
# shellcheck disable=SC2016 # runs in the guest's shell
script='us() { adjtimex | awk "/tv_sec/ { s = \$2 } /tv_usec/ { u = \$2 } END { print s * 1000000 + u }"; }
for i in $(seq 30); do vm-connect ping >/dev/null 2>&1 && break; sleep 0.5; done
for i in $(seq 20); do a=$(us); out=$(true); b=$(us); echo base $((b - a)); done
for i in $(seq 20); do a=$(us); out=$(/bin/busybox true); b=$(us); echo proc $((b - a)); done
for i in $(seq '"$PINGS"'); do a=$(us); out=$(vm-connect ping); b=$(us); echo ping $((b - a)) $out; done'
out=$("$REPO/target/debug/pmkt-tb" console "$RUN/$NAME.console.sock" "$script" 300)
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
base=$(grep '^base ' <<<"$out" | awk '{ print $2 }' | median)
proc=$(grep '^proc ' <<<"$out" | awk '{ print $2 }' | median)
total=$(grep '^ping ' <<<"$out" | awk '{ print $2 }' | median)
own=$(grep '^ping ' <<<"$out" | sed -n 's/.* in \([0-9.]*\) ms.*/\1/p' | median)
n=$(grep -c '^ping .*pong from host bench-host' <<<"$out" || true)
awk -v t="$total" -v b="$base" -v p="$proc" -v o="$own" -v n="$n" 'BEGIN {
    printf "  %d pings from inside the guest, all answered by the host daemon\n", n
    printf "  vm-connect ping, process start to exit: p50 %.1f ms (timer overhead %.1f ms subtracted)\n", (t - b) / 1000, b / 1000
    printf "  for scale, the smallest process there (busybox true), start to exit: p50 %.1f ms\n", (p - b) / 1000
    printf "  round trip vm-connect reports itself (connected to answer): p50 %.1f ms\n", o }'
