#!/usr/bin/env bash
# Installs the Debian 12 packages ramdiskfs needs to build, run and test.
# Usage: scripts/deps.sh [build|test|bench|package]
# (test and bench include build; package is what scripts/package.sh needs
# besides debian/control's Build-Depends, which it installs itself)
# Only installs what is missing; needs root (apt-get).
set -euo pipefail

want=${1:-build}
packages=(build-essential cmake pkg-config libfuse3-dev fuse3 liburing-dev libabsl-dev libgtest-dev
          libbenchmark-dev libsmartcols-dev libsystemd-dev)
if [[ $want == test || $want == bench ]]; then
  # groff: man page checks; systemd: systemd-analyze verify of the unit (no
  # running systemd needed); nbdkit, libnbd-bin, qemu-utils: the NBD recipe;
  # qemu-utils, rsync: the copy tests; bash-completion: the completion tests.
  packages+=(python3 python3-pytest e2fsprogs fdisk util-linux fio qemu-utils rsync clang
             libclang-rt-14-dev clang-format bash-completion groff-base systemd nbdkit
             libnbd-bin)
fi
if [[ $want == package ]]; then
  packages=(build-essential dpkg-dev debhelper fakeroot git)
fi
if [[ $want == bench ]]; then
  packages+=(nbdkit libnbd-bin gnuplot-nox)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "deps: missing packages: ${missing[*]} (run as root to install them)" >&2
    exit 1
  fi
  echo "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
