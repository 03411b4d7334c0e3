#include "model/bertscore.h"

#include <torch/torch.h>

#include "core/error.h"

namespace kvrag {

BertScore bertscore(const at::Tensor& candidate, const at::Tensor& reference) {
  KVRAG_CHECK(
      candidate.dim() == 2 && reference.dim() == 2 && candidate.size(1) == reference.size(1),
      "bertscore: expected [n_c, H] and [n_r, H], got {} and {}", c10::str(candidate.sizes()),
      c10::str(reference.sizes()));
  BertScore s;
  if (candidate.size(0) == 0 || reference.size(0) == 0) return s;
  namespace F = torch::nn::functional;
  const auto c = F::normalize(candidate.to(torch::kFloat64), F::NormalizeFuncOptions().dim(1));
  const auto r = F::normalize(reference.to(torch::kFloat64), F::NormalizeFuncOptions().dim(1));
  const auto sim = torch::matmul(c, r.t());  // [n_c, n_r]
  s.precision = std::get<0>(sim.max(1)).mean().item<double>();
  s.recall = std::get<0>(sim.max(0)).mean().item<double>();
  s.f1 = s.precision + s.recall > 0 ? 2 * s.precision * s.recall / (s.precision + s.recall) : 0.0;
  return s;
}

}  // namespace kvrag
