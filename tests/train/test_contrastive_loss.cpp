// InfoNCE and VICReg against values computed independently with PyTorch (Debian's python3-torch
// 1.13, /usr/bin/python3) on the same small tensors:
//
//   q = torch.tensor(kQueries); p = torch.tensor(kPassages); lab = torch.arange(3)
//   F.cross_entropy(q @ p.T / 0.5, lab)                                  # 0.45487478375434875
//   F.cross_entropy(q @ p[:3].T / 0.5, lab)                              # 0.015510041266679764
//   F.cross_entropy(F.normalize(q, dim=1) @ F.normalize(p, dim=1).T / 0.1, lab)  #
//   0.08238758891820908 s = q @ p.T / 0.5; s[0, 3] = s[2, 4] = -inf; F.cross_entropy(s, lab)  #
//   0.44444212317466736 VICReg of (q, p[:3]) with facebookresearch/vicreg's main_vicreg.py formulas
//   (eps 1e-4, 25/25/1):
//     invariance 0.14145833253860474, variance 0.1275050789117813,
//     covariance 2.1284849643707275, loss 8.852570533752441

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "support/test_support.h"
#include "train/contrastive_loss.h"

namespace kvrag {
namespace {

torch::Tensor queries() {
  return torch::tensor({0.5, -1.0, 0.25, 2.0, 1.5, 0.5, -0.5, 0.0, -0.25, 0.75, 1.0, -1.0},
                       torch::kFloat32)
      .view({3, 4});
}
torch::Tensor passages() {
  return torch::tensor({0.4, -0.8, 0.1, 1.5,  1.0, 0.0, -1.0, 0.5, 0.0, 1.0,
                        1.0, -0.5, 2.0, -1.0, 0.0, 0.0, -1.0, 0.5, 0.5, 1.0},
                       torch::kFloat32)
      .view({5, 4});
}

TEST(InfoNce, MatchesPyTorchWithHardNegatives) {
  EXPECT_NEAR(info_nce_loss(queries(), passages(), 0.5).item<double>(), 0.45487478375434875, 1e-6);
}

TEST(InfoNce, MatchesPyTorchInBatchOnly) {
  EXPECT_NEAR(info_nce_loss(queries(), passages().narrow(0, 0, 3), 0.5).item<double>(),
              0.015510041266679764, 1e-6);
}

TEST(InfoNce, MatchesPyTorchNormalized) {
  EXPECT_NEAR(info_nce_loss(queries(), passages(), 0.1, /*normalize=*/true).item<double>(),
              0.08238758891820908, 1e-6);
}

TEST(InfoNce, ExcludedLogitsLeaveTheSoftmax) {
  auto exclude = torch::zeros({3, 5}, torch::kBool);
  exclude[0][3] = true;
  exclude[2][4] = true;
  EXPECT_NEAR(info_nce_loss(queries(), passages(), 0.5, false, exclude).item<double>(),
              0.44444212317466736, 1e-6);
}

TEST(InfoNce, GradientsAreFiniteAndPullPositivesCloser) {
  auto q = queries().clone().requires_grad_(true);
  auto p = passages().clone().requires_grad_(true);
  const auto loss = info_nce_loss(q, p, 0.05, /*normalize=*/true);
  loss.backward();
  EXPECT_TRUE(torch::isfinite(q.grad()).all().item<bool>());
  EXPECT_TRUE(torch::isfinite(p.grad()).all().item<bool>());
  // One small gradient step lowers the loss.
  torch::NoGradGuard no_grad;
  const auto after = info_nce_loss(q - 0.01 * q.grad(), p - 0.01 * p.grad(), 0.05, true);
  EXPECT_LT(after.item<double>(), loss.item<double>());
}

TEST(InfoNce, BadShapesAreErrors) {
  EXPECT_NE(test::error_of([] {
              info_nce_loss(queries(), passages().narrow(0, 0, 2), 0.5);
            }).find("2 passages for 3"),
            std::string::npos);
  EXPECT_NE(test::error_of([] {
              info_nce_loss(queries(), torch::zeros({5, 3}), 0.5);
            }).find("[5, 3]"),
            std::string::npos);
  EXPECT_NE(test::error_of([] { info_nce_loss(queries(), passages(), 0.0); }).find("temperature"),
            std::string::npos);
  auto exclude = torch::zeros({3, 5}, torch::kBool);
  exclude[1][1] = true;
  EXPECT_NE(test::error_of([&] {
              info_nce_loss(queries(), passages(), 0.5, false, exclude);
            }).find("positive"),
            std::string::npos);
}

TEST(VicReg, MatchesTheReferenceFormulas) {
  const auto t = vicreg_loss(queries(), passages().narrow(0, 0, 3));
  EXPECT_NEAR(t.invariance.item<double>(), 0.14145833253860474, 1e-6);
  EXPECT_NEAR(t.variance.item<double>(), 0.1275050789117813, 1e-6);
  EXPECT_NEAR(t.covariance.item<double>(), 2.1284849643707275, 1e-5);
  EXPECT_NEAR(t.loss.item<double>(), 8.852570533752441, 1e-5);
}

TEST(VicReg, CoefficientsWeighTheTerms) {
  const auto t = vicreg_loss(queries(), passages().narrow(0, 0, 3), {1.0, 2.0, 3.0});
  EXPECT_NEAR(
      t.loss.item<double>(),
      t.invariance.item<double>() + 2 * t.variance.item<double>() + 3 * t.covariance.item<double>(),
      1e-5);
}

TEST(VicReg, GradientsAreFinite) {
  auto a = queries().clone().requires_grad_(true);
  auto b = passages().narrow(0, 0, 3).clone().requires_grad_(true);
  vicreg_loss(a, b).loss.backward();
  EXPECT_TRUE(torch::isfinite(a.grad()).all().item<bool>());
  EXPECT_TRUE(torch::isfinite(b.grad()).all().item<bool>());
}

TEST(VicReg, BadShapesAreErrors) {
  EXPECT_NE(test::error_of([] { vicreg_loss(queries(), passages()); }).find("[3, 4] and [5, 4]"),
            std::string::npos);
  EXPECT_NE(test::error_of([] {
              vicreg_loss(queries().narrow(0, 0, 1), queries().narrow(0, 0, 1));
            }).find("at least 2"),
            std::string::npos);
}

}  // namespace
}  // namespace kvrag
