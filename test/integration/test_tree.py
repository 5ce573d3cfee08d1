"""The tree (SPEC 3): disks as files, the hidden control directory, truncate/rm/O_TRUNC,
writes at the end of a disk, chmod/chown and default_permissions."""

import errno
import os
import stat
import subprocess

import pytest

from support.blockdev import loop_device
from support.io import (aligned_buffer, odirect_pread, pattern, pread_all, pwrite_all, read_file,
                        write_file)
from support.mounts import DATA_MODES, MODES, run
from support.units import MiB, PAGE

NOBODY = 65534


def setpriv(*cmd, cwd):
    """Runs `cmd` as uid/gid 65534 with no groups, from directory `cwd` (entered as root,
    so that the 0700 pytest temp directories above the mount do not get in the way)."""
    return subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}",
                           "--clear-groups", *map(str, cmd)], cwd=cwd,
                          capture_output=True, timeout=30)


def test_ls_shows_disks_and_hides_control(mount_factory):
    mnt = mount_factory("--disk", "ram0:8M", "--disk", "zeta:4M", "--disk", "alpha:4M",
                        wait_disks=["ram0", "zeta", "alpha"])
    assert run("ls", mnt.path).stdout.split() == ["alpha", "ram0", "zeta"]
    assert ".control" in run("ls", "-a", mnt.path).stdout.split()
    assert stat.S_ISDIR(os.stat(mnt.control).st_mode)
    for name in ("alpha", "ram0", "zeta"):
        st = os.stat(mnt.disk(name))
        assert stat.S_ISREG(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o600
        assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid())
        assert st.st_blocks == 0
    assert os.stat(mnt.disk("ram0")).st_size == 8 * MiB


def test_truncate_creates_and_resizes(mount_factory):
    mnt = mount_factory("--disk", "ram0:8M", wait_disks=["ram0"])
    scratch = mnt.disk("scratch")
    run("truncate", "-s", "8M", scratch)
    st = os.stat(scratch)
    assert stat.S_ISREG(st.st_mode) and st.st_size == 8 * MiB and st.st_blocks == 0
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert "scratch" in run("ls", mnt.path).stdout.split()
    assert mnt.stats()["disks"] == 2
    assert mnt.stats("scratch")["size"] == 8 * MiB

    head, tail = pattern(3 * PAGE, seed=1), pattern(2 * PAGE, seed=2)
    write_file(scratch, head, 0)
    write_file(scratch, tail, 6 * MiB)
    run("truncate", "-s", "16M", scratch)  # grow keeps data
    assert os.stat(scratch).st_size == 16 * MiB
    assert read_file(scratch, len(head)) == head
    assert read_file(scratch, len(tail), 6 * MiB) == tail
    assert read_file(scratch, PAGE, 12 * MiB) == bytes(PAGE)

    run("truncate", "-s", "4M", scratch)  # shrink frees the pages past the end
    st = os.stat(scratch)
    assert st.st_size == 4 * MiB
    assert st.st_blocks == 3 * PAGE // 512, "pages past the new end are freed"
    assert mnt.stats("scratch")["allocated_pages"] == 3
    assert read_file(scratch, len(head)) == head
    assert read_file(scratch, PAGE, 4 * MiB) == b"", "nothing past the end"
    run("truncate", "-s", "8M", scratch)  # growing again shows zeros, not the old tail
    assert read_file(scratch, len(tail), 6 * MiB) == bytes(len(tail))


def test_truncate_makes_disk_of_default_mode(mount_factory):
    mnt = mount_factory("--mode", "direct", "--disk", "ram0:8M", wait_disks=["ram0"])
    run("truncate", "-s", "1M", mnt.disk("new1"))
    assert mnt.stats("new1")["mode"] == "direct"


