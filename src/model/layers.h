// Small building blocks shared by the models, as torch::nn modules whose parameter names match
// Hugging Face checkpoints ("weight", "bias").
//
// torch::nn::Linear and friends initialise their weights on construction (kaiming-uniform in
// fp32); for a 7B checkpoint that would cost tens of seconds and 28 GB before the real weights
// arrive. These modules allocate uninitialised tensors of the requested dtype instead: either a
// checkpoint is loaded into them (model/weights.h) or init_parameters() fills them for training
// from scratch.
#pragma once

#include <torch/torch.h>

#include <functional>

namespace kvrag {

// True when libtorch multiplies bf16 matrices natively on this CPU (through oneDNN, which
// libtorch 1.13 uses when the CPU has AVX-512 BW/VL/DQ). Elsewhere its bf16 matmul is a scalar
// fallback (1-5 GFLOP/s), so Linear computes bf16 products in fp32 instead: the inputs convert
// exactly, both accumulate in fp32 and the result is rounded to bf16 once, as natively.
bool native_bf16_matmul();

// While alive, libtorch ops called from this thread run their intra-op loops inline instead
// of on libtorch's OpenMP team. For inference whose matrix products run on BLAS's own threads
// (OpenBLAS keeps a pthread pool, separate from libtorch's OpenMP one): with both pools active
// on as many cores as threads, OpenMP workers spin-waiting between elementwise ops take the
// cores the BLAS threads need, and each matmul waits for a descheduled thread. Only the calling
// thread's OpenMP setting changes (it is a per-thread ICV), so other threads are unaffected.
class SerialIntraOpGuard {
 public:
  explicit SerialIntraOpGuard(bool active = true);
  ~SerialIntraOpGuard();
  SerialIntraOpGuard(const SerialIntraOpGuard&) = delete;
  SerialIntraOpGuard& operator=(const SerialIntraOpGuard&) = delete;

 private:
  int saved_ = 0;  // the thread's OpenMP team size before; 0 when inactive
};

// Calls fn(begin, end) on chunks (at least `grain` long) covering [0, n), on the calling thread
// and up to at::get_num_threads() - 1 helper threads of kvrag's own. Chunks are claimed as
// threads come free, and the caller waits only for a chunk a helper has already started: a
// helper the OS has not scheduled (a busy machine) costs nothing, where an OpenMP team's barrier
// waits for every member. Meant for decoding's short, frequent, memory-bound loops (matrix-vector
// products, attention over the cache). fn must not throw; chunks run concurrently.
void parallel_chunks(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

// Whether matrix products of `dtype` run on BLAS's own thread pool here (fp32 always; bf16
// when computed in fp32, see native_bf16_matmul()) rather than on libtorch's OpenMP threads.
bool matmul_uses_blas_threads(torch::Dtype dtype);

// Maximum rows of x that linear() multiplies with its matrix-vector kernel.
constexpr int64_t kGemvMaxRows = 8;

// y = x W^T (+ b): x [..., in], weight [out, in], bias [out] or undefined → [..., out].
//
// Inference (no autograd history needed) with at most kGemvMaxRows rows of x — the decode step
// of generation — runs a matrix-vector kernel that streams W once for all rows, reading bf16
// weights as bf16 (half the memory traffic of fp32) and accumulating in fp32; it parallelises
// over output features on libtorch's intra-op threads. Everything else goes to
// torch::nn::functional::linear (BLAS / oneDNN), in fp32 for bf16 without native_bf16_matmul().
torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias = {});

// a @ b (torch::matmul), in fp32 for bf16 operands without native_bf16_matmul(); the result
// has the operands' dtype either way.
torch::Tensor matmul(const torch::Tensor& a, const torch::Tensor& b);

// y = x W^T (+ b) with kvrag::linear. weight [out, in], bias [out].
class LinearImpl : public torch::nn::Module {
 public:
  LinearImpl(int64_t in_features, int64_t out_features, bool bias, torch::TensorOptions options);
  torch::Tensor forward(const torch::Tensor& x);  // [..., in] -> [..., out]

  torch::Tensor weight;  // [out, in]
  torch::Tensor bias;    // [out] or undefined
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

// LLaMA's RMSNorm (libtorch 1.13 has none): x / sqrt(mean(x²) + eps) * weight, computed in
// fp32 and cast back to the input dtype before the weight is applied, as in HF LlamaRMSNorm.
// Inference on contiguous CPU tensors runs one fused loop per row (same roundings).
class RMSNormImpl : public torch::nn::Module {
 public:
  RMSNormImpl(int64_t dim, double eps, torch::TensorOptions options);
  torch::Tensor forward(const torch::Tensor& x);

  torch::Tensor weight;  // [dim]
  double eps;
};
TORCH_MODULE(RMSNorm);

// BERT's LayerNorm (parameters "weight"/"bias", as in HF checkpoints; computed in fp32).
class LayerNormImpl : public torch::nn::Module {
 public:
  LayerNormImpl(int64_t dim, double eps, torch::TensorOptions options);
  torch::Tensor forward(const torch::Tensor& x);

  torch::Tensor weight;  // [dim]
  torch::Tensor bias;    // [dim]
  double eps;
};
TORCH_MODULE(LayerNorm);

// Fills every parameter of `module` for training from scratch: matrices ~ N(0, std), vectors
// named "*norm*"/"*LayerNorm*" weight = 1, biases = 0. Deterministic given `seed`.
void init_parameters(torch::nn::Module& module, double std, uint64_t seed);

}  // namespace kvrag
