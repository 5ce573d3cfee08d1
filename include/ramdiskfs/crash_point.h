// A test hook for crash survival (docs/survive.md): RAMDISKFS_CRASH_POINT
// names a point in the code at which the first supervised worker aborts, so
// that a test can kill it exactly there (for example in the middle of a
// resize). Off unless armed; a disarmed CrashPoint() is one relaxed load.

#ifndef RAMDISKFS_CRASH_POINT_H_
#define RAMDISKFS_CRASH_POINT_H_

#include <string>
#include <string_view>

namespace ramdiskfs {

// Arms the hook at `point` (empty: disarmed). Call once, before any thread
// that may reach a crash point starts. Not thread-safe.
void SetCrashPoint(std::string point);
// abort()s if the hook is armed at `point`. Thread-safe.
void CrashPoint(std::string_view point);

}  // namespace ramdiskfs

#endif  // RAMDISKFS_CRASH_POINT_H_
