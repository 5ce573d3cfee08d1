"""mmap and execute-in-place (SPEC 1, 4): a program copied into a disk runs from it;
PROT_EXEC mappings see code written at non-page-aligned offsets (the 2007 brd XIP bug);
every writer/reader pair is coherent in every data mode; dax and direct keep no second
copy in the page cache while cached does."""

import itertools
import json
import os
import subprocess
import sys
import zlib

import pytest

from support.blockdev import loop_device
from support.io import (meminfo, mmap_read, mmap_write, odirect_pread, odirect_pwrite, pattern,
                        pwrite_all, read_file, write_file)
from support.mounts import DATA_MODES, run, start_mount, teardown_mount, wait_for
from support.require import PROGRAMS, compile_c, require_loop, require_x86_64
from support.units import MiB, PAGE


# ---- (a) executing a program stored in a disk --------------------------------------------


@pytest.fixture(scope="module")
def xip_program(tmp_path_factory):
    out = tmp_path_factory.mktemp("xip") / "xip_hello"
    try:
        return compile_c("xip_hello.c", out, "-static")
    except RuntimeError:  # no static libc: a dynamic program runs from the disk just as well
        return compile_c("xip_hello.c", out)


@pytest.mark.parametrize("mode", DATA_MODES)
def test_execute_program_from_disk(mount_factory, xip_program, mode):
    size = os.stat(xip_program).st_size
    rounded = (size + 511) // 512 * 512
    mnt = mount_factory("--disk", f"exact:{rounded}:mode={mode}",
                        "--disk", f"big:8M:mode={mode}", wait_disks=["exact", "big"])
    assert mnt.stats("exact")["mode"] == mode
    for name in ("exact", "big"):
        disk = mnt.disk(name)
        run("cp", xip_program, disk)  # cp overwrites the disk in place
        assert os.stat(disk).st_size == (rounded if name == "exact" else 8 * MiB)
        os.chmod(disk, 0o755)
        res = subprocess.run([str(disk), "one", "two"], capture_output=True, text=True,
                             timeout=30)
        assert (res.returncode, res.stdout) == (42, "ramdiskfs-xip-ok argc=3\n"), \
            f"{name} disk in {mode}: rc {res.returncode}, out {res.stdout!r}, err {res.stderr!r}"
        # and again through a relative path from inside the mount, as a user would
        res = subprocess.run([f"./{name}"], cwd=mnt.path, capture_output=True, text=True,
                             timeout=30)
        assert res.returncode == 42 and res.stdout == "ramdiskfs-xip-ok argc=1\n"


# ---- (b) code written at non-page-aligned offsets into a PROT_EXEC mapping --------------

XIP_SPECS = [  # (offset, return value, how it is written)
    (2 * PAGE + 123, 42, "pwrite"),
    (5 * PAGE + PAGE - 3, 43, "pwrite"),  # the 6 bytes straddle a page boundary
    (7 * PAGE + 1, 44, "write"),
    (9 * PAGE + 2048, 45, "write"),
    (11 * PAGE, 46, "pwrite"),            # aligned, for contrast
]


