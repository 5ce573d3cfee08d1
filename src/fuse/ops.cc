// The op handlers and the op table. Each handler translates the request,
// calls the core — the inode scheme (inodes.h), the ControlPlane for every
// control operation, the Disk's I/O path for data — and sends exactly one
// reply. Policy lives in the core; the FUSE wire details that libfuse lacks
// live in passthrough.h and custom_io.h.

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "ramdiskfs/faults.h"
#include "ramdiskfs/log.h"
#include "ramdiskfs/size.h"
#include "ramdiskfs/status.h"
#include "ramdiskfs/timer_queue.h"
#include "src/fuse/custom_io.h"
#include "src/fuse/filesystem.h"
#include "src/fuse/inodes.h"
#include "src/fuse/kernel_abi.h"
#include "src/fuse/passthrough.h"
#include "src/fuse/uring.h"

namespace ramdiskfs {
namespace {

// ---- per-open state ----------------------------------------------------------

// Owned by the kernel's file handle: made in OPEN/CREATE, deleted in RELEASE
// (or at once if the open reply could not be delivered).
struct OpenFile {
  NodeKind kind;                          // kDiskFile or kControlFile
  const ControlFileInfo* file = nullptr;  // control files
  std::shared_ptr<Disk> disk;
  bool for_write = false;
  bool passthrough = false;
  std::string content;         // control files: what a read returns (made at open)
  bool bypass_writer = false;  // Disk::AddBypassWriter was called for it
  // Disk::overflow_events() when this open last reported: a larger number
  // at fsync/close means bytes were dropped since (ENOSPC).
  uint64_t overflow_seen = 0;
};

Filesystem* FsOf(fuse_req_t req) { return static_cast<Filesystem*>(fuse_req_userdata(req)); }

// fh is a slot of the open table (Filesystem::opens()), not a pointer, so
// that a restarted worker understands the handles the kernel holds
// (survive_state.h). nullptr for a handle that is not open.
OpenFile* FileOf(Filesystem& fs, uint64_t fh) {
  if (fh == 0 || fh > fs.opens().capacity()) return nullptr;
  return static_cast<OpenFile*>(fs.open_files()[fh - 1].load(std::memory_order_acquire));
}
OpenFile* FileOf(fuse_req_t req, const fuse_file_info* fi) {
  return fi == nullptr ? nullptr : FileOf(*FsOf(req), fi->fh);
}

OpenInfo InfoOf(const OpenFile& of) {
  OpenInfo info;
  info.kind = of.kind == NodeKind::kDiskFile ? OpenInfo::kDisk : OpenInfo::kControl;
  info.disk_id = of.disk ? of.disk->id() : 0;
  info.control_file = of.file ? static_cast<uint32_t>(of.file - kControlFiles) : 0;
  info.for_write = of.for_write;
  info.passthrough = of.passthrough;
  info.bypass_writer = of.bypass_writer;
  info.overflow_seen = of.overflow_seen;
  return info;
}

// Gives `of` a handle (the record is in the shared table before the open
// is answered). Errors: ENFILE when the table is full; `of` is then freed.
absl::StatusOr<uint64_t> AddHandle(Filesystem& fs, OpenFile* of) {
  OpenInfo info = InfoOf(*of);
  info.unique = CurrentRequestUnique() & ~abi::kUniqueResend;
  absl::StatusOr<uint64_t> handle = fs.opens().Add(info);
  if (!handle.ok()) {
    delete of;
    return handle.status();
  }
  fs.open_files()[*handle - 1].store(of, std::memory_order_release);
  return handle;
}

// A resent OPEN or CREATE whose open a dead worker recorded (and maybe
// counted) before its reply got lost: the handle to answer with, or 0.
uint64_t ResentHandle(Filesystem& fs) {
  const uint64_t unique = CurrentRequestUnique();
  if (!(unique & abi::kUniqueResend)) return 0;
  const uint64_t handle = fs.opens().FindPending(unique & ~abi::kUniqueResend);
  return handle != 0 && FileOf(fs, handle) != nullptr ? handle : 0;
}

// A resent non-idempotent request (making or deleting a disk, a control
// write) that a dead worker did and recorded before its reply got lost:
// the errno it had. nullopt: do it (it was not done, or not recorded).
std::optional<int> DoneBefore(Filesystem& fs) {
  const uint64_t unique = CurrentRequestUnique();
  if (!(unique & abi::kUniqueResend) || fs.replies() == nullptr) return std::nullopt;
  return fs.replies()->Find(unique & ~abi::kUniqueResend);
}

// After the work, before the reply (a supervised worker only).
void RecordDone(Filesystem& fs, int err) {
  if (fs.replies() == nullptr) return;
  fs.replies()->Record(CurrentRequestUnique() & ~abi::kUniqueResend, err);
  fs.MaybeCrash("request-done");
}

void DropHandle(Filesystem& fs, uint64_t fh) {
  if (fh == 0 || fh > fs.opens().capacity()) return;
  void* of = fs.open_files()[fh - 1].exchange(nullptr, std::memory_order_acq_rel);
  fs.opens().Remove(fh);
  delete static_cast<OpenFile*>(of);
}

// Whether the request comes through an open of `disk` (the in-use rule does
// not count the caller's own open). fi may be null.
Caller CallerOf(fuse_req_t req, const Disk& disk, const fuse_file_info* fi) {
  Caller caller;
  caller.uid = fuse_req_ctx(req)->uid;
  if (const OpenFile* of = FileOf(req, fi)) {
    caller.holds_open = of->kind == NodeKind::kDiskFile && of->disk.get() == &disk;
  }
  return caller;
}

// ---- replies -------------------------------------------------------------------

// Attribute and entry lifetimes. Disks change size through control files and
// other mounts of the same disk never exist, so one second is safe; the
// control plane invalidates the kernel's copy whenever it changes a disk.
constexpr double kAttrTimeout = 1.0;
constexpr double kEntryTimeout = 1.0;

void ReplyError(fuse_req_t req, const absl::Status& status) {
  fuse_reply_err(req, StatusToErrno(status));
}

struct stat MakeStat(Filesystem& fs, const Node& node) {
  struct stat st = {};
  st.st_ino = node.ino;
  st.st_uid = fs.options().uid;
  st.st_gid = fs.options().gid;
  st.st_blksize = kPageSize;
  st.st_mtim = st.st_ctim = st.st_atim = fs.start_time();
  if (IsDirectory(node.kind)) {
    st.st_mode = S_IFDIR | 0755;
    st.st_nlink = 2;
    return st;
  }
  if (node.kind == NodeKind::kDiskFile) {
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
  st.st_mode = S_IFREG | (node.file->readable ? 0444 : 0) | (node.file->writable ? 0200 : 0);
  st.st_nlink = 1;
  st.st_size = 4096;  // like sysfs: the real length is known only when read
  return st;
}

void FillEntry(Filesystem& fs, const Node& node, fuse_entry_param* e) {
  std::memset(e, 0, sizeof(*e));
  e->ino = node.ino;
  e->generation = 1;
  e->attr = MakeStat(fs, node);
  e->attr_timeout = kAttrTimeout;
  e->entry_timeout = kEntryTimeout;
}

// ---- handlers --------------------------------------------------------------------

void OnInit(void* userdata, fuse_conn_info* conn) { Passthrough::ConfigureInit(conn); }

void OnLookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  Filesystem& fs = *FsOf(req);
  Node dir = Resolve(fs.table(), parent);
  if (dir.kind == NodeKind::kInvalid) return (void)fuse_reply_err(req, ENOENT);
  if (!IsDirectory(dir.kind)) return (void)fuse_reply_err(req, ENOTDIR);
  fuse_entry_param e;
  Node node = Lookup(fs.table(), dir, name);
  if (node.kind == NodeKind::kInvalid) {
    // A negative entry with a zero timeout: a disk made a moment later by
    // `new` must be found at once.
    std::memset(&e, 0, sizeof(e));
    return (void)fuse_reply_entry(req, &e);
  }
  FillEntry(fs, node, &e);
  fuse_reply_entry(req, &e);
}

void OnGetattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Filesystem& fs = *FsOf(req);
  Node node = Resolve(fs.table(), ino);
  if (node.kind == NodeKind::kInvalid) return (void)fuse_reply_err(req, ENOENT);
  if (node.kind == NodeKind::kDiskFile) {
    // A dax write past the end reached the backing file without us: cut it
    // back (or, while the disk grows, take its size) before reporting.
    node.disk->SyncBackingFile();
  }
  struct stat st = MakeStat(fs, node);
  fuse_reply_attr(req, &st, kAttrTimeout);
}

void OnSetattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set, fuse_file_info* fi) {
  Filesystem& fs = *FsOf(req);
  Node node = Resolve(fs.table(), ino);
  if (node.kind == NodeKind::kInvalid) return (void)fuse_reply_err(req, ENOENT);
  if (node.kind != NodeKind::kDiskFile) {
    // Control files: `echo x > file` may truncate first; that is a no-op.
    // Directories and control files cannot be chmod'ed or chown'ed.
    if (to_set & ~(FUSE_SET_ATTR_SIZE | FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME |
                   FUSE_SET_ATTR_ATIME_NOW | FUSE_SET_ATTR_MTIME_NOW | FUSE_SET_ATTR_CTIME)) {
      return (void)fuse_reply_err(req, EPERM);
    }
    struct stat st = MakeStat(fs, node);
    return (void)fuse_reply_attr(req, &st, kAttrTimeout);
  }
  Disk& disk = *node.disk;
  if (to_set & FUSE_SET_ATTR_SIZE) {
    absl::Status status =
        fs.control().Truncate(disk, static_cast<uint64_t>(attr->st_size), CallerOf(req, disk, fi));
    if (!status.ok()) return ReplyError(req, status);
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
  fs.PublishState();  // size, permissions, owner, times
  struct stat st = MakeStat(fs, node);
  fuse_reply_attr(req, &st, kAttrTimeout);
}

// create and mknod: the same disk, made through the control plane.
absl::StatusOr<Node> CreateDiskFile(fuse_req_t req, std::string_view what, fuse_ino_t parent,
                                    const char* name, mode_t mode) {
  Filesystem& fs = *FsOf(req);
  const fuse_ctx* ctx = fuse_req_ctx(req);
  absl::StatusOr<std::shared_ptr<Disk>> disk =
      fs.control().CreateFile(what, parent == kRootIno, name, mode, ctx->uid, ctx->gid);
  if (!disk.ok()) return disk.status();
  return DiskFileNode(*std::move(disk));
}

void OnMknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev) {
  Filesystem& fs = *FsOf(req);
  fuse_entry_param e;
  if (std::optional<int> done = DoneBefore(fs)) {
    if (*done != 0) return (void)fuse_reply_err(req, *done);
    std::shared_ptr<Disk> disk = fs.table().Find(name);
    if (!disk) return (void)fuse_reply_err(req, ENOENT);  // deleted since
    FillEntry(fs, DiskFileNode(std::move(disk)), &e);
    return (void)fuse_reply_entry(req, &e);
  }
  absl::StatusOr<Node> node = CreateDiskFile(req, "mknod", parent, name, mode);
  RecordDone(fs, StatusToErrno(node.status()));
  if (!node.ok()) return ReplyError(req, node.status());
  FillEntry(fs, *node, &e);
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
  if (parent != kRootIno) return (void)fuse_reply_err(req, EPERM);
  Filesystem& fs = *FsOf(req);
  if (std::optional<int> done = DoneBefore(fs)) return (void)fuse_reply_err(req, *done);
  const int err = StatusToErrno(fs.control().Unlink(true, name));
  RecordDone(fs, err);
  fuse_reply_err(req, err);
}

