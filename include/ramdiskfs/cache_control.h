// The settings of a disk's volatile write cache and power switch (SPEC 11),
// and the parsers and renderers of their control files and --disk keys.
// Pure functions: nothing here touches a disk; see write_cache.h for the
// cache itself and docs/crashtest.md for the model. All are thread-safe.
//
// Control files (under MOUNT/.control/NAME/), with the input rules of
// control.h (one line, one trailing "\n", blanks around the value):
//   cache            rw  none | volatile
//   cache_size       rw  SIZE (ParseSize: bytes or K/M/G/T); 0 = unbounded
//   unflushed        r   "writes N\nbytes N\n"
//   powercut_policy  rw  all_lost | random | prefix | torn
//   powercut_seed    rw  a decimal 0..2^64-1
//   power            rw  1 | 0
//   powercut_log     r   "INDEX OFFSET LENGTH kept|lost|torn\n" per unflushed
//                        write of the last cut (empty before the first cut)
//   powercut_at_flush rw N: cut the power as the Nth flush from now arrives
//                        (that flush fails with EIO); 0 = off. Reads show
//                        the flushes left. An extension of SPEC 11 that
//                        lets a crash test cut after exactly N-1 flushes.
// The same settings are --disk keys and `new` keys: cache=, cache_size=,
// powercut_policy=, powercut_seed= (power= is not: a disk starts powered).

#ifndef RAMDISKFS_CACHE_CONTROL_H_
#define RAMDISKFS_CACHE_CONTROL_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace ramdiskfs {

enum class CacheMode { kNone, kVolatile };
enum class PowercutPolicy { kAllLost, kRandom, kPrefix, kTorn };

// "none", "volatile" / "all_lost", "random", "prefix", "torn".
std::string_view CacheModeName(CacheMode mode);
std::string_view PowercutPolicyName(PowercutPolicy policy);

struct CacheSettings {
  CacheMode mode = CacheMode::kNone;
  uint64_t cache_size_bytes = 0;  // 0: unbounded (up to the memory cap)
  PowercutPolicy policy = PowercutPolicy::kAllLost;
  uint64_t seed = 0;
  bool operator==(const CacheSettings&) const = default;
};

// What became of one unflushed write at a power cut.
enum class WriteFate { kKept, kLost, kTorn };
std::string_view WriteFateName(WriteFate fate);  // "kept", "lost", "torn"

struct PowercutRecord {
  uint64_t index = 0;  // arrival order since the last durable point, from 0
  uint64_t offset = 0;
  uint64_t length = 0;
  WriteFate fate = WriteFate::kLost;
  bool operator==(const PowercutRecord&) const = default;
};

// Control-file parsers. Errors: InvalidArgument, one line, starting with the
// file's name ("cache: bad value 'x': expected none or volatile").
absl::StatusOr<CacheMode> ParseCacheValue(std::string_view text);
absl::StatusOr<uint64_t> ParseCacheSizeValue(std::string_view text);
absl::StatusOr<PowercutPolicy> ParsePowercutPolicyValue(std::string_view text);
absl::StatusOr<uint64_t> ParsePowercutSeedValue(std::string_view text);
absl::StatusOr<bool> ParsePowerValue(std::string_view text);
absl::StatusOr<uint64_t> ParsePowercutAtFlushValue(std::string_view text);

// A --disk or `new` key=value: returns false if `key` is not a cache key
// (the caller then tries its own keys), true after setting it in *settings.
// Errors: InvalidArgument without a file prefix ("bad cache 'x': expected
// none or volatile"); *settings is unchanged on error.
absl::StatusOr<bool> ApplyCacheKey(std::string_view key, std::string_view value,
                                   CacheSettings* settings);
// The keys ApplyCacheKey knows, for "expected ..." messages.
inline constexpr std::string_view kCacheKeyNames =
    "cache, cache_size, powercut_policy, powercut_seed";

// "writes N\nbytes N\n".
std::string RenderUnflushed(uint64_t writes, uint64_t bytes);
// One "INDEX OFFSET LENGTH FATE\n" line per record.
std::string RenderPowercutLog(const std::vector<PowercutRecord>& records);
// Inverse of RenderPowercutLog (for tools and tests). Errors: InvalidArgument
// naming the bad line.
absl::StatusOr<std::vector<PowercutRecord>> ParsePowercutLog(std::string_view text);

}  // namespace ramdiskfs

#endif  // RAMDISKFS_CACHE_CONTROL_H_
