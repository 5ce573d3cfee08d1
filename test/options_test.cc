#include "ramdiskfs/options.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "ramdiskfs/size.h"
#include "ramdiskfs/status.h"

namespace ramdiskfs {
namespace {

using std::string_literals::operator""s;

constexpr uint64_t MiB = 1ULL << 20, GiB = 1ULL << 30;

// ParseCommandLine with "ramdiskfs" as argv[0].
absl::StatusOr<Config> Parse(std::vector<std::string> args) {
  args.insert(args.begin(), "ramdiskfs");
  return ParseCommandLine(args);
}

std::string Join(const std::vector<std::string>& args) {
  std::string out;
  for (const std::string& arg : args) out += (out.empty() ? "" : " ") + arg;
  return out;
}

std::vector<std::string> Names(const Config& config) {
  std::vector<std::string> names;
  for (const DiskSpec& disk : config.disks) names.push_back(disk.name);
  return names;
}

// ---- DataMode / StoreKind ----------------------------------------------------------

TEST(DataModeTest, NamesRoundTrip) {
  for (DataMode mode : {DataMode::kDax, DataMode::kDirect, DataMode::kCached, DataMode::kNull}) {
    absl::StatusOr<DataMode> parsed = ParseDataMode(DataModeName(mode));
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, mode);
  }
  EXPECT_EQ(DataModeName(DataMode::kDax), "dax");
  EXPECT_EQ(DataModeName(DataMode::kDirect), "direct");
  EXPECT_EQ(DataModeName(DataMode::kCached), "cached");
  EXPECT_EQ(DataModeName(DataMode::kNull), "null");
}

TEST(DataModeTest, RejectsAnythingElse) {
  for (std::string text :
       {"", "DAX", "Direct", "dax ", " dax", "directx", "dir", "none", "0", "null\n"}) {
    absl::StatusOr<DataMode> parsed = ParseDataMode(text);
    ASSERT_FALSE(parsed.ok()) << "'" << text << "'";
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(std::string(parsed.status().message()).find('\n'), std::string::npos);
  }
  EXPECT_EQ(ParseDataMode("fast").status().message(),
            "bad mode 'fast': expected dax, direct, cached or null");
}

TEST(StoreKindTest, Names) {
  EXPECT_EQ(StoreKindName(StoreKind::kAuto), "auto");
  EXPECT_EQ(StoreKindName(StoreKind::kTmpfs), "tmpfs");
  EXPECT_EQ(StoreKindName(StoreKind::kMemfd), "memfd");
}

// ---- ValidateDiskName -------------------------------------------------------------

TEST(ValidateDiskNameTest, Accepts) {
  for (std::string name : {"ram0", "a", "Z", "0", "9lives", "A-b_c.d+e@f", "x.", "a..b", "ram0.img",
                           "disk_1", "user@host", "x-", "x+", "_", "@", "+"}) {
    EXPECT_TRUE(ValidateDiskName(name).ok()) << "'" << name << "': " << ValidateDiskName(name);
  }
  EXPECT_TRUE(ValidateDiskName(std::string(255, 'a')).ok());
  EXPECT_TRUE(ValidateDiskName("a" + std::string(254, '.')).ok());
}

TEST(ValidateDiskNameTest, RejectsWithEinval) {
  for (std::string name : {""s,
                           "."s,
                           ".."s,
                           ".control"s,
                           ".hidden"s,
                           "-x"s,
                           "--disk"s,
                           "-"s,
                           "a/b"s,
                           "/"s,
                           "../x"s,
                           "a b"s,
                           " a"s,
                           "a\t"s,
                           "a\0b"s,
                           "a:b"s,
                           "a,b"s,
                           "a=b"s,
                           "a*"s,
                           "a?"s,
                           "a\\b"s,
                           "a\nb"s,
                           "\xc3\xa9t\xc3\xa9"s,
                           "a'b"s,
                           "a\"b"s,
                           "$x"s,
                           "a~"s,
                           "~"s}) {
    const absl::Status status = ValidateDiskName(name);
    ASSERT_FALSE(status.ok()) << "'" << name << "'";
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
    EXPECT_EQ(StatusToErrno(status), EINVAL) << status;
    EXPECT_EQ(std::string(status.message()).find('\n'), std::string::npos) << status;
    EXPECT_EQ(std::string(status.message()).rfind("bad disk name '", 0), 0u) << status;
  }
}

TEST(ValidateDiskNameTest, Messages) {
  EXPECT_EQ(ValidateDiskName("").message(), "bad disk name '': empty");
  EXPECT_EQ(ValidateDiskName("..").message(), "bad disk name '..': must not start with '.'");
  EXPECT_EQ(ValidateDiskName("-o").message(), "bad disk name '-o': must not start with '-'");
  EXPECT_NE(std::string(ValidateDiskName("a/b").message()).find("character '/' not allowed"),
            std::string::npos)
      << ValidateDiskName("a/b");
  EXPECT_NE(std::string(ValidateDiskName("a\nb").message()).find("'a\\nb'"), std::string::npos)
      << ValidateDiskName("a\nb");
}

TEST(ValidateDiskNameTest, TooLongIsEnametoolong) {
  for (size_t length : {256, 257, 1000, 100000}) {
    const absl::Status status = ValidateDiskName(std::string(length, 'a'));
    ASSERT_FALSE(status.ok()) << length;
    EXPECT_EQ(StatusToErrno(status), ENAMETOOLONG) << status;
    EXPECT_NE(std::string(status.message()).find("longer than 255 bytes"), std::string::npos)
        << status;
    EXPECT_LT(status.message().size(), 400u);  // the name is cut in the message
  }
}

// ---- ParseCommandLine: success -----------------------------------------------------

TEST(ParseCommandLineTest, Defaults) {
  absl::StatusOr<Config> config = Parse({"/mnt/rd"});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->mountpoint, "/mnt/rd");
  ASSERT_EQ(config->disks.size(), static_cast<size_t>(kDefaultDiskCount));
  EXPECT_EQ(config->disks[0].name, "ram0");
  EXPECT_EQ(config->disks[0].size_bytes, kDefaultDiskSize);
  EXPECT_FALSE(config->disks[0].mode.has_value());
  EXPECT_FALSE(config->disks[0].image_path.has_value());
  EXPECT_FALSE(config->disks[0].readonly);
  EXPECT_FALSE(config->max_memory_bytes.has_value());
  EXPECT_FALSE(config->default_mode.has_value());
  EXPECT_EQ(config->store, StoreKind::kAuto);
  EXPECT_EQ(config->max_threads, 8);
  EXPECT_FALSE(config->foreground);
  EXPECT_FALSE(config->debug);
  EXPECT_FALSE(config->single_threaded);
  EXPECT_FALSE(config->allow_other);
  EXPECT_FALSE(config->show_help);
  EXPECT_FALSE(config->show_version);
  EXPECT_TRUE(config->fuse_options.empty());
}

