// kvrag train-lm --text lm.txt --tokenizer tokenizer.model (--config config.json | --preset tiny)
//                --out DIR [--context 256] [--max-steps N] [optimizer flags]

#include <fmt/format.h>

#include "cli/commands.h"
#include "cli/train_options.h"
#include "core/error.h"
#include "train/lm_trainer.h"

namespace kvrag::cli {

void add_train_lm_command(CLI::App& app, int& exit_code) {
  auto o = std::make_shared<LmTrainOptions>();
  o->optim.lr = 3e-3;
  o->optim.warmup_steps = 20;
  o->optim.weight_decay = 0.1;
  o->optim.batch_size = 16;
  auto* cmd = app.add_subcommand(
      "train-lm", "Pre-train a LLaMA from scratch on a text file (HF-layout output)");
  cmd->add_option("--text", o->text_path, "training text: examples separated by blank lines")
      ->required();
  cmd->add_option("--tokenizer", o->tokenizer_path, "SentencePiece tokenizer.model")->required();
  auto* config =
      cmd->add_option("--config", o->config_path, "LLaMA config.json (instead of --preset)");
  cmd->add_option("--preset", o->preset, "model size: micro | mini | tiny | small")
      ->capture_default_str()
      ->excludes(config);
  cmd->add_option("--out", o->out_dir,
                  "run folder: config.json, model.safetensors, tokenizer.model, resume/")
      ->required();
  cmd->add_option("--context", o->context, "tokens per packed training row")->capture_default_str();
  cmd->add_option("--max-steps", o->max_steps,
                  "stop after this many optimizer steps (0: all epochs)")
      ->check(kNonNegative);
  cmd->add_option("--init-std", o->init_std, "standard deviation of the initial weights")
      ->capture_default_str()
      ->check(kPositive);
  cmd->add_option("--answer-weight", o->answer_weight,
                  "loss weight of the tokens after an example's last \"Answer:\" (1: plain "
                  "language modelling)")
      ->capture_default_str()
      ->check(kPositive);
  cmd->add_option("--resume-every", o->resume_every, "optimizer steps between resume points")
      ->capture_default_str();
  add_optim_options(cmd, o->optim);
  cmd->callback([o, &exit_code] {
    const auto r = train_lm(*o);
    fmt::print("{} steps ({} rows of {} tokens per epoch{}): loss {:.3f} -> {:.3f}; model in {}\n",
               r.steps, r.rows, o->context, r.resumed ? ", resumed" : "", r.first_loss,
               r.final_loss, o->out_dir);
    exit_code = 0;
  });
}

}  // namespace kvrag::cli
