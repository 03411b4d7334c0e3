#include "ops/matmul.h"

#include <oneapi/dnnl/dnnl.h>
#include <torch/torch.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "core/error.h"
#include "ops/cpu_isa.h"
#include "ops/op_support.h"
#include "ops/simd.h"
#include "ops/threads.h"

namespace kvrag {
namespace {

// --- matrix-vector kernel (y = x W^T for a few rows of x) ----------------------------------------
//
// W [out, in] row-major, fp32 or bf16; x [R, in] fp32; y [R, out] fp32. Each thread takes ranges
// of output features; within one, every row of W is read once and applied to all R rows of x.
// AVX2/FMA versions (and AVX-512 for bf16 weights, below) are chosen at run time; the portable one
// has the same structure.

// Calls f(std::integral_constant<int, R>{}) for a row count 1 ≤ R ≤ kGemvMaxRows of x, so that a
// kernel takes R as a template argument and keeps its accumulators in registers.
template <typename F>
void with_row_count(int64_t R, F&& f) {
  static_assert(kGemvMaxRows == 8, "one case per row count below");
  switch (R) {
    case 1:
      return f(std::integral_constant<int, 1>{});
    case 2:
      return f(std::integral_constant<int, 2>{});
    case 3:
      return f(std::integral_constant<int, 3>{});
    case 4:
      return f(std::integral_constant<int, 4>{});
    case 5:
      return f(std::integral_constant<int, 5>{});
    case 6:
      return f(std::integral_constant<int, 6>{});
    case 7:
      return f(std::integral_constant<int, 7>{});
    default:
      return f(std::integral_constant<int, 8>{});
  }
}

inline float to_float(float v) { return v; }
inline float to_float(c10::BFloat16 v) { return static_cast<float>(v); }

template <typename W>
void gemv_portable(const W* w, const float* x, float* y, int64_t R, int64_t in, int64_t out,
                   int64_t o_begin, int64_t o_end) {
  for (int64_t o = o_begin; o < o_end; ++o) {
    const W* wo = w + o * in;
    for (int64_t r = 0; r < R; ++r) {
      const float* xr = x + r * in;
      float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};  // independent partial sums
      int64_t i = 0;
      for (; i + 8 <= in; i += 8) {
        for (int j = 0; j < 8; ++j) acc[j] += to_float(wo[i + j]) * xr[i + j];
      }
      float sum = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
      for (; i < in; ++i) sum += to_float(wo[i]) * xr[i];
      y[r * out + o] = sum;
    }
  }
}

#if KVRAG_X86

// Row o of fp32 W times R rows of x, U blocks of 8 weights per step (independent accumulators,
// summed pairwise at the end), W prefetched kAhead bytes ahead (0: not at all).
template <int R, int U, int kAhead>
KVRAG_AVX2 void row_avx2(const float* w, const float* x, float* y, int64_t in, int64_t out,
                         int64_t o) {
  const float* wo = w + o * in;  // [in]
  __m256 acc[U][R];
  for (auto& accu : acc) {
    for (auto& v : accu) v = _mm256_setzero_ps();
  }
  int64_t i = 0;
  for (; i + 8 * U <= in; i += 8 * U) {
    for (int u = 0; u < U; ++u) {
      if constexpr (kAhead > 0) {  // once a 64-byte line
        if (u % 2 == 0)
          _mm_prefetch(reinterpret_cast<const char*>(wo + i + 8 * u) + kAhead, _MM_HINT_T0);
      }
      const __m256 wv = _mm256_loadu_ps(wo + i + 8 * u);
      for (int r = 0; r < R; ++r)
        acc[u][r] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + r * in + i + 8 * u), acc[u][r]);
    }
  }
  for (; i + 8 <= in; i += 8) {
    const __m256 wv = _mm256_loadu_ps(wo + i);
    for (int r = 0; r < R; ++r)
      acc[0][r] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + r * in + i), acc[0][r]);
  }
  for (int r = 0; r < R; ++r) {
    for (int step = 1; step < U; step *= 2) {  // U = 4: (a0 + a1) + (a2 + a3)
      for (int u = 0; u + step < U; u += 2 * step)
        acc[u][r] = _mm256_add_ps(acc[u][r], acc[u + step][r]);
    }
    float s = hsum256(acc[0][r]);
    for (int64_t k = i; k < in; ++k) s += wo[k] * x[r * in + k];
    y[r * out + o] = s;
  }
}

