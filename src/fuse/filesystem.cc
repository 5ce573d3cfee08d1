#include "src/fuse/filesystem.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "ramdiskfs/control.h"
#include "ramdiskfs/log.h"
#include "ramdiskfs/size.h"
#include "ramdiskfs/status.h"
#include "src/fuse/kernel_abi.h"

namespace ramdiskfs {
namespace {

// ---- inode numbers -----------------------------------------------------------

constexpr fuse_ino_t kRootIno = FUSE_ROOT_ID;  // 1
constexpr fuse_ino_t kControlDirIno = 2;
constexpr fuse_ino_t kDiskShift = 4;

// What an inode number names.
enum class Kind {
  kRoot,
  kControlDir,
  kGlobalNew,
  kGlobalDelete,
  kGlobalMaxMemory,
  kGlobalStats,
  kDiskFile,
  kDiskControlDir,
  kDiskSize,
  kDiskFlush,
  kDiskDiscard,
  kDiskReadonly,
  kDiskMode,
  kDiskStats,
  kInvalid,
};

struct ControlFileInfo {
  Kind kind;
  std::string_view name;
  bool readable;
  bool writable;
};

constexpr ControlFileInfo kGlobalFiles[] = {
    {Kind::kGlobalNew, "new", false, true},
    {Kind::kGlobalDelete, "delete", false, true},
    {Kind::kGlobalMaxMemory, "max_memory", true, true},
    {Kind::kGlobalStats, "stats", true, false},
};
constexpr ControlFileInfo kDiskFiles[] = {
    {Kind::kDiskSize, "size", true, true},        {Kind::kDiskFlush, "flush", false, true},
    {Kind::kDiskDiscard, "discard", false, true}, {Kind::kDiskReadonly, "readonly", true, true},
    {Kind::kDiskMode, "mode", true, true},        {Kind::kDiskStats, "stats", true, false},
};

const ControlFileInfo* FindControlFile(Kind kind) {
  for (const auto& f : kGlobalFiles) {
    if (f.kind == kind) return &f;
  }
  for (const auto& f : kDiskFiles) {
    if (f.kind == kind) return &f;
  }
  return nullptr;
}

fuse_ino_t GlobalIno(Kind kind) {
  switch (kind) {
    case Kind::kGlobalNew:
      return 3;
    case Kind::kGlobalDelete:
      return 4;
    case Kind::kGlobalMaxMemory:
      return 5;
    case Kind::kGlobalStats:
      return 6;
    default:
      return 0;
  }
}

fuse_ino_t DiskIno(uint64_t disk_id, Kind kind) {
  fuse_ino_t base = static_cast<fuse_ino_t>(disk_id) << kDiskShift;
  switch (kind) {
    case Kind::kDiskFile:
      return base;
    case Kind::kDiskControlDir:
      return base + 1;
    case Kind::kDiskSize:
      return base + 2;
    case Kind::kDiskFlush:
      return base + 3;
    case Kind::kDiskDiscard:
      return base + 4;
    case Kind::kDiskReadonly:
      return base + 5;
    case Kind::kDiskMode:
      return base + 6;
    case Kind::kDiskStats:
      return base + 7;
    default:
      return 0;
  }
}

struct Node {
  Kind kind = Kind::kInvalid;
  std::shared_ptr<Disk> disk;  // for disk kinds
};

Node Resolve(DiskTable& table, fuse_ino_t ino) {
  switch (ino) {
    case kRootIno:
      return {Kind::kRoot, nullptr};
    case kControlDirIno:
      return {Kind::kControlDir, nullptr};
    case 3:
      return {Kind::kGlobalNew, nullptr};
    case 4:
      return {Kind::kGlobalDelete, nullptr};
    case 5:
      return {Kind::kGlobalMaxMemory, nullptr};
    case 6:
      return {Kind::kGlobalStats, nullptr};
    default:
      break;
  }
  static constexpr Kind kByLowBits[] = {
      Kind::kDiskFile,    Kind::kDiskControlDir, Kind::kDiskSize, Kind::kDiskFlush,
      Kind::kDiskDiscard, Kind::kDiskReadonly,   Kind::kDiskMode, Kind::kDiskStats};
  const uint64_t low = ino & ((1u << kDiskShift) - 1);
  if (low >= std::size(kByLowBits)) return {};
  std::shared_ptr<Disk> disk = table.FindById(ino >> kDiskShift);
  if (!disk) return {};
  return {kByLowBits[low], std::move(disk)};
}

bool IsDirectory(Kind kind) {
  return kind == Kind::kRoot || kind == Kind::kControlDir || kind == Kind::kDiskControlDir;
}

// ---- per-open state ----------------------------------------------------------

struct OpenFile {
  Kind kind;
  std::shared_ptr<Disk> disk;
  bool for_write = false;
  bool passthrough = false;
  std::string content;         // control files: what a read returns (made at open)
  bool bypass_writer = false;  // Disk::AddBypassWriter was called for it
  // Disk::overflow_events() when this open last reported: a larger number
  // at fsync/close means bytes were dropped since (ENOSPC).
  uint64_t overflow_seen = 0;
};

OpenFile* FileOf(fuse_file_info* fi) { return reinterpret_cast<OpenFile*>(fi->fh); }

Filesystem* FsOf(fuse_req_t req) { return static_cast<Filesystem*>(fuse_req_userdata(req)); }

// ---- replies -------------------------------------------------------------------

// Attribute and entry lifetimes. Disks change size through control files and
// other mounts of the same disk never exist, so one second is safe; the
// control tree invalidates the kernel's copy whenever it changes a disk.
constexpr double kAttrTimeout = 1.0;
constexpr double kEntryTimeout = 1.0;

void ReplyError(fuse_req_t req, const absl::Status& status) {
  fuse_reply_err(req, StatusToErrno(status));
}

// Logs a refused control-plane request (one line) and replies with its errno.
void ReplyControlError(fuse_req_t req, std::string_view what, const absl::Status& status) {
  Log(what, ": ", strerror(StatusToErrno(status)), ": ", status.message());
  ReplyError(req, status);
}

struct stat MakeStat(Filesystem& fs, const Node& node, fuse_ino_t ino) {
  struct stat st = {};
  st.st_ino = ino;
  st.st_uid = fs.options().uid;
  st.st_gid = fs.options().gid;
  st.st_blksize = kPageSize;
  st.st_mtim = st.st_ctim = st.st_atim = fs.start_time();
  if (IsDirectory(node.kind)) {
    st.st_mode = S_IFDIR | 0755;
    st.st_nlink = 2;
    return st;
  }
  if (node.kind == Kind::kDiskFile) {
    DiskAttributes attr = node.disk->attributes();
    st.st_mode = S_IFREG | attr.permissions;
    st.st_nlink = 1;
    st.st_uid = attr.uid;
    st.st_gid = attr.gid;
    st.st_size = static_cast<off_t>(node.disk->size_bytes());
    st.st_blocks = static_cast<blkcnt_t>(node.disk->store().allocated_bytes() / 512);
    st.st_mtim = absl::ToTimespec(attr.mtime);
    st.st_ctim = absl::ToTimespec(attr.ctime);
    st.st_atim = st.st_mtim;
    return st;
  }
  const ControlFileInfo* info = FindControlFile(node.kind);
  st.st_mode = S_IFREG | (info->readable ? 0444 : 0) | (info->writable ? 0200 : 0);
  st.st_nlink = 1;
  st.st_size = 4096;  // like sysfs: the real length is known only when read
  return st;
}

void FillEntry(Filesystem& fs, const Node& node, fuse_ino_t ino, fuse_entry_param* e) {
  std::memset(e, 0, sizeof(*e));
  e->ino = ino;
  e->generation = 1;
  e->attr = MakeStat(fs, node, ino);
  e->attr_timeout = kAttrTimeout;
  e->entry_timeout = kEntryTimeout;
}

abi::Attr ToAbiAttr(const struct stat& st) {
  abi::Attr a = {};
  a.ino = st.st_ino;
  a.size = st.st_size;
  a.blocks = st.st_blocks;
  a.atime = st.st_atim.tv_sec;
  a.atimensec = st.st_atim.tv_nsec;
  a.mtime = st.st_mtim.tv_sec;
  a.mtimensec = st.st_mtim.tv_nsec;
  a.ctime = st.st_ctim.tv_sec;
  a.ctimensec = st.st_ctim.tv_nsec;
  a.mode = st.st_mode;
  a.nlink = st.st_nlink;
  a.uid = st.st_uid;
  a.gid = st.st_gid;
  a.blksize = st.st_blksize;
  return a;
}

// libfuse 3.14 cannot put a backing id into an OPEN or CREATE reply, so the
// reply is built here (struct layouts in kernel_abi.h) and sent as a buffer.
int ReplyOpen(fuse_req_t req, const fuse_entry_param* entry, uint64_t fh, uint32_t open_flags,
              int backing_id) {
  abi::OpenOut open_out = {fh, open_flags, backing_id};
  if (entry == nullptr)
    return fuse_reply_buf(req, reinterpret_cast<const char*>(&open_out), sizeof(open_out));
  struct {
    abi::EntryOut entry;
    abi::OpenOut open;
  } out = {};
  out.entry.nodeid = entry->ino;
  out.entry.generation = entry->generation;
  out.entry.entry_valid = static_cast<uint64_t>(entry->entry_timeout);
  out.entry.attr_valid = static_cast<uint64_t>(entry->attr_timeout);
  out.entry.attr = ToAbiAttr(entry->attr);
  out.open = open_out;
  static_assert(sizeof(out) == sizeof(abi::EntryOut) + sizeof(abi::OpenOut));
  return fuse_reply_buf(req, reinterpret_cast<const char*>(&out), sizeof(out));
}

// ---- control-file contents -----------------------------------------------------

bool IoFlusherSet() {
#ifndef PR_GET_IO_FLUSHER
#define PR_GET_IO_FLUSHER 58
#endif
  return prctl(PR_GET_IO_FLUSHER, 0, 0, 0, 0) == 1;
}

std::string GlobalStats(Filesystem& fs) {
  DiskTable& table = fs.table();
  MemoryPool& pool = table.pool();
  std::string fallback = table.dax_fallback();
  return RenderKeyValues({
      {"memory_used", std::to_string(pool.used_bytes())},
      {"max_memory", std::to_string(pool.max_bytes())},
      {"disks", std::to_string(table.size())},
      {"version", RAMDISKFS_VERSION},
      {"store", std::string(StoreKindName(pool.kind()))},
      {"passthrough", fs.connection().passthrough ? "1" : "0"},
      {"allow_mmap", fs.connection().allow_mmap ? "1" : "0"},
      {"dax_fallback", fallback.empty() ? "none" : fallback},
      {"io_flusher", IoFlusherSet() ? "1" : "0"},
  });
}

std::string ControlContent(Filesystem& fs, const Node& node) {
  switch (node.kind) {
    case Kind::kGlobalMaxMemory:
      return absl::StrCat(fs.table().pool().max_bytes(), "\n");
    case Kind::kGlobalStats:
      return GlobalStats(fs);
    case Kind::kDiskSize:
      return absl::StrCat(node.disk->size_bytes(), "\n");
    case Kind::kDiskReadonly:
      return node.disk->readonly() ? "1\n" : "0\n";
    case Kind::kDiskMode:
      return std::string(DataModeName(node.disk->mode())) + "\n";
    case Kind::kDiskStats:
      return RenderKeyValues(node.disk->StatsRows());
    default:
      return "";
  }
}

// Opens of the disk other than the caller's own (fi may be null).
int OtherOpens(const Disk& disk, const fuse_file_info* fi) {
  int opens = disk.opens();
  if (fi != nullptr && fi->fh != 0) {
    const OpenFile* of = reinterpret_cast<const OpenFile*>(fi->fh);
    if (of->kind == Kind::kDiskFile && of->disk.get() == &disk) --opens;
  }
  return opens;
}

// close() returns before the kernel's RELEASE for the file has been served
// (FUSE sends it in the background), so a control operation that needs the
// disk closed, issued right after close(), could see the open still counted.
// Before answering EBUSY, give RELEASEs already on their way a moment to be
// served by the other worker threads. Returns the opens left.
int SettleOpens(const Disk& disk, int allowed, const fuse_file_info* fi = nullptr) {
  constexpr absl::Duration kPatience = absl::Milliseconds(250);
  const absl::Time deadline = absl::Now() + kPatience;
  int others = OtherOpens(disk, fi);
  while (others > allowed && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(1));
    others = OtherOpens(disk, fi);
  }
  return others;
}

// Deletes disk `name` (rm on the mount, or the `delete` control file): waits
// for RELEASEs in flight, drops the disk's backing id and the kernel's
// cached entries for it. An unlink's own directory entry is the kernel's to
// drop: it holds the root's lock while waiting for us, so notifying it from
// here would deadlock.
absl::Status DeleteDisk(Filesystem& fs, const std::string& name, bool by_unlink) {
  std::shared_ptr<Disk> disk = fs.table().Find(name);
  if (disk) SettleOpens(*disk, 0);
  RDFS_RETURN_IF_ERROR(fs.table().Delete(name));
  if (disk) fs.ReleaseBackingId(*disk);
  if (!by_unlink)
    fuse_lowlevel_notify_inval_entry(fs.session(), kRootIno, name.data(), name.size());
  fuse_lowlevel_notify_inval_entry(fs.session(), kControlDirIno, name.data(), name.size());
  Log("deleted disk ", name, by_unlink ? " (rm on the mount)" : "");
  return absl::OkStatus();
}

absl::Status ApplyControlWrite(Filesystem& fs, const Node& node, std::string_view text) {
  DiskTable& table = fs.table();
  switch (node.kind) {
    case Kind::kGlobalNew: {
      RDFS_ASSIGN_OR_RETURN(NewDiskRequest request, ParseNewCommand(text));
      NewDisk spec;
      spec.name = request.name;
      spec.size_bytes = request.size_bytes;
      spec.mode = request.mode.value_or(fs.options().default_mode);
      spec.readonly = request.readonly || fs.options().readonly;
      spec.attributes = {0600, fs.options().uid, fs.options().gid, absl::Now(), absl::Now()};
      RDFS_ASSIGN_OR_RETURN(std::shared_ptr<Disk> disk, table.Create(std::move(spec)));
      Log("created disk ", disk->name(), " (", disk->size_bytes(), " bytes, ",
          DataModeName(disk->mode()), ")");
      return absl::OkStatus();
    }
    case Kind::kGlobalDelete: {
      RDFS_ASSIGN_OR_RETURN(std::string name, ParseDeleteCommand(text));
      return DeleteDisk(fs, name, /*by_unlink=*/false);
    }
    case Kind::kGlobalMaxMemory: {
      RDFS_ASSIGN_OR_RETURN(uint64_t bytes, ParseMemorySizeValue(text));
      RDFS_RETURN_IF_ERROR(table.pool().SetMaxBytes(bytes));
      Log("max_memory set to ", bytes);
      return absl::OkStatus();
    }
    case Kind::kDiskSize: {
      RDFS_ASSIGN_OR_RETURN(uint64_t bytes, ParseDiskSizeValue(text));
      const int others =
          bytes < node.disk->size_bytes() ? SettleOpens(*node.disk, 0) : node.disk->opens();
      RDFS_RETURN_IF_ERROR(node.disk->Resize(bytes, others));
      fs.InvalidateDisk(*node.disk, false);
      Log("disk ", node.disk->name(), " resized to ", node.disk->size_bytes());
      return absl::OkStatus();
    }
    case Kind::kDiskFlush: {
      RDFS_RETURN_IF_ERROR(ParseFlushCommand(text));
      RDFS_RETURN_IF_ERROR(node.disk->Flush(SettleOpens(*node.disk, 0)));
      fs.InvalidateDisk(*node.disk, true);
      return absl::OkStatus();
    }
    case Kind::kDiskDiscard: {
      RDFS_ASSIGN_OR_RETURN(ByteRange range, ParseDiscardCommand(text));
      RDFS_RETURN_IF_ERROR(node.disk->Discard(range.offset, range.length));
      if (node.disk->mode() == DataMode::kCached) fs.InvalidateDisk(*node.disk, true);
      return absl::OkStatus();
    }
    case Kind::kDiskReadonly: {
      RDFS_ASSIGN_OR_RETURN(bool readonly, ParseBoolValue(text));
      RDFS_RETURN_IF_ERROR(node.disk->SetReadonly(readonly));
      fs.InvalidateDisk(*node.disk, false);
      Log("disk ", node.disk->name(), readonly ? " is now read-only" : " is now writable");
      return absl::OkStatus();
    }
    case Kind::kDiskMode: {
      RDFS_ASSIGN_OR_RETURN(DataMode mode, ParseModeValue(text));
      if (mode == DataMode::kDax && fs.connection().initialized && !fs.connection().passthrough) {
        return ErrnoStatus(
            EOPNOTSUPP, absl::StrCat("dax is unavailable here (", fs.table().dax_fallback(), ")"));
      }
      SettleOpens(*node.disk, 0);
      RDFS_RETURN_IF_ERROR(node.disk->SetMode(mode));
      // cached and null opens never use the backing id: drop it, so stats
      // say what is true (the disk is closed, so no open reply carries it).
      if (mode == DataMode::kCached || mode == DataMode::kNull) fs.ReleaseBackingId(*node.disk);
      // Pages a cached-mode open left in the kernel must not outlive the mode.
      fs.InvalidateDisk(*node.disk, true);
      Log("disk ", node.disk->name(), " mode set to ", DataModeName(mode));
      return absl::OkStatus();
    }
    default:
      return ErrnoStatus(EBADF, "not a writable control file");
  }
}

std::string ControlPath(const Node& node) {
  const ControlFileInfo* info = FindControlFile(node.kind);
  std::string name = info ? std::string(info->name) : "?";
  if (node.disk) return absl::StrCat(".control/", node.disk->name(), "/", name);
  return absl::StrCat(".control/", name);
}

// ---- handlers --------------------------------------------------------------------

void OnInit(void* userdata, fuse_conn_info* conn) {
  // Passthrough and the writeback cache exclude each other (FUSE-FACTS 1.10):
  // never ask for writeback. Splice is off: the custom io has no splice.
  conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
  if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC) conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
  if (conn->capable & FUSE_CAP_IOCTL_DIR) conn->want &= ~FUSE_CAP_IOCTL_DIR;
  // With async direct I/O the kernel turns any short O_DIRECT write on a
  // cached-mode file into EIO (fuse_get_res_by_io), so a write crossing the
  // end of a disk could not be cut short as the contract says. Cached mode is
  // for page-cache experiments; its O_DIRECT I/O runs synchronously instead.
  conn->want &= ~FUSE_CAP_ASYNC_DIO;
  conn->max_write = kMaxWriteBytes;
  conn->max_read = kMaxReadBytes;  // must equal the max_read mount option (session.cc)
  conn->max_background = 64;
  conn->congestion_threshold = 48;
  conn->time_gran = 1;
}

void OnLookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  Filesystem& fs = *FsOf(req);
  std::string_view n(name);
  fuse_entry_param e;
  auto found = [&](const Node& node, fuse_ino_t ino) {
    FillEntry(fs, node, ino, &e);
    fuse_reply_entry(req, &e);
  };
  Node dir = Resolve(fs.table(), parent);
  switch (dir.kind) {
    case Kind::kRoot:
      if (n == ".control") return found({Kind::kControlDir, nullptr}, kControlDirIno);
      if (auto disk = fs.table().Find(n)) {
        fuse_ino_t ino = DiskIno(disk->id(), Kind::kDiskFile);
        return found({Kind::kDiskFile, std::move(disk)}, ino);
      }
      break;
    case Kind::kControlDir:
      for (const auto& f : kGlobalFiles) {
        if (n == f.name) return found({f.kind, nullptr}, GlobalIno(f.kind));
      }
      if (auto disk = fs.table().Find(n)) {
        fuse_ino_t ino = DiskIno(disk->id(), Kind::kDiskControlDir);
        return found({Kind::kDiskControlDir, std::move(disk)}, ino);
      }
      break;
    case Kind::kDiskControlDir:
      for (const auto& f : kDiskFiles) {
        if (n == f.name) return found({f.kind, dir.disk}, DiskIno(dir.disk->id(), f.kind));
      }
      break;
    case Kind::kInvalid:
      return (void)fuse_reply_err(req, ENOENT);
    default:
      return (void)fuse_reply_err(req, ENOTDIR);
  }
  // A negative entry with a zero timeout: a disk made a moment later by
  // `new` must be found at once.
  std::memset(&e, 0, sizeof(e));
  fuse_reply_entry(req, &e);
}

void OnGetattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Filesystem& fs = *FsOf(req);
  Node node = Resolve(fs.table(), ino);
  if (node.kind == Kind::kInvalid) return (void)fuse_reply_err(req, ENOENT);
  if (node.kind == Kind::kDiskFile) {
    // A dax write past the end reached the backing file without us: cut it
    // back (or, while the disk grows, take its size) before reporting.
    node.disk->SyncBackingFile();
  }
  struct stat st = MakeStat(fs, node, ino);
  fuse_reply_attr(req, &st, kAttrTimeout);
}

void OnSetattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set, fuse_file_info* fi) {
  Filesystem& fs = *FsOf(req);
  Node node = Resolve(fs.table(), ino);
  if (node.kind == Kind::kInvalid) return (void)fuse_reply_err(req, ENOENT);
  if (node.kind != Kind::kDiskFile) {
    // Control files: `echo x > file` may truncate first; that is a no-op.
    // Directories and control files cannot be chmod'ed or chown'ed.
    if (to_set & ~(FUSE_SET_ATTR_SIZE | FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME |
                   FUSE_SET_ATTR_ATIME_NOW | FUSE_SET_ATTR_MTIME_NOW | FUSE_SET_ATTR_CTIME)) {
      return (void)fuse_reply_err(req, EPERM);
    }
    struct stat st = MakeStat(fs, node, ino);
    return (void)fuse_reply_attr(req, &st, kAttrTimeout);
  }
  Disk& disk = *node.disk;
  if (to_set & FUSE_SET_ATTR_SIZE) {
    const uint64_t new_size = static_cast<uint64_t>(attr->st_size);
    const int others =
        new_size < disk.size_bytes() ? SettleOpens(disk, 0, fi) : OtherOpens(disk, fi);
    absl::Status status = disk.Resize(new_size, others);
    if (!status.ok()) return ReplyControlError(req, absl::StrCat("truncate ", disk.name()), status);
  }
  if (to_set & FUSE_SET_ATTR_MODE) disk.SetPermissions(attr->st_mode);
  if (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
    disk.SetOwner((to_set & FUSE_SET_ATTR_UID) ? attr->st_uid : static_cast<uid_t>(-1),
                  (to_set & FUSE_SET_ATTR_GID) ? attr->st_gid : static_cast<gid_t>(-1));
  }
  if (to_set & FUSE_SET_ATTR_MTIME_NOW) {
    disk.Touch();
  } else if (to_set & FUSE_SET_ATTR_MTIME) {
    disk.SetTimes(absl::TimeFromTimespec(attr->st_mtim));
  }
  struct stat st = MakeStat(fs, node, ino);
  fuse_reply_attr(req, &st, kAttrTimeout);
}

