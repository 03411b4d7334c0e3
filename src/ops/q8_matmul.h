// Weight-only int8 (Q8_0, as llama.cpp names it): a weight W [N, K] (out × in, HF layout) stored
// as int8 values in groups of 32 along K, one fp32 scale per group, and y = x Wᵀ with fp32
// activations and fp32 accumulation.
//
// Why this format. Decoding multiplies one row of activations by every weight once per token, so
// its speed is the rate at which weights come from memory: 1.125 bytes a weight here against 2
// for bf16 and 4 for fp32. Groups of 32 keep a large weight from costing its neighbours their
// precision (error ≤ scale/2 per weight, scale = max|w|/127 over 32 weights only).
//
// Why fp32 scales (llama.cpp stores fp16): the scale is exactly max|w|/127 as computed, so the
// round-trip bound holds without a second rounding, and a group of small weights keeps its
// precision (an fp16 scale is subnormal below 6.1e-5, i.e. for max|w| < 7.8e-3, where its
// relative precision drops below the int8 values' own). The cost is 36 bytes a group instead of
// 34: ~6% more traffic in a memory-bound product.
//
// Why fp32 activations, not int8 ones through AVX-512 VNNI (vpdpbusd, llama.cpp's Q8_0 × Q8_0):
// at M = 1 the AVX-512 kernel here computes at 18-36 GB/s of weights on a weight in L2 but reads
// 8-9 GB/s from memory, against a memory read stream of 9-14 GB/s in the same run
// (bench/bench_q8_matmul.cpp, 2 threads on a shared 2-core Sapphire Rapids VM). A faster inner
// loop could gain at most that gap, and rounding the activations to int8 would add an error as
// large as the weights' own. Worth measuring again for prefill (large m), where compute binds.
//
// No torch: plain pointers and vectors, so the kernels compile quickly and can be wired to any
// weight store (a tensor, a mapped file) by the caller.
#pragma once

#include <cstdint>
#include <vector>

namespace kvrag {

// Weights per scale, along K.
constexpr int64_t kQ8Group = 32;

// A quantized weight W [rows = N, cols = K], K a multiple of kQ8Group.
struct Q8Matrix {
  int64_t rows = 0;           // N: output features
  int64_t cols = 0;           // K: input features
  std::vector<int8_t> q;      // [N, K] in [-127, 127]: round(w / scale)
  std::vector<float> scales;  // [N, K/32]: max|w| / 127 of each group (0 for a group of zeros)

  int64_t groups_per_row() const { return cols / kQ8Group; }
  // Bytes a product reads: the int8 values and the scales.
  int64_t bytes() const { return static_cast<int64_t>(q.size() + scales.size() * sizeof(float)); }
};

// Quantizes a row-major fp32 W [n, k]. Error (naming the shape) unless k is a positive multiple
// of kQ8Group, or if a weight is not finite (naming its place). Parallel over rows on kvrag's
// helper threads (ops/threads.h).
Q8Matrix quantize_q8(const float* w, int64_t n, int64_t k);

// The same from bf16 weights given as their 16 bits (the top half of an fp32), as checkpoints
// store them; each converts exactly to fp32 first.
Q8Matrix quantize_q8_bf16(const uint16_t* w, int64_t n, int64_t k);

// out [N, K] = q · scale: the weights the products below multiply by (for tests).
void dequantize_q8(const Q8Matrix& w, float* out);

// Rows [n0, n1) of W dequantized into out [n1 - n0, K]: as fp32 (exactly q · scale, as above), or
// as bf16 bits (q · scale rounded to nearest even: relative error ≤ 2⁻⁹, below the int8 rounding's
// scale/2). For products with many rows of x, which go to a GEMM over tiles of W dequantized
// this way (ops/q8_linear.h). Vectorised by cpu_isa(); on the calling thread only, so that the
// caller can split rows over the thread pool its GEMM uses (a second pool spinning beside it
// would take the cores, see ops/threads.h).
void dequantize_q8_rows(const Q8Matrix& w, int64_t n0, int64_t n1, float* out);
void dequantize_q8_rows_bf16(const Q8Matrix& w, int64_t n0, int64_t n1, uint16_t* out);

// y [m, N] = x [m, K] · Wᵀ, x and y fp32 row-major. Each group's 32 products are summed and then
// scaled (Σ_g scale_g Σ_j q_j x_j), in fp32 throughout. The kernel is chosen by cpu_isa()
// (portable C++, AVX2+FMA or AVX-512); they differ only in the order of fp32 additions. Rows of
// x go in blocks of up to 8 per pass over a tile of W, so one pass of W serves the whole decode
// step (m ≤ 8) and larger m rereads W tiles from cache; parallel over N (output features) on
// kvrag's helper threads.
void q8_matmul(const float* x, int64_t m, const Q8Matrix& w, float* y);

}  // namespace kvrag
