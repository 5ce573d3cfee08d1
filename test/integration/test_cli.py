"""The command line (SPEC 2): --disk, --disks/--size, --max-memory, --mode, -o forms,
image= preloading, mount(8) with -t fuse.ramdiskfs, and bad arguments."""

import os
import signal
import subprocess

import pytest

from support.io import pattern, read_file
from support.mounts import (BIN, TRANSPORT, TRANSPORT_ARGS, daemon_pids, is_mounted, run,
                            run_expect_exit, stop_process, wait_for)
from support.require import require_fuse
from support.units import KiB, MiB, PAGE


def disk_names(mnt):
    return sorted(p for p in os.listdir(mnt.path) if not p.startswith("."))


# ---- good arguments ------------------------------------------------------------------


def test_disk_option_sizes_and_suffixes(mount_factory):
    mnt = mount_factory("--disk", "a:8M", "--disk", "b:1000", "--disk", "c:3K",
                        "--disk", "d:1G", "--disk", "e:4096",
                        wait_disks=["a", "b", "c", "d", "e"])
    sizes = {n: os.stat(mnt.disk(n)).st_size for n in "abcde"}
    assert sizes == {"a": 8 * MiB, "b": 1024, "c": 3 * KiB, "d": 1 << 30, "e": 4096}, \
        "sizes use powers of 1024 and round up to 512"
    assert disk_names(mnt) == ["a", "b", "c", "d", "e"]
    for n in "abcde":
        assert mnt.stats(n)["size"] == sizes[n]
    assert mnt.stats()["disks"] == 5


def test_disk_equals_form_and_mode_key(mount_factory):
    mnt = mount_factory("--disk=x:8M:mode=direct", "--disk", "y:8M:mode=cached",
                        "--disk", "z:8M:mode=null", wait_disks=["x", "y", "z"])
    assert [mnt.stats(n)["mode"] for n in "xyz"] == ["direct", "cached", "null"]


def test_disks_and_size(mount_factory):
    mnt = mount_factory("--disks", "3", "--size", "8M", wait_disks=["ram0", "ram1", "ram2"])
    assert disk_names(mnt) == ["ram0", "ram1", "ram2"]
    for n in disk_names(mnt):
        assert os.stat(mnt.disk(n)).st_size == 8 * MiB
        assert os.stat(mnt.disk(n)).st_blocks == 0, "an unwritten disk holds no RAM"


def test_disks_and_size_equals_form(mount_factory):
    mnt = mount_factory("--disks=2", "--size=4M", wait_disks=["ram0", "ram1"])
    assert disk_names(mnt) == ["ram0", "ram1"]
    assert os.stat(mnt.disk("ram1")).st_size == 4 * MiB


def test_max_memory_option(mount_factory):
    mnt = mount_factory("--disk", "ram0:64M", "--max-memory", "16M", wait_disks=["ram0"])
    assert mnt.stats()["max_memory"] == 16 * MiB
    st = os.statvfs(mnt.path)
    assert st.f_blocks * (st.f_frsize or st.f_bsize) == 16 * MiB


