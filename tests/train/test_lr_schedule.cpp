// LrSchedule: warmup, cosine decay, ReduceLROnPlateau semantics, state round trip; OptimOptions
// validation; resumable run state (train_state.h).

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <iterator>
#include <set>

#include "core/atomic_file.h"
#include "core/error.h"
#include "support/test_support.h"
#include "train/lr_schedule.h"
#include "train/train_state.h"

namespace kvrag {
namespace {

using test::error_of;
using test::TempDir;

TEST(LrSchedule, WarmupThenCosineToMinLr) {
  OptimOptions o;
  o.lr = 1e-3;
  o.min_lr = 1e-5;
  o.warmup_steps = 10;
  o.schedule = "cosine";
  LrSchedule s(o, 110);
  EXPECT_DOUBLE_EQ(s.lr(0), 1e-4);                           // (0 + 1) / 10 of the peak
  EXPECT_DOUBLE_EQ(s.lr(9), 1e-3);                           // end of warmup
  EXPECT_DOUBLE_EQ(s.lr(10), 1e-3);                          // cosine starts at the peak
  EXPECT_NEAR(s.lr(60), 1e-5 + 0.5 * (1e-3 - 1e-5), 1e-12);  // half way
  EXPECT_NEAR(s.lr(110), 1e-5, 1e-12);
  EXPECT_NEAR(s.lr(500), 1e-5, 1e-12);  // stays at the floor past the end
  for (int64_t i = 11; i <= 110; ++i) EXPECT_LE(s.lr(i), s.lr(i - 1));
}

TEST(LrSchedule, ConstantIgnoresValidation) {
  OptimOptions o;
  o.schedule = "constant";
  o.lr = 0.1;
  LrSchedule s(o, 5);
  EXPECT_FALSE(s.on_validation(0.1));
  EXPECT_FALSE(s.on_validation(0.0));
  EXPECT_DOUBLE_EQ(s.lr(4), 0.1);
}

// PyTorch ReduceLROnPlateau(mode="max", factor=0.5, patience=1, cooldown=1, min_lr=0.02) fed
// the metrics below gives these lrs after each step (computed with torch 1.13).
TEST(LrSchedule, PlateauMatchesPyTorchSemantics) {
  OptimOptions o;
  o.schedule = "plateau";
  o.lr = 0.1;
  o.plateau_factor = 0.5;
  o.plateau_patience = 1;
  o.plateau_cooldown = 1;
  o.min_lr = 0.02;
  LrSchedule s(o, 100);
  const double metrics[] = {0.5, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.7, 0.7, 0.7, 0.7, 0.7};
  const double expected[] = {0.1,   0.1,   0.1,   0.05, 0.05, 0.05,
                             0.025, 0.025, 0.025, 0.02, 0.02, 0.02};
  for (size_t i = 0; i < std::size(metrics); ++i) {
    s.on_validation(metrics[i]);
    EXPECT_NEAR(s.lr(50), expected[i], 1e-12) << "after metric " << i;
  }
  // The state round-trips: a fresh schedule continues identically.
  LrSchedule t(o, 100);
  t.load_state(s.state());
  EXPECT_DOUBLE_EQ(t.lr(50), s.lr(50));
  EXPECT_EQ(t.on_validation(0.7), s.on_validation(0.7));
  EXPECT_DOUBLE_EQ(t.lr(50), s.lr(50));
}

TEST(OptimOptions, ValidationNamesTheFlag) {
  OptimOptions o;
  o.schedule = "linear";
  EXPECT_NE(error_of([&] { o.validate(); }).find("--schedule"), std::string::npos);
  o = OptimOptions{};
  o.accumulation = 0;
  EXPECT_NE(error_of([&] { o.validate(); }).find("--accumulation"), std::string::npos);
  o = OptimOptions{};
  o.min_lr = 1.0;
  EXPECT_NE(error_of([&] { o.validate(); }).find("--min-lr"), std::string::npos);
  EXPECT_NO_THROW(OptimOptions{}.validate());
}

// A tiny regression trained for 6 steps straight equals 3 steps + save + load into fresh
// objects + 3 steps: parameters and AdamW moments are restored.
TEST(TrainState, ResumeContinuesExactly) {
  TempDir dir;
  OptimOptions o;
  o.lr = 0.05;
  o.weight_decay = 0.1;
  const auto x = torch::randn({16, 4}, torch::TensorOptions().dtype(torch::kFloat32)).mul_(1.0);
  const auto y = x.matmul(torch::tensor({1.0f, -2.0f, 0.5f, 3.0f})).unsqueeze(1);
  auto make = [] {
    torch::manual_seed(7);
    return torch::nn::Linear(4, 1);
  };
  auto run = [&](torch::nn::Linear& m, torch::optim::AdamW& opt, int steps) {
    for (int i = 0; i < steps; ++i) {
      auto loss = torch::mse_loss(m->forward(x), y);
      loss.backward();
      optimizer_step(opt, o.lr, 1.0);
    }
  };
  auto a = make();
  auto opt_a = make_adamw(*a, o);
  run(a, *opt_a, 6);

  auto b = make();
  auto opt_b = make_adamw(*b, o);
  run(b, *opt_b, 3);
  save_resume_point(dir.path(), *b, *opt_b, {{"step", 3}, {"epoch", 0}});
  auto c = make();
  auto opt_c = make_adamw(*c, o);
  nlohmann::json state;
  ASSERT_TRUE(load_resume_point(dir.path(), *c, *opt_c, &state));
  EXPECT_EQ(state["step"], 3);
  run(c, *opt_c, 3);
  EXPECT_TRUE(torch::equal(a->weight, c->weight));
  EXPECT_TRUE(torch::equal(a->bias, c->bias));

  // No resume point: false, nothing touched.
  TempDir empty;
  EXPECT_FALSE(load_resume_point(empty.path(), *c, *opt_c, &state));
}

TEST(TrainState, CorruptResumePointIsAnErrorNamingTheFile) {
  TempDir dir;
  OptimOptions o;
  auto m = torch::nn::Linear(3, 2);
  auto opt = make_adamw(*m, o);
  save_resume_point(dir.path(), *m, *opt, {{"step", 1}});
  write_file_atomic(dir.path() + "/resume/optimizer-1.pt", "not a torch archive");
  nlohmann::json state;
  const std::string err = error_of([&] { load_resume_point(dir.path(), *m, *opt, &state); });
  EXPECT_NE(err.find("optimizer-1.pt"), std::string::npos) << err;
}

TEST(TrainState, EpochOrderIsAPermutationFixedBySeedAndEpoch) {
  const auto a = epoch_order(100, 3, 0);
  EXPECT_EQ(a, epoch_order(100, 3, 0));
  EXPECT_NE(a, epoch_order(100, 3, 1));
  EXPECT_NE(a, epoch_order(100, 4, 0));
  auto sorted = a;
  std::sort(sorted.begin(), sorted.end());
  for (int64_t i = 0; i < 100; ++i) EXPECT_EQ(sorted[i], i);
}

TEST(TrainState, LengthGroupedOrderKeepsEveryExampleAndGroupsSimilarLengths) {
  std::vector<int64_t> lengths(103);
  for (int64_t i = 0; i < 103; ++i) lengths[i] = (i * 37) % 101;  // scattered
  const auto order = epoch_order(103, 5, 2);
  const auto grouped = length_grouped_order(order, lengths, 4, 5, 5, 2);
  EXPECT_EQ(grouped, length_grouped_order(order, lengths, 4, 5, 5, 2));
  auto sorted = grouped;
  std::sort(sorted.begin(), sorted.end());
  for (int64_t i = 0; i < 103; ++i) ASSERT_EQ(sorted[i], i);
  // Batches of 4 are cut from runs of 20 sorted by length: within a batch the lengths are close.
  const auto spread = [&](const std::vector<int64_t>& o) {
    int64_t total = 0;
    for (size_t b = 0; b + 4 <= o.size(); b += 4) {
      int64_t lo = 1 << 30, hi = 0;
      for (size_t k = b; k < b + 4; ++k)
        lo = std::min(lo, lengths[o[k]]), hi = std::max(hi, lengths[o[k]]);
      total += hi - lo;
    }
    return total;
  };
  EXPECT_LT(spread(grouped) * 3, spread(order));
  // The short last batch (103 = 25·4 + 3) stays last: the same 3 examples as the sorted tail.
  EXPECT_EQ(std::set<int64_t>(grouped.end() - 3, grouped.end()),
            std::set<int64_t>(order.end() - 3, order.end()));
  // batches reshuffled per epoch
  EXPECT_NE(grouped, length_grouped_order(order, lengths, 4, 5, 5, 3));
  EXPECT_NE(
      test::error_of([&] { length_grouped_order({200}, lengths, 4, 5, 5, 2); }).find("no length"),
      std::string::npos);
}

}  // namespace
}  // namespace kvrag
