#include "src/fuse/session.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "ramdiskfs/log.h"
#include "src/fuse/custom_io.h"
#include "src/fuse/notify.h"
#include "src/fuse/uring.h"

namespace ramdiskfs {
namespace {

// mount(8)'s exit statuses for itself and its helpers.
constexpr int kExitUsage = 1;
constexpr int kExitMountFailure = 32;

// ---- shutdown ------------------------------------------------------------------

std::string BusyDisks(DiskTable& table) {
  std::vector<std::string> busy;
  for (const auto& disk : table.List()) {
    if (disk->opens() > 0)
      busy.push_back(absl::StrCat(disk->name(), " (", disk->opens(), " open)"));
  }
  return busy.empty() ? "none known to the daemon" : absl::StrJoin(busy, ", ");
}

}  // namespace

int TryUnmount(const std::string& mountpoint) {
  if (umount2(mountpoint.c_str(), UMOUNT_NOFOLLOW) == 0) return 0;
  int err = errno;
  if (err != EPERM) return err;
  // Not root: fusermount3 does it for the mounting user.
  pid_t pid = fork();
  if (pid == 0) {
    int devnull = open("/dev/null", O_RDWR);
    if (devnull >= 0) dup2(devnull, STDERR_FILENO);
    execlp("fusermount3", "fusermount3", "-u", "-q", "-z", "--", mountpoint.c_str(),
           static_cast<char*>(nullptr));
    _exit(127);
  }
  int status = 0;
  if (pid < 0 || waitpid(pid, &status, 0) < 0) return err;
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : EBUSY;
}

namespace {

void SignalThread(const std::string mountpoint, Filesystem* fs, sigset_t set,
                  std::atomic<bool>* stop) {
  bool unmounting = false;
  bool told = false;
  while (!stop->load()) {
    struct timespec timeout = {1, 0};
    int sig = sigtimedwait(&set, nullptr, &timeout);
    if (sig > 0 && !unmounting) {
      Log("got ", strsignal(sig), ": unmounting ", mountpoint);
      NotifyStopping();
      unmounting = true;
    }
    if (!unmounting || stop->load()) continue;
    int err = TryUnmount(mountpoint);
    if (err == 0 || err == EINVAL || err == ENOENT) {
      // Unmounted (or already gone): the kernel ends the connection and the
      // request loop returns.
      fuse_session_exit(fs->session());
      return;
    }
    if (!told) {
      Log("cannot unmount ", mountpoint, ": ", strerror(err),
          "; disks in use: ", BusyDisks(fs->table()),
          ". Detach loop devices (losetup -d) and close the disk files; the daemon keeps "
          "serving and retries every second");
      told = true;
    }
  }
}

}  // namespace

std::vector<std::string> FuseSessionArgs(const Config& config) {
  std::vector<std::string> args = {"ramdiskfs"};
  // fsname is the source mount(8) passed (or "ramdiskfs"): mount -a then
  // finds an fstab line already mounted instead of stacking a second mount.
  std::string options =
      absl::StrCat("fsname=", config.source, ",subtype=ramdiskfs,default_permissions,",
                   "max_read=", kMaxReadBytes);
  for (const std::string& opt : config.fuse_options) {
    if (opt == "default_permissions") continue;
    options += "," + opt;
  }
  args.push_back("-o");
  args.push_back(options);
  if (config.debug) args.push_back("-d");
  return args;
}

int RunSession(const Config& config, Filesystem& fs, int device_fd) {
  // [uring hook] --transport uring on a kernel or process without it: a mount
  // failure, before anything is mounted.
  if (!UringConfigure(config)) return kExitMountFailure;
  std::vector<std::string> args = FuseSessionArgs(config);
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  fuse_args fargs = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());
  // libfuse copies argv into its own allocation when it adds an argument.
  absl::Cleanup free_args = [&fargs] { fuse_opt_free_args(&fargs); };

