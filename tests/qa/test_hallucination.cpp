// Hallucination measured and acted on, end to end on the tiny models of test_answerer.cpp
// (stories260K as the LLM, a random BERT index, a fresh knowledge encoder): the groundedness
// flag and its calibration, abstention, auto mode and eval's "hallucination" block.

#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "eval/flag_metrics.h"
#include "eval/qa_metrics.h"
#include "model/knowledge_encoder.h"
#include "model/llama.h"
#include "qa/answerer.h"
#include "qa/qa_eval.h"
#include "support/cli_runner.h"
#include "support/retrieval_fixture.h"
#include "support/test_support.h"
#include "support/tiny_qa_world.h"

namespace kvrag {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using test::contains;
using test::run_kvrag;

constexpr double kInf = std::numeric_limits<double>::infinity();

class HallucinationTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string shared = test::shared_dir();
    if (shared.empty() || !fs::exists(shared + "/models/stories260K/tokenizer.model")) return;
    llm_ = new std::string(shared + "/models/stories260K");
    root_ = new test::TempDir();
    std::vector<test::TinyQuestion> questions;
    const auto r = test::write_tiny_qa_world(root_->path(), 8, /*gold=*/false, {}, &questions);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    for (const auto& q : questions) questions_->push_back(q.question);
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

  static AnswererOptions options() {
    AnswererOptions o;
    o.llm_dir = *llm_;
    o.index_dir = *root_ / "index";
    o.retriever.mode = RetrieverMode::kBm25;
    o.knowledge_encoder_dir = *root_ / "ke";
    o.max_new_tokens = 6;
    return o;
  }

  static test::TempDir* root_;
  static std::string* llm_;
  static std::vector<std::string>* questions_;
};
test::TempDir* HallucinationTest::root_ = nullptr;
std::string* HallucinationTest::llm_ = nullptr;
std::vector<std::string>* HallucinationTest::questions_ = new std::vector<std::string>();

TEST_F(HallucinationTest, AutoFallsBackToContextExactlyBelowTheThreshold) {
  auto o = options();
  const auto answerer = Answerer::open(o);
  const auto& qs = *questions_;
  const auto prefix = answerer->answer(qs, AnswerMode::kPrefix, 1);
  const auto context = answerer->answer(qs, AnswerMode::kContext, 1);

  answerer->set_flag_below({{AnswerMode::kPrefix, kInf}});  // every prefix answer flagged
  auto a = answerer->answer(qs, AnswerMode::kAuto, 1);
  for (size_t i = 0; i < qs.size(); ++i) {
    EXPECT_EQ(a[i].answered_by, "context");
    EXPECT_EQ(a[i].text, context[i].text);
    EXPECT_DOUBLE_EQ(a[i].groundedness.score(), context[i].groundedness.score());
    // both passes count: the whole prefix pass came before the context pass's first token
    EXPECT_GT(a[i].ttft_ms, a[i].retrieve_ms + a[i].encode_ms + a[i].prefill_ms);
    EXPECT_EQ(a[i].to_json()["answered_by"], "context");
  }
  answerer->set_flag_below({{AnswerMode::kPrefix, -kInf}});  // none
  a = answerer->answer(qs, AnswerMode::kAuto, 1);
  for (size_t i = 0; i < qs.size(); ++i) {
    EXPECT_EQ(a[i].answered_by, "prefix");
    EXPECT_EQ(a[i].text, prefix[i].text);
    EXPECT_EQ(a[i].flagged, std::optional<bool>(false));
  }
  // A threshold between the scores: exactly the prefix answers under it are answered again.
  std::vector<double> scores;
  for (const auto& p : prefix) scores.push_back(p.groundedness.score());
  std::vector<double> sorted = scores;
  std::sort(sorted.begin(), sorted.end());
  const double t = sorted[sorted.size() / 2];
  answerer->set_flag_below({{AnswerMode::kPrefix, t}});
  a = answerer->answer(qs, AnswerMode::kAuto, 1);
  int redone = 0;
  for (size_t i = 0; i < qs.size(); ++i) {
    const bool low = scores[i] < t;
    redone += low;
    EXPECT_EQ(a[i].answered_by, low ? "context" : "prefix") << i;
    EXPECT_EQ(a[i].text, low ? context[i].text : prefix[i].text) << i;
  }
  EXPECT_GT(redone, 0);
  EXPECT_LT(redone, static_cast<int>(qs.size()));
}

