// `kvrag index build-prefixes`: the prefix store of an index folder (prefix/prefix_store.h) from
// its segment store and a knowledge encoder. Batched; resumable (a killed build continues from
// the last batch written: DIR/prefixes.partial.json records it after each batch's bytes are
// synced); the finished store appears at once (prefixes.json is written last, atomically), and a
// store already built by the same encoder, LLM and dtype is kept as it is. One writer per index
// folder (core/folder_lock.h). Progress with ETA on stderr.
#pragma once

#include <cstdint>
#include <string>

#include "prefix/prefix_store.h"

namespace kvrag {

struct PrefixStoreBuildOptions {
  std::string index_dir;              // with segments.sqlite
  std::string llm_dir;                // the LLM the encoder was trained for (its tokenizer)
  std::string knowledge_encoder_dir;  // the encoder
  std::string dtype = "fp16";         // fp16 | fp32 | int8
  int64_t batch = 16;                 // segments per encoder call
  bool progress = true;
};

struct PrefixStoreBuildResult {
  PrefixStoreHeader header;
  int64_t bytes = 0;           // of prefixes.bin
  int64_t resumed_from = 0;    // segments already done by an interrupted run
  bool already_built = false;  // a matching store was there: nothing done
  double seconds = 0;
};

PrefixStoreBuildResult build_prefix_store(const PrefixStoreBuildOptions& options);

}  // namespace kvrag