// Rows o + k·stride (k < 4) of fp32 W times one row of x: four independent FMA chains, each row
// its own stream prefetched 1 KB ahead.
KVRAG_AVX2 void rows4_avx2(const float* w, const float* x, float* y, int64_t in, int64_t o,
                           int64_t stride) {
  constexpr int kAhead = 1024;
  const float* wk[4];  // [in] each
  for (int k = 0; k < 4; ++k) wk[k] = w + (o + k * stride) * in;
  __m256 acc[4];
  for (auto& a : acc) a = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= in; i += 16) {  // one 64-byte line of each row
    const __m256 x0 = _mm256_loadu_ps(x + i), x1 = _mm256_loadu_ps(x + i + 8);
    for (int k = 0; k < 4; ++k) {
      _mm_prefetch(reinterpret_cast<const char*>(wk[k] + i) + kAhead, _MM_HINT_T0);
      acc[k] = _mm256_fmadd_ps(_mm256_loadu_ps(wk[k] + i), x0, acc[k]);
      acc[k] = _mm256_fmadd_ps(_mm256_loadu_ps(wk[k] + i + 8), x1, acc[k]);
    }
  }
  for (; i + 8 <= in; i += 8) {
    const __m256 xv = _mm256_loadu_ps(x + i);
    for (int k = 0; k < 4; ++k) acc[k] = _mm256_fmadd_ps(_mm256_loadu_ps(wk[k] + i), xv, acc[k]);
  }
  for (int k = 0; k < 4; ++k) {
    float s = hsum256(acc[k]);
    for (int64_t j = i; j < in; ++j) s += wk[k][j] * x[j];
    y[o + k * stride] = s;
  }
}

// fp32 weights.
KVRAG_AVX2 void gemv_avx2(const float* w, const float* x, float* y, int64_t R, int64_t in,
                          int64_t out, int64_t o_begin, int64_t o_end) {
  if (R == 1) {
    // One row of x (decoding): the range cut into 4 equal parts read side by side, row j of every
    // part together: four independent chains, and four streams per thread, as bench_memory.h's
    // read stream reads (one stream per thread drew 62-81% of that stream on this VM, four
    // 92-126%: README "Four streams a thread"). Four adjacent rows instead were short streams
    // that the prefetchers followed less well than one row at a time. The last rows go one at a
    // time, four accumulators deep.
    const int64_t part = (o_end - o_begin) / 4;
    for (int64_t j = 0; j < part; ++j) rows4_avx2(w, x, y, in, o_begin + j, part);
    for (int64_t o = o_begin + 4 * part; o < o_end; ++o) row_avx2<1, 4, 0>(w, x, y, in, out, o);
    return;
  }
  // Several rows of x (a batch decoding): one row of W at a time, a single stream per thread,
  // its R products accumulated in registers; from three rows on each block costs R FMAs, near
  // the kernel's compute rate, so W is also prefetched 4 KB ahead. A stand-alone test of 5632 ×
  // 2048 from memory (AMD EPYC, Zen 5, 2 threads, two rounds), GB/s against the loop over a
  // run-time R this replaced: R = 2 27-38 → 32-37, R = 3 18 → 33-35, R = 4 16 → 29-32, R = 6 15-17
  // → 24-30, R = 8 12-14 → 18-21.
  with_row_count(R, [&](auto rows) {
    constexpr int kR = decltype(rows)::value;
    constexpr int U = kR <= 3 ? 4 : kR == 4 ? 2 : 1;
    constexpr int kAhead = kR <= 2 ? 0 : 4096;
    for (int64_t o = o_begin; o < o_end; ++o) row_avx2<kR, U, kAhead>(w, x, y, in, out, o);
  });
}

// --- bf16 weights without a widening shuffle -----------------------------------------------------
//
// A vector of 2L bf16 weights holds L 32-bit lanes, each a pair (w_2j low half, w_2j+1 high).
// Shifting a lane left by 16 gives w_2j as an fp32, clearing its low half gives w_2j+1: exact, and
// two plain integer operations per 2L weights where widening each half (vpmovzxwd, a cross-lane
// shuffle) and shifting it costs four. So x is split once per call into its even and odd elements
// (SplitX), and a block of W meets them lane for lane. Measured against widening (bench_q8_matmul,
// AMD EPYC, 2 threads): the widening kernel ran at 40-48 GB/s where fp32 weights streamed at
// 55-65, i.e. it was bound by those instructions, not by memory.

// x [R, in] fp32 as R rows of [2, half]: its even elements, then its odd ones, each zero-padded to
// `half` (a multiple of 16): [R, 2, half].
struct SplitX {
  std::vector<float> data;
  int64_t half = 0;

