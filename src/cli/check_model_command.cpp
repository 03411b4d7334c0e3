// kvrag check-model DIR [--expected FILE] [--dtype fp32|bf16|int8]

#include <fmt/format.h>

#include "cli/commands.h"
#include "model/fixture_check.h"
#include "model/model_dtype_names.h"

namespace kvrag::cli {

void add_check_model_command(CLI::App& app, int& exit_code) {
  struct Args {
    std::string dir, expected, dtype = "fp32";
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("check-model",
                                 "Load a Hugging Face checkpoint and compare its outputs with "
                                 "reference outputs (expected.json): one line per output with its "
                                 "max absolute error; exit 0 only if all are within tolerance");
  cmd->add_option("dir", args->dir, "checkpoint folder (config.json + safetensors)")->required();
  cmd->add_option("--expected", args->expected, "reference outputs (default: DIR/expected.json)");
  cmd->add_option(
         "--dtype", args->dtype,
         "compute dtype: fp32 (tolerance from the file), bf16 or int8 (weight-only) (3% of "
         "each output's largest magnitude, 5% for int8 BERT on a CPU without AVX-512 VNNI; "
         "greedy tokens reported, not required)")
      ->check(CLI::IsMember(kModelDtypeNames));
  cmd->callback([args, &exit_code] {
    const auto report = check_fixture(args->dir, args->expected, args->dtype);
    fmt::print("{} ({}, {})\n", args->dir, report.model_type, report.dtype);
    for (const auto& line : report.lines) {
      fmt::print("  {:<44} max_abs_err={:<11.4g} tol={:<9.3g} {}{}\n", line.name,
                 line.max_abs_error, line.tolerance, line.ok ? "OK" : "FAIL",
                 line.note.empty() ? "" : "  (" + line.note + ")");
    }
    if (report.lines.empty()) fmt::print("  no outputs to check\n");
    fmt::print("{}\n", report.ok() ? "all outputs within tolerance" : "FAILED");
    exit_code = report.ok() ? 0 : 1;
  });
}

}  // namespace kvrag::cli
