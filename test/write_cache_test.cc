// WriteCache: the volatile cache's semantics (reads see the newest data,
// flush makes durable, a cut rebuilds the post-cut image), every policy
// (fixed seed => fixed outcome; random keeps about half; prefix keeps a
// prefix; torn tears inside a write), cache_size write-back, the memory cap,
// and concurrent writes, flushes and cuts (run under TSan in CI). Also the
// parsers and renderers of cache_control.h.

#include "ramdiskfs/write_cache.h"

#include <cerrno>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "ramdiskfs/cache_arena.h"
#include "ramdiskfs/cache_control.h"
#include "ramdiskfs/memory_pool.h"
#include "ramdiskfs/page_store.h"
#include "ramdiskfs/size.h"
#include "ramdiskfs/status.h"
#include "test/test_disks.h"

namespace ramdiskfs {
namespace {

constexpr uint64_t kMiB = 1 << 20;

// One write or discard of a random sequence, for comparing against a model.
struct CacheOp {
  uint64_t offset;
  std::string data;  // empty: a discard of `length`
  uint64_t length;
};

void ApplyOp(std::string& image, const CacheOp& op) {
  image.replace(op.offset, op.length, op.data.empty() ? std::string(op.length, '\0') : op.data);
}

class WriteCacheTest : public ::testing::TestWithParam<StoreKind> {
 protected:
  void SetUp() override { Make(64 * kMiB, 4 * kMiB); }
  void Make(uint64_t cap, uint64_t size) {
    cache_.reset();
    store_.reset();
    auto pool = MemoryPool::Create(GetParam(), cap);
    ASSERT_TRUE(pool.ok()) << pool.status();
    pool_ = *std::move(pool);
    auto store = PageStore::Create(pool_.get(), "disk", size);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    cache_ = std::make_unique<WriteCache>(store_.get(), "disk");
  }
  void Volatile(PowercutPolicy policy = PowercutPolicy::kAllLost, uint64_t seed = 0) {
    ASSERT_TRUE(cache_->SetMode(CacheMode::kVolatile).ok());
    cache_->SetPolicy(policy);
    cache_->SetSeed(seed);
  }
  void Put(uint64_t offset, const std::string& data, bool fua = false) {
    auto n = cache_->Write(offset, data.data(), data.size(), fua);
    ASSERT_TRUE(n.ok()) << n.status();
    ASSERT_EQ(*n, data.size());
  }
  std::string Get(uint64_t offset, size_t length) {
    std::string out(length, '?');
    auto n = store_->Read(offset, out.data(), length);
    EXPECT_TRUE(n.ok()) << n.status();
    out.resize(n.ok() ? *n : 0);
    return out;
  }
  void Cut() {
    ASSERT_TRUE(cache_->SetPower(false).ok());
    ASSERT_TRUE(cache_->SetPower(true).ok());
  }
  // A discard when `discard`, else a write of `length` bytes of `fill`,
  // through the cache, recorded in `ops`.
  void DoOp(std::vector<CacheOp>& ops, uint64_t offset, uint64_t length, bool discard, char fill) {
    if (discard) {
      ASSERT_TRUE(cache_->Discard(offset, length).ok());
      ops.push_back({offset, "", length});
    } else {
      std::string data(length, fill);
      Put(offset, data);
      ops.push_back({offset, data, length});
    }
  }
  // A whole-disk copy, for comparing images.
  std::string Image() { return Get(0, store_->size_bytes()); }

