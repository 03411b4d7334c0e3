// WordPiece tokenizer, a port of Hugging Face tokenizers' BERT pipeline (see the header).
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

#include "text/wordpiece_tokenizer.h"

#include <unicode/uchar.h>
#include <unicode/unorm2.h>
#include <unicode/ustring.h>
#include <unicode/utf16.h>

#include <algorithm>
#include <bitset>
#include <cerrno>
#include <climits>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "text/utf8.h"

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

// --- HF WordPiece decoder cleanup --------------------------------------------------------------

void replace_all(std::string& s, std::string_view from, std::string_view to) {
  size_t pos = 0;
  while ((pos = s.find(from, pos)) != std::string::npos) {
    s.replace(pos, from.size(), to);
    pos += to.size();
  }
}

void cleanup_token(std::string& s) {
  static const std::pair<std::string_view, std::string_view> kRules[] = {
      {" .", "."},   {" ?", "?"},     {" !", "!"},          {" ,", ","},
      {" ' ", "'"},  {" n't", "n't"}, {" 'm", "'m"},        {" do not", " don't"},
      {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"},
  };
  for (const auto& [from, to] : kRules) replace_all(s, from, to);
}

}  // namespace

// --- added tokens ------------------------------------------------------------------------------

// Leftmost-longest matching of a set of patterns (what HF does with aho-corasick, MatchKind::
// LeftmostLongest). Sets are small (a handful of special tokens), so candidates are found by
// their first character and compared directly.
struct WordPieceTokenizer::AddedMatcher {
  struct Pattern {
    std::u32string text;
    int token;  // index into added_
  };
  std::vector<Pattern> patterns;
  std::unordered_map<char32_t, std::vector<int>> by_first;  // longest pattern first
  std::bitset<128> ascii_first;

  void add(std::u32string text, int token) {
    if (text.empty()) return;
    for (const Pattern& p : patterns) {
      if (p.text == text) return;  // the first token with this content wins
    }
    patterns.push_back({std::move(text), token});
  }

  void build() {
    for (int i = 0; i < static_cast<int>(patterns.size()); ++i) {
      const char32_t first = patterns[i].text[0];
      by_first[first].push_back(i);
      if (first < 0x80) ascii_first.set(first);
    }
    for (auto& [first, list] : by_first) {
      std::stable_sort(list.begin(), list.end(), [&](int a, int b) {
        return patterns[a].text.size() > patterns[b].text.size();
      });
    }
  }

  bool empty() const { return patterns.empty(); }

  // The longest pattern that starts at s[i], or -1.
  int match_at(const char32_t* s, size_t n, size_t i) const {
    const char32_t c = s[i];
    if (c < 0x80 && !ascii_first.test(c)) return -1;
    auto it = by_first.find(c);
    if (it == by_first.end()) return -1;
    for (int p : it->second) {
      const std::u32string& t = patterns[p].text;
      if (t.size() <= n - i &&
          std::char_traits<char32_t>::compare(s + i, t.data(), t.size()) == 0) {
        return p;
      }
    }
    return -1;
  }
};

namespace {

// A piece of text: [begin, end) and the added token it is (-1: ordinary text).
struct Split {
  int32_t begin, end;
  int token;
};

}  // namespace

// Per-call state. Buffers are reused across the words of one text, so the hot loop allocates
// nothing once they have grown.
struct WordPieceTokenizer::Worker {
  const WordPieceTokenizer& tk;
  std::vector<TokenId>& ids;
  std::vector<Offset>* offsets;

  std::u32string text;             // decoded input
  std::u32string norm, norm_tmp;   // normalized piece
  std::vector<int32_t> src, src_tmp;  // input index of each normalized character
  std::string word;                // UTF-8 of the current word
  std::vector<uint32_t> char_byte; // byte offset of each character of `word`, plus its size
  std::string key;                 // vocabulary lookup key
  std::vector<std::pair<TokenId, Offset>> pieces;  // pieces of the current word
  std::vector<Split> raw_splits, norm_splits;

