// Control-file parsing and rendering (see control.h). Every error message is
// one line that starts with the control file's name ("new: bad size '12Q':
// ..."), so the daemon can log it as is.

#include "ramdiskfs/control.h"

#include <cstdint>
#include <limits>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "ramdiskfs/size.h"
#include "ramdiskfs/types.h"
#include "src/text.h"

namespace ramdiskfs {
namespace {

using text::AsAbsl;
using text::Quote;

absl::Status Invalid(std::string_view file, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(AsAbsl(file), ": ", why));
}

// `status` with "file: " in front of its message, keeping its code and
// payloads (so ValidateDiskName's ENAMETOOLONG reaches the FUSE edge).
absl::Status Prefixed(std::string_view file, const absl::Status& status) {
  absl::Status out(status.code(), absl::StrCat(AsAbsl(file), ": ", status.message()));
  status.ForEachPayload(
      [&out](absl::string_view url, const absl::Cord& payload) { out.SetPayload(url, payload); });
  return out;
}

bool IsBlank(char c) { return c == ' ' || c == '\t'; }

// Splits a control write into fields, applying the input rules of control.h.
absl::StatusOr<std::vector<std::string_view>> Fields(std::string_view file, std::string_view text) {
  if (text.size() > kMaxControlWrite) {
    return Invalid(file, absl::StrCat("input too long (", text.size(), " bytes, at most ",
                                      kMaxControlWrite, ")"));
  }
  if (!text.empty() && text.back() == '\n') text.remove_suffix(1);
  if (text.find('\n') != std::string_view::npos) return Invalid(file, "more than one line");
  if (text.find('\0') != std::string_view::npos) return Invalid(file, "NUL byte in input");
  std::vector<std::string_view> fields;
  for (size_t pos = 0; pos < text.size();) {
    if (IsBlank(text[pos])) {
      ++pos;
      continue;
    }
    size_t end = pos;
    while (end < text.size() && !IsBlank(text[end])) ++end;
    fields.push_back(text.substr(pos, end - pos));
    pos = end;
  }
  if (fields.empty()) return Invalid(file, "empty input");
  return fields;
}

// Fields() that must yield exactly `count` fields; `syntax` shows the form.
absl::StatusOr<std::vector<std::string_view>> ExactFields(std::string_view file,
                                                          std::string_view text, size_t count,
                                                          std::string_view syntax) {
  absl::StatusOr<std::vector<std::string_view>> fields = Fields(file, text);
  if (!fields.ok()) return fields.status();
  if (fields->size() > count) {
    return Invalid(file, absl::StrCat("unexpected field ", Quote((*fields)[count]), " (expected ",
                                      AsAbsl(syntax), ")"));
  }
  if (fields->size() < count) {
    return Invalid(file, absl::StrCat("missing field (expected ", AsAbsl(syntax), ")"));
  }
  return fields;
}

absl::StatusOr<bool> ParseZeroOne(std::string_view file, std::string_view what,
                                  std::string_view value) {
  if (value == "0") return false;
  if (value == "1") return true;
  return Invalid(file, absl::StrCat("bad ", AsAbsl(what), " ", Quote(value), ": expected 0 or 1"));
}

}  // namespace

absl::StatusOr<std::string_view> ParseOneField(std::string_view file, std::string_view text,
                                               std::string_view syntax) {
  absl::StatusOr<std::vector<std::string_view>> fields = ExactFields(file, text, 1, syntax);
  if (!fields.ok()) return fields.status();
  return (*fields)[0];
}

absl::StatusOr<NewDiskRequest> ParseNewCommand(std::string_view text) {
  constexpr std::string_view kFile = "new";
  absl::StatusOr<std::vector<std::string_view>> fields = Fields(kFile, text);
  if (!fields.ok()) return fields.status();
  NewDiskRequest request;
  if (absl::Status status = ValidateDiskName((*fields)[0]); !status.ok()) {
    return Prefixed(kFile, status);
  }
  request.name = std::string((*fields)[0]);
  if (fields->size() < 2) {
    return Invalid(kFile, "missing SIZE (expected NAME SIZE [mode=MODE] [readonly=0|1])");
  }
  absl::StatusOr<uint64_t> size = ParseDiskSize((*fields)[1]);
  if (!size.ok()) return Prefixed(kFile, size.status());
  request.size_bytes = *size;

  bool seen_mode = false, seen_readonly = false;
  std::set<std::string> seen_cache_keys;
  for (size_t i = 2; i < fields->size(); ++i) {
    const std::string_view field = (*fields)[i];
    const size_t eq = field.find('=');
    if (eq == std::string_view::npos) {
      return Invalid(kFile, absl::StrCat("bad field ", Quote(field), ": expected key=value"));
    }
    const std::string_view key = field.substr(0, eq);
    const std::string_view value = field.substr(eq + 1);
    absl::StatusOr<bool> cache_key = ApplyCacheKey(key, value, &request.cache);
    if (!cache_key.ok()) return Prefixed(kFile, cache_key.status());
    if (*cache_key) {
      if (!seen_cache_keys.insert(std::string(key)).second) {
        return Invalid(kFile, absl::StrCat("repeated key ", Quote(key)));
      }
      continue;
    }
    if (key == "mode") {
      if (seen_mode) return Invalid(kFile, "repeated key 'mode'");
      seen_mode = true;
      absl::StatusOr<DataMode> mode = ParseDataMode(value);
      if (!mode.ok()) return Prefixed(kFile, mode.status());
      request.mode = *mode;
    } else if (key == "readonly") {
      if (seen_readonly) return Invalid(kFile, "repeated key 'readonly'");
      seen_readonly = true;
      absl::StatusOr<bool> readonly = ParseZeroOne(kFile, "readonly", value);
      if (!readonly.ok()) return readonly.status();
      request.readonly = *readonly;
    } else if (key == "image") {
      return Invalid(kFile,
                     "image= is only allowed on the command line: control files never "
                     "open paths");
    } else {
      return Invalid(kFile, absl::StrCat("unknown key ", Quote(key), " (expected mode, readonly, ",
                                         AsAbsl(kCacheKeyNames), ")"));
    }
  }
  return request;
}

