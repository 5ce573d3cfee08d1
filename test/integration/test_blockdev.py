"""Block-device acceptance suite: losetup on ramdiskfs disks, in every data
mode that keeps data (dax, direct, cached; null drops writes).

What a user does first with ramdiskfs is `losetup` a disk file and put a
filesystem on it. Each test below is one item of that acceptance list, and
each recipe in docs/losetup.md is run by one of them:

  1. test_ext4_roundtrip           losetup buffered / --direct-io=on, --sector-size 512 / 4096
  2. test_partitions               losetup -P, sfdisk (two partitions), ext4 on each
  3. test_discard_returns_memory   fstrim and blkdiscard give the RAM back
  4. test_online_grow              grow (truncate / control file), losetup -c, resize2fs;
                                   shrinking an attached disk is refused
  5. test_readonly_disk            read-only disk -> read-only loop device
  6. test_stress_fio_verify        fio crc32c verify on ext4: plain, tight cap, concurrent reader
  7. test_cap_reached_under_ext4   ext4 on a disk larger than the memory cap, filled until it hits
  8. test_sixteen_disks            16 disks on 16 loop devices at once
  9. test_teardown_*               unmounting ramdiskfs under an attached loop device

Stress duration: RAMDISKFS_STRESS_SECONDS (default 60) for dax, and
RAMDISKFS_STRESS_SHORT_SECONDS (default min(15, RAMDISKFS_STRESS_SECONDS)) for
direct and cached; see docs/losetup.md ("How the suite runs") for why.

Every loop device is attached through support.blockdev.loop_device (detached on exit,
even on failure); the autouse fixture below double-checks that nothing backed
by this test's files is left attached or mounted.
"""

import contextlib
import errno
import hashlib
import json
import os
import re
import signal
import subprocess
import time

import pytest

from support.blockdev import (abort_fuse, allocated, assert_fio_clean, blockdev_size, check_sums,
                              direct_reader, explain_on_failure, fio_verify, flag, fsck_clean,
                              fsck_repair, fuse_connection_id, journal_bytes, journal_ranges,
                              loop_device, loop_info, mkfs_ext4, mounted_fs, populate,
                              wait_device_free, wait_for_partitions)
from support.io import create_file, data_ranges, drop_file_cache, overlap_bytes, sha256_file
from support.mounts import (CTL, DATA_MODES, is_mounted, loops_backed_by, mounts_under, run,
                            wait_for)
from support.require import CAP_SYS_RESOURCE, has_cap, require_ctl, require_loop
from support.units import GiB, MiB


def stress_seconds(mode):
    full = int(os.environ.get("RAMDISKFS_STRESS_SECONDS", "60"))
    if mode == "dax":
        return full
    return int(os.environ.get("RAMDISKFS_STRESS_SHORT_SECONDS", str(min(15, full))))


@pytest.fixture(autouse=True)
def _nothing_left_behind(tmp_path):
    """After the test and its fixtures: no loop device or mount of ours remains."""
    yield
    loops = loops_backed_by(tmp_path)
    mounts = mounts_under(tmp_path)
    for target in mounts:
        run("umount", "-l", target, check=False)
    for dev in loops:
        run("losetup", "-d", dev, check=False)
    assert not loops and not mounts, f"left behind: loops {loops}, mounts {mounts}"


def start(mount_factory, mode, size, *extra, name="ram0"):
    """One disk NAME of SIZE in MODE; checks that the mode really is MODE."""
    require_loop()
    mnt = mount_factory("--disk", f"{name}:{size}:mode={mode}", *extra, wait_disks=[name])
    st = mnt.stats(name)
    assert st.get("mode") == mode, f"asked for mode={mode}, the disk says {st}"
    assert str(st.get("fallback", "none")) == "none", f"mode {mode} fell back: {st}"
    return mnt


def ctl_used(mnt, name):
    """The USED figure `ramdiskctl list --json` prints for disk `name`."""
    out = run(CTL, "list", name, mnt.path, "--json", "--output", "USED").stdout
    (disk,) = json.loads(out)["ramdisks"]
    return disk["used"]


