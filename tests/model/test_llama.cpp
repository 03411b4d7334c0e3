// LLaMA parity with the reference outputs in ../shared, KV cache and padding consistency, and the
// prefix gradient.

#include <torch/torch.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "model/fixture_check.h"
#include "model/generation.h"
#include "model/llama.h"
#include "ops/threads.h"
#include "support/test_support.h"

namespace kvrag {
namespace {

using json = nlohmann::json;

json load_json(const std::string& path) {
  std::ifstream in(path);
  return json::parse(in);
}

// The prefix of the tiny-llama fixture: [L][2][B][kvH][P][hd].
KVPrefix fixture_prefix(const json& e) {
  KVPrefix prefix;
  for (const auto& layer : e["prefix"]) {
    for (int kv = 0; kv < 2; ++kv) {
      std::vector<float> flat;
      std::vector<int64_t> shape;
      const json* cur = &layer[kv];
      while (cur->is_array()) {
        shape.push_back(cur->size());
        cur = &(*cur)[0];
      }
      std::function<void(const json&)> walk = [&](const json& n) {
        if (n.is_array()) {
          for (const auto& c : n) walk(c);
        } else {
          flat.push_back(n.get<float>());
        }
      };
      walk(layer[kv]);
      auto t = torch::tensor(flat).view(shape);
      (kv == 0 ? prefix.keys : prefix.values).push_back(t);
    }
  }
  return prefix;
}

torch::Tensor ids_tensor(const json& rows) {
  std::vector<int64_t> flat;
  for (const auto& r : rows) {
    for (const auto& v : r) flat.push_back(v.get<int64_t>());
  }
  return torch::tensor(flat, torch::kInt64).view({static_cast<int64_t>(rows.size()), -1});
}

class TinyLlama : public ::testing::Test {
 protected:
  void SetUp() override { configure_threads(); }
};

TEST_F(TinyLlama, AllFixtureOutputsMatchInFp32) {
  KVRAG_SHARED_PATH_OR_SKIP(dir, "fixtures/tiny-llama");
  const auto report = check_fixture(dir, "", "fp32");
  ASSERT_EQ(report.lines.size(), 4u);  // logits, logits_with_prefix, greedy ×2
  for (const auto& line : report.lines) {
    EXPECT_TRUE(line.ok) << line.name << " max_abs_err=" << line.max_abs_error << " " << line.note;
    EXPECT_LE(line.max_abs_error, 2e-4) << line.name;
  }
}

TEST_F(TinyLlama, Bf16StaysWithinItsStatedTolerance) {
  KVRAG_SHARED_PATH_OR_SKIP(dir, "fixtures/tiny-llama");
  const auto report = check_fixture(dir, "", "bf16");
  for (const auto& line : report.lines) {
    EXPECT_TRUE(line.ok) << line.name << " max_abs_err=" << line.max_abs_error
                         << " tol=" << line.tolerance;
  }
}

TEST_F(TinyLlama, CachedDecodingEqualsFullForwardWithPrefixAndPadding) {
  KVRAG_SHARED_PATH_OR_SKIP(dir, "fixtures/tiny-llama");
  const auto e = load_json(dir + "/expected.json");
  auto model = load_llama(dir);
  torch::NoGradGuard no_grad;
  const auto prefix = fixture_prefix(e);
  const auto ids = ids_tensor(e["input_ids"]);  // [2, 11]
  LlamaForwardArgs full_args;
  full_args.prefix = &prefix;
  const auto full = model->forward(ids, full_args);  // [2, 11, V]

  // Row 1 left-padded by 3 and fed in two chunks through the cache: its logits must equal the
  // unpadded full forward.
  const int64_t T = ids.size(1), pad = 3;
  auto padded = torch::cat({torch::zeros({2, pad}, torch::kInt64), ids}, 1);
  auto mask = torch::ones({2, T + pad}, torch::kInt64);
  mask.narrow(1, 0, pad).zero_();
  auto cache = model->new_cache(2, prefix.length() + T + pad);
  LlamaForwardArgs a{&prefix, &cache, mask.narrow(1, 0, 6)};
  auto first = model->forward(padded.narrow(1, 0, 6), a);
  LlamaForwardArgs b{nullptr, &cache, mask.narrow(1, 6, T + pad - 6)};
  auto second = model->forward(padded.narrow(1, 6, T + pad - 6), b);
  auto stitched = torch::cat({first, second}, 1).narrow(1, pad, T);
  EXPECT_LT((stitched - full).abs().max().item<double>(), 1e-4);
}

// A placed prefix takes no positions: the tokens start at 0, and since rotary attention depends
// on position differences only, that equals placing the keys P further on with the tokens after
// the P entries (the layout before placed prefixes took no positions); through the cache too.
// It also lets more entries than the LLM has positions attend.
TEST_F(TinyLlama, PlacedPrefixTakesNoPositions) {
  KVRAG_SHARED_PATH_OR_SKIP(dir, "fixtures/tiny-llama");
  const auto e = load_json(dir + "/expected.json");
  auto model = load_llama(dir);
  torch::NoGradGuard no_grad;
  const auto unplaced = fixture_prefix(e);
  const auto ids = ids_tensor(e["input_ids"]);  // [2, 11]
  const int64_t P = unplaced.length(), T = ids.size(1);
  const auto placed = model->place_prefix(unplaced, {T - 1, T - 1});
  ASSERT_TRUE(placed.placed);
  EXPECT_EQ(placed.positions(), 0);
  auto shifted = model->place_prefix(unplaced, {P + T - 1, P + T - 1});
  shifted.placed = false;  // the tokens take positions P.. after the entries
  EXPECT_EQ(shifted.positions(), P);
  LlamaForwardArgs a, b;
  a.prefix = &placed;
  b.prefix = &shifted;
  const auto at_zero = model->forward(ids, a);  // [2, T, V]
  const auto after = model->forward(ids, b);
  EXPECT_LT((at_zero - after).abs().max().item<double>(), 1e-4);
  // The cache path reads the same positions.
  auto cache = model->new_cache(2, P + T);
  LlamaForwardArgs c{&placed, &cache, {}};
  EXPECT_LT((model->forward(ids, c) - at_zero).abs().max().item<double>(), 1e-4);
  EXPECT_EQ(cache.next_position[0].item<int64_t>(), T);

  // Entries beyond the context: 3 × max_position_embeddings placed copies of the prefix.
  const int64_t copies = 3 * model->config().max_position_embeddings / P + 1;
  KVPrefix many;
  for (int64_t l = 0; l < static_cast<int64_t>(placed.keys.size()); ++l) {
    many.keys.push_back(placed.keys[l].narrow(0, 0, 1).repeat({1, 1, copies, 1}));
    many.values.push_back(placed.values[l].narrow(0, 0, 1).repeat({1, 1, copies, 1}));
  }
  many.placed = true;
  ASSERT_GT(many.length(), model->config().max_position_embeddings);
  GenerationOptions options;
  options.max_new_tokens = 4;
  options.stop_at_eos = false;
  const auto out = generate(*model, {{1, 5, 9}}, options, &many);
  EXPECT_EQ(out[0].tokens.size(), 4u);
  many.placed = false;  // unplaced, the same entries exceed the context: an error, not a crash
  EXPECT_THROW(generate(*model, {{1, 5, 9}}, options, &many), Error);
}

// The attention probabilities kept for attribution: one [B, H, T, S] tensor per layer, each
// query's row a distribution over the entries it may see (prefix, its causal past; not padding).
TEST_F(TinyLlama, AttentionProbabilitiesAreKeptPerLayer) {
  KVRAG_SHARED_PATH_OR_SKIP(dir, "fixtures/tiny-llama");
  const auto e = load_json(dir + "/expected.json");
  auto model = load_llama(dir);
  torch::NoGradGuard no_grad;
  const auto prefix = fixture_prefix(e);
  const auto ids = ids_tensor(e["input_ids"]);  // [2, 11]
  const int64_t B = ids.size(0), T = ids.size(1), P = prefix.length();
  auto mask = torch::ones({B, T}, torch::kInt64);
  mask[1].narrow(0, 0, 2).zero_();  // row 1 left-padded by 2
  std::vector<torch::Tensor> probs;
  LlamaForwardArgs args;
  args.prefix = &prefix;
  args.attention_mask = mask;
  args.attention_probs = &probs;
  const auto kept = model->forward(ids, args);
  ASSERT_EQ(static_cast<int64_t>(probs.size()), model->config().num_hidden_layers);
  for (const auto& p : probs) {
    ASSERT_EQ(p.sizes().vec(),
              (std::vector<int64_t>{B, model->config().num_attention_heads, T, P + T}));
    EXPECT_LT((p.sum(-1) - 1).abs().max().item<double>(), 1e-5);
    // causal: query t sees no entry past P + t
    EXPECT_EQ(p.select(2, 3).narrow(-1, P + 4, T - 4).abs().max().item<double>(), 0.0);
    // row 1's padding entries are not attended by its tokens
    EXPECT_EQ(p[1].narrow(1, 2, T - 2).narrow(-1, P, 2).abs().max().item<double>(), 0.0);
  }
  LlamaForwardArgs plain;
  plain.prefix = &prefix;
  plain.attention_mask = mask;
  EXPECT_TRUE(torch::equal(model->forward(ids, plain), kept));  // keeping them changes nothing
}

TEST_F(TinyLlama, BatchOfDifferentLengthsMatchesOneByOne) {
  KVRAG_SHARED_PATH_OR_SKIP(dir, "fixtures/tiny-llama");
  auto model = load_llama(dir);
  const std::vector<std::vector<int64_t>> prompts = {
      {1, 5, 9, 200, 17}, {1, 44}, {1, 7, 7, 7, 7, 7, 7, 3}};
  GenerationOptions options;
  options.max_new_tokens = 10;
  options.stop_at_eos = false;
  const auto batched = generate(*model, prompts, options);
  for (size_t i = 0; i < prompts.size(); ++i) {
    const auto single = generate(*model, {prompts[i]}, options);
    EXPECT_EQ(batched[i].tokens, single[0].tokens) << "prompt " << i;
  }
}

TEST_F(TinyLlama, SamplingIsSeededAndTopPOneTokenIsGreedy) {
  KVRAG_SHARED_PATH_OR_SKIP(dir, "fixtures/tiny-llama");
  auto model = load_llama(dir);
  GenerationOptions options;
  options.max_new_tokens = 12;
  options.stop_at_eos = false;
  options.temperature = 1.0f;
  options.seed = 7;
  const auto a = generate(*model, {{1, 5, 9}}, options);
  const auto b = generate(*model, {{1, 5, 9}}, options);
  EXPECT_EQ(a[0].tokens, b[0].tokens);
  options.seed = 8;
  const auto c = generate(*model, {{1, 5, 9}}, options);
  EXPECT_NE(a[0].tokens, c[0].tokens);
  // A nucleus so small that it keeps only the top token is greedy decoding.
  options.top_p = 1e-6f;
  const auto nucleus = generate(*model, {{1, 5, 9}}, options);
  options.temperature = 0.0f;
  const auto greedy = generate(*model, {{1, 5, 9}}, options);
  EXPECT_EQ(nucleus[0].tokens, greedy[0].tokens);
}

TEST_F(TinyLlama, StopsAtEosAndGivenIds) {
  KVRAG_SHARED_PATH_OR_SKIP(dir, "fixtures/tiny-llama");
  auto model = load_llama(dir);
  GenerationOptions options;
  options.max_new_tokens = 12;
  options.stop_at_eos = false;
  const auto free_run = generate(*model, {{1, 5, 9}}, options)[0].tokens;
  ASSERT_EQ(free_run.size(), 12u);
  options.stop_ids = {free_run[4]};
  const auto stopped = generate(*model, {{1, 5, 9}}, options)[0];
  const auto first = std::find(free_run.begin(), free_run.end(), free_run[4]) - free_run.begin();
  EXPECT_EQ(static_cast<int64_t>(stopped.tokens.size()), first);
  EXPECT_EQ(stopped.stop_reason, StopReason::kStopToken);
  EXPECT_EQ(stopped.stop_token, free_run[4]);
}

// Context-aware decoding against a reference without a cache: at every step, full forwards of
// prompt + tokens so far with the prefix and of plain prompt + the same tokens without it,
// (1 + α)·logits − α·plain over the tokens within a tenth of the top probability, argmax. Rows of
// different lengths in one batch (left padding in both caches).
TEST_F(TinyLlama, ContrastDecodingEqualsItsDefinitionStepByStep) {
  KVRAG_SHARED_PATH_OR_SKIP(dir, "fixtures/tiny-llama");
  const auto e = load_json(dir + "/expected.json");
  auto model = load_llama(dir);
  const auto two = fixture_prefix(e);  // batch 2
  const std::vector<std::vector<int64_t>> prompts = {{1, 5, 9, 200, 17, 8, 3}, {1, 44, 12}};
  const std::vector<std::vector<int64_t>> plain = {{1, 17, 8, 3}, {1, 12}};
  const float alpha = 1.5f;
  GenerationOptions options;
  options.max_new_tokens = 8;
  options.stop_at_eos = false;
  options.contrast = alpha;
  options.contrast_prompts = plain;
  const auto got = generate(*model, prompts, options, &two);
  const auto without = generate(*model, prompts, GenerationOptions{8, 0, 1, 0, false}, &two);

  torch::NoGradGuard no_grad;
  bool differs = false;
  for (size_t b = 0; b < prompts.size(); ++b) {
    KVPrefix row;  // row b of the prefix
    for (size_t l = 0; l < two.keys.size(); ++l) {
      row.keys.push_back(two.keys[l].narrow(0, b, 1));
      row.values.push_back(two.values[l].narrow(0, b, 1));
    }
    std::vector<int64_t> with_ids = prompts[b], plain_ids = plain[b], tokens;
    for (int step = 0; step < options.max_new_tokens; ++step) {
      LlamaForwardArgs with_args;
      with_args.prefix = &row;
      const auto last = [&](const std::vector<int64_t>& ids, LlamaForwardArgs& args) {
        const auto t = torch::tensor(ids, torch::kInt64).unsqueeze(0);  // [1, T]
        return model->forward(t, args).select(1, t.size(1) - 1)[0];     // [V]
      };
      LlamaForwardArgs plain_args;
      const auto l = last(with_ids, with_args), p = last(plain_ids, plain_args);
      const auto log_probs = torch::log_softmax(l, -1);
      auto score = (1 + alpha) * l - alpha * p;
      score.masked_fill_(log_probs < log_probs.max() + std::log(0.1), -1e30);
      const int64_t token = score.argmax().item<int64_t>();
      tokens.push_back(token);
      with_ids.push_back(token);
      plain_ids.push_back(token);
    }
    EXPECT_EQ(got[b].tokens, tokens) << "row " << b;
    differs = differs || got[b].tokens != without[b].tokens;
  }
  EXPECT_TRUE(differs) << "the contrast changed no token: the test would not see it";

  // Contrasting a prompt with itself is plain decoding; the plain prompts must match the batch.
  options.contrast_prompts = prompts;
  const auto self = generate(*model, prompts, options);
  const auto greedy = generate(*model, prompts, GenerationOptions{8, 0, 1, 0, false});
  for (size_t b = 0; b < prompts.size(); ++b) EXPECT_EQ(self[b].tokens, greedy[b].tokens);
  options.contrast_prompts = {plain[0]};
  EXPECT_THROW(generate(*model, prompts, options), Error);
}

// Mixture decoding (RAG-Token): one prompt with two prefixes, each step's token the argmax of
// w·p_0 + (1 − w)·p_1 from the two rows' own forwards; both rows return it. All the weight on one
// row is that row's greedy decoding.
TEST_F(TinyLlama, MixtureDecodingEqualsItsDefinitionStepByStep) {
  KVRAG_SHARED_PATH_OR_SKIP(dir, "fixtures/tiny-llama");
  const auto e = load_json(dir + "/expected.json");
  auto model = load_llama(dir);
  const auto two = fixture_prefix(e);  // batch 2: the two rows' prefixes
  const std::vector<int64_t> prompt = {1, 5, 9, 200, 17, 8, 3};
  const std::vector<std::vector<int64_t>> prompts = {prompt, prompt};
  const std::vector<double> w = {0.3, 0.7};
  GenerationOptions options;
  options.max_new_tokens = 8;
  options.stop_at_eos = false;
  options.mixture = 2;
  options.mixture_log_weights = {static_cast<float>(std::log(w[0])),
                                 static_cast<float>(std::log(w[1]))};
  const auto got = generate(*model, prompts, options, &two);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].tokens, got[1].tokens);

