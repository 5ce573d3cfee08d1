// ramdiskctl: the zramctl / `losetup --list` style companion of ramdiskfs.
//
// It only reads and writes the text files of MOUNT/.control/ (docs/control.md);
// it never sends ioctls and never talks to the daemon any other way, so
// everything it does can also be done with echo and cat. Arguments are checked
// locally with the core parsers first (a bad size or name is a usage error,
// exit 2, and nothing is written), but the daemon has the final word: its
// errno comes back from the write() and is printed.
//
//   ramdiskctl [list] [MOUNT] [--json] [--noheadings] [--output COLS] [--bytes]
//   ramdiskctl create NAME SIZE [--mode MODE] [--readonly] [MOUNT]
//   ramdiskctl delete NAME [MOUNT]            ramdiskctl resize NAME SIZE [MOUNT]
//   ramdiskctl flush NAME [MOUNT]             ramdiskctl discard NAME OFFSET LENGTH [MOUNT]
//   ramdiskctl mode NAME [MODE] [MOUNT]       ramdiskctl readonly NAME [0|1] [MOUNT]
//   ramdiskctl stats [NAME] [MOUNT] [--json]  ramdiskctl max-memory [SIZE] [MOUNT]
//
// Exit status: 0 success, 1 the operation failed, 2 bad usage. Every error is
// one line on stderr: "ramdiskctl: <what>: <strerror>".

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "ramdiskfs/control.h"
#include "ramdiskfs/options.h"
#include "ramdiskfs/size.h"
#include "ramdiskfs/status.h"

namespace ramdiskfs {
namespace {

constexpr char kProgram[] = "ramdiskctl";
constexpr int kExitFailure = 1;  // the operation failed (the daemon's or a syscall's errno)
constexpr int kExitUsage = 2;    // bad arguments: nothing was written

// Debian's abseil 20220623 has its own absl::string_view (not std's); the core
// API takes std::string_view. These convert at the boundary.
std::string_view Std(absl::string_view text) { return {text.data(), text.size()}; }
absl::string_view Absl(std::string_view text) { return {text.data(), text.size()}; }

// ---- errors -------------------------------------------------------------------
//
// A failed step is an absl::Status whose message is the "<what>" part of the
// one-line report; two payloads carry the errno to print and the exit status.

constexpr absl::string_view kErrnoPayload = "ramdiskctl/errno";
constexpr absl::string_view kExitPayload = "ramdiskctl/exit";

absl::Status Fail(int exit_status, absl::string_view what, int err) {
  absl::Status status(absl::ErrnoToStatusCode(err), what);
  status.SetPayload(kErrnoPayload, absl::Cord(absl::StrCat(err)));
  status.SetPayload(kExitPayload, absl::Cord(absl::StrCat(exit_status)));
  return status;
}
absl::Status UsageError(absl::string_view what, int err = EINVAL) {
  return Fail(kExitUsage, what, err);
}
absl::Status OpError(absl::string_view what, int err) { return Fail(kExitFailure, what, err); }

// Turns a core parser's error into a usage error prefixed with `context`
// (empty for the control-file parsers, whose messages name the file).
// Messages of ErrnoStatus() already end in ": <strerror>"; that part is
// dropped here because Report() prints it once.
absl::Status UsageFromParser(absl::string_view context, const absl::Status& status) {
  const int err = StatusToErrno(status);
  absl::string_view message = status.message();
  absl::ConsumeSuffix(&message, absl::StrCat(": ", std::strerror(err)));
  if (context.empty()) return UsageError(message, err);
  return UsageError(absl::StrCat(context, ": ", message), err);
}

int PayloadInt(const absl::Status& status, absl::string_view key, int fallback) {
  int value = 0;
  if (auto payload = status.GetPayload(key)) {
    if (absl::SimpleAtoi(std::string(*payload), &value)) return value;
  }
  return fallback;
}

// Prints the one-line report and returns the exit status.
int Report(const absl::Status& status) {
  const int err = PayloadInt(status, kErrnoPayload, StatusToErrno(status));
  std::string what(status.message());
  std::replace(what.begin(), what.end(), '\n', ' ');  // one line, always
  std::fprintf(stderr, "%s: %s: %s\n", kProgram, what.c_str(), std::strerror(err));
  return PayloadInt(status, kExitPayload, kExitFailure);
}

// ---- control files ------------------------------------------------------------

// The whole text of a control file (they are small; read until EOF).
absl::StatusOr<std::string> ReadFile(const std::string& path, absl::string_view what) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return OpError(what, errno);
  absl::Cleanup closer = [fd] { close(fd); };
  std::string text;
  char buffer[8192];
  for (;;) {
    const ssize_t n = read(fd, buffer, sizeof(buffer));
    if (n < 0) {
      if (errno == EINTR) continue;
      return OpError(what, errno);
    }
    if (n == 0) break;
    text.append(buffer, static_cast<size_t>(n));
  }
  return text;
}

// One write() of `text` at offset 0, as the control files require. The daemon
// answers with the write's errno.
absl::Status WriteFile(const std::string& path, absl::string_view text, absl::string_view what) {
  const int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return OpError(what, errno);
  absl::Cleanup closer = [fd] { close(fd); };
  ssize_t n;
  do {
    n = write(fd, text.data(), text.size());
  } while (n < 0 && errno == EINTR);
  if (n < 0) return OpError(what, errno);
  if (static_cast<size_t>(n) != text.size()) return OpError(what, EIO);  // never split a command
  return absl::OkStatus();
}

// A control file's single value without its newline.
absl::StatusOr<std::string> ReadValue(const std::string& path, absl::string_view what) {
  absl::StatusOr<std::string> text = ReadFile(path, what);
  if (!text.ok()) return text.status();
  return std::string(absl::StripAsciiWhitespace(*text));
}

absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ReadKeyValues(
    const std::string& path, absl::string_view what) {
  absl::StatusOr<std::string> text = ReadFile(path, what);
  if (!text.ok()) return text.status();
  auto rows = ParseKeyValues(*text);
  if (!rows.ok()) return OpError(absl::StrCat(what, ": ", rows.status().message()), EPROTO);
  return rows;
}

// ---- finding the mount ---------------------------------------------------------

// Undoes the octal escapes (\040 for space ...) of /proc/self/mountinfo.
std::string UnescapeMountinfo(absl::string_view field) {
  std::string out;
  for (size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size()) {
      const absl::string_view digits = field.substr(i + 1, 3);
      if (digits.size() == 3 &&
          std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '7'; })) {
        out.push_back(
            static_cast<char>((digits[0] - '0') * 64 + (digits[1] - '0') * 8 + (digits[2] - '0')));
        i += 3;
        continue;
      }
    }
    out.push_back(field[i]);
  }
  return out;
}

