// Errors inside the core are absl::Status values; errno appears only at syscall
// sites (ErrnoStatus) and at the FUSE edge (StatusToErrno).
//
// A Status made by ErrnoStatus() carries the exact errno as a payload, so the
// FUSE edge can answer EBUSY, EROFS, ENOTTY ... and not just the closest absl
// code. Statuses made without it are mapped by code (see StatusToErrno).

#ifndef RAMDISKFS_STATUS_H_
#define RAMDISKFS_STATUS_H_

#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace ramdiskfs {

// A Status for `err` (an errno value) with `message` (strerror is not
// appended); keeps `err` exactly.
absl::Status ErrnoStatus(int err, std::string_view message);

// The errno a caller should see for `status`: the payload of ErrnoStatus if
// present, otherwise the table in docs/design.md ("Errors"). OK maps to 0.
int StatusToErrno(const absl::Status& status);

}  // namespace ramdiskfs

#define RDFS_STATUS_CONCAT_INNER_(a, b) a##b
#define RDFS_STATUS_CONCAT_(a, b) RDFS_STATUS_CONCAT_INNER_(a, b)

// Returns from the current function if `expr` (a Status) is not OK.
#define RDFS_RETURN_IF_ERROR(expr)               \
  do {                                           \
    ::absl::Status rdfs_status_ = (expr);        \
    if (!rdfs_status_.ok()) return rdfs_status_; \
  } while (0)

// `lhs = value of expr` (a StatusOr), or returns its error.
#define RDFS_ASSIGN_OR_RETURN(lhs, expr) \
  RDFS_ASSIGN_OR_RETURN_IMPL_(RDFS_STATUS_CONCAT_(rdfs_statusor_, __LINE__), lhs, expr)
#define RDFS_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                \
  if (!tmp.ok()) return tmp.status();               \
  lhs = std::move(tmp).value()

#endif  // RAMDISKFS_STATUS_H_
