// Weight-only int8 (ops/q8_matmul.h): the round trip of quantization, and q8_matmul() on every CPU
// path this machine runs against the portable path and against fp64 products of the dequantized
// weights (llama.cpp's test-backend-ops: every backend against a reference).

#include "ops/q8_matmul.h"

#include <torch/torch.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <string>
#include <tuple>
#include <vector>

#include "core/error.h"
#include "ops/cpu_isa.h"
#include "ops/op_test_util.h"
#include "ops/q8_test_util.h"
#include "ops/threads.h"

namespace kvrag {
namespace {

using test::dequantized;
using test::for_each_cpu_isa;
using test::magnitudes;
using test::rounding_bound;
using test::vnni_activations;
using test::weights;

// Wraps a Q8Matrix's buffers as tensors (no copy): q [N, K] int8, scales [N, K/32] fp32.
torch::Tensor values(Q8Matrix& w) {
  return torch::from_blob(w.q.data(), {w.rows, w.cols}, torch::kInt8);
}
torch::Tensor scales(Q8Matrix& w) {
  return torch::from_blob(w.scales.data(), {w.rows, w.groups_per_row()}, torch::kFloat32);
}

// w in the decode order (Q8Matrix::interleaved), or as it is.
Q8Matrix in_order(Q8Matrix w, bool interleaved) {
  if (interleaved) interleave_q8(w);
  return w;
}

// y [m, N] = q8_matmul(x [m, K], w) on the current cpu_isa().
torch::Tensor product(const torch::Tensor& x, const Q8Matrix& w) {
  auto y = torch::full({x.size(0), w.rows}, std::nanf(""), torch::kFloat32);  // unwritten shows
  q8_matmul(x.data_ptr<float>(), x.size(0), w, y.data_ptr<float>());
  return y;
}

TEST(Q8Quantize, RoundTripWithinHalfAScale) {
  torch::manual_seed(3);
  for (const int64_t k : {32, 96, 4096}) {
    auto w = weights(5, k);
    auto q = quantize_q8(w.data_ptr<float>(), 5, k);
    ASSERT_EQ(q.rows, 5);
    ASSERT_EQ(q.cols, k);
    ASSERT_EQ(static_cast<int64_t>(q.q.size()), 5 * k);
    ASSERT_EQ(q.groups_per_row(), k / kQ8Group);
    const auto s = scales(q).repeat_interleave(kQ8Group, 1);  // [5, K]: each weight's scale
    // Beyond s/2, fp32 rounding: round(w / scale) rounds the quotient rounded once (≤ 127 · 2^-24
    // in units of the scale, when it lands on a tie), and q · scale is rounded (2^-24 of it).
    const auto bound = s * (0.5 + 1e-5) + w.abs() * 1e-7;
    const auto err = (dequantized(q) - w).abs();
    EXPECT_FALSE((err > bound).any().item<bool>())
        << "k=" << k << ": max error / scale " << (err / s.clamp_min(1e-30)).max().item<double>();
    // scale = max|w| / 127: every group's largest weight is ±127, the zero group has scale 0.
    const auto qv = values(q).to(torch::kInt32).view({5, k / kQ8Group, kQ8Group});
    EXPECT_LE(qv.abs().max().item<int>(), 127);
    const auto top = qv.abs().amax(2);  // [5, K/32]
    EXPECT_EQ(top[0][0].item<int>(), 0);
    EXPECT_EQ(scales(q)[0][0].item<float>(), 0.0f);
    EXPECT_EQ((top == 127).sum().item<int64_t>(), 5 * k / kQ8Group - 1);
    EXPECT_TRUE(
        torch::allclose(scales(q), w.view({5, k / kQ8Group, kQ8Group}).abs().amax(2) / 127, 0, 0));
  }
}

TEST(Q8Quantize, Bf16BitsQuantizeLikeTheirFp32Values) {
  torch::manual_seed(4);
  const auto w = weights(7, 64).to(torch::kBFloat16);
  std::vector<uint16_t> bits(7 * 64);
  std::memcpy(bits.data(), w.data_ptr<at::BFloat16>(), bits.size() * sizeof(uint16_t));
  auto from_bits = quantize_q8_bf16(bits.data(), 7, 64);
  const auto wf = w.to(torch::kFloat32);
  auto from_floats = quantize_q8(wf.data_ptr<float>(), 7, 64);
  EXPECT_EQ(from_bits.q, from_floats.q);
  EXPECT_EQ(from_bits.scales, from_floats.scales);
}

// The vector paths (ops/q8_matmul.cpp) give the portable path's bytes and scales: random groups
// of every magnitude, a group of zeros, subnormal weights, and ties (w / scale = k + 0.5, which
// round to even), from fp32 and from bf16.
TEST(Q8Quantize, EveryPathGivesThePortableBytes) {
  torch::manual_seed(5);
  const int64_t n = 9, k = 256;
  auto w =
      weights(n, k) * torch::pow(10.0, torch::randint(-6, 4, {n, k / kQ8Group, 1}, torch::kFloat64))
                          .to(torch::kFloat32)
                          .repeat_interleave(kQ8Group, 1)
                          .view({n, k});
  auto* p = w.data_ptr<float>();
  std::fill(p + 32, p + 64, 0.0f);                             // a group of zeros
  for (int j = 0; j < 32; ++j) p[64 + j] = 1e-42f * (j - 16);  // subnormals
  p[96] = 127.0f;                                              // scale 1: the rest are ties
  for (int j = 1; j < 32; ++j) p[96 + j] = (j % 2 ? 1.0f : -1.0f) * (j + 0.5f);
  const auto bf = w.to(torch::kBFloat16);
  std::vector<uint16_t> bits(n * k);
  std::memcpy(bits.data(), bf.data_ptr<at::BFloat16>(), bits.size() * sizeof(uint16_t));
  Q8Matrix want, want_bf16;
  {
    ScopedCpuIsa portable(CpuIsa::kGeneric);
    want = quantize_q8(p, n, k);
    want_bf16 = quantize_q8_bf16(bits.data(), n, k);
  }
  EXPECT_EQ(want.q[96 + 1], 2);   // 1.5 → 2
  EXPECT_EQ(want.q[96 + 2], -2);  // -2.5 → -2
  for_each_cpu_isa([&] {
    const auto got = quantize_q8(p, n, k);
    EXPECT_EQ(got.q, want.q) << cpu_isa_name(cpu_isa());
    EXPECT_EQ(got.scales, want.scales) << cpu_isa_name(cpu_isa());
    const auto got_bf16 = quantize_q8_bf16(bits.data(), n, k);
    EXPECT_EQ(got_bf16.q, want_bf16.q) << cpu_isa_name(cpu_isa());
    EXPECT_EQ(got_bf16.scales, want_bf16.scales) << cpu_isa_name(cpu_isa());
  });
}

TEST(Q8Quantize, KNotAMultipleOf32IsAnError) {
  std::vector<float> w(3 * 48, 1.0f);
  for (const int64_t k : {0, 31, 48}) {
    try {
      quantize_q8(w.data(), 3, k);
      ADD_FAILURE() << "no error for K = " << k;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("weight [3, " + std::to_string(k) + "]"),
                std::string::npos)
          << e.what();
    }
  }
  std::vector<uint16_t> bits(3 * 48, 0x3f80);  // 1.0
  EXPECT_THROW(quantize_q8_bf16(bits.data(), 3, 48), Error);
}

TEST(Q8Quantize, NonFiniteWeightIsAnError) {
  for_each_cpu_isa([] {
    const std::string isa = cpu_isa_name(cpu_isa());
    for (const int64_t at : {40, 32, 63}) {  // first and last lane of a group too
      std::vector<float> w(2 * 64, 0.5f);
      w[64 + at] = std::numeric_limits<float>::infinity();
      try {
        quantize_q8(w.data(), 2, 64);
        ADD_FAILURE() << isa << ": no error for inf";
      } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("element [1, " + std::to_string(at) + "] is inf"),
                  std::string::npos)
            << isa << ": " << e.what();
      }
      w[64 + at] = -std::numeric_limits<float>::infinity();
      EXPECT_THROW(quantize_q8(w.data(), 2, 64), Error) << isa;
      w[64 + at] = std::nanf("");
      EXPECT_THROW(quantize_q8(w.data(), 2, 64), Error) << isa;
      std::vector<uint16_t> bits(2 * 64, 0x3f00);  // 0.5
      bits[64 + at] = 0x7fc0;                      // NaN
      EXPECT_THROW(quantize_q8_bf16(bits.data(), 2, 64), Error) << isa;
    }
  });
}

