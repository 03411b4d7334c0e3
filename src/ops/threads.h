// Compute threads: libtorch's (and OpenMP's inside it), BLAS's, and kvrag's own helpers for
// decoding's short loops.
#pragma once

#include <c10/core/ScalarType.h>

#include <cstdint>
#include <functional>

#include "ops/q8_channel_gemm.h"

namespace kvrag {

// The thread count to use: `requested` if > 0, else $KVRAG_THREADS, else the number of cores
// this process may run on.
int resolve_threads(int requested = 0);

// Sets libtorch's intra-op threads (libtorch 1.13 starts with 1 here). Returns the count set.
// Call once at start-up, before any tensor work.
int configure_threads(int requested = 0);

// While alive, libtorch ops called from this thread run their intra-op loops inline instead
// of on libtorch's OpenMP team. For inference whose matrix products run on BLAS's own threads
// (OpenBLAS keeps a pthread pool, separate from libtorch's OpenMP one): with both pools active
// on as many cores as threads, OpenMP workers spin-waiting between elementwise ops take the
// cores the BLAS threads need, and each matmul waits for a descheduled thread. Only the calling
// thread's OpenMP setting changes (it is a per-thread ICV), so other threads are unaffected.
class SerialIntraOpGuard {
 public:
  explicit SerialIntraOpGuard(bool active = true);
  ~SerialIntraOpGuard();
  SerialIntraOpGuard(const SerialIntraOpGuard&) = delete;
  SerialIntraOpGuard& operator=(const SerialIntraOpGuard&) = delete;

 private:
  int saved_ = 0;  // the thread's OpenMP team size before; 0 when inactive
};

// While alive (and `active`), BLAS runs on the calling thread alone (openblas_set_num_threads(1),
// where the BLAS loaded is OpenBLAS: found with dlsym, else nothing changes). For a forward whose
// heavy products run on another team (kvrag's helpers, oneDNN's OpenMP threads) and whose few
// BLAS products are small: after a product OpenBLAS's pthread workers spin on sched_yield for a
// while, and on as many cores as threads they take the cores the other team needs. The setting is
// process-wide: products on other threads meanwhile also run on one thread each.
class SerialBlasGuard {
 public:
  explicit SerialBlasGuard(bool active = true);
  ~SerialBlasGuard();
  SerialBlasGuard(const SerialBlasGuard&) = delete;
  SerialBlasGuard& operator=(const SerialBlasGuard&) = delete;

 private:
  int saved_ = 0;  // OpenBLAS's thread count before; 0 when unchanged
};

// While alive (and `active`), a forward whose heavy products run on kvrag's helper threads
// (q8_gemm, ops/q8_gemm.h) has the cores to itself: libtorch's intra-op loops run inline on this
// thread (as SerialIntraOpGuard) and BLAS runs on the calling thread alone (as
// SerialBlasGuard), while parallel_chunks on this thread keeps the thread count it had. Why:
// after a product, OpenBLAS's pthread workers spin on sched_yield for a while, as OpenMP's do
// after a loop; on as many cores as threads they took the core q8_gemm's helper needed (perf of
// 1.1B int8 prefill: the helper ran no tile, OpenBLAS's and OpenMP's workers took 36% of the
// samples spinning).
class HelperThreadsGuard {
 public:
  explicit HelperThreadsGuard(bool active = true);
  ~HelperThreadsGuard();
  HelperThreadsGuard(const HelperThreadsGuard&) = delete;
  HelperThreadsGuard& operator=(const HelperThreadsGuard&) = delete;

 private:
  int saved_omp_ = 0;  // the thread's OpenMP team size before; 0 when inactive
  int saved_chunk_threads_ = 0;
  SerialBlasGuard blas_;
};

// The threads of an inference forward made of matrix products with weights of `weight_dtype`
// (BERT's, a LLaMA prefill): int8 weights with AVX-512 VNNI multiply on q8_gemm's helpers, which
// then get the cores (HelperThreadsGuard); fp32 weights where fp32_gemm_on_onednn(), and int8
// weights multiplied as `many_rows` says where q8_row_codes_in_use() (ops/q8_linear.h), multiply
// through oneDNN on libtorch's OpenMP team, and the attention's small BLAS products run on this
// thread (SerialBlasGuard); otherwise, where the products run on BLAS threads, libtorch's own team
// stays idle (SerialIntraOpGuard). Inactive (`active` false) for a forward that records a graph
// (training loops hold their own guard) or a decode step (its products use kvrag's helpers
// already: it holds a HelperThreadsGuard instead, model/llama.cpp).
class ForwardThreadsGuard {
 public:
  ForwardThreadsGuard(bool active, c10::ScalarType weight_dtype,
                      Q8ManyRows many_rows = Q8ManyRows::kDequantized);

 private:
  static bool on_helpers(bool active, c10::ScalarType weight_dtype);
  static bool on_onednn(bool active, c10::ScalarType weight_dtype, Q8ManyRows many_rows);
  static bool on_blas(bool active, c10::ScalarType weight_dtype, Q8ManyRows many_rows);
  SerialIntraOpGuard serial_;
  HelperThreadsGuard helpers_;
  SerialBlasGuard blas_;
};

// Calls fn(begin, end) on chunks (at least `grain` long) covering [0, n), on the calling thread
// and up to at::get_num_threads() - 1 helper threads of kvrag's own (inside a HelperThreadsGuard,
// the count from before it). Chunks are claimed as
// threads come free, and the caller waits only for a chunk a helper has already started: a
// helper the OS has not scheduled (a busy machine) costs nothing, where an OpenMP team's barrier
// waits for every member. Meant for decoding's short, frequent, memory-bound loops (matrix-vector
// products, attention over the cache). fn must not throw; chunks run concurrently.
void parallel_chunks(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

// OpenBLAS's thread count now (its pool is process-wide), or 0 where the BLAS loaded is not
// OpenBLAS.
int blas_threads();

// Whether matrix products of `dtype` run on BLAS's own thread pool or kvrag's helpers here (fp32
// always; bf16 and int8 weights (kInt8) when computed in fp32, see native_bf16_matmul() in
// ops/matmul.h and q8_linear; int8 weights on q8_gemm's helpers with AVX-512 VNNI) rather than
// on libtorch's OpenMP threads.
bool matmul_uses_blas_threads(c10::ScalarType dtype);

}  // namespace kvrag
