#include "ops/q8_matmul.h"

#include <algorithm>
#include <atomic>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>

#include "core/error.h"
#include "core/huge_pages.h"
#include "ops/cpu_isa.h"
#include "ops/simd.h"
#include "ops/threads.h"

namespace kvrag {
namespace {

// --- quantization --------------------------------------------------------------------------------

inline float bf16_to_float(uint16_t bits) {
  // bf16 is the top half of an fp32: exact.
  const uint32_t u = static_cast<uint32_t>(bits) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

inline float to_float(float v) { return v; }
inline float to_float(uint16_t v) { return bf16_to_float(v); }

// One group of 32 weights → q [32] and its scale; false (and zeros) if a weight is not finite.
// Every path computes scale = max|w| / 127 and q = clamp(nearbyint(w / scale), ±127): division,
// not a reciprocal's product, so the quotient is rounded once and |w - q scale| stays within
// scale/2 up to fp32 rounding (the clamp covers fl(max|w| / scale) > 127). The vector paths round
// to nearest even as nearbyint does in the default rounding mode: all paths give the same bytes.
template <typename T>
bool quantize_group_generic(const T* src, int8_t* q, float* scale) {
  float v[kQ8Group];
  float amax = 0;
  for (int64_t j = 0; j < kQ8Group; ++j) {
    v[j] = to_float(src[j]);
    if (!std::isfinite(v[j])) {
      std::fill(q, q + kQ8Group, int8_t{0});
      *scale = 0;
      return false;
    }
    amax = std::max(amax, std::fabs(v[j]));
  }
  *scale = amax / 127;
  for (int64_t j = 0; j < kQ8Group; ++j) {
    const float r = *scale > 0 ? std::nearbyint(v[j] / *scale) : 0.0f;
    q[j] = static_cast<int8_t>(std::clamp(r, -127.0f, 127.0f));
  }
  return true;
}

#if KVRAG_X86
template <typename T>  // float, or uint16_t for bf16 (widened exactly)
KVRAG_AVX2 inline void load_group(const T* p, __m256 (&v)[4]) {
  for (int i = 0; i < 4; ++i) v[i] = load8(p + 8 * i);
}

template <typename T>
KVRAG_AVX2 bool quantize_group_avx2(const T* src, int8_t* q, float* scale) {
  __m256 v[4];
  load_group(src, v);
  const __m256 sign = _mm256_set1_ps(-0.0f), big = _mm256_set1_ps(FLT_MAX);
  __m256 amax = _mm256_setzero_ps(), finite = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
  for (const __m256 x : v) {
    const __m256 a = _mm256_andnot_ps(sign, x);
    finite = _mm256_and_ps(finite, _mm256_cmp_ps(a, big, _CMP_LE_OQ));  // false for NaN
    amax = _mm256_max_ps(amax, a);
  }
  if (_mm256_movemask_ps(finite) != 0xFF) {
    std::memset(q, 0, kQ8Group);
    *scale = 0;
    return false;
  }
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
  *scale = _mm_cvtss_f32(m) / 127;
  if (!(*scale > 0)) {
    std::memset(q, 0, kQ8Group);
    return true;
  }
  const __m256 s = _mm256_set1_ps(*scale), lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127);
  __m256i r[4];
  for (int i = 0; i < 4; ++i) {
    const __m256 t =
        _mm256_round_ps(_mm256_div_ps(v[i], s), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    r[i] = _mm256_cvttps_epi32(_mm256_min_ps(_mm256_max_ps(t, lo), hi));
  }
  // Packing works within 128-bit lanes: bytes come out as r0[0:4] r1[0:4] r2[0:4] r3[0:4]
  // r0[4:8] …; the permutation puts each r's 8 back together.
  const __m256i packed =
      _mm256_packs_epi16(_mm256_packs_epi32(r[0], r[1]), _mm256_packs_epi32(r[2], r[3]));
  _mm256_storeu_si256(
      reinterpret_cast<__m256i*>(q),
      _mm256_permutevar8x32_epi32(packed, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
  return true;
}

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
KVRAG_AVX512 inline void load_group(const float* p, __m512 (&v)[2]) {
  v[0] = _mm512_loadu_ps(p);
  v[1] = _mm512_loadu_ps(p + 16);
}
KVRAG_AVX512 inline void load_group(const uint16_t* p, __m512 (&v)[2]) {  // bf16: exact
  for (int i = 0; i < 2; ++i) {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 16 * i));
    v[i] = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
}

template <typename T>
KVRAG_AVX512 bool quantize_group_avx512(const T* src, int8_t* q, float* scale) {
  __m512 v[2];
  load_group(src, v);
  constexpr int kNotFinite = 0x01 | 0x08 | 0x10 | 0x80;  // vfpclassps: QNaN, ±inf, SNaN
  if ((_mm512_fpclass_ps_mask(v[0], kNotFinite) | _mm512_fpclass_ps_mask(v[1], kNotFinite)) != 0) {
    std::memset(q, 0, kQ8Group);
    *scale = 0;
    return false;
  }
  *scale = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v[0]), _mm512_abs_ps(v[1]))) / 127;
  if (!(*scale > 0)) {
    std::memset(q, 0, kQ8Group);
    return true;
  }
  const __m512 s = _mm512_set1_ps(*scale), lo = _mm512_set1_ps(-127.0f), hi = _mm512_set1_ps(127);
  for (int i = 0; i < 2; ++i) {
    const __m512 t =
        _mm512_roundscale_ps(_mm512_div_ps(v[i], s), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm_storeu_si128(
        reinterpret_cast<__m128i*>(q + 16 * i),
        _mm512_cvtepi32_epi8(_mm512_cvttps_epi32(_mm512_min_ps(_mm512_max_ps(t, lo), hi))));
  }
  return true;
}
#pragma GCC diagnostic pop
#endif  // KVRAG_X86

template <typename T>
Q8Matrix quantize(const T* w, int64_t n, int64_t k, const char* what) {
  KVRAG_CHECK(n >= 0 && k > 0 && k % kQ8Group == 0,
              "{}: weight [{}, {}]: K = {} must be a positive multiple of {} (the int8 group size)",
              what, n, k, k, kQ8Group);
  const int64_t groups = k / kQ8Group;
  Q8Matrix out;
  out.rows = n;
  out.cols = k;
  out.q.resize(n * k);
  out.scales.resize(n * groups);
  // Before the values are written; the scales are streamed beside them.
  advise_huge_pages(out.q.data(), out.q.size());
  advise_huge_pages(out.scales.data(), out.scales.size() * sizeof(float));
  const CpuIsa isa = cpu_isa();
  // The first non-finite weight's group (parallel_chunks' fn must not throw).
  std::atomic<int64_t> bad{std::numeric_limits<int64_t>::max()};
  // A load of a 7B model quantizes ~7e9 weights: worth the helper threads.
  parallel_chunks(n, std::max<int64_t>(1, (int64_t{1} << 16) / k), [&](int64_t r0, int64_t r1) {
    for (int64_t i = r0 * groups; i < r1 * groups; ++i) {  // group i: weights [32 i, 32 i + 32)
      const T* src = w + i * kQ8Group;
      int8_t* q = out.q.data() + i * kQ8Group;
      float* scale = out.scales.data() + i;
      bool finite;
#if KVRAG_X86
      if (isa >= CpuIsa::kAvx512) {
        finite = quantize_group_avx512(src, q, scale);
      } else if (isa >= CpuIsa::kAvx2) {
        finite = quantize_group_avx2(src, q, scale);
      } else {
        finite = quantize_group_generic(src, q, scale);
      }
#else
      finite = quantize_group_generic(src, q, scale);
#endif
      if (!finite) {  // reported after the loop
        int64_t seen = bad.load();
        while (i < seen && !bad.compare_exchange_weak(seen, i)) {
        }
      }
    }
  });
  if (const int64_t i = bad.load(); i != std::numeric_limits<int64_t>::max()) {
    int64_t j = i * kQ8Group;
    while (std::isfinite(to_float(w[j]))) ++j;  // the group holds one
    fail("{}: weight [{}, {}]: element [{}, {}] is {}, which int8 cannot hold", what, n, k, j / k,
         j % k, to_float(w[j]));
  }
  return out;
}

// --- the decode order ---------------------------------------------------------------------------

// Row n of W from one order into the other: `interleave` from natural into the decode order,
// else back. Only runs of 16 whole groups move.
void reorder_row(const int8_t* src, int8_t* dst, int64_t K, bool interleave) {
  const int64_t runs = K / kQ8Group / kQ8Interleave;
  for (int64_t run = 0; run < runs; ++run) {
    const int8_t* from = src + 512 * run;
    int8_t* to = dst + 512 * run;
    for (int64_t l = 0; l < kQ8Interleave; ++l) {
      for (int64_t t = 0; t < 8; ++t) {  // natural byte 32 l + 4 t ↔ decode-order byte 64 t + 4 l
        const int64_t natural = 32 * l + 4 * t, decode = 64 * t + 4 * l;
        std::memcpy(to + (interleave ? decode : natural), from + (interleave ? natural : decode),
                    4);
      }
    }
  }
  std::memcpy(dst + 512 * runs, src + 512 * runs, K - 512 * runs);
}

// --- products: one tile of W rows [n0, n1) times R ≤ 8 rows of x ---------------------------------
//
// Every path computes, for each output, Σ_g scale_g · (Σ_{j<32} q_j x_j): a group's products are
// summed in fp32, scaled once, and accumulated. They differ only in the order of those fp32
// additions (lanes), which bounds how far apart they can be (tests/ops/test_q8_matmul.cpp).
// R is a template parameter so that the R accumulators live in registers.

constexpr int kMaxRows = 8;

template <int R>
void tile_generic(const Q8Matrix& w, const float* x, float* y, int64_t n0, int64_t n1) {
  const int64_t K = w.cols, N = w.rows, G = w.groups_per_row();
  for (int64_t n = n0; n < n1; ++n) {
    const int8_t* q = w.q.data() + n * K;      // [K]
    const float* s = w.scales.data() + n * G;  // [K/32]
    float acc[R] = {};
    for (int64_t g = 0; g < G; ++g) {
      float wf[kQ8Group];
      for (int j = 0; j < kQ8Group; ++j) wf[j] = q[g * kQ8Group + j];
      for (int r = 0; r < R; ++r) {
        const float* xr = x + r * K + g * kQ8Group;
        float part[8] = {};  // independent partial sums, as an 8-lane vector would keep them
        for (int j = 0; j < kQ8Group; j += 8) {
          for (int l = 0; l < 8; ++l) part[l] += wf[j + l] * xr[j + l];
        }
        const float sum = ((part[0] + part[1]) + (part[2] + part[3])) +
                          ((part[4] + part[5]) + (part[6] + part[7]));
        acc[r] += sum * s[g];
      }
    }
    for (int r = 0; r < R; ++r) y[r * N + n] = acc[r];
  }
}

#if KVRAG_X86

KVRAG_AVX2 inline __m256 load_q8x8(const int8_t* p) {  // 8 int8 → 8 fp32 (exact)
  return _mm256_cvtepi32_ps(
      _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}

// Rows of W processed together for R rows of x: with one row of x, several rows of W give
// independent accumulator chains (a group's FMA into its accumulator would otherwise wait on the
// previous group's) and share each load of x. With several rows of x (a batch decoding) those rows
// give the independent chains, and one row of W at a time, a single stream per thread prefetched
// 4 KB ahead (rows_prefetch), measured faster from memory than blocks of rows (bench_llama
// --batch, README "Batch decoding"). Every output's sum is formed the same way whatever the
// blocking, so results do not depend on how N is split.
// AVX2 has 16 vector registers: four rows of W's converted weights fill them.
constexpr int rows_of_w_avx2(int R) { return R == 1 ? 4 : 1; }
// AVX-512 has 32, enough for eight (more loads in flight from memory).
constexpr int rows_of_w_avx512(int R) { return R == 1 ? 8 : 1; }
// Bytes of W prefetched ahead with R rows of x (0: none).
constexpr int rows_prefetch(int R) { return R == 1 ? 0 : 4096; }

// Rows [n, n + B) of W times R rows of x, 8 lanes: lane l of a group's sum holds q_j x_j for
// j ≡ l (mod 8).
template <int R, int B>
KVRAG_AVX2 void rows_avx2(const Q8Matrix& w, const float* x, float* y, int64_t n) {
  const int64_t K = w.cols, N = w.rows, G = w.groups_per_row();
  const int8_t* q = w.q.data() + n * K;      // [B, K]
  const float* s = w.scales.data() + n * G;  // [B, K/32]
  __m256 acc[B][R];
  for (int b = 0; b < B; ++b) {
    for (int r = 0; r < R; ++r) acc[b][r] = _mm256_setzero_ps();
  }
  for (int64_t g = 0; g < G; ++g) {
    // Each weight is converted once and used for all R rows of x.
    __m256 wv[B][4];
    for (int b = 0; b < B; ++b) {
      if constexpr (rows_prefetch(R) > 0) {  // once a 64-byte line
        if (g % 2 == 0)
          _mm_prefetch(reinterpret_cast<const char*>(q + b * K + g * kQ8Group) + rows_prefetch(R),
                       _MM_HINT_T0);
      }
      for (int i = 0; i < 4; ++i) wv[b][i] = load_q8x8(q + b * K + g * kQ8Group + 8 * i);
    }
    for (int r = 0; r < R; ++r) {
      const float* xr = x + r * K + g * kQ8Group;
      const __m256 x0 = _mm256_loadu_ps(xr), x1 = _mm256_loadu_ps(xr + 8),
                   x2 = _mm256_loadu_ps(xr + 16), x3 = _mm256_loadu_ps(xr + 24);
      for (int b = 0; b < B; ++b) {
        __m256 p = _mm256_mul_ps(wv[b][0], x0);
        p = _mm256_fmadd_ps(wv[b][1], x1, p);
        p = _mm256_fmadd_ps(wv[b][2], x2, p);
        p = _mm256_fmadd_ps(wv[b][3], x3, p);
        acc[b][r] = _mm256_fmadd_ps(p, _mm256_broadcast_ss(s + b * G + g), acc[b][r]);
      }
    }
  }
  for (int b = 0; b < B; ++b) {
    for (int r = 0; r < R; ++r) y[r * N + n + b] = hsum256(acc[b][r]);
  }
}

template <int R>
KVRAG_AVX2 void tile_avx2(const Q8Matrix& w, const float* x, float* y, int64_t n0, int64_t n1) {
  constexpr int B = rows_of_w_avx2(R);
  int64_t n = n0;
  for (; n + B <= n1; n += B) rows_avx2<R, B>(w, x, y, n);
  for (; n < n1; ++n) rows_avx2<R, 1>(w, x, y, n);
}

// GCC 12's AVX-512 intrinsics start from _mm512_undefined_*() and warn that it is, or may be,
// uninitialized (GCC bug 105593, fixed in 13).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

KVRAG_AVX512 inline __m512 load_q8x16(const int8_t* p) {  // 16 int8 → 16 fp32 (exact)
  return _mm512_cvtepi32_ps(
      _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
}

// Rows [n, n + B) of W times R rows of x, 16 lanes: lane l of a group's sum holds q_j x_j for
// j ≡ l (mod 16).
template <int R, int B>
KVRAG_AVX512 void rows_avx512(const Q8Matrix& w, const float* x, float* y, int64_t n) {
  const int64_t K = w.cols, N = w.rows, G = w.groups_per_row();
  const int8_t* q = w.q.data() + n * K;      // [B, K]
  const float* s = w.scales.data() + n * G;  // [B, K/32]
  __m512 acc[B][R];
  for (int b = 0; b < B; ++b) {
    for (int r = 0; r < R; ++r) acc[b][r] = _mm512_setzero_ps();
  }
  for (int64_t g = 0; g < G; ++g) {
    __m512 w0[B], w1[B];
    for (int b = 0; b < B; ++b) {
      if constexpr (rows_prefetch(R) > 0) {  // once a 64-byte line
        if (g % 2 == 0)
          _mm_prefetch(reinterpret_cast<const char*>(q + b * K + g * kQ8Group) + rows_prefetch(R),
                       _MM_HINT_T0);
      }
      w0[b] = load_q8x16(q + b * K + g * kQ8Group);
      w1[b] = load_q8x16(q + b * K + g * kQ8Group + 16);
    }
    for (int r = 0; r < R; ++r) {
      const float* xr = x + r * K + g * kQ8Group;
      const __m512 x0 = _mm512_loadu_ps(xr), x1 = _mm512_loadu_ps(xr + 16);
      for (int b = 0; b < B; ++b) {
        __m512 p = _mm512_mul_ps(w0[b], x0);
        p = _mm512_fmadd_ps(w1[b], x1, p);
        acc[b][r] = _mm512_fmadd_ps(p, _mm512_set1_ps(s[b * G + g]), acc[b][r]);
      }
    }
  }
  for (int b = 0; b < B; ++b) {
    for (int r = 0; r < R; ++r) y[r * N + n + b] = hsum512(acc[b][r]);
  }
}

template <int R>
KVRAG_AVX512 void tile_avx512(const Q8Matrix& w, const float* x, float* y, int64_t n0, int64_t n1) {
  constexpr int B = rows_of_w_avx512(R);
  int64_t n = n0;
  for (; n + B <= n1; n += B) rows_avx512<R, B>(w, x, y, n);
  for (; n < n1; ++n) rows_avx512<R, 1>(w, x, y, n);
}

// --- int8 activations: AVX-512 VNNI -------------------------------------------------------------
//
// x quantized like the weights (per group of 32: scale max|x|/127, values rounded to nearest in
// [-127, 127]), so that a group's 32 products are integer: Σ_g (s_w,g · s_x,g) · Σ_j q_w,j q_x,j.
// vpdpbusd multiplies unsigned by signed bytes: the weight's bytes are flipped to q_w + 128 (an
// xor of the top bit, in [1, 255]) and x's group offset -128 Σ_j q_x,j starts the sum, so that
// Σ_j (q_w,j + 128) q_x,j - 128 Σ_j q_x,j = Σ_j q_w,j q_x,j exactly (|partial sums| < 2²¹ in
// int32; the group's sum ≤ 32 · 127² converts to fp32 exactly).
//
// In the decode order (Q8Matrix::interleaved) a run of 16 groups is 8 steps of 64 bytes, and
// lane l of every step belongs to group l: one vpdpbusd per step and row of x, started from the
// 16 groups' offsets, leaves each group's exact sum in its lane, which is converted and scaled
// once per run (s_w of 16 groups: one load). Groups outside runs (the last G mod 16 of a row, or
// every group of a matrix in natural order) go one at a time: a 256-bit vpdpbusd, a horizontal
// sum, one scaling. Per 64 weights and row of x that is 1 instruction in a run against ~6 for a
// step of two natural groups (sign flip, vpdpbusd, conversion, scale permute, multiply, FMA):
// from memory, the 1.1B's decode sequence of weights read 30-34 GB/s against 27-28 with the
// natural-order kernel it replaced (stream 39-43 GB/s); from L2 ~110 against 68-82 (README
// "int8 decode order").

// x [m, K] in the order of W's values (interleaved or not), as the kernel reads it.
struct Q8Activations {
  std::vector<int8_t> q;         // [m, K]: q_x in W's order
  std::vector<int32_t> offsets;  // [m, G]: -128 Σ_j q_x,j of each group
  // [m, G]: s_x of each group; NaN for a group holding a non-finite x, so that its outputs are
  // NaN as on the fp32 paths (instead of a silently wrong number).
  std::vector<float> scales;
};

// 16 fp32 → 16 int8: round(v / scale) in [-127, 127] (a function, not a lambda: GCC's lambdas do
// not take the target attribute of the function around them).
KVRAG_VNNI inline __m128i quantize16(__m512 v, __m512 scale) {
  const __m512i q = _mm512_cvt_roundps_epi32(_mm512_div_ps(v, scale),
                                             _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  return _mm512_cvtepi32_epi8(
      _mm512_min_epi32(_mm512_max_epi32(q, _mm512_set1_epi32(-127)), _mm512_set1_epi32(127)));
}

KVRAG_VNNI Q8Activations quantize_activations(const float* x, int64_t m, int64_t K,
                                              bool interleaved) {
  const int64_t G = K / kQ8Group;
  Q8Activations a;
  a.q.assign(m * K, 0);
  a.offsets.assign(m * G, 0);
  a.scales.assign(m * G, 0.0f);
  const __m512 sign = _mm512_set1_ps(-0.0f), big = _mm512_set1_ps(FLT_MAX);
  std::vector<int8_t> natural(K);  // a row of q_x in natural order
  for (int64_t r = 0; r < m; ++r) {
    std::fill(natural.begin(), natural.end(), int8_t{0});
    for (int64_t g = 0; g < G; ++g) {
      const float* src = x + r * K + g * kQ8Group;
      const __m512 v0 = _mm512_loadu_ps(src), v1 = _mm512_loadu_ps(src + 16);
      const __m512 a0 = _mm512_andnot_ps(sign, v0), a1 = _mm512_andnot_ps(sign, v1);
      const bool finite = (_mm512_cmp_ps_mask(a0, big, _CMP_LE_OQ) &
                           _mm512_cmp_ps_mask(a1, big, _CMP_LE_OQ)) == 0xFFFF;  // NaN: false
      // As quantize_q8: the scale exactly max|x| / 127, and a quotient rounded once.
      const float scale =
          finite ? _mm512_reduce_max_ps(_mm512_max_ps(a0, a1)) / 127 : std::nanf("");
      a.scales[r * G + g] = scale;
      if (!(scale > 0)) continue;  // zeros (a zero group: exact; NaN: carried by the scale)
      const __m512 sv = _mm512_set1_ps(scale);
      int8_t* q = natural.data() + g * kQ8Group;
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(q),
                          _mm256_set_m128i(quantize16(v1, sv), quantize16(v0, sv)));
      int32_t sum = 0;
      for (int j = 0; j < kQ8Group; ++j) sum += q[j];
      a.offsets[r * G + g] = -128 * sum;
    }
    if (interleaved) {
      reorder_row(natural.data(), a.q.data() + r * K, K, /*interleave=*/true);
    } else {
      std::memcpy(a.q.data() + r * K, natural.data(), K);
    }
  }
  return a;
}

// Σ of 8 int32 lanes.
KVRAG_AVX2 inline int32_t hsum256i(__m256i v) {
  __m128i t = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0x4E));
  t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0xB1));
  return _mm_cvtsi128_si32(t);
}

