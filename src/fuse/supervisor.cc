#include "src/fuse/supervisor.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <deque>
#include <mutex>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "ramdiskfs/log.h"
#include "ramdiskfs/status.h"
#include "src/fuse/filesystem.h"
#include "src/fuse/session.h"

namespace ramdiskfs {
namespace {

constexpr int kExitMountFailure = 32;
// SCM_MAX_FD is 253; a table of up to kMaxDisks backing files goes in chunks.
constexpr size_t kFdsPerMessage = 250;
// A worker dying this often is not restarted again (issue 13).
constexpr int kMaxDeaths = 5;
constexpr int64_t kDeathWindowNs = 10'000'000'000;

enum MessageType : uint32_t { kHello = 1, kState = 2, kFds = 3, kInit = 4, kServing = 5 };
constexpr uint32_t kMagic = 0x7264'6673;  // "rdfs"

struct Message {
  uint32_t magic = kMagic;
  uint32_t type = 0;
  uint64_t a = 0, b = 0, c = 0;
};

int64_t MonotonicNs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

// One message: header, payload, up to kFdsPerMessage descriptors (copied).
bool Send(int sock, const Message& m, std::string_view payload, const int* fds, size_t nfds) {
  struct iovec iov[2] = {{const_cast<Message*>(&m), sizeof(m)},
                         {const_cast<char*>(payload.data()), payload.size()}};
  struct msghdr msg = {};
  msg.msg_iov = iov;
  msg.msg_iovlen = payload.empty() ? 1 : 2;
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int) * kFdsPerMessage)];
  if (nfds > 0) {
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
    struct cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    std::memcpy(CMSG_DATA(cmsg), fds, sizeof(int) * nfds);
  }
  while (true) {
    if (sendmsg(sock, &msg, MSG_NOSIGNAL) >= 0) return true;
    if (errno != EINTR) return false;
  }
}

// Returns 1 for a message, 0 at EOF, -2 for nothing yet (`nonblocking`), -1 on error.
int Receive(int sock, Message* m, std::string* payload, std::vector<int>* fds,
            bool nonblocking = false) {
  char buf[4096];
  struct iovec iov[2] = {{m, sizeof(*m)}, {buf, sizeof(buf)}};
  struct msghdr msg = {};
  msg.msg_iov = iov;
  msg.msg_iovlen = 2;
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int) * kFdsPerMessage)];
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  ssize_t n;
  do {
    n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC | (nonblocking ? MSG_DONTWAIT : 0));
  } while (n < 0 && errno == EINTR);
  if (n < 0) return nonblocking && errno == EAGAIN ? -2 : -1;
  if (n == 0) return 0;
  for (struct cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    const int* got = reinterpret_cast<const int*>(CMSG_DATA(c));
    fds->insert(fds->end(), got, got + count);
  }
  if (static_cast<size_t>(n) < sizeof(*m) || m->magic != kMagic) return -1;
  payload->assign(buf, static_cast<size_t>(n) - sizeof(*m));
  return 1;
}

// A state memfd, then the backing files in chunks.
bool SendState(int sock, int state_fd, const std::vector<int>& store_fds) {
  Message m;
  m.type = kState;
  m.a = store_fds.size();
  if (!Send(sock, m, {}, &state_fd, 1)) return false;
  for (size_t i = 0; i < store_fds.size(); i += kFdsPerMessage) {
    Message f;
    f.type = kFds;
    if (!Send(sock, f, {}, store_fds.data() + i, std::min(kFdsPerMessage, store_fds.size() - i))) {
      return false;
    }
  }
  return true;
}

absl::StatusOr<int> MakeStateMemfd(const TableState& state) {
  int fd = memfd_create("ramdiskfs:state", MFD_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, "memfd_create(state)");
  const std::string text = EncodeTableState(state);
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = pwrite(fd, text.data() + done, text.size() - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int err = errno;
      close(fd);
      return ErrnoStatus(err, "write(state memfd)");
    }
    done += static_cast<size_t>(n);
  }
  return fd;
}

