#!/bin/bash
# Install the Debian 12 packages each test tier needs; packages already present are skipped.
#
# Usage: install.sh [TIER...]   TIER = build cib live libvirt guest gc multinode lint all (default all),
#                               or fencevirt (the benchmarks' fence_virt/fence_virtd; not in all),
#                               or pristine (debootstrap for pristine.sh; not in all)
#
# --no-install-recommends on purpose: libvirt-daemon-system would pull systemd/systemd-sysv,
# polkit and iptables onto a machine that has no systemd. Without it there is no libvirt-qemu
# user; libvirtd.sh handles that without touching /etc.
# Pitfall: the stock image carries qemu-utils 10 from bookworm-backports, which Breaks
# bookworm's qemu-system-x86 7.2. Installing qemu-system-x86 alone first removes it; bookworm's
# qemu-utils is then installed in a second step.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_root
export DEBIAN_FRONTEND=noninteractive

pkgs_for() {
    case $1 in
    # libc6-dev: the C library's start files and link stubs every Rust binary links with (gcc
    # only recommends it: a minimal Debian without it fails with "cannot open Scrt1.o")
    build) echo pkg-config libvirt-dev libssl-dev gcc libc6-dev musl-tools ;;
    cib) echo pacemaker pacemaker-cli-utils crmsh pcs resource-agents ;;
    live) echo pacemaker pacemaker-cli-utils corosync resource-agents cluster-glue ;;
    libvirt) echo libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86 ;;
    # xz-utils: kernel modules may come xz-compressed from the kernel package
    guest) echo busybox-static cpio qemu-utils socat xz-utils ;;
    gc) echo debootstrap busybox-static cpio xz-utils ;;
    # tests/testbed/pristine.sh (not in all): the pristine root is made with debootstrap
    pristine) echo debootstrap ;;
    # procps: ps, for leftovers.sh (not in a minimal Debian)
    multinode) echo iproute2 util-linux iputils-ping procps ;;
    lint) echo shellcheck systemd ;; # systemd: systemd-analyze verify of agents/systemd
    # bookworm: the libvirt backend and serial listener are in fence-virtd
    fencevirt) echo fence-virtd fence-virt ;;
    *) die "unknown tier '$1' (build cib live libvirt guest gc multinode lint fencevirt pristine all)" ;;
    esac
}

tiers=("$@")
[ ${#tiers[@]} -gt 0 ] || tiers=(all)
expanded=()
for t in "${tiers[@]}"; do
    case $t in all) expanded+=(build cib live libvirt guest gc multinode lint) ;; *) expanded+=("$t") ;; esac
done
tiers=("${expanded[@]}")

# missing_pkgs: the requested tiers' packages not installed, each once, in order
missing_pkgs() {
    local tier p
    for tier in "${tiers[@]}"; do
        for p in $(pkgs_for "$tier"); do
            dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || echo "$p"
        done
    done | awk '!seen[$0]++'
}
mapfile -t missing < <(missing_pkgs)
# The project's own host-side OCF agents, where a package would put them: the live tiers run
# guests as ocf:pm-kvm-tools:VirtualDomain (vm-ctl.conf's vm_ocf) and the daemons as
# ocf:pm-kvm-tools:vm-connectd / vm-stonithd clones.
install_project_agents() {
    local dir=/usr/lib/ocf/resource.d/pm-kvm-tools
    case " ${tiers[*]} " in
    *" live "* | *" multinode "*)
        install -D -m 0755 "$REPO_DIR/agents/ocf/VirtualDomain" "$dir/VirtualDomain"
        install -D -m 0755 "$REPO_DIR/agents/ocf/vm-daemon" "$dir/vm-daemon"
        ln -sfn vm-daemon "$dir/vm-connectd"
        ln -sfn vm-daemon "$dir/vm-stonithd"
        ;;
    esac
}
if [ ${#missing[@]} -eq 0 ]; then
    log "install: every package for '${tiers[*]}' is present"
    install_project_agents
    exit 0
fi
log "install: ${missing[*]}"
t0=$(now)
apt_get() { apt-get -q -o Dpkg::Use-Pty=0 "$@"; }
first=() later=()
for p in "${missing[@]}"; do
    case $p in qemu-utils) later+=("$p") ;; *) first+=("$p") ;; esac
done
install_all() {
    if [ ${#first[@]} -gt 0 ]; then apt_get install -y --no-install-recommends "${first[@]}" || return 1; fi
    if [ ${#later[@]} -gt 0 ]; then apt_get install -y --no-install-recommends "${later[@]}" || return 1; fi
}
# Package lists may be missing or stale (a superseded version 404s): refresh once and retry.
if ! apt-cache show "${missing[0]}" >/dev/null 2>&1; then apt_get update; fi
if ! install_all; then
    log "install failed; refreshing the package lists and retrying once"
    apt_get update
    install_all || die "apt-get install failed for: ${missing[*]}"
fi
# An install can remove a package that was present (the pitfall above: qemu-system-x86 removes
# backports' qemu-utils): whatever is missing now is installed in a second round.
mapfile -t missing < <(missing_pkgs)
if [ ${#missing[@]} -gt 0 ]; then
    log "install: ${missing[*]} (removed by the first round)"
    apt_get install -y --no-install-recommends "${missing[@]}" || die "apt-get install failed for: ${missing[*]}"
fi
install_project_agents
log "install: done in $(elapsed "$t0") s"
