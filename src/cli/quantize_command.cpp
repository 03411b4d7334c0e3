// kvrag quantize DIR --out OUT

#include <fmt/format.h>

#include "cli/commands.h"
#include "model/llama.h"

namespace kvrag::cli {

void add_quantize_command(CLI::App& app, int& exit_code) {
  struct Args {
    std::string dir, out;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand(
      "quantize",
      "Save a LLaMA checkpoint's int8 weights (--dtype int8: groups of 32, fp32 scales) as a new "
      "model folder, which --dtype int8 then loads without quantizing");
  cmd->add_option("dir", args->dir, "LLaMA checkpoint folder (config.json + safetensors)")
      ->required();
  cmd->add_option("--out", args->out, "the new folder (must not exist)")->required();
  cmd->callback([args, &exit_code] {
    const int64_t saved = write_int8_llama(args->dir, args->out);
    fmt::print("{}: {} int8 weights saved (load with --dtype int8)\n", args->out, saved);
    exit_code = 0;
  });
}

}  // namespace kvrag::cli
