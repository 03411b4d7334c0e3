// The AnswerService `kvrag serve` runs: an Answerer (qa/answerer.h) for /v1/ask, and the index's
// retrievers for /v1/search. Torch-free header.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "qa/answerer.h"
#include "serve/server.h"

namespace kvrag {

// Where `kvrag serve` finds its models: a `kvrag demo` workspace (its llm/, index/ and
// knowledge_encoder/), each folder overridden by an explicit one.
struct ServiceSources {
  std::string workspace, llm, index, knowledge_encoder;
  std::string retriever;  // "dense", "bm25", "hybrid"; "": dense where the index has embeddings
};
// `options` with the sources' folders and retriever mode filled in; an Error names a missing
// workspace, a workspace without llm/, or a knowledge encoder without an index.
AnswererOptions resolve_sources(const ServiceSources& sources, AnswererOptions options);

class AnswererService final : public AnswerService {
 public:
  // Opens the index (if any) with every retriever mode it supports (open_retriever: BM25, and
  // dense and hybrid where it has dense vectors), the Answerer with `options` over that same
  // retriever. The answer modes offered follow what was loaded: none always, context with an
  // index, the prefix modes with a knowledge encoder as well; the first offered is the richest.
  static std::unique_ptr<AnswererService> open(const AnswererOptions& options);
  ~AnswererService() override;

  Answer ask(const std::string& question, AnswerMode mode, int top_k) override;
  std::vector<Evidence> search(const std::string& question, int top_k,
                               const std::string& retriever_mode) override;
  std::vector<AnswerMode> modes() const override;
  std::vector<std::string> retriever_modes() const override;
  nlohmann::json models() const override;

  const Answerer& answerer() const;

 private:
  AnswererService() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvrag
