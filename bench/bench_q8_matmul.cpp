// Decode-step (M = 1) matrix-vector products of one LLM weight, as bytes of weight read per
// second: int8 q8_matmul() on every CPU path this machine runs, fp32 and bf16 linear(), the same
// products through libtorch (OpenBLAS, oneDNN: what the hand-written kernels must beat), and a
// plain vectorised read of memory in the same run for the ceiling (ops/q8_matmul.h says why
// decoding is bound by it). Prints the CPU features it ran with, as llama-bench does.
//
//   bench_q8_matmul [--threads 2] [--repeats 10] [--hot] [--kernels all|int8] [--rows 128]
//                   [--decode-rows 1]
//
// A timed pass goes through copies of the weight filling 512 MiB (about 5× the L3 here) and
// reports the time per copy: as decoding reads one layer after another from a model far larger
// than the caches, each copy comes from memory. (Reading another buffer in between evicts
// less than it seems: Xeons' non-inclusive L3 keeps much of the weight.) --hot uses one copy,
// which stays in cache where it fits. --decode-rows R (1-8) multiplies R rows of x instead of
// one, as a decode step of a batch of R does (GB/s are still bytes of the weight, read once for
// all R). A last table times int8 on a weight that stays in L2: the kernels' compute rate, which
// says whether a faster inner loop could help at M = 1 (it did: the avx512vnni path on int8
// activations, ops/q8_matmul.h).
//
// Then prefill: products with --rows rows of x (a prompt's tokens) by each weight of a 1.1B
// TinyLlama layer, in GFLOP/s (2 M N K / time): int8 through q8_linear on every path (q8_gemm's
// integer products with AVX-512 VNNI, else W dequantized to bf16 or fp32 tiles for libtorch's
// GEMM), bf16 and fp32 weights through linear(). Compute-bound: the weights stay in cache.

#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <mutex>
#include <string>
#include <type_traits>
#include <vector>

#include "bench_common.h"
#include "bench_memory.h"
#include "ops/cpu_isa.h"
#include "ops/matmul.h"
#include "ops/q8_gemm.h"
#include "ops/q8_linear.h"
#include "ops/q8_matmul.h"
#include "ops/threads.h"

namespace kvrag {
namespace {

// A copy of w in the order q8_matmul reads fastest at the CPU level in use.
Q8Matrix in_fastest_order(Q8Matrix w) {
  use_fastest_q8_order(w);
  return w;
}

// Copies of a weight (a tensor or a Q8Matrix) filling `total` bytes, at least one.
template <typename T>
std::vector<T> copies(const T& one, double bytes_each, double total) {
  const int64_t count = std::max<int64_t>(1, static_cast<int64_t>(std::ceil(total / bytes_each)));
  std::vector<T> out;
  for (int64_t c = 0; c < count; ++c) {
    if constexpr (std::is_same_v<T, torch::Tensor>) {
      out.push_back(one.clone());
    } else {
      out.push_back(one);
    }
  }
  return out;
}

struct Timer {
  int repeats;
  double total_bytes;  // what the copies of one weight fill (0: one copy)

