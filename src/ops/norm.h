// Normalisations over the last dimension: LLaMA's RMSNorm and BERT's LayerNorm.
//
// dtype rules. x and the parameters are fp32 or bf16 and the result has x's dtype. Both compute
// in fp32; the roundings (where a value passes through x's dtype) are stated per op, and every
// path of an op does the same ones.
#pragma once

#include <ATen/core/Tensor.h>

namespace kvrag {

// HF LlamaRMSNorm: weight * to_dtype(x / sqrt(mean(x²) + eps)), the normalisation in fp32 and
// cast back to x's dtype (one rounding) before the product with the weight (a second one).
// x [..., n], weight [n] → [..., n].
//
// Inference (no autograd history needed) on CPU tensors of one dtype runs one fused loop per
// row (the sum of squares accumulated in fp64, the rest as above); otherwise torch ops, which
// autograd differentiates.
at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps);

// BERT's LayerNorm (torch::layer_norm over the last dimension) computed in fp32 from fp32 copies
// of x, weight and bias, rounded to x's dtype once. x [..., n], weight/bias [n] → [..., n].
// Differentiable.
at::Tensor layer_norm(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                      double eps);

}  // namespace kvrag