  // The one cleanup path: whatever was set up is torn down in reverse order,
  // on every return below.
  fuse_session* se = fuse_session_new(&fargs, Filesystem::Ops(), sizeof(fuse_lowlevel_ops), &fs);
  if (se == nullptr) {
    Log("cannot start a FUSE session (bad -o option?)");
    return kExitUsage;
  }
  absl::Cleanup destroy = [se, &fs] {
    // Delayed replies still queued (fault injection) go out before the
    // session they belong to is destroyed.
    fs.timers().RunAllNow();
    fs.set_session(nullptr);
    fuse_session_destroy(se);
  };
  fs.set_session(se);
  const bool supervised = device_fd >= 0;
  // Signals go to the signal thread only. They are blocked before the mount,
  // not just before the threads start: a SIGTERM that lands between the mount
  // and the signal thread (a caller that signals the moment the detached
  // daemon's parent returns) stays pending and unmounts, instead of killing
  // the daemon by default action and leaving a dead mount behind.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);
  if (!supervised && fuse_session_mount(se, config.mountpoint.c_str()) != 0) {
    Log("cannot mount on ", config.mountpoint);
    return kExitMountFailure;
  }
  // A supervised worker has no mount of its own: fuse_session_unmount is a
  // no-op without a mountpoint.
  absl::Cleanup unmount = [se] { fuse_session_unmount(se); };
  // Same fd, read and written through our io from now on (the INIT request
  // has not been read yet: the loop reads it). The io finds its state
  // through the session's userdata, the Filesystem.
  if (fuse_session_custom_io(se, CustomIo(), supervised ? device_fd : fuse_session_fd(se)) != 0) {
    Log("cannot install the custom io");
    return kExitMountFailure;
  }
  if (!supervised) {
    if (fuse_daemonize(config.foreground ? 1 : 0) != 0) return kExitMountFailure;
    if (!config.foreground) LogDetached();
  }

  // Reclaim must not recurse into us while we serve a loop device's I/O
  // (docs/design.md, "Loop devices and memory pressure"): brd's GFP_NOIO,
  // as a task flag. Worker threads inherit it.
#ifndef PR_SET_IO_FLUSHER
#define PR_SET_IO_FLUSHER 57
#endif
  if (prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0) != 0) {
    Log("PR_SET_IO_FLUSHER failed (", strerror(errno),
        "): loop devices over this mount may deadlock under memory pressure");
  }

  std::atomic<bool> stop{false};
  std::thread signals(SignalThread, config.mountpoint, &fs, set, &stop);

  if (supervised) {
    Log("worker ", getpid(), " serving ", config.mountpoint, " with ", fs.table().size(),
        " disk(s)");
  } else {
    Log("mounted on ", config.mountpoint, " with ", fs.table().size(), " disk(s)");
  }
  int loop_status;
  if (config.single_threaded) {
    loop_status = fuse_session_loop(se);
  } else {
    fuse_loop_config* loop_config = fuse_loop_cfg_create();
    fuse_loop_cfg_set_clone_fd(loop_config, supervised ? 0 : 1);
    fuse_loop_cfg_set_max_threads(loop_config, static_cast<unsigned>(config.max_threads));
    loop_status = fuse_session_loop_mt(se, loop_config);
    fuse_loop_cfg_destroy(loop_config);
  }
  NotifyStopping();
  stop = true;
  signals.join();
  // Delayed replies first: a reply to a ring request is committed by its
  // ring thread, so the rings must still run.
  fs.timers().RunAllNow();  // and before the unmount, while the kernel waits for them
  UringSessionEnd();        // [uring hook] ring threads end before /dev/fuse closes
  if (fs.fatal() || UringFatal()) return kExitMountFailure;  // [uring hook]
  if (loop_status < 0 && loop_status != -ENODEV) {
    Log("request loop ended with ", strerror(-loop_status));
  }
  std::move(unmount).Invoke();
  if (!supervised) Log("unmounted ", config.mountpoint);
  return 0;
}

}  // namespace ramdiskfs
