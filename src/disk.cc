#include "ramdiskfs/disk.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "ramdiskfs/log.h"
#include "ramdiskfs/size.h"
#include "ramdiskfs/status.h"

namespace ramdiskfs {

Disk::Disk(uint64_t id, std::string name, std::unique_ptr<PageStore> store, DataMode mode,
           bool readonly, DiskAttributes attributes, bool growing)
    : id_(id),
      name_(std::move(name)),
      store_(std::move(store)),
      requested_mode_(mode),
      readonly_(readonly),
      growing_(growing),
      cache_(store_.get(), name_),
      attributes_(attributes) {}

DataMode Disk::mode() const {
  DataMode mode = requested_mode();
  if (mode != DataMode::kDax) return mode;
  std::lock_guard lock(mu_);
  return dax_fallback_.empty() ? DataMode::kDax : DataMode::kDirect;
}

std::string Disk::fallback_reason() const {
  if (requested_mode() != DataMode::kDax) return "none";
  std::lock_guard lock(mu_);
  return dax_fallback_.empty() ? "none" : dax_fallback_;
}

void Disk::set_dax_fallback(std::string reason) {
  std::lock_guard lock(mu_);
  dax_fallback_ = std::move(reason);
}

absl::Status Disk::Open(bool for_write) {
  std::lock_guard lock(mu_);
  if (deleted_) return ErrnoStatus(ENOENT, absl::StrCat("disk ", name_, " was deleted"));
  if (for_write && readonly()) {
    return ReadOnlyError();
  }
  opens_.fetch_add(1);
  if (for_write) write_opens_.fetch_add(1);
  return absl::OkStatus();
}

void Disk::AdoptOpen(bool for_write, bool bypass_writer) {
  std::lock_guard lock(mu_);
  opens_.fetch_add(1);
  if (for_write) write_opens_.fetch_add(1);
  if (bypass_writer) bypass_writers_.fetch_add(1);
}

absl::Status Disk::AddBypassWriter() {
  std::lock_guard lock(mu_);
  if (readonly()) return ReadOnlyError();
  bypass_writers_.fetch_add(1);
  return absl::OkStatus();
}

void Disk::Release(bool for_write, bool bypass_writer) {
  bool fix_size = false;
  {
    std::lock_guard lock(mu_);
    if (bypass_writer) bypass_writers_.fetch_sub(1);
    if (for_write) write_opens_.fetch_sub(1);
    if (opens_.fetch_sub(1) == 1 && growing_.load()) {
      growing_.store(false);
      fix_size = true;
    }
  }
  if (fix_size) {
    // The creator is done: take what passthrough wrote, round up to a page,
    // and from now on the size is fixed like any other disk's. (Not
    // SyncBackingFile: growing_ is already false, so it would cut what the
    // creator wrote as an overflow instead of adopting it.)
    if (mode() == DataMode::kDax) (void)store_->AdoptBackingSize();
    RoundUpGrowth();
    Log("disk ", name_, " is complete: ", size_bytes(), " bytes");
  }
}

absl::Status Disk::MarkDeleted() {
  std::lock_guard lock(mu_);
  if (opens_.load() > 0) {
    return ErrnoStatus(EBUSY,
                       absl::StrCat("disk ", name_, " is open (", opens_.load(), " opener(s))"));
  }
  deleted_ = true;
  return absl::OkStatus();
}

bool Disk::deleted() const {
  std::lock_guard lock(mu_);
  return deleted_;
}

absl::Status Disk::GrowFor(uint64_t offset, uint64_t length) {
  if (offset + length < offset || offset + length > kMaxDiskBytes) {
    return ErrnoStatus(EFBIG,
                       absl::StrCat("disk ", name_, " cannot grow past ", kMaxDiskBytes, " bytes"));
  }
  const uint64_t end = offset + length;
  if (end <= size_bytes()) return absl::OkStatus();
  RDFS_ASSIGN_OR_RETURN(uint64_t new_size, RoundUp(end, kLogicalBlockSize));
  return store_->GrowTo(new_size);
}

bool Disk::RoundUpGrowth() {
  const uint64_t size = size_bytes();
  absl::StatusOr<uint64_t> rounded = RoundUp(size, kPageSize);
  if (!rounded.ok() || *rounded == size || *rounded > kMaxDiskBytes) return false;
  return store_->GrowTo(*rounded).ok();
}

bool Disk::SyncBackingFile() {
  if (mode() != DataMode::kDax) return false;
  if (growing()) {
    absl::StatusOr<bool> grew = store_->AdoptBackingSize();
    return grew.ok() && *grew;
  }
  absl::StatusOr<uint64_t> cut = store_->TrimOverflow();
  if (!cut.ok() || *cut == 0) return false;
  stats_.overflow_bytes.fetch_add(*cut, std::memory_order_relaxed);
  overflow_events_.fetch_add(1);
  Log("disk ", name_, ": ", *cut, " bytes written past its end (", size_bytes(),
      ") were dropped; fsync() and close() of the writer report ENOSPC");
  return false;
}

bool Disk::OnClose() {
  if (!growing()) return false;
  const bool synced = SyncBackingFile();
  const bool rounded = RoundUpGrowth();
  return synced || rounded;
}

absl::Status Disk::ReadOnlyError() const {
  return ErrnoStatus(EROFS, absl::StrCat("disk ", name_, " is read-only"));
}

size_t Disk::ReadableBytes(uint64_t offset, size_t length) const {
  const uint64_t size = size_bytes();
  return offset >= size ? 0 : static_cast<size_t>(std::min<uint64_t>(length, size - offset));
}

void Disk::CountRead(size_t bytes) {
  stats_.reads.fetch_add(1, std::memory_order_relaxed);
  stats_.read_bytes.fetch_add(bytes, std::memory_order_relaxed);
}

absl::StatusOr<size_t> Disk::PrepareSplicedRead(uint64_t offset, size_t length) {
  // The cache writes through to the store (pre-images kept aside), so a
  // powered disk's backing pages are what a read must see: splicing stays
  // allowed; only the power check is needed.
  if (cache_.engaged()) RDFS_RETURN_IF_ERROR(cache_.CheckPowered());
  if (mode() == DataMode::kNull) return 0;  // zeros: nothing to splice
  // A fault may fail, cut short or delay this read: FaultyRead must see it.
  if (faults_.active()) [[unlikely]] {
    return 0;
  }
  const size_t n = ReadableBytes(offset, length);
  if (n > 0) CountRead(n);
  return n;
}

absl::StatusOr<size_t> Disk::Read(uint64_t offset, char* buf, size_t length) {
  if (cache_.engaged()) RDFS_RETURN_IF_ERROR(cache_.CheckPowered());
  size_t n;
  if (mode() == DataMode::kNull) {
    n = ReadableBytes(offset, length);
    std::memset(buf, 0, n);
  } else {
    RDFS_ASSIGN_OR_RETURN(n, store_->Read(offset, buf, length));
  }
  CountRead(n);
  return n;
}

absl::StatusOr<size_t> Disk::Write(uint64_t offset, const char* buf, size_t length, bool fua) {
  if (readonly()) return ReadOnlyError();
  if (cache_.engaged()) RDFS_RETURN_IF_ERROR(cache_.CheckPowered());
  uint64_t grew_from = 0, grew_to = 0;
  if (growing() && length > 0) {
    grew_from = size_bytes();
    RDFS_RETURN_IF_ERROR(GrowFor(offset, length));
    grew_to = size_bytes();
  }
  // A growing disk keeps only the size of what was written: a write cut
  // short by the cap must not leave zeros past its data.
  auto undo_growth = [&](size_t written) {
    if (grew_to <= grew_from) return;
    const uint64_t end = std::max<uint64_t>(grew_from, offset + written);
    // end <= grew_to <= kMaxDiskBytes, a multiple of 512: rounding cannot fail.
    store_->ShrinkGrowth(grew_to, *RoundUp(end, kLogicalBlockSize));
  };
  size_t n;
  if (mode() == DataMode::kNull) {
    const uint64_t size = size_bytes();
    if (offset >= size) {
      return ErrnoStatus(ENOSPC, absl::StrCat("write at ", offset, " is past the end"));
    }
    n = static_cast<size_t>(std::min<uint64_t>(length, size - offset));
  } else {
    const bool cached = cache_.engaged();
    absl::StatusOr<size_t> written =
        cached ? cache_.Write(offset, buf, length, fua) : store_->Write(offset, buf, length);
    if (!cached && fua && written.ok()) (void)cache_.Flush();  // counts it; nothing is cached
    if (!written.ok() || *written < length) undo_growth(written.ok() ? *written : 0);
    if (!written.ok()) return written.status();
    n = *written;
  }
  stats_.writes.fetch_add(1, std::memory_order_relaxed);
  stats_.write_bytes.fetch_add(n, std::memory_order_relaxed);
  return n;
}

namespace {

absl::Status InjectedError(const FaultDecision& decision, FaultOp op, uint64_t offset,
                           uint64_t length) {
  return ErrnoStatus(decision.err, absl::StrCat("injected fault: ", std::string(FaultOpName(op)),
                                                " of ", length, " at ", offset));
}

}  // namespace

absl::StatusOr<size_t> Disk::FaultyRead(uint64_t offset, char* buf, size_t length,
                                        int64_t* reply_at_ns) {
  // Only the part inside the disk is a request to the "medium"; a read past
  // the end returns 0 bytes as without faults, but still pays its latency.
  if (cache_.engaged()) RDFS_RETURN_IF_ERROR(cache_.CheckPowered());
  const size_t readable = ReadableBytes(offset, length);
  const FaultDecision d = faults_.Decide({FaultOp::kRead, offset, readable, MonotonicNowNs()});
  if (reply_at_ns != nullptr) *reply_at_ns = d.reply_at_ns;
  if (d.err == 0) return Read(offset, buf, length);
  if (d.done > 0 && mode() != DataMode::kCached) {
    return Read(offset, buf, static_cast<size_t>(d.done));
  }
  return InjectedError(d, FaultOp::kRead, offset, readable);
}

absl::StatusOr<size_t> Disk::FaultyWrite(uint64_t offset, const char* buf, size_t length, bool fua,
                                         int64_t* reply_at_ns) {
  // The disk's own refusals come first and are not faults; nor is a disk
  // whose power is off (every I/O fails with EIO, SPEC 11).
  if (readonly()) return ReadOnlyError();
  if (cache_.engaged()) RDFS_RETURN_IF_ERROR(cache_.CheckPowered());
  size_t n = length;  // a growing disk grows to take all of it (Write)
  if (!growing()) {
    const uint64_t size = size_bytes();
    if (offset >= size) {
      return ErrnoStatus(ENOSPC, absl::StrCat("write at ", offset, " is past the end"));
    }
    n = static_cast<size_t>(std::min<uint64_t>(length, size - offset));
  }
  const FaultDecision d = faults_.Decide({FaultOp::kWrite, offset, n, MonotonicNowNs()});
  if (reply_at_ns != nullptr) *reply_at_ns = d.reply_at_ns;
  if (d.drop) {
    stats_.writes.fetch_add(1, std::memory_order_relaxed);
    stats_.write_bytes.fetch_add(n, std::memory_order_relaxed);
    return n;
  }
  if (d.err != 0) {
    if (d.done > 0) RDFS_RETURN_IF_ERROR(Write(offset, buf, d.done).status());
    return InjectedError(d, FaultOp::kWrite, offset, n);
  }
  if (d.corrupt_at) {
    // One copy per corrupted write; a flakey window is a test, not the
    // fast path, so the allocation is acceptable here (SPEC 6 is about
    // the fault-free path).
    std::unique_ptr<char[]> copy(new char[n]);
    std::memcpy(copy.get(), buf, n);
    copy[*d.corrupt_at] = static_cast<char>(~copy[*d.corrupt_at]);
    return Write(offset, copy.get(), n, fua);
  }
  return Write(offset, buf, n, fua);
}

absl::Status Disk::Sync(int64_t* reply_at_ns) {
  if (faults_.active()) [[unlikely]] {
    // An injected flush error is a flush the drive did not do: the write
    // cache keeps what it holds unflushed.
    const FaultDecision d = faults_.Decide({FaultOp::kFlush, 0, 0, MonotonicNowNs()});
    if (reply_at_ns != nullptr) *reply_at_ns = d.reply_at_ns;
    if (d.err != 0) return InjectedError(d, FaultOp::kFlush, 0, 0);
  }
  return cache_.Flush();
}

absl::Status Disk::DaxFaultError() const {
  return ErrnoStatus(EINVAL, absl::StrCat("disk ", name_,
                                          " is in dax mode: the kernel serves its I/O without "
                                          "the daemon, so no fault can be injected; switch it "
                                          "to direct or cached first (mode file)"));
}

absl::Status Disk::WriteFaultFile(FaultFile file, std::string_view text) {
  // The mode in force: a dax disk that fell back to direct is served by the
  // daemon, so faults work there (test/disk_faults_test.cc).
  if (mode() == DataMode::kDax) return DaxFaultError();
  return faults_.Write(file, text, MonotonicNowNs());
}

absl::Status Disk::ConfigureFaults(const FaultSettings& settings) {
  if (mode() == DataMode::kDax && !(settings == FaultSettings())) return DaxFaultError();
  faults_.Configure(settings, MonotonicNowNs());
  return absl::OkStatus();
}

absl::Status Disk::Fallocate(int falloc_mode, uint64_t offset, uint64_t length,
                             int64_t* reply_at_ns) {
  if (readonly()) return ReadOnlyError();
  const bool keep_size = falloc_mode & kFallocKeepSize;
  const int op = falloc_mode & ~kFallocKeepSize;
  if (op != 0 && op != kFallocPunchHole && op != kFallocZeroRange) {
    return ErrnoStatus(EOPNOTSUPP, absl::StrCat("fallocate mode 0x", absl::Hex(falloc_mode)));
  }
  if (op == kFallocPunchHole && !keep_size) {
    return ErrnoStatus(EOPNOTSUPP, "PUNCH_HOLE needs KEEP_SIZE");
  }
  if (length == 0) return ErrnoStatus(EINVAL, "fallocate length 0");
  if (offset + length < offset) return ErrnoStatus(EINVAL, "offset + length overflows");
  if (growing()) {
    // As a file: mode 0 extends; past the end with KEEP_SIZE is nothing to do
    // (cp --sparse=always punches holes there).
    if (!keep_size) RDFS_RETURN_IF_ERROR(GrowFor(offset, length));
    if (offset >= size_bytes()) return absl::OkStatus();
  }
  const uint64_t size = size_bytes();
  if (offset >= size) return ErrnoStatus(EINVAL, "fallocate at or past the end of the disk");
  if (offset + length > size) {
    if (!keep_size) return ErrnoStatus(EINVAL, "fallocate past the end without KEEP_SIZE");
    length = size - offset;
  }
  if (cache_.engaged()) RDFS_RETURN_IF_ERROR(cache_.CheckPowered());
  if (op != 0 && faults_.active()) [[unlikely]] {
    const FaultDecision d = faults_.Decide({FaultOp::kDiscard, offset, length, MonotonicNowNs()});
    if (reply_at_ns != nullptr) *reply_at_ns = d.reply_at_ns;
    if (d.err != 0) return InjectedError(d, FaultOp::kDiscard, offset, length);
    if (d.drop) return absl::OkStatus();
  }
  if (mode() == DataMode::kNull) return absl::OkStatus();
  if (op == 0) return store_->Allocate(offset, length);  // no data changes
  RDFS_RETURN_IF_ERROR(cache_.engaged() ? cache_.Discard(offset, length)
                                        : store_->Discard(offset, length));
  stats_.discards.fetch_add(1, std::memory_order_relaxed);
  stats_.discard_bytes.fetch_add(length, std::memory_order_relaxed);
  return absl::OkStatus();
}

absl::Status Disk::Discard(uint64_t offset, uint64_t length) {
  if (readonly()) return ReadOnlyError();
  if (offset + length < offset) return ErrnoStatus(EINVAL, "offset + length overflows");
  const uint64_t size = size_bytes();
  if (offset + length > size) {
    return ErrnoStatus(EINVAL, absl::StrCat("range ", offset, "+", length,
                                            " is past the end of the disk (", size, ")"));
  }
  if (length == 0) return absl::OkStatus();
  RDFS_RETURN_IF_ERROR(cache_.engaged() ? cache_.Discard(offset, length)
                                        : store_->Discard(offset, length));
  stats_.discards.fetch_add(1, std::memory_order_relaxed);
  stats_.discard_bytes.fetch_add(length, std::memory_order_relaxed);
  return absl::OkStatus();
}

absl::Status Disk::Flush(int other_opens) {
  if (other_opens > 0) {
    return ErrnoStatus(
        EBUSY, absl::StrCat("disk ", name_, " is open (", other_opens, " other opener(s))"));
  }
  if (readonly()) return ReadOnlyError();
  // brd's meaning, not a cache flush: both images (durable and unflushed)
  // are emptied.
  RDFS_RETURN_IF_ERROR(cache_.FreeAll());
  stats_.flushes.fetch_add(1, std::memory_order_relaxed);
  return absl::OkStatus();
}

absl::Status Disk::Resize(uint64_t new_size, int other_opens) {
  if (readonly()) return ReadOnlyError();
  if (new_size > kMaxDiskBytes) {
    return ErrnoStatus(EFBIG,
                       absl::StrCat("size ", new_size, " is above the limit ", kMaxDiskBytes));
  }
  RDFS_ASSIGN_OR_RETURN(new_size, RoundUp(new_size, kLogicalBlockSize));
  if (new_size < size_bytes() && other_opens > 0) {
    return ErrnoStatus(EBUSY, absl::StrCat("cannot shrink disk ", name_, " while it is open (",
                                           other_opens, " other opener(s))"));
  }
  RDFS_RETURN_IF_ERROR(cache_.Resize(new_size));  // a resize is a flush point
  Touch();
  return absl::OkStatus();
}

absl::Status Disk::SetMode(DataMode mode) {
  std::lock_guard lock(mu_);
  if (mode == DataMode::kDax && faults_.active()) {
    return ErrnoStatus(EINVAL, absl::StrCat("disk ", name_,
                                            " has faults set, which dax mode would bypass; "
                                            "clear them first (docs/faults.md)"));
  }
  if (opens() > 0) {
    return ErrnoStatus(EBUSY, absl::StrCat("disk ", name_, " is open; close it to change mode"));
  }
  if (cache_.engaged()) RDFS_RETURN_IF_ERROR(CacheAllowedIn(mode, name_));
  requested_mode_.store(mode);
  return absl::OkStatus();
}

absl::Status Disk::SetReadonly(bool readonly) {
  std::lock_guard lock(mu_);
  if (readonly && bypass_writers_.load() > 0) {
    return ErrnoStatus(EBUSY,
                       absl::StrCat("disk ", name_, " is open (", bypass_writers_.load(),
                                    ") where the kernel writes without the daemon (dax, or a "
                                    "shared writable mapping); close it (and munmap) first"));
  }
  readonly_.store(readonly);
  return absl::OkStatus();
}

// ---- write cache and power (SPEC 11) ---------------------------------------------

absl::Status Disk::CacheAllowedIn(DataMode mode, std::string_view disk_name) {
  if (mode == DataMode::kDirect || mode == DataMode::kCached) return absl::OkStatus();
  return ErrnoStatus(EINVAL, absl::StrCat("disk ", std::string(disk_name), " is in ",
                                          std::string(DataModeName(mode)),
                                          " mode: a volatile cache and power cuts need mode "
                                          "direct or cached (the daemon must see every I/O)"));
}

absl::Status Disk::SetCacheMode(CacheMode mode) {
  if (mode == cache_.settings().mode) return absl::OkStatus();
  // The mode asked for, not the one in force: a dax disk serves as direct
  // only until the connection is up, then passthrough bypasses the daemon.
  if (mode == CacheMode::kVolatile) {
    RDFS_RETURN_IF_ERROR(CacheAllowedIn(requested_mode(), name_));
  }
  if (opens() > 0) {
    return ErrnoStatus(EBUSY,
                       absl::StrCat("disk ", name_, " is open; close it to change its cache"));
  }
  return cache_.SetMode(mode);
}

absl::Status Disk::SetPower(bool on) {
  if (!on) RDFS_RETURN_IF_ERROR(CacheAllowedIn(requested_mode(), name_));
  return cache_.SetPower(on);
}

absl::Status Disk::ApplyCacheSettings(const CacheSettings& settings) {
  RDFS_RETURN_IF_ERROR(SetCacheMode(settings.mode));
  RDFS_RETURN_IF_ERROR(cache_.SetCacheSize(settings.cache_size_bytes));
  cache_.SetPolicy(settings.policy);
  cache_.SetSeed(settings.seed);
  return absl::OkStatus();
}

DiskSettings Disk::CaptureSettings() const {
  DiskSettings s;
  s.faults = faults_.settings();
  s.flakey_epoch_ns = s.faults.flakey.on() ? faults_.flakey_epoch_ns() : 0;
  s.cache = cache_.settings();
  s.power_on = cache_.powered();
  s.cut_at_flush = cache_.cut_at_flush();
  s.last_cut = cache_.last_cut();
  return s;
}

absl::Status Disk::RestoreSettings(const DiskSettings& settings) {
  faults_.Restore(settings.faults,
                  settings.faults.flakey.on() ? settings.flakey_epoch_ns : MonotonicNowNs());
  return cache_.Restore(settings.cache, settings.power_on, settings.cut_at_flush,
                        settings.last_cut);
}

DiskAttributes Disk::attributes() const {
  std::lock_guard lock(mu_);
  return attributes_;
}

void Disk::SetPermissions(mode_t permissions) {
  std::lock_guard lock(mu_);
  attributes_.permissions = permissions & 07777;
  attributes_.ctime = absl::Now();
}

void Disk::SetOwner(uid_t uid, gid_t gid) {
  std::lock_guard lock(mu_);
  if (uid != static_cast<uid_t>(-1)) attributes_.uid = uid;
  if (gid != static_cast<gid_t>(-1)) attributes_.gid = gid;
  attributes_.ctime = absl::Now();
}

void Disk::Touch() {
  absl::Time now = absl::Now();
  std::lock_guard lock(mu_);
  attributes_.mtime = now;
  attributes_.ctime = now;
}

void Disk::SetTimes(absl::Time mtime) {
  std::lock_guard lock(mu_);
  attributes_.mtime = mtime;
  attributes_.ctime = absl::Now();
}

int Disk::backing_id() const {
  std::lock_guard lock(mu_);
  return backing_id_;
}

void Disk::set_backing_id(int id) {
  std::lock_guard lock(mu_);
  backing_id_ = id;
}

bool Disk::passthrough() const {
  const DataMode m = mode();
  return (m == DataMode::kDax || m == DataMode::kDirect) && backing_id() > 0;
}

namespace {

std::string Num(uint64_t v) { return std::to_string(v); }

// The per-disk stats file (docs/control.md), in its order: the one list of
// its keys. Disk::StatsKeys() hands the keys out; StatsRows() renders them.
struct DiskStat {
  std::string_view key;
  std::string (*value)(const Disk& disk);
};
const DiskStat kDiskStats[] = {
    {"name", [](const Disk& d) { return d.name(); }},
    {"size", [](const Disk& d) { return Num(d.size_bytes()); }},
    {"allocated_bytes", [](const Disk& d) { return Num(d.store().allocated_bytes()); }},
    {"allocated_pages", [](const Disk& d) { return Num(d.store().allocated_bytes() / kPageSize); }},
    {"mode", [](const Disk& d) { return std::string(DataModeName(d.mode())); }},
    {"requested_mode", [](const Disk& d) { return std::string(DataModeName(d.requested_mode())); }},
    {"readonly", [](const Disk& d) { return std::string(d.readonly() ? "1" : "0"); }},
    {"opens", [](const Disk& d) { return Num(d.opens()); }},
    {"reads", [](const Disk& d) { return Num(d.stats().reads.load()); }},
    {"writes", [](const Disk& d) { return Num(d.stats().writes.load()); }},
    {"read_bytes", [](const Disk& d) { return Num(d.stats().read_bytes.load()); }},
    {"write_bytes", [](const Disk& d) { return Num(d.stats().write_bytes.load()); }},
    {"discards", [](const Disk& d) { return Num(d.stats().discards.load()); }},
    {"discard_bytes", [](const Disk& d) { return Num(d.stats().discard_bytes.load()); }},
    {"flushes", [](const Disk& d) { return Num(d.stats().flushes.load()); }},
    {"fallback", [](const Disk& d) { return d.fallback_reason(); }},
    {"passthrough", [](const Disk& d) { return std::string(d.passthrough() ? "1" : "0"); }},
    {"overflow_bytes", [](const Disk& d) { return Num(d.stats().overflow_bytes.load()); }},
    {"growing", [](const Disk& d) { return std::string(d.growing() ? "1" : "0"); }},
    // volatile write cache and power (SPEC 11; docs/crashtest.md)
    {"cache", [](const Disk& d) { return std::string(CacheModeName(d.cache().settings().mode)); }},
    {"power", [](const Disk& d) { return std::string(d.cache().powered() ? "1" : "0"); }},
    {"flushes_received",
     [](const Disk& d) { return Num(d.cache().stats().flushes_received.load()); }},
    {"writes_made_durable",
     [](const Disk& d) { return Num(d.cache().stats().writes_made_durable.load()); }},
    {"powercuts", [](const Disk& d) { return Num(d.cache().stats().powercuts.load()); }},
    {"cache_allocated_bytes", [](const Disk& d) { return Num(d.cache().allocated_bytes()); }},
    // Fault injection (faults.h, FaultStats), in the order of SPEC 10.
    {"injected_errors", [](const Disk& d) { return Num(d.faults().stats().injected_errors); }},
    {"injected_error_bytes",
     [](const Disk& d) { return Num(d.faults().stats().injected_error_bytes); }},
    {"delayed_requests", [](const Disk& d) { return Num(d.faults().stats().delayed_requests); }},
    {"delay_us_total", [](const Disk& d) { return Num(d.faults().stats().delay_us_total); }},
    {"throttled_us_total",
     [](const Disk& d) { return Num(d.faults().stats().throttled_us_total); }},
    {"dropped_writes", [](const Disk& d) { return Num(d.faults().stats().dropped_writes); }},
    {"corrupted_writes", [](const Disk& d) { return Num(d.faults().stats().corrupted_writes); }},
};

}  // namespace

std::vector<std::string_view> Disk::StatsKeys() {
  std::vector<std::string_view> keys;
  for (const DiskStat& stat : kDiskStats) keys.push_back(stat.key);
  return keys;
}

std::vector<std::pair<std::string, std::string>> Disk::StatsRows() const {
  std::vector<std::pair<std::string, std::string>> rows;
  rows.reserve(std::size(kDiskStats));
  for (const DiskStat& stat : kDiskStats) rows.emplace_back(stat.key, stat.value(*this));
  return rows;
}

}  // namespace ramdiskfs
