"""No write is reported done while its data is dropped; copying an image in makes a disk;
delete racing open; read-only on every path; stats that say what is true; mount(8) habits.

Each test here failed on the main of before this work (what each printed then is noted
on the issue). Durations: RAMDISKFS_RACE_SECONDS (default 20) per mode for the
delete-racing-open loop; the issue's 10-minute run is that variable set to 600.
"""

import errno
import mmap
import multiprocessing
import os
import pathlib
import shutil
import signal
import subprocess
import time

import pytest

from support.ctl import settle, write_errno
from support.mounts import (BIN, CTL, DATA_MODES, MODES, daemon_pids_for, is_mounted, run,
                            run_expect_exit, wait_for)
from support.require import require_ctl, require_fuse
from support.units import MiB, PAGE

IMAGE_BYTES = 20 * MiB
DISK_BYTES = 16 * MiB


def _image(tmp_path, length=IMAGE_BYTES, holes=()):
    """A random image file of `length` bytes; `holes` are (offset, length) left unwritten."""
    path = tmp_path / "image.img"
    data = bytearray(os.urandom(length))
    with open(path, "wb") as f:
        f.truncate(length)
        pos = 0
        for start, size in sorted(holes) + [(length, 0)]:
            f.seek(pos)
            f.write(data[pos:start])
            data[start:start + size] = bytes(size)
            pos = start + size
    return path, bytes(data)


def _read(path, length=None, offset=0):
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read() if length is None else f.read(length)


def _fio(*args):
    return run("fio", "--name=t", "--ioengine=psync", "--bs=1M", *args, check=False)


# ---- 1. a copy larger than the disk fails, and what fits is intact -------------------------

def _copy_tool(tool, image, disk):
    if tool == "dd":
        return run("dd", f"if={image}", f"of={disk}", "bs=1M", "conv=notrunc", check=False)
    if tool == "cp":
        return run("cp", image, disk, check=False)
    if tool == "qemu-img":
        # -n: into the existing disk, as into a block device. (Without -n qemu-img
        # first truncates its target to the image size, which grows a disk losslessly.)
        return run("qemu-img", "convert", "-n", "-O", "raw", image, disk, check=False)
    if tool == "rsync":
        return run("rsync", "--inplace", image, disk, check=False)
    if tool == "fio":
        # Appends 4 MiB at the end of the full disk. fio ignores close()'s status, so
        # in dax mode (where the loss is known at fsync/close) it needs fsync_on_close.
        return _fio(f"--filename={disk}", "--rw=write", "--size=4M", "--file_append=1",
                    "--fsync_on_close=1")
    raise ValueError(tool)


@pytest.mark.parametrize("tool", ["dd", "cp", "qemu-img", "rsync", "fio"])
@pytest.mark.parametrize("mode", DATA_MODES)
def test_copy_larger_than_the_disk_fails(mount_factory, tmp_path, mode, tool):
    if shutil.which(tool) is None:
        pytest.fail(f"{tool} is not installed (scripts/deps.sh test installs it)")
    mnt = mount_factory("--disk", f"ram0:16M:mode={mode}", wait_disks=["ram0"])
    image, data = _image(tmp_path)
    disk = mnt.disk("ram0")
    if tool == "fio":
        with open(disk, "r+b") as f:
            f.write(data[:DISK_BYTES])
    result = _copy_tool(tool, image, disk)
    assert result.returncode != 0, f"{tool} wrote 20 MiB into a 16 MiB disk and exited 0:\n" \
                                   f"{result.stdout}{result.stderr}"
    settle(disk)
    assert os.stat(disk).st_size == DISK_BYTES
    if tool == "qemu-img":  # it checks the target's size first and writes nothing
        assert _read(disk) == bytes(DISK_BYTES)
    else:
        assert _read(disk) == data[:DISK_BYTES], "the bytes that fit are not intact"


