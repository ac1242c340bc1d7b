#!/bin/bash
# How long the host cluster takes to notice a hung guest through its channel and start
# recovering it (issue 16): on the multi-node test bed (3 host nodes in namespaces, the packaged
# host vm-connectd in each with its default heartbeat), a TCG guest running the guest daemon,
# added by vm-ctl with vm_liveness_timeout; RUNS times its kernel is panicked (QEMU keeps
# running it) and the time from the panic to the published liveness turning silent, to the
# failed monitor (the host cluster's recovery starts), and to the guest running and answering
# again is printed, with the medians (tests/src/bin/pmkt-bench-liveness.rs).
#
# Usage (root): bench/liveness.sh [RUNS=5] [LIVENESS_TIMEOUT=30s] [HOST_VM_CONNECTD_OPTION...]
# Stops the multi-node test bed afterwards.
set -euo pipefail
. "$(dirname "$0")/../tests/testbed/lib.sh"
need_root
RUNS=${1:-5} TIMEOUT=${2:-30s}
shift $(($# > 2 ? 2 : $#))
"$TESTBED_DIR/install.sh" all >/dev/null
"$TESTBED_DIR/install.sh" project >/dev/null
(cd "$REPO_DIR" && cargo build --quiet -p vm-ctl -p vm-tests --bin vm-ctl --bin pmkt-bench-liveness --bin pmkt-tb)
"$TESTBED_DIR/guest-image.sh" >/dev/null
trap '"$TESTBED_DIR/multinode.sh" down >/dev/null 2>&1 || true' EXIT
"$REPO_DIR/target/debug/pmkt-bench-liveness" "$RUNS" "$TIMEOUT" "$@"
