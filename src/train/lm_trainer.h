// Pre-training a LLaMA from scratch (the demo's tiny frozen LLM): next-token cross-entropy on
// the examples of a text file, packed into windows.
//
// Input: examples separated by blank lines (demo/world.h writes lm.txt so). Each example is
// encoded whole with BOS and followed by EOS — with the tokenizer of
// text/sentencepiece_trainer.h (no dummy prefix) that is exactly how qa/prompt.h's prompt and
// target are encoded at answering time. Examples are packed greedily, in file order, into rows
// of `context` tokens (padding at the end of a row is not predicted); an example longer than a
// row is cut into row-sized pieces. Rows are shuffled per epoch (train_state.h's epoch_order).
//
// The run folder OUT gets the model in Hugging Face layout — config.json, model.safetensors
// (fp32), tokenizer.model — which load_llama and `kvrag generate` read, plus OUT/resume while
// training (kill -9 and rerun continues from the last resume point) and OUT/train_log.json.
#pragma once

#include <cstdint>
#include <string>

#include "checkpoint/model_config.h"
#include "train/lr_schedule.h"

namespace kvrag {

struct LmTrainOptions {
  std::string text_path;        // examples separated by blank lines
  std::string tokenizer_path;   // SentencePiece tokenizer.model
  std::string config_path;      // a LlamaConfig config.json; empty: `preset`
  std::string preset = "tiny";  // micro | mini | tiny | small (see lm_preset)
  std::string out_dir;
  int context = 256;       // tokens per packed row
  int64_t max_steps = 0;   // > 0: stop after this many optimizer steps (before the epochs end)
  double init_std = 0.02;  // N(0, std) initialisation of matrices
  int resume_every = 50;   // optimizer steps between resume points
  // The tokens after an example's last "Answer:" (qa/prompt.h's format) count this many times in
  // the loss: a question/answer pair then teaches answering (e.g. reading the answer out of
  // the context) more strongly than its prompt teaches language. 1 = plain language modelling.
  double answer_weight = 1.0;
  bool progress = true;
  OptimOptions optim;            // lr, schedule, epochs, batch_size (rows), seed, …
  int64_t stop_after_steps = 0;  // test hook: > 0 returns after this many steps, as if killed
};

struct LmTrainResult {
  int64_t steps = 0;      // optimizer steps of the whole run
  int64_t rows = 0;       // packed rows per epoch
  int64_t tokens = 0;     // predicted tokens per epoch
  double first_loss = 0;  // mean loss of the first optimizer step (of this process's run)
  double final_loss = 0;  // mean loss over the last ≤ 20 optimizer steps
  bool resumed = false;
  bool finished = false;  // false when stopped by stop_after_steps (nothing exported)
};

// A LLaMA configuration by name for a tokenizer of `vocab_size` pieces:
//   micro  hidden 64, 2 layers, 2 heads, MLP 128 (smoke tests)
//   mini   hidden 128, 2 layers, 4 heads, MLP 384, tied embeddings (the demo's LLM)
//   tiny   hidden 128, 4 layers, 4 heads, MLP 384, tied embeddings (~1M parameters + vocab)
//   small  hidden 256, 6 layers, 8 heads, MLP 704
// Throws Error for an unknown name.
LlamaConfig lm_preset(const std::string& name, int64_t vocab_size, int64_t max_positions);

// Trains (or resumes, or — when OUT already holds the finished run — only re-exports) and
// exports OUT. Errors name the file or option at fault.
LmTrainResult train_lm(const LmTrainOptions& options);

// The examples of a train-lm text file (split at blank lines, empty ones dropped). Throws Error
// naming the file.
std::vector<std::string> read_lm_examples(const std::string& path);

}  // namespace kvrag
