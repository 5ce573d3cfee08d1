// FUSE passthrough: what the kernel is asked for at INIT, the probe that
// decides whether dax works, the disks' backing ids, the hand-built OPEN and
// CREATE replies that carry them, and the end-of-disk trimming that dax
// writes need (docs/design.md, "Data modes" and "Size rules"): the bytes a
// dax write put past the end are cut by Disk::SyncBackingFile whenever the
// daemon hears of the file, and ReportOverflow turns a cut into ENOSPC at
// the writer's fsync/close.
//
// Backing ids: one per disk, registered at the disk's first passthrough
// open and kept until the disk is deleted (or switched to cached/null, whose
// opens never use it). The kernel gives an inode one
// backing only (a second BACKING_OPEN for the same inode's opens would make
// the open fail with EIO), and an id must not be closed while an open reply
// that names it may still be in flight.

#ifndef RAMDISKFS_FUSE_PASSTHROUGH_H_
#define RAMDISKFS_FUSE_PASSTHROUGH_H_

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>

#include "ramdiskfs/control_plane.h"
#include "ramdiskfs/disk.h"
#include "ramdiskfs/disk_table.h"

namespace ramdiskfs {

// What the INIT exchange and the passthrough probe found out. Written by the
// custom io (custom_io.cc) and AfterInit, read by every request.
struct ConnectionState {
  std::atomic<bool> kernel_offers_passthrough{false};
  std::atomic<bool> kernel_offers_allow_mmap{false};
  std::atomic<bool> passthrough{false};  // BACKING_OPEN works
  std::atomic<bool> allow_mmap{false};   // FUSE_DIRECT_IO_ALLOW_MMAP negotiated
  std::atomic<bool> initialized{false};
};

// How a disk open is answered in the disk's current mode.
struct DiskOpenReply {
  uint32_t flags = 0;  // FOPEN_* (kernel_abi.h)
  int backing_id = 0;  // > 0: the open uses passthrough
  // The kernel can write without the daemon (a dax or direct passthrough
  // open for reading and writing): Disk::AddBypassWriter must be called.
  bool bypass_writer = false;
};

class Passthrough {
 public:
  // `dax_required`: dax was asked for by name, so no fallback is allowed.
  Passthrough(DiskTable* table, bool dax_required);

  ConnectionState& connection() { return connection_; }
  ConnectionFacts Facts() const;

  // The INIT handler's wishes (libfuse's side of the negotiation; the
  // passthrough flags libfuse 3.14 does not know are patched into the reply
  // by the custom io).
  static void ConfigureInit(fuse_conn_info* conn);

  // Called right after the INIT reply went to the kernel: checks that
  // passthrough really works (BACKING_OPEN on a probe file) and sets every
  // disk's dax fallback. Returns false if dax was required and is missing.
  bool AfterInit(int device_fd);
  // Set by AfterInit when dax was required and is unavailable.
  bool fatal() const { return fatal_.load(); }
  // The kernel wakes requests waiting for INIT as soon as it has read our
  // INIT reply, before AfterInit has probed passthrough: an OPEN served in
  // that window would be answered with the fallback modes and a stats read
  // would say "not_connected". Handlers whose reply depends on the probe
  // call this first; it returns at once after AfterInit (one atomic load),
  // and waits at most 5 s should AfterInit never run (the INIT reply failed).
  void WaitUntilInitialized();

  // The flags and backing id of an open of `disk` with `access` (O_RDONLY,
  // O_WRONLY or O_RDWR) in its current mode; registers the backing id on the
  // disk's first passthrough open.
  DiskOpenReply OpenFlags(Disk& disk, int access);
  // Drops the disk's backing id (the disk was deleted). No-op without one.
  void ReleaseBackingId(Disk& disk);

  // Sends an OPEN reply (entry == nullptr) or a CREATE reply carrying
  // `backing_id`: libfuse 3.14 cannot, so the reply is built from the
  // kernel's struct layouts (kernel_abi.h). Returns fuse_reply_buf's result.
  static int ReplyOpen(fuse_req_t req, const fuse_entry_param* entry, uint64_t fh,
                       const DiskOpenReply& how);

  // fsync() and close() of an open for writing report bytes a dax write put
  // past the end of the disk since the open last reported (ENOSPC, as a
  // filesystem reports a lost writeback). `seen`: the open's count of
  // Disk::overflow_events() at its last report, updated. Returns the errno.
  static int ReportOverflow(Disk& disk, bool for_write, uint64_t* seen);

 private:
  // Registers the disk's backing file once. Returns the id, or 0 if
  // passthrough is not available or the registration failed.
  int EnsureBackingId(Disk& disk);

  DiskTable* const table_;
  const bool dax_required_;
  int device_fd_ = -1;
  ConnectionState connection_;
  std::atomic<bool> fatal_{false};
  std::mutex init_mu_;  // with init_cv_: AfterInit is done (leaf)
  std::condition_variable init_cv_;
  // One mutex for every disk (registrations are rare: once per disk). Held
  // across the BACKING_OPEN ioctl and while Disk::mu_ is taken inside
  // Disk::backing_id()/set_backing_id(): order register_mu_ -> Disk::mu_.
  std::mutex register_mu_;
};

}  // namespace ramdiskfs

#endif  // RAMDISKFS_FUSE_PASSTHROUGH_H_
