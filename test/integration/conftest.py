"""Fixtures that mount the real ramdiskfs binary and always clean up.

Every test that mounts gets a fresh temporary mount point. Whatever a test
leaves behind (loop devices attached to disk files, filesystems mounted from
those loop devices, the daemon itself) is torn down in the fixture's finalizer,
in the reverse order it was made, even when the test fails. Only processes
this code started are signalled, by pid.

Environment:
  RAMDISKFS_BIN   path to the ramdiskfs binary (default: build/ramdiskfs)
  RAMDISKCTL_BIN  path to ramdiskctl (default: next to RAMDISKFS_BIN)
  CI=true         a missing /dev/fuse or loop device fails instead of skipping
"""

import contextlib
import os
import pathlib
import signal
import subprocess
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(os.environ.get("RAMDISKFS_BIN", ROOT / "build" / "ramdiskfs"))
CTL = pathlib.Path(os.environ.get("RAMDISKCTL_BIN", BIN.parent / "ramdiskctl"))
IN_CI = os.environ.get("CI", "").lower() == "true"
PAGE = 4096


def _require(condition, what):
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI=true and {what} is missing: integration tests cannot run")
    pytest.skip(f"{what} is missing")


def require_fuse():
    _require(os.path.exists("/dev/fuse"), "/dev/fuse")
    _require(os.geteuid() == 0, "root")
    _require(BIN.exists(), f"the ramdiskfs binary ({BIN})")


def require_ctl():
    _require(CTL.exists(), f"ramdiskctl ({CTL})")


def stop_process(proc, timeout=20):
    """SIGTERM to a process this code started, wait; SIGKILL after `timeout` s.
    Returns its exit status. Idempotent."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def require_loop():
    require_fuse()
    _require(os.path.exists("/dev/loop-control"), "/dev/loop-control")


def run(*args, check=True, input=None, timeout=120, **kw):
    """Runs a command; returns CompletedProcess with text stdout/stderr."""
    return subprocess.run([str(a) for a in args], check=check, input=input,
                          capture_output=True, text=True, timeout=timeout, **kw)


def is_mounted(path):
    path = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


def wait_for(predicate, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


class Mount:
    """A running ramdiskfs daemon and its mount point."""

    def __init__(self, path, proc, log_path):
        self.path = pathlib.Path(path)
        self.proc = proc
        self.log_path = log_path
        self.control = self.path / ".control"

    def disk(self, name):
        return self.path / name

    def ctl(self, *parts):
        return self.control.joinpath(*parts)

    def read_control(self, *parts):
        return self.ctl(*parts).read_text()

    def write_control(self, *parts, text):
        """Writes `text` in one write(); raises OSError with the daemon's errno."""
        fd = os.open(self.ctl(*parts), os.O_WRONLY)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)

    def stats(self, name=None):
        text = self.read_control(name, "stats") if name else self.read_control("stats")
        out = {}
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            out[key] = int(value) if value.lstrip("-").isdigit() else value
        return out

    def log(self):
        try:
            return pathlib.Path(self.log_path).read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, timeout=20):
        """SIGTERM, wait; returns the exit status. Idempotent."""
        return stop_process(self.proc, timeout)


def _loops_backed_by(prefix):
    """Loop devices whose backing file lies under `prefix`."""
    out = run("losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE", check=False)
    loops = []
    for line in out.stdout.splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2 and parts[1].startswith(str(prefix)):
            loops.append(parts[0])
    return loops


def _mounts_of(devices):
    result = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            source = fields[fields.index("-") + 2]
            if any(source == d or source.startswith(d + "p") for d in devices):
                result.append(fields[4])
    return sorted(result, key=len, reverse=True)


