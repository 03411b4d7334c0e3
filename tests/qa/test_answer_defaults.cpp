// The defaults ask, eval and serve share (qa/answer_defaults.h), before any model is loaded: the
// workspace's record (answer_defaults.json), where it applies, and the retriever without one.
// What needs the models (mode, top-k) is tested with the Answerer in test_answerer.cpp.

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "qa/answer_defaults.h"
#include "support/cli_runner.h"
#include "support/test_support.h"

namespace kvrag {
namespace {

namespace fs = std::filesystem;
using test::contains;

// An index folder as the retriever defaults see it: segments.sqlite (BM25) and, if `dense`,
// embeddings/ and dense.faiss.
void make_index(const std::string& dir, bool dense, bool bm25 = true) {
  fs::create_directories(dir);
  if (bm25) std::ofstream(dir + "/segments.sqlite") << "x";
  if (dense) {
    fs::create_directories(dir + "/embeddings");
    std::ofstream(dir + "/dense.faiss") << "x";
  }
}

// A workspace: llm/, index/ (with dense vectors if `dense`), knowledge_encoder/.
std::string make_workspace(const test::TempDir& tmp, const std::string& name, bool dense) {
  const std::string ws = tmp / name;
  fs::create_directories(ws + "/llm");
  fs::create_directories(ws + "/knowledge_encoder");
  make_index(ws + "/index", dense);
  return ws;
}

TEST(AnswerDefaults, RecordRoundTripsAndIsWrittenAsDocumented) {
  test::TempDir tmp;
  EXPECT_FALSE(read_answer_defaults(tmp.path()).has_value());
  write_answer_defaults(tmp.path(), {RetrieverMode::kBm25, AnswerMode::kContextPrefix, 3});
  const auto j = nlohmann::json::parse(read_file(tmp / "answer_defaults.json"));
  EXPECT_EQ(j, (nlohmann::json{{"retriever", "bm25"}, {"mode", "context+prefix"}, {"top_k", 3}}));
  const auto d = read_answer_defaults(tmp.path());
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->retriever, RetrieverMode::kBm25);
  EXPECT_EQ(d->mode, AnswerMode::kContextPrefix);
  EXPECT_EQ(d->top_k, 3);
}

TEST(AnswerDefaults, CalibratedThresholdsRoundTrip) {
  test::TempDir tmp;
  AnswerDefaults d{RetrieverMode::kHybrid, AnswerMode::kAuto, 1, {}};
  const double inf = std::numeric_limits<double>::infinity();
  d.flag_below = {{AnswerMode::kPrefix, -0.25},
                  {AnswerMode::kContext, 0.5},
                  {AnswerMode::kNone, inf},
                  {AnswerMode::kContextPrefix, -inf}};
  write_answer_defaults(tmp.path(), d);
  const auto j = nlohmann::json::parse(read_file(tmp / "answer_defaults.json"));
  EXPECT_EQ(j["flag_below"],
            (nlohmann::json{
                {"prefix", -0.25}, {"context", 0.5}, {"none", "inf"}, {"context+prefix", "-inf"}}));
  const auto back = read_answer_defaults(tmp.path());
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->mode, AnswerMode::kAuto);
  EXPECT_EQ(back->flag_below, d.flag_below);
}

