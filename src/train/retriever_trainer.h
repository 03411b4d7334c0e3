// Retriever training (`kvrag train-retriever`): a BERT/Contriever encoder trained contrastively
// so that a question's vector has a high inner product with its passage's vector.
//
// Two kinds of training pairs:
//   supervised     (question, gold passage) from a questions JSONL {"question", "gold_passage_id"}
//                  and a passages JSONL {"id", "title", "text"}; with hard_negatives, each
//                  question also brings its best BM25 passage that is not the gold one;
//   pre-training   Contriever's random cropping: two independent random token spans of the same
//                  passage (each crop_min..crop_max of its length) form a positive pair.
// Loss: InfoNCE over in-batch negatives (train/contrastive_loss.h), or VICReg.
//
// Passages are encoded as `kvrag segment` stores them and `kvrag embed` encodes them:
// encoder_input() of text/segmenter.h, "title [SEP] text", so the trained encoder sees at
// training time exactly the kind of input it sees in the index.
//
// The run folder OUT is also the exported encoder (usable by `kvrag embed`, index/embedder.h):
//   OUT/config.json        BertConfig + "kvrag_pooling" (the starting encoder's pooling)
//   OUT/model.safetensors  the passage encoder of the best epoch (dev top-5), fp32
//   OUT/vocab.txt          (or tokenizer.json) copied from the starting encoder
//   OUT/query/             with separate_encoders: the query encoder of the same epoch, same
//   layout;
//                          its config.json names OUT as its passage encoder, so an index
//                          embedded with OUT searches with `--encoder OUT/query`
//   OUT/train_report.json  per-epoch loss and dev top-5, best epoch, examples/s
//   OUT/resume/            the resume point (train/train_state.h), every save_every optimizer
//                          steps and at each epoch's end
//   OUT/init/              the fresh encoder a run from init_config starts from
// Every file is written atomically; a rerun of an interrupted run (kill -9 included) continues
// from the resume point and ends with the same parameters as an uninterrupted run.
//
// Validation (if `dev` is set): dev questions and all passages are encoded with the current
// encoder, the passages ranked by exact inner product (one matmul), and top-5 accuracy is the
// fraction of questions whose gold passage is among the first 5. It is measured before training
// and after each epoch; the plateau schedule follows it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "checkpoint/model_config.h"
#include "train/lr_schedule.h"

namespace kvrag {

struct RetrieverTrainOptions {
  std::string out;  // run folder and exported encoder (required)

  // Starting point: an encoder folder (BERT checkpoint + vocab.txt/tokenizer.json), or a fresh
  // encoder of `init_config` (a BERT config.json) with the WordPiece vocabulary `vocab`.
  std::string init;
  std::string init_config, vocab;
  double init_std = 0.02;  // fresh encoders: N(0, init_std) weights, seeded by optim.seed

  // Supervised pairs.
  std::string questions, passages;
  bool hard_negatives = false;
  // Unsupervised pre-training (instead of `questions`): a corpus JSONL/TSV of passages.
  std::string pretrain_corpus;
  double crop_min = 0.1, crop_max = 0.5;  // crop length as a fraction of the passage's tokens

  std::string dev;  // validation questions (needs `passages`)

  // separate query and passage encoders (both from the start point)
  bool separate_encoders = false;
  std::string loss = "infonce";  // infonce | vicreg
  double temperature = 0.05;     // InfoNCE
  bool normalize = false;        // InfoNCE on cosine similarity instead of inner product
  double vicreg_invariance = 25, vicreg_variance = 25, vicreg_covariance = 1;
  int max_length = 256;  // tokens per text incl. [CLS]/[SEP]; longer ones are truncated

  OptimOptions optim;
  int64_t save_every = 200;  // optimizer steps between resume points (0: epoch ends only)
  bool progress = true;      // progress lines on stderr

  int64_t stop_after_steps = 0;  // test hook: > 0 returns after this many steps, as if killed
};

struct RetrieverTrainResult {
  double initial_dev_top5 = -1;    // before training; -1 without dev
  std::vector<double> dev_top5;    // after each epoch (empty without dev)
  std::vector<double> epoch_loss;  // mean training loss of each epoch
  double best_dev_top5 = -1;
  int best_epoch = -1;        // 0-based; without dev, the last epoch
  int64_t steps = 0;          // optimizer steps done, all runs together
  int64_t examples = 0;       // training examples seen by this run
  double examples_per_s = 0;  // of this run
  bool resumed = false;
  bool finished = false;  // false when stopped by stop_after_steps
};

// Trains as described above. Errors name the file (and line) at fault: a question without
// "gold_passage_id" or with one that is not among the passages, empty files, shapes or options
// that do not fit.
RetrieverTrainResult train_retriever(const RetrieverTrainOptions& options);

// Writes a fresh encoder folder DIR: config.json (`config` + "kvrag_pooling": "mean"),
// model.safetensors (N(0, std) weights from `seed`, no pooler) and vocab.txt (a copy of
// `vocab_path`). Error if the vocabulary has more tokens than config.vocab_size.
void create_encoder(const std::string& dir, const BertConfig& config, const std::string& vocab_path,
                    uint64_t seed, double std = 0.02);

}  // namespace kvrag
