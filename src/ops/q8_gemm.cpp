#include "ops/q8_gemm.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "ops/cpu_isa.h"
#include "ops/simd.h"
#include "ops/threads.h"

namespace kvrag {
namespace {

#if KVRAG_X86

constexpr int kLanes = 16;  // outputs per vector: a block of W rows
constexpr int kSteps = 8;   // 4-byte steps per group of 32
constexpr int kMr = 4;      // rows of x per micro-tile
constexpr int kNv = 2;      // blocks of W per micro-tile
// A tile: 96 rows of W, packed a chunk of K (2,048) at a time, 240 KB: it stays in L2 while every
// row of x passes over it, and a micro-tile's 4 rows of x (8 KB of the chunk) stay in L1 while
// they pass over its 6 blocks.
constexpr int64_t kTileBlocks = 6;
constexpr int64_t kChunkGroups = 64;  // a chunk starts a run of the decode order (pack_block)
static_assert(kChunkGroups % kQ8Interleave == 0);

// x [m, K] rounded to int8 per group, as the kernel reads it.
struct QuantizedRows {
  std::vector<uint8_t> q;     // [m, K]: q_x + 128 (in [1, 255])
  std::vector<float> scales;  // [m, G]: s_x; NaN for a group holding a non-finite x
};

// 64 aligned bytes: the storage of packed tiles (std::vector<__m512i> would drop the vector
// type's attributes in the template argument).
struct alignas(64) Vector64 {
  unsigned char bytes[64];
};

// One block of 16 rows of W packed for a chunk of `groups` groups along K, in 64-byte vectors:
//   [groups][8]  weights: vector (g, j) holds bytes 4j…4j+3 of group g of each of the 16 rows
//   [groups]     scales s_w of the 16 rows' group g (0 for rows past N)
//   [groups]     offsets -128 Σ_j q_w,j of the 16 rows' group g (int32)
constexpr int64_t vectors_per_block(int64_t groups) { return groups * (kSteps + 2); }

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

// 16 fp32 → 16 values q + 128 in 32-bit lanes, q = round(v / scale) in [-127, 127].
KVRAG_VNNI inline __m512i quantize16(__m512 v, __m512 scale) {
  const __m512i q = _mm512_cvt_roundps_epi32(_mm512_div_ps(v, scale),
                                             _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512i clamped =
      _mm512_min_epi32(_mm512_max_epi32(q, _mm512_set1_epi32(-127)), _mm512_set1_epi32(127));
  return _mm512_add_epi32(clamped, _mm512_set1_epi32(128));
}

// Rows [r0, r1) of x [m, K] into a.
KVRAG_VNNI void quantize_rows(const float* x, int64_t K, int64_t r0, int64_t r1, QuantizedRows& a) {
  const int64_t G = K / kQ8Group;
  const __m512 sign = _mm512_set1_ps(-0.0f), big = _mm512_set1_ps(FLT_MAX);
  for (int64_t r = r0; r < r1; ++r) {
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
      uint8_t* dst = a.q.data() + r * K + g * kQ8Group;
      if (!(scale > 0)) {  // zeros (exact), or NaN carried by the scale
        std::memset(dst, 128, kQ8Group);
        continue;
      }
      const __m512 sv = _mm512_set1_ps(scale);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), _mm512_cvtepi32_epi8(quantize16(v0, sv)));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + 16),
                       _mm512_cvtepi32_epi8(quantize16(v1, sv)));
    }
  }
}

// r[i] (i < 16: row i, 16 int32) ← column i: the 16 × 16 int32 transpose in registers.
KVRAG_VNNI inline void transpose16(__m512i (&r)[16]) {
  __m512i t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
    r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
    r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
    r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
  }
  for (int h = 0; h < 16; h += 8) {  // 128-bit lanes: rows h…h+3 with h+4…h+7
    for (int i = 0; i < 4; ++i) {
      t[h + i] = _mm512_shuffle_i32x4(r[h + i], r[h + i + 4], 0x88);
      t[h + i + 4] = _mm512_shuffle_i32x4(r[h + i], r[h + i + 4], 0xdd);
    }
  }
  for (int i = 0; i < 8; ++i) {
    r[i] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0x88);
    r[i + 8] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0xdd);
  }
}

