#include "ramdiskfs/survive_state.h"

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "ramdiskfs/cache_control.h"
#include "ramdiskfs/faults.h"
#include "ramdiskfs/status.h"

namespace ramdiskfs {
namespace {

// "ramdiskfs-state VERSION". Version 1 (the first --supervise) had no
// `set` lines; version 2 adds them. A worker reads both, so an upgrade from
// a version 1 worker keeps its table (with default settings, which is what
// version 1 served: it carried none).
constexpr absl::string_view kMagicPrefix = "ramdiskfs-state ";
constexpr int kVersion = 2;

absl::string_view A(std::string_view s) { return absl::string_view(s.data(), s.size()); }
std::string_view S(absl::string_view s) { return std::string_view(s.data(), s.size()); }

int64_t ToNs(absl::Time t) { return absl::ToUnixNanos(t); }

template <typename T>
bool ParseNumber(absl::string_view text, T* out) {
  if constexpr (std::is_signed_v<T>) {
    int64_t v;
    if (!absl::SimpleAtoi(text, &v)) return false;
    *out = static_cast<T>(v);
  } else {
    uint64_t v;
    if (!absl::SimpleAtoi(text, &v)) return false;
    *out = static_cast<T>(v);
  }
  return true;
}

// A fault file's text as a write would take it: badblocks renders
// "START-END" lines, a write needs "+START-END".
std::string FaultWriteText(FaultFile file, const FaultSettings& settings) {
  std::string text = RenderFaultFile(file, settings);
  if (file != FaultFile::kBadblocks) return text;
  std::string out;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    absl::StrAppend(&out, "+", line, "\n");
  }
  return out;
}

// The `set` lines of one disk: only what differs from a new disk's.
void EncodeSettings(const DiskSettings& s, std::string* out) {
  auto set = [out](absl::string_view key, absl::string_view value) {
    absl::StrAppend(out, "set ", key, " ", absl::CEscape(value), "\n");
  };
  const FaultSettings none;
  for (FaultFile file : AllFaultFiles()) {
    const std::string text = FaultWriteText(file, s.faults);
    if (text != FaultWriteText(file, none)) {
      set(absl::StrCat("fault:", A(FaultFileName(file))), text);
    }
  }
  if (s.faults.flakey.on()) set("flakey_epoch", absl::StrCat(s.flakey_epoch_ns));
  const CacheSettings cache;
  if (s.cache.mode != cache.mode) set("cache", A(CacheModeName(s.cache.mode)));
  if (s.cache.cache_size_bytes != 0) set("cache_size", absl::StrCat(s.cache.cache_size_bytes));
  if (s.cache.policy != cache.policy) {
    set("powercut_policy", A(PowercutPolicyName(s.cache.policy)));
  }
  if (s.cache.seed != 0) set("powercut_seed", absl::StrCat(s.cache.seed));
  if (!s.power_on) set("power", "0");
  if (s.cut_at_flush != 0) set("powercut_at_flush", absl::StrCat(s.cut_at_flush));
  if (!s.last_cut.empty()) set("powercut_log", RenderPowercutLog(s.last_cut));
}

// One `set KEY VALUE` (VALUE C-escaped) onto `s`.
absl::Status DecodeSetting(absl::string_view key, absl::string_view escaped, DiskSettings* s) {
  std::string value;
  if (!absl::CUnescape(escaped, &value)) return absl::InvalidArgumentError("bad escape");
  if (absl::ConsumePrefix(&key, "fault:")) {
    std::optional<FaultFile> file = FindFaultFile(S(key));
    if (!file) return absl::InvalidArgumentError(absl::StrCat("unknown fault file '", key, "'"));
    return ApplyFaultWrite(*file, value, &s->faults);
  }
  if (key == "flakey_epoch") {
    if (!ParseNumber(value, &s->flakey_epoch_ns)) return absl::InvalidArgumentError("bad number");
    return absl::OkStatus();
  }
  if (key == "powercut_log") {
    absl::StatusOr<std::vector<PowercutRecord>> log = ParsePowercutLog(value);
    if (!log.ok()) return log.status();
    s->last_cut = *std::move(log);
    return absl::OkStatus();
  }
  auto take = [](auto parsed, auto* to) {
    if (!parsed.ok()) return parsed.status();
    *to = *parsed;
    return absl::OkStatus();
  };
  if (key == "cache") return take(ParseCacheValue(value), &s->cache.mode);
  if (key == "cache_size") return take(ParseCacheSizeValue(value), &s->cache.cache_size_bytes);
  if (key == "powercut_policy") return take(ParsePowercutPolicyValue(value), &s->cache.policy);
  if (key == "powercut_seed") return take(ParsePowercutSeedValue(value), &s->cache.seed);
  if (key == "power") return take(ParsePowerValue(value), &s->power_on);
  if (key == "powercut_at_flush") return take(ParsePowercutAtFlushValue(value), &s->cut_at_flush);
  return absl::InvalidArgumentError(absl::StrCat("unknown setting '", key, "'"));
}

}  // namespace

