// config.json of the two model families kvrag loads, with validation.
//
// Rules shared by both parsers:
//  - Errors are kvrag::Error "config SOURCE: FIELD: problem", naming the file and the field.
//  - Integer fields must be JSON integers (64.0 and "64" are errors);
//    float fields accept any JSON number; booleans must be true/false.
//  - A field that is absent or null takes its default (except bos/eos ids, see below); required
//    fields (no default below) must be present and non-null.
//  - Sizes must be positive; token ids must lie in [0, vocab_size).
//  - "model_type", if present, must be "llama" / "bert"; "torch_dtype" and unknown keys are
//    ignored.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace kvrag {

// The "model_type" field of DIR/config.json ("llama", "bert", …); throws Error naming the file.
std::string read_model_type(const std::string& dir);

// LlamaForCausalLM. Required: vocab_size, hidden_size, intermediate_size, num_attention_heads,
// num_hidden_layers. Rejected as unsupported: hidden_act other than "silu", a non-null
// rope_scaling, attention_bias / mlp_bias true. num_attention_heads must be a multiple of
// num_key_value_heads; without "head_dim", hidden_size must be a multiple of
// num_attention_heads ("head_dim", if given, overrides hidden_size / num_attention_heads).
struct LlamaConfig {
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;  // defaults to num_attention_heads; set by from_json
  int64_t num_hidden_layers = 0;
  int64_t max_position_embeddings = 2048;
  int64_t head_dim = 0;  // defaults to hidden_size / num_attention_heads; set by from_json
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  bool tie_word_embeddings = false;
  int64_t bos_token_id = 1;                  // absent → 1; null → -1 (no BOS)
  std::vector<int64_t> eos_token_ids = {2};  // one id or a list; absent → {2}; null → {}

  // Parses and validates (positive sizes, heads dividing evenly, hidden_act "silu", no
  // unsupported rope_scaling). `source` names the file in errors.
  static LlamaConfig from_json(const nlohmann::json& j, const std::string& source);
  static LlamaConfig load(const std::string& config_path);
  nlohmann::json to_json() const;  // round-trips through from_json
};

// BertModel (and Contriever, which is a BertModel). Required: vocab_size, hidden_size,
// num_attention_heads, num_hidden_layers, intermediate_size. hidden_act must be exactly "gelu"
// ("gelu_new" etc. are errors), position_embedding_type "absolute"; hidden_size must be a
// multiple of num_attention_heads.
struct BertConfig {
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t num_attention_heads = 0;
  int64_t num_hidden_layers = 0;
  int64_t intermediate_size = 0;
  int64_t max_position_embeddings = 512;
  int64_t type_vocab_size = 2;
  double layer_norm_eps = 1e-12;
  int64_t pad_token_id = 0;

  // Validates like LlamaConfig (hidden_act "gelu", absolute position embeddings).
  static BertConfig from_json(const nlohmann::json& j, const std::string& source);
  static BertConfig load(const std::string& config_path);
  nlohmann::json to_json() const;  // round-trips through from_json
};

}  // namespace kvrag
