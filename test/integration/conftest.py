"""Fixtures that mount the real ramdiskfs binary and always clean up (fixtures only: the
helpers they use, and that tests use, live in support/; see README.md).

Every test that mounts gets a fresh temporary mount point. Whatever a test
leaves behind (loop devices attached to disk files, filesystems mounted from
those loop devices, the daemon itself) is torn down in the fixture's finalizer,
in the reverse order it was made, even when the test fails. Only processes
this code started are signalled, by pid.

Environment: RAMDISKFS_BIN, RAMDISKCTL_BIN, RAMDISKFS_TRANSPORT (support/mounts.py); CI=true
makes a missing /dev/fuse or loop device fail instead of skipping (support/require.py).
With RAMDISKFS_TRANSPORT=uring the session turns the fuse module's enable_uring on first.
"""

import pytest

from support.mounts import ENABLE_URING, TRANSPORT, start_mount, teardown_mount
from support.require import require, require_fuse


@pytest.fixture(scope="session")
def uring_enabled():
    """The fuse module's enable_uring set to Y for the session (as root), then put back as
    it was. The daemon never writes it (SPEC 14); the tests do, as the administrator would.
    Under CI=true a kernel without it, or a switch that cannot be set, fails."""
    require_fuse()
    require(ENABLE_URING.exists(), f"{ENABLE_URING} (a kernel with FUSE over io_uring)")
    old = ENABLE_URING.read_text().strip()
    try:
        ENABLE_URING.write_text("1")
    except OSError as e:
        require(False, f"a writable {ENABLE_URING} ({e})")
    try:
        require(ENABLE_URING.read_text().strip() == "Y", f"an {ENABLE_URING} that stays Y")
        yield
    finally:
        ENABLE_URING.write_text("1" if old == "Y" else "0")


@pytest.fixture(scope="session", autouse=True)
def _transport_prerequisites(request):
    """RAMDISKFS_TRANSPORT=uring: every daemon needs enable_uring on (auto and dev do not)."""
    if TRANSPORT == "uring":
        request.getfixturevalue("uring_enabled")


@pytest.fixture
def mount_factory(tmp_path):
    """mount_factory(*args, wait_disks=None) -> Mount of `ramdiskfs MNT -f ARGS...`,
    mounted, with the disks in `wait_disks` present; every mount is torn down afterwards."""
    require_fuse()
    made = []
    count = 0

    def make(*args, wait_disks=None):
        nonlocal count
        path = tmp_path / f"mnt{count}"
        log_path = tmp_path / f"ramdiskfs{count}.log"
        count += 1
        path.mkdir()
        mnt = start_mount(path, log_path, *args, wait_disks=wait_disks or ())
        made.append(mnt)
        return mnt

    yield make
    reports = []
    for mnt in reversed(made):
        teardown_mount(mnt)
        # A sanitizer build of the daemon (scripts/test.sh runs the suites against one)
        # reports memory errors and leaks in its log, often only at exit: make them fail
        # the test that provoked them instead of scrolling by.
        log = mnt.log()
        for marker in SANITIZER_MARKERS:
            if marker in log:
                start = log.index(marker)
                reports.append(f"{mnt.log_path}: {log[start:start + 3000]}")
                break
    if reports:
        pytest.fail("the daemon's sanitizer reported:\n" + "\n".join(reports))


# What ASan, LSan, UBSan and TSan print first when they find something.
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "WARNING: ThreadSanitizer")


@pytest.fixture
def mount(mount_factory):
    """One mount with a 64 MiB disk ram0 in the default mode."""
    return mount_factory("--disk", "ram0:64M", wait_disks=["ram0"])
