// The tensor side of the dynamic prefix: examples → one padded batch → the knowledge encoder's
// prefix → the frozen LLM's scores of the answer tokens. One implementation for training
// (train/prefix_trainer.h), answering (qa/answerer.h), the step benchmark and the tests;
// prefix/prefix_pipeline.h makes the examples from text.
//
// An example is what the LLM reads and must write for one question:
//   prompt    BOS + the prompt (prefix/prompt.h)
//   target    answer_token_ids(answer) + EOS: what is scored; empty when nothing is
//   segments  its k segments (best first) cut for the knowledge encoder
//   (text/knowledge_tokenizer.h)
// The LLM sees the prefix entries (k·P per row), then prompt + target[:-1]; the positions from
// the prompt's last token on predict the target.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "model/knowledge_encoder.h"
#include "model/llama.h"
#include "prefix/forced_score.h"
#include "text/knowledge_tokenizer.h"

namespace kvrag {

struct PrefixExample {
  std::vector<int64_t> prompt;            // BOS + prompt
  std::vector<int64_t> target;            // answer ids + EOS; empty: nothing to score
  std::vector<KnowledgeTokens> segments;  // k segments, best first
};

struct PrefixBatch {
  // Per rank r (the r-th segment of every row): [B, T_r] int64. segment_llm_ids: the LLM piece
  // of each entry (-1: none), defined only for segments cut by the LLM's tokenizer.
  std::vector<torch::Tensor> segment_ids, segment_mask, segment_llm_ids;
  std::vector<std::vector<int64_t>> prompts;  // [B] ragged: the prompts, as generation takes them
  std::vector<int64_t> prompt_lengths;        // [B]: prompt tokens, BOS included
  // Defined when every row has a target:
  torch::Tensor ids, mask;    // [B, S] int64: prompt + target[:-1], right-padded
  torch::Tensor labels;       // [B, S] int64: the next token at answer positions, else -100
  int64_t answer_tokens = 0;  // positions with a label
  std::vector<int64_t> target_lengths;  // [B]

  int64_t size() const { return static_cast<int64_t>(prompts.size()); }
  int64_t segments() const { return static_cast<int64_t>(segment_ids.size()); }
  bool has_targets() const { return ids.defined(); }
};

// examples[i] for i in `rows`, padded into one batch: segments with `encoder_pad` (masked out),
// LLM ids with 0 (masked out). Every row must have the same number of segments, cut by the
// same tokenizer, and either all rows have a target or none.
PrefixBatch make_prefix_batch(const std::vector<PrefixExample>& examples,
                              const std::vector<int64_t>& rows, int64_t encoder_pad);

// The batch's dynamic prefix: rank r of every row through `encoder`, the ranks concatenated
// along P (concat_prefixes: segment order = rank), cast to the LLM's dtype, the keys placed for
// each row's prompt (place_for_answer: the encoder's key_position) → keys/values
// [B, kvH, k·P, hd] per layer. Differentiable with respect to the encoder. Empty for a batch
// without segments.
KVPrefix batch_prefix(KnowledgeEncoderImpl& encoder, const LlamaForCausalLMImpl& llm,
                      const PrefixBatch& batch);

// The second half of batch_prefix, for prefixes made elsewhere (a prefix store: prefix/
// prefix_store.h): per_rank[r] the encoder's output for rank r of every row ([B, kvH, P, hd] per
// layer) → concatenated, cast to the LLM's dtype, placed for `prompt_lengths` [B].
KVPrefix finish_prefix(const KnowledgeEncoderConfig& config, const LlamaForCausalLMImpl& llm,
                       const std::vector<KVPrefix>& per_rank,
                       const std::vector<int64_t>& prompt_lengths);

// The LLM's logits [N, V] fp32 at the batch's N answer positions (row-major), given `prefix`
// (nullptr: none), and the answer tokens they predict, labels [N] int64. Only these positions
// are projected to the vocabulary (a 32k vocabulary makes the full [B, S, V] the largest tensor
// of a training step). Differentiable with respect to the prefix. attention_probs (optional,
// inference only): filled with every layer's attention probabilities of the same forward
// ([B, H, T, S] fp32 each), for prefix_attention.
struct AnswerLogits {
  torch::Tensor logits;  // [N, V] fp32
  torch::Tensor labels;  // [N] int64
};
AnswerLogits answer_logits(LlamaForCausalLMImpl& llm, const PrefixBatch& batch,
                           const KVPrefix* prefix,
                           std::vector<torch::Tensor>* attention_probs = nullptr);

// The training loss: mean cross-entropy over the batch's answer tokens. Scalar fp32.
torch::Tensor answer_loss(LlamaForCausalLMImpl& llm, const PrefixBatch& batch,
                          const KVPrefix* prefix);

// Teacher-forced scores of each row's target, from the same logits as answer_loss (a row's mean
// log-probability is minus its cross-entropy); attention_probs as for answer_logits.
std::vector<ForcedScore> answer_scores(LlamaForCausalLMImpl& llm, const PrefixBatch& batch,
                                       const KVPrefix* prefix,
                                       std::vector<torch::Tensor>* attention_probs = nullptr);

// Citations from attention: per row of `batch` (with answers) and per segment r of the `segments`
// whose prefixes make up `prefix` (rank order, prefix.length() / segments entries each), the
// attention mass that the queries writing the answer's tokens (the label positions) put on
// segment r's entries: the probabilities summed over its entries (but not its padding, whose
// keys and values are zero), averaged over every layer, every head and those queries →
// [B, segments] fp64, each row summing to at most the prefix's share of the answer's attention.
// Every layer and head, because which of them read the prefix is learned with the encoder (its
// keys are made for every layer), not fixed in advance. `probs`: the attention probabilities of
// the teacher-forced forward of `batch` with `prefix` (answer_scores' attention_probs), so that
// scoring and citing an answer take one forward. Error (before any forward, with
// check_citable) unless the prefix splits into `segments` equal parts.
void check_citable(const KVPrefix& prefix, int64_t segments);
torch::Tensor prefix_attention(const std::vector<torch::Tensor>& probs, const PrefixBatch& batch,
                               const KVPrefix& prefix, int64_t segments);

}  // namespace kvrag