TEST(ParseCommandLineTest, SourceIsRecorded) {
  for (std::string source : {"none", "ramdiskfs", "/dev/null"}) {
    absl::StatusOr<Config> config = Parse({source, "/mnt/rd"});
    ASSERT_TRUE(config.ok()) << config.status();
    EXPECT_EQ(config->mountpoint, "/mnt/rd");
    EXPECT_EQ(config->source, source);
  }
  absl::StatusOr<Config> config = Parse({"/mnt/rd"});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->source, "ramdiskfs");
  EXPECT_FALSE(Parse({"a,b", "/mnt/rd"}).ok());  // would split libfuse's option list
  EXPECT_FALSE(Parse({"", "/mnt/rd"}).ok());
}

TEST(ParseCommandLineTest, ReadOnlyMount) {
  absl::StatusOr<Config> config = Parse({"none", "/mnt/rd", "-o", "rw,ro,disks=2"});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_TRUE(config->readonly);
  // ro is the daemon's (every disk read-only), not the kernel's: the control
  // tree stays writable.
  EXPECT_EQ(config->fuse_options, (std::vector<std::string>{"rw"}));
  config = Parse({"/mnt/rd", "-o", "ro", "-o", "rw"});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_FALSE(config->readonly);
}

TEST(ParseCommandLineTest, PercentOfRamAndFractions) {
  absl::StatusOr<Config> config =
      ParseCommandLine({"ramdiskfs", "/mnt/rd", "-o", "max_memory=50%,disks=1,size=1.5G"}, 8 * GiB);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->max_memory_bytes, 4 * GiB);
  EXPECT_EQ(config->disks[0].size_bytes, 3 * GiB / 2);
  config = ParseCommandLine({"ramdiskfs", "/mnt/rd", "--disk", "a:10%", "--max-memory", "25%"},
                            1000 * 4096);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->disks[0].size_bytes, 409600u);  // 10% of RAM, a multiple of 512 here
  EXPECT_EQ(config->max_memory_bytes, 250u * 4096);
  // Without knowing RAM (the pure default), a percentage is an error.
  EXPECT_FALSE(Parse({"/mnt/rd", "--max-memory", "50%"}).ok());
  EXPECT_FALSE(ParseCommandLine({"ramdiskfs", "/mnt/rd", "--max-memory", "0%"}, GiB).ok());
  EXPECT_FALSE(ParseCommandLine({"ramdiskfs", "/mnt/rd", "--max-memory", "101%"}, GiB).ok());
}

TEST(ParseCommandLineTest, OptionsAnywhere) {
  for (std::vector<std::string> args : {std::vector<std::string>{"--disks", "2", "/mnt/rd"},
                                        std::vector<std::string>{"/mnt/rd", "--disks", "2"},
                                        std::vector<std::string>{"none", "--disks", "2", "/mnt/rd"},
                                        std::vector<std::string>{"--disks=2", "none", "/mnt/rd"}}) {
    absl::StatusOr<Config> config = Parse(args);
    ASSERT_TRUE(config.ok()) << Join(args) << ": " << config.status();
    EXPECT_EQ(config->mountpoint, "/mnt/rd") << Join(args);
    EXPECT_EQ(config->disks.size(), 2u) << Join(args);
  }
}

TEST(ParseCommandLineTest, DoubleDashEndsOptions) {
  absl::StatusOr<Config> config = Parse({"-f", "--", "-weird"});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->mountpoint, "-weird");
  EXPECT_TRUE(config->foreground);

  config = Parse({"--", "none", "--disks"});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->mountpoint, "--disks");
}

TEST(ParseCommandLineTest, LoneDashIsPositional) {
  absl::StatusOr<Config> config = Parse({"-"});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->mountpoint, "-");
}

TEST(ParseCommandLineTest, DisksAndSize) {
  absl::StatusOr<Config> config = Parse({"/mnt/rd", "--disks", "3", "--size", "64M"});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(Names(*config), (std::vector<std::string>{"ram0", "ram1", "ram2"}));
  for (const DiskSpec& disk : config->disks) EXPECT_EQ(disk.size_bytes, 64 * MiB);
}

