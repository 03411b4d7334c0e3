#include "ops/q8_linear.h"

#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/utils.h>
#include <torch/torch.h>

#include <algorithm>

#include "core/error.h"

namespace kvrag {
namespace {

// Rows of W dequantized at a time in the backward pass: a tile of [kTileRows, K] fp32 stays in
// L2 for K up to a few thousand, and is all the fp32 weight memory the backward ever holds.
constexpr int64_t kTileRows = 256;

// dx [M, K] fp32 = dy [M, N] fp32 · W [N, K].
torch::Tensor q8_grad_input(const torch::Tensor& dy, const Q8Matrix& w) {
  const int64_t N = w.rows, K = w.cols, G = w.groups_per_row();
  auto dx = torch::zeros({dy.size(0), K}, torch::kFloat32);  // [M, K]
  auto tile = torch::empty({std::min(kTileRows, N), K}, torch::kFloat32);
  for (int64_t n0 = 0; n0 < N; n0 += kTileRows) {
    const int64_t rows = std::min(kTileRows, N - n0);
    auto t = tile.narrow(0, 0, rows);  // [rows, K]
    float* out = t.data_ptr<float>();
    for (int64_t r = 0; r < rows; ++r) {
      const int8_t* q = w.q.data() + (n0 + r) * K;
      const float* s = w.scales.data() + (n0 + r) * G;
      for (int64_t j = 0; j < K; ++j) out[r * K + j] = q[j] * s[j / kQ8Group];
    }
    dx.addmm_(dy.narrow(1, n0, rows), t);  // += [M, rows] · [rows, K]
  }
  return dx;
}

// The backward of q8_linear. Inputs (edges): x, bias.
struct Q8LinearBackward : torch::autograd::Node {
  std::shared_ptr<const Q8Matrix> w;
  std::vector<int64_t> x_sizes;  // [..., K]
  c10::ScalarType x_dtype;
  c10::ScalarType bias_dtype = torch::kFloat32;

  std::string name() const override { return "kvrag::Q8LinearBackward"; }

  torch::autograd::variable_list apply(torch::autograd::variable_list&& grads) override {
    torch::autograd::variable_list out(2);
    if (!grads[0].defined()) return out;  // the output took no part in what is differentiated
    const auto dy = grads[0].to(torch::kFloat32).reshape({-1, w->rows});  // [M, N]
    if (should_compute_output(0)) out[0] = q8_grad_input(dy, *w).view(x_sizes).to(x_dtype);
    if (should_compute_output(1)) out[1] = dy.sum(0).to(bias_dtype);  // [N]
    return out;
  }
};

}  // namespace

torch::Tensor q8_linear(const torch::Tensor& x, const std::shared_ptr<const Q8Matrix>& w,
                        const torch::Tensor& bias) {
  KVRAG_CHECK(w != nullptr && static_cast<int64_t>(w->q.size()) == w->rows * w->cols,
              "int8 linear: the weight [{}, {}] holds no values (not loaded)", w ? w->rows : 0,
              w ? w->cols : 0);
  const int64_t N = w->rows, K = w->cols;
  KVRAG_CHECK(x.dim() >= 1 && x.size(-1) == K, "int8 linear: x {} does not fit a weight [{}, {}]",
              c10::str(x.sizes()), N, K);
  KVRAG_CHECK(!bias.defined() || (bias.dim() == 1 && bias.size(0) == N),
              "int8 linear: bias {} does not fit {} outputs", c10::str(bias.sizes()), N);
  auto out_sizes = x.sizes().vec();
  out_sizes.back() = N;

  // [..., N] in x's dtype, made outside autograd (and not a view, whose history autograd would
  // manage itself); its history is set below.
  torch::Tensor y;
  {
    torch::NoGradGuard no_grad;
    const auto x32 = x.to(torch::kFloat32).contiguous().view({-1, K});  // [M, K]
    auto y32 = torch::empty(out_sizes, torch::kFloat32);  // [..., N], laid out as [M, N]
    q8_matmul(x32.data_ptr<float>(), x32.size(0), *w, y32.data_ptr<float>());
    if (bias.defined()) y32.add_(bias.to(torch::kFloat32));
    y = y32.to(x.scalar_type());
  }
  const bool x_grad = x.requires_grad(), b_grad = bias.defined() && bias.requires_grad();
  if (torch::GradMode::is_enabled() && (x_grad || b_grad)) {
    auto node =
        std::shared_ptr<Q8LinearBackward>(new Q8LinearBackward(), torch::autograd::deleteNode);
    node->w = w;
    node->x_sizes = x.sizes().vec();
    node->x_dtype = x.scalar_type();
    if (bias.defined()) node->bias_dtype = bias.scalar_type();
    node->set_next_edges(torch::autograd::collect_next_edges(x, bias));
    torch::autograd::set_history(y, node);
  }
  return y;
}

}  // namespace kvrag
