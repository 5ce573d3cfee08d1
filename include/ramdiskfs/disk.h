// A disk: one named, fixed-size RAM disk — its store, data mode, read-only
// flag, file attributes, open count and I/O counters — and the rules that
// hold whatever path a request comes by (mode, read-only, size, in-use).
//
// Ownership: a Disk is owned by shared_ptr. The DiskTable holds one
// reference while the disk exists; every request that uses a disk holds
// another for its duration, and every open file holds one until release. So
// a disk deleted while a request runs stays valid until that request ends.
//
// Thread-safe: counters are atomics; attributes and the backing id are
// guarded by mu_; the store is safe by itself (see page_store.h).

#ifndef RAMDISKFS_DISK_H_
#define RAMDISKFS_DISK_H_

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "ramdiskfs/faults.h"
#include "ramdiskfs/page_store.h"
#include "ramdiskfs/types.h"
#include "ramdiskfs/write_cache.h"

namespace ramdiskfs {

struct DiskStats {
  std::atomic<uint64_t> reads{0};
  std::atomic<uint64_t> writes{0};
  std::atomic<uint64_t> read_bytes{0};
  std::atomic<uint64_t> write_bytes{0};
  std::atomic<uint64_t> discards{0};
  std::atomic<uint64_t> discard_bytes{0};
  std::atomic<uint64_t> flushes{0};
  // dax: bytes written past the end through passthrough and cut off (the
  // span from the end of the disk to the furthest byte written).
  std::atomic<uint64_t> overflow_bytes{0};
};

// File attributes a user can change (chmod/chown) plus times.
struct DiskAttributes {
  mode_t permissions = 0600;
  uid_t uid = 0;
  gid_t gid = 0;
  absl::Time mtime;
  absl::Time ctime;
};

// What a user set on a disk through its fault and cache control files (or
// --disk/`new` keys) and what must outlive the worker process that serves
// it (survive_state.h): the settings, and the run-time state that a user
// sees in those files (power, the armed cut, the last cut's log). Counters
// and the cache's unflushed entries are not part of it (docs/survive.md).
struct DiskSettings {
  FaultSettings faults;
  int64_t flakey_epoch_ns = 0;  // CLOCK_MONOTONIC; meaningful while flakey is on
  CacheSettings cache;
  bool power_on = true;
  uint64_t cut_at_flush = 0;
  std::vector<PowercutRecord> last_cut;
  bool operator==(const DiskSettings&) const = default;
};

// fallocate(2) modes the kernel forwards to FUSE (linux/falloc.h).
inline constexpr int kFallocKeepSize = 0x01;
inline constexpr int kFallocPunchHole = 0x02;
inline constexpr int kFallocZeroRange = 0x10;

class Disk {
 public:
  // `growing`: a disk made through the tree (create/mknod), which grows with
  // what is written to it until its last open closes.
  Disk(uint64_t id, std::string name, std::unique_ptr<PageStore> store, DataMode mode,
       bool readonly, DiskAttributes attributes, bool growing = false);
  Disk(const Disk&) = delete;
  Disk& operator=(const Disk&) = delete;

  uint64_t id() const { return id_; }
  const std::string& name() const { return name_; }
  PageStore& store() { return *store_; }
  const PageStore& store() const { return *store_; }
  uint64_t size_bytes() const { return store_->size_bytes(); }

  // The mode asked for (command line, `new`, or the `mode` file).
  DataMode requested_mode() const { return requested_mode_.load(); }
  // The mode in force: dax falls back to direct while passthrough is
  // unavailable (set_dax_fallback).
  DataMode mode() const;
  // Why dax is not in force, or "none".
  std::string fallback_reason() const;
  // Called once the FUSE connection knows whether passthrough works.
  // `reason` empty means dax is available.
  void set_dax_fallback(std::string reason);

  bool readonly() const { return readonly_.load(); }

