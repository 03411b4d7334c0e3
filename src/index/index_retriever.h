// Opening an index folder for retrieval: the one place that builds the retriever bundle (segment
// store, BM25, dense, hybrid) for `search`, `eval-retrieval`, `ask`, `eval`, `serve`,
// `train-prefix` and the demo, and turns hits into evidence.
//
//   auto r = open_retriever("idx", {.mode = RetrieverMode::kHybrid});
//   auto evidence = r->search({"who wrote …"}, 5);    // [question][rank] → Evidence
//
// The dense retriever (and so hybrid) needs DIR/embeddings and DIR/dense.faiss; the Faiss index
// is loaded once per IndexRetriever, and one IndexRetriever may serve every mode of the folder
// (serve's /v1/search) beside the Answerer's. Questions are encoded in fp32 unless the spec says
// otherwise: queries are few and short, and fp32 is exact and fast on every CPU (libtorch's bf16
// matmul is a slow scalar loop on CPUs without AVX-512 BF16 / AMX). search() is thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/enum_names.h"
#include "index/dense_index.h"
#include "index/retrieval_eval.h"
#include "index/retrieval_posterior.h"
#include "index/retriever.h"
#include "index/segment_store.h"

namespace kvrag {

class DenseRetriever;

enum class RetrieverMode { kDense, kBm25, kHybrid };
template <>
struct EnumNames<RetrieverMode> {
  static constexpr const char* what = "retriever mode";
  static constexpr EnumName<RetrieverMode> values[] = {{RetrieverMode::kDense, "dense"},
                                                       {RetrieverMode::kBm25, "bm25"},
                                                       {RetrieverMode::kHybrid, "hybrid"}};
};

struct RetrieverSpec {
  RetrieverMode mode = RetrieverMode::kDense;  // search()'s default mode
  // also open every other mode the folder supports (dense where it has embeddings)
  bool all_modes = false;
  std::string encoder;         // question encoder folder; "": the one recorded with the embeddings
  std::string dtype = "fp32";  // question encoder dtype: fp32 | bf16 | int8
  SearchParams params;         // Faiss search parameters; defaults: the index's
};

// A segment as evidence for an answer.
struct Evidence {
  int64_t segment_id = 0;
  std::string doc_id, title, text;
  double score = 0;
};

class IndexRetriever {
 public:
  ~IndexRetriever();

  // Top-k evidence of every question, best first, with `mode` (default: the spec's). Error for
  // a mode this folder was not opened with.
  std::vector<std::vector<Evidence>> search(const std::vector<std::string>& questions, int k);
  std::vector<std::vector<Evidence>> search(const std::vector<std::string>& questions, int k,
                                            RetrieverMode mode);
  // The dense inner product of each question with each of its evidence segments (whichever
  // mode found them): [question][rank]. Error where the folder was opened without dense vectors.
  std::vector<std::vector<float>> dense_scores(const std::vector<std::string>& questions,
                                               const std::vector<std::vector<Evidence>>& evidence);
  bool has_dense() const { return dense_ != nullptr; }
  // Their BM25 scores (SegmentStore::bm25_scores): [question][rank].
  std::vector<std::vector<float>> bm25_scores(const std::vector<std::string>& questions,
                                              const std::vector<std::vector<Evidence>>& evidence);
  // log p(z | q) of each question's evidence (index/retrieval_posterior.h): [question][rank].
  // Reads only the scores with a nonzero weight; the dense term is left out where the folder was
  // opened without dense vectors.
  std::vector<std::vector<float>> log_posterior(const std::vector<std::string>& questions,
                                                const std::vector<std::vector<Evidence>>& evidence,
                                                const RetrievalPosterior& posterior);
  // Fits the posterior's weights on `questions`' top-`depth` segments with the default mode
  // (fit_retrieval_posterior). A question's gold segment is its first from the gold passage
  // (gold_passage_id), else its first that contains an answer; questions without one among
  // their candidates do not count.
  PosteriorFit fit_posterior(const std::vector<Question>& questions, int depth);
  // Retrieval top-k accuracy (index/retrieval_eval.h) with the default mode.
  RetrievalReport evaluate(const std::vector<Question>& questions, const std::vector<int>& ks);

  RetrieverMode mode() const { return mode_; }
  // The modes opened, the default first.
  std::vector<RetrieverMode> modes() const;
  const std::string& dir() const { return dir_; }
  const SegmentStore& store() const { return *store_; }
  // The default mode's retriever (for code that takes a Retriever&); not thread-safe: callers
  // that share this IndexRetriever between threads use search().
  Retriever& retriever() { return *retriever_for(mode_); }

 private:
  friend std::unique_ptr<IndexRetriever> open_retriever(const std::string&, const RetrieverSpec&);
  IndexRetriever() = default;
  Retriever* retriever_for(RetrieverMode mode) const;

  std::string dir_;
  RetrieverMode mode_ = RetrieverMode::kDense;
  std::unique_ptr<SegmentStore> store_;
  std::unique_ptr<Bm25Retriever> bm25_;
  std::unique_ptr<DenseRetriever> dense_;
  std::unique_ptr<HybridRetriever> hybrid_;
  std::mutex mutex_;  // retrievers keep per-call state (query encoder, SQLite statements)
};

// Whether index folder DIR has dense vectors (DIR/embeddings and DIR/dense.faiss): what the dense
// and hybrid modes need beside the segment store, which BM25 reads.
bool has_dense_vectors(const std::string& dir);

// Opens index folder DIR for `spec` (Error naming the folder when it lacks what the mode needs).
std::unique_ptr<IndexRetriever> open_retriever(const std::string& dir,
                                               const RetrieverSpec& spec = {});

// The segments of `hits` from `store`, as evidence (scores kept).
std::vector<Evidence> to_evidence(const SegmentStore& store,
                                  const std::vector<ScoredSegment>& hits);

}  // namespace kvrag
