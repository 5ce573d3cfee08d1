#!/usr/bin/env python3
"""End-to-end fio harness: ramdiskfs against tmpfs, zram and nbdfuse, side by side.

    sudo bench/harness.py [--quick] [--repeat N] [--targets a,b,...] [--add-target ...] ...

Every target in bench/targets.py's table (--list-targets) is set up fresh, driven with fio
at two layers — "raw" (fio on the file or device) and "ext4" (fio on a file in ext4 on a
loop device over the target; straight on the device for zram; not on null, which drops
writes) — and torn down, one target at a time, in rounds (--repeat): round 1 runs every
target once, round 2 again, and so on. The matrix per layer is {1 MiB seq read, 1 MiB seq
write, 4 KiB rand read, 4 KiB rand write} x {QD1 psync, QD16 io_uring} x {1, 2 jobs}.
Cells are reported as the median with the min–max over rounds, ratios to tmpfs per round.

Modules: targets.py (the table, set-up and teardown of each kind, ext4 on loop),
fio_runner.py (workloads, preconditioning, one fio run), runner.py (rounds), results.py
(cells, ratios, the project's checks), report.py (tables, CSV/JSON, chart, docs),
machine.py (what was measured with), janitor.py (cleanup and signals). Mounts and
processes go through the integration tests' helpers, test/integration/support/mounts.py.

Python 3.11 standard library only; external tools: fio, util-linux, e2fsprogs, and, when
present, nbdkit + nbdfuse (libnbd-bin) and gnuplot. Must run as root. See
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import shlex
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(1, str(REPO / "test" / "integration"))  # support/: the tests' mount and process helpers

import janitor as janitor_mod  # noqa: E402  (after the path above)
import report  # noqa: E402
from fio_runner import JOB_COUNTS, QUEUE_DEPTHS, WORKLOADS  # noqa: E402
from machine import build_info, build_line, machine_info, machine_line, newer_sources  # noqa: E402
from cells import evaluate_checks  # noqa: E402
from runner import Runner  # noqa: E402
from support.mounts import loops_backed_by, mounts_under  # noqa: E402
from support.units import MiB  # noqa: E402
from targets import TARGETS, human_size, parse_added_target  # noqa: E402

DOCS = REPO / "docs" / "benchmarks.md"
DOCS_CHART = REPO / "docs" / "img" / "benchmarks.svg"
LAYERS = report.LAYERS
DEFAULTS = {"size": 512 * MiB, "runtime": 1.5, "repeat": 3}
QUICK = {"size": 128 * MiB, "runtime": 0.5, "repeat": 1}


def parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)i?B?\s*", text, re.IGNORECASE)
    if not m:
        raise argparse.ArgumentTypeError(f"bad size {text!r} (use e.g. 512M, 1G)")
    return int(m.group(1)) << (10 * " KMGT".index(m.group(2).upper() or " "))


def csv_list(choices, cast=str):
    def parse(text: str) -> list:
        items = [cast(t.strip()) for t in text.split(",") if t.strip()]
        if choices is not None:
            bad = [i for i in items if i not in choices]
            if bad:
                raise argparse.ArgumentTypeError(f"unknown {bad}; choose from {', '.join(choices)}")
        return items

    return parse


def display_path(path: Path) -> str:
    """PATH relative to the repository when it is inside it, so that docs do not name a checkout."""
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def parse_args(argv: list[str]) -> argparse.Namespace:
    default_names = [t.name for t in TARGETS if t.default]
    p = argparse.ArgumentParser(
        description="fio harness: ramdiskfs (dax/direct/cached/null, and variants) vs tmpfs, zram and nbdfuse, "
        "raw and ext4-on-loop, in interleaved rounds.",
        epilog="Run as root. Results go to --out; see docs/benchmarks.md.",
    )
    p.add_argument("--size", type=parse_size, help="raw target size (default 512M; 128M with --quick)")
    p.add_argument("--ext4-size", type=parse_size, help="fio file inside ext4 (default 3/4 of --size)")
    p.add_argument("--runtime", type=float, help="seconds per fio run (default 1.5; 0.5 with --quick)")
    p.add_argument("--repeat", type=int, help="rounds; every target runs once per round (default 3; 1 with --quick)")
    p.add_argument("--quick", action="store_true", help="smoke run: 128M, 0.5 s runs, one round; never touches docs/")
    p.add_argument("--targets", help=f"comma-separated subset, in run order (default {','.join(default_names)}; "
                   "see --list-targets)")  # fmt: skip
    p.add_argument("--add-target", action="append", default=[], metavar="'NAME=mode=MODE[:KEY=VALUE...] [ARGS...]'",
                   help="one more ramdiskfs target for this run: disk options as in --disk, then daemon "
                   "arguments; it is appended to --targets (repeatable)")  # fmt: skip
    p.add_argument("--list-targets", action="store_true", help="print the target table and exit")
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
                   help="on a full run, rewrite the bench region of docs/benchmarks.md and docs/img/benchmarks.svg "
                   "(ignored, with a note, on any other run)")  # fmt: skip
    p.add_argument("--check-full-run", action="store_true",
                   help="exit 0 if these options make a full run (the one docs/ shows), 1 if not; run nothing")  # fmt: skip
    args = p.parse_args(argv)

    known = {t.name: t for t in TARGETS}
    added = []
    for text in args.add_target:
        try:
            t = parse_added_target(text, known)
        except ValueError as e:
            p.error(str(e))
        known[t.name] = t
        added.append(t.name)
    try:
        names = csv_list(tuple(known))(args.targets) if args.targets else list(default_names)
    except argparse.ArgumentTypeError as e:
        p.error(f"--targets: {e}")
    names += [n for n in added if n not in names]
    if len(set(names)) != len(names):
        p.error("--targets names a target twice")
    args.targets = [known[n] for n in names]
    args.all_targets = list(known.values())

    base = QUICK if args.quick else DEFAULTS
    args.full_run = (
        not args.quick and args.size is None and args.ext4_size is None and args.runtime is None
        and (args.repeat is None or args.repeat >= DEFAULTS["repeat"]) and names == default_names
        and args.fs == list(LAYERS) and args.workloads == list(WORKLOADS)
        and args.qd == list(QUEUE_DEPTHS) and args.jobs == list(JOB_COUNTS)
    )  # fmt: skip
    args.size = args.size or base["size"]
    args.runtime = args.runtime or base["runtime"]
    args.repeat = args.repeat or base["repeat"]
    args.ext4_size = args.ext4_size or args.size * 3 // 4 // MiB * MiB
    if args.size % MiB or args.size < 16 * MiB:
        p.error("--size must be a whole number of MiB, at least 16M")
    if not 4 * MiB <= args.ext4_size <= args.size * 7 // 8:
        p.error("--ext4-size must be at least 4M and leave ext4 room for its metadata (at most 7/8 of --size)")
    if args.runtime <= 0 or args.repeat < 1 or any(q < 1 for q in args.qd) or any(j < 1 for j in args.jobs):
        p.error("--runtime, --repeat, --qd and --jobs must be positive")
    args.out = (args.out or REPO / "bench" / "results" / datetime.datetime.now().strftime("%Y%m%d-%H%M%S")).resolve()
    args.ramdiskfs = args.ramdiskfs if args.ramdiskfs.is_absolute() else (Path.cwd() / args.ramdiskfs)
    return args


def list_targets(args: argparse.Namespace) -> None:
    for t in args.all_targets:
        print(f"{t.name:16} {t.about}" + ("" if t.default else "  (not in the default run)"))


def leftovers(workdir: Path) -> list[str]:
    """Anything of ours still mounted or attached after cleanup."""
    found = [f"mount {m}" for m in mounts_under(workdir)]
    found += [f"loop {dev}" for dev in loops_backed_by(workdir)]
    if workdir.exists():
        found.append(f"directory {workdir}")
    return found


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.check_full_run:
        return 0 if args.full_run else 1
    if args.list_targets:
        list_targets(args)
        return 0
    if os.geteuid() != 0:
        print("bench/harness.py: must run as root (mounts, loop devices, zram)", file=sys.stderr)
        return 2
    if not shutil.which("fio"):
        print("bench/harness.py: fio not installed (apt-get install fio)", file=sys.stderr)
        return 2
    build = build_info(args.ramdiskfs, REPO)
    stale = newer_sources(args.ramdiskfs, Path(build["source"]))
    if stale:
        # A binary older than its sources would be measured under the commit's name.
        shown = ", ".join(stale[:3]) + (f" and {len(stale) - 3} more" if len(stale) > 3 else "")
        print(
            f"bench/harness.py: {display_path(args.ramdiskfs)} is older than {shown}: rebuild it "
            f"(cmake --build {display_path(args.ramdiskfs.parent)} -j2) or run scripts/bench.sh, "
            "which builds first",
            file=sys.stderr,
        )
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    command = shlex.join(["bench/harness.py", *argv])
    janitor_mod.catch_signals()

    machine = machine_info()
    print(f"machine: {machine_line(machine)}")
    print(f"build: {build_line(build)} ({display_path(args.ramdiskfs)})")
    if machine["loadavg_1min_at_start"] > 0.5 * machine["nproc"]:
        print(
            f"note: load average {machine['loadavg_1min_at_start']:.1f} on {machine['nproc']} CPUs: "
            "something else is running, the figures will be noisy"
        )
    print(f"results: {args.out}")
    janitor = janitor_mod.Janitor()
    status = 0
    runner = None
    try:
        runner = Runner(args, janitor, machine, display_path)
        runner.run()
    except janitor_mod.Interrupted:
        status = 130
    finally:
        janitor.unwind()
        if runner:
            left = leftovers(runner.workdir)
            for item in left:
                print(f"WARNING: left behind: {item}", file=sys.stderr)
            status = status or (1 if left else 0)
    janitor_mod.release_signals()
    if runner is None:
        return status

    machine["loadavg_at_end"] = [round(v, 2) for v in os.getloadavg()]
    options = {
        "size": args.size, "size_text": human_size(args.size), "ext4_size": args.ext4_size,
        "ext4_size_text": human_size(args.ext4_size), "runtime_s": args.runtime, "repeat": args.repeat,
        "quick": args.quick, "full_run": args.full_run, "targets": [t.name for t in args.targets],
        "fs": args.fs, "workloads": args.workloads, "qd": args.qd, "jobs": args.jobs,
        "ramdiskfs": display_path(args.ramdiskfs),
    }  # fmt: skip
    run_ = report.Run(
        results=runner.results, targets=args.targets, rows=runner.rows, repeat=args.repeat, machine=machine,
        build=build, options=options, status=runner.status, notes=runner.notes, command=command, out=args.out,
        colours={t.name: t.colour for t in args.targets},
    )  # fmt: skip
    checks = evaluate_checks(runner.results, runner.rows, runner.status)
    tables = report.write_outputs(run_, checks)
    images = report.draw_chart(run_)
    print()
    print(tables)
    print()
    for c in checks:
        print(f"{c['verdict']} {c['check']}: {c['detail']}")
    for name, s in runner.status.items():
        if "skipped" in s:
            print(f"note: {name} {s}")
    print(f"\nresults: {args.out}/results.{{md,csv,json}}, cells.csv" + "".join(f", {i.name}" for i in images))
    if args.update_docs and not args.full_run:
        print("note: not a full run (--quick, a subset or changed sizes): docs/ not updated")
    elif args.update_docs and status == 0:
        svg = next((i for i in images if i.suffix == ".svg"), None)
        report.update_docs(run_, DOCS, DOCS_CHART, tables, checks, svg)
    elif args.update_docs:
        print("note: run incomplete: docs not updated")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
