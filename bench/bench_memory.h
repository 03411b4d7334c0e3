// The machine's memory read bandwidth, measured in the benchmark's own run: decoding is
// memory-bound, so a decode's bytes of weights per second are compared with this.
//
// Header-only (the CMake glob makes every bench/*.cpp a program).
#pragma once

#include <cstdint>
#include <mutex>
#include <vector>

#include "bench_common.h"
#include "ops/cpu_isa.h"
#include "ops/threads.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace kvrag::bench {

// Σ of four equal ranges p[0..n), p[q..q+n), p[2q..), p[3q..) read side by side, as the matrix
// kernels read four rows of W at once (one stream a thread reads less per second on a VM); the
// sum keeps the compiler from dropping the reads.
#if defined(__x86_64__)
__attribute__((target("avx2"))) inline float read4_avx2(const float* p, int64_t q, int64_t n) {
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    a0 = _mm256_add_ps(a0, _mm256_loadu_ps(p + i));
    a1 = _mm256_add_ps(a1, _mm256_loadu_ps(p + q + i));
    a2 = _mm256_add_ps(a2, _mm256_loadu_ps(p + 2 * q + i));
    a3 = _mm256_add_ps(a3, _mm256_loadu_ps(p + 3 * q + i));
  }
  alignas(32) float s[8];
  _mm256_store_ps(s, _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
  float sum = s[0] + s[1] + s[2] + s[3] + s[4] + s[5] + s[6] + s[7];
  for (; i < n; ++i) sum += p[i] + p[q + i] + p[2 * q + i] + p[3 * q + i];
  return sum;
}
#endif

inline float read4_portable(const float* p, int64_t q, int64_t n) {  // (no AVX2 on this CPU)
  float a[4] = {};
  for (int64_t i = 0; i < n; ++i) {
    for (int l = 0; l < 4; ++l) a[l] += p[l * q + i];
  }
  return a[0] + a[1] + a[2] + a[3];
}

// Reads all of buf on kvrag's helper threads, as the kernels do, each chunk as four streams.
inline float read_stream(const std::vector<float>& buf) {
  std::mutex mutex;
  float total = 0;
  parallel_chunks(
      static_cast<int64_t>(buf.size()) / 4, int64_t{1} << 16, [&](int64_t b, int64_t e) {
        const float* p = buf.data() + 4 * b;  // the chunk [4b, 4e) as four quarters
#if defined(__x86_64__)
        const float s = best_cpu_isa() >= CpuIsa::kAvx2 ? read4_avx2(p, e - b, e - b)
                                                        : read4_portable(p, e - b, e - b);
#else
        const float s = read4_portable(p, e - b, e - b);
#endif
        std::lock_guard<std::mutex> lock(mutex);  // once per chunk of megabytes
        total += s;
      });
  return total;
}

// GB/s of reading all of buf again and again for at least `seconds` (once at least): the mean
// rate over that time. Beside a decode run of the same length it is the rate the machine gave
// then, a like-with-like divisor for the decode's own mean rate; this VM's rate moves by tens of
// percent from one minute to the next.
inline double read_rate_for(const std::vector<float>& buf, double seconds) {
  volatile float sink = 0;
  int64_t passes = 0;
  double elapsed = 0;
  const double t0 = now_seconds();
  do {
    sink = sink + read_stream(buf);
    ++passes;
    elapsed = now_seconds() - t0;
  } while (elapsed < seconds);
  return static_cast<double>(passes) * static_cast<double>(buf.size() * sizeof(float)) / elapsed /
         1e9;
}

// GB/s of the best of `repeats` reads of buf (written already), on as many threads as libtorch is
// configured for.
inline double read_bandwidth(const std::vector<float>& buf, int repeats = 5) {
  volatile float sink = read_stream(buf);
  const double t = best_time(repeats, [&] { sink = sink + read_stream(buf); });
  return static_cast<double>(buf.size() * sizeof(float)) / t / 1e9;
}

}  // namespace kvrag::bench