// Mount points of ramdiskfs mounts: fstype "fuse.ramdiskfs", or plain "fuse"
// with the source "ramdiskfs" (a daemon started without subtype).
std::vector<std::string> FindRamdiskfsMounts() {
  std::vector<std::string> mounts;
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::vector<absl::string_view> fields = absl::StrSplit(line, ' ', absl::SkipEmpty());
    auto dash = std::find(fields.begin(), fields.end(), "-");
    if (fields.size() < 5 || dash == fields.end() || fields.end() - dash < 3) continue;
    const absl::string_view fstype = dash[1];
    const absl::string_view source = dash[2];
    if (fstype == "fuse.ramdiskfs" || (fstype == "fuse" && source == "ramdiskfs")) {
      mounts.push_back(UnescapeMountinfo(fields[4]));
    }
  }
  return mounts;
}

bool IsDirectory(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// Something the user wrote that can only be a path, never a disk name or a
// value: disk names have no '/' and never start with '.'.
bool LooksLikePath(absl::string_view arg) {
  return absl::StrContains(arg, '/') || absl::StartsWith(arg, ".");
}

// The mount to use: MOUNT if given, else $RAMDISKFS_MOUNT, else the only
// ramdiskfs mount in /proc/self/mountinfo. It must hold a .control directory.
absl::StatusOr<std::string> ResolveMount(const std::optional<std::string>& given) {
  std::string mount;
  if (given) {
    mount = *given;
  } else if (const char* env = std::getenv("RAMDISKFS_MOUNT"); env != nullptr && *env != '\0') {
    mount = env;
  } else {
    std::vector<std::string> found = FindRamdiskfsMounts();
    if (found.empty()) {
      return UsageError("no ramdiskfs mount found; give MOUNT or set RAMDISKFS_MOUNT", ENOENT);
    }
    if (found.size() > 1) {
      return UsageError(
          absl::StrCat(found.size(), " ramdiskfs mounts (", absl::StrJoin(found, ", "),
                       "); give MOUNT or set RAMDISKFS_MOUNT"),
          EINVAL);
    }
    mount = found[0];
  }
  const std::string control = absl::StrCat(mount, "/.control");
  struct stat st;
  if (stat(control.c_str(), &st) != 0) {
    const int err = errno;
    if (err == ENOENT) {
      return OpError(absl::StrCat(mount, ": not a ramdiskfs mount (no .control)"), err);
    }
    return OpError(control, err);
  }
  if (!S_ISDIR(st.st_mode)) {
    return OpError(absl::StrCat(mount, ": not a ramdiskfs mount"), ENOTDIR);
  }
  return mount;
}

// The absolute form of `mount` for output. Paths are used as given for the
// operations themselves, so that a user who can reach the mount only through
// its current directory ("." inside an otherwise closed tree) is served.
std::string DisplayMount(const std::string& mount) {
  std::string out = mount;
  if (char* real = realpath(mount.c_str(), nullptr)) {
    out = real;
    std::free(real);
  }
  return out;
}

// ---- JSON ------------------------------------------------------------------------

// Appends `text` as a JSON string. Control characters, quotes and backslashes
// are escaped; bytes that are not valid UTF-8 become U+FFFD.
void AppendJsonString(std::string& out, absl::string_view text) {
  out.push_back('"');
  for (size_t i = 0; i < text.size();) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
      ++i;
    } else if (c < 0x20 || c == 0x7f) {
      switch (c) {
        case '\n':
          out += "\\n";
          break;
        case '\t':
          out += "\\t";
          break;
        case '\r':
          out += "\\r";
          break;
        default:
          out += absl::StrFormat("\\u%04x", c);
      }
      ++i;
    } else if (c < 0x80) {
      out.push_back(static_cast<char>(c));
      ++i;
    } else {
      // A UTF-8 sequence: lead byte, then 1..3 continuation bytes.
      size_t length = c >= 0xF0 && c <= 0xF4 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 && c < 0xE0 ? 2 : 0;
      bool valid = length != 0 && i + length <= text.size();
      for (size_t k = 1; valid && k < length; ++k) {
        valid = (static_cast<unsigned char>(text[i + k]) & 0xC0) == 0x80;
      }
      if (valid && length == 3) {  // no overlongs, no surrogates
        const unsigned char c1 = static_cast<unsigned char>(text[i + 1]);
        valid = !(c == 0xE0 && c1 < 0xA0) && !(c == 0xED && c1 >= 0xA0);
      }
      if (valid && length == 4) {  // no overlongs, nothing past U+10FFFF
        const unsigned char c1 = static_cast<unsigned char>(text[i + 1]);
        valid = !(c == 0xF0 && c1 < 0x90) && !(c == 0xF4 && c1 >= 0x90);
      }
      if (valid) {
        absl::StrAppend(&out, text.substr(i, length));
        i += length;
      } else {
        out += "\\ufffd";
        ++i;
      }
    }
  }
  out.push_back('"');
}

