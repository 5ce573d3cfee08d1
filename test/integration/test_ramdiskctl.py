"""ramdiskctl, the util-linux style companion (issue 15 point 4), against a real mount.

Covers the table and its options (libsmartcols: --raw, --pairs, --json in
util-linux's shape, --output, --output-all, grouped short options), `list
NAME...`, every subcommand, errors (one stderr line "ramdiskctl: <what>:
<strerror>", exit 1 for every error as zramctl, nothing written on bad usage),
how MOUNT is found (--mount, a mount operand, $RAMDISKFS_MOUNT,
/proc/self/mountinfo), the fault/cache/powercut commands against a fake control
tree (the daemon side is not on this branch), bash completion, and that
man/ramdiskctl.8 matches --help.
"""

import errno
import json
import os
import re
import shlex
import threading

import pytest

from support.ctl import (as_nobody, assert_unchanged, close_disk, disk_names, log_lines,
                         one_error_line, pread_disk, pwrite_disk, snapshot)
from support.io import mem_total_bytes, pattern
from support.mounts import BIN, CTL, ROOT, is_mounted, run
from support.require import require_ctl
from support.units import MiB, PAGE

MAN_PAGE = ROOT / "man" / "ramdiskctl.8"
COMPLETION = ROOT / "completion" / "ramdiskctl"
FS_COMPLETION = ROOT / "completion" / "ramdiskfs"

STRERROR = {e: os.strerror(e) for e in (errno.EINVAL, errno.ENOENT, errno.EEXIST, errno.EBUSY,
                                        errno.EACCES, errno.ENAMETOOLONG, errno.ENOTDIR)}

DEFAULT_COLUMNS = ["NAME", "SIZE", "USED", "MODE", "RO", "OPENS"]


@pytest.fixture(autouse=True)
def _need_ctl():
    require_ctl()


def env_without_mount():
    env = dict(os.environ)
    env.pop("RAMDISKFS_MOUNT", None)
    return env


def ctl(*args, env=None, cwd=None, timeout=60):
    return run(CTL, *args, check=False, env=env if env is not None else env_without_mount(),
               cwd=cwd, timeout=timeout)


def ok(*args, **kw):
    result = ctl(*args, **kw)
    assert result.returncode == 0, f"ramdiskctl {' '.join(map(str, args))}: {result.stderr}"
    assert result.stderr == "", result.stderr
    return result.stdout


def fails(err, *args, **kw):
    """Every error: exit 1, nothing on stdout, one stderr line ending in strerror(err)."""
    result = ctl(*args, **kw)
    assert result.returncode == 1, (
        f"ramdiskctl {' '.join(map(str, args))}: exit {result.returncode}, expected 1; "
        f"stderr {result.stderr!r}")
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


def column_name(key):
    return key.upper().replace("_", "-")


# ---- help, version ------------------------------------------------------------------------------


def help_sections():
    """--help split at its headings: {"Commands": [lines], "Options": [...], ...}."""
    sections, current = {}, None
    for line in ok("--help").splitlines():
        if line and not line[0].isspace() and line.rstrip().endswith(":"):
            current = line.rstrip(":").split(" (")[0]
            sections[current] = []
        elif current and line.startswith(" "):
            sections[current].append(line)
        elif not line:
            current = None
    return sections


def help_commands():
    """{command: synopsis} from the Commands section (synopsis lines have one leading space)."""
    return {line.split()[0]: line.strip() for line in help_sections()["Commands"]
            if line.startswith(" ") and not line.startswith("  ")}


def help_options():
    """{"--long": "-s, --long VALUE"} from the Options section."""
    out = {}
    for line in help_sections()["Options"]:
        label = re.split(r"\s{2,}", line.strip())[0]
        out[re.search(r"--[a-z-]+", label).group(0)] = label
    return out


def help_columns():
    return [line.split()[0] for line in help_sections()["Available output columns"]
            if re.match(r"^\s+[A-Z-]+ [* ] ", line)]


def test_help_and_version():
    out = ok("--help")
    assert out.startswith("Usage:")
    assert set(help_commands()) == {"list", "create", "delete", "resize", "flush", "discard",
                                    "mode", "readonly", "stats", "max-memory", "fault", "cache",
                                    "powercut", "poweron", "upgrade", "save"}
    for option in ("--json", "--raw", "--pairs", "--noheadings", "--output", "--output-all",
                   "--bytes", "--mount", "--help", "--version"):
        assert option in help_options(), option
    assert help_columns()[:6] == DEFAULT_COLUMNS
    assert ok("-h") == out
    assert ok("list", "--help") == out  # --help wins over everything else
    assert re.match(r"^ramdiskctl \(ramdiskfs\) \d+\.\d+\.\d+\n$", ok("--version"))
    assert ok("-V") == ok("--version")


# ---- list ---------------------------------------------------------------------------------------


def test_list_table(two_disks):
    """The table: NAME SIZE USED MODE RO OPENS, human sizes, natural order; same without 'list'."""
    out = ok("list", two_disks.path)
    assert table(out) == [DEFAULT_COLUMNS,
                          ["ram0", "64M", "8K", "direct", "0", "0"],
                          ["ram1", "16M", "0", "cached", "0", "0"]]
    assert ok(two_disks.path) == out
    assert ok("--mount", two_disks.path) == out
    assert ok("-m", two_disks.path, "list") == out
    # Columns line up: SIZE is right-aligned under its header.
    header, first = out.splitlines()[:2]
    assert header.index("SIZE") + len("SIZE") == first.index("64M") + len("64M")


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


