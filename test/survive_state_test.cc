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

// Every setting a user can make through a fault or cache control file.
DiskSettings AllSettings() {
  DiskSettings s;
  FaultSettings& f = s.faults;
  for (auto [file, text] : std::vector<std::pair<FaultFile, std::string>>{
           {FaultFile::kBadblocks, "+8-15\n+100-100\n"},
           {FaultFile::kBadblocksOnce, "1"},
           {FaultFile::kBadblocksPartial, "1"},
           {FaultFile::kErrors, "read 0.25 ENOSPC\nwrite 1\nflush 0.000000001 ETIMEDOUT"},
           {FaultFile::kFaultSeed, "18446744073709551615"},
           {FaultFile::kLatency, "write 200 50\ndiscard 7"},
           {FaultFile::kThrottle, "read_iops 100 write_bandwidth 50M"},
           {FaultFile::kFlakey, "3 1 corrupt_writes"}}) {
    EXPECT_TRUE(ApplyFaultWrite(file, text, &f).ok()) << FaultFileName(file);
  }
  s.flakey_epoch_ns = 123456789;
  s.cache = {CacheMode::kVolatile, 8 << 20, PowercutPolicy::kTorn, 42};
  s.power_on = false;
  s.cut_at_flush = 3;
  s.last_cut = {{0, 4096, 512, WriteFate::kKept}, {1, 0, 8192, WriteFate::kTorn}};
  return s;
}

TEST(TableStateCodec, RoundTripsEverySetting) {
  TableState state = Sample();
  state.disks[1].requested_mode = DataMode::kDirect;
  state.disks[1].settings = AllSettings();
  const std::string text = EncodeTableState(state);
  EXPECT_NE(text.find("set fault:errors "), std::string::npos) << text;
  absl::StatusOr<TableState> back = DecodeTableState(text);
  ASSERT_TRUE(back.ok()) << back.status() << "\n" << text;
  EXPECT_EQ(*back, state) << text;
  // Defaults write no set line at all.
  EXPECT_EQ(EncodeTableState(Sample()).find("set "), std::string::npos);
  // Each setting alone, so one that is dropped or misread shows by name.
  const DiskSettings all = AllSettings();
  for (int field = 0; field < 7; ++field) {
    TableState one = Sample();
    DiskSettings& s = one.disks[0].settings;
    switch (field) {
      case 0:
        s.faults = all.faults;
        s.flakey_epoch_ns = all.flakey_epoch_ns;
        break;
      case 1:
        s.cache.mode = all.cache.mode;
        break;
      case 2:
        s.cache.cache_size_bytes = all.cache.cache_size_bytes;
        break;
      case 3:
        s.cache.policy = all.cache.policy;
        s.cache.seed = all.cache.seed;
        break;
      case 4:
        s.power_on = false;
        break;
      case 5:
        s.cut_at_flush = 1;
        break;
      case 6:
        s.last_cut = all.last_cut;
        break;
    }
    absl::StatusOr<TableState> got = DecodeTableState(EncodeTableState(one));
    ASSERT_TRUE(got.ok()) << field << ": " << got.status();
    EXPECT_EQ(*got, one) << "field " << field;
  }
}

TEST(TableStateCodec, ReadsVersion1AndRefusesOtherVersionsClearly) {
  // What the first --supervise wrote: no settings; a worker of this version
  // takes over from one of that version (an upgrade) with default settings.
  const std::string v1 =
      "ramdiskfs-state 1\ntable 3 1048576 1\n"
      "disk 2 direct 0 0 384 0 0 1 2 0 ram0\nend\n";
  absl::StatusOr<TableState> old = DecodeTableState(v1);
  ASSERT_TRUE(old.ok()) << old.status();
  ASSERT_EQ(old->disks.size(), 1u);
  EXPECT_EQ(old->disks[0].settings, DiskSettings());
  // Version 1 had no set lines: one there is not version 1.
  std::string v1_with_set = v1;
  v1_with_set.insert(v1_with_set.find("end"), "set power 0\n");
  EXPECT_FALSE(DecodeTableState(v1_with_set).ok());
  // A newer version's state is refused with a message that says so.
  std::string v3 = EncodeTableState(Sample());
  v3.replace(0, v3.find('\n'), "ramdiskfs-state 3");
  absl::StatusOr<TableState> newer = DecodeTableState(v3);
  ASSERT_FALSE(newer.ok());
  EXPECT_NE(newer.status().message().find("state version 3"), std::string::npos) << newer.status();
  for (std::string_view bad :
       {"ramdiskfs-state 0\n", "ramdiskfs-state x\n", "ramdiskfs-state\n", "",
        "\x7f"
        "ELF\x02\x01"}) {
    absl::StatusOr<TableState> got = DecodeTableState(bad);
    ASSERT_FALSE(got.ok()) << bad;
    EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(got.status().message().find("state line 1"), std::string::npos) << got.status();
  }
}

