#include "ramdiskfs/control_plane.h"

#include <sys/prctl.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "ramdiskfs/cache_control.h"
#include "ramdiskfs/control.h"
#include "ramdiskfs/crash_point.h"
#include "ramdiskfs/log.h"
#include "ramdiskfs/memory_pool.h"
#include "ramdiskfs/status.h"
#include "src/text.h"

namespace ramdiskfs {
std::optional<FaultFile> FaultFileOf(ControlFile file) {
  const size_t first = static_cast<size_t>(ControlFile::kBadblocks);
  const size_t index = static_cast<size_t>(file);
  if (index < first || index - first >= kFaultFileCount) return std::nullopt;
  return AllFaultFiles()[index - first];
}

namespace {

bool IoFlusherSet() {
#ifndef PR_GET_IO_FLUSHER
#define PR_GET_IO_FLUSHER 58
#endif
  return prctl(PR_GET_IO_FLUSHER, 0, 0, 0, 0) == 1;
}

// ".control/NAME" or ".control/DISK/NAME", for log lines.
std::string ControlPath(ControlFile file, const Disk* disk) {
  const absl::string_view name = text::AsAbsl(InfoOf(file).name);
  if (disk != nullptr) return absl::StrCat(".control/", disk->name(), "/", name);
  return absl::StrCat(".control/", name);
}

std::string Num(uint64_t v) { return std::to_string(v); }

// The fault files are one run of the table, in FaultFile order
// (test/control_plane_test.cc checks the names agree).
static_assert(static_cast<size_t>(ControlFile::kFlakey) -
                  static_cast<size_t>(ControlFile::kBadblocks) + 1 ==
              kFaultFileCount);

// The global stats file (docs/control.md), in its order: the one list of
// its keys.
struct GlobalStat {
  std::string_view key;
  std::string (*value)(DiskTable& table, const ConnectionFacts& facts);
};
const GlobalStat kGlobalStats[] = {
    {"memory_used",
     [](DiskTable& t, const ConnectionFacts&) { return Num(t.pool().used_bytes()); }},
    {"max_memory", [](DiskTable& t, const ConnectionFacts&) { return Num(t.pool().max_bytes()); }},
    {"disks", [](DiskTable& t, const ConnectionFacts&) { return Num(t.size()); }},
    {"version", [](DiskTable&, const ConnectionFacts&) { return std::string(RAMDISKFS_VERSION); }},
    {"store", [](DiskTable& t,
                 const ConnectionFacts&) { return std::string(StoreKindName(t.pool().kind())); }},
    {"passthrough",
     [](DiskTable&, const ConnectionFacts& f) { return std::string(f.passthrough ? "1" : "0"); }},
    {"allow_mmap",
     [](DiskTable&, const ConnectionFacts& f) { return std::string(f.allow_mmap ? "1" : "0"); }},
    {"dax_fallback",
     [](DiskTable& t, const ConnectionFacts&) {
       std::string fallback = t.dax_fallback();
       return fallback.empty() ? std::string("none") : fallback;
     }},
    {"io_flusher",
     [](DiskTable&, const ConnectionFacts&) { return std::string(IoFlusherSet() ? "1" : "0"); }},
    {"transport", [](DiskTable&, const ConnectionFacts& f) { return std::string(f.transport); }},
    {"restarts", [](DiskTable&, const ConnectionFacts& f) { return Num(f.restarts); }},
    {"last_stall_ms",
     [](DiskTable&, const ConnectionFacts& f) { return absl::StrCat(f.last_stall_ms); }},
};

}  // namespace

ControlPlane::ControlPlane(DiskTable* table, KernelNotifier* kernel, ControlPlaneOptions options)
    : table_(table), kernel_(kernel), options_(options) {}

absl::Status ControlPlane::Logged(std::string_view what, absl::Status status) {
  if (!status.ok()) Log(what, ": ", strerror(StatusToErrno(status)), ": ", status.message());
  return status;
}

// ---- the in-use rule -------------------------------------------------------------

int ControlPlane::OtherOpens(const Disk& disk, const Caller& caller) {
  return disk.opens() - (caller.holds_open ? 1 : 0);
}

int ControlPlane::SettleOpens(const Disk& disk, const Caller& caller) {
  const absl::Time deadline = absl::Now() + kSettle;
  int others = OtherOpens(disk, caller);
  while (others > 0 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(1));
    others = OtherOpens(disk, caller);
  }
  return others;
}

// ---- control files ---------------------------------------------------------------