absl::StatusOr<std::shared_ptr<Disk>> CreateDiskFile(Filesystem& fs, fuse_req_t req,
                                                     fuse_ino_t parent, const char* name,
                                                     mode_t mode) {
  if (parent != kRootIno) return ErrnoStatus(EPERM, "disks live in the mount's root only");
  if (!S_ISREG(mode)) return ErrnoStatus(EPERM, "only regular files (disks) can be made");
  if (fs.options().readonly) return ErrnoStatus(EROFS, "the mount is read-only (-o ro)");
  const fuse_ctx* ctx = fuse_req_ctx(req);
  NewDisk spec;
  spec.name = name;
  spec.size_bytes = 0;
  spec.growing = true;  // copying an image in makes a disk of its size
  spec.mode = fs.options().default_mode;
  // Disks are 0600 whatever the creator's umask allows (SPEC 3); chmod
  // widens them on purpose.
  spec.attributes = {0600, ctx->uid, ctx->gid, absl::Now(), absl::Now()};
  RDFS_ASSIGN_OR_RETURN(std::shared_ptr<Disk> disk, fs.table().Create(std::move(spec)));
  Log("created disk ", disk->name(), " (create on the mount)");
  return disk;
}

void OnMknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev) {
  Filesystem& fs = *FsOf(req);
  absl::StatusOr<std::shared_ptr<Disk>> disk = CreateDiskFile(fs, req, parent, name, mode);
  if (!disk.ok()) return ReplyControlError(req, absl::StrCat("mknod ", name), disk.status());
  fuse_entry_param e;
  fuse_ino_t ino = DiskIno((*disk)->id(), Kind::kDiskFile);
  FillEntry(fs, {Kind::kDiskFile, *disk}, ino, &e);
  fuse_reply_entry(req, &e);
}

