"""The daemon and its mounts: start, wait, stop, tear down; commands and mount checks.

Standard library only: bench/harness imports this module too, so the tests and the
benchmark start, stop and clean up ramdiskfs the same way.

Environment:
  RAMDISKFS_BIN   path to the ramdiskfs binary (default: build/ramdiskfs)
  RAMDISKCTL_BIN  path to ramdiskctl (default: next to RAMDISKFS_BIN)
  RAMDISKFS_TRANSPORT  uring|dev|auto: passed as --transport to every daemon started
                  here (unset: the daemon's default, auto); arguments given later win.
                  With uring, conftest.py's session fixture turns the fuse module's
                  enable_uring on and puts the old value back at the end.
  RAMDISKFS_URING_THREADS  N: passed as --uring-threads to every daemon started here
                  (unset: the daemon's default); arguments given later win.
"""

import os
import pathlib
import signal
import subprocess
import time

ROOT = pathlib.Path(__file__).resolve().parents[3]
BIN = pathlib.Path(os.environ.get("RAMDISKFS_BIN", ROOT / "build" / "ramdiskfs"))
CTL = pathlib.Path(os.environ.get("RAMDISKCTL_BIN", BIN.parent / "ramdiskctl"))
TRANSPORT = os.environ.get("RAMDISKFS_TRANSPORT", "")
TRANSPORT_ARGS = ["--transport", TRANSPORT] if TRANSPORT else []
URING_THREADS = os.environ.get("RAMDISKFS_URING_THREADS", "")
if URING_THREADS:
    TRANSPORT_ARGS += ["--uring-threads", URING_THREADS]
ENABLE_URING = pathlib.Path("/sys/module/fuse/parameters/enable_uring")

MODES = ["dax", "direct", "cached", "null"]
DATA_MODES = ["dax", "direct", "cached"]  # the modes that keep what is written


class CommandFailed(subprocess.CalledProcessError):
    """run(check=True) of a command that failed; str() carries its stderr."""

    def __str__(self):
        return f"{super().__str__()} stderr: {(self.stderr or '').strip()[-500:]}"


def run(*args, check=True, input=None, timeout=120, **kw):
    """Runs a command; returns CompletedProcess with text stdout/stderr.
    check=True raises CommandFailed (a CalledProcessError) on a non-zero status."""
    argv = [str(a) for a in args]
    res = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout, **kw)
    if check and res.returncode != 0:
        raise CommandFailed(res.returncode, argv, res.stdout, res.stderr)
    return res


def wait_for(predicate, timeout=10.0, what="condition"):
    """Polls `predicate` every 20 ms until it returns something truthy, and returns that;
    it is evaluated at least once and once more at the deadline. TimeoutError after
    `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def is_mounted(path):
    # The parent resolved, not the mount point itself: realpath() lstat()s every
    # component, and a FUSE mount whose server answers nothing (a supervisor that
    # stopped restarting its worker) would block that lstat() once the root's
    # cached attributes expire (1 s; sooner than that under a sanitizer build).
    path = os.path.abspath(path)
    path = os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


def mounts_under(prefix):
    """Mount points at or below `prefix` (deepest first, so they can be unmounted in order)."""
    prefix = os.path.realpath(prefix)
    with open("/proc/self/mountinfo") as f:
        found = [line.split()[4] for line in f]
    return sorted((m for m in found if m == prefix or m.startswith(prefix + "/")), key=len, reverse=True)


def mounts_of(devices):
    """Mount points of filesystems whose source is one of `devices` (or a partition of one)."""
    result = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            source = fields[fields.index("-") + 2]
            if any(source == d or source.startswith(d + "p") for d in devices):
                result.append(fields[4])
    return sorted(result, key=len, reverse=True)


def loops_backed_by(prefix):
    """Loop devices whose backing file lies under `prefix`."""
    out = run("losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE", check=False)
    loops = []
    for line in out.stdout.splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2 and parts[1].startswith(str(prefix)):
            loops.append(parts[0])
    return loops


def unmount(path):
    """umount PATH if it is mounted, lazily (umount -l) if that fails. Returns True when the
    lazy detach was needed."""
    if not is_mounted(path):
        return False
    run("umount", path, check=False)
    if is_mounted(path):
        run("umount", "-l", path, check=False)
        return True
    return False


def stop_process(proc, timeout=20):
    """SIGTERM to a process this code started (by its pid), wait; SIGKILL after `timeout` s.
    Returns its exit status (-9 if it had to be killed). Idempotent."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def wait_exit(proc, timeout=20):
    """Waits for a process this code started to exit; returns its status, or fails (the
    process is left for its owner's teardown)."""
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"pid {proc.pid} did not exit within {timeout}s") from None


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
        """The global (or disk `name`'s) stats file as {key: int or str}."""
        return parse_stats(self.read_control(name, "stats") if name else self.read_control("stats"))

    def log(self):
        try:
            return pathlib.Path(self.log_path).read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, timeout=20):
        """SIGTERM, wait; returns the exit status. Idempotent."""
        return stop_process(self.proc, timeout)


