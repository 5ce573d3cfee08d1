// The pages of one disk: a sparse, page-granular store in a shmem file.
//
// The store is one backing file from the MemoryPool (an O_TMPFILE in the
// private tmpfs instance, or a memfd). shmem gives brd's semantics for free
// and lets the kernel map the same pages: a page takes RAM only once written
// (allocate on write), a hole reads as zeros without allocating, punching a
// hole frees whole pages and zeroes partial ones, and SEEK_DATA/SEEK_HOLE
// report the allocated ranges. The backing file's size always equals the
// disk's size (outside a window described at TrimOverflow()).
//
// Concurrency: Read, Write, Discard, Allocate and the Seek calls may run in
// parallel from any number of threads; the kernel does the page-level
// locking (reads take no inode lock; writes take the shmem inode lock — see
// docs/design.md for what that costs). Resize and FreeAll are serialised
// against each other by an internal mutex, and a shrinking Resize must only
// run when no one else uses the disk (Disk enforces that).

#ifndef RAMDISKFS_PAGE_STORE_H_
#define RAMDISKFS_PAGE_STORE_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string_view>

#include "absl/status/statusor.h"
#include "ramdiskfs/memory_pool.h"

namespace ramdiskfs {

class PageStore {
 public:
  // A store of `size_bytes` (a multiple of 512, <= kMaxDiskBytes) with no
  // page allocated. `pool` must outlive the store. Errors: those of
  // MemoryPool::CreateFile and ftruncate.
  static absl::StatusOr<std::unique_ptr<PageStore>> Create(MemoryPool* pool, std::string_view name,
                                                           uint64_t size_bytes);
  // A store over an existing backing file `fd` (a restarted worker; taken
  // over, closed on error). The size is the file's. Errors: fstat; EINVAL
  // for a size that is not a multiple of 512 or above kMaxDiskBytes.
  static absl::StatusOr<std::unique_ptr<PageStore>> Adopt(MemoryPool* pool, int fd);
  ~PageStore();
  PageStore(const PageStore&) = delete;
  PageStore& operator=(const PageStore&) = delete;

  // The backing file (for FUSE passthrough and mmap). Owned by the store.
  int fd() const { return fd_; }
  // The pool the pages come from (the write cache takes its files from it).
  MemoryPool* pool() const { return pool_; }
  uint64_t size_bytes() const { return size_bytes_.load(std::memory_order_acquire); }

  // Reads up to `length` bytes at `offset` into `buf`; stops at the end of the
  // disk. Returns the count (0 at or past the end). Holes read as zeros and
  // allocate nothing. Errors: errno of pread.
  absl::StatusOr<size_t> Read(uint64_t offset, char* buf, size_t length) const;

  // Writes `length` bytes at `offset`, cut short at the end of the disk.
  // Returns the count written. Errors: ENOSPC if `offset` is at or past the
  // end, or when the memory cap leaves no page for the first byte (a write
  // that fills the cap part-way returns the short count instead); errno of
  // pwrite otherwise.
  absl::StatusOr<size_t> Write(uint64_t offset, const char* buf, size_t length);

  // Frees the whole pages in [offset, offset+length) and zeroes the partial
  // ones at either end (fallocate PUNCH_HOLE). The range is cut at the end of
  // the disk. Errors: InvalidArgument if offset+length overflows or offset is
  // past the end; errno of fallocate.
  absl::Status Discard(uint64_t offset, uint64_t length);

  // Allocates (zero-filled) pages for [offset, offset+length), cut at the
  // end. Errors: ENOSPC when the cap is reached; as Discard otherwise.
  absl::Status Allocate(uint64_t offset, uint64_t length);

  // Frees every page (BLKFLSBUF). The size does not change.
  absl::Status FreeAll();

  // Sets the size to `new_size` (a multiple of 512). Shrinking frees the
  // pages past the new end (a partial last page is zeroed past the end);
  // growing allocates nothing. Errors: InvalidArgument above kMaxDiskBytes;
  // errno of ftruncate.
  absl::Status Resize(uint64_t new_size);

  // Grows the size to `new_size` (a multiple of 512) if it is larger; never
  // shrinks (concurrent growers may race: the largest wins). Errors: as Resize.
  absl::Status GrowTo(uint64_t new_size);

  // Undoes a GrowTo(`grown_to`) whose write was cut short: sets the size to
  // `new_size` (a multiple of 512, below `grown_to`) if the size is still
  // `grown_to` (no other writer grew it since). Best effort.
  void ShrinkGrowth(uint64_t grown_to, uint64_t new_size);

  // A growing disk in dax mode: passthrough writes extend the backing file
  // without the daemon. Takes the backing file's size (rounded up to 512) as
  // the disk's. Returns true if the size changed.
  absl::StatusOr<bool> AdoptBackingSize();

  // lseek(SEEK_DATA / SEEK_HOLE) bounded by the disk size. SeekData returns
  // ENXIO (ErrnoStatus) when no data lies at or after `offset`; SeekHole
  // returns the disk size when the rest is data. Both return ENXIO for an
  // offset at or past the end.
  absl::StatusOr<uint64_t> SeekData(uint64_t offset) const;
  absl::StatusOr<uint64_t> SeekHole(uint64_t offset) const;

  // RAM held by this disk (allocated pages * 4096).
  uint64_t allocated_bytes() const;

  // FUSE passthrough (dax mode) writes go straight to the backing file, and
  // the kernel lets such a write extend it: it has no per-write hook and a
  // tmpfs file cannot be sealed. This cuts the backing file back to the disk
  // size, freeing what was written past the end. Returns the number of bytes
  // cut (0 almost always). Cheap: one fstat.
  absl::StatusOr<uint64_t> TrimOverflow();

 private:
  PageStore(MemoryPool* pool, int fd, uint64_t size_bytes);
  // `length` cut at the end of the disk. Errors: InvalidArgument if
  // offset+length overflows or offset is past the end.
  absl::StatusOr<uint64_t> ClipRange(uint64_t offset, uint64_t length) const;
  // Bytes in [offset, offset+length) not yet allocated (memfd pools only).
  uint64_t UnallocatedBytes(uint64_t offset, uint64_t length) const;
  // memfd pools: tells the pool how this file's allocation changed.
  void SyncAccounting(uint64_t reserved);

  MemoryPool* const pool_;
  const int fd_;
  std::atomic<uint64_t> size_bytes_;
  std::mutex resize_mu_;
  // memfd pools: the allocation last reported to the pool.
  std::mutex accounting_mu_;
  int64_t accounted_bytes_ ABSL_GUARDED_BY(accounting_mu_) = 0;
};

}  // namespace ramdiskfs

#endif  // RAMDISKFS_PAGE_STORE_H_
