#include "index/retrieval_posterior.h"

#include <array>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/json_excerpt.h"

namespace kvrag {

nlohmann::json RetrievalPosterior::to_json() const { return {{"dense", dense}, {"bm25", bm25}}; }

RetrievalPosterior RetrievalPosterior::from_json(const nlohmann::json& j,
                                                 const std::string& where) {
  KVRAG_CHECK(j.is_object(),
              "{}: the retrieval posterior must be an object {{\"dense\", \"bm25\"}}", where);
  RetrievalPosterior p;
  for (const auto& [name, field] : {std::pair{"dense", &p.dense}, std::pair{"bm25", &p.bm25}}) {
    const auto it = j.find(name);
    KVRAG_CHECK(it != j.end() && it->is_number() && std::isfinite(it->get<double>()),
                "{}: the retrieval posterior's \"{}\" must be a finite number, not {}", where, name,
                it == j.end() ? std::string("missing") : json_excerpt(*it));
    *field = it->get<double>();
  }
  return p;
}

nlohmann::json PosteriorFit::to_json() const {
  auto j = posterior.to_json();
  j["n"] = n;
  j["log_likelihood"] = log_likelihood;
  j["gold_at_top"] = gold_at_top;
  return j;
}

namespace {

// Subtracts log Σ exp(z) from every z.
void normalise_log(std::vector<double>& z) {
  double top = -std::numeric_limits<double>::infinity();
  for (const double v : z) top = std::max(top, v);
  double sum = 0;
  for (const double v : z) sum += std::exp(v - top);
  const double log_sum = top + std::log(sum);
  for (double& v : z) v -= log_sum;
}

}  // namespace

std::vector<float> log_posterior(const RetrievalPosterior& posterior, const float* dense,
                                 const float* bm25, size_t k) {
  std::vector<double> z(k, 0.0);
  for (size_t j = 0; j < k; ++j) {
    if (dense != nullptr) z[j] += posterior.dense * dense[j];
    if (bm25 != nullptr) z[j] += posterior.bm25 * bm25[j];
  }
  normalise_log(z);
  return std::vector<float>(z.begin(), z.end());
}

PosteriorFit fit_retrieval_posterior(const std::vector<std::vector<float>>& dense,
                                     const std::vector<std::vector<float>>& bm25,
                                     const std::vector<int>& gold) {
  constexpr int F = 2;  // features: dense, bm25
  const std::array<const std::vector<std::vector<float>>*, F> features{&dense, &bm25};
  const size_t n_questions = gold.size();
  std::array<bool, F> present{};
  for (int f = 0; f < F; ++f) {
    present[f] = !features[f]->empty();
    KVRAG_CHECK(!present[f] || features[f]->size() == n_questions,
                "posterior fit: {} score lists for {} questions", features[f]->size(), n_questions);
  }
  // Each used question's candidates as rows of F features; spread within questions.
  struct Row {
    std::vector<std::array<double, F>> x;
    int gold;
  };
  std::vector<Row> rows;
  std::array<double, F> sq{};
  int64_t n_candidates = 0;
  for (size_t q = 0; q < n_questions; ++q) {
    size_t k = 0;
    for (int f = 0; f < F; ++f) {
      if (!present[f]) continue;
      KVRAG_CHECK(k == 0 || (*features[f])[q].size() == k,
                  "posterior fit: question {} has {} dense and {} BM25 scores", q,
                  dense.empty() ? 0 : dense[q].size(), bm25.empty() ? 0 : bm25[q].size());
      k = (*features[f])[q].size();
    }
    KVRAG_CHECK(gold[q] < static_cast<int>(std::max<size_t>(k, 1)),
                "posterior fit: question {}'s gold candidate {} of {}", q, gold[q], k);
    if (gold[q] < 0 || k < 2) continue;  // one candidate says nothing about the weights
    Row row{std::vector<std::array<double, F>>(k), gold[q]};
    for (int f = 0; f < F; ++f) {
      if (!present[f]) continue;
      double mean = 0;
      for (size_t j = 0; j < k; ++j) mean += row.x[j][f] = (*features[f])[q][j];
      mean /= static_cast<double>(k);
      for (size_t j = 0; j < k; ++j) sq[f] += (row.x[j][f] - mean) * (row.x[j][f] - mean);
    }
    n_candidates += static_cast<int64_t>(k);
    rows.push_back(std::move(row));
  }
  PosteriorFit fit;
  fit.posterior = {0.0, 0.0};
  fit.n = static_cast<int64_t>(rows.size());
  if (rows.empty()) return fit;
  // Standardised features: the prior is N(0, 1) on each weight in these units.
  std::array<double, F> spread{};
  for (int f = 0; f < F; ++f) {
    spread[f] = present[f] ? std::sqrt(sq[f] / static_cast<double>(n_candidates)) : 0.0;
    for (auto& row : rows) {
      for (auto& x : row.x) x[f] = spread[f] > 0 ? x[f] / spread[f] : 0.0;
    }
  }
  // Objective, gradient and Hessian of Σ_q log p(gold | q) − |β|² / 2.
  struct Eval {
    double value = 0;
    std::array<double, F> grad{};
    std::array<std::array<double, F>, F> hess{};
  };
  const auto evaluate = [&](const std::array<double, F>& beta) {
    Eval e;
    std::vector<double> z;
    for (const auto& row : rows) {
      z.assign(row.x.size(), 0.0);
      for (size_t j = 0; j < z.size(); ++j) {
        for (int f = 0; f < F; ++f) z[j] += beta[f] * row.x[j][f];
      }
      normalise_log(z);
      e.value += z[row.gold];
      std::array<double, F> mean{};
      for (size_t j = 0; j < z.size(); ++j) {
        for (int f = 0; f < F; ++f) mean[f] += std::exp(z[j]) * row.x[j][f];
      }
      for (int f = 0; f < F; ++f) e.grad[f] += row.x[row.gold][f] - mean[f];
      for (size_t j = 0; j < z.size(); ++j) {
        const double p = std::exp(z[j]);
        for (int a = 0; a < F; ++a) {
          for (int b = 0; b < F; ++b)
            e.hess[a][b] -= p * (row.x[j][a] - mean[a]) * (row.x[j][b] - mean[b]);
        }
      }
    }
    for (int f = 0; f < F; ++f) {
      e.value -= 0.5 * beta[f] * beta[f];
      e.grad[f] -= beta[f];
      e.hess[f][f] -= 1.0;
    }
    return e;
  };
  // Newton's method with step halving: the objective is strictly concave (the prior), so the
  // step −H⁻¹g ascends and the iteration converges in a few dozen steps at most.
  std::array<double, F> beta{};
  Eval e = evaluate(beta);
  for (int it = 0; it < 100; ++it) {
    const auto& h = e.hess;
    const double det = h[0][0] * h[1][1] - h[0][1] * h[1][0];
    const std::array<double, F> step{-(h[1][1] * e.grad[0] - h[0][1] * e.grad[1]) / det,
                                     -(h[0][0] * e.grad[1] - h[1][0] * e.grad[0]) / det};
    double t = 1.0;
    Eval next;
    std::array<double, F> moved{};
    for (; t > 1e-10; t *= 0.5) {
      for (int f = 0; f < F; ++f) moved[f] = beta[f] + t * step[f];
      next = evaluate(moved);
      if (next.value >= e.value) break;
    }
    if (t <= 1e-10) break;
    const double change = std::abs(t * step[0]) + std::abs(t * step[1]);
    beta = moved;
    e = next;
    if (change < 1e-9) break;
  }
  fit.posterior.dense = spread[0] > 0 ? beta[0] / spread[0] : 0.0;
  fit.posterior.bm25 = spread[1] > 0 ? beta[1] / spread[1] : 0.0;
  fit.log_likelihood =
      (e.value + 0.5 * (beta[0] * beta[0] + beta[1] * beta[1])) / static_cast<double>(rows.size());
  int64_t top = 0;
  for (const auto& row : rows) {
    bool best = true;
    const auto score = [&](size_t j) { return beta[0] * row.x[j][0] + beta[1] * row.x[j][1]; };
    for (size_t j = 0; j < row.x.size(); ++j) best &= score(j) <= score(row.gold);
    top += best;
  }
  fit.gold_at_top = static_cast<double>(top) / static_cast<double>(rows.size());
  return fit;
}

}  // namespace kvrag
