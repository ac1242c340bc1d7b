#!/bin/bash
# The guest tier's image: Debian's own kernel (extracted from its .deb, never installed on this
# machine) and a busybox initramfs that carries the project's guest-side binaries, all static
# (`cargo xtask guest-bins`: vm-connectd, vm-connect, and the guest fence agent fence_vmstonith
# with OpenSSL linked in), and the cluster-glue plugin external/vm-stonith.
#
# Usage: guest-image.sh [--no-build]
#   Output: $PMKT_STATE/guest/{vmlinuz,initrd.img}; rebuilt only when an input changed.
#   --no-build  use the binaries already in target/guest-bins instead of running cargo.
#
# The guest's init (see init below):
#   * loads the virtio modules (Debian builds VIRTIO_PCI and VIRTIO_CONSOLE as modules) and
#     creates /dev/virtio-ports/<name> from /sys/class/virtio-ports (udev's job on a full
#     distribution; there is no udev here);
#   * reads its role from the kernel command line:
#       pmkt.name=NAME   hostname, and the name in its greeting
#       pmkt.vport=echo  (default) a test echo service on the "vmconnectd" port: on every host
#                        connection it writes "hello-from-NAME", then answers each line L with
#                        "echo:L"; when the host goes away (EOF) it waits for the next one
#       pmkt.vport=daemon  run the project's guest daemon on it: `vm-connectd -t guest`
#                        (restarted if it exits; log in /var/log/vm-connectd.log)
#       pmkt.vport=none  leave the port alone (a test starts what it wants on it)
#   * powers off on the ACPI power button, so `virsh shutdown` (VirtualDomain's stop) works;
#   * prints "PMKT-GUEST-READY name=NAME uptime=S" and leaves a root shell on ttyS0.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
OUT=$PMKT_STATE/guest
if [ "${1:-}" != --no-build ]; then
    log "building the guest binaries (static)"
    build_guest_bins
fi
check_guest_bins

# --- kernel: download the .deb once per machine ---
mkdir -p "$PMKT_CACHE" "$OUT"
KPKG=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
[ -n "$KPKG" ] || die "cannot find the kernel package linux-image-amd64 depends on (apt-get update?)"
KDIR=$PMKT_CACHE/$KPKG
if [ ! -f "$KDIR/done" ]; then
    log "fetching $KPKG"
    rm -rf "$KDIR"
    mkdir -p "$KDIR"
    (cd "$KDIR" && { apt-get -q download "$KPKG" || { apt-get -q update && apt-get -q download "$KPKG"; }; })
    dpkg-deb -x "$KDIR"/"$KPKG"_*.deb "$KDIR/x"
    rm -f "$KDIR"/"$KPKG"_*.deb
    touch "$KDIR/done"
fi
KVER=$(ls "$KDIR/x/lib/modules")
MODS="drivers/virtio/virtio_ring drivers/virtio/virtio drivers/virtio/virtio_pci_modern_dev
      drivers/virtio/virtio_pci_legacy_dev drivers/virtio/virtio_pci drivers/char/virtio_console
      drivers/input/evdev drivers/acpi/button"

# --- skip the rebuild when nothing changed ---
stamp=$( {
    cat "$0"
    echo "$KVER"
    for b in "${GUEST_BINS[@]}"; do sha256sum "$GUEST_BIN_DIR/$b"; done
    sha256sum "$REPO_DIR/agents/stonith/external/vm-stonith"
} | sha256sum | cut -d' ' -f1)
if [ -f "$OUT/stamp" ] && [ "$(cat "$OUT/stamp")" = "$stamp" ] && [ -f "$OUT/initrd.img" ]; then
    log "guest image up to date ($OUT)"
    exit 0
fi

