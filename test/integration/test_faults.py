"""Fault injection (issue 11, SPEC 10, docs/faults.md), as a block device user sees it.

Each semantic test runs twice: on the disk file itself ("file") and through a
loop device made with `losetup --direct-io=on` over it ("loop"). I/O is
O_DIRECT in both cases, so every request reaches the daemon.

  1. the control files: listed, read back, bad input refused, dax refused,
     --disk keys, stats counters
  2. badblocks: EIO on the range; on ext4, EIO for the file whose data is on
     it, the loop device's I/O error in the kernel log, the other files
     intact; badblocks_once heals after one failed write; badblocks_partial
     does the I/O up to the bad sector
  3. errors: read 0.01 over 100k fio reads within the 99.9% binomial
     interval; the same fault_seed fails the same offsets twice
  4. latency: write 1000 -> fio p50 at QD1 in 1.0-1.1 ms; QD16 >= 12x QD1
  5. throttle: iops 2000 and bandwidth 50M within 10% over 10 s, 2 jobs
  6. flakey: per behaviour in the down window, the up/down cycle, and ext4
     going read-only on a journal write error as over dm-flakey

Timing tests assert exactly the issue's bounds and no more; they are short
(a few seconds each) because CI runs them alone.
"""

import contextlib
import errno
import json
import math
import mmap
import os
import random
import re
import subprocess
import time

import pytest

from support.blockdev import MKFS_EXT4, loop_device, mounted_fs
from support.ctl import DISK_FILES, write_errno
from support.io import create_file, sha256_file
from support.mounts import BIN, is_mounted, run, wait_for

MiB = 1 << 20
SECTOR = 512
VIA = ["file", "loop"]

FAULT_FILES = ["badblocks", "badblocks_once", "badblocks_partial", "errors", "fault_seed",
               "latency", "throttle", "flakey"]
FAULT_STATS = ["injected_errors", "injected_error_bytes", "delayed_requests", "delay_us_total",
               "throttled_us_total", "dropped_writes", "corrupted_writes"]


# ---- helpers -----------------------------------------------------------------------------

def fault_mount(mount_factory, size="64M", mode="direct", *keys):
    spec = ":".join([f"ram0:{size}:mode={mode}", *keys])
    return mount_factory("--disk", spec, wait_disks=["ram0"])


def set_fault(mnt, name, text):
    mnt.write_control("ram0", name, text=text)


@contextlib.contextmanager
def target(mnt, via):
    """The path to do I/O on: the disk file, or a --direct-io=on loop device over it."""
    if via == "file":
        yield str(mnt.disk("ram0"))
        return
    with loop_device(str(mnt.disk("ram0")), "--direct-io=on") as dev:
        dio = run("losetup", "--list", "--noheadings", "--output", "DIO", dev).stdout.strip()
        assert dio == "1", f"{dev}: direct I/O is off ({dio!r})"
        yield dev


def aligned(data):
    buf = mmap.mmap(-1, max(len(data), 1))
    buf.write(data)
    return buf


