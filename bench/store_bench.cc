// Microbenchmarks of the store (PageStore over the MemoryPool) without FUSE:
// what one read or write costs the daemon once a request has arrived.
//
//   build/store_bench [--benchmark_filter=...]
//
// Each benchmark works on one 256 MiB disk shared by its threads. Reads run
// over a disk whose pages are all written (so they copy data, not holes);
// ReadHole measures reading pages never written (zeros, nothing allocated).
// Offsets are random and aligned to the I/O size. Uses the tmpfs pool when
// run as root and the memfd pool otherwise (the name says which).

#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "ramdiskfs/memory_pool.h"
#include "ramdiskfs/page_store.h"

namespace ramdiskfs {
namespace {

constexpr uint64_t kDiskBytes = 256ull << 20;

struct Fixture {
  std::unique_ptr<MemoryPool> pool;
  std::unique_ptr<PageStore> store;
};

// One store per benchmark family, made filled once and shared by threads.
Fixture& Shared(bool filled) {
  static Fixture* fixtures[2] = {nullptr, nullptr};
  Fixture*& f = fixtures[filled ? 1 : 0];
  if (f == nullptr) {
    f = new Fixture;
    f->pool = *MemoryPool::Create(StoreKind::kAuto, 2 * kDiskBytes);
    f->store = *PageStore::Create(f->pool.get(), "bench", kDiskBytes);
    if (filled) {
      std::vector<char> buf(1 << 20, 'x');
      for (uint64_t off = 0; off < kDiskBytes; off += buf.size()) {
        (void)f->store->Write(off, buf.data(), buf.size());
      }
    }
  }
  return *f;
}

void Run(benchmark::State& state, bool write, bool filled) {
  const size_t io = static_cast<size_t>(state.range(0));
  Fixture& f = Shared(filled || write);
  std::vector<char> buf(io, static_cast<char>('a' + state.thread_index()));
  std::mt19937_64 rng(1234 + state.thread_index());
  std::uniform_int_distribution<uint64_t> slot(0, kDiskBytes / io - 1);
  for (auto _ : state) {
    const uint64_t off = slot(rng) * io;
    auto n = write ? f.store->Write(off, buf.data(), io) : f.store->Read(off, buf.data(), io);
    if (!n.ok() || *n != io) {
      state.SkipWithError("I/O failed");
      break;
    }
    benchmark::DoNotOptimize(buf.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(io));
  state.SetLabel(StoreKindName(f.pool->kind()).data());
}

void BM_Write(benchmark::State& state) { Run(state, true, true); }
void BM_Read(benchmark::State& state) { Run(state, false, true); }
void BM_ReadHole(benchmark::State& state) { Run(state, false, false); }

BENCHMARK(BM_Write)->Arg(4096)->Arg(1 << 20)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_Read)->Arg(4096)->Arg(1 << 20)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_ReadHole)->Arg(4096)->Arg(1 << 20)->Threads(1)->UseRealTime();

// Discard + rewrite of one page: the cost of the fstrim / write-zeroes path.
void BM_DiscardRewrite(benchmark::State& state) {
  Fixture& f = Shared(true);
  std::vector<char> page(4096, 'z');
  std::mt19937_64 rng(99);
  std::uniform_int_distribution<uint64_t> slot(0, kDiskBytes / 4096 - 1);
  for (auto _ : state) {
    const uint64_t off = slot(rng) * 4096;
    (void)f.store->Discard(off, 4096);
    (void)f.store->Write(off, page.data(), page.size());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * 4096);
}
BENCHMARK(BM_DiscardRewrite);

}  // namespace
}  // namespace ramdiskfs

BENCHMARK_MAIN();