// Rows of W read side by side with R rows of x; bytes prefetched ahead in values and scales.
constexpr int streams_vnni(int R) { return R == 1 ? 4 : 1; }
constexpr int vnni_ahead(int S) { return S == 1 ? 4096 : 2048; }
constexpr int kVnniScalesAhead = 256;

// Rows n + k·stride (k < S) of W times rows [r0, r0 + R) of a, into y [R, N]. Each row's sum is
// formed the same way whatever S and stride, so outputs do not depend on how rows are grouped.
template <int R, int S>
KVRAG_VNNI void rows_vnni(const Q8Matrix& w, const Q8Activations& a, int64_t r0, float* y,
                          int64_t n, int64_t stride) {
  const int64_t K = w.cols, N = w.rows, G = w.groups_per_row();
  const int64_t runs = w.interleaved ? G / kQ8Interleave : 0;
  const int8_t* q[S];  // [K] each
  const float* s[S];   // [G] each
  for (int k = 0; k < S; ++k) {
    q[k] = w.q.data() + (n + k * stride) * K;
    s[k] = w.scales.data() + (n + k * stride) * G;
  }
  const int8_t* xq = a.q.data() + r0 * K;         // [R, K]
  const int32_t* xo = a.offsets.data() + r0 * G;  // [R, G]
  const float* xs = a.scales.data() + r0 * G;     // [R, G]
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
  __m512 acc[S][R];
  for (int k = 0; k < S; ++k) {
    for (int r = 0; r < R; ++r) acc[k][r] = _mm512_setzero_ps();
  }
  for (int64_t run = 0; run < runs; ++run) {  // 16 groups: 8 steps of 64 bytes
    const int64_t g = run * kQ8Interleave;
    __m512i dot[S][R];  // lane l: group g + l
    for (int r = 0; r < R; ++r) {
      const __m512i offset = _mm512_loadu_si512(xo + r * G + g);
      for (int k = 0; k < S; ++k) dot[k][r] = offset;
    }
    for (int t = 0; t < 8; ++t) {
      __m512i wu[S];  // q_w + 128
      for (int k = 0; k < S; ++k) {
        const int8_t* step = q[k] + run * 512 + 64 * t;
        _mm_prefetch(reinterpret_cast<const char*>(step) + vnni_ahead(S), _MM_HINT_T0);
        wu[k] = _mm512_xor_si512(_mm512_loadu_si512(step), flip);
      }
      for (int r = 0; r < R; ++r) {
        const __m512i xv = _mm512_loadu_si512(xq + r * K + run * 512 + 64 * t);
        for (int k = 0; k < S; ++k) dot[k][r] = _mm512_dpbusd_epi32(dot[k][r], wu[k], xv);
      }
    }
    for (int k = 0; k < S; ++k) {
      _mm_prefetch(reinterpret_cast<const char*>(s[k] + g) + kVnniScalesAhead, _MM_HINT_T0);
      const __m512 ws = _mm512_loadu_ps(s[k] + g);
      for (int r = 0; r < R; ++r) {
        acc[k][r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot[k][r]),
                                    _mm512_mul_ps(ws, _mm512_loadu_ps(xs + r * G + g)), acc[k][r]);
      }
    }
  }
  const __m256i flip8 = _mm256_set1_epi8(static_cast<char>(0x80));
  for (int k = 0; k < S; ++k) {
    float rest[R] = {};  // groups outside runs, one at a time
    for (int64_t g = runs * kQ8Interleave; g < G; ++g) {
      const __m256i wu = _mm256_xor_si256(
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q[k] + g * kQ8Group)), flip8);
      for (int r = 0; r < R; ++r) {
        const __m256i dot = _mm256_dpbusd_epi32(
            _mm256_setzero_si256(), wu,
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + r * K + g * kQ8Group)));
        const int32_t sum = hsum256i(dot) + xo[r * G + g];
        rest[r] = std::fma(static_cast<float>(sum), s[k][g] * xs[r * G + g], rest[r]);
      }
    }
    for (int r = 0; r < R; ++r) y[r * N + n + k * stride] = hsum512(acc[k][r]) + rest[r];
  }
}

