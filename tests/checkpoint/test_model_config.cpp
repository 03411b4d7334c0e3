// config.json parsing: defaults, variants HF configs use, every rejected field, round trips.
#include "checkpoint/model_config.h"

#include <gtest/gtest.h>

#include <filesystem>

#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "support/checkpoint_test_util.h"
#include "support/test_support.h"

using kvrag::BertConfig;
using kvrag::LlamaConfig;
using nlohmann::json;

namespace {

const char* kSource = "/models/x/config.json";

json llama_json() {
  return json::parse(R"({
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
    "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "bfloat16",
    "vocab_size": 320, "hidden_size": 64, "intermediate_size": 172,
    "num_attention_heads": 4, "num_key_value_heads": 2, "num_hidden_layers": 2,
    "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "max_position_embeddings": 128,
    "tie_word_embeddings": false
  })");
}

json bert_json() {
  return json::parse(R"({
    "architectures": ["BertModel"], "model_type": "bert", "hidden_act": "gelu",
    "position_embedding_type": "absolute", "pad_token_id": 0, "torch_dtype": "float32",
    "vocab_size": 200, "hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2,
    "intermediate_size": 128, "max_position_embeddings": 64, "type_vocab_size": 2,
    "layer_norm_eps": 1e-12
  })");
}

// Expects from_json on `j` with `key` set to `value` (or erased, if value is discarded) to fail
// naming the source, the field, and `problem`.
template <typename Config>
void expect_field_error(json j, const std::string& key, const json& value,
                        const std::string& problem) {
  SCOPED_TRACE(key + " = " + (value.is_discarded() ? "<absent>" : value.dump()));
  if (value.is_discarded())
    j.erase(key);
  else
    j[key] = value;
  EXPECT_KVRAG_ERROR(Config::from_json(j, kSource), std::string("config ") + kSource, key + ":",
                     problem);
}

const json kAbsent = json(json::value_t::discarded);

}  // namespace

// --- LLaMA -------------------------------------------------------------------------------------

TEST(LlamaConfig, ParsesFixtureStyleConfig) {
  LlamaConfig c = LlamaConfig::from_json(llama_json(), kSource);
  EXPECT_EQ(c.vocab_size, 320);
  EXPECT_EQ(c.hidden_size, 64);
  EXPECT_EQ(c.intermediate_size, 172);
  EXPECT_EQ(c.num_attention_heads, 4);
  EXPECT_EQ(c.num_key_value_heads, 2);
  EXPECT_EQ(c.num_hidden_layers, 2);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_EQ(c.max_position_embeddings, 128);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-5);
  EXPECT_DOUBLE_EQ(c.rope_theta, 10000.0);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.bos_token_id, 1);
  EXPECT_EQ(c.eos_token_ids, std::vector<int64_t>{2});
}

TEST(LlamaConfig, Defaults) {
  json j = json::parse(R"({"vocab_size": 32, "hidden_size": 8, "intermediate_size": 16,
                           "num_attention_heads": 2, "num_hidden_layers": 1})");
  LlamaConfig c = LlamaConfig::from_json(j, kSource);
  EXPECT_EQ(c.num_key_value_heads, 2);
  EXPECT_EQ(c.head_dim, 4);
  EXPECT_EQ(c.max_position_embeddings, 2048);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-6);
  EXPECT_DOUBLE_EQ(c.rope_theta, 10000.0);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.bos_token_id, 1);
  EXPECT_EQ(c.eos_token_ids, std::vector<int64_t>{2});

  // null is the same as absent for ordinary fields.
  j["num_key_value_heads"] = nullptr;
  j["rope_scaling"] = nullptr;
  j["hidden_act"] = nullptr;
  j["head_dim"] = nullptr;
  EXPECT_EQ(LlamaConfig::from_json(j, kSource).num_key_value_heads, 2);
}

TEST(LlamaConfig, TokenIdVariants) {
  json j = llama_json();
  j["eos_token_id"] = {2, 5, 7};
  EXPECT_EQ(LlamaConfig::from_json(j, kSource).eos_token_ids, (std::vector<int64_t>{2, 5, 7}));
  j["eos_token_id"] = nullptr;
  EXPECT_TRUE(LlamaConfig::from_json(j, kSource).eos_token_ids.empty());
  j["bos_token_id"] = nullptr;
  EXPECT_EQ(LlamaConfig::from_json(j, kSource).bos_token_id, -1);
  j.erase("bos_token_id");
  EXPECT_EQ(LlamaConfig::from_json(j, kSource).bos_token_id, 1);
  j["bos_token_id"] = 0;
  EXPECT_EQ(LlamaConfig::from_json(j, kSource).bos_token_id, 0);
}