TEST_F(HallucinationTest, AutoNeedsAKnowledgeEncoderAndAThreshold) {
  auto o = options();
  o.knowledge_encoder_dir.clear();
  o.flag_below[AnswerMode::kPrefix] = 0;
  const auto bare = Answerer::open(o);
  EXPECT_TRUE(contains(test::error_of([&] { bare->answer({"q?"}, AnswerMode::kAuto, 1); }),
                       "needs a knowledge encoder"));
  const auto no_threshold = Answerer::open(options());
  EXPECT_TRUE(contains(test::error_of([&] { no_threshold->answer({"q?"}, AnswerMode::kAuto, 1); }),
                       "kvrag eval --calibrate-on"));
}

TEST_F(HallucinationTest, AbstentionAnswersUnknownBelowTheThreshold) {
  auto o = options();
  const auto plain = Answerer::open(o)->answer(*questions_, AnswerMode::kContext, 1, false);
  o.abstain_below = kInf;
  auto a = Answerer::open(o)->answer(*questions_, AnswerMode::kContext, 1, false);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_TRUE(a[i].abstained);
    EXPECT_EQ(a[i].text, "unknown");
    EXPECT_EQ(a[i].withheld, plain[i].text);  // groundedness computed though not asked
    EXPECT_EQ(a[i].to_json()["withheld_answer"], plain[i].text);
  }
  o.abstain_below = -1e300;
  a = Answerer::open(o)->answer(*questions_, AnswerMode::kContext, 1);
  for (const auto& x : a) EXPECT_FALSE(x.abstained);
}

