// A real pretrained model: karpathy's stories260K in HF layout, with its SentencePiece tokenizer.
// Also the proof that libsentencepiece and libtorch live in one process (this binary links
// libtorch and loads the SentencePiece module).

#include <torch/torch.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "model/generation.h"
#include "model/llama.h"
#include "ops/threads.h"
#include "support/test_support.h"
#include "text/sentencepiece_tokenizer.h"

namespace kvrag {
namespace {

using json = nlohmann::json;

class Stories260K : public ::testing::Test {
 protected:
  void SetUp() override { configure_threads(); }
};

TEST_F(Stories260K, ReproducesEveryReferenceGreedyGeneration) {
  KVRAG_SHARED_PATH_OR_SKIP(dir, "models/stories260K");
  SentencePieceTokenizer tokenizer(dir + "/tokenizer.model");
  auto model = load_llama(dir);
  std::ifstream in(dir + "/reference/greedy_generations.jsonl");
  std::string line;
  int cases = 0;
  while (std::getline(in, line)) {
    const auto ref = json::parse(line);
    const auto prompt_ids = ref["prompt_ids"].get<std::vector<int64_t>>();
    const auto ids32 = tokenizer.encode(ref["prompt"].get<std::string>());
    EXPECT_EQ(std::vector<int64_t>(ids32.begin(), ids32.end()), prompt_ids) << ref["prompt"];

    GenerationOptions options;
    options.max_new_tokens = ref["steps"].get<int>() + 1 - static_cast<int>(prompt_ids.size());
    const auto out = generate(*model, {prompt_ids}, options)[0];
    std::vector<int64_t> all = prompt_ids;
    all.insert(all.end(), out.tokens.begin(), out.tokens.end());
    EXPECT_EQ(all, ref["ids"].get<std::vector<int64_t>>()) << "prompt '" << ref["prompt"] << "'";
    std::vector<TokenId> all32(all.begin(), all.end());
    EXPECT_EQ(tokenizer.decode(all32), ref["text"].get<std::string>());
    ++cases;
  }
  EXPECT_EQ(cases, 8);
}

TEST_F(Stories260K, LogitsMatchLlama2c) {
  KVRAG_SHARED_PATH_OR_SKIP(dir, "models/stories260K");
  auto model = load_llama(dir);
  std::ifstream in(dir + "/reference/logits.json");
  const auto ref = json::parse(in);
  torch::NoGradGuard no_grad;
  const auto ids =
      torch::tensor(ref["prompt_ids"].get<std::vector<int64_t>>(), torch::kInt64).unsqueeze(0);
  const auto logits = model->forward(ids)[0];  // [T, V]
  const auto rows = ref["logits_per_position"];
  ASSERT_EQ(static_cast<int64_t>(rows.size()), logits.size(0));
  for (int64_t t = 0; t < logits.size(0); ++t) {
    const auto want = torch::tensor(rows[t].get<std::vector<float>>());
    EXPECT_LT((logits[t] - want).abs().max().item<double>(), 1e-4) << "position " << t;
  }
  const auto bos = model->forward(torch::tensor({{1}}, torch::kInt64))[0][0];
  const auto want_bos = torch::tensor(ref["bos_pos0_logits"].get<std::vector<float>>());
  EXPECT_LT((bos - want_bos).abs().max().item<double>(), 1e-4);
}

TEST_F(Stories260K, SentencePieceAndTorchShareTheProcess) {
  KVRAG_SHARED_PATH_OR_SKIP(dir, "models/stories260K");
  // Torch work first, then the tokenizer, then torch again.
  auto x = torch::randn({8, 8});
  EXPECT_EQ(torch::matmul(x, x).size(0), 8);
  SentencePieceTokenizer tokenizer(dir + "/tokenizer.model");
  const auto ids = tokenizer.encode("Once upon a time");
  EXPECT_EQ(ids, (std::vector<TokenId>{1, 403, 407, 261, 378}));
  EXPECT_FALSE(SentencePieceTokenizer::module_path().empty());
  auto model = load_llama(dir);
  torch::NoGradGuard no_grad;
  const auto logits =
      model->forward(torch::tensor(std::vector<int64_t>(ids.begin(), ids.end())).unsqueeze(0));
  EXPECT_EQ(logits.size(2), tokenizer.vocab_size());
}

}  // namespace
}  // namespace kvrag
