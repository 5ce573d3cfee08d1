"""ramdiskctl, the zramctl-style companion (issue point 7), against a real mount.

Covers the table and its options, --json (parsed with json.loads), every
subcommand, errors (one stderr line "ramdiskctl: <what>: <strerror>", exit 1
for failed operations, 2 for bad usage, nothing written on bad usage), and how
MOUNT is found (argument, $RAMDISKFS_MOUNT, /proc/self/mountinfo).
"""

import errno
import json
import os
import re

import pytest

from support.ctl import (as_nobody, assert_unchanged, close_disk, disk_names, log_lines,
                         one_error_line, pread_disk, pwrite_disk, snapshot)
from support.io import mem_total_bytes, pattern
from support.mounts import CTL, is_mounted, run
from support.require import require_ctl
from support.units import MiB, PAGE


STRERROR = {e: os.strerror(e) for e in (errno.EINVAL, errno.ENOENT, errno.EEXIST, errno.EBUSY,
                                        errno.EACCES, errno.ENAMETOOLONG, errno.ENOTDIR)}


@pytest.fixture(autouse=True)
def _need_ctl():
    require_ctl()


def env_without_mount():
    env = dict(os.environ)
    env.pop("RAMDISKFS_MOUNT", None)
    return env


def ctl(*args, env=None, cwd=None):
    return run(CTL, *args, check=False, env=env if env is not None else env_without_mount(),
               cwd=cwd)


def ok(*args, **kw):
    result = ctl(*args, **kw)
    assert result.returncode == 0, f"ramdiskctl {' '.join(map(str, args))}: {result.stderr}"
    assert result.stderr == "", result.stderr
    return result.stdout


def fails(exit_status, err, *args, **kw):
    result = ctl(*args, **kw)
    assert result.returncode == exit_status, (
        f"ramdiskctl {' '.join(map(str, args))}: exit {result.returncode}, "
        f"expected {exit_status}; stderr {result.stderr!r}")
    assert result.stdout == ""
    return one_error_line(result, STRERROR[err])


@pytest.fixture
def two_disks(mount_factory):
    """ram0 64M direct with 8 KiB written; ram1 16M cached, empty."""
    mnt = mount_factory("--disk", "ram0:64M:mode=direct", "--disk", "ram1:16M:mode=cached",
                        wait_disks=["ram0", "ram1"])
    pwrite_disk(mnt.disk("ram0"), pattern(2 * PAGE))
    return mnt


def table(text):
    return [line.split() for line in text.splitlines()]


# ---- help, version --------------------------------------------------------------------------------


def test_help_and_version():
    out = ok("--help")
    assert out.startswith("Usage:")
    for word in ("list", "create", "delete", "resize", "flush", "discard", "mode", "readonly",
                 "stats", "max-memory", "--json", "--noheadings", "--output", "MOUNT"):
        assert word in out, word
    assert ok("-h") == out
    assert re.match(r"^ramdiskctl \(ramdiskfs\) \d+\.\d+\.\d+\n$", ok("--version"))


# ---- list -------------------------------------------------------------------------------------


def test_list_table(two_disks):
    """The table: NAME SIZE USED MODE RO OPENS, human sizes, natural order; same without 'list'."""
    out = ok("list", two_disks.path)
    assert table(out) == [["NAME", "SIZE", "USED", "MODE", "RO", "OPENS"],
                          ["ram0", "64M", "8K", "direct", "0", "0"],
                          ["ram1", "16M", "0", "cached", "0", "0"]]
    assert ok(two_disks.path) == out
    # Columns line up: every row has the same width up to the last column.
    header = out.splitlines()[0]
    assert header.index("SIZE") + len("SIZE") == out.splitlines()[1].index("64M") + len("64M")