void OpenDisk(Filesystem& fs, fuse_req_t req, std::shared_ptr<Disk> disk, fuse_file_info* fi,
              const fuse_entry_param* entry) {
  const int access = fi->flags & O_ACCMODE;
  const bool for_write = access != O_RDONLY;
  if (const uint64_t resent = ResentHandle(fs); resent && FileOf(fs, resent)->disk == disk) {
    // Counted already (RestoreOpenFiles): answer with the recorded handle.
    const DiskOpenReply how = fs.passthrough().OpenFlags(*disk, access);
    if (Passthrough::ReplyOpen(req, entry, resent, how) == 0) fs.opens().Confirm(resent);
    return;
  }
  // ENOENT if a delete won the race with this open (its lookup came first).
  if (absl::Status status = disk->Open(for_write); !status.ok()) {
    return ReplyError(req, status);
  }
  const int backing_before = disk->backing_id();
  const DiskOpenReply how = fs.passthrough().OpenFlags(*disk, access);
  // A new backing id belongs to the connection: a restarted worker must know it.
  if (disk->backing_id() != backing_before) fs.PublishState();
  if (how.bypass_writer) {
    if (absl::Status status = disk->AddBypassWriter(); !status.ok()) {
      disk->Release(for_write);
      return ReplyError(req, status);
    }
  }
  auto* of = new OpenFile{
      NodeKind::kDiskFile,    nullptr, disk, for_write, how.backing_id > 0, {}, how.bypass_writer,
      disk->overflow_events()};
  absl::StatusOr<uint64_t> handle = AddHandle(fs, of);
  if (!handle.ok()) {
    disk->Release(for_write, how.bypass_writer);
    return ReplyError(req, handle.status());
  }
  fs.MaybeCrash("open-recorded");
  if (Passthrough::ReplyOpen(req, entry, *handle, how) != 0) {
    // The opener went away (interrupted): the kernel sends no RELEASE.
    disk->Release(for_write, how.bypass_writer);
    DropHandle(fs, *handle);
    return;
  }
  fs.MaybeCrash("open-replied");
  fs.opens().Confirm(*handle);
}

