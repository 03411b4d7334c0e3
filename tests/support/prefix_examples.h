// Prefix examples for tests of the prefix pipeline and the trainer (prefix/prefix_batch.h).
#pragma once

#include <cstdint>
#include <vector>

#include "prefix/prefix_batch.h"

namespace kvrag::test {

// Four examples whose answer (two tokens + EOS) is determined by the segment alone: the prompt
// is the same for all, so only the prefix can tell the LLM which answer is due.
inline std::vector<PrefixExample> memorisable_examples() {
  std::vector<PrefixExample> out;
  for (int64_t i = 0; i < 4; ++i) {
    PrefixExample ex;
    ex.prompt = {1, 10, 11, 12, 13};
    ex.target = {20 + 3 * i, 21 + 3 * i, 2};
    ex.segments = {KnowledgeTokens{{2, 40 + i, 41 + i, 30 + 2 * i, 3}, {}, false}};
    out.push_back(ex);
  }
  return out;
}

}  // namespace kvrag::test