// Sizes: every block of x rows (1…8, and 9, 13, 17 for a full block plus a partial one), N not
// a multiple of 8 or 16, K of one group, of an odd number of groups (the VNNI path's 64-byte
// steps end in half a step) and of a real layer (4096: several tiles and several chunks for the
// helper threads).
//
// The fp32-activation paths (generic, avx2, avx512) compute Σ_g scale_g Σ_j q_j x_j: they differ
// from each other and from the fp64 product on the dequantized weights only by fp32 rounding.
// The VNNI path rounds x to int8 first (x̂ = q_x s_x, per group); its error from x · Ŵᵀ (Ŵ the
// dequantized weights) then has two parts:
//   |y - x Ŵᵀ| ≤ |y - x̂ Ŵᵀ| + |(x̂ - x) Ŵᵀ| ≤ rounding · Σ_k |x̂_k| |Ŵ_k| + Σ_k |Ŵ_k| s_x,k / 2,
// the first from fp32 arithmetic on exact integer dot products (s_w s_x, the accumulation over
// groups and lanes: within rounding_bound), the second from the activations' rounding. Both are
// checked, the first against x̂ reproduced here, which pins the integer path down to its fp32
// rounding.
TEST(Q8Matmul, EveryPathMatchesPortableAndDequantizedProduct) {
  configure_threads(2);
  torch::manual_seed(5);
  // K: one group, runs of 16 groups only (4096), none (96, 160), runs and the groups after them
  // (608 = 16 + 3 groups); every weight in both orders.
  for (const auto [n, k, interleaved] : {std::tuple<int64_t, int64_t, bool>{37, 32, false},
                                         {37, 4096, false},
                                         {19, 96, false},
                                         {21, 160, false},
                                         {37, 4096, true},
                                         {21, 608, true},
                                         {19, 96, true}}) {
    const auto wf = weights(n, k);
    auto natural = quantize_q8(wf.data_ptr<float>(), n, k);
    auto w = in_order(natural, interleaved);
    const auto deq = dequantized(w).to(torch::kFloat64);  // [N, K]
    ASSERT_TRUE(torch::equal(dequantized(w), dequantized(natural)));
    // Each weight's quantization error bound (RoundTripWithinHalfAScale).
    const auto half =
        scales(w).repeat_interleave(kQ8Group, 1).to(torch::kFloat64) * (0.5 + 1e-5);  // [N, K]
    const double rel = rounding_bound(k);
    for (const int64_t m : {1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 17}) {
      // Activations with outliers and a group of zeros, as the weights.
      auto x = torch::randn({m, k});
      x.index_put_({torch::rand({m, k}) < 0.01}, 20.0);
      x.index({m - 1, torch::indexing::Slice(0, kQ8Group)}).zero_();
      const auto xd = x.to(torch::kFloat64);
      const std::string what = "m=" + std::to_string(m) + " n=" + std::to_string(n) +
                               " k=" + std::to_string(k) +
                               (interleaved ? " (decode order)" : " (natural order)");
      const auto mag = magnitudes(x, deq);           // [m, N]
      const auto want = torch::matmul(xd, deq.t());  // [m, N]
      // The original weights are within Σ_k |x_k| scale_k / 2 of that, plus rounding.
      const auto exact = torch::matmul(xd, wf.to(torch::kFloat64).t());
      const auto qbound = torch::matmul(xd.abs(), half.t()) + mag * (2 * rel);
      torch::Tensor x_half;  // [m, K]
      const auto xq = vnni_activations(x, &x_half);
      const auto want_q = torch::matmul(xq, deq.t());            // [m, N]: x̂ Ŵᵀ
      const auto mag_q = magnitudes(xq, deq);                    // [m, N]
      const auto xbound = torch::matmul(x_half, deq.abs().t());  // [m, N]: Σ_k |Ŵ_k| s_x,k / 2
      torch::Tensor portable;
      {
        const ScopedCpuIsa generic(CpuIsa::kGeneric);
        portable = product(x, w);
      }
      for_each_cpu_isa([&] {
        const auto y = product(x, w);
        ASSERT_EQ(y.sizes(), (std::vector<int64_t>{m, n})) << what;
        ASSERT_FALSE(y.isnan().any().item<bool>()) << what << ": an output not written";
        const auto yd = y.to(torch::kFloat64);
        if (cpu_isa() >= CpuIsa::kAvx512Vnni) {
          EXPECT_FALSE(((yd - want_q).abs() > mag_q * rel).any().item<bool>())
              << what << ": max error from x̂ Ŵᵀ " << test::max_abs_diff(y, want_q);
          EXPECT_FALSE(((yd - want).abs() > xbound + mag_q * rel).any().item<bool>())
              << what << ": max error " << test::max_abs_diff(y, want) << " (bound "
              << test::max_abs(xbound) << ")";
          EXPECT_FALSE(((yd - exact).abs() > qbound + xbound + mag_q * rel).any().item<bool>())
              << what << ": max error from the fp32 weights " << test::max_abs_diff(y, exact);
          return;
        }
        // Only the order of fp32 additions differs between these paths.
        EXPECT_FALSE(((y - portable).abs() > mag * (2 * rel)).any().item<bool>())
            << what << ": max difference from portable " << test::max_abs_diff(y, portable);
        EXPECT_FALSE(((yd - want).abs() > mag * rel).any().item<bool>())
            << what << ": max error " << test::max_abs_diff(y, want);
        EXPECT_FALSE(((yd - exact).abs() > qbound).any().item<bool>())
            << what << ": max error from the fp32 weights " << test::max_abs_diff(y, exact);
      });
    }
  }
}

