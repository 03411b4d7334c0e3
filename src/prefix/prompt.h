// The text the frozen LLM sees: one format for pre-training the demo LLM, training the
// knowledge encoder, answering and evaluating, so that all of them agree.
//
//   closed-book and prefix:   "Question: {question}\nAnswer:"
//   in-context RAG:           "Context: {title}: {text}\n" (one line per segment, best first)
//                             "Question: {question}\nAnswer:"
//   target:                   " {answer}" followed by EOS
//
// The prompt is tokenized with BOS; the target's ids are answer_token_ids(), then EOS.
#pragma once

#include <string>
#include <vector>

#include "text/tokenizer.h"

namespace kvrag {

struct PromptPassage {
  std::string title;
  std::string text;
};

std::string question_prompt(const std::string& question);
std::string context_prompt(const std::vector<PromptPassage>& passages, const std::string& question);
std::string answer_target(const std::string& answer);  // " " + answer (trimmed)

// The ids of the answer as the LLM meets it after a prompt in running text (no specials, no
// EOS): the ids of "Answer:" + answer_target(answer) past those of "Answer:", with which every
// prompt ends. Tokenizers treat a leading space differently — LLaMA's adds a dummy-prefix "▁"
// and does not fold whitespace, so " Paris" alone would become "▁", "▁Paris"; a tokenizer
// without dummy prefix needs the space — and this keeps training and answering aligned with the
// pre-training text whatever the tokenizer. If joining changes the cue's own ids (a piece
// merging across the boundary), the target is tokenized on its own.
std::vector<TokenId> answer_token_ids(const Tokenizer& tokenizer, const std::string& answer);

}  // namespace kvrag
