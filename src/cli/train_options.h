// Command-line flags of OptimOptions, shared by the train-* commands.
#pragma once

#include <CLI/CLI.hpp>

#include "train/lr_schedule.h"

namespace kvrag::cli {

// Adds --lr, --weight-decay, --schedule, --warmup, --min-lr, --plateau-factor,
// --plateau-patience, --plateau-cooldown, --clip, --accumulation, --epochs, --batch-size, --seed
// bound to `options` (whose current values are the defaults shown).
void add_optim_options(CLI::App* cmd, OptimOptions& options);

}  // namespace kvrag::cli