// Rows [n0, n1) of W times rows [r0, r0 + R) of a, into y [R, N]. With one row of x (decoding)
// the tile is cut into 4 equal parts read side by side, row i of every part together: four
// streams per thread (as bench_memory.h's read stream). In scratch replays of the 1.1B's decode
// weights on an AMD EPYC (2 threads, alternated with the read stream) one stream drew 62-81% of
// the stream, four 92-126%; prefetching the scales, and values 2 KB instead of 1 KB ahead, moved
// the median from 37.8 to 41.1 GB/s (35.3 → 38.1 again; on an Intel Xeon VM: no change, 1.1B
// decode at 94-95% of the stream either way); adjacent rows together (blocks of 8) were slower.
// With more rows of x the kernel nears its compute rate and the accumulators fill the registers
// (2 rows: two streams gave nothing): one row of W at a time, prefetched 4 KB ahead.
template <int R>
KVRAG_VNNI void tile_vnni(const Q8Matrix& w, const Q8Activations& a, int64_t r0, float* y,
                          int64_t n0, int64_t n1) {
  constexpr int S = streams_vnni(R);
  const int64_t part = (n1 - n0) / S;
  for (int64_t i = 0; i < part; ++i) rows_vnni<R, S>(w, a, r0, y, n0 + i, part);
  for (int64_t n = n0 + S * part; n < n1; ++n) rows_vnni<R, 1>(w, a, r0, y, n, 0);  // the last
}
#pragma GCC diagnostic pop
#endif  // KVRAG_X86

