#!/bin/bash
# pkg-check.sh DEBDIR: checks the Debian packages (cargo xtask deb; DEBDIR holds
# pm-kvm-tools_*.deb and pm-kvm-tools-guest_*.deb) the way an operator uses them, INSIDE a
# pristine Debian 12 root (debootstrap --variant=minbase, entered with chroot: see
# tests/testbed/pristine.sh). It installs and purges packages: it refuses to run where
# pacemaker or a pm-kvm-tools package is already installed.
#
#   1. the guest package, installed by apt (which resolves its dependencies):
#      fence_vmstonith -o metadata is valid XML, vm-connect --help, man -w fence_vmstonith,
#      the cluster-glue plugin answers, its unit is enabled (the guest relay must run at every
#      boot); then purged;
#   2. the host package, installed by apt: vm-ctl --version is Cargo's version, man vm-stonithd
#      renders, /etc/vm-ctl.conf and /etc/pm-kvm-tools/vm-stonithd.toml are registered
#      conffiles, vm-stonithd --check accepts the shipped configuration, the OCF agents print
#      their metadata, the units are present and not enabled (no systemd runs here: units are
#      files, "enabled" is a symlink in a .wants directory);
#   3. upgrade from the previous build (the same package relabelled <version>~prev) with an
#      operator's edit of /etc/vm-ctl.conf: kept, and no conffile prompt (stdin is /dev/null,
#      and no --force-conf* option hides one);
#   4. remove: the binaries are gone, the conffiles stay; purge: the conffiles and
#      /etc/pm-kvm-tools are gone.
#
# That purge leaves no file at all behind, that the maintainer scripts work and that an
# upgrade from the previous build works is checked by Debian's own tool, piuparts, which
# compares the whole tree before and after in a chroot it makes from the same minbase
# tarball: tests/testbed/piuparts.sh (on the build machine: piuparts makes and enters its own
# chroot, so it does not run inside this root). man-db and libxml2-utils, which the checks
# use, are installed first if missing.
#
# Every step prints a "[pkg-check]" line; the first failure stops the script (exit 1).
set -euo pipefail

say() { printf '[pkg-check] %s\n' "$*"; }
fail() {
    printf '[pkg-check] FAIL: %s\n' "$*" >&2
    exit 1
}