absl::StatusOr<std::string> ReadWhole(int fd) {
  struct stat st;
  if (fstat(fd, &st) != 0) return ErrnoStatus(errno, "fstat(state memfd)");
  std::string text(static_cast<size_t>(st.st_size), '\0');
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = pread(fd, text.data() + done, text.size() - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return ErrnoStatus(n < 0 ? errno : EIO, "read(state memfd)");
    done += static_cast<size_t>(n);
  }
  return text;
}

void CloseAll(std::vector<int>& fds) {
  for (int fd : fds) close(fd);
  fds.clear();
}

// A state arriving in several messages; committed when whole.
struct StateInFlight {
  int state_fd = -1;
  size_t want = 0;
  std::vector<int> fds;
  void Reset() {
    if (state_fd >= 0) close(state_fd);
    state_fd = -1;
    want = 0;
    CloseAll(fds);
  }
};

bool ConnectionAlive(int device_fd) {
  struct pollfd p = {device_fd, POLLIN, 0};
  if (poll(&p, 1, 0) < 0) return true;
  return !(p.revents & (POLLERR | POLLNVAL));
}

std::string DescribeStatus(int status) {
  if (WIFSIGNALED(status)) return absl::StrCat("was killed by ", strsignal(WTERMSIG(status)));
  if (WIFEXITED(status)) return absl::StrCat("exited with status ", WEXITSTATUS(status));
  return "stopped";
}

// Why `path` cannot be a worker's binary, or "" if it can: an absolute path
// to an executable regular file that says it is ramdiskfs when run with
// --version (within 5 s). Checked before the old worker is stopped, so that a
// bad upgrade changes nothing.
std::string CheckWorkerBinary(const std::string& path) {
  if (path.empty() || path[0] != '/') return absl::StrCat("'", path, "' is not an absolute path");
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return absl::StrCat(path, ": ", strerror(errno));
  if (!S_ISREG(st.st_mode)) return absl::StrCat(path, ": not a regular file");
  if (access(path.c_str(), X_OK) != 0) return absl::StrCat(path, ": not executable");
  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) return absl::StrCat("pipe: ", strerror(errno));
  const pid_t pid = fork();
  if (pid < 0) {
    close(out[0]);
    close(out[1]);
    return absl::StrCat("fork: ", strerror(errno));
  }
  if (pid == 0) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    dup2(out[1], STDOUT_FILENO);
    int devnull = open("/dev/null", O_RDWR);
    if (devnull >= 0) {
      dup2(devnull, STDIN_FILENO);
      dup2(devnull, STDERR_FILENO);
    }
    unsetenv(kWorkerFdEnv);
    execl(path.c_str(), path.c_str(), "--version", static_cast<char*>(nullptr));
    _exit(127);
  }
  close(out[1]);
  std::string text;
  const int64_t deadline = MonotonicNs() + 5'000'000'000;
  while (text.size() < 4096) {
    const int64_t left_ms = (deadline - MonotonicNs()) / 1'000'000;
    struct pollfd p = {out[0], POLLIN, 0};
    if (left_ms <= 0 || poll(&p, 1, static_cast<int>(left_ms)) <= 0) break;
    char buf[512];
    const ssize_t n = read(out[0], buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  close(out[0]);
  kill(pid, SIGKILL);  // no-op if it is done; it is our child
  int status = 0;
  waitpid(pid, &status, 0);
  if (!absl::StartsWith(text, "ramdiskfs ")) {
    return absl::StrCat(path, " is not ramdiskfs ('--version' printed '",
                        absl::StripAsciiWhitespace(text.substr(0, text.find('\n'))), "')");
  }
  return "";
}

// One text message on a control-socket client, with `fd` if >= 0.
void Answer(int client, std::string_view text, int fd = -1) {
  struct iovec iov = {const_cast<char*>(text.data()), text.size()};
  struct msghdr msg = {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int))];
  if (fd >= 0) {
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    struct cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(cmsg), &fd, sizeof(int));
  }
  while (sendmsg(client, &msg, MSG_NOSIGNAL) < 0 && errno == EINTR) {
  }
}

