// One training step of the dynamic prefix, shared by `kvrag train-prefix` (train/prefix_trainer.h),
// its tests and the step benchmark: tokenized examples → padded batch → knowledge encoder →
// prefix → frozen LLM → cross-entropy on the answer tokens only.
//
// An example is the LLM sequence BOS + question_prompt(q), then answer_token_ids(a) + EOS (qa/prompt.h)
// and k segments, each [CLS] title [SEP] text [SEP] in encoder ids, cut by the encoder's WordPiece
// or the LLM's tokenizer (text/knowledge_tokenizer.h, as the answerer cuts them).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include "model/knowledge_encoder.h"
#include "model/llama.h"

namespace kvrag {

class KnowledgeTokenizer;
class Tokenizer;

struct PrefixExample {
  std::vector<int64_t> prompt;                 // BOS + question prompt
  std::vector<int64_t> target;                 // answer tokens + EOS (what the loss scores)
  std::vector<std::vector<int64_t>> segments;  // k segments, encoder ids with [CLS] … [SEP]
  std::vector<std::vector<int64_t>> segment_llm_ids;  // … their LLM pieces (-1: none); empty unless cut by the LLM's tokenizer
  int truncated = 0;                           // segments cut to max_segment_tokens
};

// Tokenizes one example. The segments are truncated to `max_segment_tokens` (keeping [CLS] and
// ending with [SEP], as the answerer does). Errors (prefixed by `where`, e.g. "FILE: line 3"):
// an empty answer, or prompt + answer + prefix (k·P entries) beyond the LLM's positions.
PrefixExample make_prefix_example(const Tokenizer& llm_tokenizer, const KnowledgeTokenizer& segment_tokenizer,
                                  const std::string& question, const std::string& answer,
                                  const std::vector<std::pair<std::string, std::string>>& segments,  // (title, text)
                                  int64_t max_segment_tokens, int64_t prefix_entries, int64_t max_positions,
                                  const std::string& where);

struct PrefixBatch {
  std::vector<torch::Tensor> segment_ids, segment_mask;  // per rank r: [B, T_r] int64
  std::vector<torch::Tensor> segment_llm_ids;            // per rank r: [B, T_r] int64, -1 padded (LLM-cut segments only)
  torch::Tensor ids, mask;                              // [B, S] int64: prompt + target[:-1], right-padded
  torch::Tensor labels;                                 // [B, S] int64: next token on answer positions, else -100
  int64_t answer_tokens = 0;                            // positions the loss covers
  std::vector<int64_t> prompt_lengths;                  // [B]: prompt tokens (BOS included); the last predicts the answer's first
};

// Pads examples[i] for i in `rows` into one batch (pad id `encoder_pad` for the segments, 0 for
// the LLM, masked out either way).
PrefixBatch make_prefix_batch(const std::vector<PrefixExample>& examples, const std::vector<int64_t>& rows,
                              int64_t encoder_pad);

// The prefix of the batch's segments: each rank through the encoder, ranks concatenated along
// P (concat_prefixes), cast to the LLM's dtype → [B, kvH, k·P, hd] per layer.
KVPrefix batch_prefix(KnowledgeEncoderImpl& encoder, const PrefixBatch& batch, const LlamaForCausalLMImpl& llm);

// Mean cross-entropy over the batch's answer tokens, with the prefix from `encoder`. Scalar fp32;
// differentiable with respect to the encoder only when the LLM is frozen. Logits are computed
// for the answer positions only.
torch::Tensor prefix_loss(LlamaForCausalLMImpl& llm, KnowledgeEncoderImpl& encoder, const PrefixBatch& batch);

}  // namespace kvrag
