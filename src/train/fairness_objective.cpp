#include "train/fairness_objective.h"

#include <algorithm>
#include <cmath>
#include <unordered_map>
#include <utility>

#include "core/error.h"
#include "eval/answer_match.h"
#include "prefix/fairness_terms.h"

namespace kvrag {

FairnessObjective::FairnessObjective(double weight, FairnessLoss loss, std::vector<float> attribute,
                                     std::vector<PrefixExample> twins, std::vector<char> has_twin,
                                     std::vector<float> row_weight)
    : weight_(weight),
      kind_(loss),
      attribute_(std::move(attribute)),
      twins_(std::move(twins)),
      has_twin_(std::move(has_twin)),
      row_weight_(std::move(row_weight)) {
  KVRAG_CHECK(weight >= 0, "fairness weight must be non-negative, got {}", weight);
  KVRAG_CHECK(!uses_counterfactual(loss) || twins_.size() == has_twin_.size(),
              "fairness objective: {} twins for {} flags", twins_.size(), has_twin_.size());
}

namespace {

// [N]: per_example[rows[r]] at each of row r's answer positions; rows hold target_lengths[r]
// positions each, in row order (answer_logits).
template <typename T>
torch::Tensor per_answer_position(const PrefixBatch& batch, const std::vector<int64_t>& rows,
                                  const std::vector<T>& per_example) {
  std::vector<float> out;
  for (size_t r = 0; r < rows.size(); ++r)
    out.insert(out.end(), batch.target_lengths[r], static_cast<float>(per_example.at(rows[r])));
  return torch::tensor(out);
}

}  // namespace

torch::Tensor FairnessObjective::loss(PrefixPipeline& pipeline, const PrefixBatch& batch,
                                      const KVPrefix& prefix, const std::vector<int64_t>& rows,
                                      double* term) const {
  *term = 0;
  if (!enabled() && !balanced()) return pipeline.loss(batch, prefix);
  const auto a = answer_logits(pipeline.llm(), batch, &prefix);  // logits [N, V], labels [N]
  torch::Tensor loss;
  if (balanced()) {
    // Each answer position weighs its row's weight; a mean over positions, as without weights.
    namespace F = torch::nn::functional;
    const auto per_token =
        F::cross_entropy(a.logits, a.labels, F::CrossEntropyFuncOptions().reduction(torch::kNone));
    loss = (per_token * per_answer_position(batch, rows, row_weight_)).mean();
  } else {
    loss = torch::nn::functional::cross_entropy(a.logits, a.labels);
  }
  if (!enabled()) return loss;
  torch::Tensor fair = torch::zeros({}, torch::kFloat32);
  if (uses_counterfactual(kind_)) {
    // Per answer position, whether its row has a twin (1 / 0).
    const auto twin = per_answer_position(batch, rows, has_twin_);
    if (twin.sum().item<float>() > 0) {
      const auto twin_batch = pipeline.batch(twins_, rows);
      const auto twin_prefix = pipeline.prefix(twin_batch);
      const auto b = answer_logits(pipeline.llm(), twin_batch, &twin_prefix);
      KVRAG_CHECK(b.logits.size(0) == a.logits.size(0),
                  "fairness objective: a twin's answer positions ({}) differ from its row's ({})",
                  b.logits.size(0), a.logits.size(0));
      fair = fair + symmetric_kl(a.logits, b.logits, twin);
    }
  }
  if (uses_decorrelation(kind_)) {
    std::vector<float> attribute;
    for (const int64_t r : rows) attribute.push_back(attribute_.at(r));
    fair = fair + decorrelation_penalty(prefix_features(prefix), torch::tensor(attribute));
  }
  *term = fair.item<double>();
  return loss + weight_ * fair;
}

std::vector<float> answer_balance_weights(const std::vector<std::string>& answers,
                                          double quantile) {
  KVRAG_CHECK(quantile > 0 && quantile <= 1,
              "answer balancing: the quantile must be in (0, 1], not {}", quantile);
  std::vector<std::string> keys;
  std::unordered_map<std::string, int64_t> count;
  for (const auto& a : answers) ++count[keys.emplace_back(normalize_answer(a))];
  if (keys.empty()) return {};
  std::vector<int64_t> sorted;
  for (const auto& k : keys) sorted.push_back(count[k]);
  std::sort(sorted.begin(), sorted.end());
  const auto rank = static_cast<size_t>(std::ceil(quantile * static_cast<double>(sorted.size())));
  const double cap = static_cast<double>(sorted[std::max<size_t>(rank, 1) - 1]);
  std::vector<double> w;
  double sum = 0;
  for (const auto& k : keys)
    sum += w.emplace_back(std::min(1.0, cap / static_cast<double>(count[k])));
  std::vector<float> out;
  for (const double v : w)
    out.push_back(static_cast<float>(v * static_cast<double>(w.size()) / sum));
  return out;
}

}  // namespace kvrag
