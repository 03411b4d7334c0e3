// UTF-8 validation, decoding and encoding.
#include <gtest/gtest.h>

#include <string>

#include "core/error.h"
#include "support/test_support.h"
#include "text/utf8.h"

namespace kvrag {
using test::error_of;
namespace {

TEST(Utf8, DecodesAllWidths) {
  // $ (1 byte), ¢ (2), € (3), 𐍈 (4)
  const std::string s = "$\xC2\xA2\xE2\x82\xAC\xF0\x90\x8D\x88";
  EXPECT_TRUE(is_valid_utf8(s));
  EXPECT_EQ(decode_utf8(s), (std::u32string{U'$', 0xA2, 0x20AC, 0x10348}));
  EXPECT_EQ(utf8_length(s), 4u);
  EXPECT_EQ(encode_utf8(decode_utf8(s)), s);
}

TEST(Utf8, EmptyAndAscii) {
  EXPECT_TRUE(is_valid_utf8(""));
  EXPECT_EQ(decode_utf8(""), U"");
  EXPECT_EQ(decode_utf8(std::string("a\0b", 3)), (std::u32string{U'a', 0, U'b'}));
}

TEST(Utf8, Boundaries) {
  for (char32_t cp :
       {char32_t(0x7F), char32_t(0x80), char32_t(0x7FF), char32_t(0x800), char32_t(0xD7FF),
        char32_t(0xE000), char32_t(0xFFFF), char32_t(0x10000), char32_t(0x10FFFF)}) {
    std::string s;
    append_utf8(s, cp);
    EXPECT_EQ(static_cast<int>(s.size()), utf8_width(cp)) << std::hex << uint32_t(cp);
    EXPECT_EQ(decode_utf8(s), std::u32string(1, cp)) << std::hex << uint32_t(cp);
  }
}

TEST(Utf8, RejectsMalformed) {
  struct Case {
    std::string bytes;
    size_t bad;  // offset of the offending sequence
  };
  const Case cases[] = {
      {"ab\x80", 2},            // stray continuation byte
      {"\xC0\xAF", 0},          // overlong '/'
      {"\xC1\xBF", 0},          // overlong
      {"x\xE0\x80\xAF", 1},     // overlong 3-byte
      {"\xF0\x80\x80\xAF", 0},  // overlong 4-byte
      {"\xED\xA0\x80", 0},      // surrogate U+D800
      {"\xED\xBF\xBF", 0},      // surrogate U+DFFF
      {"\xF4\x90\x80\x80", 0},  // U+110000
      {"\xF5\x80\x80\x80", 0},  // lead byte above F4
      {"\xFF", 0},
      {"abc\xE2\x82", 3},      // truncated at end of input
      {"\xC3", 0},             // truncated 2-byte
      {"\xE2\x28\xA1", 0},     // bad second byte
      {"ok \xF0\x9F\x98", 3},  // truncated emoji
  };
  for (const Case& c : cases) {
    EXPECT_FALSE(is_valid_utf8(c.bytes));
    EXPECT_EQ(find_invalid_utf8(c.bytes), c.bad);
    const std::string expected = "invalid UTF-8 at byte " + std::to_string(c.bad);
    EXPECT_EQ(error_of([&] { decode_utf8(c.bytes); }), expected);
    EXPECT_EQ(error_of([&] { check_utf8(c.bytes); }), expected);
    EXPECT_EQ(error_of([&] { utf8_length(c.bytes); }), expected);
  }
}

TEST(Utf8, NextCodePoint) {
  const std::string s = "a\xC3\xA9\xFF";
  size_t pos = 0;
  char32_t cp = 0;
  ASSERT_TRUE(next_code_point(s, pos, cp));
  EXPECT_EQ(cp, U'a');
  ASSERT_TRUE(next_code_point(s, pos, cp));
  EXPECT_EQ(cp, char32_t(0xE9));
  EXPECT_EQ(pos, 3u);
  EXPECT_FALSE(next_code_point(s, pos, cp));
  EXPECT_EQ(pos, 3u);  // unchanged on failure
}

TEST(Utf8, EncodeRejectsNonScalars) {
  std::string s;
  EXPECT_THROW(append_utf8(s, 0xD800), Error);
  EXPECT_THROW(append_utf8(s, 0x110000), Error);
  EXPECT_TRUE(s.empty());
}

TEST(Utf8, DecodeAppends) {
  std::u32string out = U"x";
  decode_utf8("yz", out);
  EXPECT_EQ(out, U"xyz");
}

}  // namespace
}  // namespace kvrag