  SplitX(const float* x, int64_t R, int64_t in) : half((in / 2 + 1 + 15) / 16 * 16) {
    data.assign(R * 2 * half, 0.0f);
    for (int64_t r = 0; r < R; ++r) {
      float* even = data.data() + r * 2 * half;
      float* odd = even + half;
      for (int64_t i = 0; i < in; ++i) (i % 2 ? odd : even)[i / 2] = x[r * in + i];
    }
  }
  const float* even(int64_t r) const { return data.data() + r * 2 * half; }
  const float* odd(int64_t r) const { return even(r) + half; }
};

// Accumulators per output: with one row of x, two (even and odd weights) so that a block's two
// FMAs do not wait on each other; with more rows, the rows already give independent chains.
constexpr int accumulators_bf16(int R) { return R == 1 ? 2 : 1; }

// One block of 16 weights in each of B rows of W (wv) times R rows of x, at element 2h of x.
// A function, not a lambda: GCC's lambdas do not take the target attribute of the function
// around them.
template <int B, int R, int A>
KVRAG_AVX2 inline void block_bf16_avx2(__m256 (&acc)[B][R][A], const __m256i (&wv)[B],
                                       const SplitX& xs, int64_t h) {
  const __m256i high = _mm256_set1_epi32(static_cast<int>(0xFFFF0000u));
  for (int r = 0; r < R; ++r) {
    const __m256 xe = _mm256_loadu_ps(xs.even(r) + h), xo = _mm256_loadu_ps(xs.odd(r) + h);
    for (int b = 0; b < B; ++b) {
      const __m256 we = _mm256_castsi256_ps(_mm256_slli_epi32(wv[b], 16));
      const __m256 wd = _mm256_castsi256_ps(_mm256_and_si256(wv[b], high));
      acc[b][r][0] = _mm256_fmadd_ps(we, xe, acc[b][r][0]);
      acc[b][r][A - 1] = _mm256_fmadd_ps(wd, xo, acc[b][r][A - 1]);
    }
  }
}

// Rows [o, o + B) of W (bf16 bits) times R rows of x, 8 lanes (16 weights a load), W prefetched
// kAhead bytes ahead (0: not at all).
template <int B, int R, int kAhead>
KVRAG_AVX2 void rows_bf16_avx2(const uint16_t* w, const SplitX& xs, float* y, int64_t in,
                               int64_t out, int64_t o) {
  constexpr int A = accumulators_bf16(R);
  __m256 acc[B][R][A];
  for (auto& accb : acc) {
    for (auto& accr : accb) {
      for (auto& v : accr) v = _mm256_setzero_ps();
    }
  }
  const uint16_t* wo = w + o * in;
  int64_t i = 0;
  __m256i wv[B];
  for (; i + 16 <= in; i += 16) {
    for (int b = 0; b < B; ++b) {
      if constexpr (kAhead > 0) {  // once a 64-byte line
        if (i % 32 == 0)
          _mm_prefetch(reinterpret_cast<const char*>(wo + b * in + i) + kAhead, _MM_HINT_T0);
      }
      wv[b] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wo + b * in + i));
    }
    block_bf16_avx2<B, R, A>(acc, wv, xs, i / 2);
  }
  if (i < in) {  // the last < 16 weights of each row, through a zero-padded copy
    for (int b = 0; b < B; ++b) {
      alignas(32) uint16_t tail[16] = {};
      std::copy(wo + b * in + i, wo + b * in + in, tail);
      wv[b] = _mm256_load_si256(reinterpret_cast<const __m256i*>(tail));
    }
    block_bf16_avx2<B, R, A>(acc, wv, xs, i / 2);
  }
  for (int b = 0; b < B; ++b) {
    for (int r = 0; r < R; ++r)
      y[r * out + o + b] =
          hsum256(A == 2 ? _mm256_add_ps(acc[b][r][0], acc[b][r][A - 1]) : acc[b][r][0]);
  }
}

// GCC 12's AVX-512 intrinsics start from _mm512_undefined_*() and warn that it is, or may be,
// uninitialized (GCC bug 105593, fixed in 13).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

