// Command-line parsing (see options.h). A pure function from argv to Config:
// it opens nothing and prints nothing, so every rule is unit-tested and
// fuzzed. main.cc prints the error and exits 2.
//
// Rules beyond the header:
// - Options may come before, between or after the positional arguments;
//   "--" ends the options. Short flags may be grouped ("-fs", "-fo allow_other").
// - A repeated scalar option (--size, --disks, --mode, ...) takes its last
//   value; --disk adds one disk each time.
// - Disks: the --disk/-o disk= entries first, in the order given, then the
//   --disks set ram0..ramN-1. Without --disk and --disks, the default set
//   (kDefaultDiskCount disks). --size sizes the --disks or default set; given
//   with --disk but without --disks it would size nothing, so it is an error.
// - Long option names and -o keys accept '-' and '_' alike (--max-memory,
//   -o max_memory=).
// - -o values cannot contain ',' (it separates options), nor can a --disk
//   image path contain ':' (it separates fields).

#include "ramdiskfs/options.h"

#include <cerrno>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "ramdiskfs/size.h"
#include "ramdiskfs/status.h"
#include "src/text.h"

namespace ramdiskfs {
namespace {

using text::AsAbsl;
using text::Quote;

constexpr int kMaxThreads = 64;

// `text` split at every `separator` (n separators give n+1 pieces).
std::vector<std::string_view> Split(std::string_view text, char separator) {
  std::vector<std::string_view> pieces;
  for (size_t start = 0;;) {
    const size_t end = text.find(separator, start);
    if (end == std::string_view::npos) {
      pieces.push_back(text.substr(start));
      return pieces;
    }
    pieces.push_back(text.substr(start, end - start));
    start = end + 1;
  }
}

absl::Status Invalid(absl::string_view message) { return absl::InvalidArgumentError(message); }

// `status` with "where: " in front of its message, always InvalidArgument
// (the command line's single error code).
absl::Status Prefixed(std::string_view where, const absl::Status& status) {
  return Invalid(absl::StrCat(AsAbsl(where), ": ", status.message()));
}

// A decimal count in [min, max], digits only. `what` names it in messages.
absl::StatusOr<int> ParseCount(std::string_view text, int min, int max, std::string_view what) {
  int64_t value = 0;
  bool ok = !text.empty();
  for (char c : text) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) {
      ok = false;
      break;
    }
    value = value * 10 + (c - '0');
    if (value > max) break;  // no overflow; the range check below reports it
  }
  if (!ok) return Invalid(absl::StrCat("bad ", AsAbsl(what), " ", Quote(text)));
  if (value < min || value > max) {
    return Invalid(
        absl::StrCat("bad ", AsAbsl(what), " ", Quote(text), ": must be ", min, "..", max));
  }
  return static_cast<int>(value);
}

absl::StatusOr<StoreKind> ParseStoreKind(std::string_view text) {
  for (StoreKind kind : {StoreKind::kAuto, StoreKind::kTmpfs, StoreKind::kMemfd}) {
    if (text == StoreKindName(kind)) return kind;
  }
  return Invalid(absl::StrCat("bad store ", Quote(text), ": expected auto, tmpfs or memfd"));
}

// A size for a disk: ParseDiskSize (or a percentage of RAM), and not 0.
absl::StatusOr<uint64_t> ParseNonZeroDiskSize(std::string_view text, uint64_t ram_bytes) {
  absl::StatusOr<uint64_t> bytes;
  if (!text.empty() && text.back() == '%') {
    bytes = ParseSizeOrPercent(text, ram_bytes);
    if (bytes.ok()) bytes = RoundUp(*bytes, kLogicalBlockSize);
  } else {
    bytes = ParseDiskSize(text);
  }
  if (!bytes.ok()) return bytes.status();
  if (*bytes == 0) return Invalid(absl::StrCat("bad size ", Quote(text), ": must be more than 0"));
  return bytes;
}