def try_write(path, offset):
    """Opens `path` for writing and writes one page at `offset`; returns 0 or
    the errno of whichever of open/write failed."""
    try:
        fd = os.open(path, os.O_WRONLY)
    except OSError as e:
        return e.errno
    try:
        os.pwrite(fd, b"\xa5" * 4096, offset)
        os.fsync(fd)
        return 0
    except OSError as e:
        return e.errno
    finally:
        try:
            os.close(fd)
        except OSError:
            pass


# ---------------------------------------------------------------------------
# 1. losetup buffered and --direct-io=on, --sector-size 512 and 4096.

@pytest.mark.parametrize("sector", [512, 4096])
@pytest.mark.parametrize("dio", ["buffered", "direct-io"])
@pytest.mark.parametrize("mode", DATA_MODES)
def test_ext4_roundtrip(mount_factory, tmp_path, mode, dio, sector):
    size = 256 * MiB
    mnt = start(mount_factory, mode, "256M")
    disk = mnt.disk("ram0")
    opts = ["--sector-size", str(sector)]
    if dio == "direct-io":
        opts.append("--direct-io=on")
    fsdir = tmp_path / "fs"

    with loop_device(disk, *opts) as dev:
        info = loop_info(dev)
        assert int(info["log-sec"]) == sector, info
        assert flag(info["dio"]) == (dio == "direct-io"), info
        assert blockdev_size(dev) == size
        mkfs_ext4(dev)
        with mounted_fs(dev, fsdir) as fs:
            sums = populate(fs, big_mib=32, small=64)
        assert not is_mounted(fsdir)
        fsck_clean(dev)
        with mounted_fs(dev, fsdir) as fs:
            check_sums(fs, sums)
            more = os.urandom(8 * MiB)
            create_file(fs / "after-remount.bin", more)
        fsck_clean(dev)
        device_sum = sha256_file(dev)

    # Detached: the disk file holds exactly what the loop device showed, read
    # from the daemon (page cache of the disk file dropped), and a fresh loop
    # device finds the filesystem clean with every file intact.
    drop_file_cache(disk)
    assert sha256_file(disk) == device_sum
    with loop_device(disk, *opts) as dev:
        fsck_clean(dev)
        with mounted_fs(dev, fsdir, "-o", "ro") as fs:
            check_sums(fs, sums)
            assert sha256_file(fs / "after-remount.bin") == hashlib.sha256(more).hexdigest()


# ---------------------------------------------------------------------------
# 2. Partitions: losetup -P, an sfdisk table with two partitions.

@pytest.mark.parametrize("mode", DATA_MODES)
def test_partitions(mount_factory, tmp_path, mode):
    mnt = start(mount_factory, mode, "256M")
    disk = mnt.disk("ram0")
    table = "label: gpt\n,100M,L\n,,L\n"
    sums = {}

    with loop_device(disk, "-P") as dev:
        assert flag(loop_info(dev)["partscan"])
        run("sfdisk", "-q", dev, input=table)
        parts = wait_for_partitions(dev, 2)
        assert blockdev_size(parts[0]) == 100 * MiB
        assert 150 * MiB < blockdev_size(parts[1]) < 156 * MiB
        for i, part in enumerate(parts):
            mkfs_ext4(part, "-L", f"part{i + 1}")
        with contextlib.ExitStack() as stack:
            fss = [stack.enter_context(mounted_fs(p, tmp_path / f"p{i + 1}"))
                   for i, p in enumerate(parts)]
            for i, fs in enumerate(fss):
                sums[i] = populate(fs, big_mib=8 + 4 * i, small=16)
        for part in parts:
            fsck_clean(part)

    # losetup -d took the partitions with it.
    wait_for(lambda: not any(os.path.exists(p) for p in parts), 10,
             f"{parts} to go away after losetup -d")

    # The table lives in the disk: sfdisk reads it from the disk file itself.
    dump = run("sfdisk", "--dump", disk).stdout
    assert len([l for l in dump.splitlines() if l.startswith(str(disk))]) == 2, dump

    # A second loop device over the same disk finds both filesystems intact.
    with loop_device(disk, "-P") as dev:
        parts = wait_for_partitions(dev, 2)
        for i, part in enumerate(parts):
            fsck_clean(part)
            assert run("blkid", "-s", "LABEL", "-o", "value", part).stdout.strip() == f"part{i + 1}"
            with mounted_fs(part, tmp_path / f"p{i + 1}", "-o", "ro") as fs:
                check_sums(fs, sums[i])


