#include "eval/flag_metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "core/error.h"

namespace kvrag {

namespace {

void check_lengths(const std::vector<double>& scores, const std::vector<bool>& labels) {
  KVRAG_CHECK(scores.size() == labels.size(), "{} scores but {} labels", scores.size(),
              labels.size());
}

// Indices of `scores` sorted by score, lowest first.
std::vector<size_t> ascending(const std::vector<double>& scores) {
  std::vector<size_t> order(scores.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return scores[a] < scores[b]; });
  return order;
}

}  // namespace

std::optional<double> auroc_of_low_scores(const std::vector<double>& scores,
                                          const std::vector<bool>& positive) {
  check_lengths(scores, positive);
  // Walk the scores from lowest up, a group of equal scores at a time: a positive beats every
  // negative of a higher score and ties half of those of its own.
  const auto order = ascending(scores);
  const auto P = static_cast<double>(std::count(positive.begin(), positive.end(), true));
  const double N = static_cast<double>(scores.size()) - P;
  if (P == 0 || N == 0) return std::nullopt;
  double u = 0, negatives_below = 0;
  for (size_t i = 0; i < order.size();) {
    size_t j = i;
    double pos = 0, neg = 0;
    while (j < order.size() && scores[order[j]] == scores[order[i]]) {
      (positive[order[j]] ? pos : neg) += 1;
      ++j;
    }
    // positives in this group lose to the negatives below, tie with those in it
    u += pos * (N - negatives_below - neg) + 0.5 * pos * neg;
    negatives_below += neg;
    i = j;
  }
  return u / (P * N);
}

FlagStats flag_stats(const std::vector<double>& scores, const std::vector<bool>& positive,
                     double threshold) {
  check_lengths(scores, positive);
  FlagStats s;
  s.threshold = threshold;
  for (size_t i = 0; i < scores.size(); ++i) {
    const bool flagged = scores[i] < threshold;
    s.flagged += flagged;
    s.positives += positive[i];
    s.caught += flagged && positive[i];
  }
  if (s.flagged > 0) s.precision = static_cast<double>(s.caught) / static_cast<double>(s.flagged);
  if (s.positives > 0) s.recall = static_cast<double>(s.caught) / static_cast<double>(s.positives);
  if (s.precision + s.recall > 0) s.f1 = 2 * s.precision * s.recall / (s.precision + s.recall);
  return s;
}

FlagStats calibrate_flag(const std::vector<double>& scores, const std::vector<bool>& positive) {
  check_lengths(scores, positive);
  KVRAG_CHECK(!scores.empty(), "no scores to calibrate a threshold on");
  std::vector<double> distinct = scores;
  std::sort(distinct.begin(), distinct.end());
  distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
  std::vector<double> candidates = {distinct.front()};  // flags nothing
  for (size_t i = 1; i < distinct.size(); ++i) {
    const double a = distinct[i - 1], b = distinct[i];
    candidates.push_back(std::isfinite(a) && std::isfinite(b) ? a + (b - a) / 2 : b);
  }
  candidates.push_back(std::numeric_limits<double>::infinity());  // flags everything
  FlagStats best = flag_stats(scores, positive, candidates.front());
  for (size_t i = 1; i < candidates.size(); ++i) {
    const FlagStats s = flag_stats(scores, positive, candidates[i]);
    if (s.f1 > best.f1) best = s;  // ascending: of equal F1 the lowest stays
  }
  return best;
}

std::vector<CoveragePoint> risk_coverage(const std::vector<double>& scores,
                                         const std::vector<bool>& correct) {
  check_lengths(scores, correct);
  auto order = ascending(scores);
  std::reverse(order.begin(), order.end());  // highest first
  std::vector<CoveragePoint> out;
  int64_t answered = 0, right = 0;
  for (size_t i = 0; i < order.size();) {
    const double t = scores[order[i]];
    for (; i < order.size() && scores[order[i]] == t; ++i) {
      ++answered;
      right += correct[order[i]];
    }
    CoveragePoint p;
    p.threshold = t;
    p.answered = answered;
    p.coverage = static_cast<double>(answered) / static_cast<double>(scores.size());
    p.accuracy = static_cast<double>(right) / static_cast<double>(answered);
    out.push_back(p);
  }
  return out;
}

}  // namespace kvrag
