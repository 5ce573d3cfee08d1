// PageStore over both pool kinds: sparse allocation, holes, discard, resize,
// seek, the cap, and parallel I/O on disjoint ranges.

#include "ramdiskfs/page_store.h"

#include <unistd.h>

#include <cerrno>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "ramdiskfs/memory_pool.h"
#include "ramdiskfs/size.h"
#include "ramdiskfs/status.h"
#include "test/test_disks.h"

namespace ramdiskfs {
namespace {

constexpr uint64_t kMiB = 1 << 20;

class PageStoreTest : public ::testing::TestWithParam<StoreKind> {
 protected:
  void Make(uint64_t cap, uint64_t size) {
    auto pool = MemoryPool::Create(GetParam(), cap);
    ASSERT_TRUE(pool.ok()) << pool.status();
    pool_ = *std::move(pool);
    auto store = PageStore::Create(pool_.get(), "test", size);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
  }
  std::string ReadAll(uint64_t offset, size_t length) {
    std::string out(length, '?');
    auto n = store_->Read(offset, out.data(), length);
    EXPECT_TRUE(n.ok()) << n.status();
    out.resize(n.ok() ? *n : 0);
    return out;
  }
  size_t WriteString(uint64_t offset, const std::string& data) {
    auto n = store_->Write(offset, data.data(), data.size());
    EXPECT_TRUE(n.ok()) << n.status();
    return n.ok() ? *n : 0;
  }

