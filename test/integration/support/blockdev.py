"""Block devices over ramdiskfs disks: loop devices, mkfs/fsck, filesystems mounted on
them, partitions, fio verification, and the safety net for a daemon that hangs.

Everything here drives the real tools a user would run (losetup, sfdisk, partx,
mkfs.ext4, e2fsck, fstrim, blkdiscard, resize2fs, fio). loop_device() and mounted_fs()
detach and unmount even when the test fails; the mount_factory fixture's teardown
(mounts.teardown_mount) catches whatever a test still left on its disks.
"""

import contextlib
import errno
import gzip
import hashlib
import json
import os
import pathlib
import re
import subprocess
import sys
import time

from .io import create_file, sha256_file
from .mounts import mounts_of, run, stop_process, unmount, wait_for
from .units import GiB, KiB, MiB


@contextlib.contextmanager
def loop_device(path, *options):
    """losetup --find --show PATH; always detached on exit (skips or fails as
    require_loop() does where there are no loop devices)."""
    from .require import require_loop  # here, not at the top: bench imports this module without pytest

    require_loop()
    dev = run("losetup", "--find", "--show", *options, path).stdout.strip()
    try:
        yield dev
    finally:
        detach_loop(dev, path)


def detach_loop(dev, path):
    """Unmounts what is mounted from `dev` and detaches it, if it is still attached to
    `path`. The test may have detached it already, and on a shared machine the number may
    since belong to someone else: detach only our own."""
    back = run("losetup", "--list", "--noheadings", "--output", "BACK-FILE", dev,
               check=False).stdout.strip()
    if back and os.path.realpath(back) == os.path.realpath(path):
        for target in mounts_of([dev]):
            run("umount", target, check=False)
        run("losetup", "-d", dev, check=False)


@contextlib.contextmanager
def mounted_fs(device, where, *options):
    """mount DEVICE WHERE; always unmounted on exit."""
    os.makedirs(where, exist_ok=True)
    run("mount", *options, device, where)
    try:
        yield pathlib.Path(where)
    finally:
        unmount(where)


# mkfs.ext4 as the suite (and docs/losetup.md) runs it:
# -b 4096: one ext4 block per ramdiskfs page (mke2fs would pick 1 KiB blocks
#          for filesystems under 512 MiB, the "small" type in mke2fs.conf);
# lazy_*_init=0: no ext4lazyinit thread writing inode tables in the
#          background after mount, so allocated-bytes figures are stable.
MKFS_EXT4 = ("mkfs.ext4", "-q", "-F", "-b", "4096",
             "-E", "lazy_itable_init=0,lazy_journal_init=0")


def mkfs_ext4(device, *extra):
    run(*MKFS_EXT4, *extra, device, timeout=300)


def fsck_clean(device):
    """e2fsck -fn must report a clean filesystem (exit status 0)."""
    wait_device_free(device)
    res = run("e2fsck", "-fn", device, check=False, timeout=300)
    assert res.returncode == 0, (
        f"e2fsck -fn {device} exited {res.returncode}:\n{res.stdout}\n{res.stderr}\n"
        f"{device} is now: {describe_loop(device)}")
    return res


def describe_loop(device):
    """What `device` is attached to right now (its backing file), for failure
    messages: a loop device that another test run on the same machine
    detached and re-attached shows up here as someone else's file."""
    base = device.rstrip("0123456789")
    if base.endswith("p") and base[:-1].rstrip("0123456789") != base[:-1]:
        device = base[:-1]  # /dev/loop3p1 -> /dev/loop3
    res = run("losetup", "--list", "--json", "--output", "NAME,BACK-FILE", device, check=False)
    try:
        (entry,) = json.loads(res.stdout)["loopdevices"]
        back = entry.get("back-file")
    except (ValueError, KeyError, TypeError):
        back = None
    return f"attached to {back}" if back else f"not attached {res.stderr.strip()}".strip()


def fsck_repair(device):
    """e2fsck -fy; returns the CompletedProcess (exit 0 clean, 1/2 repaired)."""
    wait_device_free(device)
    return run("e2fsck", "-fy", device, check=False, timeout=300)


def populate(directory, big_mib=16, small=64, seed=b""):
    """Writes one big random file and `small` small random files of assorted
    sizes into `directory`; returns {relative path: sha256}."""
    directory = pathlib.Path(directory)
    sums = {}
    data = os.urandom(big_mib * MiB)
    create_file(directory / "big.bin", data)
    sums["big.bin"] = hashlib.sha256(data).hexdigest()
    sub = directory / "small"
    sub.mkdir(exist_ok=True)
    for i in range(small):
        size = 1 + (i * 7919) % (96 * 1024)  # 1 B .. 96 KiB, odd sizes included
        data = os.urandom(size)
        name = f"small/f{i:03d}"
        create_file(directory / name, data, fsync=False)
        sums[name] = hashlib.sha256(data).hexdigest()
    os.sync()
    return sums