void OnCreate(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode,
              fuse_file_info* fi) {
  FsOf(req)->passthrough().WaitUntilInitialized();  // the open reply depends on the probe
  if (const uint64_t resent = ResentHandle(*FsOf(req));
      resent && FileOf(*FsOf(req), resent)->kind == NodeKind::kDiskFile) {
    // The dead worker made the disk and recorded its open: finish that.
    Filesystem& fs = *FsOf(req);
    Node node = DiskFileNode(FileOf(fs, resent)->disk);
    fuse_entry_param e;
    FillEntry(fs, node, &e);
    return OpenDisk(fs, req, node.disk, fi, &e);
  }
  absl::StatusOr<Node> node = CreateDiskFile(req, "create", parent, name, mode);
  if (!node.ok()) return ReplyError(req, node.status());
  Filesystem& fs = *FsOf(req);
  fuse_entry_param e;
  FillEntry(fs, *node, &e);
  OpenDisk(fs, req, node->disk, fi, &e);
}

void OnOpen(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Filesystem& fs = *FsOf(req);
  fs.passthrough().WaitUntilInitialized();  // open flags and stats depend on the probe
  Node node = Resolve(fs.table(), ino);
  if (node.kind == NodeKind::kInvalid) return (void)fuse_reply_err(req, ENOENT);
  if (IsDirectory(node.kind)) return (void)fuse_reply_err(req, EISDIR);
  if (node.kind == NodeKind::kDiskFile) return OpenDisk(fs, req, std::move(node.disk), fi, nullptr);
  // A control file. Like sysfs, the access mode must fit the file even for
  // root (who would pass the permission bits).
  const ControlFileInfo& info = *node.file;
  const int acc = fi->flags & O_ACCMODE;
  if ((acc != O_WRONLY && !info.readable) || (acc != O_RDONLY && !info.writable)) {
    return (void)fuse_reply_err(req, EACCES);
  }
  auto* of = new OpenFile{NodeKind::kControlFile, &info, node.disk, acc != O_RDONLY, false, {}};
  fi->direct_io = 1;  // reads come to the daemon whatever st_size says
  fi->keep_cache = 0;
  fi->nonseekable = 0;
  if (const uint64_t resent = ResentHandle(fs)) {
    delete of;
    fi->fh = resent;
    if (fuse_reply_open(req, fi) == 0) fs.opens().Confirm(resent);
    return;
  }
  if (info.readable) of->content = fs.control().Content(info.file, node.disk.get());
  absl::StatusOr<uint64_t> handle = AddHandle(fs, of);
  if (!handle.ok()) return ReplyError(req, handle.status());
  fi->fh = *handle;
  if (fuse_reply_open(req, fi) != 0) return DropHandle(fs, *handle);
  fs.opens().Confirm(*handle);
}

