// libFuzzer target for every pure parser of the core: the control-file
// parsers (control.h), the fault files (faults.h), the size parsers (size.h)
// and the command line (options.h). The input goes to each parser as is, and, split on '\0' and
// '\n', as an argv to ParseCommandLine. Beyond "no crash, no sanitizer
// report", it checks what each parser promises and abort()s on a violation.
//
// Build and run: scripts/fuzz.sh [SECONDS].

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "ramdiskfs/cache_control.h"
#include "ramdiskfs/control.h"
#include "ramdiskfs/faults.h"
#include "ramdiskfs/options.h"
#include "ramdiskfs/size.h"
#include "ramdiskfs/status.h"

namespace ramdiskfs {
namespace {

[[noreturn]] void Fail(const char* what, std::string_view detail = {}) {
  fprintf(stderr, "parsers_fuzz: invariant violated: %s: %.*s\n", what,
          static_cast<int>(detail.size()), detail.data());
  abort();
}

#define CHECK_INVARIANT(cond, detail)   \
  do {                                  \
    if (!(cond)) Fail(#cond, (detail)); \
  } while (0)

// Every error of every parser is one line with a code the FUSE edge maps to
// EINVAL (or ENAMETOOLONG for names, where `names` allows it).
void CheckError(const absl::Status& status, bool names = false) {
  if (status.ok()) return;
  const std::string message(status.message());
  CHECK_INVARIANT(!message.empty(), "empty message");
  CHECK_INVARIANT(message.find('\n') == std::string::npos, message);
  CHECK_INVARIANT(message.find('\0') == std::string::npos, message);
  CHECK_INVARIANT(message.size() < 1000, message);  // quotes are cut
  const int err = StatusToErrno(status);
  CHECK_INVARIANT(err == EINVAL || (names && err == ENAMETOOLONG), message);
}

std::string_view Trimmed(std::string_view text) {
  if (!text.empty() && text.back() == '\n') text.remove_suffix(1);
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

void FuzzSizes(std::string_view text) {
  absl::StatusOr<uint64_t> size = ParseSize(text);
  CheckError(size.status());
  absl::StatusOr<uint64_t> disk_size = ParseDiskSize(text);
  CheckError(disk_size.status());
  if (size.ok()) {
    // Digits, at most one '.' with digits after it, and a suffix: never empty,
    // never a sign or a space; a fraction always has a unit after it.
    CHECK_INVARIANT(!text.empty() && text[0] >= '0' && text[0] <= '9', text);
    CHECK_INVARIANT(text.find_first_of(" \t\n+-,") == std::string_view::npos, text);
    const size_t dot = text.find('.');
    CHECK_INVARIANT(dot == std::string_view::npos ||
                        (text.find('.', dot + 1) == std::string_view::npos &&
                         dot + 1 < text.size() && text[dot + 1] >= '0' && text[dot + 1] <= '9' &&
                         text.find_first_of("KMGTPkmgtp", dot) != std::string_view::npos),
                    text);
    // The plain decimal form reads back the same.
    absl::StatusOr<uint64_t> again = ParseSize(std::to_string(*size));
    CHECK_INVARIANT(again.ok() && *again == *size, text);
  }
  if (disk_size.ok()) {
    CHECK_INVARIANT(size.ok(), text);
    CHECK_INVARIANT(*disk_size % kLogicalBlockSize == 0, text);
    CHECK_INVARIANT(*disk_size <= kMaxDiskBytes, text);
    CHECK_INVARIANT(*disk_size >= *size && *disk_size - *size < kLogicalBlockSize, text);
  } else if (size.ok()) {
    CHECK_INVARIANT(*size > kMaxDiskBytes, text);
  }
}

void FuzzFormat(uint64_t bytes) {
  const std::string text = FormatSize(bytes);
  CHECK_INVARIANT(!text.empty() && text.size() <= 9, text);
  if (bytes < 1024) CHECK_INVARIANT(text == std::to_string(bytes), text);
  if (text.find('.') == std::string::npos) {
    // An integer form reads back as at most `bytes`, less than a tenth of a
    // unit below it.
    absl::StatusOr<uint64_t> back = ParseSize(text);
    CHECK_INVARIANT(back.ok(), text);
    CHECK_INVARIANT(*back <= bytes && bytes - *back <= *back / 10, text);
  }
  for (uint64_t unit : {uint64_t{512}, kPageSize}) {
    absl::StatusOr<uint64_t> rounded = RoundUp(bytes, unit);
    if (rounded.ok()) {
      CHECK_INVARIANT(*rounded % unit == 0 && *rounded >= bytes && *rounded - bytes < unit, text);
    } else {
      CHECK_INVARIANT(bytes > std::numeric_limits<uint64_t>::max() - (unit - 1), text);
    }
  }
}

void FuzzControl(std::string_view text) {
  absl::StatusOr<NewDiskRequest> request = ParseNewCommand(text);
  CheckError(request.status(), /*names=*/true);
  if (request.ok()) {
    CHECK_INVARIANT(ValidateDiskName(request->name).ok(), request->name);
    CHECK_INVARIANT(request->size_bytes % kLogicalBlockSize == 0, text);
    CHECK_INVARIANT(request->size_bytes <= kMaxDiskBytes, text);
    CHECK_INVARIANT(text.find("image=") == std::string_view::npos, text);
    CHECK_INVARIANT(text.size() <= kMaxControlWrite, text);
  }

  absl::StatusOr<std::string> name = ParseDeleteCommand(text);
  CheckError(name.status(), /*names=*/true);
  if (name.ok()) {
    CHECK_INVARIANT(ValidateDiskName(*name).ok(), *name);
    CHECK_INVARIANT(*name == Trimmed(text), text);
  }

  absl::StatusOr<ByteRange> range = ParseDiscardCommand(text);
  CheckError(range.status());
  if (range.ok()) {
    CHECK_INVARIANT(range->length <= std::numeric_limits<uint64_t>::max() - range->offset, text);
  }

  absl::StatusOr<bool> readonly = ParseBoolValue(text);
  CheckError(readonly.status());
  if (readonly.ok()) CHECK_INVARIANT(Trimmed(text) == (*readonly ? "1" : "0"), text);

  absl::StatusOr<uint64_t> size = ParseDiskSizeValue(text);
  CheckError(size.status());
  if (size.ok()) CHECK_INVARIANT(*size % kLogicalBlockSize == 0 && *size <= kMaxDiskBytes, text);

  absl::StatusOr<uint64_t> memory = ParseMemorySizeValue(text);
  CheckError(memory.status());
  if (memory.ok()) CHECK_INVARIANT(*memory % kPageSize == 0 && *memory >= kPageSize, text);

  absl::StatusOr<DataMode> mode = ParseModeValue(text);
  CheckError(mode.status());
  if (mode.ok()) CHECK_INVARIANT(DataModeName(*mode) == Trimmed(text), text);

  const absl::Status flush = ParseFlushCommand(text);
  CheckError(flush);
  if (flush.ok()) CHECK_INVARIANT(Trimmed(text) == "1", text);

  absl::Status name_status = ValidateDiskName(text);
  CheckError(name_status, /*names=*/true);
  if (StatusToErrno(name_status) == ENAMETOOLONG) CHECK_INVARIANT(text.size() > 255, text);
}

// A settings value with something in every file, so that refusals are
// checked against a non-trivial "before".
FaultSettings PopulatedFaults() {
  FaultSettings s;
  const std::pair<FaultFile, const char*> writes[] = {
      {FaultFile::kBadblocks, "+8-15\n+100-200"}, {FaultFile::kBadblocksOnce, "1"},
      {FaultFile::kErrors, "read 0.25 ENOSPC"},   {FaultFile::kFaultSeed, "9"},
      {FaultFile::kLatency, "write 100 10"},      {FaultFile::kThrottle, "iops 10"},
      {FaultFile::kFlakey, "1 1 drop_writes"},
  };
  for (const auto& [file, text] : writes) {
    if (!ApplyFaultWrite(file, text, &s).ok()) Fail("PopulatedFaults", text);
  }
  return s;
}

// Every fault file: a refusal is one line with EINVAL, ERANGE or ENOSPC and
// changes nothing; an accepted write renders to text that (but for
// badblocks, whose listing has no '+') writes back to the same settings;
// and the injector's decisions on the result stay inside the request.
void FuzzFaults(std::string_view text) {
  static const FaultSettings populated = PopulatedFaults();
  for (FaultFile file : AllFaultFiles()) {
    for (const FaultSettings& start : {FaultSettings(), populated}) {
      FaultSettings s = start;
      const absl::Status status = ApplyFaultWrite(file, text, &s);
      if (!status.ok()) {
        const std::string message(status.message());
        CHECK_INVARIANT(!message.empty() && message.size() < 1000, message);
        CHECK_INVARIANT(message.find('\n') == std::string::npos, message);
        CHECK_INVARIANT(message.rfind(std::string(FaultFileName(file)), 0) == 0, message);
        const int err = StatusToErrno(status);
        CHECK_INVARIANT(err == EINVAL || err == ERANGE || err == ENOSPC, message);
        CHECK_INVARIANT(s == start, message);
        continue;
      }
      CHECK_INVARIANT(text.size() <= kMaxFaultWrite, text);
      const std::string rendered = RenderFaultFile(file, s);
      CHECK_INVARIANT(rendered.empty() || rendered.back() == '\n', rendered);
      if (file == FaultFile::kBadblocks) {
        uint64_t previous_last = 0;
        bool first = true;
        for (const auto& [lo, hi] : s.badblocks.Ranges()) {
          CHECK_INVARIANT(lo <= hi && hi <= kMaxSector, rendered);
          CHECK_INVARIANT(first || lo > previous_last + 1, rendered);  // disjoint, merged
          previous_last = hi;
          first = false;
        }
        CHECK_INVARIANT(s.badblocks.range_count() <= kMaxBadRanges, rendered);
      } else if (!rendered.empty()) {
        FaultSettings again = start;
        // Rendered rules replace each op's rule: start from the same base
        // with the file's rules cleared, as "0" does.
        if (file == FaultFile::kErrors) again.errors = {};
        if (file == FaultFile::kLatency) again.latency = {};
        if (file == FaultFile::kThrottle) again.throttle = {};
        const absl::Status back = ApplyFaultWrite(file, rendered, &again);
        CHECK_INVARIANT(back.ok(), rendered);
        CHECK_INVARIANT(again == s, rendered);
      }
      for (const ErrorRule& rule : s.errors) {
        CHECK_INVARIANT(rule.probability_ppb <= kProbabilityOne, rendered);
        CHECK_INVARIANT(rule.probability_ppb == 0 || !InjectableErrnoName(rule.err).empty(),
                        rendered);
      }
      for (const LatencyRule& rule : s.latency) {
        CHECK_INVARIANT(rule.jitter_us <= rule.us && rule.us + rule.jitter_us <= kMaxLatencyUs,
                        rendered);
      }
      // Decisions on what was accepted.
      FaultInjector injector;
      injector.Configure(s, 0);
      const uint64_t lengths[] = {0, 1, 512, 4096, 1 << 20};
      for (int i = 0; i < 20; ++i) {
        FaultRequest request;
        request.op = static_cast<FaultOp>(i % kFaultOpCount);
        request.offset = static_cast<uint64_t>(i) * 3583;
        request.length = request.op == FaultOp::kFlush ? 0 : lengths[i % 5];
        request.arrival_ns = static_cast<int64_t>(i) * 1'000'000;
        const FaultDecision d = injector.Decide(request);
        CHECK_INVARIANT(d.done <= request.length, rendered);
        CHECK_INVARIANT(d.err == 0 ? d.done == request.length : d.err > 0, rendered);
        CHECK_INVARIANT(!d.corrupt_at || *d.corrupt_at < request.length, rendered);
        CHECK_INVARIANT(d.reply_at_ns == 0 || d.reply_at_ns >= request.arrival_ns, rendered);
      }
    }
  }
}

// Rows made from the input: one per line, the key being the line's first
// word with the spaces removed (never empty), the value the rest.
void FuzzKeyValues(std::string_view text) {
  std::vector<std::pair<std::string, std::string>> rows;
  size_t start = 0;
  while (start < text.size() && rows.size() < 64) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view line = text.substr(start, end - start);
    start = end + 1;
    const size_t space = line.find(' ');
    std::string key(line.substr(0, space));
    if (key.empty()) key = "k";
    std::string value(space == std::string_view::npos ? std::string_view() : line.substr(space));
    rows.emplace_back(std::move(key), std::move(value));
  }
  const std::string rendered = RenderKeyValues(rows);
  auto parsed = ParseKeyValues(rendered);
  CHECK_INVARIANT(parsed.ok(), rendered);
  CHECK_INVARIANT(*parsed == rows, rendered);

  // And whatever ParseKeyValues accepts renders back to the same rows.
  auto direct = ParseKeyValues(text);
  CheckError(direct.status());
  if (direct.ok()) {
    auto again = ParseKeyValues(RenderKeyValues(*direct));
    CHECK_INVARIANT(again.ok() && *again == *direct, text);
  }
}

void FuzzCommandLine(std::string_view text) {
  std::vector<std::string> argv = {"ramdiskfs"};
  size_t start = 0;
  while (start <= text.size() && argv.size() < 256) {
    size_t end = text.find_first_of(std::string_view("\0\n", 2), start);
    if (end == std::string_view::npos) end = text.size();
    argv.emplace_back(text.substr(start, end - start));
    start = end + 1;
  }
  absl::StatusOr<Config> config = ParseCommandLine(argv);
  if (!config.ok()) {
    CheckError(config.status());
    CHECK_INVARIANT(config.status().code() == absl::StatusCode::kInvalidArgument,
                    std::string(config.status().message()));
    return;
  }
  const std::string joined(text);
  CHECK_INVARIANT(!config->debug || config->foreground, joined);
  CHECK_INVARIANT(config->max_threads >= 1 && config->max_threads <= 64, joined);
  if (config->max_memory_bytes) {
    CHECK_INVARIANT(*config->max_memory_bytes % kPageSize == 0, joined);
    CHECK_INVARIANT(*config->max_memory_bytes >= kPageSize, joined);
  }
  bool allow_other_option = false;
  for (const std::string& option : config->fuse_options) {
    CHECK_INVARIANT(!option.empty(), joined);
    CHECK_INVARIANT(option.find(',') == std::string::npos, option);
    allow_other_option |= option == "allow_other";
    const std::string key = option.substr(0, option.find('='));
    for (const char* owned :
         {"disk", "disks", "size", "max_memory", "max-memory", "mode", "store", "threads"}) {
      CHECK_INVARIANT(key != owned, option);  // owned options never leak to libfuse
    }
  }
  CHECK_INVARIANT(config->allow_other == allow_other_option, joined);
  if (config->show_help || config->show_version) return;

  CHECK_INVARIANT(!config->mountpoint.empty(), joined);
  CHECK_INVARIANT(!config->disks.empty(), joined);
  CHECK_INVARIANT(config->disks.size() <= static_cast<size_t>(kMaxDisks), joined);
  std::set<std::string> names;
  for (const DiskSpec& disk : config->disks) {
    CHECK_INVARIANT(ValidateDiskName(disk.name).ok(), disk.name);
    CHECK_INVARIANT(names.insert(disk.name).second, disk.name);
    CHECK_INVARIANT(disk.size_bytes.has_value() || disk.image_path.has_value(), disk.name);
    if (disk.size_bytes) {
      CHECK_INVARIANT(*disk.size_bytes > 0, disk.name);
      CHECK_INVARIANT(*disk.size_bytes % kLogicalBlockSize == 0, disk.name);
      CHECK_INVARIANT(*disk.size_bytes <= kMaxDiskBytes, disk.name);
    }
    if (disk.image_path) CHECK_INVARIANT(!disk.image_path->empty(), disk.name);
  }
}

// The write-cache control files, --disk keys and powercut_log (cache_control.h).
void FuzzCacheControl(std::string_view text) {
  absl::StatusOr<CacheMode> cache = ParseCacheValue(text);
  CheckError(cache.status());
  if (cache.ok()) CHECK_INVARIANT(CacheModeName(*cache) == Trimmed(text), text);

  absl::StatusOr<PowercutPolicy> policy = ParsePowercutPolicyValue(text);
  CheckError(policy.status());
  if (policy.ok()) CHECK_INVARIANT(PowercutPolicyName(*policy) == Trimmed(text), text);

  absl::StatusOr<uint64_t> seed = ParsePowercutSeedValue(text);
  CheckError(seed.status());
  if (seed.ok()) {
    // A plain decimal; leading zeros are allowed ("007" is seed 7).
    std::string_view digits = Trimmed(text);
    while (digits.size() > 1 && digits.front() == '0') digits.remove_prefix(1);
    CHECK_INVARIANT(std::to_string(*seed) == digits, text);
  }
  CheckError(ParsePowercutAtFlushValue(text).status());
  CheckError(ParseCacheSizeValue(text).status());

  absl::StatusOr<bool> power = ParsePowerValue(text);
  CheckError(power.status());
  if (power.ok()) CHECK_INVARIANT(Trimmed(text) == (*power ? "1" : "0"), text);

  // key=value: an error leaves the settings as they were.
  const size_t eq = text.find('=');
  if (eq != std::string_view::npos) {
    CacheSettings settings;
    settings.seed = 42;
    absl::StatusOr<bool> applied =
        ApplyCacheKey(text.substr(0, eq), text.substr(eq + 1), &settings);
    CheckError(applied.status());
    if (!applied.ok() || !*applied) {
      CHECK_INVARIANT(settings.seed == 42 && settings.mode == CacheMode::kNone &&
                          settings.cache_size_bytes == 0 &&
                          settings.policy == PowercutPolicy::kAllLost,
                      text);
    }
  }

  // powercut_log: whatever parses renders back to the same text.
  absl::StatusOr<std::vector<PowercutRecord>> log = ParsePowercutLog(text);
  if (log.ok()) CHECK_INVARIANT(RenderPowercutLog(*log) == text, text);
}

}  // namespace
}  // namespace ramdiskfs

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ramdiskfs;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  FuzzSizes(text);
  FuzzControl(text);
  FuzzCacheControl(text);
  FuzzFaults(text);
  FuzzKeyValues(text);
  FuzzCommandLine(text);

  uint64_t bytes = 0;
  memcpy(&bytes, data, size < sizeof(bytes) ? size : sizeof(bytes));
  FuzzFormat(bytes);
  FuzzFormat(size);
  if (size >= 16) {
    memcpy(&bytes, data + 8, sizeof(bytes));
    FuzzFormat(bytes);
  }
  return 0;
}
