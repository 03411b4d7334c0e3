// Rotary position embedding (RoPE) in Hugging Face's layout: the head dimension's two halves
// are rotated as pairs (x[i], x[i + hd/2]) by the angle position · inv_freq[i].
//
// dtype rules. The tables are fp32. Applying them casts cos/sin to x's dtype and rounds each of
// x·cos, rotate_half(x)·sin and their sum to x's dtype (fp32 or bf16), as HF's
// apply_rotary_pos_emb on tensors of that dtype; the torch-op form and the fused in-place loop
// do the same roundings.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>

#include <cstdint>

namespace kvrag {

// inv_freq[i] = 1 / theta^(2i / head_dim) → [head_dim / 2] fp32, computed in fp32 as HF does.
at::Tensor rope_inv_freq(double theta, int64_t head_dim);

// cos and sin of the angles p · inv_freq for positions p in [0, n), each [n, hd] fp32 contiguous
// (hd = 2 · inv_freq.size(0); the two halves repeat, as HF's cat(freqs, freqs)). Plain tensors
// without autograd history even under InferenceMode, so that differentiable code may read them.
void rope_tables(const at::Tensor& inv_freq, int64_t n, at::Tensor* cos, at::Tensor* sin);

// x·cos + rotate_half(x)·sin with torch ops (differentiable). x [..., hd]; cos/sin in x's dtype
// and broadcastable to x, e.g. [B, 1, T, hd] rows of the tables for x [B, nH, T, hd].
at::Tensor apply_rotary(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);

// The same in place, for inference: x [..., nH·hd] contiguous fp32 or bf16 whose leading
// dimensions hold N tokens (a projection's output [B, T, nH·hd], N = B·T), token n's heads rotated
// at position positions[n] (N entries) with cos/sin the fp32 tables of rope_tables() (rows
// covering every position). Not differentiable.
void rotary_inplace(const at::Tensor& x, c10::ArrayRef<int64_t> positions, const at::Tensor& cos,
                    const at::Tensor& sin);

}  // namespace kvrag
