#include "index/index_retriever.h"

#include <filesystem>

#include "core/error.h"
#include "index/dense_retriever.h"

namespace kvrag {

namespace fs = std::filesystem;

bool has_dense_vectors(const std::string& dir) {
  return fs::is_directory(dir + "/embeddings") && fs::exists(dir + "/dense.faiss");
}

std::unique_ptr<IndexRetriever> open_retriever(const std::string& dir, const RetrieverSpec& spec) {
  KVRAG_CHECK(fs::is_directory(dir), "index folder {} does not exist", dir);
  std::unique_ptr<IndexRetriever> r(new IndexRetriever());
  r->dir_ = dir;
  r->mode_ = spec.mode;
  r->store_ = SegmentStore::open(dir + "/segments.sqlite");
  r->bm25_ = std::make_unique<Bm25Retriever>(*r->store_);  // cheap: the store's FTS5 index
  const bool has_dense = has_dense_vectors(dir);
  if (spec.mode != RetrieverMode::kBm25 || (spec.all_modes && has_dense)) {
    EmbedderOptions embedder;
    embedder.dtype = spec.dtype;
    r->dense_ = DenseRetriever::open(dir, spec.encoder, embedder, spec.params);
    r->hybrid_ = std::make_unique<HybridRetriever>(*r->dense_, *r->bm25_);
  }
  return r;
}

IndexRetriever::~IndexRetriever() = default;

Retriever* IndexRetriever::retriever_for(RetrieverMode mode) const {
  switch (mode) {
    case RetrieverMode::kDense:
      return dense_.get();
    case RetrieverMode::kBm25:
      return bm25_.get();
    case RetrieverMode::kHybrid:
      return hybrid_.get();
  }
  return nullptr;
}

std::vector<RetrieverMode> IndexRetriever::modes() const {
  std::vector<RetrieverMode> out = {mode_};
  for (const auto& m : EnumNames<RetrieverMode>::values) {
    if (m.value != mode_ && retriever_for(m.value) != nullptr) out.push_back(m.value);
  }
  return out;
}

std::vector<std::vector<Evidence>> IndexRetriever::search(const std::vector<std::string>& questions,
                                                          int k) {
  return search(questions, k, mode_);
}

std::vector<std::vector<Evidence>> IndexRetriever::search(const std::vector<std::string>& questions,
                                                          int k, RetrieverMode mode) {
  Retriever* retriever = retriever_for(mode);
  KVRAG_CHECK(retriever != nullptr,
              "index {}: retriever mode {} is not available (it needs embeddings/ and dense.faiss)",
              dir_, enum_name(mode));
  KVRAG_CHECK(k >= 1, "top-k must be at least 1, not {}", k);
  std::vector<std::vector<ScoredSegment>> hits;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    hits = retriever->search(questions, k);
  }
  std::vector<std::vector<Evidence>> out;
  // the store serialises its own calls
  for (const auto& h : hits) out.push_back(to_evidence(*store_, h));
  return out;
}

std::vector<std::vector<float>> IndexRetriever::dense_scores(
    const std::vector<std::string>& questions, const std::vector<std::vector<Evidence>>& evidence) {
  KVRAG_CHECK(dense_ != nullptr, "index {}: no dense vectors to score segments with", dir_);
  std::vector<std::vector<int64_t>> ids(evidence.size());
  for (size_t q = 0; q < evidence.size(); ++q) {
    for (const auto& e : evidence[q]) ids[q].push_back(e.segment_id);
  }
  std::lock_guard<std::mutex> lock(mutex_);
  return dense_->scores(questions, ids);
}

RetrievalReport IndexRetriever::evaluate(const std::vector<Question>& questions,
                                         const std::vector<int>& ks) {
  std::lock_guard<std::mutex> lock(mutex_);
  return evaluate_retrieval(*retriever_for(mode_), *store_, questions, ks);
}

std::vector<Evidence> to_evidence(const SegmentStore& store,
                                  const std::vector<ScoredSegment>& hits) {
  std::vector<int64_t> ids;
  for (const auto& h : hits) ids.push_back(h.id);
  const auto segments = store.get_many(ids);
  std::vector<Evidence> out;
  for (size_t i = 0; i < hits.size(); ++i) {
    out.push_back(
        {hits[i].id, segments[i].doc_id, segments[i].title, segments[i].text, hits[i].score});
  }
  return out;
}

}  // namespace kvrag