class Supervisor {
 public:
  Supervisor(const Config& config, const std::vector<std::string>& argv)
      : config_(config), argv_(argv) {}
  int Run(DiskTable& table, MemoryPool& pool);

 private:
  bool Spawn();
  // Reads every message the worker sent (blocking until `sock_` is dry if
  // `drain`). Returns false at EOF.
  bool HandleMessages(bool drain);
  void OnWorkerDeath(int status);
  void TryStop();
  // The control socket (SupervisorSocketName): `upgrade PATH` and `save`.
  int Listen();
  void OnClient();
  // Replaces the worker with `path` (checked first; nothing changes if it
  // is refused). `client` (or -1: SIGHUP) gets the outcome once the new
  // worker serves or has failed. Returns an error to answer at once, or "".
  std::string StartUpgrade(const std::string& path, int client);
  void FinishUpgrade(std::string_view outcome);
  // `save`: one "disk NAME" message per disk of the last whole state, each
  // with its backing file, then "end N".
  void SendDisks(int client);

  const Config& config_;
  const std::vector<std::string>& argv_;
  int device_fd_ = -1;
  int pool_fd_ = -1;
  int open_table_fd_ = -1;
  int reply_log_fd_ = -1;
  int state_fd_ = -1;           // the last whole state
  std::vector<int> store_fds_;  // its backing files
  StateInFlight incoming_;
  std::string init_request_;
  int sock_ = -1;
  bool sock_eof_ = false;
  pid_t worker_ = -1;
  uint64_t started_ = 0;
  int64_t died_at_ns_ = 0;
  std::deque<int64_t> deaths_;
  bool given_up_ = false;
  // SIGHUP: the worker is being replaced by the binary at binary_path_ (the
  // path this supervisor was started from, resolved at start, so a new build
  // installed there is what runs next).
  std::string binary_path_;
  std::string exec_path_ = "/proc/self/exe";
  bool upgrading_ = false;         // the old worker is being stopped for an upgrade
  std::string upgrade_path_;       // what it is being replaced with
  bool awaiting_serving_ = false;  // an upgraded worker has not said it serves yet
  std::string fallback_path_;      // what ran before it (restarted if it fails)
  int upgrade_client_ = -1;        // who asked for the upgrade (-1: SIGHUP)
  int listen_fd_ = -1;
  bool stopping_ = false;
  bool told_busy_ = false;
  int exit_status_ = -1;  // >= 0: done
};

bool Supervisor::Spawn() {
  int pair[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0) {
    Log("supervisor: socketpair: ", strerror(errno));
    return false;
  }
  pid_t pid = fork();
  if (pid < 0) {
    Log("supervisor: fork: ", strerror(errno));
    close(pair[0]);
    close(pair[1]);
    return false;
  }
  if (pid == 0) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    int fd = pair[1];
    fcntl(fd, F_SETFD, 0);
    setenv(kWorkerFdEnv, std::to_string(fd).c_str(), 1);
    setenv("RAMDISKFS_MOUNTPOINT", config_.mountpoint.c_str(), 1);  // resolved; we are in / now
    std::vector<char*> args;
    for (const std::string& a : argv_) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    // Our own binary even if the file was replaced since, until a SIGHUP
    // names the path instead.
    execv(exec_path_.c_str(), args.data());
    _exit(127);
  }
  close(pair[1]);
  sock_ = pair[0];
  sock_eof_ = false;
  worker_ = pid;
  Message hello;
  hello.type = kHello;
  hello.a = started_ == 0 ? 0 : started_;  // restarts before this worker
  hello.b = static_cast<uint64_t>(died_at_ns_);
  hello.c = static_cast<uint64_t>(pool_fd_ >= 0 ? StoreKind::kTmpfs : StoreKind::kMemfd);
  std::vector<int> fds = {device_fd_, open_table_fd_, reply_log_fd_};
  if (pool_fd_ >= 0) fds.push_back(pool_fd_);
  ++started_;
  if (!Send(sock_, hello, init_request_, fds.data(), fds.size()) ||
      !SendState(sock_, state_fd_, store_fds_)) {
    Log("supervisor: cannot hand the descriptors to worker ", pid, ": ", strerror(errno));
  }
  return true;
}

