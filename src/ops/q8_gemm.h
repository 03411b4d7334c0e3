// y = x Wᵀ for many rows of x (prefill, a training batch) with int8 weights (ops/q8_matmul.h's
// Q8Matrix) and int8 activations: a GEMM whose inner products are exact integer dot products
// (AVX-512 VNNI's vpdpbusd, 64 multiply-adds an instruction: twice bf16's vdpbf16ps).
//
// x is rounded to int8 exactly as q8_matmul's VNNI path rounds it (per group of 32 along K:
// s_x = max|x| / 127, q_x = round(x / s_x) in [-127, 127]), so it carries the same error bound:
// each output within Σ_k |ŵ_k| s_x,k / 2 of the product on fp32 activations (ŵ the dequantized
// weights), plus fp32 rounding of Σ_g (s_w,g s_x,g) Σ_j q_w,j q_x,j, accumulated over groups in
// order. That order differs from q8_matmul's (which sums lanes of two groups), so the two agree
// to fp32 rounding, not bit for bit.
//
// Why by hand (the issue asked to try oneDNN first): oneDNN 2.6's int8 matmul takes one scale per
// output column (or one for all), not one per group of 32 along K, and kvrag's Q8_0-style groups
// are what keep int8 within 0.3 logits of fp32 (ops/q8_matmul.h); the alternative that libtorch
// already offers, dequantizing W to bf16 tiles for its bf16 GEMM (ops/q8_linear.h), pays the
// dequantization on every call and multiplies at bf16's rate.
//
// How. W is repacked per call, a tile of rows at a time into the calling thread's cache (blocks of
// 16 rows transposed in 4-byte steps, so that one vector holds four weights of 16 outputs): no
// second copy of the model's weights. x is rounded once into unsigned bytes q_x + 128 (vpdpbusd
// multiplies unsigned by signed bytes); each group's dot product then starts from -128 Σ_j q_w,j,
// computed while packing, which takes the offset out exactly. A micro-tile of 4 rows of x and 32
// outputs keeps 8 integer and 8 fp32 accumulators in registers over the whole of K.
#pragma once

#include <cstdint>

#include "ops/q8_matmul.h"

namespace kvrag {

// Whether q8_gemm runs at the current cpu_isa() (ops/cpu_isa.h): AVX-512 VNNI.
bool q8_gemm_available();

// y [m, N] = x [m, K] · Wᵀ, x and y fp32 row-major, as described above; an output is NaN where a
// group of x it reads holds a NaN or an infinity. Parallel over N on kvrag's helper threads
// (ops/threads.h). Error (naming the shapes) for a malformed weight, or where !q8_gemm_available().
void q8_gemm(const float* x, int64_t m, const Q8Matrix& w, float* y);

}  // namespace kvrag
