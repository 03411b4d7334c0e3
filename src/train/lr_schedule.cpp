#include "train/lr_schedule.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace kvrag {

void OptimOptions::validate() const {
  KVRAG_CHECK(lr > 0, "--lr must be positive (got {})", lr);
  KVRAG_CHECK(weight_decay >= 0, "--weight-decay must be ≥ 0 (got {})", weight_decay);
  KVRAG_CHECK(schedule == "constant" || schedule == "cosine" || schedule == "plateau",
              "--schedule must be constant, cosine or plateau (got \"{}\")", schedule);
  KVRAG_CHECK(warmup_steps >= 0, "--warmup must be ≥ 0 (got {})", warmup_steps);
  KVRAG_CHECK(min_lr >= 0 && min_lr <= lr, "--min-lr must lie in [0, lr] (got {})", min_lr);
  KVRAG_CHECK(plateau_factor > 0 && plateau_factor < 1,
              "--plateau-factor must lie in (0, 1) (got {})", plateau_factor);
  KVRAG_CHECK(plateau_patience >= 0 && plateau_cooldown >= 0,
              "--plateau-patience/--plateau-cooldown must be ≥ 0");
  KVRAG_CHECK(clip_norm >= 0, "--clip must be ≥ 0 (got {})", clip_norm);
  KVRAG_CHECK(accumulation >= 1, "--accumulation must be ≥ 1 (got {})", accumulation);
  KVRAG_CHECK(epochs >= 1, "--epochs must be ≥ 1 (got {})", epochs);
  KVRAG_CHECK(batch_size >= 1, "--batch-size must be ≥ 1 (got {})", batch_size);
}

nlohmann::json OptimOptions::to_json() const {
  return {{"lr", lr},
          {"weight_decay", weight_decay},
          {"betas", {beta1, beta2}},
          {"eps", eps},
          {"schedule", schedule},
          {"warmup_steps", warmup_steps},
          {"min_lr", min_lr},
          {"plateau",
           {{"factor", plateau_factor},
            {"patience", plateau_patience},
            {"cooldown", plateau_cooldown}}},
          {"clip_norm", clip_norm},
          {"accumulation", accumulation},
          {"epochs", epochs},
          {"batch_size", batch_size},
          {"seed", seed}};
}

LrSchedule::LrSchedule(const OptimOptions& options, int64_t total_steps)
    : options_(options), total_steps_(std::max<int64_t>(total_steps, 1)), plateau_lr_(options.lr) {}

double LrSchedule::lr(int64_t step) const {
  const int64_t warmup = options_.warmup_steps;
  if (warmup > 0 && step < warmup) {
    const double base = options_.schedule == "plateau" ? plateau_lr_ : options_.lr;
    return base * double(step + 1) / double(warmup);
  }
  if (options_.schedule == "constant") return options_.lr;
  if (options_.schedule == "plateau") return plateau_lr_;
  // cosine from lr (end of warmup) to min_lr (total_steps).
  const double span = double(std::max<int64_t>(total_steps_ - warmup, 1));
  const double t = std::clamp(double(step - warmup) / span, 0.0, 1.0);
  return options_.min_lr + 0.5 * (options_.lr - options_.min_lr) * (1.0 + std::cos(M_PI * t));
}

bool LrSchedule::on_validation(double metric) {
  if (options_.schedule != "plateau") return false;
  // PyTorch: mode "max", threshold_mode "rel".
  const bool better =
      !has_best_ || metric > best_ * (1.0 + (best_ >= 0 ? 1 : -1) * options_.plateau_threshold);
  if (better) {
    best_ = metric;
    has_best_ = true;
    bad_epochs_ = 0;
  } else {
    ++bad_epochs_;
  }
  if (cooldown_left_ > 0) {
    --cooldown_left_;
    bad_epochs_ = 0;
  }
  if (bad_epochs_ > options_.plateau_patience) {
    const double next = std::max(plateau_lr_ * options_.plateau_factor, options_.min_lr);
    const bool reduced = plateau_lr_ - next > 1e-12;
    plateau_lr_ = next;
    cooldown_left_ = options_.plateau_cooldown;
    bad_epochs_ = 0;
    return reduced;
  }
  return false;
}

nlohmann::json LrSchedule::state() const {
  return {{"plateau_lr", plateau_lr_},
          {"best", best_},
          {"has_best", has_best_},
          {"bad_epochs", bad_epochs_},
          {"cooldown_left", cooldown_left_}};
}

void LrSchedule::load_state(const nlohmann::json& state) {
  plateau_lr_ = state.at("plateau_lr").get<double>();
  best_ = state.at("best").get<double>();
  has_best_ = state.at("has_best").get<bool>();
  bad_epochs_ = state.at("bad_epochs").get<int>();
  cooldown_left_ = state.at("cooldown_left").get<int>();
}

}  // namespace kvrag
