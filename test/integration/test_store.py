"""The store (SPEC 6): sparse, page-granular, holes read as zeros, hole punching and zero
ranges give RAM back, SEEK_DATA/SEEK_HOLE, statfs, and sparse copies out of a disk."""

import errno
import os

import pytest

from support.io import (FALLOC_FL_COLLAPSE_RANGE, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE,
                        FALLOC_FL_ZERO_RANGE, fallocate, pattern, pread_all, read_file, write_file)
from support.mounts import DATA_MODES, run
from support.units import MiB, PAGE


@pytest.mark.parametrize("mode", DATA_MODES)
def test_reading_holes_returns_zeros_and_allocates_nothing(mount_factory, mode):
    mnt = mount_factory("--disk", f"ram0:16M:mode={mode}", wait_disks=["ram0"])
    disk = mnt.disk("ram0")
    fd = os.open(disk, os.O_RDONLY)
    try:
        for off in range(0, 16 * MiB, MiB):
            assert os.pread(fd, MiB, off) == bytes(MiB)
        # (not through a shared mapping: a read fault on a hole of a shmem-backed mapping
        # allocates the page in the kernel -- tmpfs behaviour, not the daemon's choice)
    finally:
        os.close(fd)
    assert os.stat(disk).st_blocks == 0
    assert mnt.stats("ram0")["allocated_bytes"] == 0
    assert mnt.stats("ram0")["allocated_pages"] == 0
    assert mnt.stats()["memory_used"] == 0


@pytest.mark.parametrize("mode", DATA_MODES)
def test_writes_allocate_whole_pages(mount_factory, mode):
    mnt = mount_factory("--disk", f"ram0:16M:mode={mode}", wait_disks=["ram0"])
    disk = mnt.disk("ram0")

    def pages():
        s = mnt.stats("ram0")
        st = os.stat(disk)
        assert s["allocated_bytes"] == s["allocated_pages"] * PAGE
        assert st.st_blocks == s["allocated_pages"] * (PAGE // 512), \
            f"st_blocks {st.st_blocks} vs allocated_pages {s['allocated_pages']}"
        return s["allocated_pages"]

    write_file(disk, b"x", 5000)                       # page 1
    assert pages() == 1
    write_file(disk, b"y" * 10, 3 * PAGE - 5)          # pages 2 and 3
    assert pages() == 3
    write_file(disk, b"z" * 100, PAGE + 100)           # page 1 again
    assert pages() == 3
    write_file(disk, pattern(PAGE, seed=1), 8 * MiB)        # exactly one page
    assert pages() == 4
    write_file(disk, pattern(PAGE + 2, seed=2), 10 * MiB - 1)  # pages 2559, 2560, 2561
    assert pages() == 7
    assert mnt.stats()["memory_used"] == 7 * PAGE
    assert read_file(disk, 1, 5000) == b"x"
    assert read_file(disk, PAGE) == bytes(PAGE), "page 0 was never written"


def _punch_fixture(mnt, disk):
    """Fills pages 0..3 with a pattern; returns it."""
    data = pattern(4 * PAGE, seed=3)
    write_file(disk, data, 0)
    assert mnt.stats("ram0")["allocated_pages"] == 4
    return bytearray(data)


FALLOC_CASES = {
    "punch_hole": FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
    "zero_range_keep_size": FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
    "zero_range": FALLOC_FL_ZERO_RANGE,
}


@pytest.mark.parametrize("mode", DATA_MODES)
@pytest.mark.parametrize("case", list(FALLOC_CASES))
def test_fallocate_frees_whole_pages_zeroes_partial(mount_factory, mode, case):
    mnt = mount_factory("--disk", f"ram0:8M:mode={mode}", wait_disks=["ram0"])
    disk = mnt.disk("ram0")
    expected = _punch_fixture(mnt, disk)
    fd = os.open(disk, os.O_RDWR)
    try:
        # [1000, 11000): page 1 whole; pages 0 and 2 partly
        fallocate(fd, FALLOC_CASES[case], 1000, 10000)
        expected[1000:11000] = bytes(10000)
        assert pread_all(fd, 4 * PAGE + 100, 0) == bytes(expected) + bytes(100)
        assert os.fstat(fd).st_size == 8 * MiB
    finally:
        os.close(fd)
    assert read_file(disk, 4 * PAGE) == bytes(expected), "a fresh open sees the zeros too"
    assert mnt.stats("ram0")["allocated_pages"] == 3, "the whole page in the range is freed"
    assert os.stat(disk).st_blocks == 3 * PAGE // 512

    fd = os.open(disk, os.O_RDWR)
    try:
        fallocate(fd, FALLOC_CASES[case], 0, 8 * MiB)  # everything
    finally:
        os.close(fd)
    assert os.stat(disk).st_blocks == 0
    assert mnt.stats("ram0")["allocated_pages"] == 0
    assert read_file(disk, 4 * PAGE) == bytes(4 * PAGE)
    assert os.stat(disk).st_size == 8 * MiB


@pytest.mark.parametrize("mode", DATA_MODES)
def test_fallocate_edges(mount_factory, mode):
    mnt = mount_factory("--disk", f"ram0:1M:mode={mode}", wait_disks=["ram0"])
    disk = mnt.disk("ram0")
    write_file(disk, pattern(PAGE, seed=4), MiB - PAGE)
    fd = os.open(disk, os.O_RDWR)
    try:
        with pytest.raises(OSError) as e:
            fallocate(fd, FALLOC_FL_ZERO_RANGE, MiB - 100, 4 * PAGE)  # beyond the end
        assert e.value.errno == errno.EINVAL
        with pytest.raises(OSError) as e:
            fallocate(fd, 0, MiB - PAGE, 4 * PAGE)
        assert e.value.errno == errno.EINVAL, "allocating beyond the end is EINVAL"
        assert os.fstat(fd).st_size == MiB, "a refused fallocate changed the size"
        assert pread_all(fd, PAGE, MiB - PAGE) == pattern(PAGE, seed=4)
        fallocate(fd, 0, 0, 2 * PAGE)  # mode 0 inside the disk
        assert os.fstat(fd).st_size == MiB
        assert pread_all(fd, 2 * PAGE, 0) == bytes(2 * PAGE)
        with pytest.raises(OSError) as e:
            fallocate(fd, FALLOC_FL_COLLAPSE_RANGE, 0, PAGE)
        assert e.value.errno == errno.EOPNOTSUPP
    finally:
        os.close(fd)
    # fallocate works afterwards (a bad reply such as ENOSYS would disable it for the mount)
    fd = os.open(disk, os.O_RDWR)
    try:
        write_file(disk, b"q" * PAGE, 0)
        fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, PAGE)
        assert pread_all(fd, PAGE, 0) == bytes(PAGE)
    finally:
        os.close(fd)