  torch::NoGradGuard no_grad;
  std::vector<KVPrefix> rows(2);
  for (int64_t b = 0; b < 2; ++b) {
    for (size_t l = 0; l < two.keys.size(); ++l) {
      rows[b].keys.push_back(two.keys[l].narrow(0, b, 1));
      rows[b].values.push_back(two.values[l].narrow(0, b, 1));
    }
  }
  std::vector<int64_t> ids = prompt, tokens;
  for (int step = 0; step < options.max_new_tokens; ++step) {
    const auto t = torch::tensor(ids, torch::kInt64).unsqueeze(0);  // [1, T]
    torch::Tensor mixed;                                            // [V]
    for (int64_t b = 0; b < 2; ++b) {
      LlamaForwardArgs args;
      args.prefix = &rows[b];
      const auto p = torch::softmax(model->forward(t, args).select(1, t.size(1) - 1)[0], -1);
      mixed = b == 0 ? w[0] * p : mixed + w[1] * p;
    }
    tokens.push_back(mixed.argmax().item<int64_t>());
    ids.push_back(tokens.back());
  }
  EXPECT_EQ(got[0].tokens, tokens);

  // All the weight on row 1: its own greedy answer.
  options.mixture_log_weights = {-std::numeric_limits<float>::infinity(), 0.0f};
  const auto alone = generate(*model, {prompt}, GenerationOptions{8, 0, 1, 0, false}, &rows[1]);
  EXPECT_EQ(generate(*model, prompts, options, &two)[0].tokens, alone[0].tokens);