def test_max_memory_default_is_half_of_ram(mount_factory):
    mnt = mount_factory("--disk", "ram0:8M", wait_disks=["ram0"])
    with open("/proc/meminfo") as f:
        total = int(next(line for line in f if line.startswith("MemTotal:")).split()[1]) * 1024
    cap = mnt.stats()["max_memory"]
    # "half of RAM, as tmpfs": allow rounding to a page (or a huge page)
    assert abs(cap - total // 2) <= 2 * MiB, f"max_memory {cap}, MemTotal {total}"


def test_mode_option_sets_the_default_mode(mount_factory):
    mnt = mount_factory("--mode", "cached", "--disk", "a:8M", "--disk", "b:8M:mode=direct",
                        wait_disks=["a", "b"])
    assert mnt.stats("a")["mode"] == "cached"
    assert mnt.stats("b")["mode"] == "direct", "a per-disk mode= overrides --mode"


def test_dash_o_forms(mount_factory):
    mnt = mount_factory("-o", "disks=2,size=8M,max_memory=32M,mode=direct",
                        wait_disks=["ram0", "ram1"])
    assert disk_names(mnt) == ["ram0", "ram1"]
    assert os.stat(mnt.disk("ram0")).st_size == 8 * MiB
    assert mnt.stats()["max_memory"] == 32 * MiB
    assert mnt.stats("ram1")["mode"] == "direct"


def test_dash_o_disk_and_fuse_options_together(mount_factory, tmp_path):
    img = tmp_path / "img"
    img.write_bytes(pattern(4096, seed=5))
    mnt = mount_factory("-o", f"disk=one:4M:mode=cached,disk=two::image={img},"
                        "fsname=myramdisk,rw,dev,suid", wait_disks=["one", "two"])
    assert mnt.stats("one")["mode"] == "cached"
    assert os.stat(mnt.disk("two")).st_size == 4096
    assert read_file(mnt.disk("two"), 4096) == img.read_bytes()
    with open("/proc/self/mountinfo") as f:
        line = next(l for l in f if l.split()[4] == str(mnt.path))
    assert "myramdisk" in line, "FUSE options such as fsname= reach libfuse"


def test_source_argument_is_ignored(tmp_path):
    """`ramdiskfs SOURCE MOUNTPOINT`, as mount(8) and fstab call it."""
    require_fuse()
    mnt = tmp_path / "m"
    mnt.mkdir()
    log = open(tmp_path / "log", "w")
    proc = subprocess.Popen([str(BIN), "none", str(mnt), "-f", *TRANSPORT_ARGS, "-o",
                             "disks=1,size=4M"],
                            stdout=log, stderr=subprocess.STDOUT)
    log.close()
    try:
        wait_for(lambda: proc.poll() is not None or is_mounted(mnt), 15, "mount")
        assert proc.poll() is None, (tmp_path / "log").read_text()
        assert os.stat(mnt / "ram0").st_size == 4 * MiB
    finally:
        stop_process(proc)
        if is_mounted(mnt):
            run("umount", "-l", mnt, check=False)
    assert proc.returncode == 0


def test_mount_helper_and_fstab_form(tmp_path):
    """mount(8) through mount.fuse3, as an fstab line would do it; the daemon goes to the
    background, the fstype is fuse.ramdiskfs, and umount stops it. mount(8) resets PATH, so
    an uninstalled binary is named the fstab way: `-t fuse /path/to/ramdiskfs#none`."""
    require_fuse()
    if not (os.path.exists("/sbin/mount.fuse3") or os.path.exists("/usr/sbin/mount.fuse3")):
        pytest.skip("mount.fuse3 (fuse3 package) is not installed")
    mnt = tmp_path / "m"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "fuse", f"{BIN}#none", str(mnt), "-o",
                          "disks=2,size=8M,max_memory=64M" +
                          (f",transport={TRANSPORT}" if TRANSPORT else "")],
                         capture_output=True, text=True, timeout=30)
    try:
        assert res.returncode == 0, f"mount failed: {res.stderr}"
        assert is_mounted(mnt)
        with open("/proc/self/mountinfo") as f:
            fields = next(l for l in f if l.split()[4] == str(mnt)).split()
        assert fields[fields.index("-") + 1] == "fuse.ramdiskfs"
        assert daemon_pids(mnt, exe=BIN), "no ramdiskfs process found for the mount"
        assert sorted(p for p in os.listdir(mnt) if not p.startswith(".")) == ["ram0", "ram1"]
        assert os.stat(mnt / "ram1").st_size == 8 * MiB
        with open(mnt / ".control" / "stats") as f:
            assert "max_memory 67108864\n" in f.read()
        run("umount", mnt)
        wait_for(lambda: not daemon_pids(mnt, exe=BIN), 20, "the background daemon to exit")
    finally:
        if is_mounted(mnt):
            run("fusermount3", "-u", mnt, check=False)
        for pid in daemon_pids(mnt, exe=BIN):
            os.kill(pid, signal.SIGTERM)  # the daemon this test started, by pid
        if is_mounted(mnt):
            run("umount", "-l", mnt, check=False)


# ---- image= ---------------------------------------------------------------------------


