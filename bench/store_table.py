#!/usr/bin/env python3
"""Turns Google Benchmark JSON from build-release/store_bench into a markdown table.

    bench/store_table.py STORE_BENCH.json [--update-docs docs/benchmarks.md]

Prints the table (one row per benchmark: I/O size, threads, throughput, time per
operation). With --update-docs it also replaces the region between
"<!-- store:begin -->" and "<!-- store:end -->" in the given file (adding the
markers under "## Store microbenchmarks" the first time).
"""

import argparse
import json
import pathlib
import re
import sys

BEGIN, END = "<!-- store:begin -->", "<!-- store:end -->"


def table(data):
    ctx = data.get("context", {})
    lines = [
        f"- Date: {ctx.get('date', '?')}; host {ctx.get('host_name', '?')}, "
        f"{ctx.get('num_cpus', '?')} CPUs at {ctx.get('mhz_per_cpu', '?')} MHz "
        "(store_bench built Release)",
        "- Command: `build-release/store_bench` (one 256 MiB disk, random aligned offsets; "
        "Read* over written pages, ReadHole over never-written pages)",
        "",
        "| benchmark | store | I/O size | threads | GiB/s | ns per op |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for b in data.get("benchmarks", []):
        if b.get("run_type") == "aggregate" or b.get("error_occurred"):
            continue
        name = b["name"]
        m = re.match(r"BM_(\w+?)(?:/(\d+))?(?:/real_time)?(?:/threads:(\d+))?$", name)
        kind, size, threads = (m.group(1), m.group(2), m.group(3)) if m else (name, None, None)
        size_s = "4 KiB" if size == "4096" else "1 MiB" if size == str(1 << 20) else (size or "4 KiB")
        gib = b.get("bytes_per_second", 0) / (1 << 30)
        lines.append(f"| {kind} | {b.get('label', '')} | {size_s} | {threads or 1} | "
                     f"{gib:.2f} | {b.get('real_time', 0):.0f} |")
    return "\n".join(lines)


def update(doc, text):
    body = doc.read_text()
    block = f"{BEGIN}\n{text}\n{END}"
    if BEGIN in body and END in body:
        body = body[:body.index(BEGIN)] + block + body[body.index(END) + len(END):]
    else:
        head = "## Store microbenchmarks (Google Benchmark)"
        if head not in body:
            body += f"\n{head}\n"
        start = body.index(head) + len(head)
        nxt = body.find("\n## ", start)
        rest = body[nxt:] if nxt >= 0 else "\n"
        body = body[:start] + "\n\n" + block + "\n" + rest
    doc.write_text(body)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("json")
    ap.add_argument("--update-docs", metavar="DOC")
    args = ap.parse_args()
    text = table(json.loads(pathlib.Path(args.json).read_text()))
    print(text)
    if args.update_docs:
        update(pathlib.Path(args.update_docs), text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
