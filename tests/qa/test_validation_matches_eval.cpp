// Training validates a knowledge encoder exactly as `kvrag eval` scores it: train-prefix's dev
// EM (which picks the best epoch) is the EM evaluate_qa reports for the exported encoder on the
// same questions and index, its dev loss is the eval's teacher-forced log-probability, and the
// training loss of an example is minus the Answerer's score of it. stories260K (shared) is the
// frozen LLM; the index is BM25 over four passages.

#include <gtest/gtest.h>

#include <torch/torch.h>

#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "index/index_retriever.h"
#include "model/knowledge_encoder.h"
#include "prefix/prefix_pipeline.h"
#include "qa/answerer.h"
#include "qa/qa_eval.h"
#include "support/cli_runner.h"
#include "support/test_support.h"
#include "support/tiny_models.h"
#include "train/prefix_trainer.h"

namespace kvrag {
namespace {

using json = nlohmann::json;

void write_lines(const std::string& path, const std::vector<json>& lines) {
  std::ofstream out(path);
  for (const auto& j : lines) out << j.dump() << "\n";
}

TEST(ValidationMatchesEval, DevEmAndLossAreWhatEvalReportsAndTheLossIsTheAnswerersScore) {
  KVRAG_SHARED_PATH_OR_SKIP(llm, "models/stories260K");
  test::TempDir dir;
  test::write_tiny_bert(dir / "bert");
  // Passages "thing i" naming an animal or object; questions about them.
  const std::vector<std::string> things = {"cat", "dog", "ball", "tree", "bird", "car"};
  std::vector<json> passages;
  std::vector<std::string> questions;
  for (size_t i = 0; i < things.size(); ++i) {
    passages.push_back({{"id", "p" + std::to_string(i)},
                        {"title", "thing " + std::to_string(i)},
                        {"text", "the thing " + std::to_string(i) + " is a " + things[i] + "."}});
    questions.push_back("what is thing " + std::to_string(i) + "?");
  }
  write_lines(dir / "corpus.jsonl", passages);
  const auto r = test::run_kvrag("segment --corpus " + (dir / "corpus.jsonl") + " --tokenizer " +
                                 (dir / "bert/vocab.txt") + " --index " + (dir / "index"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  RetrieverSpec spec;
  spec.mode = RetrieverMode::kBm25;
  const auto retriever = open_retriever(dir / "index", spec);

  // A fresh knowledge encoder to start from, and gold answers that make exact match tell
  // something: for four questions what the LLM says with that encoder's prefix, for two a word
  // it never says.
  KnowledgeEncoderOptions encoder;
  encoder.readout = Readout::kTokens;
  encoder.max_segment_tokens = 40;
  encoder.key_position = KeyPosition::kAnswer;
  encoder.head_std = 0.05;
  {
    PrefixPipeline pipeline(llm, torch::kFloat32);
    const auto fresh = init_knowledge_encoder(dir / "bert", pipeline.llm(), nullptr,
                                              pipeline.llm_fingerprint(), encoder, 1);
    save_knowledge_encoder(*fresh, dir / "ke0", dir / "bert/vocab.txt");
  }
  AnswererOptions ao;
  ao.llm_dir = llm;
  ao.index_dir = dir / "index";
  ao.retriever = spec;
  ao.knowledge_encoder_dir = dir / "ke0";
  ao.max_new_tokens = 3;
  std::vector<std::string> answers;
  {
    const auto initial = Answerer::open(ao)->answer(questions, AnswerMode::kPrefix, 1, false);
    for (size_t i = 0; i < questions.size(); ++i) {
      answers.push_back(i < 4 && !initial[i].text.empty() ? initial[i].text : "zebra");
    }
  }
  std::vector<json> lines;
  for (size_t i = 0; i < questions.size(); ++i)
    lines.push_back({{"question", questions[i]}, {"answers", {answers[i]}}});
  write_lines(dir / "questions.jsonl", lines);

  PrefixTrainOptions o;
  o.out = dir / "ke";
  o.llm = llm;
  o.init = dir / "ke0";  // go on training the fresh encoder
  o.train = dir / "questions.jsonl";
  o.dev = dir / "questions.jsonl";
  o.retriever = retriever.get();
  o.top_k = 1;
  o.max_new_tokens = ao.max_new_tokens;
  o.progress = false;
  o.optim.lr = 3e-4;
  o.optim.batch_size = 2;
  o.optim.epochs = 2;
  const auto trained = train_prefix(o);
  ASSERT_GE(trained.best_epoch, 0);
  // Validation before training scores the fresh encoder as eval did above (answers[i] are its
  // own answers to four of the six questions).
  EXPECT_DOUBLE_EQ(trained.initial_dev_em, 4.0 / 6.0);

  ao.knowledge_encoder_dir = o.out;  // the best epoch's
  const auto answerer = Answerer::open(ao);
  QaEvalOptions eo;
  eo.modes = {AnswerMode::kPrefix};
  eo.top_k = 1;
  eo.predictions_path = dir / "predictions.jsonl";
  eo.progress = false;
  const auto report = evaluate_qa(*answerer, dir / "questions.jsonl", eo);
  EXPECT_EQ(report.summary["prefix"]["em"].get<double>(), trained.best_dev_em);
  std::cout << "[ info     ] dev EM before training " << trained.initial_dev_em
            << ", after each epoch " << json(trained.dev_em).dump() << "; eval EM "
            << report.summary["prefix"]["em"] << "\n";

  // The dev loss of the best epoch is minus eval's log-probability per answer token (weighted
  // by each answer's tokens, as the loss is).
  PrefixPipeline pipeline(llm, torch::kFloat32);
  std::ifstream in(eo.predictions_path);
  double weighted = 0, tokens = 0;
  size_t i = 0;
  for (std::string line; std::getline(in, line); ++i) {
    const auto n = static_cast<double>(pipeline.target_ids(answers.at(i)).size());
    weighted += n * json::parse(line)["answer_logprob"].get<double>();
    tokens += n;
  }
  ASSERT_EQ(i, answers.size());
  EXPECT_NEAR(trained.dev_loss.at(trained.best_epoch), -weighted / tokens, 1e-5);

  // One example's training loss (the autograd path: the encoder's parameters require grad) is
  // minus the Answerer's teacher-forced log-probability of it (the inference path).
  pipeline.set_encoder(load_knowledge_encoder(o.out), o.out + "/vocab.txt");
  const auto& q = questions[3];
  const auto evidence = retriever->search({q}, 1).at(0);
  std::vector<PrefixExample> examples = {
      pipeline.example(q, answers[3], {{evidence[0].title, evidence[0].text}}, "q")};
  const auto batch = pipeline.batch(examples, {0});
  const auto prefix = pipeline.prefix(batch);
  ASSERT_TRUE(prefix.keys[0].requires_grad());
  const double loss = pipeline.loss(batch, prefix).item<double>();
  const auto score = answerer->score_answers({q}, {answers[3]}, AnswerMode::kPrefix, 1).at(0);
  EXPECT_NEAR(loss, -score.logprob, 1e-5);
}

}  // namespace
}  // namespace kvrag
