// The text the frozen LLM sees: one format for pre-training the demo LLM, training the
// knowledge encoder, answering and evaluating, so that all of them agree.
//
//   closed-book and prefix:   "Question: {question}\nAnswer:"
//   in-context RAG:           "Context: {title}: {text}\n" (one line per segment, best first)
//                             "Question: {question}\nAnswer:"
//   target:                   " {answer}" followed by EOS
//
// The prompt is tokenized with BOS; the target without specials, then EOS appended.
#pragma once

#include <string>
#include <vector>

namespace kvrag {

struct PromptPassage {
  std::string title;
  std::string text;
};

std::string question_prompt(const std::string& question);
std::string context_prompt(const std::vector<PromptPassage>& passages, const std::string& question);
std::string answer_target(const std::string& answer);  // " " + answer (trimmed)

}  // namespace kvrag