def dread(path, offset, length):
    """One O_DIRECT pread; returns the bytes read (maybe fewer) or raises OSError."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    try:
        buf = mmap.mmap(-1, length)
        n = os.preadv(fd, [buf], offset)
        return bytes(buf[:n])
    finally:
        os.close(fd)


def dwrite(path, offset, data):
    fd = os.open(path, os.O_WRONLY | os.O_DIRECT)
    try:
        return os.pwritev(fd, [aligned(data)], offset)
    finally:
        os.close(fd)


def err_of(fn, *args):
    try:
        fn(*args)
        return 0
    except OSError as e:
        return e.errno


def fio(path, *args, timeout=300):
    res = run("fio", "--name=t", f"--filename={path}", "--output-format=json", *args,
              check=False, timeout=timeout)
    assert "{" in res.stdout, f"fio printed no report:\n{res.stderr}\n{res.stdout}"
    report = json.loads(res.stdout[res.stdout.find("{"):])
    return report, res


def kmsg_marker():
    tag = f"ramdiskfs-test-{os.getpid()}-{random.getrandbits(32):08x}"
    with open("/dev/kmsg", "w") as f:
        f.write(f"{tag}\n")
    return tag


def kernel_log_after(tag):
    out = run("dmesg", check=False).stdout
    pos = out.rfind(tag)
    return out[pos:] if pos >= 0 else ""


# ---- 1. control files ----------------------------------------------------------------------

def test_files_listed_with_defaults(mount_factory):
    mnt = fault_mount(mount_factory)
    listed = set(os.listdir(mnt.ctl("ram0")))
    assert set(FAULT_FILES) <= listed == set(DISK_FILES)
    defaults = {"badblocks": "", "badblocks_once": "0\n", "badblocks_partial": "0\n",
                "errors": "", "fault_seed": "0\n", "latency": "", "throttle": "",
                "flakey": "0 0\n"}
    for name, text in defaults.items():
        assert mnt.read_control("ram0", name) == text, name
    stats = mnt.stats("ram0")
    for key in FAULT_STATS:
        assert stats[key] == 0, key


def test_settings_read_back(mount_factory):
    mnt = fault_mount(mount_factory)
    writes = {
        "badblocks": ("+100-199\n+200-299\n-150-159\n", "100-149\n160-299\n"),
        "badblocks_once": ("1", "1\n"),
        "badblocks_partial": ("1\n", "1\n"),
        "errors": ("read 0.01\nwrite 1 ENOSPC\n", "read 0.01 EIO\nwrite 1 ENOSPC\n"),
        "fault_seed": ("42\n", "42\n"),
        "latency": ("write 200 50\n", "write 200 50\n"),
        "throttle": ("iops 2000 bandwidth 50M\n", "iops 2000\nbandwidth 52428800\n"),
        "flakey": ("5 1 drop_writes\n", "5 1 drop_writes\n"),
    }
    for name, (text, shown) in writes.items():
        set_fault(mnt, name, text)
        assert mnt.read_control("ram0", name) == shown, name
    # And off again.
    for name, text in [("badblocks", "clear"), ("errors", "0"), ("latency", "write 0"),
                       ("throttle", "0"), ("flakey", "0 0")]:
        set_fault(mnt, name, text)
    assert mnt.read_control("ram0", "errors") == ""
    assert mnt.read_control("ram0", "flakey") == "0 0\n"
    assert "badblocks is now" in mnt.log()


BAD_INPUT = [
    ("badblocks", "8-15", errno.EINVAL), ("badblocks", "+15-8", errno.EINVAL),
    ("badblocks", "+0-99999999999999999999", errno.ERANGE),
    ("badblocks_once", "2", errno.EINVAL), ("badblocks_partial", "yes", errno.EINVAL),
    ("errors", "read 1.5", errno.ERANGE), ("errors", "read 0.1 EPERM", errno.EINVAL),
    ("errors", "seek 0.1", errno.EINVAL), ("errors", "read 0.5\nwrite x", errno.EINVAL),
    ("fault_seed", "-1", errno.EINVAL), ("fault_seed", "18446744073709551616", errno.ERANGE),
    ("latency", "write 100 200", errno.ERANGE), ("latency", "write 1ms", errno.EINVAL),
    ("throttle", "iops", errno.EINVAL), ("throttle", "mbps 10", errno.EINVAL),
    ("throttle", "bandwidth 2P", errno.ERANGE),
    ("flakey", "5 1", errno.EINVAL), ("flakey", "5 1 sometimes", errno.EINVAL),
    ("flakey", "99999999999 1 error_all", errno.ERANGE),
    ("latency", "\n", errno.EINVAL), ("errors", " \n\n", errno.EINVAL),
]


def test_bad_input_refused_and_nothing_changed(mount_factory):
    mnt = fault_mount(mount_factory)
    for name, text in [("badblocks", "+8-15"), ("errors", "read 0.5"), ("fault_seed", "7"),
                       ("latency", "read 10"), ("throttle", "iops 100000"),
                       ("flakey", "100 1 error_reads")]:
        set_fault(mnt, name, text)
    before = {name: mnt.read_control("ram0", name) for name in FAULT_FILES}
    for name, text, want in BAD_INPUT:
        lines_before = len(mnt.log().splitlines())
        got = write_errno(mnt, "ram0", name, text=text)
        assert got == want, f"{name} {text!r}: {errno.errorcode.get(got, got)}"
        new_lines = mnt.log().splitlines()[lines_before:]
        assert any(f"ram0/{name}" in line for line in new_lines), (name, text, new_lines)
        after = {n: mnt.read_control("ram0", n) for n in FAULT_FILES}
        assert after == before, f"{name} {text!r} changed the settings"


def test_dax_disk_refuses_faults(mount_factory):
    mnt = fault_mount(mount_factory, "64M", "dax")
    assert mnt.read_control("ram0", "mode") == "dax\n"
    lines_before = len(mnt.log().splitlines())
    assert write_errno(mnt, "ram0", "latency", text="write 200") == errno.EINVAL
    refusal = "\n".join(mnt.log().splitlines()[lines_before:])
    assert "dax" in refusal and "direct" in refusal and "cached" in refusal, refusal
    assert mnt.read_control("ram0", "latency") == ""
    # Switched to direct, the same write works; back to dax is refused while set.
    set_fault(mnt, "mode", "direct")
    set_fault(mnt, "latency", "write 200")
    assert write_errno(mnt, "ram0", "mode", text="dax") == errno.EINVAL
    set_fault(mnt, "latency", "0")
    set_fault(mnt, "mode", "dax")


def test_disk_keys(mount_factory, tmp_path):
    mnt = fault_mount(mount_factory, "64M", "direct", "latency=write 200", "errors=read 0.5",
                      "badblocks=+0-7", "fault_seed=9", "flakey=100 1 error_reads")
    assert mnt.read_control("ram0", "latency") == "write 200\n"
    assert mnt.read_control("ram0", "errors") == "read 0.5 EIO\n"
    assert mnt.read_control("ram0", "badblocks") == "0-7\n"
    assert mnt.read_control("ram0", "fault_seed") == "9\n"
    assert mnt.read_control("ram0", "flakey") == "100 1 error_reads\n"
    assert err_of(dread, str(mnt.disk("ram0")), 0, 4096) == errno.EIO
    # A fault key with an explicit dax mode is a usage error; a bad value too.
    for spec, words in [("r:1M:mode=dax:latency=write 1", "need mode=direct or mode=cached"),
                        ("r:1M:latency=write 5 10", "latency: JITTER")]:
        where = tmp_path / "never"
        where.mkdir(exist_ok=True)
        res = subprocess.run([str(BIN), str(where), "-f", "--disk", spec], capture_output=True,
                             text=True, timeout=30)
        # 1: incorrect invocation, as mount(8) numbers it (src/main.cc kExitUsage).
        assert res.returncode == 1 and words in res.stderr, (spec, res.returncode, res.stderr)
        assert not is_mounted(where)


def test_stats_count_injected_faults(mount_factory):
    mnt = fault_mount(mount_factory)
    disk = str(mnt.disk("ram0"))
    set_fault(mnt, "badblocks", "+8-15")
    assert err_of(dread, disk, 4096, 4096) == errno.EIO
    set_fault(mnt, "badblocks", "clear")
    set_fault(mnt, "latency", "read 2000")
    dread(disk, 0, 4096)
    set_fault(mnt, "latency", "0")
    set_fault(mnt, "flakey", "0 100 drop_writes")
    dwrite(disk, 0, b"x" * 4096)
    set_fault(mnt, "flakey", "0 100 corrupt_writes")
    dwrite(disk, 0, b"y" * 4096)
    set_fault(mnt, "flakey", "0 0")
    s = mnt.stats("ram0")
    assert s["injected_errors"] == 1 and s["injected_error_bytes"] == 4096, s
    assert s["delayed_requests"] == 1 and s["delay_us_total"] == 2000, s
    assert s["dropped_writes"] == 1 and s["corrupted_writes"] == 1, s


# ---- 2. badblocks ----------------------------------------------------------------------------

@pytest.mark.parametrize("via", VIA)
def test_bad_range_fails_only_there(mount_factory, via):
    mnt = fault_mount(mount_factory)
    with target(mnt, via) as path:
        dwrite(path, 0, b"\xab" * (64 * 1024))
        set_fault(mnt, "badblocks", "+16-23")  # bytes 8192..12287
        assert err_of(dread, path, 8192, 4096) == errno.EIO
        assert err_of(dwrite, path, 8192, b"z" * 4096) == errno.EIO
        assert err_of(dread, path, 0, 65536) == errno.EIO
        assert dread(path, 0, 8192) == b"\xab" * 8192
        assert dread(path, 12288, 4096) == b"\xab" * 4096
        set_fault(mnt, "badblocks", "-16-23")
        assert dread(path, 8192, 4096) == b"\xab" * 4096  # the failed write changed nothing


def filefrag_sectors(path):
    """The 512-byte sectors (first, last) of the first extent of `path` on its device."""
    out = run("filefrag", "-v", "-b512", path).stdout
    for line in out.splitlines():
        m = re.match(r"\s*0:\s+\d+\.\.\s*(\d+):\s+(\d+)\.\.\s*(\d+):", line)
        if m:
            return int(m.group(2)), int(m.group(3))
    raise AssertionError(f"no extent for {path}:\n{out}")


def test_ext4_file_on_bad_sectors(mount_factory, tmp_path):
    """dm-dust's classic: a bad sector under one file of ext4."""
    mnt = fault_mount(mount_factory, "128M")
    with target(mnt, "loop") as dev:
        run(*MKFS_EXT4, dev, timeout=300)
        where = tmp_path / "fs"
        with mounted_fs(dev, where):
            sums = {}
            for i in range(8):
                data = os.urandom(256 * 1024 + i * 4096)
                create_file(where / f"f{i}", data)
                sums[f"f{i}"] = sha256_file(where / f"f{i}")
            first, last = filefrag_sectors(str(where / "f3"))
        # Unmounted: nothing of f3 stays in the page cache.
        set_fault(mnt, "badblocks", f"+{first + 8}-{first + 15}")
        tag = kmsg_marker()
        with mounted_fs(dev, where, "-o", "ro,noload"):
            with pytest.raises(OSError) as e:
                (where / "f3").read_bytes()
            assert e.value.errno == errno.EIO
            for name, digest in sums.items():
                if name != "f3":
                    assert sha256_file(where / name) == digest, name
        log = kernel_log_after(tag)
        dev_name = os.path.basename(dev)
        assert re.search(rf"I/O error, dev {dev_name}, sector \d+", log), log[-2000:]
        set_fault(mnt, "badblocks", "clear")
        run("e2fsck", "-fn", dev, timeout=300)


