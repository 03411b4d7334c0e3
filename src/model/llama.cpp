#include "model/llama.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <limits>

#include "checkpoint/checkpoint.h"
#include "checkpoint/model_folder.h"
#include "core/error.h"
#include "model/weights.h"
#include "ops/attention.h"
#include "ops/rotary.h"

namespace kvrag {

// One forward call's bookkeeping, computed on the host: which entries each row may attend to
// and the rotary position of each new token. Entries are the S = past + T keys of a layer:
// `past` earlier ones (prefix and/or cache) followed by this call's T tokens.
struct ForwardLayout {
  int64_t B = 0, T = 0, past = 0, S = 0;
  std::vector<uint8_t> tokens;     // [B, T]: 1 = token, 0 = padding
  std::vector<uint8_t> key_valid;  // [B, S]: entry may be attended (not padding)
  std::vector<int64_t> positions;  // [B, T]: rotary position (padding takes none)
  torch::Tensor cos, sin;          // [n, hd] fp32 rotary tables covering every position here
  std::vector<torch::Tensor>* attention_probs = nullptr;  // LlamaForwardArgs::attention_probs

  // Additive mask [B, 1, T, S] fp32 (for attention()): causal over entry indices (query t sits
  // at entry past + t; every past entry precedes it), padding keys hidden.
  torch::Tensor mask() const {
    auto m = torch::empty({B, 1, T, S}, torch::kFloat32);
    float* p = m.data_ptr<float>();
    const float hidden = std::numeric_limits<float>::lowest();
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t t = 0; t < T; ++t, p += S) {
        for (int64_t s = 0; s < S; ++s)
          p[s] = key_valid[b * S + s] && s <= past + t ? 0.0f : hidden;
      }
    }
    return m;
  }
  torch::Tensor positions_tensor() const {  // [B, T] int64
    return torch::from_blob(const_cast<int64_t*>(positions.data()), {B, T}, torch::kInt64).clone();
  }
};

namespace {

// The layer's attention on the inference path. x [B, T, H]; keys/values of this call go into
// cache layer `l` at entries [past, past+T), and the T queries attend over entries [0, S).
torch::Tensor cached_attention(LlamaAttentionImpl& a, const torch::Tensor& x,
                               const ForwardLayout& lay, KVCache& cache, int64_t l) {
  const int64_t B = lay.B, T = lay.T, H = a.num_heads, hd = a.head_dim;
  const auto q = a.q_proj(x).contiguous();  // [B, T, H*hd]
  const auto k = a.k_proj(x).contiguous();  // [B, T, kvH*hd]
  const auto v = a.v_proj(x).contiguous();  // [B, T, kvH*hd]
  const auto& kc = cache.keys[l];           // [B, kvH, capacity, hd]
  const auto& vc = cache.values[l];
  // The fused ops read the projections' [B, T, heads*hd] layout as is: no views on the decode path.
  rotary_inplace(q, lay.positions, lay.cos, lay.sin);
  rotary_inplace(k, lay.positions, lay.cos, lay.sin);
  write_cache(k, kc, lay.past);
  write_cache(v, vc, lay.past);
  if (T == 1 && lay.attention_probs == nullptr)
    return a.o_proj(decode_attention(q, kc, vc, lay.key_valid));  // [B, 1, H*hd]
  const auto q4 = q.view({B, T, H, hd}).transpose(1, 2);          // [B, H, T, hd]
  torch::Tensor probs;                                            // [B, H, T, S] fp32
  // [B, T, H]
  const auto y = a.o_proj(attention(q4, kc.narrow(2, 0, lay.S), vc.narrow(2, 0, lay.S), lay.mask(),
                                    {}, lay.attention_probs != nullptr ? &probs : nullptr));
  if (lay.attention_probs != nullptr) lay.attention_probs->push_back(probs);
  return y;
}

}  // namespace

// --- attention ---------------------------------------------------------------------------------

LlamaAttentionImpl::LlamaAttentionImpl(const LlamaConfig& c, torch::TensorOptions options)
    : num_heads(c.num_attention_heads), num_kv_heads(c.num_key_value_heads), head_dim(c.head_dim) {
  q_proj = register_module("q_proj", Linear(c.hidden_size, num_heads * head_dim, false, options));
  k_proj =
      register_module("k_proj", Linear(c.hidden_size, num_kv_heads * head_dim, false, options));
  v_proj =
      register_module("v_proj", Linear(c.hidden_size, num_kv_heads * head_dim, false, options));
  o_proj = register_module("o_proj", Linear(num_heads * head_dim, c.hidden_size, false, options));
}

