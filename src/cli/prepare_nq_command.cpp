// kvrag prepare-nq --input FILE.jsonl[.gz] --out DIR [--split 0.95] [--seed S] [--quiet]
// Converts Natural Questions (simplified format) into DIR/corpus.jsonl (for `kvrag segment`),
// DIR/passages.jsonl (the gold long answers, for train-retriever's --passages) and
// DIR/questions-{train,dev}.jsonl (index/prepare_nq.h), streaming; progress on stderr.

#include <fmt/format.h>

#include <iostream>
#include <memory>

#include "cli/commands.h"
#include "core/units.h"
#include "index/prepare_nq.h"

namespace kvrag::cli {

void add_prepare_nq_command(CLI::App& app, int& exit_code) {
  struct Args {
    std::string input, out;
    double split = 0.95;
    uint64_t seed = 0;
    bool quiet = false;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand(
      "prepare-nq",
      "Convert Natural Questions (simplified JSONL, plain or .gz) into a corpus for `segment`, "
      "gold passages and train/dev question files, streaming");
  cmd->add_option("--input", args->input, "simplified-nq-*.jsonl or .jsonl.gz")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--out", args->out, "output folder (created if missing)")->required();
  cmd->add_option("--split", args->split, "fraction of the examples for train (0, 1]; the rest dev")
      ->check(CLI::Range(0.0, 1.0) & kPositive)
      ->capture_default_str();
  cmd->add_option("--seed", args->seed,
                  "seed of the train/dev split (a hash of seed and example_id)")
      ->capture_default_str();
  cmd->add_flag("--quiet", args->quiet, "no progress line");

  cmd->callback([args, &exit_code] {
    PrepareNqOptions opt;
    opt.train_fraction = args->split;
    opt.seed = args->seed;
    opt.progress = !args->quiet;
    const PrepareNqResult r = prepare_nq(args->input, args->out, opt);

    std::cout << fmt::format(
        "{}: {} train and {} dev questions ({} without a short or yes/no answer); {} documents "
        "in {}, {} gold passages in {} ({} lines read)\n",
        args->input, format_count(r.train), format_count(r.dev), format_count(r.without_answers),
        format_count(r.documents), r.corpus_path, format_count(r.passages), r.passages_path,
        format_count(r.lines));
    std::cout << fmt::format("skipped {} example{}", format_count(r.total_skipped()),
                             r.total_skipped() == 1 ? "" : "s");
    for (const auto& [reason, count] : r.skipped) {
      std::cout << fmt::format("; {} {}", reason, format_count(count));
    }
    if (r.first_malformed_line > 0) {
      std::cout << fmt::format(" (first malformed line {}: {})", r.first_malformed_line,
                               r.first_malformed_reason);
    }
    std::cout << "\n";
    exit_code = 0;
  });
}

}  // namespace kvrag::cli
