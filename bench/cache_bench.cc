// Microbenchmarks of the volatile write cache (WriteCache) without FUSE:
// what a cached 4 KiB write costs the daemon beyond a plain store write, and
// what a flush costs against the unflushed bytes and the disk's size.
//
//   build/store_bench --benchmark_filter='Cache|Flush'
//
// CacheWrite4K / StoreWrite4K: random aligned 4 KiB writes over a filled
// 256 MiB disk (so a first touch copies a real pre-image); the cache writes
// back past 64 MiB (cache_size), so it runs in a steady state.
// CacheWrite4KUnseenPages: the same with the cache engaged after the fill. Flush/N/M:
// N KiB of random 4 KiB writes unflushed on an M MiB disk, then Flush().

#include <benchmark/benchmark.h>

#include <cstdint>
#include <memory>
#include <random>
#include <vector>

#include "ramdiskfs/memory_pool.h"
#include "ramdiskfs/page_store.h"
#include "ramdiskfs/write_cache.h"

namespace ramdiskfs {
namespace {

constexpr uint64_t kMiB = 1ull << 20;

struct CacheFixture {
  std::unique_ptr<MemoryPool> pool;
  std::unique_ptr<PageStore> store;
  std::unique_ptr<WriteCache> cache;
};

std::unique_ptr<CacheFixture> MakeFixture(uint64_t disk_bytes, bool fill, bool cached,
                                          uint64_t cache_size = 64 * kMiB, bool seen = true) {
  auto f = std::make_unique<CacheFixture>();
  f->pool = *MemoryPool::Create(StoreKind::kAuto, 2 * disk_bytes + 512 * kMiB);
  f->store = *PageStore::Create(f->pool.get(), "bench", disk_bytes);
  if (fill) {
    std::vector<char> buf(kMiB, 'x');
    for (uint64_t off = 0; off < disk_bytes; off += buf.size()) {
      (void)f->store->Write(off, buf.data(), buf.size());
    }
  }
  f->cache = std::make_unique<WriteCache>(f->store.get(), "bench");
  if (cached) {
    (void)f->cache->SetMode(CacheMode::kVolatile);
    (void)f->cache->SetCacheSize(cache_size);
    if (fill && seen) {
      // Written once through the cache, as a disk made with cache=volatile
      // is: the cache knows the store holds every page.
      std::vector<char> page(4096, 'y');
      for (uint64_t off = 0; off < disk_bytes; off += page.size()) {
        (void)f->cache->Write(off, page.data(), page.size(), false);
      }
      (void)f->cache->Flush();
    }
  }
  return f;
}

void Write4K(benchmark::State& state, bool cached, bool seen = true) {
  constexpr uint64_t kDisk = 256 * kMiB;
  auto f = MakeFixture(kDisk, /*fill=*/true, cached, 64 * kMiB, seen);
  std::vector<char> buf(4096, 'w');
  std::mt19937_64 rng(1234);
  for (auto _ : state) {
    const uint64_t off = (rng() % (kDisk / 4096)) * 4096;
    auto n = cached ? f->cache->Write(off, buf.data(), 4096, false)
                    : f->store->Write(off, buf.data(), 4096);
    if (!n.ok()) state.SkipWithError("write failed");
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * 4096);
}
void BM_StoreWrite4K(benchmark::State& state) { Write4K(state, false); }
void BM_CacheWrite4K(benchmark::State& state) { Write4K(state, true); }
// The cache engaged over data it has not seen: the first write to each page
// reads its pre-image with pread.
void BM_CacheWrite4KUnseenPages(benchmark::State& state) { Write4K(state, true, false); }
// cache_size 0: unbounded; flushed every 16384 writes (64 MiB) as a
// filesystem's journal commits would.
void BM_CacheWrite4KUnbounded(benchmark::State& state) {
  constexpr uint64_t kDisk = 256 * kMiB;
  auto f = MakeFixture(kDisk, /*fill=*/true, true, 0);
  std::vector<char> buf(4096, 'w');
  std::mt19937_64 rng(1234);
  uint64_t n = 0;
  for (auto _ : state) {
    const uint64_t off = (rng() % (kDisk / 4096)) * 4096;
    if (!f->cache->Write(off, buf.data(), 4096, false).ok()) state.SkipWithError("write failed");
    if (++n % 16384 == 0) (void)f->cache->Flush();
  }
}
BENCHMARK(BM_StoreWrite4K)->MinTime(2);
BENCHMARK(BM_CacheWrite4K)->MinTime(2);
BENCHMARK(BM_CacheWrite4KUnseenPages)->MinTime(2);
BENCHMARK(BM_CacheWrite4KUnbounded)->MinTime(2);

void BM_Flush(benchmark::State& state) {
  const uint64_t unflushed = static_cast<uint64_t>(state.range(0)) * 1024;
  const uint64_t disk = static_cast<uint64_t>(state.range(1)) * kMiB;
  auto f = MakeFixture(disk, /*fill=*/false, /*cached=*/true);
  (void)f->cache->SetCacheSize(0);
  std::vector<char> buf(4096, 'f');
  std::mt19937_64 rng(99);
  for (auto _ : state) {
    state.PauseTiming();
    for (uint64_t done = 0; done < unflushed; done += 4096) {
      (void)f->cache->Write((rng() % (disk / 4096)) * 4096, buf.data(), 4096, false);
    }
    state.ResumeTiming();
    if (!f->cache->Flush().ok()) state.SkipWithError("flush failed");
  }
}
BENCHMARK(BM_Flush)
    ->Args({64, 64})
    ->Args({1024, 64})
    ->Args({16384, 64})
    ->Args({64, 4096})
    ->Args({1024, 4096})
    ->Args({16384, 4096})
    ->Iterations(30)
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace ramdiskfs
