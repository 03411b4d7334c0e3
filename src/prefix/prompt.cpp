#include "prefix/prompt.h"

#include <algorithm>
#include <cstddef>

namespace kvrag {

namespace {

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  const auto e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

// Newlines inside a passage or question would look like new prompt fields.
std::string one_line(const std::string& s) {
  std::string out = trim(s);
  for (char& c : out) {
    if (c == '\n' || c == '\r' || c == '\t') c = ' ';
  }
  return out;
}

}  // namespace

std::string question_prompt(const std::string& question) {
  return "Question: " + one_line(question) + "\nAnswer:";
}

std::string context_prompt(const std::vector<PromptPassage>& passages,
                           const std::string& question) {
  std::string out;
  for (const auto& p : passages) {
    out += "Context: ";
    if (!p.title.empty()) out += one_line(p.title) + ": ";
    out += one_line(p.text) + "\n";
  }
  return out + question_prompt(question);
}

std::string answer_target(const std::string& answer) { return " " + one_line(answer); }

std::vector<TokenId> answer_token_ids(const Tokenizer& tokenizer, const std::string& answer) {
  const std::string cue = "Answer:";  // how question_prompt() ends
  const std::string target = answer_target(answer);
  const auto alone = tokenizer.encode(cue, false);
  const auto joined = tokenizer.encode(cue + target, false);
  if (joined.size() > alone.size() && std::equal(alone.begin(), alone.end(), joined.begin())) {
    return std::vector<TokenId>(joined.begin() + static_cast<std::ptrdiff_t>(alone.size()),
                                joined.end());
  }
  return tokenizer.encode(target, false);
}

}  // namespace kvrag
