// DenseIndex: building, searching (with float16 re-ranking), describing and merging Faiss
// indexes over an EmbeddingSet, and choose_factory. Its files (dense.json, dense.faiss; load,
// save) are in dense_index_file.cpp, training and adding in dense_index_train.cpp, the search
// kernels in dense_index_search.cpp; dense_index_internal.h declares what they share.
#include "index/dense_index.h"

#include <cxxabi.h>
#include <faiss/IndexFlat.h>
#include <faiss/IndexFlatCodes.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVF.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/IndexPreTransform.h>
#include <faiss/impl/io.h>
#include <faiss/index_factory.h>
#include <faiss/index_io.h>
#include <faiss/invlists/InvertedLists.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <limits>
#include <mutex>
#include <nlohmann/json.hpp>
#include <typeinfo>

#include "core/error.h"
#include "core/folder_lock.h"
#include "index/dense_index_internal.h"
#include "index/embedding_set.h"

namespace kvrag {

namespace fs = std::filesystem;

namespace dense_index_internal {

namespace {

constexpr int kDefaultRerankDepth = 256;  // compressed indexes: candidates re-ranked

}  // namespace

// ---- small helpers ----------------------------------------------------------------------------

std::string type_name(const faiss::Index& index) {
  const char* mangled = typeid(index).name();
  int status = 0;
  char* s = abi::__cxa_demangle(mangled, nullptr, nullptr, &status);
  std::string out = status == 0 && s != nullptr ? s : mangled;
  std::free(s);
  if (out.rfind("faiss::", 0) == 0) out = out.substr(7);
  return out;
}

// The IVF index inside `index` (itself, or under an IndexPreTransform), or null.
faiss::IndexIVF* find_ivf(faiss::Index* index) {
  if (auto* pt = dynamic_cast<faiss::IndexPreTransform*>(index)) index = pt->index;
  return dynamic_cast<faiss::IndexIVF*>(index);
}

// The HNSW graph whose efSearch governs a search of `index`: the index's own (HNSW32) or its
// IVF coarse quantizer's (IVF…_HNSW32), or null.
faiss::IndexHNSW* find_hnsw(faiss::Index* index) {
  if (auto* pt = dynamic_cast<faiss::IndexPreTransform*>(index)) index = pt->index;
  if (auto* h = dynamic_cast<faiss::IndexHNSW*>(index)) return h;
  if (auto* ivf = dynamic_cast<faiss::IndexIVF*>(index))
    return dynamic_cast<faiss::IndexHNSW*>(ivf->quantizer);
  return nullptr;
}

// ---- search parameters -------------------------------------------------------------------------

// Search defaults by index type (see the "auto" rule in dense_index.h).
SearchParams type_defaults(faiss::Index* index, bool exact) {
  SearchParams p;
  p.rerank = exact ? 0 : kDefaultRerankDepth;
  if (auto* ivf = find_ivf(index)) {
    p.nprobe = static_cast<int>(std::clamp<size_t>(ivf->nlist / 64, 8, 64));
    p.nprobe = std::min<int>(p.nprobe, static_cast<int>(ivf->nlist));
    if (find_hnsw(index) != nullptr) p.ef_search = std::max(64, 2 * p.nprobe);
  } else if (find_hnsw(index) != nullptr) {
    p.ef_search = 128;
  }
  return p;
}

// `over`'s set fields (non-zero; rerank ≥ 0) replace `base`'s.
SearchParams overlay(SearchParams base, const SearchParams& over) {
  if (over.nprobe > 0) base.nprobe = over.nprobe;
  if (over.ef_search > 0) base.ef_search = over.ef_search;
  if (over.rerank >= 0) base.rerank = over.rerank;
  return base;
}

void check_params(const SearchParams& p, const char* what) {
  KVRAG_CHECK(p.nprobe >= 0, "{}: nprobe must be ≥ 0 (0 = default), got {}", what, p.nprobe);
  KVRAG_CHECK(p.ef_search >= 0, "{}: ef_search must be ≥ 0 (0 = default), got {}", what,
              p.ef_search);
  KVRAG_CHECK(p.rerank >= -1, "{}: rerank must be ≥ 0, or -1 for the default, got {}", what,
              p.rerank);
}

}  // namespace dense_index_internal

using namespace dense_index_internal;

namespace {

constexpr int64_t kFlatMaxVectors = 100000;  // "auto": exact search below this size

bool index_is_exact(const faiss::Index* index) {
  if (dynamic_cast<const faiss::IndexFlat*>(index) != nullptr) return true;
  if (dynamic_cast<const faiss::IndexIVFFlat*>(index) != nullptr) return true;
  if (auto* h = dynamic_cast<const faiss::IndexHNSW*>(index)) {
    return dynamic_cast<const faiss::IndexFlat*>(h->storage) != nullptr;
  }
  return false;
}

// The serialised trained state of an index without its vectors: equal for indexes trained
// identically (cloned from one train_from folder), different otherwise.
std::vector<uint8_t> trained_state(faiss::Index* index) {
  faiss::VectorIOWriter w;
  if (faiss::IndexIVF* ivf = find_ivf(index)) {
    faiss::ArrayInvertedLists empty(ivf->nlist, ivf->code_size);
    faiss::InvertedLists* saved = ivf->invlists;
    const idx_t saved_ivf = ivf->ntotal, saved_top = index->ntotal;
    ivf->invlists = &empty;
    ivf->ntotal = 0;
    index->ntotal = 0;
    auto restore = [&] {
      ivf->invlists = saved;
      ivf->ntotal = saved_ivf;
      index->ntotal = saved_top;
    };
    try {
      faiss::write_index(index, &w);
    } catch (...) {
      restore();
      throw;
    }
    restore();
  } else {
    const std::string s =
        fmt::format("{} d={} metric={}", type_name(*index), index->d, int(index->metric_type));
    w.data.assign(s.begin(), s.end());
  }
  return w.data;
}

}  // namespace

// ---- choose_factory
// ---------------------------------------------------------------------------------

std::string choose_factory(int64_t n, int dim, int64_t max_ram_bytes) {
  KVRAG_CHECK(n >= 1 && dim >= 1, "choose_factory: need n ≥ 1 and dim ≥ 1 (got {}, {})", n, dim);
  const double budget = double(max_ram_bytes);
  const double flat_bytes = double(n) * dim * 4;
  if (n < kFlatMaxVectors && flat_bytes <= budget) return "Flat";

  // Lists: the power of two nearest 4·√n, in [16, 65536], with ≥ 39 points per list.
  int64_t nlist = int64_t(1) << std::lround(std::log2(4.0 * std::sqrt(double(n))));
  nlist = std::clamp<int64_t>(nlist, 16, 65536);
  while (nlist > 16 && nlist * 39 > n) nlist /= 2;
  const double centroid_bytes = double(nlist) * dim * 4 * 1.1;  // + HNSW links

  if (flat_bytes + 8.0 * n + centroid_bytes <= budget) {
    return nlist >= 8192 ? fmt::format("IVF{}_HNSW32,Flat", nlist)
                         : fmt::format("IVF{},Flat", nlist);
  }
  // PQ: the largest code (dim/8, dim/12, dim/16, …, one byte per sub-vector) that fits 75% of
  // the budget with the ids and centroids. Longer codes (dim/4) cost scan time and buy little
  // once the candidates are re-ranked.
  int m = 0;
  for (int dsub : {8, 12, 16, 24, 32, 48, 64, 96, 128}) {
    if (dim % dsub != 0) continue;
    const int cand = dim / dsub;
    if (double(n) * (cand + 8) + centroid_bytes <= 0.75 * budget) {
      m = cand;
      break;
    }
    m = cand;  // smallest so far: the fallback if nothing fits
  }
  if (m == 0) m = 1;  // dim has no divisor in the list: one sub-quantizer (poor, but valid)
  return fmt::format("IVF{}_HNSW32,PQ{}np", nlist, m);
}

// ---- DenseIndex
// --------------------------------------------------------------------------------------

DenseIndex::DenseIndex() = default;
DenseIndex::~DenseIndex() = default;

int DenseIndex::dim() const { return index_->d; }
int64_t DenseIndex::size() const { return index_->ntotal; }
bool DenseIndex::exact_scores() const { return index_is_exact(index_.get()); }

std::unique_ptr<DenseIndex> DenseIndex::build(const EmbeddingSet& vectors,
                                              const IndexBuildOptions& o) {
  KVRAG_CHECK(o.add_batch >= 1, "index build: add_batch must be ≥ 1, got {}", o.add_batch);
  KVRAG_CHECK(o.train_size >= 0, "index build: train_size must be ≥ 0, got {}", o.train_size);
  check_params(o.defaults, "index build");
  const Progress progress = [&](const std::string& stage, int64_t done, int64_t total) {
    if (o.progress) o.progress(stage, done, total);
  };
  const int64_t n = vectors.size();
  const int d = vectors.dim();

  std::unique_ptr<DenseIndex> out(new DenseIndex());
  out->fingerprint_ = vectors.fingerprint();
  SearchParams stored;  // defaults recorded with a train_from index
  if (!o.train_from.empty()) {
    const json meta = read_meta(o.train_from);
    out->index_ = read_index_file(o.train_from, meta);
    KVRAG_CHECK(out->index_->d == d, "--train-from {}: dimension {} differs from the vectors' {}",
                o.train_from, out->index_->d, d);
    KVRAG_CHECK(meta["fingerprint"] == out->fingerprint_,
                "--train-from {}: built from encoder fingerprint {}, but {} holds vectors of {}",
                o.train_from, meta["fingerprint"].get<std::string>(), vectors.dir(),
                out->fingerprint_);
    KVRAG_CHECK(out->index_->is_trained, "--train-from {}: the index is not trained", o.train_from);
    faiss_call("emptying the --train-from index", [&] { out->index_->reset(); });
    out->factory_ = meta["factory"].get<std::string>();
    stored = meta_defaults(meta);
  } else {
    out->factory_ = o.factory == "auto" ? choose_factory(n, d, o.max_ram_bytes) : o.factory;
    KVRAG_CHECK(!out->factory_.empty(), "index build: empty factory string");
    out->index_.reset(
        faiss_call(fmt::format("invalid Faiss factory string '{}'", out->factory_), [&] {
          return faiss::index_factory(d, out->factory_.c_str(), faiss::METRIC_INNER_PRODUCT);
        }));
    if (!out->index_->is_trained) train_index(out->index_.get(), vectors, o, progress);
  }
  out->defaults_ =
      overlay(overlay(type_defaults(out->index_.get(), out->exact_scores()), stored), o.defaults);

  if (!o.train_only) {
    Adder adder(out->index_.get(), o.seed);
    std::vector<float> batch(static_cast<size_t>(std::min(o.add_batch, n)) * d);
    progress("add", 0, n);
    for (int64_t begin = 0; begin < n; begin += o.add_batch) {
      const int64_t m = std::min(o.add_batch, n - begin);
      vectors.get_range(begin, m, batch.data());
      vectors.prefetch(begin + m, o.add_batch);  // read the next batch while this one is added
      faiss_call(fmt::format("adding vectors [{}, {})", begin, begin + m),
                 [&] { adder.add(m, batch.data()); });
      progress("add", begin + m, n);
    }
  }
  out->vectors_ = &vectors;
  return out;
}

SearchParams DenseIndex::resolve(const SearchParams& params) const {
  check_params(params, "search");
  SearchParams p = overlay(defaults_, params);
  if (p.rerank < 0) p.rerank = 0;
  return p;
}

SearchResult DenseIndex::search(int64_t n, int query_dim, const float* queries, int k,
                                const SearchParams& params) const {
  KVRAG_CHECK(query_dim == dim(), "query dimension {} does not match the index dimension {}",
              query_dim, dim());
  return search(n, queries, k, params);
}

SearchResult DenseIndex::search(int64_t n, const float* queries, int k,
                                const SearchParams& params) const {
  KVRAG_CHECK(k >= 1, "k must be at least 1, got {}", k);
  KVRAG_CHECK(k <= size(), "k = {} exceeds the {} vectors in the index", k, size());
  KVRAG_CHECK(n >= 0, "negative number of queries ({})", n);
  const int d = dim();
  SearchResult result;
  result.scores.assign(static_cast<size_t>(n) * k, -std::numeric_limits<float>::infinity());
  result.ids.assign(static_cast<size_t>(n) * k, -1);
  if (n == 0) return result;
  KVRAG_CHECK(queries != nullptr, "search: no query vectors");
  for (int64_t i = 0; i < n * d; ++i) {
    KVRAG_CHECK(std::isfinite(queries[i]), "query {} has a non-finite component ({})", i / d,
                queries[i]);
  }

  const SearchParams p = resolve(params);
  bool rerank = p.rerank > 0 && !exact_scores();
  if (rerank && vectors_ == nullptr) {
    // An explicit request cannot be honoured; the index's default silently degrades.
    KVRAG_CHECK(params.rerank <= 0,
                "re-ranking needs the embeddings: load the index with its EmbeddingSet");
    rerank = false;
  }
  const int64_t depth = rerank ? std::min<int64_t>(size(), std::max<int64_t>(k, p.rerank)) : k;

  std::vector<float> dis(static_cast<size_t>(n) * depth);
  std::vector<idx_t> ids(static_cast<size_t>(n) * depth);

  faiss::Index* index = index_.get();
  if (!search_direct(index, n, queries, depth, p, dis.data(), ids.data())) {
    // Other types: Faiss's search. Faiss 1.7.3's IndexHNSW ignores SearchParametersHNSW, so a
    // graph whose storage is not flat gets efSearch set on the index, under the lock.
    auto run = [&] {
      faiss_call("search", [&] { index->search(n, queries, depth, dis.data(), ids.data()); });
    };
    faiss::IndexHNSW* hnsw = find_hnsw(index);
    if (hnsw != nullptr && p.ef_search > 0 && hnsw->hnsw.efSearch != p.ef_search) {
      std::unique_lock lock(hnsw_mutex_);
      hnsw->hnsw.efSearch = p.ef_search;
      run();
    } else {
      std::shared_lock lock(hnsw_mutex_);
      run();
    }
  }

  if (!rerank) {
    for (int64_t q = 0; q < n; ++q) {
      for (int j = 0; j < k; ++j) {
        const idx_t id = ids[q * depth + j];
        if (id < 0) continue;
        result.ids[q * k + j] = id;
        result.scores[q * k + j] = dis[q * depth + j];
      }
    }
    return result;
  }

  // Re-rank: exact inner products with the float16 vectors of each query's candidates. The
  // rows are prefetched first, so that those not in the page cache are read in parallel.
  vectors_->prefetch(ids.data(), static_cast<int64_t>(ids.size()));
  std::exception_ptr error;
#pragma omp parallel if (n > 1)
  {
    std::vector<int64_t> cand;
    std::vector<float> rows;
    std::vector<std::pair<float, int64_t>> scored;
#pragma omp for schedule(dynamic)
    for (int64_t q = 0; q < n; ++q) {
      try {
        cand.clear();
        for (int64_t j = 0; j < depth; ++j) {
          if (ids[q * depth + j] >= 0) cand.push_back(ids[q * depth + j]);
        }
        rows.resize(cand.size() * d);
        vectors_->get(cand.data(), static_cast<int64_t>(cand.size()), rows.data());
        scored.clear();
        for (size_t j = 0; j < cand.size(); ++j) {
          scored.push_back({dot(queries + q * d, rows.data() + j * d, d), cand[j]});
        }
        const size_t top = std::min<size_t>(k, scored.size());
        std::partial_sort(scored.begin(), scored.begin() + top, scored.end(),
                          [](const auto& a, const auto& b) {
                            return a.first != b.first ? a.first > b.first : a.second < b.second;
                          });
        for (size_t j = 0; j < top; ++j) {
          result.scores[q * k + j] = scored[j].first;
          result.ids[q * k + j] = scored[j].second;
        }
      } catch (...) {
#pragma omp critical(kvrag_rerank_error)
        if (!error) error = std::current_exception();
      }
    }
  }
  if (error) std::rethrow_exception(error);
  return result;
}

json DenseIndex::info() const {
  json j = {{"factory", factory_},
            {"faiss_type", type_name(*index_)},
            {"dim", dim()},
            {"size", size()},
            {"metric", "ip"},
            {"fingerprint", fingerprint_},
            {"exact_scores", exact_scores()},
            {"nprobe", defaults_.nprobe},
            {"ef_search", defaults_.ef_search},
            {"rerank", defaults_.rerank}};
  double resident = 0;
  if (faiss::IndexIVF* ivf = find_ivf(index_.get())) {
    j["nlist"] = ivf->nlist;
    j["code_size"] = ivf->code_size;
    j["quantizer"] = type_name(*ivf->quantizer);
    if (size() > 0) j["imbalance_factor"] = ivf->invlists->imbalance_factor();
    resident = double(size()) * (ivf->code_size + sizeof(idx_t)) + double(ivf->nlist) * dim() * 4;
  } else if (auto* codes = dynamic_cast<faiss::IndexFlatCodes*>(index_.get())) {
    resident = double(size()) * codes->code_size;
  } else if (auto* h = dynamic_cast<faiss::IndexHNSW*>(index_.get())) {
    resident = double(size()) * (dim() * 4 + h->hnsw.nb_neighbors(0) * 4 * 1.2);
  }
  if (resident > 0) j["resident_bytes_estimate"] = static_cast<int64_t>(resident);
  return j;
}

// ---- merging
// -------------------------------------------------------------------------------------------

namespace {

// out_dir/embeddings from the shards' embeddings (and their checksums), renamed to the merged row
// ranges: hard links where the file system allows, else copies. Built in a temporary folder, then
// renamed.
void merge_embeddings(const std::vector<std::string>& shard_dirs, const std::vector<int64_t>& sizes,
                      const std::string& out_dir) {
  const std::string target = out_dir + "/embeddings";
  std::error_code ec;
  if (fs::exists(target, ec)) return;  // the caller's own (e.g. the full corpus): load() checks it
  for (const auto& dir : shard_dirs) {
    if (!fs::is_directory(dir + "/embeddings", ec)) return;  // nothing to assemble
  }
  const std::string tmp = fmt::format("{}.tmp.{}", target, static_cast<long>(::getpid()));
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp, ec);
  KVRAG_CHECK(!ec, "cannot create {}: {}", tmp, ec.message());
  auto link_or_copy = [&ec](const std::string& from, const std::string& to) {
    fs::create_hard_link(from, to, ec);
    if (ec) {
      ec.clear();
      fs::copy_file(from, to);
    }
  };
  try {
    int64_t offset = 0;
    for (size_t i = 0; i < shard_dirs.size(); ++i) {
      const std::string src = shard_dirs[i] + "/embeddings";
      const auto set = EmbeddingSet::open(src, sizes[i]);  // the files tile the shard's rows
      if (i == 0) fs::copy_file(src + "/encoder.json", tmp + "/encoder.json");
      for (const auto& de : fs::directory_iterator(src)) {
        int64_t b, e;
        const std::string name = de.path().filename().string();
        if (!EmbeddingSet::parse_shard_name(name, &b, &e)) continue;
        const std::string to = tmp + "/" + EmbeddingSet::shard_name(b + offset, e + offset);
        link_or_copy(de.path().string(), to);
        // its checksum too, where one was recorded (it covers the bytes, not the name)
        const std::string sum = checksum_path(de.path().string());
        if (fs::exists(sum, ec)) link_or_copy(sum, checksum_path(to));
      }
      offset += sizes[i];
    }
    EmbeddingSet::open(tmp, offset);
    fs::rename(tmp, target);
  } catch (const fs::filesystem_error& e) {
    fs::remove_all(tmp, ec);
    fail("cannot assemble {}: {}", target, e.what());
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
}

}  // namespace

void merge_indexes(const std::vector<std::string>& shard_dirs, const std::string& out_dir) {
  KVRAG_CHECK(!shard_dirs.empty(), "index merge: no shard folders given");
  std::unique_ptr<DenseIndex> base;
  std::vector<uint8_t> base_state;
  std::vector<int64_t> sizes;
  for (size_t i = 0; i < shard_dirs.size(); ++i) {
    const std::string& dir = shard_dirs[i];
    auto shard = DenseIndex::load(dir, nullptr);
    sizes.push_back(shard->size());
    faiss::Index* index = shard->index_.get();
    const bool ivf = find_ivf(index) != nullptr;
    const bool flat = dynamic_cast<faiss::IndexFlatCodes*>(index) != nullptr;
    KVRAG_CHECK(ivf || flat,
                "{}: a {} index cannot be merged (only IVF and Flat indexes can): build one index "
                "from all the embeddings instead",
                dir, type_name(*index));
    std::vector<uint8_t> state =
        faiss_call(dir + ": serialising", [&] { return trained_state(index); });
    if (i == 0) {
      base = std::move(shard);
      base_state = std::move(state);
      continue;
    }
    const std::string& first = shard_dirs[0];
    KVRAG_CHECK(shard->factory_ == base->factory_, "{}: factory '{}' differs from '{}' in {}", dir,
                shard->factory_, base->factory_, first);
    KVRAG_CHECK(
        shard->fingerprint_ == base->fingerprint_,
        "{}: built from encoder fingerprint {}, but {} from {}: shards must share one encoder", dir,
        shard->fingerprint_, first, base->fingerprint_);
    KVRAG_CHECK(state == base_state,
                "{}: not trained identically to {}: build every shard with --train-from the same "
                "trained folder",
                dir, first);
    faiss_call(dir + ": merging", [&] {
      faiss::Index* into = base->index_.get();
      if (faiss::IndexIVF* a = find_ivf(into)) {
        a->merge_from(*find_ivf(index), a->ntotal);  // shifts the shard's ids by the rows so far
        into->ntotal = a->ntotal;                    // an IndexPreTransform on top
      } else {
        into->merge_from(*index, 0);  // Flat: ids are positions
      }
    });
  }
  // Locked once the shards are known to merge: a failed merge leaves no folder behind.
  const FolderLock lock(out_dir, LockMode::kExclusive, "kvrag index merge");
  base->save(out_dir);
  merge_embeddings(shard_dirs, sizes, out_dir);
}

}  // namespace kvrag
