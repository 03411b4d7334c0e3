// DenseIndex's training and adding. Training: a seeded sample of the vectors; IVF coarse
// centroids by (two-level) spherical k-means; IVF-PQ codebooks by Faiss's k-means on residuals
// with kvrag's SIMD assignment; anything else by Faiss. Adding: inner-product IVF indexes get
// their lists from a BLAS assignment and their PQ codes from the SIMD kernels below; other types
// go through Faiss's add.
#include "index/dense_index_internal.h"

#include <faiss/Clustering.h>
#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVF.h>
#include <faiss/IndexIVFPQ.h>
#include <faiss/IndexPQ.h>
#include <faiss/IndexPreTransform.h>
#include <faiss/VectorTransform.h>
#include <faiss/impl/FaissAssert.h>
#include <faiss/invlists/InvertedLists.h>
#include <faiss/utils/distances.h>
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <unordered_set>
#include <utility>
#include <vector>

#include "core/error.h"
#include "index/dense_index.h"
#include "index/embedding_set.h"

namespace kvrag::dense_index_internal {

namespace {

constexpr int kTwoLevelAbove = 256;  // nlist above which k-means is two-level

// ---- sampling, k-means, coarse centroids -------------------------------------------------------

// m distinct row ids of [0, n), sorted, chosen by `seed` (Floyd's algorithm).
std::vector<int64_t> sample_ids(int64_t n, int64_t m, uint64_t seed) {
  std::vector<int64_t> out;
  if (m >= n) {
    out.resize(n);
    for (int64_t i = 0; i < n; ++i) out[i] = i;
    return out;
  }
  std::mt19937_64 rng(seed);
  std::unordered_set<int64_t> chosen;
  chosen.reserve(static_cast<size_t>(m) * 2);
  for (int64_t j = n - m; j < n; ++j) {
    const auto t =
        static_cast<int64_t>((static_cast<unsigned __int128>(rng()) * uint64_t(j + 1)) >> 64);
    if (!chosen.insert(t).second) chosen.insert(j);
  }
  out.assign(chosen.begin(), chosen.end());
  std::sort(out.begin(), out.end());
  return out;
}

// Spherical k-means (unit-norm centroids, inner-product assignment) of x[n × d] into k.
std::vector<float> spherical_kmeans(int d, int64_t n, const float* x, int64_t k, uint64_t seed,
                                    int niter) {
  faiss::ClusteringParameters cp;
  cp.niter = niter;
  cp.spherical = true;
  cp.seed = static_cast<int>(seed & 0x7fffffff);
  cp.min_points_per_centroid = 1;    // the caller sized the sample; no warnings on stderr
  cp.max_points_per_centroid = 256;  // Faiss subsamples beyond this
  faiss::Clustering clus(d, static_cast<int>(k), cp);
  faiss::IndexFlatIP assigner(d);
  faiss_call("k-means", [&] { clus.train(n, x, assigner); });
  return clus.centroids;
}

// nlist coarse centroids for x[n × d]. Up to kTwoLevelAbove lists: one spherical k-means.
// Above: k1 = √nlist top-level clusters, each split into a number of centroids proportional to
// its size (largest remainder, at most one per point) — the cost drops from n·nlist to about
// n·2√nlist distance computations per iteration.
std::vector<float> train_coarse(int d, int64_t n, const float* x, int64_t nlist, uint64_t seed,
                                const Progress& progress) {
  if (nlist <= kTwoLevelAbove) {
    progress("train", 0, 1);
    auto c = spherical_kmeans(d, n, x, nlist, seed, 20);
    progress("train", 1, 1);
    return c;
  }
  const int64_t k1 = std::max<int64_t>(2, std::llround(std::sqrt(double(nlist))));
  progress("train", 0, k1 + 1);
  const auto top = spherical_kmeans(d, n, x, k1, seed, 20);
  std::vector<idx_t> assign(n);
  {
    faiss::IndexFlatIP q(d);
    q.add(k1, top.data());
    std::vector<float> dis(n);
    faiss_call("k-means assignment", [&] { q.search(n, x, 1, dis.data(), assign.data()); });
  }
  std::vector<int64_t> count(k1, 0);
  for (int64_t i = 0; i < n; ++i) ++count[assign[i]];

  // Proportional allocation with the largest remainders, capped by the cluster's size.
  std::vector<int64_t> alloc(k1, 0);
  std::vector<std::pair<double, int64_t>> rest;
  int64_t given = 0;
  for (int64_t c = 0; c < k1; ++c) {
    const double exact = double(nlist) * double(count[c]) / double(n);
    alloc[c] = std::min<int64_t>(count[c], static_cast<int64_t>(exact));
    given += alloc[c];
    rest.push_back({exact - std::floor(exact), c});
  }
  std::stable_sort(rest.begin(), rest.end(),
                   [](const auto& a, const auto& b) { return a.first > b.first; });
  while (given < nlist) {  // n ≥ nlist, so there is room somewhere
    for (const auto& [frac, c] : rest) {
      if (given < nlist && alloc[c] < count[c]) {
        ++alloc[c];
        ++given;
      }
    }
  }

  std::vector<float> centroids;
  centroids.reserve(static_cast<size_t>(nlist) * d);
  std::vector<float> members;
  progress("train", 1, k1 + 1);
  for (int64_t c = 0; c < k1; ++c) {
    if (alloc[c] > 0) {
      members.clear();
      members.reserve(static_cast<size_t>(count[c]) * d);
      for (int64_t i = 0; i < n; ++i) {
        if (assign[i] == c) members.insert(members.end(), x + i * d, x + (i + 1) * d);
      }
      const auto sub =
          spherical_kmeans(d, count[c], members.data(), alloc[c], seed + 1 + uint64_t(c), 10);
      centroids.insert(centroids.end(), sub.begin(), sub.end());
    }
    progress("train", c + 2, k1 + 1);
  }
  return centroids;
}

// Vectors sampled for training when IndexBuildOptions::train_size is 0.
int64_t default_train_size(faiss::Index* index) {
  if (auto* ivf = find_ivf(index)) {
    return std::clamp<int64_t>(32 * int64_t(ivf->nlist), 65536, int64_t(1) << 20);
  }
  return int64_t(1) << 17;  // PQ / SQ / OPQ codebooks (PQ uses 256 points per centroid)
}

// ---- kernels
// ---------------------------------------------------------------------------------------
//
// Debian's libfaiss is a generic x86-64 (SSE2) build: its per-vector distance functions are
// scalar loops (one 768-d inner product takes about 1 µs), which makes Faiss's own PQ encoding,
// PQ training and HNSW assignment of millions of vectors take hours. Building therefore goes
// through the kernels below (AVX + FMA when the CPU has them, portable loops otherwise) and
// through Faiss's BLAS paths (knn_inner_product), which are fast. Searching has kernels of its own
// (dense_index_search.cpp).

// The nearest of k centroids (k a multiple of 8, at most kMaxK) to x[dsub] in squared L2, from
// the centroids transposed (ct[j·k + c]) and their squared norms: argmin_c ‖c‖² − 2⟨x, c⟩, ties
// to the lowest c. *score receives the minimum (‖x − c‖² − ‖x‖²). Two passes — all k values,
// then the first position of their minimum — keep the loop free of a serial argmin chain.
constexpr int kMaxK = 1024;

int nearest_portable(const float* x, const float* ct, const float* norms, int dsub, int k,
                     float* score) {
  float dist[kMaxK] = {};
  for (int c = 0; c < k; ++c) dist[c] = norms[c];
  for (int j = 0; j < dsub; ++j) {
    const float xj = -2.0f * x[j];
    const float* row = ct + size_t(j) * k;
    for (int c = 0; c < k; ++c) dist[c] += xj * row[c];  // vectorised by the compiler
  }
  int best = 0;
  for (int c = 1; c < k; ++c) {
    if (dist[c] < dist[best]) best = c;
  }
  *score = dist[best];
  return best;
}

__attribute__((target("avx,fma"))) int nearest_avx(const float* x, const float* ct,
                                                   const float* norms, int dsub, int k,
                                                   float* score) {
  alignas(32) float dist[kMaxK];
  float xs[16];
  const bool small = dsub <= 16;  // broadcasts hoisted out of the loop
  if (small) {
    for (int j = 0; j < dsub; ++j) xs[j] = -2.0f * x[j];
  }
  __m256 mn = _mm256_set1_ps(std::numeric_limits<float>::infinity());
  for (int c0 = 0; c0 < k; c0 += 8) {
    __m256 acc = _mm256_loadu_ps(norms + c0);
    for (int j = 0; j < dsub; ++j) {
      const __m256 xj = small ? _mm256_broadcast_ss(&xs[j]) : _mm256_set1_ps(-2.0f * x[j]);
      acc = _mm256_fmadd_ps(xj, _mm256_loadu_ps(ct + size_t(j) * k + c0), acc);
    }
    _mm256_store_ps(dist + c0, acc);
    mn = _mm256_min_ps(mn, acc);
  }
  __m128 h = _mm_min_ps(_mm256_castps256_ps128(mn), _mm256_extractf128_ps(mn, 1));
  h = _mm_min_ps(h, _mm_movehl_ps(h, h));
  h = _mm_min_ss(h, _mm_shuffle_ps(h, h, 1));
  const float m = _mm_cvtss_f32(h);
  const __m256 mv = _mm256_set1_ps(m);
  *score = m;
  for (int c0 = 0; c0 < k; c0 += 8) {
    const int mask = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_load_ps(dist + c0), mv, _CMP_EQ_OQ));
    if (mask != 0) return c0 + __builtin_ctz(static_cast<unsigned>(mask));
  }
  return 0;  // unreachable for finite inputs
}

