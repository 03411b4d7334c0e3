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
  virtual std::vector<std::vector<ScoredSegment>> search(const std::vector<std::string>& questions, int k) = 0;
};

// BM25 over the segment store's FTS5 index.
class Bm25Retriever final : public Retriever {
 public:
  explicit Bm25Retriever(const SegmentStore& store) : store_(store) {}
  std::vector<std::vector<ScoredSegment>> search(const std::vector<std::string>& questions, int k) override;

 private:
  const SegmentStore& store_;
};

// Reciprocal-rank fusion: score(d) = Σ_r 1 / (rrf_k + rank_r(d)), ranks from 1, each retriever
// asked for `depth` candidates (≥ k).
class HybridRetriever final : public Retriever {
 public:
  HybridRetriever(Retriever& a, Retriever& b, int depth = 100, double rrf_k = 60.0)
      : a_(a), b_(b), depth_(depth), rrf_k_(rrf_k) {}
  std::vector<std::vector<ScoredSegment>> search(const std::vector<std::string>& questions, int k) override;

 private:
  Retriever &a_, &b_;
  int depth_;
  double rrf_k_;
};

}  // namespace kvrag
