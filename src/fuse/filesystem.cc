#include "src/fuse/filesystem.h"

#include "src/fuse/inodes.h"
#include "src/fuse/uring.h"

namespace ramdiskfs {

Filesystem::Filesystem(DiskTable* table, FilesystemOptions options)
    : table_(table),
      options_(options),
      passthrough_(table, options.dax_required),
      control_(table, this, {options.uid, options.gid, options.default_mode, options.readonly}) {
  clock_gettime(CLOCK_REALTIME, &start_time_);
}

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
  return facts;
}

}  // namespace ramdiskfs