std::vector<std::string_view> ControlPlane::GlobalStatsKeys() {
  std::vector<std::string_view> keys;
  for (const GlobalStat& stat : kGlobalStats) keys.push_back(stat.key);
  return keys;
}

std::vector<std::pair<std::string, std::string>> ControlPlane::GlobalStatsRows() const {
  const ConnectionFacts facts = kernel_->Facts();
  std::vector<std::pair<std::string, std::string>> rows;
  for (const GlobalStat& stat : kGlobalStats)
    rows.emplace_back(stat.key, stat.value(*table_, facts));
  return rows;
}

std::string ControlPlane::Content(ControlFile file, const Disk* disk) const {
  switch (file) {
    case ControlFile::kMaxMemory:
      return absl::StrCat(table_->pool().max_bytes(), "\n");
    case ControlFile::kGlobalStats:
      return RenderKeyValues(GlobalStatsRows());
    case ControlFile::kSize:
      return absl::StrCat(disk->size_bytes(), "\n");
    case ControlFile::kReadonly:
      return disk->readonly() ? "1\n" : "0\n";
    case ControlFile::kMode:
      return std::string(DataModeName(disk->mode())) + "\n";
    case ControlFile::kDiskStats:
      return RenderKeyValues(disk->StatsRows());
    case ControlFile::kCache:
      return std::string(CacheModeName(disk->cache().settings().mode)) + "\n";
    case ControlFile::kCacheSize:
      return absl::StrCat(disk->cache().settings().cache_size_bytes, "\n");
    case ControlFile::kUnflushed: {
      const WriteCache::Unflushed u = disk->cache().unflushed();
      return RenderUnflushed(u.writes, u.bytes);
    }
    case ControlFile::kPowercutPolicy:
      return std::string(PowercutPolicyName(disk->cache().settings().policy)) + "\n";
    case ControlFile::kPowercutSeed:
      return absl::StrCat(disk->cache().settings().seed, "\n");
    case ControlFile::kPower:
      return disk->cache().powered() ? "1\n" : "0\n";
    case ControlFile::kPowercutLog:
      return RenderPowercutLog(disk->cache().last_cut());
    case ControlFile::kPowercutAtFlush:
      return absl::StrCat(disk->cache().cut_at_flush(), "\n");
    case ControlFile::kBadblocks:
    case ControlFile::kBadblocksOnce:
    case ControlFile::kBadblocksPartial:
    case ControlFile::kErrors:
    case ControlFile::kFaultSeed:
    case ControlFile::kLatency:
    case ControlFile::kThrottle:
    case ControlFile::kFlakey:
      return disk->faults().Read(*FaultFileOf(file));
    case ControlFile::kNew:
    case ControlFile::kDelete:
    case ControlFile::kFlush:
    case ControlFile::kDiscard:
      break;
  }
  return "";
}

absl::Status ControlPlane::Write(ControlFile file, const std::shared_ptr<Disk>& disk,
                                 uint64_t offset, std::string_view text) {
  const std::string what = absl::StrCat("write to ", ControlPath(file, disk.get()));
  if (offset != 0) {
    return Logged(what, ErrnoStatus(EINVAL, "control files take one write at offset 0"));
  }
  if (text.size() > (FaultFileOf(file) ? kMaxFaultWrite : kMaxControlWrite)) {
    return Logged(what, ErrnoStatus(EINVAL, "control write too long"));
  }
  if (disk && !table_->FindById(disk->id())) {
    return Logged(what, ErrnoStatus(ENOENT, "the disk was deleted"));
  }
  return Logged(what, Apply(file, disk, text));
}

