"""The control plane as a user meets it: MOUNT/.control/, block ioctls on disk files.

Issue "Control plane: the .control tree, block ioctls, flush without stale pages,
and ramdiskctl", points 1-6, 8 and 9 (ramdiskctl, point 7, is in
test_ramdiskctl.py). Each test names its point. Shell commands (echo, cat,
truncate, rm, blockdev, losetup) are used where a user would use them; Python
os calls where an exact errno or offset must be checked.
"""

import errno
import hashlib
import json
import mmap
import os
import re
import stat
import struct

import pytest

from support.blockdev import loop_device
from support.ctl import (BLKBSZGET, BLKDISCARD, BLKFLSBUF, BLKGETSIZE, BLKGETSIZE64, BLKPBSZGET,
                         BLKROGET, BLKROSET, BLKSSZGET, BLKZEROOUT, DISK_FILES, GLOBAL_FILES,
                         IO_COUNTERS, as_nobody, assert_rejected, assert_unchanged, close_disk,
                         disk_names, documented_stats_keys, errname, ioctl, ioctl_fd, pread_disk,
                         pwrite_disk, read_errno, settle, snapshot, stats_keys, write_errno)
from support.io import mem_total_bytes, pattern
from support.mounts import DATA_MODES, MODES, run
from support.units import MiB, PAGE

KEY_VALUE_LINE = r"^[a-z][a-z0-9_]* \S+$"


def sh(command, **kw):
    return run("bash", "-c", command, check=False, **kw)


def disk_mount(mount_factory, mode, size="64M", *extra):
    return mount_factory("--disk", f"ram0:{size}:mode={mode}", *extra, wait_disks=["ram0"])


def assert_key_values(text, scope):
    """A stats file's text: 'key value' lines, no key twice, and exactly the keys that
    docs/control.md documents for `scope` ("global" or "disk")."""
    assert text.endswith("\n"), repr(text)
    lines = text.splitlines()
    for line in lines:
        assert re.match(KEY_VALUE_LINE, line), f"not a 'key value' line: {line!r}"
    present = stats_keys(text)
    assert len(present) == len(lines), f"repeated keys in {text!r}"
    keys = documented_stats_keys(scope)
    missing = [k for k in keys if k not in present]
    assert not missing, f"missing keys {missing} in:\n{text}"
    undocumented = [k for k in present if k not in keys]
    assert not undocumented, f"keys {undocumented} are not documented in docs/control.md"


# ---- 1. the tree ------------------------------------------------------------------------


def test_control_dir_hidden_and_complete(mount):
    """Point 1: .control is hidden from plain ls, holds the global and per-disk files."""
    assert ".control" not in run("ls", mount.path).stdout.split()
    assert ".control" in run("ls", "-a", mount.path).stdout.split()
    assert stat.S_ISDIR(os.stat(mount.control).st_mode)
    entries = set(os.listdir(mount.control))
    assert set(GLOBAL_FILES) | {"ram0"} == entries
    assert set(os.listdir(mount.ctl("ram0"))) == set(DISK_FILES)
    for name in GLOBAL_FILES:
        assert stat.S_ISREG(os.stat(mount.ctl(name)).st_mode), name
    for name in DISK_FILES:
        assert stat.S_ISREG(os.stat(mount.ctl("ram0", name)).st_mode), name


@pytest.mark.parametrize("where", ["global", "disk"])
def test_control_file_permissions(mount, where):
    """Points 1, 9: r files have no write bit, w files no read bit, only the owner writes."""
    files = GLOBAL_FILES if where == "global" else DISK_FILES
    prefix = () if where == "global" else ("ram0",)
    daemon_uid = os.stat(mount.path).st_uid
    for name, access in files.items():
        st = os.stat(mount.ctl(*prefix, name))
        perm = stat.S_IMODE(st.st_mode)
        label = f"{'/'.join(prefix + (name,))} {oct(perm)}"
        assert st.st_uid == daemon_uid == os.getuid(), label
        assert perm & 0o022 == 0, f"{label}: group/other may write"
        assert perm & 0o111 == 0, f"{label}: executable"
        if "w" in access:
            assert perm & 0o200, f"{label}: owner cannot write"
        else:
            assert perm & 0o222 == 0, f"{label}: read-only file has a write bit"
        if "r" in access:
            assert perm & 0o444 == 0o444, f"{label}: not readable by all"
        else:
            assert perm & 0o444 == 0, f"{label}: write-only file has a read bit"
    # The contract's exact modes for the global files.
    assert stat.S_IMODE(os.stat(mount.ctl("new")).st_mode) == 0o200
    assert stat.S_IMODE(os.stat(mount.ctl("delete")).st_mode) == 0o200
    assert stat.S_IMODE(os.stat(mount.ctl("max_memory")).st_mode) == 0o644
    assert stat.S_IMODE(os.stat(mount.ctl("stats")).st_mode) == 0o444


def test_values_are_one_newline_ended_line(mount_factory):
    """Point 1: text out, one value per file, newline-ended."""
    mnt = disk_mount(mount_factory, "direct")
    assert mnt.read_control("ram0", "size") == f"{64 * MiB}\n"
    assert mnt.read_control("ram0", "readonly") == "0\n"
    assert mnt.read_control("ram0", "mode") == "direct\n"
    max_memory = mnt.read_control("max_memory")
    assert max_memory.endswith("\n") and max_memory[:-1].isdigit(), repr(max_memory)
    assert_key_values(mnt.read_control("ram0", "stats"), "disk")
    assert_key_values(mnt.read_control("stats"), "global")
    # cat shows the same as a read.
    assert run("cat", mnt.ctl("ram0", "size")).stdout == f"{64 * MiB}\n"


@pytest.mark.parametrize("where", ["global", "disk"])
def test_read_write_only_and_write_read_only_fail(mount, where):
    """Point 1: reading a w file and writing an r file fail with EACCES (as sysfs), even for root."""
    files = GLOBAL_FILES if where == "global" else DISK_FILES
    prefix = () if where == "global" else ("ram0",)
    before = snapshot(mount)
    for name, access in files.items():
        if "r" not in access:
            err = read_errno(mount.ctl(*prefix, name))
            assert err == errno.EACCES, f"read {name}: {errname(err)}"
            result = run("cat", mount.ctl(*prefix, name), check=False)
            assert result.returncode != 0 and "Permission denied" in result.stderr
        if "w" not in access:
            err = write_errno(mount, *prefix, name, text="1\n")
            assert err == errno.EACCES, f"write {name}: {errname(err)}"
            result = sh(f"echo 1 > '{mount.ctl(*prefix, name)}'")
            assert result.returncode != 0 and "Permission denied" in result.stderr
    assert_unchanged(mount, before, "refused reads/writes")