  // Groups must divide the batch, weights come one per row, and contrast does not combine.
  options.mixture_log_weights = {0.0f};
  EXPECT_THROW(generate(*model, prompts, options, &two), Error);
  options.mixture = 3;
  EXPECT_THROW(generate(*model, prompts, options, &two), Error);
  options.mixture = 2;
  options.mixture_log_weights = {0.0f, 0.0f};
  options.contrast = 1.0f;
  options.contrast_prompts = prompts;
  EXPECT_THROW(generate(*model, prompts, options, &two), Error);
}

// Extractive decoding: a constrained row writes a contiguous span of its source, never across a
// -1, each token the model's favourite among the span's continuations; a row without a source is
// plain greedy decoding.
TEST_F(TinyLlama, ExtractiveDecodingCopiesASpanOfItsSource) {
  KVRAG_SHARED_PATH_OR_SKIP(dir, "fixtures/tiny-llama");
  auto model = load_llama(dir);
  const std::vector<std::vector<int64_t>> prompts = {{1, 5, 9, 200, 17, 8, 3}, {1, 44, 12}};
  const std::vector<int64_t> source = {30, 31, 32, 33, -1, 40, 41, 30, 42};
  GenerationOptions options{6, 0, 1, 0, false};
  const auto free = generate(*model, prompts, options);
  options.copy_from = {source, {}};
  const auto got = generate(*model, prompts, options);
  EXPECT_EQ(got[1].tokens, free[1].tokens);
  const auto& t = got[0].tokens;
  ASSERT_FALSE(t.empty());
  // Where the span runs out with no stop token to end it, the row ends.
  EXPECT_LE(t.size(), 4u);
  bool found = false;
  for (size_t start = 0; start + t.size() <= source.size() && !found; ++start)
    found = std::equal(t.begin(), t.end(), source.begin() + static_cast<int64_t>(start));
  EXPECT_TRUE(found) << "not a span of the source";

  // Step by step: each token is the argmax among the tokens that continue a match.
  torch::NoGradGuard no_grad;
  std::vector<int64_t> ids = prompts[0];
  std::vector<size_t> active;
  for (size_t j = 0; j < source.size(); ++j) {
    if (source[j] >= 0) active.push_back(j);
  }
  for (const int64_t token : t) {
    const auto logits =
        model->forward(torch::tensor(ids).unsqueeze(0)).select(1, ids.size() - 1)[0];
    int64_t best = -1;
    for (const size_t j : active) {
      if (best < 0 || logits[source[j]].item<float>() > logits[best].item<float>())
        best = source[j];
    }
    EXPECT_EQ(token, best);
    std::vector<size_t> next;
    for (const size_t j : active) {
      if (source[j] == token && j + 1 < source.size() && source[j + 1] >= 0) next.push_back(j + 1);
    }
    active = next;
    ids.push_back(token);
  }
  options.copy_from = {source};
  EXPECT_THROW(generate(*model, prompts, options), Error);
}

