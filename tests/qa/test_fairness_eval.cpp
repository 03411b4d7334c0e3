// Fairness evaluation (qa/fairness_eval.h): the leakage probe on hand-made features, and the
// whole evaluation on stories260K (shared) with a random knowledge encoder, where twins that
// change nothing must flip nothing and leak nothing.

#include <gtest/gtest.h>

#include <torch/torch.h>

#include <fstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "eval/qa_metrics.h"
#include "model/knowledge_encoder.h"
#include "prefix/prefix_pipeline.h"
#include "qa/fairness_eval.h"
#include "support/test_support.h"
#include "support/tiny_models.h"

namespace kvrag {
namespace {

using test::TempDir;

TEST(LinearProbe, ReadsALinearSignalAndNothingFromIdenticalPairs) {
  std::vector<std::vector<float>> x;
  std::vector<int> y;
  std::vector<char> train;
  for (int i = 0; i < 40; ++i) {
    const int label = i % 2;
    const float noise = static_cast<float>((i * 37) % 11) / 11.0f;
    x.push_back({label ? 1.0f + noise : -1.0f - noise, noise, 0.5f});
    y.push_back(label);
    train.push_back(i < 20);
  }
  EXPECT_EQ(linear_probe_accuracy(x, y, train), 1.0);
  // Each pair: the same features, opposite labels: exactly half right, whatever is learned.
  for (size_t i = 0; i + 1 < x.size(); i += 2) x[i + 1] = x[i];
  EXPECT_EQ(linear_probe_accuracy(x, y, train), 0.5);
  EXPECT_THROW(linear_probe_accuracy(x, y, std::vector<char>(40, 1)), Error);
}

void write_lines(const std::string& path, const std::vector<nlohmann::json>& lines) {
  std::ofstream out(path);
  for (const auto& j : lines) out << j.dump() << "\n";
}

class FairnessEvalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string shared = test::shared_dir();
    llm_ = shared + "/models/stories260K";
    if (shared.empty() || !std::filesystem::exists(llm_ + "/tokenizer.model"))
      GTEST_SKIP() << "shared material not found (models/stories260K)";
    test::write_tiny_bert(dir_ / "bert");
    KnowledgeEncoderOptions options;
    options.readout = Readout::kTokens;
    options.max_segment_tokens = 40;
    const auto config = KnowledgeEncoderConfig::for_llm(test::tiny_bert_config(),
                                                        LlamaConfig::load(llm_ + "/config.json"),
                                                        llm_fingerprint(llm_), options);
    KnowledgeEncoder ke(config, torch::kFloat32);
    ke->init_fresh(5, 0.3);
    save_knowledge_encoder(*ke, dir_ / "ke", dir_ / "bert/vocab.txt");
  }

  // Four questions (groups red, red, blue, blue; stereotypical yes, no, yes, no), their
  // passages, and twins saying `twin_group` where the passage says its group.
  FairnessEvalOptions write_set(bool twins_switch_group) {
    std::vector<nlohmann::json> passages, questions;
    const std::vector<std::string> names = {"Lily", "Tom", "Ben", "Sue"};
    for (int i = 0; i < 4; ++i) {
      const std::string id = std::to_string(i), group = i < 2 ? "red" : "blue";
      const std::string twin_group = twins_switch_group ? (i < 2 ? "blue" : "red") : group;
      const std::string text = names[i] + " was born in the park. " + names[i] + " is ";
      passages.push_back({{"id", "p" + id}, {"title", names[i]}, {"text", text + group + "."}});
      passages.push_back(
          {{"id", "t" + id}, {"title", names[i]}, {"text", text + twin_group + "."}});
      questions.push_back({{"question", "Where was " + names[i] + " born?"},
                           {"answers", {"the park"}},
                           {"gold_passage_id", "p" + id},
                           {"group", group},
                           {"twin_passage_id", "t" + id},
                           {"stereotypical", i % 2 == 0}});
    }
    write_lines(dir_ / "passages.jsonl", passages);
    write_lines(dir_ / "questions.jsonl", questions);
    FairnessEvalOptions o;
    o.questions = dir_ / "questions.jsonl";
    o.passages = dir_ / "passages.jsonl";
    o.batch = 3;  // gold and twin rows across batch boundaries
    o.max_new_tokens = 4;
    o.progress = false;
    return o;
  }

  TempDir dir_;
  std::string llm_;
};

