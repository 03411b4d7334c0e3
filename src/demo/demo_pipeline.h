// `kvrag demo`: the whole pipeline on the embedded world (demo/world.h), from nothing to a
// results table, in one workspace folder.
//
// Stages, each cached (WORKSPACE/stages/NAME.done, written last; a rerun skips finished stages,
// and an interrupted stage resumes where its own code can):
//   world             corpus.jsonl, lm.txt, questions-{train,dev,test,knowledge}.jsonl,
//                     knowledge-passages.jsonl
//   tokenizer         tokenizer.model (SentencePiece BPE on lm.txt and the corpus)
//   llm               llm/: a tiny LLaMA pre-trained on lm.txt (train/lm_trainer.h), frozen
//                     from here on
//   retriever         retriever-vocab.txt, retriever-init/ (a fresh small BERT),
//                     retriever-pretrain/ (Contriever cropping on the corpus), retriever/
//                     (fine-tuned on the train questions)
//   index             index/: segments (SQLite + FTS5), embeddings, Faiss index
//   knowledge         knowledge_encoder/: trained with train-prefix on the world's knowledge set
//                     (questions-knowledge.jsonl over the gold passages of
//                     knowledge-passages.jsonl)
//   question-encoder  question_encoder/: the retriever's question side trained by the LLM's loss
//                     (train-query-encoder on the train questions)
//   prefixes          index/prefixes.*: every segment's prefix (the prefix store)
//   eval              results.json, predictions.jsonl: closed-book, in-context and prefix
//                     answers to the held-out test questions
// The folder names llm/, index/, knowledge_encoder/ are what `kvrag serve --workspace` opens;
// answer_defaults.json (qa/answer_defaults.h: retriever, question encoder, mode and top-k of the
// evaluation) is what `serve`, `ask` and `eval` then answer with unless told otherwise.
//
// The index stage calls the library functions behind `kvrag segment`, `kvrag embed` and
// `kvrag index build` (index/segment_corpus.h, index/embed_job.h, index/index_build.h) with
// those commands' defaults.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace kvrag {

struct DemoOptions {
  std::string workspace = "kvrag-demo";
  uint64_t seed = 1;
  // tiny: a much smaller world, models and step counts (a smoke test of every stage in well
  // under a minute; its numbers mean little).
  bool tiny = false;
  // WorldOptions::train_stereotype: the share of train people born in their community's home
  // city (0: none; the fairness experiments of the README use 0.9).
  double train_stereotype = 0;
  bool progress = true;
  // Where stage banners and the final table go (stdout in the CLI).
  std::function<void(const std::string& line)> print;
};

struct DemoResult {
  std::string results_path;  // WORKSPACE/results.json
  std::string markdown;      // the results table
  double seconds = 0;        // this run, all stages (cached ones cost ~0)
  std::vector<std::string> stages_run, stages_skipped;
};

DemoResult run_demo(const DemoOptions& options);

}  // namespace kvrag
