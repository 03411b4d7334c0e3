#include "ops/q8_channel_gemm.h"

#include <ATen/Parallel.h>
#include <oneapi/dnnl/dnnl.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <limits>
#include <vector>

#include "core/error.h"
#include "ops/cpu_isa.h"
#include "ops/simd.h"

namespace kvrag {
namespace {

constexpr int64_t kMaxK = 131072;  // |Σ_k u_k q_k| < 127² K stays below 2³¹
// Rows of W per oneDNN call: their int32 products with every row of x take at most this much.
constexpr int64_t kProductBytes = int64_t{16} << 20;

#if KVRAG_X86

// 32 int32 (a, b, c, d: 8 each, in order) → 32 bytes in order: unsigned (saturating to [0, 255])
// or signed (to [-128, 127]).
KVRAG_AVX2 inline __m256i pack32(__m256i a, __m256i b, __m256i c, __m256i d, bool is_unsigned) {
  const __m256i ab = _mm256_packs_epi32(a, b), cd = _mm256_packs_epi32(c, d);  // lanes interleaved
  const __m256i bytes = is_unsigned ? _mm256_packus_epi16(ab, cd) : _mm256_packs_epi16(ab, cd);
  return _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

// The smallest and the largest of 8 lanes.
KVRAG_AVX2 inline float hmin256(__m256 v) {
  __m128 s = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_min_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_min_ss(s, _mm_shuffle_ps(s, s, 1)));
}
KVRAG_AVX2 inline float hmax256(__m256 v) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_max_ss(s, _mm_shuffle_ps(s, s, 1)));
}

// Row x [K] (K a multiple of 32) into u [K] = clamp(round(x · (1 / s)) + z, 0, 127); its scale s
// into *scale (NaN where x holds a non-finite value, 0 for a row of zeros) and z into *zero.
KVRAG_AVX2 void quantize_row(const float* x, int64_t K, uint8_t* u, float* scale, int32_t* zero) {
  const __m256 sign = _mm256_set1_ps(-0.0f), big = _mm256_set1_ps(FLT_MAX);
  __m256 lo = _mm256_setzero_ps(), hi = lo, finite = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
  for (int64_t k = 0; k < K; k += 8) {
    const __m256 v = _mm256_loadu_ps(x + k);
    lo = _mm256_min_ps(lo, v);
    hi = _mm256_max_ps(hi, v);
    finite = _mm256_and_ps(finite, _mm256_cmp_ps(_mm256_andnot_ps(sign, v), big, _CMP_LE_OQ));
  }
  const float low = hmin256(lo), s = (hmax256(hi) - low) / 127;
  const bool ok = _mm256_movemask_ps(finite) == 0xFF;  // a NaN compares false
  *scale = ok ? s : std::numeric_limits<float>::quiet_NaN();
  *zero = 0;
  if (!ok || !(s > 0)) {  // NaN (carried by the scale) or zeros (exact)
    std::fill_n(u, K, uint8_t{0});
    return;
  }
  const int32_t z = std::clamp(static_cast<int32_t>(std::nearbyint(-low / s)), 0, 127);
  *zero = z;
  const __m256 inv = _mm256_set1_ps(1 / s);
  const __m256i zv = _mm256_set1_epi32(z), top = _mm256_set1_epi32(127);
  const __m256i none = _mm256_setzero_si256();
  for (int64_t k = 0; k < K; k += 32) {
    __m256i q[4];
    for (int i = 0; i < 4; ++i) {
      // Rounded to nearest (even) by the default MXCSR mode.
      const __m256i r = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + k + 8 * i), inv));
      q[i] = _mm256_min_epi32(_mm256_max_epi32(_mm256_add_epi32(r, zv), none), top);
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(u + k), pack32(q[0], q[1], q[2], q[3], true));
  }
}

// Row n of W requantized per channel into q [K]; its scale into *scale (0 for a row of zeros)
// and Σ_k q_k into *sum.
KVRAG_AVX2 void requantize_row(const Q8Matrix& w, int64_t n, int8_t* q, float* scale,
                               int32_t* sum) {
  const int64_t K = w.cols, G = w.groups_per_row();
  const int8_t* src = w.q.data() + n * K;
  const float* s = w.scales.data() + n * G;
  float top = 0;  // max |ŵ| = max over groups of s_g · max |q_g|
  for (int64_t g = 0; g < G; ++g) {
    const __m256i a =
        _mm256_abs_epi8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + g * kQ8Group)));
    __m128i m = _mm_max_epu8(_mm256_castsi256_si128(a), _mm256_extracti128_si256(a, 1));
    m = _mm_max_epu8(m, _mm_srli_si128(m, 8));
    m = _mm_max_epu8(m, _mm_srli_si128(m, 4));
    m = _mm_max_epu8(m, _mm_srli_si128(m, 2));
    m = _mm_max_epu8(m, _mm_srli_si128(m, 1));
    top = std::max(top, s[g] * static_cast<float>(_mm_cvtsi128_si32(m) & 0xFF));
  }
  const float channel = top / 127;
  *scale = channel;
  if (!(channel > 0)) {
    std::fill_n(q, K, int8_t{0});
    *sum = 0;
    return;
  }
  __m256i total = _mm256_setzero_si256();
  for (int64_t g = 0; g < G; ++g) {
    const __m256 ratio = _mm256_set1_ps(s[g] / channel);  // ≤ 127 / max|q_g|: |q · ratio| ≤ 127
    __m256i r[4];
    for (int i = 0; i < 4; ++i) {
      const __m128i eight =
          _mm_loadl_epi64(reinterpret_cast<const __m128i*>(src + g * kQ8Group + 8 * i));  // 8 int8
      r[i] =
          _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(eight)), ratio));
      total = _mm256_add_epi32(total, r[i]);
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + g * kQ8Group),
                        pack32(r[0], r[1], r[2], r[3], false));
  }
  const __m128i t =
      _mm_add_epi32(_mm256_castsi256_si128(total), _mm256_extracti128_si256(total, 1));
  const __m128i t2 = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0x4E));
  *sum = _mm_cvtsi128_si32(_mm_add_epi32(t2, _mm_shuffle_epi32(t2, 0xB1)));
}