// --- dequantization of rows of W ----------------------------------------------------------------

// fp32 → bf16 bits, rounded to nearest even (finite inputs: q8 weights are).
inline uint16_t float_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return static_cast<uint16_t>((u + 0x7FFF + ((u >> 16) & 1)) >> 16);
}

inline void store(float* out, float v) { *out = v; }
inline void store(uint16_t* out, float v) { *out = float_to_bf16(v); }

// `groups` groups of natural-order values q [32 groups] and their scales s into out.
template <typename T>
void dequantize_generic(const int8_t* q, const float* s, int64_t groups, T* out) {
  for (int64_t g = 0; g < groups; ++g) {
    for (int j = 0; j < kQ8Group; ++j) store(out++, q[g * kQ8Group + j] * s[g]);
  }
}

#if KVRAG_X86
KVRAG_AVX2 inline void store8(float* out, __m256 v) { _mm256_storeu_ps(out, v); }
KVRAG_AVX2 inline void store8(uint16_t* out, __m256 v) {
  // Round to nearest even on the integer bits, keep the top halves, pack 8 × 32 → 8 × 16.
  const __m256i u = _mm256_castps_si256(v);
  const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  const __m256i r =
      _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(_mm256_set1_epi32(0x7FFF), odd)), 16);
  const __m128i packed =
      _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out), packed);
}

