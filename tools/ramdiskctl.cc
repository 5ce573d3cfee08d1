// ramdiskctl: the util-linux style companion of ramdiskfs (zramctl, losetup --list).
//
// It only reads and writes the text files of MOUNT/.control/ (docs/control.md);
// it never sends ioctls and never talks to the daemon any other way, so
// everything it does can also be done with echo and cat. Each change is one
// write() at offset 0 of one file. Arguments are checked locally first, with
// the core's parsers where the core has them (a bad size or name is an error
// and nothing is written), but the daemon has the final word: its errno comes
// back from the write() and is printed.
//
// Three tables define the tool, and everything else is derived from them:
//   kOptions   getopt_long's arguments, the Options part of --help, completion;
//   kCommands  the dispatcher, the usage text, argument counts, completion;
//   kColumns   the named columns of `list`. Every other column is a key of the
//              disks' stats files as this daemon reports them, never a copy.
// man/ramdiskctl.8 documents the same; test_ramdiskctl.py compares it with --help.
//
// Exit status, as zramctl's: 0 on success, 1 on any error, usage errors
// included. Every error is one line on stderr: "ramdiskctl: <what>: <strerror>".

#include <dirent.h>
#include <fcntl.h>
#include <getopt.h>
#include <libsmartcols.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
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
#include "ramdiskfs/survive_state.h"