def test_list_opens_readonly_and_natural_order(mount_factory):
    mnt = mount_factory("--disk", "ram2:1M:mode=direct", "--disk", "ram10:1M:mode=null",
                        "--disk", "ram1:1M:mode=direct:readonly=1",
                        wait_disks=["ram1", "ram2", "ram10"])
    fd = os.open(mnt.disk("ram2"), os.O_RDONLY)
    try:
        rows = table(ok("list", "--noheadings", mnt.path))
    finally:
        close_disk(fd, mnt.disk("ram2"))
    assert [r[0] for r in rows] == ["ram1", "ram2", "ram10"]
    assert rows[0][4] == "1"  # RO
    assert rows[1][5] == "1"  # OPENS
    assert rows[2][3] == "null"


def test_list_options(two_disks):
    mnt = two_disks
    assert table(ok("list", "--bytes", mnt.path))[1][1:3] == [str(64 * MiB), "8192"]
    assert table(ok("list", "-b", mnt.path))[2][1:3] == [str(16 * MiB), "0"]
    rows = table(ok("list", "--noheadings", mnt.path))
    assert [r[0] for r in rows] == ["ram0", "ram1"]
    assert table(ok("list", "-n", mnt.path)) == rows
    assert table(ok("list", "--output", "NAME,MODE", mnt.path)) == [
        ["NAME", "MODE"], ["ram0", "direct"], ["ram1", "cached"]]
    assert table(ok("list", "-o", "name,ro", "-n", mnt.path)) == [["ram0", "0"], ["ram1", "0"]]
    # Any stats key is a column.
    rows = table(ok("list", "--output=name,writes,write-bytes,allocated_pages", "--bytes",
                    mnt.path))
    assert rows[0] == ["NAME", "WRITES", "WRITE-BYTES", "ALLOCATED-PAGES"]
    assert rows[1] == ["ram0", "1", "8192", "2"]
    fails(2, errno.EINVAL, "list", "--output", "NAME,BOGUS", mnt.path)
    fails(2, errno.EINVAL, "list", "--output", "", mnt.path)


def test_list_json(two_disks):
    mnt = two_disks
    result = ok("list", "--json", mnt.path)
    doc = json.loads(result)
    assert ok("--json", mnt.path) == result
    assert ok("-J", mnt.path) == result
    g = mnt.stats()
    assert doc["mount"] == str(mnt.path.resolve())
    assert doc["max_memory"] == g["max_memory"] and isinstance(doc["max_memory"], int)
    assert doc["memory_used"] == g["memory_used"] == 2 * PAGE
    assert [d["name"] for d in doc["disks"]] == ["ram0", "ram1"]
    for disk in doc["disks"]:
        st = mnt.stats(disk["name"])
        assert disk["size"] == st["size"]
        assert disk["used"] == st["allocated_bytes"]
        assert disk["mode"] == st["mode"]
        assert disk["readonly"] == st["readonly"]
        assert disk["opens"] == st["opens"]
        for key, value in st.items():  # every stats key, numbers as numbers
            assert disk[key] == value, key
            assert type(disk[key]) is type(value), key
    assert doc["disks"][0]["used"] == 2 * PAGE
    assert doc["disks"][1]["mode"] == "cached"


def test_list_empty_mount(mount_factory):
    mnt = mount_factory("--disk", "ram0:1M", wait_disks=["ram0"])
    ok("delete", "ram0", mnt.path)
    assert ok("list", mnt.path) == ""
    assert json.loads(ok("list", "--json", mnt.path))["disks"] == []


def test_json_escapes_mount_path(two_disks, tmp_path):
    """--json escapes quotes, backslashes and spaces in the mount path (via a bind mount)."""
    weird = tmp_path / 'odd "name"\\ with\tspace'
    weird.mkdir()
    run("mount", "--bind", two_disks.path, weird)
    try:
        doc = json.loads(ok("list", "--json", weird))
        assert doc["mount"] == str(weird)
        assert [d["name"] for d in doc["disks"]] == ["ram0", "ram1"]
        doc = json.loads(ok("stats", "--json", weird))
        assert doc["mount"] == str(weird)
    finally:
        run("umount", weird, check=False)
        if is_mounted(weird):
            run("umount", "-l", weird, check=False)


# ---- create / delete ------------------------------------------------------------------------------