int nearest(const float* x, const float* ct, const float* norms, int dsub, int k, float* score) {
  return cpu_has_avx_fma() ? nearest_avx(x, ct, norms, dsub, k, score)
                           : nearest_portable(x, ct, norms, dsub, k, score);
}

// Centroids [k × d] → transposed [d × kpad] and squared norms [kpad], k padded to a multiple of
// 8 with centroids that never win (norm +inf).
void transpose_centroids(const float* c, int64_t k, int d, std::vector<float>& ct,
                         std::vector<float>& norms) {
  const int64_t kpad = (k + 7) / 8 * 8;
  ct.assign(size_t(d) * kpad, 0.0f);
  norms.assign(kpad, std::numeric_limits<float>::infinity());
  for (int64_t i = 0; i < k; ++i) {
    float sq = 0;
    for (int j = 0; j < d; ++j) {
      ct[size_t(j) * kpad + i] = c[i * d + j];
      sq += c[i * d + j] * c[i * d + j];
    }
    norms[i] = sq;
  }
}

// A minimal Index for Faiss's k-means (Clustering::train calls reset, add and search with k = 1):
// the nearest centroid in squared L2 by nearest(). Trains PQ codebooks (ProductQuantizer::
// assign_index) many times faster than Faiss's IndexFlatL2 on this build. Never stored.
struct KernelL2Assigner : faiss::Index {
  explicit KernelL2Assigner(int d) : faiss::Index(d, faiss::METRIC_L2) { is_trained = true; }
  void add(idx_t n, const float* x) override {
    centroids.insert(centroids.end(), x, x + size_t(n) * d);
    ntotal += n;
    transpose_centroids(centroids.data(), ntotal, d, ct, norms);
  }
  void reset() override {
    centroids.clear();
    ntotal = 0;
  }
  void search(idx_t n, const float* x, idx_t k, float* distances, idx_t* labels,
              const faiss::SearchParameters* params = nullptr) const override {
    FAISS_THROW_IF_NOT_MSG(k == 1 && ntotal > 0 && ntotal <= kMaxK,
                           "KernelL2Assigner: k must be 1, ntotal ≤ 1024");
    const int kpad = static_cast<int>(norms.size());
#pragma omp parallel for if (n > 256)
    for (idx_t i = 0; i < n; ++i) {
      const float* xi = x + i * d;
      float score;
      labels[i] = nearest(xi, ct.data(), norms.data(), d, kpad, &score);
      distances[i] = score + dot(xi, xi, d);
    }
  }
  std::vector<float> centroids, ct, norms;
};

