#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "checkpoint/safetensors.h"
#include "core/atomic_file.h"
#include "model/knowledge_encoder.h"
#include "model/llama.h"
#include "prefix/prefix_batch.h"
#include "support/prefix_examples.h"
#include "support/test_support.h"
#include "support/tiny_models.h"
#include "text/tokenizer.h"
#include "text/wordpiece_tokenizer.h"
#include "train/prefix_trainer.h"
#include "train/train_state.h"

namespace kvrag {
namespace {

using test::memorisable_examples;
using test::TempDir;

// One train-prefix step (prefix/prefix_batch.h's loss, train_state.h's AdamW) on tiny models.
TEST(PrefixStep, LossDropsAndOnlyTheEncoderLearns) {
  torch::manual_seed(0);
  // Weights of std 0.3: a random LLM sharp enough for a prefix to steer it within 30 steps
  // (at 0.1 its logits barely move; bench/reference_train_step.py's modules behave the same).
  auto llm = test::tiny_llama(3, 0.3);
  std::vector<torch::Tensor> before;
  for (const auto& p : llm->parameters()) before.push_back(p.detach().clone());

  KnowledgeEncoder enc(test::tiny_encoder_config(4), torch::kFloat32);
  enc->init_fresh(5, 0.02);
  OptimOptions optim;
  optim.lr = 2e-2;
  optim.weight_decay = 0.0;
  auto opt = make_adamw(*enc, optim);
  // The optimizer holds the encoder's parameters only.
  size_t held = 0;
  for (const auto& g : opt->param_groups()) held += g.params().size();
  EXPECT_EQ(held, enc->parameters().size());

  const auto examples = memorisable_examples();
  const auto batch = make_prefix_batch(examples, {0, 1, 2, 3}, 0);
  double first = 0, last = 0;
  for (int step = 0; step < 30; ++step) {
    const auto prefix = batch_prefix(*enc, *llm, batch);
    auto loss = answer_loss(*llm, batch, &prefix);
    loss.backward();
    for (const auto& p : llm->parameters())
      ASSERT_FALSE(p.grad().defined()) << "the LLM got a gradient";
    if (step == 0) {
      first = loss.item<double>();
      // The gradient reaches the encoder, down to its BERT embeddings.
      EXPECT_GT(enc->encoder->embeddings->word_embeddings->weight.grad().abs().sum().item<double>(),
                0.0);
      EXPECT_GT(
          enc->prefix_heads->at<PrefixHeadImpl>(0).value->weight.grad().abs().sum().item<double>(),
          0.0);
    }
    last = loss.item<double>();
    optimizer_step(*opt, optim.lr, 1.0);
  }
  EXPECT_LT(last, 0.5 * first) << "initial " << first << ", after 30 steps " << last;
  const auto after = llm->parameters();
  for (size_t i = 0; i < before.size(); ++i)
    EXPECT_TRUE(torch::equal(before[i], after[i])) << "LLM parameter " << i;
}

// --- train_prefix end to end: stories260K (shared) as the frozen LLM --------------------------

struct PrefixRun {
  TempDir dir;
  std::string llm;
  PrefixTrainOptions options;
};

void write_lines(const std::string& path, const std::vector<nlohmann::json>& lines) {
  std::ofstream out(path);
  for (const auto& j : lines) out << j.dump() << "\n";
}

// Passages p0..p3 and questions naming them; answers are words the tiny stories model knows.
void setup(PrefixRun& run, const std::string& llm) {
  run.llm = llm;
  test::write_tiny_bert(run.dir / "bert");
  const std::vector<std::string> answers = {"cat", "dog", "ball", "tree"};
  std::vector<nlohmann::json> passages, questions;
  for (int i = 0; i < 4; ++i) {
    passages.push_back({{"id", "p" + std::to_string(i)},
                        {"title", "thing " + std::to_string(i)},
                        {"text", "the thing is a " + answers[i] + "."}});
    questions.push_back({{"question", "what is thing " + std::to_string(i) + "?"},
                         {"answers", {answers[i]}},
                         {"gold_passage_id", "p" + std::to_string(i)}});
  }
  write_lines(run.dir / "passages.jsonl", passages);
  write_lines(run.dir / "train.jsonl", questions);
  write_lines(run.dir / "dev.jsonl", {questions[0], questions[1]});
  auto& o = run.options;
  o.out = run.dir / "out";
  o.llm = llm;
  o.init = run.dir / "bert";
  o.train = run.dir / "train.jsonl";
  o.dev = run.dir / "dev.jsonl";
  o.oracle = true;
  o.passages = run.dir / "passages.jsonl";
  o.encoder.prefix_length = 4;
  o.max_new_tokens = 4;
  o.progress = false;
  o.optim.lr = 2e-3;
  o.optim.batch_size = 2;
  o.optim.epochs = 2;
  o.optim.schedule = "constant";
  o.optim.seed = 9;
  o.save_every = 1;
}

// The trainable parameters of the run's last resume point.
std::map<std::string, torch::Tensor> resume_params(const std::string& out) {
  const auto state = nlohmann::json::parse(read_file(out + "/resume/state.json"));
  const auto file =
      SafetensorsFile::open(out + "/resume/" + state["files"]["params"].get<std::string>());
  std::map<std::string, torch::Tensor> params;
  for (const auto& t : file->tensors()) {
    params[t.name] =
        torch::from_blob(const_cast<std::byte*>(t.data), t.shape, torch::kFloat32).clone();
  }
  return params;
}

// `stopped`, killed after 3 steps and run again, ends with the epoch losses of `full`.
void expect_stopped_run_resumes_to(PrefixRun& stopped, const PrefixTrainResult& full) {
  stopped.options.stop_after_steps = 3;
  EXPECT_TRUE(train_prefix(stopped.options).stopped);
  stopped.options.stop_after_steps = 0;
  EXPECT_EQ(train_prefix(stopped.options).epoch_loss, full.epoch_loss);
}

TEST(TrainPrefix, TrainsExportsAndResumesExactly) {
  KVRAG_SHARED_PATH_OR_SKIP(llm, "models/stories260K");
  PrefixRun straight, split, stopped;
  setup(straight, llm);
  setup(split, llm);
  setup(stopped, llm);

  const auto full = train_prefix(straight.options);
  EXPECT_EQ(full.steps, 4);
  EXPECT_EQ(full.epoch_loss.size(), 2u);
  EXPECT_EQ(full.dev_em.size(), 2u);
  EXPECT_GE(full.initial_dev_em, 0.0);
  EXPECT_GT(full.examples_per_s, 0.0);
  EXPECT_GT(full.peak_rss_bytes, 0);
  EXPECT_GE(full.best_epoch, 0);
  // The export is a knowledge encoder for this LLM.
  auto exported = load_knowledge_encoder(straight.options.out);
  check_compatible(exported->config(), LlamaConfig::load(llm + "/config.json"),
                   llm_fingerprint(llm), straight.options.out);
  EXPECT_TRUE(std::filesystem::exists(straight.options.out + "/vocab.txt"));
  const auto report = nlohmann::json::parse(read_file(straight.options.out + "/train_report.json"));
  EXPECT_EQ(report["epochs"].size(), 2u);
  EXPECT_GT(report["peak_rss_bytes"].get<int64_t>(), 0);
  // Each epoch says how much the dev answers rely on the evidence.
  for (const auto& e : report["epochs"]) {
    const double with = e["dev_logprob_with"], without = e["dev_logprob_without"];
    EXPECT_DOUBLE_EQ(with, -e["dev_loss"].get<double>());
    EXPECT_LT(without, 0.0);
    EXPECT_DOUBLE_EQ(e["dev_logprob_gap"].get<double>(), with - without);
    EXPECT_GE(e["dev_argmax_in_evidence"].get<double>(), 0.0);
    EXPECT_LE(e["dev_argmax_in_evidence"].get<double>(), 1.0);
  }

  // 1 epoch, then the same run asked for 2 epochs resumes at epoch 2.
  split.options.optim.epochs = 1;
  EXPECT_EQ(train_prefix(split.options).steps, 2);
  split.options.optim.epochs = 2;
  const auto resumed = train_prefix(split.options);
  EXPECT_EQ(resumed.steps, 4);
  EXPECT_EQ(resumed.epoch_loss, full.epoch_loss);

  // Killed after 3 steps (mid epoch 2), then rerun.
  stopped.options.stop_after_steps = 3;
  EXPECT_TRUE(train_prefix(stopped.options).stopped);
  stopped.options.stop_after_steps = 0;
  const auto finished = train_prefix(stopped.options);
  EXPECT_EQ(finished.epoch_loss, full.epoch_loss);
  EXPECT_EQ(finished.dev_em, full.dev_em);

  const auto a = resume_params(straight.options.out);
  for (auto* other : {&split, &stopped}) {
    const auto b = resume_params(other->options.out);
    ASSERT_EQ(a.size(), b.size());
    for (const auto& [name, t] : a) EXPECT_TRUE(torch::equal(t, b.at(name))) << name;
  }
}

TEST(TrainPrefix, TokenReadoutTrainsAndResumesExactly) {
  KVRAG_SHARED_PATH_OR_SKIP(llm, "models/stories260K");
  PrefixRun straight, stopped;
  for (auto* run : {&straight, &stopped}) {
    setup(*run, llm);
    run->options.encoder.readout = Readout::kTokens;
    run->options.encoder.max_segment_tokens = 40;  // P: one entry per segment token
  }
  const auto full = train_prefix(straight.options);
  EXPECT_EQ(full.steps, 4);
  EXPECT_LT(full.epoch_loss.back(), full.epoch_loss.front());
  auto exported = load_knowledge_encoder(straight.options.out);
  EXPECT_EQ(exported->config().readout, Readout::kTokens);
  EXPECT_EQ(exported->config().prefix_length, 40);
  const auto report = nlohmann::json::parse(read_file(straight.options.out + "/train_report.json"));
  EXPECT_EQ(report["readout"], "tokens");
  EXPECT_EQ(report["prefix_length"], 40);

  expect_stopped_run_resumes_to(stopped, full);
}

// Segments cut into the LLM's pieces, keys placed at the answer, batches grouped by length:
// trains, records all three, and resumes exactly.
TEST(TrainPrefix, LlmPiecesPlacedKeysAndLengthGroupsTrainAndResumeExactly) {
  KVRAG_SHARED_PATH_OR_SKIP(llm, "models/stories260K");
  PrefixRun straight, stopped;
  for (auto* run : {&straight, &stopped}) {
    setup(*run, llm);
    run->options.encoder.readout = Readout::kTokens;
    run->options.encoder.max_segment_tokens = 40;
    run->options.encoder.segment_tokenizer = SegmentTokenizer::kLlm;
    run->options.encoder.key_position = KeyPosition::kAnswer;
    run->options.group_by_length = true;
  }
  const auto full = train_prefix(straight.options);
  EXPECT_EQ(full.steps, 4);
  EXPECT_LT(full.epoch_loss.back(), full.epoch_loss.front());
  auto exported = load_knowledge_encoder(straight.options.out);
  EXPECT_EQ(exported->config().segment_tokenizer, SegmentTokenizer::kLlm);
  EXPECT_EQ(exported->config().key_position, KeyPosition::kAnswer);
  const auto report = nlohmann::json::parse(read_file(straight.options.out + "/train_report.json"));
  EXPECT_EQ(report["segment_tokenizer"], "llm");
  EXPECT_EQ(report["key_position"], "answer");
  EXPECT_EQ(report["group_by_length"], true);

  expect_stopped_run_resumes_to(stopped, full);
}

// Gold passages among distractors (oracle mode): every batch reads 1 to 1 + N segments, the
// report bounds the top-k at 1 + N, and an interrupted run resumes exactly (the draws depend on
// the seed and the batch, not on the process).
TEST(TrainPrefix, DistractorsTrainAndResumeExactly) {
  KVRAG_SHARED_PATH_OR_SKIP(llm, "models/stories260K");
  PrefixRun plain, straight, stopped;
  for (auto* run : {&plain, &straight, &stopped}) {
    setup(*run, llm);
    run->options.encoder.readout = Readout::kTokens;
    run->options.encoder.max_segment_tokens = 40;
    run->options.encoder.segment_tokenizer = SegmentTokenizer::kLlm;
    run->options.encoder.key_position = KeyPosition::kAnswer;
    run->options.optim.epochs = 3;
    if (run != &plain) run->options.distractors = 2;
  }
  const auto without = train_prefix(plain.options);
  const auto full = train_prefix(straight.options);
  EXPECT_EQ(full.steps, 6);
  EXPECT_LT(full.epoch_loss.back(), full.epoch_loss.front());
  // The other passages reach the LLM: the same examples, seed and steps give other losses.
  EXPECT_NE(full.epoch_loss, without.epoch_loss);
  const auto report = nlohmann::json::parse(read_file(straight.options.out + "/train_report.json"));
  EXPECT_EQ(report["distractors"], 2);
  EXPECT_EQ(report["top_k"], 3);  // what the answer defaults cap a prefix top-k at

  expect_stopped_run_resumes_to(stopped, full);
}

TEST(TrainPrefix, ClearErrors) {
  KVRAG_SHARED_PATH_OR_SKIP(llm, "models/stories260K");
  PrefixRun run;
  setup(run, llm);
  auto o = run.options;

  // An empty answer names the file and the question.
  write_lines(run.dir / "bad.jsonl",
              {{{"question", "q one?"}, {"answers", {"cat"}}, {"gold_passage_id", "p0"}},
               {{"question", "q two?"}, {"answers", {"  "}}, {"gold_passage_id", "p1"}}});
  o.train = run.dir / "bad.jsonl";
  auto e = test::error_of([&] { train_prefix(o); });
  EXPECT_NE(e.find("bad.jsonl: question 2"), std::string::npos) << e;
  EXPECT_NE(e.find("empty answer"), std::string::npos) << e;

  // A gold passage that is not in the passages file.
  write_lines(run.dir / "bad.jsonl",
              {{{"question", "q?"}, {"answers", {"cat"}}, {"gold_passage_id", "nope"}}});
  e = test::error_of([&] { train_prefix(o); });
  EXPECT_NE(e.find("gold passage nope"), std::string::npos) << e;

  // Question + answer + prefix beyond the LLM's 512 positions.
  std::string long_question;
  for (int i = 0; i < 300; ++i) long_question += "word ";
  write_lines(run.dir / "bad.jsonl",
              {{{"question", long_question}, {"answers", {"cat"}}, {"gold_passage_id", "p0"}}});
  e = test::error_of([&] { train_prefix(o); });
  EXPECT_NE(e.find("positions"), std::string::npos) << e;

  // A knowledge encoder made for another LLM (the tiny one) cannot continue on stories260K.
  test::write_tiny_llama(run.dir / "other-llm");
  KnowledgeEncoderOptions options;
  options.prefix_length = 4;
  auto other = init_knowledge_encoder(run.dir / "bert", *load_llama(run.dir / "other-llm"), nullptr,
                                      llm_fingerprint(run.dir / "other-llm"), options, 1);
  save_knowledge_encoder(*other, run.dir / "other-ke", run.dir / "bert/vocab.txt");
  o = run.options;
  o.init = run.dir / "other-ke";
  e = test::error_of([&] { train_prefix(o); });
  EXPECT_NE(e.find("was made for an LLM with layers 2"), std::string::npos) << e;

  // The LLM's token embeddings need the tokens readout and the LLM's hidden size (stories260K:
  // 64, the tiny encoder: 32).
  o = run.options;
  o.encoder.llm_embeddings = true;
  EXPECT_NE(test::error_of([&] { train_prefix(o); }).find("llm_embeddings needs readout tokens"),
            std::string::npos);
  o.encoder.readout = Readout::kTokens;
  e = test::error_of([&] { train_prefix(o); });
  EXPECT_NE(e.find("hidden size"), std::string::npos) << e;

  // Distractors come with gold passages only, and not with the fairness term.
  o = run.options;
  o.distractors = 2;
  o.fairness_weight = 1;
  EXPECT_NE(test::error_of([&] { train_prefix(o); }).find("--distractors and --fairness-weight"),
            std::string::npos);
  o.oracle = false;
  o.fairness_weight = 0;
  EXPECT_NE(test::error_of([&] { train_prefix(o); }).find("--distractors needs --oracle"),
            std::string::npos);

  // No segment source.
  o = run.options;
  o.oracle = false;
  EXPECT_NE(test::error_of([&] { train_prefix(o); }).find("segment source"), std::string::npos);
}

}  // namespace
}  // namespace kvrag