// One block of 32 weights in each of B rows of W (wv) times R rows of x, at element 2h of x.
template <int B, int R, int A>
KVRAG_AVX512 inline void block_bf16_avx512(__m512 (&acc)[B][R][A], const __m512i (&wv)[B],
                                           const SplitX& xs, int64_t h) {
  const __m512i high = _mm512_set1_epi32(static_cast<int>(0xFFFF0000u));
  for (int r = 0; r < R; ++r) {
    const __m512 xe = _mm512_loadu_ps(xs.even(r) + h), xo = _mm512_loadu_ps(xs.odd(r) + h);
    for (int b = 0; b < B; ++b) {
      const __m512 we = _mm512_castsi512_ps(_mm512_slli_epi32(wv[b], 16));
      const __m512 wd = _mm512_castsi512_ps(_mm512_and_si512(wv[b], high));
      acc[b][r][0] = _mm512_fmadd_ps(we, xe, acc[b][r][0]);
      acc[b][r][A - 1] = _mm512_fmadd_ps(wd, xo, acc[b][r][A - 1]);
    }
  }
}

// As rows_bf16_avx2 with 16 lanes (32 weights a load); the tail is a masked load (only the
// tail: masked loads in the main loop ran at half the rate from memory).
template <int B, int R, int kAhead>
KVRAG_AVX512 void rows_bf16_avx512(const uint16_t* w, const SplitX& xs, float* y, int64_t in,
                                   int64_t out, int64_t o) {
  constexpr int A = accumulators_bf16(R);
  __m512 acc[B][R][A];
  for (auto& accb : acc) {
    for (auto& accr : accb) {
      for (auto& v : accr) v = _mm512_setzero_ps();
    }
  }
  const uint16_t* wo = w + o * in;
  int64_t i = 0;
  __m512i wv[B];
  for (; i + 32 <= in; i += 32) {
    for (int b = 0; b < B; ++b) {
      if constexpr (kAhead > 0)
        _mm_prefetch(reinterpret_cast<const char*>(wo + b * in + i) + kAhead, _MM_HINT_T0);
      wv[b] = _mm512_loadu_si512(wo + b * in + i);
    }
    block_bf16_avx512<B, R, A>(acc, wv, xs, i / 2);
  }
  if (i < in) {
    const __mmask32 mask = _cvtu32_mask32((1u << (in - i)) - 1);
    for (int b = 0; b < B; ++b) wv[b] = _mm512_maskz_loadu_epi16(mask, wo + b * in + i);
    block_bf16_avx512<B, R, A>(acc, wv, xs, i / 2);
  }
  for (int b = 0; b < B; ++b) {
    for (int r = 0; r < R; ++r)
      y[r * out + o + b] =
          hsum512(A == 2 ? _mm512_add_ps(acc[b][r][0], acc[b][r][A - 1]) : acc[b][r][0]);
  }
}
#pragma GCC diagnostic pop

// Rows [o_begin, o_end) of bf16 W times R rows of x. With one row of x, blocks of B rows of W
// (independent chains, several streams from memory in flight), then one at a time; AVX2 has 16
// vector registers, AVX-512 32, and the block sizes keep the accumulators, x and the weights in
// them. With several rows of x (a batch decoding) the R rows already give independent chains, and
// one row of W at a time, a single stream per thread, prefetched 4 KB ahead from three rows on
// (where each block's 2R FMAs near the kernel's compute rate), measured faster from memory than
// blocks of 2-4 rows (bench_llama --batch, README "Batch decoding").
template <int R, bool kAvx512>
void tile_bf16(const uint16_t* w, const SplitX& xs, float* y, int64_t in, int64_t out,
               int64_t o_begin, int64_t o_end) {
  constexpr int B = R > 1 ? 1 : kAvx512 ? 8 : 4;
  constexpr int kAhead = R <= 2 ? 0 : 4096;
  auto rows = [&](auto block, int64_t o) {
    constexpr int b = decltype(block)::value;
    if constexpr (kAvx512) {
      rows_bf16_avx512<b, R, kAhead>(w, xs, y, in, out, o);
    } else {
      rows_bf16_avx2<b, R, kAhead>(w, xs, y, in, out, o);
    }
  };
  int64_t o = o_begin;
  for (; o + B <= o_end; o += B) rows(std::integral_constant<int, B>{}, o);
  for (; o < o_end; ++o) rows(std::integral_constant<int, 1>{}, o);
}

template <bool kAvx512>
void gemv_bf16(const uint16_t* w, const SplitX& xs, float* y, int64_t R, int64_t in, int64_t out,
               int64_t o_begin, int64_t o_end) {
  with_row_count(R, [&](auto rows) {
    tile_bf16<decltype(rows)::value, kAvx512>(w, xs, y, in, out, o_begin, o_end);
  });
}

#pragma GCC diagnostic push  // as above
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