def check_sums(directory, sums):
    directory = pathlib.Path(directory)
    bad = {name: (want, sha256_file(directory / name))
           for name, want in sums.items()
           if sha256_file(directory / name) != want}
    assert not bad, f"checksum mismatch in {directory}: {sorted(bad)[:10]}"


def loop_info(device):
    """losetup --list --json for one device: dict with name, dio, log-sec, ro,
    partscan, back-file, sizelimit."""
    out = run("losetup", "--list", "--json", "--output",
              "NAME,DIO,LOG-SEC,RO,PARTSCAN,BACK-FILE,SIZELIMIT", device).stdout
    (entry,) = json.loads(out)["loopdevices"]
    return entry


def flag(value):
    """losetup's JSON prints flags as true/false, "1"/"0" or 1/0 by version."""
    return value in (True, 1, "1", "true")


def blockdev_size(device):
    return int(run("blockdev", "--getsize64", device).stdout)


def allocated(mnt, name):
    """RAM the daemon holds for disk `name`, after writing back dirty data."""
    os.sync()
    return mnt.stats(name)["allocated_bytes"]


def wait_for_partitions(device, count, timeout=10):
    """losetup -P asks the kernel to scan the partition table; this kernel
    may have no partition-table parsers built in (CONFIG_MSDOS_PARTITION and
    CONFIG_EFI_PARTITION unset), in which case the kernel finds nothing and
    `partx -u` (userspace parser, BLKPG ioctls) adds the partitions. partx -u
    is a no-op when the kernel already has them, so it is always run."""
    run("partx", "-u", device)
    parts = [f"{device}p{i}" for i in range(1, count + 1)]
    wait_for(lambda: all(os.path.exists(p) for p in parts), timeout,
             f"partition nodes {parts}")
    return parts


def kernel_parses_partitions():
    """True when the running kernel has an msdos or GPT parser built in."""
    try:
        with gzip.open("/proc/config.gz", "rt") as f:
            cfg = f.read()
    except OSError:
        return True  # cannot tell; assume a normal kernel
    return ("CONFIG_MSDOS_PARTITION=y" in cfg) or ("CONFIG_EFI_PARTITION=y" in cfg)


# --------------------------------------------------------------------------
# fio

def fio_verify(directory, seconds, size_per_job="96M", jobs=2, create_only=False,
               timeout_extra=600):
    """Mixed random read/write with crc32c verification on files in
    `directory`, O_DIRECT so that every I/O reaches the loop device (and so
    ramdiskfs) instead of ext4's page cache. Returns (parsed JSON, result).
    Verification runs continuously (verify_backlog) and again over everything
    written when the run ends; verify_fatal stops at the first bad block."""
    args = ["fio", "--name=stress", f"--directory={directory}",
            f"--numjobs={jobs}", f"--size={size_per_job}",
            "--rw=randrw", "--rwmixread=50", "--bs=4k",
            "--ioengine=libaio", "--iodepth=8", "--direct=1",
            "--verify=crc32c", "--verify_fatal=1", "--verify_backlog=1024",
            "--verify_state_save=0",  # no *-verify.state files in the cwd
            "--group_reporting", "--output-format=json"]
    if create_only:
        args.append("--create_only=1")
    else:
        args += ["--time_based", f"--runtime={seconds}"]
    res = run(*args, check=False, timeout=seconds + timeout_extra, cwd=directory)
    try:
        report = json.loads(res.stdout[res.stdout.find("{"):]) if "{" in res.stdout else {}
    except ValueError:
        report = {}
    return report, res


def assert_fio_clean(report, res):
    text = (res.stdout or "") + (res.stderr or "")
    assert res.returncode == 0, f"fio exited {res.returncode}:\n{res.stderr}\n{res.stdout[-3000:]}"
    assert report.get("jobs"), f"fio printed no JSON report:\n{text[-3000:]}"
    errors = [j.get("error") for j in report["jobs"]]
    assert all(e == 0 for e in errors), f"fio job errors {errors}:\n{res.stderr}"
    for word in ("verify failed", "bad magic", "bad header", "crc32c: verify"):
        assert word not in text, f"fio reported '{word}':\n{text[-3000:]}"
    read = sum(j["read"]["io_bytes"] for j in report["jobs"])
    written = sum(j["write"]["io_bytes"] for j in report["jobs"])
    assert written > 0 and read > 0, f"fio did no I/O (read {read}, wrote {written})"
    return read, written


