// Fault settings, their control-file syntax, and the per-request decision
// (see faults.h and docs/faults.md for the semantics and where they follow
// null_blk, dm-flakey and dm-delay).

#include "ramdiskfs/faults.h"

#include <time.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <iterator>
#include <limits>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "ramdiskfs/size.h"
#include "ramdiskfs/status.h"
#include "src/text.h"

namespace ramdiskfs {
namespace {

using text::AsAbsl;
using text::Quote;

constexpr FaultFile kFiles[] = {
    FaultFile::kBadblocks, FaultFile::kBadblocksOnce, FaultFile::kBadblocksPartial,
    FaultFile::kErrors,    FaultFile::kFaultSeed,     FaultFile::kLatency,
    FaultFile::kThrottle,  FaultFile::kFlakey,
};
static_assert(std::size(kFiles) == kFaultFileCount);

constexpr FaultOp kOps[] = {FaultOp::kRead, FaultOp::kWrite, FaultOp::kFlush, FaultOp::kDiscard};
constexpr ThrottleKey kThrottleKeys[] = {
    ThrottleKey::kIops,      ThrottleKey::kReadIops,      ThrottleKey::kWriteIops,
    ThrottleKey::kBandwidth, ThrottleKey::kReadBandwidth, ThrottleKey::kWriteBandwidth,
};
constexpr FlakeyBehaviour kBehaviours[] = {
    FlakeyBehaviour::kErrorReads, FlakeyBehaviour::kErrorWrites,   FlakeyBehaviour::kErrorAll,
    FlakeyBehaviour::kDropWrites, FlakeyBehaviour::kCorruptWrites,
};
constexpr int kInjectableErrnos[] = {EIO, ENOSPC, ENOMEM, ETIMEDOUT, EROFS};

size_t Index(FaultOp op) { return static_cast<size_t>(op); }
size_t Index(ThrottleKey key) { return static_cast<size_t>(key); }

// ---- parsing helpers -----------------------------------------------------------

// Errors of one fault file; every message starts with the file's name and,
// for multi-line writes, the line.
class Errors {
 public:
  explicit Errors(FaultFile file) : file_(FaultFileName(file)) {}
  void set_line(int line, bool multi) { prefix_ = multi ? absl::StrCat(" line ", line) : ""; }

  absl::Status Invalid(absl::string_view why) const {
    return absl::InvalidArgumentError(absl::StrCat(AsAbsl(file_), prefix_, ": ", why));
  }
  absl::Status Range(absl::string_view why) const {
    return ErrnoStatus(ERANGE, absl::StrCat(AsAbsl(file_), prefix_, ": ", why));
  }
  absl::Status Prefixed(const absl::Status& status) const {
    // Keeps the errno (ErrnoStatus payload) of `status`.
    if (StatusToErrno(status) == EINVAL) return Invalid(status.message());
    return ErrnoStatus(StatusToErrno(status),
                       absl::StrCat(AsAbsl(file_), prefix_, ": ", status.message()));
  }

