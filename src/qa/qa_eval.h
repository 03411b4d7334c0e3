// QA evaluation (`kvrag eval`, the demo, the service's self-check): a questions file answered in
// several modes, each prediction scored against the gold answers.
//
// Per question and mode: exact match, token F1 and containment (eval/qa_metrics.h), teacher-
// forced answer-token accuracy of the first gold answer (Answerer::score_answers), BERTScore F1
// (eval/bertscore.h: greedy cosine matching of one layer's token states of a BERT checkpoint,
// no idf, no baseline rescaling; best over the gold answers) when a BERTScore model is given.
// Retrieval: answer-in-top-k (index/retrieval_eval.h) of the Answerer's retriever.
//
// Summary JSON (fractions in [0, 1]):
//   {"<mode>": {"n", "em", "f1", "contained", "token_accuracy", "bertscore_f1" (null without a
//    model), "ttft_ms": {"p50", "p95", "batch", "mean"}: time to first token (retrieve + encode
//    or read the stored prefixes + prefill, Answer::ttft_ms) of each batch of `batch` questions
//    (its slowest), mean: over the questions,
//    "hallucination": {                       (on the answers as generated, abstained or not)
//      "unsupported": {"all", "correct", "wrong"}: share of answers whose normalised text is not
//        in the evidence segments (Groundedness::answer_in_evidence), among all / exactly
//        matching / other answers,
//      "n_correct", "n_wrong",
//      "logprob_gain": {"all", "correct", "wrong"}: mean log-probability gain per answer token
//        with the mode's input over closed-book (Groundedness::gain),
//      "auroc_wrong": {"score", "logprob_gain", "logprob_with", "answer_in_evidence"}: AUROC of
//        the groundedness score (Groundedness::score) and of each signal, low = suspect, at
//        telling wrong answers (not an exact match) from correct ones,
//      "flag": {"thresholds": {mode: T}, "flagged", "precision", "recall"} of Answer::flagged at
//        catching wrong answers (null without thresholds, AnswererOptions::flag_below),
//      "risk_coverage": [{"threshold", "coverage", "em"}]: answering only where the score is at
//        least the threshold, at most 20 points},
//    "abstention": {"threshold", "answered", "coverage", "em_answered"} (with
//      AnswererOptions::abstain_below: the share answered, not "unknown", and their exact match)},
//    …,
//    "most_cited_is_gold": {"correct", "wrong", "n_correct", "n_wrong"} (with citations,
//    AnswererOptions::citations, and gold passage ids: among exactly matching and other answers,
//    how often the segment the answer attended to most comes from the gold passage)}, …,
//    "retrieval": {"answer_in_top": {"1", "5", "20"}} (null without an index)};
//   the fractions are null when n is 0 (an empty questions file with allow_empty).
// Predictions JSONL, one line per question and mode:
//   {"question", "answers", "mode", "prediction", "em", "f1", "contained", "token_accuracy",
//    "answer_logprob", "bertscore_f1", "evidence": [segment ids], "answered_by",
//    "groundedness_score", "logprob_with", "logprob_without", "answer_in_evidence", "flagged"?,
//    "withheld_answer"? (abstained),
//    "attention": [per evidence segment], "cited": index of the most attended (with citations)}
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eval/flag_metrics.h"
#include "index/retrieval_eval.h"
#include "qa/answerer.h"

namespace kvrag {

struct QaEvalOptions {
  std::vector<AnswerMode> modes = {AnswerMode::kNone};
  int top_k = 1;                 // segments per question (context / prefix modes)
  int64_t limit = 0;             // the first N questions only; 0 = all
  int batch = 16;                // questions answered together
  std::string predictions_path;  // per-question JSONL, written atomically; "" = none
  // BERT folder (config.json, safetensors, vocab.txt); "" = no BERTScore
  std::string bertscore_model;
  int bertscore_layer = -1;  // hidden-state layer: 0 = embeddings … L = last; -1 = last
  std::vector<int> retrieval_ks = {1, 5, 20};
  bool progress = true;  // a progress line on stderr
  // No questions (an empty file) gives a report with n = 0 and null metrics instead of an Error.
  bool allow_empty = false;
};

struct QaEvalReport {
  nlohmann::json summary;  // the shape above
  std::string markdown;    // the modes side by side, then retrieval
};

// Throws Error on no questions unless options.allow_empty.
QaEvalReport evaluate_qa(const Answerer& answerer, const std::vector<Question>& questions,
                         const QaEvalOptions& options);
// Reads the questions file (read_questions: {"question", "answers", "gold_passage_id"?} lines;
// an empty file is an Error naming it unless options.allow_empty).
QaEvalReport evaluate_qa(const Answerer& answerer, const std::string& questions_path,
                         const QaEvalOptions& options);

// Calibration on dev: every mode of options.modes that answers by itself (auto: prefix and
// context, the modes its answers come from) answers `questions`; per mode, the threshold of the
// groundedness score (Groundedness::score) whose flag "score < threshold" best catches the wrong
// answers (not an exact match) by F1 (eval/flag_metrics.h calibrate_flag), with its precision
// and recall there. AnswererOptions::flag_below takes the thresholds.
std::map<AnswerMode, FlagStats> calibrate_flags(const Answerer& answerer,
                                                const std::vector<Question>& questions,
                                                const QaEvalOptions& options);

// The markdown table of a summary: one row per metric, one column per mode (in that order).
std::string qa_markdown(const nlohmann::json& summary, const std::vector<std::string>& modes);

}  // namespace kvrag
