// kvrag train-query-encoder --llm DIR --knowledge-encoder KE --index DIR --train Q.jsonl
//                           [--dev Q.jsonl] --out DIR [--init ENCODER] [--top-k 8]
//                           [--temperature 0.05] [optimisation flags]
//
// Trains the dense retriever's question encoder from the frozen LLM's answer likelihood alone,
// marginalising over the top-k segments (train/query_encoder_trainer.h). DIR becomes a query
// encoder paired with the index's passage encoder: `kvrag ask/eval/search --encoder DIR` on the
// same index. Rerunning the same command after an interruption continues the run.

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/train_options.h"
#include "model/model_dtype_names.h"
#include "train/query_encoder_trainer.h"

namespace kvrag::cli {

void add_train_query_encoder_command(CLI::App& app, int& exit_code) {
  struct Args {
    QueryEncoderTrainOptions options;
    bool json = false;
  };
  auto args = std::make_shared<Args>();
  auto& o = args->options;
  o.optim.lr = 1e-5;
  o.optim.batch_size = 16;
  auto* cmd = app.add_subcommand(
      "train-query-encoder",
      "Train the retriever's question encoder from the frozen LLM's answer likelihood (REALM)");
  cmd->add_option("--llm", o.llm, "LLaMA folder (config.json, safetensors, tokenizer.model)")
      ->required();
  cmd->add_option("--llm-dtype", o.llm_dtype, "the frozen LLM's dtype")
      ->check(CLI::IsMember(kModelDtypeNames))
      ->capture_default_str();
  cmd->add_option("--knowledge-encoder", o.knowledge_encoder,
                  "knowledge encoder made for that LLM: turns each segment into its prefix")
      ->required();
  cmd->add_option("--index", o.index, "index folder with dense vectors (stay as they are)")
      ->required();
  cmd->add_option("--init", o.init,
                  "question encoder to start from (default: the index's passage encoder)");
  cmd->add_option("--train", o.train, "training questions {\"question\", \"answers\"}")->required();
  cmd->add_option("--dev", o.dev,
                  "validation questions: the dev loss after each epoch picks the best encoder");
  cmd->add_option("--max-dev", o.max_dev, "validate on the first N dev questions (0 = all)")
      ->capture_default_str()
      ->check(kNonNegative);
  cmd->add_option("--top-k", o.top_k, "segments per question the likelihood marginalises over")
      ->capture_default_str();
  cmd->add_option("--temperature", o.temperature, "of the retrieval distribution p(z | q)")
      ->capture_default_str();
  cmd->add_option("--save-every", o.save_every,
                  "optimizer steps between resume points (0: epoch ends only)")
      ->capture_default_str()
      ->check(kNonNegative);
  cmd->add_option("--out", o.out, "run folder; becomes the query encoder (resumes a run)")
      ->required();
  cmd->add_flag("--json", args->json, "print the result as JSON");
  cmd->add_option("--stop-after-steps", o.stop_after_steps)->group("");  // tests: as if killed
  add_optim_options(cmd, o.optim);
  cmd->callback([args, &exit_code] {
    const auto& o = args->options;
    const auto r = train_query_encoder(o);
    exit_code = 0;
    nlohmann::json dev = nlohmann::json::array();
    for (const auto& d : r.dev) dev.push_back(d.to_json());
    const nlohmann::json j = {{"out", o.out},
                              {"initial_dev_loss", r.initial_dev_loss},
                              {"initial_dev", r.initial_dev.to_json()},
                              {"epoch_loss", r.epoch_loss},
                              {"dev_loss", r.dev_loss},
                              {"dev", dev},
                              {"best_epoch", r.best_epoch},
                              {"steps", r.steps},
                              {"llm_scores", r.llm_scores}};
    if (args->json) {
      fmt::print("{}\n", j.dump());
      return;
    }
    fmt::print("trained query encoder in {}: {} steps, {} LLM scores", o.out, r.steps,
               r.llm_scores);
    if (!r.dev_loss.empty()) {
      fmt::print(", dev loss {:.4f} before training, {:.4f} at the best epoch ({})",
                 r.initial_dev_loss, r.dev_loss[r.best_epoch], r.best_epoch + 1);
      if (r.initial_dev.top1 >= 0)
        fmt::print(", dev gold in top-1 {:.3f} → {:.3f}", r.initial_dev.top1,
                   r.dev[r.best_epoch].top1);
    }
    fmt::print("\n");
  });
}

}  // namespace kvrag::cli