// --- bf16 weights and bf16 x with AVX512_BF16 ----------------------------------------------------
//
// vdpbf16ps multiplies 16 pairs of bf16 and adds both products into fp32 lanes: one instruction a
// 32 weights where the kernel above spends four (a shift, a mask, two FMAs). It needs x in bf16,
// which linear()'s x is whenever its weight is bf16 (the operands share a dtype), so x goes in as
// it is: the products are exact in fp32, as above, and only the order of the fp32 additions
// differs (the instruction also flushes subnormal inputs and results to zero). Measured from
// memory on the AMD EPYC (Zen 5) of bench_q8_matmul, 2 threads, 5632 × 2048, five alternations:
// 52-55 GB/s with the shift-and-mask kernel, 59-63 with this one.

// Rows o + b·stride (b < B) of W times R rows of x, U blocks of 32 weights per step of the main
// loop (independent accumulators: with one row of x, U = 4 keeps four chains in flight, as do
// B = 4 rows), each row prefetched kAhead bytes ahead (0: not at all).
template <int B, int R, int U, int kAhead>
KVRAG_AVX512BF16 void rows_dpbf16(const uint16_t* w, const uint16_t* x, float* y, int64_t in,
                                  int64_t out, int64_t o, int64_t stride) {
  __m512 acc[B][U][R];
  for (auto& accb : acc) {
    for (auto& accu : accb) {
      for (auto& v : accu) v = _mm512_setzero_ps();
    }
  }
  const uint16_t* wo[B];  // [in] each
  for (int b = 0; b < B; ++b) wo[b] = w + (o + b * stride) * in;
  int64_t i = 0;
  for (; i + 32 * U <= in; i += 32 * U) {
    for (int u = 0; u < U; ++u) {
      __m512bh wv[B];
      for (int b = 0; b < B; ++b) {
        if constexpr (kAhead > 0)
          _mm_prefetch(reinterpret_cast<const char*>(wo[b] + i + 32 * u) + kAhead, _MM_HINT_T0);
        wv[b] = (__m512bh)_mm512_loadu_si512(wo[b] + i + 32 * u);
      }
      for (int r = 0; r < R; ++r) {
        const auto xv = (__m512bh)_mm512_loadu_si512(x + r * in + i + 32 * u);
        for (int b = 0; b < B; ++b) acc[b][u][r] = _mm512_dpbf16_ps(acc[b][u][r], wv[b], xv);
      }
    }
  }
  for (; i < in; i += 32) {  // the last < 32 U weights; the final block masked
    const int64_t n = std::min<int64_t>(32, in - i);
    const __mmask32 mask = _cvtu32_mask32(n == 32 ? ~0u : (1u << n) - 1);
    for (int r = 0; r < R; ++r) {
      const auto xv = (__m512bh)_mm512_maskz_loadu_epi16(mask, x + r * in + i);
      for (int b = 0; b < B; ++b) {
        const auto wv = (__m512bh)_mm512_maskz_loadu_epi16(mask, wo[b] + i);
        acc[b][0][r] = _mm512_dpbf16_ps(acc[b][0][r], wv, xv);
      }
    }
  }
  for (int b = 0; b < B; ++b) {
    for (int r = 0; r < R; ++r) {
      __m512 sum = acc[b][0][r];
      for (int u = 1; u < U; ++u) sum = _mm512_add_ps(sum, acc[b][u][r]);
      y[r * out + o + b * stride] = hsum512(sum);
    }
  }
}

// Rows [o_begin, o_end) of W times R rows of x. With one row of x (decoding) the range is cut
// into 4 equal parts read side by side, row j of every part together: four streams per thread,
// each prefetched 1 KB ahead, as bench_memory.h's read stream reads (one stream per thread drew
// 62-81% of that stream on this VM, four 92-126%: README "Four streams a thread"); the last rows
// go one at a time. With 2-8 rows (a batch decoding), one row of W at a time: blocks of 2 rows of
// W ran at 20-44 GB/s from memory. With three or more rows of x each block costs R instructions
// and the kernel nears its compute rate, so W is also prefetched 4 KB ahead. A stand-alone test
// of 5632 × 2048 from memory (AMD EPYC, Zen 5, 2 threads, three rounds), GB/s, blocks of 2 rows →
// one row: R = 2 40-44 → 46-53 (U = 4), R = 3 24-30 → 44-49, R = 4 28-29 → 41-46 (U = 2), R = 8
// 20-22 → 30-32.
template <int R>
void tile_dpbf16(const uint16_t* w, const uint16_t* x, float* y, int64_t in, int64_t out,
                 int64_t o_begin, int64_t o_end) {
  constexpr int U = R <= 2 ? 4 : 2;
  constexpr int kAhead = R <= 2 ? 0 : 4096;
  int64_t o = o_begin;
  if constexpr (R == 1) {
    const int64_t part = (o_end - o_begin) / 4;
    for (int64_t j = 0; j < part; ++j) rows_dpbf16<4, 1, U, 1024>(w, x, y, in, out, o + j, part);
    o += 4 * part;
  }
  for (; o < o_end; ++o) rows_dpbf16<1, R, U, kAhead>(w, x, y, in, out, o, 0);
}