// Each output is computed the same way whatever the blocking (ops/q8_matmul.cpp): rows of x one
// at a time or in blocks of 8, rows of W in a group of B or alone at the end of a tile, N split
// over 1 or 2 threads. So a decode step's logits do not depend on the batch around it.
TEST(Q8Matmul, OutputsDoNotDependOnBlocking) {
  torch::manual_seed(7);
  const int64_t n = 45, k = 4096 + 96;  // 131 groups: odd; 8 runs of 16 and 3 after them
  const auto wf = weights(n, k);
  const int64_t n_head = 30;  // the first rows of W alone: other tiles and remainders
  const auto x = torch::randn({13, k});
  for (const bool interleaved : {false, true}) {
    SCOPED_TRACE(interleaved ? "decode order" : "natural order");
    const auto w = in_order(quantize_q8(wf.data_ptr<float>(), n, k), interleaved);
    const auto w_head = in_order(quantize_q8(wf.data_ptr<float>(), n_head, k), interleaved);
    for_each_cpu_isa([&] {
      configure_threads(2);
      const auto y = product(x, w);  // [13, N]: a block of 8 rows and one of 5
      for (int64_t r = 0; r < x.size(0); ++r) {
        EXPECT_TRUE(torch::equal(product(x.narrow(0, r, 1), w), y.narrow(0, r, 1))) << "row " << r;
      }
      EXPECT_TRUE(torch::equal(product(x.narrow(0, 3, 2), w), y.narrow(0, 3, 2)));
      EXPECT_TRUE(torch::equal(product(x, w_head), y.narrow(1, 0, n_head)));
      configure_threads(1);
      EXPECT_TRUE(torch::equal(product(x, w), y));
      configure_threads(2);
    });
  }
}

