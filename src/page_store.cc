#include "ramdiskfs/page_store.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "absl/strings/str_cat.h"
#include "ramdiskfs/size.h"
#include "ramdiskfs/status.h"

namespace ramdiskfs {

absl::StatusOr<std::unique_ptr<PageStore>> PageStore::Create(MemoryPool* pool,
                                                             std::string_view name,
                                                             uint64_t size_bytes) {
  if (size_bytes > kMaxDiskBytes || size_bytes % kLogicalBlockSize != 0) {
    return absl::InvalidArgumentError(absl::StrCat("bad disk size ", size_bytes));
  }
  RDFS_ASSIGN_OR_RETURN(int fd, pool->CreateFile(name));
  if (ftruncate(fd, static_cast<off_t>(size_bytes)) != 0) {
    int err = errno;
    close(fd);
    return ErrnoStatus(err, "ftruncate(backing file)");
  }
  return std::unique_ptr<PageStore>(new PageStore(pool, fd, size_bytes));
}

absl::StatusOr<std::unique_ptr<PageStore>> PageStore::Adopt(MemoryPool* pool, int fd) {
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int err = errno;
    close(fd);
    return ErrnoStatus(err, "fstat(adopted backing file)");
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size > kMaxDiskBytes || size % kLogicalBlockSize != 0) {
    close(fd);
    return ErrnoStatus(EINVAL, absl::StrCat("adopted backing file has a bad size ", size));
  }
  std::unique_ptr<PageStore> store(new PageStore(pool, fd, size));
  if (!pool->kernel_enforces_cap()) store->SyncAccounting(0);  // its pages count again
  return store;
}

PageStore::PageStore(MemoryPool* pool, int fd, uint64_t size_bytes)
    : pool_(pool), fd_(fd), size_bytes_(size_bytes) {}

PageStore::~PageStore() {
  if (!pool_->kernel_enforces_cap()) {
    std::lock_guard lock(accounting_mu_);
    pool_->Commit(0, -accounted_bytes_);
  }
  close(fd_);
}

absl::StatusOr<size_t> PageStore::Read(uint64_t offset, char* buf, size_t length) const {
  const uint64_t size = size_bytes();
  if (offset >= size) return 0;
  length = static_cast<size_t>(std::min<uint64_t>(length, size - offset));
  size_t done = 0;
  while (done < length) {
    ssize_t n = pread(fd_, buf + done, length - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, "pread(backing file)");
    }
    if (n == 0) {  // backing file shorter than the disk (mid-resize): zeros
      std::fill(buf + done, buf + length, 0);
      break;
    }
    done += static_cast<size_t>(n);
  }
  return length;
}

uint64_t PageStore::UnallocatedBytes(uint64_t offset, uint64_t length) const {
  // Walks the holes with SEEK_HOLE/SEEK_DATA, counting whole pages.
  const uint64_t first = offset / kPageSize * kPageSize;
  const uint64_t end = offset + length;
  uint64_t holes = 0;
  uint64_t pos = first;
  while (pos < end) {
    off_t hole = lseek(fd_, static_cast<off_t>(pos), SEEK_HOLE);
    if (hole < 0 || static_cast<uint64_t>(hole) >= end) break;
    off_t data = lseek(fd_, hole, SEEK_DATA);
    uint64_t hole_end = data < 0 ? end : std::min<uint64_t>(data, end);
    uint64_t hole_start = static_cast<uint64_t>(hole) / kPageSize * kPageSize;
    uint64_t hole_end_page = (hole_end + kPageSize - 1) / kPageSize * kPageSize;
    holes += hole_end_page - hole_start;
    pos = hole_end_page;
  }
  return holes;
}

void PageStore::SyncAccounting(uint64_t reserved) {
  std::lock_guard lock(accounting_mu_);
  const int64_t now = static_cast<int64_t>(allocated_bytes());
  pool_->Commit(reserved, now - accounted_bytes_);
  accounted_bytes_ = now;
}

