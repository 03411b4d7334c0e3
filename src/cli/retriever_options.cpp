#include "cli/retriever_options.h"

namespace kvrag::cli {

void RetrieverOptions::add_to(CLI::App* cmd) {
  cmd->add_option("--index", index, "index folder (segments.sqlite, embeddings/, dense.faiss)")->required();
  cmd->add_option("--mode", mode, "dense, bm25, or hybrid (reciprocal-rank fusion of both)")
      ->check(CLI::IsMember({"dense", "bm25", "hybrid"}));
  cmd->add_option("--encoder", encoder, "question encoder folder (default: the one that embedded the segments)");
  cmd->add_option("--dtype", dtype, "encoder compute dtype")->check(CLI::IsMember({"fp32", "bf16"}));
  cmd->add_option("--nprobe", nprobe, "IVF lists to visit (default: the index's)");
  cmd->add_option("--ef-search", ef_search, "HNSW search depth (default: the index's)");
  cmd->add_option("--rerank", rerank, "candidates re-ranked with exact vectors (default: the index's; 0 = off)");
}

OpenedRetriever open_retriever(const RetrieverOptions& o) {
  OpenedRetriever r;
  r.store = SegmentStore::open(o.index + "/segments.sqlite");
  if (o.mode != "dense") r.bm25 = std::make_unique<Bm25Retriever>(*r.store);
  if (o.mode != "bm25") {
    EmbedderOptions embedder;
    embedder.dtype = o.dtype;
    SearchParams params;
    params.nprobe = o.nprobe;
    params.ef_search = o.ef_search;
    params.rerank = o.rerank;
    r.dense = DenseRetriever::open(o.index, o.encoder, embedder, params);
  }
  if (o.mode == "hybrid") r.hybrid = std::make_unique<HybridRetriever>(*r.dense, *r.bm25);
  r.retriever = o.mode == "hybrid" ? static_cast<Retriever*>(r.hybrid.get())
                : o.mode == "bm25" ? static_cast<Retriever*>(r.bm25.get())
                                   : static_cast<Retriever*>(r.dense.get());
  return r;
}

}  // namespace kvrag::cli
