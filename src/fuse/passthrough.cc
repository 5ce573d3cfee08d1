#include "src/fuse/passthrough.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "ramdiskfs/log.h"
#include "src/fuse/custom_io.h"
#include "src/fuse/kernel_abi.h"

namespace ramdiskfs {
namespace {

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

}  // namespace

Passthrough::Passthrough(DiskTable* table, bool dax_required)
    : table_(table), dax_required_(dax_required) {}

ConnectionFacts Passthrough::Facts() const {
  return {connection_.initialized.load(), connection_.passthrough.load(),
          connection_.allow_mmap.load()};
}

void Passthrough::ConfigureInit(fuse_conn_info* conn) {
  // Passthrough and the writeback cache exclude each other (the kernel turns
  // passthrough off for a connection with writeback caching): never ask for
  // writeback. libfuse's own splice is not asked for either: the custom io
  // does its own splicing of large read replies (custom_io.h).
  conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
  if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC) conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
  if (conn->capable & FUSE_CAP_IOCTL_DIR) conn->want &= ~FUSE_CAP_IOCTL_DIR;
  // Async direct I/O: an aio/io_uring O_DIRECT request, and a loop device's
  // (its worker submits aio), is sent without waiting for the one before,
  // so queue depth reaches the daemon: through a loop device with 1 ms of
  // injected latency, QD16 completes 14x QD1's writes instead of 1x. The
  // price (docs/design.md, "Async direct I/O"): the kernel turns a short
  // reply to such a write into EIO (fuse_get_res_by_io), so an O_DIRECT
  // write crossing the end of a cached-mode disk, or an aio one on a direct
  // disk, fails with EIO instead of being cut short. Nothing is reported
  // written that was dropped, and a loop device, which would take a short
  // write as complete, sees the error.
  if (conn->capable & FUSE_CAP_ASYNC_DIO) conn->want |= FUSE_CAP_ASYNC_DIO;
  conn->max_write = kMaxWriteBytes;
  conn->max_read = kMaxReadBytes;  // must equal the max_read mount option (session.cc)
  conn->max_background = 64;
  conn->congestion_threshold = 48;
  conn->time_gran = 1;
}

bool Passthrough::AfterInit(int device_fd) {
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
  if (dax_required_) {
    Log("dax mode was asked for but is unavailable (", reason, ")");
    fatal_ = true;
    return false;
  }
  Log("dax mode unavailable (", reason, "): disks in dax mode fall back to direct");
  return true;
}

void Passthrough::WaitUntilInitialized() {
  if (connection_.initialized.load(std::memory_order_acquire)) return;
  std::unique_lock lock(init_mu_);
  init_cv_.wait_for(lock, std::chrono::seconds(5),
                    [this] { return connection_.initialized.load(); });
}

DiskOpenReply Passthrough::OpenFlags(Disk& disk, int access) {
  DiskOpenReply reply;
  switch (disk.mode()) {
    case DataMode::kDax:
      reply.backing_id = EnsureBackingId(disk);
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
      // A volatile cache must see every write, so no passthrough: a shared
      // mapping then goes through FUSE_DIRECT_IO_ALLOW_MMAP (the FUSE page
      // cache), its dirty pages reach us as WRITEs and msync() as FSYNC
      // (docs/crashtest.md). Changing `cache` needs the disk closed, so an
      // inode never mixes passthrough and plain opens (FUSE-FACTS 9.4).
      if (disk.cache().settings().mode == CacheMode::kVolatile) break;
      // read()/write() stay with the daemon (FOPEN_DIRECT_IO wins over
      // passthrough for them), while a shared mmap maps the backing pages.
      reply.backing_id = EnsureBackingId(disk);
      if (reply.backing_id > 0) reply.flags |= abi::kOpenPassthrough;
      break;
    case DataMode::kCached:
      reply.flags = abi::kOpenKeepCache;
      break;
    case DataMode::kNull:
      reply.flags = abi::kOpenDirectIo | abi::kOpenParallelDirectWrites;
      break;
  }
  // A passthrough open for reading and writing writes without the daemon:
  // in dax directly, in direct mode through a shared writable mapping.
  reply.bypass_writer = reply.backing_id > 0 && access == O_RDWR;
  return reply;
}

int Passthrough::EnsureBackingId(Disk& disk) {
  if (!connection_.passthrough) return 0;
  int id = disk.backing_id();
  if (id > 0) return id;
  // Two first opens may race here; registering twice would give the inode
  // two backings (the second open fails with EIO), so registrations are
  // serialised and the id checked again under the lock.
  std::lock_guard lock(register_mu_);
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

void Passthrough::ReleaseBackingId(Disk& disk) {
  int id = disk.backing_id();
  if (id <= 0) return;
  ioctl(device_fd_, abi::kDevIocBackingClose, &id);
  disk.set_backing_id(0);
}

int Passthrough::ReplyOpen(fuse_req_t req, const fuse_entry_param* entry, uint64_t fh,
                           const DiskOpenReply& how) {
  abi::OpenOut open_out = {fh, how.flags, how.backing_id};
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

int Passthrough::ReportOverflow(Disk& disk, bool for_write, uint64_t* seen) {
  if (!for_write) return 0;
  disk.SyncBackingFile();
  const uint64_t events = disk.overflow_events();
  if (events == *seen) return 0;
  *seen = events;
  return ENOSPC;
}

}  // namespace ramdiskfs