// Groups [g0, g1) of rows [n, n + 16) of W (zeros past N) packed into out
// (vectors_per_block(g1 - g0) vectors); g0 a multiple of 16 (a chunk start).
KVRAG_VNNI void pack_block(const Q8Matrix& w, int64_t n, int64_t g0, int64_t g1, __m512i* out) {
  const int64_t K = w.cols, G = w.groups_per_row(), groups = g1 - g0;
  const int64_t valid = std::min<int64_t>(kLanes, w.rows - n);
  __m512i* weights = out;                                                      // [groups][8]
  float* scales = reinterpret_cast<float*>(out + groups * kSteps);             // [groups][16]
  int32_t* offsets = reinterpret_cast<int32_t*>(out + groups * (kSteps + 1));  // [groups][16]
  // In the decode order (Q8Matrix::interleaved) a run's step t holds 4-byte step t of its 16
  // groups: the same transpose that turns two natural groups' 64 bytes into 16 steps turns the
  // run's step t into step t of each of its 16 groups.
  const int64_t run_end = w.interleaved ? G / kQ8Interleave * kQ8Interleave : 0;
  int64_t g = g0;
  for (; g + kQ8Interleave <= std::min(g1, run_end); g += kQ8Interleave) {  // a run
    for (int s = 0; s < kSteps; ++s) {
      __m512i r[16];
      for (int l = 0; l < kLanes; ++l) {
        r[l] = l < valid ? _mm512_loadu_si512(w.q.data() + (n + l) * K + g * kQ8Group + 64 * s)
                         : _mm512_setzero_si512();
      }
      transpose16(r);  // r[i]: step s of group g + i, of every row
      for (int i = 0; i < kLanes; ++i) weights[(g - g0 + i) * kSteps + s] = r[i];
    }
  }
  for (; g < g1; g += 2) {  // natural order: 64 bytes of each row, two groups
    const int64_t pair = std::min<int64_t>(2, g1 - g);
    const __mmask64 mask = pair == 2 ? ~__mmask64{0} : __mmask64{0xFFFFFFFF};
    __m512i r[16];
    for (int l = 0; l < kLanes; ++l) {
      r[l] = l < valid ? _mm512_maskz_loadu_epi8(mask, w.q.data() + (n + l) * K + g * kQ8Group)
                       : _mm512_setzero_si512();
    }
    transpose16(r);  // r[s]: 4-byte step s of the 64 bytes, of every row
    for (int64_t h = 0; h < pair; ++h) {
      for (int s = 0; s < kSteps; ++s) weights[(g - g0 + h) * kSteps + s] = r[h * kSteps + s];
    }
  }
  const __m512i u128 = _mm512_set1_epi8(static_cast<char>(0x80));  // unsigned 128 in every byte
  for (int64_t i = 0; i < groups; ++i) {
    __m512i sum = _mm512_setzero_si512();  // 128 Σ_j q_w,j per row
    for (int s = 0; s < kSteps; ++s) sum = _mm512_dpbusd_epi32(sum, u128, weights[i * kSteps + s]);
    _mm512_store_si512(offsets + i * kLanes, _mm512_sub_epi32(_mm512_setzero_si512(), sum));
    for (int l = 0; l < kLanes; ++l) {
      scales[i * kLanes + l] = l < valid ? w.scales[(n + l) * G + g0 + i] : 0.0f;
    }
  }
}

// y [MR, 16 NV] (row stride ldy; lanes past `last_lanes` of the last block neither read nor
// stored) = MR rows of x times NV packed blocks of W (block_vectors apart) over `groups` groups;
// x's bytes and scales at xq and xs (rows ldq and lds apart). With `accumulate`, the sums start
// from y (the chunks of K before), so that an output's fp32 additions run in the same order,
// group after group, whatever the chunks.
template <int MR, int NV>
KVRAG_VNNI void micro_tile(const uint8_t* xq, int64_t ldq, const float* xs, int64_t lds,
                           int64_t groups, const __m512i* wp, int64_t block_vectors, float* y,
                           int64_t ldy, __mmask16 last_lanes, bool accumulate) {
  __mmask16 lanes[NV];
  for (int v = 0; v < NV; ++v) lanes[v] = v == NV - 1 ? last_lanes : __mmask16(0xFFFF);
  __m512 acc[MR][NV];
  for (int r = 0; r < MR; ++r) {
    for (int v = 0; v < NV; ++v) {
      acc[r][v] = accumulate ? _mm512_maskz_loadu_ps(lanes[v], y + r * ldy + v * kLanes)
                             : _mm512_setzero_ps();
    }
  }
  for (int64_t g = 0; g < groups; ++g) {
    __m512i dot[MR][NV];
    for (int v = 0; v < NV; ++v) {
      const __m512i offset = _mm512_load_si512(wp + v * block_vectors + groups * (kSteps + 1) + g);
      for (int r = 0; r < MR; ++r) dot[r][v] = offset;
    }
    const __m512i* wg = wp + g * kSteps;
    const uint8_t* xg = xq + g * kQ8Group;
    for (int s = 0; s < kSteps; ++s) {
      __m512i wv[NV];
      for (int v = 0; v < NV; ++v) wv[v] = _mm512_load_si512(wg + v * block_vectors + s);
      for (int r = 0; r < MR; ++r) {
        int32_t four;  // x's 4 bytes of this step, broadcast to every lane
        std::memcpy(&four, xg + r * ldq + 4 * s, sizeof four);
        const __m512i xb = _mm512_set1_epi32(four);
        for (int v = 0; v < NV; ++v) dot[r][v] = _mm512_dpbusd_epi32(dot[r][v], xb, wv[v]);
      }
    }
    __m512 sw[NV];
    for (int v = 0; v < NV; ++v) {
      sw[v] = _mm512_load_ps(
          reinterpret_cast<const float*>(wp + v * block_vectors + groups * kSteps + g));
    }
    for (int r = 0; r < MR; ++r) {
      const __m512 sx = _mm512_set1_ps(xs[r * lds + g]);
      for (int v = 0; v < NV; ++v) {
        acc[r][v] =
            _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot[r][v]), _mm512_mul_ps(sw[v], sx), acc[r][v]);
      }
    }
  }
  for (int r = 0; r < MR; ++r) {
    for (int v = 0; v < NV; ++v)
      _mm512_mask_storeu_ps(y + r * ldy + v * kLanes, lanes[v], acc[r][v]);
  }
}

