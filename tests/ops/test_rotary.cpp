// Rotary embedding: the tables against fp64 cos/sin, the fused in-place loop against the torch-op
// form (the same roundings, so the same values) and both against fp64, in fp32 and bf16.

#include <torch/torch.h>

#include <cmath>
#include <string>
#include <vector>

#include "ops/op_test_util.h"
#include "ops/rotary.h"
#include "support/test_support.h"

namespace kvrag {
namespace {

using test::dtype_name;
using test::max_abs_diff;

TEST(Rotary, TablesMatchFp64) {
  const int64_t hd = 16, n = 100;
  const auto inv_freq = rope_inv_freq(10000.0, hd);  // [hd/2]
  ASSERT_EQ(inv_freq.sizes(), (std::vector<int64_t>{hd / 2}));
  torch::Tensor cos, sin;
  rope_tables(inv_freq, n, &cos, &sin);
  ASSERT_EQ(cos.sizes(), (std::vector<int64_t>{n, hd}));
  ASSERT_EQ(cos.scalar_type(), torch::kFloat32);
  const auto i = torch::arange(0, hd, 2, torch::kFloat64);
  const auto freq = torch::pow(10000.0, -i / hd);                            // [hd/2]
  const auto angle = torch::arange(n, torch::kFloat64).unsqueeze(1) * freq;  // [n, hd/2]
  const auto emb = torch::cat({angle, angle}, -1);                           // [n, hd]
  // fp32 angles: position · inv_freq rounded (relative 2^-24, i.e. ~6e-6 at angle 99).
  EXPECT_LE(max_abs_diff(cos, emb.cos()), 2e-5);
  EXPECT_LE(max_abs_diff(sin, emb.sin()), 2e-5);
  {
    c10::InferenceMode inference;  // the tables stay usable by autograd code
    torch::Tensor c2, s2;
    rope_tables(inv_freq, 3, &c2, &s2);
    EXPECT_FALSE(c2.is_inference());
  }
}

// x [B, nH, T, hd] at positions[b][t]; fused on [B·T, nH, hd] vs apply_rotary with the looked-up
// rows, and both vs fp64 on the same (fp32) tables.
TEST(Rotary, FusedEqualsTorchFormAndFp64) {
  torch::manual_seed(8);
  const int64_t B = 2, nH = 3, T = 4, hd = 10;
  torch::Tensor cos, sin;
  rope_tables(rope_inv_freq(500.0, hd), 50, &cos, &sin);
  // [B, T]; padding repeats a position
  const std::vector<int64_t> positions = {0, 1, 2, 3, 7, 7, 8, 49};
  const auto index = torch::tensor(positions, torch::kInt64);
  for (const auto dtype : {torch::kFloat32, torch::kBFloat16}) {
    const auto x = test::randn({B, nH, T, hd}, dtype);
    const auto c = cos.index_select(0, index).view({B, 1, T, hd});  // [B, 1, T, hd] fp32
    const auto s = sin.index_select(0, index).view({B, 1, T, hd});
    const auto torch_form = apply_rotary(x, c.to(dtype), s.to(dtype));
    auto fused = x.transpose(1, 2).contiguous();  // [B, T, nH, hd]
    rotary_inplace(fused.view({B, T, nH * hd}), positions, cos, sin);
    // The same roundings in the same order: the same values.
    EXPECT_TRUE(fused.transpose(1, 2).equal(torch_form))
        << dtype_name(dtype) << " max diff " << max_abs_diff(fused.transpose(1, 2), torch_form);
    // fp64 with the tables as the op reads them (cast to x's dtype): bf16 rounds each product and
    // the sum (2^-9 relative each, of values up to |x|).
    const auto xd = x.to(torch::kFloat64);
    const auto cd = c.to(dtype).to(torch::kFloat64), sd = s.to(dtype).to(torch::kFloat64);
    const auto rotated = torch::cat({-xd.narrow(-1, hd / 2, hd / 2), xd.narrow(-1, 0, hd / 2)}, -1);
    const auto want = xd * cd + rotated * sd;
    const double tol = (dtype == torch::kFloat32 ? 1e-6 : 1e-2) * test::max_abs(xd);
    EXPECT_LE(max_abs_diff(torch_form, want), tol) << dtype_name(dtype);
  }
}

// A rotation keeps each pair's length: placing keys at a position and back changes little.
TEST(Rotary, IsDifferentiable) {
  torch::Tensor cos, sin;
  rope_tables(rope_inv_freq(10000.0, 8), 4, &cos, &sin);
  const auto x = torch::randn({1, 1, 4, 8}).requires_grad_(true);
  apply_rotary(x, cos.view({1, 1, 4, 8}), sin.view({1, 1, 4, 8})).pow(2).sum().backward();
  EXPECT_LE(max_abs_diff(x.grad(), 2 * x.detach()), 1e-5);  // |R x|² = |x|²
}

TEST(Rotary, FusedRejectsPositionsOutsideTables) {
  torch::Tensor cos, sin;
  rope_tables(rope_inv_freq(10000.0, 8), 4, &cos, &sin);
  const auto x = torch::zeros({2, 8});  // [N = 2 tokens, one head of 8]
  // row 4 of 4
  EXPECT_NE(test::error_of([&] { rotary_inplace(x, std::vector<int64_t>{0, 4}, cos, sin); }), "");
  // 1 position
  EXPECT_NE(test::error_of([&] { rotary_inplace(x, std::vector<int64_t>{0}, cos, sin); }), "");
  EXPECT_NE(test::error_of([&] {
              rotary_inplace(torch::zeros({2, 6}), std::vector<int64_t>{0, 1}, cos, sin);
            }),
            "");  // 6 values: not whole heads of 8
}

}  // namespace
}  // namespace kvrag
