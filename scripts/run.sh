#!/usr/bin/env bash
# Builds ramdiskfs and mounts RAM disks in the foreground.
#
#   scripts/run.sh [MOUNTPOINT] [ramdiskfs options...]
#
# Default: two 1 GiB disks (ram0, ram1) at /mnt/ramdiskfs. The disks are
# sparse: they cost no RAM until written. Ctrl-C unmounts and exits.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh build
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target ramdiskfs ramdiskctl >/dev/null

mnt=${1:-/mnt/ramdiskfs}
shift || true
mkdir -p "$mnt"
args=("$@")
((${#args[@]})) || args=(--disks 2 --size 1G)

cat <<MSG
ramdiskfs: mounting ${args[*]} at $mnt (foreground; Ctrl-C or 'fusermount3 -u $mnt' to stop)

Try, in another shell:
  ls -l $mnt                               # the disks, one file each
  build/ramdiskctl --mount $mnt            # table of disks: size, RAM used, mode
  dev=\$(losetup --find --show $mnt/ram0)   # a real block device
  mkfs.ext4 -q \$dev && mkdir -p /mnt/rd0 && mount \$dev /mnt/rd0
  umount /mnt/rd0 && losetup -d \$dev       # before stopping ramdiskfs
  cat $mnt/.control/ram0/stats             # per-disk statistics
MSG
exec build/ramdiskfs "$mnt" -f "${args[@]}"
