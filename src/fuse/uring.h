// FUSE over io_uring (SPEC 14; FUSE-FACTS.md sections 0 and 3): the kernel
// hands requests to the daemon through io_uring queues, one per possible CPU,
// instead of read() on /dev/fuse, and takes the reply and hands over the next
// request in one COMMIT_AND_FETCH submission. libfuse 3.14 knows nothing of
// it, so this file speaks the protocol beside libfuse and feeds libfuse:
//
//   - A ring entry's request arrives as a fuse_in_header and the first in-arg
//     in the entry's header buffer, and the other args in its payload buffer.
//     The payload buffer has a page of headroom before it; the in_header and
//     the first arg are copied there (at most 168 bytes), which rebuilds the
//     contiguous /dev/fuse layout without moving the payload (write data is
//     not copied), and fuse_session_process_buf() runs the request.
//   - The reply comes back through the custom io's writev (custom_io.cc), which
//     calls RouteReply() first: a reply whose unique belongs to a ring entry is
//     put into the entry (out header into the header buffer, the rest into the
//     payload buffer; a read reply that /dev/fuse would splice is pread into
//     the payload) and the entry's thread commits it.
//   - A queue's entries are dealt to its workers: a thread each, with its own
//     io_uring (SINGLE_ISSUER, DEFER_TASKRUN), not pinned. A worker takes every
//     request its ring brings in one go and commits the replies that are ready
//     with the fetch of the next in one submission. By default each entry has
//     a worker of its own; then a handler may block — wait for a RELEASE
//     (SettleOpens) or for a page lock that a READ queued behind it holds
//     (cache invalidation) — and blocks only its own entry, as with libfuse's
//     multithreaded /dev/fuse loop. A worker with several entries runs only
//     disk reads, writes and fsyncs itself and hands the rest to a pool of
//     threads. A reply sent from another thread (a delayed reply, or the
//     pool's) wakes the worker through an eventfd its ring reads, and the
//     worker commits it: only the ring's owner ever submits.
//   - Each queue registers its first kEagerUringEntries entries at start and
//     holds the rest in reserve; the first delayed reply (RegisterReserve)
//     has every worker register its reserve, for good.
//   - FORGET, INTERRUPT and INIT never come over the ring, and notifications
//     cannot go over it (the kernel refuses unique 0): libfuse's /dev/fuse
//     loop keeps running for them.
//
// Thread-safety: RouteReply, RegisterReserve, UringThreadPayload and the
// counters may be called from any thread; Prepare, Start and Stop from one
// thread at a time.

#ifndef RAMDISKFS_FUSE_URING_H_
#define RAMDISKFS_FUSE_URING_H_

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
#include <sys/uio.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ramdiskfs/options.h"
#include "src/fuse/kernel_abi.h"

namespace ramdiskfs {

// Why this kernel and process cannot use FUSE over io_uring, checked before
// mounting (the fuse module's enable_uring parameter, io_uring_disabled, and
// a probe ring with SQE128), or "" if they may. The text says how to fix it.
std::string UringUnavailableReason();

// The path of the fuse module parameter the administrator sets (the daemon
// only reads it).
inline constexpr char kEnableUringPath[] = "/sys/module/fuse/parameters/enable_uring";

class UringTransport {
 public:
  // `device_fd` is the session's /dev/fuse fd; `depth` entries per queue,
  // dealt to `threads` workers per queue (0, or more than `depth`: one per
  // entry); after a reply, one worker per queue polls for `poll_us` (0: none).
  UringTransport(fuse_session* session, int device_fd, int depth, int threads, int poll_us);
  ~UringTransport();  // Stop()
  UringTransport(const UringTransport&) = delete;
  UringTransport& operator=(const UringTransport&) = delete;

  // Before the INIT reply goes out: allocates every entry's buffers and
  // starts its thread, which makes its ring. `payload_bytes` is
  // max(8192, max_write, max_pages * 4096) of the reply about to be sent.
  // Returns "" if all rings exist (the reply may then carry
  // FUSE_OVER_IO_URING), else why not; on failure everything is undone.
  std::string Prepare(size_t payload_bytes);

  // After the INIT reply was written (the kernel needs INIT done before
  // REGISTER): every entry registers. Returns "" once all have, else why not
  // (the kernel then falls back to /dev/fuse by itself; the threads stay, to
  // serve anything already routed to the ring).
  std::string Start();

  // Ends every entry's thread and closes the rings; idempotent. Called after
  // the session loop returned, before the session closes /dev/fuse.
  void Stop();

