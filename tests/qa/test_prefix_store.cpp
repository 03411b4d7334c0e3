// The prefix store (prefix/prefix_store.h, qa/prefix_store_build.h): built from an index folder
// and a knowledge encoder, read by the Answerer instead of encoding, resumed after an interruption,
// refused where it is not the encoder's, with clear errors for damaged files. Tiny models:
// stories260K as the LLM, the synthetic corpus of tests/retrieval, BM25 retrieval.

#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/error.h"
#include "model/knowledge_encoder.h"
#include "model/llama.h"
#include "prefix/prefix_cache.h"
#include "prefix/prefix_store.h"
#include "qa/answerer.h"
#include "qa/prefix_store_build.h"
#include "support/cli_runner.h"
#include "support/retrieval_fixture.h"
#include "support/test_support.h"
#include "support/tiny_models.h"

namespace kvrag {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using test::contains;
using test::run_kvrag;

class PrefixStoreTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string shared = test::shared_dir();
    if (shared.empty() || !fs::exists(shared + "/models/stories260K/tokenizer.model")) return;
    llm_ = new std::string(shared + "/models/stories260K");
    root_ = new test::TempDir();
    test::write_tiny_encoder(*root_ / "encoder", 1);
    test::write_corpus(*root_ / "corpus.jsonl", 12, 40);
    auto r = run_kvrag("segment --corpus " + (*root_ / "corpus.jsonl") + " --tokenizer " +
                       (*root_ / "encoder") + "/vocab.txt --index " + (*root_ / "index") +
                       " --window 48 --stride 8");
    ASSERT_EQ(r.exit_code, 0) << r.err;

    std::ifstream in(*root_ / "corpus.jsonl");
    std::string line;
    while (std::getline(in, line) && questions_->size() < 6) {
      std::istringstream words(json::parse(line)["text"].get<std::string>());
      std::vector<std::string> w;
      for (std::string x; words >> x;) w.push_back(x);
      questions_->push_back("what follows " + w[0] + " " + w[1] + " " + w[2] + "?");
    }

    // Two encoders: P learned queries; and the demo's kind (the LLM's pieces with their
    // embeddings, keys placed at the answer), whose stored keys must be placed per question.
    const auto llm_config = LlamaConfig::load(*llm_ + "/config.json");
    auto bert_config = BertConfig::load(*root_ / "encoder/config.json");
    KnowledgeEncoderOptions queries;
    queries.prefix_length = 4;
    KnowledgeEncoder ke(
        KnowledgeEncoderConfig::for_llm(bert_config, llm_config, llm_fingerprint(*llm_), queries),
        torch::kFloat32);
    ke->init_fresh(7, 0.3);
    save_knowledge_encoder(*ke, *root_ / "ke", *root_ / "encoder/vocab.txt");
    ke->init_fresh(9, 0.3);  // another training of the same architecture
    save_knowledge_encoder(*ke, *root_ / "ke-other", *root_ / "encoder/vocab.txt");

    bert_config.hidden_size = llm_config.hidden_size;
    KnowledgeEncoder kp(
        KnowledgeEncoderConfig::for_llm(bert_config, llm_config, llm_fingerprint(*llm_),
                                        test::piece_encoder_options(40)),
        torch::kFloat32);
    kp->init_fresh(8, 0.3);
    save_knowledge_encoder(*kp, *root_ / "ke-pieces", *root_ / "encoder/vocab.txt");
  }
  static void TearDownTestSuite() {
    delete root_;
    delete llm_;
    root_ = nullptr;
    llm_ = nullptr;
  }
  void SetUp() override {
    if (llm_ == nullptr) GTEST_SKIP() << "shared material not found (models/stories260K)";
  }

  // An index folder of its own (the segment store copied), so that tests do not share stores.
  static std::string fresh_index(const std::string& name) {
    const std::string dir = *root_ / name;
    fs::create_directories(dir);
    fs::copy_file(*root_ / "index/segments.sqlite", dir + "/segments.sqlite");
    return dir;
  }

  static PrefixStoreBuildOptions build_options(const std::string& index, const std::string& ke,
                                               const std::string& dtype = "fp32") {
    PrefixStoreBuildOptions o;
    o.index_dir = index;
    o.llm_dir = *llm_;
    o.knowledge_encoder_dir = *root_ / ke;
    o.dtype = dtype;
    o.batch = 4;
    o.progress = false;
    return o;
  }

  static AnswererOptions answerer_options(const std::string& index, const std::string& ke,
                                          bool use_store) {
    AnswererOptions o;
    o.llm_dir = *llm_;
    o.index_dir = index;
    o.retriever.mode = RetrieverMode::kBm25;
    o.knowledge_encoder_dir = *root_ / ke;
    o.max_new_tokens = 10;
    o.use_prefix_store = use_store;
    return o;
  }

  static test::TempDir* root_;
  static std::string* llm_;
  static std::vector<std::string>* questions_;
};
test::TempDir* PrefixStoreTest::root_ = nullptr;
std::string* PrefixStoreTest::llm_ = nullptr;
std::vector<std::string>* PrefixStoreTest::questions_ = new std::vector<std::string>();