TEST(AnswerDefaults, AMalformedRecordIsAnErrorNamingTheFile) {
  test::TempDir tmp;
  const std::string file = tmp / "answer_defaults.json";
  for (const auto& [text, want] : std::vector<std::pair<std::string, std::string>>{
           {"{", "not JSON"},
           {"[1]", "not a JSON object"},
           {R"({"mode": "prefix", "top_k": 1})", "\"retriever\" must be a string"},
           {R"({"retriever": "sideways", "mode": "prefix", "top_k": 1})",
            "must be one of dense, bm25, hybrid, not 'sideways'"},
           {R"({"retriever": "bm25", "mode": "rag", "top_k": 1})",
            "must be one of none, context, prefix, context+prefix"},
           {R"({"retriever": "bm25", "mode": "prefix", "top_k": 0})", "\"top_k\" must be"},
           {R"({"retriever": "bm25", "mode": "prefix", "top_k": "3"})", "\"top_k\" must be"},
           {R"({"retriever": "bm25", "mode": "prefix", "top_k": 1, "flag_below": 3})",
            "\"flag_below\" must be an object"},
           {R"({"retriever": "bm25", "mode": "prefix", "top_k": 1, "flag_below": {"prefix": "x"}})",
            "\"prefix\" must be a number, \"inf\" or \"-inf\""},
           {R"({"retriever": "bm25", "mode": "prefix", "top_k": 1, "flag_below": {"rag": 1}})",
            "must be one of none"},
           {R"({"retriever": "dense", "mode": "prefix", "top_k": 1, "question_encoder": "/qe"})",
            "\"question_encoder\" must name a folder inside the workspace"},
           {R"({"retriever": "dense", "mode": "prefix", "top_k": 1, "question_encoder": "../qe"})",
            "\"question_encoder\" must name a folder inside the workspace"},
           {R"({"retriever": "dense", "mode": "prefix", "top_k": 1, "question_encoder": 3})",
            "\"question_encoder\" must name a folder inside the workspace"}}) {
    write_file_atomic(file, text);
    const auto e = test::error_of([&] { read_answer_defaults(tmp.path()); });
    EXPECT_TRUE(contains(e, file)) << text << ": " << e;
    EXPECT_TRUE(contains(e, want)) << text << ": " << e;
  }
}

TEST(AnswerDefaults, RetrieverWithoutARecordFollowsWhatTheIndexHas) {
  test::TempDir tmp;
  make_index(tmp / "both", true);
  make_index(tmp / "bm25", false);
  make_index(tmp / "dense", true, false);
  EXPECT_EQ(fallback_retriever(tmp / "both"), RetrieverMode::kHybrid);
  EXPECT_EQ(fallback_retriever(tmp / "bm25"), RetrieverMode::kBm25);
  EXPECT_EQ(fallback_retriever(tmp / "dense"), RetrieverMode::kDense);

  AnswerSources s;
  s.llm = tmp / "llm";
  s.index = tmp / "both";
  auto setup = resolve_answer_setup(s, {});
  EXPECT_TRUE(setup.workspace.empty());
  EXPECT_FALSE(setup.recorded.has_value());
  EXPECT_EQ(setup.options.retriever.mode, RetrieverMode::kHybrid);
  s.index = tmp / "bm25";
  EXPECT_EQ(resolve_answer_setup(s, {}).options.retriever.mode, RetrieverMode::kBm25);
  s.retriever = "dense";  // explicit wins
  EXPECT_EQ(resolve_answer_setup(s, {}).options.retriever.mode, RetrieverMode::kDense);
}

TEST(AnswerDefaults, AWorkspaceRecordAppliesNamedOrFoundFromItsFolders) {
  test::TempDir tmp;
  const std::string ws = make_workspace(tmp, "ws", true);
  write_answer_defaults(ws, {RetrieverMode::kBm25, AnswerMode::kContext, 2});

  AnswerSources named;
  named.workspace = ws;
  auto setup = resolve_answer_setup(named, {});
  EXPECT_EQ(setup.options.llm_dir, ws + "/llm");
  EXPECT_EQ(setup.options.index_dir, ws + "/index");
  EXPECT_EQ(setup.options.knowledge_encoder_dir, ws + "/knowledge_encoder");
  EXPECT_EQ(setup.workspace, ws);
  ASSERT_TRUE(setup.recorded.has_value());
  EXPECT_EQ(setup.recorded->top_k, 2);
  EXPECT_EQ(setup.options.retriever.mode, RetrieverMode::kBm25);  // the record's, not hybrid

  // The folders within one, named one by one (a trailing slash and "./" make no difference).
  AnswerSources folders;
  folders.llm = ws + "/llm/";
  folders.index = ws + "/./index";
  setup = resolve_answer_setup(folders, {});
  ASSERT_TRUE(setup.recorded.has_value());
  EXPECT_EQ(fs::path(setup.workspace), fs::absolute(ws));
  EXPECT_EQ(setup.options.retriever.mode, RetrieverMode::kBm25);

  // Folders of different places: no record applies.
  const std::string other = make_workspace(tmp, "other", true);
  folders.index = other + "/index";
  setup = resolve_answer_setup(folders, {});
  EXPECT_FALSE(setup.recorded.has_value());
  EXPECT_EQ(setup.options.retriever.mode, RetrieverMode::kHybrid);

  // The explicit retriever wins over the record.
  named.retriever = "dense";
  EXPECT_EQ(resolve_answer_setup(named, {}).options.retriever.mode, RetrieverMode::kDense);
}

