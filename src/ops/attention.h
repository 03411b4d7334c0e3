// Scaled dot-product attention: the prefill/training form over keys and values that may start
// with earlier entries (a prefix, a cache), the single-token decode step over a KV cache, and
// the write of new keys/values into such a cache.
//
// Grouped-query attention: H query heads share kvH key/value heads (H a multiple of kvH); query
// heads j·G … j·G+G-1 (G = H / kvH) read kv head j, as Hugging Face's repeat_kv. kvH = H is
// plain multi-head attention.
//
// dtype rules (both forms alike). q, keys and values are fp32 or bf16, all of one dtype. The
// scores q·kᵀ are accumulated in fp32 and rounded to that dtype once (matmul(), ops/matmul.h),
// then, in fp32: scaled by 1/√hd, masked, softmax. The probabilities are rounded to the dtype
// and multiplied with the values, accumulating in fp32; the output has the dtype.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>

#include <cstdint>

namespace kvrag {

// The score a boolean mask gives to a hidden key: large and finite, so that a row whose keys
// are all hidden (a segment of padding only) comes out finite, weighting every key equally,
// where -inf would make it NaN.
constexpr float kHiddenScore = -1e30f;

// softmax(q·kᵀ/√hd + mask) · v, differentiable (torch ops; the products through matmul()).
//
//   q        [B or 1, H, T, hd]   (batch 1: the same queries for every row of keys)
//   keys     [B, kvH, S, hd]      S entries; S > T where earlier entries (prefix, cache) come
//   values   [B, kvH, S, hd]      first — the mask says which entries each query may see
//   mask     4-D, broadcastable to [B, H, T, S] with dims of size 1 or the full size:
//              undefined  every entry visible;
//              bool       true = visible, false = hidden (scored kHiddenScore);
//              fp32       added to the scaled scores (0 visible, a very negative value hidden).
//   out      undefined, or (inference) a [B, T, H·hd] tensor of the output dtype that viewing as
//            [B, T, H, hd] does not copy (a row range of a larger one), written instead of a new
//            one
//   probs    nullptr, or (inference) set to the attention probabilities [B, H, T, S] fp32 (what
//            multiplied the values, before their rounding to the dtype): for attribution
//   returns  [B, T, H·hd] (out where given)
//
// The G query heads of one kv head are stacked along the rows of one product, so keys and
// values are never repeated.
at::Tensor attention(const at::Tensor& q, const at::Tensor& keys, const at::Tensor& values,
                     const at::Tensor& mask = {}, const at::Tensor& out = {},
                     at::Tensor* probs = nullptr);

// One decode step (one query per row) over a KV cache, for inference (not differentiable): the
// same function as attention() with T = 1 and keys/values the first S cache entries, as one
// direct loop (no score tensor) parallelised over (row, head) pairs with parallel_chunks.
//
//   q          [B, 1, H·hd] contiguous (one token's query projection; any shape holding B rows of
//              H·hd values, e.g. [B, H, hd], does alike — no view needed on the decode path)
//   k_cache    [B, kvH, capacity, hd] contiguous, q's dtype
//   v_cache    [B, kvH, capacity, hd] contiguous, q's dtype
//   key_valid  [B, S] host bytes (B·S of them, row-major): nonzero = entry may be attended (S ≤
//   capacity) returns    q's shape and dtype: each row's H heads of hd values
//
// A row with no valid entry (a padding query, whose output is unused) attends to all S entries
// with their scores. Roundings as attention(): scores and probabilities pass through the dtype.
at::Tensor decode_attention(const at::Tensor& q, const at::Tensor& k_cache,
                            const at::Tensor& v_cache, c10::ArrayRef<uint8_t> key_valid);

// cache [B, kvH, capacity, hd] entries [start, start + T) ← src [B, T, kvH·hd] (a projection's
// output; [B, T, kvH, hd] alike), both contiguous CPU tensors of one dtype. For inference.
void write_cache(const at::Tensor& src, const at::Tensor& cache, int64_t start);

}  // namespace kvrag
