#include "ops/norm.h"

#include <torch/torch.h>

#include <cmath>

#include "ops/op_support.h"

namespace kvrag {
namespace {

using op_support::round_to;

// y = weight * to_T(x * rsqrt(mean(x²) + eps)), in fp32 with the roundings of the torch ops.
template <typename T>
void rms_norm_rows(const T* x, const T* weight, T* y, int64_t rows, int64_t n, float eps) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * n;
    double ss = 0.0;
    for (int64_t i = 0; i < n; ++i) {
      const float v = static_cast<float>(xr[i]);
      ss += v * v;
    }
    const float inv = 1.0f / std::sqrt(static_cast<float>(ss / n) + eps);
    T* yr = y + r * n;
    for (int64_t i = 0; i < n; ++i) {
      const float h = round_to(static_cast<float>(xr[i]) * inv, T());
      yr[i] = static_cast<T>(static_cast<float>(weight[i]) * h);
    }
  }
}

}  // namespace

torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps) {
  const auto dtype = x.scalar_type();
  if (!op_support::needs_grad({&x, &weight}) && x.is_cpu() && dtype == weight.scalar_type() &&
      (dtype == torch::kFloat32 || dtype == torch::kBFloat16) && x.size(-1) == weight.size(0)) {
    const auto xc = x.contiguous();
    const auto w = weight.contiguous();
    auto y = torch::empty_like(xc);
    const int64_t n = w.size(0), rows = n > 0 ? xc.numel() / n : 0;
    op_support::dispatch_fp32_bf16(dtype, [&](auto zero) {
      using T = decltype(zero);
      rms_norm_rows(xc.data_ptr<T>(), w.data_ptr<T>(), y.data_ptr<T>(), rows, n,
                    static_cast<float>(eps));
    });
    return y;
  }
  auto h = x.to(torch::kFloat32);
  h = h * torch::rsqrt(h.pow(2).mean(-1, /*keepdim=*/true) + eps);
  return weight * h.to(x.scalar_type());
}

torch::Tensor layer_norm(const torch::Tensor& x, const torch::Tensor& weight,
                         const torch::Tensor& bias, double eps) {
  const auto dtype = x.scalar_type();
  auto y = torch::layer_norm(x.to(torch::kFloat32), {weight.size(0)}, weight.to(torch::kFloat32),
                             bias.to(torch::kFloat32), eps);
  return y.to(dtype);
}

}  // namespace kvrag
