// The prefix pipeline (prefix/prefix_pipeline.h) with a real LLM and tokenizer (stories260K,
// shared) and a random knowledge encoder: prompts and targets, example checks, the prefix
// against a computation by hand from the model's parts, and answers as eval scores them.

#include <gtest/gtest.h>

#include <torch/torch.h>

#include "core/error.h"
#include "model/knowledge_encoder.h"
#include "prefix/prefix_batch.h"
#include "prefix/prefix_pipeline.h"
#include "support/test_support.h"
#include "support/tiny_models.h"
#include "text/knowledge_tokenizer.h"
#include "text/tokenizer.h"
#include "text/wordpiece_tokenizer.h"

namespace kvrag {
namespace {

using test::TempDir;

class PrefixPipelineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string shared = test::shared_dir();
    llm_ = shared + "/models/stories260K";
    if (shared.empty() || !std::filesystem::exists(llm_ + "/tokenizer.model")) {
      GTEST_SKIP() << "shared material not found (models/stories260K)";
    }
    // A random knowledge encoder for stories260K: one entry per segment token (P = 24), keys
    // placed at the answer, heads large enough that the prefix changes the LLM's predictions.
    test::write_tiny_bert(dir_ / "bert");
    KnowledgeEncoderOptions options;
    options.readout = Readout::kTokens;
    options.max_segment_tokens = 24;
    options.key_position = KeyPosition::kAnswer;
    const auto config = KnowledgeEncoderConfig::for_llm(test::tiny_bert_config(),
                                                        LlamaConfig::load(llm_ + "/config.json"),
                                                        llm_fingerprint(llm_), options);
    KnowledgeEncoder ke(config, torch::kFloat32);
    ke->init_fresh(7, 0.3);
    save_knowledge_encoder(*ke, dir_ / "ke", dir_ / "bert/vocab.txt");
  }

  TempDir dir_;
  std::string llm_;
};

TEST_F(PrefixPipelineTest, PromptsAndTargetsFollowThePromptFormat) {
  PrefixPipeline p(llm_, torch::kFloat32);
  EXPECT_FALSE(p.has_encoder());
  EXPECT_EQ(p.prefix_entries(3), 0);
  const auto& tok = p.tokenizer();
  const auto prompt = p.prompt_ids("who had a cat?");
  const auto expect = tok.encode(question_prompt("who had a cat?"), true);
  EXPECT_EQ(prompt, std::vector<int64_t>(expect.begin(), expect.end()));
  auto target = p.target_ids("Lily");
  ASSERT_GE(target.size(), 2u);
  EXPECT_EQ(target.back(), p.llm_config().eos_token_ids.at(0));
  target.pop_back();
  const auto answer = answer_token_ids(tok, "Lily");
  EXPECT_EQ(target, std::vector<int64_t>(answer.begin(), answer.end()));

  // With passages: the context prompt when it fits; the last passage shortened when it does not;
  // the bare question when nothing else fits; an Error naming the question when not even that.
  const std::vector<PromptPassage> passages = {{"Cats", "Lily had a cat named Tom."},
                                               {"Dogs", "Ben had a dog."}};
  std::string text;
  const auto fitted = p.fit_prompt("who had a cat?", passages, 200, 0, &text);
  EXPECT_EQ(text, context_prompt(passages, "who had a cat?"));
  EXPECT_GT(fitted.size(), prompt.size());
  const std::vector<PromptPassage> one = {
      {"Cats", std::string(400, 'a') + " b c d e f g h i j k l m n o p"}};
  const auto cut = p.fit_prompt("who had a cat?", one, 60, 0, &text);
  EXPECT_LE(cut.size(), 60u);
  EXPECT_NE(text.find("Context: Cats: "), std::string::npos) << text;
  EXPECT_EQ(p.fit_prompt("who had a cat?", passages, static_cast<int64_t>(prompt.size()), 0, &text),
            prompt);
  const auto e = test::error_of([&] { p.fit_prompt("who had a cat?", {}, 3, 7, nullptr); });
  EXPECT_NE(e.find("question 7"), std::string::npos) << e;
}