// --max-memory: rounded up to a page, at least one page.
absl::StatusOr<uint64_t> ParseMaxMemory(std::string_view text, uint64_t ram_bytes) {
  absl::StatusOr<uint64_t> bytes = ParseSizeOrPercent(text, ram_bytes);
  if (!bytes.ok()) return bytes.status();
  absl::StatusOr<uint64_t> rounded = RoundUp(*bytes, kPageSize);
  if (!rounded.ok()) {
    return Invalid(
        absl::StrCat("bad size ", Quote(text), ": too large to round up to ", kPageSize, " bytes"));
  }
  if (*rounded < kPageSize) {
    return Invalid(absl::StrCat("bad size ", Quote(text), ": must be at least ", kPageSize));
  }
  return rounded;
}

// NAME:SIZE[:key=value...]
absl::StatusOr<DiskSpec> ParseDiskArgument(std::string_view text, uint64_t ram_bytes) {
  const std::vector<std::string_view> fields = Split(text, ':');
  DiskSpec disk;
  if (absl::Status status = ValidateDiskName(fields[0]); !status.ok()) {
    return Invalid(status.message());
  }
  disk.name = std::string(fields[0]);
  if (fields.size() < 2) return Invalid("expected NAME:SIZE[:key=value...]");
  const std::string_view size_text = fields[1];
  if (!size_text.empty()) {
    absl::StatusOr<uint64_t> bytes = ParseNonZeroDiskSize(size_text, ram_bytes);
    if (!bytes.ok()) return bytes.status();
    disk.size_bytes = *bytes;
  }
  bool seen_mode = false, seen_image = false, seen_readonly = false;
  std::unordered_set<std::string> seen_cache_keys;
  for (size_t i = 2; i < fields.size(); ++i) {
    const std::string_view field = fields[i];
    const size_t eq = field.find('=');
    if (eq == std::string_view::npos) {
      return Invalid(absl::StrCat("bad field ", Quote(field), ": expected key=value"));
    }
    const std::string_view key = field.substr(0, eq);
    const std::string_view value = field.substr(eq + 1);
    absl::StatusOr<bool> fault = ApplyFaultKey(key, value, &disk.faults);
    if (!fault.ok()) return Invalid(fault.status().message());
    if (*fault) continue;
    bool* seen = nullptr;
    if (absl::StatusOr<bool> cache_key = ApplyCacheKey(key, value, &disk.cache);
        !cache_key.ok() || *cache_key) {
      if (!cache_key.ok()) return cache_key.status();
      if (!seen_cache_keys.insert(std::string(key)).second) {
        return Invalid(absl::StrCat("repeated key ", Quote(key)));
      }
      continue;
    }
    if (key == "mode") {
      seen = &seen_mode;
    } else if (key == "image") {
      seen = &seen_image;
    } else if (key == "readonly") {
      seen = &seen_readonly;
    } else {
      return Invalid(absl::StrCat("unknown key ", Quote(key), " (expected mode, image, readonly, ",
                                  AsAbsl(kCacheKeyNames),
                                  " or a fault setting: badblocks, badblocks_once, "
                                  "badblocks_partial, errors, fault_seed, latency, throttle, "
                                  "flakey)"));
    }
    if (*seen) return Invalid(absl::StrCat("repeated key ", Quote(key)));
    *seen = true;
    if (key == "mode") {
      absl::StatusOr<DataMode> mode = ParseDataMode(value);
      if (!mode.ok()) return mode.status();
      disk.mode = *mode;
    } else if (key == "image") {
      if (value.empty()) return Invalid("image= needs a path");
      disk.image_path = std::string(value);
    } else if (value == "0" || value == "1") {
      disk.readonly = value == "1";
    } else {
      return Invalid(absl::StrCat("bad readonly ", Quote(value), ": expected 0 or 1"));
    }
  }
  if (!disk.size_bytes.has_value() && !disk.image_path.has_value()) {
    return Invalid("missing SIZE (it may be left empty only with image=)");
  }
  return disk;
}