void OnRefuse(fuse_req_t req) { fuse_reply_err(req, EPERM); }
void OnMkdir(fuse_req_t req, fuse_ino_t, const char*, mode_t) { OnRefuse(req); }
void OnSymlink(fuse_req_t req, const char*, fuse_ino_t, const char*) { OnRefuse(req); }
void OnLink(fuse_req_t req, fuse_ino_t, fuse_ino_t, const char*) { OnRefuse(req); }
void OnRmdir(fuse_req_t req, fuse_ino_t, const char*) { OnRefuse(req); }
void OnRename(fuse_req_t req, fuse_ino_t, const char*, fuse_ino_t, const char*, unsigned) {
  OnRefuse(req);
}

void OnUnlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
  Filesystem& fs = *FsOf(req);
  if (parent != kRootIno) return (void)fuse_reply_err(req, EPERM);
  absl::Status status = DeleteDisk(fs, name, /*by_unlink=*/true);
  if (!status.ok()) return ReplyControlError(req, absl::StrCat("rm ", name), status);
  fuse_reply_err(req, 0);
}

// Open flags and backing id for a disk open in its current mode.
struct DiskOpenReply {
  uint32_t flags = 0;
  int backing_id = 0;
};

// `access`: O_RDONLY, O_WRONLY or O_RDWR.
DiskOpenReply DiskOpenFlags(Filesystem& fs, Disk& disk, int access) {
  DiskOpenReply reply;
  switch (disk.mode()) {
    case DataMode::kDax:
      reply.backing_id = fs.EnsureBackingId(disk);
      if (reply.backing_id > 0) {
        reply.flags = abi::kOpenPassthrough;
        // Write-only opens (dd of=, cp, rsync, tee) cannot map the disk, so
        // they lose nothing by writing through the daemon, and they gain a
        // short write / ENOSPC at the end of the disk the moment it happens
        // instead of at close (docs/design.md, "Writes past the end").
        if (access == O_WRONLY) reply.flags |= abi::kOpenDirectIo | abi::kOpenParallelDirectWrites;
      } else {
        reply.flags = abi::kOpenDirectIo | abi::kOpenParallelDirectWrites;
      }
      break;
    case DataMode::kDirect:
      reply.flags = abi::kOpenDirectIo | abi::kOpenParallelDirectWrites;
      // read()/write() stay with the daemon (DIRECT_IO wins), while a shared
      // mmap maps the backing pages (FUSE-FACTS 1.11).
      reply.backing_id = fs.EnsureBackingId(disk);
      if (reply.backing_id > 0) reply.flags |= abi::kOpenPassthrough;
      break;
    case DataMode::kCached:
      reply.flags = abi::kOpenKeepCache;
      break;
    case DataMode::kNull:
      reply.flags = abi::kOpenDirectIo | abi::kOpenParallelDirectWrites;
      break;
  }
  return reply;
}

void OpenDisk(Filesystem& fs, fuse_req_t req, std::shared_ptr<Disk> disk, fuse_file_info* fi,
              const fuse_entry_param* entry) {
  const int access = fi->flags & O_ACCMODE;
  const bool for_write = access != O_RDONLY;
  // ENOENT if a delete won the race with this open (its lookup came first).
  if (absl::Status status = disk->Open(for_write); !status.ok()) {
    return ReplyError(req, status);
  }
  DiskOpenReply how = DiskOpenFlags(fs, *disk, access);
  // A passthrough open for reading and writing writes without the daemon:
  // in dax directly, in direct mode through a shared writable mapping.
  const bool bypass = how.backing_id > 0 && access == O_RDWR;
  if (bypass) {
    if (absl::Status status = disk->AddBypassWriter(); !status.ok()) {
      disk->Release(for_write);
      return ReplyError(req, status);
    }
  }
  auto* of = new OpenFile{Kind::kDiskFile,        disk, for_write, how.backing_id > 0, {}, bypass,
                          disk->overflow_events()};
  if (ReplyOpen(req, entry, reinterpret_cast<uint64_t>(of), how.flags, how.backing_id) != 0) {
    // The opener went away (interrupted): the kernel sends no RELEASE.
    disk->Release(for_write, bypass);
    delete of;
  }
}

void OnCreate(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode,
              fuse_file_info* fi) {
  Filesystem& fs = *FsOf(req);
  fs.WaitUntilInitialized();
  absl::StatusOr<std::shared_ptr<Disk>> disk = CreateDiskFile(fs, req, parent, name, mode);
  if (!disk.ok()) return ReplyControlError(req, absl::StrCat("create ", name), disk.status());
  fuse_entry_param e;
  fuse_ino_t ino = DiskIno((*disk)->id(), Kind::kDiskFile);
  FillEntry(fs, {Kind::kDiskFile, *disk}, ino, &e);
  OpenDisk(fs, req, *disk, fi, &e);
}