// A non-finite activation makes the outputs it reaches NaN (or ±inf) on every path, as an fp32
// product would: the VNNI path carries it in its group's scale rather than rounding it to a
// finite int8.
TEST(Q8Matmul, NonFiniteActivationReachesTheOutputs) {
  configure_threads(2);
  torch::manual_seed(8);
  const int64_t n = 9;
  for (const auto [k, interleaved] :  // a group after the runs, in a run
       {std::pair<int64_t, bool>{96, false}, {96, true}, {608, true}}) {
    const auto wf = weights(n, k) + 0.01;  // no zero group: every output reaches every x
    const auto w = in_order(quantize_q8(wf.data_ptr<float>(), n, k), interleaved);
    for (const float bad : {std::nanf(""), std::numeric_limits<float>::infinity()}) {
      auto x = torch::randn({2, k});
      x[1][40] = bad;
      for_each_cpu_isa([&] {
        const auto y = product(x, w);
        EXPECT_TRUE(torch::isfinite(y[0]).all().item<bool>());
        EXPECT_FALSE(torch::isfinite(y[1]).any().item<bool>()) << y[1];
      });
    }
  }
}

TEST(Q8Dequantize, RowsOnEveryPathAreTheProductsWeightsAndTheirBf16Rounding) {
  configure_threads(2);
  torch::manual_seed(6);
  const int64_t n = 37, k = 4096 + 96;
  const auto wf = weights(n, k);
  const auto natural = quantize_q8(wf.data_ptr<float>(), n, k);
  const auto deq = dequantized(natural);           // [N, K]: q · scale, the portable loop
  const auto deq_bf16 = deq.to(torch::kBFloat16);  // libtorch's round-to-nearest-even
  for (const bool interleaved : {false, true}) {
    const auto w = in_order(natural, interleaved);
    for (const auto [n0, n1] : {std::pair<int64_t, int64_t>{0, n}, {5, 6}, {3, 30}, {9, 9}}) {
      for_each_cpu_isa([&] {
        auto rows = torch::full({n1 - n0, k}, std::nanf(""));
        dequantize_q8_rows(w, n0, n1, rows.data_ptr<float>());
        EXPECT_TRUE(torch::equal(rows, deq.narrow(0, n0, n1 - n0))) << cpu_isa_name(cpu_isa());
        auto bits = torch::empty({n1 - n0, k}, torch::kBFloat16);
        dequantize_q8_rows_bf16(w, n0, n1, reinterpret_cast<uint16_t*>(bits.data_ptr()));
        EXPECT_TRUE(torch::equal(bits, deq_bf16.narrow(0, n0, n1 - n0))) << cpu_isa_name(cpu_isa());
      });
    }
    std::vector<float> out(k);
    EXPECT_THROW(dequantize_q8_rows(w, 36, 38, out.data()), Error);
  }
}

