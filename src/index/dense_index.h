// The dense index: Faiss, inner-product metric, built from an EmbeddingSet.
//
// Any Faiss factory string works ("Flat", "IVF4096,Flat", "IVF16384_HNSW32,PQ64", "OPQ64,IVF…,PQ64",
// "HNSW32", …); "auto" picks one from the corpus size and a RAM budget. Compressed indexes can
// re-rank their candidates with the exact float16 vectors read from the memory-mapped
// embeddings, so recall stays high while resident memory stays low.
//
// On disk (an index folder DIR): DIR/dense.faiss (Faiss's own format: faiss.read_index opens
// it) and DIR/dense.json {"factory", "dim", "size", "metric": "ip", "fingerprint", defaults of
// the search knobs}. Both are written atomically.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace faiss {
struct Index;
}

namespace kvrag {

class EmbeddingSet;

struct IndexBuildOptions {
  std::string factory = "auto";
  int64_t max_ram_bytes = int64_t(2) << 30;  // budget for "auto": codes + structures in RAM
  int64_t train_size = 0;                    // vectors sampled for training; 0 = chosen by type
  int64_t add_batch = 65536;
  uint64_t seed = 1234;
  // Called with (stage, done, total) during training and adding.
  std::function<void(const std::string&, int64_t, int64_t)> progress;
};

struct SearchParams {
  int nprobe = 0;     // IVF lists to visit; 0 = the index's default
  int ef_search = 0;  // HNSW; 0 = default
  int rerank = -1;    // candidates re-ranked with exact vectors; -1 = default, 0 = off
};

struct SearchResult {
  std::vector<float> scores;  // [n × k], descending per query; -inf where fewer than k exist
  std::vector<int64_t> ids;   // [n × k], -1 where fewer than k exist
};

// The factory string "auto" resolves to for n vectors of `dim` under a RAM budget.
std::string choose_factory(int64_t n, int dim, int64_t max_ram_bytes);

class DenseIndex {
 public:
  static std::unique_ptr<DenseIndex> build(const EmbeddingSet& vectors, const IndexBuildOptions& options);
  // Loads DIR/dense.faiss + dense.json; `vectors` (may be null) enables re-ranking and must
  // carry the same fingerprint and size. Errors name the file.
  static std::unique_ptr<DenseIndex> load(const std::string& dir, const EmbeddingSet* vectors);
  ~DenseIndex();

  void save(const std::string& dir) const;

  // queries [n × dim] float32; k ≥ 1 (Error if k ≤ 0 or k > size()).
  SearchResult search(int64_t n, const float* queries, int k, const SearchParams& params = {}) const;

  int dim() const;
  int64_t size() const;
  const std::string& factory() const { return factory_; }
  const std::string& fingerprint() const { return fingerprint_; }

 private:
  DenseIndex() = default;
  std::unique_ptr<faiss::Index> index_;
  const EmbeddingSet* vectors_ = nullptr;
  std::string factory_, fingerprint_;
  SearchParams defaults_;
};

// Merges shard index folders (same factory, fingerprint; trained identically, e.g. with
// --train-from) into `out_dir`, ids offset by the shards' order. Errors name the folder.
void merge_indexes(const std::vector<std::string>& shard_dirs, const std::string& out_dir);

}  // namespace kvrag
