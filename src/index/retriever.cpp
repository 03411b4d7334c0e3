// BM25 and reciprocal-rank-fusion retrievers (see retriever.h).
#include "index/retriever.h"

#include <algorithm>
#include <unordered_map>

#include "core/error.h"

namespace kvrag {

std::vector<std::vector<ScoredSegment>> Bm25Retriever::search(
    const std::vector<std::string>& questions, int k) {
  std::vector<std::vector<ScoredSegment>> out;
  out.reserve(questions.size());
  for (const std::string& q : questions) out.push_back(store_.bm25(q, k));
  return out;
}

std::vector<std::vector<ScoredSegment>> HybridRetriever::search(
    const std::vector<std::string>& questions, int k) {
  KVRAG_CHECK(rrf_k_ >= 0, "hybrid retriever: rrf_k must be ≥ 0, got {}", rrf_k_);
  const int depth = std::max(depth_, k);
  const auto ra = a_.search(questions, depth);
  const auto rb = b_.search(questions, depth);
  KVRAG_CHECK(ra.size() == questions.size() && rb.size() == questions.size(),
              "hybrid retriever: a retriever returned {} and {} result lists for {} questions",
              ra.size(), rb.size(), questions.size());

  struct Fused {
    double score = 0;
    int best_rank = 1 << 30;
  };
  std::vector<std::vector<ScoredSegment>> out(questions.size());
  std::unordered_map<int64_t, Fused> fused;
  for (size_t q = 0; q < questions.size(); ++q) {
    fused.clear();
    for (const auto* list : {&ra[q], &rb[q]}) {
      for (size_t i = 0; i < list->size(); ++i) {
        const int rank = static_cast<int>(i) + 1;
        Fused& f = fused[(*list)[i].id];
        f.score += 1.0 / (rrf_k_ + rank);
        f.best_rank = std::min(f.best_rank, rank);
      }
    }
    std::vector<std::pair<int64_t, Fused>> all(fused.begin(), fused.end());
    std::sort(all.begin(), all.end(), [](const auto& x, const auto& y) {
      if (x.second.score != y.second.score) return x.second.score > y.second.score;
      if (x.second.best_rank != y.second.best_rank) return x.second.best_rank < y.second.best_rank;
      return x.first < y.first;
    });
    if (static_cast<int>(all.size()) > k) all.resize(std::max(k, 0));
    out[q].reserve(all.size());
    for (const auto& [id, f] : all) out[q].push_back({id, f.score});
  }
  return out;
}

}  // namespace kvrag