TEST_F(HallucinationTest, EvalReportsHallucinationAndAbstention) {
  auto o = options();
  const auto answerer = Answerer::open(o);
  const auto questions = read_questions(*root_ / "questions.jsonl");
  std::vector<std::string> qs;
  for (const auto& q : questions) qs.push_back(q.question);
  const auto answers = answerer->answer(qs, AnswerMode::kContext, 1);
  std::vector<double> scores;
  for (const auto& a : answers) scores.push_back(a.groundedness.score());
  std::vector<double> sorted = scores;
  std::sort(sorted.begin(), sorted.end());
  const double t = sorted[sorted.size() / 2];
  // By hand: the answers scoring at least t are answered; their exact match.
  int answered = 0;
  double em_answered = 0, em = 0;
  std::vector<bool> wrong;
  for (size_t i = 0; i < qs.size(); ++i) {
    const double m = exact_match(answers[i].text, questions[i].answers);
    em += m;
    wrong.push_back(m < 0.5);
    if (scores[i] >= t) {
      ++answered;
      em_answered += m;
    }
  }

  o.abstain_below = t;
  o.flag_below = {{AnswerMode::kContext, t}};
  const auto abstaining = Answerer::open(o);
  QaEvalOptions eo;
  eo.modes = {AnswerMode::kContext};
  eo.batch = 16;  // one batch, as answer() above: the same scores to the last bit
  eo.progress = false;
  const auto s = evaluate_qa(*abstaining, questions, eo).summary["context"];
  const auto& ab = s["abstention"];
  EXPECT_EQ(ab["answered"].get<int>(), answered);
  EXPECT_DOUBLE_EQ(ab["coverage"].get<double>(), static_cast<double>(answered) / qs.size());
  EXPECT_DOUBLE_EQ(ab["em_answered"].get<double>(), em_answered / answered);
  const auto& h = s["hallucination"];
  EXPECT_EQ(h["n_wrong"].get<int64_t>(), std::count(wrong.begin(), wrong.end(), true));
  const auto auroc = auroc_of_low_scores(scores, wrong);
  if (auroc) EXPECT_DOUBLE_EQ(h["auroc_wrong"]["score"].get<double>(), *auroc);
  const auto flag = flag_stats(scores, wrong, t);
  EXPECT_EQ(h["flag"]["flagged"].get<int64_t>(), flag.flagged);
  EXPECT_EQ(h["flag"]["thresholds"]["context"].get<double>(), t);
  for (const char* k : {"all", "correct", "wrong"}) {
    EXPECT_TRUE(h["unsupported"].contains(k));
    EXPECT_TRUE(h["logprob_gain"].contains(k));
  }
  double gain = 0;
  for (const auto& a : answers) gain += a.groundedness.gain();
  EXPECT_NEAR(h["logprob_gain"]["all"].get<double>(), gain / qs.size(), 1e-12);
  // The curve ends answering everything, at the exact match of the answers as generated.
  EXPECT_DOUBLE_EQ(h["risk_coverage"].back()["coverage"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(h["risk_coverage"].back()["em"].get<double>(), em / qs.size());
  EXPECT_TRUE(s["ttft_ms"]["mean"].is_number());
}

TEST_F(HallucinationTest, CalibrationPicksEachModesBestFlagOnDev) {
  const auto answerer = Answerer::open(options());
  const auto questions = read_questions(*root_ / "questions.jsonl");
  QaEvalOptions eo;
  eo.modes = {AnswerMode::kAuto};
  eo.progress = false;
  const auto cal = calibrate_flags(*answerer, questions, eo);
  ASSERT_EQ(cal.size(), 2u);  // auto's answers come from prefix and context
  for (const AnswerMode m : {AnswerMode::kPrefix, AnswerMode::kContext}) {
    std::vector<std::string> qs;
    for (const auto& q : questions) qs.push_back(q.question);
    std::vector<double> scores;
    std::vector<bool> wrong;
    const auto answers = answerer->answer(qs, m, 1);
    for (size_t i = 0; i < qs.size(); ++i) {
      scores.push_back(answers[i].groundedness.score());
      wrong.push_back(exact_match(answers[i].text, questions[i].answers) < 0.5);
    }
    EXPECT_EQ(cal.at(m).threshold, calibrate_flag(scores, wrong).threshold) << to_string(m);
  }
}

TEST_F(HallucinationTest, CommandsTakeThresholdsAndCalibrate) {
  const std::string common = "--llm " + *llm_ + " --index " + (*root_ / "index") +
                             " --retriever bm25 --knowledge-encoder " + (*root_ / "ke") +
                             " --max-new-tokens 6";
  const std::string q = "\"" + (*questions_)[0] + "\"";
  auto r = run_kvrag("ask " + common + " --mode context --abstain-below abc " + q);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(contains(r.err, "--abstain-below must be a number, not \"abc\"")) << r.err;
  r = run_kvrag("ask " + common + " --mode auto " + q);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(contains(r.err, "needs a threshold")) << r.err;
  r = run_kvrag("ask " + common + " --mode auto --auto-threshold inf --json " + q);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = json::parse(r.out);
  EXPECT_EQ(j["answered_by"], "context");
  EXPECT_FALSE(j.contains("flagged"));  // no threshold for context answers was given
  EXPECT_TRUE(j["groundedness"]["score"].is_number());
  r = run_kvrag("ask " + common + " --mode prefix --abstain-below inf --json " + q);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  j = json::parse(r.out);
  EXPECT_EQ(j["answer"], "unknown");
  EXPECT_EQ(j["abstained"], true);

  const std::string questions = *root_ / "questions.jsonl";
  r = run_kvrag("eval " + common + " --questions " + questions + " --calibrate-on " + questions +
                " --modes prefix,auto --json -q");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(contains(r.err, "prefix answers flagged below a groundedness score of")) << r.err;
  const auto s = json::parse(r.out);
  for (const char* m : {"prefix", "auto"}) {
    ASSERT_TRUE(s.contains(m)) << s.dump();
    EXPECT_TRUE(s[m]["hallucination"]["flag"].is_object()) << m;
    EXPECT_TRUE(s[m]["hallucination"]["auroc_wrong"].contains("score")) << m;
  }
}

}  // namespace
}  // namespace kvrag
