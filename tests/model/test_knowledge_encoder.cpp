#include <gtest/gtest.h>

#include <filesystem>

#include "checkpoint/checkpoint.h"
#include "core/atomic_file.h"
#include "model/knowledge_encoder.h"
#include "support/test_support.h"
#include "support/tiny_models.h"
#include "text/sentencepiece_trainer.h"

namespace kvrag {
namespace {

using test::TempDir;

// A fresh encoder over DIR/bert for the LLaMA of DIR/llm, made as `options` say.
KnowledgeEncoder init_for(const TempDir& dir, const KnowledgeEncoderOptions& options,
                          uint64_t seed) {
  const auto llm = load_llama(dir / "llm");
  return init_knowledge_encoder(dir / "bert", *llm, nullptr, llm_fingerprint(dir / "llm"), options,
                                seed);
}

// Two rows: the second is the first with its last two tokens as padding.
void make_inputs(torch::Tensor* ids, torch::Tensor* mask) {
  *ids = torch::tensor(std::vector<int64_t>{2, 20, 21, 22, 23, 24, 3, 2, 20, 21, 22, 3, 0, 0})
             .view({2, 7});
  *mask = ids->ne(0).to(torch::kInt64);
}

TEST(KnowledgeEncoder, PrefixShapesAndPaddingIsIgnored) {
  KnowledgeEncoder enc(test::tiny_encoder_config(5), torch::kFloat32);
  enc->init_fresh(7);
  torch::NoGradGuard no_grad;
  torch::Tensor ids, mask;
  make_inputs(&ids, &mask);
  const auto prefix = enc->forward(ids, mask);
  const auto llm = test::tiny_llama_config();
  ASSERT_EQ(static_cast<int64_t>(prefix.keys.size()), llm.num_hidden_layers);
  ASSERT_EQ(prefix.values.size(), prefix.keys.size());
  for (size_t l = 0; l < prefix.keys.size(); ++l) {
    EXPECT_EQ(prefix.keys[l].sizes().vec(),
              (std::vector<int64_t>{2, llm.num_key_value_heads, 5, llm.head_dim}));
    EXPECT_EQ(prefix.values[l].sizes().vec(), prefix.keys[l].sizes().vec());
    EXPECT_TRUE(torch::isfinite(prefix.keys[l]).all().item<bool>());
  }
  EXPECT_EQ(prefix.length(), 5);
  check_prefix(prefix, llm, 2);  // fits the LLM

  // Row 1 alone, unpadded, gives the same prefix as row 1 inside the padded batch.
  const auto alone =
      enc->forward(ids[1].narrow(0, 0, 5).unsqueeze(0), mask[1].narrow(0, 0, 5).unsqueeze(0));
  for (size_t l = 0; l < prefix.keys.size(); ++l) {
    EXPECT_TRUE(torch::allclose(alone.keys[l][0], prefix.keys[l][1], 1e-5, 1e-6)) << "layer " << l;
    EXPECT_TRUE(torch::allclose(alone.values[l][0], prefix.values[l][1], 1e-5, 1e-6))
        << "layer " << l;
  }
  // Different segments give different prefixes.
  EXPECT_FALSE(torch::allclose(prefix.values[0][0], prefix.values[0][1]));
}

TEST(KnowledgeEncoder, InitialPrefixIsSmall) {
  KnowledgeEncoder enc(test::tiny_encoder_config(), torch::kFloat32);
  enc->init_fresh(1, 0.002);
  torch::NoGradGuard no_grad;
  torch::Tensor ids, mask;
  make_inputs(&ids, &mask);
  const auto prefix = enc->forward(ids, mask);
  // LayerNorm output is O(1) per feature; heads of std 0.002 over 32 features → |v| ≈ 0.01.
  EXPECT_LT(prefix.values[0].abs().max().item<double>(), 0.1);
  EXPECT_GT(prefix.values[0].abs().max().item<double>(), 0.0);
}

TEST(KnowledgeEncoder, ParameterNames) {
  KnowledgeEncoder enc(test::tiny_encoder_config(), torch::kFloat32);
  const auto params = enc->named_parameters();
  for (const char* name :
       {"encoder.embeddings.word_embeddings.weight",
        "encoder.encoder.layer.0.attention.self.query.weight", "queries",
        "cross_attention.query.weight", "cross_attention.output.bias", "norm.weight",
        "prefix_heads.0.key.weight", "prefix_heads.1.value.bias"}) {
    EXPECT_TRUE(params.contains(name)) << name;
  }
  EXPECT_EQ(params["prefix_heads.1.value.weight"].sizes().vec(), (std::vector<int64_t>{2 * 8, 32}));
}

TEST(KnowledgeEncoder, SaveLoadRoundTrip) {
  TempDir dir;
  test::write_tiny_bert(dir / "bert");
  auto config = test::tiny_encoder_config(3);
  config.llm_fingerprint = "0123456789abcdef";
  KnowledgeEncoder enc(config, torch::kFloat32);
  enc->init_fresh(11);
  save_knowledge_encoder(*enc, dir / "ke", dir / "bert/vocab.txt");
  EXPECT_EQ(read_file(dir / "ke/vocab.txt"), read_file(dir / "bert/vocab.txt"));

  auto loaded = load_knowledge_encoder(dir / "ke");
  EXPECT_EQ(loaded->config().to_json(), config.to_json());
  EXPECT_EQ(loaded->config().llm_fingerprint, "0123456789abcdef");
  const auto a = enc->named_parameters(), b = loaded->named_parameters();
  ASSERT_EQ(a.size(), b.size());
  for (const auto& item : a) EXPECT_TRUE(torch::equal(item.value(), b[item.key()])) << item.key();

  torch::NoGradGuard no_grad;
  torch::Tensor ids, mask;
  make_inputs(&ids, &mask);
  const auto p1 = enc->forward(ids, mask), p2 = loaded->forward(ids, mask);
  for (size_t l = 0; l < p1.keys.size(); ++l) EXPECT_TRUE(torch::equal(p1.keys[l], p2.keys[l]));
}

TEST(KnowledgeEncoder, LoadErrorsNameTheProblem) {
  TempDir dir;
  test::write_tiny_bert(dir / "bert");
  // A BERT folder is not a knowledge encoder.
  EXPECT_NE(test::error_of([&] { load_knowledge_encoder(dir / "bert"); }).find("model_type"),
            std::string::npos);
  EXPECT_NE(test::error_of([&] {
              load_knowledge_encoder(dir / "missing");
            }).find(dir / "missing: no such folder; a knowledge-encoder folder is needed"),
            std::string::npos);
  std::filesystem::create_directories(dir / "empty");
  EXPECT_NE(test::error_of([&] { load_knowledge_encoder(dir / "empty"); }).find("no config.json"),
            std::string::npos);
  auto j = test::tiny_encoder_config().to_json();
  j["llm"].erase("kv_heads");
  EXPECT_NE(test::error_of([&] { KnowledgeEncoderConfig::from_json(j, "X"); }).find("llm.kv_heads"),
            std::string::npos);
  j = test::tiny_encoder_config().to_json();
  j["prefix_length"] = 0;
  EXPECT_NE(
      test::error_of([&] { KnowledgeEncoderConfig::from_json(j, "X"); }).find("prefix_length"),
      std::string::npos);
}

TEST(KnowledgeEncoder, InitFromBertCheckpointCopiesTheEncoder) {
  TempDir dir;
  test::write_tiny_bert(dir / "bert", 5);
  test::write_tiny_llama(dir / "llm");
  KnowledgeEncoderOptions options;
  options.prefix_length = 6;
  auto enc = init_for(dir, options, 1);
  EXPECT_EQ(enc->config().prefix_length, 6);
  EXPECT_EQ(enc->config().llm_layers, 2);
  EXPECT_EQ(enc->config().llm_kv_heads, 2);
  EXPECT_EQ(enc->config().llm_head_dim, 8);
  EXPECT_EQ(enc->config().llm_fingerprint, llm_fingerprint(dir / "llm"));
  auto bert = load_bert(dir / "bert");
  const auto mine = enc->encoder->named_parameters();
  for (const auto& item : bert->named_parameters()) {
    EXPECT_TRUE(torch::equal(item.value(), mine[item.key()])) << item.key();
  }
}

TEST(KnowledgeEncoder, FingerprintIdentifiesTheLlm) {
  TempDir dir;
  test::write_tiny_llama(dir / "a", 3);
  test::write_tiny_llama(dir / "b", 3);
  test::write_tiny_llama(dir / "c", 4);
  const auto fa = llm_fingerprint(dir / "a");
  EXPECT_EQ(fa.size(), 16u);
  EXPECT_EQ(fa.find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_EQ(fa, llm_fingerprint(dir / "b"));  // same model, another folder
  EXPECT_NE(fa, llm_fingerprint(dir / "c"));  // other weights
}

TEST(KnowledgeEncoder, CheckCompatibleNamesWhatDiffers) {
  const auto llm = test::tiny_llama_config();
  auto config = test::tiny_encoder_config();
  config.llm_fingerprint = "aaaaaaaaaaaaaaaa";
  EXPECT_EQ(test::error_of([&] { check_compatible(config, llm, "aaaaaaaaaaaaaaaa", "KE"); }), "");
  EXPECT_EQ(test::error_of([&] { check_compatible(config, llm, "", "KE"); }), "");

  auto c = config;
  c.llm_layers = 3;
  auto e = test::error_of([&] { check_compatible(c, llm, "", "KE"); });
  EXPECT_NE(e.find("layers 3"), std::string::npos) << e;
  EXPECT_NE(e.find("KE"), std::string::npos) << e;
  c = config;
  c.llm_kv_heads = 4;
  e = test::error_of([&] { check_compatible(c, llm, "", "KE"); });
  EXPECT_NE(e.find("kv heads 4"), std::string::npos) << e;
  c = config;
  c.llm_head_dim = 16;
  e = test::error_of([&] { check_compatible(c, llm, "", "KE"); });
  EXPECT_NE(e.find("head dim 16"), std::string::npos) << e;
  e = test::error_of([&] { check_compatible(config, llm, "bbbbbbbbbbbbbbbb", "KE"); });
  EXPECT_NE(e.find("another LLM"), std::string::npos) << e;
  EXPECT_NE(e.find("bbbbbbbbbbbbbbbb"), std::string::npos) << e;
}

TEST(KnowledgeEncoder, TokenReadoutGivesOneEntryPerTokenAndZeroPadding) {
  KnowledgeEncoderOptions options;
  options.readout = Readout::kTokens;
  options.max_segment_tokens = 9;  // P: one entry per token
  auto config = KnowledgeEncoderConfig::for_llm(test::tiny_bert_config(), test::tiny_llama_config(),
                                                "", options);
  KnowledgeEncoder enc(config, torch::kFloat32);
  enc->init_fresh(5, 0.05);
  const auto params = enc->named_parameters();
  EXPECT_FALSE(params.contains("queries"));
  EXPECT_FALSE(params.contains("cross_attention.query.weight"));
  EXPECT_TRUE(params.contains("prefix_heads.1.value.weight"));

  torch::NoGradGuard no_grad;
  torch::Tensor ids, mask;  // T = 7; row 1 has 5 tokens
  make_inputs(&ids, &mask);
  const auto prefix = enc->forward(ids, mask);
  const auto llm = test::tiny_llama_config();
  check_prefix(prefix, llm, 2);
  for (size_t l = 0; l < prefix.keys.size(); ++l) {
    EXPECT_EQ(prefix.keys[l].sizes().vec(),
              (std::vector<int64_t>{2, llm.num_key_value_heads, 9, llm.head_dim}));
    // Entries past a row's tokens are zero keys and values; its tokens' entries are not.
    for (const auto& t : {prefix.keys[l], prefix.values[l]}) {
      EXPECT_EQ(t[0].narrow(1, 7, 2).abs().max().item<float>(), 0.0f) << "layer " << l;
      EXPECT_EQ(t[1].narrow(1, 5, 4).abs().max().item<float>(), 0.0f) << "layer " << l;
      EXPECT_GT(t[1].narrow(1, 0, 5).abs().amax({0, 2}).min().item<float>(), 0.0f) << "layer " << l;
    }
  }
  // Row 1 alone, unpadded, gives exactly its entries in the padded batch: every segment pads to P.
  const auto alone =
      enc->forward(ids[1].narrow(0, 0, 5).unsqueeze(0), mask[1].narrow(0, 0, 5).unsqueeze(0));
  for (size_t l = 0; l < prefix.keys.size(); ++l) {
    EXPECT_TRUE(torch::allclose(alone.keys[l][0], prefix.keys[l][1], 1e-5, 1e-6)) << "layer " << l;
    EXPECT_TRUE(torch::allclose(alone.values[l][0], prefix.values[l][1], 1e-5, 1e-6))
        << "layer " << l;
  }

  // A segment longer than P entries is an error, not a silent cut.
  auto too_long = torch::full({1, 10}, int64_t(20));
  const auto e = test::error_of([&] {
    enc->forward(too_long, torch::ones({1, 10}, torch::kInt64));
  });
  EXPECT_NE(e.find("10 tokens is longer than its 9 prefix entries"), std::string::npos) << e;
}

TEST(KnowledgeEncoder, ReadoutSurvivesSaveLoadAndIsValidated) {
  TempDir dir;
  test::write_tiny_bert(dir / "bert");
  test::write_tiny_llama(dir / "llm");
  KnowledgeEncoderOptions options;
  options.readout = Readout::kTokens;
  options.max_segment_tokens = 12;
  options.head_std = 0.05;
  auto enc = init_for(dir, options, 3);
  save_knowledge_encoder(*enc, dir / "ke", dir / "bert/vocab.txt");
  auto loaded = load_knowledge_encoder(dir / "ke");
  EXPECT_EQ(loaded->config().readout, Readout::kTokens);
  EXPECT_EQ(loaded->config().prefix_length, 12);
  torch::NoGradGuard no_grad;
  torch::Tensor ids, mask;
  make_inputs(&ids, &mask);
  const auto p1 = enc->forward(ids, mask), p2 = loaded->forward(ids, mask);
  for (size_t l = 0; l < p1.keys.size(); ++l) EXPECT_TRUE(torch::equal(p1.values[l], p2.values[l]));

  // Folders written before readouts existed read as "queries"; an unknown readout is refused.
  auto j = nlohmann::json::parse(read_file(dir / "ke/config.json"));
  j.erase("readout");
  EXPECT_EQ(KnowledgeEncoderConfig::from_json(j, "old").readout, Readout::kQueries);
  j["readout"] = "mean";
  const auto e = test::error_of([&] { KnowledgeEncoderConfig::from_json(j, "cfg.json"); });
  EXPECT_NE(e.find("cfg.json: readout"), std::string::npos) << e;
  EXPECT_NE(e.find("readout must be one of queries, tokens, not 'mean'"), std::string::npos) << e;
  const auto bad = test::error_of([&] { parse_enum<Readout>("x"); });
  EXPECT_NE(bad.find("queries, tokens"), std::string::npos) << bad;
}

TEST(KnowledgeEncoder, LlmEmbeddingsForVocabFollowTheSpelling) {
  const std::vector<std::string> vocab = {"[PAD]", "br", "##amby", "zz"};
  const std::vector<std::string> pieces = {"<s>",
                                           "\xe2\x96\x81"
                                           "Br",
                                           "amby",
                                           "\xe2\x96\x81"
                                           "br"};
  const auto rows = torch::arange(12, torch::kFloat32).view({4, 3});  // [V_llm, H]
  std::vector<std::string> spellings;
  for (const auto& piece : pieces) spellings.push_back(wordpiece_spelling(piece));
  EXPECT_EQ(spellings, (std::vector<std::string>{"", "br", "##amby", "br"}));
  const auto table = llm_embeddings_for_vocab(vocab, spellings, rows);
  ASSERT_EQ(table.sizes().vec(), (std::vector<int64_t>{4, 3}));
  const double scale = 1.0 / rows.std().item<double>();
  EXPECT_TRUE(torch::allclose(table[1], (rows[1] + rows[3]) / 2 * scale));  // "br": "▁Br" and "▁br"
  EXPECT_TRUE(torch::allclose(table[2], rows[2] * scale));                  // "##amby": "amby"
  // no piece spells [PAD] or zz
  EXPECT_EQ(table[0].abs().max().item<float>(), 0.0f);
  EXPECT_EQ(table[3].abs().max().item<float>(), 0.0f);
}

TEST(KnowledgeEncoder, LlmEmbeddingsJoinEachTokensEntry) {
  TempDir dir;
  test::write_tiny_bert(dir / "bert");
  auto llm = test::tiny_llama_config();
  // 32: the table adds to the encoder's states
  llm.hidden_size = test::tiny_bert_config().hidden_size;
  std::filesystem::create_directories(dir / "llm");
  write_file_atomic(dir / "llm/config.json", llm.to_json().dump());
  {
    LlamaForCausalLM model(llm, torch::kFloat32);
    init_parameters(*model, 0.1, 2);
    save_parameters(*model, dir / "llm/model.safetensors");
  }
  const int64_t V = test::tiny_bert_config().vocab_size, H = test::tiny_bert_config().hidden_size;
  const auto table = torch::randn({V - 3, H});  // a vocabulary may be shorter than vocab_size
  KnowledgeEncoderOptions options;
  options.readout = Readout::kTokens;
  options.max_segment_tokens = 8;
  const auto config_without =
      KnowledgeEncoderConfig::for_llm(test::tiny_bert_config(), llm, "", options);
  options.llm_embeddings = true;
  const auto config_with =
      KnowledgeEncoderConfig::for_llm(test::tiny_bert_config(), llm, "", options);
  auto with = init_knowledge_encoder(dir / "bert", config_with, 4, 0.05, table);
  auto without = init_knowledge_encoder(dir / "bert", config_without, 4, 0.05);
  EXPECT_TRUE(with->config().llm_embeddings);
  EXPECT_FALSE(without->config().llm_embeddings);
  EXPECT_FALSE(with->llm_embeddings.requires_grad());  // frozen: not trained, not in the optimizer
  EXPECT_TRUE(with->named_parameters().contains("prefix_heads.1.previous_key.weight"));
  EXPECT_FALSE(with->named_parameters().contains("prefix_heads.1.previous_key.bias"));
  EXPECT_FALSE(without->named_parameters().contains("prefix_heads.1.previous_key.weight"));
  EXPECT_TRUE(torch::equal(with->llm_embeddings.narrow(0, 0, V - 3), table));

  torch::NoGradGuard no_grad;
  torch::Tensor ids, mask;
  make_inputs(&ids, &mask);
  const auto a = with->forward(ids, mask), b = without->forward(ids, mask);
  // the tokens' entries
  EXPECT_FALSE(torch::allclose(a.values[0].narrow(2, 0, 5), b.values[0].narrow(2, 0, 5)));
  // padding stays zero
  EXPECT_EQ(a.values[0][1].narrow(1, 5, 3).abs().max().item<float>(), 0.0f);
  EXPECT_EQ(a.keys[0][1].narrow(1, 5, 3).abs().max().item<float>(), 0.0f);

  // A key sees the previous token's LLM embedding: without previous_key, the keys are those of
  // the token's own state alone.
  for (auto& p : with->named_parameters()) {
    if (p.key().find("previous_key") != std::string::npos) p.value().zero_();
  }
  const auto c = with->forward(ids, mask);
  EXPECT_FALSE(torch::allclose(a.keys[0], c.keys[0]));
  EXPECT_TRUE(torch::equal(a.values[0], c.values[0]));  // values do not see it

  save_knowledge_encoder(*with, dir / "ke", dir / "bert/vocab.txt");
  auto loaded = load_knowledge_encoder(dir / "ke");
  EXPECT_TRUE(loaded->config().llm_embeddings);
  EXPECT_TRUE(torch::equal(loaded->llm_embeddings, with->llm_embeddings));
  EXPECT_TRUE(torch::equal(loaded->forward(ids, mask).values[1], a.values[1]));

  // A table of another width, or the embeddings with the queries readout, are refused.
  auto e = test::error_of([&] {
    init_knowledge_encoder(dir / "bert", config_with, 4, 0.05, torch::zeros({V, 7}));
  });
  EXPECT_NE(e.find("hidden size"), std::string::npos) << e;
  auto j = nlohmann::json::parse(read_file(dir / "ke/config.json"));
  j["readout"] = "queries";
  e = test::error_of([&] { KnowledgeEncoderConfig::from_json(j, "cfg.json"); });
  EXPECT_NE(e.find("llm_embeddings needs readout"), std::string::npos) << e;
}

// segment_tokenizer "llm": the table is the LLM's own embeddings (one row per LLM piece, a zero
// row for none), indexed by each entry's LLM piece rather than by its encoder token.
TEST(KnowledgeEncoder, LlmPieceEmbeddingsFollowEachEntrysPiece) {
  TempDir dir;
  test::write_tiny_bert(dir / "bert");
  auto llm_config = test::tiny_llama_config();
  llm_config.hidden_size = test::tiny_bert_config().hidden_size;  // 32, the encoder's
  std::filesystem::create_directories(dir / "llm");
  write_file_atomic(dir / "llm/config.json", llm_config.to_json().dump());
  LlamaForCausalLM llm(llm_config, torch::kFloat32);
  init_parameters(*llm, 0.1, 2);
  save_parameters(*llm, dir / "llm/model.safetensors");
  const int64_t V = llm_config.vocab_size;
  const auto table = llm_embedding_table(llm->model->embed_tokens->weight);  // [V, H]
  EXPECT_NEAR(table.std().item<double>(), 1.0, 1e-4);
  const auto config = KnowledgeEncoderConfig::for_llm(test::tiny_bert_config(), llm_config, "",
                                                      test::piece_encoder_options(8));
  auto ke = init_knowledge_encoder(dir / "bert", config, 4, 0.05, table);
  EXPECT_EQ(ke->config().segment_tokenizer, SegmentTokenizer::kLlm);
  EXPECT_EQ(ke->config().key_position, KeyPosition::kAnswer);
  EXPECT_EQ(ke->config().llm_vocab_size, V);
  ASSERT_EQ(ke->llm_embeddings.sizes().vec(), (std::vector<int64_t>{V + 1, 32}));
  EXPECT_TRUE(torch::equal(ke->llm_embeddings.narrow(0, 0, V), table));
  EXPECT_EQ(ke->llm_embeddings[V].abs().max().item<float>(), 0.0f);

  // The induction init: previous_key = the LLM's query map of the layer (q_proj, RMSNorm weight).
  init_induction_keys(*ke, *llm);
  for (int64_t l = 0; l < 2; ++l) {
    const auto& layer = llm->model->layers->at<LlamaDecoderLayerImpl>(l);
    const auto wq = layer.self_attn->q_proj->weight.view({2, 2, 8, 32}).mean(1).reshape({16, 32}) *
                    layer.input_layernorm->weight.unsqueeze(0);  // 4 query heads over 2 kv heads
    EXPECT_TRUE(torch::allclose(ke->prefix_heads->at<PrefixHeadImpl>(l).previous_key->weight, wq));
  }

  torch::NoGradGuard no_grad;
  torch::Tensor ids, mask;
  make_inputs(&ids, &mask);
  auto llm_ids = torch::tensor(std::vector<int64_t>{-1, 5, 6, 7, 8, 9, -1, -1, 5, 6, 7, -1, -1, -1})
                     .view({2, 7});
  const auto a = ke->forward(ids, mask, llm_ids);
  // Another piece at entry 2 changes that entry's key and value and the key of entry 3 (its
  // previous piece), nothing else: the encoder's tokens are the same.
  auto other = llm_ids.clone();
  other[0][2] = 40;
  const auto b = ke->forward(ids, mask, other);
  for (int64_t l = 0; l < 2; ++l) {
    const auto dv = (a.values[l][0] - b.values[l][0]).abs().amax({0, 2});  // [P]
    const auto dk = (a.keys[l][0] - b.keys[l][0]).abs().amax({0, 2});
    for (int64_t j = 0; j < 8; ++j) {
      EXPECT_EQ(dv[j].item<float>() > 0, j == 2) << "layer " << l << " entry " << j;
      EXPECT_EQ(dk[j].item<float>() > 0, j == 2 || j == 3) << "layer " << l << " entry " << j;
    }
    EXPECT_TRUE(torch::equal(a.values[l][1], b.values[l][1]));
  }
  // Without the entries' pieces the encoder refuses, naming what is missing.
  const auto e = test::error_of([&] { ke->forward(ids, mask); });
  EXPECT_NE(e.find("llm_ids missing"), std::string::npos) << e;

  // The fields survive save/load; bad values and a missing vocabulary size are refused.
  save_knowledge_encoder(*ke, dir / "ke", dir / "bert/vocab.txt");
  auto loaded = load_knowledge_encoder(dir / "ke");
  EXPECT_EQ(loaded->config().segment_tokenizer, SegmentTokenizer::kLlm);
  EXPECT_EQ(loaded->config().key_position, KeyPosition::kAnswer);
  EXPECT_TRUE(torch::equal(loaded->forward(ids, mask, llm_ids).keys[1], a.keys[1]));
  auto j = nlohmann::json::parse(read_file(dir / "ke/config.json"));
  auto bad = j;
  bad["segment_tokenizer"] = "bytes";
  EXPECT_NE(test::error_of([&] {
              KnowledgeEncoderConfig::from_json(bad, "cfg.json");
            }).find("segment_tokenizer"),
            std::string::npos);
  bad = j;
  bad["key_position"] = 3;
  EXPECT_NE(test::error_of([&] {
              KnowledgeEncoderConfig::from_json(bad, "cfg.json");
            }).find("key_position"),
            std::string::npos);
  bad = j;
  bad["llm"].erase("vocab_size");
  EXPECT_NE(test::error_of([&] {
              KnowledgeEncoderConfig::from_json(bad, "cfg.json");
            }).find("llm.vocab_size: missing"),
            std::string::npos);
  // Folders written before these fields read as the encoder's tokenizer, keys unplaced.
  auto old = j;
  old.erase("segment_tokenizer");
  old.erase("key_position");
  old["llm"].erase("vocab_size");
  old["llm_embeddings"] = false;
  const auto c = KnowledgeEncoderConfig::from_json(old, "old.json");
  EXPECT_EQ(c.segment_tokenizer, SegmentTokenizer::kEncoder);
  EXPECT_EQ(c.key_position, KeyPosition::kNone);
}

// Placed keys are RoPE keys: a query at position q against keys placed at k scores as at q + d
// against k + d, and position 0 leaves them as made.
TEST(KnowledgeEncoder, PlacedKeysScoreByRelativePosition) {
  auto llm = test::tiny_llama();
  const auto keys = torch::randn({1, 2, 5, 8});   // [B, kvH, P, hd]
  const auto query = torch::randn({1, 2, 1, 8});  // one query per kv head, position-free
  KVPrefix prefix;
  prefix.keys = {keys, keys};
  prefix.values = {keys * 2, keys * 3};
  const auto at = [&](const torch::Tensor& t, int64_t p) {
    KVPrefix x;
    x.keys = {t};
    x.values = {t};
    return llm->place_prefix(x, {p}).keys[0];
  };
  EXPECT_TRUE(torch::allclose(at(keys, 0), keys));
  // [1, 2, 5]
  const auto score = [&](int64_t q, int64_t k) { return (at(query, q) * at(keys, k)).sum(-1); };
  EXPECT_TRUE(torch::allclose(score(30, 20), score(47, 37), 1e-4, 1e-5));
  EXPECT_FALSE(torch::allclose(score(30, 20), score(31, 20), 1e-4, 1e-5));
  // Per row, values unchanged, and through place_for_answer: at prompt length − 1 (a placed
  // prefix takes no positions: the prompt starts at 0).
  KVPrefix two;
  two.keys = {torch::cat({keys, keys}), torch::cat({keys, keys})};
  two.values = {torch::cat({keys, keys}), torch::cat({keys, keys})};
  auto config = test::tiny_encoder_config(5);
  config.key_position = KeyPosition::kAnswer;
  const auto placed = place_for_answer(config, *llm, two, {3, 9});
  EXPECT_TRUE(placed.placed);
  EXPECT_TRUE(torch::allclose(placed.keys[1][0], at(keys, 3 - 1)[0]));
  EXPECT_TRUE(torch::allclose(placed.keys[1][1], at(keys, 9 - 1)[0]));
  EXPECT_TRUE(torch::equal(placed.values[0], two.values[0]));
  config.key_position = KeyPosition::kNone;
  const auto unplaced = place_for_answer(config, *llm, two, {3, 9});
  EXPECT_FALSE(unplaced.placed);
  EXPECT_TRUE(torch::equal(unplaced.keys[0], two.keys[0]));
}

TEST(KnowledgeEncoder, ConcatPrefixesInRankOrder) {
  KVPrefix a, b;
  for (int l = 0; l < 2; ++l) {
    a.keys.push_back(torch::full({3, 2, 4, 8}, 1.0f));
    a.values.push_back(torch::full({3, 2, 4, 8}, 2.0f));
    b.keys.push_back(torch::full({3, 2, 4, 8}, 3.0f));
    b.values.push_back(torch::full({3, 2, 4, 8}, 4.0f));
  }
  const auto c = concat_prefixes({a, b});
  ASSERT_EQ(c.keys.size(), 2u);
  EXPECT_EQ(c.keys[1].sizes().vec(), (std::vector<int64_t>{3, 2, 8, 8}));
  EXPECT_EQ(c.keys[0][0][0][3][0].item<float>(), 1.0f);
  EXPECT_EQ(c.keys[0][0][0][4][0].item<float>(), 3.0f);
  EXPECT_EQ(c.values[1][2][1][7][7].item<float>(), 4.0f);
  KVPrefix short_one = b;
  short_one.keys.pop_back();
  short_one.values.pop_back();
  EXPECT_NE(test::error_of([&] {
              concat_prefixes({a, short_one});
            }).find("layers"),
            std::string::npos);
}

}  // namespace
}  // namespace kvrag
