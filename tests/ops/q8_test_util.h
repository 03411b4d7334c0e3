// Helpers of the int8 ops tests (test_q8_matmul.cpp, test_q8_gemm.cpp, test_q8_channel_gemm.cpp):
// weights like a trained layer's, their dequantized values, fp64 references with the bounds of
// fp32 rounding and of the VNNI paths' rounding of activations to int8, and the GEMMs' shared
// check of non-finite activations.
#pragma once

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <limits>

#include "ops/q8_matmul.h"

namespace kvrag::test {

// Weights like a trained layer's: N(0, 0.02) with a few outliers 20× larger (the reason for
// per-group scales), and one group of zeros.
inline torch::Tensor weights(int64_t n, int64_t k) {
  auto w = torch::randn({n, k}) * 0.02;
  w.index_put_({torch::rand({n, k}) < 0.01}, 0.4);
  w.index({0, torch::indexing::Slice(0, kQ8Group)}).zero_();
  return w.contiguous();
}

inline torch::Tensor dequantized(const Q8Matrix& w) {  // [N, K] fp32
  auto out = torch::empty({w.rows, w.cols}, torch::kFloat32);
  dequantize_q8(w, out.data_ptr<float>());
  return out;
}

// Σ_k |x_k| |w_k| in fp64: the scale of the rounding errors of one output.
inline torch::Tensor magnitudes(const torch::Tensor& x, const torch::Tensor& w) {
  return torch::matmul(x.to(torch::kFloat64).abs(), w.to(torch::kFloat64).abs().t());
}

// How far an fp32 sum of these products can be from the exact one, relative to magnitudes():
// 2^-24 per rounding on the longest path of a term: its product (1), the group's 32-term sum (≤ 8
// in the portable path's lanes and tree), its scaling (1), the accumulation over K/32 groups, and
// a final reduction of at most 16 lanes (4). Two paths may each be that far off.
inline double rounding_bound(int64_t k) { return (k / kQ8Group + 14) * std::ldexp(1.0, -24); }

// x [m, K] as the VNNI path rounds it (ops/q8_matmul.h): per group of 32, scale s = max|x| / 127
// in fp32 and q = round(x / s) (half to even, the fp32 quotient) in [-127, 127], 0 where s = 0.
// Returns q · s in fp64, and sets *half [m, K] to each x's bound |x - q s| ≤ s (1/2 + 1e-5) (the
// 1e-5: the quotient's rounding, ≤ 127.5 · 2⁻²⁴ in units of s).
inline torch::Tensor vnni_activations(const torch::Tensor& x, torch::Tensor* half) {
  const int64_t m = x.size(0), k = x.size(1);
  const auto groups = x.view({m, k / kQ8Group, kQ8Group});
  const auto s = groups.abs().amax(2, /*keepdim=*/true) / 127;  // [m, K/32, 1] fp32
  const auto q =
      torch::where(s > 0, (groups / s).round().clamp(-127, 127), torch::zeros_like(groups));
  const auto sd = s.to(torch::kFloat64).expand({m, k / kQ8Group, kQ8Group});
  *half = (sd * (0.5 + 1e-5)).reshape({m, k});
  return (q.to(torch::kFloat64) * sd).reshape({m, k});
}

// A NaN or an infinity in row 4 of x [6, 96] makes that row's outputs NaN and leaves the other
// rows finite, for product(x, w) → y [6, 40] over a 40 × 96 int8 weight with no zero group (so
// that every output reads every x).
template <typename Product>
void expect_non_finite_x_reaches_its_row_only(Product&& product) {
  const int64_t n = 40, k = 96;
  const auto wf = weights(n, k) + 0.01;
  const auto w = quantize_q8(wf.data_ptr<float>(), n, k);
  for (const float bad : {std::nanf(""), std::numeric_limits<float>::infinity()}) {
    auto x = torch::randn({6, k});
    x[4][70] = bad;
    const torch::Tensor y = product(x, w);
    for (int64_t r = 0; r < 6; ++r) {
      if (r == 4) {
        EXPECT_TRUE(y[r].isnan().all().item<bool>()) << y[r];
      } else {
        EXPECT_TRUE(torch::isfinite(y[r]).all().item<bool>()) << "row " << r;
      }
    }
  }
}

}  // namespace kvrag::test
