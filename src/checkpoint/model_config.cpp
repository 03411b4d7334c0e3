// Parsing and validating config.json for LLaMA and BERT checkpoints.
#include "checkpoint/model_config.h"

#include <limits>
#include <optional>

#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/json_excerpt.h"

namespace kvrag {

using nlohmann::json;

namespace {

// Typed, validated access to the fields of one config object; every error names the source
// file and the field.
class Fields {
 public:
  Fields(const json& j, const std::string& source) : j_(j), source_(source) {
    if (!j_.is_object()) fail("config {}: not a JSON object", source_);
  }

  [[noreturn]] void bad(const std::string& key, const std::string& problem) const {
    fail("config {}: {}: {}", source_, key, problem);
  }

  // The value of `key`, or nullptr if absent or null.
  const json* find(const std::string& key) const {
    auto it = j_.find(key);
    return it == j_.end() || it->is_null() ? nullptr : &*it;
  }
  bool present(const std::string& key) const { return j_.contains(key); }

  int64_t to_int(const std::string& key, const json& v) const {
    if (v.is_number_unsigned()) {
      if (v.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        bad(key, fmt::format("{} is out of range", json_excerpt(v)));
      return static_cast<int64_t>(v.get<uint64_t>());
    }
    if (v.is_number_integer()) return v.get<int64_t>();
    bad(key, fmt::format("expected an integer, got {}", json_excerpt(v)));
  }

  // Required integer > 0.
  int64_t positive(const std::string& key) const {
    const json* v = find(key);
    if (!v) bad(key, "required field is missing");
    return check_positive(key, to_int(key, *v));
  }
  // Optional integer > 0.
  int64_t positive(const std::string& key, int64_t fallback) const {
    const json* v = find(key);
    return v ? check_positive(key, to_int(key, *v)) : fallback;
  }
  int64_t check_positive(const std::string& key, int64_t value) const {
    if (value <= 0) bad(key, fmt::format("must be positive, got {}", value));
    return value;
  }

  // Optional number > 0.
  double positive_number(const std::string& key, double fallback) const {
    const json* v = find(key);
    if (!v) return fallback;
    if (!v->is_number()) bad(key, fmt::format("expected a number, got {}", json_excerpt(*v)));
    double value = v->get<double>();
    if (!(value > 0)) bad(key, fmt::format("must be positive, got {}", value));
    return value;
  }

  bool boolean(const std::string& key, bool fallback) const {
    const json* v = find(key);
    if (!v) return fallback;
    if (!v->is_boolean()) bad(key, fmt::format("expected true or false, got {}", json_excerpt(*v)));
    return v->get<bool>();
  }

  // Optional string that, if given, must equal `expected`.
  void require_string(const std::string& key, const std::string& expected,
                      const std::string& what) const {
    const json* v = find(key);
    if (!v) return;
    if (!v->is_string()) bad(key, fmt::format("expected a string, got {}", json_excerpt(*v)));
    if (v->get<std::string>() != expected)
      bad(key, fmt::format("{} is not supported ({} only)", json_excerpt(*v), what));
  }

  int64_t token_id(const std::string& key, const json& v, int64_t vocab_size) const {
    int64_t id = to_int(key, v);
    if (id < 0 || id >= vocab_size)
      bad(key, fmt::format("token id {} is outside the vocabulary [0, {})", id, vocab_size));
    return id;
  }

 private:
  const json& j_;
  const std::string& source_;
};

json parse_config_file(const std::string& path) {
  std::string text = read_file(path);
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    fail("config {}: not valid JSON: {}", path, e.what());
  }
}

}  // namespace

std::string read_model_type(const std::string& dir) {
  const std::string path = dir + "/config.json";
  json j = parse_config_file(path);
  if (!j.is_object()) fail("config {}: not a JSON object", path);
  auto it = j.find("model_type");
  if (it == j.end()) fail("config {}: model_type: required field is missing", path);
  if (!it->is_string())
    fail("config {}: model_type: expected a string, got {}", path, json_excerpt(*it));
  return it->get<std::string>();
}

// --- LLaMA -------------------------------------------------------------------------------------

LlamaConfig LlamaConfig::from_json(const json& j, const std::string& source) {
  Fields f(j, source);
  f.require_string("model_type", "llama", "\"llama\"");
  f.require_string("hidden_act", "silu", "\"silu\"");
  if (f.find("rope_scaling"))
    f.bad("rope_scaling",
          fmt::format("{} is not supported (only null)", json_excerpt(j.at("rope_scaling"))));
  for (const char* key : {"attention_bias", "mlp_bias"})
    if (f.boolean(key, false)) f.bad(key, "biases are not supported (only false)");

  LlamaConfig c;
  c.vocab_size = f.positive("vocab_size");
  c.hidden_size = f.positive("hidden_size");
  c.intermediate_size = f.positive("intermediate_size");
  c.num_attention_heads = f.positive("num_attention_heads");
  c.num_hidden_layers = f.positive("num_hidden_layers");
  c.num_key_value_heads = f.positive("num_key_value_heads", c.num_attention_heads);
  c.max_position_embeddings = f.positive("max_position_embeddings", c.max_position_embeddings);
  c.rms_norm_eps = f.positive_number("rms_norm_eps", c.rms_norm_eps);
  c.rope_theta = f.positive_number("rope_theta", c.rope_theta);
  c.tie_word_embeddings = f.boolean("tie_word_embeddings", c.tie_word_embeddings);

  if (c.num_attention_heads % c.num_key_value_heads != 0)
    f.bad("num_key_value_heads",
          fmt::format("num_attention_heads {} is not a multiple of num_key_value_heads {}",
                      c.num_attention_heads, c.num_key_value_heads));
  if (f.find("head_dim")) {
    c.head_dim = f.positive("head_dim");
  } else {
    if (c.hidden_size % c.num_attention_heads != 0)
      f.bad("hidden_size", fmt::format("hidden_size {} is not a multiple of num_attention_heads {}",
                                       c.hidden_size, c.num_attention_heads));
    c.head_dim = c.hidden_size / c.num_attention_heads;
  }

  // Token ids: bos absent → 1, null → none; eos one id or a list, absent → {2}, null → none.
  if (f.present("bos_token_id")) {
    const json* v = f.find("bos_token_id");
    c.bos_token_id = v ? f.token_id("bos_token_id", *v, c.vocab_size) : -1;
  }
  if (f.present("eos_token_id")) {
    c.eos_token_ids.clear();
    if (const json* v = f.find("eos_token_id")) {
      if (v->is_array()) {
        for (const json& id : *v)
          c.eos_token_ids.push_back(f.token_id("eos_token_id", id, c.vocab_size));
      } else {
        c.eos_token_ids.push_back(f.token_id("eos_token_id", *v, c.vocab_size));
      }
    }
  }
  // Defaults must fit the vocabulary as well.
  if (c.bos_token_id >= c.vocab_size)
    f.bad("bos_token_id", fmt::format("default token id {} is outside the vocabulary [0, {})",
                                      c.bos_token_id, c.vocab_size));
  for (int64_t id : c.eos_token_ids)
    if (id >= c.vocab_size)
      f.bad("eos_token_id",
            fmt::format("default token id {} is outside the vocabulary [0, {})", id, c.vocab_size));
  return c;
}

LlamaConfig LlamaConfig::load(const std::string& config_path) {
  return from_json(parse_config_file(config_path), config_path);
}

json LlamaConfig::to_json() const {
  json j = {
      {"architectures", json::array({"LlamaForCausalLM"})},
      {"model_type", "llama"},
      {"hidden_act", "silu"},
      {"vocab_size", vocab_size},
      {"hidden_size", hidden_size},
      {"intermediate_size", intermediate_size},
      {"num_attention_heads", num_attention_heads},
      {"num_key_value_heads", num_key_value_heads},
      {"num_hidden_layers", num_hidden_layers},
      {"head_dim", head_dim},
      {"max_position_embeddings", max_position_embeddings},
      {"rms_norm_eps", rms_norm_eps},
      {"rope_theta", rope_theta},
      {"tie_word_embeddings", tie_word_embeddings},
  };
  j["bos_token_id"] = bos_token_id < 0 ? json(nullptr) : json(bos_token_id);
  j["eos_token_id"] = eos_token_ids.size() == 1 ? json(eos_token_ids[0]) : json(eos_token_ids);
  return j;
}

// --- BERT --------------------------------------------------------------------------------------

BertConfig BertConfig::from_json(const json& j, const std::string& source) {
  Fields f(j, source);
  f.require_string("model_type", "bert", "\"bert\"");
  f.require_string("hidden_act", "gelu", "\"gelu\"");
  f.require_string("position_embedding_type", "absolute", "\"absolute\"");

  BertConfig c;
  c.vocab_size = f.positive("vocab_size");
  c.hidden_size = f.positive("hidden_size");
  c.num_attention_heads = f.positive("num_attention_heads");
  c.num_hidden_layers = f.positive("num_hidden_layers");
  c.intermediate_size = f.positive("intermediate_size");
  c.max_position_embeddings = f.positive("max_position_embeddings", c.max_position_embeddings);
  c.type_vocab_size = f.positive("type_vocab_size", c.type_vocab_size);
  c.layer_norm_eps = f.positive_number("layer_norm_eps", c.layer_norm_eps);
  if (const json* v = f.find("pad_token_id"))
    c.pad_token_id = f.token_id("pad_token_id", *v, c.vocab_size);

  if (c.hidden_size % c.num_attention_heads != 0)
    f.bad("hidden_size", fmt::format("hidden_size {} is not a multiple of num_attention_heads {}",
                                     c.hidden_size, c.num_attention_heads));
  return c;
}

BertConfig BertConfig::load(const std::string& config_path) {
  return from_json(parse_config_file(config_path), config_path);
}

json BertConfig::to_json() const {
  return {
      {"architectures", json::array({"BertModel"})},
      {"model_type", "bert"},
      {"hidden_act", "gelu"},
      {"position_embedding_type", "absolute"},
      {"vocab_size", vocab_size},
      {"hidden_size", hidden_size},
      {"num_attention_heads", num_attention_heads},
      {"num_hidden_layers", num_hidden_layers},
      {"intermediate_size", intermediate_size},
      {"max_position_embeddings", max_position_embeddings},
      {"type_vocab_size", type_vocab_size},
      {"layer_norm_eps", layer_norm_eps},
      {"pad_token_id", pad_token_id},
  };
}

}  // namespace kvrag
