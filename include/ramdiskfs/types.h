// The core's vocabulary: data modes, store kinds, the disk-name rule and the
// limits every layer checks against. Shared by the command line, the control
// plane, the store and the disk; it depends on nothing but abseil's Status.

#ifndef RAMDISKFS_TYPES_H_
#define RAMDISKFS_TYPES_H_

#include <cstddef>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace ramdiskfs {

// How a disk's data reaches the kernel (docs/design.md, "Data modes").
enum class DataMode { kDax, kDirect, kCached, kNull };

// "dax", "direct", "cached", "null".
std::string_view DataModeName(DataMode mode);
// Inverse of DataModeName (exact, lower case). Errors: InvalidArgument.
absl::StatusOr<DataMode> ParseDataMode(std::string_view text);

// Which kernel object holds the pages: a private tmpfs instance (needs
// CAP_SYS_ADMIN; the kernel enforces the memory cap) or memfds (anyone; the
// daemon enforces the cap). kAuto picks tmpfs when it can.
enum class StoreKind { kAuto, kTmpfs, kMemfd };
std::string_view StoreKindName(StoreKind kind);

// A disk name is at most this many bytes (NAME_MAX: it is a file name).
inline constexpr size_t kMaxNameBytes = 255;
// At most this many disks exist at once (statfs reports it as f_files).
inline constexpr int kMaxDisks = 4096;

// Checks a disk name: 1..255 bytes of [A-Za-z0-9._+@-], not starting with '.'
// or '-' (so never ".", "..", ".control", or an option). Errors: InvalidArgument
// (bad characters, empty, leading '.'/'-'), and an ENAMETOOLONG ErrnoStatus for
// names over 255 bytes. Names of global control files are legal names here;
// DiskTable refuses them (IsReservedDiskName in control_files.h).
absl::Status ValidateDiskName(std::string_view name);

}  // namespace ramdiskfs

#endif  // RAMDISKFS_TYPES_H_
