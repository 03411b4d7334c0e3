// LLM pre-training from scratch: the loss falls on a tiny run, the exported folder reloads to
// the same logits, and a rerun of a finished run resumes instead of starting over.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include <filesystem>

#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "model/llama.h"
#include "model/weights.h"
#include "support/test_support.h"
#include "text/sentencepiece_tokenizer.h"
#include "text/sentencepiece_trainer.h"
#include "train/lm_trainer.h"

namespace kvrag {
namespace {

// A small text with structure to learn: the same question/answer lines in many examples.
void write_text(const std::string& path) {
  const std::vector<std::string> names = {"Kora Vell", "Tamo Drin", "Ulla Pesk", "Brin Maro",
                                          "Seda Lont"};
  const std::vector<std::string> cities = {"Arnsby", "Velport", "Trosk", "Maldor", "Quen"};
  std::string text;
  for (int rep = 0; rep < 8; ++rep) {
    for (size_t i = 0; i < names.size(); ++i) {
      text += names[i] + " was born in " + cities[i] + ". " + names[i] + " likes old maps.\n\n";
      text += "Question: Where was " + names[i] + " born?\nAnswer: " + cities[i] + "\n\n";
    }
  }
  write_file_atomic(path, text);
}

LmTrainOptions tiny_run(const test::TempDir& dir) {
  LmTrainOptions o;
  o.text_path = dir / "lm.txt";
  o.tokenizer_path = dir / "tokenizer.model";
  o.config_path = dir / "config.json";
  o.out_dir = dir / "run";
  o.context = 32;
  o.progress = false;
  o.optim.lr = 1e-2;
  o.optim.warmup_steps = 2;
  o.optim.epochs = 6;
  o.optim.batch_size = 4;
  o.optim.seed = 3;
  o.resume_every = 5;
  return o;
}

void prepare(const test::TempDir& dir) {
  write_text(dir / "lm.txt");
  SentencePieceTrainOptions so;
  so.vocab_size = 330;  // 256 byte pieces, the characters, a few merges
  train_sentencepiece(dir / "lm.txt", dir / "tokenizer.model", so);
  LlamaConfig c = lm_preset("micro", 384, 64);
  c.hidden_size = 32;
  c.intermediate_size = 64;
  c.num_hidden_layers = 2;
  c.num_attention_heads = c.num_key_value_heads = 2;
  c.head_dim = 16;
  write_file_atomic(dir / "config.json", c.to_json().dump());
}

TEST(LmTrainer, LossFallsAndTheExportReloadsToTheSameLogits) {
  test::TempDir dir;
  prepare(dir);
  const auto r = train_lm(tiny_run(dir));
  EXPECT_GT(r.steps, 20);
  EXPECT_LT(r.final_loss, r.first_loss * 0.6) << r.first_loss << " -> " << r.final_loss;
  for (const char* f : {"config.json", "model.safetensors", "tokenizer.model", "train_log.json"}) {
    EXPECT_TRUE(std::filesystem::exists(dir / ("run/" + std::string(f)))) << f;
  }

  // Reload the export and compare with a second load; greedy answer of a seen question.
  auto model = load_llama(dir / "run");
  SentencePieceTokenizer tok(dir / "run/tokenizer.model");
  const auto ids32 = tok.encode("Question: Where was Tamo Drin born?\nAnswer:");
  const auto ids = torch::tensor(std::vector<int64_t>(ids32.begin(), ids32.end())).unsqueeze(0);
  torch::NoGradGuard no_grad;
  const auto logits = model->forward(ids);
  const auto again = load_llama(dir / "run")->forward(ids);
  EXPECT_TRUE(torch::equal(logits, again));
  EXPECT_EQ(model->config().bos_token_id, tok.bos_id());
  const int64_t next = logits[0][-1].argmax().item<int64_t>();
  // the answer starts after a space
  EXPECT_EQ(tok.decode({static_cast<TokenId>(next)}).find(" "), 0u);

  // A finished run reruns as a resume: no training step, same export.
  const auto r2 = train_lm(tiny_run(dir));
  EXPECT_TRUE(r2.resumed);
  EXPECT_TRUE(torch::equal(load_llama(dir / "run")->forward(ids), logits));
}

// Mean negative log-likelihood of " {city}" after "Question: Where was {name} born?\nAnswer:".
double answer_nll(const std::string& run) {
  auto model = load_llama(run);
  SentencePieceTokenizer tok(run + "/tokenizer.model");
  torch::NoGradGuard no_grad;
  double sum = 0;
  int n = 0;
  for (const auto& [name, city] : std::vector<std::pair<std::string, std::string>>{
           {"Kora Vell", "Arnsby"}, {"Tamo Drin", "Velport"}, {"Ulla Pesk", "Trosk"}}) {
    const auto prompt = tok.encode("Question: Where was " + name + " born?\nAnswer:");
    const auto whole = tok.encode("Question: Where was " + name + " born?\nAnswer: " + city);
    const auto ids = torch::tensor(std::vector<int64_t>(whole.begin(), whole.end())).unsqueeze(0);
    const auto logp = torch::log_softmax(model->forward(ids)[0], -1);  // [T, V]
    for (size_t t = prompt.size(); t < whole.size(); ++t, ++n)
      sum -= logp[t - 1][whole[t]].item<double>();
  }
  return sum / n;
}

TEST(LmTrainer, AnswerWeightTeachesTheAnswersMoreStrongly) {
  test::TempDir plain, weighted;
  prepare(plain);
  prepare(weighted);
  auto a = tiny_run(plain);
  auto b = tiny_run(weighted);
  a.optim.epochs = b.optim.epochs = 2;
  b.answer_weight = 8;
  train_lm(a);
  train_lm(b);
  EXPECT_LT(answer_nll(weighted / "run"), answer_nll(plain / "run"));
  const auto log = nlohmann::json::parse(read_file(weighted / "run/train_log.json"));
  EXPECT_EQ(log.at("answer_weight").get<double>(), 8.0);

  // Without "Answer:" lines the weight changes nothing.
  test::TempDir docs_a, docs_b;
  for (const auto* d : {&docs_a, &docs_b}) {
    prepare(*d);
    write_file_atomic(*d / "lm.txt",
                      "Kora Vell was born in Arnsby.\n\nTamo Drin likes old maps.\n\nUlla Pesk was "
                      "born in Trosk.\n\n");
  }
  auto c = tiny_run(docs_a);
  auto e = tiny_run(docs_b);
  e.answer_weight = 8;
  train_lm(c);
  train_lm(e);
  const auto ids = torch::arange(3, 20).unsqueeze(0);
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::equal(load_llama(docs_a / "run")->forward(ids),
                           load_llama(docs_b / "run")->forward(ids)));
  a.answer_weight = 0;
  EXPECT_NE(test::error_of([&] { train_lm(a); }).find("answer weight"), std::string::npos);
}

TEST(LmTrainer, InterruptedRunResumesToTheSameModel) {
  test::TempDir a, b;
  prepare(a);
  prepare(b);
  auto full = tiny_run(a);
  full.optim.epochs = 2;
  EXPECT_TRUE(train_lm(full).finished);
  auto part = tiny_run(b);
  part.optim.epochs = 2;
  part.stop_after_steps = 7;  // killed after step 7 (its resume point: step 7)
  EXPECT_FALSE(train_lm(part).finished);
  EXPECT_FALSE(std::filesystem::exists(b / "run/config.json"));
  part.stop_after_steps = 0;
  const auto resumed = train_lm(part);
  EXPECT_TRUE(resumed.resumed);
  EXPECT_TRUE(resumed.finished);
  const auto ids = torch::arange(3, 20).unsqueeze(0);
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::allclose(load_llama(a / "run")->forward(ids),
                              load_llama(b / "run")->forward(ids), 1e-5, 1e-6));
}

TEST(LmTrainer, BadInputsNameTheFile) {
  test::TempDir dir;
  prepare(dir);
  auto o = tiny_run(dir);
  o.text_path = dir / "missing.txt";
  EXPECT_NE(test::error_of([&] { train_lm(o); }).find("missing.txt"), std::string::npos);
  o = tiny_run(dir);
  o.config_path.clear();
  o.preset = "huge";
  EXPECT_NE(test::error_of([&] { train_lm(o); }).find("huge"), std::string::npos);
}

}  // namespace
}  // namespace kvrag
