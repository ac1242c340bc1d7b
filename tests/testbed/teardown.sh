#!/bin/bash
# Stop every piece of the test bed that may be running (by recorded PIDs), in dependency order.
# Safe to run at any time; used by tests/run-all on exit.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
"$TESTBED_DIR/multinode.sh" down
# the live cluster before libvirtd: it goes into maintenance mode, then libvirtd.sh destroys guests
"$TESTBED_DIR/live-cluster.sh" down
"$TESTBED_DIR/libvirtd.sh" down
# pristine roots whose run is over, kept ones included: what runs in them stopped, unmounted,
# deleted (a run still going keeps its root; it removes it itself)
if [ ! -e /.pmkt-pristine ]; then "$TESTBED_DIR/pristine.sh" clean; fi
exit 0
