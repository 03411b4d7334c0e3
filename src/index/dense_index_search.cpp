// DenseIndex's search kernels: the SIMD dot product, and the flat, coarse-quantizer, HNSW and IVF
// searches built on it.
//
// Faiss's search code is used where it is efficient (IVF-PQ list scanning by lookup tables, BLAS
// for batches against a flat index). What would run Faiss's scalar distance loops — the coarse
// quantizer of an IVF index, HNSW graph walks, IVF-Flat list scans, exact search of a flat
// index (whose BLAS path is slow with this machine's OpenBLAS) — runs here on the same data
// structures with the SIMD dot product.
#include "index/dense_index_internal.h"

#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVF.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/IndexPreTransform.h>
#include <faiss/impl/AuxIndexStructures.h>
#include <faiss/impl/DistanceComputer.h>
#include <faiss/impl/HNSW.h>
#include <faiss/invlists/InvertedLists.h>
#include <faiss/utils/Heap.h>
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <exception>
#include <memory>
#include <vector>

#include "index/dense_index.h"

namespace kvrag::dense_index_internal {

// ---- SIMD dot product --------------------------------------------------------------------------

bool cpu_has_avx_fma() {
  static const bool has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx") && __builtin_cpu_supports("fma");
  }();
  return has;
}

namespace {

float dot_portable(const float* a, const float* b, size_t d) {
  float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};  // independent sums: the compiler vectorises these
  size_t i = 0;
  for (; i + 8 <= d; i += 8) {
    for (int j = 0; j < 8; ++j) s[j] += a[i + j] * b[i + j];
  }
  float r = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
  for (; i < d; ++i) r += a[i] * b[i];
  return r;
}

__attribute__((target("avx,fma"))) float dot_avx(const float* a, const float* b, size_t d) {
  __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  size_t i = 0;
  for (; i + 32 <= d; i += 32) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
    s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
  }
  for (; i + 8 <= d; i += 8)
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
  const __m256 s = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  h = _mm_add_ss(h, _mm_shuffle_ps(h, h, 1));
  float r = _mm_cvtss_f32(h);
  for (; i < d; ++i) r += a[i] * b[i];
  return r;
}

}  // namespace

float dot(const float* a, const float* b, size_t d) {
  return cpu_has_avx_fma() ? dot_avx(a, b, d) : dot_portable(a, b, d);
}

// ---- searches ----------------------------------------------------------------------------------

