// train-prefix with a fairness term (train/fairness_objective.h) on stories260K (shared) and a
// tiny BERT: each term trains, is reported, resumes exactly, and moves what it should.

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/error.h"
#include "support/test_support.h"
#include "support/tiny_models.h"
#include "train/fairness_objective.h"
#include "train/prefix_trainer.h"

namespace kvrag {
namespace {

using test::TempDir;

void write_lines(const std::string& path, const std::vector<nlohmann::json>& lines) {
  std::ofstream out(path);
  for (const auto& j : lines) out << j.dump() << "\n";
}

// Passages p0..p5 each saying a thing and a group (red or blue), twins t0..t5 saying the other
// group; questions naming both, in groups of three.
PrefixTrainOptions setup(const TempDir& dir, const std::string& llm) {
  test::write_tiny_bert(dir / "bert");
  const std::vector<std::string> answers = {"cat", "dog", "ball", "tree", "sun", "bird"};
  std::vector<nlohmann::json> passages, questions;
  for (int i = 0; i < 6; ++i) {
    const std::string id = std::to_string(i);
    const std::string group = i < 3 ? "red" : "blue", other = i < 3 ? "blue" : "red";
    const std::string text = "the thing is a " + answers[i] + ". it is in the ";
    passages.push_back({{"id", "p" + id}, {"title", "thing " + id}, {"text", text + group + "."}});
    passages.push_back({{"id", "t" + id}, {"title", "thing " + id}, {"text", text + other + "."}});
    questions.push_back({{"question", "what is thing " + id + "?"},
                         {"answers", {answers[i]}},
                         {"gold_passage_id", "p" + id},
                         {"group", group},
                         {"twin_passage_id", "t" + id}});
  }
  write_lines(dir / "passages.jsonl", passages);
  write_lines(dir / "train.jsonl", questions);
  PrefixTrainOptions o;
  o.out = dir / "out";
  o.llm = llm;
  o.init = dir / "bert";
  o.train = dir / "train.jsonl";
  o.oracle = true;
  o.passages = dir / "passages.jsonl";
  // One entry per segment token, heads large enough that the prefix moves the LLM's answer:
  // a twin's prefix then changes the answer distribution measurably.
  o.encoder.readout = Readout::kTokens;
  o.encoder.max_segment_tokens = 40;
  o.encoder.head_std = 0.5;
  o.progress = false;
  o.optim.lr = 2e-3;
  o.optim.batch_size = 6;  // both groups in every batch
  o.optim.epochs = 6;
  o.optim.schedule = "constant";
  o.optim.seed = 3;
  o.save_every = 1;
  o.fairness_weight = 5;
  return o;
}

std::vector<double> fairness_terms(const std::string& out) {
  const auto report = nlohmann::json::parse(read_file(out + "/train_report.json"));
  std::vector<double> terms;
  for (const auto& e : report.at("epochs")) terms.push_back(e.at("fairness_term").get<double>());
  return terms;
}

// Each term is reported per epoch, falls as the encoder trains against it, and a run killed
// mid-way resumes to the same losses.
TEST(FairnessObjective, EachTermTrainsFallsAndResumesExactly) {
  KVRAG_SHARED_PATH_OR_SKIP(llm, "models/stories260K");
  for (const auto kind : {FairnessLoss::kCounterfactual, FairnessLoss::kDecorrelation}) {
    SCOPED_TRACE(enum_name(kind));
    TempDir straight, stopped;
    auto o = setup(straight, llm);
    o.fairness_loss = kind;
    const auto full = train_prefix(o);
    const auto report = nlohmann::json::parse(read_file(o.out + "/train_report.json"));
    EXPECT_EQ(report.at("fairness_weight").get<double>(), 5.0);
    EXPECT_EQ(report.at("fairness_loss").get<std::string>(), enum_name(kind));
    const auto terms = fairness_terms(o.out);
    ASSERT_EQ(terms.size(), 6u);
    EXPECT_GT(terms.front(), 1e-3) << "a term too small to mean anything";
    EXPECT_LT(terms.back(), terms.front());

    auto s = setup(stopped, llm);
    s.fairness_loss = kind;
    s.stop_after_steps = 3;
    EXPECT_TRUE(train_prefix(s).stopped);
    s.stop_after_steps = 0;
    EXPECT_EQ(train_prefix(s).epoch_loss, full.epoch_loss);
    EXPECT_EQ(fairness_terms(s.out), terms);
  }
}

// λ = 0 is plain training: the same losses as a run that never heard of fairness, and no term in
// the report.
TEST(FairnessObjective, ZeroWeightIsPlainTraining) {
  KVRAG_SHARED_PATH_OR_SKIP(llm, "models/stories260K");
  TempDir a, b;
  auto plain = setup(a, llm);
  plain.fairness_weight = 0;
  plain.optim.epochs = 2;
  auto zero = setup(b, llm);
  zero.fairness_weight = 0;
  zero.fairness_loss = FairnessLoss::kBoth;
  zero.optim.epochs = 2;
  EXPECT_EQ(train_prefix(plain).epoch_loss, train_prefix(zero).epoch_loss);
  const auto report = nlohmann::json::parse(read_file(zero.out + "/train_report.json"));
  EXPECT_FALSE(report.at("epochs")[0].contains("fairness_term"));
}

// Answer balancing: an answer more frequent than the quantile's count weighs down to it, the
// weights scaled to mean 1.
TEST(FairnessObjective, AnswerBalanceWeightsCapFrequentAnswers) {
  std::vector<std::string> answers(6, "Stek");
  answers[1] = "stek.";  // the same answer, normalised
  for (const char* a : {"Tros", "the Tros", "Bamaford", "Norvale"}) answers.push_back(a);
  // counts 6 (×6), 2 (×2), 1, 1; sorted 1 1 2 2 6 6 6 6 6 6: the 0.4-quantile is 2
  const auto w = answer_balance_weights(answers, 0.4);
  ASSERT_EQ(w.size(), 10u);
  for (int i = 0; i < 6; ++i) EXPECT_NEAR(w[i], 10.0 / 6.0 / 3.0, 1e-6);  // 2/6, scaled by 10/6
  for (int i = 6; i < 10; ++i) EXPECT_NEAR(w[i], 10.0 / 6.0, 1e-6);
  for (const float v : answer_balance_weights(answers, 1.0)) EXPECT_EQ(v, 1.0f);  // the largest
  const auto median = answer_balance_weights(answers, 0.5);  // the 5th count: 6, nothing capped
  for (const float v : median) EXPECT_EQ(v, 1.0f);
  EXPECT_TRUE(answer_balance_weights({}, 0.9).empty());
  EXPECT_THROW(answer_balance_weights(answers, 0.0), Error);
  EXPECT_THROW(answer_balance_weights(answers, 1.5), Error);
}

// Balanced training: with every answer distinct the weights are all 1 and the losses those of
// plain training; with repeated answers the run weighs them down, reports Q and resumes exactly.
TEST(FairnessObjective, BalancedAnswersWeighTheLossAndResume) {
  KVRAG_SHARED_PATH_OR_SKIP(llm, "models/stories260K");
  TempDir a, b, c, d;
  auto plain = setup(a, llm);
  plain.fairness_weight = 0;
  plain.optim.epochs = 2;
  auto balanced = setup(b, llm);
  balanced.fairness_weight = 0;
  balanced.balance_answers = 0.5;
  balanced.optim.epochs = 2;
  const auto p = train_prefix(plain).epoch_loss;
  const auto q = train_prefix(balanced).epoch_loss;
  ASSERT_EQ(p.size(), q.size());
  for (size_t e = 0; e < p.size(); ++e) EXPECT_NEAR(p[e], q[e], 1e-5 * std::abs(p[e]));
  EXPECT_EQ(nlohmann::json::parse(read_file(balanced.out + "/train_report.json"))
                .at("balance_answers")
                .get<double>(),
            0.5);

  // Four of the six things answered "cat": capped at the 0.3-quantile's count, 1, those four
  // weigh 1/4 before scaling, the other two 1.
  const auto repeated = [&](const TempDir& dir) {
    auto o = setup(dir, llm);
    std::ifstream in(o.train);
    std::vector<nlohmann::json> questions;
    for (std::string line; std::getline(in, line);)
      questions.push_back(nlohmann::json::parse(line));
    for (int i = 1; i < 4; ++i) questions[i]["answers"] = {"cat"};
    write_lines(dir / "train.jsonl", questions);
    o.fairness_weight = 0;
    o.balance_answers = 0.3;
    o.optim.epochs = 2;
    return o;
  };
  auto straight = repeated(c);
  const auto full = train_prefix(straight).epoch_loss;
  auto unweighted = repeated(c);
  unweighted.balance_answers = 0;
  unweighted.out = c / "unweighted";
  EXPECT_NE(train_prefix(unweighted).epoch_loss, full);
  auto stopped = repeated(d);
  stopped.stop_after_steps = 1;
  EXPECT_TRUE(train_prefix(stopped).stopped);
  stopped.stop_after_steps = 0;
  EXPECT_EQ(train_prefix(stopped).epoch_loss, full);
}

TEST(FairnessObjective, ClearErrors) {
  KVRAG_SHARED_PATH_OR_SKIP(llm, "models/stories260K");
  TempDir dir;
  auto o = setup(dir, llm);
  // Questions without groups or twins.
  write_lines(
      dir / "plain.jsonl",
      {{{"question", "what is thing 0?"}, {"answers", {"cat"}}, {"gold_passage_id", "p0"}}});
  o.train = dir / "plain.jsonl";
  o.fairness_loss = FairnessLoss::kDecorrelation;
  auto e = test::error_of([&] { train_prefix(o); });
  EXPECT_NE(e.find("\"group\" takes exactly two values; found 0"), std::string::npos) << e;
  o.fairness_loss = FairnessLoss::kCounterfactual;
  e = test::error_of([&] { train_prefix(o); });
  EXPECT_NE(e.find("twin_passage_id"), std::string::npos) << e;
  // A twin that is not among the passages.
  write_lines(dir / "lost.jsonl", {{{"question", "what is thing 0?"},
                                    {"answers", {"cat"}},
                                    {"gold_passage_id", "p0"},
                                    {"twin_passage_id", "nowhere"}}});
  o.train = dir / "lost.jsonl";
  e = test::error_of([&] { train_prefix(o); });
  EXPECT_NE(e.find("nowhere"), std::string::npos) << e;
}

}  // namespace
}  // namespace kvrag
