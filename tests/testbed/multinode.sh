#!/bin/bash
# The multi-node tier: a 2- or 3-node Pacemaker cluster on this one machine. Every node is a set
# of namespaces (mount + net + uts) held open by a "holder" process; nodes talk over veths on a
# private bridge (10.99.0.0/24, multicast flooded: guests on different nodes reach each other
# through a multicast group) in a "hub" network namespace; nothing is added to this machine's
# own network. Each node has its own corosync, pacemakerd and libvirtd (--listen, for live
# migration), its own /run, /dev/shm, /var/lib/{pacemaker,corosync,libvirt}, /etc/{corosync,
# libvirt,hosts}; /tmp and the PID namespace are shared (guest images and VM configs sit on
# "shared storage" in $PMKT_STATE/mn/vm; the fence agent kills a node's processes by PID).
#
# Usage: multinode.sh COMMAND
#   up                 NODES=2|3 (default 3) nodes, corosync + pacemakerd on each, a real fence
#                      device (stonith:fence_pmkt_nskill, stonith-enabled=true; STONITH=0 leaves
#                      fencing off), libvirtd on each (LIBVIRT=0 skips). Idempotent: on a cluster already up, it powers
#                      on the nodes that were powered off (fenced) and waits for all online.
#                      What a killed or failed start left (no up.done mark, a node's namespaces
#                      or daemons missing, nodes not online in 90 s) is torn down (FAST) and the
#                      cluster started afresh, with a log line saying why.
#   down               stop everything by PID (FAST=1: SIGKILL, no graceful stop), then the
#                      holders: the kernel drops the nodes' mounts, veths and namespaces.
#   status             crm_mon from the first node that answers
#   answering          the name of that node (exit 1 when none answers)
#   nodes              the node names
#   exec NODE CMD...   run CMD inside NODE (crm_mon, cibadmin, virsh, ... talk to NODE's daemons)
#   bg NODE NAME CMD...  start a daemon inside NODE (PID in $MN/NODE/NAME.pid)
#   stopbg NODE NAME   stop it by PID
#   pids NODE          every PID living in NODE
#   crash NODE         SIGKILL every process of NODE (a power cut, no fencing involved)
#   poweron NODE       boot a node that is down: fresh /run and /dev/shm, corosync, pacemakerd,
#                      libvirtd
set -euo pipefail
. "$(dirname "$0")/lib.sh"
MN=$PMKT_STATE/mn
SUBNET=10.99.0
VIRSH=(virsh -c qemu:///system)

nodes() { cat "$MN/nodes" 2>/dev/null; }
# known_nodes: every node with a state directory, listed or not (a start killed before it wrote
# the list, or after a holder started, must still be torn down)
known_nodes() {
    { nodes | tr ' ' '\n'; find "$MN" -mindepth 1 -maxdepth 1 -type d -name 'n[0-9]*' -printf '%f\n' 2>/dev/null; } |
        grep -x 'n[0-9]*' | sort -u
    return 0
}
node_ip() { echo "$SUBNET.1${1#n}"; }
# holder NODE: PID of the node's namespace holder. Refuses a stale PID file whose PID now
# belongs to a process in this machine's own mount namespace: entering that would act on the host.
holder() {
    local h
    h=$(cat "$MN/$1/holder.pid" 2>/dev/null) || return 1
    alive "$h" || return 1
    if [ "$(readlink "/proc/$h/ns/mnt")" = "$(readlink /proc/self/ns/mnt)" ]; then
        log "holder of $1: stale pid $h"
        return 1
    fi
    echo "$h"
}
# nsenter -r: the node's root directory too. Entering a mount namespace resets the root to the
# namespace's own; in a chroot (a pristine root, tests/testbed/pristine.sh) that is this
# machine's /, and the node ran this machine's binaries and configuration, not the chroot's.
nexec() {
    local n=$1 h
    shift
    h=$(holder "$n") || die "node $n is not up"
    nsenter -t "$h" -m -n -u -r --wd="$PWD" -- "$@"
}
nbg() {
    local n=$1 name=$2 h
    shift 2
    h=$(holder "$n") || die "node $n is not up"
    start_bg "$MN/$n/$name.pid" "$MN/$n/$name.out" nsenter -t "$h" -m -n -u -r -- "$@"
}
nstop() { stop_pidfile "$MN/$1/$2.pid" "${3:-30}"; }
pids_in() {
    local h ns
    h=$(holder "$1") || return 0
    ns=$(readlink "/proc/$h/ns/net") || return 0
    # (ls exits 2 when a process vanishes while it lists: not an error here)
    { ls -l /proc/[0-9]*/ns/net 2>/dev/null || true; } | awk -v ns="$ns" -v h="$h" '
        $NF == ns { split($(NF-2), a, "/"); if (a[3] != h) print a[3] }'
    return 0
}
node_down() { [ -z "$(pids_in "$1")" ]; }

# a freshly booted node's volatile state (RAM): empty /run and /dev/shm with the dirs daemons need
wipe_volatile() {
    nexec "$1" sh -c 'rm -rf /run/* /dev/shm/* 2>/dev/null
        mkdir -p /run/lock /run/crm /run/resource-agents /run/libvirt /run/pmkt/vmconnectd
        chmod 1777 /run/lock; chown hacluster:haclient /run/crm; chmod 750 /run/crm'
}

corosync_conf() {
    local m
    printf 'totem {\n    version: 2\n    cluster_name: pmkt-mn\n    transport: knet\n'
    printf '    crypto_cipher: none\n    crypto_hash: none\n    token: %s\n}\nnodelist {\n' "${TOKEN:-1000}"
    for m in $(nodes); do
        printf '    node {\n        name: %s\n        nodeid: %s\n        ring0_addr: %s\n    }\n' \
            "$m" "${m#n}" "$(node_ip "$m")"
    done
    printf '}\nquorum {\n    provider: corosync_votequorum\n'
    [ "$(nodes | wc -w)" = 2 ] && printf '    two_node: 1\n'
    printf '}\nlogging {\n    to_stderr: no\n    to_logfile: yes\n    logfile: %s\n' "$MN/$1/corosync.log"
    printf '    to_syslog: no\n    timestamp: on\n}\n'
}

start_cluster_daemons() {
    local n=$1
    nbg "$n" corosync corosync -f
    nbg "$n" pacemakerd env PCMK_logfile=/var/log/pacemaker/pacemaker.log PCMK_logfacility=none \
        /usr/sbin/pacemakerd
}

start_libvirtd() {
    local n=$1
    pid_alive "$MN/$n/libvirtd.pid" && return 0
    nbg "$n" libvirtd /usr/sbin/libvirtd --listen
}
wait_libvirtd() {
    wait_until 90 nexec "$1" "${VIRSH[@]}" version ||
        die "$1: libvirtd did not answer; see $MN/$1/libvirtd.log"
}

all_online() {
    local n out list
    list=$(nodes | xargs)
    for n in $(nodes); do
        out=$(nexec "$n" crm_mon --one-shot --output-as=xml 2>/dev/null) || return 1
        grep -q '<current_dc present="true"' <<<"$out" || return 1
        for m in $list; do grep -q "<node name=\"$m\"[^>]* online=\"true\"" <<<"$out" || return 1; done
    done
}

# why_not_whole: why the test bed that is up is not one that an `up` finished (prints nothing
# when it is). A start that was killed or failed half-way leaves the hub, some holders and some
# daemons: powering nodes on cannot repair that, a fresh start can.
why_not_whole() {
    local n d
    [ -f "$MN/up.done" ] || { echo "an earlier start did not finish"; return 0; }
    [ -n "$(nodes)" ] || { echo "its node list is missing"; return 0; }
    for n in $(nodes); do
        holder "$n" >/dev/null || { echo "node $n's namespaces are gone"; return 0; }
        # a node without any process is powered off (fenced, crashed): up powers it on
        node_down "$n" && continue
        for d in corosync pacemakerd; do
            pid_alive "$MN/$n/$d.pid" || { echo "$n runs without its $d"; return 0; }
        done
    done
}

up() {
    need_root
    local t0 n h why
    if pid_alive "$MN/hub.pid"; then
        why=$(why_not_whole)
        if [ -z "$why" ]; then
            # up means every node up: one powered off (fenced) since boots again
            for n in $(nodes); do
                if node_down "$n"; then poweron "$n"; fi
            done
            if wait_until 90 all_online; then
                log "multi-node cluster already up ($(nodes | xargs))"
                return 0
            fi
            why="not every node came online within 90 s"
        fi
        log "multi-node: the test bed left running is not usable ($why): tearing it down and starting afresh"
    else
        # (a down leaves the state directory but stops everything: say so only when not)
        for n in $(known_nodes); do
            if holder "$n" >/dev/null; then
                log "multi-node: the hub is gone but node $n still runs (an earlier run killed half-way): tearing it down"
                break
            fi
        done
    fi
    if [ -d "$MN" ]; then
        FAST=1 down >/dev/null 2>&1
        # a holder that survived would keep its node's mounts of $MN: never delete under it
        for n in $(known_nodes); do
            ! holder "$n" >/dev/null || die "$n's holder survived the tear-down (pid $(cat "$MN/$n/holder.pid"))"
        done
    fi
    local count=${NODES:-3}
    case $count in 2 | 3) ;; *) die "NODES must be 2 or 3" ;; esac
    rm -rf "$MN"
    mkdir -p "$MN/sbin-extra" "$MN/vm"
    seq -f 'n%g' 1 "$count" | xargs >"$MN/nodes"
    install -m 0755 "$TESTBED_DIR/fence_pmkt_nskill" "$MN/sbin-extra/"
    t0=$(now)

    start_bg "$MN/hub.pid" "$MN/hub.out" unshare -n sh -c \
        "ip link set lo up && ip link add name br0 type bridge mcast_snooping 0 && ip link set br0 up &&
         touch '$MN/hub.ready' && exec sleep infinity"
    wait_until 10 test -f "$MN/hub.ready" || die "hub namespace did not come up: $(cat "$MN/hub.out")"

    # The mount points of every node's own directories. The packages make some only in their
    # recommended or systemd parts: libvirt-daemon without libvirt-daemon-system makes none of
    # /var/{lib,cache,log}/libvirt. Empty directories, as those packages would have made them.
    mkdir -p /var/lib/pacemaker /var/log/pacemaker /var/lib/corosync /etc/corosync /etc/libvirt \
        /var/lib/libvirt /var/cache/libvirt /var/log/libvirt
    [ -e /etc/hosts ] || die "/etc/hosts is missing (every Debian installation has one)"
    for n in $(nodes); do
        local D=$MN/$n
        mkdir -p "$D"/lib-pacemaker/{cib,pengine,blackbox,cores} "$D"/log-pacemaker/bundles \
            "$D/lib-corosync" "$D/etc-corosync" "$D/log-libvirt/qemu" \
            "$D/etc-libvirt" "$D/lib-libvirt" "$D/cache-libvirt"
        chown -R hacluster:haclient "$D/lib-pacemaker" "$D/log-pacemaker"
        chmod 750 "$D"/lib-pacemaker/*
        chmod 770 "$D/log-pacemaker"
        seed_cib "$([ "${STONITH:-1}" = 1 ] && echo true || echo false)" >"$D/lib-pacemaker/cib/cib.xml"
        chown hacluster:haclient "$D/lib-pacemaker/cib/cib.xml"
        chmod 600 "$D/lib-pacemaker/cib/cib.xml"
        corosync_conf "$n" >"$D/etc-corosync/corosync.conf"
        cp -a /etc/libvirt/. "$D/etc-libvirt/"
        cp -a /var/lib/libvirt/. "$D/lib-libvirt/"
        cp -a /var/cache/libvirt/. "$D/cache-libvirt/"
        qemu_conf >"$D/etc-libvirt/qemu.conf"
        # plain TCP without auth, reachable only on the test bed's private bridge: what
        # VirtualDomain's migration URI qemu+tcp://<node>/system needs
        printf 'log_outputs = "3:file:%s"\nlisten_tls = 0\nlisten_tcp = 1\nauth_tcp = "none"\n' \
            "$D/libvirtd.log" >"$D/etc-libvirt/libvirtd.conf"
        { cat /etc/hosts; for m in $(nodes); do echo "$(node_ip "$m") $m"; done; } >"$D/hosts"
        passwd_with_libvirt_qemu "$D"
        start_bg "$D/holder.pid" "$D/holder.out" unshare -m -n -u --propagation private sh -c "
            set -e
            hostname $n
            mount -t tmpfs -o mode=0755 tmpfs /run
            mount -t tmpfs -o mode=1777 tmpfs /dev/shm
            mount --bind $D/lib-pacemaker /var/lib/pacemaker
            mount --bind $D/log-pacemaker /var/log/pacemaker
            mount --bind $D/lib-corosync /var/lib/corosync
            mount --bind $D/etc-corosync /etc/corosync
            mount --bind $D/etc-libvirt /etc/libvirt
            mount --bind $D/lib-libvirt /var/lib/libvirt
            mount --bind $D/cache-libvirt /var/cache/libvirt
            mount --bind $D/log-libvirt /var/log/libvirt
            mount --bind $D/passwd /etc/passwd
            mount --bind $D/group /etc/group
            mount --bind $D/hosts /etc/hosts
            mount -t overlay overlay -o lowerdir=$MN/sbin-extra:/usr/sbin /usr/sbin
            ip link set lo up
            touch $D/ready
            exec sleep infinity"
    done
    for n in $(nodes); do
        wait_until 10 test -f "$MN/$n/ready" || die "$n: namespace set-up failed: $(cat "$MN/$n/holder.out")"
        h=$(holder "$n")
        nsenter -t "$(cat "$MN/hub.pid")" -n ip link add name "$n" type veth peer name eth0 netns "$h"
        nsenter -t "$(cat "$MN/hub.pid")" -n ip link set "$n" master br0 up
        nexec "$n" ip addr add "$(node_ip "$n")/24" dev eth0
        nexec "$n" ip link set eth0 up
        # multicast leaves through the bridge: guests' links between nodes (libvirt
        # <interface type='mcast'>) join their group on it, wherever the guest runs
        nexec "$n" ip route add 224.0.0.0/4 dev eth0
        wipe_volatile "$n"
    done
    log "multi-node: namespaces and network for $count nodes after $(elapsed "$t0") s"

    for n in $(nodes); do start_cluster_daemons "$n"; done
    if [ "${LIBVIRT:-1}" = 1 ]; then
        # The first libvirtd on a machine probes QEMU for ~8 s (twice that for two at once on two
        # cores): start one, then give the others its capability cache.
        local first
        first=$(nodes | awk '{ print $1 }')
        start_libvirtd "$first"
        wait_libvirtd "$first"
        for n in $(nodes); do
            [ "$n" = "$first" ] && continue
            cp -a "$MN/$first/cache-libvirt/." "$MN/$n/cache-libvirt/"
            start_libvirtd "$n"
        done
        for n in $(nodes); do wait_libvirtd "$n"; done
    fi
    wait_until 120 all_online || die "not all nodes online with a DC; see $MN/n*/log-pacemaker/pacemaker.log"
    if [ "${STONITH:-1}" = 1 ]; then
        nexec n1 cibadmin --create -o resources -X "<primitive id='st-nskill' class='stonith' type='fence_pmkt_nskill'>
  <instance_attributes id='st-nskill-ia'>
    <nvpair id='st-nskill-hl' name='pcmk_host_list' value='$(nodes | xargs)'/>
    <nvpair id='st-nskill-hc' name='pcmk_host_check' value='static-list'/>
    <nvpair id='st-nskill-state' name='pmkt_state' value='$PMKT_STATE'/>
  </instance_attributes>
  <operations><op id='st-nskill-mon' name='monitor' interval='60s'/></operations>