// The IVF index inside `index` whose vectors kvrag adds itself (coarse assignment by
// CoarseAssigner; PQ codes by PqEncoder): inner-product IVF with a flat or HNSW quantizer and
// no direct map. Null for anything else (Faiss adds those).
faiss::IndexIVF* fast_add_ivf(faiss::Index* index) {
  faiss::IndexIVF* ivf = find_ivf(index);
  if (ivf == nullptr || !ivf->is_trained || ivf->metric_type != faiss::METRIC_INNER_PRODUCT)
    return nullptr;
  if (ivf->quantizer->metric_type != faiss::METRIC_INNER_PRODUCT) return nullptr;
  if (!dynamic_cast<faiss::IndexFlat*>(ivf->quantizer) &&
      !dynamic_cast<faiss::IndexHNSWFlat*>(ivf->quantizer))
    return nullptr;
  if (ivf->direct_map.type != faiss::DirectMap::NoMap) return nullptr;
  return ivf;
}

}  // namespace

// ---- PQ encoding, coarse assignment, adding ----------------------------------------------------

// PQ encoding (8-bit codes) with nearest(): what ProductQuantizer::compute_code computes.
class PqEncoder {
 public:
  static bool supports(const faiss::ProductQuantizer& pq) {
    return pq.nbits == 8 && pq.ksub % 8 == 0 && pq.ksub <= size_t(kMaxK);
  }