absl::Status ControlPlane::Apply(ControlFile file, const std::shared_ptr<Disk>& disk,
                                 std::string_view text) {
  switch (file) {
    case ControlFile::kNew:
      return NewDisk(text);
    case ControlFile::kDelete: {
      RDFS_ASSIGN_OR_RETURN(std::string name, ParseDeleteCommand(text));
      return DeleteDisk(name, /*by_unlink=*/false);
    }
    case ControlFile::kMaxMemory:
      return SetMaxMemory(text);
    case ControlFile::kSize: {
      RDFS_ASSIGN_OR_RETURN(uint64_t bytes, ParseDiskSizeValue(text));
      return Resize(*disk, bytes, Caller{});
    }
    case ControlFile::kFlush:
      RDFS_RETURN_IF_ERROR(ParseFlushCommand(text));
      return Flush(*disk, Caller{});
    case ControlFile::kDiscard:
      return Discard(*disk, text);
    case ControlFile::kReadonly:
      return SetReadonly(*disk, text);
    case ControlFile::kMode:
      return SetMode(*disk, text);
    case ControlFile::kCache:
      return SetCache(*disk, text);
    case ControlFile::kCacheSize:
      return SetCacheSize(*disk, text);
    case ControlFile::kPowercutPolicy: {
      RDFS_ASSIGN_OR_RETURN(PowercutPolicy policy, ParsePowercutPolicyValue(text));
      disk->cache().SetPolicy(policy);
      return absl::OkStatus();
    }
    case ControlFile::kPowercutSeed: {
      RDFS_ASSIGN_OR_RETURN(uint64_t seed, ParsePowercutSeedValue(text));
      disk->cache().SetSeed(seed);
      return absl::OkStatus();
    }
    case ControlFile::kPowercutAtFlush:
      return SetPowercutAtFlush(*disk, text);
    case ControlFile::kPower:
      return SetPower(*disk, text);
    case ControlFile::kBadblocks:
    case ControlFile::kBadblocksOnce:
    case ControlFile::kBadblocksPartial:
    case ControlFile::kErrors:
    case ControlFile::kFaultSeed:
    case ControlFile::kLatency:
    case ControlFile::kThrottle:
    case ControlFile::kFlakey:
      return SetFault(*disk, *FaultFileOf(file), text);
    case ControlFile::kGlobalStats:
    case ControlFile::kDiskStats:
    case ControlFile::kUnflushed:
    case ControlFile::kPowercutLog:
      break;
  }
  return ErrnoStatus(EBADF, "not a writable control file");
}

// ---- the tree ----------------------------------------------------------------------

absl::StatusOr<std::shared_ptr<Disk>> ControlPlane::CreateFile(std::string_view what, bool in_root,
                                                               std::string_view name, mode_t type,
                                                               uid_t owner_uid, gid_t owner_gid) {
  const std::string where = absl::StrCat(text::AsAbsl(what), " ", text::AsAbsl(name));
  if (!in_root) return Logged(where, ErrnoStatus(EPERM, "disks live in the mount's root only"));
  if (!S_ISREG(type)) {
    return Logged(where, ErrnoStatus(EPERM, "only regular files (disks) can be made"));
  }
  if (options_.readonly) return Logged(where, ErrnoStatus(EROFS, "the mount is read-only (-o ro)"));
  ramdiskfs::NewDisk spec;
  spec.name = std::string(name);
  spec.size_bytes = 0;
  spec.growing = true;  // copying an image in makes a disk of its size
  spec.mode = options_.default_mode;
  // Disks are 0600 whatever the creator's umask allows (docs/design.md,
  // "Decisions"); chmod widens them on purpose.
  spec.attributes = {0600, owner_uid, owner_gid, absl::Now(), absl::Now()};
  absl::StatusOr<std::shared_ptr<Disk>> disk = table_->Create(std::move(spec));
  if (!disk.ok()) return Logged(where, disk.status());
  Log("created disk ", (*disk)->name(), " (create on the mount)");
  return disk;
}

absl::Status ControlPlane::Unlink(bool in_root, std::string_view name) {
  const std::string what = absl::StrCat("rm ", text::AsAbsl(name));
  if (!in_root) return Logged(what, ErrnoStatus(EPERM, "disks live in the mount's root only"));
  return Logged(what, DeleteDisk(name, /*by_unlink=*/true));
}

absl::Status ControlPlane::Truncate(Disk& disk, uint64_t new_size, const Caller& caller) {
  return Logged(absl::StrCat("truncate ", disk.name()), Resize(disk, new_size, caller));
}

absl::Status ControlPlane::FlushBuffers(Disk& disk, const Caller& caller) {
  const std::string what = absl::StrCat("BLKFLSBUF ", disk.name());
  // The kernel's BLKFLSBUF needs CAP_SYS_ADMIN; here: root or the user who
  // mounted (the owner of the control tree). Read access to a disk must not
  // let anyone else destroy its data.
  if (caller.uid != 0 && caller.uid != options_.uid) {
    return Logged(what, ErrnoStatus(EACCES, "only root or the mounting user may flush"));
  }
  return Logged(what, Flush(disk, caller));
}

// ---- the life of an open ------------------------------------------------------------

void ControlPlane::Closed(Disk& disk) {
  // A stat right after cp/dd must show the size the copy made.
  if (disk.OnClose()) kernel_->InvalidateDisk(disk, false);
}

void ControlPlane::Released(Disk& disk, bool for_write, bool bypass_writer) {
  const bool was_growing = disk.growing();
  disk.Release(for_write, bypass_writer);
  if (was_growing && !disk.growing()) kernel_->InvalidateDisk(disk, false);
}

