// What a restarted worker needs to rebuild the disk table and the kernel's
// open files (SPEC 13, docs/survive.md): the state a supervisor keeps while
// the worker that serves requests dies and is replaced.
//
// Two pieces, both free of libfuse:
//  - TableState: the disk table's description (names, ids, modes, flags,
//    attributes, backing ids, fault and cache settings, power, the next id,
//    the memory cap), encoded as text
//    and kept by the supervisor in a memfd. The pages themselves are not in
//    it: they live in the disks' backing files, whose descriptors travel
//    beside the state (one per disk, in the order of `disks`). A disk's size
//    is its backing file's size (PageStore's invariant), so it is not stored.
//  - OpenTable: one record per open file handle the kernel holds, in a
//    shared memfd mapping that the worker writes as it serves OPEN and
//    RELEASE and that outlives it. A file handle (fuse_file_info::fh) is a
//    slot number in it, so a new worker understands every handle the kernel
//    sends.
//
// Not carried across a restart (documented in docs/survive.md): unflushed
// write-cache contents (they become durable), the fault PRNG's position and
// token buckets, I/O counters.

#ifndef RAMDISKFS_SURVIVE_STATE_H_
#define RAMDISKFS_SURVIVE_STATE_H_

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "ramdiskfs/disk_table.h"
#include "ramdiskfs/types.h"

namespace ramdiskfs {

struct DiskState {
  uint64_t id = 0;
  std::string name;
  DataMode requested_mode = DataMode::kDirect;
  bool readonly = false;
  bool growing = false;
  mode_t permissions = 0600;
  uid_t uid = 0;
  gid_t gid = 0;
  int64_t mtime_ns = 0;  // since the Unix epoch
  int64_t ctime_ns = 0;
  int backing_id = 0;  // passthrough backing id on the connection; 0: none
  // Fault and cache settings, power, the armed cut, the last cut's log.
  DiskSettings settings;
  bool operator==(const DiskState&) const = default;
};

struct TableState {
  uint64_t next_id = 1;
  uint64_t max_memory_bytes = 0;
  std::vector<DiskState> disks;  // ordered by name
  bool operator==(const TableState&) const = default;
};

// Text (version 2): "ramdiskfs-state 2", a table line, one `disk` line per
// disk (names cannot hold spaces: ValidateDiskName) followed by one
// `set KEY VALUE` line per setting that differs from a new disk's (VALUE
// C-escaped: fault:FILE carries that fault file's text as a write takes
// it, cache/cache_size/powercut_*/power their control files' values,
// flakey_epoch the flakey cycle's start), and "end".
std::string EncodeTableState(const TableState& state);
// Reads versions 1 (no settings) and 2. Errors: InvalidArgument naming the
// bad line: a truncated or foreign memfd, an unknown setting, a version
// this binary does not know (a newer one wrote it), a bad value.
absl::StatusOr<TableState> DecodeTableState(std::string_view text);

// The table as it is now. `fds` (optional) receives each disk's backing
// file descriptor (borrowed: the disks own them), parallel to `disks`.
TableState CaptureTableState(const DiskTable& table, std::vector<int>* fds = nullptr);

// Fills an empty `table` from `state`, each disk adopting `fds[i]` (the
// table takes ownership of every fd, also on error). Errors: InvalidArgument
// if the counts differ; those of DiskTable::Adopt.
absl::Status RestoreTable(const TableState& state, std::vector<int> fds, DiskTable* table);

// ---- the supervisor's control socket -------------------------------------------
// A supervisor listens on an abstract unix socket (SOCK_SEQPACKET) named
// after its mount point, for `ramdiskctl upgrade` and `ramdiskctl save`
// (docs/survive.md). It answers only root and its own user (SO_PEERCRED).
// The name without its leading NUL: "ramdiskfs-supervisor:" + the mount
// point, or, when that does not fit in sun_path, "ramdiskfs-supervisor#" +
// a 64-bit FNV-1a of the mount point in hex. `mountpoint` is absolute.
std::string SupervisorSocketName(std::string_view mountpoint);

// ---- open file handles --------------------------------------------------------

struct OpenInfo {
  enum Kind : uint32_t { kDisk = 1, kControl = 2 };
  Kind kind = kDisk;
  uint64_t disk_id = 0;       // 0: a global control file
  uint32_t control_file = 0;  // ControlFile index, for kControl
  bool for_write = false;
  bool passthrough = false;
  bool bypass_writer = false;
  uint64_t overflow_seen = 0;
  // The OPEN or CREATE request's unique (without FUSE_UNIQUE_RESEND), and
  // whether its reply may not have reached the kernel yet (see Add).
  uint64_t unique = 0;
  bool pending = false;
  bool operator==(const OpenInfo&) const = default;
};

// A fixed-size table of OpenInfo records in a memfd shared by the worker
// and the supervisor. Handles are slot + 1 (never 0). Thread-safe: Add
// claims a slot with one atomic compare-and-swap; the record is written
// before the slot is marked live, so a reader after a crash sees either a
// free slot or a whole record.
class OpenTable {
 public:
  // Open handles a daemon can hold at once: 64Ki slots of 32 bytes, a 2 MiB
  // sparse memfd (only the pages of slots used take memory).
  static constexpr size_t kDefaultCapacity = 1 << 16;