  // Custom-io writev hook: if the reply (iov[0] starts with fuse_out_header)
  // belongs to a request taken from a ring entry, puts it there, has it
  // committed, stores the byte count in *result and returns true. Else
  // returns false and the caller writes to /dev/fuse.
  bool RouteReply(const struct iovec* iov, int count, ssize_t* result);

  // A reply is about to be delayed: a request now holds its entry for as
  // long as the delay, so the queues need every entry. The first call logs
  // it and wakes every worker, which registers its reserve; later calls do
  // nothing.
  void RegisterReserve();

  int queues() const { return static_cast<int>(queue_count_); }
  int depth() const { return depth_; }
  // Entries per queue that register at start (the rest: reserve).
  int eager() const { return std::min(depth_, kEagerUringEntries); }
  int threads() const { return threads_; }
  int poll_us() const { return poll_us_; }

  struct Entry;   // one ring entry: its buffers and request (uring.cc)
  struct Worker;  // a thread and its ring, holding some of a queue's entries
  struct Pool;    // threads for the handlers a worker must not run itself

 private:
  friend struct Entry;
  friend struct Worker;
  // Waits until `counter` reaches the number of workers.
  void WaitAll(int* counter);
  void Report(int* counter, const std::string& error);

  fuse_session* const session_;
  const int device_fd_;
  const int depth_;
  const int threads_;
  const int poll_us_;
  // Per queue: a worker is polling it (at most one at a time), and how many
  // of its entries hold a request. A worker polls only when no other
  // worker, of any queue, holds or awaits one: a busy daemon keeps the
  // CPUs busy anyway, and a poller would only take a CPU from the submitters.
  std::unique_ptr<std::atomic<bool>[]> polling_;
  std::unique_ptr<std::atomic<int>[]> serving_;
  // Per queue: when one of its entries last took a request while another
  // entry held or awaited one (MonotonicNowNs). Its window stays off for
  // kQuietAfterConcurrentNs after.
  std::unique_ptr<std::atomic<int64_t>[]> concurrent_ns_;
  size_t queue_count_ = 0;
  std::vector<std::unique_ptr<Entry>> entries_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::unique_ptr<Pool> pool_;
  int stop_pipe_[2] = {-1, -1};
  bool stopped_ = false;
  std::atomic<bool> grow_{false};  // RegisterReserve was called

  // Start-up handshake between Prepare/Start and the entry threads.
  struct Handshake;
  std::unique_ptr<Handshake> handshake_;
};

// ---- session glue: each is one hook line in custom_io.cc or session.cc, in order --
// One session per process, as for the custom io.

// Before mounting: records --transport/--uring-depth/--uring-poll-us and
// checks the kernel.
// Returns false (after logging why and how to enable it) if io_uring was
// required (--transport uring) and is unavailable: exit status 32 (a mount failure).
bool UringConfigure(const Config& config);
// The custom io's read saw the INIT request.
void UringOnInitRequest(const abi::InitIn& init);
// The INIT reply is about to go out: makes the rings and, if that worked,
// sets FUSE_INIT_EXT and FUSE_OVER_IO_URING in `out`.
void UringBeforeInitReply(fuse_session* session, int device_fd, abi::InitOut& out);
// The INIT reply went out (`ok`: the kernel took it): registers every entry.
// Returns false if io_uring was required and did not come up (the session
// must end; UringFatal() is then true).
bool UringAfterInitReply(bool ok);
// The custom io's writev: RouteReply of the session's transport, if any.
bool UringRouteReply(const struct iovec* iov, int count, ssize_t* result);
// A handler delays its reply (ops.cc, ReplyAt): RegisterReserve of the
// transport serving, if any.
void UringReplyDelayed();
// The session loop returned: stops the ring threads (before /dev/fuse closes).
void UringSessionEnd();
bool UringFatal();

// The transport serving requests, for the stats file: "uring" or "dev".
const char* TransportInUse();
// Set by the session when all queues registered (or cleared on failure).
void SetActiveUring(UringTransport* transport);

// ThreadBuffer's hook (filesystem.cc): on a ring entry's thread, the entry's
// payload buffer if it holds `size` bytes, so that a read reply is built
// where the kernel takes it from; else nullptr. Valid until the reply is
// sent; never use it while the request's own payload is still needed.
char* UringThreadPayload(size_t size);

}  // namespace ramdiskfs

#endif  // RAMDISKFS_FUSE_URING_H_
