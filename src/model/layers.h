// Small building blocks shared by the models, as torch::nn modules whose parameter names match
// Hugging Face checkpoints ("weight", "bias"); their arithmetic is the ops' (src/ops/).
//
// torch::nn::Linear and friends initialise their weights on construction (kaiming-uniform in
// fp32); for a 7B checkpoint that would cost tens of seconds and 28 GB before the real weights
// arrive. These modules allocate uninitialised tensors of the requested dtype instead: either a
// checkpoint is loaded into them (model/weights.h) or init_parameters() fills them for training
// from scratch.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

// The ops the modules wrap, and the thread controls their callers use (SerialIntraOpGuard,
// matmul_uses_blas_threads, ...): whoever includes this header has them.
#include "model/model_dtype_names.h"
#include "ops/matmul.h"
#include "ops/norm.h"
#include "ops/q8_linear.h"
#include "ops/threads.h"

namespace kvrag {

// y = x W^T (+ b) with kvrag::linear. weight [out, in], bias [out].
//
// Weight-only int8: with options of dtype kInt8 and in_features a multiple of kQ8Group, the
// weight is held as a Q8Matrix (`q8`, filled by load_q8_weights in model/weights.h) instead of a
// parameter, and forward uses q8_linear (fp32 activations, result in x's dtype). Other layers
// given kInt8 (in_features not a multiple of 32: no whole groups) keep an fp32 weight. The bias
// is fp32 either way.
class LinearImpl : public torch::nn::Module {
 public:
  LinearImpl(int64_t in_features, int64_t out_features, bool bias, torch::TensorOptions options);
  torch::Tensor forward(const torch::Tensor& x);  // [..., in] -> [..., out]

  // The weight [out, in] as fp32 (dequantized from `q8` when it is int8): for code that reads
  // the weights themselves rather than multiplying by them.
  torch::Tensor float_weight() const;

  torch::Tensor weight;  // [out, in]; undefined when q8 holds the weight
  torch::Tensor bias;    // [out] or undefined
  // [out, in] int8 weights, or null. Shared and const: the values never change after loading,
  // and a backward node keeps them alive beyond the module if need be.
  std::shared_ptr<const Q8Matrix> q8;
  // How q8_linear multiplies many rows of x by `q8` on a CPU without AVX-512 VNNI.
  Q8ManyRows many_rows = Q8ManyRows::kDequantized;
};
TORCH_MODULE(Linear);

// Table lookup. weight [num, dim].
class EmbeddingImpl : public torch::nn::Module {
 public:
  EmbeddingImpl(int64_t num_embeddings, int64_t dim, torch::TensorOptions options);
  torch::Tensor forward(const torch::Tensor& ids);  // [...] int64 -> [..., dim]

  torch::Tensor weight;
};
TORCH_MODULE(Embedding);

// LLaMA's RMSNorm (libtorch 1.13 has none) with kvrag::rms_norm: x / sqrt(mean(x²) + eps) *
// weight, computed in fp32 and cast back to the input dtype before the weight is applied, as in
// HF LlamaRMSNorm (a fused loop for inference, see ops/norm.h).
class RMSNormImpl : public torch::nn::Module {
 public:
  RMSNormImpl(int64_t dim, double eps, torch::TensorOptions options);
  torch::Tensor forward(const torch::Tensor& x);

  torch::Tensor weight;  // [dim]
  double eps;
};
TORCH_MODULE(RMSNorm);

// BERT's LayerNorm with kvrag::layer_norm (parameters "weight"/"bias", as in HF checkpoints;
// computed in fp32).
class LayerNormImpl : public torch::nn::Module {
 public:
  LayerNormImpl(int64_t dim, double eps, torch::TensorOptions options);
  torch::Tensor forward(const torch::Tensor& x);

  torch::Tensor weight;  // [dim]
  torch::Tensor bias;    // [dim]
  double eps;
};
TORCH_MODULE(LayerNorm);

// The dtype a model is made with, as named on command lines and in options: "fp32" → kFloat32,
// "bf16" → kBFloat16, "int8" → kInt8 (weight-only int8 linear layers, fp32 for everything else).
// Error naming the choices otherwise.
torch::Dtype parse_model_dtype(const std::string& name);
// (The names it accepts: kModelDtypeNames, model/model_dtype_names.h.)

// Options for the layers that are not Linear (embeddings, norms) of a model made with `options`:
// kInt8 means int8 linear weights only, with fp32 for the rest.
inline torch::TensorOptions non_linear_options(torch::TensorOptions options) {
  return options.dtype() == torch::kInt8 ? options.dtype(torch::kFloat32) : options;
}

// Fills every parameter of `module` for training from scratch: matrices ~ N(0, std), vectors
// named "*norm*"/"*LayerNorm*" weight = 1, biases = 0. Deterministic given `seed`.
void init_parameters(torch::nn::Module& module, double std, uint64_t seed);

}  // namespace kvrag
