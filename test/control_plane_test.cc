// ControlPlane: the rules of every control operation, with a fake kernel.
// No mount: what the kernel is told is recorded by FakeKernel.

#include "ramdiskfs/control_plane.h"

#include <sys/stat.h>

#include <cerrno>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "ramdiskfs/control.h"
#include "ramdiskfs/faults.h"
#include "ramdiskfs/memory_pool.h"
#include "ramdiskfs/status.h"
#include "test/test_disks.h"

namespace ramdiskfs {
namespace {

class FakeKernel : public KernelNotifier {
 public:
  void InvalidateDisk(const Disk& disk, bool data) override {
    calls.push_back(std::string(data ? "data " : "attr ") + disk.name());
  }
  void InvalidateEntry(EntryDir dir, std::string_view name) override {
    calls.push_back(std::string(dir == EntryDir::kRoot ? "entry /" : "entry .control/") +
                    std::string(name));
  }
  void ReleaseBackingId(Disk& disk) override {
    calls.push_back("release " + disk.name() + " " + std::to_string(disk.backing_id()));
    disk.set_backing_id(0);
  }
  ConnectionFacts Facts() const override { return facts; }

  std::vector<std::string> calls;
  ConnectionFacts facts{true, true, true};
};

class ControlPlaneTest : public DiskTableTest {
 protected:
  void SetUp() override {
    DiskTableTest::SetUp();
    control_ = std::make_unique<ControlPlane>(table_.get(), &kernel_,
                                              ControlPlaneOptions{1000, 1001, DataMode::kDirect});
  }
  int Write(ControlFile file, const std::shared_ptr<Disk>& disk, std::string_view text,
            uint64_t offset = 0) {
    return StatusToErrno(control_->Write(file, disk, offset, text));
  }
  FakeKernel kernel_;
  std::unique_ptr<ControlPlane> control_;
};

using Calls = std::vector<std::string>;

TEST_F(ControlPlaneTest, ShrinkOfAnOpenDiskIsBusyAndChangesNothing) {
  auto disk = Make("ram0", 4 * kMiB);
  ASSERT_TRUE(disk->Open(false).ok());
  EXPECT_EQ(Write(ControlFile::kSize, disk, "1M"), EBUSY);
  EXPECT_EQ(disk->size_bytes(), 4 * kMiB);
  EXPECT_EQ(StatusToErrno(control_->Truncate(*disk, kMiB, Caller{})), EBUSY);
  EXPECT_EQ(disk->size_bytes(), 4 * kMiB);
  EXPECT_EQ(kernel_.calls, Calls{});
  disk->Release(false);
}

TEST_F(ControlPlaneTest, GrowOfAnOpenDiskIsAllowedAndDropsTheCachedAttributes) {
  auto disk = Make("ram0", kMiB);
  ASSERT_TRUE(disk->Open(true).ok());
  EXPECT_EQ(Write(ControlFile::kSize, disk, "2M\n"), 0);
  EXPECT_EQ(disk->size_bytes(), 2 * kMiB);
  EXPECT_EQ(kernel_.calls, Calls{"attr ram0"});
  disk->Release(true);
}

TEST_F(ControlPlaneTest, TheCallersOwnOpenIsNotCounted) {
  auto disk = Make("ram0", 4 * kMiB);
  ASSERT_TRUE(disk->Open(true).ok());  // the ftruncate's own fd
  EXPECT_TRUE(control_->Truncate(*disk, kMiB, Caller{0, true}).ok());
  EXPECT_EQ(disk->size_bytes(), kMiB);
  ASSERT_TRUE(disk->Open(false).ok());  // someone else
  EXPECT_EQ(StatusToErrno(control_->Truncate(*disk, 512, Caller{0, true})), EBUSY);
  EXPECT_EQ(ControlPlane::OtherOpens(*disk, Caller{0, true}), 1);
  EXPECT_EQ(ControlPlane::OtherOpens(*disk, Caller{}), 2);
  disk->Release(false);
  disk->Release(true);
}

TEST_F(ControlPlaneTest, AReleaseInFlightIsWaitedFor) {
  auto disk = Make("ram0", 4 * kMiB);
  ASSERT_TRUE(disk->Open(false).ok());
  // close() has returned; the kernel's RELEASE arrives a moment later.
  std::thread release([&] {
    absl::SleepFor(absl::Milliseconds(30));
    disk->Release(false);
  });
  EXPECT_EQ(Write(ControlFile::kSize, disk, "1M"), 0);
  release.join();
  EXPECT_EQ(disk->size_bytes(), kMiB);
}

TEST_F(ControlPlaneTest, AnOpenThatStaysIsRefusedAfterThePatience) {
  auto disk = Make("ram0", kMiB);
  ASSERT_TRUE(disk->Open(false).ok());
  const absl::Time start = absl::Now();
  EXPECT_EQ(Write(ControlFile::kFlush, disk, "1"), EBUSY);
  EXPECT_GE(absl::Now() - start, ControlPlane::kSettle);
  disk->Release(false);
}

TEST_F(ControlPlaneTest, FlushFreesThePagesAndDropsTheCachedData) {
  auto disk = Make("ram0", kMiB);
  ASSERT_TRUE(disk->Write(0, "abc", 3).ok());
  EXPECT_EQ(Write(ControlFile::kFlush, disk, "1"), 0);
  EXPECT_EQ(disk->store().allocated_bytes(), 0u);
  EXPECT_EQ(kernel_.calls, Calls{"data ram0"});
  EXPECT_EQ(Write(ControlFile::kFlush, disk, "2"), EINVAL);
  EXPECT_EQ(kernel_.calls, Calls{"data ram0"});
}

TEST_F(ControlPlaneTest, BlkFlsBufIsForRootAndTheMountingUser) {
  auto disk = Make("ram0", kMiB);
  ASSERT_TRUE(disk->Write(0, "abc", 3).ok());
  ASSERT_TRUE(disk->Open(false).ok());  // the ioctl's own fd
  EXPECT_EQ(StatusToErrno(control_->FlushBuffers(*disk, Caller{4242, true})), EACCES);
  EXPECT_GT(disk->store().allocated_bytes(), 0u);
  EXPECT_TRUE(control_->FlushBuffers(*disk, Caller{1000, true}).ok());
  EXPECT_EQ(disk->store().allocated_bytes(), 0u);
  EXPECT_TRUE(control_->FlushBuffers(*disk, Caller{0, true}).ok());
  EXPECT_EQ(kernel_.calls, (Calls{"data ram0", "data ram0"}));
  disk->Release(false);
}

TEST_F(ControlPlaneTest, DeleteDropsTheBackingIdAndBothEntries) {
  auto disk = Make("ram0", kMiB);
  disk->set_backing_id(7);
  EXPECT_EQ(Write(ControlFile::kDelete, nullptr, "ram0"), 0);
  EXPECT_EQ(table_->Find("ram0"), nullptr);
  EXPECT_EQ(kernel_.calls, (Calls{"release ram0 7", "entry /ram0", "entry .control/ram0"}));
}

TEST_F(ControlPlaneTest, RmDoesNotInvalidateItsOwnEntry) {
  auto disk = Make("ram0", kMiB);
  EXPECT_TRUE(control_->Unlink(true, "ram0").ok());
  EXPECT_EQ(table_->Find("ram0"), nullptr);
  EXPECT_EQ(kernel_.calls, (Calls{"release ram0 0", "entry .control/ram0"}));
  EXPECT_EQ(StatusToErrno(control_->Unlink(true, "ram0")), ENOENT);
  EXPECT_EQ(StatusToErrno(control_->Unlink(false, "x")), EPERM);
}

TEST_F(ControlPlaneTest, DeleteOfAnOpenDiskIsBusyAndTellsTheKernelNothing) {
  auto disk = Make("ram0", kMiB);
  disk->set_backing_id(7);
  ASSERT_TRUE(disk->Open(false).ok());
  EXPECT_EQ(Write(ControlFile::kDelete, nullptr, "ram0"), EBUSY);
  EXPECT_EQ(StatusToErrno(control_->Unlink(true, "ram0")), EBUSY);
  EXPECT_NE(table_->Find("ram0"), nullptr);
  EXPECT_EQ(disk->backing_id(), 7);
  EXPECT_EQ(kernel_.calls, Calls{});
  disk->Release(false);
}

TEST_F(ControlPlaneTest, BadInputChangesNothing) {
  auto disk = Make("ram0", kMiB);
  ASSERT_TRUE(disk->Write(0, "abc", 3).ok());
  EXPECT_EQ(Write(ControlFile::kSize, disk, "12Q"), EINVAL);
  EXPECT_EQ(Write(ControlFile::kSize, disk, "2M", /*offset=*/1), EINVAL);
  EXPECT_EQ(Write(ControlFile::kSize, disk, std::string(kMaxControlWrite + 1, '1')), EINVAL);
  EXPECT_EQ(Write(ControlFile::kReadonly, disk, "2"), EINVAL);
  EXPECT_EQ(Write(ControlFile::kMode, disk, "fast"), EINVAL);
  EXPECT_EQ(Write(ControlFile::kDiscard, disk, "0"), EINVAL);
  EXPECT_EQ(Write(ControlFile::kDiscard, disk, "0 2M"), EINVAL);  // past the end
  EXPECT_EQ(Write(ControlFile::kNew, nullptr, "ram1 1Q"), EINVAL);
  EXPECT_EQ(Write(ControlFile::kNew, nullptr, "ram0 1M"), EEXIST);
  EXPECT_EQ(Write(ControlFile::kNew, nullptr, "stats 1M"), EEXIST);  // a reserved name
  EXPECT_EQ(Write(ControlFile::kDelete, nullptr, "nope"), ENOENT);
  EXPECT_EQ(Write(ControlFile::kMaxMemory, nullptr, "-1"), EINVAL);
  EXPECT_EQ(Write(ControlFile::kGlobalStats, nullptr, "1"), EBADF);
  EXPECT_EQ(Write(ControlFile::kDiskStats, disk, "1"), EBADF);
  EXPECT_EQ(disk->size_bytes(), kMiB);
  EXPECT_FALSE(disk->readonly());
  EXPECT_EQ(disk->requested_mode(), DataMode::kDirect);
  EXPECT_EQ(disk->store().allocated_bytes(), 4096u);
  EXPECT_EQ(table_->size(), 1u);
  EXPECT_EQ(pool_->max_bytes(), 64 * kMiB);
  EXPECT_EQ(kernel_.calls, Calls{});
}

TEST_F(ControlPlaneTest, AWriteToADeletedDisksFileIsENOENT) {
  auto disk = Make("ram0", kMiB);
  ASSERT_TRUE(table_->Delete("ram0").ok());
  EXPECT_EQ(Write(ControlFile::kSize, disk, "2M"), ENOENT);
  EXPECT_EQ(disk->size_bytes(), kMiB);
}

TEST_F(ControlPlaneTest, NewUsesTheDefaultsUnlessTold) {
  EXPECT_EQ(Write(ControlFile::kNew, nullptr, "a 1M"), 0);
  EXPECT_EQ(Write(ControlFile::kNew, nullptr, "b 1000 mode=cached readonly=1"), 0);
  auto a = table_->Find("a");
  auto b = table_->Find("b");
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(a->requested_mode(), DataMode::kDirect);
  EXPECT_EQ(a->attributes().uid, 1000u);
  EXPECT_EQ(a->attributes().gid, 1001u);
  EXPECT_EQ(a->attributes().permissions, 0600u);
  EXPECT_EQ(b->requested_mode(), DataMode::kCached);
  EXPECT_EQ(b->size_bytes(), 1024u);
  EXPECT_TRUE(b->readonly());
}

TEST_F(ControlPlaneTest, CreateThroughTheTree) {
  auto made = control_->CreateFile("create", true, "img", S_IFREG | 0644, 77, 88);
  ASSERT_TRUE(made.ok()) << made.status();
  EXPECT_EQ((*made)->size_bytes(), 0u);
  EXPECT_TRUE((*made)->growing());
  EXPECT_EQ((*made)->attributes().permissions, 0600u);  // whatever the umask allowed
  EXPECT_EQ((*made)->attributes().uid, 77u);
  EXPECT_EQ((*made)->requested_mode(), DataMode::kDirect);
  EXPECT_EQ(StatusToErrno(control_->CreateFile("create", false, "x", S_IFREG, 0, 0).status()),
            EPERM);
  EXPECT_EQ(StatusToErrno(control_->CreateFile("mknod", true, "f", S_IFIFO, 0, 0).status()), EPERM);
  EXPECT_EQ(StatusToErrno(control_->CreateFile("create", true, "img", S_IFREG, 0, 0).status()),
            EEXIST);
  EXPECT_EQ(StatusToErrno(control_->CreateFile("create", true, "delete", S_IFREG, 0, 0).status()),
            EEXIST);
  EXPECT_EQ(table_->size(), 1u);
}

// A disk made through the tree grows with what its creator writes; its last
// release fixes the size, and the kernel is told each time the size moves.
TEST_F(ControlPlaneTest, ACreatedDiskGrowsUntilItsCreatorCloses) {
  auto made = control_->CreateFile("create", true, "img", S_IFREG, 0, 0);
  ASSERT_TRUE(made.ok());
  Disk& disk = **made;
  ASSERT_TRUE(disk.Open(true).ok());
  ASSERT_TRUE(disk.Write(0, "hello", 5).ok());
  EXPECT_EQ(disk.size_bytes(), 512u);
  control_->Closed(disk);  // close(): the size is rounded up to a page
  EXPECT_EQ(disk.size_bytes(), 4096u);
  EXPECT_EQ(kernel_.calls, Calls{"attr img"});
  control_->Released(disk, true, false);
  EXPECT_FALSE(disk.growing());
  EXPECT_EQ(kernel_.calls, (Calls{"attr img", "attr img"}));
  EXPECT_EQ(StatusToErrno(disk.Write(4096, "x", 1).status()), ENOSPC);  // fixed now
}

TEST_F(ControlPlaneTest, AReadOnlyMountMakesNoDisksThroughTheTree) {
  ControlPlane ro(table_.get(), &kernel_, ControlPlaneOptions{0, 0, DataMode::kDirect, true});
  EXPECT_EQ(StatusToErrno(ro.CreateFile("create", true, "img", S_IFREG, 0, 0).status()), EROFS);
  EXPECT_TRUE(ro.Write(ControlFile::kNew, nullptr, 0, "a 1M").ok());
  EXPECT_TRUE(table_->Find("a")->readonly());
}

TEST_F(ControlPlaneTest, ReadonlyIsRefusedWhileAnOpenWritesWithoutTheDaemon) {
  auto disk = Make("d", kMiB, DataMode::kDirect);
  ASSERT_TRUE(disk->Open(true).ok());  // served by the daemon: no obstacle
  EXPECT_EQ(Write(ControlFile::kReadonly, disk, "1"), 0);
  EXPECT_EQ(Write(ControlFile::kReadonly, disk, "0"), 0);
  disk->Release(true);
  ASSERT_TRUE(disk->Open(true).ok());  // a passthrough read-write open (dax, or direct + mmap)
  ASSERT_TRUE(disk->AddBypassWriter().ok());
  kernel_.calls.clear();
  EXPECT_EQ(Write(ControlFile::kReadonly, disk, "1"), EBUSY);
  EXPECT_FALSE(disk->readonly());
  EXPECT_EQ(kernel_.calls, Calls{});
  disk->Release(true, /*bypass_writer=*/true);
  EXPECT_EQ(Write(ControlFile::kReadonly, disk, "1"), 0);
  EXPECT_TRUE(disk->readonly());
  EXPECT_EQ(kernel_.calls, Calls{"attr d"});
}

TEST_F(ControlPlaneTest, ModeNeedsTheDiskClosedAndDaxAvailable) {
  auto disk = Make("ram0", kMiB);
  ASSERT_TRUE(disk->Open(false).ok());
  EXPECT_EQ(Write(ControlFile::kMode, disk, "cached"), EBUSY);
  disk->Release(false);
  disk->set_backing_id(5);
  EXPECT_EQ(Write(ControlFile::kMode, disk, "cached"), 0);
  EXPECT_EQ(disk->requested_mode(), DataMode::kCached);
  // cached opens never use the backing id; no cached page outlives the mode.
  EXPECT_EQ(kernel_.calls, (Calls{"release ram0 5", "data ram0"}));
  kernel_.facts.passthrough = false;
  EXPECT_EQ(Write(ControlFile::kMode, disk, "dax"), EOPNOTSUPP);
  EXPECT_EQ(disk->requested_mode(), DataMode::kCached);
}

TEST_F(ControlPlaneTest, DiscardDropsCachedPagesOnlyInCachedMode) {
  auto direct = Make("a", kMiB);
  auto cached = Make("b", kMiB, DataMode::kCached);
  ASSERT_TRUE(direct->Write(0, "x", 1).ok());
  EXPECT_EQ(Write(ControlFile::kDiscard, direct, "0 4096"), 0);
  EXPECT_EQ(direct->store().allocated_bytes(), 0u);
  EXPECT_EQ(Write(ControlFile::kDiscard, cached, "0 4096"), 0);
  EXPECT_EQ(kernel_.calls, Calls{"data b"});
}

TEST_F(ControlPlaneTest, MaxMemory) {
  EXPECT_EQ(Write(ControlFile::kMaxMemory, nullptr, "32M"), 0);
  EXPECT_EQ(pool_->max_bytes(), 32 * kMiB);
  EXPECT_EQ(control_->Content(ControlFile::kMaxMemory, nullptr), "33554432\n");
}

TEST_F(ControlPlaneTest, ContentOfEachReadableFile) {
  auto disk = Make("ram0", kMiB);
  EXPECT_EQ(control_->Content(ControlFile::kSize, disk.get()), "1048576\n");
  EXPECT_EQ(control_->Content(ControlFile::kReadonly, disk.get()), "0\n");
  EXPECT_EQ(control_->Content(ControlFile::kMode, disk.get()), "direct\n");
  for (const ControlFileInfo& f : kControlFiles) {
    if (f.readable) continue;
    EXPECT_EQ(control_->Content(f.file, f.scope == ControlScope::kDisk ? disk.get() : nullptr), "")
        << f.name;
  }
}

// The stats files render from one table each: the keys handed out are the
// keys rendered, in order.
// The fault files are one run of the control-file table, in FaultFile order.
TEST(ControlFilesTest, TheFaultFilesAreTheFaultInjectorsFiles) {
  size_t found = 0;
  for (const ControlFileInfo& info : ControlFilesOf(ControlScope::kDisk)) {
    std::optional<FaultFile> fault = FaultFileOf(info.file);
    if (!fault) continue;
    EXPECT_EQ(info.name, FaultFileName(*fault));
    EXPECT_TRUE(info.readable && info.writable) << info.name;
    ++found;
  }
  EXPECT_EQ(found, kFaultFileCount);
  EXPECT_FALSE(FaultFileOf(ControlFile::kMode).has_value());
}

TEST_F(ControlPlaneTest, AFaultFileWriteSetsTheFaultAndReadsBack) {
  auto disk = Make("ram0", kMiB);
  EXPECT_EQ(Write(ControlFile::kBadblocks, disk, "+0-7\n"), 0);
  EXPECT_TRUE(disk->faults().active());
  EXPECT_EQ(control_->Content(ControlFile::kBadblocks, disk.get()), "0-7\n");
  char buf[512];
  int64_t at = 0;
  EXPECT_EQ(StatusToErrno(disk->FaultyRead(0, buf, sizeof(buf), &at).status()), EIO);
  // Refused: bad text, and a disk in dax mode; nothing changes.
  EXPECT_EQ(Write(ControlFile::kLatency, disk, "write soon"), EINVAL);
  EXPECT_EQ(control_->Content(ControlFile::kLatency, disk.get()),
            disk->faults().Read(FaultFile::kLatency));
  EXPECT_EQ(Write(ControlFile::kMode, disk, "dax"), EINVAL);  // a fault is set
  EXPECT_EQ(Write(ControlFile::kBadblocks, disk, "clear"), 0);
  EXPECT_FALSE(disk->faults().active());
  EXPECT_EQ(Write(ControlFile::kMode, disk, "dax"), 0);
  disk->set_dax_fallback("");  // passthrough works: dax is in force
  EXPECT_EQ(Write(ControlFile::kErrors, disk, "read 0.5"), EINVAL);
  EXPECT_FALSE(disk->faults().active());
}

// Fault lists may be longer than other control writes (kMaxFaultWrite).
TEST_F(ControlPlaneTest, FaultFilesTakeLongerWrites) {
  auto disk = Make("ram0", 64 * kMiB);
  std::string list;
  for (int i = 0; list.size() <= kMaxControlWrite; ++i)
    absl::StrAppend(&list, "+", i * 16, "-", i * 16 + 7, "\n");
  ASSERT_LE(list.size(), kMaxFaultWrite);
  EXPECT_EQ(Write(ControlFile::kBadblocks, disk, list), 0);
  EXPECT_EQ(Write(ControlFile::kDiscard, disk, list), EINVAL);
  EXPECT_EQ(Write(ControlFile::kBadblocks, disk, std::string(kMaxFaultWrite + 1, '\n')), EINVAL);
}

TEST_F(ControlPlaneTest, StatsKeysAreTheRenderedKeys) {
  auto disk = Make("ram0", kMiB);
  auto rows = ParseKeyValues(control_->Content(ControlFile::kDiskStats, disk.get()));
  ASSERT_TRUE(rows.ok());
  std::vector<std::string_view> keys;
  for (const auto& [key, value] : *rows) keys.push_back(key);
  EXPECT_EQ(keys, Disk::StatsKeys());
  // The strings live in `rows`; compare before it goes.
  rows = ParseKeyValues(control_->Content(ControlFile::kGlobalStats, nullptr));
  ASSERT_TRUE(rows.ok());
  keys.clear();
  for (const auto& [key, value] : *rows) keys.push_back(key);
  EXPECT_EQ(keys, ControlPlane::GlobalStatsKeys());
  EXPECT_EQ(keys.front(), "memory_used");
}

TEST(ControlFilesTest, ReservedNamesAreTheGlobalFiles) {
  for (const ControlFileInfo& f : kControlFiles) {
    EXPECT_EQ(IsReservedDiskName(f.name), f.scope == ControlScope::kGlobal || f.name == "stats")
        << f.name;
  }
  EXPECT_FALSE(IsReservedDiskName("ram0"));
  EXPECT_FALSE(IsReservedDiskName("size"));
}

}  // namespace
}  // namespace ramdiskfs