 private:
  std::string_view file_;
  std::string prefix_;
};

bool IsBlank(char c) { return c == ' ' || c == '\t'; }

std::vector<std::string_view> SplitFields(std::string_view line) {
  std::vector<std::string_view> fields;
  for (size_t pos = 0; pos < line.size();) {
    if (IsBlank(line[pos])) {
      ++pos;
      continue;
    }
    size_t end = pos;
    while (end < line.size() && !IsBlank(line[end])) ++end;
    fields.push_back(line.substr(pos, end - pos));
    pos = end;
  }
  return fields;
}

// The non-blank lines of a write, each split into fields.
absl::StatusOr<std::vector<std::vector<std::string_view>>> SplitLines(const Errors& errors,
                                                                      std::string_view text) {
  if (text.size() > kMaxFaultWrite) {
    return errors.Invalid(
        absl::StrCat("input too long (", text.size(), " bytes, at most ", kMaxFaultWrite, ")"));
  }
  if (text.find('\0') != std::string_view::npos) return errors.Invalid("NUL byte in input");
  std::vector<std::vector<std::string_view>> lines;
  for (size_t start = 0; start < text.size();) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::vector<std::string_view> fields = SplitFields(text.substr(start, end - start));
    if (!fields.empty()) lines.push_back(std::move(fields));
    start = end + 1;
  }
  if (lines.empty()) return errors.Invalid("empty input");
  return lines;
}

// Plain decimal digits into a uint64_t. EINVAL for anything else, ERANGE
// past 2^64-1.
absl::StatusOr<uint64_t> ParseDecimal(const Errors& errors, std::string_view what,
                                      std::string_view text) {
  if (text.empty()) return errors.Invalid(absl::StrCat("empty ", AsAbsl(what)));
  uint64_t value = 0;
  bool overflow = false;
  for (char c : text) {
    if (c < '0' || c > '9') {
      return errors.Invalid(
          absl::StrCat("bad ", AsAbsl(what), " ", Quote(text), ": expected a decimal number"));
    }
    const uint64_t digit = static_cast<uint64_t>(c - '0');
    if (value > (std::numeric_limits<uint64_t>::max() - digit) / 10) overflow = true;
    value = value * 10 + digit;
  }
  if (overflow) {
    return errors.Range(absl::StrCat("bad ", AsAbsl(what), " ", Quote(text), ": too large"));
  }
  return value;
}

absl::StatusOr<uint64_t> ParseBounded(const Errors& errors, std::string_view what,
                                      std::string_view text, uint64_t max) {
  absl::StatusOr<uint64_t> value = ParseDecimal(errors, what, text);
  if (!value.ok()) return value.status();
  if (*value > max) {
    return errors.Range(absl::StrCat("bad ", AsAbsl(what), " ", Quote(text), ": at most ", max));
  }
  return value;
}

// "0", "1", "0.01", ".5", "1.000": a decimal in [0, 1] with at most nine
// decimals, as parts per 10^9.
absl::StatusOr<uint32_t> ParseProbability(const Errors& errors, std::string_view text) {
  const size_t dot = text.find('.');
  const std::string_view whole = text.substr(0, dot);
  const std::string_view fraction =
      dot == std::string_view::npos ? std::string_view() : text.substr(dot + 1);
  auto bad = [&](absl::string_view why) {
    return errors.Invalid(absl::StrCat("bad probability ", Quote(text), ": ", why));
  };
  if (whole.empty() && fraction.empty()) return bad("expected a decimal in [0, 1]");
  for (std::string_view part : {whole, fraction}) {
    for (char c : part) {
      if (c < '0' || c > '9') return bad("expected a decimal in [0, 1]");
    }
  }
  if (fraction.size() > 9) return bad("at most 9 decimals");
  // Leading zeros are fine ("00.5"); anything above 1 is out of range.
  uint64_t units = 0;
  for (char c : whole) {
    units = units * 10 + static_cast<uint64_t>(c - '0');
    if (units > 1) break;
  }
  uint64_t ppb = 0;
  for (size_t i = 0; i < 9; ++i) {
    ppb = ppb * 10 + (i < fraction.size() ? static_cast<uint64_t>(fraction[i] - '0') : 0);
  }
  if (units > 1 || (units == 1 && ppb > 0)) {
    return errors.Range(absl::StrCat("bad probability ", Quote(text), ": must be in [0, 1]"));
  }
  return static_cast<uint32_t>(units * kProbabilityOne + ppb);
}

std::string RenderProbability(uint32_t ppb) {
  if (ppb >= kProbabilityOne) return "1";
  if (ppb == 0) return "0";
  std::string digits = std::to_string(ppb);
  digits.insert(0, 9 - digits.size(), '0');
  while (digits.back() == '0') digits.pop_back();
  return "0." + digits;
}

absl::StatusOr<FaultOp> ParseOp(const Errors& errors, std::string_view text) {
  for (FaultOp op : kOps) {
    if (text == FaultOpName(op)) return op;
  }
  return errors.Invalid(
      absl::StrCat("bad OP ", Quote(text), ": expected read, write, flush or discard"));
}

absl::StatusOr<int> ParseErrno(const Errors& errors, std::string_view text) {
  for (int err : kInjectableErrnos) {
    if (text == InjectableErrnoName(err)) return err;
  }
  return errors.Invalid(absl::StrCat("bad ERRNO ", Quote(text),
                                     ": expected EIO, ENOSPC, ENOMEM, ETIMEDOUT or EROFS"));
}

absl::Status ExpectFields(const Errors& errors, const std::vector<std::string_view>& fields,
                          size_t min, size_t max, std::string_view syntax) {
  if (fields.size() < min) {
    return errors.Invalid(absl::StrCat("missing field (expected ", AsAbsl(syntax), ")"));
  }
  if (fields.size() > max) {
    return errors.Invalid(
        absl::StrCat("unexpected field ", Quote(fields[max]), " (expected ", AsAbsl(syntax), ")"));
  }
  return absl::OkStatus();
}

// Single-value files: exactly one line of one field.
absl::StatusOr<std::string_view> OneValue(const Errors& errors,
                                          const std::vector<std::vector<std::string_view>>& lines,
                                          std::string_view syntax) {
  if (lines.size() > 1) return errors.Invalid("more than one line");
  RDFS_RETURN_IF_ERROR(ExpectFields(errors, lines[0], 1, 1, syntax));
  return lines[0][0];
}

// ---- one line of each file ---------------------------------------------------------

absl::Status ApplyBadblocksLine(const Errors& errors, const std::vector<std::string_view>& fields,
                                FaultSettings* s) {
  constexpr std::string_view kSyntax = "+START-END, -START-END or clear";
  RDFS_RETURN_IF_ERROR(ExpectFields(errors, fields, 1, 1, kSyntax));
  const std::string_view field = fields[0];
  if (field == "clear") {
    s->badblocks.Clear();
    return absl::OkStatus();
  }
  if (field.size() < 2 || (field[0] != '+' && field[0] != '-')) {
    return errors.Invalid(
        absl::StrCat("bad command ", Quote(field), " (expected ", AsAbsl(kSyntax), ")"));
  }
  const std::string_view range = field.substr(1);
  const size_t dash = range.find('-');
  if (dash == std::string_view::npos) {
    return errors.Invalid(absl::StrCat("bad range ", Quote(range), ": expected START-END"));
  }
  absl::StatusOr<uint64_t> first = ParseBounded(errors, "START", range.substr(0, dash), kMaxSector);
  if (!first.ok()) return first.status();
  absl::StatusOr<uint64_t> last = ParseBounded(errors, "END", range.substr(dash + 1), kMaxSector);
  if (!last.ok()) return last.status();
  if (*first > *last) {
    return errors.Invalid(absl::StrCat("bad range ", Quote(range), ": START is above END"));
  }
  absl::Status status =
      field[0] == '+' ? s->badblocks.Add(*first, *last) : s->badblocks.Remove(*first, *last);
  if (!status.ok()) return errors.Prefixed(status);
  return absl::OkStatus();
}

absl::Status ApplyErrorsLine(const Errors& errors, const std::vector<std::string_view>& fields,
                             FaultSettings* s) {
  constexpr std::string_view kSyntax = "OP PROBABILITY [ERRNO], or 0";
  if (fields.size() == 1 && fields[0] == "0") {
    s->errors = {};
    return absl::OkStatus();
  }
  RDFS_RETURN_IF_ERROR(ExpectFields(errors, fields, 2, 3, kSyntax));
  absl::StatusOr<FaultOp> op = ParseOp(errors, fields[0]);
  if (!op.ok()) return op.status();
  absl::StatusOr<uint32_t> ppb = ParseProbability(errors, fields[1]);
  if (!ppb.ok()) return ppb.status();
  int err = EIO;
  if (fields.size() == 3) {
    absl::StatusOr<int> parsed = ParseErrno(errors, fields[2]);
    if (!parsed.ok()) return parsed.status();
    err = *parsed;
  }
  s->errors[Index(*op)] = *ppb == 0 ? ErrorRule{} : ErrorRule{*ppb, err};
  return absl::OkStatus();
}

absl::Status ApplyLatencyLine(const Errors& errors, const std::vector<std::string_view>& fields,
                              FaultSettings* s) {
  constexpr std::string_view kSyntax = "OP MICROSECONDS [JITTER], or 0";
  if (fields.size() == 1 && fields[0] == "0") {
    s->latency = {};
    return absl::OkStatus();
  }
  RDFS_RETURN_IF_ERROR(ExpectFields(errors, fields, 2, 3, kSyntax));
  absl::StatusOr<FaultOp> op = ParseOp(errors, fields[0]);
  if (!op.ok()) return op.status();
  absl::StatusOr<uint64_t> us = ParseBounded(errors, "MICROSECONDS", fields[1], kMaxLatencyUs);
  if (!us.ok()) return us.status();
  uint64_t jitter = 0;
  if (fields.size() == 3) {
    absl::StatusOr<uint64_t> parsed = ParseBounded(errors, "JITTER", fields[2], kMaxLatencyUs);
    if (!parsed.ok()) return parsed.status();
    jitter = *parsed;
  }
  if (jitter > *us) {
    return errors.Range(absl::StrCat("JITTER ", jitter, " is above MICROSECONDS ", *us,
                                     " (a request cannot complete before it arrives)"));
  }
  if (*us + jitter > kMaxLatencyUs) {
    return errors.Range(
        absl::StrCat("MICROSECONDS + JITTER ", *us + jitter, " is above ", kMaxLatencyUs));
  }
  s->latency[Index(*op)] = *us == 0 ? LatencyRule{} : LatencyRule{*us, jitter};
  return absl::OkStatus();
}

absl::Status ApplyThrottleLine(const Errors& errors, const std::vector<std::string_view>& fields,
                               FaultSettings* s) {
  if (fields.size() == 1 && fields[0] == "0") {
    s->throttle = {};
    return absl::OkStatus();
  }
  if (fields.size() % 2 != 0) {
    return errors.Invalid(absl::StrCat("key ", Quote(fields.back()),
                                       " has no value (expected KEY VALUE [KEY VALUE...], or 0)"));
  }
  for (size_t i = 0; i < fields.size(); i += 2) {
    std::optional<ThrottleKey> key;
    for (ThrottleKey k : kThrottleKeys) {
      if (fields[i] == ThrottleKeyName(k)) key = k;
    }
    if (!key) {
      return errors.Invalid(
          absl::StrCat("unknown key ", Quote(fields[i]),
                       " (expected iops, read_iops, write_iops, bandwidth, read_bandwidth or "
                       "write_bandwidth)"));
    }
    const bool bandwidth = *key == ThrottleKey::kBandwidth || *key == ThrottleKey::kReadBandwidth ||
                           *key == ThrottleKey::kWriteBandwidth;
    uint64_t value = 0;
    if (bandwidth) {
      absl::StatusOr<uint64_t> bytes = ParseSize(fields[i + 1]);
      if (!bytes.ok()) {
        return errors.Invalid(
            absl::StrCat(AsAbsl(ThrottleKeyName(*key)), ": ", bytes.status().message()));
      }
      if (*bytes > kMaxThrottleBandwidth) {
        return errors.Range(absl::StrCat("bad ", AsAbsl(ThrottleKeyName(*key)), " ",
                                         Quote(fields[i + 1]), ": at most ", kMaxThrottleBandwidth,
                                         " bytes per second"));
      }
      value = *bytes;
    } else {
      absl::StatusOr<uint64_t> count =
          ParseBounded(errors, ThrottleKeyName(*key), fields[i + 1], kMaxThrottleIops);
      if (!count.ok()) return count.status();
      value = *count;
    }
    s->throttle.limits[Index(*key)] = value;
  }
  return absl::OkStatus();
}

absl::Status ApplyFlakey(const Errors& errors, const std::vector<std::string_view>& fields,
                         FaultSettings* s) {
  constexpr std::string_view kSyntax = "UP DOWN BEHAVIOUR, or 0 0";
  RDFS_RETURN_IF_ERROR(ExpectFields(errors, fields, 2, 3, kSyntax));
  absl::StatusOr<uint64_t> up = ParseBounded(errors, "UP", fields[0], kMaxFlakeySeconds);
  if (!up.ok()) return up.status();
  absl::StatusOr<uint64_t> down = ParseBounded(errors, "DOWN", fields[1], kMaxFlakeySeconds);
  if (!down.ok()) return down.status();
  FlakeySettings flakey;
  flakey.up_s = *up;
  flakey.down_s = *down;
  if (fields.size() == 3) {
    std::optional<FlakeyBehaviour> behaviour;
    for (FlakeyBehaviour b : kBehaviours) {
      if (fields[2] == FlakeyBehaviourName(b)) behaviour = b;
    }
    if (!behaviour) {
      return errors.Invalid(absl::StrCat("bad BEHAVIOUR ", Quote(fields[2]),
                                         ": expected error_reads, error_writes, error_all, "
                                         "drop_writes or corrupt_writes"));
    }
    flakey.behaviour = *behaviour;
  } else if (*up != 0 || *down != 0) {
    return errors.Invalid(absl::StrCat("missing BEHAVIOUR (expected ", AsAbsl(kSyntax), ")"));
  }
  // "0 0" is off whatever behaviour follows it: the file reads back "0 0",
  // so the behaviour is not kept (re-applying what the file shows must give
  // the same settings).
  if (*up == 0 && *down == 0) flakey = FlakeySettings{};
  s->flakey = flakey;
  return absl::OkStatus();
}

// ---- the PRNG ---------------------------------------------------------------------------

// SplitMix64's finalizer (Steele, Lea, Flood 2014): a bijection of 64-bit
// words whose outputs pass BigCrush when fed a counter.
uint64_t Mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}
constexpr uint64_t kGolden = 0x9e3779b97f4a7c15ULL;

