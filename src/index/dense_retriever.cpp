#include "index/dense_retriever.h"

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <numeric>

#include "core/atomic_file.h"
#include "core/error.h"

namespace kvrag {

std::unique_ptr<DenseRetriever> DenseRetriever::open(const std::string& index_dir,
                                                     const std::string& encoder_dir,
                                                     const EmbedderOptions& options,
                                                     const SearchParams& params) {
  std::unique_ptr<DenseRetriever> r(new DenseRetriever());
  r->params_ = params;
  r->vectors_ = EmbeddingSet::open(index_dir + "/embeddings");
  // Once per open, not per query, and sampled (ChecksumCheck::kSample, at most 64 MiB read: all
  // of a small set, a random part of each shard of a large one): enough to refuse a shard
  // replaced or rewritten since the index was built without reading gigabytes at every start.
  r->vectors_->verify(ChecksumCheck::kSample);
  std::string encoder = encoder_dir;
  if (encoder.empty()) {
    encoder = r->vectors_->encoder().value("path", "");
    KVRAG_CHECK(!encoder.empty(), "{}/embeddings/encoder.json names no encoder: pass --encoder",
                index_dir);
  }
  r->embedder_ = Embedder::load(encoder, options);
  r->index_ = DenseIndex::load(index_dir, r->vectors_.get());
  bool paired = false;  // a query encoder trained together with the index's passage encoder
  if (r->embedder_->fingerprint() != r->index_->fingerprint() &&
      !r->embedder_->passage_encoder().empty()) {
    // The passage encoder's fingerprint as the index computed it (same max_length).
    EmbedderOptions passage_options = options;
    passage_options.max_length = r->vectors_->encoder().value("max_length", 0);
    const auto passage = Embedder::load(r->embedder_->passage_encoder(), passage_options);
    paired = passage->fingerprint() == r->index_->fingerprint();
  }
  KVRAG_CHECK(paired || r->embedder_->fingerprint() == r->index_->fingerprint(),
              "index {} was built with encoder fingerprint {}, but encoder {} has fingerprint {}: "
              "re-embed and rebuild the index, or use the encoder it was built with",
              index_dir, r->index_->fingerprint(), encoder, r->embedder_->fingerprint());
  KVRAG_CHECK(r->embedder_->dim() == r->index_->dim(),
              "index {} has dimension {}, encoder {} produces {}", index_dir, r->index_->dim(),
              encoder, r->embedder_->dim());
  return r;
}

std::vector<std::vector<float>> DenseRetriever::scores(
    const std::vector<std::string>& questions,
    const std::vector<std::vector<int64_t>>& segment_ids) {
  KVRAG_CHECK(segment_ids.size() == questions.size(), "{} questions but {} segment lists",
              questions.size(), segment_ids.size());
  const int64_t dim = embedder_->dim();
  std::vector<float> queries(questions.size() * dim);
  embedder_->encode(questions, queries.data());
  std::vector<std::vector<float>> out(questions.size());
  std::vector<float> passages;
  for (size_t q = 0; q < questions.size(); ++q) {
    const auto& ids = segment_ids[q];
    passages.resize(ids.size() * dim);
    vectors_->get(ids, passages.data());
    for (size_t j = 0; j < ids.size(); ++j) {
      const float* a = queries.data() + q * dim;
      const float* b = passages.data() + j * dim;
      out[q].push_back(std::inner_product(a, a + dim, b, 0.0f));
    }
  }
  return out;
}

std::vector<std::vector<ScoredSegment>> DenseRetriever::search(
    const std::vector<std::string>& questions, int k) {
  for (size_t i = 0; i < questions.size(); ++i) {
    const int64_t n = embedder_->count_tokens(questions[i]);
    KVRAG_CHECK(n <= embedder_->max_length(),
                "question {} has {} tokens; the encoder takes at most {}", i + 1, n,
                embedder_->max_length());
  }
  const int64_t n = static_cast<int64_t>(questions.size());
  std::vector<float> queries(n * embedder_->dim());
  embedder_->encode(questions, queries.data());
  // Asked for more than the index holds (a hybrid's candidate depth over a small corpus): all of
  // them, as BM25 does.
  k = static_cast<int>(std::min<int64_t>(k, index_->size()));
  if (k < 1) return std::vector<std::vector<ScoredSegment>>(n);
  const auto result = index_->search(n, queries.data(), k, params_);
  std::vector<std::vector<ScoredSegment>> out(n);
  for (int64_t q = 0; q < n; ++q) {
    for (int j = 0; j < k; ++j) {
      const int64_t id = result.ids[q * k + j];
      if (id >= 0) out[q].push_back({id, result.scores[q * k + j]});
    }
  }
  return out;
}

}  // namespace kvrag