@pytest.fixture
def sparse_image(tmp_path):
    """A sparse image: 4 KiB of data at 0, 8 KiB at 1 MiB, 1000 bytes at 3 MiB; total size
    3 MiB + 1000 bytes (not a multiple of 512)."""
    img = tmp_path / "disk.img"
    chunks = {0: pattern(4096, seed=1), MiB: pattern(8192, seed=2), 3 * MiB: pattern(1000, seed=3)}
    fd = os.open(img, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for off, data in chunks.items():
            os.pwrite(fd, data, off)
    finally:
        os.close(fd)
    assert os.stat(img).st_size == 3 * MiB + 1000
    expected = bytearray(3 * MiB + 1024)
    for off, data in chunks.items():
        expected[off:off + len(data)] = data
    return img, bytes(expected)


def test_image_preload_size_omitted(mount_factory, sparse_image):
    img, expected = sparse_image
    mnt = mount_factory("--disk", f"ram0::image={img}", wait_disks=["ram0"])
    disk = mnt.disk("ram0")
    assert os.stat(disk).st_size == 3 * MiB + 1024, "SIZE omitted: image size rounded up to 512"
    assert read_file(disk, len(expected) + 4096) == expected
    # only the data ranges were loaded: pages 0, 256, 257, 768
    assert mnt.stats("ram0")["allocated_pages"] == 4
    assert os.stat(disk).st_blocks == 4 * PAGE // 512


def test_image_preload_with_size(mount_factory, sparse_image):
    img, expected = sparse_image
    mnt = mount_factory("--disk", f"ram0:8M:image={img}:mode=direct", wait_disks=["ram0"])
    disk = mnt.disk("ram0")
    assert os.stat(disk).st_size == 8 * MiB
    assert read_file(disk, 8 * MiB) == expected + bytes(8 * MiB - len(expected))
    assert mnt.stats("ram0")["allocated_pages"] == 4


# ---- bad arguments --------------------------------------------------------------------

BAD_ARGS = [
    # (arguments, a word the error line must contain)
    (["--disk", "ram0:12Q"], "12Q"),
    (["--disk", "ram0:-5M"], "-5M"),
    (["--disk", "ram0:1.5"], "1.5"),  # a fraction needs a unit
    (["--disk", "ram0:99999999999999999999"], "99999999999999999999"),
    (["--disk", "ram0:16777216T"], "16777216T"),
    (["--disk", "ram0"], "ram0"),
    (["--disk", "ram0:"], "ram0"),
    (["--disk", "bad/name:8M"], "bad/name"),
    (["--disk", "..:8M"], ".."),
    (["--disk", ".control:8M"], ".control"),
    (["--disk", "ram0:8M:mode=turbo"], "turbo"),
    (["--disk", "ram0:8M:colour=red"], "colour"),
    (["--disk", "ram0:8M:readonly=2"], "readonly"),
    (["--disk", "ram0:8M", "--disk", "ram0:4M"], "ram0"),
    (["--disks", "abc", "--size", "8M"], "abc"),
    (["--disks", "-1", "--size", "8M"], "-1"),
    (["--disks", "5000", "--size", "1M"], "5000"),
    (["--disks", "2", "--size", "8X"], "8X"),
    (["--max-memory", "12Q"], "12Q"),
    (["--max-memory", "-1"], "-1"),
    (["--mode", "turbo"], "turbo"),
    (["--store", "floppy"], "floppy"),
    (["--frobnicate"], "frobnicate"),
    (["-o", "size=8Q,disks=1"], "8Q"),
    (["-o", "mode=fast"], "fast"),
    (["-o", "max_memory=lots"], "lots"),
    (["-o", "disk=ram0:8M:mode=turbo"], "turbo"),
]


HINT = "Try 'ramdiskfs --help'."


def _error_lines(err):
    """stderr lines, without a trailing "Try 'ramdiskfs --help'." hint (whether the hint
    may be there at all is test_bad_argument_error_is_exactly_one_line's business)."""
    lines = [l for l in err.splitlines() if l.strip()]
    if len(lines) > 1 and lines[-1] == HINT:
        lines.pop()
    return lines


def _assert_refused(argv, word, mountpoint=None, status=1):
    """`status`: 1 for a bad option (incorrect invocation), 32 when the mount fails, as
    mount(8) and its helpers report them."""
    code, out, err = run_expect_exit(argv)
    lines = _error_lines(err)
    assert code == status, f"exit status {code} (want {status}); stderr: {err!r}"
    assert len(lines) == 1, f"want one error line on stderr, got {lines!r}"
    assert word in lines[0], f"the error line does not name the argument {word!r}: {lines[0]!r}"
    if mountpoint is not None:
        assert not is_mounted(mountpoint), "a bad argument left a mount behind"


def test_bad_argument_error_is_exactly_one_line(tmp_path):
    """SPEC 2 / contract: "one line on stderr naming the argument" -- nothing else."""
    require_fuse()
    mnt = tmp_path / "m"
    mnt.mkdir()
    code, out, err = run_expect_exit([BIN, mnt, "-f", "--disk", "ram0:12Q"])
    assert code == 1
    assert len(err.splitlines()) == 1, f"stderr has more than the one error line: {err!r}"
    assert "12Q" in err


@pytest.mark.parametrize("args,word", BAD_ARGS, ids=[" ".join(a) for a, _ in BAD_ARGS])
def test_bad_argument_is_refused(tmp_path, args, word):
    require_fuse()
    mnt = tmp_path / "m"
    mnt.mkdir()
    _assert_refused([BIN, mnt, "-f", *args], word, mnt)


def test_missing_image_is_refused(tmp_path):
    require_fuse()
    mnt = tmp_path / "m"
    mnt.mkdir()
    missing = tmp_path / "no-such-image.img"
    _assert_refused([BIN, mnt, "-f", "--disk", f"ram0::image={missing}"], str(missing), mnt,
                    status=32)


def test_missing_mountpoint_is_refused():
    require_fuse()
    code, out, err = run_expect_exit([BIN, "-f", "--disk", "ram0:8M"])
    assert code == 1, f"exit status {code}; stderr {err!r}"
    lines = _error_lines(err)
    assert len(lines) == 1 and "MOUNTPOINT" in lines[0].upper(), err


def test_extra_positional_argument_is_refused(tmp_path):
    require_fuse()
    mnt = tmp_path / "m"
    mnt.mkdir()
    _assert_refused([BIN, "none", mnt, "surplus", "-f", "--disk", "ram0:8M"], "surplus", mnt)
