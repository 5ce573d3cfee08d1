"""The targets: what each one is, how it is set up for fio, and how ext4 goes on it.

TARGETS is the one table of targets. A ramdiskfs variant for an A/B comparison (another
transport, a disk option, a daemon flag) is one more line in it, e.g.

    ramdiskfs("direct-uring", "direct", daemon_args=("--transport", "uring"), default=False),

or, without editing anything, `--add-target 'direct-4t=mode=direct --threads 4'` on the
command line. default=False keeps a line out of the default run (and so out of the figures
in docs/benchmarks.md) until `--targets` names it.

Mounts and processes are started, stopped and checked with the integration tests' own
helpers (test/integration/support/mounts.py); everything made is pushed on the Janitor.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shlex
import shutil
import subprocess
import time
from pathlib import Path
from typing import Callable

from janitor import Janitor, Skip
from support.blockdev import detach_loop
from support.mounts import (
    is_mounted, run, start_mount, stop_process, teardown_mount, unmount, wait_for,
)  # fmt: skip
from support.units import GiB, KiB, MiB


@dataclasses.dataclass(frozen=True)
class Target:
    name: str
    kind: str  # "tmpfs", "ramdiskfs", "zram" or "nbdfuse": which setup function
    about: str  # one line for --list-targets and the docs
    colour: str = "#666666"  # chart colour, fixed per target so that the panels agree
    mode: str | None = None  # ramdiskfs: the disk's data mode
    disk_options: tuple[str, ...] = ()  # ramdiskfs: more KEY=VALUE for --disk
    daemon_args: tuple[str, ...] = ()  # ramdiskfs: more daemon arguments
    default: bool = True  # in the default --targets

    @property
    def ext4_skip(self) -> str | None:
        """Why ext4 cannot be measured on this target, if it cannot."""
        return "null mode drops writes, so a filesystem cannot live on it" if self.mode == "null" else None


def ramdiskfs(name: str, mode: str, about: str = "", colour: str = "#666666", *,
              disk_options: tuple[str, ...] = (), daemon_args: tuple[str, ...] = (),
              default: bool = True) -> Target:  # fmt: skip
    extra = ":".join([f"mode={mode}", *disk_options])
    about = about or " ".join([f"ramdiskfs, --disk NAME:SIZE:{extra}", *daemon_args])
    return Target(name, "ramdiskfs", about, colour, mode, tuple(disk_options), tuple(daemon_args), default)


DEV = ("--transport", "dev")
URING = ("--transport", "uring")
ENABLE_URING = Path("/sys/module/fuse/parameters/enable_uring")

TARGETS: tuple[Target, ...] = (
    Target("tmpfs", "tmpfs", "a file on a fresh private tmpfs mount (every ratio is to it)"),
    ramdiskfs("dax", "dax", "ramdiskfs, disk in mode=dax (FUSE passthrough)", "#1b9e77",
              daemon_args=DEV),
    ramdiskfs("direct", "direct", "ramdiskfs, disk in mode=direct (every I/O served by the daemon)", "#7570b3",
              daemon_args=DEV),
    ramdiskfs("cached", "cached", "ramdiskfs, disk in mode=cached (classic FUSE)", "#e7298a",
              daemon_args=DEV),
    ramdiskfs("null", "null", "ramdiskfs, disk in mode=null (writes dropped, reads zeros: the FUSE floor)", "#a6a6a6",
              daemon_args=DEV),
    Target("zram", "zram", "a zram device made with hot_add and removed with hot_remove", "#e6ab02"),
    Target("nbdfuse", "nbdfuse", "nbdfuse over nbdkit's memory plugin, on a Unix socket (multi-conn)", "#d95f02"),
    # FUSE over io_uring (--transport uring; the four above are pinned to /dev/fuse, so
    # that auto does not switch them over when the switch is on): skipped unless the fuse
    # module's enable_uring is Y, which the harness leaves to the administrator.
    # bench/transport_ab.sh interleaves the two transports for an A/B.
    ramdiskfs("direct-uring", "direct", colour="#386cb0", daemon_args=URING, default=False),
    ramdiskfs("cached-uring", "cached", colour="#a01c5e", daemon_args=URING, default=False),
    ramdiskfs("null-uring", "null", colour="#5a5a5a", daemon_args=URING, default=False),
    # --supervise (docs/survive.md): the same modes with a supervisor beside the worker, for
    # the A/B that says what crash survival costs on the I/O path.
    ramdiskfs("dax-supervised", "dax", colour="#0e5c45", daemon_args=(*DEV, "--supervise"), default=False),
    ramdiskfs("direct-supervised", "direct", colour="#4a4590", daemon_args=(*DEV, "--supervise"), default=False),
    ramdiskfs("cached-supervised", "cached", colour="#8f1a55", daemon_args=(*DEV, "--supervise"), default=False),
    # A/B rows for work in progress: not in the default run.
    ramdiskfs("direct-volatile", "direct", colour="#66a61e", disk_options=("cache=volatile",), default=False),
)  # fmt: skip

EXTRA_COLOURS = ("#386cb0", "#66a61e", "#a6761d", "#e31a1c", "#1f78b4", "#b15928")


def parse_added_target(text: str, known: dict[str, Target]) -> Target:
    """--add-target NAME=DISK_OPTIONS [DAEMON ARGS...]: DISK_OPTIONS as in --disk after
    NAME:SIZE (KEY=VALUE joined by ':', with mode= among them), e.g.
    'direct-4t=mode=direct --threads 4' or 'direct-volatile=mode=direct:cache=volatile'."""
    name, sep, rest = text.partition("=")
    words = shlex.split(rest)
    if not sep or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.+-]*", name) or not words:
        raise ValueError(f"bad --add-target {text!r}: use NAME=mode=MODE[:KEY=VALUE...] [DAEMON ARGS...]")
    if name in known:
        raise ValueError(f"--add-target {name}: a target of that name exists already")
    options = words[0].split(":")
    modes = [o.split("=", 1)[1] for o in options if o.startswith("mode=")]
    if len(modes) != 1 or not modes[0]:
        raise ValueError(f"--add-target {name}: give the disk's mode once (mode=dax|direct|cached|null)")
    others = tuple(o for o in options if not o.startswith("mode="))
    colour = EXTRA_COLOURS[len([t for t in known.values() if not t.default]) % len(EXTRA_COLOURS)]
    return ramdiskfs(name, modes[0], colour=colour, disk_options=others, daemon_args=tuple(words[1:]))


def unavailable(target: Target, binary: Path) -> str | None:
    """Why a target cannot run on this machine at all, or None."""
    if target.kind == "ramdiskfs" and not (binary.is_file() and os.access(binary, os.X_OK)):
        return f"ramdiskfs binary {binary} not found (scripts/bench.sh builds it)"
    if target.kind == "ramdiskfs" and "uring" in target.daemon_args:
        state = ENABLE_URING.read_text().strip() if ENABLE_URING.exists() else "missing"
        if state != "Y":
            return f"FUSE over io_uring is off ({ENABLE_URING} is {state}; echo 1 > it as root)"
    if target.kind == "zram" and not Path("/sys/class/zram-control/hot_add").exists():
        return "zram is not available (/sys/class/zram-control/hot_add missing)"
    if target.kind == "nbdfuse":
        missing = [t for t in ("nbdfuse", "nbdkit") if not shutil.which(t)]
        if missing:
            return f"{' and '.join(missing)} not installed (apt-get install nbdkit libnbd-bin)"
    return None


def human_size(n: int) -> str:
    for unit, scale in (("G", GiB), ("M", MiB), ("K", KiB)):
        if n % scale == 0 and n >= scale:
            return f"{n // scale}{unit}"
    return str(n)


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


def sh(*args, **kw) -> subprocess.CompletedProcess:
    """support.mounts.run in a session of its own, so that a terminal's Ctrl-C reaches only
    the harness, which then cleans up in order."""
    return run(*args, start_new_session=True, **kw)


@dataclasses.dataclass
class Backing:
    """What a set-up target offers fio: a raw file or block device."""

    path: Path
    is_block: bool = False


@dataclasses.dataclass
class Lab:
    """Where targets are set up: the harness's directory, results directory and janitor."""

    janitor: Janitor
    workdir: Path
    out: Path
    size: int
    ramdiskfs: Path
    machine: dict
    note: Callable[[str, str], None]
    display: Callable[[Path], str] = str

    def mountpoint(self, name: str) -> Path:
        d = self.workdir / name
        d.mkdir()
        self.janitor.push(f"rmdir {d}", lambda: d.rmdir())
        return d


