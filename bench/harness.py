#!/usr/bin/env python3
"""End-to-end fio harness: ramdiskfs against tmpfs, zram and nbdfuse, side by side.

One run of this script mounts every target in turn on this machine and drives it with fio:

    tmpfs    a file on a fresh private tmpfs mount (the kernel's own limit; every ratio is to it)
    dax      ramdiskfs, disk in mode=dax      (FUSE passthrough)
    direct   ramdiskfs, disk in mode=direct   (every I/O served by the daemon)
    cached   ramdiskfs, disk in mode=cached   (classic FUSE)
    null     ramdiskfs, disk in mode=null     (writes dropped, reads zeros: the FUSE floor)
    zram     a zram device made with hot_add and removed with hot_remove
    nbdfuse  nbdfuse over nbdkit's memory plugin (the closest userspace peer), on a Unix socket
             so that nbdfuse can use multi-conn

Each target is measured at two layers: "raw" (fio on the file or device itself) and "ext4"
(fio on a file inside ext4 on a loop device over the target; ext4 goes straight onto the zram
device; null mode has no ext4 because its writes are dropped). The matrix per layer is
{1 MiB seq read, 1 MiB seq write, 4 KiB rand read, 4 KiB rand write} x {QD1 psync, QD16
io_uring (libaio if io_uring fails)} x {1, 2 jobs}, always direct=1, time based. Before any
workload the whole raw target (and then the whole ext4 file) is written once with 1 MiB
writes, so that reads hit data rather than holes.

Design:
- Everything the harness creates (mounts, loop devices, zram devices, child processes,
  directories) is registered with a Janitor, a LIFO stack of undo actions. A target's
  resources are undone when the target is done; the whole stack is unwound again in a
  top-level `finally`, so Ctrl-C, SIGTERM or an exception anywhere still leaves nothing
  behind. Child processes run in their own sessions, so a terminal Ctrl-C reaches only the
  harness, which then tears things down in order (ext4, loop, daemon). Processes are ended
  by the pid the harness got when it started them, never by name.
- A target that cannot be set up (binary missing, zram missing, daemon refusing a mode)
  raises Skip; the reason is printed and recorded, never dropped silently.
- Results go to --out: results.csv / results.json (every figure, machine, notes),
  results.md (one table per layer, cells "value (ratio to tmpfs)"), chart.svg / chart.png
  (gnuplot, grouped bars of ratio to tmpfs, one panel per layer). The project's performance
  targets are checked at the end (PASS/MISS/SKIP lines). --update-docs rewrites the region
  between the bench markers in docs/benchmarks.md and copies the chart to docs/img/.

Python 3.11 standard library only; external tools: fio, util-linux, e2fsprogs, and, when
present, nbdkit + nbdfuse (libnbd-bin) and gnuplot. Must run as root.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import datetime
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs" / "benchmarks.md"
DOCS_CHART = REPO / "docs" / "img" / "benchmarks.svg"
DOCS_BEGIN = "<!-- bench:begin -->"
DOCS_END = "<!-- bench:end -->"

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30

# name -> (fio rw, block size in bytes)
WORKLOADS = {
    "seqread-1m": ("read", MiB),
    "seqwrite-1m": ("write", MiB),
    "randread-4k": ("randread", 4 * KiB),
    "randwrite-4k": ("randwrite", 4 * KiB),
}
QUEUE_DEPTHS = (1, 16)
JOB_COUNTS = (1, 2)
RAMDISKFS_MODES = ("dax", "direct", "cached", "null")
TARGETS = ("tmpfs", *RAMDISKFS_MODES, "zram", "nbdfuse")
LAYERS = ("raw", "ext4")
# Chart colours, fixed per target so that the panels agree.
COLOURS = {"dax": "#1b9e77", "direct": "#7570b3", "cached": "#e7298a", "null": "#a6a6a6",
           "zram": "#e6ab02", "nbdfuse": "#d95f02"}  # fmt: skip
LAYER_TITLES = {"raw": "raw (fio on the file or device)", "ext4": "ext4 on loop (zram: ext4 on the device)"}

# fio's start-up and teardown per run (~0.3 s alone, ~0.55 s on a busy 2-core machine), for the estimate.
FIO_OVERHEAD_S = 0.55
SETUP_ESTIMATE_S = 5.0  # per target: daemon start, preconditioning, mkfs, teardown


class Skip(Exception):
    """A target (or a layer of it) cannot be measured here; str() is the reason."""


class Interrupted(BaseException):
    """SIGINT/SIGTERM/SIGHUP arrived; unwinds to the top level, which cleans up."""


# ---------------------------------------------------------------------------------------------
# Cleanup


class Janitor:
    """LIFO stack of undo actions for everything the harness creates.

    An entry leaves the stack only after its action has run (successfully or with an
    ordinary error, which is reported); if a signal interrupts an action, the entry stays and
    the final unwind() retries it.
    """

    def __init__(self) -> None:
        self._stack: list[tuple[str, Callable[[], None]]] = []

    def push(self, what: str, undo: Callable[[], None]) -> None:
        self._stack.append((what, undo))

    def unwind(self, depth: int = 0) -> None:
        while len(self._stack) > depth:
            what, undo = self._stack[-1]
            try:
                undo()
            except Exception as e:  # keep going: every other resource still needs undoing
                print(f"  cleanup: {what}: {e}", file=sys.stderr)
            self._stack.pop()

    @contextlib.contextmanager
    def scope(self) -> Iterator[None]:
        """Undo everything pushed inside the with-block when it ends."""
        depth = len(self._stack)
        try:
            yield
        finally:
            self.unwind(depth)


_interrupted = False


def _on_signal(signum: int, _frame: object) -> None:
    global _interrupted
    if _interrupted:  # already unwinding: let the cleanup finish
        print(f"\n{signal.Signals(signum).name} again: still cleaning up, please wait", file=sys.stderr)
        return
    _interrupted = True
    print(f"\ninterrupted by {signal.Signals(signum).name}: cleaning up", flush=True)
    raise Interrupted(signal.Signals(signum).name)


# ---------------------------------------------------------------------------------------------
# Small helpers


def parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)i?B?\s*", text, re.IGNORECASE)
    if not m:
        raise argparse.ArgumentTypeError(f"bad size {text!r} (use e.g. 512M, 1G)")
    return int(m.group(1)) << (10 * " KMGT".index(m.group(2).upper() or " "))


def human_size(n: int) -> str:
    for unit, scale in (("G", GiB), ("M", MiB), ("K", KiB)):
        if n % scale == 0 and n >= scale:
            return f"{n // scale}{unit}"
    return str(n)


def csv_list(choices: tuple[str, ...] | None, cast: Callable[[str], object] = str):
    def parse(text: str) -> list:
        items = [cast(t.strip()) for t in text.split(",") if t.strip()]
        if choices is not None:
            bad = [i for i in items if i not in choices]
            if bad:
                raise argparse.ArgumentTypeError(f"unknown {bad}; choose from {', '.join(choices)}")
        return items

    return parse


def run(cmd: list[str], timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    """Run a short command; on failure raise with its stderr."""
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, start_new_session=True)
    if check and p.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} failed ({p.returncode}): {p.stderr.strip() or p.stdout.strip()}")
    return p


def is_mountpoint(path: Path) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == str(path) for line in f)


def wait_exit(proc: subprocess.Popen, timeout: float) -> bool:
    try:
        proc.wait(timeout=timeout)
        return True
    except subprocess.TimeoutExpired:
        return False


def stop_process(proc: subprocess.Popen, name: str) -> None:
    """SIGTERM the process we started (by its pid), then SIGKILL if it does not go."""
    if proc.poll() is not None:
        return
    proc.terminate()
    if not wait_exit(proc, 10):
        print(f"  note: {name} (pid {proc.pid}) ignored SIGTERM for 10 s; killing it", file=sys.stderr)
        proc.kill()
        proc.wait()


def unmount(path: Path) -> None:
    if not is_mountpoint(path):
        return
    if run(["umount", str(path)], check=False).returncode != 0 and is_mountpoint(path):
        print(f"  note: umount {path} failed; detaching it lazily", file=sys.stderr)
        run(["umount", "-l", str(path)])


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


def display_path(path: Path) -> str:
    """PATH relative to the repository when it is inside it, so that docs do not name a checkout."""
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def tool_version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, subprocess.TimeoutExpired, IndexError):
        return "not installed"


def machine_info() -> dict:
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kib = int(next(line for line in f if line.startswith("MemTotal")).split()[1])
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "kernel": os.uname().release,
        "cpu": cpu,
        "nproc": len(os.sched_getaffinity(0)),
        "memory_gib": round(mem_kib / (1 << 20), 1),
        "fio": tool_version(["fio", "--version"]),
        "nbdkit": tool_version(["nbdkit", "--version"]),
        "nbdfuse": tool_version(["nbdfuse", "--version"]),
        "zram_comp_algorithm": "",  # filled in when a zram device is made
        "loadavg_1min_at_start": os.getloadavg()[0],
    }


# ---------------------------------------------------------------------------------------------
# Results


@dataclasses.dataclass
class Result:
    target: str
    fs: str
    workload: str
    qd: int
    jobs: int
    engine: str
    iops: float
    bw_mib_s: float
    p50_us: float | None
    p99_us: float | None
    ratio_tmpfs: float | None = None

    @property
    def row(self) -> tuple[str, int, int]:
        return (self.workload, self.qd, self.jobs)

    def value_text(self) -> str:
        """MiB/s for 1 MiB workloads, kIOPS for 4 KiB ones."""
        if WORKLOADS[self.workload][1] >= MiB:
            return f"{self.bw_mib_s:.0f} MiB/s"
        return f"{self.iops / 1000:.1f} kIOPS"


def row_label(row: tuple[str, int, int]) -> str:
    workload, qd, jobs = row
    return f"{workload} qd{qd} j{jobs}"


def fmt_ratio(r: float | None) -> str:
    return "-" if r is None else (f"{r:.2f}×" if r < 10 else f"{r:.0f}×")


def fmt_us(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


class Results:
    def __init__(self) -> None:
        self.items: list[Result] = []
        self._by_key: dict[tuple, Result] = {}

    def add(self, r: Result) -> None:
        self.items.append(r)
        self._by_key[(r.target, r.fs, *r.row)] = r
        self.update_ratios()

    def get(self, target: str, fs: str, row: tuple[str, int, int]) -> Result | None:
        return self._by_key.get((target, fs, *row))

    def update_ratios(self) -> None:
        # Same block size on both sides, so the bandwidth ratio is also the IOPS ratio.
        for r in self.items:
            base = self.get("tmpfs", r.fs, r.row)
            r.ratio_tmpfs = r.bw_mib_s / base.bw_mib_s if base and base.bw_mib_s > 0 else None


# ---------------------------------------------------------------------------------------------
# Targets


@dataclasses.dataclass
class Backing:
    """What a set-up target offers fio: a raw file or block device, and how ext4 goes on it."""

    path: Path
    is_block: bool = False
    ext4_skip: str | None = None  # why ext4 is not measured on this target, if it is not


class Harness:
    def __init__(self, args: argparse.Namespace, janitor: Janitor, machine: dict) -> None:
        self.args = args
        self.janitor = janitor
        self.machine = machine
        self.results = Results()
        self.notes: dict[str, list[str]] = {t: [] for t in args.targets}
        self.status: dict[str, str] = {}
        self.engines: dict[tuple[str, str], str] = {}  # (target, fs) -> engine used at QD>1
        self.workdir = Path(tempfile.mkdtemp(prefix="ramdiskfs-bench."))
        janitor.push(f"rmdir {self.workdir}", lambda: self.workdir.rmdir())
        self.rows = [(w, q, j) for w in args.workloads for q in args.qd for j in args.jobs]
        self.planned = {t: self._planned_layers(t) for t in args.targets}
        self.total = len(self.rows) * sum(len(layers) for layers in self.planned.values())
        self.done = 0

    # ---- planning

    def note(self, target: str, text: str) -> None:
        self.notes[target].append(text)
        print(f"  note: {target}: {text}")

    def _planned_layers(self, target: str) -> list[str]:
        """Layers to run for a target; reasons for what is left out go to the notes now."""
        why_not = self._unavailable(target)
        if why_not:
            self.status[target] = f"skipped: {why_not}"
            self.note(target, f"skipped: {why_not}")
            return []
        layers = list(self.args.fs)
        if "ext4" in layers and target == "null":
            layers.remove("ext4")
            self.note(target, "ext4 skipped: null mode drops writes, so a filesystem cannot live on it")
        return layers

    def _unavailable(self, target: str) -> str | None:
        if target in RAMDISKFS_MODES:
            binary = self.args.ramdiskfs
            if not (binary.is_file() and os.access(binary, os.X_OK)):
                return f"ramdiskfs binary {binary} not found (scripts/bench.sh builds it)"
        if target == "zram" and not Path("/sys/class/zram-control/hot_add").exists():
            return "zram is not available (/sys/class/zram-control/hot_add missing)"
        if target == "nbdfuse":
            missing = [t for t in ("nbdfuse", "nbdkit") if not shutil.which(t)]
            if missing:
                return f"{' and '.join(missing)} not installed (apt-get install nbdkit libnbd-bin)"
        return None

    # ---- the run

    def run(self) -> None:
        est = self.total * (self.args.runtime + FIO_OVERHEAD_S) + SETUP_ESTIMATE_S * len(self.planned)
        print(
            f"{self.total} fio runs of {self.args.runtime:g} s, raw size {human_size(self.args.size)}, "
            f"ext4 file {human_size(self.args.ext4_size)}; about {est / 60:.1f} min"
        )
        for target, layers in self.planned.items():
            if layers:
                self._run_target(target, layers)

    def _run_target(self, target: str, layers: list[str]) -> None:
        print(f"== {target}")
        started = self.done
        try:
            with self.janitor.scope():
                backing = self._setup(target)
                for fs in layers:
                    if fs == "raw":
                        self._precondition(target, "raw", backing.path, self.args.size)
                        self._run_matrix(target, "raw", backing.path, self.args.size)
                    elif backing.ext4_skip:
                        self.note(target, f"ext4 skipped: {backing.ext4_skip}")
                        self._advance(len(self.rows), f"{target} ext4 skipped")
                    else:
                        self._run_ext4(target, backing)
            self.status[target] = "measured"
        except (Skip, RuntimeError, OSError, subprocess.TimeoutExpired) as e:
            verb = "skipped" if isinstance(e, Skip) else "failed"
            partly = "partly " if any(r.target == target for r in self.results.items) else ""
            self.status[target] = f"{partly}{verb}: {e}"
            self.note(target, f"{partly}{verb}: {e}")
            remaining = len(self.rows) * len(layers) - (self.done - started)
            self._advance(remaining, f"{target} {verb}")

    def _advance(self, n: int, what: str) -> None:
        if n > 0:
            print(f"[{self.done + 1}-{self.done + n}/{self.total}] {what}")
            self.done += n

    def _setup(self, target: str) -> Backing:
        if target == "tmpfs":
            return self._setup_tmpfs()
        if target in RAMDISKFS_MODES:
            return self._setup_ramdiskfs(target)
        if target == "zram":
            return self._setup_zram()
        return self._setup_nbdfuse()

    def _mountpoint(self, name: str) -> Path:
        d = self.workdir / name
        d.mkdir()
        self.janitor.push(f"rmdir {d}", lambda: d.rmdir())
        return d

    def _setup_tmpfs(self) -> Backing:
        mnt = self._mountpoint("tmpfs")
        run(["mount", "-t", "tmpfs", "-o", f"size={self.args.size + 16 * MiB},mode=0700", "tmpfs", str(mnt)])
        self.janitor.push(f"umount {mnt}", lambda: unmount(mnt))
        disk = mnt / "disk"
        with open(disk, "wb") as f:
            f.truncate(self.args.size)
        return Backing(disk)

    def _setup_ramdiskfs(self, mode: str) -> Backing:
        mnt = self._mountpoint(f"ramdiskfs-{mode}")
        log = self.args.out / f"ramdiskfs-{mode}.log"
        max_memory = max(4 * GiB, 2 * self.args.size)
        cmd = [
            str(self.args.ramdiskfs), str(mnt), "-f",
            "--disk", f"bench:{self.args.size}:mode={mode}",
            "--max-memory", str(max_memory),
        ]  # fmt: skip
        with open(log, "wb") as logf:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                    start_new_session=True)  # fmt: skip
        self.janitor.push(f"stop ramdiskfs {mode} (pid {proc.pid})", lambda: self._stop_ramdiskfs(proc, mnt, mode))
        disk = mnt / "bench"
        deadline = time.monotonic() + 10
        while True:
            rc = proc.poll()
            if rc is not None:
                raise Skip(f"ramdiskfs exited with status {rc} for mode={mode}: {tail(log, 1) or '(empty log)'}")
            with contextlib.suppress(OSError):
                if is_mountpoint(mnt) and disk.stat().st_size == self.args.size:
                    break
            if time.monotonic() > deadline:
                print(f"  ramdiskfs {mode} log ({log}):\n{tail(log) or '(empty)'}")
                raise Skip(f"{disk.name} did not appear with size {self.args.size} within 10 s (log {log.name})")
            time.sleep(0.05)
        # A daemon that quietly fell back to another mode would be measured under a false name.
        stats = mnt / ".control" / "bench" / "stats"
        with contextlib.suppress(OSError):
            fields = dict(line.split(None, 1) for line in stats.read_text().splitlines() if " " in line)
            actual = fields.get("mode", mode).strip()
            if actual != mode:
                raise Skip(
                    f"asked for mode={mode} but the disk runs in mode={actual} ({fields.get('fallback', '').strip()})"
                )
        shown = [display_path(self.args.ramdiskfs), "MNT", *cmd[2:]]
        self.note(mode, f"{shlex.join(shown)} (log {log.name})")
        return Backing(disk, ext4_skip="null mode drops writes" if mode == "null" else None)

    def _stop_ramdiskfs(self, proc: subprocess.Popen, mnt: Path, mode: str) -> None:
        """SIGTERM to the daemon's pid: it unmounts itself and exits 0."""
        if proc.poll() is None:
            proc.terminate()
            if not wait_exit(proc, 10):
                print(f"  note: ramdiskfs {mode} did not exit 10 s after SIGTERM; unmounting and killing it")
                run(["fusermount3", "-u", "-z", str(mnt)], check=False)
                proc.kill()
                proc.wait()
            if proc.returncode != 0:
                self.note(mode, f"ramdiskfs exited with status {proc.returncode} after SIGTERM (expected 0)")
        if is_mountpoint(mnt):
            print(f"  note: {mnt} still mounted after ramdiskfs exited; detaching it")
            run(["umount", "-l", str(mnt)], check=False)

    def _setup_zram(self) -> Backing:
        zram_id = int(Path("/sys/class/zram-control/hot_add").read_text())
        dev = Path(f"/dev/zram{zram_id}")
        sysdir = Path(f"/sys/block/zram{zram_id}")
        self.janitor.push(f"zram hot_remove {zram_id}", lambda: self._remove_zram(zram_id))
        algo = re.search(r"\[(\S+)\]", (sysdir / "comp_algorithm").read_text())
        self.machine["zram_comp_algorithm"] = algo.group(1) if algo else "unknown"
        (sysdir / "disksize").write_text(str(self.args.size))
        deadline = time.monotonic() + 5
        while not dev.exists():  # udev makes the node
            if time.monotonic() > deadline:
                raise Skip(f"{dev} did not appear after hot_add")
            time.sleep(0.05)
        self.note("zram", f"{dev}, disksize {human_size(self.args.size)}, {self.machine['zram_comp_algorithm']}")
        return Backing(dev, is_block=True)

    @staticmethod
    def _remove_zram(zram_id: int) -> None:
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

    def _setup_nbdfuse(self) -> Backing:
        if run(["nbdkit", "memory", "--dump-plugin"], check=False).returncode != 0:
            raise Skip("nbdkit has no memory plugin (apt-get install nbdkit)")
        sock = self.workdir / "nbdkit.sock"
        kit_log = self.args.out / "nbdkit.log"
        with open(kit_log, "wb") as logf:
            kit = subprocess.Popen(
                ["nbdkit", "-f", "--exit-with-parent", "-U", str(sock), "memory", f"size={self.args.size}"],
                stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        self.janitor.push(f"remove {sock}", lambda: sock.unlink(missing_ok=True))
        self.janitor.push(f"stop nbdkit (pid {kit.pid})", lambda: stop_process(kit, "nbdkit"))
        self._wait_for(lambda: sock.exists(), kit, "nbdkit socket", kit_log)

        mnt = self._mountpoint("nbdfuse")
        fuse_log = self.args.out / "nbdfuse.log"
        with open(fuse_log, "wb") as logf:
            fuse = subprocess.Popen(
                ["nbdfuse", str(mnt), "--unix", str(sock)],
                stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        self.janitor.push(f"stop nbdfuse (pid {fuse.pid})", lambda: self._stop_nbdfuse(fuse, mnt))
        disk = mnt / "nbd"
        self._wait_for(lambda: is_mountpoint(mnt) and disk.stat().st_size == self.args.size, fuse, "nbdfuse", fuse_log)
        self.note("nbdfuse", f"nbdkit -U SOCKET memory size={human_size(self.args.size)}; nbdfuse MOUNT --unix SOCKET")
        return Backing(disk)

    def _wait_for(self, ready: Callable[[], bool], proc: subprocess.Popen, what: str, log: Path) -> None:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError):
                if ready():
                    return
            if proc.poll() is not None:
                raise Skip(f"{what} exited with status {proc.returncode}: {tail(log, 1) or '(empty log)'}")
            if time.monotonic() > deadline:
                print(f"  {what} log ({log}):\n{tail(log) or '(empty)'}")
                raise Skip(f"{what} not ready within 10 s (log {log.name})")
            time.sleep(0.05)

    @staticmethod
    def _stop_nbdfuse(proc: subprocess.Popen, mnt: Path) -> None:
        """nbdfuse exits when unmounted (its man page: unmount it rather than kill it)."""
        if is_mountpoint(mnt):
            run(["fusermount3", "-u", str(mnt)], check=False)
            if not wait_exit(proc, 10):
                print(f"  note: nbdfuse (pid {proc.pid}) did not exit after fusermount3 -u")
        stop_process(proc, "nbdfuse")
        if is_mountpoint(mnt):
            run(["umount", "-l", str(mnt)], check=False)

    def _run_ext4(self, target: str, backing: Backing) -> None:
        with self.janitor.scope():
            if backing.is_block:
                dev, how = backing.path, "ext4 directly on the device"
            else:
                dev, how = self._attach_loop(backing.path)
            run(["mkfs.ext4", "-F", "-q", "-E", "lazy_itable_init=0,lazy_journal_init=0", str(dev)], timeout=300)
            mnt = self._mountpoint(f"{target}-ext4")
            run(["mount", "-t", "ext4", "-o", "noatime", str(dev), str(mnt)])
            self.janitor.push(f"umount {mnt}", lambda: unmount(mnt))
            self.note(target, how)
            path = mnt / "fio.dat"
            fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
            try:
                os.posix_fallocate(fd, 0, self.args.ext4_size)  # so fio does not lay the file out itself
            finally:
                os.close(fd)
            self._precondition(target, "ext4", path, self.args.ext4_size)
            self._run_matrix(target, "ext4", path, self.args.ext4_size)

    def _attach_loop(self, backing: Path) -> tuple[str, str]:
        p = run(["losetup", "-f", "--show", "--direct-io=on", str(backing)], check=False)
        if p.returncode != 0:
            p = run(["losetup", "-f", "--show", str(backing)])
            refused = p.stderr.strip() or "refused"
        else:
            refused = None
        dev = p.stdout.strip()
        self.janitor.push(f"losetup -d {dev}", lambda: run(["losetup", "-d", dev]))
        dio = Path(f"/sys/block/{Path(dev).name}/loop/dio")
        if dio.read_text().strip() == "1":
            return dev, f"ext4 on {dev} (losetup --direct-io=on)"
        return dev, f"ext4 on {dev} (buffered loop: direct I/O {refused or 'not taken by the kernel'})"

    # ---- fio

    def _precondition(self, target: str, fs: str, path: Path, size: int) -> None:
        """Write every byte once, so that read workloads read data, not holes."""
        t0 = time.monotonic()
        cmd = [
            "fio", "--name=precondition", f"--filename={path}", f"--size={size}", "--rw=write", "--bs=1M",
            "--direct=1", "--ioengine=psync", "--invalidate=0", "--output-format=json",
        ]  # fmt: skip
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, start_new_session=True)
        if p.returncode != 0:
            raise Skip(f"preconditioning {fs} failed: {p.stderr.strip()[-300:]}")
        print(f"  {target} {fs}: preconditioned {human_size(size)} in {time.monotonic() - t0:.1f} s")

    def _run_matrix(self, target: str, fs: str, path: Path, size: int) -> None:
        for row in self.rows:
            self.done += 1
            print(f"[{self.done}/{self.total}] {target} {fs} {row_label(row)} ... ", end="", flush=True)
            result, error = self._fio(target, fs, path, size, row)
            if result is None:
                print(f"FAILED: {error}")
                self.note(target, f"{fs} {row_label(row)} failed: {error}")
                continue
            self.results.add(result)
            ratio = f" ({fmt_ratio(result.ratio_tmpfs)} tmpfs)" if result.ratio_tmpfs is not None else ""
            print(f"{result.value_text()}{ratio}, p50 {fmt_us(result.p50_us)} µs, p99 {fmt_us(result.p99_us)} µs")

    def _fio(self, target: str, fs: str, path: Path, size: int, row: tuple[str, int, int]):
        """One fio run; returns (Result, None) or (None, error text)."""
        qd = row[1]
        engine = "psync" if qd == 1 else self.engines.get((target, fs), "io_uring")
        result, error = self._fio_once(target, fs, path, size, row, engine)
        if result is None and engine == "io_uring":
            fallback, fallback_error = self._fio_once(target, fs, path, size, row, "libaio")
            if fallback is not None:
                self.engines[(target, fs)] = "libaio"
                print(f"(io_uring failed: {error}; using libaio for {target} {fs}) ", end="")
                self.note(target, f"{fs}: io_uring failed ({error}); QD{qd} runs use libaio")
                return fallback, None
            error = f"{error}; libaio: {fallback_error}"
        return result, error

    def _fio_once(self, target: str, fs: str, path: Path, size: int, row: tuple[str, int, int], engine: str):
        workload, qd, jobs = row
        rw, bs = WORKLOADS[workload]
        per_job = size // jobs // MiB * MiB  # each job gets its own region of the file
        cmd = [
            "fio", f"--name={workload}", f"--filename={path}", f"--rw={rw}", f"--bs={bs}",
            "--direct=1", f"--ioengine={engine}", f"--iodepth={qd}",
            f"--numjobs={jobs}", "--thread", "--group_reporting",
            f"--size={per_job}", f"--offset_increment={per_job}",
            "--time_based", f"--runtime={int(self.args.runtime * 1000)}ms",
            "--invalidate=0", "--randrepeat=0", "--norandommap", "--output-format=json",
        ]  # fmt: skip
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=self.args.runtime + 120, start_new_session=True)
        if p.returncode != 0:
            lines = (p.stderr.strip() or p.stdout.strip() or f"exit status {p.returncode}").splitlines()
            return None, lines[-1][:200]
        try:
            job = json.loads(p.stdout[p.stdout.index("{") :])["jobs"][0]
        except (ValueError, KeyError, IndexError) as e:
            return None, f"unreadable fio output ({e})"
        side = job["read" if "read" in rw else "write"]
        pct = side.get("clat_ns", {}).get("percentile", {})
        p50, p99 = pct.get("50.000000"), pct.get("99.000000")
        return Result(
            target=target, fs=fs, workload=workload, qd=qd, jobs=jobs, engine=engine,
            iops=side["iops"], bw_mib_s=side["bw_bytes"] / MiB,
            p50_us=p50 / 1000 if p50 is not None else None,
            p99_us=p99 / 1000 if p99 is not None else None,
        ), None  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Project targets (docs/benchmarks.md, "Targets")