t0=$(now)
WORK=$(mktemp -d "$PMKT_STATE/guest-build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
R=$WORK/root
mkdir -p "$R"/{bin,sbin,dev,proc,sys,tmp,run,etc,root,lib/modules,usr/bin,usr/sbin,var/run,var/log}
cp /bin/busybox "$R/bin/busybox"
# `busybox --list` names busybox itself: linking it onto itself makes init fail with ELOOP.
for a in $("$R/bin/busybox" --list); do [ "$a" = busybox ] || ln -sf busybox "$R/bin/$a"; done
for m in $MODS; do
    f=$KDIR/x/lib/modules/$KVER/kernel/$m.ko
    if [ -f "$f" ]; then cp "$f" "$R/lib/modules/"
    elif [ -f "$f.xz" ]; then xz -dc "$f.xz" >"$R/lib/modules/$(basename "$m").ko"
    else die "kernel module $m missing from $KPKG"; fi
done
install -m 0755 "$GUEST_BIN_DIR/vm-connectd" "$R/usr/sbin/vm-connectd"
install -m 0755 "$GUEST_BIN_DIR/vm-connect" "$R/usr/bin/vm-connect"
ln -s ../bin/vm-connect "$R/usr/sbin/vm-connect" # the original's path, which agents use
# the guest fence agents, where a package would put them
install -m 0755 "$GUEST_BIN_DIR/fence_vmstonith" "$R/usr/sbin/fence_vmstonith"
install -D -m 0755 "$REPO_DIR/agents/stonith/external/vm-stonith" \
    "$R/usr/lib/stonith/plugins/external/vm-stonith"
mkdir -p "$R/etc/pm-kvm-tools" && chmod 0700 "$R/etc/pm-kvm-tools"

cat >"$R/init" <<'INIT'
#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /run
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_console evdev button; do
    insmod /lib/modules/$m.ko 2>/dev/null
done
name=guest vport=echo
for arg in $(cat /proc/cmdline); do
    case $arg in
        pmkt.name=*) name=${arg#pmkt.name=} ;;
        pmkt.vport=*) vport=${arg#pmkt.vport=} ;;
    esac
done
hostname "$name"
# what udev's virtio-ports rule does on a full distribution
mkdir -p /dev/virtio-ports
for p in /sys/class/virtio-ports/vport*; do
    [ -e "$p/name" ] || continue
    ln -sf "/dev/$(basename "$p")" "/dev/virtio-ports/$(cat "$p/name")"
done
if [ "$vport" = daemon ]; then
    # the guest daemon finds the port itself (link or sysfs); a supervisor loop restarts it
    ( while :; do vm-connectd -t guest >>/var/log/vm-connectd.log 2>&1; sleep 1; done ) &
    echo $! >/run/vm-connectd-supervisor.pid
fi
if [ "$vport" = echo ] && [ -e /dev/virtio-ports/vmconnectd ]; then
    (
        while :; do
            # one fd for both directions: a port can be opened only once. The greeting blocks
            # until a host connects; EOF means the host went away (restart, migration).
            exec 3<>/dev/virtio-ports/vmconnectd
            echo "hello-from-$name" >&3
            while read -r line <&3; do echo "echo:$line" >&3; done
            exec 3<&-
            sleep 0.2
        done
    ) &
fi
for e in /sys/class/input/event*; do
    if grep -q "Power Button" "$e/device/name" 2>/dev/null; then
        ( head -c 1 "/dev/input/$(basename "$e")" >/dev/null && poweroff -f ) &
    fi
done
echo "PMKT-GUEST-READY name=$name uptime=$(cut -d' ' -f1 /proc/uptime)"
setsid cttyhack sh
poweroff -f
INIT
chmod +x "$R/init"
cp "$KDIR/x/boot/vmlinuz-$KVER" "$OUT/vmlinuz.new"
(cd "$R" && find . | cpio -o -H newc --quiet | gzip -1 >"$OUT/initrd.img.new")
mv "$OUT/vmlinuz.new" "$OUT/vmlinuz"
mv "$OUT/initrd.img.new" "$OUT/initrd.img"
echo "$stamp" >"$OUT/stamp"
log "guest image built in $(elapsed "$t0") s: kernel $KVER, initrd $(du -h "$OUT/initrd.img" | cut -f1)"
