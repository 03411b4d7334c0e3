// The tensor side of the dynamic prefix (prefix/prefix_batch.h) on tiny random models: batches,
// and the one computation behind the training loss and the answerer's teacher-forced scores.

#include <gtest/gtest.h>

#include <torch/torch.h>

#include "model/knowledge_encoder.h"
#include "model/llama.h"
#include "prefix/prefix_batch.h"
#include "support/prefix_examples.h"
#include "support/test_support.h"
#include "support/tiny_models.h"

namespace kvrag {
namespace {

using test::memorisable_examples;

std::vector<int64_t> values(const torch::Tensor& t) {
  const auto c = t.contiguous();
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

TEST(PrefixBatch, LabelsCoverTheAnswerOnly) {
  auto examples = memorisable_examples();
  examples[1].prompt = {1, 10};  // shorter: padded
  const auto batch = make_prefix_batch(examples, {0, 1}, 0);
  // Row 0: inputs 1 10 11 12 13 20 21, labels on positions 4.. = 20 21 2.
  EXPECT_EQ(batch.ids.sizes().vec(), (std::vector<int64_t>{2, 7}));
  EXPECT_EQ(values(batch.labels[0]), (std::vector<int64_t>{-100, -100, -100, -100, 20, 21, 2}));
  // Row 1: inputs 1 10 23 24 (+3 padding), labels 23 24 2 from position 1.
  EXPECT_EQ(values(batch.labels[1]), (std::vector<int64_t>{-100, 23, 24, 2, -100, -100, -100}));
  EXPECT_EQ(values(batch.mask[1]), (std::vector<int64_t>{1, 1, 1, 1, 0, 0, 0}));
  EXPECT_EQ(batch.answer_tokens, 6);
  EXPECT_EQ(batch.prompt_lengths, (std::vector<int64_t>{5, 2}));
  EXPECT_EQ(batch.prompts[1], (std::vector<int64_t>{1, 10}));
  ASSERT_EQ(batch.segments(), 1);
  EXPECT_EQ(batch.segment_ids[0].sizes().vec(), (std::vector<int64_t>{2, 5}));

  // Without targets: prompts and segments only (what answering without a reference needs).
  for (auto& ex : examples) ex.target.clear();
  const auto bare = make_prefix_batch(examples, {2, 3}, 0);
  EXPECT_FALSE(bare.has_targets());
  EXPECT_EQ(bare.size(), 2);
  examples[3].target = {5, 2};
  EXPECT_NE(test::error_of([&] {
              make_prefix_batch(examples, {2, 3}, 0);
            }).find("with and without answers"),
            std::string::npos);
}

// The training loss (autograd path, gradients to the encoder) and the answerer's scores
// (inference path, no gradients) are one computation: a row's mean log-probability is minus its
// cross-entropy, and the batch's loss is the token-weighted mean over rows.
TEST(PrefixBatch, TrainingLossIsMinusTheAnswerersLogProbability) {
  auto llm = test::tiny_llama(3, 0.3);
  KnowledgeEncoder enc(test::tiny_encoder_config(4), torch::kFloat32);
  enc->init_fresh(5, 0.3);
  auto examples = memorisable_examples();
  examples[1].target = {7, 8, 9, 10, 2};  // rows of different answer lengths
  const auto batch = make_prefix_batch(examples, {0, 1}, 0);

  const auto prefix = batch_prefix(*enc, *llm, batch);  // records a graph: the autograd path
  ASSERT_TRUE(prefix.keys[0].requires_grad());
  const double loss = answer_loss(*llm, batch, &prefix).item<double>();

  std::vector<ForcedScore> scores;
  {
    torch::NoGradGuard no_grad;  // the inference path, as the Answerer runs it
    const auto frozen = batch_prefix(*enc, *llm, batch);
    scores = answer_scores(*llm, batch, &frozen);
  }
  ASSERT_EQ(scores.size(), 2u);
  const double weighted = (3 * scores[0].logprob + 5 * scores[1].logprob) / 8;
  EXPECT_NEAR(loss, -weighted, 1e-5);
  for (const int64_t row : {0, 1}) {
    const auto one = make_prefix_batch(examples, {row}, 0);
    const auto p = batch_prefix(*enc, *llm, one);
    EXPECT_NEAR(answer_loss(*llm, one, &p).item<double>(), -scores[row].logprob, 1e-5)
        << "row " << row;
    EXPECT_GE(scores[row].token_accuracy, 0.0);
    EXPECT_LE(scores[row].token_accuracy, 1.0);
  }
}

}  // namespace
}  // namespace kvrag
