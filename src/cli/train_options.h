// Command-line flags of OptimOptions, shared by the train-* commands, and of a fresh knowledge
// encoder's shape (train-prefix).
#pragma once

#include <CLI/CLI.hpp>

#include "model/knowledge_encoder_config.h"
#include "train/lr_schedule.h"

namespace kvrag::cli {

// Adds --lr, --weight-decay, --schedule, --warmup, --min-lr, --plateau-factor,
// --plateau-patience, --plateau-cooldown, --clip, --accumulation, --epochs, --batch-size, --seed
// bound to `options` (whose current values are the defaults shown).
void add_optim_options(CLI::App* cmd, OptimOptions& options);

// Adds --prefix-length, --readout, --llm-embeddings, --segment-tokenizer, --key-position,
// --max-segment-tokens, --head-std bound to `options` (a fresh encoder's shape).
void add_knowledge_encoder_options(CLI::App* cmd, KnowledgeEncoderOptions& options);

}  // namespace kvrag::cli
