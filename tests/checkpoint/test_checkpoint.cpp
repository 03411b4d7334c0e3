// Checkpoint folders: single file, sharded index, every error, and the shared fixtures.
#include "checkpoint/checkpoint.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "checkpoint/model_config.h"
#include "core/atomic_file.h"
#include "support/checkpoint_test_util.h"
#include "support/test_support.h"

using kvrag::Checkpoint;
using kvrag::DType;
using kvrag::test::TempDir;
using kvrag::test::write_bytes;

namespace {

// Writes DIR/FILE holding F32 tensors of the given names and shapes (values 0, 1, 2, …).
void write_shard(const std::string& path,
                 const std::vector<std::pair<std::string, std::vector<int64_t>>>& tensors) {
  static std::vector<float> values(1024);
  for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(i);
  std::vector<kvrag::TensorToWrite> out;
  for (const auto& [name, shape] : tensors) out.push_back({name, DType::F32, shape, values.data()});
  kvrag::write_safetensors(path, out, {{"format", "pt"}});
}

void write_index(const std::string& dir, const nlohmann::json& weight_map) {
  nlohmann::json index = {{"metadata", {{"total_size", 0}}}, {"weight_map", weight_map}};
  kvrag::write_file_atomic(dir + "/model.safetensors.index.json", index.dump(2));
}

// Two shards: a, b in shard 1; c in shard 2.
void write_sharded(const TempDir& tmp) {
  write_shard(tmp / "model-00001-of-00002.safetensors", {{"a", {2, 3}}, {"b", {4}}});
  write_shard(tmp / "model-00002-of-00002.safetensors", {{"c", {5}}});
  write_index(tmp.path(), {{"a", "model-00001-of-00002.safetensors"},
                           {"b", "model-00001-of-00002.safetensors"},
                           {"c", "model-00002-of-00002.safetensors"}});
}

}  // namespace

TEST(Checkpoint, SingleFile) {
  TempDir tmp;
  write_shard(tmp / "model.safetensors", {{"z", {1}}, {"a", {2, 3}}});
  Checkpoint ckpt = Checkpoint::open(tmp.path());
  EXPECT_EQ(ckpt.dir(), tmp.path());
  EXPECT_EQ(ckpt.config_path(), tmp / "config.json");
  EXPECT_EQ(ckpt.names(), (std::vector<std::string>{"a", "z"}));
  EXPECT_TRUE(ckpt.has("a"));
  EXPECT_FALSE(ckpt.has("b"));
  EXPECT_EQ(ckpt.file_of("a"), tmp / "model.safetensors");
  const kvrag::TensorInfo& a = ckpt.expect("a", {2, 3});
  EXPECT_EQ(a.dtype, DType::F32);
  float v;
  std::memcpy(&v, a.data + 5 * sizeof(float), sizeof(v));
  EXPECT_EQ(v, 5.0f);
}

TEST(Checkpoint, TrailingSlashAndCopies) {
  TempDir tmp;
  write_shard(tmp / "model.safetensors", {{"a", {2}}});
  Checkpoint copy = [&] {
    Checkpoint ckpt = Checkpoint::open(tmp.path() + "/");
    EXPECT_EQ(ckpt.dir(), tmp.path());
    return ckpt;
  }();
  // The original is gone; the copy still maps the file.
  EXPECT_EQ(copy.tensor("a").nbytes, 8u);
}

TEST(Checkpoint, MissingTensorAndShapeMismatch) {
  TempDir tmp;
  write_shard(tmp / "model.safetensors", {{"a", {2, 3}}});
  Checkpoint ckpt = Checkpoint::open(tmp.path());
  EXPECT_KVRAG_ERROR(ckpt.tensor("nope"), "checkpoint " + tmp.path(), "missing tensor nope",
                     "(file " + (tmp / "model.safetensors") + ")");
  EXPECT_KVRAG_ERROR(ckpt.file_of("nope"), "missing tensor nope");
  EXPECT_KVRAG_ERROR(ckpt.expect("nope", {1}), "missing tensor nope");
  EXPECT_KVRAG_ERROR(ckpt.expect("a", {3, 2}), "checkpoint " + tmp.path(),
                     tmp / "model.safetensors", "tensor a",
                     "shape [2, 3] does not match expected [3, 2]");
  EXPECT_KVRAG_ERROR(ckpt.expect("a", {6}), "shape [2, 3] does not match expected [6]");
}

