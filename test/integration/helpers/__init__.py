"""Shared helpers for the ramdiskfs integration tests (no fixtures live here).

Everything in this package acts the way a user's program would: plain
syscalls through os/mmap/ctypes, and the standard command-line tools.
"""

import ctypes
import errno
import hashlib
import mmap
import os
import pathlib
import platform
import random
import signal
import subprocess
import time

import pytest

from conftest import BIN, PAGE, Mount, is_mounted, teardown_mount, wait_for

HERE = pathlib.Path(__file__).resolve().parent
MiB = 1 << 20
KiB = 1 << 10

FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
FALLOC_FL_COLLAPSE_RANGE = 0x08
FALLOC_FL_ZERO_RANGE = 0x10

_libc = ctypes.CDLL(None, use_errno=True)
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
_libc.fallocate.restype = ctypes.c_int


def fallocate(fd, mode, offset, length):
    """fallocate(2) with an explicit mode; raises OSError with the errno."""
    if _libc.fallocate(fd, mode, offset, length) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"fallocate(mode={mode:#x}, {offset}, {length}): {os.strerror(err)}")


def pattern(seed, length):
    """Deterministic bytes that differ for every seed and contain no long zero runs."""
    data = bytearray(random.Random(seed).randbytes(length))
    for i in range(0, length, 251):  # make sure nothing reads back as all-zero by accident
        data[i] |= 1
    return bytes(data)


def sha(data):
    return hashlib.sha256(data).hexdigest()[:16]


def pwrite_all(fd, data, offset):
    """pwrite until everything is written; raises on error (also mid-way)."""
    view = memoryview(data)
    done = 0
    while done < len(view):
        n = os.pwrite(fd, view[done:], offset + done)
        if n <= 0:
            raise OSError(errno.EIO, f"pwrite returned {n}")
        done += n


def pread_all(fd, length, offset):
    out = bytearray()
    while len(out) < length:
        chunk = os.pread(fd, length - len(out), offset + len(out))
        if not chunk:
            break
        out += chunk
    return bytes(out)


def write_file(path, data, offset=0):
    fd = os.open(path, os.O_WRONLY)
    try:
        pwrite_all(fd, data, offset)
    finally:
        os.close(fd)


def read_file(path, length, offset=0):
    fd = os.open(path, os.O_RDONLY)
    try:
        return pread_all(fd, length, offset)
    finally:
        os.close(fd)


def aligned_buffer(length):
    """A page-aligned anonymous buffer (what O_DIRECT wants)."""
    return mmap.mmap(-1, max(length, PAGE))


def odirect_pwrite(path, data, offset):
    """Writes `data` at `offset` through an O_DIRECT fd; offset/length must be 512-aligned."""
    assert offset % 512 == 0 and len(data) % 512 == 0, "O_DIRECT needs 512-byte alignment"
    buf = aligned_buffer(len(data))
    buf[:len(data)] = data
    fd = os.open(path, os.O_WRONLY | os.O_DIRECT)
    try:
        n = os.pwritev(fd, [memoryview(buf)[:len(data)]], offset)
        assert n == len(data), f"O_DIRECT write of {len(data)} at {offset} returned {n}"
    finally:
        os.close(fd)
        buf.close()


def odirect_pread(path, length, offset):
    assert offset % 512 == 0 and length % 512 == 0, "O_DIRECT needs 512-byte alignment"
    buf = aligned_buffer(length)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    try:
        n = os.preadv(fd, [memoryview(buf)[:length]], offset)
        assert n == length, f"O_DIRECT read of {length} at {offset} returned {n}"
        return bytes(buf[:length])
    finally:
        os.close(fd)
        buf.close()


def mmap_read(path, length, offset):
    """Reads through a fresh MAP_SHARED mapping (offset page-aligned)."""
    assert offset % PAGE == 0
    fd = os.open(path, os.O_RDONLY)
    try:
        with mmap.mmap(fd, length, mmap.MAP_SHARED, mmap.PROT_READ, offset=offset) as mm:
            return bytes(mm[:length])
    finally:
        os.close(fd)


def mmap_write(path, data, offset):
    """Stores `data` at any `offset` through a MAP_SHARED mapping; no msync (coherency is
    the point), the mapping is just unmapped."""
    start = offset - offset % PAGE
    length = offset + len(data) - start
    fd = os.open(path, os.O_RDWR)
    try:
        with mmap.mmap(fd, length, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE,
                       offset=start) as mm:
            mm[offset - start:offset - start + len(data)] = data
    finally:
        os.close(fd)


def meminfo(key):
    with open("/proc/meminfo") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name == key:
                return int(rest.split()[0]) * 1024
    raise KeyError(key)


def blocks(path):
    """st_blocks of `path` (512-byte units)."""
    return os.stat(path).st_blocks


def has_cap(bit):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> bit & 1)
    return False


CAP_SYS_RESOURCE = 24


def require_x86_64():
    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip(f"machine code in this test is x86-64; this machine is {platform.machine()}")


def compile_c(source, out, *flags):
    """Compiles helpers/<source> with cc into `out`; skips if there is no C compiler."""
    cc = None
    for name in ("cc", "gcc", "clang"):
        for d in os.environ.get("PATH", "/usr/bin").split(":") + ["/usr/bin"]:
            if os.access(os.path.join(d, name), os.X_OK):
                cc = os.path.join(d, name)
                break
        if cc:
            break
    if cc is None:
        pytest.skip("no C compiler (cc) on this machine")
    cmd = [cc, "-O2", "-o", str(out), str(HERE / source), *flags]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{res.stderr}")
    return pathlib.Path(out)


def start_mount(path, log_path, *args):
    """Starts `ramdiskfs PATH -f ARGS...` and waits for the mount, like conftest's
    mount_factory, for fixtures with a wider scope. The caller must teardown_mount()."""
    path = pathlib.Path(path)
    path.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        proc = subprocess.Popen([str(BIN), str(path), "-f", *map(str, args)],
                                stdout=log, stderr=subprocess.STDOUT)
    mnt = Mount(path, proc, log_path)
    try:
        wait_for(lambda: proc.poll() is not None or is_mounted(path), 15, "mount")
        if proc.poll() is not None:
            raise RuntimeError(f"ramdiskfs exited {proc.returncode}:\n{mnt.log()}")
    except Exception:
        teardown_mount(mnt)
        raise
    return mnt


def run_expect_exit(argv, timeout=20, cwd=None):
    """Runs the daemon with arguments that must make it exit. Returns (returncode,
    stdout, stderr). If it is still running after `timeout` (it mounted), it is
    stopped by pid, its mount is removed, and the test fails."""
    proc = subprocess.Popen([str(a) for a in argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=cwd)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        for a in argv:
            if os.path.isdir(str(a)) and is_mounted(str(a)):
                subprocess.run(["umount", "-l", str(a)], check=False)
        pytest.fail(f"{argv} did not exit within {timeout}s (it should have refused to start); "
                    f"stderr: {err!r}")
    return proc.returncode, out, err


def wait_exit(proc, timeout=20):
    """Waits for a Popen to exit; returns its status or fails the test."""
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"daemon pid {proc.pid} did not exit within {timeout}s")


def log_lines_after(mnt, start):
    return mnt.log()[start:].splitlines()


def poll_until(predicate, timeout=10.0, what="condition"):
    """Like conftest.wait_for, but returns the predicate's truthy value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)