// The options ramdiskfs owns, by their -o key.
enum class Key {
  kDisk,
  kDisks,
  kSize,
  kMaxMemory,
  kMode,
  kStore,
  kThreads,
  kTransport,
  kUringDepth,
  kUringThreads,
  kUringPollUs
};

std::optional<Key> FindKey(std::string_view name) {
  std::string normalized(name);
  for (char& c : normalized) {
    if (c == '-') c = '_';
  }
  if (normalized == "disk") return Key::kDisk;
  if (normalized == "disks") return Key::kDisks;
  if (normalized == "size") return Key::kSize;
  if (normalized == "max_memory") return Key::kMaxMemory;
  if (normalized == "mode") return Key::kMode;
  if (normalized == "store") return Key::kStore;
  if (normalized == "threads") return Key::kThreads;
  if (normalized == "transport") return Key::kTransport;
  if (normalized == "uring_depth") return Key::kUringDepth;
  if (normalized == "uring_threads") return Key::kUringThreads;
  if (normalized == "uring_poll_us") return Key::kUringPollUs;
  return std::nullopt;
}

class CommandLineParser {
 public:
  explicit CommandLineParser(uint64_t ram_bytes) : ram_bytes_(ram_bytes) {}
  absl::StatusOr<Config> Parse(const std::vector<std::string>& argv);

 private:
  // Applies an owned option; `where` names the argument in error messages.
  absl::Status Apply(Key key, std::string_view value, std::string where);
  absl::Status ApplyFuseOptions(std::string_view list);
  absl::Status ParseLong(const std::vector<std::string>& argv, size_t& i);
  absl::Status ParseShort(const std::vector<std::string>& argv, size_t& i);
  absl::Status AddDisk(DiskSpec disk, const std::string& where);
  absl::Status BuildDisks();

  const uint64_t ram_bytes_;  // for "N%" sizes
  Config config_;
  std::vector<std::string> positional_;
  std::vector<std::string> disk_origins_;  // parallel to config_.disks, for messages
  std::unordered_set<std::string> disk_names_;
  std::optional<int> disk_count_;
  std::string disk_count_where_;
  std::optional<uint64_t> disk_size_;
  std::string disk_size_where_;
};

absl::Status CommandLineParser::Apply(Key key, std::string_view value, std::string where) {
  auto fail = [&](const absl::Status& status) { return Prefixed(where, status); };
  switch (key) {
    case Key::kDisk: {
      absl::StatusOr<DiskSpec> disk = ParseDiskArgument(value, ram_bytes_);
      if (!disk.ok()) return fail(disk.status());
      return AddDisk(*std::move(disk), where);
    }
    case Key::kDisks: {
      absl::StatusOr<int> count = ParseCount(value, 1, kMaxDisks, "count");
      if (!count.ok()) return fail(count.status());
      disk_count_ = *count;
      disk_count_where_ = std::move(where);
      return absl::OkStatus();
    }
    case Key::kSize: {
      absl::StatusOr<uint64_t> bytes = ParseNonZeroDiskSize(value, ram_bytes_);
      if (!bytes.ok()) return fail(bytes.status());
      disk_size_ = *bytes;
      disk_size_where_ = std::move(where);
      return absl::OkStatus();
    }
    case Key::kMaxMemory: {
      absl::StatusOr<uint64_t> bytes = ParseMaxMemory(value, ram_bytes_);
      if (!bytes.ok()) return fail(bytes.status());
      config_.max_memory_bytes = *bytes;
      return absl::OkStatus();
    }
    case Key::kMode: {
      absl::StatusOr<DataMode> mode = ParseDataMode(value);
      if (!mode.ok()) return fail(mode.status());
      config_.default_mode = *mode;
      return absl::OkStatus();
    }
    case Key::kStore: {
      absl::StatusOr<StoreKind> store = ParseStoreKind(value);
      if (!store.ok()) return fail(store.status());
      config_.store = *store;
      return absl::OkStatus();
    }
    case Key::kThreads: {
      absl::StatusOr<int> threads = ParseCount(value, 1, kMaxThreads, "thread count");
      if (!threads.ok()) return fail(threads.status());
      config_.max_threads = *threads;
      return absl::OkStatus();
    }
    case Key::kTransport: {
      absl::StatusOr<Transport> transport = ParseTransport(value);
      if (!transport.ok()) return fail(transport.status());
      config_.transport = *transport;
      return absl::OkStatus();
    }
    case Key::kUringDepth: {
      absl::StatusOr<int> depth = ParseCount(value, 1, kMaxUringDepth, "queue depth");
      if (!depth.ok()) return fail(depth.status());
      config_.uring_depth = *depth;
      return absl::OkStatus();
    }
    case Key::kUringThreads: {
      absl::StatusOr<int> threads = ParseCount(value, 0, kMaxUringDepth, "ring threads per queue");
      if (!threads.ok()) return fail(threads.status());
      config_.uring_threads = *threads;
      return absl::OkStatus();
    }
    case Key::kUringPollUs: {
      absl::StatusOr<int> us = ParseCount(value, 0, kMaxUringPollUs, "poll window (us)");
      if (!us.ok()) return fail(us.status());
      config_.uring_poll_us = *us;
      return absl::OkStatus();
    }
  }
  return Invalid(absl::StrCat(where, ": internal error: unhandled option"));
}

