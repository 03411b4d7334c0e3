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
// Answer balancing (train-prefix --balance-answers Q), beside or without a term: each row's
// answer tokens weigh answer_balance_weights (below), so that answers the training set repeats
// far more often than most — a stereotype's answers, where it lives in the data — count less.
//
// With λ = 0 and no balancing the loss is exactly answer_loss (prefix/prefix_batch.h) and
// nothing else runs.
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
  // row_weight[i]: example i's weight in the cross-entropy (empty: 1 each).
  FairnessObjective(double weight, FairnessLoss loss, std::vector<float> attribute,
                    std::vector<PrefixExample> twins, std::vector<char> has_twin,
                    std::vector<float> row_weight = {});

  bool enabled() const { return weight_ > 0; }  // a term with λ > 0
  bool balanced() const { return !row_weight_.empty(); }
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
  std::vector<float> row_weight_;
};

// Weights that cap the training answers' frequencies, as word2vec subsamples frequent words: c_i
// is the number of examples whose normalised answer (normalize_answer) equals example i's, c_q
// the `quantile` of c over the examples (nearest rank), and example i weighs min(1, c_q / c_i),
// scaled so that the weights average 1. Answers no more frequent than the quantile keep their
// weight; a stereotype's answers, repeated far more often than others (the demo's home cities:
// 250 examples each against ~40 for another city), are brought down to it. quantile 1: all 1.
std::vector<float> answer_balance_weights(const std::vector<std::string>& answers, double quantile);
}  // namespace kvrag
