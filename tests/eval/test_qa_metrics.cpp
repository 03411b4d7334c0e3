// Exact match, token F1 and containment, checked by hand against SQuAD's evaluation script
// (evaluate-v1.1.py / v2.0: normalize_answer, f1_score, max over ground truths).

#include <gtest/gtest.h>

#include "core/error.h"
#include "eval/qa_metrics.h"

namespace kvrag {
namespace {

TEST(QaMetrics, ExactMatchNormalisesLikeSquad) {
  EXPECT_EQ(exact_match("The Denver Broncos", {"Denver Broncos"}), 1.0);  // article dropped
  EXPECT_EQ(exact_match("denver broncos!", {"Denver Broncos"}), 1.0);     // case, punctuation
  EXPECT_EQ(exact_match("  Denver   Broncos ", {"Denver Broncos"}), 1.0);
  EXPECT_EQ(exact_match("Broncos", {"Denver Broncos"}), 0.0);
  EXPECT_EQ(
      exact_match("Santa Clara", {"Levi's Stadium", "Santa Clara, California", "Santa Clara"}),
      1.0);
  EXPECT_EQ(exact_match("", {"Denver Broncos"}), 0.0);
  EXPECT_EQ(exact_match("Denver Broncos", {}), 0.0);
}

TEST(QaMetrics, TokenF1ByHand) {
  // pred {denver, broncos, won} vs gold {denver, broncos}: P = 2/3, R = 1, F1 = 0.8.
  EXPECT_NEAR(token_f1("The Denver Broncos won", {"Denver Broncos"}), 0.8, 1e-12);
  // SQuAD's multiset overlap: "the the cat" → {cat}; "cat cat dog" vs "cat dog dog": common
  // {cat: 1, dog: 1} = 2, P = R = 2/3.
  EXPECT_NEAR(token_f1("cat cat dog", {"cat dog dog"}), 2.0 / 3.0, 1e-12);
  EXPECT_EQ(token_f1("Carolina Panthers", {"Denver Broncos"}), 0.0);
  // Max over gold answers: "Santa Clara" vs "Santa Clara, California": P = 1, R = 2/3 → 0.8;
  // vs "Santa Clara": 1.
  EXPECT_NEAR(token_f1("Santa Clara", {"Santa Clara, California"}), 0.8, 1e-12);
  EXPECT_EQ(token_f1("Santa Clara", {"Levi's Stadium", "Santa Clara, California", "Santa Clara"}),
            1.0);
  // Empty after normalisation: 1 only if both are empty (SQuAD 2.0's rule).
  EXPECT_EQ(token_f1("the", {"a"}), 1.0);
  EXPECT_EQ(token_f1("", {"Denver"}), 0.0);
  EXPECT_EQ(token_f1("Denver", {"the"}), 0.0);
}

TEST(QaMetrics, ContainedIsWholeWordsAfterNormalisation) {
  EXPECT_EQ(answer_contained("It was the Denver Broncos, in 2016.", {"Denver Broncos"}), 1.0);
  EXPECT_EQ(answer_contained("Parisian cafes", {"Paris"}), 0.0);  // not inside a word
  EXPECT_EQ(answer_contained("Paris, France", {"Paris"}), 1.0);
  EXPECT_EQ(answer_contained("the U.S. army", {"US"}), 1.0);  // "us army" after normalisation
  EXPECT_EQ(answer_contained("anything", {"the"}), 0.0);      // empty gold never matches
  EXPECT_EQ(answer_contained("", {"Paris"}), 0.0);
}

TEST(QaMetrics, ScoreAnswerAgreesWithTheSingleFunctions) {
  const std::vector<std::string> gold = {"Saint Bernadette Soubirous", "Bernadette"};
  for (const std::string pred :
       {"Saint Bernadette", "bernadette soubirous", "a nun", "Bernadette of Lourdes", ""}) {
    const auto s = score_answer(pred, gold);
    EXPECT_EQ(s.em, exact_match(pred, gold)) << pred;
    EXPECT_EQ(s.f1, token_f1(pred, gold)) << pred;
    EXPECT_EQ(s.contained, answer_contained(pred, gold)) << pred;
  }
  // "Saint Bernadette" vs "Saint Bernadette Soubirous": P = 1, R = 2/3 → 0.8; vs "Bernadette":
  // P = 1/2, R = 1 → 2/3. Best: 0.8.
  EXPECT_NEAR(score_answer("Saint Bernadette", gold).f1, 0.8, 1e-12);
}

TEST(QaMetrics, InvalidUtf8IsAnError) { EXPECT_THROW(exact_match("\xff\xfe", {"x"}), Error); }

}  // namespace
}  // namespace kvrag