def test_create_and_delete(two_disks):
    mnt = two_disks
    assert ok("create", "d1", "32M", mnt.path) == ""
    assert os.stat(mnt.disk("d1")).st_size == 32 * MiB
    assert "d1" in disk_names(mnt)
    assert ok("create", "d2", "1000", "--mode", "null", "--readonly", mnt.path) == ""
    assert os.stat(mnt.disk("d2")).st_size == 1024
    st = mnt.stats("d2")
    assert (st["mode"], st["readonly"]) == ("null", 1)
    ok("create", "--mode=cached", "d3", "1G", mnt.path)  # options anywhere
    assert mnt.stats("d3")["mode"] == "cached"
    rows = table(ok("list", "-n", mnt.path))
    assert [r[0] for r in rows] == ["d1", "d2", "d3", "ram0", "ram1"]
    assert ok("delete", "d1", mnt.path) == ""
    assert not mnt.disk("d1").exists() and "d1" not in disk_names(mnt)
    ok("delete", "d2", mnt.path)
    ok("delete", "d3", mnt.path)
    assert disk_names(mnt) == ["ram0", "ram1"]


def test_create_errors(two_disks):
    mnt = two_disks
    before, lines = snapshot(mnt), len(log_lines(mnt))
    # Bad usage: checked locally, exit 2, nothing written (the daemon logs nothing).
    for args in (["x", "12Q"], ["x", "-1"], ["x", "1.5"], ["x", "99999999999999999999"],
                 ["x", "9223372036854775807"], ["x", ""], ["a/b", "1M"], ["..", "1M"],
                 [".hidden", "1M"], ["x", "1M", "--mode", "fast"], ["x"], [],
                 ["x", "1M", "y"]):
        fails(2, errno.EINVAL, "create", *args, mnt.path)
    fails(2, errno.ENAMETOOLONG, "create", "x" * 256, "1M", mnt.path)
    assert_unchanged(mnt, before, "usage errors")
    assert len(log_lines(mnt)) == lines, "a usage error reached the daemon"
    # Operation errors: the daemon's errno, exit 1.
    line = fails(1, errno.EEXIST, "create", "ram0", "1M", mnt.path)
    assert "ram0" in line
    assert_unchanged(mnt, before, "create of an existing disk")


def test_delete_errors(two_disks):
    mnt = two_disks
    fails(1, errno.ENOENT, "delete", "nosuch", mnt.path)
    fails(2, errno.EINVAL, "delete", "../ram0", mnt.path)
    fails(2, errno.EINVAL, "delete", mnt.path)  # a path is no disk name
    fails(2, errno.EINVAL, "delete")
    fd = os.open(mnt.disk("ram0"), os.O_RDONLY)
    try:
        fails(1, errno.EBUSY, "delete", "ram0", mnt.path)
    finally:
        close_disk(fd, mnt.disk("ram0"))
    assert "ram0" in disk_names(mnt)


# ---- resize, flush, discard ------------------------------------------------------------------------


def test_resize(two_disks):
    mnt = two_disks
    assert ok("resize", "ram0", "128M", mnt.path) == ""
    assert os.stat(mnt.disk("ram0")).st_size == 128 * MiB
    assert pread_disk(mnt.disk("ram0"), 2 * PAGE) == pattern(2 * PAGE)
    ok("resize", "ram1", "1000", mnt.path)
    assert os.stat(mnt.disk("ram1")).st_size == 1024
    fails(2, errno.EINVAL, "resize", "ram0", "big", mnt.path)
    fails(2, errno.EINVAL, "resize", "ram0", mnt.path)
    fails(1, errno.ENOENT, "resize", "nosuch", "1M", mnt.path)
    fd = os.open(mnt.disk("ram0"), os.O_RDONLY)
    try:
        fails(1, errno.EBUSY, "resize", "ram0", "1M", mnt.path)  # shrink while open
    finally:
        close_disk(fd, mnt.disk("ram0"))
    assert os.stat(mnt.disk("ram0")).st_size == 128 * MiB


