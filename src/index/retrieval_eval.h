// Retrieval evaluation: top-k accuracy in the DPR sense (some answer string, normalised, occurs
// in one of the top k segments) and, where questions name a gold passage, gold-passage recall.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "index/retriever.h"
#include "index/segment_store.h"

namespace kvrag {

struct Question {
  std::string question;
  std::vector<std::string> answers;
  std::string gold_passage_id;  // doc id; empty if none
};

// Reads {"question", "answers"?, "gold_passage_id"?} lines; Error names the file and line.
std::vector<Question> read_questions(const std::string& path);

struct RetrievalReport {
  int64_t n = 0;
  std::map<int, double> answer_in_top;  // k → fraction
  std::map<int, double> gold_in_top;    // k → fraction over questions with a gold id (empty if none)
  int64_t n_with_gold = 0;

  // {"n", "answer_in_top": {"1":…}, "gold_in_top": {…}}
  nlohmann::json to_json() const;
  std::string to_markdown() const;
};

RetrievalReport evaluate_retrieval(Retriever& retriever, const SegmentStore& store,
                                   const std::vector<Question>& questions,
                                   const std::vector<int>& ks = {1, 5, 20, 100}, int batch = 64);

}  // namespace kvrag
