#!/bin/bash
# The guest-cluster image: a small Debian 12 (bookworm) system that runs a real Pacemaker +
# corosync cluster inside TCG guests (started by libvirt or plain QEMU), with the project's
# guest side (vm-connectd in guest mode, vm-connect, fence_vmstonith, the cluster-glue plugin
# external/vm-stonith, the vm-client agent) and fence_virt (for comparison benchmarks) baked in.
#
# Why this shape:
#   * One read-only root for every guest at once. root.img is a raw ext4 file system that the
#     initramfs mounts read-only (ro,noload) as the LOWER layer of an overlayfs whose upper layer
#     is a tmpfs: a guest writes only to its own RAM, never to the image. So the same file backs
#     any number of guests, needs no per-guest copy or qcow2 overlay, every boot starts from the
#     same state, and live migration needs neither disk copying nor shared-storage cache rules
#     (nothing is ever written to a disk).
#   * Identity comes from a per-guest "seed" disk (/dev/vdb, a small read-only ext4 made by
#     `gc-image.sh seed`): the initramfs copies its root/ subtree over the new root before systemd
#     starts, so /etc/hostname, systemd-networkd config, /etc/hosts, corosync.conf, a seeded CIB
#     and keys are in place from the first instruction of PID 1. No seed: a guest without cluster.
#   * The project's guest side is the guest package (pm-kvm-tools-guest), installed with dpkg
#     as users install it (cluster-glue, which its plugin needs, comes with resource-agents).
#   * Debian's own kernel (extracted from its .deb in $PMKT_CACHE, as guest-image.sh does),
#     booted with -kernel/-initrd; only the ~20 modules the guest needs go into the image.
#
# Usage (as root):
#   gc-image.sh rootfs   only the debootstrap tree (the slow, network-bound part; no binaries
#                        needed): CI runs it in the background while Rust builds
#   gc-image.sh [build] [--no-build]
#       Build or refresh $PMKT_CACHE/gc/{vmlinuz,initrd.img,root.img}. Kernel command line:
#       "console=ttyS0 quiet net.ifnames=0 panic=-1"; disks: root.img first (vda), the seed
#       second (vdb), both read-only. The project comes from its guest package
#       (pm-kvm-tools-guest, cargo xtask deb); --no-build: use the one already in target/debian.
#       Idempotent: the debootstrap tree ($PMKT_CACHE/gc/rootfs, .debs in .../debcache) is
#       rebuilt only when the package list or the rootfs recipe in this script changes; the
#       project's binaries, modules, initramfs and root.img only when one of their inputs did.
#   gc-image.sh seed SRC_DIR OUT_IMG
#       Make a seed disk (ext4, label pmktseed) from SRC_DIR/root/... Ownership is translated by
#       NAME from this host to the image (chown hacluster:haclient here means the guest's
#       hacluster); directories the image already has keep the image's owner and mode.
#
# The guest: root autologin on ttyS0 (TERM=dumb, plain "\h# " prompt, no bracketed paste), so
# tests can type commands (tests/src/guest.rs Console::run); "PMKT-GUEST-READY name=N uptime=S"
# on ttyS0 once multi-user.target is reached and the root shell is up; systemd-networkd; volatile
# journal; corosync + pacemaker enabled when the seed provides /etc/corosync/corosync.conf;
# vm-connectd-guest.service on /dev/virtio-ports/vmconnectd (created by the guest's udev);
# logind powers off on the ACPI power button (virsh shutdown works).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

