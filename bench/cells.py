"""Samples, the cells made of them, ratios, and the project's performance checks.

A cell (target, layer, workload row) holds one sample per round. It is reported as the
median with the min–max of its samples. A ratio of target A to target B is taken per round
(A and B ran in the same round, minutes apart, so drift of the machine hits both alike)
and reported as the median and min–max of those per-round ratios. The block size is the
same on both sides, so a bandwidth ratio is also the IOPS ratio.
"""

from __future__ import annotations

import dataclasses
import statistics

from fio_runner import WORKLOADS, Row, Sample, is_bandwidth, row_label


@dataclasses.dataclass
class Spread:
    median: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, values: list[float]) -> Spread | None:
        return cls(statistics.median(values), min(values), max(values), len(values)) if values else None


def fmt_ratio(r: float | None) -> str:
    return "-" if r is None else (f"{r:.2f}×" if r < 10 else f"{r:.0f}×")


def fmt_us(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def fmt_value(workload: str, v: float) -> str:
    """MiB/s as a whole number, kIOPS with one decimal."""
    return f"{v:.0f}" if is_bandwidth(workload) else f"{v:.1f}"


class Results:
    def __init__(self) -> None:
        self.samples: list[Sample] = []
        self._by_key: dict[tuple, list[Sample]] = {}

    def add(self, s: Sample) -> None:
        self.samples.append(s)
        self._by_key.setdefault((s.target, s.fs, *s.row), []).append(s)

    def cell(self, target: str, fs: str, row: Row) -> list[Sample]:
        return self._by_key.get((target, fs, *row), [])

    def has(self, target: str, fs: str) -> bool:
        return any(s.target == target and s.fs == fs for s in self.samples)

    def value(self, target: str, fs: str, row: Row) -> Spread | None:
        """MiB/s (1 MiB workloads) or kIOPS (4 KiB workloads): median, min, max over rounds."""
        return Spread.of([s.value() for s in self.cell(target, fs, row)])

    def latency(self, target: str, fs: str, row: Row, which: str) -> float | None:
        """Median over rounds of p50_us or p99_us."""
        values = [getattr(s, which) for s in self.cell(target, fs, row) if getattr(s, which) is not None]
        return statistics.median(values) if values else None

    def ratio(self, target: str, reference: str, fs: str, row: Row) -> Spread | None:
        """target / reference throughput, per round in which both were measured."""
        ref = {s.round: s.bw_mib_s for s in self.cell(reference, fs, row)}
        return Spread.of([s.bw_mib_s / ref[s.round] for s in self.cell(target, fs, row) if ref.get(s.round, 0) > 0])

    def round_ratio(self, s: Sample, reference: str) -> float | None:
        """The ratio of one sample to the reference's sample of the same round, if there is one."""
        ref = next((r for r in self.cell(reference, s.fs, s.row) if r.round == s.round), None)
        return s.bw_mib_s / ref.bw_mib_s if ref and ref.bw_mib_s > 0 else None


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
        for m in ("dax", "direct", "cached", "null")
    ),
    Check(
        "ext4/loop over dax >= 0.9x ext4/loop over tmpfs, every workload", "dax", "ext4", "tmpfs", 0.9, tuple(WORKLOADS)
    ),
)


def evaluate_checks(results: Results, rows: list[Row], status: dict[str, str]) -> list[dict]:
    """One verdict per check, on the median per-round ratio of every selected row:
    PASS (every row meets the factor), MISS (with the rows below it), SKIP (nothing to compare)."""
    out = []
    for c in CHECKS:
        pairs = []
        for row in rows:
            if row[0] not in c.workloads:
                continue
            r = results.ratio(c.target, c.reference, c.fs, row)
            if r:
                pairs.append((row, r))
        if not pairs:
            missing = [t for t in (c.target, c.reference) if not results.has(t, c.fs)]
            why = (
                "; ".join(f"{t} {c.fs}: {status.get(t, 'not selected')}" for t in missing)
                or "no matching workloads selected"
            )
            out.append({"check": c.name, "verdict": "SKIP", "detail": why})
            continue
        worst_row, worst = min(pairs, key=lambda p: p[1].median)
        below = [p for p in pairs if p[1].median < c.factor]
        verdict = "MISS" if below else "PASS"
        met = len(pairs) - len(below)
        detail = (
            f"min {worst.median:.2f}x (rounds {worst.low:.2f}-{worst.high:.2f}) at {row_label(worst_row)}; "
            f"{met}/{len(pairs)} rows meet {c.factor:g}x (median of rounds)"
        )
        if below:
            detail += "; below: " + ", ".join(f"{row_label(r)} {v.median:.2f}x" for r, v in below)
        out.append({"check": c.name, "verdict": verdict, "detail": detail, "min_ratio": round(worst.median, 3)})
    return out