bool Supervisor::HandleMessages(bool drain) {
  while (true) {
    Message m;
    std::string payload;
    std::vector<int> fds;
    const int got = Receive(sock_, &m, &payload, &fds, /*nonblocking=*/true);
    if (got <= 0) {
      CloseAll(fds);
      if (got == -2) return true;  // nothing more for now
      sock_eof_ = true;            // the worker is gone (SIGCHLD follows)
      return false;
    }
    switch (m.type) {
      case kInit:
        init_request_ = payload;
        Log("supervisor: worker ", worker_, " is initialised (", payload.size(),
            "-byte INIT kept for its successors)");
        break;
      case kServing:
        if (awaiting_serving_) {
          awaiting_serving_ = false;
          const std::string done = absl::StrCat("ok worker ", worker_, " runs ", exec_path_,
                                                "; the mount paused ", m.a, " ms");
          Log("supervisor: upgrade: ", done.substr(3));
          FinishUpgrade(done);
        }
        break;
      case kState:
        incoming_.Reset();
        if (fds.size() != 1) {
          CloseAll(fds);
          break;
        }
        incoming_.state_fd = fds[0];
        incoming_.want = m.a;
        fds.clear();
        break;
      case kFds:
        if (incoming_.state_fd < 0) {
          CloseAll(fds);
          break;
        }
        incoming_.fds.insert(incoming_.fds.end(), fds.begin(), fds.end());
        fds.clear();
        break;
      default:
        CloseAll(fds);
        break;
    }
    if (incoming_.state_fd >= 0 && incoming_.fds.size() == incoming_.want) {
      // Whole: it replaces the previous state (whose backing files close).
      if (state_fd_ >= 0) close(state_fd_);
      CloseAll(store_fds_);
      state_fd_ = incoming_.state_fd;
      store_fds_ = std::move(incoming_.fds);
      incoming_.state_fd = -1;
      incoming_.fds.clear();
      incoming_.want = 0;
    } else if (incoming_.fds.size() > incoming_.want) {
      incoming_.Reset();
    }
  }
}

void Supervisor::TryStop() {
  if (given_up_ && worker_ < 0 && device_fd_ >= 0) {
    // Nobody serves: requests the dead worker read wait uninterruptibly, and
    // the files they hold keep the mount busy. Ending the connection (its
    // last descriptor closes) fails them, so the unmount can succeed. The
    // libfuse session still owns the number: an unattached /dev/fuse takes
    // it, which polls POLLERR like a dead connection, so the exit path's
    // fuse_session_unmount only closes it (see Run).
    Log("supervisor: no worker is left to serve; ending the connection (pending requests fail)");
    int spare = open("/dev/fuse", O_RDWR | O_CLOEXEC);
    if (spare < 0) spare = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (spare >= 0) {
      dup2(spare, device_fd_);
      close(spare);
    }
    device_fd_ = -1;
  }
  const int err = TryUnmount(config_.mountpoint);
  if (err == 0 || err == EINVAL || err == ENOENT) {
    if (worker_ < 0) exit_status_ = 0;  // else: when the worker ends
    return;
  }
  if (!told_busy_) {
    Log("supervisor: cannot unmount ", config_.mountpoint, ": ", strerror(err),
        ". Detach loop devices and close the disk files; retrying every second");
    told_busy_ = true;
  }
}