  // --- opens and the disk's life ---------------------------------------------
  // Open, MarkDeleted, SetMode and SetReadonly take mu_, so each sees the
  // others' effects whole: an open cannot slip in between a delete's "not
  // open" check and the disk leaving the table (which would let it register
  // a backing id for a disk already gone and leak its memory).
  //
  // Records an open. Errors: ENOENT once the disk is deleted; EROFS if
  // `for_write` and the disk is read-only.
  absl::Status Open(bool for_write);
  // Records that an open made by Open() can write without the daemon: a dax
  // passthrough open for writing, or a passthrough open that can map the
  // disk shared and writable. Read-only is refused while one exists (the
  // kernel would keep writing). Errors: EROFS if the disk became read-only
  // since Open() (the caller then releases the open).
  absl::Status AddBypassWriter();
  // Ends an open. The last release of a growing disk fixes its size
  // (rounded up to 4096).
  void Release(bool for_write, bool bypass_writer = false);
  // A restarted worker: counts an open the kernel still holds from the
  // worker before (survive_state.h), without the checks Open() makes.
  void AdoptOpen(bool for_write, bool bypass_writer);
  int opens() const { return opens_.load(); }
  int write_opens() const { return write_opens_.load(); }
  int bypass_writers() const { return bypass_writers_.load(); }
  // Removes the disk from use: every later Open() fails with ENOENT.
  // Errors: EBUSY while it is open.
  absl::Status MarkDeleted();
  bool deleted() const;

  // --- growth (a disk made through the tree) -----------------------------------
  // True until the last open of a disk made through the tree closes; while
  // true, writes and fallocate past the end extend it (under the cap).
  bool growing() const { return growing_.load(); }
  // dax: passthrough writes reach the backing file without the daemon. A
  // growing disk takes the backing file's size; a fixed one cuts what was
  // written past its end, counts it (stats overflow_bytes, overflow_events)
  // and logs it once. Returns true if the disk's size changed. Other modes:
  // nothing, false.
  bool SyncBackingFile();
  // Incidents of bytes cut by SyncBackingFile so far. An open that saw a
  // smaller number when it last reported learns of a loss (its fsync and
  // close return ENOSPC), as writeback errors reach every writer.
  uint64_t overflow_events() const { return overflow_events_.load(); }
  // At a close (FLUSH) of an open of the disk: a growing disk's size is
  // rounded up to 4096 (what it will be when fixed). Returns true if the
  // size changed.
  bool OnClose();

