// The inode scheme: what every inode number names, derived from one table
// of control files (ramdiskfs/control_files.h). Numbers are computed, not
// allocated:
//
//   1                      the root (FUSE_ROOT_ID)
//   2                      .control/
//   3 + i                  the i-th global control file (.control/new, ...)
//   D*S                    disk D's file (MOUNT/NAME)
//   D*S + 1                its control directory (.control/NAME/)
//   D*S + 2 + j            its j-th control file (.control/NAME/size, ...)
//
// S = 1 << kDiskInoShift, the smallest power of two that holds a disk's
// 2 + kDiskControlFileCount numbers (32 while it has 22 control files).
//
// Disk ids start at 1 and are never reused, so a stale inode number resolves
// to nothing (ENOENT/ESTALE), and the global numbers stay below disk 1's.
// Thread-safe; no libfuse needed (inode numbers are plain uint64_t).

#ifndef RAMDISKFS_FUSE_INODES_H_
#define RAMDISKFS_FUSE_INODES_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "ramdiskfs/control_files.h"
#include "ramdiskfs/disk.h"
#include "ramdiskfs/disk_table.h"

namespace ramdiskfs {

using Ino = uint64_t;

enum class NodeKind {
  kInvalid,
  kRoot,
  kControlDir,      // .control/
  kControlFile,     // a global or per-disk control file (Node::file says which)
  kDiskFile,        // MOUNT/NAME
  kDiskControlDir,  // .control/NAME/
};

// What an inode number names. A Node holds its disk for as long as it lives.
struct Node {
  NodeKind kind = NodeKind::kInvalid;
  Ino ino = 0;
  const ControlFileInfo* file = nullptr;  // kControlFile only
  std::shared_ptr<Disk> disk;             // disk kinds and per-disk control files
};

// Derived from the table, so appending control files widens it by itself.
constexpr unsigned DiskInoShiftFor(size_t slots) {
  unsigned shift = 0;
  while ((size_t{1} << shift) < slots) ++shift;
  return shift;
}
inline constexpr unsigned kDiskInoShift = DiskInoShiftFor(2 + kDiskControlFileCount);

inline constexpr Ino kRootIno = 1;
inline constexpr Ino kControlDirIno = 2;

bool IsDirectory(NodeKind kind);

// The node of a disk's file, for a disk in hand (create, mknod).
Node DiskFileNode(std::shared_ptr<Disk> disk);
Ino DiskFileIno(const Disk& disk);
// Whether `ino` has the shape of a disk's file (the disk may be gone).
bool IsDiskFileIno(Ino ino);

// The node `ino` names now; kInvalid if none (a deleted disk, a bad number).
Node Resolve(const DiskTable& table, Ino ino);

// The entry `name` in directory `dir`; kInvalid if there is none. `dir` must
// be a directory.
Node Lookup(const DiskTable& table, const Node& dir, std::string_view name);

struct DirEntry {
  std::string name;
  Ino ino;
  bool is_dir;
};
// "." and ".." then the entries of directory `dir`, in a stable order.
std::vector<DirEntry> ListDirectory(const DiskTable& table, const Node& dir);

}  // namespace ramdiskfs

#endif  // RAMDISKFS_FUSE_INODES_H_
