"""Guards that skip a test where the machine lacks something, or fail it under CI=true.

Under CI=true a missing /dev/fuse, loop-control or binary is a failure, never a skip
(the project's rule: a skip must not hide a gap in CI).
"""

import os
import pathlib
import platform
import shutil
import subprocess

import pytest

from .mounts import BIN, CTL

IN_CI = os.environ.get("CI", "").lower() == "true"
PROGRAMS = pathlib.Path(__file__).resolve().parents[1] / "programs"  # helper programs tests run
CAP_SYS_RESOURCE = 24


def _require(condition, what):
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI=true and {what} is missing: integration tests cannot run")
    pytest.skip(f"{what} is missing")


def require(condition, what):
    """Skips the test unless `condition` (fails it under CI=true), naming `what` is missing:
    for guards that live with their fixture (conftest.py's enable_uring)."""
    _require(condition, what)


def require_fuse():
    _require(os.path.exists("/dev/fuse"), "/dev/fuse")
    _require(os.geteuid() == 0, "root")
    _require(BIN.exists(), f"the ramdiskfs binary ({BIN})")


def require_loop():
    require_fuse()
    _require(os.path.exists("/dev/loop-control"), "/dev/loop-control")


def require_ctl():
    _require(CTL.exists(), f"ramdiskctl ({CTL})")


def require_x86_64():
    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip(f"machine code in this test is x86-64; this machine is {platform.machine()}")


def has_cap(bit):
    """Whether this process has capability `bit` (e.g. CAP_SYS_RESOURCE) in its effective set."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> bit & 1)
    return False


def compile_c(source, out, *flags):
    """Compiles programs/<source> with cc into `out`; skips if there is no C compiler."""
    found = (shutil.which(name) or shutil.which(name, path="/usr/bin") for name in ("cc", "gcc", "clang"))
    cc = next((path for path in found if path), None)
    if cc is None:
        pytest.skip("no C compiler (cc) on this machine")
    cmd = [cc, "-O2", "-o", str(out), str(PROGRAMS / source), *flags]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{res.stderr}")
    return pathlib.Path(out)
