// Internal to the dense index: declarations shared by the files DenseIndex is split into, for
// them only (not part of kvrag's API; nothing outside src/index/dense_index*.cpp includes it).
//   dense_index.cpp         the DenseIndex class (build, search, info), choose_factory, merging,
//                           and the helpers below that look inside a Faiss index;
//   dense_index_file.cpp    its files: dense.json, dense.faiss with its checksum, load and save;
//   dense_index_train.cpp   training (sampling, spherical k-means, coarse quantizers, PQ
//                           codebooks) and adding vectors (coarse assignment, PQ encoding);
//   dense_index_search.cpp  the search kernels: SIMD dot product, flat, coarse, HNSW and IVF
//                           searches.
// Faiss 1.7.3 (Debian): `faiss::Index::idx_t`; its exceptions (faiss::FaissException) never
// leave these files — they become kvrag::Error naming the file or the step (faiss_call).
#pragma once

#include <faiss/Index.h>
#include <faiss/impl/FaissException.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <new>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "core/error.h"
#include "index/dense_index.h"

namespace faiss {
struct IndexHNSW;
struct IndexIVF;
struct IndexIVFPQ;
}  // namespace faiss

namespace kvrag {

class EmbeddingSet;

namespace dense_index_internal {

using idx_t = faiss::Index::idx_t;
using json = nlohmann::json;
using Progress = std::function<void(const std::string&, int64_t, int64_t)>;

// ---- small helpers (faiss_call here, the others in dense_index.cpp) ----------------------------

// Runs f(), turning Faiss's exceptions (and allocation failures, which a corrupt size field can
// cause) into Error with `what` as context.
template <typename F>
auto faiss_call(const std::string& what, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const faiss::FaissException& e) {
    fail("{}: {}", what, e.what());
  } catch (const std::bad_alloc&) {
    fail("{}: out of memory", what);
  }
}

// The index's Faiss class name, without "faiss::".
std::string type_name(const faiss::Index& index);
// The IVF index inside `index` (itself, or under an IndexPreTransform), or null.
faiss::IndexIVF* find_ivf(faiss::Index* index);
// The HNSW graph whose efSearch governs a search of `index`, or null.
faiss::IndexHNSW* find_hnsw(faiss::Index* index);

// ---- search parameters (dense_index.cpp) -------------------------------------------------------

// Search defaults by index type.
SearchParams type_defaults(faiss::Index* index, bool exact);
// `over`'s set fields (non-zero; rerank ≥ 0) replace `base`'s.
SearchParams overlay(SearchParams base, const SearchParams& over);
// Error (naming `what`) unless nprobe, ef_search ≥ 0 and rerank ≥ -1.
void check_params(const SearchParams& p, const char* what);

// ---- dense.json and dense.faiss (dense_index_file.cpp) -----------------------------------------

// DIR/dense.json, its fields checked; Errors name the file.
json read_meta(const std::string& dir);
// The search defaults recorded in dense.json (unset: 0, rerank -1).
SearchParams meta_defaults(const json& j);
// DIR/dense.faiss, verified against dense.json (checksum, dimension, size, metric).
std::unique_ptr<faiss::Index> read_index_file(const std::string& dir, const json& meta);

// ---- training and adding (dense_index_train.cpp) -----------------------------------------------

// Trains `index` on a seeded sample of `vectors`.
void train_index(faiss::Index* index, const EmbeddingSet& vectors, const IndexBuildOptions& o,
                 const Progress& progress);

class CoarseAssigner;
class PqEncoder;

// Adds vectors to an index, in batches: Faiss's add, or kvrag's path for fast_add_ivf indexes.
class Adder {
 public:
  Adder(faiss::Index* index, uint64_t seed);
  ~Adder();

  void add(int64_t n, const float* x);

 private:
  faiss::Index* index_;
  faiss::IndexIVF* ivf_;
  faiss::IndexIVFPQ* pq_ = nullptr;
  std::unique_ptr<CoarseAssigner> assigner_;
  std::unique_ptr<PqEncoder> encoder_;
};

// ---- search kernels (dense_index_search.cpp) ---------------------------------------------------

// Whether the CPU has AVX and FMA (checked once).
bool cpu_has_avx_fma();
// Inner product of a[d] and b[d]: AVX + FMA when the CPU has them, portable loops otherwise.
float dot(const float* a, const float* b, size_t d);
// Top-k of n queries in an inner-product IVF, Flat or HNSW (flat storage) index, under an
// IndexPreTransform or not, without Faiss's scalar loops: D [n × k] descending, I [n × k] (-1
// where fewer than k exist). False, with nothing written, for other types (Faiss searches those).
bool search_direct(faiss::Index* index, int64_t n, const float* queries, int64_t k,
                   const SearchParams& p, float* D, idx_t* I);

}  // namespace dense_index_internal
}  // namespace kvrag
