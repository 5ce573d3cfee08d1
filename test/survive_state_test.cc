// survive_state: what a restarted worker rebuilds the table and the kernel's
// open handles from (SPEC 13).

#include "ramdiskfs/survive_state.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "ramdiskfs/status.h"
#include "test/test_disks.h"

namespace ramdiskfs {
namespace {

using SurviveStateTest = DiskTableTest;

TableState Sample() {
  TableState state;
  state.next_id = 7;
  state.max_memory_bytes = 1 << 30;
  DiskState a;
  a.id = 2;
  a.name = "ram0";
  a.requested_mode = DataMode::kDax;
  a.readonly = true;
  a.permissions = 0640;
  a.uid = 1000;
  a.gid = 100;
  a.mtime_ns = 1764640000123456789;
  a.ctime_ns = -5;
  a.backing_id = 3;
  DiskState b;
  b.id = 6;
  b.name = "scratch.img";
  b.growing = true;
  state.disks = {a, b};
  return state;
}

TEST(TableStateCodec, RoundTrips) {
  const TableState state = Sample();
  absl::StatusOr<TableState> back = DecodeTableState(EncodeTableState(state));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, state);
  TableState empty;
  back = DecodeTableState(EncodeTableState(empty));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, empty);
}

TEST(TableStateCodec, RefusesTruncatedAndForeignText) {
  const std::string text = EncodeTableState(Sample());
  // Every cut short of the whole text is refused: a worker that died while
  // the supervisor's copy was being written must not restore half a table.
  for (size_t cut = 0; cut + 1 < text.size(); ++cut) {
    EXPECT_FALSE(DecodeTableState(text.substr(0, cut)).ok()) << "cut at " << cut;
  }
  EXPECT_FALSE(DecodeTableState("hello\n").ok());
  std::string bad_mode = text;
  bad_mode.replace(bad_mode.find(" dax "), 5, " fast ");
  EXPECT_FALSE(DecodeTableState(bad_mode).ok());
  std::string bad_name = text;
  bad_name.replace(bad_name.find("ram0"), 4, ".ram");
  EXPECT_FALSE(DecodeTableState(bad_name).ok());
}

TEST_F(SurviveStateTest, CaptureAndRestoreKeepIdsDataAndAttributes) {
  auto a = Make("ram0", 2 * kMiB);
  auto b = Make("ram1", kMiB);
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(table_->Delete("ram1").ok());  // a hole in the ids
  auto c = Make("ram2", kMiB);
  ASSERT_TRUE(a->Write(12345, "survive", 7).ok());
  a->SetPermissions(0604);
  a->SetOwner(12, 34);
  ASSERT_TRUE(c->SetReadonly(true).ok());
  ASSERT_TRUE(c->SetMode(DataMode::kCached).ok());

  std::vector<int> borrowed;
  const TableState state = CaptureTableState(*table_, &borrowed);
  ASSERT_EQ(state.disks.size(), 2u);
  ASSERT_EQ(borrowed.size(), 2u);
  EXPECT_EQ(state.next_id, 4u);
  // The new worker's descriptors are copies (they came by SCM_RIGHTS).
  std::vector<int> fds;
  for (int fd : borrowed) fds.push_back(fcntl(fd, F_DUPFD_CLOEXEC, 0));

  DiskTable restored(pool_.get());
  absl::StatusOr<TableState> decoded = DecodeTableState(EncodeTableState(state));
  ASSERT_TRUE(decoded.ok());
  ASSERT_TRUE(RestoreTable(*decoded, fds, &restored).ok());
  ASSERT_EQ(restored.size(), 2u);
  auto ra = restored.FindById(a->id());
  auto rc = restored.FindById(c->id());
  ASSERT_TRUE(ra && rc);
  EXPECT_EQ(ra->name(), "ram0");
  EXPECT_EQ(ra->size_bytes(), 2 * kMiB);
  char buf[7];
  ASSERT_TRUE(ra->Read(12345, buf, 7).ok());
  EXPECT_EQ(std::string(buf, 7), "survive");
  EXPECT_EQ(ra->attributes().permissions, 0604u);
  EXPECT_EQ(ra->attributes().uid, 12u);
  EXPECT_EQ(ra->attributes().mtime, a->attributes().mtime);
  EXPECT_TRUE(rc->readonly());
  EXPECT_EQ(rc->requested_mode(), DataMode::kCached);
  EXPECT_EQ(restored.FindById(b->id()), nullptr);
  // A disk made after the restart never reuses an id the kernel may hold.
  NewDisk spec;
  spec.name = "ram9";
  spec.size_bytes = kMiB;
  auto d = restored.Create(spec);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ((*d)->id(), 4u);
  // Both tables share the backing files: a write through one shows in the other.
  ASSERT_TRUE(ra->Write(0, "x", 1).ok());
  ASSERT_TRUE(a->Read(0, buf, 1).ok());
  EXPECT_EQ(buf[0], 'x');
}