def test_list_names_filter(two_disks):
    """`ramdiskctl [list] NAME...`: those disks, in the order given; a missing one is an error."""
    mnt = two_disks
    assert table(ok("list", "ram1", mnt.path)) == [DEFAULT_COLUMNS,
                                                   ["ram1", "16M", "0", "cached", "0", "0"]]
    assert [r[0] for r in table(ok("-n", "ram1", "ram0", mnt.path))] == ["ram1", "ram0"]
    assert [r[0] for r in table(ok("-n", "-m", mnt.path, "list", "ram0"))] == ["ram0"]
    line = fails(errno.ENOENT, "list", "ram0", "nosuch", "-m", mnt.path)
    assert "'nosuch'" in line
    line = fails(errno.ENOENT, "craete", "x", "-m", mnt.path)  # no command, no disk
    assert "'craete'" in line and "command" in line
    fails(errno.EINVAL, "list", "a/b", "-m", mnt.path)


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
    # Any stats key is a column, as the daemon reports it.
    rows = table(ok("list", "--output=name,writes,write-bytes,allocated_pages", "--bytes",
                    mnt.path))
    assert rows[0] == ["NAME", "WRITES", "WRITE-BYTES", "ALLOCATED-PAGES"]
    assert rows[1] == ["ram0", "1", "8192", "2"]
    # A leading '+' adds to the default columns.
    assert table(ok("-o", "+READS", mnt.path))[0] == DEFAULT_COLUMNS + ["READS"]
    fails(errno.EINVAL, "list", "--output", "NAME,BOGUS", mnt.path)
    fails(errno.EINVAL, "list", "--output", "", mnt.path)


def test_grouped_short_options(two_disks):
    """getopt_long: -nb, -oNAME,SIZE, -nbo LIST, options after operands."""
    mnt = two_disks
    assert table(ok("-nb", mnt.path)) == table(ok("-n", "-b", mnt.path))
    assert table(ok("-oNAME,SIZE", mnt.path)) == [["NAME", "SIZE"], ["ram0", "64M"],
                                                  ["ram1", "16M"]]
    assert table(ok("-nbo", "NAME,USED", mnt.path)) == [["ram0", "8192"], ["ram1", "0"]]
    assert table(ok("-nboNAME", "-m", mnt.path)) == [["ram0"], ["ram1"]]
    assert ok("ram1", mnt.path, "-nb") == ok("-nb", "ram1", mnt.path)
    assert ok("--noh", "--byt", mnt.path) == ok("-nb", mnt.path)  # long options abbreviate


def test_raw_and_pairs(two_disks):
    mnt = two_disks
    assert ok("--raw", "-b", mnt.path) == (
        "NAME SIZE USED MODE RO OPENS\n"
        f"ram0 {64 * MiB} 8192 direct 0 0\n"
        f"ram1 {16 * MiB} 0 cached 0 0\n")
    assert ok("-rn", "-o", "NAME,SIZE", mnt.path) == "ram0 64M\nram1 16M\n"
    assert ok("--pairs", "-o", "NAME,SIZE,RO,WRITE-BYTES", mnt.path) == (
        'NAME="ram0" SIZE="64M" RO="0" WRITE-BYTES="8K"\n'
        'NAME="ram1" SIZE="16M" RO="0" WRITE-BYTES="0"\n')
    assert ok("-P", "-b", "-o", "NAME,USED", "ram0", mnt.path) == 'NAME="ram0" USED="8192"\n'
    fails(errno.EINVAL, "--raw", "--json", mnt.path)
    fails(errno.EINVAL, "-P", "-r", mnt.path)
    fails(errno.EINVAL, "-o", "NAME", "--output-all", mnt.path)


def test_list_json(two_disks):
    """util-linux's shape: {"ramdisks": [rows]}, keys the lower-case column names, typed."""
    mnt = two_disks
    result = ok("list", "--json", mnt.path)
    doc = json.loads(result)
    assert ok("--json", mnt.path) == result
    assert ok("-J", mnt.path) == result
    assert list(doc) == ["ramdisks"]
    rows = doc["ramdisks"]
    assert [list(row) for row in rows] == [[c.lower() for c in DEFAULT_COLUMNS]] * 2
    for row in rows:
        st = mnt.stats(row["name"])
        assert row["size"] == st["size"] and type(row["size"]) is int
        assert row["used"] == st["allocated_bytes"]
        assert row["mode"] == st["mode"]
        assert row["ro"] is False
        assert row["opens"] == st["opens"] and type(row["opens"]) is int
    assert rows[0]["used"] == 2 * PAGE
    assert rows[1]["mode"] == "cached"
    # --output is honoured; sizes are bytes (numbers) in JSON even without --bytes.
    doc = json.loads(ok("-J", "-o", "NAME,SIZE,WRITE-BYTES,FALLBACK", "ram0", mnt.path))
    assert doc == {"ramdisks": [{"name": "ram0", "size": 64 * MiB, "write-bytes": 8192,
                                 "fallback": mnt.stats("ram0")["fallback"]}]}
    ok("readonly", "ram1", "1", mnt.path)
    assert json.loads(ok("-J", "-o", "name,ro", mnt.path))["ramdisks"][1] == {
        "name": "ram1", "ro": True}


