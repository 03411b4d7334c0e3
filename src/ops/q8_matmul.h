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
// Activations. On kGeneric, kAvx2 and kAvx512 they stay fp32: each group's 32 products are
// int8 weights converted to fp32 times x, summed by FMA. Where the CPU has AVX-512 VNNI
// (kAvx512Vnni, the default there), q8_matmul first rounds each row of x to int8 the way
// quantize_q8 rounds weights, per group of 32 along K: s_x = max|x| / 127 (fp32, 0 for a group of
// zeros), q_x = round(x / s_x) in [-127, 127]; then every group's dot product is exact in
// integers (vpdpbusd, as llama.cpp's Q8_0 × Q8_0) and y = Σ_g (s_w,g s_x,g) Σ_j q_w,j q_x,j
// in fp32. The error this adds: each x is within s_x/2 of q_x s_x, so each output is within
// Σ_k |q_w,k s_w,k| s_x,k / 2 of the product on fp32 activations (plus fp32 rounding): each x off
// by at most max|x of its group| / 254, as each weight is. Random signs cancel most of it: on
// stories260K logits move 0.28 from fp32's against 0.19 with fp32 activations (test_int8_llama).
//
// Why int8 activations now (an earlier measurement argued against them, on a busier machine
// where memory bound every kernel): at M = 1, 2 threads, on a shared 2-core Sapphire Rapids VM
// (bench/bench_q8_matmul.cpp --repeats 5 --kernels int8), the fp32-activation AVX-512 kernel
// reads int8 weights at 33 GB/s from L2 and 7-16 GB/s from memory when a plain read stream gets
// 21-27 GB/s: it is compute bound (int8 → fp32 conversion and FMA for every 16 weights), and
// llama.cpp's Q8_0 decode is 1.4-1.7× faster. The VNNI kernel (one vpdpbusd per 64 weights and
// row of x) doubles the in-cache rate: 31-38 GB/s against 16-21 for AVX-512 in the same runs,
// with the read stream at 11-18 GB/s (the machine busy); from memory it reads 8.4-10.6 GB/s
// against 5.1-9.0, i.e. 60-80% of that stream, so memory binds it again. In natural order that
// kernel still spends ~6 vector instructions per 64 weights (a sign flip, the vpdpbusd, and a
// conversion, scale permute, multiply and FMA for its two groups); the decode order below takes
// it to one, the group sums staying exact in int32 lanes for 512 weights at a time.
//
// No torch: plain pointers and vectors, so the kernels compile quickly and can be wired to any
// weight store (a tensor, a mapped file) by the caller.
#pragma once

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

namespace kvrag {

// Weights per scale, along K.
constexpr int64_t kQ8Group = 32;

// A quantized weight W [rows = N, cols = K], K a multiple of kQ8Group.
// std::allocator, except that a value-initialised element is left unwritten: resizing a buffer
// that is about to be overwritten whole does not write zeros over it first (for a model's int8
// weights, a memset of every byte that was 7-11% of a 1.1B int8 load's profile).
template <typename T>
struct NoInitAllocator : std::allocator<T> {
  template <typename U>
  struct rebind {
    using other = NoInitAllocator<U>;
  };
  NoInitAllocator() = default;
  template <typename U>
  NoInitAllocator(const NoInitAllocator<U>&) noexcept {}
  template <typename U, typename... Args>
  void construct(U* p, Args&&... args) {
    if constexpr (sizeof...(Args) == 0) {
      ::new (static_cast<void*>(p)) U;  // default-, not value-initialised
    } else {
      ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
    }
  }
};

// Groups interleaved together in the decode order (below): 512 weights.
constexpr int64_t kQ8Interleave = 16;

struct Q8Matrix {
  int64_t rows = 0;                                   // N: output features
  int64_t cols = 0;                                   // K: input features
  std::vector<int8_t, NoInitAllocator<int8_t>> q;     // [N, K] in [-127, 127]: round(w / scale)
  std::vector<float, NoInitAllocator<float>> scales;  // [N, K/32]: max|w| / 127 of each group
                                                      // (0 for a group of zeros)
  // The order of each row's K values in q. false: natural (k = 0, 1, …). true: the decode order
  // (interleave_q8) — each run of 16 whole groups (512 values) holds 8 steps of 64 bytes, step t
  // holding bytes 4t…4t+3 of each of the 16 groups in turn; the last G mod 16 groups of a row
  // stay natural. Every kernel reads both orders; the scales' order never changes.
  bool interleaved = false;