def test_dax_write_past_the_end_reports_enospc_at_fsync_and_close(mount_factory):
    """dax: the kernel writes without the daemon, so the loss is reported at the next
    fsync() and close() of the writer, counted in stats and logged once."""
    mnt = mount_factory("--disk", "ram0:1M:mode=dax", wait_disks=["ram0"])
    disk = mnt.disk("ram0")
    before_log = mnt.log()
    fd = os.open(disk, os.O_RDWR)
    try:
        assert os.pwrite(fd, b"A" * (64 * 1024), MiB - 32 * 1024) == 64 * 1024
        with pytest.raises(OSError) as info:
            os.fsync(fd)
        assert info.value.errno == errno.ENOSPC
        os.fsync(fd)  # reported once per writer
        assert os.pwrite(fd, b"B" * PAGE, MiB) == PAGE
    finally:
        with pytest.raises(OSError) as info:
            os.close(fd)
    assert info.value.errno == errno.ENOSPC
    settle(disk)
    assert os.stat(disk).st_size == MiB
    assert _read(disk, 32 * 1024, MiB - 32 * 1024) == b"A" * (32 * 1024)
    st = mnt.stats("ram0")
    assert st["overflow_bytes"] == 32 * 1024 + PAGE
    new_lines = [l for l in mnt.log()[len(before_log):].splitlines() if "past its end" in l]
    assert len(new_lines) == 2, new_lines  # one per incident (fsync, then close)
    # A new writer starts clean.
    fd = os.open(disk, os.O_RDWR)
    os.fsync(fd)
    os.close(fd)


# ---- 2. copying an image in makes a disk -------------------------------------------------

def _copy_in(tool, image, target, length):
    if tool == "cp":
        return run("cp", image, target, check=False)
    if tool == "cp-sparse":
        return run("cp", "--sparse=always", image, target, check=False)
    if tool == "dd":
        return run("dd", f"if={image}", f"of={target}", "bs=1M", check=False)
    if tool == "qemu-img":
        return run("qemu-img", "convert", "-O", "raw", image, target, check=False)
    if tool == "fio":
        return _fio(f"--filename={target}", "--rw=write", f"--size={length}",
                    "--buffer_pattern=0x5a")
    raise ValueError(tool)


