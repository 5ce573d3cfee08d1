#!/usr/bin/env bash
# CI check of the Debian package, from the tree to a clean machine again:
# builds it (scripts/package.sh), installs it with `apt-get install ./….deb`,
# checks its files (stripped binaries with their debug info in -dbgsym, man
# pages, docs, unit, helper, completions), mounts with `mount -t
# fuse.ramdiskfs` so that mount.fuse3 runs the installed /usr/bin/ramdiskfs,
# writes and reads a disk, unmounts, then `apt-get remove --purge` and checks
# nothing of it is left. The machine ends as it began: ramdiskfs is not
# installed afterwards, and packages the install pulled in are purged; if
# ramdiskfs is installed already the check refuses to run (it cannot put an
# unknown build back). Needs root.
#
#   scripts/test-package.sh [OUTDIR]     (default: a temporary directory)
#   scripts/test-package.sh --prebuilt OUTDIR   (test the packages already in
#                                                OUTDIR, e.g. from package.sh)
#
# Prints "package test: passed in N s" or "package test: FAILED: why".
set -uo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
apt_get() { DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 "$@"; }
fail() { echo "package test: FAILED: $*"; exit 1; }
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

[[ $(id -u) -eq 0 ]] || fail "must run as root (apt-get, mount)"
installed ramdiskfs && fail "ramdiskfs $(dpkg-query -W -f='${Version}' ramdiskfs) is installed" \
  "already; this check would replace it. Remove it first (apt-get remove --purge ramdiskfs)"