// Reads the daemon serves: direct/cached/null disks (dax reads never arrive,
// except through an open that fell back) and control files.
// ---- fault injection: the I/O path when a fault is set ------------------------------
//
// The read and write handlers check disk.faults().active() once and come
// here when it is set (with no fault set that check is all a request pays).
// The decision may ask for a late reply (latency, throttle): it is then
// sent from the filesystem's TimerQueue thread (fuse_reply_* is
// thread-safe), so the worker goes back for the next request and a delayed
// request never holds up another. Read data then lives in a buffer of the
// request's own, not the worker's ThreadBuffer.

// Sends `reply` now, or from the TimerQueue at `reply_at_ns` if that is
// still ahead.
void ReplyAt(Filesystem& fs, int64_t reply_at_ns, TimerQueue::Closure reply) {
  if (reply_at_ns == 0 || reply_at_ns <= MonotonicNowNs()) return std::move(reply)();
  // The request holds its ring entry until the reply: the queues need their
  // reserve entries from now on.
  UringReplyDelayed();  // [uring hook]
  fs.timers().Schedule(reply_at_ns, std::move(reply));
}

void ReadWithFaults(Filesystem& fs, fuse_req_t req, Disk& disk, size_t size, uint64_t offset) {
  std::unique_ptr<char[]> buffer(new char[std::max<size_t>(size, 1)]);
  int64_t reply_at = 0;
  absl::StatusOr<size_t> n = disk.FaultyRead(offset, buffer.get(), size, &reply_at);
  ReplyAt(fs, reply_at, [req, n = std::move(n), buffer = std::move(buffer)] {
    if (!n.ok()) return ReplyError(req, n.status());
    fuse_reply_buf(req, buffer.get(), *n);
  });
}

