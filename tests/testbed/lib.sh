# shellcheck shell=bash
# Shared helpers of the pm-kvm-tools test bed. Source it; do not run it.
#
# Every piece of the test bed keeps its state under $PMKT_STATE (default /tmp/pmkt): config
# files, logs, sockets and one PID file per process it started. Processes are stopped by those
# recorded PIDs only (never by name), and every "up" is idempotent.

PMKT_STATE=${PMKT_STATE:-/tmp/pmkt}
# Downloads that survive between runs on one machine (the guest kernel package).
PMKT_CACHE=${PMKT_CACHE:-/var/tmp/pmkt-cache}
TESTBED_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$TESTBED_DIR/../.." && pwd)
export PMKT_STATE PMKT_CACHE REPO_DIR

now() { date +%s.%N; }
# elapsed T0 -> seconds since T0 with two decimals
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
log() { printf '[testbed] %s\n' "$*" >&2; }
die() { printf '[testbed] error: %s\n' "$*" >&2; exit 1; }

need_root() { [ "$(id -u)" = 0 ] || die "the test bed needs root (it starts corosync, pacemakerd, libvirtd and namespaces)"; }

# alive PID: running and not a zombie. Orphans are reaped lazily by PID 1 on the CI machine,
# so `kill -0` alone is true for a dead daemon for a second or two.
alive() {
    [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null || return 1
    local state
    state=$(awk '{ sub(/^.*\) /, ""); print $1 }' "/proc/$1/stat" 2>/dev/null) || return 1
    [ "$state" != Z ]
}

# pid_alive FILE: the PID recorded in FILE is alive
pid_alive() { [ -f "$1" ] && alive "$(cat "$1")"; }

# start_bg PIDFILE LOGFILE CMD... : CMD in its own session, output to LOGFILE, PID to PIDFILE
start_bg() {
    local pidfile=$1 logfile=$2
    shift 2
    setsid "$@" >"$logfile" 2>&1 </dev/null &
    echo $! >"$pidfile"
    disown $! 2>/dev/null || true
}

# stop_pidfile PIDFILE [TIMEOUT_S]: SIGTERM the recorded PID, wait, SIGKILL if it will not go
stop_pidfile() {
    local f=$1 to=${2:-30} pid i
    [ -f "$f" ] || return 0
    pid=$(cat "$f")
    if alive "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < to * 10; i++)); do alive "$pid" || break; sleep 0.1; done
        if alive "$pid"; then
            log "$f: pid $pid ignored SIGTERM for ${to}s, killing"
            kill -KILL "$pid" 2>/dev/null || true
            for ((i = 0; i < 50; i++)); do alive "$pid" || break; sleep 0.1; done
        fi
    fi
    rm -f "$f"
}

# wait_until TIMEOUT_S CMD... : poll CMD every 0.1 s until it succeeds
wait_until() {
    # bounded by the clock, not by a count of tries: a check may itself take a while (a console
    # round trip into a TCG guest, crm_mon on a busy node)
    local end=$((${EPOCHREALTIME/./} + $1 * 1000000))
    shift
    while :; do
        "$@" >/dev/null 2>&1 && return 0
        [ "${EPOCHREALTIME/./}" -lt "$end" ] || return 1
        sleep 0.1
    done
}

# vmctl_conf DIR [KEY=VALUE...]: the test bed's vm-ctl.conf (vm-ctl-base.conf, which the Rust
# tests use too) for the domain XML files in DIR; each KEY=VALUE replaces the base's KEY or, if
# the base has none, is added at the end (no key twice: vm-ctl warns about that)
vmctl_conf() {
    local dir=$1 line kv
    shift
    echo "vm_cfg_dir=$dir"
    while IFS= read -r line; do
        for kv in "$@"; do
            if [ "${kv%%=*}" = "${line%%=*}" ]; then
                line=$kv
                break
            fi
        done
        echo "$line"
    done <"$TESTBED_DIR/vm-ctl-base.conf"
    for kv in "$@"; do
        grep -q "^${kv%%=*}=" "$TESTBED_DIR/vm-ctl-base.conf" || echo "$kv"
    done
}

# seed_cib STONITH(true|false): a CIB that lets a fresh cluster elect its DC in ~2 s
# (dc-deadtime defaults to 20 s). No crm_feature_set: the CIB manager fills in its own, and a
# foreign one makes it reject every update.
seed_cib() {
    cat <<XML
<cib validate-with="pacemaker-3.9" epoch="1" num_updates="0" admin_epoch="0">
  <configuration>
    <crm_config>
      <cluster_property_set id="cib-bootstrap-options">
        <nvpair id="cib-bootstrap-options-stonith-enabled" name="stonith-enabled" value="$1"/>
        <nvpair id="cib-bootstrap-options-dc-deadtime" name="dc-deadtime" value="2s"/>
        <nvpair id="cib-bootstrap-options-cluster-recheck-interval" name="cluster-recheck-interval" value="1min"/>
      </cluster_property_set>
    </crm_config>
    <nodes/>
    <resources/>
    <constraints/>
  </configuration>
  <status/>
</cib>
XML
}

# qemu.conf for a test-bed libvirtd: QEMU runs as root without per-VM namespaces, cgroups or
# security labels (none of which work, or matter, on a CI VM without systemd), and writes its
# stdio to a file (no virtlogd).
qemu_conf() {
    cat <<'EOF_QC'
user = "root"
group = "root"
dynamic_ownership = 0
namespaces = [ ]
stdio_handler = "file"
security_driver = "none"
remember_owner = 0
cgroup_controllers = [ ]
EOF_QC
}

# passwd/group copies with the libvirt-qemu user: libvirtd resolves that default user before it
# reads qemu.conf, and without libvirt-daemon-system (which would pull systemd) it does not exist.
# The copies are bind-mounted over /etc/passwd and /etc/group for libvirtd only.
passwd_with_libvirt_qemu() {
    local dir=$1
    cp /etc/passwd "$dir/passwd"
    cp /etc/group "$dir/group"
    grep -q '^libvirt-qemu:' "$dir/passwd" ||
        echo 'libvirt-qemu:x:64055:64055:Libvirt Qemu:/var/lib/libvirt:/usr/sbin/nologin' >>"$dir/passwd"
    grep -q '^libvirt-qemu:' "$dir/group" || echo 'libvirt-qemu:x:64055:' >>"$dir/group"
    grep -q '^kvm:' "$dir/group" || echo 'kvm:x:64056:' >>"$dir/group"
}

# rsc_role [CMD-PREFIX...] RSC -> "Started node1" / "Stopped" / "Starting node1" from crm_mon XML
# (never --locate: it calls a pending start "running").
rsc_role() {
    local rsc=${*: -1}
    local prefix=("${@:1:$#-1}")
    "${prefix[@]}" crm_mon --one-shot --output-as=xml 2>/dev/null | awk -v r="$rsc" '
        $0 ~ "<resource id=\"" r "\"" {
            match($0, /role="[A-Za-z]*"/); role = substr($0, RSTART + 6, RLENGTH - 7); inr = 1
            if ($0 ~ /\/>[[:space:]]*$/) { print role; exit }
            next
        }
        inr && /<node name=/ { match($0, /name="[^"]*"/); print role, substr($0, RSTART + 6, RLENGTH - 7); exit }
        inr && /<\/resource>/ { print role; exit }'
    return 0
}

# The guest-side binaries (cargo xtask guest-bins: static; how each is linked, and why, is in
# xtask/src/main.rs), shared by the busybox image and the guest cluster's Debian image.
GUEST_BIN_DIR=$REPO_DIR/target/guest-bins
GUEST_BINS=(vm-connectd vm-connect fence_vmstonith)

# is_static FILE: runs without a dynamic loader (static or static-pie)
is_static() { ! ldd "$1" >/dev/null 2>&1 || ldd "$1" 2>&1 | grep -q 'statically linked'; }

# need_musl_target: the toolchain's x86_64-unknown-linux-musl target, which the static guest
# binaries (and so the guest package) are built for; added when missing, as .ci/run does
need_musl_target() {
    if ! rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-musl; then
        log "adding the Rust target x86_64-unknown-linux-musl (the static guest binaries)"
        rustup target add x86_64-unknown-linux-musl
    fi
}

# build_guest_bins: (re)build them into $GUEST_BIN_DIR and check each is static
build_guest_bins() {
    need_musl_target
    (cd "$REPO_DIR" && cargo xtask guest-bins >/dev/null) || die "building the guest binaries failed"
    check_guest_bins
}

# check_guest_bins: all present and static
check_guest_bins() {
    local b
    for b in "${GUEST_BINS[@]}"; do
        [ -x "$GUEST_BIN_DIR/$b" ] || die "missing guest binary $GUEST_BIN_DIR/$b (cargo xtask guest-bins)"
        is_static "$GUEST_BIN_DIR/$b" || die "$GUEST_BIN_DIR/$b is not statically linked"
    done
}

# The project's Debian packages (cargo xtask deb; debian/): pm-kvm-tools for host nodes,
# pm-kvm-tools-guest for guests. The test bed installs them as users do.
DEB_DIR=$REPO_DIR/target/debian

# build_debs: (re)build both packages into $DEB_DIR (cargo rebuilds only what changed)
build_debs() {
    local t0
    t0=$(now)
    need_musl_target
    mkdir -p "$PMKT_STATE"
    (cd "$REPO_DIR" && cargo xtask deb >"$PMKT_STATE/deb.log" 2>&1) || {
        tail -n 30 "$PMKT_STATE/deb.log" >&2
        die "building the Debian packages failed (cargo xtask deb; log: $PMKT_STATE/deb.log)"
    }
    log "Debian packages built in $(elapsed "$t0") s: $(find "$DEB_DIR" -maxdepth 1 -name '*.deb' -printf '%f ')"
}

# project_deb NAME: the path of package NAME's .deb in $DEB_DIR (exactly one must be there)
project_deb() {
    local debs=() n=$1
    mapfile -t debs < <(find "$DEB_DIR" -maxdepth 1 -name "${n}_*.deb" 2>/dev/null)
    [ ${#debs[@]} = 1 ] || die "expected one ${n}_*.deb in $DEB_DIR, found ${#debs[@]} (cargo xtask deb)"
    echo "${debs[0]}"
}