def parse_stats(text):
    """'key value' lines (a stats file) as {key: int or str}, in the daemon's order."""
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        out[key] = int(value) if value.lstrip("-").isdigit() else value
    return out


def spawn_daemon(path, log_path, *args, binary=None):
    """Starts `ramdiskfs PATH -f ARGS...` with its output in `log_path`; does not wait.

    The daemon gets its own session, so a terminal's Ctrl-C reaches only the test or the
    harness, whose cleanup then unmounts what lies on the disks before stopping it."""
    path = pathlib.Path(path)
    with open(log_path, "w") as log:
        proc = subprocess.Popen([str(binary or BIN), str(path), "-f", *TRANSPORT_ARGS,
                                 *map(str, args)],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    return Mount(path, proc, log_path)


def start_mount(path, log_path, *args, wait_disks=(), binary=None):
    """spawn_daemon(), then waits up to 15 s for the mount and 10 s for each disk in
    `wait_disks`. On any failure the log is printed, everything is torn down and the error
    raised (RuntimeError when the daemon exited). The caller must teardown_mount()."""
    path = pathlib.Path(path)
    path.mkdir(parents=True, exist_ok=True)
    mnt = spawn_daemon(path, log_path, *args, binary=binary)
    proc = mnt.proc
    try:
        wait_for(lambda: proc.poll() is not None or is_mounted(path), 15, "mount")
        if proc.poll() is not None:
            raise RuntimeError(f"ramdiskfs exited {proc.returncode}:\n{mnt.log()}")
        for name in wait_disks:
            wait_for(lambda: (path / name).exists(), 10, f"disk {name}")
    except BaseException:
        print(mnt.log())
        teardown_mount(mnt)
        raise
    return mnt


def teardown_mount(mnt):
    """Unmounts filesystems on loop devices over `mnt`, detaches them, stops the daemon,
    and removes its mount if it is still there. Returns the daemon's exit status."""
    loops = loops_backed_by(mnt.path)
    for target in mounts_of(loops):
        unmount(target)
    for dev in loops:
        run("losetup", "-d", dev, check=False)
    status = mnt.stop()
    if is_mounted(mnt.path):  # the daemon died or refused: do not leave a mount behind
        run("umount", "-l", mnt.path, check=False)
    return status


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
                run("umount", "-l", a, check=False)
        raise AssertionError(f"{argv} did not exit within {timeout}s (it should have refused "
                             f"to start); stderr: {err!r}")
    return proc.returncode, out, err


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
        raise AssertionError(f"{build} is not a CMake build directory (RAMDISKFS_BIN={BIN})")
    if prefix is None:
        run("cmake", "--install", build, "--prefix", where)
        return pathlib.Path(where)
    run("cmake", "--install", build, "--prefix", prefix, env={**os.environ, "DESTDIR": str(where)})
    return pathlib.Path(str(where) + prefix)
