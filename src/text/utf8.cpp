#include "text/utf8.h"

#include <cstdint>

#include "core/error.h"

namespace kvrag {
namespace {

inline bool is_cont(unsigned char b) { return (b & 0xC0) == 0x80; }

[[noreturn]] void fail_at(size_t pos) { fail("invalid UTF-8 at byte {}", pos); }

}  // namespace

// Well-formed sequences, Unicode 15 table 3-7: the second byte's range depends on the lead byte
// (E0/ED/F0/F4 narrow it to exclude overlong forms, surrogates and values above U+10FFFF).
bool next_code_point(std::string_view s, size_t& pos, char32_t& cp) {
  const size_t n = s.size();
  const auto* p = reinterpret_cast<const unsigned char*>(s.data()) + pos;
  const size_t left = n - pos;
  const unsigned char b0 = p[0];
  if (b0 < 0x80) {
    cp = b0;
    pos += 1;
    return true;
  }
  if (b0 < 0xC2) return false;  // continuation byte or overlong 2-byte lead (C0, C1)
  if (b0 < 0xE0) {
    if (left < 2 || !is_cont(p[1])) return false;
    cp = (char32_t(b0 & 0x1F) << 6) | (p[1] & 0x3F);
    pos += 2;
    return true;
  }
  if (b0 < 0xF0) {
    if (left < 3) return false;
    const unsigned char lo = b0 == 0xE0 ? 0xA0 : 0x80;  // E0: no overlong
    const unsigned char hi = b0 == 0xED ? 0x9F : 0xBF;  // ED: no surrogates
    if (p[1] < lo || p[1] > hi || !is_cont(p[2])) return false;
    cp = (char32_t(b0 & 0x0F) << 12) | (char32_t(p[1] & 0x3F) << 6) | (p[2] & 0x3F);
    pos += 3;
    return true;
  }
  if (b0 < 0xF5) {
    if (left < 4) return false;
    const unsigned char lo = b0 == 0xF0 ? 0x90 : 0x80;  // F0: no overlong
    const unsigned char hi = b0 == 0xF4 ? 0x8F : 0xBF;  // F4: nothing above U+10FFFF
    if (p[1] < lo || p[1] > hi || !is_cont(p[2]) || !is_cont(p[3])) return false;
    cp = (char32_t(b0 & 0x07) << 18) | (char32_t(p[1] & 0x3F) << 12) |
         (char32_t(p[2] & 0x3F) << 6) | (p[3] & 0x3F);
    pos += 4;
    return true;
  }
  return false;  // F5..FF never occur in UTF-8
}

size_t find_invalid_utf8(std::string_view s) {
  size_t pos = 0;
  char32_t cp;
  while (pos < s.size()) {
    if (static_cast<unsigned char>(s[pos]) < 0x80) {
      ++pos;
      continue;
    }
    if (!next_code_point(s, pos, cp)) return pos;
  }
  return std::string_view::npos;
}

void check_utf8(std::string_view s) {
  const size_t bad = find_invalid_utf8(s);
  if (bad != std::string_view::npos) fail_at(bad);
}

void decode_utf8(std::string_view s, std::u32string& out) {
  out.reserve(out.size() + s.size());
  size_t pos = 0;
  char32_t cp;
  while (pos < s.size()) {
    const unsigned char b = static_cast<unsigned char>(s[pos]);
    if (b < 0x80) {
      out.push_back(b);
      ++pos;
    } else if (next_code_point(s, pos, cp)) {
      out.push_back(cp);
    } else {
      fail_at(pos);
    }
  }
}

std::u32string decode_utf8(std::string_view s) {
  std::u32string out;
  decode_utf8(s, out);
  return out;
}

size_t utf8_length(std::string_view s) {
  size_t pos = 0, count = 0;
  char32_t cp;
  while (pos < s.size()) {
    if (!next_code_point(s, pos, cp)) fail_at(pos);
    ++count;
  }
  return count;
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    if (cp >= 0xD800 && cp <= 0xDFFF) {
      fail("cannot encode surrogate U+{:04X} as UTF-8", uint32_t(cp));
    }
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp <= 0x10FFFF) {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    fail("cannot encode U+{:X} as UTF-8: above U+10FFFF", uint32_t(cp));
  }
}

std::string encode_utf8(std::u32string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char32_t cp : s) append_utf8(out, cp);
  return out;
}

}  // namespace kvrag
