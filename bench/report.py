"""What a run leaves: results.csv (every sample), cells.csv (every cell: median, min, max,
ratio), results.json (all of it with the machine, build and options), results.md (tables,
checks, notes), chart.svg/.png (gnuplot, ratio to tmpfs with min–max error bars), and, for
a full run with --update-docs, the bench region of docs/benchmarks.md.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
import subprocess
from pathlib import Path

from fio_runner import Sample, is_bandwidth, row_label
from machine import build_line, machine_line
from cells import Results, fmt_ratio, fmt_value
from support.mounts import run

LAYERS = ("raw", "ext4")
LAYER_TITLES = {"raw": "raw (fio on the file or device)", "ext4": "ext4 on loop (zram: ext4 on the device)"}
DOCS_BEGIN = "<!-- bench:begin -->"
DOCS_END = "<!-- bench:end -->"


@dataclasses.dataclass
class Run:
    """Everything a report is made from."""

    results: Results
    targets: list  # targets.Target, in the order of the run
    rows: list
    repeat: int
    machine: dict
    build: dict
    options: dict
    status: dict[str, str]
    notes: dict[str, list[str]]
    command: str
    out: Path
    colours: dict[str, str]


def _cell_text(run_: Run, name: str, fs: str, row) -> str:
    v = run_.results.value(name, fs, row)
    if v is None:
        return "-"
    text = fmt_value(row[0], v.median)
    if v.n > 1:
        text += f" [{fmt_value(row[0], v.low)}–{fmt_value(row[0], v.high)}]"
    r = run_.results.ratio(name, "tmpfs", fs, row)
    return text + (f" ({fmt_ratio(r.median)})" if r else "")


def markdown_tables(run_: Run) -> str:
    parts = []
    for fs in LAYERS:
        cols = [t.name for t in run_.targets if run_.results.has(t.name, fs)]
        if not cols:
            continue
        lines = [
            f"#### {LAYER_TITLES[fs]}",
            "",
            "| workload | unit | " + " | ".join(cols) + " |",
            "|---|---|" + "---:|" * len(cols),
        ]
        for row in run_.rows:
            unit = "MiB/s" if is_bandwidth(row[0]) else "kIOPS"
            cells = [_cell_text(run_, t, fs, row) for t in cols]
            lines.append(f"| {row_label(row)} | {unit} | " + " | ".join(cells) + " |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts) if parts else "(no results)"


def cells_legend(repeat: int) -> str:
    if repeat == 1:
        return "Cells: MiB/s (1 MiB) or kIOPS (4 KiB), and the ratio to tmpfs; one round, so no spread."
    return (
        f"Cells: median of {repeat} rounds in MiB/s (1 MiB) or kIOPS (4 KiB), [min–max of the rounds], "
        "and (the median of the per-round ratios to tmpfs). Targets ran interleaved, round by round."
    )


def notes_md(run_: Run) -> str:
    lines = []
    for t in run_.targets:
        lines.append(f"- **{t.name}**: {run_.status.get(t.name, 'not run (interrupted)')}")
        lines.extend(f"  - {n}" for n in run_.notes[t.name] if not n.startswith("skipped"))
    return "\n".join(lines)


def header_lines(run_: Run) -> list[str]:
    m, o = run_.machine, run_.options
    return [
        f"- Date: {m['date']}",
        f"- Build: {build_line(run_.build)}",
        f"- Machine: {machine_line(m)}; zram {m['zram_comp_algorithm'] or 'not used'}",
        f"- Command: `{run_.command}`",
        f"- fio: direct=1, {o['runtime_s']:g} s per run, {run_.repeat} round(s), raw size {o['size_text']}, "
        f"ext4 file {o['ext4_size_text']}; QD1 = psync, deeper = io_uring",
    ]


def body_lines(run_: Run, tables: str, checks: list[dict], checks_title: str, notes_title: str) -> list[str]:
    """What results.md and the docs region both show: header, legend, tables, checks, notes."""
    return [
        *header_lines(run_),
        "",
        cells_legend(run_.repeat),
        "",
        tables,
        "",
        f"#### {checks_title}",
        "",
        *[f"- {c['verdict']} {c['check']}: {c['detail']}" for c in checks],
        "",
        f"#### {notes_title}",
        "",
        notes_md(run_),
        "",
    ]


def write_outputs(run_: Run, checks: list[dict]) -> str:
    """results.csv, cells.csv, results.json, results.md; returns the tables."""
    out, results = run_.out, run_.results
    fields = [f.name for f in dataclasses.fields(Sample)]
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([*fields, "ratio_tmpfs_same_round"])
        for s in results.samples:
            values = [getattr(s, k) for k in fields] + [results.round_ratio(s, "tmpfs")]
            w.writerow([round(v, 4) if isinstance(v, float) else v for v in values])
    cells = []
    for t in run_.targets:
        for fs in LAYERS:
            for row in run_.rows:
                v = results.value(t.name, fs, row)
                if v is None:
                    continue
                r = results.ratio(t.name, "tmpfs", fs, row)
                cells.append({
                    "target": t.name, "fs": fs, "workload": row[0], "qd": row[1], "jobs": row[2],
                    "unit": "MiB/s" if is_bandwidth(row[0]) else "kIOPS", "rounds": v.n,
                    "median": round(v.median, 4), "min": round(v.low, 4), "max": round(v.high, 4),
                    "p50_us_median": results.latency(t.name, fs, row, "p50_us"),
                    "p99_us_median": results.latency(t.name, fs, row, "p99_us"),
                    "ratio_tmpfs_median": round(r.median, 4) if r else None,
                    "ratio_tmpfs_min": round(r.low, 4) if r else None,
                    "ratio_tmpfs_max": round(r.high, 4) if r else None,
                })  # fmt: skip
    if cells:
        with open(out / "cells.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(cells[0]))
            w.writeheader()
            w.writerows(cells)
    doc = {
        "command": run_.command,
        "machine": run_.machine,
        "build": run_.build,
        "options": run_.options,
        "targets": {
            t.name: {
                "status": run_.status.get(t.name, "not run"), "notes": run_.notes[t.name], "about": t.about,
                "mode": t.mode, "disk_options": list(t.disk_options), "daemon_args": list(t.daemon_args),
            }
            for t in run_.targets
        },
        "samples": [dataclasses.asdict(s) for s in results.samples],
        "cells": cells,
        "checks": checks,
    }  # fmt: skip
    (out / "results.json").write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    tables = markdown_tables(run_)
    md = ["# ramdiskfs fio benchmark", "", *body_lines(run_, tables, checks, "Target checks", "Targets and notes")]
    (out / "results.md").write_text("\n".join(md))
    return tables


def draw_chart(run_: Run) -> list[Path]:
    """Grouped bars of the median per-round ratio to tmpfs per workload row, with min–max
    error bars, one panel per layer; returns the images made."""
    out, results = run_.out, run_.results
    if not shutil.which("gnuplot"):
        print("note: gnuplot not installed (apt-get install gnuplot-nox): no chart")
        return []
    panels = []
    all_ratios = []
    for fs in LAYERS:
        cols = [
            t.name
            for t in run_.targets
            if t.name != "tmpfs" and any(results.ratio(t.name, "tmpfs", fs, row) for row in run_.rows)
        ]
        if not cols:
            continue
        data = out / f"chart-{fs}.dat"
        with open(data, "w") as f:
            f.write("# row\t" + "\t".join(f"{t} median\t{t} min\t{t} max" for t in cols) + "\n")
            for row in run_.rows:
                vals = []
                for t in cols:
                    r = results.ratio(t, "tmpfs", fs, row)
                    vals += [f"{r.median:.4f}", f"{r.low:.4f}", f"{r.high:.4f}"] if r else ["NaN"] * 3
                    all_ratios += [r.low, r.high] if r else []
                f.write(row_label(row) + "\t" + "\t".join(vals) + "\n")
        panels.append((fs, data, cols))
    if not panels:
        print("note: no ratios to tmpfs (tmpfs not measured?): no chart")
        return []
    ymin, ymax = min(all_ratios + [0.5]) / 1.5, max(all_ratios + [1.0]) * 1.5
    images = []
    terminals = [("chart.svg", "svg size 1400,{h} dynamic font 'sans,11' background rgb 'white'")]
    listing = run("gnuplot", "-e", "set terminal", check=False)
    if "pngcairo" in listing.stdout + listing.stderr:
        terminals.append(("chart.png", "pngcairo size 1400,{h} font 'sans,10'"))
    spread = f"bars: median of {run_.repeat} rounds, whiskers: min-max" if run_.repeat > 1 else "one round"
    for name, term in terminals:
        script = [
            f"set terminal {term.format(h=480 * len(panels))}",
            f"set output '{out / name}'",
            "set datafile separator '\\t'",
            "set datafile missing 'NaN'",
            "set style data histograms",
            "set style histogram errorbars gap 1 lw 1",
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
            f"({run_.machine['kernel']}, {run_.options['runtime_s']:g} s runs; {spread})'",
        ]  # fmt: skip
        for fs, data, cols in panels:
            bars = [
                f"'{data}' using {3 * i + 2}:{3 * i + 3}:{3 * i + 4}{':xtic(1)' if i == 0 else ''} "
                f"title '{t}' linecolor rgb '{run_.colours[t]}'"
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


def update_docs(run_: Run, docs: Path, docs_chart: Path, tables: str, checks: list[dict], chart: Path | None) -> None:
    """Rewrites the region between the bench markers in `docs` (and copies the chart)."""
    text = docs.read_text()
    if DOCS_BEGIN not in text or DOCS_END not in text:
        print(f"note: {docs} has no {DOCS_BEGIN} ... {DOCS_END} region: docs not updated")
        return
    chart_md = ""
    if chart:
        docs_chart.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(chart, docs_chart)
        chart_md = f"![Throughput relative to tmpfs]({docs_chart.relative_to(docs.parent).as_posix()})\n\n"
    region = "\n".join(
        [
            DOCS_BEGIN,
            "<!-- Generated by bench/harness.py --update-docs; edit the harness, not this region. -->",
            "",
            *body_lines(run_, tables, checks, "Where the targets stand", "Targets measured and skipped"),
            chart_md + DOCS_END,
        ]
    )
    start, end = text.index(DOCS_BEGIN), text.index(DOCS_END) + len(DOCS_END)
    docs.write_text(text[:start] + region + text[end:])
    print(f"updated {docs}" + (f" and {docs_chart}" if chart else ""))
