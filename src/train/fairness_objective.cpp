#include "train/fairness_objective.h"

#include <utility>

#include "core/error.h"
#include "prefix/fairness_terms.h"

namespace kvrag {

FairnessObjective::FairnessObjective(double weight, FairnessLoss loss, std::vector<float> attribute,
                                     std::vector<PrefixExample> twins, std::vector<char> has_twin)
    : weight_(weight),
      kind_(loss),
      attribute_(std::move(attribute)),
      twins_(std::move(twins)),
      has_twin_(std::move(has_twin)) {
  KVRAG_CHECK(weight >= 0, "fairness weight must be non-negative, got {}", weight);
  KVRAG_CHECK(!uses_counterfactual(loss) || twins_.size() == has_twin_.size(),
              "fairness objective: {} twins for {} flags", twins_.size(), has_twin_.size());
}

torch::Tensor FairnessObjective::loss(PrefixPipeline& pipeline, const PrefixBatch& batch,
                                      const KVPrefix& prefix, const std::vector<int64_t>& rows,
                                      double* term) const {
  *term = 0;
  if (!enabled()) return pipeline.loss(batch, prefix);
  const auto a = answer_logits(pipeline.llm(), batch, &prefix);  // logits [N, V], labels [N]
  auto loss = torch::nn::functional::cross_entropy(a.logits, a.labels);
  torch::Tensor fair = torch::zeros({}, torch::kFloat32);
  if (uses_counterfactual(kind_)) {
    // Per answer position, whether its row has a twin: rows hold target_lengths[r] positions
    // each, in row order (answer_logits).
    std::vector<float> weight;
    bool any = false;
    for (size_t r = 0; r < rows.size(); ++r) {
      const bool twin = has_twin_.at(rows[r]) != 0;
      any = any || twin;
      weight.insert(weight.end(), batch.target_lengths[r], twin ? 1.0f : 0.0f);
    }
    if (any) {
      const auto twin_batch = pipeline.batch(twins_, rows);
      const auto twin_prefix = pipeline.prefix(twin_batch);
      const auto b = answer_logits(pipeline.llm(), twin_batch, &twin_prefix);
      KVRAG_CHECK(b.logits.size(0) == a.logits.size(0),
                  "fairness objective: a twin's answer positions ({}) differ from its row's ({})",
                  b.logits.size(0), a.logits.size(0));
      fair = fair + symmetric_kl(a.logits, b.logits, torch::tensor(weight));
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

}  // namespace kvrag
