#include "ops/attention.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "core/error.h"
#include "ops/cpu_isa.h"
#include "ops/matmul.h"
#include "ops/op_support.h"
#include "ops/simd.h"
#include "ops/threads.h"

namespace kvrag {
namespace {

using op_support::round_to;

bool fp32_or_bf16(const torch::Tensor& t) {
  return t.scalar_type() == torch::kFloat32 || t.scalar_type() == torch::kBFloat16;
}

// One (row, head) of a decode step, in two halves around the softmax. Scores: p[s] ← (q·k_s
// rounded to T) · scale over the valid entries (all S where none is valid); returns their maximum.
// Values: out ← Σ_s round_T(p[s] / total) v_s, accumulated in fp32.
template <typename T>
float scores_generic(const float* q, const T* K, const uint8_t* valid, bool any, int64_t S,
                     int64_t hd, float scale, float* p) {
  float max_score = -std::numeric_limits<float>::infinity();
  for (int64_t s = 0; s < S; ++s) {
    if (any && !valid[s]) continue;
    const T* k = K + s * hd;
    float dot[4] = {0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 4 <= hd; i += 4) {
      for (int j = 0; j < 4; ++j) dot[j] += q[i + j] * static_cast<float>(k[i + j]);
    }
    float d = (dot[0] + dot[1]) + (dot[2] + dot[3]);
    for (; i < hd; ++i) d += q[i] * static_cast<float>(k[i]);
    p[s] = round_to(d, T()) * scale;
    max_score = std::max(max_score, p[s]);
  }
  return max_score;
}

template <typename T>
void values_generic(const float* p, float total, const T* V, const uint8_t* valid, bool any,
                    int64_t S, int64_t hd, float* acc) {
  std::fill(acc, acc + hd, 0.0f);
  for (int64_t s = 0; s < S; ++s) {
    if (any && !valid[s]) continue;
    const float w = round_to(p[s] / total, T());
    const T* v = V + s * hd;
    for (int64_t i = 0; i < hd; ++i) acc[i] += w * static_cast<float>(v[i]);
  }
}

#if KVRAG_X86
// The same with AVX2 for hd a multiple of 8 (every LLaMA's: 64 or 128): 8 lanes of a key or value
// at a time, bf16 widened in registers. Only the order of the fp32 additions differs from above.
// The cache's values as simd.h's load8 takes them (bf16 as their bits).
inline const float* lanes(const float* p) { return p; }
inline const uint16_t* lanes(const c10::BFloat16* p) {
  return reinterpret_cast<const uint16_t*>(p);
}

template <typename T>
KVRAG_AVX2 float scores_avx2(const float* q, const T* K, const uint8_t* valid, bool any, int64_t S,
                             int64_t hd, float scale, float* p) {
  float max_score = -std::numeric_limits<float>::infinity();
  for (int64_t s = 0; s < S; ++s) {
    if (any && !valid[s]) continue;
    const T* k = K + s * hd;
    __m256 a0 = _mm256_mul_ps(_mm256_loadu_ps(q), load8(lanes(k))), a1 = _mm256_setzero_ps();
    int64_t i = 8;
    for (; i + 16 <= hd; i += 16) {
      a1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), load8(lanes(k + i)), a1);
      a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 8), load8(lanes(k + i + 8)), a0);
    }
    if (i < hd) a1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), load8(lanes(k + i)), a1);
    p[s] = round_to(hsum256(_mm256_add_ps(a0, a1)), T()) * scale;
    max_score = std::max(max_score, p[s]);
  }
  return max_score;
}

template <typename T>
KVRAG_AVX2 void values_avx2(const float* p, float total, const T* V, const uint8_t* valid, bool any,
                            int64_t S, int64_t hd, float* acc) {
  std::fill(acc, acc + hd, 0.0f);
  for (int64_t s = 0; s < S; ++s) {
    if (any && !valid[s]) continue;
    const __m256 w = _mm256_set1_ps(round_to(p[s] / total, T()));
    const T* v = V + s * hd;
    for (int64_t i = 0; i < hd; i += 8)
      _mm256_storeu_ps(acc + i, _mm256_fmadd_ps(w, load8(lanes(v + i)), _mm256_loadu_ps(acc + i)));
  }
}
#endif

// One decode step: out [B·H, hd] ← softmax(q·Kᵀ/√hd) V over the valid ones of the first S cache
// entries. q [B·H, hd]; k/v cache [B, kvH, capacity, hd]; key_valid [B, S]. Scores and
// probabilities pass through T, accumulation is fp32 (attention()'s roundings). The dot products
// and the weighted sum of values are vectorised (AVX2) where cpu_isa() allows and hd is a
// multiple of 8: a scalar loop over a bf16 cache took 35% of a 110M decode step at 1,000 entries.
template <typename T>
void decode_rows(const T* q, const T* kc, const T* vc, T* out, const uint8_t* key_valid, int64_t B,
                 int64_t H, int64_t kvH, int64_t hd, int64_t capacity, int64_t S) {
  const int64_t G = H / kvH;
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd)));
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 15) / std::max<int64_t>(S * hd, 1));
#if KVRAG_X86
  const bool simd = cpu_isa() >= CpuIsa::kAvx2 && hd % 8 == 0;
