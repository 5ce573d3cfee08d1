// Small text helpers shared by the core's parsers (private to src/).

#ifndef RAMDISKFS_SRC_TEXT_H_
#define RAMDISKFS_SRC_TEXT_H_

#include <string>
#include <string_view>

#include "absl/strings/string_view.h"

namespace ramdiskfs::text {

// Debian's abseil is built with ABSL_OPTION_USE_STD_STRING_VIEW=0, so
// absl::string_view is its own type and std::string_view must be converted.
inline absl::string_view AsAbsl(std::string_view text) { return {text.data(), text.size()}; }

// `text` in single quotes for a one-line message: bytes other than printable
// ASCII are escaped (\n, \t, \xNN, and \' \\), and the quoted form is cut
// after about 120 characters (messages end up in logs; the fuzzer found
// inputs whose message quoted 200 escaped bytes three times over).
std::string Quote(std::string_view text);

}  // namespace ramdiskfs::text

#endif  // RAMDISKFS_SRC_TEXT_H_
