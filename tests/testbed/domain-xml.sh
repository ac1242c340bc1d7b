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
# type='qemu' (TCG): KVM does not boot guests on the CI machines. A fixed <uuid> derived from
# the name, so a guest keeps its identity across starts.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
NAME=${1:?usage: domain-xml.sh NAME [RUNDIR [LOGDIR]]}
RUNDIR=${2:-$PMKT_STATE/run}
LOGDIR=${3:-$RUNDIR}
IMG=${IMG:-$PMKT_STATE/guest}
case $NAME in *[!A-Za-z0-9_.-]*) die "guest name '$NAME' has characters outside [A-Za-z0-9_.-]" ;; esac
h=$(printf '%s' "pmkt-guest-$NAME" | md5sum | cut -c1-32)
UUID=${h:0:8}-${h:8:4}-4${h:13:3}-8${h:17:3}-${h:20:12}
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
    <cmdline>console=ttyS0 quiet panic=-1 pmkt.name=$NAME pmkt.vport=${VPORT:-echo}</cmdline>
  </os>
  <cpu mode='custom' match='exact'><model fallback='allow'>qemu64</model></cpu>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
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
