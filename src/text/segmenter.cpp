// Token windows over documents (see segmenter.h for the conventions).
#include "text/segmenter.h"

#include <algorithm>
#include <string_view>

#include "core/error.h"
#include "text/utf8.h"

namespace kvrag {
namespace {

// Byte offset of every code point of `s`, plus s.size() at the end: [n_code_points + 1].
// `s` must be valid UTF-8 (the tokenizer has checked it).
std::vector<size_t> code_point_bytes(std::string_view s) {
  std::vector<size_t> bytes;
  bytes.reserve(s.size() + 1);
  size_t pos = 0;
  char32_t cp;
  while (pos < s.size()) {
    bytes.push_back(pos);
    if (!next_code_point(s, pos, cp)) fail("invalid UTF-8 at byte {}", pos);
  }
  bytes.push_back(s.size());
  return bytes;
}

// Word structure of an encoding: starts[i] is true where token i begins a word, i.e. is not a
// "##" continuation of the token before it. starts has n + 1 entries; starts[n] = true.
std::vector<bool> word_starts(const Encoding& e, const std::string& prefix) {
  const size_t n = e.ids.size();
  std::vector<bool> starts(n + 1, true);
  if (prefix.empty()) return starts;
  for (size_t i = 1; i < n; ++i) {
    const std::string& piece = e.tokens[i];
    starts[i] = !(piece.size() > prefix.size() && piece.compare(0, prefix.size(), prefix) == 0);
  }
  return starts;
}

// The largest word start in [lo, t], or t if the word around t began before lo.
int32_t word_start_at_or_before(const std::vector<bool>& starts, int32_t t, int32_t lo) {
  for (int32_t k = t; k >= lo; --k) {
    if (starts[k]) return k;
  }
  return t;
}

// The smallest word start in [t, hi], or t if there is none.
int32_t word_start_at_or_after(const std::vector<bool>& starts, int32_t t, int32_t hi) {
  for (int32_t k = t; k <= hi; ++k) {
    if (starts[k]) return k;
  }
  return t;
}

// Where a window starting at `s` with room for `budget` tokens ends: s + budget, moved back to
// the start of the word it would split (unless that word began at or before s).
int32_t window_end(const std::vector<bool>& starts, int32_t s, int32_t budget, int32_t n) {
  const int32_t e = s + budget;
  if (e >= n) return n;
  const int32_t k = word_start_at_or_before(starts, e, s + 1);
  return starts[k] ? k : e;
}

}  // namespace

void validate(const SegmenterOptions& options) {
  KVRAG_CHECK(options.stride >= 0, "segmenter: stride must be ≥ 0, got {}", options.stride);
  KVRAG_CHECK(options.window >= options.stride + 4,
              "segmenter: window {} leaves no room for a stride of {} (window must be at least "
              "stride + 4: [CLS], [SEP], [SEP] and one new token)",
              options.window, options.stride);
}

std::string encoder_input(const Segment& segment, bool prepend_title) {
  if (!prepend_title || segment.title.empty()) return segment.text;
  std::string s;
  s.reserve(segment.title.size() + segment.text.size() + 7);
  s += segment.title;
  s += " [SEP] ";
  s += segment.text;
  return s;
}

std::vector<Segment> segment_document(const Document& doc, const WordPieceTokenizer& tokenizer,
                                      const SegmenterOptions& options) {
  validate(options);
  EncodeOptions plain;
  plain.add_special = false;
  const std::string& prefix = tokenizer.options().continuing_subword_prefix;

  // The title, cut at a word boundary if it would leave too little room for text.
  std::string title = doc.title;
  int32_t budget = options.window - 2;  // [CLS] text [SEP]
  if (options.prepend_title && !title.empty()) {
    const Encoding t = tokenizer.encode_full(title, plain);
    const auto n_title = static_cast<int32_t>(t.ids.size());
    const int32_t cap =
        std::min((options.window - 3) / 2, options.window - 3 - (options.stride + 1));
    int32_t used = n_title;
    if (n_title > cap) {
      const std::vector<bool> starts = word_starts(t, prefix);
      used = cap > 0 ? window_end(starts, 0, cap, n_title) : 0;
      const std::vector<size_t> bytes = code_point_bytes(title);
      title = used > 0 ? title.substr(0, bytes[t.offsets[used - 1].second]) : std::string();
    }
    if (!title.empty()) budget = options.window - 3 - used;  // [CLS] title [SEP] text [SEP]
  }

  const Encoding e = tokenizer.encode_full(doc.text, plain);
  const auto n = static_cast<int32_t>(e.ids.size());
  std::vector<Segment> out;
  if (n == 0) return out;
  const std::vector<bool> starts = word_starts(e, prefix);
  const std::vector<size_t> bytes = code_point_bytes(doc.text);

  auto emit = [&](int32_t b, int32_t end) {
    Segment s;
    s.doc_id = doc.id;
    s.title = title;
    s.token_begin = b;
    s.token_end = end;
    s.char_begin = e.offsets[b].first;
    s.char_end = e.offsets[end - 1].second;
    const size_t byte_begin = bytes[s.char_begin], byte_end = bytes[s.char_end];
    s.text = doc.text.substr(byte_begin, byte_end - byte_begin);
    out.push_back(std::move(s));
  };

  // Windows [s, end) of at most `budget` tokens; see the header for the rules.
  int32_t s = 0;
  for (;;) {
    if (n - s <= budget) {
      emit(s, n);
      break;
    }
    const int32_t end = window_end(starts, s, budget, n);
    emit(s, end);
    const int32_t target = std::max(end - options.stride, s + 1);
    const int32_t next = word_start_at_or_before(starts, target, s + 1);
    if (n - next <= budget) {
      // The last window: full length, ending at the last token (n − budget > s here).
      emit(word_start_at_or_after(starts, n - budget, next), n);
      break;
    }
    s = next;
  }
  return out;
}

}  // namespace kvrag
