#include "src/fuse/uring.h"

#include <liburing.h>
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "ramdiskfs/faults.h"  // MonotonicNowNs
#include "ramdiskfs/log.h"
#include "src/fuse/custom_io.h"
#include "src/fuse/inodes.h"
#include "src/fuse/kernel_abi.h"

namespace ramdiskfs {
namespace {

// SQE128: the 80-byte command area holds RingCmdReq (the kernel refuses
// 64-byte SQEs with EINVAL). SINGLE_ISSUER + DEFER_TASKRUN: each ring has one
// thread, which is always the one waiting in io_uring_enter when the kernel
// queues the copy of the next request as task work; deferred task work then
// runs in that wait, with no IPI and no wakeup of an idle task (measured in
// docs/benchmarks.md, "Transport"). TASKRUN_FLAG: the kernel also sets
// IORING_SQ_TASKRUN in the shared SQ flags while such work waits, which is how
// a poller sees, without a syscall, that its own request or a sibling's came.
constexpr unsigned kRingFlags = IORING_SETUP_SQE128 | IORING_SETUP_SINGLE_ISSUER |
                                IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_TASKRUN_FLAG;
// The smallest ring: a worker with one entry has its command, the read of its
// wake eventfd and the poll on the stop pipe in flight.
constexpr unsigned kMinRingEntries = 4;

// How long a queue's poll window stays off after one of its entries took a
// request while another entry, of any queue, held or awaited one
// (docs/design.md, "The poll window").
constexpr int64_t kQuietAfterConcurrentNs = 1'000'000;

// CQE tags; an entry's command is tagged with the Entry's address.
constexpr uint64_t kStopTag = 1;
constexpr uint64_t kWakeTag = 2;

// A command's result that says the connection is gone (unmount, SIGTERM,
// abort): fs/fuse/dev_uring.c fails a REGISTER with ECONNABORTED once the
// teardown has begun, and other commands with ENOTCONN.
bool ConnectionEnded(int res) { return res == -ENOTCONN || res == -ECONNABORTED; }

// The payload buffer is preceded by this much headroom, where the in_header
// and the first in-arg (at most 40 + 128 bytes) are put back in front of the
// payload; the entry's RingHeader lives at its start. One page keeps the
// payload page-aligned.
constexpr size_t kHeadroom = 4096;
static_assert(sizeof(abi::RingHeader) + sizeof(abi::InHeader) + 128 <= kHeadroom);

std::atomic<UringTransport*> g_active{nullptr};

// The number of possible CPUs (the kernel makes a queue for each:
// num_possible_cpus()), from /sys/devices/system/cpu/possible ("0-1", "0-3,8").
size_t PossibleCpus() {
  std::ifstream in("/sys/devices/system/cpu/possible");
  std::string text;
  size_t count = 0;
  if (std::getline(in, text)) {
    for (absl::string_view range : absl::StrSplit(absl::StripAsciiWhitespace(text), ',')) {
      std::pair<absl::string_view, absl::string_view> ends = absl::StrSplit(range, '-');
      unsigned first = 0, last = 0;
      if (!absl::SimpleAtoi(ends.first, &first)) return static_cast<size_t>(get_nprocs_conf());
      last = first;
      if (!ends.second.empty() && !absl::SimpleAtoi(ends.second, &last)) {
        return static_cast<size_t>(get_nprocs_conf());
      }
      if (last >= first) count += last - first + 1;
    }
  }
  return count > 0 ? count : static_cast<size_t>(get_nprocs_conf());
}

std::string ReadFirstLine(const char* path, bool* exists) {
  std::ifstream in(path);
  *exists = static_cast<bool>(in);
  std::string line;
  std::getline(in, line);
  return std::string(absl::StripAsciiWhitespace(line));
}

}  // namespace

// ---- entries, workers and their threads -------------------------------------------

// One ring entry: its buffers and the request it holds.
struct UringTransport::Entry {
  Worker* worker = nullptr;
  unsigned qid = 0;
  int index = 0;  // within the queue

  char* base = nullptr;  // mmap: [RingHeader ... headroom][payload]
  size_t base_bytes = 0;
  abi::RingHeader* header = nullptr;
  char* payload = nullptr;
  size_t payload_cap = 0;
  struct iovec iov[2] = {};
  fuse_buf request = {};  // the request, rebuilt in front of the payload

  // The unique of the request this entry holds while the daemon serves it;
  // 0 once its reply is in the buffers. RouteReply matches replies on it.
  std::atomic<uint64_t> unique{0};
  uint64_t commit_id = 0;  // worker thread only

  // Guarded by worker->mu.
  bool replied = false;   // the reply is in the buffers
  bool in_serve = false;  // the worker thread is still in the handler's call