def test_output_all_is_every_stats_key(two_disks):
    """--output-all: the named columns, then every key the daemon's stats file has, typed."""
    mnt = two_disks
    st = mnt.stats("ram0")
    header = table(ok("--output-all", mnt.path))[0]
    assert header[:len(DEFAULT_COLUMNS)] == DEFAULT_COLUMNS
    named = {"name", "size", "allocated_bytes", "mode", "readonly", "opens", "passthrough",
             "growing"}
    for key in st:
        if key not in named:
            assert column_name(key) in header, key
    row = json.loads(ok("--output-all", "--json", "ram0", mnt.path))["ramdisks"][0]
    for key, value in st.items():
        name = {"allocated_bytes": "used", "readonly": "ro"}.get(key, column_name(key).lower())
        if key in ("readonly", "passthrough", "growing"):
            assert row[name] is bool(value), key
        else:
            assert row[name] == value and type(row[name]) is type(value), key


def test_list_empty_mount(mount_factory):
    mnt = mount_factory("--disk", "ram0:1M", wait_disks=["ram0"])
    ok("delete", "ram0", mnt.path)
    assert ok("list", mnt.path) == ""  # like zramctl: no rows, no header
    assert json.loads(ok("list", "--json", mnt.path)) == {"ramdisks": []}


# ---- create / delete ----------------------------------------------------------------------------


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
    # Bad usage: checked locally, exit 1, nothing written (the daemon logs nothing).
    for args in (["x", "12Q"], ["x", "-1"], ["x", "1.5"], ["x", "99999999999999999999"],
                 ["x", "9223372036854775807"], ["x", ""], ["a/b", "1M"], ["..", "1M"],
                 [".hidden", "1M"], ["x", "1M", "--mode", "fast"], ["x"], [],
                 ["x", "1M", "y"], ["x", "1M", "--policy", "torn"]):
        fails(errno.EINVAL, "create", *args, mnt.path)
    fails(errno.ENAMETOOLONG, "create", "x" * 256, "1M", mnt.path)
    assert_unchanged(mnt, before, "usage errors")
    assert len(log_lines(mnt)) == lines, "a usage error reached the daemon"
    # Operation errors: the daemon's errno, exit 1 too.
    line = fails(errno.EEXIST, "create", "ram0", "1M", mnt.path)
    assert "ram0" in line
    assert_unchanged(mnt, before, "create of an existing disk")


def test_delete_errors(two_disks):
    mnt = two_disks
    fails(errno.ENOENT, "delete", "nosuch", mnt.path)
    fails(errno.EINVAL, "delete", "../ram0", mnt.path)
    fails(errno.EINVAL, "delete", mnt.path)  # the mount is no disk name
    fails(errno.EINVAL, "delete")
    fd = os.open(mnt.disk("ram0"), os.O_RDONLY)
    try:
        fails(errno.EBUSY, "delete", "ram0", mnt.path)
    finally:
        close_disk(fd, mnt.disk("ram0"))
    assert "ram0" in disk_names(mnt)


# ---- resize, flush, discard ---------------------------------------------------------------------


def test_resize(two_disks):
    mnt = two_disks
    assert ok("resize", "ram0", "128M", mnt.path) == ""
    assert os.stat(mnt.disk("ram0")).st_size == 128 * MiB
    assert pread_disk(mnt.disk("ram0"), 2 * PAGE) == pattern(2 * PAGE)
    ok("resize", "ram1", "1000", mnt.path)
    assert os.stat(mnt.disk("ram1")).st_size == 1024
    fails(errno.EINVAL, "resize", "ram0", "big", mnt.path)
    fails(errno.EINVAL, "resize", "ram0", mnt.path)
    fails(errno.ENOENT, "resize", "nosuch", "1M", mnt.path)
    fd = os.open(mnt.disk("ram0"), os.O_RDONLY)
    try:
        fails(errno.EBUSY, "resize", "ram0", "1M", mnt.path)  # shrink while open
    finally:
        close_disk(fd, mnt.disk("ram0"))
    assert os.stat(mnt.disk("ram0")).st_size == 128 * MiB


def test_flush(two_disks):
    mnt = two_disks
    assert mnt.stats("ram0")["allocated_bytes"] == 2 * PAGE
    fd = os.open(mnt.disk("ram0"), os.O_RDONLY)
    try:
        fails(errno.EBUSY, "flush", "ram0", mnt.path)
    finally:
        close_disk(fd, mnt.disk("ram0"))
    assert mnt.stats("ram0")["allocated_bytes"] == 2 * PAGE
    assert ok("flush", "ram0", mnt.path) == ""
    st = mnt.stats("ram0")
    assert st["allocated_bytes"] == 0 and st["flushes"] == 1
    assert pread_disk(mnt.disk("ram0"), 2 * PAGE) == bytes(2 * PAGE)
    fails(errno.ENOENT, "flush", "nosuch", mnt.path)
    fails(errno.EINVAL, "flush", "ram0", "extra", mnt.path)


def test_discard(two_disks):
    mnt = two_disks
    assert ok("discard", "ram0", "4K", "4096", mnt.path) == ""
    st = mnt.stats("ram0")
    assert st["allocated_pages"] == 1 and st["discards"] == 1
    assert pread_disk(mnt.disk("ram0"), PAGE, PAGE) == bytes(PAGE)
    assert pread_disk(mnt.disk("ram0"), PAGE) == pattern(PAGE)
    fails(errno.EINVAL, "discard", "ram0", "-1", "4096", mnt.path)
    fails(errno.EINVAL, "discard", "ram0", "--", "-1", "4096", mnt.path)
    fails(errno.EINVAL, "discard", "ram0", "x", "4096", mnt.path)
    fails(errno.EINVAL, "discard", "ram0", "4096", mnt.path)
    fails(errno.EINVAL, "discard", "ram0", "18446744073709551615", "1", mnt.path)
    line = fails(errno.EINVAL, "discard", "ram0", "64M", "4096", mnt.path)  # past the end
    assert "cannot write" in line, "the daemon refuses this one, not ramdiskctl"