namespace ramdiskfs {
namespace {

constexpr char kProgram[] = "ramdiskctl";
constexpr int kExitFailure = 1;  // any error, as zramctl

// Debian's abseil 20220623 has its own absl::string_view (not std's); the core
// API takes std::string_view. These convert at the boundary.
std::string_view Std(absl::string_view text) { return {text.data(), text.size()}; }
absl::string_view Absl(std::string_view text) { return {text.data(), text.size()}; }

// ---- errors -------------------------------------------------------------------
//
// A failed step is an absl::Status whose message is the "<what>" part of the
// one-line report; a payload carries the errno printed after it. Report() in
// Main() is the only place that prints an error.

constexpr absl::string_view kErrnoPayload = "ramdiskctl/errno";

absl::Status Error(absl::string_view what, int err = EINVAL) {
  absl::Status status(absl::ErrnoToStatusCode(err), what);
  status.SetPayload(kErrnoPayload, absl::Cord(absl::StrCat(err)));
  return status;
}

int ErrnoOf(const absl::Status& status) {
  int err = 0;
  if (auto payload = status.GetPayload(kErrnoPayload)) {
    if (absl::SimpleAtoi(std::string(*payload), &err)) return err;
  }
  return StatusToErrno(status);
}

// A core parser's error, prefixed with `context` (empty for the control-file
// parsers, whose messages name the file). Messages of ErrnoStatus() already
// end in ": <strerror>"; that part is dropped because Report() prints it once.
absl::Status FromParser(absl::string_view context, const absl::Status& status) {
  const int err = StatusToErrno(status);
  absl::string_view message = status.message();
  absl::ConsumeSuffix(&message, absl::StrCat(": ", std::strerror(err)));
  if (context.empty()) return Error(message, err);
  return Error(absl::StrCat(context, ": ", message), err);
}

// Prints the one-line report and returns the exit status.
int Report(const absl::Status& status) {
  std::string what(status.message());
  std::replace(what.begin(), what.end(), '\n', ' ');  // one line, always
  std::fprintf(stderr, "%s: %s: %s\n", kProgram, what.c_str(), std::strerror(ErrnoOf(status)));
  return kExitFailure;
}

// ---- control files ------------------------------------------------------------

std::string ControlPath(const std::string& mount, absl::string_view file) {
  return absl::StrCat(mount, "/.control/", file);
}
std::string DiskControlPath(const std::string& mount, absl::string_view disk,
                            absl::string_view file) {
  return absl::StrCat(mount, "/.control/", disk, "/", file);
}

// The whole text of a control file (they are small; read until EOF).
absl::StatusOr<std::string> ReadFile(const std::string& path, absl::string_view what) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Error(what, errno);
  absl::Cleanup closer = [fd] { close(fd); };
  std::string text;
  char buffer[8192];
  for (;;) {
    const ssize_t n = read(fd, buffer, sizeof(buffer));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error(what, errno);
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
  if (fd < 0) return Error(what, errno);
  absl::Cleanup closer = [fd] { close(fd); };
  ssize_t n;
  do {
    n = write(fd, text.data(), text.size());
  } while (n < 0 && errno == EINTR);
  if (n < 0) return Error(what, errno);
  if (static_cast<size_t>(n) != text.size()) return Error(what, EIO);  // never split a command
  return absl::OkStatus();
}

using KeyValues = std::vector<std::pair<std::string, std::string>>;

absl::StatusOr<KeyValues> ReadKeyValues(const std::string& path, absl::string_view what) {
  absl::StatusOr<std::string> text = ReadFile(path, what);
  if (!text.ok()) return text.status();
  auto rows = ParseKeyValues(*text);
  if (!rows.ok()) return Error(absl::StrCat(what, ": ", rows.status().message()), EPROTO);
  return rows;
}

std::string Lookup(const KeyValues& rows, absl::string_view key) {
  for (const auto& [k, v] : rows) {
    if (k == key) return v;
  }
  return "";
}

// ---- finding the mount ----------------------------------------------------------

// Undoes the octal escapes (\040 for space ...) of /proc/self/mountinfo.
std::string UnescapeMountinfo(absl::string_view field) {
  std::string out;
  for (size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size()) {
      const absl::string_view digits = field.substr(i + 1, 3);
      if (std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '7'; })) {
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
std::vector<std::string> RamdiskfsMountPoints() {
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

// True if an operand is MOUNT rather than a disk name or a value. That must
// be unambiguous, so it needs both: it cannot be a disk name (it holds a '/'
// or starts with '.': "/mnt/rd", "./rd", ".") and it is the mount point of a
// ramdiskfs mount. Everything else is an operand of the command.
bool IsMountOperand(const std::string& arg) {
  if (ValidateDiskName(Std(arg)).ok()) return false;
  char* real = realpath(arg.c_str(), nullptr);
  if (real == nullptr) return false;
  const std::string resolved = real;
  std::free(real);
  const std::vector<std::string> mounts = RamdiskfsMountPoints();
  return std::find(mounts.begin(), mounts.end(), resolved) != mounts.end();
}

// The mount to use: `given` (--mount or a MOUNT operand) if set, else
// $RAMDISKFS_MOUNT, else the only ramdiskfs mount in /proc/self/mountinfo.
// --mount and $RAMDISKFS_MOUNT take any directory that holds .control/, which
// is how the tests drive ramdiskctl against a fake control tree.
absl::StatusOr<std::string> ResolveMount(const std::optional<std::string>& given) {
  std::string mount;
  if (given) {
    mount = *given;
  } else if (const char* env = std::getenv("RAMDISKFS_MOUNT"); env != nullptr && *env != '\0') {
    mount = env;
  } else {
    std::vector<std::string> found = RamdiskfsMountPoints();
    if (found.empty()) {
      return Error("no ramdiskfs mount found; give --mount MOUNT or set RAMDISKFS_MOUNT", ENOENT);
    }
    if (found.size() > 1) {
      return Error(absl::StrCat(found.size(), " ramdiskfs mounts (", absl::StrJoin(found, ", "),
                                "); give --mount MOUNT or set RAMDISKFS_MOUNT"));
    }
    mount = found[0];
  }
  const std::string control = ControlPath(mount, "");
  struct stat st;
  if (stat(control.c_str(), &st) != 0) {
    const int err = errno;
    if (err == ENOENT) {
      return Error(absl::StrCat(mount, ": not a ramdiskfs mount (no .control)"), err);
    }
    return Error(control, err);
  }
  if (!S_ISDIR(st.st_mode)) return Error(absl::StrCat(mount, ": not a ramdiskfs mount"), ENOTDIR);
  return mount;
}

// ---- disks ------------------------------------------------------------------------

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

// The disks of a mount (the directories of .control/), in natural order.
absl::StatusOr<std::vector<std::string>> DiskNames(const std::string& mount) {
  const std::string control = ControlPath(mount, "");
  DIR* dir = opendir(control.c_str());
  if (dir == nullptr) return Error(absl::StrCat("cannot list ", control), errno);
  absl::Cleanup closer = [dir] { closedir(dir); };
  std::vector<std::string> names;
  errno = 0;
  while (struct dirent* entry = readdir(dir)) {
    const std::string name = entry->d_name;
    if (name == "." || name == "..") continue;
    struct stat st;
    if (entry->d_type == DT_DIR ||
        (entry->d_type == DT_UNKNOWN && stat(absl::StrCat(control, name).c_str(), &st) == 0 &&
         S_ISDIR(st.st_mode))) {
      names.push_back(name);
    }
  }
  if (errno != 0) return Error(absl::StrCat("cannot list ", control), errno);
  std::sort(names.begin(), names.end(), NaturalLess);
  return names;
}

struct DiskInfo {
  std::string name;
  KeyValues stats;
};

absl::StatusOr<DiskInfo> ReadDisk(const std::string& mount, const std::string& name) {
  auto stats = ReadKeyValues(DiskControlPath(mount, name, "stats"),
                             absl::StrCat("cannot read stats of disk '", name, "'"));
  if (!stats.ok()) return stats.status();
  return DiskInfo{name, *std::move(stats)};
}

// ---- tables (libsmartcols) -----------------------------------------------------------

enum class Style { kTable, kRaw, kPairs, kJson };

struct OutputFormat {
  Style style = Style::kTable;
  bool headings = true;
  bool bytes = false;  // sizes in bytes; JSON always has bytes, so that sizes are numbers
};

// What a column holds. A column's type is a claim that PrintTable checks
// against its cells: one that does not hold is printed as a string.
enum class CellType { kString, kSize, kNumber, kBoolean };

struct TableColumn {
  std::string header;
  CellType type;
};

bool IsUnsignedNumber(absl::string_view value) {
  uint64_t ignored;
  return !value.empty() && std::all_of(value.begin(), value.end(), absl::ascii_isdigit) &&
         absl::SimpleAtoi(value, &ignored);
}

// The type column `c` really has: an empty cell (a key a disk does not
// report) fits every type and prints as null in JSON.
CellType CheckedType(const std::vector<std::vector<std::string>>& rows, size_t c, CellType type) {
  for (const auto& row : rows) {
    const std::string& cell = row[c];
    if (cell.empty()) continue;
    if ((type == CellType::kSize || type == CellType::kNumber) && !IsUnsignedNumber(cell)) {
      return CellType::kString;
    }
    if (type == CellType::kBoolean && cell != "0" && cell != "1") return CellType::kString;
  }
  return type;
}

// Prints `rows` (cells as the control files give them: sizes in bytes) in
// `format`. In JSON, util-linux's shape: one object holding one array named
// `name`, the rows as objects keyed by the lower-case headers.
absl::Status PrintTable(const char* name, const std::vector<TableColumn>& columns,
                        const std::vector<std::vector<std::string>>& rows,
                        const OutputFormat& format) {
  libscols_table* table = scols_new_table();
  if (table == nullptr) return Error("cannot make the table", ENOMEM);
  absl::Cleanup unref = [table] { scols_unref_table(table); };
  scols_table_set_name(table, name);
  scols_table_enable_json(table, format.style == Style::kJson);
  scols_table_enable_raw(table, format.style == Style::kRaw);
  scols_table_enable_export(table, format.style == Style::kPairs);
  scols_table_enable_noheadings(table, !format.headings);

  std::vector<CellType> types;
  for (size_t c = 0; c < columns.size(); ++c) {
    const CellType type = CheckedType(rows, c, columns[c].type);
    types.push_back(type);
    libscols_column* column = scols_table_new_column(
        table, columns[c].header.c_str(), 0, type == CellType::kString ? 0 : SCOLS_FL_RIGHT);
    if (column == nullptr) return Error("cannot make the table", ENOMEM);
    scols_column_set_json_type(column, type == CellType::kString    ? SCOLS_JSON_STRING
                                       : type == CellType::kBoolean ? SCOLS_JSON_BOOLEAN_OPTIONAL
                                                                    : SCOLS_JSON_NUMBER);
  }
  const bool human = !format.bytes && format.style != Style::kJson;
  for (const auto& row : rows) {
    libscols_line* line = scols_table_new_line(table, nullptr);
    if (line == nullptr) return Error("cannot make the table", ENOMEM);
    for (size_t c = 0; c < columns.size(); ++c) {
      std::string cell = row[c];
      uint64_t bytes;
      if (types[c] == CellType::kSize && human && absl::SimpleAtoi(cell, &bytes)) {
        cell = FormatSize(bytes);
      }
      if (scols_line_set_data(line, c, cell.c_str()) != 0) {
        return Error("cannot make the table", ENOMEM);
      }
    }
  }
  if (int rc = scols_print_table(table); rc != 0) return Error("cannot print the table", -rc);
  return absl::OkStatus();
}

// ---- the columns of `list` --------------------------------------------------------------

struct ColumnInfo {
  absl::string_view name;  // header and --output name
  absl::string_view key;   // the stats key it shows
  CellType type;
  bool is_default;
  absl::string_view help;
};

// The named columns. A key of the stats files that none of them shows is a
// column too, named as ColumnNameOf(key) says.
constexpr ColumnInfo kColumns[] = {
    {"NAME", "name", CellType::kString, true, "name of the disk"},
    {"SIZE", "size", CellType::kSize, true, "size of the disk"},
    {"USED", "allocated_bytes", CellType::kSize, true, "RAM the disk holds"},
    {"MODE", "mode", CellType::kString, true, "data mode: dax, direct, cached or null"},
    {"RO", "readonly", CellType::kBoolean, true, "read-only disk"},
    {"OPENS", "opens", CellType::kNumber, true,
     "open files of the disk (mappings and loop devices hold one)"},
    {"PASSTHROUGH", "passthrough", CellType::kBoolean, false,
     "the disk is open through FUSE passthrough"},
    {"GROWING", "growing", CellType::kBoolean, false,
     "a disk made through the tree that still grows with its writes"},
};

// "write_bytes" -> "WRITE-BYTES", util-linux's spelling of column names.
std::string ColumnNameOf(absl::string_view key) {
  std::string name = absl::AsciiStrToUpper(key);
  std::replace(name.begin(), name.end(), '_', '-');
  return name;
}

const ColumnInfo* NamedColumnFor(absl::string_view key) {
  for (const ColumnInfo& column : kColumns) {
    if (column.key == key) return &column;
  }
  return nullptr;
}

struct Column {
  std::string name;
  std::string key;
  CellType type;
};

Column ColumnOf(const ColumnInfo& info) {
  return Column{std::string(info.name), std::string(info.key), info.type};
}

// A column that is not named: a size if its key says bytes, else a number
// (PrintTable makes it a string if the daemon's values are words).
Column KeyColumn(absl::string_view key) {
  if (const ColumnInfo* named = NamedColumnFor(key)) {
    return Column{ColumnNameOf(key), std::string(key), named->type};
  }
  const CellType type = absl::EndsWith(key, "_bytes") ? CellType::kSize : CellType::kNumber;
  return Column{ColumnNameOf(key), std::string(key), type};
}

// Every stats key the disks report, in the order the daemon writes them.
std::vector<std::string> ReportedKeys(const std::vector<DiskInfo>& disks) {
  std::vector<std::string> keys;
  for (const DiskInfo& disk : disks) {
    for (const auto& [key, value] : disk.stats) {
      if (std::find(keys.begin(), keys.end(), key) == keys.end()) keys.push_back(key);
    }
  }
  return keys;
}

// The columns --output-all shows: the named ones, then every other key.
std::vector<Column> AllColumns(const std::vector<std::string>& keys) {
  std::vector<Column> columns;
  for (const ColumnInfo& info : kColumns) columns.push_back(ColumnOf(info));
  for (const std::string& key : keys) {
    if (NamedColumnFor(key) == nullptr) columns.push_back(KeyColumn(key));
  }
  return columns;
}

// A column named on the command line: a named column or a reported key, in
// any case, '-' and '_' alike. With no disk to list (`keys` empty) a key
// cannot be checked; it is taken on trust, since no row will show it.
std::optional<Column> FindColumn(absl::string_view requested,
                                 const std::vector<std::string>& keys) {
  const std::string name = ColumnNameOf(absl::StripAsciiWhitespace(requested));
  for (const ColumnInfo& info : kColumns) {
    if (info.name == name) return ColumnOf(info);
  }
  for (const std::string& key : keys) {
    if (ColumnNameOf(key) == name) return KeyColumn(key);
  }
  const bool well_formed = !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
    return absl::ascii_isalnum(c) || c == '-';
  });
  if (keys.empty() && well_formed) {
    std::string key = absl::AsciiStrToLower(name);
    std::replace(key.begin(), key.end(), '-', '_');
    return KeyColumn(key);
  }
  return std::nullopt;
}

// --output LIST (a leading '+' adds to the default columns, as in util-linux),
// --output-all, or the default columns.
absl::StatusOr<std::vector<Column>> SelectColumns(const std::optional<std::string>& output,
                                                  bool output_all,
                                                  const std::vector<std::string>& keys) {
  if (output_all) return AllColumns(keys);
  std::vector<Column> columns;
  const std::string text = output.value_or("");
  absl::string_view list = text;
  if (!output || absl::ConsumePrefix(&list, "+")) {
    for (const ColumnInfo& info : kColumns) {
      if (info.is_default) columns.push_back(ColumnOf(info));
    }
    if (!output) return columns;
  }
  for (absl::string_view requested : absl::StrSplit(list, ',')) {
    std::optional<Column> column = FindColumn(requested, keys);
    if (!column) return Error(absl::StrCat("unknown column '", requested, "' (see --help)"));
    columns.push_back(*std::move(column));
  }
  return columns;
}

std::string CellOf(const DiskInfo& disk, const Column& column) {
  if (column.key == "name") return disk.name;
  return Lookup(disk.stats, column.key);
}

// ---- options ---------------------------------------------------------------------------

enum OptionId : uint32_t {
  kOptBytes = 1 << 0,
  kOptJson = 1 << 1,
  kOptMount = 1 << 2,
  kOptNoHeadings = 1 << 3,
  kOptOutput = 1 << 4,
  kOptOutputAll = 1 << 5,
  kOptPairs = 1 << 6,
  kOptRaw = 1 << 7,
  kOptMode = 1 << 8,
  kOptReadonly = 1 << 9,
  kOptPolicy = 1 << 10,
  kOptSeed = 1 << 11,
  kOptHelp = 1 << 12,
  kOptVersion = 1 << 13,
};
// Options every command takes.
constexpr uint32_t kGlobalOptions = kOptMount | kOptHelp | kOptVersion;
constexpr uint32_t kStyleOptions = kOptJson | kOptPairs | kOptRaw;
constexpr uint32_t kTableOptions =
    kStyleOptions | kOptBytes | kOptNoHeadings | kOptOutput | kOptOutputAll;

// What an operand or an option's value is: it decides what completion offers.
enum class Kind {
  kText,
  kDisk,
  kSize,
  kMode,
  kBool,
  kCacheMode,
  kFaultFile,
  kPolicy,
  kColumns,
  kMount,
  kPath  // a file or directory
};

struct OptionInfo {
  OptionId id;
  char short_name;        // 0: long only
  const char* long_name;  // without "--"
  const char* value;      // the value's name in --help, nullptr if it takes none
  Kind value_kind;
  bool of_one_command;  // shown in that command's synopsis
  absl::string_view help;
};

// In the order --help lists them (util-linux's: alphabetical by long name,
// then the ones of single commands, then -h and -V).
constexpr OptionInfo kOptions[] = {
    {kOptBytes, 'b', "bytes", nullptr, Kind::kText, false,
     "print sizes in bytes, not in human form"},
    {kOptJson, 'J', "json", nullptr, Kind::kText, false, "use JSON output format"},
    {kOptMount, 'm', "mount", "MOUNT", Kind::kMount, false, "the ramdiskfs mount to work on"},
    {kOptNoHeadings, 'n', "noheadings", nullptr, Kind::kText, false, "don't print headings"},
    {kOptOutput, 'o', "output", "LIST", Kind::kColumns, false,
     "columns to print; +LIST adds to the default ones"},
    {kOptOutputAll, 0, "output-all", nullptr, Kind::kText, false, "print every column"},
    {kOptPairs, 'P', "pairs", nullptr, Kind::kText, false, "use key=\"value\" output format"},
    {kOptRaw, 'r', "raw", nullptr, Kind::kText, false, "use raw output format"},
    {kOptMode, 0, "mode", "MODE", Kind::kMode, true, "data mode of the new disk (create)"},
    {kOptReadonly, 0, "readonly", nullptr, Kind::kText, true,
     "make the new disk read-only (create)"},
    {kOptPolicy, 0, "policy", "POLICY", Kind::kPolicy, true,
     "what unflushed writes survive the cut (powercut)"},
    {kOptSeed, 0, "seed", "SEED", Kind::kText, true, "seed of the cut's random draws (powercut)"},
    {kOptHelp, 'h', "help", nullptr, Kind::kText, false, "display this help"},
    {kOptVersion, 'V', "version", nullptr, Kind::kText, false, "display version"},
};

struct Options {
  uint32_t given = 0;  // OptionId bits
  OutputFormat format;
  std::optional<std::string> output;
  std::optional<std::string> mount;  // --mount, or a MOUNT operand
  std::optional<std::string> mode;
  std::optional<std::string> policy;
  std::optional<std::string> seed;
};

// ---- the words that values may be ----------------------------------------------------
//
// The daemon checks these values again; the lists are here so that a typo is
// an error before anything is written, and for completion.

constexpr DataMode kModes[] = {DataMode::kDax, DataMode::kDirect, DataMode::kCached,
                               DataMode::kNull};
constexpr absl::string_view kCacheModes[] = {"none", "volatile"};
constexpr absl::string_view kPowercutPolicies[] = {"all_lost", "random", "prefix", "torn"};

// The fault-injection files of a disk (docs/control.md), and what `fault NAME
// clear` writes to each to turn its faults off. Empty: a setting that shapes
// faults but injects none (kept by clear).
struct FaultFile {
  absl::string_view file;
  absl::string_view off;
};
constexpr FaultFile kFaultFiles[] = {
    {"badblocks", "clear"}, {"badblocks_once", ""}, {"badblocks_partial", ""}, {"errors", "0"},
    {"fault_seed", ""},     {"latency", "0"},       {"throttle", "0"},         {"flakey", "0 0"},
};
constexpr absl::string_view kFaultClear = "clear";

template <typename Words>
bool IsOneOf(absl::string_view word, const Words& words) {
  return std::find(std::begin(words), std::end(words), word) != std::end(words);
}

// ---- commands --------------------------------------------------------------------------

struct Operand {
  absl::string_view name;
  Kind kind;
  bool optional = false;  // this and every operand after it may be left out
  bool repeated = false;  // the last operand only: any number of them
};

struct Request;
struct Command {
  absl::string_view name;
  std::vector<Operand> operands;
  uint32_t options;  // OptionIds it takes besides kGlobalOptions
  absl::string_view help;
  absl::Status (*run)(const Request&);
};

struct Request {
  const Command* command = nullptr;
  bool command_given = false;  // false: `ramdiskctl [NAME...]`, list by default
  std::vector<std::string> operands;
  Options options;
};

absl::Status CheckName(const Request& request, const std::string& name) {
  absl::Status status = ValidateDiskName(Std(name));
  if (!status.ok()) {
    return FromParser(absl::StrCat(request.command->name, ": disk name"), status);
  }
  return absl::OkStatus();
}

// The disk named by the first operand, checked.
absl::StatusOr<std::string> DiskOperand(const Request& request) {
  const std::string& name = request.operands[0];
  if (auto status = CheckName(request, name); !status.ok()) return status;
  return name;
}

absl::StatusOr<std::string> Mount(const Request& request) {
  return ResolveMount(request.options.mount);
}

// Writes `value` and a "\n" to MOUNT/.control/RELATIVE in one write().
absl::Status WriteControl(const std::string& mount, absl::string_view relative,
                          absl::string_view value) {
  return WriteFile(ControlPath(mount, relative), absl::StrCat(value, "\n"),
                   absl::StrCat("cannot write '", value, "' to .control/", relative));
}

// Prints MOUNT/.control/RELATIVE as it reads.
absl::Status PrintControl(const std::string& mount, absl::string_view relative) {
  auto text =
      ReadFile(ControlPath(mount, relative), absl::StrCat("cannot read .control/", relative));
  if (!text.ok()) return text.status();
  std::fputs(text->c_str(), stdout);
  return absl::OkStatus();
}

struct FileValue {
  absl::string_view file;
  std::string value;
};

// Writes each value to its file of `disk`, in order, one write() each. Stops
// at the first failure; the writes before it stay done.
absl::Status WriteDiskFiles(const Request& request, const std::string& disk,
                            const std::vector<FileValue>& writes) {
  auto mount = Mount(request);
  if (!mount.ok()) return mount.status();
  for (const auto& [file, value] : writes) {
    if (auto status = WriteControl(*mount, absl::StrCat(disk, "/", file), value); !status.ok()) {
      return status;
    }
  }
  return absl::OkStatus();
}

absl::Status WriteDiskFile(const Request& request, const std::string& disk, absl::string_view file,
                           absl::string_view value) {
  return WriteDiskFiles(request, disk, {{file, std::string(value)}});
}

absl::Status RunList(const Request& request) {
  for (const std::string& name : request.operands) {
    if (auto status = CheckName(request, name); !status.ok()) return status;
  }
  auto mount = Mount(request);
  if (!mount.ok()) return mount.status();
  std::vector<DiskInfo> disks;
  if (request.operands.empty()) {
    auto names = DiskNames(*mount);
    if (!names.ok()) return names.status();
    for (const std::string& name : *names) {
      auto disk = ReadDisk(*mount, name);
      if (!disk.ok() && ErrnoOf(disk.status()) == ENOENT) continue;  // deleted meanwhile
      if (!disk.ok()) return disk.status();
      disks.push_back(*std::move(disk));
    }
  } else {
    for (const std::string& name : request.operands) {  // in the order given, as lsblk
      auto disk = ReadDisk(*mount, name);
      if (!disk.ok() && ErrnoOf(disk.status()) == ENOENT) {
        return Error(request.command_given
                         ? absl::StrCat("no disk '", name, "'")
                         : absl::StrCat("'", name, "' is no command and no disk (see --help)"),
                     ENOENT);
      }
      if (!disk.ok()) return disk.status();
      disks.push_back(*std::move(disk));
    }
  }
  const Options& options = request.options;
  auto columns = SelectColumns(options.output, options.given & kOptOutputAll, ReportedKeys(disks));
  if (!columns.ok()) return columns.status();
  std::vector<TableColumn> header;
  for (const Column& column : *columns) header.push_back({column.name, column.type});
  std::vector<std::vector<std::string>> rows;
  for (const DiskInfo& disk : disks) {
    std::vector<std::string> row;
    for (const Column& column : *columns) row.push_back(CellOf(disk, column));
    rows.push_back(std::move(row));
  }
  return PrintTable("ramdisks", header, rows, options.format);
}

absl::Status RunCreate(const Request& request) {
  auto name = DiskOperand(request);
  if (!name.ok()) return name.status();
  auto size = ParseDiskSize(Std(request.operands[1]));
  if (!size.ok()) return FromParser("create", size.status());
  std::string command = absl::StrCat(*name, " ", *size);
  if (request.options.mode) {
    auto mode = ParseDataMode(*request.options.mode);
    if (!mode.ok()) return FromParser("create: --mode", mode.status());
    absl::StrAppend(&command, " mode=", Absl(DataModeName(*mode)));
  }
  if (request.options.given & kOptReadonly) absl::StrAppend(&command, " readonly=1");
  auto mount = Mount(request);
  if (!mount.ok()) return mount.status();
  return WriteFile(ControlPath(*mount, "new"), absl::StrCat(command, "\n"),
                   absl::StrCat("cannot create disk '", *name, "'"));
}

absl::Status RunDelete(const Request& request) {
  auto name = DiskOperand(request);
  if (!name.ok()) return name.status();
  auto mount = Mount(request);
  if (!mount.ok()) return mount.status();
  return WriteFile(ControlPath(*mount, "delete"), absl::StrCat(*name, "\n"),
                   absl::StrCat("cannot delete disk '", *name, "'"));
}

absl::Status RunResize(const Request& request) {
  auto name = DiskOperand(request);
  if (!name.ok()) return name.status();
  auto size = ParseDiskSize(Std(request.operands[1]));
  if (!size.ok()) return FromParser("resize", size.status());
  return WriteDiskFile(request, *name, "size", absl::StrCat(*size));
}

absl::Status RunFlush(const Request& request) {
  auto name = DiskOperand(request);
  if (!name.ok()) return name.status();
  return WriteDiskFile(request, *name, "flush", "1");
}

absl::Status RunDiscard(const Request& request) {
  auto name = DiskOperand(request);
  if (!name.ok()) return name.status();
  auto range = ParseDiscardCommand(absl::StrCat(request.operands[1], " ", request.operands[2]));
  if (!range.ok()) return FromParser("", range.status());
  return WriteDiskFile(request, *name, "discard", absl::StrCat(range->offset, " ", range->length));
}

// The text to write for a value the user gave, in the form the daemon reads back.
using ValueCheck = absl::StatusOr<std::string> (*)(const std::string&);

absl::StatusOr<std::string> ModeValue(const std::string& text) {
  auto mode = ParseModeValue(text);
  if (!mode.ok()) return FromParser("", mode.status());
  return std::string(Absl(DataModeName(*mode)));
}
absl::StatusOr<std::string> BoolValue(const std::string& text) {
  auto value = ParseBoolValue(text);
  if (!value.ok()) return FromParser("", value.status());
  return std::string(*value ? "1" : "0");
}
absl::StatusOr<std::string> CacheValue(const std::string& text) {
  if (IsOneOf(text, kCacheModes)) return text;
  return Error(absl::StrCat("cache: '", text, "' is not ", absl::StrJoin(kCacheModes, " or ")));
}
absl::StatusOr<std::string> MemorySizeValue(const std::string& text) {
  auto bytes = ParseMemorySizeValue(text);
  if (!bytes.ok()) return FromParser("", bytes.status());
  return absl::StrCat(*bytes);
}

// `COMMAND [NAME] [VALUE]` for a file that holds one value: prints it, or
// writes VALUE as `check` gives it. `disk` false: a global file.
absl::Status ShowOrSet(const Request& request, bool disk, absl::string_view file,
                       ValueCheck check) {
  std::string name;
  if (disk) {
    auto checked = DiskOperand(request);
    if (!checked.ok()) return checked.status();
    name = *checked;
  }
  const size_t value_index = disk ? 1 : 0;
  std::optional<std::string> value;
  if (request.operands.size() > value_index) {
    auto checked = check(request.operands[value_index]);
    if (!checked.ok()) return checked.status();
    value = *std::move(checked);
  }
  auto mount = Mount(request);
  if (!mount.ok()) return mount.status();
  const std::string relative = disk ? absl::StrCat(name, "/", file) : std::string(file);
  if (!value) return PrintControl(*mount, relative);
  return WriteControl(*mount, relative, *value);
}

absl::Status RunMode(const Request& request) { return ShowOrSet(request, true, "mode", ModeValue); }
absl::Status RunReadonly(const Request& request) {
  return ShowOrSet(request, true, "readonly", BoolValue);
}
absl::Status RunCache(const Request& request) {
  return ShowOrSet(request, true, "cache", CacheValue);
}
absl::Status RunMaxMemory(const Request& request) {
  return ShowOrSet(request, false, "max_memory", MemorySizeValue);
}

// `stats [NAME]`: the stats file as it is; with --json, --raw or --pairs a
// KEY VALUE table, as lscpu's (values are strings there, one column each).
absl::Status RunStats(const Request& request) {
  std::optional<std::string> name;
  if (!request.operands.empty()) {
    auto checked = DiskOperand(request);
    if (!checked.ok()) return checked.status();
    name = *checked;
  }
  auto mount = Mount(request);
  if (!mount.ok()) return mount.status();
  auto rows = name ? ReadKeyValues(DiskControlPath(*mount, *name, "stats"),
                                   absl::StrCat("cannot read stats of disk '", *name, "'"))
                   : ReadKeyValues(ControlPath(*mount, "stats"), "cannot read stats");
  if (!rows.ok()) return rows.status();
  if (!(request.options.given & kStyleOptions)) {
    std::fputs(RenderKeyValues(*rows).c_str(), stdout);
    return absl::OkStatus();
  }
  std::vector<std::vector<std::string>> cells;
  for (const auto& [key, value] : *rows) cells.push_back({key, value});
  return PrintTable("stats", {{"KEY", CellType::kString}, {"VALUE", CellType::kString}}, cells,
                    request.options.format);
}

const FaultFile* FaultFileFor(absl::string_view file) {
  for (const FaultFile& fault : kFaultFiles) {
    if (fault.file == file) return &fault;
  }
  return nullptr;
}

// Prints one "FILE LINE" line per line of each file, as the stats files read.
absl::Status PrintFaultFiles(const Request& request, const std::string& disk,
                             const std::vector<const FaultFile*>& files) {
  auto mount = Mount(request);
  if (!mount.ok()) return mount.status();
  for (const FaultFile* fault : files) {
    auto text = ReadFile(DiskControlPath(*mount, disk, fault->file),
                         absl::StrCat("cannot read .control/", disk, "/", fault->file));
    if (!text.ok()) return text.status();
    for (absl::string_view line : absl::StrSplit(*text, '\n', absl::SkipEmpty())) {
      absl::PrintF("%s %s\n", fault->file, line);
    }
  }
  return absl::OkStatus();
}

// `fault NAME [FILE [VALUE...]]`: shows every fault file or one, sets one (the
// VALUEs joined by spaces, one write), or with FILE `clear` turns every fault off.
absl::Status RunFault(const Request& request) {
  auto name = DiskOperand(request);
  if (!name.ok()) return name.status();
  const std::vector<std::string>& operands = request.operands;
  if (operands.size() == 1) {
    std::vector<const FaultFile*> all;
    for (const FaultFile& fault : kFaultFiles) all.push_back(&fault);
    return PrintFaultFiles(request, *name, all);
  }
  if (operands[1] == kFaultClear) {
    if (operands.size() > 2) return Error("fault: 'clear' takes no value");
    std::vector<FileValue> writes;
    for (const FaultFile& fault : kFaultFiles) {
      if (!fault.off.empty()) writes.push_back({fault.file, std::string(fault.off)});
    }
    return WriteDiskFiles(request, *name, writes);
  }
  const FaultFile* fault = FaultFileFor(operands[1]);
  if (fault == nullptr) {
    std::vector<absl::string_view> files;
    for (const FaultFile& f : kFaultFiles) files.push_back(f.file);
    return Error(absl::StrCat("fault: unknown file '", operands[1], "' (",
                              absl::StrJoin(files, ", "), " or clear)"));
  }
  if (operands.size() == 2) return PrintFaultFiles(request, *name, {fault});
  const std::string value =
      absl::StrJoin(std::vector<std::string>(operands.begin() + 2, operands.end()), " ");
  if (absl::StrContains(value, '\n')) return Error("fault: a value is one line");
  return WriteDiskFile(request, *name, fault->file, value);
}

// `powercut NAME [--policy P] [--seed S]`: sets the policy and the seed if
// given, then writes 0 to power, in that order, because the cut draws from them.
absl::Status RunPowercut(const Request& request) {
  auto name = DiskOperand(request);
  if (!name.ok()) return name.status();
  const Options& options = request.options;
  if (options.policy && !IsOneOf(*options.policy, kPowercutPolicies)) {
    return Error(absl::StrCat("powercut: --policy '", *options.policy, "' is not one of ",
                              absl::StrJoin(kPowercutPolicies, ", ")));
  }
  uint64_t seed = 0;
  if (options.seed &&
      (!IsUnsignedNumber(*options.seed) || !absl::SimpleAtoi(*options.seed, &seed))) {
    return Error(absl::StrCat("powercut: --seed '", *options.seed,
                              "' is not a number from 0 to 18446744073709551615"));
  }
  std::vector<FileValue> writes;
  if (options.policy) writes.push_back({"powercut_policy", *options.policy});
  if (options.seed) writes.push_back({"powercut_seed", absl::StrCat(seed)});
  writes.push_back({"power", "0"});
  return WriteDiskFiles(request, *name, writes);
}

absl::Status RunPoweron(const Request& request) {
  auto name = DiskOperand(request);
  if (!name.ok()) return name.status();
  return WriteDiskFile(request, *name, "power", "1");
}

// ---- upgrade and save: the supervisor's control socket (docs/survive.md) ---------------

// The mount for upgrade and save, found without touching it: a mount whose
// worker is gone (the restarts stopped) answers nothing, and a stat() of it
// would wait for ever. `given` or $RAMDISKFS_MOUNT made absolute, else the
// only ramdiskfs mount; it must be in /proc/self/mountinfo.
absl::StatusOr<std::string> SupervisedMount(const Request& request) {
  std::optional<std::string> given = request.options.mount;
  if (!given) {
    if (const char* env = std::getenv("RAMDISKFS_MOUNT"); env != nullptr && *env != '\0') {
      given = env;
    }
  }
  const std::vector<std::string> mounts = RamdiskfsMountPoints();
  if (!given) {
    if (mounts.size() == 1) return mounts[0];
    if (mounts.empty()) {
      return Error("no ramdiskfs mount found; give --mount MOUNT or set RAMDISKFS_MOUNT", ENOENT);
    }
    return Error(absl::StrCat(mounts.size(), " ramdiskfs mounts (", absl::StrJoin(mounts, ", "),
                              "); give --mount MOUNT or set RAMDISKFS_MOUNT"));
  }
  std::string mount = *given;
  if (mount.empty() || mount[0] != '/') {
    char cwd[PATH_MAX];
    if (getcwd(cwd, sizeof(cwd)) == nullptr) return Error("getcwd", errno);
    mount = absl::StrCat(cwd, "/", mount);
  }
  // Lexically: "." and ".." components and repeated or trailing '/'.
  std::vector<std::string> parts;
  for (absl::string_view part : absl::StrSplit(mount, '/', absl::SkipEmpty())) {
    if (part == ".") continue;
    if (part == "..") {
      if (!parts.empty()) parts.pop_back();
      continue;
    }
    parts.emplace_back(part);
  }
  mount = "/" + absl::StrJoin(parts, "/");
  if (std::find(mounts.begin(), mounts.end(), mount) == mounts.end()) {
    return Error(absl::StrCat(mount, ": not a ramdiskfs mount"), ENOENT);
  }
  return mount;
}

// Connects to the supervisor of `mount` and sends `request`.
absl::StatusOr<int> ConnectSupervisor(const std::string& mount, absl::string_view request) {
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (fd < 0) return Error("socket", errno);
  struct sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  const std::string name = SupervisorSocketName(Std(mount));
  std::memcpy(addr.sun_path + 1, name.data(), name.size());
  const socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0) {
    const int err = errno;
    close(fd);
    if (err == ECONNREFUSED || err == ENOENT) {
      return Error(absl::StrCat(mount,
                                ": no supervisor answers: the daemon was not started with "
                                "--supervise (or its supervisor is gone)"),
                   err);
    }
    return Error(absl::StrCat("cannot reach the supervisor of ", mount), err);
  }
  // The name is abstract, so anyone could have bound it first: talk only to
  // a supervisor run by root or by this user (as it answers only those).
  struct ucred cred = {};
  socklen_t cred_len = sizeof(cred);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cred_len) != 0 ||
      (cred.uid != 0 && cred.uid != geteuid())) {
    close(fd);
    return Error(absl::StrCat(mount, ": the socket named for its supervisor belongs to user ",
                              cred.uid, ", not to root or to you; not talking to it"),
                 EPERM);
  }
  if (send(fd, request.data(), request.size(), MSG_NOSIGNAL) < 0) {
    const int err = errno;
    close(fd);
    return Error(absl::StrCat("cannot send to the supervisor of ", mount), err);
  }
  return fd;
}

