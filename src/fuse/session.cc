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
#include "src/fuse/kernel_abi.h"
#include "src/fuse/notify.h"

namespace ramdiskfs {
namespace {

// The custom io's state. One session per process.
struct IoState {
  Filesystem* fs = nullptr;
  std::atomic<uint64_t> init_unique{0};
  std::atomic<bool> init_done{false};
};
IoState io_state;

ssize_t IoRead(int fd, void* buf, size_t len, void* userdata) {
  ssize_t n = read(fd, buf, len);
  if (n >= static_cast<ssize_t>(sizeof(abi::InHeader) + sizeof(abi::InitIn)) &&
      !io_state.init_done.load(std::memory_order_relaxed)) {
    abi::InHeader header;
    std::memcpy(&header, buf, sizeof(header));
    if (header.opcode == abi::kOpInit) {
      abi::InitIn init;
      std::memcpy(&init, static_cast<char*>(buf) + sizeof(header), sizeof(init));
      const bool ext = init.flags & abi::kInitExt;
      ConnectionState& conn = io_state.fs->connection();
      conn.kernel_offers_passthrough = ext && (init.flags2 & abi::kFlags2Passthrough);
      conn.kernel_offers_allow_mmap = ext && (init.flags2 & abi::kFlags2DirectIoAllowMmap);
      io_state.init_unique = header.unique;
    }
  }
  return n;
}

// A pipe per thread for splicing read replies, as big as the system allows
// an unprivileged process (fs.pipe-max-size; CAP_SYS_RESOURCE is not assumed).
struct ThreadPipe {
  int read_fd = -1;
  int write_fd = -1;
  size_t capacity = 0;
  ~ThreadPipe() { Close(); }
  void Close() {
    if (read_fd >= 0) close(read_fd);
    if (write_fd >= 0) close(write_fd);
    read_fd = write_fd = -1;
  }
  bool Open() {
    if (read_fd >= 0) return true;
    int fds[2];
    if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) return false;
    read_fd = fds[0];
    write_fd = fds[1];
    int got = fcntl(write_fd, F_SETPIPE_SZ, static_cast<int>(kMaxReadBytes + 4096));
    capacity = got > 0 ? static_cast<size_t>(got) : 65536;
    return true;
  }
};

// Sends a read reply whose data comes from a backing file: header by
// vmsplice, pages by splice (no copy), then one splice into /dev/fuse (the
// only copy, into the reader's pages). Returns false, with nothing sent, if
// the pages do not fit the pipe or a splice fails; the caller then copies.
bool SpliceRead(int fd, abi::OutHeader header, const SpliceReply& reply) {
  thread_local ThreadPipe pipe;
  const size_t total = sizeof(header) + reply.length;
  // Each page is one pipe slot, and so is the header.
  if (!pipe.Open() || reply.offset % 4096 != 0 ||
      (reply.length + 4095) / 4096 + 1 > pipe.capacity / 4096) {
    return false;
  }
  header.len = static_cast<uint32_t>(total);
  struct iovec hiov = {&header, sizeof(header)};
  bool ok = vmsplice(pipe.write_fd, &hiov, 1, 0) == static_cast<ssize_t>(sizeof(header));
  loff_t off = static_cast<loff_t>(reply.offset);
  size_t moved = 0;
  while (ok && moved < reply.length) {
    ssize_t n = splice(reply.store->fd(), &off, pipe.write_fd, nullptr, reply.length - moved,
                       SPLICE_F_NONBLOCK);
    if (n <= 0)
      ok = false;
    else
      moved += static_cast<size_t>(n);
  }
  if (ok) ok = splice(pipe.read_fd, nullptr, fd, nullptr, total, 0) == static_cast<ssize_t>(total);
  if (!ok) pipe.Close();  // whatever is left in it is garbage now
  return ok;
}

// The fallback of SpliceRead: read into the thread's buffer, then writev.
ssize_t CopyRead(int fd, abi::OutHeader header, const SpliceReply& reply) {
  char* buffer = ThreadBuffer(reply.length);
  absl::StatusOr<size_t> n = reply.store->Read(reply.offset, buffer, reply.length);
  if (!n.ok() || *n < reply.length) {  // cannot happen: the disk is open, so it cannot shrink
    header.len = sizeof(header);
    header.error = -EIO;
    return write(fd, &header, sizeof(header));
  }
  header.len = static_cast<uint32_t>(sizeof(header) + reply.length);
  struct iovec iov[2] = {{&header, sizeof(header)}, {buffer, reply.length}};
  return writev(fd, iov, 2);
}

ssize_t IoWritev(int fd, struct iovec* iov, int count, void* userdata) {
  if (count == 2 && iov[1].iov_base == ThreadSpliceReply() &&
      iov[0].iov_len == sizeof(abi::OutHeader)) {
    abi::OutHeader header;
    std::memcpy(&header, iov[0].iov_base, sizeof(header));
    const SpliceReply& reply = *ThreadSpliceReply();
    if (SpliceRead(fd, header, reply)) return static_cast<ssize_t>(sizeof(header) + reply.length);
    return CopyRead(fd, header, reply);
  }
  const uint64_t init_unique = io_state.init_unique.load();
  if (init_unique == 0 || io_state.init_done.load(std::memory_order_relaxed) || count < 1 ||
      iov[0].iov_len < sizeof(abi::OutHeader)) {
    return writev(fd, iov, count);
  }
  abi::OutHeader header;
  std::memcpy(&header, iov[0].iov_base, sizeof(header));
  if (header.unique != init_unique) return writev(fd, iov, count);

  // The INIT reply: gather it, patch it, send it, then probe passthrough.
  std::string reply;
  for (int i = 0; i < count; ++i) {
    reply.append(static_cast<const char*>(iov[i].iov_base), iov[i].iov_len);
  }
  ConnectionState& conn = io_state.fs->connection();
  if (header.error == 0 && reply.size() >= sizeof(abi::OutHeader) + sizeof(abi::InitOut)) {
    abi::InitOut out;
    std::memcpy(&out, reply.data() + sizeof(abi::OutHeader), sizeof(out));
    out.flags &= ~abi::kWritebackCache;  // it would silently turn passthrough off
    if (conn.kernel_offers_passthrough || conn.kernel_offers_allow_mmap) {
      out.flags |= abi::kInitExt;
    }
    if (conn.kernel_offers_passthrough) {
      out.flags2 |= abi::kFlags2Passthrough;
      out.max_stack_depth = 1;  // backing files live on tmpfs (depth 0)
    }
    if (conn.kernel_offers_allow_mmap) {
      out.flags2 |= abi::kFlags2DirectIoAllowMmap;
      conn.allow_mmap = true;
    }
    std::memcpy(reply.data() + sizeof(abi::OutHeader), &out, sizeof(out));
  }
  ssize_t n = write(fd, reply.data(), reply.size());
  int err = errno;
  io_state.init_done = true;
  // The kernel processed the reply inside write(): passthrough is decided.
  if (n >= 0 && header.error == 0 && !io_state.fs->AfterInit(fd)) {
    fuse_session_exit(io_state.fs->session());
  }
  if (n >= 0 && header.error == 0 && !io_state.fs->fatal())
    NotifyReady(io_state.fs->table().size());
  errno = err;
  return n;
}

const fuse_custom_io kCustomIo = {
    .writev = IoWritev,
    .read = IoRead,
    .splice_receive = nullptr,
    .splice_send = nullptr,
};

// ---- shutdown ------------------------------------------------------------------

std::string BusyDisks(DiskTable& table) {
  std::vector<std::string> busy;
  for (const auto& disk : table.List()) {
    if (disk->opens() > 0)
      busy.push_back(absl::StrCat(disk->name(), " (", disk->opens(), " open)"));
  }
  return busy.empty() ? "none known to the daemon" : absl::StrJoin(busy, ", ");
}

// Unmounts `mountpoint`. Returns 0, or the errno of the refusal.
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

int RunSession(const Config& config, Filesystem& fs) {
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
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  fuse_args fargs = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());
  // libfuse copies argv into its own allocation when it adds an argument.
  absl::Cleanup free_args = [&fargs] { fuse_opt_free_args(&fargs); };