  explicit PqEncoder(const faiss::ProductQuantizer& pq)
      : m_(static_cast<int>(pq.M)),
        dsub_(static_cast<int>(pq.dsub)),
        ksub_(static_cast<int>(pq.ksub)) {
    ct_.resize(size_t(m_) * dsub_ * ksub_);
    norms_.resize(size_t(m_) * ksub_);
    std::vector<float> ct, norms;
    for (int m = 0; m < m_; ++m) {
      transpose_centroids(pq.get_centroids(m, 0), ksub_, dsub_, ct, norms);
      std::copy(ct.begin(), ct.end(), ct_.begin() + size_t(m) * dsub_ * ksub_);
      std::copy(norms.begin(), norms.end(), norms_.begin() + size_t(m) * ksub_);
    }
  }
  void encode(const float* x, uint8_t* code) const {
    float score;
    for (int m = 0; m < m_; ++m) {
      code[m] = static_cast<uint8_t>(nearest(x + m * dsub_, &ct_[size_t(m) * dsub_ * ksub_],
                                             &norms_[size_t(m) * ksub_], dsub_, ksub_, &score));
    }
  }

 private:
  int m_, dsub_, ksub_;
  std::vector<float> ct_, norms_;  // per sub-quantizer: [dsub × ksub], [ksub]
};

// Assigns vectors to the nearest of nlist unit-norm coarse centroids (maximum inner product) with
// BLAS. Up to 2048 lists, exactly. Above, in two levels: the centroids are grouped under √nlist
// k-means "super-centroids"; a vector is compared with all super-centroids, then with the
// centroids of its kProbe best groups only — about 2·√nlist·(1 + kProbe) products instead of
// nlist, and the same list as exact search for all but a small fraction of the vectors (which
// then sit in a near-best list, where a search probing it still finds them).
class CoarseAssigner {
 public:
  static constexpr int kProbe = 6;

