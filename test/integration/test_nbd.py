"""docs/nbd.md's recipe: a disk served by an existing NBD server (nbdkit's file plugin,
or qemu-nbd), over a Unix socket only (never TCP), checked both ways with nbdcopy:
what a client writes is in the disk file, what is written to the disk file is what a
client reads. The servers are started here and stopped by pid."""

import os
import shutil
import subprocess

import pytest

from support.io import pattern
from support.mounts import run, stop_process, wait_for
from support.require import IN_CI
from support.units import MiB

DISK = 16 * MiB


def require(tool):
    path = shutil.which(tool)
    if path:
        return path
    if IN_CI:
        pytest.fail(f"CI=true and {tool} is missing (scripts/deps.sh test installs it)")
    pytest.skip(f"{tool} is missing")


def serve(engine, disk, sock):
    """Starts the recipe's server for `disk` on the Unix socket `sock`; returns the process."""
    if engine == "nbdkit":
        argv = [require("nbdkit"), "--foreground", "--exit-with-parent", "--unix", str(sock),
                "file", f"file={disk}"]
    else:
        argv = [require("qemu-nbd"), "--socket", str(sock), "--format", "raw", "--persistent",
                "--shared", "4", "--discard", "unmap", str(disk)]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


@pytest.fixture
def server(tmp_path):
    made = []

    def start(engine, disk):
        sock = tmp_path / f"{engine}.sock"
        proc = serve(engine, disk, sock)
        made.append(proc)
        wait_for(lambda: proc.poll() is not None or sock.exists(), 15, f"{engine} socket")
        assert proc.poll() is None, proc.stdout.read().decode(errors="replace")
        return proc, f"nbd+unix:///?socket={sock}"

    yield start
    for proc in made:
        stop_process(proc)


def no_tcp_listener(pid):
    """The server listens on no TCP socket (its fds are all non-inet)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        target = os.readlink(f"/proc/{pid}/fd/{fd}")
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                if line.split()[9] in inodes:
                    return False
    return True


@pytest.mark.parametrize("engine,mode", [("nbdkit", "dax"), ("nbdkit", "direct"),
                                         ("qemu-nbd", "direct")])
def test_nbd_both_ways(mount_factory, server, tmp_path, engine, mode):
    require("nbdcopy")
    mnt = mount_factory("--disk", f"ram0:{DISK}:mode={mode}", wait_disks=["ram0"])
    disk = mnt.disk("ram0")
    # Fill the disk with 0xff first, so zeroes an NBD client writes must really land.
    with open(disk, "r+b") as f:
        f.write(b"\xff" * DISK)
    proc, uri = server(engine, disk)
    assert no_tcp_listener(proc.pid), f"{engine} listens on TCP"

    size = run(require("nbdinfo"), "--size", uri).stdout.strip()
    assert int(size) == DISK

    # Client -> disk: 1 MiB data, 2 MiB of zeroes (nbdcopy may send them as
    # WRITE_ZEROES, i.e. a punched hole), 1 MiB data.
    src = tmp_path / "src.img"
    blob = pattern(MiB, 7) + bytes(2 * MiB) + pattern(MiB, 8)
    src.write_bytes(blob)
    run(require("nbdcopy"), src, uri)
    with open(disk, "rb") as f:
        assert f.read(len(blob)) == blob, "the disk does not hold what the NBD client wrote"
        assert f.read(MiB) == b"\xff" * MiB, "nbdcopy wrote past the source"

    # Disk -> client: a write to the disk file is what the client reads.
    late = pattern(256 * 1024, 9)
    with open(disk, "r+b") as f:
        f.seek(12 * MiB)
        f.write(late)
        os.fsync(f.fileno())
    dst = tmp_path / "dst.img"
    run(require("nbdcopy"), uri, dst)
    with open(dst, "rb") as f, open(disk, "rb") as d:
        got = f.read()
        assert len(got) == DISK
        assert got[12 * MiB:12 * MiB + len(late)] == late
        assert got == d.read(), "the client's copy differs from the disk file"
    assert stop_process(proc) in (0, -15), proc.stdout.read().decode(errors="replace")