torch::Tensor LlamaAttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& cos,
                                          const torch::Tensor& sin, const torch::Tensor& past_k,
                                          const torch::Tensor& past_v, const torch::Tensor& mask,
                                          torch::Tensor* new_k, torch::Tensor* new_v) {
  const int64_t B = x.size(0), T = x.size(1);
  const int64_t H = num_heads, kvH = num_kv_heads, hd = head_dim;

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
  return o_proj(attention(q, keys, values, mask));                        // [B, T, H]
}

// --- MLP / layer / model -----------------------------------------------------------------------

LlamaMLPImpl::LlamaMLPImpl(const LlamaConfig& c, torch::TensorOptions options) {
  gate_proj =
      register_module("gate_proj", Linear(c.hidden_size, c.intermediate_size, false, options));
  up_proj = register_module("up_proj", Linear(c.hidden_size, c.intermediate_size, false, options));
  down_proj =
      register_module("down_proj", Linear(c.intermediate_size, c.hidden_size, false, options));
}

torch::Tensor LlamaMLPImpl::forward(const torch::Tensor& x) {
  if (!torch::GradMode::is_enabled()) {  // same values, without the two temporaries
    auto h = gate_proj(x);
    return down_proj(torch::silu_(h).mul_(up_proj(x)));
  }
  return down_proj(torch::silu(gate_proj(x)) * up_proj(x));
}

LlamaDecoderLayerImpl::LlamaDecoderLayerImpl(const LlamaConfig& c, torch::TensorOptions options) {
  self_attn = register_module("self_attn", LlamaAttention(c, options));
  mlp = register_module("mlp", LlamaMLP(c, options));
  const auto norm_options = non_linear_options(options);
  input_layernorm =
      register_module("input_layernorm", RMSNorm(c.hidden_size, c.rms_norm_eps, norm_options));
  post_attention_layernorm = register_module("post_attention_layernorm",
                                             RMSNorm(c.hidden_size, c.rms_norm_eps, norm_options));
}

LlamaModelImpl::LlamaModelImpl(const LlamaConfig& c, torch::TensorOptions options) {
  embed_tokens = register_module(
      "embed_tokens", Embedding(c.vocab_size, c.hidden_size, non_linear_options(options)));
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_hidden_layers; ++i)
    layers->push_back(LlamaDecoderLayer(c, options));
  norm =
      register_module("norm", RMSNorm(c.hidden_size, c.rms_norm_eps, non_linear_options(options)));
}

LlamaForCausalLMImpl::LlamaForCausalLMImpl(const LlamaConfig& config, torch::Dtype dtype)
    : config_(config),
      dtype_(dtype == torch::kInt8 ? torch::kFloat32 : dtype),
      weight_dtype_(dtype) {
  KVRAG_CHECK(dtype == torch::kFloat32 || dtype == torch::kBFloat16 || dtype == torch::kInt8,
              "LLaMA dtype must be fp32, bf16 or int8, not {}", c10::toString(dtype));
  const auto options = torch::TensorOptions().dtype(dtype);  // kInt8: see LinearImpl
  model = register_module("model", LlamaModel(config, options));
  if (!config.tie_word_embeddings) {
    lm_head =
        register_module("lm_head", Linear(config.hidden_size, config.vocab_size, false, options));
  }
  inv_freq_ = rope_inv_freq(config.rope_theta, config.head_dim);
  rope_tables(config.max_position_embeddings, &rope_cos_, &rope_sin_);
}

void LlamaForCausalLMImpl::rope_tables(int64_t n, torch::Tensor* cos, torch::Tensor* sin) const {
  if (rope_cos_.defined() && rope_cos_.size(0) >= n) {
    *cos = rope_cos_;
    *sin = rope_sin_;
    return;
  }
  kvrag::rope_tables(inv_freq_, n, cos, sin);
}