def test_new_and_delete_in_both_trees(mount):
    """Point 1: `new` makes a disk in both trees, `delete` removes it from both."""
    run("sh", "-c", f"echo 'disk1 16M' > '{mount.ctl('new')}'")
    assert (mount.path / "disk1").exists()
    assert os.stat(mount.disk("disk1")).st_size == 16 * MiB
    assert "disk1" in run("ls", mount.path).stdout.split()
    assert "disk1" in disk_names(mount)
    assert mount.read_control("disk1", "size") == f"{16 * MiB}\n"
    assert mount.stats()["disks"] == 2
    assert mount.stats("disk1")["size"] == 16 * MiB
    run("sh", "-c", f"echo disk1 > '{mount.ctl('delete')}'")
    assert not (mount.path / "disk1").exists()
    assert not mount.ctl("disk1").exists()
    assert "disk1" not in os.listdir(mount.path)
    assert "disk1" not in os.listdir(mount.control)
    assert mount.stats()["disks"] == 1


def test_new_with_keys_rounding_and_default_mode(mount_factory):
    """Point 1: new NAME SIZE [mode=] [readonly=]; SIZE rounds up to 512; suffixes; default mode."""
    mnt = mount_factory("--mode", "direct", "--disk", "ram0:1M", wait_disks=["ram0"])
    assert write_errno(mnt, "new", text="a 1000\n") == 0
    assert os.stat(mnt.disk("a")).st_size == 1024
    assert mnt.read_control("a", "mode") == "direct\n"  # the mount's --mode
    assert write_errno(mnt, "new", text="b 2M mode=cached readonly=1\n") == 0
    assert os.stat(mnt.disk("b")).st_size == 2 * MiB
    assert mnt.read_control("b", "mode") == "cached\n"
    assert mnt.read_control("b", "readonly") == "1\n"
    assert write_errno(mnt, "new", text="c 4K mode=null") == 0  # no newline is fine
    assert mnt.read_control("c", "mode") == "null\n"
    assert write_errno(mnt, "new", text="  d\t\t8K  readonly=0 \n") == 0  # blanks tolerated
    assert os.stat(mnt.disk("d")).st_size == 8192
    long_name = "x" * 255  # the longest name
    assert write_errno(mnt, "new", text=f"{long_name} 1M\n") == 0
    assert long_name in os.listdir(mnt.path) and long_name in os.listdir(mnt.control)
    assert sorted(disk_names(mnt)) == sorted(["ram0", "a", "b", "c", "d", long_name])


def test_truncate_creates_and_rm_deletes_in_both_trees(mount):
    """Point 1: truncate -s makes a disk, rm removes it; the control tree follows."""
    run("truncate", "-s", "8M", mount.disk("scratch"))
    settle(mount.disk("scratch"))  # truncate(1) opened it: wait for its asynchronous RELEASE
    assert "scratch" in disk_names(mount)
    assert mount.read_control("scratch", "size") == f"{8 * MiB}\n"
    run("truncate", "-s", "12M", mount.disk("scratch"))
    settle(mount.disk("scratch"))
    assert mount.read_control("scratch", "size") == f"{12 * MiB}\n"
    run("rm", mount.disk("scratch"))
    assert "scratch" not in disk_names(mount)
    assert not mount.ctl("scratch").exists()
    assert not mount.disk("scratch").exists()
    # and the other way round: made with new, removed with rm; made with truncate, removed with delete
    assert write_errno(mount, "new", text="viactl 1M\n") == 0
    run("rm", mount.disk("viactl"))
    assert "viactl" not in disk_names(mount)
    run("truncate", "-s", "1M", mount.disk("viafile"))
    settle(mount.disk("viafile"))
    assert write_errno(mount, "delete", text="viafile\n") == 0
    assert not mount.disk("viafile").exists()
    assert mount.stats()["disks"] == 1


@pytest.mark.parametrize("mode", MODES)
def test_delete_and_rm_busy_while_open(mount_factory, mode):
    """Point 1 (SPEC 3): delete and rm are refused with EBUSY while the disk is open."""
    mnt = disk_mount(mount_factory, mode)
    fd = os.open(mnt.disk("ram0"), os.O_RDONLY)
    try:
        assert write_errno(mnt, "delete", text="ram0\n") == errno.EBUSY
        with pytest.raises(OSError) as info:
            os.unlink(mnt.disk("ram0"))
        assert info.value.errno == errno.EBUSY
    finally:
        close_disk(fd, mnt.disk("ram0"))
    assert "ram0" in disk_names(mnt)
    assert write_errno(mnt, "delete", text="ram0\n") == 0
    assert disk_names(mnt) == []


@pytest.mark.parametrize("mode", DATA_MODES)
def test_size_file_resizes_like_ftruncate(mount_factory, mode):
    """Point 1: writing size resizes; growing keeps data, shrinking frees the pages past the end."""
    mnt = disk_mount(mount_factory, mode, "16M")
    data = pattern(8 * PAGE)
    pwrite_disk(mnt.disk("ram0"), data, 0)
    pwrite_disk(mnt.disk("ram0"), data, 8 * MiB)
    assert mnt.stats("ram0")["allocated_pages"] == 16
    run("sh", "-c", f"echo 32M > '{mnt.ctl('ram0', 'size')}'")
    assert os.stat(mnt.disk("ram0")).st_size == 32 * MiB
    assert mnt.read_control("ram0", "size") == f"{32 * MiB}\n"
    assert run("blockdev", "--getsize64", mnt.disk("ram0")).stdout.strip() == str(32 * MiB)
    settle(mnt.disk("ram0"))
    assert pread_disk(mnt.disk("ram0"), len(data), 8 * MiB) == data
    assert write_errno(mnt, "ram0", "size", text=f"{4 * MiB}") == 0  # bytes, no newline
    st = os.stat(mnt.disk("ram0"))
    assert st.st_size == 4 * MiB
    assert mnt.stats("ram0")["allocated_pages"] == 8
    assert st.st_blocks == 8 * PAGE // 512
    assert pread_disk(mnt.disk("ram0"), len(data)) == data
    assert write_errno(mnt, "ram0", "size", text="1000\n") == 0
    assert os.stat(mnt.disk("ram0")).st_size == 1024  # rounded up to 512


def test_size_shrink_busy_grow_allowed_while_open(mount_factory):
    """Point 1 (SPEC 3): shrink is EBUSY while another opener has the disk; grow is allowed."""
    mnt = disk_mount(mount_factory, "direct", "16M")
    fd = os.open(mnt.disk("ram0"), os.O_RDONLY)
    try:
        assert write_errno(mnt, "ram0", "size", text="8M\n") == errno.EBUSY
        assert mnt.read_control("ram0", "size") == f"{16 * MiB}\n"
        assert write_errno(mnt, "ram0", "size", text="32M\n") == 0
        assert os.fstat(fd).st_size == 32 * MiB
    finally:
        close_disk(fd, mnt.disk("ram0"))


