// Disk and DiskTable: the rules that hold whatever path a request comes by.

#include "ramdiskfs/disk.h"

#include <atomic>
#include <cerrno>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "ramdiskfs/disk_table.h"
#include "ramdiskfs/size.h"
#include "ramdiskfs/status.h"
#include "test/test_disks.h"

namespace ramdiskfs {
namespace {

constexpr uint64_t kMiB = 1 << 20;

using DiskTest = DiskTableTest;

TEST_F(DiskTest, SizesRoundUpToTheLogicalBlock) {
  auto disk = Make("ram0", 1000);
  EXPECT_EQ(disk->size_bytes(), 1024u);
  EXPECT_FALSE(disk->growing());
  ASSERT_TRUE(disk->Resize(4097, 0).ok());
  EXPECT_EQ(disk->size_bytes(), 4608u);
}

TEST_F(DiskTest, ReadOnlyRefusesEveryChange) {
  auto disk = Make("ram0", kMiB);
  ASSERT_TRUE(disk->Write(0, "abc", 3).ok());
  ASSERT_TRUE(disk->SetReadonly(true).ok());
  EXPECT_EQ(StatusToErrno(disk->Write(0, "x", 1).status()), EROFS);
  EXPECT_EQ(StatusToErrno(disk->Resize(2 * kMiB, 0)), EROFS);
  EXPECT_EQ(StatusToErrno(disk->Fallocate(kFallocPunchHole | kFallocKeepSize, 0, 4096)), EROFS);
  EXPECT_EQ(StatusToErrno(disk->Discard(0, 4096)), EROFS);
  EXPECT_EQ(StatusToErrno(disk->Flush(0)), EROFS);
  EXPECT_EQ(StatusToErrno(disk->Open(true)), EROFS);
  EXPECT_TRUE(disk->Open(false).ok());
  char buf[3];
  ASSERT_TRUE(disk->Read(0, buf, 3).ok());
  EXPECT_EQ(std::string(buf, 3), "abc");
  disk->Release(false);
}

TEST_F(DiskTest, ReadOnlyIsRefusedWhileDaxWritersBypassTheDaemon) {
  auto disk = Make("ram0", kMiB);
  ASSERT_TRUE(disk->Open(true).ok());
  ASSERT_TRUE(disk->AddBypassWriter().ok());
  EXPECT_EQ(StatusToErrno(disk->SetReadonly(true)), EBUSY);
  EXPECT_FALSE(disk->readonly());
  EXPECT_TRUE(disk->SetReadonly(false).ok());  // making it writable is always fine
  disk->Release(true, /*bypass_writer=*/true);
  EXPECT_TRUE(disk->SetReadonly(true).ok());
  // And a bypassing writer cannot start on a read-only disk.
  ASSERT_TRUE(disk->Open(false).ok());
  EXPECT_EQ(StatusToErrno(disk->AddBypassWriter()), EROFS);
  disk->Release(false);
}

TEST_F(DiskTest, NoOpenAfterDelete) {
  auto disk = Make("ram0", kMiB);
  ASSERT_TRUE(table_->Delete("ram0").ok());
  EXPECT_TRUE(disk->deleted());
  EXPECT_EQ(StatusToErrno(disk->Open(false)), ENOENT);
  EXPECT_EQ(disk->opens(), 0);
}

// Opens racing a delete: either the open wins (delete is EBUSY) or the delete
// does (open is ENOENT); never an open counted on a disk gone from the table.
TEST_F(DiskTest, OpenRacingDeleteIsAllOrNothing) {
  for (int round = 0; round < 200; ++round) {
    auto disk = Make("race", kMiB);
    std::atomic<bool> go{false};
    absl::Status opened, deleted;
    std::thread opener([&] {
      while (!go.load()) {
      }
      opened = disk->Open(true);
    });
    std::thread deleter([&] {
      while (!go.load()) {
      }
      deleted = table_->Delete("race");
    });
    go = true;
    opener.join();
    deleter.join();
    if (opened.ok()) {
      if (deleted.ok()) {
        ADD_FAILURE() << "round " << round << ": both the open and the delete won";
      }
      EXPECT_EQ(StatusToErrno(deleted), EBUSY);
      disk->Release(true);
      ASSERT_TRUE(table_->Delete("race").ok());
    } else {
      EXPECT_EQ(StatusToErrno(opened), ENOENT);
      EXPECT_TRUE(deleted.ok());
    }
    EXPECT_EQ(table_->Find("race"), nullptr);
  }
}

TEST_F(DiskTest, GrowingDiskGrowsUntilItsLastCloseThenRoundsUp) {
  NewDisk spec;
  spec.name = "img";
  spec.growing = true;
  auto made = table_->Create(spec);
  ASSERT_TRUE(made.ok()) << made.status();
  std::shared_ptr<Disk> disk = *made;
  EXPECT_EQ(disk->size_bytes(), 0u);
  ASSERT_TRUE(disk->Open(true).ok());
  auto n = disk->Write(10000, "abc", 3);
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 3u);
  EXPECT_EQ(disk->size_bytes(), 10240u);  // 10003 up to a sector
  // KEEP_SIZE past the end is nothing to do; mode 0 extends.
  EXPECT_TRUE(disk->Fallocate(kFallocPunchHole | kFallocKeepSize, 20000, 4096).ok());
  EXPECT_EQ(disk->size_bytes(), 10240u);
  EXPECT_TRUE(disk->Fallocate(0, 12000, 1000).ok());
  EXPECT_EQ(disk->size_bytes(), 13312u);
  EXPECT_TRUE(disk->OnClose());  // a close rounds up to a page
  EXPECT_EQ(disk->size_bytes(), 16384u);
  EXPECT_TRUE(disk->growing());
  disk->Release(true);
  EXPECT_FALSE(disk->growing());
  EXPECT_EQ(disk->size_bytes(), 16384u);
  // Fixed now: past the end is ENOSPC again.
  ASSERT_TRUE(disk->Open(true).ok());
  EXPECT_EQ(StatusToErrno(disk->Write(16384, "x", 1).status()), ENOSPC);
  disk->Release(true);
  char buf[3];
  ASSERT_TRUE(disk->Read(10000, buf, 3).ok());
  EXPECT_EQ(std::string(buf, 3), "abc");
}

TEST_F(DiskTest, GrowingStaysUnderTheCap) {
  NewDisk spec;
  spec.name = "big";
  spec.growing = true;
  auto disk = *table_->Create(spec);
  ASSERT_TRUE(disk->Open(true).ok());
  std::string chunk(kMiB, 'x');
  absl::Status status;
  uint64_t offset = 0;
  for (; offset < 128 * kMiB; offset += kMiB) {
    auto n = disk->Write(offset, chunk.data(), chunk.size());
    if (!n.ok()) {
      status = n.status();
      break;
    }
  }
  EXPECT_EQ(StatusToErrno(status), ENOSPC);  // the pool is 64 MiB
  EXPECT_LE(disk->store().allocated_bytes(), 64 * kMiB);
  disk->Release(true);
}

TEST_F(DiskTest, NullModeReadsZerosAndDropsWrites) {
  auto disk = Make("null0", kMiB, DataMode::kNull);
  auto n = disk->Write(100, "hello", 5);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 5u);
  char buf[5] = {'x', 'x', 'x', 'x', 'x'};
  ASSERT_TRUE(disk->Read(100, buf, 5).ok());
  EXPECT_EQ(std::string(buf, 5), std::string(5, '\0'));
  EXPECT_EQ(disk->store().allocated_bytes(), 0u);
  EXPECT_EQ(StatusToErrno(disk->Write(kMiB, "x", 1).status()), ENOSPC);
  EXPECT_EQ(disk->stats().writes.load(), 1u);
  EXPECT_EQ(disk->stats().write_bytes.load(), 5u);
}

