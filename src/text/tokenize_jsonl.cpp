// Streaming JSON-lines tokenization (see tokenize_jsonl.h).
#include "text/tokenize_jsonl.h"

#include <fmt/format.h>

#include <istream>
#include <nlohmann/json.hpp>
#include <ostream>

#include "core/error.h"

namespace kvrag {

int64_t tokenize_jsonl(const Tokenizer& tokenizer, std::istream& in, std::ostream& out,
                       const std::string& input_name, bool add_special) {
  std::string line, ids;
  int64_t done = 0, line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;  // blank line
    const auto bad = [&](const std::string& problem) {
      fail("{}: line {}: {}", input_name, line_no, problem);
    };
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      bad(std::string("invalid JSON: ") + e.what());
    }
    if (!j.is_object() || !j.contains("text") || !j["text"].is_string())
      bad("expected an object with a string \"text\"");
    std::vector<TokenId> tokens;
    try {
      tokens = tokenizer.encode(j["text"].get<std::string>(), add_special);
    } catch (Error& e) {
      throw e.with_context(fmt::format("{}: line {}", input_name, line_no));
    }
    ids.clear();
    for (size_t i = 0; i < tokens.size(); ++i) {
      ids += i == 0 ? "" : ", ";
      ids += std::to_string(tokens[i]);
    }
    out << "{\"ids\": [" << ids << "]}\n" << std::flush;
    if (!out) fail("{}: cannot write the output of line {}", input_name, line_no);
    ++done;
  }
  if (in.bad()) fail("{}: read error after line {}", input_name, line_no);
  return done;
}

}  // namespace kvrag
