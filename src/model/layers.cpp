#include "model/layers.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#define KVRAG_X86 1
#else
#define KVRAG_X86 0
#endif

namespace kvrag {
namespace {

inline void cpu_relax() {
#if KVRAG_X86
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
    // Every chunk is claimed; wait for those a helper is still running (usually none or one).
    for (int spins = 1; job->done.load(std::memory_order_acquire) < chunks; ++spins) {
      if (spins % 64 == 0) {
        std::this_thread::yield();  // the helper may be waiting for this very core
      } else {
        cpu_relax();
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

// Whether an op on these tensors must record autograd history.
bool needs_grad(std::initializer_list<const torch::Tensor*> tensors) {
  if (!torch::GradMode::is_enabled()) return false;
  return std::any_of(tensors.begin(), tensors.end(),
                     [](const torch::Tensor* t) { return t->defined() && t->requires_grad(); });
}

// --- matrix-vector kernel (y = x W^T for a few rows of x) ----------------------------------------
//
// W [out, in] row-major, fp32 or bf16; x [R, in] fp32; y [R, out] fp32. Each thread takes ranges
// of output features; within one, every row of W is read once and applied to all R rows of x.
// An AVX2/FMA version is chosen at run time; the portable one has the same structure.

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
#define KVRAG_AVX2 __attribute__((target("avx2,fma")))

KVRAG_AVX2 inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
KVRAG_AVX2 inline __m256 load8(const c10::BFloat16* p) {
  // bf16 is the top half of an fp32: widen to 32 bits and shift into place.
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
KVRAG_AVX2 inline float hsum(__m256 v) {
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_shuffle_ps(t, t, 1)));
}

template <typename W>
KVRAG_AVX2 void gemv_avx2(const W* w, const float* x, float* y, int64_t R, int64_t in, int64_t out,
                          int64_t o_begin, int64_t o_end) {
  const int64_t in8 = in - in % 8;
  int64_t o = o_begin;
  if (R == 1) {
    // One row of x: four rows of W at a time give four independent FMA chains.
    for (; o + 4 <= o_end; o += 4) {
      const W* w0 = w + o * in;
      __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
      for (int64_t i = 0; i < in8; i += 8) {
        const __m256 xv = _mm256_loadu_ps(x + i);
        a0 = _mm256_fmadd_ps(load8(w0 + i), xv, a0);
        a1 = _mm256_fmadd_ps(load8(w0 + in + i), xv, a1);
        a2 = _mm256_fmadd_ps(load8(w0 + 2 * in + i), xv, a2);
        a3 = _mm256_fmadd_ps(load8(w0 + 3 * in + i), xv, a3);
      }
      float s[4] = {hsum(a0), hsum(a1), hsum(a2), hsum(a3)};
      for (int k = 0; k < 4; ++k) {
        for (int64_t i = in8; i < in; ++i) s[k] += to_float(w0[k * in + i]) * x[i];
        y[o + k] = s[k];
      }
    }
  }
  // Several rows of x (up to kGemvMaxRows), or the last rows of W.
  __m256 acc[kGemvMaxRows];
  for (; o < o_end; ++o) {
    const W* wo = w + o * in;
    for (int64_t r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
    for (int64_t i = 0; i < in8; i += 8) {
      const __m256 wv = load8(wo + i);
      for (int64_t r = 0; r < R; ++r) acc[r] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + r * in + i), acc[r]);
    }
    for (int64_t r = 0; r < R; ++r) {
      float s = hsum(acc[r]);
      for (int64_t i = in8; i < in; ++i) s += to_float(wo[i]) * x[r * in + i];
      y[r * out + o] = s;
    }
  }
}

#endif  // KVRAG_X86

bool has_avx2_fma() {
#if KVRAG_X86
  static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return yes;
#else
  return false;
#endif
}

// y [R, out] fp32 = x [R, in] fp32 · W^T, W contiguous [out, in] fp32 or bf16.
void gemv(const torch::Tensor& weight, const float* x, float* y, int64_t R) {
  const int64_t out = weight.size(0), in = weight.size(1);
  // At least ~64K weights per task: below that a thread costs more than it saves.
  const int64_t grain = std::max<int64_t>(4, (int64_t{1} << 16) / std::max<int64_t>(in, 1));
  auto run = [&](auto* w) {
    parallel_chunks(out, grain, [&](int64_t begin, int64_t end) {
#if KVRAG_X86
      if (has_avx2_fma()) {
        gemv_avx2(w, x, y, R, in, out, begin, end);
        return;
      }
#endif
      gemv_portable(w, x, y, R, in, out, begin, end);
    });
  };
  if (weight.scalar_type() == torch::kBFloat16) {
    run(weight.data_ptr<c10::BFloat16>());
  } else {
    run(weight.data_ptr<float>());
  }
}

// --- RMSNorm rows ------------------------------------------------------------------------------

inline float round_to(float v, float) { return v; }
inline float round_to(float v, c10::BFloat16) { return static_cast<float>(c10::BFloat16(v)); }

// y = weight * to_T(x * rsqrt(mean(x²) + eps)), in fp32 with the roundings of the torch ops.
template <typename T>
void rms_norm_rows(const T* x, const T* weight, T* y, int64_t rows, int64_t n, float eps) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * n;
    double ss = 0.0;
    for (int64_t i = 0; i < n; ++i) {
      const float v = static_cast<float>(xr[i]);
      ss += v * v;
    }
    const float inv = 1.0f / std::sqrt(static_cast<float>(ss / n) + eps);
    T* yr = y + r * n;
    for (int64_t i = 0; i < n; ++i) {
      const float h = round_to(static_cast<float>(xr[i]) * inv, T());
      yr[i] = static_cast<T>(static_cast<float>(weight[i]) * h);
    }
  }
}

}  // namespace