# ---------------------------------------------------------------------------
# 3. Discard returns memory.

@pytest.mark.parametrize("mode", DATA_MODES)
def test_discard_returns_memory(mount_factory, tmp_path, mode):
    mnt = start(mount_factory, mode, "512M")
    disk = mnt.disk("ram0")
    with loop_device(disk) as dev:
        queue = f"/sys/block/{os.path.basename(dev)}/queue"
        with open(f"{queue}/discard_max_bytes") as f:
            assert int(f.read()) > 0, "the loop device offers no discard"
        mkfs_ext4(dev)
        journal = journal_ranges(dev)
        journal_size = sum(e - s for s, e in journal)

        def split():
            """(total, in the journal, outside the journal) bytes the disk holds."""
            total = allocated(mnt, "ram0")
            in_journal = overlap_bytes(data_ranges(disk), journal)
            return total, in_journal, total - in_journal

        with mounted_fs(dev, tmp_path / "fs") as fs:
            run("fstrim", fs)
            empty, empty_j, empty_rest = split()

            for i in range(8):  # 200 MiB
                create_file(fs / f"data{i}", os.urandom(25 * MiB))
            full = allocated(mnt, "ram0")
            assert full >= empty + 195 * MiB, (empty, full)
            # The three ways docs/losetup.md gives to watch it agree.
            assert mnt.disk("ram0").stat().st_blocks * 512 == full
            require_ctl()
            assert ctl_used(mnt, "ram0") == full

            for i in range(8):
                os.unlink(fs / f"data{i}")
            os.sync()
            out = run("fstrim", "-v", fs).stdout
            after, after_j, after_rest = split()
            print(f"mode {mode}: empty fs {empty} B ({empty_j} B of it journal), "
                  f"with 200 MiB {full} B, after rm+fstrim {after} B ({after_j} B of it "
                  f"journal, journal size {journal_size} B); {out.strip()}")
            # Everything fstrim can reach (all but the journal, whose blocks ext4
            # owns and rewrites in a circle) is back to the empty filesystem's
            # figure, within 10%; the journal holds at most its own size.
            assert after_rest <= empty_rest * 1.10, (
                f"after rm+fstrim the disk holds {after_rest} B outside the journal, "
                f"the empty filesystem held {empty_rest} B")
            assert after_j <= journal_size
            assert after <= empty * 1.10 + journal_size
        fsck_clean(dev)

        run("blkdiscard", "-f", dev)
        assert allocated(mnt, "ram0") == 0
        assert mnt.disk("ram0").stat().st_blocks == 0
        with open(dev, "rb") as f:
            assert f.read(MiB) == bytes(MiB)
    drop_file_cache(disk)
    with open(disk, "rb") as f:
        assert f.read(4 * MiB) == bytes(4 * MiB)


# ---------------------------------------------------------------------------
# 4. Online grow; shrinking an attached disk is refused.

