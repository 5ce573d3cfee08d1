#include "ramdiskfs/memory_pool.h"

#include <fcntl.h>
#include <linux/mount.h>
#include <sys/mman.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "ramdiskfs/size.h"
#include "ramdiskfs/status.h"

namespace ramdiskfs {
namespace {

// glibc 2.36 declares these in <sys/mount.h>, which clashes with
// <linux/mount.h>; the raw syscalls avoid the clash.
int FsOpen(const char* fs_name, unsigned flags) { return syscall(SYS_fsopen, fs_name, flags); }
int FsConfig(int fd, unsigned cmd, const char* key, const void* value, int aux) {
  return syscall(SYS_fsconfig, fd, cmd, key, value, aux);
}
int FsMount(int fd, unsigned flags, unsigned attr) { return syscall(SYS_fsmount, fd, flags, attr); }
int FsPick(int dfd, const char* path, unsigned flags) {
  return syscall(SYS_fspick, dfd, path, flags);
}

absl::Status SetString(int fs_fd, const char* key, const std::string& value) {
  if (FsConfig(fs_fd, FSCONFIG_SET_STRING, key, value.c_str(), 0) != 0) {
    return ErrnoStatus(errno, absl::StrCat("fsconfig(tmpfs, ", key, "=", value, ")"));
  }
  return absl::OkStatus();
}

absl::StatusOr<int> MountPrivateTmpfs(uint64_t max_bytes) {
  int fs_fd = FsOpen("tmpfs", FSOPEN_CLOEXEC);
  if (fs_fd < 0) return ErrnoStatus(errno, "fsopen(tmpfs)");
  absl::Cleanup close_fs = [fs_fd] { close(fs_fd); };
  RDFS_RETURN_IF_ERROR(SetString(fs_fd, "size", std::to_string(max_bytes)));
  // One inode per disk; a generous fixed number keeps the instance from
  // running out of inodes before it runs out of pages.
  RDFS_RETURN_IF_ERROR(SetString(fs_fd, "nr_inodes", "1048576"));
  RDFS_RETURN_IF_ERROR(SetString(fs_fd, "mode", "0700"));
  RDFS_RETURN_IF_ERROR(SetString(fs_fd, "huge", "never"));
  // noswap (Linux 6.4+): a RAM disk's pages stay in RAM, as brd's do. Older
  // kernels do not know the flag; their tmpfs may swap, which is harmless.
  (void)FsConfig(fs_fd, FSCONFIG_SET_FLAG, "noswap", nullptr, 0);
  if (FsConfig(fs_fd, FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) != 0) {
    return ErrnoStatus(errno, "fsconfig(tmpfs, create)");
  }
  int mount_fd = FsMount(fs_fd, FSMOUNT_CLOEXEC, MOUNT_ATTR_NODEV | MOUNT_ATTR_NOSUID);
  if (mount_fd < 0) return ErrnoStatus(errno, "fsmount(tmpfs)");
  return mount_fd;
}

}  // namespace

uint64_t MemoryPool::PhysicalRamBytes() {
  struct sysinfo info;
  if (sysinfo(&info) != 0) return 0;
  return static_cast<uint64_t>(info.totalram) * info.mem_unit;
}

uint64_t MemoryPool::DefaultMaxBytes() { return PhysicalRamBytes() / 2 / kPageSize * kPageSize; }

absl::StatusOr<uint64_t> MemoryPool::CheckedCap(uint64_t bytes) {
  RDFS_ASSIGN_OR_RETURN(bytes, RoundUp(bytes, kPageSize));
  if (bytes == 0) return absl::InvalidArgumentError("max_memory must be at least 4096");
  const uint64_t ram = PhysicalRamBytes();
  if (ram != 0 && bytes > ram) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_memory ", bytes, " is larger than the machine's RAM (", ram, " bytes)"));
  }
  return bytes;
}

absl::StatusOr<std::unique_ptr<MemoryPool>> MemoryPool::Create(StoreKind kind, uint64_t max_bytes) {
  RDFS_ASSIGN_OR_RETURN(max_bytes, CheckedCap(max_bytes));
  if (kind == StoreKind::kTmpfs || kind == StoreKind::kAuto) {
    absl::StatusOr<int> mount_fd = MountPrivateTmpfs(max_bytes);
    if (mount_fd.ok()) {
      return std::unique_ptr<MemoryPool>(new MemoryPool(StoreKind::kTmpfs, *mount_fd, max_bytes));
    }
    if (kind == StoreKind::kTmpfs) return mount_fd.status();
  }
  return std::unique_ptr<MemoryPool>(new MemoryPool(StoreKind::kMemfd, -1, max_bytes));
}

