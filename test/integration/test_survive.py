"""SPEC 13 / issue 13: the daemon survives its own crash (--supervise).

A supervisor holds the mount, /dev/fuse and the store; a worker serves. These
tests kill the worker with SIGKILL while ext4 on a loop device over a disk is
being written and verified by fio, and require what a brd user would get: no
I/O error seen by fio or in the kernel log, an fsck-clean filesystem, every
verified byte intact, and a mount that never answers ENOTCONN. The same
scenario against the unsupervised daemon must fail, which shows the checks can.
"""

import errno
import os
import pathlib
import random
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time

import pytest

from support.blockdev import (assert_fio_clean, fsck_clean, loop_device, mkfs_ext4,
                              mounted_fs, unmount)
from support.io import pattern, sha
from support.mounts import is_mounted, run, wait_exit, wait_for

SUPERVISE = ("--supervise", "--transport", "dev")


def worker_pid(mnt):
    """The supervisor's (mnt.proc's) child: the worker serving right now, or None."""
    try:
        children = pathlib.Path(f"/proc/{mnt.proc.pid}/task/{mnt.proc.pid}/children").read_text()
    except OSError:
        return None
    pids = [int(p) for p in children.split()]
    return pids[0] if pids else None


def kill_worker(mnt, timeout=10):
    """SIGKILL to the worker (a child of the supervisor this test started), then waits
    until another worker has taken over. Returns the new worker's pid."""
    old = wait_for(lambda: worker_pid(mnt), timeout, "a worker")
    os.kill(old, signal.SIGKILL)
    return wait_for(lambda: (worker_pid(mnt) or old) != old and worker_pid(mnt), timeout,
                    "the next worker")


def took_over(mnt, count):
    return mnt.log().count(" took over (restart ") >= count


class MountWatcher:
    """stat()s the mount point every 10 ms in a thread; records every error (ENOTCONN is
    what a dead FUSE server looks like)."""

    def __init__(self, path):
        self.path = path
        self.errors = []
        self.stats = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                os.stat(self.path / "ram0")
                self.stats += 1
            except OSError as e:
                self.errors.append(e.strerror)
            time.sleep(0.01)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def _dmesg():
    """(timestamp, text) of each kernel log line (the ring buffer rotates: count no lines)."""
    lines = []
    for line in run("dmesg", check=False).stdout.splitlines():
        m = re.match(r"\[\s*(\d+\.\d+)\]\s?(.*)", line)
        if m:
            lines.append((float(m.group(1)), m.group(2)))
    return lines


def kernel_log_mark():
    lines = _dmesg()
    return lines[-1][0] if lines else 0.0


def kernel_errors_since(mark, loop):
    """Error lines about `loop` (or the ext4 on it) logged after `mark`."""
    name = re.compile(rf"\b{re.escape(os.path.basename(loop))}\b")
    return [text for ts, text in _dmesg() if ts > mark and name.search(text) and
            re.search(r"error|I/O|abort", text, re.IGNORECASE)]


def fio_under_kills(mnt, tmp_path, kills, seconds, gap, kill):
    """ext4 on a loop device over ram0, fio --verify=crc32c for `seconds`, `kills` calls of
    `kill(mnt)` at random moments at least `gap` s apart. Returns (fio report, fio result,
    kernel errors, mount watcher errors, e2fsck status)."""
    with loop_device(mnt.disk("ram0")) as loop:
        mkfs_ext4(loop)
        with mounted_fs(loop, tmp_path / "ext4") as fsdir:
            mark = kernel_log_mark()
            args = ["fio", "--name=stress", f"--directory={fsdir}", "--numjobs=2", "--size=48M",
                    "--rw=randrw", "--rwmixread=50", "--bs=4k", "--ioengine=libaio",
                    "--iodepth=8", "--direct=1", "--verify=crc32c", "--verify_fatal=1",
                    "--verify_backlog=1024", "--verify_state_save=0", "--group_reporting",
                    "--output-format=json", "--time_based", f"--runtime={seconds}"]
            with MountWatcher(mnt.path) as watcher:
                fio = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       text=True, cwd=fsdir)
                try:
                    time.sleep(1.5)  # fio lays out its files first
                    for _ in range(kills):
                        time.sleep(gap * random.uniform(1.0, 1.5))
                        if fio.poll() is not None:
                            break
                        kill(mnt)
                    out, err = fio.communicate(timeout=seconds + 120)
                finally:
                    if fio.poll() is None:
                        fio.kill()
                        fio.communicate()
            res = subprocess.CompletedProcess(args, fio.returncode, out, err)
            import json
            try:
                report = json.loads(out[out.find("{"):]) if "{" in out else {}
            except ValueError:
                report = {}
            errors = kernel_errors_since(mark, loop)
        fsck = run("e2fsck", "-fn", loop, check=False, timeout=300)
    return report, res, errors, watcher.errors, fsck


def runtime_for(kills, gap, one_kill_s):
    """fio's run time for `kills` calls `gap` to 1.5 x `gap` apart that take `one_kill_s`
    each when idle, so that every kill lands while fio runs. Measured: the ASan daemon
    takes ten times longer to start a worker, and under fio a dax upgrade took up to 2.2
    times what one took idle (17 of 20 fitted with a 1.5 allowance), hence 3."""
    return int(1.5 + kills * (gap * 1.25 + one_kill_s * 3)) + 4


def timed(fn, *args):
    started = time.monotonic()
    fn(*args)
    return time.monotonic() - started


# Kills per run: 4 by default (about 15 s a mode); the 20 with
# RAMDISKFS_SURVIVE_KILLS=20. Kills stay 2.6 s apart or more, so that five never
# fall within 10 s (that would be a crash loop, which stops the restarts).
KILLS = int(os.environ.get("RAMDISKFS_SURVIVE_KILLS", "4"))
KILL_GAP = 2.6


