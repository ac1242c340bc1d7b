#!/bin/bash
# A pristine Debian 12 root for one command: proves that a command works on a fresh machine,
# where nothing from an earlier run exists (no package, directory, image or daemon that an
# earlier tier, sandbox or developer left behind). See docs/testing.md ("the pristine tier").
#
# Usage (as root; needs git and debootstrap on this machine, installs debootstrap if missing):
#   pristine.sh run [--keep] [--check-clean] [--copy-in SRC DEST]... -- CMD...
#       Extract a fresh root from the cached tarball into /var/tmp/pmkt-pristine.XXXXXX, clone
#       this repository's committed HEAD into it (/root/pm-kvm-tools: committed files only, no
#       target/), copy each SRC of this machine to DEST in the root, and run CMD there as root
#       (cwd = the clone; env -i with PATH, HOME, LANG, the toolchain's variables, and CI and
#       PMKT_* when set: their paths name places inside the root). Exits with CMD's status.
#       Afterwards (also on failure, SIGINT, SIGTERM) it stops what CMD left running in the root
#       (the test bed's teardown, then SIGKILL by PID for processes whose root is the root),
#       unmounts it and deletes it. --keep leaves the root mounted with whatever runs in it (a
#       sandbox stays up to explore); `exec` enters it again, `clean` removes it.
#       --check-clean: when CMD succeeded, fail unless it left nothing behind: no process in the
#       root (nor in a namespace made from it), no mount under it beyond the ones made here, no
#       new veth in this machine's network namespace (each leftover printed).
#   pristine.sh exec ROOT -- CMD...   run CMD in a kept root (as run does, without the clone)
#   pristine.sh clean [ROOT]          stop, unmount and delete kept or abandoned roots (all of
#                                     them without ROOT); roots of a run still going are left
#   pristine.sh list                  the roots there are, with their state
#   pristine.sh tarball               (re)build the cached tarball only
#
# The root: `debootstrap --variant=minbase bookworm` from the mirror apt uses here, plus
# ca-certificates (TLS to crates.io: a machine that installed rustup has it) and the /etc/hosts
# the Debian installer writes (debootstrap writes none). Cached as
# $PMKT_CACHE/pristine/bookworm-minbase.tar.gz, rebuilt when older than 7 days or when its recipe
# (this list) changes; never taken half-written (built under a temporary name, then renamed).
# Entered with: a self-bind (the test bed's `unshare -m --propagation private` needs the root to
# be a mount point), proc, /dev and /sys rbound (made slaves, so no unmount ever reaches this
# machine's), a fresh tmpfs on /run, this machine's resolv.conf and CA bundle
# (/etc/ssl/certs/ca-certificates.crt: the CAs its network needs to reach crates.io), and the
# Rust toolchain bind-mounted read-only at /opt/rust (RUSTUP_HOME=/opt/rust/.rustup, cargo from
# /opt/rust/.cargo/bin; CARGO_HOME=/root/.cargo inside the root, so crates are fetched afresh).
# The toolchain must have the x86_64-unknown-linux-musl target (the guest binaries need it; it
# cannot be added through a read-only mount): added here first if missing, as .ci/run does.
#
# Env: PMKT_CACHE (lib.sh), PMKT_PRISTINE_BASE (where roots go, default /var/tmp),
#      RUSTUP_HOME / CARGO_HOME (the toolchain to bind, default ~/.rustup, ~/.cargo).
set -euo pipefail
# what the caller set (lib.sh exports defaults of its own: those are not passed in)
PASS_ENV=$(compgen -e | grep -E '^(CI|PMKT_[A-Z_]*)$' | grep -vx PMKT_PRISTINE_BASE || true)
. "$(dirname "$0")/lib.sh"

BASE=${PMKT_PRISTINE_BASE:-/var/tmp}
PREFIX=pmkt-pristine.
CACHE=$PMKT_CACHE/pristine
TARBALL=$CACHE/bookworm-minbase.tar.gz
SUITE=bookworm
INCLUDE=ca-certificates
MAX_AGE_DAYS=7
HOST_RUSTUP=${RUSTUP_HOME:-$HOME/.rustup}
HOST_CARGO=${CARGO_HOME:-$HOME/.cargo}
TOOLCHAIN_MNT=/opt/rust
CLONE=/root/pm-kvm-tools
# inside each root: the marker that says what it is (leftovers.sh skips the root it runs in)
MARKER=.pmkt-pristine

