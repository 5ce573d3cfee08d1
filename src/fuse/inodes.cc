#include "src/fuse/inodes.h"

#include <utility>

namespace ramdiskfs {
namespace {

constexpr Ino kFirstGlobalFileIno = 3;
constexpr unsigned kDiskShift = kDiskInoShift;
constexpr Ino kDiskSlotMask = (Ino{1} << kDiskShift) - 1;
constexpr Ino kDiskFileSlot = 0;
constexpr Ino kDiskControlDirSlot = 1;
constexpr Ino kFirstDiskFileSlot = 2;

static_assert(kFirstGlobalFileIno + kGlobalControlFileCount <= (Ino{1} << kDiskShift),
              "global inode numbers must stay below disk 1's");
static_assert(kFirstDiskFileSlot + kDiskControlFileCount <= (Ino{1} << kDiskShift),
              "a disk's control files must fit its inode numbers");

Ino DiskIno(uint64_t disk_id, Ino slot) { return (Ino{disk_id} << kDiskShift) | slot; }

Ino ControlFileIno(const ControlFileInfo& info, const Disk* disk) {
  const size_t index = static_cast<size_t>(info.file);
  if (info.scope == ControlScope::kGlobal) return kFirstGlobalFileIno + index;
  return DiskIno(disk->id(), kFirstDiskFileSlot + (index - kGlobalControlFileCount));
}

Node ControlFileNode(const ControlFileInfo& info, std::shared_ptr<Disk> disk) {
  Node node{NodeKind::kControlFile, ControlFileIno(info, disk.get()), &info, nullptr};
  node.disk = std::move(disk);
  return node;
}

Node DiskControlDirNode(std::shared_ptr<Disk> disk) {
  const Ino ino = DiskIno(disk->id(), kDiskControlDirSlot);
  return {NodeKind::kDiskControlDir, ino, nullptr, std::move(disk)};
}

}  // namespace

bool IsDirectory(NodeKind kind) {
  return kind == NodeKind::kRoot || kind == NodeKind::kControlDir ||
         kind == NodeKind::kDiskControlDir;
}

Ino DiskFileIno(const Disk& disk) { return DiskIno(disk.id(), kDiskFileSlot); }

bool IsDiskFileIno(Ino ino) {
  return (ino >> kDiskShift) != 0 && (ino & kDiskSlotMask) == kDiskFileSlot;
}

Node DiskFileNode(std::shared_ptr<Disk> disk) {
  const Ino ino = DiskFileIno(*disk);
  return {NodeKind::kDiskFile, ino, nullptr, std::move(disk)};
}

Node Resolve(const DiskTable& table, Ino ino) {
  if (ino == kRootIno) return {NodeKind::kRoot, ino, nullptr, nullptr};
  if (ino == kControlDirIno) return {NodeKind::kControlDir, ino, nullptr, nullptr};
  const auto global = ControlFilesOf(ControlScope::kGlobal);
  if (ino >= kFirstGlobalFileIno && ino < kFirstGlobalFileIno + global.size()) {
    return ControlFileNode(global[ino - kFirstGlobalFileIno], nullptr);
  }
  const Ino slot = ino & kDiskSlotMask;
  const auto per_disk = ControlFilesOf(ControlScope::kDisk);
  if (slot >= kFirstDiskFileSlot + per_disk.size()) return {};
  std::shared_ptr<Disk> disk = table.FindById(ino >> kDiskShift);
  if (!disk) return {};
  if (slot == kDiskFileSlot) return DiskFileNode(std::move(disk));
  if (slot == kDiskControlDirSlot) return DiskControlDirNode(std::move(disk));
  return ControlFileNode(per_disk[slot - kFirstDiskFileSlot], std::move(disk));
}

Node Lookup(const DiskTable& table, const Node& dir, std::string_view name) {
  switch (dir.kind) {
    case NodeKind::kRoot:
      if (name == ".control") return {NodeKind::kControlDir, kControlDirIno, nullptr, nullptr};
      if (auto disk = table.Find(name)) return DiskFileNode(std::move(disk));
      break;
    case NodeKind::kControlDir:
      for (const ControlFileInfo& f : ControlFilesOf(ControlScope::kGlobal)) {
        if (name == f.name) return ControlFileNode(f, nullptr);
      }
      if (auto disk = table.Find(name)) return DiskControlDirNode(std::move(disk));
      break;
    case NodeKind::kDiskControlDir:
      for (const ControlFileInfo& f : ControlFilesOf(ControlScope::kDisk)) {
        if (name == f.name) return ControlFileNode(f, dir.disk);
      }
      break;
    default:
      break;
  }
  return {};
}

std::vector<DirEntry> ListDirectory(const DiskTable& table, const Node& dir) {
  std::vector<DirEntry> entries = {{".", dir.ino, true}, {"..", kRootIno, true}};
  switch (dir.kind) {
    case NodeKind::kRoot:
      entries.push_back({".control", kControlDirIno, true});
      for (const auto& disk : table.List()) {
        entries.push_back({disk->name(), DiskFileIno(*disk), false});
      }
      break;
    case NodeKind::kControlDir:
      for (const ControlFileInfo& f : ControlFilesOf(ControlScope::kGlobal)) {
        entries.push_back({std::string(f.name), ControlFileIno(f, nullptr), false});
      }
      for (const auto& disk : table.List()) {
        entries.push_back({disk->name(), DiskIno(disk->id(), kDiskControlDirSlot), true});
      }
      break;
    case NodeKind::kDiskControlDir:
      entries[1].ino = kControlDirIno;
      for (const ControlFileInfo& f : ControlFilesOf(ControlScope::kDisk)) {
        entries.push_back({std::string(f.name), ControlFileIno(f, dir.disk.get()), false});
      }
      break;
    default:
      break;
  }
  return entries;
}

}  // namespace ramdiskfs
