// A disk's volatile write cache and power switch (SPEC 11): what lets a RAM
// disk behave like a drive whose writes are acknowledged before they are
// durable, so that software's idea of "durable" can be tested by cutting the
// power. docs/crashtest.md explains the model; this is its contract.
//
// The model (cow_brd-like, "the store always holds the newest bytes"):
//  - The disk's PageStore always holds the newest data, so reads need nothing
//    from the cache (and the adapter's splice path stays as it is).
//  - The durable image is the store with the pre-images put back: for every
//    page changed since the last durable point, the cache keeps the page as
//    it was then (a copy in a page of the cache's arena; an all-zero
//    pre-image is no page and costs nothing).
//  - The unflushed writes, in arrival order: offset, length and a copy of the
//    data in an append-only log (chunks of the arena). A discard/zero-range
//    is an entry with no data (it writes zeros).
//  - Flush (FUSE_FSYNC, an O_DSYNC/FUA write): everything becomes durable;
//    the cache forgets the pre-images and the log. Cost: proportional to the
//    unflushed entries and pages, never to the disk's size.
//  - cache_size: past it the oldest entries are written back (applied to the
//    pre-images), and a page whose every entry is durable drops its pre-image.
//  - Power cut: the policy picks which unflushed entries survive (all_lost,
//    random, prefix, torn; draws from a PRNG seeded by the seed each cut, so
//    a cut is a pure function of (seed, unflushed entries)); the store is
//    rebuilt to the post-cut image = pre-images put back + kept entries
//    replayed in order; then every I/O fails with EIO until power is back.
//
// Memory: the pre-images and the log live in a CacheArena (cache_arena.h): a
// file of the disk's MemoryPool that the daemon maps, so they count against
// the cap like the disk's own pages while a copy is a memcpy; a write that
// cannot get its pre-image or log copy fails with ENOSPC and changes nothing.
// Arena chunks are reused while the cache is in use (a write-back frees a
// pre-image page for the next write); a durable point frees all but an idle
// reserve (IdleChunks(): 1/64 of the pool's cap, 512 KiB to 8 MiB), and cache
// none frees everything.
//
// Thread safety: every method is safe to call from any thread. engaged() is
// one relaxed atomic load (the cost of the cache on a `cache none`, powered
// disk's I/O path). Everything else takes mu_, a leaf lock held across the
// store I/O of one request: writes to one volatile disk are serialised (the
// shmem inode lock serialises them anyway); reads never take it.

#ifndef RAMDISKFS_WRITE_CACHE_H_
#define RAMDISKFS_WRITE_CACHE_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "ramdiskfs/cache_arena.h"
#include "ramdiskfs/cache_control.h"
#include "ramdiskfs/memory_pool.h"
#include "ramdiskfs/page_store.h"

namespace ramdiskfs {

struct WriteCacheStats {
  std::atomic<uint64_t> flushes_received{0};     // Flush() calls (incl. FUA writes)
  std::atomic<uint64_t> writes_made_durable{0};  // entries made durable by flush/writeback
  std::atomic<uint64_t> powercuts{0};
};

class WriteCache {
 public:
  // The cache of the disk whose store is `store`; its files come from the
  // store's pool. The store must outlive the cache. `name` labels the cache's files. Starts as
  // cache none, powered, all_lost, seed 0; no file is made until the first volatile use.
  WriteCache(PageStore* store, std::string name);
  ~WriteCache();
  WriteCache(const WriteCache&) = delete;
  WriteCache& operator=(const WriteCache&) = delete;

  // True while the cache must see this disk's I/O: cache volatile, power
  // off, or a cut armed at a flush. When false, the disk serves I/O as if there were no cache.
  bool engaged() const { return state_.load(std::memory_order_relaxed) != 0; }
  bool powered() const { return (state_.load(std::memory_order_acquire) & kOff) == 0; }

