#include "ramdiskfs/status.h"

#include <cerrno>
#include <string>

#include "absl/strings/numbers.h"

namespace ramdiskfs {
namespace {
constexpr absl::string_view kErrnoPayload = "ramdiskfs/errno";
}  // namespace

absl::Status ErrnoStatus(int err, std::string_view message) {
  // The message is kept as given (ErrnoToStatus would append strerror; the
  // FUSE edge and the logs print strerror themselves).
  absl::Status status(absl::ErrnoToStatusCode(err),
                      absl::string_view(message.data(), message.size()));
  status.SetPayload(kErrnoPayload, absl::Cord(std::to_string(err)));
  return status;
}

int StatusToErrno(const absl::Status& status) {
  if (status.ok()) return 0;
  if (auto payload = status.GetPayload(kErrnoPayload)) {
    int err = 0;
    if (absl::SimpleAtoi(std::string(*payload), &err) && err > 0) return err;
  }
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
      return EINVAL;
    case absl::StatusCode::kNotFound:
      return ENOENT;
    case absl::StatusCode::kAlreadyExists:
      return EEXIST;
    case absl::StatusCode::kResourceExhausted:
      return ENOSPC;
    case absl::StatusCode::kFailedPrecondition:
      return EBUSY;
    case absl::StatusCode::kPermissionDenied:
      return EPERM;
    case absl::StatusCode::kOutOfRange:
      return ENOSPC;
    case absl::StatusCode::kUnimplemented:
      return EOPNOTSUPP;
    case absl::StatusCode::kUnavailable:
      return EAGAIN;
    default:
      return EIO;
  }
}

}  // namespace ramdiskfs
