// SQuAD answer normalisation and DPR's has_answer (see answer_match.h).
#include "eval/answer_match.h"

#include <unicode/uchar.h>
#include <unicode/unorm2.h>
#include <unicode/utf16.h>

#include "core/error.h"
#include "text/utf8.h"

namespace kvrag {
namespace {

// Python's string.punctuation.
bool is_ascii_punctuation(char32_t c) {
  return (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) ||
         (c >= 123 && c <= 126);
}

bool is_punctuation(char32_t c) {
  return c < 0x80 ? is_ascii_punctuation(c) : u_ispunct(static_cast<UChar32>(c)) != 0;
}

// Python's str.isspace(): White_Space plus the separators of categories Zs/Zl/Zp and the
// ASCII information separators \x1c-\x1f.
bool is_space(char32_t c) {
  if (c < 0x80) return c == ' ' || (c >= 9 && c <= 13) || (c >= 0x1c && c <= 0x1f);
  return u_isUWhiteSpace(static_cast<UChar32>(c)) != 0;
}

// Python re's \w for str patterns: alphanumerics and the underscore.
bool is_word(char32_t c) {
  if (c < 0x80)
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  return u_isalnum(static_cast<UChar32>(c)) != 0 ||
         (U_GET_GC_MASK(static_cast<UChar32>(c)) & U_GC_N_MASK) != 0;
}

bool is_article(const std::u32string& s, size_t b, size_t e) {
  const size_t n = e - b;
  if (n == 1) return s[b] == 'a';
  if (n == 2) return s[b] == 'a' && s[b + 1] == 'n';
  if (n == 3) return s[b] == 't' && s[b + 1] == 'h' && s[b + 2] == 'e';
  return false;
}

}  // namespace

std::string normalize_answer(std::string_view text) {
  // 1-2: lowercase, drop punctuation.
  std::u32string s;
  decode_utf8(text, s);
  size_t w = 0;
  for (char32_t c : s) {
    if (is_punctuation(c)) continue;
    s[w++] = c < 0x80 ? (c >= 'A' && c <= 'Z' ? c + 32 : c)
                      : static_cast<char32_t>(u_tolower(static_cast<UChar32>(c)));
  }
  s.resize(w);
  // 3: articles, as maximal runs of word characters, become a space.
  std::u32string t;
  t.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    if (!is_word(s[i])) {
      t.push_back(s[i++]);
      continue;
    }
    size_t j = i;
    while (j < s.size() && is_word(s[j])) ++j;
    if (is_article(s, i, j)) {
      t.push_back(U' ');
    } else {
      t.append(s, i, j - i);
    }
    i = j;
  }
  // 4: whitespace runs → one space, none at the ends.
  std::string out;
  out.reserve(text.size());
  bool pending_space = false;
  for (char32_t c : t) {
    if (is_space(c)) {
      pending_space = !out.empty();
      continue;
    }
    if (pending_space) out += ' ';
    pending_space = false;
    append_utf8(out, c);
  }
  return out;
}

std::string answer_tokens(std::string_view text) {
  // NFD through ICU's UTF-16 interface.
  const std::u32string cps = decode_utf8(text);
  std::u16string u16;
  u16.reserve(cps.size());
  for (char32_t c : cps) {
    if (c < 0x10000) {
      u16.push_back(static_cast<char16_t>(c));
    } else {
      u16.push_back(static_cast<char16_t>(0xD7C0 + (c >> 10)));
      u16.push_back(static_cast<char16_t>(0xDC00 | (c & 0x3FF)));
    }
  }
  UErrorCode status = U_ZERO_ERROR;
  const UNormalizer2* nfd = unorm2_getNFDInstance(&status);
  std::u16string norm(u16.size() * 3 + 16, u'\0');
  int32_t len = 0;
  if (U_SUCCESS(status)) {
    len = unorm2_normalize(nfd, reinterpret_cast<const UChar*>(u16.data()),
                           static_cast<int32_t>(u16.size()), reinterpret_cast<UChar*>(norm.data()),
                           static_cast<int32_t>(norm.size()), &status);
  }
  KVRAG_CHECK(U_SUCCESS(status), "answer matching: NFD failed: {}", u_errorName(status));
  norm.resize(static_cast<size_t>(len));

  // Tokens: runs of L/N/M; any other non-Z, non-C character alone.
  std::string out;
  out.reserve(text.size() + 8);
  bool in_word = false;
  const auto n = static_cast<int32_t>(norm.size());
  for (int32_t i = 0; i < n;) {
    UChar32 c;
    U16_NEXT(norm.data(), i, n, c);
    const uint32_t mask = U_GET_GC_MASK(c);
    if (mask & (U_GC_L_MASK | U_GC_N_MASK | U_GC_M_MASK)) {
      if (!in_word && !out.empty()) out += ' ';
      append_utf8(out, static_cast<char32_t>(u_tolower(c)));
      in_word = true;
    } else if (mask & (U_GC_Z_MASK | U_GC_C_MASK)) {
      in_word = false;
    } else {
      if (!out.empty()) out += ' ';
      append_utf8(out, static_cast<char32_t>(u_tolower(c)));
      in_word = false;
    }
  }
  return out;
}

bool contains_tokens(std::string_view text, std::string_view answer) {
  if (answer.empty() || answer.size() > text.size()) return false;
  // Tokens are separated by single spaces: a whole-token match is a substring match whose ends
  // touch the string's ends or a space.
  for (size_t pos = text.find(answer); pos != std::string_view::npos;
       pos = text.find(answer, pos + 1)) {
    const size_t end = pos + answer.size();
    const bool left = pos == 0 || text[pos - 1] == ' ';
    const bool right = end == text.size() || text[end] == ' ';
    if (left && right) return true;
  }
  return false;
}

bool contains_answer(std::string_view text, std::string_view answer) {
  return contains_tokens(answer_tokens(text), answer_tokens(answer));
}

bool contains_any_answer(std::string_view text, const std::vector<std::string>& answers) {
  const std::string t = answer_tokens(text);
  for (const std::string& a : answers) {
    if (contains_tokens(t, answer_tokens(a))) return true;
  }
  return false;
}

}  // namespace kvrag
