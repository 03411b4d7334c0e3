#include "cli/answerer_options.h"

#include "cli/enum_option.h"
#include "cli/number_check.h"

namespace kvrag::cli {

void add_answerer_options(CLI::App* cmd, AnswererOptions& o) {
  cmd->add_option("--llm", o.llm_dir, "LLaMA checkpoint folder with its tokenizer.model")
      ->required();
  cmd->add_option(
      "--index", o.index_dir,
      "index folder (segments.sqlite, embeddings/, dense.faiss); needed by every mode but none");
  add_enum_option(cmd, "--retriever", o.retriever.mode,
                  "dense, bm25, or hybrid (reciprocal-rank fusion of both)");
  cmd->add_option("--encoder", o.retriever.encoder,
                  "question encoder folder (default: the one that embedded the segments)");
  cmd->add_option("--knowledge-encoder", o.knowledge_encoder_dir,
                  "knowledge encoder folder (kvrag train-prefix); needed by the prefix modes");
  cmd->add_option("--dtype", o.dtype, "LLM compute dtype")
      ->check(CLI::IsMember({"fp32", "bf16"}))
      ->capture_default_str();
  cmd->add_option("--max-new-tokens", o.max_new_tokens, "longest answer in tokens")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  cmd->add_option("--max-question-tokens", o.max_question_tokens, "longer questions are refused")
      ->check(kPositive)
      ->capture_default_str();
}

}  // namespace kvrag::cli