  // Best time per copy over `repeats` passes of f(copy) over every copy.
  template <typename T, typename F>
  double best(const T& weight, double bytes, F&& f) {
    const auto all = copies(weight, bytes, total_bytes);
    for (const auto& w : all) f(w);  // warm-up: pages touched, helper threads started
    const double t = bench::best_time(repeats, [&] {
      for (const auto& w : all) f(w);
    });
    return t / static_cast<double>(all.size());
  }
};

void row(const std::string& shape, const std::string& kernel, const char* path, double bytes,
         double seconds) {
  std::printf("| %-14s | %-16s | %-10s | %8.1f | %9.1f | %6.2f |\n", shape.c_str(), kernel.c_str(),
              path, bytes / (1 << 20), seconds * 1e6, bytes / seconds / 1e9);
}

void header() {
  std::printf("| %-14s | %-16s | %-10s | %8s | %9s | %6s |\n", "weight [N, K]", "kernel", "path",
              "MiB", "time (us)", "GB/s");
  std::printf("|%s|%s|%s|%s|%s|%s|\n", std::string(16, '-').c_str(), std::string(18, '-').c_str(),
              std::string(12, '-').c_str(), std::string(10, '-').c_str(),
              std::string(11, '-').c_str(), std::string(8, '-').c_str());
}

void bench_weight(int64_t n, int64_t k, int64_t m, Timer& timer, bool int8_only) {
  torch::NoGradGuard no_grad;
  const std::string shape = std::to_string(n) + " x " + std::to_string(k);
  const auto w32 = torch::randn({n, k}) * 0.02;  // [N, K] fp32
  const auto w16 = w32.to(torch::kBFloat16);     // [N, K] bf16
  const auto q = quantize_q8(w32.data_ptr<float>(), n, k);
  const auto x = torch::randn({m, k});  // [M, K]: a decode step of a batch of M
  const auto x16 = x.to(torch::kBFloat16);
  std::vector<float> y(m * n);  // [M, N]
  const double q_bytes = static_cast<double>(q.bytes());
  for (const auto isa : supported_cpu_isas()) {
    const ScopedCpuIsa scope(isa);
    const Q8Matrix ordered = in_fastest_order(q);  // as a model load leaves it
    const double t = timer.best(ordered, q_bytes, [&](const Q8Matrix& w) {
      q8_matmul(x.data_ptr<float>(), m, w, y.data());
    });
    row(shape, "int8 q8_matmul", cpu_isa_name(isa), q_bytes, t);
    if (ordered.interleaved) {
      // The natural order on the same level: every group one at a time, as the groups after a
      // row's runs go (not the natural-order kernel the decode order replaced).
      const double tn = timer.best(
          q, q_bytes, [&](const Q8Matrix& w) { q8_matmul(x.data_ptr<float>(), m, w, y.data()); });
      row(shape, "int8 per group", cpu_isa_name(isa), q_bytes, tn);
    }
  }
  // Dequantizing to bf16, as q8_linear does for each product with many rows (prefill): bytes
  // read and written.
  {
    std::vector<uint16_t> tile(static_cast<size_t>(n * k));
    for (const auto isa : supported_cpu_isas()) {
      const ScopedCpuIsa scope(isa);
      const double t = timer.best(in_fastest_order(q), q_bytes, [&](const Q8Matrix& w) {
        dequantize_q8_rows_bf16(w, 0, n, tile.data());
      });
      row(shape, "int8 → bf16 rows", cpu_isa_name(isa), q_bytes + 2.0 * n * k, t);
    }
  }
  if (int8_only) return;
  for (const auto isa : supported_cpu_isas()) {
    const ScopedCpuIsa scope(isa);
    const double t =
        timer.best(w32, 4.0 * n * k, [&](const torch::Tensor& w) { kvrag::linear(x, w); });
    row(shape, "fp32 linear", cpu_isa_name(isa), 4.0 * n * k, t);
  }
  for (const auto isa : supported_cpu_isas()) {
    const ScopedCpuIsa scope(isa);
    const double t =
        timer.best(w16, 2.0 * n * k, [&](const torch::Tensor& w) { kvrag::linear(x16, w); });
    row(shape, "bf16 linear", cpu_isa_name(isa), 2.0 * n * k, t);
  }
  // libtorch's own products at the same M, for the choice of a hand-written matrix-vector kernel:
  // fp32 through OpenBLAS, bf16 through oneDNN where the CPU has AVX-512 (else its scalar loop).
  const double t32 = timer.best(
      w32, 4.0 * n * k, [&](const torch::Tensor& w) { torch::nn::functional::linear(x, w); });
  row(shape, "fp32 libtorch", "BLAS", 4.0 * n * k, t32);
  if (native_bf16_matmul()) {
    const double t16 = timer.best(
        w16, 2.0 * n * k, [&](const torch::Tensor& w) { torch::nn::functional::linear(x16, w); });
    row(shape, "bf16 libtorch", "oneDNN", 2.0 * n * k, t16);
  }
}

void gemm_row(const std::string& shape, const char* kernel, const char* path, double flops,
              double seconds) {
  std::printf("| %-14s | %-16s | %-10s | %9.2f | %7.1f |\n", shape.c_str(), kernel, path,
              seconds * 1e3, flops / seconds / 1e9);
}

// Prefill: x [m, K] · Wᵀ for W [n, K] in int8, bf16 and fp32, on every path.
void bench_gemm(int64_t n, int64_t k, int64_t m, int repeats) {
  torch::NoGradGuard no_grad;
  const std::string shape = std::to_string(n) + " x " + std::to_string(k);
  const double flops = 2.0 * m * n * k;
  const auto w32 = torch::randn({n, k}) * 0.02;  // [N, K]
  const auto w16 = w32.to(torch::kBFloat16);
  const auto natural = quantize_q8(w32.data_ptr<float>(), n, k);
  const auto x = torch::randn({m, k});  // [M, K]
  const auto x16 = x.to(torch::kBFloat16);
  auto time = [&](auto&& f) {
    f();  // warm-up
    return bench::best_time(repeats, f);
  };
  // The best path first: the others' BLAS threads spin on after their products (OpenBLAS's
  // pthread pool waits busy for a while), taking the core that q8_gemm's helper needs.
  const auto isas = supported_cpu_isas();
  for (auto it = isas.rbegin(); it != isas.rend(); ++it) {
    const CpuIsa isa = *it;
    const ScopedCpuIsa scope(isa);
    const auto q = std::make_shared<const Q8Matrix>(in_fastest_order(natural));
    const char* how = q8_gemm_available()    ? "int8 q8_gemm"
                      : native_bf16_matmul() ? "int8→bf16 GEMM"
                                             : "int8→fp32 GEMM";
    gemm_row(shape, how, cpu_isa_name(isa), flops, time([&] { q8_linear(x, q); }));
  }
  for (const auto isa : supported_cpu_isas()) {
    const ScopedCpuIsa scope(isa);
    if (isa == CpuIsa::kGeneric) continue;  // bf16 without AVX2: libtorch's scalar loop
    gemm_row(shape, "bf16 linear", cpu_isa_name(isa), flops,
             time([&] { kvrag::linear(x16, w16); }));
  }
  // fp32: oneDNN's sgemm where fp32_gemm_on_onednn(), and then BLAS (the AVX2 path's) beside it.
  const auto fp32 = [&] { return time([&] { kvrag::linear(x, w32); }); };
  gemm_row(shape, "fp32 linear", fp32_gemm_on_onednn() ? "oneDNN" : "BLAS", flops, fp32());
  if (fp32_gemm_on_onednn()) {
    const ScopedCpuIsa scope(CpuIsa::kAvx2);
    gemm_row(shape, "fp32 linear", "BLAS", flops, fp32());
  }
}

int run(int argc, char** argv) {
  const bench::Args args(argc, argv,
                         {{"threads", "2"},
                          {"repeats", "10"},
                          {"kernels", "all"},
                          {"rows", "128"},
                          {"decode-rows", "1"}},
                         {"hot"});
  const int threads = configure_threads(static_cast<int>(args.integer("threads")));
  const int repeats = static_cast<int>(args.integer("repeats"));
  std::string paths;
  for (const auto isa : supported_cpu_isas())
    paths += std::string(paths.empty() ? "" : ", ") + cpu_isa_name(isa);
  const bool hot = args.flag("hot");
  const std::string kernels = args.str("kernels");
  if (kernels != "all" && kernels != "int8") throw std::runtime_error("--kernels all|int8");
  const bool int8_only = kernels == "int8";
  const int64_t decode_rows = args.integer("decode-rows");
  KVRAG_CHECK(decode_rows >= 1 && decode_rows <= kGemvMaxRows,
              "--decode-rows {}: the matrix-vector kernels take 1 to {} rows", decode_rows,
              kGemvMaxRows);
  std::printf("cpu: best isa %s (paths: %s); threads %d; %s\n", cpu_isa_name(best_cpu_isa()),
              paths.c_str(), threads,
              hot ? "one copy of each weight (cache-resident where it fits)"
                  : "copies of each weight filling 512 MiB, read in turn");

  std::printf("cpu features: %s\n", cpu_features().c_str());

  // Measured before and after the tables: on a shared machine it moves.
  std::vector<float> big((int64_t{256} << 20) / sizeof(float), 1.0f);  // [64 Mi] fp32, touched
  auto stream = [&](const char* when) {
    volatile float sink = bench::read_stream(big);
    const double t = bench::best_time(repeats, [&] { sink = sink + bench::read_stream(big); });
    std::printf("memory read stream %s (%s loads, 256 MiB, %d threads): %.2f GB/s\n", when,
                best_cpu_isa() >= CpuIsa::kAvx2 ? "avx2" : "scalar", threads,
                big.size() * sizeof(float) / t / 1e9);
  };
  stream("before");
  std::printf("\n");

  Timer timer{repeats, hot ? 0.0 : double(int64_t{512} << 20)};
  std::printf("decode: %lld row(s) of x by each weight\n", static_cast<long long>(decode_rows));
  header();
  bench_weight(2048, 5632, decode_rows, timer, int8_only);
  bench_weight(4096, 11008, decode_rows, timer, int8_only);

  // In L2 (1.1 MiB of int8, half per thread), repeated: the rate the kernels could reach if
  // memory kept up.
  std::printf("\nin cache:\n");
  header();
  Timer in_cache{repeats * 50, 0.0};
  const auto w = torch::randn({1024, 1024});
  const auto q = quantize_q8(w.data_ptr<float>(), 1024, 1024);
  const auto x = torch::randn({1, 1024});
  std::vector<float> y(1024);
  for (const auto isa : supported_cpu_isas()) {
    const ScopedCpuIsa scope(isa);
    const double t =
        in_cache.best(in_fastest_order(q), static_cast<double>(q.bytes()),
                      [&](const Q8Matrix& m) { q8_matmul(x.data_ptr<float>(), 1, m, y.data()); });
    row("1024 x 1024", "int8 q8_matmul", cpu_isa_name(isa), static_cast<double>(q.bytes()), t);
  }
  const int64_t rows = args.integer("rows");
  std::printf("\nprefill: %lld rows of x by a 1.1B layer's weights (in cache)\n",
              static_cast<long long>(rows));
  std::printf("| %-14s | %-16s | %-10s | %9s | %7s |\n", "weight [N, K]", "kernel", "path",
              "time (ms)", "GFLOP/s");
  std::printf("|%s|%s|%s|%s|%s|\n", std::string(16, '-').c_str(), std::string(18, '-').c_str(),
              std::string(12, '-').c_str(), std::string(11, '-').c_str(),
              std::string(9, '-').c_str());
  for (const auto [n, k] :
       {std::pair<int64_t, int64_t>{2048, 2048}, {256, 2048}, {5632, 2048}, {2048, 5632}}) {
    bench_gemm(n, k, rows, repeats);
  }
  std::printf("\n");
  stream("after");
  return 0;
}

}  // namespace
}  // namespace kvrag

int main(int argc, char** argv) {
  return kvrag::bench::guarded_main("bench_q8_matmul", argc, argv, kvrag::run);
}
