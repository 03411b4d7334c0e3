// fit_retrieval_posterior and log_posterior (index/retrieval_posterior.h): the weights a
// conditional logit recovers from questions drawn from a known posterior, a finite fit where one
// score separates the gold perfectly, absent scores, and bad sizes.

#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <random>

#include "core/error.h"
#include "index/retrieval_posterior.h"

namespace kvrag {
namespace {

// n questions of k candidates with dense ~ N(0, 0.1) and BM25 ~ N(10, 4) scores, the gold drawn
// from the posterior with weights `truth`.
struct Draw {
  std::vector<std::vector<float>> dense, bm25;
  std::vector<int> gold;
};
Draw draw(const RetrievalPosterior& truth, int n, int k, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 0.1f), b(10.0f, 4.0f);
  Draw out;
  for (int q = 0; q < n; ++q) {
    std::vector<float> dq(k), bq(k);
    for (int j = 0; j < k; ++j) {
      dq[j] = d(rng);
      bq[j] = b(rng);
    }
    const auto lp = log_posterior(truth, dq.data(), bq.data(), k);
    std::vector<double> p;
    for (const float v : lp) p.push_back(std::exp(v));
    out.gold.push_back(std::discrete_distribution<int>(p.begin(), p.end())(rng));
    out.dense.push_back(dq);
    out.bm25.push_back(bq);
  }
  return out;
}

TEST(RetrievalPosterior, LogPosteriorIsASoftmaxOfTheWeightedScores) {
  const std::vector<float> dense = {0.5f, 0.1f, -0.2f}, bm25 = {3.0f, 9.0f, 0.0f};
  const auto lp = log_posterior({10.0, 0.25}, dense.data(), bm25.data(), 3);
  ASSERT_EQ(lp.size(), 3u);
  const double z[] = {5.0 + 0.75, 1.0 + 2.25, -2.0};
  const double log_sum = std::log(std::exp(z[0]) + std::exp(z[1]) + std::exp(z[2]));
  for (int j = 0; j < 3; ++j) EXPECT_NEAR(lp[j], z[j] - log_sum, 1e-6);
  for (const float v : log_posterior({10.0, 0.25}, nullptr, nullptr, 4))
    EXPECT_NEAR(v, std::log(0.25), 1e-6);  // no scores: uniform
  const auto dense_only = log_posterior({10.0, 0.25}, dense.data(), nullptr, 3);
  EXPECT_NEAR(dense_only[0] - dense_only[1], 4.0, 1e-5);
}

TEST(RetrievalPosterior, TheFitRecoversTheWeightsQuestionsWereDrawnWith) {
  const RetrievalPosterior truth{20.0, 0.3};
  const auto d = draw(truth, 4000, 8, 7);
  const auto fit = fit_retrieval_posterior(d.dense, d.bm25, d.gold);
  EXPECT_EQ(fit.n, 4000);
  EXPECT_NEAR(fit.posterior.dense, truth.dense, 0.1 * truth.dense);
  EXPECT_NEAR(fit.posterior.bm25, truth.bm25, 0.1 * truth.bm25);
  // The likelihood at the fit is at least that at the truth (up to the prior's pull).
  double at_truth = 0;
  for (size_t q = 0; q < d.gold.size(); ++q)
    at_truth += log_posterior(truth, d.dense[q].data(), d.bm25[q].data(), 8)[d.gold[q]];
  EXPECT_GE(fit.log_likelihood, at_truth / 4000 - 1e-3);

  // Without the BM25 scores: the dense weight alone, BM25's 0.
  const auto dense_only = fit_retrieval_posterior(d.dense, {}, d.gold);
  EXPECT_EQ(dense_only.posterior.bm25, 0.0);
  EXPECT_GT(dense_only.posterior.dense, 0.0);
}

TEST(RetrievalPosterior, ScoresThatSeparateTheGoldGiveASharpFiniteWeight) {
  std::vector<std::vector<float>> dense, bm25;
  std::vector<int> gold;
  for (int q = 0; q < 50; ++q) {
    bm25.push_back({1.0f, 5.0f + q % 3, 2.0f});  // the gold always scores highest
    dense.push_back({0.1f * (q % 5), 0.0f, 0.2f});
    gold.push_back(1);
  }
  gold.push_back(-1);  // skipped: its gold was not retrieved
  bm25.push_back({1.0f, 2.0f, 3.0f});
  dense.push_back({0.0f, 0.0f, 0.0f});
  const auto fit = fit_retrieval_posterior(dense, bm25, gold);
  EXPECT_EQ(fit.n, 50);
  EXPECT_TRUE(std::isfinite(fit.posterior.bm25));
  EXPECT_GT(fit.posterior.bm25, 0.0);
  EXPECT_EQ(fit.gold_at_top, 1.0);
  EXPECT_GT(fit.log_likelihood, std::log(0.9));
}

TEST(RetrievalPosterior, BadInputIsAnErrorAndJsonRoundTrips) {
  EXPECT_THROW(fit_retrieval_posterior({{0.1f, 0.2f}}, {{1.0f}}, {0}), Error);  // ragged
  EXPECT_THROW(fit_retrieval_posterior({{0.1f, 0.2f}}, {}, {2}), Error);        // gold out of range
  EXPECT_THROW(fit_retrieval_posterior({{0.1f}, {0.2f}}, {}, {0}), Error);      // 2 lists, 1 gold
  EXPECT_EQ(fit_retrieval_posterior({}, {}, {}).n, 0);

  const RetrievalPosterior p{9.5, 0.125};
  const auto back = RetrievalPosterior::from_json(p.to_json(), "x");
  EXPECT_EQ(back.dense, 9.5);
  EXPECT_EQ(back.bm25, 0.125);
  try {
    RetrievalPosterior::from_json(nlohmann::json{{"dense", 1.0}}, "answer_defaults.json");
    FAIL() << "a missing weight is an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("answer_defaults.json"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("bm25"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace kvrag
