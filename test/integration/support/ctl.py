"""The control plane as a user reaches it: control files, stats, block ioctls, state
snapshots, and running commands as another user.

Everything here works through the mounted tree: open/write/read of control files, stat
of disk files, ioctl on an open disk file. The stats keys are not listed here: the
daemon's output is read (stats_keys) and compared with the one table users read,
docs/control.md (documented_stats_keys).
"""

import errno
import fcntl
import os
import pathlib
import re
import time

from .mounts import ROOT, parse_stats, run

CONTROL_DOC = ROOT / "docs" / "control.md"

# Block ioctls (x86-64 numbers). The _IOR ones carry their answer through
# FUSE; the _IO() ones carry no data and must get ENOTTY.
BLKGETSIZE64 = 0x80081272  # _IOR(0x12, 114, size_t)
BLKBSZGET = 0x80081270  # _IOR(0x12, 112, size_t)
BLKFLSBUF = 0x1261  # _IO(0x12, 97)
BLKGETSIZE = 0x1260  # _IO(0x12, 96)
BLKSSZGET = 0x1268  # _IO(0x12, 104)
BLKROSET = 0x125D  # _IO(0x12, 93)
BLKROGET = 0x125E  # _IO(0x12, 94)
BLKPBSZGET = 0x127B  # _IO(0x12, 123)
BLKDISCARD = 0x1277  # _IO(0x12, 119)
BLKZEROOUT = 0x127F  # _IO(0x12, 127)

NOBODY = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")

GLOBAL_FILES = {"new": "w", "delete": "w", "max_memory": "rw", "stats": "r"}
DISK_FILES = {"size": "rw", "flush": "w", "discard": "w", "readonly": "rw", "mode": "rw",
              "stats": "r",
              # SPEC 11 (test_powercut.py)
              "cache": "rw", "cache_size": "rw", "unflushed": "r", "powercut_policy": "rw",
              "powercut_seed": "rw", "power": "rw", "powercut_log": "r",
              "powercut_at_flush": "rw",
              # fault injection (docs/faults.md)
              "badblocks": "rw", "badblocks_once": "rw", "badblocks_partial": "rw",
              "errors": "rw", "fault_seed": "rw", "latency": "rw", "throttle": "rw",
              "flakey": "rw"}
IO_COUNTERS = ["reads", "writes", "read_bytes", "write_bytes"]  # not counted in dax mode


def stats_keys(text):
    """The keys of a stats file's text, in the daemon's order."""
    return list(parse_stats(text))


def documented_stats_keys(scope):
    """The stats keys docs/control.md documents: scope "global" (the table under the
    global `stats` file) or "disk" (the table of "Statistics, and what each mode counts").
    A row may document several keys ("`reads`, `writes`")."""
    heading = {"global": "### `stats` (r, 0444): global statistics",
               "disk": "## Statistics, and what each mode counts"}[scope]
    text = CONTROL_DOC.read_text()
    assert heading in text, f"{CONTROL_DOC} has no section {heading!r}"
    section = text.split(heading, 1)[1]
    section = re.split(r"^#{2,3} ", section, maxsplit=1, flags=re.M)[0]
    keys = []
    for line in section.splitlines():
        if line.startswith("| `"):
            keys += re.findall(r"`([a-z_]+)`", line.split("|")[1])
    assert keys, f"no stats table under {heading!r} in {CONTROL_DOC}"
    return keys


def errname(err):
    return "OK" if err == 0 else errno.errorcode.get(err, str(err))


def _errno_of(path, flags, action):
    """0, or the errno of whichever step failed: os.open(path, flags) or action(fd)."""
    try:
        fd = os.open(path, flags)
    except OSError as e:
        return e.errno
    try:
        action(fd)
        return 0
    except OSError as e:
        return e.errno
    finally:
        os.close(fd)


def write_errno(mnt, *parts, text, offset=None):
    """Writes `text` to a control file in one write() (or pwrite at `offset`).

    Returns 0 or the errno of whichever step failed (open or write)."""
    data = text if isinstance(text, bytes) else text.encode()

    def write(fd):
        n = os.write(fd, data) if offset is None else os.pwrite(fd, data, offset)
        assert n == len(data), f"short write {n} of {len(data)} to {'/'.join(parts)}"

    return _errno_of(mnt.ctl(*parts), os.O_WRONLY, write)


def read_errno(path):
    """Opens `path` read-only and reads it; returns 0 or the errno."""
    return _errno_of(path, os.O_RDONLY, lambda fd: os.read(fd, 4096))


def log_lines(mnt):
    return [line for line in mnt.log().splitlines() if line.strip()]