void gemv_dpbf16(const uint16_t* w, const uint16_t* x, float* y, int64_t R, int64_t in, int64_t out,
                 int64_t o_begin, int64_t o_end) {
  with_row_count(
      R, [&](auto rows) { tile_dpbf16<decltype(rows)::value>(w, x, y, in, out, o_begin, o_end); });
}
#pragma GCC diagnostic pop

#endif  // KVRAG_X86

// y [R, out] fp32 = x [R, in] · W^T, W contiguous [out, in] fp32 or bf16, x of W's dtype.
void gemv(const torch::Tensor& weight, const torch::Tensor& x_in, float* y) {
  const int64_t out = weight.size(0), in = weight.size(1);
  const int64_t R = x_in.numel() / in;
  // At least ~64K weights per task: below that a thread costs more than it saves.
  const int64_t grain = std::max<int64_t>(4, (int64_t{1} << 16) / std::max<int64_t>(in, 1));
  const CpuIsa isa = cpu_isa();
#if KVRAG_X86
  if (weight.scalar_type() == torch::kBFloat16 && isa >= CpuIsa::kAvx512Bf16) {
    const auto xb = x_in.contiguous();  // [R, in] bf16, as it is
    const auto* w = reinterpret_cast<const uint16_t*>(weight.data_ptr<c10::BFloat16>());
    const auto* x = reinterpret_cast<const uint16_t*>(xb.data_ptr<c10::BFloat16>());
    parallel_chunks(out, grain, [&](int64_t begin, int64_t end) {
      gemv_dpbf16(w, x, y, R, in, out, begin, end);
    });
    return;
  }
#endif
  const auto xf = x_in.to(torch::kFloat32).contiguous();  // [R, in]
  const float* x = xf.data_ptr<float>();
  if (weight.scalar_type() == torch::kBFloat16) {
    const auto* w = weight.data_ptr<c10::BFloat16>();
#if KVRAG_X86
    if (isa >= CpuIsa::kAvx2) {
      const SplitX xs(x, R, in);
      const auto* bits = reinterpret_cast<const uint16_t*>(w);
      parallel_chunks(out, grain, [&](int64_t begin, int64_t end) {
        if (isa >= CpuIsa::kAvx512) {
          gemv_bf16<true>(bits, xs, y, R, in, out, begin, end);
        } else {
          gemv_bf16<false>(bits, xs, y, R, in, out, begin, end);
        }
      });
      return;
    }
#endif
    parallel_chunks(out, grain, [&](int64_t begin, int64_t end) {
      gemv_portable(w, x, y, R, in, out, begin, end);
    });
    return;
  }
  // fp32 weights: the AVX2 kernel on AVX-512 CPUs too. A 16-lane version measured 10-20% slower
  // on the AMD EPYC of bench_q8_matmul (its 512-bit operations run as two 256-bit halves, and at
  // 55-65 GB/s the AVX2 kernel is already near the memory's rate).
  const float* w = weight.data_ptr<float>();
  parallel_chunks(out, grain, [&](int64_t begin, int64_t end) {
#if KVRAG_X86
    if (isa >= CpuIsa::kAvx2) {
      gemv_avx2(w, x, y, R, in, out, begin, end);
      return;
    }
#endif
    gemv_portable(w, x, y, R, in, out, begin, end);
  });
}

// y = x Wᵀ (+ b) for bf16 x and W computed in fp32 without autograd, W converted a tile of rows
// at a time (kWeightTileBytes of fp32) so that no fp32 copy of a whole weight is ever held.
torch::Tensor linear_bf16_in_fp32(const torch::Tensor& x, const torch::Tensor& weight,
                                  const torch::Tensor& bias) {
  const int64_t out = weight.size(0), in = weight.size(1);
  const int64_t rows = std::clamp<int64_t>(kWeightTileBytes / (4 * in), 1, out);
  const auto x32 = x.to(torch::kFloat32).reshape({-1, in});    // [M, in]
  auto y = torch::empty({x32.size(0), out}, torch::kFloat32);  // [M, out]
  for (int64_t o0 = 0; o0 < out; o0 += rows) {
    const int64_t n = std::min(rows, out - o0);
    const auto tile = weight.narrow(0, o0, n).to(torch::kFloat32);  // [n, in]
    auto part = y.narrow(1, o0, n);                                 // [M, n]
    torch::mm_out(part, x32, tile.t());
  }
  if (bias.defined()) y.add_(bias.to(torch::kFloat32));
  auto sizes = x.sizes().vec();
  sizes.back() = out;
  return y.view(sizes).to(torch::kBFloat16);
}

