"""SPEC 12: ramdiskfs-crashtest and its worked examples (docs/crashtest.md).

These are the examples that show the tool finding real problems, and each
can fail: ext4 with its journal and barriers must be fsck-clean (and keep
every fsynced file) after 20 cuts with each policy; ext2, which has no
journal, must show fsck damage after some cut of 20, and the replay command
of a failed cut must reproduce that cut; so must ext4 mounted nobarrier; SQLite in WAL mode with
synchronous=FULL must keep every committed row through 20 cuts, and with
synchronous=OFF must lose committed rows after some cut.
"""

import json
import os
import shlex
import sys

import pytest

from support.mounts import BIN, ROOT, is_mounted, loops_backed_by, mounts_of, run
from support.require import require_loop

TOOL = ROOT / "tools" / "ramdiskfs-crashtest"
FSOPS = ROOT / "tools" / "crashtest" / "fsops.py"
SQLITE = ROOT / "tools" / "crashtest" / "sqlite_rows.py"


@pytest.fixture
def crashtest(tmp_path):
    """crashtest(*args, workload=[...]) -> (exit status, JSON report). Whatever
    the tool leaves behind under tmp_path (it cleans up itself; this is for a
    tool killed by a timeout) is torn down afterwards."""
    require_loop()

    def call(*args, workload, timeout=900):
        res = run(sys.executable, TOOL, "--ramdiskfs", BIN, "--workdir", tmp_path, "--json",
                  *args, "--", *workload, check=False, timeout=timeout)
        assert res.returncode in (0, 1), f"exit {res.returncode}:\n{res.stdout}\n{res.stderr}"
        return res.returncode, json.loads(res.stdout)

    yield call
    loops = loops_backed_by(tmp_path)
    for target in mounts_of(loops):
        run("umount", "-l", target, check=False)
    for dev in loops:
        run("losetup", "-d", dev, check=False)
    with open("/proc/self/mountinfo") as f:
        ours = [l.split()[4] for l in f if l.split()[4].startswith(str(tmp_path))]
    for target in sorted(ours, key=len, reverse=True):
        run("umount", "-l", target, check=False)


def summary(report):
    return "\n".join(
        f"cut {r['cut']} {r['policy']} at {r['cut_at']}: mount {r['mount']}, fsck {r['fsck']}, "
        f"check {r['check']} {r.get('fsck_output', '')[-300:]} {r.get('check_output', '')}"
        for r in report["cuts"])


@pytest.mark.parametrize("policy", ["all_lost", "random", "prefix", "torn"])
def test_ext4_with_journal_and_barriers_is_clean_after_every_cut(crashtest, policy):
    rc, report = crashtest("--cuts", "20", "--policy", policy, "--seed", "11",
                           "--check", f"{sys.executable} {FSOPS} --check",
                           workload=[sys.executable, FSOPS, "100"])
    assert report["reference_flushes"] > 20  # ext4's journal commits flush
    assert len(report["cuts"]) == 20
    assert rc == 0 and report["failed"] == 0, summary(report)
    assert all(r["policy"] == policy for r in report["cuts"])
    # The cuts really interrupted the workload at different points.
    assert len({r["flushes_before_cut"] for r in report["cuts"]}) > 10


def test_ext2_without_a_journal_shows_damage_and_the_replay_reproduces_it(crashtest):
    rc, report = crashtest("--cuts", "20", "--fstype", "ext2", "--seed", "11",
                           workload=[sys.executable, FSOPS, "100"])
    failed = [r for r in report["cuts"] if not r["ok"]]
    assert rc == 1 and failed, "ext2 came through 20 power cuts clean:\n" + summary(report)
    assert all(r["fsck"] != "clean" or r["mount"] != "ok" for r in failed)
    # The replay command of the first failure runs that cut again, exactly.
    first = failed[0]
    argv = shlex.split(first["replay"])
    assert "--only-cut" in argv and argv[argv.index("--only-cut") + 1] == str(first["cut"])
    split = argv.index("--")
    rc2, again = crashtest(*argv[1:split], workload=argv[split + 1:])
    (r2,) = again["cuts"]
    assert rc2 == 1 and not r2["ok"]
    for key in ("cut", "seed", "policy", "cut_at", "flushes_before_cut"):
        assert r2[key] == first[key], key


def test_ext4_mounted_nobarrier_shows_damage(crashtest):
    # The same workload and the same filesystem as the clean run above, less
    # the flushes: ext4 -o nobarrier never tells the drive to make anything
    # durable, so the cache decides what reaches the platter. A torn cut
    # (sectors of one write half old, half new) leaves metadata whose
    # checksum does not match; fsck or the mount must notice.
    rc, report = crashtest("--cuts", "20", "--seed", "11", "--mount-options", "nobarrier",
                           workload=[sys.executable, FSOPS, "100"])
    assert report["reference_flushes"] == 0, "nobarrier still sent flushes"
    failed = [r for r in report["cuts"] if not r["ok"]]
    assert rc == 1 and failed, "ext4 -o nobarrier came through 20 power cuts clean:\n" + summary(report)
    assert all(r["fsck"] != "clean" or r["mount"] != "ok" for r in failed)


def test_sqlite_synchronous_full_keeps_every_committed_row(crashtest):
    rc, report = crashtest("--cuts", "20", "--seed", "5",
                           "--check", f"{sys.executable} {SQLITE} check",
                           workload=[sys.executable, SQLITE, "run", "FULL", "WAL", "100"])
    assert rc == 0 and report["failed"] == 0, summary(report)
    assert all(r["check"] == "ok" for r in report["cuts"])


def test_sqlite_synchronous_off_loses_committed_rows(crashtest):
    rc, report = crashtest("--cuts", "20", "--seed", "5", "--cut-at", "time",
                           "--check", f"{sys.executable} {SQLITE} check",
                           workload=[sys.executable, SQLITE, "run", "OFF", "WAL", "100"])
    lost = [r for r in report["cuts"] if r["check"] != "ok"]
    assert rc == 1 and lost, "synchronous=OFF kept every committed row:\n" + summary(report)
    # Either some committed rows are missing, or none survive: the WAL that
    # held the schema and the rows was never flushed ("database is unusable").
    assert any("committed rows lost" in r.get("check_output", "") or
               "rows were committed, but the database is unusable" in r.get("check_output", "")
               for r in lost), [r.get("check_output", r) for r in lost]


def test_bad_usage_and_progress_output(tmp_path):
    require_loop()
    res = run(sys.executable, TOOL, "--cuts", "0", "--", "true", check=False)
    assert res.returncode == 2
    res = run(sys.executable, TOOL, check=False)
    assert res.returncode == 2 and "WORKLOAD" in res.stderr
    res = run(sys.executable, TOOL, "--ramdiskfs", BIN, "--workdir", tmp_path, "--cuts", "2",
              "--size", "32M", "--", "sh", "-c", "echo x > f; sync", check=False, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    lines = res.stdout.splitlines()
    assert sum(1 for l in lines if l.startswith("cut ") and "policy=" in l) == 2  # progress
    assert any(l.split()[:4] == ["cut", "seed", "policy", "cut"] for l in lines)  # the table
    assert "2 of 2 cuts clean" in res.stdout
    assert not any(is_mounted(p) for p in tmp_path.rglob("*") if p.is_dir())