using MicroTile = void (*)(const uint8_t*, int64_t, const float*, int64_t, int64_t, const __m512i*,
                           int64_t, float*, int64_t, __mmask16, bool);
// [MR - 1][NV - 1]
constexpr MicroTile kMicroTiles[kMr][kNv] = {{micro_tile<1, 1>, micro_tile<1, 2>},
                                             {micro_tile<2, 1>, micro_tile<2, 2>},
                                             {micro_tile<3, 1>, micro_tile<3, 2>},
                                             {micro_tile<4, 1>, micro_tile<4, 2>}};

#pragma GCC diagnostic pop

// Blocks [b0, b1) of W times every row of a, into y [m, N]: a chunk of K at a time, packed into
// `storage` (the chunk's weights of the tile stay in L2 while every row of x passes over them,
// and each 4 rows' bytes of the chunk stay in L1 while they pass over the tile's blocks).
KVRAG_VNNI void tile_product(const Q8Matrix& w, const QuantizedRows& a, int64_t m, int64_t b0,
                             int64_t b1, std::vector<Vector64>& storage, float* y) {
  const int64_t N = w.rows, K = w.cols, G = w.groups_per_row();
  for (int64_t g0 = 0; g0 < G; g0 += kChunkGroups) {
    const int64_t groups = std::min(kChunkGroups, G - g0), per_block = vectors_per_block(groups);
    storage.resize((b1 - b0) * per_block);
    auto* packed = reinterpret_cast<__m512i*>(storage.data());
    for (int64_t b = b0; b < b1; ++b) {
      pack_block(w, b * kLanes, g0, g0 + groups, packed + (b - b0) * per_block);
    }
    for (int64_t r = 0; r < m; r += kMr) {
      const int64_t rows = std::min<int64_t>(kMr, m - r);
      for (int64_t b = b0; b < b1; b += kNv) {
        const int64_t blocks = std::min<int64_t>(kNv, b1 - b);
        const int64_t lanes = std::min<int64_t>(kLanes, N - (b + blocks - 1) * kLanes);
        kMicroTiles[rows - 1][blocks - 1](
            a.q.data() + r * K + g0 * kQ8Group, K, a.scales.data() + r * G + g0, G, groups,
            packed + (b - b0) * per_block, per_block, y + r * N + b * kLanes, N,
            static_cast<__mmask16>((1u << lanes) - 1), g0 > 0);
      }
    }
  }
}

void gemm_vnni(const float* x, int64_t m, const Q8Matrix& w, float* y) {
  const int64_t N = w.rows, K = w.cols, G = w.groups_per_row();
  QuantizedRows a;
  a.q.resize(m * K);
  a.scales.resize(m * G);
  parallel_chunks(m, std::max<int64_t>(1, (int64_t{1} << 15) / K),
                  [&](int64_t r0, int64_t r1) { quantize_rows(x, K, r0, r1, a); });
  const int64_t blocks = (N + kLanes - 1) / kLanes;
  const int64_t tiles = (blocks + kTileBlocks - 1) / kTileBlocks;
  parallel_chunks(tiles, 1, [&](int64_t t0, int64_t t1) {
    thread_local std::vector<Vector64> packed;  // the thread's tile, kept between calls
    for (int64_t t = t0; t < t1; ++t) {
      tile_product(w, a, m, t * kTileBlocks, std::min(blocks, (t + 1) * kTileBlocks), packed, y);
    }
  });
}

#endif  // KVRAG_X86

}  // namespace

bool q8_gemm_available() {
#if KVRAG_X86
  return cpu_isa() >= CpuIsa::kAvx512Vnni;
#else
  return false;
#endif
}

void q8_gemm(const float* x, int64_t m, const Q8Matrix& w, float* y) {
  check_q8_matrix(w, "q8_gemm");
  KVRAG_CHECK(m >= 0, "q8_gemm: {} rows of x", m);
  KVRAG_CHECK(q8_gemm_available(), "q8_gemm: needs AVX-512 VNNI; the CPU level in use is {}",
              cpu_isa_name(cpu_isa()));
  if (m == 0 || w.rows == 0) return;
#if KVRAG_X86
  gemm_vnni(x, m, w, y);
#endif
}

}  // namespace kvrag
