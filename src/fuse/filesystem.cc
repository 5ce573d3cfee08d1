#include "src/fuse/filesystem.h"

#include <cstdlib>

#include "ramdiskfs/log.h"
#include "src/fuse/inodes.h"
#include "src/fuse/uring.h"

namespace ramdiskfs {

Filesystem::Filesystem(DiskTable* table, FilesystemOptions options,
                       std::unique_ptr<OpenTable> opens)
    : table_(table),
      options_(options),
      passthrough_(table, options.dax_required),
      control_(table, this, {options.uid, options.gid, options.default_mode, options.readonly}),
      opens_(std::move(opens)) {
  clock_gettime(CLOCK_REALTIME, &start_time_);
  if (!opens_) {
    absl::StatusOr<std::unique_ptr<OpenTable>> made =
        OpenTable::Create(OpenTable::kDefaultCapacity);
    if (!made.ok()) {
      Log("cannot make the open file table: ", made.status().ToString());
      abort();  // memfd_create of 2 MiB failing at start: nothing can work
    }
    opens_ = *std::move(made);
  }
  open_files_.reset(new std::atomic<void*>[opens_->capacity()]());
}

Filesystem::~Filesystem() = default;

void Filesystem::InvalidateDisk(const Disk& disk, bool data) {
  if (session_ == nullptr) return;
  fuse_lowlevel_notify_inval_inode(session_, DiskFileIno(disk), data ? 0 : -1, 0);
}

void Filesystem::InvalidateEntry(EntryDir dir, std::string_view name) {
  if (session_ == nullptr) return;
  const Ino parent = dir == EntryDir::kRoot ? kRootIno : kControlDirIno;
  fuse_lowlevel_notify_inval_entry(session_, parent, name.data(), name.size());
}

void Filesystem::ReleaseBackingId(Disk& disk) { passthrough_.ReleaseBackingId(disk); }

ConnectionFacts Filesystem::Facts() const {
  ConnectionFacts facts = passthrough_.Facts();
  facts.transport = TransportInUse();  // [uring hook]
  facts.restarts = survive_.restarts;
  facts.last_stall_ms = survive_.last_stall_ms;
  return facts;
}

}  // namespace ramdiskfs
