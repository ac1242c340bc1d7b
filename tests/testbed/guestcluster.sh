#!/bin/bash
# The whole story: a Pacemaker cluster inside two TCG guests fences its peer through the host
# cluster, with real parts only, and prints a timeline.
#
# Usage: guestcluster.sh up        host cluster, host daemons, guests and guest cluster (idempotent)
#        guestcluster.sh scenario  the failures below, each timed, on a cluster `up` made
#        guestcluster.sh run       up + scenario + down (what the guest tier runs)
#        guestcluster.sh bench [N] up, then N link cuts with both guests on n1 (no migration), down:
#                                  bench/guest-failover.sh runs it with FENCE=vmstonith and fence_virt
#        guestcluster.sh reboot [N] on a cluster `up`: g2 reboots itself N times, each timed until its
#                                  vm-connectd answers again (docs/benchmarks.md, vm_liveness_timeout)
#        guestcluster.sh down      stop everything by PID (the multi-node test bed's down)
#        guestcluster.sh gexec GUEST CMD [TIMEOUT]   run CMD in a guest over its serial console
#
# The host side is the multi-node test bed (3 nodes in namespaces, real fencing, a libvirtd per
# node) set up the way docs/operations.md tells users: a real pingd clone, vm-connectd and
# vm-stonithd as cluster clones (ocf:pm-kvm-tools:vm-connectd / vm-stonithd), one key for the
# guest cluster "gc", and the guests g1, g2 added and started by vm-ctl as
# ocf:pm-kvm-tools:VirtualDomain resources. The guests boot the Debian image of gc-image.sh
# (read-only root, RAM overlay, a per-guest read-only seed disk with its identity, corosync.conf
# and the cluster's key). They run guest-mode vm-connectd and a two-node corosync + Pacemaker
# cluster over a multicast link (libvirt <interface type='mcast'>) that follows them across
# nodes and migrations; its fencing is fence_vmstonith, configured from
# `vm-ctl stonith guest-config --syntax cibadmin`, and a Dummy resource that prefers g2.
# vm-managerd runs as a host clone too (ocf:pm-kvm-tools:vm-managerd) with a rule file that
# exposes pingd's attribute to g1 and g2, and the guest cluster runs the vm-client clone that
# `vm-ctl stonith client-config --syntax cibadmin` prints, with its rule: the Dummy never runs
# on a guest whose host's ping set is red (or that has no answer from its host).
#
# The scenario: g2 live-migrates to another node; g2's host loses its ping targets (an nftables
# rule in that node's network namespace only rejects its ICMP echo requests): pingd lowers its
# attribute there, vm-managerd answers g2's held request with "red", vm-client sets it as g2's
# node attribute and the guest cluster moves the Dummy to g1 without any fence (both clusters'
# fence histories and g2's boot id are checked); the targets come back and so does the Dummy.
# Then g2's cluster link is cut and g1's cluster
# fences it through g1's host (the request crosses to the node g2 runs on); g1 live-migrates
# while the guest cluster runs, and fences g2 again from its new host; then g2's whole host node
# is powered off by the host cluster's fencing, and the host cluster restarts g2 elsewhere while
# the guest cluster fences and recovers. Every step is checked (the script fails on the first
# one that does not happen in time) and the timeline goes to $GC/timeline.txt.
#
# Env: PMKT_STATE (lib.sh; the sandbox sets its own), TOKEN (guest corosync token, ms, default
# 3000), KEEP=1 (run: leave everything up, also after a failure).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
MNSH=$TESTBED_DIR/multinode.sh
MN=$PMKT_STATE/mn
GC=$PMKT_STATE/gc
GCIMG=$PMKT_CACHE/gc
# the project as installed from its packages (install.sh project: the host package on this
# machine, whose /usr every node shares; the guest package in the image, gc-image.sh)
BIN=/usr/sbin
# the test bed's own helper (serial console driver): not part of the product
TB=$REPO_DIR/target/debug/pmkt-tb
TIMELINE=$GC/timeline.txt
GUESTS=(g1 g2)
CLUSTER=gc
MCAST=230.0.98.1:5598
GUEST_NET=10.98.0
# the guest cluster's fence device: vmstonith (fence_vmstonith through vm-stonithd) or, for the
# comparison benchmark, fence_virt (fence_virt -> fence_virtd's serial listener, libvirt backend)
FENCE=${FENCE:-vmstonith}
case $FENCE in vmstonith | fence_virt) ;; *) die "FENCE must be vmstonith or fence_virt" ;; esac
FVDIR=/run/pmkt/fence_virt # in each node: fence_virtd's serial listener takes every socket here
# the host attribute guests mirror (pingd's), the attributes vm-client mirrors (PROBE=1, the
# benchmark: also pmkt_probe, an attribute the bench sets on the host nodes itself), and the
# nftables table that breaks a node's pings
PING_ATTR=default_ping_set
CLIENT_ATTRS=$PING_ATTR
[ "${PROBE:-0}" != 1 ] || CLIENT_ATTRS="$PING_ATTR pmkt_probe"
PING_TABLE=pmkt_ping
# the guest whose vm-connectd checks a unit of its own (--health-unit), and that unit
HEALTH_GUEST=g1
HEALTH_UNIT=gc-app.service

# --- helpers ---------------------------------------------------------------------------------

on() { "$MNSH" exec "$@"; }
# vm-ctl on node n1 (or $VMCTL_NODE), printed as the user would type it
vmctl() {
    echo "\$ vm-ctl $*"
    VM_STONITHD_CONFIG=$GC/vm-stonithd.toml \
        on "${VMCTL_NODE:-n1}" "$BIN/vm-ctl" --config "$GC/vm-ctl.conf" "$@" 2>&1 | sed 's/^/  /'
    return "${PIPESTATUS[0]}"
}
# the first node that answers, for host-cluster queries
any_node() { "$MNSH" answering; }
host_of() {
    local n
    if [ "$FENCE" = fence_virt ]; then
        # plain libvirt domains (fence_virtd starts and stops them behind Pacemaker)
        for n in $("$MNSH" nodes); do
            [ "$(on "$n" virsh -c qemu:///system domstate "$1" 2>/dev/null | head -1)" = running ] &&
                { echo "$n"; return 0; }
        done
        return 0
    fi
    n=$(any_node) || return 0
    rsc_role "$MNSH" exec "$n" "prmVMCTL_$1" | awk '$1 == "Started" { print $2 }'
}
# gexec GUEST CMD [TIMEOUT]: CMD in the guest (its serial console, on whichever node runs it)
gexec() {
    local g=$1 cmd=$2 t=${3:-60} node
    node=$(host_of "$g")
    [ -n "$node" ] || { log "$g is not running"; return 1; }
    on "$node" "$TB" console "/run/pmkt/$g.console.sock" "$cmd" "$t"
}
# "ROLE NODE" of the guest cluster's dummy in crm_mon's XML (stdin)
dummy_of() {
    awk '/<resource id="dummy"/ { match($0, /role="[A-Za-z]*"/); r = substr($0, RSTART + 6, RLENGTH - 7); getline;
        if (match($0, /<node name="[^"]*"/)) print r, substr($0, RSTART + 12, RLENGTH - 13); else print r; exit }'
}
# guest cluster state as seen from GUEST: "ONLINE-NODES|DUMMY-ROLE DUMMY-NODE"
gview() {
    local xml
    xml=$(gexec "$1" 'crm_mon --one-shot --output-as=xml' 20 2>/dev/null) || return 1
    local online dummy
    online=$(grep -o '<node name="[^"]*"[^>]* online="true"' <<<"$xml" | sed 's/<node name="\([^"]*\)".*/\1/' | xargs)
    dummy=$(dummy_of <<<"$xml")
    echo "$online|$dummy"
}
# GUEST's mirrored ping attribute and the dummy's place, as g1 sees them: "VALUE|ROLE NODE"
# (VALUE "-" while the guest cluster has none)
gping() {
    local out v
    out=$(gexec g1 "attrd_updater -Q -n $PING_ATTR -N $1 2>/dev/null; echo @@; crm_mon --one-shot --output-as=xml" 20 2>/dev/null) ||
        return 1
    v=$(sed -n '/^@@/q; s/.* value="\([^"]*\)".*/\1/p' <<<"$out")
    echo "${v:--}|$(sed '1,/^@@/d' <<<"$out" | dummy_of)"
}
# the mirrored ping attribute of every guest, as g1 sees it: "g1=green g2=green"
mirrored() {
    gexec g1 "attrd_updater -Q -A -n $PING_ATTR 2>/dev/null" 20 2>/dev/null |
        sed -n 's/.* host="\([^"]*\)" value="\([^"]*\)".*/\1=\2/p' | sort | xargs
}
mirrored_everywhere() {
    local v g
    v=" $(mirrored) " || return 1
    for g in "${GUESTS[@]}"; do
        case $v in *" $g="*) ;; *) return 1 ;; esac
    done
}
# NODE's pingd attribute as the host cluster's CIB records it
host_ping() { on "$1" crm_attribute --node "$1" --name "$PING_ATTR" --lifetime reboot --query --quiet 2>/dev/null; }
# GUEST's liveness as NODE's vm-connectd publishes it (pmkt-guest-GUEST: LINK:LIVENESS:SINCE)
liveness_of() { on "$2" crm_attribute --node "$2" --name "pmkt-guest-$1" --lifetime reboot --query --quiet 2>/dev/null; }
liveness_is() { case $(liveness_of "$1" "$2") in "up:$3:"*) return 0 ;; *) return 1 ;; esac; }
# `vm-ctl status --output json` (issue 16's one screen), read on a node that answers
vmctl_json() {
    local n
    n=$(any_node) || return 1
    on "$n" "$BIN/vm-ctl" --config "$GC/vm-ctl.conf" --output json status 2>/dev/null
}
# GUEST as vm-ctl status shows it, on one line: state, nodes, migration, channel, fence, failures
vmctl_guest() {
    jq -r --arg g "$1" '.status.guests[] | select(.domain == $g) |
        "\(.domain) \(.state) on \(.nodes | join(","))" +
        (if .migration then " migrating \(.migration.from)->\(.migration.to)" else "" end) +
        ", channel \(.channel.link) \(.channel.liveness) (from \(.channel.node // "-"))" +
        (if .fence.in_progress then ", fence \(.fence.in_progress.action) IN PROGRESS by \(.fence.in_progress.node)" else "" end) +
        (if .fence.last then ", last fence \(.fence.last.action) \(.fence.last.result) by \(.fence.last.cluster)/\(.fence.last.requester)" else "" end) +
        ", \(.failed_actions | length) failed action(s)"'
}
# prmVMCTL_GUEST's failed monitor whose reason matches PATTERN in crm_mon (its exit reason)
monitor_failed() {
    local n
    n=$(any_node) || return 1
    on "$n" crm_mon --one-shot --output-as=xml 2>/dev/null |
        grep -o "<failure op_key=\"prmVMCTL_$1_monitor_[^>]*" | sed -n 's/.* exitreason="\([^"]*\)".*/\1/p' |
        grep -m1 -- "$2"
}

