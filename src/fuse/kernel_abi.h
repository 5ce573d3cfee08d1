// The parts of the FUSE kernel ABI (include/uapi/linux/fuse.h, protocol 7.45
// in Linux 6.18) that libfuse 3.14 does not expose: passthrough, the INIT
// reply's flags2/max_stack_depth, and the OPEN reply's backing_id. Written
// out here, with their sizes checked, because the Debian 12 kernel headers
// (6.1) predate them. docs/design.md ("Data modes") says what each is for.

#ifndef RAMDISKFS_FUSE_KERNEL_ABI_H_
#define RAMDISKFS_FUSE_KERNEL_ABI_H_

#include <sys/ioctl.h>

#include <cstdint>

namespace ramdiskfs::abi {

inline constexpr uint32_t kOpRead = 15;
inline constexpr uint32_t kOpWrite = 16;
inline constexpr uint32_t kOpFsync = 20;
inline constexpr uint32_t kOpInit = 26;

// INIT flags (low word) and flags2 (high word, valid with kInitExt).
inline constexpr uint32_t kWritebackCache = 1u << 16;
inline constexpr uint32_t kMaxPages = 1u << 22;
inline constexpr uint32_t kInitExt = 1u << 30;
inline constexpr uint32_t kFlags2DirectIoAllowMmap = 1u << (36 - 32);
inline constexpr uint32_t kFlags2Passthrough = 1u << (37 - 32);
inline constexpr uint32_t kFlags2OverIoUring = 1u << (41 - 32);

// OPEN reply flags.
inline constexpr uint32_t kOpenDirectIo = 1u << 0;
inline constexpr uint32_t kOpenKeepCache = 1u << 1;
inline constexpr uint32_t kOpenParallelDirectWrites = 1u << 6;
inline constexpr uint32_t kOpenPassthrough = 1u << 7;

struct InHeader {
  uint32_t len;
  uint32_t opcode;
  uint64_t unique;
  uint64_t nodeid;
  uint32_t uid;
  uint32_t gid;
  uint32_t pid;
  uint16_t total_extlen;
  uint16_t padding;
};
static_assert(sizeof(InHeader) == 40);

// FUSE_NOTIFY_RESEND (Linux 6.9): written by a new server as a notification
// (unique 0, error = the code), it puts every request the connection sent
// and did not get a reply for back on the pending list, each with
// kUniqueResend set in its unique (fs/fuse/dev.c, fuse_resend). A reply
// must carry that unique as it came: fuse_request_find matches it whole.
inline constexpr int32_t kNotifyResend = 7;
inline constexpr uint64_t kUniqueResend = 1ULL << 63;

struct OutHeader {
  uint32_t len;
  int32_t error;
  uint64_t unique;
};
static_assert(sizeof(OutHeader) == 16);

struct InitIn {
  uint32_t major;
  uint32_t minor;
  uint32_t max_readahead;
  uint32_t flags;
  uint32_t flags2;
  uint32_t unused[11];
};
static_assert(sizeof(InitIn) == 64);

struct InitOut {
  uint32_t major;
  uint32_t minor;
  uint32_t max_readahead;
  uint32_t flags;
  uint16_t max_background;
  uint16_t congestion_threshold;
  uint32_t max_write;
  uint32_t time_gran;
  uint16_t max_pages;
  uint16_t map_alignment;
  uint32_t flags2;
  uint32_t max_stack_depth;
  uint16_t request_timeout;
  uint16_t unused[11];
};
static_assert(sizeof(InitOut) == 64);

struct OpenOut {
  uint64_t fh;
  uint32_t open_flags;
  int32_t backing_id;
};
static_assert(sizeof(OpenOut) == 16);

struct Attr {
  uint64_t ino;
  uint64_t size;
  uint64_t blocks;
  uint64_t atime;
  uint64_t mtime;
  uint64_t ctime;
  uint32_t atimensec;
  uint32_t mtimensec;
  uint32_t ctimensec;
  uint32_t mode;
  uint32_t nlink;
  uint32_t uid;
  uint32_t gid;
  uint32_t rdev;
  uint32_t blksize;
  uint32_t flags;
};
static_assert(sizeof(Attr) == 88);

struct EntryOut {
  uint64_t nodeid;
  uint64_t generation;
  uint64_t entry_valid;
  uint64_t attr_valid;
  uint32_t entry_valid_nsec;
  uint32_t attr_valid_nsec;
  Attr attr;
};
static_assert(sizeof(EntryOut) == 128);

struct BackingMap {
  int32_t fd;
  uint32_t flags;
  uint64_t padding;
};
static_assert(sizeof(BackingMap) == 16);

inline constexpr unsigned long kDevIocBackingOpen = _IOW(229, 1, BackingMap);
inline constexpr unsigned long kDevIocBackingClose = _IOW(229, 2, uint32_t);
static_assert(kDevIocBackingOpen == 0x4010e501);
static_assert(kDevIocBackingClose == 0x4004e502);

// FUSE over io_uring (protocol 7.42, Linux 6.14; FUSE-FACTS.md sections 0
// and 3). Each ring entry gives the kernel two buffers: a RingHeader (iov[0])
// and a payload buffer (iov[1]) of at least max(8192, max_write,
// max_pages * 4096) bytes.
struct RingEntInOut {
  uint64_t flags;
  uint64_t commit_id;   // the request's unique; echoed in RingCmdReq to commit
  uint32_t payload_sz;  // request: bytes of args after the first; reply: bytes of out-args
  uint32_t padding;
  uint64_t reserved;
};
static_assert(sizeof(RingEntInOut) == 32);

struct RingHeader {
  char in_out[128];  // fuse_in_header from the kernel, fuse_out_header to it
  char op_in[128];   // the first in-arg (the per-opcode header); may be empty
  RingEntInOut ring_ent_in_out;
};
static_assert(sizeof(RingHeader) == 288);

// In the 80-byte command area of an IORING_SETUP_SQE128 SQE.
struct RingCmdReq {
  uint64_t flags;
  uint64_t commit_id;
  uint16_t qid;
  uint8_t padding[6];
};
static_assert(sizeof(RingCmdReq) == 24);

inline constexpr uint32_t kRingCmdRegister = 1;
inline constexpr uint32_t kRingCmdCommitAndFetch = 2;

// Block ioctls (include/uapi/linux/fs.h).
inline constexpr unsigned int kBlkGetSize64 = 0x80081272;  // _IOR(0x12,114,size_t)
inline constexpr unsigned int kBlkBszGet = 0x80081270;     // _IOR(0x12,112,size_t)
inline constexpr unsigned int kBlkFlsBuf = 0x1261;         // _IO(0x12,97)

}  // namespace ramdiskfs::abi

#endif  // RAMDISKFS_FUSE_KERNEL_ABI_H_
