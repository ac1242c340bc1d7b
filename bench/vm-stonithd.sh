#!/bin/bash
# Benchmark guest fencing through vm-stonithd (issue #5's targets), on the single-node live
# cluster with TCG guests, next to fence_virt/fence_virtd on the same guests:
#   1. `fence_vmstonith -o off -n TARGET` inside a requester guest, over its real virtio-serial
#      channel, host vm-connectd, vm-stonithd, Pacemaker, ocf:pm-kvm-tools:VirtualDomain (hard
#      power-off): the agent's time (process start to exit, timed by the guest's own clock)
#      minus the VirtualDomain stop's own duration (its `exec-time` in the CIB's operation
#      history) (target: under 300 ms more than the stop itself), then `-o on`;
#   2. `fence_vmstonith -o status -n TARGET` round trips (target: p50 under 50 ms), and
#      `vm-connect ping` for scale;
#   3. why the off costs what it costs on the host: the same CIB change vm-stonithd makes
#      (target-role=Stopped plus the force_stop-<rsc> node attribute) on a Dummy resource, as
#      ordinary modifications and as one whole-CIB replace, timed to Pacemaker's "Initiating stop";
#   4. the same off and status with `fence_virt` in the same guest, over a serial port
#      (/dev/ttyS1), to `fence_virtd` (serial listener, libvirt backend) on this host. fence_virtd
#      destroys the domain itself, outside Pacemaker: for these runs the target is taken out of
#      Pacemaker and runs as a plain (persistent) libvirt domain.
# Usage (root): bench/vm-stonithd.sh [RUNS=5] [STATUS_RUNS=50]
#   MODES=vmstonith  leave out part 4 (fence_virt; CI's quick run, as bench/guest-failover.sh)
#   NO_BUILD=1  use the binaries already built (target/release, or target/debug with
#               BENCH_PROFILE=debug; target/debug; the guest image)
#
# Timing is done inside the guest, by its shell (the `adjtimex` clock, as bench/vm-connectd.sh
# does): a host-side timer would add the serial console's round trip. Every figure is from
# before the process starts to after it exits; the cost of the timing itself (reading the clock,
# the `$(...)` subshell) is measured and subtracted. The guest clock's rate against the host's
# is checked over the whole run and printed. The VirtualDomain stop time comes from the
# host's executor (pacemaker-execd measures the agent from fork to exit), so the difference
# mixes two clocks; the rate check shows how far apart they run.
#
# Set-up (idempotent): the test bed's libvirtd and live cluster (tests/testbed; taken under the
# same flocks the tests use), a requester guest (guest daemon on its vmconnectd port, fence_virt
# added to its initramfs by an appended cpio archive, a second serial port for fence_virt) and a
# target guest, both added with vm-ctl as ocf:pm-kvm-tools:VirtualDomain resources; a host
# vm-connectd and vm-stonithd (release builds) with a fresh guest-cluster key, typed into the
# requester. Everything it starts is stopped by PID on exit; test-bed daemons it found running
# are left running. Ends with tests/testbed/leftovers.sh. State: $PMKT_STATE/run/bench-stonith.
set -euo pipefail
RUNS=${1:-5} STATUS_RUNS=${2:-50}
REPO=$(cd "$(dirname "$0")/.." && pwd)
TB=$REPO/tests/testbed
# shellcheck source=../tests/testbed/lib.sh
. "$TB/lib.sh"
need_root
case "$RUNS$STATUS_RUNS" in *[!0-9]*) die "usage: $0 [RUNS] [STATUS_RUNS]" ;; esac
if [ "$RUNS" -lt 1 ] || [ "$STATUS_RUNS" -lt 1 ]; then die "RUNS and STATUS_RUNS must be at least 1"; fi