TEST_F(DiskTest, WritesCrossingTheEndAreCutAndPastTheEndRefused) {
  auto disk = Make("ram0", 4096);
  auto n = disk->Write(4090, "0123456789", 10);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 6u);
  EXPECT_EQ(StatusToErrno(disk->Write(4096, "x", 1).status()), ENOSPC);
  EXPECT_EQ(StatusToErrno(disk->Write(1ull << 62, "x", 1).status()), ENOSPC);
}

TEST_F(DiskTest, FallocateFollowsBlockDeviceRules) {
  auto disk = Make("ram0", 64 * 1024);
  ASSERT_TRUE(disk->Write(0, std::string(64 * 1024, 'x').data(), 64 * 1024).ok());
  // PUNCH_HOLE needs KEEP_SIZE, as in the kernel.
  EXPECT_EQ(StatusToErrno(disk->Fallocate(kFallocPunchHole, 0, 4096)), EOPNOTSUPP);
  // ZERO_RANGE without KEEP_SIZE inside the disk: fine; past the end: EINVAL.
  EXPECT_TRUE(disk->Fallocate(kFallocZeroRange, 4096, 8192).ok());
  EXPECT_EQ(StatusToErrno(disk->Fallocate(kFallocZeroRange, 60 * 1024, 8192)), EINVAL);
  // With KEEP_SIZE the range is cut at the end.
  EXPECT_TRUE(disk->Fallocate(kFallocZeroRange | kFallocKeepSize, 60 * 1024, 8192).ok());
  EXPECT_EQ(disk->store().allocated_bytes(), 64u * 1024 - 3 * 4096);
  EXPECT_EQ(StatusToErrno(disk->Fallocate(0x20 /* INSERT_RANGE */, 0, 4096)), EOPNOTSUPP);
  EXPECT_EQ(StatusToErrno(disk->Fallocate(kFallocKeepSize, 64 * 1024, 4096)), EINVAL);
  EXPECT_EQ(StatusToErrno(disk->Fallocate(kFallocKeepSize, UINT64_MAX - 5, 4096)), EINVAL);
  char buf[4];
  ASSERT_TRUE(disk->Read(4096, buf, 4).ok());
  EXPECT_EQ(std::string(buf, 4), std::string(4, '\0'));
  EXPECT_EQ(disk->stats().discards.load(), 2u);
}

TEST_F(DiskTest, ShrinkAndFlushAndModeNeedTheDiskClosed) {
  auto disk = Make("ram0", 2 * kMiB);
  ASSERT_TRUE(disk->Open(true).ok());
  EXPECT_TRUE(disk->Resize(4 * kMiB, 1).ok());  // growing while open is fine
  EXPECT_EQ(StatusToErrno(disk->Resize(kMiB, 1)), EBUSY);
  EXPECT_EQ(disk->size_bytes(), 4 * kMiB);
  EXPECT_EQ(StatusToErrno(disk->Flush(1)), EBUSY);
  EXPECT_EQ(StatusToErrno(disk->SetMode(DataMode::kCached)), EBUSY);
  EXPECT_EQ(StatusToErrno(table_->Delete("ram0")), EBUSY);
  disk->Release(true);
  EXPECT_TRUE(disk->Resize(kMiB, 0).ok());
  EXPECT_TRUE(disk->Flush(0).ok());
  EXPECT_TRUE(disk->SetMode(DataMode::kCached).ok());
  EXPECT_EQ(disk->mode(), DataMode::kCached);
  EXPECT_TRUE(table_->Delete("ram0").ok());
}

TEST_F(DiskTest, DaxFallsBackToDirectAndSaysWhy) {
  auto disk = Make("ram0", kMiB, DataMode::kDax);
  table_->SetDaxFallback("kernel_without_passthrough");
  EXPECT_EQ(disk->mode(), DataMode::kDirect);
  EXPECT_EQ(disk->requested_mode(), DataMode::kDax);
  EXPECT_EQ(disk->fallback_reason(), "kernel_without_passthrough");
  auto later = Make("ram1", kMiB, DataMode::kDax);  // disks made later inherit it
  EXPECT_EQ(later->mode(), DataMode::kDirect);
  table_->SetDaxFallback("");
  EXPECT_EQ(disk->mode(), DataMode::kDax);
  EXPECT_EQ(disk->fallback_reason(), "none");
}

