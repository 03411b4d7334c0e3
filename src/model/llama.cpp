#include "model/llama.h"

#include <limits>

#include "core/error.h"
#include "model/checkpoint.h"
#include "model/weights.h"

namespace kvrag {
namespace {

// HF rotate_half: [x1, x2] -> [-x2, x1] over the last dimension.
torch::Tensor rotate_half(const torch::Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  return torch::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

// x [B, nH, T, hd]; cos/sin [B, 1, T, hd].
torch::Tensor apply_rotary(const torch::Tensor& x, const torch::Tensor& cos,
                           const torch::Tensor& sin) {
  return x * cos + rotate_half(x) * sin;
}

}  // namespace

// --- attention ---------------------------------------------------------------------------------

LlamaAttentionImpl::LlamaAttentionImpl(const LlamaConfig& c, torch::TensorOptions options)
    : num_heads(c.num_attention_heads), num_kv_heads(c.num_key_value_heads), head_dim(c.head_dim) {
  q_proj = register_module("q_proj", Linear(c.hidden_size, num_heads * head_dim, false, options));
  k_proj = register_module("k_proj", Linear(c.hidden_size, num_kv_heads * head_dim, false, options));
  v_proj = register_module("v_proj", Linear(c.hidden_size, num_kv_heads * head_dim, false, options));
  o_proj = register_module("o_proj", Linear(num_heads * head_dim, c.hidden_size, false, options));
}

torch::Tensor LlamaAttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& cos,
                                          const torch::Tensor& sin, const torch::Tensor& past_k,
                                          const torch::Tensor& past_v, const torch::Tensor& mask,
                                          torch::Tensor* new_k, torch::Tensor* new_v) {
  const int64_t B = x.size(0), T = x.size(1);
  const int64_t H = num_heads, kvH = num_kv_heads, hd = head_dim, G = H / kvH;

  auto q = q_proj(x).view({B, T, H, hd}).transpose(1, 2);    // [B, H, T, hd]
  auto k = k_proj(x).view({B, T, kvH, hd}).transpose(1, 2);  // [B, kvH, T, hd]
  auto v = v_proj(x).view({B, T, kvH, hd}).transpose(1, 2);  // [B, kvH, T, hd]
  q = apply_rotary(q, cos, sin);
  k = apply_rotary(k, cos, sin);
  *new_k = k;
  *new_v = v;

  // Everything attended to: past entries (prefix and/or cache) followed by the new ones.
  const auto keys = past_k.defined() ? torch::cat({past_k, k}, 2) : k;    // [B, kvH, S, hd]
  const auto values = past_v.defined() ? torch::cat({past_v, v}, 2) : v;  // [B, kvH, S, hd]
  const int64_t S = keys.size(2);

  // Grouped-query attention without repeating keys: the G query heads that share kv head j
  // (heads j*G … j*G+G-1, as HF repeat_kv) are stacked along the row axis.
  const auto qg = q.reshape({B, kvH, G * T, hd});                            // [B, kvH, G*T, hd]
  auto scores = torch::matmul(qg, keys.transpose(-1, -2)).to(torch::kFloat32);  // [B, kvH, G*T, S]
  scores = scores.mul_(1.0 / std::sqrt(static_cast<double>(hd))).view({B, kvH, G, T, S});
  scores = scores + mask;                                                    // mask [B,1,1,T,S]
  const auto probs = torch::softmax(scores, -1).to(values.scalar_type()).view({B, kvH, G * T, S});
  auto out = torch::matmul(probs, values);                                   // [B, kvH, G*T, hd]
  out = out.view({B, H, T, hd}).transpose(1, 2).reshape({B, T, H * hd});     // [B, T, H*hd]
  return o_proj(out);
}

// --- MLP / layer / model -----------------------------------------------------------------------

LlamaMLPImpl::LlamaMLPImpl(const LlamaConfig& c, torch::TensorOptions options) {
  gate_proj = register_module("gate_proj", Linear(c.hidden_size, c.intermediate_size, false, options));
  up_proj = register_module("up_proj", Linear(c.hidden_size, c.intermediate_size, false, options));
  down_proj = register_module("down_proj", Linear(c.intermediate_size, c.hidden_size, false, options));
}

torch::Tensor LlamaMLPImpl::forward(const torch::Tensor& x) {
  return down_proj(torch::silu(gate_proj(x)) * up_proj(x));
}

LlamaDecoderLayerImpl::LlamaDecoderLayerImpl(const LlamaConfig& c, torch::TensorOptions options) {
  self_attn = register_module("self_attn", LlamaAttention(c, options));
  mlp = register_module("mlp", LlamaMLP(c, options));
  input_layernorm = register_module("input_layernorm", RMSNorm(c.hidden_size, c.rms_norm_eps, options));
  post_attention_layernorm =
      register_module("post_attention_layernorm", RMSNorm(c.hidden_size, c.rms_norm_eps, options));
}

LlamaModelImpl::LlamaModelImpl(const LlamaConfig& c, torch::TensorOptions options) {
  embed_tokens = register_module("embed_tokens", Embedding(c.vocab_size, c.hidden_size, options));
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) layers->push_back(LlamaDecoderLayer(c, options));
  norm = register_module("norm", RMSNorm(c.hidden_size, c.rms_norm_eps, options));
}

