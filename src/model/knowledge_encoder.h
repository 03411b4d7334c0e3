// The knowledge encoder: a retrieved segment → a per-layer key/value prefix for a frozen LLaMA
// (the "dynamic prefix").
//
//   segment ids [B, T] → BertModel → last hidden states [B, T, H]
//   readout "queries": P learned queries [P, H] → multi-head cross-attention over those states
//                      (padding masked) → LayerNorm → [B, P, H]
//   readout "tokens":  every token's state → LayerNorm, padded to P entries → [B, P, H] (P is the
//                      longest segment: one entry per segment token; padding entries are zero
//                      keys and values, which take a little attention and add nothing, and every
//                      segment pads to the same P, so an answer does not depend on its batch)
//   → for every LLM layer l: key head and value head (Linear H → kvH·hd)
//   → KVPrefix keys[l], values[l] [B, kvH, P, hd]
//
// Which readout: "queries" compresses a segment into a few entries; "tokens" keeps one per token
// and learns far faster through a frozen LLM (demo world, same data: dev exact match stayed at
// 0.01 after 4 epochs with 16 queries; with tokens 0.08 after 2 and 0.19 after 6), because no
// pooling has to learn first where in the segment the answer is: the LLM's attention picks.
//
// llm_embeddings (readout "tokens"): each token's entry also gets the LLM's own (frozen) input
// embedding of that token, so that handing the LLM a token the segment holds is one map shared
// by every token, not one learned per token from the tokens seen in training answers; and each
// entry's key gets the previous token's LLM embedding (through "previous_key"), an induction-
// style key: once the LLM has written a name's piece j, its query can find the entry that comes
// after piece j, which holds piece j + 1. Demo world, dev exact match after 2 epochs (best of
// 6): 0.10 (0.18) without, 0.18 (0.23) with the token's embedding only, 0.48 (0.52) with both.
//
// segment_tokenizer (text/knowledge_tokenizer.h): "encoder" cuts the segment with the encoder's
// WordPiece vocabulary; "llm" with the LLM's own tokenizer, one entry per LLM piece, so that the
// pieces of an answer are entries one for one. With llm_embeddings the table is then the LLM's
// embedding matrix itself, indexed by each entry's LLM piece (case kept), plus a zero row for
// [CLS], [SEP] and padding. Demo world (train + reading questions, 2 epochs): test exact match
// 0.657 with "encoder", 0.663 with "llm", 0.710 with "llm" and the induction init below.
//
// Induction init (init_induction_keys): "previous_key" of layer l starts as the LLM's own query
// map of that layer (q_proj after the input RMSNorm's weight), so an entry's key starts as the
// query the LLM makes when its current token is the entry's previous token.
//
// key_position "answer": the keys are placed (rotary embedding, LlamaForCausalLMImpl::
// place_prefix) at the position of the query that writes the answer's first token, so that a
// key scores the same against that query whatever the question's length, and the answer's k-th
// query sees it rotated by k only. Placed entries take no positions of the LLM's context (rotary
// attention depends on position differences only), so any number of segments' prefixes fit. "none":
// the keys go to the LLM as made (position-free in a cache of rotated keys: their score with a
// query depends on the query's absolute position). Demo world: test exact match 0.710 → 0.743.
//
// Only the LLM's cross-entropy on the answer trains it; the LLM stays frozen. The output heads
// start with a small std so that the initial prefix perturbs the LLM only slightly.
//
// Parameter names: the BERT part is named exactly like HF BertModel under "encoder."
// ("encoder.embeddings.word_embeddings.weight", "encoder.encoder.layer.0.…"), so a retriever or
// any BERT checkpoint initialises it by name; then "queries" [P, H], "cross_attention.{query,
// key,value,output}.{weight,bias}" (readout "queries" only), "norm.{weight,bias}",
// "llm_embeddings" [V, H] (llm_embeddings only; V: the encoder's vocabulary, or with
// segment_tokenizer "llm" the LLM's plus one), "prefix_heads.{l}.{key,value}.{weight,bias}",
// "prefix_heads.{l}.previous_key.weight" (llm_embeddings only).
//
// Folder layout (save_knowledge_encoder / load_knowledge_encoder):
//   DIR/config.json  {"model_type": "kvrag_knowledge_encoder", "encoder": {…BERT config…},
//                     "prefix_length": P, "readout": "queries" | "tokens" (absent: queries),
//                     "max_segment_tokens": N (absent: the encoder's positions),
//                     "llm_embeddings": bool (absent: false),
//                     "segment_tokenizer": "encoder" | "llm" (absent: encoder),
//                     "key_position": "none" | "answer" (absent: none),
//                     "llm": {"layers", "kv_heads", "head_dim", "vocab_size", "fingerprint"}}
//   DIR/model.safetensors
//   DIR/vocab.txt    the encoder's WordPiece vocabulary
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/bert.h"
#include "model/knowledge_encoder_config.h"
#include "model/layers.h"
#include "model/llama.h"