// A request that changed a disk's settings by itself (badblocks_once healed
// a range, a flush counted down an armed power cut or fired it) publishes
// them before its reply, as a control write does, so a restarted worker
// does not bring the old ones back (docs/survive.md).
void PublishIfChanged(Filesystem& fs, Disk& disk) {
  if (disk.TakeSettingsChanged()) [[unlikely]] {
    fs.PublishState();
  }
}

void WriteWithFaults(Filesystem& fs, fuse_req_t req, Disk& disk, const char* buf, size_t size,
                     uint64_t offset, bool fua) {
  int64_t reply_at = 0;
  absl::StatusOr<size_t> n = disk.FaultyWrite(offset, buf, size, fua, &reply_at);
  PublishIfChanged(fs, disk);
  ReplyAt(fs, reply_at, [req, n = std::move(n)] {
    if (!n.ok()) return ReplyError(req, n.status());
    fuse_reply_write(req, *n);
  });
}

// fsync and fallocate: Disk applies the faults itself; the reply may be late.
void ReplyStatusAt(Filesystem& fs, fuse_req_t req, int64_t reply_at, absl::Status status) {
  ReplyAt(fs, reply_at,
          [req, status = std::move(status)] { fuse_reply_err(req, StatusToErrno(status)); });
}

void OnRead(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  OpenFile* of = FileOf(req, fi);
  if (of == nullptr) return (void)fuse_reply_err(req, EBADF);
  if (off < 0) return (void)fuse_reply_err(req, EINVAL);
  if (of->kind != NodeKind::kDiskFile) {
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
  const uint64_t offset = static_cast<uint64_t>(off);
  if (disk.faults().active()) [[unlikely]] {
    return ReadWithFaults(*FsOf(req), req, disk, size, offset);
  }
  if (size >= kSpliceMinBytes && size <= kMaxReadBytes && offset % kPageSize == 0) {
    absl::StatusOr<size_t> n = disk.PrepareSplicedRead(offset, size);
    if (!n.ok()) return ReplyError(req, n.status());
    if (*n > 0) return (void)ReplySplicedRead(req, disk.store(), offset, *n);
  }
  char* buffer = ThreadBuffer(size);
  absl::StatusOr<size_t> n = disk.Read(offset, buffer, size);
  if (!n.ok()) return ReplyError(req, n.status());
  fuse_reply_buf(req, buffer, *n);
}

void OnWrite(fuse_req_t req, fuse_ino_t ino, const char* buf, size_t size, off_t off,
             fuse_file_info* fi) {
  OpenFile* of = FileOf(req, fi);
  if (of == nullptr) return (void)fuse_reply_err(req, EBADF);
  if (off < 0) return (void)fuse_reply_err(req, EINVAL);
  if (of->kind == NodeKind::kDiskFile) {
    // O_DSYNC/O_SYNC writes are flush points of the write cache (the kernel
    // sends no FSYNC after a FOPEN_DIRECT_IO write; the open flags say it).
    const bool fua = (fi->flags & O_DSYNC) != 0;
    if (of->disk->faults().active()) [[unlikely]] {
      return WriteWithFaults(*FsOf(req), req, *of->disk, buf, size, static_cast<uint64_t>(off),
                             fua);
    }
    absl::StatusOr<size_t> n = of->disk->Write(static_cast<uint64_t>(off), buf, size, fua);
    if (fua) PublishIfChanged(*FsOf(req), *of->disk);  // a flush point
    if (!n.ok()) return ReplyError(req, n.status());
    return (void)fuse_reply_write(req, *n);
  }
  Filesystem& fs = *FsOf(req);
  if (std::optional<int> done = DoneBefore(fs)) {
    if (*done != 0) return (void)fuse_reply_err(req, *done);
    return (void)fuse_reply_write(req, size);
  }
  absl::Status status =
      fs.control().Write(of->file->file, of->disk, static_cast<uint64_t>(off), {buf, size});
  fs.MaybeCrash("control-applied");  // done, not yet published: the resend redoes it
  // A control write may change a mode, a flag, the table or the cap.
  fs.PublishState();
  RecordDone(fs, StatusToErrno(status));
  if (!status.ok()) return ReplyError(req, status);
  fuse_reply_write(req, size);
}

void OnFlush(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  OpenFile* of = FileOf(req, fi);
  if (of == nullptr) return (void)fuse_reply_err(req, EBADF);
  if (of->kind != NodeKind::kDiskFile) return (void)fuse_reply_err(req, 0);
  const int err = Passthrough::ReportOverflow(*of->disk, of->for_write, &of->overflow_seen);
  FsOf(req)->opens().SetOverflowSeen(fi->fh, of->overflow_seen);
  FsOf(req)->control().Closed(*of->disk);
  fuse_reply_err(req, err);
}

void OnRelease(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  OpenFile* of = FileOf(req, fi);
  if (of == nullptr) return (void)fuse_reply_err(req, EBADF);
  if (of->kind == NodeKind::kDiskFile) {
    if (of->passthrough && of->for_write) of->disk->SyncBackingFile();
    FsOf(req)->control().Released(*of->disk, of->for_write, of->bypass_writer);
  }
  DropHandle(*FsOf(req), fi->fh);
  fuse_reply_err(req, 0);
}

void OnFsync(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info* fi) {
  OpenFile* of = FileOf(req, fi);
  if (of == nullptr) return (void)fuse_reply_err(req, EBADF);
  if (of->kind != NodeKind::kDiskFile) return (void)fuse_reply_err(req, 0);
  // A dax write past the end is found here too (ENOSPC); then the disk syncs.
  if (int err = Passthrough::ReportOverflow(*of->disk, of->for_write, &of->overflow_seen)) {
    FsOf(req)->opens().SetOverflowSeen(fi->fh, of->overflow_seen);
    return (void)fuse_reply_err(req, err);
  }
  int64_t reply_at = 0;
  absl::Status status = of->disk->Sync(&reply_at);  // fault injection's "flush" op
  PublishIfChanged(*FsOf(req), *of->disk);
  ReplyStatusAt(*FsOf(req), req, reply_at, std::move(status));
}

void OnOpendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Filesystem& fs = *FsOf(req);
  Node node = Resolve(fs.table(), ino);
  if (node.kind == NodeKind::kInvalid) return (void)fuse_reply_err(req, ENOENT);
  if (!IsDirectory(node.kind)) return (void)fuse_reply_err(req, ENOTDIR);
  fi->fh = 0;
  fuse_reply_open(req, fi);
}