absl::StatusOr<size_t> PageStore::Write(uint64_t offset, const char* buf, size_t length) {
  const uint64_t size = size_bytes();
  if (offset >= size) {
    return ErrnoStatus(ENOSPC, absl::StrCat("write at ", offset, " is past the end (", size, ")"));
  }
  length = static_cast<size_t>(std::min<uint64_t>(length, size - offset));
  if (length == 0) return 0;
  uint64_t reserved = 0;
  if (!pool_->kernel_enforces_cap()) {
    // Reserve the worst case (every page new, plus a straddled page); near
    // the cap, reserve only the pages that really are holes.
    uint64_t worst = (length / kPageSize + 2) * kPageSize;
    if (pool_->Reserve(worst).ok()) {
      reserved = worst;
    } else {
      uint64_t needed = UnallocatedBytes(offset, length);
      RDFS_RETURN_IF_ERROR(pool_->Reserve(needed));
      reserved = needed;
    }
  }
  size_t done = 0;
  absl::Status status;
  while (done < length) {
    ssize_t n = pwrite(fd_, buf + done, length - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      status = ErrnoStatus(errno, "pwrite(backing file)");
      break;
    }
    done += static_cast<size_t>(n);
  }
  if (!pool_->kernel_enforces_cap()) SyncAccounting(reserved);
  if (done > 0) return done;  // a short write, as write(2) reports it
  return status;
}

absl::StatusOr<uint64_t> PageStore::ClipRange(uint64_t offset, uint64_t length) const {
  const uint64_t size = size_bytes();
  if (offset + length < offset) return absl::InvalidArgumentError("offset + length overflows");
  if (offset > size) {
    return absl::InvalidArgumentError(
        absl::StrCat("offset ", offset, " is past the end (", size, ")"));
  }
  return std::min<uint64_t>(length, size - offset);
}

absl::Status PageStore::Discard(uint64_t offset, uint64_t length) {
  RDFS_ASSIGN_OR_RETURN(length, ClipRange(offset, length));
  if (length == 0) return absl::OkStatus();
  if (fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset),
                static_cast<off_t>(length)) != 0) {
    return ErrnoStatus(errno, "fallocate(PUNCH_HOLE)");
  }
  if (!pool_->kernel_enforces_cap()) SyncAccounting(0);
  return absl::OkStatus();
}

absl::Status PageStore::Allocate(uint64_t offset, uint64_t length) {
  RDFS_ASSIGN_OR_RETURN(length, ClipRange(offset, length));
  if (length == 0) return absl::OkStatus();
  uint64_t reserved = 0;
  if (!pool_->kernel_enforces_cap()) {
    reserved = UnallocatedBytes(offset, length);
    RDFS_RETURN_IF_ERROR(pool_->Reserve(reserved));
  }
  absl::Status status;
  if (fallocate(fd_, FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset), static_cast<off_t>(length)) !=
      0) {
    status = ErrnoStatus(errno, "fallocate(allocate)");
  }
  if (!pool_->kernel_enforces_cap()) SyncAccounting(reserved);
  return status;
}

absl::Status PageStore::FreeAll() {
  std::lock_guard lock(resize_mu_);
  const uint64_t size = size_bytes();
  if (size == 0) return absl::OkStatus();
  // Punching the whole file frees every page; what a kernel mapping of the
  // file still shows is dropped by the same call.
  if (fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, static_cast<off_t>(size)) !=
      0) {
    return ErrnoStatus(errno, "fallocate(PUNCH_HOLE, whole disk)");
  }
  if (!pool_->kernel_enforces_cap()) SyncAccounting(0);
  return absl::OkStatus();
}

absl::Status PageStore::Resize(uint64_t new_size) {
  if (new_size > kMaxDiskBytes || new_size % kLogicalBlockSize != 0) {
    return absl::InvalidArgumentError(absl::StrCat("bad disk size ", new_size));
  }
  std::lock_guard lock(resize_mu_);
  const uint64_t old_size = size_bytes();
  if (new_size < old_size) {
    // Readers clip to the size before they touch the file: lower it first.
    size_bytes_.store(new_size, std::memory_order_release);
  }
  if (ftruncate(fd_, static_cast<off_t>(new_size)) != 0) {
    int err = errno;
    size_bytes_.store(old_size, std::memory_order_release);
    return ErrnoStatus(err, "ftruncate(backing file)");
  }
  size_bytes_.store(new_size, std::memory_order_release);
  if (!pool_->kernel_enforces_cap()) SyncAccounting(0);
  return absl::OkStatus();
}

