// The WordPiece pipeline run over each text (the steps are listed in wordpiece_tokenizer.h):
// added-token splits, BertNormalizer, BertPreTokenizer and WordPiece, as the member functions of
// WordPieceTokenizer::Worker, and the Unicode character classes they use.
//
// Why ICU: matching HF id for id needs the Unicode character database — general categories
// (Cc/Cf/Co control characters, P* punctuation, Mn nonspacing marks), the White_Space
// property, canonical decompositions (NFD, Hangul included), canonical combining classes and
// the full lowercase mapping (İ → i̇). Hand-written tables would be large and go stale; ICU is
// the maintained copy of exactly those tables. Rust's `tokenizers` uses its own (sometimes
// older) tables, so characters whose properties changed between Unicode versions could in
// principle differ; none of the reference texts does.
//
// Offsets: each normalized character carries the index of the input code point it came from
// (a decomposed or lowercase-expanded character maps back to its source, a CJK padding space to
// the ideograph). A token spanning normalized characters [a, b) gets the input range
// [src[a], src[b-1] + 1), which is what HF's byte alignments give once converted to characters
// (min and max, in fact: canonical reordering of combining marks can swap two sources).

#include "text/wordpiece_internal.h"

#include <unicode/uchar.h>
#include <unicode/unorm2.h>
#include <unicode/ustring.h>
#include <unicode/utf16.h>

#include <algorithm>
#include <climits>
#include <iterator>

#include "core/error.h"
#include "text/utf8.h"
#include "text/wordpiece_tokenizer.h"