bool IsUnsignedNumber(absl::string_view value) {
  uint64_t ignored;
  return !value.empty() && std::all_of(value.begin(), value.end(), absl::ascii_isdigit) &&
         (value.size() == 1 || value[0] != '0') && absl::SimpleAtoi(value, &ignored);
}

// A stats value as JSON: a number if it is one, null if missing, else a string.
void AppendJsonValue(std::string& out, absl::string_view value) {
  if (value.empty()) {
    out += "null";
  } else if (IsUnsignedNumber(value)) {
    absl::StrAppend(&out, value);
  } else {
    AppendJsonString(out, value);
  }
}

void AppendJsonMember(std::string& out, bool& first, absl::string_view key, absl::string_view value,
                      bool raw_string = false) {
  if (!first) out += ", ";
  first = false;
  AppendJsonString(out, key);
  out += ": ";
  if (raw_string) {
    AppendJsonString(out, value);
  } else {
    AppendJsonValue(out, value);
  }
}

// ---- disks -------------------------------------------------------------------------

using KeyValues = std::vector<std::pair<std::string, std::string>>;

std::string Lookup(const KeyValues& rows, absl::string_view key) {
  for (const auto& [k, v] : rows) {
    if (k == key) return v;
  }
  return "";
}

// Orders "ram2" before "ram10": runs of digits compare as numbers.
bool NaturalLess(absl::string_view a, absl::string_view b) {
  size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    if (absl::ascii_isdigit(a[i]) && absl::ascii_isdigit(b[j])) {
      size_t ei = i, ej = j;
      while (ei < a.size() && absl::ascii_isdigit(a[ei])) ++ei;
      while (ej < b.size() && absl::ascii_isdigit(b[ej])) ++ej;
      absl::string_view da = a.substr(i, ei - i), db = b.substr(j, ej - j);
      while (da.size() > 1 && da[0] == '0') da.remove_prefix(1);
      while (db.size() > 1 && db[0] == '0') db.remove_prefix(1);
      if (da.size() != db.size()) return da.size() < db.size();
      if (da != db) return da < db;
      i = ei;
      j = ej;
    } else {
      if (a[i] != b[j]) return a[i] < b[j];
      ++i;
      ++j;
    }
  }
  if (a.size() - i != b.size() - j) return a.size() - i < b.size() - j;
  return a < b;
}

struct DiskInfo {
  std::string name;
  KeyValues stats;
};