TEST(ParseCommandLineTest, DisksWithoutSizeUseDefaultSize) {
  absl::StatusOr<Config> config = Parse({"/mnt/rd", "--disks=2"});
  ASSERT_TRUE(config.ok()) << config.status();
  ASSERT_EQ(config->disks.size(), 2u);
  for (const DiskSpec& disk : config->disks) EXPECT_EQ(disk.size_bytes, kDefaultDiskSize);
}

TEST(ParseCommandLineTest, SizeAloneSizesTheDefaultDisks) {
  absl::StatusOr<Config> config = Parse({"/mnt/rd", "--size", "1000"});
  ASSERT_TRUE(config.ok()) << config.status();
  ASSERT_EQ(config->disks.size(), static_cast<size_t>(kDefaultDiskCount));
  EXPECT_EQ(config->disks[0].name, "ram0");
  EXPECT_EQ(config->disks[0].size_bytes, 1024u);  // rounded up to 512
}

TEST(ParseCommandLineTest, MaxDisks) {
  absl::StatusOr<Config> config = Parse({"/mnt/rd", "--disks", "4096"});
  ASSERT_TRUE(config.ok()) << config.status();
  ASSERT_EQ(config->disks.size(), 4096u);
  EXPECT_EQ(config->disks.back().name, "ram4095");
}

TEST(ParseCommandLineTest, Disk) {
  absl::StatusOr<Config> config =
      Parse({"/mnt/rd", "--disk", "ram0:1G:mode=direct", "--disk=b:1000:readonly=1:mode=null",
             "--disk", "c:2M:readonly=0"});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(Names(*config), (std::vector<std::string>{"ram0", "b", "c"}));
  EXPECT_EQ(config->disks[0].size_bytes, GiB);
  EXPECT_EQ(config->disks[0].mode, DataMode::kDirect);
  EXPECT_FALSE(config->disks[0].readonly);
  EXPECT_EQ(config->disks[1].size_bytes, 1024u);
  EXPECT_EQ(config->disks[1].mode, DataMode::kNull);
  EXPECT_TRUE(config->disks[1].readonly);
  EXPECT_EQ(config->disks[2].size_bytes, 2 * MiB);
  EXPECT_FALSE(config->disks[2].mode.has_value());
  EXPECT_FALSE(config->disks[2].readonly);
  for (const DiskSpec& disk : config->disks) EXPECT_FALSE(disk.image_path.has_value());
}

TEST(ParseCommandLineTest, DiskModes) {
  for (DataMode mode : {DataMode::kDax, DataMode::kDirect, DataMode::kCached, DataMode::kNull}) {
    absl::StatusOr<Config> config =
        Parse({"/mnt", "--disk", "x:1M:mode=" + std::string(DataModeName(mode))});
    ASSERT_TRUE(config.ok()) << config.status();
    EXPECT_EQ(config->disks[0].mode, mode);
  }
}

TEST(ParseCommandLineTest, DiskImage) {
  absl::StatusOr<Config> config = Parse({"/mnt", "--disk", "boot::image=/srv/root.erofs", "--disk",
                                         "x:1G:image=rel/x.img:readonly=1"});
  ASSERT_TRUE(config.ok()) << config.status();
  ASSERT_EQ(config->disks.size(), 2u);
  EXPECT_FALSE(config->disks[0].size_bytes.has_value());
  EXPECT_EQ(config->disks[0].image_path, "/srv/root.erofs");
  EXPECT_EQ(config->disks[1].size_bytes, GiB);
  EXPECT_EQ(config->disks[1].image_path, "rel/x.img");
  EXPECT_TRUE(config->disks[1].readonly);
}

TEST(ParseCommandLineTest, DiskThenDisks) {
  absl::StatusOr<Config> config =
      Parse({"/mnt", "--disks", "2", "--disk", "big:4G", "--size", "8M", "--disk", "z:1M"});
  ASSERT_TRUE(config.ok()) << config.status();
  // Explicit disks first, in order; then the --disks set.
  EXPECT_EQ(Names(*config), (std::vector<std::string>{"big", "z", "ram0", "ram1"}));
  EXPECT_EQ(config->disks[0].size_bytes, 4 * GiB);
  EXPECT_EQ(config->disks[1].size_bytes, MiB);
  EXPECT_EQ(config->disks[2].size_bytes, 8 * MiB);
  EXPECT_EQ(config->disks[3].size_bytes, 8 * MiB);
}

TEST(ParseCommandLineTest, DiskAloneMakesNoDefaultDisks) {
  absl::StatusOr<Config> config = Parse({"/mnt", "--disk", "only:1M"});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(Names(*config), (std::vector<std::string>{"only"}));
}

TEST(ParseCommandLineTest, DiskMayTakeADefaultName) {
  absl::StatusOr<Config> config = Parse({"/mnt", "--disk", "ram0:1M"});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(Names(*config), (std::vector<std::string>{"ram0"}));
}