void Supervisor::OnWorkerDeath(int status) {
  const int64_t now = MonotonicNs();
  HandleMessages(/*drain=*/true);  // what it sent before it died still counts
  close(sock_);
  sock_ = -1;
  const pid_t dead = worker_;
  worker_ = -1;
  incoming_.Reset();  // a state it did not finish sending is not whole
  if (!ConnectionAlive(device_fd_)) {
    Log("supervisor: worker ", dead, " ", DescribeStatus(status), "; the mount is gone");
    exit_status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 0;
    return;
  }
  if (awaiting_serving_) {
    // The new binary did not take over (it cannot read the state, or it
    // crashed at once): the one that served before comes back.
    awaiting_serving_ = false;
    const std::string failed =
        absl::StrCat("the worker running ", exec_path_, " ", DescribeStatus(status),
                     " before it served; worker ", started_ + 1, " runs ", fallback_path_,
                     " again (see the daemon log)");
    Log("supervisor: upgrade failed: ", failed);
    FinishUpgrade(absl::StrCat("error ", failed));
    exec_path_ = fallback_path_;
    died_at_ns_ = now;
    if (!Spawn()) given_up_ = true;
    return;
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) != 0) {
    // The worker refused to serve (it said why): as an unsupervised daemon would.
    Log("supervisor: worker ", dead, " ", DescribeStatus(status), "; unmounting");
    TryUnmount(config_.mountpoint);
    exit_status_ = WEXITSTATUS(status);
    return;
  }
  if (init_request_.empty()) {
    Log("supervisor: worker ", dead, " ", DescribeStatus(status),
        " before the kernel's INIT; cannot restart it, unmounting");
    TryUnmount(config_.mountpoint);
    exit_status_ = kExitMountFailure;
    return;
  }
  if (upgrading_) {
    upgrading_ = false;
    fallback_path_ = exec_path_;
    exec_path_ = upgrade_path_;
    awaiting_serving_ = true;
    died_at_ns_ = now;
    Log("supervisor: upgrade: worker ", dead, " stopped; starting ", upgrade_path_, " as worker ",
        started_ + 1);
    if (!Spawn()) given_up_ = true;
    return;
  }
  deaths_.push_back(now);
  while (!deaths_.empty() && now - deaths_.front() > kDeathWindowNs) deaths_.pop_front();
  if (static_cast<int>(deaths_.size()) >= kMaxDeaths) {
    Log("supervisor: worker ", dead, " ", DescribeStatus(status), "; ", kMaxDeaths,
        " deaths within 10 s, so no more restarts. The mount and every disk's memory stay; "
        "requests wait. Stop the daemon (SIGTERM) once the disks are no longer needed.");
    given_up_ = true;
    return;
  }
  died_at_ns_ = now;
  Log("supervisor: worker ", dead, " ", DescribeStatus(status), "; starting worker ", started_ + 1);
  if (!Spawn()) given_up_ = true;
}

std::string Supervisor::StartUpgrade(const std::string& path, int client) {
  if (stopping_) return "the daemon is stopping";
  if (upgrading_ || awaiting_serving_) return "an upgrade is already under way";
  if (init_request_.empty()) return "the first worker is not initialised yet; try again";
  if (const std::string why = CheckWorkerBinary(path); !why.empty()) return why;
  upgrade_client_ = client;
  if (worker_ > 0) {
    // The old worker stops as a crash would: what it read and did not
    // answer is resent to the new one (docs/survive.md says why this is not
    // a drain).
    Log("supervisor: upgrade: replacing worker ", worker_, " with ", path);
    upgrade_path_ = path;
    upgrading_ = true;
    kill(worker_, SIGKILL);
    return "";
  }
  // The restarts had stopped (a crash loop): a new binary may be the fix.
  Log("supervisor: upgrade: no worker was serving (restarts had stopped); starting ", path);
  given_up_ = false;
  deaths_.clear();
  fallback_path_ = exec_path_;
  exec_path_ = path;
  awaiting_serving_ = true;
  died_at_ns_ = MonotonicNs();
  if (!Spawn()) {
    awaiting_serving_ = false;
    exec_path_ = fallback_path_;
    given_up_ = true;
    upgrade_client_ = -1;
    return "cannot start a worker (see the daemon log)";
  }
  return "";
}

void Supervisor::FinishUpgrade(std::string_view outcome) {
  if (upgrade_client_ >= 0) {
    Answer(upgrade_client_, outcome);
    close(upgrade_client_);
  }
  upgrade_client_ = -1;
}