  std::unique_ptr<MemoryPool> pool_;
  std::unique_ptr<PageStore> store_;
  std::unique_ptr<WriteCache> cache_;
};

TEST_P(WriteCacheTest, NoneIsNotEngagedAndWritesAreDurable) {
  EXPECT_FALSE(cache_->engaged());
  Put(0, "hello");
  Cut();
  EXPECT_EQ(Get(0, 5), "hello");
  EXPECT_EQ(cache_->stats().powercuts.load(), 1u);
  EXPECT_TRUE(cache_->last_cut().empty());
}

TEST_P(WriteCacheTest, ReadsSeeNewestDataAndFlushMakesItDurable) {
  Volatile();
  EXPECT_TRUE(cache_->engaged());
  Put(4096, "first");
  Put(4096, "SECOND");
  EXPECT_EQ(Get(4096, 6), "SECOND");  // the store holds the newest bytes
  EXPECT_EQ(*cache_->ReadDurable(4096, 6), std::string(6, '\0'));
  EXPECT_EQ(cache_->unflushed().writes, 2u);
  EXPECT_EQ(cache_->unflushed().bytes, 11u);
  ASSERT_TRUE(cache_->Flush().ok());
  EXPECT_EQ(cache_->unflushed().writes, 0u);
  EXPECT_EQ(cache_->preimage_pages(), 0u);
  Put(4096, "third!");
  Cut();
  EXPECT_EQ(Get(4096, 6), "SECOND");  // the flushed data survived, the rest did not
  EXPECT_EQ(cache_->stats().flushes_received.load(), 1u);
  EXPECT_EQ(cache_->stats().writes_made_durable.load(), 2u);
  ASSERT_EQ(cache_->last_cut().size(), 1u);
  EXPECT_EQ(cache_->last_cut()[0].fate, WriteFate::kLost);
}

TEST_P(WriteCacheTest, AllLostRestoresTheDurableImageExactly) {
  Volatile();
  std::mt19937_64 rng(7);
  std::string junk(3 * kMiB, '\0');
  for (char& c : junk) c = static_cast<char>(rng());
  Put(12345, junk);
  ASSERT_TRUE(cache_->Flush().ok());
  const std::string durable = Image();
  for (int i = 0; i < 200; ++i) {
    const uint64_t off = rng() % (store_->size_bytes() - 9000);
    Put(off, std::string(1 + rng() % 9000, static_cast<char>('a' + i % 26)));
  }
  ASSERT_TRUE(cache_->Discard(1 * kMiB + 100, 300000).ok());
  EXPECT_NE(Image(), durable);
  Cut();
  EXPECT_EQ(Image(), durable);
}

TEST_P(WriteCacheTest, FuaWriteIsAFlushPoint) {
  Volatile();
  Put(0, "a");
  Put(512, "b", /*fua=*/true);
  Put(1024, "c");
  Cut();
  EXPECT_EQ(Get(0, 1), "a");  // everything before the FUA write too
  EXPECT_EQ(Get(512, 1), "b");
  EXPECT_EQ(Get(1024, 1), std::string(1, '\0'));
}

TEST_P(WriteCacheTest, PowerOffFailsEveryIoWithEio) {
  Volatile();
  Put(0, "x");
  ASSERT_TRUE(cache_->SetPower(false).ok());
  EXPECT_FALSE(cache_->powered());
  EXPECT_TRUE(cache_->engaged());
  EXPECT_EQ(StatusToErrno(cache_->CheckPowered()), EIO);
  EXPECT_EQ(StatusToErrno(cache_->Write(0, "y", 1, false).status()), EIO);
  EXPECT_EQ(StatusToErrno(cache_->Discard(0, 512)), EIO);
  EXPECT_EQ(StatusToErrno(cache_->Flush()), EIO);
  EXPECT_EQ(StatusToErrno(cache_->Resize(store_->size_bytes())), EIO);
  EXPECT_EQ(StatusToErrno(cache_->FreeAll()), EIO);
  EXPECT_TRUE(cache_->SetPower(false).ok());  // already off: no second cut
  EXPECT_EQ(cache_->stats().powercuts.load(), 1u);
  ASSERT_TRUE(cache_->SetPower(true).ok());
  EXPECT_TRUE(cache_->CheckPowered().ok());
  EXPECT_EQ(Get(0, 1), std::string(1, '\0'));
}

TEST_P(WriteCacheTest, DiscardIsAnUnflushedEntry) {
  Volatile();
  Put(0, std::string(8192, 'd'), true);
  ASSERT_TRUE(cache_->Discard(0, 8192).ok());
  EXPECT_EQ(Get(0, 8192), std::string(8192, '\0'));
  EXPECT_EQ(cache_->unflushed().writes, 1u);
  EXPECT_EQ(cache_->unflushed().bytes, 0u);
  Cut();
  EXPECT_EQ(Get(0, 8192), std::string(8192, 'd'));
}

TEST_P(WriteCacheTest, DiscardOfHolesCapturesNothing) {
  Make(64 * kMiB, 64 * kMiB);
  Volatile();
  ASSERT_TRUE(cache_->Discard(0, 64 * kMiB).ok());  // as mkfs does on a fresh disk
  EXPECT_EQ(cache_->preimage_pages(), 0u);
  Put(10 * kMiB, "z");
  ASSERT_TRUE(cache_->Discard(0, 64 * kMiB).ok());
  EXPECT_EQ(cache_->preimage_pages(), 1u);
}

TEST_P(WriteCacheTest, CacheSizeWritesBackTheOldest) {
  Volatile();
  ASSERT_TRUE(cache_->SetCacheSize(8192).ok());
  Put(0, std::string(4096, '1'));
  Put(4096, std::string(4096, '2'));
  Put(0, std::string(4096, '3'));  // 12 KiB unflushed > 8 KiB: the first goes durable
  EXPECT_EQ(cache_->unflushed().writes, 2u);
  EXPECT_EQ(cache_->unflushed().bytes, 8192u);
  EXPECT_EQ(cache_->stats().writes_made_durable.load(), 1u);
  EXPECT_EQ(*cache_->ReadDurable(0, 4096), std::string(4096, '1'));
  Cut();
  EXPECT_EQ(Get(0, 4096), std::string(4096, '1'));
  EXPECT_EQ(Get(4096, 4096), std::string(4096, '\0'));
}

TEST_P(WriteCacheTest, WriteBackDropsPreimagesOfFullyDurablePages) {
  Volatile();
  ASSERT_TRUE(cache_->SetCacheSize(4096).ok());
  for (int i = 0; i < 100; ++i) Put(static_cast<uint64_t>(i) * 4096, std::string(4096, 'p'));
  // Only the newest write is unflushed; only its page keeps a pre-image.
  EXPECT_EQ(cache_->unflushed().writes, 1u);
  EXPECT_EQ(cache_->preimage_pages(), 1u);
  // One pre-image, one log page, and the dead log not yet freed (it is
  // freed in 1 MiB batches: RetireLog).
  EXPECT_LE(cache_->allocated_bytes(), 2 * 4096u + kMiB);
  for (int i = 0; i < 300; ++i) Put(static_cast<uint64_t>(i % 100) * 4096, std::string(4096, 'q'));
  EXPECT_EQ(cache_->preimage_pages(), 1u);
  EXPECT_LE(cache_->allocated_bytes(), 2 * 4096u + kMiB);  // bounded, not growing
  ASSERT_TRUE(cache_->SetCacheSize(0).ok());
}

TEST_P(WriteCacheTest, LoweringCacheSizeWritesBackAtOnce) {
  Volatile();
  for (int i = 0; i < 10; ++i) Put(static_cast<uint64_t>(i) * 512, std::string(512, 'q'));
  ASSERT_TRUE(cache_->SetCacheSize(1024).ok());
  EXPECT_EQ(cache_->unflushed().writes, 2u);
}

TEST_P(WriteCacheTest, CacheModeNoneMakesEverythingDurable) {
  Volatile();
  Put(0, "keep");
  ASSERT_TRUE(cache_->SetMode(CacheMode::kNone).ok());
  EXPECT_FALSE(cache_->engaged());
  Cut();
  EXPECT_EQ(Get(0, 4), "keep");
}

TEST_P(WriteCacheTest, FreeAllForgetsAndResizeKeeps) {
  Volatile();
  Put(0, "r");
  ASSERT_TRUE(cache_->Resize(store_->size_bytes()).ok());
  EXPECT_EQ(cache_->unflushed().writes, 0u);
  Put(0, "s");
  ASSERT_TRUE(cache_->FreeAll().ok());
  Cut();
  EXPECT_EQ(Get(0, 1), std::string(1, '\0'));
}

// ---- the store's view ----------------------------------------------------------------

TEST_P(WriteCacheTest, PreimagesOfPagesTheCacheWroteAreCopiedFromTheView) {
  Volatile();
  Put(0, std::string(4096, 'a'), /*fua=*/true);
  EXPECT_EQ(cache_->preimage_preads(), 1u);  // a page it had not seen: pread
  Put(100, "bb");
  EXPECT_EQ(cache_->preimage_preads(), 1u);  // it wrote page 0: the view
  Cut();
  EXPECT_EQ(Get(0, 4096), std::string(4096, 'a'));
  Put(0, "c", /*fua=*/true);  // a cut rebuilds the store: nothing is known
  EXPECT_EQ(cache_->preimage_preads(), 2u);
}

TEST_P(WriteCacheTest, DiscardResizeAndModeChangeForgetWhatTheStoreHeld) {
  Volatile();
  Put(0, std::string(8192, 'a'), /*fua=*/true);
  ASSERT_TRUE(cache_->Discard(0, 4096).ok());
  ASSERT_TRUE(cache_->Flush().ok());
  uint64_t preads = cache_->preimage_preads();
  Put(0, "x");  // page 0 is a hole now: pread, not the view
  EXPECT_EQ(cache_->preimage_preads(), ++preads);
  Put(4096 + 7, "y");  // page 1 still held: the view
  EXPECT_EQ(cache_->preimage_preads(), preads);
  Cut();
  EXPECT_EQ(Get(0, 4096), std::string(4096, '\0'));
  EXPECT_EQ(Get(4096, 4096), std::string(4096, 'a'));

  const uint64_t size = store_->size_bytes();
  Put(8192, "z", /*fua=*/true);
  ASSERT_TRUE(cache_->Resize(4096).ok());
  ASSERT_TRUE(cache_->Resize(size).ok());
  preads = cache_->preimage_preads();
  Put(8192, "w");  // freed by the shrink: pread
  EXPECT_EQ(cache_->preimage_preads(), ++preads);
  ASSERT_TRUE(cache_->Flush().ok());
  ASSERT_TRUE(cache_->SetMode(CacheMode::kNone).ok());
  ASSERT_TRUE(store_->Discard(8192, 4096).ok());  // unseen by the cache
  Volatile();
  Put(8192, "v");
  EXPECT_EQ(cache_->preimage_preads(), ++preads);
  Cut();
  EXPECT_EQ(Get(8192, 4096), std::string(4096, '\0'));
}

TEST_P(WriteCacheTest, ViewGrowsWithTheDiskAndReadsAPartialLastPage) {
  Make(64 * kMiB, 4 * kMiB + 512);
  Volatile();
  Put(4 * kMiB, std::string(512, 'p'), /*fua=*/true);
  Put(4 * kMiB + 1, "x");
  EXPECT_EQ(cache_->preimage_preads(), 1u);
  Cut();
  EXPECT_EQ(Get(4 * kMiB, 512), std::string(512, 'p'));

  const uint64_t far = 2560 * kMiB;  // past the first GiB-sized view
  ASSERT_TRUE(cache_->Resize(3072 * kMiB).ok());
  Put(far, std::string(4096, 'q'), /*fua=*/true);
  Put(far + 10, "r");
  EXPECT_EQ(cache_->preimage_preads(), 2u);
  Cut();
  EXPECT_EQ(Get(far, 4096), std::string(4096, 'q'));
}

// ---- policies ---------------------------------------------------------------------

// Writes `count` one-sector writes of distinct bytes to distinct sectors and
// cuts with `policy`/`seed`; returns the cut's records and the image.
struct CutOutcome {
  std::vector<PowercutRecord> records;
  std::string image;
};
CutOutcome RunCut(StoreKind kind, PowercutPolicy policy, uint64_t seed, int count,
                  size_t write_size = 512) {
  auto pool = *MemoryPool::Create(kind, 64 * kMiB);
  auto store = *PageStore::Create(pool.get(), "d", 2 * kMiB);
  WriteCache cache(store.get(), "d");
  EXPECT_TRUE(cache.SetMode(CacheMode::kVolatile).ok());
  cache.SetPolicy(policy);
  cache.SetSeed(seed);
  for (int i = 0; i < count; ++i) {
    std::string data(write_size, static_cast<char>('A' + i % 50));
    EXPECT_TRUE(
        cache.Write(static_cast<uint64_t>(i) * write_size, data.data(), data.size(), false).ok());
  }
  EXPECT_TRUE(cache.SetPower(false).ok());
  CutOutcome out{cache.last_cut(), std::string(count * write_size, '?')};
  EXPECT_TRUE(store->Read(0, out.image.data(), out.image.size()).ok());
  return out;
}

// The image a cut's records promise (for whole-write fates).
void ExpectImageMatchesRecords(const CutOutcome& o, size_t write_size) {
  for (const PowercutRecord& r : o.records) {
    ASSERT_EQ(r.offset, r.index * write_size);
    const std::string got = o.image.substr(r.offset, r.length);
    const char c = static_cast<char>('A' + r.index % 50);
    if (r.fate == WriteFate::kKept) {
      EXPECT_EQ(got, std::string(write_size, c)) << r.index;
    }
    if (r.fate == WriteFate::kLost) {
      EXPECT_EQ(got, std::string(write_size, '\0')) << r.index;
    }
  }
}

TEST_P(WriteCacheTest, EveryPolicyIsDeterministicForASeedAndMatchesItsLog) {
  for (PowercutPolicy policy : {PowercutPolicy::kAllLost, PowercutPolicy::kRandom,
                                PowercutPolicy::kPrefix, PowercutPolicy::kTorn}) {
    const CutOutcome a = RunCut(GetParam(), policy, 42, 64, 2048);
    const CutOutcome b = RunCut(GetParam(), policy, 42, 64, 2048);
    EXPECT_EQ(RenderPowercutLog(a.records), RenderPowercutLog(b.records))
        << PowercutPolicyName(policy);
    EXPECT_EQ(a.image, b.image) << PowercutPolicyName(policy);
    ASSERT_EQ(a.records.size(), 64u);
    ExpectImageMatchesRecords(a, 2048);
  }
  // A different seed gives a different outcome (random: 2^-64 to collide).
  EXPECT_NE(RenderPowercutLog(RunCut(GetParam(), PowercutPolicy::kRandom, 1, 64).records),
            RenderPowercutLog(RunCut(GetParam(), PowercutPolicy::kRandom, 2, 64).records));
}

TEST_P(WriteCacheTest, RandomKeepsAboutHalfOverManySeeds) {
  uint64_t kept = 0, total = 0;
  for (uint64_t seed = 0; seed < 200; ++seed) {
    for (const PowercutRecord& r : RunCut(GetParam(), PowercutPolicy::kRandom, seed, 20).records) {
      kept += r.fate == WriteFate::kKept;
      ++total;
      EXPECT_NE(r.fate, WriteFate::kTorn);
    }
  }
  // 4000 fair coins: mean 2000, sd ~32; 0.45..0.55 is > 6 sd.
  EXPECT_GT(kept, total * 45 / 100);
  EXPECT_LT(kept, total * 55 / 100);
}

TEST_P(WriteCacheTest, PrefixAlwaysKeepsAPrefix) {
  std::vector<int> lengths;
  for (uint64_t seed = 0; seed < 100; ++seed) {
    const CutOutcome o = RunCut(GetParam(), PowercutPolicy::kPrefix, seed, 16);
    bool lost_seen = false;
    int kept = 0;
    for (const PowercutRecord& r : o.records) {
      if (r.fate == WriteFate::kLost) lost_seen = true;
      if (r.fate == WriteFate::kKept) {
        EXPECT_FALSE(lost_seen) << "seed " << seed << ": kept after lost";
        ++kept;
      }
    }
    ExpectImageMatchesRecords(o, 512);
    lengths.push_back(kept);
  }
  // The cut point varies: both ends and the middle are reached.
  EXPECT_NE(std::count(lengths.begin(), lengths.end(), 0), 100);
  EXPECT_GT(*std::max_element(lengths.begin(), lengths.end()), 8);
  EXPECT_LT(*std::min_element(lengths.begin(), lengths.end()), 8);
}

TEST_P(WriteCacheTest, TornTearsSectorsInsideOneWrite) {
  // One 64 KiB write = 128 sectors: torn keeps some sectors and loses others.
  const CutOutcome o = RunCut(GetParam(), PowercutPolicy::kTorn, 9, 1, 65536);
  ASSERT_EQ(o.records.size(), 1u);
  EXPECT_EQ(o.records[0].fate, WriteFate::kTorn);
  int kept = 0, lost = 0;
  for (size_t s = 0; s < 128; ++s) {
    const std::string sector = o.image.substr(s * 512, 512);
    if (sector == std::string(512, 'A')) {
      ++kept;
    } else {
      EXPECT_EQ(sector, std::string(512, '\0')) << s;  // sector-atomic: never half a sector
      ++lost;
    }
  }
  EXPECT_GT(kept, 20);
  EXPECT_GT(lost, 20);
}

// Over a durable image with data in it, random unaligned writes and
// discards, some overlapping, some written back (cache_size): whichever
// entries were copied to the log and whichever are still only the store's,
// the post-cut image is the durable one plus exactly the kept entries in
// order, for random and prefix.
TEST_P(WriteCacheTest, CutImageIsTheDurableOnePlusTheKeptEntries) {
  for (uint64_t seed = 0; seed < 12; ++seed) {
    for (PowercutPolicy policy : {PowercutPolicy::kRandom, PowercutPolicy::kPrefix}) {
      Make(64 * kMiB, 512 * 1024);
      Volatile(policy, seed);
      ASSERT_TRUE(cache_->SetCacheSize(seed % 2 == 0 ? 0 : 96 * 1024).ok());
      std::mt19937_64 rng(seed * 31 + static_cast<uint64_t>(policy));
      const uint64_t size = store_->size_bytes();
      std::string base(size, '\0');
      for (uint64_t off = 0; off < size; off += 4096) {
        if (rng() % 3 == 0) continue;  // leave some holes
        base.replace(off, 4096, std::string(4096, static_cast<char>('A' + rng() % 26)));
        Put(off, base.substr(off, 4096));
      }
      ASSERT_TRUE(cache_->Flush().ok());
      std::vector<CacheOp> ops;
      for (int i = 0; i < 120; ++i) {
        // Half the ops in the first 64 KiB, so pages are rewritten often.
        const uint64_t span = rng() % 2 == 0 ? 64 * 1024 : size - 1;
        const uint64_t offset = rng() % span;
        const uint64_t length = std::min<uint64_t>(1 + rng() % 9000, size - offset);
        DoOp(ops, offset, length, rng() % 10 == 0, static_cast<char>('a' + i % 26));
      }
      const size_t unflushed = cache_->unflushed().writes;
      std::string model = base;
      for (size_t i = 0; i < ops.size() - unflushed; ++i) ApplyOp(model, ops[i]);
      ASSERT_TRUE(cache_->SetPower(false).ok());
      const auto records = cache_->last_cut();
      ASSERT_EQ(records.size(), unflushed);
      for (size_t i = 0; i < unflushed; ++i) {
        const CacheOp& op = ops[ops.size() - unflushed + i];
        ASSERT_EQ(records[i].offset, op.offset);
        if (records[i].fate == WriteFate::kKept) ApplyOp(model, op);
      }
      ASSERT_TRUE(cache_->SetPower(true).ok());
      ASSERT_EQ(Image(), model) << "seed " << seed << " policy " << static_cast<int>(policy);
    }
  }
}

TEST_P(WriteCacheTest, LaterWritesOverEarlierOnesReplayInOrder) {
  // random with overlapping writes: the image is the durable one plus the
  // kept writes applied in order, computed here independently.
  for (uint64_t seed = 0; seed < 20; ++seed) {
    Make(64 * kMiB, 1 * kMiB);
    Volatile(PowercutPolicy::kRandom, seed);
    std::mt19937_64 rng(seed);
    std::string model(1 * kMiB, '\0');
    struct W {
      uint64_t off;
      std::string data;
    };
    std::vector<W> writes;
    for (int i = 0; i < 50; ++i) {
      W w{rng() % (900 * 1024), std::string(1 + rng() % 20000, static_cast<char>('a' + i % 26))};
      Put(w.off, w.data);
      writes.push_back(w);
    }
    ASSERT_TRUE(cache_->SetPower(false).ok());
    const auto records = cache_->last_cut();
    ASSERT_EQ(records.size(), writes.size());
    for (size_t i = 0; i < writes.size(); ++i) {
      if (records[i].fate == WriteFate::kKept)
        model.replace(writes[i].off, writes[i].data.size(), writes[i].data);
    }
    ASSERT_TRUE(cache_->SetPower(true).ok());
    EXPECT_EQ(Image(), model) << "seed " << seed;
  }
}

// ---- the memory cap -----------------------------------------------------------------

TEST_P(WriteCacheTest, CapGivesEnospcAndLosesNothingDurable) {
  Make(2 * kMiB, 4 * kMiB);
  Volatile();
  const std::string durable(512 * 1024, 'D');
  Put(0, durable, /*fua=*/true);
  // Overwrites need a pre-image and a log copy each: the cap runs out long
  // before the disk does.
  int enospc = 0;
  for (int i = 0; i < 64 && enospc == 0; ++i) {
    std::string data(64 * 1024, static_cast<char>('a' + i % 26));
    auto n = cache_->Write(static_cast<uint64_t>(i % 8) * 65536, data.data(), data.size(), false);
    if (!n.ok()) {
      EXPECT_EQ(StatusToErrno(n.status()), ENOSPC) << n.status();
      ++enospc;
    }
  }
  EXPECT_EQ(enospc, 1);
  Cut();
  EXPECT_EQ(Get(0, durable.size()), durable);
}

// ---- the arena ------------------------------------------------------------------------

// Random writes and discards, unaligned and overlapping, with write-back: at
// every point the durable image is the ops but the unflushed ones applied,
// and a cut with all_lost leaves exactly that.
TEST_P(WriteCacheTest, WriteBackKeepsTheDurableImageExact) {
  Make(64 * kMiB, 256 * 1024);
  Volatile();
  ASSERT_TRUE(cache_->SetCacheSize(24 * 1024).ok());
  std::vector<CacheOp> ops;
  std::mt19937_64 rng(7);
  const uint64_t size = store_->size_bytes();
  auto durable_model = [&] {
    std::string d(size, '\0');
    const size_t applied = ops.size() - cache_->unflushed().writes;
    for (size_t i = 0; i < applied; ++i) ApplyOp(d, ops[i]);
    return d;
  };
  for (int i = 0; i < 600; ++i) {
    const uint64_t offset = rng() % (size - 1);
    const uint64_t length = std::min<uint64_t>(1 + rng() % 12000, size - offset);
    DoOp(ops, offset, length, rng() % 8 == 0, static_cast<char>('a' + i % 26));
    if (i % 50 == 49) {
      auto d = cache_->ReadDurable(0, size);
      ASSERT_TRUE(d.ok()) << d.status();
      ASSERT_EQ(*d, durable_model()) << i;
    }
  }
  const std::string expected = durable_model();
  Cut();
  EXPECT_EQ(Image(), expected);
}

TEST_P(WriteCacheTest, FlushKeepsOnlyASmallReserveAndCacheNoneFreesAll) {
  Make(64 * kMiB, 16 * kMiB);
  Volatile();
  // Pages holding data, so that each rewrite keeps a real pre-image.
  for (int i = 0; i < 1000; ++i) Put(static_cast<uint64_t>(i) * 4096, std::string(4096, 'e'));
  ASSERT_TRUE(cache_->Flush().ok());
  for (int i = 0; i < 1000; ++i) Put(static_cast<uint64_t>(i) * 4096, std::string(4096, 'f'));
  EXPECT_GE(cache_->allocated_bytes(), 1000 * 4096u);
  ASSERT_TRUE(cache_->Flush().ok());
  // The idle reserve: 1/64 of the 64 MiB cap.
  EXPECT_EQ(cache_->allocated_bytes(), kMiB);
  // The next cycle reuses what was kept.
  Put(0, std::string(4096, 'g'));
  EXPECT_EQ(cache_->allocated_bytes(), kMiB);
  ASSERT_TRUE(cache_->SetMode(CacheMode::kNone).ok());
  EXPECT_EQ(cache_->allocated_bytes(), 0u);
}

TEST_P(WriteCacheTest, SteadyWriteBackReusesArenaMemory) {
  Make(64 * kMiB, 16 * kMiB);
  Volatile();
  ASSERT_TRUE(cache_->SetCacheSize(kMiB).ok());
  std::mt19937_64 rng(3);
  for (int i = 0; i < 2000; ++i) Put(rng() % 4096 * 4096, std::string(4096, 'h'));
  const uint64_t held = cache_->allocated_bytes();
  for (int i = 0; i < 4000; ++i) Put(rng() % 4096 * 4096, std::string(4096, 'i'));
  // About 1 MiB of log and 1 MiB of pre-images, plus a chunk or two of slack.
  EXPECT_LE(cache_->allocated_bytes(), 2 * kMiB + 4 * CacheArena::kChunkBytes);
  EXPECT_LE(cache_->allocated_bytes(), held + 2 * CacheArena::kChunkBytes);
}

// ---- concurrency (TSan) ---------------------------------------------------------------

TEST_P(WriteCacheTest, ConcurrentWritesFlushesAndCuts) {
  Volatile(PowercutPolicy::kRandom, 5);
  ASSERT_TRUE(cache_->SetCacheSize(256 * 1024).ok());
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(t);
      std::string data(8192, static_cast<char>('0' + t));
      while (!stop.load()) {
        const uint64_t off = rng() % (4 * kMiB - 8192);
        auto n = cache_->Write(off, data.data(), 1 + rng() % 8192, rng() % 50 == 0);
        if (!n.ok()) {
          EXPECT_EQ(StatusToErrno(n.status()), EIO);
        }
        if (rng() % 10 == 0) {
          absl::Status s = cache_->Discard(off, 4096);
          if (!s.ok()) {
            EXPECT_EQ(StatusToErrno(s), EIO);
          }
        }
        std::string buf(4096, '\0');
        if (cache_->CheckPowered().ok()) (void)store_->Read(off, buf.data(), buf.size());
      }
    });
  }
  threads.emplace_back([&] {
    while (!stop.load()) {
      absl::Status s = cache_->Flush();
      if (!s.ok()) {
        EXPECT_EQ(StatusToErrno(s), EIO);
      }
      (void)cache_->unflushed();
      std::this_thread::yield();
    }
  });
  for (int i = 0; i < 30; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    ASSERT_TRUE(cache_->SetPower(false).ok());
    (void)cache_->last_cut();
    cache_->SetSeed(static_cast<uint64_t>(i));
    ASSERT_TRUE(cache_->SetPower(true).ok());
  }
  stop = true;
  for (auto& t : threads) t.join();
  // After a final flush and cut, the image is what it was at the flush.
  ASSERT_TRUE(cache_->Flush().ok());
  const std::string durable = Image();
  Cut();
  EXPECT_EQ(Image(), durable);
  EXPECT_EQ(cache_->stats().powercuts.load(), 31u);
}