REQ=pmkt-bs-req TGT=pmkt-bs-tgt
RSC_TGT=prmVMCTL_$TGT
RUN=$PMKT_STATE/run/bench-stonith
FVDIR=$RUN/fence-virtd # fence_virtd's serial listener takes every bind socket in here
NODE=$(uname -n)
REL=$REPO/target/${BENCH_PROFILE:-release} # BENCH_PROFILE=debug: unoptimised (CI's quick run)
build_flags=(--release)
[ "${BENCH_PROFILE:-release}" = release ] || build_flags=()
VMCTL=$REPO/target/debug/vm-ctl
TBH=$REPO/target/debug/pmkt-tb
VIRSH=(virsh -q -c qemu:///system)
say() { printf '%s\n' "$*"; }

# --- exclusive use of the shared test bed (the tests' flocks, same order as the fence tests) ---
mkdir -p "$PMKT_STATE"
exec 8>"$PMKT_STATE/live.lock" 9>"$PMKT_STATE/libvirt.lock"
flock -w 900 8 || die "the live cluster is in use (flock $PMKT_STATE/live.lock)"
flock -w 900 9 || die "libvirtd is in use (flock $PMKT_STATE/libvirt.lock)"

# --- packages and builds ---
# project: the OCF agents (ocf:pm-kvm-tools:VirtualDomain) come from the host package
"$TB/install.sh" build live libvirt guest fencevirt project >/dev/null
if [ "${NO_BUILD:-0}" != 1 ]; then
    (cd "$REPO" && cargo build "${build_flags[@]}" --quiet -p vm-stonithd -p vm-connectd &&
        cargo build --quiet -p vm-ctl -p vm-tests --bin vm-ctl --bin pmkt-tb)
    "$TB/guest-image.sh" >/dev/null
else
    "$TB/guest-image.sh" --no-build >/dev/null
fi
for b in "$REL/vm-stonithd" "$REL/vm-connectd" "$VMCTL" "$TBH" /usr/sbin/fence_virtd /usr/sbin/fence_virt; do
    [ -x "$b" ] || die "missing $b"
done

# --- state; what was already running ---
cluster_was_up=0 libvirt_was_up=0
"$TB/live-cluster.sh" status >/dev/null 2>&1 && cluster_was_up=1
"$TB/libvirtd.sh" status >/dev/null 2>&1 && libvirt_was_up=1
relay="" stonithd="" fvd="" tgt_plain=0 in_pcmk=0 probe_made=0 fencing_on=0 fencing_was=""
VMCTL_CONF=$RUN/vm-ctl.conf
export VM_CTL_LOCK=$RUN/vm-ctl.lock
vmctl() { env -u CIB_file "$VMCTL" --config "$VMCTL_CONF" -q "$@"; }
stop_pid() { # stop_pid PID NAME: SIGTERM, wait up to 30 s, then SIGKILL
    local pid=$1 i
    [ -n "$pid" ] && alive "$pid" || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 300; i++)); do alive "$pid" || return 0; sleep 0.1; done
    log "$2 (pid $pid) ignored SIGTERM for 30 s, killing"
    kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$? r
    set +e
    trap - EXIT ERR
    say "== tear-down"
    stop_pid "$fvd" fence_virtd
    if [ "$tgt_plain" = 1 ]; then
        "${VIRSH[@]}" destroy "$TGT" >/dev/null 2>&1
        "${VIRSH[@]}" undefine "$TGT" >/dev/null 2>&1
    fi
    if [ "$in_pcmk" = 1 ]; then
        # our guests only: stop (graceful: the guest powers off on the ACPI button), then delete
        for r in $REQ $TGT; do
            crm_resource --resource "prmVMCTL_$r" --query-xml >/dev/null 2>&1 || continue
            vmctl resource stop "$r" --wait=120 >/dev/null
            vmctl resource delete "$r" --wait=120 >/dev/null || log "could not delete resource prmVMCTL_$r"
            crm_attribute --node "$NODE" --name "force_stop-prmVMCTL_$r" --delete >/dev/null 2>&1
        done
    fi
    if [ "$probe_made" = 1 ]; then
        crm_attribute --node "$NODE" --name "force_stop-bench-stonith-probe" --delete >/dev/null 2>&1
        cibadmin --modify -X "<nvpair id='bench-stonith-probe-meta-tr' name='target-role' value='Stopped'/>" >/dev/null 2>&1
        crm_resource --wait --timeout=60s >/dev/null 2>&1
        cibadmin --delete -o resources -X "<primitive id='bench-stonith-probe'/>" >/dev/null 2>&1
    fi
    if [ "$fencing_on" = 1 ]; then
        cibadmin --delete -o resources -X "<primitive id='pmkt-bench-fence'/>" >/dev/null 2>&1
        crm_attribute --type crm_config --name stonith-enabled --update "${fencing_was:-false}" >/dev/null 2>&1
    fi
    stop_pid "$stonithd" vm-stonithd
    stop_pid "$relay" vm-connectd
    # crm_mon started by vm-stonithd as its event watcher must be gone with it
    sleep 0.5
    if pgrep -f -- "--external-recipient=$RUN/" >/dev/null; then
        say "  vm-stonithd's crm_mon outlived it: $(pgrep -f -a -- "--external-recipient=$RUN/")"
    fi
    [ "$cluster_was_up" = 1 ] || "$TB/live-cluster.sh" down >/dev/null 2>&1
    [ "$libvirt_was_up" = 1 ] || "$TB/libvirtd.sh" down >/dev/null 2>&1
    say "== leftovers (tests/testbed/leftovers.sh)"
    "$TB/leftovers.sh"
    local lrc=$?
    if [ "$lrc" != 0 ] && { [ "$cluster_was_up" = 1 ] || [ "$libvirt_was_up" = 1 ]; }; then
        say "  (the live cluster and/or libvirtd were running before this benchmark started and are left as found:"
        say "   cluster up before: $cluster_was_up, libvirtd up before: $libvirt_was_up)"
    fi
    for p in "$relay" "$stonithd" "$fvd"; do
        [ -n "$p" ] && alive "$p" && say "  leftover of this benchmark: pid $p"
    done
    for r in $REQ $TGT; do
        "${VIRSH[@]}" dominfo "$r" >/dev/null 2>&1 && say "  leftover of this benchmark: domain $r"
    done
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
set -E
trap 'log "failed (status $?) at line $LINENO: $BASH_COMMAND"' ERR

"$TB/libvirtd.sh" up >/dev/null
"$TB/live-cluster.sh" up >/dev/null
[ "$(crm_attribute --type crm_config --name maintenance-mode --query --quiet 2>/dev/null)" != true ] ||
    die "the live cluster is in maintenance mode"
# vm-stonithd confirms no off while the host cluster runs without fencing (the live test bed's
# stonith-enabled=false): turn it on for the run, with a device that fences nothing here (a
# static host list naming no node; Pacemaker starts no resource that needs fencing without a
# device); cleanup removes the device and restores the setting.
fencing_was=$(crm_attribute --type crm_config --name stonith-enabled --query --quiet 2>/dev/null || true)
if [ "$fencing_was" != true ]; then
    fencing_on=1
    cibadmin --create -o resources -X "<primitive id='pmkt-bench-fence' class='stonith' type='fence_legacy'><instance_attributes id='pmkt-bench-fence-ia'><nvpair id='pmkt-bench-fence-plugin' name='plugin' value='external/ssh'/><nvpair id='pmkt-bench-fence-hosts' name='hostlist' value='pmkt-no-such-host'/><nvpair id='pmkt-bench-fence-check' name='pcmk_host_check' value='static-list'/><nvpair id='pmkt-bench-fence-list' name='pcmk_host_list' value='pmkt-no-such-host'/></instance_attributes></primitive>" >/dev/null
    crm_attribute --type crm_config --name stonith-enabled --update true
