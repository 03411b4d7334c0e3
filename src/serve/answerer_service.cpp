#include "serve/answerer_service.h"

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>

#include "core/error.h"
#include "index/index_retriever.h"
#include "qa/answer_defaults.h"

namespace kvrag {

struct AnswererService::Impl {
  std::unique_ptr<Answerer> answerer;
  std::shared_ptr<IndexRetriever> retriever;  // the answerer's too: one Faiss index in memory
  std::optional<AnswerMode> default_mode;     // set_default_mode(); else the richest
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
  std::vector<AnswerMode> out;  // the richest first; auto (where calibrated) last
  for (const auto m : {AnswerMode::kPrefix, AnswerMode::kContextPrefix, AnswerMode::kContext,
                       AnswerMode::kNone, AnswerMode::kAuto}) {
    if (serves_mode(a, m)) out.push_back(m);
  }
  if (impl_->default_mode) {
    const auto it = std::find(out.begin(), out.end(), *impl_->default_mode);
    if (it != out.end()) std::rotate(out.begin(), it, it + 1);
  }
  return out;
}

void AnswererService::set_default_mode(AnswerMode mode) {
  impl_->default_mode.reset();
  const auto offered = modes();
  std::string names;
  for (const auto m : offered) names += (names.empty() ? "" : ", ") + to_string(m);
  KVRAG_CHECK(std::find(offered.begin(), offered.end(), mode) != offered.end(),
              "mode {} needs models that were not loaded (these offer {})", to_string(mode), names);
  impl_->default_mode = mode;
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
  if (!o.knowledge_encoder_dir.empty()) {
    j["knowledge_encoder"] = folder_name(o.knowledge_encoder_dir);
    // whether the prefix modes read the index's prefix store (prefix/prefix_store.h)
    j["prefix_store"] = impl_->answerer->uses_prefix_store();
    if (const auto c = impl_->answerer->prefix_cache_stats()) {
      j["prefix_cache"] = {{"hits", c->hits},
                           {"misses", c->misses},
                           {"entries", c->entries},
                           {"bytes", c->bytes},
                           {"capacity_bytes", c->capacity_bytes}};
    }
  }
  return j;
}

const Answerer& AnswererService::answerer() const { return *impl_->answerer; }

}  // namespace kvrag
