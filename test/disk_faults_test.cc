// Disk's fault-injection path: what FaultyRead/FaultyWrite/Fallocate/Sync
// do with the injector's decisions (the decisions themselves are tested in
// faults_test.cc).

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "ramdiskfs/disk.h"
#include "ramdiskfs/disk_table.h"
#include "ramdiskfs/faults.h"
#include "ramdiskfs/status.h"

namespace ramdiskfs {
namespace {

constexpr uint64_t kMiB = 1 << 20;

class DiskFaultsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pool_ = *MemoryPool::Create(StoreKind::kMemfd, 64 * kMiB);
    table_ = std::make_unique<DiskTable>(pool_.get());
    NewDisk spec;
    spec.name = "ram0";
    spec.size_bytes = kMiB;
    spec.mode = DataMode::kDirect;
    disk_ = *table_->Create(spec);
    const std::string old(16384, 'o');
    ASSERT_TRUE(disk_->Write(0, old.data(), old.size()).ok());
  }
  std::string ReadBack(uint64_t offset, size_t length) {
    std::string out(length, '\0');
    EXPECT_TRUE(disk_->Read(offset, out.data(), length).ok());
    return out;
  }
  void Set(FaultFile file, const std::string& text) {
    ASSERT_TRUE(disk_->WriteFaultFile(file, text).ok()) << text;
  }

  std::unique_ptr<MemoryPool> pool_;
  std::unique_ptr<DiskTable> table_;
  std::shared_ptr<Disk> disk_;
};

TEST_F(DiskFaultsTest, BadSectorFailsReadAndWriteAndChangesNothing) {
  Set(FaultFile::kBadblocks, "+8-15");
  EXPECT_TRUE(disk_->faults().active());
  char buf[4096];
  int64_t at = -1;
  EXPECT_EQ(StatusToErrno(disk_->FaultyRead(4096, buf, 4096, &at).status()), EIO);
  EXPECT_EQ(at, 0);
  const std::string data(8192, 'n');
  EXPECT_EQ(StatusToErrno(disk_->FaultyWrite(0, data.data(), data.size(), false, &at).status()),
            EIO);
  EXPECT_EQ(ReadBack(0, 8192), std::string(8192, 'o'));
  EXPECT_EQ(disk_->FaultyRead(0, buf, 4096, &at).value(), 4096u);
}

TEST_F(DiskFaultsTest, PartialWriteStoresThePrefixAndFails) {
  Set(FaultFile::kBadblocks, "+20-20");
  Set(FaultFile::kBadblocksPartial, "1");
  const std::string data(16384, 'n');
  int64_t at = 0;
  EXPECT_EQ(StatusToErrno(disk_->FaultyWrite(0, data.data(), data.size(), false, &at).status()),
            EIO);
  EXPECT_EQ(ReadBack(0, 16384), std::string(10240, 'n') + std::string(6144, 'o'));
  // A read is short up to the bad sector in direct mode.
  std::string buf(16384, '\0');
  EXPECT_EQ(disk_->FaultyRead(0, buf.data(), buf.size(), &at).value(), 10240u);
  EXPECT_EQ(StatusToErrno(disk_->FaultyRead(10240, buf.data(), 512, &at).status()), EIO);
}

TEST_F(DiskFaultsTest, PartialReadFailsInCachedMode) {
  ASSERT_TRUE(disk_->SetMode(DataMode::kCached).ok());
  Set(FaultFile::kBadblocks, "+20-20");
  Set(FaultFile::kBadblocksPartial, "1");
  std::string buf(16384, '\0');
  int64_t at = 0;
  EXPECT_EQ(StatusToErrno(disk_->FaultyRead(0, buf.data(), buf.size(), &at).status()), EIO);
}

TEST_F(DiskFaultsTest, DropAndCorruptWrites) {
  Set(FaultFile::kFlakey, "0 100 drop_writes");
  const std::string data(4096, 'n');
  int64_t at = 0;
  EXPECT_EQ(disk_->FaultyWrite(0, data.data(), data.size(), false, &at).value(), 4096u);
  EXPECT_EQ(ReadBack(0, 4096), std::string(4096, 'o'));
  EXPECT_EQ(disk_->stats().writes.load(), 2u);  // counted as served
  Set(FaultFile::kFlakey, "0 100 corrupt_writes");
  EXPECT_EQ(disk_->FaultyWrite(0, data.data(), data.size(), false, &at).value(), 4096u);
  const std::string back = ReadBack(0, 4096);
  int differ = 0;
  for (size_t i = 0; i < back.size(); ++i) {
    if (back[i] != 'n') {
      ++differ;
      EXPECT_EQ(back[i], static_cast<char>(~'n'));
    }
  }
  EXPECT_EQ(differ, 1);
  EXPECT_EQ(data, std::string(4096, 'n'));  // the caller's buffer is untouched
}

TEST_F(DiskFaultsTest, DiskRulesComeBeforeFaults) {
  Set(FaultFile::kErrors, "write 1");
  int64_t at = 0;
  EXPECT_EQ(StatusToErrno(disk_->FaultyWrite(kMiB, "x", 1, false, &at).status()), ENOSPC);
  ASSERT_TRUE(disk_->SetReadonly(true).ok());
  EXPECT_EQ(StatusToErrno(disk_->FaultyWrite(0, "x", 1, false, &at).status()), EROFS);
  EXPECT_EQ(disk_->faults().stats().injected_errors.load(), 0u);
}