  // A new memfd with room for `capacity` handles. Errors: memfd_create,
  // ftruncate, mmap.
  static absl::StatusOr<std::unique_ptr<OpenTable>> Create(size_t capacity);
  // Maps an existing table (`fd` is taken over). Errors: fstat, mmap,
  // InvalidArgument for a foreign file.
  static absl::StatusOr<std::unique_ptr<OpenTable>> Attach(int fd);
  ~OpenTable();
  OpenTable(const OpenTable&) = delete;
  OpenTable& operator=(const OpenTable&) = delete;

  int fd() const { return fd_; }
  size_t capacity() const { return capacity_; }

  // Records an open, pending: the worker confirms it once the kernel has
  // taken the reply (write() to /dev/fuse returned). A worker that dies in
  // between leaves it pending, and the next one cannot tell whether the
  // kernel holds the handle: it counts the open as held, and if the kernel
  // resends the OPEN (it never got the reply), FindPending(unique) gives the
  // handle to answer with, so the open is never counted twice. Errors:
  // ENFILE when every slot is taken.
  absl::StatusOr<uint64_t> Add(const OpenInfo& info);
  void Confirm(uint64_t handle);
  // The pending handle recorded for request `unique`, or 0.
  uint64_t FindPending(uint64_t unique) const;
  // Forgets a handle. No-op for a handle not live.
  void Remove(uint64_t handle);
  // nullopt for a handle neither live nor pending (or out of range).
  std::optional<OpenInfo> Get(uint64_t handle) const;
  void SetOverflowSeen(uint64_t handle, uint64_t seen);
  // Every live or pending handle with its record, in slot order.
  std::vector<std::pair<uint64_t, OpenInfo>> Live() const;

 private:
  struct Record;
  OpenTable(int fd, Record* records, size_t capacity);
  int fd_;
  Record* records_;
  size_t capacity_;
  std::atomic<size_t> hint_{0};
};

// The outcome of recent non-idempotent requests (making or deleting a disk,
// a control-file write), in a shared memfd like OpenTable's: a worker
// records the errno after doing the work and before replying, so that its
// successor answers a resent request (FUSE_UNIQUE_RESEND) from here instead
// of doing it again (which would fail with EEXIST or ENOENT, or switch a
// mode back). A ring of kCapacity entries: the kernel resends only what was
// in flight, far fewer. Thread-safe.
class ReplyLog {
 public:
  static constexpr size_t kCapacity = 4096;
  // Errors: memfd_create, ftruncate, mmap.
  static absl::StatusOr<std::unique_ptr<ReplyLog>> Create();
  // Maps an existing log (`fd` is taken over). Errors: as OpenTable::Attach.
  static absl::StatusOr<std::unique_ptr<ReplyLog>> Attach(int fd);
  ~ReplyLog();
  ReplyLog(const ReplyLog&) = delete;
  ReplyLog& operator=(const ReplyLog&) = delete;

  int fd() const { return fd_; }
  // `unique` without FUSE_UNIQUE_RESEND; `err` 0 for success.
  void Record(uint64_t unique, int err);
  // The errno recorded for `unique`, or nullopt.
  std::optional<int> Find(uint64_t unique) const;

 private:
  struct Entry;
  ReplyLog(int fd, Entry* entries);
  int fd_;
  Entry* entries_;
  std::atomic<uint64_t> next_{0};
};

}  // namespace ramdiskfs

#endif  // RAMDISKFS_SURVIVE_STATE_H_
