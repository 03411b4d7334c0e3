#include "ops/threads.h"

#include <dlfcn.h>
#include <omp.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <torch/torch.h>

#include "core/error.h"
#include "ops/matmul.h"
#include "ops/q8_gemm.h"
#include "ops/q8_linear.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace kvrag {
namespace {

// parallel_chunks' thread count inside a HelperThreadsGuard on this thread (0: none).
thread_local int t_chunk_threads = 0;

// OpenBLAS's thread-count functions, looked up rather than linked: the BLAS behind libblas.so.3
// is whichever Debian's alternatives chose, and only OpenBLAS has these (null elsewhere).
struct OpenBlasThreads {
  int (*get)() = nullptr;
  void (*set)(int) = nullptr;
};

const OpenBlasThreads& openblas_threads() {
  static const OpenBlasThreads fns{
      reinterpret_cast<int (*)()>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads")),
      reinterpret_cast<void (*)(int)>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))};
  return fns;
}

inline void cpu_relax() {
#if defined(__x86_64__)
  _mm_pause();
#endif
}

// --- kvrag's helper threads (see parallel_chunks) ------------------------------------------------

class HelperTeam {
 public:
  static HelperTeam& instance() {
    static HelperTeam team;
    return team;
  }

  // Calls fn(c) for every c in [0, chunks), on the caller and up to `helpers` helper threads.
  void run(int64_t chunks, int helpers, const std::function<void(int64_t)>& fn) {
    if (helpers <= 0 || chunks <= 1) {
      for (int64_t c = 0; c < chunks; ++c) fn(c);
      return;
    }
    grow(helpers);
    auto job = std::make_shared<Job>();
    job->fn = &fn;
    job->chunks = chunks;
    job->max_helpers = helpers;
    std::atomic_store(&job_, job);
    generation_.fetch_add(1);  // seq_cst, paired with the sleepers_ check below
    if (sleepers_.load() > 0) {
      std::lock_guard<std::mutex> lock(mutex_);
      wake_.notify_all();
    }
    work(*job);
    // Every chunk is claimed; wait for those a helper is still running (usually none or one, a
    // few microseconds). Only after kYieldAfter does the wait yield the core, which a helper
    // the OS has not scheduled may be waiting for: a yield is a system call (1-2 µs in a VM), and
    // yielding every 64 spins from the start took 5% of the calling thread's samples in a 110M
    // decode (perf); waiting 50 µs first cut the run's system time by a fifth.
    constexpr auto kYieldAfter = std::chrono::microseconds(50);
    std::chrono::steady_clock::time_point wait_start{};
    for (int spins = 1; job->done.load(std::memory_order_acquire) < chunks; ++spins) {
      if (spins % 64 != 0) {
        cpu_relax();
      } else if (wait_start == std::chrono::steady_clock::time_point{}) {
        wait_start = std::chrono::steady_clock::now();
      } else if (std::chrono::steady_clock::now() - wait_start > kYieldAfter) {
        std::this_thread::yield();
      }
    }
  }

  ~HelperTeam() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
      wake_.notify_all();
    }
    for (auto& t : threads_) t.join();
  }

 private:
  struct Job {
    const std::function<void(int64_t)>* fn = nullptr;  // valid until done == chunks
    int64_t chunks = 0;
    int max_helpers = 0;
    std::atomic<int64_t> next{0}, done{0};
    std::atomic<int> helpers{0};
  };

  static void work(Job& job) {
    for (int64_t c; (c = job.next.fetch_add(1, std::memory_order_relaxed)) < job.chunks;) {
      (*job.fn)(c);
      job.done.fetch_add(1, std::memory_order_release);
    }
  }

  void grow(int helpers) {
    std::lock_guard<std::mutex> lock(mutex_);
    while (static_cast<int>(threads_.size()) < helpers) threads_.emplace_back([this] { loop(); });
  }

  void loop() {
    // Spin briefly between jobs (decoding posts one every few microseconds), then sleep.
    constexpr auto kSpin = std::chrono::microseconds(200);
    uint64_t seen = generation_.load();
    std::shared_ptr<Job> job;  // held, so a new job never reuses its address while we look
    while (true) {
      auto spin_start = std::chrono::steady_clock::now();
      for (int spins = 1; generation_.load(std::memory_order_acquire) == seen; ++spins) {
        if (spins % 256 != 0) {
          cpu_relax();
        } else if (std::chrono::steady_clock::now() - spin_start > kSpin) {
          std::unique_lock<std::mutex> lock(mutex_);
          sleepers_.fetch_add(1);
          wake_.wait(lock, [&] { return stop_ || generation_.load() != seen; });
          sleepers_.fetch_sub(1);
          if (stop_) return;
          spin_start = std::chrono::steady_clock::now();
        }
      }
      seen = generation_.load();
      job = std::atomic_load(&job_);
      if (job && job->helpers.fetch_add(1) < job->max_helpers) work(*job);
    }
  }

  std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_ = false;  // guarded by mutex_
  std::vector<std::thread> threads_;
  std::shared_ptr<Job> job_;  // the latest job; std::atomic_load / atomic_store only
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> sleepers_{0};
};

}  // namespace

