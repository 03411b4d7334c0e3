// `kvrag demo --tiny` end to end through the binary: every stage runs on a miniature world,
// the results file has the eval summary's shape, and a rerun skips every cached stage.
// (The real-size numbers are measured by running `kvrag demo`; see README.)
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "support/cli_runner.h"
#include "support/test_support.h"

namespace kvrag {
namespace {

TEST(DemoCli, TinyPipelineRunsEveryStageAndCachesThem) {
  test::TempDir dir;
  const std::string ws = dir / "ws";
  const auto run = test::run_kvrag("--threads 2 demo --tiny --workspace " + ws);
  ASSERT_EQ(run.exit_code, 0) << run.out << run.err;
  for (const char* stage : {"world", "tokenizer", "llm", "retriever", "index", "knowledge",
                            "question-encoder", "prefixes", "eval"}) {
    EXPECT_TRUE(std::filesystem::exists(ws + "/stages/" + stage + ".done")) << stage;
  }
  // The folders `kvrag serve --workspace` opens.
  EXPECT_TRUE(std::filesystem::exists(ws + "/llm/config.json"));
  EXPECT_TRUE(std::filesystem::exists(ws + "/knowledge_encoder/config.json"));
  // The encoder trains on the knowledge set, reads the LLM's pieces and places its keys.
  EXPECT_TRUE(std::filesystem::exists(ws + "/knowledge-passages.jsonl"));
  const auto report = nlohmann::json::parse(read_file(ws + "/knowledge_encoder/train_report.json"));
  EXPECT_TRUE(test::contains(report.at("train").get<std::string>(), "questions-knowledge.jsonl"));
  EXPECT_EQ(report.at("segments"), "oracle");
  const auto ke = nlohmann::json::parse(read_file(ws + "/knowledge_encoder/config.json"));
  EXPECT_EQ(ke.at("segment_tokenizer"), "llm");
  EXPECT_EQ(ke.at("key_position"), "answer");
  EXPECT_TRUE(std::filesystem::exists(ws + "/index/segments.sqlite"));
  // Prefix mode answers from the store the demo built.
  EXPECT_TRUE(std::filesystem::exists(ws + "/index/prefixes.json"));
  const auto results = nlohmann::json::parse(read_file(ws + "/results.json"));
  for (const char* mode : {"none", "context", "prefix"}) {
    ASSERT_TRUE(results.contains(mode)) << results.dump();
    EXPECT_GT(results[mode].at("n").get<int>(), 0);
    const double em = results[mode].at("em").get<double>();
    EXPECT_GE(em, 0.0);
    EXPECT_LE(em, 1.0);
  }
  EXPECT_GT(results.at("seconds").get<double>(), 0.0);
  // What it was evaluated with, which ask, eval and serve then default to (qa/answer_defaults.h).
  // The retrieval posterior the mixture of top-k prefixes weighs segments by, fitted on the dev
  // questions, is in the record and in the results.
  auto record = nlohmann::json::parse(read_file(ws + "/answer_defaults.json"));
  ASSERT_TRUE(record.contains("retrieval_posterior")) << record.dump();
  const auto posterior = record["retrieval_posterior"];
  record.erase("retrieval_posterior");
  EXPECT_EQ(record, (nlohmann::json{{"retriever", "hybrid"},
                                    {"mode", "prefix"},
                                    {"top_k", 1},
                                    {"question_encoder", "question_encoder"},
                                    {"extractive", true}}));
  EXPECT_EQ(results.at("retrieval_posterior").at("dense"), posterior.at("dense"));
  EXPECT_EQ(results.at("retrieval_posterior").at("bm25"), posterior.at("bm25"));
  EXPECT_GT(results["retrieval_posterior"].at("n").get<int>(), 0);
  // The question encoder trained by the LLM's loss, paired with the index it was trained for.
  const auto qe = nlohmann::json::parse(read_file(ws + "/question_encoder/config.json"));
  EXPECT_TRUE(qe.contains("kvrag_passage_encoder")) << qe.dump();
  EXPECT_TRUE(std::filesystem::exists(ws + "/question_encoder/train_report.json"));
  const auto asked = test::run_kvrag("--threads 2 ask --workspace " + ws +
                                     " --no-groundedness --json \"who founded the company?\"");
  ASSERT_EQ(asked.exit_code, 0) << asked.err;
  const auto answer = nlohmann::json::parse(asked.out);
  EXPECT_EQ(answer.at("evidence").size(), 1u) << asked.out;
  EXPECT_EQ(answer.at("prefix_source"), "store") << asked.out;  // the store the demo built
  EXPECT_EQ(answer.at("cited"), 0) << asked.out;
  EXPECT_TRUE(test::contains(run.out, "kvrag serve --workspace " + ws)) << run.out;
  EXPECT_TRUE(test::contains(run.out, "prefix")) << run.out;

  const auto again = test::run_kvrag("--threads 2 demo --tiny --workspace " + ws);
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_TRUE(test::contains(again.out, "[llm] cached")) << again.out;
  EXPECT_TRUE(test::contains(again.out, "[eval] cached")) << again.out;
  EXPECT_EQ(nlohmann::json::parse(read_file(ws + "/results.json")).at("prefix"),
            results.at("prefix"));
}

TEST(DemoCli, UnwritableWorkspaceIsAClearError) {
  test::TempDir dir;
  std::ofstream(dir / "file") << "x";
  const auto run = test::run_kvrag("demo --tiny --workspace " + (dir / "file"));
  EXPECT_NE(run.exit_code, 0);
  EXPECT_TRUE(test::contains(run.err, dir / "file")) << run.err;
}

}  // namespace
}  // namespace kvrag