TEST_F(DiskTest, StatsRowsAreInTheDocumentedOrder) {
  auto disk = Make("ram0", kMiB);
  ASSERT_TRUE(disk->Write(0, "abc", 3).ok());
  std::vector<std::string> keys;
  for (const auto& [k, v] : disk->StatsRows()) keys.push_back(k);
  const std::vector<std::string> expected = {
      "name", "size", "allocated_bytes", "allocated_pages", "mode", "requested_mode", "readonly",
      "opens", "reads", "writes", "read_bytes", "write_bytes", "discards", "discard_bytes",
      "flushes", "fallback", "passthrough", "overflow_bytes", "growing",
      // the volatile write cache and power (SPEC 11)
      "cache", "power", "flushes_received", "writes_made_durable", "powercuts",
      "cache_allocated_bytes",
      // fault injection (SPEC 10)
      "injected_errors", "injected_error_bytes", "delayed_requests", "delay_us_total",
      "throttled_us_total", "dropped_writes", "corrupted_writes"};
  EXPECT_EQ(keys, expected);
  EXPECT_EQ(disk->StatsRows()[2].second, "4096");
}

TEST_F(DiskTest, TableRefusesDuplicatesBadNamesAndUnknownDeletes) {
  Make("ram0", kMiB);
  NewDisk dup;
  dup.name = "ram0";
  EXPECT_EQ(StatusToErrno(table_->Create(dup).status()), EEXIST);
  for (const char* bad : {"", ".", "..", ".control", "a/b", "-x", "sp ace"}) {
    NewDisk spec;
    spec.name = bad;
    EXPECT_EQ(StatusToErrno(table_->Create(spec).status()), EINVAL) << bad;
  }
  NewDisk longname;
  longname.name = std::string(256, 'a');
  EXPECT_EQ(StatusToErrno(table_->Create(longname).status()), ENAMETOOLONG);
  NewDisk huge;
  huge.name = "huge";
  huge.size_bytes = kMaxDiskBytes + 1;
  EXPECT_EQ(StatusToErrno(table_->Create(huge).status()), EFBIG);
  EXPECT_EQ(StatusToErrno(table_->Delete("nope")), ENOENT);
  EXPECT_EQ(table_->size(), 1u);
}

TEST_F(DiskTest, DeletedDiskStaysValidForItsHoldersAndIdsAreNotReused) {
  auto disk = Make("ram0", kMiB);
  const uint64_t id = disk->id();
  ASSERT_TRUE(disk->Write(0, "keep", 4).ok());
  ASSERT_TRUE(table_->Delete("ram0").ok());
  EXPECT_EQ(table_->FindById(id), nullptr);
  char buf[4];
  ASSERT_TRUE(disk->Read(0, buf, 4).ok());  // a request still holding it
  EXPECT_EQ(std::string(buf, 4), "keep");
  auto again = Make("ram0", kMiB);
  EXPECT_NE(again->id(), id);
}

TEST_F(DiskTest, ConcurrentCreateAndDeleteKeepTheTableConsistent) {
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        NewDisk spec;
        spec.name = "d" + std::to_string(i % 5);
        spec.size_bytes = 4096;
        (void)table_->Create(spec);
        (void)table_->Find(spec.name);
        (void)table_->Delete("d" + std::to_string((i + t) % 5));
      }
    });
  }
  for (auto& th : threads) th.join();
  for (const auto& disk : table_->List()) EXPECT_EQ(table_->Find(disk->name()), disk);
}

}  // namespace
}  // namespace ramdiskfs

// ---- the write cache's hook (SPEC 11) ------------------------------------------------