std::unique_ptr<MemoryPool> MemoryPool::Adopt(StoreKind kind, int mount_fd, uint64_t max_bytes) {
  return std::unique_ptr<MemoryPool>(new MemoryPool(kind, mount_fd, max_bytes));
}

MemoryPool::MemoryPool(StoreKind kind, int mount_fd, uint64_t max_bytes)
    : kind_(kind), mount_fd_(mount_fd), max_bytes_(max_bytes) {}

MemoryPool::~MemoryPool() {
  if (mount_fd_ >= 0) close(mount_fd_);
}

absl::StatusOr<int> MemoryPool::CreateFile(std::string_view name) {
  int fd;
  if (kind_ == StoreKind::kTmpfs) {
    fd = openat(mount_fd_, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0) return ErrnoStatus(errno, "open(O_TMPFILE) in the private tmpfs");
  } else {
    std::string label = absl::StrCat("ramdiskfs:", std::string(name));
    fd = memfd_create(label.c_str(), MFD_CLOEXEC);
    if (fd < 0) return ErrnoStatus(errno, "memfd_create");
  }
  return fd;
}

uint64_t MemoryPool::used_bytes() const {
  if (kind_ == StoreKind::kTmpfs) {
    struct statvfs st;
    if (fstatvfs(mount_fd_, &st) != 0) return 0;
    return (static_cast<uint64_t>(st.f_blocks) - st.f_bfree) * st.f_frsize;
  }
  int64_t used = memfd_used_.load(std::memory_order_relaxed);
  return used < 0 ? 0 : static_cast<uint64_t>(used);
}

absl::Status MemoryPool::SetMaxBytes(uint64_t bytes) {
  std::lock_guard lock(reconfigure_mu_);
  RDFS_ASSIGN_OR_RETURN(bytes, CheckedCap(bytes));
  const uint64_t used = used_bytes();
  if (bytes < used) {
    return ErrnoStatus(EBUSY, absl::StrCat("max_memory ", bytes, " is below the ", used,
                                           " bytes the disks hold now"));
  }
  if (kind_ == StoreKind::kTmpfs) {
    int pick_fd = FsPick(mount_fd_, "", FSPICK_EMPTY_PATH | FSPICK_CLOEXEC);
    if (pick_fd < 0) return ErrnoStatus(errno, "fspick(tmpfs)");
    absl::Cleanup close_pick = [pick_fd] { close(pick_fd); };
    RDFS_RETURN_IF_ERROR(SetString(pick_fd, "size", std::to_string(bytes)));
    if (FsConfig(pick_fd, FSCONFIG_CMD_RECONFIGURE, nullptr, nullptr, 0) != 0) {
      // tmpfs refuses a size below its used blocks with EINVAL; pages may
      // have been written since the check above.
      int err = errno == EINVAL ? EBUSY : errno;
      return ErrnoStatus(err, "reconfigure tmpfs size");
    }
  }
  max_bytes_.store(bytes, std::memory_order_relaxed);
  return absl::OkStatus();
}

absl::Status MemoryPool::Reserve(uint64_t bytes) {
  if (kind_ == StoreKind::kTmpfs) return absl::OkStatus();
  const uint64_t reserved = memfd_reserved_.fetch_add(bytes, std::memory_order_acq_rel) + bytes;
  if (used_bytes() + reserved > max_bytes()) {
    memfd_reserved_.fetch_sub(bytes, std::memory_order_acq_rel);
    return ErrnoStatus(ENOSPC, "memory cap (max_memory) reached");
  }
  return absl::OkStatus();
}

void MemoryPool::Commit(uint64_t reserved, int64_t allocated_delta) {
  if (kind_ == StoreKind::kTmpfs) return;
  memfd_used_.fetch_add(allocated_delta, std::memory_order_acq_rel);
  memfd_reserved_.fetch_sub(reserved, std::memory_order_acq_rel);
}

}  // namespace ramdiskfs
