// y = x Wᵀ for many rows of x with int8 weights (ops/q8_matmul.h's Q8Matrix) on CPUs without
// AVX-512 VNNI (AVX2, or AVX-512 without VNNI), where q8_gemm (ops/q8_gemm.h) does not run:
// through oneDNN's integer GEMM (dnnl_gemm_u8s8s32) with one scale per output channel and one
// per row of x.
//
// Why not groups of 32 here. Without VNNI an integer dot product takes vpmaddubsw + vpmaddwd +
// vpaddd per 32 (AVX2) or 64 (AVX-512) pairs. Summed over all of K, oneDNN's kernel runs them at
// 400-420 GOP/s on 2 cores capped to AVX2 (AMD Zen 5), 2.0-2.9× its own sgemm there (138-200
// GFLOP/s) on bert-base's shapes. A kernel that also converts and scales every group of 32 (as
// q8_gemm does) spends a sixth of its instructions on that and ran at ~150 GOP/s a core in a
// stand-alone test, ~1.3× fp32 at best: short of what int8 is for. So the product is made on
// channels, as PyTorch's dynamic quantization of BERT (FBGEMM) makes it, with a scale per row of
// x where that has one per tensor:
//
//  * W's rows are requantized per call (no second copy of the model is kept): row n's scale is
//    s_n = max|ŵ_n| / 127 (ŵ the dequantized weights, q · s_g) and q'_n,k = round(q_k · (s_g /
//    s_n)) in [-127, 127] (each within s_n / 2 of ŵ, a hair more from fp32: 8 bits over the row's
//    range instead of the group's).
//  * Each row of x gets an asymmetric 7-bit code: s_x = (max(x, 0) - min(x, 0)) / 127, a zero
//    point z = round(-min(x, 0) / s_x) in [0, 127], u = clamp(round(x · (1 / s_x)) + z, 0, 127)
//    (each x within s_x / 2 of (u - z) s_x, and a hair more from the fp32 product). 7 bits, not
//    8: vpmaddubsw adds two u8 × s8 products in 16 bits with saturation, and 127 · 127 · 2 fits
//    where 255 · 127 · 2 does not (FBGEMM's "reduce_range", for the same reason). Where VNNI is
//    present oneDNN would not need it, but then q8_gemm runs instead.
//  * y = s_x s_n (Σ_k u_k q'_n,k - z Σ_k q'_n,k): the integer sum is exact (|Σ| < 127² K < 2³¹
//    for K ≤ 131,072), then one fp32 rounding per factor.
//
// The error against the product on fp32 activations and the Q8Matrix's weights: per output,
// within Σ_k (|x_k| s_n + |ŵ_k| s_x + s_x s_n / 2) / 2 (plus fp32 rounding; tested): coarser than
// q8_gemm's per-group codes. On tiny-bert, 4.0% of the pooler output's range against 2.0% with
// q8_gemm (model/fixture_check.h, kInt8RowCodesRelativeTolerance).
// A row of x holding a NaN or an infinity makes its outputs NaN.
#pragma once

#include <cstdint>

#include "ops/q8_matmul.h"

namespace kvrag {

// How q8_linear (ops/q8_linear.h) multiplies many rows of x (at least kQ8GemmMinRows) where the
// CPU lacks AVX-512 VNNI; with VNNI it is always q8_gemm's.
enum class Q8ManyRows {
  // W dequantized in tiles for a float GEMM, x as it is: the float GEMM's rate (fp32's on AVX2).
  kDequantized,
  // q8_channel_gemm (below): x rounded to 7-bit codes per row, W requantized per
  // output channel, one integer GEMM: 1.7× fp32 for bert-base on AVX2, with coarser rounding.
  // For encoders (BERT), whose inputs are LayerNorm outputs; not for a large LLM, whose inputs
  // carry outlier features that a per-row scale would spread over every other value of the row.
  kRowCodes,
};

// Whether q8_channel_gemm is the int8 GEMM at the current cpu_isa() (ops/cpu_isa.h): AVX2 or
// AVX-512 without VNNI.
bool q8_channel_gemm_available();

// y [m, N] = x [m, K] · Wᵀ, x and y fp32 row-major, as described above. Multiplies on libtorch's
// OpenMP team (oneDNN's threads). Error (naming the shapes) for a malformed weight, K above
// 131,072, a failed oneDNN call, or where !q8_channel_gemm_available().
void q8_channel_gemm(const float* x, int64_t m, const Q8Matrix& w, float* y);

}  // namespace kvrag
