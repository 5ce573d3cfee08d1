#!/usr/bin/env bash
# Builds the Debian package from this tree, in one command:
#
#   scripts/package.sh [OUTDIR]      (default OUTDIR: build-deb/)
#
# leaves OUTDIR/ramdiskfs_VERSION_ARCH.deb and ramdiskfs-dbgsym_VERSION_ARCH.ddeb
# (the debug info dh_strip took out of the binaries), with the .buildinfo and
# .changes. It installs what it needs from Debian first (scripts/deps.sh
# package, then debian/control's Build-Depends via apt-get build-dep), copies
# the tree (tracked and untracked files, not ignored ones) to a scratch
# directory and runs dpkg-buildpackage -b there, so the tree and its parent
# get no build litter. See docs/packaging.md.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=$(realpath -m "${1:-build-deb}")

scripts/deps.sh package
if ! dpkg-checkbuilddeps >/dev/null 2>&1; then
  [[ $(id -u) -eq 0 ]] || { dpkg-checkbuilddeps; exit 1; }
  echo "package: installing the build dependencies of debian/control"
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 build-dep -y -qq ./ >/dev/null
fi

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mkdir "$scratch/ramdiskfs"
git ls-files -z --cached --others --exclude-standard \
  | tar -C "$root" --null -T - -cf - | tar -C "$scratch/ramdiskfs" -xf -

echo "package: dpkg-buildpackage in $scratch"
(cd "$scratch/ramdiskfs" && DEB_BUILD_OPTIONS="parallel=$(nproc) ${DEB_BUILD_OPTIONS:-}" \
   dpkg-buildpackage -b -us -uc) >"$scratch/build.log" 2>&1 \
  || { tail -50 "$scratch/build.log"; echo "package: dpkg-buildpackage failed"; exit 1; }

mkdir -p "$out"
version=$(dpkg-parsechangelog -S Version)
arch=$(dpkg-architecture -q DEB_HOST_ARCH)
rm -f "$out"/ramdiskfs*_"$version"_"$arch".*
for f in "$scratch"/ramdiskfs*_"$version"_"$arch".{deb,ddeb,buildinfo,changes}; do
  [[ -e $f ]] && cp "$f" "$out/"
done
ls -l "$out"/ramdiskfs*_"$version"_"$arch".*