// `cost` tokens at `rate` tokens per second, in nanoseconds.
int64_t CostNs(uint64_t cost, uint64_t rate) {
  const unsigned __int128 ns = static_cast<unsigned __int128>(cost) * 1'000'000'000u / rate;
  return ns > static_cast<unsigned __int128>(std::numeric_limits<int64_t>::max() / 4)
             ? std::numeric_limits<int64_t>::max() / 4
             : static_cast<int64_t>(ns);
}

}  // namespace

int64_t MonotonicNowNs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

std::string_view FaultOpName(FaultOp op) {
  switch (op) {
    case FaultOp::kRead:
      return "read";
    case FaultOp::kWrite:
      return "write";
    case FaultOp::kFlush:
      return "flush";
    case FaultOp::kDiscard:
      return "discard";
  }
  return "unknown";
}

std::string_view InjectableErrnoName(int err) {
  switch (err) {
    case EIO:
      return "EIO";
    case ENOSPC:
      return "ENOSPC";
    case ENOMEM:
      return "ENOMEM";
    case ETIMEDOUT:
      return "ETIMEDOUT";
    case EROFS:
      return "EROFS";
    default:
      return "";
  }
}

std::string_view ThrottleKeyName(ThrottleKey key) {
  switch (key) {
    case ThrottleKey::kIops:
      return "iops";
    case ThrottleKey::kReadIops:
      return "read_iops";
    case ThrottleKey::kWriteIops:
      return "write_iops";
    case ThrottleKey::kBandwidth:
      return "bandwidth";
    case ThrottleKey::kReadBandwidth:
      return "read_bandwidth";
    case ThrottleKey::kWriteBandwidth:
      return "write_bandwidth";
  }
  return "unknown";
}