absl::Status CommandLineParser::AddDisk(DiskSpec disk, const std::string& where) {
  if (config_.disks.size() >= static_cast<size_t>(kMaxDisks)) {
    return Invalid(absl::StrCat(where, ": too many disks (at most ", kMaxDisks, ")"));
  }
  if (!disk_names_.insert(disk.name).second) {
    return Invalid(absl::StrCat(where, ": duplicate disk name ", Quote(disk.name)));
  }
  config_.disks.push_back(std::move(disk));
  disk_origins_.push_back(where);
  return absl::OkStatus();
}

absl::Status CommandLineParser::ApplyFuseOptions(std::string_view list) {
  for (std::string_view item : Split(list, ',')) {
    if (item.empty()) continue;  // "a,,b" and a trailing ',' are harmless
    const size_t eq = item.find('=');
    const std::string_view name = item.substr(0, eq);
    if (std::optional<Key> key = FindKey(name)) {
      const std::string where = absl::StrCat("-o ", Quote(item));
      if (eq == std::string_view::npos) return Invalid(absl::StrCat(where, ": needs a value"));
      RDFS_RETURN_IF_ERROR(Apply(*key, item.substr(eq + 1), where));
      continue;
    }
    if (item == "allow_other") config_.allow_other = true;
    if (item == "supervise") {  // ours, not libfuse's (docs/survive.md)
      config_.supervise = true;
      continue;
    }
    // mount(8)'s ro/rw: ro makes every disk read-only; it is not passed to
    // the kernel, so the control tree stays writable (docs/design.md).
    if (item == "ro" || item == "rw") {
      config_.readonly = item == "ro";
      if (item == "ro") continue;
    }
    config_.fuse_options.emplace_back(item);
  }
  return absl::OkStatus();
}

absl::Status CommandLineParser::ParseLong(const std::vector<std::string>& argv, size_t& i) {
  const std::string_view arg = argv[i];
  const size_t eq = arg.find('=');
  const std::string_view name = arg.substr(0, eq);  // with the dashes
  std::optional<std::string_view> value;
  if (eq != std::string_view::npos) value = arg.substr(eq + 1);

  if (name == "--help" || name == "--version" || name == "--supervise") {
    if (value) return Invalid(absl::StrCat(AsAbsl(name), ": takes no value"));
    (name == "--help"      ? config_.show_help
     : name == "--version" ? config_.show_version
                           : config_.supervise) = true;
    return absl::OkStatus();
  }
  const std::optional<Key> key = FindKey(name.substr(2));
  if (!key) return Invalid(absl::StrCat("unknown option ", Quote(name), " (see --help)"));
  if (!value) {
    if (i + 1 >= argv.size()) return Invalid(absl::StrCat(AsAbsl(name), ": needs a value"));
    value = argv[++i];
  }
  return Apply(*key, *value, absl::StrCat(AsAbsl(name), " ", Quote(*value)));
}

