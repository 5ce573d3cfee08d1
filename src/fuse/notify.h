// Service-manager readiness (sd_notify(3)), for a Type=notify unit such as
// systemd/ramdiskfs@.service.
//
// READY=1 is sent once the kernel has taken the INIT reply: from then on the
// mount serves requests, so a unit ordered after ramdiskfs@X.service (a
// losetup, a mount of a filesystem on a disk) finds it working. STOPPING=1 is
// sent when the daemon starts to unmount. Without NOTIFY_SOCKET in the
// environment (not started by systemd) both do nothing. Thread-safe.

#ifndef RAMDISKFS_FUSE_NOTIFY_H_
#define RAMDISKFS_FUSE_NOTIFY_H_

#include <cstddef>

namespace ramdiskfs {

// READY=1 with a STATUS= line giving the disk count. Sends at
// most once per process.
// A supervised worker (supervisor.h) notifies as its supervisor, systemd's
// main process (NotifyAccess=main): sd_pid_notify with that pid (root).
void SetNotifyPid(int pid);

void NotifyReady(size_t disks);
// STOPPING=1. Sends at most once per process.
void NotifyStopping();

}  // namespace ramdiskfs

#endif  // RAMDISKFS_FUSE_NOTIFY_H_