@pytest.mark.parametrize("via", VIA)
def test_badblocks_once_heals_after_one_failed_write(mount_factory, via):
    mnt = fault_mount(mount_factory)
    with target(mnt, via) as path:
        dwrite(path, 0, b"o" * 16384)
        set_fault(mnt, "badblocks", "+8-15")
        set_fault(mnt, "badblocks_once", "1")
        assert err_of(dread, path, 4096, 4096) == errno.EIO
        assert err_of(dread, path, 4096, 4096) == errno.EIO  # reads do not heal
        assert err_of(dwrite, path, 4096, b"n" * 4096) == errno.EIO  # the one failed write
        assert mnt.read_control("ram0", "badblocks") == ""
        assert dwrite(path, 4096, b"n" * 4096) == 4096
        assert dread(path, 4096, 4096) == b"n" * 4096


@pytest.mark.parametrize("via", VIA)
def test_badblocks_partial_does_the_io_up_to_the_bad_sector(mount_factory, via):
    mnt = fault_mount(mount_factory)
    disk = str(mnt.disk("ram0"))
    with target(mnt, via) as path:
        dwrite(path, 0, b"o" * 16384)
        set_fault(mnt, "badblocks", "+20-20")  # byte 10240
        set_fault(mnt, "badblocks_partial", "1")
        # A write over it fails, but the 10240 bytes before the bad sector are written.
        assert err_of(dwrite, path, 0, b"n" * 16384) == errno.EIO
        if via == "file":
            # The file sees a short read up to the bad sector; the next read fails.
            assert dread(path, 0, 16384) == b"n" * 10240
            assert err_of(dread, path, 10240, 512) == errno.EIO
        else:
            assert err_of(dread, path, 0, 16384) == errno.EIO
            assert dread(path, 0, 10240) == b"n" * 10240
        set_fault(mnt, "badblocks", "clear")
        assert dread(disk, 0, 16384) == b"n" * 10240 + b"o" * 6144