std::string EncodeTableState(const TableState& state) {
  std::string out = absl::StrCat(kMagicPrefix, kVersion, "\n");
  absl::StrAppend(&out, "table ", state.next_id, " ", state.max_memory_bytes, " ",
                  state.disks.size(), "\n");
  for (const DiskState& d : state.disks) {
    absl::StrAppend(&out, "disk ", d.id, " ", A(DataModeName(d.requested_mode)), " ",
                    d.readonly ? 1 : 0, " ", d.growing ? 1 : 0, " ", d.permissions, " ", d.uid, " ",
                    d.gid, " ", d.mtime_ns, " ", d.ctime_ns, " ", d.backing_id, " ", d.name, "\n");
    EncodeSettings(d.settings, &out);
  }
  absl::StrAppend(&out, "end\n");
  return out;
}

absl::StatusOr<TableState> DecodeTableState(std::string_view std_text) {
  const absl::string_view text = A(std_text);
  std::vector<absl::string_view> lines = absl::StrSplit(text, '\n');
  auto bad = [](size_t line, absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("state line ", line + 1, ": ", why));
  };
  absl::string_view magic = lines.empty() ? absl::string_view() : lines[0];
  int version = 0;
  if (!absl::ConsumePrefix(&magic, kMagicPrefix) || !absl::SimpleAtoi(magic, &version)) {
    return bad(0, "not a ramdiskfs state");
  }
  if (version < 1 || version > kVersion) {
    return bad(0,
               absl::StrCat("state version ", magic, ", but this ramdiskfs reads versions 1 to ",
                            kVersion, " (a newer binary wrote it: upgrade to that one or newer)"));
  }
  if (lines.size() < 3) return bad(1, "truncated");
  TableState state;
  std::vector<absl::string_view> t = absl::StrSplit(lines[1], ' ');
  size_t count = 0;
  if (t.size() != 4 || t[0] != "table" || !ParseNumber(t[1], &state.next_id) ||
      !ParseNumber(t[2], &state.max_memory_bytes) || !ParseNumber(t[3], &count)) {
    return bad(1, "bad table line");
  }
  if (count > static_cast<size_t>(kMaxDisks) || lines.size() < count + 3) {
    return bad(1, "bad disk count");
  }
  size_t i = 2;
  for (; i < lines.size() && lines[i] != "end"; ++i) {
    if (absl::StartsWith(lines[i], "set ")) {
      std::vector<absl::string_view> f = absl::StrSplit(lines[i], absl::MaxSplits(' ', 2));
      if (version < 2 || state.disks.empty() || f.size() != 3) return bad(i, "bad set line");
      absl::Status set = DecodeSetting(f[1], f[2], &state.disks.back().settings);
      if (!set.ok()) return bad(i, absl::StrCat("set ", f[1], ": ", set.message()));
      continue;
    }
    std::vector<absl::string_view> f = absl::StrSplit(lines[i], ' ');
    DiskState d;
    int readonly = 0, growing = 0;
    if (state.disks.size() == count || f.size() != 12 || f[0] != "disk" ||
        !ParseNumber(f[1], &d.id) || !ParseNumber(f[3], &readonly) ||
        !ParseNumber(f[4], &growing) || !ParseNumber(f[5], &d.permissions) ||
        !ParseNumber(f[6], &d.uid) || !ParseNumber(f[7], &d.gid) ||
        !ParseNumber(f[8], &d.mtime_ns) || !ParseNumber(f[9], &d.ctime_ns) ||
        !ParseNumber(f[10], &d.backing_id)) {
      return bad(i, "bad disk line");
    }
    absl::StatusOr<DataMode> mode = ParseDataMode(S(f[2]));
    if (!mode.ok()) return bad(i, "bad mode");
    if (!ValidateDiskName(S(f[11])).ok()) return bad(i, "bad name");
    d.requested_mode = *mode;
    d.readonly = readonly != 0;
    d.growing = growing != 0;
    d.name = std::string(f[11]);
    state.disks.push_back(std::move(d));
  }
  if (i == lines.size()) return bad(i - 1, "no end line (truncated)");
  if (state.disks.size() != count) return bad(i, "fewer disk lines than the table line says");
  return state;
}