#endif
  parallel_chunks(B * H, grain, [&](int64_t begin, int64_t end) {
    std::vector<float> p(S), acc(hd), qf(hd);
    for (int64_t bh = begin; bh < end; ++bh) {
      const int64_t b = bh / H, h = bh % H;
      const T* K = kc + (b * kvH + h / G) * capacity * hd;  // [S, hd]
      const T* V = vc + (b * kvH + h / G) * capacity * hd;  // [S, hd]
      const uint8_t* valid = key_valid + b * S;
      // A padding query may see nothing; it then attends to everything (its output is unused).
      const bool any = std::any_of(valid, valid + S, [](uint8_t v) { return v != 0; });
      for (int64_t i = 0; i < hd; ++i) qf[i] = static_cast<float>(q[bh * hd + i]);
      float max_score = 0;
#if KVRAG_X86
      if (simd) {
        max_score = scores_avx2(qf.data(), K, valid, any, S, hd, scale, p.data());
      } else
#endif
        max_score = scores_generic(qf.data(), K, valid, any, S, hd, scale, p.data());
      float total = 0.0f;
      for (int64_t s = 0; s < S; ++s) {
        if (any && !valid[s]) continue;
        p[s] = std::exp(p[s] - max_score);
        total += p[s];
      }
#if KVRAG_X86
      if (simd) {
        values_avx2(p.data(), total, V, valid, any, S, hd, acc.data());
      } else
#endif
        values_generic(p.data(), total, V, valid, any, S, hd, acc.data());
      for (int64_t i = 0; i < hd; ++i) out[bh * hd + i] = static_cast<T>(acc[i]);
    }
  });
}

}  // namespace

torch::Tensor attention(const torch::Tensor& q, const torch::Tensor& keys,
                        const torch::Tensor& values, const torch::Tensor& mask,
                        const torch::Tensor& out, torch::Tensor* probs_out) {
  KVRAG_CHECK(q.dim() == 4 && keys.dim() == 4 && values.sizes() == keys.sizes() &&
                  keys.size(1) > 0 && q.size(1) % keys.size(1) == 0 && q.size(3) == keys.size(3) &&
                  (q.size(0) == keys.size(0) || q.size(0) == 1),
              "attention: q {} does not fit keys {} / values {} (q [B or 1, H, T, hd], keys/values "
              "[B, kvH, S, hd], H a multiple of kvH)",
              c10::str(q.sizes()), c10::str(keys.sizes()), c10::str(values.sizes()));
  const int64_t B = keys.size(0), H = q.size(1), T = q.size(2), hd = q.size(3);
  const int64_t kvH = keys.size(1), G = H / kvH, S = keys.size(2);
  // [B|1, kvH, G*T, hd]
  const auto qg = q.reshape({q.size(0), kvH, G * T, hd});
  auto scores = kvrag::matmul(qg, keys.transpose(-1, -2)).to(torch::kFloat32);  // [B, kvH, G*T, S]
  scores = scores.mul_(1.0 / std::sqrt(static_cast<double>(hd))).view({B, kvH, G, T, S});
  if (mask.defined()) {
    const int64_t mB = mask.dim() == 4 ? mask.size(0) : -1,
                  mH = mask.dim() == 4 ? mask.size(1) : -1;
    KVRAG_CHECK(mask.dim() == 4 && (mB == 1 || mB == B) && (mH == 1 || mH == H) &&
                    (mask.size(2) == 1 || mask.size(2) == T) && mask.size(3) == S,
                "attention: mask {} does not broadcast to [B={}, H={}, T={}, S={}]",
                c10::str(mask.sizes()), B, H, T, S);
    // [mB, 1 or kvH, 1 or G, 1 or T, S]: the heads split as the scores' rows are.
    const auto m = mask.reshape({mB, mH == 1 ? 1 : kvH, mH == 1 ? 1 : G, mask.size(2), S});
    // In place unless autograd records (the values are the same either way).
    const bool grad = op_support::needs_grad({&q, &keys, &values, &mask});
    if (mask.scalar_type() == torch::kBool) {
      const auto hidden = m.logical_not();
      scores = grad ? scores.masked_fill(hidden, kHiddenScore)
                    : scores.masked_fill_(hidden, kHiddenScore);
    } else {
      scores = grad ? scores + m : scores.add_(m);
    }
  }
  const auto p32 = torch::softmax(scores, -1);  // [B, kvH, G, T, S] fp32
  if (probs_out != nullptr) *probs_out = p32.view({B, H, T, S});
  const auto probs = p32.to(values.scalar_type()).view({B, kvH, G * T, S});
  // [B, T, H, hd]
  const auto heads = kvrag::matmul(probs, values).view({B, H, T, hd}).transpose(1, 2);
  // [B, T, H*hd]
  if (!out.defined()) return heads.reshape({B, T, H * hd});
  KVRAG_CHECK(out.dim() == 3 && out.size(0) == B && out.size(1) == T && out.size(2) == H * hd &&
                  out.scalar_type() == values.scalar_type(),
              "attention: out {} {} is not [B={}, T={}, H*hd={}] {}",
              c10::toString(out.scalar_type()), c10::str(out.sizes()), B, T, H * hd,
              c10::toString(values.scalar_type()));
  out.view({B, T, H, hd}).copy_(heads);  // one copy, no temporary
  return out;
}

