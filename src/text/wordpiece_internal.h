// Internal to the WordPiece tokenizer (not part of kvrag's API; only src/text/wordpiece*.cpp
// include it): the definitions of WordPieceTokenizer's private helpers, shared by
// wordpiece_tokenizer.cpp (construction, encoding, decoding) and wordpiece_pipeline.cpp (the
// pipeline run over each text).
#pragma once

#include <algorithm>
#include <bitset>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "text/wordpiece_tokenizer.h"

namespace kvrag {

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

// Per-call state. Buffers are reused across the words of one text, so the hot loop allocates
// nothing once they have grown. The steps are defined, in the order they run, in
// wordpiece_pipeline.cpp.
struct WordPieceTokenizer::Worker {
  using Offset = std::pair<int32_t, int32_t>;

  // A piece of text: [begin, end) and the added token it is (-1: ordinary text).
  struct Split {
    int32_t begin, end;
    int token;
  };

  const WordPieceTokenizer& tk;
  std::vector<TokenId>& ids;
  std::vector<Offset>* offsets;

  std::u32string text;                // decoded input
  std::u32string norm, norm_tmp;      // normalized piece
  std::vector<int32_t> src, src_tmp;  // input index of each normalized character
  std::string word;                   // UTF-8 of the current word
  std::vector<uint32_t> char_byte;    // byte offset of each character of `word`, plus its size
  std::string key;                    // vocabulary lookup key
  std::vector<std::pair<TokenId, Offset>> pieces;  // pieces of the current word
  std::vector<Split> raw_splits, norm_splits;

  Worker(const WordPieceTokenizer& t, std::vector<TokenId>& i, std::vector<Offset>* o)
      : tk(t), ids(i), offsets(o) {}

  void emit(TokenId id, int32_t begin, int32_t end);
  // The whole pipeline over one text: added-token splits, then process_piece on the rest.
  void run(std::string_view input);
  void find_splits(const char32_t* s, int32_t n, const AddedMatcher& m, std::vector<Split>& out);
  void process_piece(int32_t begin, int32_t end);
  Offset span(int32_t a, int32_t b) const;
  void push(char32_t c, int32_t from);
  void normalize(const char32_t* in, int32_t begin, int32_t end);  // BertNormalizer
  void canonical_order();
  void pre_tokenize(int32_t begin, int32_t end);  // BertPreTokenizer
  void word_piece(int32_t begin, int32_t end);    // WordPiece
};

}  // namespace kvrag
