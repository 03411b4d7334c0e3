// attention(), decode_attention() and write_cache() against softmax(QKᵀ/√d + mask)V in fp64 (keys
// and values repeated per query head, as HF repeat_kv), on every CPU path this machine runs, in
// fp32 and bf16: grouped-query heads, entries before the queries (a prefix), padding, additive
// and boolean masks, queries shared across the batch, and gradients.

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "core/error.h"
#include "ops/attention.h"
#include "ops/op_test_util.h"
#include "ops/threads.h"
#include "support/test_support.h"

namespace kvrag {
namespace {

using test::dtype_name;
using test::for_each_cpu_isa;
using test::max_abs;
using test::max_abs_diff;

// fp64: q [B|1, H, T, hd], keys/values [B, kvH, S, hd], mask as attention() takes it → [B, T,
// H*hd].
torch::Tensor reference_attention(const torch::Tensor& q, const torch::Tensor& keys,
                                  const torch::Tensor& values, const torch::Tensor& mask) {
  const int64_t B = keys.size(0), H = q.size(1), T = q.size(2), hd = q.size(3),
                G = H / keys.size(1);
  const auto k = keys.to(torch::kFloat64).repeat_interleave(G, 1);  // [B, H, S, hd]
  const auto v = values.to(torch::kFloat64).repeat_interleave(G, 1);
  auto scores = torch::matmul(q.to(torch::kFloat64), k.transpose(-1, -2)) /
                std::sqrt(static_cast<double>(hd));
  if (mask.defined()) {
    scores = mask.scalar_type() == torch::kBool ? scores.masked_fill(mask.logical_not(), -1e30)
                                                : scores + mask.to(torch::kFloat64);
  }
  const auto out = torch::matmul(torch::softmax(scores, -1), v);  // [B, H, T, hd]
  return out.transpose(1, 2).reshape({B, T, H * hd});
}

// Tolerance relative to the output's scale. fp32: summation order only. bf16: the scores, the
// probabilities and the output are each rounded to bf16 (2^-9 relative each); a score of size
// ~4 then moves by ~0.01, which shifts the probabilities by ~1% of themselves.
double tolerance(torch::Dtype dtype, const torch::Tensor& want) {
  return (dtype == torch::kFloat32 ? 1e-5 : 3e-2) * std::max(1.0, max_abs(want));
}

// LLaMA's layout: B rows, P entries before T queries (a prefix or a cache); query t sits at entry
// P + t and sees entries ≤ P + t; row 1 has `pad` left-padding tokens, hidden as keys.
struct Layout {
  int64_t B = 2, P = 4, T = 5, pad = 2;
  int64_t S() const { return P + T; }
  torch::Tensor visible() const {  // [B, 1, T, S] bool
    auto m = torch::ones({B, 1, T, S()}, torch::kBool);
    for (int64_t t = 0; t < T; ++t)
      m.select(2, t).narrow(-1, P + t + 1, S() - P - t - 1).fill_(false);
    m[1].narrow(-1, P, pad).fill_(false);
    return m;
  }
  torch::Tensor additive() const {  // [B, 1, T, S] fp32: 0 visible, the lowest float hidden
    return torch::zeros({B, 1, T, S()})
        .masked_fill(visible().logical_not(), std::numeric_limits<float>::lowest());
  }
};

// Grouped-query heads (G = 1, 3) over a prefix with causal and padding masks, both mask kinds.
TEST(Attention, MatchesFp64ReferenceWithPrefixPaddingAndGroups) {
  configure_threads(2);
  torch::manual_seed(3);
  const Layout lay;
  for_each_cpu_isa([&] {
    for (const auto dtype : {torch::kFloat32, torch::kBFloat16}) {
      for (const int64_t kvH : {6, 2}) {
        const int64_t H = 6, hd = 8;
        const auto q = test::randn({lay.B, H, lay.T, hd}, dtype);
        const auto keys = test::randn({lay.B, kvH, lay.S(), hd}, dtype);
        const auto values = test::randn({lay.B, kvH, lay.S(), hd}, dtype);
        for (const auto& mask : {lay.additive(), lay.visible()}) {
          const std::string what =
              dtype_name(dtype) + " kvH=" + std::to_string(kvH) +
              (mask.scalar_type() == torch::kBool ? " bool mask" : " additive mask");
          const auto want = reference_attention(q, keys, values, mask);
          torch::Tensor got;
          {
            torch::NoGradGuard no_grad;  // in-place masking
            got = attention(q, keys, values, mask);
          }
          ASSERT_EQ(got.sizes(), want.sizes()) << what;
          ASSERT_EQ(got.scalar_type(), dtype) << what;
          EXPECT_LE(max_abs_diff(got, want), tolerance(dtype, want)) << what;
          // Recording autograd (out-of-place masking): the same values.
          const auto recorded =
              attention(q.clone().requires_grad_(true), keys, values, mask).detach();
          EXPECT_TRUE(recorded.equal(got)) << what;
        }
      }
    }
  });
}

// No mask; a mask with a head dimension; queries shared by every row (batch 1, the knowledge
// encoder's learned queries).
TEST(Attention, MaskShapesAndSharedQueries) {
  torch::manual_seed(4);
  for (const auto dtype : {torch::kFloat32, torch::kBFloat16}) {
    const auto q = test::randn({1, 4, 3, 8}, dtype);
    const auto keys = test::randn({2, 2, 6, 8}, dtype), values = test::randn({2, 2, 6, 8}, dtype);
    const auto per_head = torch::randn({2, 4, 3, 6}) > -0.5;  // [B, H, T, S]
    per_head.select(-1, 0).fill_(true);                       // no row without a visible key
    for (const auto& mask : {torch::Tensor(), per_head}) {
      const auto want = reference_attention(q.expand({2, -1, -1, -1}), keys, values, mask);
      const auto got = attention(q, keys, values, mask);
      EXPECT_LE(max_abs_diff(got, want), tolerance(dtype, want))
          << dtype_name(dtype) << " mask " << mask.defined();
    }
  }
}

// A boolean mask hiding every key of a row (a segment of padding only) leaves it finite: every
// value weighted equally.
TEST(Attention, AllHiddenRowStaysFinite) {
  torch::manual_seed(5);
  const auto q = test::randn({1, 2, 3, 4}, torch::kFloat32);
  const auto keys = test::randn({2, 2, 5, 4}, torch::kFloat32),
             values = test::randn({2, 2, 5, 4}, torch::kFloat32);
  auto visible = torch::ones({2, 1, 1, 5}, torch::kBool);
  visible[1].fill_(false);
  const auto out = attention(q, keys, values, visible);  // [2, 3, 2*4]
  ASSERT_TRUE(out.isfinite().all().item<bool>());
  const auto mean = values[1].mean(1);  // [2 heads, 4]
  for (int64_t t = 0; t < 3; ++t) EXPECT_LE(max_abs_diff(out[1][t].view({2, 4}), mean), 1e-6);
}

// The autograd form's gradients equal fp64 autograd through the reference.
TEST(Attention, GradientsMatchFp64Reference) {
  torch::manual_seed(6);
  const Layout lay;
  const auto q = test::randn({lay.B, 4, lay.T, 8}, torch::kFloat32);
  const auto keys = test::randn({lay.B, 2, lay.S(), 8}, torch::kFloat32);
  const auto values = test::randn({lay.B, 2, lay.S(), 8}, torch::kFloat32);
  // a loss = Σ weights · out
  const auto weights = torch::randn({lay.B, lay.T, 4 * 8}, torch::kFloat64);
  for (const auto& mask : {lay.additive(), lay.visible()}) {
    std::vector<torch::Tensor> got, want;
    for (const bool reference : {false, true}) {
      auto qg = (reference ? q.to(torch::kFloat64) : q.clone()).requires_grad_(true);
      auto kg = (reference ? keys.to(torch::kFloat64) : keys.clone()).requires_grad_(true);
      auto vg = (reference ? values.to(torch::kFloat64) : values.clone()).requires_grad_(true);
      const auto out =
          reference ? reference_attention(qg, kg, vg, mask) : attention(qg, kg, vg, mask);
      (out.to(torch::kFloat64) * weights).sum().backward();
      (reference ? want : got) = {qg.grad(), kg.grad(), vg.grad()};
    }
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_LE(max_abs_diff(got[i], want[i]), 1e-5 * std::max(1.0, max_abs(want[i])))
          << "gradient " << i;
    }
  }
}

TEST(Attention, RejectsShapesThatDoNotFit) {
  const auto keys = torch::zeros({2, 2, 6, 8});
  // 3 heads, 2 kv
  EXPECT_NE(test::error_of([&] { attention(torch::zeros({2, 3, 1, 8}), keys, keys); }), "");
  EXPECT_NE(test::error_of([&] {
              attention(torch::zeros({2, 4, 1, 8}), keys, keys, torch::zeros({2, 1, 1, 5}));
            }),
            "");  // mask over 5 entries, keys have 6
}

// A cache of `capacity` entries holding S = 7 for B = 3 rows, some hidden (row 2: none visible
// but the last; row 1: padding in the middle). Heads of hd values (12: the portable loops only;
// multiples of 8: the vectorised ones, and each of their tails).
struct Cache {
  int64_t B = 3, kvH = 2, capacity = 10, S = 7, hd = 12;
  torch::Tensor keys, values, key_valid;      // [B, kvH, capacity, hd] x2, [B, S] uint8
  std::vector<uint8_t> valid_bytes() const {  // decode_attention's form of key_valid
    return {key_valid.data_ptr<uint8_t>(), key_valid.data_ptr<uint8_t>() + B * S};
  }
  explicit Cache(torch::Dtype dtype, int64_t head_dim = 12) : hd(head_dim) {
    keys = test::randn({B, kvH, capacity, hd}, dtype);
    values = test::randn({B, kvH, capacity, hd}, dtype);
    key_valid = torch::ones({B, S}, torch::kUInt8);
    key_valid[1].narrow(0, 2, 3).zero_();
    key_valid[2].narrow(0, 0, S - 1).zero_();
  }
};

// The decode step equals the prefill form (T = 1) on the same cache, and the fp64 reference.
TEST(DecodeAttention, MatchesPrefillFormAndFp64Reference) {
  configure_threads(2);
  torch::manual_seed(7);
  for_each_cpu_isa([] {
    for (const auto dtype : {torch::kFloat32, torch::kBFloat16}) {
      for (const auto [H, hd] :
           std::vector<std::pair<int64_t, int64_t>>{{2, 12}, {6, 12}, {2, 16}, {6, 24}, {4, 32}}) {
        const Cache c(dtype, hd);
        const auto q = test::randn({c.B, H, c.hd}, dtype);
        const auto got = decode_attention(q, c.keys, c.values, c.valid_bytes());  // [B, H, hd]
        ASSERT_EQ(got.sizes(), q.sizes());
        // The projection's layout [B, 1, H*hd] alike.
        EXPECT_TRUE(decode_attention(q.view({c.B, 1, H * c.hd}), c.keys, c.values, c.valid_bytes())
                        .view({c.B, H, c.hd})
                        .equal(got));
        ASSERT_EQ(got.scalar_type(), dtype);
        const auto keys = c.keys.narrow(2, 0, c.S), values = c.values.narrow(2, 0, c.S);
        const auto visible = c.key_valid.to(torch::kBool).view({c.B, 1, 1, c.S});
        const auto q4 = q.unsqueeze(2);  // [B, H, 1, hd]
        torch::NoGradGuard no_grad;
        const auto prefill = attention(q4, keys, values, visible).view({c.B, H, c.hd});
        const auto want = reference_attention(q4, keys, values, visible).view({c.B, H, c.hd});
        const std::string what =
            dtype_name(dtype) + " H=" + std::to_string(H) + " hd=" + std::to_string(hd);
        // fp32: summation order. bf16: the two may round a score or a probability to neighbouring
        // bf16 values (different summation orders before the rounding).
        EXPECT_LE(max_abs_diff(got, prefill), tolerance(dtype, want)) << what;
        EXPECT_LE(max_abs_diff(got, want), tolerance(dtype, want)) << what;
      }
    }
  });
}

// A row with no valid entry (a padding query) still gets finite values: it attends to all.
TEST(DecodeAttention, RowWithoutValidEntryAttendsToAll) {
  const Cache c(torch::kFloat32);
  const auto q = test::randn({c.B, 2, c.hd}, torch::kFloat32);
  auto none = c.valid_bytes();
  std::fill(none.begin(), none.begin() + c.S, 0);  // row 0
  const auto got = decode_attention(q, c.keys, c.values, none);
  const auto want =
      reference_attention(q.unsqueeze(2), c.keys.narrow(2, 0, c.S), c.values.narrow(2, 0, c.S), {});
  EXPECT_LE(max_abs_diff(got[0], want[0].view({2, c.hd})), 1e-5);
}

TEST(WriteCache, WritesEntriesAtTheirPlace) {
  for (const auto dtype : {torch::kFloat32, torch::kBFloat16}) {
    auto cache = torch::zeros({2, 3, 8, 4}, dtype);     // [B, kvH, capacity, hd]
    const auto src = test::randn({2, 5, 3, 4}, dtype);  // [B, T, kvH, hd]
    write_cache(src, cache, 2);
    EXPECT_TRUE(cache.narrow(2, 2, 5).equal(src.transpose(1, 2))) << dtype_name(dtype);
    auto again = torch::zeros_like(cache);
    write_cache(src.view({2, 5, 3 * 4}), again, 2);  // the projection's layout [B, T, kvH*hd]
    EXPECT_TRUE(again.equal(cache)) << dtype_name(dtype);
    EXPECT_EQ(cache.narrow(2, 0, 2).abs().sum().item<double>(), 0.0);
    EXPECT_EQ(cache.narrow(2, 7, 1).abs().sum().item<double>(), 0.0);
    EXPECT_NE(test::error_of([&] { write_cache(src, cache, 4); }), "");  // 4 + 5 > 8 entries
  }
}

}  // namespace
}  // namespace kvrag
