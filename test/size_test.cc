#include "ramdiskfs/size.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>

#include "absl/status/status.h"

namespace ramdiskfs {
namespace {

using std::string_literals::operator""s;

constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
constexpr uint64_t KiB = 1ULL << 10, MiB = 1ULL << 20, GiB = 1ULL << 30, TiB = 1ULL << 40,
                   PiB = 1ULL << 50;

struct Good {
  std::string text;
  uint64_t bytes;
};

struct Bad {
  std::string text;
  std::string message;  // a substring the error must contain
};

void PrintTo(const Good& good, std::ostream* os) { *os << "'" << good.text << "'"; }
void PrintTo(const Bad& bad, std::ostream* os) { *os << "'" << bad.text << "'"; }

std::string Message(const absl::Status& status) { return std::string(status.message()); }

// ---- ParseSize ------------------------------------------------------------------

class ParseSizeGoodTest : public testing::TestWithParam<Good> {};

TEST_P(ParseSizeGoodTest, Parses) {
  absl::StatusOr<uint64_t> bytes = ParseSize(GetParam().text);
  ASSERT_TRUE(bytes.ok()) << GetParam().text << ": " << bytes.status();
  EXPECT_EQ(*bytes, GetParam().bytes) << GetParam().text;
}

INSTANTIATE_TEST_SUITE_P(
    Table, ParseSizeGoodTest,
    testing::Values(Good{"0", 0}, Good{"1", 1}, Good{"512", 512}, Good{"4096", 4096},
                    Good{"007", 7}, Good{"00000000000000000000000000000001", 1}, Good{"0K", 0},
                    Good{"0P", 0}, Good{"1K", KiB}, Good{"1k", KiB}, Good{"1KB", KiB},
                    Good{"1kb", KiB}, Good{"1Kb", KiB}, Good{"1KiB", KiB}, Good{"1kib", KiB},
                    Good{"1KIB", KiB}, Good{"512K", 512 * KiB}, Good{"64M", 64 * MiB},
                    Good{"64m", 64 * MiB}, Good{"64MiB", 64 * MiB}, Good{"1G", GiB},
                    Good{"1g", GiB}, Good{"1GB", GiB}, Good{"1GiB", GiB}, Good{"2T", 2 * TiB},
                    Good{"2t", 2 * TiB}, Good{"1P", PiB}, Good{"1pib", PiB},
                    // The largest values of each unit.
                    Good{"18446744073709551615", kMax}, Good{"18014398509481983K", kMax - 1023},
                    Good{"17179869183G", kMax - (GiB - 1)}, Good{"16777215T", kMax - (TiB - 1)},
                    Good{"16383P", kMax - (PiB - 1)}));

class ParseSizeBadTest : public testing::TestWithParam<Bad> {};

TEST_P(ParseSizeBadTest, Fails) {
  absl::StatusOr<uint64_t> bytes = ParseSize(GetParam().text);
  ASSERT_FALSE(bytes.ok()) << "'" << GetParam().text << "' parsed as " << *bytes;
  EXPECT_EQ(bytes.status().code(), absl::StatusCode::kInvalidArgument);
  const std::string message = Message(bytes.status());
  EXPECT_NE(message.find(GetParam().message), std::string::npos) << message;
  EXPECT_EQ(message.find('\n'), std::string::npos) << "not one line: " << message;
  EXPECT_EQ(message.rfind("bad size '", 0), 0u) << message;
}

INSTANTIATE_TEST_SUITE_P(
    Table, ParseSizeBadTest,
    testing::Values(
        Bad{"", "bad size '': empty"}, Bad{"+1", "no sign"}, Bad{"-1", "no sign"},
        Bad{"-0", "no sign"}, Bad{" 1", "no spaces"}, Bad{"1 ", "no spaces"},
        Bad{"1 K", "no spaces"}, Bad{"1\t", "no spaces"},
        Bad{"1\n", "bad size '1\\n'"},  // quoted escaped: the message stays one line
        Bad{"1.5", "a fraction needs a unit"}, Bad{"1,5G", "use '.' for a fraction"},
        Bad{"1.", "expected digits after '.'"}, Bad{"1.G", "expected digits after '.'"},
        Bad{"1.5.5G", "one '.' at most"}, Bad{"1.1234567890123456789G", "too many decimals"},
        Bad{".5", "expected a number"}, Bad{"0x10", "no hex"}, Bad{"0X10", "no hex"},
        Bad{"1x10", "unknown suffix 'x10'"}, Bad{"K", "expected a number"},
        Bad{"KiB", "expected a number"}, Bad{"abc", "expected a number"},
        Bad{"1KK", "unknown suffix 'KK'"}, Bad{"12Q", "bad size '12Q': unknown suffix 'Q'"},
        Bad{"1B", "unknown suffix 'B'"}, Bad{"1iB", "unknown suffix 'iB'"},
        Bad{"1E", "unknown suffix 'E'"}, Bad{"1KiBB", "unknown suffix 'KiBB'"},
        Bad{"1Ki", "unknown suffix 'Ki'"}, Bad{"1KBi", "unknown suffix 'KBi'"},
        Bad{"1e3", "unknown suffix 'e3'"}, Bad{"1K1", "unknown suffix 'K1'"},
        Bad{"1\0"s, "bad size '1\\x00'"}, Bad{"\xef\xbc\x91", "expected a number"},
        Bad{"1\xc2\xb5", "unknown suffix"},
        // Overflow, in the digits and in the multiplication.
        Bad{"18446744073709551616", "too large"}, Bad{"99999999999999999999", "too large"},
        Bad{"184467440737095516150", "too large"},
        Bad{"99999999999999999999999999999999999999", "too large"},
        Bad{"18014398509481984K", "too large"}, Bad{"17179869184G", "too large"},
        Bad{"16777216T", "too large"}, Bad{"16384P", "too large"},
        Bad{"99999999999999999999K", "too large"}));

// util-linux fractions: "1.5G" is 1.5 * 2^30; what falls below a byte is dropped.
TEST(ParseSizeTest, Fractions) {
  EXPECT_EQ(*ParseSize("1.5G"), 3 * GiB / 2);
  EXPECT_EQ(*ParseSize("0.5K"), 512u);
  EXPECT_EQ(*ParseSize("1.3K"), 1331u);  // 1331.2
  EXPECT_EQ(*ParseSize("2.25MiB"), 9 * MiB / 4);
  EXPECT_EQ(*ParseSize("0.000000000001P"), 1125u);           // 1125.9 bytes
  EXPECT_EQ(*ParseSize("0.000000000000000001P"), 0u);        // 0.001 bytes
  EXPECT_EQ(*ParseSize("16383.999999999999999999P"), kMax);  // 18 decimals: the most
  EXPECT_EQ(*ParseSize("16383.5P"), kMax - (PiB - 1) + PiB / 2);
  EXPECT_FALSE(ParseSize("16383.9999999999999999999P").ok());  // 19 decimals
  EXPECT_FALSE(ParseSize("16384.0P").ok());
}

TEST(ParseSizeTest, Percent) {
  EXPECT_EQ(*ParseSizeOrPercent("50%", 8 * GiB), 4 * GiB);
  EXPECT_EQ(*ParseSizeOrPercent("100%", 8 * GiB), 8 * GiB);
  EXPECT_EQ(*ParseSizeOrPercent("1%", 100), 1u);
  EXPECT_EQ(*ParseSizeOrPercent("64M", 8 * GiB), 64 * MiB);  // plain sizes pass through
  for (const char* bad : {"0%", "101%", "%", "5.5%", "-5%", "1000%", "50 %", "50%%"}) {
    absl::StatusOr<uint64_t> bytes = ParseSizeOrPercent(bad, 8 * GiB);
    EXPECT_FALSE(bytes.ok()) << bad;
  }
  EXPECT_NE(Message(ParseSizeOrPercent("50%", 0).status()).find("size of RAM"), std::string::npos);
}

TEST(ParseSizeTest, OverflowWithBadSuffixNamesTheSuffix) {
  absl::StatusOr<uint64_t> bytes = ParseSize("99999999999999999999Q");
  ASSERT_FALSE(bytes.ok());
  EXPECT_NE(Message(bytes.status()).find("unknown suffix 'Q'"), std::string::npos)
      << bytes.status();
}

TEST(ParseSizeTest, QuotingEscapes) {
  EXPECT_EQ(ParseSize("1\xff\x01Q").status().message(),
            "bad size '1\\xff\\x01Q': unknown suffix '\\xff\\x01Q' (expected K, M, G, T or P, "
            "optionally with iB or B)");
  EXPECT_EQ(ParseSize("1'\\").status().message(),
            "bad size '1\\'\\\\': unknown suffix '\\'\\\\' (expected K, M, G, T or P, optionally "
            "with iB or B)");
  EXPECT_EQ(ParseSize("\t").status().message(), "bad size '\\t': no spaces allowed");
}

TEST(ParseSizeTest, LongInputIsQuotedShortly) {
  const std::string text(100000, '7');
  absl::StatusOr<uint64_t> bytes = ParseSize(text);
  ASSERT_FALSE(bytes.ok());
  EXPECT_LT(bytes.status().message().size(), 400u);
  EXPECT_NE(Message(bytes.status()).find("'..."), std::string::npos) << bytes.status();
}

TEST(ParseSizeTest, EveryDecimalUpToTheLimitRoundTrips) {
  for (uint64_t value : {uint64_t{0}, uint64_t{9}, uint64_t{10}, uint64_t{1} << 32,
                         uint64_t{1} << 63, kMax / 10, kMax / 10 * 10 + 5, kMax - 1, kMax}) {
    absl::StatusOr<uint64_t> bytes = ParseSize(std::to_string(value));
    ASSERT_TRUE(bytes.ok()) << value << ": " << bytes.status();
    EXPECT_EQ(*bytes, value);
  }
}

// ---- ParseDiskSize --------------------------------------------------------------

class ParseDiskSizeGoodTest : public testing::TestWithParam<Good> {};

TEST_P(ParseDiskSizeGoodTest, Parses) {
  absl::StatusOr<uint64_t> bytes = ParseDiskSize(GetParam().text);
  ASSERT_TRUE(bytes.ok()) << GetParam().text << ": " << bytes.status();
  EXPECT_EQ(*bytes, GetParam().bytes) << GetParam().text;
  EXPECT_EQ(*bytes % kLogicalBlockSize, 0u);
}

INSTANTIATE_TEST_SUITE_P(Table, ParseDiskSizeGoodTest,
                         testing::Values(Good{"0", 0}, Good{"1", 512}, Good{"511", 512},
                                         Good{"512", 512}, Good{"513", 1024}, Good{"1000", 1024},
                                         Good{"1K", KiB}, Good{"1G", GiB},
                                         Good{"8388607T", (1ULL << 63) - TiB},
                                         Good{"9223372036854771712", kMaxDiskBytes},
                                         Good{"9223372036854771711", kMaxDiskBytes},
                                         Good{"9223372036854771201", kMaxDiskBytes},
                                         Good{"9223372036854771200", kMaxDiskBytes - 512}));

class ParseDiskSizeBadTest : public testing::TestWithParam<Bad> {};

TEST_P(ParseDiskSizeBadTest, Fails) {
  absl::StatusOr<uint64_t> bytes = ParseDiskSize(GetParam().text);
  ASSERT_FALSE(bytes.ok()) << "'" << GetParam().text << "' parsed as " << *bytes;
  EXPECT_EQ(bytes.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(Message(bytes.status()).find(GetParam().message), std::string::npos) << bytes.status();
}

INSTANTIATE_TEST_SUITE_P(
    Table, ParseDiskSizeBadTest,
    testing::Values(Bad{"9223372036854771713",
                        "bad size '9223372036854771713': larger than the largest"},
                    Bad{"9223372036854771713", "9223372036854771712"},  // names the limit
                    Bad{"8192P", "larger than the largest disk"}, Bad{"8E", "unknown suffix 'E'"},
                    Bad{"18446744073709551615", "larger than the largest disk"},
                    Bad{"18446744073709551104", "larger than the largest disk"},
                    Bad{"18446744073709551616", "too large"},
                    Bad{"12Q", "bad size '12Q': unknown suffix"}, Bad{"-512", "no sign"},
                    Bad{"", "empty"}));

// ---- RoundUp --------------------------------------------------------------------

struct RoundCase {
  uint64_t bytes;
  uint64_t unit;
  uint64_t rounded;
};

class RoundUpTest : public testing::TestWithParam<RoundCase> {};

TEST_P(RoundUpTest, Rounds) {
  absl::StatusOr<uint64_t> rounded = RoundUp(GetParam().bytes, GetParam().unit);
  ASSERT_TRUE(rounded.ok()) << rounded.status();
  EXPECT_EQ(*rounded, GetParam().rounded) << GetParam().bytes << " to " << GetParam().unit;
}

INSTANTIATE_TEST_SUITE_P(
    Table, RoundUpTest,
    testing::Values(RoundCase{0, 512, 0}, RoundCase{1, 512, 512}, RoundCase{511, 512, 512},
                    RoundCase{512, 512, 512}, RoundCase{513, 512, 1024}, RoundCase{5, 4096, 4096},
                    RoundCase{8191, 4096, 8192}, RoundCase{7, 1, 7}, RoundCase{kMax, 1, kMax},
                    RoundCase{kMax - 1, 2, kMax - 1}, RoundCase{kMax - 511, 512, kMax - 511},
                    RoundCase{kMax - 4095, 4096, kMax - 4095}, RoundCase{1, 1ULL << 63, 1ULL << 63},
                    RoundCase{1ULL << 63, 1ULL << 63, 1ULL << 63}));

TEST(RoundUpTest, Overflow) {
  for (auto [bytes, unit] :
       {std::pair{kMax, uint64_t{2}}, std::pair{kMax, uint64_t{512}},
        std::pair{kMax - 510, uint64_t{512}}, std::pair{kMax - 4094, uint64_t{4096}},
        std::pair{(uint64_t{1} << 63) + 1, uint64_t{1} << 63}}) {
    absl::StatusOr<uint64_t> rounded = RoundUp(bytes, unit);
    ASSERT_FALSE(rounded.ok()) << bytes << " to " << unit << " gave " << *rounded;
    EXPECT_EQ(rounded.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(Message(rounded.status()).find("overflows"), std::string::npos) << rounded.status();
  }
}

TEST(RoundUpTest, UnitMustBeAPowerOfTwo) {
  for (uint64_t unit : {uint64_t{0}, uint64_t{3}, uint64_t{1000}, uint64_t{4097}, kMax}) {
    absl::StatusOr<uint64_t> rounded = RoundUp(10, unit);
    EXPECT_FALSE(rounded.ok()) << unit;
    EXPECT_EQ(rounded.status().code(), absl::StatusCode::kInvalidArgument);
  }
}

// ---- FormatSize -----------------------------------------------------------------

struct FormatCase {
  uint64_t bytes;
  std::string text;
};

class FormatSizeTest : public testing::TestWithParam<FormatCase> {};

TEST_P(FormatSizeTest, Formats) { EXPECT_EQ(FormatSize(GetParam().bytes), GetParam().text); }

INSTANTIATE_TEST_SUITE_P(
    Table, FormatSizeTest,
    testing::Values(FormatCase{0, "0"}, FormatCase{1, "1"}, FormatCase{512, "512"},
                    FormatCase{1023, "1023"}, FormatCase{1024, "1K"}, FormatCase{1025, "1K"},
                    FormatCase{1126, "1K"}, FormatCase{1127, "1.1K"}, FormatCase{1536, "1.5K"},
                    FormatCase{4096, "4K"}, FormatCase{MiB - 1, "1023.9K"}, FormatCase{MiB, "1M"},
                    FormatCase{1536 * MiB, "1.5G"}, FormatCase{GiB, "1G"},
                    FormatCase{2047 * MiB, "1.9G"},  // truncated, not rounded to "2G"
                    FormatCase{2 * GiB - 1, "1.9G"}, FormatCase{10 * GiB + GiB / 2, "10.5G"},
                    FormatCase{100 * GiB, "100G"}, FormatCase{2 * TiB, "2T"},
                    FormatCase{TiB - 1, "1023.9G"}, FormatCase{PiB, "1P"},
                    FormatCase{1ULL << 60, "1024P"}, FormatCase{kMaxDiskBytes, "8191.9P"},
                    FormatCase{kMax, "16383.9P"}));

// Whatever FormatSize prints without a decimal, ParseSize reads back as at
// most the original value, and less than a tenth of a unit below it.
TEST(FormatSizeTest, IntegerFormsParseBack) {
  for (int shift = 0; shift < 64; ++shift) {
    for (uint64_t value : {uint64_t{1} << shift, (uint64_t{1} << shift) - 1,
                           (uint64_t{1} << shift) + 1, (uint64_t{3} << shift) / 2}) {
      const std::string text = FormatSize(value);
      ASSERT_FALSE(text.empty());
      ASSERT_LE(text.size(), 9u) << value;
      if (text.find('.') != std::string::npos) continue;
      absl::StatusOr<uint64_t> back = ParseSize(text);
      ASSERT_TRUE(back.ok()) << value << " -> " << text << ": " << back.status();
      EXPECT_LE(*back, value) << text;
      // No decimal shown means less than a tenth of the unit was cut, and the
      // unit is at most the value read back.
      EXPECT_LE(value - *back, *back / 10) << value << " -> " << text;
      if (value < 1024) {
        EXPECT_EQ(*back, value);
      }
    }
  }
}

}  // namespace
}  // namespace ramdiskfs
