// CacheArena: chunks are allocated before use and count against the pool's
// cap, ENOSPC at the cap changes nothing, given-back chunks are reused
// without new allocation, Trim frees all but a reserve, and a discarded page
// makes its chunk be freed rather than reused.

#include "ramdiskfs/cache_arena.h"

#include <cerrno>
#include <cstring>
#include <vector>

#include "gtest/gtest.h"
#include "ramdiskfs/memory_pool.h"
#include "ramdiskfs/size.h"
#include "ramdiskfs/status.h"
#include "test/test_disks.h"

namespace ramdiskfs {
namespace {

constexpr uint64_t kMiB = 1 << 20;
constexpr uint64_t kChunk = CacheArena::kChunkBytes;

class CacheArenaTest : public ::testing::TestWithParam<StoreKind> {
 protected:
  void Make(uint64_t cap) {
    arena_.reset();
    auto pool = MemoryPool::Create(GetParam(), cap);
    ASSERT_TRUE(pool.ok()) << pool.status();
    pool_ = *std::move(pool);
    auto arena = CacheArena::Create(pool_.get(), "arena");
    ASSERT_TRUE(arena.ok()) << arena.status();
    arena_ = *std::move(arena);
  }
  std::unique_ptr<MemoryPool> pool_;
  std::unique_ptr<CacheArena> arena_;
};

TEST_P(CacheArenaTest, ChunksAreAllocatedZeroedAndCounted) {
  Make(16 * kMiB);
  EXPECT_EQ(arena_->allocated_bytes(), 0u);
  EXPECT_EQ(pool_->used_bytes(), 0u);
  auto a = arena_->Take();
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(arena_->allocated_bytes(), kChunk);
  EXPECT_EQ(pool_->used_bytes(), kChunk);
  const char* p = arena_->data(*a);
  for (uint64_t i = 0; i < kChunk; i += 512) ASSERT_EQ(p[i], 0) << i;
  std::memset(arena_->data(*a), 'x', kChunk);  // writing through the mapping allocates nothing
  EXPECT_EQ(arena_->allocated_bytes(), kChunk);
  EXPECT_EQ(pool_->used_bytes(), kChunk);
}

TEST_P(CacheArenaTest, EnospcAtTheCapChangesNothing) {
  Make(1 * kMiB);
  std::vector<uint32_t> taken;
  absl::Status last;
  for (int i = 0; i < 16; ++i) {
    auto c = arena_->Take();
    if (!c.ok()) {
      last = c.status();
      break;
    }
    std::memset(arena_->data(*c), 'a' + i, kChunk);
    taken.push_back(*c);
  }
  ASSERT_FALSE(last.ok());
  EXPECT_EQ(StatusToErrno(last), ENOSPC) << last;
  EXPECT_EQ(taken.size(), 1 * kMiB / kChunk);
  const uint64_t held = arena_->allocated_bytes();
  const uint64_t used = pool_->used_bytes();
  EXPECT_EQ(held, taken.size() * kChunk);
  // Again: still ENOSPC, and still nothing changed.
  EXPECT_EQ(StatusToErrno(arena_->Take().status()), ENOSPC);
  EXPECT_EQ(arena_->allocated_bytes(), held);
  EXPECT_EQ(pool_->used_bytes(), used);
  for (size_t i = 0; i < taken.size(); ++i) {
    EXPECT_EQ(arena_->data(taken[i])[kChunk - 1], static_cast<char>('a' + i));
  }
  // A chunk given back is what the next Take gets, with no allocation.
  arena_->Give(taken.back());
  auto again = arena_->Take();
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(*again, taken.back());
  EXPECT_EQ(arena_->allocated_bytes(), held);
}

TEST_P(CacheArenaTest, TrimFreesAllButTheReserveAndFreedChunksComeBack) {
  Make(16 * kMiB);
  std::vector<uint32_t> taken;
  for (int i = 0; i < 8; ++i) taken.push_back(*arena_->Take());
  for (uint32_t c : taken) arena_->Give(c);
  EXPECT_EQ(arena_->idle_chunks(), 8u);
  EXPECT_EQ(arena_->allocated_bytes(), 8 * kChunk);
  arena_->Trim(2);
  EXPECT_EQ(arena_->idle_chunks(), 2u);
  EXPECT_EQ(arena_->allocated_bytes(), 2 * kChunk);
  EXPECT_EQ(pool_->used_bytes(), 2 * kChunk);
  arena_->Trim(0);
  EXPECT_EQ(arena_->allocated_bytes(), 0u);
  EXPECT_EQ(pool_->used_bytes(), 0u);
  // Freed chunks are allocated anew (zeros) when taken again.
  for (int i = 0; i < 8; ++i) {
    auto c = arena_->Take();
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_EQ(arena_->data(*c)[100], 0);
  }
  EXPECT_EQ(arena_->allocated_bytes(), 8 * kChunk);
}

TEST_P(CacheArenaTest, ADiscardedPageFreesItsChunkWhenGivenBack) {
  Make(16 * kMiB);
  auto c = arena_->Take();
  ASSERT_TRUE(c.ok());
  std::memset(arena_->data(*c), 'z', kChunk);
  arena_->DiscardPage(arena_->data(*c) + kPageSize);
  EXPECT_EQ(arena_->allocated_bytes(), kChunk - kPageSize);
  arena_->Give(*c);
  EXPECT_EQ(arena_->idle_chunks(), 0u);
  EXPECT_EQ(arena_->allocated_bytes(), 0u);
  EXPECT_EQ(pool_->used_bytes(), 0u);
  auto d = arena_->Take();  // whole again
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(arena_->allocated_bytes(), kChunk);
  arena_->Give(*d);
  EXPECT_EQ(arena_->idle_chunks(), 1u);
}

INSTANTIATE_TEST_SUITE_P(Kinds, CacheArenaTest, ::testing::ValuesIn(TestStoreKinds()),
                         [](const auto& info) { return std::string(StoreKindName(info.param)); });

}  // namespace
}  // namespace ramdiskfs
