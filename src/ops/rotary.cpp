#include "ops/rotary.h"

#include <torch/torch.h>

#include <algorithm>

#include "core/error.h"
#include "ops/op_support.h"

namespace kvrag {
namespace {

using op_support::round_to;

// HF rotate_half: [x1, x2] -> [-x2, x1] over the last dimension.
torch::Tensor rotate_half(const torch::Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  return torch::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

// In place on x [N, nH, hd]: x·cos + rotate_half(x)·sin at each token's position, with the
// roundings of apply_rotary (cos/sin cast to T, each product and the sum rounded to T).
template <typename T>
void rotary_rows(T* x, const int64_t* positions, const float* cos, const float* sin, int64_t N,
                 int64_t nH, int64_t hd) {
  const int64_t half = hd / 2;
  const auto r = [](float v) { return round_to(v, T()); };
  for (int64_t n = 0; n < N; ++n) {
    const float* c = cos + positions[n] * hd;  // [hd]
    const float* s = sin + positions[n] * hd;  // [hd]
    for (int64_t h = 0; h < nH; ++h) {
      T* v = x + (n * nH + h) * hd;
      for (int64_t i = 0; i < half; ++i) {
        const float x1 = static_cast<float>(v[i]), x2 = static_cast<float>(v[i + half]);
        v[i] = static_cast<T>(r(x1 * r(c[i])) + r(-x2 * r(s[i])));
        v[i + half] = static_cast<T>(r(x2 * r(c[i + half])) + r(x1 * r(s[i + half])));
      }
    }
  }
}

}  // namespace

torch::Tensor rope_inv_freq(double theta, int64_t head_dim) {
  return 1.0 / torch::pow(theta, torch::arange(0, head_dim, 2, torch::kInt64).to(torch::kFloat32) /
                                     head_dim);
}

void rope_tables(const torch::Tensor& inv_freq, int64_t n, torch::Tensor* cos, torch::Tensor* sin) {
  // HF: freqs = position · inv_freq in fp32, emb = cat(freqs, freqs); cos/sin of emb.
  c10::InferenceMode normal(false);
  torch::NoGradGuard no_grad;
  const auto freqs = torch::arange(n, torch::kInt64).to(torch::kFloat32).unsqueeze(1) * inv_freq;
  const auto emb = torch::cat({freqs, freqs}, -1);  // [n, hd]
  *cos = emb.cos().contiguous();
  *sin = emb.sin().contiguous();
}

torch::Tensor apply_rotary(const torch::Tensor& x, const torch::Tensor& cos,
                           const torch::Tensor& sin) {
  return x * cos + rotate_half(x) * sin;
}

void rotary_inplace(const torch::Tensor& x, c10::ArrayRef<int64_t> positions,
                    const torch::Tensor& cos, const torch::Tensor& sin) {
  const auto dtype = x.scalar_type();
  const int64_t N = static_cast<int64_t>(positions.size()), hd = cos.dim() == 2 ? cos.size(1) : 0;
  KVRAG_CHECK(x.dim() >= 2 && x.is_contiguous() && x.is_cpu() &&
                  (dtype == torch::kFloat32 || dtype == torch::kBFloat16),
              "rotary_inplace: x must be a contiguous CPU fp32 or bf16 tensor, got {} {}",
              c10::toString(dtype), c10::str(x.sizes()));
  KVRAG_CHECK(hd > 0 && x.size(-1) % hd == 0 && N > 0 && x.numel() / x.size(-1) == N,
              "rotary_inplace: x {} is not [..., heads*{}] over {} tokens", c10::str(x.sizes()), hd,
              N);
  const int64_t nH = x.size(-1) / hd;
  for (const auto* t : {&cos, &sin}) {
    KVRAG_CHECK(t->dim() == 2 && t->size(1) == hd && t->scalar_type() == torch::kFloat32 &&
                    t->is_contiguous(),
                "rotary_inplace: tables must be contiguous [n, {}] fp32, got {} {}", hd,
                c10::toString(t->scalar_type()), c10::str(t->sizes()));
  }
  const auto [lo, hi] = std::minmax_element(positions.begin(), positions.end());
  KVRAG_CHECK(*lo >= 0 && *hi < cos.size(0) && *hi < sin.size(0),
              "rotary_inplace: position {} outside the tables' {} rows", *lo < 0 ? *lo : *hi,
              std::min(cos.size(0), sin.size(0)));
  op_support::dispatch_fp32_bf16(dtype, [&](auto zero) {
    using T = decltype(zero);
    rotary_rows(x.data_ptr<T>(), positions.data(), cos.data_ptr<float>(), sin.data_ptr<float>(), N,
                nH, hd);
  });
}

}  // namespace kvrag