  Worker(const WordPieceTokenizer& t, std::vector<TokenId>& i, std::vector<Offset>* o)
      : tk(t), ids(i), offsets(o) {}

  void emit(TokenId id, int32_t begin, int32_t end) {
    ids.push_back(id);
    if (offsets != nullptr) offsets->emplace_back(begin, end);
  }

  void run(std::string_view input) {
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
  void find_splits(const char32_t* s, int32_t n, const AddedMatcher& m, std::vector<Split>& out) {
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
  void process_piece(int32_t begin, int32_t end) {
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
  Offset span(int32_t a, int32_t b) const {
    int32_t lo = src[a], hi = src[a];
    for (int32_t k = a + 1; k < b; ++k) {
      lo = std::min(lo, src[k]);
      hi = std::max(hi, src[k]);
    }
    return {lo, hi + 1};
  }

  void push(char32_t c, int32_t from) {
    norm.push_back(c);
    src.push_back(from);
  }

  // BertNormalizer over in[begin, end) into norm/src. HF applies its steps to the whole string
  // one after the other: clean_text, handle_chinese_chars, strip_accents (NFD, then drop Mn),
  // lowercase. All but NFD's canonical reordering are per character, so the first pass does
  // them per character (ASCII is final after it) and a second pass, needed only where a
  // non-ASCII character survived, reorders combining marks, drops Mn and lowercases.
  void normalize(const char32_t* in, int32_t begin, int32_t end) {
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
        const int32_t len = u_strToLower(buf, static_cast<int32_t>(std::size(buf)), one, one_len,
                                         "", &status);
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
  void canonical_order() {
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
  void pre_tokenize(int32_t begin, int32_t end) {
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
  void word_piece(int32_t begin, int32_t end) {
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
};

// --- construction ------------------------------------------------------------------------------

WordPieceTokenizer::WordPieceTokenizer() = default;
WordPieceTokenizer::~WordPieceTokenizer() = default;

void WordPieceTokenizer::finish(std::vector<AddedToken> added, const std::string& source) {
  KVRAG_CHECK(options_.max_input_chars_per_word >= 0, "{}: max_input_chars_per_word {} < 0",
              source, options_.max_input_chars_per_word);
  auto unk = ids_.find(options_.unk_token);
  KVRAG_CHECK(unk != ids_.end(), "{}: unknown token {} is not in the vocabulary", source,
              options_.unk_token);
  unk_ = unk->second;

  // Added tokens keep their own ids (usually those of the same strings in the vocabulary); an id
  // past the model's vocabulary extends it.
  for (const AddedToken& t : added) {
    KVRAG_CHECK(t.id >= 0, "{}: added token {} has negative id {}", source, t.content, t.id);
    KVRAG_CHECK(t.id < (1 << 24), "{}: added token {} has id {}, too large", source, t.content,
                t.id);
    check_utf8(t.content);
    if (static_cast<size_t>(t.id) >= vocab_.size()) vocab_.resize(static_cast<size_t>(t.id) + 1);
    vocab_[t.id] = t.content;
  }
  added_ = std::move(added);

  special_.assign(vocab_.size(), false);
  for (const AddedToken& t : added_) {
    if (t.special) special_[t.id] = true;
  }
  max_piece_bytes_ = 0;
  for (const auto& [piece, id] : ids_) max_piece_bytes_ = std::max(max_piece_bytes_, piece.size());

  // Patterns: raw content for normalized = false, normalized content for normalized = true
  // (HF normalizes the content with the tokenizer's own normalizer).
  raw_matcher_ = std::make_unique<AddedMatcher>();
  normalized_matcher_ = std::make_unique<AddedMatcher>();
  std::vector<TokenId> unused;
  Worker w(*this, unused, nullptr);
  for (int i = 0; i < static_cast<int>(added_.size()); ++i) {
    std::u32string content = decode_utf8(added_[i].content);
    if (added_[i].normalized) {
      w.normalize(content.data(), 0, static_cast<int32_t>(content.size()));
      normalized_matcher_->add(w.norm, i);
    } else {
      raw_matcher_->add(std::move(content), i);
    }
  }
  raw_matcher_->build();
  normalized_matcher_->build();
}

std::unique_ptr<WordPieceTokenizer> WordPieceTokenizer::from_vocab_file(const std::string& path,
                                                                        WordPieceOptions options) {
  if (std::filesystem::is_directory(path)) fail("vocab {}: is a directory", path);
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("vocab {}: cannot open: {}", path, std::strerror(errno));

  std::unique_ptr<WordPieceTokenizer> tk(new WordPieceTokenizer());
  tk->options_ = std::move(options);
  std::string line;
  for (size_t n = 1; std::getline(in, line); ++n) {
    // HF reads each line with trim_end(): "\r\n" files and trailing blanks are fine.
    while (!line.empty() && std::strchr(" \t\r\n\v\f", line.back()) != nullptr) line.pop_back();
    const size_t bad = find_invalid_utf8(line);
    if (bad != std::string::npos) fail("vocab {}: line {}: invalid UTF-8 at byte {}", path, n, bad);
    const auto id = static_cast<TokenId>(tk->vocab_.size());
    tk->ids_[line] = id;  // a repeated line takes the later id, as in HF
    tk->vocab_.push_back(std::move(line));
  }
  if (in.bad()) fail("vocab {}: read error: {}", path, std::strerror(errno));
  if (tk->vocab_.empty()) fail("vocab {}: empty file", path);

  // The special tokens HF's BertTokenizerFast registers (normalized: false).
  std::vector<AddedToken> added;
  auto special = [&](const char* name, bool required) -> TokenId {
    auto it = tk->ids_.find(name);
    if (it == tk->ids_.end()) {
      if (required) fail("vocab {}: no {} token", path, name);
      return -1;
    }
    added.push_back({name, it->second});
    return it->second;
  };
  tk->pad_ = special("[PAD]", true);
  special(tk->options_.unk_token.c_str(), true);
  tk->cls_ = special("[CLS]", true);
  tk->sep_ = special("[SEP]", true);
  tk->mask_ = special("[MASK]", false);
  tk->finish(std::move(added), "vocab " + path);
  return tk;
}

namespace {

using nlohmann::json;

// A field of `j`: its value if present and not null, else `fallback`.
template <typename T>
T get_or(const json& j, const char* key, T fallback) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  return it->get<T>();
}

std::string type_of(const json& j) {
  if (j.is_null()) return "null";
  return j.is_object() ? get_or<std::string>(j, "type", "(untyped)") : "(not an object)";
}

}  // namespace

std::unique_ptr<WordPieceTokenizer> WordPieceTokenizer::from_tokenizer_json(
    const std::string& path) {
  const std::string source = "tokenizer " + path;
  if (std::filesystem::is_directory(path)) fail("{}: is a directory", source);
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open: {}", source, std::strerror(errno));

  std::unique_ptr<WordPieceTokenizer> tk(new WordPieceTokenizer());
  std::vector<AddedToken> added;
  try {
    json j;
    try {
      j = json::parse(in);
    } catch (const json::exception& e) {
      fail("not valid JSON: {}", e.what());
    }
    KVRAG_CHECK(j.is_object(), "not a tokenizer.json (top level is not an object)");

    // model: WordPiece only. Old files omit "type"; they are recognized by their fields.
    const json& model = j.contains("model") ? j["model"] : json();
    KVRAG_CHECK(model.is_object(), "no \"model\" object");
    std::string type = get_or<std::string>(model, "type", "");
    if (type.empty() && model.contains("continuing_subword_prefix") &&
        model.contains("max_input_chars_per_word") && !model.contains("merges")) {
      type = "WordPiece";
    }
    KVRAG_CHECK(type == "WordPiece", "model type is {}, only WordPiece is supported",
                type.empty() ? "(untyped)" : type);
    WordPieceOptions& o = tk->options_;
    o.unk_token = get_or<std::string>(model, "unk_token", "[UNK]");
    o.continuing_subword_prefix = get_or<std::string>(model, "continuing_subword_prefix", "##");
    o.max_input_chars_per_word = get_or<int>(model, "max_input_chars_per_word", 100);

    const json& vocab = model.contains("vocab") ? model["vocab"] : json();
    KVRAG_CHECK(vocab.is_object() && !vocab.empty(), "model has no vocabulary");
    int64_t max_id = -1;
    for (auto it = vocab.begin(); it != vocab.end(); ++it) {
      KVRAG_CHECK(it.value().is_number_integer() && it.value().get<int64_t>() >= 0 &&
                      it.value().get<int64_t>() < (1 << 24),
                  "vocab entry {} has a bad id {}", it.key(), it.value().dump());
      max_id = std::max(max_id, it.value().get<int64_t>());
    }
    tk->vocab_.assign(static_cast<size_t>(max_id + 1), std::string());
    std::vector<bool> seen(tk->vocab_.size(), false);
    for (auto it = vocab.begin(); it != vocab.end(); ++it) {
      const auto id = it.value().get<TokenId>();
      KVRAG_CHECK(!seen[id], "vocab id {} is used twice (second: {})", id, it.key());
      seen[id] = true;
      tk->vocab_[id] = it.key();
      tk->ids_[it.key()] = id;
    }

    // normalizer: BertNormalizer, or none at all.
    const json& normalizer = j.contains("normalizer") ? j["normalizer"] : json();
    if (normalizer.is_null()) {
      o.clean_text = o.handle_chinese_chars = o.strip_accents = o.lowercase = false;
    } else {
      KVRAG_CHECK(type_of(normalizer) == "BertNormalizer",
                  "normalizer {} is not supported (expected BertNormalizer)", type_of(normalizer));
      o.clean_text = get_or<bool>(normalizer, "clean_text", true);
      o.handle_chinese_chars = get_or<bool>(normalizer, "handle_chinese_chars", true);
      o.lowercase = get_or<bool>(normalizer, "lowercase", true);
      o.strip_accents = get_or<bool>(normalizer, "strip_accents", o.lowercase);  // null: follow
    }

    const json& pre = j.contains("pre_tokenizer") ? j["pre_tokenizer"] : json();
    KVRAG_CHECK(type_of(pre) == "BertPreTokenizer",
                "pre_tokenizer {} is not supported (expected BertPreTokenizer)", type_of(pre));

    const json& decoder = j.contains("decoder") ? j["decoder"] : json();
    if (type_of(decoder) == "WordPiece") o.decode_cleanup = get_or<bool>(decoder, "cleanup", true);

    // added_tokens: [{"id", "content", "special", "normalized", "lstrip", "rstrip", ...}]
    if (j.contains("added_tokens") && !j["added_tokens"].is_null()) {
      KVRAG_CHECK(j["added_tokens"].is_array(), "added_tokens is not an array");
      for (const json& t : j["added_tokens"]) {
        KVRAG_CHECK(t.is_object() && t.contains("id") && t.contains("content"),
                    "added token without id or content: {}", t.dump());
        AddedToken a;
        a.id = t["id"].get<TokenId>();
        a.content = t["content"].get<std::string>();
        a.special = get_or<bool>(t, "special", false);
        a.normalized = get_or<bool>(t, "normalized", !a.special);
        a.lstrip = get_or<bool>(t, "lstrip", false);
        a.rstrip = get_or<bool>(t, "rstrip", false);
        a.single_word = get_or<bool>(t, "single_word", false);
        added.push_back(std::move(a));
      }
    }
    auto id_of = [&](const std::string& piece) -> TokenId {
      auto it = tk->ids_.find(piece);
      if (it != tk->ids_.end()) return it->second;
      for (const AddedToken& a : added) {
        if (a.content == piece) return a.id;
      }
      return -1;
    };

    // post_processor: [CLS] $A [SEP], as BertProcessing or the equivalent TemplateProcessing.
    const json& post = j.contains("post_processor") ? j["post_processor"] : json();
    const std::string post_type = type_of(post);
    tk->cls_ = id_of("[CLS]");
    tk->sep_ = id_of("[SEP]");
    if (post_type == "null") {
      tk->add_cls_sep_ = false;
    } else if (post_type == "BertProcessing") {
      KVRAG_CHECK(post.contains("cls") && post.contains("sep"), "BertProcessing without cls/sep");
      tk->cls_ = post["cls"].at(1).get<TokenId>();
      tk->sep_ = post["sep"].at(1).get<TokenId>();
    } else if (post_type == "TemplateProcessing") {
      const json& single = post.at("single");
      auto special_id = [&](const json& item) -> TokenId {
        KVRAG_CHECK(item.contains("SpecialToken"), "unsupported template item {}", item.dump());
        const std::string name = item["SpecialToken"].at("id").get<std::string>();
        const json& ids = post.at("special_tokens").at(name).at("ids");
        KVRAG_CHECK(ids.size() == 1, "template special token {} has {} ids", name, ids.size());
        return ids[0].get<TokenId>();
      };
      KVRAG_CHECK(single.is_array() && single.size() == 3 && single[1].contains("Sequence"),
                  "TemplateProcessing other than [CLS] $A [SEP] is not supported");
      tk->cls_ = special_id(single[0]);
      tk->sep_ = special_id(single[2]);
    } else {
      fail("post_processor {} is not supported (expected BertProcessing)", post_type);
    }
    if (tk->add_cls_sep_) {
      KVRAG_CHECK(tk->cls_ >= 0 && tk->sep_ >= 0, "no [CLS]/[SEP] token");
    }

    const json& padding = j.contains("padding") ? j["padding"] : json();
    tk->pad_ = padding.is_object() && padding.contains("pad_id")
                   ? padding["pad_id"].get<TokenId>()
                   : id_of("[PAD]");
    tk->mask_ = id_of("[MASK]");
    tk->finish(std::move(added), "model");
  } catch (Error& e) {
    throw e.with_context(source);
  } catch (const json::exception& e) {
    fail("{}: malformed: {}", source, e.what());
  }
  return tk;
}

// --- encoding ----------------------------------------------------------------------------------

void WordPieceTokenizer::tokenize(std::string_view text, std::vector<TokenId>& ids,
                                  std::vector<Offset>* offsets) const {
  Worker w(*this, ids, offsets);
  w.run(text);
}

std::vector<TokenId> WordPieceTokenizer::encode(std::string_view text, bool add_special) const {
  std::vector<TokenId> ids;
  ids.reserve(text.size() / 3 + 4);
  const bool wrap = add_special && add_cls_sep_;
  if (wrap) ids.push_back(cls_);
  tokenize(text, ids, nullptr);
  if (wrap) ids.push_back(sep_);
  return ids;
}

namespace {

void pad_to(Encoding& e, size_t length, TokenId pad, const std::string& pad_piece) {
  if (e.ids.size() >= length) return;
  const size_t n = length - e.ids.size();
  e.ids.insert(e.ids.end(), n, pad);
  e.type_ids.insert(e.type_ids.end(), n, 0);
  e.attention_mask.insert(e.attention_mask.end(), n, 0);
  e.offsets.insert(e.offsets.end(), n, Offset{0, 0});
  e.tokens.insert(e.tokens.end(), n, pad_piece);
}

}  // namespace

Encoding WordPieceTokenizer::encode_full(std::string_view text,
                                         const EncodeOptions& options) const {
  const bool wrap = options.add_special && add_cls_sep_;
  const int n_special = wrap ? 2 : 0;
  KVRAG_CHECK(options.max_length <= 0 || options.max_length >= n_special,
              "max_length {} leaves no room for the {} special tokens", options.max_length,
              n_special);
  KVRAG_CHECK(!options.pad_to_max_length || options.max_length > 0,
              "pad_to_max_length needs max_length > 0");

  std::vector<TokenId> ids;
  std::vector<Offset> offsets;
  ids.reserve(text.size() / 3 + 4);
  offsets.reserve(ids.capacity());
  tokenize(text, ids, &offsets);
  if (options.max_length > 0) {
    const size_t budget = static_cast<size_t>(options.max_length - n_special);
    if (ids.size() > budget) {
      ids.resize(budget);
      offsets.resize(budget);
    }
  }

  Encoding e;
  const size_t n = ids.size() + n_special;
  e.ids.reserve(n);
  e.offsets.reserve(n);
  if (wrap) {
    e.ids.push_back(cls_);
    e.offsets.emplace_back(0, 0);
  }
  e.ids.insert(e.ids.end(), ids.begin(), ids.end());
  e.offsets.insert(e.offsets.end(), offsets.begin(), offsets.end());
  if (wrap) {
    e.ids.push_back(sep_);
    e.offsets.emplace_back(0, 0);
  }
  e.type_ids.assign(n, 0);
  e.attention_mask.assign(n, 1);
  e.tokens.reserve(n);
  for (TokenId id : e.ids) e.tokens.push_back(vocab_[id]);

  if (options.pad_to_max_length) {
    KVRAG_CHECK(pad_ >= 0, "cannot pad: the vocabulary has no [PAD] token");
    pad_to(e, static_cast<size_t>(options.max_length), pad_, vocab_[pad_]);
  }
  return e;
}

std::vector<Encoding> WordPieceTokenizer::encode_batch(const std::vector<std::string>& texts,
                                                       const EncodeOptions& options) const {
  std::vector<Encoding> out;
  out.reserve(texts.size());
  EncodeOptions row = options;
  row.pad_to_max_length = false;
  KVRAG_CHECK(!options.pad_to_max_length || options.max_length > 0,
              "pad_to_max_length needs max_length > 0");
  size_t longest = 0;
  for (const std::string& t : texts) {
    out.push_back(encode_full(t, row));
    longest = std::max(longest, out.back().ids.size());
  }
  const size_t length =
      options.pad_to_max_length ? static_cast<size_t>(options.max_length) : longest;
  bool needs_pad = false;
  for (const Encoding& e : out) needs_pad |= e.ids.size() < length;
  if (needs_pad) {
    KVRAG_CHECK(pad_ >= 0, "cannot pad: the vocabulary has no [PAD] token");
    for (Encoding& e : out) pad_to(e, length, pad_, vocab_[pad_]);
  }
  return out;
}

// --- decoding and lookups ----------------------------------------------------------------------

bool WordPieceTokenizer::is_special(TokenId id) const {
  return id >= 0 && static_cast<size_t>(id) < special_.size() && special_[id];
}

std::string WordPieceTokenizer::decode(const std::vector<TokenId>& ids) const {
  const std::string& prefix = options_.continuing_subword_prefix;
  std::string out, token;
  bool first = true;
  for (TokenId id : ids) {
    if (id < 0 || static_cast<size_t>(id) >= vocab_.size() || is_special(id)) continue;
    const std::string& piece = vocab_[id];
    if (first) {
      token = piece;
    } else if (!prefix.empty() && piece.compare(0, prefix.size(), prefix) == 0) {
      token.assign(piece, prefix.size(), std::string::npos);
    } else {
      token.assign(1, ' ');
      token += piece;
    }
    first = false;
    if (options_.decode_cleanup) cleanup_token(token);
    out += token;
  }
  return out;
}

std::string WordPieceTokenizer::id_to_piece(TokenId id) const {
  KVRAG_CHECK(id >= 0 && static_cast<size_t>(id) < vocab_.size(),
              "token id {} is outside the vocabulary [0, {})", id, vocab_.size());
  return vocab_[id];
}

std::optional<TokenId> WordPieceTokenizer::piece_to_id(std::string_view piece) const {
  for (const AddedToken& t : added_) {
    if (t.content == piece) return t.id;
  }
  auto it = ids_.find(std::string(piece));
  if (it == ids_.end()) return std::nullopt;
  return it->second;
}

}  // namespace kvrag