void parallel_chunks(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  const int threads = std::max(1, at::get_num_threads());
  // A few chunks per thread, so that whoever is running takes the next one.
  const int64_t size = std::max<int64_t>({grain, 1, (n + 4 * threads - 1) / (4 * threads)});
  const int64_t chunks = (n + size - 1) / size;
  HelperTeam::instance().run(chunks, std::min<int64_t>(threads - 1, chunks - 1), [&](int64_t c) {
    fn(c * size, std::min(n, (c + 1) * size));
  });
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

bool matmul_uses_blas_threads(torch::Dtype dtype) {
  return dtype == torch::kFloat32 || (dtype == torch::kBFloat16 && !native_bf16_matmul());
}

bool native_bf16_matmul() {
#if KVRAG_X86
  static const bool yes = __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
                          __builtin_cpu_supports("avx512dq");
  return yes;
#else
  return false;
#endif
}

torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias) {
  const auto dtype = x.scalar_type();
  const int64_t in = weight.size(1), out = weight.size(0);
  const bool grad = needs_grad({&x, &weight, &bias});
  if (!grad && x.is_cpu() && weight.is_cpu() && dtype == weight.scalar_type() &&
      (dtype == torch::kFloat32 || dtype == torch::kBFloat16) && weight.is_contiguous() &&
      x.dim() >= 1 && x.size(-1) == in && x.numel() > 0 && x.numel() <= kGemvMaxRows * in) {
    const int64_t rows = x.numel() / in;
    const auto xf = x.to(torch::kFloat32).contiguous();   // [rows, in]
    auto y = torch::empty({rows, out}, torch::kFloat32);  // [rows, out]
    gemv(weight, xf.data_ptr<float>(), y.data_ptr<float>(), rows);
    if (bias.defined()) y.add_(bias);  // in fp32 before the one rounding, as addmm does
    auto sizes = x.sizes().vec();
    sizes.back() = out;
    return y.view(sizes).to(dtype);
  }
  if (dtype == torch::kBFloat16 && !native_bf16_matmul()) {
    return torch::nn::functional::linear(x.to(torch::kFloat32), weight.to(torch::kFloat32),
                                         bias.defined() ? bias.to(torch::kFloat32) : bias)
        .to(torch::kBFloat16);
  }
  return torch::nn::functional::linear(x, weight, bias);
}

