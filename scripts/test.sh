#!/usr/bin/env bash
# Builds ramdiskfs and runs every test: unit tests, the same under ASan+UBSan
# and TSan, a short fuzz run of the parsers, and the integration tests that
# mount the real binary (root, /dev/fuse and loop devices needed), once with
# the normal build over /dev/fuse, once over FUSE io_uring, and once with the
# ASan+UBSan daemon over io_uring.
#
#   scripts/test.sh [--quick] [pytest args...]
#
# --quick skips the sanitizer builds and the fuzz run. With CI=true a missing
# /dev/fuse or loop device is a failure, never a skip.
set -uo pipefail
cd "$(dirname "$0")/.."

quick=0
if [[ ${1:-} == --quick ]]; then quick=1; shift; fi
jobs=$(nproc)
results=$(mktemp -d)
trap 'rm -rf "$results"' EXIT
failed_stages=()

stage() { echo; echo "=== $*"; }
fail() { echo "FAILED: $1"; failed_stages+=("$1"); }

scripts/deps.sh test || exit 1

if [[ ${CI:-} == true ]]; then
  missing=0
  [[ -c /dev/fuse ]] || { echo "CI: /dev/fuse is missing"; missing=1; }
  [[ -e /dev/loop-control ]] || { echo "CI: /dev/loop-control is missing"; missing=1; }
  [[ $(id -u) -eq 0 ]] || { echo "CI: tests must run as root"; missing=1; }
  if ((missing)); then
    echo "0 passed, 1 failed"
    exit 1
  fi
fi

build() {  # build DIR [cmake args...]
  local dir=$1; shift
  cmake -S . -B "$dir" "$@" >/dev/null && cmake --build "$dir" -j"$jobs" >"$results/build.log" 2>&1 \
    || { tail -40 "$results/build.log"; return 1; }
}

unit() {  # unit NAME DIR [env...]
  local name=$1 dir=$2; shift 2
  (cd "$dir" && env "$@" ctest --output-on-failure -j"$jobs" \
     --output-junit "$results/$name.xml") || fail "$name unit tests"
}

stage "build (RelWithDebInfo)"
build build -DCMAKE_BUILD_TYPE=RelWithDebInfo || { fail build; echo "0 passed, 1 failed"; exit 1; }

stage "unit tests"
unit unit build

if ((!quick)); then
  stage "unit tests under ASan+UBSan"
  if build build-asan -DCMAKE_BUILD_TYPE=Debug -DRAMDISKFS_SANITIZE=address -DRAMDISKFS_BENCH=OFF; then
    unit asan build-asan ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
      UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  else
    fail "asan build"
  fi

  stage "unit tests under TSan"
  if build build-tsan -DCMAKE_BUILD_TYPE=Debug -DRAMDISKFS_SANITIZE=thread -DRAMDISKFS_BENCH=OFF; then
    unit tsan build-tsan TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1
  else
    fail "tsan build"
  fi

  stage "fuzz the control-file and option parsers (30 s)"
  scripts/fuzz.sh 30 || fail "fuzz"
fi

stage "integration tests (real mounts)"
RAMDISKFS_TRANSPORT=dev RAMDISKFS_BIN=$PWD/build/ramdiskfs /usr/bin/python3 -m pytest \
  test/integration -q --junitxml="$results/integration.xml" "$@" || fail "integration tests"

# The same suites with every daemon on FUSE over io_uring (the session turns the
# fuse module's enable_uring on and restores it; CI=true fails if it cannot).
# Less test_survive.py: --supervise runs on /dev/fuse only (docs/survive.md),
# so its daemons are the dev stage's again; it stays in the ASan stage below.
stage "integration tests over FUSE io_uring"
RAMDISKFS_TRANSPORT=uring RAMDISKFS_BIN=$PWD/build/ramdiskfs /usr/bin/python3 -m pytest \
  test/integration -q --ignore=test/integration/test_survive.py \
  --junitxml="$results/integration-uring.xml" "$@" \
  || fail "integration tests (io_uring)"

if ((!quick)) && [[ -x build-asan/ramdiskfs ]]; then
  # The same suites against the ASan+UBSan daemon, less the long fio stress:
  # memory errors in the FUSE adapter only show with a real kernel client. On
  # io_uring, whose buffers and threads are the adapter's own (uring.cc); the
  # /dev/fuse path runs its sanitizer-free suite above.
  stage "integration tests against the ASan+UBSan daemon (io_uring)"
  # test_survive's upgrade runs: 5 per mode here, not 20 (about 0.5 s each
  # under ASan); the count is for the dev stage above, leaks show in 5.
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    RAMDISKFS_SURVIVE_UPGRADES=5 RAMDISKFS_TRANSPORT=uring RAMDISKFS_BIN=$PWD/build-asan/ramdiskfs /usr/bin/python3 -m pytest test/integration -q \
    --deselect test/integration/test_blockdev.py::test_stress_fio_verify \
    --junitxml="$results/integration-asan.xml" "$@" || fail "integration tests (ASan daemon)"
fi

if ((!quick)); then
  stage "Debian package: build, apt-get install, mount -t fuse.ramdiskfs, purge"
  scripts/test-package.sh || fail "package"
fi

stage "summary"
/usr/bin/python3 - "$results" <<'PY'
import glob, sys, xml.etree.ElementTree as ET
passed = failed = skipped = 0
for path in sorted(glob.glob(sys.argv[1] + "/*.xml")):
    root = ET.parse(path).getroot()
    for case in root.iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            failed += 1
        elif case.find("skipped") is not None:
            skipped += 1
        else:
            passed += 1
print(f"tests: {passed} passed, {failed} failed, {skipped} skipped")
PY
if ((${#failed_stages[@]})); then
  echo "failed stages: ${failed_stages[*]}"
  exit 1
fi
echo "all stages passed"