void Supervisor::SendDisks(int client) {
  absl::StatusOr<std::string> text = ReadWhole(state_fd_);
  absl::StatusOr<TableState> state =
      text.ok() ? DecodeTableState(*text) : absl::StatusOr<TableState>(text.status());
  if (!state.ok() || state->disks.size() != store_fds_.size()) {
    Answer(client, absl::StrCat("error the supervisor's copy of the table is unreadable: ",
                                state.ok() ? "backing files missing" : state.status().ToString()));
    return;
  }
  for (size_t i = 0; i < store_fds_.size(); ++i) {
    Answer(client, absl::StrCat("disk ", state->disks[i].name), store_fds_[i]);
  }
  Answer(client, absl::StrCat("end ", store_fds_.size()));
  Log("supervisor: handed the backing files of ", store_fds_.size(), " disk(s) to a client");
}

int Supervisor::Listen() {
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return -1;
  struct sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  const std::string name = SupervisorSocketName(config_.mountpoint);
  std::memcpy(addr.sun_path + 1, name.data(), name.size());
  const socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0 || listen(fd, 4) != 0) {
    Log("supervisor: no control socket (ramdiskctl upgrade and save will not work): ",
        strerror(errno));
    close(fd);
    return -1;
  }
  return fd;
}

void Supervisor::OnClient() {
  const int client = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
  if (client < 0) return;
  bool keep = false;
  absl::Cleanup done = [client, &keep] {
    if (!keep) close(client);
  };
  struct ucred cred = {};
  socklen_t cred_len = sizeof(cred);
  if (getsockopt(client, SOL_SOCKET, SO_PEERCRED, &cred, &cred_len) != 0 ||
      (cred.uid != 0 && cred.uid != geteuid())) {
    Answer(client, "error permission denied: only root and the daemon's user may ask");
    return;
  }
  struct pollfd p = {client, POLLIN, 0};
  char buf[PATH_MAX + 64];
  ssize_t n = -1;
  // ramdiskctl sends at once; a client that does not holds up restarts for 0.5 s at most.
  if (poll(&p, 1, 500) == 1) n = recv(client, buf, sizeof(buf), MSG_DONTWAIT);
  if (n <= 0) return;
  absl::string_view request(buf, static_cast<size_t>(n));
  if (request == "save") return SendDisks(client);
  if (absl::ConsumePrefix(&request, "upgrade")) {
    std::string path(absl::StripLeadingAsciiWhitespace(request));
    if (path.empty()) path = binary_path_;
    const std::string refused = StartUpgrade(path, client);
    if (!refused.empty()) {
      Log("supervisor: upgrade refused: ", refused);
      Answer(client, absl::StrCat("error ", refused));
      return;
    }
    keep = true;  // answered when the new worker serves, or has failed
    return;
  }
  Answer(client, "error unknown request");
}