TEST(LlamaConfig, HeadDimOverrides) {
  json j = llama_json();
  j["head_dim"] = 32;  // 4 heads × 32 ≠ hidden 64: allowed when explicit
  EXPECT_EQ(LlamaConfig::from_json(j, kSource).head_dim, 32);
  j["hidden_size"] = 66;  // not a multiple of 4 heads, fine with explicit head_dim
  EXPECT_EQ(LlamaConfig::from_json(j, kSource).head_dim, 32);
}

TEST(LlamaConfig, IgnoresTorchDtypeAndUnknownKeys) {
  json j = llama_json();
  j["torch_dtype"] = "float16";
  j["some_future_key"] = {{"x", 1}};
  j["rope_scaling"] = nullptr;
  j["attention_bias"] = false;
  EXPECT_NO_THROW(LlamaConfig::from_json(j, kSource));
}

TEST(LlamaConfig, RejectsBadFields) {
  using C = LlamaConfig;
  json base = llama_json();
  for (const char* key : {"vocab_size", "hidden_size", "intermediate_size", "num_attention_heads",
                          "num_hidden_layers"}) {
    expect_field_error<C>(base, key, kAbsent, "required field is missing");
    expect_field_error<C>(base, key, nullptr, "required field is missing");
    expect_field_error<C>(base, key, 0, "must be positive, got 0");
    expect_field_error<C>(base, key, -3, "must be positive, got -3");
    expect_field_error<C>(base, key, "64", "expected an integer, got \"64\"");
    expect_field_error<C>(base, key, 64.0, "expected an integer");
  }
  expect_field_error<C>(base, "num_key_value_heads", 0, "must be positive");
  expect_field_error<C>(base, "num_key_value_heads", "2", "expected an integer");
  expect_field_error<C>(base, "max_position_embeddings", -1, "must be positive");
  expect_field_error<C>(base, "head_dim", 0, "must be positive");
  expect_field_error<C>(base, "rms_norm_eps", 0, "must be positive");
  expect_field_error<C>(base, "rms_norm_eps", "1e-5", "expected a number");
  expect_field_error<C>(base, "rope_theta", -10000.0, "must be positive");
  expect_field_error<C>(base, "tie_word_embeddings", 1, "expected true or false");
  expect_field_error<C>(base, "tie_word_embeddings", "false", "expected true or false");
  expect_field_error<C>(base, "vocab_size", 18446744073709551615ull, "out of range");
}

TEST(LlamaConfig, RejectsUnsupportedArchitectureVariants) {
  using C = LlamaConfig;
  json base = llama_json();
  expect_field_error<C>(base, "hidden_act", "gelu", "\"gelu\" is not supported");
  expect_field_error<C>(base, "hidden_act", 3, "expected a string");
  expect_field_error<C>(base, "rope_scaling", {{"type", "linear"}, {"factor", 2.0}},
                        "is not supported");
  expect_field_error<C>(base, "model_type", "mistral", "\"mistral\" is not supported");
  expect_field_error<C>(base, "attention_bias", true, "not supported");
  expect_field_error<C>(base, "mlp_bias", true, "not supported");
}

TEST(LlamaConfig, RejectsUnevenHeads) {
  json j = llama_json();
  j["num_key_value_heads"] = 3;
  EXPECT_KVRAG_ERROR(LlamaConfig::from_json(j, kSource), kSource, "num_key_value_heads",
                     "num_attention_heads 4 is not a multiple of num_key_value_heads 3");
  j = llama_json();
  j["hidden_size"] = 66;
  EXPECT_KVRAG_ERROR(LlamaConfig::from_json(j, kSource), kSource, "hidden_size",
                     "hidden_size 66 is not a multiple of num_attention_heads 4");
}