std::string_view FlakeyBehaviourName(FlakeyBehaviour behaviour) {
  switch (behaviour) {
    case FlakeyBehaviour::kErrorReads:
      return "error_reads";
    case FlakeyBehaviour::kErrorWrites:
      return "error_writes";
    case FlakeyBehaviour::kErrorAll:
      return "error_all";
    case FlakeyBehaviour::kDropWrites:
      return "drop_writes";
    case FlakeyBehaviour::kCorruptWrites:
      return "corrupt_writes";
  }
  return "unknown";
}

std::string_view FaultFileName(FaultFile file) {
  switch (file) {
    case FaultFile::kBadblocks:
      return "badblocks";
    case FaultFile::kBadblocksOnce:
      return "badblocks_once";
    case FaultFile::kBadblocksPartial:
      return "badblocks_partial";
    case FaultFile::kErrors:
      return "errors";
    case FaultFile::kFaultSeed:
      return "fault_seed";
    case FaultFile::kLatency:
      return "latency";
    case FaultFile::kThrottle:
      return "throttle";
    case FaultFile::kFlakey:
      return "flakey";
  }
  return "unknown";
}

std::optional<FaultFile> FindFaultFile(std::string_view name) {
  for (FaultFile file : kFiles) {
    if (name == FaultFileName(file)) return file;
  }
  return std::nullopt;
}