template <typename T>
KVRAG_AVX2 void dequantize_avx2(const int8_t* q, const float* s, int64_t groups, T* out) {
  for (int64_t g = 0; g < groups; ++g, out += kQ8Group) {
    const __m256 sv = _mm256_broadcast_ss(s + g);
    for (int i = 0; i < 4; ++i)
      store8(out + 8 * i, _mm256_mul_ps(load_q8x8(q + g * kQ8Group + 8 * i), sv));
  }
}

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
KVRAG_AVX512 inline void store16(float* out, __m512 v) { _mm512_storeu_ps(out, v); }
KVRAG_AVX512 inline void store16(uint16_t* out, __m512 v) {
  const __m512i u = _mm512_castps_si512(v);
  const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  const __m512i r =
      _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7FFF), odd)), 16);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), _mm512_cvtepi32_epi16(r));
}

template <typename T>
KVRAG_AVX512 void dequantize_avx512(const int8_t* q, const float* s, int64_t groups, T* out) {
  for (int64_t g = 0; g < groups; ++g, out += kQ8Group) {
    const __m512 sv = _mm512_set1_ps(s[g]);
    const int8_t* qg = q + g * kQ8Group;
    store16(out, _mm512_mul_ps(load_q8x16(qg), sv));
    store16(out + 16, _mm512_mul_ps(load_q8x16(qg + 16), sv));
  }
}
#pragma GCC diagnostic pop
#endif  // KVRAG_X86