OUT=$PMKT_CACHE/gc
ROOTFS=$OUT/rootfs
DEBCACHE=$OUT/debcache
SUITE=bookworm
PKGS=systemd-sysv,udev,kmod,iproute2,procps,pacemaker,pacemaker-cli-utils,corosync,libssl3,fence-virt,iputils-ping
# kernel modules (paths under kernel/, load order): the initramfs loads these ...
INITRD_MODS="drivers/virtio/virtio_ring drivers/virtio/virtio drivers/virtio/virtio_pci_modern_dev
  drivers/virtio/virtio_pci_legacy_dev drivers/virtio/virtio_pci drivers/block/virtio_blk
  lib/crc16 fs/mbcache fs/jbd2/jbd2 crypto/crc32c_generic fs/ext4/ext4
  net/core/failover drivers/net/net_failover drivers/net/virtio_net fs/overlayfs/overlay"
# ... and the root file system has them too, plus: the virtio-serial ports, the entropy device,
# the ACPI power button (logind powers off on it: virsh shutdown) and autofs4 (systemd loads it)
ROOT_MODS="$INITRD_MODS drivers/char/virtio_console drivers/char/hw_random/virtio-rng
  drivers/input/evdev drivers/acpi/button fs/autofs/autofs4"

usage() {
    die "usage: gc-image.sh [build] [--no-build] | gc-image.sh rootfs | gc-image.sh seed SRC_DIR OUT_IMG"
}

# safe_rm DIR: remove a tree that a failed debootstrap/chroot step may have left mounts in
safe_rm() {
    local d=$1 m
    [ -e "$d" ] || return 0
    awk -v d="$d/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r |
        while read -r m; do umount -l "$m" || die "cannot unmount $m"; done
    rm -rf --one-file-system "$d"
}

sha_of() { sha256sum | cut -d' ' -f1; }
# ---------------------------------------------------------------------------------------------
# Stage 1, the rootfs recipe: debootstrap + everything baked into the image that does not come
# from this repository. Its stamp is the package list plus the text of these two functions.
# ---------------------------------------------------------------------------------------------
rootfs_debootstrap() {
    local dest=$1 mirror
    mirror=${MIRROR:-$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)}
    [ -n "$mirror" ] || mirror=$(awk '$1 == "deb" && $2 ~ /^http/ { print $2; exit }' /etc/apt/sources.list 2>/dev/null || true)
    [ -n "$mirror" ] || mirror=http://deb.debian.org/debian
    mkdir -p "$DEBCACHE"
    log "debootstrap $SUITE from $mirror (log: $OUT/debootstrap.log)"
    if ! debootstrap --variant=minbase --cache-dir="$DEBCACHE" --include="$PKGS" \
        "$SUITE" "$dest" "$mirror" >"$OUT/debootstrap.log" 2>&1; then
        tail -n 20 "$OUT/debootstrap.log" >&2
        die "debootstrap failed (see $OUT/debootstrap.log)"
    fi
}