std::string SupervisorSocketName(std::string_view mountpoint) {
  constexpr size_t kSunPath = 108;  // sizeof(sockaddr_un::sun_path), with the leading NUL
  std::string name = absl::StrCat("ramdiskfs-supervisor:", A(mountpoint));
  if (name.size() + 1 <= kSunPath) return name;
  uint64_t hash = 0xcbf29ce484222325ULL;
  for (unsigned char c : mountpoint) hash = (hash ^ c) * 0x100000001b3ULL;
  return absl::StrCat("ramdiskfs-supervisor#", absl::Hex(hash, absl::kZeroPad16));
}

TableState CaptureTableState(const DiskTable& table, std::vector<int>* fds) {
  TableState state;
  state.next_id = table.next_id();
  state.max_memory_bytes = const_cast<DiskTable&>(table).pool().max_bytes();
  for (const auto& disk : table.List()) {
    DiskState d;
    d.id = disk->id();
    d.name = disk->name();
    d.requested_mode = disk->requested_mode();
    d.readonly = disk->readonly();
    d.growing = disk->growing();
    const DiskAttributes attr = disk->attributes();
    d.permissions = attr.permissions;
    d.uid = attr.uid;
    d.gid = attr.gid;
    d.mtime_ns = ToNs(attr.mtime);
    d.ctime_ns = ToNs(attr.ctime);
    d.backing_id = disk->backing_id();
    d.settings = disk->CaptureSettings();
    state.disks.push_back(std::move(d));
    if (fds != nullptr) fds->push_back(disk->store().fd());
  }
  return state;
}

absl::Status RestoreTable(const TableState& state, std::vector<int> fds, DiskTable* table) {
  if (fds.size() != state.disks.size()) {
    for (int fd : fds) close(fd);
    return absl::InvalidArgumentError(absl::StrCat("state names ", state.disks.size(),
                                                   " disks but ", fds.size(),
                                                   " backing files came with it"));
  }
  absl::Status first_error;
  for (size_t i = 0; i < fds.size(); ++i) {
    const DiskState& d = state.disks[i];
    NewDisk spec;
    spec.name = d.name;
    spec.mode = d.requested_mode;
    spec.readonly = d.readonly;
    spec.growing = d.growing;
    spec.attributes = {d.permissions, d.uid, d.gid, absl::FromUnixNanos(d.mtime_ns),
                       absl::FromUnixNanos(d.ctime_ns)};
    absl::StatusOr<std::shared_ptr<Disk>> disk = table->Adopt(d.id, std::move(spec), fds[i]);
    if (!disk.ok()) {
      if (first_error.ok()) first_error = disk.status();
      continue;
    }
    if (d.backing_id > 0) (*disk)->set_backing_id(d.backing_id);
    if (absl::Status settings = (*disk)->RestoreSettings(d.settings); !settings.ok()) {
      if (first_error.ok()) first_error = settings;
    }
  }
  table->RaiseNextId(state.next_id);
  return first_error;
}

// ---- OpenTable --------------------------------------------------------------------

struct OpenTable::Record {
  std::atomic<uint32_t> state;  // 0 free, 1 claimed (being written), 2 live
  uint32_t flags;               // bit 0 for_write, 1 passthrough, 2 bypass_writer
  uint32_t kind;
  uint32_t control_file;
  uint64_t disk_id;
  std::atomic<uint64_t> overflow_seen;
  uint64_t unique;
  uint64_t reserved[3];  // room to grow without changing the layout
};

