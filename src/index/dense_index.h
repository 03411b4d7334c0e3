// The dense index: Faiss, inner-product metric, built from an EmbeddingSet.
//
// Any Faiss factory string works ("Flat", "IVF4096,Flat", "IVF16384_HNSW32,PQ64np",
// "OPQ64,IVF…,PQ64np", "HNSW32", …); "auto" picks one from the corpus size and a RAM budget
// (see choose_factory). Compressed indexes (PQ, SQ, …) re-rank their candidates with the exact
// float16 vectors read from the embeddings on disk (EmbeddingSet: pread, through the page
// cache), so recall stays high while resident memory stays low.
//
// On disk (an index folder DIR): DIR/dense.faiss (Faiss's own format: faiss.read_index opens
// it) and DIR/dense.json {"factory", "dim", "size", "metric": "ip", "fingerprint", "nprobe",
// "ef_search", "rerank", "faiss_bytes", "faiss_checksum", …}. Both are written atomically;
// the checksum lets load() reject a damaged dense.faiss before Faiss parses it.
//
// Training: IVF coarse centroids come from spherical k-means on a seeded sample; above 256
// lists a two-level k-means (√nlist clusters, then each split in proportion to its size, as
// faiss/contrib/clustering.py does) keeps training minutes instead of hours on a few cores.
// PQ codebooks of IVF-PQ are trained by Faiss's k-means on residuals, with kvrag's SIMD
// assignment kernel; other codebooks (SQ, OPQ, …) by Faiss. An index trained once can be reused
// (IndexBuildOptions::train_from) so that shards built separately merge exactly.
//
// Debian's libfaiss is a generic SSE2 build whose per-vector distance loops are scalar (about
// 1 µs per 768-d product): adding 10M vectors through it would take many hours, and its coarse
// quantizers, HNSW walks and IVF-Flat scans dominate query time. So, on Faiss's own data
// structures (the files stay Faiss's format):
//   - adding: inner-product IVF indexes with a flat or HNSW quantizer get their lists from a
//     BLAS assignment (two-level above 2048 lists) and their IVF-PQ codes from AVX kernels;
//   - searching: coarse quantizers (HNSW walks with an AVX distance, or flat scans), HNSW
//     indexes, IVF-Flat lists and Flat indexes are searched by kvrag; IVF-PQ lists by Faiss's
//     lookup-table scanner. A single query's lists are split across the threads.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <shared_mutex>
#include <string>
#include <vector>

namespace faiss {
struct Index;
}

