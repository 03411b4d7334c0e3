#include "ops/q8_linear.h"

#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/utils.h>
#include <torch/torch.h>

#include <algorithm>

#include "core/error.h"
#include "ops/matmul.h"
#include "ops/q8_channel_gemm.h"
#include "ops/q8_gemm.h"
#include "ops/threads.h"

namespace kvrag {
namespace {

// Rows of W per dequantized tile (kWeightTileBytes, ops/matmul.h).
int64_t tile_rows(const Q8Matrix& w, int64_t element_bytes) {
  return std::clamp<int64_t>(kWeightTileBytes / (w.cols * element_bytes), 1, w.rows);
}

// Rows [n0, n0 + n) of W into tile [n, K] (fp32 or bf16), split over the threads of the pool the
// GEMM that follows runs on: libtorch's (OpenMP) for bf16, kvrag's helpers beside BLAS for fp32.
void dequantize_tile(const Q8Matrix& w, int64_t n0, int64_t n, torch::Tensor& tile) {
  const int64_t K = w.cols, grain = std::max<int64_t>(1, (int64_t{1} << 16) / K);
  if (tile.scalar_type() == torch::kBFloat16) {
    auto* out = reinterpret_cast<uint16_t*>(tile.data_ptr());
    at::parallel_for(0, n, grain, [&](int64_t r0, int64_t r1) {
      dequantize_q8_rows_bf16(w, n0 + r0, n0 + r1, out + r0 * K);
    });
  } else {
    float* out = tile.data_ptr<float>();
    parallel_chunks(n, grain, [&](int64_t r0, int64_t r1) {
      dequantize_q8_rows(w, n0 + r0, n0 + r1, out + r0 * K);
    });
  }
}

// y [M, N] fp32 = x [M, K] fp32 · Wᵀ through tiles of W dequantized to bf16 (x rounded to bf16)
// where libtorch multiplies bf16 natively, else to fp32: a GEMM (oneDNN / BLAS) instead of
// q8_matmul's matrix-vector blocks, for many rows of x (prefill, training).
torch::Tensor q8_matmul_gemm(const torch::Tensor& x, const Q8Matrix& w) {
  const int64_t M = x.size(0), N = w.rows, K = w.cols;
  const bool bf16 = native_bf16_matmul();
  // [M', K] (M' ≥ M: rows padded for the bf16 GEMM, ops/matmul.h)
  const auto xt = bf16 ? pad_rows_for_bf16_gemm(x.to(torch::kBFloat16)) : x;
  const int64_t rows = tile_rows(w, bf16 ? 2 : 4);
  auto tile = torch::empty({rows, K}, bf16 ? torch::kBFloat16 : torch::kFloat32);
  auto y = torch::empty({M, N}, torch::kFloat32);  // [M, N]
  for (int64_t n0 = 0; n0 < N; n0 += rows) {
    const int64_t n = std::min(rows, N - n0);
    auto t = tile.narrow(0, 0, n);  // [n, K]
    dequantize_tile(w, n0, n, t);
    if (n == N) return torch::mm(xt, t.t()).narrow(0, 0, M).to(torch::kFloat32);  // one tile
    y.narrow(1, n0, n).copy_(torch::mm(xt, t.t()).narrow(0, 0, M));               // [M, n]
  }
  return y;
}

// dx [M, K] fp32 = dy [M, N] fp32 · W [N, K], over fp32 tiles of W.
torch::Tensor q8_grad_input(const torch::Tensor& dy, const Q8Matrix& w) {
  const int64_t N = w.rows, K = w.cols;
  const int64_t rows = tile_rows(w, 4);
  auto dx = torch::zeros({dy.size(0), K}, torch::kFloat32);  // [M, K]
  auto tile = torch::empty({rows, K}, torch::kFloat32);
  for (int64_t n0 = 0; n0 < N; n0 += rows) {
    const int64_t n = std::min(rows, N - n0);
    auto t = tile.narrow(0, 0, n);  // [n, K]
    dequantize_tile(w, n0, n, t);
    dx.addmm_(dy.narrow(1, n0, n), t);  // += [M, n] · [n, K]
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

bool q8_row_codes_in_use(Q8ManyRows many_rows) {
  return many_rows == Q8ManyRows::kRowCodes && q8_channel_gemm_available();
}

torch::Tensor q8_linear(const torch::Tensor& x, const std::shared_ptr<const Q8Matrix>& w,
                        const torch::Tensor& bias, Q8ManyRows many_rows) {
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
    const int64_t M = x32.size(0);
    // The kernel that writes y [M, N] from x, or none: a GEMM over dequantized tiles of W.
    using Product = void (*)(const float*, int64_t, const Q8Matrix&, float*);
    const Product product = M < kQ8GemmMinRows               ? q8_matmul
                            : q8_gemm_available()            ? q8_gemm
                            : q8_row_codes_in_use(many_rows) ? q8_channel_gemm
                                                             : nullptr;
    torch::Tensor y32;  // [M, N]
    if (product != nullptr) {
      y32 = torch::empty({M, N}, torch::kFloat32);
      product(x32.data_ptr<float>(), M, *w, y32.data_ptr<float>());
    } else {
      y32 = q8_matmul_gemm(x32, *w);
    }
    y32 = y32.view(out_sizes);
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
