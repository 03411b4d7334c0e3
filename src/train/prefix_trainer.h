// Knowledge-encoder training (`kvrag train-prefix`): the encoder turns a question's segment into
// a key/value prefix of a frozen LLaMA and learns from the LLM's cross-entropy on the answer
// alone. Examples, batches, prefixes, the loss and validation's answers all come from the
// prefix pipeline (prefix/prefix_pipeline.h), as answering's do. The LLM gets no gradients and
// no optimizer state.
//
// Segments come from the gold passage (`oracle`: the question's gold_passage_id looked up in a
// passages JSONL, optionally among distractors) or from an index (the top-k of `retriever`, in
// rank order); they are fetched and tokenized once, before training.
//
// The run folder OUT is also the exported knowledge encoder (model/knowledge_encoder.h):
//   OUT/config.json, OUT/model.safetensors, OUT/vocab.txt   the best epoch's encoder (dev EM,
//                          ties broken by the lower dev answer loss; without dev, the last epoch)
//   OUT/train_report.json  per-epoch loss, dev EM and loss, best epoch, examples/s, peak RSS;
//                          per epoch also how much the answers rely on the evidence (dev):
//                          dev_logprob_with / dev_logprob_without (teacher-forced mean
//                          log-probability per answer token with the prefix / closed-book),
//                          dev_logprob_gap (their difference) and dev_argmax_in_evidence (the
//                          share of answer tokens, EOS aside, whose argmax is a segment token)
//   OUT/resume/            the resume point (train/train_state.h), every save_every optimizer
//                          steps and at each epoch's end
// Every file is written atomically; rerunning an interrupted run (kill -9 included) continues
// from the resume point and ends with the same parameters as an uninterrupted run.
//
// Validation (if `dev` is set): the dev questions answered exactly as `kvrag eval` answers them
// (PrefixPipeline::generate, batches of 16 as QaEvalOptions::batch) and scored with its exact
// match (eval/qa_metrics.h); measured before training and after each epoch. With the same
// segments (an index and top-k as eval's, or gold passages) and the same max_new_tokens, dev EM
// is the EM `kvrag eval --mode prefix` reports on those questions. The plateau schedule
// follows it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/knowledge_encoder_config.h"
#include "prefix/fairness_loss.h"
#include "train/lr_schedule.h"

namespace kvrag {

class IndexRetriever;
struct Question;

struct PrefixTrainOptions {
  std::string out;  // run folder and exported encoder (required)
  std::string llm;  // LLaMA folder with its tokenizer.model (frozen)
  // fp32 | bf16 (bf16 matmuls are slow on CPUs without AMX) | int8 (weight-only; gradients flow
  // through it to the prefix, see ops/q8_linear.h)
  std::string llm_dtype = "fp32";
  std::string init;  // BERT / retriever folder: config.json, safetensors, vocab.txt

  std::string train, dev;  // questions JSONL {"question", "answers", "gold_passage_id"?}
  int64_t max_dev = 0;     // validate on the first max_dev dev questions; 0 = all

  // Segment source: oracle (gold passage from `passages`) or an opened index.
  bool oracle = false;
  std::string passages;
  IndexRetriever* retriever = nullptr;  // not owned; index mode (its default mode)
  int top_k = 1;
  // oracle mode: besides its gold passage, each question reads up to this many other training
  // questions' gold passages (add_distractors in the .cpp), so that the encoder learns to answer
  // from the top-k of a retriever at any k up to 1 + distractors; train_report.json's "top_k"
  // is that bound
  int distractors = 0;

  KnowledgeEncoderOptions encoder;  // how a fresh encoder is made (not used when init is one)
  // batches of similar segment lengths (train_state.h: length_grouped_order)
  bool group_by_length = false;
  int max_new_tokens = 24;  // validation generation (as eval's --max-new-tokens)

  // Fairness (train/fairness_objective.h): loss = answer cross-entropy + fairness_weight · term.
  // counterfactual needs --oracle and questions naming a "twin_passage_id" in `passages`;
  // decorrelation needs questions with a "group" of exactly two values.
  double fairness_weight = 0;
  FairnessLoss fairness_loss = FairnessLoss::kCounterfactual;
  // Answer balancing: questions whose answer more training questions share than the
  // balance_answers quantile of that count weigh down to it (answer_balance_weights). 0: off.
  double balance_answers = 0;

  OptimOptions optim;
  int64_t save_every = 200;  // optimizer steps between resume points (0: epoch ends only)
  bool progress = true;      // progress lines on stderr

  int64_t stop_after_steps = 0;  // test hook: > 0 returns after this many steps, as if killed
};

struct PrefixTrainResult {
  double initial_dev_em = -1;      // before training; -1 without dev
  std::vector<double> dev_em;      // after each epoch (empty without dev)
  std::vector<double> dev_loss;    // mean answer-token loss on dev after each epoch
  std::vector<double> epoch_loss;  // mean training loss of each epoch (this run's part of it)
  double best_dev_em = -1;
  int best_epoch = -1;   // 0-based; without dev, the last epoch
  int64_t steps = 0;     // optimizer steps done in all (resumed ones included)
  int64_t examples = 0;  // training examples, and their rate, in this run
  double examples_per_s = 0;
  int64_t peak_rss_bytes = 0;      // VmHWM at the end
  int64_t truncated_segments = 0;  // segments cut to max_segment_tokens
  bool stopped = false;            // stop_after_steps hit
};

// Runs (or resumes) the training described by `options`. Errors name the file, question or flag
// at fault: missing files, an encoder/LLM mismatch, empty answers, over-long inputs.
PrefixTrainResult train_prefix(const PrefixTrainOptions& options);

// The answer a question is trained on: its first one that is not blank; "" if none.
std::string target_answer(const Question& q);

// Peak resident memory of this process (VmHWM of /proc/self/status), bytes; 0 if unknown.
int64_t peak_rss_bytes();

}  // namespace kvrag