// ---- the operations ------------------------------------------------------------------

absl::Status ControlPlane::NewDisk(std::string_view text) {
  RDFS_ASSIGN_OR_RETURN(NewDiskRequest request, ParseNewCommand(text));
  ramdiskfs::NewDisk spec;
  spec.name = request.name;
  spec.size_bytes = request.size_bytes;
  spec.mode = request.mode.value_or(options_.default_mode);
  // A volatile cache needs the daemon to see every I/O (SPEC 11): it
  // implies direct unless mode= says otherwise.
  if (request.cache.mode == CacheMode::kVolatile && !request.mode && spec.mode == DataMode::kDax) {
    spec.mode = DataMode::kDirect;
  }
  if (request.cache.mode == CacheMode::kVolatile) {
    RDFS_RETURN_IF_ERROR(Disk::CacheAllowedIn(spec.mode, request.name));
  }
  spec.readonly = request.readonly || options_.readonly;
  spec.attributes = {0600, options_.uid, options_.gid, absl::Now(), absl::Now()};
  RDFS_ASSIGN_OR_RETURN(std::shared_ptr<Disk> disk, table_->Create(std::move(spec)));
  if (absl::Status cache = disk->ApplyCacheSettings(request.cache); !cache.ok()) {
    (void)table_->Delete(disk->name());  // nothing changed
    return cache;
  }
  Log("created disk ", disk->name(), " (", disk->size_bytes(), " bytes, ",
      DataModeName(disk->mode()), ", cache ", CacheModeName(request.cache.mode), ")");
  return absl::OkStatus();
}

absl::Status ControlPlane::DeleteDisk(std::string_view name, bool by_unlink) {
  std::shared_ptr<Disk> disk = table_->Find(name);
  if (disk) SettleOpens(*disk, Caller{});
  RDFS_RETURN_IF_ERROR(table_->Delete(name));
  if (disk) kernel_->ReleaseBackingId(*disk);
  if (!by_unlink) kernel_->InvalidateEntry(EntryDir::kRoot, name);
  kernel_->InvalidateEntry(EntryDir::kControlDir, name);
  Log("deleted disk ", name, by_unlink ? " (rm on the mount)" : "");
  return absl::OkStatus();
}

absl::Status ControlPlane::SetMaxMemory(std::string_view text) {
  RDFS_ASSIGN_OR_RETURN(uint64_t bytes, ParseMemorySizeValue(text));
  RDFS_RETURN_IF_ERROR(table_->pool().SetMaxBytes(bytes));
  Log("max_memory set to ", bytes);
  return absl::OkStatus();
}

absl::Status ControlPlane::Resize(Disk& disk, uint64_t new_size, const Caller& caller) {
  // Only a shrink needs the disk closed, so only a shrink waits for RELEASEs.
  const int others =
      new_size < disk.size_bytes() ? SettleOpens(disk, caller) : OtherOpens(disk, caller);
  RDFS_RETURN_IF_ERROR(disk.Resize(new_size, others));
  // Test hook: the backing file has its new size; the kernel, the state and
  // the reply do not know yet.
  CrashPoint("resize-truncated");
  kernel_->InvalidateDisk(disk, false);
  Log("disk ", disk.name(), " resized to ", disk.size_bytes());
  return absl::OkStatus();
}

absl::Status ControlPlane::Flush(Disk& disk, const Caller& caller) {
  RDFS_RETURN_IF_ERROR(disk.Flush(SettleOpens(disk, caller)));
  kernel_->InvalidateDisk(disk, true);
  return absl::OkStatus();
}

absl::Status ControlPlane::Discard(Disk& disk, std::string_view text) {
  RDFS_ASSIGN_OR_RETURN(ByteRange range, ParseDiscardCommand(text));
  RDFS_RETURN_IF_ERROR(disk.Discard(range.offset, range.length));
  // Only cached mode keeps the disk's pages in the kernel's page cache.
  if (disk.mode() == DataMode::kCached) kernel_->InvalidateDisk(disk, true);
  return absl::OkStatus();
}

absl::Status ControlPlane::SetReadonly(Disk& disk, std::string_view text) {
  RDFS_ASSIGN_OR_RETURN(bool readonly, ParseBoolValue(text));
  // Disk refuses (EBUSY) while an open can write without the daemon.
  RDFS_RETURN_IF_ERROR(disk.SetReadonly(readonly));
  kernel_->InvalidateDisk(disk, false);
  Log("disk ", disk.name(), readonly ? " is now read-only" : " is now writable");
  return absl::OkStatus();
}

