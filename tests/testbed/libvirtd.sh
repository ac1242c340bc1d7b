#!/bin/bash
# The libvirt tier: a monolithic libvirtd serving qemu:///system on this machine, without
# systemd and without touching /etc.
#
# Usage: libvirtd.sh up|down|status
#   up      start libvirtd in a private mount namespace where /etc/libvirt (with a test-bed
#           qemu.conf), /etc/passwd and /etc/group (with the libvirt-qemu user that
#           libvirt-daemon-system would have created) are bind mounts of copies in
#           $PMKT_STATE/libvirt. Idempotent.
#   down    destroy every domain it runs (QEMU processes outlive libvirtd otherwise), then stop
#           libvirtd by recorded PID.
# The first start on a machine probes QEMU's capabilities (~8 s); later starts reuse
# /var/cache/libvirt (~0.3 s), and the multi-node test bed copies that cache into its nodes.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
D=$PMKT_STATE/libvirt
VIRSH=(virsh -c qemu:///system)

up() {
    need_root
    if pid_alive "$D/libvirtd.pid"; then
        wait_until 30 "${VIRSH[@]}" version || die "test-bed libvirtd is running but not answering"
        log "libvirtd already up"
        return 0
    fi
    if [ -S /run/libvirt/libvirt-sock ] && "${VIRSH[@]}" version >/dev/null 2>&1; then
        die "a libvirtd the test bed did not start is serving qemu:///system; stop it first"
    fi
    # libvirt-daemon without libvirt-daemon-system (which pulls systemd) makes none of these,
    # and /run is empty on a machine that has just booted without systemd-tmpfiles
    mkdir -p "$D/etc-libvirt" /etc/libvirt /run/libvirt /run/lock /var/lib/libvirt/qemu \
        /var/log/libvirt/qemu /var/cache/libvirt
    cp -a /etc/libvirt/. "$D/etc-libvirt/"
    qemu_conf >"$D/etc-libvirt/qemu.conf"
    echo "log_outputs = \"3:file:$D/libvirtd.log\"" >"$D/etc-libvirt/libvirtd.conf"
    passwd_with_libvirt_qemu "$D"
    local t0
    t0=$(now)
    start_bg "$D/libvirtd.pid" "$D/libvirtd.out" unshare -m --propagation private sh -c "
        mount --bind '$D/etc-libvirt' /etc/libvirt &&
        mount --bind '$D/passwd' /etc/passwd &&
        mount --bind '$D/group' /etc/group &&
        exec /usr/sbin/libvirtd"
    wait_until 60 "${VIRSH[@]}" version || die "libvirtd did not answer within 60 s; see $D/libvirtd.log"
    log "libvirtd up after $(elapsed "$t0") s"
}

down() {
    [ -f "$D/libvirtd.pid" ] || return 0
    if pid_alive "$D/libvirtd.pid"; then
        local dom
        for dom in $("${VIRSH[@]}" list --name 2>/dev/null); do
            "${VIRSH[@]}" destroy "$dom" >/dev/null 2>&1 || log "could not destroy domain $dom"
        done
    fi
    stop_pidfile "$D/libvirtd.pid" 30
    log "libvirtd down"
}

case ${1:-} in
up) up ;;
down) down ;;
status) pid_alive "$D/libvirtd.pid" || { echo "libvirtd: down"; exit 1; }; "${VIRSH[@]}" list --all ;;
*) die "usage: $0 up|down|status" ;;
esac