  // The kernel put a request in the buffers: rebuilds it in front of the
  // payload for fuse_session_process_buf. False if it is malformed; an EIO
  // reply is then in the buffers.
  bool Take();
  // May the worker thread run this request's handler itself when it holds
  // other entries? Only disk reads, writes and fsyncs: they never wait for
  // another FUSE request. Anything else may (a control write waits for a
  // RELEASE; an invalidation waits for a page lock a READ holds) and runs on
  // the pool.
  bool InlineSafe() const;
  void Fill(const struct iovec* iov, int count, ssize_t* result);
};

// One thread and its io_uring, holding `entries` of one queue. It takes the
// requests its ring brings in one go, serves them, and commits the replies
// that are ready, with the fetch of the next ones, in one submission.
struct UringTransport::Worker {
  UringTransport* owner = nullptr;
  unsigned qid = 0;
  int index = 0;  // within the queue
  std::vector<Entry*> entries;
  // Those of `entries` that have not registered yet (index >= eager()):
  // set before the thread starts, then worker thread only.
  std::vector<Entry*> reserve;

  io_uring ring = {};
  bool ring_ok = false;
  // The ring's shared SQ flags, for the other workers to read (null until
  // the ring is set up).
  std::atomic<const unsigned*> sq_flags{nullptr};
  // Replies sent from another thread (a delayed reply, or a handler on the
  // pool) wake the worker through this eventfd, which its ring reads.
  int wake_fd = -1;
  uint64_t wake_value = 0;  // the ring's read of wake_fd lands here

  std::mutex mu;
  std::vector<Entry*> late;  // guarded by mu: replied from elsewhere, to commit

  // Worker thread only.
  int held = 0;                                 // entries holding a request
  bool replied_late = false;                    // this round committed a reply that came late
  std::vector<std::pair<uint64_t, int>> batch;  // this round's CQEs
  std::vector<Entry*> ready;                    // `late`, taken to commit

  std::thread thread;

  void Run();
  bool SetUpRing();
  void PrepCommand(Entry* e, uint32_t op, uint64_t id);
  void ArmWake();
  // Completes the ring's read of wake_fd, from any thread. Cannot fail short
  // of a bad fd: an eventfd's counter does not overflow at one write per
  // request.
  void Wake() {
    const uint64_t one = 1;
    (void)!write(wake_fd, &one, sizeof(one));
  }
  // Once RegisterReserve was called: prepares the REGISTER of every entry
  // in `reserve`, adds them to *live and empties it.
  void RegisterReserveIfAsked(int* live);
  // Takes every CQE the ring holds into `batch`.
  void Gather();
  // One CQE; false when the worker must end.
  bool Handle(uint64_t tag, int res, int* live);
  void Serve(Entry* e);
  void Commit(Entry* e);
  // With a poll window, nothing held and no other worker of the queue
  // polling: submits the prepared commits without waiting, polls the ring
  // for the next request until one comes or the window ends, and returns
  // true (the caller's wait then takes the CQE, or sleeps). False: the
  // caller commits and waits as usual. *r: the submit's result.
  bool PollAfterCommit(int* r);
  // A request waits in the kernel for this worker's thread (its task work
  // is queued and has not run). Any thread may ask.
  bool RequestWaiting() const;
  // Some other worker, of any queue, holds a request or has one waiting;
  // `mine` is how many of this queue's serving_ are this worker's own.
  bool OthersBusy(int mine) const;
};

// Threads for the requests a worker must not run itself (Entry::InlineSafe).
// One thread per request in flight, kept for the next: a handler here may
// wait for another request that is itself on the pool.
struct UringTransport::Pool {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<Entry*> work;
  int available = 0;  // idle threads no request has claimed
  int tokens = 0;     // requests handed to idle threads, not yet taken
  bool stop = false;
  std::vector<std::thread> threads;