T0=
mark_at() {
    local t=$1
    shift
    local line
    line=$(awk -v a="$T0" -v b="$t" -v s="$*" 'BEGIN { printf "%+8.1f s  %s", b - a, s }')
    echo "$line" | tee -a "$TIMELINE"
}
mark() { mark_at "$(now)" "$@"; }
# epoch of an RFC 3339 timestamp (vm-stonithd's log) or a syslog one (Pacemaker's log)
epoch() { date -d "$1" +%s.%N; }

# --- up ----------------------------------------------------------------------------------------

make_seed() {
    local g=$1 i=$2
    local S=$GC/seed-$g
    rm -rf "$S"
    mkdir -p "$S/root/etc/systemd/network" "$S/root/etc/corosync" "$S/root/var/lib/pacemaker/cib" \
        "$S/root/etc/pm-kvm-tools" "$S/root/root"
    echo "$g" >"$S/root/etc/hostname"
    {
        echo "127.0.0.1 localhost"
        for j in "${!GUESTS[@]}"; do echo "$GUEST_NET.$((j + 1)) ${GUESTS[$j]}"; done
    } >"$S/root/etc/hosts"
    # IPv4 only: the cluster link has no router, and with IPv6 on, networkd kept the link
    # "configuring" through its router solicitations (~12 s of every boot, which corosync
    # waits for behind network-online.target)
    printf '[Match]\nName=eth0\n\n[Network]\nAddress=%s.%s/24\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n' \
        "$GUEST_NET" "$i" >"$S/root/etc/systemd/network/10-eth0.network"
    {
        printf 'totem {\n    version: 2\n    cluster_name: %s\n    transport: knet\n' "$CLUSTER"
        printf '    crypto_cipher: none\n    crypto_hash: none\n    token: %s\n}\nnodelist {\n' "${TOKEN:-3000}"
        for j in "${!GUESTS[@]}"; do
            printf '    node {\n        name: %s\n        nodeid: %s\n        ring0_addr: %s.%s\n    }\n' \
                "${GUESTS[$j]}" "$((j + 1))" "$GUEST_NET" "$((j + 1))"
        done
        printf '}\nquorum {\n    provider: corosync_votequorum\n    two_node: 1\n}\n'
        printf 'logging {\n    to_logfile: yes\n    logfile: /var/log/corosync/corosync.log\n    to_syslog: no\n    timestamp: hires\n}\n'
    } >"$S/root/etc/corosync/corosync.conf"
    # The test bed's seeded CIB (lib.sh): dc-deadtime 2 s (the default 20 s dominates start-up)
    # and no crm_feature_set (the guest's Pacemaker refuses one newer than its own).
    seed_cib false >"$S/root/var/lib/pacemaker/cib/cib.xml"
    # owners by name: gc-image.sh seed maps them to the image's ids
    chown -R hacluster:haclient "$S/root/var/lib/pacemaker"
    chmod 0750 "$S/root/var/lib/pacemaker/cib"
    chmod 0600 "$S/root/var/lib/pacemaker/cib/cib.xml"
    # the guest cluster's key, as operations.md step 7 installs it
    install -m 0600 "$GC/guest-fence.key" "$S/root/etc/pm-kvm-tools/fence.key"
    chmod 0700 "$S/root/etc/pm-kvm-tools"
    # and its fence configuration, as vm-ctl printed it (run once, in one guest)
    install -m 0600 "$GC/guest-fence.sh" "$S/root/root/guest-fence.sh"
    # g1's critical service: gc-app.service stands for an application; g1's vm-connectd checks
    # it (--health-unit, operations.md: the guest package's unit with the options, as
    # `systemctl edit vm-connectd-guest` makes it), every 5 s, failing at the second miss in a
    # row (every 2 s failing at the first: a systemctl slower than 2 s in a TCG guest on a
    # loaded host made g1 unhealthy for a moment, and Pacemaker restarted it)
    if [ "$g" = "$HEALTH_GUEST" ]; then
        mkdir -p "$S/root/etc/systemd/system/vm-connectd-guest.service.d"
        printf '[Unit]\nDescription=the guest-cluster scenario: stands for an application (vm-connectd --health-unit)\n\n[Service]\nExecStart=/bin/sleep infinity\n' \
            >"$S/root/etc/systemd/system/$HEALTH_UNIT"
        printf '[Unit]\nWants=%s\n\n[Service]\nExecStart=\nExecStart=/usr/sbin/vm-connectd -t guest --socket /run/vmconnectd.sock --health-unit %s --health-interval 5 --health-failures 2\n' \
            "$HEALTH_UNIT" "$HEALTH_UNIT" >"$S/root/etc/systemd/system/vm-connectd-guest.service.d/health.conf"
    fi
    "$TESTBED_DIR/gc-image.sh" seed "$S" "$GC/vm/$g.seed.img"
}

host_daemons() {
    local n=$1
    # docs/operations.md steps 2 and 5, with the test bed's paths (sockets and logs in each
    # node's own /run); the daemons are the packaged ones, the agents' default binary
    # each object on its own: a run killed half-way through made some of them
    has() { on "$n" cibadmin --query --xpath "//$1[@id='$2']" >/dev/null 2>&1; }
    has clone clnVmConnectd || on "$n" cibadmin --create -o resources -X "<clone id='clnVmConnectd'>
  <primitive id='vm-connectd' class='ocf' provider='pm-kvm-tools' type='vm-connectd'>
    <instance_attributes id='vm-connectd-ia'>
      <nvpair id='vm-connectd-sock_dir' name='sock_dir' value='/run/pmkt/vmconnectd'/>
      <nvpair id='vm-connectd-logfile' name='logfile' value='/run/pmkt/vm-connectd.log'/>
    </instance_attributes>
    <operations><op id='vm-connectd-mon' name='monitor' interval='10s'/></operations>
  </primitive>
</clone>"
    # a host module (vm-stonithd, vm-managerd) with its configuration file: its clone, ordered
    # after vm-connectd's and colocated with it
    module_clone() {
        local kind=$1 cln=$2 config=$3 ops=$4 options=${5:-}
        has clone "$cln" || on "$n" cibadmin --create -o resources -X "<clone id='$cln'>
  <primitive id='$kind' class='ocf' provider='pm-kvm-tools' type='$kind'>
    <instance_attributes id='$kind-ia'>
      <nvpair id='$kind-config' name='config' value='$config'/>
      <nvpair id='$kind-logfile' name='logfile' value='/run/pmkt/$kind.log'/>$(
            [ -z "$options" ] || printf "\n      <nvpair id='%s-options' name='options' value='%s'/>" "$kind" "$options")
    </instance_attributes>
    <operations>$ops</operations>
  </primitive>
</clone>"
        has rsc_order "odr${cln#cln}" ||
            on "$n" cibadmin --create -o constraints -X "<rsc_order id='odr${cln#cln}' kind='Mandatory' first='clnVmConnectd' then='$cln'/>"
        has rsc_colocation "col${cln#cln}" ||
            on "$n" cibadmin --create -o constraints -X "<rsc_colocation id='col${cln#cln}' score='INFINITY' rsc='$cln' with-rsc='clnVmConnectd'/>"
    }
    module_clone vm-stonithd clnVmStonithd "$GC/vm-stonithd.toml" "
      <op id='vm-stonithd-start' name='start' interval='0' timeout='30s'/>
      <op id='vm-stonithd-stop' name='stop' interval='0' timeout='90s'/>
      <op id='vm-stonithd-mon' name='monitor' interval='10s' timeout='20s'/>
    "
    # vm-managerd (operations.md, "vm-managerd: host attributes for guests"), with the
    # scenario's rule file (the benchmark logs when each held answer leaves: debug)
    module_clone vm-managerd clnVmManagerd "$GC/vm-manager.conf" \
        "<op id='vm-managerd-mon' name='monitor' interval='10s' timeout='20s'/>" \
        "$([ "${PROBE:-0}" != 1 ] || echo -V)"
}

# vm-managerd's rule file for the scenario (the original's format; the same file on every host
# node). pingd pings the three node addresses, 100 each: 300 is a healthy host, 200 one that
# lost one (a peer node down: the survivors of a host node's power-off), 100 one that reaches
# no other node. Only that is red: a peer's failure must not change what the guests see (a
# node attribute change aborts the guest cluster's transition in progress, its failover
# included). Only the guest cluster's guests may read it.
managerd_rules() {
    local g
    printf '# vm-manager.conf of the guest-cluster scenario (tests/testbed/guestcluster.sh)\n'
    printf '[%s]\nred = lt 200\ngreen = gte 200\n\n' "$PING_ATTR"
    if [ "${PROBE:-0}" = 1 ]; then
        printf "# the benchmark's probe (bench/vm-managerd.sh gc), answered as it is\n[pmkt_probe]\n\n"
    fi
    printf '[@guests]\n'
    for g in "${GUESTS[@]}"; do printf '%s = %s\n' "$g" "$CLIENT_ATTRS"; done
}

clone_running_everywhere() {
    local n count
    count=$("$MNSH" nodes | wc -w)
    n=$(any_node) || return 1
    [ "$(on "$n" crm_mon --one-shot --output-as=xml 2>/dev/null |
        grep -c "<resource id=\"$1\" [^>]*role=\"Started\"")" = "$count" ]
}
ping_set_everywhere() {
    local n
    for n in $("$MNSH" nodes); do
        on n1 crm_attribute --node "$n" --name default_ping_set --lifetime reboot --query --quiet >/dev/null 2>&1 || return 1
    done
}
guest_ready() { grep -qa PMKT-GUEST-READY "$MN/$(host_of "$1")/log-libvirt/$1.console.log" 2>/dev/null; }
gc_online() { [ "$(gview "$1" | cut -d'|' -f1)" = "${GUESTS[*]}" ]; }
dummy_on() { [ "$(gview "$1" | cut -d'|' -f2)" = "Started $2" ]; }
rsc_on() {
    local n
    n=$(any_node) || return 1
    [ "$(rsc_role "$MNSH" exec "$n" "$1")" = "Started $2" ]
}

