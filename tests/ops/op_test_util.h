// Helpers of the ops tests: fp64 comparisons and a loop over the CPU paths this machine runs.
#pragma once

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>

#include "ops/cpu_isa.h"

namespace kvrag::test {

inline double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
}

inline double max_abs(const torch::Tensor& a) {
  return a.to(torch::kFloat64).abs().max().item<double>();
}

// Random N(0, 1) values rounded to `dtype` once: the inputs every path and the fp64 reference
// share exactly.
inline torch::Tensor randn(torch::IntArrayRef sizes, torch::Dtype dtype) {
  return torch::randn(sizes).to(dtype);
}

inline std::string dtype_name(torch::Dtype dtype) {
  return dtype == torch::kBFloat16 ? "bf16" : "fp32";
}

// Calls fn() once for every CPU level this machine supports (ops/cpu_isa.h), with the kernels
// restricted to that level: every path a CPU could take, where this one can run it.
template <typename F>
void for_each_cpu_isa(F&& fn) {
  for (const auto isa : supported_cpu_isas()) {
    const ScopedCpuIsa scope(isa);
    SCOPED_TRACE(std::string("cpu isa ") + cpu_isa_name(isa));
    fn();
  }
}

}  // namespace kvrag::test