def test_flush(two_disks):
    mnt = two_disks
    assert mnt.stats("ram0")["allocated_bytes"] == 2 * PAGE
    fd = os.open(mnt.disk("ram0"), os.O_RDONLY)
    try:
        fails(1, errno.EBUSY, "flush", "ram0", mnt.path)
    finally:
        close_disk(fd, mnt.disk("ram0"))
    assert mnt.stats("ram0")["allocated_bytes"] == 2 * PAGE
    assert ok("flush", "ram0", mnt.path) == ""
    st = mnt.stats("ram0")
    assert st["allocated_bytes"] == 0 and st["flushes"] == 1
    assert pread_disk(mnt.disk("ram0"), 2 * PAGE) == bytes(2 * PAGE)
    fails(1, errno.ENOENT, "flush", "nosuch", mnt.path)
    fails(2, errno.EINVAL, "flush", "ram0", "extra", mnt.path)


def test_discard(two_disks):
    mnt = two_disks
    assert ok("discard", "ram0", "4K", "4096", mnt.path) == ""
    st = mnt.stats("ram0")
    assert st["allocated_pages"] == 1 and st["discards"] == 1
    assert pread_disk(mnt.disk("ram0"), PAGE, PAGE) == bytes(PAGE)
    assert pread_disk(mnt.disk("ram0"), PAGE) == pattern(PAGE)
    fails(2, errno.EINVAL, "discard", "ram0", "-1", "4096", mnt.path)
    fails(2, errno.EINVAL, "discard", "ram0", "x", "4096", mnt.path)
    fails(2, errno.EINVAL, "discard", "ram0", "4096", mnt.path)
    fails(2, errno.EINVAL, "discard", "ram0", "18446744073709551615", "1", mnt.path)
    fails(1, errno.EINVAL, "discard", "ram0", "64M", "4096", mnt.path)  # past the end: daemon


# ---- mode, readonly --------------------------------------------------------------------------------


def test_mode(two_disks):
    mnt = two_disks
    assert ok("mode", "ram0", mnt.path) == "direct\n"
    assert ok("mode", "ram0", "cached", mnt.path) == ""
    assert mnt.read_control("ram0", "mode") == "cached\n"
    assert ok("mode", "ram0", mnt.path) == "cached\n"
    assert pread_disk(mnt.disk("ram0"), 2 * PAGE) == pattern(2 * PAGE)
    fails(2, errno.EINVAL, "mode", "ram0", "fast", mnt.path)
    fails(2, errno.EINVAL, "mode", "ram0", "DAX", mnt.path)
    fails(1, errno.ENOENT, "mode", "nosuch", mnt.path)
    fd = os.open(mnt.disk("ram0"), os.O_RDONLY)
    try:
        fails(1, errno.EBUSY, "mode", "ram0", "direct", mnt.path)
    finally:
        close_disk(fd, mnt.disk("ram0"))
    assert ok("mode", "ram0", mnt.path) == "cached\n"


def test_readonly(two_disks):
    mnt = two_disks
    assert ok("readonly", "ram0", mnt.path) == "0\n"
    assert ok("readonly", "ram0", "1", mnt.path) == ""
    assert ok("readonly", "ram0", mnt.path) == "1\n"
    with pytest.raises(OSError) as info:
        pwrite_disk(mnt.disk("ram0"), b"x")
    assert info.value.errno == errno.EROFS
    assert table(ok("list", "-n", "-o", "name,ro", mnt.path))[0] == ["ram0", "1"]
    ok("readonly", "ram0", "0", mnt.path)
    pwrite_disk(mnt.disk("ram0"), b"x")
    fails(2, errno.EINVAL, "readonly", "ram0", "2", mnt.path)
    fails(2, errno.EINVAL, "readonly", "ram0", "yes", mnt.path)


# ---- stats, max-memory -------------------------------------------------------------------------------


def test_stats(two_disks):
    mnt = two_disks
    assert ok("stats", mnt.path) == mnt.read_control("stats")
    assert ok("stats", "ram0", mnt.path) == mnt.read_control("ram0", "stats")
    doc = json.loads(ok("stats", "--json", mnt.path))
    assert doc["mount"] == str(mnt.path.resolve())
    for key, value in mnt.stats().items():
        assert doc[key] == value, key
    doc = json.loads(ok("stats", "ram0", "--json", mnt.path))
    assert doc["name"] == "ram0"
    for key, value in mnt.stats("ram0").items():
        assert doc[key] == value and type(doc[key]) is type(value), key
    assert doc["allocated_bytes"] == 2 * PAGE and doc["mode"] == "direct"
    fails(1, errno.ENOENT, "stats", "nosuch", mnt.path)
    fails(2, errno.EINVAL, "stats", "a/b", "c", mnt.path)


