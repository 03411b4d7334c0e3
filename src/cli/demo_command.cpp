// kvrag demo [--workspace DIR] [--seed S] [--train-stereotype P]: the whole pipeline on the
// embedded world (src/demo/demo_pipeline.h), then the results table and how to start the server.

#include <fmt/format.h>

#include <iostream>

#include "cli/commands.h"
#include "demo/demo_pipeline.h"

namespace kvrag::cli {

void add_demo_command(CLI::App& app, int& exit_code) {
  auto o = std::make_shared<DemoOptions>();
  auto* cmd = app.add_subcommand(
      "demo",
      "The whole pipeline on an embedded fictional world: data, tokenizer, LLM, retriever, index, "
      "knowledge encoder, evaluation (cached per stage in the workspace)");
  cmd->add_option("--workspace", o->workspace,
                  "folder for every artefact (rerun: finished stages are skipped)")
      ->capture_default_str();
  cmd->add_option("--seed", o->seed, "seed of the world and of every training run")
      ->capture_default_str();
  cmd->add_option("--train-stereotype", o->train_stereotype,
                  "share of the knowledge encoder's training people born in their community's "
                  "home city, as the LLM's pre-training has it (README, \"Fairness\")")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  cmd->add_flag("--tiny", o->tiny, "a much smaller world and models: a smoke test of every stage")
      ->group("");
  cmd->callback([o, &exit_code] {
    o->print = [](const std::string& line) { std::cout << line << std::endl; };
    const DemoResult r = run_demo(*o);
    std::cout << "\nHeld-out entities (their facts are only in the retrieval corpus):\n\n"
              << r.markdown << "\n"
              << fmt::format("Results in {} ({:.0f} s this run).\n", r.results_path, r.seconds)
              << fmt::format(
                     "Ask it in a browser:  kvrag serve --workspace {}   (then open "
                     "http://127.0.0.1:8080/)\n",
                     o->workspace);
    exit_code = 0;
  });
}

}  // namespace kvrag::cli