@pytest.mark.parametrize("mode", DATA_MODES)
def test_seek_data_and_seek_hole(mount_factory, mode):
    size = 8 * MiB
    mnt = mount_factory("--disk", f"ram0:8M:mode={mode}", wait_disks=["ram0"])
    disk = mnt.disk("ram0")
    fd = os.open(disk, os.O_RDONLY)
    try:
        with pytest.raises(OSError) as e:
            os.lseek(fd, 0, os.SEEK_DATA)
        assert e.value.errno == errno.ENXIO, "an empty disk has no data"
        assert os.lseek(fd, 0, os.SEEK_HOLE) == 0
    finally:
        os.close(fd)
    write_file(disk, b"a" * 100, 10)                  # page 0
    write_file(disk, pattern(2 * PAGE, seed=5), MiB)       # pages 256, 257
    write_file(disk, b"e" * 10, size - 10)            # the last page
    fd = os.open(disk, os.O_RDONLY)
    try:
        assert os.lseek(fd, 0, os.SEEK_DATA) == 0
        assert os.lseek(fd, 0, os.SEEK_HOLE) == PAGE
        assert os.lseek(fd, 50, os.SEEK_HOLE) == PAGE
        assert os.lseek(fd, PAGE, os.SEEK_DATA) == MiB
        assert os.lseek(fd, MiB + 5, os.SEEK_DATA) == MiB + 5
        assert os.lseek(fd, MiB, os.SEEK_HOLE) == MiB + 2 * PAGE
        assert os.lseek(fd, MiB + 2 * PAGE, os.SEEK_DATA) == size - PAGE
        assert os.lseek(fd, size - PAGE, os.SEEK_HOLE) == size, "past the last data: the end"
        with pytest.raises(OSError) as e:
            os.lseek(fd, size, os.SEEK_DATA)
        assert e.value.errno == errno.ENXIO
    finally:
        os.close(fd)
    fd = os.open(disk, os.O_RDWR)
    try:
        fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, MiB, PAGE)
        assert os.lseek(fd, PAGE, os.SEEK_DATA) == MiB + PAGE, "a punched page is a hole"
    finally:
        os.close(fd)


def test_statfs_reports_ram_under_the_cap(mount_factory):
    cap = 32 * MiB
    mnt = mount_factory("--disk", "ram0:64M:mode=direct", "--disk", "ram1:64M",
                        "--max-memory", "32M", wait_disks=["ram0", "ram1"])
    st = os.statvfs(mnt.path)
    assert st.f_bsize == PAGE
    frsize = st.f_frsize or st.f_bsize
    assert st.f_blocks * frsize == cap
    assert st.f_bfree * frsize == cap
    write_file(mnt.disk("ram0"), pattern(MiB, seed=6), 0)
    write_file(mnt.disk("ram1"), pattern(3 * PAGE, seed=7), 5 * MiB + 1)  # 4 pages
    st = os.statvfs(mnt.path)
    used = MiB + 4 * PAGE
    assert (st.f_blocks - st.f_bfree) * frsize == used
    assert st.f_bavail * frsize == cap - used
    assert mnt.stats()["memory_used"] == used
    df = run("df", "-B1", "--output=size,used,avail", mnt.path).stdout.split("\n")[1].split()
    assert [int(x) for x in df] == [cap, used, cap - used]


def test_cp_sparse_copies_only_data(mount_factory, tmp_path):
    size = 64 * MiB
    mnt = mount_factory("--disk", "ram0:64M:mode=direct", wait_disks=["ram0"])
    disk = mnt.disk("ram0")
    chunks = {0: pattern(3 * PAGE, seed=8), 20 * MiB: pattern(64 * 1024, seed=9),
              size - PAGE: pattern(PAGE, seed=10)}
    for off, data in chunks.items():
        write_file(disk, data, off)
    before = mnt.stats("ram0")["read_bytes"]
    out = tmp_path / "copy.img"
    run("cp", "--sparse=always", disk, out)
    read = mnt.stats("ram0")["read_bytes"] - before
    assert os.stat(out).st_size == size
    data_bytes = sum(len(d) for d in chunks.values())
    assert read <= 4 * MiB, f"cp read {read} bytes of a disk holding {data_bytes}: " \
                            "SEEK_DATA/SEEK_HOLE were not used"
    assert os.stat(out).st_blocks * 512 <= data_bytes + 256 * 1024, "the copy is not sparse"
    got = out.read_bytes()
    expected = bytearray(size)
    for off, data in chunks.items():
        expected[off:off + len(data)] = data
    assert got == bytes(expected)
