#include "ramdiskfs/cache_arena.h"

#include <sys/mman.h>

#include <algorithm>
#include <cerrno>

#include "ramdiskfs/size.h"
#include "ramdiskfs/status.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23  // Linux 5.14; older kernels say EINVAL
#endif

namespace ramdiskfs {

absl::StatusOr<std::unique_ptr<CacheArena>> CacheArena::Create(MemoryPool* pool,
                                                               std::string_view name) {
  // Address space only: a shared file mapping commits nothing, and no pool
  // can be capped above the machine's RAM.
  uint64_t capacity = std::max<uint64_t>(MemoryPool::PhysicalRamBytes(), 64 * kChunkBytes);
  capacity = std::min<uint64_t>(capacity / kChunkBytes * kChunkBytes,
                                uint64_t{1 << 20} * kChunkBytes);  // 256 GiB, chunk ids fit
  RDFS_ASSIGN_OR_RETURN(std::unique_ptr<PageStore> file, PageStore::Create(pool, name, capacity));
  void* base =
      mmap(nullptr, capacity, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, file->fd(), 0);
  if (base == MAP_FAILED) return ErrnoStatus(errno, "mmap(write cache arena)");
  return std::unique_ptr<CacheArena>(
      new CacheArena(std::move(file), static_cast<char*>(base), capacity));
}

CacheArena::CacheArena(std::unique_ptr<PageStore> file, char* base, uint64_t capacity)
    : file_(std::move(file)), base_(base), capacity_(capacity) {}

CacheArena::~CacheArena() { munmap(base_, capacity_); }

absl::StatusOr<uint32_t> CacheArena::Take() {
  if (!idle_.empty()) {
    const uint32_t chunk = idle_.back();
    idle_.pop_back();
    return chunk;
  }
  uint32_t chunk;
  const bool reuse_hole = !holes_.empty();
  if (reuse_hole) {
    chunk = holes_.back();
  } else {
    if ((static_cast<uint64_t>(next_) + 1) * kChunkBytes > capacity_) {
      return ErrnoStatus(ENOSPC, "write cache arena is full");
    }
    chunk = next_;
  }
  // fallocate, all or nothing (shmem undoes a partial one; a memfd pool
  // reserves first).
  RDFS_RETURN_IF_ERROR(file_->Allocate(static_cast<uint64_t>(chunk) * kChunkBytes, kChunkBytes));
  if (reuse_hole) {
    holes_.pop_back();
  } else {
    ++next_;
    discarded_.resize(next_, false);
  }
  discarded_[chunk] = false;
  // Best effort: fault the chunk's page tables in with one call instead of
  // one fault per page.
  (void)madvise(data(chunk), kChunkBytes, MADV_POPULATE_WRITE);
  return chunk;
}

void CacheArena::Give(uint32_t chunk) {
  if (discarded_[chunk]) {
    Free(chunk);
  } else {
    idle_.push_back(chunk);
  }
}

void CacheArena::Free(uint32_t chunk) {
  Punch(chunk, 1);
  holes_.push_back(chunk);
}

void CacheArena::DiscardPage(const char* page) {
  const uint64_t offset = static_cast<uint64_t>(page - base_);
  (void)file_->Discard(offset, kPageSize);
  discarded_[offset / kChunkBytes] = true;
}

void CacheArena::Trim(size_t keep) {
  if (idle_.size() <= keep) return;
  std::sort(idle_.begin(), idle_.end());
  // One punch per run of consecutive chunks: a flush's cost stays
  // proportional to what the cache held.
  size_t i = keep;
  while (i < idle_.size()) {
    size_t j = i + 1;
    while (j < idle_.size() && idle_[j] == idle_[j - 1] + 1) ++j;
    Punch(idle_[i], static_cast<uint32_t>(j - i));
    for (size_t k = i; k < j; ++k) holes_.push_back(idle_[k]);
    i = j;
  }
  idle_.resize(keep);
}

void CacheArena::Punch(uint32_t first, uint32_t count) {
  // A punch drops the pages from the mapping too; they are not touched
  // again until Take() allocates them anew.
  (void)file_->Discard(static_cast<uint64_t>(first) * kChunkBytes,
                       static_cast<uint64_t>(count) * kChunkBytes);
}

}  // namespace ramdiskfs
