#include "src/fuse/custom_io.h"

#include <fcntl.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>

#include "src/fuse/filesystem.h"
#include "src/fuse/kernel_abi.h"
#include "src/fuse/notify.h"
#include "src/fuse/uring.h"

namespace ramdiskfs {

SpliceReply* ThreadSpliceReply() {
  thread_local SpliceReply reply;
  return &reply;
}

namespace {

Filesystem& FsOf(void* userdata) { return *static_cast<Filesystem*>(userdata); }

thread_local uint64_t t_request_unique = 0;

// The kernel copies a request into the reader's buffer with get_user_pages.
// A page not yet present takes its slow path, which gives up when a fatal
// signal is pending; the kernel then ends the request with EIO instead of
// leaving it for the next worker to have resent. A SIGKILLed worker's threads
// all have one pending, so every page of a thread's buffer is made present,
// writable, before its first read (docs/survive.md, "What a kill could fail").
void TouchReceiveBuffer(void* buf, size_t len) {
  thread_local void* touched = nullptr;
  thread_local size_t touched_len = 0;
  if (buf == touched && len <= touched_len) return;
  std::memset(buf, 0, len);
  touched = buf;
  touched_len = len;
}

ssize_t IoRead(int fd, void* buf, size_t len, void* userdata) {
  Filesystem& fs = FsOf(userdata);
  CustomIoState& io = fs.io_state();
  ssize_t n = -1;
  bool replayed = false;
  if (io.replaying.load(std::memory_order_acquire)) {
    bool expected = true;
    if (io.replay_pending.compare_exchange_strong(expected, false) &&
        io.replay_init.size() <= len) {
      std::memcpy(buf, io.replay_init.data(), io.replay_init.size());
      n = static_cast<ssize_t>(io.replay_init.size());
      replayed = true;
    } else {
      while (!io.init_done.load(std::memory_order_acquire)) usleep(200);
    }
  }
  if (!replayed) {
    if (fs.survive().supervised) TouchReceiveBuffer(buf, len);
    n = read(fd, buf, len);
  }
  if (n >= static_cast<ssize_t>(sizeof(abi::InHeader))) {
    abi::InHeader h;
    std::memcpy(&h, buf, sizeof(h));
    t_request_unique = h.unique;
  }
  if (n >= static_cast<ssize_t>(sizeof(abi::InHeader) + sizeof(abi::InitIn)) &&
      !io.init_done.load(std::memory_order_relaxed)) {
    abi::InHeader header;
    std::memcpy(&header, buf, sizeof(header));
    if (header.opcode == abi::kOpInit) {
      abi::InitIn init;
      std::memcpy(&init, static_cast<char*>(buf) + sizeof(header), sizeof(init));
      const bool ext = init.flags & abi::kInitExt;
      ConnectionState& conn = fs.passthrough().connection();
      conn.kernel_offers_passthrough = ext && (init.flags2 & abi::kFlags2Passthrough);
      conn.kernel_offers_allow_mmap = ext && (init.flags2 & abi::kFlags2DirectIoAllowMmap);
      UringOnInitRequest(init);  // [uring hook]
      io.init_unique = header.unique;
      if (!replayed && io.on_init_request) {
        io.on_init_request(std::string_view(static_cast<const char*>(buf), n));
      }
    }
  }
  return n;
}

// A pipe per thread for splicing read replies, as big as the system allows
// an unprivileged process (fs.pipe-max-size; CAP_SYS_RESOURCE is not assumed).
struct ThreadPipe {
  int read_fd = -1;
  int write_fd = -1;
  size_t capacity = 0;
  ~ThreadPipe() { Close(); }
  void Close() {
    if (read_fd >= 0) close(read_fd);
    if (write_fd >= 0) close(write_fd);
    read_fd = write_fd = -1;
  }
  bool Open() {
    if (read_fd >= 0) return true;
    int fds[2];
    if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) return false;
    read_fd = fds[0];
    write_fd = fds[1];
    int got = fcntl(write_fd, F_SETPIPE_SZ, static_cast<int>(kMaxReadBytes + 4096));
    capacity = got > 0 ? static_cast<size_t>(got) : 65536;
    return true;
  }
};

// Sends a read reply whose data comes from a backing file: header by
// vmsplice, pages by splice (no copy), then one splice into /dev/fuse (the
// only copy, into the reader's pages). Returns false, with nothing sent, if
// the pages do not fit the pipe or a splice fails; the caller then copies.
bool SpliceRead(int fd, abi::OutHeader header, const SpliceReply& reply) {
  thread_local ThreadPipe pipe;
  const size_t total = sizeof(header) + reply.length;
  // Each page is one pipe slot, and so is the header.
  if (!pipe.Open() || reply.offset % 4096 != 0 ||
      (reply.length + 4095) / 4096 + 1 > pipe.capacity / 4096) {
    return false;
  }
  header.len = static_cast<uint32_t>(total);
  struct iovec hiov = {&header, sizeof(header)};
  bool ok = vmsplice(pipe.write_fd, &hiov, 1, 0) == static_cast<ssize_t>(sizeof(header));
  loff_t off = static_cast<loff_t>(reply.offset);
  size_t moved = 0;
  while (ok && moved < reply.length) {
    ssize_t n = splice(reply.store->fd(), &off, pipe.write_fd, nullptr, reply.length - moved,
                       SPLICE_F_NONBLOCK);
    if (n <= 0)
      ok = false;
    else
      moved += static_cast<size_t>(n);
  }
  if (ok) ok = splice(pipe.read_fd, nullptr, fd, nullptr, total, 0) == static_cast<ssize_t>(total);
  if (!ok) pipe.Close();  // whatever is left in it is garbage now
  return ok;
}

// The fallback of SpliceRead: read into the thread's buffer, then writev.
ssize_t CopyRead(int fd, abi::OutHeader header, const SpliceReply& reply) {
  char* buffer = ThreadBuffer(reply.length);
  absl::StatusOr<size_t> n = reply.store->Read(reply.offset, buffer, reply.length);
  if (!n.ok() || *n < reply.length) {  // cannot happen: the disk is open, so it cannot shrink
    header.len = sizeof(header);
    header.error = -EIO;
    return write(fd, &header, sizeof(header));
  }
  header.len = static_cast<uint32_t>(sizeof(header) + reply.length);
  struct iovec iov[2] = {{&header, sizeof(header)}, {buffer, reply.length}};
  return writev(fd, iov, 2);
}

// The INIT reply: gather it, patch it, send it, then probe passthrough.
ssize_t WriteInitReply(Filesystem& fs, int fd, const abi::OutHeader& header, struct iovec* iov,
                       int count) {
  std::string reply;
  for (int i = 0; i < count; ++i) {
    reply.append(static_cast<const char*>(iov[i].iov_base), iov[i].iov_len);
  }
  ConnectionState& conn = fs.passthrough().connection();
  if (header.error == 0 && reply.size() >= sizeof(abi::OutHeader) + sizeof(abi::InitOut)) {
    abi::InitOut out;
    std::memcpy(&out, reply.data() + sizeof(abi::OutHeader), sizeof(out));
    out.flags &= ~abi::kWritebackCache;  // it would silently turn passthrough off
    if (conn.kernel_offers_passthrough || conn.kernel_offers_allow_mmap) {
      out.flags |= abi::kInitExt;
    }
    if (conn.kernel_offers_passthrough) {
      out.flags2 |= abi::kFlags2Passthrough;
      out.max_stack_depth = 1;  // backing files live on tmpfs (depth 0)
    }
    if (conn.kernel_offers_allow_mmap) {
      out.flags2 |= abi::kFlags2DirectIoAllowMmap;
      conn.allow_mmap = true;
    }
    UringBeforeInitReply(fs.session(), fd, out);  // [uring hook] makes the rings, offers them
    std::memcpy(reply.data() + sizeof(abi::OutHeader), &out, sizeof(out));
  }
  // A restarted worker answers the INIT it replayed to nobody: the kernel
  // got the first worker's reply long ago.
  const bool replayed = fs.io_state().replaying.load();
  ssize_t n = replayed ? static_cast<ssize_t>(reply.size()) : write(fd, reply.data(), reply.size());
  int err = errno;
  fs.io_state().init_done.store(true, std::memory_order_release);
  // The kernel processed the reply inside write(): passthrough is decided.
  if (n >= 0 && header.error == 0 && !fs.passthrough().AfterInit(fd)) {
    fuse_session_exit(fs.session());
  }
  // [uring hook] REGISTER needs INIT done. AfterInit has already released the
  // handlers' INIT gate (Passthrough::WaitUntilInitialized), which covers both
  // transports: the kernel holds every request back from the rings until each
  // queue has registered (fuse_block_alloc), i.e. until after AfterInit, and
  // requests read from /dev/fuse wait in the handlers. --transport uring
  // fails here.
  const bool transport_ok = UringAfterInitReply(n >= 0 && header.error == 0);
  if (!transport_ok) fuse_session_exit(fs.session());
  if (replayed) {
    fs.io_state().replaying.store(false, std::memory_order_release);
    if (fs.io_state().after_replayed_init) fs.io_state().after_replayed_init(fd);
    errno = err;
    return n;  // systemd heard READY=1 from the first worker
  }
  // systemd's Type=notify: ready once the kernel took the INIT reply, the
  // passthrough probe decided the modes and the transport is up.
  if (n >= 0 && header.error == 0 && !fs.passthrough().fatal() && transport_ok) {
    NotifyReady(fs.table().size());
  }
  errno = err;
  return n;
}

ssize_t IoWritev(int fd, struct iovec* iov, int count, void* userdata) {
  // [uring hook] A reply to a request taken from an io_uring entry goes back
  // through that entry (uring.h), not to /dev/fuse.
  if (ssize_t n; UringRouteReply(iov, count, &n)) return n;
  if (count == 2 && iov[1].iov_base == ThreadSpliceReply() &&
      iov[0].iov_len == sizeof(abi::OutHeader)) {
    abi::OutHeader header;
    std::memcpy(&header, iov[0].iov_base, sizeof(header));
    const SpliceReply& reply = *ThreadSpliceReply();
    if (SpliceRead(fd, header, reply)) return static_cast<ssize_t>(sizeof(header) + reply.length);
    return CopyRead(fd, header, reply);
  }
  Filesystem& fs = FsOf(userdata);
  CustomIoState& io = fs.io_state();
  const uint64_t init_unique = io.init_unique.load();
  if (init_unique == 0 || io.init_done.load(std::memory_order_relaxed) || count < 1 ||
      iov[0].iov_len < sizeof(abi::OutHeader)) {
    return writev(fd, iov, count);
  }
  abi::OutHeader header;
  std::memcpy(&header, iov[0].iov_base, sizeof(header));
  if (header.unique != init_unique) return writev(fd, iov, count);
  return WriteInitReply(fs, fd, header, iov, count);
}

const fuse_custom_io kCustomIo = {
    .writev = IoWritev,
    .read = IoRead,
    .splice_receive = nullptr,
    .splice_send = nullptr,
};

}  // namespace

const fuse_custom_io* CustomIo() { return &kCustomIo; }

uint64_t CurrentRequestUnique() { return t_request_unique; }

bool NotifyResend(int device_fd) {
  const abi::OutHeader notify = {sizeof(notify), abi::kNotifyResend, 0};
  return write(device_fd, &notify, sizeof(notify)) == static_cast<ssize_t>(sizeof(notify));
}

int ReplySplicedRead(fuse_req_t req, const PageStore& store, uint64_t offset, size_t length) {
  SpliceReply* splice = ThreadSpliceReply();
  *splice = {&store, offset, length};
  struct iovec iov = {splice, sizeof(*splice)};
  return fuse_reply_iov(req, &iov, 1);
}

char* ThreadBuffer(size_t size) {
  // [uring hook] On a ring thread the reply is built in the entry's payload.
  if (char* payload = UringThreadPayload(size)) return payload;
  thread_local std::unique_ptr<char[]> buffer;
  thread_local size_t buffer_size = 0;
  if (buffer_size < size) {
    buffer.reset(new char[size]);
    buffer_size = size;
  }
  return buffer.get();
}

}  // namespace ramdiskfs
