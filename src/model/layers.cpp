#include "model/layers.h"

#include "core/error.h"

namespace kvrag {

torch::Dtype parse_model_dtype(const std::string& name) {
  if (name == "fp32") return torch::kFloat32;
  if (name == "bf16") return torch::kBFloat16;
  if (name == "int8") return torch::kInt8;
  fail("dtype must be fp32, bf16 or int8, not '{}'", name);
}

LinearImpl::LinearImpl(int64_t in_features, int64_t out_features, bool with_bias,
                       torch::TensorOptions options) {
  if (options.dtype() == torch::kInt8) {
    options = options.dtype(torch::kFloat32);  // bias, and a weight with a partial group
    if (in_features % kQ8Group == 0) {
      // Shape only: no values (and no fp32 memory) until the checkpoint is quantized into it.
      auto empty = std::make_shared<Q8Matrix>();
      empty->rows = out_features;
      empty->cols = in_features;
      q8 = std::move(empty);
    }
  }
  if (!q8)
    weight = register_parameter("weight", torch::empty({out_features, in_features}, options));
  if (with_bias) bias = register_parameter("bias", torch::empty({out_features}, options));
}

torch::Tensor LinearImpl::forward(const torch::Tensor& x) {
  return q8 ? q8_linear(x, q8, bias, many_rows) : kvrag::linear(x, weight, bias);
}

torch::Tensor LinearImpl::float_weight() const {
  if (!q8) return weight.to(torch::kFloat32);
  KVRAG_CHECK(static_cast<int64_t>(q8->q.size()) == q8->rows * q8->cols,
              "int8 linear [{}, {}]: weights not loaded", q8->rows, q8->cols);
  auto w = torch::empty({q8->rows, q8->cols}, torch::kFloat32);  // [out, in]
  dequantize_q8(*q8, w.data_ptr<float>());
  return w;
}

EmbeddingImpl::EmbeddingImpl(int64_t num_embeddings, int64_t dim, torch::TensorOptions options) {
  weight = register_parameter("weight", torch::empty({num_embeddings, dim}, options));
}

torch::Tensor EmbeddingImpl::forward(const torch::Tensor& ids) {
  return torch::embedding(weight, ids);
}

RMSNormImpl::RMSNormImpl(int64_t dim, double eps_, torch::TensorOptions options) : eps(eps_) {
  weight = register_parameter("weight", torch::ones({dim}, options));
}

torch::Tensor RMSNormImpl::forward(const torch::Tensor& x) {
  return kvrag::rms_norm(x, weight, eps);
}

LayerNormImpl::LayerNormImpl(int64_t dim, double eps_, torch::TensorOptions options) : eps(eps_) {
  weight = register_parameter("weight", torch::ones({dim}, options));
  bias = register_parameter("bias", torch::zeros({dim}, options));
}

torch::Tensor LayerNormImpl::forward(const torch::Tensor& x) {
  return kvrag::layer_norm(x, weight, bias, eps);
}

void init_parameters(torch::nn::Module& module, double std, uint64_t seed) {
  torch::NoGradGuard no_grad;
  auto gen = at::detail::createCPUGenerator(seed);
  for (auto& item : module.named_parameters()) {
    const std::string& name = item.key();
    torch::Tensor& p = item.value();
    const bool is_norm =
        name.find("norm") != std::string::npos || name.find("LayerNorm") != std::string::npos;
    if (p.dim() >= 2) {
      auto w = torch::empty(p.sizes(), torch::kFloat32);
      w.normal_(0.0, std, gen);
      p.copy_(w);
    } else if (is_norm && name.size() >= 6 && name.compare(name.size() - 6, 6, "weight") == 0) {
      p.fill_(1.0);
    } else {
      p.zero_();
    }
  }
}

}  // namespace kvrag
