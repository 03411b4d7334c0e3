// train_retriever on a tiny synthetic task: passages of random words from a 100-word vocabulary,
// questions made of a few words of their gold passage. A fresh 2-layer, 32-wide encoder has to
// learn to match them.

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "checkpoint/model_config.h"
#include "core/atomic_file.h"
#include "index/embedder.h"
#include "support/cli_runner.h"
#include "support/test_support.h"
#include "train/retriever_trainer.h"

namespace kvrag {
namespace {

using test::TempDir;
using json = nlohmann::json;

const std::vector<std::string>& words() {
  static const std::vector<std::string> w = [] {
    std::vector<std::string> out;
    const char* syllables[] = {"ka", "lo", "mi", "ren", "tu", "vas", "zor", "pel", "qui", "dan"};
    for (const char* a : syllables) {
      for (const char* b : syllables) out.push_back(std::string(a) + b);
    }
    return out;
  }();
  return w;
}

// The synthetic task in `dir`: vocab.txt, config.json, passages.jsonl, train.jsonl, dev.jsonl.
struct Task {
  explicit Task(const TempDir& dir, int n_passages = 40, int train_per_passage = 3) : dir(dir) {
    std::ofstream vocab(dir / "vocab.txt");
    for (const char* s : {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "."}) vocab << s << "\n";
    for (const auto& w : words()) vocab << w << "\n";
    vocab.close();

    BertConfig c;
    c.vocab_size = 106;
    c.hidden_size = 32;
    c.num_attention_heads = 4;
    c.num_hidden_layers = 2;
    c.intermediate_size = 64;
    c.max_position_embeddings = 64;
    std::ofstream(dir / "config.json") << c.to_json().dump(2);

    std::mt19937_64 rng(7);
    auto word = [&] { return words()[rng() % words().size()]; };
    std::vector<std::vector<std::string>> texts(n_passages);
    std::ofstream passages(dir / "passages.jsonl");
    for (int i = 0; i < n_passages; ++i) {
      std::string text;
      for (int k = 0; k < 20; ++k) {
        texts[i].push_back(word());
        text += (k ? " " : "") + texts[i].back();
      }
      passages << json{{"id", 100 + i}, {"title", word()}, {"text", text}}.dump() << "\n";
    }
    auto question = [&](int i) {
      std::string q;
      for (int k = 0; k < 4; ++k) q += (k ? " " : "") + texts[i][rng() % texts[i].size()];
      return json{{"question", q}, {"answers", {"x"}}, {"gold_passage_id", 100 + i}}.dump() + "\n";
    };
    std::ofstream train(dir / "train.jsonl"), dev(dir / "dev.jsonl");
    for (int r = 0; r < train_per_passage; ++r) {
      for (int i = 0; i < n_passages; ++i) train << question(i);
    }
    for (int i = 0; i < n_passages; ++i) dev << question(i);
  }

  RetrieverTrainOptions options(const std::string& out) const {
    RetrieverTrainOptions o;
    o.out = out;
    o.init_config = dir / "config.json";
    o.vocab = dir / "vocab.txt";
    o.questions = dir / "train.jsonl";
    o.passages = dir / "passages.jsonl";
    o.dev = dir / "dev.jsonl";
    o.temperature = 0.1;
    o.optim.lr = 3e-3;  // fresh encoder, N(0, 0.02) weights
    o.optim.warmup_steps = 2;
    o.optim.batch_size = 16;
    o.optim.epochs = 6;
    o.optim.seed = 3;
    o.progress = false;
    return o;
  }

