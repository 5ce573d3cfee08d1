#include "ramdiskfs/log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include <atomic>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"

namespace ramdiskfs {
namespace {

enum class Sink { kStderr, kJournal, kSyslog, kSavedStderr };

constexpr char kRootLogFile[] = "/run/ramdiskfs.log";

std::atomic<Sink> sink{Sink::kStderr};
// Where kStderr/kJournal/kSavedStderr lines are written: fd 2, or a copy of
// it that survives fuse_daemonize().
std::atomic<int> sink_fd{STDERR_FILENO};
bool journal = false;

// systemd sets JOURNAL_STREAM=DEV:INODE for the stderr it connects to the
// journal; a child whose stderr was redirected inherits the variable, so it
// only counts if it still names fd 2 (systemd.exec(5)).
bool StderrIsJournal() {
  const char* env = getenv("JOURNAL_STREAM");
  if (env == nullptr) return false;
  uintmax_t dev = 0, ino = 0;
  if (sscanf(env, "%ju:%ju", &dev, &ino) != 2) return false;
  struct stat st;
  if (fstat(STDERR_FILENO, &st) != 0) return false;
  return static_cast<uintmax_t>(st.st_dev) == dev && static_cast<uintmax_t>(st.st_ino) == ino;
}

bool HaveSyslogSocket() {
  struct stat st;
  return stat("/dev/log", &st) == 0 && S_ISSOCK(st.st_mode);
}

}  // namespace

namespace {
std::string FallbackLogPath() {
  if (geteuid() == 0) return kRootLogFile;
  const char* runtime = getenv("XDG_RUNTIME_DIR");
  if (runtime != nullptr && runtime[0] == '/') return absl::StrCat(runtime, "/ramdiskfs.log");
  return "";
}
}  // namespace

void InitLog(bool will_detach) {
  journal = StderrIsJournal();
  sink = journal ? Sink::kJournal : Sink::kStderr;
  if (!will_detach || (!journal && HaveSyslogSocket())) return;
  // A terminal or a file can be kept. A pipe cannot: whoever reads it (a
  // shell's $(...), subprocess.run) would wait for EOF as long as the daemon
  // lives; fuse_daemonize() closes fd 2 for exactly that reason.
  struct stat st;
  const bool keep =
      journal || isatty(STDERR_FILENO) || (fstat(STDERR_FILENO, &st) == 0 && S_ISREG(st.st_mode));
  int fd = -1;
  std::string path;
  if (keep) {
    fd = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
  } else if (path = FallbackLogPath(); !path.empty()) {
    fd = open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  }
  if (fd >= 0) {
    if (!keep) LogLine(absl::StrCat("no /dev/log: logging to ", path, " after detaching"));
    sink_fd = fd;
  } else if (!keep) {
    LogLine("no /dev/log and no log file: messages after detaching are lost");
  }
}

void LogDetached() {
  if (journal) return;  // the saved stderr still reaches the journal
  if (sink_fd != STDERR_FILENO) {
    sink = Sink::kSavedStderr;
    return;
  }
  if (HaveSyslogSocket()) {
    openlog("ramdiskfs", LOG_PID, LOG_DAEMON);
    sink = Sink::kSyslog;
  }
  // else: InitLog was not told, or dup failed; fd 2 is /dev/null now, and
  // there is nowhere better to write.
}

void LogLine(std::string_view message) {
  std::string text(message);
  for (char& c : text) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  std::string line;
  switch (sink.load()) {
    case Sink::kSyslog:
      syslog(LOG_NOTICE, "%s", text.c_str());
      return;
    case Sink::kJournal:
      line = absl::StrCat("<", LOG_NOTICE, ">", text, "\n");
      break;
    case Sink::kSavedStderr:
      line = absl::StrCat("ramdiskfs[", getpid(), "]: ", text, "\n");
      break;
    case Sink::kStderr:
      line = absl::StrCat("ramdiskfs: ", text, "\n");
      break;
  }
  // One write() per line keeps lines from different threads whole.
  ssize_t ignored = write(sink_fd.load(), line.data(), line.size());
  (void)ignored;
}

}  // namespace ramdiskfs