KVPrefix LlamaForCausalLMImpl::place_prefix(const KVPrefix& prefix,
                                            const std::vector<int64_t>& positions) const {
  const int64_t B = static_cast<int64_t>(positions.size()), hd = config_.head_dim;
  KVRAG_CHECK(B > 0, "place_prefix: no positions");
  int64_t max_position = 0;
  for (const auto p : positions) {
    KVRAG_CHECK(p >= 0, "place_prefix: negative position {}", p);
    max_position = std::max(max_position, p);
  }
  torch::Tensor cos, sin;
  rope_tables(max_position + 1, &cos, &sin);
  const auto index = torch::tensor(positions, torch::kInt64);
  cos = cos.index_select(0, index).view({B, 1, 1, hd});  // [B, 1, 1, hd]
  sin = sin.index_select(0, index).view({B, 1, 1, hd});
  KVPrefix out;
  out.values = prefix.values;
  out.placed = true;
  for (const auto& k : prefix.keys) {
    KVRAG_CHECK(k.dim() == 4 && (k.size(0) == B || k.size(0) == 1) && k.size(3) == hd,
                "place_prefix: keys of shape {} do not fit {} rows of head dim {}",
                shape_string(k.sizes().vec()), B, hd);
    // [B, kvH, P, hd]
    out.keys.push_back(apply_rotary(k, cos.to(k.scalar_type()), sin.to(k.scalar_type())));
  }
  if (!out.keys.empty() && out.keys[0].size(0) != prefix.values[0].size(0)) {
    for (auto& v : out.values) v = v.expand({B, -1, -1, -1});
  }
  return out;
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
  KVRAG_CHECK(ids.dim() == 2 && ids.size(1) > 0,
              "LLaMA forward: ids must be [B, T] with T > 0, got {}", c10::str(ids.sizes()));
  const int64_t B = ids.size(0), T = ids.size(1);
  const int64_t L = config_.num_hidden_layers;
  KVCache* cache = args.cache;
  const KVPrefix* prefix =
      (args.prefix != nullptr && !args.prefix->empty()) ? args.prefix : nullptr;
  if (prefix != nullptr) check_prefix(*prefix, config_, B);
  // Out-of-range ids would read past the embedding table. (On the host when ids live there: a
  // reduction plus two .item() calls cost more than a whole decode step of a small model.)
  if (ids.is_cpu() && ids.scalar_type() == torch::kInt64 && ids.is_contiguous()) {
    const int64_t* p = ids.data_ptr<int64_t>();
    const auto [lo, hi] = std::minmax_element(p, p + ids.numel());
    KVRAG_CHECK(*lo >= 0 && *hi < config_.vocab_size, "LLaMA forward: token id outside [0, {})",
                config_.vocab_size);
  } else {
    const auto [lo, hi] = torch::aminmax(ids);
    KVRAG_CHECK(lo.item<int64_t>() >= 0 && hi.item<int64_t>() < config_.vocab_size,
                "LLaMA forward: token id outside [0, {})", config_.vocab_size);
  }

  ForwardLayout lay;
  lay.B = B;
  lay.T = T;
  lay.tokens.assign(B * T, 1);
  if (args.attention_mask.defined()) {
    KVRAG_CHECK(args.attention_mask.sizes() == ids.sizes(),
                "LLaMA forward: attention_mask {} does not match ids {}",
                c10::str(args.attention_mask.sizes()), c10::str(ids.sizes()));
    const auto m = args.attention_mask.to(torch::kCPU, torch::kInt64).contiguous();
    const int64_t* p = m.data_ptr<int64_t>();
    for (int64_t i = 0; i < B * T; ++i) lay.tokens[i] = p[i] != 0;
  }

  // The autograd path is needed only when a gradient could flow somewhere.
  bool record = false;
  if (torch::GradMode::is_enabled()) {
    for (const auto& p : parameters()) record = record || p.requires_grad();
    if (prefix != nullptr) {
      for (const auto* v : {&prefix->keys, &prefix->values}) {
        for (const auto& t : *v) record = record || t.requires_grad();
      }
    }
  }
  KVRAG_CHECK(!record || args.attention_probs == nullptr,
              "LLaMA forward: attention probabilities are kept on the inference path only");
  lay.attention_probs = args.attention_probs;
  // Inference without a cache uses a temporary one: keys and values are written once and
  // attended in place.
  KVCache scratch;
  if (!record && cache == nullptr) {
    scratch = new_cache(B, (prefix != nullptr ? prefix->length() : 0) + T);
    cache = &scratch;
  }

  // Entries before this call's tokens (prefix and/or cache), their visibility and positions.
  std::vector<int64_t> base_position(B);  // position of each row's first token here
  if (cache != nullptr) {
    KVRAG_CHECK(cache->keys.size() == static_cast<size_t>(L) && cache->valid.size(0) == B &&
                    cache->valid.is_contiguous() && cache->next_position.is_contiguous(),
                "LLaMA forward: cache is for another model or batch size");
    if (prefix != nullptr) {
      KVRAG_CHECK(cache->length == 0,
                  "LLaMA forward: a prefix can only be given on the first call with a cache");
      const int64_t P = prefix->length();
      KVRAG_CHECK(P + T <= cache->capacity(), "LLaMA forward: cache capacity {} < {} entries",
                  cache->capacity(), P + T);
      torch::NoGradGuard no_grad;
      for (int64_t l = 0; l < L; ++l) {
        cache->keys[l].narrow(2, 0, P).copy_(prefix->keys[l].expand({B, -1, -1, -1}));
        cache->values[l].narrow(2, 0, P).copy_(prefix->values[l].expand({B, -1, -1, -1}));
      }
      cache->valid.narrow(1, 0, P).fill_(true);
      cache->next_position.fill_(prefix->positions());
      cache->length = P;
    }
    KVRAG_CHECK(cache->length + T <= cache->capacity(),
                "LLaMA forward: cache capacity {} exceeded ({} + {} entries)", cache->capacity(),
                cache->length, T);
    lay.past = cache->length;
    lay.S = lay.past + T;
    lay.key_valid.resize(B * lay.S);
    const bool* valid = cache->valid.data_ptr<bool>();  // [B, capacity]
    const int64_t* next = cache->next_position.data_ptr<int64_t>();
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t s = 0; s < lay.past; ++s)
        lay.key_valid[b * lay.S + s] = valid[b * cache->capacity() + s];
      base_position[b] = next[b];
    }
  } else {
    lay.past = prefix != nullptr ? prefix->length() : 0;
    lay.S = lay.past + T;
    lay.key_valid.assign(B * lay.S, 1);
    std::fill(base_position.begin(), base_position.end(),
              prefix != nullptr ? prefix->positions() : 0);
  }
  // Rotary positions: padding takes no position, so row b's tokens count on from its base.
  lay.positions.resize(B * T);
  int64_t max_position = 0;
  for (int64_t b = 0; b < B; ++b) {
    int64_t count = 0;
    for (int64_t t = 0; t < T; ++t) {
      const uint8_t tok = lay.tokens[b * T + t];
      count += tok;
      lay.positions[b * T + t] = std::max<int64_t>(0, base_position[b] + count - 1);
      max_position = std::max(max_position, lay.positions[b * T + t]);
      lay.key_valid[b * lay.S + lay.past + t] = tok;
    }
  }
  rope_tables(max_position + 1, &lay.cos, &lay.sin);

  auto out = record ? autograd_hidden_states(ids, lay, prefix, cache)
                    : inference_hidden_states(ids, lay, *cache);
  if (cache != nullptr) {
    bool* valid = cache->valid.data_ptr<bool>();
    int64_t* next = cache->next_position.data_ptr<int64_t>();
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t t = 0; t < T; ++t) {
        valid[b * cache->capacity() + lay.past + t] = lay.tokens[b * T + t];
        next[b] += lay.tokens[b * T + t];
      }
    }
    cache->length = lay.S;
  }
  return out;
}

