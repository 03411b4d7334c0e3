// config.json of the two model families kvrag loads, with validation.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace kvrag {

// The "model_type" field of DIR/config.json ("llama", "bert", …); throws Error naming the file.
std::string read_model_type(const std::string& dir);

// LlamaForCausalLM.
struct LlamaConfig {
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;  // defaults to num_attention_heads
  int64_t num_hidden_layers = 0;
  int64_t max_position_embeddings = 2048;
  int64_t head_dim = 0;  // defaults to hidden_size / num_attention_heads
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  bool tie_word_embeddings = false;
  int64_t bos_token_id = 1;
  std::vector<int64_t> eos_token_ids = {2};  // config may give one id or a list

  // Parses and validates (positive sizes, heads dividing evenly, hidden_act "silu", no
  // unsupported rope_scaling). `source` names the file in errors.
  static LlamaConfig from_json(const nlohmann::json& j, const std::string& source);
  static LlamaConfig load(const std::string& config_path);
  nlohmann::json to_json() const;  // round-trips through from_json
};

// BertModel (and Contriever, which is a BertModel).
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
  nlohmann::json to_json() const;
};

}  // namespace kvrag
