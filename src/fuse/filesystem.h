// The FUSE adapter's root object: what one mount's request handlers share.
// It owns the control plane (ramdiskfs/control_plane.h) and implements the
// control plane's KernelNotifier with libfuse's notifications; it owns the
// passthrough state (passthrough.h) and the custom io's state (custom_io.h).
//
// The adapter's files, by concern (docs/design.md has the map):
//   ops.cc          the op handlers and the op table: translate, call the
//                   core, reply — nothing else
//   inodes.{h,cc}   inode numbers, lookup, readdir (one table, derived)
//   passthrough.*   INIT flags, backing ids, open replies, end-of-disk trim
//   custom_io.*     the transport: INIT patch and spliced replies
//   session.*       mount, request loop, signals, unmount
//   kernel_abi.h    the parts of the FUSE ABI libfuse 3.14 lacks

#ifndef RAMDISKFS_FUSE_FILESYSTEM_H_
#define RAMDISKFS_FUSE_FILESYSTEM_H_

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
#include <sys/types.h>
#include <time.h>

#include <atomic>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "ramdiskfs/control_plane.h"
#include "ramdiskfs/crash_point.h"
#include "ramdiskfs/disk_table.h"
#include "ramdiskfs/survive_state.h"
#include "ramdiskfs/timer_queue.h"
#include "ramdiskfs/types.h"
#include "src/fuse/custom_io.h"
#include "src/fuse/passthrough.h"

namespace ramdiskfs {

struct FilesystemOptions {
  uid_t uid = 0;  // owner of new disks and of the control tree
  gid_t gid = 0;
  DataMode default_mode = DataMode::kDax;
  bool dax_required = false;  // dax was asked for explicitly: no fallback
  bool readonly = false;      // -o ro: disks read-only; none made through the tree
};

// A supervised worker's facts (supervisor.h), for the stats file.
struct SurviveFacts {
  bool supervised = false;
  uint64_t restarts = 0;       // workers started after the first
  int64_t last_stall_ms = -1;  // worker death to resend by its successor; -1: none yet
};

class Filesystem final : public KernelNotifier {
 public:
  // `opens`: the table of kernel file handles (survive_state.h); a
  // supervised worker passes the one it inherited, else a new one is made.
  Filesystem(DiskTable* table, FilesystemOptions options,
             std::unique_ptr<OpenTable> opens = nullptr);
  ~Filesystem() override;

  // The low-level operations table (ops.cc); userdata must be this Filesystem.
  static const fuse_lowlevel_ops* Ops();

  void set_session(fuse_session* session) { session_ = session; }
  fuse_session* session() const { return session_; }
  DiskTable& table() { return *table_; }
  ControlPlane& control() { return control_; }
  Passthrough& passthrough() { return passthrough_; }
  CustomIoState& io_state() { return io_state_; }
  const FilesystemOptions& options() const { return options_; }
  // When the daemon started: the times of directories and control files.
  struct timespec start_time() const {
    return start_time_;
  }
  // Dax was required and INIT found it unavailable: exit 2.
  bool fatal() const { return passthrough_.fatal(); }
  // Late replies of fault injection (latency, throttle): one thread for
  // every disk. The session calls timers().RunAllNow() when its loop ends,
  // before the session is destroyed.
  TimerQueue& timers() { return timers_; }

  // Kernel file handles: fh is a slot of opens() (so that a restarted
  // worker understands it); open_files() holds ops.cc's per-open object of
  // each slot (an OpenFile, opaque here).
  OpenTable& opens() { return *opens_; }
  std::atomic<void*>* open_files() { return open_files_.get(); }
  // A restarted worker: rebuilds the per-open objects of every handle the
  // kernel holds and counts them on their disks (ops.cc).
  void RestoreOpenFiles();

  SurviveFacts& survive() { return survive_; }
  // A supervised worker's log of non-idempotent requests' outcomes
  // (survive_state.h); nullptr unsupervised.
  ReplyLog* replies() { return replies_.get(); }
  void set_replies(std::unique_ptr<ReplyLog> replies) { replies_ = std::move(replies); }
  // Test hook (docs/survive.md): the first supervised worker aborts at the
  // named point (RAMDISKFS_CRASH_POINT), so tests can kill it exactly there.
  void set_crash_point(std::string point) { SetCrashPoint(std::move(point)); }
  void MaybeCrash(std::string_view point) const { CrashPoint(point); }
  // A supervised worker publishes the table's state to its supervisor from
  // here (set by the session); called after a change the kernel will see
  // (create, delete, mode, read-only, attributes, a new backing id).
  void set_state_publisher(std::function<void()> publish) { publish_ = std::move(publish); }
  void PublishState() {
    if (publish_) publish_();
  }

  // KernelNotifier. The notifications are sent without any lock held; an
  // -ENOENT answer just means the kernel holds nothing to drop.
  void InvalidateDisk(const Disk& disk, bool data) override;
  void InvalidateEntry(EntryDir dir, std::string_view name) override;
  void ReleaseBackingId(Disk& disk) override;
  ConnectionFacts Facts() const override;

 private:
  DiskTable* const table_;
  const FilesystemOptions options_;
  fuse_session* session_ = nullptr;
  Passthrough passthrough_;
  CustomIoState io_state_;
  ControlPlane control_;
  struct timespec start_time_;
  TimerQueue timers_;
  std::unique_ptr<OpenTable> opens_;
  std::unique_ptr<std::atomic<void*>[]> open_files_;
  SurviveFacts survive_;
  std::function<void()> publish_;
  std::unique_ptr<ReplyLog> replies_;
};

}  // namespace ramdiskfs

#endif  // RAMDISKFS_FUSE_FILESYSTEM_H_
