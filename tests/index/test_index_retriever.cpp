// open_retriever (index/index_retriever.h): the one opening of an index folder for retrieval,
// its modes, and hits turned into evidence; on a synthetic corpus and a random-weight encoder.

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "index/dense_retriever.h"
#include "index/index_retriever.h"
#include "support/cli_runner.h"
#include "support/retrieval_fixture.h"
#include "support/test_support.h"

namespace kvrag {
namespace {

using test::contains;
using test::run_kvrag;

class IndexRetrieverTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = new test::TempDir();
    test::write_tiny_encoder(*root_ / "encoder", 1);
    test::write_corpus(*root_ / "corpus.jsonl", 30, 60);
    for (const std::string name : {"dense", "bm25-only"}) {
      const std::string index = *root_ / name;
      const auto r = run_kvrag("segment --corpus " + (*root_ / "corpus.jsonl") + " --tokenizer " +
                               (*root_ / "encoder/vocab.txt") + " --index " + index +
                               " --window 48 --stride 8");
      ASSERT_EQ(r.exit_code, 0) << r.err;
    }
    const std::string index = *root_ / "dense";
    auto r = run_kvrag("embed --index " + index + " --encoder " + (*root_ / "encoder") +
                       " --dtype fp32");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    r = run_kvrag("index build --index " + index + " --factory Flat");
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  static void TearDownTestSuite() { delete root_; }
  static test::TempDir* root_;
};
test::TempDir* IndexRetrieverTest::root_ = nullptr;

TEST_F(IndexRetrieverTest, ModesFollowTheSpecAndTheFolder) {
  RetrieverSpec spec;
  spec.mode = RetrieverMode::kHybrid;
  const auto hybrid = open_retriever(*root_ / "dense", spec);
  EXPECT_EQ(hybrid->modes(),
            (std::vector<RetrieverMode>{RetrieverMode::kHybrid, RetrieverMode::kDense,
                                        RetrieverMode::kBm25}));
  spec.mode = RetrieverMode::kBm25;
  EXPECT_EQ(open_retriever(*root_ / "dense", spec)->modes(),
            std::vector<RetrieverMode>{RetrieverMode::kBm25});
  spec.all_modes = true;  // every mode the folder has, the default first
  EXPECT_EQ(open_retriever(*root_ / "dense", spec)->modes(),
            (std::vector<RetrieverMode>{RetrieverMode::kBm25, RetrieverMode::kDense,
                                        RetrieverMode::kHybrid}));
  const auto bm25_only = open_retriever(*root_ / "bm25-only", spec);  // no embeddings: BM25 alone
  EXPECT_EQ(bm25_only->modes(), std::vector<RetrieverMode>{RetrieverMode::kBm25});
  const auto e = test::error_of([&] { bm25_only->search({"q"}, 3, RetrieverMode::kDense); });
  EXPECT_TRUE(contains(e, "bm25-only") && contains(e, "dense")) << e;
  spec.all_modes = false;
  spec.mode = RetrieverMode::kDense;
  EXPECT_TRUE(
      contains(test::error_of([&] { open_retriever(*root_ / "bm25-only", spec); }), "bm25-only"));
  EXPECT_TRUE(
      contains(test::error_of([&] { open_retriever(*root_ / "missing", spec); }), "missing"));
  EXPECT_TRUE(contains(test::error_of([&] { parse_enum<RetrieverMode>("sparse"); }),
                       "dense, bm25, hybrid"));
}

// search() gives, per mode, the retriever's own hits with their segments' texts.
TEST_F(IndexRetrieverTest, EvidenceIsTheRetrieversHitsWithTheirSegments) {
  RetrieverSpec spec;
  spec.all_modes = true;
  const auto r = open_retriever(*root_ / "dense", spec);
  const auto dense = DenseRetriever::open(*root_ / "dense", "", EmbedderOptions{"fp32"});
  const auto& w = test::tiny_words();
  const std::vector<std::string> questions = {w[0] + " " + w[1] + " " + w[2], "title 3"};
  const auto evidence = r->search(questions, 4, RetrieverMode::kDense);
  const auto hits = dense->search(questions, 4);
  ASSERT_EQ(evidence.size(), 2u);
  for (size_t q = 0; q < questions.size(); ++q) {
    ASSERT_EQ(evidence[q].size(), hits[q].size());
    const auto segments = r->store().get_many({hits[q][0].id});
    EXPECT_EQ(evidence[q][0].segment_id, hits[q][0].id);
    EXPECT_EQ(evidence[q][0].score, hits[q][0].score);
    EXPECT_EQ(evidence[q][0].text, segments[0].text);
    EXPECT_EQ(evidence[q][0].doc_id, segments[0].doc_id);
  }
  for (const auto mode : {RetrieverMode::kBm25, RetrieverMode::kHybrid}) {
    const auto ev = r->search(questions, 4, mode);
    EXPECT_EQ(ev.size(), 2u);
    EXPECT_FALSE(ev[1].empty()) << enum_name(mode);
  }
  EXPECT_EQ(r->search(questions, 4)[0][0].segment_id, evidence[0][0].segment_id);  // default: dense
}

// The retrieval posterior over a question's evidence (index/retrieval_posterior.h): a softmax of
// the weighted scores; fitted on questions whose gold passage is known, BM25 (which finds these
// word-for-word questions) gets a positive weight and puts the gold segment first.
TEST_F(IndexRetrieverTest, PosteriorWeighsTheScoresAndFitsOnGoldPassages) {
  RetrieverSpec spec;
  spec.mode = RetrieverMode::kHybrid;
  const auto r = open_retriever(*root_ / "dense", spec);
  std::vector<Question> questions;
  std::ifstream corpus(*root_ / "corpus.jsonl");
  for (std::string line; std::getline(corpus, line);) {
    const auto doc = nlohmann::json::parse(line);
    std::istringstream words(doc["text"].get<std::string>());
    std::string question, word;
    for (int i = 0; i < 20 && words >> word; ++i) question += (i % 3 == 0 ? word + " " : "");
    questions.push_back({question, {}, doc["id"].get<std::string>()});
  }
  std::vector<std::string> texts;
  for (const auto& q : questions) texts.push_back(q.question);
  const auto evidence = r->search(texts, 5);
  const auto dense = r->dense_scores(texts, evidence);
  const auto bm25 = r->bm25_scores(texts, evidence);
  const auto mixed = r->log_posterior(texts, evidence, {2.0, 0.5});
  for (size_t q = 0; q < texts.size(); ++q) {
    ASSERT_EQ(mixed[q].size(), 5u);
    std::vector<double> z;
    for (size_t j = 0; j < 5; ++j) z.push_back(2.0 * dense[q][j] + 0.5 * bm25[q][j]);
    double sum = 0;
    for (size_t j = 0; j < 5; ++j) sum += std::exp(mixed[q][j]);
    EXPECT_NEAR(sum, 1.0, 1e-5);
    for (size_t j = 1; j < 5; ++j)  // differences of log-probabilities are differences of scores
      EXPECT_NEAR(mixed[q][j] - mixed[q][0], z[j] - z[0], 1e-3);
  }
  const auto fit = r->fit_posterior(questions, 5);
  EXPECT_GT(fit.n, 10);  // of 30: the others' gold is not in their top 5
  EXPECT_GT(fit.posterior.bm25, 0.0);
  EXPECT_GE(fit.gold_at_top, 0.9);
  EXPECT_LT(fit.log_likelihood, 0.0);
  EXPECT_GT(fit.log_likelihood, std::log(1.0 / 5));  // better than uniform over 5
}

}  // namespace
}  // namespace kvrag
