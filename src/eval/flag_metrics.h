// How well a score separates good answers from bad ones: the metrics of a flag "score < t marks
// this answer as bad" (a hallucination detector, an abstention rule) and the threshold that makes
// the best such flag. Scores are "higher = better supported"; `positive` marks the answers the
// flag should catch (e.g. wrong answers). Torch-free and model-free: qa/ scores the answers.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

namespace kvrag {

// AUROC of the flag: the probability that a random positive scores lower than a random negative,
// a tie counting one half (Mann–Whitney U / (P·N)). 1: the score ranks every positive below every
// negative; 0.5: no better than chance. nullopt where either class is empty.
std::optional<double> auroc_of_low_scores(const std::vector<double>& scores,
                                          const std::vector<bool>& positive);

struct FlagStats {
  double threshold = 0;   // flag where score < threshold
  int64_t flagged = 0;    // answers flagged
  int64_t positives = 0;  // answers that should be
  int64_t caught = 0;     // flagged positives
  double precision = 0;   // caught / flagged; 0 where nothing is flagged
  double recall = 0;      // caught / positives; 0 without positives
  double f1 = 0;          // 2PR / (P + R); 0 where P + R is 0
};

// The flag "score < threshold" on these answers. Error where the lengths differ.
FlagStats flag_stats(const std::vector<double>& scores, const std::vector<bool>& positive,
                     double threshold);

// The threshold of the best flag by F1 on these answers (calibration on dev): candidates are
// every cut between two consecutive distinct scores (their midpoint), below the lowest (nothing
// flagged) and +inf (everything flagged); of equal F1 the lowest threshold wins (fewest flagged).
// Error without scores or where the lengths differ.
FlagStats calibrate_flag(const std::vector<double>& scores, const std::vector<bool>& positive);

// Selective answering: answer only where score >= threshold. One point per distinct threshold
// (each distinct score, highest first): the share answered and the share of those that are
// correct (`correct` marks them).
struct CoveragePoint {
  double threshold = 0;
  int64_t answered = 0;
  double coverage = 0;  // answered / all
  double accuracy = 0;  // correct among the answered
};
std::vector<CoveragePoint> risk_coverage(const std::vector<double>& scores,
                                         const std::vector<bool>& correct);

}  // namespace kvrag
