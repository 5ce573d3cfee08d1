#include "ramdiskfs/control.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <cstdint>
#include <functional>
#include <limits>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "ramdiskfs/size.h"
#include "ramdiskfs/status.h"

namespace ramdiskfs {
namespace {

using std::string_literals::operator""s;

constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
constexpr uint64_t MiB = 1ULL << 20, GiB = 1ULL << 30;

using Rows = std::vector<std::pair<std::string, std::string>>;

template <typename T>
absl::Status StatusOf(const absl::StatusOr<T>& result) {
  return result.status();
}

// Every control parser, for the rules they share. `file` is the prefix of
// their error messages.
struct Parser {
  std::string file;
  std::function<absl::Status(std::string_view)> parse;
  std::string valid;  // a valid input, used to build boundary cases
};

std::vector<Parser> AllParsers() {
  return {
      {"new", [](std::string_view t) { return StatusOf(ParseNewCommand(t)); }, "ram0 1G"},
      {"delete", [](std::string_view t) { return StatusOf(ParseDeleteCommand(t)); }, "ram0"},
      {"discard", [](std::string_view t) { return StatusOf(ParseDiscardCommand(t)); }, "0 4096"},
      {"readonly", [](std::string_view t) { return StatusOf(ParseBoolValue(t)); }, "1"},
      {"size", [](std::string_view t) { return StatusOf(ParseDiskSizeValue(t)); }, "1G"},
      {"max_memory", [](std::string_view t) { return StatusOf(ParseMemorySizeValue(t)); }, "1G"},
      {"mode", [](std::string_view t) { return StatusOf(ParseModeValue(t)); }, "direct"},
      {"flush", [](std::string_view t) { return ParseFlushCommand(t); }, "1"},
  };
}

void ExpectInvalid(const absl::Status& status, std::string_view file, std::string_view input) {
  ASSERT_FALSE(status.ok()) << file << ": '" << input << "' accepted";
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  const std::string message(status.message());
  EXPECT_EQ(message.rfind(std::string(file) + ": ", 0), 0u) << message;
  EXPECT_EQ(message.find('\n'), std::string::npos) << "not one line: " << message;
  EXPECT_LT(message.size(), 600u) << message;
}

TEST(ControlInputTest, SharedRulesAccept) {
  for (const Parser& p : AllParsers()) {
    for (const std::string& text : {p.valid, p.valid + "\n", "  " + p.valid + "  ",
                                    "\t" + p.valid + "\t\n", " " + p.valid + " \n"}) {
      EXPECT_TRUE(p.parse(text).ok()) << p.file << ": '" << text << "': " << p.parse(text);
    }
    // Exactly kMaxControlWrite bytes is fine, one more is not.
    std::string padded = p.valid + std::string(kMaxControlWrite - p.valid.size() - 1, ' ') + "\n";
    ASSERT_EQ(padded.size(), kMaxControlWrite);
    EXPECT_TRUE(p.parse(padded).ok()) << p.file << ": " << p.parse(padded);
    padded.insert(0, " ");
    ExpectInvalid(p.parse(padded), p.file, "4097 bytes");
    EXPECT_NE(std::string(p.parse(padded).message()).find("too long"), std::string::npos);
  }
}

TEST(ControlInputTest, SharedRulesReject) {
  for (const Parser& p : AllParsers()) {
    for (const std::string& text :
         {""s, "\n"s, " "s, "\t\n"s, "   \n"s, "\n\n"s, p.valid + "\n\n", p.valid + "\nx",
          "x\n" + p.valid, p.valid + "\r\n", p.valid + "\0"s, "\0"s + p.valid, p.valid + " \0\n"s,
          p.valid + "\v", std::string(100000, ' '), std::string(kMaxControlWrite + 1, '1')}) {
      SCOPED_TRACE(p.file + ": '" + text.substr(0, 40) + "'");
      ExpectInvalid(p.parse(text), p.file, text);
    }
  }
}

TEST(ControlInputTest, MessagesStayShortForBinaryInput) {
  for (const Parser& p : AllParsers()) {
    for (const std::string& text : {"ram0 1" + std::string(4000, '\x80'),
                                    std::string(4000, '\x01') + " " + std::string(90, '\xff'),
                                    "1 " + std::string(4000, '\\')}) {
      const absl::Status status = p.parse(text);
      ASSERT_FALSE(status.ok()) << p.file;
      EXPECT_LT(status.message().size(), 400u) << status;
    }
  }
}

TEST(ControlInputTest, Messages) {
  EXPECT_EQ(ParseFlushCommand("").message(), "flush: empty input");
  EXPECT_EQ(ParseFlushCommand("1\n2\n").message(), "flush: more than one line");
  EXPECT_EQ(ParseFlushCommand("1\0"s).message(), "flush: NUL byte in input");
  EXPECT_EQ(ParseFlushCommand(std::string(4097, '1')).message(),
            "flush: input too long (4097 bytes, at most 4096)");
}

// ---- new ------------------------------------------------------------------------------

TEST(ParseNewCommandTest, Minimal) {
  absl::StatusOr<NewDiskRequest> request = ParseNewCommand("ram0 1G\n");
  ASSERT_TRUE(request.ok()) << request.status();
  EXPECT_EQ(request->name, "ram0");
  EXPECT_EQ(request->size_bytes, GiB);
  EXPECT_FALSE(request->mode.has_value());
  EXPECT_FALSE(request->readonly);
}

TEST(ParseNewCommandTest, Keys) {
  absl::StatusOr<NewDiskRequest> request =
      ParseNewCommand("  scratch\t1000  mode=direct readonly=1");
  ASSERT_TRUE(request.ok()) << request.status();
  EXPECT_EQ(request->name, "scratch");
  EXPECT_EQ(request->size_bytes, 1024u);  // rounded up to 512
  EXPECT_EQ(request->mode, DataMode::kDirect);
  EXPECT_TRUE(request->readonly);

  request = ParseNewCommand("x 4K readonly=0 mode=null");
  ASSERT_TRUE(request.ok()) << request.status();
  EXPECT_EQ(request->size_bytes, 4096u);
  EXPECT_EQ(request->mode, DataMode::kNull);
  EXPECT_FALSE(request->readonly);

  for (DataMode mode : {DataMode::kDax, DataMode::kDirect, DataMode::kCached, DataMode::kNull}) {
    request = ParseNewCommand("x 1M mode=" + std::string(DataModeName(mode)));
    ASSERT_TRUE(request.ok()) << request.status();
    EXPECT_EQ(request->mode, mode);
  }
}

TEST(ParseNewCommandTest, SizeBoundaries) {
  struct Case {
    std::string size;
    uint64_t bytes;
  };
  for (const Case& c : {Case{"0", 0}, Case{"1", 512}, Case{"512", 512}, Case{"513", 1024},
                        Case{"9223372036854771712", kMaxDiskBytes}}) {
    absl::StatusOr<NewDiskRequest> request = ParseNewCommand("d " + c.size);
    ASSERT_TRUE(request.ok()) << c.size << ": " << request.status();
    EXPECT_EQ(request->size_bytes, c.bytes) << c.size;
  }
}

struct Bad {
  std::string text;
  std::string message;  // a substring the error must contain
};

void PrintTo(const Bad& bad, std::ostream* os) { *os << "'" << bad.text << "'"; }

class ParseNewCommandBadTest : public testing::TestWithParam<Bad> {};

TEST_P(ParseNewCommandBadTest, Fails) {
  absl::StatusOr<NewDiskRequest> request = ParseNewCommand(GetParam().text);
  ExpectInvalid(request.status(), "new", GetParam().text);
  EXPECT_NE(std::string(request.status().message()).find(GetParam().message), std::string::npos)
      << request.status();
}

INSTANTIATE_TEST_SUITE_P(
    Table, ParseNewCommandBadTest,
    testing::Values(
        Bad{"ram0", "new: missing SIZE"}, Bad{"ram0 12Q", "new: bad size '12Q': unknown suffix"},
        Bad{"ram0 -1", "no sign"}, Bad{"ram0 +1", "no sign"},
        Bad{"ram0 1.5", "a fraction needs a unit"}, Bad{"ram0 0x100", "no hex"},
        Bad{"ram0 abc", "expected a number"}, Bad{"ram0 18446744073709551616", "too large"},
        Bad{"ram0 9223372036854771713", "larger than the largest disk"},
        Bad{"../x 1G", "bad disk name '../x'"}, Bad{". 1G", "bad disk name '.'"},
        Bad{".. 1G", "bad disk name '..'"}, Bad{".control 1G", "bad disk name '.control'"},
        Bad{"a/b 1G", "character '/'"}, Bad{"-x 1G", "must not start with '-'"},
        Bad{"ram0 1G mode=fast", "new: bad mode 'fast'"}, Bad{"ram0 1G mode=", "bad mode ''"},
        Bad{"ram0 1G mode=DAX", "bad mode 'DAX'"},
        Bad{"ram0 1G mode=dax mode=dax", "repeated key 'mode'"},
        Bad{"ram0 1G mode=dax mode=null", "repeated key 'mode'"},
        Bad{"ram0 1G readonly=1 readonly=1", "repeated key 'readonly'"},
        Bad{"ram0 1G readonly=2", "bad readonly '2': expected 0 or 1"},
        Bad{"ram0 1G readonly=", "bad readonly ''"},
        Bad{"ram0 1G readonly=true", "bad readonly 'true'"},
        Bad{"ram0 1G image=/etc/passwd",
            "new: image= is only allowed on the command line: control files never open paths"},
        Bad{"ram0 1G image=", "image= is only allowed on the command line"},
        Bad{"ram0 1G readonly=1 image=x", "image= is only allowed"},
        Bad{"ram0 1G foo=1",
            "unknown key 'foo' (expected mode, readonly, cache, cache_size, powercut_policy, "
            "powercut_seed)"},
        Bad{"ram0 1G =1", "unknown key ''"}, Bad{"ram0 1G Mode=dax", "unknown key 'Mode'"},
        Bad{"ram0 1G extra", "bad field 'extra': expected key=value"},
        Bad{"ram0 1G 2G", "bad field '2G'"}, Bad{"ram0 1G mode = dax", "bad field 'mode'"}));

TEST(ParseNewCommandTest, NameTooLongKeepsEnametoolong) {
  absl::StatusOr<NewDiskRequest> request = ParseNewCommand(std::string(256, 'n') + " 1G");
  ASSERT_FALSE(request.ok());
  EXPECT_EQ(StatusToErrno(request.status()), ENAMETOOLONG) << request.status();
  EXPECT_EQ(std::string(request.status().message()).rfind("new: ", 0), 0u) << request.status();

  request = ParseNewCommand(std::string(255, 'n') + " 1G");
  EXPECT_TRUE(request.ok()) << request.status();
}

TEST(ParseNewCommandTest, OtherErrorsAreEinval) {
  for (std::string text : {"ram0", "ram0 12Q", "a/b 1G", "ram0 1G image=/x", ""}) {
    EXPECT_EQ(StatusToErrno(ParseNewCommand(text).status()), EINVAL) << text;
  }
}

// ---- delete ---------------------------------------------------------------------------

TEST(ParseDeleteCommandTest, Accepts) {
  for (std::string text : {"ram0", "ram0\n", "  ram0 ", "\tram0\t\n"}) {
    absl::StatusOr<std::string> name = ParseDeleteCommand(text);
    ASSERT_TRUE(name.ok()) << "'" << text << "': " << name.status();
    EXPECT_EQ(*name, "ram0");
  }
  absl::StatusOr<std::string> name = ParseDeleteCommand(std::string(255, 'x'));
  ASSERT_TRUE(name.ok()) << name.status();
  EXPECT_EQ(*name, std::string(255, 'x'));
}

TEST(ParseDeleteCommandTest, Rejects) {
  for (const Bad& bad :
       {Bad{"ram0 ram1", "delete: unexpected field 'ram1' (expected NAME)"},
        Bad{"ram0 1G", "unexpected field '1G'"}, Bad{"..", "bad disk name '..'"},
        Bad{".", "bad disk name '.'"}, Bad{".control", "'.control'"}, Bad{"a/b", "character '/'"},
        Bad{"/", "character '/'"}, Bad{"../../etc/passwd", "bad disk name"}}) {
    absl::StatusOr<std::string> name = ParseDeleteCommand(bad.text);
    ExpectInvalid(name.status(), "delete", bad.text);
    EXPECT_NE(std::string(name.status().message()).find(bad.message), std::string::npos)
        << name.status();
  }
}

TEST(ParseDeleteCommandTest, NameTooLongKeepsEnametoolong) {
  absl::StatusOr<std::string> name = ParseDeleteCommand(std::string(256, 'x') + "\n");
  ASSERT_FALSE(name.ok());
  EXPECT_EQ(StatusToErrno(name.status()), ENAMETOOLONG) << name.status();
  EXPECT_EQ(std::string(name.status().message()).rfind("delete: ", 0), 0u) << name.status();
}

// ---- discard --------------------------------------------------------------------------

TEST(ParseDiscardCommandTest, Accepts) {
  struct Case {
    std::string text;
    uint64_t offset, length;
  };
  for (const Case& c :
       {Case{"0 4096", 0, 4096}, Case{"4096 1M\n", 4096, MiB}, Case{"0 0", 0, 0},
        Case{" 1G\t\t2G ", GiB, 2 * GiB}, Case{"1 1", 1, 1},  // partial pages are the caller's
        Case{"18446744073709551615 0", kMax, 0}, Case{"0 18446744073709551615", 0, kMax},
        Case{"18446744073709551614 1", kMax - 1, 1}, Case{"1 18446744073709551614", 1, kMax - 1},
        Case{"9223372036854775808 9223372036854775807", 1ULL << 63, (1ULL << 63) - 1}}) {
    absl::StatusOr<ByteRange> range = ParseDiscardCommand(c.text);
    ASSERT_TRUE(range.ok()) << "'" << c.text << "': " << range.status();
    EXPECT_EQ(range->offset, c.offset) << c.text;
    EXPECT_EQ(range->length, c.length) << c.text;
  }
}

TEST(ParseDiscardCommandTest, Rejects) {
  for (const Bad& bad : {
           Bad{"4096", "discard: missing field (expected OFFSET LENGTH)"},
           Bad{"0 4096 1", "unexpected field '1' (expected OFFSET LENGTH)"},
           Bad{"18446744073709551615 1", "offset 18446744073709551615 + length 1 overflows"},
           Bad{"1 18446744073709551615", "overflows"},
           Bad{"9223372036854775808 9223372036854775808", "overflows"},
           Bad{"16383P 1P", "overflows"},
           Bad{"18446744073709551616 0", "too large"},
           Bad{"0 18446744073709551616", "too large"},
           Bad{"-1 5", "discard: bad size '-1': no sign"},
           Bad{"1 -5", "bad size '-5'"},
           Bad{"1.5 2", "a fraction needs a unit"},
           Bad{"0x10 1", "no hex"},
           Bad{"abc 1", "expected a number"},
           Bad{"1 12Q", "unknown suffix 'Q'"},
           Bad{"1,5 2", "use '.' for a fraction"},
       }) {
    absl::StatusOr<ByteRange> range = ParseDiscardCommand(bad.text);
    ExpectInvalid(range.status(), "discard", bad.text);
    EXPECT_NE(std::string(range.status().message()).find(bad.message), std::string::npos)
        << range.status();
  }
}

// ---- single values --------------------------------------------------------------------

TEST(ParseBoolValueTest, Values) {
  for (std::string text : {"0", "0\n", " 0 "}) {
    absl::StatusOr<bool> value = ParseBoolValue(text);
    ASSERT_TRUE(value.ok()) << value.status();
    EXPECT_FALSE(*value);
  }
  for (std::string text : {"1", "1\n", "\t1"}) {
    absl::StatusOr<bool> value = ParseBoolValue(text);
    ASSERT_TRUE(value.ok()) << value.status();
    EXPECT_TRUE(*value);
  }
  for (std::string text : {"2", "01", "00", "10", "true", "false", "y", "n", "on", "-1", "+1",
                           "1 1", "0 0", "1K", "0x1", "1.0"}) {
    ExpectInvalid(ParseBoolValue(text).status(), "readonly", text);
  }
  EXPECT_EQ(ParseBoolValue("2").status().message(), "readonly: bad value '2': expected 0 or 1");
}

TEST(ParseDiskSizeValueTest, Values) {
  struct Case {
    std::string text;
    uint64_t bytes;
  };
  for (const Case& c : {Case{"1G", GiB}, Case{"1G\n", GiB}, Case{"1000", 1024}, Case{"0", 0},
                        Case{"9223372036854771712", kMaxDiskBytes}, Case{"2GiB", 2 * GiB}}) {
    absl::StatusOr<uint64_t> bytes = ParseDiskSizeValue(c.text);
    ASSERT_TRUE(bytes.ok()) << c.text << ": " << bytes.status();
    EXPECT_EQ(*bytes, c.bytes) << c.text;
  }
  for (const Bad& bad :
       {Bad{"1 G", "size: unexpected field 'G' (expected SIZE)"},
        Bad{"-5", "size: bad size '-5': no sign"}, Bad{"abc", "expected a number"},
        Bad{"9223372036854771713", "larger than the largest disk"},
        Bad{"18446744073709551616", "too large"}, Bad{"1.5", "a fraction needs a unit"}}) {
    absl::StatusOr<uint64_t> bytes = ParseDiskSizeValue(bad.text);
    ExpectInvalid(bytes.status(), "size", bad.text);
    EXPECT_NE(std::string(bytes.status().message()).find(bad.message), std::string::npos)
        << bytes.status();
  }
}

TEST(ParseMemorySizeValueTest, Values) {
  struct Case {
    std::string text;
    uint64_t bytes;
  };
  for (const Case& c : {Case{"1", 4096}, Case{"4096", 4096}, Case{"4097", 8192}, Case{"1G\n", GiB},
                        Case{"18446744073709547520", kMax - 4095}}) {
    absl::StatusOr<uint64_t> bytes = ParseMemorySizeValue(c.text);
    ASSERT_TRUE(bytes.ok()) << c.text << ": " << bytes.status();
    EXPECT_EQ(*bytes, c.bytes) << c.text;
  }
  for (const Bad& bad :
       {Bad{"0", "max_memory: bad size '0': must be at least 4096"},
        Bad{"0K", "must be at least 4096"}, Bad{"18446744073709547521", "too large to round up"},
        Bad{"18446744073709551615", "too large to round up"},
        Bad{"18446744073709551616", "too large"}, Bad{"-1", "no sign"},
        Bad{"1G 2G", "unexpected field '2G'"}}) {
    absl::StatusOr<uint64_t> bytes = ParseMemorySizeValue(bad.text);
    ExpectInvalid(bytes.status(), "max_memory", bad.text);
    EXPECT_NE(std::string(bytes.status().message()).find(bad.message), std::string::npos)
        << bytes.status();
  }
}

TEST(ParseModeValueTest, Values) {
  for (DataMode mode : {DataMode::kDax, DataMode::kDirect, DataMode::kCached, DataMode::kNull}) {
    absl::StatusOr<DataMode> parsed = ParseModeValue(std::string(DataModeName(mode)) + "\n");
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, mode);
  }
  for (std::string text : {"DAX", "Direct", "dax direct", "fast", "0", "dax=1"}) {
    ExpectInvalid(ParseModeValue(text).status(), "mode", text);
  }
  EXPECT_EQ(ParseModeValue("fast").status().message(),
            "mode: bad mode 'fast': expected dax, direct, cached or null");
}

TEST(ParseFlushCommandTest, Values) {
  for (std::string text : {"1", "1\n", " 1\t", "\t1 \n"}) {
    EXPECT_TRUE(ParseFlushCommand(text).ok()) << "'" << text << "'";
  }
  for (std::string text : {"0", "2", "11", "01", "1 1", "yes", "1K", "-1", "+1"}) {
    ExpectInvalid(ParseFlushCommand(text), "flush", text);
  }
  EXPECT_EQ(ParseFlushCommand("0").message(), "flush: bad value '0': write 1");
}

// ---- key/value rendering --------------------------------------------------------------

TEST(KeyValuesTest, Render) {
  EXPECT_EQ(RenderKeyValues({}), "");
  EXPECT_EQ(RenderKeyValues({{"size", "1073741824"}, {"mode", "dax"}}),
            "size 1073741824\nmode dax\n");
  EXPECT_EQ(RenderKeyValues({{"fallback", ""}}), "fallback \n");
  EXPECT_EQ(RenderKeyValues({{"reason", "no passthrough: kernel 6.1"}}),
            "reason no passthrough: kernel 6.1\n");
}

TEST(KeyValuesTest, RoundTrip) {
  for (const Rows& rows :
       {Rows{}, Rows{{"size", "1073741824"}}, Rows{{"a", ""}, {"b", " c "}, {"d", "e f  g"}},
        Rows{{"k", "v"}, {"k", "v"}},  // order and repeats are kept
        Rows{{"mode", "dax"}, {"readonly", "0"}, {"x\ty", "\t"}}}) {
    absl::StatusOr<Rows> parsed = ParseKeyValues(RenderKeyValues(rows));
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, rows);
  }
}

TEST(KeyValuesTest, ParseWithoutFinalNewline) {
  absl::StatusOr<Rows> parsed = ParseKeyValues("a 1\nb 2");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(*parsed, (Rows{{"a", "1"}, {"b", "2"}}));

  parsed = ParseKeyValues("");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_TRUE(parsed->empty());
}

TEST(KeyValuesTest, ParseRejects) {
  for (const Bad& bad :
       {Bad{"novalue\n", "line 1 'novalue': expected 'key value'"},
        Bad{"a 1\nnovalue", "line 2 'novalue'"}, Bad{" value\n", "line 1 ' value': empty key"},
        Bad{"a 1\n\nb 2\n", "line 2 '': expected 'key value'"}, Bad{"a 1\n\n", "line 2 ''"},
        Bad{"\n", "line 1 ''"}, Bad{"a\tb\n", "expected 'key value'"}}) {
    absl::StatusOr<Rows> parsed = ParseKeyValues(bad.text);
    ASSERT_FALSE(parsed.ok()) << "'" << bad.text << "' accepted";
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(std::string(parsed.status().message()).find(bad.message), std::string::npos)
        << parsed.status();
  }
}

}  // namespace
}  // namespace ramdiskfs