# ---- mode, readonly -----------------------------------------------------------------------------


def test_mode(two_disks):
    mnt = two_disks
    assert ok("mode", "ram0", mnt.path) == "direct\n"
    assert ok("mode", "ram0", "cached", mnt.path) == ""
    assert mnt.read_control("ram0", "mode") == "cached\n"
    assert ok("mode", "ram0", mnt.path) == "cached\n"
    assert pread_disk(mnt.disk("ram0"), 2 * PAGE) == pattern(2 * PAGE)
    fails(errno.EINVAL, "mode", "ram0", "fast", mnt.path)
    fails(errno.EINVAL, "mode", "ram0", "DAX", mnt.path)
    fails(errno.ENOENT, "mode", "nosuch", mnt.path)
    fd = os.open(mnt.disk("ram0"), os.O_RDONLY)
    try:
        fails(errno.EBUSY, "mode", "ram0", "direct", mnt.path)
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
    fails(errno.EINVAL, "readonly", "ram0", "2", mnt.path)
    fails(errno.EINVAL, "readonly", "ram0", "yes", mnt.path)


# ---- stats, max-memory --------------------------------------------------------------------------


def test_stats(two_disks):
    mnt = two_disks
    assert ok("stats", mnt.path) == mnt.read_control("stats")
    assert ok("stats", "ram0", mnt.path) == mnt.read_control("ram0", "stats")
    # --json: lscpu's shape for key/value data, values as strings.
    doc = json.loads(ok("stats", "--json", mnt.path))
    assert list(doc) == ["stats"]
    assert {row["key"]: row["value"] for row in doc["stats"]} == {
        k: str(v) for k, v in mnt.stats().items()}
    doc = json.loads(ok("stats", "ram0", "-J", mnt.path))
    assert [row["key"] for row in doc["stats"]] == list(mnt.stats("ram0"))
    assert ok("stats", "ram0", "-rn", mnt.path).splitlines()[0] == "name ram0"
    assert ok("stats", "ram0", "-P", mnt.path).splitlines()[0] == 'KEY="name" VALUE="ram0"'
    fails(errno.ENOENT, "stats", "nosuch", mnt.path)
    fails(errno.EINVAL, "stats", "a/b", "c", mnt.path)
    fails(errno.EINVAL, "stats", "-o", "NAME", mnt.path)  # --output is list's


def test_max_memory(two_disks):
    mnt = two_disks
    assert ok("max-memory", mnt.path) == mnt.read_control("max_memory")
    assert ok("max-memory", "256M", mnt.path) == ""
    assert mnt.read_control("max_memory") == f"{256 * MiB}\n"
    assert ok("max-memory", mnt.path) == f"{256 * MiB}\n"
    fails(errno.EINVAL, "max-memory", "1.5", mnt.path)
    fails(errno.EINVAL, "max-memory", "0", mnt.path)
    fails(errno.EINVAL, "max-memory", str(2 * mem_total_bytes()), mnt.path)  # beyond RAM
    fails(errno.EBUSY, "max-memory", "4096", mnt.path)  # below what is in use
    assert mnt.read_control("max_memory") == f"{256 * MiB}\n"


# ---- usage errors and finding the mount ---------------------------------------------------------


def test_usage_errors_exit_1(two_disks):
    """util-linux's convention: usage errors exit 1 like every other error."""
    mnt = two_disks
    before = snapshot(mnt)
    fails(errno.EINVAL, "--bogus", mnt.path)
    fails(errno.EINVAL, "-Z", mnt.path)
    fails(errno.EINVAL, "list", "--output")
    fails(errno.EINVAL, "list", mnt.path, "extra")  # "extra" after the mount: a disk name
    fails(errno.EINVAL, "flush")
    fails(errno.EINVAL, "delete", "ram0", "--readonly", mnt.path)
    fails(errno.EINVAL, "flush", "ram0", "--json", mnt.path)
    fails(errno.EINVAL, "create", "x", "1M", "--mode", mnt.path)  # --mode takes the mount
    fails(errno.EINVAL, "list", "-m", mnt.path, str(mnt.path))  # two mounts
    assert_unchanged(mnt, before, "usage errors")


def test_not_a_mount(tmp_path):
    fails(errno.ENOENT, "--mount", tmp_path)
    fails(errno.ENOENT, "list", "-m", tmp_path / "missing")
    fails(errno.ENOENT, "create", "x", "1M", "-m", tmp_path)
    # A directory that is no ramdiskfs mount is never taken as MOUNT: it is a (bad) disk name.
    line = fails(errno.EINVAL, "list", tmp_path)
    assert "disk name" in line


def test_env_mount(two_disks):
    env = env_without_mount()
    env["RAMDISKFS_MOUNT"] = str(two_disks.path)
    assert table(ctl("list", "-n", env=env).stdout)[0][0] == "ram0"
    result = ctl("create", "viaenv", "1M", env=env)
    assert result.returncode == 0, result.stderr
    assert "viaenv" in disk_names(two_disks)
    # --mount and a mount operand win over the environment.
    env["RAMDISKFS_MOUNT"] = "/nonexistent"
    assert ctl("stats", "ram1", two_disks.path, env=env).returncode == 0
    assert ctl("stats", "ram1", "-m", two_disks.path, env=env).returncode == 0


