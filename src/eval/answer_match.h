// Answer matching of open-domain QA evaluation:
//   - normalize_answer: SQuAD's normalisation, for exact match / F1 of generated answers;
//   - contains_answer: DPR's has_answer, for retrieval top-k accuracy.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace kvrag {

// SQuAD's normalize_answer, Unicode-aware:
//   1. lowercase (Unicode simple case mapping, like Python's str.lower() for all but a few
//      characters such as U+0130);
//   2. delete punctuation: ASCII string.punctuation (which includes symbols like $ + < = > ^ ` |
//      ~) and every Unicode P* character (“ ” – — « » ¿ 、 …), deleted, not replaced by a space:
//      "U.S." → "us", "don't" → "dont";
//   3. replace the whole words a, an, the by a space (Python re's \b(a|an|the)\b);
//   4. split at Unicode whitespace and join with single spaces.
// Invalid UTF-8 throws Error.
std::string normalize_answer(std::string_view text);

// DPR's has_answer (dpr/data/qa_validation.py, SimpleTokenizer): text and answer are put in NFD,
// lowercased and split into tokens — maximal runs of letters, digits and marks (\p{L}\p{N}\p{M}),
// and every other character that is not whitespace or a control character (\p{Z}\p{C}) as a
// token of its own. The answer matches if its tokens occur contiguously in the text's tokens:
// "Brad Johnson" is in "Brad Johnson's pass", "1990" is not in "the 1990s", "U.S." is in "the
// U.S. army" but "US" is not. Answers without tokens never match. Invalid UTF-8 throws Error.
bool contains_answer(std::string_view text, std::string_view answer);
bool contains_any_answer(std::string_view text, const std::vector<std::string>& answers);

// The DPR tokens of `text` (as above) joined by single spaces: "brad johnson ' s pass". Callers
// that check many texts against the same answers tokenize each once and use contains_tokens.
std::string answer_tokens(std::string_view text);
// Whether `answer` (answer_tokens output) occurs in `text` (answer_tokens output) as a
// whole-token sequence. False for an empty answer.
bool contains_tokens(std::string_view text, std::string_view answer);

}  // namespace kvrag