  int64_t groups_per_row() const { return cols / kQ8Group; }
  // Bytes a product reads: the int8 values and the scales.
  int64_t bytes() const { return static_cast<int64_t>(q.size() + scales.size() * sizeof(float)); }
};

// Error "WHAT: malformed int8 weight [N, K] (… values, … scales)" unless K is a positive
// multiple of kQ8Group and w holds N × K values and N × K/32 scales: the products' first check.
void check_q8_matrix(const Q8Matrix& w, const char* what);

// Quantizes a row-major fp32 W [n, k]. Error (naming the shape) unless k is a positive multiple
// of kQ8Group, or if a weight is not finite (naming its place). Parallel over rows on kvrag's
// helper threads (ops/threads.h).
Q8Matrix quantize_q8(const float* w, int64_t n, int64_t k);

// The same from bf16 weights given as their 16 bits (the top half of an fp32), as checkpoints
// store them; each converts exactly to fp32 first.
Q8Matrix quantize_q8_bf16(const uint16_t* w, int64_t n, int64_t k);

// Reorders w's values into the decode order (above; no-op if already there). Why: on AVX-512 VNNI,
// one vpdpbusd then adds each of 16 groups' 4-byte steps into its own int32 lane, so a group's
// sum stays exact in its lane across the run's 8 steps and is converted and scaled once per 512
// weights, where the natural order spends a sign flip, a conversion, a scale permute, a multiply
// and an FMA per 64 (q8_matmul below, README "int8 decode order"). Parallel over rows.
void interleave_q8(Q8Matrix& w);

// Brings w into the order q8_matmul reads fastest on the CPU level in use (cpu_isa()): the decode
// order where it has AVX-512 VNNI, natural elsewhere. Model loading calls it on every int8 weight.
void use_fastest_q8_order(Q8Matrix& w);

// Row n of W's values in natural order into out [K].
void q8_natural_row(const Q8Matrix& w, int64_t n, int8_t* out);

// A copy of w in natural order (for writers of the natural layout, and the kernels that read
// only it).
Q8Matrix q8_natural(const Q8Matrix& w);

// out [N, K] = q · scale in natural order: the weights the products below multiply by (for
// tests).
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
// scaled (Σ_g scale_g Σ_j q_j x_j). The kernel is chosen by cpu_isa(): portable C++, AVX2+FMA or
// AVX-512 compute in fp32 throughout and differ only in the order of fp32 additions; AVX-512 VNNI
// rounds x to int8 per group first (above: each output within Σ_k |w_k| s_x,k / 2 of theirs), and
// makes an output NaN where a group of x it reads holds a NaN or an infinity. Every output is
// computed the same way whatever m and however N is split (one token's logits do not depend on
// the batch around it). Rows of
// x go in blocks of up to 8 per pass over a tile of W, so one pass of W serves the whole decode
// step (m ≤ 8) and larger m rereads W tiles from cache; parallel over N (output features) on
// kvrag's helper threads. Reads either order of w (Q8Matrix::interleaved); the fp32-activation
// kernels read a weight in the decode order through a natural copy made for the call (a level
// lowered after loading: slow, but the same outputs).
void q8_matmul(const float* x, int64_t m, const Q8Matrix& w, float* y);

}  // namespace kvrag
