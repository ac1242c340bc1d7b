#!/bin/bash
# Benchmark: add N guests to Pacemaker in one command, on an offline CIB file and on the live
# single-node cluster, next to the raw write of the same configuration (issue #3's target:
# vm-ctl within 3x of it, and at least 10x faster than crmsh or pcs; issue #13's: within 2x at
# every N, 1,000 guests on a file in about a second, and a crm_mon during a 1,000-guest add on
# the live cluster answering within 1 s):
#   vm-ctl   `vm-ctl resource add vm0001,...,vmNNNN -a NODE`: one command (reads the CIB, checks
#            N domain XMLs, builds, crm_verify's the result, compare-and-swap write; on the live
#            cluster above 200 guests also in changes of 200 guests: `vmctl200`, `--batch 200`)
#   cibadmin one raw `cibadmin --modify --allow-create -o configuration` of the same XML
#            (taken from vm-ctl's own dry run, so the configurations are identical)
#   crmsh    `crm configure load update` of the same objects as crm text (vm-ctl's --dry-run),
#            for N <= CRMSH_MAX_N (default 200: it grows quadratically, 11 s at 200)
#   pcs      (file only) the per-guest pcs commands a user types (8 `pcs -f` calls per guest),
#            measured for PCS_N guests (default 3, 0 skips it) and extrapolated linearly to N, a
#            lower bound (pcs calls get slower as the CIB grows)
# On a file, each timed run starts from a fresh copy of the same base CIB (2 nodes, clones
# clnPingd and clnDiskd1, stonith disabled). On the live cluster (`live`, root; the test bed's
# tests/testbed/live-cluster.sh, started if it is down and stopped again then), each run starts
# from the same base (resources and constraints erased, the two clones, the node's ping and disk
# attributes; probes off, `enable-startup-probes=false`, so that the figures are the CIB write's
# and not 1,000 resource agents' probes), and while the write runs two loops measure how long
# the CIB manager keeps readers waiting: `cibadmin --query` and `crm_mon -1`, each issued again as
# soon as the last answered; their longest answer during the write is printed next to their
# answer on the idle cluster. Inputs are generated before timing. Prints the median of RUNS runs
# and checks that every method's result is the same configuration (canonical comparison, ids
# included) and passes crm_verify.
#
# Usage: bench/vm-ctl-add.sh [file|live|all] [RUNS] [N...]
#   defaults: all 3 10 100 200 1000. Quick check that it runs: bench/vm-ctl-add.sh file 1 10
#   (needs the packages of tests/testbed/install.sh cib; `live` also needs `live` and root, and
#   takes the live cluster's flock, $PMKT_STATE/live.lock, as the live tier's tests do)
set -euo pipefail
MODE=${1:-all}
RUNS=${2:-3}
shift $(($# > 2 ? 2 : $#))
SIZES=("$@")
[ ${#SIZES[@]} -gt 0 ] || SIZES=(10 100 200 1000)
PCS_N=${PCS_N:-3}
CRMSH_MAX_N=${CRMSH_MAX_N:-200}
ONTO_MIN_N=${ONTO_MIN_N:-1000} # live: from this N on, also one guest / one property more onto N
ONTO_AFTER=${ONTO_AFTER:-10}   # ... with readers probing this many seconds after that write
case "$MODE" in file | live | all) ;; *)
    echo "usage: $0 [file|live|all] [RUNS] [N...]" >&2
    exit 2
    ;;
esac
case "$RUNS ${SIZES[*]}" in *[!0-9\ ]*)
    echo "usage: $0 [file|live|all] [RUNS] [N...] (numbers)" >&2
    exit 2
    ;;
esac
REPO=$(cd "$(dirname "$0")/.." && pwd)
TB=$REPO/tests/testbed
# shellcheck source=../tests/testbed/lib.sh
. "$TB/lib.sh" # vmctl_conf
VMCTL=$REPO/target/${BENCH_PROFILE:-release}/vm-ctl # BENCH_PROFILE=debug: unoptimised (CI's quick run)
W=$(mktemp -d /tmp/pmkt-bench-add.XXXXXX)
prober_pids=() cluster_started=0
cleanup() {
    local rc=$? p
    set +e
    rm -f "$W/probing"
    for p in "${prober_pids[@]}"; do kill "$p" 2>/dev/null; done
    [ "$cluster_started" = 0 ] || "$TB/live-cluster.sh" down >/dev/null 2>&1
    rm -rf "$W"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
build_flags=(--release)
[ "${BENCH_PROFILE:-release}" = release ] || build_flags=()
(cd "$REPO" && cargo build "${build_flags[@]}" --quiet -p vm-ctl)

median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
maximum() { sort -n | tail -1; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", a / b }'; }

# --- inputs for N guests: domain XMLs, vm-ctl.conf, the guest list ---
inputs() { # inputs N DIR
    local n=$1 d=$2 i g doms=()
    mkdir -p "$d/xml"
    for ((i = 1; i <= n; i++)); do
        g=$(printf 'vm%04d' "$i")
        doms+=("$g")
        printf "<domain type='kvm'><name>%s</name><devices/></domain>\n" "$g" >"$d/xml/$g.xml"
    done
    (IFS=,; echo "${doms[*]}") >"$d/list"
    vmctl_conf "$d/xml" "vm_pingd1=(clnPingd default_ping_set)" \
        "vm_diskd1=(clnDiskd1 diskcheck_status)" >"$d/vm-ctl.conf"
}
# the same objects as crm text and as XML, from vm-ctl's dry run on the CIB it would change
same_inputs() { # same_inputs DIR NODE   (CIB_file set for a file, unset for the live cluster)
    local d=$1 node=$2
    "$VMCTL" --config "$d/vm-ctl.conf" --dry-run --output json resource add "$(cat "$d/list")" -a "$node" >"$d/dry.json"
    python3 - "$d/dry.json" "$d/same.crm" "$d/same.xml" <<'PY'
import json, sys, xml.etree.ElementTree as ET
dry = json.load(open(sys.argv[1]))["dry_run"]
open(sys.argv[2], "w").write(dry["crm"] + "\n")
objs = ET.fromstring("<x>" + dry["xml"] + "</x>")
out = ET.Element("configuration")
res, cons = ET.SubElement(out, "resources"), ET.SubElement(out, "constraints")
for e in objs:
    (res if e.tag in ("primitive", "group", "clone") else cons).append(e)
open(sys.argv[3], "w").write(ET.tostring(out, encoding="unicode"))
PY
}
canon() { # canon CIBXML: resources and constraints, one line per element, sorted
    python3 -c '
import sys, xml.etree.ElementTree as ET
conf = ET.parse(sys.argv[1]).getroot().find("configuration")
lines = []
def walk(e, path):
    lines.append(path + "/" + e.tag + " " + " ".join(f"{k}=\"{v}\"" for k, v in sorted(e.attrib.items())
                                                        if not (k == "type" and v == "string")))
    for c in e:
        walk(c, path + "/" + e.tag + "[" + e.get("id", "") + "]")
for sec in ("resources", "constraints"):
    walk(conf.find(sec), "")
print("\n".join(sorted(lines)))' "$1"
}
export VM_CTL_LOCK=$W/lock

# --- on a file ---
bench_file() { # bench_file N
    local n=$1 d=$W/file-$1 m i t0 f same=yes
    inputs "$n" "$d"
    export CIB_file=$d/base.xml
    cibadmin --empty >"$CIB_file"
    crm_attribute --type crm_config --name stonith-enabled --update false
    cibadmin --create -o nodes -X '<node id="1" uname="host1"/>'
    cibadmin --create -o nodes -X '<node id="2" uname="host2"/>'
    for m in clnPingd clnDiskd1; do
        cibadmin --create -o resources -X "<clone id='$m'><primitive id='$m-p' class='ocf' provider='pacemaker' type='Dummy'/></clone>"
    done
    same_inputs "$d" host1
    unset CIB_file
    run_vmctl() { CIB_file=$F "$VMCTL" --config "$d/vm-ctl.conf" resource add "$(cat "$d/list")" -a host1; }
    run_cibadmin() { CIB_file=$F cibadmin --modify --allow-create -o configuration -x "$d/same.xml"; }
    run_crmsh() { CIB_file=$F crm configure load update "$d/same.crm"; }
    run_pcs() {
        local i g p
        for ((i = 1; i <= PCS_N; i++)); do
            g=$(printf 'vm%04d' "$i")
            p=prmVMCTL_$g
            pcs -f "$F" resource create "$p" ocf:heartbeat:VirtualDomain config="$d/xml/$g.xml" \
                hypervisor="qemu:///system" migration_transport=ssh meta allow-migrate=false \
                op start interval=0 timeout=90s on-fail=restart op monitor interval=10s timeout=30s on-fail=restart \
                op stop interval=0 timeout=90s on-fail=block op migrate_to interval=0 timeout=300s on-fail=block \
                op migrate_from interval=0 timeout=240s on-fail=restart --disabled --no-default-ops
            pcs -f "$F" constraint location "$p" rule id="locVMCTL_${g}_default_ping_set-rule" \
                constraint-id="locVMCTL_${g}_default_ping_set" score=-INFINITY not_defined default_ping_set or default_ping_set lt 100
            pcs -f "$F" constraint location "$p" rule id="locVMCTL_${g}_diskcheck_status-rule" \
                constraint-id="locVMCTL_${g}_diskcheck_status" score=-INFINITY not_defined diskcheck_status or diskcheck_status eq ERROR
            pcs -f "$F" constraint location "$p" prefers host1=200
            pcs -f "$F" constraint colocation add "$p" with clnPingd INFINITY id="colVMCTL_${g}_clnPingd"
            pcs -f "$F" constraint colocation add "$p" with clnDiskd1 INFINITY id="colVMCTL_${g}_clnDiskd1"
            pcs -f "$F" constraint order clnPingd "then" "$p" kind=Optional symmetrical=false id="odrVMCTL_${g}_clnPingd"
            pcs -f "$F" constraint order clnDiskd1 "then" "$p" kind=Optional symmetrical=false id="odrVMCTL_${g}_clnDiskd1"
        done
    }
    local methods=(vmctl cibadmin)
    [ "$n" -gt "$CRMSH_MAX_N" ] || methods+=(crmsh)
    [ "$PCS_N" = 0 ] || methods+=(pcs)
    for m in "${methods[@]}"; do
        f=$d/work-$m.xml
        for ((i = 0; i < RUNS; i++)); do
            [ "$m" != pcs ] || [ "$i" = 0 ] || break # pcs: one run (minutes otherwise)
            cp "$d/base.xml" "$f"
            t0=$(now)
            F=$f "run_$m" >/dev/null 2>&1 || { echo "$m failed on a file (N=$n)" >&2; return 1; }
            awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.4f\n", b - a }'
        done | median >"$d/t-$m"
    done
    for m in "${methods[@]}"; do
        [ "$m" != pcs ] || continue
        crm_verify -x "$d/work-$m.xml" || same="$same (crm_verify failed for $m)"
        [ "$m" = vmctl ] || diff -q <(canon "$d/work-vmctl.xml") <(canon "$d/work-$m.xml") >/dev/null || same=no
    done
    local tv tc
    tv=$(cat "$d/t-vmctl") tc=$(cat "$d/t-cibadmin")
    printf '\nfile, N=%d (median of %d runs)\n%-10s %10s %12s\n' "$n" "$RUNS" method seconds "vs cibadmin"
    for m in "${methods[@]}"; do
        if [ "$m" = pcs ]; then
            local tp tpn
            tp=$(cat "$d/t-pcs")
            tpn=$(awk -v t="$tp" -v n="$n" -v k="$PCS_N" 'BEGIN { printf "%.1f", t / k * n }')
            printf '%-10s %10s %11sx   (%.2f s for %d guests, x%d/%d; a lower bound)\n' pcs ">= $tpn" "$(ratio "$tpn" "$tc")" "$tp" "$PCS_N" "$n" "$PCS_N"
        else
            printf '%-10s %10.3f %11sx\n' "$m" "$(cat "$d/t-$m")" "$(ratio "$(cat "$d/t-$m")" "$tc")"
        fi
    done
    echo "file, N=$n: vm-ctl $(ratio "$tv" "$tc")x the raw write; same configuration from ${methods[*]/pcs/} (ids included), crm_verify OK: $same"
}

# --- on the live cluster ---
NODE=$(uname -n)
live_base() { # erase resources and constraints, then the base the file runs start from
    cibadmin --replace -o constraints -X '<constraints/>'
    cibadmin --replace -o resources -X '<resources/>'
    crm_attribute --type crm_config --name enable-startup-probes --update false
    local c
    for c in clnPingd clnDiskd1; do
        cibadmin --create -o resources -X "<clone id='$c'><primitive id='$c-p' class='ocf' provider='pacemaker' type='Dummy'/></clone>"
    done
    crm_attribute --node "$NODE" --name default_ping_set --update 100
    crm_attribute --node "$NODE" --name diskcheck_status --update ok
    crm_resource --wait --timeout=120s
}
prober() { # prober OUT CMD...: run CMD again and again while $W/probing exists; durations to OUT
    local out=$1 t0
    shift
    : >"$out"
    while [ -e "$W/probing" ]; do
        t0=$(now)
        "$@" >/dev/null 2>&1 || true
        awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.4f\n", b - a }' >>"$out"
    done
}
idle_wait() { # idle_wait CMD...: median of 5 answers on the idle cluster
    local i t0
    for ((i = 0; i < 5; i++)); do
        t0=$(now)
        "$@" >/dev/null 2>&1
        awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.4f\n", b - a }'
    done | median
}
bench_live() { # bench_live N
    local n=$1 d=$W/live-$1 m i t0 same=yes
    inputs "$n" "$d"
    live_base
    same_inputs "$d" "$NODE"
    run_vmctl() { "$VMCTL" --config "$d/vm-ctl.conf" resource add "$(cat "$d/list")" -a "$NODE"; }
    run_vmctl200() { "$VMCTL" --config "$d/vm-ctl.conf" resource add "$(cat "$d/list")" -a "$NODE" --batch 200; }
    run_cibadmin() { cibadmin --modify --allow-create -o configuration -x "$d/same.xml"; }
    run_crmsh() { crm configure load update "$d/same.crm"; }
    # vm-ctl as it runs (one change), and above 200 guests also in changes of 200 (vmctl200)
    local methods=(vmctl cibadmin)
    [ "$n" -le 200 ] || methods+=(vmctl200)
    [ "$n" -gt "$CRMSH_MAX_N" ] || methods+=(crmsh)
    for m in "${methods[@]}"; do
        for ((i = 0; i < RUNS; i++)); do
            live_base
            [ "$i" != 0 ] || { idle_wait cibadmin --query >"$d/idle-q-$m"; idle_wait crm_mon -1 >"$d/idle-m-$m"; }
            touch "$W/probing"
            prober "$d/q-$m-$i" cibadmin --query &
            prober_pids=($!)
            prober "$d/m-$m-$i" crm_mon -1 &
            prober_pids+=($!)
            sleep 0.5
            t0=$(now)
            "run_$m" >/dev/null 2>&1 || { echo "$m failed on the live cluster (N=$n)" >&2; return 1; }
            awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.4f\n", b - a }' >>"$d/t-$m"
            rm -f "$W/probing"
            wait "${prober_pids[@]}"
            prober_pids=()
            maximum <"$d/q-$m-$i" >>"$d/qmax-$m"
            maximum <"$d/m-$m-$i" >>"$d/mmax-$m"
        done
        cibadmin --query >"$d/result-$m.xml"
        crm_verify -x "$d/result-$m.xml" >/dev/null 2>&1 || same="$same (crm_verify failed for $m)"
        [ "$m" = vmctl ] || diff -q <(canon "$d/result-vmctl.xml") <(canon "$d/result-$m.xml") >/dev/null || same=no
    done
    local tc
    tc=$(median <"$d/t-cibadmin")
    printf '\nlive cluster, N=%d (median of %d runs; readers: longest answer during the write, median over runs)\n' "$n" "$RUNS"
    printf '%-10s %10s %12s %22s %22s\n' method seconds "vs cibadmin" "cibadmin -Q (idle)" "crm_mon -1 (idle)"
    for m in "${methods[@]}"; do
        printf '%-10s %10.3f %11sx %12.3f (%.3f) %12.3f (%.3f)\n' "$m" "$(median <"$d/t-$m")" \
            "$(ratio "$(median <"$d/t-$m")" "$tc")" "$(median <"$d/qmax-$m")" "$(cat "$d/idle-q-$m")" \
            "$(median <"$d/mmax-$m")" "$(cat "$d/idle-m-$m")"
    done
    echo "live, N=$n: vm-ctl $(ratio "$(median <"$d/t-vmctl")" "$tc")x the raw write; same configuration from ${methods[*]} (ids included), crm_verify OK: $same"
    [ "$n" -lt "$ONTO_MIN_N" ] || one_more "$n" "$d"
}
# one_more N DIR: on the cluster as the last method left it (N guests, settled), how long readers
# wait when the configuration changes by the least a write can change it: one guest more
# (vm-ctl), then one cluster property (`crm_attribute`). The readers probe from before the write
# until ONTO_AFTER seconds after it (the fencer patches its copy of the CIB after the CIB
# manager has answered); idle: the median of 5 answers just before. If even these writes keep
# readers waiting over 1 s, no shape of a many-guest add (one change or several) can keep a
# crm_mon issued during it under 1 s at this size.
one_more() {
    local n=$1 d=$2 g w t0 t1 step
    g=$(printf 'vm%04d' $((n + 1)))
    printf "<domain type='kvm'><name>%s</name><devices/></domain>\n" "$g" >"$d/xml/$g.xml"
    crm_resource --wait --timeout=900s >/dev/null 2>&1 || true
    printf '\nlive cluster, onto N=%d settled: readers while the CIB changes by one guest / one property\n' "$n"
    printf '%-22s %10s %22s %22s %26s\n' write seconds "cibadmin -Q (idle)" "crm_mon -1 (idle)" "--fence-history=0 (idle)"
    for w in guest property; do
        local iq im ih
        iq=$(idle_wait cibadmin --query) im=$(idle_wait crm_mon -1) ih=$(idle_wait crm_mon -1 --fence-history=0)
        touch "$W/probing"
        prober "$d/oq-$w" cibadmin --query &
        prober_pids=($!)
        prober "$d/om-$w" crm_mon -1 &
        prober_pids+=($!)
        prober "$d/of-$w" crm_mon -1 --fence-history=0 &
        prober_pids+=($!)
        sleep 0.5
        t0=$(now)
        case $w in
        guest) step=("$VMCTL" --config "$d/vm-ctl.conf" resource add "$g" -a "$NODE") ;;
        property) step=(crm_attribute --type crm_config --name pmkt-bench-touch --update "$n") ;;
        esac
        "${step[@]}" >/dev/null 2>&1 || { echo "${step[*]} failed onto N=$n" >&2; return 1; }
        t1=$(now)
        sleep "$ONTO_AFTER"
        rm -f "$W/probing"
        wait "${prober_pids[@]}"
        prober_pids=()
        printf '%-22s %10.3f %12.3f (%.3f) %12.3f (%.3f) %16.3f (%.3f)\n' "one $w" \
            "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" \
            "$(maximum <"$d/oq-$w")" "$iq" "$(maximum <"$d/om-$w")" "$im" "$(maximum <"$d/of-$w")" "$ih"
        crm_resource --wait --timeout=900s >/dev/null 2>&1 || true
    done
    crm_attribute --type crm_config --name pmkt-bench-touch --delete >/dev/null 2>&1 || true
}

echo "vm-ctl resource add of N guests in one command; $(nproc) cores, $(date -u +%F), commit $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [ "$MODE" != live ]; then
    for n in "${SIZES[@]}"; do bench_file "$n"; done
fi
if [ "$MODE" != file ]; then
    [ "$(id -u)" = 0 ] || { echo "the live runs need root" >&2; exit 1; }
    PMKT_STATE=${PMKT_STATE:-/tmp/pmkt}
    mkdir -p "$PMKT_STATE"
    exec 8>"$PMKT_STATE/live.lock"
    flock -w 900 8 || { echo "the live cluster is in use (flock $PMKT_STATE/live.lock)" >&2; exit 1; }
    if ! "$TB/live-cluster.sh" status >/dev/null 2>&1; then
        # (not holding our lock's descriptor: the daemons outlive this script's lock)
        "$TB/live-cluster.sh" up >/dev/null 8>&-
        cluster_started=1
    fi
    for n in "${SIZES[@]}"; do bench_live "$n"; done
    # what the runs added goes before the test bed's reset (which would power off every
    # VirtualDomain resource one crm_attribute call at a time)
    cibadmin --replace -o constraints -X '<constraints/>'
    cibadmin --replace -o resources -X '<resources/>'
    for a in default_ping_set diskcheck_status; do
        crm_attribute --node "$NODE" --name "$a" --delete >/dev/null 2>&1 || true
    done
    crm_attribute --type crm_config --name enable-startup-probes --delete >/dev/null 2>&1 || true
    "$TB/live-cluster.sh" reset >/dev/null
fi