def set_up(target: Target, lab: Lab, round_no: int) -> Backing:
    """Sets a target up fresh; everything made is pushed on lab.janitor. Raises Skip."""
    setup = {"tmpfs": _tmpfs, "ramdiskfs": _ramdiskfs, "zram": _zram, "nbdfuse": _nbdfuse}[target.kind]
    return setup(target, lab, round_no)


def _tmpfs(target: Target, lab: Lab, round_no: int) -> Backing:
    mnt = lab.mountpoint(target.name)
    sh("mount", "-t", "tmpfs", "-o", f"size={lab.size + 16 * MiB},mode=0700", "tmpfs", mnt)
    lab.janitor.push(f"umount {mnt}", lambda: unmount(mnt))
    disk = mnt / "disk"
    with open(disk, "wb") as f:
        f.truncate(lab.size)
    return Backing(disk)


def _ramdiskfs(target: Target, lab: Lab, round_no: int) -> Backing:
    mnt = lab.mountpoint(f"ramdiskfs-{target.name}")
    log = lab.out / f"ramdiskfs-{target.name}-r{round_no}.log"
    max_memory = max(4 * GiB, 2 * lab.size)
    args = [
        "--disk", ":".join(["bench", str(lab.size), f"mode={target.mode}", *target.disk_options]),
        "--max-memory", str(max_memory), *target.daemon_args,
    ]  # fmt: skip
    try:
        m = start_mount(mnt, log, *args, wait_disks=["bench"], binary=lab.ramdiskfs)
    except RuntimeError:  # it exited
        raise Skip(f"ramdiskfs exited for {target.name}: {tail(log, 1) or '(empty log)'}") from None
    except TimeoutError as e:
        raise Skip(f"{e} (log {log.name})") from None
    lab.janitor.push(f"stop ramdiskfs {target.name} (pid {m.proc.pid})", lambda: _stop_ramdiskfs(m, target, lab))
    disk = m.disk("bench")
    if disk.stat().st_size != lab.size:
        raise Skip(f"{disk.name} has size {disk.stat().st_size}, asked for {lab.size}")
    # A daemon that quietly fell back to another mode would be measured under a false name.
    with contextlib.suppress(OSError):
        stats = m.stats("bench")
        if stats.get("mode", target.mode) != target.mode:
            raise Skip(f"asked for mode={target.mode} but the disk runs in mode={stats['mode']} "
                       f"({stats.get('fallback', '')})")  # fmt: skip
    if round_no == 1:
        shown = [lab.display(lab.ramdiskfs), "MNT", "-f", *args]
        lab.note(target.name, f"{shlex.join(shown)} (log ramdiskfs-{target.name}-rN.log)")
    return Backing(disk)