def assert_invisible(report, res, kernel_errors, mount_errors, fsck):
    """What fio_under_kills saw: nothing (no fio or verify error, no kernel I/O error, the
    mount always answered, e2fsck -fn clean)."""
    assert_fio_clean(report, res)
    assert kernel_errors == [], f"kernel log: {kernel_errors}"
    assert mount_errors == [], f"the mount answered {set(mount_errors)}"
    assert fsck.returncode == 0, f"e2fsck -fn: {fsck.stdout}{fsck.stderr}"


def stalls(mnt):
    """The stall of each restart so far, in ms, from the log."""
    return [int(m) for m in re.findall(r" took over \(restart \d+\): .*?; (-?\d+) ms since",
                                       mnt.log())]


@pytest.mark.parametrize("mode", ["dax", "direct", "cached"])
def test_worker_killed_under_ext4_and_fio_is_invisible(mount_factory, tmp_path, mode):
    mnt = mount_factory(*SUPERVISE, "--disk", f"ram0:256M:mode={mode}", wait_disks=["ram0"])
    kills = KILLS
    report, res, kernel_errors, mount_errors, fsck = fio_under_kills(
        mnt, tmp_path, kills=kills, seconds=int(kills * KILL_GAP * 1.25) + 4, gap=KILL_GAP,
        kill=kill_worker)
    ms = sorted(stalls(mnt))
    print(f"{mode}: {len(ms)} restarts, stall ms min {ms[0]} median {ms[len(ms) // 2]} "
          f"max {ms[-1]}; fio {res.returncode}")
    assert_invisible(report, res, kernel_errors, mount_errors, fsck)
    disk = mnt.stats("ram0")
    assert disk["mode"] == mode, disk  # dax really is passthrough here, also after restarts
    assert disk["opens"] == 0, disk    # the loop device's open was counted once, and released
    if mode == "dax":
        assert disk["passthrough"] == 1, disk
    stats = mnt.stats()
    assert stats["restarts"] == kills, mnt.log()
    assert 0 <= stats["last_stall_ms"] < 1000
    # The log says what happened, once per restart.
    assert mnt.log().count("was killed by Killed; starting worker") == kills
    assert took_over(mnt, kills)


def kill_daemon(mnt):
    os.kill(mnt.proc.pid, signal.SIGKILL)


def test_the_same_kill_breaks_an_unsupervised_daemon(mount_factory, tmp_path):
    """The check above can fail: without --supervise one SIGKILL is an I/O error for the
    loop device, a read-only ext4 and a dead mount."""
    mnt = mount_factory("--transport", "dev", "--disk", "ram0:256M:mode=direct",
                        wait_disks=["ram0"])
    report, res, kernel_errors, mount_errors, fsck = fio_under_kills(
        mnt, tmp_path, kills=1, seconds=6, gap=1.0, kill=kill_daemon)
    failed = []
    try:
        assert_fio_clean(report, res)
    except AssertionError:
        failed.append("fio")
    if kernel_errors:
        failed.append("kernel log")
    if mount_errors:
        failed.append("mount")
    assert "fio" in failed and "kernel log" in failed and "mount" in failed, (failed, res.stderr)
    assert "Transport endpoint is not connected" in set(mount_errors)


def test_data_handles_and_table_survive_a_restart(mount_factory):
    mnt = mount_factory(*SUPERVISE, "--disk", "ram0:16M:mode=direct", wait_disks=["ram0"])
    data = pattern(1 << 20, seed=13)
    with open(mnt.disk("ram0"), "r+b", buffering=0) as f:
        f.write(data)
        ino = os.fstat(f.fileno()).st_ino
        mnt.write_control("new", text="scratch 1M mode=direct")
        os.chmod(mnt.disk("scratch"), 0o640)
        scratch_ino = os.stat(mnt.disk("scratch")).st_ino
        stats_fd = os.open(mnt.ctl("stats"), os.O_RDONLY)
        try:
            kill_worker(mnt)
            wait_for(lambda: took_over(mnt, 1), 10, "the takeover")
            # The handle opened before the kill still works, for reads and writes.
            f.seek(0)
            assert sha(f.read(len(data))) == sha(data)
            f.seek(4096)
            f.write(b"after")
            # So does an open control file (its content is made again).
            assert b"restarts" in os.pread(stats_fd, 4096, 0)
        finally:
            os.close(stats_fd)
        assert os.fstat(f.fileno()).st_ino == ino
    assert os.stat(mnt.disk("scratch")).st_ino == scratch_ino
    assert os.stat(mnt.disk("scratch")).st_mode & 0o777 == 0o640
    # The open counted again after the restart was released by its close.
    assert mnt.stats("ram0")["opens"] == 0
    with open(mnt.disk("ram0"), "rb") as f:
        f.seek(4096)
        assert f.read(5) == b"after"
    # A disk made after the restart gets a new inode number, never an old one.
    mnt.write_control("new", text="later 1M")
    assert os.stat(mnt.disk("later")).st_ino not in (ino, scratch_ino)
    mnt.write_control("delete", text="scratch")
    assert not mnt.disk("scratch").exists()
    assert mnt.stats()["restarts"] == 1


def test_five_deaths_in_ten_seconds_stop_the_restarts(mount_factory):
    mnt = mount_factory(*SUPERVISE, "--disk", "ram0:16M:mode=direct", wait_disks=["ram0"])
    for i in range(4):
        kill_worker(mnt)
        wait_for(lambda: took_over(mnt, i + 1), 10, "the takeover")
    os.kill(worker_pid(mnt), signal.SIGKILL)
    wait_for(lambda: "no more restarts" in mnt.log(), 10, "the supervisor giving up")
    time.sleep(0.3)
    assert worker_pid(mnt) is None
    assert is_mounted(mnt.path)  # the mount and the disks' memory stay
    mnt.proc.send_signal(signal.SIGTERM)
    assert wait_exit(mnt.proc) == 0
    assert not is_mounted(mnt.path)