int Supervisor::Run(DiskTable& table, MemoryPool& pool) {
  // The disks made from the command line: the supervisor keeps copies of
  // their descriptors and lets the table go; workers rebuild from the state.
  std::vector<int> borrowed;
  const TableState initial = CaptureTableState(table, &borrowed);
  for (int fd : borrowed) store_fds_.push_back(fcntl(fd, F_DUPFD_CLOEXEC, 0));
  for (const DiskState& d : initial.disks) (void)table.Delete(d.name);
  absl::StatusOr<int> state_fd = MakeStateMemfd(initial);
  absl::StatusOr<std::unique_ptr<OpenTable>> opens = OpenTable::Create(OpenTable::kDefaultCapacity);
  absl::StatusOr<std::unique_ptr<ReplyLog>> replies = ReplyLog::Create();
  if (!state_fd.ok() || !opens.ok() || !replies.ok()) {
    Log("supervisor: ", (!state_fd.ok() ? state_fd.status()
                         : !opens.ok()  ? opens.status()
                                        : replies.status())
                            .ToString());
    return kExitMountFailure;
  }
  reply_log_fd_ = (*replies)->fd();
  state_fd_ = *state_fd;
  open_table_fd_ = (*opens)->fd();
  pool_fd_ = pool.mount_fd();

  // Mount with the arguments an unsupervised daemon uses; this session is
  // never looped: it only owns the mount and the descriptor.
  std::vector<std::string> args = FuseSessionArgs(config_);
  std::vector<char*> cargs;
  for (std::string& a : args) cargs.push_back(a.data());
  fuse_args fargs = FUSE_ARGS_INIT(static_cast<int>(cargs.size()), cargs.data());
  absl::Cleanup free_args = [&fargs] { fuse_opt_free_args(&fargs); };
  fuse_session* se =
      fuse_session_new(&fargs, Filesystem::Ops(), sizeof(fuse_lowlevel_ops), nullptr);
  if (se == nullptr) {
    Log("cannot start a FUSE session (bad -o option?)");
    return 1;
  }
  absl::Cleanup destroy = [se] { fuse_session_destroy(se); };
  // Blocked before the mount (see RunSession): a SIGTERM between the mount
  // and the signalfd waits in the signalfd instead of killing the supervisor.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  sigprocmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);
  if (fuse_session_mount(se, config_.mountpoint.c_str()) != 0) {
    Log("cannot mount on ", config_.mountpoint);
    return kExitMountFailure;
  }
  // The supervisor unmounts with TryUnmount (not lazily, retried while
  // busy); by the time this runs the connection is dead, so libfuse only
  // closes its descriptor and frees its copy of the mount point.
  absl::Cleanup release = [se] { fuse_session_unmount(se); };
  device_fd_ = fuse_session_fd(se);
  char exe[PATH_MAX];
  const ssize_t exe_len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  binary_path_ = exe_len > 0 ? std::string(exe, static_cast<size_t>(exe_len)) : "/proc/self/exe";
  if (fuse_daemonize(config_.foreground ? 1 : 0) != 0) return kExitMountFailure;
  if (!config_.foreground) LogDetached();
  listen_fd_ = Listen();

  int sigfd = signalfd(-1, &set, SFD_CLOEXEC);
  if (sigfd < 0) {
    Log("supervisor: signalfd: ", strerror(errno));
    TryUnmount(config_.mountpoint);
    return kExitMountFailure;
  }
  Log("supervisor ", getpid(), ": mounted on ", config_.mountpoint, " with ", initial.disks.size(),
      " disk(s); a worker serves it and is restarted if it dies");
  if (!Spawn()) {
    TryUnmount(config_.mountpoint);
    return kExitMountFailure;
  }
  while (exit_status_ < 0) {
    // The worker's socket is polled only while it can say something (-1
    // makes poll skip it).
    struct pollfd p[3] = {{sigfd, POLLIN, 0},
                          {sock_ >= 0 && !sock_eof_ ? sock_ : -1, POLLIN, 0},
                          {listen_fd_, POLLIN, 0}};
    const int timeout_ms = stopping_ ? 1000 : -1;
    int n = poll(p, 3, timeout_ms);
    if (n < 0 && errno != EINTR) break;
    if (n > 0 && (p[2].revents & POLLIN)) OnClient();
    if (p[1].fd >= 0 && (p[1].revents & (POLLIN | POLLHUP))) {
      HandleMessages(/*drain=*/false);
    }
    if (p[0].revents & POLLIN) {
      struct signalfd_siginfo info;
      while (read(sigfd, &info, sizeof(info)) == sizeof(info)) {
        if (info.ssi_signo == SIGCHLD) {
          int status = 0;
          pid_t pid;
          while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
            if (pid == worker_) OnWorkerDeath(status);
          }
        } else if (info.ssi_signo == SIGHUP) {
          if (worker_ > 0) {
            Log("supervisor: SIGHUP: upgrade to ", binary_path_);
            const std::string refused = StartUpgrade(binary_path_, -1);
            if (!refused.empty()) Log("supervisor: SIGHUP ignored: ", refused);
          } else {
            Log("supervisor: SIGHUP ignored (no worker serving)");
          }
        } else if (!stopping_) {
          Log("supervisor: got ", strsignal(static_cast<int>(info.ssi_signo)), ": unmounting ",
              config_.mountpoint);
          stopping_ = true;
        }
        if (exit_status_ >= 0) break;
        struct pollfd more = {sigfd, POLLIN, 0};
        if (poll(&more, 1, 0) <= 0) break;
      }
    }
    if (stopping_ && exit_status_ < 0) TryStop();
    if (given_up_ && worker_ < 0 && device_fd_ >= 0 && !ConnectionAlive(device_fd_)) {
      exit_status_ = 0;  // unmounted by someone else
    }
  }
  close(sigfd);
  FinishUpgrade("error the daemon stopped");
  if (listen_fd_ >= 0) close(listen_fd_);
  if (sock_ >= 0) close(sock_);
  CloseAll(store_fds_);
  if (state_fd_ >= 0) close(state_fd_);
  Log("supervisor: unmounted ", config_.mountpoint);
  return exit_status_ < 0 ? kExitMountFailure : exit_status_;
}

}  // namespace

