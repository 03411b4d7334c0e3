// Helpers shared by the ops' implementations (src/ops/*.cpp); not part of their interface.
#pragma once

#include <torch/torch.h>

#include <algorithm>
#include <initializer_list>

namespace kvrag::op_support {

// Whether an op on these tensors must record autograd history (undefined tensors ignored).
inline bool needs_grad(std::initializer_list<const torch::Tensor*> tensors) {
  if (!torch::GradMode::is_enabled()) return false;
  return std::any_of(tensors.begin(), tensors.end(),
                     [](const torch::Tensor* t) { return t->defined() && t->requires_grad(); });
}

// v rounded to the element type T (the second argument only picks T): what a torch op whose
// result has dtype T does to each value it writes.
inline float round_to(float v, float) { return v; }
inline float round_to(float v, c10::BFloat16) { return static_cast<float>(c10::BFloat16(v)); }

// Calls f(T()) with T = c10::BFloat16 for bf16, float otherwise (the callers check fp32/bf16).
template <typename F>
void dispatch_fp32_bf16(torch::Dtype dtype, F&& f) {
  if (dtype == torch::kBFloat16) {
    f(c10::BFloat16());
  } else {
    f(float());
  }
}

}  // namespace kvrag::op_support
