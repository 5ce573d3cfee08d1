"""What a result was measured with: the machine, the tools, and the ramdiskfs build.

Recorded in results.json and printed with every table, so that two runs can be compared
(or not) by looking at what differed: commit and dirty flag, build type, libfuse, kernel,
fio, CPU, core count, load average at the start.
"""

from __future__ import annotations

import datetime
import os
import re
import subprocess
from pathlib import Path


def tool_version(cmd: list[str]) -> str:
    """First line of a tool's version output, or "not installed"."""
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, subprocess.TimeoutExpired, IndexError):
        return "not installed"


def _git(source: Path, *args: str) -> str | None:
    try:
        p = subprocess.run(["git", "-C", str(source), *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return p.stdout.strip() if p.returncode == 0 else None


def build_info(binary: Path, repo: Path) -> dict:
    """The ramdiskfs build that is measured: the source tree it was built from (the build
    directory's CMakeCache.txt names it; else this repository), its commit and whether the
    tree had uncommitted changes to tracked files, and the CMake build type."""
    cache = binary.parent / "CMakeCache.txt"
    fields = {}
    if cache.is_file():
        for line in cache.read_text(errors="replace").splitlines():
            m = re.match(r"(CMAKE_BUILD_TYPE|CMAKE_HOME_DIRECTORY):[A-Z]+=(.*)", line)
            if m:
                fields[m.group(1)] = m.group(2)
    source = Path(fields.get("CMAKE_HOME_DIRECTORY") or repo)
    commit = _git(source, "rev-parse", "HEAD")
    status = _git(source, "status", "--porcelain", "--untracked-files=no")
    return {
        "binary": str(binary),
        "source": str(source),
        "commit": commit or "unknown",
        "dirty": None if status is None else bool(status),
        "build_type": fields.get("CMAKE_BUILD_TYPE") or ("unknown (no CMakeCache.txt)" if not cache.is_file() else "none"),
        "libfuse": tool_version(["pkg-config", "--modversion", "fuse3"]),
    }


def newer_sources(binary: Path, source: Path) -> list[str]:
    """The tracked files under src/, include/ and CMakeLists.txt of `source`, the tree the
    binary was built from (build_info's "source"), that changed after the binary was
    linked, newest first: a non-empty list means the binary is not what the commit says."""
    if not binary.is_file():
        return []
    listed = _git(source, "ls-files", "--", "src", "include", "CMakeLists.txt")
    if not listed:
        return []
    built = binary.stat().st_mtime
    newer = []
    for name in listed.splitlines():
        path = source / name
        try:
            mtime = path.stat().st_mtime
        except OSError:
            continue
        if mtime > built:
            newer.append((mtime, name))
    return [name for _, name in sorted(newer, reverse=True)]


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
        "loadavg_at_start": [round(v, 2) for v in os.getloadavg()],
        "loadavg_1min_at_start": os.getloadavg()[0],
    }


def build_line(b: dict) -> str:
    dirty = {True: " (dirty: uncommitted changes)", False: "", None: " (dirty: unknown)"}[b["dirty"]]
    return f"ramdiskfs {b['commit'][:12]}{dirty}, {b['build_type']} build; libfuse {b['libfuse']}"


def machine_line(m: dict) -> str:
    load = "/".join(f"{v:.1f}" for v in m["loadavg_at_start"])
    return (
        f"{m['cpu']}, {m['nproc']} CPUs, {m['memory_gib']} GiB RAM; kernel {m['kernel']}; {m['fio']}; "
        f"{m['nbdkit']}; {m['nbdfuse']}; load average {load} (1/5/15 min) at start"
    )