TEST(AnswerDefaults, ARecordedRetrieverTheIndexCannotServeFallsBack) {
  test::TempDir tmp;
  const std::string ws = make_workspace(tmp, "ws", false);  // BM25 only
  write_answer_defaults(ws, {RetrieverMode::kHybrid, AnswerMode::kPrefix, 1});
  AnswerSources s;
  s.workspace = ws;
  const auto setup = resolve_answer_setup(s, {});
  ASSERT_TRUE(setup.recorded.has_value());
  EXPECT_EQ(setup.options.retriever.mode, RetrieverMode::kBm25);
}

// The demo's question encoder (trained by the LLM's loss for the workspace's index): recorded,
// read back, and used by dense and hybrid retrieval over that index unless --encoder names
// another; not over another index, and not by BM25.
TEST(AnswerDefaults, ARecordedQuestionEncoderAppliesToTheWorkspaceIndexOnly) {
  test::TempDir tmp;
  const std::string ws = make_workspace(tmp, "ws", true);
  AnswerDefaults d{RetrieverMode::kHybrid, AnswerMode::kPrefix, 1};
  d.question_encoder = "question_encoder";
  write_answer_defaults(ws, d);
  EXPECT_EQ(nlohmann::json::parse(read_file(ws + "/answer_defaults.json"))["question_encoder"],
            "question_encoder");
  ASSERT_EQ(read_answer_defaults(ws)->question_encoder, "question_encoder");

  AnswerSources s;
  s.workspace = ws;
  // Recorded but missing: an error naming the record, not a silent fall-back.
  auto e = test::error_of([&] { resolve_answer_setup(s, {}); });
  EXPECT_TRUE(contains(e, ws + "/answer_defaults.json")) << e;
  EXPECT_TRUE(contains(e, "question encoder " + ws + "/question_encoder does not exist")) << e;

  fs::create_directories(ws + "/question_encoder");
  EXPECT_EQ(resolve_answer_setup(s, {}).options.retriever.encoder, ws + "/question_encoder");
  AnswererOptions explicit_encoder;
  explicit_encoder.retriever.encoder = tmp / "mine";
  EXPECT_EQ(resolve_answer_setup(s, explicit_encoder).options.retriever.encoder, tmp / "mine");
  s.retriever = "bm25";
  EXPECT_EQ(resolve_answer_setup(s, {}).options.retriever.encoder, "");
  s.retriever = "";
  const std::string other = make_workspace(tmp, "other", true);
  s.index = other + "/index";
  EXPECT_EQ(resolve_answer_setup(s, {}).options.retriever.encoder, "");
  // The workspace's folders named one by one: the record, and its encoder, apply.
  AnswerSources folders;
  folders.llm = ws + "/llm";
  folders.index = ws + "/index/";
  EXPECT_EQ(fs::path(resolve_answer_setup(folders, {}).options.retriever.encoder),
            fs::absolute(ws) / "question_encoder");
}