  CoarseAssigner(std::vector<float> centroids, int64_t nlist, int d, uint64_t seed)
      : d_(d), nlist_(nlist), centroids_(std::move(centroids)) {
    if (nlist_ <= 2048) return;
    const int64_t k1 = std::llround(std::sqrt(double(nlist_)));
    top_ = spherical_kmeans(d_, nlist_, centroids_.data(), k1, seed, 20);
    std::vector<float> dis(nlist_);
    std::vector<idx_t> g(nlist_);
    faiss_call("grouping the coarse centroids", [&] {
      faiss::knn_inner_product(centroids_.data(), top_.data(), d_, nlist_, k1, 1, dis.data(),
                               g.data());
    });
    members_.resize(k1);
    for (int64_t c = 0; c < nlist_; ++c) members_[g[c]].push_back(c);
    group_centroids_.resize(k1);
    for (int64_t t = 0; t < k1; ++t) {
      for (int64_t c : members_[t]) {
        group_centroids_[t].insert(group_centroids_[t].end(), &centroids_[c * d_],
                                   &centroids_[(c + 1) * d_]);
      }
    }
  }

  const std::vector<float>& centroids() const { return centroids_; }

  void assign(int64_t n, const float* x, idx_t* out) const {
    std::vector<float> best(n);
    if (top_.empty()) {
      faiss_call("coarse assignment", [&] {
        faiss::knn_inner_product(x, centroids_.data(), d_, n, nlist_, 1, best.data(), out);
      });
      return;
    }
    const int64_t k1 = static_cast<int64_t>(members_.size());
    const int probe = static_cast<int>(std::min<int64_t>(kProbe, k1));
    std::vector<float> tdis(size_t(n) * probe);
    std::vector<idx_t> tid(size_t(n) * probe);
    faiss_call("coarse assignment", [&] {
      faiss::knn_inner_product(x, top_.data(), d_, n, k1, probe, tdis.data(), tid.data());
    });
    // Rows probing each group, then one BLAS product per group.
    std::vector<std::vector<int64_t>> rows(k1);
    for (int64_t i = 0; i < n; ++i) {
      for (int p = 0; p < probe; ++p) {
        if (tid[i * probe + p] >= 0) rows[tid[i * probe + p]].push_back(i);
      }
    }
    std::fill(best.begin(), best.end(), -std::numeric_limits<float>::infinity());
    std::fill(out, out + n, idx_t(-1));
    std::vector<float> buf, gdis;
    std::vector<idx_t> gid;
    for (int64_t t = 0; t < k1; ++t) {
      const auto& r = rows[t];
      if (r.empty() || members_[t].empty()) continue;
      buf.resize(r.size() * d_);
      for (size_t j = 0; j < r.size(); ++j)
        std::memcpy(&buf[j * d_], x + r[j] * d_, sizeof(float) * d_);
      gdis.resize(r.size());
      gid.resize(r.size());
      faiss_call("coarse assignment", [&] {
        faiss::knn_inner_product(buf.data(), group_centroids_[t].data(), d_, r.size(),
                                 members_[t].size(), 1, gdis.data(), gid.data());
      });
      for (size_t j = 0; j < r.size(); ++j) {
        const int64_t i = r[j];
        const idx_t c = members_[t][gid[j]];
        if (gdis[j] > best[i] || (gdis[j] == best[i] && c < out[i])) {
          best[i] = gdis[j];
          out[i] = c;
        }
      }
    }
  }

 private:
  int d_;
  int64_t nlist_;
  std::vector<float> centroids_;                     // [nlist × d]
  std::vector<float> top_;                           // [k1 × d]; empty: exact assignment
  std::vector<std::vector<int64_t>> members_;        // centroid ids of each group
  std::vector<std::vector<float>> group_centroids_;  // their vectors, contiguous
};

Adder::Adder(faiss::Index* index, uint64_t seed) : index_(index), ivf_(fast_add_ivf(index)) {
  if (ivf_ == nullptr) return;
  std::vector<float> c(ivf_->nlist * size_t(ivf_->d));
  faiss_call("reading the coarse centroids",
             [&] { ivf_->quantizer->reconstruct_n(0, ivf_->nlist, c.data()); });
  assigner_ = std::make_unique<CoarseAssigner>(std::move(c), ivf_->nlist, ivf_->d, seed);
  if (auto* pq = dynamic_cast<faiss::IndexIVFPQ*>(ivf_);
      pq != nullptr && PqEncoder::supports(pq->pq)) {
    pq_ = pq;
    encoder_ = std::make_unique<PqEncoder>(pq->pq);
  }
}

