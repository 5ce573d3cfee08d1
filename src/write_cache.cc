// The volatile write cache (see write_cache.h and docs/crashtest.md).
//
// Invariants, with D the durable image and S the store (the newest image):
//  1. S = D + entries_ applied in order.
//  2. For every page p in preimages_, the pre-image file holds D[p] at the
//     page's own offset (a hole there reads as zeros); every page not in
//     preimages_ has S[p] == D[p].
//  3. preimages_[p] is the seq of the newest entry that changed p, so once
//     every entry up to it is durable, S[p] == D[p] and the pre-image can go.
//  4. Entries' log data lie in the log file in arrival order; bytes below
//     log_freed_to_ belong to entries already durable.

#include "ramdiskfs/write_cache.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "ramdiskfs/log.h"
#include "ramdiskfs/size.h"
#include "ramdiskfs/status.h"

namespace ramdiskfs {
namespace {

constexpr uint64_t kSectorSize = 512;
// One copy chunk: big enough that a 1 MiB write back is 4 round trips,
// small enough to allocate once per disk without thought.
constexpr size_t kCopyChunk = 256 * 1024;

// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, and fully specified, so a
// seed gives the same draws on every machine and build (the standard
// library's distributions are not specified bit for bit).
class Draws {
 public:
  explicit Draws(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  bool Coin() { return (Next() >> 63) != 0; }

 private:
  uint64_t state_;
};

bool AllZero(const char* buf, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (buf[i] != 0) return false;
  }
  return true;
}

uint64_t PageFloor(uint64_t offset) { return offset / kPageSize * kPageSize; }

absl::Status PowerOff(const std::string& name) {
  return ErrnoStatus(EIO, absl::StrCat("disk ", name, " has no power (write 1 to power)"));
}

}  // namespace

WriteCache::WriteCache(PageStore* store, std::string name)
    : pool_(store->pool()), store_(store), name_(std::move(name)) {}

void WriteCache::SetStateBit(uint32_t bit, bool on) {
  if (on) {
    state_.fetch_or(bit, std::memory_order_acq_rel);
  } else {
    state_.fetch_and(~bit, std::memory_order_acq_rel);
  }
}

CacheSettings WriteCache::settings() const {
  std::lock_guard lock(mu_);
  return settings_;
}

absl::Status WriteCache::EnsureFiles() {
  if (!preimages_file_) {
    RDFS_ASSIGN_OR_RETURN(preimages_file_,
                          PageStore::Create(pool_, name_ + ".preimages", kMaxDiskBytes));
  }
  if (!log_file_) {
    RDFS_ASSIGN_OR_RETURN(log_file_, PageStore::Create(pool_, name_ + ".log", kMaxDiskBytes));
  }
  if (scratch_.size() < kCopyChunk) scratch_.resize(kCopyChunk);
  return absl::OkStatus();
}

absl::Status WriteCache::SetMode(CacheMode mode) {
  std::lock_guard lock(mu_);
  if (mode == CacheMode::kVolatile) {
    RDFS_RETURN_IF_ERROR(EnsureFiles());
  } else {
    Clear(/*durable=*/true);
  }
  settings_.mode = mode;
  SetStateBit(kVolatile, mode == CacheMode::kVolatile);
  return absl::OkStatus();
}

absl::Status WriteCache::SetCacheSize(uint64_t bytes) {
  std::lock_guard lock(mu_);
  settings_.cache_size_bytes = bytes;
  return EnforceCacheSize();
}

void WriteCache::SetPolicy(PowercutPolicy policy) {
  std::lock_guard lock(mu_);
  settings_.policy = policy;
}

void WriteCache::SetSeed(uint64_t seed) {
  std::lock_guard lock(mu_);
  settings_.seed = seed;
}

absl::Status WriteCache::CheckPowered() const {
  if (!powered()) return PowerOff(name_);
  return absl::OkStatus();
}

// ---- pre-images -------------------------------------------------------------------

absl::Status WriteCache::Capture(uint64_t page, uint64_t seq) {
  const uint64_t offset = page * kPageSize;
  char* buf = scratch_.data();
  RDFS_ASSIGN_OR_RETURN(size_t n, store_->Read(offset, buf, kPageSize));
  if (n > 0 && !AllZero(buf, n)) {
    absl::StatusOr<size_t> written = preimages_file_->Write(offset, buf, n);
    if (!written.ok() || *written != n) {
      (void)preimages_file_->Discard(offset, kPageSize);
      if (!written.ok()) return written.status();
      return ErrnoStatus(ENOSPC, "no memory left for a pre-image");
    }
  }
  preimages_.emplace(page, seq);
  return absl::OkStatus();
}

void WriteCache::DropCaptured(const std::vector<uint64_t>& pages) {
  for (uint64_t page : pages) {
    (void)preimages_file_->Discard(page * kPageSize, kPageSize);
    preimages_.erase(page);
  }
}

template <typename Fn>
void WriteCache::ForEachPreimageIn(uint64_t first, uint64_t last, Fn fn) {
  std::vector<uint64_t> pages;
  if (last - first < preimages_.size()) {
    for (uint64_t p = first;; ++p) {
      if (preimages_.contains(p)) pages.push_back(p);
      if (p == last) break;
    }
  } else {
    for (const auto& [p, seq] : preimages_) {
      if (p >= first && p <= last) pages.push_back(p);
    }
  }
  for (uint64_t p : pages) fn(p);
}

absl::Status WriteCache::Copy(const PageStore& from, uint64_t src_offset, PageStore& to,
                              uint64_t dst_offset, uint64_t length) {
  char* buf = scratch_.data();
  for (uint64_t done = 0; done < length;) {
    const size_t chunk = static_cast<size_t>(std::min<uint64_t>(kCopyChunk, length - done));
    RDFS_ASSIGN_OR_RETURN(size_t n, from.Read(src_offset + done, buf, chunk));
    if (n != chunk) return ErrnoStatus(EIO, "short read from a cache file");
    RDFS_ASSIGN_OR_RETURN(size_t w, to.Write(dst_offset + done, buf, chunk));
    if (w != chunk) return ErrnoStatus(ENOSPC, "no memory left to copy cached data");
    done += chunk;
  }
  return absl::OkStatus();
}

// ---- the I/O path -----------------------------------------------------------------

absl::StatusOr<size_t> WriteCache::Write(uint64_t offset, const char* buf, size_t length,
                                         bool fua) {
  std::lock_guard lock(mu_);
  if (!powered()) return PowerOff(name_);
  if (fua && ArmedCutFires()) return CutNow();
  if (settings_.mode != CacheMode::kVolatile) {
    if (fua) stats_.flushes_received.fetch_add(1, std::memory_order_relaxed);
    return store_->Write(offset, buf, length);
  }
  return WriteVolatile(offset, buf, length, fua);
}

absl::StatusOr<size_t> WriteCache::WriteVolatile(uint64_t offset, const char* buf, size_t length,
                                                 bool fua) {
  const uint64_t size = store_->size_bytes();
  // At or past the end: the store's own ENOSPC, nothing logged.
  if (offset >= size || length == 0) return store_->Write(offset, buf, length);
  length = static_cast<size_t>(std::min<uint64_t>(length, size - offset));
  const uint64_t seq = next_seq_;
  const uint64_t first = offset / kPageSize;
  const uint64_t last = (offset + length - 1) / kPageSize;

  captured_.clear();
  for (uint64_t p = first; p <= last; ++p) {
    if (preimages_.contains(p)) continue;
    if (absl::Status status = Capture(p, seq); !status.ok()) {
      DropCaptured(captured_);
      return status;
    }
    captured_.push_back(p);
  }
  // The log copy first: if the cap leaves no room for it, nothing changed.
  absl::StatusOr<size_t> logged = log_file_->Write(log_end_, buf, length);
  if (!logged.ok() || *logged != length) {
    (void)log_file_->Discard(log_end_, length);
    DropCaptured(captured_);
    if (!logged.ok()) return logged.status();
    return ErrnoStatus(ENOSPC, "no memory left for the write cache's copy");
  }
  absl::StatusOr<size_t> n = store_->Write(offset, buf, length);
  if (!n.ok()) {
    (void)log_file_->Discard(log_end_, length);
    DropCaptured(captured_);
    return n.status();
  }
  const uint64_t last_written = (offset + *n - 1) / kPageSize;
  for (uint64_t p = first; p <= last_written; ++p) preimages_[p] = seq;
  entries_.push_back({seq, offset, *n, log_end_, false});
  ++next_seq_;
  log_end_ += length;
  unflushed_bytes_ += *n;
  if (fua) {
    stats_.flushes_received.fetch_add(1, std::memory_order_relaxed);
    Clear(/*durable=*/true);
  } else if (absl::Status status = EnforceCacheSize(); !status.ok()) {
    Log("disk ", name_, ": write-back failed (", status.message(),
        "); making the whole cache durable instead");
    Clear(/*durable=*/true);
  }
  return *n;
}

absl::Status WriteCache::Discard(uint64_t offset, uint64_t length) {
  std::lock_guard lock(mu_);
  if (!powered()) return PowerOff(name_);
  if (settings_.mode != CacheMode::kVolatile) return store_->Discard(offset, length);
  return DiscardVolatile(offset, length);
}

absl::Status WriteCache::DiscardVolatile(uint64_t offset, uint64_t length) {
  const uint64_t size = store_->size_bytes();
  if (offset >= size || length == 0) return store_->Discard(offset, length);
  length = std::min<uint64_t>(length, size - offset);
  const uint64_t seq = next_seq_;
  const uint64_t end = offset + length;
  // Only pages holding data change (zeroing a hole changes nothing), so only
  // they need a pre-image: a discard of a fresh disk (mkfs) captures nothing.
  captured_.clear();
  for (uint64_t pos = offset; pos < end;) {
    absl::StatusOr<uint64_t> data = store_->SeekData(pos);
    if (!data.ok() || *data >= end) break;
    absl::StatusOr<uint64_t> hole = store_->SeekHole(*data);
    const uint64_t data_end = hole.ok() ? std::min<uint64_t>(*hole, end) : end;
    for (uint64_t p = *data / kPageSize; p <= (data_end - 1) / kPageSize; ++p) {
      if (preimages_.contains(p)) continue;
      if (absl::Status status = Capture(p, seq); !status.ok()) {
        DropCaptured(captured_);
        return status;
      }
      captured_.push_back(p);
    }
    pos = std::max(data_end, *data + 1);
  }
  if (absl::Status status = store_->Discard(offset, length); !status.ok()) {
    DropCaptured(captured_);
    return status;
  }
  ForEachPreimageIn(offset / kPageSize, (end - 1) / kPageSize,
                    [&](uint64_t p) { preimages_[p] = seq; });
  entries_.push_back({seq, offset, length, 0, true});
  ++next_seq_;
  return absl::OkStatus();
}

absl::Status WriteCache::Flush() {
  if (!engaged()) {
    stats_.flushes_received.fetch_add(1, std::memory_order_relaxed);
    return absl::OkStatus();
  }
  std::lock_guard lock(mu_);
  if (!powered()) return PowerOff(name_);
  if (ArmedCutFires()) return CutNow();
  stats_.flushes_received.fetch_add(1, std::memory_order_relaxed);
  Clear(/*durable=*/true);
  return absl::OkStatus();
}

absl::Status WriteCache::BeforeResize() {
  if (!engaged()) return absl::OkStatus();
  std::lock_guard lock(mu_);
  if (!powered()) return PowerOff(name_);
  Clear(/*durable=*/true);
  return absl::OkStatus();
}

absl::Status WriteCache::BeforeFreeAll() {
  if (!engaged()) return absl::OkStatus();
  std::lock_guard lock(mu_);
  if (!powered()) return PowerOff(name_);
  Clear(/*durable=*/false);
  return absl::OkStatus();
}

// ---- durability -------------------------------------------------------------------

void WriteCache::Clear(bool durable) {
  if (durable) stats_.writes_made_durable.fetch_add(entries_.size(), std::memory_order_relaxed);
  if (log_file_ && log_end_ > log_punched_to_) {
    (void)log_file_->Discard(log_punched_to_, log_end_ - log_punched_to_);
  }
  if (preimages_file_ && !preimages_.empty()) {
    // One punch over the pages' span: shmem walks only the pages present,
    // so this costs what is cached, not the disk's size (benchmarks.md).
    uint64_t lo = UINT64_MAX, hi = 0;
    for (const auto& [p, seq] : preimages_) {
      lo = std::min(lo, p);
      hi = std::max(hi, p);
    }
    (void)preimages_file_->Discard(lo * kPageSize, (hi - lo + 1) * kPageSize);
  }
  entries_.clear();
  preimages_.clear();
  log_end_ = 0;
  log_freed_to_ = 0;
  log_punched_to_ = 0;
  unflushed_bytes_ = 0;
}

absl::Status WriteCache::EnforceCacheSize() {
  if (settings_.cache_size_bytes == 0) return absl::OkStatus();
  while (unflushed_bytes_ > settings_.cache_size_bytes && !entries_.empty()) {
    RDFS_RETURN_IF_ERROR(WriteBackOldest());
  }
  return absl::OkStatus();
}

absl::Status WriteCache::WriteBackOldest() {
  const Entry e = entries_.front();
  // D += e: the pre-images of e's pages take e's bytes (every page e wrote
  // still has one: invariant 3 keeps it until e is durable).
  if (e.zero) {
    RDFS_RETURN_IF_ERROR(preimages_file_->Discard(e.offset, e.length));
  } else {
    RDFS_RETURN_IF_ERROR(Copy(*log_file_, e.log_offset, *preimages_file_, e.offset, e.length));
  }
  std::vector<uint64_t> done;
  ForEachPreimageIn(e.offset / kPageSize, (e.offset + e.length - 1) / kPageSize, [&](uint64_t p) {
    if (preimages_[p] <= e.seq) done.push_back(p);
  });
  DropCaptured(done);
  if (!e.zero) {
    RetireLog(e.log_offset + e.length);
    unflushed_bytes_ -= e.length;
  }
  entries_.pop_front();
  stats_.writes_made_durable.fetch_add(1, std::memory_order_relaxed);
  return absl::OkStatus();
}

void WriteCache::RetireLog(uint64_t to) {
  // A punch costs a few microseconds (shmem takes its locks and walks the
  // range): once per 1 MiB of dead log, not once per entry, so a write-back
  // at cache_size costs ~1/256 of a punch per 4 KiB write. At most 1 MiB of
  // dead log is held.
  constexpr uint64_t kBatch = 1 << 20;
  log_freed_to_ = to;
  const uint64_t end = PageFloor(log_freed_to_);  // the page with live bytes stays
  if (end >= log_punched_to_ + kBatch) {
    (void)log_file_->Discard(log_punched_to_, end - log_punched_to_);
    log_punched_to_ = end;
  }
}

// ---- power ------------------------------------------------------------------------

absl::Status WriteCache::SetPower(bool on) {
  std::lock_guard lock(mu_);
  if (on) {
    SetStateBit(kOff, false);
    return absl::OkStatus();
  }
  if (!powered()) return absl::OkStatus();
  (void)CutNow();  // the EIO is for an interrupted request; there is none
  return last_cut_error_;
}

absl::Status WriteCache::CutNow() {
  // Off first: a request that takes mu_ after us fails with EIO.
  SetStateBit(kOff, true);
  cut_at_flush_ = 0;
  SetStateBit(kArmed, false);
  stats_.powercuts.fetch_add(1, std::memory_order_relaxed);
  last_cut_error_ = Cut();
  return PowerOff(name_);
}

bool WriteCache::ArmedCutFires() {
  if (cut_at_flush_ == 0) return false;
  return --cut_at_flush_ == 0;
}

void WriteCache::SetCutAtFlush(uint64_t n) {
  std::lock_guard lock(mu_);
  cut_at_flush_ = n;
  SetStateBit(kArmed, n != 0);
}

uint64_t WriteCache::cut_at_flush() const {
  std::lock_guard lock(mu_);
  return cut_at_flush_;
}

absl::Status WriteCache::Replay(const Entry& e, uint64_t sector_offset, uint64_t sector_length) {
  if (e.zero) return store_->Discard(e.offset + sector_offset, sector_length);
  return Copy(*log_file_, e.log_offset + sector_offset, *store_, e.offset + sector_offset,
              sector_length);
}

absl::Status WriteCache::Cut() {
  absl::Status first_error;
  auto note = [&first_error](absl::Status status) {
    if (!status.ok() && first_error.ok()) first_error = std::move(status);
  };
  last_cut_.clear();
  if (entries_.empty() && preimages_.empty()) return absl::OkStatus();

  // 1. Back to the durable image. Each pre-image page is freed as soon as it
  // is back, so the rebuild needs at most a page more than the cache held.
  const uint64_t size = store_->size_bytes();
  char* buf = scratch_.data();
  for (const auto& [p, seq] : preimages_) {
    const uint64_t offset = p * kPageSize;
    if (offset >= size) continue;
    const size_t n = static_cast<size_t>(std::min<uint64_t>(kPageSize, size - offset));
    absl::StatusOr<size_t> got = preimages_file_->Read(offset, buf, n);
    if (!got.ok()) {
      note(got.status());
      continue;
    }
    if (AllZero(buf, n)) {
      note(store_->Discard(offset, n));
    } else {
      absl::StatusOr<size_t> w = store_->Write(offset, buf, n);
      note(w.ok() ? (*w == n ? absl::OkStatus() : ErrnoStatus(ENOSPC, "short restore"))
                  : w.status());
    }
    (void)preimages_file_->Discard(offset, kPageSize);
  }

  // 2. The policy's survivors, replayed in arrival order. The draws are made
  // in this exact order (docs/crashtest.md), so a seed replays exactly.
  Draws draws(settings_.seed);
  const PowercutPolicy policy = settings_.policy;
  const uint64_t count = entries_.size();
  const uint64_t prefix = policy == PowercutPolicy::kPrefix ? draws.Next() % (count + 1) : 0;
  last_cut_.reserve(count);
  for (uint64_t i = 0; i < count; ++i) {
    const Entry& e = entries_[i];
    WriteFate fate = WriteFate::kLost;
    switch (policy) {
      case PowercutPolicy::kAllLost:
        break;
      case PowercutPolicy::kRandom:
        fate = draws.Coin() ? WriteFate::kKept : WriteFate::kLost;
        break;
      case PowercutPolicy::kPrefix:
        fate = i < prefix ? WriteFate::kKept : WriteFate::kLost;
        break;
      case PowercutPolicy::kTorn: {
        // One coin per 512-byte disk sector the entry touches; runs of kept
        // sectors are replayed as one piece.
        uint64_t kept = 0, sectors = 0;
        uint64_t run_start = 0, run_length = 0;
        const uint64_t end = e.offset + e.length;
        for (uint64_t s = e.offset / kSectorSize * kSectorSize; s < end; s += kSectorSize) {
          const uint64_t lo = std::max(s, e.offset);
          const uint64_t hi = std::min(s + kSectorSize, end);
          ++sectors;
          if (draws.Coin()) {
            ++kept;
            if (run_length == 0) run_start = lo - e.offset;
            run_length += hi - lo;
          } else if (run_length > 0) {
            note(Replay(e, run_start, run_length));
            run_length = 0;
          }
        }
        if (run_length > 0) note(Replay(e, run_start, run_length));
        fate =
            kept == sectors ? WriteFate::kKept : (kept == 0 ? WriteFate::kLost : WriteFate::kTorn);
        break;
      }
    }
    if (fate == WriteFate::kKept && policy != PowercutPolicy::kTorn) {
      note(Replay(e, 0, e.length));
    }
    last_cut_.push_back({i, e.offset, e.length, fate});
    if (!e.zero) RetireLog(e.log_offset + e.length);  // free the log as we go
  }
  Clear(/*durable=*/false);
  if (!first_error.ok()) {
    Log("disk ", name_,
        ": power cut could not rebuild the post-cut image: ", first_error.message());
  }
  return first_error;
}

std::vector<PowercutRecord> WriteCache::last_cut() const {
  std::lock_guard lock(mu_);
  return last_cut_;
}

// ---- inspection ---------------------------------------------------------------------

WriteCache::Unflushed WriteCache::unflushed() const {
  std::lock_guard lock(mu_);
  return {entries_.size(), unflushed_bytes_};
}

uint64_t WriteCache::preimage_pages() const {
  std::lock_guard lock(mu_);
  return preimages_.size();
}

uint64_t WriteCache::allocated_bytes() const {
  std::lock_guard lock(mu_);
  uint64_t bytes = 0;
  if (preimages_file_) bytes += preimages_file_->allocated_bytes();
  if (log_file_) bytes += log_file_->allocated_bytes();
  return bytes;
}

absl::StatusOr<std::string> WriteCache::ReadDurable(uint64_t offset, size_t length) const {
  std::lock_guard lock(mu_);
  std::string out(length, '\0');
  RDFS_ASSIGN_OR_RETURN(size_t n, store_->Read(offset, out.data(), length));
  out.resize(n);
  if (n == 0 || preimages_.empty()) return out;
  for (uint64_t p = offset / kPageSize; p <= (offset + n - 1) / kPageSize; ++p) {
    if (!preimages_.contains(p)) continue;
    const uint64_t lo = std::max(offset, p * kPageSize);
    const uint64_t hi = std::min(offset + n, (p + 1) * kPageSize);
    RDFS_ASSIGN_OR_RETURN(size_t got,
                          preimages_file_->Read(lo, out.data() + (lo - offset), hi - lo));
    if (got != hi - lo) return ErrnoStatus(EIO, "short read of a pre-image");
  }
  return out;
}

}  // namespace ramdiskfs
