// Fault injection (SPEC 10, docs/faults.md): bad sectors, error rules,
// latency, throttling and flakey windows, per disk, at run time.
//
// Two layers:
//   - FaultSettings: a plain value holding every setting, with pure parsers
//     and renderers for the control files under MOUNT/.control/NAME/ and the
//     same settings as --disk keys (ApplyFaultWrite, RenderFaultFile,
//     ApplyFaultKey). A refused write leaves the settings unchanged.
//   - FaultInjector: one per disk, thread-safe. It holds the settings and
//     the run-time state (token buckets, the flakey epoch, the PRNG
//     counters) and decides, for one request, whether it fails, with which
//     errno, how much of it is done, whether a write is dropped or
//     corrupted, and when its reply may be sent.
//
// Nothing here touches a disk or sleeps: the caller (the per-disk I/O path)
// applies the decision and sends a late reply through a TimerQueue
// (timer_queue.h). With no fault set, the caller pays one relaxed atomic
// load (FaultInjector::active()) and nothing else.
//
// Times are nanoseconds of CLOCK_MONOTONIC (MonotonicNowNs()), passed in by
// the caller so that tests can drive the clock.

#ifndef RAMDISKFS_FAULTS_H_
#define RAMDISKFS_FAULTS_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace ramdiskfs {

// CLOCK_MONOTONIC in nanoseconds.
int64_t MonotonicNowNs();

// The requests faults apply to. kFlush is fsync/fdatasync (FUSE_FSYNC);
// kDiscard is fallocate PUNCH_HOLE/ZERO_RANGE. Their names ("read",
// "write", "flush", "discard") are the OP of the errors and latency files.
enum class FaultOp { kRead, kWrite, kFlush, kDiscard };
inline constexpr size_t kFaultOpCount = 4;
std::string_view FaultOpName(FaultOp op);

// badblocks counts in 512-byte sectors whatever the disk's block size, as
// null_blk does.
inline constexpr uint64_t kSectorSize = 512;
// The highest sector number a range may name: the last sector of the
// largest possible disk (kMaxDiskBytes / 512 - 1). Higher is ERANGE.
inline constexpr uint64_t kMaxSector = 0x7FFFFFFFFFFFF000ULL / kSectorSize - 1;
// At most this many disjoint bad ranges per disk (ENOSPC beyond): reading
// the file lists them all, and 4096 lines of "START-END" are < 160 KiB.
inline constexpr size_t kMaxBadRanges = 4096;

// A set of bad sectors as disjoint, non-adjacent inclusive ranges (adjacent
// or overlapping marks merge, as in the kernel's badblocks table).
class BadSectors {
 public:
  // Marks [first, last] bad. Errors (nothing changed): ENOSPC when the set
  // would hold more than kMaxBadRanges ranges. REQUIRES first <= last.
  absl::Status Add(uint64_t first, uint64_t last);
  // Heals [first, last] (splits ranges as needed; may need one more range:
  // ENOSPC as Add). REQUIRES first <= last.
  absl::Status Remove(uint64_t first, uint64_t last);
  void Clear() { ranges_.clear(); }
  bool empty() const { return ranges_.empty(); }
  size_t range_count() const { return ranges_.size(); }

  // The first bad sector in [first, last], if any.
  std::optional<uint64_t> FirstBad(uint64_t first, uint64_t last) const;
  // Heals every whole range that overlaps [first, last] (badblocks_once:
  // the range a failed write touched is remapped, all of it, as null_blk
  // clears the bad extent it found). Returns the sectors healed.
  uint64_t HealTouched(uint64_t first, uint64_t last);

  // (first, last) pairs in ascending order.
  std::vector<std::pair<uint64_t, uint64_t>> Ranges() const;
  bool operator==(const BadSectors& other) const { return ranges_ == other.ranges_; }

 private:
  std::map<uint64_t, uint64_t> ranges_;  // first -> last
};

// ERRNO values an errors rule may inject (SPEC 10), by name.
std::string_view InjectableErrnoName(int err);  // "" if not injectable

// Probabilities are kept exactly as written: parts per 10^9 (at most nine
// decimals), so reading the file shows what was written.
inline constexpr uint32_t kProbabilityOne = 1'000'000'000;

struct ErrorRule {
  uint32_t probability_ppb = 0;  // 0: no rule
  int err = 0;                   // an injectable errno (EIO by default)
  bool operator==(const ErrorRule&) const = default;
};