int resolve_threads(int requested) {
  if (requested > 0) return requested;
  if (const char* env = std::getenv("KVRAG_THREADS"); env && *env) {
    char* end = nullptr;
    const long n = std::strtol(env, &end, 10);
    KVRAG_CHECK(end != env && *end == '\0' && n > 0 && n <= 4096,
                "KVRAG_THREADS must be a positive integer, got '{}'", env);
    return static_cast<int>(n);
  }
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

int configure_threads(int requested) {
  const int n = resolve_threads(requested);
  at::set_num_threads(n);
  return n;
}

void parallel_chunks(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  const int threads = std::max(1, t_chunk_threads > 0 ? t_chunk_threads : at::get_num_threads());
  // A few chunks per thread, so that whoever is running takes the next one.
  const int64_t size = std::max<int64_t>({grain, 1, (n + 4 * threads - 1) / (4 * threads)});
  const int64_t chunks = (n + size - 1) / size;
  HelperTeam::instance().run(chunks, std::min<int64_t>(threads - 1, chunks - 1),
                             [&](int64_t c) { fn(c * size, std::min(n, (c + 1) * size)); });
}

SerialIntraOpGuard::SerialIntraOpGuard(bool active) {
  // libtorch sets a thread's team size on the thread's first parallel loop; done later, that
  // would undo this guard (as it did for a training loop that starts with no tensor work).
  at::internal::lazy_init_num_threads();
  if (active && omp_get_max_threads() > 1) {
    saved_ = omp_get_max_threads();
    omp_set_num_threads(1);
  }
}

SerialIntraOpGuard::~SerialIntraOpGuard() {
  if (saved_ > 0) omp_set_num_threads(saved_);
}

SerialBlasGuard::SerialBlasGuard(bool active) {
  const OpenBlasThreads& blas = openblas_threads();
  if (active && blas.get != nullptr && blas.set != nullptr && blas.get() > 1) {
    saved_ = blas.get();
    blas.set(1);
  }
}

SerialBlasGuard::~SerialBlasGuard() {
  if (saved_ > 0) openblas_threads().set(saved_);
}

HelperThreadsGuard::HelperThreadsGuard(bool active) : blas_(active) {
  if (!active) return;
  at::internal::lazy_init_num_threads();  // as SerialIntraOpGuard
  saved_chunk_threads_ = t_chunk_threads;
  t_chunk_threads = std::max(1, at::get_num_threads());
  saved_omp_ = omp_get_max_threads();
  omp_set_num_threads(1);
}

HelperThreadsGuard::~HelperThreadsGuard() {
  if (saved_omp_ == 0) return;
  omp_set_num_threads(saved_omp_);
  t_chunk_threads = saved_chunk_threads_;
}

int blas_threads() {
  const OpenBlasThreads& blas = openblas_threads();
  return blas.get != nullptr ? blas.get() : 0;
}

bool matmul_uses_blas_threads(c10::ScalarType dtype) {
  // int8 weights (q8_linear): many rows of x go to a GEMM over dequantized tiles, in fp32 (BLAS)
  // or bf16 (libtorch's OpenMP threads) by the same rule as bf16 weights; where the CPU has
  // AVX-512 VNNI, to q8_gemm on kvrag's helpers instead (a forward then holds a
  // HelperThreadsGuard; training's backward still multiplies dequantized tiles).
  return dtype == torch::kFloat32 ||
         ((dtype == torch::kBFloat16 || dtype == torch::kInt8) && !native_bf16_matmul());
}

bool ForwardThreadsGuard::on_helpers(bool active, c10::ScalarType weight_dtype) {
  return active && weight_dtype == c10::kChar && q8_gemm_available();
}

bool ForwardThreadsGuard::on_onednn(bool active, c10::ScalarType weight_dtype,
                                    Q8ManyRows many_rows) {
  // An inference forward's products (training's stay with BLAS: matmul_uses_blas_threads).
  return active && ((weight_dtype == c10::kFloat && fp32_gemm_on_onednn()) ||
                    (weight_dtype == c10::kChar && q8_row_codes_in_use(many_rows)));
}

bool ForwardThreadsGuard::on_blas(bool active, c10::ScalarType weight_dtype, Q8ManyRows many_rows) {
  return active && !on_helpers(active, weight_dtype) &&
         !on_onednn(active, weight_dtype, many_rows) && matmul_uses_blas_threads(weight_dtype);
}

ForwardThreadsGuard::ForwardThreadsGuard(bool active, c10::ScalarType weight_dtype,
                                         Q8ManyRows many_rows)
    : serial_(on_blas(active, weight_dtype, many_rows)),
      helpers_(on_helpers(active, weight_dtype)),
      blas_(on_onednn(active, weight_dtype, many_rows)) {}

}  // namespace kvrag
