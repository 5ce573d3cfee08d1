// The FUSE adapter: one handler per low-level op. Each handler translates
// the request, calls the core (DiskTable, Disk, control parsers), and sends
// exactly one reply. Nothing here decides policy that the core can decide.
//
// Inode numbers are computed, not allocated: 1 is the root, 2 .control, 3-6
// the global control files; a disk with id D owns D*16 (its file), D*16+1
// (its control directory) and D*16+2.. (its control files). Disk ids are
// never reused, so a stale inode number resolves to nothing (ENOENT/ESTALE).

#ifndef RAMDISKFS_FUSE_FILESYSTEM_H_
#define RAMDISKFS_FUSE_FILESYSTEM_H_

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
#include <sys/types.h>
#include <time.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <string>

#include "ramdiskfs/disk_table.h"
#include "ramdiskfs/options.h"

namespace ramdiskfs {

// What the INIT exchange and the passthrough probe found out.
struct ConnectionState {
  std::atomic<bool> kernel_offers_passthrough{false};
  std::atomic<bool> kernel_offers_allow_mmap{false};
  std::atomic<bool> passthrough{false};  // BACKING_OPEN works
  std::atomic<bool> allow_mmap{false};   // FUSE_DIRECT_IO_ALLOW_MMAP negotiated
  std::atomic<bool> initialized{false};
};

struct FilesystemOptions {
  uid_t uid = 0;  // owner of new disks and of the control tree
  gid_t gid = 0;
  DataMode default_mode = DataMode::kDax;
  bool dax_required = false;  // dax was asked for explicitly: no fallback
  bool readonly = false;      // -o ro: disks read-only; none made through the tree
};

// A read reply whose data the io layer takes straight from a disk's backing
// file: OnRead hands it to fuse_reply_iov() as the only iovec, and the custom
// io (session.cc) recognises it by address and splices the pages from the
// backing file into /dev/fuse, so the data is copied once (into the
// reader's pages) instead of twice (pread, then writev). One per thread.
struct SpliceReply {
  const PageStore* store = nullptr;
  uint64_t offset = 0;
  size_t length = 0;
};
SpliceReply* ThreadSpliceReply();

// A buffer of at least `size` bytes owned by the calling thread, reused by
// every request it serves: no allocation on the I/O path (SPEC 6).
char* ThreadBuffer(size_t size);

// Splice needs every page of a read reply in one pipe: the largest pipe an
// unprivileged process may make is fs.pipe-max-size (1 MiB = 256 pages), and
// the reply header takes one slot, so reads are capped at 255 pages with the
// max_read mount option. Writes are not spliced and keep libfuse's 1 MiB.
inline constexpr size_t kMaxReadBytes = 255 * 4096;
inline constexpr size_t kMaxWriteBytes = 256 * 4096;
// Below this, pread + writev (2 syscalls) beats vmsplice + 2 splices.
inline constexpr size_t kSpliceMinBytes = 64 * 1024;

class Filesystem {
 public:
  Filesystem(DiskTable* table, FilesystemOptions options);

  // The low-level operations table; userdata must be this Filesystem.
  static const fuse_lowlevel_ops* Ops();

  void set_session(fuse_session* session) { session_ = session; }
  fuse_session* session() const { return session_; }
  ConnectionState& connection() { return connection_; }
  DiskTable& table() { return *table_; }
  const FilesystemOptions& options() const { return options_; }
  // When the daemon started: the times of directories and control files.
  struct timespec start_time() const {
    return start_time_;
  }

  // Called right after the INIT reply went to the kernel: checks that
  // passthrough really works (BACKING_OPEN on a probe file) and sets every
  // disk's dax fallback. Returns false if dax was required and is missing.
  bool AfterInit(int device_fd);
  // Set by AfterInit when dax was required and is unavailable.
  bool fatal() const { return fatal_.load(); }
  // The kernel wakes requests waiting for INIT as soon as it has read our
  // INIT reply, before AfterInit has probed passthrough: an OPEN served in
  // that window would be answered with the fallback modes and a stats read
  // would say "not_connected". Handlers whose reply depends on the probe
  // call this first; it returns at once after AfterInit (one atomic load).
  void WaitUntilInitialized();

  // Registers the disk's backing file with the kernel once (FUSE-FACTS 1.4:
  // one backing id per inode, kept until the disk is deleted). Returns the
  // id, or 0 if passthrough is not available.
  int EnsureBackingId(Disk& disk);
  void ReleaseBackingId(Disk& disk);

  // Drops the kernel's cached attributes (and data if `data`) of a disk file.
  void InvalidateDisk(const Disk& disk, bool data);

 private:
  DiskTable* const table_;
  const FilesystemOptions options_;
  fuse_session* session_ = nullptr;
  int device_fd_ = -1;
  ConnectionState connection_;
  std::atomic<bool> fatal_{false};
  std::mutex init_mu_;
  std::condition_variable init_cv_;
  struct timespec start_time_;
};

}  // namespace ramdiskfs

#endif  // RAMDISKFS_FUSE_FILESYSTEM_H_