@pytest.mark.parametrize("mode", MODES)
def test_grow_while_open(mount_factory, mode):
    mnt = mount_factory("--disk", f"ram0:1M:mode={mode}", wait_disks=["ram0"])
    disk = mnt.disk("ram0")
    data = pattern(PAGE + 100, seed=3)
    fd = os.open(disk, os.O_RDWR)
    try:
        pwrite_all(fd, data, MiB - len(data))
        run("truncate", "-s", "3M", disk)  # another opener, growing: allowed
        assert os.fstat(fd).st_size == 3 * MiB
        assert os.stat(disk).st_size == 3 * MiB
        more = pattern(2 * PAGE, seed=4)
        assert os.pwrite(fd, more, 2 * MiB + 5) == len(more), "the new space is writable"
        if mode != "null":
            assert pread_all(fd, len(data), MiB - len(data)) == data, "data survives a grow"
            assert pread_all(fd, len(more), 2 * MiB + 5) == more
        os.ftruncate(fd, 4 * MiB)  # growing through the open fd itself
        assert os.fstat(fd).st_size == 4 * MiB
    finally:
        os.close(fd)
    assert os.stat(disk).st_size == 4 * MiB
    if mode != "null":
        assert read_file(disk, len(data), MiB - len(data)) == data
    # closed: it shrinks, keeps what is left and frees the rest
    run("truncate", "-s", "512K", disk)
    assert os.stat(disk).st_size == 512 * 1024
    assert read_file(disk, PAGE, 512 * 1024) == b""
    assert os.stat(disk).st_blocks == 0, "the shrink freed the pages past the new end"
    write_file(disk, b"alive", 512 * 1024 - 5)
    if mode != "null":
        assert read_file(disk, 5, 512 * 1024 - 5) == b"alive"


@pytest.mark.parametrize("mode", ["dax", "direct"])
def test_grow_under_a_loop_device(mount_factory, mode):
    """Growing is allowed while a loop device holds the disk; `losetup -c` sees it."""
    mnt = mount_factory("--disk", f"ram0:8M:mode={mode}", wait_disks=["ram0"])
    disk = mnt.disk("ram0")
    write_file(disk, pattern(MiB, seed=12), 0)
    with loop_device(disk) as dev:
        assert int(run("blockdev", "--getsize64", dev).stdout) == 8 * MiB
        run("truncate", "-s", "24M", disk)
        run("losetup", "-c", dev)
        assert int(run("blockdev", "--getsize64", dev).stdout) == 24 * MiB
        run("dd", "if=/dev/zero", f"of={dev}", "bs=1M", "seek=20", "count=1", "oflag=direct",
            "status=none")
        assert odirect_pread(dev, MiB, 0) == pattern(MiB, seed=12)
        with pytest.raises(OSError) as e:
            os.truncate(disk, 4 * MiB)
        assert e.value.errno == errno.EBUSY, "shrinking under a loop device"
    assert os.stat(disk).st_size == 24 * MiB
    assert mnt.stats("ram0")["allocated_pages"] == 2 * MiB // PAGE


@pytest.mark.parametrize("mode", MODES)
def test_shrink_refused_while_open_elsewhere(mount_factory, mode):
    mnt = mount_factory("--disk", f"ram0:4M:mode={mode}", wait_disks=["ram0"])
    disk = mnt.disk("ram0")
    write_file(disk, pattern(8192, seed=5), 3 * MiB)
    holder = os.open(disk, os.O_RDONLY)
    try:
        with pytest.raises(OSError) as e:
            os.truncate(disk, 1 * MiB)
        assert e.value.errno == errno.EBUSY
        fd2 = os.open(disk, os.O_RDWR)
        try:
            with pytest.raises(OSError) as e:
                os.ftruncate(fd2, 1 * MiB)
            assert e.value.errno == errno.EBUSY, "ftruncate while another fd has it open"
        finally:
            os.close(fd2)
        assert os.stat(disk).st_size == 4 * MiB
        assert os.fstat(holder).st_size == 4 * MiB
    finally:
        os.close(holder)
    if mode != "null":
        assert read_file(disk, 8192, 3 * MiB) == pattern(8192, seed=5), "a refused shrink lost data"
    # the only opener may shrink through its own fd
    fd = os.open(disk, os.O_RDWR)
    try:
        os.ftruncate(fd, 2 * MiB)
        assert os.fstat(fd).st_size == 2 * MiB
    finally:
        os.close(fd)
    assert os.stat(disk).st_size == 2 * MiB