TEST(ParseCommandLineTest, LastScalarWins) {
  absl::StatusOr<Config> config =
      Parse({"/mnt",    "--size",       "1G",        "--size=2G", "--disks",
             "5",       "--disks",      "1",         "--mode",    "dax",
             "--mode",  "null",         "--threads", "2",         "--threads=3",
             "--store", "tmpfs",        "--store",   "memfd",     "--max-memory",
             "1G",      "--max-memory", "2G"});
  ASSERT_TRUE(config.ok()) << config.status();
  ASSERT_EQ(config->disks.size(), 1u);
  EXPECT_EQ(config->disks[0].size_bytes, 2 * GiB);
  EXPECT_EQ(config->default_mode, DataMode::kNull);
  EXPECT_EQ(config->max_threads, 3);
  EXPECT_EQ(config->store, StoreKind::kMemfd);
  EXPECT_EQ(config->max_memory_bytes, 2 * GiB);
}

TEST(ParseCommandLineTest, MaxMemoryRoundsUpToAPage) {
  struct Case {
    std::string text;
    uint64_t bytes;
  };
  for (const Case& c : {Case{"1", 4096}, Case{"4096", 4096}, Case{"4097", 8192}, Case{"1G", GiB},
                        Case{"18446744073709547520", 18446744073709547520ULL}}) {
    absl::StatusOr<Config> config = Parse({"/mnt", "--max-memory", c.text});
    ASSERT_TRUE(config.ok()) << c.text << ": " << config.status();
    EXPECT_EQ(config->max_memory_bytes, c.bytes) << c.text;
  }
}

TEST(ParseCommandLineTest, ModeStoreThreads) {
  absl::StatusOr<Config> config =
      Parse({"/mnt", "--mode=cached", "--store", "tmpfs", "--threads", "64"});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->default_mode, DataMode::kCached);
  EXPECT_EQ(config->store, StoreKind::kTmpfs);
  EXPECT_EQ(config->max_threads, 64);

  config = Parse({"/mnt", "--store=auto", "--threads=1"});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->store, StoreKind::kAuto);
  EXPECT_EQ(config->max_threads, 1);
}

TEST(TransportTest, NamesRoundTrip) {
  EXPECT_EQ(TransportName(Transport::kAuto), "auto");
  EXPECT_EQ(TransportName(Transport::kUring), "uring");
  EXPECT_EQ(TransportName(Transport::kDev), "dev");
  for (Transport t : {Transport::kAuto, Transport::kUring, Transport::kDev}) {
    absl::StatusOr<Transport> parsed = ParseTransport(TransportName(t));
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, t);
  }
  for (const char* bad : {"", "URING", "io_uring", "fuse", "dev "}) {
    absl::StatusOr<Transport> parsed = ParseTransport(bad);
    ASSERT_FALSE(parsed.ok()) << bad;
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
  }
}

TEST(ParseCommandLineTest, TransportAndUringDepth) {
  absl::StatusOr<Config> config = Parse({"/mnt"});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->transport, Transport::kAuto);
  EXPECT_EQ(config->uring_depth, kDefaultUringDepth);
  EXPECT_EQ(config->uring_threads, kDefaultUringThreads);
  EXPECT_EQ(config->uring_poll_us, kDefaultUringPollUs);

  config = Parse({"/mnt", "--transport", "uring", "--uring-depth", "4", "--uring-poll-us", "0",
                  "--uring-threads", "1"});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->transport, Transport::kUring);
  EXPECT_EQ(config->uring_depth, 4);
  EXPECT_EQ(config->uring_threads, 1);
  EXPECT_EQ(config->uring_poll_us, 0);

  config = Parse({"/mnt", "--transport=uring", "-o",
                  "transport=dev,uring_depth=64,uring_poll_us=1000,uring_threads=64"});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->transport, Transport::kDev);  // the last one wins
  EXPECT_EQ(config->uring_depth, kMaxUringDepth);
  EXPECT_EQ(config->uring_threads, kMaxUringDepth);
  EXPECT_EQ(config->uring_poll_us, kMaxUringPollUs);
  EXPECT_TRUE(config->fuse_options.empty()) << "transport= is ours, not libfuse's";

  config = Parse({"/mnt", "-o", "uring-depth=1", "--transport=auto"});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->transport, Transport::kAuto);
  EXPECT_EQ(config->uring_depth, 1);
}

TEST(ParseCommandLineTest, ShortFlags) {
  absl::StatusOr<Config> config = Parse({"/mnt", "-f"});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_TRUE(config->foreground);
  EXPECT_FALSE(config->debug);
  EXPECT_FALSE(config->single_threaded);

  config = Parse({"/mnt", "-d"});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_TRUE(config->debug);
  EXPECT_TRUE(config->foreground);  // -d implies -f

  config = Parse({"/mnt", "-s"});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_TRUE(config->single_threaded);
  EXPECT_FALSE(config->foreground);

  config = Parse({"-fs", "/mnt"});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_TRUE(config->foreground);
  EXPECT_TRUE(config->single_threaded);
}

TEST(ParseCommandLineTest, HelpAndVersionNeedNoMountpoint) {
  for (std::string flag : {"-h", "--help"}) {
    absl::StatusOr<Config> config = Parse({flag});
    ASSERT_TRUE(config.ok()) << flag << ": " << config.status();
    EXPECT_TRUE(config->show_help);
    EXPECT_FALSE(config->show_version);
  }
  for (std::string flag : {"-V", "--version"}) {
    absl::StatusOr<Config> config = Parse({flag});
    ASSERT_TRUE(config.ok()) << flag << ": " << config.status();
    EXPECT_TRUE(config->show_version);
    EXPECT_FALSE(config->show_help);
  }
  // Nor does a positional count matter.
  absl::StatusOr<Config> config = Parse({"a", "b", "c", "--help"});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_TRUE(config->show_help);
}

