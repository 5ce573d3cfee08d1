#!/usr/bin/env python3
"""Benchmarks of the volatile write cache (docs/benchmarks.md, "Volatile
write cache"). Not a test: it prints figures.

    bench/cache_bench.py iops [ROUNDS] [unseen]
                                         4 KiB randwrite QD1, direct disk, cache
                                         none vs volatile, interleaved; unseen:
                                         the cache is engaged after the fill
    bench/cache_bench.py flush           fsync time vs unflushed bytes, 64 MiB
                                         and 4 GiB disks

Needs root and /dev/fuse; RAMDISKFS_BIN (default build/ramdiskfs).
"""

import json
import os
import pathlib
import random
import signal
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
BIN = os.environ.get("RAMDISKFS_BIN", str(ROOT / "build" / "ramdiskfs"))
MiB = 1 << 20


class Mount:
    def __init__(self, *disks):
        self.dir = tempfile.mkdtemp(prefix="cache_bench.")
        self.path = pathlib.Path(self.dir) / "m"
        self.path.mkdir()
        args = [BIN, str(self.path), "-f"]
        for d in disks:
            args += ["--disk", d]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(500):
            if os.path.ismount(self.path):
                break
            time.sleep(0.01)

    def ctl(self, disk, name, text):
        with open(self.path / ".control" / disk / name, "w") as f:
            f.write(text)

    def close(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(20)


def fio_iops(path, seconds):
    out = subprocess.run(
        ["fio", "--name=w", f"--filename={path}", "--rw=randwrite", "--bs=4k", "--iodepth=1",
         "--ioengine=psync", "--direct=1", "--size=256M", f"--runtime={seconds}",
         "--time_based", "--randrepeat=1", "--output-format=json"],
        capture_output=True, text=True, check=True).stdout
    return json.loads(out)["jobs"][0]["write"]["iops"]


def iops(rounds, unseen):
    # Two 256 MiB direct disks, both filled first (so a first touch copies a
    # real pre-image); the volatile one writes back past 64 MiB, as a drive's
    # cache would, so it runs in a steady state rather than growing. It is
    # volatile from the start, so the fill went through the cache, as on a
    # disk made with cache=volatile; `unseen` turns the cache on after the
    # fill instead (each page's first pre-image is then a pread).
    m = Mount("none:256M:mode=direct", "vol:256M:mode=direct")
    try:
        if not unseen:
            m.ctl("vol", "cache", "volatile")
        for disk in ("none", "vol"):
            with open(m.path / disk, "r+b") as f:
                for _ in range(256):
                    f.write(os.urandom(MiB))
                os.fsync(f.fileno())
        m.ctl("vol", "cache", "volatile")
        m.ctl("vol", "cache_size", "64M")
        results = {"none": [], "volatile": []}
        for r in range(rounds):
            for disk, key in (("none", "none"), ("vol", "volatile")) if r % 2 == 0 else (
                    ("vol", "volatile"), ("none", "none")):
                results[key].append(fio_iops(m.path / disk, 10))
                if disk == "vol":
                    fd = os.open(m.path / "vol", os.O_RDWR)
                    os.fsync(fd)
                    os.close(fd)
        for key, values in results.items():
            print(f"{key:9s} " + " ".join(f"{v:8.0f}" for v in values)
                  + f"   median {sorted(values)[len(values) // 2]:8.0f}")
        ratio = sorted(results["volatile"])[rounds // 2] / sorted(results["none"])[rounds // 2]
        print(f"volatile / none = {ratio:.3f}")
    finally:
        m.close()


def flush():
    m = Mount("small:64M:cache=volatile", "big:4G:cache=volatile")
    try:
        rng = random.Random(1)
        for disk, size in (("small", 64 * MiB), ("big", 4096 * MiB)):
            fd = os.open(m.path / disk, os.O_RDWR)
            try:
                for unflushed in (1 * MiB, 8 * MiB, 32 * MiB):
                    samples = []
                    for _ in range(3):
                        block = os.urandom(4096)
                        for _ in range(unflushed // 4096):
                            os.pwrite(fd, block, rng.randrange(size // 4096) * 4096)
                        t0 = time.perf_counter()
                        os.fsync(fd)
                        samples.append(time.perf_counter() - t0)
                    print(f"{disk:5s} disk {size // MiB:5d} MiB: {unflushed // MiB:3d} MiB unflushed"
                          f" -> fsync {sorted(samples)[1] * 1000:7.2f} ms (median of 3)")
                t0 = time.perf_counter()
                os.fsync(fd)
                print(f"{disk:5s} disk: empty flush {(time.perf_counter() - t0) * 1e6:.0f} us")
            finally:
                os.close(fd)
    finally:
        m.close()


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else ""
    if what == "iops":
        iops(int(sys.argv[2]) if len(sys.argv) > 2 else 3, "unseen" in sys.argv[3:])
    elif what == "flush":
        flush()
    else:
        sys.exit(__doc__)