  std::unique_ptr<MemoryPool> pool_;
  std::unique_ptr<PageStore> store_;
};

TEST_P(PageStoreTest, NewStoreReadsZerosAndHoldsNothing) {
  Make(16 * kMiB, 8 * kMiB);
  EXPECT_EQ(store_->size_bytes(), 8 * kMiB);
  EXPECT_EQ(ReadAll(12345, 10000), std::string(10000, '\0'));
  EXPECT_EQ(store_->allocated_bytes(), 0u);
  EXPECT_EQ(pool_->used_bytes(), 0u);
}

TEST_P(PageStoreTest, WriteAllocatesWholePagesOnly) {
  Make(16 * kMiB, 8 * kMiB);
  // 10 bytes straddling a page boundary: two pages.
  EXPECT_EQ(WriteString(kPageSize - 5, "0123456789"), 10u);
  EXPECT_EQ(store_->allocated_bytes(), 2 * kPageSize);
  EXPECT_EQ(ReadAll(kPageSize - 5, 10), "0123456789");
  // Bytes around it are still zero: not shifted to the start of the page
  // (the 2007 XIP bug).
  EXPECT_EQ(ReadAll(0, kPageSize - 5), std::string(kPageSize - 5, '\0'));
  EXPECT_EQ(ReadAll(kPageSize + 5, 100), std::string(100, '\0'));
}

TEST_P(PageStoreTest, WriteIsCutAtTheEndAndRefusedPastIt) {
  Make(16 * kMiB, 8192);
  EXPECT_EQ(WriteString(8190, "abcd"), 2u);
  EXPECT_EQ(ReadAll(8190, 10), "ab");
  auto past = store_->Write(8192, "x", 1);
  ASSERT_FALSE(past.ok());
  EXPECT_EQ(StatusToErrno(past.status()), ENOSPC);
  EXPECT_EQ(ReadAll(8192, 10), "");
}

TEST_P(PageStoreTest, DiscardFreesWholePagesAndZeroesPartialOnes) {
  Make(16 * kMiB, 1 * kMiB);
  const std::string data(4 * kPageSize, 'x');
  WriteString(0, data);
  ASSERT_EQ(store_->allocated_bytes(), 4 * kPageSize);
  // From the middle of page 0 to the middle of page 3: pages 1 and 2 freed.
  ASSERT_TRUE(store_->Discard(kPageSize / 2, 3 * kPageSize).ok());
  EXPECT_EQ(store_->allocated_bytes(), 2 * kPageSize);
  std::string expect = data;
  for (uint64_t i = kPageSize / 2; i < kPageSize / 2 + 3 * kPageSize; ++i) expect[i] = '\0';
  EXPECT_EQ(ReadAll(0, data.size()), expect);
}

TEST_P(PageStoreTest, DiscardChecksTheRange) {
  Make(16 * kMiB, 1 * kMiB);
  EXPECT_FALSE(store_->Discard(2 * kMiB, 1).ok());
  EXPECT_FALSE(store_->Discard(UINT64_MAX - 10, 100).ok());
  EXPECT_TRUE(store_->Discard(kMiB - 10, 100).ok());  // cut at the end
}

TEST_P(PageStoreTest, FreeAllGivesEverythingBack) {
  Make(16 * kMiB, 4 * kMiB);
  WriteString(0, std::string(3 * kMiB, 'q'));
  ASSERT_TRUE(store_->FreeAll().ok());
  EXPECT_EQ(store_->allocated_bytes(), 0u);
  EXPECT_EQ(pool_->used_bytes(), 0u);
  EXPECT_EQ(ReadAll(kMiB, 4096), std::string(4096, '\0'));
  EXPECT_EQ(store_->size_bytes(), 4 * kMiB);
}

TEST_P(PageStoreTest, ShrinkFreesPagesAndGrowKeepsData) {
  Make(16 * kMiB, 4 * kMiB);
  WriteString(0, std::string(4 * kMiB, 'g'));
  ASSERT_TRUE(store_->Resize(1 * kMiB + 512).ok());
  EXPECT_EQ(store_->size_bytes(), kMiB + 512);
  EXPECT_LE(store_->allocated_bytes(), kMiB + kPageSize);
  ASSERT_TRUE(store_->Resize(8 * kMiB).ok());
  EXPECT_EQ(ReadAll(0, 10), std::string(10, 'g'));
  EXPECT_EQ(ReadAll(kMiB + 511, 2), std::string("g") + '\0');  // old tail is gone
  EXPECT_EQ(ReadAll(3 * kMiB, 10), std::string(10, '\0'));
  EXPECT_FALSE(store_->Resize(100).ok());  // not a multiple of 512
  EXPECT_FALSE(store_->Resize(kMaxDiskBytes + 4096).ok());
}

TEST_P(PageStoreTest, SeekDataAndHoleReportWrittenRanges) {
  Make(16 * kMiB, 1 * kMiB);
  WriteString(64 * 1024, "d");
  auto data = store_->SeekData(0);
  ASSERT_TRUE(data.ok());
  EXPECT_EQ(*data, 64u * 1024);
  auto hole = store_->SeekHole(*data);
  ASSERT_TRUE(hole.ok());
  EXPECT_EQ(*hole, 64u * 1024 + kPageSize);
  auto none = store_->SeekData(*hole);
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(StatusToErrno(none.status()), ENXIO);
  EXPECT_EQ(StatusToErrno(store_->SeekHole(kMiB).status()), ENXIO);
}

TEST_P(PageStoreTest, CapRefusesNewPagesButNotOverwrites) {
  Make(64 * 1024, 1 * kMiB);  // a 16-page cap
  const std::string page(kPageSize, 'c');
  for (int i = 0; i < 16; ++i) ASSERT_EQ(WriteString(i * kPageSize, page), kPageSize) << i;
  auto full = store_->Write(16 * kPageSize, page.data(), page.size());
  ASSERT_FALSE(full.ok());
  EXPECT_EQ(StatusToErrno(full.status()), ENOSPC);
  // Rewriting pages already held needs no new memory.
  EXPECT_EQ(WriteString(3 * kPageSize, std::string(kPageSize, 'd')), kPageSize);
  EXPECT_EQ(ReadAll(3 * kPageSize, 4), "dddd");
  EXPECT_EQ(ReadAll(15 * kPageSize, 4), "cccc");
  // Freeing makes room again.
  ASSERT_TRUE(store_->Discard(0, kPageSize).ok());
  EXPECT_EQ(WriteString(16 * kPageSize, page), kPageSize);
}

TEST_P(PageStoreTest, AllocateReservesPagesUnderTheCap) {
  Make(64 * 1024, 1 * kMiB);
  ASSERT_TRUE(store_->Allocate(0, 32 * 1024).ok());
  EXPECT_EQ(store_->allocated_bytes(), 32u * 1024);
  EXPECT_EQ(ReadAll(0, 10), std::string(10, '\0'));
  auto too_much = store_->Allocate(32 * 1024, 64 * 1024);
  EXPECT_EQ(StatusToErrno(too_much), ENOSPC);
}

TEST_P(PageStoreTest, TrimOverflowCutsBytesWrittenPastTheEnd) {
  Make(16 * kMiB, 8192);
  // What a passthrough write past the end does to the backing file.
  ASSERT_EQ(pwrite(store_->fd(), "overflow", 8, 8190), 8);
  auto cut = store_->TrimOverflow();
  ASSERT_TRUE(cut.ok());
  EXPECT_EQ(*cut, 6u);
  EXPECT_EQ(ReadAll(8190, 10), "ov");
  auto again = store_->TrimOverflow();
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, 0u);
}

TEST_P(PageStoreTest, DisjointWritersRunInParallelWithoutCorruption) {
  Make(64 * kMiB, 32 * kMiB);
  constexpr int kThreads = 4;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const std::string chunk(64 * 1024, static_cast<char>('A' + t));
      for (uint64_t off = t * 8 * kMiB; off < (t + 1) * 8 * kMiB; off += chunk.size()) {
        auto n = store_->Write(off, chunk.data(), chunk.size());
        ASSERT_TRUE(n.ok());
        std::string back(chunk.size(), '?');
        ASSERT_TRUE(store_->Read(off, back.data(), back.size()).ok());
        ASSERT_EQ(back, chunk);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(store_->allocated_bytes(), 32 * kMiB);
}

INSTANTIATE_TEST_SUITE_P(Kinds, PageStoreTest, ::testing::ValuesIn(TestStoreKinds()),
                         [](const auto& info) { return std::string(StoreKindName(info.param)); });

TEST(MemoryPoolTest, RejectsCapsAboveRamAndZero) {
  EXPECT_FALSE(MemoryPool::Create(StoreKind::kMemfd, 0).ok());
  EXPECT_FALSE(MemoryPool::Create(StoreKind::kMemfd, MemoryPool::PhysicalRamBytes() * 2).ok());
  EXPECT_GT(MemoryPool::DefaultMaxBytes(), 0u);
  EXPECT_EQ(MemoryPool::DefaultMaxBytes() % kPageSize, 0u);
}

TEST(MemoryPoolTest, SetMaxBytesRefusesBelowUsageAndChangesNothing) {
  for (StoreKind kind : TestStoreKinds()) {
    SCOPED_TRACE(StoreKindName(kind));
    auto pool = *MemoryPool::Create(kind, 4 * kMiB);
    auto store = *PageStore::Create(pool.get(), "s", 4 * kMiB);
    ASSERT_TRUE(store->Write(0, std::string(2 * kMiB, 'x').data(), 2 * kMiB).ok());
    EXPECT_EQ(pool->used_bytes(), 2 * kMiB);
    EXPECT_EQ(StatusToErrno(pool->SetMaxBytes(kMiB)), EBUSY);
    EXPECT_EQ(pool->max_bytes(), 4 * kMiB);
    EXPECT_EQ(StatusToErrno(pool->SetMaxBytes(0)), EINVAL);
    ASSERT_TRUE(pool->SetMaxBytes(8 * kMiB).ok());
    EXPECT_EQ(pool->max_bytes(), 8 * kMiB);
    // The new cap really holds: 6 MiB more fits now.
    EXPECT_TRUE(store->Resize(8 * kMiB).ok());
    auto n = store->Write(2 * kMiB, std::string(6 * kMiB, 'y').data(), 6 * kMiB);
    ASSERT_TRUE(n.ok()) << n.status();
    EXPECT_EQ(*n, 6 * kMiB);
  }
}

TEST(MemoryPoolTest, MemfdAccountingFollowsStores) {
  auto pool = *MemoryPool::Create(StoreKind::kMemfd, 4 * kMiB);
  {
    auto store = *PageStore::Create(pool.get(), "s", 4 * kMiB);
    ASSERT_TRUE(store->Write(0, std::string(kMiB, 'x').data(), kMiB).ok());
    EXPECT_EQ(pool->used_bytes(), kMiB);
  }
  EXPECT_EQ(pool->used_bytes(), 0u);  // a deleted disk gives its memory back
}

}  // namespace
}  // namespace ramdiskfs