std::span<const FaultFile> AllFaultFiles() { return kFiles; }

// ---- BadSectors ----------------------------------------------------------------------

absl::Status BadSectors::Add(uint64_t first, uint64_t last) {
  // Merge with every range that overlaps or touches [first, last].
  uint64_t new_first = first, new_last = last;
  auto it = ranges_.upper_bound(first);
  if (it != ranges_.begin()) {
    auto prev = std::prev(it);
    if (prev->second + 1 >= first) it = prev;  // overlaps or is adjacent on the left
  }
  auto begin = it;
  size_t merged = 0;
  while (it != ranges_.end() && it->first <= last + 1) {  // last <= kMaxSector: no overflow
    new_first = std::min(new_first, it->first);
    new_last = std::max(new_last, it->second);
    ++it;
    ++merged;
  }
  if (merged == 0 && ranges_.size() >= kMaxBadRanges) {
    return ErrnoStatus(ENOSPC, absl::StrCat("more than ", kMaxBadRanges, " bad ranges"));
  }
  ranges_.erase(begin, it);
  ranges_.emplace(new_first, new_last);
  return absl::OkStatus();
}

absl::Status BadSectors::Remove(uint64_t first, uint64_t last) {
  auto it = ranges_.upper_bound(first);
  if (it != ranges_.begin()) {
    auto prev = std::prev(it);
    if (prev->second >= first) it = prev;
  }
  // A range strictly containing [first, last] splits in two: one more range.
  if (it != ranges_.end() && it->first < first && it->second > last &&
      ranges_.size() >= kMaxBadRanges) {
    return ErrnoStatus(ENOSPC, absl::StrCat("healing inside a range would make more than ",
                                            kMaxBadRanges, " bad ranges"));
  }
  std::vector<std::pair<uint64_t, uint64_t>> keep;
  while (it != ranges_.end() && it->first <= last) {
    if (it->first < first) keep.emplace_back(it->first, first - 1);
    if (it->second > last) keep.emplace_back(last + 1, it->second);
    it = ranges_.erase(it);
  }
  for (const auto& [f, l] : keep) ranges_.emplace(f, l);
  return absl::OkStatus();
}

std::optional<uint64_t> BadSectors::FirstBad(uint64_t first, uint64_t last) const {
  auto it = ranges_.upper_bound(first);
  if (it != ranges_.begin()) {
    auto prev = std::prev(it);
    if (prev->second >= first) return first;
  }
  if (it != ranges_.end() && it->first <= last) return it->first;
  return std::nullopt;
}

uint64_t BadSectors::HealTouched(uint64_t first, uint64_t last) {
  auto it = ranges_.upper_bound(first);
  if (it != ranges_.begin()) {
    auto prev = std::prev(it);
    if (prev->second >= first) it = prev;
  }
  uint64_t healed = 0;
  while (it != ranges_.end() && it->first <= last) {
    healed += it->second - it->first + 1;
    it = ranges_.erase(it);
  }
  return healed;
}

std::vector<std::pair<uint64_t, uint64_t>> BadSectors::Ranges() const {
  return {ranges_.begin(), ranges_.end()};
}

