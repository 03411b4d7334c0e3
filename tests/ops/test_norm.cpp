// RMSNorm (fused inference loop and torch-op form) and LayerNorm against fp64, in fp32 and bf16.

#include <torch/torch.h>

#include <string>

#include "ops/norm.h"
#include "ops/op_test_util.h"

namespace kvrag {
namespace {

using test::dtype_name;
using test::max_abs;
using test::max_abs_diff;

// HF LlamaRMSNorm in fp64, with its one rounding to x's dtype before the weight.
torch::Tensor reference_rms_norm(const torch::Tensor& x, const torch::Tensor& w, double eps) {
  const auto xd = x.to(torch::kFloat64);
  const auto h = xd * torch::rsqrt(xd.pow(2).mean(-1, true) + eps);
  return w.to(torch::kFloat64) * h.to(x.scalar_type()).to(torch::kFloat64);
}

TEST(RmsNorm, FusedAndTorchFormMatchFp64) {
  torch::manual_seed(9);
  for (const auto dtype : {torch::kFloat32, torch::kBFloat16}) {
    const auto w = test::randn({67}, dtype);
    const auto x = test::randn({3, 5, 67}, dtype) * 3;
    const auto want = reference_rms_norm(x, w, 1e-5);
    torch::Tensor fused;
    {
      torch::NoGradGuard no_grad;
      fused = rms_norm(x, w, 1e-5);  // the fused loop
    }
    // torch ops
    const auto torch_form = rms_norm(x.clone().requires_grad_(true), w, 1e-5).detach();
    ASSERT_EQ(fused.scalar_type(), dtype);
    ASSERT_EQ(fused.sizes(), x.sizes());
    // fp32: summation order (the fused loop sums squares in fp64). bf16: the rounding before the
    // weight may fall on either side (an ulp, 2^-8 relative), the product's rounding likewise.
    const double tol = (dtype == torch::kFloat32 ? 1e-6 : 1e-2) * max_abs(want);
    EXPECT_LE(max_abs_diff(fused, torch_form), tol) << dtype_name(dtype);
    EXPECT_LE(max_abs_diff(fused, want), tol) << dtype_name(dtype);
    EXPECT_LE(max_abs_diff(torch_form, want), tol) << dtype_name(dtype);
  }
}

TEST(LayerNorm, MatchesFp64) {
  torch::manual_seed(10);
  for (const auto dtype : {torch::kFloat32, torch::kBFloat16}) {
    const auto w = test::randn({48}, dtype), b = test::randn({48}, dtype);
    const auto x = test::randn({4, 48}, dtype) * 2 + 1;
    const auto xd = x.to(torch::kFloat64);
    const auto mean = xd.mean(-1, true), var = (xd - mean).pow(2).mean(-1, true);
    const auto want =
        (xd - mean) / torch::sqrt(var + 1e-12) * w.to(torch::kFloat64) + b.to(torch::kFloat64);
    const auto got = layer_norm(x, w, b, 1e-12);
    ASSERT_EQ(got.scalar_type(), dtype);
    // fp32 arithmetic, then (bf16) one rounding of the result.
    const double tol = (dtype == torch::kFloat32 ? 1e-5 : 1.0 / 128) * max_abs(want);
    EXPECT_LE(max_abs_diff(got, want), tol) << dtype_name(dtype);
  }
}

}  // namespace
}  // namespace kvrag
