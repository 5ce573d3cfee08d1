"""The run: rounds of every selected target, each set up fresh, measured, torn down.

Round 1 runs every target once (raw, then ext4), round 2 runs every target again, and so
on: drift of a shared machine (other work, thermal, page cache) then hits every target
alike instead of the ones that happened to run last. Targets never run at the same time,
so they never compete with each other for memory or CPU.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path

import fio_runner
import targets as targets_mod
from fio_runner import Row, Sample, row_label
from janitor import Janitor, Skip
from cells import Results, fmt_ratio, fmt_us, fmt_value
from support.mounts import CommandFailed
from targets import Lab, Target, human_size

SETUP_ESTIMATE_S = 5.0  # per target and round: daemon start, preconditioning, mkfs, teardown


class Runner:
    def __init__(self, args: argparse.Namespace, janitor: Janitor, machine: dict, display) -> None:
        self.args = args
        self.janitor = janitor
        self.results = Results()
        self.targets: list[Target] = args.targets
        self.notes: dict[str, list[str]] = {t.name: [] for t in self.targets}
        self.status: dict[str, str] = {}
        self.engines: dict[tuple[str, str], str] = {}  # (target, fs) -> engine used at QD>1
        self.rounds_done: dict[str, int] = {t.name: 0 for t in self.targets}
        self.skipped: set[str] = set()
        self.workdir = Path(tempfile.mkdtemp(prefix="ramdiskfs-bench."))
        janitor.push(f"rmdir {self.workdir}", lambda: self.workdir.rmdir())
        self.lab = Lab(janitor, self.workdir, args.out, args.size, args.ramdiskfs, machine, self.note, display)
        self.rows: list[Row] = [(w, q, j) for w in args.workloads for q in args.qd for j in args.jobs]
        self.planned = {t.name: self._planned_layers(t) for t in self.targets}
        self.total = args.repeat * len(self.rows) * sum(len(layers) for layers in self.planned.values())
        self.done = 0

    def note(self, target: str, text: str) -> None:
        self.notes[target].append(text)
        print(f"  note: {target}: {text}")

    def _planned_layers(self, target: Target) -> list[str]:
        """Layers to run for a target; reasons for what is left out go to the notes now."""
        why_not = targets_mod.unavailable(target, self.args.ramdiskfs)
        if why_not:
            self.status[target.name] = f"skipped: {why_not}"
            self.note(target.name, f"skipped: {why_not}")
            self.skipped.add(target.name)
            return []
        layers = list(self.args.fs)
        if "ext4" in layers and target.ext4_skip:
            layers.remove("ext4")
            self.note(target.name, f"ext4 skipped: {target.ext4_skip}")
        return layers

    def estimate_s(self) -> float:
        runs = self.total * (self.args.runtime + fio_runner.FIO_OVERHEAD_S)
        return runs + SETUP_ESTIMATE_S * self.args.repeat * sum(1 for layers in self.planned.values() if layers)

    def run(self) -> None:
        print(
            f"{self.total} fio runs ({self.args.repeat} round(s)) of {self.args.runtime:g} s, raw size "
            f"{human_size(self.args.size)}, ext4 file {human_size(self.args.ext4_size)}; "
            f"about {self.estimate_s() / 60:.1f} min"
        )
        for round_no in range(1, self.args.repeat + 1):
            print(f"==== round {round_no}/{self.args.repeat}")
            for target in self.targets:
                layers = self.planned[target.name]
                if not layers:
                    continue
                if target.name in self.skipped:
                    self._advance(len(self.rows) * len(layers), f"r{round_no} {target.name} skipped")
                    continue
                self._run_target(target, layers, round_no)
        for t in self.targets:
            if t.name not in self.status:
                n = self.rounds_done[t.name]
                self.status[t.name] = "measured" if n == self.args.repeat else f"measured in {n}/{self.args.repeat} rounds"

    def _run_target(self, target: Target, layers: list[str], round_no: int) -> None:
        print(f"== r{round_no} {target.name}")
        started = self.done
        try:
            with self.janitor.scope():
                backing = targets_mod.set_up(target, self.lab, round_no)
                for fs in layers:
                    if fs == "raw":
                        self._measure(target, "raw", backing.path, self.args.size, round_no)
                    else:
                        with self.janitor.scope():
                            path, how = targets_mod.ext4_on(target, backing, self.lab, self.args.ext4_size)
                            if round_no == 1:
                                self.note(target.name, how)
                            self._measure(target, "ext4", path, self.args.ext4_size, round_no)
            self.rounds_done[target.name] += 1
        except Skip as e:
            # What made a target skip (a missing feature, a refused option) does not change
            # between rounds: it is not tried again.
            partly = "partly " if self.results.has(target.name, "raw") or self.results.has(target.name, "ext4") else ""
            self.status[target.name] = f"{partly}skipped: {e}"
            self.note(target.name, f"{partly}skipped in round {round_no}: {e}")
            self.skipped.add(target.name)
            self._advance(len(self.rows) * len(layers) - (self.done - started), f"r{round_no} {target.name} skipped")
        except (RuntimeError, OSError, subprocess.TimeoutExpired, CommandFailed) as e:
            self.note(target.name, f"round {round_no} failed: {e}")
            self._advance(len(self.rows) * len(layers) - (self.done - started), f"r{round_no} {target.name} failed")

    def _advance(self, n: int, what: str) -> None:
        if n > 0:
            print(f"[{self.done + 1}-{self.done + n}/{self.total}] {what}")
            self.done += n

    def _measure(self, target: Target, fs: str, path: Path, size: int, round_no: int) -> None:
        try:
            seconds = fio_runner.precondition(path, size)
        except RuntimeError as e:
            raise Skip(f"{fs}: {e}") from None
        print(f"  {target.name} {fs}: preconditioned {human_size(size)} in {seconds:.1f} s")
        for row in self.rows:
            self.done += 1
            print(f"[{self.done}/{self.total}] r{round_no} {target.name} {fs} {row_label(row)} ... ", end="", flush=True)
            sample, error = self._fio(target.name, fs, path, size, row, round_no)
            if sample is None:
                print(f"FAILED: {error}")
                self.note(target.name, f"round {round_no} {fs} {row_label(row)} failed: {error}")
                continue
            self.results.add(sample)
            r = self.results.round_ratio(sample, "tmpfs") if target.name != "tmpfs" else None
            ratio = f" ({fmt_ratio(r)} tmpfs)" if r is not None else ""
            unit = "MiB/s" if fio_runner.is_bandwidth(row[0]) else "kIOPS"
            print(
                f"{fmt_value(row[0], sample.value())} {unit}{ratio}, "
                f"p50 {fmt_us(sample.p50_us)} µs, p99 {fmt_us(sample.p99_us)} µs"
            )

    def _fio(self, target: str, fs: str, path: Path, size: int, row: Row, round_no: int):
        """One fio run, with the io_uring -> libaio fallback; returns (Sample, None) or (None, error)."""
        qd = row[1]
        engine = "psync" if qd == 1 else self.engines.get((target, fs), "io_uring")
        figures, error = fio_runner.run_fio(path, size, row, engine, self.args.runtime)
        if figures is None and engine == "io_uring":
            fallback, fallback_error = fio_runner.run_fio(path, size, row, "libaio", self.args.runtime)
            if fallback is not None:
                self.engines[(target, fs)] = engine = "libaio"
                print(f"(io_uring failed: {error}; using libaio for {target} {fs}) ", end="")
                self.note(target, f"{fs}: io_uring failed ({error}); QD{qd} runs use libaio")
                figures, error = fallback, None
            else:
                error = f"{error}; libaio: {fallback_error}"
        if figures is None:
            return None, error
        return Sample(target, fs, *row, round=round_no, engine=engine, **figures), None