plog() { printf '[pristine %s] %s\n' "$(date -u +%T)" "$*" >&2; }

# the mirror apt uses on this machine (deb822 sources first, then the one-line format)
mirror() {
    local m
    m=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
    [ -n "$m" ] || m=$(awk '$1 == "deb" && $2 ~ /^http/ { print $2; exit }' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true)
    echo "${m:-http://deb.debian.org/debian}"
}

# --- the cached tarball --------------------------------------------------------------------
tarball() {
    local recipe t tmp
    command -v debootstrap >/dev/null || "$TESTBED_DIR/install.sh" pristine
    mkdir -p "$CACHE"
    exec 8>"$CACHE/.lock"
    flock 8
    # (bump v when the steps below change: the tarball is rebuilt)
    recipe="v2 $SUITE minbase $INCLUDE $(mirror)"
    if [ -f "$TARBALL" ] && [ "$(cat "$TARBALL.recipe" 2>/dev/null)" = "$recipe" ] &&
        [ -z "$(find "$TARBALL" -mtime +"$MAX_AGE_DAYS")" ]; then
        plog "tarball up to date: $TARBALL ($(du -h "$TARBALL" | cut -f1), $(date -u -r "$TARBALL" +%F))"
        exec 8>&-
        return 0
    fi
    t=$(now)
    tmp=$(mktemp -d "$BASE/pmkt-debootstrap.XXXXXX")
    plog "debootstrap --variant=minbase --include=$INCLUDE $SUITE from $(mirror) (log: $CACHE/debootstrap.log)"
    if ! debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$tmp/root" "$(mirror)" \
        >"$CACHE/debootstrap.log" 2>&1; then
        tail -n 20 "$CACHE/debootstrap.log" >&2
        safe_rm "$tmp"
        die "debootstrap failed (see $CACHE/debootstrap.log)"
    fi
    # no apt lists or .debs in the tarball (apt-get update in the root fetches current lists)
    rm -rf "$tmp/root"/var/lib/apt/lists/* "$tmp/root"/var/cache/apt/archives/*.deb
    touch "$tmp/root/$MARKER"
    # what the Debian installer writes and debootstrap does not (it copies /etc/hostname only)
    printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' \
        "$(cat "$tmp/root/etc/hostname" 2>/dev/null || echo debian)" >"$tmp/root/etc/hosts"
    # written under a temporary name and renamed: a killed build never looks complete
    tar -C "$tmp/root" -czf "$TARBALL.new" .
    safe_rm "$tmp"
    mv "$TARBALL.new" "$TARBALL"
    echo "$recipe" >"$TARBALL.recipe"
    plog "tarball built in $(elapsed "$t") s: $TARBALL ($(du -h "$TARBALL" | cut -f1))"
    exec 8>&-
}

# --- mounts --------------------------------------------------------------------------------
# mounts_under DIR: mount points at or below DIR in this mount namespace, deepest first
mounts_under() {
    awk -v d="$1" '$2 == d || index($2, d "/") == 1 { print $2 }' /proc/mounts | sort -r
}

enter_mounts() {
    local r=$1
    mount --bind "$r" "$r"
    mount --make-private "$r"
    mount -t proc proc "$r/proc"
    mount --rbind /dev "$r/dev"
    mount --make-rslave "$r/dev"
    mount --rbind /sys "$r/sys"
    mount --make-rslave "$r/sys"
    mount -t tmpfs -o mode=0755 tmpfs "$r/run"
    mkdir -p "$r$TOOLCHAIN_MNT/.rustup" "$r$TOOLCHAIN_MNT/.cargo/bin"
    mount --bind "$HOST_RUSTUP" "$r$TOOLCHAIN_MNT/.rustup"
    mount -o remount,bind,ro "$r$TOOLCHAIN_MNT/.rustup"
    mount --bind "$HOST_CARGO/bin" "$r$TOOLCHAIN_MNT/.cargo/bin"
    mount -o remount,bind,ro "$r$TOOLCHAIN_MNT/.cargo/bin"
    cp -L /etc/resolv.conf "$r/etc/resolv.conf" 2>/dev/null || true
    # this machine's trust store, as it has it (the CAs of the network it is on, which reach
    # crates.io, are part of it): like resolv.conf, configuration of the machine, not a package
    if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
        mkdir -p "$r/etc/ssl/certs"
        cp -L /etc/ssl/certs/ca-certificates.crt "$r/etc/ssl/certs/ca-certificates.crt"
    fi
}

# umount_root ROOT: every mount below it, deepest first, lazily (a daemon may still hold a
# file), the self-bind last; fails if one is left
umount_root() {
    local r=$1 m
    for m in $(mounts_under "$r"); do
        [ "$m" = "$r" ] && continue
        umount -l "$m" 2>/dev/null || true
    done
    if mounts_under "$r" | grep -qx "$r"; then umount -l "$r" 2>/dev/null || true; fi
    [ -z "$(mounts_under "$r")" ] || { plog "still mounted under $r: $(mounts_under "$r" | xargs)"; return 1; }
}

# safe_rm DIR: delete a root only when nothing is mounted in it (an rm -rf through a bound
# /dev or /sys would wipe this machine's)
safe_rm() {
    local d=$1
    [ -e "$d" ] || return 0
    umount_root "$d" || die "refusing to delete $d: mounts remain"
    rm -rf --one-file-system "$d"
}

# --- processes -----------------------------------------------------------------------------
# root_pids ROOT: processes whose root directory is ROOT (by device and inode, which also finds
# the test bed's node namespaces, whose mount tables differ from ours)
root_pids() {
    local id p
    id=$(stat -c '%d:%i' "$1") || return 0
    for p in /proc/[0-9]*; do
        [ "$(stat -L -c '%d:%i' "$p/root" 2>/dev/null)" = "$id" ] && echo "${p#/proc/}"
    done
    return 0
}

stop_root_procs() {
    local r=$1 p i
    p=$(root_pids "$r" | xargs)
    [ -n "$p" ] || return 0
    # the test bed's own teardown first (graceful, by its PID files; both state dirs)
    if [ -x "$r$CLONE/tests/testbed/teardown.sh" ]; then
        plog "stopping the test bed in the root (teardown.sh, sandbox down)"
        local envs
        mapfile -t envs < <(root_env)
        timeout 180 chroot "$r" /usr/bin/env -i "${envs[@]}" \
            "$CLONE/tests/testbed/teardown.sh" >/dev/null 2>&1 || true
        timeout 180 chroot "$r" /usr/bin/env -i "${envs[@]}" \
            PMKT_STATE="${PMKT_SANDBOX_STATE:-/tmp/pmkt-sandbox}" \
            "$CLONE/tests/testbed/multinode.sh" down >/dev/null 2>&1 || true
    fi
    for i in 1 2 3; do
        p=$(root_pids "$r" | xargs)
        [ -n "$p" ] || return 0
        plog "killing what is left in the root: $p"
        # shellcheck disable=SC2086 # one PID per word
        kill -KILL $p 2>/dev/null || true
        sleep 1
    done
    p=$(root_pids "$r" | xargs)
    [ -z "$p" ] || plog "processes still in the root: $p"
}

# destroy ROOT: stop, unmount, delete; the owner file goes last
destroy() {
    local r=$1 t
    t=$(now)
    stop_root_procs "$r"
    umount_root "$r" || die "cannot unmount everything under $r; not deleting it"
    rm -rf --one-file-system "$r"
    rm -f "$r.owner"
    plog "root $r removed in $(elapsed "$t") s"
}

# --- running -------------------------------------------------------------------------------
# root_env: the environment of a command in the root, one NAME=VALUE a line
root_env() {
    local v
    echo "PATH=$TOOLCHAIN_MNT/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    printf '%s\n' HOME=/root LANG=C.UTF-8 TERM=dumb RUSTUP_HOME="$TOOLCHAIN_MNT/.rustup" \
        CARGO_HOME=/root/.cargo RUSTUP_AUTO_INSTALL=0
    for v in $PASS_ENV; do echo "$v=${!v}"; done
}

in_root() {
    local r=$1
    shift
    local wd=$CLONE envs
    [ -d "$r$wd" ] || wd=/root
    mapfile -t envs < <(root_env)
    chroot "$r" /usr/bin/env -i -C "$wd" "${envs[@]}" "$@"
}

check_toolchain() {
    [ -x "$HOST_CARGO/bin/cargo" ] || die "no Rust toolchain at $HOST_CARGO (rustup): it is assumed installed"
    [ -d "$HOST_RUSTUP/toolchains" ] || die "no rustup toolchains in $HOST_RUSTUP"
    # (it cannot be added through the read-only mount in the root)
    need_musl_target
}

veths() { ip -o link show type veth 2>/dev/null | awk -F': ' '{ print $2 }' | sort; }

# check_clean ROOT MOUNTS-AT-ENTRY VETHS-AT-ENTRY: what the command left behind
check_clean() {
    local r=$1 found=0 p pids m
    # orphans are reaped lazily here (not by a systemd): give the exiting ones a moment
    for p in 1 2 3 4 5 6 7 8 9 10; do [ -z "$(root_pids "$r")" ] && break; sleep 0.5; done
    pids=$(root_pids "$r" | xargs)
    for p in $pids; do
        plog "leftover: process $p ($(cat "/proc/$p/comm" 2>/dev/null), net namespace $(readlink "/proc/$p/ns/net" 2>/dev/null)) in the root"
        found=1
    done
    m=$(comm -13 <(printf '%s\n' "$2" | sort) <(mounts_under "$r" | sort) | xargs)
    [ -z "$m" ] || { plog "leftover: mounts under the root: $m"; found=1; }
    m=$(comm -13 <(printf '%s\n' "$3") <(veths) | xargs)
    [ -z "$m" ] || { plog "leftover: veths in this machine's network namespace: $m"; found=1; }
    if [ "$found" = 0 ]; then
        plog "clean: the command left no process (none in the root or its namespaces), no mount, no veth"
    fi
    return "$found"
}

ROOT=
KEEP=0
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "$ROOT" ]; then
        if [ "$KEEP" = 1 ]; then
            echo kept >"$ROOT.owner"
            plog "kept: $ROOT (still mounted, with what runs in it); enter: $0 exec $ROOT -- CMD; remove: $0 clean $ROOT"
        else
            destroy "$ROOT" || rc=1
        fi
    fi
    exit "$rc"
}

run() {
    local copies=() t0 t sha dirty check=0 mounts0 veths0
    while [ $# -gt 0 ]; do
        case $1 in
        --keep) KEEP=1; shift ;;
        --check-clean) check=1; shift ;;
        --copy-in) [ $# -ge 3 ] || die "--copy-in SRC DEST"; copies+=("$2" "$3"); shift 3 ;;
        --) shift; break ;;
        *) die "usage: $0 run [--keep] [--copy-in SRC DEST]... -- CMD..." ;;
        esac
    done
    [ $# -gt 0 ] || die "usage: $0 run [--keep] [--copy-in SRC DEST]... -- CMD..."
    need_root
    command -v git >/dev/null || die "git is needed on this machine (to clone the repository into the root)"
    t0=$(now)
    check_toolchain
    sha=$(git -C "$REPO_DIR" rev-parse HEAD)
    dirty=$(git -C "$REPO_DIR" status --porcelain --untracked-files=no | head -3 | xargs)
    [ -z "$dirty" ] || plog "note: uncommitted changes are not used (only committed HEAD $sha): $dirty"
    tarball

    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    t=$(now)
    mkdir -p "$BASE"
    ROOT=$(mktemp -d "$BASE/${PREFIX}XXXXXX")
    echo "$$" >"$ROOT.owner"
    tar -C "$ROOT" -xzf "$TARBALL"
    plog "root $ROOT extracted in $(elapsed "$t") s"
    t=$(now)
    git clone -q --no-hardlinks "$REPO_DIR" "$ROOT$CLONE"
    git -C "$ROOT$CLONE" checkout -q --detach "$sha"
    plog "repository cloned at $(git -C "$ROOT$CLONE" log -1 --format='%h %s' | cut -c1-80) in $(elapsed "$t") s"
    local i
    for ((i = 0; i < ${#copies[@]}; i += 2)); do
        mkdir -p "$(dirname "$ROOT/${copies[i + 1]#/}")"
        cp -a "${copies[i]}" "$ROOT/${copies[i + 1]#/}"
        plog "copied in: ${copies[i]} -> ${copies[i + 1]}"
    done
    enter_mounts "$ROOT"
    mounts0=$(mounts_under "$ROOT")
    veths0=$(veths)
    plog "entered (proc, /dev, /sys, /run, toolchain read-only at $TOOLCHAIN_MNT) after $(elapsed "$t0") s"
    t=$(now)
    plog "running: $*"
    local rc=0 child
    # in the background and waited for: a trapped SIGTERM or SIGINT interrupts `wait` at once
    # (bash runs a trap only after a foreground command ends)
    in_root "$ROOT" "$@" &
    child=$!
    wait "$child" || rc=$?
    plog "command exited with status $rc after $(elapsed "$t") s (all: $(elapsed "$t0") s)"
    if [ "$check" = 1 ] && [ "$rc" = 0 ]; then
        check_clean "$ROOT" "$mounts0" "$veths0" || rc=1
    fi
    exit "$rc"
}

exec_in() {
    local r=${1:-}
    { [ -n "$r" ] && [ -f "$r/$MARKER" ]; } || die "usage: $0 exec ROOT -- CMD... (ROOT: a kept root, see $0 list)"
    shift
    [ "${1:-}" = -- ] && shift
    [ $# -gt 0 ] || die "usage: $0 exec ROOT -- CMD..."
    need_root
    # remount if it was unmounted (a reboot, or clean stopped half-way)
    mounts_under "$r" | grep -qx "$r/proc" || enter_mounts "$r"
    in_root "$r" "$@"
}

# roots: every root directory there is
roots() { find "$BASE" -maxdepth 1 -type d -name "${PREFIX}*" 2>/dev/null | sort; }
owner_alive() {
    local o
    o=$(cat "$1.owner" 2>/dev/null) || return 1
    [ "$o" != kept ] && alive "$o"
}

clean() {
    need_root
    local r
    if [ $# -gt 0 ]; then
        r=${1%/}
        case ${r##*/} in "$PREFIX"*) ;; *) die "$r is not a pristine root" ;; esac
        [ -d "$r" ] || die "no root $r"
        owner_alive "$r" && die "$r belongs to a run still going (pid $(cat "$r.owner"))"
        destroy "$r"
        return 0
    fi
    for r in $(roots); do
        if owner_alive "$r"; then plog "left: $r (its run, pid $(cat "$r.owner"), is still going)"; continue; fi
        destroy "$r"
    done
    # a killed tarball build's temporary tree
    while IFS= read -r r; do safe_rm "$r"; done < <(find "$BASE" -maxdepth 1 -type d -name 'pmkt-debootstrap.*' 2>/dev/null)
}

list() {
    local r state
    for r in $(roots); do
        if owner_alive "$r"; then state="running (pid $(cat "$r.owner"))"
        elif [ "$(cat "$r.owner" 2>/dev/null)" = kept ]; then state=kept
        else state=abandoned; fi
        printf '%s  %s  mounts: %s  processes: %s\n' "$r" "$state" "$(mounts_under "$r" | wc -l)" "$(root_pids "$r" | wc -l)"
    done
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case $cmd in
run) run "$@" ;;
exec) exec_in "$@" ;;
clean) clean "$@" ;;
list) list ;;
tarball) need_root; tarball ;;
*) die "usage: $0 run [--keep] [--copy-in SRC DEST]... -- CMD... | exec ROOT -- CMD... | clean [ROOT] | list | tarball" ;;
esac