def wait_log_growth(mnt, before, timeout=3.0):
    """Log lines added since `before` lines, waiting up to `timeout` for at least one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = log_lines(mnt)
        if len(lines) > before:
            time.sleep(0.1)  # let a second line (there should be none) arrive too
            return log_lines(mnt)[before:]
        time.sleep(0.02)
    return []


def disk_names(mnt):
    """Disks as the control tree sees them (directories under .control/)."""
    return sorted(e.name for e in os.scandir(mnt.control) if e.is_dir())


def _without(text, keys):
    return "".join(line for line in text.splitlines(True) if line.split(" ", 1)[0] not in keys)


def snapshot(mnt, ignore=()):
    """Everything a control write could change, as text: both trees, every value.

    `ignore`: stats keys left out (e.g. IO_COUNTERS when the test itself reads a disk)."""
    state = {
        "tree": sorted(os.listdir(mnt.path)),
        "control": sorted(os.listdir(mnt.control)),
        "stats": mnt.read_control("stats"),
        "max_memory": mnt.read_control("max_memory"),
    }
    for name in disk_names(mnt):
        st = os.stat(mnt.disk(name))
        state[name] = {
            "stats": _without(mnt.read_control(name, "stats"), ignore),
            "size": mnt.read_control(name, "size"),
            "mode": mnt.read_control(name, "mode"),
            "readonly": mnt.read_control(name, "readonly"),
            "st_size": st.st_size,
            "st_blocks": st.st_blocks,
            "st_mode": oct(st.st_mode),
        }
    return state


def snapshot_diff(before, after, prefix=""):
    """Human-readable differences between two snapshots (empty if equal)."""
    out = []
    for key in sorted(set(before) | set(after)):
        a, b = before.get(key, "<absent>"), after.get(key, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict):
            out += snapshot_diff(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return out


def assert_unchanged(mnt, before, what, ignore=(), timeout=3.0):
    """The state equals `before`. Polled for a moment, because a process's last
    close() returns before the daemon gets FUSE's asynchronous RELEASE, so
    `opens` may lag; a real change never goes back by itself."""
    deadline = time.monotonic() + timeout
    while True:
        diff = snapshot_diff(before, snapshot(mnt, ignore))
        if not diff or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert not diff, f"{what} changed the state:\n" + "\n".join(diff)


def assert_rejected(mnt, parts, text, expected, offset=None):
    """A bad control write: the expected errno, nothing changed, exactly one log line."""
    before = snapshot(mnt)
    lines = len(log_lines(mnt))
    err = write_errno(mnt, *parts, text=text, offset=offset)
    where = f"write {text!r} to .control/{'/'.join(parts)}" + (
        f" at offset {offset}" if offset else "")
    assert err == expected, f"{where}: expected {errname(expected)}, got {errname(err)}"
    assert_unchanged(mnt, before, f"{where} (failed)")
    new = wait_log_growth(mnt, lines)
    assert len(new) == 1, f"{where}: expected one daemon log line, got {new!r}"


def ioctl(path, request, size=8, flags=os.O_RDONLY, arg=None):
    """(errno, bytes) of ioctl(request) on a fresh fd; bytes is the 8-byte buffer after it."""
    fd = os.open(path, flags)
    try:
        return ioctl_fd(fd, request, size, arg)
    finally:
        os.close(fd)


def ioctl_fd(fd, request, size=8, arg=None):
    buf = bytearray(b"\xa5" * max(size, 8)) if arg is None else arg
    try:
        if isinstance(buf, int):
            fcntl.ioctl(fd, request, buf)
        else:
            fcntl.ioctl(fd, request, buf, True)
        return 0, bytes(buf) if not isinstance(buf, int) else b""
    except OSError as e:
        return e.errno, bytes(buf) if not isinstance(buf, int) else b""


def settle(path, timeout=5.0):
    """Waits until the daemon counts no open of disk file `path` (MOUNT/NAME).

    close() returns before the kernel sends FUSE's RELEASE (it is asynchronous),
    so for a moment after the last close the daemon still sees the disk open and
    answers EBUSY to flush, mode, delete. Tests that are not about that race
    (test_busy_right_after_close is) wait here. No-op for other paths."""
    path = pathlib.Path(path)
    stats = path.parent / ".control" / path.name / "stats"
    if not stats.exists():
        return
    deadline = time.monotonic() + timeout
    while True:
        if not parse_stats(stats.read_text()).get("opens"):
            return
        assert time.monotonic() < deadline, f"{path}: still open {timeout}s after the last close"
        time.sleep(0.005)


def close_disk(fd, path):
    os.close(fd)
    settle(path)


def pwrite_disk(path, data, offset=0):
    """One pwrite() that must write all of `data` (control tests count requests), then
    settle(). io.write_file is the looping, no-settle write."""
    fd = os.open(path, os.O_WRONLY)
    try:
        n = os.pwrite(fd, data, offset)
        assert n == len(data)
    finally:
        close_disk(fd, path)


def pread_disk(path, length, offset=0):
    """One pread(), then settle()."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.pread(fd, length, offset)
    finally:
        close_disk(fd, path)


def as_nobody(*args, cwd, input=None):
    """Runs a command as uid/gid 65534 without groups, started in `cwd`.

    pytest's tmp_path lies under a 0700 directory, so the other user reaches
    the mount only through its working directory: pass paths relative to cwd."""
    return run(*NOBODY, *args, cwd=cwd, check=False, input=input)


def one_error_line(result, strerror):
    """Asserts ramdiskctl's error contract: one stderr line, 'ramdiskctl: ...: strerror'."""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, f"expected one stderr line, got {result.stderr!r}"
    assert lines[0].startswith("ramdiskctl: "), lines[0]
    assert lines[0].endswith(": " + strerror), f"{lines[0]!r} should end with {strerror!r}"
    return lines[0]