fi
for r in $REQ $TGT; do # a domain left by an interrupted run
    if "${VIRSH[@]}" dominfo "$r" >/dev/null 2>&1 && ! crm_resource --resource "prmVMCTL_$r" --query-xml >/dev/null 2>&1; then
        "${VIRSH[@]}" destroy "$r" >/dev/null 2>&1 || true
        "${VIRSH[@]}" undefine "$r" >/dev/null 2>&1 || true
    fi
done

mkdir -p "$RUN"
rm -rf "$RUN/keys" "$RUN/domains" "$RUN/overlay" "$FVDIR" "$RUN/stonithd"
mkdir -p "$RUN/vmconnectd" "$RUN/domains" "$FVDIR" "$RUN/stonithd"
install -d -m 0700 "$RUN/keys"
vmctl_conf "$RUN/domains" "vm_start_op=(0 90s restart)" "vm_stop_op=(0 90s)" \
    "vm_monitor_op=(10s 30s restart)" >"$VMCTL_CONF"
cat >"$RUN/vm-stonithd.toml" <<CONF
socket = "$RUN/host.sock"
key_dir = "$RUN/keys"

[[cluster]]
name = "gc"
members = ["$REQ", "$TGT"]
CONF

# --- the requester's initramfs: the test image plus an appended archive with fence_virt ---
# (the kernel unpacks concatenated initramfs archives in order)
OV=$RUN/overlay
mkdir -p "$OV/usr/sbin"
cp /usr/sbin/fence_virt "$OV/usr/sbin/"
for lib in $(ldd /usr/sbin/fence_virt | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'); do
    mkdir -p "$OV$(dirname "$lib")"
    cp -L "$lib" "$OV$lib"
done
(cd "$OV" && find . -mindepth 1 | cpio -o -H newc --quiet | gzip -1) >"$RUN/overlay.cpio.gz"
cat "$PMKT_STATE/guest/initrd.img" "$RUN/overlay.cpio.gz" >"$RUN/initrd-fence-virt.img"

# --- domain XMLs: the test bed's, plus (requester) that initramfs and a serial port for fence_virt ---
VPORT=daemon "$TB/domain-xml.sh" "$REQ" "$RUN" |
    sed -e "s|<initrd>.*</initrd>|<initrd>$RUN/initrd-fence-virt.img</initrd>|" \
        -e "/<console type='unix'>/i\\
    <serial type='unix'>\\
      <source mode='bind' path='$FVDIR/$REQ.sock'/>\\
      <target port='1'/>\\
    </serial>" >"$RUN/domains/$REQ.xml"
if ! grep -q "$FVDIR/$REQ.sock" "$RUN/domains/$REQ.xml" || ! grep -q initrd-fence-virt "$RUN/domains/$REQ.xml"; then
    die "could not derive the requester's domain XML"
fi
VPORT=none "$TB/domain-xml.sh" "$TGT" "$RUN" >"$RUN/domains/$TGT.xml"

# --- host daemons: vm-connectd (host mode) and vm-stonithd with a fresh key ---
"$VMCTL" stonith keygen gc --config "$VMCTL_CONF" --key-dir "$RUN/keys" \
    --stonithd-config "$RUN/vm-stonithd.toml" -q >/dev/null
KEYFILE=$(find "$RUN/keys" -name 'gc-*.key' | head -n 1)
[ -n "$KEYFILE" ] || die "vm-ctl stonith keygen made no key"
rm -f "$RUN/host.sock"
setsid "$REL/vm-connectd" -t host -d "$RUN/vmconnectd" --socket "$RUN/host.sock" --node "$NODE" \
    >"$RUN/vm-connectd.log" 2>&1 </dev/null &
relay=$!
wait_until 20 test -S "$RUN/host.sock" || die "host vm-connectd did not start; see $RUN/vm-connectd.log"
setsid "$REL/vm-stonithd" --config "$RUN/vm-stonithd.toml" --state-dir "$RUN/stonithd" -v \
    >"$RUN/vm-stonithd.log" 2>&1 </dev/null &
stonithd=$!
registered() { "$REL/vm-connectd" status --json --socket "$RUN/host.sock" | grep -Eq '"service" *: *"stonith"'; }
wait_until 30 registered || die "vm-stonithd did not register; see $RUN/vm-stonithd.log"

# --- the guests, as vm-ctl resources ---
rm -f "$RUN/$REQ.console.log" "$RUN/$TGT.console.log"
in_pcmk=1
vmctl resource add "$REQ,$TGT" -a "$NODE" >/dev/null
vmctl resource start "$REQ,$TGT" --wait=180 >/dev/null
ready() { grep -qa PMKT-GUEST-READY "$RUN/$1.console.log"; }
wait_until 180 ready "$REQ" || die "guest $REQ did not boot; see $RUN/$REQ.console.log"
wait_until 180 ready "$TGT" || die "guest $TGT did not boot; see $RUN/$TGT.console.log"
crm_resource --wait --timeout=120s >/dev/null

# console: run a script in the requester's shell (its serial console)
con() { "$TBH" console "$RUN/$REQ.console.sock" "$1" "${2:-180}"; }
# shellcheck disable=SC2016 # runs in the guest's shell: the guest's clock in microseconds
US='us() { adjtimex | awk "/tv_sec/ { s = \$2 } /tv_usec/ { u = \$2 } END { print s * 1000000 + u }"; }'
out=$(con "mkdir -p /etc/pm-kvm-tools && umask 077 && cat > /etc/pm-kvm-tools/fence.key <<'KEY'
$(cat "$KEYFILE")
KEY
for i in \$(seq 60); do vm-connect ping >/dev/null 2>&1 && fence_vmstonith -o monitor >/dev/null 2>&1 && break; sleep 0.5; done
fence_vmstonith -o status -n $TGT" 120) || true
grep -qx 'Status: ON' <<<"$out" || die "fence_vmstonith in $REQ cannot reach vm-stonithd ($out); see $RUN/vm-stonithd.log"

# guest clock against the host clock: one reading at the start, one at the end
clock_mark() { # "HOST_US GUEST_US CONSOLE_US": host time = the middle of the console round trip
    local a b g
    a=$(date +%s%6N)
    g=$(con "$US; us" 30 | tr -dc 0-9)
    b=$(date +%s%6N)
    echo "$(((a + b) / 2)) $g $((b - a))"
}
read -r h0 g0 c0 < <(clock_mark)

median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
pct() { sort -n | awk -v p="$1" '{ a[NR] = $1 } END { i = int(NR * p / 100 + 0.999999); if (i < 1) i = 1; print a[i] }'; }
ms() { awk -v v="$1" 'BEGIN { printf "%.1f", v / 1000 }'; }
# timer overhead: `a=$(us); out=$(true); b=$(us)` (the $(...) subshell included, as in the runs)
calib=$(con "$US
for i in \$(seq 40); do
    a=\$(us); out=\$(true); b=\$(us); echo base \$((b - a))
    a=\$(us); out=\$(/bin/busybox true); b=\$(us); echo proc \$((b - a))
done" 300)
BASE=$(awk '/^base / { print $2 }' <<<"$calib" | median)
PROC=$(awk '/^proc / { print $2 }' <<<"$calib" | median)

stop_op() { # the VirtualDomain stop in the CIB's operation history: "CALL_ID RC EXEC_MS"
    local x
    x=$(cibadmin -Q --xpath "//node_state[@uname='$NODE']//lrm_resource[@id='$1']/lrm_rsc_op[@operation='stop']" 2>/dev/null) || return 1
    awk -v x="$x" 'BEGIN {
        n = split("call-id rc-code exec-time", k, " ")
        for (i = 1; i <= n; i++) { if (!match(x, k[i] "=\"[0-9-]*\"")) exit 1
            v = substr(x, RSTART + length(k[i]) + 2, RLENGTH - length(k[i]) - 3); printf "%s%s", v, (i < n ? " " : "\n") } }'
}
hard_stops() { grep -c "VirtualDomain($RSC_TGT).*Issuing forced shutdown (destroy)" "$PMKT_STATE/live/pacemaker.log" || true; }
state() { "${VIRSH[@]}" domstate "$1" 2>/dev/null | head -n 1 || true; } # nothing: no such domain
# one timed command in the guest: prints "T_US RC" then its output
timed() { con "$US; a=\$(us); out=\$($1 2>&1); rc=\$?; b=\$(us); echo T \$((b - a)) \$rc; echo \"\$out\"" "${2:-180}"; }
load() { cut -d' ' -f1-3 /proc/loadavg; }
PLOG=$PMKT_STATE/live/pacemaker.log SLOG=$RUN/vm-stonithd.log
size() { stat -c %s "$1" 2>/dev/null || echo 0; }
# epoch ms of the first line of FILE after byte OFFSET matching REGEX (pacemaker.log's local
# "Mon DD HH:MM:SS.mmm" time), or nothing
pcmk_ms() {
    local l
    # (grep -m 1 may leave tail to die of SIGPIPE: judge by the output, not the status)
    l=$(tail -c +"$(($2 + 1))" "$1" | grep -m 1 -E -- "$3") || true
    [ -n "$l" ] || return 0
    date -d "$(awk '{ print $1, $2, $3 }' <<<"$l")" +%s%3N
}
# where an off's time went, from the host's logs between byte offsets (pacemaker.log PLOG0..PLOG1,
# vm-stonithd's log from SLOG0): "STONITHD_MS TO_CIB_MS CIB_TO_STOP_MS STOP_RUN_MS REPLY_MS
# ELECTIONS" ("?" where a log line is missing)
breakdown() {
    local l fin el start w init ex elect r=()
    l=$(tail -c +"$(($2 + 1))" "$SLOG" | grep -m 1 -E "action=off .*outcome=Done") || true
    el=$(sed -n 's/.*elapsed_ms=\([0-9]*\).*/\1/p' <<<"$l")
    if [ -z "$el" ]; then echo "? ? ? ? ? ?"; return 0; fi
    fin=$(date -d "$(awk '{ print $1 }' <<<"$l")" +%s%3N)
    start=$((fin - el))
    w=$(pcmk_ms "$PLOG" "$1" "cib_perform_op.*force_stop-$RSC_TGT\" value=\"true\"")
    init=$(pcmk_ms "$PLOG" "$1" "Initiating stop operation ${RSC_TGT}_stop_0")
    ex=$(pcmk_ms "$PLOG" "$1" "$RSC_TGT stop \\(call [0-9]+, PID [0-9]+\\) exited")
    elect=$(tail -c +"$(($1 + 1))" "$PLOG" | head -c "$(($3 - $1))" | grep -c "origin=do_cib_replaced") || true
    if [ "${elect:-0}" -gt 0 ]; then elect=yes; else elect=no; fi
    r+=("$el")
    if [ -n "$w" ]; then r+=("$((w - start))"); else r+=("?"); fi
    if [ -n "$w" ] && [ -n "$init" ]; then r+=("$((init - w))"); else r+=("?"); fi
    if [ -n "$init" ] && [ -n "$ex" ]; then r+=("$((ex - init))"); else r+=("?"); fi
    if [ -n "$ex" ]; then r+=("$((fin - ex))"); else r+=("?"); fi
    echo "${r[*]} $elect"
}

say "== guest fencing through vm-stonithd: $RUNS x off/on, $STATUS_RUNS x status ($(nproc) cores, $(date -u +%F), load $(load))"
say "  requester $REQ (guest vm-connectd), target $TGT: ocf:pm-kvm-tools:VirtualDomain resources on $NODE"
say "  in-guest timer overhead $(ms "$BASE") ms (subtracted); busybox true, start to exit: $(ms $((PROC - BASE))) ms"
say "  off: agent = in the guest (agent start to exit); stop = VirtualDomain stop's exec-time (CIB);"
say "  host-side split from the logs: vm-stonithd's own elapsed time, of which request -> CIB write,"
say "  CIB write -> stop initiated by Pacemaker, stop running, stop exit -> vm-stonithd's reply (ms)"
printf '  %3s %9s %7s %9s %11s %7s %9s %7s %7s %9s %7s\n' run agent stop overhead vm-stonithd guest to-CIB CIB-stop stop-run reply elect
offs=() overs=() execs=() ons=() bd=()
for ((i = 1; i <= RUNS; i++)); do
    before=$(stop_op "$RSC_TGT" | cut -d' ' -f1) || before=""
    hard0=$(hard_stops)
    plog0=$(size "$PLOG") slog0=$(size "$SLOG")
    out=$(timed "fence_vmstonith -o off -n $TGT")
    read -r _ t rc <<<"$(grep '^T ' <<<"$out")"
    st=$(state "$TGT")
    if [ "$rc" != 0 ] || ! grep -q 'Success: Powered OFF' <<<"$out"; then
        die "run $i: fence_vmstonith -o off failed (rc $rc): $out"
    fi
    [ "$st" != running ] || die "run $i: the agent reported OFF while libvirt still runs $TGT"
    op=""
    for ((k = 0; k < 50; k++)); do
        op=$(stop_op "$RSC_TGT") && [ "${op%% *}" != "$before" ] && break
        op=""
        sleep 0.1
    done
    [ -n "$op" ] || die "run $i: no new stop of $RSC_TGT in the CIB's operation history"
    read -r _ orc ex <<<"$op"
    [ "$orc" = 0 ] || die "run $i: the stop's rc-code is $orc"
    [ "$(hard_stops)" -gt "$hard0" ] || die "run $i: the stop was not a hard power-off (no 'Issuing forced shutdown (destroy)' in the log)"
    plog1=$(size "$PLOG")
    agent=$((t - BASE))
    offs+=("$agent") execs+=("$((ex * 1000))") overs+=("$((agent - ex * 1000))")
    crm_resource --wait --timeout=60s >/dev/null
    out=$(timed "fence_vmstonith -o on -n $TGT")
    read -r _ t2 rc <<<"$(grep '^T ' <<<"$out")"
    [ "$rc" = 0 ] || die "run $i: fence_vmstonith -o on failed (rc $rc): $out"
    ons+=("$((t2 - BASE))")
    read -r b_el b_w b_s b_r b_p b_e <<<"$(breakdown "$plog0" "$slog0" "$plog1")"
    b_g="?"
    [ "$b_el" = "?" ] || b_g=$(awk -v a="$agent" -v e="$b_el" 'BEGIN { printf "%.0f", a / 1000 - e }')
    bd+=("$b_el $b_g $b_w $b_s $b_r $b_p $b_e")
    printf '  %3d %9s %7s %9s %11s %7s %9s %7s %7s %9s %7s\n' "$i" "$(ms "$agent")" "$ex" "$(ms $((agent - ex * 1000)))" \
        "$b_el" "$b_g" "$b_w" "$b_s" "$b_r" "$b_p" "$b_e"
    wait_until 180 ready "$TGT" || die "run $i: $TGT did not boot again"
    crm_resource --wait --timeout=60s >/dev/null
    sleep 2
done
m_off=$(printf '%s\n' "${offs[@]}" | median)
m_exec=$(printf '%s\n' "${execs[@]}" | median)
m_over=$(printf '%s\n' "${overs[@]}" | median)
max_over=$(printf '%s\n' "${overs[@]}" | sort -n | tail -n 1)
m_on=$(printf '%s\n' "${ons[@]}" | median)
say "  median: agent off $(ms "$m_off") ms, VirtualDomain stop $(ms "$m_exec") ms, overhead $(ms "$m_over") ms (max $(ms "$max_over") ms); agent on $(ms "$m_on") ms"
col() { printf '%s\n' "${bd[@]}" | awk -v c="$1" '$c != "?" { print $c }' | median; }
say "  median split: vm-stonithd $(col 1) ms (guest side $(col 2) ms); request -> CIB write $(col 3) ms, CIB write -> stop initiated $(col 4) ms, stop running $(col 5) ms, stop exit -> reply $(col 6) ms"
m_sched=$(col 4)
n_elect=$(printf '%s\n' "${bd[@]}" | awk '$7 == "yes"' | wc -l)
say "  runs where the CIB change made Pacemaker's controller re-run its election/join (do_cib_replaced): $n_elect of $RUNS"

slog0=$(size "$SLOG")
out=$(con "$US
for i in \$(seq $STATUS_RUNS); do a=\$(us); out=\$(fence_vmstonith -v -o status -n $TGT 2>&1); rc=\$?; b=\$(us); rt=\$(echo \"\$out\" | sed -n 's/.*done in \\([0-9.]*\\) ms (round trip).*/\\1/p'); echo status \$((b - a)) \$rc \$rt; done
for i in \$(seq $STATUS_RUNS); do a=\$(us); out=\$(vm-connect ping 2>&1); b=\$(us); echo ping \$((b - a)) \$out; done
for i in \$(seq 20); do a=\$(us); out=\$(fence_vmstonith -V 2>&1); b=\$(us); echo version \$((b - a)); done" 900)
st_ok=$(awk '$1 == "status" && $3 == 0' <<<"$out" | wc -l)
st=$(awk -v b="$BASE" '$1 == "status" { print $2 - b }' <<<"$out")
pg=$(awk -v b="$BASE" '$1 == "ping" { print $2 - b }' <<<"$out")
own=$(sed -n 's/^ping .* in \([0-9.]*\) ms.*/\1/p' <<<"$out" | median)
s50=$(pct 50 <<<"$st") s90=$(pct 90 <<<"$st") p50=$(pct 50 <<<"$pg") p90=$(pct 90 <<<"$pg")
say "  fence_vmstonith -o status ($st_ok/$STATUS_RUNS answered ON), process start to exit: p50 $(ms "$s50") ms, p90 $(ms "$s90") ms"
# the round trip the agent itself measures (-v): sealing, channel, host relay, vm-stonithd,
# crm_mon and back, opening the reply; process start-up excluded
rt=$(awk '$1 == "status" && $4 != "" { print $4 }' <<<"$out")
r50=$(pct 50 <<<"$rt") r90=$(pct 90 <<<"$rt")
say "    round trip the agent measures itself (sealing to opened reply, no process start): p50 ${r50:-?} ms, p90 ${r90:-?} ms"
h50=$(tail -c +"$((slog0 + 1))" "$SLOG" | sed -n 's/.*action=status .*elapsed_ms=\([0-9]*\).*/\1/p' | median)
say "    of which vm-stonithd's own handling (its elapsed_ms, host side): p50 ${h50:-?} ms"
say "  vm-connect ping, process start to exit: p50 $(ms "$p50") ms, p90 $(ms "$p90") ms (round trip it reports itself: p50 ${own:-?} ms)"
v50=$(awk -v b="$BASE" '$1 == "version" { print $2 - b }' <<<"$out" | median)
say "  for scale, fence_vmstonith -V (start-up alone, no request), start to exit: p50 $(ms "$v50") ms"

# --- why the CIB write waits: the same change on a Dummy resource, two ways ---
# vm-stonithd writes target-role=Stopped and the force_stop-<rsc> node attribute as one
# compare-and-swap replace of the whole CIB. Here the same two changes, as two ordinary
# modifications and as one whole-CIB replace, and a whole-CIB replace of target-role alone (no
# change in the nodes section), each timed from the write to "Initiating stop".
PROBE=bench-stonith-probe
say "== Pacemaker's reaction to ways of writing a stop (Dummy resource $PROBE, 3 x each)"
cibadmin --create -o resources -X "<primitive id='$PROBE' class='ocf' provider='pacemaker' type='Dummy'><meta_attributes id='$PROBE-meta'><nvpair id='$PROBE-meta-tr' name='target-role' value='Started'/></meta_attributes></primitive>"
probe_made=1
crm_resource --wait --timeout=60s >/dev/null
pr_mod=() pr_rep=() pr_role=()
probe_cib() { # the CIB with the changes made (stdin: the CIB; $1 = with the node attribute or not)
    python3 -c '
import sys, xml.etree.ElementTree as ET
rsc, node = sys.argv[1], sys.argv[2]
cib = ET.parse(sys.stdin).getroot()
for nv in cib.iter("nvpair"):
    if nv.get("id") == rsc + "-meta-tr":
        nv.set("value", "Stopped")
if sys.argv[3] == "yes":
    n = next(n for n in cib.find("configuration/nodes") if n.get("uname") == node)
    ia = n.find("instance_attributes")
    if ia is None:
        ia = ET.SubElement(n, "instance_attributes", {"id": "nodes-" + n.get("id")})
    ET.SubElement(ia, "nvpair", {"id": ia.get("id") + "-force_stop-" + rsc, "name": "force_stop-" + rsc, "value": "true"})
sys.stdout.write(ET.tostring(cib, encoding="unicode"))' "$PROBE" "$NODE" "$1"
}
for mode in modify replace role modify replace role modify replace role; do
    if [ "$mode" = modify ]; then
        off=$(size "$PLOG")
        w0=$(date +%s%3N)
        crm_attribute --node "$NODE" --name "force_stop-$PROBE" --update true >/dev/null
        cibadmin --modify -X "<nvpair id='$PROBE-meta-tr' name='target-role' value='Stopped'/>"
    else
        for k in 1 2 3; do # a compare-and-swap: the CIB may change under us (then: again)
            cibadmin -Q | probe_cib "$([ "$mode" = replace ] && echo yes || echo no)" >"$RUN/probe-cib.xml"
            off=$(size "$PLOG")
            w0=$(date +%s%3N)
            cibadmin --replace --xml-file "$RUN/probe-cib.xml" 2>/dev/null && break
            [ "$k" != 3 ] || die "probe: cibadmin --replace failed 3 times"
        done
    fi
    crm_resource --wait --timeout=60s >/dev/null
    init=$(pcmk_ms "$PLOG" "$off" "Initiating stop operation ${PROBE}_stop_0")
    if [ -n "$init" ]; then
        case $mode in
        modify) pr_mod+=("$((init - w0))") ;;
        replace) pr_rep+=("$((init - w0))") ;;
        role) pr_role+=("$((init - w0))") ;;
        esac
    fi
    crm_attribute --node "$NODE" --name "force_stop-$PROBE" --delete >/dev/null 2>&1 || true
    cibadmin --modify -X "<nvpair id='$PROBE-meta-tr' name='target-role' value='Started'/>"
    crm_resource --wait --timeout=60s >/dev/null
done
cibadmin --modify -X "<nvpair id='$PROBE-meta-tr' name='target-role' value='Stopped'/>"
crm_resource --wait --timeout=60s >/dev/null
cibadmin --delete -o resources -X "<primitive id='$PROBE'/>"
probe_made=0
say "  write -> stop initiated, target-role=Stopped and force_stop-$PROBE=true as"
say "    crm_attribute + cibadmin --modify:       ${pr_mod[*]:-?} ms"
say "    one whole-CIB cibadmin --replace:        ${pr_rep[*]:-?} ms"
say "  and target-role alone in a whole-CIB replace (nodes section unchanged): ${pr_role[*]:-?} ms"
m_pmod=$(printf '%s\n' "${pr_mod[@]:-}" | median) m_prep=$(printf '%s\n' "${pr_rep[@]:-}" | median)

# --- fence_virt through fence_virtd (serial listener, libvirt backend) ---
fv_ok=1 fv_why=""
case " ${MODES:-vmstonith fence_virt} " in
*" fence_virt "*) ;;
*) fv_ok=0 fv_why="MODES=\"${MODES:-}\" leaves it out" ;;
esac
[ "$fv_ok" = 0 ] ||
    say "== fence_virt -> fence_virtd (serial listener on /dev/ttyS1, libvirt backend), same guests (load $(load))"