def test_mount_operand_must_be_unambiguous(two_disks):
    """An operand is MOUNT only if it is a ramdiskfs mount point that cannot be a disk name."""
    mnt = two_disks
    parent, name = mnt.path.parent, mnt.path.name
    assert ok("stats", "ram0", f"./{name}", cwd=parent) == mnt.read_control("ram0", "stats")
    assert ok("mode", "ram0", ".", cwd=mnt.path) == "direct\n"
    # A bare word is a disk name even where a mount of that name is in the directory.
    line = fails(errno.ENOENT, "list", name, cwd=parent, env={
        **env_without_mount(), "RAMDISKFS_MOUNT": str(mnt.path)})
    assert f"'{name}'" in line
    # A path inside the mount is no mount point.
    fails(errno.EINVAL, "list", mnt.control, env={**env_without_mount(),
                                                  "RAMDISKFS_MOUNT": str(mnt.path)})


def test_weird_mount_path(two_disks, tmp_path):
    """Quotes, backslashes, tabs and spaces in the mount path (via a bind mount)."""
    weird = tmp_path / 'odd "name"\\ with\tspace'
    weird.mkdir()
    run("mount", "--bind", two_disks.path, weird)
    try:
        assert [r[0] for r in table(ok("-n", weird))] == ["ram0", "ram1"]
        assert [r[0] for r in table(ok("-n", "--mount", weird))] == ["ram0", "ram1"]
        assert ok("stats", "ram1", weird) == two_disks.read_control("ram1", "stats")
    finally:
        run("umount", weird, check=False)
        if is_mounted(weird):
            run("umount", "-l", weird, check=False)


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
    result = ctl_alone_with([two_disks.path], "-J", "ram0")
    assert json.loads(result.stdout)["ramdisks"][0]["name"] == "ram0"


def test_autodetect_unescapes_mountinfo(two_disks, tmp_path):
    weird = tmp_path / "with space\\and backslash"
    weird.mkdir()
    run("mount", "--bind", two_disks.path, weird)
    try:
        result = ctl_alone_with([weird], "list", "--json")
        assert result.returncode == 0, result.stderr
        assert [d["name"] for d in json.loads(result.stdout)["ramdisks"]] == ["ram0", "ram1"]
    finally:
        run("umount", weird, check=False)
        if is_mounted(weird):
            run("umount", "-l", weird, check=False)


def test_autodetect_none_or_several(mount_factory):
    a = mount_factory("--disk", "ram0:1M", wait_disks=["ram0"])
    b = mount_factory("--disk", "ram0:1M", wait_disks=["ram0"])
    result = ctl_alone_with([], "list")
    assert result.returncode == 1
    assert "--mount" in one_error_line(result, STRERROR[errno.ENOENT])
    result = ctl_alone_with([a.path, b.path], "list")
    assert result.returncode == 1
    line = one_error_line(result, STRERROR[errno.EINVAL])
    assert "--mount" in line and str(a.path) in line and str(b.path) in line
    # With several, MOUNT, --mount or $RAMDISKFS_MOUNT picks one.
    result = ctl_alone_with([a.path, b.path], "list", "-n", b.path)
    assert result.returncode == 0 and table(result.stdout)[0][0] == "ram0"
    result = ctl_alone_with([a.path, b.path], "list", "-n", "--mount", b.path)
    assert result.returncode == 0, result.stderr
    env = env_without_mount()
    env["RAMDISKFS_MOUNT"] = str(a.path)
    result = ctl_alone_with([a.path, b.path], "list", "-n", env=env)
    assert result.returncode == 0, result.stderr


# ---- permissions --------------------------------------------------------------------------------


def test_other_user_lists_but_cannot_change(mount_factory):
    """With allow_other another user lists, but every change is EACCES."""
    mnt = mount_factory("-o", "allow_other", "--disk", "ram0:16M:mode=direct",
                        wait_disks=["ram0"])
    pwrite_disk(mnt.disk("ram0"), pattern(PAGE))
    before = snapshot(mnt)
    result = as_nobody(CTL, "list", "-n", ".", cwd=mnt.path)
    assert result.returncode == 0, result.stderr
    assert table(result.stdout) == [["ram0", "16M", "4K", "direct", "0", "0"]]
    result = as_nobody(CTL, "list", "--json", ".", cwd=mnt.path)
    assert json.loads(result.stdout)["ramdisks"][0]["name"] == "ram0"
    result = as_nobody(CTL, "stats", "ram0", ".", cwd=mnt.path)
    assert result.returncode == 0 and "allocated_bytes 4096" in result.stdout
    for args in (["create", "x", "1M"], ["delete", "ram0"], ["resize", "ram0", "1M"],
                 ["flush", "ram0"], ["discard", "ram0", "0", "4096"], ["mode", "ram0", "null"],
                 ["readonly", "ram0", "1"], ["max-memory", "64M"]):
        result = as_nobody(CTL, *args, ".", cwd=mnt.path)
        assert result.returncode == 1, (args, result)
        one_error_line(result, STRERROR[errno.EACCES])
    assert_unchanged(mnt, before, "the other user's ramdiskctl commands")


# ---- fault, cache, powercut, poweron against a fake control tree --------------------------------
#
# The daemon side of these files is built on other branches; here a plain
# directory laid out like MOUNT/.control (selected with --mount) shows exactly
# which bytes ramdiskctl writes to which file.

FAULT_FILES = ["badblocks", "badblocks_once", "badblocks_partial", "errors", "fault_seed",
               "latency", "throttle", "flakey"]
POWER_FILES = ["cache", "power", "powercut_policy", "powercut_seed"]