static_assert(sizeof(std::atomic<uint32_t>) == 4 && sizeof(std::atomic<uint64_t>) == 8);

namespace {
constexpr uint32_t kFree = 0, kClaimed = 1, kLive = 2, kPending = 3;
}

absl::StatusOr<std::unique_ptr<OpenTable>> OpenTable::Create(size_t capacity) {
  int fd = memfd_create("ramdiskfs:opens", MFD_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, "memfd_create(open table)");
  // Sparse: only the pages of slots ever used take memory.
  if (ftruncate(fd, static_cast<off_t>(capacity * sizeof(Record))) != 0) {
    int err = errno;
    close(fd);
    return ErrnoStatus(err, "ftruncate(open table)");
  }
  return Attach(fd);
}

absl::StatusOr<std::unique_ptr<OpenTable>> OpenTable::Attach(int fd) {
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int err = errno;
    close(fd);
    return ErrnoStatus(err, "fstat(open table)");
  }
  const size_t bytes = static_cast<size_t>(st.st_size);
  if (bytes == 0 || bytes % sizeof(Record) != 0) {
    close(fd);
    return absl::InvalidArgumentError(absl::StrCat("open table of ", bytes, " bytes"));
  }
  void* map = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (map == MAP_FAILED) {
    int err = errno;
    close(fd);
    return ErrnoStatus(err, "mmap(open table)");
  }
  return std::unique_ptr<OpenTable>(
      new OpenTable(fd, static_cast<Record*>(map), bytes / sizeof(Record)));
}

OpenTable::OpenTable(int fd, Record* records, size_t capacity)
    : fd_(fd), records_(records), capacity_(capacity) {
  static_assert(sizeof(Record) == 64, "the layout a restarted worker (or an upgrade) maps");
  // A slot claimed but never written: the worker died inside Add. Its open
  // was never answered (the record is pending before the reply), so the
  // kernel holds no handle for it.
  for (size_t i = 0; i < capacity_; ++i) {
    if (records_[i].state.load() == kClaimed) records_[i].state.store(kFree);
  }
}

OpenTable::~OpenTable() {
  munmap(records_, capacity_ * sizeof(Record));
  close(fd_);
}

absl::StatusOr<uint64_t> OpenTable::Add(const OpenInfo& info) {
  const size_t start = hint_.load(std::memory_order_relaxed);
  for (size_t n = 0; n < capacity_; ++n) {
    const size_t i = (start + n) % capacity_;
    Record& r = records_[i];
    uint32_t expected = kFree;
    if (r.state.load(std::memory_order_relaxed) != kFree ||
        !r.state.compare_exchange_strong(expected, kClaimed, std::memory_order_acquire)) {
      continue;
    }
    r.flags =
        (info.for_write ? 1u : 0u) | (info.passthrough ? 2u : 0u) | (info.bypass_writer ? 4u : 0u);
    r.kind = info.kind;
    r.control_file = info.control_file;
    r.disk_id = info.disk_id;
    r.overflow_seen.store(info.overflow_seen, std::memory_order_relaxed);
    r.unique = info.unique;
    r.state.store(kPending, std::memory_order_release);
    hint_.store(i + 1, std::memory_order_relaxed);
    return i + 1;
  }
  return ErrnoStatus(ENFILE, absl::StrCat("all ", capacity_, " open file slots are in use"));
}

void OpenTable::Confirm(uint64_t handle) {
  if (handle == 0 || handle > capacity_) return;
  uint32_t expected = kPending;
  records_[handle - 1].state.compare_exchange_strong(expected, kLive, std::memory_order_release);
}

uint64_t OpenTable::FindPending(uint64_t unique) const {
  if (unique == 0) return 0;
  for (size_t i = 0; i < capacity_; ++i) {
    const Record& r = records_[i];
    if (r.state.load(std::memory_order_acquire) == kPending && r.unique == unique) return i + 1;
  }
  return 0;
}

void OpenTable::Remove(uint64_t handle) {
  if (handle == 0 || handle > capacity_) return;
  records_[handle - 1].state.store(kFree, std::memory_order_release);
}