fv_setup() { # the target out of Pacemaker, fence_virtd started; fv_ok=0 and fv_why on failure
    # the target leaves Pacemaker and runs as a plain persistent libvirt domain (fence_virtd
    # destroys and starts it itself; Pacemaker would otherwise restart or report it)
    vmctl resource stop "$TGT" --wait=120 >/dev/null
    vmctl resource delete "$TGT" --wait=120 >/dev/null
    rm -f "$RUN/$TGT.console.log"
    "${VIRSH[@]}" define "$RUN/domains/$TGT.xml" >/dev/null
    tgt_plain=1
    "${VIRSH[@]}" start "$TGT" >/dev/null
    wait_until 180 ready "$TGT" || die "plain domain $TGT did not boot"
    REQ_UUID=$("${VIRSH[@]}" domuuid "$REQ" | head -n 1)
    TGT_UUID=$("${VIRSH[@]}" domuuid "$TGT" | head -n 1)
    # The same authorisation as vm-stonithd's [[cluster]]: one group, requester and target. The
    # serial protocol carries no key (a request is trusted by the socket, i.e. the domain, it came
    # from), but fence_virtd 4.12 refuses to start unless the listener's key_file exists.
    head -c 512 /dev/urandom >"$RUN/fence_xvm.key"
    chmod 0600 "$RUN/fence_xvm.key"
    install -m 0600 /dev/null "$RUN/fence_virt.conf"
    cat >"$RUN/fence_virt.conf" <<CONF
fence_virtd {
	listener = "serial";
	backend = "libvirt";
	module_path = "/usr/lib/x86_64-linux-gnu/fence-virt";
}
listeners {
	serial {
		uri = "qemu:///system";
		path = "$FVDIR";
		mode = "serial";
		key_file = "$RUN/fence_xvm.key";
	}
}
backends {
	libvirt {
		uri = "qemu:///system";
	}
}
groups {
	group {
		name = "gc";
		uuid = "$REQ_UUID";
		uuid = "$REQ";
		uuid = "$TGT_UUID";
		uuid = "$TGT";
	}
}
CONF
    rm -f "$RUN/fence_virtd.pid"
    setsid /usr/sbin/fence_virtd -F -f "$RUN/fence_virt.conf" -p "$RUN/fence_virtd.pid" -d 1 \
        >"$RUN/fence_virtd.log" 2>&1 </dev/null &
    fvd=$!
    FV="fence_virt -D /dev/ttyS1 -t 60"
    out=$(con "[ -c /dev/ttyS1 ] || { echo 'no /dev/ttyS1 in the guest'; exit 3; }
    for i in \$(seq 30); do out=\$($FV -o status -n $TGT -t 5 2>&1); rc=\$?; [ \$rc = 0 ] && break; sleep 1; done
    echo \"\$out\"; echo rc=\$rc" 240) || true
    if ! alive "$fvd"; then
        fv_ok=0 fv_why="fence_virtd exited: $(tail -n 5 "$RUN/fence_virtd.log" | tr '\n' ' ')"
    elif ! grep -q '^rc=0' <<<"$out"; then
        fv_ok=0 fv_why="in-guest fence_virt -o status got no answer: $(tr '\n' ' ' <<<"$out"); fence_virtd log: $(tail -n 5 "$RUN/fence_virtd.log" | tr '\n' ' ')"
    fi
}
[ "$fv_ok" = 0 ] || fv_setup
vs=() vons=()
if [ "$fv_ok" = 1 ]; then
    say "  run  fence_virt-off-ms  fence_virt-on-ms"
    for ((i = 1; i <= RUNS; i++)); do
        out=$(timed "$FV -o off -n $TGT") || true
        read -r _ t rc <<<"$(grep '^T ' <<<"$out")"
        st=$(state "$TGT")
        [ "$rc" = 0 ] || { fv_ok=0 fv_why="run $i: fence_virt -o off failed (rc $rc): $(tr '\n' ' ' <<<"$out")"; break; }
        [ "$st" != running ] || { fv_ok=0 fv_why="run $i: fence_virt reported off while libvirt still runs $TGT"; break; }
        vs+=("$((t - BASE))")
        out=$(timed "$FV -o on -n $TGT") || true
        read -r _ t2 rc <<<"$(grep '^T ' <<<"$out")"
        [ "$rc" = 0 ] || { fv_ok=0 fv_why="run $i: fence_virt -o on failed (rc $rc): $(tr '\n' ' ' <<<"$out")"; break; }
        vons+=("$((t2 - BASE))")
        printf '  %3d  %17s  %16s\n' "$i" "$(ms $((t - BASE)))" "$(ms $((t2 - BASE)))"
        wait_until 180 ready "$TGT" || { fv_ok=0 fv_why="run $i: $TGT did not boot again"; break; }
        sleep 2
    done