// The longest latency (and latency + jitter) a rule may set: 60 s. Longer
// would trip the kernel's hung-task warnings and FUSE's own timeouts for
// nothing a test needs.
inline constexpr uint64_t kMaxLatencyUs = 60'000'000;

struct LatencyRule {
  uint64_t us = 0;         // 0: no rule
  uint64_t jitter_us = 0;  // <= us: the delay is uniform in [us - j, us + j]
  bool operator==(const LatencyRule&) const = default;
};

// Token buckets: a request needs one token of each iops bucket and `length`
// tokens of each bandwidth bucket it is subject to (reads: iops, read_iops,
// bandwidth, read_bandwidth; writes: the write_ ones). Flush and discard are
// not throttled (they move no data over the "bus"; null_blk's mbps counts
// only data too). 0 is unlimited. The burst of every bucket is
// kThrottleBurstNs worth of its rate, but at least one request: a bucket
// holds rate * 10 ms tokens, starts full and refills continuously; a
// request larger than the burst waits for the missing tokens (it is never
// refused).
inline constexpr int64_t kThrottleBurstNs = 10'000'000;  // 10 ms
// Limits: 10^9 IOPS and 2^50 bytes/s (1 PiB/s); larger is ERANGE.
inline constexpr uint64_t kMaxThrottleIops = 1'000'000'000;
inline constexpr uint64_t kMaxThrottleBandwidth = 1ULL << 50;

enum class ThrottleKey {
  kIops,
  kReadIops,
  kWriteIops,
  kBandwidth,
  kReadBandwidth,
  kWriteBandwidth,
};
inline constexpr size_t kThrottleKeyCount = 6;
std::string_view ThrottleKeyName(ThrottleKey key);

struct ThrottleSettings {
  std::array<uint64_t, kThrottleKeyCount> limits{};  // by ThrottleKey
  uint64_t limit(ThrottleKey key) const { return limits[static_cast<size_t>(key)]; }
  bool any() const;
  bool operator==(const ThrottleSettings&) const = default;
};

// dm-flakey's behaviours in the down window (SPEC 10). "Writes" are every
// request that changes the disk: write, flush and discard (a flush and a
// discard are write-direction bios in the kernel too).
enum class FlakeyBehaviour {
  kErrorReads,     // reads fail with EIO; writes pass
  kErrorWrites,    // writes fail with EIO; reads pass
  kErrorAll,       // everything fails with EIO (dm-flakey without features)
  kDropWrites,     // writes are acknowledged and discarded; reads pass
  kCorruptWrites,  // each write stores one byte flipped (~b) at a seeded
                   // position; reads, flushes and discards pass
};
std::string_view FlakeyBehaviourName(FlakeyBehaviour behaviour);

// The longest UP or DOWN interval: one year in seconds.
inline constexpr uint64_t kMaxFlakeySeconds = 366ULL * 24 * 3600;

struct FlakeySettings {
  uint64_t up_s = 0;
  uint64_t down_s = 0;  // 0 0: off
  FlakeyBehaviour behaviour = FlakeyBehaviour::kErrorAll;
  bool on() const { return down_s > 0; }
  bool operator==(const FlakeySettings&) const = default;
};

// Every fault setting of one disk. A default-constructed value is "no fault".
struct FaultSettings {
  BadSectors badblocks;
  bool badblocks_once = false;
  bool badblocks_partial = false;
  std::array<ErrorRule, kFaultOpCount> errors{};  // by FaultOp
  uint64_t fault_seed = 0;
  std::array<LatencyRule, kFaultOpCount> latency{};  // by FaultOp
  ThrottleSettings throttle;
  FlakeySettings flakey;

  // True if any setting can change a request (badblocks_once,
  // badblocks_partial and fault_seed alone change nothing).
  bool any() const;
  bool operator==(const FaultSettings&) const = default;
};

// The fault control files (SPEC 10), in directory-listing order.
enum class FaultFile {
  kBadblocks,
  kBadblocksOnce,
  kBadblocksPartial,
  kErrors,
  kFaultSeed,
  kLatency,
  kThrottle,
  kFlakey,
};
inline constexpr size_t kFaultFileCount = 8;
std::string_view FaultFileName(FaultFile file);
// Inverse of FaultFileName; also the --disk key of the same setting.
std::optional<FaultFile> FindFaultFile(std::string_view name);
std::span<const FaultFile> AllFaultFiles();

// The largest write to a fault file: every file takes several lines (one
// command per line), so the limit is larger than kMaxControlWrite.
inline constexpr size_t kMaxFaultWrite = 64 * 1024;