def test_sigterm_to_the_supervisor_unmounts_and_ends_the_worker(mount_factory):
    mnt = mount_factory(*SUPERVISE, "--disk", "ram0:16M", wait_disks=["ram0"])
    worker = wait_for(lambda: worker_pid(mnt), 10, "a worker")
    mnt.proc.send_signal(signal.SIGTERM)
    assert wait_exit(mnt.proc) == 0
    assert not is_mounted(mnt.path)
    assert not os.path.exists(f"/proc/{worker}")


def test_supervise_refuses_the_uring_transport(mount_factory, tmp_path):
    from support.mounts import BIN, run_expect_exit
    (tmp_path / "m").mkdir()
    code, _, err = run_expect_exit([BIN, tmp_path / "m", "-f", "--supervise", "--transport",
                                    "uring"])
    assert code == 1 and "--transport dev" in err


def sighup_upgrade(mnt, timeout=10):
    """SIGHUP to the supervisor; waits for the next worker. Returns its pid."""
    old = wait_for(lambda: worker_pid(mnt), timeout, "a worker")
    before = mnt.log().count(" took over (restart ")
    mnt.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: mnt.log().count(" took over (restart ") > before, timeout, "the upgrade")
    return worker_pid(mnt)


def test_sighup_upgrades_the_worker_to_the_installed_binary(tmp_path):
    """The binary at the supervisor's path is replaced (as a package upgrade does: a new
    file renamed over the old); SIGHUP makes the next worker run it, with ext4 + fio
    running on a dax disk, and nothing notices."""
    from support.mounts import BIN, start_mount, teardown_mount
    installed = tmp_path / "bin" / "ramdiskfs"
    installed.parent.mkdir()
    shutil.copy2(BIN, installed)
    mnt = start_mount(tmp_path / "mnt", tmp_path / "log", *SUPERVISE, "--disk",
                      "ram0:256M:mode=dax", wait_disks=["ram0"], binary=installed)
    try:
        old_worker = worker_pid(mnt)
        old_ino = os.stat(f"/proc/{old_worker}/exe").st_ino
        fresh = tmp_path / "bin" / "ramdiskfs.new"
        shutil.copy2(BIN, fresh)
        os.rename(fresh, installed)
        upgrades = 10
        one = timed(sighup_upgrade, mnt)  # how long one takes here (and it counts)
        report, res, kernel_errors, mount_errors, fsck = fio_under_kills(
            mnt, tmp_path, kills=upgrades, seconds=runtime_for(upgrades, 0.5, one), gap=0.5,
            kill=sighup_upgrade)
        upgrades += 1
        assert_fio_clean(report, res)
        assert kernel_errors == [], f"kernel log: {kernel_errors}"
        assert mount_errors == [], f"the mount answered {set(mount_errors)}"
        assert fsck.returncode == 0, f"e2fsck -fn: {fsck.stdout}{fsck.stderr}"
        new_worker = worker_pid(mnt)
        assert os.stat(f"/proc/{new_worker}/exe").st_ino == os.stat(installed).st_ino != old_ino
        assert mnt.stats()["restarts"] == upgrades
        assert "no more restarts" not in mnt.log()  # upgrades are not deaths
        ms = sorted(stalls(mnt))
        print(f"upgrades: {len(ms)}, stall ms min {ms[0]} median {ms[len(ms) // 2]} max {ms[-1]}")
    finally:
        teardown_mount(mnt)


@pytest.mark.parametrize("point", ["open-recorded", "open-replied"])
@pytest.mark.parametrize("how", ["open", "create"])
def test_an_open_cut_short_by_a_crash_is_counted_once(mount_factory, monkeypatch, point, how):
    """The first worker aborts right after recording an open (its reply never reaches
    the kernel, which resends the OPEN or CREATE) or right after the reply (the kernel
    holds the handle, nothing is resent). Either way the open is counted once: it is 1
    while the file is open, 0 after close, and the disk can then be deleted."""
    monkeypatch.setenv("RAMDISKFS_CRASH_POINT", point)
    mnt = mount_factory(*SUPERVISE, "--mode", "direct", "--disk", "ram0:16M", wait_disks=["ram0"])
    name = "ram0" if how == "open" else "fresh"
    flags = os.O_RDWR | (os.O_CREAT | os.O_EXCL if how == "create" else 0)
    fd = os.open(mnt.disk(name), flags, 0o600)  # the worker dies inside this call
    try:
        wait_for(lambda: took_over(mnt, 1), 10, "the takeover")
        assert "was killed by Aborted" in mnt.log()
        os.pwrite(fd, b"still works", 0)
        assert mnt.stats(name)["opens"] == 1
    finally:
        os.close(fd)
    wait_for(lambda: mnt.stats(name)["opens"] == 0, 5, "the release")
    mnt.write_control("delete", text=name)
    assert not mnt.disk(name).exists()


