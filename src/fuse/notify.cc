#include "src/fuse/notify.h"

#include <systemd/sd-daemon.h>

#include <atomic>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "ramdiskfs/log.h"

namespace ramdiskfs {
namespace {
std::atomic<bool> ready_sent{false};
std::atomic<bool> stopping_sent{false};
std::atomic<int> notify_pid{0};

void Send(const std::string& state) {
  // unset_environment=0: the fusermount3 child of an unprivileged unmount
  // does not notify, and keeping NOTIFY_SOCKET costs nothing.
  const int pid = notify_pid.load();
  int r = pid > 0 ? sd_pid_notify(pid, 0, state.c_str()) : sd_notify(0, state.c_str());
  if (r < 0) Log("sd_notify(", state.substr(0, state.find('\n')), "): ", strerror(-r));
}
}  // namespace

void SetNotifyPid(int pid) { notify_pid = pid; }

void NotifyReady(size_t disks) {
  if (ready_sent.exchange(true)) return;
  Send(absl::StrCat("READY=1\nSTATUS=serving ", disks, " disk(s)"));
}

void NotifyStopping() {
  if (stopping_sent.exchange(true)) return;
  Send("STOPPING=1\nSTATUS=unmounting");
}

}  // namespace ramdiskfs