# ---- 3. errors -----------------------------------------------------------------------------

@pytest.mark.parametrize("via", VIA)
def test_error_rate_is_binomial(mount_factory, via):
    n, p = 100_000, 0.01
    mnt = fault_mount(mount_factory, "256M")
    with target(mnt, via) as path:
        set_fault(mnt, "errors", "read 0.01")
        report, res = fio(path, "--rw=randread", "--bs=4k", "--ioengine=psync", "--direct=1",
                          f"--number_ios={n}", f"--io_size={n * 4096}", "--size=256M",
                          "--continue_on_error=read", "--norandommap")
        job = report["jobs"][0]
        errors = job["total_err"]
        total = job["read"]["total_ios"]  # every read issued, failed ones included
    assert total == n, (total, errors)
    half_width = 3.2905 * math.sqrt(total * p * (1 - p))  # 99.9% two-sided
    assert abs(errors - total * p) <= half_width, (
        f"{errors} errors in {total} reads: outside {total * p:.0f} +- {half_width:.0f}")
    assert mnt.stats("ram0")["injected_errors"] == errors


def failing_offsets(mnt, path, seed, count=4000):
    set_fault(mnt, "fault_seed", str(seed))
    rng = random.Random(5)
    failing = []
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    buf = mmap.mmap(-1, 4096)
    try:
        for _ in range(count):
            offset = rng.randrange(0, 16 * MiB // 4096) * 4096
            try:
                os.preadv(fd, [buf], offset)
            except OSError as e:
                assert e.errno == errno.EIO
                failing.append(offset)
    finally:
        os.close(fd)
    return failing


@pytest.mark.parametrize("via", VIA)
def test_same_seed_same_failing_offsets(mount_factory, via):
    mnt = fault_mount(mount_factory)
    with target(mnt, via) as path:
        set_fault(mnt, "errors", "read 0.05")
        first = failing_offsets(mnt, path, 1234)
        second = failing_offsets(mnt, path, 1234)
        other = failing_offsets(mnt, path, 4321)
    assert 100 <= len(first) <= 300, len(first)
    assert first == second
    assert other != first


# ---- 4. latency ------------------------------------------------------------------------------

def write_iops(report):
    return sum(j["write"]["iops"] for j in report["jobs"])


@pytest.mark.parametrize("via", VIA)
def test_write_latency(mount_factory, via):
    mnt = fault_mount(mount_factory, "256M")
    with target(mnt, via) as path:
        set_fault(mnt, "latency", "write 1000")
        common = ["--rw=randwrite", "--bs=4k", "--direct=1", "--size=256M", "--time_based",
                  "--runtime=3", "--norandommap"]
        qd1, res = fio(path, *common, "--ioengine=psync")
        assert res.returncode == 0, res.stderr
        p50_ms = qd1["jobs"][0]["write"]["clat_ns"]["percentile"]["50.000000"] / 1e6
        assert 1.0 <= p50_ms <= 1.1, f"p50 {p50_ms:.3f} ms"
        # QD16: one libaio job of depth 16. Async direct I/O (docs/design.md)
        # lets the kernel, and a loop device's worker, keep 16 requests in
        # flight, and the TimerQueue replies to each at its own deadline.
        qd16, res = fio(path, *common, "--ioengine=libaio", "--iodepth=16")
        assert res.returncode == 0, res.stderr
        ratio = write_iops(qd16) / write_iops(qd1)
        assert ratio >= 12, f"QD16 {write_iops(qd16):.0f} IOPS vs QD1 {write_iops(qd1):.0f}"
    stats = mnt.stats("ram0")
    assert stats["delayed_requests"] > 0 and stats["delay_us_total"] >= 1000 * 1000


# ---- 5. throttle -----------------------------------------------------------------------------

@pytest.mark.parametrize("via", VIA)
@pytest.mark.parametrize("limit", ["iops 2000", "bandwidth 50M"])
def test_throttle(mount_factory, via, limit):
    mnt = fault_mount(mount_factory, "256M")
    with target(mnt, via) as path:
        set_fault(mnt, "throttle", limit)
        bs = "4k" if limit.startswith("iops") else "128k"
        report, res = fio(path, "--rw=randread", f"--bs={bs}", "--ioengine=psync", "--direct=1",
                          "--numjobs=2", "--size=256M", "--time_based", "--runtime=10",
                          "--group_reporting", "--norandommap")
        assert res.returncode == 0, res.stderr
        job = report["jobs"][0]
        if limit.startswith("iops"):
            got, want = job["read"]["iops"], 2000
        else:
            got, want = job["read"]["bw_bytes"], 50 * MiB
        assert abs(got - want) <= 0.1 * want, f"{limit}: {got:.0f}"
    assert mnt.stats("ram0")["throttled_us_total"] > 0


# ---- 6. flakey ---------------------------------------------------------------------------------

@pytest.mark.parametrize("via", VIA)
def test_flakey_behaviours(mount_factory, via):
    mnt = fault_mount(mount_factory)
    disk = str(mnt.disk("ram0"))
    old, new = b"o" * 4096, b"n" * 4096
    with target(mnt, via) as path:
        dwrite(path, 0, old)
        # UP 0: down from the moment it is written, for 100 s.
        set_fault(mnt, "flakey", "0 100 error_writes")
        assert err_of(dwrite, path, 0, new) == errno.EIO
        assert dread(path, 0, 4096) == old
        set_fault(mnt, "flakey", "0 100 error_reads")
        assert err_of(dread, path, 0, 4096) == errno.EIO
        assert dwrite(path, 4096, new) == 4096
        set_fault(mnt, "flakey", "0 100 error_all")
        assert err_of(dread, path, 0, 4096) == errno.EIO
        assert err_of(dwrite, path, 0, new) == errno.EIO
        set_fault(mnt, "flakey", "0 100 drop_writes")
        assert dwrite(path, 0, new) == 4096  # acknowledged...
        assert dread(path, 0, 4096) == old  # ...and dropped
        set_fault(mnt, "flakey", "0 100 corrupt_writes")
        assert dwrite(path, 0, new) == 4096
        got = dread(path, 0, 4096)
        diff = [i for i in range(4096) if got[i] != new[i]]
        assert len(diff) == 1 and got[diff[0]] == (~new[diff[0]]) & 0xFF, diff
        set_fault(mnt, "flakey", "0 0")
        assert dwrite(path, 0, new) == 4096 and dread(path, 0, 4096) == new
    assert dread(disk, 4096, 4096) == new


@pytest.mark.parametrize("via", VIA)
def test_flakey_window_cycles(mount_factory, via):
    """`1 1 error_writes`: writes pass for 1 s, fail for 1 s, pass again."""
    mnt = fault_mount(mount_factory)
    with target(mnt, via) as path:
        start = time.monotonic()
        set_fault(mnt, "flakey", "1 1 error_writes")
        skew = time.monotonic() - start  # the cycle began somewhere in here
        samples = []
        while time.monotonic() - start < 3.9:
            t0 = time.monotonic()
            err = err_of(dwrite, path, 0, b"w" * 4096)
            samples.append((t0 - start, time.monotonic() - t0, err))
            time.sleep(0.02)
    checked = 0
    for began, took, err in samples:
        assert err in (0, errno.EIO), (began, err)
        # The daemon saw this write somewhere in [lo, hi] of its cycle.
        lo, hi = began - skew, began + took
        if any(lo - 0.1 < edge < hi + 0.1 for edge in (1, 2, 3)):
            continue
        expect_down = int(lo) % 2 == 1
        assert (err == errno.EIO) == expect_down, (began, took, err)
        checked += 1
    assert checked >= 50, f"only {checked} samples away from the edges"


def test_ext4_goes_read_only_on_a_journal_write_error(mount_factory, tmp_path):
    """As over dm-flakey: writes fail, the journal aborts, ext4 is remounted read-only."""
    mnt = fault_mount(mount_factory, "128M")
    with target(mnt, "loop") as dev:
        run(*MKFS_EXT4, dev, timeout=300)
        where = tmp_path / "fs"
        with mounted_fs(dev, where, "-o", "errors=remount-ro"):
            create_file(where / "before", b"b" * 65536)
            tag = kmsg_marker()
            set_fault(mnt, "flakey", "0 100 error_writes")
            try:
                create_file(where / "during", b"d" * 65536)
            except OSError as e:
                assert e.errno in (errno.EIO, errno.EROFS), e
            run("sync", check=False)

            # Linux 6.x keeps "rw" in /proc/mounts after an ext4 error and
            # refuses writes with EROFS instead (the emergency read-only flag).
            def refuses_writes():
                try:
                    (where / "after").write_bytes(b"a")
                    return False
                except OSError as e:
                    return e.errno == errno.EROFS

            wait_for(refuses_writes, 30, "ext4 refusing writes with EROFS")
            log = kernel_log_after(tag)
            name = os.path.basename(dev)
            assert f"Aborting journal on device {name}" in log, log[-3000:]
            assert re.search(rf"EXT4-fs \({name}\): Remounting filesystem read-only", log), (
                log[-3000:])
            set_fault(mnt, "flakey", "0 0")
        run("e2fsck", "-fy", dev, check=False, timeout=300)
        run("e2fsck", "-fn", dev, timeout=300)
