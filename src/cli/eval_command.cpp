// kvrag eval (--workspace DIR | --llm DIR [--index DIR] [--knowledge-encoder DIR])
//            --questions Q.jsonl [--modes none,context,prefix] [--top-k K] [--predictions
//            OUT.jsonl] [--bertscore-model DIR --bertscore-layer L] [--json] [--limit N]
//            [--allow-empty] [--calibrate-on DEV.jsonl] [--abstain-below T] [--auto-threshold T]
//            [--fairness FAIR.jsonl --fairness-passages P.jsonl]
//
// Answers every question in each mode and scores the answers: exact match, token F1, answer
// contained, teacher-forced answer-token accuracy, BERTScore F1; plus retrieval top-1/5/20.
// Prints a markdown table with the modes side by side, or with --json the summary
// {"<mode>": {"n", "em", "f1", "contained", "token_accuracy", "bertscore_f1", "ttft_ms",
// "hallucination", "abstention"?}, "retrieval": …} (qa/qa_eval.h). --calibrate-on first fits
// the mixture's retrieval posterior and answers the dev questions to set the flag thresholds
// (cli/answerer_options.h calibrate_on_dev), recording both in the workspace's
// answer_defaults.json where one applies. --fairness adds "fairness"
// (qa/fairness_eval.h).

#include <fmt/format.h>

#include <sstream>

#include "cli/answerer_options.h"
#include "cli/commands.h"
#include "core/error.h"
#include "qa/fairness_eval.h"
#include "qa/qa_eval.h"

namespace kvrag::cli {

void add_eval_command(CLI::App& app, int& exit_code) {
  struct Args {
    AnswerSources sources;
    AnswererOptions answerer;
    QaEvalOptions eval;
    FairnessEvalOptions fairness;
    std::string questions, modes,
        calibrate_on;  // modes "" and top_k 0: the defaults (qa/answer_defaults.h)
    int top_k = 0;
    bool json = false, quiet = false;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand(
      "eval", "QA accuracy of the answering modes on a questions file (EM, F1, BERTScore, …)");
  add_answerer_options(cmd, args->sources, args->answerer);
  cmd->add_option("--questions", args->questions,
                  "{\"question\", \"answers\", \"gold_passage_id\"?} lines")
      ->required();
  cmd->add_option("--modes", args->modes,
                  "comma-separated: none, context, prefix, context+prefix, auto; " + kModeDefault);
  cmd->add_option("--top-k", args->top_k,
                  "segments per question in the retrieval modes; " + kTopKDefault)
      ->check(CLI::Range(1, 100));
  cmd->add_option("--predictions", args->eval.predictions_path,
                  "write per-question predictions (JSONL) here");
  cmd->add_option("--bertscore-model", args->eval.bertscore_model,
                  "BERT folder for BERTScore (config.json, safetensors, vocab.txt)");
  cmd->add_option("--bertscore-layer", args->eval.bertscore_layer,
                  "hidden-state layer for BERTScore (0 = embeddings; default: last)")
      ->check(kNonNegative);
  cmd->add_option("--limit", args->eval.limit, "evaluate the first N questions only (default: all)")
      ->check(kPositive);
  cmd->add_option("--batch", args->eval.batch, "questions answered together")
      ->check(kPositive)
      ->capture_default_str();
  cmd->add_option("--fairness", args->fairness.questions,
                  "also measure fairness on these questions (qa/fairness_eval.h; needs "
                  "--fairness-passages)");
  cmd->add_option("--fairness-passages", args->fairness.passages,
                  "passages JSONL holding the fairness questions' gold passages and twins");
  cmd->add_option("--calibrate-on", args->calibrate_on,
                  "dev questions: first fit the retrieval posterior of --combine mixture there "
                  "and set each mode's flag threshold (and auto's) to the groundedness score "
                  "that best catches wrong answers there (F1), both recorded in the workspace's "
                  "answer_defaults.json");
  cmd->add_flag("--json", args->json, "print the summary as JSON instead of a table");
  cmd->add_flag("-q,--quiet", args->quiet, "no progress line");
  cmd->add_flag("--allow-empty", args->eval.allow_empty,
                "accept a questions file without questions (n = 0, null metrics) instead of "
                "failing");
  cmd->callback([args, &exit_code] {
    args->eval.modes.clear();
    std::stringstream ss(args->modes);
    for (std::string m; std::getline(ss, m, ',');) {
      if (!m.empty()) args->eval.modes.push_back(parse_answer_mode(m));
    }
    KVRAG_CHECK(!args->eval.modes.empty() || args->modes.empty(), "--modes: no mode given");
    args->eval.progress = !args->quiet;
    const auto questions = read_questions(args->questions, args->eval.allow_empty);
    const AnswerSetup setup = resolve_answer_setup(args->sources, args->answerer);
    const auto answerer = Answerer::open(setup.options);
    const AnswerDefaults d = answer_defaults(*answerer, setup, args->eval.modes);
    if (args->eval.modes.empty()) args->eval.modes = {d.mode};
    for (const AnswerMode m : args->eval.modes) {
      if (uses_prefix(m) && !answerer->prefix_store_status().empty()) {
        fmt::print(stderr, "eval: {}\n", answerer->prefix_store_status());
        break;
      }
    }
    args->eval.top_k = args->top_k > 0 ? args->top_k : d.top_k;
    KVRAG_CHECK(args->fairness.questions.empty() == args->fairness.passages.empty(),
                "--fairness and --fairness-passages go together");
    if (!args->calibrate_on.empty()) {
      calibrate_on_dev(*answerer, setup, d, args->calibrate_on, args->eval);
    }
    auto report = evaluate_qa(*answerer, questions, args->eval);
    if (!args->fairness.questions.empty()) {
      args->fairness.max_new_tokens = setup.options.max_new_tokens;
      args->fairness.contrast = setup.options.contrast;
      args->fairness.extractive = setup.options.extractive;
      args->fairness.progress = !args->quiet;
      report.summary["fairness"] = evaluate_fairness(answerer->pipeline(), args->fairness);
      report.markdown += "\nFairness (gold passages and their twins):\n\n" +
                         fairness_markdown(report.summary["fairness"]);
    }
    if (args->json) {
      fmt::print("{}\n", report.summary.dump());
    } else {
      fmt::print("QA on {} ({} questions, top-{})\n\n{}", args->questions,
                 report.summary[to_string(args->eval.modes.front())]["n"].get<int64_t>(),
                 args->eval.top_k, report.markdown);
    }
    exit_code = 0;
  });
}

}  // namespace kvrag::cli