absl::Status PageStore::GrowTo(uint64_t new_size) {
  if (new_size > kMaxDiskBytes || new_size % kLogicalBlockSize != 0) {
    return absl::InvalidArgumentError(absl::StrCat("bad disk size ", new_size));
  }
  std::lock_guard lock(resize_mu_);
  if (new_size <= size_bytes()) return absl::OkStatus();
  if (ftruncate(fd_, static_cast<off_t>(new_size)) != 0) {
    return ErrnoStatus(errno, "ftruncate(backing file) to grow");
  }
  size_bytes_.store(new_size, std::memory_order_release);
  if (!pool_->kernel_enforces_cap()) SyncAccounting(0);
  return absl::OkStatus();
}

void PageStore::ShrinkGrowth(uint64_t grown_to, uint64_t new_size) {
  std::lock_guard lock(resize_mu_);
  if (size_bytes() != grown_to || new_size >= grown_to) return;
  size_bytes_.store(new_size, std::memory_order_release);
  if (ftruncate(fd_, static_cast<off_t>(new_size)) != 0) {
    size_bytes_.store(grown_to, std::memory_order_release);
  }
  if (!pool_->kernel_enforces_cap()) SyncAccounting(0);
}

absl::StatusOr<bool> PageStore::AdoptBackingSize() {
  struct stat st;
  if (fstat(fd_, &st) != 0) return ErrnoStatus(errno, "fstat(backing file)");
  const uint64_t backing = static_cast<uint64_t>(st.st_size);
  std::lock_guard lock(resize_mu_);
  if (backing <= size_bytes()) return false;
  const uint64_t rounded =
      backing >= kMaxDiskBytes ? kMaxDiskBytes : *RoundUp(backing, kLogicalBlockSize);
  if (rounded != backing && ftruncate(fd_, static_cast<off_t>(rounded)) != 0) {
    return ErrnoStatus(errno, "ftruncate(backing file) to a whole sector");
  }
  size_bytes_.store(rounded, std::memory_order_release);
  return true;
}

absl::StatusOr<uint64_t> PageStore::SeekData(uint64_t offset) const {
  const uint64_t size = size_bytes();
  if (offset >= size) return ErrnoStatus(ENXIO, "SEEK_DATA at or past the end");
  off_t pos = lseek(fd_, static_cast<off_t>(offset), SEEK_DATA);
  if (pos < 0) return ErrnoStatus(errno, "lseek(SEEK_DATA)");
  if (static_cast<uint64_t>(pos) >= size) return ErrnoStatus(ENXIO, "no data after offset");
  return static_cast<uint64_t>(pos);
}

absl::StatusOr<uint64_t> PageStore::SeekHole(uint64_t offset) const {
  const uint64_t size = size_bytes();
  if (offset >= size) return ErrnoStatus(ENXIO, "SEEK_HOLE at or past the end");
  off_t pos = lseek(fd_, static_cast<off_t>(offset), SEEK_HOLE);
  if (pos < 0) return ErrnoStatus(errno, "lseek(SEEK_HOLE)");
  return std::min<uint64_t>(static_cast<uint64_t>(pos), size);
}

uint64_t PageStore::allocated_bytes() const {
  struct stat st;
  if (fstat(fd_, &st) != 0) return 0;
  return static_cast<uint64_t>(st.st_blocks) * 512;
}

absl::StatusOr<uint64_t> PageStore::TrimOverflow() {
  struct stat st;
  if (fstat(fd_, &st) != 0) return ErrnoStatus(errno, "fstat(backing file)");
  std::lock_guard lock(resize_mu_);
  const uint64_t size = size_bytes();
  if (static_cast<uint64_t>(st.st_size) <= size) return 0;
  if (ftruncate(fd_, static_cast<off_t>(size)) != 0) {
    return ErrnoStatus(errno, "ftruncate(backing file) after a write past the end");
  }
  return static_cast<uint64_t>(st.st_size) - size;
}

}  // namespace ramdiskfs