// The decode order (ops/q8_matmul.h): within each run of 16 groups, byte j of group l sits at
// 64 ⌊j/4⌋ + 4 l + j mod 4; groups after the runs stay; back to natural is the same bytes.
TEST(Q8Order, InterleavesRunsOf16GroupsFourBytesAtATime) {
  configure_threads(2);
  torch::manual_seed(9);
  const int64_t n = 7, k = 2 * 512 + 96;  // 2 runs, then 3 groups
  const auto wf = weights(n, k);
  auto natural = quantize_q8(wf.data_ptr<float>(), n, k);
  auto w = natural;
  interleave_q8(w);
  ASSERT_TRUE(w.interleaved);
  EXPECT_EQ(w.scales, natural.scales);
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t c = 0; c < k; ++c) {
      const int64_t g = c / kQ8Group, j = c % kQ8Group;
      const int64_t at = g < 32 ? 512 * (g / 16) + 64 * (j / 4) + 4 * (g % 16) + j % 4 : c;
      ASSERT_EQ(w.q[r * k + at], natural.q[r * k + c]) << "[" << r << ", " << c << "]";
    }
  }
  const auto again = w.q;
  interleave_q8(w);  // already there: unchanged
  EXPECT_EQ(w.q, again);
  std::vector<int8_t> row(k);
  q8_natural_row(w, 3, row.data());
  EXPECT_TRUE(std::equal(row.begin(), row.end(), natural.q.begin() + 3 * k));
  const auto back = q8_natural(w);
  EXPECT_FALSE(back.interleaved);
  EXPECT_EQ(back.q, natural.q);
  EXPECT_EQ(back.scales, natural.scales);
  EXPECT_THROW(q8_natural_row(w, n, row.data()), Error);
}

// Model loading leaves each weight in the order its CPU level reads fastest: the decode order on
// AVX-512 VNNI, natural below it (and back to natural if the level was lowered since).
TEST(Q8Order, FastestOrderFollowsTheCpuLevel) {
  torch::manual_seed(10);
  const auto wf = weights(5, 512);
  const auto natural = quantize_q8(wf.data_ptr<float>(), 5, 512);
  for_each_cpu_isa([&] {
    auto w = natural;
    use_fastest_q8_order(w);
    const bool vnni = cpu_isa() >= CpuIsa::kAvx512Vnni;
    EXPECT_EQ(w.interleaved, vnni);
    EXPECT_EQ(w.q == natural.q, !vnni);
    auto v = natural;
    interleave_q8(v);
    use_fastest_q8_order(v);
    EXPECT_EQ(v.interleaved, vnni);
    if (!vnni) EXPECT_EQ(v.q, natural.q);
  });
}

TEST(Q8Matmul, NoRowsAndMalformedWeight) {
  std::vector<float> wf(4 * 32, 0.25f);
  auto w = quantize_q8(wf.data(), 4, 32);
  q8_matmul(nullptr, 0, w, nullptr);  // m = 0 writes nothing
  w.scales.pop_back();
  std::vector<float> x(32, 1.0f), y(4);
  EXPECT_THROW(q8_matmul(x.data(), 1, w, y.data()), Error);
}

}  // namespace
}  // namespace kvrag