void OnOpen(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Filesystem& fs = *FsOf(req);
  fs.WaitUntilInitialized();
  Node node = Resolve(fs.table(), ino);
  if (node.kind == Kind::kInvalid) return (void)fuse_reply_err(req, ENOENT);
  if (IsDirectory(node.kind)) return (void)fuse_reply_err(req, EISDIR);
  if (node.kind == Kind::kDiskFile) return OpenDisk(fs, req, std::move(node.disk), fi, nullptr);
  // A control file. Like sysfs, the access mode must fit the file even for
  // root (who would pass the permission bits).
  const ControlFileInfo* info = FindControlFile(node.kind);
  const int acc = fi->flags & O_ACCMODE;
  if ((acc != O_WRONLY && !info->readable) || (acc != O_RDONLY && !info->writable)) {
    return (void)fuse_reply_err(req, EACCES);
  }
  auto* of = new OpenFile{node.kind, node.disk, acc != O_RDONLY, false, {}};
  if (info->readable) of->content = ControlContent(fs, node);
  fi->fh = reinterpret_cast<uint64_t>(of);
  fi->direct_io = 1;  // reads come to the daemon whatever st_size says
  fi->keep_cache = 0;
  fi->nonseekable = 0;
  if (fuse_reply_open(req, fi) != 0) delete of;
}

// Reads the daemon serves: direct/cached/null disks (dax reads never arrive,
// except through an open that fell back) and control files.
void OnRead(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  OpenFile* of = FileOf(fi);
  if (off < 0) return (void)fuse_reply_err(req, EINVAL);
  if (of->kind != Kind::kDiskFile) {
    // The reply is copied out of the open file first: the kernel may wake the
    // reader, which may close, and another worker may free `of` on RELEASE,
    // while this thread is still returning from writev().
    const std::string& c = of->content;
    if (static_cast<uint64_t>(off) >= c.size()) return (void)fuse_reply_buf(req, nullptr, 0);
    const size_t n = std::min(size, c.size() - static_cast<size_t>(off));
    char* buffer = ThreadBuffer(n);
    std::memcpy(buffer, c.data() + off, n);
    return (void)fuse_reply_buf(req, buffer, n);
  }
  Disk& disk = *of->disk;
  if (size >= kSpliceMinBytes && size <= kMaxReadBytes && off % kPageSize == 0 &&
      disk.mode() != DataMode::kNull) {
    const size_t n = disk.ReadableBytes(static_cast<uint64_t>(off), size);
    if (n > 0) {
      SpliceReply* splice = ThreadSpliceReply();
      *splice = {&disk.store(), static_cast<uint64_t>(off), n};
      disk.CountRead(n);
      struct iovec iov = {splice, sizeof(*splice)};
      return (void)fuse_reply_iov(req, &iov, 1);
    }
  }
  char* buffer = ThreadBuffer(size);
  absl::StatusOr<size_t> n = disk.Read(static_cast<uint64_t>(off), buffer, size);
  if (!n.ok()) return ReplyError(req, n.status());
  fuse_reply_buf(req, buffer, *n);
}

void OnWrite(fuse_req_t req, fuse_ino_t ino, const char* buf, size_t size, off_t off,
             fuse_file_info* fi) {
  Filesystem& fs = *FsOf(req);
  OpenFile* of = FileOf(fi);
  if (off < 0) return (void)fuse_reply_err(req, EINVAL);
  if (of->kind == Kind::kDiskFile) {
    absl::StatusOr<size_t> n = of->disk->Write(static_cast<uint64_t>(off), buf, size);
    if (!n.ok()) return ReplyError(req, n.status());
    return (void)fuse_reply_write(req, *n);
  }
  Node node{of->kind, of->disk};
  const std::string what = absl::StrCat("write to ", ControlPath(node));
  if (off != 0) {
    return ReplyControlError(req, what,
                             ErrnoStatus(EINVAL, "control files take one write at offset 0"));
  }
  if (size > kMaxControlWrite) {
    return ReplyControlError(req, what, ErrnoStatus(EINVAL, "control write too long"));
  }
  if (node.disk && !fs.table().FindById(node.disk->id())) {
    return ReplyControlError(req, what, ErrnoStatus(ENOENT, "the disk was deleted"));
  }
  absl::Status status = ApplyControlWrite(fs, node, std::string_view(buf, size));
  if (!status.ok()) return ReplyControlError(req, what, status);
  fuse_reply_write(req, size);
}

// fsync() and close() of an open for writing report bytes a dax write put
// past the end of the disk since the open last reported (ENOSPC, as a
// filesystem reports a lost writeback). Returns the errno for the reply.
int ReportOverflow(OpenFile& of) {
  if (!of.for_write) return 0;
  of.disk->SyncBackingFile();
  const uint64_t events = of.disk->overflow_events();
  if (events == of.overflow_seen) return 0;
  of.overflow_seen = events;
  return ENOSPC;
}

void OnFlush(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Filesystem& fs = *FsOf(req);
  OpenFile* of = FileOf(fi);
  if (of->kind != Kind::kDiskFile) return (void)fuse_reply_err(req, 0);
  const int err = ReportOverflow(*of);
  // A growing disk takes its final (page-rounded) size at each close, so a
  // stat right after cp/dd returns shows it.
  if (of->disk->OnClose()) fs.InvalidateDisk(*of->disk, false);
  fuse_reply_err(req, err);
}

void OnRelease(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Filesystem& fs = *FsOf(req);
  OpenFile* of = FileOf(fi);
  if (of->kind == Kind::kDiskFile) {
    Disk& disk = *of->disk;
    if (of->passthrough && of->for_write) disk.SyncBackingFile();
    const bool was_growing = disk.growing();
    disk.Release(of->for_write, of->bypass_writer);
    if (was_growing && !disk.growing()) fs.InvalidateDisk(disk, false);
  }
  delete of;
  fuse_reply_err(req, 0);
}

void OnFsync(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info* fi) {
  // RAM has nothing to sync; a dax write past the end is found here too.
  OpenFile* of = FileOf(fi);
  if (of->kind != Kind::kDiskFile) return (void)fuse_reply_err(req, 0);
  fuse_reply_err(req, ReportOverflow(*of));
}

void OnOpendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Filesystem& fs = *FsOf(req);
  Node node = Resolve(fs.table(), ino);
  if (node.kind == Kind::kInvalid) return (void)fuse_reply_err(req, ENOENT);
  if (!IsDirectory(node.kind)) return (void)fuse_reply_err(req, ENOTDIR);
  fi->fh = 0;
  fuse_reply_open(req, fi);
}

