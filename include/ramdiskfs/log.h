// One-line log messages: "ramdiskfs: <message>" on stderr, or to syslog
// (daemon facility) once the daemon has detached from its terminal.
// Thread-safe (each message is a single write).

#ifndef RAMDISKFS_LOG_H_
#define RAMDISKFS_LOG_H_

#include <string>
#include <string_view>
#include <type_traits>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace ramdiskfs {

// Sends later messages to syslog instead of stderr.
void LogToSyslog();
// Logs `message` (a newline is added; embedded newlines become spaces).
void LogLine(std::string_view message);

// One piece of a log line: strings of either string_view kind as they are,
// anything else (numbers, absl::Hex) as absl::StrCat prints it.
template <typename T>
std::string LogPiece(const T& value) {
  if constexpr (std::is_convertible_v<const T&, std::string_view>) {
    return std::string(std::string_view(value));
  } else if constexpr (std::is_convertible_v<const T&, absl::string_view>) {
    return std::string(absl::string_view(value));
  } else {
    return absl::StrCat(value);
  }
}

template <typename... Args>
void Log(const Args&... args) {
  std::string line;
  (line.append(LogPiece(args)), ...);
  LogLine(line);
}

}  // namespace ramdiskfs

#endif  // RAMDISKFS_LOG_H_