  void Submit(fuse_session* session, Entry* e);
  void Run(fuse_session* session, bool claimed);
  void Stop();
};

namespace {
// The entry whose handler runs on this thread (a worker's or the pool's).
thread_local UringTransport::Entry* t_entry = nullptr;

void RunHandler(fuse_session* session, UringTransport::Entry* e) {
  t_entry = e;
  fuse_session_process_buf(session, &e->request);
  t_entry = nullptr;
}
}  // namespace

struct UringTransport::Handshake {
  std::mutex mu;
  std::condition_variable cv;
  int prepared = 0;    // workers whose ring exists (or failed)
  int registered = 0;  // workers that sent REGISTER (or failed)
  std::string error;   // the first failure
  enum class Go { kWait, kRegister, kAbort } go = Go::kWait;
  std::atomic<bool> stopping{false};
};

bool UringTransport::Entry::Take() {
  abi::InHeader in;
  std::memcpy(&in, header->in_out, sizeof(in));
  const uint32_t payload_sz = header->ring_ent_in_out.payload_sz;
  commit_id = header->ring_ent_in_out.commit_id;
  {
    std::lock_guard lock(worker->mu);
    replied = false;
    in_serve = true;
  }
  // in.len counts the header and every arg; the payload holds all args but
  // the first, which is in op_in: what is left is the first arg's size.
  const size_t fixed = sizeof(in) + payload_sz;
  if (in.len < fixed || in.len - fixed > sizeof(header->op_in) || payload_sz > payload_cap) {
    Log("io_uring queue ", qid, ": malformed request (opcode ", in.opcode, ", len ", in.len,
        ", payload ", payload_sz, "): EIO");
    abi::OutHeader out = {sizeof(abi::OutHeader), -EIO, commit_id};
    std::memcpy(header->in_out, &out, sizeof(out));
    header->ring_ent_in_out.payload_sz = 0;
    std::lock_guard lock(worker->mu);
    replied = true;
    in_serve = false;
    return false;
  }
  const size_t op_len = in.len - fixed;
  char* start = payload - op_len - sizeof(in);
  std::memcpy(start, &in, sizeof(in));
  std::memcpy(start + sizeof(in), header->op_in, op_len);
  unique.store(in.unique, std::memory_order_release);
  request = {};
  request.size = in.len;
  request.mem = start;
  return true;
}

bool UringTransport::Entry::InlineSafe() const {
  abi::InHeader in;
  std::memcpy(&in, request.mem, sizeof(in));
  const bool data =
      in.opcode == abi::kOpRead || in.opcode == abi::kOpWrite || in.opcode == abi::kOpFsync;
  return data && IsDiskFileIno(in.nodeid);
}

void UringTransport::Entry::Fill(const struct iovec* iov, int count, ssize_t* result) {
  size_t total = 0;
  for (int i = 0; i < count; ++i) total += iov[i].iov_len;
  abi::OutHeader out;
  std::memcpy(&out, iov[0].iov_base, sizeof(out));
  size_t n = 0;
  int err = 0;
  const SpliceReply* splice = ThreadSpliceReply();
  if (count == 2 && iov[1].iov_base == splice && iov[1].iov_len == sizeof(*splice) &&
      iov[0].iov_len == sizeof(out)) {
    // A read that /dev/fuse would splice: the ring has no splice, so the
    // pages go straight from the backing file into the payload (one copy;
    // the kernel's copy into the reader's pages is the other).
    if (splice->length > payload_cap) {
      err = EIO;
    } else {
      absl::StatusOr<size_t> got = splice->store->Read(splice->offset, payload, splice->length);
      if (!got.ok() || *got < splice->length) err = EIO;
      n = splice->length;
    }
  } else {
    for (int i = 0; i < count && !err; ++i) {
      const char* src = static_cast<const char*>(iov[i].iov_base);
      size_t len = iov[i].iov_len;
      if (i == 0) {
        src += sizeof(out);
        len -= sizeof(out);
      }
      if (n + len > payload_cap) {
        err = EIO;
        break;
      }
      // Data built in place (ThreadBuffer is the payload on ring threads).
      if (src != payload + n) std::memcpy(payload + n, src, len);
      n += len;
    }
  }
  if (err) {
    Log("io_uring queue ", qid, ": reply to request ", out.unique, " does not fit (", total,
        " bytes): EIO");
    out.error = -err;
    n = 0;
  }
  out.len = static_cast<uint32_t>(sizeof(out) + n);
  std::memcpy(header->in_out, &out, sizeof(out));
  header->ring_ent_in_out.payload_sz = static_cast<uint32_t>(n);
  unique.store(0, std::memory_order_relaxed);
  bool wake = false;
  {
    std::lock_guard lock(worker->mu);
    replied = true;
    // Still in the worker's handler call: the worker commits it when the
    // call returns. Else the worker is elsewhere and must be told.
    wake = !in_serve;
    if (wake) worker->late.push_back(this);
  }
  if (wake) worker->Wake();
  *result = static_cast<ssize_t>(total);
}

bool UringTransport::Worker::SetUpRing() {
  wake_fd = eventfd(0, EFD_CLOEXEC);
  if (wake_fd < 0) {
    owner->Report(&owner->handshake_->prepared, absl::StrCat("eventfd: ", strerror(errno)));
    return false;
  }
  // In flight: a command per entry, the read of wake_fd and the poll on the
  // stop pipe; a round prepares at most a commit per entry and the read.
  unsigned size = kMinRingEntries;
  while (size < entries.size() + 2) size *= 2;
  io_uring_params params = {};
  params.flags = kRingFlags;
  int r = io_uring_queue_init_params(size, &ring, &params);
  if (r < 0) {
    owner->Report(&owner->handshake_->prepared, absl::StrCat("io_uring_setup: ", strerror(-r)));
    return false;
  }
  ring_ok = true;
  sq_flags.store(ring.sq.kflags, std::memory_order_release);
  // /dev/fuse as fixed file 0: no fget/fput per command.
  int fd = owner->device_fd_;
  r = io_uring_register_files(&ring, &fd, 1);
  if (r < 0) {
    owner->Report(&owner->handshake_->prepared,
                  absl::StrCat("io_uring_register_files: ", strerror(-r)));
    return false;
  }
  (void)io_uring_register_ring_fd(&ring);  // saves an fdget per enter; optional
  owner->Report(&owner->handshake_->prepared, "");
  return true;
}

void UringTransport::Worker::PrepCommand(Entry* e, uint32_t op, uint64_t id) {
  // Never null: the ring has a slot for everything a round prepares.
  io_uring_sqe* sqe = io_uring_get_sqe(&ring);
  if (sqe == nullptr) abort();
  std::memset(static_cast<void*>(sqe), 0, 128);  // SQE128: the command area too
  sqe->opcode = IORING_OP_URING_CMD;
  sqe->flags = IOSQE_FIXED_FILE;
  sqe->fd = 0;
  sqe->cmd_op = op;
  sqe->addr = reinterpret_cast<uint64_t>(e->iov);
  sqe->len = 2;
  sqe->user_data = reinterpret_cast<uint64_t>(e);
  abi::RingCmdReq req = {};
  req.commit_id = id;
  req.qid = static_cast<uint16_t>(qid);
  std::memcpy(sqe->cmd, &req, sizeof(req));
}

void UringTransport::Worker::ArmWake() {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring);
  if (sqe == nullptr) abort();
  io_uring_prep_read(sqe, wake_fd, &wake_value, sizeof(wake_value), 0);
  sqe->user_data = kWakeTag;
}

