// The checkpoint config parsers (checkpoint/model_config.h) on arbitrary bytes as config.json.
#include <string>

#include <nlohmann/json.hpp>

#include "checkpoint/model_config.h"
#include "core/error.h"
#include "fuzz_entry.h"

namespace {

// A config that parsed must come back from its own to_json() unchanged.
template <typename Config>
void parse_and_round_trip(const nlohmann::json& j) {
  try {
    const Config c = Config::from_json(j, "fuzz/config.json");
    const nlohmann::json again = c.to_json();
    const Config c2 = Config::from_json(again, "fuzz/config.json (round trip)");
    KVRAG_FUZZ_ASSERT(c2.to_json() == again);
  } catch (const kvrag::Error&) {
  }
}

}  // namespace

KVRAG_FUZZ_TARGET {
  nlohmann::json j;
  try {
    // As parse_config_file() reads a file: a JSON syntax error is reported, not fuzzed further.
    j = nlohmann::json::parse(reinterpret_cast<const char*>(data),
                              reinterpret_cast<const char*>(data) + size);
  } catch (const nlohmann::json::exception&) {
    return 0;
  }
  parse_and_round_trip<kvrag::LlamaConfig>(j);
  parse_and_round_trip<kvrag::BertConfig>(j);
  return 0;
}