// Every disk with its stats, in natural name order. A disk deleted while
// the list is being read is left out.
absl::StatusOr<std::vector<DiskInfo>> ListDisks(const std::string& mount) {
  const std::string control = absl::StrCat(mount, "/.control");
  DIR* dir = opendir(control.c_str());
  if (dir == nullptr) return OpError(absl::StrCat("cannot list ", control), errno);
  absl::Cleanup closer = [dir] { closedir(dir); };
  std::vector<std::string> names;
  errno = 0;
  while (struct dirent* entry = readdir(dir)) {
    const std::string name = entry->d_name;
    if (name == "." || name == "..") continue;
    if (entry->d_type == DT_DIR ||
        (entry->d_type == DT_UNKNOWN && IsDirectory(absl::StrCat(control, "/", name)))) {
      names.push_back(name);
    }
  }
  if (errno != 0) return OpError(absl::StrCat("cannot list ", control), errno);
  std::sort(names.begin(), names.end(), NaturalLess);

  std::vector<DiskInfo> disks;
  for (const std::string& name : names) {
    const std::string path = absl::StrCat(control, "/", name, "/stats");
    auto stats = ReadKeyValues(path, absl::StrCat("cannot read stats of disk '", name, "'"));
    if (!stats.ok()) {
      if (PayloadInt(stats.status(), kErrnoPayload, 0) == ENOENT) continue;  // deleted meanwhile
      return stats.status();
    }
    disks.push_back(DiskInfo{name, *std::move(stats)});
  }
  return disks;
}

// ---- the table -------------------------------------------------------------------------

struct Column {
  std::string header;
  std::string key;  // stats key, or "name"
  bool is_size;     // formatted with FormatSize unless --bytes
  bool right_align;
};

// The per-disk stats keys of docs/control.md.
bool IsDocumentedStatsKey(absl::string_view key) {
  static constexpr absl::string_view kKeys[] = {
      "size",     "allocated_bytes", "allocated_pages", "mode",       "readonly",
      "opens",    "reads",           "writes",          "read_bytes", "write_bytes",
      "discards", "discard_bytes",   "flushes",         "fallback",   "passthrough"};
  return std::find(std::begin(kKeys), std::end(kKeys), key) != std::end(kKeys);
}

// The default columns, and the aliases that --output accepts besides any
// stats key (case-insensitive, '-' and '_' alike).
std::optional<Column> ColumnFor(absl::string_view requested) {
  std::string name = absl::AsciiStrToLower(requested);
  absl::StrReplaceAll({{"-", "_"}}, &name);
  if (name == "name") return Column{"NAME", "name", false, false};
  if (name == "size") return Column{"SIZE", "size", true, true};
  if (name == "used") return Column{"USED", "allocated_bytes", true, true};
  if (name == "mode") return Column{"MODE", "mode", false, false};
  if (name == "ro" || name == "readonly") return Column{"RO", "readonly", false, true};
  if (name == "opens") return Column{"OPENS", "opens", false, true};
  if (name.empty()) return std::nullopt;
  for (char c : name) {
    if (!absl::ascii_isalnum(c) && c != '_') return std::nullopt;
  }
  std::string header = absl::AsciiStrToUpper(name);
  absl::StrReplaceAll({{"_", "-"}}, &header);
  const bool is_size = absl::EndsWith(name, "_bytes");
  return Column{header, name, is_size, true};
}

std::string CellText(const DiskInfo& disk, const Column& column, bool bytes) {
  if (column.key == "name") return disk.name;
  std::string value = Lookup(disk.stats, column.key);
  if (value.empty()) return "-";
  uint64_t number;
  if (column.is_size && !bytes && absl::SimpleAtoi(value, &number)) return FormatSize(number);
  return value;
}

std::string RenderTable(const std::vector<DiskInfo>& disks, const std::vector<Column>& columns,
                        bool headings, bool bytes) {
  std::vector<std::vector<std::string>> rows;
  if (headings) {
    std::vector<std::string> row;
    for (const Column& column : columns) row.push_back(column.header);
    rows.push_back(std::move(row));
  }
  for (const DiskInfo& disk : disks) {
    std::vector<std::string> row;
    for (const Column& column : columns) row.push_back(CellText(disk, column, bytes));
    rows.push_back(std::move(row));
  }
  std::vector<size_t> widths(columns.size(), 0);
  for (const auto& row : rows) {
    for (size_t c = 0; c < row.size(); ++c) widths[c] = std::max(widths[c], row[c].size());
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (size_t c = 0; c < row.size(); ++c) {
      if (c > 0) line.push_back(' ');
      const std::string pad(widths[c] - row[c].size(), ' ');
      line += columns[c].right_align ? pad + row[c] : row[c] + pad;
    }
    // Trailing spaces of a left-aligned last column help nobody.
    line.erase(line.find_last_not_of(' ') + 1);
    out += line;
    out.push_back('\n');
  }
  return out;
}

// ---- the command line -------------------------------------------------------------------

struct Args {
  std::string command = "list";
  std::vector<std::string> positionals;  // after the command word
  bool json = false;
  bool headings = true;
  bool bytes = false;
  std::optional<std::string> output;
  std::optional<std::string> mode;  // create --mode
  bool readonly = false;            // create --readonly
  bool help = false;
  bool version = false;
};

constexpr absl::string_view kCommands[] = {"list",    "create", "delete",   "resize", "flush",
                                           "discard", "mode",   "readonly", "stats",  "max-memory"};

