// Retrieval evaluation: top-k accuracy in the DPR sense (some answer occurs, as a token sequence,
// in the text of one of the top k segments: contains_answer in eval/answer_match.h) and, where
// questions name a gold passage, gold-passage recall
// (one of the top k segments comes from the gold document: segment.doc_id == gold_passage_id).
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "index/retriever.h"
#include "index/segment_store.h"

namespace kvrag {

struct Question {
  std::string question;
  std::vector<std::string> answers;
  std::string gold_passage_id;  // doc id; empty if none
  // Fairness (optional fields; qa/fairness_eval.h): the protected group of the person asked
  // about, the id of the gold passage's counterfactual twin (the same text with the other
  // group), and whether the fact asked for matches the group's stereotype (-1: not said).
  std::string group, twin_passage_id;
  int stereotypical = -1;
};

// Reads {"question", "answers"?, "gold_passage_id"?, "group"?, "twin_passage_id"?,
// "stereotypical"?} lines (nq-oracle format; the id may be a
// number or a string, as in corpus files; blank lines are skipped). Error names the file and
// line: invalid JSON, a missing or empty "question", answers that are not strings. A file
// without questions (empty, or blank lines only) is an Error "questions FILE: no questions (the
// file is empty); pass --allow-empty to accept" unless `allow_empty`.
std::vector<Question> read_questions(const std::string& path, bool allow_empty = false);

struct RetrievalReport {
  int64_t n = 0;
  std::map<int, double> answer_in_top;  // k → fraction of all n questions
  std::map<int, double> gold_in_top;  // k → fraction over questions with a gold id (empty if none)
  int64_t n_with_gold = 0;

  // Exactly {"n": N, "answer_in_top": {"1": a, "5": b, …}, "gold_in_top": {…}} with fractions in
  // [0, 1]; "gold_in_top" only when some question has a gold id.
  nlohmann::json to_json() const;
  // A small table: | k | answer in top-k | gold in top-k |, fractions as percentages.
  std::string to_markdown() const;
};

// Searches every question for max(ks) segments (in batches of `batch` questions) and counts,
// for each k in ks, the questions with a hit in the first k.
RetrievalReport evaluate_retrieval(Retriever& retriever, const SegmentStore& store,
                                   const std::vector<Question>& questions,
                                   const std::vector<int>& ks = {1, 5, 20, 100}, int batch = 64);

}  // namespace kvrag
