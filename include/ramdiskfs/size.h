// Byte sizes as users write them: "4096", "512K", "64M", "1G", "2T".
//
// Suffixes are powers of 1024 (K, M, G, T, P; upper or lower case; an optional
// "iB" or "B" after the letter: "1GiB", "1GB", "1g" all mean 2^30). A decimal
// fraction is allowed before a unit, as in util-linux ("1.5G"; the part below
// one byte is dropped). No sign, no spaces, no hex. Everything is checked for
// overflow.

#ifndef RAMDISKFS_SIZE_H_
#define RAMDISKFS_SIZE_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace ramdiskfs {

inline constexpr uint64_t kPageSize = 4096;         // the store's unit
inline constexpr uint64_t kLogicalBlockSize = 512;  // disk sizes round up to this
// The largest disk: off_t's range rounded down to a page (tmpfs's own limit).
inline constexpr uint64_t kMaxDiskBytes = 0x7FFFFFFFFFFFF000ULL;

// Parses `text` as a byte count. Errors: InvalidArgument (empty, garbage,
// negative, a fraction without a unit, unknown suffix, overflow past 2^64-1).
// Thread-safe.
absl::StatusOr<uint64_t> ParseSize(std::string_view text);

// ParseSize, or "N%" (1..100, whole numbers) of `total_bytes`, as tmpfs's
// size=50%. Errors: ParseSize's; InvalidArgument for a bad percentage or when
// `total_bytes` is 0 (unknown).
absl::StatusOr<uint64_t> ParseSizeOrPercent(std::string_view text, uint64_t total_bytes);

// Parses a disk size: ParseSize, then rounded up to kLogicalBlockSize.
// Errors: those of ParseSize; InvalidArgument if the result exceeds
// kMaxDiskBytes (the message names the limit).
absl::StatusOr<uint64_t> ParseDiskSize(std::string_view text);

// Rounds `bytes` up to a multiple of `unit` (a power of two). Errors:
// InvalidArgument on overflow.
absl::StatusOr<uint64_t> RoundUp(uint64_t bytes, uint64_t unit);

// Human form for tables: "0", "512", "4K", "1.5G", "2T" (powers of 1024, at
// most one decimal, trailing ".0" dropped). Below 1024 the plain number; else
// the largest unit up to P. The decimal is truncated, never rounded up, so a
// table never shows more than is there: 2047M is "1.9G", 1025 is "1K", and
// 2^64-1 is "16383.9P". A form without a decimal parses back with ParseSize.
// Never fails.
std::string FormatSize(uint64_t bytes);

}  // namespace ramdiskfs

#endif  // RAMDISKFS_SIZE_H_