INSTANTIATE_TEST_SUITE_P(Kinds, WriteCacheTest, ::testing::ValuesIn(TestStoreKinds()),
                         [](const auto& info) { return std::string(StoreKindName(info.param)); });

// ---- parsers ------------------------------------------------------------------------

TEST(CacheControlTest, ParsesValues) {
  EXPECT_EQ(*ParseCacheValue("volatile\n"), CacheMode::kVolatile);
  EXPECT_EQ(*ParseCacheValue(" none "), CacheMode::kNone);
  EXPECT_EQ(*ParseCacheSizeValue("64M"), 64 * kMiB);
  EXPECT_EQ(*ParseCacheSizeValue("0"), 0u);
  EXPECT_EQ(*ParsePowercutPolicyValue("torn\n"), PowercutPolicy::kTorn);
  EXPECT_EQ(*ParsePowercutSeedValue("18446744073709551615"), UINT64_MAX);
  EXPECT_EQ(*ParsePowerValue("0\n"), false);
  EXPECT_EQ(*ParsePowerValue("1"), true);
}

TEST(CacheControlTest, RejectsBadValuesWithOneLineNamingTheFile) {
  for (auto [status, file] : std::vector<std::pair<absl::Status, std::string>>{
           {ParseCacheValue("Volatile").status(), "cache"},
           {ParseCacheValue("none volatile").status(), "cache"},
           {ParseCacheValue("").status(), "cache"},
           {ParseCacheValue("none\n\n").status(), "cache"},
           {ParseCacheSizeValue("-1").status(), "cache_size"},
           {ParseCacheSizeValue("1.5").status(), "cache_size"},  // a fraction needs a unit
           {ParsePowercutPolicyValue("half").status(), "powercut_policy"},
           {ParsePowercutSeedValue("18446744073709551616").status(), "powercut_seed"},
           {ParsePowercutSeedValue("-3").status(), "powercut_seed"},
           {ParsePowercutSeedValue("0x10").status(), "powercut_seed"},
           {ParsePowerValue("2").status(), "power"},
           {ParsePowerValue(std::string("1\0", 2)).status(), "power"},
       }) {
    EXPECT_EQ(StatusToErrno(status), EINVAL) << status;
    EXPECT_EQ(std::string(status.message()).rfind(file + ": ", 0), 0u) << status;
    EXPECT_EQ(std::string(status.message()).find('\n'), std::string::npos);
  }
}

