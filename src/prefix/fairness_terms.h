// The fairness terms of knowledge-encoder training (train-prefix --fairness-weight λ
// --fairness-loss …) and the prefix features that the leakage probe (qa/fairness_eval.h) reads.
//
//   counterfactual   the LLM's answer distributions given a segment's prefix and given its
//                    counterfactual twin's (the same text with only the protected attribute
//                    switched) should agree: symmetric KL at every answer position.
//   decorrelation    the encoder's output should carry no linear trace of the attribute: the
//                    mean over features of the squared Pearson correlation between each prefix
//                    feature and the attribute, over the rows of a batch (a normalised linear
//                    HSIC; normalised so that λ means the same at any width and scale).
#pragma once

#include <torch/torch.h>

#include "model/llama.h"
#include "prefix/fairness_loss.h"

namespace kvrag {

// Symmetric KL, KL(p‖q) + KL(q‖p), of the softmaxes of logits_a and logits_b [N, V], averaged
// over the positions whose weight [N] (0 or 1, fp32) is 1. 0 where no weight is 1. Scalar fp32,
// differentiable in both.
torch::Tensor symmetric_kl(const torch::Tensor& logits_a, const torch::Tensor& logits_b,
                           const torch::Tensor& weight);

// Per row, the prefix's values averaged over its entries (padding, whose values are zero, left
// out: the features do not depend on the batch), layers concatenated → [B, L·kvH·hd] fp32.
// Values, not keys: placed keys are rotated by each row's prompt length, which says nothing
// about the segment.
torch::Tensor prefix_features(const KVPrefix& prefix);

// The decorrelation term: features [B, F], attribute [B] fp32 in {-1, 0, +1} (0: the row has no
// protected attribute and is left out). Mean over F of corr(feature_f, attribute)². 0 unless at
// least two rows of each sign are present. Scalar fp32, differentiable in `features`.
torch::Tensor decorrelation_penalty(const torch::Tensor& features, const torch::Tensor& attribute);

}  // namespace kvrag
