// Answer normalisation of open-domain QA (SQuAD / DPR evaluation): lowercase, strip punctuation
// and the articles a/an/the, collapse whitespace.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace kvrag {

std::string normalize_answer(std::string_view text);

// Whether the normalised answer occurs in the normalised text as a whole-token sequence
// (DPR's has_answer). Empty answers never match.
bool contains_answer(std::string_view text, std::string_view answer);
bool contains_any_answer(std::string_view text, const std::vector<std::string>& answers);

}  // namespace kvrag
