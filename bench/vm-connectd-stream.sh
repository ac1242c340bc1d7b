#!/bin/bash
# Benchmark the byte stream over a guest link (docs/protocol.md §16) with the real daemons, in
# release builds: a host vm-connectd and a guest vm-connectd joined by a simulated channel (two
# unix sockets spliced, as QEMU's chardev), a loopback TCP client on the host's endpoint and an
# echo server as the guest's target. Prints:
#   1. throughput: 4 MiB each way through one stream (client -> host -> guest -> echo -> back);
#   2. request latency (a stonith-like request from a guest client to a host module and back,
#      50 in a row) with the channel idle, and while one stream saturates it both ways.
# No bed, no root: the daemons and sockets live in temp dirs (vm-connectd/tests/stream_wire.rs,
# whose tests these are; they assert that every request completes, never a time).
# Usage: bench/vm-connectd-stream.sh [RUNS=3]   (BENCH_PROFILE=debug: debug builds, as CI runs it)
set -euo pipefail
RUNS=${1:-3}
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
# BENCH_PROFILE=debug: unoptimised builds (CI's quick runs check that the benchmark runs; their
# figures mean nothing)
build_flags=(--release)
[ "${BENCH_PROFILE:-release}" = release ] || build_flags=()
echo "== vm-connectd streams ($(nproc) cores, $(date -u +%F), $(git rev-parse --short HEAD))"
nice -n 10 cargo test "${build_flags[@]}" --quiet -p vm-connectd --test stream_wire --no-run
for _ in $(seq "$RUNS"); do
    cargo test "${build_flags[@]}" --quiet -p vm-connectd --test stream_wire -- \
        --test-threads 1 --nocapture a_tcp_byte_stream requests_are_answered 2>&1 |
        grep -oE '(4 MiB|request latency).*'
done