TEST_F(DiskFaultsTest, SyncAndFallocateAreFlushAndDiscard) {
  Set(FaultFile::kErrors, "flush 1 ETIMEDOUT\ndiscard 1 ENOSPC");
  Set(FaultFile::kLatency, "flush 300");
  int64_t at = 0;
  const int64_t before = MonotonicNowNs();
  EXPECT_EQ(StatusToErrno(disk_->Sync(&at)), ETIMEDOUT);
  EXPECT_GE(at, before + 300'000);
  EXPECT_EQ(StatusToErrno(disk_->Fallocate(kFallocPunchHole | kFallocKeepSize, 0, 4096, &at)),
            ENOSPC);
  EXPECT_EQ(ReadBack(0, 4096), std::string(4096, 'o'));
  EXPECT_TRUE(disk_->Fallocate(0, 0, 4096, &at).ok());  // allocation is not a discard
  Set(FaultFile::kErrors, "0");
  Set(FaultFile::kFlakey, "0 100 drop_writes");
  EXPECT_TRUE(disk_->Fallocate(kFallocPunchHole | kFallocKeepSize, 0, 4096, &at).ok());
  EXPECT_EQ(ReadBack(0, 4096), std::string(4096, 'o'));  // dropped: nothing freed
}

TEST_F(DiskFaultsTest, DelayIsReported) {
  Set(FaultFile::kLatency, "read 1000");
  char buf[512];
  int64_t at = 0;
  const int64_t before = MonotonicNowNs();
  EXPECT_EQ(disk_->FaultyRead(0, buf, 512, &at).value(), 512u);
  EXPECT_GE(at, before + 1'000'000);
  EXPECT_LE(at, MonotonicNowNs() + 1'000'000);
}

TEST_F(DiskFaultsTest, DaxRefusesFaultsAndFaultsRefuseDax) {
  Set(FaultFile::kLatency, "write 5");
  absl::Status to_dax = disk_->SetMode(DataMode::kDax);
  EXPECT_EQ(StatusToErrno(to_dax), EINVAL);
  Set(FaultFile::kLatency, "0");
  ASSERT_TRUE(disk_->SetMode(DataMode::kDax).ok());
  disk_->set_dax_fallback("");  // passthrough works: dax is in force
  ASSERT_EQ(disk_->mode(), DataMode::kDax);
  const absl::Status refused = disk_->WriteFaultFile(FaultFile::kErrors, "read 0.5");
  EXPECT_EQ(StatusToErrno(refused), EINVAL);
  EXPECT_NE(refused.message().find("direct or cached"), std::string_view::npos) << refused;
  EXPECT_EQ(disk_->faults().Read(FaultFile::kErrors), "");
  FaultSettings s;
  ASSERT_TRUE(ApplyFaultKey("errors", "read 1", &s).ok());
  EXPECT_EQ(StatusToErrno(disk_->ConfigureFaults(s)), EINVAL);
  EXPECT_TRUE(disk_->ConfigureFaults(FaultSettings()).ok());
  // A dax disk that fell back to direct is served by the daemon: faults work.
  disk_->set_dax_fallback("kernel_without_passthrough");
  EXPECT_TRUE(disk_->WriteFaultFile(FaultFile::kErrors, "read 0.5").ok());
}

}  // namespace
}  // namespace ramdiskfs

namespace ramdiskfs {
namespace {

// Faults and the volatile write cache side by side (SPEC 10 and 11): a
// flush the faults fail is a flush that did not happen, and a disk without
// power fails every I/O with EIO whatever the faults would have done.
TEST_F(DiskFaultsTest, AFailedFlushLeavesTheCacheUnflushed) {
  ASSERT_TRUE(disk_->SetCacheMode(CacheMode::kVolatile).ok());
  int64_t at = 0;
  ASSERT_EQ(disk_->FaultyWrite(0, "new", 3, false, &at).value(), 3u);
  Set(FaultFile::kErrors, "flush 1 EIO");
  EXPECT_EQ(StatusToErrno(disk_->Sync(&at)), EIO);
  EXPECT_EQ(disk_->cache().unflushed().writes, 1u);
  Set(FaultFile::kErrors, "0");
  ASSERT_TRUE(disk_->Sync(&at).ok());
  EXPECT_EQ(disk_->cache().unflushed().writes, 0u);
  // An O_DSYNC write through the fault path is a flush point too.
  ASSERT_EQ(disk_->FaultyWrite(4096, "fua", 3, /*fua=*/true, &at).value(), 3u);
  EXPECT_EQ(disk_->cache().unflushed().writes, 0u);
}

TEST_F(DiskFaultsTest, WithThePowerOffEveryFaultyRequestIsEio) {
  ASSERT_TRUE(disk_->SetCacheMode(CacheMode::kVolatile).ok());
  Set(FaultFile::kFlakey, "0 100 drop_writes");
  ASSERT_TRUE(disk_->SetPower(false).ok());
  int64_t at = 0;
  char buf[512];
  EXPECT_EQ(StatusToErrno(disk_->FaultyWrite(0, "x", 1, false, &at).status()), EIO);
  EXPECT_EQ(StatusToErrno(disk_->FaultyRead(0, buf, sizeof buf, &at).status()), EIO);
  EXPECT_EQ(disk_->faults().stats().dropped_writes.load(), 0u);
  ASSERT_TRUE(disk_->SetPower(true).ok());
  EXPECT_EQ(disk_->FaultyWrite(0, "x", 1, false, &at).value(), 1u);  // dropped again
  EXPECT_EQ(disk_->faults().stats().dropped_writes.load(), 1u);
}

}  // namespace
}  // namespace ramdiskfs
