#!/usr/bin/env bash
# Interleaved A/B of the two transports (docs/benchmarks.md, "Transport"): for each round,
# for each mode and workload, a fresh daemon with --transport dev, then one with
# --transport uring, fio on the disk file, one line per run with IOPS, CPU time per I/O
# (fio's, and the daemon's from /proc/PID/stat) and the load average. Interleaving puts
# both transports under the same background load on a shared machine.
#
#   sudo bench/transport_ab.sh [BIN] [ROUNDS] [SECONDS]
#   env: MODES="direct null"  WORKLOADS="randread:4k randwrite:4k read:1m write:1m"
#        JOBS="1 2"  URING_ARGS="--uring-depth 8"  SIZE=512M
#
# Needs root and /sys/module/fuse/parameters/enable_uring = Y (this script does not set it).
# Everything it mounts is under a mktemp directory and is unmounted on exit, even on error.
set -euo pipefail
BIN=${1:-$(dirname "$0")/../build-release/ramdiskfs}
ROUNDS=${2:-3}
SECS=${3:-5}
MODES=${MODES:-direct null}
WORKLOADS=${WORKLOADS:-randread:4k randwrite:4k read:1m write:1m}
JOBS=${JOBS:-1 2}
SIZE=${SIZE:-512M}
URING_ARGS=${URING_ARGS:-}

[[ $(cat /sys/module/fuse/parameters/enable_uring 2>/dev/null) == Y ]] ||
  { echo "enable_uring is not Y (echo 1 > /sys/module/fuse/parameters/enable_uring)" >&2; exit 1; }
work=$(mktemp -d /tmp/transport-ab.XXXXXX)
pid=""
cleanup() {
  if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid"; wait "$pid" || true; fi
  if mountpoint -q "$work/m"; then umount -l "$work/m" || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

for round in $(seq "$ROUNDS"); do
  for mode in $MODES; do
    for wl in $WORKLOADS; do
      rw=${wl%%:*} bs=${wl##*:}
      for jobs in $JOBS; do
        for transport in dev uring; do
          mkdir -p "$work/m"
          extra=()
          [[ $transport == uring ]] && read -ra extra <<<"$URING_ARGS"
          "$BIN" "$work/m" -f --transport "$transport" "${extra[@]}" \
            --disk "ram0:$SIZE:mode=$mode" >"$work/log" 2>&1 &
          pid=$!
          for _ in $(seq 100); do mountpoint -q "$work/m" && [[ -e $work/m/ram0 ]] && break; sleep 0.1; done
          grep -q "^transport $transport$" "$work/m/.control/stats" ||
            { echo "daemon is not on $transport:"; cat "$work/log"; exit 1; }
          [[ $mode == null ]] || dd if=/dev/zero of="$work/m/ram0" bs=1M oflag=direct status=none \
            count=$(( $(stat -c %s "$work/m/ram0") >> 20 ))
          t0=$(cpu_ticks "$pid")
          out=$(fio --name=ab --filename="$work/m/ram0" --rw="$rw" --bs="$bs" --direct=1 \
                --ioengine=psync --numjobs="$jobs" --group_reporting --time_based \
                --runtime="$SECS" --output-format=json)
          t1=$(cpu_ticks "$pid")
          load=$(cut -d' ' -f1 /proc/loadavg)
          FIO_JSON=$out python3 - "$round" "$transport" "$mode" "$rw" "$bs" "$jobs" "$SECS" \
            "$((t1 - t0))" "$(getconf CLK_TCK)" "$load" <<'PY'
import json, os, sys
rnd, transport, mode, rw, bs, jobs, secs, ticks, hz, load = sys.argv[1:]
job = json.loads(os.environ["FIO_JSON"])["jobs"][0]
op = "read" if "read" in rw else "write"
ios = max(job[op]["total_ios"], 1)
fio_cpu = (job["usr_cpu"] + job["sys_cpu"]) / 100 * float(secs) * int(jobs)
print(f"round {rnd} {mode:6} {rw:9} {bs:>3} j{jobs} {transport:5} iops {job[op]['iops']:9.0f} "
      f"MiB/s {job[op]['bw'] / 1024:8.1f} fio_us/io {fio_cpu / ios * 1e6:6.2f} "
      f"daemon_us/io {int(ticks) / int(hz) / ios * 1e6:6.2f} load {load}", flush=True)
PY
          kill -TERM "$pid"; wait "$pid" || true; pid=""
        done
      done
    done
  done
done