// Groups [0, groups) of values q and scales s into out.
template <typename T>
void dequantize_groups(const int8_t* q, const float* s, int64_t groups, T* out) {
#if KVRAG_X86
  const CpuIsa isa = cpu_isa();
  if (isa >= CpuIsa::kAvx512) return dequantize_avx512(q, s, groups, out);
  if (isa >= CpuIsa::kAvx2) return dequantize_avx2(q, s, groups, out);
#endif
  dequantize_generic(q, s, groups, out);
}

template <typename T>
void dequantize_rows(const Q8Matrix& w, int64_t n0, int64_t n1, T* out, const char* what) {
  KVRAG_CHECK(0 <= n0 && n0 <= n1 && n1 <= w.rows, "{}: rows [{}, {}) of a weight [{}, {}]", what,
              n0, n1, w.rows, w.cols);
  const int64_t K = w.cols, G = w.groups_per_row();
  if (!w.interleaved) {
    return dequantize_groups(w.q.data() + n0 * K, w.scales.data() + n0 * G, (n1 - n0) * G, out);
  }
  std::vector<int8_t> row(K);
  for (int64_t n = n0; n < n1; ++n) {
    q8_natural_row(w, n, row.data());
    dequantize_groups(row.data(), w.scales.data() + n * G, G, out + (n - n0) * K);
  }
}