void OnReaddir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  Filesystem& fs = *FsOf(req);
  Node node = Resolve(fs.table(), ino);
  if (node.kind == NodeKind::kInvalid) return (void)fuse_reply_err(req, ENOENT);
  if (!IsDirectory(node.kind)) return (void)fuse_reply_err(req, ENOTDIR);
  const std::vector<DirEntry> entries = ListDirectory(fs.table(), node);
  std::string buf(size, '\0');
  size_t used = 0;
  for (size_t i = static_cast<size_t>(std::max<off_t>(off, 0)); i < entries.size(); ++i) {
    struct stat st = {};
    st.st_ino = entries[i].ino;
    st.st_mode = entries[i].is_dir ? S_IFDIR : S_IFREG;
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
  st.f_namemax = kMaxNameBytes;
  fuse_reply_statfs(req, &st);
}

void OnIoctl(fuse_req_t req, fuse_ino_t ino, unsigned int cmd, void* arg, fuse_file_info* fi,
             unsigned flags, const void* in_buf, size_t in_bufsz, size_t out_bufsz) {
  OpenFile* of = FileOf(req, fi);
  if (of == nullptr || of->kind != NodeKind::kDiskFile) return (void)fuse_reply_err(req, ENOTTY);
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
      absl::Status status = FsOf(req)->control().FlushBuffers(disk, CallerOf(req, disk, fi));
      if (!status.ok()) return ReplyError(req, status);
      return (void)fuse_reply_ioctl(req, 0, nullptr, 0);
    }
    default:
      // Includes the _IO() block ioctls (BLKGETSIZE, BLKSSZGET, BLKROSET...):
      // FUSE carries no data for an ioctl whose number encodes no size, so a
      // success would leave the caller's buffer unset (docs/design.md, Errors).
      return (void)fuse_reply_err(req, ENOTTY);
  }
}

void OnFallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
                 fuse_file_info* fi) {
  OpenFile* of = FileOf(req, fi);
  if (of == nullptr) return (void)fuse_reply_err(req, EBADF);
  if (of->kind != NodeKind::kDiskFile) return (void)fuse_reply_err(req, EOPNOTSUPP);
  if (offset < 0 || length <= 0) return (void)fuse_reply_err(req, EINVAL);
  // Never ENOSYS: the kernel would turn fallocate off for the whole mount.
  int64_t reply_at = 0;
  absl::Status status = of->disk->Fallocate(mode, static_cast<uint64_t>(offset),
                                            static_cast<uint64_t>(length), &reply_at);
  ReplyStatusAt(*FsOf(req), req, reply_at, std::move(status));
}

void OnLseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, fuse_file_info* fi) {
  OpenFile* of = FileOf(req, fi);
  if (of == nullptr) return (void)fuse_reply_err(req, EBADF);
  if (of->kind != NodeKind::kDiskFile) return (void)fuse_reply_err(req, EINVAL);
  if (off < 0) return (void)fuse_reply_err(req, ENXIO);
  // The kernel handles SEEK_SET/CUR/END itself.
  if (whence != SEEK_DATA && whence != SEEK_HOLE) return (void)fuse_reply_err(req, EINVAL);
  Disk& disk = *of->disk;
  const uint64_t offset = static_cast<uint64_t>(off);
  if (disk.mode() == DataMode::kNull) {
    // null mode holds nothing: all hole.
    if (offset >= disk.size_bytes()) return (void)fuse_reply_err(req, ENXIO);
    if (whence == SEEK_DATA) return (void)fuse_reply_err(req, ENXIO);
    return (void)fuse_reply_lseek(req, off);
  }
  absl::StatusOr<uint64_t> pos =
      whence == SEEK_DATA ? disk.store().SeekData(offset) : disk.store().SeekHole(offset);
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

const fuse_lowlevel_ops* Filesystem::Ops() { return &kOps; }

void Filesystem::RestoreOpenFiles() {
  size_t disks = 0, controls = 0, stale = 0;
  for (const auto& [handle, info] : opens().Live()) {
    std::shared_ptr<Disk> disk = info.disk_id ? table().FindById(info.disk_id) : nullptr;
    auto* of = new OpenFile{};
    of->disk = disk;
    of->for_write = info.for_write;
    of->passthrough = info.passthrough;
    of->bypass_writer = info.bypass_writer;
    of->overflow_seen = info.overflow_seen;
    if (info.kind == OpenInfo::kDisk && disk) {
      of->kind = NodeKind::kDiskFile;
      disk->AdoptOpen(info.for_write, info.bypass_writer);
      ++disks;
    } else if (info.kind == OpenInfo::kControl && info.control_file < std::size(kControlFiles) &&
               (disk || kControlFiles[info.control_file].scope == ControlScope::kGlobal)) {
      of->kind = NodeKind::kControlFile;
      of->file = &kControlFiles[info.control_file];
      // What a read returns is made again (the old text died with the worker).
      if (of->file->readable) of->content = control().Content(of->file->file, disk.get());
      ++controls;
    } else {
      // The disk is gone (deleted while the worker died): the handle is
      // forgotten, and every request on it, RELEASE too, gets EBADF.
      delete of;
      opens().Remove(handle);
      ++stale;
      continue;
    }
    open_files()[handle - 1].store(of, std::memory_order_release);
  }
  Log("restored ", disks, " disk open(s) and ", controls, " control file open(s) the kernel holds",
      stale ? absl::StrCat(" (", stale, " on disks that are gone)") : std::string());
}

}  // namespace ramdiskfs