void UringTransport::Worker::RegisterReserveIfAsked(int* live) {
  if (reserve.empty() || !owner->grow_.load(std::memory_order_acquire)) return;
  // The kernel takes a REGISTER at any time: the entry joins its queue's
  // available list and gets the next request. A refusal comes back as the
  // entry's CQE, which Handle counts as an entry that stopped.
  for (Entry* e : reserve) PrepCommand(e, abi::kRingCmdRegister, 0);
  *live += static_cast<int>(reserve.size());
  reserve.clear();
}

void UringTransport::Worker::Gather() {
  unsigned head = 0;
  unsigned seen = 0;
  io_uring_cqe* cqe = nullptr;
  io_uring_for_each_cqe(&ring, head, cqe) {
    batch.emplace_back(cqe->user_data, cqe->res);
    ++seen;
  }
  io_uring_cq_advance(&ring, seen);
}

void UringTransport::Worker::Run() {
  char name[16];
  snprintf(name, sizeof(name), "rdfs-q%u.%d", qid, index);
  pthread_setname_np(pthread_self(), name);
  // Not pinned to the queue's CPU. The kernel queues a request on the queue
  // of the CPU its caller runs on, so pinned threads kept every request of
  // one submitter on that submitter's CPU: at QD16 one fio job and 16 entry
  // threads shared one CPU while the other idled (0.45-0.55x /dev/fuse).
  // Floating, the scheduler spreads them; QD1 is no slower (A/B in
  // docs/benchmarks.md, "Entry threads float").
  Handshake& hs = *owner->handshake_;
  if (!SetUpRing()) return;
  {
    std::unique_lock lock(hs.mu);
    hs.cv.wait(lock, [&] { return hs.go != Handshake::Go::kWait; });
    if (hs.go == Handshake::Go::kAbort) return;
  }

  io_uring_sqe* sqe = io_uring_get_sqe(&ring);
  io_uring_prep_poll_add(sqe, owner->stop_pipe_[0], POLLIN);
  sqe->user_data = kStopTag;
  ArmWake();
  int live = 0;
  for (Entry* e : entries) {
    if (e->index >= owner->eager()) continue;  // in reserve
    PrepCommand(e, abi::kRingCmdRegister, 0);
    ++live;
  }
  int r = io_uring_submit(&ring);
  if (r < 0) {
    owner->Report(&hs.registered, absl::StrCat("io_uring_submit: ", strerror(-r)));
    return;
  }
  // The kernel runs REGISTER inline: a refusal is already in the CQ. A CQE
  // with res >= 0 is a first request, left for the loop.
  batch.reserve(entries.size() + 2);
  Gather();
  std::string refused;
  for (auto it = batch.begin(); it != batch.end();) {
    const auto [tag, res] = *it;
    if (tag == kStopTag || tag == kWakeTag || res >= 0) {
      ++it;
      continue;
    }
    // The connection ended while the queues registered (a SIGTERM or umount
    // right after the mount; the kernel serves requests once every queue has
    // one entry). That is a shutdown, not a failed transport.
    if (!ConnectionEnded(res) && refused.empty()) {
      refused = absl::StrCat("FUSE_IO_URING_CMD_REGISTER on queue ", qid, ": ", strerror(-res));
    }
    --live;
    it = batch.erase(it);
  }
  owner->Report(&hs.registered, refused);
  // The entries that did register serve what the kernel already gave them;
  // a worker whose entries are all in reserve waits for the word to register.
  if (live == 0 && reserve.empty()) return;
  for (;;) {
    replied_late = false;
    bool go_on = true;
    for (const auto& [tag, res] : batch) {
      go_on = Handle(tag, res, &live);
      if (!go_on) break;
    }
    batch.clear();
    if (!go_on) break;
    if (!PollAfterCommit(&r)) {
      // Commit the ready replies and wait for the next request, in one
      // syscall.
      do {
        r = io_uring_submit_and_wait(&ring, 1);
      } while (r == -EINTR || r == -EAGAIN);
      if (r < 0) {
        Log("io_uring queue ", qid, ": commit failed: ", strerror(-r));
        break;
      }
    }
    io_uring_cqe* cqe = nullptr;
    r = io_uring_wait_cqe(&ring, &cqe);
    if (r == -EINTR || r == -EAGAIN || r == -ETIME) continue;
    if (r < 0) {
      Log("io_uring queue ", qid, ": waiting failed: ", strerror(-r));
      break;
    }
    Gather();
  }
}