  // --- settings (control files, --disk keys) ----------------------------------
  CacheSettings settings() const;
  // none -> volatile: makes the cache's files (errors: theirs, e.g. ENOSPC
  // when the pool is out of inodes). volatile -> none: everything unflushed
  // becomes durable first (as hdparm -W0 flushes a drive's cache).
  absl::Status SetMode(CacheMode mode);
  // Lowering it writes back the oldest entries at once.
  absl::Status SetCacheSize(uint64_t bytes);
  void SetPolicy(PowercutPolicy policy);
  void SetSeed(uint64_t seed);

  // --- power ------------------------------------------------------------------
  // on=false: a power cut. The unflushed entries are resolved by the policy,
  // the store is rebuilt to the post-cut image, the cut's log is kept for
  // powercut_log, and every I/O fails with EIO from then on. on=true: power
  // back; the disk reads its post-cut image, which is now durable. Each is a
  // no-op when the power already is in that state. Errors (a cut only): the
  // store's, e.g. ENOSPC if the cap leaves no room to rebuild; the power is
  // off even then.
  absl::Status SetPower(bool on);
  // The records of the last cut (empty before the first).
  std::vector<PowercutRecord> last_cut() const;
  // Arms a cut at the `n`th flush from now (a Flush() or FUA write): that
  // flush does not happen — the power is cut as it arrives and it fails with
  // EIO, like a drive that died before it could flush. So a crash test cuts
  // after exactly n-1 flushes, with no polling race. 0 disarms. A cut by
  // SetPower(false) disarms too.
  void SetCutAtFlush(uint64_t n);
  // Flushes left before the armed cut (0: not armed).
  uint64_t cut_at_flush() const;
  // True once after a flush counted down an armed cut (or fired it): the
  // adapter then publishes the state to its supervisor, so that a restarted
  // worker counts on from here and knows the power is off. Clears the flag.
  bool TakeChangedByIo() {
    return changed_by_io_.load(std::memory_order_relaxed) &&
           changed_by_io_.exchange(false, std::memory_order_acq_rel);
  }

  // --- a restarted worker (survive_state.h, docs/survive.md) -------------------
  // Puts back what a dead worker's cache of this disk had been set to, on a
  // cache that is still none and powered: the settings, the power switch,
  // the armed cut and the last cut's log. Nothing is unflushed afterwards:
  // the entries and pre-images died with the worker's arena, and the store
  // already holds the newest bytes, so every write the dead worker
  // acknowledged is durable now (docs/survive.md says why). Power off does
  // not cut again (the store holds the post-cut image already) and does not
  // count a cut. Errors: those of SetMode(volatile) (nothing changed).
  absl::Status Restore(const CacheSettings& settings, bool powered, uint64_t cut_at_flush,
                       std::vector<PowercutRecord> last_cut);

  // --- the I/O path (call only when engaged(); thread-safe) ----------------
  // EIO while the power is off.
  absl::Status CheckPowered() const;
  // A write of the store's semantics (cut at the end, ENOSPC at/after the
  // end or at the cap, a short count when the cap is hit part-way). In
  // volatile mode it is logged; `fua` (an O_DSYNC/O_SYNC write) makes it and
  // everything before it durable. Errors: EIO with the power off; ENOSPC
  // when the cap leaves no room for the pre-images or the log copy (then
  // nothing changed).
  absl::StatusOr<size_t> Write(uint64_t offset, const char* buf, size_t length, bool fua);
  // Zeroes/frees [offset, offset+length) as PageStore::Discard (the caller
  // has checked the range). In volatile mode it is an unflushed entry.
  absl::Status Discard(uint64_t offset, uint64_t length);
  // FUSE_FSYNC: everything unflushed becomes durable. EIO with power off.
  absl::Status Flush();
  // The store's Resize and FreeAll, done under the cache's lock so that no
  // write of the cache's runs beside them. Engaged, a resize is a flush point
  // (everything becomes durable first) and a FreeAll (BLKFLSBUF) makes the
  // cache forget everything, because it empties the newest and the durable
  // image alike; both fail with EIO with the power off. Errors: the store's.
  absl::Status Resize(uint64_t new_size);
  absl::Status FreeAll();