TEST(ParseCommandLineTest, HelpStillChecksOptions) {
  absl::StatusOr<Config> config = Parse({"--help", "--bogus"});
  EXPECT_FALSE(config.ok());
  config = Parse({"--disks", "0", "-h"});
  EXPECT_FALSE(config.ok());
}

TEST(ParseCommandLineTest, MountStyleDashO) {
  absl::StatusOr<Config> config =
      Parse({"none", "/mnt/rd", "-o", "rw,nosuid,disks=4,size=1G,dev,fsname=rd"});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->mountpoint, "/mnt/rd");
  EXPECT_EQ(Names(*config), (std::vector<std::string>{"ram0", "ram1", "ram2", "ram3"}));
  for (const DiskSpec& disk : config->disks) EXPECT_EQ(disk.size_bytes, GiB);
  EXPECT_EQ(config->fuse_options, (std::vector<std::string>{"rw", "nosuid", "dev", "fsname=rd"}));
  EXPECT_FALSE(config->allow_other);
}

TEST(ParseCommandLineTest, DashOOwnedKeys) {
  absl::StatusOr<Config> config =
      Parse({"/mnt", "-odisk=a:1M:mode=direct,disk=b::image=/x.img", "-o",
             "max_memory=1G,mode=null,store=memfd,threads=4", "-o", "max-memory=2G"});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(Names(*config), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(config->disks[0].mode, DataMode::kDirect);
  EXPECT_EQ(config->disks[1].image_path, "/x.img");
  EXPECT_EQ(config->max_memory_bytes, 2 * GiB);
  EXPECT_EQ(config->default_mode, DataMode::kNull);
  EXPECT_EQ(config->store, StoreKind::kMemfd);
  EXPECT_EQ(config->max_threads, 4);
  EXPECT_TRUE(config->fuse_options.empty());
}

TEST(ParseCommandLineTest, DashOAndLongOptionsMix) {
  absl::StatusOr<Config> config =
      Parse({"/mnt", "-o", "disk=a:1M", "--disk", "b:1M", "-o", "disk=c:1M"});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(Names(*config), (std::vector<std::string>{"a", "b", "c"}));
}

TEST(ParseCommandLineTest, AllowOther) {
  absl::StatusOr<Config> config =
      Parse({"/mnt", "-o", "allow_other,default_permissions", "-o", "suid"});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_TRUE(config->allow_other);
  EXPECT_EQ(config->fuse_options,
            (std::vector<std::string>{"allow_other", "default_permissions", "suid"}));

  config = Parse({"-fo", "allow_other", "/mnt"});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_TRUE(config->foreground);
  EXPECT_TRUE(config->allow_other);

  config = Parse({"-oallow_other", "/mnt"});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_TRUE(config->allow_other);
}

TEST(ParseCommandLineTest, DashOInAFlagGroup) {
  absl::StatusOr<Config> config = Parse({"-sfodisks=2,rw", "/mnt"});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_TRUE(config->single_threaded);
  EXPECT_TRUE(config->foreground);
  EXPECT_EQ(config->disks.size(), 2u);
  EXPECT_EQ(config->fuse_options, (std::vector<std::string>{"rw"}));
}

TEST(ParseCommandLineTest, ImagePathMayHoldEquals) {
  absl::StatusOr<Config> config = Parse({"/mnt", "--disk=x::image=/srv/a=b.img"});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->disks[0].image_path, "/srv/a=b.img");
}

TEST(ParseCommandLineTest, DashOSkipsEmptyItems) {
  absl::StatusOr<Config> config = Parse({"/mnt", "-o", ",rw,,dev,", "-o", ""});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->fuse_options, (std::vector<std::string>{"rw", "dev"}));
}

TEST(ParseCommandLineTest, DoesNotTouchFiles) {
  // An image path that does not exist is fine here: it is opened later.
  absl::StatusOr<Config> config =
      Parse({"/nonexistent/mnt", "--disk", "x::image=/nonexistent/image"});
  ASSERT_TRUE(config.ok()) << config.status();
}

// ---- ParseCommandLine: errors -------------------------------------------------------

struct BadArgs {
  std::vector<std::string> args;
  std::string message;  // a substring the error must contain
};

void PrintTo(const BadArgs& bad, std::ostream* os) { *os << "'" << Join(bad.args) << "'"; }

class ParseCommandLineBadTest : public testing::TestWithParam<BadArgs> {};

TEST_P(ParseCommandLineBadTest, Fails) {
  absl::StatusOr<Config> config = Parse(GetParam().args);
  ASSERT_FALSE(config.ok()) << Join(GetParam().args) << " parsed";
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  const std::string message(config.status().message());
  EXPECT_NE(message.find(GetParam().message), std::string::npos)
      << Join(GetParam().args) << "\n  got:  " << message << "\n  want: ..." << GetParam().message
      << "...";
  EXPECT_EQ(message.find('\n'), std::string::npos) << "not one line: " << message;
}

INSTANTIATE_TEST_SUITE_P(Positional, ParseCommandLineBadTest,
                         testing::Values(BadArgs{{}, "missing MOUNTPOINT"},
                                         BadArgs{{"-f"}, "missing MOUNTPOINT"},
                                         BadArgs{{"a", "b", "c"}, "unexpected argument 'c'"},
                                         BadArgs{{"a", "b", "--", "c"}, "unexpected argument 'c'"},
                                         BadArgs{{""}, "MOUNTPOINT '': empty"},
                                         BadArgs{{"none", ""}, "MOUNTPOINT '': empty"}));