absl::StatusOr<std::string> ParseDeleteCommand(std::string_view text) {
  constexpr std::string_view kFile = "delete";
  absl::StatusOr<std::string_view> name = ParseOneField(kFile, text, "NAME");
  if (!name.ok()) return name.status();
  if (absl::Status status = ValidateDiskName(*name); !status.ok()) return Prefixed(kFile, status);
  return std::string(*name);
}

absl::StatusOr<ByteRange> ParseDiscardCommand(std::string_view text) {
  constexpr std::string_view kFile = "discard";
  absl::StatusOr<std::vector<std::string_view>> fields =
      ExactFields(kFile, text, 2, "OFFSET LENGTH");
  if (!fields.ok()) return fields.status();
  absl::StatusOr<uint64_t> offset = ParseSize((*fields)[0]);
  if (!offset.ok()) return Prefixed(kFile, offset.status());
  absl::StatusOr<uint64_t> length = ParseSize((*fields)[1]);
  if (!length.ok()) return Prefixed(kFile, length.status());
  if (*length > std::numeric_limits<uint64_t>::max() - *offset) {
    return Invalid(kFile, absl::StrCat("offset ", *offset, " + length ", *length, " overflows"));
  }
  return ByteRange{*offset, *length};
}

absl::StatusOr<bool> ParseBoolValue(std::string_view text) {
  constexpr std::string_view kFile = "readonly";
  absl::StatusOr<std::string_view> value = ParseOneField(kFile, text, "0 or 1");
  if (!value.ok()) return value.status();
  return ParseZeroOne(kFile, "value", *value);
}

absl::StatusOr<uint64_t> ParseDiskSizeValue(std::string_view text) {
  constexpr std::string_view kFile = "size";
  absl::StatusOr<std::string_view> value = ParseOneField(kFile, text, "SIZE");
  if (!value.ok()) return value.status();
  absl::StatusOr<uint64_t> size = ParseDiskSize(*value);
  if (!size.ok()) return Prefixed(kFile, size.status());
  return size;
}

absl::StatusOr<uint64_t> ParseMemorySizeValue(std::string_view text) {
  constexpr std::string_view kFile = "max_memory";
  absl::StatusOr<std::string_view> value = ParseOneField(kFile, text, "SIZE");
  if (!value.ok()) return value.status();
  absl::StatusOr<uint64_t> size = ParseSize(*value);
  if (!size.ok()) return Prefixed(kFile, size.status());
  absl::StatusOr<uint64_t> rounded = RoundUp(*size, kPageSize);
  if (!rounded.ok()) {
    return Invalid(kFile, absl::StrCat("bad size ", Quote(*value), ": too large to round up to ",
                                       kPageSize, " bytes"));
  }
  if (*rounded < kPageSize) {
    return Invalid(kFile,
                   absl::StrCat("bad size ", Quote(*value), ": must be at least ", kPageSize));
  }
  return rounded;
}

absl::StatusOr<DataMode> ParseModeValue(std::string_view text) {
  constexpr std::string_view kFile = "mode";
  absl::StatusOr<std::string_view> value =
      ParseOneField(kFile, text, "dax, direct, cached or null");
  if (!value.ok()) return value.status();
  absl::StatusOr<DataMode> mode = ParseDataMode(*value);
  if (!mode.ok()) return Prefixed(kFile, mode.status());
  return mode;
}

absl::Status ParseFlushCommand(std::string_view text) {
  constexpr std::string_view kFile = "flush";
  absl::StatusOr<std::string_view> value = ParseOneField(kFile, text, "1");
  if (!value.ok()) return value.status();
  if (*value != "1") return Invalid(kFile, absl::StrCat("bad value ", Quote(*value), ": write 1"));
  return absl::OkStatus();
}

std::string RenderKeyValues(const std::vector<std::pair<std::string, std::string>>& rows) {
  std::string out;
  for (const auto& [key, value] : rows) absl::StrAppend(&out, key, " ", value, "\n");
  return out;
}

absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ParseKeyValues(
    std::string_view text) {
  std::vector<std::pair<std::string, std::string>> rows;
  if (text.empty()) return rows;  // no rows; "\n" is one empty line, an error
  if (text.back() == '\n') text.remove_suffix(1);
  int line_number = 0;
  for (size_t start = 0; start <= text.size();) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view line = text.substr(start, end - start);
    start = end + 1;
    ++line_number;
    const size_t space = line.find(' ');
    if (space == std::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("line ", line_number, " ", Quote(line), ": expected 'key value'"));
    }
    if (space == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("line ", line_number, " ", Quote(line), ": empty key"));
    }
    rows.emplace_back(std::string(line.substr(0, space)), std::string(line.substr(space + 1)));
  }
  return rows;
}

}  // namespace ramdiskfs