  // --- inspection --------------------------------------------------------------
  struct Unflushed {
    uint64_t writes = 0;
    uint64_t bytes = 0;  // data bytes not yet durable (a discard entry has none)
  };
  Unflushed unflushed() const;
  // Pages with a pre-image now.
  uint64_t preimage_pages() const;
  // Pre-images read with pread so far (the rest were copied from the view of
  // pages the cache knew the store held), for tests.
  uint64_t preimage_preads() const;
  // RAM held by the cache's arena file (pre-images, log, idle chunks).
  uint64_t allocated_bytes() const;
  const WriteCacheStats& stats() const { return stats_; }

  // The durable image's bytes at [offset, offset+length) (what a cut with
  // all_lost would leave), for tests. Errors: the store's.
  absl::StatusOr<std::string> ReadDurable(uint64_t offset, size_t length) const;

 private:
  static constexpr uint32_t kVolatile = 1;
  static constexpr uint32_t kOff = 2;
  static constexpr uint32_t kArmed = 4;  // a cut is armed at a coming flush

  struct Entry {
    uint64_t seq = 0;
    uint64_t offset = 0;
    uint64_t length = 0;
    uint64_t log_offset = 0;  // where the data is in the log, once logged
    bool zero = false;        // a discard/zero-range: no data, writes zeros
    bool logged = false;      // false: the data is the store's (see write_cache.cc)
  };
  struct Preimage {
    uint64_t seq = 0;      // the newest entry that changed the page
    char* data = nullptr;  // an arena page; nullptr: the pre-image is all zeros
  };
  // Idle arena chunks kept past a durable point: 1/64 of the pool's cap,
  // at least 2 (one for pre-images, one for the log), at most 8 MiB. A flush
  // of less than that frees nothing and the next writes reuse it: freeing
  // mapped pages costs the unmapping too (docs/benchmarks.md).
  size_t IdleChunks() const;