TEST(LlamaConfig, RejectsBadTokenIds) {
  using C = LlamaConfig;
  json base = llama_json();
  expect_field_error<C>(base, "bos_token_id", 320, "token id 320 is outside the vocabulary");
  expect_field_error<C>(base, "bos_token_id", -1, "outside the vocabulary");
  expect_field_error<C>(base, "bos_token_id", "1", "expected an integer");
  expect_field_error<C>(base, "eos_token_id", json::array({2, 999}), "token id 999");
  expect_field_error<C>(base, "eos_token_id", json::array({2, "x"}), "expected an integer");
  expect_field_error<C>(base, "eos_token_id", 2.5, "expected an integer");
}

TEST(LlamaConfig, ToJsonRoundTrips) {
  for (json j : {llama_json(), json::parse(R"({"vocab_size": 32, "hidden_size": 8,
                  "intermediate_size": 16, "num_attention_heads": 2, "num_hidden_layers": 1,
                  "head_dim": 16, "bos_token_id": null, "eos_token_id": [3, 4],
                  "tie_word_embeddings": true, "rms_norm_eps": 1.2345678901234567e-7,
                  "rope_theta": 500000.0})"),
                 json::parse(R"({"vocab_size": 32, "hidden_size": 8, "intermediate_size": 16,
                  "num_attention_heads": 2, "num_hidden_layers": 1, "eos_token_id": null})")}) {
    LlamaConfig a = LlamaConfig::from_json(j, kSource);
    json out = a.to_json();
    LlamaConfig b = LlamaConfig::from_json(out, "round trip");
    EXPECT_EQ(b.to_json(), out);
    // And through text, as a config.json file would go.
    LlamaConfig c = LlamaConfig::from_json(json::parse(out.dump()), "text");
    EXPECT_EQ(c.to_json(), out);
    EXPECT_EQ(c.rms_norm_eps, a.rms_norm_eps);
    EXPECT_EQ(c.eos_token_ids, a.eos_token_ids);
    EXPECT_EQ(c.bos_token_id, a.bos_token_id);
    EXPECT_EQ(c.head_dim, a.head_dim);
    EXPECT_EQ(out["model_type"], "llama");
  }
}

// --- BERT --------------------------------------------------------------------------------------

TEST(BertConfig, ParsesFixtureStyleConfig) {
  BertConfig c = BertConfig::from_json(bert_json(), kSource);
  EXPECT_EQ(c.vocab_size, 200);
  EXPECT_EQ(c.hidden_size, 64);
  EXPECT_EQ(c.num_attention_heads, 4);
  EXPECT_EQ(c.num_hidden_layers, 2);
  EXPECT_EQ(c.intermediate_size, 128);
  EXPECT_EQ(c.max_position_embeddings, 64);
  EXPECT_EQ(c.type_vocab_size, 2);
  EXPECT_DOUBLE_EQ(c.layer_norm_eps, 1e-12);
  EXPECT_EQ(c.pad_token_id, 0);
}

TEST(BertConfig, Defaults) {
  json j = json::parse(R"({"vocab_size": 30, "hidden_size": 8, "num_attention_heads": 2,
                           "num_hidden_layers": 1, "intermediate_size": 32})");
  BertConfig c = BertConfig::from_json(j, kSource);
  EXPECT_EQ(c.max_position_embeddings, 512);
  EXPECT_EQ(c.type_vocab_size, 2);
  EXPECT_DOUBLE_EQ(c.layer_norm_eps, 1e-12);
  EXPECT_EQ(c.pad_token_id, 0);
}

TEST(BertConfig, RejectsBadFields) {
  using C = BertConfig;
  json base = bert_json();
  for (const char* key : {"vocab_size", "hidden_size", "num_attention_heads", "num_hidden_layers",
                          "intermediate_size"}) {
    expect_field_error<C>(base, key, kAbsent, "required field is missing");
    expect_field_error<C>(base, key, 0, "must be positive");
    expect_field_error<C>(base, key, "8", "expected an integer");
  }
  expect_field_error<C>(base, "type_vocab_size", 0, "must be positive");
  expect_field_error<C>(base, "max_position_embeddings", -5, "must be positive");
  expect_field_error<C>(base, "layer_norm_eps", -1e-12, "must be positive");
  expect_field_error<C>(base, "pad_token_id", 200, "outside the vocabulary");
  expect_field_error<C>(base, "hidden_act", "gelu_new", "\"gelu_new\" is not supported");
  expect_field_error<C>(base, "hidden_act", "relu", "\"relu\" is not supported");
  expect_field_error<C>(base, "position_embedding_type", "relative_key",
                        "\"relative_key\" is not supported");
  expect_field_error<C>(base, "model_type", "roberta", "\"roberta\" is not supported");

  json j = bert_json();
  j["num_attention_heads"] = 5;
  EXPECT_KVRAG_ERROR(BertConfig::from_json(j, kSource), kSource, "hidden_size",
                     "hidden_size 64 is not a multiple of num_attention_heads 5");
  EXPECT_KVRAG_ERROR(BertConfig::from_json(json::array(), kSource), kSource, "not a JSON object");
}

