// The retriever trained by the LLM's loss (train/query_encoder_trainer.h), on stories260K as the
// frozen LLM, a random BERT index and a fresh knowledge encoder whose prefixes change what the
// LLM writes: what the retriever learns, what it exports, resumption and bad input.

#include "train/query_encoder_trainer.h"

#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/atomic_file.h"
#include "core/error.h"
#include "index/dense_retriever.h"
#include "index/retrieval_eval.h"
#include "index/segment_store.h"
#include "model/knowledge_encoder.h"
#include "model/llama.h"
#include "prefix/prefix_pipeline.h"
#include "support/cli_runner.h"
#include "support/test_support.h"
#include "support/tiny_qa_world.h"
#include "train/prefix_trainer.h"

namespace kvrag {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using test::contains;

// The message of the Error that training with `o` throws ("" if none).
std::string error_of(const QueryEncoderTrainOptions& o) {
  try {
    train_query_encoder(o);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

class QueryEncoderTrainerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string shared = test::shared_dir();
    if (shared.empty() || !fs::exists(shared + "/models/stories260K/tokenizer.model")) return;
    llm_ = new std::string(shared + "/models/stories260K");
    root_ = new test::TempDir();
    std::vector<test::TinyQuestion> questions;
    const auto r = test::write_tiny_qa_world(root_->path(), 12, /*gold=*/true, {}, &questions);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    KnowledgeEncoderOptions ko;
    ko.prefix_length = 4;
    test::write_fresh_knowledge_encoder(root_->path(), *llm_, "ke", ko, 7);
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

  static QueryEncoderTrainOptions options(const std::string& out) {
    QueryEncoderTrainOptions o;
    o.out = out;
    o.llm = *llm_;
    o.knowledge_encoder = *root_ / "ke";
    o.index = *root_ / "index";
    o.train = *root_ / "questions.jsonl";
    o.dev = *root_ / "questions.jsonl";
    o.top_k = 4;
    o.optim.lr = 2e-3;
    o.optim.warmup_steps = 0;
    o.optim.batch_size = 4;
    o.optim.epochs = 4;
    o.optim.seed = 3;
    o.progress = false;
    return o;
  }

  // Mean over the questions of log p_LM(answer | question, top-1 segment) with the questions
  // encoded by `encoder` (empty: the index's): how much the retrieved segment helps the LLM.
  static double top1_likelihood(const std::string& encoder) {
    auto dense = DenseRetriever::open(*root_ / "index", encoder);
    auto store = SegmentStore::open(*root_ / "index/segments.sqlite");
    const auto questions = read_questions(*root_ / "questions.jsonl");
    std::vector<std::string> texts;
    for (const auto& q : questions) texts.push_back(q.question);
    const auto hits = dense->search(texts, 1);
    PrefixPipeline pipeline(*llm_, torch::kFloat32);
    pipeline.load_encoder(*root_ / "ke");
    std::vector<PrefixExample> examples;
    std::vector<int64_t> rows;
    for (size_t i = 0; i < questions.size(); ++i) {
      const auto seg = store->get(hits[i].at(0).id);
      examples.push_back(pipeline.example(questions[i].question, target_answer(questions[i]),
                                          {{seg.title, seg.text}}, "test"));
      rows.push_back(static_cast<int64_t>(i));
    }
    torch::NoGradGuard no_grad;
    const auto batch = pipeline.batch(examples, rows);
    const auto scores = pipeline.scores(batch, pipeline.prefix(batch));
    double sum = 0;
    for (size_t i = 0; i < scores.size(); ++i) sum += scores[i].logprob * batch.target_lengths[i];
    return sum / static_cast<double>(scores.size());
  }

  static test::TempDir* root_;
  static std::string* llm_;
};
test::TempDir* QueryEncoderTrainerTest::root_ = nullptr;
std::string* QueryEncoderTrainerTest::llm_ = nullptr;

TEST_F(QueryEncoderTrainerTest, LearnsToRetrieveWhatTheLlmAnswersFromAndPairsWithTheIndex) {
  test::TempDir tmp;
  const std::string out = tmp / "qe";
  const auto r = train_query_encoder(options(out));
  ASSERT_EQ(r.dev_loss.size(), 4u);
  ASSERT_EQ(r.epoch_loss.size(), 4u);
  EXPECT_GT(r.llm_scores, 12 * 4 - 1);  // every question's first top-4 at least
  // The objective falls: the answers' likelihood under retrieval rises.
  EXPECT_LT(r.dev_loss[r.best_epoch], r.initial_dev_loss - 0.05)
      << r.initial_dev_loss << " -> " << r.dev_loss[r.best_epoch];
  EXPECT_LT(r.epoch_loss.back(), r.epoch_loss.front());
  // Gold ids are reported (never trained on).
  EXPECT_GE(r.initial_dev.top1, 0.0);
  EXPECT_GE(r.dev.back().top5, r.dev.back().top1);

  // The export is a query encoder paired with the index's passage encoder: the index accepts it
  // (its fingerprint differs from the one the index was built with), and the segment it puts
  // first makes the LLM's answer more likely than the starting encoder's choice did.
  const auto config = json::parse(read_file(out + "/config.json"));
  const std::string paired = config.at("kvrag_passage_encoder");
  EXPECT_EQ(fs::weakly_canonical(fs::path(out) / paired), fs::weakly_canonical(*root_ / "encoder"));
  auto dense = DenseRetriever::open(*root_ / "index", out);
  EXPECT_NE(dense->embedder().fingerprint(), dense->index().fingerprint());
  EXPECT_GT(top1_likelihood(out), top1_likelihood(""));

  const auto report = json::parse(read_file(out + "/train_report.json"));
  EXPECT_EQ(report["epochs"].size(), 4u);
  EXPECT_EQ(report["top_k"], 4);
  EXPECT_TRUE(report["epochs"][0].contains("dev"));

  // What a user runs next: the CLI searches with it.
  const auto s = test::run_kvrag("search --index " + (*root_ / "index") + " --encoder " + out +
                                 " -k 2 \"what follows\"");
  EXPECT_EQ(s.exit_code, 0) << s.err;
}

TEST_F(QueryEncoderTrainerTest, AnInterruptedRunResumesToTheSameEncoder) {
  test::TempDir tmp;
  auto whole = options(tmp / "whole");
  whole.optim.epochs = 2;
  const auto a = train_query_encoder(whole);

  auto cut = options(tmp / "cut");
  cut.optim.epochs = 2;
  cut.save_every = 1;
  cut.stop_after_steps = 4;  // mid second epoch (3 steps per epoch)
  EXPECT_TRUE(train_query_encoder(cut).stopped);
  cut.stop_after_steps = 0;
  const auto b = train_query_encoder(cut);
  EXPECT_EQ(b.steps, a.steps);
  ASSERT_EQ(b.dev_loss.size(), a.dev_loss.size());
  // The LLM's likelihoods are recomputed after the restart, in other batches: equal to float
  // rounding, not bit for bit.
  for (size_t e = 0; e < a.dev_loss.size(); ++e) {
    EXPECT_NEAR(b.dev_loss[e], a.dev_loss[e], 1e-3) << "epoch " << e;
    EXPECT_NEAR(b.epoch_loss[e], a.epoch_loss[e], 1e-3) << "epoch " << e;
  }
}

TEST_F(QueryEncoderTrainerTest, BadInputIsRefusedWithTheFileAndTheProblem) {
  test::TempDir tmp;
  auto o = options(tmp / "qe");
  o.top_k = 1;
  EXPECT_PRED2(contains, error_of(o), "--top-k must be at least 2");

  o = options(tmp / "qe");
  fs::create_directories(tmp / "bm25-only");
  fs::copy_file(*root_ / "index/segments.sqlite", tmp / "bm25-only/segments.sqlite");
  o.index = tmp / "bm25-only";
  EXPECT_PRED2(contains, error_of(o), "no dense vectors");

  o = options(tmp / "qe");
  std::ofstream(tmp / "no-answers.jsonl") << json{{"question", "what follows?"}}.dump() << "\n";
  o.train = tmp / "no-answers.jsonl";
  EXPECT_PRED2(contains, error_of(o), "no answer to train on");

  o = options(tmp / "qe");
  test::write_tiny_encoder(tmp / "other", 2);  // not the encoder the index was embedded with
  o.init = tmp / "other";
  EXPECT_PRED2(contains, error_of(o), "was built with encoder");
}

}  // namespace
}  // namespace kvrag
