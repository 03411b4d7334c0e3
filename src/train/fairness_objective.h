// Knowledge-encoder training's objective with a fairness term (train-prefix --fairness-weight λ
// --fairness-loss counterfactual|decorrelation|both): the answer's cross-entropy + λ · term
// (prefix/fairness_terms.h), on the rows of a training batch.
//
//   counterfactual   each row whose question names a twin passage ("twin_passage_id") is run a
//                    second time with the twin's prefix; the term is the symmetric KL of the
//                    two answer distributions at the answer's positions (rows without a twin
//                    count for nothing).
//   decorrelation    the rows' prefix features against the protected attribute: the question's
//                    "group", one of exactly two values (−1 / +1), rows without one left out.
//
// With λ = 0 the loss is exactly answer_loss (prefix/prefix_batch.h) and nothing else runs.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include "prefix/fairness_loss.h"
#include "prefix/prefix_pipeline.h"

namespace kvrag {

class FairnessObjective {
 public:
  FairnessObjective() = default;  // λ = 0
  // attribute[i] ∈ {−1, 0, +1} per training example; twins[i] the example with its twin's
  // segments (used where has_twin[i]), both indexed like the training examples.
  FairnessObjective(double weight, FairnessLoss loss, std::vector<float> attribute,
                    std::vector<PrefixExample> twins, std::vector<char> has_twin);

  bool enabled() const { return weight_ > 0; }
  double weight() const { return weight_; }

  // The loss of `batch` (rows `rows` of the training examples) given its prefix. *term gets the
  // fairness term's value (0 when disabled).
  torch::Tensor loss(PrefixPipeline& pipeline, const PrefixBatch& batch, const KVPrefix& prefix,
                     const std::vector<int64_t>& rows, double* term) const;

 private:
  double weight_ = 0;
  FairnessLoss kind_ = FairnessLoss::kCounterfactual;
  std::vector<float> attribute_;
  std::vector<PrefixExample> twins_;
  std::vector<char> has_twin_;
};

}  // namespace kvrag