std::string UsageText() {
  return absl::StrCat(
      "Usage:\n"
      " ramdiskctl [list] [MOUNT] [--json] [--noheadings] [--output COLS] [--bytes]\n"
      " ramdiskctl create NAME SIZE [--mode MODE] [--readonly] [MOUNT]\n"
      " ramdiskctl delete NAME [MOUNT]\n"
      " ramdiskctl resize NAME SIZE [MOUNT]\n"
      " ramdiskctl flush NAME [MOUNT]\n"
      " ramdiskctl discard NAME OFFSET LENGTH [MOUNT]\n"
      " ramdiskctl mode NAME [MODE] [MOUNT]\n"
      " ramdiskctl readonly NAME [0|1] [MOUNT]\n"
      " ramdiskctl stats [NAME] [MOUNT] [--json]\n"
      " ramdiskctl max-memory [SIZE] [MOUNT]\n"
      "\n"
      "Lists and controls the RAM disks of a ramdiskfs mount through its control\n"
      "files (MOUNT/.control/, see docs/control.md).\n"
      "\n"
      "MOUNT is the ramdiskfs mount point. Without it, $RAMDISKFS_MOUNT is used, else\n"
      "the only ramdiskfs mount in /proc/self/mountinfo. A MOUNT that could be taken\n"
      "for a NAME or value is recognised by a '/' or a leading '.' (write ./mnt).\n"
      "SIZE, OFFSET, LENGTH: bytes, or with a K, M, G, T, P suffix (powers of 1024).\n"
      "MODE: dax, direct, cached or null.\n"
      "\n"
      "Options:\n"
      " -J, --json             print JSON (list, stats)\n"
      " -n, --noheadings       no header line in the table\n"
      " -o, --output COLS      table columns, comma-separated: NAME,SIZE,USED,MODE,RO,OPENS\n"
      "                        (the default) or any stats key (READS, WRITE-BYTES, ...)\n"
      " -b, --bytes            sizes in bytes instead of human form\n"
      "     --mode MODE        data mode of a new disk (create)\n"
      "     --readonly         make the new disk read-only (create)\n"
      " -h, --help             print this help\n"
      " -V, --version          print the version\n"
      "\n"
      "Exit status: 0 success, 1 the operation failed, 2 bad usage.\n");
}

absl::StatusOr<Args> ParseArgs(int argc, char** argv) {
  Args args;
  std::vector<std::string> words;
  bool options_done = false;
  for (int i = 1; i < argc; ++i) {
    const absl::string_view arg = argv[i];
    // "-1" is a (bad) number for the parsers to reject, not an option.
    if (options_done || arg.empty() || arg[0] != '-' || arg == "-" || absl::ascii_isdigit(arg[1])) {
      words.emplace_back(arg);
      continue;
    }
    // "--opt=value" and "--opt value" both work for options with a value.
    absl::string_view name = arg;
    std::optional<std::string> inline_value;
    if (absl::StartsWith(arg, "--")) {
      if (size_t eq = arg.find('='); eq != absl::string_view::npos) {
        name = arg.substr(0, eq);
        inline_value = std::string(arg.substr(eq + 1));
      }
    }
    auto value = [&]() -> absl::StatusOr<std::string> {
      if (inline_value) return *inline_value;
      if (i + 1 >= argc) return UsageError(absl::StrCat("option ", name, " needs a value"));
      return std::string(argv[++i]);
    };
    auto no_value = [&]() -> absl::Status {
      if (inline_value) return UsageError(absl::StrCat("option ", name, " takes no value"));
      return absl::OkStatus();
    };
    if (name == "--") {
      options_done = true;
    } else if (name == "-h" || name == "--help") {
      args.help = true;
    } else if (name == "-V" || name == "--version") {
      args.version = true;
    } else if (name == "-J" || name == "--json") {
      if (auto s = no_value(); !s.ok()) return s;
      args.json = true;
    } else if (name == "-n" || name == "--noheadings") {
      if (auto s = no_value(); !s.ok()) return s;
      args.headings = false;
    } else if (name == "-b" || name == "--bytes") {
      if (auto s = no_value(); !s.ok()) return s;
      args.bytes = true;
    } else if (name == "--readonly") {
      if (auto s = no_value(); !s.ok()) return s;
      args.readonly = true;
    } else if (name == "-o" || name == "--output") {
      auto v = value();
      if (!v.ok()) return v.status();
      args.output = *v;
    } else if (name == "--mode") {
      auto v = value();
      if (!v.ok()) return v.status();
      args.mode = *v;
    } else {
      return UsageError(absl::StrCat("unknown option '", arg, "' (see --help)"));
    }
  }
  if (!words.empty()) {
    if (std::find(std::begin(kCommands), std::end(kCommands), words[0]) != std::end(kCommands)) {
      args.command = words[0];
      words.erase(words.begin());
    } else if (words.size() > 1 || (!LooksLikePath(words[0]) && !IsDirectory(words[0]))) {
      // `ramdiskctl MOUNT` lists; anything else is a misspelt command.
      return UsageError(absl::StrCat("unknown command '", words[0], "' (see --help)"));
    }
  }
  args.positionals = std::move(words);
  if ((args.mode || args.readonly) && args.command != "create") {
    return UsageError(absl::StrCat(args.mode ? "--mode" : "--readonly",
                                   " only applies to 'create' (use 'ramdiskctl ",
                                   args.mode ? "mode" : "readonly", " NAME ...')"));
  }
  if (args.json && args.command != "list" && args.command != "stats") {
    return UsageError(absl::StrCat("--json does not apply to '", args.command, "'"));
  }
  return args;
}