TEST(TableStateCodec, RefusesBadSettingsNamingTheLine) {
  TableState state = Sample();
  state.disks[0].settings.power_on = false;
  const std::string good = EncodeTableState(state);
  const size_t at = good.find("set power 0");
  ASSERT_NE(at, std::string::npos) << good;
  for (std::string_view line :
       {"set power 2", "set colour blue", "set fault:nope 1", "set fault:errors read\\x",
        "set fault:errors read 7", "set fault:latency \\q", "set cache_size -1",
        "set powercut_log 0 1 2 maybe", "set flakey_epoch soon", "set power"}) {
    std::string text = good;
    text.replace(at, std::string_view("set power 0").size(), line);
    absl::StatusOr<TableState> got = DecodeTableState(text);
    ASSERT_FALSE(got.ok()) << line;
    EXPECT_NE(got.status().message().find("state line 4"), std::string::npos)
        << line << ": " << got.status();
  }
  // A set line before any disk belongs to no disk.
  std::string orphan = good;
  orphan.insert(orphan.find("disk "), "set power 0\n");
  EXPECT_FALSE(DecodeTableState(orphan).ok());
}

TEST_F(SurviveStateTest, SettingsSurviveARestoreAndStayInEffect) {
  auto a = Make("ram0", kMiB);
  ASSERT_TRUE(a);
  ASSERT_TRUE(a->WriteFaultFile(FaultFile::kErrors, "read 1 ENOSPC\n").ok());
  ASSERT_TRUE(a->WriteFaultFile(FaultFile::kBadblocks, "+16-23\n").ok());
  ASSERT_TRUE(a->WriteFaultFile(FaultFile::kFlakey, "5 5 drop_writes\n").ok());
  ASSERT_TRUE(
      a->ApplyCacheSettings({CacheMode::kVolatile, 1 << 20, PowercutPolicy::kPrefix, 9}).ok());
  a->cache().SetCutAtFlush(4);
  auto b = Make("ram1", kMiB);
  ASSERT_TRUE(b);
  ASSERT_TRUE(b->ApplyCacheSettings({CacheMode::kVolatile, 0, PowercutPolicy::kAllLost, 0}).ok());
  ASSERT_TRUE(b->Write(0, "lost?", 5).ok());  // unflushed when the worker dies
  ASSERT_TRUE(b->SetPower(false).ok());       // cut: all_lost
  const std::vector<PowercutRecord> cut = b->cache().last_cut();
  ASSERT_EQ(cut.size(), 1u);

  std::vector<int> borrowed;
  const TableState state = CaptureTableState(*table_, &borrowed);
  std::vector<int> fds;
  for (int fd : borrowed) fds.push_back(fcntl(fd, F_DUPFD_CLOEXEC, 0));
  DiskTable restored(pool_.get());
  absl::StatusOr<TableState> decoded = DecodeTableState(EncodeTableState(state));
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  ASSERT_TRUE(RestoreTable(*decoded, fds, &restored).ok());
  auto ra = restored.FindById(a->id());
  auto rb = restored.FindById(b->id());
  ASSERT_TRUE(ra && rb);
  // The files read the same.
  for (FaultFile file : AllFaultFiles()) {
    EXPECT_EQ(ra->faults().Read(file), a->faults().Read(file)) << FaultFileName(file);
  }
  EXPECT_EQ(ra->faults().flakey_epoch_ns(), a->faults().flakey_epoch_ns());
  EXPECT_EQ(ra->cache().settings(), a->cache().settings());
  EXPECT_EQ(ra->cache().cut_at_flush(), 4u);
  EXPECT_TRUE(ra->cache().powered());
  EXPECT_FALSE(rb->cache().powered());
  EXPECT_EQ(rb->cache().last_cut(), cut);
  EXPECT_EQ(rb->cache().stats().powercuts.load(), 0u);  // putting it back is not a cut
  // And act the same: the error rule fires, the dead drive stays dead.
  EXPECT_TRUE(ra->faults().active());
  int64_t reply_at = 0;
  char buf[8];
  EXPECT_EQ(StatusToErrno(ra->FaultyRead(0, buf, 8, &reply_at).status()), ENOSPC);
  EXPECT_EQ(StatusToErrno(rb->Read(0, buf, 5).status()), EIO);
  ASSERT_TRUE(rb->SetPower(true).ok());
  ASSERT_TRUE(rb->Read(0, buf, 5).ok());
  EXPECT_EQ(std::string(buf, 5), std::string(5, '\0'));  // the post-cut image
  // The armed cut counts on from where it was.
  EXPECT_TRUE(ra->cache().engaged());
}

TEST_F(SurviveStateTest, AHealByBadblocksOnceIsReportedOnce) {
  auto a = Make("ram0", kMiB);
  ASSERT_TRUE(a);
  ASSERT_TRUE(a->WriteFaultFile(FaultFile::kBadblocks, "+0-7\n").ok());
  ASSERT_TRUE(a->WriteFaultFile(FaultFile::kBadblocksOnce, "1\n").ok());
  EXPECT_FALSE(a->TakeSettingsChanged());
  int64_t reply_at = 0;
  EXPECT_FALSE(a->FaultyWrite(0, "x", 1, false, &reply_at).ok());  // fails, heals
  EXPECT_TRUE(a->TakeSettingsChanged());
  EXPECT_FALSE(a->TakeSettingsChanged());
  EXPECT_TRUE(a->FaultyWrite(0, "x", 1, false, &reply_at).ok());
  EXPECT_FALSE(a->TakeSettingsChanged());
  a->cache().SetCutAtFlush(2);
  ASSERT_TRUE(a->Sync().ok());
  EXPECT_TRUE(a->TakeSettingsChanged());  // 1 flush left: the successor must know
  EXPECT_FALSE(a->Sync().ok());           // the cut fires
  EXPECT_TRUE(a->TakeSettingsChanged());
  EXPECT_FALSE(a->cache().powered());
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
