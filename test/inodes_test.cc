// The adapter's inode scheme (src/fuse/inodes.h; no libfuse needed): every
// number it hands out resolves back to the same node, and lookup, readdir
// and resolve agree, for every entry of the control-file table.

#include "src/fuse/inodes.h"

#include <set>

#include "gtest/gtest.h"
#include "ramdiskfs/memory_pool.h"

namespace ramdiskfs {
namespace {

class InodesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pool_ = *MemoryPool::Create(StoreKind::kMemfd, 1 << 26);
    table_ = std::make_unique<DiskTable>(pool_.get());
    for (const char* name : {"ram0", "ram1"}) {
      NewDisk spec;
      spec.name = name;
      spec.size_bytes = 4096;
      ASSERT_TRUE(table_->Create(spec).ok());
    }
  }
  std::unique_ptr<MemoryPool> pool_;
  std::unique_ptr<DiskTable> table_;
};

// Walks the whole tree from the root by readdir, checking that each entry
// resolves and looks up to the same node; returns every inode seen.
void Walk(const DiskTable& table, const Node& dir, std::set<Ino>& seen) {
  ASSERT_TRUE(IsDirectory(dir.kind));
  for (const DirEntry& e : ListDirectory(table, dir)) {
    if (e.name == "." || e.name == "..") continue;
    Node by_lookup = Lookup(table, dir, e.name);
    Node by_ino = Resolve(table, e.ino);
    ASSERT_NE(by_lookup.kind, NodeKind::kInvalid) << e.name;
    EXPECT_EQ(by_lookup.ino, e.ino) << e.name;
    EXPECT_EQ(by_ino.kind, by_lookup.kind) << e.name;
    EXPECT_EQ(by_ino.file, by_lookup.file) << e.name;
    EXPECT_EQ(by_ino.disk, by_lookup.disk) << e.name;
    EXPECT_EQ(IsDirectory(by_ino.kind), e.is_dir) << e.name;
    EXPECT_TRUE(seen.insert(e.ino).second) << "inode " << e.ino << " handed out twice";
    if (e.is_dir) Walk(table, by_ino, seen);
  }
}

TEST_F(InodesTest, EveryNumberResolvesToWhatListedIt) {
  std::set<Ino> seen;
  Walk(*table_, Resolve(*table_, kRootIno), seen);
  // .control, 4 global files, 2 disks x (file + dir + 6 files).
  EXPECT_EQ(seen.size(), 1 + kGlobalControlFileCount + 2 * (2 + kDiskControlFileCount));
}

TEST_F(InodesTest, StaleAndBadNumbersResolveToNothing) {
  Node disk = Lookup(*table_, Resolve(*table_, kRootIno), "ram0");
  ASSERT_EQ(disk.kind, NodeKind::kDiskFile);
  const Ino ino = disk.ino;
  ASSERT_TRUE(table_->Delete("ram0").ok());
  EXPECT_EQ(Resolve(*table_, ino).kind, NodeKind::kInvalid);
  EXPECT_EQ(Resolve(*table_, 0).kind, NodeKind::kInvalid);
  EXPECT_EQ(Resolve(*table_, 3 + kGlobalControlFileCount).kind, NodeKind::kInvalid);
  EXPECT_EQ(Resolve(*table_, Ino{99} << kDiskInoShift).kind, NodeKind::kInvalid);  // never was
  // One past ram1's last control file: a spare slot, or (when the files fill
  // the slots) disk 3's file, and there is no disk 3.
  ASSERT_EQ(table_->FindById(3), nullptr);
  EXPECT_EQ(Resolve(*table_, (Ino{2} << kDiskInoShift) | (2 + kDiskControlFileCount)).kind,
            NodeKind::kInvalid);
  EXPECT_EQ(Lookup(*table_, Resolve(*table_, kRootIno), "ram0").kind, NodeKind::kInvalid);
}

TEST_F(InodesTest, TheNumbersAreTheDocumentedOnes) {
  const Node root = Resolve(*table_, kRootIno);
  const Node control = Lookup(*table_, root, ".control");
  EXPECT_EQ(control.ino, kControlDirIno);
  EXPECT_EQ(Lookup(*table_, control, "new").ino, 3u);
  EXPECT_EQ(Lookup(*table_, control, "stats").ino, 6u);
  const Ino ram1 = Ino{2} << kDiskInoShift;
  EXPECT_EQ(Lookup(*table_, root, "ram1").ino, ram1);
  const Node dir = Lookup(*table_, control, "ram1");
  EXPECT_EQ(dir.ino, ram1 + 1);
  EXPECT_EQ(Lookup(*table_, dir, "size").ino, ram1 + 2);
  EXPECT_EQ(Lookup(*table_, dir, "stats").ino, ram1 + 7);
  EXPECT_EQ(Lookup(*table_, dir, "cache").ino, ram1 + 8);
  EXPECT_EQ(Lookup(*table_, dir, "powercut_at_flush").ino, ram1 + 15);
  EXPECT_EQ(Lookup(*table_, dir, "badblocks").ino, ram1 + 16);
  EXPECT_EQ(Lookup(*table_, dir, "flakey").ino, ram1 + 2 + kDiskControlFileCount - 1);
  EXPECT_EQ(kDiskInoShift, 5u);  // 2 + 22 numbers per disk: 32
}

}  // namespace
}  // namespace ramdiskfs
