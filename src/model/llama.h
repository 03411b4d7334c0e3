// The LLaMA decoder (LlamaForCausalLM) with key/value prefixes and a KV cache.
//
// Parameter names match Hugging Face checkpoints exactly ("model.layers.0.self_attn.q_proj.weight"
// …), so weights load by name and trained models save in the same layout.
//
// Dynamic prefix. A prefix is, for every layer, P key and P value vectors per kv head, in the HF
// past_key_values convention: prepended to that layer's keys/values with no rotary embedding
// applied; the input tokens then take positions P, P+1, … and attend to all P prefix entries
// plus their causal past. A placed prefix (place_prefix: keys already rotated at a position) takes
// no positions: the tokens start at 0, so any number of placed entries leaves the LLM's context
// to the prompt and the answer. Gradients flow into prefix tensors that require grad while the
// model's own parameters stay frozen (see freeze()).
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "checkpoint/model_config.h"
#include "model/layers.h"

namespace kvrag {

// Per-layer prefix keys and values: keys[l], values[l] are [B, kvH, P, hd]. B may be 1 to share
// one prefix across the batch.
struct KVPrefix {
  std::vector<torch::Tensor> keys;
  std::vector<torch::Tensor> values;
  bool placed = false;  // keys rotated at their positions (place_prefix): they take none

  int64_t length() const { return keys.empty() ? 0 : keys[0].size(2); }
  // Rotary positions the entries take before the first token: P, or 0 when placed.
  int64_t positions() const { return placed ? 0 : length(); }
  bool empty() const { return keys.empty(); }
};

// The keys and values of everything seen so far, for incremental decoding. Allocated once with
// room for `capacity` entries; prefix entries (if any) come first.
struct KVCache {
  std::vector<torch::Tensor> keys;    // per layer [B, kvH, capacity, hd]
  std::vector<torch::Tensor> values;  // per layer [B, kvH, capacity, hd]
  torch::Tensor valid;                // [B, capacity] bool: entry may be attended (not padding)
  torch::Tensor next_position;        // [B] int64: rotary position of each row's next token
  int64_t length = 0;                 // entries filled
  int64_t capacity() const { return keys.empty() ? 0 : keys[0].size(2); }
};

class LlamaAttentionImpl : public torch::nn::Module {
 public:
  LlamaAttentionImpl(const LlamaConfig& config, torch::TensorOptions options);

  // x [B, T, H]; cos/sin [B, 1, T, hd] in x's dtype; past_k/past_v [B, kvH, S0, hd] or undefined
  // (entries before x: prefix and/or cache); mask [B, 1, T, S0 + T] additive fp32 (attention(),
  // ops/attention.h).
  // Returns [B, T, H]; the new keys/values [B, kvH, T, hd] in new_k/new_v.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                        const torch::Tensor& past_k, const torch::Tensor& past_v,
                        const torch::Tensor& mask, torch::Tensor* new_k, torch::Tensor* new_v);

  Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};
  int64_t num_heads, num_kv_heads, head_dim;
};
TORCH_MODULE(LlamaAttention);

// SwiGLU: down(silu(gate(x)) * up(x)).
class LlamaMLPImpl : public torch::nn::Module {
 public:
  LlamaMLPImpl(const LlamaConfig& config, torch::TensorOptions options);
  torch::Tensor forward(const torch::Tensor& x);

  Linear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};
};
TORCH_MODULE(LlamaMLP);

class LlamaDecoderLayerImpl : public torch::nn::Module {
 public:
  LlamaDecoderLayerImpl(const LlamaConfig& config, torch::TensorOptions options);

  LlamaAttention self_attn{nullptr};
  LlamaMLP mlp{nullptr};
  RMSNorm input_layernorm{nullptr}, post_attention_layernorm{nullptr};
};
TORCH_MODULE(LlamaDecoderLayer);

// "model.*": embeddings, layers, final norm.
class LlamaModelImpl : public torch::nn::Module {
 public:
  LlamaModelImpl(const LlamaConfig& config, torch::TensorOptions options);

  Embedding embed_tokens{nullptr};
  torch::nn::ModuleList layers{nullptr};
  RMSNorm norm{nullptr};
};
TORCH_MODULE(LlamaModel);

struct LlamaForwardArgs {
  const KVPrefix* prefix = nullptr;  // only without cache, or on the cache's first call
  KVCache* cache = nullptr;          // appended to; entries are reused by later calls
  torch::Tensor attention_mask;      // [B, T] 1 = token, 0 = padding; undefined = all tokens
  // Where given (inference only): each layer's attention probabilities [B, H, T, S] fp32 over
  // the S entries before and of this call (prefix first), appended in layer order. For
  // attributing an answer to the prefix entries it read (qa/answerer.h citations).
  std::vector<torch::Tensor>* attention_probs = nullptr;
};

struct ForwardLayout;  // llama.cpp: one call's positions and attention visibility