// Splits a command's positionals into `required` values, up to `optional`
// more, and an optional trailing MOUNT. When the count alone cannot tell
// (an optional value or a MOUNT), `is_optional_value` decides for the last.
struct Split {
  std::vector<std::string> values;
  std::optional<std::string> mount;
};
absl::StatusOr<Split> SplitPositionals(const Args& args, size_t required, size_t optional,
                                       bool (*is_optional_value)(const std::string&)) {
  const std::vector<std::string>& p = args.positionals;
  const size_t most = required + optional;
  if (p.size() > most + 1) {
    return UsageError(absl::StrCat("too many arguments for '", args.command, "' (see --help)"));
  }
  if (p.size() < required) {
    return UsageError(absl::StrCat("missing arguments for '", args.command, "' (see --help)"));
  }
  size_t values = p.size();
  if (p.size() == most + 1) {
    values = p.size() - 1;
  } else if (p.size() > required) {
    const std::string& last = p.back();
    if (LooksLikePath(last) || (!is_optional_value(last) && IsDirectory(last))) values -= 1;
  }
  Split split;
  split.values.assign(p.begin(), p.begin() + values);
  if (values < p.size()) split.mount = p.back();
  return split;
}

absl::Status CheckName(absl::string_view command, absl::string_view name) {
  absl::Status status = ValidateDiskName(Std(name));
  if (!status.ok()) return UsageFromParser(absl::StrCat(command, ": disk name"), status);
  return absl::OkStatus();
}

std::string DiskControl(const std::string& mount, absl::string_view name, absl::string_view file) {
  return absl::StrCat(mount, "/.control/", name, "/", file);
}

bool AnyValue(const std::string&) { return true; }
bool IsModeValue(const std::string& text) { return ParseDataMode(text).ok(); }
bool IsBoolValue(const std::string& text) { return text == "0" || text == "1"; }
bool IsSizeValue(const std::string& text) { return ParseSize(text).ok(); }

// ---- the commands --------------------------------------------------------------------------

absl::Status CmdList(const Args& args) {
  auto split = SplitPositionals(args, 0, 0, AnyValue);
  if (!split.ok()) return split.status();
  std::vector<Column> columns;
  const std::string spec = args.output.value_or("NAME,SIZE,USED,MODE,RO,OPENS");
  for (absl::string_view requested : absl::StrSplit(spec, ',')) {
    std::optional<Column> column = ColumnFor(absl::StripAsciiWhitespace(requested));
    if (!column) return UsageError(absl::StrCat("unknown column '", requested, "'"));
    columns.push_back(*column);
  }
  auto mount = ResolveMount(split->mount);
  if (!mount.ok()) return mount.status();
  auto disks = ListDisks(*mount);
  if (!disks.ok()) return disks.status();
  // A column must name a stats key: one the contract lists, or one that this
  // daemon reports (newer daemons may add keys).
  for (const Column& column : columns) {
    if (column.key == "name" || IsDocumentedStatsKey(column.key)) continue;
    const bool reported = std::any_of(disks->begin(), disks->end(), [&](const DiskInfo& disk) {
      return std::any_of(disk.stats.begin(), disk.stats.end(),
                         [&](const auto& row) { return row.first == column.key; });
    });
    if (!reported) return UsageError(absl::StrCat("unknown column '", column.header, "'"));
  }

  if (!args.json) {
    if (disks->empty())
      return absl::OkStatus();  // like losetup --list and zramctl: no rows, no header
    std::fputs(RenderTable(*disks, columns, args.headings, args.bytes).c_str(), stdout);
    return absl::OkStatus();
  }
  auto global = ReadKeyValues(absl::StrCat(*mount, "/.control/stats"), "cannot read global stats");
  if (!global.ok()) return global.status();
  std::string out = "{";
  bool first = true;
  AppendJsonMember(out, first, "mount", DisplayMount(*mount), /*raw_string=*/true);
  AppendJsonMember(out, first, "max_memory", Lookup(*global, "max_memory"));
  AppendJsonMember(out, first, "memory_used", Lookup(*global, "memory_used"));
  out += ", \"disks\": [";
  for (size_t d = 0; d < disks->size(); ++d) {
    const DiskInfo& disk = (*disks)[d];
    out += d == 0 ? "\n  {" : ",\n  {";
    bool first_member = true;
    AppendJsonMember(out, first_member, "name", disk.name, /*raw_string=*/true);
    AppendJsonMember(out, first_member, "size", Lookup(disk.stats, "size"));
    AppendJsonMember(out, first_member, "used", Lookup(disk.stats, "allocated_bytes"));
    AppendJsonMember(out, first_member, "mode", Lookup(disk.stats, "mode"), true);
    AppendJsonMember(out, first_member, "readonly", Lookup(disk.stats, "readonly"));
    AppendJsonMember(out, first_member, "opens", Lookup(disk.stats, "opens"));
    for (const auto& [key, value] : disk.stats) {
      if (key == "name" || key == "size" || key == "used" || key == "mode" || key == "readonly" ||
          key == "opens") {
        continue;
      }
      AppendJsonMember(out, first_member, key, value);
    }
    out += "}";
  }
  out += disks->empty() ? "]}\n" : "\n]}\n";
  std::fputs(out.c_str(), stdout);
  return absl::OkStatus();
}

