// The inference fast paths (matrix-vector kernel, fused RMSNorm, LLaMA's cache-in-place
// attention and decode kernel, BERT's per-sequence attention) against the differentiable torch
// ops they replace. Random weights: needs nothing from ../shared.

#include <torch/torch.h>

#include <atomic>
#include <vector>

#include "model/bert.h"
#include "model/generation.h"
#include "model/layers.h"
#include "model/llama.h"
#include "ops/threads.h"
#include "support/test_support.h"

namespace kvrag {
namespace {

double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
}

LlamaConfig tiny_llama_config() {
  LlamaConfig c;
  c.vocab_size = 97;
  c.hidden_size = 48;
  c.intermediate_size = 80;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 12;
  c.num_hidden_layers = 2;
  c.max_position_embeddings = 64;
  return c;
}

TEST(InferencePath, ParallelChunksCoverEveryIndexOnce) {
  configure_threads(2);
  for (const int64_t n : {1, 7, 1000, 4097}) {
    std::vector<std::atomic<int>> hits(n);
    for (int repeat = 0; repeat < 50; ++repeat) {
      parallel_chunks(n, 3, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) hits[i].fetch_add(1);
      });
    }
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 50) << "n=" << n << " i=" << i;
  }
}

// Every row count up to the GEMM path, odd sizes (SIMD tails), with and without bias.
TEST(InferencePath, LinearKernelMatchesTorchLinear) {
  configure_threads(2);
  torch::manual_seed(1);
  torch::NoGradGuard no_grad;
  for (const auto dtype : {torch::kFloat32, torch::kBFloat16}) {
    for (const int64_t in : {64, 67}) {
      const auto w = torch::randn({37, in}).to(dtype);
      const auto bias = torch::randn({37}).to(dtype);
      for (int64_t rows = 1; rows <= kGemvMaxRows + 1; ++rows) {
        const auto x = torch::randn({rows, in}).to(dtype);
        for (const auto& b : {torch::Tensor(), bias}) {
          // Reference: fp32 products of the same (exactly representable) inputs, rounded once.
          const auto want =
              torch::nn::functional::linear(x.to(torch::kFloat32), w.to(torch::kFloat32),
                                            b.defined() ? b.to(torch::kFloat32) : b);
          const auto got = linear(x, w, b);
          ASSERT_EQ(got.scalar_type(), dtype);
          ASSERT_EQ(got.sizes(), want.sizes());
          // fp32: summation order only. bf16: one rounding of the result (2^-8 relative).
          const double tol =
              dtype == torch::kFloat32 ? 1e-4 : 1e-2 * want.abs().max().item<double>();
          EXPECT_LE(max_abs_diff(got, want), tol)
              << c10::toString(dtype) << " rows=" << rows << " in=" << in;
        }
      }
    }
  }
}

TEST(InferencePath, FusedRmsNormMatchesTorchOps) {
  torch::manual_seed(2);
  for (const auto dtype : {torch::kFloat32, torch::kBFloat16}) {
    RMSNorm norm(24, 1e-5, torch::TensorOptions().dtype(dtype));
    {
      torch::NoGradGuard no_grad;
      norm->weight.copy_(torch::randn({24}));
    }
    const auto x = torch::randn({3, 5, 24}).to(dtype);
    const auto autograd = norm(x.clone().requires_grad_(true)).detach();  // torch ops
    torch::NoGradGuard no_grad;
    const auto fused = norm(x);
    const double tol = dtype == torch::kFloat32 ? 1e-6 : 2e-2;
    EXPECT_LE(max_abs_diff(fused, autograd), tol) << c10::toString(dtype);
  }
}

// Left padding, a cache filled in two chunks, then decode steps: the inference path equals the
// autograd path's full forward (every parameter requiring grad forces the latter). With a context
// of 6 the 9 positions also outrun the model's precomputed rotary tables.
TEST(InferencePath, LlamaInferenceEqualsAutogradPath) {
  configure_threads(2);
  for (const auto& [dtype, context] :
       {std::pair{torch::kFloat32, 64}, std::pair{torch::kBFloat16, 64},
        std::pair{torch::kFloat32, 6}}) {
    auto config = tiny_llama_config();
    config.max_position_embeddings = context;
    LlamaForCausalLM model(config, dtype);
    init_parameters(*model, 0.2, 7);
    const int64_t T = 9, pad = 3;
    auto ids = torch::randint(3, 97, {2, T}, torch::kInt64);
    ids[1].narrow(0, 0, pad).zero_();
    auto mask = torch::ones({2, T}, torch::kInt64);
    mask[1].narrow(0, 0, pad).zero_();

    LlamaForwardArgs full_args;
    full_args.attention_mask = mask;
    const auto reference = model->forward(ids, full_args).detach();  // autograd path
    ASSERT_TRUE(model->parameters()[0].requires_grad());

    torch::NoGradGuard no_grad;
    const auto direct = model->forward(ids, full_args);  // inference path, scratch cache
    auto cache = model->new_cache(2, T);
    const int64_t split = 4;
    LlamaForwardArgs a{nullptr, &cache, mask.narrow(1, 0, split)};
    std::vector<torch::Tensor> pieces = {model->forward(ids.narrow(1, 0, split), a)};
    for (int64_t t = split; t < T; ++t) {  // one token at a time: the decode kernel
      LlamaForwardArgs step{nullptr, &cache, mask.narrow(1, t, 1)};
      pieces.push_back(model->forward(ids.narrow(1, t, 1), step));
    }
    const auto cached = torch::cat(pieces, 1);

    // Padding positions' outputs are unused; compare real tokens only.
    const auto real = mask.to(torch::kBool).unsqueeze(-1).expand_as(reference);
    // Relative to the logits' scale (~5 here): the paths sum in different orders, and under load
    // (ctest -j2 beside other work) the kernels' thread splits change the order again, which
    // moved the largest difference to 1.3e-5 (fp32) and 0.103 (bf16, 3 ulps at 4-8).
    const double scale = reference.abs().max().item<double>();
    const double tol = (dtype == torch::kFloat32 ? 5e-6 : 0.03) * scale;
    EXPECT_LE(max_abs_diff(direct.masked_select(real), reference.masked_select(real)), tol)
        << c10::toString(dtype);
    EXPECT_LE(max_abs_diff(cached.masked_select(real), reference.masked_select(real)), tol)
        << c10::toString(dtype);
  }
}

TEST(InferencePath, BertPerSequenceAttentionEqualsBatched) {
  configure_threads(2);
  BertConfig c;
  c.vocab_size = 50;
  c.hidden_size = 32;
  c.num_attention_heads = 4;
  c.num_hidden_layers = 2;
  c.intermediate_size = 64;
  BertModel model(c, torch::kFloat32, false);
  init_parameters(*model, 0.2, 3);
  const auto ids = torch::randint(0, 50, {3, 10}, torch::kInt64);
  auto mask = torch::ones({3, 10}, torch::kInt64);
  mask[2].narrow(0, 6, 4).zero_();
  const auto reference = model->forward(ids, mask).last_hidden_state.detach();  // autograd path
  torch::NoGradGuard no_grad;
  const auto fast = model->forward(ids, mask).last_hidden_state;
  EXPECT_LE(max_abs_diff(fast, reference), 1e-5);
}

}  // namespace
}  // namespace kvrag