// Answers from an fp32 store equal those computed on the fly (texts, and likelihoods up to
// rounding: the encoder ran on other batches), for both encoders, top-1 and top-2, in both
// prefix modes; an fp16 store moves the likelihoods by fp16's rounding only.
TEST_F(PrefixStoreTest, StoredPrefixesAnswerAsEncodedOnes) {
  for (const std::string ke : {"ke", "ke-pieces"}) {
    const std::string index = fresh_index("answers-" + ke);
    const auto built = build_prefix_store(build_options(index, ke));
    EXPECT_FALSE(built.already_built);
    EXPECT_GT(built.header.segments, 10);
    EXPECT_EQ(built.header.entries, ke == "ke" ? 4 : 40);
    EXPECT_EQ(static_cast<int64_t>(fs::file_size(prefix_store_bin(index))), built.bytes);

    const auto encoded = Answerer::open(answerer_options(index, ke, false));
    const auto stored = Answerer::open(answerer_options(index, ke, true));
    EXPECT_FALSE(encoded->uses_prefix_store());
    ASSERT_TRUE(stored->uses_prefix_store()) << stored->prefix_store_status();
    for (AnswerMode mode : {AnswerMode::kPrefix, AnswerMode::kContextPrefix}) {
      for (int k : {1, 2}) {
        const auto a = encoded->answer(*questions_, mode, k);
        const auto b = stored->answer(*questions_, mode, k);
        ASSERT_EQ(a.size(), b.size());
        for (size_t i = 0; i < a.size(); ++i) {
          SCOPED_TRACE(ke + " " + to_string(mode) + " top-" + std::to_string(k) + " question " +
                       std::to_string(i));
          EXPECT_EQ(a[i].prefix_source, "encoder");
          EXPECT_EQ(b[i].prefix_source, "store");
          EXPECT_EQ(b[i].to_json()["prefix_source"], "store");
          EXPECT_EQ(a[i].text, b[i].text);
          EXPECT_NEAR(a[i].groundedness.logprob_with, b[i].groundedness.logprob_with, 1e-4);
        }
      }
    }
    const auto none = stored->answer({questions_->front()}, AnswerMode::kContext, 1);
    EXPECT_EQ(none[0].prefix_source, "");
    EXPECT_FALSE(none[0].to_json().contains("prefix_source"));

    // fp16: half the bytes; the prefix rounded to 11 significant bits.
    const auto half = build_prefix_store(build_options(index, ke, "fp16"));
    EXPECT_EQ(half.bytes * 2, built.bytes);
    const auto from_half = Answerer::open(answerer_options(index, ke, true));
    ASSERT_TRUE(from_half->uses_prefix_store());
    const auto a = encoded->answer(*questions_, AnswerMode::kPrefix, 2);
    const auto c = from_half->answer(*questions_, AnswerMode::kPrefix, 2);
    for (size_t i = 0; i < a.size(); ++i) {
      EXPECT_NEAR(a[i].groundedness.logprob_with, c[i].groundedness.logprob_with, 2e-2)
          << ke << " question " << i;
    }
  }
}

