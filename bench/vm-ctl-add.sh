#!/bin/bash
# Benchmark: add N guests (default 200) to Pacemaker on an offline CIB file, four ways, side by
# side (issue #3's target: vm-ctl within 3x of one raw cibadmin write of the same XML, and at
# least 10x faster than crmsh or pcs):
#   vm-ctl   `vm-ctl resource add vm0001,...,vmNNNN -a host1`: one command (reads the CIB, checks
#            200 domain XMLs, builds, crm_verify's the result, compare-and-swap write)
#   cibadmin one raw `cibadmin --modify --allow-create -o configuration` of the same XML
#            (taken from vm-ctl's own result, so the configurations are identical)
#   crmsh    `crm configure load update` of the same objects as crm text (vm-ctl's --dry-run)
#   pcs      the per-guest pcs commands a user types (8 `pcs -f` calls per guest, the original
#            block); measured for PCS_N guests (default 3) and
#            extrapolated linearly to N, a lower bound (pcs calls get slower as the CIB grows)
# Each timed run starts from a fresh copy of the same base CIB (2 nodes, clones clnPingd and
# clnDiskd1, stonith disabled); inputs are generated before timing. Prints the median of RUNS
# runs (default 3) and checks that vm-ctl's, cibadmin's and crmsh's results are the same
# configuration (canonical comparison, ids included) and pass crm_verify.
# Usage: bench/vm-ctl-add.sh [N] [RUNS]    (needs the packages of tests/testbed/install.sh cib)
set -euo pipefail
N=${1:-200}
RUNS=${2:-3}
PCS_N=${PCS_N:-3}
REPO=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=../tests/testbed/lib.sh
. "$REPO/tests/testbed/lib.sh" # vmctl_conf
VMCTL=$REPO/target/release/vm-ctl
W=$(mktemp -d /tmp/pmkt-bench-add.XXXXXX)
trap 'rm -rf "$W"' EXIT
(cd "$REPO" && cargo build --release --quiet -p vm-ctl)

# --- inputs ---
export CIB_file=$W/base.xml
cibadmin --empty >"$CIB_file"
crm_attribute --type crm_config --name stonith-enabled --update false
cibadmin --create -o nodes -X '<node id="1" uname="host1"/>'
cibadmin --create -o nodes -X '<node id="2" uname="host2"/>'
for c in clnPingd clnDiskd1; do
    cibadmin --create -o resources -X "<clone id='$c'><primitive id='$c-p' class='ocf' provider='pacemaker' type='Dummy'/></clone>"
done
unset CIB_file
mkdir -p "$W/xml"
doms=()
for ((i = 1; i <= N; i++)); do
    d=$(printf 'vm%04d' "$i")
    doms+=("$d")
    printf "<domain type='kvm'><name>%s</name><devices/></domain>\n" "$d" >"$W/xml/$d.xml"
done
list=$(IFS=,; echo "${doms[*]}")
vmctl_conf "$W/xml" "vm_pingd1=(clnPingd default_ping_set)" \
    "vm_diskd1=(clnDiskd1 diskcheck_status)" >"$W/vm-ctl.conf"
export VM_CTL_LOCK=$W/lock
vmctl() { CIB_file=$1 "$VMCTL" --config "$W/vm-ctl.conf" "${@:2}"; }
# the same objects as crm text (vm-ctl's dry run) and as XML (vm-ctl's result)
cp "$W/base.xml" "$W/ref.xml"
vmctl "$W/ref.xml" --dry-run --output json resource add "$list" -a host1 |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["dry_run"]["crm"])' >"$W/same.crm"
vmctl "$W/ref.xml" resource add "$list" -a host1 >/dev/null
python3 - "$W/base.xml" "$W/ref.xml" >"$W/same.xml" <<'PY'
import sys, xml.etree.ElementTree as ET
base = ET.parse(sys.argv[1]).getroot().find("configuration")
ref = ET.parse(sys.argv[2]).getroot().find("configuration")
out = ET.Element("configuration")
for sec in ("resources", "constraints"):
    have = {e.get("id") for e in base.find(sec)}
    s = ET.SubElement(out, sec)
    for e in ref.find(sec):
        if e.get("id") not in have:
            s.append(e)
print(ET.tostring(out, encoding="unicode"))
PY

