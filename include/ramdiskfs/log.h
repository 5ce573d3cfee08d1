// One-line log messages, thread-safe (each message is a single write()).
//
// Where the lines go (the sink) is decided once, by InitLog() at start and
// LogDetached() after the daemon has left its terminal:
//
//   under systemd (JOURNAL_STREAM names our stderr, see systemd.exec(5)):
//       stderr, each line prefixed "<N>" (sd-daemon(3) priority, N = 5,
//       notice), which journald turns into the line's priority. This holds
//       in the background too: stderr is saved before fuse_daemonize() points
//       fd 2 at /dev/null.
//   in the foreground (-f, -d):  stderr, "ramdiskfs: <message>".
//   in the background:           syslog (daemon facility) if /dev/log is a
//       socket. Else (glibc's syslog() drops messages when /dev/log is
//       absent: containers, initramfs) "ramdiskfs[PID]: <message>" to the
//       saved stderr if it is a terminal or a regular file, or else (a pipe:
//       keeping it would make a reader wait for EOF forever) appended to
//       /run/ramdiskfs.log (root) or $XDG_RUNTIME_DIR/ramdiskfs.log; the
//       daemon says which on stderr before it detaches.

#ifndef RAMDISKFS_LOG_H_
#define RAMDISKFS_LOG_H_

#include <string>
#include <string_view>
#include <type_traits>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace ramdiskfs {

// Picks the sink (see above). `will_detach`: the daemon will call
// fuse_daemonize() later, so stderr is saved on a close-on-exec descriptor
// now if it may be needed after. Call once, before any thread starts.
void InitLog(bool will_detach);
// After fuse_daemonize(): switches to the background sink. Call once.
void LogDetached();
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
