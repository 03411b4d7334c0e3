// Segmenter: token windows (size, stride, title budget, word boundaries, tail), spans that map
// back to the document text, short and empty documents; invariants on real passages.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "support/index_test_util.h"
#include "text/segmenter.h"
#include "text/utf8.h"

namespace kvrag {
namespace {

using test::TempDir;

Document make_doc(std::string text, std::string title = "") {
  Document d;
  d.id = "d1";
  d.title = std::move(title);
  d.text = std::move(text);
  return d;
}

// `n` single-token words of the tiny vocabulary, space-separated.
std::string words(int n) {
  static const char* const kWords[] = {"the", "cat", "sat", "on", "mat", "dog", "ran", "big"};
  std::string s;
  for (int i = 0; i < n; ++i) {
    if (i) s += ' ';
    s += kWords[i % 8];
  }
  return s;
}

std::vector<std::pair<int, int>> spans(const std::vector<Segment>& segs) {
  std::vector<std::pair<int, int>> out;
  for (const Segment& s : segs) out.emplace_back(s.token_begin, s.token_end);
  return out;
}

// Checks everything the header promises about `segs`, the windows of `doc`.
void check_invariants(const Document& doc, const std::vector<Segment>& segs,
                      const WordPieceTokenizer& tk, const SegmenterOptions& opt) {
  EncodeOptions plain;
  plain.add_special = false;
  const Encoding e = tk.encode_full(doc.text, plain);
  const auto n = static_cast<int32_t>(e.ids.size());
  if (n == 0) {
    EXPECT_TRUE(segs.empty());
    return;
  }
  ASSERT_FALSE(segs.empty());
  const std::u32string cps = decode_utf8(doc.text);
  auto is_start = [&](int32_t i) { return i >= n || e.tokens[i].rfind("##", 0) != 0; };
  EXPECT_EQ(segs.front().token_begin, 0);
  EXPECT_EQ(segs.back().token_end, n);
  for (size_t i = 0; i < segs.size(); ++i) {
    const Segment& s = segs[i];
    SCOPED_TRACE(::testing::Message()
                 << "segment " << i << " [" << s.token_begin << ", " << s.token_end << ")");
    EXPECT_EQ(s.doc_id, doc.id);
    EXPECT_LT(s.token_begin, s.token_end);
    // What the encoder sees fits the window.
    const size_t seen = tk.encode(encoder_input(s, opt.prepend_title), true).size();
    EXPECT_LE(seen, static_cast<size_t>(opt.window));
    // The text is the document's, between the first token's start and the last token's end.
    EXPECT_EQ(s.char_begin, e.offsets[s.token_begin].first);
    EXPECT_EQ(s.char_end, e.offsets[s.token_end - 1].second);
    EXPECT_EQ(s.text, encode_utf8(cps.substr(s.char_begin, s.char_end - s.char_begin)));
    // Cut between words, so the text tokenizes to exactly the window's tokens.
    EXPECT_TRUE(is_start(s.token_begin));
    EXPECT_TRUE(is_start(s.token_end));
    const std::vector<TokenId> expect(e.ids.begin() + s.token_begin, e.ids.begin() + s.token_end);
    EXPECT_EQ(tk.encode(s.text, false), expect);
    if (i > 0) {
      const Segment& p = segs[i - 1];
      EXPECT_GT(s.token_begin, p.token_begin);
      EXPECT_GE(p.token_end - s.token_begin, opt.stride) << "overlap below the stride";
    }
  }
}

TEST(Segmenter, ShortDocumentIsOneSegment) {
  TempDir dir;
  auto tk = test::tiny_tokenizer(dir);
  const Document doc = make_doc("  The cat sat on the mat.  ", "Paris");
  const auto segs = segment_document(doc, *tk, {});
  ASSERT_EQ(segs.size(), 1u);
  EXPECT_EQ(segs[0].id, -1);
  EXPECT_EQ(segs[0].doc_id, "d1");
  EXPECT_EQ(segs[0].title, "Paris");
  EXPECT_EQ(segs[0].text, "The cat sat on the mat.");
  EXPECT_EQ(segs[0].token_begin, 0);
  EXPECT_EQ(segs[0].token_end, 7);
  EXPECT_EQ(segs[0].char_begin, 2);
  EXPECT_EQ(segs[0].char_end, 25);
  EXPECT_EQ(encoder_input(segs[0]), "Paris [SEP] The cat sat on the mat.");
  EXPECT_EQ(encoder_input(segs[0], false), "The cat sat on the mat.");
  // [CLS] paris [SEP] the cat sat on the mat . [SEP]
  EXPECT_EQ(tk->encode(encoder_input(segs[0])).size(), 11u);
  EXPECT_EQ(tk->encode(encoder_input(segs[0]))[2], tk->sep_id());
}

TEST(Segmenter, EmptyTextGivesNoSegments) {
  TempDir dir;
  auto tk = test::tiny_tokenizer(dir);
  EXPECT_TRUE(segment_document(make_doc(""), *tk, {}).empty());
  EXPECT_TRUE(segment_document(make_doc(" \t\n "), *tk, {}).empty());
}

TEST(Segmenter, WindowsStrideAndFullLengthTail) {
  TempDir dir;
  auto tk = test::tiny_tokenizer(dir);
  SegmenterOptions opt;
  opt.window = 16;  // [CLS] 14 text tokens [SEP]
  opt.stride = 4;
  opt.prepend_title = false;
  const Document doc = make_doc(words(50), "Ignored Title");
  const auto segs = segment_document(doc, *tk, opt);
  // Starts advance by 14 − 4 = 10; the last window ends at token 50 and is full-length.
  const std::vector<std::pair<int, int>> expected = {
      {0, 14}, {10, 24}, {20, 34}, {30, 44}, {36, 50}};
  EXPECT_EQ(spans(segs), expected);
  for (const Segment& s : segs) EXPECT_EQ(s.title, "Ignored Title");  // kept, not counted
  check_invariants(doc, segs, *tk, opt);

  // Exactly one window's worth: one segment. One more token: two windows, both full.
  EXPECT_EQ(spans(segment_document(make_doc(words(14)), *tk, opt)),
            (std::vector<std::pair<int, int>>{{0, 14}}));
  EXPECT_EQ(spans(segment_document(make_doc(words(15)), *tk, opt)),
            (std::vector<std::pair<int, int>>{{0, 14}, {1, 15}}));
  // Stride 0: back-to-back windows.
  opt.stride = 0;
  EXPECT_EQ(spans(segment_document(make_doc(words(28)), *tk, opt)),
            (std::vector<std::pair<int, int>>{{0, 14}, {14, 28}}));
}

TEST(Segmenter, TitleCountsAgainstTheWindow) {
  TempDir dir;
  auto tk = test::tiny_tokenizer(dir);
  SegmenterOptions opt;
  opt.window = 16;
  opt.stride = 4;
  const Document doc = make_doc(words(40), "History of Paris");  // 3 title tokens
  const auto segs = segment_document(doc, *tk, opt);
  // 16 − 3 specials − 3 title tokens = 10 text tokens per window, starts advance by 6.
  ASSERT_GE(segs.size(), 2u);
  EXPECT_EQ(spans(segs).front(), (std::pair<int, int>{0, 10}));
  EXPECT_EQ(spans(segs)[1], (std::pair<int, int>{6, 16}));
  for (const Segment& s : segs) {
    EXPECT_EQ(s.title, "History of Paris");
    EXPECT_EQ(tk->encode(encoder_input(s)).size(), 16u);  // every window is full
  }
  check_invariants(doc, segs, *tk, opt);
}

TEST(Segmenter, VeryLongTitleIsCut) {
  TempDir dir;
  auto tk = test::tiny_tokenizer(dir);
  SegmenterOptions opt;
  opt.window = 16;
  opt.stride = 4;
  // Title cap: min((16 − 3) / 2, 16 − 3 − 5) = 6 tokens; "unaffable" (3 tokens) is not split.
  const Document doc = make_doc(words(30), "the big red ball unaffable x y z");
  const auto segs = segment_document(doc, *tk, opt);
  ASSERT_FALSE(segs.empty());
  EXPECT_EQ(segs[0].title, "the big red ball");
  EXPECT_EQ(segs[0].token_end, 16 - 3 - 4);
  check_invariants(doc, segs, *tk, opt);
}

TEST(Segmenter, CutsBetweenWords) {
  TempDir dir;
  auto tk = test::tiny_tokenizer(dir);
  SegmenterOptions opt;
  opt.window = 12;  // 10 text tokens
  opt.stride = 3;
  opt.prepend_title = false;
  // running = run ##ning, unaffable = un ##aff ##able, cats = cat ##s; café → cafe.
  std::string text;
  for (int i = 0; i < 12; ++i) text += "the running dog, unaffable café cats! ";
  const Document doc = make_doc(text);
  const auto segs = segment_document(doc, *tk, opt);
  ASSERT_GT(segs.size(), 5u);
  check_invariants(doc, segs, *tk, opt);
  for (const Segment& s : segs) EXPECT_LE(s.token_end - s.token_begin, 10);
}

TEST(Segmenter, WordLongerThanTheWindowIsCutInside) {
  TempDir dir;
  auto tk = test::tiny_tokenizer(dir);
  SegmenterOptions opt;
  opt.window = 6;  // 4 text tokens
  opt.stride = 1;
  opt.prepend_title = false;
  // "unaffablesss" = un ##aff ##able ##s ##s ##s: one 6-token word.
  const Document doc = make_doc("unaffablesss x");
  const auto segs = segment_document(doc, *tk, opt);
  ASSERT_EQ(spans(segs), (std::vector<std::pair<int, int>>{{0, 4}, {3, 7}}));
  EXPECT_EQ(segs.front().text, "unaffables");
  EXPECT_EQ(segs.back().text, "sss x");
}

TEST(Segmenter, OptionsAreValidated) {
  TempDir dir;
  auto tk = test::tiny_tokenizer(dir);
  SegmenterOptions opt;
  opt.window = 7;
  opt.stride = 4;
  EXPECT_KVRAG_ERROR(segment_document(make_doc("the cat"), *tk, opt), "window 7", "stride");
  opt.window = 8;
  EXPECT_NO_THROW(segment_document(make_doc(words(30), "the cat sat"), *tk, opt));
  opt.stride = -1;
  EXPECT_KVRAG_ERROR(validate(opt), "stride must be");
}

TEST(Segmenter, RealPassagesWithBertVocab) {
  KVRAG_SHARED_PATH_OR_SKIP(vocab, "tokenizers/bert-base-uncased/vocab.txt");
  KVRAG_SHARED_PATH_OR_SKIP(passages, "data/nq-oracle/passages.jsonl");
  auto tk = WordPieceTokenizer::from_vocab_file(vocab);
  CorpusReader reader(passages);
  SegmenterOptions opt;
  opt.window = 64;
  opt.stride = 16;
  Document doc;
  int64_t segments = 0;
  for (int i = 0; i < 150 && reader.next(doc); ++i) {
    SCOPED_TRACE("passage id " + doc.id);
    const auto segs = segment_document(doc, *tk, opt);
    check_invariants(doc, segs, *tk, opt);
    segments += static_cast<int64_t>(segs.size());
  }
  EXPECT_GT(segments, 300);  // ~100-word passages in 64-token windows: several each
}

}  // namespace
}  // namespace kvrag
