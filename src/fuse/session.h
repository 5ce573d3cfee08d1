// Mounting, the request loop, and shutdown.
//
// The session reads and writes /dev/fuse through the custom io of
// custom_io.h (libfuse 3.14's fuse_session_custom_io), which patches the
// INIT reply for passthrough and splices large read replies.
//
// Shutdown: SIGINT/SIGTERM/SIGHUP are taken by a signal thread, which
// unmounts (umount2, or fusermount3 -u when not root). While the mount is
// busy — a loop device holds a disk — the unmount is refused by the kernel;
// the daemon says so once, keeps serving and retries every second, so no
// data is ever lost to a half-torn-down mount. `fusermount3 -u` from outside
// ends the loop the same way. Either way the daemon exits 0.

#ifndef RAMDISKFS_FUSE_SESSION_H_
#define RAMDISKFS_FUSE_SESSION_H_

#include <string>
#include <vector>

#include "ramdiskfs/options.h"
#include "src/fuse/filesystem.h"

namespace ramdiskfs {

// Mounts `fs` at config.mountpoint and serves until unmounted. Returns the
// process exit status, as mount(8) documents for its helpers: 0 after a
// clean unmount, 1 for a bad -o option libfuse refused, 32 if mounting failed
// or dax was required and the kernel cannot do it.
// The arguments RunSession gives fuse_session_new (the supervisor mounts
// with the same ones).
std::vector<std::string> FuseSessionArgs(const Config& config);

// Unmounts `mountpoint` (umount2, or fusermount3 -u when not root).
// Returns 0, or the errno of the refusal.
int TryUnmount(const std::string& mountpoint);

// Mounts, serves until unmounted, unmounts. `device_fd` >= 0: a supervised
// worker (supervisor.h): serve that /dev/fuse descriptor, already mounted
// and initialised by the supervisor, instead of mounting; no daemonizing,
// no clone_fd (a cloned descriptor's release fails the requests read
// through it, which a restart would otherwise resend).
int RunSession(const Config& config, Filesystem& fs, int device_fd = -1);

}  // namespace ramdiskfs

#endif  // RAMDISKFS_FUSE_SESSION_H_
