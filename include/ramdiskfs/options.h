// The command line and -o options, turned into a Config by a pure function.
//
//   ramdiskfs [SOURCE] MOUNTPOINT [options]
//
// SOURCE is what mount(8)/fstab pass first ("ramdiskfs", "none"); it is
// recorded as the mount's source (fsname), so `mount -a` sees an fstab line
// as mounted. Options (each also accepted inside -o, so that
// `mount -t fuse.ramdiskfs none /mnt -o disks=2,size=64M` and fstab work):
//
//   --disk NAME:SIZE[:key=value...]   -o disk=NAME:SIZE[:key=value...]  (repeatable)
//        keys: mode=dax|direct|cached|null, image=PATH, readonly=0|1, and the
//        write-cache keys of cache_control.h (cache=, cache_size=,
//        powercut_policy=, powercut_seed=)
//        fault settings of faults.h by their file names (badblocks=+0-7,
//        errors=read 0.01, latency=write 200, throttle=iops 2000, ...;
//        repeatable, each value applied as one write to that file)
//        SIZE may be empty ("ram0::image=/x.img") only with image=
//   --disks N --size SIZE              -o disks=N,size=SIZE   (ram0..ramN-1)
//   --max-memory SIZE                  -o max_memory=SIZE
//   --mode MODE                        -o mode=MODE
//   --store auto|tmpfs|memfd           -o store=...  (page allocator, see docs/design.md)
//   --threads N                        -o threads=N  (max FUSE worker threads)
//   --transport auto|uring|dev         -o transport=...  (how requests travel, SPEC 14)
//   --uring-depth N                    -o uring_depth=N  (ring entries per CPU queue)
//   --uring-threads N                  -o uring_threads=N  (threads per queue; 0: one per entry)
//   --uring-poll-us N                  -o uring_poll_us=N  (poll window after a reply)
//   -f  -d  -s  -h/--help  -V/--version  -o allow_other  -o other FUSE options
//
// Both `--opt VALUE` and `--opt=VALUE` work. Anything in -o that ramdiskfs
// does not own is passed to libfuse in Config::fuse_options (allow_other,
// default_permissions, fsname=..., and mount(8)'s rw/dev/suid/... flags);
// allow_other also sets Config::allow_other.
//
// Disks: the --disk (and -o disk=) entries first, in the order given, then
// the --disks set ram0..ramN-1 of --size (default kDefaultDiskSize). With
// neither --disk nor --disks: kDefaultDiskCount disks ram0.. of --size or
// kDefaultDiskSize. A repeated scalar option (--size, --disks, --mode,
// --max-memory, ...) takes its last value. -o values cannot contain ',', and
// a --disk image path cannot contain ':'.

#ifndef RAMDISKFS_OPTIONS_H_
#define RAMDISKFS_OPTIONS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "ramdiskfs/cache_control.h"
#include "ramdiskfs/faults.h"
#include "ramdiskfs/types.h"

namespace ramdiskfs {

// How FUSE requests travel between the kernel and the daemon (SPEC 14):
// io_uring queues, one per CPU (Linux 6.14+, with the fuse module's
// enable_uring on), or read()/write() on /dev/fuse. kAuto takes io_uring
// when the kernel offers it and /dev/fuse otherwise; kUring refuses to
// start without it.
enum class Transport { kAuto, kUring, kDev };
// "auto", "uring", "dev".
std::string_view TransportName(Transport transport);
// Inverse of TransportName (exact, lower case). Errors: InvalidArgument.
absl::StatusOr<Transport> ParseTransport(std::string_view text);

// Ring entries per CPU queue, each served by its own thread (docs/design.md,
// "Transport"): the most requests one CPU can have in the daemon at once.
inline constexpr int kDefaultUringDepth = 16;
inline constexpr int kMaxUringDepth = 64;
// Of those, how many each queue registers at start. The rest are held in
// reserve and register the first time a reply is delayed (latency,
// throttle), which is the only load that needs them: a deep queue of
// undelayed requests is served faster by fewer entries (docs/design.md,
// "Entries held in reserve"; docs/benchmarks.md, same title).
inline constexpr int kEagerUringEntries = 8;
// Threads per queue, each with its own ring holding its share of the
// queue's entries (docs/design.md, "Threads and CPUs"); 0: one per entry.
inline constexpr int kDefaultUringThreads = 0;
// After it commits a reply, one thread per queue polls its ring for this
// long before it sleeps (docs/design.md, "The poll window"); 0: never polls.
// It stands down by itself for a deep queue and after a delayed reply, so it
// is on by default.
inline constexpr int kDefaultUringPollUs = 20;
inline constexpr int kMaxUringPollUs = 1000;

struct DiskSpec {
  std::string name;
  std::optional<uint64_t> size_bytes;  // rounded up to 512; absent only with image_path
  std::optional<DataMode> mode;        // absent: Config::default_mode
  std::optional<std::string> image_path;
  bool readonly = false;
  CacheSettings cache;   // SPEC 11 keys (cache=, cache_size=, powercut_*=)
  FaultSettings faults;  // the fault keys; default: none
};

struct Config {
  std::string mountpoint;
  std::string source = "ramdiskfs";          // the mount's source (fsname)
  bool readonly = false;                     // -o ro: every disk read-only
  std::vector<DiskSpec> disks;               // in command-line order; names unique
  std::optional<uint64_t> max_memory_bytes;  // absent: half of RAM
  std::optional<DataMode> default_mode;      // absent: dax where possible, else direct
  StoreKind store = StoreKind::kAuto;
  int max_threads = 8;
  Transport transport = Transport::kAuto;
  int uring_depth = kDefaultUringDepth;
  int uring_threads = kDefaultUringThreads;
  int uring_poll_us = kDefaultUringPollUs;
  bool foreground = false;
  bool debug = false;
  bool single_threaded = false;
  bool allow_other = false;
  // --supervise / -o supervise: a supervisor holds the mount and the store and
  // restarts a worker that dies (SPEC 13, docs/survive.md).
  bool supervise = false;
  bool show_help = false;
  bool show_version = false;
  std::vector<std::string> fuse_options;  // "-o" options ramdiskfs passes to libfuse
};

// Default disks when none are given: kDefaultDiskCount disks of kDefaultDiskSize.
inline constexpr int kDefaultDiskCount = 1;
inline constexpr uint64_t kDefaultDiskSize = 1ULL << 30;

// Parses argv (argv[0] is the program name). Pure: touches no files (an
// image= path is not opened here). With --help/--version it returns a Config
// with show_help/show_version set and need not have a mountpoint (nor are
// disks made); the other options are still checked.
// Errors: InvalidArgument whose message is one line naming the bad argument,
// e.g. "--disk 'ram0:12Q': bad size '12Q': unknown suffix 'Q'". Duplicate
// names, a size of 0, more than kMaxDisks disks in all, --size given with
// --disk but without --disks (it would size nothing), missing or extra
// positional arguments are errors too. Thread-safe.
// Sizes may be "N%" of `ram_bytes` (0: unknown, then a percentage is an error).
absl::StatusOr<Config> ParseCommandLine(const std::vector<std::string>& argv,
                                        uint64_t ram_bytes = 0);

// The text printed by --help.
std::string UsageText(std::string_view program);

}  // namespace ramdiskfs

#endif  // RAMDISKFS_OPTIONS_H_
