// The control files under MOUNT/.control/ (docs/control.md): one table, from
// which everything else is derived — the FUSE adapter's inode numbers,
// lookup, readdir and open modes (src/fuse/inodes.h), the ControlPlane's
// dispatch (control_plane.h), and the names a disk may not take.

#ifndef RAMDISKFS_CONTROL_FILES_H_
#define RAMDISKFS_CONTROL_FILES_H_

#include <cstddef>
#include <span>
#include <string_view>

namespace ramdiskfs {

enum class ControlFile {
  // MOUNT/.control/FILE
  kNew,
  kDelete,
  kMaxMemory,
  kGlobalStats,
  // MOUNT/.control/DISK/FILE
  kSize,
  kFlush,
  kDiscard,
  kReadonly,
  kMode,
  kDiskStats,
  // volatile write cache and power (SPEC 11; docs/crashtest.md)
  kCache,
  kCacheSize,
  kUnflushed,
  kPowercutPolicy,
  kPowercutSeed,
  kPower,
  kPowercutLog,
  kPowercutAtFlush,
  // fault injection (ramdiskfs/faults.h), in FaultFile order
  kBadblocks,
  kBadblocksOnce,
  kBadblocksPartial,
  kErrors,
  kFaultSeed,
  kLatency,
  kThrottle,
  kFlakey,
};

enum class ControlScope { kGlobal, kDisk };

struct ControlFileInfo {
  ControlFile file;
  ControlScope scope;
  std::string_view name;
  bool readable;
  bool writable;
};

// In directory-listing order; within a scope, the position is also what the
// adapter's inode numbers are made of, so entries are only ever appended.
inline constexpr ControlFileInfo kControlFiles[] = {
    {ControlFile::kNew, ControlScope::kGlobal, "new", false, true},
    {ControlFile::kDelete, ControlScope::kGlobal, "delete", false, true},
    {ControlFile::kMaxMemory, ControlScope::kGlobal, "max_memory", true, true},
    {ControlFile::kGlobalStats, ControlScope::kGlobal, "stats", true, false},
    {ControlFile::kSize, ControlScope::kDisk, "size", true, true},
    {ControlFile::kFlush, ControlScope::kDisk, "flush", false, true},
    {ControlFile::kDiscard, ControlScope::kDisk, "discard", false, true},
    {ControlFile::kReadonly, ControlScope::kDisk, "readonly", true, true},
    {ControlFile::kMode, ControlScope::kDisk, "mode", true, true},
    {ControlFile::kDiskStats, ControlScope::kDisk, "stats", true, false},
    // volatile write cache and power (SPEC 11)
    {ControlFile::kCache, ControlScope::kDisk, "cache", true, true},
    {ControlFile::kCacheSize, ControlScope::kDisk, "cache_size", true, true},
    {ControlFile::kUnflushed, ControlScope::kDisk, "unflushed", true, false},
    {ControlFile::kPowercutPolicy, ControlScope::kDisk, "powercut_policy", true, true},
    {ControlFile::kPowercutSeed, ControlScope::kDisk, "powercut_seed", true, true},
    {ControlFile::kPower, ControlScope::kDisk, "power", true, true},
    {ControlFile::kPowercutLog, ControlScope::kDisk, "powercut_log", true, false},
    {ControlFile::kPowercutAtFlush, ControlScope::kDisk, "powercut_at_flush", true, true},
    {ControlFile::kBadblocks, ControlScope::kDisk, "badblocks", true, true},
    {ControlFile::kBadblocksOnce, ControlScope::kDisk, "badblocks_once", true, true},
    {ControlFile::kBadblocksPartial, ControlScope::kDisk, "badblocks_partial", true, true},
    {ControlFile::kErrors, ControlScope::kDisk, "errors", true, true},
    {ControlFile::kFaultSeed, ControlScope::kDisk, "fault_seed", true, true},
    {ControlFile::kLatency, ControlScope::kDisk, "latency", true, true},
    {ControlFile::kThrottle, ControlScope::kDisk, "throttle", true, true},
    {ControlFile::kFlakey, ControlScope::kDisk, "flakey", true, true},
};

inline constexpr size_t kGlobalControlFileCount = 4;
inline constexpr size_t kDiskControlFileCount = std::size(kControlFiles) - kGlobalControlFileCount;

// The files of one scope, in table order.
constexpr std::span<const ControlFileInfo> ControlFilesOf(ControlScope scope) {
  return scope == ControlScope::kGlobal ? std::span(kControlFiles).first(kGlobalControlFileCount)
                                        : std::span(kControlFiles).subspan(kGlobalControlFileCount);
}

constexpr const ControlFileInfo& InfoOf(ControlFile file) {
  return kControlFiles[static_cast<size_t>(file)];
}

// The table is indexed by the enum and the global files come first.
constexpr bool ControlTableIsOrdered() {
  for (size_t i = 0; i < std::size(kControlFiles); ++i) {
    if (static_cast<size_t>(kControlFiles[i].file) != i) return false;
    if ((kControlFiles[i].scope == ControlScope::kGlobal) != (i < kGlobalControlFileCount)) {
      return false;
    }
  }
  return true;
}
static_assert(ControlTableIsOrdered());

// Names a disk cannot have: the global control files share MOUNT/.control/
// with the disks' control directories.
constexpr bool IsReservedDiskName(std::string_view name) {
  for (const ControlFileInfo& f : ControlFilesOf(ControlScope::kGlobal)) {
    if (f.name == name) return true;
  }
  return false;
}

}  // namespace ramdiskfs

#endif  // RAMDISKFS_CONTROL_FILES_H_
