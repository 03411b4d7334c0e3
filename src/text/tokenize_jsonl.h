// `kvrag tokenize --jsonl`: {"text": …} lines in, {"ids": […]} lines out, as a stream.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>

#include "text/tokenizer.h"

namespace kvrag {

// Reads {"text": "…"} lines from `in` and writes one {"ids": [1, 2, …]} line to `out` for each,
// flushed as soon as its input line is processed (a pipe sees every answer before the next
// question is read). Blank lines are skipped. A bad line (invalid JSON, no string "text",
// invalid UTF-8) throws Error "INPUT_NAME: line N: problem" after the output of every line
// before it has been written. Returns the number of lines tokenized.
int64_t tokenize_jsonl(const Tokenizer& tokenizer, std::istream& in, std::ostream& out,
                       const std::string& input_name, bool add_special = true);

}  // namespace kvrag
