#!/bin/bash
# piuparts.sh DEBDIR BASETGZ: Debian's installation test (piuparts) of the packages of
# `cargo xtask deb`, on the build machine (piuparts makes and enters its own chroot from
# BASETGZ, a tarball of a debootstrap --variant=minbase bookworm root, such as the one
# tests/testbed/pristine.sh caches). For each of pm-kvm-tools and pm-kvm-tools-guest:
#
#   - install and purge: installed with its dependencies, removed, purged; piuparts fails on
#     any file left behind, on a maintainer script error, and on a modified file of another
#     package;
#   - upgrade: the same package relabelled <version>~prev, from a local apt repository, is
#     installed by apt first, then upgraded to the real one, then purged.
#
# The functional checks (programs, man pages, conffiles, units, an operator's conffile edit
# kept across an upgrade) run inside the pristine root: tests/testbed/pkg-check.sh.
#
# Needs piuparts and dpkg-dev (apt-get install piuparts dpkg-dev); takes about 4 minutes on
# the CI machine type (2 cores). Prints "[piuparts]" lines; exit 1 on the first failure, with
# piuparts' log.
set -euo pipefail

say() { printf '[piuparts] %s\n' "$*"; }
fail() {
    printf '[piuparts] FAIL: %s\n' "$*" >&2
    exit 1
}

if [ $# -ne 2 ] || [ ! -d "$1" ] || [ ! -f "$2" ]; then
    fail "usage: $0 DEBDIR BASETGZ"
fi
[ "$(id -u)" = 0 ] || fail "piuparts needs root"
command -v piuparts >/dev/null || fail "piuparts is not installed (apt-get install piuparts)"
command -v dpkg-scanpackages >/dev/null || fail "dpkg-scanpackages is not installed (apt-get install dpkg-dev)"
DEBDIR=$(cd "$1" && pwd)
BASETGZ=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")
# the mirror apt uses here (first deb.debian.org-like URI of the main suite)
MIRROR=${PIUPARTS_MIRROR:-http://deb.debian.org/debian}
WORK=$(mktemp -d /var/tmp/piuparts-check.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

for pkg in pm-kvm-tools-guest pm-kvm-tools; do
    debs=("$DEBDIR/${pkg}"_*_amd64.deb)
    if [ ${#debs[@]} -ne 1 ] || [ ! -f "${debs[0]}" ]; then
        fail "want exactly one ${pkg}_*_amd64.deb in $DEBDIR"
    fi
    deb=${debs[0]}
    version=$(dpkg-deb -f "$deb" Version)

    # the previous build: the same package, a lower version, in a local repository
    repo=$WORK/repo-$pkg
    mkdir -p "$repo" "$WORK/tree-$pkg"
    dpkg-deb -R "$deb" "$WORK/tree-$pkg"
    sed -i "s/^Version: .*/Version: ${version}~prev/" "$WORK/tree-$pkg/DEBIAN/control"
    dpkg-deb -b "$WORK/tree-$pkg" "$repo/${pkg}_${version}~prev_amd64.deb" >/dev/null
    (cd "$repo" && dpkg-scanpackages . /dev/null 2>/dev/null >Packages)

    log=$WORK/$pkg.log
    t0=$(date +%s)
    # --bindmount makes the repository visible inside piuparts' chroot at the same path
    if ! piuparts --basetgz="$BASETGZ" -d bookworm -m "$MIRROR" \
        --bindmount="$repo" --extra-repo="deb [trusted=yes] file://$repo ./" \
        -l "$log" "$deb" >/dev/null 2>&1; then
        grep -E 'ERROR|FAIL' "$log" >&2 || tail -40 "$log" >&2
        fail "$pkg: piuparts failed (log above)"
    fi
    grep -q 'PASS: Installation and purging test' "$log" || fail "$pkg: no install/purge test ran"
    grep -q 'PASS: Installation, upgrade and purging tests' "$log" || fail "$pkg: no upgrade test ran"
    say "$pkg $version: install+purge and upgrade from ${version}~prev+purge pass ($(($(date +%s) - t0)) s)"
done
say "all piuparts tests passed"