// The stored records are the encoder's output for each segment, wherever a build stopped.
TEST_F(PrefixStoreTest, AnInterruptedBuildResumesAndAFinishedOneIsKept) {
  const std::string index = fresh_index("resume");
  const auto first = build_prefix_store(build_options(index, "ke"));
  const std::string whole = read_file(prefix_store_bin(index));
  EXPECT_TRUE(build_prefix_store(build_options(index, "ke")).already_built);

  // As a build killed after two batches of 4 leaves it: 8 records and their record.
  const int64_t record = first.header.record_bytes();
  fs::remove(prefix_store_json(index));
  fs::remove(prefix_store_bin(index));
  write_file_atomic(prefix_store_partial_bin(index), whole.substr(0, 8 * record + 100));  // torn
  write_file_atomic(prefix_store_partial_json(index),
                    json{{"header", first.header.to_json()}, {"done", 8}}.dump());
  ASSERT_EQ(PrefixStore::open(index), nullptr);  // no store until a build finishes
  const auto resumed = build_prefix_store(build_options(index, "ke"));
  EXPECT_EQ(resumed.resumed_from, 8);
  EXPECT_TRUE(read_file(prefix_store_bin(index)) == whole);  // same batches: same bytes
  EXPECT_FALSE(fs::exists(prefix_store_partial_json(index)));
  EXPECT_FALSE(fs::exists(prefix_store_partial_bin(index)));

  // A partial build of another encoder starts over.
  fs::remove(prefix_store_json(index));
  fs::rename(prefix_store_bin(index), prefix_store_partial_bin(index));
  auto other = first.header;
  other.encoder_fingerprint = "0000000000000000";
  write_file_atomic(prefix_store_partial_json(index),
                    json{{"header", other.to_json()}, {"done", 8}}.dump());
  EXPECT_EQ(build_prefix_store(build_options(index, "ke")).resumed_from, 0);
  EXPECT_TRUE(read_file(prefix_store_bin(index)) == whole);

  // The command: progress to a log, the summary, index info's record of it.
  auto r = run_kvrag("index build-prefixes --index " + index + " --knowledge-encoder " +
                     (*root_ / "ke") + " --llm " + *llm_ + " --dtype fp32");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(contains(r.err, "already this encoder's")) << r.err;
  r = run_kvrag("index build-prefixes --index " + index + " --knowledge-encoder " +
                (*root_ / "ke") + " --llm " + *llm_ + " --batch 5");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(contains(r.err, "wrote " + index + "/prefixes.bin")) << r.err;
  EXPECT_EQ(PrefixStore::open(index)->header().dtype, "fp16");
}

TEST_F(PrefixStoreTest, AStoreThatIsNotTheEncodersIsNotUsed) {
  const std::string index = fresh_index("mismatch");
  build_prefix_store(build_options(index, "ke"));
  const auto other = Answerer::open(answerer_options(index, "ke-other", true));
  EXPECT_FALSE(other->uses_prefix_store());
  EXPECT_TRUE(contains(other->prefix_store_status(), "another knowledge encoder"))
      << other->prefix_store_status();
  EXPECT_EQ(other->answer({questions_->front()}, AnswerMode::kPrefix, 1)[0].prefix_source,
            "encoder");
  const auto none = Answerer::open(answerer_options(fresh_index("none"), "ke", true));
  EXPECT_TRUE(contains(none->prefix_store_status(), "no prefix store"));

  // ask says where its prefixes come from.
  const std::string common = "ask --llm " + *llm_ + " --index " + index +
                             " --retriever bm25 --mode prefix --max-new-tokens 4 --json "
                             "--knowledge-encoder " +
                             (*root_ / "ke");
  auto r = run_kvrag(common + " \"" + questions_->front() + "\"");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)["prefix_source"], "store");
  EXPECT_TRUE(contains(r.err, "prefixes from the store")) << r.err;
  r = run_kvrag(common + " --no-prefix-store \"" + questions_->front() + "\"");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)["prefix_source"], "encoder");
}

