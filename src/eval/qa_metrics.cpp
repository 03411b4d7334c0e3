// Exact match, token F1 and containment of generated answers (see qa_metrics.h).
#include "eval/qa_metrics.h"

#include <algorithm>
#include <string_view>
#include <unordered_map>

#include "eval/answer_match.h"

namespace kvrag {
namespace {

// normalize_answer's output has single spaces and no leading/trailing space.
std::vector<std::string_view> split_tokens(std::string_view s) {
  std::vector<std::string_view> out;
  size_t b = 0;
  while (b < s.size()) {
    size_t e = s.find(' ', b);
    if (e == std::string_view::npos) e = s.size();
    if (e > b) out.push_back(s.substr(b, e - b));
    b = e + 1;
  }
  return out;
}

double f1_of(const std::vector<std::string_view>& pred, const std::vector<std::string_view>& gold) {
  if (pred.empty() || gold.empty()) return pred.empty() && gold.empty() ? 1.0 : 0.0;
  std::unordered_map<std::string_view, int> counts;
  for (const auto& t : gold) ++counts[t];
  int same = 0;
  for (const auto& t : pred) {
    auto it = counts.find(t);
    if (it != counts.end() && it->second > 0) {
      --it->second;
      ++same;
    }
  }
  if (same == 0) return 0.0;
  const double p = static_cast<double>(same) / pred.size(),
               r = static_cast<double>(same) / gold.size();
  return 2 * p * r / (p + r);
}

// Whole-word occurrence of `gold` in `pred` (both normalised: words separated by one space).
bool contains_words(const std::string& pred, const std::string& gold) {
  if (gold.empty()) return false;
  return (" " + pred + " ").find(" " + gold + " ") != std::string::npos;
}

}  // namespace

AnswerScores score_answer(const std::string& prediction, const std::vector<std::string>& answers) {
  AnswerScores s;
  const std::string pred = normalize_answer(prediction);
  const auto pred_tokens = split_tokens(pred);
  for (const auto& a : answers) {
    const std::string gold = normalize_answer(a);
    if (pred == gold) s.em = 1.0;
    s.f1 = std::max(s.f1, f1_of(pred_tokens, split_tokens(gold)));
    if (contains_words(pred, gold)) s.contained = 1.0;
  }
  return s;
}

double exact_match(const std::string& prediction, const std::vector<std::string>& answers) {
  return score_answer(prediction, answers).em;
}

double token_f1(const std::string& prediction, const std::vector<std::string>& answers) {
  return score_answer(prediction, answers).f1;
}

double answer_contained(const std::string& prediction, const std::vector<std::string>& answers) {
  return score_answer(prediction, answers).contained;
}

}  // namespace kvrag