def test_max_memory(two_disks):
    mnt = two_disks
    assert ok("max-memory", mnt.path) == mnt.read_control("max_memory")
    assert ok("max-memory", "256M", mnt.path) == ""
    assert mnt.read_control("max_memory") == f"{256 * MiB}\n"
    assert ok("max-memory", mnt.path) == f"{256 * MiB}\n"
    fails(2, errno.EINVAL, "max-memory", "1.5", mnt.path)
    fails(2, errno.EINVAL, "max-memory", "0", mnt.path)
    fails(1, errno.EINVAL, "max-memory", str(2 * mem_total_bytes()), mnt.path)  # beyond RAM
    fails(1, errno.EBUSY, "max-memory", "4096", mnt.path)  # below what is in use
    assert mnt.read_control("max_memory") == f"{256 * MiB}\n"


# ---- usage errors and finding the mount -------------------------------------------------------------


def test_usage_errors(two_disks):
    mnt = two_disks
    fails(2, errno.EINVAL, "bogus")
    fails(2, errno.EINVAL, "craete", "x", "1M", mnt.path)
    fails(2, errno.EINVAL, "--bogus", mnt.path)
    fails(2, errno.EINVAL, "list", "--output")
    fails(2, errno.EINVAL, "list", mnt.path, "extra")
    fails(2, errno.EINVAL, "flush")
    fails(2, errno.EINVAL, "delete", "ram0", "--readonly", mnt.path)
    fails(2, errno.EINVAL, "flush", "ram0", "--json", mnt.path)


def test_not_a_mount(tmp_path):
    fails(1, errno.ENOENT, "list", tmp_path)
    fails(1, errno.ENOENT, "list", tmp_path / "missing")
    fails(1, errno.ENOENT, "create", "x", "1M", tmp_path)


def test_env_mount(two_disks):
    env = env_without_mount()
    env["RAMDISKFS_MOUNT"] = str(two_disks.path)
    assert table(ctl("list", "-n", env=env).stdout)[0][0] == "ram0"
    result = ctl("create", "viaenv", "1M", env=env)
    assert result.returncode == 0, result.stderr
    assert "viaenv" in disk_names(two_disks)
    # An explicit MOUNT wins over the environment.
    env["RAMDISKFS_MOUNT"] = "/nonexistent"
    assert ctl("stats", "ram1", two_disks.path, env=env).returncode == 0


def test_relative_mount_needs_slash_or_dot(two_disks):
    """A MOUNT that could be a NAME is recognised by '/' or a leading '.'."""
    mnt = two_disks
    parent = mnt.path.parent
    name = mnt.path.name
    assert ok("stats", "ram0", f"./{name}", cwd=parent) == mnt.read_control("ram0", "stats")
    assert ok("mode", "ram0", ".", cwd=mnt.path) == "direct\n"
    assert ok("list", name, cwd=parent).startswith("NAME")  # list takes only MOUNT


NAMESPACE = r"""
import os, re, subprocess, sys
keep = set(filter(None, sys.argv[1].split("\n")))
def unescape(field):
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)
with open("/proc/self/mountinfo") as f:
    for line in f:
        fields = line.split()
        i = fields.index("-")
        fstype, source = fields[i + 1], fields[i + 2]
        point = unescape(fields[4])
        if (fstype == "fuse.ramdiskfs" or (fstype == "fuse" and source == "ramdiskfs")) \
                and point not in keep:
            subprocess.run(["umount", "-l", point], check=True)
os.execv(sys.argv[2], sys.argv[2:])
"""


