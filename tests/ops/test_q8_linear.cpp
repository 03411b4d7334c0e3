// q8_linear (ops/q8_linear.h): the torch op over int8 weights, forward and backward, against
// torch's linear on the dequantized weights (the function it must compute, up to fp32 rounding).

#include "ops/q8_linear.h"

#include <torch/torch.h>

#include "core/error.h"
#include "ops/cpu_isa.h"
#include "ops/matmul.h"
#include "ops/threads.h"
#include "support/test_support.h"

namespace kvrag {
namespace {

class Q8Linear : public ::testing::Test {
 protected:
  void SetUp() override { configure_threads(); }
};

std::shared_ptr<const Q8Matrix> random_q8(int64_t n, int64_t k, uint64_t seed,
                                          torch::Tensor* dequantized) {
  torch::manual_seed(seed);
  const auto w = torch::randn({n, k}) * 0.1;  // [n, k]
  auto q8 = std::make_shared<const Q8Matrix>(quantize_q8(w.data_ptr<float>(), n, k));
  *dequantized = torch::empty({n, k});
  dequantize_q8(*q8, dequantized->data_ptr<float>());
  return q8;
}

// Largest |a - b| relative to b's largest magnitude.
double relative_error(const torch::Tensor& a, const torch::Tensor& b) {
  return ((a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max() /
          b.to(torch::kFloat64).abs().max())
      .item<double>();
}

TEST_F(Q8Linear, ForwardIsLinearOnTheDequantizedWeights) {
  torch::Tensor w;
  const auto q8 = random_q8(300, 96, 1, &w);  // N not a multiple of any tile
  const auto bias = torch::randn({300});
  torch::NoGradGuard no_grad;
  for (const auto isa : supported_cpu_isas()) {  // each path this CPU has, and its GEMM's dtype
    const ScopedCpuIsa scope(isa);
    for (const int64_t m : {1, 3, 4, 8, 20}) {  // rows of x: 2m (decode, blocks of 8, a GEMM)
      const auto x = torch::randn({2, m, 96});  // [2, m, K]
      const auto want = torch::nn::functional::linear(x, w, bias);
      const auto got = q8_linear(x, q8, bias);
      ASSERT_EQ(got.sizes(), want.sizes());
      // fp32 sums of 96 terms in another order: a few ulps of the largest term. A GEMM in bf16
      // rounds x and W to bf16 (2⁻⁹ each, relative) and accumulates in fp32: each product
      // within 2⁻⁸ of itself, so the error is within 2⁻⁸ Σ_k |x_k w_k|, about 2⁻⁷ of the largest
      // output here (Σ_k |x_k w_k| / max|y| ≈ 2 for these random values; without the bias a
      // random sum has reached 0.0049: 2⁻⁸ was too tight).
      // The VNNI path (q8_matmul decoding, q8_gemm for many rows) rounds x to int8 per group of
      // 32 (ops/q8_matmul.h): each x within max|x_group| / 254, ~1/100 of a typical |x| for
      // N(0, 1) values; a random sum of 96 such errors stays near 2⁻⁸ of the largest output
      // (measured ≤ 0.005), 1/64 leaves 3×.
      const bool int8_x = isa >= CpuIsa::kAvx512Vnni;
      const bool bf16_gemm = 2 * m >= kQ8GemmMinRows && native_bf16_matmul() && !int8_x;
      const double tolerance = bf16_gemm ? 1.0 / 128 : int8_x ? 1.0 / 64 : 1e-5;
      EXPECT_LT(relative_error(got, want), tolerance) << cpu_isa_name(isa) << ", m = " << m;
      EXPECT_LT(relative_error(q8_linear(x, q8), x.matmul(w.t())), tolerance)
          << cpu_isa_name(isa) << ", m = " << m << ", no bias";
    }
  }
  // bf16 activations: computed in fp32 from their exact conversion, rounded to bf16 once (and,
  // on the VNNI path, rounded to int8 first as above).
  const auto xb = torch::randn({5, 96}).to(torch::kBFloat16);
  const auto got = q8_linear(xb, q8, bias);
  EXPECT_EQ(got.scalar_type(), torch::kBFloat16);
  const auto want = torch::nn::functional::linear(xb.to(torch::kFloat32), w, bias);
  EXPECT_LT(relative_error(got, want), cpu_isa() >= CpuIsa::kAvx512Vnni ? 1.0 / 64 : 1.0 / 256);
}

TEST_F(Q8Linear, GemmTilesCoverEveryRow) {
  // A weight of more than one 16 MB tile: 4100 rows × 2048 in fp32 is 33.6 MB (3 tiles).
  torch::Tensor w;
  const auto q8 = random_q8(4100, 2048, 3, &w);
  torch::NoGradGuard no_grad;
  const auto x = torch::randn({kQ8GemmMinRows, 2048});  // [M, K]
  for (const auto isa : supported_cpu_isas()) {
    const ScopedCpuIsa scope(isa);
    // 2048 terms: rounded to bf16 (the GEMM over dequantized tiles) or to int8 (q8_gemm), else
    // fp32 throughout.
    const double tolerance = native_bf16_matmul() ? 1.0 / 64 : 1e-5;
    EXPECT_LT(relative_error(q8_linear(x, q8), x.matmul(w.t())), tolerance) << cpu_isa_name(isa);
  }
}

TEST_F(Q8Linear, BackwardMatchesAutogradOnTheDequantizedWeights) {
  torch::Tensor w;
  const auto q8 = random_q8(600, 64, 2, &w);  // 600 rows: three tiles of the backward, one partial
  const auto x0 = torch::randn({3, 4, 64});
  const auto b0 = torch::randn({600});
  const auto dy = torch::randn({3, 4, 600});

  auto x = x0.clone().requires_grad_(true);
  auto b = b0.clone().requires_grad_(true);
  q8_linear(x, q8, b).backward(dy);

  auto xr = x0.clone().requires_grad_(true);
  auto br = b0.clone().requires_grad_(true);
  torch::nn::functional::linear(xr, w, br).backward(dy);

  ASSERT_TRUE(x.grad().defined() && b.grad().defined());
  EXPECT_LT(relative_error(x.grad(), xr.grad()), 1e-5);
  EXPECT_LT(relative_error(b.grad(), br.grad()), 1e-6);

  // Only x requires grad: no bias gradient is asked for; bf16 x gets a bf16 gradient.
  auto xb = x0.to(torch::kBFloat16).requires_grad_(true);
  q8_linear(xb, q8).sum().backward();
  EXPECT_EQ(xb.grad().scalar_type(), torch::kBFloat16);
  EXPECT_LT(relative_error(xb.grad(), torch::ones({3, 4, 600}).matmul(w)), 1.0 / 128);
}

TEST_F(Q8Linear, RecordsNothingWithoutGradients) {
  torch::Tensor w;
  const auto q8 = random_q8(32, 32, 3, &w);
  const auto x = torch::randn({2, 32}).requires_grad_(true);
  {
    torch::NoGradGuard no_grad;
    EXPECT_FALSE(q8_linear(x, q8).requires_grad());
  }
  EXPECT_FALSE(q8_linear(x.detach(), q8).requires_grad());
  EXPECT_TRUE(q8_linear(x, q8).requires_grad());
}

TEST_F(Q8Linear, ErrorsNameTheShapes) {
  torch::Tensor w;
  const auto q8 = random_q8(16, 64, 4, &w);
  EXPECT_NE(test::error_of([&] {
              q8_linear(torch::randn({2, 32}), q8);
            }).find("[16, 64]"),
            std::string::npos);
  auto empty = std::make_shared<Q8Matrix>();
  empty->rows = 16;
  empty->cols = 64;
  EXPECT_NE(test::error_of([&] {
              q8_linear(torch::randn({2, 64}), empty);
            }).find("not loaded"),
            std::string::npos);
}

}  // namespace
}  // namespace kvrag