namespace ramdiskfs {
namespace {

// The backticked keys in the first column of the table that follows the
// line `heading` in docs/control.md ("| `reads`, `writes` | ..." gives two).
std::vector<std::string> DocumentedKeys(std::string_view heading_row) {
  std::ifstream in(std::string(RAMDISKFS_SOURCE_DIR) + "/docs/control.md");
  EXPECT_TRUE(in) << "docs/control.md not found";
  std::vector<std::string> keys;
  std::string line;
  bool in_table = false;
  while (std::getline(in, line)) {
    if (line.rfind(heading_row, 0) == 0) {
      in_table = true;
      continue;
    }
    if (!in_table || line.rfind("|---", 0) == 0) continue;
    if (line.rfind("|", 0) != 0) break;
    const std::string first = line.substr(1, line.find('|', 1) - 1);
    for (size_t at = first.find('`'); at != std::string::npos; at = first.find('`', at + 1)) {
      const size_t end = first.find('`', at + 1);
      keys.push_back(first.substr(at + 1, end - at - 1));
      at = end;
    }
  }
  return keys;
}

std::vector<std::string> Strings(const std::vector<std::string_view>& views) {
  return {views.begin(), views.end()};
}

// docs/control.md is the stats files' documentation: it lists exactly the
// keys the daemon renders, in order.
TEST(StatsDocTest, ControlMdListsExactlyTheKeys) {
  EXPECT_EQ(DocumentedKeys("| key | meaning |"), Strings(ControlPlane::GlobalStatsKeys()));
  EXPECT_EQ(DocumentedKeys("| key | unit | meaning | counted in |"), Strings(Disk::StatsKeys()));
}

}  // namespace
}  // namespace ramdiskfs