// Applies one write(2) of `text` to `file` onto `*settings`. Syntax (one
// command per line; blank lines ignored; fields separated by spaces/tabs;
// the lines are applied in order and all-or-nothing):
//   badblocks:          +START-END | -START-END | clear   (512-byte sectors,
//                       inclusive, decimal, START <= END <= kMaxSector)
//   badblocks_once:     0 | 1
//   badblocks_partial:  0 | 1
//   errors:             OP PROBABILITY [ERRNO] | 0 (all rules off)
//                       OP read|write|flush|discard; PROBABILITY a decimal in
//                       [0, 1] with at most 9 decimals ("OP 0" removes the
//                       rule); ERRNO EIO (default), ENOSPC, ENOMEM,
//                       ETIMEDOUT or EROFS
//   fault_seed:         a decimal in [0, 2^64-1]
//   latency:            OP MICROSECONDS [JITTER] | 0 (all rules off)
//                       ("OP 0" removes; JITTER <= MICROSECONDS;
//                       MICROSECONDS + JITTER <= kMaxLatencyUs)
//   throttle:           KEY VALUE [KEY VALUE...] | 0 (all limits off)
//                       KEY iops|read_iops|write_iops (a count) or
//                       bandwidth|read_bandwidth|write_bandwidth (bytes per
//                       second, ParseSize suffixes: 50M); VALUE 0 removes
//   flakey:             UP DOWN BEHAVIOUR | 0 0   (seconds; BEHAVIOUR
//                       error_reads|error_writes|error_all|drop_writes|
//                       corrupt_writes; may be left out with "0 0")
// Errors (nothing changed; the message is one line starting with the
// file's name): EINVAL for bad syntax, unknown words, empty input, NUL bytes
// or more than kMaxFaultWrite bytes; ERANGE for numbers out of their range;
// ENOSPC when badblocks would exceed kMaxBadRanges. Pure and thread-safe.
absl::Status ApplyFaultWrite(FaultFile file, std::string_view text, FaultSettings* settings);

// What a read of `file` shows: one line per rule/range, newline-ended;
// empty when off (flakey shows "0 0"; the flags and the seed one number).
// Writing the output of errors, latency, throttle, flakey, fault_seed and the
// flags back gives the same settings (badblocks lists START-END without the
// '+' that a write needs, as SPEC 10 says).
std::string RenderFaultFile(FaultFile file, const FaultSettings& settings);

// A --disk key (the fault file names: "latency=write 200",
// "badblocks=+0-7", "errors=read 0.01 EIO", "fault_seed=7", ...). Returns
// false if `key` is not a fault key (the caller tries its own keys);
// otherwise applies `value` as one write to that file. Repeating a key
// applies each value in order (latency=read 100:latency=write 200).
// Errors: as ApplyFaultWrite.
absl::StatusOr<bool> ApplyFaultKey(std::string_view key, std::string_view value,
                                   FaultSettings* settings);

// ---- decisions ----------------------------------------------------------------

struct FaultRequest {
  FaultOp op = FaultOp::kRead;
  uint64_t offset = 0;     // bytes
  uint64_t length = 0;     // bytes (flush: 0)
  int64_t arrival_ns = 0;  // MonotonicNowNs() when the request arrived
};

// What to do with one request.
struct FaultDecision {
  // 0: the request succeeds (after `done` bytes of it, all of them here).
  // Otherwise the errno to fail it with.
  int err = 0;
  // How many bytes, from the start, to carry out before failing (or all,
  // `length`, when err == 0). Only badblocks_partial makes 0 < done <
  // length with err != 0: the data before the first bad sector is read or
  // written, then the request fails (null_blk's badblocks_partial_io).
  uint64_t done = 0;
  // Writes in a flakey down window: store nothing but report success
  // (drop_writes), or store the data with the byte at `corrupt_at` (an
  // offset inside the request) replaced by its complement.
  bool drop = false;
  std::optional<uint64_t> corrupt_at;
  // The reply may be sent no earlier than this (0: at once).
  int64_t reply_at_ns = 0;
};

// Counters for the disk's stats file (SPEC 10).
struct FaultStats {
  std::atomic<uint64_t> injected_errors{0};       // requests failed by a fault
  std::atomic<uint64_t> injected_error_bytes{0};  // bytes of them not done
  std::atomic<uint64_t> delayed_requests{0};      // requests with a late reply
  std::atomic<uint64_t> delay_us_total{0};        // latency rules' share of it
  std::atomic<uint64_t> throttled_us_total{0};    // the token buckets' share
  std::atomic<uint64_t> dropped_writes{0};
  std::atomic<uint64_t> corrupted_writes{0};
};

