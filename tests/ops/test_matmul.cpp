// linear() (its matrix-vector kernel, oneDNN's sgemm and the BLAS path) and matmul() against fp64
// references, on every CPU path this machine runs (ops/cpu_isa.h), in fp32 and bf16.

#include <torch/torch.h>

#include <algorithm>
#include <iostream>
#include <string>

#include "core/error.h"
#include "ops/cpu_isa.h"
#include "ops/matmul.h"
#include "ops/op_test_util.h"
#include "ops/q8_gemm.h"
#include "ops/threads.h"

namespace kvrag {
namespace {

using test::dtype_name;
using test::for_each_cpu_isa;
using test::max_abs_diff;

// The paths this CPU runs, in the test output (llama.cpp's test-backend-ops prints its backends).
TEST(CpuPaths, Report) {
  std::string levels;
  for (const auto isa : supported_cpu_isas())
    levels += std::string(levels.empty() ? "" : ", ") + cpu_isa_name(isa);
  std::cout << "[ cpu      ] best cpu isa: " << cpu_isa_name(best_cpu_isa())
            << "; paths tested: " << levels
            << "; native_bf16_matmul(): " << (native_bf16_matmul() ? "yes" : "no")
            << "; bf16_gemm_widened_to_fp32(): " << (bf16_gemm_widened_to_fp32() ? "yes" : "no")
            << "\n";
  RecordProperty("best_cpu_isa", cpu_isa_name(best_cpu_isa()));
  RecordProperty("native_bf16_matmul", native_bf16_matmul() ? "yes" : "no");
  RecordProperty("bf16_gemm_widened_to_fp32", bf16_gemm_widened_to_fp32() ? "yes" : "no");
  EXPECT_EQ(cpu_isa(), best_cpu_isa());
  EXPECT_EQ(supported_cpu_isas().front(), CpuIsa::kGeneric);
}

TEST(CpuPaths, LoweredLevelChangesPaths) {
  for_each_cpu_isa([] {
    EXPECT_EQ(native_bf16_matmul(), cpu_isa() >= CpuIsa::kAvx512);
    EXPECT_EQ(matmul_uses_blas_threads(torch::kBFloat16), !native_bf16_matmul());
    EXPECT_EQ(matmul_uses_blas_threads(torch::kInt8), !native_bf16_matmul());
    EXPECT_TRUE(matmul_uses_blas_threads(torch::kFloat32));
    EXPECT_EQ(fp32_gemm_on_onednn(), cpu_isa() >= CpuIsa::kAvx512);
    // Widened where there is oneDNN's sgemm and no fast bf16 (always without AVX512_BF16).
    if (cpu_isa() < CpuIsa::kAvx512) EXPECT_FALSE(bf16_gemm_widened_to_fp32());
    if (cpu_isa() == CpuIsa::kAvx512 || cpu_isa() == CpuIsa::kAvx512Vnni) {
      EXPECT_TRUE(bf16_gemm_widened_to_fp32());
    }
  });
  EXPECT_EQ(cpu_isa(), best_cpu_isa());
  // Above the best level is an error (levels are ordered: the top one is above every other).
  if (best_cpu_isa() < CpuIsa::kAvx512Bf16) {
    EXPECT_THROW(set_cpu_isa(CpuIsa::kAvx512Bf16), Error);
  }
}

// y = x Wᵀ + b in fp64 from the same inputs. x [..., in], w [out, in].
torch::Tensor reference_linear(const torch::Tensor& x, const torch::Tensor& w,
                               const torch::Tensor& b) {
  auto y = torch::matmul(x.to(torch::kFloat64), w.to(torch::kFloat64).t());
  return b.defined() ? y + b.to(torch::kFloat64) : y;
}

// Each element within its error bound: fp32 summation order (`terms` products of size ~1: about
// terms · 2⁻²⁴ times partial sums of size ~√terms, bounded by terms · 1e-7), bf16 one rounding of
// the fp32 result (2^-8 relative, plus the fp32 part).
void expect_close(const torch::Tensor& got, const torch::Tensor& want, torch::Dtype dtype,
                  const std::string& what, int64_t terms = 100) {
  ASSERT_EQ(got.scalar_type(), dtype) << what;
  ASSERT_EQ(got.sizes(), want.sizes()) << what;
  const auto err = (got.to(torch::kFloat64) - want).abs();
  const double sums = static_cast<double>(std::max<int64_t>(terms, 100)) * 1e-7;
  const auto bound =
      dtype == torch::kFloat32 ? want.abs() * 1e-6 + sums : want.abs() * (1.0 / 256) + sums;
  const auto over = (err > bound);
  EXPECT_FALSE(over.any().item<bool>()) << what << ": max error " << err.max().item<double>();
}

// Every row count up to the BLAS path (kGemvMaxRows + 1), odd sizes (SIMD tails, blocks of rows
// of W; 290: the AVX512_BF16 kernel's 128-weight steps, then a whole and a masked 32-weight
// block; 2085: long rows; with one row of x every range of rows is read four rows at a time, one
// from each quarter, and its last rows one at a time),
// with and without bias; under NoGradGuard (the matrix-vector kernel) and
// with autograd recording (always BLAS).
TEST(Linear, MatchesFp64ReferenceOnEveryPath) {
  configure_threads(2);
  torch::manual_seed(1);
  for_each_cpu_isa([] {
    for (const auto dtype : {torch::kFloat32, torch::kBFloat16}) {
      for (const int64_t in : {3, 64, 67, 95, 290, 2085}) {
        const auto w = test::randn({37, in}, dtype);
        const auto bias = test::randn({37}, dtype);
        for (int64_t rows = 1; rows <= kGemvMaxRows + 1; ++rows) {
          const auto x = test::randn({rows, in}, dtype);
          for (const auto& b : {torch::Tensor(), bias}) {
            const auto want = reference_linear(x, w, b);
            const std::string what = dtype_name(dtype) + " rows=" + std::to_string(rows) +
                                     " in=" + std::to_string(in) + (b.defined() ? " bias" : "");
            {
              torch::NoGradGuard no_grad;
              expect_close(kvrag::linear(x, w, b), want, dtype, what + " inference", in);
            }
            const auto xg = x.clone().requires_grad_(true);
            expect_close(kvrag::linear(xg, w, b).detach(), want, dtype, what + " autograd", in);
          }
        }
      }
    }
  });
}

// A bf16 weight of more than one fp32 tile (4100 × 2048: 33.6 MB in fp32, 3 tiles) where it is
// multiplied in fp32 (BLAS without native bf16 matmul; oneDNN's sgemm where
// bf16_gemm_widened_to_fp32(): AVX-512 levels below AVX512_BF16), and natively where it is.
TEST(Linear, Bf16WeightInFp32TilesCoversEveryOutput) {
  configure_threads(2);
  torch::manual_seed(2);
  const auto w = test::randn({4100, 2048}, torch::kBFloat16);
  const auto bias = test::randn({4100}, torch::kBFloat16);
  const auto x = test::randn({2, 10, 2048}, torch::kBFloat16);  // 20 rows: not the GEMV kernel
  const auto want = reference_linear(x, w, bias);
  torch::NoGradGuard no_grad;
  for_each_cpu_isa([&] {
    const auto got = kvrag::linear(x, w, bias);
    ASSERT_EQ(got.sizes(), want.sizes());
    // Outputs reach ~150, where a bf16 ulp is 1: one rounding (≤ 2⁻⁸ relative), two for
    // libtorch's native path (product, then bias), and 2048-term fp32 sums that may move a
    // value across a rounding boundary: within 2⁻⁷ of the largest output's size.
    const double bound = want.abs().max().item<double>() / 128;
    EXPECT_LE((got.to(torch::kFloat64) - want).abs().max().item<double>(), bound)
        << cpu_isa_name(cpu_isa());
  });
}

// Row counts that oneDNN multiplies slowly go through a padded GEMM (ops/matmul.h): the padding,
// and the product's rows, shape and gradient unchanged by it.
TEST(Linear, PaddedBf16RowsKeepTheProduct) {
  configure_threads(2);
  torch::manual_seed(3);
  for (const auto [m, padded] : std::vector<std::pair<int64_t, int64_t>>{
           {1, 1}, {64, 64}, {65, 128}, {128, 128}, {1464, 1472}}) {
    EXPECT_EQ(pad_rows_for_bf16_gemm(torch::zeros({m, 4})).size(0), padded) << m;
  }
  const auto w = test::randn({96, 256}, torch::kBFloat16);
  const auto bias = test::randn({96}, torch::kBFloat16);
  const auto x = test::randn({3, 61, 256}, torch::kBFloat16);  // 183 rows: padded to 192
  const auto want = reference_linear(x, w, bias);
  for_each_cpu_isa([&] {
    {
      torch::NoGradGuard no_grad;
      expect_close(kvrag::linear(x, w, bias), want, torch::kBFloat16, "inference");
    }
    const auto xg = x.to(torch::kFloat32).requires_grad_(true);
    const auto y = kvrag::linear(xg.to(torch::kBFloat16), w, bias);
    expect_close(y.detach(), want, torch::kBFloat16, "autograd");
    y.to(torch::kFloat32).sum().backward();
    // d(sum y)/dx = the column sums of W, for every one of the 183 rows (none lost to padding).
    const auto want_grad = w.to(torch::kFloat64).sum(0).expand({3, 61, 256});
    EXPECT_LE((xg.grad().to(torch::kFloat64) - want_grad).abs().max().item<double>(),
              want_grad.abs().max().item<double>() / 64);
  });
}

// fp32 inference with more rows than the matrix-vector kernel takes: oneDNN's sgemm where
// fp32_gemm_on_onednn() (yᵀ = W xᵀ, transposed into y), BLAS on lower paths and inside a
// SerialIntraOpGuard (BLAS then has more threads than libtorch's team). Row counts around
// oneDNN's thread split, leading dimensions, odd sizes, bias, a 2-D and a 3-D x.
TEST(Linear, Fp32GemmMatchesFp64ReferenceOnEveryPath) {
  configure_threads(2);
  torch::manual_seed(4);
  torch::NoGradGuard no_grad;
  for_each_cpu_isa([] {
    for (const int64_t in : {67, 768}) {
      const auto w = test::randn({301, in}, torch::kFloat32);
      const auto bias = test::randn({301}, torch::kFloat32);
      for (const auto& shape : std::vector<std::vector<int64_t>>{{9, in}, {64, in}, {2, 65, in}}) {
        const auto x = test::randn(shape, torch::kFloat32);
        for (const auto& b : {torch::Tensor(), bias}) {
          const auto want = reference_linear(x, w, b);
          const std::string what = std::string(cpu_isa_name(cpu_isa())) +
                                   " rows=" + std::to_string(x.numel() / in) +
                                   " in=" + std::to_string(in) + (b.defined() ? " bias" : "");
          expect_close(kvrag::linear(x, w, b), want, torch::kFloat32, what, in);
          {
            SerialIntraOpGuard serial;
            expect_close(kvrag::linear(x, w, b), want, torch::kFloat32, what + " serial", in);
          }
        }
      }
    }
  });
}

// SerialBlasGuard leaves OpenBLAS one thread while alive (where the BLAS is OpenBLAS) and gives
// the count back; ForwardThreadsGuard holds one for an fp32 forward on oneDNN.
TEST(Threads, SerialBlasGuardRestoresBlasThreads) {
  configure_threads(2);
  const int before = blas_threads();
  if (before <= 1) GTEST_SKIP() << "BLAS is not OpenBLAS or has one thread: " << before;
  {
    SerialBlasGuard guard;
    EXPECT_EQ(blas_threads(), 1);
  }
  EXPECT_EQ(blas_threads(), before);
  {
    ForwardThreadsGuard forward(true, torch::kFloat32);
    EXPECT_EQ(blas_threads(), fp32_gemm_on_onednn() ? 1 : before);
  }
  EXPECT_EQ(blas_threads(), before);
}

// An int8 forward that rounds rows of x to codes (BERT's, Q8ManyRows::kRowCodes) multiplies on
// libtorch's OpenMP team through oneDNN where the CPU lacks VNNI: the team keeps its threads and
// OpenBLAS gets one; multiplied over dequantized tiles instead, BLAS has the threads and the team
// one.
TEST(Threads, Int8ForwardThreadsFollowTheGemmThatRuns) {
  configure_threads(2);
  const int blas = blas_threads();
  for (const auto isa : supported_cpu_isas()) {
    const ScopedCpuIsa scope(isa);
    if (isa < CpuIsa::kAvx2 || q8_gemm_available() || native_bf16_matmul()) continue;
    {
      ForwardThreadsGuard forward(true, torch::kInt8, Q8ManyRows::kRowCodes);
      EXPECT_EQ(at::get_num_threads(), 2) << cpu_isa_name(isa);
      if (blas > 1) EXPECT_EQ(blas_threads(), 1) << cpu_isa_name(isa);
    }
    {
      ForwardThreadsGuard forward(true, torch::kInt8, Q8ManyRows::kDequantized);
      EXPECT_EQ(at::get_num_threads(), 1) << cpu_isa_name(isa);
      EXPECT_EQ(blas_threads(), blas) << cpu_isa_name(isa);
    }
    EXPECT_EQ(at::get_num_threads(), 2);
  }
}

// Batch dimensions of x ([2, 1, in]: two rows through the matrix-vector kernel, shaped back).
TEST(Linear, KeepsLeadingDimensions) {
  torch::NoGradGuard no_grad;
  const auto w = test::randn({5, 16}, torch::kFloat32);
  const auto x = test::randn({2, 1, 16}, torch::kFloat32);
  const auto y = kvrag::linear(x, w);
  ASSERT_EQ(y.sizes(), (std::vector<int64_t>{2, 1, 5}));
  EXPECT_LE(max_abs_diff(y, reference_linear(x, w, {})), 1e-5);
}

// No rows of x (an empty batch): an empty product on every path, oneDNN's sgemm included (which
// rejects a leading dimension of 0).
TEST(Linear, EmptyInputGivesEmptyOutputOnEveryPath) {
  torch::NoGradGuard no_grad;
  for_each_cpu_isa([] {
    for (const auto dtype : {torch::kFloat32, torch::kBFloat16}) {
      const auto w = test::randn({5, 16}, dtype);
      const auto y = kvrag::linear(torch::zeros({0, 16}, dtype), w, test::randn({5}, dtype));
      EXPECT_EQ(y.sizes(), (std::vector<int64_t>{0, 5})) << cpu_isa_name(cpu_isa());
      EXPECT_EQ(y.scalar_type(), dtype);
    }
  });
}

// a @ b with broadcast batch dimensions, as attention() uses it: a small product (libtorch's
// fallback kernel when it multiplies bf16 natively, ops/matmul.h) and one above 16³ multiply-adds.
TEST(Matmul, MatchesFp64ReferenceOnEveryPath) {
  torch::manual_seed(2);
  for_each_cpu_isa([] {
    for (const auto dtype : {torch::kFloat32, torch::kBFloat16}) {
      for (const int64_t n : {4, 17}) {
        const auto a = test::randn({1, 3, n, 16}, dtype);
        const auto b = test::randn({2, 3, 16, n}, dtype);
        // [2, 3, n, n]
        const auto want = torch::matmul(a.to(torch::kFloat64), b.to(torch::kFloat64));
        const auto got = kvrag::matmul(a, b);
        const std::string what = dtype_name(dtype) + " n=" + std::to_string(n);
        if (dtype == torch::kBFloat16 && native_bf16_matmul() && 6 * n * 16 * n <= 16 * 16 * 16) {
          // libtorch's fallback accumulates in bf16: each of the 16 partial sums rounded (2^-9
          // relative of at most Σ|a·b|), then nothing else.
          const auto terms =
              torch::matmul(a.to(torch::kFloat64).abs(), b.to(torch::kFloat64).abs());
          const auto over = (got.to(torch::kFloat64) - want).abs() > terms * (16.0 / 512) + 1e-5;
          EXPECT_FALSE(over.any().item<bool>()) << what << " (native, small)";
        } else {
          expect_close(got, want, dtype, what);
        }
      }
    }
  });
}

}  // namespace
}  // namespace kvrag