// A recorded "extractive": true applies unless --no-extractive; --extractive applies anyway.
TEST(AnswerDefaults, ARecordedExtractiveSettingAppliesUnlessOverridden) {
  test::TempDir tmp;
  const std::string ws = make_workspace(tmp, "ws", true);
  AnswerDefaults d{RetrieverMode::kHybrid, AnswerMode::kPrefix, 1};
  write_answer_defaults(ws, d);
  EXPECT_FALSE(
      nlohmann::json::parse(read_file(ws + "/answer_defaults.json")).contains("extractive"));
  AnswerSources s;
  s.workspace = ws;
  EXPECT_FALSE(resolve_answer_setup(s, {}).options.extractive);
  s.extractive = 1;
  EXPECT_TRUE(resolve_answer_setup(s, {}).options.extractive);

  d.extractive = true;
  write_answer_defaults(ws, d);
  EXPECT_EQ(nlohmann::json::parse(read_file(ws + "/answer_defaults.json"))["extractive"], true);
  s.extractive = -1;
  EXPECT_TRUE(resolve_answer_setup(s, {}).options.extractive);
  s.extractive = 0;
  EXPECT_FALSE(resolve_answer_setup(s, {}).options.extractive);

  write_file_atomic(ws + "/answer_defaults.json",
                    R"({"retriever": "bm25", "mode": "prefix", "top_k": 1, "extractive": 1})");
  EXPECT_TRUE(contains(test::error_of([&] { read_answer_defaults(ws); }),
                       "\"extractive\" must be true or false"));
}

// A recorded "retrieval_posterior" weighs the mixture's segments unless --mixture-temperature T
// gives softmax(q·d / T); a malformed one is an error naming the file and the field.
TEST(AnswerDefaults, ARecordedRetrievalPosteriorAppliesUnlessATemperatureIsGiven) {
  test::TempDir tmp;
  const std::string ws = make_workspace(tmp, "ws", true);
  AnswerDefaults d{RetrieverMode::kHybrid, AnswerMode::kPrefix, 1};
  write_answer_defaults(ws, d);
  AnswerSources s;
  s.workspace = ws;
  const RetrievalPosterior fallback;
  EXPECT_EQ(resolve_answer_setup(s, {}).options.posterior.dense, fallback.dense);

  d.posterior = RetrievalPosterior{5.5, 0.25};
  write_answer_defaults(ws, d);
  auto setup = resolve_answer_setup(s, {});
  EXPECT_EQ(setup.options.posterior.dense, 5.5);
  EXPECT_EQ(setup.options.posterior.bm25, 0.25);
  EXPECT_FALSE(setup.posterior_given);
  ASSERT_TRUE(setup.recorded && setup.recorded->posterior);
  EXPECT_EQ(setup.recorded->posterior->bm25, 0.25);

  s.mixture_temperature = 0.1;
  setup = resolve_answer_setup(s, {});
  EXPECT_DOUBLE_EQ(setup.options.posterior.dense, 10.0);
  EXPECT_EQ(setup.options.posterior.bm25, 0.0);
  EXPECT_TRUE(setup.posterior_given);

  write_file_atomic(ws + "/answer_defaults.json",
                    R"({"retriever": "bm25", "mode": "prefix", "top_k": 1,
                        "retrieval_posterior": {"dense": "x", "bm25": 1}})");
  const auto e = test::error_of([&] { read_answer_defaults(ws); });
  EXPECT_TRUE(contains(e, "answer_defaults.json") && contains(e, "\"dense\" must be a finite"))
      << e;
}

TEST(AnswerDefaults, SourcesErrors) {
  test::TempDir tmp;
  AnswerSources s;
  EXPECT_TRUE(contains(test::error_of([&] { resolve_answer_setup(s, {}); }),
                       "give --workspace DIR or --llm DIR"));
  s.workspace = tmp / "nope";
  EXPECT_TRUE(contains(test::error_of([&] { resolve_answer_setup(s, {}); }),
                       "workspace " + (tmp / "nope") + " does not exist"));
  s.workspace = tmp.path();
  EXPECT_TRUE(contains(test::error_of([&] { resolve_answer_setup(s, {}); }), "has no llm/ yet"));
  s = {};
  s.llm = tmp / "llm";
  s.knowledge_encoder = tmp / "ke";
  EXPECT_TRUE(contains(test::error_of([&] { resolve_answer_setup(s, {}); }),
                       "the knowledge encoder needs an index"));
  // A malformed record of the workspace is not skipped silently.
  const std::string ws = make_workspace(tmp, "ws", true);
  write_file_atomic(ws + "/answer_defaults.json", "{\"mode\": 3}");
  s = {};
  s.workspace = ws;
  EXPECT_TRUE(
      contains(test::error_of([&] { resolve_answer_setup(s, {}); }), ws + "/answer_defaults.json"));
}

}  // namespace
}  // namespace kvrag
