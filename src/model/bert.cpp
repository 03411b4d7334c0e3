#include "model/bert.h"

#include <limits>

#include "checkpoint/checkpoint.h"
#include "checkpoint/model_folder.h"
#include "core/error.h"
#include "model/weights.h"
#include "ops/attention.h"

namespace kvrag {
namespace {

// How BERT's int8 linears multiply many rows where the CPU lacks AVX-512 VNNI: 7-bit codes per row
// of x (Q8ManyRows), ~1.7× fp32's rate on AVX2 where dequantized tiles run at 1.0×. Its forward's
// threads follow the same choice (ForwardThreadsGuard).
constexpr Q8ManyRows kManyRows = Q8ManyRows::kRowCodes;

}  // namespace

BertEmbeddingsImpl::BertEmbeddingsImpl(const BertConfig& c, torch::TensorOptions options) {
  options = non_linear_options(options);
  word_embeddings =
      register_module("word_embeddings", Embedding(c.vocab_size, c.hidden_size, options));
  position_embeddings = register_module(
      "position_embeddings", Embedding(c.max_position_embeddings, c.hidden_size, options));
  token_type_embeddings = register_module("token_type_embeddings",
                                          Embedding(c.type_vocab_size, c.hidden_size, options));
  LayerNorm =
      register_module("LayerNorm", kvrag::LayerNorm(c.hidden_size, c.layer_norm_eps, options));
}

torch::Tensor BertEmbeddingsImpl::forward(const torch::Tensor& ids,
                                          const torch::Tensor& token_type_ids) {
  const int64_t T = ids.size(1);
  const auto positions = torch::arange(T, torch::kInt64).unsqueeze(0);  // [1, T]
  auto x =
      word_embeddings(ids) + token_type_embeddings(token_type_ids) + position_embeddings(positions);
  return LayerNorm(x);  // dropout: none at inference, and kvrag trains without it
}

BertSelfAttentionImpl::BertSelfAttentionImpl(const BertConfig& c, torch::TensorOptions options)
    : num_heads(c.num_attention_heads) {
  query = register_module("query", Linear(c.hidden_size, c.hidden_size, true, options));
  key = register_module("key", Linear(c.hidden_size, c.hidden_size, true, options));
  value = register_module("value", Linear(c.hidden_size, c.hidden_size, true, options));
}

torch::Tensor BertSelfAttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& mask) {
  const int64_t B = x.size(0), T = x.size(1), H = x.size(2), nH = num_heads, hd = H / nH;
  const auto q = query(x).view({B, T, nH, hd}).transpose(1, 2);  // [B, nH, T, hd]
  const auto k = key(x).view({B, T, nH, hd}).transpose(1, 2);    // [B, nH, T, hd]
  const auto v = value(x).view({B, T, nH, hd}).transpose(1, 2);  // [B, nH, T, hd]
  // [B, T, H]
  if (q.requires_grad() || k.requires_grad() || v.requires_grad()) return attention(q, k, v, mask);
  // Inference: one sequence at a time, so that its scores ([nH, T, T]: 4 MB for bert-base at
  // T = 288) stay in cache and are updated in place, where the whole batch's would be a fresh
  // [B, nH, T, T] allocation (page faults included) for each of four passes. Same values.
  auto out = torch::empty({B, T, H}, x.options());  // [B, T, H]
  for (int64_t b = 0; b < B; ++b) {
    const auto row = [b](const torch::Tensor& t) { return t.defined() ? t.narrow(0, b, 1) : t; };
    attention(row(q), row(k), row(v), row(mask), out.narrow(0, b, 1));  // writes out[b] [T, H]
  }
  return out;
}

BertResidualOutputImpl::BertResidualOutputImpl(int64_t in, int64_t hidden, double eps,
                                               torch::TensorOptions options) {
  dense = register_module("dense", Linear(in, hidden, true, options));
  LayerNorm =
      register_module("LayerNorm", kvrag::LayerNorm(hidden, eps, non_linear_options(options)));
}

torch::Tensor BertResidualOutputImpl::forward(const torch::Tensor& x,
                                              const torch::Tensor& residual) {
  auto h = dense(x);
  return LayerNorm(h.requires_grad() || residual.requires_grad() ? h + residual : h.add_(residual));
}

BertAttentionImpl::BertAttentionImpl(const BertConfig& c, torch::TensorOptions options) {
  self = register_module("self", BertSelfAttention(c, options));
  output = register_module(
      "output", BertResidualOutput(c.hidden_size, c.hidden_size, c.layer_norm_eps, options));
}

torch::Tensor BertAttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& mask) {
  return output(self(x, mask), x);
}

BertIntermediateImpl::BertIntermediateImpl(const BertConfig& c, torch::TensorOptions options) {
  dense = register_module("dense", Linear(c.hidden_size, c.intermediate_size, true, options));
}

torch::Tensor BertIntermediateImpl::forward(const torch::Tensor& x) {
  return torch::gelu(dense(x));  // exact (erf) GELU, as HF "gelu"
}

BertLayerImpl::BertLayerImpl(const BertConfig& c, torch::TensorOptions options) {
  attention = register_module("attention", BertAttention(c, options));
  intermediate = register_module("intermediate", BertIntermediate(c, options));
  output = register_module(
      "output", BertResidualOutput(c.intermediate_size, c.hidden_size, c.layer_norm_eps, options));
}

torch::Tensor BertLayerImpl::forward(const torch::Tensor& x, const torch::Tensor& mask) {
  const auto h = attention(x, mask);
  return output(intermediate(h), h);
}