LlamaForCausalLMImpl::LlamaForCausalLMImpl(const LlamaConfig& config, torch::Dtype dtype)
    : config_(config), dtype_(dtype) {
  KVRAG_CHECK(dtype == torch::kFloat32 || dtype == torch::kBFloat16,
              "LLaMA compute dtype must be fp32 or bf16, not {}", c10::toString(dtype));
  const auto options = torch::TensorOptions().dtype(dtype);
  model = register_module("model", LlamaModel(config, options));
  if (!config.tie_word_embeddings) {
    lm_head = register_module("lm_head", Linear(config.hidden_size, config.vocab_size, false, options));
  }
  // inv_freq[i] = 1 / theta^(2i / hd), in fp32 as HF computes it.
  const int64_t hd = config.head_dim;
  inv_freq_ = 1.0 / torch::pow(config.rope_theta,
                               torch::arange(0, hd, 2, torch::kInt64).to(torch::kFloat32) / hd);
}

void LlamaForCausalLMImpl::freeze() {
  for (auto& p : parameters()) p.set_requires_grad(false);
}

KVCache LlamaForCausalLMImpl::new_cache(int64_t batch, int64_t capacity) const {
  KVCache cache;
  const auto options = torch::TensorOptions().dtype(dtype_);
  for (int64_t l = 0; l < config_.num_hidden_layers; ++l) {
    cache.keys.push_back(
        torch::empty({batch, config_.num_key_value_heads, capacity, config_.head_dim}, options));
    cache.values.push_back(
        torch::empty({batch, config_.num_key_value_heads, capacity, config_.head_dim}, options));
  }
  cache.valid = torch::zeros({batch, capacity}, torch::kBool);
  cache.next_position = torch::zeros({batch}, torch::kInt64);
  return cache;
}

void check_prefix(const KVPrefix& prefix, const LlamaConfig& c, int64_t batch) {
  KVRAG_CHECK(static_cast<int64_t>(prefix.keys.size()) == c.num_hidden_layers &&
                  prefix.values.size() == prefix.keys.size(),
              "prefix has {} key and {} value layers; the model has {} layers", prefix.keys.size(),
              prefix.values.size(), c.num_hidden_layers);
  const int64_t P = prefix.length();
  for (size_t l = 0; l < prefix.keys.size(); ++l) {
    for (const auto* t : {&prefix.keys[l], &prefix.values[l]}) {
      KVRAG_CHECK(t->defined() && t->dim() == 4 && (t->size(0) == batch || t->size(0) == 1) &&
                      t->size(1) == c.num_key_value_heads && t->size(2) == P &&
                      t->size(3) == c.head_dim,
                  "prefix layer {}: shape {} does not fit [B={} (or 1), kvH={}, P={}, hd={}]", l,
                  t->defined() ? c10::str(t->sizes()) : std::string("(undefined)"), batch,
                  c.num_key_value_heads, P, c.head_dim);
    }
  }
}

