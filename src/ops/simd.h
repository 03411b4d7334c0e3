// What the hand-written x86 kernels share: the intrinsics (on x86-64 only; KVRAG_X86 says
// whether they are there) and one function attribute per ISA level, which compiles a kernel for
// that level while the rest of its file stays baseline x86-64, so that cpu_isa() (ops/cpu_isa.h)
// chooses among them at run time.
#pragma once

#include <cstdint>

#if defined(__x86_64__)
#include <immintrin.h>
#define KVRAG_X86 1
#define KVRAG_AVX2 __attribute__((target("avx2,fma")))
#define KVRAG_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")))
#define KVRAG_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma")))
#define KVRAG_AVX512BF16 \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx512bf16,avx2,fma")))
#else
#define KVRAG_X86 0
#endif

#if KVRAG_X86
namespace kvrag {

// The sum of a vector's lanes, for the kernels' last step (one per output).
KVRAG_AVX2 inline float hsum256(__m256 v) {
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_shuffle_ps(t, t, 1)));
}
// 8 values as fp32: fp32 as they are, or bf16 given as their 16 bits (the top half of an fp32),
// widened exactly.
KVRAG_AVX2 inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
KVRAG_AVX2 inline __m256 load8(const uint16_t* p) {
  const __m128i bits = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(bits), 16));
}
// GCC 12's AVX-512 intrinsics start from _mm512_undefined_*() and warn that it is, or may be,
// uninitialized (GCC bug 105593, fixed in 13).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
KVRAG_AVX512 inline float hsum512(__m512 v) {
  return hsum256(_mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1)));
}
#pragma GCC diagnostic pop

}  // namespace kvrag
#endif