// yt [n, M] (rows M apart) = W [n, in] · x [M, in]ᵀ through oneDNN's sgemm, all row-major.
// This operand order: oneDNN 2.6 runs it at 280-420 GFLOP/s with 2 threads on an AVX-512 Zen 5
// for TinyLlama's and bert-base's shapes, against 145-400 for y = x · Wᵀ as written (its split of
// few rows of x over threads degenerates: 9 rows ran at 9 GFLOP/s, 128 at 145-180) and 130-210
// for OpenBLAS under OPENBLAS_CORETYPE=Haswell; transposing y afterwards costs ~1% of a product.
void sgemm_w_xt(const float* w, int64_t n, const float* x, int64_t M, int64_t in, float* yt) {
  const dnnl_status_t status = dnnl_sgemm('N', 'T', n, M, in, 1.0f, w, in, x, in, 0.0f, yt, M);
  KVRAG_CHECK(status == dnnl_success, "linear: oneDNN sgemm of [{}, {}] by [{}, {}]ᵀ failed ({})",
              M, in, n, in, static_cast<int>(status));
}

// y [..., out] fp32 (shape of x with out features) = ytᵀ + b, for yt [out, M].
torch::Tensor untranspose(const torch::Tensor& yt, const torch::Tensor& x,
                          const torch::Tensor& bias) {
  const int64_t out = yt.size(0), M = yt.size(1);
  auto sizes = x.sizes().vec();
  sizes.back() = out;
  auto y = torch::empty(sizes, torch::kFloat32);  // [..., out]
  auto y2 = y.view({M, out});                     // [M, out]
  y2.copy_(yt.t());
  if (bias.defined()) y2.add_(bias.to(torch::kFloat32));
  return y;
}

// y = x Wᵀ (+ b) for fp32 x [..., in] and W [out, in] without autograd, through oneDNN's sgemm
// (fp32_gemm_on_onednn()), as yᵀ = W · xᵀ.
torch::Tensor linear_fp32_onednn(const torch::Tensor& x, const torch::Tensor& weight,
                                 const torch::Tensor& bias) {
  const int64_t out = weight.size(0), in = weight.size(1);
  const auto x2 = x.reshape({-1, in}).contiguous();            // [M, in]
  auto yt = torch::empty({out, x2.size(0)}, torch::kFloat32);  // [out, M]
  sgemm_w_xt(weight.data_ptr<float>(), out, x2.data_ptr<float>(), x2.size(0), in,
             yt.data_ptr<float>());
  return untranspose(yt, x, bias);
}

// y = x Wᵀ (+ b) for bf16 x [..., in] and W [out, in] without autograd, in fp32 through oneDNN's
// sgemm (bf16_gemm_widened_to_fp32()): x converted whole, W kWeightTileBytes of rows at a time
// into one reused fp32 tile (all conversions exact), y rounded to bf16 once. Tiles of 8-64 MB ran
// alike (1.1B prefill 104-106 tokens/s), 2 MB ones slower (85; 512 KB: 63).
torch::Tensor linear_bf16_widened_onednn(const torch::Tensor& x, const torch::Tensor& weight,
                                         const torch::Tensor& bias) {
  const int64_t out = weight.size(0), in = weight.size(1);
  const int64_t rows = std::clamp<int64_t>(kWeightTileBytes / (4 * in), 1, out);
  const auto x2 = x.reshape({-1, in}).to(torch::kFloat32).contiguous();  // [M, in]
  const int64_t M = x2.size(0);
  auto yt = torch::empty({out, M}, torch::kFloat32);      // [out, M]
  auto tile = torch::empty({rows, in}, torch::kFloat32);  // [rows, in]
  for (int64_t o0 = 0; o0 < out; o0 += rows) {
    const int64_t n = std::min(rows, out - o0);
    auto part = tile.narrow(0, 0, n);  // [n, in]
    part.copy_(weight.narrow(0, o0, n));
    sgemm_w_xt(part.data_ptr<float>(), n, x2.data_ptr<float>(), M, in,
               yt.data_ptr<float>() + o0 * M);
  }
  return untranspose(yt, x, bias).to(torch::kBFloat16);
}

}  // namespace