// Time to first token, accounted: the stages add up, the prompt tokens are the LLM's input.
TEST_F(PrefixStoreTest, TimingsSplitTheTimeToTheFirstToken) {
  const std::string index = fresh_index("timings");
  build_prefix_store(build_options(index, "ke"));
  const auto answerer = Answerer::open(answerer_options(index, "ke", true));
  const auto a = answerer->answer({questions_->front()}, AnswerMode::kPrefix, 2).at(0);
  EXPECT_GT(a.prefill_ms, 0);
  EXPECT_GT(a.decode_ms, 0);
  EXPECT_LE(a.prefill_ms + a.decode_ms, a.generate_ms + 1e-6);
  EXPECT_DOUBLE_EQ(a.ttft_ms, a.retrieve_ms + a.encode_ms + a.prefill_ms);
  EXPECT_LE(a.ttft_ms, a.total_ms);
  EXPECT_EQ(a.prefill_tokens, answerer->prompt_tokens(questions_->front()));
  const auto j = a.to_json();
  for (const char* key : {"retrieve", "encode", "prefill", "decode", "generate", "ttft", "total"})
    EXPECT_TRUE(j["timings_ms"][key].is_number()) << key;
  EXPECT_EQ(j["prefill_tokens"], a.prefill_tokens);
  // context mode prefills the segments too
  const auto c = answerer->answer({questions_->front()}, AnswerMode::kContext, 2).at(0);
  EXPECT_GT(c.prefill_tokens, a.prefill_tokens + 20);

  std::ofstream(*root_ / "timing-questions.jsonl")
      << json{{"question", questions_->front()}, {"answers", {"x"}}}.dump() << "\n"
      << json{{"question", (*questions_)[1]}, {"answers", {"y"}}}.dump() << "\n";
  const auto r = run_kvrag("eval --llm " + *llm_ + " --index " + index +
                           " --retriever bm25 --knowledge-encoder " + (*root_ / "ke") +
                           " --questions " + (*root_ / "timing-questions.jsonl") +
                           " --modes prefix,none --batch 1 --top-k 1 --max-new-tokens 4 --json -q");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto s = json::parse(r.out);
  for (const char* mode : {"prefix", "none"}) {
    const auto& t = s[mode]["ttft_ms"];
    EXPECT_GT(t["p50"].get<double>(), 0) << mode;
    EXPECT_GE(t["p95"].get<double>(), t["p50"].get<double>()) << mode;
    EXPECT_EQ(t["batch"], 1);
  }
}

// int8 records: each key within half its channel's scale, each value within half its entry's,
// of the encoder's numbers (the fp32 store).
TEST_F(PrefixStoreTest, Int8RecordsStayWithinHalfAScale) {
  for (const std::string ke : {"ke", "ke-pieces"}) {
    const std::string exact_dir = fresh_index("int8-exact-" + ke),
                      int8_dir = fresh_index("int8-" + ke);
    const auto exact = build_prefix_store(build_options(exact_dir, ke, "fp32"));
    const auto q8 = build_prefix_store(build_options(int8_dir, ke, "int8"));
    const auto& h = exact.header;  // a byte a number, and an fp32 scale per channel and entry
    EXPECT_EQ(q8.bytes, h.segments * h.layers *
                            (2 * h.kv_heads * h.entries * h.head_dim +
                             4 * h.kv_heads * (h.head_dim + h.entries)));
    const std::vector<int64_t> ids = {0, 3, exact.header.segments - 1};
    const KVPrefix a = PrefixStore::open(exact_dir)->get(ids);
    const KVPrefix b = PrefixStore::open(int8_dir)->get(ids);
    for (size_t l = 0; l < a.keys.size(); ++l) {
      // [B, kvH, 1, hd] and [B, kvH, P, 1]: half of max|x| / 127, plus fp32 rounding
      const auto key_bound = a.keys[l].abs().amax(2, true) / 254 * (1 + 1e-5) + 1e-12;
      const auto value_bound = a.values[l].abs().amax(3, true) / 254 * (1 + 1e-5) + 1e-12;
      EXPECT_TRUE(((a.keys[l] - b.keys[l]).abs() <= key_bound).all().item<bool>()) << ke << l;
      EXPECT_TRUE(((a.values[l] - b.values[l]).abs() <= value_bound).all().item<bool>()) << ke << l;
      EXPECT_TRUE(b.keys[l].ne(a.keys[l]).any().item<bool>());  // it did round
      // zero (padding) entries stay zero
      EXPECT_TRUE(b.values[l].masked_select(a.values[l].eq(0)).eq(0).all().item<bool>());
    }
    const auto answerer = Answerer::open(answerer_options(int8_dir, ke, true));
    ASSERT_TRUE(answerer->uses_prefix_store());
    EXPECT_TRUE(contains(answerer->prefix_store_status(), "int8"));
    EXPECT_EQ(answerer->answer({questions_->front()}, AnswerMode::kPrefix, 2)[0].prefix_source,
              "store");
  }
}

