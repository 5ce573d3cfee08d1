// Parsers and renderers of the write-cache control files and --disk keys
// (see cache_control.h). The input rules are control.h's; the small splitter
// here repeats control.cc's so that this file has no dependency on it.

#include "ramdiskfs/cache_control.h"

#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "ramdiskfs/control.h"
#include "ramdiskfs/size.h"
#include "src/text.h"

namespace ramdiskfs {
namespace {

using text::AsAbsl;
using text::Quote;

absl::Status Invalid(std::string_view file, absl::string_view why) {
  if (file.empty()) return absl::InvalidArgumentError(why);
  return absl::InvalidArgumentError(absl::StrCat(AsAbsl(file), ": ", why));
}

// Value parsers shared by control files (file = name) and keys (file = "").
absl::StatusOr<CacheMode> CacheModeOf(std::string_view file, std::string_view value) {
  for (CacheMode mode : {CacheMode::kNone, CacheMode::kVolatile}) {
    if (value == CacheModeName(mode)) return mode;
  }
  return Invalid(file, absl::StrCat("bad cache ", Quote(value), ": expected none or volatile"));
}

absl::StatusOr<PowercutPolicy> PolicyOf(std::string_view file, std::string_view value) {
  for (PowercutPolicy policy : {PowercutPolicy::kAllLost, PowercutPolicy::kRandom,
                                PowercutPolicy::kPrefix, PowercutPolicy::kTorn}) {
    if (value == PowercutPolicyName(policy)) return policy;
  }
  return Invalid(file, absl::StrCat("bad powercut_policy ", Quote(value),
                                    ": expected all_lost, random, prefix or torn"));
}

absl::StatusOr<uint64_t> CacheSizeOf(std::string_view file, std::string_view value) {
  absl::StatusOr<uint64_t> bytes = ParseSize(value);
  if (!bytes.ok()) {
    return Invalid(file, absl::StrCat("bad cache_size: ", bytes.status().message()));
  }
  return bytes;
}

absl::StatusOr<uint64_t> SeedOf(std::string_view file, std::string_view value) {
  if (value.empty()) return Invalid(file, "bad powercut_seed '': expected a decimal number");
  uint64_t seed = 0;
  for (char c : value) {
    if (c < '0' || c > '9') {
      return Invalid(file, absl::StrCat("bad powercut_seed ", Quote(value),
                                        ": expected a decimal number 0..2^64-1"));
    }
    const uint64_t digit = static_cast<uint64_t>(c - '0');
    if (seed > (std::numeric_limits<uint64_t>::max() - digit) / 10) {
      return Invalid(file, absl::StrCat("bad powercut_seed ", Quote(value), ": above 2^64-1"));
    }
    seed = seed * 10 + digit;
  }
  return seed;
}

}  // namespace

std::string_view CacheModeName(CacheMode mode) {
  return mode == CacheMode::kVolatile ? "volatile" : "none";
}

std::string_view PowercutPolicyName(PowercutPolicy policy) {
  switch (policy) {
    case PowercutPolicy::kAllLost:
      return "all_lost";
    case PowercutPolicy::kRandom:
      return "random";
    case PowercutPolicy::kPrefix:
      return "prefix";
    case PowercutPolicy::kTorn:
      return "torn";
  }
  return "all_lost";
}

std::string_view WriteFateName(WriteFate fate) {
  switch (fate) {
    case WriteFate::kKept:
      return "kept";
    case WriteFate::kLost:
      return "lost";
    case WriteFate::kTorn:
      return "torn";
  }
  return "lost";
}

absl::StatusOr<CacheMode> ParseCacheValue(std::string_view text) {
  constexpr std::string_view kFile = "cache";
  absl::StatusOr<std::string_view> value = ParseOneField(kFile, text, "none or volatile");
  if (!value.ok()) return value.status();
  return CacheModeOf(kFile, *value);
}

absl::StatusOr<uint64_t> ParseCacheSizeValue(std::string_view text) {
  constexpr std::string_view kFile = "cache_size";
  absl::StatusOr<std::string_view> value = ParseOneField(kFile, text, "SIZE");
  if (!value.ok()) return value.status();
  return CacheSizeOf(kFile, *value);
}

absl::StatusOr<PowercutPolicy> ParsePowercutPolicyValue(std::string_view text) {
  constexpr std::string_view kFile = "powercut_policy";
  absl::StatusOr<std::string_view> value =
      ParseOneField(kFile, text, "all_lost, random, prefix or torn");
  if (!value.ok()) return value.status();
  return PolicyOf(kFile, *value);
}

absl::StatusOr<uint64_t> ParsePowercutSeedValue(std::string_view text) {
  constexpr std::string_view kFile = "powercut_seed";
  absl::StatusOr<std::string_view> value = ParseOneField(kFile, text, "a decimal number");
  if (!value.ok()) return value.status();
  return SeedOf(kFile, *value);
}

absl::StatusOr<bool> ParsePowerValue(std::string_view text) {
  constexpr std::string_view kFile = "power";
  absl::StatusOr<std::string_view> value = ParseOneField(kFile, text, "0 or 1");
  if (!value.ok()) return value.status();
  if (*value == "0") return false;
  if (*value == "1") return true;
  return Invalid(kFile, absl::StrCat("bad value ", Quote(*value), ": expected 0 or 1"));
}

absl::StatusOr<uint64_t> ParsePowercutAtFlushValue(std::string_view text) {
  constexpr std::string_view kFile = "powercut_at_flush";
  absl::StatusOr<std::string_view> value = ParseOneField(kFile, text, "a decimal number");
  if (!value.ok()) return value.status();
  absl::StatusOr<uint64_t> n = SeedOf("", *value);
  if (!n.ok()) {
    return Invalid(kFile, absl::StrCat("bad value ", Quote(*value), ": expected a decimal count"));
  }
  return n;
}

absl::StatusOr<bool> ApplyCacheKey(std::string_view key, std::string_view value,
                                   CacheSettings* settings) {
  if (key == "cache") {
    absl::StatusOr<CacheMode> mode = CacheModeOf("", value);
    if (!mode.ok()) return mode.status();
    settings->mode = *mode;
  } else if (key == "cache_size") {
    absl::StatusOr<uint64_t> bytes = CacheSizeOf("", value);
    if (!bytes.ok()) return bytes.status();
    settings->cache_size_bytes = *bytes;
  } else if (key == "powercut_policy") {
    absl::StatusOr<PowercutPolicy> policy = PolicyOf("", value);
    if (!policy.ok()) return policy.status();
    settings->policy = *policy;
  } else if (key == "powercut_seed") {
    absl::StatusOr<uint64_t> seed = SeedOf("", value);
    if (!seed.ok()) return seed.status();
    settings->seed = *seed;
  } else {
    return false;
  }
  return true;
}

std::string RenderUnflushed(uint64_t writes, uint64_t bytes) {
  return absl::StrCat("writes ", writes, "\nbytes ", bytes, "\n");
}

std::string RenderPowercutLog(const std::vector<PowercutRecord>& records) {
  std::string out;
  for (const PowercutRecord& r : records) {
    absl::StrAppend(&out, r.index, " ", r.offset, " ", r.length, " ", AsAbsl(WriteFateName(r.fate)),
                    "\n");
  }
  return out;
}

absl::StatusOr<std::vector<PowercutRecord>> ParsePowercutLog(std::string_view text) {
  std::vector<PowercutRecord> records;
  int line_number = 0;
  while (!text.empty()) {
    ++line_number;
    const size_t end = text.find('\n');
    if (end == std::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("powercut_log: line ", line_number, " has no newline"));
    }
    std::string_view line = text.substr(0, end);
    text.remove_prefix(end + 1);
    std::vector<std::string_view> fields;
    for (size_t pos = 0; pos <= line.size();) {
      size_t sp = line.find(' ', pos);
      if (sp == std::string_view::npos) sp = line.size();
      fields.push_back(line.substr(pos, sp - pos));
      pos = sp + 1;
    }
    auto bad = [&](absl::string_view why) {
      return absl::InvalidArgumentError(
          absl::StrCat("powercut_log: line ", line_number, " ", Quote(line), ": ", why));
    };
    if (fields.size() != 4) return bad("expected INDEX OFFSET LENGTH FATE");
    uint64_t numbers[3];
    for (int i = 0; i < 3; ++i) {
      // Exactly what RenderPowercutLog writes: no leading zeros.
      if (fields[i].size() > 1 && fields[i][0] == '0') return bad("leading zero");
      absl::StatusOr<uint64_t> n = SeedOf("", fields[i]);
      if (!n.ok()) return bad("bad number");
      numbers[i] = *n;
    }
    PowercutRecord record{numbers[0], numbers[1], numbers[2], WriteFate::kLost};
    if (fields[3] == "kept") {
      record.fate = WriteFate::kKept;
    } else if (fields[3] == "lost") {
      record.fate = WriteFate::kLost;
    } else if (fields[3] == "torn") {
      record.fate = WriteFate::kTorn;
    } else {
      return bad("expected kept, lost or torn");
    }
    records.push_back(record);
  }
  return records;
}

}  // namespace ramdiskfs
