#include "src/text.h"

namespace ramdiskfs::text {

std::string Quote(std::string_view text) {
  constexpr size_t kMaxQuoted = 120;
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "'";
  size_t i = 0;
  for (; i < text.size() && out.size() <= kMaxQuoted; ++i) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\\' || c == '\'') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    }
  }
  out += '\'';
  if (i < text.size()) out += "...";
  return out;
}

}  // namespace ramdiskfs::text
