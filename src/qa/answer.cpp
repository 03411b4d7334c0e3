// Answer::to_json (qa/answerer.h): the JSON shape of an answer, shared by `kvrag ask --json` and
// the server. Torch-free, so that the server's request handling builds without the models (its
// fuzz harness).
#include <algorithm>
#include <nlohmann/json.hpp>

#include "qa/answerer.h"

namespace kvrag {

nlohmann::json Answer::to_json() const {
  auto ev = nlohmann::json::array();
  for (size_t i = 0; i < evidence.size(); ++i) {
    const auto& e = evidence[i];
    ev.push_back({{"segment_id", e.segment_id},
                  {"doc_id", e.doc_id},
                  {"title", e.title},
                  {"text", e.text},
                  {"score", e.score}});
    if (i < citations.size()) ev.back()["attention"] = citations[i];
  }
  nlohmann::json j = {{"answer", text},
                      {"evidence", ev},
                      {"groundedness",
                       {{"answer_in_evidence", groundedness.answer_in_evidence},
                        {"logprob_with", groundedness.logprob_with},
                        {"logprob_without", groundedness.logprob_without},
                        {"score", groundedness.score()}}},
                      {"answered_by", answered_by},
                      {"timings_ms",
                       {{"retrieve", retrieve_ms},
                        {"encode", encode_ms},
                        {"prefill", prefill_ms},
                        {"decode", decode_ms},
                        {"generate", generate_ms},
                        {"ttft", ttft_ms},
                        {"total", total_ms}}},
                      {"prefill_tokens", prefill_tokens}};
  if (!prefix_source.empty()) j["prefix_source"] = prefix_source;
  if (flagged) j["flagged"] = *flagged;
  if (abstained) {
    j["abstained"] = true;
    j["withheld_answer"] = withheld;
  }
  if (!citations.empty())
    j["cited"] = std::max_element(citations.begin(), citations.end()) - citations.begin();
  return j;
}

}  // namespace kvrag