bool fp32_gemm_on_onednn() { return cpu_isa() >= CpuIsa::kAvx512; }

bool native_bf16_matmul() { return cpu_isa() >= CpuIsa::kAvx512; }

bool bf16_gemm_widened_to_fp32() {
  if (!fp32_gemm_on_onednn()) return false;
  if (cpu_isa() < CpuIsa::kAvx512Bf16) return true;  // oneDNN would emulate bf16
#if defined(__x86_64__)
  static const bool fast_bf16 = __builtin_cpu_supports("amx-bf16") || __builtin_cpu_is("amd");
  return !fast_bf16;
#else
  return false;
#endif
}

torch::Tensor pad_rows_for_bf16_gemm(const torch::Tensor& x) {
  constexpr int64_t kRows = 64;
  const int64_t m = x.size(0);
  if (m <= kRows || m % kRows == 0) return x;
  const int64_t pad = kRows - m % kRows;
  return torch::cat({x, torch::zeros({pad, x.size(1)}, x.options())});
}

torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& weight,
                     const torch::Tensor& bias) {
  const auto dtype = x.scalar_type();
  const int64_t in = weight.size(1), out = weight.size(0);
  const bool grad = op_support::needs_grad({&x, &weight, &bias});
  if (!grad && x.is_cpu() && weight.is_cpu() && dtype == weight.scalar_type() &&
      (dtype == torch::kFloat32 || dtype == torch::kBFloat16) && weight.is_contiguous() &&
      x.dim() >= 1 && x.size(-1) == in && x.numel() > 0 && x.numel() <= kGemvMaxRows * in) {
    const int64_t rows = x.numel() / in;
    auto y = torch::empty({rows, out}, torch::kFloat32);  // [rows, out]
    gemv(weight, x, y.data_ptr<float>());
    if (bias.defined()) y.add_(bias);  // in fp32 before the one rounding, as addmm does
    auto sizes = x.sizes().vec();
    sizes.back() = out;
    return y.view(sizes).to(dtype);
  }
  if (!grad && dtype == torch::kFloat32 && weight.scalar_type() == torch::kFloat32 && x.is_cpu() &&
      weight.is_cpu() && weight.is_contiguous() && x.dim() >= 1 && x.size(-1) == in &&
      x.numel() > 0 && fp32_gemm_on_onednn() && at::get_num_threads() >= blas_threads()) {
    // (Inside a SerialIntraOpGuard, as a training loop's evaluation, BLAS has the threads.)
    return linear_fp32_onednn(x, weight, bias);
  }
  if (!grad && dtype == torch::kBFloat16 && weight.scalar_type() == torch::kBFloat16 &&
      x.is_cpu() && weight.is_cpu() && weight.is_contiguous() && x.dim() >= 1 && x.size(-1) == in &&
      x.numel() > 0 && bf16_gemm_widened_to_fp32() && at::get_num_threads() >= blas_threads()) {
    return linear_bf16_widened_onednn(x, weight, bias);
  }
  if (dtype == torch::kBFloat16 && !native_bf16_matmul()) {
    if (!grad && weight.scalar_type() == torch::kBFloat16 && x.size(-1) == in) {
      return linear_bf16_in_fp32(x, weight, bias);
    }
    return torch::nn::functional::linear(x.to(torch::kFloat32), weight.to(torch::kFloat32),
                                         bias.defined() ? bias.to(torch::kFloat32) : bias)
        .to(torch::kBFloat16);
  }
  if (dtype == torch::kBFloat16 && x.dim() >= 2 && x.size(-1) == in) {
    const auto x2 = x.reshape({-1, in});  // [M, in]
    const auto padded = pad_rows_for_bf16_gemm(x2);
    if (padded.size(0) != x2.size(0)) {
      auto sizes = x.sizes().vec();
      sizes.back() = out;
      // [..., out]
      return torch::nn::functional::linear(padded, weight, bias)
          .narrow(0, 0, x2.size(0))
          .view(sizes);
    }
  }
  return torch::nn::functional::linear(x, weight, bias);
}

torch::Tensor matmul(const torch::Tensor& a, const torch::Tensor& b) {
  if (a.scalar_type() == torch::kBFloat16 && !native_bf16_matmul()) {
    return torch::matmul(a.to(torch::kFloat32), b.to(torch::kFloat32)).to(torch::kBFloat16);
  }
  return torch::matmul(a, b);
}

}  // namespace kvrag
