// Options shared by the commands that retrieve (search, eval-retrieval, later ask/eval/serve),
// and opening the retriever they describe.
#pragma once

#include <CLI/CLI.hpp>

#include <memory>
#include <string>

#include "index/dense_retriever.h"
#include "index/retriever.h"
#include "index/segment_store.h"

namespace kvrag::cli {

struct RetrieverOptions {
  std::string index;
  std::string mode = "dense";  // dense | bm25 | hybrid
  std::string encoder;         // default: the one recorded with the embeddings
  std::string dtype = "bf16";
  int nprobe = 0, ef_search = 0, rerank = -1;

  // Registers --index, --mode, --encoder, --dtype, --nprobe, --ef-search, --rerank on `cmd`.
  void add_to(CLI::App* cmd);
};

// The segment store and the retriever for `options.mode`; `retriever` points into the others.
struct OpenedRetriever {
  std::unique_ptr<SegmentStore> store;
  std::unique_ptr<Bm25Retriever> bm25;
  std::unique_ptr<DenseRetriever> dense;
  std::unique_ptr<HybridRetriever> hybrid;
  Retriever* retriever = nullptr;
};

OpenedRetriever open_retriever(const RetrieverOptions& options);

}  // namespace kvrag::cli