BertModelImpl::BertModelImpl(const BertConfig& config, torch::Dtype dtype, bool with_pooler)
    : config_(config),
      dtype_(dtype == torch::kInt8 ? torch::kFloat32 : dtype),
      weight_dtype_(dtype) {
  KVRAG_CHECK(dtype == torch::kFloat32 || dtype == torch::kBFloat16 || dtype == torch::kInt8,
              "BERT dtype must be fp32, bf16 or int8, not {}", c10::toString(dtype));
  const auto options = torch::TensorOptions().dtype(dtype);  // kInt8: see LinearImpl
  embeddings = register_module("embeddings", BertEmbeddings(config, options));
  // HF nests the layers as encoder.layer.N; an anonymous container keeps those names.
  auto encoder = register_module("encoder", std::make_shared<torch::nn::Module>());
  encoder_layers = encoder->register_module("layer", torch::nn::ModuleList());
  for (int64_t i = 0; i < config.num_hidden_layers; ++i)
    encoder_layers->push_back(BertLayer(config, options));
  if (with_pooler) {
    auto pooler = register_module("pooler", std::make_shared<torch::nn::Module>());
    pooler_dense_ = pooler->register_module(
        "dense", Linear(config.hidden_size, config.hidden_size, true, options));
  }
  if (dtype == torch::kInt8) {
    for (auto& module : modules(/*include_self=*/false)) {
      if (auto* linear = dynamic_cast<LinearImpl*>(module.get())) {
        linear->many_rows = kManyRows;
      }
    }
  }
}

BertOutputs BertModelImpl::forward(const torch::Tensor& input_ids,
                                   const torch::Tensor& attention_mask,
                                   const torch::Tensor& token_type_ids, bool output_hidden_states) {
  KVRAG_CHECK(input_ids.dim() == 2 && input_ids.size(1) > 0,
              "BERT forward: input_ids must be [B, T], got {}", c10::str(input_ids.sizes()));
  const int64_t B = input_ids.size(0), T = input_ids.size(1);
  KVRAG_CHECK(T <= config_.max_position_embeddings,
              "BERT forward: {} tokens exceed max_position_embeddings {}", T,
              config_.max_position_embeddings);
  KVRAG_CHECK(attention_mask.sizes() == input_ids.sizes(),
              "BERT forward: attention_mask {} does not match ids {}",
              c10::str(attention_mask.sizes()), c10::str(input_ids.sizes()));
  {
    const auto [lo, hi] = torch::aminmax(input_ids);
    KVRAG_CHECK(lo.item<int64_t>() >= 0 && hi.item<int64_t>() < config_.vocab_size,
                "BERT forward: token id outside [0, {})", config_.vocab_size);
  }
  auto types = token_type_ids.defined() ? token_type_ids : torch::zeros({B, T}, torch::kInt64);
  KVRAG_CHECK(types.sizes() == input_ids.sizes(),
              "BERT forward: token_type_ids {} does not match ids {}", c10::str(types.sizes()),
              c10::str(input_ids.sizes()));

  // Additive mask over keys [B, 1, 1, T]: 0 for tokens, the lowest float for padding; none
  // without padding (adding zeros changes nothing).
  const auto hidden = attention_mask.to(torch::kBool).logical_not();  // [B, T]
  torch::Tensor mask;
  if (hidden.any().item<bool>()) {
    mask = torch::zeros({B, T}, torch::kFloat32)
               .masked_fill_(hidden, std::numeric_limits<float>::lowest())
               .view({B, 1, 1, T});
  }
  // Inference: its threads as ForwardThreadsGuard says; training loops hold their own guard
  // (train/*_trainer.cpp).
  bool record = false;
  if (torch::GradMode::is_enabled()) {
    for (const auto& p : parameters()) record = record || p.requires_grad();
  }
  ForwardThreadsGuard threads(!record, weight_dtype_, kManyRows);
  BertOutputs out;
  auto x = embeddings(input_ids, types);  // [B, T, H]
  if (output_hidden_states) out.hidden_states.push_back(x);
  for (size_t i = 0; i < encoder_layers->size(); ++i) {
    x = encoder_layers->at<BertLayerImpl>(i).forward(x, mask);
    if (output_hidden_states) out.hidden_states.push_back(x);
  }
  out.last_hidden_state = x;
  return out;
}

torch::Tensor BertModelImpl::pool(const torch::Tensor& last_hidden_state) {
  KVRAG_CHECK(has_pooler(), "BERT: this model has no pooler (pooler.dense is absent)");
  return torch::tanh(pooler_dense_(cls_pool(last_hidden_state)));
}

torch::Tensor mean_pool(const torch::Tensor& hidden, const torch::Tensor& attention_mask) {
  const auto m = attention_mask.to(hidden.scalar_type()).unsqueeze(-1);  // [B, T, 1]
  return (hidden * m).sum(1) / m.sum(1).clamp_min(1.0);                  // [B, H]
}

torch::Tensor cls_pool(const torch::Tensor& hidden) { return hidden.select(1, 0); }

BertModel load_bert(const std::string& dir, torch::Dtype dtype) {
  check_model_folder(dir, {ModelFolder::kBert});
  const auto config = BertConfig::load(dir + "/config.json");
  const auto checkpoint = Checkpoint::open(dir);
  const std::string prefix =
      checkpoint.has("bert.embeddings.word_embeddings.weight") ? "bert." : "";
  const bool with_pooler = checkpoint.has(prefix + "pooler.dense.weight");
  BertModel model(config, dtype, with_pooler);
  load_parameters(*model, checkpoint, prefix);  // everything but int8 weights
  if (dtype == torch::kInt8) load_q8_weights(*model, checkpoint, prefix);
  model->eval();
  return model;
}

}  // namespace kvrag