absl::Status CmdCreate(const Args& args) {
  auto split = SplitPositionals(args, 2, 0, AnyValue);
  if (!split.ok()) return split.status();
  const std::string& name = split->values[0];
  if (auto s = CheckName("create", name); !s.ok()) return s;
  auto size = ParseDiskSize(split->values[1]);
  if (!size.ok()) return UsageFromParser("create", size.status());
  std::string command = absl::StrCat(name, " ", *size);
  if (args.mode) {
    auto mode = ParseDataMode(*args.mode);
    if (!mode.ok()) return UsageFromParser("create: --mode", mode.status());
    absl::StrAppend(&command, " mode=", Absl(DataModeName(*mode)));
  }
  if (args.readonly) absl::StrAppend(&command, " readonly=1");
  command.push_back('\n');
  auto mount = ResolveMount(split->mount);
  if (!mount.ok()) return mount.status();
  return WriteFile(absl::StrCat(*mount, "/.control/new"), command,
                   absl::StrCat("cannot create disk '", name, "'"));
}

absl::Status CmdDelete(const Args& args) {
  auto split = SplitPositionals(args, 1, 0, AnyValue);
  if (!split.ok()) return split.status();
  const std::string& name = split->values[0];
  if (auto s = CheckName("delete", name); !s.ok()) return s;
  auto mount = ResolveMount(split->mount);
  if (!mount.ok()) return mount.status();
  return WriteFile(absl::StrCat(*mount, "/.control/delete"), absl::StrCat(name, "\n"),
                   absl::StrCat("cannot delete disk '", name, "'"));
}

absl::Status CmdResize(const Args& args) {
  auto split = SplitPositionals(args, 2, 0, AnyValue);
  if (!split.ok()) return split.status();
  const std::string& name = split->values[0];
  if (auto s = CheckName("resize", name); !s.ok()) return s;
  auto size = ParseDiskSize(split->values[1]);
  if (!size.ok()) return UsageFromParser("resize", size.status());
  auto mount = ResolveMount(split->mount);
  if (!mount.ok()) return mount.status();
  return WriteFile(DiskControl(*mount, name, "size"), absl::StrCat(*size, "\n"),
                   absl::StrCat("cannot resize disk '", name, "' to ", *size, " bytes"));
}

absl::Status CmdFlush(const Args& args) {
  auto split = SplitPositionals(args, 1, 0, AnyValue);
  if (!split.ok()) return split.status();
  const std::string& name = split->values[0];
  if (auto s = CheckName("flush", name); !s.ok()) return s;
  auto mount = ResolveMount(split->mount);
  if (!mount.ok()) return mount.status();
  return WriteFile(DiskControl(*mount, name, "flush"), "1\n",
                   absl::StrCat("cannot flush disk '", name, "'"));
}

absl::Status CmdDiscard(const Args& args) {
  auto split = SplitPositionals(args, 3, 0, AnyValue);
  if (!split.ok()) return split.status();
  const std::string& name = split->values[0];
  if (auto s = CheckName("discard", name); !s.ok()) return s;
  auto range = ParseDiscardCommand(absl::StrCat(split->values[1], " ", split->values[2]));
  if (!range.ok()) return UsageFromParser("", range.status());
  auto mount = ResolveMount(split->mount);
  if (!mount.ok()) return mount.status();
  return WriteFile(DiskControl(*mount, name, "discard"),
                   absl::StrCat(range->offset, " ", range->length, "\n"),
                   absl::StrCat("cannot discard ", range->length, " bytes at ", range->offset,
                                " of disk '", name, "'"));
}