namespace kvrag {
namespace {

using Offset = std::pair<int32_t, int32_t>;

// --- character classes ---------------------------------------------------------------------

// ASCII classes, precomputed: whitespace (Rust char::is_whitespace), punctuation (Rust
// is_ascii_punctuation: 33-47, 58-64, 91-96, 123-126) and control characters.
enum AsciiClass : uint8_t { kOther = 0, kSpace = 1, kPunct = 2, kControl = 3 };

struct AsciiTable {
  uint8_t cls[128];
  constexpr AsciiTable() : cls() {
    for (int c = 0; c < 128; ++c) {
      if (c == ' ' || (c >= 9 && c <= 13)) {
        cls[c] = kSpace;
      } else if (c < 32 || c == 127) {
        cls[c] = kControl;
      } else if ((c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) ||
                 (c >= 123 && c <= 126)) {
        cls[c] = kPunct;
      } else {
        cls[c] = kOther;
      }
    }
  }
};
constexpr AsciiTable kAscii;

// Rust char::is_whitespace: the Unicode White_Space property.
inline bool is_whitespace(char32_t c) {
  return c < 0x80 ? kAscii.cls[c] == kSpace : u_isUWhiteSpace(static_cast<UChar32>(c));
}

// BertPreTokenizer's is_bert_punc: ASCII punctuation or any Unicode P* character.
inline bool is_punctuation(char32_t c) {
  return c < 0x80 ? kAscii.cls[c] == kPunct : u_ispunct(static_cast<UChar32>(c));
}

// BertNormalizer's is_control: the "Other" categories Cc, Cf and Co, except \t \n \r (which
// count as whitespace). HF's unicode_categories crate defines is_other as exactly these three.
inline bool is_control(char32_t c) {
  if (c == '\t' || c == '\n' || c == '\r') return false;
  const auto mask = U_GET_GC_MASK(static_cast<UChar32>(c));
  return (mask & (U_GC_CC_MASK | U_GC_CF_MASK | U_GC_CO_MASK)) != 0;
}

// BertNormalizer's is_chinese_char. These are HF's ranges, which differ from the original
// BERT's `_is_chinese_char` in one place: HF starts the Extension E/F range at U+2B920, not
// U+2B820. HF is the reference here.
inline bool is_chinese_char(char32_t c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
         (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
         (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

inline bool is_nonspacing_mark(char32_t c) {
  return u_charType(static_cast<UChar32>(c)) == U_NON_SPACING_MARK;
}

// Regex `\w` in Rust's regex crate (UTS #18): Alphabetic, marks, decimal digits, connector
// punctuation, Join_Control. Used by the single_word rule of added tokens.
inline bool is_word_char(char32_t c) {
  const auto u = static_cast<UChar32>(c);
  if (u_hasBinaryProperty(u, UCHAR_ALPHABETIC) || u_hasBinaryProperty(u, UCHAR_JOIN_CONTROL)) {
    return true;
  }
  return (U_GET_GC_MASK(u) & (U_GC_M_MASK | U_GC_ND_MASK | U_GC_PC_MASK)) != 0;
}

const UNormalizer2* nfd_instance() {
  static const UNormalizer2* nfd = [] {
    UErrorCode status = U_ZERO_ERROR;
    const UNormalizer2* n = unorm2_getNFDInstance(&status);
    if (U_FAILURE(status)) fail("ICU: cannot load NFD data: {}", u_errorName(status));
    return n;
  }();
  return nfd;
}

// Appends the code points of UTF-16 `buf[0, len)` to `out`.
template <typename F>
void for_each_utf16(const UChar* buf, int32_t len, F&& f) {
  for (int32_t i = 0; i < len;) {
    UChar32 c;
    U16_NEXT(buf, i, len, c);
    f(static_cast<char32_t>(c));
  }
}

}  // namespace

// --- the pipeline ------------------------------------------------------------------------------

void WordPieceTokenizer::Worker::emit(TokenId id, int32_t begin, int32_t end) {
  ids.push_back(id);
  if (offsets != nullptr) offsets->emplace_back(begin, end);
}

void WordPieceTokenizer::Worker::run(std::string_view input) {
  decode_utf8(input, text);
  KVRAG_CHECK(text.size() < static_cast<size_t>(INT32_MAX), "text of {} characters is too long",
              text.size());
  const auto n = static_cast<int32_t>(text.size());
  if (tk.raw_matcher_ && !tk.raw_matcher_->empty()) {
    find_splits(text.data(), n, *tk.raw_matcher_, raw_splits);
    for (const Split& s : raw_splits) {
      if (s.token >= 0) {
        emit(tk.added_[s.token].id, s.begin, s.end);
      } else {
        process_piece(s.begin, s.end);
      }
    }
  } else {
    process_piece(0, n);
  }
}

// HF AddedVocabulary::find_matches over s[0, n): the whole range as text and token splits.
void WordPieceTokenizer::Worker::find_splits(const char32_t* s, int32_t n, const AddedMatcher& m,
                                             std::vector<Split>& out) {
  out.clear();
  int32_t start_offset = 0;
  for (int32_t i = 0; i < n;) {
    const int p = m.match_at(s, static_cast<size_t>(n), static_cast<size_t>(i));
    if (p < 0) {
      ++i;
      continue;
    }
    int32_t start = i;
    int32_t stop = i + static_cast<int32_t>(m.patterns[p].text.size());
    i = stop;  // the matcher resumes after the match, even one discarded below
    const AddedToken& t = tk.added_[m.patterns[p].token];
    if (t.single_word) {
      const bool start_space = start == 0 || !is_word_char(s[start - 1]);
      const bool stop_space = stop == n || !is_word_char(s[stop]);
      if (!start_space || !stop_space) continue;
    }
    if (t.lstrip) {
      int32_t new_start = start;
      while (new_start > 0 && is_whitespace(s[new_start - 1])) --new_start;
      start = std::max(new_start, start_offset);
    }
    if (t.rstrip) {
      while (stop < n && is_whitespace(s[stop])) ++stop;
    }
    if (start_offset < start) out.push_back({start_offset, start, -1});
    out.push_back({start, stop, m.patterns[p].token});
    start_offset = stop;
  }
  if (start_offset < n) out.push_back({start_offset, n, -1});
}

// Normalizes text[begin, end), then pre-tokenizes and splits it into pieces.
void WordPieceTokenizer::Worker::process_piece(int32_t begin, int32_t end) {
  normalize(text.data(), begin, end);
  const auto n = static_cast<int32_t>(norm.size());
  if (tk.normalized_matcher_ && !tk.normalized_matcher_->empty()) {
    find_splits(norm.data(), n, *tk.normalized_matcher_, norm_splits);
    for (const Split& s : norm_splits) {
      if (s.token >= 0) {
        const Offset o = span(s.begin, s.end);
        emit(tk.added_[s.token].id, o.first, o.second);
      } else {
        pre_tokenize(s.begin, s.end);
      }
    }
  } else {
    pre_tokenize(0, n);
  }
}

// Input range of the normalized characters [a, b). Sources only decrease where canonical
// ordering swapped two combining marks, hence min/max rather than first/last.
Offset WordPieceTokenizer::Worker::span(int32_t a, int32_t b) const {
  int32_t lo = src[a], hi = src[a];
  for (int32_t k = a + 1; k < b; ++k) {
    lo = std::min(lo, src[k]);
    hi = std::max(hi, src[k]);
  }
  return {lo, hi + 1};
}

void WordPieceTokenizer::Worker::push(char32_t c, int32_t from) {
  norm.push_back(c);
  src.push_back(from);
}

// BertNormalizer over in[begin, end) into norm/src. HF applies its steps to the whole string
// one after the other: clean_text, handle_chinese_chars, strip_accents (NFD, then drop Mn),
// lowercase. All but NFD's canonical reordering are per character, so the first pass does
// them per character (ASCII is final after it) and a second pass, needed only where a
// non-ASCII character survived, reorders combining marks, drops Mn and lowercases.
void WordPieceTokenizer::Worker::normalize(const char32_t* in, int32_t begin, int32_t end) {
  const WordPieceOptions& o = tk.options_;
  norm.clear();
  src.clear();
  bool non_ascii = false, reorder = false;
  UChar buf[32];
  for (int32_t i = begin; i < end; ++i) {
    char32_t c = in[i];
    if (c < 0x80) {
      if (o.clean_text) {
        if (c == '\t' || c == '\n' || c == '\r') {
          c = ' ';
        } else if (kAscii.cls[c] == kControl) {
          continue;  // NUL and the other C0 controls, \v and \f included (they are Cc)
        }
      }
      if (o.lowercase && c >= 'A' && c <= 'Z') c += 'a' - 'A';
      push(c, i);
      continue;
    }
    if (o.clean_text) {
      if (c == 0xFFFD || is_control(c)) continue;
      if (is_whitespace(c)) {
        push(' ', i);
        continue;
      }
    }
    non_ascii = true;
    const bool pad = o.handle_chinese_chars && is_chinese_char(c);
    if (pad) push(' ', i);
    if (o.strip_accents) {
      UErrorCode status = U_ZERO_ERROR;
      const int32_t len = unorm2_getDecomposition(nfd_instance(), static_cast<UChar32>(c), buf,
                                                  static_cast<int32_t>(std::size(buf)), &status);
      if (U_SUCCESS(status) && len > 0) {
        for_each_utf16(buf, len, [&](char32_t d) {
          if (u_getCombiningClass(static_cast<UChar32>(d)) != 0) reorder = true;
          push(d, i);
        });
      } else {
        if (u_getCombiningClass(static_cast<UChar32>(c)) != 0) reorder = true;
        push(c, i);
      }
    } else {
      push(c, i);
    }
    if (pad) push(' ', i);
  }
  if (!non_ascii) return;

  if (reorder) canonical_order();
  norm_tmp.clear();
  src_tmp.clear();
  for (size_t k = 0; k < norm.size(); ++k) {
    char32_t c = norm[k];
    if (c < 0x80) {  // ASCII from phase 1 is final; from a decomposition it needs lowercasing
      if (o.lowercase && c >= 'A' && c <= 'Z') c += 'a' - 'A';
      norm_tmp.push_back(c);
      src_tmp.push_back(src[k]);
      continue;
    }
    if (o.strip_accents && is_nonspacing_mark(c)) continue;
    if (o.lowercase && u_tolower(static_cast<UChar32>(c)) != static_cast<UChar32>(c)) {
      // Full mapping (Rust char::to_lowercase): one character at a time, so no Final_Sigma.
      UChar one[2];
      int32_t one_len = 0;
      U16_APPEND_UNSAFE(one, one_len, static_cast<UChar32>(c));
      UErrorCode status = U_ZERO_ERROR;
      const int32_t len =
          u_strToLower(buf, static_cast<int32_t>(std::size(buf)), one, one_len, "", &status);
      if (U_SUCCESS(status)) {
        for_each_utf16(buf, len, [&](char32_t d) {
          norm_tmp.push_back(d);
          src_tmp.push_back(src[k]);
        });
        continue;
      }
    }
    norm_tmp.push_back(c);
    src_tmp.push_back(src[k]);
  }
  norm.swap(norm_tmp);
  src.swap(src_tmp);
}

// NFD's canonical ordering: within each run of characters with a nonzero combining class,
// a stable sort by that class. Sources travel with their characters.
void WordPieceTokenizer::Worker::canonical_order() {
  const size_t n = norm.size();
  for (size_t k = 1; k < n; ++k) {
    const uint8_t cc = u_getCombiningClass(static_cast<UChar32>(norm[k]));
    if (cc == 0) continue;
    size_t j = k;
    while (j > 0) {
      const uint8_t prev = u_getCombiningClass(static_cast<UChar32>(norm[j - 1]));
      if (prev <= cc) break;  // a starter (0) or an already ordered mark
      std::swap(norm[j], norm[j - 1]);
      std::swap(src[j], src[j - 1]);
      --j;
    }
  }
}

// BertPreTokenizer over norm[begin, end): drop whitespace, isolate each punctuation
// character; every word goes to WordPiece.
void WordPieceTokenizer::Worker::pre_tokenize(int32_t begin, int32_t end) {
  int32_t k = begin;
  while (k < end) {
    const char32_t c = norm[k];
    if (is_whitespace(c)) {
      ++k;
    } else if (is_punctuation(c)) {
      word_piece(k, k + 1);
      ++k;
    } else {
      int32_t j = k + 1;
      while (j < end && !is_whitespace(norm[j]) && !is_punctuation(norm[j])) ++j;
      word_piece(k, j);
      k = j;
    }
  }
}

// WordPiece over the word norm[begin, end): greedy longest-match-first from the left, "##"
// before every piece but the first; a word that cannot be covered, or longer than
// max_input_chars_per_word characters, becomes a single [UNK] over the whole word.
void WordPieceTokenizer::Worker::word_piece(int32_t begin, int32_t end) {
  const int32_t n = end - begin;
  const Offset whole = span(begin, end);
  if (n > tk.options_.max_input_chars_per_word) {
    emit(tk.unk_, whole.first, whole.second);
    return;
  }
  word.clear();
  char_byte.clear();
  for (int32_t k = begin; k < end; ++k) {
    char_byte.push_back(static_cast<uint32_t>(word.size()));
    append_utf8(word, norm[k]);
  }
  char_byte.push_back(static_cast<uint32_t>(word.size()));

  // Common case: the whole word is in the vocabulary.
  if (word.size() <= tk.max_piece_bytes_) {
    auto it = tk.ids_.find(word);
    if (it != tk.ids_.end()) {
      emit(it->second, whole.first, whole.second);
      return;
    }
  }

  const std::string& prefix = tk.options_.continuing_subword_prefix;
  pieces.clear();
  int32_t start = 0;
  while (start < n) {
    const size_t extra = start > 0 ? prefix.size() : 0;
    TokenId found = -1;
    int32_t stop = n;
    for (; stop > start; --stop) {
      const size_t bytes = char_byte[stop] - char_byte[start];
      if (bytes + extra > tk.max_piece_bytes_) continue;  // longer than any vocab entry
      key.assign(prefix, 0, extra);
      key.append(word, char_byte[start], bytes);
      auto it = tk.ids_.find(key);
      if (it != tk.ids_.end()) {
        found = it->second;
        break;
      }
    }
    if (found < 0) {
      emit(tk.unk_, whole.first, whole.second);
      return;
    }
    pieces.push_back({found, span(begin + start, begin + stop)});
    start = stop;
  }
  for (const auto& [id, off] : pieces) emit(id, off.first, off.second);
}

}  // namespace kvrag