def _stop_ramdiskfs(m, target: Target, lab: Lab) -> None:
    """SIGTERM to the daemon's pid (it unmounts itself and exits 0); anything else is noted."""
    status = teardown_mount(m)
    if status != 0:
        lab.note(target.name, f"ramdiskfs exited with status {status} after SIGTERM (expected 0)")


def _zram(target: Target, lab: Lab, round_no: int) -> Backing:
    zram_id = int(Path("/sys/class/zram-control/hot_add").read_text())
    dev = Path(f"/dev/zram{zram_id}")
    sysdir = Path(f"/sys/block/zram{zram_id}")
    lab.janitor.push(f"zram hot_remove {zram_id}", lambda: _remove_zram(zram_id))
    algo = re.search(r"\[(\S+)\]", (sysdir / "comp_algorithm").read_text())
    lab.machine["zram_comp_algorithm"] = algo.group(1) if algo else "unknown"
    (sysdir / "disksize").write_text(str(lab.size))
    try:
        wait_for(dev.exists, 5, f"{dev} after hot_add")  # udev makes the node
    except TimeoutError:
        raise Skip(f"{dev} did not appear after hot_add") from None
    if round_no == 1:
        lab.note(target.name, f"{dev}, disksize {human_size(lab.size)}, {lab.machine['zram_comp_algorithm']}")
    return Backing(dev, is_block=True)


def _remove_zram(zram_id: int) -> None:
    err = None
    for _ in range(50):  # the device may stay busy for a moment after umount
        try:
            Path("/sys/class/zram-control/hot_remove").write_text(str(zram_id))
            return
        except OSError as e:
            if not Path(f"/sys/block/zram{zram_id}").exists():
                return
            err = e
        time.sleep(0.1)
    raise RuntimeError(f"zram{zram_id} hot_remove failed: {err}")


def _start(cmd: list[str], log: Path) -> subprocess.Popen:
    with open(log, "wb") as logf:
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip


def _wait_ready(ready: Callable[[], bool], proc: subprocess.Popen, what: str, log: Path) -> None:
    def check() -> bool:
        with contextlib.suppress(OSError):
            if ready():
                return True
        if proc.poll() is not None:
            raise Skip(f"{what} exited with status {proc.returncode}: {tail(log, 1) or '(empty log)'}")
        return False

    try:
        wait_for(check, 10, what)
    except TimeoutError:
        print(f"  {what} log ({log}):\n{tail(log) or '(empty)'}")
        raise Skip(f"{what} not ready within 10 s (log {log.name})") from None


def _nbdfuse(target: Target, lab: Lab, round_no: int) -> Backing:
    if sh("nbdkit", "memory", "--dump-plugin", check=False).returncode != 0:
        raise Skip("nbdkit has no memory plugin (apt-get install nbdkit)")
    sock = lab.workdir / "nbdkit.sock"
    kit_log = lab.out / f"nbdkit-r{round_no}.log"
    kit = _start(["nbdkit", "-f", "--exit-with-parent", "-U", str(sock), "memory", f"size={lab.size}"], kit_log)
    lab.janitor.push(f"remove {sock}", lambda: sock.unlink(missing_ok=True))
    lab.janitor.push(f"stop nbdkit (pid {kit.pid})", lambda: stop_process(kit, timeout=10))
    _wait_ready(sock.exists, kit, "nbdkit socket", kit_log)

    mnt = lab.mountpoint(target.name)
    fuse_log = lab.out / f"nbdfuse-r{round_no}.log"
    fuse = _start(["nbdfuse", str(mnt), "--unix", str(sock)], fuse_log)
    lab.janitor.push(f"stop nbdfuse (pid {fuse.pid})", lambda: _stop_nbdfuse(fuse, mnt))
    disk = mnt / "nbd"
    _wait_ready(lambda: is_mounted(mnt) and disk.stat().st_size == lab.size, fuse, "nbdfuse", fuse_log)
    if round_no == 1:
        lab.note(target.name, f"nbdkit -U SOCKET memory size={human_size(lab.size)}; nbdfuse MOUNT --unix SOCKET")
    return Backing(disk)


def _stop_nbdfuse(proc: subprocess.Popen, mnt: Path) -> None:
    """nbdfuse exits when unmounted (its man page: unmount it rather than kill it)."""
    if is_mounted(mnt):
        sh("fusermount3", "-u", mnt, check=False)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            print(f"  note: nbdfuse (pid {proc.pid}) did not exit after fusermount3 -u")
    stop_process(proc, timeout=10)
    if is_mounted(mnt):
        sh("umount", "-l", mnt, check=False)


def ext4_on(target: Target, backing: Backing, lab: Lab, file_size: int) -> tuple[Path, str]:
    """ext4 on the target (on a loop device over its file, or straight on a block device),
    mounted noatime, with one preallocated file for fio. Returns (that file, how)."""
    if backing.is_block:
        dev, how = str(backing.path), "ext4 directly on the device"
    else:
        dev, how = _attach_loop(backing.path, lab)
    sh("mkfs.ext4", "-F", "-q", "-E", "lazy_itable_init=0,lazy_journal_init=0", dev, timeout=300)
    mnt = lab.mountpoint(f"{target.name}-ext4")
    sh("mount", "-t", "ext4", "-o", "noatime", dev, mnt)
    lab.janitor.push(f"umount {mnt}", lambda: unmount(mnt))
    path = mnt / "fio.dat"
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    try:
        os.posix_fallocate(fd, 0, file_size)  # so fio does not lay the file out itself
    finally:
        os.close(fd)
    return path, how


def _attach_loop(backing: Path, lab: Lab) -> tuple[str, str]:
    p = sh("losetup", "-f", "--show", "--direct-io=on", backing, check=False)
    if p.returncode != 0:
        p = sh("losetup", "-f", "--show", backing)
        refused = p.stderr.strip() or "refused"
    else:
        refused = None
    dev = p.stdout.strip()
    lab.janitor.push(f"losetup -d {dev}", lambda: detach_loop(dev, backing))
    dio = Path(f"/sys/block/{Path(dev).name}/loop/dio")
    if dio.read_text().strip() == "1":
        return dev, f"ext4 on {dev} (losetup --direct-io=on)"
    return dev, f"ext4 on {dev} (buffered loop: direct I/O {refused or 'not taken by the kernel'})"