@pytest.fixture
def fake(tmp_path):
    """A fake mount: .control/{stats,new,...} and .control/ram0/ with empty files."""
    root = tmp_path / "fake"
    disk = root / ".control" / "ram0"
    disk.mkdir(parents=True)
    (root / ".control" / "stats").write_text("memory_used 0\nmax_memory 4096\ndisks 1\n")
    (disk / "stats").write_text("name ram0\nsize 1048576\nallocated_bytes 0\nmode direct\n"
                                "readonly 0\nopens 0\ninjected_errors 3\ncache_state volatile\n")
    for name in FAULT_FILES + POWER_FILES:
        (disk / name).write_text("")
    return root


def files_of(fake_root, disk="ram0"):
    """{file: bytes} of every file of the fake disk except stats."""
    d = fake_root / ".control" / disk
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.name != "stats"}


def written(fake_root):
    """The files the command wrote, with their bytes; every other file still empty."""
    return {name: data for name, data in files_of(fake_root).items() if data}


def test_fake_tree_list_reads_the_daemons_keys(fake):
    """Columns come from the stats files: a key this ramdiskctl never heard of is a column."""
    assert ok("-m", fake, "-o", "NAME,INJECTED-ERRORS,CACHE-STATE", "-r") == (
        "NAME INJECTED-ERRORS CACHE-STATE\nram0 3 volatile\n")
    row = json.loads(ok("-m", fake, "--output-all", "-J"))["ramdisks"][0]
    assert row["injected-errors"] == 3 and row["cache-state"] == "volatile"
    assert row["passthrough"] is None  # a named column this disk does not report
    env = {**env_without_mount(), "RAMDISKFS_MOUNT": str(fake)}
    assert ok("-rno", "NAME", env=env) == "ram0\n"


def test_fault_set(fake):
    ok("fault", "ram0", "errors", "write", "0.01", "EIO", "-m", fake)
    assert written(fake) == {"errors": b"write 0.01 EIO\n"}
    ok("fault", "-m", fake, "ram0", "badblocks", "+0-7")
    ok("fault", "ram0", "latency", "write", "200", "50", "--mount", fake)
    ok("fault", "ram0", "throttle", "write_bandwidth", "10M", "-m", fake)
    ok("fault", "ram0", "flakey", "5", "1", "drop_writes", "-m", fake)
    ok("fault", "ram0", "fault_seed", "42", "-m", fake)
    ok("fault", "ram0", "badblocks_once", "1", "-m", fake)
    ok("fault", "ram0", "badblocks_partial", "1", "-m", fake)
    assert written(fake) == {
        "badblocks": b"+0-7\n", "badblocks_once": b"1\n", "badblocks_partial": b"1\n",
        "errors": b"write 0.01 EIO\n", "fault_seed": b"42\n", "flakey": b"5 1 drop_writes\n",
        "latency": b"write 200 50\n", "throttle": b"write_bandwidth 10M\n"}


def test_fault_value_starting_with_dash(fake):
    """Healing bad sectors (-START-END) needs "--", else it is an unknown option."""
    fails(errno.EINVAL, "fault", "ram0", "badblocks", "-0-7", "-m", fake)
    assert written(fake) == {}
    ok("fault", "-m", fake, "ram0", "badblocks", "--", "-0-7")
    assert written(fake) == {"badblocks": b"-0-7\n"}


def test_fault_show(fake):
    d = fake / ".control" / "ram0"
    (d / "badblocks").write_text("0-7\n100-107\n")
    (d / "errors").write_text("read 0.5 EIO\nwrite 0.01 ENOSPC\n")
    for name in ("badblocks_once", "badblocks_partial", "latency", "throttle"):
        (d / name).write_text("0\n")
    (d / "fault_seed").write_text("7\n")
    (d / "flakey").write_text("0 0\n")
    assert ok("fault", "ram0", "-m", fake) == (
        "badblocks 0-7\nbadblocks 100-107\nbadblocks_once 0\nbadblocks_partial 0\n"
        "errors read 0.5 EIO\nerrors write 0.01 ENOSPC\nfault_seed 7\nlatency 0\n"
        "throttle 0\nflakey 0 0\n")
    assert ok("fault", "ram0", "errors", "-m", fake) == (
        "errors read 0.5 EIO\nerrors write 0.01 ENOSPC\n")


def test_fault_clear(fake):
    """clear turns every fault off and keeps the settings that inject none."""
    ok("fault", "ram0", "clear", "-m", fake)
    assert written(fake) == {"badblocks": b"clear\n", "errors": b"0\n", "latency": b"0\n",
                             "throttle": b"0\n", "flakey": b"0 0\n"}


def test_fault_errors(fake):
    for args in (["ram0", "bogus", "1"], ["ram0", "stats", "1"], ["ram0", "clear", "now"],
                 ["a/b", "errors", "read", "1"], [], ["ram0", "errors", "read\n1"]):
        fails(errno.EINVAL, "fault", *args, "-m", fake)
    assert written(fake) == {}
    fails(errno.ENOENT, "fault", "nosuch", "errors", "read", "1", "-m", fake)
    fails(errno.ENOENT, "fault", "nosuch", "-m", fake)


def test_cache(fake):
    ok("cache", "ram0", "volatile", "-m", fake)
    assert written(fake) == {"cache": b"volatile\n"}
    assert ok("cache", "ram0", "-m", fake) == "volatile\n"
    (fake / ".control" / "ram0" / "cache").write_text("")
    ok("cache", "ram0", "none", "-m", fake)
    assert written(fake) == {"cache": b"none\n"}
    (fake / ".control" / "ram0" / "cache").write_text("")
    fails(errno.EINVAL, "cache", "ram0", "writeback", "-m", fake)
    fails(errno.EINVAL, "cache", "ram0", "none", "extra", "-m", fake)
    assert written(fake) == {}