template <int R>
void tile(CpuIsa isa, const Q8Matrix& w, const float* x, float* y, int64_t n0, int64_t n1) {
#if KVRAG_X86
  if (isa >= CpuIsa::kAvx512) return tile_avx512<R>(w, x, y, n0, n1);
  if (isa >= CpuIsa::kAvx2) return tile_avx2<R>(w, x, y, n0, n1);
#endif
  tile_generic<R>(w, x, y, n0, n1);
}

using TileFn = void (*)(CpuIsa, const Q8Matrix&, const float*, float*, int64_t, int64_t);
constexpr TileFn kTiles[kMaxRows] = {tile<1>, tile<2>, tile<3>, tile<4>,
                                     tile<5>, tile<6>, tile<7>, tile<8>};

#if KVRAG_X86
using VnniTileFn = void (*)(const Q8Matrix&, const Q8Activations&, int64_t, float*, int64_t,
                            int64_t);
constexpr VnniTileFn kVnniTiles[kMaxRows] = {tile_vnni<1>, tile_vnni<2>, tile_vnni<3>,
                                             tile_vnni<4>, tile_vnni<5>, tile_vnni<6>,
                                             tile_vnni<7>, tile_vnni<8>};
#endif

// Calls tile_fn(m0, rows, n0, n1) for every block of ≤ 8 rows of x [m, K] and tile of W rows
// [n0, n1), parallel over N (output features) on kvrag's helper threads. Tiles and chunks are
// whole blocks of 8 rows of W (the kernels' widest block for one row of x) wherever N allows:
// a tile of 23 rows (K = 5632) ran its last 7 one at a time, with fewer loads in flight.
template <typename F>
void for_each_tile(int64_t m, int64_t N, int64_t K, F&& tile_fn) {
  constexpr int64_t kBlock = 8;
  // At least ~64K weights per task, as linear()'s matrix-vector kernel: below that a thread
  // costs more than it saves.
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 16) / (K * kBlock));
  // Rows of W that stay in L2 (~128 KiB of them) while every block of x rows passes over them;
  // with one block of x rows there is nothing to reuse.
  const int64_t tile_rows =
      m <= kMaxRows ? N : std::max<int64_t>(1, (int64_t{128} << 10) / (K * kBlock)) * kBlock;
  parallel_chunks((N + kBlock - 1) / kBlock, grain, [&](int64_t b0, int64_t b1) {
    const int64_t n0 = b0 * kBlock, n1 = std::min(N, b1 * kBlock);
    for (int64_t t0 = n0; t0 < n1; t0 += tile_rows) {
      const int64_t t1 = std::min(n1, t0 + tile_rows);
      for (int64_t m0 = 0; m0 < m; m0 += kMaxRows) {
        tile_fn(m0, std::min<int64_t>(kMaxRows, m - m0), t0, t1);
      }
    }
  });
}

}  // namespace

