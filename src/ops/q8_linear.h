// y = x Wᵀ (+ b) for a weight held as a Q8Matrix (weight-only int8, ops/q8_matmul.h), as a torch
// op: the int8 counterpart of linear() in ops/matmul.h, differentiable with respect to x and b.
#pragma once

#include <ATen/core/Tensor.h>

#include <memory>

#include "ops/q8_channel_gemm.h"
#include "ops/q8_matmul.h"

namespace kvrag {

// Rows of x from which q8_linear multiplies through a GEMM (q8_gemm, or one over dequantized tiles
// of W) instead of q8_matmul (whose blocks of 8 rows of x reread each tile of W from cache,
// computing at the rate of its inner loop): from here the GEMM's speed outweighs packing or
// dequantizing W once.
constexpr int64_t kQ8GemmMinRows = 16;

// x [..., K] fp32 or bf16, w [N, K], bias [N] fp32 or undefined → [..., N] in x's dtype.
//
// Up to kQ8GemmMinRows rows of x (decoding), the product is q8_matmul's (x converted to fp32 first,
// exactly for bf16; with AVX-512 VNNI then to int8). With more rows and AVX-512 VNNI, it is
// q8_gemm's (ops/q8_gemm.h: x rounded to int8 as q8_matmul rounds it, integer dot products).
// With more rows and no VNNI, `many_rows` says how: kRowCodes through q8_channel_gemm where the
// CPU has AVX2 (else as kDequantized); kDequantized dequantizes W in tiles (≤ 16 MB) for a GEMM: in
// bf16 where libtorch multiplies bf16 natively (native_bf16_matmul(), ops/matmul.h: oneDNN with
// AVX-512 BF16 or AMX where present), x and the tile rounded to bf16 and accumulated in fp32,
// else in fp32 through BLAS. Either way the bias is added
// in fp32 before the one rounding to x's dtype. Under grad mode with x (or bias) requiring grad,
// the result carries a backward node: dx = dy · W computed from the int8 weights (dequantized a
// tile of rows at a time, so no fp32 copy of W is ever whole) and db = Σ dy. The weights themselves
// take no gradient: they are frozen data, not parameters.
at::Tensor q8_linear(const at::Tensor& x, const std::shared_ptr<const Q8Matrix>& w,
                     const at::Tensor& bias = {}, Q8ManyRows many_rows = Q8ManyRows::kDequantized);

// Whether q8_linear multiplies many rows through q8_channel_gemm for `many_rows` at the current
// cpu_isa() (on libtorch's OpenMP team: ForwardThreadsGuard, ops/threads.h).
bool q8_row_codes_in_use(Q8ManyRows many_rows);

}  // namespace kvrag