// ---- settings -------------------------------------------------------------------------

bool ThrottleSettings::any() const {
  return std::any_of(limits.begin(), limits.end(), [](uint64_t v) { return v != 0; });
}

bool FaultSettings::any() const {
  if (!badblocks.empty() || throttle.any() || flakey.on()) return true;
  for (const ErrorRule& rule : errors) {
    if (rule.probability_ppb != 0) return true;
  }
  for (const LatencyRule& rule : latency) {
    if (rule.us != 0) return true;
  }
  return false;
}

absl::Status ApplyFaultWrite(FaultFile file, std::string_view text, FaultSettings* settings) {
  Errors errors(file);
  absl::StatusOr<std::vector<std::vector<std::string_view>>> lines = SplitLines(errors, text);
  if (!lines.ok()) return lines.status();
  FaultSettings s = *settings;  // applied only if every line is good
  switch (file) {
    case FaultFile::kBadblocksOnce:
    case FaultFile::kBadblocksPartial: {
      absl::StatusOr<std::string_view> value = OneValue(errors, *lines, "0 or 1");
      if (!value.ok()) return value.status();
      if (*value != "0" && *value != "1") {
        return errors.Invalid(absl::StrCat("bad value ", Quote(*value), ": expected 0 or 1"));
      }
      (file == FaultFile::kBadblocksOnce ? s.badblocks_once : s.badblocks_partial) = *value == "1";
      break;
    }
    case FaultFile::kFaultSeed: {
      absl::StatusOr<std::string_view> value = OneValue(errors, *lines, "SEED");
      if (!value.ok()) return value.status();
      absl::StatusOr<uint64_t> seed = ParseDecimal(errors, "seed", *value);
      if (!seed.ok()) return seed.status();
      s.fault_seed = *seed;
      break;
    }
    case FaultFile::kFlakey:
      if (lines->size() > 1) return errors.Invalid("more than one line");
      RDFS_RETURN_IF_ERROR(ApplyFlakey(errors, (*lines)[0], &s));
      break;
    case FaultFile::kBadblocks:
    case FaultFile::kErrors:
    case FaultFile::kLatency:
    case FaultFile::kThrottle: {
      const bool multi = lines->size() > 1;
      for (size_t i = 0; i < lines->size(); ++i) {
        errors.set_line(static_cast<int>(i + 1), multi);
        const std::vector<std::string_view>& fields = (*lines)[i];
        absl::Status status;
        if (file == FaultFile::kBadblocks) {
          status = ApplyBadblocksLine(errors, fields, &s);
        } else if (file == FaultFile::kErrors) {
          status = ApplyErrorsLine(errors, fields, &s);
        } else if (file == FaultFile::kLatency) {
          status = ApplyLatencyLine(errors, fields, &s);
        } else {
          status = ApplyThrottleLine(errors, fields, &s);
        }
        RDFS_RETURN_IF_ERROR(status);
      }
      break;
    }
  }
  *settings = std::move(s);
  return absl::OkStatus();
}

std::string RenderFaultFile(FaultFile file, const FaultSettings& s) {
  std::string out;
  switch (file) {
    case FaultFile::kBadblocks:
      for (const auto& [first, last] : s.badblocks.Ranges()) {
        absl::StrAppend(&out, first, "-", last, "\n");
      }
      break;
    case FaultFile::kBadblocksOnce:
      out = s.badblocks_once ? "1\n" : "0\n";
      break;
    case FaultFile::kBadblocksPartial:
      out = s.badblocks_partial ? "1\n" : "0\n";
      break;
    case FaultFile::kErrors:
      for (FaultOp op : kOps) {
        const ErrorRule& rule = s.errors[Index(op)];
        if (rule.probability_ppb == 0) continue;
        absl::StrAppend(&out, AsAbsl(FaultOpName(op)), " ", RenderProbability(rule.probability_ppb),
                        " ", AsAbsl(InjectableErrnoName(rule.err)), "\n");
      }
      break;
    case FaultFile::kFaultSeed:
      out = absl::StrCat(s.fault_seed, "\n");
      break;
    case FaultFile::kLatency:
      for (FaultOp op : kOps) {
        const LatencyRule& rule = s.latency[Index(op)];
        if (rule.us == 0) continue;
        absl::StrAppend(&out, AsAbsl(FaultOpName(op)), " ", rule.us);
        if (rule.jitter_us != 0) absl::StrAppend(&out, " ", rule.jitter_us);
        out += "\n";
      }
      break;
    case FaultFile::kThrottle:
      for (ThrottleKey key : kThrottleKeys) {
        if (s.throttle.limit(key) == 0) continue;
        absl::StrAppend(&out, AsAbsl(ThrottleKeyName(key)), " ", s.throttle.limit(key), "\n");
      }
      break;
    case FaultFile::kFlakey:
      if (s.flakey.up_s == 0 && s.flakey.down_s == 0) {
        out = "0 0\n";
      } else {
        out = absl::StrCat(s.flakey.up_s, " ", s.flakey.down_s, " ",
                           AsAbsl(FlakeyBehaviourName(s.flakey.behaviour)), "\n");
      }
      break;
  }
  return out;
}

