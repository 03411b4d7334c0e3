// kvrag train-prefix --llm DIR --init ENCODER_DIR --train Q.jsonl [--dev Q.jsonl] --out DIR
//                    (--oracle --passages P.jsonl | --index DIR [--retriever dense|bm25|hybrid])
//                    [--top-k 1] [--prefix-length 10] [--max-segment-tokens 256]
//                    [--llm-dtype fp32|bf16|int8] [--fairness-weight λ] [--balance-answers Q]
//                    [optimisation flags]
//
// Trains a knowledge encoder whose output is a key/value prefix of the frozen LLM
// (train/prefix_trainer.h). DIR becomes a knowledge-encoder folder for `kvrag ask/eval --mode
// prefix` (best epoch by dev EM) and holds the resume point: rerunning the same command after an
// interruption continues the run. `mpirun -np N kvrag …` trains data parallel
// (train/data_parallel.h).

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/enum_option.h"
#include "cli/train_options.h"
#include "core/error.h"
#include "core/progress.h"
#include "index/index_retriever.h"
#include "model/model_dtype_names.h"
#include "train/data_parallel.h"
#include "train/prefix_trainer.h"

namespace kvrag::cli {

void add_train_prefix_command(CLI::App& app, int& exit_code) {
  struct Args {
    PrefixTrainOptions options;
    std::string index;
    RetrieverSpec retriever;
    bool json = false;
  };
  auto args = std::make_shared<Args>();
  auto& o = args->options;
  o.optim.lr = 1e-4;
  o.optim.batch_size = 8;
  auto* cmd = app.add_subcommand(
      "train-prefix",
      "Train a knowledge encoder: retrieved segment → key/value prefix of a frozen LLaMA");
  cmd->add_option("--llm", o.llm,
                  "LLaMA folder (config.json, safetensors, tokenizer.model); stays frozen")
      ->required();
  cmd->add_option("--llm-dtype", o.llm_dtype,
                  "the frozen LLM's dtype (bf16 matmuls are slow without AMX; int8: weight-only)")
      ->check(CLI::IsMember(kModelDtypeNames))
      ->capture_default_str();
  cmd->add_option("--init", o.init,
                  "encoder folder to start from: BERT/retriever checkpoint + vocab.txt, or a "
                  "knowledge encoder made for this LLM")
      ->required();
  cmd->add_option("--train", o.train,
                  "training questions {\"question\", \"answers\", \"gold_passage_id\"?}")
      ->required();
  cmd->add_option("--dev", o.dev,
                  "validation questions: exact match after each epoch picks the best encoder");
  cmd->add_option("--max-dev", o.max_dev, "validate on the first N dev questions (0 = all)")
      ->capture_default_str()
      ->check(kNonNegative);
  cmd->add_flag("--oracle", o.oracle, "segment = the question's gold passage (needs --passages)");
  cmd->add_option("--distractors", o.distractors,
                  "with --oracle: up to N other passages beside the gold one (0 to N, at random "
                  "ranks), for an encoder that answers from top-k up to 1 + N")
      ->capture_default_str()
      ->check(kNonNegative);
  cmd->add_option("--passages", o.passages,
                  "passages {\"id\", \"title\", \"text\"} the gold ids refer to");
  cmd->add_option("--index", args->index, "segment = top-k of this index (instead of --oracle)");
  add_enum_option(cmd, "--retriever", args->retriever.mode, "dense, bm25 or hybrid");
  cmd->add_option("--retriever-encoder", args->retriever.encoder,
                  "question encoder folder (default: the one that embedded the segments)");
  cmd->add_option("--top-k", o.top_k, "segments per question; their prefixes are concatenated")
      ->capture_default_str();
  add_knowledge_encoder_options(cmd, o.encoder);
  cmd->add_flag(
      "--group-by-length", o.group_by_length,
      "batches of similar segment lengths (less padding: faster when segment lengths vary)");
  cmd->add_option("--fairness-weight", o.fairness_weight, "λ of the fairness term (0: none)")
      ->capture_default_str()
      ->check(kNonNegative);
  add_enum_option(cmd, "--fairness-loss", o.fairness_loss,
                  "counterfactual (twin passages' answers agree; --oracle) or decorrelation");
  cmd->add_option("--balance-answers", o.balance_answers,
                  "Q: a question whose answer c training questions share, more than the "
                  "Q-quantile c_Q of that count, weighs c_Q / c (weights scaled to mean 1): "
                  "answers repeated far more than most, such as a stereotype's, count less "
                  "(0: off; 0.9: capped at what 90 % of questions do not exceed)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--max-new-tokens", o.max_new_tokens, "validation answers: tokens at most")
      ->capture_default_str();
  cmd->add_option("--save-every", o.save_every,
                  "optimizer steps between resume points (0: epoch ends only)")
      ->capture_default_str()
      ->check(kNonNegative);
  cmd->add_option("--out", o.out,
                  "run folder; becomes the knowledge-encoder folder (resumes if it holds a run)")
      ->required();
  cmd->add_flag("--json", args->json, "print the result as JSON");
  cmd->add_option("--stop-after-steps", o.stop_after_steps)->group("");  // tests: as if killed
  add_optim_options(cmd, o.optim);
  cmd->callback([args, &exit_code] {
    auto& o = args->options;
    KVRAG_CHECK(!(o.oracle && !args->index.empty()),
                "train-prefix: --oracle and --index exclude each other");
    std::unique_ptr<IndexRetriever> retriever;
    if (!args->index.empty()) {
      retriever = open_retriever(args->index, args->retriever);
      o.retriever = retriever.get();
    }
    const auto r = train_prefix(o);
    exit_code = 0;
    if (!Communicator::world().is_root()) return;  // mpirun: rank 0 reports
    nlohmann::json j = {{"out", o.out},
                        {"initial_dev_em", r.initial_dev_em},
                        {"dev_em", r.dev_em},
                        {"dev_loss", r.dev_loss},
                        {"epoch_loss", r.epoch_loss},
                        {"best_dev_em", r.best_dev_em},
                        {"best_epoch", r.best_epoch},
                        {"steps", r.steps},
                        {"examples_per_s", r.examples_per_s},
                        {"peak_rss_bytes", r.peak_rss_bytes},
                        {"truncated_segments", r.truncated_segments}};
    if (args->json) {
      fmt::print("{}\n", j.dump());
    } else {
      fmt::print("trained knowledge encoder in {}: {} steps, {:.1f} examples/s, peak RSS {}", o.out,
                 r.steps, r.examples_per_s, format_bytes(r.peak_rss_bytes));
      if (r.best_dev_em >= 0) {
        fmt::print(", dev EM {:.4f} before training, best {:.4f} (epoch {})", r.initial_dev_em,
                   r.best_dev_em, r.best_epoch + 1);
      }
      if (r.truncated_segments > 0) fmt::print(", {} segments truncated", r.truncated_segments);
      fmt::print("\n");
    }
  });
}

}  // namespace kvrag::cli