  absl::Status EnsureFiles() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SetStateBit(uint32_t bit, bool on);
  // An arena page for a pre-image (from the free pages, else a new chunk).
  absl::StatusOr<char*> TakePage() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Copies page `page` of the store into an arena page (none if all zeros)
  // and records it with `seq`.
  absl::Status Capture(uint64_t page, uint64_t seq) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The store page `page` through view_ if the store is known to hold it
  // (so reading it through the mapping cannot allocate it, or raise SIGBUS
  // on a tmpfs at its cap); nullptr otherwise (read it with pread).
  const char* ViewOfKnownPage(uint64_t page) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // known_data_: pages [first, last] are allocated in the store / may not be.
  void MarkData(uint64_t first, uint64_t last) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ForgetData(uint64_t first, uint64_t last) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Captures every page in [first, last] without a pre-image, adding it to
  // captured_; on an error drops all of captured_ (nothing changed).
  absl::Status CaptureRange(uint64_t first, uint64_t last, uint64_t seq)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DropCaptured(const std::vector<uint64_t>& pages) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Drops page `page`'s pre-image (its arena page goes back to the free pages).
  void DropPreimage(uint64_t page) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Calls fn(page) for every page in [first, last] that has a pre-image,
  // walking whichever is smaller: the range or the pre-image map.
  template <typename Fn>
  void ForEachPreimageIn(uint64_t first, uint64_t last, Fn fn) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<size_t> WriteVolatile(uint64_t offset, const char* buf, size_t length, bool fua)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status DiscardVolatile(uint64_t offset, uint64_t length) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Copies `length` bytes to log offset `at` (>= log_end_; taking arena
  // chunks as needed). ENOSPC: nothing refers to what was copied.
  absl::Status AppendLog(uint64_t at, const char* buf, size_t length)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The log's bytes at [log_offset, +length) into `dst` / into the store at
  // `offset`.
  void ReadLog(uint64_t log_offset, char* dst, uint64_t length) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Appends the store's bytes at [offset, +length) (the view's where known).
  absl::Status AppendLogFromStore(uint64_t offset, uint64_t length)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Copies the unlogged entry `e`'s bytes from the store into the log.
  // ENOSPC: nothing changed.
  absl::Status LogEntry(Entry& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Logs the newest writer of every page in [first, last] that is not
  // logged: what a write or discard there must do before it changes the
  // store. ENOSPC: the entries logged so far stay logged (still consistent).
  absl::Status LogNewestWritersIn(uint64_t first, uint64_t last) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status WriteBackOldest() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Marks the log dead up to the oldest logged entry still unflushed; its
  // whole chunks before that go back to the arena (kept for reuse).
  void RetireLog() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status EnforceCacheSize() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Resize and FreeAll: under mu_, Clear(durable) if engaged (EIO with the
  // power off), then `store_op`.
  absl::Status ClearThen(bool durable, absl::FunctionRef<absl::Status()> store_op);
  // Forgets every entry and pre-image; `durable` counts them as made durable.
  // The arena keeps IdleChunks() chunks (none unless `keep_idle`).
  void Clear(bool durable, bool keep_idle = true) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status Cut() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Power off and Cut(). Returns the EIO the interrupted request gets.
  absl::Status CutNow() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Counts one arriving flush against the armed cut; true if it fired.
  bool ArmedCutFires() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  MemoryPool* const pool_;
  PageStore* const store_;
  const std::string name_;
  std::atomic<uint32_t> state_{0};  // kVolatile | kOff
  std::atomic<bool> changed_by_io_{false};
  WriteCacheStats stats_;

  mutable std::mutex mu_;
  CacheSettings settings_ ABSL_GUARDED_BY(mu_);
  // Where the pre-images and the log live (made at the first volatile use).
  std::unique_ptr<CacheArena> arena_ ABSL_GUARDED_BY(mu_);
  // page index -> its pre-image.
  absl::flat_hash_map<uint64_t, Preimage> preimages_ ABSL_GUARDED_BY(mu_);
  std::vector<uint32_t> page_chunks_ ABSL_GUARDED_BY(mu_);  // arena chunks cut into pages
  std::vector<char*> free_pages_ ABSL_GUARDED_BY(mu_);      // pages of them not in use
  // The log: log offset o is at byte o - log_base_ of the chunks in order
  // (log_base_ is a multiple of the chunk size).
  std::deque<uint32_t> log_chunks_ ABSL_GUARDED_BY(mu_);
  uint64_t log_base_ ABSL_GUARDED_BY(mu_) = 0;
  std::deque<Entry> entries_ ABSL_GUARDED_BY(mu_);
  std::deque<uint64_t> log_seqs_ ABSL_GUARDED_BY(mu_);  // logged entries, in log order
  uint64_t next_seq_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t log_end_ ABSL_GUARDED_BY(mu_) = 0;       // next append offset
  uint64_t log_freed_to_ ABSL_GUARDED_BY(mu_) = 0;  // log bytes before this are dead
  uint64_t unflushed_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t cut_at_flush_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status last_cut_error_ ABSL_GUARDED_BY(mu_);
  std::vector<PowercutRecord> last_cut_ ABSL_GUARDED_BY(mu_);
  std::vector<uint64_t> captured_ ABSL_GUARDED_BY(mu_);
  // A read-only MAP_SHARED view of the store's first view_bytes_ (made at the
  // first volatile use, grown with the disk), and a bitmap of the pages the
  // store is known to hold: set by the cache's own writes, cleared by its
  // discards and by anything else that may free store pages (a mode change,
  // a cut, a resize, FreeAll). A pre-image of a known page is a memcpy from
  // the view instead of a pread.
  const char* view_ ABSL_GUARDED_BY(mu_) = nullptr;
  uint64_t view_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  bool view_failed_ ABSL_GUARDED_BY(mu_) = false;  // mmap failed: no view, no bitmap
  uint64_t preimage_preads_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<uint64_t> known_data_ ABSL_GUARDED_BY(mu_);
};

}  // namespace ramdiskfs

#endif  // RAMDISKFS_WRITE_CACHE_H_
