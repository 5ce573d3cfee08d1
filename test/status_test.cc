// The Status -> errno table of the FUSE edge, and the status macros.

#include "ramdiskfs/status.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/cord.h"
#include "absl/strings/string_view.h"

namespace ramdiskfs {
namespace {

TEST(StatusToErrnoTest, OkIsZero) {
  EXPECT_EQ(StatusToErrno(absl::OkStatus()), 0);
  EXPECT_EQ(StatusToErrno(absl::Status()), 0);
}

struct CodeCase {
  absl::StatusCode code;
  int err;
};

class StatusToErrnoCodeTest : public testing::TestWithParam<CodeCase> {};

TEST_P(StatusToErrnoCodeTest, MapsCode) {
  const absl::Status status(GetParam().code, "some message");
  EXPECT_EQ(StatusToErrno(status), GetParam().err)
      << absl::StatusCodeToString(GetParam().code) << " gave " << StatusToErrno(status);
}

INSTANTIATE_TEST_SUITE_P(Table, StatusToErrnoCodeTest,
                         testing::Values(CodeCase{absl::StatusCode::kInvalidArgument, EINVAL},
                                         CodeCase{absl::StatusCode::kNotFound, ENOENT},
                                         CodeCase{absl::StatusCode::kAlreadyExists, EEXIST},
                                         CodeCase{absl::StatusCode::kResourceExhausted, ENOSPC},
                                         CodeCase{absl::StatusCode::kFailedPrecondition, EBUSY},
                                         CodeCase{absl::StatusCode::kPermissionDenied, EPERM},
                                         CodeCase{absl::StatusCode::kUnimplemented, EOPNOTSUPP},
                                         // Everything else is EIO.
                                         CodeCase{absl::StatusCode::kUnknown, EIO},
                                         CodeCase{absl::StatusCode::kInternal, EIO},
                                         CodeCase{absl::StatusCode::kDataLoss, EIO},
                                         CodeCase{absl::StatusCode::kAborted, EIO},
                                         CodeCase{absl::StatusCode::kCancelled, EIO},
                                         CodeCase{absl::StatusCode::kDeadlineExceeded, EIO},
                                         CodeCase{absl::StatusCode::kUnauthenticated, EIO}));

// status.cc maps these two explicitly (beyond "others -> EIO"): OutOfRange is
// a write past the end of a disk, Unavailable a retryable condition. Keep in
// sync with the errno table in docs/design.md.
INSTANTIATE_TEST_SUITE_P(Explicit, StatusToErrnoCodeTest,
                         testing::Values(CodeCase{absl::StatusCode::kOutOfRange, ENOSPC},
                                         CodeCase{absl::StatusCode::kUnavailable, EAGAIN}));

class ErrnoStatusTest : public testing::TestWithParam<int> {};

TEST_P(ErrnoStatusTest, KeepsErrnoExactly) {
  const int err = GetParam();
  const absl::Status status = ErrnoStatus(err, "open(\"/x\")");
  EXPECT_FALSE(status.ok());
  EXPECT_EQ(StatusToErrno(status), err) << strerror(err);
  EXPECT_NE(std::string(status.message()).find("open(\"/x\")"), std::string::npos)
      << status.message();
}

INSTANTIATE_TEST_SUITE_P(Errnos, ErrnoStatusTest,
                         testing::Values(EROFS, ENAMETOOLONG, EBUSY, ENOTTY, ENOSPC, EEXIST, ENOENT,
                                         EINVAL, EIO, EAGAIN, EPERM, EACCES, EXDEV, EFBIG,
                                         EOVERFLOW, EOPNOTSUPP, EMFILE, ENOMEM, EFAULT, ENODEV));

// The payload is what makes ErrnoStatus useful: for these errnos the absl
// code alone would map to a different errno.
TEST(ErrnoStatusTest, PayloadWinsOverCode) {
  for (int err : {EROFS, ENAMETOOLONG, ENOTTY, EACCES, EFBIG, EXDEV}) {
    const absl::Status status = ErrnoStatus(err, "x");
    const absl::Status code_only(status.code(), status.message());
    EXPECT_NE(StatusToErrno(code_only), err) << strerror(err) << ": test proves nothing";
    EXPECT_EQ(StatusToErrno(status), err) << strerror(err);
  }
}

TEST(ErrnoStatusTest, NameTooLongIsNotEinval) {
  const absl::Status status = ErrnoStatus(ENAMETOOLONG, "name");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(StatusToErrno(status), ENAMETOOLONG);
}

// Copies every payload of `from` onto `to`.
absl::Status WithPayloadsOf(absl::Status to, const absl::Status& from) {
  from.ForEachPayload(
      [&to](absl::string_view url, const absl::Cord& payload) { to.SetPayload(url, payload); });
  return to;
}

TEST(ErrnoStatusTest, PayloadSurvivesRewrapping) {
  // A caller that adds context to a status must keep the payload, and then
  // the errno survives even a different code.
  const absl::Status rewrapped =
      WithPayloadsOf(absl::NotFoundError("new: ram0"), ErrnoStatus(EROFS, "x"));
  EXPECT_EQ(StatusToErrno(rewrapped), EROFS);
}

TEST(ErrnoStatusTest, BadPayloadFallsBackToCode) {
  const absl::Status original = ErrnoStatus(EROFS, "x");
  for (const char* garbage : {"", "abc", "0", "-5", "12x", "99999999999999999999"}) {
    absl::Status status = absl::NotFoundError("y");
    original.ForEachPayload([&](absl::string_view url, const absl::Cord&) {
      status.SetPayload(url, absl::Cord(garbage));
    });
    EXPECT_EQ(StatusToErrno(status), ENOENT) << "payload '" << garbage << "'";
  }
}

// ---- macros -------------------------------------------------------------------

absl::Status ReturnIfError(const absl::Status& inner, bool* reached_end) {
  RDFS_RETURN_IF_ERROR(inner);
  *reached_end = true;
  return absl::OkStatus();
}

TEST(StatusMacrosTest, ReturnIfError) {
  bool reached_end = false;
  EXPECT_TRUE(ReturnIfError(absl::OkStatus(), &reached_end).ok());
  EXPECT_TRUE(reached_end);

  reached_end = false;
  const absl::Status error = ErrnoStatus(EBUSY, "busy");
  const absl::Status returned = ReturnIfError(error, &reached_end);
  EXPECT_FALSE(reached_end);
  EXPECT_EQ(returned, error);
  EXPECT_EQ(StatusToErrno(returned), EBUSY);
}

absl::StatusOr<std::string> Twice(absl::StatusOr<std::string> in) {
  RDFS_ASSIGN_OR_RETURN(std::string value, std::move(in));
  RDFS_ASSIGN_OR_RETURN(const std::string again, absl::StatusOr<std::string>(value));
  return value + again;
}

TEST(StatusMacrosTest, AssignOrReturn) {
  absl::StatusOr<std::string> ok = Twice(std::string("ab"));
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(*ok, "abab");

  absl::StatusOr<std::string> error = Twice(ErrnoStatus(EROFS, "ro"));
  ASSERT_FALSE(error.ok());
  EXPECT_EQ(StatusToErrno(error.status()), EROFS);
}

}  // namespace
}  // namespace ramdiskfs