rootfs_configure() {
    local r=$1 u
    # --- slim down: no docs, man pages, locales, apt lists, and not the .debs debootstrap
    # leaves in the target's apt cache (they stay in $DEBCACHE)
    rm -rf "$r"/usr/share/doc/* "$r"/usr/share/man/* "$r"/usr/share/info/* \
        "$r"/usr/share/locale/* "$r"/var/cache/apt/archives/*.deb "$r"/var/cache/apt/*.bin \
        "$r"/var/lib/apt/lists/* "$r"/var/log/*.log "$r"/var/cache/debconf/*-old
    # --- identity: the seed provides it. debootstrap copied this host's hostname and
    # resolv.conf; an empty machine-id makes systemd generate one per boot (unique per guest,
    # not "first boot" semantics).
    echo pmkt-gc >"$r/etc/hostname"
    printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$r/etc/hosts"
    rm -f "$r/etc/resolv.conf" "$r/var/lib/dbus/machine-id"
    : >"$r/etc/machine-id"
    # no motd on the console (the host reads it)
    rm -f "$r"/etc/update-motd.d/* "$r/etc/motd"
    # the root file system is an overlay assembled by the initramfs: nothing to mount
    echo '# / is an overlay (read-only image + tmpfs) set up by the initramfs' >"$r/etc/fstab"

    # --- serial console: root autologin, a dumb terminal, a plain prompt
    mkdir -p "$r/etc/systemd/system/serial-getty@ttyS0.service.d"
    cat >"$r/etc/systemd/system/serial-getty@ttyS0.service.d/pmkt-autologin.conf" <<'EOF'
[Service]
Environment=TERM=dumb
ExecStart=
ExecStart=-/sbin/agetty --autologin root --noclear --keep-baud 115200,57600,38400,9600 %I dumb
EOF
    cat >"$r/root/.bash_profile" <<'EOF'
# pm-kvm-tools guest cluster: a console driven line by line by the test bed
[ -f ~/.bashrc ] && . ~/.bashrc
export TERM=dumb PAGER=cat SYSTEMD_PAGER= SYSTEMD_COLORS=0 SYSTEMD_LESS= LANG=C.UTF-8
stty cols 500 rows 50 -ixon 2>/dev/null
case $(tty) in /dev/ttyS0) : >/run/pmkt-shell-ready ;; esac
EOF
    cat >>"$r/root/.bashrc" <<'EOF'
# pm-kvm-tools: plain prompt, no history expansion, no title/colour escapes
PS1='\h# '
unset PROMPT_COMMAND
set +H
EOF
    cat >"$r/root/.inputrc" <<'EOF'
$include /etc/inputrc
set enable-bracketed-paste off
set bell-style none
EOF

    # --- "PMKT-GUEST-READY" on the serial console once multi-user.target is reached and root's
    # shell on ttyS0 is up (so what the host types next is read by that shell)
    cat >"$r/usr/local/sbin/pmkt-ready" <<'EOF'
#!/bin/sh
i=0
while [ ! -e /run/pmkt-shell-ready ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
tty=/dev/ttyS0; [ -c $tty ] || tty=/dev/console
printf '\nPMKT-GUEST-READY name=%s uptime=%s\n' "$(hostname)" "$(cut -d' ' -f1 /proc/uptime)" >$tty
EOF
    chmod 0755 "$r/usr/local/sbin/pmkt-ready"
    # DefaultDependencies=no: a target orders itself after the units it wants, which would be
    # a cycle with After=multi-user.target
    cat >"$r/etc/systemd/system/pmkt-ready.service" <<'EOF'
[Unit]
Description=pm-kvm-tools: announce on the serial console that the guest is up
DefaultDependencies=no
After=multi-user.target serial-getty@ttyS0.service

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/pmkt-ready

[Install]
WantedBy=multi-user.target
EOF

    # --- network: systemd-networkd with the seed's /etc/systemd/network/*.network; corosync
    # wants network-online: any one configured link is enough, never wait 2 minutes, and do
    # not wait at all without a seeded network (multi-user.target would wait for it)
    mkdir -p "$r/etc/systemd/system/systemd-networkd-wait-online.service.d"
    cat >"$r/etc/systemd/system/systemd-networkd-wait-online.service.d/pmkt.conf" <<'EOF'
[Unit]
ConditionPathExistsGlob=/etc/systemd/network/*.network

[Service]
ExecStart=
ExecStart=/lib/systemd/systemd-networkd-wait-online --any --timeout=30
EOF

    # --- quiet, RAM-only, nothing periodic (logd: cluster-glue's, which nothing here uses;
    # binfmt_misc: not in the image's modules, its automount would fail on every boot)
    mkdir -p "$r/etc/systemd/journald.conf.d"
    printf '[Journal]\nStorage=volatile\nRuntimeMaxUse=16M\n' >"$r/etc/systemd/journald.conf.d/pmkt.conf"
    for u in apt-daily.timer apt-daily.service apt-daily-upgrade.timer apt-daily-upgrade.service \
        e2scrub_all.timer e2scrub_all.service e2scrub_reap.service fstrim.timer fstrim.service \
        dpkg-db-backup.timer getty@tty1.service systemd-timesyncd.service logd.service \
        proc-sys-fs-binfmt_misc.automount proc-sys-fs-binfmt_misc.mount systemd-binfmt.service; do
        ln -sfn /dev/null "$r/etc/systemd/system/$u"
    done

    # --- the cluster: started at boot when the seed brought a corosync.conf (the package's
    # default single-node one is removed so a seedless guest runs no cluster)
    rm -f "$r/etc/corosync/corosync.conf"
    for u in corosync pacemaker; do
        mkdir -p "$r/etc/systemd/system/$u.service.d"
        printf '[Unit]\nConditionPathExists=/etc/corosync/corosync.conf\n' \
            >"$r/etc/systemd/system/$u.service.d/pmkt-seed.conf"
    done
    # the guest cluster's fence agent talks to the host through vm-connectd
    printf '[Unit]\nAfter=vm-connectd-guest.service\n' \
        >"$r/etc/systemd/system/pacemaker.service.d/pmkt-vm-connectd.conf"
    chroot "$r" systemctl enable systemd-networkd.service corosync.service pacemaker.service \
        pmkt-ready.service >/dev/null 2>&1 || die "systemctl enable failed in the image"
}

# ---------------------------------------------------------------------------------------------
# Stage 2: what comes from this machine and this repository (kernel modules, the project's
# binaries and unit), the initramfs and root.img.
# ---------------------------------------------------------------------------------------------
inject_project() {
    local r=$1 m f dst
    # kernel modules: only ours (the full tree is ~400 MB), then depmod for udev's autoload
    rm -rf "${r:?}/lib/modules"/*
    for m in $ROOT_MODS; do
        dst=$r/lib/modules/$KVER/kernel/$m.ko
        mkdir -p "$(dirname "$dst")"
        f=$KMOD/kernel/$m.ko
        if [ -f "$f" ]; then cp "$f" "$dst"
        elif [ -f "$f.xz" ]; then xz -dc "$f.xz" >"$dst"
        else die "kernel module $m missing from $KPKG"; fi
    done
    cp "$KMOD"/modules.order "$KMOD"/modules.builtin* "$r/lib/modules/$KVER/"
    chroot "$r" depmod -a "$KVER" || die "depmod failed in the image"
    # virtio_console early (systemd-modules-load, before basic.target) rather than whenever
    # udev's coldplug gets to it: vm-connectd-guest.service resolves DeviceAllow=
    # char-virtio-portsdev when it starts, and a major not registered yet is left out of the
    # device policy, so its first open of the port failed (EPERM) and it started only on restart
    echo virtio_console >"$r/etc/modules-load.d/pmkt.conf"
    # the project's guest side, as users install it: the guest package (its dependencies are
    # in the image already; dpkg fails rather than fetch anything). Its maintainer script
    # enables vm-connectd-guest.service; the image relies on that, so it is checked here.
    cp "$GUEST_DEB" "$r/tmp/pm-kvm-tools-guest.deb"
    chroot "$r" dpkg -i /tmp/pm-kvm-tools-guest.deb >"$OUT/dpkg-guest.log" 2>&1 || {
        cat "$OUT/dpkg-guest.log" >&2
        die "dpkg -i $GUEST_DEB failed in the image"
    }
    rm -f "$r/tmp/pm-kvm-tools-guest.deb"
    [ -L "$r/etc/systemd/system/multi-user.target.wants/vm-connectd-guest.service" ] ||
        die "the guest package did not enable vm-connectd-guest.service"
    # what the guest package's ocf:pm-kvm-tools:vm-client runs (resource-agents' ocf-shellfuncs,
    # attrd_updater: the package only recommends them; pacemaker's dependencies bring them), and
    # the story's ocf:pacemaker:Dummy: nothing is added for them, so check they are there
    for f in /usr/lib/ocf/resource.d/pm-kvm-tools/vm-client /usr/lib/ocf/lib/heartbeat/ocf-shellfuncs \
        /usr/sbin/attrd_updater /usr/lib/ocf/resource.d/pacemaker/Dummy; do
        [ -e "$r$f" ] || die "the image lacks $f (vm-client and the guest cluster's Dummy need it)"
    done
    install -d -m 0700 "$r/etc/pm-kvm-tools"
}

# make_initrd OUTFILE: busybox, the modules, and /init (overlay root + seed, then systemd)
make_initrd() {
    local out=$1 w m names=""
    w=$(mktemp -d "$OUT/initrd.XXXXXX")
    mkdir -p "$w"/{bin,dev,proc,sys,lower,rw,seed,newroot,lib/modules}
    cp /bin/busybox "$w/bin/busybox"
    for m in sh mount umount insmod switch_root sleep cat mkdir cp ls grep wc echo; do
        ln -s busybox "$w/bin/$m"
    done
    for m in $INITRD_MODS; do
        cp "$ROOTFS/lib/modules/$KVER/kernel/$m.ko" "$w/lib/modules/"
        names="$names ${m##*/}"
    done
    printf '#!/bin/sh\nMODULES="%s"\n' "${names# }" >"$w/init"
    cat >>"$w/init" <<'INIT'
