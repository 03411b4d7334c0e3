// The fairness terms (prefix/fairness_terms.h) against values worked out by hand.

#include <gtest/gtest.h>

#include <torch/torch.h>

#include <cmath>

#include "core/error.h"
#include "prefix/fairness_terms.h"

namespace kvrag {
namespace {

TEST(FairnessTerms, SymmetricKlMatchesAHandComputedValueAndHonoursTheWeights) {
  // p = (1/2, 1/2), q = (3/4, 1/4): Σ (p − q)(log p − log q) = ¼·log(3/2) + ¼·log 2.
  const auto a = torch::tensor({{0.0f, 0.0f}, {5.0f, -2.0f}});
  const auto b = torch::tensor({{std::log(3.0f), 0.0f}, {-4.0f, 1.0f}});
  const double expected = 0.25 * std::log(1.5) + 0.25 * std::log(2.0);
  EXPECT_NEAR(symmetric_kl(a, b, torch::tensor({1.0f, 0.0f})).item<double>(), expected, 1e-6);
  EXPECT_NEAR(symmetric_kl(b, a, torch::tensor({1.0f, 0.0f})).item<double>(), expected, 1e-6);
  // Identical distributions: 0 (logits shifted by a constant are the same distribution).
  EXPECT_NEAR(symmetric_kl(a, a + 3, torch::ones({2})).item<double>(), 0.0, 1e-6);
  // No weighted position: 0, not a division by zero.
  EXPECT_EQ(symmetric_kl(a, b, torch::zeros({2})).item<double>(), 0.0);
  // Gradients reach both sides.
  auto x = a.clone().requires_grad_(true), y = b.clone().requires_grad_(true);
  symmetric_kl(x, y, torch::ones({2})).backward();
  EXPECT_GT(x.grad().abs().sum().item<double>(), 0);
  EXPECT_GT(y.grad().abs().sum().item<double>(), 0);
  EXPECT_THROW(symmetric_kl(a, b, torch::ones({3})), Error);
}

TEST(FairnessTerms, DecorrelationIsTheMeanSquaredCorrelationWithTheAttribute) {
  // Feature 0 is the attribute itself (corr² 1), feature 1 is orthogonal to it (corr 0); the
  // last row has no attribute and is left out, whatever its features.
  const auto attribute = torch::tensor({-1.0f, -1.0f, 1.0f, 1.0f, 0.0f});
  auto features =
      torch::tensor({{-1.0f, 1.0f}, {-1.0f, -1.0f}, {1.0f, 1.0f}, {1.0f, -1.0f}, {100.0f, 50.0f}})
          .requires_grad_(true);
  EXPECT_NEAR(decorrelation_penalty(features, attribute).item<double>(), 0.5, 1e-5);
  // Scale-free: the same at any scale of the features.
  EXPECT_NEAR(decorrelation_penalty(features * 40, attribute).item<double>(), 0.5, 1e-5);
  auto penalty = decorrelation_penalty(features, attribute);
  penalty.backward();
  EXPECT_EQ(features.grad()[4].abs().sum().item<double>(), 0.0);  // the row left out
  // Fewer than two rows of a sign: 0, with a graph.
  const auto lone =
      decorrelation_penalty(features, torch::tensor({-1.0f, -1.0f, 1.0f, 0.0f, 0.0f}));
  EXPECT_EQ(lone.item<double>(), 0.0);
  EXPECT_TRUE(lone.requires_grad());
}

TEST(FairnessTerms, PrefixFeaturesAverageTheValuesOverEntries) {
  KVPrefix prefix;
  for (int l = 0; l < 2; ++l) {
    prefix.keys.push_back(torch::randn({3, 2, 4, 5}));             // [B, kvH, P, hd]
    prefix.values.push_back(torch::full({3, 2, 4, 5}, 1.0f + l));  // [B, kvH, P, hd]
  }
  prefix.values[1].index_put_({0, 0, 0}, 5.0f);  // one entry of row 0, layer 1, head 0
  prefix.values[0].index_put_({2, torch::indexing::Slice(), 3}, 0.0f);  // row 2's padding
  const auto f = prefix_features(prefix);                               // [B, L·kvH·hd]
  ASSERT_EQ(f.sizes(), (std::vector<int64_t>{3, 20}));
  EXPECT_FLOAT_EQ(f[1][0].item<float>(), 1.0f);
  EXPECT_FLOAT_EQ(f[1][10].item<float>(), 2.0f);
  EXPECT_FLOAT_EQ(f[0][10].item<float>(), (5.0f + 3 * 2.0f) / 4);
  EXPECT_FLOAT_EQ(f[2][0].item<float>(), 1.0f);  // the mean of its 3 real entries
}

}  // namespace
}  // namespace kvrag