TEST_F(PrefixPipelineTest, ExamplesAreCheckedAndSegmentsCutToTheEncodersLimit) {
  PrefixPipeline p(llm_, torch::kFloat32);
  EXPECT_NE(test::error_of([&] {
              p.segment_tokens({"t", "x"});
            }).find("knowledge encoder"),
            std::string::npos);
  p.load_encoder(dir_ / "ke");
  EXPECT_EQ(p.prefix_entries(2), 48);
  std::string long_text;
  for (int i = 0; i < 100; ++i) long_text += "ab ";
  const auto ex = p.example("who had a cat?", "Lily", {{"Cats", long_text}}, "FILE: question 1");
  ASSERT_EQ(ex.segments.size(), 1u);
  EXPECT_EQ(ex.segments[0].ids.size(), 24u);  // cut to P, [CLS] … [SEP]
  EXPECT_TRUE(ex.segments[0].truncated);
  EXPECT_EQ(ex.prompt, p.prompt_ids("who had a cat?"));
  EXPECT_EQ(ex.target, p.target_ids("Lily"));
  auto e = test::error_of([&] { p.example("q?", " ", {}, "FILE: question 2"); });
  EXPECT_NE(e.find("FILE: question 2: empty answer"), std::string::npos) << e;
  std::string long_question;
  for (int i = 0; i < 300; ++i) long_question += "word ";
  e = test::error_of([&] { p.example(long_question, "Lily", {{"t", "x"}}, "FILE: question 3"); });
  EXPECT_NE(e.find("FILE: question 3"), std::string::npos) << e;
  EXPECT_NE(e.find("positions"), std::string::npos) << e;
}

// The pipeline's prefix is the encoder's output for each rank, concatenated in rank order and
// placed at the answer; computed here from the model's own parts.
TEST_F(PrefixPipelineTest, PrefixIsTheEncodersConcatenatedAndPlaced) {
  PrefixPipeline p(llm_, torch::kFloat32);
  p.load_encoder(dir_ / "ke");
  const std::vector<PromptPassage> segments = {{"Cats", "lily had a cat."},
                                               {"", "ben had a dog named max."}};
  std::vector<PrefixExample> examples = {
      p.example("who had a cat?", "Lily", segments, "q1"),
      p.example("what was the dog called?", "Max", {segments[1], segments[0]}, "q2")};
  const auto batch = p.batch(examples, {0, 1});
  torch::NoGradGuard no_grad;
  const auto prefix = p.prefix(batch);
  ASSERT_EQ(prefix.length(), 48);

  auto ke = load_knowledge_encoder(dir_ / "ke");
  const auto vocab = WordPieceTokenizer::from_vocab_file(dir_ / "ke/vocab.txt");
  const KnowledgeTokenizer cut(*vocab);
  for (int64_t row = 0; row < 2; ++row) {
    std::vector<KVPrefix> ranks;
    for (int r = 0; r < 2; ++r) {
      const auto& s = row == 0 ? segments[r] : segments[1 - r];
      const auto ids = torch::tensor(cut.encode(s.title, s.text, 24).ids).unsqueeze(0);
      ranks.push_back(ke->forward(ids, torch::ones_like(ids)));
    }
    const int64_t prompt_length = static_cast<int64_t>(examples[row].prompt.size());
    const auto want = p.llm().place_prefix(concat_prefixes(ranks), {prompt_length - 1});
    for (size_t l = 0; l < want.keys.size(); ++l) {
      EXPECT_TRUE(torch::allclose(prefix.keys[l][row], want.keys[l][0], 1e-4, 1e-5))
          << "row " << row << " layer " << l;
      EXPECT_TRUE(torch::allclose(prefix.values[l][row], want.values[l][0], 1e-4, 1e-5))
          << "row " << row;
    }
  }
  // The prefix changes what the LLM predicts.
  const auto with = p.scores(batch, prefix), without = p.scores(batch, {});
  EXPECT_GT(std::abs(with[0].logprob - without[0].logprob), 1e-3);
}

