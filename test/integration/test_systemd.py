"""systemd integration without a running systemd: the unit's ExecStart/ExecStop
lines are run as systemd would run them (%i filled in, CONFIGURATION_DIRECTORY and
STATE_DIRECTORY set from the unit, NOTIFY_SOCKET a datagram socket this test owns,
JOURNAL_STREAM naming the daemon's stderr), from files that `cmake --install` put in
a temporary prefix. Also: where the log goes in the background, and
`systemd-analyze verify` of the unit.
"""

import configparser
import os
import pathlib
import shlex
import signal
import socket
import struct
import subprocess
import time

import pytest

from support.io import pattern
from support.mounts import (BIN, cmake_install, daemon_pids, is_mounted, run, stop_process,
                            wait_for)
from support.require import IN_CI, require_fuse
from support.units import MiB

INSTANCE = "t1"


@pytest.fixture(scope="module")
def prefix(tmp_path_factory):
    """`cmake --install` of the build that RAMDISKFS_BIN belongs to, into a temp prefix."""
    return cmake_install(tmp_path_factory.mktemp("prefix"))


def read_unit(prefix):
    path = prefix / "lib" / "systemd" / "system" / "ramdiskfs@.service"
    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.optionxform = str
    unit.read(path)
    return path, unit["Service"]


