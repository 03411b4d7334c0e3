#include "cli/retriever_options.h"

#include "cli/enum_option.h"
#include "cli/number_check.h"
#include "model/model_dtype_names.h"

namespace kvrag::cli {

void RetrieverOptions::add_to(CLI::App* cmd) {
  cmd->add_option("--index", index, "index folder (segments.sqlite, embeddings/, dense.faiss)")
      ->required();
  add_enum_option(cmd, "--mode", spec.mode,
                  "dense, bm25, or hybrid (reciprocal-rank fusion of both)");
  cmd->add_option("--encoder", spec.encoder,
                  "question encoder folder (default: the one that embedded the segments)");
  cmd->add_option("--dtype", spec.dtype,
                  "question encoder dtype: fp32, bf16, or int8 (weight-only)")
      ->check(CLI::IsMember(kModelDtypeNames))
      ->capture_default_str();
  cmd->add_option("--nprobe", spec.params.nprobe, "IVF lists to visit (default: the index's)")
      ->check(kNonNegative);
  cmd->add_option("--ef-search", spec.params.ef_search, "HNSW search depth (default: the index's)")
      ->check(kNonNegative);
  cmd->add_option("--rerank", spec.params.rerank,
                  "candidates re-ranked with exact vectors (default: the index's; 0 = off)")
      ->check(kNonNegative);
}

}  // namespace kvrag::cli