void OnReaddir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  Filesystem& fs = *FsOf(req);
  Node node = Resolve(fs.table(), ino);
  if (node.kind == Kind::kInvalid) return (void)fuse_reply_err(req, ENOENT);
  struct Entry {
    std::string name;
    fuse_ino_t ino;
    mode_t type;
  };
  std::vector<Entry> entries = {{".", ino, S_IFDIR}, {"..", kRootIno, S_IFDIR}};
  switch (node.kind) {
    case Kind::kRoot:
      entries.push_back({".control", kControlDirIno, S_IFDIR});
      for (const auto& disk : fs.table().List()) {
        entries.push_back({disk->name(), DiskIno(disk->id(), Kind::kDiskFile), S_IFREG});
      }
      break;
    case Kind::kControlDir:
      for (const auto& f : kGlobalFiles) {
        entries.push_back({std::string(f.name), GlobalIno(f.kind), S_IFREG});
      }
      for (const auto& disk : fs.table().List()) {
        entries.push_back({disk->name(), DiskIno(disk->id(), Kind::kDiskControlDir), S_IFDIR});
      }
      break;
    case Kind::kDiskControlDir:
      entries[1].ino = kControlDirIno;
      for (const auto& f : kDiskFiles) {
        entries.push_back({std::string(f.name), DiskIno(node.disk->id(), f.kind), S_IFREG});
      }
      break;
    default:
      return (void)fuse_reply_err(req, ENOTDIR);
  }
  std::string buf(size, '\0');
  size_t used = 0;
  for (size_t i = static_cast<size_t>(std::max<off_t>(off, 0)); i < entries.size(); ++i) {
    struct stat st = {};
    st.st_ino = entries[i].ino;
    st.st_mode = entries[i].type;
    size_t need = fuse_add_direntry(req, buf.data() + used, size - used, entries[i].name.c_str(),
                                    &st, static_cast<off_t>(i + 1));
    if (need > size - used) break;
    used += need;
  }
  fuse_reply_buf(req, buf.data(), used);
}

void OnStatfs(fuse_req_t req, fuse_ino_t ino) {
  Filesystem& fs = *FsOf(req);
  MemoryPool& pool = fs.table().pool();
  struct statvfs st = {};
  const uint64_t max = pool.max_bytes();
  const uint64_t used = std::min(pool.used_bytes(), max);
  st.f_bsize = kPageSize;
  st.f_frsize = kPageSize;
  st.f_blocks = max / kPageSize;
  st.f_bfree = (max - used) / kPageSize;
  st.f_bavail = st.f_bfree;
  st.f_files = kMaxDisks;
  st.f_ffree = kMaxDisks - std::min<size_t>(fs.table().size(), kMaxDisks);
  st.f_favail = st.f_ffree;
  st.f_namemax = 255;
  fuse_reply_statfs(req, &st);
}

void OnIoctl(fuse_req_t req, fuse_ino_t ino, unsigned int cmd, void* arg, fuse_file_info* fi,
             unsigned flags, const void* in_buf, size_t in_bufsz, size_t out_bufsz) {
  Filesystem& fs = *FsOf(req);
  OpenFile* of = FileOf(fi);
  if (of == nullptr || of->kind != Kind::kDiskFile) return (void)fuse_reply_err(req, ENOTTY);
  Disk& disk = *of->disk;
  switch (cmd) {
    case abi::kBlkGetSize64: {
      uint64_t size = disk.size_bytes();
      if (out_bufsz < sizeof(size)) return (void)fuse_reply_err(req, EINVAL);
      return (void)fuse_reply_ioctl(req, 0, &size, sizeof(size));
    }
    case abi::kBlkBszGet: {
      // The kernel's BLKBSZGET writes an int although the number encodes
      // size_t; answer all 8 bytes so either reading is right.
      uint64_t block = kPageSize;
      if (out_bufsz < sizeof(int)) return (void)fuse_reply_err(req, EINVAL);
      return (void)fuse_reply_ioctl(req, 0, &block, std::min(out_bufsz, sizeof(block)));
    }
    case abi::kBlkFlsBuf: {
      // The kernel's BLKFLSBUF needs CAP_SYS_ADMIN; here: root or the user
      // who mounted (the owner of the control tree). Read access to a disk
      // must not let anyone else destroy its data.
      const fuse_ctx* ctx = fuse_req_ctx(req);
      if (ctx->uid != 0 && ctx->uid != fs.options().uid) {
        return ReplyControlError(req, absl::StrCat("BLKFLSBUF ", disk.name()),
                                 ErrnoStatus(EACCES, "only root or the mounting user may flush"));
      }
      absl::Status status = disk.Flush(SettleOpens(disk, 0, fi));
      if (!status.ok())
        return ReplyControlError(req, absl::StrCat("BLKFLSBUF ", disk.name()), status);
      fs.InvalidateDisk(disk, true);
      return (void)fuse_reply_ioctl(req, 0, nullptr, 0);
    }
    default:
      // Includes the _IO() block ioctls (BLKGETSIZE, BLKSSZGET, BLKROSET...):
      // FUSE carries no data for them, so a success would leave the
      // caller's buffer unset (FUSE-FACTS 6).
      return (void)fuse_reply_err(req, ENOTTY);
  }
}

void OnFallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
                 fuse_file_info* fi) {
  OpenFile* of = FileOf(fi);
  if (of->kind != Kind::kDiskFile) return (void)fuse_reply_err(req, EOPNOTSUPP);
  if (offset < 0 || length <= 0) return (void)fuse_reply_err(req, EINVAL);
  // Never ENOSYS: the kernel would turn fallocate off for the whole mount.
  absl::Status status =
      of->disk->Fallocate(mode, static_cast<uint64_t>(offset), static_cast<uint64_t>(length));
  fuse_reply_err(req, StatusToErrno(status));
}

void OnLseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, fuse_file_info* fi) {
  OpenFile* of = FileOf(fi);
  if (of->kind != Kind::kDiskFile) return (void)fuse_reply_err(req, EINVAL);
  if (off < 0) return (void)fuse_reply_err(req, ENXIO);
  Disk& disk = *of->disk;
  const uint64_t offset = static_cast<uint64_t>(off);
  absl::StatusOr<uint64_t> pos;
  if (whence == SEEK_DATA || whence == SEEK_HOLE) {
    if (disk.mode() == DataMode::kNull) {
      // null mode holds nothing: all hole.
      if (offset >= disk.size_bytes()) return (void)fuse_reply_err(req, ENXIO);
      if (whence == SEEK_DATA) return (void)fuse_reply_err(req, ENXIO);
      return (void)fuse_reply_lseek(req, off);
    }
    pos = whence == SEEK_DATA ? disk.store().SeekData(offset) : disk.store().SeekHole(offset);
  } else {
    return (void)fuse_reply_err(req, EINVAL);  // the kernel handles SET/CUR/END itself
  }
  if (!pos.ok()) return ReplyError(req, pos.status());
  fuse_reply_lseek(req, static_cast<off_t>(*pos));
}

void OnForget(fuse_req_t req, fuse_ino_t, uint64_t) { fuse_reply_none(req); }

const fuse_lowlevel_ops kOps = [] {
  fuse_lowlevel_ops ops = {};
  ops.init = OnInit;
  ops.lookup = OnLookup;
  ops.forget = OnForget;
  ops.getattr = OnGetattr;
  ops.setattr = OnSetattr;
  ops.mknod = OnMknod;
  ops.mkdir = OnMkdir;
  ops.unlink = OnUnlink;
  ops.rmdir = OnRmdir;
  ops.symlink = OnSymlink;
  ops.rename = OnRename;
  ops.link = OnLink;
  ops.open = OnOpen;
  ops.read = OnRead;
  ops.write = OnWrite;
  ops.flush = OnFlush;
  ops.release = OnRelease;
  ops.fsync = OnFsync;
  ops.opendir = OnOpendir;
  ops.readdir = OnReaddir;
  ops.statfs = OnStatfs;
  ops.create = OnCreate;
  ops.ioctl = OnIoctl;
  ops.fallocate = OnFallocate;
  ops.lseek = OnLseek;
  return ops;
}();

}  // namespace

Filesystem::Filesystem(DiskTable* table, FilesystemOptions options)
    : table_(table), options_(options) {
  clock_gettime(CLOCK_REALTIME, &start_time_);
}

const fuse_lowlevel_ops* Filesystem::Ops() { return &kOps; }

SpliceReply* ThreadSpliceReply() {
  thread_local SpliceReply reply;
  return &reply;
}

char* ThreadBuffer(size_t size) {
  thread_local std::unique_ptr<char[]> buffer;
  thread_local size_t buffer_size = 0;
  if (buffer_size < size) {
    buffer.reset(new char[size]);
    buffer_size = size;
  }
  return buffer.get();
}

bool Filesystem::AfterInit(int device_fd) {
  device_fd_ = device_fd;
  std::string reason;
  if (table_->pool().kind() != StoreKind::kTmpfs) {
    reason = "memfd_store";  // the kernel would not enforce the cap
  } else if (!connection_.kernel_offers_passthrough) {
    reason = "kernel_without_passthrough";
  } else {
    // Probe: register a scratch backing file and drop it again.
    absl::StatusOr<int> probe = table_->pool().CreateFile("probe");
    if (!probe.ok()) {
      reason = "probe_failed";
    } else {
      abi::BackingMap map = {*probe, 0, 0};
      int id = ioctl(device_fd_, abi::kDevIocBackingOpen, &map);
      int err = errno;
      close(*probe);
      if (id > 0) {
        ioctl(device_fd_, abi::kDevIocBackingClose, &id);
      } else {
        reason = err == EPERM ? "no_cap_sys_admin" : absl::StrCat("backing_open_", strerror(err));
        for (char& c : reason) c = c == ' ' ? '_' : c;
      }
    }
  }
  connection_.passthrough = reason.empty();
  table_->SetDaxFallback(reason);
  {
    std::lock_guard lock(init_mu_);
    connection_.initialized = true;
  }
  init_cv_.notify_all();
  if (reason.empty()) {
    Log("passthrough available: dax mode is on");
    return true;
  }
  if (options_.dax_required) {
    Log("dax mode was asked for but is unavailable (", reason, ")");
    fatal_ = true;
    return false;
  }
  Log("dax mode unavailable (", reason, "): disks in dax mode fall back to direct");
  return true;
}

void Filesystem::WaitUntilInitialized() {
  if (connection_.initialized.load(std::memory_order_acquire)) return;
  // Bounded: should AfterInit never run (the INIT reply failed), serve on.
  std::unique_lock lock(init_mu_);
  init_cv_.wait_for(lock, std::chrono::seconds(5),
                    [this] { return connection_.initialized.load(); });
}

int Filesystem::EnsureBackingId(Disk& disk) {
  if (!connection_.passthrough) return 0;
  int id = disk.backing_id();
  if (id > 0) return id;
  // Two first opens may race here; registering twice would give the inode two
  // backings (EIO, FUSE-FACTS 1.4), so registration is serialised per disk by
  // checking again under the table's view of the disk.
  static std::mutex register_mu;
  std::lock_guard lock(register_mu);
  id = disk.backing_id();
  if (id > 0) return id;
  abi::BackingMap map = {disk.store().fd(), 0, 0};
  id = ioctl(device_fd_, abi::kDevIocBackingOpen, &map);
  if (id <= 0) {
    Log("BACKING_OPEN for disk ", disk.name(), " failed: ", strerror(errno),
        "; serving it without passthrough");
    return 0;
  }
  disk.set_backing_id(id);
  return id;
}

void Filesystem::ReleaseBackingId(Disk& disk) {
  int id = disk.backing_id();
  if (id <= 0) return;
  ioctl(device_fd_, abi::kDevIocBackingClose, &id);
  disk.set_backing_id(0);
}

void Filesystem::InvalidateDisk(const Disk& disk, bool data) {
  if (session_ == nullptr) return;
  // -ENOENT just means the kernel holds no inode for it: nothing to drop.
  fuse_lowlevel_notify_inval_inode(session_, DiskIno(disk.id(), Kind::kDiskFile), data ? 0 : -1, 0);
}

}  // namespace ramdiskfs
