// Dense retrieval: questions encoded by the retriever's encoder, searched in the Faiss index.
#pragma once

#include <memory>
#include <string>

#include "index/dense_index.h"
#include "index/embedder.h"
#include "index/embedding_set.h"
#include "index/retriever.h"

namespace kvrag {

class DenseRetriever final : public Retriever {
 public:
  // The index folder's dense index (and its embeddings for re-ranking), with questions encoded
  // by `encoder_dir` (default: the encoder recorded in DIR/embeddings/encoder.json). Throws Error
  // if that encoder's fingerprint differs from the one the index was built with, or if a sampled
  // check of the embeddings against their checksums fails (EmbeddingSet::verify, kSample).
  static std::unique_ptr<DenseRetriever> open(const std::string& index_dir,
                                              const std::string& encoder_dir = "",
                                              const EmbedderOptions& options = {},
                                              const SearchParams& params = {});

  // Top-k of every question (all the index holds where that is fewer). Error for a question
  // longer than the encoder's max_length tokens.
  std::vector<std::vector<ScoredSegment>> search(const std::vector<std::string>& questions,
                                                 int k) override;

  // Each question's inner product with each of its segments' exact vectors (the scores search()
  // would give them, re-ranking aside): [question][j] for segment_ids[question][j].
  std::vector<std::vector<float>> scores(const std::vector<std::string>& questions,
                                         const std::vector<std::vector<int64_t>>& segment_ids);

  const Embedder& embedder() const { return *embedder_; }
  const DenseIndex& index() const { return *index_; }
  const EmbeddingSet& vectors() const { return *vectors_; }  // the index's exact vectors

 private:
  DenseRetriever() = default;
  std::unique_ptr<Embedder> embedder_;
  std::unique_ptr<EmbeddingSet> vectors_;
  std::unique_ptr<DenseIndex> index_;
  SearchParams params_;
};

}  // namespace kvrag