if [ $# -ne 1 ] || [ ! -d "$1" ]; then fail "usage: $0 DEBDIR (the directory of cargo xtask deb's .debs)"; fi
[ "$(id -u)" = 0 ] || fail "run as root, inside a pristine root"
DEBDIR=$(cd "$1" && pwd)
WORK=$(mktemp -d /tmp/pkg-check.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

one_deb() {
    local found=("$DEBDIR"/"$1"_*_amd64.deb)
    if [ ${#found[@]} -ne 1 ] || [ ! -f "${found[0]}" ]; then
        fail "want exactly one $1_*_amd64.deb in $DEBDIR, found: ${found[*]}"
    fi
    printf '%s\n' "${found[0]}"
}
HOST_DEB=$(one_deb pm-kvm-tools)
GUEST_DEB=$(one_deb pm-kvm-tools-guest)
VERSION=$(dpkg-deb -f "$HOST_DEB" Version)
# Cargo spells a pre-release with '-' where Debian has '~' (xtask's debian_version)
CARGO_VERSION=${VERSION/\~/-}
say "packages: $(basename "$HOST_DEB") $(basename "$GUEST_DEB") (version $VERSION)"

installed() { [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]; }
for p in pacemaker pm-kvm-tools pm-kvm-tools-guest; do
    if installed "$p"; then fail "$p is installed: this is not a pristine root"; fi
done

export DEBIAN_FRONTEND=noninteractive
# stdin from /dev/null: a conffile prompt would fail the command instead of waiting
apt_get() { apt-get -q -y -o Dpkg::Use-Pty=0 "$@" </dev/null; }
# apt_install LOG ARGS...: install, keeping the output to look for prompts in
apt_install() {
    local log=$1
    shift
    if ! apt_get install "$@" >"$log" 2>&1; then
        cat "$log" >&2
        fail "apt-get install $* failed"
    fi
    if grep -q "Configuration file '" "$log"; then
        cat "$log" >&2
        fail "apt-get install $* asked about a configuration file"
    fi
}

# --- the tools the checks use (not ours)
say "apt-get update"
apt_get update >"$WORK/update.log" 2>&1 || { cat "$WORK/update.log" >&2; fail "apt-get update failed"; }
apt_install "$WORK/tools.log" --no-install-recommends man-db libxml2-utils
say "man-db and libxml2-utils installed for the checks"
cd "$DEBDIR"

# --- 1. the guest package
apt_install "$WORK/guest.log" "./$(basename "$GUEST_DEB")"
say "guest package installed by apt: $(dpkg-query -W -f='${Package} ${Version}' pm-kvm-tools-guest)"
fence_vmstonith -o metadata >"$WORK/metadata.xml" || fail "fence_vmstonith -o metadata failed"
xmllint --noout "$WORK/metadata.xml" || fail "fence_vmstonith -o metadata is not well-formed XML"
grep -q '<resource-agent name="fence_vmstonith"' "$WORK/metadata.xml" || fail "fence_vmstonith's metadata names another agent"
say "fence_vmstonith -o metadata: well-formed XML, $(grep -c '<parameter ' "$WORK/metadata.xml") parameters"
vm-connect --help | grep -q '^Usage:' || fail "vm-connect --help prints no usage"
[ "$(readlink -f /usr/sbin/vm-connect)" = /usr/bin/vm-connect ] || fail "/usr/sbin/vm-connect (the agents' path) is not vm-connect"
say "vm-connect --help: usage printed; /usr/sbin/vm-connect -> /usr/bin/vm-connect"
page=$(man -w fence_vmstonith) || fail "man -w fence_vmstonith finds no page"
say "man -w fence_vmstonith: $page"
plugin=/usr/lib/stonith/plugins/external/vm-stonith
[ "$("$plugin" getconfignames | tr '\n' ' ')" = "hostlist delimeter key_file socket timeout " ] || fail "$plugin getconfignames"
say "external/vm-stonith getconfignames: hostlist delimeter key_file socket timeout"
[ -L /etc/systemd/system/multi-user.target.wants/vm-connectd-guest.service ] || fail "vm-connectd-guest.service is not enabled"
say "vm-connectd-guest.service: installed and enabled (multi-user.target.wants)"
apt_get purge pm-kvm-tools-guest >"$WORK/guest-purge.log" 2>&1 || { cat "$WORK/guest-purge.log" >&2; fail "apt-get purge pm-kvm-tools-guest failed"; }
for f in /usr/sbin/fence_vmstonith /usr/sbin/vm-connectd /usr/bin/vm-connect /usr/sbin/vm-connect \
    /etc/systemd/system/multi-user.target.wants/vm-connectd-guest.service; do
    if [ -e "$f" ] || [ -L "$f" ]; then fail "the purge of pm-kvm-tools-guest left $f"; fi
done
say "guest package purged: its files and its unit's enablement are gone"

# --- 2. the host package
apt_install "$WORK/host.log" "./$(basename "$HOST_DEB")"
say "host package installed by apt: $(dpkg-query -W -f='${Package} ${Version}' pm-kvm-tools)"
got=$(vm-ctl --version) || fail "vm-ctl --version failed"
[ "$got" = "vm-ctl $CARGO_VERSION" ] || fail "vm-ctl --version says '$got', want 'vm-ctl $CARGO_VERSION'"
say "vm-ctl --version: $got"
man -P cat vm-stonithd 2>"$WORK/man.err" | grep -q 'vm-stonithd.toml' || { cat "$WORK/man.err" >&2; fail "man vm-stonithd does not render"; }
[ ! -s "$WORK/man.err" ] || { cat "$WORK/man.err" >&2; fail "man vm-stonithd printed warnings"; }
say "man -P cat vm-stonithd: renders ($(man -P cat vm-stonithd 2>/dev/null | wc -l) lines)"
conffiles=$(dpkg-query -W -f='${Conffiles}\n' pm-kvm-tools)
for f in /etc/vm-ctl.conf /etc/pm-kvm-tools/vm-stonithd.toml; do
    grep -q "^ $f " <<<"$conffiles" || fail "$f is not a registered conffile"
done
say "conffiles registered: /etc/vm-ctl.conf /etc/pm-kvm-tools/vm-stonithd.toml"
[ "$(stat -c %a /etc/pm-kvm-tools/keys)" = 700 ] || fail "/etc/pm-kvm-tools/keys is not mode 0700"
check=$(vm-stonithd --check) || fail "vm-stonithd --check rejects the shipped configuration"
say "vm-stonithd --check (shipped file): $(tr '\n' ' ' <<<"$check")"
for agent in VirtualDomain vm-connectd vm-stonithd; do
    OCF_ROOT=/usr/lib/ocf "/usr/lib/ocf/resource.d/pm-kvm-tools/$agent" meta-data >"$WORK/$agent.xml" ||
        fail "ocf:pm-kvm-tools:$agent meta-data failed"
    xmllint --noout "$WORK/$agent.xml" || fail "ocf:pm-kvm-tools:$agent meta-data is not well-formed XML"
done
say "ocf:pm-kvm-tools:{VirtualDomain,vm-connectd,vm-stonithd} meta-data: well-formed XML"
for u in vm-connectd vm-stonithd; do
    [ -f "/lib/systemd/system/$u.service" ] || fail "$u.service is not installed"
    if compgen -G "/etc/systemd/system/*.wants/$u.service" >/dev/null; then fail "$u.service is enabled"; fi
done
say "vm-connectd.service, vm-stonithd.service: installed, not enabled (the cluster runs them)"

# --- 3. upgrade from the previous build, with an operator's edit
apt_get purge pm-kvm-tools >"$WORK/purge1.log" 2>&1 || { cat "$WORK/purge1.log" >&2; fail "apt-get purge pm-kvm-tools failed"; }
mkdir "$WORK/prev"
dpkg-deb -R "$HOST_DEB" "$WORK/prev/tree"
sed -i "s/^Version: .*/Version: ${VERSION}~prev/" "$WORK/prev/tree/DEBIAN/control"
dpkg-deb -b "$WORK/prev/tree" "$WORK/prev/pm-kvm-tools_${VERSION}~prev_amd64.deb" >/dev/null
apt_install "$WORK/prev.log" "$WORK/prev/pm-kvm-tools_${VERSION}~prev_amd64.deb"
say "previous build installed: $(dpkg-query -W -f='${Version}' pm-kvm-tools)"
echo '# pkg-check: an operator edit' >>/etc/vm-ctl.conf
apt_install "$WORK/upgrade.log" "./$(basename "$HOST_DEB")"
[ "$(dpkg-query -W -f='${Version}' pm-kvm-tools)" = "$VERSION" ] || fail "the upgrade did not install $VERSION"
grep -q '^# pkg-check: an operator edit$' /etc/vm-ctl.conf || fail "the upgrade lost the operator's edit of /etc/vm-ctl.conf"
say "upgraded ${VERSION}~prev -> $VERSION: the operator's edit of /etc/vm-ctl.conf kept, no prompt"

# --- 4. remove, then purge
apt_get remove pm-kvm-tools >"$WORK/remove.log" 2>&1 || { cat "$WORK/remove.log" >&2; fail "apt-get remove pm-kvm-tools failed"; }
for f in /usr/sbin/vm-ctl /usr/sbin/vm-connectd /usr/sbin/vm-stonithd /usr/bin/vm-connect; do
    [ ! -e "$f" ] || fail "apt-get remove left $f"
done
for f in /etc/vm-ctl.conf /etc/pm-kvm-tools/vm-stonithd.toml; do
    [ -f "$f" ] || fail "apt-get remove removed the conffile $f"
done
[ "$(dpkg-query -W -f='${db:Status-Abbrev}' pm-kvm-tools)" = "rc " ] || fail "after remove, pm-kvm-tools is not in state rc"
say "removed: binaries gone, conffiles kept (state rc)"
apt_get purge pm-kvm-tools >"$WORK/purge.log" 2>&1 || { cat "$WORK/purge.log" >&2; fail "apt-get purge pm-kvm-tools failed"; }
for f in /etc/vm-ctl.conf /etc/pm-kvm-tools; do
    [ ! -e "$f" ] || fail "the purge of pm-kvm-tools left $f"
done
if dpkg-query -W pm-kvm-tools >/dev/null 2>&1; then fail "dpkg still knows pm-kvm-tools after the purge"; fi
say "host package purged: conffiles and /etc/pm-kvm-tools gone"
say "all checks passed"
