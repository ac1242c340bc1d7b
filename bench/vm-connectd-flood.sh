#!/bin/bash
# Adversarial relay benchmark (issue 12): one simulated guest floods host vm-connectd with
# back-to-back 28-byte headers that have a sound header CRC and claim a 64 KiB payload, at the
# measured ~0.7 MB/s and at 10x that, while a second simulated guest pings on its own link.
# Prints the victim's p50/p99/max round trip (idle, then during the flood), the daemon's CPU
# time during the flood, and the flooding link's counters from `vm-connectd status`.
# Target (issue 12): victim p99 < 20 ms, the flooding link backed off as docs/protocol.md §4 says.
# Guests are simulated as in bench/vm-connectd.sh part 1 (unix sockets where QEMU's would be; the
# harness plays QEMU). No root, no test bed; release binaries; each run is bounded (SECS + ~2 s)
# and stops the daemon by its PID.
# Usage: bench/vm-connectd-flood.sh [SECS=10] [RATE=700000] [VM_CONNECTD=target/release/vm-connectd]
#   BENCH_PROFILE=debug: debug builds (CI's quick run)
#   VM_CONNECTD: another build to compare against (e.g. one of the previous commit).
set -euo pipefail
SECS=${1:-10} RATE=${2:-700000}
REPO=$(cd "$(dirname "$0")/.." && pwd)
# BENCH_PROFILE=debug: unoptimised builds (CI's quick runs check that the benchmark runs; their
# figures mean nothing)
OUT=$REPO/target/${BENCH_PROFILE:-release}
build_flags=(--release)
[ "${BENCH_PROFILE:-release}" = release ] || build_flags=()
(cd "$REPO" && cargo build "${build_flags[@]}" --quiet -p vm-connectd -p vm-tests --bin vm-connectd \
    --bin pmkt-bench-connectd-flood)
BIN=${3:-$OUT/vm-connectd}
echo "== $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')), $(date -u +%F), $(git -C "$REPO" rev-parse --short HEAD), load $(cut -d' ' -f1-3 /proc/loadavg)"
PIDFILE=$(mktemp)
# The harness empties the file once it has stopped and reaped the daemon itself.
stop_daemon() {
    local pid
    pid=$(cat "$PIDFILE" 2>/dev/null || true)
    if [ -n "$pid" ]; then
        kill -TERM "$pid" 2>/dev/null || true
        : >"$PIDFILE"
    fi
}
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
    stop_daemon
    rm -f "$PIDFILE"
}
trap cleanup EXIT
status=0
for rate in "$RATE" "$((RATE * 10))"; do
    PMKT_DAEMON_PIDFILE=$PIDFILE timeout $((SECS + 60)) \
        "$OUT/pmkt-bench-connectd-flood" "$BIN" "$rate" "$SECS" || status=1
    stop_daemon # a no-op unless timeout had to stop the harness
done
exit $status
