// Size parsing and formatting (see size.h). The grammar is deliberately small:
//
//   size   := digits ["." digits suffix | suffix]
//   suffix := ("K"|"M"|"G"|"T"|"P") ["iB"|"B"]      (case-insensitive)
//
// so that a typo ("1 G", "0x10", "-1", "1KK", "1.5") is an error naming the
// input instead of a surprising number. A fraction needs a unit, as
// util-linux's sizes take it ("1.5G" = 1.5 * 2^30); what falls below one byte
// is dropped (1.3K = 1331 bytes).

#include "ramdiskfs/size.h"

#include <cstdint>
#include <limits>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "src/text.h"

namespace ramdiskfs {
namespace {

using text::AsAbsl;
using text::Quote;

constexpr uint64_t kU64Max = std::numeric_limits<uint64_t>::max();

absl::Status BadSize(std::string_view text, std::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("bad size ", Quote(text), ": ", AsAbsl(why)));
}

// The shift for a unit letter (K=10 ... P=50), or -1.
int UnitShift(char c) {
  switch (absl::ascii_toupper(static_cast<unsigned char>(c))) {
    case 'K':
      return 10;
    case 'M':
      return 20;
    case 'G':
      return 30;
    case 'T':
      return 40;
    case 'P':
      return 50;
    default:
      return -1;
  }
}

bool IsSpace(char c) { return absl::ascii_isspace(static_cast<unsigned char>(c)); }

}  // namespace

absl::StatusOr<uint64_t> ParseSize(std::string_view text) {
  if (text.empty()) return BadSize(text, "empty");
  for (char c : text) {
    if (IsSpace(c)) return BadSize(text, "no spaces allowed");
  }
  if (text[0] == '-' || text[0] == '+') return BadSize(text, "no sign allowed");
  if (!absl::ascii_isdigit(static_cast<unsigned char>(text[0]))) {
    return BadSize(text, "expected a number");
  }

  uint64_t value = 0;
  size_t pos = 0;
  bool overflow = false;
  for (; pos < text.size() && absl::ascii_isdigit(static_cast<unsigned char>(text[pos])); ++pos) {
    const uint64_t digit = static_cast<uint64_t>(text[pos] - '0');
    if (value > (kU64Max - digit) / 10) overflow = true;  // keep scanning for a better message
    value = value * 10 + digit;
  }

  // A fraction: its digits, kept as numerator / 10^digits (at most 18 digits,
  // so both fit in 64 bits).
  uint64_t fraction = 0;
  uint64_t fraction_scale = 1;
  if (pos < text.size() && (text[pos] == '.' || text[pos] == ',')) {
    if (text[pos] == ',') return BadSize(text, "use '.' for a fraction");
    ++pos;
    const size_t first = pos;
    for (; pos < text.size() && absl::ascii_isdigit(static_cast<unsigned char>(text[pos])); ++pos) {
      if (pos - first >= 18) return BadSize(text, "too many decimals");
      fraction = fraction * 10 + static_cast<uint64_t>(text[pos] - '0');
      fraction_scale *= 10;
    }
    if (pos == first) return BadSize(text, "expected digits after '.'");
    if (pos == text.size()) return BadSize(text, "a fraction needs a unit (K, M, G, T or P)");
  }

  const std::string_view suffix = text.substr(pos);
  int shift = 0;
  if (!suffix.empty()) {
    if (suffix[0] == '.' || suffix[0] == ',') return BadSize(text, "one '.' at most");
    if ((suffix[0] == 'x' || suffix[0] == 'X') && pos == 1 && text[0] == '0') {
      return BadSize(text, "no hex allowed");
    }
    shift = UnitShift(suffix[0]);
    const std::string_view rest = suffix.substr(1);
    const bool rest_ok = rest.empty() || absl::EqualsIgnoreCase(AsAbsl(rest), "b") ||
                         absl::EqualsIgnoreCase(AsAbsl(rest), "ib");
    if (shift < 0 || !rest_ok) {
      return BadSize(text, absl::StrCat("unknown suffix ", Quote(suffix),
                                        " (expected K, M, G, T or P, optionally with iB or B)"));
    }
  }
  if (overflow || (shift > 0 && value > (kU64Max >> shift))) {
    return BadSize(text, "too large (more than 2^64-1 bytes)");
  }
  // fraction < fraction_scale <= 10^18 < 2^60, and unit <= 2^50: split the
  // product so it cannot overflow (unit = q * scale + r).
  const uint64_t unit = uint64_t{1} << shift;
  const uint64_t part =
      (unit / fraction_scale) * fraction +
      static_cast<uint64_t>(static_cast<unsigned __int128>(unit % fraction_scale) * fraction /
                            fraction_scale);
  const uint64_t whole = value << shift;
  if (part > kU64Max - whole) return BadSize(text, "too large (more than 2^64-1 bytes)");
  return whole + part;
}

absl::StatusOr<uint64_t> ParseSizeOrPercent(std::string_view text, uint64_t total_bytes) {
  if (text.empty() || text.back() != '%') return ParseSize(text);
  const std::string_view number = text.substr(0, text.size() - 1);
  if (total_bytes == 0) return BadSize(text, "a percentage needs the size of RAM, unknown here");
  uint64_t percent = 0;
  bool ok = !number.empty() && number.size() <= 3;
  for (char c : number) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) ok = false;
    if (ok) percent = percent * 10 + static_cast<uint64_t>(c - '0');
  }
  if (!ok || percent == 0 || percent > 100) {
    return BadSize(text, "a percentage of RAM must be 1% to 100%");
  }
  return static_cast<uint64_t>(static_cast<unsigned __int128>(total_bytes) * percent / 100);
}

absl::StatusOr<uint64_t> ParseDiskSize(std::string_view text) {
  absl::StatusOr<uint64_t> bytes = ParseSize(text);
  if (!bytes.ok()) return bytes.status();
  // kMaxDiskBytes is a multiple of 512, so checking before rounding is exact
  // and rounding cannot overflow.
  if (*bytes > kMaxDiskBytes) {
    return BadSize(
        text, absl::StrCat("larger than the largest disk (", kMaxDiskBytes, " bytes, 8E - 4K)"));
  }
  return RoundUp(*bytes, kLogicalBlockSize);
}

absl::StatusOr<uint64_t> RoundUp(uint64_t bytes, uint64_t unit) {
  if (unit == 0 || (unit & (unit - 1)) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot round up to ", unit, ": not a power of two"));
  }
  if (bytes > kU64Max - (unit - 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("rounding ", bytes, " up to a multiple of ", unit, " overflows"));
  }
  return (bytes + (unit - 1)) & ~(unit - 1);
}

std::string FormatSize(uint64_t bytes) {
  static constexpr char kUnits[] = {'K', 'M', 'G', 'T', 'P'};
  if (bytes < 1024) return absl::StrCat(bytes);
  int index = 0;  // the largest unit not above `bytes`, at most P
  while (index + 1 < static_cast<int>(sizeof(kUnits)) && bytes >> (10 * (index + 2)) != 0) {
    ++index;
  }
  const int shift = 10 * (index + 1);
  const uint64_t unit = uint64_t{1} << shift;
  const uint64_t whole = bytes >> shift;
  // remainder < 2^50, so remainder * 10 cannot overflow. Truncated, never
  // rounded up: a table must not show more than is there.
  const uint64_t tenths = (bytes & (unit - 1)) * 10 / unit;
  if (tenths == 0) return absl::StrCat(whole, std::string(1, kUnits[index]));
  return absl::StrCat(whole, ".", tenths, std::string(1, kUnits[index]));
}

}  // namespace ramdiskfs
