// The int8 GEMM (ops/q8_gemm.h) against fp64 references: the product of x rounded to int8 as the
// kernel rounds it (pins the integer arithmetic down to fp32 rounding), the product on fp32
// activations (within the activations' rounding bound), and the fp32 weights; blocking and
// threads do not change an output; non-finite activations reach the outputs.

#include "ops/q8_gemm.h"

#include <torch/torch.h>

#include <string>
#include <vector>

#include "core/error.h"
#include "ops/cpu_isa.h"
#include "ops/op_test_util.h"
#include "ops/q8_test_util.h"
#include "ops/threads.h"

namespace kvrag {
namespace {

using test::dequantized;
using test::magnitudes;
using test::rounding_bound;
using test::vnni_activations;
using test::weights;

// y [m, N] = q8_gemm(x [m, K], w).
torch::Tensor product(const torch::Tensor& x, const Q8Matrix& w) {
  auto y = torch::full({x.size(0), w.rows}, std::nanf(""), torch::kFloat32);  // unwritten shows
  q8_gemm(x.data_ptr<float>(), x.size(0), w, y.data_ptr<float>());
  return y;
}

#define SKIP_WITHOUT_VNNI()                                                                  \
  if (!q8_gemm_available()) {                                                                \
    GTEST_SKIP() << "this CPU has no AVX-512 VNNI (" << cpu_features() << "): q8_gemm does " \
                 << "not run here";                                                          \
  }

// Sizes: rows of x in every micro-tile remainder (1…4, 5, 7) and several micro-tiles (16, 33,
// 130); N of one partial block (9), a block and a partial one (21, 37), an odd count of blocks
// (48: a micro-tile of one block ends the tile), many tiles (700 × 4096: 2 threads' chunks); K of
// one group, an odd number of groups (96, 160: the last 64-byte step half empty) and a layer's.
TEST(Q8Gemm, MatchesTheIntegerProductOfRoundedActivations) {
  SKIP_WITHOUT_VNNI();
  configure_threads(2);
  torch::manual_seed(11);
  for (const auto [n, k] :
       {std::pair<int64_t, int64_t>{9, 32}, {37, 4096}, {21, 96}, {48, 160}, {700, 4096}}) {
    const auto wf = weights(n, k);
    const auto w = quantize_q8(wf.data_ptr<float>(), n, k);
    const auto deq = dequantized(w).to(torch::kFloat64);  // [N, K]
    const double rel = rounding_bound(k);
    for (const int64_t m : {1, 2, 3, 4, 5, 7, 16, 33, 130}) {
      if (n == 700 && m < 16) continue;  // the large weight for the GEMM sizes only
      auto x = torch::randn({m, k});
      x.index_put_({torch::rand({m, k}) < 0.01}, 20.0);
      x.index({m - 1, torch::indexing::Slice(0, kQ8Group)}).zero_();
      const std::string what =
          "m=" + std::to_string(m) + " n=" + std::to_string(n) + " k=" + std::to_string(k);
      torch::Tensor x_half;  // [m, K]: each x's rounding bound
      const auto xq = vnni_activations(x, &x_half);
      const auto want_q = torch::matmul(xq, deq.t());  // [m, N]: x̂ Ŵᵀ
      const auto mag_q = magnitudes(xq, deq);
      const auto want = torch::matmul(x.to(torch::kFloat64), deq.t());  // x Ŵᵀ
      const auto xbound = torch::matmul(x_half, deq.abs().t());         // Σ_k |Ŵ_k| s_x,k / 2

      const auto y = product(x, w);
      ASSERT_EQ(y.sizes(), (std::vector<int64_t>{m, n})) << what;
      ASSERT_FALSE(y.isnan().any().item<bool>()) << what << ": an output not written";
      const auto yd = y.to(torch::kFloat64);
      EXPECT_FALSE(((yd - want_q).abs() > mag_q * rel).any().item<bool>())
          << what << ": max error from x̂ Ŵᵀ " << test::max_abs_diff(y, want_q);
      EXPECT_FALSE(((yd - want).abs() > xbound + mag_q * rel).any().item<bool>())
          << what << ": max error " << test::max_abs_diff(y, want) << " (bound "
          << test::max_abs(xbound) << ")";
      // And the same as q8_matmul's VNNI path to fp32 rounding (both from the same x̂).
      auto y_mv = torch::empty({m, n});
      q8_matmul(x.data_ptr<float>(), m, w, y_mv.data_ptr<float>());
      EXPECT_FALSE(((yd - y_mv.to(torch::kFloat64)).abs() > mag_q * (2 * rel)).any().item<bool>())
          << what << ": max difference from q8_matmul " << test::max_abs_diff(y, y_mv);
    }
  }
}

// An output is computed the same way whatever the rows around it, the micro-tile it falls in and
// the threads: a row's logits do not depend on the batch.
TEST(Q8Gemm, OutputsDoNotDependOnBlockingOrThreads) {
  SKIP_WITHOUT_VNNI();
  torch::manual_seed(12);
  const int64_t n = 75, k = 4096 + 96;  // 131 groups: odd; 5 blocks, the last partial
  const auto wf = weights(n, k);
  const auto w = quantize_q8(wf.data_ptr<float>(), n, k);
  const auto w_head = quantize_q8(wf.data_ptr<float>(), 30, k);  // other blocks, other tails
  const auto x = torch::randn({19, k});
  configure_threads(2);
  const auto y = product(x, w);
  for (int64_t r = 0; r < x.size(0); ++r) {
    EXPECT_TRUE(torch::equal(product(x.narrow(0, r, 1), w), y.narrow(0, r, 1))) << "row " << r;
  }
  EXPECT_TRUE(torch::equal(product(x.narrow(0, 3, 6), w), y.narrow(0, 3, 6)));
  EXPECT_TRUE(torch::equal(product(x, w_head), y.narrow(1, 0, 30)));
  configure_threads(1);
  EXPECT_TRUE(torch::equal(product(x, w), y));
  configure_threads(2);
}

// A weight in the decode order (Q8Matrix::interleaved) packs into the same tiles: outputs equal
// the natural order's, for chunks made of runs (4096 + 96: two chunks of 64 groups, then 3
// groups after the runs) and a chunk of a run and 3 groups (608).
TEST(Q8Gemm, DecodeOrderGivesTheNaturalOrdersOutputs) {
  SKIP_WITHOUT_VNNI();
  configure_threads(2);
  torch::manual_seed(14);
  for (const int64_t k : {int64_t{4096 + 96}, int64_t{608}}) {
    const int64_t n = 37;
    const auto wf = weights(n, k);
    const auto natural = quantize_q8(wf.data_ptr<float>(), n, k);
    auto w = natural;
    interleave_q8(w);
    const auto x = torch::randn({20, k});
    EXPECT_TRUE(torch::equal(product(x, w), product(x, natural))) << "k=" << k;
  }
}

TEST(Q8Gemm, NonFiniteActivationReachesTheOutputs) {
  SKIP_WITHOUT_VNNI();
  configure_threads(2);
  torch::manual_seed(13);
  test::expect_non_finite_x_reaches_its_row_only(product);
}

TEST(Q8Gemm, ErrorsWithoutVnniAndForAMalformedWeight) {
  std::vector<float> wf(4 * 32, 0.25f), x(2 * 32, 1.0f), y(2 * 4);
  auto w = quantize_q8(wf.data(), 4, 32);
  for (const auto isa : supported_cpu_isas()) {
    const ScopedCpuIsa scope(isa);
    if (isa >= CpuIsa::kAvx512Vnni) {
      EXPECT_TRUE(q8_gemm_available());
      q8_gemm(x.data(), 2, w, y.data());
      EXPECT_NEAR(y[0], 32 * 0.25f, 1e-5);
    } else {
      EXPECT_FALSE(q8_gemm_available());
      EXPECT_THROW(q8_gemm(x.data(), 2, w, y.data()), Error) << cpu_isa_name(isa);
    }
  }
  if (!q8_gemm_available()) return;
  q8_gemm(nullptr, 0, w, nullptr);  // m = 0 writes nothing
  w.scales.pop_back();
  EXPECT_THROW(q8_gemm(x.data(), 2, w, y.data()), Error);
}

}  // namespace
}  // namespace kvrag
