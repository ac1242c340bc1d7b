#!/bin/bash
# The live-cluster tier: a real single-node corosync + pacemakerd on this machine, on loopback,
# without systemd.
#
# Usage: live-cluster.sh up|down|status|reset
#   up      start corosync (knet on 127.0.0.1) and pacemakerd with a seeded CIB
#           (stonith-enabled=false, dc-deadtime=2s): the node is online with a DC in ~5 s.
#           Idempotent: a running test-bed cluster is left as it is.
#   down    stop pacemakerd (which stops its resources) then corosync, by recorded PID.
#   status  print crm_mon's view; exit 1 when the cluster is not up.
#   reset   erase every resource and constraint, and reset cluster options, on a running
#           cluster (used between tests); guests still running are powered off, not shut down.
#
# It takes over this machine's Pacemaker state directory (/var/lib/pacemaker/cib is wiped at
# every `up`) and refuses to start if a cluster it did not start is running.
# State: $PMKT_STATE/live (corosync.conf, logs, PID files). Node name: `uname -n`.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
D=$PMKT_STATE/live
NODE=$(uname -n)
CIBDIR=/var/lib/pacemaker/cib

running() { pid_alive "$D/pacemakerd.pid" && pid_alive "$D/corosync.pid"; }
dc_online() {
    local out
    out=$(crm_mon --one-shot --output-as=xml 2>/dev/null) || return 1
    grep -q "<current_dc present=\"true\"" <<<"$out" || return 1
    grep -q "<node name=\"$NODE\"[^>]* online=\"true\"" <<<"$out"
}

up() {
    need_root
    if running; then
        wait_until 60 dc_online || die "live cluster is running but has no DC; see $D/pacemaker.log"
        log "live cluster already up (node $NODE)"
        return 0
    fi
    # leftovers of a half-started cluster of ours
    stop_pidfile "$D/pacemakerd.pid" 60
    stop_pidfile "$D/corosync.pid" 30
    if corosync-cfgtool -s >/dev/null 2>&1; then
        die "a corosync the test bed did not start is running on this machine; stop it first"
    fi
    mkdir -p "$D"
    cat >"$D/corosync.conf" <<CONF
totem {
    version: 2
    cluster_name: pmkt-live
    transport: knet
    crypto_cipher: none
    crypto_hash: none
    token: 1000
}
nodelist {
    node {
        name: $NODE
        nodeid: 1
        ring0_addr: 127.0.0.1
    }
}
quorum {
    provider: corosync_votequorum
}
logging {
    to_stderr: no
    to_logfile: yes
    logfile: $D/corosync.log
    to_syslog: no
    timestamp: on
}
CONF
    # /run is empty on a machine booted without systemd-tmpfiles: what the daemons and the
    # resource agents (HA_RSCTMP, lock files) expect there
    mkdir -p "$CIBDIR" /run/crm /run/resource-agents /run/lock
    chmod 1777 /run/lock
    rm -f "$CIBDIR"/cib*
    seed_cib false >"$CIBDIR/cib.xml"
    chown hacluster:haclient "$CIBDIR/cib.xml" /run/crm
    chmod 600 "$CIBDIR/cib.xml"
    : >"$D/pacemaker.log"
    chown hacluster:haclient "$D/pacemaker.log"
    local t0
    t0=$(now)
    start_bg "$D/corosync.pid" "$D/corosync.out" corosync -f -c "$D/corosync.conf"
    wait_until 20 corosync-quorumtool -s || die "corosync did not become quorate; see $D/corosync.log"
    start_bg "$D/pacemakerd.pid" "$D/pacemakerd.out" \
        env PCMK_logfile="$D/pacemaker.log" PCMK_logfacility=none /usr/sbin/pacemakerd
    wait_until 90 dc_online || die "pacemaker did not elect a DC within 90 s; see $D/pacemaker.log"
    log "live cluster up: node $NODE online with a DC after $(elapsed "$t0") s"
}

down() {
    local t0
    t0=$(now)
    [ -f "$D/pacemakerd.pid" ] || [ -f "$D/corosync.pid" ] || return 0
    if running; then
        # Maintenance mode: pacemakerd then stops without stopping resources (guests are
        # destroyed by libvirtd.sh down, quickly, instead of shut down gracefully one by one).
        # Stopping while the DC has actions in flight makes pacemakerd wait for them to time
        # out: let the cluster settle first.
        crm_attribute --type crm_config --name maintenance-mode --update true >/dev/null 2>&1 || true
        crm_resource --wait --timeout=60s >/dev/null 2>&1 || true
    fi
    stop_pidfile "$D/pacemakerd.pid" 120
    stop_pidfile "$D/corosync.pid" 30
    log "live cluster down after $(elapsed "$t0") s"
}

# the ids of the configured VirtualDomain resources (either provider; cibadmin fails on none)
virtual_domains() {
    { cibadmin --query --xpath "//primitive[@type='VirtualDomain']" 2>/dev/null || true; } |
        sed -n 's/^ *<primitive [^>]*\bid="\([^"]*\)".*/\1/p'
}

# the transient force_stop-* node attributes (attrd writes them to the status section)
force_stop_attrs() {
    cibadmin --query --scope status 2>/dev/null | grep -o 'name="force_stop-[^"]*"' |
        sed 's/^name="//; s/"$//' | sort -u || true
}
no_force_stop_attrs() { [ -z "$(force_stop_attrs)" ]; }

reset() {
    running || die "live cluster is not up"
    # An earlier test's guests are throwaway, but a VirtualDomain stop asks the guest to shut
    # down and waits up to the stop timeout: a guest still booting ignores the request, ~55 s
    # each (nearly half the live tier's time). The project's agent stops with a hard power-off
    # where the transient node attribute force_stop-<rsc> is set (agents/ocf/VirtualDomain);
    # the attributes go once the stops are done.
    local rsc hard
    hard=$(virtual_domains)
    for rsc in $hard; do
        crm_attribute --node "$NODE" --lifetime reboot --name "force_stop-$rsc" --update true
    done
    # Fencing off before the resources go: a test that turned it on had a fence device, and
    # with stonith-enabled=true and no device left the scheduler refuses to act ("Resource
    # start-up disabled since no STONITH resources have been defined"), so the wait below ran
    # into its 120 s timeout after every such test.
    crm_attribute --type crm_config --name stonith-enabled --update false
    # constraints first: they refer to resources, and the CIB refuses dangling references
    cibadmin --replace -o constraints -X '<constraints/>'
    cibadmin --replace -o resources -X '<resources/>'
    if [ -n "$hard" ]; then
        crm_resource --wait --timeout=120s || log "reset: the cluster did not settle within 120 s"
    fi
    # No transient force_stop attribute outlives the reset, whoever set it: one left behind
    # would make a later test's "the fence was a hard power-off" check pass on it.
    local name
    for name in $(force_stop_attrs); do
        crm_attribute --node "$NODE" --lifetime reboot --name "$name" --delete >/dev/null
    done
    wait_until 10 no_force_stop_attrs || die "reset: force_stop attributes left: $(force_stop_attrs)"
    cibadmin --replace -o rsc_defaults -X '<rsc_defaults/>' 2>/dev/null || true
    crm_attribute --type crm_config --name maintenance-mode --update false
}

case ${1:-} in
up) up ;;
down) down ;;
status) running || { echo "live cluster: down"; exit 1; }; crm_mon --one-shot ;;
reset) reset ;;
*) die "usage: $0 up|down|status|reset" ;;
esac
