// The control plane: every operation that changes which disks exist or how
// they are configured, whatever path it comes by — a write to a control file
// (docs/control.md), create/rm/truncate on the mount, or BLKFLSBUF — and the
// one rule for "in use".
//
// What it owns:
//   - the parsing-to-effect step of every control file (control.h parses),
//     and what a control file reads (its content at open);
//   - the in-use rule: which opens count (every open of the disk but the
//     caller's own), and the wait for RELEASEs already in flight (close()
//     returns before the kernel's RELEASE is served; see SettleOpens);
//   - what the kernel must forget after a change (through KernelNotifier);
//   - one log line per refused request, and one per change made.
//
// What it does not own: the I/O path (Disk's Read/Write/..., disk.h) and the
// FUSE wire format (src/fuse/). It never includes libfuse; the adapter
// implements KernelNotifier, and unit tests use a fake
// (test/control_plane_test.cc).
//
// Errors are absl::Status with the errno the caller sends (StatusToErrno).
// A refused request changes nothing. Thread-safe: it holds no state of its
// own beyond its options; DiskTable and Disk are thread-safe.

#ifndef RAMDISKFS_CONTROL_PLANE_H_
#define RAMDISKFS_CONTROL_PLANE_H_

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "ramdiskfs/control_files.h"
#include "ramdiskfs/disk.h"
#include "ramdiskfs/disk_table.h"
#include "ramdiskfs/faults.h"
#include "ramdiskfs/types.h"

namespace ramdiskfs {

// The directories whose entries name disks.
enum class EntryDir {
  kRoot,        // MOUNT/NAME: the disk file
  kControlDir,  // MOUNT/.control/NAME: the disk's control directory
};

// What the FUSE connection negotiated (filled in by the adapter at INIT).
struct ConnectionFacts {
  bool initialized = false;  // INIT has been answered
  bool passthrough = false;  // FUSE passthrough works (dax is possible)
  bool allow_mmap = false;   // FUSE_DIRECT_IO_ALLOW_MMAP was negotiated
  // How requests travel: "uring" (FUSE over io_uring) or "dev" (/dev/fuse).
  std::string_view transport = "dev";
  // --supervise (SPEC 13): workers started after the first, and the last
  // restart's stall (worker death to its successor's resend; -1: none yet).
  uint64_t restarts = 0;
  int64_t last_stall_ms = -1;
};

// How the control plane talks to the kernel. Implemented by the FUSE
// adapter (src/fuse/filesystem.cc); every method is best effort and must not
// block on a request the caller is serving (the kernel may hold locks while
// it waits for the reply).
class KernelNotifier {
 public:
  virtual ~KernelNotifier() = default;
  // Drops the kernel's cached attributes of the disk file, and its cached
  // pages too if `data`.
  virtual void InvalidateDisk(const Disk& disk, bool data) = 0;
  // Drops the kernel's directory entry `name` in `dir`.
  virtual void InvalidateEntry(EntryDir dir, std::string_view name) = 0;
  // Unregisters the disk's passthrough backing file, if it has one. Called
  // once the disk is out of the table and has no opens.
  virtual void ReleaseBackingId(Disk& disk) = 0;
  virtual ConnectionFacts Facts() const = 0;
};

// The fault-injection setting a control file is (faults.h), if it is one.
std::optional<FaultFile> FaultFileOf(ControlFile file);

struct ControlPlaneOptions {
  uid_t uid = 0;  // the mounting user: owner of `new` disks, may BLKFLSBUF
  gid_t gid = 0;
  DataMode default_mode = DataMode::kDax;  // of `new` and created disks
  bool readonly = false;  // -o ro: `new` disks are read-only; none made through the tree
};

// Who makes a request that acts on one disk: the in-use rule does not count
// the caller's own open (ftruncate and BLKFLSBUF come through an open fd).
struct Caller {
  uid_t uid = 0;
  bool holds_open = false;  // the request comes through an open of this disk
};

class ControlPlane {
 public:
  // `table` and `kernel` must outlive the control plane.
  ControlPlane(DiskTable* table, KernelNotifier* kernel, ControlPlaneOptions options);
  ControlPlane(const ControlPlane&) = delete;
  ControlPlane& operator=(const ControlPlane&) = delete;

  DiskTable& table() { return *table_; }
  const ControlPlaneOptions& options() const { return options_; }