namespace ramdiskfs {
namespace {

TEST_F(DiskTest, CacheAndPowerAreRefusedInDaxAndNullModes) {
  for (DataMode mode : {DataMode::kDax, DataMode::kNull}) {
    auto disk = Make(std::string("m") + std::string(DataModeName(mode)), kMiB, mode);
    EXPECT_EQ(StatusToErrno(disk->SetCacheMode(CacheMode::kVolatile)), EINVAL);
    EXPECT_EQ(StatusToErrno(disk->SetPower(false)), EINVAL);
    EXPECT_FALSE(disk->cache().engaged());
  }
  auto disk = Make("d", kMiB, DataMode::kDirect);
  ASSERT_TRUE(disk->SetCacheMode(CacheMode::kVolatile).ok());
  EXPECT_EQ(StatusToErrno(disk->SetMode(DataMode::kDax)), EINVAL);  // nothing changed
  EXPECT_EQ(disk->requested_mode(), DataMode::kDirect);
  EXPECT_TRUE(disk->SetMode(DataMode::kCached).ok());
}

TEST_F(DiskTest, CacheChangeIsRefusedWhileOpen) {
  auto disk = Make("d", kMiB);
  ASSERT_TRUE(disk->Open(true).ok());
  EXPECT_EQ(StatusToErrno(disk->SetCacheMode(CacheMode::kVolatile)), EBUSY);
  disk->Release(true);
  EXPECT_TRUE(disk->SetCacheMode(CacheMode::kVolatile).ok());
}

TEST_F(DiskTest, VolatileDiskLosesUnsyncedWritesAndPowerOffFailsEverything) {
  auto disk = Make("d", kMiB);
  ASSERT_TRUE(disk->SetCacheMode(CacheMode::kVolatile).ok());
  ASSERT_TRUE(disk->Write(0, "synced", 6).ok());
  ASSERT_TRUE(disk->Sync().ok());
  ASSERT_TRUE(disk->Write(0, "LOST!!", 6).ok());
  ASSERT_TRUE(disk->Write(4096, "dsync", 5, /*fua=*/true).ok());
  ASSERT_TRUE(disk->Fallocate(kFallocPunchHole | kFallocKeepSize, 8192, 4096).ok());
  char buf[6];
  ASSERT_TRUE(disk->Read(0, buf, 6).ok());
  EXPECT_EQ(std::string(buf, 6), "LOST!!");  // newest data until the cut
  ASSERT_TRUE(disk->SetPower(false).ok());
  EXPECT_EQ(StatusToErrno(disk->Read(0, buf, 6).status()), EIO);
  EXPECT_EQ(StatusToErrno(disk->Write(0, "x", 1).status()), EIO);
  EXPECT_EQ(StatusToErrno(disk->Sync()), EIO);
  EXPECT_EQ(StatusToErrno(disk->Fallocate(0, 0, 4096)), EIO);
  EXPECT_EQ(StatusToErrno(disk->Discard(0, 4096)), EIO);
  EXPECT_EQ(StatusToErrno(disk->Flush(0)), EIO);
  EXPECT_EQ(StatusToErrno(disk->Resize(2 * kMiB, 0)), EIO);
  ASSERT_TRUE(disk->SetPower(true).ok());
  ASSERT_TRUE(disk->Read(0, buf, 6).ok());
  EXPECT_EQ(std::string(buf, 6), "LOST!!");  // the FUA write made it durable
  ASSERT_TRUE(disk->Read(4096, buf, 5).ok());
  EXPECT_EQ(std::string(buf, 5), "dsync");
  std::map<std::string, std::string> stats;
  for (const auto& [k, v] : disk->StatsRows()) stats[k] = v;
  EXPECT_EQ(stats["cache"], "volatile");
  EXPECT_EQ(stats["powercuts"], "1");
  EXPECT_EQ(stats["flushes_received"], "2");
  EXPECT_EQ(stats["writes_made_durable"], "3");
}

TEST_F(DiskTest, CacheNoneCountsFlushesAndPowerOffStillFails) {
  auto disk = Make("d", kMiB);
  ASSERT_TRUE(disk->Write(0, "a", 1, /*fua=*/true).ok());
  ASSERT_TRUE(disk->Sync().ok());
  EXPECT_EQ(disk->cache().stats().flushes_received.load(), 2u);
  ASSERT_TRUE(disk->SetPower(false).ok());
  char c;
  EXPECT_EQ(StatusToErrno(disk->Read(0, &c, 1).status()), EIO);
  ASSERT_TRUE(disk->SetPower(true).ok());
  ASSERT_TRUE(disk->Read(0, &c, 1).ok());
  EXPECT_EQ(c, 'a');
}

}  // namespace
}  // namespace ramdiskfs