def journal_bytes(device):
    out = run("dumpe2fs", "-h", device, check=False).stdout
    for line in out.splitlines():
        if line.startswith("Journal size:") or line.startswith("Total journal size:"):
            value = line.split(":", 1)[1].strip()
            number, unit = value[:-1], value[-1]
            mult = {"k": KiB, "K": KiB, "M": MiB, "G": GiB}.get(unit)
            if mult and number.strip().isdigit():
                return int(number) * mult
    return 64 * MiB  # unknown: assume the largest default a small fs gets


# --------------------------------------------------------------------------
# A process that keeps reading a disk file directly (stress variant 3).

_READER = r"""
import os, signal, sys
path, out = sys.argv[1], sys.argv[2]
stop = False
def on_term(*_):
    global stop
    stop = True
signal.signal(signal.SIGTERM, on_term)
total = passes = 0
try:
    while not stop:
        with open(path, "rb", buffering=0) as f:
            while not stop:
                b = f.read(1 << 20)
                if not b:
                    break
                total += len(b)
        passes += 1
except OSError as e:
    open(out, "w").write(f"error {e.errno} {e}\n")
    sys.exit(3)
open(out, "w").write(f"ok {total} {passes}\n")
"""


@contextlib.contextmanager
def direct_reader(disk_path, report_path):
    """Runs a process that reads `disk_path` end to end, again and again, until
    the block exits; yields a function returning (status, bytes read)."""
    proc = subprocess.Popen([sys.executable, "-c", _READER, str(disk_path), str(report_path)])
    result = {}

    def outcome():
        return result.get("status"), result.get("bytes", 0)

    try:
        yield outcome
    finally:
        stop_process(proc, timeout=30)
        text = pathlib.Path(report_path).read_text() if os.path.exists(report_path) else ""
        words = text.split()
        result["status"] = f"exit {proc.returncode}: {text.strip()}"
        if words and words[0] == "ok":
            result["bytes"] = int(words[1])


# --------------------------------------------------------------------------
# Safety net for a daemon that stops answering: abort its FUSE connection so
# that nothing (umount, sync, losetup -d) stays blocked in the kernel.

def fuse_connection_id(mount_path):
    try:
        return os.minor(os.stat(mount_path).st_dev)
    except OSError:
        return None


def abort_fuse(conn_id):
    if conn_id is None:
        return
    path = f"/sys/fs/fuse/connections/{conn_id}/abort"
    if os.path.exists(path):
        with open(path, "w") as f:
            f.write("1")


# --------------------------------------------------------------------------
# Where ext4 keeps its journal (compared with io.data_ranges of the disk file).


def journal_ranges(device, block=4096):
    """Byte ranges of ext4's journal (inode 8) on `device`, from debugfs."""
    out = run("debugfs", "-R", "stat <8>", device, check=False).stdout
    ranges = []
    for m in re.finditer(r"\((\d+)(?:-(\d+))?\):(\d+)(?:-(\d+))?", out):
        phys_start = int(m.group(3))
        phys_end = int(m.group(4) or m.group(3))
        ranges.append((phys_start * block, (phys_end + 1) * block))
    assert ranges, f"no journal extents in debugfs output:\n{out}"
    return ranges


def wait_device_free(device, timeout=30):
    """Waits until nothing holds `device` exclusively; returns the seconds
    waited. Seen on Linux 6.18: right after `umount` returns, ext4 can still
    hold its block device for a moment, and e2fsck -fy then stops with
    "/dev/loopN is in use" (exit 8)."""
    start = time.monotonic()
    while True:
        try:
            fd = os.open(device, os.O_RDONLY | os.O_EXCL)
            os.close(fd)
            return time.monotonic() - start
        except OSError as e:
            if e.errno != errno.EBUSY or time.monotonic() - start > timeout:
                raise
            time.sleep(0.1)


@contextlib.contextmanager
def explain_on_failure(device, fsdir):
    """On an exception: prints what the filesystem and the kernel say, then
    re-raises (the evidence for a report when data goes missing)."""
    try:
        yield
    except BaseException:
        try:
            print("directory:", sorted(os.listdir(fsdir)))
        except OSError as e:
            print("directory unreadable:", e)
        print(f"{device} is attached to: {describe_loop(device)}")
        print("dmesg tail:\n" + run("dmesg", check=False).stdout[-3000:])
        run("umount", fsdir, check=False)
        print("e2fsck -fn:\n" + run("e2fsck", "-fn", device, check=False).stdout[-3000:])
        print("debugfs ls /:\n" + run("debugfs", "-R", "ls -l /", device, check=False).stdout[-2000:])
        raise