absl::StatusOr<bool> ApplyFaultKey(std::string_view key, std::string_view value,
                                   FaultSettings* settings) {
  const std::optional<FaultFile> file = FindFaultFile(key);
  if (!file) return false;
  RDFS_RETURN_IF_ERROR(ApplyFaultWrite(*file, value, settings));
  return true;
}

// ---- FaultInjector ------------------------------------------------------------------

absl::Status FaultInjector::Write(FaultFile file, std::string_view text, int64_t now_ns) {
  std::lock_guard lock(mu_);
  FaultSettings next = settings_;
  RDFS_RETURN_IF_ERROR(ApplyFaultWrite(file, text, &next));
  ApplyLocked(std::move(next), file == FaultFile::kFlakey, file == FaultFile::kThrottle,
              file == FaultFile::kFaultSeed, now_ns);
  return absl::OkStatus();
}

void FaultInjector::Configure(const FaultSettings& settings, int64_t now_ns) {
  std::lock_guard lock(mu_);
  ApplyLocked(settings, true, true, true, now_ns);
}

void FaultInjector::ApplyLocked(FaultSettings settings, bool reset_flakey, bool reset_buckets,
                                bool reset_streams, int64_t now_ns) {
  settings_ = std::move(settings);
  if (reset_flakey) flakey_epoch_ns_ = now_ns;
  if (reset_buckets) buckets_ = {};
  if (reset_streams) stream_index_ = {};
  active_.store(settings_.any(), std::memory_order_relaxed);
}

std::string FaultInjector::Read(FaultFile file) const {
  std::lock_guard lock(mu_);
  return RenderFaultFile(file, settings_);
}

FaultSettings FaultInjector::settings() const {
  std::lock_guard lock(mu_);
  return settings_;
}

int64_t FaultInjector::flakey_epoch_ns() const {
  std::lock_guard lock(mu_);
  return flakey_epoch_ns_;
}

void FaultInjector::Restore(const FaultSettings& settings, int64_t flakey_epoch_ns) {
  std::lock_guard lock(mu_);
  ApplyLocked(settings, true, true, true, flakey_epoch_ns);
}

uint64_t FaultInjector::Draw(uint64_t stream) {
  const uint64_t index = stream_index_[stream]++;
  // One SplitMix64 sequence per (seed, stream): state = Mix(seed ^ Mix(stream)).
  const uint64_t base = Mix64(settings_.fault_seed ^ Mix64((stream + 1) * kGolden));
  return Mix64(base + (index + 1) * kGolden);
}

bool FaultInjector::InFlakeyDownWindow(int64_t now_ns) const {
  const FlakeySettings& f = settings_.flakey;
  if (!f.on()) return false;
  const int64_t up_ns = static_cast<int64_t>(f.up_s) * 1'000'000'000;
  const int64_t period_ns = up_ns + static_cast<int64_t>(f.down_s) * 1'000'000'000;
  const int64_t elapsed = std::max<int64_t>(0, now_ns - flakey_epoch_ns_);
  return elapsed % period_ns >= up_ns;
}

int64_t FaultInjector::ThrottleRelease(const FaultRequest& request) {
  const int64_t now = request.arrival_ns;
  if (!settings_.throttle.any()) return now;
  const bool read = request.op == FaultOp::kRead;
  const ThrottleKey keys[] = {
      ThrottleKey::kIops,
      read ? ThrottleKey::kReadIops : ThrottleKey::kWriteIops,
      ThrottleKey::kBandwidth,
      read ? ThrottleKey::kReadBandwidth : ThrottleKey::kWriteBandwidth,
  };
  int64_t release = now;
  for (ThrottleKey key : keys) {
    const uint64_t rate = settings_.throttle.limit(key);
    if (rate == 0) continue;
    const bool bytes = key == ThrottleKey::kBandwidth || key == ThrottleKey::kReadBandwidth ||
                       key == ThrottleKey::kWriteBandwidth;
    const uint64_t cost = bytes ? std::max<uint64_t>(request.length, 1) : 1;
    const int64_t cost_ns = CostNs(cost, rate);
    // GCRA (virtual scheduling): the bucket is "full" when tat <= now; it
    // lets a request start once tat + cost - burst <= now. The burst is
    // kThrottleBurstNs of the rate, and at least this request, so a full
    // bucket never holds up a single request however large.
    const int64_t burst_ns = std::max(kThrottleBurstNs, cost_ns);
    Bucket& bucket = buckets_[Index(key)];
    const int64_t tat = std::max(bucket.tat_ns, now);
    release = std::max(release, tat + cost_ns - burst_ns);
    bucket.tat_ns = tat + cost_ns;
  }
  return release;
}

