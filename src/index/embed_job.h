// The embedding job (`kvrag embed`, the demo's index stage): every segment of an index folder's
// DIR/segments.sqlite encoded into float16 vectors, DIR/embeddings/emb-<begin>-<end>.npy, one
// file per chunk of the fixed chunk grid (EmbeddingSet reads them).
//
// Each chunk is written atomically, so an interrupted run (even kill -9) resumes at the first
// missing chunk, and the result is identical to an uninterrupted run (a chunk's batches depend
// only on its rows). A shard (index/shard.h: --shard i/n or the MPI launcher's rank and size)
// takes one contiguous part of the rows, so processes or machines split the work; the shards'
// files tile the id range. DIR/embeddings/encoder.json names the encoder (and chunk size): a
// folder holds the vectors of one encoder only.
#pragma once

#include <cstdint>
#include <string>

#include "index/embedder.h"
#include "index/shard.h"

namespace kvrag {

struct EmbedJobOptions {
  EmbedderOptions encoder;  // dtype, max_length, batch_tokens
  int64_t chunk = 16384;    // segments per output file (the unit of resumption)
  std::string shard;        // "i/n"; empty: from the MPI environment, else all (resolve_shard)
  // discard embeddings of another encoder (or chunk size) instead of failing
  bool overwrite = false;
  // embed with an encoder whose tokenizer is not the one the segments were measured with
  bool force = false;
  // the job's plan, a progress line and notes (resumed, truncated) on stderr
  bool progress = true;
};

struct EmbedJobResult {
  ShardSpec shard;
  int64_t begin = 0, end = 0;  // the rows of this shard
  int64_t total = 0;           // segments in the store
  std::string dir;             // INDEX/embeddings
  std::string fingerprint;     // the encoder's
  int dim = 0;
  int max_length = 0;     // tokens per segment the encoder reads; longer ones are truncated
  int64_t skipped = 0;    // rows an earlier run had embedded (resumed)
  int64_t truncated = 0;  // segments longer than max_length
  // A single shard: the vectors in `dir`, checked to tile [0, total). Otherwise 0 (the folder is
  // complete only when every shard is done).
  int64_t vectors = 0;
};

// Embeds the segments of INDEX_DIR/segments.sqlite (complete: `kvrag segment` finished) with the
// encoder folder ENCODER_DIR. Error naming the file at fault for a missing, empty or unfinished
// store, a bad shard, embeddings of another encoder without `overwrite`, or (without `force`)
// an encoder whose tokenizer differs from the one the store's segments were cut with (the
// tokenizer_id recorded in its meta "segmenter"; stores without one are not checked): segment
// windows are measured in that tokenizer's tokens, so another vocabulary would cut segments
// longer (truncated) or shorter than the encoder reads.
//
// Each chunk is written with its checksum (EmbeddingSet::write_shard). A chunk already present
// is kept only if it matches its recorded checksum (or has none); a changed one is embedded
// again, so rerunning the job repairs a shard that `index build` reports as changed.
EmbedJobResult embed_segments(const std::string& index_dir, const std::string& encoder_dir,
                              const EmbedJobOptions& options);

}  // namespace kvrag
