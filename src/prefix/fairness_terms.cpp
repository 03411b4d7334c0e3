#include "prefix/fairness_terms.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/error.h"

namespace kvrag {

torch::Tensor symmetric_kl(const torch::Tensor& logits_a, const torch::Tensor& logits_b,
                           const torch::Tensor& weight) {
  KVRAG_CHECK(logits_a.dim() == 2 && logits_a.sizes() == logits_b.sizes() && weight.dim() == 1 &&
                  weight.size(0) == logits_a.size(0),
              "symmetric_kl: logits [N, V] twice and weight [N] expected, got [{}], [{}] and [{}]",
              fmt::join(logits_a.sizes(), ", "), fmt::join(logits_b.sizes(), ", "),
              fmt::join(weight.sizes(), ", "));
  const auto log_p = torch::log_softmax(logits_a.to(torch::kFloat32), -1);  // [N, V]
  const auto log_q = torch::log_softmax(logits_b.to(torch::kFloat32), -1);  // [N, V]
  // KL(p‖q) + KL(q‖p) = Σ_v (p − q)(log p − log q)
  const auto per_position = ((log_p.exp() - log_q.exp()) * (log_p - log_q)).sum(-1);  // [N]
  const auto w = weight.to(torch::kFloat32);
  return (per_position * w).sum() / w.sum().clamp_min(1.0);
}

torch::Tensor prefix_features(const KVPrefix& prefix) {
  KVRAG_CHECK(!prefix.empty(), "prefix_features: an empty prefix");
  std::vector<torch::Tensor> parts;
  for (const auto& values : prefix.values) {
    const auto v = values.to(torch::kFloat32);                     // [B, kvH, P, hd]
    const auto real = (v != 0).any(3).any(1).to(torch::kFloat32);  // [B, P]: not padding
    const auto count = real.sum(1).clamp_min(1).view({-1, 1, 1});  // [B, 1, 1]
    parts.push_back((v.sum(2) / count).flatten(1));                // [B, kvH·hd]
  }
  return torch::cat(parts, 1);  // [B, L·kvH·hd]
}

torch::Tensor decorrelation_penalty(const torch::Tensor& features, const torch::Tensor& attribute) {
  KVRAG_CHECK(
      features.dim() == 2 && attribute.dim() == 1 && attribute.size(0) == features.size(0),
      "decorrelation_penalty: features [B, F] and attribute [B] expected, got [{}] and [{}]",
      fmt::join(features.sizes(), ", "), fmt::join(attribute.sizes(), ", "));
  const auto a = attribute.to(torch::kFloat32);
  const auto rows = (a != 0).nonzero().flatten();
  const int64_t positive = (a > 0).sum().item<int64_t>(), negative = (a < 0).sum().item<int64_t>();
  if (positive < 2 || negative < 2) return features.sum() * 0;        // keeps the graph, value 0
  const auto x = features.to(torch::kFloat32).index_select(0, rows);  // [n, F]
  const auto y = a.index_select(0, rows);                             // [n]
  const auto xc = x - x.mean(0, /*keepdim=*/true);
  const auto yc = y - y.mean();
  const auto cov = (xc * yc.unsqueeze(1)).mean(0);               // [F]
  const auto var = (xc * xc).mean(0) * (yc * yc).mean() + 1e-8;  // [F]
  return (cov * cov / var).mean();
}

}  // namespace kvrag