@pytest.mark.parametrize("mode", DATA_MODES)
def test_discard_frees_whole_pages_zeroes_partial_ones(mount_factory, mode):
    """Point 1: discard OFFSET LENGTH frees the pages in the range, zeroes partial ones."""
    mnt = disk_mount(mount_factory, mode, "16M")
    data = pattern(4 * PAGE)
    pwrite_disk(mnt.disk("ram0"), data)
    before = mnt.stats("ram0")
    assert before["allocated_pages"] == 4
    # bytes 1000 .. 1000+2*4096+100: page 1 whole, pages 0 and 2 partly.
    length = 2 * PAGE + 100
    run("sh", "-c", f"echo '1000 {length}' > '{mnt.ctl('ram0', 'discard')}'")
    got = pread_disk(mnt.disk("ram0"), 4 * PAGE)
    expected = data[:1000] + bytes(length) + data[1000 + length:]
    assert got == expected
    after = mnt.stats("ram0")
    assert after["allocated_pages"] == 3, "the whole page in the range must be freed"
    assert after["allocated_bytes"] == 3 * PAGE
    assert after["discards"] == before["discards"] + 1
    assert after["discard_bytes"] >= before["discard_bytes"] + PAGE
    # Whole range with suffixes.
    assert write_errno(mnt, "ram0", "discard", text="0 16M\n") == 0
    assert mnt.stats("ram0")["allocated_bytes"] == 0
    assert pread_disk(mnt.disk("ram0"), 4 * PAGE) == bytes(4 * PAGE)
    assert os.stat(mnt.disk("ram0")).st_size == 16 * MiB  # discard never resizes


def test_max_memory_read_write_and_cap(mount_factory):
    """Point 1: max_memory rw in bytes (suffixes accepted); the new cap holds (ENOSPC)."""
    mnt = disk_mount(mount_factory, "direct", "64M")
    default = int(mnt.read_control("max_memory"))
    half = mem_total_bytes() // 2
    assert abs(default - half) <= half // 100, f"default cap {default} is not half of RAM {half}"
    run("sh", "-c", f"echo 256M > '{mnt.ctl('max_memory')}'")
    assert mnt.read_control("max_memory") == f"{256 * MiB}\n"
    assert mnt.stats()["max_memory"] == 256 * MiB
    assert write_errno(mnt, "max_memory", text="1000\n") == 0  # rounds up to a page
    assert mnt.read_control("max_memory") == "4096\n"
    assert write_errno(mnt, "max_memory", text=f"{1 * MiB}\n") == 0
    fd = os.open(mnt.disk("ram0"), os.O_WRONLY)
    try:
        written = 0
        with pytest.raises(OSError) as info:
            for offset in range(0, 2 * MiB, 64 * 1024):
                written += os.pwrite(fd, pattern(64 * 1024), offset)
        assert info.value.errno == errno.ENOSPC
    finally:
        close_disk(fd, mnt.disk("ram0"))
    assert mnt.stats("ram0")["allocated_bytes"] <= 1 * MiB
    assert mnt.stats()["memory_used"] <= 1 * MiB
    assert write_errno(mnt, "max_memory", text="1G\n") == 0
    pwrite_disk(mnt.disk("ram0"), pattern(PAGE), 3 * MiB)  # room again


def test_global_stats(mount_factory):
    """Points 1, 5: global stats: memory_used = sum of allocated_bytes, disks, max_memory, version."""
    mnt = mount_factory("--disk", "ram0:16M:mode=direct", "--disk", "ram1:16M:mode=dax",
                        "--disk", "ram2:16M:mode=cached", wait_disks=["ram0", "ram1", "ram2"])
    for i, name in enumerate(["ram0", "ram1", "ram2"]):
        pwrite_disk(mnt.disk(name), pattern((i + 1) * PAGE))
    g = mnt.stats()
    assert_key_values(mnt.read_control("stats"), "global")
    assert g["disks"] == 3
    assert g["memory_used"] == sum(mnt.stats(n)["allocated_bytes"] for n in ["ram0", "ram1", "ram2"])
    assert g["memory_used"] == 6 * PAGE
    assert g["max_memory"] == int(mnt.read_control("max_memory"))
    assert str(g["version"]).strip()


# ---- 2. flush ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", DATA_MODES)
def test_flush_frees_every_page(mount_factory, mode):
    """Point 2: echo 1 > flush frees every page: allocated bytes 0, st_blocks 0, reads zeros."""
    mnt = disk_mount(mount_factory, mode, "16M")
    data = pattern(16 * PAGE)
    pwrite_disk(mnt.disk("ram0"), data)
    pwrite_disk(mnt.disk("ram0"), data, 8 * MiB)
    st = mnt.stats("ram0")
    assert st["allocated_bytes"] == 32 * PAGE
    assert os.stat(mnt.disk("ram0")).st_blocks == 32 * PAGE // 512
    run("sh", "-c", f"echo 1 > '{mnt.ctl('ram0', 'flush')}'")
    after = mnt.stats("ram0")
    assert after["allocated_bytes"] == 0
    assert after["allocated_pages"] == 0
    assert after["flushes"] == st["flushes"] + 1
    assert after["size"] == 16 * MiB
    assert os.stat(mnt.disk("ram0")).st_blocks == 0
    assert os.stat(mnt.disk("ram0")).st_size == 16 * MiB
    assert mnt.stats()["memory_used"] == 0
    assert pread_disk(mnt.disk("ram0"), len(data)) == bytes(len(data))
    assert pread_disk(mnt.disk("ram0"), len(data), 8 * MiB) == bytes(len(data))