class FaultInjector {
 public:
  FaultInjector() = default;
  FaultInjector(const FaultInjector&) = delete;
  FaultInjector& operator=(const FaultInjector&) = delete;

  // True when any fault is set. The I/O path checks this first, and calls
  // Decide only when it is true: with no fault set a request pays this one
  // relaxed load and a branch. A request racing with a change of settings
  // may see either the old or the new settings.
  bool active() const { return active_.load(std::memory_order_relaxed); }

  // Applies a control-file write (ApplyFaultWrite) atomically. `now_ns`
  // starts the flakey cycle (dm-flakey counts from the table load) when
  // flakey is written, and refills the token buckets when throttle is
  // written. Writing fault_seed restarts the PRNG streams, so the same
  // seed replays the same draws. Errors: as ApplyFaultWrite; nothing changed.
  absl::Status Write(FaultFile file, std::string_view text, int64_t now_ns);
  // Replaces every setting (the --disk keys at start), with the same
  // effects on the run-time state as writing each file.
  void Configure(const FaultSettings& settings, int64_t now_ns);
  // Renders `file` from the current settings.
  std::string Read(FaultFile file) const;
  FaultSettings settings() const;
  // CLOCK_MONOTONIC of the start of the flakey cycle (the last write of
  // flakey or Configure). The clock is the system's, so a restarted worker
  // (survive_state.h) continues the same cycle with Restore.
  int64_t flakey_epoch_ns() const;
  // A restarted worker: the settings its predecessor had, the flakey cycle
  // continuing from `flakey_epoch_ns`. The token buckets start full and the
  // PRNG streams start again from the seed (their positions are not carried:
  // docs/survive.md).
  void Restore(const FaultSettings& settings, int64_t flakey_epoch_ns);
  // True once after a request changed the settings (a write that hit a bad
  // range with badblocks_once heals it): the adapter then publishes the
  // state to its supervisor, so a restart does not bring the range back.
  // Clears the flag. One relaxed load when nothing changed.
  bool TakeChangedByIo() {
    return changed_by_io_.load(std::memory_order_relaxed) &&
           changed_by_io_.exchange(false, std::memory_order_acq_rel);
  }

  // Decides `request`. Thread-safe; takes the injector's lock (only while
  // faults are set). Order (each step may end the decision):
  //   1. flakey down window: fail with EIO, drop or corrupt per behaviour;
  //   2. badblocks (read, write, discard touching a bad sector): EIO, with
  //      `done` up to the first bad sector if badblocks_partial; a failed
  //      write heals the ranges it touched if badblocks_once;
  //   3. the errors rule of the op: a draw from the op's PRNG stream;
  //   4. timing, for every request whatever its outcome (a failing disk is
  //      slow too, as null_blk delays errors): the token buckets give the
  //      earliest start, the latency rule (± jitter) is added after it.
  // Counts FaultStats.
  FaultDecision Decide(const FaultRequest& request);

  const FaultStats& stats() const { return stats_; }
  // "key value" rows of the counters, in the order of SPEC 10.
  std::vector<std::pair<std::string, std::string>> StatsRows() const;

 private:
  struct Bucket {
    int64_t tat_ns = 0;  // GCRA's theoretical arrival time
  };
  // Streams of the seeded PRNG: a draw is a hash of (seed, stream, index),
  // so streams never disturb each other (adding jitter does not change
  // which reads fail).
  enum Stream : uint64_t { kStreamErrorBase = 0, kStreamJitter = 8, kStreamCorrupt = 9 };
  uint64_t Draw(uint64_t stream) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ApplyLocked(FaultSettings settings, bool reset_flakey, bool reset_buckets,
                   bool reset_streams, int64_t now_ns) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  int64_t ThrottleRelease(const FaultRequest& request) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool InFlakeyDownWindow(int64_t now_ns) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  std::atomic<bool> active_{false};
  std::atomic<bool> changed_by_io_{false};
  mutable std::mutex mu_;
  FaultSettings settings_ ABSL_GUARDED_BY(mu_);
  int64_t flakey_epoch_ns_ ABSL_GUARDED_BY(mu_) = 0;
  std::array<Bucket, kThrottleKeyCount> buckets_ ABSL_GUARDED_BY(mu_){};
  std::array<uint64_t, 10> stream_index_ ABSL_GUARDED_BY(mu_){};
  FaultStats stats_;
};

}  // namespace ramdiskfs

#endif  // RAMDISKFS_FAULTS_H_
