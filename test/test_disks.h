// Test support shared by the core's unit tests: a memfd pool and a table to
// make disks in.

#ifndef RAMDISKFS_TEST_TEST_DISKS_H_
#define RAMDISKFS_TEST_TEST_DISKS_H_

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "ramdiskfs/disk_table.h"
#include "ramdiskfs/memory_pool.h"

namespace ramdiskfs {

// The store kinds to run a parameterised test over: memfd, and tmpfs only
// where this process may make a tmpfs instance.
inline std::vector<StoreKind> TestStoreKinds() {
  std::vector<StoreKind> kinds = {StoreKind::kMemfd};
  if (MemoryPool::Create(StoreKind::kTmpfs, 1 << 20).ok()) kinds.push_back(StoreKind::kTmpfs);
  return kinds;
}

class DiskTableTest : public ::testing::Test {
 protected:
  static constexpr uint64_t kMiB = 1 << 20;
  void SetUp() override {
    pool_ = *MemoryPool::Create(StoreKind::kMemfd, 64 * kMiB);
    table_ = std::make_unique<DiskTable>(pool_.get());
  }
  // A disk made through the table (EXPECTs success; nullptr on failure).
  std::shared_ptr<Disk> Make(std::string name, uint64_t size, DataMode mode = DataMode::kDirect) {
    NewDisk spec;
    spec.name = std::move(name);
    spec.size_bytes = size;
    spec.mode = mode;
    auto disk = table_->Create(spec);
    EXPECT_TRUE(disk.ok()) << disk.status();
    return disk.ok() ? *disk : nullptr;
  }
  std::unique_ptr<MemoryPool> pool_;
  std::unique_ptr<DiskTable> table_;
};

}  // namespace ramdiskfs

#endif  // RAMDISKFS_TEST_TEST_DISKS_H_