def test_rm_refused_while_open_then_frees(mount_factory):
    mnt = mount_factory("--disk", "ram0:8M", "--disk", "victim:8M:mode=direct",
                        wait_disks=["ram0", "victim"])
    victim = mnt.disk("victim")
    write_file(victim, pattern(1 * MiB, seed=6))
    used = mnt.stats()["memory_used"]
    assert used >= 1 * MiB
    fd = os.open(victim, os.O_RDONLY)
    try:
        res = run("rm", "-f", victim, check=False)
        assert res.returncode != 0
        assert "busy" in res.stderr.lower(), res.stderr
        with pytest.raises(OSError) as e:
            os.unlink(victim)
        assert e.value.errno == errno.EBUSY
        assert os.path.exists(victim)
        assert pread_all(fd, MiB, 0) == pattern(MiB, seed=6)
    finally:
        os.close(fd)
    run("rm", victim)
    assert not os.path.exists(victim)
    assert run("ls", mnt.path).stdout.split() == ["ram0"]
    assert mnt.stats()["disks"] == 1
    assert mnt.stats()["memory_used"] <= used - MiB, "rm gives the RAM back"
    assert not mnt.ctl("victim").exists()


@pytest.mark.parametrize("mode", DATA_MODES)
def test_open_trunc_cp_dd_never_shrink(mount_factory, tmp_path, mode):
    mnt = mount_factory("--disk", f"ram0:8M:mode={mode}", wait_disks=["ram0"])
    disk = mnt.disk("ram0")
    marker = pattern(PAGE, seed=7)
    write_file(disk, marker, 6 * MiB)

    fd = os.open(disk, os.O_WRONLY | os.O_TRUNC)
    os.close(fd)
    assert os.stat(disk).st_size == 8 * MiB, "open(O_TRUNC) truncated the disk"
    assert read_file(disk, PAGE, 6 * MiB) == marker

    src = tmp_path / "src.bin"
    src.write_bytes(pattern(MiB + 1000, seed=8))  # fully written: cp has no hole to truncate over
    run("cp", src, disk)
    assert os.stat(disk).st_size == 8 * MiB, "cp shrank the disk"
    assert read_file(disk, MiB + 1000) == src.read_bytes()
    assert read_file(disk, PAGE, 6 * MiB) == marker, "cp destroyed data past the copied bytes"

    src2 = tmp_path / "src2.bin"
    src2.write_bytes(pattern(512 * 1024, seed=9))
    run("dd", f"if={src2}", f"of={disk}", "bs=64K", "status=none")
    assert os.stat(disk).st_size == 8 * MiB, "dd of= shrank the disk"
    assert read_file(disk, 512 * 1024) == src2.read_bytes()
    assert read_file(disk, MiB + 1000 - 512 * 1024, 512 * 1024) == \
        src.read_bytes()[512 * 1024:], "dd destroyed data after what it wrote"
    assert read_file(disk, PAGE, 6 * MiB) == marker


