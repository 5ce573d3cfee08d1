// The transport: how requests are read from and replies written to
// /dev/fuse. libfuse 3.14's request loop reads and writes through a custom
// io (fuse_session_custom_io) installed by session.cc; this file is that io.
// It does two things libfuse cannot:
//
//  1. INIT: it sees the kernel's INIT request (to learn whether the kernel
//     offers passthrough and FUSE_DIRECT_IO_ALLOW_MMAP) and patches the INIT
//     reply (FUSE_INIT_EXT, FUSE_PASSTHROUGH, max_stack_depth = 1,
//     ALLOW_MMAP, never FUSE_WRITEBACK_CACHE), then runs the passthrough
//     probe (Passthrough::AfterInit) once the kernel has the reply.
//  2. Spliced read replies: ReplySplicedRead() hands the io a (backing fd,
//     offset, length) triple; the io vmsplices the reply header into a
//     per-thread pipe, splices the shmem pages after it (no copy) and splices
//     the pipe into /dev/fuse — one copy, into the reader's pages — falling
//     back to pread + writev when the pipe cannot take it.
//
// Its state (CustomIoState) belongs to the Filesystem and is reached through
// the userdata libfuse passes to every io callback (the Filesystem given to
// fuse_session_new), so nothing here is global but per-thread buffers.
//
// The transport boundary: ops.cc produces replies only through libfuse's
// fuse_reply_* and ReplySplicedRead(); everything that read()s or write()s
// the device fd is here. The second transport, FUSE over io_uring on the same
// connection (uring.h), hooks in at the same two points, each a one-line
// call marked [uring hook]: IoWritev first offers every reply to it (a
// spliced reply's (store, offset, length) becomes a pread into the ring
// entry's payload), and the INIT patch makes and offers the rings before the
// reply goes out and registers them after AfterInit.

#ifndef RAMDISKFS_FUSE_CUSTOM_IO_H_
#define RAMDISKFS_FUSE_CUSTOM_IO_H_

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "ramdiskfs/page_store.h"

namespace ramdiskfs {

// Splice needs every page of a read reply in one pipe: the largest pipe an
// unprivileged process may make is fs.pipe-max-size (1 MiB = 256 pages), and
// the reply header takes one slot, so reads are capped at 255 pages with the
// max_read mount option. Writes are not spliced and keep libfuse's 1 MiB.
inline constexpr size_t kMaxReadBytes = 255 * 4096;
inline constexpr size_t kMaxWriteBytes = 256 * 4096;
// Below this, pread + writev (2 syscalls) beats vmsplice + 2 splices.
inline constexpr size_t kSpliceMinBytes = 64 * 1024;

// The custom io's per-connection state, owned by the Filesystem.
struct CustomIoState {
  std::atomic<uint64_t> init_unique{0};  // the INIT request's id, once read
  std::atomic<bool> init_done{false};    // the INIT reply has been sent

  // A supervised worker (supervisor.h). The kernel sends INIT once per
  // connection; a restarted worker's libfuse still needs one, so the custom
  // io hands it the INIT the first worker read (`replay_init`) as its first
  // request, and swallows libfuse's reply to it: the kernel negotiated
  // already, and the same binary with the same options answers the same.
  // Other reader threads wait until that reply (libfuse fails any request
  // before INIT with EIO). Then `after_replayed_init` asks the kernel to
  // resend what the dead worker had read and not answered.
  std::string replay_init;
  std::atomic<bool> replaying{false};       // until the replayed INIT is answered
  std::atomic<bool> replay_pending{false};  // the replayed INIT is not yet read
  std::function<void(int device_fd)> after_replayed_init;
  // The first worker: called with the INIT request as the kernel sent it.
  std::function<void(std::string_view init)> on_init_request;
};

// The io to install with fuse_session_custom_io(); the session's userdata
// must be the Filesystem.
const fuse_custom_io* CustomIo();

// The unique of the request this thread read last, as the kernel sent it
// (with FUSE_UNIQUE_RESEND for a resent one): the request its handler is
// serving, since each loop thread serves what it read.
uint64_t CurrentRequestUnique();

// Writes FUSE_NOTIFY_RESEND (kernel_abi.h) to /dev/fuse. false with errno
// set if the kernel refused it (before 6.9: EINVAL).
bool NotifyResend(int device_fd);

// Replies to read request `req` with `length` bytes at `offset` of `store`'s
// backing file, spliced (see above). The caller has already asked the disk
// (Disk::PrepareSplicedRead) and `length` lies inside the disk.
int ReplySplicedRead(fuse_req_t req, const PageStore& store, uint64_t offset, size_t length);

// A buffer of at least `size` bytes owned by the calling thread, reused by
// every request it serves: no allocation on the I/O path (docs/design.md,
// "Loop devices and memory pressure"). On an io_uring entry's thread it is
// the entry's payload buffer (uring.h), so it is for building a reply only,
// never while the request's data is in use.
char* ThreadBuffer(size_t size);

// A read reply whose data the io takes straight from a backing file:
// ReplySplicedRead hands it to fuse_reply_iov() as the only iovec, and
// IoWritev (or the io_uring transport, uring.cc) recognises it by address.
struct SpliceReply {
  const PageStore* store = nullptr;
  uint64_t offset = 0;
  size_t length = 0;
};
// The calling thread's SpliceReply (one per thread).
SpliceReply* ThreadSpliceReply();

}  // namespace ramdiskfs

#endif  // RAMDISKFS_FUSE_CUSTOM_IO_H_