INSTANTIATE_TEST_SUITE_P(
    Unknown, ParseCommandLineBadTest,
    testing::Values(BadArgs{{"/mnt", "--bogus"}, "unknown option '--bogus'"},
                    BadArgs{{"/mnt", "--bogus=1"}, "unknown option '--bogus'"},
                    BadArgs{{"/mnt", "--disk-size", "1G"}, "unknown option '--disk-size'"},
                    BadArgs{{"/mnt", "--allow-other"}, "unknown option '--allow-other'"},
                    BadArgs{{"/mnt", "--Disks", "2"}, "unknown option '--Disks'"},
                    BadArgs{{"/mnt", "--=1"}, "unknown option '--'"},
                    BadArgs{{"/mnt", "-x"}, "unknown option '-x'"},
                    BadArgs{{"/mnt", "-fx"}, "unknown option '-x'"},
                    BadArgs{{"/mnt", "-F"}, "unknown option '-F'"},
                    BadArgs{{"/mnt", "--help=yes"}, "--help: takes no value"},
                    BadArgs{{"/mnt", "--version=1"}, "--version: takes no value"}));

INSTANTIATE_TEST_SUITE_P(
    MissingValue, ParseCommandLineBadTest,
    testing::Values(BadArgs{{"/mnt", "--disk"}, "--disk: needs a value"},
                    BadArgs{{"/mnt", "--size"}, "--size: needs a value"},
                    BadArgs{{"/mnt", "--max-memory"}, "--max-memory: needs a value"},
                    BadArgs{{"/mnt", "-o"}, "-o: needs a value"},
                    BadArgs{{"/mnt", "-fo"}, "-o: needs a value"},
                    BadArgs{{"/mnt", "-o", "size"}, "-o 'size': needs a value"},
                    BadArgs{{"/mnt", "-o", "rw,disk"}, "-o 'disk': needs a value"},
                    BadArgs{{"/mnt", "--size", "--disks", "2"}, "--size '--disks': bad size"}));

INSTANTIATE_TEST_SUITE_P(
    DiskArgument, ParseCommandLineBadTest,
    testing::Values(
        BadArgs{{"/mnt", "--disk", "ram0:12Q"},
                "--disk 'ram0:12Q': bad size '12Q': unknown suffix 'Q'"},
        BadArgs{{"/mnt", "--disk=ram0:12Q"},
                "--disk 'ram0:12Q': bad size '12Q': unknown suffix 'Q'"},
        BadArgs{{"/mnt", "-o", "disk=ram0:12Q"},
                "-o 'disk=ram0:12Q': bad size '12Q': unknown suffix 'Q'"},
        BadArgs{{"/mnt", "--disk", "ram0"}, "--disk 'ram0': expected NAME:SIZE"},
        BadArgs{{"/mnt", "--disk", ""}, "--disk '': bad disk name '': empty"},
        BadArgs{{"/mnt", "--disk", ":1G"}, "--disk ':1G': bad disk name '': empty"},
        BadArgs{{"/mnt", "--disk", "ram0:"}, "--disk 'ram0:': missing SIZE"},
        BadArgs{{"/mnt", "--disk", "ram0::readonly=1"}, "missing SIZE"},
        BadArgs{{"/mnt", "--disk", "ram0:0"}, "--disk 'ram0:0': bad size '0': must be more than 0"},
        BadArgs{{"/mnt", "--disk", "ram0:-1G"}, "no sign"},
        BadArgs{{"/mnt", "--disk", "ram0:1.5"}, "a fraction needs a unit"},
        BadArgs{{"/mnt", "--disk", "ram0:9223372036854771713"}, "larger than the largest disk"},
        BadArgs{{"/mnt", "--disk", "../x:1G"}, "--disk '../x:1G': bad disk name '../x'"},
        BadArgs{{"/mnt", "--disk", ".control:1G"}, "bad disk name '.control'"},
        BadArgs{{"/mnt", "--disk", "a/b:1G"}, "bad disk name 'a/b'"},
        BadArgs{{"/mnt", "--disk", std::string(256, 'n') + ":1G"}, "longer than 255 bytes"},
        BadArgs{{"/mnt", "--disk", "a\nb:1G"}, "--disk 'a\\nb:1G'"},
        BadArgs{{"/mnt", "--disk", "ram0:1G:ro"}, "bad field 'ro': expected key=value"},
        BadArgs{{"/mnt", "--disk", "ram0:1G:"}, "bad field '': expected key=value"},
        BadArgs{{"/mnt", "--disk", "ram0:1G:size=2G"}, "unknown key 'size'"},
        BadArgs{{"/mnt", "--disk", "ram0:1G:=1"}, "unknown key ''"},
        BadArgs{{"/mnt", "--disk", "ram0:1G:Mode=dax"}, "unknown key 'Mode'"},
        BadArgs{{"/mnt", "--disk", "ram0:1G:mode=dax:mode=dax"}, "repeated key 'mode'"},
        BadArgs{{"/mnt", "--disk", "ram0:1G:readonly=0:readonly=1"}, "repeated key 'readonly'"},
        BadArgs{{"/mnt", "--disk", "r::image=/a:image=/b"}, "repeated key 'image'"},
        BadArgs{{"/mnt", "--disk", "ram0:1G:mode=fast"}, "bad mode 'fast'"},
        BadArgs{{"/mnt", "--disk", "ram0:1G:mode="}, "bad mode ''"},
        BadArgs{{"/mnt", "--disk", "ram0:1G:readonly=2"}, "bad readonly '2': expected 0 or 1"},
        BadArgs{{"/mnt", "--disk", "ram0:1G:readonly=yes"}, "bad readonly 'yes'"},
        BadArgs{{"/mnt", "--disk", "ram0:1G:readonly="}, "bad readonly ''"},
        BadArgs{{"/mnt", "--disk", "ram0::image="}, "image= needs a path"},
        BadArgs{{"/mnt", "--disk", "ram0:1G", "--disk", "ram0:2G"},
                "--disk 'ram0:2G': duplicate disk name 'ram0'"}));