@pytest.mark.parametrize("mode", ["direct", "cached", "null"])
def test_write_across_end_is_cut_short(mount_factory, mode):
    size = MiB
    mnt = mount_factory("--disk", f"ram0:1M:mode={mode}", wait_disks=["ram0"])
    disk = mnt.disk("ram0")
    data = pattern(3 * PAGE, seed=10)
    fd = os.open(disk, os.O_RDWR)
    try:
        n = os.pwrite(fd, data, size - PAGE - 10)
        assert n == PAGE + 10, f"write crossing the end returned {n}, want {PAGE + 10}"
        for off in (size, size + 1, size + 10 * PAGE):
            with pytest.raises(OSError) as e:
                os.pwrite(fd, b"x" * 100, off)
            assert e.value.errno == errno.ENOSPC, f"write at {off} (end {size})"
        os.lseek(fd, size - 5, os.SEEK_SET)
        assert os.write(fd, b"0123456789") == 5, "write() at the file position is cut too"
        with pytest.raises(OSError) as e:
            os.write(fd, b"z")
        assert e.value.errno == errno.ENOSPC
        assert os.fstat(fd).st_size == size
    finally:
        os.close(fd)
    # the same through O_DIRECT (aligned buffers): cut at the end, then ENOSPC
    buf = aligned_buffer(2 * PAGE)
    buf[:] = pattern(2 * PAGE, seed=13)
    fd = os.open(disk, os.O_RDWR | os.O_DIRECT)
    try:
        assert os.pwritev(fd, [buf], size - 2 * PAGE) == 2 * PAGE
        if mode == "cached":
            # Async direct I/O (docs/design.md): the kernel makes the short
            # reply EIO. Never success for bytes that were dropped.
            with pytest.raises(OSError) as e:
                os.pwritev(fd, [buf], size - PAGE)
            assert e.value.errno == errno.EIO
        else:
            try:
                n = os.pwritev(fd, [buf], size - PAGE)
            except OSError as e:
                pytest.fail(f"O_DIRECT write crossing the end failed ({e}); want it cut short "
                            f"to {PAGE} bytes")
            assert n == PAGE, f"O_DIRECT write crossing the end returned {n}, want {PAGE}"
        with pytest.raises(OSError) as e:
            os.pwritev(fd, [buf], size)
        assert e.value.errno == errno.ENOSPC
    finally:
        os.close(fd)
        buf.close()
    if mode != "null":
        assert read_file(disk, PAGE, size - PAGE) == pattern(PAGE, seed=13)
        write_file(disk, data[:PAGE + 5] + b"01234", size - PAGE - 10)  # as before, for below
    st = os.stat(disk)
    assert st.st_size == size, "a write past the end grew the disk"
    assert read_file(disk, PAGE, size) == b""
    if mode == "null":
        assert st.st_blocks == 0
    else:
        got = read_file(disk, PAGE + 10, size - PAGE - 10)
        assert got == data[:PAGE + 5] + b"01234"
        assert st.st_blocks * 512 <= size


def test_write_across_end_dax(mount_factory):
    """dax: the kernel writes straight to the backing pages; such a write through a
    read-write fd returns its full count, the bytes past the end are cut off by the daemon
    (at the latest on close or stat), the disk size never changes, and the loss is reported:
    close() returns ENOSPC (test_dataloss.py has fsync, stats and the log)."""
    size = MiB
    mnt = mount_factory("--disk", "ram0:1M:mode=dax", wait_disks=["ram0"])
    assert mnt.stats("ram0")["mode"] == "dax"
    disk = mnt.disk("ram0")
    data = pattern(3 * PAGE, seed=11)
    fd = os.open(disk, os.O_RDWR)
    try:
        n = os.pwrite(fd, data, size - PAGE - 10)
        assert n == len(data), f"dax write crossing the end returned {n}, contract: full count"
        n = os.pwrite(fd, b"y" * 100, size + 3 * PAGE)
        assert n == 100, f"dax write past the end returned {n}, contract: full count"
        assert os.stat(disk).st_size == size, "stat while open must show the disk size"
    finally:
        with pytest.raises(OSError) as closed:
            os.close(fd)
    assert closed.value.errno == errno.ENOSPC, "close() must report the dropped bytes"
    st = os.stat(disk)
    assert st.st_size == size, "the dax write grew the disk"
    assert read_file(disk, PAGE + 10, size - PAGE - 10) == data[:PAGE + 10]
    assert read_file(disk, 8 * PAGE, size) == b"", "bytes past the end are still readable"
    assert st.st_blocks * 512 <= size, "pages past the end still hold RAM"
    assert mnt.stats("ram0")["size"] == size
    # nothing written past the end comes back when the disk grows later
    run("truncate", "-s", "2M", disk)
    assert read_file(disk, 8 * PAGE, size) == bytes(8 * PAGE), "bytes past the old end survived"
    run("truncate", "-s", "1M", disk)
    # the disk still works as a fixed-size disk afterwards
    write_file(disk, b"tail", size - 4)
    assert read_file(disk, 4, size - 4) == b"tail"