@pytest.mark.parametrize("mode", DATA_MODES)
def test_flush_drops_page_cache_no_stale_reads(mount_factory, mode):
    """Point 2: after flush a read returns zeros, never the old bytes (the cached mode's page cache)."""
    mnt = disk_mount(mount_factory, mode, "16M")
    path = mnt.disk("ram0")
    data = pattern(8 * PAGE, seed=5)
    pwrite_disk(path, data)
    # Read (also with cat and through a mapping) so that any page cache holds the data.
    assert pread_disk(path, len(data)) == data
    assert run("cmp", "-n", str(len(data)), path, "/dev/zero", check=False).returncode == 1
    settle(path)
    fd = os.open(path, os.O_RDONLY)
    with mmap.mmap(fd, len(data), mmap.MAP_SHARED, mmap.PROT_READ) as m:
        assert m[:] == data
    close_disk(fd, path)
    assert write_errno(mnt, "ram0", "flush", text="1\n") == 0
    assert pread_disk(path, len(data)) == bytes(len(data))
    fd = os.open(path, os.O_RDONLY)
    try:
        with mmap.mmap(fd, len(data), mmap.MAP_SHARED, mmap.PROT_READ) as m:
            assert m[:] == bytes(len(data))
    finally:
        close_disk(fd, path)
    # As a user checks it: the first 8 pages equal /dev/zero.
    result = run("cmp", "-n", str(len(data)), path, "/dev/zero", check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("mode", MODES)
def test_flush_busy_while_open(mount_factory, mode):
    """Point 2: flush is refused with EBUSY while the disk is open elsewhere; data is kept."""
    mnt = disk_mount(mount_factory, mode, "16M")
    data = pattern(4 * PAGE)
    pwrite_disk(mnt.disk("ram0"), data)
    before = mnt.stats("ram0")
    fd = os.open(mnt.disk("ram0"), os.O_RDONLY)
    try:
        assert write_errno(mnt, "ram0", "flush", text="1\n") == errno.EBUSY
        result = sh(f"echo 1 > '{mnt.ctl('ram0', 'flush')}'")
        assert result.returncode != 0 and "busy" in result.stderr.lower()
    finally:
        close_disk(fd, mnt.disk("ram0"))
    after = mnt.stats("ram0")
    assert after["allocated_bytes"] == before["allocated_bytes"]
    assert after["flushes"] == before["flushes"]
    if mode != "null":
        assert pread_disk(mnt.disk("ram0"), len(data)) == data
    assert write_errno(mnt, "ram0", "flush", text="1\n") == 0  # closed: allowed


@pytest.mark.parametrize("mode", MODES)
def test_not_busy_right_after_close(mount_factory, mode):
    """Points 2, 4: once close() has returned the disk is closed: flush and mode must not be EBUSY.

    FUSE sends RELEASE asynchronously, after close() has returned, so a daemon
    that counts opens only on RELEASE answers EBUSY for a moment after the last
    close (seen a few times in 1000 tries, more under load). `exec 3<disk; exec 3<&-;
    echo 1 > flush` in a script must not fail."""
    mnt = disk_mount(mount_factory, mode, "16M")
    busy = {"flush": 0, "mode": 0}
    modes = ["direct", "cached"] if mode != "direct" else ["cached", "direct"]
    for i in range(1000):
        os.close(os.open(mnt.disk("ram0"), os.O_RDONLY))
        if write_errno(mnt, "ram0", "flush", text="1\n") == errno.EBUSY:
            busy["flush"] += 1
        os.close(os.open(mnt.disk("ram0"), os.O_RDONLY))
        if write_errno(mnt, "ram0", "mode", text=modes[i % 2]) == errno.EBUSY:
            busy["mode"] += 1
    assert busy == {"flush": 0, "mode": 0}, f"EBUSY right after close() in 1000 tries: {busy}"


def test_flush_busy_while_loop_attached(mount_factory):
    """Point 2: a loop device holds the disk open: flush is EBUSY."""
    mnt = disk_mount(mount_factory, "direct", "16M")
    pwrite_disk(mnt.disk("ram0"), pattern(PAGE))
    with loop_device(mnt.disk("ram0")):
        assert write_errno(mnt, "ram0", "flush", text="1\n") == errno.EBUSY
    assert mnt.stats("ram0")["allocated_bytes"] == PAGE


# ---- 3. readonly --------------------------------------------------------------------------


def write_attempt_errno(path, flags):
    """errno of open(flags)+pwrite, whichever fails first; 0 if both succeed."""
    try:
        fd = os.open(path, flags)
    except OSError as e:
        return e.errno
    try:
        os.pwrite(fd, b"X" * PAGE, 0)
        return 0
    except OSError as e:
        return e.errno
    finally:
        close_disk(fd, path)


@pytest.mark.parametrize("mode", MODES)
def test_readonly_refuses_writes_truncates_fallocate(mount_factory, mode):
    """Point 3: readonly 1 makes writes, truncates and fallocate fail with EROFS in every mode."""
    mnt = disk_mount(mount_factory, mode, "16M")
    path = mnt.disk("ram0")
    data = pattern(4 * PAGE)
    pwrite_disk(path, data)
    expected = data if mode != "null" else bytes(len(data))
    run("sh", "-c", f"echo 1 > '{mnt.ctl('ram0', 'readonly')}'")
    assert mnt.read_control("ram0", "readonly") == "1\n"
    assert mnt.stats("ram0")["readonly"] == 1
    before = mnt.stats("ram0")
    for attempt in range(3):  # reopened files, every time (dax: the kernel must not bypass it)
        for flags in (os.O_WRONLY, os.O_RDWR, os.O_WRONLY | os.O_TRUNC):
            err = write_attempt_errno(path, flags)
            assert err == errno.EROFS, f"open({flags:#o})+pwrite: {errname(err)}"
    for size in (32 * MiB, 8 * MiB, 16 * MiB):
        with pytest.raises(OSError) as info:
            os.truncate(path, size)
        assert info.value.errno == errno.EROFS, f"truncate to {size}"
    # ftruncate/fallocate need a writable fd; if open for writing is refused that is EROFS too.
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError as e:
        assert e.errno == errno.EROFS
    else:
        try:
            for call in (lambda: os.ftruncate(fd, 8 * MiB),
                         lambda: os.posix_fallocate(fd, 0, PAGE)):
                with pytest.raises(OSError) as info:
                    call()
                assert info.value.errno == errno.EROFS
        finally:
            close_disk(fd, path)
    for args in (["-l", "4096"], ["-p", "-o", "0", "-l", "4096"], ["-z", "-o", "0", "-l", "4096"]):
        result = run("fallocate", *args, path, check=False)
        assert result.returncode != 0 and "Read-only file system" in result.stderr, (args, result)
    result = sh(f"echo hi > '{path}'")
    assert result.returncode != 0 and "Read-only file system" in result.stderr, result
    result = run("dd", "if=/dev/zero", f"of={path}", "bs=4096", "count=1", "conv=notrunc",
                 check=False)
    assert result.returncode != 0 and "Read-only file system" in result.stderr, result
    # The control files that would change the data or the size are refused too.
    for file, text in (("size", "8M\n"), ("flush", "1\n"), ("discard", "0 4096\n")):
        err = write_errno(mnt, "ram0", file, text=text)
        assert err == errno.EROFS, f"{file} on a read-only disk: {errname(err)}"
    # Nothing changed, reads still work.
    assert os.stat(path).st_size == 16 * MiB
    assert pread_disk(path, len(data)) == expected
    after = mnt.stats("ram0")
    assert after["allocated_bytes"] == before["allocated_bytes"]
    # readonly 0 gives writes back.
    assert write_errno(mnt, "ram0", "readonly", text="0\n") == 0
    assert mnt.read_control("ram0", "readonly") == "0\n"
    assert write_attempt_errno(path, os.O_WRONLY) == 0


def test_readonly_dax_reopen_cannot_bypass(mount_factory):
    """Point 3: in dax mode the kernel writes without the daemon; a reopened fd must still be refused."""
    mnt = disk_mount(mount_factory, "dax", "16M")
    path = mnt.disk("ram0")
    data = pattern(4 * PAGE, seed=9)
    pwrite_disk(path, data)
    # A writable shared mapping made before: closed, so the disk is not open any more.
    fd = os.open(path, os.O_RDWR)
    with mmap.mmap(fd, 4 * PAGE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE) as m:
        assert m[:PAGE] == data[:PAGE]
    close_disk(fd, path)
    assert write_errno(mnt, "ram0", "readonly", text="1\n") == 0
    for _ in range(5):
        assert write_attempt_errno(path, os.O_RDWR) == errno.EROFS
        # A shared writable mapping needs a writable fd: never obtainable now.
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError as e:
            assert e.errno == errno.EROFS
        else:
            try:
                with pytest.raises(OSError):
                    os.pwrite(fd, b"Y" * PAGE, 0)
            finally:
                close_disk(fd, path)
    assert pread_disk(path, len(data)) == data


def test_readonly_new_disk(mount):
    """Point 3: new NAME SIZE readonly=1 gives a read-only disk."""
    assert write_errno(mount, "new", text="ro1 1M readonly=1\n") == 0
    assert write_attempt_errno(mount.disk("ro1"), os.O_WRONLY) == errno.EROFS
    assert mount.stats("ro1")["readonly"] == 1


@pytest.mark.parametrize("mode", MODES)
def test_readonly_losetup_gives_readonly_loop(mount_factory, mode):
    """Point 3: losetup of a read-only disk yields a read-only loop device."""
    mnt = disk_mount(mount_factory, mode, "16M")
    assert write_errno(mnt, "ram0", "readonly", text="1\n") == 0
    with loop_device(mnt.disk("ram0")) as dev:
        assert run("blockdev", "--getro", dev).stdout.strip() == "1"
        ro = run("losetup", "--list", "--noheadings", "--output", "RO", dev).stdout.strip()
        assert ro == "1"
        result = run("dd", "if=/dev/zero", f"of={dev}", "bs=4096", "count=1", "oflag=direct",
                     check=False)
        assert result.returncode != 0


# ---- 4. mode -------------------------------------------------------------------------------


@pytest.mark.parametrize("src,dst", [(a, b) for a in DATA_MODES for b in DATA_MODES if a != b])
def test_mode_switch_keeps_data(mount_factory, src, dst):
    """Point 4: switching a closed disk's mode keeps its data, both ways, without stale pages."""
    mnt = disk_mount(mount_factory, src, "16M")
    path = mnt.disk("ram0")
    first = pattern(8 * PAGE, seed=2)
    pwrite_disk(path, first)
    assert pread_disk(path, len(first)) == first  # may fill a page cache in cached mode
    run("sh", "-c", f"echo {dst} > '{mnt.ctl('ram0', 'mode')}'")
    assert mnt.read_control("ram0", "mode") == f"{dst}\n"
    assert mnt.stats("ram0")["mode"] == dst
    assert pread_disk(path, len(first)) == first
    second = pattern(8 * PAGE, seed=3)
    pwrite_disk(path, second)
    assert write_errno(mnt, "ram0", "mode", text=src) == 0
    assert mnt.read_control("ram0", "mode") == f"{src}\n"
    assert pread_disk(path, len(second)) == second, "stale bytes after switching back"
    assert mnt.stats("ram0")["allocated_pages"] == 8


def test_mode_null_keeps_data(mount_factory):
    """Point 4: null reads zeros and drops writes; switching back shows the data unchanged."""
    mnt = disk_mount(mount_factory, "direct", "16M")
    path = mnt.disk("ram0")
    data = pattern(4 * PAGE)
    pwrite_disk(path, data)
    assert write_errno(mnt, "ram0", "mode", text="null\n") == 0
    assert pread_disk(path, len(data)) == bytes(len(data))
    pwrite_disk(path, b"Z" * PAGE * 8)  # dropped
    assert mnt.stats("ram0")["allocated_pages"] == 4
    for mode in ("dax", "cached", "direct"):
        assert write_errno(mnt, "ram0", "mode", text=f"{mode}\n") == 0
        assert pread_disk(path, len(data)) == data, mode
        assert pread_disk(path, PAGE, 4 * PAGE) == bytes(PAGE), mode


@pytest.mark.parametrize("mode", MODES)
def test_mode_busy_while_open(mount_factory, mode):
    """Point 4: changing the mode is refused with EBUSY while the disk is open."""
    mnt = disk_mount(mount_factory, mode, "16M")
    other = "direct" if mode != "direct" else "cached"
    fd = os.open(mnt.disk("ram0"), os.O_RDONLY)
    try:
        assert write_errno(mnt, "ram0", "mode", text=f"{other}\n") == errno.EBUSY
        assert mnt.read_control("ram0", "mode") == f"{mode}\n"
    finally:
        close_disk(fd, mnt.disk("ram0"))
    assert write_errno(mnt, "ram0", "mode", text=f"{other}\n") == 0
    assert write_errno(mnt, "ram0", "mode", text=f"{other}\n") == 0  # same mode again: fine


# ---- 5. stats ----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_disk_stats_counters(mount_factory, mode):
    """Point 5: per-I/O counters count in direct/cached/null and not in dax (kernel bypasses)."""
    mnt = disk_mount(mount_factory, mode, "16M")
    path = mnt.disk("ram0")
    st = mnt.stats("ram0")
    assert_key_values(mnt.read_control("ram0", "stats"), "disk")
    assert st["size"] == 16 * MiB and st["mode"] == mode and st["readonly"] == 0
    assert st["opens"] == 0
    assert all(st[k] == 0 for k in IO_COUNTERS + ["discards", "discard_bytes", "flushes"]), st
    fd = os.open(path, os.O_RDWR)
    try:
        assert mnt.stats("ram0")["opens"] == 1
        assert os.pwrite(fd, pattern(2 * PAGE), 0) == 2 * PAGE
        assert len(os.pread(fd, PAGE, 1 * MiB)) == PAGE  # never written: a fresh read
    finally:
        close_disk(fd, path)
    st = mnt.stats("ram0")
    assert st["opens"] == 0
    dax = mode == "dax" and st["fallback"] == "none"
    if dax:
        assert all(st[k] == 0 for k in IO_COUNTERS), f"dax I/O bypasses the daemon: {st}"
    elif mode == "direct":
        assert (st["writes"], st["write_bytes"]) == (1, 2 * PAGE), st
        assert (st["reads"], st["read_bytes"]) == (1, PAGE), st
    else:
        assert st["writes"] >= 1 and st["write_bytes"] >= 2 * PAGE, st
        assert st["reads"] >= 1 and st["read_bytes"] >= PAGE, st
    expected_pages = 0 if mode == "null" else 2
    assert st["allocated_pages"] == expected_pages
    assert st["allocated_bytes"] == expected_pages * PAGE
    assert os.stat(path).st_blocks == expected_pages * PAGE // 512
    assert write_errno(mnt, "ram0", "discard", text="0 4096\n") == 0
    assert write_errno(mnt, "ram0", "flush", text="1\n") == 0
    st2 = mnt.stats("ram0")
    assert st2["discards"] == 1 and st2["discard_bytes"] == PAGE, st2
    assert st2["flushes"] == 1, st2


def test_dax_fallback_reported(mount_factory):
    """Point 5: stats reports the fallback reason (none when dax really is passthrough)."""
    mnt = disk_mount(mount_factory, "dax")
    st = mnt.stats("ram0")
    assert isinstance(st["fallback"], str) and st["fallback"], st
    if st["fallback"] != "none":
        assert st["fallback"] in mnt.log()


# ---- 6. ioctls ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_blockdev_getsize64_and_bsz(mount_factory, mode):
    """Point 6: blockdev --getsize64 / --getsz / --getbsz and BLKBSZGET work on a disk file."""
    mnt = disk_mount(mount_factory, mode, "64M")
    path = mnt.disk("ram0")
    assert run("blockdev", "--getsize64", path).stdout.strip() == str(64 * MiB)
    assert run("blockdev", "--getsz", path).stdout.strip() == str(64 * MiB // 512)
    assert run("blockdev", "--getbsz", path).stdout.strip() == "4096"
    err, buf = ioctl(path, BLKGETSIZE64)
    assert err == 0 and struct.unpack("<Q", buf[:8])[0] == 64 * MiB
    err, buf = ioctl(path, BLKBSZGET)
    assert err == 0 and struct.unpack("<i", buf[:4])[0] == 4096
    assert write_errno(mnt, "ram0", "size", text="100M\n") == 0
    assert run("blockdev", "--getsize64", path).stdout.strip() == str(100 * MiB)


@pytest.mark.parametrize("mode", DATA_MODES)
def test_blockdev_flushbufs(mount_factory, mode):
    """Point 6: blockdev --flushbufs (BLKFLSBUF) frees the disk like the flush file."""
    mnt = disk_mount(mount_factory, mode, "16M")
    pwrite_disk(mnt.disk("ram0"), pattern(8 * PAGE))
    before = mnt.stats("ram0")
    result = run("blockdev", "--flushbufs", mnt.disk("ram0"), check=False)
    assert result.returncode == 0, result.stderr
    after = mnt.stats("ram0")
    assert after["allocated_bytes"] == 0
    assert after["flushes"] == before["flushes"] + 1
    assert pread_disk(mnt.disk("ram0"), 8 * PAGE) == bytes(8 * PAGE)


@pytest.mark.parametrize("mode", DATA_MODES)
def test_blkflsbuf_same_fd_sees_no_stale_bytes(mount_factory, mode):
    """Point 2/6: after BLKFLSBUF, the caller's own fd and mapping read zeros, not cached bytes."""
    mnt = disk_mount(mount_factory, mode, "16M")
    data = pattern(8 * PAGE, seed=7)
    fd = os.open(mnt.disk("ram0"), os.O_RDWR)
    try:
        assert os.pwrite(fd, data, 0) == len(data)
        assert os.pread(fd, len(data), 0) == data
        with mmap.mmap(fd, len(data), mmap.MAP_SHARED, mmap.PROT_READ) as m:
            assert m[:] == data
            err, _ = ioctl_fd(fd, BLKFLSBUF, arg=0)
            assert err == 0, errname(err)
            # Checked before reading again: a read fault through a shared mapping of
            # a hole may allocate a page in the store (shmem does).
            assert mnt.stats("ram0")["allocated_bytes"] == 0
            assert os.pread(fd, len(data), 0) == bytes(len(data)), "stale bytes through read()"
            assert m[:] == bytes(len(data)), "stale bytes through the mapping"
    finally:
        close_disk(fd, mnt.disk("ram0"))


def test_blkflsbuf_busy_with_another_opener(mount_factory):
    """Point 2/6: BLKFLSBUF is EBUSY while someone else has the disk open."""
    mnt = disk_mount(mount_factory, "direct", "16M")
    pwrite_disk(mnt.disk("ram0"), pattern(PAGE))
    other = os.open(mnt.disk("ram0"), os.O_RDONLY)
    try:
        err, _ = ioctl(mnt.disk("ram0"), BLKFLSBUF, arg=0)
        assert err == errno.EBUSY, errname(err)
        result = run("blockdev", "--flushbufs", mnt.disk("ram0"), check=False)
        assert result.returncode != 0
    finally:
        close_disk(other, mnt.disk("ram0"))
    assert mnt.stats("ram0")["allocated_bytes"] == PAGE


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name,request_", [("BLKGETSIZE", BLKGETSIZE), ("BLKSSZGET", BLKSSZGET),
                                           ("BLKROSET", BLKROSET), ("BLKROGET", BLKROGET),
                                           ("BLKPBSZGET", BLKPBSZGET), ("BLKDISCARD", BLKDISCARD),
                                           ("BLKZEROOUT", BLKZEROOUT)])
