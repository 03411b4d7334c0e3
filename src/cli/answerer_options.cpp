#include "cli/answerer_options.h"

#include <fmt/format.h>

#include "cli/enum_option.h"
#include "cli/number_check.h"
#include "model/model_dtype_names.h"

namespace kvrag::cli {

void add_answerer_options(CLI::App* cmd, AnswerSources& s, AnswererOptions& o) {
  cmd->add_option("--workspace", s.workspace,
                  "a `kvrag demo` workspace: its llm/, index/, knowledge_encoder/ and the "
                  "defaults it was evaluated with (answer_defaults.json); the options below "
                  "override each");
  cmd->add_option("--llm", s.llm,
                  "LLaMA checkpoint folder with its tokenizer.model (needed without --workspace)");
  cmd->add_option(
      "--index", s.index,
      "index folder (segments.sqlite, embeddings/, dense.faiss); needed by every mode but none");
  add_enum_name_option<RetrieverMode>(
      cmd, "--retriever", s.retriever,
      "dense, bm25, or hybrid (reciprocal-rank fusion of both); " + kRetrieverDefault);
  cmd->add_option("--encoder", o.retriever.encoder,
                  "question encoder folder (default: the one that embedded the segments)");
  cmd->add_option("--knowledge-encoder", s.knowledge_encoder,
                  "knowledge encoder folder (kvrag train-prefix); needed by the prefix modes");
  cmd->add_option("--dtype", o.dtype, "LLM dtype: fp32, bf16, or int8 (weight-only, fp32 compute)")
      ->check(CLI::IsMember(kModelDtypeNames))
      ->capture_default_str();
  cmd->add_option("--max-new-tokens", o.max_new_tokens, "longest answer in tokens")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  cmd->add_option("--max-question-tokens", o.max_question_tokens, "longer questions are refused")
      ->check(kPositive)
      ->capture_default_str();
  cmd->add_option("--prefix-cache-mb", o.prefix_cache_mb,
                  "without a prefix store: keep this many MiB of segments' prefixes in memory, "
                  "least recently used leaving first (0: encode every time)")
      ->check(kNonNegative)
      ->capture_default_str();
  cmd->add_flag("--citations,!--no-citations", o.citations,
                "prefix modes: cite each evidence segment by the attention the answer paid to its "
                "prefix entries (one more pass over prompt and answer)")
      ->capture_default_str();
  cmd->add_flag_callback(
      "--no-prefix-store", [&o] { o.use_prefix_store = false; },
      "encode the segments for every question even where the index has a prefix store built by "
      "this knowledge encoder (kvrag index build-prefixes)");
  cmd->add_option("--contrast", o.contrast,
                  "context-aware decoding: pick each answer token by (1 + α)·logits with the "
                  "evidence − α·logits without it, against the LLM's prior (0: off)")
      ->check(CLI::Range(0.0, 100.0))
      ->capture_default_str();
  add_decoding_options(cmd, s, o);
  add_threshold_options(cmd, o);
}

void add_decoding_options(CLI::App* cmd, AnswerSources& s, AnswererOptions& o) {
  cmd->add_flag_callback(
      "--extractive", [&s] { s.extractive = 1; },
      "answers are spans of the evidence: the LLM picks each token among those that continue a "
      "span of the retrieved segments (default: the workspace's record, else off)");
  cmd->add_flag_callback(
      "--no-extractive", [&s] { s.extractive = 0; }, "free answers, whatever the record says");
  add_enum_option(cmd, "--combine", o.combine,
                  "prefix modes at top-k > 1: concat (every segment's entries in one prefix), "
                  "mixture (one prefix per segment; the answer from the mixture of the LLM's "
                  "next-token distributions, weighted by the retrieval posterior), or auto "
                  "(mixture beyond the top-k the knowledge encoder was trained with)");
  cmd->add_option("--mixture-temperature", s.mixture_temperature,
                  "--combine mixture: weigh segments by softmax(q·d / T) of the dense scores "
                  "(default: the workspace's fitted posterior, else T = 0.05)")
      ->check(CLI::PositiveNumber);
}

void add_threshold_options(CLI::App* cmd, AnswererOptions& o) {
  cmd->add_option_function<std::string>(
      "--abstain-below",
      [&o](const std::string& v) { o.abstain_below = parse_number("--abstain-below", v); },
      "answer \"unknown\" where the groundedness score (1 if the answer occurs in the evidence, "
      "plus its mean log-probability per token with the evidence) is under T");
  cmd->add_option_function<std::string>(
      "--auto-threshold",
      [&o](const std::string& v) {
        o.flag_below[AnswerMode::kPrefix] = parse_number("--auto-threshold", v);
      },
      "mode auto: answer again in context where the prefix answer's groundedness score is under "
      "T (default: the workspace's calibration, kvrag eval --calibrate-on)");
}

void calibrate_on_dev(Answerer& answerer, const AnswerSetup& setup, const AnswerDefaults& defaults,
                      const std::string& dev_questions, const QaEvalOptions& eval) {
  const auto dev = read_questions(dev_questions);
  AnswerDefaults record = setup.recorded.value_or(defaults);
  if (answerer.has_index()) {
    const auto fit = answerer.retriever()->fit_posterior(dev, kPosteriorFitDepth);
    if (fit.n > 0) {
      record.posterior = fit.posterior;
      if (!setup.posterior_given) answerer.set_posterior(fit.posterior);
    }
    fmt::print(stderr,
               "eval: retrieval posterior fitted on {} ({} questions with their gold segment in "
               "the top {}): dense weight {:.3f}, BM25 weight {:.4f}; the gold segment is the "
               "most likely for {:.3f}{}\n",
               dev_questions, fit.n, kPosteriorFitDepth, fit.posterior.dense, fit.posterior.bm25,
               fit.gold_at_top,
               setup.posterior_given ? " (recorded; --mixture-temperature wins)" : "");
  }
  auto thresholds = answerer.options().flag_below;
  for (const auto& [m, f] : calibrate_flags(answerer, dev, eval)) {
    thresholds[m] = f.threshold;
    fmt::print(stderr,
               "eval: {} answers flagged below a groundedness score of {:.4f} (on {}: "
               "precision {:.3f}, recall {:.3f}, F1 {:.3f} at catching wrong answers)\n",
               to_string(m), f.threshold, dev_questions, f.precision, f.recall, f.f1);
  }
  answerer.set_flag_below(thresholds);
  if (setup.workspace.empty()) return;
  record.flag_below = thresholds;
  write_answer_defaults(setup.workspace, record);
  fmt::print(stderr, "eval: calibration recorded in {}/{}\n", setup.workspace, kAnswerDefaultsFile);
}

}  // namespace kvrag::cli