int RunSupervisor(const Config& config, DiskTable& table, MemoryPool& pool,
                  const std::vector<std::string>& argv) {
  Supervisor supervisor(config, argv);
  return supervisor.Run(table, pool);
}

absl::StatusOr<WorkerHandoff> ReceiveHandoff(int socket_fd) {
  WorkerHandoff h;
  h.socket_fd = socket_fd;
  Message m;
  std::string payload;
  std::vector<int> fds;
  if (Receive(socket_fd, &m, &payload, &fds) != 1 || m.type != kHello || fds.size() < 3) {
    CloseAll(fds);
    return absl::InternalError("no handoff from the supervisor");
  }
  h.restarts = m.a;
  h.died_at_ns = static_cast<int64_t>(m.b);
  h.store_kind = static_cast<StoreKind>(m.c);
  h.init_request = payload;
  h.device_fd = fds[0];
  h.open_table_fd = fds[1];
  h.reply_log_fd = fds[2];
  h.pool_fd = fds.size() > 3 ? fds[3] : -1;
  fds.clear();
  if (Receive(socket_fd, &m, &payload, &fds) != 1 || m.type != kState || fds.size() != 1) {
    CloseAll(fds);
    return absl::InternalError("no table state from the supervisor");
  }
  const int state_fd = fds[0];
  const size_t want = m.a;
  fds.clear();
  while (h.store_fds.size() < want) {
    if (Receive(socket_fd, &m, &payload, &fds) != 1 || m.type != kFds) {
      CloseAll(fds);
      close(state_fd);
      CloseAll(h.store_fds);
      return absl::InternalError("the supervisor sent fewer backing files than disks");
    }
    h.store_fds.insert(h.store_fds.end(), fds.begin(), fds.end());
    fds.clear();
  }
  absl::StatusOr<std::string> text = ReadWhole(state_fd);
  close(state_fd);
  if (!text.ok()) return text.status();
  absl::StatusOr<TableState> state = DecodeTableState(*text);
  if (!state.ok()) return state.status();
  h.state = *std::move(state);
  return h;
}

void SupervisorLink::PublishState(const DiskTable& table) {
  static std::mutex mu;  // one state at a time, in order
  std::lock_guard lock(mu);
  std::vector<int> fds;
  const TableState state = CaptureTableState(table, &fds);
  absl::StatusOr<int> state_fd = MakeStateMemfd(state);
  if (!state_fd.ok()) {
    Log("cannot publish the table's state: ", state_fd.status().ToString());
    return;
  }
  if (!SendState(socket_fd_, *state_fd, fds)) {
    Log("cannot publish the table's state to the supervisor: ", strerror(errno));
  }
  close(*state_fd);
}

void SupervisorLink::SendServing(int64_t stall_ms) {
  Message m;
  m.type = kServing;
  m.a = static_cast<uint64_t>(std::max<int64_t>(stall_ms, 0));
  if (!Send(socket_fd_, m, {}, nullptr, 0)) {
    Log("cannot tell the supervisor that this worker serves: ", strerror(errno));
  }
}

void SupervisorLink::SendInit(std::string_view init) {
  Message m;
  m.type = kInit;
  if (!Send(socket_fd_, m, init, nullptr, 0)) {
    Log("cannot send the INIT request to the supervisor: ", strerror(errno));
  }
}

}  // namespace ramdiskfs