# pm-kvm-tools guest-cluster initramfs (gc-image.sh): read-only image + tmpfs as an overlay
# root, the seed disk's root/ copied on top, then systemd.
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
say() { echo "pmkt-initrd: $*" >/dev/console; }
fail() {
    say "$* (boot with pmkt.rescue for a shell)"
    case " $(cat /proc/cmdline) " in *" pmkt.rescue "*) exec sh ;; esac
    exit 1 # kernel panic: with panic=-1 and -no-reboot, QEMU exits at once
}
root=/dev/vda seed=/dev/vdb
for w in $(cat /proc/cmdline); do
    case $w in
        pmkt.root=*) root=${w#pmkt.root=} ;;
        pmkt.seed=*) seed=${w#pmkt.seed=} ;;
    esac
done
for m in $MODULES; do insmod "/lib/modules/$m.ko" || fail "insmod $m failed"; done
# wait until every virtio block device (virtio device id 2) has its disk
want=$(grep -l '^0x0002$' /sys/bus/virtio/devices/*/device 2>/dev/null | wc -l)
i=0
while [ "$(ls /sys/block | grep -c '^vd')" -lt "$want" ] || [ ! -b "$root" ]; do
    [ $i -lt 100 ] || fail "no root disk $root after 10 s"
    sleep 0.1
    i=$((i + 1))
done
mount -t ext4 -o ro,noload "$root" /lower || fail "cannot mount $root read-only"
mount -t tmpfs -o mode=0755 tmpfs /rw || fail "cannot mount the tmpfs"
mkdir -p /rw/upper /rw/work
mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work overlay /newroot ||
    fail "cannot mount the overlay root"
if [ -b "$seed" ]; then
    mount -t ext4 -o ro,noload "$seed" /seed || fail "cannot mount the seed $seed"
    if [ -d /seed/root ]; then
        cp -a /seed/root/. /newroot/ || fail "cannot copy the seed"
    fi
    umount /seed
    say "root: $root (read-only) + tmpfs overlay; seed: $seed"
else
    say "root: $root (read-only) + tmpfs overlay; no seed"
fi
mount --move /dev /newroot/dev
mount --move /proc /newroot/proc
mount --move /sys /newroot/sys
exec switch_root /newroot /sbin/init
INIT
    chmod 0755 "$w/init"
    (cd "$w" && find . | cpio -o -H newc --quiet | gzip -1 >"$out")
    rm -rf "$w"
}

# ---------------------------------------------------------------------------------------------
# stage 1: the debootstrap tree, rebuilt only when its recipe changed; sets STAMP1
rootfs_stage() {
    local t stamp1
    stamp1=$( {
        echo "$SUITE $PKGS"
        declare -f rootfs_debootstrap rootfs_configure
    } | sha_of)
    if [ -f "$OUT/rootfs.stamp" ] && [ "$(cat "$OUT/rootfs.stamp")" = "$stamp1" ] && [ -d "$ROOTFS" ]; then
        log "gc image: rootfs up to date"
    else
        t=$(now)
        rm -f "$OUT/rootfs.stamp" "$OUT/image.stamp"
        safe_rm "$ROOTFS.new"
        rootfs_debootstrap "$ROOTFS.new"
        log "gc image: debootstrap done in $(elapsed "$t") s"
        rootfs_configure "$ROOTFS.new"
        safe_rm "$ROOTFS"
        mv "$ROOTFS.new" "$ROOTFS"
        echo "$stamp1" >"$OUT/rootfs.stamp"
        log "gc image: rootfs built in $(elapsed "$t") s ($(du -sh "$ROOTFS" | cut -f1))"
    fi
    STAMP1=$stamp1
}

# needs root and the tools; takes the build lock (tests and the sandbox share $PMKT_CACHE)
prepare() {
    need_root
    if ! command -v debootstrap >/dev/null || ! command -v cpio >/dev/null ||
        ! [ -x /bin/busybox ] || ! is_static /bin/busybox; then
        "$TESTBED_DIR/install.sh" gc
    fi
    mkdir -p "$OUT"
    exec 9>"$OUT/.lock"
    flock 9
    # an initramfs work dir of a build that was killed (the lock says no build is running)
    find "$OUT" -mindepth 1 -maxdepth 1 -type d -name 'initrd.*' -exec rm -rf {} +
}

build() {
    local no_build=$1 t0 t stamp1 stamp2 size b
    t0=$(now)
    prepare

    if [ "$no_build" != 1 ]; then
        build_debs
    fi
    GUEST_DEB=$(project_deb pm-kvm-tools-guest)

    # --- kernel: the .deb extracted once per machine (shared with guest-image.sh) ---
    KPKG=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
    [ -n "$KPKG" ] || die "cannot find the kernel package linux-image-amd64 depends on (apt-get update?)"
    local kdir=$PMKT_CACHE/$KPKG
    if [ ! -f "$kdir/done" ]; then
        t=$(now)
        log "fetching $KPKG"
        rm -rf "$kdir"
        mkdir -p "$kdir"
        (cd "$kdir" && { apt-get -q download "$KPKG" || { apt-get -q update && apt-get -q download "$KPKG"; }; })
        dpkg-deb -x "$kdir"/"$KPKG"_*.deb "$kdir/x"
        rm -f "$kdir"/"$KPKG"_*.deb
        touch "$kdir/done"
        log "gc image: kernel fetched in $(elapsed "$t") s"
    fi
    KVER=$(ls "$kdir/x/lib/modules")
    KMOD=$kdir/x/lib/modules/$KVER

    rootfs_stage
    stamp1=$STAMP1

    # --- stage 2: modules, binaries, initramfs, root.img ---
    stamp2=$( {
        echo "$stamp1 $KVER $ROOT_MODS"
        declare -f inject_project make_initrd
        sha256sum "$GUEST_DEB" /bin/busybox
    } | sha_of)
    if [ -f "$OUT/image.stamp" ] && [ "$(cat "$OUT/image.stamp")" = "$stamp2" ] &&
        [ -f "$OUT/root.img" ] && [ -f "$OUT/initrd.img" ] && [ -f "$OUT/vmlinuz" ]; then
        log "gc image up to date ($OUT) in $(elapsed "$t0") s"
        return 0
    fi
    rm -f "$OUT/image.stamp"
    t=$(now)
    inject_project "$ROOTFS"
    make_initrd "$OUT/initrd.img.new"
    cp "$kdir/x/boot/vmlinuz-$KVER" "$OUT/vmlinuz.new"
    log "gc image: binaries, modules and initramfs in $(elapsed "$t") s"
    # a quarter more than the tree plus 64 MiB: the file is sparse anyway, and read-only
    t=$(now)
    size=$(du -sm "$ROOTFS" | awk '{ print int($1 * 1.25) + 64 }')
    rm -f "$OUT/root.img.new"
    mkfs.ext4 -q -F -L pmktroot -d "$ROOTFS" "$OUT/root.img.new" "${size}M" >/dev/null
    log "gc image: root.img (${size} MiB) made in $(elapsed "$t") s"
    # rename, never rewrite: guests still running keep the file they booted from
    mv "$OUT/vmlinuz.new" "$OUT/vmlinuz"
    mv "$OUT/initrd.img.new" "$OUT/initrd.img"
    mv "$OUT/root.img.new" "$OUT/root.img"
    echo "$stamp2" >"$OUT/image.stamp"
    log "gc image built in $(elapsed "$t0") s: kernel $KVER, initrd $(du -h "$OUT/initrd.img" | cut -f1)," \
        "root.img $(du -h --apparent-size "$OUT/root.img" | cut -f1) ($(du -h "$OUT/root.img" | cut -f1) used) in $OUT"
}

# seed SRC_DIR OUT_IMG
seed() {
    local src=$1 out=$2 tmp f rel u g nu ng size
    need_root
    [ -d "$src/root" ] || die "seed: $src has no root/ directory"
    [ -f "$ROOTFS/etc/passwd" ] || die "seed: no image rootfs in $ROOTFS (run gc-image.sh build first)"
    local -A uid=() gid=()
    while IFS=: read -r u _ f _; do uid[$u]=$f; done <"$ROOTFS/etc/passwd"
    while IFS=: read -r g _ f _; do gid[$g]=$f; done <"$ROOTFS/etc/group"
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/pmkt-seed.XXXXXX")
    # shellcheck disable=SC2064 # expand now: $tmp is local
    trap "rm -rf '$tmp'" EXIT
    cp -a "$src/root" "$tmp/root"
    while IFS= read -r -d '' f; do
        rel=${f#"$tmp/root"}
        if [ -L "$ROOTFS$rel" ] && [ -n "$rel" ]; then
            die "seed: $rel is a symlink in the image ($(readlink "$ROOTFS$rel")); use the real path"
        fi
        if [ -d "$f" ] && [ ! -L "$f" ] && [ -d "$ROOTFS$rel" ]; then
            # `cp -a` in the initramfs would give an existing directory the seed's owner and
            # mode (a 0700 mktemp dir as / locks hacluster out): keep the image's
            chown --reference="$ROOTFS$rel" "$f"
            chmod --reference="$ROOTFS$rel" "$f"
            continue
        fi
        read -r u g < <(stat -c '%U %G' "$f")
        nu=${uid[$u]-} ng=${gid[$g]-}
        [ -n "$nu" ] || nu=$(stat -c %u "$f")
        [ -n "$ng" ] || ng=$(stat -c %g "$f")
        chown -h "$nu:$ng" "$f"
    done < <(find "$tmp/root" -print0)
    size=$(du -sm "$tmp" | awk '{ n = $1 * 2 + 4; print (n < 8 ? 8 : n) }')
    mkdir -p "$(dirname "$out")"
    rm -f "$out.new"
    mkfs.ext4 -q -F -L pmktseed -d "$tmp" "$out.new" "${size}M" >/dev/null
    mv "$out.new" "$out"
    rm -rf "$tmp"
    trap - EXIT
}

case ${1:-build} in
build | --no-build)
    [ "${1:-}" = build ] && shift
    no_build=0
    for a in "$@"; do
        case $a in --no-build) no_build=1 ;; *) usage ;; esac
    done
    build "$no_build"
    ;;
rootfs)
    # stage 1 alone (no project binaries needed): CI starts it early, beside the Rust build
    prepare
    rootfs_stage
    ;;
seed)
    [ $# -eq 3 ] || usage
    seed "$2" "$3"
    ;;
*) usage ;;
esac