// One message from the supervisor (text, and a descriptor if one came:
// -1 otherwise). Waits up to `timeout_ms`.
absl::StatusOr<std::string> ReceiveAnswer(int fd, int timeout_ms, int* got_fd) {
  *got_fd = -1;
  struct pollfd p = {fd, POLLIN, 0};
  const int ready = poll(&p, 1, timeout_ms);
  if (ready == 0) return Error("the supervisor did not answer in time", ETIMEDOUT);
  if (ready < 0) return Error("poll", errno);
  char buf[4096];
  struct iovec iov = {buf, sizeof(buf)};
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int))];
  struct msghdr msg = {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  const ssize_t n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
  if (n < 0) return Error("recvmsg", errno);
  if (n == 0) return Error("the supervisor closed the connection without an answer", EPIPE);
  for (struct cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
      std::memcpy(got_fd, CMSG_DATA(c), sizeof(int));
    }
  }
  return std::string(buf, static_cast<size_t>(n));
}

// `upgrade [BINARY]`: the supervisor replaces the worker with BINARY (by
// default the binary the daemon was started from, as SIGHUP does) and
// answers once the new worker serves.
absl::Status RunUpgrade(const Request& request) {
  std::string binary;
  if (!request.operands.empty()) {
    char* real = realpath(request.operands[0].c_str(), nullptr);
    if (real == nullptr) return Error(absl::StrCat("upgrade: ", request.operands[0]), errno);
    binary = real;
    std::free(real);
  }
  auto mount = SupervisedMount(request);
  if (!mount.ok()) return mount.status();
  auto fd = ConnectSupervisor(*mount, absl::StrCat("upgrade ", binary));
  if (!fd.ok()) return fd.status();
  absl::Cleanup closer = [fd = *fd] { close(fd); };
  int unused = -1;
  auto answer = ReceiveAnswer(*fd, 60'000, &unused);
  if (unused >= 0) close(unused);
  if (!answer.ok()) return answer.status();
  absl::string_view text = *answer;
  if (absl::ConsumePrefix(&text, "ok ")) {
    absl::PrintF("%s: %s\n", *mount, text);
    return absl::OkStatus();
  }
  absl::ConsumePrefix(&text, "error ");
  return Error(absl::StrCat("upgrade: ", text));
}

// Copies the bytes of the backing file `fd` (a copy of the supervisor's) to
// a new file `path`, holes as holes. Through its own open file, so the
// offset the daemon shares with its descriptor is left alone.
absl::Status SaveImage(int fd, const std::string& path, uint64_t* size) {
  const int in = open(absl::StrCat("/proc/self/fd/", fd).c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) return Error(absl::StrCat("cannot open a backing file for ", path), errno);
  absl::Cleanup close_in = [in] { close(in); };
  struct stat st;
  if (fstat(in, &st) != 0) return Error("fstat", errno);
  *size = static_cast<uint64_t>(st.st_size);
  const int out = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (out < 0) return Error(absl::StrCat("cannot create ", path), errno);
  absl::Cleanup close_out = [out] { close(out); };
  std::vector<char> buf(1 << 20);
  off_t at = 0;
  while (at < st.st_size) {
    off_t data = lseek(in, at, SEEK_DATA);
    if (data < 0) break;  // ENXIO: only a hole is left
    off_t hole = lseek(in, data, SEEK_HOLE);
    if (hole < 0) hole = st.st_size;
    for (off_t pos = data; pos < hole;) {
      const size_t want = static_cast<size_t>(std::min<off_t>(hole - pos, buf.size()));
      const ssize_t n = pread(in, buf.data(), want, pos);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return Error(absl::StrCat("cannot read a backing file for ", path), errno);
      for (ssize_t done = 0; done < n;) {
        const ssize_t w = pwrite(out, buf.data() + done, static_cast<size_t>(n - done), pos + done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return Error(absl::StrCat("cannot write ", path), errno);
        done += w;
      }
      pos += n;
    }
    at = hole;
  }
  if (ftruncate(out, st.st_size) != 0) return Error(absl::StrCat("cannot size ", path), errno);
  if (fsync(out) != 0) return Error(absl::StrCat("cannot sync ", path), errno);
  return absl::OkStatus();
}

// `save DIR [NAME...]`: writes DIR/NAME.img for every disk (or the NAMEs),
// from the backing files the supervisor holds. It needs nothing from the
// worker, so it works after the restarts stopped, when the mount answers no
// request. No file is written if a NAME is unknown or an image exists.
absl::Status RunSave(const Request& request) {
  const std::string& dir = request.operands[0];
  struct stat st;
  if (stat(dir.c_str(), &st) != 0) return Error(absl::StrCat("save: ", dir), errno);
  if (!S_ISDIR(st.st_mode)) return Error(absl::StrCat("save: ", dir, ": not a directory"), ENOTDIR);
  std::vector<std::string> wanted(request.operands.begin() + 1, request.operands.end());
  for (const std::string& name : wanted) {
    if (auto status = CheckName(request, name); !status.ok()) return status;
  }
  auto mount = SupervisedMount(request);
  if (!mount.ok()) return mount.status();
  auto sock = ConnectSupervisor(*mount, "save");
  if (!sock.ok()) return sock.status();
  absl::Cleanup closer = [fd = *sock] { close(fd); };
  std::vector<std::pair<std::string, int>> disks;
  absl::Cleanup close_fds = [&disks] {
    for (auto& [name, fd] : disks) close(fd);
  };
  for (;;) {
    int fd = -1;
    auto answer = ReceiveAnswer(*sock, 10'000, &fd);
    if (!answer.ok()) return answer.status();
    absl::string_view text = *answer;
    if (absl::ConsumePrefix(&text, "disk ") && fd >= 0) {
      disks.emplace_back(std::string(text), fd);
      continue;
    }
    if (fd >= 0) close(fd);
    if (absl::StartsWith(text, "end")) break;
    absl::ConsumePrefix(&text, "error ");
    return Error(absl::StrCat("save: ", text));
  }
  std::vector<std::pair<std::string, int>> chosen;
  for (const std::string& name : wanted) {
    auto it = std::find_if(disks.begin(), disks.end(), [&](auto& d) { return d.first == name; });
    if (it == disks.end()) return Error(absl::StrCat("save: no disk '", name, "'"), ENOENT);
    chosen.push_back(*it);
  }
  if (wanted.empty()) chosen = disks;
  for (const auto& [name, fd] : chosen) {
    const std::string path = absl::StrCat(dir, "/", name, ".img");
    if (access(path.c_str(), F_OK) == 0) {
      return Error(absl::StrCat("save: ", path, " exists; nothing was written"), EEXIST);
    }
  }
  for (const auto& [name, fd] : chosen) {
    const std::string path = absl::StrCat(dir, "/", name, ".img");
    uint64_t size = 0;
    if (auto status = SaveImage(fd, path, &size); !status.ok()) return status;
    absl::PrintF("%s %d %s\n", name, size, path);
  }
  return absl::OkStatus();
}

const std::vector<Command> kCommands = {
    {"list",
     {{"NAME", Kind::kDisk, true, true}},
     kTableOptions,
     "list the disks, or only the NAMEs (the default command)",
     RunList},
    {"create",
     {{"NAME", Kind::kText}, {"SIZE", Kind::kSize}},
     kOptMode | kOptReadonly,
     "create a disk of SIZE bytes",
     RunCreate},
    {"delete", {{"NAME", Kind::kDisk}}, 0, "delete a disk and free its memory", RunDelete},
    {"resize",
     {{"NAME", Kind::kDisk}, {"SIZE", Kind::kSize}},
     0,
     "change the size of a disk",
     RunResize},
    {"flush", {{"NAME", Kind::kDisk}}, 0, "free every page of a disk (BLKFLSBUF)", RunFlush},
    {"discard",
     {{"NAME", Kind::kDisk}, {"OFFSET", Kind::kSize}, {"LENGTH", Kind::kSize}},
     0,
     "free a byte range of a disk",
     RunDiscard},
    {"mode",
     {{"NAME", Kind::kDisk}, {"MODE", Kind::kMode, true}},
     0,
     "show or set the data mode of a disk: dax, direct, cached or null",
     RunMode},
    {"readonly",
     {{"NAME", Kind::kDisk}, {"0|1", Kind::kBool, true}},
     0,
     "show or set whether a disk is read-only",
     RunReadonly},
    {"stats",
     {{"NAME", Kind::kDisk, true}},
     kStyleOptions | kOptNoHeadings,
     "show the statistics of a disk, or the global ones",
     RunStats},
    {"max-memory",
     {{"SIZE", Kind::kSize, true}},
     0,
     "show or set the memory cap of all disks together",
     RunMaxMemory},
    {"fault",
     {{"NAME", Kind::kDisk}, {"FILE", Kind::kFaultFile, true}, {"VALUE", Kind::kText, true, true}},
     0,
     "show or set fault injection (FILE VALUE...), or turn every fault off (clear)",
     RunFault},
    {"cache",
     {{"NAME", Kind::kDisk}, {"none|volatile", Kind::kCacheMode, true}},
     0,
     "show or set the write cache of a disk",
     RunCache},
    {"powercut",
     {{"NAME", Kind::kDisk}},
     kOptPolicy | kOptSeed,
     "cut the power of a disk: unflushed writes are resolved by the policy",
     RunPowercut},
    {"poweron", {{"NAME", Kind::kDisk}}, 0, "power a disk on again after a cut", RunPoweron},
    {"upgrade",
     {{"BINARY", Kind::kPath, true}},
     0,
     "replace the worker of a --supervise daemon with BINARY (default: the one it was started "
     "from), with no unmount",
     RunUpgrade},
    {"save",
     {{"DIR", Kind::kPath}, {"NAME", Kind::kText, true, true}},
     0,
     "write every disk (or the NAMEs) of a --supervise daemon to DIR/NAME.img, also when the "
     "mount no longer answers",
     RunSave},
};

const Command* FindCommand(absl::string_view name) {
  for (const Command& command : kCommands) {
    if (command.name == name) return &command;
  }
  return nullptr;
}
const Command& ListCommand() { return kCommands.front(); }

// "NAME [FILE [VALUE...]]": optional operands nest, as each needs the one before.
std::string OperandSynopsis(const Command& command) {
  std::string out;
  int open = 0;
  for (const Operand& operand : command.operands) {
    if (!out.empty()) out += " ";
    if (operand.optional) {
      out += "[";
      ++open;
    }
    absl::StrAppend(&out, operand.name, operand.repeated ? "..." : "");
  }
  out.append(open, ']');
  return out;
}

std::string Synopsis(const Command& command) {
  std::string out = absl::StrCat(command.name, " ", OperandSynopsis(command));
  for (const OptionInfo& option : kOptions) {
    if (!option.of_one_command || !(command.options & option.id)) continue;
    absl::StrAppend(&out, " [--", option.long_name, option.value ? " " : "",
                    option.value ? option.value : "", "]");
  }
  return std::string(absl::StripTrailingAsciiWhitespace(out));
}

std::string OptionLabel(const OptionInfo& option) {
  std::string label = option.short_name ? absl::StrFormat("-%c, ", option.short_name) : "    ";
  absl::StrAppend(&label, "--", option.long_name);
  if (option.value) absl::StrAppend(&label, " ", option.value);
  return label;
}

// `text` broken at spaces into lines of at most 79 columns, each after `indent`.
std::string Wrap(absl::string_view text, absl::string_view indent) {
  constexpr size_t kWidth = 79;
  std::string out, line;
  for (absl::string_view word : absl::StrSplit(text, ' ', absl::SkipEmpty())) {
    if (!line.empty() && indent.size() + line.size() + 1 + word.size() > kWidth) {
      absl::StrAppend(&out, indent, line, "\n");
      line.clear();
    }
    absl::StrAppend(&line, line.empty() ? "" : " ", word);
  }
  if (!line.empty()) absl::StrAppend(&out, indent, line, "\n");
  return out;
}

std::string UsageText() {
  std::string out = absl::StrCat("Usage:\n ", kProgram, " [options] [list] [NAME...]\n ", kProgram,
                                 " [options] COMMAND [ARGUMENT...]\n\n"
                                 "List and control the RAM disks of a ramdiskfs mount through its\n"
                                 "control files, MOUNT/.control/.\n\nCommands:\n");
  for (const Command& command : kCommands) {
    absl::StrAppend(&out, " ", Synopsis(command), "\n", Wrap(command.help, "        "));
  }
  out += "\nOptions:\n";
  for (const OptionInfo& option : kOptions) {
    absl::StrAppend(&out, absl::StrFormat(" %-24s %s\n", OptionLabel(option), option.help));
  }
  out += "\nAvailable output columns (* the default ones):\n";
  for (const ColumnInfo& column : kColumns) {
    absl::StrAppend(&out, absl::StrFormat(" %12s %s %s\n", column.name,
                                          column.is_default ? "*" : " ", column.help));
  }
  std::vector<absl::string_view> faults;
  for (const FaultFile& fault : kFaultFiles) faults.push_back(fault.file);
  absl::StrAppend(
      &out,
      Wrap("and every other key of the disks' stats files, in upper case with '-' for '_' "
           "(READS, WRITE-BYTES, ...)",
           " "),
      "\n",
      Wrap("MOUNT is --mount, else an operand that is a ramdiskfs mount point and no disk name "
           "(/mnt/rd, ./rd), else $RAMDISKFS_MOUNT, else the only ramdiskfs mount.",
           ""),
      Wrap("SIZE, OFFSET, LENGTH: bytes, or with a K, M, G, T or P suffix (powers of 1024).", ""),
      Wrap(absl::StrCat("FILE: a fault-injection file: ", absl::StrJoin(faults, ", "), "."), ""),
      Wrap(absl::StrCat("POLICY: ", absl::StrJoin(kPowercutPolicies, ", "), "."), ""),
      "\nExit status: 0 on success, 1 on any error.\n\n"
      "For more details see ramdiskctl(8) and docs/control.md.\n");
  return out;
}

// ---- the command line ---------------------------------------------------------------------

// getopt_long's value for an option: its short name, or 256 + its index.
int GetoptValue(size_t index) {
  return kOptions[index].short_name ? kOptions[index].short_name : 256 + static_cast<int>(index);
}

void ApplyOption(const OptionInfo& option, const char* value, Options& options) {
  options.given |= option.id;
  switch (option.id) {
    case kOptBytes:
      options.format.bytes = true;
      break;
    case kOptJson:
      options.format.style = Style::kJson;
      break;
    case kOptRaw:
      options.format.style = Style::kRaw;
      break;
    case kOptPairs:
      options.format.style = Style::kPairs;
      break;
    case kOptNoHeadings:
      options.format.headings = false;
      break;
    case kOptOutput:
      options.output = value;
      break;
    case kOptMount:
      options.mount = value;
      break;
    case kOptMode:
      options.mode = value;
      break;
    case kOptPolicy:
      options.policy = value;
      break;
    case kOptSeed:
      options.seed = value;
      break;
    case kOptOutputAll:
    case kOptReadonly:
    case kOptHelp:
    case kOptVersion:
      break;
  }
}

// Options may stand anywhere (getopt_long permutes), short ones grouped
// (-nb, -oNAME,SIZE). An operand that starts with '-' goes after "--".
absl::StatusOr<Request> ParseCommandLine(int argc, char** argv) {
  std::vector<option> longopts;
  std::string shortopts = ":";  // ':' first: a missing value is reported as ':'
  for (size_t i = 0; i < std::size(kOptions); ++i) {
    const OptionInfo& info = kOptions[i];
    longopts.push_back(
        {info.long_name, info.value ? required_argument : no_argument, nullptr, GetoptValue(i)});
    if (info.short_name) {
      shortopts.push_back(info.short_name);
      if (info.value) shortopts.push_back(':');
    }
  }
  longopts.push_back({nullptr, 0, nullptr, 0});

  Request request;
  opterr = 0;
  optind = 1;
  for (;;) {
    const int c = getopt_long(argc, argv, shortopts.c_str(), longopts.data(), nullptr);
    if (c == -1) break;
    if (c == '?' || c == ':') {
      const std::string arg = optopt != 0 && optopt < 256 ? absl::StrFormat("-%c", optopt)
                                                          : std::string(argv[optind - 1]);
      if (c == ':') return Error(absl::StrCat("option '", arg, "' needs a value (see --help)"));
      return Error(absl::StrCat("unknown option '", arg, "' (see --help)"));
    }
    for (size_t i = 0; i < std::size(kOptions); ++i) {
      if (GetoptValue(i) != c) continue;
      ApplyOption(kOptions[i], optarg, request.options);
    }
  }
  const uint32_t given = request.options.given;
  if (given & (kOptHelp | kOptVersion)) return request;

  request.operands.assign(argv + optind, argv + argc);
  if (!request.operands.empty() && IsMountOperand(request.operands.back())) {
    if (request.options.mount) {
      return Error(absl::StrCat("two mounts: --mount ", *request.options.mount, " and ",
                                request.operands.back()));
    }
    request.options.mount = request.operands.back();
    request.operands.pop_back();
  }
  request.command = &ListCommand();
  if (!request.operands.empty()) {
    if (const Command* command = FindCommand(request.operands.front())) {
      request.command = command;
      request.command_given = true;
      request.operands.erase(request.operands.begin());
    }
  }
  const Command& command = *request.command;
  for (const OptionInfo& option : kOptions) {
    if ((given & option.id) && !((kGlobalOptions | command.options) & option.id)) {
      return Error(absl::StrCat("option --", option.long_name, " does not apply to '", command.name,
                                "' (see --help)"));
    }
  }
  if (std::popcount(given & kStyleOptions) > 1) {
    return Error("--json, --raw and --pairs are mutually exclusive");
  }
  if ((given & kOptOutput) && (given & kOptOutputAll)) {
    return Error("--output and --output-all are mutually exclusive");
  }
  const size_t required = std::count_if(command.operands.begin(), command.operands.end(),
                                        [](const Operand& o) { return !o.optional; });
  const bool unbounded = !command.operands.empty() && command.operands.back().repeated;
  if (request.operands.size() < required) {
    return Error(
        absl::StrCat("'", command.name, "' needs ", OperandSynopsis(command), " (see --help)"));
  }
  if (!unbounded && request.operands.size() > command.operands.size()) {
    return Error(absl::StrCat("too many arguments for '", command.name, "' (see --help)"));
  }
  return request;
}

// ---- completion ---------------------------------------------------------------------------
//
// completion/ramdiskctl (bash) runs `ramdiskctl __complete CWORD WORD...` with
// its COMP_CWORD and COMP_WORDS and takes each line printed as a candidate.
// Everything offered comes from the tables above and from the mount.

struct CompletionState {
  std::optional<std::string> mount;
  std::vector<std::string> positionals;
  const OptionInfo* pending = nullptr;  // the option whose value is the current word
};

const OptionInfo* LongOption(absl::string_view name) {
  for (const OptionInfo& option : kOptions) {
    if (name == option.long_name) return &option;
  }
  return nullptr;
}
const OptionInfo* ShortOption(char name) {
  for (const OptionInfo& option : kOptions) {
    if (option.short_name != 0 && option.short_name == name) return &option;
  }
  return nullptr;
}

// Walks the words before the current one. bash splits "--output=LIST" into
// "--output", "=", "LIST" (COMP_WORDBREAKS holds '='); both forms work.
CompletionState ScanWords(const std::vector<std::string>& words) {
  CompletionState state;
  bool operands_only = false;
  const OptionInfo* expecting = nullptr;
  for (const std::string& word : words) {
    if (expecting != nullptr) {
      if (word == "=") continue;
      if (expecting->id == kOptMount) state.mount = word;
      expecting = nullptr;
      continue;
    }
    if (operands_only || word.size() < 2 || word[0] != '-') {
      state.positionals.push_back(word);
    } else if (word == "--") {
      operands_only = true;
    } else if (word[1] == '-') {
      const size_t eq = word.find('=');
      const OptionInfo* option = LongOption(absl::string_view(word).substr(2, eq - 2));
      if (option && option->value && eq == std::string::npos) expecting = option;
      if (option && option->id == kOptMount && eq != std::string::npos) {
        state.mount = word.substr(eq + 1);
      }
    } else {
      for (size_t i = 1; i < word.size(); ++i) {
        const OptionInfo* option = ShortOption(word[i]);
        if (option == nullptr || option->value == nullptr) continue;
        if (i + 1 == word.size()) expecting = option;
        if (option->id == kOptMount && i + 1 < word.size()) state.mount = word.substr(i + 1);
        break;
      }
    }
  }
  state.pending = expecting;
  return state;
}

std::vector<std::string> DisksForCompletion(const std::optional<std::string>& mount) {
  auto resolved = ResolveMount(mount);
  if (!resolved.ok()) return {};
  auto names = DiskNames(*resolved);
  return names.ok() ? *names : std::vector<std::string>{};
}

std::vector<std::string> ColumnsForCompletion(const std::optional<std::string>& mount) {
  std::vector<DiskInfo> disks;
  if (auto resolved = ResolveMount(mount); resolved.ok()) {
    for (const std::string& name : DisksForCompletion(mount)) {
      if (auto disk = ReadDisk(*resolved, name); disk.ok()) disks.push_back(*std::move(disk));
    }
  }
  std::vector<std::string> names;
  for (const Column& column : AllColumns(ReportedKeys(disks))) names.push_back(column.name);
  return names;
}

std::vector<std::string> WordsOf(Kind kind, const std::optional<std::string>& mount) {
  std::vector<std::string> words;
  switch (kind) {
    case Kind::kDisk:
      return DisksForCompletion(mount);
    case Kind::kMode:
      for (DataMode mode : kModes) words.emplace_back(DataModeName(mode));
      break;
    case Kind::kBool:
      words = {"0", "1"};
      break;
    case Kind::kCacheMode:
      for (absl::string_view word : kCacheModes) words.emplace_back(word);
      break;
    case Kind::kPolicy:
      for (absl::string_view word : kPowercutPolicies) words.emplace_back(word);
      break;
    case Kind::kFaultFile:
      for (const FaultFile& fault : kFaultFiles) words.emplace_back(fault.file);
      words.emplace_back(kFaultClear);
      break;
    case Kind::kMount:
      return RamdiskfsMountPoints();
    case Kind::kColumns:
      return ColumnsForCompletion(mount);
    case Kind::kText:
    case Kind::kSize:
    case Kind::kPath:  // Complete() lists the directory of the word
      break;
  }
  return words;
}

// Files in the directory of `current` whose names continue it (directories
// with a '/'), as bash's own file completion would offer them.
std::vector<std::string> PathsForCompletion(const std::string& current) {
  const size_t slash = current.rfind('/');
  const std::string dir = slash == std::string::npos ? "" : current.substr(0, slash + 1);
  std::vector<std::string> paths;
  DIR* d = opendir(dir.empty() ? "." : dir.c_str());
  if (d == nullptr) return paths;
  while (struct dirent* e = readdir(d)) {
    const std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    std::string path = dir + name;
    struct stat st;
    if (stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) path += "/";
    paths.push_back(std::move(path));
  }
  closedir(d);
  std::sort(paths.begin(), paths.end());
  return paths;
}

// The candidates for `current`, the word at COMP_CWORD, given the words before it.
std::vector<std::string> Complete(const std::vector<std::string>& before,
                                  const std::string& current) {
  const CompletionState state = ScanWords(before);
  std::vector<std::string> candidates;
  std::string prefix;  // kept in front of every candidate
  std::string partial = current;
  if (state.pending != nullptr && state.pending->value_kind == Kind::kColumns) {
    // A comma list: complete the last item, offer no column twice.
    const size_t comma = current.rfind(',');
    prefix = comma == std::string::npos ? "" : current.substr(0, comma + 1);
    partial = absl::AsciiStrToUpper(current.substr(prefix.size()));
    std::vector<std::string> taken = absl::StrSplit(prefix, ',', absl::SkipEmpty());
    for (std::string& name : WordsOf(Kind::kColumns, state.mount)) {
      if (!IsOneOf(name, taken)) candidates.push_back(std::move(name));
    }
  } else if (state.pending != nullptr) {
    candidates = WordsOf(state.pending->value_kind, state.mount);
  } else {
    const Command* command =
        state.positionals.empty() ? nullptr : FindCommand(state.positionals.front());
    if (absl::StartsWith(current, "-")) {
      const uint32_t takes = kGlobalOptions | (command ? command->options : ListCommand().options);
      for (const OptionInfo& option : kOptions) {
        if (takes & option.id) candidates.push_back(absl::StrCat("--", option.long_name));
      }
    } else if (state.positionals.empty()) {  // a command, or NAMEs for the default list
      for (const Command& c : kCommands) candidates.emplace_back(c.name);
      for (std::string& name : DisksForCompletion(state.mount)) candidates.push_back(name);
    } else if (command == nullptr) {
      candidates = DisksForCompletion(state.mount);
    } else if (!command->operands.empty()) {
      const size_t index = state.positionals.size() - 1;  // operands after the command word
      const Operand* operand = index < command->operands.size()    ? &command->operands[index]
                               : command->operands.back().repeated ? &command->operands.back()
                                                                   : nullptr;
      if (operand != nullptr && operand->kind == Kind::kPath) {
        candidates = PathsForCompletion(current);
      } else if (operand != nullptr) {
        candidates = WordsOf(operand->kind, state.mount);
      }
    }
  }
  std::vector<std::string> out;
  for (const std::string& candidate : candidates) {
    if (absl::StartsWith(candidate, partial)) out.push_back(prefix + candidate);
  }
  return out;
}

// `ramdiskctl __complete CWORD WORD0 WORD1 ...` (WORD0 is the program).
int RunCompletion(int argc, char** argv) {
  size_t cword = 0;
  if (argc < 4 || !absl::SimpleAtoi(argv[2], &cword) || cword < 1) return kExitFailure;
  std::vector<std::string> words(argv + 4, argv + argc);  // without WORD0
  const size_t index = cword - 1;
  const std::string current = index < words.size() ? words[index] : "";
  words.resize(std::min(index, words.size()));
  // The "=" bash splits off "--output=" is no value: complete what follows it.
  const std::string word = current == "=" ? "" : current;
  if (current == "=") words.push_back("=");
  for (const std::string& candidate : Complete(words, word)) std::printf("%s\n", candidate.c_str());
  return 0;
}

// ---- main -------------------------------------------------------------------------------

int Main(int argc, char** argv) {
  if (argc >= 2 && std::strcmp(argv[1], "__complete") == 0) return RunCompletion(argc, argv);
  auto request = ParseCommandLine(argc, argv);
  if (!request.ok()) return Report(request.status());
  if (request->options.given & kOptHelp) {
    std::fputs(UsageText().c_str(), stdout);
    return 0;
  }
  if (request->options.given & kOptVersion) {
    std::printf("%s (ramdiskfs) %s\n", kProgram, RAMDISKFS_VERSION);
    return 0;
  }
  if (absl::Status status = request->command->run(*request); !status.ok()) return Report(status);
  if (std::fflush(stdout) != 0) return Report(Error("write to stdout", errno));
  return 0;
}

}  // namespace
}  // namespace ramdiskfs

int main(int argc, char** argv) { return ramdiskfs::Main(argc, argv); }
