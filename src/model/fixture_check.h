// Checks a checkpoint against reference outputs in the fixture format of
// ../shared/fixtures/README.md (`kvrag check-model`).
#pragma once

#include <string>
#include <vector>

namespace kvrag {

struct CheckLine {
  std::string name;            // "logits", "logits_with_prefix", "greedy.output_ids", …
  double max_abs_error = 0.0;  // for token outputs: the number of differing tokens
  double tolerance = 0.0;
  bool ok = false;
  std::string note;  // e.g. "12 tokens, first difference at row 0 step 7"
};

struct FixtureReport {
  std::string model_type;  // "llama" or "bert"
  std::string dtype;       // "fp32", "bf16" or "int8"
  std::vector<CheckLine> lines;
  bool ok() const;
};

// Loads DIR in `dtype` ("fp32", "bf16" or "int8": weight-only int8) and runs every case
// present in `expected_path` (DIR/expected.json if empty). fp32 uses the file's tolerance.abs; bf16
// and int8 a looser bound, kBf16RelativeTolerance × the largest expected magnitude of each output
// (at least tolerance.abs; kInt8RowCodesRelativeTolerance for int8 BERT without VNNI), and greedy
// outputs are reported but not required to match exactly.
FixtureReport check_fixture(const std::string& dir, const std::string& expected_path = "",
                            const std::string& dtype = "fp32");

// bf16 keeps 8 significant bits: 3% of the output's range covers its rounding through a few
// layers of the small fixtures; see README ("Numerical parity"). int8 (Q8_0) takes the same
// bound: a weight's error is at most max|w|/254 over its group of 32, the order of bf16's
// rounding (|w|/256), while its activations stay fp32.
inline constexpr double kBf16RelativeTolerance = 0.03;

// int8 BERT on a CPU without AVX-512 VNNI: many rows of x go to q8_channel_gemm
// (ops/q8_channel_gemm.h), which rounds each row of activations to 7-bit codes over the row's
// range: an element within range/254 of itself, against bf16's |x|/512, i.e. several times
// coarser for typical elements. On tiny-bert the largest error is 4.0% of the pooler output's
// range (2.0% with VNNI's 8-bit codes per group of 32); 5% bounds it.
inline constexpr double kInt8RowCodesRelativeTolerance = 0.05;

}  // namespace kvrag
