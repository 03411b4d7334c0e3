// BERT encoder (BertModel; Contriever is one), post-LayerNorm with exact GELU, as torch::nn
// modules whose parameter names match Hugging Face checkpoints ("encoder.layer.0.attention.self.
// query.weight" …). Trainable (the retriever and knowledge encoder fine-tune it) or frozen.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "checkpoint/model_config.h"
#include "model/layers.h"

namespace kvrag {

class BertEmbeddingsImpl : public torch::nn::Module {
 public:
  BertEmbeddingsImpl(const BertConfig& c, torch::TensorOptions options);
  // ids, token_type_ids [B, T] → [B, T, H]
  torch::Tensor forward(const torch::Tensor& ids, const torch::Tensor& token_type_ids);

  Embedding word_embeddings{nullptr}, position_embeddings{nullptr}, token_type_embeddings{nullptr};
  kvrag::LayerNorm LayerNorm{nullptr};
};
TORCH_MODULE(BertEmbeddings);

// "attention.self": the query/key/value projections.
class BertSelfAttentionImpl : public torch::nn::Module {
 public:
  BertSelfAttentionImpl(const BertConfig& c, torch::TensorOptions options);
  // x [B, T, H], mask [B, 1, 1, T] additive fp32 → context [B, T, H]
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& mask);

  Linear query{nullptr}, key{nullptr}, value{nullptr};
  int64_t num_heads;
};
TORCH_MODULE(BertSelfAttention);

// "attention.output" and "output": dense → dropout (none at inference) → LayerNorm(x + input).
class BertResidualOutputImpl : public torch::nn::Module {
 public:
  BertResidualOutputImpl(int64_t in, int64_t hidden, double eps, torch::TensorOptions options);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& residual);

  Linear dense{nullptr};
  kvrag::LayerNorm LayerNorm{nullptr};
};
TORCH_MODULE(BertResidualOutput);

class BertAttentionImpl : public torch::nn::Module {
 public:
  BertAttentionImpl(const BertConfig& c, torch::TensorOptions options);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& mask);

  BertSelfAttention self{nullptr};
  BertResidualOutput output{nullptr};
};
TORCH_MODULE(BertAttention);

// "intermediate": dense → exact (erf) GELU.
class BertIntermediateImpl : public torch::nn::Module {
 public:
  BertIntermediateImpl(const BertConfig& c, torch::TensorOptions options);
  torch::Tensor forward(const torch::Tensor& x);

  Linear dense{nullptr};
};
TORCH_MODULE(BertIntermediate);

class BertLayerImpl : public torch::nn::Module {
 public:
  BertLayerImpl(const BertConfig& c, torch::TensorOptions options);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& mask);

  BertAttention attention{nullptr};
  BertIntermediate intermediate{nullptr};
  BertResidualOutput output{nullptr};
};
TORCH_MODULE(BertLayer);

struct BertOutputs {
  torch::Tensor last_hidden_state;           // [B, T, H]
  std::vector<torch::Tensor> hidden_states;  // if requested: L + 1 entries, [0] = embeddings
};

class BertModelImpl : public torch::nn::Module {
 public:
  // Parameters are allocated uninitialised in `dtype` (kFloat32 or kBFloat16); with_pooler
  // adds "pooler.dense" (absent from some checkpoints). kInt8: weight-only int8 (LinearImpl,
  // model/layers.h) for every linear layer whose input width is a multiple of 32, fp32 for the
  // rest (embeddings, LayerNorms, biases) and fp32 compute.
  BertModelImpl(const BertConfig& config, torch::Dtype dtype, bool with_pooler = true);

  // input_ids, attention_mask (1 = token, 0 = padding), token_type_ids (undefined = zeros), all
  // [B, T] int64. Padded positions come out too; pool with mean_pool / cls_pool.
  BertOutputs forward(const torch::Tensor& input_ids, const torch::Tensor& attention_mask,
                      const torch::Tensor& token_type_ids = {}, bool output_hidden_states = false);

  // tanh(dense(h[:, 0])) → [B, H]. Error if the model has no pooler.
  torch::Tensor pool(const torch::Tensor& last_hidden_state);
  bool has_pooler() const { return !pooler_dense_.is_empty(); }

  const BertConfig& config() const { return config_; }
  // The compute dtype: activations and outputs (kFloat32 for int8 weights).
  torch::Dtype dtype() const { return dtype_; }
  // The dtype the model was made with: kFloat32, kBFloat16 or kInt8.
  torch::Dtype weight_dtype() const { return weight_dtype_; }

  BertEmbeddings embeddings{nullptr};
  torch::nn::ModuleList encoder_layers{nullptr};  // registered as "encoder.layer"

 private:
  BertConfig config_;
  torch::Dtype dtype_;
  torch::Dtype weight_dtype_;
  Linear pooler_dense_{nullptr};
};
TORCH_MODULE(BertModel);

// Contriever's embedding: the mean of h over the unpadded positions. h [B, T, H], mask [B, T].
torch::Tensor mean_pool(const torch::Tensor& hidden, const torch::Tensor& attention_mask);
// h[:, 0] ([CLS]).
torch::Tensor cls_pool(const torch::Tensor& hidden);

// Loads DIR (config.json + safetensors). Tensor names may carry a "bert." prefix (as in
// BertForMaskedLM checkpoints); a missing pooler is allowed. Errors name file and tensor. With
// kInt8 each linear weight is quantized as it is read (load_q8_weights, model/weights.h).
BertModel load_bert(const std::string& dir, torch::Dtype dtype = torch::kFloat32);

}  // namespace kvrag
