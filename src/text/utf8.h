// UTF-8 validation, decoding to code points and encoding back.
//
// Strict RFC 3629 UTF-8: overlong forms, UTF-16 surrogates (U+D800..U+DFFF), code points above
// U+10FFFF, stray continuation bytes and truncated sequences are all invalid. Functions that
// reject input throw kvrag::Error("invalid UTF-8 at byte N"), N being the offset of the first
// byte of the offending sequence; nothing here reads past the end of its input.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace kvrag {

// Offset of the first byte of the first invalid sequence in `s`, or std::string_view::npos if
// `s` is valid UTF-8.
size_t find_invalid_utf8(std::string_view s);

inline bool is_valid_utf8(std::string_view s) {
  return find_invalid_utf8(s) == std::string_view::npos;
}

// Throws Error("invalid UTF-8 at byte N") unless `s` is valid UTF-8.
void check_utf8(std::string_view s);

// Decodes the code point that starts at s[pos]: on success stores it in `cp`, advances `pos`
// past it and returns true; on an invalid or truncated sequence returns false and leaves `pos`
// and `cp` unchanged. Requires pos < s.size().
bool next_code_point(std::string_view s, size_t& pos, char32_t& cp);

// All code points of `s`; throws Error("invalid UTF-8 at byte N").
std::u32string decode_utf8(std::string_view s);
// Same, appending to `out` (which keeps its capacity: no allocation once it is large enough).
void decode_utf8(std::string_view s, std::u32string& out);

// Number of code points in `s`; throws Error on invalid UTF-8.
size_t utf8_length(std::string_view s);

// Appends the UTF-8 form of `cp`; throws Error for a surrogate or a value above U+10FFFF.
void append_utf8(std::string& out, char32_t cp);
std::string encode_utf8(std::u32string_view s);

// Bytes in the UTF-8 form of a valid code point (1..4).
inline int utf8_width(char32_t cp) { return cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4; }

}  // namespace kvrag
