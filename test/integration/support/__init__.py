"""Support code for the ramdiskfs integration tests (and bench/, which imports mounts).

One module per concern; see test/integration/README.md for which holds what:

    units     KiB, MiB, GiB, PAGE
    mounts    the daemon binary, run(), Mount, start/stop/teardown, waiting, mount checks
    require   skip-or-fail guards (IN_CI, require_fuse, ...), capabilities, test programs
    io        data patterns, checksums, file I/O (pwrite/pread, O_DIRECT, mmap, fallocate)
    blockdev  loop devices, mkfs/fsck, filesystems mounted on them, fio verification
    ctl       control files, stats, ioctls, state snapshots

Fixtures live in conftest.py only. Only require imports pytest (blockdev.loop_device
imports it when called), so bench/ imports mounts, units and blockdev without pytest.
"""