torch::Tensor LlamaForCausalLMImpl::inference_hidden_states(const torch::Tensor& ids,
                                                            const ForwardLayout& lay,
                                                            KVCache& cache) {
  for (int64_t l = 0; l < config_.num_hidden_layers; ++l) {
    KVRAG_CHECK(cache.keys[l].is_contiguous() && cache.values[l].is_contiguous() &&
                    cache.keys[l].scalar_type() == dtype_ &&
                    cache.values[l].scalar_type() == dtype_,
                "LLaMA forward: cache tensors must be contiguous and of the model's dtype");
  }
  // Several tokens: matrix products, their threads as ForwardThreadsGuard says. A decode step's
  // products (at most kGemvMaxRows rows) run on kvrag's helper threads (linear(), q8_matmul), so
  // its elementwise ops run inline: with several rows ([8, 5632] in a 1.1B MLP) libtorch ran them
  // on its OpenMP team, whose workers then spun on the cores the helpers needed (perf of a batch-8
  // bf16 decode: 33% of the samples in libgomp).
  const bool decode_step = lay.B * lay.T <= kGemvMaxRows;
  ForwardThreadsGuard threads(!decode_step, weight_dtype_);
  HelperThreadsGuard decode_threads(decode_step);
  auto x = model->embed_tokens(ids);  // [B, T, H]
  for (int64_t l = 0; l < config_.num_hidden_layers; ++l) {
    auto& layer = model->layers->at<LlamaDecoderLayerImpl>(l);
    x = x + cached_attention(*layer.self_attn, layer.input_layernorm(x), lay, cache, l);
    x = x + layer.mlp(layer.post_attention_layernorm(x));
  }
  return model->norm(x);
}