  const TempDir& dir;
};

std::string bytes_of(const std::string& path) { return read_file(path); }

TEST(RetrieverTrainer, SupervisedTrainingImprovesDevTop5) {
  TempDir dir;
  Task task(dir);
  const auto r = train_retriever(task.options(dir / "run"));
  ASSERT_TRUE(r.finished);
  ASSERT_EQ(r.dev_top5.size(), 6u);
  EXPECT_GE(r.initial_dev_top5, 0.0);
  EXPECT_GT(r.best_dev_top5, r.initial_dev_top5 + 0.25) << "initial " << r.initial_dev_top5;
  EXPECT_GE(r.best_dev_top5, 0.7);
  EXPECT_LT(r.epoch_loss.back(), r.epoch_loss.front());
  EXPECT_EQ(r.steps, 6 * (120 / 16));

  // The exported folder is an encoder for `kvrag embed`, with the fresh encoder's pooling.
  const auto config = json::parse(read_file(dir / "run/config.json"));
  EXPECT_EQ(config.at("kvrag_pooling"), "mean");
  const auto embedder = Embedder::load(dir / "run", {"fp32"});
  EXPECT_EQ(embedder->dim(), 32);
  std::vector<float> v(2 * 32);
  embedder->encode({"kalo mimi", "tutu"}, v.data());
  for (float x : v) EXPECT_TRUE(std::isfinite(x));
  const auto report = json::parse(read_file(dir / "run/train_report.json"));
  EXPECT_EQ(report.at("epochs").size(), 6u);
  EXPECT_EQ(report.at("best_dev_top5").get<double>(), r.best_dev_top5);

  // A rerun of a finished run does nothing more.
  const auto again = train_retriever(task.options(dir / "run"));
  EXPECT_TRUE(again.resumed);
  EXPECT_EQ(again.steps, r.steps);
  EXPECT_EQ(again.examples, 0);
}

// Interrupted (as by kill -9 right after a resume point) and rerun == uninterrupted.
void expect_resume_equivalence(RetrieverTrainOptions o, const TempDir& dir, int64_t stop_after) {
  o.out = dir / "straight";
  const auto straight = train_retriever(o);
  ASSERT_TRUE(straight.finished);

  o.out = dir / "interrupted";
  o.stop_after_steps = stop_after;
  const auto first = train_retriever(o);
  ASSERT_FALSE(first.finished);
  EXPECT_EQ(first.steps, stop_after);
  o.stop_after_steps = 0;
  const auto second = train_retriever(o);
  ASSERT_TRUE(second.finished);
  EXPECT_TRUE(second.resumed);
  EXPECT_EQ(second.steps, straight.steps);
  EXPECT_EQ(second.dev_top5, straight.dev_top5);
  EXPECT_EQ(second.epoch_loss, straight.epoch_loss);
  EXPECT_TRUE(bytes_of(dir / "interrupted/model.safetensors") ==
              bytes_of(dir / "straight/model.safetensors"))
      << "exported parameters differ";
  const std::string params = "/resume/params-" + std::to_string(straight.steps) + ".safetensors";
  EXPECT_TRUE(bytes_of(dir / "interrupted" + params) == bytes_of(dir / "straight" + params));
}

TEST(RetrieverTrainer, ResumeMidEpochGivesIdenticalParameters) {
  TempDir dir;
  Task task(dir, 16, 2);
  auto o = task.options("");
  o.optim.epochs = 2;
  o.optim.batch_size = 4;
  o.optim.accumulation = 2;  // 32 examples: 8 micro-batches, 4 steps per epoch
  o.hard_negatives = true;
  o.save_every = 0;
  expect_resume_equivalence(o, dir, 3);  // mid first epoch
}

TEST(RetrieverTrainer, PretrainingByCroppingResumes) {
  TempDir dir;
  Task task(dir, 24, 1);
  auto o = task.options("");
  o.questions.clear();
  o.pretrain_corpus = dir / "passages.jsonl";
  o.optim.epochs = 2;
  o.optim.batch_size = 8;  // 3 steps per epoch
  o.separate_encoders = true;
  expect_resume_equivalence(o, dir, 4);  // in the second epoch
  EXPECT_TRUE(std::filesystem::exists(dir / "straight/query/model.safetensors"));
  EXPECT_NO_THROW(Embedder::load(dir / "straight/query", {"fp32"}));

  // An index embedded with the passage encoder searches with the query encoder trained with it
  // (a different fingerprint, paired through its config), but not with an unrelated encoder.
  const std::string index = dir / "index";
  auto r = test::run_kvrag("segment --corpus " + (dir / "passages.jsonl") + " --tokenizer " +
                           (dir / "straight") + "/vocab.txt --index " + index +
                           " --window 64 --stride 32");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = test::run_kvrag("embed --index " + index + " --encoder " + (dir / "straight") +
                      " --dtype fp32");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = test::run_kvrag("index build --index " + index + " --factory Flat");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(Embedder::load(dir / "straight/query", {"fp32"})->fingerprint(),
            Embedder::load(dir / "straight", {"fp32"})->fingerprint());
  r = test::run_kvrag("search --index " + index + " --encoder " + (dir / "straight/query") +
                      " -k 3 \"a question\"");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  r = test::run_kvrag("search --index " + index + " --encoder " + (dir / "straight/init") +
                      " -k 3 \"a question\"");
  EXPECT_EQ(r.exit_code, 1);  // the fresh start encoder: neither the index's nor paired with it
  EXPECT_TRUE(test::contains(r.err, "fingerprint")) << r.err;
}

TEST(RetrieverTrainer, VicRegTrainsWithoutErrors) {
  TempDir dir;
  Task task(dir, 16, 2);
  auto o = task.options(dir / "run");
  o.loss = "vicreg";
  o.optim.epochs = 2;
  o.optim.schedule = "plateau";
  const auto r = train_retriever(o);
  ASSERT_TRUE(r.finished);
  for (double l : r.epoch_loss) EXPECT_TRUE(std::isfinite(l));
  EXPECT_TRUE(std::filesystem::exists(dir / "run/model.safetensors"));
}

TEST(RetrieverTrainer, BadInputsNameFileAndLine) {
  TempDir dir;
  Task task(dir, 8, 1);
  auto o = task.options(dir / "run");
  o.optim.epochs = 1;

  std::ofstream(dir / "missing.jsonl")
      << json{{"question", "kaka"}, {"gold_passage_id", 100}}.dump() << "\n"
      << json{{"question", "lolo"}}.dump() << "\n";
  o.questions = dir / "missing.jsonl";
  auto msg = test::error_of([&] { train_retriever(o); });
  EXPECT_NE(msg.find(dir / "missing.jsonl"), std::string::npos) << msg;
  EXPECT_NE(msg.find("line 2"), std::string::npos) << msg;
  EXPECT_NE(msg.find("gold_passage_id"), std::string::npos) << msg;

  std::ofstream(dir / "unknown.jsonl")
      << json{{"question", "kaka"}, {"gold_passage_id", 999}}.dump() << "\n";
  o.questions = dir / "unknown.jsonl";
  msg = test::error_of([&] { train_retriever(o); });
  EXPECT_NE(msg.find("line 1"), std::string::npos) << msg;
  EXPECT_NE(msg.find("\"999\" is not in passages"), std::string::npos) << msg;

  std::ofstream(dir / "empty.jsonl") << "\n";
  o.questions = dir / "empty.jsonl";
  msg = test::error_of([&] { train_retriever(o); });
  EXPECT_NE(msg.find(dir / "empty.jsonl"), std::string::npos) << msg;
  EXPECT_NE(msg.find("no questions"), std::string::npos) << msg;

  o.questions = dir / "train.jsonl";
  o.passages = dir / "empty.jsonl";
  msg = test::error_of([&] { train_retriever(o); });
  EXPECT_NE(msg.find("no passages"), std::string::npos) << msg;

  std::ofstream(dir / "broken.jsonl")
      << json{{"id", 1}, {"text", "kaka"}}.dump() << "\n{not json\n";
  o.passages = dir / "broken.jsonl";
  msg = test::error_of([&] { train_retriever(o); });
  EXPECT_NE(msg.find("line 2"), std::string::npos) << msg;

  o = task.options(dir / "run2");
  o.init.clear();
  o.init_config.clear();
  EXPECT_NE(test::error_of([&] { train_retriever(o); }).find("--init"), std::string::npos);
}

TEST(RetrieverTrainer, ResumeRefusesOtherOptions) {
  TempDir dir;
  Task task(dir, 8, 1);
  auto o = task.options(dir / "run");
  o.optim.epochs = 1;
  o.optim.batch_size = 4;
  train_retriever(o);
  o.optim.batch_size = 2;
  const auto msg = test::error_of([&] { train_retriever(o); });
  EXPECT_NE(msg.find("batch_size"), std::string::npos) << msg;
}

TEST(RetrieverTrainer, CommandLine) {
  TempDir dir;
  Task task(dir, 16, 2);
  const auto run = test::run_kvrag(
      "train-retriever --out " + (dir / "run") + " --init-config " + (dir / "config.json") +
          " --vocab " + (dir / "vocab.txt") + " --questions " + (dir / "train.jsonl") +
          " --passages " + (dir / "passages.jsonl") + " --dev " + (dir / "dev.jsonl") +
          " --epochs 2 --batch-size 8 --lr 1e-3 --warmup 0 --hard-negatives --json",
      "", "KVRAG_THREADS=1 ");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const auto j = json::parse(run.out);
  EXPECT_EQ(j.at("dev_top5").size(), 2u);
  EXPECT_EQ(j.at("steps"), 8);
  EXPECT_GT(j.at("examples_per_s").get<double>(), 0);
  EXPECT_TRUE(std::filesystem::exists(dir / "run/model.safetensors"));

  const auto bad = test::run_kvrag(
      "train-retriever --out " + (dir / "run2") + " --init " + (dir / "run") + " --questions " +
      (dir / "train.jsonl") + " --passages " + (dir / "passages.jsonl") + " --vicreg-coeffs 1,2");
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_TRUE(test::contains(bad.err, "--vicreg-coeffs")) << bad.err;
}

}  // namespace
}  // namespace kvrag