</primitive>"
    fi
    # the mark of a finished start: without it, the next up starts afresh
    touch "$MN/up.done"
    log "multi-node cluster up: $(nodes | xargs) online after $(elapsed "$t0") s"
}

down() {
    local t0 n p
    t0=$(now)
    [ -d "$MN" ] || return 0
    if [ "${FAST:-0}" = 1 ]; then
        for n in $(known_nodes); do
            p=$(pids_in "$n" | xargs)
            # shellcheck disable=SC2086 # one pid per word
            [ -n "$p" ] && kill -KILL $p 2>/dev/null
            rm -f "$MN/$n"/{pacemakerd,corosync,libvirtd}.pid
        done
    else
        # Maintenance mode first: Pacemaker then neither stops resources on shutdown (a
        # VirtualDomain stop is a slow graceful shutdown) nor restarts the guests we destroy.
        # Stopping a node while the DC has actions in flight on it makes the DC wait for them
        # to time out (80 s seen), hence the wait for an idle cluster.
        for n in $(nodes); do
            if pid_alive "$MN/$n/pacemakerd.pid" &&
                nexec "$n" crm_attribute --type crm_config --name maintenance-mode --update true >/dev/null 2>&1; then
                nexec "$n" crm_resource --wait --timeout=60s >/dev/null 2>&1 || true
                break
            fi
        done
        for n in $(nodes); do
            if pid_alive "$MN/$n/libvirtd.pid"; then
                for dom in $(nexec "$n" "${VIRSH[@]}" list --name 2>/dev/null); do
                    nexec "$n" "${VIRSH[@]}" destroy "$dom" >/dev/null 2>&1 || true
                done
            fi
        done
        # all at once: one after the other, resources would bounce from node to node
        for n in $(nodes); do nstop "$n" pacemakerd 120 & done
        wait
        for n in $(nodes); do nstop "$n" corosync 30 & done
        wait
        for n in $(nodes); do nstop "$n" libvirtd 30; done
    fi
    for n in $(known_nodes); do
        p=$(pids_in "$n" | xargs)
        if [ -n "$p" ]; then
            log "$n: killing leftovers $p"
            # shellcheck disable=SC2086
            kill -KILL $p 2>/dev/null || true
            sleep 0.3
        fi
        nstop "$n" holder 10
    done
    stop_pidfile "$MN/hub.pid" 10
    rm -f "$MN/hub.ready" "$MN/up.done"
    log "multi-node cluster down after $(elapsed "$t0") s"
}