// d(loss)/d(prefix) by autograd equals the central finite difference along random directions,
// and the frozen LLM's own weights receive no gradient.
TEST_F(TinyLlama, PrefixGradientMatchesFiniteDifferences) {
  KVRAG_SHARED_PATH_OR_SKIP(dir, "fixtures/tiny-llama");
  const auto e = load_json(dir + "/expected.json");
  auto model = load_llama(dir);
  model->freeze();
  auto prefix = fixture_prefix(e);
  for (auto* v : {&prefix.keys, &prefix.values}) {
    for (auto& t : *v) t = t.clone().set_requires_grad(true);
  }
  const auto ids = ids_tensor(e["input_ids"]);
  const auto inputs = ids.narrow(1, 0, ids.size(1) - 1);
  const auto targets = ids.narrow(1, 1, ids.size(1) - 1);
  auto loss_of = [&](const KVPrefix& p) {
    LlamaForwardArgs args;
    args.prefix = &p;
    const auto logits = model->forward(inputs, args);
    return torch::nn::functional::cross_entropy(logits.reshape({-1, logits.size(-1)}),
                                                targets.reshape({-1}));
  };
  auto loss = loss_of(prefix);
  loss.backward();
  for (const auto& p : model->parameters()) EXPECT_FALSE(p.grad().defined());

  torch::NoGradGuard no_grad;
  auto gen = at::detail::createCPUGenerator(3);
  for (int trial = 0; trial < 3; ++trial) {
    // A random unit direction over all prefix tensors.
    std::vector<torch::Tensor> dirs;
    double norm2 = 0.0;
    for (auto* v : {&prefix.keys, &prefix.values}) {
      for (auto& t : *v) {
        dirs.push_back(torch::randn(t.sizes(), gen));
        norm2 += dirs.back().pow(2).sum().item<double>();
      }
    }
    double analytic = 0.0;
    size_t i = 0;
    for (auto* v : {&prefix.keys, &prefix.values}) {
      for (auto& t : *v) {
        dirs[i] /= std::sqrt(norm2);
        analytic += (t.grad() * dirs[i]).sum().item<double>();
        ++i;
      }
    }
    const double eps = 1e-2;
    auto shifted = [&](double s) {
      KVPrefix p;
      size_t j = 0;
      for (auto& t : prefix.keys) p.keys.push_back(t.detach() + s * dirs[j++]);
      for (auto& t : prefix.values) p.values.push_back(t.detach() + s * dirs[j++]);
      return loss_of(p).item<double>();
    };
    const double numeric = (shifted(eps) - shifted(-eps)) / (2 * eps);
    EXPECT_NEAR(analytic, numeric, 2e-3 + 1e-2 * std::abs(numeric)) << "direction " << trial;
  }
}

TEST_F(TinyLlama, RejectsBadPrefixAndIds) {
  KVRAG_SHARED_PATH_OR_SKIP(dir, "fixtures/tiny-llama");
  auto model = load_llama(dir);
  const auto& c = model->config();
  KVPrefix wrong;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    wrong.keys.push_back(torch::zeros({1, c.num_key_value_heads, 3, c.head_dim + 1}));
    wrong.values.push_back(torch::zeros({1, c.num_key_value_heads, 3, c.head_dim + 1}));
  }
  LlamaForwardArgs args;
  args.prefix = &wrong;
  const auto ids = torch::tensor({{1, 2, 3}}, torch::kInt64);
  EXPECT_THROW(model->forward(ids, args), Error);
  EXPECT_THROW(model->forward(torch::tensor({int64_t{1}, c.vocab_size}).unsqueeze(0)), Error);
  EXPECT_THROW(generate(*model, {{}}, GenerationOptions{}), Error);
  GenerationOptions too_long;
  too_long.max_new_tokens = static_cast<int>(c.max_position_embeddings);
  EXPECT_THROW(generate(*model, {{1, 2}}, too_long), Error);
}

}  // namespace
}  // namespace kvrag
