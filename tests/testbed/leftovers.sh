#!/bin/bash
# Check that the test bed left nothing behind: no daemon or guest it starts, no process in a
# foreign network namespace, no mount of its state dir, no veth in this machine's network, no
# live PID in its PID files, no pristine root (tests/testbed/pristine.sh) or mount of one. Prints what it finds; exit 1 if anything is left.
# (Matching by name is for *checking* only; the test bed stops processes by PID.)
set -uo pipefail
. "$(dirname "$0")/lib.sh"
# --state-only: check only what $PMKT_STATE's own PID files and mounts say (the sandbox uses
# it, so that a test bed running beside it is not reported as its leftover)
STATE_ONLY=0
[ "${1:-}" = --state-only ] && STATE_ONLY=1

found=0
report() { echo "leftover: $*"; found=1; }

# Orphans are reaped lazily on the CI machine: give zombies a moment to disappear.
# shellcheck disable=SC2317,SC2009 # called through wait_until; pgrep cannot select by state
settled() { ! ps -eo stat= | grep -q '^Z'; }
wait_until 10 settled || true

self_net=$(readlink /proc/self/ns/net)
[ "$STATE_ONLY" = 1 ] || while read -r pid stat comm; do
    case $stat in Z*) continue ;; esac
    case $comm in
    corosync | pacemakerd | pacemaker-* | libvirtd | qemu-system-*)
        report "process $pid ($comm)"
        continue ;;
    esac
    ns=$(readlink "/proc/$pid/ns/net" 2>/dev/null) || continue
    [ "$ns" = "$self_net" ] || report "process $pid ($comm) in another network namespace ($ns)"
done < <(ps -eo pid=,stat=,comm=)

states=("$PMKT_STATE")
[ "$STATE_ONLY" = 1 ] || states+=("${PMKT_SANDBOX_STATE:-/tmp/pmkt-sandbox}")
for state in "${states[@]}"; do
    if grep -q " $state" /proc/self/mounts; then
        report "mounts under $state: $(grep " $state" /proc/self/mounts | awk '{ print $2 }' | xargs)"
    fi
    while IFS= read -r f; do
        pid_alive "$f" && report "$f: pid $(cat "$f") is alive"
    done < <(find "$state" -name '*.pid' 2>/dev/null)
done
if [ "$STATE_ONLY" = 0 ]; then
    veths=$(ip -o link show type veth 2>/dev/null | awk -F': ' '{ print $2 }' | xargs)
    [ -z "$veths" ] || report "veth interfaces in this machine's network namespace: $veths"
fi

# pristine.sh's roots (kept or abandoned): their mounts (proc, /dev and /sys bound in) and what
# still runs in them. Not checked from inside one (/.pmkt-pristine): there, this machine's
# /proc/mounts lists the root's own mounts, which are not leftovers of the test bed inside it.
if [ "$STATE_ONLY" = 0 ] && [ ! -e /.pmkt-pristine ]; then
    pbase=${PMKT_PRISTINE_BASE:-/var/tmp}
    m=$(awk -v p="$pbase/pmkt-pristine." 'index($2, p) == 1 { print $2 }' /proc/self/mounts | xargs)
    [ -z "$m" ] || report "mounts of pristine roots: $m (tests/testbed/pristine.sh clean)"
    for r in "$pbase"/pmkt-pristine.*/; do
        [ -d "$r" ] || continue
        report "pristine root ${r%/} (tests/testbed/pristine.sh clean)"
    done
fi

if [ "$found" = 0 ]; then
    echo "no leftovers: no test-bed process, namespace, mount or veth remains"
fi
exit "$found"
