// Crash survival (SPEC 13, docs/survive.md): a supervisor that holds the
// mount and the store, and the worker it starts and restarts.
//
// The supervisor mounts, keeps the /dev/fuse descriptor, the memory pool's
// tmpfs instance, every disk's backing file, a memfd with the table's state
// (survive_state.h) and the open-handle table, and does nothing on the I/O
// path: it waits for its worker to die. The connection lives while any
// descriptor of it is open, so the mount and every byte outlive a worker.
// It starts the worker with fork+exec of its own binary and the same
// arguments; RAMDISKFS_WORKER_FD names a SOCK_SEQPACKET socket over which
// the worker gets those descriptors (SCM_RIGHTS) and sends back the INIT
// request and every new state. A worker that dies by a signal, or exits 0
// while the mount lives, is replaced: the new one replays the INIT, asks
// the kernel to resend what was in flight (FUSE_NOTIFY_RESEND) and serves.
// A worker that exits with a status (a start-up failure it reported) ends
// the supervisor with that status, unmounting. Five deaths within 10 s stop
// the restarts; the mount and the disks' memory then stay until SIGTERM.
// An upgrade replaces the worker with another binary: SIGHUP, with the one
// now at the path the supervisor was started from, or `ramdiskctl upgrade
// [BINARY]` over the control socket (SupervisorSocketName). The binary is
// checked first (executable, says it is ramdiskfs); the old worker is then
// killed and the new one takes over as after a crash (not counted as a
// death). If the new one dies before it serves, the old binary is started
// again. The control socket also hands the backing files to `ramdiskctl
// save`, which works even after the restarts stopped.

#ifndef RAMDISKFS_FUSE_SUPERVISOR_H_
#define RAMDISKFS_FUSE_SUPERVISOR_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "ramdiskfs/disk_table.h"
#include "ramdiskfs/memory_pool.h"
#include "ramdiskfs/options.h"
#include "ramdiskfs/survive_state.h"

namespace ramdiskfs {

inline constexpr char kWorkerFdEnv[] = "RAMDISKFS_WORKER_FD";

// The supervisor's side. `table` and `pool` hold the disks made from the
// command line; the supervisor takes copies of their descriptors and
// empties `table`. `argv`: the command line, given to every worker.
// Returns the exit status.
int RunSupervisor(const Config& config, DiskTable& table, MemoryPool& pool,
                  const std::vector<std::string>& argv);

// What a worker receives from its supervisor.
struct WorkerHandoff {
  int socket_fd = -1;
  int device_fd = -1;
  int open_table_fd = -1;
  int reply_log_fd = -1;
  int pool_fd = -1;  // tmpfs root, or -1 (memfd store)
  StoreKind store_kind = StoreKind::kMemfd;
  uint64_t restarts = 0;     // workers started before this one, minus 1 (0: the first)
  int64_t died_at_ns = 0;    // CLOCK_MONOTONIC of the predecessor's death; 0: first worker
  std::string init_request;  // empty for the first worker
  TableState state;
  std::vector<int> store_fds;  // parallel to state.disks
};

// Reads the handoff from the socket named by RAMDISKFS_WORKER_FD.
absl::StatusOr<WorkerHandoff> ReceiveHandoff(int socket_fd);

// The worker's side of the link, after the handoff. Thread-safe.
class SupervisorLink {
 public:
  explicit SupervisorLink(int socket_fd) : socket_fd_(socket_fd) {}
  // Sends the table's state and every backing file to the supervisor, which
  // keeps them in place of the previous ones. Synchronous: once it returns,
  // a successor will see this state even if this worker dies at once.
  void PublishState(const DiskTable& table);
  // The INIT request as the kernel sent it (the first worker).
  void SendInit(std::string_view init);
  // A restarted worker has replayed INIT and asked for the resend: it
  // serves. An upgrade is done only then (until then a failure brings the
  // previous binary back).
  void SendServing(int64_t stall_ms);

 private:
  int socket_fd_;
};

}  // namespace ramdiskfs

#endif  // RAMDISKFS_FUSE_SUPERVISOR_H_