torch::Tensor LlamaForCausalLMImpl::hidden_states(const torch::Tensor& ids,
                                                  const LlamaForwardArgs& args) {
  KVRAG_CHECK(ids.dim() == 2 && ids.size(1) > 0, "LLaMA forward: ids must be [B, T] with T > 0, got {}",
              c10::str(ids.sizes()));
  const int64_t B = ids.size(0), T = ids.size(1);
  const int64_t L = config_.num_hidden_layers;
  KVCache* cache = args.cache;
  const KVPrefix* prefix = (args.prefix != nullptr && !args.prefix->empty()) ? args.prefix : nullptr;
  if (prefix != nullptr) check_prefix(*prefix, config_, B);
  {
    // Out-of-range ids would read past the embedding table.
    const auto [lo, hi] = torch::aminmax(ids);
    KVRAG_CHECK(lo.item<int64_t>() >= 0 && hi.item<int64_t>() < config_.vocab_size,
                "LLaMA forward: token id outside [0, {})", config_.vocab_size);
  }

  const auto tokens = args.attention_mask.defined() ? args.attention_mask.to(torch::kBool)
                                                    : torch::ones({B, T}, torch::kBool);  // [B, T]
  KVRAG_CHECK(tokens.sizes() == ids.sizes(), "LLaMA forward: attention_mask {} does not match ids {}",
              c10::str(tokens.sizes()), c10::str(ids.sizes()));

  // Entries before this call's tokens (prefix and/or cache) and their visibility.
  int64_t past = 0;
  torch::Tensor past_valid;     // [B, past] bool
  torch::Tensor base_position;  // [B] int64: position of each row's first token here
  if (cache != nullptr) {
    KVRAG_CHECK(cache->keys.size() == static_cast<size_t>(L) && cache->valid.size(0) == B,
                "LLaMA forward: cache is for another model or batch size");
    if (prefix != nullptr) {
      KVRAG_CHECK(cache->length == 0, "LLaMA forward: a prefix can only be given on the first call "
                                      "with a cache");
      const int64_t P = prefix->length();
      KVRAG_CHECK(P + T <= cache->capacity(), "LLaMA forward: cache capacity {} < {} entries",
                  cache->capacity(), P + T);
      torch::NoGradGuard no_grad;
      for (int64_t l = 0; l < L; ++l) {
        cache->keys[l].narrow(2, 0, P).copy_(prefix->keys[l].expand({B, -1, -1, -1}));
        cache->values[l].narrow(2, 0, P).copy_(prefix->values[l].expand({B, -1, -1, -1}));
      }
      cache->valid.narrow(1, 0, P).fill_(true);
      cache->next_position.fill_(P);
      cache->length = P;
    }
    KVRAG_CHECK(cache->length + T <= cache->capacity(),
                "LLaMA forward: cache capacity {} exceeded ({} + {} entries)", cache->capacity(),
                cache->length, T);
    past = cache->length;
    past_valid = cache->valid.narrow(1, 0, past);
    base_position = cache->next_position.clone();
  } else {
    past = prefix != nullptr ? prefix->length() : 0;
    past_valid = torch::ones({B, past}, torch::kBool);
    base_position = torch::full({B}, past, torch::kInt64);
  }
  const int64_t S = past + T;

  // Rotary positions: padding takes no position, so row b's tokens count on from its base.
  const auto counts = tokens.to(torch::kInt64).cumsum(1);                          // [B, T]
  const auto positions = (base_position.unsqueeze(1) + counts - 1).clamp_min(0);  // [B, T]
  const auto freqs = positions.to(torch::kFloat32).unsqueeze(-1) * inv_freq_;     // [B, T, hd/2]
  const auto emb = torch::cat({freqs, freqs}, -1);                                 // [B, T, hd]
  const auto cos = emb.cos().to(dtype_).unsqueeze(1);                              // [B, 1, T, hd]
  const auto sin = emb.sin().to(dtype_).unsqueeze(1);

  // Additive mask [B, 1, 1, T, S]: causal over entry indices, padding keys hidden. Query i sits
  // at entry past + i; every past entry precedes it.
  const auto key_valid = torch::cat({past_valid, tokens}, 1);                       // [B, S]
  const auto query_index = torch::arange(past, S, torch::kInt64).unsqueeze(1);      // [T, 1]
  const auto key_index = torch::arange(0, S, torch::kInt64).unsqueeze(0);           // [1, S]
  const auto allowed = (key_index <= query_index).unsqueeze(0) & key_valid.unsqueeze(1);  // [B,T,S]
  const auto mask = torch::zeros({B, T, S}, torch::kFloat32)
                        .masked_fill_(allowed.logical_not(), std::numeric_limits<float>::lowest())
                        .view({B, 1, 1, T, S});

  auto x = model->embed_tokens(ids);  // [B, T, H]
  for (int64_t l = 0; l < L; ++l) {
    auto& layer = model->layers->at<LlamaDecoderLayerImpl>(l);
    torch::Tensor past_k, past_v;
    if (cache != nullptr) {
      if (past > 0) {
        past_k = cache->keys[l].narrow(2, 0, past);
        past_v = cache->values[l].narrow(2, 0, past);
      }
    } else if (prefix != nullptr) {
      past_k = prefix->keys[l].to(dtype_).expand({B, -1, -1, -1});
      past_v = prefix->values[l].to(dtype_).expand({B, -1, -1, -1});
    }
    torch::Tensor new_k, new_v;
    x = x + layer.self_attn(layer.input_layernorm(x), cos, sin, past_k, past_v, mask, &new_k, &new_v);
    x = x + layer.mlp(layer.post_attention_layernorm(x));
    if (cache != nullptr) {
      torch::NoGradGuard no_grad;
      cache->keys[l].narrow(2, past, T).copy_(new_k);
      cache->values[l].narrow(2, past, T).copy_(new_v);
    }
  }
  if (cache != nullptr) {
    cache->valid.narrow(1, past, T).copy_(tokens);
    cache->next_position += tokens.sum(1);
    cache->length = S;
  }
  return model->norm(x);
}

torch::Tensor LlamaForCausalLMImpl::logits(const torch::Tensor& hidden) {
  const auto& w = lm_head ? lm_head->weight : model->embed_tokens->weight;  // [V, H]
  return torch::nn::functional::linear(hidden, w).to(torch::kFloat32);
}

torch::Tensor LlamaForCausalLMImpl::forward(const torch::Tensor& ids, const LlamaForwardArgs& args) {
  return logits(hidden_states(ids, args));
}

LlamaForCausalLM load_llama(const std::string& dir, torch::Dtype dtype) {
  const auto config = LlamaConfig::load(dir + "/config.json");
  const auto checkpoint = Checkpoint::open(dir);
  LlamaForCausalLM model(config, dtype);
  load_parameters(*model, checkpoint);
  model->eval();
  return model;
}

}  // namespace kvrag
