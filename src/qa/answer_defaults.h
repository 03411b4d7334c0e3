// What `kvrag ask`, `kvrag eval` and `kvrag serve` (and through /v1/health the web page) answer
// with when not told: the retriever, the answer mode and top-k. They all settle them here, so
// that the commands and the server cannot drift apart. Explicit options always win.
//
// A workspace (the folder `kvrag demo` builds: llm/, index/, knowledge_encoder/) records what
// it was evaluated with in WORKSPACE/answer_defaults.json, written by the demo:
//
//   {"retriever": "hybrid", "mode": "prefix", "top_k": 1, "question_encoder": "question_encoder",
//    "extractive": true, "retrieval_posterior": {"dense": 9.1, "bm25": 0.62},
//    "flag_below": {"prefix": -0.05, "context": 0.4}}
//
// extractive (optional, written by the demo): answer with spans of the evidence
// (AnswererOptions::extractive) unless --no-extractive.
//
// question_encoder (optional, written by the demo): a folder of the workspace holding a question
// encoder trained for its index (kvrag train-query-encoder); dense and hybrid retrieval over the
// workspace's index/ encode questions with it unless --encoder names another. Over another index
// it does not apply (it is paired with the index's passage encoder).
//
// retrieval_posterior (optional, written by the demo and by `kvrag eval --calibrate-on`): the
// weights of the posterior over retrieved segments that --combine mixture weighs segments by
// (AnswererOptions::posterior), fitted on dev questions; --mixture-temperature wins.
//
// flag_below (optional, written by `kvrag eval --calibrate-on DEV.jsonl`): per mode, the
// groundedness score under which an answer is flagged as likely wrong, and under which auto mode
// answers a prefix answer again in context (AnswererOptions::flag_below). Explicit thresholds
// (--auto-threshold) win.
//
// Its record applies where the workspace is named (--workspace) or where every model folder
// given lies directly in one folder that holds the file (--llm WS/llm --index WS/index). A
// recorded value the loaded models cannot serve falls back as if there were no record: a
// retriever that needs dense vectors the index lacks, a mode that needs a knowledge encoder or an
// index not loaded; a recorded top-k is lowered to the largest that fits the LLM. Otherwise:
//
//   retriever  hybrid where the index has BM25 (segments.sqlite) and dense vectors (embeddings/
//              and dense.faiss), bm25 where it has BM25 only, dense where it has dense only
//   mode       the richest the loaded models serve: prefix with a knowledge encoder (and index),
//              context with an index, else none
//   top_k      the largest that fits the LLM in the modes used (Answerer::max_top_k, for a
//              question of kTypicalQuestionTokens tokens), at most kMaxDefaultTopK, and in the
//              prefix modes at most the top-k the knowledge encoder was trained with (its
//              train_report.json): placed prefixes fit any top-k, but an encoder trained on one
//              segment per question answers worse from five (demo: test EM 0.830 at top-1,
//              0.133 at top-5)
//
// Torch-free header.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "qa/answerer.h"

namespace kvrag {

inline constexpr const char* kAnswerDefaultsFile = "answer_defaults.json";
inline constexpr int kMaxDefaultTopK = 5;          // top-k without a record, where more would fit
inline constexpr int kTypicalQuestionTokens = 32;  // the question the default top-k must fit

struct AnswerDefaults {
  RetrieverMode retriever = RetrieverMode::kHybrid;
  AnswerMode mode = AnswerMode::kPrefix;
  int top_k = 1;
  std::map<AnswerMode, double> flag_below;  // calibrated thresholds; empty: none
  // A question encoder trained for the workspace's index (`kvrag train-query-encoder`), as a
  // folder name inside the workspace; "": the index's own encoder.
  std::string question_encoder;
  // Extractive answers (AnswererOptions::extractive), written only where true.
  bool extractive = false;
  // The mixture's retrieval posterior fitted for this workspace (AnswererOptions::posterior).
  std::optional<RetrievalPosterior> posterior{};

  // {"retriever", "mode", "top_k"[, "flag_below"][, "question_encoder"][, "extractive"]
  //  [, "retrieval_posterior"]}
  nlohmann::json to_json() const;
  // Error naming `where` (the file) for a missing or malformed field.
  static AnswerDefaults from_json(const nlohmann::json& j, const std::string& where);
};

// WORKSPACE/answer_defaults.json, written atomically.
void write_answer_defaults(const std::string& workspace, const AnswerDefaults& defaults);
// The record of WORKSPACE; nullopt where it has none; Error naming the file if it is malformed.
std::optional<AnswerDefaults> read_answer_defaults(const std::string& workspace);

// Where the models come from: a workspace's llm/, index/ and knowledge_encoder/, each overridden
// by an explicit folder, and the retriever if chosen.
struct AnswerSources {
  std::string workspace, llm, index, knowledge_encoder;
  std::string retriever;  // "dense", "bm25", "hybrid"; "": the default
  int extractive = -1;    // 1 / 0: --extractive / --no-extractive; -1: the record's, else off
  // --mixture-temperature T: the posterior softmax(q·d / T) whatever the record says; 0: the
  // record's, else AnswererOptions' default
  double mixture_temperature = 0;
};

// What is settled before the models are loaded.
struct AnswerSetup {
  AnswererOptions options;                 // the folders and the retriever mode
  std::string workspace;                   // the workspace whose record applies ("": none)
  std::optional<AnswerDefaults> recorded;  // that record
  bool posterior_given = false;            // --mixture-temperature: not the record's posterior
};

// `options` with the sources' folders and retriever filled in, and the record that applies. An
// Error names a missing workspace, a workspace without llm/, no LLM at all, a malformed record or
// a knowledge encoder without an index.
AnswerSetup resolve_answer_setup(const AnswerSources& sources, AnswererOptions options);

// The retriever for index folder DIR without a record (see above).
RetrieverMode fallback_retriever(const std::string& index_dir);

// With the models loaded (answerer opened with setup.options): the default mode and a top-k that
// fits every mode of `modes` (the modes that will be asked with; empty: the default mode).
AnswerDefaults answer_defaults(const Answerer& answerer, const AnswerSetup& setup,
                               const std::vector<AnswerMode>& modes = {});

// Whether `answerer` can answer in `mode` (none always; context with an index; the prefix modes
// with an index and a knowledge encoder; auto as well with a prefix threshold, flag_below).
bool serves_mode(const Answerer& answerer, AnswerMode mode);

}  // namespace kvrag
