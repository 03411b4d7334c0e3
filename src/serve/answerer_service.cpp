#include "serve/answerer_service.h"

#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "index/dense_retriever.h"
#include "index/retriever.h"
#include "index/segment_store.h"

namespace kvrag {

namespace fs = std::filesystem;

struct AnswererService::Impl {
  std::unique_ptr<Answerer> answerer;
  // Search's own retrievers (the Answerer keeps its one mode private); BM25 is cheap, the dense
  // one loads a second copy of the (small) question encoder.
  std::unique_ptr<SegmentStore> store;
  std::unique_ptr<Bm25Retriever> bm25;
  std::unique_ptr<DenseRetriever> dense;
  std::unique_ptr<HybridRetriever> hybrid;
  std::vector<std::string> retriever_modes;  // the answerer's first
  std::mutex search_mutex;  // retrievers keep per-call state (query encoder, SQLite statements)

  Retriever* retriever(const std::string& mode) {
    if (mode == "dense") return dense.get();
    if (mode == "bm25") return bm25.get();
    if (mode == "hybrid") return hybrid.get();
    return nullptr;
  }
};

std::unique_ptr<AnswererService> AnswererService::open(const AnswererOptions& options) {
  std::unique_ptr<AnswererService> s(new AnswererService());
  s->impl_ = std::make_unique<Impl>();
  auto& im = *s->impl_;
  im.answerer = Answerer::open(options);
  if (!options.index_dir.empty()) {
    im.store = SegmentStore::open(options.index_dir + "/segments.sqlite");
    im.bm25 = std::make_unique<Bm25Retriever>(*im.store);
    if (fs::is_directory(options.index_dir + "/embeddings")) {
      EmbedderOptions embedder;
      embedder.dtype = "fp32";  // the fast path on CPUs without AMX; the encoder is small
      im.dense = DenseRetriever::open(options.index_dir, options.encoder_dir, embedder);
      im.hybrid = std::make_unique<HybridRetriever>(*im.dense, *im.bm25);
    }
    for (const char* mode : {"dense", "bm25", "hybrid"}) {
      if (im.retriever(mode) == nullptr) continue;
      if (mode == options.retriever_mode) {
        im.retriever_modes.insert(im.retriever_modes.begin(), mode);
      } else {
        im.retriever_modes.push_back(mode);
      }
    }
  }
  return s;
}

AnswererService::~AnswererService() = default;

Answer AnswererService::ask(const std::string& question, AnswerMode mode, int top_k) {
  auto answers = impl_->answerer->answer({question}, mode, top_k);
  KVRAG_CHECK(answers.size() == 1, "the answerer returned {} answers for one question", answers.size());
  return std::move(answers.front());
}

std::vector<Evidence> AnswererService::search(const std::string& question, int top_k,
                                              const std::string& retriever_mode) {
  Retriever* retriever = impl_->retriever(retriever_mode);
  KVRAG_CHECK(retriever != nullptr, "search mode {} is not available", retriever_mode);
  std::vector<ScoredSegment> hits;
  std::vector<Segment> segments;
  {
    std::lock_guard<std::mutex> lock(impl_->search_mutex);
    hits = retriever->search({question}, top_k).at(0);
  }
  std::vector<int64_t> ids;
  for (const auto& h : hits) ids.push_back(h.id);
  segments = impl_->store->get_many(ids);  // the store serialises its own calls
  std::vector<Evidence> out;
  for (size_t i = 0; i < hits.size(); ++i) {
    out.push_back({hits[i].id, segments[i].doc_id, segments[i].title, segments[i].text, hits[i].score});
  }
  return out;
}

std::vector<AnswerMode> AnswererService::modes() const {
  const Answerer& a = *impl_->answerer;
  std::vector<AnswerMode> out;
  if (a.has_index() && a.has_knowledge_encoder()) out = {AnswerMode::kPrefix, AnswerMode::kContextPrefix};
  if (a.has_index()) out.push_back(AnswerMode::kContext);
  out.push_back(AnswerMode::kNone);
  return out;
}

std::vector<std::string> AnswererService::retriever_modes() const { return impl_->retriever_modes; }

nlohmann::json AnswererService::models() const {
  const auto& o = impl_->answerer->options();
  nlohmann::json j{{"llm", o.llm_dir}, {"dtype", o.dtype}};
  if (!o.index_dir.empty()) {
    j["index"] = o.index_dir;
    j["retriever"] = o.retriever_mode;
    j["segments"] = impl_->store->size();
  }
  if (!o.knowledge_encoder_dir.empty()) j["knowledge_encoder"] = o.knowledge_encoder_dir;
  return j;
}

const Answerer& AnswererService::answerer() const { return *impl_->answerer; }

}  // namespace kvrag