# the first node whose cluster answers (a fenced node does not)
answering() {
    local n
    for n in $(nodes); do
        if holder "$n" >/dev/null && nexec "$n" crm_mon --one-shot --output-as=xml >/dev/null 2>&1; then
            echo "$n"
            return 0
        fi
    done
    return 1
}

crash() {
    local n=$1 p
    holder "$n" >/dev/null || die "node $n is not up"
    p=$(pids_in "$n" | xargs)
    # shellcheck disable=SC2086
    [ -n "$p" ] && kill -KILL $p
    rm -f "$MN/$n"/{pacemakerd,corosync,libvirtd}.pid
    log "$n crashed (killed: ${p:-nothing})"
}

poweron() {
    local n=$1
    node_down "$n" || die "$n still has processes (fence not finished?): $(pids_in "$n" | xargs)"
    rm -f "$MN/$n"/{pacemakerd,corosync,libvirtd}.pid
    wipe_volatile "$n"
    nexec "$n" ip link set eth0 up
    start_cluster_daemons "$n"
    if [ "${LIBVIRT:-1}" = 1 ]; then start_libvirtd "$n"; wait_libvirtd "$n"; fi
    log "$n powered on"
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case $cmd in
up) up ;;
down) down ;;
status)
    if n=$(answering); then nexec "$n" crm_mon --one-shot; exit 0; fi
    echo "multi-node cluster: down"
    exit 1 ;;
answering) answering ;;
nodes) nodes ;;
exec) [ $# -ge 2 ] || die "usage: $0 exec NODE CMD..."; nexec "$@" ;;
bg) [ $# -ge 3 ] || die "usage: $0 bg NODE NAME CMD..."; nbg "$@" ;;
stopbg) [ $# -ge 2 ] || die "usage: $0 stopbg NODE NAME"; nstop "$1" "$2" ;;
pids) pids_in "${1:?node}" ;;
crash) crash "${1:?node}" ;;
poweron) poweron "${1:?node}" ;;
*) die "usage: $0 up|down|status|answering|nodes|exec|bg|stopbg|pids|crash|poweron (see the header)" ;;
esac