namespace kvrag {

class Tokenizer;

// One LLM layer's output heads: "key" and "value", Linear H → kvH·hd; with llm_embeddings also
// "previous_key" (Linear H → kvH·hd, no bias), which adds the previous token's LLM embedding to
// each entry's key.
class PrefixHeadImpl : public torch::nn::Module {
 public:
  PrefixHeadImpl(int64_t hidden, int64_t kv_dim, bool previous_key, torch::TensorOptions options);
  Linear key{nullptr}, value{nullptr}, previous_key{nullptr};
};
TORCH_MODULE(PrefixHead);

class KnowledgeEncoderImpl : public torch::nn::Module {
 public:
  // Parameters are allocated uninitialised in `dtype`: load a folder (load_knowledge_encoder),
  // or call init_fresh() and optionally load a BERT checkpoint into `encoder`.
  KnowledgeEncoderImpl(const KnowledgeEncoderConfig& config, torch::Dtype dtype);

  // ids, attention_mask [B, T] int64 → KVPrefix with keys/values [B, kvH, P, hd] for every LLM
  // layer. Readout "tokens": Error if T > P. llm_ids [B, T] int64 (the LLM piece of each entry,
  // -1 for none; KnowledgeTokens::llm_ids) is needed with segment_tokenizer "llm" and
  // llm_embeddings, and ignored otherwise.
  KVPrefix forward(const torch::Tensor& ids, const torch::Tensor& attention_mask,
                   const torch::Tensor& llm_ids = {});

  // Random initialisation of everything (encoder std 0.02, output heads `head_std`, small so
  // the initial prefix barely perturbs the LLM). Deterministic given `seed`.
  void init_fresh(uint64_t seed, double head_std = 0.002);

  const KnowledgeEncoderConfig& config() const { return config_; }
  // Per-layer key/value heads over x [B, P, H] (keys plus previous_key(previous) where given,
  // previous [B, P, H]); entries where keep [B, P, 1] is 0 become zero.
  KVPrefix heads(const torch::Tensor& x, const torch::Tensor& keep,
                 const torch::Tensor& previous = {});
  torch::Dtype dtype() const { return dtype_; }

  BertModel encoder{nullptr};  // parameters named like HF BertModel under "encoder."
  torch::Tensor queries;       // [P, H] (readout "queries" only, like the cross-attention)
  // "llm_embeddings" [V, H] (config llm_embeddings only; frozen): the LLM's input embedding of
  // each encoder token (the LLM pieces that spell it), or with segment_tokenizer "llm" of each
  // LLM piece (row V_llm: zeros), added to that token's entry.
  torch::Tensor llm_embeddings;
  // "cross_attention.{query,key,value,output}": the queries attend over the encoder's states,
  // with the encoder's number of heads.
  Linear cross_query{nullptr}, cross_key{nullptr}, cross_value{nullptr}, cross_output{nullptr};
  kvrag::LayerNorm norm{nullptr};
  torch::nn::ModuleList prefix_heads{nullptr};  // per LLM layer: "key", "value" Linear H → kvH·hd

