// A retriever trained by the frozen LLM's loss (`kvrag train-query-encoder`): the question
// encoder of a dense index learns which segments make the LLM write the answer, without ever
// being told which passage is the gold one. REALM's and RAG's objective, marginalising over the
// top-k segments the current encoder retrieves:
//
//   p(z | q)  = softmax_z(q · d_z / temperature)   over the top-k z of q in the index
//   loss(q,y) = −log Σ_z p(z | q) · p_LM(y | q, z)
//
// where p_LM(y | q, z) is the frozen LLM's likelihood of the answer y (its tokens and EOS, teacher
// forced) given the question's prompt and segment z's prefix from a trained knowledge encoder
// (prefix/prefix_pipeline.h, as `kvrag ask --mode prefix` answers). The gradient moves q towards
// the segments whose posterior p(z | q, y) ∝ p(z | q) p_LM(y | q, z) exceeds their prior.
//
// Why the marginal likelihood and not REPLUG's KL(p(z|q) ‖ softmax(log p_LM / β)): both give the
// retriever the gradient "prior minus an LM-derived target" over the same top-k; the marginal
// needs no second temperature β and is what the system's notes cite (REALM), and its value is
// the answer's likelihood under retrieval, a loss a user can read.
//
// What stays frozen, and why:
//   - the LLM and the knowledge encoder: p_LM(y | q, z) is then a constant of (question, segment),
//     computed once the first time a segment enters a question's top-k and cached; an epoch
//     costs LLM forwards only for segments the encoder has newly brought up;
//   - the passage encoder: the index's vectors d_z never go stale, so there is no index to
//     refresh (RAG keeps its document encoder fixed for the same reason; REALM re-embeds its
//     corpus every few hundred steps). The output is a separate query encoder paired with the
//     index's passage encoder (index/embedder.h: "kvrag_passage_encoder"): `ask`, `eval`,
//     `search` and `serve` take it with `--encoder OUT` on the same index.
//
// The run folder OUT is the exported query encoder (config.json, model.safetensors, vocab.txt:
// the best epoch by dev loss; without dev, the last), with OUT/train_report.json (per epoch:
// training loss; dev loss and, where dev questions name gold passages, dev gold-in-top-1 / 5; LLM
// forwards done) and OUT/resume/ (train/train_state.h): a rerun after an interruption continues.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "train/lr_schedule.h"

namespace kvrag {

struct QueryEncoderTrainOptions {
  std::string out;                 // run folder and exported query encoder (required)
  std::string llm;                 // LLaMA folder with tokenizer.model (frozen)
  std::string llm_dtype = "fp32";  // fp32 | bf16 | int8
  std::string knowledge_encoder;   // made for that LLM (frozen)
  std::string index;               // index folder with dense vectors (their encoder: frozen)
  // The query encoder to start from: the index's passage encoder (default) or a query encoder
  // paired with it.
  std::string init;
  std::string train, dev;     // questions JSONL {"question", "answers", "gold_passage_id"?}
  int64_t max_dev = 0;        // validate on the first max_dev dev questions; 0 = all
  int top_k = 8;              // segments marginalised over per question
  double temperature = 0.05;  // of p(z | q) (as train-retriever's InfoNCE)

  OptimOptions optim;
  int64_t save_every = 200;  // optimizer steps between resume points (0: epoch ends only)
  bool progress = true;
  int64_t stop_after_steps = 0;  // test hook: > 0 returns after this many steps, as if killed
};

struct RetrievalAtK {
  double top1 = -1, top5 = -1;  // gold passage among the first 1 / 5 segments; -1: no gold ids

  // {"gold_in_top1", "gold_in_top5"} as train_report.json has it; null without gold ids.
  nlohmann::json to_json() const;
};

struct QueryEncoderTrainResult {
  double initial_dev_loss = -1;  // before training; -1 without dev
  RetrievalAtK initial_dev;
  std::vector<double> epoch_loss;  // mean training loss of each epoch
  std::vector<double> dev_loss;    // after each epoch (empty without dev)
  std::vector<RetrievalAtK> dev;   // after each epoch
  int best_epoch = -1;
  int64_t steps = 0;
  int64_t llm_scores = 0;  // (question, segment) likelihoods computed by the LLM in this run
  bool stopped = false;    // stop_after_steps hit
};

// Trains as described above. Errors name the file or flag: an index without dense vectors, an
// --init encoder the index was not embedded with (nor paired with it), a knowledge encoder made
// for another LLM, questions without answers.
QueryEncoderTrainResult train_query_encoder(const QueryEncoderTrainOptions& options);

}  // namespace kvrag
