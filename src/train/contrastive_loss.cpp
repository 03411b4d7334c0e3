#include "train/contrastive_loss.h"

#include <fmt/ranges.h>

#include "core/error.h"

namespace kvrag {

namespace F = torch::nn::functional;

namespace {

std::string shape_of(const torch::Tensor& t) {
  return fmt::format("[{}]", fmt::join(t.sizes(), ", "));
}

}  // namespace

torch::Tensor info_nce_loss(const torch::Tensor& queries, const torch::Tensor& passages,
                            double temperature, bool normalize, const torch::Tensor& exclude) {
  KVRAG_CHECK(queries.dim() == 2 && passages.dim() == 2 && queries.size(1) == passages.size(1),
              "InfoNCE: queries {} and passages {} must be [B, d] and [N, d]", shape_of(queries),
              shape_of(passages));
  const int64_t B = queries.size(0), N = passages.size(0);
  KVRAG_CHECK(B >= 1 && N >= B, "InfoNCE: {} passages for {} queries (need one positive per query)",
              N, B);
  KVRAG_CHECK(temperature > 0, "InfoNCE: temperature must be positive, got {}", temperature);
  auto q = queries.to(torch::kFloat32);
  auto p = passages.to(torch::kFloat32);
  if (normalize) {
    q = F::normalize(q, F::NormalizeFuncOptions().dim(1));
    p = F::normalize(p, F::NormalizeFuncOptions().dim(1));
  }
  auto scores = torch::matmul(q, p.t()) / temperature;  // [B, N]
  if (exclude.defined()) {
    KVRAG_CHECK(exclude.sizes() == scores.sizes() && exclude.scalar_type() == torch::kBool,
                "InfoNCE: exclude mask {} must be bool [{}, {}]", shape_of(exclude), B, N);
    KVRAG_CHECK(!exclude.narrow(1, 0, B).diagonal().any().item<bool>(),
                "InfoNCE: a positive is excluded");
    scores = scores.masked_fill(exclude, -std::numeric_limits<float>::infinity());
  }
  const auto labels = torch::arange(B, torch::kInt64);  // positives on the diagonal
  return F::cross_entropy(scores, labels);
}

VicRegTerms vicreg_loss(const torch::Tensor& a_in, const torch::Tensor& b_in,
                        const VicRegCoefficients& c) {
  KVRAG_CHECK(a_in.dim() == 2 && a_in.sizes() == b_in.sizes(),
              "VICReg: the two views {} and {} must both be [B, d]", shape_of(a_in),
              shape_of(b_in));
  const int64_t B = a_in.size(0), d = a_in.size(1);
  KVRAG_CHECK(B >= 2, "VICReg needs a batch of at least 2 (variance and covariance), got {}", B);
  const auto a = a_in.to(torch::kFloat32), b = b_in.to(torch::kFloat32);

  VicRegTerms t;
  t.invariance = F::mse_loss(a, b);

  auto variance = [&](const torch::Tensor& x) {      // x [B, d]
    const auto std = torch::sqrt(x.var(0) + c.eps);  // unbiased, [d]
    return torch::relu(1.0 - std).mean();
  };
  t.variance = variance(a) / 2 + variance(b) / 2;

  const auto off_diagonal = 1.0 - torch::eye(d, torch::kFloat32);  // [d, d]
  auto covariance = [&](const torch::Tensor& x) {
    const auto centred = x - x.mean(0, /*keepdim=*/true);
    const auto cov = torch::matmul(centred.t(), centred) / static_cast<double>(B - 1);  // [d, d]
    return (cov.pow(2) * off_diagonal).sum() / static_cast<double>(d);
  };
  t.covariance = covariance(a) + covariance(b);

  t.loss = c.invariance * t.invariance + c.variance * t.variance + c.covariance * t.covariance;
  return t;
}

}  // namespace kvrag