# the fence_virt comparison's guest fencing: the same levels as guest-config's (the device,
# then meatware), with fence_virt over the guest's second serial port
fence_virt_script() {
    local map g
    map=$(for g in "${GUESTS[@]}"; do printf '%s:%s;' "$g" "$g"; done | sed 's/;$//')
    cat <<SCRIPT
set -e
cibadmin --create --scope resources --xml-text '<primitive id="fence-virt" class="stonith" type="fence_virt"><instance_attributes id="fence-virt-ia"><nvpair id="fence-virt-serial" name="serial_device" value="/dev/ttyS1"/><nvpair id="fence-virt-map" name="pcmk_host_map" value="$map"/><nvpair id="fence-virt-check" name="pcmk_host_check" value="static-list"/><nvpair id="fence-virt-rt" name="pcmk_reboot_timeout" value="60s"/></instance_attributes><operations><op id="fence-virt-mon" name="monitor" interval="60s" timeout="60s"/></operations></primitive>'
cibadmin --create --scope resources --xml-text '<primitive id="fence-meatware" class="stonith" type="meatware"><instance_attributes id="fence-meatware-ia"><nvpair id="fence-meatware-hl" name="hostlist" value="${GUESTS[*]}"/><nvpair id="fence-meatware-rt" name="pcmk_reboot_timeout" value="600s"/></instance_attributes><operations><op id="fence-meatware-mon" name="monitor" interval="3600s" timeout="60s"/></operations></primitive>'
cibadmin --create --scope configuration --xml-text '<fencing-topology>$(for g in "${GUESTS[@]}"; do printf '<fencing-level id="fl-%s-1" target="%s" index="1" devices="fence-virt"/><fencing-level id="fl-%s-2" target="%s" index="2" devices="fence-meatware"/>' "$g" "$g" "$g" "$g"; done)</fencing-topology>'
crm_attribute --type crm_config --name stonith-enabled --update true
SCRIPT
}

# fence_virtd on n1 (serial listener, libvirt backend) and the guests as plain libvirt domains
# there: fence_virtd destroys and starts them itself, so Pacemaker must not manage them
fence_virtd_up() {
    local g
    on n1 mkdir -p "$FVDIR"
    for g in "${GUESTS[@]}"; do
        on n1 virsh -c qemu:///system define "$GC/vm/$g.xml" >/dev/null
        on n1 virsh -c qemu:///system start "$g" >/dev/null
    done
    [ -f "$GC/fence_xvm.key" ] || { head -c 512 /dev/urandom >"$GC/fence_xvm.key"; chmod 0600 "$GC/fence_xvm.key"; }
    {
        printf 'fence_virtd {\n\tlistener = "serial";\n\tbackend = "libvirt";\n'
        printf '\tmodule_path = "/usr/lib/x86_64-linux-gnu/fence-virt";\n}\n'
        printf 'listeners {\n\tserial {\n\t\turi = "qemu:///system";\n\t\tpath = "%s";\n' "$FVDIR"
        printf '\t\tmode = "serial";\n\t\tkey_file = "%s";\n\t}\n}\n' "$GC/fence_xvm.key"
        printf 'backends {\n\tlibvirt {\n\t\turi = "qemu:///system";\n\t}\n}\n'
        printf 'groups {\n\tgroup {\n\t\tname = "%s";\n' "$CLUSTER"
        for g in "${GUESTS[@]}"; do
            printf '\t\tuuid = "%s";\n\t\tuuid = "%s";\n' "$g" "$(on n1 virsh -c qemu:///system domuuid "$g" | head -1)"
        done
        printf '\t}\n}\n'
    } >"$GC/fence_virt.conf"
    "$MNSH" bg n1 fence_virtd /usr/sbin/fence_virtd -F -f "$GC/fence_virt.conf" -d 1
}