TEST(BertConfig, ToJsonRoundTrips) {
  BertConfig a = BertConfig::from_json(bert_json(), kSource);
  json out = a.to_json();
  BertConfig b = BertConfig::from_json(json::parse(out.dump()), "round trip");
  EXPECT_EQ(b.to_json(), out);
  EXPECT_EQ(b.layer_norm_eps, a.layer_norm_eps);
  EXPECT_EQ(out["model_type"], "bert");
}

// --- files -------------------------------------------------------------------------------------

TEST(ModelConfigFiles, LoadAndModelType) {
  kvrag::test::TempDir tmp;
  std::string path = tmp / "config.json";
  kvrag::write_file_atomic(path, llama_json().dump());
  EXPECT_EQ(kvrag::read_model_type(tmp.path()), "llama");
  EXPECT_EQ(LlamaConfig::load(path).vocab_size, 320);

  json j = llama_json();
  j["hidden_act"] = "relu";
  kvrag::write_file_atomic(path, j.dump());
  EXPECT_KVRAG_ERROR(LlamaConfig::load(path), path, "hidden_act", "\"relu\"");

  kvrag::write_file_atomic(path, "{\"model_type\": ");
  EXPECT_KVRAG_ERROR(LlamaConfig::load(path), path, "not valid JSON");
  EXPECT_KVRAG_ERROR(BertConfig::load(path), path, "not valid JSON");
  EXPECT_KVRAG_ERROR(kvrag::read_model_type(tmp.path()), path, "not valid JSON");

  kvrag::write_file_atomic(path, R"({"hidden_size": 4})");
  EXPECT_KVRAG_ERROR(kvrag::read_model_type(tmp.path()), path, "model_type",
                     "required field is missing");
  kvrag::write_file_atomic(path, R"({"model_type": 4})");
  EXPECT_KVRAG_ERROR(kvrag::read_model_type(tmp.path()), path, "model_type", "expected a string");

  EXPECT_KVRAG_ERROR(kvrag::read_model_type(tmp / "nowhere"), tmp / "nowhere/config.json",
                     "No such file");
  EXPECT_KVRAG_ERROR(BertConfig::load(tmp / "missing.json"), tmp / "missing.json", "No such file");
}

TEST(ModelConfigFixtures, SharedConfigs) {
  const std::string shared = kvrag::test::shared_dir();
  if (shared.empty()) GTEST_SKIP() << "shared material not found: set KVRAG_SHARED";
  struct Case {
    const char* dir;
    const char* type;
  };
  int found = 0;
  for (Case c : {Case{"fixtures/tiny-llama", "llama"}, Case{"fixtures/tiny-bert", "bert"},
                 Case{"models/stories260K", "llama"}}) {
    std::string dir = shared + "/" + c.dir;
    if (!std::filesystem::exists(dir + "/config.json")) continue;
    ++found;
    SCOPED_TRACE(dir);
    EXPECT_EQ(kvrag::read_model_type(dir), c.type);
    if (std::string(c.type) == "llama") {
      LlamaConfig cfg = LlamaConfig::load(dir + "/config.json");
      EXPECT_EQ(cfg.hidden_size % cfg.num_attention_heads, 0);
      EXPECT_EQ(cfg.eos_token_ids, std::vector<int64_t>{2});
      EXPECT_EQ(cfg.bos_token_id, 1);
      EXPECT_EQ(LlamaConfig::from_json(cfg.to_json(), "rt").to_json(), cfg.to_json());
    } else {
      BertConfig cfg = BertConfig::load(dir + "/config.json");
      EXPECT_EQ(cfg.vocab_size, 200);
      EXPECT_EQ(BertConfig::from_json(cfg.to_json(), "rt").to_json(), cfg.to_json());
    }
  }
  if (found == 0) GTEST_SKIP() << "no fixture configs under " << shared;
}
