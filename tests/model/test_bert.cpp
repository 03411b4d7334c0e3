// BERT parity with ../shared/fixtures/tiny-bert and pooling/masking behaviour.

#include <torch/torch.h>

#include "core/error.h"
#include "model/bert.h"
#include "model/fixture_check.h"
#include "ops/threads.h"
#include "support/test_support.h"

namespace kvrag {
namespace {

TEST(TinyBert, AllFixtureOutputsMatchInFp32) {
  configure_threads();
  KVRAG_SHARED_PATH_OR_SKIP(dir, "fixtures/tiny-bert");
  const auto report = check_fixture(dir, "", "fp32");
  // last_hidden_state, mean_pooled, pooler_output and the four BERTScore cases.
  ASSERT_EQ(report.lines.size(), 7u);
  for (const auto& line : report.lines) {
    EXPECT_TRUE(line.ok) << line.name << " max_abs_err=" << line.max_abs_error;
  }
}

TEST(TinyBert, Bf16StaysWithinItsStatedTolerance) {
  KVRAG_SHARED_PATH_OR_SKIP(dir, "fixtures/tiny-bert");
  const auto report = check_fixture(dir, "", "bf16");
  for (const auto& line : report.lines) {
    EXPECT_TRUE(line.ok) << line.name << " max_abs_err=" << line.max_abs_error
                         << " tol=" << line.tolerance;
  }
}

TEST(TinyBert, PaddingDoesNotChangeRealTokens) {
  KVRAG_SHARED_PATH_OR_SKIP(dir, "fixtures/tiny-bert");
  auto model = load_bert(dir);
  torch::NoGradGuard no_grad;
  const auto ids = torch::tensor({{2, 17, 33, 41, 3}}, torch::kInt64);
  const auto alone = model->forward(ids, torch::ones_like(ids)).last_hidden_state;
  const auto padded_ids = torch::tensor({{2, 17, 33, 41, 3, 0, 0}}, torch::kInt64);
  const auto mask = torch::tensor({{1, 1, 1, 1, 1, 0, 0}}, torch::kInt64);
  const auto out = model->forward(padded_ids, mask, {}, true);
  EXPECT_LT((out.last_hidden_state.narrow(1, 0, 5) - alone).abs().max().item<double>(), 1e-5);
  EXPECT_EQ(out.hidden_states.size(), 3u);  // embeddings + 2 layers
  EXPECT_LT((mean_pool(out.last_hidden_state, mask) - alone.mean(1)).abs().max().item<double>(),
            1e-5);
  EXPECT_THROW(
      model->forward(torch::zeros({1, 65}, torch::kInt64), torch::ones({1, 65}, torch::kInt64)),
      Error);
}

}  // namespace
}  // namespace kvrag