bool UringTransport::Worker::Handle(uint64_t tag, int res, int* live) {
  if (tag == kStopTag) return false;
  if (tag == kWakeTag) {
    {
      std::lock_guard lock(mu);
      ready.swap(late);  // both keep their capacity: no allocation per wake
    }
    for (Entry* e : ready) Commit(e);
    replied_late = replied_late || !ready.empty();
    ready.clear();
    if (res < 0 && res != -EINTR && res != -EAGAIN) {
      Log("io_uring queue ", qid, ": reading the wake eventfd failed: ", strerror(-res));
    }
    RegisterReserveIfAsked(live);
    ArmWake();
    return true;
  }
  Entry* e = reinterpret_cast<Entry*>(tag);
  if (res < 0) {
    // The connection ended (unmount, abort), or the command was cancelled.
    // Anything else costs this entry; the worker keeps its other entries.
    if (!ConnectionEnded(res) && res != -ECANCELED && !owner->handshake_->stopping.load()) {
      Log("io_uring queue ", qid, " entry ", e->index, " stops: ", strerror(-res));
    }
    // A worker whose entries all failed still owes its reserve a REGISTER.
    return --*live > 0 || !reserve.empty();
  }
  ++held;
  // Only the poll window reads serving_: without it, no shared counter on
  // every request.
  if (owner->poll_us_ > 0 &&
      (owner->serving_[qid].fetch_add(1, std::memory_order_relaxed) > 0 || OthersBusy(held))) {
    // Another request in the daemon at the same time: it is busy, so stand
    // this queue's window down for a while (see PollAfterCommit).
    owner->concurrent_ns_[qid].store(MonotonicNowNs(), std::memory_order_relaxed);
  }
  Serve(e);
  return true;
}

void UringTransport::Worker::Serve(Entry* e) {
  if (!e->Take()) return Commit(e);
  if (entries.size() > 1 && !e->InlineSafe()) {
    {
      std::lock_guard lock(mu);
      e->in_serve = false;  // its reply now comes from the pool: a late one
    }
    return owner->pool_->Submit(owner->session_, e);
  }
  RunHandler(owner->session_, e);
  bool replied = false;
  {
    std::lock_guard lock(mu);
    e->in_serve = false;
    replied = e->replied;
  }
  // Not replied: a handler that replies from another thread (a delayed
  // reply); Fill then queues the entry on `late` and wakes this thread.
  if (replied) Commit(e);
}

void UringTransport::Worker::Commit(Entry* e) {
  --held;
  if (owner->poll_us_ > 0) owner->serving_[qid].fetch_sub(1, std::memory_order_relaxed);
  PrepCommand(e, abi::kRingCmdCommitAndFetch, e->commit_id);
}

bool UringTransport::Worker::PollAfterCommit(int* r) {
  // The kernel gives a new request to the entry that became available last
  // (and to a committing entry first), so at low queue depth the poller is
  // the worker that gets the next request. DEFER_TASKRUN: a request reaches
  // the CQ only when this thread enters the kernel; TASKRUN_FLAG says when
  // that is worth it, so the poll spins on the flag and then calls
  // io_uring_get_events (an enter that never sleeps) and peeks.
  const int64_t window_ns = int64_t{owner->poll_us_} * 1000;
  std::atomic<bool>& polling = owner->polling_[qid];
  // No poll after a reply that came late from another thread (injected
  // latency or throttle: the next request is at least that far away, and a
  // poll then cost the loop device 60-150 us per write), nor while this
  // worker still holds a request. None while any other worker, of any
  // queue, holds a request or has one waiting, nor within
  // kQuietAfterConcurrentNs of the last time that was so: between the
  // bursts of a deep queue the daemon looks idle for a moment, and a poller
  // that starts then takes a CPU the submitters and the woken workers need
  // (docs/design.md, "The poll window").
  if (window_ns == 0 || replied_late || held > 0 || OthersBusy(0) ||
      MonotonicNowNs() - owner->concurrent_ns_[qid].load(std::memory_order_relaxed) <
          kQuietAfterConcurrentNs ||
      polling.exchange(true, std::memory_order_acquire)) {
    return false;
  }
  do {
    *r = io_uring_submit(&ring);  // the commits, without waiting
  } while (*r == -EINTR || *r == -EAGAIN);
  if (*r >= 0) {
    // Spin on the shared flags; enter the kernel only when our request came.
    // Another worker with a request, held or waiting, means the daemon is
    // busy again: the window stands down and leaves the CPU to it.
    const int64_t until = MonotonicNowNs() + window_ns;
    io_uring_cqe* cqe = nullptr;
    do {
      if (RequestWaiting()) {
        (void)io_uring_get_events(&ring);
        if (io_uring_peek_cqe(&ring, &cqe) == 0) break;
      }
      if (OthersBusy(0)) {
        owner->concurrent_ns_[qid].store(MonotonicNowNs(), std::memory_order_relaxed);
        break;
      }
    } while (MonotonicNowNs() < until);
  }
  polling.store(false, std::memory_order_release);
  if (*r < 0) {
    Log("io_uring queue ", qid, ": commit failed: ", strerror(-*r));
    return false;
  }
  return true;
}