# --- timing ---
now() { date +%s.%N; }
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
time_runs() { # time_runs NAME CMD... : RUNS runs, each on a fresh copy of the base CIB
    local name=$1 i t0 f=$W/work-$1.xml
    shift
    for ((i = 0; i < RUNS; i++)); do
        cp "$W/base.xml" "$f"
        t0=$(now)
        F=$f "$@" >/dev/null 2>&1 || { echo "$name failed" >&2; return 1; }
        awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.4f\n", b - a }'
    done | median >"$W/t-$name"
}
run_vmctl() { vmctl "$F" resource add "$list" -a host1; }
run_cibadmin() { CIB_file=$F cibadmin --modify --allow-create -o configuration -x "$W/same.xml"; }
run_crmsh() { CIB_file=$F crm configure load update "$W/same.crm"; }
run_pcs() {
    local i d p
    for ((i = 1; i <= PCS_N; i++)); do
        d=$(printf 'vm%04d' "$i")
        p=prmVMCTL_$d
        pcs -f "$F" resource create "$p" ocf:heartbeat:VirtualDomain config="$W/xml/$d.xml" \
            hypervisor="qemu:///system" migration_transport=ssh meta allow-migrate=false \
            op start interval=0 timeout=90s on-fail=restart op monitor interval=10s timeout=30s on-fail=restart \
            op stop interval=0 timeout=90s on-fail=block op migrate_to interval=0 timeout=300s on-fail=block \
            op migrate_from interval=0 timeout=240s on-fail=restart --disabled --no-default-ops
        pcs -f "$F" constraint location "$p" rule id="locVMCTL_${d}_default_ping_set-rule" \
            constraint-id="locVMCTL_${d}_default_ping_set" score=-INFINITY not_defined default_ping_set or default_ping_set lt 100
        pcs -f "$F" constraint location "$p" rule id="locVMCTL_${d}_diskcheck_status-rule" \
            constraint-id="locVMCTL_${d}_diskcheck_status" score=-INFINITY not_defined diskcheck_status or diskcheck_status eq ERROR
        pcs -f "$F" constraint location "$p" prefers host1=200
        pcs -f "$F" constraint colocation add "$p" with clnPingd INFINITY id="colVMCTL_${d}_clnPingd"
        pcs -f "$F" constraint colocation add "$p" with clnDiskd1 INFINITY id="colVMCTL_${d}_clnDiskd1"
        pcs -f "$F" constraint order clnPingd "then" "$p" kind=Optional symmetrical=false id="odrVMCTL_${d}_clnPingd"
        pcs -f "$F" constraint order clnDiskd1 "then" "$p" kind=Optional symmetrical=false id="odrVMCTL_${d}_clnDiskd1"
    done
}
echo "adding $N guests to an offline CIB file; median of $RUNS runs ($(nproc) cores, $(date -u +%F))"
time_runs vmctl run_vmctl
time_runs cibadmin run_cibadmin
time_runs crmsh run_crmsh
RUNS=1 time_runs pcs run_pcs

# --- same result? ---
canon() {
    python3 - "$1" <<'PY'
import sys, xml.etree.ElementTree as ET
conf = ET.parse(sys.argv[1]).getroot().find("configuration")
lines = []
def walk(e, path):
    lines.append(path + "/" + e.tag + " " + " ".join(f'{k}="{v}"' for k, v in sorted(e.attrib.items())
                                                        if not (k == "type" and v == "string")))
    for c in e:
        walk(c, path + "/" + e.tag + "[" + e.get("id", "") + "]")
for sec in ("resources", "constraints"):
    walk(conf.find(sec), "")
print("\n".join(sorted(lines)))
PY
}
same=yes
for m in cibadmin crmsh; do
    if ! diff -q <(canon "$W/work-vmctl.xml") <(canon "$W/work-$m.xml") >/dev/null; then same=no; fi
done
for m in vmctl cibadmin crmsh; do crm_verify -x "$W/work-$m.xml" || same="$same (crm_verify failed for $m)"; done

tv=$(cat "$W/t-vmctl") tc=$(cat "$W/t-cibadmin") tk=$(cat "$W/t-crmsh") tp=$(cat "$W/t-pcs")
tpn=$(awk -v t="$tp" -v n="$N" -v k="$PCS_N" 'BEGIN { printf "%.1f", t / k * n }')
printf '\n%-10s %12s %16s %16s\n' method "seconds" "vs cibadmin" "vm-ctl faster"
printf '%-10s %12.3f %15.1fx %16s\n' vm-ctl "$tv" "$(awk -v a="$tv" -v b="$tc" 'BEGIN { print a / b }')" "-"
printf '%-10s %12.3f %15.1fx %15.1fx\n' cibadmin "$tc" 1 "$(awk -v a="$tc" -v b="$tv" 'BEGIN { print a / b }')"
printf '%-10s %12.3f %15.1fx %15.1fx\n' crmsh "$tk" "$(awk -v a="$tk" -v b="$tc" 'BEGIN { print a / b }')" "$(awk -v a="$tk" -v b="$tv" 'BEGIN { print a / b }')"
printf '%-10s %12s %15.1fx %15.1fx   (%.2f s for %d guests, x%d/%d; a lower bound)\n' pcs "$tpn" \
    "$(awk -v a="$tpn" -v b="$tc" 'BEGIN { print a / b }')" "$(awk -v a="$tpn" -v b="$tv" 'BEGIN { print a / b }')" "$tp" "$PCS_N" "$N" "$PCS_N"
echo "same configuration from vm-ctl, cibadmin and crmsh (ids included), crm_verify OK: $same"