  // --- the per-disk I/O path ---------------------------------------------------
  // Every data request the daemon serves passes through exactly one of
  // Read, PrepareSplicedRead, Write, Fallocate and Sync — the FUSE handlers
  // (src/fuse/ops.cc) call nothing else for data, and nothing else touches
  // store() on behalf of a request. This is the seam where a per-disk layer
  // (fault injection, a volatile write cache) sits: such a layer must keep
  // the contracts below. What does NOT come here: dax-mode read/write and
  // every shared-mmap access, which the kernel serves from the backing file
  // (docs/design.md, "Data modes"); control-plane operations (flush,
  // discard, resize), which ControlPlane applies through the methods below.
  //
  // Fault injection (faults.h, docs/faults.md) sits here. The I/O path
  // checks faults().active() once per read or write — with no fault set
  // that one relaxed load and branch is all a request pays — and when it is
  // set calls FaultyRead/FaultyWrite instead of Read/Write.
  // PrepareSplicedRead returns 0 while it is set, so reads take Read's path.
  // Fallocate (PUNCH_HOLE/ZERO_RANGE: the "discard" op) and Sync (the
  // "flush" op) check it themselves. The Faulty* methods ask faults() for a
  // decision and fail, cut short, drop or corrupt the request as decided;
  // `reply_at_ns` receives the time (MonotonicNowNs) before which the reply
  // must not be sent, or 0: the caller then sends it through a TimerQueue,
  // so a FaultyRead buffer must outlive the call.
  //
  // Read: null mode returns zeros without touching memory. Counts stats.
  absl::StatusOr<size_t> Read(uint64_t offset, char* buf, size_t length);
  // Read with faults: an injected error fails it with that errno; with
  // badblocks_partial a read crossing a bad sector returns the bytes before
  // it (a short read; the next read, at the bad sector, fails), except in
  // cached mode, where the kernel would take a short read for the end of
  // the file: there it fails.
  absl::StatusOr<size_t> FaultyRead(uint64_t offset, char* buf, size_t length,
                                    int64_t* reply_at_ns);
  // A read the transport wants to serve by splicing the backing file's
  // pages (store().fd()) straight into the reply. Returns how many bytes at
  // `offset` it may splice — `length` clipped at the end of the disk — and
  // counts them as one read; 0 means "do not splice: serve it with Read()"
  // (past the end, null mode, or a layer here that must see the data: fault
  // injection, while a fault is set).
  absl::StatusOr<size_t> PrepareSplicedRead(uint64_t offset, size_t length);
  // Write: EROFS if read-only; ENOSPC at or past the end; cut short at the
  // end (a growing disk grows instead; EFBIG past kMaxDiskBytes); null mode
  // drops the data. Counts stats. `fua`: an O_DSYNC/O_SYNC write, a flush
  // point of the write cache.
  absl::StatusOr<size_t> Write(uint64_t offset, const char* buf, size_t length, bool fua = false);
  // Write with faults: an injected error fails the whole write (with
  // badblocks_partial, after the bytes before the bad sector are stored, as
  // null_blk does: a short write would let a loop device report the rest as
  // written); drop_writes returns the length and stores nothing (nor
  // flushes, for a `fua` write: the drive lies); corrupt_writes stores a
  // copy with one byte complemented.
  absl::StatusOr<size_t> FaultyWrite(uint64_t offset, const char* buf, size_t length, bool fua,
                                     int64_t* reply_at_ns);
  // fallocate(mode, offset, length) as a block device treats it: PUNCH_HOLE
  // (needs KEEP_SIZE) and ZERO_RANGE free the range's pages and zero partial
  // ones; mode 0 / KEEP_SIZE allocate. A range past the end is cut when
  // KEEP_SIZE is set and EINVAL otherwise; an offset at or past the end is
  // EINVAL. A growing disk grows for mode 0 and takes ranges past its end
  // with KEEP_SIZE as nothing to do (as a file would). Errors: EROFS,
  // EOPNOTSUPP for other modes, ENOSPC from the cap. PUNCH_HOLE and
  // ZERO_RANGE are fault injection's "discard" op (`reply_at_ns` as above).
  absl::Status Fallocate(int falloc_mode, uint64_t offset, uint64_t length,
                         int64_t* reply_at_ns = nullptr);
  // fsync/fdatasync of an open disk file (FUSE_FSYNC): a flush of the
  // disk's write cache (SPEC 11), which makes its unflushed writes durable;
  // EIO with the power off. Without a cache: succeeds at once (RAM). Fault
  // injection's "flush" op may fail it (then nothing is flushed) or delay
  // it (`reply_at_ns` as above).
  absl::Status Sync(int64_t* reply_at_ns = nullptr);
  // How many of `length` bytes at `offset` lie inside the disk.
  size_t ReadableBytes(uint64_t offset, size_t length) const;

  // --- control operations (ControlPlane decides when they may run) ---------
  // Frees [offset, offset+length): EROFS, EINVAL past the end or overflow.
  absl::Status Discard(uint64_t offset, uint64_t length);
  // BLKFLSBUF: frees every page. `other_opens`: opens of the disk that are not
  // the caller's. Errors: EBUSY if other_opens > 0; EROFS if read-only.
  absl::Status Flush(int other_opens);
  // ftruncate: `new_size` is rounded up to 512. Growing is always allowed;
  // shrinking needs other_opens == 0 (EBUSY). Errors: EROFS, EINVAL/EFBIG
  // above kMaxDiskBytes.
  absl::Status Resize(uint64_t new_size, int other_opens);
  // Switches the requested mode. Errors: EBUSY while open; EINVAL for dax
  // while a fault is set (dax I/O never reaches the daemon).
  absl::Status SetMode(DataMode mode);

  // --- fault injection ------------------------------------------------------------
  FaultInjector& faults() { return faults_; }
  const FaultInjector& faults() const { return faults_; }
  // A write to the fault control file `file`. Errors: EINVAL on a disk in
  // dax mode (the message names direct and cached, the modes to use); then
  // those of FaultInjector::Write. Nothing changes on error.
  absl::Status WriteFaultFile(FaultFile file, std::string_view text);
  // The --disk fault keys at start. Errors: EINVAL in dax mode, as above.
  absl::Status ConfigureFaults(const FaultSettings& settings);
  // Errors: EBUSY when making a disk read-only while an open can write
  // without the daemon (AddBypassWriter: the kernel would keep writing past
  // the flag, through passthrough or a shared writable mapping, even one
  // whose fd is closed: the kernel releases the file only after munmap).
  absl::Status SetReadonly(bool readonly);