def teardown_mount(mnt):
    """Unmounts filesystems on loop devices over `mnt`, detaches them, stops the daemon."""
    loops = _loops_backed_by(mnt.path)
    for target in _mounts_of(loops):
        run("umount", target, check=False)
        if is_mounted(target):
            run("umount", "-l", target, check=False)
    for dev in loops:
        run("losetup", "-d", dev, check=False)
    status = mnt.stop()
    if is_mounted(mnt.path):  # the daemon died or refused: do not leave a mount behind
        run("umount", "-l", mnt.path, check=False)
    return status


@pytest.fixture
def mount_factory(tmp_path):
    """mount_factory(*args, wait_disks=None) -> Mount; everything is torn down afterwards."""
    require_fuse()
    made = []

    def make(*args, wait_disks=None, expect_fail=False):
        path = tmp_path / f"mnt{len(made)}"
        path.mkdir()
        log_path = tmp_path / f"ramdiskfs{len(made)}.log"
        log = open(log_path, "w")
        proc = subprocess.Popen([str(BIN), str(path), "-f", *map(str, args)],
                                stdout=log, stderr=subprocess.STDOUT)
        log.close()
        mnt = Mount(path, proc, log_path)
        if expect_fail:
            proc.wait(timeout=20)
            return mnt
        made.append(mnt)
        try:
            wait_for(lambda: proc.poll() is not None or is_mounted(path), 15, "mount")
            if proc.poll() is not None:
                raise RuntimeError(f"ramdiskfs exited {proc.returncode}:\n{mnt.log()}")
            for name in wait_disks or []:
                wait_for(lambda: (path / name).exists(), 10, f"disk {name}")
        except Exception:
            print(mnt.log())
            raise
        return mnt

    yield make
    for mnt in reversed(made):
        teardown_mount(mnt)


@pytest.fixture
def mount(mount_factory):
    """One mount with a 64 MiB disk ram0 in the default mode."""
    return mount_factory("--disk", "ram0:64M", wait_disks=["ram0"])


@contextlib.contextmanager
def loop_device(path, *options):
    """losetup --find --show PATH; always detached on exit."""
    require_loop()
    dev = run("losetup", "--find", "--show", *options, path).stdout.strip()
    try:
        yield dev
    finally:
        # The test may have detached it already, and on a shared machine the
        # number may since belong to someone else: detach only our own.
        back = run("losetup", "--list", "--noheadings", "--output", "BACK-FILE", dev,
                   check=False).stdout.strip()
        if back and os.path.realpath(back) == os.path.realpath(path):
            for target in _mounts_of([dev]):
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
        run("umount", where, check=False)
        if is_mounted(where):
            run("umount", "-l", where, check=False)


MODES = ["dax", "direct", "cached", "null"]
DATA_MODES = ["dax", "direct", "cached"]


def daemon_pids(mountpoint, exe=None):
    """Pids of live processes named ramdiskfs whose command line names `mountpoint`:
    the daemons a test started for its own mount point, when it has no Popen for them
    (mount(8), a daemon that detached). With `exe`, only processes running that
    binary; without, any (an installed copy too)."""
    pids = []
    real = os.path.realpath(exe) if exe else None
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if real and os.path.realpath(f"/proc/{entry}/exe") != real:
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
            with open(f"/proc/{entry}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and args[0].endswith(b"ramdiskfs") and str(mountpoint).encode() in args:
            pids.append(int(entry))
    return pids


def cmake_install(where, prefix=None):
    """`cmake --install` of the build RAMDISKFS_BIN belongs to: into the prefix `where`,
    or, given `prefix`, with that prefix under DESTDIR=`where`. Returns the root of the
    installed tree."""
    build = BIN.parent
    if not (build / "cmake_install.cmake").exists():
        pytest.fail(f"{build} is not a CMake build directory (RAMDISKFS_BIN={BIN})")
    if prefix is None:
        run("cmake", "--install", build, "--prefix", where)
        return pathlib.Path(where)
    run("cmake", "--install", build, "--prefix", prefix, env={**os.environ, "DESTDIR": str(where)})
    return pathlib.Path(str(where) + prefix)
