// The live set of disks, by name and by id.
//
// Disks come and go at run time (command line, `new`/`delete`, create/rm on
// the mount). The table owns one shared_ptr per disk; lookups hand out
// another, which keeps the disk alive for as long as the caller holds it
// (a request, an open file). Removing a disk from the table therefore never
// frees it under a running request: its memory goes when the last holder
// lets go. Ids are never reused, so a stale id finds nothing.
//
// Thread-safe: one mutex guards the maps (lookups share it); it is never
// held while a disk's data is touched. Lock order: DiskTable::mu_ before
// Disk::mu_ (Delete marks the disk deleted under mu_, so that no open can
// start between its "not open" check and the disk leaving the table; Create
// and SetDaxFallback set disks' fallback reasons under mu_).

#ifndef RAMDISKFS_DISK_TABLE_H_
#define RAMDISKFS_DISK_TABLE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "ramdiskfs/control_files.h"
#include "ramdiskfs/disk.h"
#include "ramdiskfs/memory_pool.h"
#include "ramdiskfs/types.h"

namespace ramdiskfs {

struct NewDisk {
  std::string name;
  uint64_t size_bytes = 0;  // rounded up to 512 here
  DataMode mode = DataMode::kDirect;
  bool readonly = false;
  bool growing = false;  // made through the tree: grows until its last close
  DiskAttributes attributes;
};

class DiskTable {
 public:
  // `pool` must outlive the table.
  explicit DiskTable(MemoryPool* pool) : pool_(pool) {}
  DiskTable(const DiskTable&) = delete;
  DiskTable& operator=(const DiskTable&) = delete;

  MemoryPool& pool() { return *pool_; }

  // Creates an empty disk. Errors: ValidateDiskName's (EINVAL,
  // ENAMETOOLONG); EEXIST if the name is taken, by a disk or by a global
  // control file (IsReservedDiskName: disks share .control/ with them);
  // ENOSPC past kMaxDisks; EFBIG above kMaxDiskBytes; the store's errors.
  absl::StatusOr<std::shared_ptr<Disk>> Create(NewDisk spec);

  // A restarted worker (survive_state.h): a disk with the id, name, mode,
  // flags and attributes it had, over its existing backing file `fd` (taken
  // over, also on error; the size is the file's). Later ids start above it.
  // Errors: EEXIST for a name or id already present; those of
  // PageStore::Adopt.
  absl::StatusOr<std::shared_ptr<Disk>> Adopt(uint64_t id, NewDisk spec, int fd);
  uint64_t next_id() const;
  // Raises the next id to `id` (never lowers it).
  void RaiseNextId(uint64_t id);

  // Called (outside the lock) after every Create, Adopt and Delete that
  // succeeded: the supervised worker publishes the table's state from it
  // before the request that changed it is answered. Set once, before use.
  void SetChangeObserver(std::function<void()> observer) { observer_ = std::move(observer); }
  void NotifyChanged() const {
    if (observer_) observer_();
  }

  // Removes a disk (Disk::MarkDeleted first: no open can start on it after
  // this returns). Errors: ENOENT; EBUSY while it is open.
  absl::Status Delete(std::string_view name);

  // nullptr when absent.
  std::shared_ptr<Disk> Find(std::string_view name) const;
  std::shared_ptr<Disk> FindById(uint64_t id) const;

  // Every disk, ordered by name.
  std::vector<std::shared_ptr<Disk>> List() const;
  size_t size() const;

  // Applies `reason` (empty: dax available) to every disk now and later.
  void SetDaxFallback(std::string reason);
  std::string dax_fallback() const;

 private:
  MemoryPool* const pool_;
  mutable std::shared_mutex mu_;
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  std::map<std::string, std::shared_ptr<Disk>, std::less<>> by_name_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint64_t, std::shared_ptr<Disk>> by_id_ ABSL_GUARDED_BY(mu_);
  std::string dax_fallback_ ABSL_GUARDED_BY(mu_) = "not_connected";
  std::function<void()> observer_;
};

}  // namespace ramdiskfs

#endif  // RAMDISKFS_DISK_TABLE_H_