TEST(CacheControlTest, AppliesDiskKeysAndLeavesOthers) {
  CacheSettings s;
  EXPECT_TRUE(*ApplyCacheKey("cache", "volatile", &s));
  EXPECT_TRUE(*ApplyCacheKey("cache_size", "1M", &s));
  EXPECT_TRUE(*ApplyCacheKey("powercut_policy", "prefix", &s));
  EXPECT_TRUE(*ApplyCacheKey("powercut_seed", "77", &s));
  EXPECT_FALSE(*ApplyCacheKey("mode", "direct", &s));
  EXPECT_EQ(s.mode, CacheMode::kVolatile);
  EXPECT_EQ(s.cache_size_bytes, kMiB);
  EXPECT_EQ(s.policy, PowercutPolicy::kPrefix);
  EXPECT_EQ(s.seed, 77u);
  const CacheSettings before = s;
  EXPECT_FALSE(ApplyCacheKey("cache", "yes", &s).ok());
  EXPECT_FALSE(ApplyCacheKey("powercut_seed", "", &s).ok());
  EXPECT_EQ(s.mode, before.mode);
  EXPECT_EQ(s.seed, before.seed);
}

TEST(CacheControlTest, RendersAndParsesTheLog) {
  EXPECT_EQ(RenderUnflushed(3, 12288), "writes 3\nbytes 12288\n");
  const std::vector<PowercutRecord> records = {{0, 4096, 512, WriteFate::kKept},
                                               {1, 0, 65536, WriteFate::kTorn},
                                               {2, 8192, 4096, WriteFate::kLost}};
  const std::string text = RenderPowercutLog(records);
  EXPECT_EQ(text, "0 4096 512 kept\n1 0 65536 torn\n2 8192 4096 lost\n");
  auto back = ParsePowercutLog(text);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(RenderPowercutLog(*back), text);
  EXPECT_TRUE(ParsePowercutLog("").ok());
  EXPECT_FALSE(ParsePowercutLog("0 1 2 maybe\n").ok());
  EXPECT_FALSE(ParsePowercutLog("0 1 2 kept").ok());
  EXPECT_FALSE(ParsePowercutLog("0 0556 36 torn\n").ok());  // found by the fuzzer
}

}  // namespace
}  // namespace ramdiskfs

