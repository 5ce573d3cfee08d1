#include "ramdiskfs/log.h"

#include <syslog.h>
#include <unistd.h>

#include <atomic>
#include <string>

namespace ramdiskfs {
namespace {
std::atomic<bool> use_syslog{false};
}  // namespace

void LogToSyslog() {
  openlog("ramdiskfs", LOG_PID, LOG_DAEMON);
  use_syslog = true;
}

void LogLine(std::string_view message) {
  std::string line(message);
  for (char& c : line) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  if (use_syslog) {
    syslog(LOG_NOTICE, "%s", line.c_str());
    return;
  }
  line.insert(0, "ramdiskfs: ");
  line.push_back('\n');
  // One write() per line keeps lines from different threads whole.
  ssize_t ignored = write(STDERR_FILENO, line.data(), line.size());
  (void)ignored;
}

}  // namespace ramdiskfs
