"""`cmake --install`: what it installs, and that `mount -t fuse.ramdiskfs` works from
the installed files alone. The install goes to a DESTDIR with prefix /usr/local; the
mount runs in a private mount namespace where that DESTDIR is bind-mounted over
/usr/local, so mount(8) -> mount.fuse3 -> `ramdiskfs` on the default PATH finds the
installed binary, and nothing on this machine's real /usr/local is touched."""

import os
import shlex
import signal
import stat

import pytest

from support.mounts import ROOT, cmake_install, daemon_pids, run
from support.require import require_fuse


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    return cmake_install(tmp_path_factory.mktemp("destdir"), prefix="/usr/local")


def test_installed_files(installed):
    expect = ["bin/ramdiskfs", "bin/ramdiskctl", "share/doc/ramdiskfs/README.md",
              "share/doc/ramdiskfs/LICENSE", "share/doc/ramdiskfs/examples/example.conf",
              "lib/systemd/system/ramdiskfs@.service", "lib/ramdiskfs/ramdiskfs-service"]
    expect += [f"share/man/man8/{p.name}" for p in (ROOT / "man").glob("*.8")]
    expect += [f"share/doc/ramdiskfs/{p.name}" for p in (ROOT / "docs").glob("*.md")]
    expect += [f"share/bash-completion/completions/{p.name}"
               for p in (ROOT / "completion").glob("*")]
    missing = [f for f in expect if not (installed / f).is_file()]
    assert missing == []
    assert "share/man/man8/ramdiskfs.8" in expect
    for exe in ("bin/ramdiskfs", "bin/ramdiskctl", "lib/ramdiskfs/ramdiskfs-service"):
        assert os.stat(installed / exe).st_mode & stat.S_IXOTH, exe
    unit = (installed / "lib/systemd/system/ramdiskfs@.service").read_text()
    assert "ExecStart=/usr/local/lib/ramdiskfs/ramdiskfs-service start %i\n" in unit
    assert "ExecStop=/usr/local/lib/ramdiskfs/ramdiskfs-service save %i\n" in unit
    helper = (installed / "lib/ramdiskfs/ramdiskfs-service").read_text()
    assert "bin=${RAMDISKFS_BIN:-/usr/local/bin/ramdiskfs}\n" in helper
    assert "@" not in unit.replace("ramdiskfs@", ""), "an unsubstituted @VAR@ in the unit"


def test_mount_t_fuse_ramdiskfs_from_installed_files(installed, tmp_path):
    require_fuse()
    mnt = tmp_path / "x"
    mnt.mkdir()
    q = shlex.quote
    script = f"""
set -eu
mount --bind {q(str(installed))} /usr/local
mount -t fuse.ramdiskfs ramdiskfs {q(str(mnt))} -o disks=1,size=64M
pid=$(pgrep -f -x "ramdiskfs ramdiskfs {mnt} -o .*" | head -1)
echo "exe=$(readlink /proc/$pid/exe)"
echo "fstype=$(findmnt -n -o FSTYPE --mountpoint {q(str(mnt))})"
echo "size=$(stat -c %s {q(str(mnt))}/ram0)"
head -c 1048576 /dev/urandom > {q(str(tmp_path / "data"))}
dd if={q(str(tmp_path / "data"))} of={q(str(mnt))}/ram0 bs=1M seek=3 conv=notrunc,fsync status=none
dd if={q(str(mnt))}/ram0 bs=1M skip=3 count=1 status=none | cmp - {q(str(tmp_path / "data"))}
echo "ctl=$(/usr/local/bin/ramdiskctl {q(str(mnt))} --noheadings | awk '{{print $1}}')"
umount {q(str(mnt))}
echo done
"""
    try:
        res = run("unshare", "--mount", "--propagation", "private", "bash", "-c", script,
                  check=False, timeout=60)
        out = dict(l.split("=", 1) for l in res.stdout.splitlines() if "=" in l)
        assert res.returncode == 0 and "done" in res.stdout, res.stdout + res.stderr
        assert out["exe"] == "/usr/local/bin/ramdiskfs", "mount.fuse3 ran another ramdiskfs"
        assert out["fstype"] == "fuse.ramdiskfs"
        assert out["size"] == str(64 << 20)
        assert out["ctl"] == "ram0"
    finally:
        # The mount lives in the namespace, which lives as long as the daemon does.
        for pid in daemon_pids(mnt):
            os.kill(pid, signal.SIGTERM)