absl::Status CommandLineParser::ParseShort(const std::vector<std::string>& argv, size_t& i) {
  const std::string_view arg = argv[i];
  for (size_t j = 1; j < arg.size(); ++j) {
    switch (arg[j]) {
      case 'f':
        config_.foreground = true;
        break;
      case 'd':
        config_.debug = true;
        config_.foreground = true;
        break;
      case 's':
        config_.single_threaded = true;
        break;
      case 'h':
        config_.show_help = true;
        break;
      case 'V':
        config_.show_version = true;
        break;
      case 'o':
        if (j + 1 < arg.size()) return ApplyFuseOptions(arg.substr(j + 1));
        if (i + 1 >= argv.size()) return Invalid("-o: needs a value");
        return ApplyFuseOptions(argv[++i]);
      default:
        return Invalid(
            absl::StrCat("unknown option ", Quote(std::string{'-', arg[j]}), " (see --help)"));
    }
  }
  return absl::OkStatus();
}

absl::Status CommandLineParser::BuildDisks() {
  std::optional<int> count = disk_count_;
  std::string where = disk_count_where_;
  if (!count && config_.disks.empty()) {
    count = kDefaultDiskCount;
    where = "default disks";
  }
  if (!count) {
    if (disk_size_) {
      return Invalid(absl::StrCat(disk_size_where_,
                                  ": sizes only the --disks or default disks; give --disks N "
                                  "too, or put the size in --disk NAME:SIZE"));
    }
    return absl::OkStatus();
  }
  const uint64_t size = disk_size_.value_or(kDefaultDiskSize);
  for (int n = 0; n < *count; ++n) {
    DiskSpec disk;
    disk.name = absl::StrCat("ram", n);
    disk.size_bytes = size;
    if (disk_names_.contains(disk.name)) {
      return Invalid(absl::StrCat(where, ": duplicate disk name ", Quote(disk.name),
                                  " (also given by --disk)"));
    }
    RDFS_RETURN_IF_ERROR(AddDisk(std::move(disk), where));
  }
  return absl::OkStatus();
}

absl::StatusOr<Config> CommandLineParser::Parse(const std::vector<std::string>& argv) {
  bool options_ended = false;
  for (size_t i = 1; i < argv.size(); ++i) {
    const std::string& arg = argv[i];
    if (options_ended || arg.size() < 2 || arg[0] != '-') {
      positional_.push_back(arg);
    } else if (arg == "--") {
      options_ended = true;
    } else if (arg[1] == '-') {
      RDFS_RETURN_IF_ERROR(ParseLong(argv, i));
    } else {
      RDFS_RETURN_IF_ERROR(ParseShort(argv, i));
    }
  }
  // --help and --version need no mountpoint and make no disks; the options
  // given with them are still checked above.
  if (config_.show_help || config_.show_version) return std::move(config_);

  if (positional_.empty()) return Invalid("missing MOUNTPOINT (see --help)");
  if (positional_.size() > 2) {
    return Invalid(absl::StrCat("unexpected argument ", Quote(positional_[2]),
                                " (expected [SOURCE] MOUNTPOINT)"));
  }
  config_.mountpoint = positional_.back();
  if (config_.mountpoint.empty()) return Invalid("MOUNTPOINT '': empty");
  if (positional_.size() == 2) {
    // Recorded as the mount's source, so that mount -a finds an fstab line
    // already mounted. ',' would split libfuse's option list.
    const std::string& source = positional_[0];
    if (source.empty() || source.find(',') != std::string::npos) {
      return Invalid(absl::StrCat("bad SOURCE ", Quote(source), ": empty or contains ','"));
    }
    config_.source = source;
  }
  RDFS_RETURN_IF_ERROR(BuildDisks());
  return std::move(config_);
}

}  // namespace

