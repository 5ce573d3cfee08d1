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
  // The number after ram1's last control file: past its files, or (when
  // they fill its numbers) disk 3's, which does not exist.
  const Node control = Lookup(*table_, Resolve(*table_, kRootIno), ".control");
  const Node last = Lookup(*table_, Lookup(*table_, control, "ram1"),
                           ControlFilesOf(ControlScope::kDisk).back().name);
  ASSERT_EQ(last.kind, NodeKind::kControlFile);
  EXPECT_EQ(Resolve(*table_, last.ino + 1).kind, NodeKind::kInvalid);
  EXPECT_EQ(Lookup(*table_, Resolve(*table_, kRootIno), "ram0").kind, NodeKind::kInvalid);
}

TEST_F(InodesTest, TheNumbersAreTheDocumentedOnes) {
  const Node root = Resolve(*table_, kRootIno);
  const Node control = Lookup(*table_, root, ".control");
  EXPECT_EQ(control.ino, kControlDirIno);
  EXPECT_EQ(Lookup(*table_, control, "new").ino, 3u);
  EXPECT_EQ(Lookup(*table_, control, "stats").ino, 6u);
  EXPECT_EQ(Lookup(*table_, root, "ram1").ino, 2u * 16);
  const Node dir = Lookup(*table_, control, "ram1");
  EXPECT_EQ(dir.ino, 2u * 16 + 1);
  EXPECT_EQ(Lookup(*table_, dir, "size").ino, 2u * 16 + 2);
  EXPECT_EQ(Lookup(*table_, dir, "stats").ino, 2u * 16 + 7);
  EXPECT_EQ(Lookup(*table_, dir, "badblocks").ino, 2u * 16 + 8);
  EXPECT_EQ(Lookup(*table_, dir, "flakey").ino, 2u * 16 + 15);
}

}  // namespace
}  // namespace ramdiskfs