// Citations: the answer's attention on each segment's entries. Placed keys share one position,
// so the attention on entries does not depend on their order: swapping the segments swaps the
// masses; a segment given twice gets the same mass twice; the masses are shares of attention.
TEST_F(PrefixPipelineTest, CitationsFollowTheSegmentsAttended) {
  PrefixPipeline p(llm_, torch::kFloat32);
  p.load_encoder(dir_ / "ke");
  const PromptPassage a{"Cats", "lily had a cat."}, b{"", "ben had a dog named max."};
  std::vector<PrefixExample> examples = {p.example("who had a cat?", "Lily", {a, b}, "q1"),
                                         p.example("who had a cat?", "Lily", {b, a}, "q2"),
                                         p.example("who had a cat?", "Lily", {a, a}, "q3")};
  const auto batch = p.batch(examples, {0, 1, 2});
  torch::NoGradGuard no_grad;
  const auto cite = [&](const KVPrefix& prefix, int64_t segments) {
    std::vector<std::vector<double>> c;
    const auto scores = p.scores(batch, prefix, &c, segments);
    const auto plain = p.scores(batch, prefix);  // the same forward, scored without citing
    for (size_t i = 0; i < scores.size(); ++i)
      EXPECT_DOUBLE_EQ(scores[i].logprob, plain[i].logprob) << "row " << i;
    return c;
  };
  const auto c = cite(p.prefix(batch), 2);
  ASSERT_EQ(c.size(), 3u);
  for (const auto& row : c) {
    ASSERT_EQ(row.size(), 2u);
    EXPECT_GT(row[0], 0.0);
    EXPECT_GT(row[1], 0.0);
    EXPECT_LT(row[0] + row[1], 1.0);  // the prompt's own tokens take the rest
  }
  EXPECT_NEAR(c[0][0], c[1][1], 1e-5);
  EXPECT_NEAR(c[0][1], c[1][0], 1e-5);
  EXPECT_GT(std::abs(c[0][0] - c[0][1]), 1e-4);  // two different segments are told apart
  EXPECT_NEAR(c[2][0], c[2][1], 1e-5);
  EXPECT_THROW(cite(p.prefix(batch), 5), Error);  // 48 entries are not 5 segments
  // Entries with zero keys and values (padding) are not cited: a segment of nothing gets 0.
  auto blank = p.prefix(batch);
  for (auto* v : {&blank.keys, &blank.values}) {
    for (auto& t : *v) t.narrow(2, 24, 24).zero_();
  }
  for (const auto& row : cite(blank, 2)) {
    EXPECT_EQ(row[1], 0.0);
    EXPECT_GT(row[0], 0.0);
  }
}

TEST_F(PrefixPipelineTest, AnswersAreOneTrimmedLineAndDoNotDependOnTheBatch) {
  PrefixPipeline p(llm_, torch::kFloat32);
  p.load_encoder(dir_ / "ke");
  std::vector<PrefixExample> examples;
  for (const std::string q : {"Once upon a time", "Lily and Ben went to the park", "The cat"}) {
    examples.push_back({p.prompt_ids(q), {}, {p.segment_tokens({"t", "a cat sat on the mat."})}});
  }
  torch::NoGradGuard no_grad;
  const auto batch = p.batch(examples, {0, 1, 2});
  const auto answers = p.generate(batch, p.prefix(batch), 24);
  ASSERT_EQ(answers.size(), 3u);
  for (const auto& a : answers) {
    EXPECT_EQ(a.find('\n'), std::string::npos) << a;
    EXPECT_TRUE(a.empty() || (a.front() != ' ' && a.back() != ' ')) << "'" << a << "'";
  }
  const auto alone = p.batch(examples, {1});
  EXPECT_EQ(p.generate(alone, p.prefix(alone), 24).at(0), answers[1]);
}

}  // namespace
}  // namespace kvrag
