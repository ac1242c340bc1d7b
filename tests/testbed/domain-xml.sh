#!/bin/bash
# Print the libvirt domain XML of a test-bed guest (the file VirtualDomain's config= names).
#
# Usage: domain-xml.sh NAME [RUNDIR [LOGDIR]]
#   RUNDIR  where QEMU creates the guest's sockets (default $PMKT_STATE/run):
#             RUNDIR/NAME.console.sock     serial console (a shell; tests type commands into it)
#             RUNDIR/vmconnectd/NAME.sock  the production-shaped vmconnectd channel:
#               <channel type='unix'><source mode='bind' .../><target type='virtio' name='vmconnectd'/>
#             (mode='bind': QEMU is the server; the host side connects, and must reconnect
#             after every guest start, the socket is recreated)
#   LOGDIR  where the console transcript goes (default RUNDIR)
# Env: VPORT=echo|daemon|none (guest's use of the port, see guest-image.sh), MEM_MIB (default 192),
#      IMG (kernel+initrd dir, default $PMKT_STATE/guest).
#   For the Debian guest-cluster image (gc-image.sh):
#      ROOT_IMG  root disk, attached read-only (the guest's writes go to a tmpfs overlay: safe
#                to share between guests and to live-migrate without shared-storage rules)
#      SEED_IMG  the guest's read-only seed disk (its identity and configuration)
#      MCAST=ADDR:PORT MAC=MAC  a virtio NIC on a multicast group: guests on any node of the
#                test bed reach each other through it, before and after a migration
#      CMDLINE   kernel command line (default: the busybox image's)
#      TB_MIB    TCG translation cache (QEMU's default of 1 GiB makes each guest ~1.5 GiB RSS)
#      SERIAL2   a second serial port (the guest's ttyS1) on a unix socket at this path, for
#                fence_virt's serial mode (the comparison benchmark)
#      ON_REBOOT what a reboot inside the guest does: destroy (default: the domain stops, as a
#                panic does with panic=-1) or restart (libvirt's default: QEMU resets the guest
#                and keeps running, its sockets too)
# type='qemu' (TCG): KVM does not boot guests on the CI machines. A fixed <uuid> derived from
# the name, so a guest keeps its identity across starts.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
NAME=${1:?usage: domain-xml.sh NAME [RUNDIR [LOGDIR]]}
RUNDIR=${2:-$PMKT_STATE/run}
LOGDIR=${3:-$RUNDIR}
IMG=${IMG:-$PMKT_STATE/guest}
case ${ON_REBOOT:-destroy} in destroy | restart) ;; *) die "ON_REBOOT must be destroy or restart" ;; esac
case $NAME in *[!A-Za-z0-9_.-]*) die "guest name '$NAME' has characters outside [A-Za-z0-9_.-]" ;; esac
h=$(printf '%s' "pmkt-guest-$NAME" | md5sum | cut -c1-32)
UUID=${h:0:8}-${h:8:4}-4${h:13:3}-8${h:17:3}-${h:20:12}
disk() {
    [ -n "$2" ] || return 0
    printf "    <disk type='file' device='disk'><driver name='qemu' type='raw' cache='unsafe'/>"
    printf "<source file='%s'/><target dev='%s' bus='virtio'/><readonly/></disk>\n" "$2" "$1"
}
# the Debian image powers off on ACPI's power button (VirtualDomain's graceful stop)
features() {
    [ -n "${TB_MIB:-}" ] || return 0
    printf "  <features><acpi/><tcg><tb-cache unit='MiB'>%s</tb-cache></tcg></features>\n" "$TB_MIB"
}
serial2() {
    [ -n "${SERIAL2:-}" ] || return 0
    printf "    <serial type='unix'><source mode='bind' path='%s'/><target port='1'/></serial>\n" "$SERIAL2"
}
nic() {
    [ -n "${MCAST:-}" ] || return 0
    printf "    <interface type='mcast'><mac address='%s'/>" "${MAC:?MAC is needed with MCAST}"
    printf "<source address='%s' port='%s'/><model type='virtio'/></interface>\n" "${MCAST%:*}" "${MCAST##*:}"
}
cat <<XML
<domain type='qemu'>
  <name>$NAME</name>
  <uuid>$UUID</uuid>
  <memory unit='MiB'>${MEM_MIB:-192}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <kernel>$IMG/vmlinuz</kernel>
    <initrd>$IMG/initrd.img</initrd>
    <cmdline>${CMDLINE:-console=ttyS0 quiet panic=-1 pmkt.name=$NAME pmkt.vport=${VPORT:-echo}}</cmdline>
  </os>
$(features)
  <cpu mode='custom' match='exact'><model fallback='allow'>qemu64</model></cpu>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>${ON_REBOOT:-destroy}</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
$(disk vda "${ROOT_IMG:-}"; disk vdb "${SEED_IMG:-}"; nic; serial2)
    <serial type='unix'>
      <source mode='bind' path='$RUNDIR/$NAME.console.sock'/>
      <log file='$LOGDIR/$NAME.console.log' append='off'/>
      <target port='0'/>
    </serial>
    <console type='unix'>
      <source mode='bind' path='$RUNDIR/$NAME.console.sock'/>
      <target type='serial' port='0'/>
    </console>
    <controller type='virtio-serial' index='0'/>
    <channel type='unix'>
      <source mode='bind' path='$RUNDIR/vmconnectd/$NAME.sock'/>
      <target type='virtio' name='vmconnectd'/>
    </channel>
    <memballoon model='none'/>
  </devices>
</domain>
XML