def test_io_ioctls_without_data_get_enotty(mount_factory, mode, name, request_):
    """Point 6: _IO() ioctls FUSE cannot carry data for answer ENOTTY and change nothing."""
    mnt = disk_mount(mount_factory, mode, "16M")
    pwrite_disk(mnt.disk("ram0"), pattern(PAGE))
    before = snapshot(mnt)
    arg = bytearray(struct.pack("<q", 1) * 2)  # BLKROSET's int 1, BLKDISCARD's range ...
    err, buf = ioctl(mnt.disk("ram0"), request_, flags=os.O_RDWR, arg=arg)
    assert err == errno.ENOTTY, f"{name}: {errname(err)}"
    assert buf == struct.pack("<q", 1) * 2, f"{name} touched the caller's buffer"
    assert_unchanged(mnt, before, f"{name} ioctl")


def test_unknown_ioctls_get_enotty(mount):
    """Point 6: an unknown ioctl, and block ioctls on control files, get ENOTTY."""
    unknown_ior = (2 << 30) | (8 << 16) | (ord("r") << 8) | 0x77
    err, _ = ioctl(mount.disk("ram0"), unknown_ior)
    assert err == errno.ENOTTY, errname(err)
    for parts in (("stats",), ("ram0", "stats")):
        err, _ = ioctl(mount.ctl(*parts), BLKGETSIZE64)
        assert err == errno.ENOTTY, f"{parts}: {errname(err)}"