@dataclasses.dataclass
class Check:
    name: str
    target: str
    fs: str
    reference: str
    factor: float
    workloads: tuple[str, ...]


CHECKS = (
    Check("dax >= 0.9x tmpfs, raw, every workload", "dax", "raw", "tmpfs", 0.9, tuple(WORKLOADS)),
    Check("direct >= 0.8x tmpfs, raw, 1 MiB sequential", "direct", "raw", "tmpfs", 0.8, ("seqread-1m", "seqwrite-1m")),
    Check("direct >= 0.9x null, raw, 4 KiB random", "direct", "raw", "null", 0.9, ("randread-4k", "randwrite-4k")),
    *(
        Check(f"{m} >= 10x nbdfuse, raw, 4 KiB random", m, "raw", "nbdfuse", 10.0, ("randread-4k", "randwrite-4k"))
        for m in RAMDISKFS_MODES
    ),
    Check(
        "ext4/loop over dax >= 0.9x ext4/loop over tmpfs, every workload", "dax", "ext4", "tmpfs", 0.9, tuple(WORKLOADS)
    ),
)


def evaluate_checks(results: Results, rows: list[tuple[str, int, int]], status: dict[str, str]) -> list[dict]:
    out = []
    for c in CHECKS:
        pairs = []
        for row in rows:
            if row[0] not in c.workloads:
                continue
            mine, ref = results.get(c.target, c.fs, row), results.get(c.reference, c.fs, row)
            if mine and ref and ref.bw_mib_s > 0:
                pairs.append((row, mine.bw_mib_s / ref.bw_mib_s))
        if not pairs:
            missing = [
                t for t in (c.target, c.reference) if not any(r.target == t and r.fs == c.fs for r in results.items)
            ]
            why = (
                "; ".join(f"{t} {c.fs}: {status.get(t, 'not selected')}" for t in missing)
                or "no matching workloads selected"
            )
            out.append({"check": c.name, "verdict": "SKIP", "detail": why})
            continue
        worst_row, worst = min(pairs, key=lambda p: p[1])
        below = [p for p in pairs if p[1] < c.factor]
        verdict = "MISS" if below else "PASS"
        met = len(pairs) - len(below)
        detail = f"min {worst:.2f}x at {row_label(worst_row)}; {met}/{len(pairs)} rows meet {c.factor:g}x"
        if below:
            detail += "; below: " + ", ".join(f"{row_label(r)} {v:.2f}x" for r, v in below)
        out.append({"check": c.name, "verdict": verdict, "detail": detail, "min_ratio": round(worst, 3)})
    return out