up() {
    need_root
    T0=$(now)
    local rerun=0 n
    mkdir -p "$GC/vm"
    : >"$TIMELINE"
    "$TESTBED_DIR/install.sh" build cib live libvirt guest multinode gc
    log "building pm-kvm-tools: its Debian packages, and the test bed's console helper"
    "$TESTBED_DIR/install.sh" project
    (cd "$REPO_DIR" && cargo build --quiet -p vm-tests --bin pmkt-tb)
    "$TESTBED_DIR/gc-image.sh" --no-build
    mark "pm-kvm-tools $(dpkg-query -W -f='${Version}' pm-kvm-tools) installed on the host nodes from its package"
    mark "guest image ready ($GCIMG: Debian 12, Pacemaker, the pm-kvm-tools-guest package)"
    NODES=3 "$MNSH" up
    mark "host cluster up: $("$MNSH" nodes | xargs) online, real fencing (fence_pmkt_nskill)"

    # a real pingd: every node pings the node addresses and publishes default_ping_set. One
    # attempt per target, every 5 s, dampened 1 s (the agent's defaults, 3 attempts, 10 s and
    # 5 s, took ~20 s to report a lost target, twice per scenario: the bridge loses no packet)
    if ! on n1 cibadmin --query --xpath "//clone[@id='clnPingd']" >/dev/null 2>&1; then
        on n1 cibadmin --create -o resources -X "<clone id='clnPingd'>
  <primitive id='prmPingd' class='ocf' provider='pacemaker' type='ping'>
    <instance_attributes id='prmPingd-ia'>
      <nvpair id='prmPingd-name' name='name' value='default_ping_set'/>
      <nvpair id='prmPingd-hosts' name='host_list' value='$("$MNSH" nodes | tr ' ' '\n' | sed 's/^n/10.99.0.1/' | xargs)'/>
      <nvpair id='prmPingd-mult' name='multiplier' value='100'/>
      <nvpair id='prmPingd-attempts' name='attempts' value='1'/>
      <nvpair id='prmPingd-dampen' name='dampen' value='1s'/>
    </instance_attributes>
    <operations><op id='prmPingd-mon' name='monitor' interval='5s' timeout='60s'/></operations>
  </primitive>
</clone>"
    fi

    # guests stay where they run (no rebalancing live migrations when another guest moves or
    # a node joins) unless their preferred node (score 200) calls them back
    on n1 cibadmin --modify --allow-create --scope rsc_defaults --xml-text \
        '<meta_attributes id="rsc-options"><nvpair id="rsc-options-resource-stickiness" name="resource-stickiness" value="100"/></meta_attributes>'

    # the guest cluster's key (operations.md step 3) and vm-stonithd's configuration (step 4)
    if [ ! -f "$GC/guest-fence.key" ]; then
        rm -rf "$GC/keys"
        vmctl stonith keygen "$CLUSTER" --members "$(IFS=,; echo "${GUESTS[*]}")" --key-dir "$GC/keys" >"$GC/keygen.out"
        install -m 0600 "$(ls "$GC/keys/$CLUSTER"-*.key)" "$GC/guest-fence.key"
    fi
    cat >"$GC/vm-stonithd.toml" <<TOML
# vm-stonithd.toml of the guest-cluster scenario: the same file on every host node
key_dir = "$GC/keys"
max_timeout = 55

[[cluster]]
name = "$CLUSTER"
members = [$(printf '"%s", ' "${GUESTS[@]}" | sed 's/, $//')]
TOML
    managerd_rules >"$GC/vm-manager.conf"
    host_daemons n1
    wait_until 60 ping_set_everywhere || die "pingd did not set default_ping_set on every node"
    wait_until 90 clone_running_everywhere vm-stonithd ||
        die "vm-stonithd is not running on every node; see /run/pmkt/vm-stonithd.log in the nodes"
    wait_until 60 clone_running_everywhere vm-managerd ||
        die "vm-managerd is not running on every node; see /run/pmkt/vm-managerd.log in the nodes"
    # a scenario killed while a node's pings were broken left the rule there
    for n in $("$MNSH" nodes); do ping_restore "$n"; done
    mark "host daemons: clnPingd, clnVmConnectd, clnVmStonithd, clnVmManagerd running on every node"

    # vm-ctl.conf of the guest-cluster scenario (the original format; parsed, never executed)
    vmctl_conf "$GC/vm" vm_allow_migrate=on vm_stonith=on "vm_start_op=(0 60s restart)" \
        "vm_stop_op=(0 60s)" "vm_monitor_op=(10s 30s restart)" "vm_migrate_to_op=(0 120s)" \
        "vm_migrate_from_op=(0 60s restart)" "vm_pingd1=(clnPingd default_ping_set)" \
        "vm_stonithd1=(clnVmStonithd)" vm_connectd_sock_dir=/run/pmkt/vmconnectd \
        vm_liveness_timeout=120s vm_migration_threshold=3 vm_failure_timeout=10min >"$GC/vm-ctl.conf"
    local list
    list=$(IFS=,; echo "${GUESTS[*]}")
    if [ "$FENCE" = vmstonith ]; then
        # the guest cluster's fence configuration, from vm-ctl (operations.md step 8)
        vmctl stonith guest-config "$CLUSTER" --members "$list" --syntax cibadmin | sed -n '1,8p'
        on n1 "$BIN/vm-ctl" --config "$GC/vm-ctl.conf" stonith guest-config "$CLUSTER" \
            --members "$list" --syntax cibadmin >"$GC/guest-fence.sh"
    else
        fence_virt_script >"$GC/guest-fence.sh"
    fi
    local i=0 g
    for g in "${GUESTS[@]}"; do
        i=$((i + 1))
        make_seed "$g" "$i"
        IMG=$GCIMG ROOT_IMG=$GCIMG/root.img SEED_IMG=$GC/vm/$g.seed.img MCAST=$MCAST \
            MAC=52:54:00:98:00:0$i MEM_MIB=512 TB_MIB=256 ON_REBOOT=restart \
            CMDLINE="console=ttyS0 quiet net.ifnames=0 panic=-1" \
            SERIAL2=$([ "$FENCE" = fence_virt ] && echo "$FVDIR/$g.sock") \
            "$TESTBED_DIR/domain-xml.sh" "$g" /run/pmkt /var/log/libvirt >"$GC/vm/$g.xml"
    done
    if [ "$FENCE" = vmstonith ]; then
        # (on a sandbox already up, the guests are there, perhaps with another preferred node
        # the demo gave them: re-adding them as new would be refused as configured differently)
        local missing=()
        for g in "${GUESTS[@]}"; do
            on n1 crm_resource --resource "prmVMCTL_$g" --query-xml >/dev/null 2>&1 || missing+=("$g")
        done
        if [ ${#missing[@]} -gt 0 ]; then
            vmctl resource add "$(IFS=,; echo "${missing[*]}")" -a n1
        fi
        vmctl resource start "$list" --wait=120
        [ ${#missing[@]} -gt 0 ] || rerun=1
        if [ ${#missing[@]} -eq ${#GUESTS[@]} ]; then
            mark "vm-ctl: $list added (resource, location, ping rule, constraints) and started on n1"
        else
            mark "vm-ctl: $list present (added by an earlier run: ${missing[*]:-none} added now), started"
        fi
        # the sandbox is set up as an operator should set up a cluster: vm-ctl check agrees
        local report
        report=$(vmctl check) || die "vm-ctl check finds errors in the scenario's set-up:
$report"
        ! grep -q WARNING <<<"$report" || die "vm-ctl check warns about the scenario's set-up:
$report"
        mark "vm-ctl check: no error, no warning (clones, vm-connectd's directory, stickiness, fence keys on every node, guests)"
    else
        fence_virtd_up
        mark "fence_virt comparison: $list as plain libvirt domains on n1, fence_virtd (serial, libvirt) there"
    fi
    if [ "$rerun" = 1 ]; then
        # their boot marker is in the console log of the node they booted on, which after a
        # migration is not where they run: the guest cluster check below is the readiness test
        mark "guests up since an earlier run"
    else
        for g in "${GUESTS[@]}"; do
            wait_until 180 guest_ready "$g" || die "$g did not boot; see $MN/$(host_of "$g")/log-libvirt/$g.console.log"
        done
        mark "guests booted (Debian 12, systemd; guest-mode vm-connectd, corosync, pacemaker)"
    fi
    if [ "$rerun" = 1 ]; then
        # a scenario killed between a link cut and its repair leaves the link down
        for g in "${GUESTS[@]}"; do heal_link_of "$g"; done
    fi
    wait_until 180 gc_online g1 || die "the guest cluster did not come online: $(gview g1 || true)"
    mark "guest cluster online: ${GUESTS[*]} (corosync over the multicast link)"
    if [ "$FENCE" = vmstonith ]; then
        # g1's health check (systemctl is-active from the hardened vm-connectd-guest unit) passes
        wait_until 60 liveness_is "$HEALTH_GUEST" "$(host_of "$HEALTH_GUEST")" answering ||
            die "$HEALTH_GUEST is not answering on its host ($(liveness_of "$HEALTH_GUEST" "$(host_of "$HEALTH_GUEST")" || echo unset)): does its --health-unit $HEALTH_UNIT check fail?"
        mark "$HEALTH_GUEST's vm-connectd answers its host's heartbeats, checking $HEALTH_UNIT (--health-unit): $(liveness_of "$HEALTH_GUEST" "$(host_of "$HEALTH_GUEST")")"
    fi

    # the chain, checked from inside g1 before it is needed
    if [ "$FENCE" = vmstonith ]; then
        gexec g1 'vm-connect ping' 30 | sed 's/^/  g1$ vm-connect ping: /'
        gexec g1 'fence_vmstonith -o status -n g2' 60 | sed 's/^/  g1$ fence_vmstonith -o status -n g2: /'
    else
        gexec g1 'fence_virt -D /dev/ttyS1 -o status -n g2 -t 20' 60 | sed 's/^/  g1$ fence_virt -o status -n g2: /'
    fi

    # fencing from vm-ctl's own output (in the seed), applied with Pacemaker's tools
    local dev=fence-vmstonith
    [ "$FENCE" = vmstonith ] || dev=fence-virt
    # each step on its own: a run killed half-way through this did some of them
    local gcfg
    gcfg=$(gexec g1 "cibadmin --query --xpath '//primitive[@id=\"$dev\"]' >/dev/null 2>&1 && echo has-dev;
        cibadmin --query --xpath '//nvpair[@name=\"pcmk_delay_base\"]' >/dev/null 2>&1 && echo has-delay;
        cibadmin --query --xpath '//primitive[@id=\"dummy\"]' >/dev/null 2>&1 && echo has-dummy;
        cibadmin --query --xpath '//rsc_location[@id=\"dummy-prefers-g2\"]' >/dev/null 2>&1 && echo has-loc; true" 60) ||
        die "cannot read the guest cluster's configuration in g1"
    if ! grep -q has-dev <<<"$gcfg"; then
        gexec g1 'sh /root/guest-fence.sh' 120 >"$GC/guest-fence.out" ||
            die "the guest-config script failed in g1: $(cat "$GC/guest-fence.out")"
    fi
    if ! grep -q has-delay <<<"$gcfg"; then
        # Two guests that lose each other both fence: g1 wins (guest-config suggests a delay)
        gexec g1 "crm_resource --resource $dev --set-parameter pcmk_delay_base --parameter-value g1:10s >/dev/null" 60 ||
            die "could not set pcmk_delay_base"
    fi
    if ! grep -q has-dummy <<<"$gcfg"; then
        gexec g1 'cibadmin --create -o resources -X "<primitive id=\"dummy\" class=\"ocf\" provider=\"pacemaker\" type=\"Dummy\"><operations><op id=\"dummy-mon\" name=\"monitor\" interval=\"5s\"/></operations></primitive>"' 60 ||
            die "could not configure the guest cluster's dummy"
    fi
    if ! grep -q has-loc <<<"$gcfg"; then
        gexec g1 'cibadmin --create -o constraints -X "<rsc_location id=\"dummy-prefers-g2\" rsc=\"dummy\" node=\"g2\" score=\"100\"/>"' 60 ||
            die "could not configure the guest cluster's dummy location"
    fi
    # the host's health in the guest cluster: the vm-client clone and the dummy's rule, from
    # vm-ctl's own output (operations.md, "vm-managerd: host attributes for guests"), run in g1
    # as an operator pastes it there
    vmctl stonith client-config --attributes "$CLIENT_ATTRS" --resource dummy --syntax cibadmin | sed -n '1,6p'
    on n1 "$BIN/vm-ctl" --config "$GC/vm-ctl.conf" stonith client-config --attributes "$CLIENT_ATTRS" \
        --resource dummy --syntax cibadmin >"$GC/guest-client.sh"
    local ccfg
    ccfg=$(gexec g1 "cibadmin --query --xpath '//clone[@id=\"clnVmClient\"]' >/dev/null 2>&1 && echo has-client;
        cibadmin --query --xpath '//rsc_location[@id=\"loc-dummy-$PING_ATTR\"]' >/dev/null 2>&1 && echo has-rule; true" 60) ||
        die "cannot read the guest cluster's configuration in g1"
    if ! grep -q has-client <<<"$ccfg" || ! grep -q has-rule <<<"$ccfg"; then
        # a run killed between the script's two commands made one of them: start it over
        gexec g1 "cibadmin --delete --scope constraints --xml-text '<rsc_location id=\"loc-dummy-$PING_ATTR\"/>' >/dev/null 2>&1;
            cibadmin --delete --scope resources --xml-text '<clone id=\"clnVmClient\"/>' >/dev/null 2>&1; true" 60 >/dev/null
        gexec g1 "$(cat "$GC/guest-client.sh")" 120 >"$GC/guest-client.out" ||
            die "the client-config script failed in g1: $(cat "$GC/guest-client.out")"
    fi
    wait_until 120 dummy_on g1 g2 || die "dummy did not start on g2: $(gview g1 || true)"
    if [ "$FENCE" = vmstonith ]; then
        mark "guest cluster: fence_vmstonith from 'vm-ctl stonith guest-config' (+ meatware), stonith-enabled, dummy on g2"
    else
        mark "guest cluster: fence_virt (serial /dev/ttyS1), stonith-enabled, dummy on g2"
    fi
    local values
    wait_until 60 mirrored_everywhere || die "vm-client did not mirror $PING_ATTR into both guests: $(mirrored || true)"
    values=$(mirrored)
    mark "guest cluster: the vm-client clone from 'vm-ctl stonith client-config' mirrors the hosts' $PING_ATTR ($values); dummy's rule: -INFINITY where it is red or unset"
    log "guest cluster up after $(elapsed "$T0") s"
}

# --- scenario ----------------------------------------------------------------------------------

# vm-stonithd log lines of every live node (node name prefixed)
stonithd_logs() {
    local n
    for n in $("$MNSH" nodes); do
        on "$n" cat /run/pmkt/vm-stonithd.log 2>/dev/null | sed "s/^/$n /" || true
    done
}
# guest_fence WHAT CUT-CMD...: cut, then follow the fence to the guest cluster's recovery
failover() {
    local what=$1
    shift
    local t_cut cut_iso t_req='' t_off='' t_dummy='' t_back='' req_node='' line deadline h1 h2
    h1=$(host_of g1) h2=$(host_of g2)
    [ "$FENCE" != vmstonith ] || fence_watch_start
    t_cut=$(now)
    # log lines after the failure only (RFC 3339 UTC timestamps compare as strings)
    cut_iso=$(date -u -d "@$t_cut" +%Y-%m-%dT%H:%M:%S.%6NZ)
    "$@"
    mark_at "$t_cut" "$what"
    deadline=$(($(date +%s) + 180))
    while [ "$(date +%s)" -lt "$deadline" ]; do
        if [ -z "$t_off" ] && [ "$FENCE" = vmstonith ]; then
            line=$(stonithd_logs | awk -v c="$cut_iso" '!f && $2 >= c && /action=reboot/ && /requester=g1/ { print; f = 1 }')
            if [ -n "$line" ]; then
                req_node=${line%% *}
                # the reply's line: its time less vm-stonithd's elapsed time is the request's arrival
                local ts el t_reply
                t_reply=$(epoch "$(awk '{ print $2 }' <<<"$line")")
                el=$(sed -n 's/.*elapsed_ms=\([0-9]*\).*/\1/p' <<<"$line")
                t_req=$(awk -v t="$t_reply" -v e="$el" 'BEGIN { printf "%.3f", t - e / 1000 }')
                ts=$(on "$req_node" cat /run/pmkt/vm-stonithd.log |
                    awk -v c="$cut_iso" '!f && $1 >= c && /off confirmed by the host cluster/ { print $1; f = 1 }')
                grep -q 'outcome=Done' <<<"$line" || die "the fence of g2 was not done: $line"
                [ -n "$ts" ] || die "vm-stonithd on $req_node replied done without an 'off confirmed' line"
                # the request goes to g1's own host, never to the node that runs the target
                [ "$req_node" = "$h1" ] || die "g1 runs on $h1, but its request reached $req_node"
                t_off=$(epoch "$ts")
                mark_at "$t_req" "  g1's fence request (reboot g2) reaches vm-stonithd on $req_node (g1's host)"
                mark_at "$t_off" "  host cluster confirms g2 stopped (hard stop of prmVMCTL_g2, ran on $h2)"
                mark_at "$t_reply" "  g2 started again; vm-stonithd replies: done (g1's fence succeeds)"
            fi
        fi
        if [ -z "$t_dummy" ] && dummy_on g1 g1; then
            t_dummy=$(now)
            mark "  guest cluster recovers: dummy Started on g1"
            heal_link
        fi
        if [ -n "$t_dummy" ] && { [ -n "$t_off" ] || [ "$FENCE" != vmstonith ]; }; then break; fi
        sleep 0.5
    done
    [ -n "$t_off" ] || [ "$FENCE" != vmstonith ] || die "$what: no fence of g2 by vm-stonithd within 180 s"
    [ "$FENCE" != vmstonith ] || fence_watch_stop
    [ -n "$t_dummy" ] || die "$what: dummy did not move to g1 within 180 s"
    wait_until 240 gc_online g1 || die "$what: g2 did not rejoin the guest cluster"
    t_back=$(now)
    mark_at "$t_back" "  g2 rejoined the guest cluster (on $(host_of g2)); dummy back on g2 next"
    # the guest fencer's own record (g1's clock: within ~0.3 s of the host's under TCG)
    local glog t_greq t_gdone
    glog=$(gexec g1 "grep -h 'Requesting fencing (reboot) of node g2\\|Peer g2 was terminated (reboot)' /var/log/pacemaker/pacemaker.log | tail -4" 20) ||
        die "$what: cannot read g1's pacemaker.log"
    t_greq=$(guest_time "$t_cut" 'Requesting fencing' <<<"$glog")
    t_gdone=$(guest_time "$t_cut" 'was terminated.*: OK' <<<"$glog")
    if [ -z "$t_greq" ] || [ -z "$t_gdone" ]; then
        die "$what: g1's pacemaker.log has no fence of g2 after the failure: $glog"
    fi
    mark_at "$t_greq" "  g1's cluster requests the fence (g1's pacemaker.log)"
    mark_at "$t_gdone" "  g1's cluster: fence of g2 succeeded (g1's pacemaker.log)"
    wait_until 120 dummy_on g1 g2 || die "$what: dummy did not return to g2"
    printf '%s\n' "$what|$t_cut|$t_greq|${t_req:--}|${t_off:--}|$t_gdone|$t_dummy|$t_back" >>"$GC/failovers"
}

# guest_time SINCE PATTERN < pacemaker.log lines: epoch of the first line matching PATTERN no
# earlier than SINCE (less 2 s for the guest clock's offset)
guest_time() {
    local since=$1 pattern=$2 l t
    while IFS= read -r l; do
        grep -q "$pattern" <<<"$l" || continue
        t=$(epoch "$(awk '{ print $1, $2, $3 }' <<<"$l")") || continue
        if awk -v t="$t" -v s="$since" 'BEGIN { exit !(t >= s - 2) }'; then echo "$t"; return 0; fi
    done
    return 0
}

# After the fence the cut is repaired. A guest restarted by the host cluster is a new QEMU
# process with its link up; fence_virtd's reboot re-creates the domain from its live XML, which
# carries the cut (<link state='down'/>): set it up again, and say so.
heal_link() {
    local node
    node=$(host_of g2)
    [ -n "$node" ] || return 0
    if on "$node" virsh -c qemu:///system domif-getlink g2 52:54:00:98:00:02 2>/dev/null | grep -q down; then
        on "$node" virsh -c qemu:///system domif-setlink g2 52:54:00:98:00:02 up >/dev/null
        mark "  g2's link was still cut after its reboot (the restarted domain kept it): set up again"
    fi
}

# heal_link_of GUEST: its cluster link up, wherever it runs (a no-op when it is up)
heal_link_of() {
    local g=$1 node mac
    node=$(host_of "$g")
    [ -n "$node" ] || return 0
    mac=$(sed -n "s/.*<mac address='\([^']*\)'.*/\1/p" "$GC/vm/$g.xml" | head -1)
    [ -n "$mac" ] || return 0
    if on "$node" virsh -c qemu:///system domif-getlink "$g" "$mac" 2>/dev/null | grep -q down; then
        on "$node" virsh -c qemu:///system domif-setlink "$g" "$mac" up >/dev/null
        log "$g's cluster link was left cut by an earlier run: set up again"
    fi
}

# NODE loses its ping targets: in its network namespace only, an nftables rule rejects its
# ICMP echo requests on its cluster NIC (its pings of its own address stay on lo; corosync's
# UDP, the others' pings of it and its answers to them are untouched)
ping_break() {
    on "$1" nft -f - <<NFT
table ip $PING_TABLE {
    chain out {
        type filter hook output priority 0; policy accept;
        oifname "eth0" icmp type echo-request reject with icmp type admin-prohibited
    }
}
NFT
}
# NODE's pings work again (a no-op when they do)
ping_restore() {
    if on "$1" nft list table ip "$PING_TABLE" >/dev/null 2>&1; then
        on "$1" nft delete table ip "$PING_TABLE"
        log "$1's pings were left broken by an earlier run: repaired"
    fi
}
# stonith_admin's fence history (every target) as a count of events, from a host node or
# (GUEST) inside a guest
fence_events() {
    if [ "$1" = host ]; then
        on "$(any_node)" stonith_admin --history '*' --output-as=xml 2>/dev/null | grep -c '<fence_event ' || true
    else
        gexec "$1" "stonith_admin --history '*' --output-as=xml 2>/dev/null | grep -c '<fence_event ' || true" 30
    fi
}

# The host's health reaching the guest cluster (issue 15): host node H (g2's) loses its ping
# targets; pingd lowers its attribute there, vm-managerd on H answers g2's held request with
# the converted value, vm-client sets it as g2's node attribute, and the guest cluster's rule
# moves dummy to g1. Nothing is fenced: the host and guest clusters' fence histories, g2's boot
# id and its host are checked. Then H's pings come back, and so does dummy. Times: the host's
# clock; the host attribute is polled every 0.1 s, the guest side over g1's console (~0.5 s).
ping_step() {
    local h=$1 t_break t_restore poller hfile=$GC/host-ping
    local hf0 gf0 boot0 boot1 up1 where
    hf0=$(fence_events host)
    gf0=$(fence_events g1 | tr -d '[:space:]')
    boot0=$(gexec g2 'cat /proc/sys/kernel/random/boot_id' 20 | tr -d '[:space:]')
    [ "$(gping g2)" = "green|Started g2" ] || die "before breaking $h's pings: g2's $PING_ATTR and dummy are $(gping g2 || true)"
    # the host attribute's changes, polled in the background (it stops when this script does)
    : >"$hfile"
    (
        prev=
        while kill -0 $$ 2>/dev/null; do
            v=$(host_ping "$h") || v=-
            if [ "$v" != "$prev" ]; then
                echo "$(now) $v" >>"$hfile"
                prev=$v
            fi
            sleep 0.1
        done
    ) &
    poller=$!
    wait_until 10 test -s "$hfile" || die "cannot read $PING_ATTR on $h"
    t_break=$(now)
    ping_break "$h"
    mark_at "$t_break" "break host $h's ping targets (g2's host; nft in $h's network namespace only rejects its ICMP echo requests)"
    # host: the first value below 200 (red by the rule file); guest: g2's value red, then dummy on g1
    ping_follow "$t_break" "$h" red "Started g1" 'lt 200' "moves dummy to g1 (its rule: -INFINITY where $PING_ATTR is red)"
    # nothing was fenced, nothing restarted, and the host cluster left g2 where it was
    [ "$(fence_events host)" = "$hf0" ] || die "the host cluster fenced something while $h's pings were broken"
    [ "$(fence_events g1 | tr -d '[:space:]')" = "$gf0" ] || die "the guest cluster fenced something while $h's pings were broken"
    # shellcheck disable=SC2016 # expanded in the guest
    read -r boot1 up1 < <(gexec g2 'echo $(cat /proc/sys/kernel/random/boot_id) $(cut -d" " -f1 /proc/uptime)' 20)
    if [ -z "$boot0" ] || [ "$boot1" != "$boot0" ]; then die "g2 rebooted while $h's pings were broken ($boot0 -> $boot1)"; fi
    where=$(host_of g2)
    [ "$where" = "$h" ] || die "the host cluster moved g2 from $h to $where"
    mark "  no fence: the host and guest clusters' fence histories unchanged ($hf0 and $gf0 events), g2 not rebooted (boot id unchanged, up ${up1%.*} s), still on $h"
    t_restore=$(now)
    on "$h" nft delete table ip "$PING_TABLE"
    mark_at "$t_restore" "restore host $h's ping targets (the nft table deleted)"
    ping_follow "$t_restore" "$h" green "Started g2" 'gte 200' "moves dummy back to g2 (it prefers g2)"
    kill "$poller" 2>/dev/null || true
    wait "$poller" 2>/dev/null || true
}

# ping_follow SINCE H VALUE DUMMY HOST-TEST WHAT: wait until H's attribute passes HOST-TEST
# (lt 200, gte 200) in the poller's record after SINCE, g2's mirrored value is VALUE and dummy
# is DUMMY; mark the three with the times they were first seen. The guest's value is polled
# alone first (one attrd_updater over the console, ~0.3 s a round), then dummy (crm_mon).
ping_follow() {
    local since=$1 h=$2 want=$3 dummy=$4 test=$5 what=$6 t_host='' host_v='' t_guest='' t_dummy='' v deadline
    local op=${test% *} lim=${test#* } prev
    prev=$(awk -v since="$since" '$1 < since { v = $2 } END { print v }' "$GC/host-ping")
    deadline=$((SECONDS + 60))
    while [ -z "$t_guest" ] && [ $SECONDS -lt $deadline ]; do
        v=$(gexec g1 "attrd_updater -Q -n $PING_ATTR -N g2 2>/dev/null" 20 2>/dev/null |
            sed -n 's/.* value="\([^"]*\)".*/\1/p') || v=
        if [ "$v" = "$want" ]; then t_guest=$(now); else sleep 0.1; fi
    done
    while [ -z "$t_dummy" ] && [ $SECONDS -lt $deadline ]; do
        if dummy_on g1 "${dummy#Started }"; then t_dummy=$(now); else sleep 0.2; fi
    done
    read -r t_host host_v < <(awk -v op="$op" -v lim="$lim" -v since="$since" '$1 >= since && $2 ~ /^[0-9]+$/ &&
        ((op == "lt" && $2 + 0 < lim) || (op == "gte" && $2 + 0 >= lim)) { print; exit }' "$GC/host-ping") || true
    [ -n "$t_host" ] || die "$PING_ATTR on $h did not become $test within 60 s: $(cat "$GC/host-ping")"
    [ -n "$t_guest" ] || die "g2's mirrored $PING_ATTR did not become $want within 60 s: $(gping g2 || true)"
    [ -n "$t_dummy" ] || die "dummy did not become '$dummy' within 60 s: $(gping g2 || true)"
    mark_at "$t_host" "  host: $PING_ATTR on $h ${prev:-?} -> $host_v (pingd; $h's vm-managerd answers it as $want)"
    mark_at "$t_guest" "  guest cluster: g2's $PING_ATTR -> $want (vm-client, from $h's vm-managerd; seen $(awk -v a="$t_host" -v b="$t_guest" 'BEGIN { printf "%.1f", b - a }') s after the host's, polled through g1's console)"
    mark_at "$t_dummy" "  guest cluster $what"
}

# Service health from inside the guest (issue 16): g1's critical service stops; its vm-connectd
# (--health-unit) reports it failing in its next Alive, the host publishes g1 `unhealthy`, and
# the next monitor of prmVMCTL_g1 (ocf:pm-kvm-tools:VirtualDomain) fails with the reason. For
# this step the resource is unmanaged: the failure is recorded, and Pacemaker recovers nothing
# (a restart of g1 is what the multi-node tier's panicked guest shows); then the service starts
# again, g1 answers again, the failure is cleaned up and the resource managed again.
health_step() {
    local g=$HEALTH_GUEST h t_stop t_start reason row
    h=$(host_of "$g")
    liveness_is "$g" "$h" answering || die "before the health step: pmkt-guest-$g on $h is '$(liveness_of "$g" "$h" || true)'"
    on "$h" crm_resource --resource "prmVMCTL_$g" --meta --set-parameter is-managed --parameter-value false >/dev/null
    t_stop=$(now)
    gexec "$g" "systemctl stop $HEALTH_UNIT" 30 >/dev/null || die "cannot stop $HEALTH_UNIT in $g"
    mark_at "$t_stop" "stop $g's critical service (systemctl stop $HEALTH_UNIT in $g; prmVMCTL_$g unmanaged for this step: its failure is recorded, not recovered)"
    wait_until 60 liveness_is "$g" "$h" unhealthy ||
        die "pmkt-guest-$g on $h did not become unhealthy within 60 s: $(liveness_of "$g" "$h" || true)"
    mark "  host: pmkt-guest-$g on $h -> $(liveness_of "$g" "$h") ($g's vm-connectd reports $HEALTH_UNIT failing)"
    wait_until 60 monitor_failed "$g" "unhealthy" || die "prmVMCTL_$g's monitor did not fail on $h within 60 s"
    reason=$(monitor_failed "$g" "unhealthy")
    case $reason in *"failing $HEALTH_UNIT"*) ;; *) die "prmVMCTL_$g's monitor failed for another reason: $reason" ;; esac
    mark "  host cluster: prmVMCTL_$g's monitor failed on $h: \"$reason\""
    row=$(vmctl_json | vmctl_guest "$g") || die "vm-ctl status failed"
    case $row in *"channel up unhealthy"*[1-9]" failed action(s)"*) ;; *) die "vm-ctl status does not show $g unhealthy with its failed monitor: $row" ;; esac
    mark "  vm-ctl status: $row"
    t_start=$(now)
    gexec "$g" "systemctl start $HEALTH_UNIT" 30 >/dev/null || die "cannot start $HEALTH_UNIT in $g"
    wait_until 60 liveness_is "$g" "$h" answering ||
        die "pmkt-guest-$g on $h did not answer again within 60 s: $(liveness_of "$g" "$h" || true)"
    mark_at "$t_start" "start $HEALTH_UNIT again in $g"
    mark "  host: pmkt-guest-$g on $h -> $(liveness_of "$g" "$h")"
    on "$h" crm_resource --cleanup --resource "prmVMCTL_$g" >/dev/null
    on "$h" crm_resource --resource "prmVMCTL_$g" --meta --delete-parameter is-managed >/dev/null
    wait_until 60 rsc_on "prmVMCTL_$g" "$h" || die "prmVMCTL_$g is not Started on $h after the health step"
    mark "  prmVMCTL_$g cleaned up and managed again, still on $h (not restarted)"
}

# move_watched GUEST NODE: vm-ctl resource move GUEST -n NODE (a live migration), and vm-ctl
# status read meanwhile until it shows GUEST migrating, with the migration's source and target
# (issue 16: the one screen while a guest migrates)
move_watched() {
    local g=$1 to=$2 pid j row='' out=$GC/move.out
    vmctl resource move "$g" -n "$to" --wait=180 >"$out" 2>&1 &
    pid=$!
    while kill -0 "$pid" 2>/dev/null; do
        if [ -z "$row" ]; then
            j=$(vmctl_json) || j=
            if [ -n "$j" ] && jq -e --arg g "$g" '.status.guests[] | select(.domain == $g and .state == "migrating" and .migration != null and (.nodes | length) == 2)' <<<"$j" >/dev/null 2>&1; then
                row=$(vmctl_guest "$g" <<<"$j")
                mark "  vm-ctl status during the move: $row"
            fi
        fi
        sleep 0.2
    done
    wait "$pid" || { cat "$out"; die "vm-ctl resource move $g -n $to failed"; }
    cat "$out"
    [ -n "$row" ] || die "vm-ctl status never showed $g migrating (source, target, both nodes) during its live migration"
}

# A background reader of vm-ctl status during a failover: the first time it shows g2's fence in
# progress, its line (host clock first) goes to $GC/fence-watch (issue 16: the one screen while
# a fence runs)
fence_watch_start() {
    : >"$GC/fence-watch"
    (
        while kill -0 $$ 2>/dev/null; do
            j=$(vmctl_json) || j=
            if [ -n "$j" ] && jq -e '.status.guests[] | select(.domain == "g2") | .fence.in_progress' <<<"$j" >/dev/null 2>&1; then
                echo "$(now) $(vmctl_guest g2 <<<"$j")" >"$GC/fence-watch"
                exit 0
            fi
            sleep 0.5
        done
    ) &
    FENCE_WATCH=$!
}
fence_watch_stop() {
    kill "$FENCE_WATCH" 2>/dev/null || true
    wait "$FENCE_WATCH" 2>/dev/null || true
    local t row
    read -r t row <"$GC/fence-watch" || die "vm-ctl status never showed g2's fence in progress"
    mark_at "$t" "  vm-ctl status while the fence runs: $row"
    row=$(vmctl_json | vmctl_guest g2) || die "vm-ctl status failed"
    case $row in *"last fence reboot done by $CLUSTER/g1"*) ;; *) die "vm-ctl status does not show g2's last fence (reboot done by $CLUSTER/g1): $row" ;; esac
    mark "  vm-ctl status after it: $row"
}

# A guest that reboots itself (systemctl reboot in it; QEMU keeps running it, libvirt resets
# it): its vm-connectd is silent from its stop at shutdown to its start, and the host's relay
# publishes it `silent` after --liveness-timeout (20 s) of no answer. The shipped
# vm_liveness_timeout (120 s, this scenario's vm-ctl.conf) must outlast that or Pacemaker
# restarts a guest that is only rebooting. Times: the host's clock; the attribute is read every
# 0.5 s, its SINCE (whole seconds) says when each value was published. Prints one line per run
# to $GC/reboots: "reboot-to-answering silent-age-at-return silent-window".
reboot_step() {
    local g=$1 h id0 id1 t0 v prev="" s_silent='' s_unknown='' s_answer='' deadline
    h=$(host_of "$g")
    liveness_is "$g" "$h" answering || die "before $g's reboot: pmkt-guest-$g on $h is '$(liveness_of "$g" "$h" || true)'"
    id0=$(on "$h" virsh -c qemu:///system domid "$g" | head -1)
    t0=$(now)
    gexec "$g" '(sleep 1; systemctl reboot) >/dev/null 2>&1 &' 20 >/dev/null || die "cannot reboot $g"
    t0=$(awk -v t="$t0" 'BEGIN { printf "%.3f", t + 1 }')
    mark_at "$t0" "$g reboots itself (systemctl reboot in $g, on $h; QEMU keeps running)"
    deadline=$((SECONDS + 300))
    while [ $SECONDS -lt $deadline ]; do
        v=$(liveness_of "$g" "$h") || v=-
        if [ "$v" != "$prev" ]; then
            case $v in
            up:silent:*) s_silent=${v##*:} ;;
            up:unknown:*) s_unknown=${v##*:} ;;
            up:answering:*) [ -z "$prev" ] || s_answer=${v##*:} ;;
            esac
            [ -z "$prev" ] || mark "  host: pmkt-guest-$g on $h -> $v"
            prev=$v
            [ -z "$s_answer" ] || break
        fi
        sleep 0.5
    done
    [ -n "$s_answer" ] || die "$g did not answer again within 300 s of its reboot: $(liveness_of "$g" "$h" || true)"
    id1=$(on "$h" virsh -c qemu:///system domid "$g" | head -1)
    [ "$id0" = "$id1" ] || die "$g's domain id changed ($id0 -> $id1): it was restarted, not rebooted"
    ! monitor_failed "$g" . >/dev/null || die "prmVMCTL_$g's monitor failed during its reboot: $(monitor_failed "$g" .)"
    # silent age when the new daemon said Hello (what the monitor compared with 120 s), and the
    # daemon's silence: from its last answer (silent's since less the relay's 20 s) to its Hello
    local back=${s_unknown:-$s_answer} age='-' window='-'
    if [ -n "$s_silent" ]; then
        age=$((back - s_silent))
        window=$((back - s_silent + 20))
    fi
    mark "  $g answers again $(awk -v a="$t0" -v b="$s_answer" 'BEGIN { printf "%.0f", b - a }') s after its reboot (published since $s_answer); silent ${age} s when its new vm-connectd said Hello (the daemon silent ~${window} s); no failed monitor; same QEMU (domain id $id0)"
    echo "$(awk -v a="$t0" -v b="$s_answer" 'BEGIN { printf "%.0f", b - a }') $age $window" >>"$GC/reboots"
    wait_until 240 gc_online g1 || die "$g did not rejoin the guest cluster after its reboot"
    mark "  guest cluster whole again: ${GUESTS[*]}"
}

cut_link() {
    local node
    node=$(host_of g2)
    on "$node" virsh -c qemu:///system domif-setlink g2 52:54:00:98:00:02 down >/dev/null
}

scenario() {
    need_root
    [ -f "$TIMELINE" ] || die "run '$0 up' first"
    T0=${T0:-$(now)}
    : >"$GC/failovers"
    local h1 h2 other n
    # a host node fenced by an earlier run comes back first
    for n in $("$MNSH" nodes); do
        if [ -z "$("$MNSH" pids "$n")" ]; then
            "$MNSH" poweron "$n"
            wait_until 120 clone_running_everywhere vm-stonithd || die "$n did not rejoin"
            mark "host node $n powered on again"
        fi
        ping_restore "$n"
    done
    wait_until 120 gc_online g1 || die "the guest cluster is not whole: $(gview g1 || true)"
    # 1. the guests on different nodes: g2 live-migrates while the guest cluster runs
    h1=$(host_of g1) h2=$(host_of g2)
    if [ "$h1" = "$h2" ]; then
        other=$("$MNSH" nodes | tr ' ' '\n' | grep -vx "$h1" | head -1)
        move_watched g2 "$other"
        vmctl location move g2
        wait_until 120 rsc_on prmVMCTL_g2 "$other" || die "g2 did not move to $other"
        wait_until 60 gc_online g1 || die "the guest cluster lost a node during g2's live migration"
        h2=$(host_of g2)
        mark "g2 live-migrated to $h2 (vm-ctl resource move, then location move: $h2 preferred); guest cluster kept both nodes; g1 on $h1"
    fi

    # 1b. g1's critical service stops: unhealthy, its host monitor fails
    [ "$FENCE" != vmstonith ] || health_step

    # 2. g2's host loses its ping targets: the guest cluster moves dummy off g2, fencing nothing
    ping_step "$(host_of g2)"

    # 3. cut g2's cluster link: g1 fences g2 through g1's host, across to g2's host
    failover "cut g2's cluster link (virsh domif-setlink on $h2)" cut_link

    # 4. g1 live-migrates while the guest cluster runs, then fences again from its new host
    h1=$(host_of g1)
    other=$("$MNSH" nodes | tr ' ' '\n' | grep -vx "$h1" | grep -vx "$(host_of g2)" | head -1)
    move_watched g1 "$other"
    wait_until 60 gc_online g1 || die "the guest cluster lost a node during g1's live migration"
    mark "g1 live-migrated to $(host_of g1) (vm-ctl resource move); guest cluster kept both nodes"
    failover "cut g2's cluster link again (g1 now on $(host_of g1))" cut_link

    # 5. power off g2's whole host node through the host cluster's fencing
    h2=$(host_of g2)
    local fencer
    fencer=$("$MNSH" nodes | tr ' ' '\n' | grep -vx "$h2" | head -1)
    failover "power off host node $h2 (stonith_admin --fence $h2, g2's host)" \
        on "$fencer" stonith_admin --fence "$h2" --timeout 60
    case $(host_of g2) in "" | "$h2") die "the host cluster did not restart g2 on another node" ;; esac
    mark "host cluster recovered g2 on $(host_of g2); guest cluster whole again"
    if [ "$FENCE" = vmstonith ]; then
        # vm-ctl status with a host node down: the node, its daemons and fence readiness
        local nrow
        nrow=$(vmctl_json | jq -r --arg n "$h2" '.status.nodes[] | select(.name == $n) |
            "\(.name) \(.state), daemons \([.daemons[] | "\(.daemon) \(.state)"] | join(", ")), fence ready \(.fence.ready)"') ||
            die "vm-ctl status failed with $h2 down"
        case $nrow in "$h2 offline,"*"fence ready false" | "$h2 unclean,"*"fence ready false") ;;
        *) die "vm-ctl status does not show $h2 down: $nrow" ;; esac
        mark "  vm-ctl status with $h2 down: $nrow; $(vmctl_json | vmctl_guest g2)"
    fi
    summary
}

summary() {
    local what c gr r o gd d b
    {
        echo
        echo "== failover timelines (seconds after the failure; FENCE=$FENCE)"
        printf '  %-44s %9s %8s %8s %8s %9s %8s\n' "failure" "requested" "at host" "stopped" "fenced" "recovered" "rejoined"
        while IFS='|' read -r what c gr r o gd d b; do
            awk -v w="$what" -v c="$c" -v gr="$gr" -v r="$r" -v o="$o" -v gd="$gd" -v d="$d" -v b="$b" '
                function f(x) { return x == "-" ? "-" : sprintf("%.1f", x - c) }
                BEGIN { printf "  %-44s %9s %8s %8s %8s %9s %8s\n", substr(w, 1, 44), f(gr), f(r), f(o), f(gd), f(d), f(b) }'
        done <"$GC/failovers"
        echo "  requested: g1's cluster asks for the fence (its pacemaker.log); at host: the request reaches"
        echo "  vm-stonithd; stopped: the host cluster confirms g2 off; fenced: g1's cluster sees the fence"
        echo "  succeed; recovered: it runs dummy on g1; rejoined: g2 back in the guest cluster"
    } | tee -a "$TIMELINE"
    echo "timeline: $TIMELINE"
}

# --- the vm-managerd benchmark (bench/vm-managerd.sh gc) ----------------------------------------
# Needs PROBE=1 at `up`: the rule file exposes pmkt_probe as it is, vm-client mirrors it, and
# vm-managerd logs at debug. In the guests, vm-client's attrd_updater becomes a wrapper that,
# once attrd has taken pmkt_probe's new value, asks the host's vm-managerd `get pmkt_probe`:
# vm-managerd's log says when that request arrived, on the host's clock, as every other time of
# the benchmark (a sample includes that request's way from the guest, ~0.1 s under TCG). It
# also prints "PMKT-PROBE VALUE" on the guest's serial console (QEMU logs it on the host):
# compared with the get's time, not used for the figures (the console lagged ~1.6 s behind after
# a live migration). Samples (ms, one per line) go to $GC/bench-{change,migration,churn}.ms.
read -r -d '' PROBE_MARK <<'SH' || true
#!/bin/sh
# the benchmark's attrd_updater (guestcluster.sh managerd-bench): the real one; then, once
# attrd has pmkt_probe's new value, a request the host's vm-managerd logs, and a console line
attrd_updater "$@" || exit
if [ "$1 $2 $3" = "-n pmkt_probe -U" ]; then
    vm-connect -t manager -r "get pmkt_probe" >/dev/null 2>&1
    echo "PMKT-PROBE $4" >/dev/ttyS0
fi
exit 0
SH
# PROBE_DIAG=1: the same, and when the real one started and ended, and likewise vm-connect
# (the guest's clock, in ns; more processes in every sample: for finding where time goes, not
# for the figures)
read -r -d '' PROBE_MARK_DIAG <<'SH' || true
#!/bin/sh
a=$(date +%s%N)
attrd_updater "$@" || exit
b=$(date +%s%N)
if [ "$1 $2 $3" = "-n pmkt_probe -U" ]; then
    vm-connect -t manager -r "get pmkt_probe" >/dev/null 2>&1
    echo "PMKT-PROBE $4" >/dev/ttyS0
fi
echo "attrd $a $b $1 $2 $3 $4" >>/run/pmkt-probe.times
exit 0
SH
read -r -d '' PROBE_VC_DIAG <<'SH' || true
#!/bin/sh
a=$(date +%s%N)
vm-connect "$@"
rc=$?
b=$(date +%s%N)
echo "vm-connect $a $b rc=$rc" >>/run/pmkt-probe.times
exit $rc
SH

# probe_time NODE SINCE: when (host clock) g2's first `get` after SINCE reached NODE's
# vm-managerd (its debug log, read through the node's holder: the node's own /run)
probe_time() {
    local log iso end t
    log=/proc/$(cat "$MN/$1/holder.pid")/root/run/pmkt/vm-managerd.log
    iso=$(date -u -d "@$2" +%Y-%m-%dT%H:%M:%S.%6NZ)
    end=$((SECONDS + 60))
    while [ $SECONDS -lt $end ]; do
        t=$(awk -v s="$iso" '$1 >= s && /answered at once/ && /guest=g2/ && /verb="?get/ { print $1; exit }' "$log" 2>/dev/null) || t=
        if [ -n "$t" ]; then epoch "$t"; return 0; fi
        sleep 0.02
    done
    die "g2 did not report pmkt_probe's new value within 60 s (no get in $1's vm-managerd log)"
}
# console_time NODE VALUE: when (host clock) g2's console line for VALUE is seen in its log on
# NODE, "-" after 10 s
console_time() {
    local end=$((SECONDS + 10))
    while [ $SECONDS -lt $end ]; do
        if grep -qa "PMKT-PROBE $2" "$MN/$1/log-libvirt/g2.console.log" 2>/dev/null; then now; return 0; fi
        sleep 0.02
    done
    echo -
}
# ms A B: milliseconds from A to B
ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f\n", (b - a) * 1000 }'; }

# probe_changes N FILE TAG: N changes of pmkt_probe on g2's host, each timed from
# attrd_updater's return on the host to the guest's attrd holding the value; ~1 s apart, as
# separate events. FILE.raw: "T0 T1 HOST CONSOLE-T" of each.
probe_changes() {
    local n=$1 out=$2 tag=$3 i h v t0 t1
    : >"$out"
    : >"$out.raw"
    for i in $(seq "$n"); do
        h=$(host_of g2)
        v=$(printf '%s-%04d' "$tag" "$i")
        on "$h" attrd_updater -n pmkt_probe -U "$v"
        t0=$(now)
        t1=$(probe_time "$h" "$t0")
        ms "$t0" "$t1" >>"$out"
        echo "$t0 $t1 $h $(console_time "$h" "$v")" >>"$out.raw"
        sleep 1
    done
}

# split FILE: for each sample of FILE.raw, the milliseconds on the host (attrd_updater's return
# to vm-managerd's answer leaving, its debug log on that node) and in the guest (from there to
# the guest's get reaching the host), "HOST GUEST" per line into FILE.split
split_samples() {
    local f=$1 t0 t1 h line ta
    : >"$f.split"
    while read -r t0 t1 h _; do
        ta=
        while IFS= read -r line; do
            ta=$(epoch "${line%% *}")
            if awk -v a="$ta" -v b="$t0" -v c="$t1" 'BEGIN { exit !(a >= b - 0.05 && a <= c) }'; then break; fi
            ta=
        done < <(grep -a 'held wait answered' "$GC/logs/$h/vm-managerd.log" | grep -a 'guest=g2' | grep -a 'why="\?changed')
        [ -n "$ta" ] || { echo "- -" >>"$f.split"; continue; }
        echo "$(ms "$t0" "$ta") $(ms "$ta" "$t1")" >>"$f.split"
    done <"$f.raw"
}

managerd_bench() {
    local samples=${1:-20} migrations=${2:-5} g n i src dst v t1 tr ta ev churn
    [ "${PROBE:-0}" = 1 ] || die "managerd-bench needs PROBE=1 (bench/vm-managerd.sh gc sets it)"
    up
    for g in "${GUESTS[@]}"; do
        gexec "$g" "cat >/root/attrd-mark <<'SH'
$([ "${PROBE_DIAG:-0}" = 1 ] && echo "$PROBE_MARK_DIAG" || echo "$PROBE_MARK")
SH
chmod 0755 /root/attrd-mark
cat >/root/vmc-mark <<'SH'
$PROBE_VC_DIAG
SH
chmod 0755 /root/vmc-mark" 20 >/dev/null ||
            die "cannot install the probe's wrapper in $g"
    done
    if [ "${PROBE_DIAG:-0}" = 1 ]; then
        gexec g1 'crm_resource --resource vm-client --set-parameter vm_connect --parameter-value /root/vmc-mark' 60 >/dev/null ||
            die "cannot set vm-client's vm_connect"
    fi
    # vm-client reloads (its watcher starts again) with the wrapper as its attrd_updater
    gexec g1 'crm_resource --resource vm-client --set-parameter attrd_updater --parameter-value /root/attrd-mark' 60 >/dev/null ||
        die "cannot set vm-client's attrd_updater"
    n=$(now)
    for g in $("$MNSH" nodes); do on "$g" attrd_updater -n pmkt_probe -U "warm-$g"; done
    probe_time "$(host_of g2)" "$n" >/dev/null
    # what one attrd_updater costs in the guest (its clock; the guest side's main part)
    # shellcheck disable=SC2016 # expanded in the guest
    gexec g2 'a=$(date +%s%N); for i in 1 2 3 4 5; do attrd_updater -n pmkt_bench_cost -U $i; done;
        b=$(date +%s%N); attrd_updater -n pmkt_bench_cost -D; echo $(( (b - a) / 5000000 ))' 60 |
        tr -d '[:space:]' >"$GC/bench-attrd-cost.ms"
    log "managerd bench: in g2, one attrd_updater -U takes $(cat "$GC/bench-attrd-cost.ms") ms (mean of 5)"
    log "managerd bench: the probe works; $samples changes"
    probe_changes "$samples" "$GC/bench-change.ms" change

    # after a live migration: the new host's value differs from the old one's; from the end of
    # the migration (libvirt's "Resumed Migrated" on the new host) to the guest holding it
    log "managerd bench: $migrations live migrations of g2"
    : >"$GC/bench-migration.ms"
    : >"$GC/bench-migration.raw"
    for i in $(seq "$migrations"); do
        src=$(host_of g2)
        dst=$("$MNSH" nodes | tr ' ' '\n' | grep -vx "$src" | sed -n "$(( (i - 1) % 2 + 1 ))p")
        v=$(printf '%s-m%04d' "$dst" "$i")
        on "$dst" attrd_updater -n pmkt_probe -U "$v"
        sleep 1
        # every domain's events: g2 is not defined on the new host before the migration
        "$MNSH" bg "$dst" "events-$i" virsh -c qemu:///system event --event lifecycle --loop --timestamp
        sleep 0.5
        vmctl resource move g2 -n "$dst" --wait=180 >>"$GC/bench-migration.log" 2>&1 || die "g2 did not migrate to $dst"
        ev=$(grep -a "domain 'g2': Resumed Migrated" "$MN/$dst/events-$i.out" | head -1) ||
            die "no 'Resumed Migrated' event of g2 on $dst: $(cat "$MN/$dst/events-$i.out")"
        "$MNSH" stopbg "$dst" "events-$i"
        tr=$(epoch "${ev%%: event*}")
        t1=$(probe_time "$dst" "$tr")
        ms "$tr" "$t1" >>"$GC/bench-migration.ms"
        echo "$v resumed $tr got $t1 console $(console_time "$dst" "$v")" >>"$GC/bench-migration.raw"
        # when g2's request reached the new host's vm-managerd (answered at once, its log)
        ta=$(on "$dst" cat /run/pmkt/vm-managerd.log | grep -a 'answered at once' | grep -a 'guest=g2' | grep -a 'verb="\?wait' |
            while IFS= read -r line; do
                t=$(epoch "${line%% *}")
                if awk -v a="$t" -v b="$tr" 'BEGIN { exit !(a >= b) }'; then echo "$t"; break; fi
            done) || ta=
        log "  $src -> $dst: resumed $(ms "$tr" "$t1") ms before the guest held $v (its request at $dst's vm-managerd after $([ -n "$ta" ] && ms "$tr" "$ta" || echo '?') ms)"
        # the guest cluster whole again, and settled, before the next one (TCG guests run
        # slowly for a while after a migration: their translated code stays behind)
        wait_until 60 gc_online g1 || die "the guest cluster lost a node after g2's migration to $dst"
        sleep 5
    done

    # under CIB churn: another writer changes the CIB (crm_config) in a loop on another node
    # while the probe changes; the write rate is measured
    n=$("$MNSH" nodes | tr ' ' '\n' | grep -vx "$(host_of g2)" | head -1)
    : >"$GC/bench-churn.writes"
    (
        i=0
        while kill -0 $$ 2>/dev/null; do
            i=$((i + 1))
            on "$n" crm_attribute --type crm_config --name pmkt-churn --update "$i" >/dev/null 2>&1 &&
                now >>"$GC/bench-churn.writes"
            sleep 0.1
        done
    ) &
    churn=$!
    sleep 3
    log "managerd bench: $samples changes under CIB churn (crm_attribute on $n)"
    probe_changes "$samples" "$GC/bench-churn.ms" churn
    kill "$churn" 2>/dev/null || true
    wait "$churn" 2>/dev/null || true
    on "$n" crm_attribute --type crm_config --name pmkt-churn --delete >/dev/null 2>&1 || true
    awk 'NR == 1 { a = $1 } { b = $1 } END { if (NR > 1) printf "%d CIB writes in %.1f s: %.1f/s\n", NR, b - a, (NR - 1) / (b - a) }' \
        "$GC/bench-churn.writes" | tee "$GC/bench-churn.rate"
    keep_logs
    split_samples "$GC/bench-change.ms"
    split_samples "$GC/bench-churn.ms"
    if [ "${PROBE_DIAG:-0}" = 1 ]; then
        gexec g2 'cat /run/pmkt-probe.times' 60 >"$GC/bench-diag.times" || true
        gexec g2 'journalctl -u vm-connectd-guest -o short-unix --no-pager | tail -n 100' 60 >"$GC/bench-diag.journal" || true
        cp "$GC/bench-migration.log" "$GC/bench-diag.migrations" 2>/dev/null || true
    fi
}

# the host daemons' logs of every node that runs, and the end of each guest's Pacemaker log,
# into $GC/logs (before `down` loses them)
keep_logs() {
    local n f g
    for n in $("$MNSH" nodes); do
        mkdir -p "$GC/logs/$n"
        for f in vm-managerd vm-connectd vm-stonithd; do
            on "$n" cat "/run/pmkt/$f.log" >"$GC/logs/$n/$f.log" 2>/dev/null || true
        done
    done
    for g in "${GUESTS[@]}"; do
        gexec "$g" 'tail -n 300 /var/log/pacemaker/pacemaker.log' 20 >"$GC/logs/$g-pacemaker.log" 2>/dev/null || true
    done
}

down() { "$MNSH" down; }

cmd=${1:-}
[ $# -gt 0 ] && shift
case $cmd in
up) up ;;
scenario) scenario ;;
run)
    # nothing stays up after a failed step either (unless KEEP=1)
    if [ "${KEEP:-0}" != 1 ]; then trap 'down' EXIT; fi
    up
    scenario ;;
bench)
    # the comparison benchmark's part: N link cuts with both guests on n1, no migration
    if [ "${KEEP:-0}" != 1 ]; then trap 'down' EXIT; fi
    up
    : >"$GC/failovers"
    for i in $(seq "${1:-3}"); do failover "cut g2's cluster link (run $i)" cut_link; done
    summary ;;
managerd-bench)
    # bench/vm-managerd.sh gc: up, the probe's samples, down
    if [ "${KEEP:-0}" != 1 ]; then trap 'keep_logs; down' EXIT; fi
    managerd_bench "$@" ;;
reboot)
    # guest reboots on a cluster `up` (the vm_liveness_timeout measurement, docs/benchmarks.md):
    # g2 (no health check of its own) reboots itself N times; each run's seconds go to $GC/reboots
    need_root
    [ -f "$TIMELINE" ] || die "run '$0 up' first"
    T0=$(now)
    for i in $(seq "${1:-3}"); do reboot_step g2; done
    echo "reboot-to-answering s, silent age at return s, daemon silent s (one run a line):"
    cat "$GC/reboots" ;;
down) down ;;
gexec) [ $# -ge 2 ] || die "usage: $0 gexec GUEST CMD [TIMEOUT]"; gexec "$@" ;;
*) die "usage: $0 up|scenario|run|down|gexec GUEST CMD [TIMEOUT] (see the header)" ;;
esac
