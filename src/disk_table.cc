#include "ramdiskfs/disk_table.h"

#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "ramdiskfs/size.h"
#include "ramdiskfs/status.h"

namespace ramdiskfs {

absl::StatusOr<std::shared_ptr<Disk>> DiskTable::Create(NewDisk spec) {
  RDFS_RETURN_IF_ERROR(ValidateDiskName(spec.name));
  if (IsReservedDiskName(spec.name)) {
    return ErrnoStatus(
        EEXIST, absl::StrCat("'", spec.name, "' is the name of a control file in .control/"));
  }
  if (spec.size_bytes > kMaxDiskBytes) {
    return ErrnoStatus(
        EFBIG, absl::StrCat("size ", spec.size_bytes, " is above the limit ", kMaxDiskBytes));
  }
  RDFS_ASSIGN_OR_RETURN(uint64_t size, RoundUp(spec.size_bytes, kLogicalBlockSize));
  {
    std::shared_lock lock(mu_);
    if (by_name_.contains(spec.name)) {
      return ErrnoStatus(EEXIST, absl::StrCat("disk ", spec.name, " exists"));
    }
    if (by_name_.size() >= static_cast<size_t>(kMaxDisks)) {
      return ErrnoStatus(ENOSPC, absl::StrCat("at most ", kMaxDisks, " disks"));
    }
  }
  // The store is made outside the lock (it costs syscalls); the name is
  // checked again before it goes in.
  RDFS_ASSIGN_OR_RETURN(std::unique_ptr<PageStore> store,
                        PageStore::Create(pool_, spec.name, size));
  std::unique_lock lock(mu_);
  if (by_name_.contains(spec.name)) {
    return ErrnoStatus(EEXIST, absl::StrCat("disk ", spec.name, " exists"));
  }
  auto disk = std::make_shared<Disk>(next_id_++, spec.name, std::move(store), spec.mode,
                                     spec.readonly, spec.attributes, spec.growing);
  disk->set_dax_fallback(dax_fallback_);
  by_name_.emplace(disk->name(), disk);
  by_id_.emplace(disk->id(), disk);
  lock.unlock();
  NotifyChanged();
  return disk;
}

absl::StatusOr<std::shared_ptr<Disk>> DiskTable::Adopt(uint64_t id, NewDisk spec, int fd) {
  absl::Status valid = ValidateDiskName(spec.name);
  if (!valid.ok() || id == 0) {
    close(fd);
    return valid.ok() ? absl::InvalidArgumentError("disk id 0") : valid;
  }
  RDFS_ASSIGN_OR_RETURN(std::unique_ptr<PageStore> store, PageStore::Adopt(pool_, fd));
  std::unique_lock lock(mu_);
  if (by_name_.contains(spec.name) || by_id_.contains(id)) {
    return ErrnoStatus(EEXIST, absl::StrCat("disk ", spec.name, " (id ", id, ") exists"));
  }
  auto disk = std::make_shared<Disk>(id, spec.name, std::move(store), spec.mode, spec.readonly,
                                     spec.attributes, spec.growing);
  disk->set_dax_fallback(dax_fallback_);
  by_name_.emplace(disk->name(), disk);
  by_id_.emplace(id, disk);
  if (next_id_ <= id) next_id_ = id + 1;
  lock.unlock();
  NotifyChanged();
  return disk;
}

uint64_t DiskTable::next_id() const {
  std::shared_lock lock(mu_);
  return next_id_;
}

void DiskTable::RaiseNextId(uint64_t id) {
  std::unique_lock lock(mu_);
  if (next_id_ < id) next_id_ = id;
}

absl::Status DiskTable::Delete(std::string_view name) {
  std::shared_ptr<Disk> doomed;  // freed after the lock is dropped
  std::unique_lock lock(mu_);
  auto it = by_name_.find(name);
  if (it == by_name_.end()) return ErrnoStatus(ENOENT, absl::StrCat("no disk ", std::string(name)));
  RDFS_RETURN_IF_ERROR(it->second->MarkDeleted());
  doomed = it->second;
  by_id_.erase(doomed->id());
  by_name_.erase(it);
  lock.unlock();
  NotifyChanged();
  return absl::OkStatus();
}

std::shared_ptr<Disk> DiskTable::Find(std::string_view name) const {
  std::shared_lock lock(mu_);
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : it->second;
}

std::shared_ptr<Disk> DiskTable::FindById(uint64_t id) const {
  std::shared_lock lock(mu_);
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : it->second;
}

std::vector<std::shared_ptr<Disk>> DiskTable::List() const {
  std::shared_lock lock(mu_);
  std::vector<std::shared_ptr<Disk>> disks;
  disks.reserve(by_name_.size());
  for (const auto& [name, disk] : by_name_) disks.push_back(disk);
  return disks;
}

size_t DiskTable::size() const {
  std::shared_lock lock(mu_);
  return by_name_.size();
}

void DiskTable::SetDaxFallback(std::string reason) {
  std::unique_lock lock(mu_);
  dax_fallback_ = reason;
  for (auto& [name, disk] : by_name_) disk->set_dax_fallback(reason);
}

std::string DiskTable::dax_fallback() const {
  std::shared_lock lock(mu_);
  return dax_fallback_;
}

}  // namespace ramdiskfs