  fuse_session* se = fuse_session_new(&fargs, Filesystem::Ops(), sizeof(fuse_lowlevel_ops), &fs);
  if (se == nullptr) {
    Log("cannot start a FUSE session (bad -o option?)");
    return 1;
  }
  fs.set_session(se);
  io_state.fs = &fs;
  if (fuse_session_mount(se, config.mountpoint.c_str()) != 0) {
    Log("cannot mount on ", config.mountpoint);
    fuse_session_destroy(se);
    return 32;
  }
  // Same fd, read and written through our io from now on (the INIT request
  // has not been read yet: the loop reads it).
  if (fuse_session_custom_io(se, &kCustomIo, fuse_session_fd(se)) != 0) {
    Log("cannot install the custom io");
    fuse_session_unmount(se);
    fuse_session_destroy(se);
    return 32;
  }
  if (fuse_daemonize(config.foreground ? 1 : 0) != 0) {
    fuse_session_unmount(se);
    fuse_session_destroy(se);
    return 32;
  }
  if (!config.foreground) LogDetached();

    // Reclaim must not recurse into us while we serve a loop device's I/O
    // (SPEC 6): brd's GFP_NOIO, as a task flag. Worker threads inherit it.
#ifndef PR_SET_IO_FLUSHER
#define PR_SET_IO_FLUSHER 57
#endif
  if (prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0) != 0) {
    Log("PR_SET_IO_FLUSHER failed (", strerror(errno),
        "): loop devices over this mount may deadlock under memory pressure");
  }

  // Signals go to the signal thread only: block them before any thread starts.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);
  std::atomic<bool> stop{false};
  std::thread signals(SignalThread, config.mountpoint, &fs, set, &stop);

  Log("mounted on ", config.mountpoint, " with ", fs.table().size(), " disk(s)");
  int loop_status;
  if (config.single_threaded) {
    loop_status = fuse_session_loop(se);
  } else {
    fuse_loop_config* loop_config = fuse_loop_cfg_create();
    fuse_loop_cfg_set_clone_fd(loop_config, 1);
    fuse_loop_cfg_set_max_threads(loop_config, static_cast<unsigned>(config.max_threads));
    loop_status = fuse_session_loop_mt(se, loop_config);
    fuse_loop_cfg_destroy(loop_config);
  }
  NotifyStopping();
  stop = true;
  signals.join();
  fuse_session_unmount(se);
  fuse_session_destroy(se);
  if (fs.fatal()) return 32;
  if (loop_status < 0 && loop_status != -ENODEV) {
    Log("request loop ended with ", strerror(-loop_status));
  }
  Log("unmounted ", config.mountpoint);
  return 0;
}

}  // namespace ramdiskfs
