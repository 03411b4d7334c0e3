// Retrievers: question texts in, ranked segment ids out.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "index/segment_store.h"

namespace kvrag {

class Retriever {
 public:
  virtual ~Retriever() = default;
  // Top-k segments for each question, best first.
  virtual std::vector<std::vector<ScoredSegment>> search(const std::vector<std::string>& questions,
                                                         int k) = 0;
};

// BM25 over the segment store's FTS5 index.
class Bm25Retriever final : public Retriever {
 public:
  explicit Bm25Retriever(const SegmentStore& store) : store_(store) {}
  std::vector<std::vector<ScoredSegment>> search(const std::vector<std::string>& questions,
                                                 int k) override;

 private:
  const SegmentStore& store_;
};

// Reciprocal-rank fusion (Cormack et al., 2009) of two retrievers, e.g. BM25 and dense:
//
//   score(d) = Σ_r 1 / (rrf_k + rank_r(d))
//
// over the retrievers r whose top `depth` candidates contain d, ranks counted from 1. Only ranks
// matter, so the two score scales need no calibration; rrf_k = 60 (the paper's value) damps the
// weight of the very first ranks. Each retriever is asked for max(depth, k) candidates; ties are
// broken by the better single rank, then by the smaller id, so results are deterministic.
class HybridRetriever final : public Retriever {
 public:
  HybridRetriever(Retriever& a, Retriever& b, int depth = 100, double rrf_k = 60.0)
      : a_(a), b_(b), depth_(depth), rrf_k_(rrf_k) {}
  std::vector<std::vector<ScoredSegment>> search(const std::vector<std::string>& questions,
                                                 int k) override;

 private:
  Retriever &a_, &b_;
  int depth_;
  double rrf_k_;
};

}  // namespace kvrag