@pytest.mark.parametrize("mode", DATA_MODES)
def test_prot_exec_mapping_sees_unaligned_writes(mount_factory, mode):
    require_x86_64()
    mnt = mount_factory("--disk", f"code:1M:mode={mode}", wait_disks=["code"])
    disk = mnt.disk("code")
    specs = [f"{off}:{val}:{how}" for off, val, how in XIP_SPECS]
    res = subprocess.run([sys.executable, str(PROGRAMS / "xip_call.py"), str(disk), *specs],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, f"helper died (rc {res.returncode}): {res.stderr}"
    got = json.loads(res.stdout)
    expected = bytearray(13 * PAGE)
    for off, val, _ in XIP_SPECS:
        expected[off:off + 6] = b"\xb8" + val.to_bytes(4, "little") + b"\xc3"
    for off, val, how in XIP_SPECS:
        r = got[str(off)]
        code = (b"\xb8" + val.to_bytes(4, "little") + b"\xc3").hex()
        assert r["seen"] == code, f"{how} at {off}: mapping shows {r['seen']}, want {code}"
        start = off // PAGE * PAGE
        assert r["page_start"] == expected[start:start + 6].hex(), \
            f"{how} at {off} changed the start of its page (the 2007 XIP bug)"
        assert r["ret"] == val, f"function at {off} returned {r['ret']}"
        assert r["fresh_ret"] == val
    # the bytes around each function are untouched, seen by read()
    assert read_file(disk, len(expected)) == bytes(expected)


# ---- (c) coherency matrix: every writer x every reader x every data mode ----------------

WRITERS = ["write", "pwrite", "mmap", "odirect", "loop"]
READERS = ["read", "mmap", "mmap_early", "odirect", "loop"]
REGION = 4 * PAGE


class Coherency:
    def __init__(self, mode, mnt, dev):
        self.mode, self.mnt, self.dev = mode, mnt, dev
        self.disk = mnt.disk("coh")
        self.slots = itertools.count()


@pytest.fixture(scope="module", params=DATA_MODES)
def coherency(request, tmp_path_factory):
    """One mount per data mode with a 32 MiB disk and a loop device on it, shared by the
    writer x reader tests of that mode (each test uses its own 16 KiB region)."""
    require_loop()
    mode = request.param
    base = tmp_path_factory.mktemp(f"coherency-{mode}")
    mnt = start_mount(base / "mnt", base / "ramdiskfs.log", "--disk", f"coh:32M:mode={mode}")
    try:
        wait_for(lambda: mnt.disk("coh").exists(), 10, "disk coh")
        assert mnt.stats("coh")["mode"] == mode
        with loop_device(mnt.disk("coh")) as dev:
            yield Coherency(mode, mnt, dev)
    finally:
        status = teardown_mount(mnt)
    assert status == 0, mnt.log()


def _write(c, writer, offset, data):
    if writer == "write":
        fd = os.open(c.disk, os.O_WRONLY)
        try:
            os.lseek(fd, offset, os.SEEK_SET)
            assert os.write(fd, data) == len(data)
        finally:
            os.close(fd)
    elif writer == "pwrite":
        write_file(c.disk, data, offset)
    elif writer == "mmap":
        mmap_write(c.disk, data, offset)
    elif writer == "odirect":
        odirect_pwrite(c.disk, data, offset)
    elif writer == "loop":
        odirect_pwrite(c.dev, data, offset)
    else:
        raise AssertionError(writer)


def _read(c, reader, offset, length, early):
    if reader == "read":
        return read_file(c.disk, length, offset)
    if reader == "mmap":
        return mmap_read(c.disk, length, offset)
    if reader == "mmap_early":
        return bytes(early[:length])
    if reader == "odirect":
        return odirect_pread(c.disk, length, offset)
    if reader == "loop":
        return odirect_pread(c.dev, length, offset)
    raise AssertionError(reader)


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("writer", WRITERS)
def test_coherency(coherency, writer, reader):
    """`writer` writes a unique pattern straddling two page boundaries of a region whose
    other bytes hold a background pattern; `reader` must see exactly the result.
    mmap_early reads through a mapping made before the background and the write."""
    import mmap as _mmap
    c = coherency
    slot = next(c.slots)
    base = MiB + slot * REGION * 2
    seed = zlib.crc32(f"{c.mode}/{writer}/{reader}".encode())
    background = pattern(REGION, seed=seed)
    if writer in ("odirect", "loop"):  # 512-aligned I/O
        offset, length = base + PAGE - 1024, PAGE + 2048
    else:
        offset, length = base + PAGE - 37, PAGE + 100
    data = pattern(length, seed=seed + 1)
    early_fd = early = None
    if reader == "mmap_early":
        early_fd = os.open(c.disk, os.O_RDONLY)
        early = _mmap.mmap(early_fd, REGION, _mmap.MAP_SHARED, _mmap.PROT_READ, offset=base)
    try:
        write_file(c.disk, background, base)
        _write(c, writer, offset, data)
        expected = bytearray(background)
        expected[offset - base:offset - base + length] = data
        got = _read(c, reader, base, REGION, early)
    finally:
        if early is not None:
            early.close()
            os.close(early_fd)
    if got != bytes(expected):
        bad = [i for i in range(REGION) if got[i] != expected[i]]
        pytest.fail(f"{c.mode}: {writer} -> {reader}: {len(bad)} bytes differ, first at "
                    f"region+{bad[0]} (pattern at region+{offset - base}..+{offset - base + length})")


# ---- (d) no double caching ------------------------------------------------------------------

BIG = 200 * MiB


@pytest.mark.parametrize("mode", DATA_MODES)
def test_no_double_caching(mount_factory, mode):
    """Writes 200 MiB, then reads it all with read() and through a shared mapping, and
    measures /proc/meminfo Cached. dax and direct map the store's pages: the reads add
    nothing. cached keeps a second copy in the page cache (the data is written in direct
    mode first, so that the cached-mode reads are what fill the page cache).

    Cached is machine-wide and other work on the machine moves it, so besides the growth
    over the reads, the second copy is also measured in a window of one syscall: Cached
    before and after posix_fadvise(DONTNEED) on the disk file, which drops the disk file's
    own (clean) page cache and nothing of the store."""
    import mmap as _mmap
    write_mode = "direct" if mode == "cached" else mode
    mnt = mount_factory("--disk", f"big:200M:mode={write_mode}", "--max-memory", "512M",
                        wait_disks=["big"])
    disk = mnt.disk("big")
    chunk = bytearray(pattern(MiB, seed=1234))
    c0 = meminfo("Cached")
    fd = os.open(disk, os.O_WRONLY)
    try:
        for i in range(BIG // MiB):
            chunk[:8] = i.to_bytes(8, "little")
            pwrite_all(fd, chunk, i * MiB)
    finally:
        os.close(fd)
    c1 = meminfo("Cached")
    assert mnt.stats()["memory_used"] >= BIG
    if mode == "cached":
        mnt.write_control("big", "mode", text="cached\n")
    assert mnt.stats("big")["mode"] == mode
    fd = os.open(disk, os.O_RDONLY)
    try:
        for i in range(BIG // MiB):
            got = os.pread(fd, MiB, i * MiB)
            assert got[:8] == i.to_bytes(8, "little") and got[8:64] == chunk[8:64], f"MiB {i}"
        with _mmap.mmap(fd, BIG, _mmap.MAP_SHARED, _mmap.PROT_READ) as mm:
            for i in range(BIG // MiB):
                assert mm[i * MiB:i * MiB + 8] == i.to_bytes(8, "little")
                mm[i * MiB:(i + 1) * MiB:PAGE]  # touch every page of the MiB
        resident_before_drop = None
        if mode == "cached":
            res = run("fincore", "--bytes", "--noheadings", "--output", "RES", disk)
            resident_before_drop = int(res.stdout.split()[0])
        c2 = meminfo("Cached")
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        c3 = meminfo("Cached")
        drops = [c2 - c3]
        if mode == "cached":  # two more samples of the one-syscall window, against noise
            for _ in range(2):
                for i in range(BIG // MiB):
                    os.pread(fd, MiB, i * MiB)
                ca = meminfo("Cached")
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                drops.append(ca - meminfo("Cached"))
    finally:
        os.close(fd)
    written, read, second = c1 - c0, c2 - c1, c2 - c3
    print(f"\n[double caching] mode={mode}: Cached +{written / MiB:.1f} MiB after writing "
          f"200 MiB (in {write_mode}); +{read / MiB:.1f} MiB after reading it all "
          f"(read() + shared mapping); {second / MiB:.1f} MiB of it was the disk file's own "
          f"page cache (dropped by fadvise DONTNEED)")
    assert mnt.stats()["memory_used"] >= BIG, "the store lost pages"
    if mode == "cached":
        # the disk file's own page cache, counted exactly (per file, no machine noise)
        resident = resident_before_drop
        print(f"[double caching] mode=cached: fincore counts {resident / MiB:.1f} MiB of the "
              f"disk file in the page cache")
        assert 0.8 * BIG <= resident <= 1.25 * BIG, f"fincore: {resident} bytes resident"
        samples = [read] + drops
        print(f"[double caching] mode=cached: Cached samples of the second copy (MiB): "
              f"{[round(x / MiB, 1) for x in samples]}")
        assert any(0.8 * BIG <= x <= 1.25 * BIG for x in samples), \
            f"cached mode: the reads should add about a second copy to Cached; growth over " \
            f"the reads and page-cache drops measured: {[x // MiB for x in samples]} MiB"
    else:
        assert min(read, second) <= 0.05 * BIG, \
            f"{mode}: the reads added {read / MiB:.1f} MiB of page cache, " \
            f"{second / MiB:.1f} MiB of it the disk file's own (double caching)"