bool UringTransport::Worker::RequestWaiting() const {
  const unsigned* flags = sq_flags.load(std::memory_order_acquire);
  return flags != nullptr && (IO_URING_READ_ONCE(*flags) & IORING_SQ_TASKRUN) != 0;
}

bool UringTransport::Worker::OthersBusy(int mine) const {
  for (size_t q = 0; q < owner->queue_count_; ++q) {
    const int serving = owner->serving_[q].load(std::memory_order_relaxed);
    if (serving > (q == qid ? mine : 0)) return true;
  }
  for (const auto& w : owner->workers_) {
    if (w.get() != this && w->RequestWaiting()) return true;
  }
  return false;
}

void UringTransport::Pool::Submit(fuse_session* session, Entry* e) {
  std::lock_guard lock(mu);
  work.push_back(e);
  if (available > 0) {
    --available;
    ++tokens;
    cv.notify_one();
  } else {
    threads.emplace_back(&Pool::Run, this, session, true);
  }
}

void UringTransport::Pool::Run(fuse_session* session, bool claimed) {
  pthread_setname_np(pthread_self(), "rdfs-ring-pool");
  std::unique_lock lock(mu);
  for (;;) {
    if (!claimed) {
      ++available;
      cv.wait(lock, [&] { return tokens > 0 || stop; });
      if (tokens == 0) return;  // stopping, and nothing claimed by this thread
      --tokens;
    }
    claimed = false;
    Entry* e = work.front();
    work.pop_front();
    lock.unlock();
    RunHandler(session, e);
    lock.lock();
  }
}

void UringTransport::Pool::Stop() {
  {
    std::lock_guard lock(mu);
    stop = true;
    cv.notify_all();
  }
  // No worker submits any more: the workers were joined first.
  for (std::thread& t : threads) t.join();
  threads.clear();
}

// ---- the transport ---------------------------------------------------------------

UringTransport::UringTransport(fuse_session* session, int device_fd, int depth, int threads,
                               int poll_us)
    : session_(session),
      device_fd_(device_fd),
      depth_(depth),
      threads_(threads <= 0 || threads > depth ? depth : threads),
      poll_us_(poll_us) {}

UringTransport::~UringTransport() {
  Stop();
  for (auto& e : entries_) {
    if (e->base) munmap(e->base, e->base_bytes);
  }
  for (auto& w : workers_) {
    if (w->wake_fd >= 0) close(w->wake_fd);
  }
}

void UringTransport::Report(int* counter, const std::string& error) {
  std::lock_guard lock(handshake_->mu);
  ++*counter;
  if (!error.empty() && handshake_->error.empty()) handshake_->error = error;
  handshake_->cv.notify_all();
}

void UringTransport::WaitAll(int* counter) {
  std::unique_lock lock(handshake_->mu);
  handshake_->cv.wait(lock, [&] { return *counter >= static_cast<int>(workers_.size()); });
}