torch::Tensor decode_attention(const torch::Tensor& q, const torch::Tensor& k_cache,
                               const torch::Tensor& v_cache, c10::ArrayRef<uint8_t> key_valid) {
  KVRAG_CHECK(k_cache.dim() == 4 && v_cache.sizes() == k_cache.sizes() && k_cache.size(1) > 0 &&
                  q.dim() >= 2 && q.size(0) == k_cache.size(0) &&
                  q.numel() % (k_cache.size(0) * k_cache.size(1) * k_cache.size(3)) == 0,
              "decode_attention: q {} does not fit the cache {} / {} (q [B, 1, H*hd], cache [B, "
              "kvH, capacity, hd], H a multiple of kvH)",
              c10::str(q.sizes()), c10::str(k_cache.sizes()), c10::str(v_cache.sizes()));
  KVRAG_CHECK(fp32_or_bf16(q) && k_cache.scalar_type() == q.scalar_type() &&
                  v_cache.scalar_type() == q.scalar_type() && q.is_cpu() && k_cache.is_cpu() &&
                  v_cache.is_cpu() && q.is_contiguous() && k_cache.is_contiguous() &&
                  v_cache.is_contiguous(),
              "decode_attention: q and the cache must be contiguous CPU tensors of one dtype, fp32 "
              "or bf16");
  const int64_t B = k_cache.size(0), kvH = k_cache.size(1), capacity = k_cache.size(2),
                hd = k_cache.size(3);
  const int64_t H = q.numel() / (B * hd);
  const int64_t S = static_cast<int64_t>(key_valid.size()) / B;
  KVRAG_CHECK(S * B == static_cast<int64_t>(key_valid.size()) && S <= capacity,
              "decode_attention: {} key_valid bytes are not [B={}, S ≤ {}]", key_valid.size(), B,
              capacity);
  auto out = torch::empty(q.sizes(), q.options());  // q's shape: B rows of H*hd
  const uint8_t* valid = key_valid.data();
  op_support::dispatch_fp32_bf16(q.scalar_type(), [&](auto zero) {
    using T = decltype(zero);
    decode_rows(q.data_ptr<T>(), k_cache.data_ptr<T>(), v_cache.data_ptr<T>(), out.data_ptr<T>(),
                valid, B, H, kvH, hd, capacity, S);
  });
  return out;
}

void write_cache(const torch::Tensor& src, const torch::Tensor& cache, int64_t start) {
  KVRAG_CHECK(src.dim() >= 3 && cache.dim() == 4 && src.size(0) == cache.size(0) &&
                  src.numel() == src.size(0) * src.size(1) * cache.size(1) * cache.size(3) &&
                  start >= 0 && start + src.size(1) <= cache.size(2),
              "write_cache: {} entries [B, T, kvH*hd] = {} at {} do not fit the cache {}",
              src.size(1), c10::str(src.sizes()), start, c10::str(cache.sizes()));
  KVRAG_CHECK(src.scalar_type() == cache.scalar_type() && src.is_cpu() && cache.is_cpu() &&
                  src.is_contiguous() && cache.is_contiguous(),
              "write_cache: src and cache must be contiguous CPU tensors of one dtype");
  const int64_t B = src.size(0), T = src.size(1), kvH = cache.size(1), capacity = cache.size(2);
  // bytes of one head's entry
  const int64_t row = cache.size(3) * static_cast<int64_t>(cache.element_size());
  const auto* from = static_cast<const char*>(src.data_ptr());
  auto* to = static_cast<char*>(cache.data_ptr());
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t h = 0; h < kvH; ++h) {
        std::memcpy(to + ((b * kvH + h) * capacity + start + t) * row,
                    from + ((b * T + t) * kvH + h) * row, row);
      }
    }
  }
}

}  // namespace kvrag