namespace kvrag {

class EmbeddingSet;

struct SearchParams {
  int nprobe = 0;     // IVF lists to visit; 0 = the index's default
  int ef_search = 0;  // HNSW (the index, or an IVF's coarse quantizer); 0 = default
  int rerank = -1;    // candidates re-ranked with exact vectors; -1 = default, 0 = off
};

struct IndexBuildOptions {
  std::string factory = "auto";
  int64_t max_ram_bytes = int64_t(2) << 30;  // budget for "auto": codes + structures in RAM
  int64_t train_size = 0;                    // vectors sampled for training; 0 = chosen by type
  int64_t add_batch = 65536;
  uint64_t seed = 1234;
  // An index folder (DIR with dense.faiss + dense.json) whose trained index is reused, emptied,
  // instead of training: shards built from one such folder can be merged. Its dimension and
  // fingerprint must match the vectors'; `factory` is then ignored.
  std::string train_from;
  // Train only, add no vectors: the result (size 0) is a folder for train_from.
  bool train_only = false;
  // Search defaults stored in dense.json; 0 (rerank: -1) = chosen from the index type.
  SearchParams defaults;
  // Called with (stage, done, total) while sampling ("sample"), training ("train") and adding
  // ("add"); build_dense_index also calls it while checking the shards' checksums ("check").
  std::function<void(const std::string&, int64_t, int64_t)> progress;
};

struct SearchResult {
  std::vector<float> scores;  // [n × k], descending per query; -inf where fewer than k exist
  std::vector<int64_t> ids;   // [n × k], -1 where fewer than k exist
};

// The factory string "auto" resolves to for n vectors of `dim` under a RAM budget:
//   - "Flat" (exact) when n < 100,000 and n × dim × 4 bytes fit the budget;
//   - "IVF{L},Flat" when the float32 vectors (plus ids and centroids) fit the budget;
//   - else "IVF{L}_HNSW32,PQ{m}np": an HNSW coarse quantizer (cheap assignment of millions of
//     vectors), PQ codes of m bytes with m the largest of dim/8, dim/12, dim/16, … (dividing
//     dim) whose codes + ids + centroids fit 75% of the budget (the rest is for the process and
//     the re-ranking reads), re-ranked with the float16 vectors;
// with L = the power of two nearest 4·√n, in [16, 65536] (and ≤ n / 39).
std::string choose_factory(int64_t n, int dim, int64_t max_ram_bytes);

class DenseIndex {
 public:
  // Trains (or takes options.train_from's trained index) and adds all of `vectors`, which must
  // outlive the index if it re-ranks.
  static std::unique_ptr<DenseIndex> build(const EmbeddingSet& vectors,
                                           const IndexBuildOptions& options);
  // Loads DIR/dense.faiss + dense.json; `vectors` (may be null) enables re-ranking and must
  // carry the same fingerprint, dimension and size. Errors name the file.
  static std::unique_ptr<DenseIndex> load(const std::string& dir, const EmbeddingSet* vectors);
  ~DenseIndex();

  // Writes DIR/dense.faiss and DIR/dense.json atomically (creating DIR).
  void save(const std::string& dir) const;

  // queries [n × dim] float32, finite; k ≥ 1 (Error if k ≤ 0 or k > size()). Results are
  // sorted by descending inner product; with re-ranking the scores are exact products with the
  // float16 vectors. Thread-safe (only a Faiss HNSW index with non-flat storage, whose efSearch
  // lives in the index, makes searches with different ef_search values take turns).
  SearchResult search(int64_t n, const float* queries, int k,
                      const SearchParams& params = {}) const;
  // The same, checking that the queries have the index's dimension.
  SearchResult search(int64_t n, int query_dim, const float* queries, int k,
                      const SearchParams& params = {}) const;

  int dim() const;
  int64_t size() const;
  const std::string& factory() const { return factory_; }
  const std::string& fingerprint() const { return fingerprint_; }
  const SearchParams& defaults() const { return defaults_; }
  // Whether the index holds exact vectors (Flat, IVF-Flat, HNSW-Flat): re-ranking adds nothing.
  bool exact_scores() const;
  // dense.json's fields plus the Faiss type, list count and an estimate of resident bytes.
  nlohmann::json info() const;

 private:
  friend void merge_indexes(const std::vector<std::string>& shard_dirs, const std::string& out_dir);

  DenseIndex();
  SearchParams resolve(const SearchParams& params) const;

  std::unique_ptr<faiss::Index> index_;
  const EmbeddingSet* vectors_ = nullptr;
  std::string factory_, fingerprint_;
  SearchParams defaults_;
  mutable std::shared_mutex hnsw_mutex_;  // guards efSearch of HNSW indexes searched by Faiss
};

// Merges shard index folders (same factory, fingerprint; trained identically, e.g. with
// --train-from) into `out_dir`, ids offset by the shards' order: shard i's row j becomes
// sum(size of shards < i) + j. IVF indexes merge their lists, Flat indexes append; other
// types are an Error. If the shards have embeddings/ folders and out_dir has none, out_dir/
// embeddings is made from them (hard links where possible, renamed to the merged row ranges),
// so the merged folder re-ranks like a single build. Errors name the folder.
void merge_indexes(const std::vector<std::string>& shard_dirs, const std::string& out_dir);

}  // namespace kvrag