Adder::~Adder() = default;

void Adder::add(int64_t n, const float* x) {
  if (ivf_ == nullptr) {
    index_->add(n, x);
    return;
  }
  auto* pt = dynamic_cast<faiss::IndexPreTransform*>(index_);
  std::unique_ptr<const float[]> owned;
  const float* xt = x;
  if (pt != nullptr) {
    xt = pt->apply_chain(n, x);
    if (xt != x) owned.reset(xt);
  }
  std::vector<idx_t> lists(n);
  assigner_->assign(n, xt, lists.data());
  if (encoder_) {
    const int d = ivf_->d;
    const size_t cs = pq_->code_size;
    std::vector<uint8_t> codes(n * cs);
    const float* c = assigner_->centroids().data();
#pragma omp parallel
    {
      std::vector<float> r(d);
#pragma omp for schedule(static)
      for (int64_t i = 0; i < n; ++i) {
        const float* xi = xt + i * d;
        if (pq_->by_residual) {
          for (int j = 0; j < d; ++j) r[j] = xi[j] - c[lists[i] * d + j];
          xi = r.data();
        }
        encoder_->encode(xi, &codes[i * cs]);
      }
    }
    for (int64_t i = 0; i < n; ++i)
      ivf_->invlists->add_entry(lists[i], ivf_->ntotal + i, &codes[i * cs]);
    ivf_->ntotal += n;
  } else {
    ivf_->add_core(n, xt, nullptr, lists.data());
  }
  index_->ntotal = ivf_->ntotal;  // an IndexPreTransform on top
}

// ---- training ----------------------------------------------------------------------------------