INSTANTIATE_TEST_SUITE_P(
    DiskSets, ParseCommandLineBadTest,
    testing::Values(
        BadArgs{{"/mnt", "--disk", "ram0:1G", "--disks", "2"}, "duplicate disk name 'ram0'"},
        BadArgs{{"/mnt", "--disk", "ram1:1G", "-o", "disks=2"},
                "-o 'disks=2': duplicate disk name 'ram1'"},
        BadArgs{{"/mnt", "--disk", "a:1G", "--size", "2G"}, "--size '2G': sizes only"},
        BadArgs{{"/mnt", "--disks", "0"}, "--disks '0': bad count '0': must be 1..4096"},
        BadArgs{{"/mnt", "--disks", "4097"}, "--disks '4097': bad count '4097': must be 1..4096"},
        BadArgs{{"/mnt", "--disks", "99999999999999999999999"}, "bad count"},
        BadArgs{{"/mnt", "--disks", "abc"}, "--disks 'abc': bad count 'abc'"},
        BadArgs{{"/mnt", "-o", "disks=abc"}, "-o 'disks=abc': bad count 'abc'"},
        BadArgs{{"/mnt", "--disks", ""}, "--disks '': bad count ''"},
        BadArgs{{"/mnt", "--disks", "-1"}, "bad count '-1'"},
        BadArgs{{"/mnt", "--disks", "+1"}, "bad count '+1'"},
        BadArgs{{"/mnt", "--disks", " 1"}, "bad count ' 1'"},
        BadArgs{{"/mnt", "--disks", "1K"}, "bad count '1K'"},
        BadArgs{{"/mnt", "--disks", "0x10"}, "bad count '0x10'"},
        BadArgs{{"/mnt", "--disks", "4096", "--disk", "x:1M"}, "too many disks (at most 4096)"},
        BadArgs{{"/mnt", "--size", "0"}, "--size '0': bad size '0': must be more than 0"},
        BadArgs{{"/mnt", "--size", "12Q"}, "--size '12Q': bad size '12Q': unknown suffix 'Q'"},
        BadArgs{{"/mnt", "--size", "8E"}, "unknown suffix 'E'"},
        BadArgs{{"/mnt", "--size", "8192P"}, "larger than the largest disk"},
        BadArgs{{"/mnt", "-o", "size=1 G"}, "-o 'size=1 G': bad size '1 G': no spaces"}));

INSTANTIATE_TEST_SUITE_P(
    Scalars, ParseCommandLineBadTest,
    testing::Values(
        BadArgs{{"/mnt", "--max-memory", "0"}, "--max-memory '0': bad size '0': must be at least"},
        BadArgs{{"/mnt", "--max-memory", "18446744073709551615"}, "too large to round up"},
        BadArgs{{"/mnt", "--max-memory", "1,5G"}, "use '.' for a fraction"},
        BadArgs{{"/mnt", "-o", "max_memory=x"}, "-o 'max_memory=x': bad size 'x'"},
        BadArgs{{"/mnt", "--mode", "fast"}, "--mode 'fast': bad mode 'fast'"},
        BadArgs{{"/mnt", "--mode", "DAX"}, "bad mode 'DAX'"},
        BadArgs{{"/mnt", "-o", "mode="}, "-o 'mode=': bad mode ''"},
        BadArgs{{"/mnt", "--store", "ram"},
                "--store 'ram': bad store 'ram': expected auto, tmpfs or memfd"},
        BadArgs{{"/mnt", "--threads", "0"}, "--threads '0': bad thread count '0': must be 1..64"},
        BadArgs{{"/mnt", "--threads", "65"}, "must be 1..64"},
        BadArgs{{"/mnt", "--threads", "-1"}, "bad thread count '-1'"},
        BadArgs{{"/mnt", "--threads", "four"}, "bad thread count 'four'"},
        BadArgs{{"/mnt", "-o", "threads=8x"}, "-o 'threads=8x': bad thread count '8x'"},
        BadArgs{{"/mnt", "--transport", "ring"},
                "--transport 'ring': bad transport 'ring': expected auto, uring or dev"},
        BadArgs{{"/mnt", "-o", "transport"}, "-o 'transport': needs a value"},
        BadArgs{{"/mnt", "--transport"}, "--transport: needs a value"},
        BadArgs{{"/mnt", "--uring-depth", "0"},
                "--uring-depth '0': bad queue depth '0': must be 1..64"},
        BadArgs{{"/mnt", "-o", "uring_depth=65"}, "must be 1..64"},
        BadArgs{{"/mnt", "--uring-poll-us", "-1"},
                "--uring-poll-us '-1': bad poll window (us) '-1'"},
        BadArgs{{"/mnt", "-o", "uring_poll_us=1001"}, "must be 0..1000"},
        BadArgs{{"/mnt", "--uring-threads", "-1"},
                "--uring-threads '-1': bad ring threads per queue '-1'"},
        BadArgs{{"/mnt", "-o", "uring_threads=65"}, "must be 0..64"}));

