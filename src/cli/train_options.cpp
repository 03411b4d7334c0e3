#include "cli/train_options.h"

namespace kvrag::cli {

void add_optim_options(CLI::App* cmd, OptimOptions& o) {
  cmd->add_option("--lr", o.lr, "peak learning rate (AdamW)")->capture_default_str();
  cmd->add_option("--weight-decay", o.weight_decay, "decoupled weight decay on weight matrices")
      ->capture_default_str();
  cmd->add_option(
         "--schedule", o.schedule,
         "constant | cosine (warmup, cosine decay) | plateau (ReduceLROnPlateau on validation)")
      ->capture_default_str();
  cmd->add_option("--warmup", o.warmup_steps, "linear warmup, optimizer steps")
      ->capture_default_str();
  cmd->add_option("--min-lr", o.min_lr, "floor of cosine decay and plateau reductions")
      ->capture_default_str();
  cmd->add_option("--plateau-factor", o.plateau_factor, "plateau: lr multiplier")
      ->capture_default_str();
  cmd->add_option("--plateau-patience", o.plateau_patience, "plateau: epochs without improvement")
      ->capture_default_str();
  cmd->add_option("--plateau-cooldown", o.plateau_cooldown,
                  "plateau: epochs to wait after a reduction")
      ->capture_default_str();
  cmd->add_option("--clip", o.clip_norm, "global gradient-norm clipping (0: off)")
      ->capture_default_str();
  cmd->add_option("--accumulation", o.accumulation, "micro-batches per optimizer step")
      ->capture_default_str();
  cmd->add_option("--epochs", o.epochs, "passes over the training data")->capture_default_str();
  cmd->add_option("--batch-size", o.batch_size, "examples per micro-batch")->capture_default_str();
  cmd->add_option("--seed", o.seed, "seed of initialisation and data order")->capture_default_str();
}

}  // namespace kvrag::cli