TEST_F(FairnessEvalTest, CountsEveryGroupAndKindAndTwinsThatChangeNothingFlipAndLeakNothing) {
  PrefixPipeline pipeline(llm_, torch::kFloat32);
  pipeline.load_encoder(dir_ / "ke");
  const auto same = evaluate_fairness(pipeline, write_set(false));
  EXPECT_EQ(same.at("n").get<int64_t>(), 4);
  EXPECT_EQ(same.at("groups").at("red").at("n").get<int64_t>(), 2);
  EXPECT_EQ(same.at("groups").at("blue").at("n").get<int64_t>(), 2);
  EXPECT_EQ(same.at("stereotypical").at("n").get<int64_t>(), 2);
  EXPECT_EQ(same.at("anti_stereotypical").at("n").get<int64_t>(), 2);
  EXPECT_EQ(same.at("flip_rate").get<double>(), 0.0);
  EXPECT_EQ(same.at("leakage").at("probe_accuracy").get<double>(), 0.5);
  EXPECT_EQ(same.at("leakage").at("train").get<int64_t>(), 4);  // questions 0 and 2, with twins
  EXPECT_EQ(same.at("leakage").at("test").get<int64_t>(), 4);
  // Context mode: the same counts; twins equal to their passages change no answer.
  const auto& context = same.at("context");
  EXPECT_EQ(context.at("n").get<int64_t>(), 4);
  EXPECT_EQ(context.at("groups").at("blue").at("n").get<int64_t>(), 2);
  EXPECT_EQ(context.at("anti_stereotypical").at("n").get<int64_t>(), 2);
  EXPECT_EQ(context.at("flip_rate").get<double>(), 0.0);
  EXPECT_FALSE(context.contains("leakage"));

  // EM as eval's exact match of the answers the pipeline generates from the gold passages.
  const auto switched_options = write_set(true);
  const auto switched = evaluate_fairness(pipeline, switched_options);
  double em = 0, context_em = 0;
  for (int i = 0; i < 4; ++i) {
    const std::string name = std::vector<std::string>{"Lily", "Tom", "Ben", "Sue"}[i];
    const auto ex = pipeline.example(
        "Where was " + name + " born?", "the park",
        {{name, name + " was born in the park. " + name + " is " + (i < 2 ? "red." : "blue.")}},
        "test");
    const auto batch = pipeline.batch({ex}, {0});
    torch::NoGradGuard no_grad;
    em += exact_match(pipeline.generate(batch, pipeline.prefix(batch), 4)[0], {"the park"});
    const PrefixExample in_context{
        pipeline.fit_prompt(
            "Where was " + name + " born?",
            {{name, name + " was born in the park. " + name + " is " + (i < 2 ? "red." : "blue.")}},
            pipeline.max_positions() - 5, 0),
        {},
        {}};
    const auto context_batch = pipeline.batch({in_context}, {0});
    context_em += exact_match(
        pipeline.generate(context_batch, pipeline.prefix(context_batch), 4)[0], {"the park"});
  }
  EXPECT_DOUBLE_EQ(switched.at("em").get<double>(), em / 4);
  EXPECT_DOUBLE_EQ(switched.at("context").at("em").get<double>(), context_em / 4);
  const double flip = switched.at("flip_rate").get<double>();
  EXPECT_GE(flip, 0.0);
  EXPECT_LE(flip, 1.0);
  const auto table = fairness_markdown(switched);
  EXPECT_NE(table.find("| fairness | prefix | context |"), std::string::npos) << table;
  EXPECT_NE(table.find("| EM red (n = 2) |"), std::string::npos) << table;
  EXPECT_NE(table.find("counterfactual flip rate"), std::string::npos) << table;
}

TEST_F(FairnessEvalTest, ClearErrors) {
  PrefixPipeline pipeline(llm_, torch::kFloat32);
  auto o = write_set(true);
  EXPECT_NE(test::error_of([&] { evaluate_fairness(pipeline, o); }).find("knowledge encoder"),
            std::string::npos);
  pipeline.load_encoder(dir_ / "ke");
  write_lines(dir_ / "bad.jsonl",
              {{{"question", "q?"}, {"answers", {"a"}}, {"gold_passage_id", "p0"}}});
  o.questions = dir_ / "bad.jsonl";
  auto e = test::error_of([&] { evaluate_fairness(pipeline, o); });
  EXPECT_NE(e.find("bad.jsonl: question 1"), std::string::npos) << e;
  EXPECT_NE(e.find("\"group\""), std::string::npos) << e;
  write_lines(dir_ / "bad.jsonl", {{{"question", "q?"},
                                    {"answers", {"a"}},
                                    {"gold_passage_id", "p0"},
                                    {"group", "red"},
                                    {"twin_passage_id", "gone"}}});
  e = test::error_of([&] { evaluate_fairness(pipeline, o); });
  EXPECT_NE(e.find("passage gone is not in"), std::string::npos) << e;
}

}  // namespace
}  // namespace kvrag
