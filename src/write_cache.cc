// The volatile write cache (see write_cache.h and docs/crashtest.md).
//
// Invariants, with D the durable image and S the store (the newest image):
//  1. S = D + entries_ applied in order.
//  2. For every page p in preimages_, preimages_[p].data is an arena page
//     holding D[p] (nullptr: D[p] is all zeros); every page not in
//     preimages_ has S[p] == D[p].
//  3. preimages_[p].seq is the seq of the newest entry that changed p, so
//     once every entry up to it is durable, S[p] == D[p] and the pre-image
//     can go.
//  4. A data entry is logged (its bytes are in the log at log_offset) or
//     not; an unlogged entry's bytes are still the store's, because it is
//     the newest entry to have touched each of its pages: a write or discard
//     that touches a page first logs the page's newest writer (from the
//     store) if it is not logged. So of the entries touching a page, all but
//     the newest are logged. A write that no later write touches before it
//     is durable (a random write; the last write to a page before a flush)
//     is never copied.
//  5. Logged entries' data lie in the log in the order they were logged
//     (log_seqs_); bytes below log_freed_to_ belong to entries already
//     durable, and log_chunks_ hold [log_base_, log_base_ + chunks * chunk
//     size) with log_base_ <= log_freed_to_ <= log_end_.
//  6. Every page in free_pages_ and every pre-image's page lies in a chunk of
//     page_chunks_, which the arena has allocated; nothing else of the arena
//     is touched.
//
// The copies are memcpy into the arena (cache_arena.h), and a pre-image (or
// a late log copy) of a page the store is known to hold is a memcpy from a
// read-only view of the store, so a 4 KiB write costs no syscall more than
// cache none once the cache has seen its page (the first touch of a page
// since the cache was engaged is a pread), and a write-back costs none.

#include "ramdiskfs/write_cache.h"

#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/container/inlined_vector.h"
#include "absl/strings/str_cat.h"
#include "ramdiskfs/log.h"
#include "ramdiskfs/size.h"
#include "ramdiskfs/status.h"

namespace ramdiskfs {
namespace {

constexpr uint64_t kSectorSize = 512;
constexpr uint64_t kChunk = CacheArena::kChunkBytes;
constexpr size_t kPagesPerChunk = kChunk / kPageSize;
// The store's view grows in steps of 1 GiB and covers at most 1 TiB (a
// pre-image further out is a pread).
constexpr uint64_t kViewStep = 1ull << 30;
constexpr uint64_t kMaxViewBytes = 1ull << 40;

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
  // The first byte, then memcmp of the buffer against itself shifted by one
  // (libc's vectorised compare instead of a byte loop).
  return n == 0 || (buf[0] == 0 && std::memcmp(buf, buf + 1, n - 1) == 0);
}

absl::Status PowerOff(const std::string& name) {
  return ErrnoStatus(EIO, absl::StrCat("disk ", name, " has no power (write 1 to power)"));
}

}  // namespace

WriteCache::WriteCache(PageStore* store, std::string name)
    : pool_(store->pool()), store_(store), name_(std::move(name)) {}

WriteCache::~WriteCache() {
  if (view_ != nullptr) munmap(const_cast<char*>(view_), view_bytes_);
}

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
  if (!arena_) {
    RDFS_ASSIGN_OR_RETURN(arena_, CacheArena::Create(pool_, name_ + ".cache"));
  }
  return absl::OkStatus();
}