class LlamaForCausalLMImpl : public torch::nn::Module {
 public:
  // Parameters are allocated uninitialised in `dtype`: load a checkpoint (load_llama) or call
  // init_parameters(). kFloat32 or kBFloat16: every weight and the computation in that dtype.
  // kInt8: weight-only int8 (LinearImpl, model/layers.h) for every linear layer whose input
  // size is a multiple of 32 — lm_head included when it is not tied, being the largest matrix a
  // decode step reads — and fp32 for everything else and the computation. A tied lm_head stays
  // the fp32 embedding table: the lookup needs float rows, and a second, int8 copy would add
  // memory for a gain on one matrix.
  LlamaForCausalLMImpl(const LlamaConfig& config, torch::Dtype dtype);

  // ids [B, T] int64 → logits [B, T, V] fp32.
  //
  // Two paths compute the same function. When autograd must record (grad mode on and a
  // parameter or prefix tensor requires grad) it is made of differentiable torch ops. Otherwise
  // (inference: NoGradGuard / InferenceMode, or everything frozen) keys and values are written
  // straight into the cache (a temporary one without `cache`), rotary embedding and RMSNorm are
  // fused loops, and a decode step (T = 1) attends with a direct loop over the cache.
  torch::Tensor forward(const torch::Tensor& ids, const LlamaForwardArgs& args = {});
  // Final hidden states [B, T, H] (before lm_head), same arguments.
  torch::Tensor hidden_states(const torch::Tensor& ids, const LlamaForwardArgs& args = {});
  // hidden [.., H] → logits [.., V] fp32.
  torch::Tensor logits(const torch::Tensor& hidden);

  // `prefix` with row b's keys rotated as keys at rotary position positions[b] (every entry of a
  // row at the same position; values unchanged) → keys [B, kvH, P, hd]. A cache holds keys
  // already rotated; a knowledge encoder makes position-free keys, and placing them at the
  // position of the query that writes the answer's first token makes their scores independent of
  // how long the question is (knowledge_encoder.h). Differentiable.
  KVPrefix place_prefix(const KVPrefix& prefix, const std::vector<int64_t>& positions) const;

  // An empty cache for `batch` rows with room for `capacity` entries (prefix included).
  KVCache new_cache(int64_t batch, int64_t capacity) const;

  // Stops gradients to the model's own parameters (the prefix may still require grad).
  void freeze();

  const LlamaConfig& config() const { return config_; }
  // The compute dtype: activations, caches and prefixes (kFloat32 for int8 weights).
  torch::Dtype dtype() const { return dtype_; }
  // The dtype the model was made with: kFloat32, kBFloat16 or kInt8.
  torch::Dtype weight_dtype() const { return weight_dtype_; }

  LlamaModel model{nullptr};
  Linear lm_head{nullptr};  // null when tie_word_embeddings

 private:
  // Rotary tables covering positions [0, n): rope_cos_/rope_sin_, or (beyond
  // max_position_embeddings, for a larger cache) tables computed for the call.
  void rope_tables(int64_t n, torch::Tensor* cos, torch::Tensor* sin) const;
  torch::Tensor inference_hidden_states(const torch::Tensor& ids, const ForwardLayout& layout,
                                        KVCache& cache);
  torch::Tensor autograd_hidden_states(const torch::Tensor& ids, const ForwardLayout& layout,
                                       const KVPrefix* prefix, KVCache* cache);

  LlamaConfig config_;
  torch::Dtype dtype_;
  torch::Dtype weight_dtype_;
  torch::Tensor inv_freq_;  // [hd/2] fp32, rotary frequencies
  // cos/sin of the rotary angles position · inv_freq for positions [0, max_position_embeddings),
  // [n, hd] fp32 (the two halves repeat, as HF's cat(freqs, freqs)): looked up by position
  // instead of recomputed every call.
  torch::Tensor rope_cos_, rope_sin_;
};
TORCH_MODULE(LlamaForCausalLM);

// Loads DIR (config.json + safetensors) in `dtype` (see LlamaForCausalLMImpl). Every parameter
// must be present with the shape config.json implies; errors name the file and tensor. With
// kInt8 each linear weight is quantized as it is read (load_q8_weights, model/weights.h): the
// peak is the int8 weights plus the fp32 rest, never a float copy of the whole model.
LlamaForCausalLM load_llama(const std::string& dir, torch::Dtype dtype = torch::kFloat32);

// `kvrag quantize`: writes the int8 model of DIR (load_llama(dir, kInt8)) as a new folder OUT:
// DIR's other files (config.json, the tokenizer, …) copied, and one model.safetensors with the
// int8 weights saved as load_q8_weights reads them (model/weights.h) and the rest in fp32, as the
// int8 model holds it. load_llama(OUT, kInt8) then computes exactly what load_llama(DIR, kInt8)
// does, without quantizing. OUT must not exist (Error otherwise: nothing is overwritten); it
// appears whole or not at all (written beside it, then renamed). Returns the int8 weights saved.
int64_t write_int8_llama(const std::string& dir, const std::string& out);

// Checks that `prefix` fits `config` for a batch of `batch` rows; throws Error otherwise.
void check_prefix(const KVPrefix& prefix, const LlamaConfig& config, int64_t batch);

}  // namespace kvrag
