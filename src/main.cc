// The composition root: options -> memory pool -> disks -> FUSE session.

#include <fcntl.h>
#include <linux/capability.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <climits>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "ramdiskfs/disk_table.h"
#include "ramdiskfs/log.h"
#include "ramdiskfs/memory_pool.h"
#include "ramdiskfs/options.h"
#include "ramdiskfs/size.h"
#include "ramdiskfs/status.h"
#include "src/fuse/filesystem.h"
#include "src/fuse/notify.h"
#include "src/fuse/session.h"
#include "src/fuse/supervisor.h"

namespace ramdiskfs {
namespace {

// Exit statuses as mount(8) documents them for itself and its helpers:
// 1 incorrect invocation (a bad option), 32 mount failure.
constexpr int kExitUsage = 1;
constexpr int kExitMountFailure = 32;

// The ramdiskfs mounted on `mountpoint` (absolute, resolved) right now (its
// source), if any: a second daemon on the same directory would stack a mount
// over a live one.
std::optional<std::string> LiveRamdiskfsSource(const std::string& mountpoint) {
  FILE* f = fopen("/proc/self/mountinfo", "re");
  if (f == nullptr) return std::nullopt;
  std::optional<std::string> source;
  char* line = nullptr;
  size_t cap = 0;
  while (getline(&line, &cap, f) > 0) {
    // id parent major:minor root mountpoint opts... - fstype source superopts
    std::vector<std::string> fields = absl::StrSplit(absl::StripAsciiWhitespace(line), ' ');
    auto dash = std::find(fields.begin(), fields.end(), "-");
    if (fields.size() < 5 || dash == fields.end() || fields.end() - dash < 3) continue;
    if (fields[4] == mountpoint && *(dash + 1) == "fuse.ramdiskfs") source = *(dash + 2);
  }
  free(line);
  fclose(f);
  return source;
}

bool HasCapSysAdmin() {
  __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  if (syscall(SYS_capget, &header, data) != 0) return false;
  return data[CAP_SYS_ADMIN / 32].effective & (1u << (CAP_SYS_ADMIN % 32));
}

// Linux 6.9 brought FUSE passthrough.
bool KernelHasPassthrough() {
  struct utsname u;
  if (uname(&u) != 0) return false;
  int major = 0, minor = 0;
  if (sscanf(u.release, "%d.%d", &major, &minor) != 2) return false;
  return major > 6 || (major == 6 && minor >= 9);
}

// Why dax cannot work here before even mounting, or "" if it may.
std::string DaxPrecheck(const MemoryPool& pool) {
  if (!KernelHasPassthrough()) return "the kernel is older than 6.9 (no FUSE passthrough)";
  if (!HasCapSysAdmin()) return "FUSE passthrough needs CAP_SYS_ADMIN (run as root)";
  if (pool.kind() != StoreKind::kTmpfs) {
    return "the memfd store cannot enforce the memory cap on passthrough writes";
  }
  return "";
}

// Copies the data ranges of `path` (SEEK_DATA/SEEK_HOLE) into `disk`.
absl::Status LoadImage(const std::string& path, Disk& disk) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, absl::StrCat("open image '", path, "'"));
  absl::Cleanup close_fd = [fd] { close(fd); };
  struct stat st;
  if (fstat(fd, &st) != 0) return ErrnoStatus(errno, "fstat image");
  if (static_cast<uint64_t>(st.st_size) > disk.size_bytes()) {
    return absl::InvalidArgumentError(absl::StrCat("image '", path, "' (", st.st_size,
                                                   " bytes) is larger than disk ", disk.name(),
                                                   " (", disk.size_bytes(), " bytes)"));
  }
  std::vector<char> buf(1 << 20);
  off_t pos = 0;
  while (pos < st.st_size) {
    off_t data = lseek(fd, pos, SEEK_DATA);
    if (data < 0) break;  // ENXIO: only a hole remains
    off_t hole = lseek(fd, data, SEEK_HOLE);
    if (hole < 0) hole = st.st_size;
    for (off_t off = data; off < hole;) {
      size_t want = static_cast<size_t>(std::min<off_t>(hole - off, buf.size()));
      ssize_t n = pread(fd, buf.data(), want, off);
      if (n < 0) return ErrnoStatus(errno, "read image");
      if (n == 0) break;
      RDFS_ASSIGN_OR_RETURN(size_t written, disk.store().Write(off, buf.data(), n));
      if (written != static_cast<size_t>(n)) return ErrnoStatus(ENOSPC, "image does not fit");
      off += n;
    }
    pos = hole;
  }
  return absl::OkStatus();
}