@pytest.mark.parametrize("mode", ["dax", "direct", "cached"])
def test_random_operations_against_a_shadow_survive_kills(mount_factory, mode):
    """An fsx-like verifier: random pwrite, pread, O_DIRECT write and read, hole punch and
    shared-mmap stores and loads on ram0, each checked against a shadow copy, with fds
    kept open (and new ones opened) across worker kills. Every byte must match, every
    call must succeed."""
    from support.io import fallocate, mmap_read, mmap_write, odirect_pread, odirect_pwrite
    size = 4 << 20
    mnt = mount_factory(*SUPERVISE, "--disk", f"ram0:{size}:mode={mode}", wait_disks=["ram0"])
    path = mnt.disk("ram0")
    shadow = bytearray(size)
    rng = random.Random(13)
    kills = max(3, KILLS // 2)
    stop = threading.Event()
    killer_errors = []

    def killer():
        try:
            for _ in range(kills):
                if stop.wait(KILL_GAP * rng.uniform(1.0, 1.3)):
                    return
                kill_worker(mnt)
        except Exception as e:  # reported by the main thread
            killer_errors.append(e)

    thread = threading.Thread(target=killer)
    fd = os.open(path, os.O_RDWR)
    ops = 0
    thread.start()
    try:
        while thread.is_alive() or ops < 200:
            op = rng.choice(["write", "read", "dwrite", "dread", "punch", "mwrite", "mread"])
            if op in ("dwrite", "dread", "punch", "mread"):
                off = rng.randrange(0, size // 4096) * 4096
                length = min(rng.randrange(1, 64) * 4096, size - off)
            else:
                off = rng.randrange(0, size - 1)
                length = min(rng.randrange(1, 200000), size - off)
            if op == "write":
                data = rng.randbytes(length)
                assert os.pwrite(fd, data, off) == length
                shadow[off:off + length] = data
            elif op == "read":
                assert os.pread(fd, length, off) == shadow[off:off + length], (op, off, length)
            elif op == "dwrite":
                data = rng.randbytes(length)
                odirect_pwrite(path, data, off)
                shadow[off:off + length] = data
            elif op == "dread":
                assert odirect_pread(path, length, off) == shadow[off:off + length], (op, off)
            elif op == "punch":
                fallocate(fd, 0x03, off, length)  # PUNCH_HOLE | KEEP_SIZE
                shadow[off:off + length] = bytes(length)
            elif op == "mwrite":
                data = rng.randbytes(length)
                mmap_write(path, data, off)
                shadow[off:off + length] = data
            else:
                assert mmap_read(path, length, off) == shadow[off:off + length], (op, off)
            ops += 1
    finally:
        stop.set()
        thread.join()
        os.close(fd)
    assert not killer_errors, killer_errors
    with open(path, "rb") as f:
        assert sha(f.read()) == sha(bytes(shadow))
    assert mnt.stats()["restarts"] == kills
    print(f"{mode}: {ops} operations, {kills} kills")


def test_kills_as_a_new_worker_starts_fail_no_request(mount_factory):
    """A worker killed in its first milliseconds, while the requests queued during the
    restart pour into its fresh threads, must not fail any of them. The kernel copies a
    request into the reader's buffer with get_user_pages, whose slow path (a page not yet
    present) gives up when a fatal signal is pending; the kernel then ends the request
    with EIO instead of leaving it to be resent (docs/survive.md, "What a kill could
    fail"). 24 threads do O_DIRECT reads and writes of 4 KiB to 1 MiB, each in its own
    region, checked against a shadow; each of four rounds kills the worker, then three
    times more, 2-15 ms after the next one appeared. Without the buffers touched up front,
    9 of 10 runs of three rounds failed (2-7 EIOs each); with them, none of 4."""
    import mmap
    region, threads, rounds, quick = 8 << 20, 24, 4, 3
    # Up to 32 worker threads, so that each new worker starts some 25 with fresh buffers.
    mnt = mount_factory(*SUPERVISE, "--threads", 32,
                        "--disk", f"ram0:{region * threads}:mode=direct", wait_disks=["ram0"])
    path = mnt.disk("ram0")
    stop = threading.Event()
    errors, done = [], []
    shadows = [bytearray(region) for _ in range(threads)]

    def io(index):
        rng = random.Random(index)
        base = index * region
        source = mmap.mmap(-1, 2 << 20)
        source[:] = rng.randbytes(len(source))
        into = mmap.mmap(-1, 1 << 20)
        shadow = shadows[index]
        fd = os.open(path, os.O_RDWR | os.O_DIRECT)
        ops = 0
        try:
            while not stop.is_set():
                n = rng.randrange(1, 257) * 4096
                off = rng.randrange(0, (region - n) // 4096 + 1) * 4096
                try:
                    if rng.random() < 0.7:
                        at = rng.randrange(0, 257) * 4096
                        data = memoryview(source)[at:at + n]
                        assert os.pwritev(fd, [data], base + off) == n
                        shadow[off:off + n] = data
                    else:
                        assert os.preadv(fd, [memoryview(into)[:n]], base + off) == n
                        assert into[:n] == shadow[off:off + n], (index, off, n)
                except OSError as e:
                    errors.append(f"{errno.errorcode.get(e.errno, e.errno)}: {n} bytes at "
                                  f"{base + off}")
                ops += 1
        except Exception as e:  # a wrong byte: reported by the main thread
            errors.append(repr(e))
        finally:
            os.close(fd)
            done.append(ops)

    workers = [threading.Thread(target=io, args=(i,)) for i in range(threads)]
    for t in workers:
        t.start()
    rng = random.Random(7)
    try:
        for r in range(rounds):
            # A worker dying five times within 10 s is not restarted: a round's four
            # deaths, and then a rest longer than the window.
            if r:
                time.sleep(10.5)
            kill_worker(mnt)
            for _ in range(quick):
                time.sleep(rng.uniform(0.002, 0.015))
                kill_worker(mnt)
    finally:
        stop.set()
        for t in workers:
            t.join()
    assert errors == [], f"{len(errors)} requests failed across the kills: {errors[:5]}"
    assert mnt.stats()["restarts"] == rounds * (1 + quick)
    with open(path, "rb") as f:
        for index, shadow in enumerate(shadows):
            f.seek(index * region)
            assert f.read(region) == shadow, f"region {index}"
    print(f"{sum(done)} operations, {rounds * (1 + quick)} kills")


def test_systemd_hears_ready_from_the_supervisor(mount_factory, monkeypatch, tmp_path):
    """Type=notify with NotifyAccess=main: READY=1 must come with the supervisor's pid
    (the main process), although the worker is the one that knows when INIT is done."""
    import socket
    import struct
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify.sock"))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    sock.settimeout(10)
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify.sock"))
    try:
        mnt = mount_factory(*SUPERVISE, "--disk", "ram0:16M", wait_disks=["ram0"])
        while True:
            data, anc, _, _ = sock.recvmsg(4096, socket.CMSG_SPACE(12))
            if b"READY=1" in data:
                break
        (pid,) = [struct.unpack("iII", p[:12])[0] for level, kind, p in anc
                  if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS]
        assert pid == mnt.proc.pid
    finally:
        sock.close()


@pytest.mark.parametrize("what", ["new", "delete", "mode", "mknod", "unlink"])
def test_a_change_cut_short_by_a_crash_is_done_once(mount_factory, monkeypatch, what):
    """The first worker aborts after making the change and recording its outcome, before
    the reply: the kernel resends the request, and the successor answers it from the
    record instead of doing it again (which would fail with EEXIST or ENOENT). The table
    then agrees with what the kernel was told."""
    monkeypatch.setenv("RAMDISKFS_CRASH_POINT", "request-done")
    mnt = mount_factory(*SUPERVISE, "--disk", "ram0:16M:mode=direct", wait_disks=["ram0"])
    if what == "new":
        mnt.write_control("new", text="made 1M")
        assert mnt.disk("made").exists()
    elif what == "delete":
        mnt.write_control("delete", text="ram0")
        assert not mnt.disk("ram0").exists()
    elif what == "mode":
        mnt.write_control("ram0", "mode", text="cached")
        assert mnt.stats("ram0")["mode"] == "cached"
    elif what == "mknod":
        os.mknod(mnt.disk("made"), 0o600 | stat.S_IFREG)
        assert mnt.disk("made").exists()
    else:
        os.unlink(mnt.disk("ram0"))
        assert not mnt.disk("ram0").exists()
    # The successor logs its takeover after the resend, which another of its threads
    # may already be answering.
    wait_for(lambda: took_over(mnt, 1), 10, "the takeover's log line")
    assert "was killed by Aborted" in mnt.log()
    assert mnt.stats()["disks"] == (2 if what in ("new", "mknod") else
                                    0 if what in ("delete", "unlink") else 1)


# Every control file a user can set on a disk (SPEC 5, 10, 11), and the global one.
SETTABLE = ["size", "readonly", "mode", "cache", "cache_size", "powercut_policy",
            "powercut_seed", "power", "powercut_log", "powercut_at_flush", "badblocks",
            "badblocks_once", "badblocks_partial", "errors", "fault_seed", "latency",
            "throttle", "flakey", "unflushed"]


def settings_of(mnt, names):
    shown = {name: {f: mnt.read_control(name, f) for f in SETTABLE} for name in names}
    shown["max_memory"] = mnt.read_control("max_memory")
    return shown


def test_every_setting_survives_a_restart_and_stays_in_effect(mount_factory):
    """Fault, cache and power settings made through the control files, on disks made on
    the command line and with `new`, read back the same after a worker kill, and act:
    the injected error still fires, a bad sector still fails, the dead drive stays dead
    and powers on to its post-cut image, the armed cut counts on, the flakey window and
    the throttle still hold. A volatile cache's unflushed writes become durable at the
    worker's death (docs/survive.md)."""
    mnt = mount_factory(*SUPERVISE, "--disk", "f0:4M:mode=direct", "--disk",
                        "c0:4M:mode=cached", wait_disks=["f0", "c0"])
    mnt.write_control("new", text="p0 4M mode=direct cache=volatile powercut_seed=3")
    mnt.write_control("new", text="r0 1M mode=direct")
    w = mnt.write_control
    w("f0", "badblocks", text="+64-71\n+200-300\n")
    w("f0", "badblocks_partial", text="1\n")
    w("f0", "errors", text="read 1 ETIMEDOUT\nflush 0.5 ENOSPC\n")
    w("f0", "fault_seed", text="77\n")
    w("f0", "latency", text="discard 100 20\n")
    w("f0", "throttle", text="write_iops 1000000 read_bandwidth 1G\n")
    w("f0", "flakey", text="600 1 error_writes\n")
    w("c0", "cache", text="volatile\n")
    w("c0", "cache_size", text="2M\n")
    w("c0", "powercut_policy", text="prefix\n")
    w("c0", "powercut_seed", text="12345\n")
    w("c0", "powercut_at_flush", text="3\n")
    w("c0", "badblocks", text="+0-0\n")
    w("c0", "badblocks_once", text="1\n")
    w("r0", "readonly", text="1\n")
    w("r0", "mode", text="cached\n")
    w("max_memory", text="512M\n")
    with open(mnt.disk("p0"), "r+b", buffering=0) as f:
        f.write(b"A" * 8192)
        os.fsync(f.fileno())
        f.seek(0)
        f.write(b"B" * 4096)  # unflushed: lost at the cut
    w("p0", "power", text="0\n")
    with open(mnt.disk("c0"), "r+b", buffering=0) as f:
        f.seek(4096)
        f.write(b"kept")  # unflushed when the worker dies
        os.fsync(f.fileno())  # counts the armed cut down: 2 flushes left
    names = ["f0", "c0", "p0", "r0"]
    before = settings_of(mnt, names)
    assert before["c0"]["powercut_at_flush"] == "2\n", before["c0"]
    assert before["p0"]["powercut_log"].strip(), before["p0"]
    assert before["c0"]["unflushed"] == "writes 0\nbytes 0\n"
    with open(mnt.disk("c0"), "r+b", buffering=0) as f:
        f.seek(8192)
        f.write(b"unflushed")
    assert mnt.read_control("c0", "unflushed") != before["c0"]["unflushed"]

    kill_worker(mnt)
    wait_for(lambda: took_over(mnt, 1), 10, "the takeover")

    after = settings_of(mnt, names)
    assert after == before, {n: {k: (before[n][k], after[n][k]) for k in before[n]
                                 if before[n][k] != after[n][k]}
                             for n in names if before[n] != after[n]}
    # ... and in effect.
    fd = os.open(mnt.disk("f0"), os.O_RDWR)
    try:
        with pytest.raises(OSError) as e:
            os.pread(fd, 512, 0)
        assert e.value.errno == errno.ETIMEDOUT  # the errors rule
        os.pwrite(fd, b"w" * 512, 0)  # writes pass: flakey is in its 600 s up window
    finally:
        os.close(fd)
    assert mnt.stats("f0")["injected_errors"] >= 1
    with open(mnt.disk("p0"), "rb", buffering=0) as f:
        with pytest.raises(OSError) as e:
            f.read(1)
        assert e.value.errno == errno.EIO  # the power is still off
    w("p0", "power", text="1\n")
    with open(mnt.disk("p0"), "rb") as f:
        assert f.read(8192) == b"A" * 8192  # the post-cut image
    assert mnt.stats("p0")["powercuts"] == 0  # putting the power state back is no cut
    with open(mnt.disk("c0"), "r+b", buffering=0) as f:
        with pytest.raises(OSError) as e:
            os.pwrite(f.fileno(), b"x", 0)  # sector 0 is bad; badblocks_once heals it
        assert e.value.errno == errno.EIO
        os.pwrite(f.fileno(), b"x", 0)
        f.seek(4096)
        assert f.read(4) == b"kept"
        f.seek(8192)
        assert f.read(9) == b"unflushed"  # the newest data: the death made it durable
        os.fsync(f.fileno())  # 1 left
        with pytest.raises(OSError) as e:
            os.fsync(f.fileno())  # the armed cut fires here, as it would have
        assert e.value.errno == errno.EIO
    assert mnt.read_control("c0", "power") == "0\n"
    assert mnt.read_control("c0", "badblocks") == ""
    with pytest.raises(OSError) as e:
        open(mnt.disk("r0"), "r+b").close()
    assert e.value.errno == errno.EROFS
    # What an I/O changed is carried too: a second restart keeps the healed sector
    # healed and the power off.
    kill_worker(mnt)
    wait_for(lambda: took_over(mnt, 2), 10, "the second takeover")
    assert mnt.read_control("c0", "badblocks") == ""
    assert mnt.read_control("c0", "power") == "0\n"
    assert mnt.read_control("c0", "powercut_at_flush") == "0\n"


# ---- ramdiskctl upgrade (SPEC 13) ----------------------------------------------------

def ctl_upgrade(mnt, *binary, check=True):
    from support.mounts import CTL
    res = run(CTL, "upgrade", *binary, "--mount", mnt.path, check=False, timeout=90)
    if check:
        assert res.returncode == 0 and " runs " in res.stdout, (res.stdout, res.stderr)
    return res


UPGRADES = int(os.environ.get("RAMDISKFS_SURVIVE_UPGRADES", "20"))


@pytest.mark.parametrize("mode", ["dax", "direct", "cached"])
def test_ramdiskctl_upgrade_under_ext4_and_fio_is_invisible(mount_factory, tmp_path, mode):
    """20 `ramdiskctl upgrade BINARY` under ext4 on a loop device with fio --verify: no
    fio or verify error, nothing in the kernel log, no ENOTCONN, e2fsck clean, and each
    upgrade answered only once the new worker serves."""
    from support.mounts import BIN
    mnt = mount_factory(*SUPERVISE, "--disk", f"ram0:256M:mode={mode}", wait_disks=["ram0"])
    started = time.monotonic()
    one = timed(ctl_upgrade, mnt, BIN)  # how long one takes here (and it counts)
    report, res, kernel_errors, mount_errors, fsck = fio_under_kills(
        mnt, tmp_path, kills=UPGRADES, seconds=runtime_for(UPGRADES, 0.5, one), gap=0.5,
        kill=lambda m: ctl_upgrade(m, BIN))
    ms = sorted(stalls(mnt))
    print(f"{mode}: {len(ms)} upgrades in {time.monotonic() - started:.1f} s, stall ms min "
          f"{ms[0]} median {ms[len(ms) // 2]} max {ms[-1]}")
    assert_invisible(report, res, kernel_errors, mount_errors, fsck)
    assert mnt.stats()["restarts"] == UPGRADES + 1, mnt.log()
    assert mnt.log().count("supervisor: upgrade: worker ") >= UPGRADES + 1
    assert "no more restarts" not in mnt.log()  # upgrades are not deaths
    assert mnt.stats("ram0")["mode"] == mode


def test_upgrade_refuses_bad_binaries_and_changes_nothing(mount_factory, tmp_path):
    from support.mounts import CTL

    def assert_ctl_error(res):
        lines = res.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("ramdiskctl: upgrade"), res.stderr
    mnt = mount_factory(*SUPERVISE, "--disk", "ram0:4M:mode=direct", wait_disks=["ram0"])
    worker = wait_for(lambda: worker_pid(mnt), 10, "a worker")
    plain = tmp_path / "plain"
    plain.write_text("not a program\n")
    script = tmp_path / "impostor"
    script.write_text("#!/bin/sh\necho hello\n")
    script.chmod(0o755)
    for binary, why in [(tmp_path / "missing", "No such file"),
                        (plain, "not executable"),
                        (tmp_path, "not a regular file"),
                        ("/bin/true", "is not ramdiskfs"),
                        (script, "is not ramdiskfs")]:
        res = ctl_upgrade(mnt, binary, check=False)
        assert res.returncode == 1 and why in res.stderr, (binary, res.stderr)
        assert_ctl_error(res)
    assert worker_pid(mnt) == worker  # nothing changed
    assert mnt.stats()["restarts"] == 0
    # A daemon without --supervise has no supervisor to ask.
    other = mount_factory("--disk", "ram0:4M", wait_disks=["ram0"])
    res = run(CTL, "upgrade", "--mount", other.path, check=False)
    assert res.returncode == 1 and "--supervise" in res.stderr, res.stderr
    assert len(res.stderr.splitlines()) == 1, res.stderr
    res = run(CTL, "upgrade", "--mount", tmp_path, check=False)
    assert res.returncode == 1 and "not a ramdiskfs mount" in res.stderr, res.stderr
    # The name is abstract: another user may have bound it first. ramdiskctl
    # does not talk to (or take descriptors from) such a socket.
    ready_r, ready_w = os.pipe()
    squatter = os.fork()
    if squatter == 0:
        try:
            os.close(ready_r)
            os.setgid(65534)
            os.setuid(65534)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            sock.bind(b"\0ramdiskfs-supervisor:" + os.fsencode(os.path.realpath(other.path)))
            sock.listen(4)
            os.write(ready_w, b"1")
            time.sleep(60)
        finally:
            os._exit(0)
    try:
        os.close(ready_w)
        assert os.read(ready_r, 1) == b"1"
        (tmp_path / "images").mkdir()
        for verb in (["upgrade"], ["save", str(tmp_path / "images")]):
            res = run(CTL, *verb, "--mount", other.path, check=False)
            assert res.returncode == 1 and "belongs to user 65534" in res.stderr, res.stderr
        assert not any((tmp_path / "images").iterdir())
    finally:
        os.kill(squatter, signal.SIGKILL)
        os.waitpid(squatter, 0)
        os.close(ready_r)


def test_an_upgrade_that_cannot_serve_brings_the_old_binary_back(mount_factory, tmp_path):
    """A binary that passes the checks but dies before it serves (here: one that cannot
    read the state) must not cost the mount: the previous binary is started again and
    ramdiskctl reports the failure."""
    from support.mounts import BIN
    mnt = mount_factory(*SUPERVISE, "--disk", "ram0:4M:mode=direct", wait_disks=["ram0"])
    data = pattern(1 << 20, seed=5)
    with open(mnt.disk("ram0"), "r+b") as f:
        f.write(data)
    broken = tmp_path / "broken"
    broken.write_text(f'#!/bin/sh\n[ "$1" = --version ] && exec "{BIN}" --version\nexit 3\n')
    broken.chmod(0o755)
    res = ctl_upgrade(mnt, broken, check=False)
    assert res.returncode == 1 and "before it served" in res.stderr, res.stderr
    wait_for(lambda: took_over(mnt, 1), 10, "the old binary's takeover")
    assert os.path.realpath(f"/proc/{worker_pid(mnt)}/exe") == os.path.realpath(BIN)
    with open(mnt.disk("ram0"), "rb") as f:
        assert sha(f.read(len(data))) == sha(data)
    ctl_upgrade(mnt, BIN)  # and a good upgrade works after it


# ---- ramdiskctl save after the restarts stopped (recovery) -------------------------

def test_save_writes_every_disk_after_the_restarts_stopped(mount_factory, tmp_path):
    """The worker dies 5 times within 10 s, so the supervisor stops restarting it and the
    mount answers nothing. ramdiskctl save still writes each disk's bytes to an image,
    from the backing files the supervisor holds; then an upgrade can bring a worker back."""
    from support.mounts import CTL
    mnt = mount_factory(*SUPERVISE, "--disk", "ram0:8M:mode=direct", "--disk",
                        "ram1:3M:mode=dax", wait_disks=["ram0", "ram1"])
    mnt.write_control("new", text="made 1M mode=cached cache=volatile")
    data = {"ram0": pattern(8 << 20, seed=1), "ram1": pattern(3 << 20, seed=2),
            "made": pattern(1 << 20, seed=3)}
    for name, content in data.items():
        with open(mnt.disk(name), "r+b", buffering=0) as f:
            f.write(content)  # made: unflushed in its volatile cache when the worker dies
    with open(mnt.disk("ram0"), "r+b", buffering=0) as f:
        f.seek(1 << 20)
        f.write(bytes(2 << 20))  # zeros and a hole are saved as zeros
        os.fsync(f.fileno())
    os.truncate(mnt.disk("ram0"), 8 << 20)
    data["ram0"] = data["ram0"][:1 << 20] + bytes(2 << 20) + data["ram0"][3 << 20:]
    for i in range(4):
        kill_worker(mnt)
        wait_for(lambda: took_over(mnt, i + 1), 10, "the takeover")
    os.kill(worker_pid(mnt), signal.SIGKILL)
    wait_for(lambda: "no more restarts" in mnt.log(), 10, "the supervisor giving up")
    out = tmp_path / "images"
    out.mkdir()
    started = time.monotonic()
    res = run(CTL, "save", out, "--mount", mnt.path, check=False, timeout=60)
    assert res.returncode == 0, res.stderr
    print(f"save: {time.monotonic() - started:.2f} s: {res.stdout}")
    for name, content in data.items():
        image = (out / f"{name}.img").read_bytes()
        assert len(image) == len(content) and sha(image) == sha(content), name
    assert sorted(line.split()[0] for line in res.stdout.splitlines()) == sorted(data)
    # Nothing is overwritten, and an unknown name writes nothing.
    res = run(CTL, "save", out, "ram0", "--mount", mnt.path, check=False, timeout=60)
    assert res.returncode == 1 and "exists" in res.stderr, res.stderr
    (out / "more").mkdir()
    res = run(CTL, "save", out / "more", "ram1", "nosuch", "--mount", mnt.path, check=False)
    assert res.returncode == 1 and "nosuch" in res.stderr and not any((out / "more").iterdir())
    res = run(CTL, "save", out / "more", "ram1", "--mount", mnt.path, check=False)
    assert res.returncode == 0 and (out / "more" / "ram1.img").read_bytes() == data["ram1"]
    # A new binary (here the same one) can resume the service.
    ctl_upgrade(mnt)
    with open(mnt.disk("ram0"), "rb") as f:
        assert sha(f.read()) == sha(data["ram0"])
    assert mnt.stats("made")["cache"] == "volatile"


# ---- a worker killed in the middle of a resize or a switch ---------------------------

def memory_consistent(mnt):
    """The global memory_used against the disks' own allocated_bytes: equal when no
    cache arena holds memory (nothing leaked by a dead worker)."""
    total = mnt.stats()
    disks = [d for d in os.listdir(mnt.control) if (mnt.control / d).is_dir()]
    return total["memory_used"], sum(mnt.stats(d)["allocated_bytes"] for d in disks)


@pytest.mark.parametrize("point,what", [
    ("resize-truncated", "grow"), ("resize-truncated", "shrink"),
    ("resize-truncated", "truncate"), ("control-applied", "shrink"),
    ("control-applied", "mode"), ("control-applied", "cache")])
def test_a_resize_or_switch_cut_short_by_a_crash_leaves_a_consistent_table(
        mount_factory, monkeypatch, point, what):
    """The first worker aborts after the backing file took its new size but before the
    kernel was told (resize-truncated), or after a control write was applied but before
    the table was published (control-applied). The kernel resends the request and the
    successor finishes it: the size stat() shows is the disk's size, the mode and cache
    are what was written, and memory_used equals what the disks hold (no leak)."""
    monkeypatch.setenv("RAMDISKFS_CRASH_POINT", point)
    mnt = mount_factory(*SUPERVISE, "--disk", "ram0:8M:mode=direct", "--disk",
                        "ram1:1M:mode=direct", wait_disks=["ram0", "ram1"])
    with open(mnt.disk("ram0"), "r+b", buffering=0) as f:
        f.write(pattern(8 << 20, seed=9))
    assert os.stat(mnt.disk("ram0")).st_size == 8 << 20  # the kernel caches this size
    used, held = memory_consistent(mnt)
    assert used == held >= 8 << 20, (used, held)
    if what == "grow":
        mnt.write_control("ram0", "size", text="12M")
        size = 12 << 20
    elif what == "shrink":
        mnt.write_control("ram0", "size", text="2M")
        size = 2 << 20
    elif what == "truncate":
        os.truncate(mnt.disk("ram0"), 3 << 20)  # SETATTR, not a control file
        size = 3 << 20
    elif what == "mode":
        mnt.write_control("ram0", "mode", text="cached")
        size = 8 << 20
    else:
        mnt.write_control("ram0", "cache", text="volatile")
        size = 8 << 20
    wait_for(lambda: took_over(mnt, 1), 10, "the takeover")
    assert "was killed by Aborted" in mnt.log()
    stats = mnt.stats("ram0")
    assert os.stat(mnt.disk("ram0")).st_size == stats["size"] == size
    assert int(mnt.read_control("ram0", "size")) == size
    assert stats["mode"] == ("cached" if what == "mode" else "direct")
    assert stats["cache"] == ("volatile" if what == "cache" else "none")
    with open(mnt.disk("ram0"), "rb") as f:
        data = f.read()
    assert len(data) == size
    kept = min(size, 8 << 20)
    assert sha(data[:kept]) == sha(pattern(8 << 20, seed=9)[:kept])
    assert data[kept:] == bytes(size - kept)
    used, held = memory_consistent(mnt)
    assert used == held and held <= kept + (1 << 20), (used, held)
    # The next worker agrees too (what it was handed is the finished state).
    kill_worker(mnt)
    wait_for(lambda: took_over(mnt, 2), 10, "the second takeover")
    assert mnt.stats("ram0")["size"] == size and os.stat(mnt.disk("ram0")).st_size == size
    assert mnt.stats("ram0")["mode"] == stats["mode"]
    assert mnt.stats("ram0")["cache"] == stats["cache"]


def test_disk_keys_given_at_start_reach_the_first_worker(mount_factory):
    """--disk fault and cache keys are made by the supervisor, which hands the table to
    its worker as a state: they must be in it (before state version 2 they were not, and
    a supervised daemon silently served without them)."""
    mnt = mount_factory(*SUPERVISE, "--disk",
                        "k0:1M:mode=direct:errors=read 1 ENOMEM:cache=volatile:cache_size=64K",
                        wait_disks=["k0"])
    assert mnt.read_control("k0", "errors") == "read 1 ENOMEM\n"
    assert mnt.read_control("k0", "cache") == "volatile\n"
    assert mnt.read_control("k0", "cache_size") == "65536\n"
    with open(mnt.disk("k0"), "rb", buffering=0) as f:
        with pytest.raises(OSError) as e:
            f.read(512)
        assert e.value.errno == errno.ENOMEM


def test_a_user_without_privileges_gets_a_supervised_mount_that_survives(tmp_path):
    """SPEC 13: without root (here `nobody`, through fusermount3) start works, says what it
    cannot do (no dax: passthrough needs CAP_SYS_ADMIN), and a killed worker is still
    replaced with the data kept. /dev/fuse is made world-usable for the test, as a distro's
    0666 /dev/fuse is, and put back."""
    import tempfile

    from support.mounts import BIN, stop_process
    nobody = 65534
    work = pathlib.Path(tempfile.mkdtemp(prefix="rdfs-nobody."))
    mnt = work / "m"
    mnt.mkdir()
    binary = work / "ramdiskfs"
    shutil.copy2(BIN, binary)
    for p in (work, mnt):
        os.chown(p, nobody, nobody)
    as_nobody = ["setpriv", f"--reuid={nobody}", f"--regid={nobody}", "--clear-groups"]
    old_mode = stat.S_IMODE(os.stat("/dev/fuse").st_mode)
    log = work / "log"
    proc = None
    try:
        os.chmod("/dev/fuse", 0o666)
        with open(log, "w") as out:
            proc = subprocess.Popen([*as_nobody, str(binary), str(mnt), "-f", *SUPERVISE,
                                     "--disk", "ram0:4M:mode=direct"], stdout=out,
                                    stderr=subprocess.STDOUT)
        wait_for(lambda: proc.poll() is not None or " serving " in log.read_text(), 15, "serving")
        assert proc.poll() is None, log.read_text()
        assert "FUSE passthrough needs CAP_SYS_ADMIN" in log.read_text(), log.read_text()
        disk = mnt / "ram0"
        run(*as_nobody, "sh", "-c", f"printf survive | dd of={disk} conv=notrunc status=none")
        children = pathlib.Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
        old = wait_for(lambda: [int(p) for p in children.read_text().split()], 10, "a worker")[0]
        os.kill(old, signal.SIGKILL)  # the worker this test's supervisor started
        wait_for(lambda: " took over (restart 1)" in log.read_text(), 15, "the next worker")
        res = run(*as_nobody, "head", "-c", "7", str(disk))
        assert res.stdout == "survive", log.read_text()
        assert stop_process(proc) == 0, log.read_text()
        assert not is_mounted(mnt)
    finally:
        os.chmod("/dev/fuse", old_mode)
        if proc is not None:
            stop_process(proc)
        if is_mounted(mnt):
            run("umount", "-l", mnt, check=False)
        shutil.rmtree(work, ignore_errors=True)
