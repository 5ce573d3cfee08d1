#!/usr/bin/env python3
"""A filesystem workload for ramdiskfs-crashtest: creates, appends, renames,
unlinks and fsyncs in $CRASHTEST_DIR (the same sequence every run, so a cut
replays), and records in $CRASHTEST_STATE/durable every file whose content
and name were made durable (fsync of the file, then of its directory; an
append's fsync), withdrawing the promise before a rename or unlink.

    fsops.py [OPS]        the workload (default 150 operations)
    fsops.py --check      after recovery: every recorded file exists and
                          starts with the recorded bytes (later appends that
                          were not fsynced may or may not be there)
"""

import hashlib
import os
import random
import sys

ROOT = os.environ.get("CRASHTEST_DIR", ".")
STATE = os.environ.get("CRASHTEST_STATE", ".")
LEDGER = os.path.join(STATE, "durable")


def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def record(name, data):
    # The ledger lives outside the disk: it survives the cut.
    with open(LEDGER, "a") as f:
        f.write(f"{name} {len(data)}:{hashlib.sha256(data).hexdigest()}\n")
        f.flush()
        os.fsync(f.fileno())


def workload(ops):
    rng = random.Random(12345)
    os.makedirs(os.path.join(ROOT, "d"), exist_ok=True)
    live = {}  # name -> content of files we created
    for i in range(ops):
        op = rng.random()
        if op < 0.35 or not live:  # create + write (+ fsync)
            name = os.path.join("d", f"f{i}")
            data = rng.randbytes(rng.choice([100, 4096, 20000, 70000]))
            with open(os.path.join(ROOT, name), "wb") as f:
                f.write(data)
                if rng.random() < 0.5:
                    f.flush()
                    os.fsync(f.fileno())
                    fsync_dir(os.path.join(ROOT, "d"))
                    record(name, data)
            live[name] = data
        elif op < 0.6:  # append
            name = rng.choice(sorted(live))
            extra = rng.randbytes(rng.choice([10, 512, 5000]))
            with open(os.path.join(ROOT, name), "ab") as f:
                f.write(extra)
                live[name] += extra
                if rng.random() < 0.3:
                    f.flush()
                    os.fsync(f.fileno())
                    record(name, live[name])
        elif op < 0.8:  # atomic replace: write tmp, fsync, rename, fsync dir
            name = rng.choice(sorted(live))
            data = rng.randbytes(rng.choice([300, 8192]))
            forget(name)  # from the rename on, either content may be there
            tmp = os.path.join(ROOT, name + ".tmp")
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.rename(tmp, os.path.join(ROOT, name))
            fsync_dir(os.path.join(ROOT, "d"))
            live[name] = data
            record(name, data)
        elif op < 0.9:  # rename to a new name (no fsync)
            name = rng.choice(sorted(live))
            new = os.path.join("d", f"r{i}")
            forget(name)
            os.rename(os.path.join(ROOT, name), os.path.join(ROOT, new))
            live[new] = live.pop(name)
        else:  # unlink
            name = rng.choice(sorted(live))
            forget(name)
            os.unlink(os.path.join(ROOT, name))
            del live[name]


def forget(name):
    # A file renamed or removed since it was recorded is no longer promised.
    with open(LEDGER, "a") as f:
        f.write(f"{name} -\n")
        f.flush()
        os.fsync(f.fileno())


def check():
    promised = {}
    if os.path.exists(LEDGER):
        for line in open(LEDGER):
            name, digest = line.split()
            if digest == "-":
                promised.pop(name, None)
            else:
                promised[name] = digest
    bad = []
    for name, digest in sorted(promised.items()):
        path = os.path.join(ROOT, name)
        length, digest = digest.split(":")
        try:
            got = hashlib.sha256(open(path, "rb").read()[:int(length)]).hexdigest()
        except OSError as e:
            bad.append(f"{name}: fsynced, now {e.strerror}")
            continue
        if got != digest:
            bad.append(f"{name}: fsynced content is not a prefix of what is there")
    for b in bad:
        print(b)
    print(f"{len(promised) - len(bad)} of {len(promised)} fsynced files intact")
    return 1 if bad else 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--check"]:
        sys.exit(check())
    workload(int(sys.argv[1]) if len(sys.argv) > 1 else 150)