 private:
  KnowledgeEncoderConfig config_;
  torch::Dtype dtype_;
};
TORCH_MODULE(KnowledgeEncoder);

// A fresh knowledge encoder for `llm` (its fingerprint) made as `options` say: its BERT part
// loaded from INIT_DIR (a BERT or retriever checkpoint folder: config.json + safetensors +
// vocab.txt; a "bert." name prefix and a pooler are allowed), the rest initialised by
// init_fresh(seed, options.head_std); with llm_embeddings the LLM's embeddings of its pieces
// (segment_tokenizer "llm": llm_embedding_table) or of the encoder's tokens
// (llm_embeddings_for_vocab, which needs `llm_tokenizer`), and the induction init.
KnowledgeEncoder init_knowledge_encoder(const std::string& init_dir,
                                        const LlamaForCausalLMImpl& llm,
                                        const Tokenizer* llm_tokenizer,
                                        const std::string& llm_fingerprint,
                                        const KnowledgeEncoderOptions& options, uint64_t seed,
                                        torch::Dtype dtype = torch::kFloat32);
// The same from a made `config` and an LLM embedding table (defined iff config.llm_embeddings;
// [V_enc, H] of the encoder's tokens, or [V_llm, H] of the LLM's pieces), without the induction
// init.
KnowledgeEncoder init_knowledge_encoder(const std::string& init_dir,
                                        const KnowledgeEncoderConfig& config, uint64_t seed,
                                        double head_std, const torch::Tensor& llm_embeddings = {},
                                        torch::Dtype dtype = torch::kFloat32);

// The induction init (see above) of every layer's previous_key from `llm`'s q_proj and input
// RMSNorm weight (query heads averaged over each kv head's group). Needs llm_embeddings.
void init_induction_keys(KnowledgeEncoderImpl& encoder, const LlamaForCausalLMImpl& llm);

// The prefix as `llm` takes it before prompts of prompt_lengths[b] tokens (BOS included): with
// key_position "answer" row b's keys placed at rotary position prompt_lengths[b] − 1, the
// position of the last prompt token, whose query writes the answer's first token (a placed prefix
// takes no positions: the prompt starts at 0, see llama.h); with "none" `prefix` itself, whose
// P entries the prompt follows at positions P, P+1, ….
KVPrefix place_for_answer(const KnowledgeEncoderConfig& config, const LlamaForCausalLMImpl& llm,
                          const KVPrefix& prefix, const std::vector<int64_t>& prompt_lengths);

// The LLM's input embeddings [V_llm, H] (embed_tokens weight) scaled so that their std is 1, the
// scale of the LayerNorm output they are added to.
torch::Tensor llm_embedding_table(const torch::Tensor& llm_rows);

// The LLM's input embedding of every token of an encoder vocabulary: a WordPiece token takes the
// mean of the LLM pieces that spell it, scaled so that the table's std is 1 (the scale of the
// LayerNorm output it is added to); tokens no piece spells get zeros. `llm_spellings[id]` is LLM
// piece id in WordPiece notation (wordpiece_spelling in text/sentencepiece_trainer.h; empty:
// none), `llm_rows` [V_llm, H] the LLM's embed_tokens weight.
torch::Tensor llm_embeddings_for_vocab(const std::vector<std::string>& encoder_vocab,
                                       const std::vector<std::string>& llm_spellings,
                                       const torch::Tensor& llm_rows);

// Loads DIR (config.json + model.safetensors); every parameter must be present with its shape.
KnowledgeEncoder load_knowledge_encoder(const std::string& dir,
                                        torch::Dtype dtype = torch::kFloat32);
// Writes config.json, model.safetensors and a copy of `vocab_path` as DIR/vocab.txt, each
// atomically; creates DIR.
void save_knowledge_encoder(const KnowledgeEncoderImpl& model, const std::string& dir,
                            const std::string& vocab_path);

// 16 hex digits identifying an LLM: a hash of its config.json and the names, shapes and dtypes
// of its safetensors tensors (not the values: cheap even for 7B).
std::string llm_fingerprint(const std::string& llm_dir);
// A knowledge encoder folder's fingerprint: its config.json and model.safetensors (every byte, as
// Fnv1a64::add_file_words reads them: a fraction of a second for a BERT-base-sized encoder), so
// that what was computed with it (a prefix store) is recognised as its own after any retraining.
std::string knowledge_encoder_fingerprint(const std::string& dir);

// Error naming what differs (layers, kv heads, head dim, fingerprint) if the encoder in
// `encoder_dir` was made for another LLM. An empty fingerprint on either side is not compared.
void check_compatible(const KnowledgeEncoderConfig& config, const LlamaConfig& llm,
                      const std::string& llm_fingerprint, const std::string& encoder_dir);

// Top-k > 1: the prefixes of the k segments of each question concatenated along P (segment
// order = rank) → [B, kvH, k·P, hd]. All must have the same layers and batch.
KVPrefix concat_prefixes(const std::vector<KVPrefix>& per_rank);

}  // namespace kvrag