// The filesystem's options, the same in a daemon, a supervisor's first
// worker and every worker after it.
FilesystemOptions MakeFilesystemOptions(const Config& config, bool dax_required) {
  FilesystemOptions fs_options;
  fs_options.uid = getuid();
  fs_options.gid = getgid();
  fs_options.default_mode = config.default_mode.value_or(DataMode::kDax);
  fs_options.dax_required = dax_required;
  fs_options.readonly = config.readonly;
  return fs_options;
}

bool DaxRequired(const Config& config) {
  bool dax_required = config.default_mode == DataMode::kDax;
  for (const DiskSpec& spec : config.disks) dax_required |= spec.mode == DataMode::kDax;
  return dax_required;
}

// A supervised worker (src/fuse/supervisor.h): everything it serves comes
// from the supervisor; nothing is made from the command line but options.
int64_t MonotonicNowMs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000 + ts.tv_nsec / 1'000'000;
}

int WorkerMain(Config config, int socket_fd) {
  const int64_t started_ms = MonotonicNowMs();  // after exec and the dynamic loader
  unsetenv(kWorkerFdEnv);
  if (const char* mp = getenv("RAMDISKFS_MOUNTPOINT")) config.mountpoint = mp;
  InitLog(/*will_detach=*/!config.foreground);
  if (!config.foreground) LogDetached();
  absl::StatusOr<WorkerHandoff> handoff = ReceiveHandoff(socket_fd);
  if (!handoff.ok()) {
    Log("worker: ", handoff.status().ToString());
    return kExitMountFailure;
  }
  WorkerHandoff& h = *handoff;
  std::unique_ptr<MemoryPool> pool =
      MemoryPool::Adopt(h.store_kind, h.pool_fd, h.state.max_memory_bytes);
  const std::string dax_problem = DaxPrecheck(*pool);
  const bool dax_required = DaxRequired(config);
  DiskTable table(pool.get());
  table.SetDaxFallback(dax_problem.empty() ? "not_connected" : "precheck");
  if (absl::Status restored = RestoreTable(h.state, std::move(h.store_fds), &table);
      !restored.ok()) {
    Log("worker: restoring the disk table: ", restored.ToString());  // serve what came back
  }
  absl::StatusOr<std::unique_ptr<OpenTable>> opens = OpenTable::Attach(h.open_table_fd);
  if (!opens.ok()) {
    Log("worker: ", opens.status().ToString());
    return kExitMountFailure;
  }
  Filesystem fs(&table, MakeFilesystemOptions(config, dax_required), *std::move(opens));
  fs.RestoreOpenFiles();
  absl::StatusOr<std::unique_ptr<ReplyLog>> replies = ReplyLog::Attach(h.reply_log_fd);
  if (!replies.ok()) {
    Log("worker: ", replies.status().ToString());
    return kExitMountFailure;
  }
  fs.set_replies(*std::move(replies));
  SupervisorLink link(h.socket_fd);
  table.SetChangeObserver([&link, &table] { link.PublishState(table); });
  fs.set_state_publisher([&link, &table] { link.PublishState(table); });
  fs.survive().supervised = true;
  SetNotifyPid(getppid());  // READY=1 and STOPPING=1 come from the main process
  if (const char* point = getenv("RAMDISKFS_CRASH_POINT"); point && h.restarts == 0) {
    fs.set_crash_point(point);
  }
  fs.survive().restarts = h.restarts;
  CustomIoState& io = fs.io_state();
  if (h.init_request.empty()) {
    io.on_init_request = [&link](std::string_view init) { link.SendInit(init); };
  } else {
    io.replay_init = h.init_request;
    io.replay_pending = true;
    io.replaying = true;
    const int64_t died_at = h.died_at_ns;
    const int64_t restored_ms = MonotonicNowMs();
    io.after_replayed_init = [&fs, &link, died_at, started_ms, restored_ms](int device_fd) {
      // Every request the dead worker read and did not answer goes back on
      // the kernel's pending list, its unique with FUSE_UNIQUE_RESEND.
      const bool ok = NotifyResend(device_fd);
      const int err = errno;
      struct timespec ts;
      clock_gettime(CLOCK_MONOTONIC, &ts);
      const int64_t now = int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
      fs.survive().last_stall_ms = died_at > 0 ? (now - died_at) / 1'000'000 : -1;
      Log("worker ", getpid(), " took over (restart ", fs.survive().restarts, "): ",
          ok ? "in-flight requests resent"
             : absl::StrCat("FUSE_NOTIFY_RESEND failed: ", strerror(err)),
          "; ", fs.survive().last_stall_ms,
          " ms since the previous worker died (to exec'd: ", started_ms - died_at / 1'000'000,
          " ms, handoff and restore: ", restored_ms - started_ms,
          " ms, session and INIT replay: ", MonotonicNowMs() - restored_ms, " ms)");
      link.SendServing(fs.survive().last_stall_ms);
    };
  }
  link.PublishState(table);  // the supervisor's copy now matches what this worker serves
  return RunSession(config, fs, h.device_fd);
}