// Found by the fuzzer: a message quotes its argument up to three times
// ("--size 'X': bad size 'X': unknown suffix 'X'"), so each quote is cut
// after its escaped form, not after the raw bytes (\xff is 4 characters).
TEST(ParseCommandLineTest, MessagesStayShortForLongBinaryArguments) {
  const std::string garbage = "1" + std::string(5000, '\xff');
  for (std::vector<std::string> args : {std::vector<std::string>{"/mnt", "--size", garbage},
                                        std::vector<std::string>{"/mnt", "--disk", "x:" + garbage},
                                        std::vector<std::string>{"/mnt", "-o", "disks=" + garbage},
                                        std::vector<std::string>{"/mnt", "--disk", garbage + ":1G"},
                                        std::vector<std::string>{"/mnt", garbage, garbage}}) {
    absl::StatusOr<Config> config = Parse(args);
    ASSERT_FALSE(config.ok());
    EXPECT_LT(config.status().message().size(), 600u) << config.status();
    EXPECT_NE(std::string(config.status().message()).find("\\xff\\xff'..."), std::string::npos)
        << config.status();
  }
}

TEST(ParseCommandLineTest, EmptyArgvIsAnError) {
  absl::StatusOr<Config> config = ParseCommandLine({});
  EXPECT_FALSE(config.ok());
}

// ---- UsageText ----------------------------------------------------------------------

TEST(UsageTextTest, ListsEverything) {
  const std::string usage = UsageText("ramdiskfs");
  for (std::string needle : {"Usage: ramdiskfs [SOURCE] MOUNTPOINT [options]",
                             "--disk NAME:SIZE[:key=value...]",
                             "--disks N",
                             "--size SIZE",
                             "--max-memory SIZE",
                             "--mode MODE",
                             "--store KIND",
                             "--threads N",
                             "--transport T",
                             "--uring-depth N",
                             "--uring-threads N",
                             "--uring-poll-us N",
                             "/sys/module/fuse/parameters/enable_uring",
                             "transport=, uring_depth=,",
                             "uring_poll_us=",
                             "-f ",
                             "-d ",
                             "-s ",
                             "-o OPT",
                             "-h, --help",
                             "-V, --version",
                             "allow_other",
                             "mode=dax|direct|cached|null",
                             "readonly=0|1",
                             "image=PATH",
                             "NAME::image=PATH",
                             "auto, tmpfs or memfd",
                             "disk=, disks=, size=, max_memory=, mode=",
                             "store=, threads=",
                             "1..4096",
                             "1..64",
                             "default 8",
                             "default 1G",
                             "SIZE:",
                             "K, M, G, T or P",
                             "powers of 1024",
                             "iB",
                             "512 bytes",
                             "ram0..ramN-1",
                             "ramdiskfs /mnt/rd --disks 2 --size 1G",
                             "mount -t fuse.ramdiskfs ramdiskfs /mnt/rd -o disks=4,size=1G",
                             "fstab:  ramdiskfs  /mnt/rd",
                             "Exit status:",
                             "50%",
                             "1.5G",
                             "fusermount3 -u"}) {
    EXPECT_NE(usage.find(needle), std::string::npos) << "missing '" << needle << "' in\n" << usage;
  }
  ASSERT_FALSE(usage.empty());
  EXPECT_EQ(usage.back(), '\n');
}

TEST(UsageTextTest, UsesProgramName) {
  const std::string usage = UsageText("/usr/local/bin/rdfs");
  EXPECT_NE(usage.find("Usage: /usr/local/bin/rdfs "), std::string::npos) << usage;
  EXPECT_NE(usage.find("/usr/local/bin/rdfs /mnt/rd --disks 2"), std::string::npos) << usage;
}

TEST(UsageTextTest, FitsIn80Columns) {
  const std::string usage = UsageText("ramdiskfs");
  size_t start = 0;
  while (start < usage.size()) {
    size_t end = usage.find('\n', start);
    if (end == std::string::npos) end = usage.size();
    const std::string line = usage.substr(start, end - start);
    EXPECT_LE(line.size(), 80u) << line;
    EXPECT_TRUE(line.empty() || line.back() != ' ') << "trailing space: '" << line << "'";
    start = end + 1;
  }
}

}  // namespace
}  // namespace ramdiskfs

namespace ramdiskfs {
namespace {

TEST(ParseCommandLineTest, SuperviseIsALongOptionAndAMountOption) {
  absl::StatusOr<Config> config = ParseCommandLine({"ramdiskfs", "/mnt"});
  ASSERT_TRUE(config.ok());
  EXPECT_FALSE(config->supervise);  // off by default
  config = ParseCommandLine({"ramdiskfs", "--supervise", "/mnt"});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_TRUE(config->supervise);
  config = ParseCommandLine({"ramdiskfs", "-o", "ro,supervise", "/mnt"});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_TRUE(config->supervise);
  // Ours: not passed on to libfuse, which would refuse it.
  EXPECT_EQ(std::count(config->fuse_options.begin(), config->fuse_options.end(), "supervise"), 0);
  EXPECT_FALSE(ParseCommandLine({"ramdiskfs", "--supervise=1", "/mnt"}).ok());
}

}  // namespace
}  // namespace ramdiskfs
