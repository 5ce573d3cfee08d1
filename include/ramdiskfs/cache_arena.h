// The memory of a disk's volatile write cache (write_cache.h): one file of
// the disk's MemoryPool, mapped MAP_SHARED by the daemon and handed out in
// chunks of kChunkBytes, so that the cache copies its pre-images and log data
// with memcpy instead of a pread/pwrite pair each.
//
// The pages still count against the cap as any disk's do, because they are
// pages of a pool file: a chunk is allocated with PageStore::Allocate
// (fallocate; tmpfs: the kernel refuses it at the cap, memfd: the pool's
// Reserve/Commit accounting) before the daemon touches it, and the daemon
// never touches a page of the mapping that is not allocated (on tmpfs at the
// cap that would be a SIGBUS; on a memfd it would escape the accounting).
// The mapping is pre-faulted per chunk (MADV_POPULATE_WRITE), so the first
// touch of a slot is not a page fault each.
//
// A chunk is either idle (allocated, on the idle list), taken (allocated,
// the caller's), or a hole (not allocated). Give() keeps a chunk allocated
// for reuse (no punch, no fallocate: the steady state of a write-back cache);
// Trim() frees idle chunks beyond a reserve (after a flush); Free() and
// DiscardPage() free pages at once (a power cut's rebuild, which must not
// need more room than the cache held).
//
// Not thread-safe: the write cache calls it under its own lock.

#ifndef RAMDISKFS_CACHE_ARENA_H_
#define RAMDISKFS_CACHE_ARENA_H_

#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "ramdiskfs/memory_pool.h"
#include "ramdiskfs/page_store.h"

namespace ramdiskfs {

class CacheArena {
 public:
  static constexpr uint64_t kChunkBytes = 256 * 1024;

  // An arena with no chunk allocated, able to hold up to the machine's RAM
  // (the most a pool may be capped at). Errors: those of PageStore::Create
  // and mmap.
  static absl::StatusOr<std::unique_ptr<CacheArena>> Create(MemoryPool* pool,
                                                            std::string_view name);
  ~CacheArena();
  CacheArena(const CacheArena&) = delete;
  CacheArena& operator=(const CacheArena&) = delete;

  // A chunk whose pages are allocated and mapped: an idle one if any (its
  // bytes are whatever they were), else a newly allocated one (zeros).
  // Errors: ENOSPC at the pool's cap or when the arena is full; then nothing
  // changed.
  absl::StatusOr<uint32_t> Take();
  // A taken chunk back to the idle list, still allocated. A chunk with a
  // page discarded (DiscardPage) is freed instead.
  void Give(uint32_t chunk);
  // Frees a taken chunk's pages now.
  void Free(uint32_t chunk);
  // Frees the page at `page` (page-aligned, inside a taken chunk) now; the
  // chunk must not be touched there again and is freed when given back.
  void DiscardPage(const char* page);
  // Frees the idle chunks beyond the `keep` lowest.
  void Trim(size_t keep);

  char* data(uint32_t chunk) const { return base_ + static_cast<uint64_t>(chunk) * kChunkBytes; }
  size_t idle_chunks() const { return idle_.size(); }
  // RAM held by the arena's file.
  uint64_t allocated_bytes() const { return file_->allocated_bytes(); }

 private:
  CacheArena(std::unique_ptr<PageStore> file, char* base, uint64_t capacity);
  // Punches [first, first+count) chunks.
  void Punch(uint32_t first, uint32_t count);

  const std::unique_ptr<PageStore> file_;
  char* const base_;
  const uint64_t capacity_;      // bytes mapped (the file's size)
  std::vector<uint32_t> idle_;   // allocated, not taken
  std::vector<uint32_t> holes_;  // below next_, not allocated
  std::vector<bool> discarded_;  // per chunk: a page was discarded while taken
  uint32_t next_ = 0;            // chunks at or above it were never used
};

}  // namespace ramdiskfs

#endif  // RAMDISKFS_CACHE_ARENA_H_