# ---- 8. bad input changes nothing ---------------------------------------------------------------

TOO_BIG_DISK = str(0x7FFFFFFFFFFFF000 + 1)  # kMaxDiskBytes + 1
OVERFLOW = "99999999999999999999"

BAD_WRITES = [
    # new: garbage, empty, negative, overflowing, fractional, unknown modes and keys, names
    ("new", "\n", errno.EINVAL),
    ("new", " \t \n", errno.EINVAL),
    ("new", "garbage", errno.EINVAL),
    ("new", "x 12Q\n", errno.EINVAL),
    ("new", "x -1\n", errno.EINVAL),
    ("new", "x -4096\n", errno.EINVAL),
    ("new", f"x {OVERFLOW}\n", errno.EINVAL),
    ("new", "x 99999999999P\n", errno.EINVAL),
    ("new", "x 1.5\n", errno.EINVAL),  # a fraction needs a unit
    ("new", "x 0x1000\n", errno.EINVAL),
    ("new", f"x {TOO_BIG_DISK}\n", errno.EINVAL),
    ("new", "x 8E\n", errno.EINVAL),
    ("new", "x 1M mode=bogus\n", errno.EINVAL),
    ("new", "x 1M mode=DAX\n", errno.EINVAL),
    ("new", "x 1M colour=red\n", errno.EINVAL),
    ("new", "x 1M readonly=2\n", errno.EINVAL),
    ("new", "x 1M mode=dax mode=null\n", errno.EINVAL),
    ("new", "x 1M extra\n", errno.EINVAL),
    ("new", "x 1M image=/etc/passwd\n", errno.EINVAL),
    ("new", "x 1M\ny 1M\n", errno.EINVAL),
    ("new", "x\x001M\n", errno.EINVAL),
    ("new", "a/b 1M\n", errno.EINVAL),
    ("new", "../evil 1M\n", errno.EINVAL),
    ("new", ".. 1M\n", errno.EINVAL),
    ("new", ". 1M\n", errno.EINVAL),
    ("new", ".hidden 1M\n", errno.EINVAL),
    ("new", ".control 1M\n", errno.EINVAL),
    ("new", "-x 1M\n", errno.EINVAL),
    ("new", "x*y 1M\n", errno.EINVAL),
    ("new", "x" * 256 + " 1M\n", errno.ENAMETOOLONG),
    ("new", "ram0 1M\n", errno.EEXIST),
    ("new", "ram0 64M\n", errno.EEXIST),
    ("new", "x " + "1" * 5000 + "\n", errno.EINVAL),
    # delete
    ("delete", "  \n", errno.EINVAL),
    ("delete", "\n", errno.EINVAL),
    ("delete", "nosuch\n", errno.ENOENT),
    ("delete", "../ram0\n", errno.EINVAL),
    ("delete", "a/ram0\n", errno.EINVAL),
    ("delete", "..\n", errno.EINVAL),
    ("delete", ".control\n", errno.EINVAL),
    ("delete", "ram0 ram1\n", errno.EINVAL),
    ("delete", "x" * 256 + "\n", errno.ENAMETOOLONG),
    # max_memory: sizes beyond the cap, garbage ...
    ("max_memory", "\n", errno.EINVAL),
    ("max_memory", "garbage\n", errno.EINVAL),
    ("max_memory", "-1\n", errno.EINVAL),
    ("max_memory", "0\n", errno.EINVAL),
    ("max_memory", "1.5\n", errno.EINVAL),
    ("max_memory", f"{OVERFLOW}\n", errno.EINVAL),
    ("max_memory", "18446744073709551615\n", errno.EINVAL),
    ("max_memory", "1P\n", errno.EINVAL),  # more than the machine's RAM
    ("max_memory", "MEMx2\n", errno.EINVAL),  # twice the RAM, in bytes (filled in below)
    ("max_memory", "4096\n", errno.EBUSY),  # below current usage
    ("max_memory", "64M 64M\n", errno.EINVAL),
    # size
    ("ram0/size", "\n", errno.EINVAL),
    ("ram0/size", "garbage\n", errno.EINVAL),
    ("ram0/size", "-1\n", errno.EINVAL),
    ("ram0/size", "1,5M\n", errno.EINVAL),
    ("ram0/size", f"{OVERFLOW}\n", errno.EINVAL),
    ("ram0/size", f"{TOO_BIG_DISK}\n", errno.EINVAL),
    ("ram0/size", "9223372036854775807\n", errno.EINVAL),
    ("ram0/size", "32M 64M\n", errno.EINVAL),
    ("ram0/size", "32M\n64M\n", errno.EINVAL),
    # discard
    ("ram0/discard", "\n", errno.EINVAL),
    ("ram0/discard", "4096\n", errno.EINVAL),
    ("ram0/discard", "a b\n", errno.EINVAL),
    ("ram0/discard", "-1 4096\n", errno.EINVAL),
    ("ram0/discard", "0 -4096\n", errno.EINVAL),
    ("ram0/discard", "0.5 4096\n", errno.EINVAL),
    ("ram0/discard", f"0 {OVERFLOW}\n", errno.EINVAL),
    ("ram0/discard", "18446744073709551615 1\n", errno.EINVAL),
    ("ram0/discard", "0 4096 4096\n", errno.EINVAL),
    ("ram0/discard", "64M 4096\n", errno.EINVAL),  # past the end of the disk
    ("ram0/discard", "0 128M\n", errno.EINVAL),  # runs past the end
    # readonly
    ("ram0/readonly", "\n", errno.EINVAL),
    ("ram0/readonly", "2\n", errno.EINVAL),
    ("ram0/readonly", "-1\n", errno.EINVAL),
    ("ram0/readonly", "yes\n", errno.EINVAL),
    ("ram0/readonly", "1 1\n", errno.EINVAL),
    # mode
    ("ram0/mode", "\n", errno.EINVAL),
    ("ram0/mode", "bogus\n", errno.EINVAL),
    ("ram0/mode", "DAX\n", errno.EINVAL),
    ("ram0/mode", "dax direct\n", errno.EINVAL),
    ("ram0/mode", "1\n", errno.EINVAL),
    # flush
    ("ram0/flush", "\n", errno.EINVAL),
    ("ram0/flush", "0\n", errno.EINVAL),
    ("ram0/flush", "2\n", errno.EINVAL),
    ("ram0/flush", "yes\n", errno.EINVAL),
]