absl::Status ControlPlane::SetMode(Disk& disk, std::string_view text) {
  RDFS_ASSIGN_OR_RETURN(DataMode mode, ParseModeValue(text));
  const ConnectionFacts facts = kernel_->Facts();
  if (mode == DataMode::kDax && facts.initialized && !facts.passthrough) {
    return ErrnoStatus(EOPNOTSUPP,
                       absl::StrCat("dax is unavailable here (", table_->dax_fallback(), ")"));
  }
  // The mode file is written through its own open, never the disk's, so
  // every open of the disk counts (Disk::SetMode checks opens() itself).
  SettleOpens(disk, Caller{});
  RDFS_RETURN_IF_ERROR(disk.SetMode(mode));
  // cached and null opens never use the backing id: drop it, so stats say
  // what is true (the disk is closed, so no open reply carries it).
  if (mode == DataMode::kCached || mode == DataMode::kNull) kernel_->ReleaseBackingId(disk);
  // Pages a cached-mode open left in the kernel must not outlive the mode.
  kernel_->InvalidateDisk(disk, true);
  Log("disk ", disk.name(), " mode set to ", DataModeName(mode));
  return absl::OkStatus();
}

// ---- volatile write cache and power (SPEC 11; docs/crashtest.md) ---------------

absl::Status ControlPlane::SetCache(Disk& disk, std::string_view text) {
  RDFS_ASSIGN_OR_RETURN(CacheMode mode, ParseCacheValue(text));
  // Written through its own open, never the disk's: every open counts.
  SettleOpens(disk, Caller{});
  // Disk refuses EBUSY while open (an open's passthrough is decided at
  // open), EINVAL in dax/null mode.
  RDFS_RETURN_IF_ERROR(disk.SetCacheMode(mode));
  // A volatile cache's opens never use passthrough: drop the backing id so
  // stats say what is true (the disk is closed, no open reply carries it).
  if (mode == CacheMode::kVolatile) kernel_->ReleaseBackingId(disk);
  Log("disk ", disk.name(), " cache set to ", CacheModeName(mode));
  return absl::OkStatus();
}

absl::Status ControlPlane::SetCacheSize(Disk& disk, std::string_view text) {
  RDFS_ASSIGN_OR_RETURN(uint64_t bytes, ParseCacheSizeValue(text));
  RDFS_RETURN_IF_ERROR(disk.cache().SetCacheSize(bytes));
  Log("disk ", disk.name(), " cache_size set to ", bytes);
  return absl::OkStatus();
}

absl::Status ControlPlane::SetPowercutAtFlush(Disk& disk, std::string_view text) {
  RDFS_ASSIGN_OR_RETURN(uint64_t n, ParsePowercutAtFlushValue(text));
  if (n > 0) RDFS_RETURN_IF_ERROR(Disk::CacheAllowedIn(disk.requested_mode(), disk.name()));
  disk.cache().SetCutAtFlush(n);
  return absl::OkStatus();
}

absl::Status ControlPlane::SetPower(Disk& disk, std::string_view text) {
  RDFS_ASSIGN_OR_RETURN(bool on, ParsePowerValue(text));
  const WriteCache::Unflushed before = disk.cache().unflushed();
  const CacheSettings settings = disk.cache().settings();
  absl::Status status = disk.SetPower(on);
  // Whatever the kernel cached of the disk file (cached mode) is stale:
  // after a cut it must read EIO, after power-on the post-cut image.
  kernel_->InvalidateDisk(disk, true);
  RDFS_RETURN_IF_ERROR(status);
  if (on) {
    Log("disk ", disk.name(), " power on");
  } else {
    Log("disk ", disk.name(), " power cut: ", before.writes, " unflushed write(s), ", before.bytes,
        " bytes, policy ", PowercutPolicyName(settings.policy), ", seed ", settings.seed);
  }
  return absl::OkStatus();
}

// ---- fault injection (SPEC 10; docs/faults.md) ------------------------------------

absl::Status ControlPlane::SetFault(Disk& disk, FaultFile file, std::string_view text) {
  RDFS_RETURN_IF_ERROR(disk.WriteFaultFile(file, text));
  // One line for the change, however many lines the file now holds.
  std::string now = disk.faults().Read(file);
  for (char& c : now) c = c == '\n' ? ';' : c;
  Log("disk ", disk.name(), ": ", FaultFileName(file), " is now '", now, "'");
  return absl::OkStatus();
}

}  // namespace ramdiskfs
