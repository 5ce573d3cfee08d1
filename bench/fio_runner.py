"""fio: the workload matrix, preconditioning, and one measured run.

Every run is direct=1 and time based, on one file or device, with `thread group_reporting`
(one process, one aggregated result). QD1 runs use psync; deeper queues use io_uring, or
libaio where io_uring fails on a target (the caller remembers the fallback).
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import time
from pathlib import Path

from support.units import KiB, MiB

# name -> (fio rw, block size in bytes)
WORKLOADS = {
    "seqread-1m": ("read", MiB),
    "seqwrite-1m": ("write", MiB),
    "randread-4k": ("randread", 4 * KiB),
    "randwrite-4k": ("randwrite", 4 * KiB),
}
QUEUE_DEPTHS = (1, 16)
JOB_COUNTS = (1, 2)

# fio's start-up and teardown per run (~0.3 s alone, ~0.55 s on a busy 2-core machine), for the estimate.
FIO_OVERHEAD_S = 0.55

Row = tuple[str, int, int]  # (workload, queue depth, jobs)


def row_label(row: Row) -> str:
    workload, qd, jobs = row
    return f"{workload} qd{qd} j{jobs}"


def is_bandwidth(workload: str) -> bool:
    """1 MiB workloads are reported in MiB/s, 4 KiB ones in kIOPS."""
    return WORKLOADS[workload][1] >= MiB


@dataclasses.dataclass
class Sample:
    """One fio run of one target, layer and row, in one round."""

    target: str
    fs: str
    workload: str
    qd: int
    jobs: int
    round: int
    engine: str
    iops: float
    bw_mib_s: float
    p50_us: float | None
    p99_us: float | None

    @property
    def row(self) -> Row:
        return (self.workload, self.qd, self.jobs)

    def value(self) -> float:
        """The figure the tables show: MiB/s or kIOPS."""
        return self.bw_mib_s if is_bandwidth(self.workload) else self.iops / 1000


def precondition(path: Path, size: int) -> float:
    """Writes every byte once with 1 MiB direct writes, so that read workloads read data,
    not holes. Returns the seconds it took; raises RuntimeError if fio fails."""
    t0 = time.monotonic()
    cmd = [
        "fio", "--name=precondition", f"--filename={path}", f"--size={size}", "--rw=write", "--bs=1M",
        "--direct=1", "--ioengine=psync", "--invalidate=0", "--output-format=json",
    ]  # fmt: skip
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, start_new_session=True)
    if p.returncode != 0:
        raise RuntimeError(f"preconditioning failed: {p.stderr.strip()[-300:]}")
    return time.monotonic() - t0


def run_fio(path: Path, size: int, row: Row, engine: str, runtime: float) -> tuple[dict | None, str | None]:
    """One fio run; returns (figures, None) or (None, error text). Figures: iops,
    bw_mib_s, p50_us, p99_us (completion latency)."""
    workload, qd, jobs = row
    rw, bs = WORKLOADS[workload]
    per_job = size // jobs // MiB * MiB  # each job gets its own region of the file
    cmd = [
        "fio", f"--name={workload}", f"--filename={path}", f"--rw={rw}", f"--bs={bs}",
        "--direct=1", f"--ioengine={engine}", f"--iodepth={qd}",
        f"--numjobs={jobs}", "--thread", "--group_reporting",
        f"--size={per_job}", f"--offset_increment={per_job}",
        "--time_based", f"--runtime={int(runtime * 1000)}ms",
        "--invalidate=0", "--randrepeat=0", "--norandommap", "--output-format=json",
    ]  # fmt: skip
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=runtime + 120, start_new_session=True)
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
    return {
        "iops": side["iops"],
        "bw_mib_s": side["bw_bytes"] / MiB,
        "p50_us": p50 / 1000 if p50 is not None else None,
        "p99_us": p99 / 1000 if p99 is not None else None,
    }, None
