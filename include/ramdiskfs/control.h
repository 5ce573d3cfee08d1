// Parsing and rendering of the control files under MOUNT/.control/ (see
// docs/control.md). Pure functions: no disk is touched here; the caller
// applies the parsed request. All are thread-safe.
//
// Input rules shared by every control file, like sysfs: the text is one line;
// one trailing "\n" is allowed; fields are separated by single or repeated
// spaces/tabs; leading/trailing spaces are tolerated. Empty input, a second
// line, NUL bytes, or more than kMaxControlWrite bytes are InvalidArgument.
// Numbers are plain decimal or ParseSize() sizes: no sign, no fraction.
// Error messages are one line and start with the file's name ("new: bad size
// '12Q': ..."); every error is InvalidArgument except a name over 255 bytes
// (ENAMETOOLONG, from ValidateDiskName).

#ifndef RAMDISKFS_CONTROL_H_
#define RAMDISKFS_CONTROL_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "ramdiskfs/cache_control.h"
#include "ramdiskfs/types.h"

namespace ramdiskfs {

inline constexpr size_t kMaxControlWrite = 4096;

// `new`: "NAME SIZE [mode=MODE] [readonly=0|1] [cache keys]" (the cache
// keys are cache_control.h's: cache=, cache_size=, powercut_policy=,
// powercut_seed=). SIZE rounds up to 512 bytes
// (ParseDiskSize); 0 is allowed, as for `size` and ftruncate. image= is
// refused here on purpose: no control operation makes the daemon open a path
// (docs/control.md). Unknown or repeated keys are errors.
struct NewDiskRequest {
  std::string name;
  uint64_t size_bytes = 0;
  std::optional<DataMode> mode;
  bool readonly = false;
  CacheSettings cache;
};
absl::StatusOr<NewDiskRequest> ParseNewCommand(std::string_view text);

// `delete`: "NAME". Returns the validated name.
absl::StatusOr<std::string> ParseDeleteCommand(std::string_view text);

// `discard`: "OFFSET LENGTH" in bytes (sizes with suffixes allowed).
// LENGTH 0 is allowed (a no-op). offset+length overflow is an error; the
// range is checked against the disk size by the caller.
struct ByteRange {
  uint64_t offset = 0;
  uint64_t length = 0;
};
absl::StatusOr<ByteRange> ParseDiscardCommand(std::string_view text);

// The one field of a single-value control file `file`, under the input
// rules above (EINVAL "file: ..." otherwise); `syntax` shows the form in
// the error. For other single-value files (cache_control.h).
absl::StatusOr<std::string_view> ParseOneField(std::string_view file, std::string_view text,
                                               std::string_view syntax);

// `readonly`: "0" or "1".
absl::StatusOr<bool> ParseBoolValue(std::string_view text);
// `size`: a disk size (ParseDiskSize: rounds up to 512).
absl::StatusOr<uint64_t> ParseDiskSizeValue(std::string_view text);
// `max_memory`: a size (ParseSize, rounded up to kPageSize).
absl::StatusOr<uint64_t> ParseMemorySizeValue(std::string_view text);
// `mode`: "dax", "direct", "cached" or "null".
absl::StatusOr<DataMode> ParseModeValue(std::string_view text);
// `flush`: "1" (like zram's reset). Anything else is InvalidArgument.
absl::Status ParseFlushCommand(std::string_view text);

// Renders "key value\n" lines in the given order.
std::string RenderKeyValues(const std::vector<std::pair<std::string, std::string>>& rows);
// Parses what RenderKeyValues made (for ramdiskctl and tests): each line is
// split at its first space, so values may hold spaces; the last line's "\n"
// may be missing; "" is no rows. Errors: InvalidArgument on a line without a
// space (an empty line included) or with an empty key.
absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ParseKeyValues(
    std::string_view text);

}  // namespace ramdiskfs

#endif  // RAMDISKFS_CONTROL_H_