torch::Tensor LlamaForCausalLMImpl::autograd_hidden_states(const torch::Tensor& ids,
                                                           const ForwardLayout& lay,
                                                           const KVPrefix* prefix, KVCache* cache) {
  const int64_t B = lay.B, T = lay.T, past = lay.past, hd = config_.head_dim;
  const auto positions = lay.positions_tensor().view({-1});
  const auto cos = lay.cos.index_select(0, positions).view({B, 1, T, hd}).to(dtype_);  // [B,1,T,hd]
  const auto sin = lay.sin.index_select(0, positions).view({B, 1, T, hd}).to(dtype_);
  const auto mask = lay.mask();  // [B, 1, T, S]

  auto x = model->embed_tokens(ids);  // [B, T, H]
  for (int64_t l = 0; l < config_.num_hidden_layers; ++l) {
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
    x = x +
        layer.self_attn(layer.input_layernorm(x), cos, sin, past_k, past_v, mask, &new_k, &new_v);
    x = x + layer.mlp(layer.post_attention_layernorm(x));
    if (cache != nullptr) {
      torch::NoGradGuard no_grad;
      cache->keys[l].narrow(2, past, T).copy_(new_k);
      cache->values[l].narrow(2, past, T).copy_(new_v);
    }
  }
  return model->norm(x);
}

torch::Tensor LlamaForCausalLMImpl::logits(const torch::Tensor& hidden) {
  // [.., V]; tied: the embedding table [V, H] is the weight
  const auto out = lm_head ? lm_head(hidden) : kvrag::linear(hidden, model->embed_tokens->weight);
  return out.to(torch::kFloat32);
}

torch::Tensor LlamaForCausalLMImpl::forward(const torch::Tensor& ids,
                                            const LlamaForwardArgs& args) {
  return logits(hidden_states(ids, args));
}

LlamaForCausalLM load_llama(const std::string& dir, torch::Dtype dtype) {
  check_model_folder(dir, {ModelFolder::kLlama});
  const auto config = LlamaConfig::load(dir + "/config.json");
  const auto checkpoint = Checkpoint::open(dir);
  LlamaForCausalLM model(config, dtype);
  load_parameters(*model, checkpoint);  // everything but int8 weights
  if (dtype == torch::kInt8) load_q8_weights(*model, checkpoint);
  model->eval();
  return model;
}

int64_t write_int8_llama(const std::string& dir, const std::string& out) {
  namespace fs = std::filesystem;
  std::error_code ec;
  KVRAG_CHECK(!fs::exists(out, ec), "{}: already exists; quantize writes a new folder", out);
  const auto model = load_llama(dir, torch::kInt8);
  int64_t saved = 0;
  const fs::path partial = out + ".partial-" + std::to_string(::getpid());
  try {
    fs::create_directories(partial);
    for (const auto& entry : fs::directory_iterator(dir)) {
      const std::string name = entry.path().filename().string();
      const bool weights =
          entry.path().extension() == ".safetensors" || name == Checkpoint::kIndexFile;
      if (entry.is_regular_file() && !weights) fs::copy_file(entry.path(), partial / name);
    }
    saved = save_q8_parameters(
        *model, (partial / Checkpoint::kSingleFile).string(),
        {{"format", "pt"}, {"kvrag_int8", "q8_0: groups of 32 along in, fp32 scales"}});
    fs::rename(partial, out);
  } catch (const fs::filesystem_error& e) {
    fs::remove_all(partial, ec);
    fail("quantize {} into {}: {}", dir, out, e.what());
  } catch (...) {
    fs::remove_all(partial, ec);
    throw;
  }
  return saved;
}

}  // namespace kvrag