namespace {

// Inner products against float vectors in an HNSW graph's flat storage, for faiss::HNSW::search
// (which minimises: the similarity is negated, as Faiss's IndexHNSW does).
struct NegIPDistance : faiss::DistanceComputer {
  NegIPDistance(const float* base, int d) : base(base), d(d) {}
  void set_query(const float* x) override { q = x; }
  float operator()(idx_t i) override { return -dot(q, base + i * d, d); }
  float symmetric_dis(idx_t i, idx_t j) override { return -dot(base + i * d, base + j * d, d); }
  const float* base;
  int d;
  const float* q = nullptr;
};

// The float vectors of an inner-product HNSW graph with flat storage, or null.
const float* hnsw_flat_ip_base(const faiss::IndexHNSW* h) {
  if (h == nullptr || h->metric_type != faiss::METRIC_INNER_PRODUCT) return nullptr;
  const auto* flat = dynamic_cast<const faiss::IndexFlat*>(h->storage);
  return flat != nullptr ? flat->get_xb() : nullptr;
}

// Top-k of each query in an inner-product HNSW graph with flat storage: D descending, I (-1
// where fewer than k were found).
void hnsw_search(const faiss::IndexHNSW* h, const float* base, int64_t n, const float* x, int64_t k,
                 int ef, float* D, idx_t* I) {
  faiss::SearchParametersHNSW params;
  params.efSearch = std::max<int>(ef, static_cast<int>(k));
  const int d = h->d;
#pragma omp parallel if (n > 1)
  {
    NegIPDistance dc(base, d);
    faiss::VisitedTable vt(h->ntotal);
#pragma omp for schedule(dynamic)
    for (int64_t i = 0; i < n; ++i) {
      float* Di = D + i * k;
      idx_t* Ii = I + i * k;
      dc.set_query(x + i * d);
      faiss::maxheap_heapify(k, Di, Ii);
      h->hnsw.search(dc, static_cast<int>(k), Ii, Di, vt, &params);
      faiss::maxheap_reorder(k, Di, Ii);
      for (int64_t j = 0; j < k; ++j) Di[j] = -Di[j];
    }
  }
}

// Merges count vectors base[count × d] (ids: ids[j], or first_id + j) into the top-k min-heap
// (hv, hi) of query q.
void scan_vectors(const float* q, const float* base, const idx_t* ids, idx_t first_id,
                  int64_t count, int d, int64_t k, float* hv, idx_t* hi) {
  for (int64_t j = 0; j < count; ++j) {
    const float s = dot(q, base + j * d, d);
    if (s > hv[0]) faiss::minheap_replace_top(k, hv, hi, s, ids != nullptr ? ids[j] : first_id + j);
  }
}

// Merges per-thread top-k lists of one query (vals[t][0..k), ids[t][0..k), any order, id -1 for
// none) into D, I (descending).
void merge_topk(const std::vector<std::vector<float>>& vals,
                const std::vector<std::vector<idx_t>>& ids, size_t offset, int64_t k, float* D,
                idx_t* I) {
  faiss::minheap_heapify(k, D, I);
  for (size_t t = 0; t < vals.size(); ++t) {
    for (int64_t j = 0; j < k; ++j) {
      const idx_t id = ids[t][offset + j];
      const float v = vals[t][offset + j];
      if (id >= 0 && v > D[0]) faiss::minheap_replace_top(k, D, I, v, id);
    }
  }
  faiss::minheap_reorder(k, D, I);
}

// Top-k of n queries among the nb vectors base[nb × d] (ids = positions): D descending, I.
// Blocks of base vectors stay in cache while every query scans them; the threads split the
// blocks, each with its own heaps, merged at the end — one pass over memory for a whole batch
// (Faiss's BLAS path is several times slower with this machine's OpenBLAS).
void flat_search(const float* base, int64_t nb, int d, int64_t n, const float* x, int64_t k,
                 float* D, idx_t* I) {
  constexpr int64_t kBlock = 512;
  const int nt = std::max(1, omp_get_max_threads());
  std::vector<std::vector<float>> tv(nt);
  std::vector<std::vector<idx_t>> ti(nt);
#pragma omp parallel num_threads(nt)
  {
    const int t = omp_get_thread_num();
    auto& hv = tv[t];
    auto& hi = ti[t];
    hv.resize(size_t(n) * k);
    hi.resize(size_t(n) * k);
    for (int64_t i = 0; i < n; ++i) faiss::minheap_heapify(k, &hv[i * k], &hi[i * k]);
#pragma omp for schedule(static)
    for (int64_t b = 0; b < nb; b += kBlock) {
      const int64_t m = std::min(kBlock, nb - b);
      for (int64_t i = 0; i < n; ++i)
        scan_vectors(x + i * d, base + b * d, nullptr, b, m, d, k, &hv[i * k], &hi[i * k]);
    }
  }
  for (int64_t i = 0; i < n; ++i) merge_topk(tv, ti, size_t(i) * k, k, D + i * k, I + i * k);
}

// The nprobe nearest coarse centroids of each query (keys -1 where fewer exist).
void coarse_search(const faiss::IndexIVF* ivf, int64_t n, const float* x, int nprobe, int ef,
                   float* D, idx_t* I) {
  const faiss::Index* q = ivf->quantizer;
  const auto* h = dynamic_cast<const faiss::IndexHNSW*>(q);
  if (const float* base = hnsw_flat_ip_base(h)) {
    hnsw_search(h, base, n, x, nprobe, ef, D, I);
    return;
  }
  const auto* flat = dynamic_cast<const faiss::IndexFlat*>(q);
  // Faiss uses BLAS from 20
  if (flat != nullptr && flat->metric_type == faiss::METRIC_INNER_PRODUCT && n < 20) {
    for (int64_t i = 0; i < n; ++i) {
      faiss::minheap_heapify(nprobe, D + i * nprobe, I + i * nprobe);
      scan_vectors(x + i * q->d, flat->get_xb(), nullptr, 0, q->ntotal, q->d, nprobe,
                   D + i * nprobe, I + i * nprobe);
      faiss::minheap_reorder(nprobe, D + i * nprobe, I + i * nprobe);
    }
    return;
  }
  faiss_call("coarse search", [&] { q->search(n, x, nprobe, D, I); });
}

}  // namespace

