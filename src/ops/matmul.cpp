#include "ops/matmul.h"

#include <torch/torch.h>

#include <algorithm>

#include "ops/cpu_isa.h"
#include "ops/op_support.h"
#include "ops/simd.h"
#include "ops/threads.h"

namespace kvrag {
namespace {

// --- matrix-vector kernel (y = x W^T for a few rows of x) ----------------------------------------
//
// W [out, in] row-major, fp32 or bf16; x [R, in] fp32; y [R, out] fp32. Each thread takes ranges
// of output features; within one, every row of W is read once and applied to all R rows of x.
// An AVX2/FMA version is chosen at run time; the portable one has the same structure.

inline float to_float(float v) { return v; }
inline float to_float(c10::BFloat16 v) { return static_cast<float>(v); }

template <typename W>
void gemv_portable(const W* w, const float* x, float* y, int64_t R, int64_t in, int64_t out,
                   int64_t o_begin, int64_t o_end) {
  for (int64_t o = o_begin; o < o_end; ++o) {
    const W* wo = w + o * in;
    for (int64_t r = 0; r < R; ++r) {
      const float* xr = x + r * in;
      float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};  // independent partial sums
      int64_t i = 0;
      for (; i + 8 <= in; i += 8) {
        for (int j = 0; j < 8; ++j) acc[j] += to_float(wo[i + j]) * xr[i + j];
      }
      float sum = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
      for (; i < in; ++i) sum += to_float(wo[i]) * xr[i];
      y[r * out + o] = sum;
    }
  }
}

#if KVRAG_X86

KVRAG_AVX2 inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
KVRAG_AVX2 inline __m256 load8(const c10::BFloat16* p) {
  // bf16 is the top half of an fp32: widen to 32 bits and shift into place.
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
KVRAG_AVX2 inline float hsum(__m256 v) {
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_shuffle_ps(t, t, 1)));
}

template <typename W>
KVRAG_AVX2 void gemv_avx2(const W* w, const float* x, float* y, int64_t R, int64_t in, int64_t out,
                          int64_t o_begin, int64_t o_end) {
  const int64_t in8 = in - in % 8;
  int64_t o = o_begin;
  if (R == 1) {
    // One row of x: four rows of W at a time give four independent FMA chains.
    for (; o + 4 <= o_end; o += 4) {
      const W* w0 = w + o * in;
      __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
      for (int64_t i = 0; i < in8; i += 8) {
        const __m256 xv = _mm256_loadu_ps(x + i);
        a0 = _mm256_fmadd_ps(load8(w0 + i), xv, a0);
        a1 = _mm256_fmadd_ps(load8(w0 + in + i), xv, a1);
        a2 = _mm256_fmadd_ps(load8(w0 + 2 * in + i), xv, a2);
        a3 = _mm256_fmadd_ps(load8(w0 + 3 * in + i), xv, a3);
      }
      float s[4] = {hsum(a0), hsum(a1), hsum(a2), hsum(a3)};
      for (int k = 0; k < 4; ++k) {
        for (int64_t i = in8; i < in; ++i) s[k] += to_float(w0[k * in + i]) * x[i];
        y[o + k] = s[k];
      }
    }
  }
  // Several rows of x (up to kGemvMaxRows), or the last rows of W.
  __m256 acc[kGemvMaxRows];
  for (; o < o_end; ++o) {
    const W* wo = w + o * in;
    for (int64_t r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
    for (int64_t i = 0; i < in8; i += 8) {
      const __m256 wv = load8(wo + i);
      for (int64_t r = 0; r < R; ++r)
        acc[r] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + r * in + i), acc[r]);
    }
    for (int64_t r = 0; r < R; ++r) {
      float s = hsum(acc[r]);
      for (int64_t i = in8; i < in; ++i) s += to_float(wo[i]) * x[r * in + i];
      y[r * out + o] = s;
    }
  }
}

#endif  // KVRAG_X86

// y [R, out] fp32 = x [R, in] fp32 · W^T, W contiguous [out, in] fp32 or bf16.
void gemv(const torch::Tensor& weight, const float* x, float* y, int64_t R) {
  const int64_t out = weight.size(0), in = weight.size(1);
  // At least ~64K weights per task: below that a thread costs more than it saves.
  const int64_t grain = std::max<int64_t>(4, (int64_t{1} << 16) / std::max<int64_t>(in, 1));
  const bool avx2 = cpu_isa() >= CpuIsa::kAvx2;
  auto run = [&](auto* w) {
    parallel_chunks(out, grain, [&](int64_t begin, int64_t end) {
#if KVRAG_X86
      if (avx2) {
        gemv_avx2(w, x, y, R, in, out, begin, end);
        return;
      }
#endif
      gemv_portable(w, x, y, R, in, out, begin, end);
    });
  };
  if (weight.scalar_type() == torch::kBFloat16) {
    run(weight.data_ptr<c10::BFloat16>());
  } else {
    run(weight.data_ptr<float>());
  }
}

