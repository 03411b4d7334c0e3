// Options shared by the commands that retrieve (search, eval-retrieval): the index folder and
// how to search it (index/index_retriever.h).
#pragma once

#include <CLI/CLI.hpp>

#include <string>

#include "index/index_retriever.h"

namespace kvrag::cli {

struct RetrieverOptions {
  std::string index;
  RetrieverSpec spec;

  // Registers --index (required), --mode, --encoder, --dtype, --nprobe, --ef-search, --rerank.
  void add_to(CLI::App* cmd);
};

}  // namespace kvrag::cli
