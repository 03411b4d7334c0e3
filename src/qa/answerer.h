// Answering questions: retrieve → (encode the segments into a dynamic prefix) → generate with
// the frozen LLM. One Answerer is shared read-only by the CLI (ask, eval), the web service and
// the demo; answer() is thread-safe. Torch stays behind this header.
//
// Modes:
//   none            closed-book: question prompt only
//   context         in-context RAG: the top-k segments' text in the prompt
//   prefix          dynamic prefix: the top-k segments through the knowledge encoder, prompt
//                   without context
//   context+prefix  both
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace kvrag {

enum class AnswerMode { kNone, kContext, kPrefix, kContextPrefix };
AnswerMode parse_answer_mode(const std::string& name);  // Error listing the modes otherwise
std::string to_string(AnswerMode mode);

struct AnswererOptions {
  std::string llm_dir;                // LLaMA checkpoint folder with its tokenizer (tokenizer.model)
  std::string knowledge_encoder_dir;  // needed for the prefix modes
  std::string index_dir;              // needed for every mode but none
  std::string retriever_mode = "dense";  // dense | bm25 | hybrid
  std::string encoder_dir;            // question encoder (default: the index's)
  std::string dtype = "fp32";         // LLM compute dtype: fp32 | bf16
  int max_new_tokens = 32;
  int max_question_tokens = 256;      // longer questions are an Error
};

struct Evidence {
  int64_t segment_id = 0;
  std::string doc_id, title, text;
  double score = 0;
};

struct Groundedness {
  bool answer_in_evidence = false;   // the normalised answer occurs in an evidence segment
  double logprob_with = 0;           // mean log-probability per answer token, with the evidence (the mode's input)
  double logprob_without = 0;        // the same, closed-book
};

struct Answer {
  std::string text;
  std::vector<Evidence> evidence;  // empty for mode none
  Groundedness groundedness;
  double retrieve_ms = 0, encode_ms = 0, generate_ms = 0, total_ms = 0;
  nlohmann::json to_json() const;  // {"answer", "evidence": [{"segment_id","title","text","score"}], "groundedness", "timings_ms"}
};

class Answerer {
 public:
  static std::unique_ptr<Answerer> open(const AnswererOptions& options);
  ~Answerer();

  // Answers a batch of questions in `mode` with the top_k segments (ignored for none).
  // groundedness: compute the likelihood signal (two extra teacher-forced passes).
  std::vector<Answer> answer(const std::vector<std::string>& questions, AnswerMode mode, int top_k,
                             bool groundedness = true) const;

  // Teacher-forced answer-token accuracy and mean log-probability of `answers` given the
  // questions in `mode` (evaluation); evidence as answer() would retrieve it.
  struct ForcedScore {
    double token_accuracy = 0;  // fraction of answer tokens (EOS included) that are the argmax
    double logprob = 0;         // mean log-probability per answer token
  };
  std::vector<ForcedScore> score_answers(const std::vector<std::string>& questions, const std::vector<std::string>& answers,
                                         AnswerMode mode, int top_k) const;

  const AnswererOptions& options() const;
  bool has_index() const;
  bool has_knowledge_encoder() const;

 private:
  Answerer() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvrag
