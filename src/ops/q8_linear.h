// y = x Wᵀ (+ b) for a weight held as a Q8Matrix (weight-only int8, ops/q8_matmul.h), as a torch
// op: the int8 counterpart of linear() in ops/matmul.h, differentiable with respect to x and b.
#pragma once

#include <ATen/core/Tensor.h>

#include <memory>

#include "ops/q8_matmul.h"

namespace kvrag {

// x [..., K] fp32 or bf16, w [N, K], bias [N] fp32 or undefined → [..., N] in x's dtype.
//
// The product runs in fp32 (q8_matmul; x is converted to fp32 first, exactly for bf16) and the
// bias is added in fp32 before the one rounding to x's dtype. Under grad mode with x (or bias)
// requiring grad, the result carries a backward node: dx = dy · W computed from the int8 weights
// (dequantized a tile of rows at a time, so no fp32 copy of W is ever whole) and db = Σ dy. The
// weights themselves take no gradient: they are frozen data, not parameters.
at::Tensor q8_linear(const at::Tensor& x, const std::shared_ptr<const Q8Matrix>& w,
                     const at::Tensor& bias = {});

}  // namespace kvrag