// Trains `index` on a seeded sample of `vectors`.
void train_index(faiss::Index* index, const EmbeddingSet& vectors, const IndexBuildOptions& o,
                 const Progress& progress) {
  const int64_t n = vectors.size();
  const int d = vectors.dim();
  const int64_t want = std::min(n, o.train_size > 0 ? o.train_size : default_train_size(index));
  if (auto* ivf = find_ivf(index)) {
    KVRAG_CHECK(want >= int64_t(ivf->nlist),
                "{} training vectors for {} IVF lists: use fewer lists (a smaller IVF in "
                "--factory) or more vectors (--train-size)",
                want, ivf->nlist);
  }
  const auto ids = sample_ids(n, want, o.seed);
  std::vector<float> x(static_cast<size_t>(want) * d);
  constexpr int64_t kChunk = 16384;
  for (int64_t i = 0; i < want; i += kChunk) {
    const int64_t m = std::min(kChunk, want - i);
    vectors.get(ids.data() + i, m, x.data() + i * d);
    progress("sample", i + m, want);
  }

  // Pre-transforms (OPQ, PCA) are trained first; what follows sees transformed vectors.
  faiss::Index* inner = index;
  const float* xt = x.data();
  std::vector<float> transformed;
  auto* pt = dynamic_cast<faiss::IndexPreTransform*>(index);
  if (pt != nullptr) {
    for (faiss::VectorTransform* vt : pt->chain) {
      if (!vt->is_trained)
        faiss_call("training the vector transform", [&] { vt->train(want, xt); });
      std::unique_ptr<float[]> y(
          faiss_call("applying the vector transform", [&] { return vt->apply(want, xt); }));
      transformed.assign(y.get(), y.get() + static_cast<size_t>(want) * vt->d_out);
      xt = transformed.data();
    }
    inner = pt->index;
  }

  // IVF with a flat or HNSW coarse quantizer: our (two-level) spherical k-means, then the
  // quantizer gets the centroids once (for HNSW, one graph build instead of one per iteration).
  auto* ivf = dynamic_cast<faiss::IndexIVF*>(inner);
  if (ivf != nullptr &&
      !(ivf->quantizer->is_trained && size_t(ivf->quantizer->ntotal) == ivf->nlist) &&
      (dynamic_cast<faiss::IndexFlat*>(ivf->quantizer) ||
       dynamic_cast<faiss::IndexHNSWFlat*>(ivf->quantizer))) {
    const auto centroids = train_coarse(inner->d, want, xt, int64_t(ivf->nlist), o.seed, progress);
    faiss_call("adding centroids to the coarse quantizer", [&] {
      ivf->quantizer->reset();
      ivf->quantizer->add(ivf->nlist, centroids.data());
      ivf->quantizer->is_trained = true;
    });
  }
  // An explicit sample size is the caller's choice: no Faiss warnings about it on stderr.
  if (o.train_size > 0) {
    if (auto* ivfpq = dynamic_cast<faiss::IndexIVFPQ*>(inner))
      ivfpq->pq.cp.min_points_per_centroid = 1;
    if (auto* pq = dynamic_cast<faiss::IndexPQ*>(inner)) pq->pq.cp.min_points_per_centroid = 1;
  }

  // IVF-PQ (residuals, 8-bit codes, no polysemous reordering): the codebooks are trained on the
  // residuals of a random part of the sample, with the kernel assigner in Faiss's k-means.
  auto* ivfpq = dynamic_cast<faiss::IndexIVFPQ*>(inner);
  if (ivfpq != nullptr && !ivfpq->is_trained && ivfpq->quantizer->is_trained &&
      size_t(ivfpq->quantizer->ntotal) == ivfpq->nlist &&
      ivfpq->quantizer->metric_type == faiss::METRIC_INNER_PRODUCT && ivfpq->by_residual &&
      !ivfpq->do_polysemous_training && PqEncoder::supports(ivfpq->pq)) {
    faiss::ProductQuantizer& pq = ivfpq->pq;
    const int64_t n_pq =
        std::min<int64_t>(want, int64_t(pq.cp.max_points_per_centroid) * int64_t(pq.ksub));
    const auto rows = sample_ids(want, n_pq, o.seed + 1);  // spread over the (id-sorted) sample
    std::vector<float> c(ivfpq->nlist * size_t(inner->d));
    faiss_call("reading the coarse centroids",
               [&] { ivfpq->quantizer->reconstruct_n(0, ivfpq->nlist, c.data()); });
    const CoarseAssigner assigner(std::move(c), ivfpq->nlist, inner->d, o.seed);
    std::vector<float> res(size_t(n_pq) * inner->d);
    for (int64_t i = 0; i < n_pq; ++i) {
      std::memcpy(&res[i * inner->d], xt + rows[i] * inner->d, sizeof(float) * inner->d);
    }
    std::vector<idx_t> lists(n_pq);
    assigner.assign(n_pq, res.data(), lists.data());
    const float* cent = assigner.centroids().data();
    for (int64_t i = 0; i < n_pq; ++i) {
      for (int j = 0; j < inner->d; ++j) res[i * inner->d + j] -= cent[lists[i] * inner->d + j];
    }
    progress("train", 0, 1);
    KernelL2Assigner assign_index(static_cast<int>(pq.dsub));
    pq.assign_index = &assign_index;
    try {
      faiss_call("training the product quantizer", [&] { pq.train(n_pq, res.data()); });
    } catch (...) {
      pq.assign_index = nullptr;
      throw;
    }
    pq.assign_index = nullptr;
    faiss_call("training the product quantizer", [&] { ivfpq->precompute_table(); });
    ivfpq->is_trained = true;
    progress("train", 1, 1);
  }
  // Whatever is left (PQ / SQ codebooks of other index types, or the whole index); Faiss skips
  // what is trained.
  if (!inner->is_trained) faiss_call("training the index", [&] { inner->train(want, xt); });
  if (pt != nullptr) pt->is_trained = inner->is_trained;
}

}  // namespace kvrag::dense_index_internal