def test_chmod_chown(mount_factory):
    mnt = mount_factory("--disk", "ram0:4M", wait_disks=["ram0"])
    disk = mnt.disk("ram0")
    os.chmod(disk, 0o640)
    assert stat.S_IMODE(os.stat(disk).st_mode) == 0o640
    run("chmod", "u+x", disk)
    assert stat.S_IMODE(os.stat(disk).st_mode) == 0o740
    os.chown(disk, NOBODY, NOBODY)
    st = os.stat(disk)
    assert (st.st_uid, st.st_gid) == (NOBODY, NOBODY)
    run("chown", "0:0", disk)
    assert (os.stat(disk).st_uid, os.stat(disk).st_gid) == (0, 0)
    assert stat.S_ISREG(os.stat(disk).st_mode) and os.stat(disk).st_size == 4 * MiB


def test_default_permissions_with_allow_other(mount_factory):
    mnt = mount_factory("--disk", "ram0:4M", "-o", "allow_other", wait_disks=["ram0"])
    disk = mnt.disk("ram0")
    write_file(disk, b"secret!!", 0)
    res = setpriv("head", "-c", "8", "ram0", cwd=mnt.path)
    assert res.returncode != 0, "user 65534 read a 0600 root disk"
    assert b"Permission denied" in res.stderr, res.stderr
    os.chmod(disk, 0o644)
    res = setpriv("head", "-c", "8", "ram0", cwd=mnt.path)
    assert res.returncode == 0, res.stderr
    assert res.stdout == b"secret!!"
    res = setpriv("dd", "if=/dev/zero", "of=ram0", "bs=8", "count=1", "conv=notrunc",
                  cwd=mnt.path)
    assert res.returncode != 0 and b"Permission denied" in res.stderr, res.stderr
    assert read_file(disk, 8) == b"secret!!"
    os.chown(disk, NOBODY, NOBODY)
    os.chmod(disk, 0o600)
    res = setpriv("head", "-c", "8", "ram0", cwd=mnt.path)
    assert res.returncode == 0 and res.stdout == b"secret!!", "the owner can read its disk"
    res = setpriv("sh", "-c", "echo hi > .control/new", cwd=mnt.path)
    assert res.returncode != 0, "control files are writable by the owner (root) only"


def test_no_allow_other_by_default(mount_factory):
    mnt = mount_factory("--disk", "ram0:4M", wait_disks=["ram0"])
    os.chmod(mnt.disk("ram0"), 0o666)
    res = setpriv("head", "-c", "1", "ram0", cwd=mnt.path)
    assert res.returncode != 0, "another user got into a mount without allow_other"


def test_no_directories_links_or_nodes(mount_factory):
    mnt = mount_factory("--disk", "ram0:4M", wait_disks=["ram0"])
    for make in (lambda: os.mkdir(mnt.path / "d"),
                 lambda: os.symlink("ram0", mnt.path / "l"),
                 lambda: os.mknod(mnt.path / "n", 0o600 | stat.S_IFCHR, os.makedev(1, 3))):
        with pytest.raises(OSError) as e:
            make()
        assert e.value.errno == errno.EPERM
    assert run("ls", mnt.path).stdout.split() == ["ram0"]
