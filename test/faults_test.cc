#include "ramdiskfs/faults.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "ramdiskfs/options.h"
#include "ramdiskfs/status.h"

namespace ramdiskfs {
namespace {

using std::string_literals::operator""s;
using Ranges = std::vector<std::pair<uint64_t, uint64_t>>;

constexpr int64_t kMs = 1'000'000;
constexpr int64_t kSec = 1'000'000'000;
constexpr int64_t kT0 = 1000 * kSec;  // an arbitrary "now" for the tests

// Applies `text` to `file` of a fresh settings value; returns the status.
absl::Status Apply(FaultFile file, std::string_view text, FaultSettings* s) {
  return ApplyFaultWrite(file, text, s);
}

std::string Render(FaultFile file, const FaultSettings& s) { return RenderFaultFile(file, s); }

// A refused write: the errno, a one-line message naming the file, and the
// settings unchanged.
void ExpectRefused(FaultFile file, std::string_view text, int err,
                   const FaultSettings& start = FaultSettings()) {
  FaultSettings s = start;
  const absl::Status status = Apply(file, text, &s);
  ASSERT_FALSE(status.ok()) << FaultFileName(file) << ": '" << text << "' accepted";
  EXPECT_EQ(StatusToErrno(status), err) << status;
  const std::string message(status.message());
  EXPECT_EQ(message.rfind(std::string(FaultFileName(file)), 0), 0u) << message;
  EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  EXPECT_TRUE(s == start) << FaultFileName(file) << ": '" << text << "' changed the settings";
}

// ---- names -------------------------------------------------------------------------

TEST(FaultFilesTest, NamesRoundTrip) {
  std::set<std::string_view> names;
  for (FaultFile file : AllFaultFiles()) {
    EXPECT_EQ(FindFaultFile(FaultFileName(file)), file);
    names.insert(FaultFileName(file));
  }
  EXPECT_EQ(names.size(), kFaultFileCount);
  EXPECT_EQ(FindFaultFile("size"), std::nullopt);
  EXPECT_EQ(FindFaultFile("Badblocks"), std::nullopt);
}

TEST(FaultFilesTest, DefaultIsOff) {
  FaultSettings s;
  EXPECT_FALSE(s.any());
  EXPECT_EQ(Render(FaultFile::kBadblocks, s), "");
  EXPECT_EQ(Render(FaultFile::kBadblocksOnce, s), "0\n");
  EXPECT_EQ(Render(FaultFile::kBadblocksPartial, s), "0\n");
  EXPECT_EQ(Render(FaultFile::kErrors, s), "");
  EXPECT_EQ(Render(FaultFile::kFaultSeed, s), "0\n");
  EXPECT_EQ(Render(FaultFile::kLatency, s), "");
  EXPECT_EQ(Render(FaultFile::kThrottle, s), "");
  EXPECT_EQ(Render(FaultFile::kFlakey, s), "0 0\n");
}

TEST(FaultFilesTest, SharedInputRules) {
  for (FaultFile file : AllFaultFiles()) {
    SCOPED_TRACE(FaultFileName(file));
    ExpectRefused(file, "", EINVAL);
    ExpectRefused(file, "\n", EINVAL);
    ExpectRefused(file, " \t \n\n", EINVAL);
    ExpectRefused(file, "1\0"s, EINVAL);
    ExpectRefused(file, std::string(kMaxFaultWrite + 1, ' ') + "1", EINVAL);
  }
}

// ---- badblocks ------------------------------------------------------------------------

TEST(BadblocksTest, AddMergesAndRenders) {
  FaultSettings s;
  ASSERT_TRUE(Apply(FaultFile::kBadblocks, "+100-199\n", &s).ok());
  ASSERT_TRUE(Apply(FaultFile::kBadblocks, "+300-300", &s).ok());
  ASSERT_TRUE(Apply(FaultFile::kBadblocks, "  +200-250  ", &s).ok());  // adjacent: merges
  EXPECT_EQ(s.badblocks.Ranges(), (Ranges{{100, 250}, {300, 300}}));
  EXPECT_EQ(Render(FaultFile::kBadblocks, s), "100-250\n300-300\n");
  ASSERT_TRUE(Apply(FaultFile::kBadblocks, "+0-1000", &s).ok());  // covers both
  EXPECT_EQ(s.badblocks.Ranges(), (Ranges{{0, 1000}}));
  EXPECT_TRUE(s.any());
}

TEST(BadblocksTest, RemoveSplitsAndClear) {
  FaultSettings s;
  ASSERT_TRUE(Apply(FaultFile::kBadblocks, "+0-99\n+200-299\n", &s).ok());
  ASSERT_TRUE(Apply(FaultFile::kBadblocks, "-50-59", &s).ok());
  EXPECT_EQ(s.badblocks.Ranges(), (Ranges{{0, 49}, {60, 99}, {200, 299}}));
  ASSERT_TRUE(Apply(FaultFile::kBadblocks, "-90-250", &s).ok());
  EXPECT_EQ(s.badblocks.Ranges(), (Ranges{{0, 49}, {60, 89}, {251, 299}}));
  ASSERT_TRUE(Apply(FaultFile::kBadblocks, "-1000-2000", &s).ok());  // healing nothing is fine
  ASSERT_TRUE(Apply(FaultFile::kBadblocks, "clear", &s).ok());
  EXPECT_TRUE(s.badblocks.empty());
  EXPECT_FALSE(s.any());
}

TEST(BadblocksTest, Refusals) {
  FaultSettings start;
  ASSERT_TRUE(Apply(FaultFile::kBadblocks, "+8-15", &start).ok());
  for (const char* bad : {"8-15", "+8", "+8-", "+-15", "+15-8", "+a-9", "+1-2-3", "*1-2",
                          "+1-2 +3-4", "clear all", "+0x10-0x20", "+ 1-2", "CLEAR"}) {
    ExpectRefused(FaultFile::kBadblocks, bad, EINVAL, start);
  }
  ExpectRefused(FaultFile::kBadblocks, "+0-99999999999999999999", ERANGE, start);
  ExpectRefused(FaultFile::kBadblocks, "+0-" + std::to_string(kMaxSector + 1), ERANGE, start);
  // The second line is bad: the first is not applied either.
  ExpectRefused(FaultFile::kBadblocks, "+100-200\n+300-2\n", EINVAL, start);
  FaultSettings max;
  ASSERT_TRUE(Apply(FaultFile::kBadblocks, "+0-" + std::to_string(kMaxSector), &max).ok());
}

TEST(BadblocksTest, RangeLimit) {
  FaultSettings s;
  for (size_t i = 0; i < kMaxBadRanges; ++i) {
    ASSERT_TRUE(s.badblocks.Add(2 * i, 2 * i).ok());
  }
  ExpectRefused(FaultFile::kBadblocks, "+100000-100000", ENOSPC, s);
  FaultSettings merged = s;  // a mark that merges with a range needs no new one
  EXPECT_TRUE(Apply(FaultFile::kBadblocks, "+1-1", &merged).ok());
  EXPECT_EQ(merged.badblocks.range_count(), kMaxBadRanges - 1);
}

TEST(BadSectorsTest, FirstBadAndHeal) {
  BadSectors b;
  ASSERT_TRUE(b.Add(10, 19).ok());
  ASSERT_TRUE(b.Add(30, 39).ok());
  EXPECT_EQ(b.FirstBad(0, 9), std::nullopt);
  EXPECT_EQ(b.FirstBad(0, 10), 10u);
  EXPECT_EQ(b.FirstBad(15, 100), 15u);
  EXPECT_EQ(b.FirstBad(20, 29), std::nullopt);
  EXPECT_EQ(b.FirstBad(20, 30), 30u);
  EXPECT_EQ(b.FirstBad(40, 40), std::nullopt);
  EXPECT_EQ(b.HealTouched(18, 31), 20u);  // both whole ranges
  EXPECT_TRUE(b.empty());
  // Remove strictly inside a range at the limit needs one more range.
  BadSectors full;
  for (size_t i = 0; i < kMaxBadRanges - 1; ++i) ASSERT_TRUE(full.Add(10 * i, 10 * i + 5).ok());
  ASSERT_TRUE(full.Add(1'000'000, 1'000'010).ok());
  EXPECT_EQ(StatusToErrno(full.Remove(1'000'005, 1'000'005)), ENOSPC);
  EXPECT_EQ(full.range_count(), kMaxBadRanges);
  EXPECT_TRUE(full.Remove(1'000'000, 1'000'005).ok());  // trims, no split
}

// ---- flags and seed --------------------------------------------------------------------

TEST(FlagsTest, ZeroOne) {
  for (FaultFile file : {FaultFile::kBadblocksOnce, FaultFile::kBadblocksPartial}) {
    FaultSettings s;
    ASSERT_TRUE(Apply(file, "1\n", &s).ok());
    EXPECT_EQ(Render(file, s), "1\n");
    EXPECT_FALSE(s.any());  // a flag alone injects nothing
    ASSERT_TRUE(Apply(file, " 0 ", &s).ok());
    EXPECT_EQ(Render(file, s), "0\n");
    for (const char* bad : {"2", "01", "yes", "1 1", "-1", "1\n0\n"}) {
      ExpectRefused(file, bad, EINVAL);
    }
  }
}

TEST(SeedTest, Values) {
  FaultSettings s;
  ASSERT_TRUE(Apply(FaultFile::kFaultSeed, "18446744073709551615\n", &s).ok());
  EXPECT_EQ(s.fault_seed, 18446744073709551615ULL);
  EXPECT_EQ(Render(FaultFile::kFaultSeed, s), "18446744073709551615\n");
  ExpectRefused(FaultFile::kFaultSeed, "18446744073709551616", ERANGE);
  for (const char* bad : {"-1", "1.5", "0x10", "1 2", "seed"}) {
    ExpectRefused(FaultFile::kFaultSeed, bad, EINVAL);
  }
}

// ---- errors ------------------------------------------------------------------------------

TEST(ErrorsTest, RulesAndRender) {
  FaultSettings s;
  ASSERT_TRUE(Apply(FaultFile::kErrors, "read 0.01", &s).ok());
  ASSERT_TRUE(Apply(FaultFile::kErrors, "write 1 ENOSPC\nflush .5 ETIMEDOUT\n", &s).ok());
  ASSERT_TRUE(Apply(FaultFile::kErrors, "discard 0.000000001 EROFS", &s).ok());
  EXPECT_EQ(s.errors[0], (ErrorRule{10'000'000, EIO}));
  EXPECT_EQ(s.errors[1], (ErrorRule{kProbabilityOne, ENOSPC}));
  EXPECT_EQ(Render(FaultFile::kErrors, s),
            "read 0.01 EIO\nwrite 1 ENOSPC\nflush 0.5 ETIMEDOUT\ndiscard 0.000000001 EROFS\n");
  ASSERT_TRUE(Apply(FaultFile::kErrors, "write 0", &s).ok());  // removes the rule
  EXPECT_EQ(s.errors[1], ErrorRule{});
  ASSERT_TRUE(Apply(FaultFile::kErrors, "read 1.000 ENOMEM", &s).ok());
  EXPECT_EQ(s.errors[0], (ErrorRule{kProbabilityOne, ENOMEM}));
  ASSERT_TRUE(Apply(FaultFile::kErrors, "0", &s).ok());  // all off
  EXPECT_FALSE(s.any());
}

TEST(ErrorsTest, RenderedTextWritesBack) {
  FaultSettings s;
  ASSERT_TRUE(Apply(FaultFile::kErrors, "read 0.123456789 EIO\nwrite 0.25 EROFS", &s).ok());
  FaultSettings again;
  ASSERT_TRUE(Apply(FaultFile::kErrors, Render(FaultFile::kErrors, s), &again).ok());
  EXPECT_TRUE(again == s);
}

TEST(ErrorsTest, Refusals) {
  for (const char* bad : {"read", "read 0.1 EIO x", "open 0.1", "READ 0.1", "read -0.1",
                          "read 0.1 EPERM", "read 0.1 eio", "read 0.1 5", "read .", "read 1e-3",
                          "read 0.0000000001", "read 0,1", "read 0.1.2", "read 0.1\nbogus 1"}) {
    ExpectRefused(FaultFile::kErrors, bad, EINVAL);
  }
  for (const char* bad : {"read 1.5", "read 2", "read 1.000000001", "read 10"}) {
    ExpectRefused(FaultFile::kErrors, bad, ERANGE);
  }
}

// ---- latency -----------------------------------------------------------------------------

TEST(LatencyTest, RulesAndRender) {
  FaultSettings s;
  ASSERT_TRUE(Apply(FaultFile::kLatency, "write 200", &s).ok());
  ASSERT_TRUE(Apply(FaultFile::kLatency, "read 1000 100\nflush 5000 5000", &s).ok());
  EXPECT_EQ(Render(FaultFile::kLatency, s), "read 1000 100\nwrite 200\nflush 5000 5000\n");
  FaultSettings again;
  ASSERT_TRUE(Apply(FaultFile::kLatency, Render(FaultFile::kLatency, s), &again).ok());
  EXPECT_TRUE(again == s);
  ASSERT_TRUE(Apply(FaultFile::kLatency, "read 0", &s).ok());
  EXPECT_EQ(Render(FaultFile::kLatency, s), "write 200\nflush 5000 5000\n");
  ASSERT_TRUE(Apply(FaultFile::kLatency, "0", &s).ok());
  EXPECT_FALSE(s.any());
}

TEST(LatencyTest, Refusals) {
  for (const char* bad :
       {"write", "write 1ms", "write -5", "write 1.5", "seek 10", "write 10 1 1"}) {
    ExpectRefused(FaultFile::kLatency, bad, EINVAL);
  }
  ExpectRefused(FaultFile::kLatency, "write 100 101", ERANGE);
  ExpectRefused(FaultFile::kLatency, "write 60000001", ERANGE);
  ExpectRefused(FaultFile::kLatency, "write 40000000 30000000", ERANGE);
  FaultSettings s;
  EXPECT_TRUE(Apply(FaultFile::kLatency, "write 60000000", &s).ok());
}

// ---- throttle ----------------------------------------------------------------------------

TEST(ThrottleTest, KeysAndRender) {
  FaultSettings s;
  ASSERT_TRUE(Apply(FaultFile::kThrottle, "iops 2000", &s).ok());
  ASSERT_TRUE(
      Apply(FaultFile::kThrottle, "bandwidth 50M\nread_iops 10 write_bandwidth 4K", &s).ok());
  EXPECT_EQ(s.throttle.limit(ThrottleKey::kBandwidth), 50ULL << 20);
  EXPECT_EQ(Render(FaultFile::kThrottle, s),
            "iops 2000\nread_iops 10\nbandwidth 52428800\nwrite_bandwidth 4096\n");
  FaultSettings again;
  ASSERT_TRUE(Apply(FaultFile::kThrottle, Render(FaultFile::kThrottle, s), &again).ok());
  EXPECT_TRUE(again == s);
  ASSERT_TRUE(Apply(FaultFile::kThrottle, "iops 0 read_iops 0", &s).ok());
  EXPECT_EQ(Render(FaultFile::kThrottle, s), "bandwidth 52428800\nwrite_bandwidth 4096\n");
  ASSERT_TRUE(Apply(FaultFile::kThrottle, "0", &s).ok());
  EXPECT_FALSE(s.any());
}

// Bandwidth takes what the size parser takes (size.h), util-linux fractions
// included, as every size on the command line and in the control files does.
TEST(ThrottleTest, BandwidthTakesSizeFractions) {
  FaultSettings s;
  ASSERT_TRUE(Apply(FaultFile::kThrottle, "bandwidth 1.5M", &s).ok());
  EXPECT_EQ(Render(FaultFile::kThrottle, s), "bandwidth 1572864\n");
}

TEST(ThrottleTest, Refusals) {
  for (const char* bad : {"iops", "iops 10 bandwidth", "iops 1K", "iops -1", "mbps 10",
                          "bandwidth 1.5", "bandwidth 12Q", "IOPS 10"}) {
    ExpectRefused(FaultFile::kThrottle, bad, EINVAL);
  }
  ExpectRefused(FaultFile::kThrottle, "iops 1000000001", ERANGE);
  ExpectRefused(FaultFile::kThrottle, "bandwidth 2P", ERANGE);
}

// ---- flakey ------------------------------------------------------------------------------

TEST(FlakeyTest, SettingsAndRender) {
  FaultSettings s;
  ASSERT_TRUE(Apply(FaultFile::kFlakey, "5 1 drop_writes\n", &s).ok());
  EXPECT_EQ(s.flakey, (FlakeySettings{5, 1, FlakeyBehaviour::kDropWrites}));
  EXPECT_EQ(Render(FaultFile::kFlakey, s), "5 1 drop_writes\n");
  EXPECT_TRUE(s.any());
  for (const char* b : {"error_reads", "error_writes", "error_all", "corrupt_writes"}) {
    ASSERT_TRUE(Apply(FaultFile::kFlakey, "1 1 "s + b, &s).ok());
    EXPECT_EQ(Render(FaultFile::kFlakey, s), "1 1 "s + b + "\n");
  }
  ASSERT_TRUE(Apply(FaultFile::kFlakey, "0 0", &s).ok());
  EXPECT_FALSE(s.any());
  EXPECT_EQ(Render(FaultFile::kFlakey, s), "0 0\n");
  ASSERT_TRUE(Apply(FaultFile::kFlakey, "3 0 error_all", &s).ok());
  EXPECT_FALSE(s.any());  // never down
}

// "0 0 BEHAVIOUR" is off, and equal to "0 0": what the file reads back
// ("0 0") must apply to the same settings (the parser fuzzer found it).
TEST(FlakeyTest, OffForgetsTheBehaviour) {
  FaultSettings s;
  ASSERT_TRUE(Apply(FaultFile::kFlakey, "0 0 drop_writes", &s).ok());
  EXPECT_EQ(s.flakey, FlakeySettings{});
  EXPECT_EQ(Render(FaultFile::kFlakey, s), "0 0\n");
  EXPECT_FALSE(s.any());
}

TEST(FlakeyTest, Refusals) {
  for (const char* bad : {"0", "5 1", "5 1 bogus", "x 1 error_all", "5 1 error_all x",
                          "1 1 error_all\n1 1 error_all", "-1 1 error_all"}) {
    ExpectRefused(FaultFile::kFlakey, bad, EINVAL);
  }
  ExpectRefused(FaultFile::kFlakey, "31708801 1 error_all", ERANGE);
}

// ---- --disk keys -------------------------------------------------------------------------

TEST(FaultKeyTest, AppliesFaultKeysOnly) {
  FaultSettings s;
  EXPECT_EQ(ApplyFaultKey("mode", "direct", &s).value(), false);
  EXPECT_EQ(ApplyFaultKey("latency", "write 200", &s).value(), true);
  EXPECT_EQ(ApplyFaultKey("latency", "read 100", &s).value(), true);  // repeated keys add
  EXPECT_EQ(ApplyFaultKey("badblocks", "+0-7", &s).value(), true);
  EXPECT_EQ(ApplyFaultKey("fault_seed", "9", &s).value(), true);
  EXPECT_EQ(Render(FaultFile::kLatency, s), "read 100\nwrite 200\n");
  EXPECT_EQ(s.fault_seed, 9u);
  const FaultSettings before = s;
  absl::StatusOr<bool> bad = ApplyFaultKey("errors", "read 2", &s);
  EXPECT_EQ(StatusToErrno(bad.status()), ERANGE);
  EXPECT_TRUE(s == before);
}

// ---- decisions -----------------------------------------------------------------------------

FaultRequest Req(FaultOp op, uint64_t offset, uint64_t length, int64_t at = kT0) {
  return FaultRequest{op, offset, length, at};
}

TEST(DecideTest, NoFaultIsInactive) {
  FaultInjector f;
  EXPECT_FALSE(f.active());
  ASSERT_TRUE(f.Write(FaultFile::kFaultSeed, "5", kT0).ok());
  ASSERT_TRUE(f.Write(FaultFile::kBadblocksPartial, "1", kT0).ok());
  EXPECT_FALSE(f.active());
  ASSERT_TRUE(f.Write(FaultFile::kLatency, "read 1", kT0).ok());
  EXPECT_TRUE(f.active());
  ASSERT_TRUE(f.Write(FaultFile::kLatency, "0", kT0).ok());
  EXPECT_FALSE(f.active());
  const FaultDecision d = f.Decide(Req(FaultOp::kWrite, 0, 4096));
  EXPECT_EQ(d.err, 0);
  EXPECT_EQ(d.done, 4096u);
  EXPECT_EQ(d.reply_at_ns, 0);
  EXPECT_FALSE(d.drop);
  EXPECT_FALSE(d.corrupt_at);
}

TEST(DecideTest, RefusedWriteChangesNothing) {
  FaultInjector f;
  ASSERT_TRUE(f.Write(FaultFile::kErrors, "read 0.5", kT0).ok());
  EXPECT_EQ(StatusToErrno(f.Write(FaultFile::kErrors, "write 0.5\nread 7", kT0)), ERANGE);
  EXPECT_EQ(f.Read(FaultFile::kErrors), "read 0.5 EIO\n");
}

TEST(DecideTest, BadSectorFailsTouchingRequestsOnly) {
  FaultInjector f;
  ASSERT_TRUE(f.Write(FaultFile::kBadblocks, "+8-15", kT0).ok());  // bytes 4096..8191
  EXPECT_EQ(f.Decide(Req(FaultOp::kRead, 0, 4096)).err, 0);
  EXPECT_EQ(f.Decide(Req(FaultOp::kRead, 8192, 4096)).err, 0);
  EXPECT_EQ(f.Decide(Req(FaultOp::kRead, 4095, 2)).err, EIO);  // last byte of 7, first of 8
  FaultDecision d = f.Decide(Req(FaultOp::kWrite, 0, 65536));
  EXPECT_EQ(d.err, EIO);
  EXPECT_EQ(d.done, 0u);  // not partial: nothing done
  EXPECT_EQ(f.Decide(Req(FaultOp::kDiscard, 8191, 1)).err, EIO);
  EXPECT_EQ(f.Decide(Req(FaultOp::kFlush, 0, 0)).err, 0);    // a flush has no sectors
  EXPECT_EQ(f.Decide(Req(FaultOp::kRead, 4096, 0)).err, 0);  // nor does an empty read
  EXPECT_EQ(f.stats().injected_errors.load(), 3u);
  EXPECT_EQ(f.stats().injected_error_bytes.load(), 2u + 65536u + 1u);
  // Without once, failures do not heal.
  EXPECT_EQ(f.Decide(Req(FaultOp::kWrite, 4096, 512)).err, EIO);
  EXPECT_EQ(f.Read(FaultFile::kBadblocks), "8-15\n");
}

TEST(DecideTest, PartialDoesUpToTheFirstBadSector) {
  FaultInjector f;
  ASSERT_TRUE(f.Write(FaultFile::kBadblocks, "+10-11\n+20-20", kT0).ok());
  ASSERT_TRUE(f.Write(FaultFile::kBadblocksPartial, "1", kT0).ok());
  FaultDecision d = f.Decide(Req(FaultOp::kRead, 0, 16384));
  EXPECT_EQ(d.err, EIO);
  EXPECT_EQ(d.done, 10u * 512);
  d = f.Decide(Req(FaultOp::kWrite, 1000, 16384));  // not sector-aligned
  EXPECT_EQ(d.err, EIO);
  EXPECT_EQ(d.done, 10u * 512 - 1000);
  d = f.Decide(Req(FaultOp::kWrite, 10 * 512 + 100, 100));  // starts inside a bad sector
  EXPECT_EQ(d.err, EIO);
  EXPECT_EQ(d.done, 0u);
  EXPECT_EQ(f.stats().injected_error_bytes.load(), (16384u - 5120u) + (16384u - 4120u) + 100u);
}

TEST(DecideTest, OnceHealsAfterTheFirstFailedWrite) {
  FaultInjector f;
  ASSERT_TRUE(f.Write(FaultFile::kBadblocks, "+8-15\n+100-107", kT0).ok());
  ASSERT_TRUE(f.Write(FaultFile::kBadblocksOnce, "1", kT0).ok());
  EXPECT_EQ(f.Decide(Req(FaultOp::kRead, 4096, 4096)).err, EIO);  // reads do not heal
  EXPECT_EQ(f.Decide(Req(FaultOp::kRead, 4096, 4096)).err, EIO);
  EXPECT_EQ(f.Decide(Req(FaultOp::kWrite, 6144, 512)).err, EIO);  // heals all of 8-15
  EXPECT_EQ(f.Read(FaultFile::kBadblocks), "100-107\n");
  EXPECT_EQ(f.Decide(Req(FaultOp::kWrite, 4096, 4096)).err, 0);
  EXPECT_EQ(f.Decide(Req(FaultOp::kRead, 4096, 4096)).err, 0);
  EXPECT_EQ(f.Decide(Req(FaultOp::kRead, 100 * 512, 512)).err, EIO);
  EXPECT_EQ(f.Decide(Req(FaultOp::kWrite, 100 * 512, 512)).err, EIO);
  EXPECT_FALSE(f.active());  // all healed: back to the one-branch path
  EXPECT_EQ(f.Decide(Req(FaultOp::kWrite, 100 * 512, 512)).err, 0);
}

// Counts failures over `n` reads with `rule` on an injector seeded `seed`.
std::vector<uint64_t> FailingReads(uint64_t seed, std::string_view rule, int n, FaultInjector* f) {
  EXPECT_TRUE(f->Write(FaultFile::kErrors, rule, kT0).ok());
  EXPECT_TRUE(f->Write(FaultFile::kFaultSeed, std::to_string(seed), kT0).ok());
  std::vector<uint64_t> failing;
  for (int i = 0; i < n; ++i) {
    const uint64_t offset = static_cast<uint64_t>(i) * 4096;
    const FaultDecision d = f->Decide(Req(FaultOp::kRead, offset, 4096));
    if (d.err != 0) {
      EXPECT_EQ(d.done, 0u);
      failing.push_back(offset);
    }
  }
  return failing;
}

TEST(DecideTest, ErrorRateIsBinomial) {
  // 100k draws at p = 0.01: mean 1000, sd 31.5; 99.9% two-sided is
  // +-3.29 sd = +-104. Five seeds; with a fixed seed the test is
  // deterministic, so it cannot flake, and a biased generator fails it.
  for (uint64_t seed : {0ULL, 1ULL, 42ULL, 1ULL << 40, ~0ULL}) {
    FaultInjector f;
    const size_t failures = FailingReads(seed, "read 0.01", 100'000, &f).size();
    EXPECT_GE(failures, 1000u - 104u) << "seed " << seed;
    EXPECT_LE(failures, 1000u + 104u) << "seed " << seed;
    EXPECT_EQ(f.stats().injected_errors.load(), failures);
    EXPECT_EQ(f.stats().injected_error_bytes.load(), failures * 4096);
  }
  FaultInjector half;
  const size_t n = FailingReads(7, "read 0.5", 10'000, &half).size();
  EXPECT_NEAR(static_cast<double>(n), 5000.0, 3.29 * 50);
  FaultInjector always;
  EXPECT_EQ(FailingReads(7, "read 1", 1000, &always).size(), 1000u);
}

TEST(DecideTest, SameSeedSameFailuresAndSeedWriteRestarts) {
  FaultInjector a, b;
  const std::vector<uint64_t> first = FailingReads(1234, "read 0.05", 5000, &a);
  const std::vector<uint64_t> second = FailingReads(1234, "read 0.05", 5000, &b);
  EXPECT_EQ(first, second);
  EXPECT_FALSE(first.empty());
  // Writing the seed again restarts the stream on the same injector.
  EXPECT_EQ(FailingReads(1234, "read 0.05", 5000, &a), first);
  FaultInjector c;
  EXPECT_NE(FailingReads(1235, "read 0.05", 5000, &c), first);
}

TEST(DecideTest, ErrnoAndOpOfTheRule) {
  FaultInjector f;
  ASSERT_TRUE(f.Write(FaultFile::kErrors, "flush 1 ETIMEDOUT\ndiscard 1 ENOSPC", kT0).ok());
  EXPECT_EQ(f.Decide(Req(FaultOp::kFlush, 0, 0)).err, ETIMEDOUT);
  EXPECT_EQ(f.Decide(Req(FaultOp::kDiscard, 0, 4096)).err, ENOSPC);
  EXPECT_EQ(f.Decide(Req(FaultOp::kRead, 0, 4096)).err, 0);
  EXPECT_EQ(f.Decide(Req(FaultOp::kWrite, 0, 4096)).err, 0);
}

TEST(DecideTest, JitterDoesNotChangeWhichReadsFail) {
  FaultInjector plain, jittered;
  ASSERT_TRUE(jittered.Write(FaultFile::kLatency, "read 100 50", kT0).ok());
  EXPECT_EQ(FailingReads(3, "read 0.1", 2000, &plain),
            FailingReads(3, "read 0.1", 2000, &jittered));
}

TEST(DecideTest, LatencyAndJitter) {
  FaultInjector f;
  ASSERT_TRUE(f.Write(FaultFile::kLatency, "write 1000", kT0).ok());
  FaultDecision d = f.Decide(Req(FaultOp::kWrite, 0, 4096, kT0 + 5));
  EXPECT_EQ(d.err, 0);
  EXPECT_EQ(d.reply_at_ns, kT0 + 5 + 1000 * 1000);
  EXPECT_EQ(f.Decide(Req(FaultOp::kRead, 0, 4096)).reply_at_ns, 0);  // reads untouched
  ASSERT_TRUE(f.Write(FaultFile::kLatency, "read 1000 200", kT0).ok());
  int64_t lo = INT64_MAX, hi = 0;
  double sum = 0;
  for (int i = 0; i < 20000; ++i) {
    const int64_t delay = f.Decide(Req(FaultOp::kRead, 0, 4096, kT0)).reply_at_ns - kT0;
    lo = std::min(lo, delay);
    hi = std::max(hi, delay);
    sum += static_cast<double>(delay);
  }
  EXPECT_GE(lo, 800'000);
  EXPECT_LE(hi, 1'200'000);
  EXPECT_LT(lo, 805'000);  // uniform: both ends are reached
  EXPECT_GT(hi, 1'195'000);
  EXPECT_NEAR(sum / 20000, 1'000'000, 2'000);
  EXPECT_EQ(f.stats().delayed_requests.load(), 20001u);
  EXPECT_EQ(f.stats().throttled_us_total.load(), 0u);
}

TEST(DecideTest, FailedRequestsAreDelayedToo) {
  FaultInjector f;
  ASSERT_TRUE(f.Write(FaultFile::kLatency, "read 500", kT0).ok());
  ASSERT_TRUE(f.Write(FaultFile::kErrors, "read 1", kT0).ok());
  const FaultDecision d = f.Decide(Req(FaultOp::kRead, 0, 4096));
  EXPECT_EQ(d.err, EIO);
  EXPECT_EQ(d.reply_at_ns, kT0 + 500'000);
}

// A closed loop of `clients` clients, each sending its next request when the
// previous one's reply is due, for `duration_ns`. Returns requests started.
int64_t ClosedLoop(FaultInjector* f, FaultOp op, uint64_t length, int clients,
                   int64_t duration_ns) {
  std::vector<int64_t> next(clients, kT0);
  int64_t done = 0;
  for (;;) {
    auto it = std::min_element(next.begin(), next.end());
    if (*it >= kT0 + duration_ns) return done;
    const FaultDecision d = f->Decide(Req(op, 0, length, *it));
    *it = std::max(*it + 1000, d.reply_at_ns);  // 1 us of service time
    ++done;
  }
}

TEST(DecideTest, ThrottleIopsHoldsTheRateWithItsBurst) {
  FaultInjector f;
  ASSERT_TRUE(f.Write(FaultFile::kThrottle, "iops 2000", kT0).ok());
  // The burst: 10 ms of 2000/s = 20 requests pass at once, the 21st waits 0.5 ms.
  for (int i = 0; i < 20; ++i) EXPECT_EQ(f.Decide(Req(FaultOp::kRead, 0, 4096)).reply_at_ns, 0);
  EXPECT_EQ(f.Decide(Req(FaultOp::kRead, 0, 4096)).reply_at_ns, kT0 + 500'000);
  EXPECT_EQ(f.Decide(Req(FaultOp::kWrite, 0, 4096)).reply_at_ns, kT0 + 1'000'000);
  // Two clients for 10 s: 20000 requests plus the burst.
  ASSERT_TRUE(f.Write(FaultFile::kThrottle, "iops 2000", kT0).ok());  // refills
  const int64_t n = ClosedLoop(&f, FaultOp::kRead, 4096, 2, 10 * kSec);
  EXPECT_GE(n, 20000);
  EXPECT_LE(n, 20000 + 20 + 2);
}

TEST(DecideTest, ThrottleBandwidthAndPerDirectionBuckets) {
  FaultInjector f;
  ASSERT_TRUE(f.Write(FaultFile::kThrottle, "bandwidth 50M", kT0).ok());
  const int64_t n = ClosedLoop(&f, FaultOp::kWrite, 1 << 20, 2, 10 * kSec);
  EXPECT_GE(n, 500);  // 50 MiB/s of 1 MiB requests
  EXPECT_LE(n, 500 + 2);
  // read_iops limits reads only. 100/s for 1 s: 100, plus the burst (one
  // request: 10 ms of 100/s) and the 3 other clients' requests that were
  // admitted before the end but reply after it.
  FaultInjector g;
  ASSERT_TRUE(g.Write(FaultFile::kThrottle, "read_iops 100", kT0).ok());
  const int64_t reads = ClosedLoop(&g, FaultOp::kRead, 4096, 4, kSec);
  EXPECT_GE(reads, 100);
  EXPECT_LE(reads, 100 + 1 + 3);
  EXPECT_GT(ClosedLoop(&g, FaultOp::kWrite, 4096, 1, kSec), 10000);
  // A request larger than the burst waits for the missing tokens only.
  FaultInjector h;
  ASSERT_TRUE(h.Write(FaultFile::kThrottle, "bandwidth 1M", kT0).ok());
  EXPECT_EQ(h.Decide(Req(FaultOp::kRead, 0, 1 << 20)).reply_at_ns, 0);  // full bucket: one passes
  EXPECT_EQ(h.Decide(Req(FaultOp::kRead, 0, 1 << 20)).reply_at_ns, kT0 + kSec);
  EXPECT_EQ(h.stats().throttled_us_total.load(), 1'000'000u);
  // Flush and discard are not throttled.
  EXPECT_EQ(h.Decide(Req(FaultOp::kFlush, 0, 0)).reply_at_ns, 0);
}

TEST(DecideTest, ThrottleThenLatency) {
  FaultInjector f;
  ASSERT_TRUE(f.Write(FaultFile::kThrottle, "iops 1", kT0).ok());
  ASSERT_TRUE(f.Write(FaultFile::kLatency, "read 100", kT0).ok());
  EXPECT_EQ(f.Decide(Req(FaultOp::kRead, 0, 512)).reply_at_ns, kT0 + 100'000);
  EXPECT_EQ(f.Decide(Req(FaultOp::kRead, 0, 512)).reply_at_ns, kT0 + kSec + 100'000);
}

TEST(DecideTest, FlakeyWindows) {
  FaultInjector f;
  ASSERT_TRUE(f.Write(FaultFile::kFlakey, "2 1 error_writes", kT0).ok());
  auto at = [&](FaultOp op, int64_t ms) { return f.Decide(Req(op, 0, 4096, kT0 + ms * kMs)); };
  EXPECT_EQ(at(FaultOp::kWrite, 0).err, 0);
  EXPECT_EQ(at(FaultOp::kWrite, 1999).err, 0);
  EXPECT_EQ(at(FaultOp::kWrite, 2000).err, EIO);
  EXPECT_EQ(at(FaultOp::kFlush, 2500).err, EIO);
  EXPECT_EQ(at(FaultOp::kDiscard, 2500).err, EIO);
  EXPECT_EQ(at(FaultOp::kRead, 2500).err, 0);
  EXPECT_EQ(at(FaultOp::kWrite, 3000).err, 0);  // the next up window
  EXPECT_EQ(at(FaultOp::kWrite, 5000).err, EIO);

  ASSERT_TRUE(f.Write(FaultFile::kFlakey, "1 1 error_reads", kT0).ok());
  EXPECT_EQ(at(FaultOp::kRead, 1500).err, EIO);
  EXPECT_EQ(at(FaultOp::kWrite, 1500).err, 0);
  ASSERT_TRUE(f.Write(FaultFile::kFlakey, "1 1 error_all", kT0).ok());
  EXPECT_EQ(at(FaultOp::kRead, 1500).err, EIO);
  EXPECT_EQ(at(FaultOp::kFlush, 1500).err, EIO);
  EXPECT_EQ(at(FaultOp::kRead, 500).err, 0);
  // UP 0: always down.
  ASSERT_TRUE(f.Write(FaultFile::kFlakey, "0 5 error_all", kT0).ok());
  EXPECT_EQ(at(FaultOp::kRead, 0).err, EIO);
  // Writing flakey restarts the cycle from "now".
  ASSERT_TRUE(f.Write(FaultFile::kFlakey, "1 1 error_all", kT0 + 10 * kSec + 700 * kMs).ok());
  EXPECT_EQ(at(FaultOp::kRead, 11'500).err, 0);
  EXPECT_EQ(at(FaultOp::kRead, 11'800).err, EIO);
}

TEST(DecideTest, FlakeyDropAndCorrupt) {
  FaultInjector f;
  ASSERT_TRUE(f.Write(FaultFile::kFlakey, "0 10 drop_writes", kT0).ok());
  ASSERT_TRUE(f.Write(FaultFile::kBadblocks, "+0-7", kT0).ok());
  FaultDecision d = f.Decide(Req(FaultOp::kWrite, 0, 4096));
  EXPECT_TRUE(d.drop);  // dropped before it reaches the bad sector
  EXPECT_EQ(d.err, 0);
  EXPECT_EQ(f.Decide(Req(FaultOp::kRead, 0, 4096)).err, EIO);  // reads still see the sector
  EXPECT_FALSE(f.Decide(Req(FaultOp::kRead, 8192, 4096)).drop);
  EXPECT_TRUE(f.Decide(Req(FaultOp::kDiscard, 8192, 4096)).drop);
  EXPECT_EQ(f.stats().dropped_writes.load(), 1u);

  ASSERT_TRUE(f.Write(FaultFile::kBadblocks, "clear", kT0).ok());
  ASSERT_TRUE(f.Write(FaultFile::kFlakey, "0 10 corrupt_writes", kT0).ok());
  ASSERT_TRUE(f.Write(FaultFile::kFaultSeed, "77", kT0).ok());
  std::vector<uint64_t> positions;
  for (int i = 0; i < 100; ++i) {
    d = f.Decide(Req(FaultOp::kWrite, 0, 4096));
    ASSERT_TRUE(d.corrupt_at.has_value());
    EXPECT_LT(*d.corrupt_at, 4096u);
    EXPECT_FALSE(d.drop);
    positions.push_back(*d.corrupt_at);
  }
  EXPECT_GT(std::set<uint64_t>(positions.begin(), positions.end()).size(), 90u);
  EXPECT_FALSE(f.Decide(Req(FaultOp::kRead, 0, 4096)).corrupt_at);
  EXPECT_FALSE(f.Decide(Req(FaultOp::kFlush, 0, 0)).corrupt_at);
  EXPECT_EQ(f.stats().corrupted_writes.load(), 100u);
  // The same seed flips the same bytes.
  ASSERT_TRUE(f.Write(FaultFile::kFaultSeed, "77", kT0).ok());
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(f.Decide(Req(FaultOp::kWrite, 0, 4096)).corrupt_at, positions[i]);
  }
}

TEST(DecideTest, StatsRowsInSpecOrder) {
  FaultInjector f;
  std::vector<std::string> keys;
  for (const auto& [key, value] : f.StatsRows()) {
    keys.push_back(key);
    EXPECT_EQ(value, "0");
  }
  EXPECT_EQ(keys,
            (std::vector<std::string>{"injected_errors", "injected_error_bytes", "delayed_requests",
                                      "delay_us_total", "throttled_us_total", "dropped_writes",
                                      "corrupted_writes"}));
}

TEST(DecideTest, ConfigureAppliesEverything) {
  FaultSettings s;
  ASSERT_TRUE(ApplyFaultKey("errors", "write 1 EROFS", &s).ok());
  ASSERT_TRUE(ApplyFaultKey("flakey", "0 1 error_reads", &s).ok());
  FaultInjector f;
  f.Configure(s, kT0);
  EXPECT_TRUE(f.active());
  EXPECT_EQ(f.Decide(Req(FaultOp::kWrite, 0, 1)).err, EROFS);
  EXPECT_EQ(f.Decide(Req(FaultOp::kRead, 0, 1)).err, EIO);
  EXPECT_TRUE(f.settings() == s);
}

// Decide from 8 threads while another rewrites the settings: TSan (the
// -DRAMDISKFS_SANITIZE=thread build) checks the locking; the counters must
// add up exactly.
TEST(DecideTest, ConcurrentDecideAndWrite) {
  FaultInjector f;
  ASSERT_TRUE(f.Write(FaultFile::kErrors, "read 0.5", kT0).ok());
  ASSERT_TRUE(f.Write(FaultFile::kLatency, "write 10 5", kT0).ok());
  ASSERT_TRUE(f.Write(FaultFile::kThrottle, "iops 1000000", kT0).ok());
  constexpr int kThreads = 8, kPerThread = 20000;
  std::atomic<uint64_t> failures{0};
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    int i = 0;
    while (!stop.load()) {
      const std::string rule = "+" + std::to_string(i % 64) + "-" + std::to_string(i % 64);
      EXPECT_TRUE(f.Write(FaultFile::kBadblocks, rule, MonotonicNowNs()).ok());
      EXPECT_TRUE(f.Write(FaultFile::kBadblocks, "clear", MonotonicNowNs()).ok());
      (void)f.Read(FaultFile::kBadblocks);
      (void)f.StatsRows();
      ++i;
    }
  });
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const FaultOp op = i % 2 ? FaultOp::kRead : FaultOp::kWrite;
        if (!f.active()) continue;
        const FaultDecision d =
            f.Decide(Req(op, (t * kPerThread + i) % 256 * 512, 512, MonotonicNowNs()));
        if (d.err != 0) failures.fetch_add(1);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  stop = true;
  writer.join();
  EXPECT_EQ(f.stats().injected_errors.load(), failures.load());
  EXPECT_GT(failures.load(), 0u);
}

}  // namespace
}  // namespace ramdiskfs

namespace ramdiskfs {
namespace {

// The --disk keys are parsed by the command line's pure parser.
TEST(FaultKeyTest, CommandLineDiskKeys) {
  absl::StatusOr<Config> config =
      ParseCommandLine({"ramdiskfs", "/mnt", "--disk",
                        "r0:1G:mode=direct:latency=write 200:errors=read 0.5:"
                        "badblocks=+0-7:badblocks=+16-23:fault_seed=3",
                        "-o", "disk=r1:1M:throttle=iops 10 bandwidth 1M:flakey=5 1 error_writes"});
  ASSERT_TRUE(config.ok()) << config.status();
  ASSERT_EQ(config->disks.size(), 2u);
  const FaultSettings& r0 = config->disks[0].faults;
  EXPECT_EQ(RenderFaultFile(FaultFile::kLatency, r0), "write 200\n");
  EXPECT_EQ(RenderFaultFile(FaultFile::kErrors, r0), "read 0.5 EIO\n");
  EXPECT_EQ(RenderFaultFile(FaultFile::kBadblocks, r0), "0-7\n16-23\n");
  EXPECT_EQ(r0.fault_seed, 3u);
  const FaultSettings& r1 = config->disks[1].faults;
  EXPECT_EQ(RenderFaultFile(FaultFile::kThrottle, r1), "iops 10\nbandwidth 1048576\n");
  EXPECT_EQ(RenderFaultFile(FaultFile::kFlakey, r1), "5 1 error_writes\n");
  EXPECT_FALSE(ParseCommandLine({"ramdiskfs", "/mnt", "--disk", "r0:1G"})->disks[0].faults.any());

  absl::StatusOr<Config> bad =
      ParseCommandLine({"ramdiskfs", "/mnt", "--disk", "r0:1G:latency=write 100 200"});
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("--disk 'r0:1G:latency=write 100 200': latency: JITTER"),
            std::string_view::npos)
      << bad.status();
  bad = ParseCommandLine({"ramdiskfs", "/mnt", "--disk", "r0:1G:flakey=1 1 sometimes"});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("bad BEHAVIOUR 'sometimes'"), std::string_view::npos);
}

}  // namespace
}  // namespace ramdiskfs