  // --- control files -----------------------------------------------------------
  // What a read of `file` returns (made at open, like sysfs). `disk` is the
  // disk of a per-disk file, null for a global one.
  std::string Content(ControlFile file, const Disk* disk) const;
  // One write(2) of `text` at `offset` to `file`. Errors: EINVAL at an
  // offset other than 0 or above kMaxControlWrite bytes (kMaxFaultWrite for
  // the fault files, whose lists may be long); ENOENT if `disk`
  // was deleted; EBADF for a read-only file; then the operation's own.
  absl::Status Write(ControlFile file, const std::shared_ptr<Disk>& disk, uint64_t offset,
                     std::string_view text);

  // --- the tree ------------------------------------------------------------------
  // create/mknod NAME in the directory `in_root` says. Only regular files in
  // the root: EPERM otherwise; EROFS on a read-only mount. The disk is empty
  // (size 0) and growing — it takes the size of what is written until its
  // last open closes (a copy into a new name makes a disk of the copy's
  // size) — 0600 whatever the umask, owned by `owner_uid`/`owner_gid`, in
  // the default mode.
  absl::StatusOr<std::shared_ptr<Disk>> CreateFile(std::string_view what, bool in_root,
                                                   std::string_view name, mode_t type,
                                                   uid_t owner_uid, gid_t owner_gid);
  // rm NAME: EPERM outside the root; as Delete otherwise. The kernel drops
  // the root entry of an unlink itself (it holds the root's lock while it
  // waits for the reply, so invalidating it from here would deadlock).
  absl::Status Unlink(bool in_root, std::string_view name);
  // truncate/ftruncate: as the `size` file (growing always; shrinking only
  // when no one but the caller has the disk open).
  absl::Status Truncate(Disk& disk, uint64_t new_size, const Caller& caller);
  // BLKFLSBUF: root or the mounting user only (EACCES); as the `flush` file.
  absl::Status FlushBuffers(Disk& disk, const Caller& caller);

  // --- the life of an open (the adapter calls these at FLUSH and RELEASE) ------
  // A close(2) of an open of `disk`: a growing disk takes its page-rounded
  // size (Disk::OnClose), and the kernel drops the attributes it cached.
  void Closed(Disk& disk);
  // The end of an open (Disk::Release). When that was a growing disk's last
  // open, its size is now fixed, and the kernel drops the cached attributes.
  void Released(Disk& disk, bool for_write, bool bypass_writer);

  // --- the in-use rule ---------------------------------------------------------------
  // Opens of `disk` other than the caller's own.
  static int OtherOpens(const Disk& disk, const Caller& caller);
  // OtherOpens after giving RELEASEs already on their way up to kSettle to
  // arrive: close() returns before the kernel's RELEASE has been served
  // (FUSE sends it in the background), so a request that needs the disk
  // closed, issued right after close(), would otherwise see the open still
  // counted. Returns the opens left. Only requests that would be refused
  // wait; a disk nobody has open answers at once.
  static int SettleOpens(const Disk& disk, const Caller& caller);
  static constexpr absl::Duration kSettle = absl::Milliseconds(250);

  // Keys of the global stats file, in order (docs/control.md).
  static std::vector<std::string_view> GlobalStatsKeys();
  std::vector<std::pair<std::string, std::string>> GlobalStatsRows() const;

 private:
  // Logs "what: strerror: message" (the one line of a refusal) and returns
  // `status`; OK passes through silently.
  static absl::Status Logged(std::string_view what, absl::Status status);
  absl::Status Apply(ControlFile file, const std::shared_ptr<Disk>& disk, std::string_view text);
  // The operations. Each logs one line when it changes something; the
  // public entry points above log the refusals.
  absl::Status NewDisk(std::string_view text);
  absl::Status DeleteDisk(std::string_view name, bool by_unlink);
  absl::Status SetMaxMemory(std::string_view text);
  absl::Status Resize(Disk& disk, uint64_t new_size, const Caller& caller);
  absl::Status Flush(Disk& disk, const Caller& caller);
  absl::Status Discard(Disk& disk, std::string_view text);
  absl::Status SetReadonly(Disk& disk, std::string_view text);
  absl::Status SetMode(Disk& disk, std::string_view text);
  // The write cache and power files (SPEC 11; docs/crashtest.md).
  absl::Status SetCache(Disk& disk, std::string_view text);
  absl::Status SetCacheSize(Disk& disk, std::string_view text);
  absl::Status SetPowercutAtFlush(Disk& disk, std::string_view text);
  absl::Status SetPower(Disk& disk, std::string_view text);
  absl::Status SetFault(Disk& disk, FaultFile file, std::string_view text);

  DiskTable* const table_;
  KernelNotifier* const kernel_;
  const ControlPlaneOptions options_;
};

}  // namespace ramdiskfs

#endif  // RAMDISKFS_CONTROL_PLANE_H_
