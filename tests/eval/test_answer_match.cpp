// SQuAD answer normalisation and DPR's has_answer.
#include <gtest/gtest.h>

#include "eval/answer_match.h"
#include "support/index_test_util.h"

namespace kvrag {
namespace {

TEST(AnswerMatch, NormalizeLikeSquad) {
  EXPECT_EQ(normalize_answer("The Beatles"), "beatles");
  EXPECT_EQ(normalize_answer("  A  cat,\tan apple!\n"), "cat apple");
  EXPECT_EQ(normalize_answer("U.S.A."), "usa");
  EXPECT_EQ(normalize_answer("don't"), "dont");
  EXPECT_EQ(normalize_answer("1,000,000"), "1000000");
  EXPECT_EQ(normalize_answer("$5 + 3 = <8>"), "5 3 8");  // string.punctuation includes symbols
  EXPECT_EQ(normalize_answer("the"), "");
  EXPECT_EQ(normalize_answer("The the THE a an"), "");
  EXPECT_EQ(normalize_answer(""), "");
  // Articles only as whole words.
  EXPECT_EQ(normalize_answer("theatre another anthem"), "theatre another anthem");
  EXPECT_EQ(normalize_answer("a-the"), "athe");  // punctuation goes first: one word
  EXPECT_EQ(normalize_answer("the_end"), "theend");
}

TEST(AnswerMatch, NormalizeUnicode) {
  // Unicode punctuation (P*) is removed; letters are lowercased; other symbols stay.
  EXPECT_EQ(normalize_answer("\xE2\x80\x9CHello\xE2\x80\x9D \xE2\x80\x94 world\xE2\x80\xA6"),
            "hello world");  // “Hello” — world…
  EXPECT_EQ(normalize_answer("\xC2\xBFQu\xC3\x89?"),
            "qu\xC3\xA9");  // ¿QuÉ? → qué
  EXPECT_EQ(normalize_answer("\xC3\x87"
                             "a va"),
            "\xC3\xA7"
            "a va");                                   // Ça va: "a" is not a word
  EXPECT_EQ(normalize_answer("5\xC2\xA0km"), "5 km");  // no-break space
  EXPECT_EQ(normalize_answer("\xE3\x80\x8C\xE6\x9D\xB1\xE4\xBA\xAC\xE3\x80\x8D"),
            "\xE6\x9D\xB1\xE4\xBA\xAC");  // 「東京」 → 東京
  EXPECT_EQ(normalize_answer("\xE2\x82\xAC"
                             "5"),
            "\xE2\x82\xAC"
            "5");  // € is a symbol (Sc)
  EXPECT_KVRAG_ERROR(normalize_answer("bad \xFF"), "invalid UTF-8");
}

TEST(AnswerMatch, DprTokens) {
  EXPECT_EQ(answer_tokens("Brad Johnson's pass"), "brad johnson ' s pass");
  EXPECT_EQ(answer_tokens("  U.S.\tArmy,1990s "), "u . s . army , 1990s");
  EXPECT_EQ(answer_tokens("Caf\xC3\xA9"), "cafe\xCC\x81");  // NFD: e + U+0301, one token
  EXPECT_EQ(answer_tokens("\xE2\x82\xAC"
                          "5 \xE2\x80\x94 x"),
            "\xE2\x82\xAC 5 \xE2\x80\x94 x");
  EXPECT_EQ(answer_tokens(""), "");
  EXPECT_EQ(answer_tokens(" \n\x01 "), "");
  EXPECT_KVRAG_ERROR(answer_tokens("bad \xFF"), "invalid UTF-8");
}

TEST(AnswerMatch, WholeTokenContainment) {
  const std::string text =
      "In the 1990s, the U.S. band released \"Nevermind\" (1991); Brad Johnson's pass.";
  EXPECT_TRUE(contains_answer(text, "1990s"));
  EXPECT_TRUE(contains_answer(text, "the 1990s"));
  EXPECT_TRUE(contains_answer(text, "U.S. band"));
  EXPECT_TRUE(contains_answer(text, "nevermind"));
  EXPECT_TRUE(contains_answer(text, "Brad Johnson"));
  EXPECT_TRUE(contains_answer(text, "the"));                             // DPR keeps articles
  EXPECT_TRUE(contains_answer("Caf\xC3\xA9 de Flore", "cafe\xCC\x81"));  // composed = decomposed
  EXPECT_FALSE(contains_answer(text, "US band"));
  EXPECT_FALSE(contains_answer(text, "199"));
  EXPECT_FALSE(contains_answer(text, "1990"));
  EXPECT_FALSE(contains_answer(text, "nevermind 1991"));  // the quote and parenthesis are tokens
  EXPECT_FALSE(contains_answer(text, ""));
  EXPECT_TRUE(contains_answer(text, " , "));  // punctuation is a token like any other
  EXPECT_FALSE(contains_answer(text, "!"));
  EXPECT_FALSE(contains_answer("", "x"));
  EXPECT_TRUE(contains_any_answer(text, {"zebra", "Nevermind"}));
  EXPECT_FALSE(contains_any_answer(text, {"zebra", "ever"}));
  EXPECT_FALSE(contains_any_answer(text, {}));
  EXPECT_TRUE(contains_tokens("a b c", "b c"));
  EXPECT_FALSE(contains_tokens("a bb c", "b"));
  EXPECT_TRUE(contains_tokens("bb b", "b"));  // a later occurrence counts
  EXPECT_FALSE(contains_tokens("a b", ""));
}

}  // namespace
}  // namespace kvrag
