#!/bin/bash
# Failover of a Pacemaker cluster inside two TCG guests, fenced through pm-kvm-tools
# (fence_vmstonith -> vm-connectd -> vm-stonithd -> the host cluster) next to the same scenario
# fenced by fence_virt -> fence_virtd (serial listener, libvirt backend).
#
# Usage: bench/guest-failover.sh [RUNS]   (root; default 3 link cuts per fence device;
#        MODES="vmstonith fence_virt" by default)
#
# Both use tests/testbed/guestcluster.sh's set-up (3-node host cluster in namespaces, Debian
# guests g1 and g2 on node n1 with a two-node corosync + Pacemaker cluster, a Dummy resource
# preferring g2, the fence device then meatware as levels, pcmk_delay_base g1:10s) and its
# `bench` command: RUNS times, cut g2's cluster link (virsh domif-setlink), wait until g1's
# cluster has fenced g2 and runs the Dummy, and until g2 has rebooted and rejoined. With
# fence_virt the guests are plain libvirt domains (fence_virtd destroys and starts them behind
# Pacemaker, and its libvirt backend only reaches guests of its own host: both guests on n1 in
# both runs). Figures: seconds after the cut, median over the runs, per column of the summary.
# After each fence the cut is repaired: fence_virtd's reboot re-creates the domain from its live
# XML, link cut included (a Pacemaker restart starts a new QEMU with the link up).
set -euo pipefail
. "$(dirname "$0")/../tests/testbed/lib.sh"
need_root
RUNS=${1:-3}
GCSH=$TESTBED_DIR/guestcluster.sh
OUT=$PMKT_STATE/bench-guest-failover
mkdir -p "$OUT"
"$TESTBED_DIR/install.sh" all fencevirt >/dev/null
"$TESTBED_DIR/multinode.sh" down >/dev/null 2>&1 || true

# MODES="fence_virt" re-measures one side only (the other's figures stay in $OUT)
for mode in ${MODES:-vmstonith fence_virt}; do
    log "== FENCE=$mode: $RUNS link cuts"
    rm -rf "$PMKT_STATE/gc"
    FENCE=$mode "$GCSH" bench "$RUNS" >"$OUT/$mode.log" 2>&1 ||
        die "FENCE=$mode failed; see $OUT/$mode.log"
    cp "$PMKT_STATE/gc/failovers" "$OUT/$mode.failovers"
    sed -n '/== failover timelines/,$p' "$OUT/$mode.log"
done

# median per column, seconds after the cut
medians() {
    awk -F'|' '{ for (i = 3; i <= 8; i++) v[i, NR] = ($i == "-") ? "-" : $i - $2; n = NR }
        END {
            for (i = 3; i <= 8; i++) {
                m = 0; delete a
                for (r = 1; r <= n; r++) if (v[i, r] != "-") a[++m] = v[i, r]
                if (m == 0) { printf " %9s", "-"; continue }
                for (x = 1; x <= m; x++) for (y = x + 1; y <= m; y++) if (a[y] < a[x]) { t = a[x]; a[x] = a[y]; a[y] = t }
                med = (m % 2) ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
                printf " %9.1f", med
            }
            print ""
        }' "$1"
}
echo
echo "== guest cluster failover, median of $RUNS link cuts, seconds after the cut ($(date -u +%F), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg))"
printf '  %-24s %9s %9s %9s %9s %9s %9s\n' "fence device" requested "at host" stopped fenced recovered rejoined
# a side this run did not measure (MODES) shows an earlier run's figures, dated, or none
row() { # row MODE LABEL
    local f=$OUT/$1.failovers
    printf '  %-24s' "$2"
    if [ ! -s "$f" ]; then
        echo "  not measured (MODES=\"${MODES:-}\", and no earlier run in $OUT)"
        return
    fi
    medians "$f" | tr -d '\n'
    case " ${MODES:-vmstonith fence_virt} " in
    *" $1 "*) echo ;;
    *) echo "  (not this run: measured $(date -u -r "$f" '+%F %H:%M'))" ;;
    esac
}
row vmstonith fence_vmstonith
row fence_virt "fence_virt/fence_virtd"
echo "  requested: g1's cluster asks for the fence; at host: vm-stonithd has the request; stopped: the host"
echo "  cluster confirms g2 off; fenced: g1's cluster sees the fence succeed; recovered: dummy runs on g1;"
echo "  rejoined: g2 rebooted and back in the guest cluster. Logs: $OUT"
"$TESTBED_DIR/leftovers.sh" >/dev/null || log "leftovers: see tests/testbed/leftovers.sh"