absl::Status WriteCache::SetMode(CacheMode mode) {
  std::lock_guard lock(mu_);
  if (mode != settings_.mode) known_data_.clear();  // nothing tracked the store while off
  if (mode == CacheMode::kVolatile) {
    RDFS_RETURN_IF_ERROR(EnsureFiles());
  } else {
    Clear(/*durable=*/true, /*keep_idle=*/false);
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

absl::StatusOr<char*> WriteCache::TakePage() {
  if (free_pages_.empty()) {
    RDFS_ASSIGN_OR_RETURN(uint32_t chunk, arena_->Take());
    page_chunks_.push_back(chunk);
    char* data = arena_->data(chunk);
    for (size_t i = kPagesPerChunk; i-- > 0;) free_pages_.push_back(data + i * kPageSize);
  }
  char* page = free_pages_.back();
  free_pages_.pop_back();
  return page;
}

absl::Status WriteCache::Capture(uint64_t page, uint64_t seq) {
  const uint64_t offset = page * kPageSize;
  RDFS_ASSIGN_OR_RETURN(char* data, TakePage());
  if (const char* known = ViewOfKnownPage(page)) {
    // A page of the disk, so the view's bytes past its end (if it is the
    // last, partial page) read as zeros.
    std::memcpy(data, known, kPageSize);
  } else {
    // Straight into the arena page: one pread, no copy back out.
    ++preimage_preads_;
    absl::StatusOr<size_t> n = store_->Read(offset, data, kPageSize);
    if (!n.ok()) {
      free_pages_.push_back(data);
      return n.status();
    }
    if (*n < kPageSize) std::memset(data + *n, 0, kPageSize - *n);
  }
  if (AllZero(data, kPageSize)) {
    free_pages_.push_back(data);
    data = nullptr;
  }
  preimages_.emplace(page, Preimage{seq, data});
  return absl::OkStatus();
}

const char* WriteCache::ViewOfKnownPage(uint64_t page) {
  const uint64_t word = page / 64;
  if (word >= known_data_.size() || ((known_data_[word] >> (page % 64)) & 1) == 0) {
    return nullptr;
  }
  const uint64_t end = (page + 1) * kPageSize;
  if (end > view_bytes_) {
    const uint64_t want =
        std::min((std::max(store_->size_bytes(), end) + kViewStep - 1) / kViewStep * kViewStep,
                 kMaxViewBytes);
    if (end > want) return nullptr;
    if (view_ != nullptr) munmap(const_cast<char*>(view_), view_bytes_);
    view_ = nullptr;
    view_bytes_ = 0;
    // Past the file's end the view is only address space: it is read only
    // at pages the store holds.
    void* view = mmap(nullptr, want, PROT_READ, MAP_SHARED | MAP_NORESERVE, store_->fd(), 0);
    if (view == MAP_FAILED) {
      Log("disk ", name_, ": cannot map the store for the write cache (", std::strerror(errno),
          "); pre-images are read with pread");
      known_data_.clear();
      known_data_.shrink_to_fit();
      view_failed_ = true;
      return nullptr;
    }
    view_ = static_cast<const char*>(view);
    view_bytes_ = want;
  }
  return view_ + page * kPageSize;
}

void WriteCache::MarkData(uint64_t first, uint64_t last) {
  if (view_failed_) return;
  if (last / 64 >= known_data_.size()) known_data_.resize(last / 64 + 1, 0);
  for (uint64_t p = first; p <= last; ++p) known_data_[p / 64] |= 1ull << (p % 64);
}

void WriteCache::ForgetData(uint64_t first, uint64_t last) {
  last = std::min<uint64_t>(last, known_data_.size() * 64 - 1);
  if (known_data_.empty() || first > last) return;
  for (uint64_t p = first; p <= last; ++p) known_data_[p / 64] &= ~(1ull << (p % 64));
}

absl::Status WriteCache::CaptureRange(uint64_t first, uint64_t last, uint64_t seq) {
  for (uint64_t p = first; p <= last; ++p) {
    if (preimages_.contains(p)) continue;
    if (absl::Status status = Capture(p, seq); !status.ok()) {
      DropCaptured(captured_);
      arena_->Trim(IdleChunks());
      return status;
    }
    captured_.push_back(p);
  }
  return absl::OkStatus();
}

void WriteCache::DropPreimage(uint64_t page) {
  auto it = preimages_.find(page);
  if (it == preimages_.end()) return;
  if (it->second.data != nullptr) free_pages_.push_back(it->second.data);
  preimages_.erase(it);
}

void WriteCache::DropCaptured(const std::vector<uint64_t>& pages) {
  for (uint64_t page : pages) DropPreimage(page);
}

template <typename Fn>
void WriteCache::ForEachPreimageIn(uint64_t first, uint64_t last, Fn fn) {
  absl::InlinedVector<uint64_t, 16> pages;
  if (last - first < preimages_.size()) {
    for (uint64_t p = first;; ++p) {
      if (preimages_.contains(p)) pages.push_back(p);
      if (p == last) break;
    }
  } else {
    for (const auto& [p, pre] : preimages_) {
      if (p >= first && p <= last) pages.push_back(p);
    }
  }
  for (uint64_t p : pages) fn(p);
}

// ---- the log ------------------------------------------------------------------------

absl::Status WriteCache::AppendLog(uint64_t at, const char* buf, size_t length) {
  const uint64_t end = at + length;
  const size_t had = log_chunks_.size();
  while (log_base_ + log_chunks_.size() * kChunk < end) {
    absl::StatusOr<uint32_t> chunk = arena_->Take();
    if (!chunk.ok()) {
      while (log_chunks_.size() > had) {
        arena_->Give(log_chunks_.back());
        log_chunks_.pop_back();
      }
      return chunk.status();
    }
    log_chunks_.push_back(*chunk);
  }
  for (uint64_t pos = at; pos < end;) {
    const uint64_t rel = pos - log_base_;
    const uint64_t piece = std::min<uint64_t>(kChunk - rel % kChunk, end - pos);
    std::memcpy(arena_->data(log_chunks_[rel / kChunk]) + rel % kChunk, buf + (pos - at), piece);
    pos += piece;
  }
  return absl::OkStatus();
}

absl::Status WriteCache::AppendLogFromStore(uint64_t offset, uint64_t length) {
  // Page by page from the view (the cache wrote these pages, so it knows
  // them), else through a bounce page.
  char bounce[kPageSize];
  absl::Status status;
  for (uint64_t done = 0; done < length && status.ok();) {
    const uint64_t pos = offset + done;
    const uint64_t in_page = pos % kPageSize;
    const size_t piece =
        static_cast<size_t>(std::min<uint64_t>(kPageSize - in_page, length - done));
    const char* src = ViewOfKnownPage(pos / kPageSize);
    if (src != nullptr) {
      src += in_page;
    } else {
      absl::StatusOr<size_t> n = store_->Read(pos, bounce, piece);
      if (!n.ok()) {
        status = n.status();
        break;
      }
      if (*n < piece) std::memset(bounce + *n, 0, piece - *n);
      src = bounce;
    }
    status = AppendLog(log_end_ + done, src, piece);
    done += piece;
  }
  return status;
}

absl::Status WriteCache::LogEntry(Entry& e) {
  const uint64_t start = log_end_;
  if (absl::Status status = AppendLogFromStore(e.offset, e.length); !status.ok()) {
    // What was appended lies past log_end_: nothing refers to it.
    if (StatusToErrno(status) == ENOSPC) {
      return ErrnoStatus(ENOSPC, "no memory left for the write cache's copy");
    }
    return status;
  }
  e.log_offset = start;
  e.logged = true;
  log_end_ = start + e.length;
  log_seqs_.push_back(e.seq);
  return absl::OkStatus();
}

absl::Status WriteCache::LogNewestWritersIn(uint64_t first, uint64_t last) {
  if (entries_.empty() || preimages_.empty()) return absl::OkStatus();
  const uint64_t oldest = entries_.front().seq;
  absl::Status status;
  ForEachPreimageIn(first, last, [&](uint64_t p) {
    const uint64_t seq = preimages_[p].seq;
    if (!status.ok() || seq < oldest || seq - oldest >= entries_.size()) return;
    Entry& e = entries_[seq - oldest];
    if (!e.zero && !e.logged) status = LogEntry(e);
  });
  return status;
}

void WriteCache::ReadLog(uint64_t log_offset, char* dst, uint64_t length) const {
  for (uint64_t done = 0; done < length;) {
    const uint64_t rel = log_offset + done - log_base_;
    const uint64_t piece = std::min<uint64_t>(kChunk - rel % kChunk, length - done);
    std::memcpy(dst + done, arena_->data(log_chunks_[rel / kChunk]) + rel % kChunk, piece);
    done += piece;
  }
}

void WriteCache::RetireLog() {
  // The log is dead up to the oldest logged entry still unflushed.
  while (!log_seqs_.empty() && (entries_.empty() || log_seqs_.front() < entries_.front().seq)) {
    log_seqs_.pop_front();
  }
  log_freed_to_ =
      log_seqs_.empty() ? log_end_ : entries_[log_seqs_.front() - entries_.front().seq].log_offset;
  while (!log_chunks_.empty() && log_base_ + kChunk <= log_freed_to_) {
    arena_->Give(log_chunks_.front());  // reused by the next appends: no punch, no fallocate
    log_chunks_.pop_front();
    log_base_ += kChunk;
  }
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

  // The bytes this write overwrites that the cache still needs go to the
  // log first (if the cap leaves no room for them, nothing changed), then
  // each page's pre-image.
  if (absl::Status status = LogNewestWritersIn(first, last); !status.ok()) {
    arena_->Trim(IdleChunks());
    return status;
  }
  captured_.clear();
  RDFS_RETURN_IF_ERROR(CaptureRange(first, last, seq));
  absl::StatusOr<size_t> n = store_->Write(offset, buf, length);
  if (!n.ok()) {
    DropCaptured(captured_);
    return n.status();
  }
  const uint64_t last_written = (offset + *n - 1) / kPageSize;
  for (uint64_t p = first; p <= last_written; ++p) preimages_[p].seq = seq;
  MarkData(first, last_written);
  entries_.push_back({.seq = seq, .offset = offset, .length = *n});  // unlogged: in the store
  ++next_seq_;
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
  if (absl::Status status = LogNewestWritersIn(offset / kPageSize, (end - 1) / kPageSize);
      !status.ok()) {
    arena_->Trim(IdleChunks());
    return status;
  }
  // Only pages holding data change (zeroing a hole changes nothing), so only
  // they need a pre-image: a discard of a fresh disk (mkfs) captures nothing.
  captured_.clear();
  for (uint64_t pos = offset; pos < end;) {
    absl::StatusOr<uint64_t> data = store_->SeekData(pos);
    if (!data.ok() || *data >= end) break;
    absl::StatusOr<uint64_t> hole = store_->SeekHole(*data);
    const uint64_t data_end = hole.ok() ? std::min<uint64_t>(*hole, end) : end;
    RDFS_RETURN_IF_ERROR(CaptureRange(*data / kPageSize, (data_end - 1) / kPageSize, seq));
    pos = std::max(data_end, *data + 1);
  }
  // A punch frees whole pages (and may split a huge one): none of the range
  // is known to be held any more.
  ForgetData(offset / kPageSize, (end - 1) / kPageSize);
  if (absl::Status status = store_->Discard(offset, length); !status.ok()) {
    DropCaptured(captured_);
    return status;
  }
  ForEachPreimageIn(offset / kPageSize, (end - 1) / kPageSize,
                    [&](uint64_t p) { preimages_[p].seq = seq; });
  entries_.push_back({.seq = seq, .offset = offset, .length = length, .zero = true});
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

absl::Status WriteCache::ClearThen(bool durable, absl::FunctionRef<absl::Status()> store_op) {
  std::lock_guard lock(mu_);
  if (engaged()) {
    if (!powered()) return PowerOff(name_);
    Clear(durable);
  }
  known_data_.clear();  // both free store pages
  return store_op();
}

absl::Status WriteCache::Resize(uint64_t new_size) {
  return ClearThen(/*durable=*/true, [&] { return store_->Resize(new_size); });
}

absl::Status WriteCache::FreeAll() {
  return ClearThen(/*durable=*/false, [&] { return store_->FreeAll(); });
}

// ---- durability -------------------------------------------------------------------

size_t WriteCache::IdleChunks() const {
  constexpr uint64_t kMaxIdle = (8 << 20) / kChunk;
  return static_cast<size_t>(std::clamp<uint64_t>(pool_->max_bytes() / 64 / kChunk, 2, kMaxIdle));
}

void WriteCache::Clear(bool durable, bool keep_idle) {
  if (durable) stats_.writes_made_durable.fetch_add(entries_.size(), std::memory_order_relaxed);
  // Every chunk back to the arena, which frees all but `keep_idle`: the
  // cost is the chunks the cache held, never the disk's size.
  if (arena_) {
    for (uint32_t chunk : page_chunks_) arena_->Give(chunk);
    for (uint32_t chunk : log_chunks_) arena_->Give(chunk);
    arena_->Trim(keep_idle ? IdleChunks() : 0);
  }
  page_chunks_.clear();
  free_pages_.clear();
  log_chunks_.clear();
  log_seqs_.clear();
  entries_.clear();
  preimages_.clear();
  log_base_ = 0;
  log_end_ = 0;
  log_freed_to_ = 0;
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
  const uint64_t end = e.offset + e.length;
  // D += e. Every page e wrote still has a pre-image (invariant 3 keeps it
  // until e is durable). A page no later entry changed is now S[p] == D[p]:
  // its pre-image is dropped without taking e's bytes first. Only a page a
  // later entry changed keeps its pre-image, and takes e's bytes, which are
  // in the log (invariant 4: that later entry logged e).
  absl::Status status;
  ForEachPreimageIn(e.offset / kPageSize, (end - 1) / kPageSize, [&](uint64_t p) {
    Preimage& pre = preimages_[p];
    if (pre.seq <= e.seq) {
      DropPreimage(p);
      return;
    }
    if (!status.ok()) return;
    if (!e.zero && !e.logged) {
      status = absl::InternalError("write-back of an unlogged entry a later one overwrote");
      return;
    }
    const uint64_t page_start = p * kPageSize;
    const uint64_t lo = std::max(e.offset, page_start);
    const uint64_t hi = std::min(end, page_start + kPageSize);
    if (e.zero) {
      if (pre.data == nullptr) return;  // zeros already
      if (hi - lo == kPageSize) {
        free_pages_.push_back(pre.data);
        pre.data = nullptr;
      } else {
        std::memset(pre.data + (lo - page_start), 0, hi - lo);
      }
      return;
    }
    if (pre.data == nullptr) {
      absl::StatusOr<char*> data = TakePage();
      if (!data.ok()) {
        status = data.status();
        return;
      }
      std::memset(*data, 0, kPageSize);
      pre.data = *data;
    }
    ReadLog(e.log_offset + (lo - e.offset), pre.data + (lo - page_start), hi - lo);
  });
  RDFS_RETURN_IF_ERROR(status);
  if (!e.zero) unflushed_bytes_ -= e.length;
  entries_.pop_front();
  RetireLog();
  stats_.writes_made_durable.fetch_add(1, std::memory_order_relaxed);
  return absl::OkStatus();
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
  changed_by_io_.store(true, std::memory_order_release);
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

absl::Status WriteCache::Restore(const CacheSettings& settings, bool powered, uint64_t cut_at_flush,
                                 std::vector<PowercutRecord> last_cut) {
  std::lock_guard lock(mu_);
  if (settings.mode == CacheMode::kVolatile) RDFS_RETURN_IF_ERROR(EnsureFiles());
  settings_ = settings;
  cut_at_flush_ = powered ? cut_at_flush : 0;
  last_cut_ = std::move(last_cut);
  known_data_.clear();
  SetStateBit(kVolatile, settings.mode == CacheMode::kVolatile);
  SetStateBit(kArmed, cut_at_flush_ != 0);
  SetStateBit(kOff, !powered);
  return absl::OkStatus();
}

absl::Status WriteCache::Cut() {
  absl::Status first_error;
  auto note = [&first_error](absl::Status status) {
    if (!status.ok() && first_error.ok()) first_error = std::move(status);
  };
  last_cut_.clear();
  known_data_.clear();  // the rebuild writes and punches pages
  if (entries_.empty() && preimages_.empty()) return absl::OkStatus();

  // 1. The policy's survivors: the bytes of each entry that are kept, as
  // pieces in arrival order. The draws are made in this exact order
  // (docs/crashtest.md), so a seed replays exactly.
  struct Piece {
    size_t entry;    // index in entries_
    uint64_t start;  // offset in the disk
    uint64_t end;
  };
  std::vector<Piece> pieces;
  Draws draws(settings_.seed);
  const PowercutPolicy policy = settings_.policy;
  const uint64_t count = entries_.size();
  const uint64_t prefix = policy == PowercutPolicy::kPrefix ? draws.Next() % (count + 1) : 0;
  last_cut_.reserve(count);
  for (uint64_t i = 0; i < count; ++i) {
    const Entry& e = entries_[i];
    const uint64_t end = e.offset + e.length;
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
        // sectors are one piece.
        uint64_t kept = 0, sectors = 0;
        uint64_t run_start = 0, run_end = 0;
        for (uint64_t s = e.offset / kSectorSize * kSectorSize; s < end; s += kSectorSize) {
          const uint64_t lo = std::max(s, e.offset);
          const uint64_t hi = std::min(s + kSectorSize, end);
          ++sectors;
          if (draws.Coin()) {
            ++kept;
            if (run_end == 0) run_start = lo;
            run_end = hi;
          } else if (run_end != 0) {
            pieces.push_back({i, run_start, run_end});
            run_end = 0;
          }
        }
        if (run_end != 0) pieces.push_back({i, run_start, run_end});
        fate =
            kept == sectors ? WriteFate::kKept : (kept == 0 ? WriteFate::kLost : WriteFate::kTorn);
        break;
      }
    }
    if (fate == WriteFate::kKept && policy != PowercutPolicy::kTorn) {
      pieces.push_back({i, e.offset, end});
    }
    last_cut_.push_back({i, e.offset, e.length, fate});
  }

  // 2. The post-cut image, page by page: every page an unflushed entry
  // touched has a pre-image (D[p]); its post-cut bytes are D[p] with the
  // kept pieces over it applied in arrival order, built in the pre-image's
  // own arena page and written once. A logged entry's bytes come from the
  // log; an unlogged one's are still the store's page (invariant 4), read
  // before the page is written. Each pre-image page is freed as soon as its
  // page is written, so the rebuild needs at most a page more than the cache
  // held (the arena frees those chunks, rather than keeping them, at the end).
  absl::flat_hash_map<uint64_t, absl::InlinedVector<uint32_t, 2>> pieces_of;
  for (uint32_t k = 0; k < pieces.size(); ++k) {
    for (uint64_t p = pieces[k].start / kPageSize; p <= (pieces[k].end - 1) / kPageSize; ++p) {
      pieces_of[p].push_back(k);
    }
  }
  const uint64_t size = store_->size_bytes();
  std::vector<char> zeros(kPageSize), newest(kPageSize);
  for (const auto& [p, pre] : preimages_) {
    const uint64_t offset = p * kPageSize;
    if (offset >= size) continue;
    const size_t n = static_cast<size_t>(std::min<uint64_t>(kPageSize, size - offset));
    char* page = pre.data;
    if (page == nullptr) {
      std::fill(zeros.begin(), zeros.end(), 0);
      page = zeros.data();
    }
    bool have_newest = false;
    if (auto it = pieces_of.find(p); it != pieces_of.end()) {
      for (uint32_t k : it->second) {
        const Piece& piece = pieces[k];
        const Entry& e = entries_[piece.entry];
        const uint64_t lo = std::max(piece.start, offset);
        const uint64_t hi = std::min(piece.end, offset + kPageSize);
        if (e.zero) {
          std::memset(page + (lo - offset), 0, hi - lo);
        } else if (e.logged) {
          ReadLog(e.log_offset + (lo - e.offset), page + (lo - offset), hi - lo);
        } else {
          if (!have_newest) {
            absl::StatusOr<size_t> got = store_->Read(offset, newest.data(), n);
            note(got.status());
            if (!got.ok()) break;
            have_newest = true;
          }
          std::memcpy(page + (lo - offset), newest.data() + (lo - offset), hi - lo);
        }
      }
    }
    if (AllZero(page, n)) {
      note(store_->Discard(offset, n));
    } else {
      absl::StatusOr<size_t> w = store_->Write(offset, page, n);
      note(w.ok() ? (*w == n ? absl::OkStatus() : ErrnoStatus(ENOSPC, "short restore"))
                  : w.status());
    }
    if (pre.data != nullptr) arena_->DiscardPage(pre.data);
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

uint64_t WriteCache::preimage_preads() const {
  std::lock_guard lock(mu_);
  return preimage_preads_;
}

uint64_t WriteCache::allocated_bytes() const {
  std::lock_guard lock(mu_);
  return arena_ ? arena_->allocated_bytes() : 0;
}

absl::StatusOr<std::string> WriteCache::ReadDurable(uint64_t offset, size_t length) const {
  std::lock_guard lock(mu_);
  std::string out(length, '\0');
  RDFS_ASSIGN_OR_RETURN(size_t n, store_->Read(offset, out.data(), length));
  out.resize(n);
  if (n == 0 || preimages_.empty()) return out;
  for (uint64_t p = offset / kPageSize; p <= (offset + n - 1) / kPageSize; ++p) {
    auto it = preimages_.find(p);
    if (it == preimages_.end()) continue;
    const uint64_t lo = std::max(offset, p * kPageSize);
    const uint64_t hi = std::min(offset + n, (p + 1) * kPageSize);
    if (it->second.data == nullptr) {
      std::memset(out.data() + (lo - offset), 0, hi - lo);
    } else {
      std::memcpy(out.data() + (lo - offset), it->second.data + (lo - p * kPageSize), hi - lo);
    }
  }
  return out;
}

}  // namespace ramdiskfs