std::optional<OpenInfo> OpenTable::Get(uint64_t handle) const {
  if (handle == 0 || handle > capacity_) return std::nullopt;
  const Record& r = records_[handle - 1];
  const uint32_t state = r.state.load(std::memory_order_acquire);
  if (state != kLive && state != kPending) return std::nullopt;
  OpenInfo info;
  info.kind = static_cast<OpenInfo::Kind>(r.kind);
  info.disk_id = r.disk_id;
  info.control_file = r.control_file;
  info.for_write = r.flags & 1;
  info.passthrough = r.flags & 2;
  info.bypass_writer = r.flags & 4;
  info.overflow_seen = r.overflow_seen.load(std::memory_order_relaxed);
  info.unique = r.unique;
  info.pending = state == kPending;
  return info;
}

void OpenTable::SetOverflowSeen(uint64_t handle, uint64_t seen) {
  if (handle == 0 || handle > capacity_) return;
  records_[handle - 1].overflow_seen.store(seen, std::memory_order_relaxed);
}

std::vector<std::pair<uint64_t, OpenInfo>> OpenTable::Live() const {
  std::vector<std::pair<uint64_t, OpenInfo>> live;
  for (size_t i = 0; i < capacity_; ++i) {
    if (std::optional<OpenInfo> info = Get(i + 1)) live.emplace_back(i + 1, *info);
  }
  return live;
}

// ---- ReplyLog ----------------------------------------------------------------------

struct ReplyLog::Entry {
  std::atomic<uint64_t> unique;  // 0: empty
  std::atomic<int64_t> err;
};

absl::StatusOr<std::unique_ptr<ReplyLog>> ReplyLog::Create() {
  int fd = memfd_create("ramdiskfs:replies", MFD_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, "memfd_create(reply log)");
  if (ftruncate(fd, static_cast<off_t>(kCapacity * sizeof(Entry))) != 0) {
    int err = errno;
    close(fd);
    return ErrnoStatus(err, "ftruncate(reply log)");
  }
  return Attach(fd);
}

absl::StatusOr<std::unique_ptr<ReplyLog>> ReplyLog::Attach(int fd) {
  struct stat st;
  if (fstat(fd, &st) != 0 || static_cast<size_t>(st.st_size) != kCapacity * sizeof(Entry)) {
    close(fd);
    return absl::InvalidArgumentError("not a reply log");
  }
  void* map = mmap(nullptr, kCapacity * sizeof(Entry), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (map == MAP_FAILED) {
    int err = errno;
    close(fd);
    return ErrnoStatus(err, "mmap(reply log)");
  }
  return std::unique_ptr<ReplyLog>(new ReplyLog(fd, static_cast<Entry*>(map)));
}

ReplyLog::ReplyLog(int fd, Entry* entries) : fd_(fd), entries_(entries) {
  // Continue after the newest entry a predecessor wrote (uniques only grow).
  uint64_t newest = 0;
  size_t at = 0;
  for (size_t i = 0; i < kCapacity; ++i) {
    const uint64_t u = entries_[i].unique.load(std::memory_order_relaxed);
    if (u > newest) {
      newest = u;
      at = i + 1;
    }
  }
  next_ = at;
}

ReplyLog::~ReplyLog() {
  munmap(entries_, kCapacity * sizeof(Entry));
  close(fd_);
}

void ReplyLog::Record(uint64_t unique, int err) {
  Entry& e = entries_[next_.fetch_add(1, std::memory_order_relaxed) % kCapacity];
  e.unique.store(0, std::memory_order_release);  // never a half-written pair
  e.err.store(err, std::memory_order_relaxed);
  e.unique.store(unique, std::memory_order_release);
}

std::optional<int> ReplyLog::Find(uint64_t unique) const {
  if (unique == 0) return std::nullopt;
  for (size_t i = 0; i < kCapacity; ++i) {
    if (entries_[i].unique.load(std::memory_order_acquire) == unique) {
      return static_cast<int>(entries_[i].err.load(std::memory_order_relaxed));
    }
  }
  return std::nullopt;
}

}  // namespace ramdiskfs
