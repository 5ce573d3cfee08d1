#!/usr/bin/env bash
# Builds the parsers' libFuzzer target with clang and runs it for a bounded
# time on a copy of fuzz/corpus/.
#
#   scripts/fuzz.sh [SECONDS]        (default 30)
#
# Environment: FUZZ_BUILD_DIR (default build-fuzz/ in the repo).
# Exit status: 0 when the run ends without a crash, 1 on a crash or an
# invariant violation (the reproducer is kept under $FUZZ_BUILD_DIR/artifacts/),
# 2 on a usage or build error. The last line printed is the one-line result.
#
# The target is built through CMake (-DRAMDISKFS_FUZZ=ON, target parsers_fuzz
# and its dependency ramdiskfs_core only).
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
seconds=${1:-30}
build=${FUZZ_BUILD_DIR:-$root/build-fuzz}
target=parsers_fuzz

result() { echo "fuzz: $*"; }

if ! [[ $seconds =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: $0 [SECONDS]  (a positive whole number, default 30)" >&2
  exit 2
fi
if ! command -v clang++ >/dev/null; then
  result "ERROR: clang++ not found (apt-get install clang)"
  exit 2
fi

mkdir -p "$build"
build_log=$build/build.log
: >"$build_log"

# ---- build -----------------------------------------------------------------------------
if ! CXX=clang++ cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DRAMDISKFS_FUZZ=ON -DRAMDISKFS_TESTS=OFF -DRAMDISKFS_BENCH=OFF >>"$build_log" 2>&1 ||
  ! cmake --build "$build" --target "$target" -j "$(nproc)" >>"$build_log" 2>&1; then
  tail -n 30 "$build_log" >&2
  result "ERROR: could not build $target (log: $build_log)"
  exit 2
fi
binary=$build/$target

# ---- run -------------------------------------------------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/ramdiskfs-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/corpus" "$build/artifacts"
cp "$root"/fuzz/corpus/* "$work/corpus/"
seeds=$(find "$work/corpus" -type f | wc -l)

# Tokens that help the mutator reach the parsers' branches.
cat >"$work/dict" <<'DICT'
"--disk"
"--disks"
"--size"
"--max-memory"
"--mode"
"--store"
"--threads"
"--help"
"--version"
"-o"
"-f"
"-d"
"-s"
"--"
"disk="
"disks="
"size="
"max_memory="
"mode="
"store="
"threads="
"allow_other"
"image="
"readonly="
"readonly=1"
"mode=dax"
"mode=direct"
"cached"
"null"
"memfd"
"tmpfs"
"ram0"
"KiB"
"GB"
"P"
"\x00"
"\x0a"
"18446744073709551615"
"9223372036854771712"
"4096"
"badblocks="
"+0-7"
"-8-15"
"clear"
"errors="
"read 0.01"
"write 1 ENOSPC"
"ETIMEDOUT"
"EROFS"
"ENOMEM"
"flush"
"discard"
"fault_seed="
"latency="
"write 200 50"
"throttle="
"iops 2000"
"read_bandwidth 50M"
"write_iops"
"flakey="
"5 1 drop_writes"
"corrupt_writes"
"error_reads"
"error_all"
"0 0"
DICT

log=$build/fuzz-last.log
start=$(date +%s)
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} \
UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1} \
  "$binary" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=8192 \
  -dict="$work/dict" -artifact_prefix="$build/artifacts/" -print_final_stats=1 \
  "$work/corpus" >"$log" 2>&1
rc=$?
elapsed=$(($(date +%s) - start))

execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
[[ -n $execs ]] || execs=$(grep -o '#[0-9]*' "$log" | tail -n 1 | tr -d '#')
execs=${execs:-0}
corpus=$(find "$work/corpus" -type f | wc -l)

if [[ $rc -eq 0 ]]; then
  result "PASS $target: $execs execs in ${elapsed}s ($((execs / (elapsed > 0 ? elapsed : 1)))/s)," \
    "corpus $seeds -> $corpus inputs, no crash (log: $log)"
  exit 0
fi
grep -E 'ERROR|invariant violated|runtime error|SUMMARY' "$log" | head -n 5 >&2
artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
result "FAIL $target: exit $rc after $execs execs in ${elapsed}s;" \
  "reproducer: ${artifact:-none} (rerun: $binary ${artifact:-ARTIFACT}); log: $log"
exit 1