@pytest.fixture
def busy_mount(mount_factory):
    """ram0 (64M, direct) with 16 written pages, ram1 (16M, cached) with 2: changes would show."""
    mnt = mount_factory("--disk", "ram0:64M:mode=direct", "--disk", "ram1:16M:mode=cached",
                        wait_disks=["ram0", "ram1"])
    pwrite_disk(mnt.disk("ram0"), pattern(16 * PAGE))
    pwrite_disk(mnt.disk("ram1"), pattern(2 * PAGE))
    return mnt


@pytest.mark.parametrize("file,text,expected", BAD_WRITES,
                         ids=[f"{f}:{t[:24]!r}" for f, t, _ in BAD_WRITES])
def test_bad_input_changes_nothing(busy_mount, file, text, expected):
    """Point 8: bad input gets a clear errno, changes nothing, and logs exactly one line."""
    if text == "MEMx2\n":
        text = f"{2 * mem_total_bytes()}\n"
    assert_rejected(busy_mount, tuple(file.split("/")), text, expected)


GOOD_WRITES = [("new", "x 1M\n"), ("delete", "ram1\n"), ("max_memory", "128M\n"),
               ("ram0/size", "32M\n"), ("ram0/flush", "1\n"), ("ram0/discard", "0 4096\n"),
               ("ram0/readonly", "1\n"), ("ram0/mode", "null\n")]


@pytest.mark.parametrize("offset", [1, 2, 4096])
@pytest.mark.parametrize("file,text", GOOD_WRITES, ids=[f for f, _ in GOOD_WRITES])
def test_write_at_odd_offset_is_einval(busy_mount, file, text, offset):
    """Point 8: a (valid) command written at an offset other than 0 is EINVAL and changes nothing."""
    assert_rejected(busy_mount, tuple(file.split("/")), text, errno.EINVAL, offset=offset)


def test_second_write_on_same_fd_is_refused(busy_mount):
    """Point 8: only one write() at offset 0 per open counts; a second one (offset > 0) is EINVAL."""
    fd = os.open(busy_mount.ctl("ram0", "size"), os.O_WRONLY)
    try:
        assert os.write(fd, b"32M\n") == 4
        with pytest.raises(OSError) as info:
            os.write(fd, b"48M\n")
        assert info.value.errno == errno.EINVAL
    finally:
        os.close(fd)
    assert busy_mount.read_control("ram0", "size") == f"{32 * MiB}\n"


@pytest.mark.parametrize("name", ["new", "delete", "max_memory", "stats"])
def test_disk_named_like_a_control_file_refused(busy_mount, name):
    """Point 8: a disk named after a global control file would clash in .control/: refused."""
    before = snapshot(busy_mount)
    err = write_errno(busy_mount, "new", text=f"{name} 1M\n")
    assert err in (errno.EEXIST, errno.EINVAL), errname(err)
    assert_unchanged(busy_mount, before, f"new {name}")
    result = run("truncate", "-s", "1M", busy_mount.disk(name), check=False)
    assert result.returncode != 0
    assert_unchanged(busy_mount, before, f"truncate -s 1M {name}")


def test_good_write_after_bad_ones_still_works(busy_mount):
    """Point 8: the daemon is unharmed by bad input (no state left half-parsed)."""
    for _, text, _ in BAD_WRITES[:20]:
        write_errno(busy_mount, "new", text=text)
    assert write_errno(busy_mount, "new", text="fine 1M\n") == 0
    assert "fine" in disk_names(busy_mount)


# ---- 9. permissions with allow_other --------------------------------------------------------------

PROBE = r"""
import errno, json, os, sys
out = {}
for op, path, text in json.loads(sys.argv[1]):
    try:
        if op == "read":
            fd = os.open(path, os.O_RDONLY)
            try:
                os.read(fd, 4096)
            finally:
                os.close(fd)
        elif op == "write":
            fd = os.open(path, os.O_WRONLY)
            try:
                os.write(fd, text.encode())
            finally:
                os.close(fd)
        elif op == "chmod":
            os.chmod(path, 0o666)
        elif op == "create":
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        elif op == "mkdir":
            os.mkdir(path)
        elif op == "unlink":
            os.unlink(path)
        elif op == "truncate":
            os.truncate(path, 1 << 20)
        out[f"{op} {path}"] = 0
    except OSError as e:
        out[f"{op} {path}"] = e.errno
print(json.dumps(out))
"""

WRITE_VALUES = {"new": "evil 1M\n", "delete": "ram0\n", "max_memory": "64M\n", "size": "1M\n",
                "flush": "1\n", "discard": "0 4096\n", "readonly": "1\n", "mode": "null\n"}


def probe_as_nobody(mnt, ops):
    result = as_nobody("/usr/bin/python3", "-c", PROBE, json.dumps(ops), cwd=mnt.path)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_allow_other_reads_allowed_control_writes_refused(mount_factory):
    """Point 9: with allow_other another user reads what its permissions allow, writes no control file."""
    mnt = mount_factory("-o", "allow_other", "--disk", "ram0:16M:mode=direct",
                        "--disk", "ram1:16M:mode=dax", wait_disks=["ram0", "ram1"])
    data = pattern(2 * PAGE)
    pwrite_disk(mnt.disk("ram0"), data)
    pwrite_disk(mnt.disk("ram1"), data)
    os.chmod(mnt.disk("ram0"), 0o644)
    before = snapshot(mnt, IO_COUNTERS)
    ops = [["read", "ram0", ""], ["read", "ram1", ""], ["read", ".control/stats", ""],
           ["read", ".control/max_memory", ""]]
    for name in ("size", "readonly", "mode", "stats"):
        ops.append(["read", f".control/ram0/{name}", ""])
    for name in ("new", "delete", "max_memory"):
        ops.append(["write", f".control/{name}", WRITE_VALUES[name]])
    for disk in ("ram0", "ram1"):
        for name in ("size", "flush", "discard", "readonly", "mode"):
            ops.append(["write", f".control/{disk}/{name}", WRITE_VALUES[name]])
    ops += [["write", "ram0", "x"], ["chmod", ".control/new", ""], ["chmod", ".control/ram0/size", ""],
            ["chmod", "ram0", ""], ["create", ".control/evil", ""], ["mkdir", ".control/evil", ""],
            ["create", "evil", ""], ["unlink", "ram0", ""], ["truncate", "ram0", ""]]
    got = probe_as_nobody(mnt, ops)
    expected = {}
    for op, path, _ in ops:
        key = f"{op} {path}"
        if op == "read":
            expected[key] = errno.EACCES if path == "ram1" else 0
        elif op == "chmod":
            expected[key] = errno.EPERM
        else:
            expected[key] = errno.EACCES
    wrong = {k: f"expected {errname(expected[k])}, got {errname(v)}"
             for k, v in got.items() if v != expected[k]}
    assert not wrong, json.dumps(wrong, indent=1)
    assert_unchanged(mnt, before, "the other user's attempts", IO_COUNTERS)
    # What the other user read is the disk's data.
    result = as_nobody("sh", "-c", "head -c 8192 ram0 | sha256sum", cwd=mnt.path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == hashlib.sha256(data).hexdigest()
    # Shell forms too.
    result = as_nobody("sh", "-c", "echo 'evil 1M' > .control/new", cwd=mnt.path)
    assert result.returncode != 0 and "Permission denied" in result.stderr
    result = as_nobody("cat", ".control/stats", cwd=mnt.path)
    assert result.returncode == 0 and "memory_used" in result.stdout
    assert_unchanged(mnt, before, "the other user's shell attempts", IO_COUNTERS)


def test_allow_other_ioctls(mount_factory):
    """Point 9: another user may query a disk it can read, but not flush it (BLKFLSBUF needs the owner)."""
    mnt = mount_factory("-o", "allow_other", "--disk", "ram0:16M:mode=direct",
                        wait_disks=["ram0"])
    pwrite_disk(mnt.disk("ram0"), pattern(2 * PAGE))
    os.chmod(mnt.disk("ram0"), 0o644)
    result = as_nobody("blockdev", "--getsize64", "ram0", cwd=mnt.path)
    assert result.returncode == 0 and result.stdout.strip() == str(16 * MiB), result
    result = as_nobody("blockdev", "--flushbufs", "ram0", cwd=mnt.path)
    assert result.returncode != 0, "an unprivileged reader flushed the disk"
    assert ("Permission denied" in result.stderr or "not permitted" in result.stderr), result.stderr
    assert mnt.stats("ram0")["allocated_bytes"] == 2 * PAGE


def test_without_allow_other_other_users_see_nothing(mount_factory):
    """Point 9: without allow_other another user cannot even look (FUSE refuses)."""
    mnt = mount_factory("--disk", "ram0:16M", wait_disks=["ram0"])
    os.chmod(mnt.disk("ram0"), 0o644)
    result = as_nobody("cat", ".control/stats", cwd=mnt.path)
    assert result.returncode != 0
    result = as_nobody("ls", ".", cwd=mnt.path)
    assert result.returncode != 0 and "Permission denied" in result.stderr