// y = x Wᵀ (+ b) for bf16 x and W computed in fp32 without autograd, W converted a tile of rows
// at a time (kWeightTileBytes of fp32) so that no fp32 copy of a whole weight is ever held.
torch::Tensor linear_bf16_in_fp32(const torch::Tensor& x, const torch::Tensor& weight,
                                  const torch::Tensor& bias) {
  const int64_t out = weight.size(0), in = weight.size(1);
  const int64_t rows = std::clamp<int64_t>(kWeightTileBytes / (4 * in), 1, out);
  const auto x32 = x.to(torch::kFloat32).reshape({-1, in});    // [M, in]
  auto y = torch::empty({x32.size(0), out}, torch::kFloat32);  // [M, out]
  for (int64_t o0 = 0; o0 < out; o0 += rows) {
    const int64_t n = std::min(rows, out - o0);
    const auto tile = weight.narrow(0, o0, n).to(torch::kFloat32);  // [n, in]
    auto part = y.narrow(1, o0, n);                                 // [M, n]
    torch::mm_out(part, x32, tile.t());
  }
  if (bias.defined()) y.add_(bias.to(torch::kFloat32));
  auto sizes = x.sizes().vec();
  sizes.back() = out;
  return y.view(sizes).to(torch::kBFloat16);
}

}  // namespace

bool native_bf16_matmul() { return cpu_isa() >= CpuIsa::kAvx512; }

torch::Tensor pad_rows_for_bf16_gemm(const torch::Tensor& x) {
  constexpr int64_t kRows = 64;
  const int64_t m = x.size(0);
  if (m <= kRows || m % kRows == 0) return x;
  const int64_t pad = kRows - m % kRows;
  return torch::cat({x, torch::zeros({pad, x.size(1)}, x.options())});
}

torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& weight,
                     const torch::Tensor& bias) {
  const auto dtype = x.scalar_type();
  const int64_t in = weight.size(1), out = weight.size(0);
  const bool grad = op_support::needs_grad({&x, &weight, &bias});
  if (!grad && x.is_cpu() && weight.is_cpu() && dtype == weight.scalar_type() &&
      (dtype == torch::kFloat32 || dtype == torch::kBFloat16) && weight.is_contiguous() &&
      x.dim() >= 1 && x.size(-1) == in && x.numel() > 0 && x.numel() <= kGemvMaxRows * in) {
    const int64_t rows = x.numel() / in;
    const auto xf = x.to(torch::kFloat32).contiguous();   // [rows, in]
    auto y = torch::empty({rows, out}, torch::kFloat32);  // [rows, out]
    gemv(weight, xf.data_ptr<float>(), y.data_ptr<float>(), rows);
    if (bias.defined()) y.add_(bias);  // in fp32 before the one rounding, as addmm does
    auto sizes = x.sizes().vec();
    sizes.back() = out;
    return y.view(sizes).to(dtype);
  }
  if (dtype == torch::kBFloat16 && !native_bf16_matmul()) {
    if (!grad && weight.scalar_type() == torch::kBFloat16 && x.size(-1) == in) {
      return linear_bf16_in_fp32(x, weight, bias);
    }
    return torch::nn::functional::linear(x.to(torch::kFloat32), weight.to(torch::kFloat32),
                                         bias.defined() ? bias.to(torch::kFloat32) : bias)
        .to(torch::kBFloat16);
  }
  if (dtype == torch::kBFloat16 && x.dim() >= 2 && x.size(-1) == in) {
    const auto x2 = x.reshape({-1, in});  // [M, in]
    const auto padded = pad_rows_for_bf16_gemm(x2);
    if (padded.size(0) != x2.size(0)) {
      auto sizes = x.sizes().vec();
      sizes.back() = out;
      // [..., out]
      return torch::nn::functional::linear(padded, weight, bias)
          .narrow(0, 0, x2.size(0))
          .view(sizes);
    }
  }
  return torch::nn::functional::linear(x, weight, bias);
}

torch::Tensor matmul(const torch::Tensor& a, const torch::Tensor& b) {
  if (a.scalar_type() == torch::kBFloat16 && !native_bf16_matmul()) {
    return torch::matmul(a.to(torch::kFloat32), b.to(torch::kFloat32)).to(torch::kBFloat16);
  }
  return torch::matmul(a, b);
}

}  // namespace kvrag