TEST(Checkpoint, Sharded) {
  TempDir tmp;
  write_sharded(tmp);
  Checkpoint ckpt = Checkpoint::open(tmp.path());
  EXPECT_EQ(ckpt.names(), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(ckpt.file_of("a"), tmp / "model-00001-of-00002.safetensors");
  EXPECT_EQ(ckpt.file_of("c"), tmp / "model-00002-of-00002.safetensors");
  EXPECT_EQ(ckpt.expect("c", {5}).nbytes, 20u);
  EXPECT_KVRAG_ERROR(ckpt.tensor("d"), "missing tensor d",
                     "(file " + (tmp / "model.safetensors.index.json") + ")");
  EXPECT_KVRAG_ERROR(ckpt.expect("b", {5}), tmp / "model-00001-of-00002.safetensors", "tensor b",
                     "shape [4] does not match expected [5]");
}

TEST(Checkpoint, SingleFileWinsOverIndex) {
  TempDir tmp;
  write_sharded(tmp);
  write_shard(tmp / "model.safetensors", {{"only", {1}}});
  Checkpoint ckpt = Checkpoint::open(tmp.path());
  EXPECT_EQ(ckpt.names(), std::vector<std::string>{"only"});
}

TEST(CheckpointErrors, NoWeights) {
  TempDir tmp;
  EXPECT_KVRAG_ERROR(Checkpoint::open(tmp.path()),
                     "no model.safetensors or model.safetensors.index.json in " + tmp.path());
  EXPECT_KVRAG_ERROR(
      Checkpoint::open(tmp / "does-not-exist"),
      "no model.safetensors or model.safetensors.index.json in " + (tmp / "does-not-exist"));
}

TEST(CheckpointErrors, CorruptSingleFile) {
  TempDir tmp;
  write_bytes(tmp / "model.safetensors", "junk");
  EXPECT_KVRAG_ERROR(Checkpoint::open(tmp.path()), "checkpoint " + tmp.path(),
                     tmp / "model.safetensors", "truncated");
}

TEST(CheckpointErrors, BadIndex) {
  TempDir tmp;
  std::string index = tmp / "model.safetensors.index.json";
  write_bytes(index, "{\"weight_map\": {");
  EXPECT_KVRAG_ERROR(Checkpoint::open(tmp.path()), index, "not valid JSON");
  write_bytes(index, R"({"metadata": {}})");
  EXPECT_KVRAG_ERROR(Checkpoint::open(tmp.path()), index, "no \"weight_map\"");
  write_bytes(index, R"({"weight_map": ["a"]})");
  EXPECT_KVRAG_ERROR(Checkpoint::open(tmp.path()), index, "no \"weight_map\"");
  write_bytes(index, R"([1])");
  EXPECT_KVRAG_ERROR(Checkpoint::open(tmp.path()), index, "no \"weight_map\"");
  write_bytes(index, R"({"weight_map": {}})");
  EXPECT_KVRAG_ERROR(Checkpoint::open(tmp.path()), index, "empty");
  write_bytes(index, R"({"weight_map": {"a": 3}})");
  EXPECT_KVRAG_ERROR(Checkpoint::open(tmp.path()), index, "tensor a", "not a string");
}

TEST(CheckpointErrors, PathTraversalInShardName) {
  TempDir tmp;
  write_shard(tmp / "x.safetensors", {{"a", {1}}});
  for (const char* name : {"../x.safetensors", "sub/x.safetensors", "/etc/passwd", "..", ".", "",
                           "a..b.safetensors"}) {
    SCOPED_TRACE(name);
    write_index(tmp.path(), {{"a", name}});
    EXPECT_KVRAG_ERROR(Checkpoint::open(tmp.path()), "model.safetensors.index.json",
                       std::string("shard name \"") + name + "\"", "not a plain file name");
  }
}

TEST(CheckpointErrors, MissingShard) {
  TempDir tmp;
  write_sharded(tmp);
  std::filesystem::remove(tmp / "model-00002-of-00002.safetensors");
  EXPECT_KVRAG_ERROR(Checkpoint::open(tmp.path()), "checkpoint " + tmp.path(),
                     "shard " + (tmp / "model-00002-of-00002.safetensors"), "does not exist");
}

TEST(CheckpointErrors, CorruptShard) {
  TempDir tmp;
  write_sharded(tmp);
  write_bytes(tmp / "model-00002-of-00002.safetensors", kvrag::test::raw_safetensors("{", ""));
  EXPECT_KVRAG_ERROR(Checkpoint::open(tmp.path()), "checkpoint " + tmp.path(),
                     tmp / "model-00002-of-00002.safetensors", "not valid JSON");
}

TEST(CheckpointErrors, TensorMissingFromShard) {
  TempDir tmp;
  write_sharded(tmp);
  write_index(tmp.path(), {{"a", "model-00001-of-00002.safetensors"},
                           {"b", "model-00001-of-00002.safetensors"},
                           {"c", "model-00002-of-00002.safetensors"},
                           {"d", "model-00002-of-00002.safetensors"}});
  EXPECT_KVRAG_ERROR(Checkpoint::open(tmp.path()), "checkpoint " + tmp.path(), "tensor d",
                     "missing from shard " + (tmp / "model-00002-of-00002.safetensors"));
  // Listed under the wrong shard: missing there.
  write_index(tmp.path(), {{"a", "model-00001-of-00002.safetensors"},
                           {"b", "model-00001-of-00002.safetensors"},
                           {"c", "model-00001-of-00002.safetensors"}});
  EXPECT_KVRAG_ERROR(Checkpoint::open(tmp.path()), "tensor c", "missing from shard");
}

TEST(CheckpointErrors, ShardHoldsUnlistedTensor) {
  TempDir tmp;
  write_sharded(tmp);
  write_index(tmp.path(), {{"a", "model-00001-of-00002.safetensors"},
                           {"c", "model-00002-of-00002.safetensors"}});
  EXPECT_KVRAG_ERROR(Checkpoint::open(tmp.path()),
                     "shard " + (tmp / "model-00001-of-00002.safetensors"), "holds tensor b");
}

// --- shared fixtures: tensor names, shapes and dtypes against config.json ------------------------

TEST(CheckpointFixtures, TinyLlamaSharded) {
  KVRAG_SHARED_PATH_OR_SKIP(dir, "fixtures/tiny-llama");
  Checkpoint ckpt = Checkpoint::open(dir);
  auto cfg = kvrag::LlamaConfig::load(ckpt.config_path());
  const int64_t H = cfg.hidden_size, hd = cfg.head_dim;
  // embed, norm, lm_head (untied) + 9 per layer.
  EXPECT_EQ(ckpt.names().size(),
            static_cast<size_t>(2 + (cfg.tie_word_embeddings ? 0 : 1) + 9 * cfg.num_hidden_layers));
  EXPECT_EQ(ckpt.expect("model.embed_tokens.weight", {cfg.vocab_size, H}).dtype, DType::BF16);
  EXPECT_EQ(ckpt.expect("lm_head.weight", {cfg.vocab_size, H}).dtype, DType::BF16);
  ckpt.expect("model.norm.weight", {H});
  for (int64_t l = 0; l < cfg.num_hidden_layers; ++l) {
    std::string p = "model.layers." + std::to_string(l) + ".";
    ckpt.expect(p + "self_attn.q_proj.weight", {cfg.num_attention_heads * hd, H});
    ckpt.expect(p + "self_attn.k_proj.weight", {cfg.num_key_value_heads * hd, H});
    ckpt.expect(p + "self_attn.v_proj.weight", {cfg.num_key_value_heads * hd, H});
    ckpt.expect(p + "self_attn.o_proj.weight", {H, cfg.num_attention_heads * hd});
    ckpt.expect(p + "mlp.gate_proj.weight", {cfg.intermediate_size, H});
    ckpt.expect(p + "mlp.up_proj.weight", {cfg.intermediate_size, H});
    ckpt.expect(p + "mlp.down_proj.weight", {H, cfg.intermediate_size});
    ckpt.expect(p + "input_layernorm.weight", {H});
    ckpt.expect(p + "post_attention_layernorm.weight", {H});
  }
  for (const auto& name : ckpt.names()) EXPECT_EQ(ckpt.tensor(name).dtype, DType::BF16) << name;
  EXPECT_EQ(ckpt.file_of("model.embed_tokens.weight"), dir + "/model-00001-of-00002.safetensors");
  EXPECT_EQ(ckpt.file_of("model.layers.1.mlp.down_proj.weight"),
            dir + "/model-00002-of-00002.safetensors");
}

TEST(CheckpointFixtures, TinyBertSingleFile) {
  KVRAG_SHARED_PATH_OR_SKIP(dir, "fixtures/tiny-bert");
  Checkpoint ckpt = Checkpoint::open(dir);
  auto cfg = kvrag::BertConfig::load(ckpt.config_path());
  const int64_t H = cfg.hidden_size;
  EXPECT_EQ(ckpt.expect("embeddings.word_embeddings.weight", {cfg.vocab_size, H}).dtype,
            DType::F32);
  ckpt.expect("embeddings.position_embeddings.weight", {cfg.max_position_embeddings, H});
  ckpt.expect("embeddings.token_type_embeddings.weight", {cfg.type_vocab_size, H});
  for (int64_t l = 0; l < cfg.num_hidden_layers; ++l) {
    std::string p = "encoder.layer." + std::to_string(l) + ".";
    ckpt.expect(p + "attention.self.query.weight", {H, H});
    ckpt.expect(p + "attention.self.query.bias", {H});
    ckpt.expect(p + "intermediate.dense.weight", {cfg.intermediate_size, H});
    ckpt.expect(p + "output.dense.weight", {H, cfg.intermediate_size});
    ckpt.expect(p + "output.LayerNorm.bias", {H});
  }
  ckpt.expect("pooler.dense.weight", {H, H});
  for (const auto& name : ckpt.names()) EXPECT_EQ(ckpt.tensor(name).dtype, DType::F32) << name;
  EXPECT_EQ(ckpt.file_of("pooler.dense.bias"), dir + "/model.safetensors");
}

TEST(CheckpointFixtures, Stories260K) {
  KVRAG_SHARED_PATH_OR_SKIP(dir, "models/stories260K");
  Checkpoint ckpt = Checkpoint::open(dir);
  auto cfg = kvrag::LlamaConfig::load(ckpt.config_path());
  EXPECT_TRUE(cfg.tie_word_embeddings);
  EXPECT_FALSE(ckpt.has("lm_head.weight"));
  EXPECT_EQ(ckpt.names().size(), static_cast<size_t>(2 + 9 * cfg.num_hidden_layers));
  ckpt.expect("model.embed_tokens.weight", {cfg.vocab_size, cfg.hidden_size});
  ckpt.expect("model.layers.4.self_attn.k_proj.weight",
              {cfg.num_key_value_heads * cfg.head_dim, cfg.hidden_size});
  EXPECT_EQ(ckpt.tensor("model.norm.weight").dtype, DType::F32);
}