std::string_view TransportName(Transport transport) {
  switch (transport) {
    case Transport::kAuto:
      return "auto";
    case Transport::kUring:
      return "uring";
    case Transport::kDev:
      return "dev";
  }
  return "unknown";
}

absl::StatusOr<Transport> ParseTransport(std::string_view text) {
  for (Transport transport : {Transport::kAuto, Transport::kUring, Transport::kDev}) {
    if (text == TransportName(transport)) return transport;
  }
  return Invalid(absl::StrCat("bad transport ", Quote(text), ": expected auto, uring or dev"));
}

absl::StatusOr<Config> ParseCommandLine(const std::vector<std::string>& argv, uint64_t ram_bytes) {
  return CommandLineParser(ram_bytes).Parse(argv);
}

std::string UsageText(std::string_view program) {
  const Config defaults;
  const std::string default_size = FormatSize(kDefaultDiskSize);
  const std::string p(program.empty() ? std::string_view("ramdiskfs") : program);
  const std::string default_set =
      kDefaultDiskCount == 1
          ? std::string("one disk, ram0,")
          : absl::StrCat(kDefaultDiskCount, " disks, ram0..ram", kDefaultDiskCount - 1, ",");
  return absl::StrCat(
      "Usage: ", p, " [SOURCE] MOUNTPOINT [options]\n",
      "\n"
      "RAM disks as files: each disk is a fixed-size regular file in MOUNTPOINT whose\n"
      "pages live in memory. The store is sparse: an unwritten page costs no RAM.\n"
      "MOUNTPOINT/.control/ holds the control files (see ramdiskfs(8)). SOURCE,\n"
      "which mount(8) passes, is recorded as the mount's source (default ramdiskfs).\n"
      "\n"
      "Disks:\n"
      "  --disk NAME:SIZE[:key=value...]\n"
      "                      add one disk (repeatable). Keys:\n"
      "                        mode=dax|direct|cached|null  data mode of this disk\n"
      "                        readonly=0|1                 refuse writes with EROFS\n"
      "                        image=PATH                   fill the disk from an image\n"
      "                                                     file; SIZE may then be\n"
      "                                                     empty to take its size\n"
      "                                                     (NAME::image=PATH)\n"
      "                        cache=none|volatile          volatile write cache;\n"
      "                                                     implies mode=direct\n"
      "                                                     unless mode= is given\n"
      "                        cache_size=SIZE              bound on unflushed bytes\n"
      "                        powercut_policy=P            all_lost|random|prefix|torn\n"
      "                        powercut_seed=N              seed of the cut's draws\n"
      "                                                     (docs/crashtest.md)\n"
      "                        badblocks=, badblocks_once=, badblocks_partial=,\n"
      "                        errors=, fault_seed=, latency=, throttle=, flakey=\n"
      "                                                     fault injection, as the\n"
      "                                                     control files of the same\n"
      "                                                     names (docs/faults.md):\n"
      "                                                     latency=write 200\n"
      "                      NAME: 1-255 of A-Z a-z 0-9 . _ + @ -, not starting\n"
      "                      with . or -\n"
      "  --disks N           N disks named ram0..ramN-1 (1..",
      kMaxDisks,
      "), after any --disk\n"
      "  --size SIZE         size of each --disks disk (default ",
      default_size,
      ")\n"
      "  Without --disk and --disks: ",
      default_set, " of --size or ", default_size,
      ".\n"
      "\n"
      "Memory and data path:\n"
      "  --max-memory SIZE   cap on the RAM all disks together hold (default: half of\n"
      "                      RAM); a write that needs more fails with ENOSPC\n"
      "  --mode MODE         default data mode: dax, direct, cached or null\n"
      "                      (default: dax where the kernel allows it, else direct)\n"
      "  --store KIND        page store: auto, tmpfs or memfd (default auto)\n"
      "  --threads N         most FUSE worker threads, 1..",
      kMaxThreads, " (default ", defaults.max_threads,
      ")\n"
      "\n"
      "Transport (how the kernel hands requests to the daemon):\n"
      "  --transport T       uring: io_uring queues, one per CPU (Linux 6.14+; needs\n"
      "                      /sys/module/fuse/parameters/enable_uring = Y, which only\n"
      "                      root sets: echo 1 > that file); dev: read/write on\n"
      "                      /dev/fuse; auto (default): uring where the kernel\n"
      "                      offers it, else dev\n"
      "  --uring-depth N     ring entries per CPU queue, 1..",
      kMaxUringDepth, " (default ", kDefaultUringDepth,
      ");\n"
      "                      ",
      kEagerUringEntries,
      " register at start, the rest at the first delayed reply\n"
      "  --uring-threads N   threads per queue, each with its own ring, which share\n"
      "                      the queue's entries and commit their replies together;\n"
      "                      0 (default): one thread per entry\n"
      "  --uring-poll-us N   after a reply, one thread per queue polls its ring for\n"
      "                      N us before it sleeps, 0..",
      kMaxUringPollUs, " (default ", kDefaultUringPollUs,
      "; 0: never)\n"
      "\n"
      "Crash survival (docs/survive.md):\n"
      "  --supervise         a supervisor keeps the mount and the disks and replaces\n"
      "                      a worker that dies (SIGHUP: upgrade it); --transport dev\n"
      "\n"
      "FUSE:\n"
      "  -f                  stay in the foreground\n"
      "  -d                  debug output (implies -f)\n"
      "  -s                  single-threaded\n"
      "  -o OPT[,OPT...]     mount options: disk=, disks=, size=, max_memory=, mode=,\n"
      "                      store=, threads=, transport=, uring_depth=,\n"
      "                      uring_threads=, uring_poll_us= as above;\n"
      "                      ro (every disk read-only); allow_other (let other\n"
      "                      users in); supervise (as --supervise); anything\n"
      "                      else (default_permissions, rw, nosuid, ...) goes to\n"
      "                      libfuse\n"
      "  -h, --help          print this help and exit\n"
      "  -V, --version       print the version and exit\n"
      "\n"
      "Long options take \"--opt VALUE\" or \"--opt=VALUE\". A repeated option takes its\n"
      "last value, except --disk and -o disk=, which add a disk each time.\n"
      "\n"
      "SIZE: bytes, optionally with a K, M, G, T or P suffix (powers of 1024, any\n"
      "case, optionally followed by iB or B): 4096, 512K, 64M, 1g, 2GiB, 1.5G; or a\n"
      "percentage of RAM, as tmpfs takes it: 50%. No sign, spaces or hex. Disk sizes\n"
      "round up to 512 bytes, memory caps to 4K.\n"
      "\n"
      "Exit status: 0 success (and after a clean unmount), 1 bad options (incorrect\n"
      "invocation, as mount(8) helpers report it), 32 the mount failed (MOUNTPOINT\n"
      "missing or already a ramdiskfs, no FUSE, a disk or image that cannot be made).\n"
      "\n"
      "Examples:\n"
      "  ",
      p,
      " /mnt/rd --disks 2 --size 1G\n"
      "  ",
      p,
      " /mnt/rd --disk ram0:4G:mode=direct --disk boot::image=/srv/boot.img\n"
      "  mount -t fuse.ramdiskfs ramdiskfs /mnt/rd -o disks=4,size=1G\n"
      "  fstab:  ramdiskfs  /mnt/rd  fuse.ramdiskfs  disks=4,size=1G,allow_other  0  0\n"
      "  fusermount3 -u /mnt/rd                 (unmount)\n");
}

}  // namespace ramdiskfs