namespace ramdiskfs {
namespace {

TEST_P(WriteCacheTest, ArmedCutFiresAtTheNthFlushAndThatFlushFails) {
  Volatile();
  cache_->SetCutAtFlush(3);
  EXPECT_TRUE(cache_->engaged());
  Put(0, "one");
  ASSERT_TRUE(cache_->Flush().ok());
  Put(512, "two", /*fua=*/true);  // a FUA write counts as a flush
  EXPECT_EQ(cache_->cut_at_flush(), 1u);
  Put(1024, "three");
  EXPECT_EQ(StatusToErrno(cache_->Flush()), EIO);  // the 3rd: the cut
  EXPECT_FALSE(cache_->powered());
  EXPECT_EQ(cache_->cut_at_flush(), 0u);
  EXPECT_EQ(cache_->stats().flushes_received.load(), 2u);
  ASSERT_TRUE(cache_->SetPower(true).ok());
  EXPECT_EQ(Get(0, 3), "one");
  EXPECT_EQ(Get(512, 3), "two");
  EXPECT_EQ(Get(1024, 5), std::string(5, '\0'));
  ASSERT_EQ(cache_->last_cut().size(), 1u);
}

TEST_P(WriteCacheTest, ArmedCutOnAFuaWriteDropsThatWrite) {
  Volatile();
  cache_->SetCutAtFlush(1);
  Put(0, "kept?");
  EXPECT_EQ(StatusToErrno(cache_->Write(512, "fua", 3, true).status()), EIO);
  ASSERT_TRUE(cache_->SetPower(true).ok());
  EXPECT_EQ(Get(0, 5), std::string(5, '\0'));
  EXPECT_EQ(Get(512, 3), std::string(3, '\0'));
}

}  // namespace
}  // namespace ramdiskfs
