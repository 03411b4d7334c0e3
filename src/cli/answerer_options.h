// Options shared by the commands that answer questions (ask, eval): the workspace or the LLM, the
// index and retriever, the knowledge encoder, generation limits → AnswerSources and
// AnswererOptions, settled by resolve_answer_setup (qa/answer_defaults.h). `serve` takes the
// same defaults and help texts.
#pragma once

#include <CLI/CLI.hpp>

#include <string>

#include "qa/answer_defaults.h"
#include "qa/answerer.h"
#include "qa/qa_eval.h"

namespace kvrag::cli {

// How the help names the defaults that qa/answer_defaults.h settles.
inline const std::string kRetrieverDefault =
    "default: the workspace's, else hybrid where the index has dense vectors, else bm25";
inline const std::string kModeDefault =
    "default: the workspace's, else the richest the models serve: prefix with a knowledge "
    "encoder, context with an index, else none";
inline const std::string kTopKDefault =
    "default: the workspace's, else the largest that fits the LLM, at most " +
    std::to_string(kMaxDefaultTopK);

// Registers --workspace, --llm, --index, --retriever, --knowledge-encoder (into `sources`) and
// --encoder, --dtype, --max-new-tokens, --max-question-tokens (into `options`) on `cmd`.
// Also the threshold options below.
void add_answerer_options(CLI::App* cmd, AnswerSources& sources, AnswererOptions& options);

// --extractive / --no-extractive, --combine and --mixture-temperature (ask, eval, serve).
void add_decoding_options(CLI::App* cmd, AnswerSources& sources, AnswererOptions& options);

// --abstain-below T and --auto-threshold T (AnswererOptions::abstain_below, flag_below[prefix]);
// a T that is not a number is an Error.
void add_threshold_options(CLI::App* cmd, AnswererOptions& options);

// eval --calibrate-on DEV: on the dev questions, fits the retrieval posterior of --combine
// mixture (IndexRetriever::fit_posterior; unless --mixture-temperature was given) and sets each
// of `eval.modes`' flag threshold (and auto's) to the groundedness score that best catches wrong
// answers (qa/qa_eval.h calibrate_flags); says so on stderr and records both in the workspace's
// answer_defaults.json where `setup` has a workspace (`defaults` where none was recorded yet).
void calibrate_on_dev(Answerer& answerer, const AnswerSetup& setup, const AnswerDefaults& defaults,
                      const std::string& dev_questions, const QaEvalOptions& eval);

}  // namespace kvrag::cli