torch::Tensor matmul(const torch::Tensor& a, const torch::Tensor& b) {
  if (a.scalar_type() == torch::kBFloat16 && !native_bf16_matmul()) {
    return torch::matmul(a.to(torch::kFloat32), b.to(torch::kFloat32)).to(torch::kBFloat16);
  }
  return torch::matmul(a, b);
}

LinearImpl::LinearImpl(int64_t in_features, int64_t out_features, bool with_bias,
                       torch::TensorOptions options) {
  weight = register_parameter("weight", torch::empty({out_features, in_features}, options));
  if (with_bias) bias = register_parameter("bias", torch::empty({out_features}, options));
}

torch::Tensor LinearImpl::forward(const torch::Tensor& x) { return kvrag::linear(x, weight, bias); }

EmbeddingImpl::EmbeddingImpl(int64_t num_embeddings, int64_t dim, torch::TensorOptions options) {
  weight = register_parameter("weight", torch::empty({num_embeddings, dim}, options));
}

torch::Tensor EmbeddingImpl::forward(const torch::Tensor& ids) {
  return torch::embedding(weight, ids);
}

RMSNormImpl::RMSNormImpl(int64_t dim, double eps_, torch::TensorOptions options) : eps(eps_) {
  weight = register_parameter("weight", torch::ones({dim}, options));
}

torch::Tensor RMSNormImpl::forward(const torch::Tensor& x) {
  const auto dtype = x.scalar_type();
  if (!needs_grad({&x, &weight}) && x.is_cpu() && dtype == weight.scalar_type() &&
      (dtype == torch::kFloat32 || dtype == torch::kBFloat16) && x.size(-1) == weight.size(0)) {
    const auto xc = x.contiguous();
    const auto w = weight.contiguous();
    auto y = torch::empty_like(xc);
    const int64_t n = w.size(0), rows = n > 0 ? xc.numel() / n : 0;
    if (dtype == torch::kBFloat16) {
      rms_norm_rows(xc.data_ptr<c10::BFloat16>(), w.data_ptr<c10::BFloat16>(),
                    y.data_ptr<c10::BFloat16>(), rows, n, static_cast<float>(eps));
    } else {
      rms_norm_rows(xc.data_ptr<float>(), w.data_ptr<float>(), y.data_ptr<float>(), rows, n,
                    static_cast<float>(eps));
    }
    return y;
  }
  auto h = x.to(torch::kFloat32);
  h = h * torch::rsqrt(h.pow(2).mean(-1, /*keepdim=*/true) + eps);
  return weight * h.to(x.scalar_type());
}

LayerNormImpl::LayerNormImpl(int64_t dim, double eps_, torch::TensorOptions options) : eps(eps_) {
  weight = register_parameter("weight", torch::ones({dim}, options));
  bias = register_parameter("bias", torch::zeros({dim}, options));
}

torch::Tensor LayerNormImpl::forward(const torch::Tensor& x) {
  const auto dtype = x.scalar_type();
  auto y = torch::layer_norm(x.to(torch::kFloat32), {weight.size(0)}, weight.to(torch::kFloat32),
                             bias.to(torch::kFloat32), eps);
  return y.to(dtype);
}

void init_parameters(torch::nn::Module& module, double std, uint64_t seed) {
  torch::NoGradGuard no_grad;
  auto gen = at::detail::createCPUGenerator(seed);
  for (auto& item : module.named_parameters()) {
    const std::string& name = item.key();
    torch::Tensor& p = item.value();
    const bool is_norm = name.find("norm") != std::string::npos ||
                         name.find("LayerNorm") != std::string::npos;
    if (p.dim() >= 2) {
      auto w = torch::empty(p.sizes(), torch::kFloat32);
      w.normal_(0.0, std, gen);
      p.copy_(w);
    } else if (is_norm && name.size() >= 6 && name.compare(name.size() - 6, 6, "weight") == 0) {
      p.fill_(1.0);
    } else {
      p.zero_();
    }
  }
}

}  // namespace kvrag