prebuilt=0
if [[ ${1:-} == --prebuilt ]]; then prebuilt=1; shift; [[ -n ${1:-} ]] || fail "--prebuilt needs OUTDIR"; fi
own_out=0
if [[ -n ${1:-} ]]; then out=$1; mkdir -p "$out"; else out=$(mktemp -d); own_out=1; fi
mnt=$(mktemp -d)
before=$(mktemp)
we_installed=0
cleanup() {
  if mountpoint -q "$mnt"; then umount "$mnt" 2>/dev/null || umount -l "$mnt"; fi
  for pid in $(daemon_pids); do kill "$pid" 2>/dev/null; done  # ours: its argv names $mnt
  rmdir "$mnt" 2>/dev/null
  if ((we_installed)) && installed ramdiskfs; then apt_get remove --purge -y -qq ramdiskfs >/dev/null; fi
  restore_packages
  rm -f "$before"
  ((own_out)) && rm -rf "$out"
}
daemon_pids() {
  for p in /proc/[0-9]*; do
    { tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null | grep -q "ramdiskfs.* $mnt\( \|$\)" && echo "${p#/proc/}"
  done
}
restore_packages() {  # purge what the install pulled in (not there before it)
  [[ -s $before ]] || return 0
  local extra
  extra=$(comm -13 "$before" <(dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' \
            | awk '$1 == "ii" {print $2}' | sort) | grep -vx ramdiskfs)
  [[ -z $extra ]] || { echo "package test: purging what the install pulled in: $extra";
                       apt_get remove --purge -y -qq $extra >/dev/null; }
}
trap cleanup EXIT

# ---- build ---------------------------------------------------------------------
if ((prebuilt)); then
  echo "package test: using the packages already in $out (--prebuilt)"
else
  scripts/package.sh "$out" >"$out/package.log" 2>&1 || { tail -30 "$out/package.log"; fail "build"; }
fi
version=$(dpkg-parsechangelog -S Version)
cmake_version=$(sed -n 's/^project(ramdiskfs VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)
[[ $version == "$cmake_version" ]] \
  || fail "debian/changelog says $version, CMakeLists.txt $cmake_version: add a changelog entry"
arch=$(dpkg-architecture -q DEB_HOST_ARCH)
deb=$out/ramdiskfs_${version}_$arch.deb
dbgsym=$(ls "$out"/ramdiskfs-dbgsym_"${version}"_"$arch".*deb 2>/dev/null | head -1)
[[ -f $deb ]] || fail "no $deb"
[[ -n $dbgsym ]] || fail "no ramdiskfs-dbgsym package next to $deb"
((prebuilt)) || echo "package test: built $(basename "$deb") and $(basename "$dbgsym") in $((SECONDS - start)) s"

# The binaries are stripped, and their debug info is in -dbgsym under their build ids.
x=$(mktemp -d)
dpkg-deb -x "$deb" "$x/deb" && dpkg-deb -x "$dbgsym" "$x/dbg"
for b in ramdiskfs ramdiskctl; do
  readelf -S "$x/deb/usr/bin/$b" | grep -q '\.debug_info' && { rm -rf "$x"; fail "$b is not stripped"; }
  id=$(readelf -n "$x/deb/usr/bin/$b" | awk '/Build ID/ {print $3}')
  [[ -f $x/dbg/usr/lib/debug/.build-id/${id:0:2}/${id:2}.debug ]] \
    || { rm -rf "$x"; fail "no debug info for $b (build id $id) in -dbgsym"; }
done
rm -rf "$x"

# ---- install -------------------------------------------------------------------
dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' | awk '$1 == "ii" {print $2}' | sort >"$before"
we_installed=1
(cd "$out" && apt_get install -y -qq "./$(basename "$deb")" >"$out/install.log" 2>&1) \
  || { cat "$out/install.log"; fail "apt-get install ./$(basename "$deb")"; }
files=$(dpkg -L ramdiskfs)
# What must be gone after the purge: the package's files, not the directories
# (nor /lib, a link to a directory on merged-/usr systems) it shares.
own_files=$(while read -r f; do [[ -d $f ]] || echo "$f"; done <<<"$files")
for f in /usr/bin/ramdiskfs /usr/bin/ramdiskctl /usr/share/man/man8/ramdiskfs.8.gz \
         /usr/share/doc/ramdiskfs/control.md /usr/share/doc/ramdiskfs/copyright \
         /usr/share/doc/ramdiskfs/examples/example.conf /lib/systemd/system/ramdiskfs@.service \
         /usr/lib/ramdiskfs/ramdiskfs-service; do
  grep -qx "$f" <<<"$files" && [[ -e $f ]] || fail "$f is not installed by the package"
done
for f in man/*.8; do
  [[ -e /usr/share/man/man8/$(basename "$f").gz ]] || fail "man page $f is not in the package"
done
for f in completion/*; do
  [[ -e $f ]] || continue
  [[ -e /usr/share/bash-completion/completions/$(basename "$f") ]] \
    || fail "completion $f is not in the package"
done
man -w ramdiskfs | grep -q '^/usr/share/man/man8/ramdiskfs.8.gz$' || fail "man ramdiskfs finds no page"
grep -q '^ExecStart=/usr/lib/ramdiskfs/ramdiskfs-service start %i$' /lib/systemd/system/ramdiskfs@.service \
  || fail "the installed unit does not run the installed helper"
grep -q '^bin=${RAMDISKFS_BIN:-/usr/bin/ramdiskfs}$' /usr/lib/ramdiskfs/ramdiskfs-service \
  || fail "the installed helper does not run the installed daemon"
if [[ -x /usr/bin/systemd-analyze ]]; then
  v=$(mktemp -d)
  cp /lib/systemd/system/ramdiskfs@.service "$v/ramdiskfs@pkgtest.service"
  err=$(systemd-analyze verify --man=no "$v/ramdiskfs@pkgtest.service" 2>&1)
  rm -rf "$v"
  [[ -z $err ]] || fail "systemd-analyze verify: $err"
fi

# ---- mount with the installed files ----------------------------------------------
# The daemon keeps this file as its log after detaching (no /dev/log here).
mount -t fuse.ramdiskfs ramdiskfs "$mnt" -o disks=1,size=64M 2>"$out/mount.log" \
  || { cat "$out/mount.log"; fail "mount -t fuse.ramdiskfs"; }
[[ $(findmnt -n -o FSTYPE --mountpoint "$mnt") == fuse.ramdiskfs ]] || fail "not a fuse.ramdiskfs mount"
pids=$(daemon_pids)
[[ -n $pids ]] || fail "no daemon for $mnt"
for pid in $pids; do
  [[ $(readlink "/proc/$pid/exe") == /usr/bin/ramdiskfs ]] \
    || fail "mount.fuse3 ran $(readlink "/proc/$pid/exe"), not the installed /usr/bin/ramdiskfs"
done
[[ $(stat -c %s "$mnt/ram0") -eq $((64 << 20)) ]] || fail "ram0 is not 64 MiB"
data=$(mktemp)
head -c $((3 << 20)) /dev/urandom >"$data"
dd if="$data" of="$mnt/ram0" bs=1M seek=7 conv=notrunc,fsync status=none || fail "write"
cmp <(dd if="$mnt/ram0" bs=1M skip=7 count=3 status=none) "$data" || fail "read back"
rm -f "$data"
/usr/bin/ramdiskctl "$mnt" >/dev/null || fail "the installed ramdiskctl cannot list the mount"
umount "$mnt" || fail "umount"
for _ in $(seq 100); do [[ -z $(daemon_pids) ]] && break; sleep 0.1; done
[[ -z $(daemon_pids) ]] || fail "the daemon did not exit after umount"

# ---- remove --------------------------------------------------------------------
apt_get remove --purge -y -qq ramdiskfs >"$out/remove.log" 2>&1 || { cat "$out/remove.log"; fail "remove"; }
installed ramdiskfs && fail "still installed after remove --purge"
dpkg -L ramdiskfs >/dev/null 2>&1 && fail "dpkg -L ramdiskfs still lists files"
left=$(while read -r f; do [[ -e $f || -L $f ]] && echo "$f"; done <<<"$own_files")
[[ -z $left ]] || fail "left behind: $left"
[[ ! -e /usr/lib/ramdiskfs && ! -e /usr/share/doc/ramdiskfs ]] || fail "directories left behind"
command -v ramdiskfs >/dev/null && [[ $(command -v ramdiskfs) == /usr/bin/* ]] && fail "ramdiskfs still on PATH"
echo "package test: passed in $((SECONDS - start)) s"