void check_q8_matrix(const Q8Matrix& w, const char* what) {
  const int64_t N = w.rows, K = w.cols;
  KVRAG_CHECK(K > 0 && K % kQ8Group == 0 && static_cast<int64_t>(w.q.size()) == N * K &&
                  static_cast<int64_t>(w.scales.size()) == N * (K / kQ8Group),
              "{}: malformed int8 weight [{}, {}] ({} values, {} scales)", what, N, K, w.q.size(),
              w.scales.size());
}

Q8Matrix quantize_q8(const float* w, int64_t n, int64_t k) {
  return quantize(w, n, k, "quantize_q8");
}

Q8Matrix quantize_q8_bf16(const uint16_t* w, int64_t n, int64_t k) {
  return quantize(w, n, k, "quantize_q8_bf16");
}

void interleave_q8(Q8Matrix& w) {
  check_q8_matrix(w, "interleave_q8");
  if (w.interleaved) return;
  const int64_t K = w.cols;
  parallel_chunks(w.rows, std::max<int64_t>(1, (int64_t{1} << 16) / K),
                  [&](int64_t r0, int64_t r1) {
                    std::vector<int8_t> row(K);
                    for (int64_t n = r0; n < r1; ++n) {
                      int8_t* q = w.q.data() + n * K;
                      reorder_row(q, row.data(), K, /*interleave=*/true);
                      std::memcpy(q, row.data(), K);
                    }
                  });
  w.interleaved = true;
}

void use_fastest_q8_order(Q8Matrix& w) {
  if (cpu_isa() >= CpuIsa::kAvx512Vnni) {
    interleave_q8(w);
  } else if (w.interleaved) {
    w = q8_natural(w);
  }
}

void q8_natural_row(const Q8Matrix& w, int64_t n, int8_t* out) {
  KVRAG_CHECK(0 <= n && n < w.rows, "q8_natural_row: row {} of a weight [{}, {}]", n, w.rows,
              w.cols);
  const int8_t* q = w.q.data() + n * w.cols;
  if (w.interleaved) {
    reorder_row(q, out, w.cols, /*interleave=*/false);
  } else {
    std::memcpy(out, q, w.cols);
  }
}

Q8Matrix q8_natural(const Q8Matrix& w) {
  check_q8_matrix(w, "q8_natural");
  Q8Matrix out;
  out.rows = w.rows;
  out.cols = w.cols;
  out.q.resize(w.q.size());
  out.scales = w.scales;
  const int64_t K = w.cols;
  parallel_chunks(w.rows, std::max<int64_t>(1, (int64_t{1} << 16) / K),
                  [&](int64_t r0, int64_t r1) {
                    for (int64_t n = r0; n < r1; ++n) q8_natural_row(w, n, out.q.data() + n * K);
                  });
  return out;
}

void dequantize_q8(const Q8Matrix& w, float* out) {
  const int64_t K = w.cols, G = w.groups_per_row();
  std::vector<int8_t> row(K);
  for (int64_t n = 0; n < w.rows; ++n) {
    q8_natural_row(w, n, row.data());
    dequantize_generic(row.data(), w.scales.data() + n * G, G, out + n * K);
  }
}

void dequantize_q8_rows(const Q8Matrix& w, int64_t n0, int64_t n1, float* out) {
  dequantize_rows(w, n0, n1, out, "dequantize_q8_rows");
}

void dequantize_q8_rows_bf16(const Q8Matrix& w, int64_t n0, int64_t n1, uint16_t* out) {
  dequantize_rows(w, n0, n1, out, "dequantize_q8_rows_bf16");
}

void q8_matmul(const float* x, int64_t m, const Q8Matrix& w, float* y) {
  const int64_t N = w.rows, K = w.cols;
  check_q8_matrix(w, "q8_matmul");
  KVRAG_CHECK(m >= 0, "q8_matmul: {} rows of x", m);
  if (m == 0 || N == 0) return;
  const CpuIsa isa = cpu_isa();
#if KVRAG_X86
  if (isa >= CpuIsa::kAvx512Vnni) {
    const Q8Activations a = quantize_activations(x, m, K, w.interleaved);  // once, for every tile
    for_each_tile(m, N, K, [&](int64_t m0, int64_t rows, int64_t n0, int64_t n1) {
      kVnniTiles[rows - 1](w, a, m0, y + m0 * N, n0, n1);
    });
    return;
  }
#endif
  // The fp32-activation kernels read natural order only: a weight reordered for VNNI and then
  // multiplied at a lower CPU level (set_cpu_isa) goes through a natural copy, each call.
  if (w.interleaved) return q8_matmul(x, m, q8_natural(w), y);
  for_each_tile(m, N, K, [&](int64_t m0, int64_t rows, int64_t n0, int64_t n1) {
    kTiles[rows - 1](isa, w, x + m0 * K, y + m0 * N, n0, n1);
  });
}

}  // namespace kvrag
