// kvrag eval-retrieval --index DIR --questions Q.jsonl [--mode dense|bm25|hybrid] [--json]
//                      [--allow-empty]
// An empty questions file is an error unless --allow-empty.

#include <fmt/format.h>

#include "cli/commands.h"
#include "cli/retriever_options.h"
#include "index/retrieval_eval.h"

namespace kvrag::cli {

void add_eval_retrieval_command(CLI::App& app, int& exit_code) {
  struct Args {
    RetrieverOptions retriever;
    std::string questions;
    bool json = false, allow_empty = false;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand(
      "eval-retrieval",
      "Top-1/5/20/100 accuracy (an answer occurs in a retrieved segment) and gold-passage recall");
  args->retriever.add_to(cmd);
  cmd->add_option("--questions", args->questions,
                  "{\"question\", \"answers\", \"gold_passage_id\"?} lines")
      ->required();
  cmd->add_flag("--json", args->json,
                "print {\"n\", \"answer_in_top\": {\"1\",\"5\",\"20\",\"100\"}, \"gold_in_top\": "
                "{…}} instead of a table");
  cmd->add_flag("--allow-empty", args->allow_empty,
                "accept a questions file without questions (n = 0) instead of failing");
  cmd->callback([args, &exit_code] {
    const auto questions = read_questions(args->questions, args->allow_empty);
    const auto retriever = open_retriever(args->retriever.index, args->retriever.spec);
    const auto report = evaluate_retrieval(retriever->retriever(), retriever->store(), questions);
    if (args->json) {
      fmt::print("{}\n", report.to_json().dump());
    } else {
      fmt::print("retrieval on {} ({} mode, {} questions)\n\n{}", args->questions,
                 enum_name(args->retriever.spec.mode), report.n, report.to_markdown());
    }
    exit_code = 0;
  });
}

}  // namespace kvrag::cli
