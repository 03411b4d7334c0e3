// Building an index folder's dense index (`kvrag index build`, the demo's index stage):
// INDEX_DIR/embeddings (from the embedding job), every shard checked against its recorded
// checksum (EmbeddingSet::verify, ChecksumCheck::kFull) → INDEX_DIR/dense.faiss + dense.json
// (DenseIndex::build, then save), with the plan and one progress line per build stage
// (check, sample, train, add) on stderr; and what `kvrag index info` prints.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "index/dense_index.h"

namespace kvrag {

struct DenseIndexBuildResult {
  int64_t size = 0;         // vectors in the index
  int64_t faiss_bytes = 0;  // of dense.faiss
  SearchParams defaults;    // the search defaults stored in dense.json
  double seconds = 0;       // opening the vectors to saving the index
};

// `progress`: the plan ("index: N vectors of dim D from DIR; factory F") and the stage progress
// lines, which replace options.progress. Errors name the folder or file at fault (a shard that
// changed after `kvrag embed` wrote it: "…/emb-B-E.npy: checksum mismatch in bytes …").
DenseIndexBuildResult build_dense_index(const std::string& index_dir, IndexBuildOptions options,
                                        bool progress = true);

// `kvrag index info`: DenseIndex::info() of INDEX_DIR's dense index (loaded with its embeddings/
// where present), plus the size of dense.faiss and the embeddings' dir, size, dim, fingerprint.
nlohmann::json dense_index_info(const std::string& index_dir);

}  // namespace kvrag