fi
if [ "$fv_ok" = 1 ]; then
    out=$(con "$US
for i in \$(seq $STATUS_RUNS); do a=\$(us); out=\$($FV -o status -n $TGT 2>&1); rc=\$?; b=\$(us); echo status \$((b - a)) \$rc; done
for i in \$(seq 20); do a=\$(us); out=\$(fence_virt -V 2>&1); b=\$(us); echo version \$((b - a)); done" 900) || true
    fst_ok=$(awk '$1 == "status" && $3 == 0' <<<"$out" | wc -l)
    fst=$(awk -v b="$BASE" '$1 == "status" { print $2 - b }' <<<"$out")
    f50=$(pct 50 <<<"$fst") f90=$(pct 90 <<<"$fst")
    m_fv=$(printf '%s\n' "${vs[@]}" | median)
    m_fvon=$(printf '%s\n' "${vons[@]}" | median)
    say "  median: fence_virt off $(ms "$m_fv") ms, on $(ms "$m_fvon") ms"
    say "  fence_virt -o status ($fst_ok/$STATUS_RUNS answered ON), process start to exit: p50 $(ms "$f50") ms, p90 $(ms "$f90") ms"
    fv50=$(awk -v b="$BASE" '$1 == "version" { print $2 - b }' <<<"$out" | median)
    say "  for scale, fence_virt -V (start-up alone), start to exit: p50 $(ms "$fv50") ms; fence_virt's serial"
    say "  client drops the modem lines for 300 ms (its hangup) before every request"
    # the power-off itself, for the same comparison as agent minus VirtualDomain stop
    ds=()
    for ((i = 1; i <= RUNS; i++)); do
        d0=$(date +%s%6N)
        "${VIRSH[@]}" destroy "$TGT" >/dev/null
        ds+=("$(($(date +%s%6N) - d0))")
        "${VIRSH[@]}" start "$TGT" >/dev/null
        wait_until 180 ready "$TGT" || die "$TGT did not boot again"
        sleep 2
    done
    m_ds=$(printf '%s\n' "${ds[@]}" | median)
    say "  the power-off itself, \`virsh destroy\` on the host (process start included): $(for d in "${ds[@]}"; do printf '%s ' "$(ms "$d")"; done)ms, median $(ms "$m_ds") ms"
    say "  fence_virt off minus virsh destroy: median $(ms $((m_fv - m_ds))) ms"
else
    say "  fence_virt/fence_virtd: NOT MEASURED: $fv_why"
fi

read -r h1 g1 c1 < <(clock_mark)
rate=$(awk -v h0="$h0" -v g0="$g0" -v h1="$h1" -v g1="$g1" 'BEGIN { printf "%+.0f", ((g1 - g0) / (h1 - h0) - 1) * 1e6 }')
err=$(awk -v a="$c0" -v b="$c1" -v h0="$h0" -v h1="$h1" 'BEGIN { printf "%.0f", (a + b) / 2 / (h1 - h0) * 1e6 }')

say "== summary (median of $RUNS runs; status: $STATUS_RUNS runs; load $(load))"
say "  guest clock vs host clock over $(awk -v a="$h0" -v b="$h1" 'BEGIN { printf "%.0f", (b - a) / 1e6 }') s: ${rate} ppm (resolution +/- ${err} ppm)"
printf '  %-58s %12s %12s\n' "" vm-stonithd fence_virtd
printf '  %-58s %12s %12s\n' "off, agent start to exit (ms)" "$(ms "$m_off")" "$([ "$fv_ok" = 1 ] && ms "$m_fv" || echo n/a)"
printf '  %-58s %12s %12s\n' "  the power-off itself: VirtualDomain stop / virsh destroy" "$(ms "$m_exec")" "$([ "$fv_ok" = 1 ] && ms "$m_ds" || echo n/a)"
printf '  %-58s %12s %12s\n' "  agent minus the power-off (target < 300 ms)" "$(ms "$m_over")" "$([ "$fv_ok" = 1 ] && ms $((m_fv - m_ds)) || echo n/a)"
printf '  %-58s %12s %12s\n' "  of which CIB write -> stop initiated by Pacemaker (ms)" "${m_sched:-?}" "-"
printf '  %-58s %12s %12s\n' "  (probe: write -> stop, modify / whole-CIB replace, ms)" "${m_pmod:-?} / ${m_prep:-?}" "-"
printf '  %-58s %12s %12s\n' "on, agent start to exit (ms)" "$(ms "$m_on")" "$([ "$fv_ok" = 1 ] && ms "$m_fvon" || echo n/a)"
printf '  %-58s %12s %12s\n' "status round trip, agent's own measure, p50 (target < 50 ms)" "${r50:-?}" "-"
printf '  %-58s %12s %12s\n' "status, process start to exit, p50" "$(ms "$s50")" "$([ "$fv_ok" = 1 ] && ms "$f50" || echo n/a)"
printf '  %-58s %12s %12s\n' "  of which vm-stonithd's own handling, p50 (ms)" "${h50:-?}" "-"
printf '  %-58s %12s %12s\n' "status, process start to exit, p90" "$(ms "$s90")" "$([ "$fv_ok" = 1 ] && ms "$f90" || echo n/a)"
printf '  %-58s %12s %12s\n' "vm-connect ping, process start to exit, p50 (scale)" "$(ms "$p50")" "-"
over_ok=$(awk -v o="$m_over" 'BEGIN { print (o < 300000) ? "met" : "NOT met" }')
st_met=$(awk -v s="${r50:-999}" 'BEGIN { print (s < 50) ? "met" : "NOT met" }')
st_met_all=$(awk -v s="$s50" 'BEGIN { print (s < 50000) ? "met" : "NOT met" }')
say "  target off overhead < 300 ms: $over_ok; target status round trip p50 < 50 ms: $st_met (process start included: $st_met_all)"
