// The AnswerService `kvrag serve` runs: an Answerer (qa/answerer.h) for /v1/ask, and the index's
// retrievers for /v1/search. Torch-free header.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "qa/answerer.h"
#include "serve/server.h"

namespace kvrag {

class AnswererService final : public AnswerService {
 public:
  // Opens the index (if any) with every retriever mode it supports (open_retriever: BM25, and
  // dense and hybrid where it has dense vectors), the Answerer with `options` over that same
  // retriever. The answer modes offered follow what was loaded: none always, context with an
  // index, the prefix modes with a knowledge encoder as well; the first offered is the default:
  // the richest until set_default_mode().
  static std::unique_ptr<AnswererService> open(const AnswererOptions& options);
  ~AnswererService() override;

  // Makes `mode` the default, listed first by modes() (qa/answer_defaults.h settles which). Call
  // before serving; Error if the service does not offer it.
  void set_default_mode(AnswerMode mode);

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