FaultDecision FaultInjector::Decide(const FaultRequest& request) {
  FaultDecision d;
  d.done = request.length;
  const bool is_read = request.op == FaultOp::kRead;
  const bool has_sectors = request.op != FaultOp::kFlush && request.length > 0;
  std::lock_guard lock(mu_);

  // 1. flakey down window.
  if (InFlakeyDownWindow(request.arrival_ns)) {
    switch (settings_.flakey.behaviour) {
      case FlakeyBehaviour::kErrorReads:
        if (is_read) d.err = EIO;
        break;
      case FlakeyBehaviour::kErrorWrites:
        if (!is_read) d.err = EIO;
        break;
      case FlakeyBehaviour::kErrorAll:
        d.err = EIO;
        break;
      case FlakeyBehaviour::kDropWrites:
        if (!is_read) d.drop = true;
        break;
      case FlakeyBehaviour::kCorruptWrites:
        if (request.op == FaultOp::kWrite && request.length > 0) {
          d.corrupt_at = Draw(kStreamCorrupt) % request.length;
        }
        break;
    }
    if (d.err != 0) d.done = 0;
  }

  // 2. bad sectors: a dropped write never reaches the medium.
  if (d.err == 0 && !d.drop && has_sectors && !settings_.badblocks.empty()) {
    const uint64_t first = request.offset / kSectorSize;
    const uint64_t end = request.offset + request.length;  // callers checked overflow
    const uint64_t last = (end - 1) / kSectorSize;
    if (std::optional<uint64_t> bad = settings_.badblocks.FirstBad(first, last)) {
      d.err = EIO;
      d.corrupt_at.reset();
      const uint64_t bad_offset = *bad * kSectorSize;
      d.done = settings_.badblocks_partial && bad_offset > request.offset
                   ? bad_offset - request.offset
                   : 0;
      if (settings_.badblocks_once && request.op == FaultOp::kWrite) {
        if (settings_.badblocks.HealTouched(first, last) > 0) {
          changed_by_io_.store(true, std::memory_order_release);
        }
        active_.store(settings_.any(), std::memory_order_relaxed);
      }
    }
  }

  // 3. the op's errors rule.
  const ErrorRule& rule = settings_.errors[Index(request.op)];
  if (d.err == 0 && !d.drop && rule.probability_ppb != 0) {
    const uint64_t draw = Draw(kStreamErrorBase + Index(request.op)) % kProbabilityOne;
    if (draw < rule.probability_ppb) {
      d.err = rule.err;
      d.done = 0;
      d.corrupt_at.reset();
    }
  }

  if (d.err != 0) {
    stats_.injected_errors.fetch_add(1, std::memory_order_relaxed);
    stats_.injected_error_bytes.fetch_add(request.length - d.done, std::memory_order_relaxed);
  }
  if (d.drop && request.op == FaultOp::kWrite) {
    stats_.dropped_writes.fetch_add(1, std::memory_order_relaxed);
  }
  if (d.corrupt_at) stats_.corrupted_writes.fetch_add(1, std::memory_order_relaxed);

  // 4. timing.
  const int64_t release = request.op == FaultOp::kRead || request.op == FaultOp::kWrite
                              ? ThrottleRelease(request)
                              : request.arrival_ns;
  const LatencyRule& latency = settings_.latency[Index(request.op)];
  uint64_t latency_us = latency.us;
  if (latency.jitter_us != 0) {
    latency_us = latency.us - latency.jitter_us + Draw(kStreamJitter) % (2 * latency.jitter_us + 1);
  }
  if (release > request.arrival_ns || latency_us != 0) {
    d.reply_at_ns = release + static_cast<int64_t>(latency_us) * 1000;
    stats_.delayed_requests.fetch_add(1, std::memory_order_relaxed);
    stats_.delay_us_total.fetch_add(latency_us, std::memory_order_relaxed);
    stats_.throttled_us_total.fetch_add(static_cast<uint64_t>(release - request.arrival_ns) / 1000,
                                        std::memory_order_relaxed);
  }
  return d;
}

std::vector<std::pair<std::string, std::string>> FaultInjector::StatsRows() const {
  auto num = [](const std::atomic<uint64_t>& v) { return std::to_string(v.load()); };
  return {
      {"injected_errors", num(stats_.injected_errors)},
      {"injected_error_bytes", num(stats_.injected_error_bytes)},
      {"delayed_requests", num(stats_.delayed_requests)},
      {"delay_us_total", num(stats_.delay_us_total)},
      {"throttled_us_total", num(stats_.throttled_us_total)},
      {"dropped_writes", num(stats_.dropped_writes)},
      {"corrupted_writes", num(stats_.corrupted_writes)},
  };
}

}  // namespace ramdiskfs
