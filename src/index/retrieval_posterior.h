// The retrieval posterior p(z | q): how likely each of a question's retrieved segments is the one
// that answers it, for answering from several segments at once (qa/answerer.h, combine mixture).
//
//   log p(z | q) = dense · (q·d_z) + bm25 · BM25(q, z) − log Σ_z' exp(…)
//
// over the segments retrieved, whichever retriever ranked them. A dense retriever's InfoNCE
// trains q·d for a softmax at temperature 0.05, hence the default (dense 20, bm25 0). Hybrid
// retrieval ranks by reciprocal-rank fusion, which has no probabilities; fitting both weights on
// dev questions (fit_retrieval_posterior, `kvrag eval --calibrate-on`, the demo) gives a
// posterior that agrees with the evidence of both retrievers. Torch-free header.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace kvrag {

// How many candidates per question the posterior is fitted on: the top-k range it serves.
inline constexpr int kPosteriorFitDepth = 10;

struct RetrievalPosterior {
  double dense = 20.0;  // weight of the dense inner product (1 / temperature)
  double bm25 = 0.0;    // weight of the BM25 score

  // {"dense": a, "bm25": b}
  nlohmann::json to_json() const;
  // Error naming `where` for a field that is missing or not a finite number.
  static RetrievalPosterior from_json(const nlohmann::json& j, const std::string& where);
};

// log p(z | q) of k segments from their scores; `dense` or `bm25` may be null (that score
// absent: its term is 0). Uniform where both are.
std::vector<float> log_posterior(const RetrievalPosterior& posterior, const float* dense,
                                 const float* bm25, size_t k);

struct PosteriorFit {
  RetrievalPosterior posterior;
  int64_t n = 0;              // questions whose gold segment was among their candidates
  double log_likelihood = 0;  // mean log p(gold | q) under the fitted posterior
  double gold_at_top = 0;     // fraction of the n where the gold segment has the top posterior

  // {"dense", "bm25", "n", "log_likelihood", "gold_at_top"}
  nlohmann::json to_json() const;
};

// The weights that maximise Σ_q log p(gold_q | q) over questions' candidate segments (a
// conditional logit; Newton's method), with a standard normal prior on each weight in units of
// its score's spread within a question, so that scores that separate the gold perfectly give a
// sharp but finite weight. dense[q][j], bm25[q][j]: the scores of question q's candidate j (an
// empty outer vector: that score absent, its weight 0); gold[q]: the gold candidate's index, −1
// to skip q. Error for ragged or mismatched sizes.
PosteriorFit fit_retrieval_posterior(const std::vector<std::vector<float>>& dense,
                                     const std::vector<std::vector<float>>& bm25,
                                     const std::vector<int>& gold);

}  // namespace kvrag
