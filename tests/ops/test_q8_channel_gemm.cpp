// The int8 GEMM for CPUs without VNNI (ops/q8_channel_gemm.h) against fp64 references: the
// integer product of the codes the header defines (pins the arithmetic down to fp32 rounding),
// and the product on fp32 activations and the Q8Matrix's weights within the stated bound; tiles
// and threads do not change an output; non-finite activations reach the outputs.

#include "ops/q8_channel_gemm.h"

#include <torch/torch.h>

#include <algorithm>
#include <string>
#include <vector>

#include "core/error.h"
#include "ops/cpu_isa.h"
#include "ops/op_test_util.h"
#include "ops/q8_linear.h"
#include "ops/q8_test_util.h"
#include "ops/threads.h"
#include "support/test_support.h"

namespace kvrag {
namespace {

using test::dequantized;
using test::weights;

// The lowest level that runs q8_channel_gemm (AVX2), while alive; skips the test where the CPU
// lacks it.
#define RUN_ON_AVX2()                                                                            \
  if (best_cpu_isa() < CpuIsa::kAvx2) {                                                          \
    GTEST_SKIP() << "this CPU has no AVX2 (" << cpu_features() << "): q8_channel_gemm does not " \
                 << "run here";                                                                  \
  }                                                                                              \
  const ScopedCpuIsa avx2(CpuIsa::kAvx2)

// y [m, N] = q8_channel_gemm(x [m, K], w).
torch::Tensor product(const torch::Tensor& x, const Q8Matrix& w) {
  auto y = torch::full({x.size(0), w.rows}, std::nanf(""), torch::kFloat32);  // unwritten shows
  q8_channel_gemm(x.data_ptr<float>(), x.size(0), w, y.data_ptr<float>());
  return y;
}

// The codes the header defines, computed with torch's fp32 operations (the kernel's, one by one).
struct Codes {
  torch::Tensor u, sx, zx;  // x: [m, K] codes (fp64), [m, 1] fp32 scales, [m, 1] zero points
  torch::Tensor q, sw;      // W: [N, K] requantized (fp64), [N, 1] fp32 scales
};

Codes codes_of(const torch::Tensor& x, const Q8Matrix& w) {
  Codes c;
  const auto lo = x.amin(1, true).clamp_max(0), hi = x.amax(1, true).clamp_min(0);  // [m, 1]
  c.sx = (hi - lo) / 127;
  c.zx = torch::where(c.sx > 0, (-lo / c.sx).round().clamp(0, 127), torch::zeros_like(lo));
  const auto inv = 1 / c.sx;
  c.u = torch::where(c.sx > 0, ((x * inv).round() + c.zx).clamp(0, 127), torch::zeros_like(x))
            .to(torch::kFloat64);
  const int64_t N = w.rows, K = w.cols, G = K / kQ8Group;
  const auto q = torch::from_blob(const_cast<int8_t*>(w.q.data()), {N, G, kQ8Group}, torch::kInt8)
                     .to(torch::kFloat32);                                          // [N, G, 32]
  const auto s = torch::from_blob(const_cast<float*>(w.scales.data()), {N, G, 1});  // [N, G, 1]
  const auto top = (q.abs().amax(2, true) * s).amax(1, true);                       // [N, 1, 1]
  const auto sw = top / 127;
  const auto ratio = torch::where(sw > 0, s / sw, torch::zeros_like(s));  // [N, G, 1]
  c.q = (q * ratio).round().view({N, K}).to(torch::kFloat64);
  c.sw = sw.view({N, 1});
  return c;
}

// Sizes: rows of x from one to many (the GEMM calls: kQ8GemmMinRows and up), N around 8-wide
// vectors (9, 37: tails), K of one group, an odd count of groups and a layer's.
TEST(Q8ChannelGemm, MatchesTheIntegerProductOfItsCodes) {
  RUN_ON_AVX2();
  configure_threads(2);
  torch::manual_seed(21);
  for (const auto [n, k] : {std::pair<int64_t, int64_t>{9, 32}, {37, 96}, {64, 768}, {300, 3072}}) {
    const auto wf = weights(n, k);
    const auto w = quantize_q8(wf.data_ptr<float>(), n, k);
    const auto deq = dequantized(w).to(torch::kFloat64);  // [N, K]
    for (const int64_t m : {1, 3, 16, 45}) {
      auto x = torch::randn({m, k}) + 0.3;  // not centred: a zero point away from the middle
      x.index_put_({torch::rand({m, k}) < 0.01}, 6.0);
      x[m - 1].zero_();  // a row of zeros: exact zeros
      const std::string what =
          "m=" + std::to_string(m) + " n=" + std::to_string(n) + " k=" + std::to_string(k);
      const Codes c = codes_of(x, w);
      // Σ_k u q' - z Σ_k q': exact in fp64 (|values| < 2⁵³).
      const auto exact = torch::matmul(c.u, c.q.t()) - c.zx.to(torch::kFloat64) * c.q.sum(1);
      const auto scale = (c.sx * c.sw.t()).to(torch::kFloat64);  // [m, N], s_x s_n in fp32
      const auto want = exact * scale;
      const auto y = product(x, w);
      const auto yd = y.to(torch::kFloat64);
      // Three fp32 roundings: the integer to fp32, s_x s_n, and their product.
      EXPECT_FALSE(((yd - want).abs() > want.abs() * 4e-7).any().item<bool>())
          << what << ": max error from the codes' product " << test::max_abs_diff(y, want);
      EXPECT_TRUE(torch::equal(y[m - 1], torch::zeros({n}))) << what;

      // Against the product on fp32 x and the Q8Matrix's weights: each x within s_x/2 of its
      // code's value (a hair more: the quotient's fp32 rounding), each weight within s_n / 2.
      const auto xd = x.to(torch::kFloat64);
      const auto sx = c.sx.to(torch::kFloat64) * (0.5 + 1e-5), sw = c.sw.to(torch::kFloat64) / 2;
      const auto bound = torch::matmul(xd.abs(), sw.expand({n, k}).t()) + sx * deq.abs().sum(1) +
                         sx * sw.t() * k + want.abs() * 4e-7;
      EXPECT_FALSE(((yd - torch::matmul(xd, deq.t())).abs() > bound).any().item<bool>())
          << what << ": max error " << test::max_abs_diff(y, torch::matmul(xd, deq.t()));
    }
  }
}

// Every output is the same whatever the tiles of W (a product of many rows takes several oneDNN
// calls) and the threads; a row's outputs do not depend on the other rows.
TEST(Q8ChannelGemm, OutputsDoNotDependOnTilesRowsOrThreads) {
  RUN_ON_AVX2();
  torch::manual_seed(22);
  const int64_t n = 150, k = 64;
  const auto wf = weights(n, k);
  const auto w = quantize_q8(wf.data_ptr<float>(), n, k);
  const auto x = torch::randn({70000, k});  // 16 MB of int32 products: tiles of 64 rows of W
  configure_threads(2);
  const auto y = product(x, w);
  const auto head = x.narrow(0, 0, 100).contiguous();
  EXPECT_TRUE(torch::equal(product(head, w), y.narrow(0, 0, 100)));
  EXPECT_TRUE(torch::equal(product(x.narrow(0, 7, 1).contiguous(), w), y.narrow(0, 7, 1)));
  configure_threads(1);
  EXPECT_TRUE(torch::equal(product(head, w), y.narrow(0, 0, 100)));
  configure_threads(2);
}

// A weight reordered for VNNI (Q8Matrix::interleaved) and multiplied at a lower level goes
// through a natural copy: the same outputs.
TEST(Q8ChannelGemm, DecodeOrderGivesTheNaturalOrdersOutputs) {
  RUN_ON_AVX2();
  torch::manual_seed(23);
  const int64_t n = 21, k = 608;
  const auto wf = weights(n, k);
  const auto natural = quantize_q8(wf.data_ptr<float>(), n, k);
  auto w = natural;
  interleave_q8(w);
  const auto x = torch::randn({40, k});
  configure_threads(2);
  EXPECT_TRUE(torch::equal(product(x, w), product(x, natural)));
}

TEST(Q8ChannelGemm, NonFiniteActivationReachesItsRowOnly) {
  RUN_ON_AVX2();
  configure_threads(2);
  torch::manual_seed(23);
  test::expect_non_finite_x_reaches_its_row_only(product);
}

// Where it runs (AVX2, AVX-512 without VNNI), where q8_linear uses it (only when asked: BERT),
// and its errors.
TEST(Q8ChannelGemm, RunsWithoutVnniOnlyAndErrorsNameTheProblem) {
  std::vector<float> wf(4 * 32, 0.25f), x(2 * 32, 1.0f), y(2 * 4);
  const auto w = quantize_q8(wf.data(), 4, 32);
  for (const auto isa : supported_cpu_isas()) {
    const ScopedCpuIsa scope(isa);
    const bool runs = isa == CpuIsa::kAvx2 || isa == CpuIsa::kAvx512;
    EXPECT_EQ(q8_channel_gemm_available(), runs) << cpu_isa_name(isa);
    EXPECT_EQ(q8_row_codes_in_use(Q8ManyRows::kRowCodes), runs) << cpu_isa_name(isa);
    EXPECT_FALSE(q8_row_codes_in_use(Q8ManyRows::kDequantized)) << cpu_isa_name(isa);
    if (runs) {
      q8_channel_gemm(x.data(), 2, w, y.data());
      EXPECT_NEAR(y[0], 32 * 0.25f, 32 * 0.25f / 127) << cpu_isa_name(isa);
    } else {
      EXPECT_NE(test::error_of([&] {
                  q8_channel_gemm(x.data(), 2, w, y.data());
                }).find("needs AVX2 without AVX-512 VNNI"),
                std::string::npos);
    }
  }
  if (best_cpu_isa() < CpuIsa::kAvx2) return;
  const ScopedCpuIsa avx2(CpuIsa::kAvx2);
  Q8Matrix bad = w;
  bad.scales.pop_back();
  EXPECT_NE(test::error_of([&] {
              q8_channel_gemm(x.data(), 2, bad, y.data());
            }).find("malformed int8 weight [4, 32]"),
            std::string::npos);
  Q8Matrix wide;
  wide.rows = 1;
  wide.cols = 131072 + 32;
  wide.q.resize(wide.cols);
  wide.scales.resize(wide.cols / kQ8Group);
  std::vector<float> xw(wide.cols), yw(1);
  EXPECT_NE(test::error_of([&] {
              q8_channel_gemm(xw.data(), 1, wide, yw.data());
            }).find("rows of 131104 values"),
            std::string::npos);
}

// q8_linear with kRowCodes: the same product plus the bias, for rows enough for a GEMM; fewer
// rows stay on q8_matmul's kernels (no rounding of x on AVX2).
TEST(Q8ChannelGemm, Q8LinearUsesItForManyRowsWhenAsked) {
  RUN_ON_AVX2();
  configure_threads(2);
  torch::manual_seed(24);
  const int64_t n = 50, k = 64;
  const auto wf = weights(n, k);
  const auto w = std::make_shared<const Q8Matrix>(quantize_q8(wf.data_ptr<float>(), n, k));
  const auto bias = torch::randn({n});
  torch::NoGradGuard no_grad;
  const auto x = torch::randn({2, kQ8GemmMinRows, k});
  const auto got = q8_linear(x, w, bias, Q8ManyRows::kRowCodes);
  const auto want = product(x.view({-1, k}), *w).view({2, kQ8GemmMinRows, n}) + bias;
  EXPECT_TRUE(torch::allclose(got, want, 1e-6, 1e-6));
  EXPECT_FALSE(torch::equal(got, q8_linear(x, w, bias)));  // kDequantized: fp32 x
  const auto few = x.narrow(1, 0, 3);
  EXPECT_TRUE(
      torch::equal(q8_linear(few, w, bias, Q8ManyRows::kRowCodes), q8_linear(few, w, bias)));
}

}  // namespace
}  // namespace kvrag
