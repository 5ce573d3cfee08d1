// Where the pages of every disk come from, and the cap on how many there may be.
//
// Two kinds (StoreKind), chosen once at start:
//  - tmpfs: a private tmpfs instance made with fsopen()/fsmount() and never
//    attached to the mount tree (so no other process can see or reach it),
//    mounted with size=<cap>,noswap,huge=never. Each disk's backing file is an
//    O_TMPFILE in it. The *kernel* enforces the cap: a write that needs a page
//    beyond it fails with ENOSPC, including writes that bypass the daemon
//    (FUSE passthrough, shared mmap faults get SIGBUS as on any full tmpfs).
//    Needs CAP_SYS_ADMIN.
//  - memfd: one memfd per disk, for unprivileged daemons. The kernel puts no
//    cap on memfds, so the daemon enforces it on the writes it serves
//    (Reserve/Commit below); passthrough (dax) is never used with this kind.
//
// Both give the kernel-shareable shmem pages that dax mode and shared mmap
// need: an anonymous-memory radix tree could not be mapped by the kernel.
//
// Thread-safe unless a method says otherwise.

#ifndef RAMDISKFS_MEMORY_POOL_H_
#define RAMDISKFS_MEMORY_POOL_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "ramdiskfs/types.h"

namespace ramdiskfs {

class MemoryPool {
 public:
  // Makes a pool of `kind` capped at `max_bytes` (rounded up to a page).
  // kAuto tries tmpfs and falls back to memfd. Errors: the errno of
  // fsopen/fsconfig/fsmount for kTmpfs (EPERM without CAP_SYS_ADMIN),
  // InvalidArgument for a cap of 0 or above the machine's RAM.
  static absl::StatusOr<std::unique_ptr<MemoryPool>> Create(StoreKind kind, uint64_t max_bytes);

  // A restarted worker: the pool the supervisor kept. `mount_fd` is the
  // private tmpfs instance's root (kTmpfs; taken over) or -1 (kMemfd).
  static std::unique_ptr<MemoryPool> Adopt(StoreKind kind, int mount_fd, uint64_t max_bytes);
  // The tmpfs instance's root, or -1 (the supervisor keeps a copy).
  int mount_fd() const { return mount_fd_; }

  // Half of the machine's RAM, rounded down to a page (tmpfs's default).
  static uint64_t DefaultMaxBytes();
  // The machine's RAM in bytes.
  static uint64_t PhysicalRamBytes();

  ~MemoryPool();
  MemoryPool(const MemoryPool&) = delete;
  MemoryPool& operator=(const MemoryPool&) = delete;

  StoreKind kind() const { return kind_; }
  // True when the kernel refuses pages beyond the cap (tmpfs).
  bool kernel_enforces_cap() const { return kind_ == StoreKind::kTmpfs; }

  // A new, empty (size 0) backing file; the caller owns the fd (O_CLOEXEC,
  // O_RDWR). `name` is only a label (memfd name). Errors: errno of
  // open(O_TMPFILE)/memfd_create (ENOSPC when the instance is out of inodes).
  absl::StatusOr<int> CreateFile(std::string_view name);

  uint64_t max_bytes() const { return max_bytes_.load(std::memory_order_relaxed); }

  // Changes the cap. Errors: InvalidArgument if 0 or above PhysicalRamBytes();
  // EBUSY (ErrnoStatus) if below memory in use now. Changes nothing on error.
  absl::Status SetMaxBytes(uint64_t bytes);

  // Bytes of RAM held by all disks now.
  uint64_t used_bytes() const;

  // --- daemon-side accounting, memfd pools only (no-ops for tmpfs) --------
  //
  // A writer that may allocate up to `bytes` new bytes calls Reserve() first;
  // it fails with ENOSPC when used + reserved + bytes would pass the cap.
  // After the write the writer calls Commit(reserved, allocated_delta), with
  // the change in its file's allocated bytes. Freeing calls Commit(0, -freed).
  absl::Status Reserve(uint64_t bytes);
  void Commit(uint64_t reserved, int64_t allocated_delta);

 private:
  MemoryPool(StoreKind kind, int mount_fd, uint64_t max_bytes);
  // `bytes` rounded up to a page. Errors: InvalidArgument if that is 0 or
  // above PhysicalRamBytes().
  static absl::StatusOr<uint64_t> CheckedCap(uint64_t bytes);

  const StoreKind kind_;
  const int mount_fd_;  // tmpfs: root of the private instance; memfd: -1
  std::atomic<uint64_t> max_bytes_;
  std::mutex reconfigure_mu_;  // serialises SetMaxBytes
  // memfd accounting
  std::atomic<int64_t> memfd_used_{0};
  std::atomic<uint64_t> memfd_reserved_{0};
};

}  // namespace ramdiskfs

#endif  // RAMDISKFS_MEMORY_POOL_H_
