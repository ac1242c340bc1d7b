#!/bin/bash
# Install the Debian 12 packages each test tier needs; packages already present are skipped.
#
# Usage: install.sh [TIER...]   TIER = build cib live libvirt guest gc multinode lint all (default all),
#                               or fencevirt (the benchmarks' fence_virt/fence_virtd; not in all),
#                               or pristine (debootstrap for pristine.sh; not in all),
#                               or piuparts (the pkg tier's piuparts.sh; not in all),
#                               or project (not in all: needs the build tier and a toolchain):
#                               builds this tree's Debian packages (cargo xtask deb) and installs
#                               the host package pm-kvm-tools on this machine with apt, as an
#                               operator installs it on a host node (the test-bed host nodes share
#                               this machine's /usr, so every node runs the packaged files)
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
    # only recommends it: a minimal Debian without it fails with "cannot open Scrt1.o").
    # build-essential (dpkg-checkbuilddeps requires it of every Debian build), debhelper,
    # dpkg-dev, lintian, resource-agents (the OCF agents' man pages come from their meta-data):
    # cargo xtask deb (debian/); found missing by the pristine tier
    build) echo pkg-config libvirt-dev libssl-dev gcc libc6-dev musl-tools build-essential debhelper dpkg-dev lintian resource-agents ;;
    cib) echo pacemaker pacemaker-cli-utils crmsh pcs resource-agents ;;
    live) echo pacemaker pacemaker-cli-utils corosync resource-agents cluster-glue ;;
    libvirt) echo libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86 ;;
    # xz-utils: kernel modules may come xz-compressed from the kernel package
    guest) echo busybox-static cpio qemu-utils socat xz-utils ;;
    # jq: guestcluster.sh reads `vm-ctl status --output json`
    gc) echo debootstrap busybox-static cpio xz-utils jq ;;
    # tests/testbed/pristine.sh (not in all): the pristine root is made with debootstrap
    pristine) echo debootstrap ;;
    piuparts) echo piuparts dpkg-dev ;; # tests/testbed/piuparts.sh (the pkg tier)
    # procps: ps, for leftovers.sh (not in a minimal Debian); nftables: the guest-cluster story
    # breaks a host node's pings in that node's network namespace
    multinode) echo iproute2 util-linux iputils-ping procps nftables ;;
    lint) echo shellcheck systemd ;; # systemd: systemd-analyze verify of agents/systemd
    # bookworm: the libvirt backend and serial listener are in fence-virtd
    fencevirt) echo fence-virtd fence-virt ;;
    project) ;; # not a distribution package: see install_project
    *) die "unknown tier '$1' (build cib live libvirt guest gc multinode lint fencevirt pristine piuparts project all)" ;;
    esac
}

tiers=("$@")
[ ${#tiers[@]} -gt 0 ] || tiers=(all)
expanded=()
for t in "${tiers[@]}"; do
    case $t in
    all) expanded+=(build cib live libvirt guest gc multinode lint) ;;
    project) expanded+=(build project) ;; # the build tier has what cargo xtask deb needs
    *) expanded+=("$t") ;;
    esac
done
tiers=("${expanded[@]}")

# A run killed while dpkg was unpacking or configuring (a sandbox interrupted half-way) leaves
# packages half-installed, and every later apt-get refuses to work until they are configured:
# finish that first (a no-op when dpkg's journal is clean).
if [ -n "$(dpkg --audit 2>/dev/null)" ]; then
    log "install: dpkg was interrupted earlier; dpkg --configure -a"
    DEBIAN_FRONTEND=noninteractive dpkg --configure -a || die "dpkg --configure -a failed"
fi

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
# install_project: the project as users get it. The Debian packages are built from this tree
# (cargo xtask deb: release binaries, agents, units, man pages) and the host package is installed
# with apt, which resolves its dependencies. The live tiers and the sandbox run what it installs:
# /usr/sbin/vm-*, /usr/lib/ocf/resource.d/pm-kvm-tools/*, /etc/vm-ctl.conf. The version does not
# change between builds of one tree, so the package is reinstalled every time (a new build
# replaces the files of the last one).
install_project() {
    case " ${tiers[*]} " in *" project "*) ;; *) return 0 ;; esac
    local t0 deb
    t0=$(now)
    build_debs
    deb=$(project_deb pm-kvm-tools)
    log "install: $deb"
    apt-get -q -o Dpkg::Use-Pty=0 install -y --reinstall --no-install-recommends "$deb" >"$PMKT_STATE/install-project.log" 2>&1 || {
        tail -n 20 "$PMKT_STATE/install-project.log" >&2
        die "apt-get install $deb failed (log: $PMKT_STATE/install-project.log)"
    }
    log "install: pm-kvm-tools $(dpkg-query -W -f='${Version}' pm-kvm-tools) installed in $(elapsed "$t0") s"
}
if [ ${#missing[@]} -eq 0 ]; then
    log "install: every package for '${tiers[*]}' is present"
    install_project
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
log "install: done in $(elapsed "$t0") s"
install_project