// Without a store, a bounded cache: a segment retrieved again is not encoded again, and the
// answers are those computed by encoding.
TEST_F(PrefixStoreTest, ACacheKeepsRecentPrefixesWithinItsCapacity) {
  const std::string index = fresh_index("cache");
  auto o = answerer_options(index, "ke-pieces", true);
  o.prefix_cache_mb = 1;
  const auto cached = Answerer::open(o);
  const auto encoded = Answerer::open(answerer_options(index, "ke-pieces", false));
  EXPECT_FALSE(encoded->prefix_cache_stats().has_value());
  const auto first = cached->answer(*questions_, AnswerMode::kPrefix, 2);
  const auto s1 = cached->prefix_cache_stats().value();
  EXPECT_GT(s1.misses, 0);
  EXPECT_EQ(s1.entries, s1.misses);  // each distinct segment encoded once; 1 MiB holds them all
  const auto again = cached->answer(*questions_, AnswerMode::kPrefix, 2);
  const auto s2 = cached->prefix_cache_stats().value();
  EXPECT_EQ(s2.misses, s1.misses);
  EXPECT_EQ(s2.hits, 2 * s1.hits + s1.misses);  // the same lookups, all found
  const auto truth = encoded->answer(*questions_, AnswerMode::kPrefix, 2);
  for (size_t i = 0; i < truth.size(); ++i) {
    EXPECT_EQ(first[i].prefix_source, "cache");
    EXPECT_EQ(first[i].text, truth[i].text) << i;
    EXPECT_EQ(again[i].text, truth[i].text) << i;
    EXPECT_NEAR(again[i].groundedness.logprob_with, truth[i].groundedness.logprob_with, 1e-4);
  }

  // Least recently used leave first; a prefix larger than the cache is not kept.
  const auto row = [](float v) {  // 2 layers of [1, 1, 2, 4] fp32: 128 bytes
    KVPrefix p;
    for (int l = 0; l < 2; ++l) {
      p.keys.push_back(torch::full({1, 1, 2, 4}, v));
      p.values.push_back(torch::full({1, 1, 2, 4}, -v));
    }
    return p;
  };
  PrefixCache cache(300);
  cache.put(1, row(1));
  cache.put(2, row(2));
  ASSERT_TRUE(cache.get(1).has_value());  // 1 is now the most recent
  cache.put(3, row(3));                   // 384 bytes > 300: 2 leaves
  EXPECT_FALSE(cache.get(2).has_value());
  EXPECT_EQ(cache.get(3)->keys[1][0][0][1][3].item<float>(), 3.0f);
  EXPECT_EQ(cache.get(1)->values[0][0][0][0][0].item<float>(), -1.0f);
  const auto st = cache.stats();
  EXPECT_EQ(st.entries, 2);
  EXPECT_EQ(st.bytes, 256);
  EXPECT_EQ(st.hits, 3);
  EXPECT_EQ(st.misses, 1);
  PrefixCache tiny(100);
  tiny.put(1, row(1));
  EXPECT_EQ(tiny.stats().entries, 0);
}

TEST_F(PrefixStoreTest, DamagedFilesAreClearErrors) {
  const std::string index = fresh_index("damaged");
  const auto built = build_prefix_store(build_options(index, "ke"));
  const auto store = PrefixStore::open(index);
  ASSERT_NE(store, nullptr);
  EXPECT_TRUE(contains(test::error_of([&] {
                         store->get({0, built.header.segments});
                       }),
                       "outside its"));
  const KVPrefix one = store->get({1});
  ASSERT_EQ(one.keys.size(), static_cast<size_t>(built.header.layers));
  EXPECT_EQ(one.keys[0].sizes(),
            (std::vector<int64_t>{1, built.header.kv_heads, 4, built.header.head_dim}));

  fs::resize_file(prefix_store_bin(index), built.bytes - 1);
  auto e = test::error_of([&] { PrefixStore::open(index); });
  EXPECT_TRUE(contains(e, prefix_store_bin(index)) && contains(e, "rebuild")) << e;
  // The Answerer refuses to start on a damaged store rather than answer from it.
  e = test::error_of([&] { Answerer::open(answerer_options(index, "ke", true)); });
  EXPECT_TRUE(contains(e, "prefixes.bin")) << e;

  for (const std::string bad : {"{", "[]", R"({"format": "other"})",
                                R"({"format": "kvrag-prefix-store-1", "dtype": "int4"})"}) {
    write_file_atomic(prefix_store_json(index), bad);
    e = test::error_of([&] { PrefixStore::open(index); });
    EXPECT_TRUE(contains(e, prefix_store_json(index))) << bad << ": " << e;
  }
  auto h = built.header.to_json();
  h["layers"] = -1;
  write_file_atomic(prefix_store_json(index), h.dump());
  EXPECT_TRUE(contains(test::error_of([&] { PrefixStore::open(index); }), "implausible shape"));
}

}  // namespace
}  // namespace kvrag
