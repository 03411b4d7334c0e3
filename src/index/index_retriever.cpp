#include "index/index_retriever.h"

#include <algorithm>
#include <filesystem>

#include "core/error.h"
#include "eval/answer_match.h"
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

std::vector<std::vector<float>> IndexRetriever::bm25_scores(
    const std::vector<std::string>& questions, const std::vector<std::vector<Evidence>>& evidence) {
  KVRAG_CHECK(questions.size() == evidence.size(), "{} questions, {} evidence lists",
              questions.size(), evidence.size());
  std::vector<std::vector<float>> out;
  for (size_t q = 0; q < evidence.size(); ++q) {
    std::vector<int64_t> ids;
    for (const auto& e : evidence[q]) ids.push_back(e.segment_id);
    out.push_back(store_->bm25_scores(questions[q], ids));  // the store serialises its calls
  }
  return out;
}

std::vector<std::vector<float>> IndexRetriever::log_posterior(
    const std::vector<std::string>& questions, const std::vector<std::vector<Evidence>>& evidence,
    const RetrievalPosterior& posterior) {
  const bool use_dense = posterior.dense != 0 && has_dense();
  const bool use_bm25 = posterior.bm25 != 0;
  const auto dense =
      use_dense ? dense_scores(questions, evidence) : std::vector<std::vector<float>>();
  const auto bm25 = use_bm25 ? bm25_scores(questions, evidence) : std::vector<std::vector<float>>();
  std::vector<std::vector<float>> out;
  for (size_t q = 0; q < evidence.size(); ++q) {
    out.push_back(kvrag::log_posterior(posterior, use_dense ? dense[q].data() : nullptr,
                                       use_bm25 ? bm25[q].data() : nullptr, evidence[q].size()));
  }
  return out;
}

PosteriorFit IndexRetriever::fit_posterior(const std::vector<Question>& questions, int depth) {
  constexpr size_t kBatch = 256;
  std::vector<std::vector<float>> dense, bm25;
  std::vector<int> gold;
  for (size_t begin = 0; begin < questions.size(); begin += kBatch) {
    const size_t end = std::min(questions.size(), begin + kBatch);
    std::vector<std::string> texts;
    for (size_t q = begin; q < end; ++q) texts.push_back(questions[q].question);
    const auto evidence = search(texts, depth);
    for (size_t q = begin; q < end; ++q) {
      const Question& want = questions[q];
      const auto& candidates = evidence[q - begin];
      gold.push_back(-1);
      for (size_t j = 0; j < candidates.size() && gold.back() < 0; ++j) {
        const bool is_gold = !want.gold_passage_id.empty()
                                 ? candidates[j].doc_id == want.gold_passage_id
                                 : contains_any_answer(candidates[j].text, want.answers);
        if (is_gold) gold.back() = static_cast<int>(j);
      }
    }
    if (has_dense()) {
      for (auto& s : dense_scores(texts, evidence)) dense.push_back(std::move(s));
    }
    for (auto& s : bm25_scores(texts, evidence)) bm25.push_back(std::move(s));
  }
  return fit_retrieval_posterior(dense, bm25, gold);
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