# ---------------------------------------------------------------------------------------------
# Output


def markdown_tables(results: Results, targets: list[str], rows: list[tuple[str, int, int]]) -> str:
    parts = []
    for fs in LAYERS:
        cols = [t for t in targets if any(r.target == t and r.fs == fs for r in results.items)]
        if not cols:
            continue
        lines = [
            f"#### {LAYER_TITLES[fs]}",
            "",
            "| workload | unit | " + " | ".join(cols) + " |",
            "|---|---|" + "---:|" * len(cols),
        ]
        for row in rows:
            unit = "MiB/s" if WORKLOADS[row[0]][1] >= MiB else "kIOPS"
            cells = []
            for t in cols:
                r = results.get(t, fs, row)
                if r is None:
                    cells.append("-")
                    continue
                value = f"{r.bw_mib_s:.0f}" if unit == "MiB/s" else f"{r.iops / 1000:.1f}"
                cells.append(f"{value} ({fmt_ratio(r.ratio_tmpfs)})")
            lines.append(f"| {row_label(row)} | {unit} | " + " | ".join(cells) + " |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts) if parts else "(no results)"


def machine_line(m: dict) -> str:
    return (
        f"{m['cpu']}, {m['nproc']} CPUs, {m['memory_gib']} GiB RAM; kernel {m['kernel']}; {m['fio']}; "
        f"{m['nbdkit']}; {m['nbdfuse']}; load average {m['loadavg_1min_at_start']:.1f} at start"
    )


def notes_md(harness: Harness) -> str:
    lines = []
    for t in harness.args.targets:
        status = harness.status.get(t, "not run (interrupted)")
        lines.append(f"- **{t}**: {status}")
        lines.extend(f"  - {n}" for n in harness.notes[t] if not n.startswith("skipped"))
    return "\n".join(lines)


def write_outputs(harness: Harness, checks: list[dict], command: str) -> str:
    out, results = harness.args.out, harness.results
    fields = [f.name for f in dataclasses.fields(Result)]
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(fields)
        for r in results.items:
            values = [getattr(r, k) for k in fields]
            w.writerow([round(v, 4) if isinstance(v, float) else v for v in values])
    doc = {
        "command": command,
        "machine": harness.machine,
        "options": {
            "size": harness.args.size, "ext4_size": harness.args.ext4_size, "runtime_s": harness.args.runtime,
            "targets": harness.args.targets, "fs": harness.args.fs, "workloads": harness.args.workloads,
            "qd": harness.args.qd, "jobs": harness.args.jobs, "ramdiskfs": str(harness.args.ramdiskfs),
        },
        "targets": {
            t: {"status": harness.status.get(t, "not run"), "notes": harness.notes[t]} for t in harness.args.targets
        },
        "results": [dataclasses.asdict(r) for r in results.items],
        "checks": checks,
    }  # fmt: skip
    (out / "results.json").write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    tables = markdown_tables(results, harness.args.targets, harness.rows)
    md = [
        "# ramdiskfs fio benchmark",
        "",
        f"- Date: {harness.machine['date']}",
        f"- Machine: {machine_line(harness.machine)}",
        f"- Command: `{command}`",
        f"- fio: direct=1, {harness.args.runtime:g} s per run, raw size {human_size(harness.args.size)}, "
        f"ext4 file {human_size(harness.args.ext4_size)}; QD1 = psync, QD16 = io_uring",
        "- Cells: MiB/s (1 MiB workloads) or kIOPS (4 KiB workloads), and the ratio to tmpfs of the same"
        " layer/workload/QD/jobs.",
        "",
        tables,
        "",
        "#### Target checks",
        "",
        *[f"- {c['verdict']} {c['check']}: {c['detail']}" for c in checks],
        "",
        "#### Targets and notes",
        "",
        notes_md(harness),
        "",
    ]  # fmt: skip
    (out / "results.md").write_text("\n".join(md))
    return tables


def draw_chart(harness: Harness) -> list[Path]:
    """Grouped bars of ratio to tmpfs per workload row, one panel per layer; returns the images."""
    out, results = harness.args.out, harness.results
    if not shutil.which("gnuplot"):
        print("note: gnuplot not installed (apt-get install gnuplot-nox): no chart")
        return []
    panels = []
    for fs in LAYERS:
        cols = [
            t
            for t in harness.args.targets
            if t != "tmpfs" and any(r.target == t and r.fs == fs and r.ratio_tmpfs for r in results.items)
        ]
        if not cols:
            continue
        data = out / f"chart-{fs}.dat"
        with open(data, "w") as f:
            f.write("# row\t" + "\t".join(cols) + "\n")
            for row in harness.rows:
                vals = []
                for t in cols:
                    r = results.get(t, fs, row)
                    vals.append(f"{r.ratio_tmpfs:.4f}" if r and r.ratio_tmpfs else "NaN")
                f.write(row_label(row) + "\t" + "\t".join(vals) + "\n")
        panels.append((fs, data, cols))
    if not panels:
        print("note: no ratios to tmpfs (tmpfs not measured?): no chart")
        return []
    ratios = [r.ratio_tmpfs for r in results.items if r.ratio_tmpfs and r.target != "tmpfs"]
    ymin, ymax = min(ratios + [0.5]) / 1.5, max(ratios + [1.0]) * 1.5
    images = []
    terminals = [("chart.svg", "svg size 1400,{h} dynamic font 'sans,11' background rgb 'white'")]
    listing = run(["gnuplot", "-e", "set terminal"], check=False)
    if "pngcairo" in listing.stdout + listing.stderr:
        terminals.append(("chart.png", "pngcairo size 1400,{h} font 'sans,10'"))
    for name, term in terminals:
        script = [
            f"set terminal {term.format(h=480 * len(panels))}",
            f"set output '{out / name}'",
            "set datafile separator '\\t'",
            "set datafile missing 'NaN'",
            "set style data histograms",
            "set style histogram clustered gap 1",
            "set style fill solid 0.85 border -1",
            "set logscale y",
            f"set yrange [{ymin:.4f}:{ymax:.4f}]",
            "set ylabel 'throughput / tmpfs (log scale)'",
            "set grid ytics",
            "set xtics nomirror rotate by 30 right font ',9'",
            "set arrow from graph 0, first 1 to graph 1, first 1 nohead dashtype 2 linecolor rgb 'black'",
            "set key outside right top vertical",
            "set bmargin 6",
            f"set multiplot layout {len(panels)},1 title 'ramdiskfs fio benchmark: ratio to tmpfs "
            f"({harness.machine['kernel']}, {harness.args.runtime:g} s runs)'",
        ]  # fmt: skip
        for fs, data, cols in panels:
            bars = [
                f"'{data}' using {i + 2}{':xtic(1)' if i == 0 else ''} title '{t}' linecolor rgb '{COLOURS[t]}'"
                for i, t in enumerate(cols)
            ]
            script += [
                f"set title '{LAYER_TITLES[fs]}'",
                "plot " + ", ".join(bars) + ", NaN with lines dashtype 2 linecolor rgb 'black' title 'tmpfs = 1'",
            ]
        script.append("unset multiplot")
        p = subprocess.run(["gnuplot"], input="\n".join(script) + "\n", capture_output=True, text=True, timeout=60)
        if p.returncode != 0 or not (out / name).exists():
            print(f"note: gnuplot failed for {name}: {p.stderr.strip()[-300:]}")
            continue
        images.append(out / name)
    return images


def update_docs(harness: Harness, tables: str, checks: list[dict], command: str, chart: Path | None) -> None:
    text = DOCS.read_text()
    if DOCS_BEGIN not in text or DOCS_END not in text:
        print(f"note: {DOCS} has no {DOCS_BEGIN} ... {DOCS_END} region: docs not updated")
        return
    chart_md = ""
    if chart:
        DOCS_CHART.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(chart, DOCS_CHART)
        chart_md = f"![Throughput relative to tmpfs]({DOCS_CHART.relative_to(DOCS.parent).as_posix()})\n\n"
    m = harness.machine
    region = "\n".join(
        [
            DOCS_BEGIN,
            "<!-- Generated by bench/harness.py --update-docs; edit the harness, not this region. -->",
            "",
            f"- Date: {m['date']}",
            f"- Machine: {m['cpu']}, {m['nproc']} CPUs, {m['memory_gib']} GiB RAM; "
            f"load average {m['loadavg_1min_at_start']:.1f} at start",
            f"- Kernel: {m['kernel']}; {m['fio']}; {m['nbdkit']}; {m['nbdfuse']}; "
            f"zram {m['zram_comp_algorithm'] or 'not used'}",
            f"- Command: `{command}`",
            f"- Runs: direct=1, {harness.args.runtime:g} s each; raw size {human_size(harness.args.size)}, "
            f"ext4 file {human_size(harness.args.ext4_size)}",
            "",
            "Cells: MiB/s (1 MiB) or kIOPS (4 KiB), and the ratio to tmpfs.",
            "",
            tables,
            "",
            "#### Where the targets stand",
            "",
            *[f"- {c['verdict']} {c['check']}: {c['detail']}" for c in checks],
            "",
            "#### Targets measured and skipped",
            "",
            notes_md(harness),
            "",
            chart_md + DOCS_END,
        ]
    )
    start, end = text.index(DOCS_BEGIN), text.index(DOCS_END) + len(DOCS_END)
    DOCS.write_text(text[:start] + region + text[end:])
    print(f"updated {DOCS.relative_to(REPO)}" + (f" and {DOCS_CHART.relative_to(REPO)}" if chart else ""))


def leftovers(workdir: Path) -> list[str]:
    """Anything of ours still mounted or attached after cleanup."""
    found = []
    with open("/proc/self/mountinfo") as f:
        found += [f"mount {line.split()[4]}" for line in f if line.split()[4].startswith(str(workdir))]
    loops = run(["losetup", "-a"], check=False).stdout
    found += [f"loop {line}" for line in loops.splitlines() if str(workdir) in line]
    if workdir.exists():
        found.append(f"directory {workdir}")
    return found


# ---------------------------------------------------------------------------------------------
# Command line


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="fio harness: ramdiskfs (dax/direct/cached/null) vs tmpfs, zram and nbdfuse, raw and ext4-on-loop.",
        epilog="Run as root. Results go to --out; see docs/benchmarks.md.",
    )
    p.add_argument("--size", type=parse_size, help="raw target size (default 512M; 128M with --quick)")
    p.add_argument("--ext4-size", type=parse_size, help="fio file inside ext4 (default 3/4 of --size)")
    p.add_argument("--runtime", type=float, help="seconds per fio run (default 1.5; 0.5 with --quick)")
    p.add_argument("--quick", action="store_true", help="smoke run: 128M, 0.5 s runs, whole matrix")
    p.add_argument("--targets", type=csv_list(TARGETS), default=list(TARGETS), help=f"subset of {','.join(TARGETS)}")
    p.add_argument("--fs", type=csv_list(LAYERS), default=list(LAYERS), help="subset of raw,ext4")
    p.add_argument(
        "--workloads", type=csv_list(tuple(WORKLOADS)), default=list(WORKLOADS), help=f"subset of {','.join(WORKLOADS)}"
    )
    p.add_argument(
        "--qd", type=csv_list(None, int), default=list(QUEUE_DEPTHS), help="queue depths (default 1,16; 1 = psync)"
    )
    p.add_argument(
        "--jobs", type=csv_list(None, int), default=list(JOB_COUNTS), help="fio numjobs values (default 1,2)"
    )
    p.add_argument("--out", type=Path, help="results directory (default bench/results/<timestamp>)")
    p.add_argument(
        "--ramdiskfs",
        type=Path,
        default=REPO / "build-release" / "ramdiskfs",
        help="daemon binary (default build-release/ramdiskfs)",
    )
    p.add_argument("--update-docs", action=argparse.BooleanOptionalAction, default=False,
                   help="rewrite the bench region of docs/benchmarks.md and docs/img/benchmarks.svg")  # fmt: skip
    args = p.parse_args(argv)
    args.size = args.size or (128 * MiB if args.quick else 512 * MiB)
    args.runtime = args.runtime or (0.5 if args.quick else 1.5)
    args.ext4_size = args.ext4_size or args.size * 3 // 4 // MiB * MiB
    if args.size % MiB or args.size < 16 * MiB:
        p.error("--size must be a whole number of MiB, at least 16M")
    if not 4 * MiB <= args.ext4_size <= args.size * 7 // 8:
        p.error("--ext4-size must be at least 4M and leave ext4 room for its metadata (at most 7/8 of --size)")
    if args.runtime <= 0 or any(q < 1 for q in args.qd) or any(j < 1 for j in args.jobs):
        p.error("--runtime, --qd and --jobs must be positive")
    args.out = (args.out or REPO / "bench" / "results" / datetime.datetime.now().strftime("%Y%m%d-%H%M%S")).resolve()
    args.ramdiskfs = args.ramdiskfs if args.ramdiskfs.is_absolute() else (Path.cwd() / args.ramdiskfs)
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("bench/harness.py: must run as root (mounts, loop devices, zram)", file=sys.stderr)
        return 2
    if not shutil.which("fio"):
        print("bench/harness.py: fio not installed (apt-get install fio)", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    command = shlex.join(["bench/harness.py", *argv])
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)

    machine = machine_info()
    print(f"machine: {machine_line(machine)}")
    if machine["loadavg_1min_at_start"] > 0.5 * machine["nproc"]:
        print(
            f"note: load average {machine['loadavg_1min_at_start']:.1f} on {machine['nproc']} CPUs: "
            "something else is running, the figures will be noisy"
        )
    print(f"results: {args.out}")
    janitor = Janitor()
    status = 0
    harness = None
    try:
        harness = Harness(args, janitor, machine)
        harness.run()
    except Interrupted:
        status = 130
    finally:
        janitor.unwind()
        if harness:
            left = leftovers(harness.workdir)
            for item in left:
                print(f"WARNING: left behind: {item}", file=sys.stderr)
            status = status or (1 if left else 0)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)  # nothing left to clean up
    if harness is None:
        return status

    checks = evaluate_checks(harness.results, harness.rows, harness.status)
    tables = write_outputs(harness, checks, command)
    images = draw_chart(harness)
    print()
    print(tables)
    print()
    for c in checks:
        print(f"{c['verdict']} {c['check']}: {c['detail']}")
    skipped = {t: s for t, s in harness.status.items() if s.startswith("skipped")}
    for t, s in skipped.items():
        print(f"note: {t} {s}")
    print(f"\nresults: {args.out}/results.{{md,csv,json}}" + "".join(f", {i.name}" for i in images))
    if args.update_docs and status == 0:
        svg = next((i for i in images if i.suffix == ".svg"), None)
        update_docs(harness, tables, checks, command, svg)
    elif args.update_docs:
        print("note: run incomplete: docs not updated")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