def ctl_alone_with(keep, *args, env=None):
    """Runs ramdiskctl in a private mount namespace where, of all ramdiskfs mounts
    (other tests may be running), only those in `keep` remain."""
    return run("unshare", "--mount", "--propagation", "private", "/usr/bin/python3", "-c",
               NAMESPACE, "\n".join(str(k) for k in keep), CTL, *args, check=False,
               env=env if env is not None else env_without_mount())


def test_autodetect_single_mount(two_disks):
    result = ctl_alone_with([two_disks.path], "list", "-n")
    assert result.returncode == 0, result.stderr
    assert [r[0] for r in table(result.stdout)] == ["ram0", "ram1"]
    result = ctl_alone_with([two_disks.path], "create", "auto", "1M")
    assert result.returncode == 0, result.stderr
    assert "auto" in disk_names(two_disks)
    result = ctl_alone_with([two_disks.path], "stats", "ram0", "--json")
    assert json.loads(result.stdout)["name"] == "ram0"
    result = ctl_alone_with([two_disks.path], "list", "--json")
    assert json.loads(result.stdout)["mount"] == str(two_disks.path.resolve())


def test_autodetect_unescapes_mountinfo(two_disks, tmp_path):
    weird = tmp_path / "with space\\and backslash"
    weird.mkdir()
    run("mount", "--bind", two_disks.path, weird)
    try:
        result = ctl_alone_with([weird], "list", "--json")
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["mount"] == str(weird)
    finally:
        run("umount", weird, check=False)
        if is_mounted(weird):
            run("umount", "-l", weird, check=False)


def test_autodetect_none_or_several(mount_factory):
    a = mount_factory("--disk", "ram0:1M", wait_disks=["ram0"])
    b = mount_factory("--disk", "ram0:1M", wait_disks=["ram0"])
    result = ctl_alone_with([], "list")
    assert result.returncode == 2
    line = one_error_line(result, STRERROR[errno.ENOENT])
    assert "MOUNT" in line
    result = ctl_alone_with([a.path, b.path], "list")
    assert result.returncode == 2
    line = one_error_line(result, STRERROR[errno.EINVAL])
    assert "MOUNT" in line and str(a.path) in line and str(b.path) in line
    # With several, MOUNT or $RAMDISKFS_MOUNT picks one.
    result = ctl_alone_with([a.path, b.path], "list", "-n", b.path)
    assert result.returncode == 0 and table(result.stdout)[0][0] == "ram0"
    env = env_without_mount()
    env["RAMDISKFS_MOUNT"] = str(a.path)
    result = ctl_alone_with([a.path, b.path], "list", "-n", env=env)
    assert result.returncode == 0, result.stderr


# ---- permissions --------------------------------------------------------------------------------------


def test_other_user_lists_but_cannot_change(mount_factory):
    """Point 9 through ramdiskctl: with allow_other another user lists, but every change is EACCES."""
    mnt = mount_factory("-o", "allow_other", "--disk", "ram0:16M:mode=direct",
                        wait_disks=["ram0"])
    pwrite_disk(mnt.disk("ram0"), pattern(PAGE))
    before = snapshot(mnt)
    result = as_nobody(CTL, "list", "-n", ".", cwd=mnt.path)
    assert result.returncode == 0, result.stderr
    assert table(result.stdout) == [["ram0", "16M", "4K", "direct", "0", "0"]]
    result = as_nobody(CTL, "list", "--json", ".", cwd=mnt.path)
    assert json.loads(result.stdout)["disks"][0]["name"] == "ram0"
    result = as_nobody(CTL, "stats", "ram0", ".", cwd=mnt.path)
    assert result.returncode == 0 and "allocated_bytes 4096" in result.stdout
    for args in (["create", "x", "1M"], ["delete", "ram0"], ["resize", "ram0", "1M"],
                 ["flush", "ram0"], ["discard", "ram0", "0", "4096"], ["mode", "ram0", "null"],
                 ["readonly", "ram0", "1"], ["max-memory", "64M"]):
        result = as_nobody(CTL, *args, ".", cwd=mnt.path)
        assert result.returncode == 1, (args, result)
        one_error_line(result, STRERROR[errno.EACCES])
    assert_unchanged(mnt, before, "the other user's ramdiskctl commands")