class Service:
    """One instance of the unit, started and stopped the way systemd does it."""

    def __init__(self, prefix, tmp_path, config):
        self.unit_path, self.service = read_unit(prefix)
        assert self.service["Type"] == "notify"
        self.tmp = tmp_path
        self.conf_dir = tmp_path / "etc" / self.service["ConfigurationDirectory"]
        self.state_dir = tmp_path / "var" / "lib" / self.service["StateDirectory"]
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.conf_dir / f"{INSTANCE}.conf").write_text(config)
        self.proc = None
        self.sock = None
        self.messages = []
        self.log_path = tmp_path / "journal.log"

    def env(self, journal_fd=None):
        env = dict(os.environ)
        env.pop("RAMDISKFS_BIN", None)  # the installed helper must find the installed daemon
        env.update(CONFIGURATION_DIRECTORY=str(self.conf_dir),
                   STATE_DIRECTORY=str(self.state_dir))
        if self.sock is not None:
            env["NOTIFY_SOCKET"] = self.sock.getsockname()
        if journal_fd is not None:
            st = os.fstat(journal_fd)
            env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        return env

    def command(self, key):
        line = self.service[key].replace("%i", INSTANCE)
        return shlex.split(line)

    def start(self):
        path = self.tmp / "notify.sock"
        if path.exists():
            path.unlink()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen(self.command("ExecStart"), env=self.env(log.fileno()),
                                     stdout=log, stderr=log)
        log.close()

    def wait_message(self, key, timeout=20):
        """Waits for a datagram holding KEY=...; returns (fields, sender pid)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data, anc, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
            except socket.timeout:
                break
            pid = None
            for level, kind, payload in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = struct.unpack("iII", payload[:12])[0]
            fields = dict(l.split("=", 1) for l in data.decode().splitlines() if "=" in l)
            self.messages.append(fields)
            if key in fields:
                return fields, pid
        raise TimeoutError(f"no {key} within {timeout}s; got {self.messages}; log:\n{self.log()}")

    def stop(self):
        """ExecStop, then SIGTERM to the main process (KillMode's first step)."""
        res = subprocess.run(self.command("ExecStop"), env=self.env(), capture_output=True,
                             text=True, timeout=300)
        status = stop_process(self.proc, 60)
        return res, status

    def log(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def close(self, mountpoint):
        if self.proc is not None:
            stop_process(self.proc)
        if is_mounted(mountpoint):
            run("umount", "-l", mountpoint, check=False)
        if self.sock is not None:
            self.sock.close()


@pytest.fixture
def service_factory(prefix, tmp_path):
    require_fuse()
    made = []

    def make(config, mountpoint):
        s = Service(prefix, tmp_path, config)
        made.append((s, mountpoint))
        return s

    yield make
    for s, mountpoint in made:
        s.close(mountpoint)


def write_at(path, offset, data):
    fd = os.open(path, os.O_WRONLY)
    try:
        assert os.pwrite(fd, data, offset) == len(data)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_at(path, offset, length):
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(length)


def test_unit_notify_save_and_load(service_factory, tmp_path):
    mnt = tmp_path / "mnt"  # the helper makes it
    config = (f"# test instance\nmountpoint = {mnt}\n"
              "disk = ram0:64M:mode=direct\ndisk = big:1G\n"
              "max_memory = 512M\npersist = yes\n")
    svc = service_factory(config, mnt)
    svc.start()
    fields, pid = svc.wait_message("READY")
    # READY=1 only once the mount serves requests, and from the main PID (the helper
    # execs the daemon; NotifyAccess=main would drop a child's message).
    assert is_mounted(mnt), "READY=1 arrived before the mount was there"
    assert os.stat(mnt / "ram0").st_size == 64 * MiB
    assert fields["READY"] == "1" and "2 disk(s)" in fields.get("STATUS", "")
    assert pid == svc.proc.pid
    assert svc.service["NotifyAccess"] == "main"

    data = {("ram0", 0): pattern(MiB, 1), ("ram0", 40 * MiB + 4096): pattern(4096, 2),
            ("big", 900 * MiB): pattern(64 * 1024, 3), ("extra", 4096): pattern(8192, 4)}
    run("truncate", "-s", "8M", mnt / "extra")  # a disk made at run time persists too
    for (name, off), blob in data.items():
        write_at(mnt / name, off, blob)

    res, status = svc.stop()
    assert res.returncode == 0, res.stderr
    assert status == 0, svc.log()
    assert "STOPPING" in svc.wait_message("STOPPING")[0]
    assert not is_mounted(mnt)
    images = svc.state_dir / INSTANCE
    sizes = {p.name: p.stat().st_size for p in images.iterdir()}
    assert sizes == {"ram0.img": 64 * MiB, "big.img": 1 << 30, "extra.img": 8 * MiB}
    allocated = {p.name: p.stat().st_blocks * 512 for p in images.iterdir()}
    print("allocated image bytes:", allocated)
    assert allocated["big.img"] <= 1 * MiB, f"the image is not sparse: {allocated}"
    assert allocated["ram0.img"] <= 2 * MiB, allocated
    # The journal got the daemon's lines with sd-daemon priority prefixes.
    log = svc.log()
    assert "<5>mounted on" in log and "<5>unmounted" in log, log

    # Start again: everything comes back.
    svc.start()
    svc.wait_message("READY")
    for (name, off), blob in data.items():
        assert read_at(mnt / name, off, len(blob)) == blob, f"{name}@{off}"
    assert os.stat(mnt / "extra").st_size == 8 * MiB
    assert read_at(mnt / "big", 0, MiB) == bytes(MiB)
    # A deleted disk's image goes at the next save; a frozen disk refuses writes.
    os.unlink(mnt / "extra")
    # A disk open read-write through passthrough cannot be frozen (dax: the kernel
    # writes past the daemon; direct: it may be mapped shared and writable): the save
    # still happens, and says so.
    writer = os.open(mnt / "big", os.O_RDWR)
    stats = (mnt / ".control" / "big" / "stats").read_text()
    big_dax = "\npassthrough 1\n" in stats and ("\nmode dax\n" in stats or
                                                "\nmode direct\n" in stats)
    try:
        res = subprocess.run(svc.command("ExecStop"), env=svc.env(), capture_output=True,
                             text=True, timeout=300)
    finally:
        os.close(writer)
    assert res.returncode == 0, res.stderr
    assert ("big: cannot make it read-only" in res.stderr) == big_dax, res.stderr
    with pytest.raises(OSError) as err:
        write_at(mnt / "ram0", 0, b"late")
    assert err.value.errno == 30  # EROFS: a write after the save would be lost
    assert stop_process(svc.proc) == 0
    assert sorted(p.name for p in images.iterdir()) == ["big.img", "ram0.img"]


def test_no_ready_when_the_mount_fails(service_factory, tmp_path):
    """A start that cannot mount exits non-zero and never says READY=1."""
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    svc = service_factory(f"mountpoint = {not_a_dir}\ndisk = ram0:1M\n", not_a_dir)
    svc.start()
    assert svc.proc.wait(timeout=30) != 0
    with pytest.raises(TimeoutError):
        svc.wait_message("READY", timeout=0.5)


def test_helper_rejects_bad_config(service_factory, tmp_path):
    mnt = tmp_path / "m"
    svc = service_factory(f"mountpoint = {mnt}\nbogus = 1\n", mnt)
    res = subprocess.run(svc.command("ExecStart"), env=svc.env(), capture_output=True,
                         text=True, timeout=30)
    assert res.returncode == 1
    assert f"{INSTANCE}.conf:2: unknown key 'bogus'" in res.stderr
    # save refuses to touch images when the mount is not there (it would delete them).
    (svc.conf_dir / f"{INSTANCE}.conf").write_text(f"mountpoint = {mnt}\npersist = yes\n")
    keep = svc.state_dir / INSTANCE / "ram0.img"
    keep.parent.mkdir(parents=True)
    keep.write_bytes(b"old")
    res = subprocess.run(svc.command("ExecStop"), env=svc.env(), capture_output=True,
                         text=True, timeout=30)
    assert res.returncode == 1 and "not a ramdiskfs mount" in res.stderr
    assert keep.read_bytes() == b"old"


def test_persist_no_saves_nothing(service_factory, tmp_path):
    mnt = tmp_path / "mnt"
    svc = service_factory(f"mountpoint = {mnt}\ndisks = 2\nsize = 8M\n", mnt)
    svc.start()
    svc.wait_message("READY")
    assert sorted(p for p in os.listdir(mnt) if p[0] != ".") == ["ram0", "ram1"]
    res, status = svc.stop()
    assert res.returncode == 0 and status == 0
    assert not (svc.state_dir / INSTANCE).exists()


def test_systemd_analyze_verify(prefix, tmp_path):
    tool = "/usr/bin/systemd-analyze"
    if not os.path.exists(tool):
        if IN_CI:
            pytest.fail("CI=true and systemd-analyze is missing (scripts/deps.sh test installs it)")
        pytest.skip("systemd-analyze is missing")
    unit_path, _ = read_unit(prefix)
    # An instance of the template, beside it, as verify wants a unit name it can load.
    inst = tmp_path / "ramdiskfs@verify.service"
    inst.write_text(unit_path.read_text())
    res = run(tool, "verify", "--man=no", inst, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stderr.strip() == "", res.stderr  # verify exits 0 on parse warnings


# ---- the log in the background --------------------------------------------------------


@pytest.mark.parametrize("stderr_kind", ["file", "pipe"])
def test_background_log_is_not_lost(tmp_path, stderr_kind):
    """Without -f the daemon detaches. With no /dev/log (this machine) its lines go on
    to the stderr it was started with if that is a file (or a terminal), as
    "ramdiskfs[PID]: ...". A pipe is not kept (its reader would wait for EOF as long
    as the daemon lives): the lines go to /run/ramdiskfs.log, and stderr says so."""
    require_fuse()
    mnt = tmp_path / "m"
    mnt.mkdir()
    err_path = tmp_path / "err.log"
    env = {k: v for k, v in os.environ.items() if k not in ("JOURNAL_STREAM", "NOTIFY_SOCKET")}
    argv = [str(BIN), str(mnt), "--disk", "ram0:1M"]
    pids = []
    try:
        began = time.monotonic()
        if stderr_kind == "file":
            with open(err_path, "w") as log:
                res = subprocess.run(argv, stderr=log, stdout=log, env=env, timeout=30)
            early = ""
        else:
            res = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=30)
            early = res.stderr
        assert time.monotonic() - began < 15, "the caller waited for the daemon's stderr"
        assert res.returncode == 0
        wait_for(lambda: is_mounted(mnt), 10, "mount")
        pids = daemon_pids(mnt)
        assert len(pids) == 1
        if os.path.exists("/dev/log"):
            log_path = None  # the lines go to syslog: nothing to read here
        elif stderr_kind == "file":
            log_path = err_path
        else:
            log_path = pathlib.Path("/run/ramdiskfs.log")
            assert early == "ramdiskfs: no /dev/log: logging to /run/ramdiskfs.log after detaching\n"
        mine = f"ramdiskfs[{pids[0]}]: "
        if log_path is not None:
            wait_for(lambda: f"{mine}mounted on {mnt} " in log_path.read_text(), 10, "log line")
        run("umount", mnt)
        wait_for(lambda: not daemon_pids(mnt), 20, "the daemon to exit")
        if log_path is not None:
            assert f"{mine}unmounted {mnt}\n" in log_path.read_text()
    finally:
        if is_mounted(mnt):
            run("umount", "-l", mnt, check=False)
        for pid in daemon_pids(mnt):
            os.kill(pid, signal.SIGTERM)  # our daemon: its argv names our mount point


def test_journal_prefix_in_the_foreground(mount_factory, tmp_path):
    """JOURNAL_STREAM set but naming another file: not the journal, plain lines."""
    other = tmp_path / "other"
    other.write_text("")
    st = os.stat(other)
    os.environ["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
    try:
        mnt = mount_factory("--disk", "ram0:1M", wait_disks=["ram0"])
    finally:
        del os.environ["JOURNAL_STREAM"]
    wait_for(lambda: "mounted on" in mnt.log(), 10, "log line")
    assert "ramdiskfs: mounted on" in mnt.log() and "<5>" not in mnt.log()
