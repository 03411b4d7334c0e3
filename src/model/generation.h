// Text generation with the LLaMA decoder: greedy, temperature and top-p sampling, a batch of
// prompts of different lengths, optional key/value prefix.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/splitmix64.h"
#include "model/llama.h"

namespace kvrag {

struct GenerationOptions {
  int max_new_tokens = 64;
  float temperature = 0.0f;       // 0: greedy (argmax)
  float top_p = 1.0f;             // nucleus sampling mass, (0, 1]
  uint64_t seed = 0;              // sampling is deterministic given the seed
  bool stop_at_eos = true;        // stop a row at any of the config's eos ids
  std::vector<int64_t> stop_ids;  // further ids that end a row

  // Context-aware decoding (Shi et al., 2023, "Trusting Your Evidence"): with contrast α > 0,
  // every step's logits become (1 + α)·logits − α·plain, where `plain` are the model's logits for
  // contrast_prompts[b] (the same question without its evidence: no prefix, no passages in the
  // prompt) fed the same new tokens. The next token is then picked by how much the evidence
  // raises its probability over what the LLM would say anyway — its prior, a stereotype learned
  // in pre-training included. Costs a second forward per step (the plain prompts are short).
  float contrast = 0.0f;
  std::vector<std::vector<int64_t>> contrast_prompts;  // one per prompt when contrast > 0

  // Mixture decoding (RAG-Token; Lewis et al., 2020): with mixture m > 1 the prompts come in
  // groups of m consecutive rows, one question each row with another evidence prefix, and every
  // step the group's next-token distribution is the mixture Σ_r w_r · p_r of its rows', w_r =
  // exp(mixture_log_weights[row]) (each group's weights summing to 1: a retrieval posterior). The
  // group's first row picks the token from it (its sampler) and every row of the group takes it:
  // they all return the same generation. Not with contrast.
  int64_t mixture = 1;
  std::vector<float> mixture_log_weights;  // one per prompt when mixture > 1

  // Extractive decoding: where copy_from[b] is not empty, row b writes a contiguous span of it
  // (token ids; -1 separates sources a span may not cross): each step's candidates are the
  // tokens that continue a match of what the row wrote so far, and the stop tokens once it wrote
  // one. The LLM still picks among them. Empty (or empty rows): unconstrained.
  std::vector<std::vector<int64_t>> copy_from;
};

enum class StopReason { kLength, kStopToken };

struct Generation {
  std::vector<int64_t> tokens;  // new tokens, without the stop token
  StopReason stop_reason = StopReason::kLength;
  int64_t stop_token = -1;  // the id that stopped the row, if any
};

// Where a generate() call's time went (a batch shares it).
struct GenerationStats {
  double prefill_ms = 0;  // the prompts' forward pass up to the first token's logits
  double decode_ms = 0;   // every later step (with the sampling)
};

// Generates a continuation for each prompt (token ids, BOS included by the caller). Prompts are
// left-padded into one batch and decoded with a KV cache; `prefix` (batch 1 or one row per
// prompt) is placed at the front of the cache. Throws Error for empty prompts or a context longer
// than the model's max_position_embeddings. `stats` (optional) receives the time split.
std::vector<Generation> generate(LlamaForCausalLMImpl& model,
                                 const std::vector<std::vector<int64_t>>& prompts,
                                 const GenerationOptions& options, const KVPrefix* prefix = nullptr,
                                 GenerationStats* stats = nullptr);

// Picks the next token from fp32 logits [V] (greedy when temperature is 0).
class TokenSampler {
 public:
  TokenSampler(float temperature, float top_p, uint64_t seed);
  int64_t sample(const float* logits, int64_t vocab_size);

 private:
  float temperature_, top_p_;
  SplitMix64 rng_;        // the same draws on every platform
  double next_uniform();  // [0, 1)
  std::vector<std::pair<float, int64_t>> scratch_;
};

}  // namespace kvrag