  // --- attributes -------------------------------------------------------------
  DiskAttributes attributes() const;
  void SetPermissions(mode_t permissions);
  void SetOwner(uid_t uid, gid_t gid);
  void Touch();  // mtime = ctime = now (resize, `touch`; served writes do not)
  void SetTimes(absl::Time mtime);

  // --- passthrough backing id (FUSE adapter bookkeeping, src/fuse/passthrough.h)
  int backing_id() const;
  void set_backing_id(int id);
  // Whether opens in the current mode use passthrough (dax; direct for mmap).
  bool passthrough() const;

  // --- volatile write cache and power (SPEC 11; write_cache.h) ---------------
  // The I/O path above goes through the cache while it is engaged.
  WriteCache& cache() { return cache_; }
  const WriteCache& cache() const { return cache_; }
  // `cache` and `power` are refused with EINVAL unless the mode asked for is
  // direct or cached (the daemon sees no dax I/O, and null keeps no data);
  // changing `cache` is refused with EBUSY while the disk is open (an open's
  // passthrough mapping is decided at open: see docs/crashtest.md).
  absl::Status SetCacheMode(CacheMode mode);
  absl::Status SetPower(bool on);
  // Start-up and `new`: SetCacheMode, then the other settings.
  absl::Status ApplyCacheSettings(const CacheSettings& settings);
  // Why the cache cannot be used in `mode`, or OK.
  static absl::Status CacheAllowedIn(DataMode mode, std::string_view disk_name);

  // --- a restarted worker (survive_state.h) ----------------------------------
  DiskSettings CaptureSettings() const;
  // Puts `settings` back on a disk just adopted (no opens yet), without the
  // checks the control files make (they held when the settings were made)
  // and without counting a power cut. Errors: those of WriteCache::Restore.
  absl::Status RestoreSettings(const DiskSettings& settings);
  // True once after a request changed what CaptureSettings returns (a bad
  // range healed by badblocks_once, a flush counting down or firing an
  // armed cut); clears it. The adapter then publishes the state.
  bool TakeSettingsChanged() {
    const bool faults = faults_.TakeChangedByIo();
    return cache_.TakeChangedByIo() || faults;
  }

  DiskStats& stats() { return stats_; }
  const DiskStats& stats() const { return stats_; }
  // "key value" rows for the stats file, in the documented order
  // (docs/control.md). StatsKeys() is that order: the one list of the keys.
  std::vector<std::pair<std::string, std::string>> StatsRows() const;
  static std::vector<std::string_view> StatsKeys();

 private:
  absl::Status ReadOnlyError() const;
  absl::Status DaxFaultError() const;
  void CountRead(size_t bytes);
  // A growing disk: extends the size to cover [offset, offset+length).
  absl::Status GrowFor(uint64_t offset, uint64_t length);
  // Rounds a growing (or just fixed) disk's size up to 4096.
  bool RoundUpGrowth();

  const uint64_t id_;
  const std::string name_;
  const std::unique_ptr<PageStore> store_;
  std::atomic<DataMode> requested_mode_;
  std::atomic<bool> readonly_;
  std::atomic<int> opens_{0};
  std::atomic<int> write_opens_{0};
  std::atomic<int> bypass_writers_{0};
  std::atomic<bool> growing_;
  std::atomic<uint64_t> overflow_events_{0};
  DiskStats stats_;
  WriteCache cache_;  // after store_: it uses the store
  FaultInjector faults_;

  mutable std::mutex mu_;
  DiskAttributes attributes_ ABSL_GUARDED_BY(mu_);
  std::string dax_fallback_ ABSL_GUARDED_BY(mu_);  // empty: dax available
  int backing_id_ ABSL_GUARDED_BY(mu_) = 0;        // 0: not registered
  bool deleted_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace ramdiskfs

#endif  // RAMDISKFS_DISK_H_