@pytest.mark.parametrize("tool", ["cp", "cp-sparse", "dd", "qemu-img", "fio"])
@pytest.mark.parametrize("mode", DATA_MODES)
def test_copy_in_makes_a_disk_of_the_image_size(mount_factory, tmp_path, mode, tool):
    mnt = mount_factory("--mode", mode, "--disk", "ram0:1M")
    length = 5 * MiB + 1000  # not a whole page: the disk rounds up to 4096
    holes = [(MiB, 2 * MiB)] if tool in ("cp-sparse", "qemu-img") else []
    image, data = _image(tmp_path, length, holes)
    if tool == "fio":
        length = 6 * MiB
        data = b"\x5a" * length
    target = mnt.disk("copy")
    result = _copy_in(tool, image, target, length)
    assert result.returncode == 0, result.stdout + result.stderr
    settle(target)
    size = -(-length // PAGE) * PAGE
    st = mnt.stats("copy")
    assert os.stat(target).st_size == size, os.stat(target)
    assert st["size"] == size and st["growing"] == 0 and st["mode"] == mode
    assert _read(target) == data + bytes(size - length)
    if holes:  # holes stay holes
        assert st["allocated_bytes"] <= size - 2 * MiB + PAGE, st
    # From now on the size is fixed like any other disk's.
    fd = os.open(target, os.O_WRONLY)
    try:
        with pytest.raises(OSError) as info:
            os.pwrite(fd, b"x", size)
        assert info.value.errno == errno.ENOSPC
    finally:
        os.close(fd)
    assert os.stat(target).st_size == size


@pytest.mark.parametrize("mode", DATA_MODES)
def test_copy_in_stops_at_the_cap_and_loses_nothing_else(mount_factory, tmp_path, mode):
    mnt = mount_factory("--mode", mode, "--max-memory", "24M", "--disk", "keep:8M",
                        wait_disks=["keep"])
    kept = os.urandom(8 * MiB)
    with open(mnt.disk("keep"), "r+b") as f:
        f.write(kept)
    image, _ = _image(tmp_path, 32 * MiB)
    result = run("cp", image, mnt.disk("big"), check=False)
    assert result.returncode != 0 and "No space left on device" in result.stderr, result
    glob = mnt.stats()
    assert glob["memory_used"] <= 24 * MiB
    assert _read(mnt.disk("keep")) == kept
    if mode != "cached":  # the page cache of a cached disk may hold more than the store
        # Its size is what was written, rounded up to a page when cp closed it.
        big = _read(mnt.disk("big"))
        kept = max(0, len(big) - PAGE)
        assert len(big) > 8 * MiB and big[:kept] == _read(image, kept), \
            "what fitted of the copy is not intact"


# ---- 3. delete racing open -----------------------------------------------------------------

def _opener(path, seconds, errors):
    buf = b"w" * (256 * 1024)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError as e:
            if e.errno != errno.ENOENT:
                errors.put(f"open: {errno.errorcode.get(e.errno, e.errno)}")
            continue
        try:
            os.pwrite(fd, buf, 0)
        except OSError as e:
            errors.put(f"pwrite: {errno.errorcode.get(e.errno, e.errno)}")
        finally:
            try:
                os.close(fd)
            except OSError as e:
                errors.put(f"close: {errno.errorcode.get(e.errno, e.errno)}")
        time.sleep(0.002)  # a window in which the disk is closed, so a delete can win


@pytest.mark.parametrize("mode", MODES)
def test_delete_racing_open_leaks_nothing(mount_factory, mode):
    seconds = float(os.environ.get("RAMDISKFS_RACE_SECONDS", "20"))
    mnt = mount_factory("--mode", mode, "--disk", "ram0:1M", wait_disks=["ram0"])
    path = mnt.disk("race")
    ctx = multiprocessing.get_context("fork")
    errors = ctx.Queue()
    workers = [ctx.Process(target=_opener, args=(str(path), seconds, errors)) for _ in range(3)]
    for w in workers:
        w.start()
    cycles = 0
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if write_errno(mnt, "new", text="race 1M\n") not in (0, errno.EEXIST):
                pytest.fail("new failed")
            err = write_errno(mnt, "delete", text="race\n")
            assert err in (0, errno.EBUSY), errno.errorcode.get(err, err)
            cycles += err == 0
    finally:
        for w in workers:
            w.join(timeout=seconds + 30)
            if w.is_alive():
                w.kill()
    seen = []
    while not errors.empty():
        seen.append(errors.get())
    assert not seen, f"opens failed with something other than ENOENT: {sorted(set(seen))}"
    assert cycles > 0, "the loop never managed to delete the disk"
    wait_for(lambda: write_errno(mnt, "delete", text="race\n") in (0, errno.ENOENT), 10,
             "the last delete")

    def balanced():
        disks = sum(mnt.stats(n)["allocated_bytes"] for n in ("ram0",))
        return mnt.stats()["memory_used"] == disks
    assert wait_for(balanced, 10, "memory_used to equal the disks' allocated bytes"), \
        mnt.stats()
    # And the cap can be lowered to what is really held.
    assert write_errno(mnt, "max_memory", text="4096\n") == 0


# ---- 4. read-only means read-only on every path ------------------------------------------

@pytest.mark.parametrize("mode", ["dax", "direct"])
def test_readonly_refused_while_a_shared_writable_mapping_can_exist(mount_factory, mode):
    mnt = mount_factory("--disk", f"ram0:1M:mode={mode}", wait_disks=["ram0"])
    disk = mnt.disk("ram0")
    fd = os.open(disk, os.O_RDWR)
    m = mmap.mmap(fd, 4 * PAGE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    try:
        assert write_errno(mnt, "ram0", "readonly", text="1\n") == errno.EBUSY
        os.close(fd)
        fd = None
        # The fd is closed, the mapping is not: the kernel can still write through it.
        assert write_errno(mnt, "ram0", "readonly", text="1\n") == errno.EBUSY
        m[:5] = b"still"
        m.flush()
        assert mnt.read_control("ram0", "readonly") == "0\n"
    finally:
        m.close()
        if fd is not None:
            os.close(fd)
    settle(disk)
    assert write_errno(mnt, "ram0", "readonly", text="1\n") == 0
    assert _read(disk, 5) == b"still"
    with pytest.raises(OSError) as info:
        os.open(disk, os.O_RDWR)
    assert info.value.errno == errno.EROFS


# ---- 5. stats say what is true -------------------------------------------------------------

def test_stats_passthrough_follows_the_mode(mount_factory):
    mnt = mount_factory("--disk", "ram0:1M:mode=dax", wait_disks=["ram0"])
    disk = mnt.disk("ram0")
    with open(disk, "rb") as f:
        f.read(PAGE)
    settle(disk)
    assert mnt.stats("ram0")["passthrough"] == 1
    for mode, expected in (("cached", 0), ("null", 0), ("direct", 1), ("dax", 1)):
        assert write_errno(mnt, "ram0", "mode", text=f"{mode}\n") == 0
        with open(disk, "rb") as f:
            f.read(PAGE)
        settle(disk)
        assert mnt.stats("ram0")["passthrough"] == expected, mode


# ---- 6. mount(8) habits ----------------------------------------------------------------------

def _mounts_at(path):
    with open("/proc/self/mountinfo") as f:
        return [l for l in f if l.split()[4] == str(path)]


def test_fstab_mount_a_twice_mounts_once(tmp_path):
    """The source is recorded, so mount -a sees the fstab line mounted (it stacked a second
    mount on every mount -a before). mount(8) resets PATH, so the binary is put where it
    looks (/usr/local/sbin) for the test and removed after."""
    require_fuse()
    link = pathlib.Path("/usr/local/sbin/ramdiskfs")
    if link.exists() or link.is_symlink():
        pytest.fail(f"{link} exists already; this test needs to place its own binary there")
    mnt = tmp_path / "m"
    mnt.mkdir()
    fstab = tmp_path / "fstab"
    fstab.write_text(f"ramdiskfs {mnt} fuse.ramdiskfs disks=1,size=16M 0 0\n")
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(BIN)
    try:
        for _ in range(3):
            res = run("mount", "-a", "-T", fstab, check=False)
            assert res.returncode == 0, res.stderr
        wait_for(lambda: (mnt / "ram0").exists(), 10, "the disk")
        assert len(_mounts_at(mnt)) == 1, _mounts_at(mnt)
        fields = _mounts_at(mnt)[0].split()
        assert fields[fields.index("-") + 2] == "ramdiskfs"
    finally:
        link.unlink()
        while _mounts_at(mnt):
            run("umount", mnt, check=False)
            if _mounts_at(mnt):
                run("umount", "-l", mnt, check=False)
        wait_for(lambda: not daemon_pids_for(mnt), 20, "the daemons to exit")


def test_refuses_to_mount_over_a_live_ramdiskfs(mount_factory):
    mnt = mount_factory("--disk", "ram0:1M", wait_disks=["ram0"])
    code, out, err = run_expect_exit([BIN, mnt.path, "-f", "--disk", "other:1M"])
    assert code == 32, (code, err)
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1 and "already a ramdiskfs mount" in lines[0], err
    assert len(_mounts_at(mnt.path)) == 1
    assert (mnt.path / "ram0").exists()


def test_dash_o_ro_makes_every_disk_read_only(mount_factory):
    require_ctl()
    mnt = mount_factory("-o", "ro,disks=2,size=4M", wait_disks=["ram0", "ram1"])
    for name in ("ram0", "ram1"):
        assert mnt.stats(name)["readonly"] == 1
        with pytest.raises(OSError) as info:
            os.open(mnt.disk(name), os.O_WRONLY)
        assert info.value.errno == errno.EROFS
    table = run(CTL, mnt.path, "--output", "NAME,RO", "--noheadings", check=False).stdout
    assert [l.split() for l in table.splitlines()] == [["ram0", "1"], ["ram1", "1"]], table
    with pytest.raises(OSError) as info:
        open(mnt.disk("fresh"), "wb")
    assert info.value.errno == errno.EROFS
    # The control tree stays writable: the administrator can still open a disk up.
    assert write_errno(mnt, "ram0", "readonly", text="0\n") == 0


def test_sizes_take_percent_of_ram_and_fractions(mount_factory):
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    mnt = mount_factory("-o", "max_memory=25%,disks=1,size=1.5M", wait_disks=["ram0"])
    assert mnt.stats()["max_memory"] == -(-(ram // 4) // PAGE) * PAGE
    assert os.stat(mnt.disk("ram0")).st_size == 3 * MiB // 2
    mnt2 = mount_factory("--max-memory", "0.5G", "--disk", "x:2.5K", wait_disks=["x"])
    assert mnt2.stats()["max_memory"] == 512 * MiB
    assert os.stat(mnt2.disk("x")).st_size == 2560


def test_exit_statuses_follow_mount(tmp_path):
    """1: incorrect invocation (a bad option); 32: the mount failed."""
    require_fuse()
    mnt = tmp_path / "m"
    mnt.mkdir()
    code, _, err = run_expect_exit([BIN, mnt, "-f", "--disk", "ram0:12Q"])
    assert code == 1, err
    code, _, err = run_expect_exit([BIN, tmp_path / "missing", "-f"])
    assert code == 32, err
    code, _, err = run_expect_exit([BIN, mnt, "-f", "--disk", f"x::image={tmp_path / 'no'}"])
    assert code == 32, err
    assert not is_mounted(mnt)