// Search without Faiss's scalar loops, for the index types above; false for other types.
bool search_direct(faiss::Index* index, int64_t n, const float* queries, int64_t k,
                   const SearchParams& p, float* D, idx_t* I) {
  auto* pt = dynamic_cast<faiss::IndexPreTransform*>(index);
  faiss::Index* inner = pt != nullptr ? pt->index : index;
  if (inner->metric_type != faiss::METRIC_INNER_PRODUCT) return false;
  auto* ivf = dynamic_cast<faiss::IndexIVF*>(inner);
  auto* flat = dynamic_cast<faiss::IndexFlat*>(inner);
  auto* h = dynamic_cast<faiss::IndexHNSW*>(inner);
  const float* hbase = hnsw_flat_ip_base(h);
  if (ivf == nullptr && flat == nullptr && hbase == nullptr) return false;

  std::unique_ptr<const float[]> owned;  // the queries through the pre-transforms
  const float* x = queries;
  if (pt != nullptr) {
    x = faiss_call("transforming the queries", [&] { return pt->apply_chain(n, queries); });
    if (x != queries) owned.reset(x);
  }
  const int d = inner->d;
  if (hbase != nullptr) {
    hnsw_search(h, hbase, n, x, k, p.ef_search > 0 ? p.ef_search : h->hnsw.efSearch, D, I);
    return true;
  }
  if (flat != nullptr) {
    flat_search(flat->get_xb(), flat->ntotal, d, n, x, k, D, I);
    return true;
  }

  const int nprobe = static_cast<int>(
      std::clamp<size_t>(size_t(p.nprobe > 0 ? p.nprobe : ivf->nprobe), 1, ivf->nlist));
  const auto* qh = dynamic_cast<const faiss::IndexHNSW*>(ivf->quantizer);
  const int ef = p.ef_search > 0 ? p.ef_search : (qh != nullptr ? qh->hnsw.efSearch : 0);
  std::vector<float> cdis(size_t(n) * nprobe);
  std::vector<idx_t> keys(size_t(n) * nprobe);
  coarse_search(ivf, n, x, nprobe, ef, cdis.data(), keys.data());

  // Fewer queries than threads (a single query): each query's lists are dealt out to the
  // threads (every nt-th, which balances near and far lists), and their top-k lists merged.
  const int max_threads = std::max(1, omp_get_max_threads());
  const bool split_lists = n < max_threads && nprobe > 1;
  const int nt = split_lists ? std::min(max_threads, nprobe)
                             : static_cast<int>(std::min<int64_t>(max_threads, n));

  if (dynamic_cast<faiss::IndexIVFFlat*>(ivf) != nullptr) {
    // IVF-Flat: the lists hold the float vectors. One task = (query, every nt-th list from t).
    auto scan = [&](int64_t i, int first, int stride, float* hv, idx_t* hi) {
      faiss::minheap_heapify(k, hv, hi);
      for (int j = first; j < nprobe; j += stride) {
        const idx_t list = keys[i * nprobe + j];
        if (list < 0) continue;
        const size_t size = ivf->invlists->list_size(list);
        if (size == 0) continue;
        faiss::InvertedLists::ScopedCodes codes(ivf->invlists, list);
        faiss::InvertedLists::ScopedIds ids(ivf->invlists, list);
        scan_vectors(x + i * d, reinterpret_cast<const float*>(codes.get()), ids.get(), 0,
                     int64_t(size), d, k, hv, hi);
      }
    };
    if (!split_lists) {
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(dynamic)
      for (int64_t i = 0; i < n; ++i) {
        scan(i, 0, 1, D + i * k, I + i * k);
        faiss::minheap_reorder(k, D + i * k, I + i * k);
      }
      return true;
    }
    std::vector<std::vector<float>> tv(nt, std::vector<float>(k));
    std::vector<std::vector<idx_t>> ti(nt, std::vector<idx_t>(k));
    for (int64_t i = 0; i < n; ++i) {
#pragma omp parallel for num_threads(nt)
      for (int t = 0; t < nt; ++t) scan(i, t, nt, tv[t].data(), ti[t].data());
      merge_topk(tv, ti, 0, k, D + i * k, I + i * k);
    }
    return true;
  }

  // Other IVF types (PQ, SQ, …): Faiss scans the lists it is given. search_preassigned runs
  // its queries one after the other (Faiss's search() splits them across threads first), so
  // they are split here the same way — or, for a single query, its lists.
  std::exception_ptr error;
  auto run = [&](int64_t i0, int64_t i1, const idx_t* kk, const float* cd, int np, float* Dt,
                 idx_t* It) {
    faiss::SearchParametersIVF params;
    params.nprobe = np;
    try {
      faiss_call("search", [&] {
        ivf->search_preassigned(i1 - i0, x + i0 * d, k, kk, cd, Dt, It, false, &params);
      });
    } catch (...) {
#pragma omp critical(kvrag_search_error)
      if (!error) error = std::current_exception();
    }
  };
  if (!split_lists) {
#pragma omp parallel for num_threads(nt) if (nt > 1)
    for (int t = 0; t < nt; ++t) {
      const int64_t i0 = n * t / nt, i1 = n * (t + 1) / nt;
      run(i0, i1, keys.data() + i0 * nprobe, cdis.data() + i0 * nprobe, nprobe, D + i0 * k,
          I + i0 * k);
    }
  } else {
    const int per = (nprobe + nt - 1) / nt;
    std::vector<std::vector<float>> tv(nt, std::vector<float>(k));
    std::vector<std::vector<idx_t>> ti(nt, std::vector<idx_t>(k));
    std::vector<std::vector<idx_t>> tk(nt, std::vector<idx_t>(per));
    std::vector<std::vector<float>> tc(nt, std::vector<float>(per));
    for (int64_t i = 0; i < n && !error; ++i) {
#pragma omp parallel for num_threads(nt)
      for (int t = 0; t < nt; ++t) {
        int np = 0;
        for (int j = t; j < nprobe; j += nt, ++np) {
          tk[t][np] = keys[i * nprobe + j];
          tc[t][np] = cdis[i * nprobe + j];
        }
        for (int j = np; j < per; ++j) tk[t][j] = -1;  // unused slots
        run(i, i + 1, tk[t].data(), tc[t].data(), per, tv[t].data(), ti[t].data());
      }
      merge_topk(tv, ti, 0, k, D + i * k, I + i * k);
    }
  }
  if (error) std::rethrow_exception(error);
  return true;
}

}  // namespace kvrag::dense_index_internal
