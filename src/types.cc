// The core's vocabulary (see types.h).

#include "ramdiskfs/types.h"

#include <cerrno>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "ramdiskfs/status.h"
#include "src/text.h"

namespace ramdiskfs {
namespace {

using text::Quote;

absl::Status Invalid(std::string_view message) {
  return absl::InvalidArgumentError(text::AsAbsl(message));
}

bool IsNameChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '+' ||
         c == '@' || c == '-';
}

}  // namespace

// Indexed by the enums' values.
constexpr std::string_view kDataModeNames[] = {"dax", "direct", "cached", "null"};
constexpr std::string_view kStoreKindNames[] = {"auto", "tmpfs", "memfd"};
static_assert(std::size(kDataModeNames) == static_cast<size_t>(DataMode::kNull) + 1);
static_assert(std::size(kStoreKindNames) == static_cast<size_t>(StoreKind::kMemfd) + 1);

std::string_view DataModeName(DataMode mode) {
  const size_t i = static_cast<size_t>(mode);
  return i < std::size(kDataModeNames) ? kDataModeNames[i] : "unknown";
}

absl::StatusOr<DataMode> ParseDataMode(std::string_view text) {
  for (size_t i = 0; i < std::size(kDataModeNames); ++i) {
    if (text == kDataModeNames[i]) return static_cast<DataMode>(i);
  }
  return Invalid(absl::StrCat("bad mode ", Quote(text), ": expected dax, direct, cached or null"));
}

std::string_view StoreKindName(StoreKind kind) {
  const size_t i = static_cast<size_t>(kind);
  return i < std::size(kStoreKindNames) ? kStoreKindNames[i] : "unknown";
}

absl::Status ValidateDiskName(std::string_view name) {
  if (name.empty()) return Invalid("bad disk name '': empty");
  if (name.size() > kMaxNameBytes) {
    return ErrnoStatus(ENAMETOOLONG,
                       absl::StrCat("bad disk name ", Quote(name), " (", name.size(),
                                    " bytes): longer than ", kMaxNameBytes, " bytes"));
  }
  if (name[0] == '.' || name[0] == '-') {
    return Invalid(absl::StrCat("bad disk name ", Quote(name), ": must not start with '",
                                std::string(1, name[0]), "'"));
  }
  for (char c : name) {
    if (!IsNameChar(c)) {
      return Invalid(absl::StrCat("bad disk name ", Quote(name), ": character ",
                                  Quote(std::string_view(&c, 1)),
                                  " not allowed (use A-Z a-z 0-9 . _ + @ -)"));
    }
  }
  return absl::OkStatus();
}

}  // namespace ramdiskfs