int Main(int argc, char** argv) {
  std::vector<std::string> args(argv, argv + argc);
  struct sysinfo si;
  const uint64_t ram_bytes =
      sysinfo(&si) == 0 ? static_cast<uint64_t>(si.totalram) * si.mem_unit : 0;
  absl::StatusOr<Config> parsed = ParseCommandLine(args, ram_bytes);
  if (!parsed.ok()) {
    // One line naming the argument (README.md, "Using it"); --help has the rest.
    fprintf(stderr, "ramdiskfs: %s\n", std::string(parsed.status().message()).c_str());
    return kExitUsage;
  }
  Config config = *std::move(parsed);
  if (config.show_help) {
    fputs(UsageText("ramdiskfs").c_str(), stdout);
    return 0;
  }
  if (config.show_version) {
    printf("ramdiskfs %s\n", RAMDISKFS_VERSION);
    return 0;
  }
  if (config.supervise) {
    // A restart replays INIT and resends over /dev/fuse; io_uring queues
    // belong to the dead worker's ring (docs/survive.md).
    if (config.transport == Transport::kUring) {
      fprintf(stderr, "ramdiskfs: --supervise works with --transport dev only (for now)\n");
      return kExitUsage;
    }
    config.transport = Transport::kDev;
  }
  if (const char* worker_fd = getenv(kWorkerFdEnv)) return WorkerMain(config, atoi(worker_fd));
  struct stat mst;
  if (stat(config.mountpoint.c_str(), &mst) != 0 || !S_ISDIR(mst.st_mode)) {
    fprintf(stderr, "ramdiskfs: mountpoint '%s': %s\n", config.mountpoint.c_str(),
            errno ? strerror(errno) : "not a directory");
    return kExitMountFailure;
  }
  // Absolute from here on: a detached daemon chdir()s to /, and the signal
  // thread's unmount of a relative path would then miss the mount and leave
  // the daemon running after SIGTERM.
  char resolved[PATH_MAX];
  if (realpath(config.mountpoint.c_str(), resolved) == nullptr) {
    fprintf(stderr, "ramdiskfs: mountpoint '%s': %s\n", config.mountpoint.c_str(), strerror(errno));
    return kExitMountFailure;
  }
  config.mountpoint = resolved;
  if (std::optional<std::string> live = LiveRamdiskfsSource(config.mountpoint)) {
    fprintf(stderr,
            "ramdiskfs: %s is already a ramdiskfs mount (source %s); unmount it first "
            "(fusermount3 -u)\n",
            config.mountpoint.c_str(), live->c_str());
    return kExitMountFailure;
  }

  const uint64_t max_memory = config.max_memory_bytes.value_or(MemoryPool::DefaultMaxBytes());
  absl::StatusOr<std::unique_ptr<MemoryPool>> pool = MemoryPool::Create(config.store, max_memory);
  if (!pool.ok()) {
    const bool bad_argument = pool.status().code() == absl::StatusCode::kInvalidArgument;
    fprintf(stderr, "ramdiskfs: %s%s\n", bad_argument ? "--max-memory: " : "--store: ",
            std::string(pool.status().message()).c_str());
    return bad_argument ? kExitUsage : kExitMountFailure;
  }

  // Is dax possible, and was it asked for by name?
  const std::string dax_problem = DaxPrecheck(**pool);
  bool dax_required = config.default_mode == DataMode::kDax;
  for (const DiskSpec& spec : config.disks) dax_required |= spec.mode == DataMode::kDax;
  if (dax_required && !dax_problem.empty()) {
    fprintf(stderr, "ramdiskfs: --mode dax: %s\n", dax_problem.c_str());
    return kExitMountFailure;
  }
  const DataMode default_mode = config.default_mode.value_or(DataMode::kDax);

  DiskTable table(pool->get());
  table.SetDaxFallback(dax_problem.empty() ? "not_connected" : "precheck");
  for (const DiskSpec& spec : config.disks) {
    uint64_t size = spec.size_bytes.value_or(0);
    if (!spec.size_bytes && spec.image_path) {
      struct stat ist;
      if (stat(spec.image_path->c_str(), &ist) != 0) {
        fprintf(stderr, "ramdiskfs: --disk %s: image '%s': %s\n", spec.name.c_str(),
                spec.image_path->c_str(), strerror(errno));
        return kExitMountFailure;
      }
      size = static_cast<uint64_t>(ist.st_size);
    }
    NewDisk new_disk;
    new_disk.name = spec.name;
    new_disk.size_bytes = size;
    new_disk.mode = spec.mode.value_or(default_mode);
    // A volatile cache needs the daemon to see every I/O (SPEC 11).
    if (spec.cache.mode == CacheMode::kVolatile && !spec.mode && new_disk.mode == DataMode::kDax) {
      new_disk.mode = DataMode::kDirect;
    }
    const bool has_faults = !(spec.faults == FaultSettings());
    if (has_faults && new_disk.mode == DataMode::kDax) {
      if (spec.mode) {  // asked for by name: refuse, as the fault files do
        fprintf(stderr,
                "ramdiskfs: --disk %s: fault settings need mode=direct or mode=cached (dax I/O "
                "never reaches the daemon)\n",
                spec.name.c_str());
        return kExitUsage;
      }
      new_disk.mode = DataMode::kDirect;  // the default mode would bypass the faults
      Log("disk ", spec.name, ": fault settings given, so mode direct instead of dax");
    }
    new_disk.readonly = false;  // set after the image is in
    new_disk.attributes = {0600, getuid(), getgid(), absl::Now(), absl::Now()};
    absl::StatusOr<std::shared_ptr<Disk>> disk = table.Create(new_disk);
    if (!disk.ok()) {
      fprintf(stderr, "ramdiskfs: --disk %s: %s\n", spec.name.c_str(),
              std::string(disk.status().message()).c_str());
      return kExitMountFailure;
    }
    if (spec.image_path) {
      absl::Status loaded = LoadImage(*spec.image_path, **disk);
      if (!loaded.ok()) {
        fprintf(stderr, "ramdiskfs: --disk %s: %s\n", spec.name.c_str(),
                std::string(loaded.message()).c_str());
        return kExitMountFailure;
      }
    }
    if (absl::Status cache = (*disk)->ApplyCacheSettings(spec.cache); !cache.ok()) {
      fprintf(stderr, "ramdiskfs: --disk %s: %s\n", spec.name.c_str(),
              std::string(cache.message()).c_str());
      return kExitUsage;
    }
    if (spec.readonly || config.readonly) (void)(*disk)->SetReadonly(true);
    // After the image: loading it is not I/O that faults apply to.
    if (has_faults) {
      absl::Status configured = (*disk)->ConfigureFaults(spec.faults);
      if (!configured.ok()) {
        fprintf(stderr, "ramdiskfs: --disk %s: %s\n", spec.name.c_str(),
                std::string(configured.message()).c_str());
        return kExitUsage;
      }
      Log("disk ", spec.name, ": fault settings from --disk are in force");
    }
  }
  InitLog(/*will_detach=*/!config.foreground);  // past every usage error: we will mount
  if (!dax_problem.empty()) {
    Log("dax mode unavailable: ", dax_problem, "; disks use direct mode");
  }

  if (config.supervise) {
    // FUSE_NOTIFY_RESEND came with passthrough, in 6.9.
    if (!KernelHasPassthrough()) {
      Log("--supervise: this kernel is older than 6.9 and has no FUSE_NOTIFY_RESEND: a worker "
          "is still replaced, but requests in flight when it dies are never answered");
    }
    return RunSupervisor(config, table, **pool, args);
  }
  Filesystem fs(&table, MakeFilesystemOptions(config, dax_required));
  return RunSession(config, fs);
}

}  // namespace
}  // namespace ramdiskfs

int main(int argc, char** argv) { return ramdiskfs::Main(argc, argv); }