def test_powercut_and_poweron(fake):
    ok("powercut", "ram0", "-m", fake)
    assert written(fake) == {"power": b"0\n"}
    ok("poweron", "ram0", "-m", fake)
    assert written(fake) == {"power": b"1\n"}
    ok("powercut", "--policy=prefix", "ram0", "--seed", "18446744073709551615", "-m", fake)
    assert written(fake) == {"power": b"0\n", "powercut_policy": b"prefix\n",
                             "powercut_seed": b"18446744073709551615\n"}


def test_powercut_errors(fake):
    for args in (["ram0", "--policy", "some"], ["ram0", "--seed", "-1"],
                 ["ram0", "--seed", "18446744073709551616"], ["ram0", "--seed", "0x10"],
                 ["ram0", "--seed", ""], ["ram0", "extra"], []):
        fails(errno.EINVAL, "powercut", *args, "-m", fake)
    fails(errno.EINVAL, "poweron", "ram0", "--policy", "torn", "-m", fake)
    fails(errno.EINVAL, "flush", "ram0", "--seed", "1", "-m", fake)
    assert written(fake) == {}


def test_powercut_writes_policy_and_seed_before_power(fake):
    """The cut draws from policy and seed, so they must reach the daemon first.

    Each file is a FIFO that a reader opens in the expected order; a writer
    that opened them in another order would block on a FIFO nobody reads
    (and time out)."""
    d = fake / ".control" / "ram0"
    order = ["powercut_policy", "powercut_seed", "power"]
    for name in order:
        (d / name).unlink()
        os.mkfifo(d / name)
    got = []

    def reader():
        for name in order:
            fd = os.open(d / name, os.O_RDONLY)
            data = b""
            while chunk := os.read(fd, 4096):
                data += chunk
            os.close(fd)
            got.append((name, data))

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    try:
        result = ctl("powercut", "ram0", "--policy", "torn", "--seed", "42", "-m", fake,
                     timeout=20)
    finally:
        for name in order:  # release a reader left waiting by a failure
            try:
                os.close(os.open(d / name, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass
        thread.join(10)
    assert result.returncode == 0, result.stderr
    assert got == [("powercut_policy", b"torn\n"), ("powercut_seed", b"42\n"), ("power", b"0\n")]


def test_missing_control_file(fake):
    """A daemon without a file (one older than fault injection): the open's ENOENT, one line."""
    (fake / ".control" / "ram0" / "power").unlink()
    line = fails(errno.ENOENT, "poweron", "ram0", "-m", fake)
    assert "power" in line and "ram0" in line
    line = fails(errno.ENOENT, "powercut", "ram0", "--policy", "torn", "-m", fake)
    assert written(fake) == {"powercut_policy": b"torn\n"}, "the steps before the failure stay"


# ---- bash completion ----------------------------------------------------------------------------


def complete(script, *words, env=None, with_bash_completion=False):
    """COMPREPLY of the completion function `script` registers for the command line
    `words` (words[0] the program, the last word the one being completed)."""
    setup = "source /usr/share/bash-completion/bash_completion\n" if with_bash_completion else ""
    program = shlex.quote(str(words[0]))
    code = (f"{setup}source {shlex.quote(str(script))}\n"
            f"fn=$(complete -p {shlex.quote(os.path.basename(words[0]))} | "
            r"sed -nE 's/.*-F ([^ ]+).*/\1/p')" "\n"
            f"COMP_WORDS=({' '.join(shlex.quote(str(w)) for w in words)})\n"
            f"COMP_CWORD={len(words) - 1}\n"
            f"COMP_LINE=\"${{COMP_WORDS[*]}}\"; COMP_POINT=${{#COMP_LINE}}\n"
            f"\"$fn\" {program}\n"
            "printf '%s\\n' \"${COMPREPLY[@]}\"\n")
    result = run("bash", "--norc", "-c", code, env=env if env is not None else env_without_mount())
    assert result.returncode == 0, result.stderr
    return [line for line in result.stdout.splitlines() if line]


def ctl_complete(*words, **kw):
    return complete(COMPLETION, CTL, *words, **kw)


def test_completion_commands_and_options(tmp_path):
    env = {**env_without_mount(), "RAMDISKFS_MOUNT": str(tmp_path / "none")}
    assert ctl_complete("cr", env=env) == ["create"]
    assert ctl_complete("po", env=env) == ["powercut", "poweron"]
    assert set(ctl_complete("", env=env)) == set(help_commands())  # no mount: no disk names
    assert ctl_complete("--js", env=env) == ["--json"]
    assert ctl_complete("--output-", env=env) == ["--output-all"]
    # Only the options a command takes.
    assert "--mode" in ctl_complete("create", "--", env=env)
    assert "--json" not in ctl_complete("flush", "--", env=env)
    assert set(ctl_complete("powercut", "ram0", "--", env=env)) >= {"--policy", "--seed",
                                                                    "--mount"}
    assert set(ctl_complete("--", env=env)) <= set(help_options())
    assert ctl_complete("powercut", "ram0", "--policy", "", env=env) == [
        "all_lost", "random", "prefix", "torn"]
    assert ctl_complete("--mount", "=", "x", "mode", "ram0", "c", env=env) == ["cached"]
    assert ctl_complete("readonly", "ram0", "", env=env) == ["0", "1"]
    assert ctl_complete("cache", "ram0", "", env=env) == ["none", "volatile"]
    assert ctl_complete("create", "newdisk", "", env=env) == []


def test_completion_paths_for_upgrade_and_save(tmp_path):
    """upgrade's BINARY and save's DIR complete as files, a directory with its '/'."""
    env = {**env_without_mount(), "RAMDISKFS_MOUNT": str(tmp_path / "none")}
    (tmp_path / "images").mkdir()
    (tmp_path / "ramdiskfs-new").write_text("")
    assert ctl_complete("upgrade", f"{tmp_path}/ramd", env=env) == [f"{tmp_path}/ramdiskfs-new"]
    assert ctl_complete("save", f"{tmp_path}/im", env=env) == [f"{tmp_path}/images/"]
    assert ctl_complete("up", env=env) == ["upgrade"]
    assert "save" in ctl_complete("s", env=env)


def test_completion_disks_and_columns(two_disks):
    mnt = two_disks
    assert ctl_complete("--mount", mnt.path, "flush", "") == ["ram0", "ram1"]
    assert ctl_complete("-m", mnt.path, "r") == ["resize", "readonly", "ram0", "ram1"]
    assert ctl_complete("-m", mnt.path, "ram0", "") == ["ram0", "ram1"]  # list NAME...
    env = {**env_without_mount(), "RAMDISKFS_MOUNT": str(mnt.path)}
    assert ctl_complete("mode", "ram", env=env) == ["ram0", "ram1"]
    assert ctl_complete("mode", "ram0", "", env=env) == ["dax", "direct", "cached", "null"]
    # Columns: the named ones and the daemon's keys; comma lists; case-insensitive.
    assert ctl_complete("-o", "", env=env)[:6] == DEFAULT_COLUMNS
    assert set(ctl_complete("-o", "", env=env)) >= {column_name(k) for k in mnt.stats("ram0")
                                                    if k not in ("name", "allocated_bytes",
                                                                 "readonly")}
    assert ctl_complete("-o", "NAME,wr", env=env) == ["NAME,WRITES", "NAME,WRITE-BYTES",
                                                 "NAME,WRITES-MADE-DURABLE"]
    assert ctl_complete("--output", "=", "SI", env=env) == ["SIZE"]
    assert ctl_complete("--output", "=", env=env)[:2] == ["NAME", "SIZE"]
    assert "NAME,NAME" not in ctl_complete("-o", "NAME,", env=env)


def test_completion_fault_files(fake):
    assert ctl_complete("-m", fake, "fault", "r") == ["ram0"]
    assert ctl_complete("-m", fake, "fault", "ram0", "") == FAULT_FILES + ["clear"]
    assert ctl_complete("-m", fake, "fault", "ram0", "badblocks_") == ["badblocks_once",
                                                                       "badblocks_partial"]


def test_completion_with_bash_completion_loaded(two_disks):
    """The file also works beside bash-completion, as installed."""
    assert ctl_complete("-m", two_disks.path, "delete", "ram1",
                        with_bash_completion=True) == ["ram1"]


def test_ramdiskfs_completion(tmp_path):
    """completion/ramdiskfs offers the options of `ramdiskfs --help` and directories."""
    help_text = run(BIN, "--help").stdout
    long_options = set(re.findall(r"^  (?:-\w, )?(--[a-z-]+)", help_text, re.M))
    assert {"--disk", "--disks", "--max-memory", "--help"} <= long_options
    assert set(complete(FS_COMPLETION, BIN, "--")) == long_options
    assert complete(FS_COMPLETION, BIN, "--max") == ["--max-memory"]
    assert "-f" in complete(FS_COMPLETION, BIN, "-")
    (tmp_path / "mnt").mkdir()
    (tmp_path / "file").write_text("")
    assert complete(FS_COMPLETION, BIN, f"{tmp_path}/") == [str(tmp_path / "mnt")]


# ---- the man page -------------------------------------------------------------------------------


def man_sections():
    sections, current = {}, None
    for line in MAN_PAGE.read_text().splitlines():
        if line.startswith(".SH "):
            current = line[4:].strip('"')
            sections[current] = []
        elif current:
            sections[current].append(line)
    return sections


def man_tags(section):
    """The tag lines (the line after each .TP) of a man page section, as plain text."""
    lines = man_sections()[section]
    tags = [lines[i + 1] for i, line in enumerate(lines[:-1]) if line == ".TP"]
    tags = [re.sub(r"^\.(B|I|BR|IR) ", "", tag) for tag in tags]
    return [re.sub(r"\\f[BIRP]", "", tag).replace("\\-", "-") for tag in tags]


def test_man_page_matches_help():
    """Every command, option and column of --help is in man/ramdiskctl.8, and nothing else.

    Commands must show the same synopsis, options the same names and values."""
    man_commands = {tag.split()[0]: tag for tag in man_tags("COMMANDS")}
    assert man_commands == help_commands()
    man_options = {re.search(r"--[a-z-]+", tag).group(0): tag for tag in man_tags("OPTIONS")}
    assert man_options == help_options()
    assert man_tags("COLUMNS") == help_columns()
    assert [t.split()[0] for t in man_tags("EXIT STATUS")] == ["0", "1"]
    assert "RAMDISKFS_MOUNT" in " ".join(man_sections()["ENVIRONMENT"])


def test_man_page_renders_cleanly():
    result = run("groff", "-man", "-ww", "-z", MAN_PAGE, check=False)
    assert result.returncode == 0 and result.stderr == "", result.stderr