@pytest.mark.parametrize("how", ["truncate", "control", "ramdiskctl"])
@pytest.mark.parametrize("mode", DATA_MODES)
def test_online_grow(mount_factory, tmp_path, mode, how):
    old, new = 128 * MiB, 320 * MiB
    mnt = start(mount_factory, mode, "128M")
    disk = mnt.disk("ram0")
    with loop_device(disk) as dev:
        mkfs_ext4(dev)
        with mounted_fs(dev, tmp_path / "fs") as fs:
            sums = populate(fs, big_mib=32, small=32)
            st = os.statvfs(fs)
            before = st.f_blocks * st.f_frsize

            # Shrinking while the loop device holds the disk: EBUSY, nothing changes.
            with pytest.raises(OSError) as e:
                os.truncate(disk, 64 * MiB)
            assert e.value.errno == errno.EBUSY
            with pytest.raises(OSError) as e:
                mnt.write_control("ram0", "size", text=f"{64 * MiB}\n")
            assert e.value.errno == errno.EBUSY
            res = run("truncate", "-s", "64M", disk, check=False)
            assert res.returncode != 0
            if how == "ramdiskctl":
                require_ctl()
                res = run(CTL, "resize", "ram0", "64M", mnt.path, check=False)
                assert res.returncode != 0 and "busy" in res.stderr.lower(), res.stderr
            assert disk.stat().st_size == old
            assert mnt.stats("ram0")["size"] == old
            assert blockdev_size(dev) == old

            # Grow while attached and mounted.
            if how == "truncate":
                run("truncate", "-s", str(new), disk)
            elif how == "control":
                mnt.write_control("ram0", "size", text=f"{new}\n")
            else:
                run(CTL, "resize", "ram0", f"{new >> 20}M", mnt.path)
            assert disk.stat().st_size == new
            assert mnt.stats("ram0")["size"] == new
            run("losetup", "-c", dev)
            assert blockdev_size(dev) == new
            res = run("resize2fs", dev, check=False, timeout=300)
            if res.returncode != 0 and not has_cap(CAP_SYS_RESOURCE):
                # Online ext4 resize needs CAP_SYS_RESOURCE (ext4_resize_begin);
                # a container's root may lack it. Resize offline instead.
                print(f"online resize2fs refused without CAP_SYS_RESOURCE: {res.stderr.strip()}")
                run("umount", fs)
                fix = fsck_repair(dev)
                assert fix.returncode == 0, fix.stdout
                run("resize2fs", dev, timeout=300)
                run("mount", dev, fs)
            else:
                assert res.returncode == 0, f"resize2fs: {res.stderr}"
            st = os.statvfs(fs)
            after = st.f_blocks * st.f_frsize
            assert after >= before + (new - old) * 9 // 10, (before, after)

            # The new space is usable: this would not have fit before.
            extra = os.urandom(160 * MiB)
            create_file(fs / "extra.bin", extra)
            sums["extra.bin"] = hashlib.sha256(extra).hexdigest()
            del extra
            with explain_on_failure(dev, fs):
                check_sums(fs, sums)
        fsck_clean(dev)
        with mounted_fs(dev, tmp_path / "fs", "-o", "ro") as fs:
            check_sums(fs, sums)


# ---------------------------------------------------------------------------
# 5. Read-only disk -> read-only loop device.

@pytest.mark.parametrize("mode", DATA_MODES)
def test_readonly_disk(mount_factory, tmp_path, mode):
    size = 128 * MiB
    mnt = start(mount_factory, mode, "128M")
    disk = mnt.disk("ram0")
    with loop_device(disk) as dev:
        mkfs_ext4(dev)
        with mounted_fs(dev, tmp_path / "fs") as fs:
            sums = populate(fs, big_mib=16, small=16)
        fsck_clean(dev)
    drop_file_cache(disk)
    image = sha256_file(disk)

    mnt.write_control("ram0", "readonly", text="1\n")
    assert mnt.read_control("ram0", "readonly").strip() == "1"
    assert mnt.stats("ram0")["readonly"] == 1
    # The disk file itself refuses writes (last page: outside the filesystem's
    # metadata, so a daemon that wrongly accepts it breaks only the checksum).
    assert try_write(disk, size - 4096) == errno.EROFS

    with loop_device(disk) as dev:  # no -r: losetup must notice by itself
        info = loop_info(dev)
        assert flag(info["ro"]), f"read-only disk gave a writable loop device: {info}"
        assert run("blockdev", "--getro", dev).stdout.strip() == "1"
        res = run("dd", "if=/dev/zero", f"of={dev}", "bs=4096", "count=1",
                  f"seek={size // 4096 - 1}", "oflag=direct", check=False)
        assert res.returncode != 0, "a write to the read-only loop device succeeded"
        assert run("mkfs.ext4", "-q", "-F", dev, check=False).returncode != 0
        fsck_clean(dev)
        # Plain `mount` (no -o ro) sees the write-protected device and mounts
        # read-only by itself.
        with mounted_fs(dev, tmp_path / "fs") as fs:
            with open("/proc/self/mounts") as f:
                opts = [l.split()[3] for l in f if l.split()[1] == str(fs)]
            assert opts and opts[0].split(",")[0] == "ro", opts
            check_sums(fs, sums)
            with pytest.raises(OSError) as e:
                create_file(fs / "new", b"x")
            assert e.value.errno == errno.EROFS
    drop_file_cache(disk)
    assert sha256_file(disk) == image, "data of the read-only disk changed"

    # Back to read-write: losetup gives a writable device again.
    mnt.write_control("ram0", "readonly", text="0\n")
    with loop_device(disk) as dev:
        assert not flag(loop_info(dev)["ro"])
        with mounted_fs(dev, tmp_path / "fs") as fs:
            check_sums(fs, sums)
            create_file(fs / "new", b"writable again")
        fsck_clean(dev)