std::string UringTransport::Prepare(size_t payload_bytes) {
  queue_count_ = PossibleCpus();
  polling_ = std::make_unique<std::atomic<bool>[]>(queue_count_);
  serving_ = std::make_unique<std::atomic<int>[]>(queue_count_);
  concurrent_ns_ = std::make_unique<std::atomic<int64_t>[]>(queue_count_);
  handshake_ = std::make_unique<Handshake>();
  pool_ = std::make_unique<Pool>();
  if (pipe2(stop_pipe_, O_CLOEXEC) != 0) return absl::StrCat("pipe2: ", strerror(errno));
  const size_t payload_cap = (payload_bytes + 4095) / 4096 * 4096;
  for (size_t q = 0; q < queue_count_; ++q) {
    const size_t first_worker = workers_.size();
    for (int t = 0; t < threads_; ++t) {
      auto w = std::make_unique<Worker>();
      w->owner = this;
      w->qid = static_cast<unsigned>(q);
      w->index = t;
      workers_.push_back(std::move(w));
    }
    for (int i = 0; i < depth_; ++i) {
      auto e = std::make_unique<Entry>();
      // Entries are dealt to the queue's workers in turn.
      e->worker = workers_[first_worker + static_cast<size_t>(i % threads_)].get();
      e->worker->entries.push_back(e.get());
      if (i >= eager()) e->worker->reserve.push_back(e.get());
      e->qid = static_cast<unsigned>(q);
      e->index = i;
      e->payload_cap = payload_cap;
      e->base_bytes = kHeadroom + payload_cap;
      void* mem =
          mmap(nullptr, e->base_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (mem == MAP_FAILED) {
        std::string why = absl::StrCat("mmap of ring buffers: ", strerror(errno));
        Stop();
        return why;
      }
      e->base = static_cast<char*>(mem);
      e->header = reinterpret_cast<abi::RingHeader*>(e->base);
      e->payload = e->base + kHeadroom;
      e->iov[0] = {e->header, sizeof(abi::RingHeader)};
      e->iov[1] = {e->payload, payload_cap};
      entries_.push_back(std::move(e));
    }
  }
  for (auto& w : workers_) w->thread = std::thread(&Worker::Run, w.get());
  WaitAll(&handshake_->prepared);
  std::string error;
  {
    std::lock_guard lock(handshake_->mu);
    error = handshake_->error;
  }
  if (!error.empty()) Stop();
  return error;
}

std::string UringTransport::Start() {
  {
    std::lock_guard lock(handshake_->mu);
    handshake_->go = Handshake::Go::kRegister;
    handshake_->cv.notify_all();
  }
  WaitAll(&handshake_->registered);
  std::lock_guard lock(handshake_->mu);
  return handshake_->error;
}

void UringTransport::Stop() {
  if (stopped_ || !handshake_) return;
  stopped_ = true;
  if (g_active.load() == this) g_active = nullptr;
  {
    std::lock_guard lock(handshake_->mu);
    handshake_->stopping = true;
    if (handshake_->go == Handshake::Go::kWait) handshake_->go = Handshake::Go::kAbort;
    handshake_->cv.notify_all();
  }
  // EOF on the pipe completes every ring's poll: each thread leaves its wait.
  if (stop_pipe_[1] >= 0) close(stop_pipe_[1]);
  stop_pipe_[1] = -1;
  // Every worker ends before any ring goes: a worker still polling reads the
  // other rings' SQ flags (OthersBusy), and a ring's exit unmaps them.
  for (auto& w : workers_) {
    if (w->thread.joinable()) w->thread.join();
  }
  for (auto& w : workers_) {
    // Closing the ring cancels the commands still in the kernel (the
    // entries', if the connection is alive) and drops its /dev/fuse
    // reference.
    if (w->ring_ok) io_uring_queue_exit(&w->ring);
    w->ring_ok = false;
  }
  // A handler still on the pool replies into an entry no thread commits.
  if (pool_) pool_->Stop();
  if (stop_pipe_[0] >= 0) close(stop_pipe_[0]);
  stop_pipe_[0] = -1;
}

void UringTransport::RegisterReserve() {
  if (eager() >= depth_ || grow_.exchange(true, std::memory_order_acq_rel)) return;
  Log("transport uring: a reply is delayed: the other ", depth_ - eager(),
      " entries of each queue register now");
  // Only a ring's owner submits: each worker registers its own reserve when
  // its wake read completes (an empty wake for the workers without one).
  for (auto& w : workers_) w->Wake();
}

bool UringTransport::RouteReply(const struct iovec* iov, int count, ssize_t* result) {
  if (count < 1 || iov[0].iov_len < sizeof(abi::OutHeader)) return false;
  abi::OutHeader out;
  std::memcpy(&out, iov[0].iov_base, sizeof(out));
  if (out.unique == 0) return false;  // a notification: /dev/fuse only
  Entry* e = t_entry;
  if (e == nullptr || e->worker->owner != this ||
      e->unique.load(std::memory_order_acquire) != out.unique) {
    // A reply from another thread (or to a request read from /dev/fuse).
    e = nullptr;
    for (auto& candidate : entries_) {
      if (candidate->unique.load(std::memory_order_acquire) == out.unique) {
        e = candidate.get();
        break;
      }
    }
    if (e == nullptr) return false;
  }
  e->Fill(iov, count, result);
  return true;
}

// ---- process-wide --------------------------------------------------------------

std::string UringUnavailableReason() {
  bool exists = false;
  const std::string enabled = ReadFirstLine(kEnableUringPath, &exists);
  if (!exists) {
    return absl::StrCat("this kernel has no FUSE over io_uring (", kEnableUringPath,
                        " is missing: it needs Linux 6.14+ built with CONFIG_FUSE_IO_URING)");
  }
  if (enabled != "Y" && enabled != "1") {
    return absl::StrCat("FUSE over io_uring is off (", kEnableUringPath, " is ", enabled,
                        "); the administrator turns it on with 'echo 1 > ", kEnableUringPath,
                        "' as root, or fuse.enable_uring=1 on the kernel command line");
  }
  bool sysctl_exists = false;
  const std::string disabled = ReadFirstLine("/proc/sys/kernel/io_uring_disabled", &sysctl_exists);
  if (disabled == "2") {
    return "io_uring is disabled on this system (sysctl kernel.io_uring_disabled=2)";
  }
  io_uring probe;
  io_uring_params params = {};
  params.flags = kRingFlags;
  int r = io_uring_queue_init_params(2, &probe, &params);
  if (r < 0) {
    return absl::StrCat("this process cannot make an io_uring with SQE128 (", strerror(-r),
                        disabled == "1" ? "; sysctl kernel.io_uring_disabled=1 limits it to "
                                          "CAP_SYS_ADMIN and kernel.io_uring_group"
                                        : "",
                        ")");
  }
  io_uring_queue_exit(&probe);
  return "";
}

// ---- session glue ----------------------------------------------------------------

namespace {
struct SessionGlue {
  Transport requested = Transport::kDev;
  int depth = kDefaultUringDepth;
  int threads = kDefaultUringThreads;
  int poll_us = kDefaultUringPollUs;
  std::atomic<bool> kernel_offers{false};
  std::unique_ptr<UringTransport> transport;
  bool offered = false;  // the INIT reply carried FUSE_OVER_IO_URING
  // = transport once offered: read by every thread that replies.
  std::atomic<UringTransport*> routed{nullptr};
  std::atomic<bool> fatal{false};
};
SessionGlue g_glue;

// What a failure to bring io_uring up means: an error with --transport
// uring, one log line with auto.
void UringFailed(const std::string& why) {
  if (g_glue.requested == Transport::kUring) {
    Log("--transport uring: ", why);
    g_glue.fatal = true;
  } else {
    Log("transport dev (/dev/fuse): ", why);
  }
}
}  // namespace

bool UringConfigure(const Config& config) {
  g_glue.requested = config.transport;
  g_glue.depth = config.uring_depth;
  g_glue.threads = config.uring_threads;
  g_glue.poll_us = config.uring_poll_us;
  if (config.transport == Transport::kDev) return true;
  std::string why = UringUnavailableReason();
  if (why.empty()) return true;
  if (config.transport == Transport::kUring) {
    Log("--transport uring: ", why, "; or start with --transport auto or dev");
    return false;
  }
  Log("transport dev (/dev/fuse): ", why);
  g_glue.requested = Transport::kDev;  // auto, decided
  return true;
}

void UringOnInitRequest(const abi::InitIn& init) {
  g_glue.kernel_offers = (init.flags & abi::kInitExt) && (init.flags2 & abi::kFlags2OverIoUring);
}

void UringBeforeInitReply(fuse_session* session, int device_fd, abi::InitOut& out) {
  if (g_glue.requested == Transport::kDev || g_glue.transport) return;
  // Failures are logged here, before the reply: once it is out, requests flow
  // (over /dev/fuse), and a log line must not trail the requests it concerns.
  if (!g_glue.kernel_offers) {
    return UringFailed(absl::StrCat("the kernel's INIT did not offer FUSE_OVER_IO_URING (is ",
                                    kEnableUringPath, " still Y?)"));
  }
  // The kernel's payload size: max(FUSE_MIN_READ_BUFFER, max_write, max_pages
  // pages) (fs/fuse/dev_uring.c: fuse_uring_create()); max_pages is 32 unless
  // the reply sets FUSE_MAX_PAGES.
  const size_t max_pages = (out.flags & abi::kMaxPages) ? std::max<size_t>(out.max_pages, 1) : 32;
  const size_t payload =
      std::max({size_t{8192}, size_t{out.max_write}, size_t{4096}, max_pages * 4096});
  g_glue.transport = std::make_unique<UringTransport>(session, device_fd, g_glue.depth,
                                                      g_glue.threads, g_glue.poll_us);
  std::string why = g_glue.transport->Prepare(payload);
  if (!why.empty()) return UringFailed(why);
  out.flags |= abi::kInitExt;
  out.flags2 |= abi::kFlags2OverIoUring;
  g_glue.offered = true;
  g_glue.routed.store(g_glue.transport.get(), std::memory_order_release);
}

bool UringAfterInitReply(bool ok) {
  if (!g_glue.offered) return !g_glue.fatal;
  // Logged before the entries register: the kernel holds requests back until
  // every queue has one, so this line comes before any request is served.
  Log("transport uring: ", g_glue.transport->queues(), " queue(s) x ", g_glue.transport->depth(),
      " entries on ", g_glue.transport->threads(), " thread(s) each; poll window ",
      g_glue.transport->poll_us(), " us",
      g_glue.transport->eager() < g_glue.transport->depth()
          ? absl::StrCat("; ", g_glue.transport->eager(),
                         " entries each register now, the rest at the first delayed reply")
          : "");
  SetActiveUring(g_glue.transport.get());  // stats must say uring from the first request
  std::string why = ok ? g_glue.transport->Start() : "the INIT reply failed";
  if (!why.empty()) {
    // The kernel cleared fc->io_uring on the failed REGISTER and serves
    // /dev/fuse again; entries that did register stay up until the end.
    SetActiveUring(nullptr);
    UringFailed(why);
    return !g_glue.fatal;
  }
  return true;
}

bool UringRouteReply(const struct iovec* iov, int count, ssize_t* result) {
  UringTransport* t = g_glue.routed.load(std::memory_order_acquire);
  return t != nullptr && t->RouteReply(iov, count, result);
}

void UringReplyDelayed() {
  if (UringTransport* t = g_active.load(std::memory_order_acquire)) t->RegisterReserve();
}

void UringSessionEnd() {
  if (g_glue.transport) g_glue.transport->Stop();
}

bool UringFatal() { return g_glue.fatal.load(); }

const char* TransportInUse() { return g_active.load() ? "uring" : "dev"; }

void SetActiveUring(UringTransport* transport) { g_active = transport; }

char* UringThreadPayload(size_t size) {
  UringTransport::Entry* e = t_entry;
  return e != nullptr && size <= e->payload_cap ? e->payload : nullptr;
}

}  // namespace ramdiskfs