// `mode NAME [MODE]` and `readonly NAME [0|1]`: print the value, or set it.
absl::Status CmdValue(const Args& args, absl::string_view file,
                      bool (*is_value)(const std::string&)) {
  auto split = SplitPositionals(args, 1, 1, is_value);
  if (!split.ok()) return split.status();
  const std::string& name = split->values[0];
  if (auto s = CheckName(args.command, name); !s.ok()) return s;
  std::string text;
  if (split->values.size() == 2) {
    const std::string& value = split->values[1];
    if (file == "mode") {
      auto mode = ParseModeValue(value);
      if (!mode.ok()) return UsageFromParser("", mode.status());
      text = absl::StrCat(Absl(DataModeName(*mode)), "\n");
    } else {
      auto readonly = ParseBoolValue(value);
      if (!readonly.ok()) return UsageFromParser("", readonly.status());
      text = *readonly ? "1\n" : "0\n";
    }
  }
  auto mount = ResolveMount(split->mount);
  if (!mount.ok()) return mount.status();
  const std::string path = DiskControl(*mount, name, file);
  if (text.empty()) {
    auto value = ReadValue(path, absl::StrCat("cannot read ", file, " of disk '", name, "'"));
    if (!value.ok()) return value.status();
    std::printf("%s\n", value->c_str());
    return absl::OkStatus();
  }
  return WriteFile(path, text,
                   absl::StrCat("cannot set ", file, " of disk '", name, "' to ",
                                absl::StripTrailingAsciiWhitespace(text)));
}

absl::Status CmdStats(const Args& args) {
  auto split = SplitPositionals(args, 0, 1, AnyValue);
  if (!split.ok()) return split.status();
  std::optional<std::string> name;
  if (!split->values.empty()) {
    name = split->values[0];
    if (auto s = CheckName("stats", *name); !s.ok()) return s;
  }
  auto mount = ResolveMount(split->mount);
  if (!mount.ok()) return mount.status();
  const std::string path =
      name ? DiskControl(*mount, *name, "stats") : absl::StrCat(*mount, "/.control/stats");
  const std::string what =
      name ? absl::StrCat("cannot read stats of disk '", *name, "'") : "cannot read global stats";
  auto rows = ReadKeyValues(path, what);
  if (!rows.ok()) return rows.status();
  std::string out;
  if (args.json) {
    out = "{";
    bool first = true;
    if (name) {
      AppendJsonMember(out, first, "name", *name, /*raw_string=*/true);
    } else {
      AppendJsonMember(out, first, "mount", DisplayMount(*mount), /*raw_string=*/true);
    }
    for (const auto& [key, value] : *rows) {
      if (key == "name" || key == "mount") continue;
      AppendJsonMember(out, first, key, value);
    }
    out += "}\n";
  } else {
    out = RenderKeyValues(*rows);
  }
  std::fputs(out.c_str(), stdout);
  return absl::OkStatus();
}

absl::Status CmdMaxMemory(const Args& args) {
  auto split = SplitPositionals(args, 0, 1, IsSizeValue);
  if (!split.ok()) return split.status();
  std::optional<uint64_t> bytes;
  if (!split->values.empty()) {
    auto parsed = ParseMemorySizeValue(split->values[0]);
    if (!parsed.ok()) return UsageFromParser("", parsed.status());
    bytes = *parsed;
  }
  auto mount = ResolveMount(split->mount);
  if (!mount.ok()) return mount.status();
  const std::string path = absl::StrCat(*mount, "/.control/max_memory");
  if (!bytes) {
    auto value = ReadValue(path, "cannot read max_memory");
    if (!value.ok()) return value.status();
    std::printf("%s\n", value->c_str());
    return absl::OkStatus();
  }
  return WriteFile(path, absl::StrCat(*bytes, "\n"),
                   absl::StrCat("cannot set max_memory to ", *bytes, " bytes"));
}

int Main(int argc, char** argv) {
  auto args = ParseArgs(argc, argv);
  if (!args.ok()) return Report(args.status());
  if (args->help) {
    std::fputs(UsageText().c_str(), stdout);
    return 0;
  }
  if (args->version) {
    std::printf("ramdiskctl (ramdiskfs) %s\n", RAMDISKFS_VERSION);
    return 0;
  }
  absl::Status status;
  const std::string& command = args->command;
  if (command == "list") {
    status = CmdList(*args);
  } else if (command == "create") {
    status = CmdCreate(*args);
  } else if (command == "delete") {
    status = CmdDelete(*args);
  } else if (command == "resize") {
    status = CmdResize(*args);
  } else if (command == "flush") {
    status = CmdFlush(*args);
  } else if (command == "discard") {
    status = CmdDiscard(*args);
  } else if (command == "mode") {
    status = CmdValue(*args, "mode", IsModeValue);
  } else if (command == "readonly") {
    status = CmdValue(*args, "readonly", IsBoolValue);
  } else if (command == "stats") {
    status = CmdStats(*args);
  } else if (command == "max-memory") {
    status = CmdMaxMemory(*args);
  }
  if (!status.ok()) return Report(status);
  if (std::fflush(stdout) != 0) return Report(OpError("write to stdout", errno));
  return 0;
}

}  // namespace
}  // namespace ramdiskfs

int main(int argc, char** argv) { return ramdiskfs::Main(argc, argv); }
