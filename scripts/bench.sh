#!/usr/bin/env bash
# The one benchmark command: install what is missing from Debian, build ramdiskfs in Release,
# run the store microbenchmarks (Google Benchmark), then the fio harness against tmpfs, zram
# and nbdfuse (bench/harness.py). A full run (no --quick, no subset, default sizes, >= 3
# rounds) also refreshes docs/benchmarks.md; any other run writes only bench/results/.
#
#   sudo scripts/bench.sh [harness options]      e.g. --quick, --targets tmpfs,dax, --no-update-docs
#
# Every option is passed to bench/harness.py (see --help); --out also receives store_bench.json.
set -euo pipefail

if [[ ${1:-} == -h || ${1:-} == --help ]]; then
  sed -n '2,9s/^# \{0,1\}//p' "$0"
  echo
  exec python3 "$(dirname "$0")/../bench/harness.py" --help
fi
if [[ $EUID -ne 0 ]]; then
  echo "scripts/bench.sh: must run as root (it mounts filesystems, sets up loop and zram devices)" >&2
  exit 2
fi
cd "$(dirname "$0")/.."

# Results directory: the user's --out, or a fresh timestamped one passed on to the harness.
args=("$@")
out=""
for ((i = 0; i < ${#args[@]}; i++)); do
  case ${args[i]} in
    --out) out=${args[i + 1]:-} ;;
    --out=*) out=${args[i]#--out=} ;;
  esac
done
if [[ -z $out ]]; then
  out=bench/results/$(date +%Y%m%d-%H%M%S)
  args+=(--out "$out")
fi
mkdir -p "$out"

# ---- Debian packages: install only what is missing.
packages=(fio nbdkit libnbd-bin gnuplot-nox e2fsprogs util-linux
  build-essential cmake pkg-config libfuse3-dev fuse3 libabsl-dev libgtest-dev libbenchmark-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "== installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends "${missing[@]}" ||
    { apt-get update && apt-get install -y --no-install-recommends "${missing[@]}"; }
fi

# ---- docs/benchmarks.md shows full runs only (the harness decides what a full run is; a
# --no-update-docs of the user's wins).
docs_args=()
if [[ " ${args[*]} " != *" --no-update-docs "* ]] && python3 bench/harness.py --check-full-run "${args[@]}"; then
  docs_args=(--update-docs)
else
  echo "== not a full run (or --no-update-docs): docs/ is left alone, results go to $out only"
fi

# ---- Release build (a tree that does not build is not benchmarked).
echo "== building ramdiskfs (Release) in build-release/"
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DRAMDISKFS_TESTS=OFF >/dev/null
cmake --build build-release -j2

# ---- Store microbenchmarks.
if [[ -x build-release/store_bench ]]; then
  echo "== store microbenchmarks: build-release/store_bench -> $out/store_bench.json"
  build-release/store_bench --benchmark_format=json --benchmark_out="$out/store_bench.json" >/dev/null
  echo "   wrote $out/store_bench.json"
  store_args=()
  ((${#docs_args[@]})) && store_args=(--update-docs docs/benchmarks.md)
  python3 bench/store_table.py "$out/store_bench.json" "${store_args[@]}"
else
  echo "== note: build-release/store_bench does not exist yet: store microbenchmarks skipped"
fi

# ---- End-to-end fio harness.
echo "== fio harness"
exec python3 bench/harness.py "${docs_args[@]}" "${args[@]}"
