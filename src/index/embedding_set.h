// The segment embeddings of an index folder: DIR/embeddings/ holds float16 .npy shards named
// "emb-BBBBBBBBBBBB-EEEEEEEEEEEE.npy" (rows [B, E) of the segment ids, zero-padded to 12
// digits) and "encoder.json" (the encoder that made them: {"path", "fingerprint", "dim",
// "pooling", "max_length"}). Shards come from one `kvrag embed` run or many (--shard i/n, MPI);
// opening checks they tile 0..N-1 exactly.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "index/npy_file.h"

namespace kvrag {

class EmbeddingSet {
 public:
  // Throws Error naming the folder/file for missing shards, gaps, overlaps, a dimension that
  // differs between shards or from encoder.json, or N != expected_rows (if ≥ 0).
  static std::unique_ptr<EmbeddingSet> open(const std::string& embeddings_dir, int64_t expected_rows = -1);

  int64_t size() const { return size_; }
  int dim() const { return dim_; }
  const nlohmann::json& encoder() const { return encoder_; }   // contents of encoder.json
  std::string fingerprint() const { return encoder_.value("fingerprint", ""); }

  // Rows [begin, begin + n) as float32 into out[n × dim].
  void get_range(int64_t begin, int64_t n, float* out) const;
  // Arbitrary rows as float32 into out[ids.size() × dim]; Error for an id out of range.
  void get(const std::vector<int64_t>& ids, float* out) const;

  // Shard file name for rows [begin, end).
  static std::string shard_name(int64_t begin, int64_t end);

 private:
  std::string dir_;
  std::vector<std::unique_ptr<NpyMatrix>> shards_;
  std::vector<int64_t> begins_;  // first row of each shard, ascending
  int64_t size_ = 0;
  int dim_ = 0;
  nlohmann::json encoder_;
};

}  // namespace kvrag