# ---------------------------------------------------------------------------
# 6. Stress without loss: fio verify on ext4 on a loop device.

@pytest.mark.parametrize("variant", ["plain", "tight-cap", "direct-reader"])
@pytest.mark.parametrize("mode", DATA_MODES)
def test_stress_fio_verify(mount_factory, tmp_path, mode, variant):
    seconds = stress_seconds(mode)
    mnt = start(mount_factory, mode, "512M")
    disk = mnt.disk("ram0")
    with loop_device(disk) as dev:
        mkfs_ext4(dev)
        cap = None
        with mounted_fs(dev, tmp_path / "fs") as fs:
            # Lay the files out first (fio writes them in full), then run.
            report, res = fio_verify(fs, 0, create_only=True)
            assert res.returncode == 0, res.stderr
            if variant == "tight-cap":
                os.sync()
                used = mnt.stats()["memory_used"]
                # What the filesystem still needs: its whole journal (mkfs did
                # not write it) and a little metadata; nothing else grows.
                cap = used + journal_bytes(dev) + 16 * MiB
                mnt.write_control("max_memory", text=f"{cap}\n")
                assert mnt.stats()["max_memory"] == cap
            reader = (direct_reader(disk, tmp_path / "reader.txt")
                      if variant == "direct-reader" else contextlib.nullcontext())
            with reader as outcome:
                report, res = fio_verify(fs, seconds)
            read, written = assert_fio_clean(report, res)
            print(f"mode {mode} {variant} {seconds}s: fio read {read >> 20} MiB, "
                  f"wrote {written >> 20} MiB")
            if variant == "direct-reader":
                status, nbytes = outcome()
                print(f"direct reader: {status}, {nbytes >> 20} MiB")
                assert status.startswith("exit 0: ok"), status
                assert nbytes >= 512 * MiB, f"the reader did not read the disk once: {status}"
            if cap is not None:
                g = mnt.stats()
                print(f"cap {cap >> 20} MiB, memory used after the run {g['memory_used'] >> 20} MiB")
                assert g["memory_used"] <= cap, g
        fsck_clean(dev)
    assert mnt.proc.poll() is None


# ---------------------------------------------------------------------------
# 7. The memory cap is reached under a filesystem.

