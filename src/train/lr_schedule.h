// Optimisation settings shared by kvrag's trainers, and the learning-rate schedule they follow.
//
// Schedules (OptimOptions::schedule):
//   "constant"  lr after a linear warmup;
//   "cosine"    linear warmup to lr over warmup_steps, then cosine decay to min_lr at total_steps;
//   "plateau"   linear warmup, then ReduceLROnPlateau on the validation metric (higher is better):
//               after `patience` epochs without improvement (by more than threshold, relative) the
//               lr is multiplied by `factor` (not below min_lr), then `cooldown` epochs pass
//               before counting again — PyTorch's ReduceLROnPlateau(mode="max") semantics.
// The schedule's state round-trips through JSON so that a resumed run continues exactly.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

namespace kvrag {

struct OptimOptions {
  double lr = 1e-4;
  double weight_decay = 0.01;  // AdamW (decoupled); not applied to biases and norm weights
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  std::string schedule = "cosine";  // constant | cosine | plateau
  int64_t warmup_steps = 0;
  double min_lr = 0.0;
  double plateau_factor = 0.5;
  int plateau_patience = 1;
  int plateau_cooldown = 0;
  double plateau_threshold = 1e-4;
  double clip_norm = 1.0;  // global gradient-norm clipping; 0 = off
  int accumulation = 1;    // micro-batches per optimizer step
  int epochs = 1;
  int batch_size = 32;
  uint64_t seed = 0;

  // Error naming the offending field for non-positive sizes, unknown schedule, etc.
  void validate() const;
  nlohmann::json to_json() const;
};

class LrSchedule {
 public:
  // total_steps: optimizer steps of the whole run (for cosine).
  LrSchedule(const OptimOptions& options, int64_t total_steps);

  // Learning rate for optimizer step `step` (0-based).
  double lr(int64_t step) const;
  // Reports the validation metric at the end of an epoch (plateau only; ignored otherwise).
  // Returns true if the lr was reduced.
  bool on_validation(double metric);

  nlohmann::json state() const;
  void load_state(const nlohmann::json& state);

 private:
  OptimOptions options_;
  int64_t total_steps_;
  double plateau_lr_;  // current lr of the plateau schedule
  double best_ = 0;
  bool has_best_ = false;
  int bad_epochs_ = 0;
  int cooldown_left_ = 0;
};

}  // namespace kvrag