// y [n] = s_x s_j (c_j - z sum_j) for one row of x and n outputs.
KVRAG_AVX2 void scale_row(const int32_t* c, int64_t n, float sx, int32_t z, const float* s,
                          const int32_t* sum, float* y) {
  const __m256 sxv = _mm256_set1_ps(sx);
  const __m256i zv = _mm256_set1_epi32(z);
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    const __m256i exact = _mm256_sub_epi32(
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c + j)),
        _mm256_mullo_epi32(zv, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(sum + j))));
    _mm256_storeu_ps(y + j, _mm256_mul_ps(_mm256_cvtepi32_ps(exact),
                                          _mm256_mul_ps(sxv, _mm256_loadu_ps(s + j))));
  }
  for (; j < n; ++j) y[j] = static_cast<float>(c[j] - z * sum[j]) * (sx * s[j]);
}

void gemm_channels(const float* x, int64_t M, const Q8Matrix& w, float* y) {
  const int64_t N = w.rows, K = w.cols;
  std::vector<uint8_t> u(M * K);  // [M, K]
  std::vector<float> sx(M);
  std::vector<int32_t> zx(M);
  at::parallel_for(0, M, std::max<int64_t>(1, (int64_t{1} << 15) / K), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) quantize_row(x + r * K, K, &u[r * K], &sx[r], &zx[r]);
  });
  const int64_t rows = std::clamp<int64_t>(kProductBytes / (M * 4), 64, N);
  std::vector<int8_t> q(rows * K);  // [rows, K]
  std::vector<float> sw(rows);
  std::vector<int32_t> sums(rows), c(M * rows);  // c: [M, rows]
  for (int64_t n0 = 0; n0 < N; n0 += rows) {
    const int64_t n = std::min(rows, N - n0);
    at::parallel_for(0, n, std::max<int64_t>(1, (int64_t{1} << 15) / K),
                     [&](int64_t j0, int64_t j1) {
                       for (int64_t j = j0; j < j1; ++j)
                         requantize_row(w, n0 + j, &q[j * K], &sw[j], &sums[j]);
                     });
    const int32_t no_offset = 0;
    const dnnl_status_t status = dnnl_gemm_u8s8s32('N', 'T', 'F', M, n, K, 1.0f, u.data(), K, 0,
                                                   q.data(), K, 0, 0.0f, c.data(), n, &no_offset);
    KVRAG_CHECK(status == dnnl_success,
                "q8_channel_gemm: oneDNN's integer GEMM of [{}, {}] by [{}, {}]ᵀ failed ({})", M, K,
                n, K, static_cast<int>(status));
    at::parallel_for(
        0, M, std::max<int64_t>(1, (int64_t{1} << 14) / n), [&](int64_t r0, int64_t r1) {
          for (int64_t r = r0; r < r1; ++r) {
            scale_row(&c[r * n], n, sx[r], zx[r], sw.data(), sums.data(), y + r * N + n0);
          }
        });
  }
}

#endif  // KVRAG_X86

}  // namespace

bool q8_channel_gemm_available() {
#if KVRAG_X86
  const CpuIsa isa = cpu_isa();
  return isa >= CpuIsa::kAvx2 && isa < CpuIsa::kAvx512Vnni;
#else
  return false;
#endif
}

void q8_channel_gemm(const float* x, int64_t m, const Q8Matrix& w, float* y) {
  check_q8_matrix(w, "q8_channel_gemm");
  KVRAG_CHECK(w.cols <= kMaxK, "q8_channel_gemm: rows of {} values (at most {}: int32 sums)",
              w.cols, kMaxK);
  KVRAG_CHECK(m >= 0, "q8_channel_gemm: {} rows of x", m);
  KVRAG_CHECK(q8_channel_gemm_available(),
              "q8_channel_gemm: needs AVX2 without AVX-512 VNNI; the CPU level in use is {}",
              cpu_isa_name(cpu_isa()));
  if (m == 0 || w.rows == 0) return;
#if KVRAG_X86
  // Reads natural order: a weight reordered for VNNI (Q8Matrix::interleaved) and then multiplied
  // at a lower CPU level (set_cpu_isa) goes through a natural copy, each call.
  if (w.interleaved) return gemm_channels(x, m, q8_natural(w), y);
  gemm_channels(x, m, w, y);
#endif
}

}  // namespace kvrag
