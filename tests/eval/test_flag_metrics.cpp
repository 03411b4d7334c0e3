// The flag metrics (eval/flag_metrics.h) against values worked out by hand.

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "core/error.h"
#include "eval/flag_metrics.h"

namespace kvrag {
namespace {

TEST(FlagMetrics, AurocCountsPairsAndHalvesTies) {
  // positives {1, 3}, negatives {2, 4}: (1<2) (1<4) (3<4) of 4 pairs.
  EXPECT_DOUBLE_EQ(*auroc_of_low_scores({1, 2, 3, 4}, {true, false, true, false}), 0.75);
  // positives {1, 2}, negatives {2, 3}: 1<2, 1<3, 2=2 (one half), 2<3 → 3.5 / 4.
  EXPECT_DOUBLE_EQ(*auroc_of_low_scores({1, 2, 2, 3}, {true, true, false, false}), 0.875);
  // the order of the answers does not matter
  EXPECT_DOUBLE_EQ(*auroc_of_low_scores({3, 2, 1, 2}, {false, false, true, true}), 0.875);
  EXPECT_DOUBLE_EQ(*auroc_of_low_scores({5, 5, 5}, {true, false, true}), 0.5);
  EXPECT_DOUBLE_EQ(*auroc_of_low_scores({0, 1}, {true, false}), 1.0);
  EXPECT_DOUBLE_EQ(*auroc_of_low_scores({0, 1}, {false, true}), 0.0);
  EXPECT_FALSE(auroc_of_low_scores({1, 2}, {true, true}).has_value());
  EXPECT_FALSE(auroc_of_low_scores({}, {}).has_value());
  EXPECT_THROW(auroc_of_low_scores({1, 2}, {true}), Error);
}

TEST(FlagMetrics, FlagStatsCountTheFlaggedBelowTheThreshold) {
  const auto s = flag_stats({1, 2, 3, 4, 5}, {true, true, false, true, false}, 3.5);
  EXPECT_EQ(s.flagged, 3);
  EXPECT_EQ(s.positives, 3);
  EXPECT_EQ(s.caught, 2);
  EXPECT_DOUBLE_EQ(s.precision, 2.0 / 3);
  EXPECT_DOUBLE_EQ(s.recall, 2.0 / 3);
  EXPECT_DOUBLE_EQ(s.f1, 2.0 / 3);
  const auto none = flag_stats({1, 2}, {true, false}, 1);  // strictly below: nothing flagged
  EXPECT_EQ(none.flagged, 0);
  EXPECT_EQ(none.precision, 0);
  EXPECT_EQ(none.f1, 0);
}

TEST(FlagMetrics, CalibrationPicksTheBestF1Threshold) {
  // thresholds 1 (none), 1.5, 2.5, 3.5, 4.5, +inf → F1 0, 1/2, 4/5, 2/3, 6/7, 3/4.
  const auto s = calibrate_flag({1, 2, 3, 4, 5}, {true, true, false, true, false});
  EXPECT_DOUBLE_EQ(s.threshold, 4.5);
  EXPECT_DOUBLE_EQ(s.f1, 6.0 / 7);
  EXPECT_DOUBLE_EQ(s.precision, 0.75);
  EXPECT_DOUBLE_EQ(s.recall, 1.0);
  // F1 2/3 at 1.5 and at +inf: the lowest threshold wins.
  EXPECT_DOUBLE_EQ(calibrate_flag({4, 1, 2, 3}, {true, true, false, false}).threshold, 1.5);
  // every answer wrong: flag them all
  EXPECT_TRUE(std::isinf(calibrate_flag({1, 1}, {true, true}).threshold));
  // none wrong: flag none (F1 0 everywhere; the lowest threshold)
  EXPECT_DOUBLE_EQ(calibrate_flag({2, 1}, {false, false}).threshold, 1.0);
  EXPECT_THROW(calibrate_flag({}, {}), Error);
}

TEST(FlagMetrics, RiskCoverageAnswersTheHighestScoresFirst) {
  const auto c = risk_coverage({3, 1, 2, 2}, {true, false, true, false});
  ASSERT_EQ(c.size(), 3u);
  EXPECT_EQ(c[0].threshold, 3);
  EXPECT_EQ(c[0].answered, 1);
  EXPECT_DOUBLE_EQ(c[0].coverage, 0.25);
  EXPECT_DOUBLE_EQ(c[0].accuracy, 1.0);
  EXPECT_EQ(c[1].answered, 3);  // both 2s together
  EXPECT_DOUBLE_EQ(c[1].accuracy, 2.0 / 3);
  EXPECT_DOUBLE_EQ(c[2].coverage, 1.0);
  EXPECT_DOUBLE_EQ(c[2].accuracy, 0.5);
  EXPECT_TRUE(risk_coverage({}, {}).empty());
}

}  // namespace
}  // namespace kvrag