TEST_F(SurviveStateTest, RestoreRefusesAMismatchedFdCount) {
  auto a = Make("ram0", kMiB);
  const TableState state = CaptureTableState(*table_);
  DiskTable restored(pool_.get());
  EXPECT_FALSE(RestoreTable(state, {}, &restored).ok());
  EXPECT_EQ(restored.size(), 0u);
}

TEST_F(SurviveStateTest, ChangeObserverSeesCreateAndDelete) {
  int changes = 0;
  table_->SetChangeObserver([&] { ++changes; });
  auto a = Make("ram0", kMiB);
  EXPECT_EQ(changes, 1);
  EXPECT_FALSE(table_->Create({.name = "ram0", .size_bytes = kMiB}).ok());
  EXPECT_EQ(changes, 1);  // a refused create changes nothing
  ASSERT_TRUE(table_->Delete("ram0").ok());
  EXPECT_EQ(changes, 2);
}

TEST(OpenTableTest, HandlesSurviveAReattach) {
  auto table = OpenTable::Create(8);
  ASSERT_TRUE(table.ok()) << table.status();
  OpenInfo disk_open{OpenInfo::kDisk, 5, 0, true, true, true, 2, 100};
  OpenInfo control_open{OpenInfo::kControl, 0, 3, false, false, false, 0, 102};
  auto h1 = (*table)->Add(disk_open);
  auto h2 = (*table)->Add(control_open);
  ASSERT_TRUE(h1.ok() && h2.ok());
  EXPECT_NE(*h1, 0u);
  EXPECT_NE(*h1, *h2);
  // Pending until the reply reached the kernel.
  EXPECT_TRUE((*table)->Get(*h1)->pending);
  EXPECT_EQ((*table)->FindPending(100), *h1);
  (*table)->Confirm(*h1);
  EXPECT_FALSE((*table)->Get(*h1)->pending);
  EXPECT_EQ((*table)->FindPending(100), 0u);
  (*table)->SetOverflowSeen(*h1, 9);
  // The worker dies; the next one maps the same memfd.
  auto again = OpenTable::Attach(fcntl((*table)->fd(), F_DUPFD_CLOEXEC, 0));
  ASSERT_TRUE(again.ok());
  auto live = (*again)->Live();
  ASSERT_EQ(live.size(), 2u);
  disk_open.overflow_seen = 9;
  EXPECT_EQ((*again)->Get(*h1), disk_open);
  // The worker died before confirming h2: the successor still finds it by
  // the unique a resent OPEN carries.
  control_open.pending = true;
  EXPECT_EQ((*again)->Get(*h2), control_open);
  EXPECT_EQ((*again)->FindPending(102), *h2);
  (*again)->Remove(*h1);
  EXPECT_FALSE((*table)->Get(*h1).has_value());  // shared, not copied
  EXPECT_FALSE((*again)->Get(0).has_value());
  EXPECT_FALSE((*again)->Get(1000).has_value());
}

TEST(OpenTableTest, FullTableFailsWithEnfile) {
  auto table = OpenTable::Create(2);
  ASSERT_TRUE(table.ok());
  OpenInfo info;
  ASSERT_TRUE((*table)->Add(info).ok());
  auto h = (*table)->Add(info);
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(StatusToErrno((*table)->Add(info).status()), ENFILE);
  (*table)->Remove(*h);
  EXPECT_TRUE((*table)->Add(info).ok());
}

TEST(OpenTableTest, ForeignFileIsRefused) {
  int fd = memfd_create("x", MFD_CLOEXEC);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(ftruncate(fd, 7), 0);
  EXPECT_FALSE(OpenTable::Attach(fd).ok());
}

TEST(ReplyLogTest, OutcomesSurviveAReattachAndTheRingWraps) {
  auto log = ReplyLog::Create();
  ASSERT_TRUE(log.ok()) << log.status();
  (*log)->Record(10, 0);
  (*log)->Record(12, EEXIST);
  auto again = ReplyLog::Attach(fcntl((*log)->fd(), F_DUPFD_CLOEXEC, 0));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ((*again)->Find(10), 0);
  EXPECT_EQ((*again)->Find(12), EEXIST);
  EXPECT_FALSE((*again)->Find(14).has_value());
  EXPECT_FALSE((*again)->Find(0).has_value());
  // The successor appends after its predecessor's newest entry.
  for (uint64_t u = 100; u < 100 + ReplyLog::kCapacity - 2; ++u) (*again)->Record(u, 0);
  EXPECT_EQ((*again)->Find(12), EEXIST);
  (*again)->Record(99999, 0);
  (*again)->Record(99998, 0);
  (*again)->Record(99997, 0);  // wrapped: the oldest goes first
  EXPECT_FALSE((*again)->Find(10).has_value());
}

}  // namespace
}  // namespace ramdiskfs