@pytest.mark.parametrize("mode", DATA_MODES)
def test_cap_reached_under_ext4(mount_factory, tmp_path, mode):
    cap = 160 * MiB
    mnt = start(mount_factory, mode, "512M", "--max-memory", str(cap))
    assert mnt.stats()["max_memory"] == cap
    disk = mnt.disk("ram0")
    fsdir = tmp_path / "fs"
    early = {}
    with loop_device(disk) as dev:
        mkfs_ext4(dev)
        with mounted_fs(dev, fsdir) as fs:
            for i in range(4):
                data = os.urandom(8 * MiB)
                create_file(fs / f"early{i}", data)
                early[f"early{i}"] = hashlib.sha256(data).hexdigest()
            os.sync()
            used = mnt.stats()["memory_used"]
            assert used < cap - 64 * MiB, f"no room left to fill: {used}"

            # Fill ext4 (which believes it has ~480 MiB free) past the cap.
            fill = run("dd", "if=/dev/urandom", f"of={fs}/fill", "bs=1M", "count=400",
                       "conv=fsync", check=False, timeout=600)
            sync = run("sync", check=False, timeout=300)
            print(f"mode {mode}: dd exit {fill.returncode}: {fill.stderr.strip()!r}; "
                  f"sync exit {sync.returncode}")
            assert fill.returncode != 0, "writing 400 MiB past a 160 MiB cap succeeded"
            # ENOSPC from the daemon reaches ext4 as a write error of the loop
            # device; what dd then sees depends on when ext4 notices: ENOSPC or
            # EIO from fsync, or EROFS once ext4 has aborted its journal.
            assert re.search(r"No space left on device|Input/output error|Read-only file system",
                             fill.stderr), fill.stderr

            # The daemon is up and answers; the cap held.
            assert mnt.proc.poll() is None, f"daemon died:\n{mnt.log()}"
            g = mnt.stats()
            print(f"global stats after the cap hit: {g}")
            assert g["memory_used"] <= cap, g
            assert g["memory_used"] >= cap - 16 * MiB, f"cap not reached? {g}"
            assert allocated(mnt, "ram0") <= cap
            with open(disk, "rb") as f:
                assert len(f.read(MiB)) == MiB
            with open("/proc/self/mounts") as f:
                opts = [l.split()[3] for l in f if l.split()[1] == str(fs)]
            print(f"ext4 mount options after the cap hit: {opts}")
            res = run("umount", fs, check=False, timeout=300)
            assert res.returncode == 0, f"umount of the ext4 failed after the cap hit: {res.stderr}"
        assert not is_mounted(fsdir), "umount of the ext4 failed after the cap hit"

        waited = wait_device_free(dev)
        print(f"the loop device was free {waited:.1f} s after umount")

        # What e2fsck says before anything is repaired (informational: the file
        # being written when the cap hit is expected to be damaged).
        before = run("e2fsck", "-fn", dev, check=False, timeout=300)
        print(f"e2fsck -fn after the cap hit: exit {before.returncode}")
        print(before.stdout[-2000:])

        # Recovery: give the disk room (raise the cap), repair, check.
        mnt.write_control("max_memory", text="1G\n")  # as `echo 1G > .../max_memory`
        assert mnt.stats()["max_memory"] == GiB
        fix = fsck_repair(dev)
        print(f"e2fsck -fy after raising the cap: exit {fix.returncode}")
        print(fix.stdout[-2000:])
        assert fix.returncode in (0, 1, 2), f"e2fsck -fy exit {fix.returncode}:\n{fix.stdout}"
        fsck_clean(dev)
        with mounted_fs(dev, fsdir) as fs:
            for name, want in early.items():
                assert sha256_file(fs / name) == want, f"{name} changed"
            if (fs / "fill").exists():
                os.unlink(fs / "fill")
            run("fstrim", fs)
            data = os.urandom(32 * MiB)
            create_file(fs / "after", data)
            assert sha256_file(fs / "after") == hashlib.sha256(data).hexdigest()
        fsck_clean(dev)
    assert mnt.proc.poll() is None


# ---------------------------------------------------------------------------
# 8. Sixteen disks (brd's default rd_nr) on sixteen loop devices at once.

@pytest.mark.parametrize("mode", DATA_MODES)
def test_sixteen_disks(mount_factory, tmp_path, mode):
    require_loop()
    n = 16
    names = [f"ram{i}" for i in range(n)]
    mnt = mount_factory("--disks", str(n), "--size", "64M", "--mode", mode, wait_disks=names)
    for name in names:
        assert mnt.stats(name)["mode"] == mode
    sums = {}
    with contextlib.ExitStack() as stack:
        devs = [stack.enter_context(loop_device(mnt.disk(name))) for name in names]
        assert len(set(devs)) == n, devs
        listed = run("losetup", "--list", "--noheadings", "--output", "BACK-FILE").stdout
        for name in names:
            assert str(mnt.disk(name)) in listed.split()
        for dev in devs:
            mkfs_ext4(dev)
        with contextlib.ExitStack() as mounts:
            fss = [mounts.enter_context(mounted_fs(dev, tmp_path / f"fs{i}"))
                   for i, dev in enumerate(devs)]
            for i, fs in enumerate(fss):
                data = os.urandom(2 * MiB + i * 4096)
                create_file(fs / "data", data)
                sums[i] = {"data": hashlib.sha256(data).hexdigest()}
        for dev in devs:
            fsck_clean(dev)
        for i, dev in enumerate(devs):
            with mounted_fs(dev, tmp_path / f"fs{i}", "-o", "ro") as fs:
                check_sums(fs, sums[i])


