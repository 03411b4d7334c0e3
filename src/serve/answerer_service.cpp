#include "serve/answerer_service.h"

#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "index/index_retriever.h"

namespace kvrag {

AnswererOptions resolve_sources(const ServiceSources& sources, AnswererOptions o) {
  namespace fs = std::filesystem;
  const std::string& ws = sources.workspace;
  if (!ws.empty()) {
    KVRAG_CHECK(fs::is_directory(ws),
                "workspace {} does not exist (create it with: kvrag demo --workspace {})", ws, ws);
    KVRAG_CHECK(fs::is_directory(ws + "/llm"),
                "workspace {} has no llm/ yet: run kvrag demo --workspace {} first", ws, ws);
    o.llm_dir = ws + "/llm";
    if (fs::is_directory(ws + "/index")) o.index_dir = ws + "/index";
    if (fs::is_directory(ws + "/knowledge_encoder"))
      o.knowledge_encoder_dir = ws + "/knowledge_encoder";
  }
  if (!sources.llm.empty()) o.llm_dir = sources.llm;
  if (!sources.index.empty()) o.index_dir = sources.index;
  if (!sources.knowledge_encoder.empty()) o.knowledge_encoder_dir = sources.knowledge_encoder;
  KVRAG_CHECK(!o.llm_dir.empty(), "give --workspace DIR or --llm DIR");
  std::string mode = sources.retriever;
  if (mode.empty()) {
    const bool dense = o.index_dir.empty() || fs::is_directory(o.index_dir + "/embeddings");
    mode = dense ? "dense" : "bm25";
  }
  o.retriever.mode = parse_enum<RetrieverMode>(mode);
  KVRAG_CHECK(o.knowledge_encoder_dir.empty() || !o.index_dir.empty(),
              "the knowledge encoder needs an index to retrieve from (--index)");
  return o;
}

struct AnswererService::Impl {
  std::unique_ptr<Answerer> answerer;
  std::shared_ptr<IndexRetriever> retriever;  // the answerer's too: one Faiss index in memory
};

std::unique_ptr<AnswererService> AnswererService::open(const AnswererOptions& options) {
  std::unique_ptr<AnswererService> s(new AnswererService());
  s->impl_ = std::make_unique<Impl>();
  auto& im = *s->impl_;
  if (!options.index_dir.empty()) {
    RetrieverSpec spec = options.retriever;
    spec.all_modes = true;  // /v1/search offers every mode the index has
    im.retriever = open_retriever(options.index_dir, spec);
  }
  im.answerer = Answerer::open(options, im.retriever);
  return s;
}

AnswererService::~AnswererService() = default;

Answer AnswererService::ask(const std::string& question, AnswerMode mode, int top_k) {
  auto answers = impl_->answerer->answer({question}, mode, top_k);
  KVRAG_CHECK(answers.size() == 1, "the answerer returned {} answers for one question",
              answers.size());
  return std::move(answers.front());
}

std::vector<Evidence> AnswererService::search(const std::string& question, int top_k,
                                              const std::string& retriever_mode) {
  KVRAG_CHECK(impl_->retriever != nullptr, "search needs an index; none was loaded");
  return impl_->retriever->search({question}, top_k, parse_enum<RetrieverMode>(retriever_mode))
      .at(0);
}

std::vector<AnswerMode> AnswererService::modes() const {
  const Answerer& a = *impl_->answerer;
  std::vector<AnswerMode> out;
  if (a.has_index() && a.has_knowledge_encoder())
    out = {AnswerMode::kPrefix, AnswerMode::kContextPrefix};
  if (a.has_index()) out.push_back(AnswerMode::kContext);
  out.push_back(AnswerMode::kNone);
  return out;
}

std::vector<std::string> AnswererService::retriever_modes() const {
  std::vector<std::string> out;
  if (impl_->retriever != nullptr) {
    for (const auto mode : impl_->retriever->modes()) out.push_back(enum_name(mode));
  }
  return out;
}

namespace {

// A folder's name: "llm" for /home/me/ws/llm/ (its last component, not the path).
std::string folder_name(const std::string& dir) {
  auto p = std::filesystem::path(dir).lexically_normal();
  if (!p.has_filename()) p = p.parent_path();  // a trailing slash
  return p.filename().string();
}

}  // namespace

nlohmann::json AnswererService::models() const {
  const auto& o = impl_->answerer->options();
  nlohmann::json j{{"llm", folder_name(o.llm_dir)}, {"dtype", o.dtype}};
  if (!o.index_dir.empty()) {
    j["index"] = folder_name(o.index_dir);
    j["retriever"] = enum_name(o.retriever.mode);
    j["segments"] = impl_->retriever->store().size();
  }
  if (!o.knowledge_encoder_dir.empty())
    j["knowledge_encoder"] = folder_name(o.knowledge_encoder_dir);
  return j;
}

const Answerer& AnswererService::answerer() const { return *impl_->answerer; }

}  // namespace kvrag