# ---------------------------------------------------------------------------
# 9. Teardown.

def _responsive(path, timeout=10):
    try:
        subprocess.run(["stat", str(path)], capture_output=True, timeout=timeout)
        return True
    except subprocess.TimeoutExpired:
        return False


@pytest.mark.parametrize("mode", DATA_MODES)
def test_teardown_refused_while_attached(mount_factory, tmp_path, mode):
    """fusermount3 -u and umount are refused (busy); SIGTERM is deferred with
    a log line; the daemon keeps serving; after losetup -d it exits 0."""
    mnt = start(mount_factory, mode, "128M")
    disk = mnt.disk("ram0")
    conn = fuse_connection_id(mnt.path)
    try:
        with loop_device(disk) as dev:
            mkfs_ext4(dev)
            with mounted_fs(dev, tmp_path / "fs") as fs:
                sums = populate(fs, big_mib=8, small=16)

                res = run("fusermount3", "-u", mnt.path, check=False, timeout=60)
                assert res.returncode != 0, "fusermount3 -u succeeded under a loop device"
                assert "busy" in res.stderr.lower(), res.stderr
                res = run("umount", mnt.path, check=False, timeout=60)
                assert res.returncode != 0, "umount succeeded under a loop device"
                assert "busy" in res.stderr.lower(), res.stderr
                assert is_mounted(mnt.path) and mnt.proc.poll() is None

                logged = len(mnt.log())
                mnt.proc.send_signal(signal.SIGTERM)  # the unmount is deferred
                time.sleep(2)
                assert mnt.proc.poll() is None, f"daemon exited under a loop device:\n{mnt.log()}"
                assert is_mounted(mnt.path)
                log = mnt.log()[logged:]
                assert re.search(r"busy|in use", log, re.I), (
                    f"no message saying why the unmount waits:\n{mnt.log()}")
                print("daemon log after SIGTERM:\n" + log[-1000:])

                # Still serving: the filesystem on the loop device keeps working.
                data = os.urandom(4 * MiB)
                create_file(fs / "after-sigterm", data)
                sums["after-sigterm"] = hashlib.sha256(data).hexdigest()
                run("sync", timeout=60)
            fsck_clean(dev)
            with mounted_fs(dev, tmp_path / "fs", "-o", "ro") as fs:
                check_sums(fs, sums)
        # losetup -d done: the deferred unmount now completes by itself.
        wait_for(lambda: mnt.proc.poll() is not None, 30, "daemon exit after losetup -d")
        assert mnt.proc.returncode == 0, f"daemon exit status {mnt.proc.returncode}:\n{mnt.log()}"
        assert not is_mounted(mnt.path)
    except BaseException:
        if mnt.proc.poll() is None and is_mounted(mnt.path) and not _responsive(mnt.path):
            abort_fuse(conn)  # a hung daemon must not hang the teardown too
        raise


@pytest.mark.parametrize("mode", DATA_MODES)
def test_teardown_in_order(mount_factory, tmp_path, mode):
    """umount the filesystem, losetup -d, then fusermount3 -u: the documented
    order works first time and the daemon exits 0."""
    mnt = start(mount_factory, mode, "128M")
    disk = mnt.disk("ram0")
    with loop_device(disk) as dev:
        mkfs_ext4(dev)
        with mounted_fs(dev, tmp_path / "fs") as fs:
            populate(fs, big_mib=8, small=8)
        fsck_clean(dev)
    # leaving loop_device() ran `losetup -d DEV`
    assert str(disk) not in run("losetup", "--list", "--noheadings", "--output",
                                "BACK-FILE").stdout.split()
    res = run("fusermount3", "-u", mnt.path, check=False, timeout=60)
    assert res.returncode == 0, f"fusermount3 -u after losetup -d: {res.stderr}"
    mnt.proc.wait(timeout=30)
    assert mnt.proc.returncode == 0, mnt.log()
    assert not is_mounted(mnt.path)
